//! Corpus U: determinism, hash stability, caps, exclusion, shapes; real sources when fetched.

use fute_core::corpus::{
    build, content_hash, Corpus, CorpusInput, CorpusShape, CorpusSpec, TextSource, TEXT_SOURCES,
};
use fute_core::dataset::{Dataset, DatasetCard, Example, Input, InputShape, Target, TaskSchema};
use fute_core::Error;

fn dataset(name: &str, texts: &[&str]) -> Dataset {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: vec!["a".into()],
    };
    let examples = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Example {
            id: i.to_string(),
            input: Input::Single(t.to_string()),
            target: Target::Label(0),
            fixed_split: None,
        })
        .collect();
    Dataset {
        card: DatasetCard::new(name, schema),
        examples,
    }
}

fn loader(name: &str) -> Result<Dataset, Error> {
    let texts: Vec<String> = (0..50)
        .map(|i| format!("{name} sentence number {i} is long enough"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    match name {
        "alpha" | "beta" => Ok(dataset(name, &refs)),
        "overlap" => Ok(dataset(name, &["alpha sentence number 3 is long enough"])),
        other => Err(Error::Invalid(format!("unknown dataset `{other}`"))),
    }
}

fn spec() -> CorpusSpec {
    CorpusSpec {
        sources: vec![],
        datasets: vec!["alpha".into(), "beta".into()],
        per_source: 10,
        ..CorpusSpec::default()
    }
}

#[test]
fn same_spec_same_corpus_and_hash() {
    let root = tempfile::tempdir().unwrap();
    let a = build("u", &spec(), root.path(), loader).unwrap();
    let b = build("u", &spec(), root.path(), loader).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.inputs.len(), 20);
    assert_eq!(a.card.per_source["dataset:alpha"], 10);
    // Pinned: the hash of this spec must not drift between versions.
    assert_eq!(a.card.hash, content_hash(&a.inputs));
    assert_eq!(
        a.card.hash,
        "44bdc5177e977612ae51587a050b92dd8c253f6c2bc249d41006ca2b5bf7cb28"
    );
}

#[test]
fn seed_changes_the_sample() {
    let root = tempfile::tempdir().unwrap();
    let a = build("u", &spec(), root.path(), loader).unwrap();
    let b = build("u", &CorpusSpec { seed: 1, ..spec() }, root.path(), loader).unwrap();
    assert_ne!(a.card.hash, b.card.hash);
}

#[test]
fn hash_depends_on_segments_not_sources() {
    let x = vec![CorpusInput {
        segments: vec!["one text here".into()],
        source: "s1".into(),
    }];
    let y = vec![CorpusInput {
        segments: vec!["one text here".into()],
        source: "s2".into(),
    }];
    assert_eq!(content_hash(&x), content_hash(&y));
    let z = vec![CorpusInput {
        segments: vec!["one text".into(), "here".into()],
        source: "s1".into(),
    }];
    assert_ne!(content_hash(&x), content_hash(&z));
}

#[test]
fn excluded_datasets_stay_out() {
    let root = tempfile::tempdir().unwrap();
    let s = CorpusSpec {
        per_source: 50,
        exclude: vec!["beta".into(), "overlap".into()],
        ..spec()
    };
    let c = build("u", &s, root.path(), loader).unwrap();
    assert!(c.inputs.iter().all(|i| i.source == "dataset:alpha"));
    assert!(!c
        .inputs
        .iter()
        .any(|i| i.segments[0] == "alpha sentence number 3 is long enough"));
    assert_eq!(c.inputs.len(), 49);
}

#[test]
fn pair_shape_cuts_single_texts_in_halves() {
    let root = tempfile::tempdir().unwrap();
    let c = build(
        "u",
        &CorpusSpec {
            shape: CorpusShape::Pair,
            ..spec()
        },
        root.path(),
        loader,
    )
    .unwrap();
    assert!(c.inputs.iter().all(|i| i.segments.len() == 2));
    let i = &c.inputs[0];
    assert_eq!(
        format!("{} {}", i.segments[0], i.segments[1])
            .split(' ')
            .count(),
        7
    );
}

#[test]
fn max_total_and_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let c = build(
        "u",
        &CorpusSpec {
            max_total: Some(7),
            ..spec()
        },
        root.path(),
        loader,
    )
    .unwrap();
    assert_eq!(c.inputs.len(), 7);
    assert_eq!(c.card.per_source.values().sum::<usize>(), 7);
    let dir = root.path().join("corpora/u");
    c.save_dir(&dir).unwrap();
    assert_eq!(Corpus::load_dir(&dir).unwrap(), c);
    // An edited file no longer matches its hash.
    let f = dir.join("inputs.jsonl");
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replacen("sentence", "phrase", 1);
    std::fs::write(&f, text).unwrap();
    let err = Corpus::load_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("differs from the card's") && err.contains("inputs.jsonl"),
        "{err}"
    );
}

#[test]
fn empty_corpus_and_unknown_names_are_errors() {
    let root = tempfile::tempdir().unwrap();
    let none = CorpusSpec {
        sources: vec![],
        datasets: vec![],
        ..spec()
    };
    assert!(build("u", &none, root.path(), loader)
        .unwrap_err()
        .to_string()
        .contains("would be empty"));
    let bad = CorpusSpec {
        sources: vec!["nope".into()],
        ..spec()
    };
    assert!(build("u", &bad, root.path(), loader)
        .unwrap_err()
        .to_string()
        .contains("unknown text source `nope`"));
    let missing = CorpusSpec {
        sources: vec!["fortunes".into()],
        ..spec()
    };
    let err = build("u", &missing, root.path(), loader)
        .unwrap_err()
        .to_string();
    assert!(err.contains("run `fute assets fetch fortunes`"), "{err}");
}

/// Real tier: every unlabelled source reads real text.
#[test]
fn real_text_sources_yield_text() {
    for s in TEXT_SOURCES {
        let Some(dir) = fute_core::testing::real_asset(s.asset) else {
            continue;
        };
        let texts = TextSource::find(s.name)
            .unwrap()
            .read(dir.parent().unwrap())
            .unwrap();
        println!(
            "{}: {} texts, e.g. {:?}",
            s.name,
            texts.len(),
            &texts[texts.len() / 2]
        );
        assert!(texts.len() > 1000, "{} has only {}", s.name, texts.len());
        assert!(texts
            .iter()
            .all(|t| (20..=600).contains(&t.chars().count())));
    }
}
