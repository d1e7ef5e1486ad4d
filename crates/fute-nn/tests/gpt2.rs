//! GPT-2 beyond the conformance suite: the PEFT methods against transformers
//! (`scripts/golden/gpt2_peft_golden.py`), training through fute-nn's loop with
//! full fine-tuning and each PEFT method, and what loading accepts or refuses
//! (generic config names, old causal-mask buffers, a Conv1D weight of the wrong
//! shape). The model is the conformance fixture (`conformance/gpt2/model`:
//! vocab 60, hidden 16, 2 blocks, 24 positions).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::rel_err;
use fute_nn::peft::{LoraConfig, Peft, PeftConfig, PrefixConfig, PromptConfig};
use fute_nn::rng::SeededRng;
use fute_nn::train::{
    evaluate, train, AdamWConfig, Control, TrainConfig, TrainExample, TrainTarget,
};
use fute_nn::{loss, models, BuildOptions, Encoding, HeadSpec, Mode, ModelInput, TaskModel};

fn model_dir() -> PathBuf {
    common::fixture("conformance").join("gpt2").join("model")
}

fn opts(dtype: DType, seed: u64) -> BuildOptions {
    BuildOptions {
        dtype,
        device: Device::Cpu,
        seed,
        ..Default::default()
    }
}

fn load(dir: &Path, spec: HeadSpec, dtype: DType, seed: u64) -> Box<dyn TaskModel> {
    models::load(dir, spec, &opts(dtype, seed)).unwrap()
}

fn pair_input() -> ModelInput {
    let meta = common::json("conformance/gpt2/golden.json");
    ModelInput {
        input_ids: common::ids_tensor(&meta["pair"]["input_ids"]),
        token_type_ids: None,
        attention_mask: common::ids_tensor(&meta["pair"]["attention_mask"]),
    }
}

/// Prefix, prompt tuning and LoRA on GPT-2 give transformers' logits, loss and
/// gradients (PEFT parameters and `score.weight`) in f64.
#[test]
fn peft_methods_match_transformers() {
    let meta = common::json("conformance/gpt2/peft.json");
    let g = common::tensors("conformance/gpt2/peft.safetensors");
    let labels: Vec<u32> = serde_json::from_value(meta["labels"].clone()).unwrap();
    let labels = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let n = |k: &str| meta[k].as_u64().unwrap() as usize;
    let configs = [
        (
            "prefix",
            PeftConfig::Prefix(PrefixConfig {
                len: n("prefix_len"),
                projection: None,
                dropout: 0.0,
            }),
        ),
        (
            "prompt",
            PeftConfig::PromptTuning(PromptConfig {
                len: n("prompt_len"),
            }),
        ),
        (
            "lora",
            PeftConfig::Lora(LoraConfig {
                rank: n("lora_rank"),
                alpha: meta["lora_alpha"].as_f64().unwrap(),
                targets: Vec::new(),
            }),
        ),
    ];
    let x = pair_input();
    for (tag, cfg) in configs {
        let base = load(
            &model_dir(),
            HeadSpec::Classification { num_labels: 3 },
            DType::F64,
            0,
        );
        base.set_parameter("score.weight", &g["score.weight"])
            .unwrap();
        let m = Peft::adapt(base, &cfg, 1).unwrap();
        let prefix = format!("{tag}.param.");
        let mut set = 0;
        for (name, t) in &g {
            if let Some(p) = name.strip_prefix(&prefix) {
                m.set_parameter(p, t).unwrap();
                set += 1;
            }
        }
        assert_eq!(
            set,
            m.peft.own_names().len(),
            "{tag}: every PEFT tensor set"
        );
        let logits = m
            .forward(&x, &Mode::eval())
            .unwrap()
            .logits()
            .unwrap()
            .clone();
        let out_err = rel_err(&logits, &g[&format!("{tag}.logits")]);
        let l = loss::cross_entropy(&logits, &labels).unwrap();
        let want = meta[tag]["loss"].as_f64().unwrap();
        let loss_err = (l.to_scalar::<f64>().unwrap() - want).abs() / want;
        let grads = l.backward().unwrap();
        let mut worst: f64 = 0.0;
        let mut checked = 0;
        for (name, var) in m.named_parameters() {
            let Some(want) = g.get(&format!("{tag}.grad.{name}")) else {
                continue;
            };
            let got = grads.get(var.as_tensor()).expect("a gradient");
            worst = worst.max(rel_err(got, want));
            checked += 1;
        }
        println!(
            "gpt2 {tag}: logits {out_err:.1e}, loss {loss_err:.1e}, worst of {checked} gradients {worst:.1e}"
        );
        assert_eq!(checked, set + 1, "{tag}: PEFT tensors and score.weight");
        assert!(
            out_err < 1e-10 && loss_err < 1e-10 && worst < 1e-10,
            "{tag}"
        );
    }
}

fn enc(ids: Vec<u32>) -> Encoding {
    let n = ids.len();
    Encoding {
        ids,
        type_ids: vec![0; n],
        sequence_ids: (0..n).map(|i| (i > 0 && i + 1 < n).then_some(0)).collect(),
        offsets: (0..n)
            .map(|i| (i > 0 && i + 1 < n).then_some((i, i + 1)))
            .collect(),
        truncated: false,
    }
}

/// Separable for a causal model: label 1 when the *first* word id is ≥ 32, so
/// the last token (which the head reads) must attend back to it.
fn toy_task(n: usize, seed: u64) -> Vec<TrainExample> {
    let rng = SeededRng::new(seed);
    (0..n)
        .map(|_| {
            let len = 2 + (rng.next_u64() % 8) as usize;
            let words: Vec<u32> = (0..len).map(|_| 4 + (rng.next_u64() % 56) as u32).collect();
            let label = u32::from(words[0] >= 32);
            let mut ids = vec![2];
            ids.extend(&words);
            ids.push(3);
            TrainExample {
                encoding: enc(ids),
                target: TrainTarget::Label(label),
            }
        })
        .collect()
}

fn train_cfg(epochs: usize, lr: f64, trainable: Option<Vec<String>>) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        optimizer: AdamWConfig {
            lr,
            ..Default::default()
        },
        eval_batch_size: 16,
        seed: 3,
        trainable,
        ..Default::default()
    }
}

/// Full fine-tuning through `fute_nn::train`: the training loss falls by half
/// and the dev accuracy ends high (pad id 0, the config's `pad_token_id`).
#[test]
fn sequence_model_learns_a_separable_task() {
    let m = load(
        &model_dir(),
        HeadSpec::Classification { num_labels: 2 },
        DType::F32,
        3,
    );
    assert_eq!(m.describe().pad_token_id, Some(0));
    let (data, dev) = (toy_task(96, 11), toy_task(48, 12));
    let (dev_loss0, acc0) = evaluate(&m, &dev, 0, 16).unwrap();
    let report = train(
        &m,
        &data,
        Some(&dev),
        0,
        &train_cfg(25, 1e-2, None),
        &mut |_| Control::Continue,
    )
    .unwrap();
    let first = report.history.first().unwrap().train_loss;
    let last = report.history.last().unwrap().train_loss;
    let (dev_loss, acc) = evaluate(&m, &dev, 0, 16).unwrap();
    println!(
        "gpt2 full: train loss {first:.3} → {last:.3}; dev loss {dev_loss0:.3} → {dev_loss:.3}, \
         acc {acc0:.2} → {acc:.2}"
    );
    assert!(last < 0.5 * first, "train loss {first} → {last}");
    assert!(acc >= 0.85, "dev accuracy {acc}");
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Each PEFT method trains on GPT-2: the loss falls, every trainable tensor
/// moves and every other one stays bit-identical.
#[test]
fn peft_methods_train_only_their_parameters() {
    let data = toy_task(48, 5);
    let configs = [
        PeftConfig::Prefix(PrefixConfig {
            len: 4,
            projection: None,
            dropout: 0.1,
        }),
        PeftConfig::PromptTuning(PromptConfig { len: 4 }),
        PeftConfig::Lora(LoraConfig::default()),
        PeftConfig::BitFit,
    ];
    for cfg in configs {
        let base = load(
            &model_dir(),
            HeadSpec::Classification { num_labels: 2 },
            DType::F32,
            5,
        );
        let m = Peft::adapt(base, &cfg, 5).unwrap();
        let before: Vec<(String, Vec<u64>)> = m
            .named_parameters()
            .into_iter()
            .map(|(n, v)| (n, bits(v.as_tensor())))
            .collect();
        let trainable = m.peft.trainable_names(&m);
        let report = train(
            &m,
            &data,
            None,
            0,
            &train_cfg(4, 1e-2, Some(trainable.clone())),
            &mut |_| Control::Continue,
        )
        .unwrap();
        let losses: Vec<f64> = report.history.iter().map(|h| h.train_loss).collect();
        assert!(
            losses.last() < losses.first(),
            "{}: loss did not fall: {losses:?}",
            cfg.name()
        );
        let (mut frozen, mut changed) = (0, 0);
        for (name, old) in &before {
            let new = bits(m.parameter(name).unwrap().as_tensor());
            if trainable.contains(name) {
                assert_ne!(&new, old, "{}: trainable {name} did not move", cfg.name());
                changed += 1;
            } else {
                assert_eq!(&new, old, "{}: frozen {name} changed", cfg.name());
                frozen += 1;
            }
        }
        println!(
            "gpt2 {}: {changed} tensors trained, {frozen} frozen and bit-identical, losses {losses:?}",
            cfg.name()
        );
        // 2 blocks × 12 tensors + wte, wpe, ln_f (2): 28 backbone tensors, of
        // which 6 per block + 2 tables + ln_f.weight = 15 are not biases.
        let backbone_frozen = if cfg == PeftConfig::BitFit { 15 } else { 28 };
        assert_eq!(frozen, backbone_frozen, "{}", cfg.name());
    }
}

/// Copies the fixture model to a temporary folder, with `edit` applied to its
/// config and `tensors` changed (`None` removes).
fn edited_copy(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    tensors: &[(&str, Option<Tensor>)],
) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(model_dir().join("config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let mut st: HashMap<String, Tensor> =
        candle_core::safetensors::load(model_dir().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    for (name, t) in tensors {
        match t {
            Some(t) => st.insert(name.to_string(), t.clone()),
            None => st.remove(*name),
        };
    }
    candle_core::safetensors::save(&st, tmp.path().join("model.safetensors")).unwrap();
    tmp
}

/// transformers' generic config names (`hidden_size`, `num_hidden_layers`, …)
/// and the causal-mask buffers of older checkpoints (`h.N.attn.bias`) load,
/// giving the same model.
#[test]
fn generic_config_names_and_old_mask_buffers_load() {
    let mask = Tensor::ones((1, 1, 24, 24), DType::F32, &Device::Cpu).unwrap();
    let tmp = edited_copy(
        |c| {
            for (own, generic) in [
                ("n_embd", "hidden_size"),
                ("n_layer", "num_hidden_layers"),
                ("n_head", "num_attention_heads"),
                ("n_positions", "max_position_embeddings"),
            ] {
                let v = c.remove(own).unwrap();
                c.insert(generic.into(), v);
            }
        },
        &[
            ("h.0.attn.bias", Some(mask.clone())),
            ("h.1.attn.bias", Some(mask)),
        ],
    );
    let spec = HeadSpec::QuestionAnswering;
    let a = load(&model_dir(), spec, DType::F32, 1);
    let b = load(tmp.path(), spec, DType::F32, 1);
    let x = pair_input();
    let (sa, _) = a
        .forward(&x, &Mode::eval())
        .unwrap()
        .span()
        .map(|(s, e)| (s.clone(), e.clone()))
        .unwrap();
    let (sb, _) = b
        .forward(&x, &Mode::eval())
        .unwrap()
        .span()
        .map(|(s, e)| (s.clone(), e.clone()))
        .unwrap();
    assert_eq!(bits(&sa), bits(&sb));
}

/// A Conv1D weight saved in `Linear` layout (`[out, in]`) is refused naming
/// the file, the tensor and the `[in, out]` shape the checkpoint should hold.
#[test]
fn conv1d_weight_of_the_wrong_shape_names_file_and_tensor() {
    let wrong = Tensor::zeros((48, 16), DType::F32, &Device::Cpu).unwrap();
    let tmp = edited_copy(|_| {}, &[("h.1.attn.c_attn.weight", Some(wrong))]);
    let Err(err) = models::load(tmp.path(), HeadSpec::Regression, &opts(DType::F32, 0)) else {
        panic!("a [48, 16] c_attn weight loaded");
    };
    let msg = err.to_string();
    assert!(err.is_user_error(), "{msg}");
    for needle in [
        "model.safetensors",
        "h.1.attn.c_attn.weight",
        "[16, 48]",
        "[48, 16]",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }
}
