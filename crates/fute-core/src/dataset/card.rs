//! The dataset card: what a dataset is, where it came from, how it is split.

use super::schema::TaskSchema;
use super::split::SplitConfig;
use serde::{Deserialize, Serialize};

/// Rows of the source that an importer did not keep, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Why (e.g. "duplicate text", "label `plot` is not a sentiment").
    pub reason: String,
    /// How many rows.
    pub count: usize,
}

/// A dataset's description, stored as `card.json` beside `examples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetCard {
    /// Short unique name (`imdb`, `tweets`, …).
    pub name: String,
    /// The task.
    pub schema: TaskSchema,
    /// One or two sentences for humans.
    #[serde(default)]
    pub description: String,
    /// Where the data came from (package, file, paper).
    #[serde(default)]
    pub source: String,
    /// Licence of the data.
    #[serde(default)]
    pub licence: String,
    /// How examples are assigned to train/dev/test.
    #[serde(default)]
    pub split: SplitConfig,
    /// Rows in the raw source before anything was dropped (imported datasets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<usize>,
    /// What the importer dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Dropped>,
    /// Version of the importer that wrote it (a newer importer re-imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importer_version: Option<u32>,
}

impl DatasetCard {
    /// A card with default split and empty provenance.
    pub fn new(name: impl Into<String>, schema: TaskSchema) -> Self {
        DatasetCard {
            name: name.into(),
            schema,
            description: String::new(),
            source: String::new(),
            licence: String::new(),
            split: SplitConfig::default(),
            source_rows: None,
            dropped: Vec::new(),
            importer_version: None,
        }
    }
}
