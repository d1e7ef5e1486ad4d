//! A fine-tuned model M's outputs on the corpus U: the targets of its MTE.
//!
//! Classifiers give their full softmax distribution (soft labels), regressors
//! their value, extractive-QA models their best answer span — in characters of
//! the context, so the surrogate (with another tokenizer) gets the same answer
//! (the reference code reuses M's token indices unchanged, which is wrong when
//! the tokenizers differ).
//!
//! Each model reads U's rows in its own input shape (`paper.md` §2.4, see
//! [`ModelInput`]): a single-input model the last segment, a pair model the pair
//! or (text, ""), a QA model (question, context or ""). The shape comes from
//! the training record `fute train` writes into the model's `config.json`
//! (`fute_training`), or from the user (`--input`); the surrogate is trained on
//! the same shaped rows.
//!
//! Outputs are appended to a JSONL cache, one line per input, keyed by
//! (model hash, U hash, input shape): a rerun costs nothing and an interrupted
//! run resumes.

use crate::probe::{text_input, ProbeHead, ProbeTargets};
use anyhow::{bail, Context as _};
use candle_core::{Device, D};
use fute_core::corpus::{Corpus, ModelInput};
use fute_core::dataset::TaskSchema;
use fute_nn::{
    models, BuildOptions, HeadSpec, Mode, TaskModel, TextInput, TextTokenizer, Truncation,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One cached output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// Class distribution.
    Probs(Vec<f32>),
    /// Regression value.
    Value(f32),
    /// Answer span `[start, end)` in characters of the context, or none.
    Span(Option<(usize, usize)>),
}

/// A fine-tuned model M, ready to label U.
pub struct SubjectModel {
    /// Its folder.
    pub dir: PathBuf,
    /// sha256 of config.json, model.safetensors and tokenizer.json.
    pub hash: String,
    /// Its head.
    pub head: HeadSpec,
    /// How it reads its input: from its training record, from the user, or
    /// unknown (`None`; then it cannot label U). A QA head is always `Qa`.
    pub input: Option<ModelInput>,
    /// How many examples it was fine-tuned on (its DataSize), when known.
    pub train_examples: Option<usize>,
    /// A classifier's label names by output index (`config.json`'s `id2label`;
    /// `None` when it names none): the order of its output distributions.
    pub labels: Option<Vec<String>>,
    /// Its architecture, `config.json`'s `model_type` (`bert`, `llama`, …): kept with its
    /// MTEs so that a map of several architectures can tell them apart.
    pub model_type: String,
    model: Box<dyn TaskModel>,
    tokenizer: TextTokenizer,
}

impl SubjectModel {
    /// Loads a fine-tuned model folder (head taken from its config).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            if !dir.join(f).is_file() {
                bail!(fute_core::Error::Invalid(format!(
                    "model folder {} lacks {f}; expected a fine-tuned Hugging Face folder (from `fute train` or transformers' save_pretrained)",
                    dir.display()
                )));
            }
        }
        let model = models::load_task_folder(dir, &BuildOptions::default()).map_err(|e| {
            fute_core::Error::Invalid(format!(
                "cannot use {} as a subject model: {e}",
                dir.display()
            ))
        })?;
        let head = model.head();
        let tokenizer = TextTokenizer::from_folder(dir)?;
        let hash = crate::surrogate::hash_model_folder(dir)?;
        let record = read_training_record(dir)?;
        let input = if head == HeadSpec::QuestionAnswering {
            Some(ModelInput::Qa)
        } else {
            record.as_ref().and_then(|r| r.input)
        };
        let cfg_path = dir.join("config.json");
        let (raw, arch) = models::read_config(&cfg_path)?;
        let labels = match head {
            HeadSpec::Classification { .. } => {
                crate::finetune::labels::model_label_names(&raw, &cfg_path)?
            }
            _ => None,
        };
        Ok(SubjectModel {
            dir: dir.to_path_buf(),
            hash,
            head,
            input,
            train_examples: record.and_then(|r| r.train_examples),
            labels,
            model_type: arch.model_type.to_owned(),
            model,
            tokenizer,
        })
    }

    /// The input shape, or an error that says how to give it.
    pub fn input(&self) -> anyhow::Result<ModelInput> {
        self.input.ok_or_else(|| {
            anyhow::Error::new(fute_core::Error::Invalid(format!(
                "cannot tell whether {} reads one text or a text pair (its config.json has no `fute_training` record, which `fute train` writes); pass --input single or --input pair",
                self.dir.display()
            )))
        })
    }

    /// The corpus rows in this model's input shape (what it and the surrogate see).
    pub fn shaped_inputs(&self, corpus: &Corpus) -> anyhow::Result<Vec<Vec<String>>> {
        let shape = self.input()?;
        Ok(corpus
            .inputs
            .iter()
            .map(|i| shape.shape(&i.segments))
            .collect())
    }

    /// The store subject's hash: the model's content and the input shape it was run with.
    pub fn subject_hash(&self) -> anyhow::Result<String> {
        use sha2::Digest as _;
        let material = format!("{}\ninput={}", self.hash, self.input()?.name());
        Ok(hex::encode(sha2::Sha256::digest(material.as_bytes())))
    }

    /// The surrogate head this model's outputs need.
    pub fn probe_head(&self) -> ProbeHead {
        match self.head {
            HeadSpec::Classification { num_labels } => ProbeHead::Classification(num_labels),
            HeadSpec::Regression => ProbeHead::Regression,
            HeadSpec::QuestionAnswering => ProbeHead::QuestionAnswering,
        }
    }

    /// Runs the model on a batch of inputs, as given (see [`Self::shaped_inputs`]).
    pub fn run(&self, inputs: &[Vec<String>], max_len: usize) -> anyhow::Result<Vec<Output>> {
        let qa = self.head == HeadSpec::QuestionAnswering;
        let texts: Vec<TextInput> = inputs.iter().map(|s| text_input(s)).collect();
        let trunc = if qa {
            Truncation::Question {
                max_question: fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN,
            }
        } else {
            Truncation::LongestFirst
        };
        let enc = self.tokenizer.encode_batch(&texts, max_len, trunc)?;
        let input = enc.to_input(&Device::Cpu)?;
        let out = self.model.forward(&input, &Mode::eval())?;
        Ok(match self.head {
            HeadSpec::Classification { .. } => {
                let probs = candle_nn::ops::softmax(out.logits()?, D::Minus1)?.to_vec2::<f32>()?;
                probs.into_iter().map(Output::Probs).collect()
            }
            HeadSpec::Regression => out
                .scores()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(Output::Value)
                .collect(),
            HeadSpec::QuestionAnswering => {
                let (s, e) = out.span()?;
                let (s, e) = (s.to_vec2::<f32>()?, e.to_vec2::<f32>()?);
                enc.encodings
                    .iter()
                    .enumerate()
                    .map(|(i, encoding)| Output::Span(best_span(encoding, &s[i], &e[i], 30)))
                    .collect()
            }
        })
    }
}

/// The highest-scoring context span (start ≤ end, at most `max_tokens` long), in
/// characters, or `None` when "no answer" ([CLS], position 0) scores higher.
fn best_span(
    enc: &fute_nn::Encoding,
    start: &[f32],
    end: &[f32],
    max_tokens: usize,
) -> Option<(usize, usize)> {
    let context: Vec<usize> = (0..enc.len())
        .filter(|&i| enc.sequence_ids[i] == Some(1) && enc.offsets[i].is_some())
        .collect();
    let mut best: Option<(f32, usize, usize)> = None;
    for &i in &context {
        for &j in context.iter().filter(|&&j| j >= i && j < i + max_tokens) {
            let score = start[i] + end[j];
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, i, j));
            }
        }
    }
    let (score, i, j) = best?;
    if start[0] + end[0] > score {
        return None;
    }
    enc.token_span_to_char_span(i, j)
}

/// The probe set of `model`'s MTE on `corpus` (paper §2.4): each row in the model's own
/// input shape, for the model and for the surrogate alike, with the model's outputs
/// ([`outputs_on_corpus`]) as the targets.
///
/// Errors: the model's input shape is unknown, or running it fails.
pub fn mte_probe(
    model: &SubjectModel,
    corpus: &Corpus,
    cache_dir: &Path,
    max_len: usize,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<crate::probe::ProbeSet> {
    let targets = outputs_on_corpus(model, corpus, cache_dir, max_len, batch, progress)?;
    Ok(crate::probe::ProbeSet {
        inputs: model.shaped_inputs(corpus)?,
        targets,
        head: model.probe_head(),
    })
}

/// Labels every input of `corpus`, in the model's input shape, with `model`, using and extending the cache file
/// in `cache_dir`; `progress(done, total)` is called after each batch.
pub fn outputs_on_corpus(
    model: &SubjectModel,
    corpus: &Corpus,
    cache_dir: &Path,
    max_len: usize,
    batch: usize,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<ProbeTargets> {
    let shaped = model.shaped_inputs(corpus)?;
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let path = cache_dir.join(format!(
        "{}-{}-{}.jsonl",
        &model.hash[..16],
        &corpus.card.hash[..16],
        model.input()?.name()
    ));
    let mut outputs = read_cache(&path)?;
    outputs.truncate(corpus.inputs.len());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let total = corpus.inputs.len();
    progress(outputs.len(), total);
    while outputs.len() < total {
        let end = (outputs.len() + batch.max(1)).min(total);
        let batch_out = model.run(&shaped[outputs.len()..end], max_len)?;
        let mut lines = Vec::new();
        for o in &batch_out {
            serde_json::to_writer(&mut lines, o)?;
            lines.push(b'\n');
        }
        // One write per batch; a crash mid-write leaves at most a torn last line, dropped on resume.
        file.write_all(&lines)?;
        file.flush()?;
        outputs.extend(batch_out);
        progress(outputs.len(), total);
    }
    Ok(match model.head {
        HeadSpec::Classification { .. } => ProbeTargets::Soft(
            outputs
                .into_iter()
                .map(|o| {
                    if let Output::Probs(p) = o {
                        p
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        ),
        HeadSpec::Regression => ProbeTargets::Values(
            outputs
                .into_iter()
                .map(|o| if let Output::Value(v) = o { v } else { 0.0 })
                .collect(),
        ),
        HeadSpec::QuestionAnswering => ProbeTargets::Spans(
            outputs
                .into_iter()
                .map(|o| if let Output::Span(s) = o { s } else { None })
                .collect(),
        ),
    })
}

/// Reads the complete lines of a cache file; a torn or unreadable tail (from a
/// crash mid-write) is cut off the file so appending continues cleanly.
fn read_cache(path: &Path) -> anyhow::Result<Vec<Output>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut good = 0usize;
    for piece in bytes.split_inclusive(|b| *b == b'\n') {
        if piece.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<Output>(&piece[..piece.len() - 1]) {
            Ok(o) => {
                out.push(o);
                good += piece.len();
            }
            Err(_) => break,
        }
    }
    if good < bytes.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
    }
    Ok(out)
}

/// The key under which `fute train` records, in a saved model's `config.json`,
/// what the model was trained on.
pub const TRAINING_RECORD_KEY: &str = "fute_training";

/// What a model folder says about its training data (`config.json` → `fute_training`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The dataset's name.
    pub dataset: String,
    /// How the model reads its input.
    pub input: Option<ModelInput>,
    /// Examples it was fine-tuned on (its DataSize, Vu et al. 2020).
    pub train_examples: Option<usize>,
}

/// Adds the training record to the `config.json` of the model saved in `dir`
/// (atomically; transformers ignores the extra key).
pub fn record_training(
    dir: &Path,
    dataset: &str,
    schema: &TaskSchema,
    train_examples: usize,
) -> anyhow::Result<()> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let record = TrainingRecord {
        dataset: dataset.to_owned(),
        input: Some(ModelInput::of_schema(schema)),
        train_examples: Some(train_examples),
    };
    let Some(obj) = cfg.as_object_mut() else {
        bail!(fute_core::Error::Invalid(format!(
            "{} is not a JSON object",
            path.display()
        )));
    };
    obj.insert(TRAINING_RECORD_KEY.into(), serde_json::to_value(&record)?);
    fute_core::fsutil::write_atomic(&path, serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    Ok(())
}

/// The training record of the model in `dir`, if its `config.json` has one.
pub fn read_training_record(dir: &Path) -> anyhow::Result<Option<TrainingRecord>> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    match cfg.get(TRAINING_RECORD_KEY) {
        None => Ok(None),
        Some(v) => Ok(Some(serde_json::from_value(v.clone()).map_err(|e| {
            fute_core::Error::data(
                &path,
                None,
                Some(TRAINING_RECORD_KEY),
                format!(
                    "unreadable training record: {e}; remove the key or retrain with `fute train`"
                ),
            )
        })?)),
    }
}
