//! `fute train` → `fute embed model` → `fute rank` / `fute similarity` on a tiny
//! model: DataSize is the data a model was fine-tuned on, a model reads U in
//! its own input shape, the FUTE defaults, and what a ranking refuses to mix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fute_core::dataset::{
    Dataset, DatasetCard, Example, Input, InputShape, Split, Target, TaskSchema,
};
use serde_json::Value;

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

/// A toy single-text dataset `name` in the workspace: 24 training and 6 dev examples.
fn toy(ws: &Path, name: &str) {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: vec!["negative".into(), "positive".into()],
    };
    let words = ["good", "bad", "happy", "sad"];
    let examples = (0..30)
        .map(|i| Example {
            id: format!("e{i}"),
            input: Input::Single(format!("the man is {} {i}", words[i % 4])),
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

/// Runs `fute` and returns its JSON output, failing with its stderr otherwise.
fn json(ws: &Path, args: &[&str]) -> Value {
    let o = fute(ws, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

const SMALL: [&str; 8] = [
    "--max-len",
    "16",
    "--batch",
    "4",
    "--workers",
    "1",
    "--lr",
    "1e-3",
];

fn embed_args<'a>(head: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = head.to_vec();
    v.extend_from_slice(&SMALL);
    v.extend_from_slice(extra);
    v.push("--json");
    v
}

#[test]
fn datasize_input_shape_defaults_and_what_rank_refuses_to_mix() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    toy(w, "toy");
    let sur = tiny_bert();
    let sur = sur.to_str().unwrap();
    let model = w.join("model");
    let o = fute(
        w,
        &[
            "train",
            "--base",
            sur,
            "--dataset",
            "toy",
            "--out",
            model.to_str().unwrap(),
            "--epochs",
            "1",
            "--batch",
            "8",
            "--max-len",
            "16",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // `fute train` records what the model was trained on.
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["fute_training"]["train_examples"], 24);
    assert_eq!(cfg["fute_training"]["input"], "single");

    let o = fute(
        w,
        &[
            "corpus",
            "build",
            "u",
            "--from",
            "none",
            "--datasets",
            "toy",
            "--per-source",
            "8",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    // The DTE with every default: FUTE's square-of-mean Fisher.
    let dte = json(
        w,
        &embed_args(
            &[
                "embed",
                "dataset",
                "toy",
                "--method",
                "fim",
                "--surrogate",
                sur,
            ],
            &[],
        ),
    );
    assert_eq!(dte["meta"]["space"]["params"]["fisher"], "square-of-mean");
    let dte_id = dte["id"].as_str().unwrap().to_owned();
    // The prefix default is FUTE's dropout 0.15 and layer mean.
    let prefix = json(
        w,
        &embed_args(
            &[
                "embed",
                "dataset",
                "toy",
                "--method",
                "prefix",
                "--surrogate",
                sur,
            ],
            &["--epochs", "1", "--prefix-len", "2"],
        ),
    );
    assert_eq!(prefix["meta"]["space"]["params"]["prefix_dropout"], 0.15);
    assert_eq!(prefix["meta"]["space"]["params"]["reduce"], "layers");

    // The trained model's MTE carries its DataSize and input shape.
    let mte = json(
        w,
        &embed_args(
            &[
                "embed",
                "model",
                model.to_str().unwrap(),
                "--corpus",
                "u",
                "--method",
                "fim",
                "--surrogate",
                sur,
            ],
            &[],
        ),
    );
    assert_eq!(mte["meta"]["extra"]["train_examples"], 24);
    assert_eq!(mte["meta"]["extra"]["model_input"], "single");

    // A user's model without a training record: the shape must be given…
    let user = w.join("user");
    std::fs::create_dir(&user).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(model.join(f), user.join(f)).unwrap();
    }
    let mut cfg = cfg.clone();
    cfg.as_object_mut().unwrap().remove("fute_training");
    std::fs::write(user.join("config.json"), cfg.to_string()).unwrap();
    let user_s = user.to_str().unwrap();
    let head = [
        "embed",
        "model",
        user_s,
        "--corpus",
        "u",
        "--method",
        "fim",
        "--surrogate",
        sur,
    ];
    let o = fute(w, &embed_args(&head, &[]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--input single or --input pair"),
        "{}",
        text(&o.stderr)
    );
    let user_mte = json(w, &embed_args(&head, &["--input", "single"]));
    assert!(user_mte["meta"]["extra"].get("train_examples").is_none());
    // … and DataSize refuses a candidate whose size is unknown, saying how to give it.
    let o = fute(
        w,
        &[
            "rank", "--target", &dte_id, "--kind", "mte", "--by", "datasize",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--data-size N"),
        "{}",
        text(&o.stderr)
    );
    // Giving it later finds the stored MTE and records the size with it.
    let again = json(
        w,
        &embed_args(&head, &["--input", "single", "--data-size", "500"]),
    );
    assert_eq!(again["id"], user_mte["id"]);
    assert_eq!(again["meta"]["extra"]["train_examples"], 500);
    let ranked = json(
        w,
        &[
            "rank", "--target", &dte_id, "--kind", "mte", "--by", "datasize", "--json",
        ],
    );
    let sizes: Vec<(String, f64)> = ranked
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        [
            (user_s.to_owned(), 500.0),
            (model.display().to_string(), 24.0)
        ]
    );

    // Another seed of the target's dataset: left out of its ranking by default,
    // and refused by `similarity` unless the seeds are paired.
    let dte7 = json(
        w,
        &embed_args(
            &[
                "embed",
                "dataset",
                "toy",
                "--method",
                "fim",
                "--surrogate",
                sur,
            ],
            &["--seed", "7"],
        ),
    );
    let dte7_id = dte7["id"].as_str().unwrap();
    let o = fute(w, &["rank", "--target", &dte_id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r.as_array().unwrap().len(), 2, "the two MTEs only: {r}");
    assert!(
        text(&o.stderr).contains("own subject `toy`"),
        "{}",
        text(&o.stderr)
    );
    // Kept with --include-self, it is another seed: refused, naming the seeds.
    let o = fute(w, &["rank", "--target", &dte_id, "--include-self"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("seeds 7, 42"),
        "{}",
        text(&o.stderr)
    );
    let mte_id = mte["id"].as_str().unwrap();
    let o = fute(w, &["similarity", dte7_id, mte_id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("seed 7") && text(&o.stderr).contains("seed 42"),
        "{}",
        text(&o.stderr)
    );
    let o = fute(w, &["similarity", dte7_id, mte_id, "--average-seeds"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("mean over seeds 42"),
        "{}",
        text(&o.stdout)
    );
}
