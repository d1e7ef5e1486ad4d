//! `fute doctor` on a deliberately broken workspace, and two `fute`
//! processes embedding into one workspace at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

/// A JSONL file of 12 labelled texts; `variant` changes the labels.
fn data(ws: &Path, name: &str, variant: usize) -> PathBuf {
    let p = ws.join(format!("{name}.jsonl"));
    let lines: String = (0..12)
        .map(|i| {
            let label = if (i + variant).is_multiple_of(3) {
                "no"
            } else {
                "yes"
            };
            format!(
                "{{\"id\":\"{i}\",\"text\":\"the cat sat on mat {i}\",\"label\":\"{label}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn embed_args(file: &Path) -> Vec<String> {
    let sur = tiny_bert();
    [
        "embed",
        "dataset",
        "--data",
        file.to_str().unwrap(),
        "--schema",
        "classification",
        "--labels",
        "no,yes",
        "--method",
        "fim",
        "--surrogate",
        sur.to_str().unwrap(),
        "--max-len",
        "16",
        "--batch",
        "4",
        "--workers",
        "1",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn embed(ws: &Path, file: &Path) -> serde_json::Value {
    let args = embed_args(file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = fute(ws, &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

fn ids(ws: &Path) -> Vec<String> {
    let o = fute(ws, &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn doctor_finds_and_repairs_a_broken_workspace() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let recs: Vec<serde_json::Value> = (0..3)
        .map(|v| embed(w, &data(w, &format!("d{v}"), v)))
        .collect();
    let file = |r: &serde_json::Value| PathBuf::from(r["file"].as_str().unwrap());
    let o = fute(w, &["doctor"]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("3 catalogue rows, 3 vector files"));
    assert!(text(&o.stdout).contains("no problems found"));

    // Break it: a vector file gone, one changed, an orphan vector file, leftovers
    // of interrupted writes (old and recent), a cache line cut off by a crash.
    std::fs::remove_file(file(&recs[0])).unwrap();
    let mut bytes = std::fs::read(file(&recs[1])).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(file(&recs[1]), bytes).unwrap();
    let vectors = file(&recs[2]).parent().unwrap().to_path_buf();
    let orphan = vectors.join("00deadbeef.safetensors");
    std::fs::copy(file(&recs[2]), &orphan).unwrap();
    age(&orphan);
    let state = w.join(".fute");
    let tmp = state.join("datasets").join(".tmpX1y2Z3");
    std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    std::fs::write(&tmp, b"half").unwrap();
    age(&tmp);
    let staging = state.join(".staging-abc");
    std::fs::create_dir_all(staging.join("inner")).unwrap();
    age(&staging);
    let recent = state.join(".tmpRecent");
    std::fs::write(&recent, b"in use").unwrap();
    let cache = state.join("cache").join("llm").join("gguf-0123.jsonl");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::fs::write(
        &cache,
        "{\"key\":\"a\",\"op\":\"generate\",\"value\":{}}\n{\"key\":\"b\",\"op\":\"gen",
    )
    .unwrap();

    let o = fute(w, &["doctor", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("`fute doctor --repair` fixes 6"),
        "{}",
        text(&o.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(problems.len(), 7, "{problems:#?}");
    let has = |s: &str| problems.iter().filter(|p| p.contains(s)).count();
    assert_eq!(has("its vector file is missing"), 1);
    assert_eq!(has("sha256 mismatch"), 1);
    assert_eq!(has("without a catalogue row"), 1);
    assert_eq!(has("interrupted write"), 3);
    assert_eq!(has("1 unreadable line(s) (line 2)"), 1);

    let o = fute(w, &["doctor", "--repair"]);
    let out = text(&o.stdout);
    // Only the recent temporary file is left (it may belong to a running fute).
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(out.matches("repaired: ").count(), 6, "{out}");
    assert!(recent.exists() && !tmp.exists() && !staging.exists() && !orphan.exists());
    assert_eq!(ids(w), [recs[2]["id"].as_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&cache).unwrap(),
        "{\"key\":\"a\",\"op\":\"generate\",\"value\":{}}\n"
    );
    std::fs::remove_file(&recent).unwrap();
    let o = fute(w, &["doctor"]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    // Embedding again restores what was dropped, bit for bit.
    let again = embed(w, &data(w, "d0", 0));
    assert_eq!(again["id"], recs[0]["id"]);
    assert!(fute(w, &["doctor"]).status.success());
}

#[test]
fn two_processes_embedding_into_one_workspace_both_land() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let files: Vec<PathBuf> = (0..4).map(|v| data(w, &format!("c{v}"), v)).collect();
    // Four processes on a fresh workspace: they create the store together.
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            Command::new(env!("CARGO_BIN_EXE_fute"))
                .arg("--workspace")
                .arg(w)
                .args(embed_args(f))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert_eq!(ids(w).len(), 4);
    let o = fute(w, &["doctor"]);
    assert!(o.status.success(), "{}", text(&o.stdout));
}
