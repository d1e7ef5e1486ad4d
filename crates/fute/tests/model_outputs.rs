//! M's outputs on U: soft labels, caching, resuming after a crash, QA shape errors.

use fute::model_outputs::{outputs_on_corpus, record_training, Output, SubjectModel};
use fute::probe::ProbeTargets;
use fute_core::corpus::{content_hash, Corpus, CorpusCard, CorpusInput, CorpusSpec, ModelInput};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::TaskModel;
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

/// A tiny model saved as a plain Hugging Face folder (no training record), told
/// its input shape as a user would with `--input`.
fn subject_reading(dir: &Path, spec: HeadSpec, input: ModelInput) -> SubjectModel {
    let opts = BuildOptions {
        seed: 3,
        ..Default::default()
    };
    let m = BertTaskModel::from_folder(tiny_bert(), spec, &opts).unwrap();
    m.save_pretrained(dir, &SaveOptions::default()).unwrap();
    let mut s = SubjectModel::open(dir).unwrap();
    if s.input.is_none() {
        s.input = Some(input);
    }
    s
}

fn subject(dir: &Path, spec: HeadSpec) -> SubjectModel {
    subject_reading(dir, spec, ModelInput::Single)
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
    let r = subject_reading(
        &tmp.path().join("r"),
        HeadSpec::Regression,
        ModelInput::Pair,
    );
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
    // A single-text row is (question, "") for a QA model (paper §2.4): no context, no answer.
    let ProbeTargets::Spans(none) = outputs_on_corpus(
        &qa,
        &corpus(3, false),
        &tmp.path().join("c"),
        32,
        8,
        |_, _| {},
    )
    .unwrap() else {
        panic!("expected spans")
    };
    assert_eq!(none, vec![None; 3]);
}

fn probs(t: ProbeTargets) -> Vec<Vec<f32>> {
    let ProbeTargets::Soft(p) = t else {
        panic!("expected soft labels")
    };
    p
}

fn run_probs(m: &SubjectModel, rows: Vec<Vec<String>>) -> Vec<Vec<f32>> {
    m.run(&rows, 32)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            Output::Probs(p) => p,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn each_model_reads_corpus_rows_in_its_own_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let cls = HeadSpec::Classification { num_labels: 3 };
    let pairs = corpus(4, true);
    let singles = corpus(4, false);

    // A single-input model given pair rows sees only their last segment.
    let single = subject_reading(&tmp.path().join("s"), cls, ModelInput::Single);
    let got =
        probs(outputs_on_corpus(&single, &pairs, &tmp.path().join("c"), 32, 8, |_, _| {}).unwrap());
    let last: Vec<Vec<String>> = pairs
        .inputs
        .iter()
        .map(|i| vec![i.segments[1].clone()])
        .collect();
    assert!(max_diff(&got, &run_probs(&single, last)) < 1e-6);
    // … which is not what the rows as they are would have given (the old behaviour).
    let raw: Vec<Vec<String>> = pairs.inputs.iter().map(|i| i.segments.clone()).collect();
    assert!(max_diff(&got, &run_probs(&single, raw)) > 1e-5);
    assert_eq!(
        single.shaped_inputs(&pairs).unwrap()[0],
        ["a dog sat on the mat 0"]
    );

    // A pair model given single rows sees (text, "").
    let pair = subject_reading(&tmp.path().join("p"), cls, ModelInput::Pair);
    let got =
        probs(outputs_on_corpus(&pair, &singles, &tmp.path().join("c"), 32, 8, |_, _| {}).unwrap());
    let padded: Vec<Vec<String>> = singles
        .inputs
        .iter()
        .map(|i| vec![i.segments[0].clone(), String::new()])
        .collect();
    assert!(max_diff(&got, &run_probs(&pair, padded)) < 1e-6);
    let raw: Vec<Vec<String>> = singles.inputs.iter().map(|i| i.segments.clone()).collect();
    assert!(max_diff(&got, &run_probs(&pair, raw)) > 1e-5);
    // Pair rows reach a pair model as they are.
    let got =
        probs(outputs_on_corpus(&pair, &pairs, &tmp.path().join("c"), 32, 8, |_, _| {}).unwrap());
    let raw: Vec<Vec<String>> = pairs.inputs.iter().map(|i| i.segments.clone()).collect();
    assert!(max_diff(&got, &run_probs(&pair, raw)) < 1e-6);

    // A plain folder whose shape nobody gave cannot label U: the error says how to fix it.
    let unknown = SubjectModel::open(&tmp.path().join("p")).unwrap();
    assert_eq!(unknown.input, None);
    let err = outputs_on_corpus(&unknown, &pairs, &tmp.path().join("c"), 32, 8, |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--input single or --input pair"), "{err}");
}

#[test]
fn a_training_record_gives_the_shape_and_the_data_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    subject(&dir, HeadSpec::Classification { num_labels: 3 });
    let schema = fute_core::dataset::TaskSchema::Classification {
        inputs: fute_core::dataset::InputShape::Pair,
        labels: vec!["a".into(), "b".into(), "c".into()],
    };
    record_training(&dir, "toy-nli", &schema, 1234).unwrap();
    let m = SubjectModel::open(&dir).unwrap();
    assert_eq!(m.input, Some(ModelInput::Pair));
    assert_eq!(m.train_examples, Some(1234));
    // transformers' keys survive; the record sits beside them.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["fute_training"]["dataset"], "toy-nli");
    assert!(cfg["id2label"].is_object());
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
