//! The TuPaTE family (prefix, prompt tuning, LoRA, BitFit) end to end through
//! `fute::embed::embed` on the tiny test BERT: vectors, store, determinism, seeds.

use fute::embed::{embed, EmbedRequest};
use fute::methods::peft::PeftMethod;
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::probe::{ProbeHead, ProbeSet, ProbeTargets};
use fute::surrogate::Surrogate;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
use fute_nn::peft::{LoraConfig, PeftConfig, PrefixConfig, PromptConfig, Reduce};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

fn method(peft: PeftConfig, reduce: Reduce) -> Method {
    Method::Peft(PeftMethod {
        training: SurrogateTraining {
            epochs: 2,
            lr: 1e-2,
            batch: 4,
            grad_accum: 1,
            max_len: 16,
            soft_loss: Default::default(),
        },
        peft,
        reduce,
    })
}

fn prefix() -> PeftConfig {
    PeftConfig::Prefix(PrefixConfig {
        len: 4,
        projection: None,
        dropout: 0.1,
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

fn request<'a>(p: &'a ProbeSet, m: &'a Method, seed: u64) -> EmbedRequest<'a> {
    EmbedRequest {
        subject: Subject {
            kind: SubjectKind::Dataset,
            name: "toy".into(),
            hash: p.hash(),
        },
        kind: EmbeddingKind::Dte,
        probe: p,
        method: m,
        seed,
        corpus: None,
        dtype: StoredDType::F32,
        extra: BTreeMap::new(),
    }
}

#[test]
fn every_peft_method_embeds_through_the_store() {
    // tiny-bert: 2 layers, hidden 32, 4 heads, intermediate 37.
    let (l, h) = (2, 32);
    let cases = [
        (method(prefix(), Reduce::Layers), "prefix", 4 * 2 * h),
        (method(prefix(), Reduce::Positions), "prefix", l * 2 * h),
        (
            method(
                PeftConfig::Prefix(PrefixConfig {
                    len: 4,
                    projection: Some(8),
                    dropout: 0.0,
                }),
                Reduce::Positions,
            ),
            "prefix",
            h,
        ),
        (
            method(
                PeftConfig::PromptTuning(PromptConfig { len: 3 }),
                Reduce::Positions,
            ),
            "prompt-tuning",
            h,
        ),
        (
            method(PeftConfig::Lora(LoraConfig::default()), Reduce::Positions),
            "lora",
            l * 2 * (8 * h + h * 8),
        ),
        (
            method(PeftConfig::BitFit, Reduce::Positions),
            "bitfit",
            h + l * (7 * h + 37) + h,
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let s = Surrogate::open(&tiny_bert()).unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let p = gold_probe();
    let mut ids = Vec::new();
    for (m, name, dim) in &cases {
        let mut lines = Vec::new();
        let out = embed(&store, &s, request(&p, m, 3), &mut |l| lines.push(l)).unwrap();
        assert!(!out.cached);
        assert_eq!(out.record.meta.space.method, *name);
        assert_eq!(out.record.dim, *dim, "{name} {:?}", m.params());
        assert!(
            lines.iter().any(|l| l.contains("epoch 2 mean loss")),
            "{lines:?}"
        );
        let again = embed(&store, &s, request(&p, m, 3), &mut |_| {}).unwrap();
        assert!(again.cached, "the same request is a cache hit");
        ids.push(out.record.id.clone());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        cases.len(),
        "every setting is its own space entry"
    );
    let params = method(prefix(), Reduce::Layers).params();
    for key in [
        "prefix_len",
        "prefix_projection",
        "prefix_dropout",
        "reduce",
        "train_lr",
        "train_epochs",
        "max_len",
    ] {
        assert!(params.contains_key(key), "{key} missing from {params:?}");
    }
    let lora = LoraConfig {
        targets: vec!["query".into(), "value".into()],
        ..Default::default()
    };
    let lp = method(PeftConfig::Lora(lora), Reduce::Positions).params();
    assert_eq!(lp["lora_targets"], serde_json::json!(["query", "value"]));
}

#[test]
fn peft_vectors_are_deterministic_and_prefix_depends_on_the_seed() {
    let s = Surrogate::open(&tiny_bert()).unwrap();
    let p = gold_probe();
    for m in [
        method(prefix(), Reduce::Layers),
        method(
            PeftConfig::PromptTuning(PromptConfig { len: 2 }),
            Reduce::Positions,
        ),
        method(PeftConfig::Lora(LoraConfig::default()), Reduce::Positions),
        method(PeftConfig::BitFit, Reduce::Positions),
    ] {
        let a = m.run(&s, &p, 7, &mut |_| {}).unwrap().components;
        let b = m.run(&s, &p, 7, &mut |_| {}).unwrap().components;
        assert_eq!(a, b, "{}: same seed, same vector (bit for bit)", m.name());
        assert!(!a.iter().any(|(n, _)| n.starts_with("classifier")));
    }
    let m = method(prefix(), Reduce::Layers);
    let a = m.run(&s, &p, 7, &mut |_| {}).unwrap().components;
    let c = m.run(&s, &p, 8, &mut |_| {}).unwrap().components;
    assert_ne!(a, c, "a different seed gives a different prefix vector");
}

#[test]
fn prompt_tuning_rejects_a_layer_reduction() {
    let s = Surrogate::open(&tiny_bert()).unwrap();
    let m = method(
        PeftConfig::PromptTuning(PromptConfig { len: 2 }),
        Reduce::Layers,
    );
    let err = m.run(&s, &gold_probe(), 1, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("--reduce"), "{err}");
}
