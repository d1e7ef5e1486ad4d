//! An LLM driven by a prompt, seen as a model M: its label distributions on
//! inputs, the probe set of its MTE, and its identity in the store.
//!
//! Calls go through whatever backend is given; wrap it in a
//! [`fute_llm::CachedBackend`] so that a rerun costs nothing and an
//! interrupted run resumes.

use crate::probe::{ProbeHead, ProbeSet, ProbeTargets};
use anyhow::Context as _;
use fute_core::dataset::{Dataset, Target, TaskSchema};
use fute_core::embedding::{Subject, SubjectKind};
use fute_llm::parallel::map_calls;
use fute_llm::{
    label_distribution, LabelDistribution, LabelSettings, LlmBackend, PromptInput, PromptSet,
};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::BTreeMap;

/// One prompt of a prompt set, on one LLM.
pub struct PromptedLlm<'a> {
    /// The LLM (ideally cached).
    pub backend: &'a dyn LlmBackend,
    /// The prompt set.
    pub set: &'a PromptSet,
    /// Which prompt of the set.
    pub prompt: usize,
    /// How label distributions are computed.
    pub settings: &'a LabelSettings,
    /// Inputs longer than this many characters are cut (at a character boundary).
    pub max_chars: Option<usize>,
}

impl PromptedLlm<'_> {
    /// A readable name: `MODEL:SET#PROMPT`.
    pub fn name(&self) -> String {
        format!(
            "{}:{}#{}",
            self.backend.identity().model,
            self.set.name,
            self.prompt
        )
    }

    /// sha256 of everything that shapes the outputs: the model, the whole
    /// prompt (template, verbalisers, instructions, labels) and the settings.
    pub fn hash(&self) -> anyhow::Result<String> {
        let id = self.backend.identity();
        let material = json!({
            "backend": id.kind,
            "model": id.model,
            "model_hash": id.model_hash,
            "labels": self.set.labels,
            "system": self.set.system,
            "instruction": self.set.instruction,
            "cot_instruction": self.set.cot_instruction,
            "cot_followup": self.set.cot_followup,
            "prompt": self.set.prompt(self.prompt)?,
            "settings": self.settings,
            "backend_settings": self.backend.answer_settings(),
            "max_chars": self.max_chars,
        });
        Ok(hex::encode(sha2::Sha256::digest(
            material.to_string().as_bytes(),
        )))
    }

    /// The prompt input for a row of 1 or 2 segments, shaped like the set's
    /// slots (paper §2.4): a `{{text}}` set takes the last segment; a
    /// `{{premise}}`/`{{hypothesis}}` set takes both, or cuts a single text in
    /// two halves at a word boundary.
    pub fn input(&self, segments: &[String]) -> anyhow::Result<PromptInput> {
        let cut = |s: &String| truncate_chars(s, self.max_chars);
        let template = &self.set.prompt(self.prompt)?.template;
        if template.contains("{{text}}") || template.contains("{{ text }}") {
            let text = cut(&fute_core::corpus::last_segment(segments));
            return Ok(PromptInput::text(text));
        }
        match segments {
            [a, b, ..] => Ok(PromptInput::pair(cut(a), cut(b))),
            [a] => {
                let [premise, hypothesis] = fute_core::corpus::halves(a);
                Ok(PromptInput::pair(cut(&premise), cut(&hypothesis)))
            }
            [] => anyhow::bail!(fute_core::Error::Invalid(
                "an input with no text cannot fill a prompt".into()
            )),
        }
    }

    /// The store subject of this prompted LLM's MTEs.
    pub fn subject(&self) -> anyhow::Result<Subject> {
        Ok(Subject {
            kind: SubjectKind::PromptedLlm,
            name: self.name(),
            hash: self.hash()?,
        })
    }

    /// Provenance kept with its MTE on corpus `corpus_name`.
    pub fn provenance(&self, corpus_name: &str) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("corpus_name".into(), Value::from(corpus_name)),
            ("prompt_set".into(), Value::from(self.set.name.clone())),
            ("prompt".into(), Value::from(self.prompt)),
            ("prompt_task".into(), Value::from(self.set.task.clone())),
            (
                "prompt_mode".into(),
                Value::from(match self.set.prompts.get(self.prompt).map(|p| p.mode) {
                    Some(fute_llm::PromptMode::Cot) => "cot",
                    _ => "vanilla",
                }),
            ),
        ])
    }

    /// The label distribution of every input, [`LlmBackend::concurrency`]
    /// inputs at a time ([`fute_llm::parallel::map_calls`]: both cores busy
    /// with a local model); `progress(done, total)` after each.
    ///
    /// # Errors
    /// Backend failures (of the first failing input), and
    /// [`fute_llm::Error::Invalid`] when on most inputs no label could be
    /// scored (see [`fute_llm::Unscored::check`]).
    pub fn distributions(
        &self,
        inputs: &[Vec<String>],
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<Vec<LabelDistribution>> {
        let out = map_calls(
            self.backend.concurrency(),
            inputs,
            |i, segments| -> anyhow::Result<LabelDistribution> {
                let input = self.input(segments)?;
                label_distribution(self.backend, self.set, self.prompt, &input, self.settings)
                    .with_context(|| format!("{} on input {i}", self.name()))
            },
            progress,
        )?;
        // Uniform distributions from unmatched verbalisers would pass as results.
        let example = out
            .iter()
            .find(|d| d.imputed.iter().all(|&i| i))
            .map(|d| d.greedy.clone())
            .unwrap_or_default();
        fute_llm::unscored(&out).check(&self.name(), &example)?;
        Ok(out)
    }

    /// The perplexity of the whole chat-formatted prompt for `segments`
    /// (system, template, instance, with a BOS), as SPELL uses it.
    pub fn prompt_perplexity(&self, segments: &[String]) -> anyhow::Result<f64> {
        let input = self.input(segments)?;
        let messages = self.set.messages(self.prompt, &input)?;
        // As messages, not rendered text: the input stays literal text.
        Ok(self
            .backend
            .perplexity_chat(&messages, true)
            .with_context(|| format!("perplexity of {}", self.name()))?
            .ppl)
    }

    /// The probe set of this prompted LLM's MTE: `inputs` with the label
    /// distributions as soft targets.
    pub fn probe_set(
        &self,
        inputs: Vec<Vec<String>>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> anyhow::Result<ProbeSet> {
        let dists = self.distributions(&inputs, progress)?;
        Ok(ProbeSet {
            inputs,
            targets: ProbeTargets::Soft(
                dists
                    .iter()
                    .map(|d| d.probs.iter().map(|&p| p as f32).collect())
                    .collect(),
            ),
            head: ProbeHead::Classification(self.set.labels.len()),
        })
    }
}

/// `s` cut to at most `max` characters (at a character boundary).
pub fn truncate_chars(s: &str, max: Option<usize>) -> String {
    match max.and_then(|m| s.char_indices().nth(m)) {
        Some((byte, _)) => s[..byte].to_string(),
        None => s.to_string(),
    }
}

/// A classification dataset relabelled into a prompt set's labels: each dataset
/// label maps to the set label of the same name (case-insensitive) or as
/// `map` says; examples whose label maps to nothing are dropped (e.g. tweets'
/// `neutral` for a positive/negative prompt set). Returns the dataset and how
/// many examples were dropped.
pub fn restrict_to_labels(
    ds: &Dataset,
    labels: &[String],
    map: &BTreeMap<String, String>,
) -> anyhow::Result<(Dataset, usize)> {
    let TaskSchema::Classification {
        inputs,
        labels: own,
    } = &ds.card.schema
    else {
        anyhow::bail!(fute_core::Error::Invalid(format!(
            "dataset `{}` is {}, but prompt selection needs a classification dataset",
            ds.card.name,
            ds.card.schema.short_name()
        )));
    };
    // Entries for labels this dataset lacks are skipped: one map serves several datasets.
    for to in map.values() {
        if !labels.contains(to) {
            anyhow::bail!(fute_core::Error::Invalid(format!(
                "--label-map maps to `{to}`, which is not a label of the prompt set (its labels: {})",
                labels.join(", ")
            )));
        }
    }
    let target_of: Vec<Option<usize>> = own
        .iter()
        .map(|l| {
            let to = map.get(l).unwrap_or(l);
            labels.iter().position(|s| s.eq_ignore_ascii_case(to))
        })
        .collect();
    let mut mapped: Vec<usize> = target_of.iter().flatten().copied().collect();
    mapped.sort_unstable();
    mapped.dedup();
    if mapped.len() < 2 {
        anyhow::bail!(fute_core::Error::Invalid(format!(
            "fewer than two labels of `{}` ({}) are labels of the prompt set ({}); map them with --label-map OWN=SET,…",
            ds.card.name,
            own.join(", "),
            labels.join(", ")
        )));
    }
    let mut examples = Vec::new();
    let mut dropped = 0;
    for ex in &ds.examples {
        match ex.target {
            Target::Label(l) => match target_of.get(l).copied().flatten() {
                Some(t) => {
                    let mut e = ex.clone();
                    e.target = Target::Label(t);
                    examples.push(e);
                }
                None => dropped += 1,
            },
            _ => dropped += 1,
        }
    }
    let mut card = ds.card.clone();
    card.schema = TaskSchema::Classification {
        inputs: *inputs,
        labels: labels.to_vec(),
    };
    Ok((Dataset { card, examples }, dropped))
}
