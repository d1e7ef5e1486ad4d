//! Atomic file-system writes: a crash leaves either the old content or the new, never half.
//!
//! Files written this way get the permissions any other program's files get,
//! `0666` less the umask (`0644` under the usual `022`): a temporary file is
//! created `0600` by default, and renaming it into place would keep that, hiding
//! weights, datasets and exports from the rest of a group.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The permissions a new file is asked for; the kernel applies the umask.
#[cfg(unix)]
const FILE_MODE: u32 = 0o666;

/// A [`tempfile::Builder`] whose files are created `0666` less the umask, like
/// `File::create`'s, so they keep ordinary permissions once renamed into place.
pub fn temp_file_builder<'a, 'b>() -> tempfile::Builder<'a, 'b> {
    let mut b = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(FILE_MODE));
    }
    b
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a
/// rename; the file gets `0666` less the umask.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let mut tmp = temp_file_builder()
        .prefix(".tmp-")
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
