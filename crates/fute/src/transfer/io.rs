//! Atomic writes of the run folder's files: `fute_core::fsutil::write_atomic`
//! (temporary file + rename, mode from the umask), plus pretty JSON.

use std::path::Path;

use anyhow::Result;

pub use fute_core::fsutil::write_atomic;

/// Writes `value` as pretty JSON (with a final newline) atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(write_atomic(path, &bytes)?)
}
