//! Shared machinery of importers: collecting examples, dropping duplicates, counting drops.

use crate::dataset::{Dataset, DatasetCard, Dropped, Example, Input, Target};
use std::collections::{BTreeMap, HashSet};

/// Accumulates examples of one importer and what it dropped.
pub(crate) struct Builder {
    card: DatasetCard,
    examples: Vec<Example>,
    seen_inputs: HashSet<Input>,
    dropped: BTreeMap<String, usize>,
    source_rows: usize,
}

impl std::hash::Hash for Input {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for s in self.segments() {
            s.hash(state);
        }
    }
}

impl Builder {
    pub fn new(card: DatasetCard) -> Self {
        Builder {
            card,
            examples: Vec::new(),
            seen_inputs: HashSet::new(),
            dropped: BTreeMap::new(),
            source_rows: 0,
        }
    }

    /// Counts one raw source row (call once per row, kept or not).
    pub fn row(&mut self) {
        self.source_rows += 1;
    }

    /// Records a dropped row.
    pub fn drop_row(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_owned()).or_insert(0) += 1;
    }

    /// Adds an example unless its input text was seen before (first one wins).
    pub fn push(&mut self, id: String, input: Input, target: Target) {
        if input
            .segments()
            .iter()
            .any(|s| !crate::textfile::has_visible_text(s))
        {
            self.drop_row("empty text");
            return;
        }
        if !self.seen_inputs.insert(input.clone()) {
            self.drop_row("duplicate input text");
            return;
        }
        self.examples.push(Example {
            id,
            input,
            target,
            fixed_split: None,
        });
    }

    /// Index of a label name in the schema.
    pub fn label(&self, name: &str) -> Option<usize> {
        self.card.schema.labels()?.iter().position(|l| l == name)
    }

    pub fn finish(mut self, importer_version: u32) -> Dataset {
        self.card.source_rows = Some(self.source_rows);
        self.card.importer_version = Some(importer_version);
        self.card.dropped = self
            .dropped
            .into_iter()
            .map(|(reason, count)| Dropped { reason, count })
            .collect();
        Dataset {
            card: self.card,
            examples: self.examples,
        }
    }
}

/// Collapses runs of whitespace and trims.
pub(crate) fn squash_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a text file as UTF-8, or as latin-1 when it is not valid UTF-8
/// (some packaged corpora predate UTF-8).
pub fn read_text_lenient(path: &std::path::Path) -> crate::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io("reading", path, e))?;
    let bytes = match bytes.strip_prefix(crate::textfile::UTF8_BOM) {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    })
}
