//! The label distribution of (LLM, prompt, input), as in the FUTE reference
//! (paper.md §2.5): at the first generated step whose greedy token is not
//! whitespace, each label's score is the best first-token score among its
//! verbalisers; the distribution is the softmax over labels.

use crate::backend::{GenerateOptions, LlmBackend, ScoreKind, ScoreQuery};
use crate::prompts::{PromptInput, PromptMode, PromptSet};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How label distributions are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSettings {
    /// Clip every label score at 0 before the softmax (the reference code's
    /// running max starts at 0). Works on raw logits, so only with a local
    /// backend. Off by default.
    pub clip_at_zero: bool,
    /// Greedy steps searched for the first non-whitespace token (reference: 5).
    pub max_steps: usize,
    /// Top tokens kept with each answer (for inspection and HTTP matching).
    pub top_k: usize,
    /// New tokens of chain-of-thought round 1 (reference: 512).
    pub cot_max_tokens: usize,
}

impl Default for LabelSettings {
    fn default() -> Self {
        LabelSettings {
            clip_at_zero: false,
            max_steps: 5,
            top_k: 20,
            cot_max_tokens: 512,
        }
    }
}

/// A label distribution and how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelDistribution {
    /// The labels, in the prompt set's order.
    pub labels: Vec<String>,
    /// Softmax of `scores`.
    pub probs: Vec<f64>,
    /// Each label's score (best verbaliser first-token score, clipped if asked).
    pub scores: Vec<f64>,
    /// What the scores are (log-probabilities or raw logits).
    pub kind: ScoreKind,
    /// Labels none of whose verbalisers were in a server's top-k list: their
    /// score is the lowest listed score (an upper bound).
    pub imputed: Vec<bool>,
    /// Index of the most probable label (lowest index on ties).
    pub predicted: usize,
    /// The greedy tokens up to the scored step.
    pub greedy: Vec<String>,
    /// Chain-of-thought round-1 text.
    pub reasoning: Option<String>,
}

/// Softmax in f64 (max-shifted).
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0 / scores.len() as f64; scores.len()];
    }
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The label distribution of `backend` with prompt `index` of `set` on
/// `input`. Vanilla prompts take one scoring call; chain-of-thought prompts a
/// greedy generation (round 1) and a scoring call on the round-2 chat.
///
/// # Errors
/// Prompt errors ([`Error::Invalid`]), backend failures, and
/// [`Error::Invalid`] when clipping is asked of a backend without raw logits.
pub fn label_distribution<B: LlmBackend + ?Sized>(
    backend: &B,
    set: &PromptSet,
    index: usize,
    input: &PromptInput,
    settings: &LabelSettings,
) -> Result<LabelDistribution> {
    let prompt = set.prompt(index)?;
    let mut messages = set.messages(index, input)?;
    let mut reasoning = None;
    if prompt.mode == PromptMode::Cot {
        let round1 = backend.generate(
            &messages,
            &GenerateOptions {
                max_tokens: settings.cot_max_tokens,
                stop: Vec::new(),
            },
        )?;
        messages = set.cot_round2(index, input, &round1.text)?;
        reasoning = Some(round1.text);
    }
    let mut candidates: Vec<String> = Vec::new();
    for v in &prompt.verbalizers {
        for w in &v.words {
            if !candidates.contains(w) {
                candidates.push(w.clone());
            }
        }
    }
    let query = ScoreQuery {
        candidates,
        top_k: settings.top_k,
        max_steps: settings.max_steps,
        raw_logits: settings.clip_at_zero,
    };
    let answer = backend.score_answer(&messages, &query)?;
    if settings.clip_at_zero && answer.kind != ScoreKind::Logits {
        return Err(Error::Invalid(
            "clipping at 0 needs raw logits, and this backend returned log-probabilities".into(),
        ));
    }
    let mut scores = Vec::with_capacity(set.labels.len());
    let mut imputed = Vec::with_capacity(set.labels.len());
    for label in &set.labels {
        let words = set.words(index, label)?;
        let best = answer
            .candidates
            .iter()
            .filter(|c| words.contains(&c.candidate))
            .filter_map(|c| c.score)
            .map(f64::from)
            .fold(f64::NEG_INFINITY, f64::max);
        let (score, guessed) = if best.is_finite() {
            (best, false)
        } else {
            match answer.floor {
                Some(floor) => (f64::from(floor), true),
                None => (f64::NEG_INFINITY, true),
            }
        };
        scores.push(if settings.clip_at_zero {
            score.max(0.0)
        } else {
            score
        });
        imputed.push(guessed);
    }
    let probs = softmax(&scores);
    let mut predicted = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > probs[predicted] {
            predicted = i;
        }
    }
    Ok(LabelDistribution {
        labels: set.labels.clone(),
        probs,
        scores,
        kind: answer.kind,
        imputed,
        predicted,
        greedy: answer.greedy,
        reasoning,
    })
}
