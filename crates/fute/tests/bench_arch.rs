//! `fute bench`'s arch rows (issue 12) run end to end on the tiny conformance
//! models of every architecture, without the peer. No timing is asserted:
//! what is checked is that every row runs the work it states, on the model and
//! shape it states, and reports it.

use std::path::PathBuf;

use fute::bench::{arch, run, BenchOptions};

fn fixture(a: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fute-nn/tests/fixtures/conformance")
        .join(a)
        .join("model")
}

fn options(only: &[&str]) -> BenchOptions {
    BenchOptions {
        // No MiniLM row is selected, so these are never read.
        model_dir: PathBuf::from("/nonexistent/minilm"),
        reviews: PathBuf::from("/nonexistent/reviews.json"),
        gguf: None,
        threads: 1,
        peer_python: None,
        llm_server: None,
        only: Some(only.iter().map(|s| s.to_string()).collect()),
        llm_inputs: 1,
        quick: true,
        arch_rows: false,
        arch_models: arch::ARCHES
            .iter()
            .map(|a| (a.to_string(), fixture(a)))
            .collect(),
    }
}

#[test]
fn every_arch_row_runs_on_the_tiny_models() {
    let mut lines = Vec::new();
    let report = run(&options(&["arch"]), &mut |l| lines.push(l.to_string())).unwrap();
    let ids: Vec<&str> = report.rows.iter().map(|r| r.workload.id.as_str()).collect();
    let expected: Vec<String> = arch::ARCHES
        .iter()
        .flat_map(|a| {
            [
                format!("arch-{a}-train-b8"),
                format!("arch-{a}-fisher-per-batch-b8"),
            ]
        })
        .collect();
    assert_eq!(ids, expected);
    for row in &report.rows {
        let w = &row.workload;
        let a = w.arch.as_deref().unwrap();
        assert!(w.id.starts_with(&format!("arch-{a}-")), "{}", w.id);
        // The fixtures have 24 positions (RoBERTa 26, two of them before the
        // first token), so T is cut to the model's length, not 128; T5's
        // positions are relative, so its rows keep 128.
        let t = if a == "t5" { 128 } else { 24 };
        assert_eq!(w.seq_len, t, "{}", w.id);
        let m = row.fute.as_ref().unwrap();
        assert!(m.seconds > 0.0 && m.seconds.is_finite(), "{}", w.id);
        // --quick: one step of 8 examples, or one Fisher batch of 8.
        assert_eq!(m.examples, 8, "{}", w.id);
        assert!(row.peer.is_none());
        assert_eq!(row.note.as_deref(), Some("no --peer given"), "{}", w.id);
        assert!(w.flops_per_example().is_none(), "MiniLM FLOPs on {}", w.id);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[10/10] arch-t5-fisher-per-batch-b8")),
        "{lines:?}"
    );
    // The JSON report names each row's architecture and reads back.
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"arch\":\"gpt2\""));
    let back: fute::bench::BenchReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rows[4].workload.arch.as_deref(), Some("gpt2"));
}

#[test]
fn only_selects_single_arch_rows() {
    let report = run(&options(&["arch-distilbert-train-b8"]), &mut |_| {}).unwrap();
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].workload.arch.as_deref(), Some("distilbert"));
}

#[test]
fn bad_arch_selections_are_refused_by_name() {
    let e = run(&options(&["arch-bert-train-b8"]), &mut |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("unknown row `arch-bert-train-b8`"),
        "{e}"
    );
    let mut o = options(&["arch"]);
    o.arch_models.push(("bert".into(), fixture("bert")));
    let e = run(&o, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("no arch rows for `bert`"), "{e}");
}

#[test]
fn token_ids_avoid_padding_and_fit_the_model() {
    for a in arch::ARCHES {
        let dir = fixture(a);
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let vocab = cfg["vocab_size"].as_u64().unwrap() as u32;
        let pad = cfg["pad_token_id"].as_u64().map(|p| p as u32);
        let ids = arch::token_ids(&dir, 5).unwrap();
        assert_eq!(ids.len(), 5);
        assert_eq!(ids, arch::token_ids(&dir, 5).unwrap(), "seeded");
        for x in &ids {
            assert_eq!(x.len(), if a == "t5" { 128 } else { 24 }, "{a}");
            assert!(x.iter().all(|&i| i < vocab && Some(i) != pad), "{a}: {x:?}");
            if a == "t5" {
                // One eos, at the end: T5's sequence head reads it.
                assert_eq!(x.iter().filter(|&&i| i == 3).count(), 1, "{x:?}");
                assert_eq!(x.last(), Some(&3));
            }
        }
    }
}
