//! Prompt selection end to end on a scripted LLM whose answers are known: the
//! truth per prompt, the baselines' plumbing, Self-Select's question, FUTE's
//! MTEs on the tiny surrogate, and reruns that make no LLM call.

use fute::methods::fim::{FimComponents, FimConfig};
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::prompt_eval::{
    evaluate_dataset, self_select_question, summarise, FuteSpace, PromptEvalConfig, TaskMetric,
};
use fute::prompted::{restrict_to_labels, truncate_chars, PromptedLlm};
use fute::surrogate::Surrogate;
use fute_core::corpus::{content_hash, Corpus, CorpusCard, CorpusInput, CorpusSpec};
use fute_core::dataset::{
    Dataset, DatasetCard, Example, Input, InputShape, Split, Target, TaskSchema,
};
use fute_core::embedding::Store;
use fute_llm::backend::{
    AnswerScores, BackendIdentity, CandidateScore, GenerateOptions, Generation, Perplexity,
    ScoreKind, ScoreQuery,
};
use fute_llm::{CachedBackend, ChatMessage, LabelSettings, LlmBackend, PromptInput, PromptSet};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An LLM with known behaviour: it calls a text positive iff it says "great",
/// except under the prompt that says "definitely not" (SA prompt 7), where it
/// answers the opposite. Asked to pick a prompt, it prefers letter D.
#[derive(Default)]
struct Scripted {
    calls: AtomicUsize,
}

const POSITIVE_WORDS: [&str; 5] = ["yes", "Yes", "good", "Good", "positive"];

fn joined(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

impl LlmBackend for Scripted {
    fn identity(&self) -> BackendIdentity {
        BackendIdentity {
            kind: "scripted".into(),
            model: "scripted".into(),
            model_hash: "v1".into(),
        }
    }
    fn render_chat(
        &self,
        messages: &[ChatMessage],
        _add_generation_prompt: bool,
    ) -> fute_llm::Result<String> {
        Ok(joined(messages))
    }
    fn score_answer(
        &self,
        messages: &[ChatMessage],
        query: &ScoreQuery,
    ) -> fute_llm::Result<AnswerScores> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = joined(messages);
        let score = |c: &str| -> f32 {
            if text.contains("With which instruction") {
                return if c == "D" { -0.1 } else { -3.0 };
            }
            let positive = text.contains("great") != text.contains("definitely not");
            if POSITIVE_WORDS.contains(&c) == positive {
                -0.2
            } else {
                -2.0
            }
        };
        Ok(AnswerScores {
            kind: ScoreKind::LogProbs,
            step: 0,
            greedy: vec!["x".into()],
            top: Vec::new(),
            candidates: query
                .candidates
                .iter()
                .map(|c| CandidateScore {
                    candidate: c.clone(),
                    token: Some(c.clone()),
                    score: Some(score(c)),
                })
                .collect(),
            floor: None,
        })
    }
    fn generate(
        &self,
        _messages: &[ChatMessage],
        _options: &GenerateOptions,
    ) -> fute_llm::Result<Generation> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Generation {
            text: "Let me think.".into(),
            n_tokens: 3,
            finish_reason: "stop".into(),
        })
    }
    fn perplexity(&self, text: &str, _add_bos: bool) -> fute_llm::Result<Perplexity> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Perplexity {
            nll_sum: 0.0,
            n_scored: 1,
            ppl: 1.0 + text.len() as f64 / 100.0,
        })
    }
    fn perplexity_chat(
        &self,
        messages: &[ChatMessage],
        add_bos: bool,
    ) -> fute_llm::Result<Perplexity> {
        self.perplexity(&joined(messages), add_bos)
    }
}

fn example(id: &str, text: &str, label: usize, split: Split) -> Example {
    Example {
        id: id.into(),
        input: Input::Single(text.into()),
        target: Target::Label(label),
        fixed_split: Some(split),
    }
}

/// Reviews labelled negative / neutral / positive, like tweets.
fn reviews() -> Dataset {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: vec!["negative".into(), "neutral".into(), "positive".into()],
    };
    let mut examples = Vec::new();
    for (i, split) in [Split::Train, Split::Test].into_iter().enumerate() {
        for j in 0..4 {
            examples.push(example(
                &format!("{i}p{j}"),
                &format!("a great film {j}"),
                2,
                split,
            ));
            examples.push(example(
                &format!("{i}n{j}"),
                &format!("a dull film {j}"),
                0,
                split,
            ));
        }
        examples.push(example(&format!("{i}u"), "a film", 1, split));
    }
    Dataset {
        card: DatasetCard::new("reviews", schema),
        examples,
    }
}

fn config() -> PromptEvalConfig {
    PromptEvalConfig {
        split: Split::Test,
        limit: None,
        seed: 3,
        max_chars: None,
        settings: LabelSettings::default(),
        spell_inputs: 2,
        metric: TaskMetric::Accuracy,
        self_select: true,
    }
}

fn sa() -> PromptSet {
    PromptSet::builtin("sa").unwrap()
}

#[test]
fn labels_are_mapped_into_the_prompt_set_and_others_left_out() {
    let set = sa();
    let (ds, dropped) = restrict_to_labels(&reviews(), &set.labels, &BTreeMap::new()).unwrap();
    assert_eq!(dropped, 2, "the two neutral examples");
    assert_eq!(ds.examples.len(), 16);
    // The set's order is negative, positive: positive moved from 2 to 1.
    assert!(ds
        .examples
        .iter()
        .all(|e| (e.target == Target::Label(1)) == e.input.segments()[0].contains("great")));
    // A map renames labels; mapping to a label the set lacks is an error that says so.
    let map = BTreeMap::from([("neutral".to_string(), "positive".to_string())]);
    let (_, dropped) = restrict_to_labels(&reviews(), &set.labels, &map).unwrap();
    assert_eq!(dropped, 0);
    let bad = BTreeMap::from([("neutral".to_string(), "meh".to_string())]);
    let err = restrict_to_labels(&reviews(), &set.labels, &bad).unwrap_err();
    assert!(err.to_string().contains("`meh`"), "{err}");
    // Only `neutral` is shared with the NLI labels: one class is no task.
    let nli = PromptSet::builtin("nli").unwrap();
    let err = restrict_to_labels(&reviews(), &nli.labels, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("--label-map"), "{err}");
}

#[test]
fn inputs_take_the_shape_of_the_prompt_slots() {
    let backend = Scripted::default();
    let settings = LabelSettings::default();
    let (sa, nli) = (sa(), PromptSet::builtin("nli").unwrap());
    let llm = |set, max_chars| PromptedLlm {
        backend: &backend,
        set,
        prompt: 0,
        settings: &settings,
        max_chars,
    };
    let pair = vec!["premise text".to_string(), "the review".to_string()];
    assert_eq!(
        llm(&sa, None).input(&pair).unwrap(),
        PromptInput::text("the review")
    );
    assert_eq!(
        llm(&nli, None).input(&pair).unwrap(),
        PromptInput::pair("premise text", "the review")
    );
    let single = vec!["one two three four five".to_string()];
    assert_eq!(
        llm(&nli, None).input(&single).unwrap(),
        PromptInput::pair("one two", "three four five")
    );
    assert_eq!(
        llm(&sa, Some(5)).input(&single).unwrap(),
        PromptInput::text("one t")
    );
    assert_eq!(truncate_chars("héllo", Some(2)), "hé");
    // The identity changes with the prompt and the settings, not with the index alone.
    let h0 = llm(&sa, None).hash().unwrap();
    let mut other = llm(&sa, None);
    other.prompt = 1;
    assert_ne!(h0, other.hash().unwrap());
    assert_ne!(h0, llm(&sa, Some(100)).hash().unwrap());
}

#[test]
fn self_select_asks_about_every_prompt_and_reads_the_letters() {
    let set = sa();
    let q = self_select_question(&set).unwrap();
    assert!(q.contains("A. Does the movie review below make someone want to watch it?"));
    assert!(
        q.contains("M. [TEXT] Did the reviewer enjoy the movie?"),
        "{q}"
    );
    assert!(q.contains("reason step by step first"));
    let scores = fute::prompt_eval::self_select(&Scripted::default(), &set).unwrap();
    assert_eq!(scores.len(), 13);
    assert_eq!(scores[3], -0.1f32 as f64);
    assert!(scores
        .iter()
        .enumerate()
        .all(|(i, &s)| i == 3 || s < scores[3]));
}

#[test]
fn every_method_scores_every_prompt_and_a_rerun_calls_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let set = sa();
    let (ds, _) = restrict_to_labels(&reviews(), &set.labels, &BTreeMap::new()).unwrap();
    let cfg = config();

    let first = CachedBackend::open(Scripted::default(), tmp.path()).unwrap();
    let report = evaluate_dataset(&first, &set, &ds, &cfg, None, &mut |_| {}).unwrap();
    let calls = first.inner().calls.load(Ordering::SeqCst);
    // 8 inputs × 13 prompts + 3 CoT rounds × 8 + SPELL 13 × 2 + Self-Select 1, less
    // the calls of prompt 9, which is prompt 5 again (8 scores, 2 perplexities): the
    // cache answers a repeated request.
    assert_eq!(calls, 8 * 13 + 3 * 8 + 13 * 2 + 1 - 10);

    assert_eq!(report.examples, 8);
    for (p, t) in report.truth.iter().enumerate() {
        assert_eq!(*t, if p == 7 { 0.0 } else { 1.0 }, "prompt {p}");
    }
    let scores = |name: &str| {
        report
            .scores
            .iter()
            .find(|(m, _)| m == name)
            .unwrap_or_else(|| panic!("no row {name}"))
            .1
            .clone()
    };
    // Every input's distribution is (q, 1 − q) or its mirror, and the classes balance:
    // MI = ln 2 − H(q).
    let q = 1.0 / (1.0 + (-1.8f64).exp());
    let h = -(q * q.ln() + (1.0 - q) * (1.0 - q).ln());
    assert!((scores("MI")[0] - (2f64.ln() - h)).abs() < 1e-6);
    assert!((scores("LocalE")[0] - h).abs() < 1e-6);
    // Prompt 7 disagrees with the other twelve on every input.
    assert_eq!(scores("ZPS-Vote")[7], 0.0);
    assert_eq!(scores("ZPS-Vote")[0], 1.0);
    // SPELL: −mean perplexity of the first two formatted inputs.
    let llm = PromptedLlm {
        backend: &Scripted::default(),
        set: &set,
        prompt: 4,
        settings: &cfg.settings,
        max_chars: None,
    };
    let mut examples = ds.split(Split::Test);
    fute_core::rng::SplitMix64::new(cfg.seed).shuffle(&mut examples);
    let expected: f64 = examples[..2]
        .iter()
        .map(|e| {
            llm.prompt_perplexity(&[e.input.segments()[0].to_string()])
                .unwrap()
        })
        .sum::<f64>()
        / -2.0;
    assert!((scores("SPELL")[4] - expected).abs() < 1e-12);

    // Summary: Self-Select picks D = prompt 3 (truth 1); ZPS ranks prompt 7 last.
    let summary = summarise(std::slice::from_ref(&report));
    let row = |m: &str| summary.iter().find(|s| s.method == m).unwrap().clone();
    assert_eq!(row("Self-Select").performance, 100.0);
    assert_eq!(row("Self-Select").rate, 100.0);
    assert!((row("ZPS-Vote").ndcg - 100.0).abs() < 1e-9);

    // A rerun over the same cache makes no call and reproduces the report.
    let second = CachedBackend::open(Scripted::default(), tmp.path()).unwrap();
    let again = evaluate_dataset(&second, &set, &ds, &cfg, None, &mut |_| {}).unwrap();
    assert_eq!(second.inner().calls.load(Ordering::SeqCst), 0);
    assert_eq!(again.truth, report.truth);
    assert_eq!(again.scores, report.scores);
}

fn tiny_bert() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fute-nn/tests/fixtures/tiny-bert")
}

#[test]
fn fute_scores_prompts_by_the_similarity_of_their_mtes_to_the_dte() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let surrogate = Surrogate::open(&tiny_bert()).unwrap();
    let texts = [
        "a great cat",
        "the dull dog",
        "great mat",
        "a dull sat",
        "cat dog",
    ];
    let inputs: Vec<CorpusInput> = texts
        .iter()
        .map(|t| CorpusInput {
            segments: vec![t.to_string()],
            source: "test".into(),
        })
        .collect();
    let corpus = Corpus {
        card: CorpusCard {
            name: "u".into(),
            hash: content_hash(&inputs),
            spec: CorpusSpec::default(),
            per_source: BTreeMap::new(),
            size: inputs.len(),
        },
        inputs,
    };
    let method = Method::Fim(FimConfig {
        training: SurrogateTraining {
            epochs: 1,
            lr: 1e-3,
            batch: 4,
            grad_accum: 1,
            max_len: 16,
            soft_loss: Default::default(),
        },
        variant: fute_nn::fisher::FisherVariant::PerExample,
        batch: 4,
        sampled_trials: None,
        components: FimComponents::Encoder,
        layers: None,
        workers: 1,
    });
    let space = FuteSpace {
        store: &store,
        surrogate: &surrogate,
        corpus: &corpus,
        methods: vec![(fute::methods::label::row_label(&method), method)],
        dte_limit: None,
        centre: false,
    };
    let set = sa();
    let (ds, _) = restrict_to_labels(&reviews(), &set.labels, &BTreeMap::new()).unwrap();
    let mut cfg = config();
    cfg.spell_inputs = 0;
    cfg.self_select = false;
    let backend = CachedBackend::open(Scripted::default(), tmp.path().join("llm")).unwrap();
    let report = evaluate_dataset(&backend, &set, &ds, &cfg, Some(&space), &mut |_| {}).unwrap();
    let fute = &report.scores.last().unwrap();
    // The row says which Fisher it computed: not FUTE's square of the mean.
    assert_eq!(fute.0, "FUTE + TaskEmb (per-example Fisher)");
    assert_eq!(fute.1.len(), 13);
    assert!(fute
        .1
        .iter()
        .all(|s| s.is_finite() && s.abs() <= 1.0 + 1e-9));
    // Prompts 5 and 9 are the same prompt: same labels on U, same MTE, same score.
    assert!((fute.1[5] - fute.1[9]).abs() < 1e-12);
    // Prompt 7 labels U the other way round: another MTE.
    assert!((fute.1[0] - fute.1[7]).abs() > 1e-9);
    // One DTE and 13 MTEs stored; a rerun finds them all and calls no LLM.
    let stored = store.list(&Default::default()).unwrap();
    assert_eq!(stored.len(), 14);
    let again_backend = CachedBackend::open(Scripted::default(), tmp.path().join("llm")).unwrap();
    let again =
        evaluate_dataset(&again_backend, &set, &ds, &cfg, Some(&space), &mut |_| {}).unwrap();
    assert_eq!(again_backend.inner().calls.load(Ordering::SeqCst), 0);
    assert_eq!(again.scores, report.scores);
    assert_eq!(store.list(&Default::default()).unwrap().len(), 14);
}
