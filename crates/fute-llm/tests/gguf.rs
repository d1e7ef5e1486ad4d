//! Real tier: the packaged SmolLM2-135M-Instruct GGUF on candle (skipped when
//! asset `smollm2` is not fetched, unless FUTE_REQUIRE_ASSETS=1).

use fute_core::testing::real_asset;
use fute_llm::gguf::SMOLLM2_FILE;
use fute_llm::parallel::map_calls;
use fute_llm::{
    label_distribution, ChatMessage, GgufBackend, GgufOptions, LabelSettings, LlmBackend,
    PromptInput, PromptSet, ScoreKind, ScoreQuery,
};
use std::sync::OnceLock;

fn smollm2() -> Option<&'static GgufBackend> {
    static MODEL: OnceLock<Option<GgufBackend>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = real_asset("smollm2")?;
            Some(GgufBackend::load(dir.join(SMOLLM2_FILE)).expect("load SmolLM2"))
        })
        .as_ref()
}

/// SmolLM2 with its Q4_1 weights kept quantized: llama.cpp's arithmetic
/// (8-bit activations), which the f32 default does not reproduce token for token.
fn smollm2_quantized() -> Option<&'static GgufBackend> {
    static MODEL: OnceLock<Option<GgufBackend>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = real_asset("smollm2")?;
            let options = GgufOptions {
                dequantize: false,
                ..GgufOptions::default()
            };
            Some(GgufBackend::load_with(dir.join(SMOLLM2_FILE), &options).expect("load SmolLM2"))
        })
        .as_ref()
}

#[test]
fn tokenizer_and_greedy_ids_match_llama_cpp() {
    // Quantized weights: with f32 weights, greedy decoding leaves llama.cpp's
    // path at the sixth token.
    let Some(model) = smollm2_quantized() else {
        return;
    };
    let tok = model.tokenizer();
    // Reference ids from llama.cpp (llama-cpp-python 0.3.36), models-data.md §2.
    let prompt = tok.encode("The capital of France is").unwrap();
    assert_eq!(prompt, [504, 3575, 282, 4649, 314]);
    let greedy = model.greedy_ids(&prompt, 12).unwrap();
    assert_eq!(
        greedy,
        [7042, 30, 198, 198, 504, 1797, 1918, 553, 253, 2155, 282, 4723]
    );
    assert_eq!(
        tok.decode(&greedy).unwrap(),
        " Paris.\n\nThe United States has a population of approximately"
    );
    // Control tokens written in the text are single ids; round trips are exact.
    let chat = "<|im_start|>user\nHi 2024!<|im_end|>\n";
    let ids = tok.encode(chat).unwrap();
    assert!(tok.is_control(ids[0]));
    assert_eq!(tok.decode(&ids).unwrap(), chat);
}

/// Token ids from llama.cpp's own tokenizer (llama-cpp-python 0.3.36 server,
/// `POST /extras/tokenize`, special tokens parsed) for the same GGUF.
const LLAMA_CPP_IDS: &[(&str, &[u32])] = &[
    ("The capital of France is", &[504, 3575, 282, 4649, 314]),
    (
        "Hello  world!\n\n  Tabs\tand 12345 numbers, 3.14 and 1,000,000.",
        &[
            19556, 216, 905, 17, 8866, 312, 7366, 197, 397, 216, 33, 34, 35, 36, 37, 2966, 28, 216,
            35, 30, 33, 36, 284, 216, 33, 28, 32, 32, 32, 28, 32, 32, 32, 30,
        ],
    ),
    (
        "It's a don't-miss film; I'd say it's GREAT!!! 10/10 :)",
        &[
            1589, 506, 253, 1326, 982, 29, 8637, 4771, 43, 339, 6737, 1643, 357, 506, 23675, 2062,
            29646, 216, 33, 32, 31, 33, 32, 33480,
        ],
    ),
    (
        "Café naïve résumé — “quoted” ‘text’ … 日本語 😀",
        &[
            51, 1939, 2756, 15486, 46494, 412, 2756, 5422, 2756, 1841, 619, 385, 5036, 573, 1551,
            2692, 417, 5548, 17097, 241, 115, 40993, 179, 120, 248, 40303, 218,
        ],
    ),
    (
        "<|im_start|>user\nIs this review positive or negative?<|im_end|>\n<|im_start|>assistant\n",
        &[
            1, 4093, 198, 4182, 451, 2523, 2731, 355, 3524, 47, 2, 198, 1, 520, 9531, 198,
        ],
    ),
    (
        "   leading spaces and trailing   ",
        &[256, 2899, 5600, 284, 35079, 333],
    ),
    ("yes", &[10407]),
    ("Yes", &[10539]),
    ("positive", &[16185]),
    ("Positive", &[31176]),
    ("maybe", &[27066]),
    ("contradiction", &[2651, 2270, 2032]),
];

#[test]
fn token_ids_equal_llama_cpp_on_varied_texts() {
    let Some(model) = smollm2() else { return };
    for (text, want) in LLAMA_CPP_IDS {
        assert_eq!(model.tokenizer().encode(text).unwrap(), *want, "{text:?}");
    }
}

#[test]
fn chat_template_comes_from_the_gguf() {
    let Some(model) = smollm2() else { return };
    let text = model.render_chat(&[ChatMessage::user("Hi")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn scores_generation_perplexity_and_label_distribution() {
    let Some(model) = smollm2() else { return };
    let messages = [ChatMessage::user(
        "Is the sentiment of this review positive or negative? Review: A wonderful, moving film with great acting. Answer with one word.",
    )];
    let query = ScoreQuery {
        candidates: vec!["positive".into(), "Positive".into(), "negative".into()],
        top_k: 5,
        ..ScoreQuery::default()
    };
    let scores = model.score_answer(&messages, &query).unwrap();
    assert_eq!(scores.kind, ScoreKind::LogProbs);
    assert_eq!(scores.top.len(), 5);
    assert!(scores.top.windows(2).all(|w| w[0].score >= w[1].score));
    let total: f64 = scores.top.iter().map(|t| (t.score as f64).exp()).sum();
    assert!(total <= 1.0 + 1e-4);
    assert!(scores.candidates.iter().all(|c| c.score.is_some()));

    let raw = model
        .score_answer(
            &messages,
            &ScoreQuery {
                raw_logits: true,
                ..query.clone()
            },
        )
        .unwrap();
    assert_eq!(raw.kind, ScoreKind::Logits);
    // Logits and log-probs differ by one constant.
    let shift = raw.top[0].score - scores.top[0].score;
    for (a, b) in raw.top.iter().zip(&scores.top) {
        assert!((a.score - b.score - shift).abs() < 1e-3);
    }

    let generation = model
        .generate(
            &messages,
            &fute_llm::GenerateOptions {
                max_tokens: 8,
                stop: vec![],
                ..fute_llm::GenerateOptions::default()
            },
        )
        .unwrap();
    assert!(generation.n_tokens > 0 && generation.n_tokens <= 8);

    let ppl = model
        .perplexity("The capital of France is Paris.", false)
        .unwrap();
    assert_eq!(ppl.n_scored, 6);
    assert!(ppl.ppl.is_finite() && ppl.ppl > 1.0);
    let gibberish = model
        .perplexity("France the Paris capital of is.", false)
        .unwrap();
    assert!(gibberish.ppl > ppl.ppl, "{} vs {}", gibberish.ppl, ppl.ppl);

    let set = PromptSet::builtin("sa").unwrap();
    let input = PromptInput::text("A wonderful, moving film with great acting.");
    let dist = label_distribution(model, &set, 6, &input, &LabelSettings::default()).unwrap();
    assert_eq!(dist.labels, ["negative", "positive"]);
    assert!((dist.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(dist.imputed.iter().all(|i| !i));
    let clipped = label_distribution(
        model,
        &set,
        6,
        &input,
        &LabelSettings {
            clip_at_zero: true,
            ..LabelSettings::default()
        },
    )
    .unwrap();
    assert_eq!(clipped.kind, ScoreKind::Logits);
    assert!(clipped.scores.iter().all(|s| *s >= 0.0));
    eprintln!(
        "SA prompt 6: {:?} (greedy {:?}); clipped {:?}",
        dist.probs, dist.greedy, clipped.probs
    );
}

/// Chat prompts of a few lengths, as token ids (BOS when the model asks).
fn chat_prompt_ids(model: &GgufBackend) -> Vec<Vec<u32>> {
    let questions = [
        "Hi",
        "Is the sentiment of this review positive or negative? Review: A wonderful, moving film with great acting. Answer with one word.",
        "Summarise in one sentence: The committee met on Tuesday to discuss the budget. After three hours of debate, members agreed to cut spending on new buildings by ten percent and to spend the savings on teachers' salaries, which had not risen in five years.",
    ];
    // Over 512 tokens, so attention runs in more than one query block.
    let long = "Summarise: ".to_string()
        + &"The committee met again and argued about the budget for the new school. ".repeat(40);
    let tok = model.tokenizer();
    questions
        .iter()
        .copied()
        .chain([long.as_str()])
        .map(|q| {
            let text = model.render_chat(&[ChatMessage::user(q)], true).unwrap();
            let mut ids: Vec<u32> = if tok.add_bos() {
                tok.bos().into_iter().collect()
            } else {
                Vec::new()
            };
            ids.extend(tok.encode(&text).unwrap());
            ids
        })
        .collect()
}

/// candle's own `quantized_llama` on the GGUF with every tensor expanded to
/// f32: an implementation independent of ours, as the reference.
fn candle_reference_last_logits(ids: &[u32]) -> Option<Vec<f32>> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use candle_transformers::models::quantized_llama::ModelWeights;
    static MODEL: OnceLock<Option<std::sync::Mutex<ModelWeights>>> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let path = real_asset("smollm2")?.join(SMOLLM2_FILE);
        let dev = Device::Cpu;
        let mut file = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        let tensors: Vec<(&str, QTensor)> = names
            .into_iter()
            .map(|n| {
                let q = content.tensor(&mut file, n, &dev).unwrap();
                let f = QTensor::quantize(&q.dequantize(&dev).unwrap(), GgmlDType::F32).unwrap();
                (n.as_str(), f)
            })
            .collect();
        let meta: Vec<(&str, &gguf_file::Value)> = content
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let mut buf = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &meta, &refs).unwrap();
        buf.set_position(0);
        let copy = gguf_file::Content::read(&mut buf).unwrap();
        Some(std::sync::Mutex::new(
            ModelWeights::from_gguf(copy, &mut buf, &dev).unwrap(),
        ))
    });
    let mut model = model.as_ref()?.lock().unwrap();
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&input, 0).unwrap();
    Some(logits.squeeze(0).unwrap().to_vec1().unwrap())
}

#[test]
fn dense_model_and_its_kv_cache_match_candles_quantized_llama() {
    let Some(model) = smollm2() else { return };
    let dense = model.dense().unwrap();
    // Prompts in a row share their start: the backend's cache runs only the rest.
    for ids in chat_prompt_ids(model) {
        let all = dense.forward(&ids).unwrap();
        assert_eq!(all.dims(), [ids.len(), dense.vocab_size()]);
        let last: Vec<f32> = all.get(ids.len() - 1).unwrap().to_vec1().unwrap();
        let cached = model.last_logits(&ids).unwrap();
        let d = last
            .iter()
            .zip(&cached)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Same arithmetic in other chunks: only summation order differs.
        assert!(d < 3e-4, "one pass vs cached continuation: {d}");
        let want = candle_reference_last_logits(&ids).unwrap();
        let max_abs = last
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
        eprintln!(
            "{} tokens: max |dense - kv-cache| logit {max_abs:.2e}",
            ids.len()
        );
        // Same f32 weights, different op order (and rope angles in f64):
        // measured ≤ 7e-5 on SmolLM2.
        assert!(max_abs < 3e-4, "max abs logit difference {max_abs}");
        assert_eq!(argmax(&last), argmax(&want));
    }
}

#[test]
fn one_pass_perplexity_equals_the_stepwise_reference() {
    let Some(model) = smollm2() else { return };
    let texts: Vec<(String, bool)> = vec![
        ("The capital of France is Paris.".into(), false),
        ("France the Paris capital of is.".into(), true),
        (
            model
                .render_chat(
                    &[ChatMessage::user(
                        "Is the sentiment of this review positive or negative? Review: This movie was a complete waste of time. The plot made no sense, the acting was wooden and I walked out halfway. Avoid at all costs. Answer with one word.",
                    )],
                    true,
                )
                .unwrap(),
            true,
        ),
    ];
    for (text, add_bos) in &texts {
        let t = std::time::Instant::now();
        let fast = model.perplexity(text, *add_bos).unwrap();
        let fast_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let slow = model.perplexity_stepwise(text, *add_bos).unwrap();
        let slow_s = t.elapsed().as_secs_f64();
        let rel = (fast.ppl - slow.ppl).abs() / slow.ppl;
        eprintln!(
            "{} scored tokens: ppl {:.6} vs stepwise {:.6} (rel {rel:.1e}); {fast_s:.3} s vs {slow_s:.3} s",
            fast.n_scored, fast.ppl, slow.ppl
        );
        assert_eq!(fast.n_scored, slow.n_scored);
        assert!(rel < 1e-4, "relative perplexity difference {rel}");
    }
}

#[test]
fn quantized_backend_builds_the_same_dense_model_on_first_use() {
    let (Some(f32_model), Some(quantized)) = (smollm2(), smollm2_quantized()) else {
        return;
    };
    // Both dense models hold the same dequantized values; only a threaded
    // matmul's summation order could tell them apart.
    let text = "The capital of France is Paris.";
    let a = f32_model.perplexity(text, true).unwrap();
    let b = quantized.perplexity(text, true).unwrap();
    assert_eq!(a.n_scored, b.n_scored);
    assert!((a.ppl - b.ppl).abs() <= 1e-6 * a.ppl, "{a:?} vs {b:?}");
}

#[test]
fn perplexity_refuses_texts_longer_than_the_context() {
    let Some(model) = smollm2() else { return };
    let context = model.dense().unwrap().context_length();
    let text = " a".repeat(context + 10);
    let err = model.perplexity(&text, false).unwrap_err().to_string();
    assert!(err.contains("longer than the model's context"), "{err}");
}

/// Issue 13: calls run at once (one worker per core, each with a KV cache of
/// its own from the pool, over the one copy of the weights) give what one call
/// at a time gives. The only difference allowed is float rounding where a
/// cache reuses a prompt start at another position (a one-pass run and a
/// cached continuation differ by < 3e-4 in a logit, see above), so
/// probabilities agree to 5e-4 and predictions and greedy tokens exactly.
#[test]
fn concurrent_label_distributions_equal_one_call_at_a_time() {
    let Some(model) = smollm2() else { return };
    let set = PromptSet::builtin("sa").unwrap();
    let texts = [
        "A wonderful film, I loved every minute of it.",
        "Dull, predictable and far too long.",
        "The plot made no sense, but the acting was great.",
        "I would happily watch it again tomorrow.",
        "The worst two hours I have spent in a cinema.",
    ];
    // Two vanilla prompts and a chain-of-thought one (prompt 10: generation too).
    let calls: Vec<(usize, PromptInput)> = [0usize, 4, 10]
        .iter()
        .flat_map(|&p| texts.iter().map(move |t| (p, PromptInput::text(*t))))
        .collect();
    let settings = LabelSettings {
        cot_max_tokens: 8,
        ..LabelSettings::default()
    };
    let run = |workers: usize| {
        map_calls(
            workers,
            &calls,
            |_, (p, x)| label_distribution(model, &set, *p, x, &settings),
            &mut |_, _| {},
        )
        .unwrap()
    };
    let one = run(1);
    let two = run(2);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(a.predicted, b.predicted, "call {i}");
        assert_eq!(a.greedy, b.greedy, "call {i}");
        assert_eq!(a.reasoning, b.reasoning, "call {i}");
        for (p, q) in a.probs.iter().zip(&b.probs) {
            assert!((p - q).abs() < 5e-4, "call {i}: {p} vs {q}");
        }
    }
    // And perplexities (one dense pass each, no cache): identical.
    let ppl = |workers: usize| {
        map_calls(
            workers,
            &texts,
            |_, t| model.perplexity(t, true).map(|p| p.ppl),
            &mut |_, _| {},
        )
        .unwrap()
    };
    assert_eq!(ppl(1), ppl(2));
}
