//! LLMs as task solvers: turn "LLM + prompt + input" into a label distribution.
//!
//! - [`LlmBackend`]: one trait for next-token scores at the first answer
//!   position, greedy generation and perplexity, with two real backends:
//!   [`GgufBackend`] (a local `.gguf` on candle — llama architecture such as
//!   SmolLM2, or Gemma 3 — tokenizer and chat template from the file's
//!   metadata; a base model without a template is prompted completion-style) and [`HttpBackend`] (any OpenAI-compatible
//!   server: llama.cpp, vLLM, TGI, a hosted API).
//! - [`PromptSet`]: prompts as data (templates with `{{text}}` /
//!   `{{premise}}` / `{{hypothesis}}` slots, verbalisers per label, vanilla or
//!   chain-of-thought), with the paper's two sets built in
//!   ([`PromptSet::builtin`]) and user sets loaded from TOML or JSON.
//! - [`label_distribution`]: the FUTE reference's label distribution (best
//!   first-token verbaliser score per label at the first non-whitespace
//!   generated step, softmax over labels, optional clipping at 0).
//! - [`CachedBackend`]: every call cached on disk (append-only JSONL), so a
//!   rerun costs nothing and a crash loses nothing.
#![warn(missing_docs)]

pub mod backend;
pub mod cache;
pub mod chat;
pub mod dense;
mod error;
pub mod gemma3;
pub mod gguf;
pub mod http;
pub mod label;
pub mod llama;
pub mod logits;
pub mod mock;
pub mod parallel;
pub mod prompts;
mod spm;
pub mod surface;
pub mod tokenizer;
pub mod user_text;

pub use backend::{
    AnswerScores, BackendIdentity, CandidateScore, GenerateOptions, Generation, LlmBackend,
    Perplexity, ScoreKind, ScoreQuery, TokenScore,
};
pub use cache::{default_cache_dir, CacheStats, CachedBackend, CallCache};
pub use chat::{ChatMessage, ChatTemplate, Role};
pub use dense::{DenseModel, KvCache};
pub use error::{Error, Result};
pub use gemma3::DenseGemma3;
pub use gguf::{GgufBackend, GgufOptions, GgufTokenizer};
pub use http::{Endpoint, HttpBackend, HttpConfig};
pub use label::{label_distribution, unscored, LabelDistribution, LabelSettings, Unscored};
pub use llama::DenseLlama;
pub use logits::LogitsProcessing;
pub use prompts::{PromptInput, PromptMode, PromptSet, PromptSpec, Verbalizer};
