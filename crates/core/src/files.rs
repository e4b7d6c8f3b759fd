//! Writing files that hold secrets or must never be seen half-written: keys, device secrets,
//! a pool's certificate and key pairs, transcripts, job files.
//!
//! Every write goes through a fresh temporary file created exclusively in the destination's
//! folder (readable by its owner only from the moment it exists), is synced, then renamed into
//! place. A symlink planted at the temporary name cannot exist (the name is new and created with
//! `O_EXCL`), and a symlink at the final name is replaced, never followed. A file that must not
//! be replaced (a CA key) is put in place with a no-clobber link, so an existing file or
//! symlink there is refused. Names built from what a device reports go through
//! [`safe_component`] first.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse: the caller says which flag replaces it.
    Refuse,
    /// Replace it (the old file, or a symlink itself, never what a symlink points to).
    Replace,
}

/// Who may read the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// 0600: keys, secrets, transcripts, job files with passwords.
    Private,
    /// 0644: certificates and other public material.
    Public,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Public => 0o644,
        }
    }
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}: already exists (it is not replaced; move it away or pass --force)")]
    /// The destination exists and was not to be replaced.
    Exists(PathBuf),
    #[error("{0}: cannot write it: {1}")]
    /// Creating, writing, syncing or renaming failed.
    Io(PathBuf, std::io::Error),
}

/// Writes `bytes` to `path` whole, synced, with `access`; see the module docs.
pub fn write(
    path: &Path,
    bytes: &[u8],
    access: Access,
    existing: Existing,
) -> Result<(), WriteError> {
    let io = |e: std::io::Error| WriteError::Io(path.to_path_buf(), e);
    let dir = parent(path);
    if existing == Existing::Refuse && path.symlink_metadata().is_ok() {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let mut tmp = temp_in(dir, access).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    match existing {
        Existing::Replace => {
            tmp.persist(path).map_err(|e| io(e.error))?;
        }
        Existing::Refuse => {
            tmp.persist_noclobber(path).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    WriteError::Exists(path.to_path_buf())
                } else {
                    io(e.error)
                }
            })?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// A private file written as it goes (a transcript), created fresh at `path`: an existing file
/// or symlink there is removed first (the link itself, never its target), and the new file is
/// created exclusively with mode 0600, so a link planted meanwhile makes it fail, not follow.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Creates a folder (and its parents) that will hold secrets: new folders are 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A value that cannot name a file: it could reach outside the folder it is meant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` cannot be part of a file name (no `/`, `\\`, `..` or control characters, 1 to 128 bytes)", .0.escape_debug())]
pub struct UnsafeName(pub String);

/// Checks that `value` (something a device or a template produced) can be one path component:
/// not empty, no `/` or `\`, not `.` or `..`, no NUL or control characters, at most 128 bytes.
pub fn safe_component(value: &str) -> Result<&str, UnsafeName> {
    let bad = value.is_empty()
        || value == "."
        || value == ".."
        || value.len() > 128
        || value
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        Err(UnsafeName(value.to_string()))
    } else {
        Ok(value)
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_in(dir: &Path, access: Access) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".atprov-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(access.mode()))
        .tempfile_in(dir)
}

/// Makes a rename durable; failing to is not worth failing the write for.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `path` made absolute (against the working folder) with `.` and `..` resolved lexically
/// (symlinks are not followed): how paths that outlive the run (a journal's pool paths) are
/// stored.
pub fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = std::path::PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_symlink_at_the_final_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "untouched").unwrap();
        let key = dir.path().join("dev.key");
        std::os::unix::fs::symlink(&target, &key).unwrap();
        write(&key, b"SECRET", Access::Private, Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert!(!key.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&key).unwrap(), b"SECRET");
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn refusing_keeps_an_existing_file_or_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.key");
        std::fs::write(&key, "old").unwrap();
        let e = write(&key, b"new", Access::Private, Existing::Refuse).unwrap_err();
        assert!(matches!(e, WriteError::Exists(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "old");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(write(&link, b"new", Access::Private, Existing::Refuse).is_err());
        assert!(!dir.path().join("nowhere").exists());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn a_streamed_private_file_replaces_a_symlink_without_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "untouched").unwrap();
        let t = dir.path().join("session.txt");
        std::os::unix::fs::symlink(&target, &t).unwrap();
        let mut f = create_private(&t).unwrap();
        f.write_all(b"AT\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert_eq!(mode(&t), 0o600);
    }

    #[test]
    fn device_reported_names_are_checked() {
        for bad in ["", ".", "..", "../../x", "a/b", "a\\b", "x\0y", "a\nb"] {
            assert!(safe_component(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_component("866834041644845"), Ok("866834041644845"));
        assert_eq!(safe_component("thing-1.a"), Ok("thing-1.a"));
    }

    #[test]
    fn absolute_paths_resolve_dots_lexically() {
        let p = super::absolute(std::path::Path::new("/a/b/../c/./d"));
        assert_eq!(p, std::path::PathBuf::from("/a/c/d"));
        assert!(super::absolute(std::path::Path::new("x/../y")).is_absolute());
    }
}
