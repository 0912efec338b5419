//! Where the daemon's own cgroup v2 is: the cgroup2 mount in `/proc/self/mountinfo` (on a
//! hybrid hierarchy not `/sys/fs/cgroup` but e.g. `/sys/fs/cgroup/unified`) joined with the
//! `0::` line of `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

/// The daemon's own cgroup directory on the cgroup v2 mount.
pub(super) fn own_cgroup_dir(mountinfo: &str, proc_cgroup: &str) -> Result<PathBuf, String> {
    let own = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the daemon is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")?;
    // The last of several mounts on one point is the one visible there.
    let (root, mountpoint) = mountinfo
        .lines()
        .rev()
        .filter_map(cgroup2_mount)
        .find(|(root, _)| Path::new(own).starts_with(root))
        .ok_or("no cgroup v2 mount shows the daemon's cgroup (see /proc/self/mountinfo)")?;
    let rel = Path::new(own)
        .strip_prefix(&root)
        .map_err(|_| "the daemon's cgroup is outside the mount")?;
    Ok(mountpoint.join(rel))
}

/// `(root, mount point)` of a mountinfo line of a cgroup2 file system.
fn cgroup2_mount(line: &str) -> Option<(PathBuf, PathBuf)> {
    let (mount, fs) = line.split_once(" - ")?;
    if fs.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let mut f = mount.split_whitespace();
    let root = unescape(f.nth(3)?);
    let mountpoint = unescape(f.next()?);
    Some((root.into(), mountpoint.into()))
}

/// Mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn finds_the_v2_mount_of_a_hybrid_hierarchy() {
        let cgroup = "4:memory:/x\n0::/system.slice/agentvisor.service\n";
        assert_eq!(
            own_cgroup_dir(HYBRID, cgroup).unwrap(),
            Path::new("/sys/fs/cgroup/unified/system.slice/agentvisor.service")
        );
    }

    #[test]
    fn a_mount_of_a_subtree_and_escaped_paths_are_followed() {
        let info = "50 1 0:40 /lxc/a\\040b /mnt/cg\\040v2 rw - cgroup2 none rw\n";
        assert_eq!(
            own_cgroup_dir(info, "0::/lxc/a b/inner\n").unwrap(),
            Path::new("/mnt/cg v2/inner")
        );
        assert!(own_cgroup_dir(info, "0::/other\n").is_err());
    }

    #[test]
    fn without_v2_there_is_no_own_cgroup() {
        assert!(own_cgroup_dir(HYBRID, "4:memory:/x\n").is_err());
        let v1_only = "33 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(own_cgroup_dir(v1_only, "0::/\n").is_err());
    }
}
