//! `fute transfer` end to end on the tiny BERT and toy datasets: a killed run
//! resumes to a byte-identical matrix, a Slurm job array gives the same matrix
//! as a local run (with `FUTE_SLURM=1` and a running Slurm, see
//! scripts/slurm-local.sh), evaluate writes its tables, and every user error
//! exits 1 with a message that says what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fute_core::dataset::{
    Dataset, DatasetCard, Example, Input, InputShape, Split, Target, TaskSchema,
};

fn fute_cmd(ws: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fute"));
    c.arg("--workspace")
        .arg(ws)
        .arg("--assets")
        .arg(ws.join("no-assets"));
    c
}

fn fute(ws: &Path, args: &[&str]) -> Output {
    fute_cmd(ws).args(args).output().expect("runs fute")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn tiny_bert() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fute-nn/tests/fixtures/tiny-bert")
        .to_string_lossy()
        .into_owned()
}

const WORDS: [&str; 8] = ["good", "bad", "happy", "sad", "big", "small", "red", "blue"];

/// A toy classification set in the workspace; `dev` = whether it has a dev split.
fn toy(ws: &Path, name: &str, labels: &[&str], shift: usize, dev: bool) {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: labels.iter().map(|s| s.to_string()).collect(),
    };
    let k = labels.len();
    let examples = (0..36)
        .map(|i| Example {
            id: format!("{name}{i}"),
            input: Input::Single(format!("the man is {}", WORDS[(i + shift) % 8])),
            target: Target::Label((i + shift) % 8 % k),
            fixed_split: Some(if dev && i % 4 == 0 {
                Split::Dev
            } else {
                Split::Train
            }),
        })
        .collect();
    Dataset {
        card: DatasetCard::new(name, schema),
        examples,
    }
    .save_dir(&ws.join(".fute/datasets").join(name))
    .unwrap();
}

fn workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    toy(ws.path(), "toy-a", &["neg", "pos"], 0, true);
    toy(ws.path(), "toy-b", &["x", "y", "z"], 3, true);
    toy(ws.path(), "toy-c", &["no", "yes"], 5, true);
    ws
}

fn plan(ws: &Path, tasks: &str, out: &Path) -> Output {
    fute(
        ws,
        &[
            "transfer",
            "plan",
            "--tasks",
            tasks,
            "--base",
            &tiny_bert(),
            "--target-limit",
            "12",
            "--source-limit",
            "20",
            "--source-epochs",
            "2",
            "--target-epochs",
            "2",
            "--lr",
            "1e-3",
            "--batch",
            "4",
            "--max-len",
            "16",
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

fn results(run: &Path) -> usize {
    std::fs::read_dir(run.join("jobs"))
        .map(|d| {
            d.filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with('.')
            })
            .count()
        })
        .unwrap_or(0)
}

fn collect(ws: &Path, run: &Path) -> Vec<u8> {
    ok(&fute(ws, &["transfer", "collect", run.to_str().unwrap()]));
    std::fs::read(run.join("matrix.json")).unwrap()
}

#[test]
fn killed_run_resumes_to_a_byte_identical_matrix() {
    let ws = workspace();
    let tasks = "toy-a,toy-b,toy-c";
    // Uninterrupted reference.
    let straight = ws.path().join("straight");
    ok(&plan(ws.path(), tasks, &straight));
    ok(&fute(
        ws.path(),
        &["transfer", "run", straight.to_str().unwrap()],
    ));
    let reference = collect(ws.path(), &straight);

    // Killed with SIGKILL once the first job has written its result.
    let run = ws.path().join("killed");
    ok(&plan(ws.path(), tasks, &run));
    let total = 3 + 3 + 6;
    let mut child = fute_cmd(ws.path())
        .args(["transfer", "run", run.to_str().unwrap(), "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while results(&run) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no job finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the worker dies with its parent
    let done = results(&run);
    assert!(
        done < total,
        "the run finished before the kill ({done} jobs)"
    );

    // A rerun skips what is done and completes the rest.
    let o = fute(ws.path(), &["transfer", "run", run.to_str().unwrap()]);
    ok(&o);
    assert!(
        text(&o.stderr).contains(&format!("{done} of {total} jobs done")),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(results(&run), total);
    let resumed = collect(ws.path(), &run);
    assert_eq!(
        resumed, reference,
        "the resumed matrix differs from the uninterrupted one"
    );
    // A third run has nothing to do.
    let o = fute(ws.path(), &["transfer", "run", run.to_str().unwrap()]);
    ok(&o);
    assert!(text(&o.stdout).contains("all 12 jobs are done"));

    // The matrix has what it promises; the CSV one row per cell and baseline.
    let m: serde_json::Value = serde_json::from_slice(&resumed).unwrap();
    assert_eq!(m["transfers"].as_array().unwrap().len(), 6);
    assert_eq!(m["settings"]["target_limit"], 12);
    assert_eq!(m["plan_commit"].as_str().unwrap().len(), 40);
    let csv = std::fs::read_to_string(run.join("matrix.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 + 6);

    // Result files honour the umask (0022 in tests → 0644), written atomically.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run.join("jobs/baseline-toy-a-s0.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o044, 0o044, "mode {mode:o} ignores the umask");
    }

    // Evaluate: DataSize, Random, LogME on the run's source models.
    let o = fute(
        ws.path(),
        &[
            "transfer",
            "evaluate",
            "--matrix",
            run.join("matrix.json").to_str().unwrap(),
        ],
    );
    ok(&o);
    let out = text(&o.stdout);
    for m in ["DataSize", "Random", "LogME", "CR in-class ρ↓"] {
        assert!(out.contains(m), "{out}");
    }
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(e["rows"].as_array().unwrap().len(), 3);
    // Random with two candidates: ρ = 1.5 exactly.
    assert_eq!(e["rows"][1]["cells"][0]["rho"]["mean"], 1.5);
    assert!(run.join("scores/logme.json").is_file());

    // …and a run folder with report.html: the table, the ground truth it was
    // scored against, each method's pick, the provenance, the raw files.
    let report_line = out.lines().find(|l| l.starts_with("report: ")).expect(&out);
    let report = Path::new(report_line.trim_start_matches("report: "));
    let folder = report.parent().unwrap();
    assert_eq!(folder.parent().unwrap(), ws.path().join(".fute/runs"));
    assert!(folder
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-transfer-evaluate"));
    let html = std::fs::read_to_string(report).unwrap();
    for needle in [
        "Ranking methods against the ground truth",
        "Ground truth: the transfer matrix",
        "toy-a",
        "no transfer",
        "LogME",
        "CR in-class ρ↓",
        "plan commit",
        "matrix ",
    ] {
        assert!(html.contains(needle), "report.html lacks {needle}");
    }
    for f in [
        "evaluation.json",
        "evaluation.csv",
        "matrix.csv",
        "methods.json",
        "ranking.csv",
        "truth-scores.csv",
        "truth-gains.csv",
        "picks.csv",
        "provenance.json",
    ] {
        assert!(folder.join(f).is_file(), "run folder lacks {f}");
    }
    let ranking = std::fs::read_to_string(folder.join("ranking.csv")).unwrap();
    assert_eq!(ranking.lines().count(), 1 + 3, "{ranking}");
    let truth = std::fs::read_to_string(folder.join("truth-scores.csv")).unwrap();
    assert_eq!(truth.lines().count(), 1 + 3, "{truth}");

    // The embedding rows: FUTE + TaskEmb (target DTE vs source model MTE on U, per
    // seed) and TextEmb (target DTE vs source DTE), through a tiny surrogate.
    ok(&fute(
        ws.path(),
        &[
            "corpus",
            "build",
            "u",
            "--from",
            "none",
            "--datasets",
            tasks,
        ],
    ));
    let scores_args = [
        "transfer",
        "scores",
        run.to_str().unwrap(),
        "--methods",
        "fute-taskemb,textemb",
        "--surrogate",
        &tiny_bert(),
        "--u-limit",
        "12",
        "--dte-limit",
        "8",
    ];
    let o = fute(ws.path(), &scores_args);
    ok(&o);
    let fute_file = run.join("scores/fute-taskemb.json");
    let first = std::fs::read(&fute_file).unwrap();
    let s: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(s["method"], "FUTE + TaskEmb");
    let table = &s["per_seed"][0];
    assert_eq!(table.as_object().unwrap().len(), 3, "{s}");
    for (target, row) in table.as_object().unwrap() {
        let row = row.as_object().unwrap();
        assert_eq!(row.len(), 2, "two candidate sources for {target}: {s}");
        assert!(!row.contains_key(target), "a task is not its own source");
        for v in row.values() {
            let v = v.as_f64().unwrap();
            assert!(v.is_finite() && v.abs() <= 1.0 + 1e-9, "a cosine: {s}");
        }
    }
    // A rerun finds every embedding in the store and writes the same scores.
    ok(&fute(ws.path(), &scores_args));
    assert_eq!(std::fs::read(&fute_file).unwrap(), first);
    let o = fute(
        ws.path(),
        &[
            "transfer",
            "evaluate",
            "--matrix",
            run.join("matrix.json").to_str().unwrap(),
            "--methods",
            "random",
            "--scores",
            fute_file.to_str().unwrap(),
            "--scores",
            run.join("scores/textemb.json").to_str().unwrap(),
        ],
    );
    ok(&o);
    let out = text(&o.stdout);
    assert!(
        out.contains("FUTE + TaskEmb") && out.contains("TextEmb"),
        "{out}"
    );

    // A results folder kept without its models: refused before any DTE is trained.
    let bare = ws.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(run.join("matrix.json"), bare.join("matrix.json")).unwrap();
    let mut args = scores_args.to_vec();
    args[2] = bare.to_str().unwrap();
    user_error(
        &fute(ws.path(), &args),
        &["needs the source models", "fute transfer run"],
    );
}

#[test]
fn slurm_array_gives_the_local_matrix() {
    if std::env::var("FUTE_SLURM").as_deref() != Ok("1") {
        eprintln!(
            "note: skipped; set FUTE_SLURM=1 with a running Slurm (scripts/slurm-local.sh start; \
             export SLURM_CONF=…) to run the job array"
        );
        return;
    }
    let ws = workspace();
    let tasks = "toy-a,toy-b";
    let local = ws.path().join("local");
    ok(&plan(ws.path(), tasks, &local));
    ok(&fute(
        ws.path(),
        &["transfer", "run", local.to_str().unwrap()],
    ));
    let reference = collect(ws.path(), &local);

    let run = ws.path().join("slurm");
    ok(&plan(ws.path(), tasks, &run));
    let o = fute(
        ws.path(),
        &[
            "transfer",
            "slurm",
            run.to_str().unwrap(),
            "--submit",
            "--mem",
            "1G",
        ],
    );
    ok(&o);
    assert!(
        text(&o.stdout).contains("submitted Slurm jobs"),
        "{}",
        text(&o.stdout)
    );
    let start = Instant::now();
    while results(&run) < 6 {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the array did not finish; logs in {}",
            run.join("slurm/logs").display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every result was written by a Slurm array task (their logs exist).
    let logs = std::fs::read_dir(run.join("slurm/logs")).unwrap().count();
    assert_eq!(logs, 6);
    assert_eq!(collect(ws.path(), &run), reference);
}

fn user_error(o: &Output, needles: &[&str]) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

#[test]
fn user_errors_exit_1_and_say_what_to_do() {
    let ws = workspace();
    let w = ws.path();
    toy(w, "no-dev", &["a", "b"], 0, false);
    let run = w.join("run");

    // Unknown task.
    user_error(
        &plan(w, "toy-a,no-such-task", &run),
        &["unknown dataset `no-such-task`", "known datasets"],
    );
    // A target without a dev split.
    user_error(
        &plan(w, "toy-a,no-dev", &run),
        &["`no-dev` has no dev split", "\"split\": \"dev\""],
    );
    // A base folder that cannot be trained.
    let empty = w.join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("config.json"), "{}").unwrap();
    let o = fute(
        w,
        &[
            "transfer",
            "plan",
            "--tasks",
            "toy-a,toy-b",
            "--base",
            empty.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
    );
    user_error(&o, &["has no model.safetensors", "model folder needs"]);
    // A plan that does not match the run folder.
    ok(&plan(w, "toy-a,toy-b", &run));
    ok(&plan(w, "toy-a,toy-b", &run)); // the same plan again is fine
    user_error(
        &plan(w, "toy-a,toy-c", &run),
        &["already holds a different plan", "choose another --out"],
    );
    let other = w.join("other");
    ok(&plan(w, "toy-b,toy-a", &other));
    ok(&fute(
        w,
        &["transfer", "run", other.to_str().unwrap(), "--job", "0"],
    ));
    let src = other.join("jobs/source-toy-b-s0.json");
    std::fs::create_dir_all(run.join("jobs")).unwrap();
    std::fs::copy(&src, run.join("jobs/source-toy-b-s0.json")).unwrap();
    user_error(
        &fute(w, &["transfer", "status", run.to_str().unwrap()]),
        &["made under another plan", "fresh run folder"],
    );
    std::fs::remove_file(run.join("jobs/source-toy-b-s0.json")).unwrap();
    // Not a run folder at all.
    user_error(
        &fute(w, &["transfer", "run", w.join("nowhere").to_str().unwrap()]),
        &["has no plan.json", "fute transfer plan"],
    );
    // A job index out of range.
    user_error(
        &fute(
            w,
            &["transfer", "run", run.to_str().unwrap(), "--job", "99"],
        ),
        &["job index 99 is out of range", "6 jobs, 0..=5"],
    );
    // A transfer before its source.
    user_error(
        &fute(w, &["transfer", "run", run.to_str().unwrap(), "--job", "4"]),
        &["needs job", "to be done first"],
    );
    // Collect before the jobs ran.
    user_error(
        &fute(w, &["transfer", "collect", run.to_str().unwrap()]),
        &["6 of 6 jobs have no result yet", "fute transfer run"],
    );
    // A dataset changed after the plan.
    toy(w, "toy-a", &["neg", "pos"], 1, true);
    user_error(
        &fute(w, &["transfer", "run", run.to_str().unwrap(), "--job", "0"]),
        &["`toy-a` changed since the plan", "make a new plan"],
    );
}
