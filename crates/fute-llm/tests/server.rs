//! Integration tests against a real OpenAI-compatible server: llama.cpp
//! (llama-cpp-python[server] 0.3.36) serving the packaged SmolLM2 GGUF, as
//! started by `scripts/llama-server.sh start`.
//!
//! They run when `FUTE_LLM_SERVER` holds the base URL (e.g.
//! `http://127.0.0.1:8765`) and are skipped otherwise, unless
//! `FUTE_REQUIRE_LLM_SERVER=1` (set by `.ci/run`), which makes a missing server
//! a failure.

use fute_core::testing::real_asset;
use fute_llm::gguf::{chat_template_from_file, SMOLLM2_FILE};
use fute_llm::{
    label_distribution, CachedBackend, ChatMessage, Endpoint, GenerateOptions, GgufBackend,
    GgufTokenizer, HttpBackend, HttpConfig, LabelSettings, LlmBackend, PromptInput, PromptSet,
    ScoreQuery,
};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

const SERVER_ENV: &str = "FUTE_LLM_SERVER";
const REQUIRE_ENV: &str = "FUTE_REQUIRE_LLM_SERVER";

fn server() -> Option<String> {
    match std::env::var(SERVER_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") => panic!(
            "{REQUIRE_ENV}=1 but {SERVER_ENV} is not set; start one with scripts/llama-server.sh start"
        ),
        _ => {
            eprintln!("skipping: {SERVER_ENV} not set (scripts/llama-server.sh start)");
            None
        }
    }
}

fn gguf_path() -> Option<PathBuf> {
    Some(real_asset("smollm2")?.join(SMOLLM2_FILE))
}

fn local() -> &'static GgufBackend {
    static MODEL: OnceLock<GgufBackend> = OnceLock::new();
    MODEL.get_or_init(|| GgufBackend::load(gguf_path().unwrap()).unwrap())
}

/// The server, with the GGUF's tokenizer and chat template on the client side.
fn remote(url: &str, endpoint: Endpoint) -> HttpBackend {
    let path = gguf_path().unwrap();
    let mut config = HttpConfig::new(url, "smollm2");
    config.endpoint = endpoint;
    config.template = chat_template_from_file(&path).unwrap();
    config.tokenizer = Some(Arc::new(GgufTokenizer::from_file(&path).unwrap()));
    config.top_logprobs = 100;
    HttpBackend::new(config)
}

fn sa_inputs() -> Vec<PromptInput> {
    [
        "A wonderful, moving film with great acting.",
        "Boring, predictable and far too long. I walked out.",
        "The plot was dull and the acting was wooden.",
        "One of the best movies I have seen this year!",
    ]
    .into_iter()
    .map(PromptInput::text)
    .collect()
}

#[test]
fn server_serves_the_model() {
    let Some(url) = server() else { return };
    let Some(_) = gguf_path() else { return };
    let models = remote(&url, Endpoint::Completions).models().unwrap();
    assert!(models.iter().any(|m| m == "smollm2"), "{models:?}");
}

/// GGUF on candle vs llama.cpp's server: the same label distributions.
#[test]
fn backends_agree_on_label_distributions() {
    let Some(url) = server() else { return };
    let Some(_) = gguf_path() else { return };
    let http = remote(&url, Endpoint::Completions);
    let chat = remote(&url, Endpoint::Chat);
    let settings = LabelSettings::default();
    let sa = PromptSet::builtin("sa").unwrap();
    let nli = PromptSet::builtin("nli").unwrap();
    let mut cases: Vec<(&PromptSet, usize, PromptInput)> = Vec::new();
    for input in sa_inputs() {
        for prompt in [0, 6] {
            cases.push((&sa, prompt, input.clone()));
        }
    }
    for (p, h) in [
        ("A man is sleeping on a couch.", "A person is resting."),
        ("A woman is riding a horse.", "Nobody is outside."),
    ] {
        cases.push((&nli, 4, PromptInput::pair(p, h)));
    }
    let (mut worst, mut worst_chat, mut same_prediction, mut same_greedy) = (0f64, 0f64, 0, 0);
    let (mut sum_diff, mut imputed) = (0f64, 0);
    for (set, prompt, input) in &cases {
        let a = label_distribution(local(), set, *prompt, input, &settings).unwrap();
        let b = label_distribution(&http, set, *prompt, input, &settings).unwrap();
        // The chat endpoint (server-side template) on a few cases only.
        let c = if *prompt == 6 {
            label_distribution(&chat, set, *prompt, input, &settings).unwrap()
        } else {
            b.clone()
        };
        same_greedy += usize::from(a.greedy == b.greedy);
        imputed += b.imputed.iter().filter(|i| **i).count();
        let diff = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .map(|(x, y)| (x - y).abs())
                .fold(0f64, f64::max)
        };
        let d = diff(&a.probs, &b.probs);
        worst = worst.max(d);
        sum_diff += d;
        worst_chat = worst_chat.max(diff(&b.probs, &c.probs));
        same_prediction += usize::from(a.predicted == b.predicted);
        eprintln!(
            "{} p{prompt}: gguf {:.4?} server {:.4?} chat {:.4?} greedy {:?}",
            set.name, a.probs, b.probs, c.probs, a.greedy
        );
    }
    eprintln!(
        "{} cases: max |p_gguf - p_server| = {worst:.2e}, mean {:.2e}; max |p_completions - p_chat| = {worst_chat:.2e}; same prediction {same_prediction}/{n}, same greedy token {same_greedy}/{n}; labels imputed from the server's top-100 floor: {imputed}",
        cases.len(),
        sum_diff / cases.len() as f64,
        n = cases.len()
    );
    // Measured (f32-expanded GGUF vs the server's Q4_1 × Q8_1 arithmetic):
    // max 0.071, mean 0.022, 10/10 same prediction.
    // Tolerance: Q4_1 weights with Q8_1-quantised activations make both
    // implementations noisy at ~0.1 in log-probability (candle alone moves that
    // much between a batched and a token-by-token prompt pass, and the server
    // moves ~0.04 in probability between requests because it reuses the KV
    // cache of the previous prompt's common prefix).
    assert!(same_prediction + 1 >= cases.len(), "{same_prediction}");
    assert!(worst < 0.15, "GGUF vs server: {worst}");
    assert!(
        sum_diff / (cases.len() as f64) < 0.05,
        "GGUF vs server mean"
    );
    assert!(
        worst_chat < 0.1,
        "completions vs chat endpoint: {worst_chat}"
    );
}

#[test]
fn backends_agree_on_scores_and_generation() {
    let Some(url) = server() else { return };
    let Some(_) = gguf_path() else { return };
    let http = remote(&url, Endpoint::Completions);
    let messages = [ChatMessage::user("The capital of France is")];
    let query = ScoreQuery {
        candidates: vec!["Paris".into(), "The".into()],
        top_k: 10,
        ..ScoreQuery::default()
    };
    let a = local().score_answer(&messages, &query).unwrap();
    let b = http.score_answer(&messages, &query).unwrap();
    let top_a: Vec<&str> = a.top.iter().take(5).map(|t| t.text.as_str()).collect();
    let top_b: Vec<&str> = b.top.iter().take(5).map(|t| t.text.as_str()).collect();
    assert_eq!(top_a[0], top_b[0]);
    let worst = a
        .top
        .iter()
        .zip(&b.top)
        .map(|(x, y)| (x.score - y.score).abs())
        .fold(0f32, f32::max);
    eprintln!("top-10 log-prob max diff {worst:.3e}: {top_a:?}");
    assert!(worst < 0.3, "{worst}");

    let options = GenerateOptions {
        max_tokens: 16,
        stop: vec![],
        ..GenerateOptions::default()
    };
    let ga = local().generate(&messages, &options).unwrap();
    let gb = http.generate(&messages, &options).unwrap();
    eprintln!("greedy: gguf {:?} / server {:?}", ga.text, gb.text);
    let common = ga
        .text
        .chars()
        .zip(gb.text.chars())
        .take_while(|(x, y)| x == y)
        .count();
    // SmolLM2 is full of near-ties here: the texts share the first token(s)
    // and may part ways after (seen: "L'aujourcé! ..." vs "L'Allema de ...").
    assert!(
        common >= 1,
        "greedy texts differ from the first token: {:?} vs {:?}",
        ga.text,
        gb.text
    );
}

#[test]
fn chain_of_thought_over_the_server() {
    let Some(url) = server() else { return };
    let Some(_) = gguf_path() else { return };
    let http = remote(&url, Endpoint::Completions);
    let set = PromptSet::builtin("sa").unwrap();
    let settings = LabelSettings {
        cot_max_tokens: 48,
        ..LabelSettings::default()
    };
    let input = PromptInput::text("A wonderful, moving film with great acting.");
    let d = label_distribution(&http, &set, 10, &input, &settings).unwrap();
    assert!(!d.reasoning.as_deref().unwrap_or("").is_empty());
    assert!((d.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let g = label_distribution(local(), &set, 10, &input, &settings).unwrap();
    eprintln!(
        "CoT: server {:.4?} gguf {:.4?}; reasoning {:?}",
        d.probs, g.probs, d.reasoning
    );
    // Round 1 is 48 greedy tokens: the two implementations may part ways at a
    // near-tie, so only the start of the reasoning is compared.
    let (r1, r2) = (d.reasoning.unwrap(), g.reasoning.unwrap());
    assert_eq!(
        r1.chars().take(20).collect::<String>(),
        r2.chars().take(20).collect::<String>()
    );
}

#[test]
fn perplexity_over_the_server() {
    let Some(url) = server() else { return };
    let Some(_) = gguf_path() else { return };
    let http = remote(&url, Endpoint::Completions);
    let text = "The capital of France is Paris. It is a large city.";
    let a = local().perplexity(text, false).unwrap();
    let b = http.perplexity(text, false).unwrap();
    eprintln!(
        "perplexity: gguf {:.4} ({} tokens), server {:.4} ({} tokens)",
        a.ppl, a.n_scored, b.ppl, b.n_scored
    );
    assert_eq!(a.n_scored, b.n_scored);
    assert!(b.ppl.is_finite() && b.ppl > 1.0);
    // llama-cpp-python 0.3.36 pairs echoed token i with the distribution that
    // predicts token i+1 (its `echo` log-probs are shifted by one), so its
    // perplexity is far off; use the GGUF backend for perplexity (SPELL) with
    // this server. A correct server (vLLM) follows the OpenAI convention.
    if (a.ppl.ln() - b.ppl.ln()).abs() > 0.5 {
        eprintln!("server echo log-probs are misaligned (known llama-cpp-python 0.3.36 behaviour)");
    }
}

#[test]
fn cached_server_calls_are_not_repeated() {
    let Some(url) = server() else { return };
    let Some(_) = gguf_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let set = PromptSet::builtin("sa").unwrap();
    let settings = LabelSettings::default();
    let run = |backend: &CachedBackend<HttpBackend>| -> Vec<Vec<f64>> {
        sa_inputs()
            .iter()
            .map(|i| {
                label_distribution(backend, &set, 4, i, &settings)
                    .unwrap()
                    .probs
            })
            .collect()
    };
    let first = CachedBackend::open(remote(&url, Endpoint::Completions), dir.path()).unwrap();
    let a = run(&first);
    assert_eq!(first.inner().requests_sent(), 4);
    let second = CachedBackend::open(remote(&url, Endpoint::Completions), dir.path()).unwrap();
    let b = run(&second);
    assert_eq!(a, b);
    assert_eq!(second.inner().requests_sent(), 0);
    assert_eq!(second.stats().hits, 4);
}
