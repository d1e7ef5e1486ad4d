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
    ///
    /// # Errors
    /// [`Error::Invalid`] when `name` is not a plain name (see [`check_name`]).
    pub fn dataset_dir(&self, name: &str) -> Result<PathBuf> {
        check_name("dataset", name)?;
        Ok(self.state_dir().join("datasets").join(name))
    }

    /// Folder of corpus `name`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `name` is not a plain name (see [`check_name`]).
    pub fn corpus_dir(&self, name: &str) -> Result<PathBuf> {
        check_name("corpus", name)?;
        Ok(self.state_dir().join("corpora").join(name))
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
        let own = self.dataset_dir(name)?;
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
        let dir = self.corpus_dir(name)?;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no corpus `{name}` in {}; build one with `fute corpus build {name}`",
                self.state_dir().join("corpora").display()
            )));
        }
        Corpus::load_dir(&dir)
    }
}

/// Longest name accepted for a dataset, corpus or run.
pub const MAX_NAME_LEN: usize = 100;

/// Checks that `name`, given on the command line for a `kind` of thing that
/// fute keeps in a folder of its own (dataset, corpus, run), is a plain name:
/// ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit, at
/// most [`MAX_NAME_LEN`] characters. That rules out every way out of the
/// workspace (`..`, `/`, `\`, absolute paths, NUL) and names that hide
/// (`.x`) or read as options (`-x`), on every file system.
///
/// # Errors
/// [`Error::Invalid`] saying what is wrong and what a name may hold.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("is longer than {MAX_NAME_LEN} characters"))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(format!("contains {c:?}"))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("must start with a letter or digit".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(Error::Invalid(format!(
            "invalid {kind} name {name:?}: {p}; a name holds letters, digits, `-`, `_` and \
             `.` (e.g. `my-{kind}`), never a path"
        ))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_paths_do_not() {
        for ok in ["imdb", "my-data_2", "u.v2", "A1", &"x".repeat(MAX_NAME_LEN)] {
            assert!(check_name("dataset", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/../../b",
            "/etc",
            "a/b",
            "a\\b",
            ".hidden",
            "-rf",
            "nul\0byte",
            "tab\tname",
            "é",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            let e = check_name("corpus", bad).unwrap_err().to_string();
            assert!(
                e.contains("invalid corpus name") && e.contains("never a path"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn workspace_folders_refuse_escaping_names() {
        let ws = Workspace::new("/w", "/a");
        assert_eq!(
            ws.dataset_dir("d").unwrap(),
            Path::new("/w/.fute/datasets/d")
        );
        assert!(ws.dataset_dir("../../etc").is_err());
        assert!(ws.corpus_dir("/abs").is_err());
        assert!(ws.load_dataset("../x").is_err());
        assert!(ws.load_corpus("..").is_err());
    }
}
