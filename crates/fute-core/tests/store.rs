//! The embedding store: round trips, determinism, f16, streaming, spaces, ranking.

use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{
    EmbeddingKind, EmbeddingMeta, ListFilter, Space, Store, StoredDType, Subject, SubjectKind,
};
use std::collections::BTreeMap;

fn meta(name: &str, kind: EmbeddingKind, method: &str, lr: f64) -> EmbeddingMeta {
    EmbeddingMeta {
        subject: Subject {
            kind: SubjectKind::Dataset,
            name: name.into(),
            hash: format!("hash-{name}"),
        },
        kind,
        space: Space {
            surrogate: "surrogate-abc".into(),
            method: method.into(),
            params: BTreeMap::from([("lr".into(), serde_json::json!(lr))]),
            corpus: (kind == EmbeddingKind::Mte).then(|| "corpus-1".into()),
        },
        seed: 42,
        wall_seconds: 1.5,
        versions: BTreeMap::from([("fute".into(), "test".into())]),
        extra: BTreeMap::new(),
    }
}

fn comps(a: &[f32], b: &[f32]) -> Vec<(String, Vec<f32>)> {
    vec![
        ("layer.0".into(), a.to_vec()),
        ("layer.1".into(), b.to_vec()),
    ]
}

#[test]
fn put_get_round_trip_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m = meta("imdb", EmbeddingKind::Dte, "fim", 2e-5);
    let rec = store
        .put(&m, &comps(&[1.0, 2.0], &[3.0, 4.0, 5.0]), StoredDType::F32)
        .unwrap();
    assert_eq!(rec.id, m.id());
    assert_eq!(rec.dim, 5);
    assert_eq!(rec.meta, m);
    // Reopening sees the same record; a unique prefix finds it.
    let store = Store::open(dir.path()).unwrap();
    let back = store.get(&rec.id[..6]).unwrap();
    assert_eq!(back.meta, m);
    assert_eq!(
        store.read(&back).unwrap(),
        comps(&[1.0, 2.0], &[3.0, 4.0, 5.0])
    );
    assert!(store.contains(&rec.id).unwrap());
    // The vector file carries the provenance too.
    let vf = store.vector_file(&back).unwrap();
    assert_eq!(vf.metadata()["fute.id"], rec.id);
}

#[test]
fn same_request_same_id_other_seed_other_id() {
    let a = meta("imdb", EmbeddingKind::Dte, "fim", 2e-5);
    let mut b = a.clone();
    b.wall_seconds = 99.0;
    assert_eq!(a.id(), b.id(), "timings are not identity");
    b.seed = 7;
    assert_ne!(a.id(), b.id());
}

#[test]
fn f16_storage_is_close_and_half_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let values: Vec<f32> = (0..10_000).map(|i| ((i as f32) * 0.37).sin()).collect();
    let a = store
        .put(
            &meta("a", EmbeddingKind::Dte, "fim", 1.0),
            &[("all".into(), values.clone())],
            StoredDType::F32,
        )
        .unwrap();
    let b = store
        .put(
            &meta("b", EmbeddingKind::Dte, "fim", 1.0),
            &[("all".into(), values.clone())],
            StoredDType::F16,
        )
        .unwrap();
    let back = &store.read(&b).unwrap()[0].1;
    assert!(values
        .iter()
        .zip(back)
        .all(|(x, y)| (x - y).abs() <= 1e-3 * x.abs().max(1e-2)));
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&b.file) * 10 < size(&a.file) * 6);
    assert!((store.similarity(&a, &b).unwrap() - 1.0).abs() < 1e-6);
}

#[test]
fn streaming_similarity_matches_in_memory_on_a_large_vector() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let n = 1_500_000; // several chunks
    let x: Vec<f32> = (0..n).map(|i| ((i % 977) as f32 - 488.0) / 500.0).collect();
    let y: Vec<f32> = (0..n).map(|i| ((i % 613) as f32 - 300.0) / 400.0).collect();
    let a = store
        .put(
            &meta("x", EmbeddingKind::Dte, "fim", 1.0),
            &[("w".into(), x.clone())],
            StoredDType::F32,
        )
        .unwrap();
    let b = store
        .put(
            &meta("y", EmbeddingKind::Dte, "fim", 1.0),
            &[("w".into(), y.clone())],
            StoredDType::F32,
        )
        .unwrap();
    let dot: f64 = x.iter().zip(&y).map(|(p, q)| *p as f64 * *q as f64).sum();
    let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
    let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
    assert!((store.similarity(&a, &b).unwrap() - dot / (nx * ny)).abs() < 1e-6);
}

#[test]
fn comparing_across_spaces_is_an_error_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = store
        .put(
            &meta("a", EmbeddingKind::Dte, "fim", 2e-5),
            &comps(&[1.0], &[1.0]),
            StoredDType::F32,
        )
        .unwrap();
    let b = store
        .put(
            &meta("b", EmbeddingKind::Dte, "fim", 1e-3),
            &comps(&[1.0], &[1.0]),
            StoredDType::F32,
        )
        .unwrap();
    let err = store.similarity(&a, &b).unwrap_err().to_string();
    assert!(
        err.contains("different spaces") && err.contains("lr: 0.00002 vs 0.001"),
        "{err}"
    );
    let c = store
        .put(
            &meta("c", EmbeddingKind::Dte, "prefix", 2e-5),
            &comps(&[1.0], &[1.0]),
            StoredDType::F32,
        )
        .unwrap();
    assert!(store
        .similarity(&a, &c)
        .unwrap_err()
        .to_string()
        .contains("different methods (`fim` vs `prefix`)"));
    // A DTE (no corpus) and an MTE (corpus-1) of the same space are comparable.
    let m = store
        .put(
            &meta("m", EmbeddingKind::Mte, "fim", 2e-5),
            &comps(&[1.0], &[2.0]),
            StoredDType::F32,
        )
        .unwrap();
    assert!(store.similarity(&a, &m).is_ok());
}

#[test]
fn bad_vectors_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m = meta("nan", EmbeddingKind::Dte, "fim", 1.0);
    let err = store
        .put(&m, &comps(&[1.0, f32::NAN], &[0.0]), StoredDType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
    assert!(!store.contains(&m.id()).unwrap());
    assert!(store.list(&ListFilter::default()).unwrap().is_empty());
    assert!(store.put(&m, &[], StoredDType::F32).is_err());
}

#[test]
fn list_filters_and_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = store
        .put(
            &meta("target", EmbeddingKind::Dte, "fim", 1.0),
            &comps(&[1.0, 0.0], &[1.0, 0.0, 0.0]),
            StoredDType::F32,
        )
        .unwrap();
    let near = store
        .put(
            &meta("near", EmbeddingKind::Mte, "fim", 1.0),
            &comps(&[0.9, 0.1], &[1.0, 0.1, 0.0]),
            StoredDType::F32,
        )
        .unwrap();
    let mid = store
        .put(
            &meta("mid", EmbeddingKind::Mte, "fim", 1.0),
            &comps(&[0.5, 0.5], &[0.2, 0.9, 0.0]),
            StoredDType::F32,
        )
        .unwrap();
    let far = store
        .put(
            &meta("far", EmbeddingKind::Mte, "fim", 1.0),
            &comps(&[-1.0, 0.2], &[0.0, 0.0, 1.0]),
            StoredDType::F32,
        )
        .unwrap();
    let mtes = store
        .list(&ListFilter {
            kind: Some(EmbeddingKind::Mte),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(mtes.len(), 3);
    for opts in [
        RankOptions {
            centre: false,
            fuse_components: false,
        },
        RankOptions {
            centre: true,
            fuse_components: false,
        },
        RankOptions {
            centre: false,
            fuse_components: true,
        },
    ] {
        let r = store.rank(&t, &mtes, opts).unwrap();
        let names: Vec<&str> = r.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["near", "mid", "far"], "{opts:?}");
    }
    let _ = (near, mid, far);
    // The target itself is never its own candidate.
    let all = store.list(&ListFilter::default()).unwrap();
    assert_eq!(
        store
            .rank(
                &t,
                &all,
                RankOptions {
                    centre: false,
                    fuse_components: false
                }
            )
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn unknown_and_ambiguous_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store
        .get("abc123")
        .unwrap_err()
        .to_string()
        .contains("no embedding `abc123`"));
    assert!(store
        .get("zz")
        .unwrap_err()
        .to_string()
        .contains("not an embedding id"));
}

#[test]
fn export_formats_hold_the_same_values() {
    use fute_core::embedding::export::{export, ExportFormat};
    use fute_core::embedding::vectors::VectorFile;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = comps(&[1.5, -2.0], &[0.25, 3.0, 4.0]);
    let rec = store
        .put(
            &meta("e", EmbeddingKind::Dte, "fim", 1.0),
            &c,
            StoredDType::F32,
        )
        .unwrap();
    // npy: NumPy v1 header, data 64-byte aligned, float32 values in component order.
    let npy = dir.path().join("e.npy");
    export(&store, &rec, ExportFormat::Npy, &npy).unwrap();
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'shape': (5,)"),
        "{header}"
    );
    let vals: Vec<f32> = bytes[10 + hlen..]
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(vals, [1.5, -2.0, 0.25, 3.0, 4.0]);
    // safetensors: one tensor per component, provenance in the metadata.
    let st = dir.path().join("e.safetensors");
    export(&store, &rec, ExportFormat::Safetensors, &st).unwrap();
    let vf = VectorFile::open(&st).unwrap();
    assert_eq!(vf.read_all().unwrap(), c);
    assert!(vf.metadata()["fute.meta"].contains("\"method\":\"fim\""));
    // json
    let js = dir.path().join("e.json");
    export(&store, &rec, ExportFormat::Json, &js).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&js).unwrap()).unwrap();
    assert_eq!(
        v["components"]["layer.1"],
        serde_json::json!([0.25, 3.0, 4.0])
    );
    assert_eq!(v["id"], rec.id);
}

#[test]
fn datasize_and_curvegrad_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let put = |name: &str, examples: u64, slopes: &[f32]| {
        let mut m = meta(name, EmbeddingKind::Dte, "curvegrad", 1.0);
        m.extra
            .insert("dataset_examples".into(), serde_json::json!(examples));
        let comps: Vec<(String, Vec<f32>)> = slopes
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("s{i}"), vec![*s]))
            .collect();
        store.put(&m, &comps, StoredDType::F32).unwrap()
    };
    let t = put("target", 10, &[0.0, 0.0, 0.0]);
    let big = put("big", 5000, &[-0.3, -0.2, -0.1]);
    let small = put("small", 50, &[-0.1, -0.05, -0.01]);
    let mid = put("mid", 500, &[-0.2, -0.1, -0.3]);
    let cands = [big, small, mid];
    let by_size: Vec<String> = store
        .rank_by_datasize(&t, &cands)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(by_size, ["big", "mid", "small"]);
    // Steepest fall first: small is last on every component (its slopes are the
    // flattest); big beats mid on two of three (−0.3 < −0.2, −0.2 < −0.1).
    let by_curve = store.rank_by_component_values(&t, &cands).unwrap();
    let names: Vec<&str> = by_curve.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["big", "mid", "small"]);
    // big: ranks 1, 1, 2 → 1/61 + 1/61 + 1/62.
    assert!((by_curve[0].score - (2.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-12);
    // small: last everywhere → 3/63.
    assert!((by_curve[2].score - 3.0 / 63.0).abs() < 1e-12);
}
