//! The LLM rows: label distributions and perplexities of the packaged SmolLM2
//! over the 13 sentiment prompts × N real IMDB reviews, through fute's GGUF
//! backend and, as the peer, through a llama.cpp server (fute's HTTP backend:
//! the same requests, the server's arithmetic).
//!
//! fute runs `--threads` calls at once (one worker per core, each with its own
//! KV cache over one copy of the weights); the server gets one request at a
//! time and runs it on its own `--n_threads` threads.
//!
//! Chain-of-thought prompts generate at most [`COT_TOKENS`] tokens in round 1
//! (both sides), so the row measures scoring, not long generations.

use std::path::Path;

use fute_llm::parallel::map_calls;
use fute_llm::{
    label_distribution, GgufTokenizer, HttpBackend, HttpConfig, LabelSettings, LlmBackend,
    PromptInput, PromptSet,
};

use super::{measure, Kind, Measurement, Workload};

/// Round-1 tokens of chain-of-thought prompts in the benchmark.
pub const COT_TOKENS: usize = 24;

/// Words kept of each review (prompts stay around 100 tokens).
const WORDS: usize = 48;

/// The first `n` IMDB reviews, cut to their first [`WORDS`] words.
pub fn review_texts(reviews_json: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(reviews_json)?;
    let reviews: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let out: Vec<String> = reviews
        .iter()
        .filter_map(|r| r.get("t").and_then(|t| t.as_str()))
        .map(|t| {
            t.split_whitespace()
                .take(WORDS)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|t| t.split_whitespace().count() == WORDS)
        .take(n)
        .collect();
    anyhow::ensure!(
        out.len() == n,
        "{} lacks {n} reviews",
        reviews_json.display()
    );
    Ok(out)
}

/// (prompt index, input) pairs in the order both sides run them.
fn calls(set: &PromptSet, texts: &[String]) -> Vec<(usize, PromptInput)> {
    (0..set.prompts.len())
        .flat_map(|p| texts.iter().map(move |t| (p, PromptInput::text(t.clone()))))
        .collect()
}

/// Runs an LLM row on `backend` (fute's GGUF backend or the server peer),
/// `workers` calls at a time ([`LlmBackend::concurrency`] normally).
pub fn run(
    w: &Workload,
    backend: &dyn LlmBackend,
    workers: usize,
    set: &PromptSet,
    texts: &[String],
) -> anyhow::Result<Measurement> {
    let settings = LabelSettings {
        cot_max_tokens: COT_TOKENS,
        ..Default::default()
    };
    let all = calls(set, texts);
    let timed: Vec<&(usize, PromptInput)> = all.iter().take(w.units).collect();
    let one = |(p, input): &(usize, PromptInput)| -> anyhow::Result<()> {
        match w.kind {
            Kind::LlmLabels => {
                std::hint::black_box(label_distribution(backend, set, *p, input, &settings)?);
            }
            Kind::LlmPerplexity => {
                let text = set.user_message(*p, input)?;
                std::hint::black_box(backend.perplexity(&text, false)?);
            }
            _ => anyhow::bail!("{} is not an LLM row", w.id),
        }
        Ok(())
    };
    let warmup: Vec<&(usize, PromptInput)> = all.iter().rev().take(w.warmup).collect();
    map_calls(workers, &warmup, |_, c| one(c), &mut |_, _| {})?;
    measure(
        || {
            map_calls(workers, &timed, |_, c| one(c), &mut |_, _| {})?;
            Ok(())
        },
        timed.len(),
    )
}

/// The peer: fute's HTTP backend on a llama.cpp (OpenAI-compatible) server at
/// `url`, with the GGUF file's tokenizer and chat template so that requests
/// are the same texts fute scores.
pub fn server_backend(url: &str, gguf: &Path) -> anyhow::Result<HttpBackend> {
    let mut config = HttpConfig::new(url, "smollm2");
    config.tokenizer = Some(std::sync::Arc::new(GgufTokenizer::from_file(gguf)?));
    config.template = fute_llm::gguf::chat_template_from_file(gguf)?;
    Ok(HttpBackend::new(config))
}
