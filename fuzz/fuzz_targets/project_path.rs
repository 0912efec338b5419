//! Path validation must never accept a path outside the root, whatever the input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn root() -> &'static std::path::PathBuf {
    static ROOT: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let d = tempfile::tempdir().expect("temp dir");
            let root = d.path().join("root");
            std::fs::create_dir_all(root.join("a/b")).expect("dirs");
            std::os::unix::fs::symlink("/", root.join("escape")).expect("link");
            let root = std::fs::canonicalize(&root).expect("canonical");
            (d, root)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let root = root();
    let candidate = format!("{}/{s}", root.display());
    for raw in [s, candidate.as_str()] {
        if let Ok(p) = agentvisor_actors::paths::validate_project_path(raw, std::slice::from_ref(root)) {
            assert!(p.starts_with(root), "accepted {p:?} outside the root");
            assert!(p.is_dir());
        }
    }
});
