//! A user's workspace: `<dir>/.fute/` with their own datasets and corpora, plus
//! the shared asset cache that holds the packaged ones.

use crate::corpus::Corpus;
use crate::dataset::Dataset;
use crate::import;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Where a dataset comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetOrigin {
    /// Imported by the user into the workspace (`fute data import`).
    Workspace,
    /// Built from a packaged asset.
    Packaged,
}

/// A dataset name and where it lives, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetEntry {
    /// Name.
    pub name: String,
    /// Origin.
    pub origin: DatasetOrigin,
    /// The asset it needs (packaged datasets).
    pub asset: Option<&'static str>,
    /// Whether it can be loaded now (its asset is fetched).
    pub available: bool,
}

/// The workspace folder and the asset cache.
#[derive(Debug, Clone)]
pub struct Workspace {
    dir: PathBuf,
    assets_root: PathBuf,
}

impl Workspace {
    /// A workspace rooted at `dir` (its state lives in `dir/.fute`).
    pub fn new(dir: impl Into<PathBuf>, assets_root: impl Into<PathBuf>) -> Self {
        Workspace {
            dir: dir.into(),
            assets_root: assets_root.into(),
        }
    }

    /// `<dir>/.fute`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".fute")
    }

    /// The asset cache.
    pub fn assets_root(&self) -> &Path {
        &self.assets_root
    }

    /// Folder of the user's dataset `name`.
    pub fn dataset_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("datasets").join(name)
    }

    /// Folder of corpus `name`.
    pub fn corpus_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("corpora").join(name)
    }

    /// Every dataset: the workspace's own first, then the packaged ones.
    pub fn datasets(&self) -> Result<Vec<DatasetEntry>> {
        let mut out: Vec<DatasetEntry> = subdirs(&self.state_dir().join("datasets"))?
            .into_iter()
            .map(|name| DatasetEntry {
                name,
                origin: DatasetOrigin::Workspace,
                asset: None,
                available: true,
            })
            .collect();
        for p in import::packaged() {
            if out.iter().any(|e| e.name == p.name) {
                continue;
            }
            out.push(DatasetEntry {
                name: p.name.to_owned(),
                origin: DatasetOrigin::Packaged,
                asset: Some(p.asset),
                available: p.is_available(&self.assets_root),
            });
        }
        Ok(out)
    }

    /// Loads dataset `name`: the workspace's own if it has one, else the packaged one.
    pub fn load_dataset(&self, name: &str) -> Result<Dataset> {
        let own = self.dataset_dir(name);
        if own.join(crate::dataset::CARD_FILE).is_file() {
            return Dataset::load_dir(&own);
        }
        match import::find(name) {
            Ok(p) => p.load(&self.assets_root),
            Err(_) => {
                let names: Vec<String> = self.datasets()?.into_iter().map(|e| e.name).collect();
                Err(Error::Invalid(format!(
                    "unknown dataset `{name}`; known datasets: {}. Import your own with `fute data import {name} --file …`",
                    names.join(", ")
                )))
            }
        }
    }

    /// Every corpus name in the workspace.
    pub fn corpora(&self) -> Result<Vec<String>> {
        subdirs(&self.state_dir().join("corpora"))
    }

    /// Loads corpus `name`.
    pub fn load_corpus(&self, name: &str) -> Result<Corpus> {
        let dir = self.corpus_dir(name);
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no corpus `{name}` in {}; build one with `fute corpus build {name}`",
                self.state_dir().join("corpora").display()
            )));
        }
        Corpus::load_dir(&dir)
    }
}

fn subdirs(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let e = e.map_err(|e| Error::io("listing", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
