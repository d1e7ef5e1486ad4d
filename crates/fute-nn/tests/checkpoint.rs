//! Loading and saving Hugging Face folders: round trip, prefixes, clear errors.

mod common;

use fute_nn::TaskModel;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{fixture, input_from_json, json};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::{BertConfig, BertTaskModel, BuildOptions, Error, HeadSpec, Mode};

fn opts(seed: u64) -> BuildOptions {
    BuildOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        seed,
        ..Default::default()
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// A copy of the tiny fixture folder whose weights are `edit`ed.
fn tiny_copy_with(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), dir.join(f)).unwrap();
    }
    let mut t = candle_core::safetensors::load(
        fixture("tiny-bert").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
}

/// Saves each head and, when FUTE_NN_KEEP_SAVED is set, leaves the folders and
/// their logits there for `scripts/golden/check_saved.py` (transformers check).
#[test]
fn save_then_load_is_bit_identical_for_every_head() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("FUTE_NN_KEEP_SAVED").map(std::path::PathBuf::from);
    let meta = json("tiny-golden.json");
    let pair = input_from_json(&meta["pair"]);
    for (tag, spec) in [
        ("cls", HeadSpec::Classification { num_labels: 3 }),
        ("reg", HeadSpec::Regression),
        ("qa", HeadSpec::QuestionAnswering),
    ] {
        let model = BertTaskModel::from_folder(fixture("tiny-bert"), spec, &opts(5)).unwrap();
        let out = tmp.path().join(tag);
        let labels = match spec {
            HeadSpec::Classification { .. } => Some(vec!["neg".into(), "neu".into(), "pos".into()]),
            _ => None,
        };
        let save = SaveOptions {
            labels,
            ..Default::default()
        };
        model.save_pretrained(&out, &save).unwrap();
        // Saving again over the existing folder replaces it.
        model.save_pretrained(&out, &save).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary folders left: {leftovers:?}"
        );
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "vocab.txt",
        ] {
            assert!(out.join(f).is_file(), "{tag}: {f} missing");
        }

        // Standard HF names: `bert.` prefix and the head's own names.
        let saved =
            candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        assert!(saved.contains_key("bert.embeddings.word_embeddings.weight"));
        match spec {
            HeadSpec::QuestionAnswering => {
                assert!(
                    saved.contains_key("qa_outputs.weight")
                        && saved.contains_key("qa_outputs.bias")
                );
                assert!(
                    !saved.keys().any(|k| k.contains("pooler")),
                    "QA models have no pooler in HF"
                );
            }
            _ => {
                assert!(
                    saved.contains_key("classifier.weight")
                        && saved.contains_key("classifier.bias")
                );
                assert!(saved.contains_key("bert.pooler.dense.weight"));
            }
        }

        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            cfg["architectures"][0],
            fute_nn::models::bert::ARCHITECTURE.class_name(spec.kind())
        );
        assert_eq!(cfg["num_labels"], spec.num_outputs());
        assert_eq!(
            cfg["id2label"].as_object().unwrap().len(),
            spec.num_outputs()
        );
        assert_eq!(
            cfg["label2id"].as_object().unwrap().len(),
            spec.num_outputs()
        );
        match spec {
            HeadSpec::Classification { .. } => {
                assert_eq!(cfg["problem_type"], "single_label_classification");
                assert_eq!(cfg["id2label"]["2"], "pos");
                assert_eq!(cfg["label2id"]["neg"], 0);
            }
            HeadSpec::Regression => assert_eq!(cfg["problem_type"], "regression"),
            HeadSpec::QuestionAnswering => assert!(cfg.get("problem_type").is_none()),
        }
        assert_eq!(cfg["hidden_size"], 32, "original config fields are kept");

        let back = BertTaskModel::from_task_folder(&out, &opts(99)).unwrap();
        assert_eq!(back.spec, spec);
        let a = model.named_parameters();
        let b = back.named_parameters();
        assert_eq!(a.len(), b.len());
        for ((na, va), (nb, vb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert_eq!(
                bits(va.as_tensor()),
                bits(vb.as_tensor()),
                "{tag}: {na} differs"
            );
        }

        if let Some(keep) = &keep {
            let dst = keep.join(tag);
            model.save_pretrained(&dst, &save).unwrap();
            let outputs = match model.forward(&pair, &Mode::eval()).unwrap() {
                fute_nn::TaskOutput::Logits(l) => {
                    serde_json::json!({"logits": l.to_vec2::<f32>().unwrap()})
                }
                fute_nn::TaskOutput::Scores(s) => {
                    serde_json::json!({"scores": s.to_vec1::<f32>().unwrap()})
                }
                fute_nn::TaskOutput::Span { start, end } => serde_json::json!({
                    "start_logits": start.to_vec2::<f32>().unwrap(),
                    "end_logits": end.to_vec2::<f32>().unwrap()}),
            };
            let record = serde_json::json!({"input": meta["pair"], "outputs": outputs});
            std::fs::write(dst.join("fute_outputs.json"), record.to_string()).unwrap();
        }
    }
}

#[test]
fn loads_with_and_without_the_bert_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let prefixed = tmp.path().join("prefixed");
    tiny_copy_with(&prefixed, |t| {
        *t = t.drain().map(|(k, v)| (format!("bert.{k}"), v)).collect();
    });
    let spec = HeadSpec::Classification { num_labels: 2 };
    let a = BertTaskModel::from_folder(fixture("tiny-bert"), spec, &opts(1)).unwrap();
    let b = BertTaskModel::from_folder(&prefixed, spec, &opts(1)).unwrap();
    for ((na, va), (_, vb)) in a.named_parameters().iter().zip(&b.named_parameters()) {
        assert_eq!(bits(va.as_tensor()), bits(vb.as_tensor()), "{na}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_copy_with(tmp.path(), |t| {
        t.remove("encoder.layer.1.attention.self.value.weight")
            .unwrap();
    });
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("bert.encoder.layer.1.attention.self.value.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("model.safetensors") && msg.contains("[32, 32]"),
        "{msg}"
    );
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_copy_with(tmp.path(), |t| {
        let w = t["encoder.layer.0.intermediate.dense.weight"]
            .narrow(0, 0, 30)
            .unwrap();
        t.insert("encoder.layer.0.intermediate.dense.weight".into(), w);
    });
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    assert!(
        msg.contains("encoder.layer.0.intermediate.dense.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("[30, 32]") && msg.contains("[37, 32]"),
        "{msg}"
    );
}

#[test]
fn missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");

    std::fs::copy(
        fixture("tiny-bert").join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let err = fute_nn::TextTokenizer::from_folder(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn unsupported_configs_are_rejected_clearly() {
    let base = std::fs::read_to_string(fixture("tiny-bert").join("config.json")).unwrap();
    let with = |key: &str, value: serde_json::Value| -> String {
        let mut v: serde_json::Value = serde_json::from_str(&base).unwrap();
        v[key] = value;
        v.to_string()
    };
    for (text, needle) in [
        (
            with("position_embedding_type", "relative_key".into()),
            "position_embedding_type",
        ),
        (with("hidden_act", "swish".into()), "hidden_act `swish`"),
        (with("num_attention_heads", 5.into()), "not a multiple"),
        (with("model_type", "roberta".into()), "model_type `roberta`"),
        (with("is_decoder", true.into()), "decoder"),
        ("{not json".to_string(), "not valid JSON"),
    ] {
        let err = BertConfig::from_json_str(&text).unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    for ok in ["gelu", "gelu_new", "relu"] {
        BertConfig::from_json_str(&with("hidden_act", ok.into())).unwrap();
    }
}

#[test]
fn bad_save_requests_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = BertTaskModel::from_folder(
        fixture("tiny-bert"),
        HeadSpec::Classification { num_labels: 3 },
        &opts(0),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let bad = SaveOptions {
        labels: Some(vec!["only-one".into()]),
        ..Default::default()
    };
    let err = model.save_pretrained(&out, &bad).unwrap_err();
    assert!(err.to_string().contains("label names"), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}

/// A copy of the tiny fixture folder whose `config.json` is `edit`ed.
fn tiny_copy_with_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    tiny_copy_with(dir, |_| {});
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
}

/// Bug-hunt case 21: an old TF-converted BERT (`bert.` prefix, LayerNorm
/// `gamma`/`beta`) failed with "tensor missing"; transformers loads it, so must we.
#[test]
fn case_21_legacy_layer_norm_gamma_beta_names_load() {
    let tmp = tempfile::tempdir().unwrap();
    let legacy = tmp.path().join("legacy");
    tiny_copy_with(&legacy, |t| {
        *t = t
            .drain()
            .map(|(k, v)| {
                let k = k
                    .replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta");
                (format!("bert.{k}"), v)
            })
            .collect();
    });
    let spec = HeadSpec::Classification { num_labels: 2 };
    let a = BertTaskModel::from_folder(fixture("tiny-bert"), spec, &opts(1)).unwrap();
    let b = BertTaskModel::from_folder(&legacy, spec, &opts(1)).unwrap();
    let (pa, pb) = (a.named_parameters(), b.named_parameters());
    assert_eq!(pa.len(), pb.len());
    for ((na, va), (nb, vb)) in pa.iter().zip(&pb) {
        assert_eq!(na, nb);
        assert_eq!(bits(va.as_tensor()), bits(vb.as_tensor()), "{na}");
    }
}

#[test]
fn tensors_the_config_has_no_place_for_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // The checkpoint has two layers, the config says one.
    tiny_copy_with_config(tmp.path(), |v| v["num_hidden_layers"] = 1.into());
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    assert!(matches!(err, Error::UnexpectedTensors { .. }), "{err:?}");
    assert!(err.is_user_error());
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("encoder.layer.1."),
        "{msg}"
    );
    // A QA model does not use the pooler, and an MLM head is not the encoder's:
    // neither is an error (transformers drops them too).
    let tmp2 = tempfile::tempdir().unwrap();
    tiny_copy_with(tmp2.path(), |t| {
        let w = t["pooler.dense.bias"].clone();
        t.insert("cls.predictions.bias".into(), w);
    });
    BertTaskModel::from_folder(tmp2.path(), HeadSpec::QuestionAnswering, &opts(0)).unwrap();
}

#[test]
fn config_missing_a_shape_field_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_copy_with_config(tmp.path(), |v| {
        v.as_object_mut().unwrap().remove("intermediate_size");
    });
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    assert!(matches!(err, Error::MissingField { .. }), "{err:?}");
    assert!(err.is_user_error());
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("`intermediate_size`"),
        "{msg}"
    );
}

#[test]
fn unsupported_model_type_lists_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_copy_with_config(tmp.path(), |v| v["model_type"] = "mamba".into());
    let err = BertTaskModel::from_folder(tmp.path(), HeadSpec::Regression, &opts(0)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.is_user_error());
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("`mamba`") && msg.contains("bert"),
        "{msg}"
    );
    for t in fute_nn::models::supported_model_types() {
        assert!(msg.contains(t), "{msg} lacks {t}");
    }
}

#[test]
fn user_errors_and_bugs_are_told_apart() {
    assert!(Error::BadInput("x".into()).is_user_error());
    assert!(!Error::Bug("x".into()).is_user_error());
    let candle = Tensor::zeros(2, DType::F32, &Device::Cpu)
        .unwrap()
        .reshape(3)
        .unwrap_err();
    assert!(!Error::from(candle).is_user_error());
}
