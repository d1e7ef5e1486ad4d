//! The unlabelled corpus U: inputs (1 or 2 segments) that every model labels for its MTE.
//!
//! Built from unlabelled text sources and/or the inputs of labelled datasets with
//! their labels dropped, capped per source, seeded, de-duplicated, optionally
//! reshaped to a task's input shape. Its content hash identifies the embedding
//! space together with the surrogate and the method.

pub mod model_input;
pub mod sources;

use crate::dataset::Dataset;
use crate::fsutil::{replace_dir_atomic, sha256_hex, write_atomic};
use crate::rng::SplitMix64;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub use model_input::{last_segment, ModelInput};
pub use sources::{TextSource, TEXT_SOURCES};

/// One unlabelled input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CorpusInput {
    /// 1 or 2 text segments.
    pub segments: Vec<String>,
    /// Where it came from (`wordnet-examples`, `dataset:imdb`, …).
    pub source: String,
}

/// Which input shape the corpus is reshaped to (the paper's "task-shaped" U).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorpusShape {
    /// Keep each input as it is (1 or 2 segments).
    #[default]
    Any,
    /// Single texts (sentiment-style models): a pair keeps its second segment.
    Single,
    /// Pairs (NLI-style models): a single text is cut in two halves at a word boundary.
    Pair,
}

/// How to build a corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusSpec {
    /// Unlabelled text sources by name (see [`TEXT_SOURCES`]).
    pub sources: Vec<String>,
    /// Labelled datasets whose inputs join U (labels dropped).
    pub datasets: Vec<String>,
    /// Datasets kept out (evaluation datasets); also removes their exact inputs from U.
    pub exclude: Vec<String>,
    /// At most this many inputs from each source or dataset.
    pub per_source: usize,
    /// At most this many inputs overall (after de-duplication).
    pub max_total: Option<usize>,
    /// Seed of every shuffle.
    pub seed: u64,
    /// Reshaping.
    pub shape: CorpusShape,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            sources: TEXT_SOURCES.iter().map(|s| s.name.to_owned()).collect(),
            datasets: Vec::new(),
            exclude: Vec::new(),
            per_source: 1000,
            max_total: None,
            seed: 42,
            shape: CorpusShape::Any,
        }
    }
}

/// What a corpus folder's `card.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusCard {
    /// Corpus name.
    pub name: String,
    /// sha256 of the inputs (segments only, in order).
    pub hash: String,
    /// How it was built.
    pub spec: CorpusSpec,
    /// Inputs per source after capping and de-duplication.
    pub per_source: BTreeMap<String, usize>,
    /// Number of inputs.
    pub size: usize,
}

/// The unlabelled corpus U.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Name, hash, provenance.
    pub card: CorpusCard,
    /// The inputs, in their final (shuffled) order.
    pub inputs: Vec<CorpusInput>,
}

/// File names inside a corpus folder.
pub const INPUTS_FILE: &str = "inputs.jsonl";
const CARD_FILE: &str = "card.json";

/// Hash of a list of inputs: the identity of U in an embedding space.
pub fn content_hash(inputs: &[CorpusInput]) -> String {
    let mut bytes = Vec::new();
    for i in inputs {
        serde_json::to_writer(&mut bytes, &i.segments).expect("strings serialise");
        bytes.push(b'\n');
    }
    sha256_hex(&bytes)
}

/// A text cut in two at the middle word boundary (the first half has the
/// smaller half of the words), whitespace normalised to single spaces.
pub fn halves(text: &str) -> [String; 2] {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mid = words.len() / 2;
    [words[..mid].join(" "), words[mid..].join(" ")]
}

fn reshape(segments: Vec<String>, shape: CorpusShape) -> Option<Vec<String>> {
    match (shape, segments.len()) {
        (CorpusShape::Any, _) => Some(segments),
        (CorpusShape::Single, 2) => Some(vec![segments[1].clone()]),
        (CorpusShape::Single, _) => Some(segments),
        (CorpusShape::Pair, 1) => {
            if segments[0].split_whitespace().count() < 4 {
                return None;
            }
            let [a, b] = halves(&segments[0]);
            Some(vec![a, b])
        }
        (CorpusShape::Pair, _) => Some(segments),
    }
}

/// Builds a corpus. `load_dataset` resolves a dataset name (packaged or the user's).
pub fn build(
    name: &str,
    spec: &CorpusSpec,
    assets_root: &Path,
    mut load_dataset: impl FnMut(&str) -> Result<Dataset>,
) -> Result<Corpus> {
    if spec.per_source == 0 {
        return Err(Error::Invalid("--per-source must be at least 1".into()));
    }
    let mut excluded_inputs: HashSet<Vec<String>> = HashSet::new();
    for ex in &spec.exclude {
        for e in load_dataset(ex)?.examples {
            excluded_inputs.insert(e.input.segments().iter().map(|s| s.to_string()).collect());
        }
    }
    let mut groups: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for s in &spec.sources {
        let texts = TextSource::find(s)?.read(assets_root)?;
        groups.push((s.clone(), texts.into_iter().map(|t| vec![t]).collect()));
    }
    for d in &spec.datasets {
        if spec.exclude.contains(d) {
            continue;
        }
        let ds = load_dataset(d)?;
        let inputs = ds
            .examples
            .iter()
            .map(|e| e.input.segments().iter().map(|s| s.to_string()).collect())
            .collect();
        groups.push((format!("dataset:{d}"), inputs));
    }
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut per_source = BTreeMap::new();
    let mut inputs = Vec::new();
    for (i, (source, mut items)) in groups.into_iter().enumerate() {
        // Each group gets its own stream so adding a source never changes another's sample.
        let mut rng = SplitMix64::new(spec.seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
        rng.shuffle(&mut items);
        let mut kept = 0;
        for segments in items {
            if kept == spec.per_source {
                break;
            }
            if excluded_inputs.contains(&segments) {
                continue;
            }
            let Some(segments) = reshape(segments, spec.shape) else {
                continue;
            };
            if !seen.insert(segments.clone()) {
                continue;
            }
            inputs.push(CorpusInput {
                segments,
                source: source.clone(),
            });
            kept += 1;
        }
        per_source.insert(source, kept);
    }
    SplitMix64::new(spec.seed).shuffle(&mut inputs);
    if let Some(max) = spec.max_total {
        inputs.truncate(max);
        per_source = BTreeMap::new();
        for i in &inputs {
            *per_source.entry(i.source.clone()).or_insert(0) += 1;
        }
    }
    if inputs.is_empty() {
        return Err(Error::Invalid(format!(
            "corpus `{name}` would be empty: name at least one text source or dataset with usable texts"
        )));
    }
    let card = CorpusCard {
        name: name.to_owned(),
        hash: content_hash(&inputs),
        spec: spec.clone(),
        per_source,
        size: inputs.len(),
    };
    Ok(Corpus { card, inputs })
}

impl Corpus {
    /// Keeps a seeded sample of `n` inputs (all when fewer) and re-hashes the card,
    /// so the subset is a fixed corpus of its own: the same `n` and `seed` give the
    /// same inputs, in the same order, with the same hash.
    pub fn keep_seeded_subset(&mut self, n: usize, seed: u64) {
        crate::rng::SplitMix64::new(seed).shuffle(&mut self.inputs);
        self.inputs.truncate(n);
        self.card.hash = content_hash(&self.inputs);
    }

    /// Writes `card.json` and `inputs.jsonl` atomically into `dir`.
    pub fn save_dir(&self, dir: &Path) -> Result<()> {
        let card = serde_json::to_vec_pretty(&self.card).expect("card serialises");
        let mut lines = Vec::new();
        for i in &self.inputs {
            serde_json::to_writer(&mut lines, i).expect("strings serialise");
            lines.push(b'\n');
        }
        replace_dir_atomic(dir, |staging| {
            write_atomic(&staging.join(CARD_FILE), &card)?;
            write_atomic(&staging.join(INPUTS_FILE), &lines)
        })
    }

    /// Loads a corpus folder and checks its hash.
    pub fn load_dir(dir: &Path) -> Result<Corpus> {
        let card_path = dir.join(CARD_FILE);
        let card: CorpusCard = crate::textfile::read_json(&card_path, "corpus card")?;
        let path = dir.join(INPUTS_FILE);
        let text = crate::textfile::read_text(&path)?;
        let mut inputs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let input: CorpusInput = serde_json::from_str(line).map_err(|e| {
                Error::data(
                    &path,
                    Some(n + 1),
                    None,
                    format!("expected {{\"segments\": [..], \"source\"}}: {e}"),
                )
            })?;
            if input.segments.is_empty()
                || input.segments.len() > 2
                || input.segments.iter().any(|s| s.trim().is_empty())
            {
                return Err(Error::data(
                    &path,
                    Some(n + 1),
                    Some("segments"),
                    "an input needs 1 or 2 non-empty segments",
                ));
            }
            inputs.push(input);
        }
        if inputs.is_empty() {
            return Err(Error::data(&path, None, None, "the corpus is empty"));
        }
        let hash = content_hash(&inputs);
        if hash != card.hash {
            return Err(Error::data(
                &path,
                None,
                None,
                format!("content hash {hash} differs from the card's {}: the file was edited; rebuild with `fute corpus build`", card.hash),
            ));
        }
        Ok(Corpus { card, inputs })
    }
}
