//! Reading an agent's output line by line, in batches.
//!
//! Lines have no length limit short of [`MAX_LINE`] (a 10 MB line is normal for an agent that
//! prints a file). Lines that are already buffered are sent together in one message, which keeps
//! per-line overhead low for fast agents; each batch waits until the project has taken it, so a
//! fast agent is slowed down (its pipe fills) instead of filling the daemon's memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

/// The longest line kept whole; the rest of a longer line is dropped and the line marked cut.
pub const MAX_LINE: usize = 64 << 20;
const MAX_BATCH_LINES: usize = 512;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// One output line.
#[derive(Debug, Clone)]
pub struct Line {
    pub bytes: Vec<u8>,
    /// The line was longer than [`MAX_LINE`] and was cut.
    pub cut: bool,
}

/// Reads one line (without its newline). `None` at end of stream.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Line>> {
    let mut bytes = Vec::new();
    let mut cut = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!bytes.is_empty() || cut).then_some(Line { bytes, cut }));
        }
        let (take, done) = match memchr(buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(bytes.len());
        let content = if done { take - 1 } else { take };
        if content > room {
            cut = true;
        }
        bytes.extend_from_slice(&buf[..content.min(room)]);
        r.consume(take);
        if done {
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            return Ok(Some(Line { bytes, cut }));
        }
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

/// Reads a batch: at least one line, plus whatever whole lines are already buffered.
pub async fn read_batch<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<Option<Vec<Line>>> {
    let Some(first) = read_line(r).await? else {
        return Ok(None);
    };
    let mut size = first.bytes.len();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_LINES && size < MAX_BATCH_BYTES && memchr(r.buffer()).is_some() {
        match read_line(r).await? {
            Some(l) => {
                size += l.bytes.len();
                batch.push(l);
            }
            None => break,
        }
    }
    Ok(Some(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_batches_buffered_ones() {
        let data: &[u8] = b"a\r\nbb\n\nccc";
        let mut r = tokio::io::BufReader::new(data);
        let texts = |b: Vec<Line>| -> Vec<String> {
            b.iter()
                .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
                .collect()
        };
        // Whole lines already buffered come together; the unterminated tail comes at EOF.
        let first = read_batch(&mut r).await.unwrap().unwrap();
        assert_eq!(texts(first), ["a", "bb", ""]);
        let second = read_batch(&mut r).await.unwrap().unwrap();
        assert_eq!(texts(second), ["ccc"]);
        assert!(read_batch(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn long_lines_survive_small_buffers() {
        let line = vec![b'x'; 100_000];
        let mut data = line.clone();
        data.push(b'\n');
        let mut r = tokio::io::BufReader::with_capacity(1024, &data[..]);
        let l = read_line(&mut r).await.unwrap().unwrap();
        assert_eq!(l.bytes.len(), 100_000);
        assert!(!l.cut);
    }
}
