//! What the kernel reports about this process and the machine, read from `/proc`; health and
//! the metrics sample the same figures through here.

/// The process's resident memory.
pub fn resident_bytes() -> Option<u64> {
    proc_status_kb("VmRSS").map(|kb| kb * 1024)
}

/// The process's open file descriptors.
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok()
}

/// A field of `/proc/self/status`, in kB.
pub fn proc_status_kb(key: &str) -> Option<u64> {
    field_kb(&std::fs::read_to_string("/proc/self/status").ok()?, key)
}

/// A field of `/proc/meminfo`, in kB.
pub fn meminfo_kb(key: &str) -> Option<u64> {
    field_kb(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
