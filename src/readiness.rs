//! Telling the process manager the daemon is ready: systemd's `sd_notify` protocol (`READY=1`,
//! `STOPPING=1`, and `WATCHDOG=1` pings when the unit sets `WatchdogSec`) and PM2's `wait_ready`
//! (a `"ready"` message on the IPC channel PM2 gives a forked app in `NODE_CHANNEL_FD`).

use std::time::Duration;

/// Sends a state line to systemd, when the daemon runs under it.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return log::warn!("sd_notify: {e}"),
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::warn!("sd_notify({state}) failed: {e}");
    }
}

/// The IPC channel PM2 gave this process, once [`claim_pm2_channel`] has taken it.
static PM2_CHANNEL: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();

/// Takes PM2's IPC channel for the daemon alone. Call it first thing in `main`, while the process
/// has one thread (it changes the environment). Without this, every agent would inherit the open
/// descriptor and `NODE_CHANNEL_FD`: Claude Code and Codex run on Node, which would adopt PM2's
/// channel as its own parent link (or fail to start once the descriptor is closed).
pub fn claim_pm2_channel() {
    let fd = std::env::var("NODE_CHANNEL_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    std::env::remove_var("NODE_CHANNEL_FD");
    std::env::remove_var("NODE_CHANNEL_SERIALIZATION_MODE");
    if let Some(fd) = fd {
        // SAFETY: fcntl(F_SETFD) only changes the descriptor's close-on-exec flag.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    let _ = PM2_CHANNEL.set(fd);
}

/// Tells PM2 the app is ready, when PM2 started it with an IPC channel.
///
/// PM2 (`wait_ready: true`) keeps the app `launching` until a `process:msg` whose raw value is the
/// string `'ready'` arrives, or `listen_timeout` passes. It reads the channel as Node does with
/// its default `json` serialization: one `JSON.stringify(message)` per line, so
/// `process.send('ready')` is the eight bytes `"ready"` and a newline.
pub fn pm2_ready() {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let Some(fd) = PM2_CHANNEL.get().copied().flatten() else {
        return;
    };
    // SAFETY: PM2 passed this descriptor for exactly this purpose; it is wrapped without taking
    // ownership (ManuallyDrop), so it stays open for further messages.
    let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    if let Err(e) = f.write_all(b"\"ready\"\n") {
        log::warn!("could not tell PM2 the daemon is ready: {e}");
    }
}

/// How often to ping systemd's watchdog: half its timeout, when it has one.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
