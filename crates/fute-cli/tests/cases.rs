//! The input and exit-code cases of 2026-11-30 (`shared/cases/2026-11-30/`), each
//! reproduced with the `fute` binary on the tiny BERT and data made here:
//! case 5 (`--max-len` too small for a pair), 6 (an over-long QA question),
//! 12 (a UTF-8 byte-order mark), 14 (labels in another order), 15 (a one-label
//! schema), 23 (files under the umask), 24 (`--max-len` beyond the positions),
//! plus text that shows no characters and names that leave the workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fute_in(workspace: &Path, umask: Option<u32>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fute"));
    c.arg("--workspace")
        .arg(workspace)
        .args(args)
        .env("FUTE_ASSETS", workspace.join("no-assets"));
    if let Some(mask) = umask {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask is async-signal-safe and touches only the child.
        unsafe {
            c.pre_exec(move || {
                libc::umask(mask as libc::mode_t);
                Ok(())
            });
        }
    }
    c.output().expect("runs fute")
}

fn fute(workspace: &Path, args: &[&str]) -> Output {
    fute_in(workspace, None, args)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tiny_bert() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fute-nn/tests/fixtures/tiny-bert")
        .display()
        .to_string()
}

/// Asserts exit code 1 and that stderr mentions every one of `words`.
fn user_error(o: &Output, words: &[&str]) {
    let e = err(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {e}\nstdout: {}", out(o));
    for w in words {
        assert!(e.contains(w), "`{w}` not in: {e}");
    }
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", err(o));
    out(o)
}

/// A sentiment file the tiny vocabulary can spell: "good"-words are positive.
fn sentiment_jsonl(n: usize) -> String {
    let good = ["good", "happy", "big", "red"];
    let bad = ["bad", "sad", "small", "blue"];
    let fill = [
        "the man",
        "a dog",
        "this cat",
        "some music",
        "the game",
        "a city",
    ];
    (0..n)
        .map(|i| {
            let pos = i % 2 == 0;
            let w = if pos { good[i / 2 % 4] } else { bad[i / 2 % 4] };
            let label = if pos { "positive" } else { "negative" };
            format!(
                "{{\"id\":\"e{i}\",\"text\":\"{} is {w}\",\"label\":\"{label}\"}}\n",
                fill[i % 6]
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn import(ws: &Path, name: &str, file: &str, schema: &str, labels: Option<&str>) -> Output {
    let mut args = vec!["data", "import", name, "--file", file, "--schema", schema];
    if let Some(l) = labels {
        args.extend(["--labels", l]);
    }
    fute(ws, &args)
}

fn accuracy(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("accuracy"))
        .unwrap_or_else(|| panic!("no accuracy in {stdout}"))
        .trim()
        .parse()
        .unwrap()
}

/// Case 14: the same file imported with its labels in the other order scores the
/// same, because outputs meet labels by name; a model with other names is refused.
#[test]
fn case14_labels_meet_by_name_not_position() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let f = write(w, "base.jsonl", &sentiment_jsonl(60));
    ok(&import(
        w,
        "a",
        &f,
        "classification",
        Some("negative,positive"),
    ));
    ok(&import(
        w,
        "b",
        &f,
        "classification",
        Some("positive,negative"),
    ));
    let m = w.join("m").display().to_string();
    let train = fute(
        w,
        &[
            "train",
            "--base",
            &tiny_bert(),
            "--dataset",
            "a",
            "--out",
            &m,
            "--epochs",
            "6",
            "--max-len",
            "16",
            "--batch",
            "8",
            "--lr",
            "3e-3",
            "--seed",
            "7",
        ],
    );
    ok(&train);
    let pred = |d: &str| {
        accuracy(&ok(&fute(
            w,
            &[
                "predict",
                "--model",
                &m,
                "--dataset",
                d,
                "--split",
                "train",
                "--max-len",
                "16",
            ],
        )))
    };
    let (acc_a, acc_b) = (pred("a"), pred("b"));
    assert!(acc_a > 0.8, "the toy task is learnable: {acc_a}");
    // Before the fix b scored 1 − acc_a.
    assert_eq!(acc_a, acc_b);

    // Other label names: refused, naming both sides' extra labels.
    let other = sentiment_jsonl(20)
        .replace("\"positive\"", "\"pos\"")
        .replace("\"negative\"", "\"neg\"");
    let f2 = write(w, "other.jsonl", &other);
    ok(&import(w, "c", &f2, "classification", Some("neg,pos")));
    let o = fute(
        w,
        &[
            "predict",
            "--model",
            &m,
            "--dataset",
            "c",
            "--split",
            "train",
        ],
    );
    user_error(
        &o,
        &[
            "only the model has negative, positive",
            "only the dataset has neg, pos",
        ],
    );

    // Continuing to train from m on b keeps m's head, its rows matched by name.
    let m2 = w.join("m2").display().to_string();
    let o = fute(
        w,
        &[
            "train",
            "--base",
            &m,
            "--dataset",
            "b",
            "--out",
            &m2,
            "--epochs",
            "1",
            "--max-len",
            "16",
            "--lr",
            "1e-9",
            "--batch",
            "8",
        ],
    );
    assert!(ok(&o).contains("labels matched by name"), "{}", out(&o));
    assert!((pred_on(w, &m2, "b") - acc_a).abs() < 0.05);
    // …and on other labels a fresh head replaces it.
    let m3 = w.join("m3").display().to_string();
    let o = fute(
        w,
        &[
            "train",
            "--base",
            &m,
            "--dataset",
            "c",
            "--out",
            &m3,
            "--epochs",
            "1",
            "--max-len",
            "16",
        ],
    );
    assert!(ok(&o).contains("head is for other labels"), "{}", out(&o));
}

fn pred_on(w: &Path, model: &str, d: &str) -> f64 {
    accuracy(&ok(&fute(
        w,
        &[
            "predict",
            "--model",
            model,
            "--dataset",
            d,
            "--split",
            "train",
            "--max-len",
            "16",
        ],
    )))
}

/// Case 12: a byte-order mark before the first record is not part of the data.
#[test]
fn case12_utf8_bom_is_accepted_in_jsonl_and_csv() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let f = write(w, "bom.jsonl", &format!("\u{FEFF}{}", sentiment_jsonl(10)));
    assert!(ok(&import(
        w,
        "j",
        &f,
        "classification",
        Some("negative,positive")
    ))
    .contains("imported 10 examples"));
    let csv = write(
        w,
        "bom.csv",
        "\u{FEFF}text,label\ngood film,positive\nbad film,negative\n",
    );
    assert!(ok(&import(
        w,
        "c",
        &csv,
        "classification",
        Some("negative,positive")
    ))
    .contains("imported 2 examples"));
    // UTF-16 is named, with the fix.
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend("{\"text\":\"x\"}".encode_utf16().flat_map(u16::to_le_bytes));
    let p = w.join("u16.jsonl");
    std::fs::write(&p, utf16).unwrap();
    let o = import(
        w,
        "u",
        p.to_str().unwrap(),
        "classification",
        Some("negative,positive"),
    );
    user_error(&o, &["u16.jsonl", "UTF-16LE", "save it as UTF-8"]);
}

/// Case 15 and invisible text: rejected at import, with the file and line.
#[test]
fn case15_one_label_and_invisible_text_are_rejected_at_import() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let f = write(
        w,
        "one.jsonl",
        "{\"text\":\"good\",\"label\":\"positive\"}\n",
    );
    let o = import(w, "one", &f, "classification", Some("positive"));
    user_error(&o, &["at least two labels", "--labels negative,positive"]);
    assert!(!w.join(".fute/datasets/one").exists());
    let o = import(w, "dup", &f, "classification", Some("positive,positive"));
    user_error(&o, &["`positive` is listed twice"]);
    for (i, text) in ["\u{200B}\u{200D}", "\u{0007}\t", "\u{FEFF} \u{2060}"]
        .iter()
        .enumerate()
    {
        let body = format!(
            "{{\"text\":\"good\",\"label\":\"positive\"}}\n{}\n",
            serde_json::json!({"text": text, "label": "negative"})
        );
        let f = write(w, &format!("inv{i}.jsonl"), &body);
        let o = import(
            w,
            &format!("inv{i}"),
            &f,
            "classification",
            Some("negative,positive"),
        );
        user_error(
            &o,
            &[
                &format!("inv{i}.jsonl:2"),
                "field `text`",
                "shows no characters",
            ],
        );
    }
}

/// Case 5: a `--max-len` that leaves no room for a pair is a user error.
#[test]
fn case5_max_len_too_small_for_a_pair_exits_1() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let body: String = (0..6)
        .map(|i| {
            format!(
                "{{\"text\":\"the man is good\",\"text_pair\":\"a dog {i}\",\"label\":\"yes\"}}\n"
            )
        })
        .collect();
    let f = write(w, "pair.jsonl", &body);
    ok(&import(w, "p", &f, "pair-classification", Some("yes,no")));
    for method in ["textemb", "fim"] {
        let o = fute(
            w,
            &[
                "embed",
                "dataset",
                "p",
                "--method",
                method,
                "--surrogate",
                &tiny_bert(),
                "--max-len",
                "3",
            ],
        );
        user_error(&o, &["maximum length 3", "at least 5"]);
    }
}

/// Case 24: a `--max-len` beyond the model's positions is refused before any work.
#[test]
fn case24_max_len_beyond_positions_is_refused_up_front() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let f = write(w, "s.jsonl", &sentiment_jsonl(10));
    ok(&import(
        w,
        "s",
        &f,
        "classification",
        Some("negative,positive"),
    ));
    let m = w.join("m").display().to_string();
    let tiny = tiny_bert();
    for args in [
        vec![
            "embed",
            "dataset",
            "s",
            "--method",
            "textemb",
            "--surrogate",
            &tiny,
            "--max-len",
            "1000",
        ],
        vec![
            "train",
            "--base",
            &tiny,
            "--dataset",
            "s",
            "--out",
            &m,
            "--max-len",
            "1000",
        ],
    ] {
        user_error(
            &fute(w, &args),
            &["--max-len 1000", "40 positions", "--max-len 40 or less"],
        );
    }
    assert!(!Path::new(&m).exists());
}

/// Case 6: a question longer than the room is cut (as HF's max_query_length),
/// for training and embedding alike.
#[test]
fn case6_long_qa_question_is_truncated_not_fatal() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let long_q = vec!["is the man good"; 40].join(" ");
    let body: String = (0..8)
        .map(|i| {
            let q = if i == 3 {
                long_q.as_str()
            } else {
                "is the man good"
            };
            serde_json::json!({"id": format!("q{i}"), "question": q,
                "context": "the man is good and the dog is bad", "answer": {"text": "good"},
                "split": "train"})
            .to_string()
                + "\n"
        })
        .collect();
    let f = write(w, "qa.jsonl", &body);
    ok(&import(w, "q", &f, "extractive-qa", None));
    let m = w.join("m").display().to_string();
    let tiny = tiny_bert();
    ok(&fute(
        w,
        &[
            "train",
            "--base",
            &tiny,
            "--dataset",
            "q",
            "--out",
            &m,
            "--epochs",
            "1",
            "--max-len",
            "32",
        ],
    ));
    ok(&fute(
        w,
        &[
            "embed",
            "dataset",
            "q",
            "--method",
            "fim",
            "--surrogate",
            &tiny,
            "--epochs",
            "1",
            "--max-len",
            "32",
        ],
    ));
}

/// Case 23: files written through a temporary file get the umask's permissions.
#[test]
fn case23_written_files_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for (mask, want) in [(0o022, 0o644), (0o077, 0o600)] {
        let ws = tempfile::tempdir().unwrap();
        let w = ws.path();
        let f = write(w, "s.jsonl", &sentiment_jsonl(12));
        let run = |args: &[&str]| ok(&fute_in(w, Some(mask), args));
        run(&[
            "data",
            "import",
            "a",
            "--file",
            &f,
            "--schema",
            "classification",
            "--labels",
            "negative,positive",
        ]);
        let m = w.join("m").display().to_string();
        let tiny = tiny_bert();
        run(&[
            "train",
            "--base",
            &tiny,
            "--dataset",
            "a",
            "--out",
            &m,
            "--epochs",
            "1",
            "--max-len",
            "16",
        ]);
        let json = run(&[
            "embed",
            "dataset",
            "a",
            "--method",
            "textemb",
            "--surrogate",
            &tiny,
            "--max-len",
            "16",
            "--json",
        ]);
        let id = serde_json::from_str::<serde_json::Value>(&json).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let exported = w.join("v.npy").display().to_string();
        run(&["export", &id, "--format", "npy", "--out", &exported]);
        let mut files = vec![PathBuf::from(&exported)];
        for dir in [
            w.join(".fute/datasets/a"),
            PathBuf::from(&m),
            w.join(".fute/vectors"),
        ] {
            for e in std::fs::read_dir(&dir).unwrap() {
                files.push(e.unwrap().path());
            }
        }
        assert!(files.len() >= 8, "{files:?}");
        for p in files {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "umask {mask:o}: {} is {mode:o}", p.display());
        }
    }
}

/// Names given on the command line never leave the workspace.
#[test]
fn names_cannot_escape_the_workspace() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path().join("ws");
    std::fs::create_dir(&w).unwrap();
    let f = write(ws.path(), "s.jsonl", &sentiment_jsonl(4));
    for name in ["../x", "/tmp/x", "a/b", ".hidden", "a\\b", ".."] {
        let o = import(&w, name, &f, "classification", Some("negative,positive"));
        user_error(&o, &["invalid dataset name", "never a path"]);
        let o = fute(&w, &["corpus", "build", name]);
        user_error(&o, &["invalid corpus name"]);
        let o = fute(&w, &["data", "show", name]);
        user_error(&o, &["invalid dataset name"]);
    }
    assert!(!ws.path().join("x").exists());
    let mut entries: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["s.jsonl", "ws"]);
}

/// Issue 14 item 7: a fine-tune or a surrogate that did not learn says so (stderr
/// and the saved record); one that learned says nothing.
#[test]
fn a_model_that_did_not_learn_says_so() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let f = write(w, "s.jsonl", &sentiment_jsonl(120));
    ok(&import(
        w,
        "s",
        &f,
        "classification",
        Some("negative,positive"),
    ));
    let tiny = tiny_bert();
    let train = |out: &str, epochs: &str, lr: &str| {
        let m = w.join(out).display().to_string();
        let o = fute(
            w,
            &[
                "train",
                "--base",
                &tiny,
                "--dataset",
                "s",
                "--out",
                &m,
                "--epochs",
                epochs,
                "--lr",
                lr,
                "--batch",
                "8",
                "--max-len",
                "16",
                "--seed",
                "7",
            ],
        );
        ok(&o);
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(w.join(out).join("fute_train.json")).unwrap(),
        )
        .unwrap();
        (err(&o), record)
    };
    let (stderr, record) = train("stuck", "1", "1e-9");
    assert!(
        stderr.contains("warning: the model did not learn")
            && stderr.contains("--batch 16 --lr 5e-5"),
        "{stderr}"
    );
    assert_eq!(record["report"]["dev_check"]["at_chance"], true, "{record}");
    assert!(record["report"]["warning"].is_string());
    let (stderr, record) = train("learned", "6", "3e-3");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        record["report"]["dev_check"]["at_chance"], false,
        "{record}"
    );

    // The surrogate of a FIM embedding: its fit is in the provenance and `fute show`.
    let embed = |epochs: &str, lr: &str| {
        let o = fute(
            w,
            &[
                "embed",
                "dataset",
                "s",
                "--method",
                "fim",
                "--surrogate",
                &tiny,
                "--max-len",
                "16",
                "--epochs",
                epochs,
                "--lr",
                lr,
                "--batch",
                "8",
                "--json",
            ],
        );
        let rec: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
        (err(&o), rec)
    };
    let (stderr, rec) = embed("1", "1e-9");
    assert!(
        stderr.contains("the surrogate did not fit its probe set"),
        "{stderr}"
    );
    let fit = &rec["meta"]["extra"]["surrogate_fit"];
    assert_eq!(fit["agreement"]["at_chance"], true, "{rec}");
    assert!(fit["final_train_loss"].as_f64().unwrap() > 0.5);
    let show = fute(w, &["show", rec["id"].as_str().unwrap()]);
    ok(&show);
    assert!(
        err(&show).contains("surrogate fit: surrogate agreement with its probe targets"),
        "{}",
        err(&show)
    );
    let (stderr, rec) = embed("8", "3e-3");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        rec["meta"]["extra"]["surrogate_fit"]["agreement"]["at_chance"], false,
        "{rec}"
    );
}
