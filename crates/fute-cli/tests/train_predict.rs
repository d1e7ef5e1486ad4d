//! `fute train` and `fute predict` end to end on a tiny model and dataset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fute_core::dataset::{
    Dataset, DatasetCard, Example, Input, InputShape, Split, Target, TaskSchema,
};

fn fute(workspace: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fute"))
        .arg("--workspace")
        .arg(workspace)
        .args(args)
        .output()
        .expect("runs fute")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

/// Saves a toy dataset with `labels` into the workspace as `name`.
fn toy(ws: &Path, name: &str, labels: &[&str]) {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: labels.iter().map(|s| s.to_string()).collect(),
    };
    let words = ["good", "bad", "happy", "sad"];
    let examples = (0..30)
        .map(|i| Example {
            id: format!("e{i}"),
            input: Input::Single(format!("the man is {}", words[i % 4])),
            target: Target::Label(i % 2),
            fixed_split: Some(if i % 5 == 0 { Split::Dev } else { Split::Train }),
        })
        .collect();
    let d = Dataset {
        card: DatasetCard::new(name, schema),
        examples,
    };
    d.save_dir(&ws.join(".fute/datasets").join(name)).unwrap();
}

#[test]
fn train_then_predict_writes_a_model_metrics_and_jsonl() {
    let ws = tempfile::tempdir().unwrap();
    toy(ws.path(), "toy", &["negative", "positive"]);
    let base = tiny_bert();
    let out = ws.path().join("model");
    let o = fute(
        ws.path(),
        &[
            "train",
            "--base",
            base.to_str().unwrap(),
            "--dataset",
            "toy",
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "2",
            "--batch",
            "8",
            "--max-len",
            "32",
            "--lr",
            "1e-3",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("saved to"), "{}", text(&o.stdout));
    assert!(out.join("model.safetensors").is_file());

    let preds = ws.path().join("preds.jsonl");
    let o = fute(
        ws.path(),
        &[
            "predict",
            "--model",
            out.to_str().unwrap(),
            "--dataset",
            "toy",
            "--split",
            "dev",
            "--out",
            preds.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["examples"], 6);
    assert!(report["metrics"]["accuracy"].is_number());
    assert_eq!(std::fs::read_to_string(&preds).unwrap().lines().count(), 6);

    // A dataset with other labels is a user error (exit 1) naming both sides' labels.
    toy(ws.path(), "three", &["a", "b", "c"]);
    let o = fute(
        ws.path(),
        &[
            "predict",
            "--model",
            out.to_str().unwrap(),
            "--dataset",
            "three",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("only the model has negative, positive")
            && e.contains("only the dataset has a, b, c"),
        "{e}"
    );
}

#[test]
fn bad_base_and_empty_split_exit_1() {
    let ws = tempfile::tempdir().unwrap();
    toy(ws.path(), "toy", &["negative", "positive"]);
    let o = fute(
        ws.path(),
        &[
            "train",
            "--base",
            "/nonexistent/bert",
            "--dataset",
            "toy",
            "--out",
            "m",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("neither a folder nor a known asset"));
    let base = tiny_bert();
    let o = fute(
        ws.path(),
        &[
            "predict",
            "--model",
            base.to_str().unwrap(),
            "--dataset",
            "toy",
            "--split",
            "test",
        ],
    );
    // The base folder has no task head: a clear user error before anything runs.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no task head"),
        "{}",
        text(&o.stderr)
    );
}

/// A copy of the tiny BERT folder whose config.json is `edit`ed.
fn tiny_bert_with(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ] {
        std::fs::copy(tiny_bert().join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir.to_path_buf()
}

/// Issue 12's bad model folders: each is the user's to fix (exit 1), and the
/// message names the file and the field or tensor at fault.
#[test]
fn bad_model_folders_exit_1_naming_file_and_tensor() {
    let ws = tempfile::tempdir().unwrap();
    toy(ws.path(), "toy", &["negative", "positive"]);
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &[&str]); 4] = [
        (
            "unsupported",
            |c| c["model_type"] = "mamba".into(),
            &["config.json", "model_type `mamba` is not supported", "bert"],
        ),
        (
            "nofield",
            |c| {
                c.as_object_mut().unwrap().remove("hidden_size");
            },
            &["config.json", "field `hidden_size` is missing"],
        ),
        (
            "misshaped",
            |c| c["intermediate_size"] = 40.into(),
            &[
                "model.safetensors",
                "encoder.layer.0.intermediate.dense.weight",
                "[37, 32]",
                "[40, 32]",
            ],
        ),
        (
            "extra",
            |c| c["num_hidden_layers"] = 1.into(),
            &[
                "model.safetensors",
                "encoder.layer.1.",
                "config.json disagree",
            ],
        ),
    ];
    for (tag, edit, needles) in cases {
        let base = tiny_bert_with(&ws.path().join(tag), edit);
        let out = ws.path().join(format!("{tag}-model"));
        let o = fute(
            ws.path(),
            &[
                "train",
                "--base",
                base.to_str().unwrap(),
                "--dataset",
                "toy",
                "--out",
                out.to_str().unwrap(),
                "--epochs",
                "1",
                "--max-len",
                "16",
            ],
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        for n in needles {
            assert!(err.contains(n), "{tag}: `{n}` not in: {err}");
        }
        assert!(!out.exists(), "{tag}: nothing may be saved");
    }
}
