//! Starting and watching the daemon under test.
//!
//! The daemon runs as a child process on a free loopback port, with a temporary data directory,
//! the mock agent as its agent, and limits raised so that the benchmark measures the daemon
//! rather than its protections (connection caps, rate limit, backlog cap, run timeout).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{err, Paths, Res};

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Connection limit (total and per address).
    pub max_connections: usize,
    /// `ulimit -n` for the daemon, when it needs more than it inherits.
    pub nofile: Option<u64>,
    /// More `AGENTVISOR_*` settings.
    pub env: Vec<(String, String)>,
    /// How long start-up (loading projects and history) may take.
    pub ready_timeout: Duration,
}

impl Opts {
    pub fn new(max_connections: usize) -> Self {
        Opts {
            max_connections: max_connections.max(16),
            nofile: None,
            env: Vec::new(),
            ready_timeout: Duration::from_secs(60),
        }
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// A running daemon and its temporary directories.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Where project directories may be created.
    pub root: PathBuf,
    log: PathBuf,
    paths: Paths,
    opts: Opts,
    tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    pub async fn start(paths: &Paths, opts: Opts) -> Res<Daemon> {
        let tmp = tempfile::Builder::new()
            .prefix("agentvisor-bench-")
            .tempdir()?;
        let root = tmp.path().join("projects");
        std::fs::create_dir_all(&root)?;
        let mut d = Daemon {
            child: None,
            port: 0,
            data_dir: tmp.path().join("data"),
            root,
            log: tmp.path().join("daemon.log"),
            paths: paths.clone(),
            opts,
            tmp: Some(tmp),
        };
        d.spawn().await?;
        Ok(d)
    }

    /// Starts the process and waits for `/ready`; returns how long that took.
    async fn spawn(&mut self) -> Res<Duration> {
        self.port = free_port()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = match self.opts.nofile {
            // The limit is already raised in this process (inherited); `ulimit -n` makes it
            // explicit and fails loudly if the shell cannot set it.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&self.paths.daemon);
                c
            }
            None => Command::new(&self.paths.daemon),
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AGENTVISOR_") {
                cmd.env_remove(&k);
            }
        }
        let max = self.opts.max_connections.to_string();
        cmd.env_remove("RUST_LOG")
            .env("AGENTVISOR_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("AGENTVISOR_DATA_DIR", &self.data_dir)
            .env("AGENTVISOR_PROJECT_ROOTS", &self.root)
            .env("AGENTVISOR_CLAUDE_BIN", &self.paths.mock)
            .env("AGENTVISOR_CODEX_BIN", &self.paths.mock)
            .env("AGENTVISOR_MAX_CONNECTIONS", &max)
            .env("AGENTVISOR_MAX_CONNECTIONS_PER_IP", &max)
            .env("AGENTVISOR_RATE_LIMIT", "0")
            .env("AGENTVISOR_MAX_PROJECTS", "1000")
            .env("AGENTVISOR_MAX_BACKLOG_BYTES", "1GiB")
            .env("AGENTVISOR_RUN_TIMEOUT", "1h")
            .env("AGENTVISOR_STATS_INTERVAL", "0")
            .env("AGENTVISOR_LOG_LEVEL", "warn")
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // If the bench dies without cleaning up, the daemon goes with it.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let t0 = Instant::now();
        self.child = Some(
            cmd.spawn()
                .map_err(|e| err(format!("cannot start {}: {e}", self.paths.daemon.display())))?,
        );
        loop {
            self.check_alive()?;
            if let Some((200, _)) = http_get(self.port, "/ready").await {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > self.opts.ready_timeout {
                return Err(err(format!(
                    "the daemon was not ready within {:?}; log:\n{}",
                    self.opts.ready_timeout,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the daemon gracefully (SIGTERM, then SIGKILL after 20 s).
    pub async fn stop(&mut self) -> Res<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err("the daemon did not stop within 20s of SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts it again on the same data directory; returns the time to ready.
    pub async fn restart(&mut self) -> Res<Duration> {
        self.stop().await?;
        self.spawn().await
    }

    /// An error (with the log's tail) if the daemon has exited.
    pub fn check_alive(&mut self) -> Res<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(err("the daemon is not running"));
        };
        if let Some(st) = child.try_wait()? {
            self.child = None;
            return Err(err(format!(
                "the daemon exited unexpectedly ({st}); log:\n{}",
                self.log_tail()
            )));
        }
        Ok(())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> Res<u64> {
        rss_kib(self.pid())
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_s(&self) -> Res<f64> {
        proc_cpu_s(&format!("/proc/{}/stat", self.pid()))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A new empty directory under the project root.
    pub fn project_dir(&self, name: &str) -> Res<PathBuf> {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.paths.keep_data {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("   data kept in {}", tmp.keep().display());
            }
        }
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Raises this process's open-file limit to `want`, or to the hard limit when that is lower but
/// still at least `need` (children inherit it). Returns the limit in force.
pub fn raise_nofile(want: u64, need: u64) -> Res<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        if lim.rlim_max < need {
            return Err(err(format!(
                "the open-file limit cannot be raised to {need}: the hard limit is {} (raise it with `ulimit -Hn` as root, or use a smaller --n)",
                lim.rlim_max
            )));
        }
        lim.rlim_cur = want.min(lim.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(lim.rlim_cur)
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: i32) -> Res<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| err("no VmRSS in /proc/<pid>/status"))
}

/// User + system CPU seconds from a `/proc/.../stat` file.
pub fn proc_cpu_s(stat_path: &str) -> Res<f64> {
    let s = std::fs::read_to_string(stat_path)?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| err("bad stat file"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) … utime is field 14, stime 15 (1-based over the whole line).
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((utime + stime) / tck)
}

/// CPU seconds used by this process's threads whose name starts with one of `prefixes`.
pub fn threads_cpu_s(prefixes: &[&str]) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if prefixes.iter().any(|x| comm.starts_with(x)) {
            total += proc_cpu_s(&p.join("stat").to_string_lossy()).unwrap_or(0.0);
        }
    }
    total
}

/// A minimal HTTP/1.1 GET on loopback: status and body, or `None` if it failed.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let job = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), job)
        .await
        .ok()
        .flatten()
}

/// Size of a directory tree, in bytes.
pub fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
