//! Real tier: the packaged SmolLM2-135M-Instruct GGUF (Q4_1) loaded as a
//! trainable Llama, against transformers reading the same file
//! (`scripts/golden/smollm2_gguf_golden.py`, fixture `tests/fixtures/smollm2-gguf/`).
//! Skipped when asset `smollm2` is not fetched, unless `FUTE_REQUIRE_ASSETS=1`.
//!
//! Both sides dequantise the same blocks to float32 and run float32; what is
//! left is float32 rounding through 30 layers (different summation orders),
//! so outputs are held to 1e-4 relative to their largest magnitude, and the
//! top-5 next tokens must be the same.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::models::llama::LlamaTaskModel;
use fute_nn::{models, BuildOptions, HeadSpec, Mode, ModelInput, TaskModel};

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const TOL: f64 = 1e-4;

fn gguf() -> Option<PathBuf> {
    Some(fute_core::testing::real_asset("smollm2")?.join(FILE))
}

fn model() -> Option<&'static LlamaTaskModel> {
    static MODEL: OnceLock<Option<LlamaTaskModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let spec = HeadSpec::Classification { num_labels: 2 };
            let m = LlamaTaskModel::from_gguf(&gguf()?, spec, &BuildOptions::default()).unwrap();
            let g = common::tensors("smollm2-gguf/golden.safetensors");
            m.set_parameter("score.weight", &g["cls.score.weight"])
                .unwrap();
            Some(m)
        })
        .as_ref()
}

fn input(meta: &serde_json::Value) -> ModelInput {
    ModelInput {
        input_ids: common::ids_tensor(&meta["input_ids"]),
        token_type_ids: None,
        attention_mask: common::ids_tensor(&meta["attention_mask"]),
    }
}

#[test]
fn smollm2_gguf_config_comes_from_the_metadata() {
    let Some(m) = model() else { return };
    let meta = common::json("smollm2-gguf/golden.json");
    let c = &m.config;
    let want = &meta["config"];
    for (field, got) in [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("num_attention_heads", c.num_attention_heads),
        ("num_key_value_heads", c.kv_heads()),
        ("max_position_embeddings", c.max_position_embeddings),
    ] {
        assert_eq!(Some(got as u64), want[field].as_u64(), "{field}");
    }
    assert_eq!(c.pad_token_id, Some(2));
    assert_eq!(Some(c.rms_norm_eps), want["rms_norm_eps"].as_f64());
    assert_eq!(Some(c.rope_base()), meta["rope_theta"].as_f64());
}

#[test]
fn smollm2_gguf_matches_transformers_reading_the_same_file() {
    let Some(m) = model() else { return };
    let meta = common::json("smollm2-gguf/golden.json");
    let g = common::tensors("smollm2-gguf/golden.safetensors");
    let x = input(&meta);
    let out = m
        .forward_with(&x, &Mode::eval(), &Default::default())
        .unwrap();
    let mask = x
        .attention_mask
        .to_dtype(DType::F32)
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    let h = out.last_hidden_state.broadcast_mul(&mask).unwrap();
    let e_hidden = common::assert_close("last hidden state", &h, &g["last_hidden_state"], TOL);

    // The tied LM head: the embedding table times the last real hidden state.
    let lengths: Vec<usize> = serde_json::from_value(meta["lengths"].clone()).unwrap();
    let last: Vec<Tensor> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| h.get(i).unwrap().get(n - 1).unwrap())
        .collect();
    let last = Tensor::stack(&last, 0).unwrap();
    let table = m.embed_tokens.weight.clone();
    let logits = last.matmul(&table.t().unwrap()).unwrap();
    let e_lm = common::assert_close(
        "LM logits",
        &logits.narrow(1, 0, 512).unwrap(),
        &g["lm_logits"],
        TOL,
    );
    let want: Vec<Vec<u32>> = serde_json::from_value(meta["top5_next_tokens"].clone()).unwrap();
    let rows = logits.to_vec2::<f32>().unwrap();
    for (row, want) in rows.iter().zip(&want) {
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
        assert_eq!(&idx[..5], want.as_slice());
    }
    let e_cls = common::assert_close(
        "sequence-classification logits",
        out.output.logits().unwrap(),
        &g["cls.logits"],
        TOL,
    );
    println!(
        "SmolLM2 GGUF vs transformers (f32): hidden {e_hidden:.1e}, LM logits {e_lm:.1e}, \
         classifier {e_cls:.1e}; top-5 next tokens equal"
    );
}

#[test]
fn smollm2_gguf_saves_as_a_hugging_face_folder() {
    let Some(m) = model() else { return };
    let meta = common::json("smollm2-gguf/golden.json");
    let x = input(&meta);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("FUTE_NN_KEEP_SAVED")
        .map(|d| PathBuf::from(d).join("smollm2-cls"))
        .unwrap_or_else(|| tmp.path().join("smollm2-cls"));
    m.save_pretrained(&dir, &SaveOptions::default()).unwrap();
    let back = models::load_task_folder(&dir, &BuildOptions::default()).unwrap();
    assert_eq!(back.describe().model_type, "llama");
    let a = m.forward(&x, &Mode::eval()).unwrap();
    let b = back.forward(&x, &Mode::eval()).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|f| f.to_bits()).collect()
    };
    assert_eq!(bits(a.logits().unwrap()), bits(b.logits().unwrap()));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(cfg["pad_token_id"], 2);
    let _ = Device::Cpu;
}
