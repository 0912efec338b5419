//! A real `nats-server` with JetStream for the cluster tests: one per test, on a free loopback
//! port with its own store directory, stopped when the test ends.
//!
//! The server is Debian's `nats-server`. When it is neither on PATH nor in /usr/sbin, the
//! project's own `scripts/install-nats.sh` installs it, once for all the test binaries running
//! in parallel (behind a file lock). If it cannot be had, the test fails saying so: a cluster
//! test never passes without a server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, WAIT};

/// The path of a nats-server, installed first if need be.
pub fn nats_server_binary() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND
        .get_or_init(|| match find() {
            Some(p) => p,
            None => install(),
        })
        .clone()
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// Runs the install script under an exclusive lock, so that parallel test binaries install
/// once; the ones that waited find the server installed.
fn install() -> PathBuf {
    use std::os::fd::AsRawFd;
    let lock_path = std::env::temp_dir().join("agentvisor-nats-install.lock");
    let lock = std::fs::File::create(&lock_path).expect("create the install lock");
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if let Some(p) = find() {
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-nats.sh");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/install-nats.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().map(PathBuf::from) {
        Some(p) if out.status.success() && p.is_file() => p,
        _ => panic!(
            "the cluster tests need a nats-server and none could be installed ({}): install Debian's 'nats-server' package, or run scripts/install-nats.sh as root\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A running nats-server with JetStream.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    log: PathBuf,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        let log = store.path().join("nats.log");
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            store,
            log,
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store.path().join("js"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the latest start has logged that the server is ready.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log_text();
            let starts = log.matches("Starting nats-server").count();
            if starts > 0 && log.matches("Server is ready").count() >= starts {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited with {st}:\n{log}");
            }
            assert!(Instant::now() < deadline, "nats-server not ready:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::signal(child.id() as i32, libc::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
