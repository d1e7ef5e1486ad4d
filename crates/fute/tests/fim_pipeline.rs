//! The fim method end to end on the tiny test BERT: DTE from gold labels, MTE from a
//! model's soft labels on a corpus, determinism, seeds, and the store.

use fute::embed::{embed, EmbedRequest};
use fute::methods::fim::{FimComponents, FimConfig};
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::model_outputs::{outputs_on_corpus, SubjectModel};
use fute::probe::{ProbeHead, ProbeSet, ProbeTargets};
use fute::surrogate::Surrogate;
use fute_core::corpus::{content_hash, Corpus, CorpusCard, CorpusInput, CorpusSpec};
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
use fute_nn::checkpoint::SaveOptions;
use fute_nn::fisher::FisherVariant;
use fute_nn::TaskModel;
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn method(variant: FisherVariant) -> Method {
    Method::Fim(FimConfig {
        training: SurrogateTraining {
            epochs: 1,
            lr: 1e-3,
            batch: 4,
            grad_accum: 1,
            max_len: 16,
            soft_loss: Default::default(),
        },
        variant,
        batch: 4,
        sampled_trials: None,
        components: FimComponents::Encoder,
        layers: None,
        workers: 1,
    })
}

fn gold_probe() -> ProbeSet {
    let words = [
        "the cat",
        "a dog",
        "the mat sat",
        "cat dog mat",
        "a the cat",
        "dog sat",
    ];
    ProbeSet {
        inputs: words.iter().map(|w| vec![w.to_string()]).collect(),
        targets: ProbeTargets::Labels(vec![0, 1, 0, 1, 0, 1]),
        head: ProbeHead::Classification(2),
    }
}

fn request<'a>(
    p: &'a ProbeSet,
    m: &'a Method,
    seed: u64,
    kind: EmbeddingKind,
    corpus: Option<String>,
) -> EmbedRequest<'a> {
    EmbedRequest {
        subject: Subject {
            kind: SubjectKind::Dataset,
            name: "toy".into(),
            hash: p.hash(),
        },
        kind,
        probe: p,
        method: m,
        seed,
        corpus,
        dtype: StoredDType::F32,
        extra: BTreeMap::new(),
    }
}

#[test]
fn fim_dte_is_deterministic_and_seed_dependent() {
    let s = Surrogate::open(&tiny_bert()).unwrap();
    let p = gold_probe();
    let m = method(FisherVariant::PerExample);
    let a = m.run(&s, &p, 7, &mut |_| {}).unwrap().components;
    let b = m.run(&s, &p, 7, &mut |_| {}).unwrap().components;
    assert_eq!(a, b, "same seed, same vector (bit for bit)");
    let c = m.run(&s, &p, 8, &mut |_| {}).unwrap().components;
    assert_ne!(a, c, "the seed initialises the head and shuffles training");
    // Components are the encoder's parameters by HF name; the head is excluded.
    assert!(a
        .iter()
        .any(|(n, _)| n.contains("encoder.layer.0.attention.self.query.weight")));
    assert!(!a.iter().any(|(n, _)| n.starts_with("classifier")));
    assert!(a
        .iter()
        .flat_map(|(_, v)| v)
        .all(|x| x.is_finite() && *x >= 0.0));
}

/// The surrogate may be any registered architecture: the tiny GPT-2 of the
/// conformance suite (with its word-level tokenizer) gives a finite FIM DTE
/// whose components are GPT-2's parameters by HF name.
#[test]
fn fim_dte_through_a_gpt2_surrogate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fute-nn/tests/fixtures/conformance/gpt2/model");
    let s = Surrogate::open(&dir).unwrap();
    assert_eq!(s.description.model_type, "gpt2");
    assert_eq!(s.description.max_positions, 24);
    let a = method(FisherVariant::PerExample)
        .run(&s, &gold_probe(), 7, &mut |_| {})
        .unwrap()
        .components;
    assert!(a
        .iter()
        .any(|(n, _)| n == "transformer.h.0.attn.c_attn.weight"));
    assert!(!a.iter().any(|(n, _)| n.starts_with("score")));
    let values: Vec<f32> = a.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    assert!(values.iter().all(|x| x.is_finite() && *x >= 0.0));
    assert!(values.iter().any(|x| *x > 0.0));
}

#[test]
fn fim_mte_from_a_models_soft_labels_lands_in_the_same_space() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Surrogate::open(&tiny_bert()).unwrap();
    // The subject model: a classifier built on the tiny BERT with its own head.
    let subject_dir = tmp.path().join("m");
    BertTaskModel::from_folder(
        tiny_bert(),
        HeadSpec::Classification { num_labels: 2 },
        &BuildOptions {
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap()
    .save_pretrained(&subject_dir, &SaveOptions::default())
    .unwrap();
    let mut model = SubjectModel::open(&subject_dir).unwrap();
    model.input = Some(fute_core::corpus::ModelInput::Single);
    let inputs: Vec<CorpusInput> = [
        "the cat sat",
        "a dog",
        "mat the dog",
        "cat cat",
        "sat a mat",
    ]
    .iter()
    .map(|t| CorpusInput {
        segments: vec![t.to_string()],
        source: "t".into(),
    })
    .collect();
    let card = CorpusCard {
        name: "u".into(),
        hash: content_hash(&inputs),
        spec: CorpusSpec::default(),
        per_source: BTreeMap::new(),
        size: inputs.len(),
    };
    let u = Corpus { card, inputs };
    let targets =
        outputs_on_corpus(&model, &u, &tmp.path().join("cache"), 16, 4, |_, _| {}).unwrap();
    assert!(matches!(&targets, ProbeTargets::Soft(v) if v.len() == 5));
    let probe = ProbeSet {
        inputs: u.inputs.iter().map(|i| i.segments.clone()).collect(),
        targets,
        head: model.probe_head(),
    };

    let store = Store::open(&tmp.path().join("store")).unwrap();
    let m = method(FisherVariant::SquareOfMean);
    let mte = embed(
        &store,
        &s,
        request(&probe, &m, 1, EmbeddingKind::Mte, Some(u.card.hash.clone())),
        &mut |_| {},
    )
    .unwrap();
    let dte = embed(
        &store,
        &s,
        request(&gold_probe(), &m, 1, EmbeddingKind::Dte, None),
        &mut |_| {},
    )
    .unwrap();
    assert!(!mte.cached && !dte.cached);
    // DTE and MTE of one surrogate and method compare; the same request is a cache hit.
    let sim = store.similarity(&dte.record, &mte.record).unwrap();
    assert!(sim > 0.0 && sim <= 1.0, "{sim}");
    assert!(
        embed(
            &store,
            &s,
            request(&probe, &m, 1, EmbeddingKind::Mte, Some(u.card.hash.clone())),
            &mut |_| {}
        )
        .unwrap()
        .cached
    );
    // Another Fisher variant is another space: comparing is refused.
    let other = embed(
        &store,
        &s,
        request(
            &gold_probe(),
            &method(FisherVariant::PerBatch),
            1,
            EmbeddingKind::Dte,
            None,
        ),
        &mut |_| {},
    )
    .unwrap();
    let err = store
        .similarity(&other.record, &mte.record)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fisher: \"per-batch\" vs \"square-of-mean\""),
        "{err}"
    );
}
