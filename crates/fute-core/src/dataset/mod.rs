//! Labelled datasets: schema, examples, loaders with validation, splits, cards.
//!
//! On disk a dataset is a folder with `card.json` ([`DatasetCard`]) and
//! `examples.jsonl` (one normalised record per line, see [`record`]).

pub mod card;
pub mod example;
pub mod load;
pub mod record;
pub mod schema;
pub mod split;
pub mod stats;

pub use card::{DatasetCard, Dropped};
pub use example::{AnswerSpan, Example, Input, Split, Target};
pub use load::{read_csv, read_jsonl, to_jsonl, FieldMap};
pub use schema::{InputShape, TaskSchema};
pub use split::SplitConfig;

use crate::fsutil::{replace_dir_atomic, sha256_hex, write_atomic};
use crate::{Error, Result};
use std::path::Path;

/// File name of the card inside a dataset folder.
pub const CARD_FILE: &str = "card.json";
/// File name of the examples inside a dataset folder.
pub const EXAMPLES_FILE: &str = "examples.jsonl";

/// A labelled dataset: its card and all its examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Description, schema and split rule.
    pub card: DatasetCard,
    /// Every example, in file order.
    pub examples: Vec<Example>,
}

impl Dataset {
    /// Loads a dataset folder (`card.json` + `examples.jsonl`).
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let card_path = dir.join(CARD_FILE);
        let card: DatasetCard = crate::textfile::read_json(&card_path, "dataset card")?;
        card.schema
            .check()
            .map_err(|m| Error::data(&card_path, None, Some("schema"), m))?;
        let examples = read_jsonl(&dir.join(EXAMPLES_FILE), &card.schema)?;
        Ok(Dataset { card, examples })
    }

    /// Writes the dataset folder atomically (a reader sees the old or the new folder, never a mix).
    pub fn save_dir(&self, dir: &Path) -> Result<()> {
        let card = serde_json::to_vec_pretty(&self.card).expect("card serialises");
        let examples = to_jsonl(&self.examples, &self.card.schema);
        replace_dir_atomic(dir, |staging| {
            write_atomic(&staging.join(CARD_FILE), &card)?;
            write_atomic(&staging.join(EXAMPLES_FILE), &examples)
        })
    }

    /// The split of an example under this dataset's split rule.
    pub fn split_of(&self, ex: &Example) -> Split {
        self.card.split.split_of(ex)
    }

    /// The examples of one split, in file order.
    pub fn split(&self, split: Split) -> Vec<&Example> {
        self.examples
            .iter()
            .filter(|ex| self.split_of(ex) == split)
            .collect()
    }

    /// sha256 of the schema and the normalised examples: identifies the data in provenance.
    pub fn content_hash(&self) -> String {
        let mut bytes = serde_json::to_vec(&self.card.schema).expect("schema serialises");
        bytes.extend(to_jsonl(&self.examples, &self.card.schema));
        sha256_hex(&bytes)
    }
}
