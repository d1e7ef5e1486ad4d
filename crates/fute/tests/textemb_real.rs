//! Real tier: TextEmb on the real MiniLM surrogate.

use fute::embed::{embed, EmbedRequest};
use fute::methods::Method;
use fute::probe::{ProbeHead, ProbeSet, ProbeTargets};
use fute::surrogate::Surrogate;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
use std::collections::BTreeMap;

fn probe(texts: &[&str]) -> ProbeSet {
    ProbeSet {
        inputs: texts.iter().map(|t| vec![t.to_string()]).collect(),
        targets: ProbeTargets::Labels(vec![0; texts.len()]),
        head: ProbeHead::Classification(2),
    }
}

fn request<'a>(p: &'a ProbeSet, m: &'a Method, kind: EmbeddingKind) -> EmbedRequest<'a> {
    EmbedRequest {
        subject: Subject {
            kind: SubjectKind::Dataset,
            name: "t".into(),
            hash: p.hash(),
        },
        kind,
        probe: p,
        method: m,
        seed: 1,
        corpus: None,
        dtype: StoredDType::F32,
        extra: BTreeMap::new(),
    }
}

#[test]
fn textemb_is_mask_aware_deterministic_and_cached() {
    let Some(dir) = fute_core::testing::real_asset("minilm") else {
        return;
    };
    let s = Surrogate::open(&dir).unwrap();
    let short = "A fine film.";
    let long = "An overlong, tedious film whose plot meanders for three hours before ending nowhere at all.";
    // Batched with a longer input (so padded) vs alone: the same per-example mean.
    let m1 = Method::TextEmb {
        max_len: 64,
        batch: 1,
    };
    let m2 = Method::TextEmb {
        max_len: 64,
        batch: 2,
    };
    let alone = m1
        .run(&s, &probe(&[short, long]), 0, &mut |_| {})
        .unwrap()
        .components;
    let batched = m2
        .run(&s, &probe(&[short, long]), 0, &mut |_| {})
        .unwrap()
        .components;
    let (a, b) = (&alone[0].1, &batched[0].1);
    assert_eq!(a.len(), 384);
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "padding changed the mean by {max}");

    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let p = probe(&[short, long]);
    let first = embed(
        &store,
        &s,
        request(&p, &m1, EmbeddingKind::Dte),
        &mut |_| {},
    )
    .unwrap();
    let again = embed(
        &store,
        &s,
        request(&p, &m1, EmbeddingKind::Dte),
        &mut |_| {},
    )
    .unwrap();
    assert!(!first.cached && again.cached);
    assert_eq!(first.record.id, again.record.id);
    // Recomputing from scratch gives bit-identical values.
    let fresh = m1.run(&s, &p, 1, &mut |_| {}).unwrap().components;
    assert_eq!(store.read(&first.record).unwrap(), fresh);
    // A target-blind method refuses MTEs.
    let err = embed(
        &store,
        &s,
        request(&p, &m1, EmbeddingKind::Mte),
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("ignores targets"), "{err}");
}

#[test]
fn surrogate_folder_missing_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let err = Surrogate::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("lacks model.safetensors"), "{err}");
}
