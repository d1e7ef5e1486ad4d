//! A fine-tuned model M's outputs on the corpus U: the targets of its MTE.
//!
//! Classifiers give their full softmax distribution (soft labels), regressors
//! their value, extractive-QA models their best answer span — in characters of
//! the context, so the surrogate (with another tokenizer) gets the same answer
//! (the reference code reuses M's token indices unchanged, which is wrong when
//! the tokenizers differ).
//!
//! Outputs are appended to a JSONL cache, one line per input, keyed by
//! (model hash, U hash): a rerun costs nothing and an interrupted run resumes.

use crate::probe::{text_input, ProbeHead, ProbeTargets};
use anyhow::{bail, Context as _};
use candle_core::{Device, D};
use fute_core::corpus::Corpus;
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec, Mode, TextInput, TextTokenizer, Truncation};
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
    /// A classifier's label names by output index (`config.json`'s `id2label`;
    /// `None` when it names none): the order of its output distributions.
    pub labels: Option<Vec<String>>,
    model: BertTaskModel,
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
        let model =
            BertTaskModel::from_task_folder(dir, &BuildOptions::default()).map_err(|e| {
                fute_core::Error::Invalid(format!(
                    "cannot use {} as a subject model: {e}",
                    dir.display()
                ))
            })?;
        let head =
            HeadSpec::from_config(model.config()).expect("from_task_folder checked the head");
        let tokenizer = TextTokenizer::from_folder(dir)?;
        let hash = crate::surrogate::hash_model_folder(dir)?;
        let labels = match head {
            HeadSpec::Classification { .. } => crate::finetune::labels::model_label_names(
                model.config(),
                &dir.join("config.json"),
            )?,
            _ => None,
        };
        Ok(SubjectModel {
            dir: dir.to_path_buf(),
            hash,
            head,
            labels,
            model,
            tokenizer,
        })
    }

    /// The surrogate head this model's outputs need.
    pub fn probe_head(&self) -> ProbeHead {
        match self.head {
            HeadSpec::Classification { num_labels } => ProbeHead::Classification(num_labels),
            HeadSpec::Regression => ProbeHead::Regression,
            HeadSpec::QuestionAnswering => ProbeHead::QuestionAnswering,
        }
    }

    /// Runs the model on a batch of inputs.
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

/// Labels every input of `corpus` with `model`, using and extending the cache file
/// in `cache_dir`; `progress(done, total)` is called after each batch.
pub fn outputs_on_corpus(
    model: &SubjectModel,
    corpus: &Corpus,
    cache_dir: &Path,
    max_len: usize,
    batch: usize,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<ProbeTargets> {
    if model.head == HeadSpec::QuestionAnswering
        && corpus.inputs.iter().any(|i| i.segments.len() < 2)
    {
        bail!(fute_core::Error::Invalid(format!(
            "{} is a question-answering model: every corpus input needs (question, context); build the corpus with `--shape pair`",
            model.dir.display()
        )));
    }
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let path = cache_dir.join(format!(
        "{}-{}.jsonl",
        &model.hash[..16],
        &corpus.card.hash[..16]
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
        let inputs: Vec<Vec<String>> = corpus.inputs[outputs.len()..end]
            .iter()
            .map(|i| i.segments.clone())
            .collect();
        let batch_out = model.run(&inputs, max_len)?;
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
