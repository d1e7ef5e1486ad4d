//! `fute map` end to end on the tiny BERT: stored DTEs → PNG, SVG, CSV, JSON and HTML;
//! selections that span spaces or match nothing are user errors (exit 1).

use std::path::Path;
use std::process::{Command, Output};

fn fute(workspace: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fute"))
        .arg("--workspace")
        .arg(workspace)
        .args(args)
        .output()
        .expect("runs fute")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tiny_bert() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

/// A JSONL dataset of 12 examples whose labels follow `pattern`.
fn dataset(ws: &Path, name: &str, labels: &[&str], pattern: usize) -> std::path::PathBuf {
    let p = ws.join(format!("{name}.jsonl"));
    let lines: String = (0..12)
        .map(|i| {
            format!(
                "{{\"id\":\"{i}\",\"text\":\"the cat sat on mat {i}\",\"label\":\"{}\"}}\n",
                labels[(i * pattern / 3) % labels.len()]
            )
        })
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn embed(ws: &Path, file: &Path, labels: &str, method: &str) {
    let sur = tiny_bert();
    let o = fute(
        ws,
        &[
            "embed",
            "dataset",
            "--data",
            file.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            labels,
            "--method",
            method,
            "--surrogate",
            sur.to_str().unwrap(),
            "--max-len",
            "16",
            "--batch",
            "4",
            "--workers",
            "1",
            "--fisher",
            "square-of-mean",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn map_of_stored_dtes_writes_pictures_and_an_explorer() {
    let ws = tempfile::tempdir().unwrap();
    let sa = ["negative", "positive"];
    let other = ["ham", "spam", "eggs"];
    for (name, labels, pattern) in [
        ("reviews", &sa[..], 1),
        ("tweets", &sa[..], 2),
        ("mail", &other[..], 1),
        ("menu", &other[..], 2),
    ] {
        let f = dataset(ws.path(), name, labels, pattern);
        embed(ws.path(), &f, &labels.join(","), "fim");
    }
    let out = ws.path().join("maps");
    let o = fute(
        ws.path(),
        &[
            "map",
            "--method",
            "fim",
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "300",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "map-pca.png",
        "map-tsne.png",
        "map-pca.svg",
        "map-tsne.svg",
        "map.csv",
        "map.json",
        "map.html",
    ] {
        let p = out.join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 200,
            "{f} missing or empty"
        );
    }
    assert_eq!(
        &std::fs::read(out.join("map-pca.png")).unwrap()[..4],
        b"\x89PNG"
    );
    let svg = std::fs::read_to_string(out.join("map-tsne.svg")).unwrap();
    for name in [
        "reviews",
        "tweets",
        "mail",
        "menu",
        "SA: sentiment",
        "CR: other",
    ] {
        assert!(svg.contains(name), "the t-SNE SVG lacks {name}");
    }
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("map.json")).unwrap()).unwrap();
    // The store lists embeddings in its own order; compare by subject.
    let mut classes: Vec<(&str, &str)> = map["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["subject"].as_str().unwrap(), p["class"].as_str().unwrap()))
        .collect();
    classes.sort_unstable();
    assert_eq!(
        classes,
        [
            ("mail", "CR"),
            ("menu", "CR"),
            ("reviews", "SA"),
            ("tweets", "SA")
        ],
        "classes from the labels kept with each DTE"
    );
    let html = std::fs::read_to_string(out.join("map.html")).unwrap();
    assert!(html.contains("class=\"explorer\"") && html.contains("data:image/png;base64,"));

    // A second space in the store: an unfiltered map must say which spaces there are.
    let f = dataset(ws.path(), "extra", &sa, 1);
    embed(ws.path(), &f, "negative,positive", "textemb");
    let o = fute(ws.path(), &["map"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("spans 2 spaces") && stderr(&o).contains("--space"),
        "{}",
        stderr(&o)
    );
    let o = fute(ws.path(), &["map", "--method", "prefix"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no stored embedding matches"),
        "{}",
        stderr(&o)
    );
    let o = fute(ws.path(), &["map", "--method", "textemb"]);
    assert_eq!(o.status.code(), Some(1), "one embedding is not a map");
    assert!(stderr(&o).contains("at least 2"), "{}", stderr(&o));
}
