//! A tiny Gemma 3 GGUF written by the test (random weights, a SentencePiece
//! vocabulary of a few pieces), run through `GgufBackend` and checked against
//! a plain scalar Gemma 3 forward pass written here from the architecture's
//! description. It exercises what the packaged Gemma-3-270M never reaches in
//! a short prompt: a sliding window shorter than the text, a layer pattern
//! and rotary bases read from the metadata, `query_pre_attn_scalar`, and
//! soft-capped attention scores and logits.

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use fute_llm::{GgufBackend, GgufOptions, LlmBackend};
use gguf_file::Value;
use std::io::Cursor;

const HIDDEN: usize = 8;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = 4;
const FFN: usize = 12;
const LAYERS: usize = 2;
const WINDOW: usize = 3;
const EPS: f64 = 1e-6;
const GLOBAL_BASE: f64 = 1_000_000.0;
const LOCAL_BASE: f64 = 10_000.0;
const QUERY_SCALAR: f64 = 9.0;
const ATTN_CAP: f64 = 3.0;
const FINAL_CAP: f64 = 5.0;
const PIECES: &[&str] = &[
    "<pad>", "<eos>", "<bos>", "<unk>", "▁", "a", "b", "c", "d", "e", "▁a", "ab", "cd",
];

/// Deterministic weights in [-1, 1): a 64-bit LCG.
struct Lcg(u64);

impl Lcg {
    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// Weights by GGUF name, each (shape, row-major values).
type Weights = Vec<(String, Vec<usize>, Vec<f32>)>;

fn weights() -> Weights {
    let mut rng = Lcg(7);
    let mut w: Weights = Vec::new();
    let mut add = |name: &str, shape: &[usize], scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v = rng
            .values(n, scale)
            .into_iter()
            .map(|x| x + offset)
            .collect();
        w.push((name.to_string(), shape.to_vec(), v));
    };
    add("token_embd.weight", &[PIECES.len(), HIDDEN], 0.5, 0.0);
    for i in 0..LAYERS {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        // Norm scales near 1 (as stored: Gemma's 1 + w).
        for norm in [
            "attn_norm",
            "post_attention_norm",
            "ffn_norm",
            "post_ffw_norm",
        ] {
            add(&n(norm), &[HIDDEN], 0.3, 1.0);
        }
        add(&n("attn_q_norm"), &[HEAD_DIM], 0.3, 1.0);
        add(&n("attn_k_norm"), &[HEAD_DIM], 0.3, 1.0);
        add(&n("attn_q"), &[HEADS * HEAD_DIM, HIDDEN], 0.5, 0.0);
        add(&n("attn_k"), &[KV_HEADS * HEAD_DIM, HIDDEN], 0.5, 0.0);
        add(&n("attn_v"), &[KV_HEADS * HEAD_DIM, HIDDEN], 0.5, 0.0);
        add(&n("attn_output"), &[HIDDEN, HEADS * HEAD_DIM], 0.5, 0.0);
        add(&n("ffn_gate"), &[FFN, HIDDEN], 0.5, 0.0);
        add(&n("ffn_up"), &[FFN, HIDDEN], 0.5, 0.0);
        add(&n("ffn_down"), &[HIDDEN, FFN], 0.5, 0.0);
    }
    add("output_norm.weight", &[HIDDEN], 0.3, 1.0);
    w
}

/// The GGUF file: layer 0 local (sliding window), layer 1 global.
fn gguf(weights: &Weights) -> Vec<u8> {
    let s = |v: &str| Value::String(v.to_string());
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", s("gemma3")),
        ("general.name", s("tiny gemma3")),
        ("gemma3.context_length", Value::U32(64)),
        ("gemma3.embedding_length", Value::U32(HIDDEN as u32)),
        ("gemma3.block_count", Value::U32(LAYERS as u32)),
        ("gemma3.feed_forward_length", Value::U32(FFN as u32)),
        ("gemma3.attention.head_count", Value::U32(HEADS as u32)),
        (
            "gemma3.attention.head_count_kv",
            Value::U32(KV_HEADS as u32),
        ),
        ("gemma3.attention.key_length", Value::U32(HEAD_DIM as u32)),
        ("gemma3.attention.value_length", Value::U32(HEAD_DIM as u32)),
        (
            "gemma3.attention.layer_norm_rms_epsilon",
            Value::F32(EPS as f32),
        ),
        ("gemma3.attention.sliding_window", Value::U32(WINDOW as u32)),
        (
            "gemma3.attention.sliding_window_pattern",
            Value::Array(vec![Value::Bool(true), Value::Bool(false)]),
        ),
        ("gemma3.rope.freq_base", Value::F32(GLOBAL_BASE as f32)),
        ("gemma3.rope.freq_base_swa", Value::F32(LOCAL_BASE as f32)),
        (
            "gemma3.attention.query_pre_attn_scalar",
            Value::F32(QUERY_SCALAR as f32),
        ),
        ("gemma3.attn_logit_softcapping", Value::F32(ATTN_CAP as f32)),
        (
            "gemma3.final_logit_softcapping",
            Value::F32(FINAL_CAP as f32),
        ),
        ("tokenizer.ggml.model", s("llama")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(PIECES.iter().map(|p| s(p)).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array((0..PIECES.len()).map(|i| Value::F32(-(i as f32))).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(
                (0..PIECES.len())
                    .map(|i| Value::I32(if i < 4 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
    ];
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(name, shape, v)| {
            let t = Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap();
            (name.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap())
        })
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md, &refs).unwrap();
    buf.into_inner()
}

/// The scalar reference: one matrix by name, row-major (out, in).
struct Reference<'a>(&'a Weights);

impl Reference<'_> {
    fn w(&self, name: &str) -> Vec<f64> {
        let (_, _, v) = self.0.iter().find(|(n, _, _)| n == name).unwrap();
        v.iter().map(|&x| x as f64).collect()
    }

    fn matvec(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let w = self.w(name);
        w.chunks(x.len())
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    }

    fn rms(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let scale = self.w(name);
        let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + EPS).sqrt();
        x.iter().zip(&scale).map(|(v, s)| v * inv * s).collect()
    }

    /// Rotates halves of `x` (one head) at position `pos`.
    fn rope(x: &[f64], pos: usize, base: f64) -> Vec<f64> {
        let half = x.len() / 2;
        let mut out = x.to_vec();
        for i in 0..half {
            let angle = pos as f64 * base.powf(-(2.0 * i as f64) / x.len() as f64);
            let (c, s) = (angle.cos(), angle.sin());
            out[i] = x[i] * c - x[i + half] * s;
            out[i + half] = x[i] * s + x[i + half] * c;
        }
        out
    }

    fn gelu_tanh(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
    }

    /// Logits at every position of `tokens`.
    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let embd = self.w("token_embd.weight");
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                embd[t as usize * HIDDEN..(t as usize + 1) * HIDDEN]
                    .iter()
                    .map(|v| v * (HIDDEN as f64).sqrt())
                    .collect()
            })
            .collect();
        for layer in 0..LAYERS {
            let n = |t: &str| format!("blk.{layer}.{t}.weight");
            let local = layer == 0;
            let base = if local { LOCAL_BASE } else { GLOBAL_BASE };
            let head = |v: &[f64], h: usize| v[h * HEAD_DIM..(h + 1) * HEAD_DIM].to_vec();
            let mut qs = Vec::new();
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (pos, x) in xs.iter().enumerate() {
                let h = self.rms(&n("attn_norm"), x);
                let q = self.matvec(&n("attn_q"), &h);
                let k = self.matvec(&n("attn_k"), &h);
                qs.push(
                    (0..HEADS)
                        .map(|i| Self::rope(&self.rms(&n("attn_q_norm"), &head(&q, i)), pos, base))
                        .collect::<Vec<_>>(),
                );
                ks.push(Self::rope(
                    &self.rms(&n("attn_k_norm"), &head(&k, 0)),
                    pos,
                    base,
                ));
                vs.push(self.matvec(&n("attn_v"), &h));
            }
            for pos in 0..xs.len() {
                let mut attn = Vec::new();
                for q in &qs[pos] {
                    let keys: Vec<usize> =
                        (0..=pos).filter(|&j| !local || pos - j < WINDOW).collect();
                    let scores: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            let s: f64 = q.iter().zip(&ks[j]).map(|(a, b)| a * b).sum::<f64>()
                                / QUERY_SCALAR.sqrt();
                            ATTN_CAP * (s / ATTN_CAP).tanh()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    let mut out = vec![0f64; HEAD_DIM];
                    for (&j, p) in keys.iter().zip(&e) {
                        for (o, v) in out.iter_mut().zip(&vs[j]) {
                            *o += p / z * v;
                        }
                    }
                    attn.extend(out);
                }
                let a = self.rms(
                    &n("post_attention_norm"),
                    &self.matvec(&n("attn_output"), &attn),
                );
                let x: Vec<f64> = xs[pos].iter().zip(&a).map(|(x, a)| x + a).collect();
                let h = self.rms(&n("ffn_norm"), &x);
                let gate = self.matvec(&n("ffn_gate"), &h);
                let up = self.matvec(&n("ffn_up"), &h);
                let inner: Vec<f64> = gate
                    .iter()
                    .zip(&up)
                    .map(|(g, u)| Self::gelu_tanh(*g) * u)
                    .collect();
                let f = self.rms(&n("post_ffw_norm"), &self.matvec(&n("ffn_down"), &inner));
                xs[pos] = x.iter().zip(&f).map(|(x, f)| x + f).collect();
            }
        }
        xs.iter()
            .map(|x| {
                let h = self.rms("output_norm.weight", x);
                self.matvec("token_embd.weight", &h)
                    .into_iter()
                    .map(|l| FINAL_CAP * (l / FINAL_CAP).tanh())
                    .collect()
            })
            .collect()
    }
}

fn load(dir: &tempfile::TempDir, bytes: &[u8]) -> GgufBackend {
    let path = dir.path().join("tiny-gemma3.gguf");
    std::fs::write(&path, bytes).unwrap();
    GgufBackend::load(&path).unwrap()
}

#[test]
fn tiny_gemma3_matches_a_scalar_reference_beyond_its_sliding_window() {
    let w = weights();
    let dir = tempfile::tempdir().unwrap();
    let model = load(&dir, &gguf(&w));
    // 10 positions: layer 0 sees only 3 of them from position 3 on.
    let tokens: Vec<u32> = vec![2, 5, 10, 6, 11, 12, 7, 8, 9, 4];
    let want = Reference(&w).logits(&tokens);
    let got: Vec<Vec<f32>> = model
        .dense()
        .unwrap()
        .forward(&tokens)
        .unwrap()
        .to_vec2()
        .unwrap();
    let mut worst = 0f64;
    for (g, r) in got.iter().zip(&want) {
        for (a, b) in g.iter().zip(r) {
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    assert!(worst < 1e-4, "max |dense - scalar reference| = {worst}");
    // Soft-capped logits stay inside the cap.
    assert!(got.iter().flatten().all(|l| l.abs() < FINAL_CAP as f32));
    // The KV-cache path (last logits after a shared prefix) agrees too.
    let _ = model.last_logits(&tokens[..6]).unwrap();
    let last = model.last_logits(&tokens).unwrap();
    let d = last
        .iter()
        .zip(&want[tokens.len() - 1])
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0f64, f64::max);
    assert!(d < 1e-4, "cached continuation {d}");
}

#[test]
fn the_window_hides_early_tokens_from_local_layers_only() {
    let w = weights();
    let dir = tempfile::tempdir().unwrap();
    let model = load(&dir, &gguf(&w));
    let dense = model.dense().unwrap();
    let a: Vec<u32> = vec![2, 5, 6, 7, 8, 9, 5, 6];
    let mut b = a.clone();
    b[1] = 12;
    let la: Vec<Vec<f32>> = dense.forward(&a).unwrap().to_vec2().unwrap();
    let lb: Vec<Vec<f32>> = dense.forward(&b).unwrap().to_vec2().unwrap();
    // The global layer still sees position 1 from the last position.
    assert!(gap(&la[7], &lb[7]) > 1e-4);
    // With the global layer made local too, it no longer does: two local
    // layers reach back 2 × (3 − 1) = 4 positions, so position 7 sees 3.. only.
    let mut all_local = gguf(&w);
    let from = find(&all_local, b"gemma3.attention.sliding_window_pattern");
    // After the key: value type (u32), element type (u32), count (u64), flags.
    let flags = from + b"gemma3.attention.sliding_window_pattern".len() + 4 + 4 + 8;
    assert_eq!(&all_local[flags..flags + 2], &[1, 0]);
    all_local[flags + 1] = 1;
    let dir2 = tempfile::tempdir().unwrap();
    let local = load(&dir2, &all_local);
    let dense = local.dense().unwrap();
    let la: Vec<Vec<f32>> = dense.forward(&a).unwrap().to_vec2().unwrap();
    let lb: Vec<Vec<f32>> = dense.forward(&b).unwrap().to_vec2().unwrap();
    assert!(gap(&la[7], &lb[7]) < 1e-6);
    assert!(gap(&la[6], &lb[6]) < 1e-6);
    assert!(gap(&la[5], &lb[5]) > 1e-4);
}

#[test]
fn a_gemma3_file_is_prompted_completion_style_and_runs_only_dense() {
    let w = weights();
    let dir = tempfile::tempdir().unwrap();
    let bytes = gguf(&w);
    let model = load(&dir, &bytes);
    assert!(model.template().completion);
    let chat = [fute_llm::ChatMessage::user("ab cd")];
    assert_eq!(model.render_chat(&chat, true).unwrap(), "ab cd\nAnswer:\n");
    let err = GgufBackend::load_with(
        dir.path().join("tiny-gemma3.gguf"),
        &GgufOptions {
            dequantize: false,
            ..GgufOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gemma3") && err.contains("dequantize"),
        "{err}"
    );
}

/// Largest |a − b|.
fn gap(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Offset of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}
