//! Rankings compare only comparable things (review F6–F8): one corpus U, the
//! target's own subject left out, one seed (or seeds paired and averaged), one
//! schedule, and DataSize from the data a model was fine-tuned on.

use fute_core::embedding::candidates::CandidateRules;
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{
    EmbeddingKind, EmbeddingMeta, EmbeddingRecord, Space, Store, StoredDType, Subject, SubjectKind,
};
use std::collections::BTreeMap;

const RAW: RankOptions = RankOptions {
    centre: false,
    fuse_components: false,
};

struct Spec<'a> {
    name: &'a str,
    kind: EmbeddingKind,
    corpus: Option<&'a str>,
    seed: u64,
    lr: f64,
}

fn spec(name: &str, kind: EmbeddingKind) -> Spec<'_> {
    Spec {
        name,
        kind,
        corpus: (kind == EmbeddingKind::Mte).then_some("corpus-1"),
        seed: 42,
        lr: 1e-3,
    }
}

fn seeded(name: &str, kind: EmbeddingKind, seed: u64) -> Spec<'_> {
    let mut s = spec(name, kind);
    s.seed = seed;
    s
}

fn meta(s: &Spec<'_>) -> EmbeddingMeta {
    let subject_kind = match s.kind {
        EmbeddingKind::Dte => SubjectKind::Dataset,
        EmbeddingKind::Mte => SubjectKind::Model,
    };
    EmbeddingMeta {
        subject: Subject {
            kind: subject_kind,
            name: s.name.into(),
            hash: format!("hash-{}", s.name),
        },
        kind: s.kind,
        space: Space {
            surrogate: "sur".into(),
            method: "prefix".into(),
            params: BTreeMap::from([
                ("prefix_len".into(), serde_json::json!(16)),
                ("train_lr".into(), serde_json::json!(s.lr)),
                ("train_epochs".into(), serde_json::json!(1)),
            ]),
            corpus: s.corpus.map(str::to_owned),
        },
        seed: s.seed,
        wall_seconds: 0.0,
        versions: BTreeMap::new(),
        extra: BTreeMap::new(),
    }
}

fn put(store: &Store, s: &Spec<'_>, v: &[f32]) -> EmbeddingRecord {
    store
        .put(&meta(s), &[("all".into(), v.to_vec())], StoredDType::F32)
        .unwrap()
}

fn names(
    store: &Store,
    t: &EmbeddingRecord,
    c: &[EmbeddingRecord],
    r: &CandidateRules,
) -> Vec<String> {
    let sel = store.select(t, c, r).unwrap();
    store
        .rank_selection(&sel, RAW)
        .unwrap()
        .into_iter()
        .map(|x| x.name)
        .collect()
}

#[test]
fn mtes_on_different_corpora_are_refused_or_filtered_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = put(&store, &spec("imdb", EmbeddingKind::Dte), &[1.0, 0.0]);
    let a = put(&store, &spec("model-a", EmbeddingKind::Mte), &[1.0, 0.1]);
    let mut other_u = spec("model-b", EmbeddingKind::Mte);
    other_u.corpus = Some("corpus-2");
    let b = put(&store, &other_u, &[0.0, 1.0]);
    let cands = [a.clone(), b.clone()];
    // A DTE target names no corpus: two corpora among the candidates cannot be chosen between.
    let err = store
        .select(&t, &cands, &CandidateRules::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 different corpora U")
            && err.contains("corpus-1")
            && err.contains("corpus-2")
            && err.contains("--corpus"),
        "{err}"
    );
    // Choosing one keeps its MTEs and says what was left out.
    let rules = CandidateRules {
        corpus: Some("corpus-2".into()),
        ..Default::default()
    };
    let sel = store.select(&t, &cands, &rules).unwrap();
    assert_eq!(sel.groups[0].candidates.len(), 1);
    assert_eq!(sel.groups[0].candidates[0].id, b.id);
    assert!(
        sel.notes
            .iter()
            .any(|n| n.contains("left out 1 MTE(s) made on other corpora")),
        "{:?}",
        sel.notes
    );
    // An MTE target fixes U itself.
    let mut mt = spec("model-t", EmbeddingKind::Mte);
    mt.corpus = Some("corpus-2");
    let mt = put(&store, &mt, &[0.5, 0.5]);
    let sel = store
        .select(&mt, &cands, &CandidateRules::default())
        .unwrap();
    assert_eq!(sel.groups[0].candidates.len(), 1);
    assert_eq!(sel.groups[0].candidates[0].id, b.id);
    // `similarity` of MTEs on different corpora is refused too.
    let err = store.similarity(&a, &b).unwrap_err().to_string();
    assert!(err.contains("different corpora U"), "{err}");
}

#[test]
fn the_targets_own_dataset_is_left_out_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = put(&store, &spec("imdb", EmbeddingKind::Dte), &[1.0, 0.0]);
    // The same dataset embedded from another --limit: another probe hash, same name.
    let mut other_limit = meta(&spec("imdb", EmbeddingKind::Dte));
    other_limit.subject.hash = "hash-imdb-limit-50".into();
    let twin = store
        .put(
            &other_limit,
            &[("all".into(), vec![1.0, 0.01])],
            StoredDType::F32,
        )
        .unwrap();
    let rt = put(
        &store,
        &spec("rotten-tomatoes", EmbeddingKind::Dte),
        &[0.8, 0.6],
    );
    let m = put(&store, &spec("model-a", EmbeddingKind::Mte), &[0.0, 1.0]);
    let cands = [twin, rt, m];
    assert_eq!(
        names(&store, &t, &cands, &CandidateRules::default()),
        ["rotten-tomatoes", "model-a"]
    );
    let sel = store
        .select(&t, &cands, &CandidateRules::default())
        .unwrap();
    assert!(
        sel.notes[0].contains("own subject `imdb`"),
        "{:?}",
        sel.notes
    );
    let keep = CandidateRules {
        include_self: true,
        ..Default::default()
    };
    assert_eq!(
        names(&store, &t, &cands, &keep),
        ["imdb", "rotten-tomatoes", "model-a"]
    );
}

#[test]
fn mixed_seeds_are_refused_naming_them_or_paired_and_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t42 = put(&store, &seeded("imdb", EmbeddingKind::Dte, 42), &[1.0, 0.0]);
    let t7 = put(&store, &seeded("imdb", EmbeddingKind::Dte, 7), &[0.0, 1.0]);
    // Model a: cos 1 with the target of its own seed each time; model b: cos 0.6 and 0.8.
    let a42 = put(
        &store,
        &seeded("model-a", EmbeddingKind::Mte, 42),
        &[2.0, 0.0],
    );
    let a7 = put(
        &store,
        &seeded("model-a", EmbeddingKind::Mte, 7),
        &[0.0, 3.0],
    );
    let b42 = put(
        &store,
        &seeded("model-b", EmbeddingKind::Mte, 42),
        &[0.6, 0.8],
    );
    let b7 = put(
        &store,
        &seeded("model-b", EmbeddingKind::Mte, 7),
        &[0.6, 0.8],
    );
    let cands = [a42, a7, b42, b7.clone(), t7.clone()];
    let err = store
        .select(&t42, &cands, &CandidateRules::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("seeds 7, 42") && err.contains("seed 42") && err.contains("--average-seeds"),
        "{err}"
    );
    let avg = CandidateRules {
        average_seeds: true,
        ..Default::default()
    };
    let sel = store.select(&t42, &cands, &avg).unwrap();
    assert_eq!(sel.groups.len(), 2);
    assert_eq!(
        sel.groups.iter().find(|g| g.seed == 7).unwrap().target.id,
        t7.id
    );
    let r = store.rank_selection(&sel, RAW).unwrap();
    assert_eq!(r.len(), 2, "one row per subject");
    assert_eq!(r[0].name, "model-a");
    assert!((r[0].score - 1.0).abs() < 1e-12);
    // b: seed 42 pairs (0.6,0.8)·(1,0) = 0.6, seed 7 pairs it with (0,1): 0.8; mean 0.7.
    assert_eq!(r[1].name, "model-b");
    // (0.6 and 0.8 are stored as f32.)
    assert!((r[1].score - 0.7).abs() < 1e-7, "{}", r[1].score);
    assert_eq!(r[1].seeds, [7, 42]);
    // A seed the target lacks is left out with a note that says how to add it.
    let c3 = put(
        &store,
        &seeded("model-c", EmbeddingKind::Mte, 3),
        &[1.0, 1.0],
    );
    let sel = store.select(&t42, &[b7, c3], &avg).unwrap();
    assert_eq!(sel.groups.len(), 1);
    assert!(
        sel.notes
            .iter()
            .any(|n| n.contains("seed 3") && n.contains("--seed 3")),
        "{:?}",
        sel.notes
    );
}

#[test]
fn one_space_holds_both_schedules_but_candidates_share_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // FUTE trains a prefix DTE at lr 1e-2 and MTEs at 1e-3: one space, comparable.
    let mut d = spec("imdb", EmbeddingKind::Dte);
    d.lr = 1e-2;
    let t = put(&store, &d, &[1.0, 0.0]);
    let m1 = put(&store, &spec("model-a", EmbeddingKind::Mte), &[1.0, 0.5]);
    assert_eq!(t.meta.space.key(), m1.meta.space.key());
    assert_ne!(
        t.id,
        meta(&spec("imdb", EmbeddingKind::Dte)).id(),
        "the schedule stays in the id"
    );
    assert!(store.similarity(&t, &m1).is_ok());
    // Two MTE schedules among the candidates are refused, naming both.
    let mut fast = spec("model-b", EmbeddingKind::Mte);
    fast.lr = 5e-2;
    let m2 = put(&store, &fast, &[0.0, 1.0]);
    let err = store
        .select(&t, &[m1, m2], &CandidateRules::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("different schedules") && err.contains("train_lr=0.05"),
        "{err}"
    );
}

#[test]
fn datasize_is_the_models_training_data_and_unknown_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = put(&store, &spec("imdb", EmbeddingKind::Dte), &[1.0, 0.0]);
    let with_size = |name: &str, n: Option<u64>, probe: u64| {
        let mut m = meta(&spec(name, EmbeddingKind::Mte));
        // Every MTE embeds the same U: the old fallback gave them all this size.
        m.extra
            .insert("probe_examples".into(), serde_json::json!(probe));
        if let Some(n) = n {
            m.extra
                .insert("train_examples".into(), serde_json::json!(n));
        }
        store
            .put(&m, &[("all".into(), vec![1.0, 1.0])], StoredDType::F32)
            .unwrap()
    };
    let small = with_size("small-model", Some(300), 100);
    let big = with_size("big-model", Some(25_000), 100);
    let r = store.rank_by_datasize(&t, &[small.clone(), big]).unwrap();
    let got: Vec<(&str, f64)> = r.iter().map(|x| (x.name.as_str(), x.score)).collect();
    assert_eq!(got, [("big-model", 25_000.0), ("small-model", 300.0)]);
    let unknown = with_size("user-model", None, 100);
    let err = store
        .rank_by_datasize(&t, &[small, unknown])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("user-model") && err.contains("--data-size N"),
        "{err}"
    );
    // A size given later is merged into the stored provenance.
    let mut late = meta(&spec("user-model", EmbeddingKind::Mte));
    late.extra
        .insert("train_examples".into(), serde_json::json!(50));
    let rec = store.merge_extra(&late.id(), &late.extra).unwrap();
    assert_eq!(rec.meta.extra["train_examples"], 50);
    assert_eq!(rec.meta.extra["probe_examples"], 100);
}

#[test]
fn stale_space_keys_are_refreshed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let rec = {
        let store = Store::open(dir.path()).unwrap();
        put(&store, &spec("imdb", EmbeddingKind::Dte), &[1.0])
    };
    // A row written when the schedule was part of the key.
    rusqlite::Connection::open(dir.path().join("store.sqlite"))
        .unwrap()
        .execute(
            "UPDATE embeddings SET space_key = 'stale' WHERE id = ?1",
            [&rec.id],
        )
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let listed = store
        .list(&fute_core::embedding::ListFilter {
            space_key: Some(rec.meta.space.key()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
}
