//! Heavy tier (`FUTE_HEAVY=1`; minutes on a CPU): `fute demo --quick` from an empty
//! workspace on the real packaged assets, run twice, and its report opened in headless
//! Chromium from `file://`.
//!
//! The second run must find every piece cached (no new embedding in the store, the same
//! answers). The report must load with no console error, show its tables and the four
//! map pictures, draw one explorer point per embedding of each map, and show a tooltip
//! when a point is hovered with a real mouse event. A screenshot is kept under the
//! build's target folder (its path is printed).

#[path = "../../fute/tests/support/chromium.rs"]
mod chromium;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The demo's answer lines (the question, then the measured best and each method's pick;
/// table captions also start with the question but say no "Measured best").
fn answers(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Which ") && l.contains(" Measured best: "))
        .map(str::to_owned)
        .collect()
}

fn stored_embeddings(ws: &Path) -> usize {
    let o = fute(ws, &["ls", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().unwrap().len()
}

fn report_path(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Report: "))
        .unwrap_or_else(|| panic!("no `Report:` line in {stdout}"));
    PathBuf::from(line.trim())
}

#[test]
fn heavy_demo_quick_runs_twice_from_cache_and_its_report_renders() {
    if !fute_core::testing::heavy("fute demo --quick on the real assets") {
        return;
    }
    if fute_core::testing::real_asset("minilm").is_none()
        || fute_core::testing::real_asset("smollm2").is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();

    let first = fute(&ws, &["demo", "--quick"]);
    let out1 = text(&first.stdout);
    assert!(first.status.success(), "{out1}\n{}", text(&first.stderr));
    let a1 = answers(&out1);
    assert_eq!(a1.len(), 2, "two questions answered: {out1}");
    assert!(
        a1[0].starts_with("Which model should I transfer from for rotten-tomatoes?")
            && a1[0].contains("FUTE + TaskEmb")
            && a1[0].contains("FUTE + TuPaTE")
            && a1[0].contains("DataSize"),
        "{}",
        a1[0]
    );
    assert!(
        a1[1].starts_with("Which prompt should SmolLM2 use for rotten-tomatoes?")
            && a1[1].contains("FUTE + TaskEmb")
            && a1[1].contains("MDL"),
        "{}",
        a1[1]
    );
    let stored = stored_embeddings(&ws);
    // 5 datasets × 3 methods of DTEs, 2 models × 2 FUTE methods, 4 prompts × 2 FUTE
    // methods for each LLM (Gemma-3 joins when its opt-in asset is fetched).
    let gemma = fute_core::assets::Assets::from_env()
        .is_present("gemma3")
        .unwrap();
    let llms = if gemma { 2 } else { 1 };
    assert_eq!(stored, 5 * 3 + 2 * 2 + llms * 4 * 2, "{out1}");

    let second = fute(&ws, &["demo", "--quick"]);
    let out2 = text(&second.stdout);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(answers(&out2), a1, "a rerun gives the same answers");
    assert_eq!(
        stored_embeddings(&ws),
        stored,
        "a rerun computes nothing new"
    );

    let html = ws.join(report_path(&out2));
    assert!(html.is_file(), "{}", html.display());
    let maps = ["fim", "prefix"].map(|m| {
        let p = html.with_file_name(format!("map-{m}.json"));
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["points"].as_array().unwrap().len()
    });

    let Some(exe) = chromium::required_or_skip() else {
        return;
    };
    let (_browser, mut cdp) = chromium::open(&exe, &tmp.path().join("profile"), &html);
    let page = cdp.eval(
        "({tables: document.querySelectorAll('table').length, \
          images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]), \
          explorers: Array.from(document.querySelectorAll('.explorer')).map(e => e.querySelectorAll('.pt').length), \
          first: document.querySelector('.explorer .pt').getAttribute('data-id')})",
    );
    assert!(
        page["tables"].as_u64().unwrap() >= 6,
        "sources, truth and picks of both questions, readings, provenance: {page}"
    );
    let images = page["images"].as_array().unwrap();
    assert_eq!(
        images.len(),
        4,
        "PCA and t-SNE of both FUTE methods: {page}"
    );
    for i in images {
        assert_eq!(i[0], Value::Bool(true), "image loaded: {page}");
        assert!(i[1].as_u64().unwrap() >= 1000, "rendered at size: {page}");
    }
    let drawn: Vec<usize> = page["explorers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(drawn, maps.to_vec(), "one point per embedding: {page}");
    let tip = cdp.hover_point(page["first"].as_str().unwrap());
    assert_eq!(tip["hidden"], Value::Bool(false), "{tip}");
    assert_eq!(tip["shown"], Value::Bool(true), "{tip}");
    assert!(tip["text"].as_str().unwrap().contains("subject: "), "{tip}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-report-screenshot.png");
    cdp.screenshot(&shot);
    println!("screenshot of the demo's report: {}", shot.display());
    let errors = cdp.errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
