//! Atomic file-system writes: a crash leaves either the old content or the new, never half.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    // tempfile's default mode is 0600; ask for 0666 so the kernel applies the
    // umask at open and the renamed file reads like its siblings (case 23).
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(|e| Error::io("creating a temporary file in", &dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("syncing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into", path, e.error))?;
    Ok(())
}

/// Fills a fresh folder beside `target` with `fill`, then swaps it into place.
///
/// An existing `target` is replaced only after `fill` succeeded.
pub fn replace_dir_atomic(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = parent_dir(target);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io("creating a staging folder in", &parent, e))?;
    fill(staging.path())?;
    let staged = staging.keep();
    if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(".old-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io("creating a folder in", &parent, e))?
            .keep();
        let old_target = old.join("old");
        std::fs::rename(target, &old_target).map_err(|e| Error::io("moving aside", target, e))?;
        std::fs::rename(&staged, target).map_err(|e| Error::io("renaming into", target, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, target).map_err(|e| Error::io("renaming into", target, e))?;
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
