//! M's outputs on U: soft labels, caching, resuming after a crash, QA shape errors.

use fute::model_outputs::{outputs_on_corpus, SubjectModel};
use fute::probe::ProbeTargets;
use fute_core::corpus::{content_hash, Corpus, CorpusCard, CorpusInput, CorpusSpec};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn subject(dir: &Path, spec: HeadSpec) -> SubjectModel {
    let opts = BuildOptions {
        seed: 3,
        ..Default::default()
    };
    let m = BertTaskModel::from_folder(tiny_bert(), spec, &opts).unwrap();
    m.save_pretrained(dir, &SaveOptions::default()).unwrap();
    SubjectModel::open(dir).unwrap()
}

fn corpus(n: usize, pairs: bool) -> Corpus {
    let inputs: Vec<CorpusInput> = (0..n)
        .map(|i| CorpusInput {
            segments: if pairs {
                vec![format!("the cat {i}"), format!("a dog sat on the mat {i}")]
            } else {
                vec![format!("the cat sat on the mat number {i}")]
            },
            source: "test".into(),
        })
        .collect();
    let card = CorpusCard {
        name: "u".into(),
        hash: content_hash(&inputs),
        spec: CorpusSpec::default(),
        per_source: BTreeMap::new(),
        size: n,
    };
    Corpus { card, inputs }
}

#[test]
fn classifier_gives_soft_labels_cached_and_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let m = subject(
        &tmp.path().join("m"),
        HeadSpec::Classification { num_labels: 3 },
    );
    let u = corpus(23, false);
    let cache = tmp.path().join("cache");
    let full = outputs_on_corpus(&m, &u, &cache, 32, 5, |_, _| {}).unwrap();
    let ProbeTargets::Soft(probs) = &full else {
        panic!("expected soft labels")
    };
    assert_eq!(probs.len(), 23);
    assert!(probs
        .iter()
        .all(|p| p.len() == 3 && (p.iter().sum::<f32>() - 1.0).abs() < 1e-5));
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // A rerun reads the cache: no batch is computed.
    let mut calls = Vec::new();
    let again = outputs_on_corpus(&m, &u, &cache, 32, 5, |done, _| calls.push(done)).unwrap();
    assert_eq!(again, full);
    assert_eq!(calls, [23]);

    // A crash after 2 batches, mid-way through writing the third line: resume computes the rest only.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = text.lines().take(10).collect();
    let torn = &text.lines().nth(10).unwrap()[..7];
    lines.push(torn);
    std::fs::write(&file, lines[..10].join("\n") + "\n" + torn).unwrap();
    let mut seen = Vec::new();
    let resumed = outputs_on_corpus(&m, &u, &cache, 32, 5, |done, _| seen.push(done)).unwrap();
    assert_eq!(seen.first(), Some(&10));
    assert_eq!(resumed, full);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "the cache is whole again"
    );
}

#[test]
fn regression_and_qa_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let r = subject(&tmp.path().join("r"), HeadSpec::Regression);
    let out = outputs_on_corpus(
        &r,
        &corpus(4, true),
        &tmp.path().join("c"),
        32,
        8,
        |_, _| {},
    )
    .unwrap();
    assert!(matches!(out, ProbeTargets::Values(v) if v.len() == 4));

    let qa = subject(&tmp.path().join("qa"), HeadSpec::QuestionAnswering);
    let u = corpus(6, true);
    let ProbeTargets::Spans(spans) =
        outputs_on_corpus(&qa, &u, &tmp.path().join("c"), 32, 8, |_, _| {}).unwrap()
    else {
        panic!("expected spans")
    };
    // Every predicted span lies inside its context, in characters.
    for (s, i) in spans.iter().zip(&u.inputs) {
        if let Some((a, b)) = s {
            assert!(a < b && *b <= i.segments[1].chars().count());
        }
    }
    let err = outputs_on_corpus(
        &qa,
        &corpus(3, false),
        &tmp.path().join("c"),
        32,
        8,
        |_, _| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("--shape pair"), "{err}");
}

#[test]
fn a_folder_without_a_head_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The pre-trained tiny BERT declares no task head.
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_bert().join(f), tmp.path().join(f)).unwrap();
    }
    let err = SubjectModel::open(tmp.path()).err().unwrap().to_string();
    assert!(err.contains("cannot use") && err.contains("head"), "{err}");
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    assert!(SubjectModel::open(tmp.path())
        .err()
        .unwrap()
        .to_string()
        .contains("lacks tokenizer.json"));
}
