//! The [`LlmBackend`] trait and the values it returns.

use crate::chat::ChatMessage;
use crate::logits::LogitsProcessing;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Which backend and model answered: part of every cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendIdentity {
    /// Backend kind (`gguf`, `openai`, ...).
    pub kind: String,
    /// Model name.
    pub model: String,
    /// Content hash of the model (sha256 of the file), or a fingerprint the
    /// user gave for a remote model.
    pub model_hash: String,
}

/// What the scores in [`AnswerScores`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// Natural-log probabilities (log-softmax of the logits).
    LogProbs,
    /// Raw logits (what the FUTE reference reads; needed for clipping at 0).
    Logits,
}

/// A request for next-token scores at the first answer position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreQuery {
    /// Strings whose first token's score is wanted (the verbalisers).
    pub candidates: Vec<String>,
    /// How many of the best tokens to return as well.
    pub top_k: usize,
    /// At most this many greedy steps are taken while looking for the first
    /// step whose greedy token is not whitespace (the reference generates 5).
    pub max_steps: usize,
    /// Return raw logits instead of log-probabilities (local backends only).
    pub raw_logits: bool,
    /// Which logits the greedy steps and scores use (local backends only for
    /// [`LogitsProcessing::Reference`]).
    #[serde(default, skip_serializing_if = "LogitsProcessing::is_raw")]
    pub logits_processing: LogitsProcessing,
}

impl Default for ScoreQuery {
    fn default() -> Self {
        ScoreQuery {
            candidates: Vec::new(),
            top_k: 20,
            max_steps: 5,
            raw_logits: false,
            logits_processing: LogitsProcessing::Raw,
        }
    }
}

/// One token and its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenScore {
    /// Token id, when the backend knows it.
    pub id: Option<u32>,
    /// The token's text.
    pub text: String,
    /// Its score ([`ScoreKind`]).
    pub score: f32,
}

/// The score of a candidate string's first token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// The candidate (a verbaliser).
    pub candidate: String,
    /// Its first token, when it could be determined.
    pub token: Option<String>,
    /// The first token's score; `None` when the backend only saw a top-k list
    /// that did not contain it.
    pub score: Option<f32>,
}

/// Next-token scores at the first generated step whose greedy token is not
/// whitespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerScores {
    /// What the scores are.
    pub kind: ScoreKind,
    /// Index of the step the scores are from (0 = right after the prompt).
    pub step: usize,
    /// The greedy tokens up to and including that step.
    pub greedy: Vec<String>,
    /// The best `top_k` tokens at that step, best first.
    pub top: Vec<TokenScore>,
    /// One entry per requested candidate, in order.
    pub candidates: Vec<CandidateScore>,
    /// The lowest score the backend returned when it returned only a top-k
    /// list (an upper bound for any token not listed); `None` when every
    /// candidate was scored exactly.
    pub floor: Option<f32>,
}

/// Options of a greedy generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// At most this many new tokens.
    pub max_tokens: usize,
    /// Stop before any of these strings (not included in the text).
    pub stop: Vec<String>,
    /// Which logits the greedy steps use (local backends only for
    /// [`LogitsProcessing::Reference`]).
    #[serde(default, skip_serializing_if = "LogitsProcessing::is_raw")]
    pub logits_processing: LogitsProcessing,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            stop: Vec::new(),
            logits_processing: LogitsProcessing::Raw,
        }
    }
}

/// A greedy generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text.
    pub text: String,
    /// Number of generated tokens.
    pub n_tokens: usize,
    /// `stop` (end of turn or a stop string) or `length` (hit `max_tokens`).
    pub finish_reason: String,
}

/// Perplexity of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// Sum over the scored tokens of −ln p(token | prefix).
    pub nll_sum: f64,
    /// Number of scored tokens (all but the first, or all after an added BOS).
    pub n_scored: usize,
    /// `exp(nll_sum / n_scored)`.
    pub ppl: f64,
}

impl Perplexity {
    /// Builds the value from per-token log-probabilities.
    pub fn from_logprobs(logprobs: &[f64]) -> Self {
        let nll_sum: f64 = -logprobs.iter().sum::<f64>();
        let n_scored = logprobs.len();
        let ppl = if n_scored == 0 {
            f64::NAN
        } else {
            (nll_sum / n_scored as f64).exp()
        };
        Perplexity {
            nll_sum,
            n_scored,
            ppl,
        }
    }
}

/// An LLM that can score, generate and measure perplexity.
///
/// `messages` are chat turns; the backend formats them with its chat template
/// and the generation prompt (`<|im_start|>assistant\n` for ChatML).
///
/// Backends are `Sync`: callers with many independent calls run
/// [`LlmBackend::concurrency`] of them at once ([`crate::parallel::map_calls`]).
pub trait LlmBackend: Sync {
    /// Backend kind, model and model hash (part of every cache key).
    fn identity(&self) -> BackendIdentity;

    /// How many calls the backend runs at once to good effect: its workers (a
    /// local model's, each with its own KV cache over one copy of the
    /// weights). Callers with independent calls (label distributions over
    /// inputs) run this many at a time. Not part of any cache key: answers do
    /// not depend on it beyond float rounding. Default: 1.
    fn concurrency(&self) -> usize {
        1
    }

    /// Every setting of the backend itself that can change an answer, beyond
    /// [`LlmBackend::identity`] and the request (for a server: its URL, the
    /// endpoint, how many top log-probabilities are asked for, the chat
    /// template, the tokenizer): part of every cache key, so that a call is
    /// answered from the cache only when the same call would give the same
    /// answer. Settings that cannot change an answer (timeouts, retries,
    /// credentials) are left out, and credentials never appear here.
    /// Default: none (a backend whose identity says it all).
    fn answer_settings(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The exact text the backend feeds the model for `messages`.
    ///
    /// # Errors
    /// When the backend cannot format chats.
    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String>;

    /// Next-token scores at the first answer step whose greedy token is not
    /// whitespace (see [`ScoreQuery`]).
    ///
    /// # Errors
    /// Inference or server failures.
    fn score_answer(&self, messages: &[ChatMessage], query: &ScoreQuery) -> Result<AnswerScores>;

    /// Greedy generation after `messages` (chain-of-thought round 1).
    ///
    /// # Errors
    /// Inference or server failures.
    fn generate(&self, messages: &[ChatMessage], options: &GenerateOptions) -> Result<Generation>;

    /// Perplexity of `text`, tokenised as literal text (a `<|im_end|>` in it
    /// is text, not a control token); with `add_bos` a BOS token is put in
    /// front so the first token is scored too.
    ///
    /// # Errors
    /// Inference or server failures.
    fn perplexity(&self, text: &str, add_bos: bool) -> Result<Perplexity>;

    /// Perplexity of the chat `messages` as the backend's template renders
    /// them (no generation prompt): the template's control tokens as control
    /// tokens, the messages as literal text (SPELL's prompt perplexity).
    ///
    /// # Errors
    /// Inference or server failures.
    fn perplexity_chat(&self, messages: &[ChatMessage], add_bos: bool) -> Result<Perplexity>;
}

impl<B: LlmBackend + ?Sized> LlmBackend for &B {
    fn identity(&self) -> BackendIdentity {
        (**self).identity()
    }
    fn concurrency(&self) -> usize {
        (**self).concurrency()
    }
    fn answer_settings(&self) -> serde_json::Value {
        (**self).answer_settings()
    }
    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        (**self).render_chat(messages, add_generation_prompt)
    }
    fn score_answer(&self, messages: &[ChatMessage], query: &ScoreQuery) -> Result<AnswerScores> {
        (**self).score_answer(messages, query)
    }
    fn generate(&self, messages: &[ChatMessage], options: &GenerateOptions) -> Result<Generation> {
        (**self).generate(messages, options)
    }
    fn perplexity(&self, text: &str, add_bos: bool) -> Result<Perplexity> {
        (**self).perplexity(text, add_bos)
    }
    fn perplexity_chat(&self, messages: &[ChatMessage], add_bos: bool) -> Result<Perplexity> {
        (**self).perplexity_chat(messages, add_bos)
    }
}

/// Whether a generated token counts as whitespace for "the first generated
/// step whose greedy token is not whitespace": all whitespace, the empty
/// decode included (the reference tests `decode(token).strip() == ""`).
pub fn is_whitespace_token(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

/// ln Σ exp(logits), max-shifted and summed in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// Log-softmax of `logits` in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(logits);
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}
