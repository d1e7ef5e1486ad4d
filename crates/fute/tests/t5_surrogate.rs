//! Issue 12's "one store holding DTEs through a T5 surrogate": the FUTE
//! methods (prefix tuning reduced by FUTE's mean over layers, and the FIM of
//! the released code) run through a T5 surrogate, and their DTEs of two tiny
//! datasets sit in one store next to DTEs through the tiny BERT surrogate.
//!
//! The T5 is the tiny *random* T5 of the conformance suite (2 encoder and 3
//! decoder blocks, d_model 16, gated-GELU; `scripts/golden/bert_golden.py
//! --arch t5`, with the word-level tokenizer of `scripts/golden/t5_golden.py`
//! that appends `</s>` as T5's does): no pre-trained T5 ships in any package
//! fute can reach, so this shows the plumbing and the space separation, not
//! T5-base's embeddings.

use fute::embed::{embed, EmbedRequest, Embedded};
use fute::methods::fim::{FimComponents, FimConfig};
use fute::methods::peft::PeftMethod;
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::probe::{ProbeHead, ProbeSet, ProbeTargets};
use fute::surrogate::Surrogate;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
use fute_nn::fisher::FisherVariant;
use fute_nn::peft::{PeftConfig, PrefixConfig, Reduce};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures")
}

fn training() -> SurrogateTraining {
    SurrogateTraining {
        epochs: 2,
        lr: 1e-2,
        batch: 4,
        grad_accum: 1,
        max_len: 16,
        soft_loss: Default::default(),
    }
}

/// FUTE + TuPaTE: prefix tuning on the frozen surrogate, mean over layers.
fn fute_prefix() -> Method {
    Method::Peft(PeftMethod {
        training: training(),
        peft: PeftConfig::Prefix(PrefixConfig {
            len: 4,
            projection: None,
            dropout: 0.15,
        }),
        reduce: Reduce::Layers,
    })
}

/// FUTE + TaskEmb: fine-tuning, then the square of the mean gradient.
fn fute_fim() -> Method {
    Method::Fim(FimConfig {
        training: SurrogateTraining {
            lr: 1e-3,
            ..training()
        },
        variant: FisherVariant::SquareOfMean,
        batch: 4,
        sampled_trials: None,
        components: FimComponents::Encoder,
        layers: None,
        workers: 1,
    })
}

/// Two tiny datasets over the tokenizers' words: sentiment and topic.
fn datasets() -> [(&'static str, ProbeSet); 2] {
    let probe = |texts: &[&str], labels: Vec<usize>| ProbeSet {
        inputs: texts.iter().map(|t| vec![t.to_string()]).collect(),
        targets: ProbeTargets::Labels(labels),
        head: ProbeHead::Classification(2),
    };
    [
        (
            "sentiment",
            probe(
                &[
                    "a good movie",
                    "a bad film",
                    "the plot is great",
                    "the plot was awful",
                    "really nice music",
                    "quite poor and bad",
                    "so good and fine",
                    "very awful movie",
                ],
                vec![1, 0, 1, 0, 1, 0, 1, 0],
            ),
        ),
        (
            "topic",
            probe(
                &[
                    "the stock market fell today",
                    "the game was a big sport",
                    "market and stock",
                    "who plays the game",
                    "stock fell",
                    "sport game play",
                    "the market is big",
                    "a blue team plays",
                ],
                vec![0, 1, 0, 1, 0, 1, 0, 1],
            ),
        ),
    ]
}

fn request<'a>(name: &str, p: &'a ProbeSet, m: &'a Method) -> EmbedRequest<'a> {
    EmbedRequest {
        subject: Subject {
            kind: SubjectKind::Dataset,
            name: name.into(),
            hash: p.hash(),
        },
        kind: EmbeddingKind::Dte,
        probe: p,
        method: m,
        seed: 3,
        corpus: None,
        dtype: StoredDType::F32,
        extra: BTreeMap::new(),
    }
}

#[test]
fn one_store_holds_t5_surrogate_dtes_beside_bert_ones() {
    let t5 = Surrogate::open(&fixtures().join("conformance/t5/model")).unwrap();
    let bert = Surrogate::open(&fixtures().join("tiny-bert")).unwrap();
    assert_eq!(t5.description.model_type, "t5");
    assert_eq!(t5.description.num_layers, 5, "2 encoder + 3 decoder blocks");
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let data = datasets();
    let (prefix, fim) = (fute_prefix(), fute_fim());

    let mut t5_dtes: BTreeMap<(&str, &str), Embedded> = BTreeMap::new();
    for (method, m) in [("prefix", &prefix), ("fim", &fim)] {
        for (name, p) in &data {
            let mut lines = Vec::new();
            let e = embed(&store, &t5, request(name, p, m), &mut |l| lines.push(l)).unwrap();
            assert!(!e.cached);
            assert_eq!(e.record.meta.space.surrogate, t5.hash);
            assert!(
                lines.iter().any(|l| l.contains("epoch 2 mean loss")),
                "{lines:?}"
            );
            t5_dtes.insert((method, name), e);
        }
    }
    // FUTE's prefix vector: [key|value, heads, P, d_kv] averaged over the
    // 5 blocks = 2 · 16 · 4.
    assert_eq!(t5_dtes[&("prefix", "sentiment")].record.dim, 2 * 16 * 4);
    // The FIM covers shared, encoder and decoder by HF name, not the head.
    let comps = store
        .read(&t5_dtes[&("fim", "topic")].record)
        .unwrap()
        .into_iter()
        .map(|(n, v)| {
            assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{n}");
            n
        })
        .collect::<Vec<_>>();
    for want in [
        "transformer.shared.weight",
        "transformer.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "transformer.decoder.block.2.layer.1.EncDecAttention.q.weight",
        "transformer.decoder.block.0.layer.2.DenseReluDense.wi_0.weight",
    ] {
        assert!(comps.iter().any(|n| n == want), "{want} missing");
    }
    assert!(!comps.iter().any(|n| n.starts_with("classification_head")));

    // The two datasets' DTEs differ (same seed: only the data differs) and
    // compare within each T5 space.
    for method in ["prefix", "fim"] {
        let (a, b) = (
            &t5_dtes[&(method, "sentiment")],
            &t5_dtes[&(method, "topic")],
        );
        assert_ne!(
            store.read(&a.record).unwrap(),
            store.read(&b.record).unwrap(),
            "{method}"
        );
        let sim = store.similarity(&a.record, &b.record).unwrap();
        // Below 1: training moved the vectors apart (the prefix only a little:
        // FUTE's N(0, 1) prefix initialisation, shared by a seed, dominates
        // two epochs on eight examples).
        assert!(
            sim.is_finite() && (-1.0..1.0).contains(&sim),
            "{method}: {sim}"
        );
        println!("T5 surrogate, {method}: cos(sentiment, topic) = {sim:.6}");
    }

    // The same datasets through the tiny BERT surrogate, in the same store.
    let bert_prefix = embed(
        &store,
        &bert,
        request("sentiment", &data[0].1, &prefix),
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(bert_prefix.record.meta.space.surrogate, t5.hash);
    let all = store.list(&Default::default()).unwrap();
    assert_eq!(all.len(), 5, "four T5 DTEs and one BERT DTE");
    assert_eq!(
        all.iter()
            .filter(|r| r.meta.space.surrogate == t5.hash)
            .count(),
        4
    );
    // Different surrogates are different spaces: comparing them is refused.
    let err = store
        .similarity(
            &bert_prefix.record,
            &t5_dtes[&("prefix", "sentiment")].record,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("different surrogates"), "{err}");
    // A repeated request is found in the store.
    let again = embed(
        &store,
        &t5,
        request("topic", &data[1].1, &prefix),
        &mut |_| {},
    )
    .unwrap();
    assert!(again.cached);
}

/// Prompt tuning and LoRA (HF peft's `q`, `v` default) also embed through the
/// T5 surrogate; BitFit is refused by name (T5 has no biases).
#[test]
fn the_other_peft_methods_run_on_the_t5_surrogate() {
    use fute_nn::peft::{LoraConfig, PromptConfig};
    let t5 = Surrogate::open(&fixtures().join("conformance/t5/model")).unwrap();
    let (_, p) = &datasets()[0];
    let method = |peft, reduce| {
        Method::Peft(PeftMethod {
            training: training(),
            peft,
            reduce,
        })
    };
    let prompt = method(
        PeftConfig::PromptTuning(PromptConfig { len: 3 }),
        Reduce::Positions,
    );
    let out = prompt.run(&t5, p, 1, &mut |_| {}).unwrap();
    assert_eq!(out.components.len(), 1);
    assert_eq!(out.components[0].1.len(), 16, "mean over prompt positions");

    let lora = method(PeftConfig::Lora(LoraConfig::default()), Reduce::Positions);
    let out = lora.run(&t5, p, 1, &mut |_| {}).unwrap();
    // q and v of every self-attention (2 + 3 blocks) and of the 3
    // cross-attentions, an A and a B each.
    assert_eq!(out.components.len(), 2 * (2 * 5 + 2 * 3));
    assert!(out
        .components
        .iter()
        .any(|(n, _)| n == "transformer.decoder.block.1.layer.1.EncDecAttention.v.lora_B"));
    // Trained: some B moved away from its zero initialisation.
    assert!(out
        .components
        .iter()
        .filter(|(n, _)| n.ends_with("lora_B"))
        .any(|(_, v)| v.iter().any(|x| *x != 0.0)));

    let err = method(PeftConfig::BitFit, Reduce::Positions)
        .run(&t5, p, 1, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("BitFit") && err.contains("t5"), "{err}");
}
