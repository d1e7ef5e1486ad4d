//! `fute prompts evaluate --backend http` against the in-process mock server
//! of the 2026-11-30 cases: verbalisers matched across token surface forms
//! and unscored labels reported (case 19), the endpoint in the cache key
//! (case 25), and the API key written nowhere.

use fute_llm::mock::{MockMode, MockServer};
use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "sk-cli-5d0c2e61b9a44f17";

/// The reviews of cases 19 and 25.
const REVIEWS: [(&str, &str); 8] = [
    ("a warm and funny film", "positive"),
    ("a dull and tiresome mess", "negative"),
    ("loved every minute of it", "positive"),
    ("I walked out halfway through", "negative"),
    ("great acting and a clever plot", "positive"),
    ("weak script and flat acting", "negative"),
    ("a delight from start to end", "positive"),
    ("boring from start to end", "negative"),
];

fn fute(workspace: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fute"));
    cmd.arg("--workspace").arg(workspace).args(args);
    cmd.env_remove("FUTE_LLM_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs fute")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn workspace_with_reviews() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let file = ws.path().join("base.jsonl");
    let lines: Vec<String> = REVIEWS
        .iter()
        .enumerate()
        .map(|(i, (t, l))| {
            serde_json::json!({ "id": format!("b{i}"), "text": format!("{t} (#{i})"), "label": l })
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let o = fute(
        ws.path(),
        &[
            "data",
            "import",
            "s",
            "--file",
            file.to_str().unwrap(),
            "--schema",
            "classification",
            "--labels",
            "negative,positive",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    ws
}

fn evaluate(ws: &Path, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "prompts",
        "evaluate",
        "--backend",
        "http",
        "--url",
        url,
        "--model",
        "m",
        "--prompt-set",
        "sa",
        "--datasets",
        "s",
        "--split",
        "train",
        "--no-fute",
        "--eval-limit",
        "8",
        "--spell-inputs",
        "0",
        "--no-self-select",
        "--cot-max-tokens",
        "4",
        "--retries",
        "0",
    ];
    args.extend_from_slice(extra);
    fute(ws, &args, env)
}

#[test]
fn leading_space_tokens_score_every_label() {
    let ws = workspace_with_reviews();
    let server = MockServer::start(MockMode::LeadingSpace);
    let json = ws.path().join("out.json");
    let o = evaluate(
        ws.path(),
        server.url(),
        &["--json-out", json.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("unscored labels (no verbaliser among the tokens the LLM returned): none"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let report = &v["reports"][0];
    let unscored = report["unscored"].as_array().unwrap();
    assert_eq!(unscored.len(), 13);
    assert!(unscored
        .iter()
        .all(|u| u["some_labels"] == 0 && u["inputs"] == report["examples"]));
    // The mock answers every review right on the vanilla prompts: accuracy 1.
    let truth = report["truth"].as_array().unwrap();
    assert!(
        truth[..10].iter().all(|t| t.as_f64() == Some(1.0)),
        "{truth:?}"
    );
}

#[test]
fn verbalisers_the_server_never_returns_are_an_error() {
    let ws = workspace_with_reviews();
    let server = MockServer::start(MockMode::Unrelated);
    let o = evaluate(ws.path(), server.url(), &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        // The train split of the 8 reviews (ids hashed into splits) holds 6.
        err.contains("on 6 of 6 inputs no verbaliser of any label"),
        "{err}"
    );
}

#[test]
fn another_server_with_the_same_model_name_is_asked() {
    let ws = workspace_with_reviews();
    let a = MockServer::start(MockMode::NoSpace);
    let o = evaluate(ws.path(), a.url(), &[], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let made = a.requests();
    assert!(made > 0);
    // Rerun on A: nothing is asked again.
    let o = evaluate(ws.path(), a.url(), &[], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(a.requests(), made);
    assert!(text(&o.stdout).contains("0 made"), "{}", text(&o.stdout));
    // Server B cannot return log-probabilities: it is asked, and says so.
    let b = MockServer::start(MockMode::NullLogprobs);
    let o = evaluate(ws.path(), b.url(), &[], &[]);
    assert!(b.requests() > 0, "B was never contacted");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no log-probabilities"),
        "{}",
        text(&o.stderr)
    );
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_api_key_reaches_no_file_log_or_message() {
    let ws = workspace_with_reviews();
    let server = MockServer::start(MockMode::LeadingSpace);
    let json = ws.path().join("report.json");
    let mut outputs = Vec::new();
    // From the environment, and on the command line.
    outputs.push(evaluate(
        ws.path(),
        server.url(),
        &["--json-out", json.to_str().unwrap()],
        &[("FUTE_LLM_API_KEY", KEY)],
    ));
    outputs.push(evaluate(ws.path(), server.url(), &["--api-key", KEY], &[]));
    let denied = MockServer::start(MockMode::Unauthorized);
    let failed = evaluate(ws.path(), denied.url(), &["--api-key", KEY], &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(
        text(&failed.stderr).contains("[api key]"),
        "{}",
        text(&failed.stderr)
    );
    outputs.push(failed);
    for o in &outputs[..2] {
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    for o in &outputs {
        assert!(!text(&o.stdout).contains(KEY));
        assert!(!text(&o.stderr).contains(KEY));
    }
    let mut all = Vec::new();
    files(ws.path(), &mut all);
    assert!(all.len() >= 4, "{all:?}");
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "{} holds the API key",
            f.display()
        );
    }
    // The key was sent to the server, so the search above could have found it.
    assert!(server.requests() > 0);
}
