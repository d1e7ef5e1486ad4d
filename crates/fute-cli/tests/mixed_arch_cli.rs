//! One store, several architectures (issue 12): tiny BERT, GPT-2 and Llama classifiers
//! fine-tuned by `fute train` on the same two datasets, their MTEs through one tiny BERT
//! surrogate, ranked against the datasets' DTEs by `fute rank` and drawn by `fute map`.
//! The rankings' cosines are checked against cosines computed here from the exported
//! vectors, and each classifier's outputs must not depend on the batch it is run in
//! (a decoder reads its last attended token, whatever the padding after it).

use std::collections::BTreeMap;
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

/// Runs `fute` and returns its stdout, failing with its stderr otherwise.
fn ok(ws: &Path, args: &[&str]) -> String {
    let o = fute(ws, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn json(ws: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(ws, args)).unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures")
}

/// The tiny random base models: BERT (WordPiece), GPT-2 (WordLevel) and Llama, which the
/// conformance fixtures ship without a tokenizer and which shares GPT-2's 60-word one.
fn bases(tmp: &Path) -> Vec<(&'static str, PathBuf)> {
    let llama = tmp.join("tiny-llama");
    std::fs::create_dir_all(&llama).unwrap();
    let conf = fixtures().join("conformance");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(conf.join("llama/model").join(f), llama.join(f)).unwrap();
    }
    std::fs::copy(
        conf.join("gpt2/model/tokenizer.json"),
        llama.join("tokenizer.json"),
    )
    .unwrap();
    vec![
        ("bert", fixtures().join("tiny-bert")),
        ("gpt2", conf.join("gpt2/model")),
        ("llama", llama),
    ]
}

/// A single-text dataset whose label is the word at position `i % 2` of `words`
/// (words every tokenizer here knows), 30 training and 10 test examples.
fn toy(ws: &Path, name: &str, labels: [&str; 2], words: [&str; 2], filler: &str) {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: labels.iter().map(|l| l.to_string()).collect(),
    };
    let examples = (0..40)
        .map(|i| Example {
            id: format!("{name}{i}"),
            input: Input::Single(if i % 3 == 0 {
                format!("{} {filler}", words[i % 2])
            } else {
                format!("the {filler} was {} and {}", words[i % 2], words[i % 2])
            }),
            target: Target::Label(i % 2),
            fixed_split: Some(if i < 30 { Split::Train } else { Split::Test }),
        })
        .collect();
    Dataset {
        card: DatasetCard::new(name, schema),
        examples,
    }
    .save_dir(&ws.join(".fute/datasets").join(name))
    .unwrap();
}

const EMBED: [&str; 10] = [
    "--max-len",
    "16",
    "--batch",
    "4",
    "--workers",
    "1",
    "--lr",
    "1e-3",
    "--method",
    "fim",
];

fn embed(ws: &Path, surrogate: &Path, head: &[&str]) -> String {
    let mut args = head.to_vec();
    args.extend_from_slice(&EMBED);
    args.extend_from_slice(&["--surrogate", surrogate.to_str().unwrap(), "--json"]);
    json(ws, &args)["id"].as_str().unwrap().to_owned()
}

/// The stored vector of `id`, its components concatenated in name order.
fn vector(ws: &Path, id: &str) -> Vec<f64> {
    let file = ws.join(format!("{id}.json"));
    ok(
        ws,
        &[
            "export",
            id,
            "--format",
            "json",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    // Components by name (sorted), so every vector concatenates them in one order.
    let comps = v["components"].as_object().expect("components");
    comps
        .values()
        .flat_map(|c| c.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Logits of every test example of `dataset` by `model`, run `batch` at a time.
fn logits(ws: &Path, model: &Path, dataset: &str, batch: &str) -> Vec<Vec<f64>> {
    let out = ws.join(format!("preds-{batch}.jsonl"));
    ok(
        ws,
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--dataset",
            dataset,
            "--split",
            "test",
            "--batch",
            batch,
            "--max-len",
            "16",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            r["logits"]
                .as_array()
                .expect("logits")
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn one_store_ranks_and_maps_mtes_of_three_architectures() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    toy(
        ws,
        "moods",
        ["negative", "positive"],
        ["bad", "good"],
        "movie",
    );
    toy(ws, "topics", ["market", "sport"], ["stock", "game"], "city");
    let bases = bases(ws);
    let surrogate = fixtures().join("tiny-bert");

    // Every architecture fine-tuned on both datasets.
    let mut models: Vec<(String, &str, PathBuf)> = Vec::new();
    for (arch, base) in &bases {
        for ds in ["moods", "topics"] {
            let out = ws.join(format!("{ds}-{arch}"));
            ok(
                ws,
                &[
                    "train",
                    "--base",
                    base.to_str().unwrap(),
                    "--dataset",
                    ds,
                    "--out",
                    out.to_str().unwrap(),
                    "--epochs",
                    "2",
                    "--batch",
                    "8",
                    "--max-len",
                    "16",
                    "--lr",
                    "1e-3",
                ],
            );
            models.push((format!("{ds}-{arch}"), ds, out));
        }
    }
    // Padding never changes a prediction: one at a time and all at once agree.
    for (name, ds, dir) in &models {
        let (one, all) = (logits(ws, dir, ds, "1"), logits(ws, dir, ds, "16"));
        assert_eq!(one.len(), 10);
        for (a, b) in one.iter().zip(&all) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-4, "{name}: {a:?} alone vs {b:?} batched");
            }
        }
    }

    ok(
        ws,
        &[
            "corpus",
            "build",
            "u",
            "--from",
            "none",
            "--datasets",
            "moods,topics",
        ],
    );
    let mut dtes = BTreeMap::new();
    for ds in ["moods", "topics"] {
        dtes.insert(ds, embed(ws, &surrogate, &["embed", "dataset", ds]));
    }
    let mut mtes = BTreeMap::new();
    for (name, _, dir) in &models {
        let id = embed(
            ws,
            &surrogate,
            &["embed", "model", dir.to_str().unwrap(), "--corpus", "u"],
        );
        let rec = json(ws, &["show", &id]);
        let arch = name.rsplit('-').next().unwrap();
        assert_eq!(
            rec["record"]["meta"]["extra"]["model_type"], arch,
            "the MTE records its model's architecture"
        );
        mtes.insert(name.clone(), id);
    }
    let vectors: BTreeMap<String, Vec<f64>> = dtes
        .values()
        .chain(mtes.values())
        .map(|id| (id.clone(), vector(ws, id)))
        .collect();

    // `fute rank`: each DTE against all six MTEs, raw and centred, equal to the cosines
    // computed here (centred: minus the candidates' mean, from target and candidates).
    let mte_ids: Vec<&str> = mtes.values().map(String::as_str).collect();
    let n = mte_ids.len() as f64;
    let dim = vectors[mte_ids[0]].len();
    let mean: Vec<f64> = (0..dim)
        .map(|k| mte_ids.iter().map(|id| vectors[*id][k]).sum::<f64>() / n)
        .collect();
    let minus = |v: &[f64]| -> Vec<f64> { v.iter().zip(&mean).map(|(x, m)| x - m).collect() };
    for dte in dtes.values() {
        for centre in [false, true] {
            let mut args = vec!["rank", "--target", dte, "--kind", "mte", "--json"];
            if centre {
                args.push("--centre");
            }
            let ranked = json(ws, &args);
            let ranked = ranked.as_array().unwrap();
            assert_eq!(ranked.len(), 6, "every architecture's MTEs are ranked");
            let mut last = f64::INFINITY;
            for r in ranked {
                let id = r["id"].as_str().unwrap();
                let got = r["score"].as_f64().unwrap();
                assert!(got <= last, "best first");
                last = got;
                let want = if centre {
                    cosine(&minus(&vectors[dte]), &minus(&vectors[id]))
                } else {
                    cosine(&vectors[dte], &vectors[id])
                };
                assert!((got - want).abs() < 1e-5, "{id}: rank {got} vs {want}");
            }
        }
    }

    // `fute map` over all eight: one point each, models labelled with their architecture.
    let out = ws.join("map");
    let mut args: Vec<&str> = vec!["map"];
    args.extend(dtes.values().map(String::as_str));
    args.extend(mte_ids.iter().copied());
    args.extend(["--out", out.to_str().unwrap()]);
    ok(ws, &args);
    let csv = std::fs::read_to_string(out.join("map.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8);
    for (name, id) in &mtes {
        let row = rows.iter().find(|r| r[col("id")] == id).unwrap();
        let arch = name.rsplit('-').next().unwrap();
        assert_eq!(row[col("marker")], "model");
        assert_eq!(row[col("architecture")], arch);
        assert_eq!(row[col("label")], format!("{name} [{arch}]"));
    }
    for id in dtes.values() {
        let row = rows.iter().find(|r| r[col("id")] == id).unwrap();
        assert_eq!(row[col("marker")], "dte");
        assert_eq!(row[col("architecture")], "");
    }
    let html = std::fs::read_to_string(out.join("map.html")).unwrap();
    assert!(html.contains("\"architecture\":\"llama\""));
}
