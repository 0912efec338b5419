//! Validation of project paths.
//!
//! A project is a directory the agent may edit, so the rules are strict: an absolute path, no
//! `..`, an existing directory, inside one of the configured roots *after* symlinks are resolved
//! (so a link cannot point out of a root), and never nested in or around another project (two
//! projects sharing files would let one run clobber the other's work).

use std::path::{Component, Path, PathBuf};

use crate::error::{ApiError, Code};

/// The longest path accepted.
const MAX_PATH_BYTES: usize = 4096;

/// Checks `raw` and returns its canonical form.
pub fn validate_project_path(raw: &str, roots: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let invalid =
        |why: &str| ApiError::new(Code::InvalidPath, format!("invalid project path: {why}"));
    if raw.is_empty() {
        return Err(invalid("the path is empty"));
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(invalid("the path is too long"));
    }
    if raw.contains('\0') {
        return Err(invalid("the path contains a NUL byte"));
    }
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(invalid("the path must be absolute"));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid("the path must not contain '..'"));
    }
    // Resolve symlinks before any other check, so that the checks apply to what is really there.
    let canonical = std::fs::canonicalize(path)
        .map_err(|_| invalid("the directory does not exist or cannot be read"))?;
    if !canonical.is_dir() {
        return Err(invalid("the path is not a directory"));
    }
    let inside = roots.iter().any(|root| {
        std::fs::canonicalize(root)
            .map(|r| canonical.starts_with(&r))
            .unwrap_or(false)
    });
    if !inside {
        return Err(invalid(
            "the directory is outside the project roots this server allows",
        ));
    }
    Ok(canonical)
}

/// Refuses a path that contains or lies inside the server's data directory: an agent working
/// there could rewrite history and metadata.
pub fn check_outside_data_dir(candidate: &Path, data_dir: &Path) -> Result<(), ApiError> {
    if candidate.starts_with(data_dir) || data_dir.starts_with(candidate) {
        return Err(ApiError::new(
            Code::InvalidPath,
            "invalid project path: it contains or lies inside the server's data directory, which agents must not be able to edit",
        ));
    }
    Ok(())
}

/// A directory that follows the project rules, canonical: inside a project root, away from
/// the data directory and from every project in `others`. Used for a new project's path and
/// for a run's extra directories alike.
pub fn check_project_dir<'a>(
    raw: &str,
    roots: &[PathBuf],
    data_dir: &Path,
    others: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<PathBuf, ApiError> {
    let path = validate_project_path(raw, roots)?;
    check_outside_data_dir(&path, data_dir)?;
    check_not_nested(&path, others)?;
    Ok(path)
}

/// Refuses a path that equals, contains or lies inside an existing project's path.
pub fn check_not_nested<'a>(
    candidate: &Path,
    existing: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<(), ApiError> {
    for (id, other) in existing {
        if candidate == other {
            return Err(ApiError::new(
                Code::ProjectExists,
                format!("a project already exists for this directory: {id}"),
            )
            .with_details(serde_json::json!({ "project_id": id })));
        }
        if candidate.starts_with(other) || other.starts_with(candidate) {
            return Err(ApiError::new(
                Code::ProjectNesting,
                format!("the directory is nested in or around another project: {id}"),
            )
            .with_details(serde_json::json!({ "project_id": id })));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        (dir, root)
    }

    fn code(r: Result<PathBuf, ApiError>) -> Code {
        r.unwrap_err().code
    }

    #[test]
    fn accepts_a_directory_inside_a_root() {
        let (_d, root) = setup();
        let p = validate_project_path(
            root.join("a").to_str().unwrap(),
            std::slice::from_ref(&root),
        )
        .unwrap();
        assert_eq!(p, std::fs::canonicalize(root.join("a")).unwrap());
    }

    #[test]
    fn refuses_relative_dotdot_missing_files_and_outsiders() {
        let (d, root) = setup();
        let roots = [root.clone()];
        assert_eq!(code(validate_project_path("a", &roots)), Code::InvalidPath);
        assert_eq!(code(validate_project_path("", &roots)), Code::InvalidPath);
        let dotdot = format!("{}/a/../a", root.display());
        assert_eq!(
            code(validate_project_path(&dotdot, &roots)),
            Code::InvalidPath
        );
        let missing = format!("{}/nope", root.display());
        assert_eq!(
            code(validate_project_path(&missing, &roots)),
            Code::InvalidPath
        );
        let outside = d.path().join("outside");
        assert_eq!(
            code(validate_project_path(outside.to_str().unwrap(), &roots)),
            Code::InvalidPath
        );
        std::fs::write(root.join("file"), "x").unwrap();
        assert_eq!(
            code(validate_project_path(
                root.join("file").to_str().unwrap(),
                &roots
            )),
            Code::InvalidPath
        );
        assert_eq!(
            code(validate_project_path("/tmp/\0x", &roots)),
            Code::InvalidPath
        );
    }

    #[test]
    fn resolves_symlinks_before_checking_the_root() {
        let (d, root) = setup();
        let link = root.join("escape");
        std::os::unix::fs::symlink(d.path().join("outside"), &link).unwrap();
        let err =
            validate_project_path(link.to_str().unwrap(), std::slice::from_ref(&root)).unwrap_err();
        assert_eq!(err.code, Code::InvalidPath);
        // A link that stays inside is fine, and resolves to its target.
        let inner = root.join("inner");
        std::os::unix::fs::symlink(root.join("a/b"), &inner).unwrap();
        let p =
            validate_project_path(inner.to_str().unwrap(), std::slice::from_ref(&root)).unwrap();
        assert!(p.ends_with("a/b"));
    }

    #[test]
    fn accepts_unicode_names_and_errors_do_not_echo_server_paths() {
        let (_d, root) = setup();
        let uni = root.join("プロジェクト ü");
        std::fs::create_dir(&uni).unwrap();
        assert!(validate_project_path(uni.to_str().unwrap(), std::slice::from_ref(&root)).is_ok());
        let err =
            validate_project_path("/definitely/missing", std::slice::from_ref(&root)).unwrap_err();
        assert!(!err.error.contains(root.to_str().unwrap()));
    }

    #[test]
    fn refuses_nesting_both_ways() {
        let a = Path::new("/r/a");
        let existing = [("p1", a)];
        assert_eq!(
            check_not_nested(Path::new("/r/a/b"), existing)
                .unwrap_err()
                .code,
            Code::ProjectNesting
        );
        assert_eq!(
            check_not_nested(Path::new("/r"), existing)
                .unwrap_err()
                .code,
            Code::ProjectNesting
        );
        assert_eq!(
            check_not_nested(Path::new("/r/a"), existing)
                .unwrap_err()
                .code,
            Code::ProjectExists
        );
        assert!(check_not_nested(Path::new("/r/ab"), existing).is_ok());
    }
}
