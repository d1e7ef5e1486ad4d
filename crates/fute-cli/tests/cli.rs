//! The `fute` binary end to end: exit codes, messages, JSON output.

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bad_command_line_exits_2() {
    let ws = tempfile::tempdir().unwrap();
    assert_eq!(fute(ws.path(), &["frobnicate"]).status.code(), Some(2));
}

#[test]
fn import_of_a_bad_csv_exits_1_naming_file_and_line() {
    let ws = tempfile::tempdir().unwrap();
    let csv = ws.path().join("r.csv");
    std::fs::write(&csv, "review,stars\ngood film,positive\nmeh,neutral\n").unwrap();
    let o = fute(
        ws.path(),
        &[
            "data",
            "import",
            "r",
            "--file",
            csv.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            "negative,positive",
            "--map",
            "text=review",
            "--map",
            "label=stars",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:3", csv.display())),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("unknown label `neutral`"),
        "{}",
        stderr(&o)
    );
    // Nothing was written.
    assert!(!ws.path().join(".fute/datasets/r").exists());
}

#[test]
fn import_then_list_show_stats_and_build_a_corpus() {
    let ws = tempfile::tempdir().unwrap();
    let data = ws.path().join("d.jsonl");
    let lines: String = (0..40)
        .map(|i| format!("{{\"id\":\"{i}\",\"text\":\"example number {i} of my own data\",\"label\":\"{}\"}}\n", ["no", "yes"][i % 2]))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let o = fute(
        ws.path(),
        &[
            "data",
            "import",
            "mine",
            "--file",
            data.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            "no,yes",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("imported 40 examples"));
    // Importing the same file again finds the same dataset: nothing to do.
    let same = fute(
        ws.path(),
        &[
            "data",
            "import",
            "mine",
            "--file",
            data.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            "no,yes",
        ],
    );
    assert!(same.status.success(), "{}", stderr(&same));
    assert!(stderr(&same).contains("nothing to do"), "{}", stderr(&same));
    // Other content under the same name without --force is refused.
    std::fs::write(
        &data,
        "{\"text\":\"something else\",\"label\":\"no\"}\n{\"text\":\"more\",\"label\":\"yes\"}\n",
    )
    .unwrap();
    let again = fute(
        ws.path(),
        &[
            "data",
            "import",
            "mine",
            "--file",
            data.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            "no,yes",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"));

    let list = fute(ws.path(), &["data", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let mine = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "mine")
        .unwrap();
    assert_eq!(mine["origin"], "workspace");
    assert_eq!(mine["examples"], 40);
    assert_eq!(mine["classes"], 2);

    let show = fute(ws.path(), &["data", "show", "mine", "--n", "2", "--json"]);
    assert_eq!(stdout(&show).lines().count(), 2);
    let stats = fute(ws.path(), &["data", "stats", "mine", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        st["label_counts"]["yes"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        20
    );

    let build = fute(
        ws.path(),
        &[
            "corpus",
            "build",
            "u",
            "--from",
            "none",
            "--datasets",
            "mine",
            "--per-source",
            "25",
            "--json",
        ],
    );
    assert!(build.status.success(), "{}", stderr(&build));
    let card: serde_json::Value = serde_json::from_slice(&build.stdout).unwrap();
    assert_eq!(card["size"], 25);
    let again = fute(
        ws.path(),
        &[
            "corpus",
            "build",
            "u",
            "--from",
            "none",
            "--datasets",
            "mine",
            "--per-source",
            "25",
            "--json",
            "--force",
        ],
    );
    let card2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(card["hash"], card2["hash"], "same spec, same corpus");
}

#[test]
fn unknown_dataset_is_a_user_error_listing_names() {
    let ws = tempfile::tempdir().unwrap();
    let o = fute(ws.path(), &["data", "show", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown dataset `nope`") && stderr(&o).contains("imdb"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn assets_list_json_names_every_asset() {
    let ws = tempfile::tempdir().unwrap();
    let o = fute(ws.path(), &["assets", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for n in [
        "minilm",
        "smollm2",
        "imdb",
        "rotten-tomatoes",
        "tweets",
        "spam-assassin",
        "lee",
        "bigbench",
        "gemma3",
        "wordnet",
        "fortunes",
        "stdlib-text",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

/// Real tier: `fute data list` shows the packaged datasets with their real sizes.
#[test]
fn data_list_shows_real_counts() {
    if fute_core::testing::real_asset("imdb").is_none() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    let o = fute(ws.path(), &["data", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = |n: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    for (name, source_rows) in [
        ("imdb", 50_000),
        ("rotten-tomatoes", 13_905),
        ("tweets", 38_158),
        ("spam-assassin", 6_046),
        ("lee-similarity", 1_225),
    ] {
        assert_eq!(row(name)["source_rows"], source_rows, "{name}");
        assert_eq!(row(name)["available"], true);
    }
    let table = stdout(&fute(ws.path(), &["data", "list"]));
    assert!(
        table.contains("50,000") && table.contains("38,158"),
        "{table}"
    );
}

fn tiny_bert() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

#[test]
fn embed_a_jsonl_file_then_list_export_and_compare() {
    let ws = tempfile::tempdir().unwrap();
    let write = |name: &str, label_a: &str| {
        let p = ws.path().join(name);
        let lines: String = (0..12)
            .map(|i| {
                format!(
                    "{{\"id\":\"{i}\",\"text\":\"the cat sat on mat {i}\",\"label\":\"{}\"}}\n",
                    if i % 3 == 0 { label_a } else { "yes" }
                )
            })
            .collect();
        std::fs::write(&p, lines).unwrap();
        p
    };
    let (a, b) = (write("a.jsonl", "no"), write("b.jsonl", "yes"));
    let sur = tiny_bert();
    let embed = |file: &Path| {
        fute(
            ws.path(),
            &[
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
            ],
        )
    };
    let ra = embed(&a);
    assert!(ra.status.success(), "{}", stderr(&ra));
    let rec: serde_json::Value = serde_json::from_slice(&ra.stdout).unwrap();
    assert_eq!(rec["meta"]["subject"]["name"], "a");
    assert_eq!(
        rec["meta"]["extra"]["probe_examples"], 12,
        "a bare file is all training data"
    );
    let rb: serde_json::Value = serde_json::from_slice(&embed(&b).stdout).unwrap();
    let (ia, ib) = (rec["id"].as_str().unwrap(), rb["id"].as_str().unwrap());

    let ls: serde_json::Value =
        serde_json::from_slice(&fute(ws.path(), &["ls", "--json"]).stdout).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 2);
    let sim = fute(ws.path(), &["similarity", ia, ib]);
    assert!(sim.status.success(), "{}", stderr(&sim));
    let s: f64 = stdout(&sim)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&s), "{s}");
    let out = ws.path().join("a.npy");
    assert!(fute(
        ws.path(),
        &[
            "export",
            ia,
            "--format",
            "npy",
            "--out",
            out.to_str().unwrap()
        ]
    )
    .status
    .success());
    assert!(std::fs::metadata(&out).unwrap().len() > 128);
    let rank = fute(ws.path(), &["rank", "--target", ia, "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&rank.stdout).unwrap();
    assert_eq!(r[0]["id"], ib);
    // Bad requests: an unknown method is a command-line error; an unknown id a user error.
    assert_eq!(
        fute(ws.path(), &["embed", "dataset", "x", "--method", "nope"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(fute(ws.path(), &["show", "abcdef"]).status.code(), Some(1));
}
