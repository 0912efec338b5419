//! Writing the agent's stdout.
//!
//! The daemon streams stdout line by line, so every line is flushed as soon as
//! it is written (a reader sees it when the real CLI would have produced it);
//! only the bulk `lines` mode defers flushing, for throughput. A reader that
//! goes away must not get a panic: SIGPIPE is ignored (see `signals`), the
//! write fails with EPIPE, and the mock exits quietly with status 1, which is
//! what a CLI killed by its pipe looks like to a supervisor.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::process;

/// Buffered, locked stdout. Any write error ends the process, since an agent
/// that cannot write its stream has nothing left to do.
pub struct Out {
    writer: BufWriter<StdoutLock<'static>>,
}

impl Out {
    pub fn new() -> Self {
        Out {
            writer: BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        }
    }

    /// Writes `line` and a newline, and flushes.
    pub fn line(&mut self, line: &str) {
        self.line_buffered(line.as_bytes());
        self.flush();
    }

    /// Writes `line` and a newline without flushing.
    pub fn line_buffered(&mut self, line: &[u8]) {
        if let Err(e) = self
            .writer
            .write_all(line)
            .and_then(|()| self.writer.write_all(b"\n"))
        {
            fail(&e);
        }
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.writer.flush() {
            fail(&e);
        }
    }
}

/// Exits on a stdout error: quietly for a closed pipe, with a message
/// otherwise.
fn fail(e: &io::Error) -> ! {
    if e.kind() != io::ErrorKind::BrokenPipe {
        let _ = writeln!(io::stderr(), "mock-agent: cannot write to stdout: {e}");
    }
    process::exit(1)
}

/// A line on stderr. Failures are ignored: stderr is diagnostics only and a
/// closed stderr must not change what the agent does.
pub fn stderr_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = err
        .write_all(line.as_bytes())
        .and_then(|()| err.write_all(b"\n"));
}
