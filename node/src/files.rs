//! Writing the node's files safely: atomically, and private where they hold keys.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash never leaves half a file. `private`: readable by the owner only (key material).
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = write_aside(path, "tmp", bytes, private)?;
    std::fs::rename(&tmp, path)
}

/// Writes `bytes` to a fresh hidden file beside `path` (creating the directory) and returns
/// its path. A leftover from a crash may have other permissions, so it is never reused.
fn write_aside(path: &Path, suffix: &str, bytes: &[u8], private: bool) -> std::io::Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.{suffix}", file_name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    write_fresh(&tmp, bytes, private)?;
    Ok(tmp)
}

/// Writes a file that must not exist yet, with owner-only permissions if `private`, and syncs it.
fn write_fresh(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates a new file; fails if it exists, so that `init` and `enroll` never overwrite keys.
/// The file appears whole or not at all: written aside, then hard-linked into place, which
/// fails atomically if something is there already.
pub fn write_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = write_aside(path, "new", bytes, private)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists already; refusing to overwrite it",
                path.display()
            ),
        ),
        _ => e,
    })
}
