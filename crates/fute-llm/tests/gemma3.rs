//! Real tier: the packaged Gemma-3-270M GGUF on fute's dense Gemma 3 pass,
//! against llama.cpp (skipped when asset `gemma3` is not fetched, unless
//! FUTE_REQUIRE_ASSETS=1).
//!
//! The reference is `tests/fixtures/gemma3-llama-cpp.json`, written by
//! `scripts/golden/gemma3_llama_cpp.py` with llama-cpp-python 0.3.36 on two
//! files: the packaged Q4_K_M GGUF, and its F32 copy made by
//! `scripts/golden/gemma3_f32_gguf.py` (the values fute expands the weights
//! to). On the Q4_K_M file llama.cpp multiplies with 8-bit-quantized
//! activations, which fute does not; on the F32 copy both run in f32, so that
//! comparison checks fute's Gemma 3 arithmetic itself and is tight.

use fute_core::testing::real_asset;
use fute_llm::backend::log_softmax;
use fute_llm::gguf::GEMMA3_FILE;
use fute_llm::{
    label_distribution, ChatMessage, GgufBackend, LabelSettings, LlmBackend, PromptInput,
    PromptSet, ScoreKind,
};
use serde_json::Value;
use std::sync::OnceLock;

/// Largest |fute − llama.cpp| on a log-probability (nats), llama.cpp on the
/// F32 copy: only summation order differs (measured 3.9e-3).
const F32_TOLERANCE: f64 = 1e-2;
/// The same against llama.cpp on the packaged Q4_K_M file, whose activations
/// are rounded to 8 bits (measured 0.38).
const Q4_TOLERANCE: f64 = 0.5;

fn gemma3() -> Option<&'static GgufBackend> {
    static MODEL: OnceLock<Option<GgufBackend>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = real_asset("gemma3")?;
            Some(GgufBackend::load(dir.join(GEMMA3_FILE)).expect("load Gemma-3-270M"))
        })
        .as_ref()
}

fn golden() -> Value {
    serde_json::from_str(include_str!("fixtures/gemma3-llama-cpp.json")).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenisation_equals_llama_cpp() {
    let Some(model) = gemma3() else { return };
    let tok = model.tokenizer();
    assert!(tok.is_sentencepiece());
    let g = golden();
    for t in g["texts"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&t["special"]), "{text:?}");
        assert_eq!(
            tok.encode_literal(text).unwrap(),
            ids(&t["literal"]),
            "{text:?} as literal text"
        );
        // Decoding gives the text back (no space prefix to strip for Gemma).
        assert_eq!(tok.decode(&ids(&t["special"])).unwrap(), text);
    }
    assert_eq!(tok.bos(), Some(g["bos"].as_u64().unwrap() as u32));
}

#[test]
fn completion_prompts_render_to_llama_cpps_ids() {
    let Some(model) = gemma3() else { return };
    // No chat template in the file and no ChatML tokens: completion text.
    assert!(model.template().completion);
    let g = golden();
    let set = PromptSet::builtin("sa").unwrap();
    let input = PromptInput::text("A wonderful, moving film with great acting.");
    let messages = set.messages(0, &input).unwrap();
    let prompt = &g["q4_k_m"]["prompts"][1];
    assert_eq!(
        model.render_chat(&messages, true).unwrap(),
        prompt["prompt"].as_str().unwrap()
    );
    assert_eq!(model.prompt_ids(&messages).unwrap(), ids(&prompt["ids"]));
}

#[test]
fn greedy_continuations_equal_llama_cpp() {
    let Some(model) = gemma3() else { return };
    let g = golden();
    let f32_runs = g["f32"]["prompts"].as_array().unwrap();
    let q4_runs = g["q4_k_m"]["prompts"].as_array().unwrap();
    for (f32_run, q4_run) in f32_runs.iter().zip(q4_runs) {
        let prompt = ids(&f32_run["ids"]);
        assert_eq!(prompt, ids(&q4_run["ids"]));
        let got = model.greedy_ids(&prompt, 16).unwrap();
        let agree = |run: &Value| {
            got.iter()
                .zip(ids(&run["greedy"]))
                .take_while(|(a, b)| **a == *b)
                .count()
        };
        eprintln!(
            "{:?} → {:?}: {} of 16 greedy tokens equal llama.cpp-f32's, {} llama.cpp-Q4_K_M's",
            f32_run["prompt"].as_str().unwrap(),
            model.tokenizer().decode(&got).unwrap(),
            agree(f32_run),
            agree(q4_run)
        );
        // The same arithmetic: the same 16 tokens.
        assert_eq!(got, ids(&f32_run["greedy"]));
        // With 8-bit activations a near tie can go the other way: the first
        // token must agree when llama.cpp's best leads its second by more
        // than the tolerance.
        let lp = q4_run["top_logprobs"].as_array().unwrap();
        if lp[0].as_f64().unwrap() - lp[1].as_f64().unwrap() > Q4_TOLERANCE {
            assert_eq!(got[0], ids(&q4_run["greedy"])[0]);
        }
    }
}

/// Largest |fute − reference| over the top next-token log-probabilities of
/// every prompt and the per-token log-probabilities of the perplexity text;
/// also checks the best next token and the backend's one-pass perplexity.
fn max_logprob_gap(model: &GgufBackend, reference: &Value, same_best: bool) -> f64 {
    let mut worst = 0f64;
    for p in reference["prompts"].as_array().unwrap() {
        let prompt = ids(&p["ids"]);
        let ours = log_softmax(&model.last_logits(&prompt).unwrap());
        let top = ids(&p["top_ids"]);
        if same_best {
            let best = (0..ours.len())
                .max_by(|&a, &b| ours[a].total_cmp(&ours[b]))
                .unwrap();
            assert_eq!(best as u32, top[0]);
        }
        for (id, want) in top.iter().zip(p["top_logprobs"].as_array().unwrap()) {
            let d = (ours[*id as usize] as f64 - want.as_f64().unwrap()).abs();
            worst = worst.max(d);
        }
    }
    let ppl = &reference["perplexity"];
    let text_ids = ids(&ppl["ids"]);
    let want: Vec<f64> = ppl["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let logits = model
        .dense()
        .unwrap()
        .forward(&text_ids[..text_ids.len() - 1])
        .unwrap();
    let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    let mut ours_sum = 0f64;
    for (i, row) in rows.iter().enumerate() {
        let lp = log_softmax(row)[text_ids[i + 1] as usize] as f64;
        ours_sum += lp;
        worst = worst.max((lp - want[i]).abs());
    }
    let p = model
        .perplexity(ppl["text"].as_str().unwrap(), true)
        .unwrap();
    assert_eq!(p.n_scored, want.len());
    assert!((p.nll_sum + ours_sum).abs() < 1e-3 * p.nll_sum.abs());
    let want_nll: f64 = -want.iter().sum::<f64>();
    eprintln!(
        "max |fute - llama.cpp| log-prob {worst:.2e} nats; perplexity {:.4} vs {:.4} over {} tokens",
        p.ppl,
        (want_nll / want.len() as f64).exp(),
        p.n_scored
    );
    worst
}

#[test]
fn log_probabilities_agree_with_llama_cpp() {
    let Some(model) = gemma3() else { return };
    let g = golden();
    let f32_gap = max_logprob_gap(model, &g["f32"], true);
    assert!(f32_gap <= F32_TOLERANCE, "vs llama.cpp-f32: {f32_gap}");
    let q4_gap = max_logprob_gap(model, &g["q4_k_m"], false);
    assert!(q4_gap <= Q4_TOLERANCE, "vs llama.cpp-Q4_K_M: {q4_gap}");
}

#[test]
fn label_distributions_run_completion_style() {
    let Some(model) = gemma3() else { return };
    let set = PromptSet::builtin("sa").unwrap();
    let input = PromptInput::text("A wonderful, moving film with great acting.");
    let dist = label_distribution(model, &set, 0, &input, &LabelSettings::default()).unwrap();
    assert_eq!(dist.kind, ScoreKind::LogProbs);
    assert_eq!(dist.labels, ["negative", "positive"]);
    assert!((dist.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(dist.imputed.iter().all(|i| !i));
    // The base model reads the review as positive.
    assert!(dist.probs[1] > dist.probs[0], "{dist:?}");
    // Perplexity of a chat is of the completion text (no control tokens).
    let chat = [ChatMessage::user("The capital of France is Paris.")];
    let a = model.perplexity_chat(&chat, true).unwrap();
    let b = model
        .perplexity("The capital of France is Paris.\n", true)
        .unwrap();
    assert_eq!(a.n_scored, b.n_scored);
    assert!((a.ppl - b.ppl).abs() < 1e-9 * a.ppl);
}
