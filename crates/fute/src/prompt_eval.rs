//! Prompt selection, evaluated (paper §5.2, §6): for one LLM, one prompt set
//! and a labelled target dataset, every method scores every prompt — FUTE by
//! the similarity of the dataset's DTE to each prompted LLM's MTE, the
//! baselines from the LLM's label distributions on the unlabelled evaluation
//! inputs — and each ranking is judged against the prompts' measured
//! performance on the labelled evaluation split (Performance, Rate, NDCG).

use crate::embed::{dte_subject, embed, EmbedRequest};
use crate::methods::Method;
use crate::probe::ProbeSet;
use crate::prompted::PromptedLlm;
use crate::surrogate::Surrogate;
use fute_core::corpus::Corpus;
use fute_core::dataset::{Dataset, Split, Target};
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType};
use fute_core::metrics::{ranking, target};
use fute_core::prompt_selection as ps;
use fute_core::rng::SplitMix64;
use fute_llm::{LabelSettings, LlmBackend, PromptMode, PromptSet, ScoreQuery};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// How a prompt's true performance is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskMetric {
    /// Accuracy (the paper's sentiment metric).
    Accuracy,
    /// Macro-averaged F1 over the prompt set's labels (the paper's NLI metric).
    MacroF1,
}

impl TaskMetric {
    /// The paper's choice for a prompt set: macro-F1 for NLI, accuracy otherwise.
    pub fn for_set(set: &PromptSet) -> TaskMetric {
        if set.name == "nli" || set.task.eq_ignore_ascii_case("nli") {
            TaskMetric::MacroF1
        } else {
            TaskMetric::Accuracy
        }
    }

    fn score(self, pred: &[usize], gold: &[usize], labels: usize) -> f64 {
        match self {
            TaskMetric::Accuracy => target::accuracy(pred, gold),
            TaskMetric::MacroF1 => target::macro_f1(pred, gold, labels),
        }
    }
}

/// FUTE's part of an evaluation: the space its DTEs and MTEs live in.
pub struct FuteSpace<'a> {
    /// The embedding store (DTEs and MTEs are reused from it by id).
    pub store: &'a Store,
    /// The surrogate.
    pub surrogate: &'a Surrogate,
    /// The task-shaped unlabelled corpus U the prompted LLMs label.
    pub corpus: &'a Corpus,
    /// Table row name and method, e.g. ("FUTE + TaskEmb", fim).
    pub methods: Vec<(String, Method)>,
    /// At most this many training examples for each DTE (seeded subset).
    pub dte_limit: Option<usize>,
    /// Subtract the candidates' mean before the cosine.
    pub centre: bool,
}

/// Settings of one evaluation.
pub struct PromptEvalConfig {
    /// The labelled split the prompts are measured on (the paper: test).
    pub split: Split,
    /// At most this many evaluation examples (seeded subset; the paper: 1000).
    pub limit: Option<usize>,
    /// Seed of every subset and of the embeddings.
    pub seed: u64,
    /// Inputs longer than this many characters are cut.
    pub max_chars: Option<usize>,
    /// How label distributions are computed.
    pub settings: LabelSettings,
    /// SPELL's perplexities are averaged over the first this-many evaluation inputs.
    pub spell_inputs: usize,
    /// How the truth is measured.
    pub metric: TaskMetric,
    /// Ask the LLM to pick its own prompt.
    pub self_select: bool,
}

/// Every method's score for every prompt on one dataset, and the truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetReport {
    /// The dataset.
    pub dataset: String,
    /// Evaluation examples used.
    pub examples: usize,
    /// The measured performance of each prompt (in [0, 1]).
    pub truth: Vec<f64>,
    /// Method name → one score per prompt (higher = predicted better).
    pub scores: Vec<(String, Vec<f64>)>,
    /// Stage → wall seconds (LLM calls that hit the cache cost ~0).
    pub seconds: BTreeMap<String, f64>,
    /// Per prompt: inputs on which some label was not scored (none of its
    /// verbalisers among the tokens the LLM returned; it got the lowest listed score).
    #[serde(default)]
    pub unscored: Vec<fute_llm::Unscored>,
}

/// One row of the paper's table: a method's selection quality, averaged over datasets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodSummary {
    /// The method.
    pub method: String,
    /// Mean true performance of the selected prompt (×100).
    pub performance: f64,
    /// Mean of performance ÷ the best prompt's performance (×100).
    pub rate: f64,
    /// Mean NDCG of the full ranking, relevance = performance in points (×100).
    pub ndcg: f64,
}

/// Performance, Rate and NDCG of each method, in the reports' method order,
/// averaged over the datasets (each per-dataset value as in
/// [`fute_core::metrics::ranking`]). NDCG's relevance is the performance in
/// percentage points, so its gain 2^rel − 1 rewards ranking the best prompts first.
pub fn summarise(reports: &[DatasetReport]) -> Vec<MethodSummary> {
    let Some(first) = reports.first() else {
        return Vec::new();
    };
    first
        .scores
        .iter()
        .map(|(method, _)| {
            let mut sums = [0.0; 3];
            for r in reports {
                let scores = &r
                    .scores
                    .iter()
                    .find(|(m, _)| m == method)
                    .expect("same methods")
                    .1;
                let points: Vec<f64> = r.truth.iter().map(|t| t * 100.0).collect();
                sums[0] += ranking::performance(scores, &points);
                sums[1] += ranking::rate(scores, &r.truth) * 100.0;
                sums[2] += ranking::ndcg(scores, &points) * 100.0;
            }
            let n = reports.len() as f64;
            MethodSummary {
                method: method.clone(),
                performance: sums[0] / n,
                rate: sums[1] / n,
                ndcg: sums[2] / n,
            }
        })
        .collect()
}

/// Evaluates every method's prompt choice on `ds`, whose labels must already
/// be the prompt set's (see [`crate::prompted::restrict_to_labels`]).
/// `report` receives progress lines.
pub fn evaluate_dataset(
    backend: &dyn LlmBackend,
    set: &PromptSet,
    ds: &Dataset,
    cfg: &PromptEvalConfig,
    fute: Option<&FuteSpace<'_>>,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<DatasetReport> {
    let name = ds.card.name.clone();
    let mut examples = ds.split(cfg.split);
    if examples.is_empty() {
        anyhow::bail!(fute_core::Error::Invalid(format!(
            "dataset `{name}` has no {} examples to measure the prompts on; pick another --split",
            cfg.split
        )));
    }
    SplitMix64::new(cfg.seed).shuffle(&mut examples);
    if let Some(n) = cfg.limit {
        examples.truncate(n);
    }
    let inputs: Vec<Vec<String>> = examples
        .iter()
        .map(|e| e.input.segments().iter().map(|s| s.to_string()).collect())
        .collect();
    let gold: Vec<usize> = examples
        .iter()
        .map(|e| match e.target {
            Target::Label(l) => l,
            _ => usize::MAX,
        })
        .collect();
    let n_prompts = set.prompts.len();
    let mut seconds = BTreeMap::new();
    let prompted = |p: usize| PromptedLlm {
        backend,
        set,
        prompt: p,
        settings: &cfg.settings,
        max_chars: cfg.max_chars,
    };

    // The truth, and the distributions every label-free baseline reads.
    let t = Instant::now();
    let mut dists: Vec<Vec<Vec<f64>>> = Vec::with_capacity(n_prompts);
    let mut truth = Vec::with_capacity(n_prompts);
    let mut unscored = Vec::with_capacity(n_prompts);
    for p in 0..n_prompts {
        let d = prompted(p).distributions(&inputs, &mut |done, total| {
            report(format!(
                "{name}: prompt {p}/{n_prompts}, input {done}/{total}"
            ))
        })?;
        unscored.push(fute_llm::unscored(&d));
        let pred: Vec<usize> = d.iter().map(|x| x.predicted).collect();
        truth.push(cfg.metric.score(&pred, &gold, set.labels.len()));
        dists.push(d.into_iter().map(|x| x.probs).collect());
    }
    seconds.insert("llm on eval inputs".into(), t.elapsed().as_secs_f64());

    let mut scores: Vec<(String, Vec<f64>)> = Vec::new();
    let per_prompt = |f: fn(&ps::Distributions) -> fute_core::Result<f64>| {
        dists
            .iter()
            .map(|d| f(d))
            .collect::<fute_core::Result<Vec<f64>>>()
    };
    scores.push(("MI".into(), per_prompt(ps::mutual_information)?));
    scores.push(("LocalE".into(), per_prompt(ps::local_entropy)?));
    scores.push(("GlobalE".into(), per_prompt(ps::global_entropy)?));
    for (label, ens) in [
        ("ZPS-Log", ps::ZpsEnsemble::Log),
        ("ZPS-Prob", ps::ZpsEnsemble::Prob),
        ("ZPS-Vote", ps::ZpsEnsemble::Vote),
    ] {
        scores.push((label.into(), ps::zps(&dists, ens)?));
    }
    if cfg.self_select {
        let t = Instant::now();
        report(format!("{name}: asking the LLM to pick its prompt"));
        scores.push(("Self-Select".into(), self_select(backend, set)?));
        seconds.insert("self-select".into(), t.elapsed().as_secs_f64());
    }
    if cfg.spell_inputs > 0 {
        let t = Instant::now();
        let k = cfg.spell_inputs.min(inputs.len());
        let mut spell = Vec::with_capacity(n_prompts);
        for p in 0..n_prompts {
            report(format!(
                "{name}: SPELL perplexities, prompt {p}/{n_prompts}"
            ));
            let ppl = fute_llm::parallel::map_calls(
                backend.concurrency(),
                &inputs[..k],
                |_, x| prompted(p).prompt_perplexity(x),
                &mut |_, _| {},
            )?;
            spell.push(ps::spell(&ppl)?);
        }
        scores.push(("SPELL".into(), spell));
        seconds.insert("spell perplexities".into(), t.elapsed().as_secs_f64());
    }
    scores.push(("MDL".into(), per_prompt(ps::mdl)?));

    if let Some(space) = fute {
        for (row, method) in &space.methods {
            let t = Instant::now();
            let s = fute_scores(backend, set, ds, cfg, space, method, report)?;
            seconds.insert(format!("{row} (DTE + MTEs)"), t.elapsed().as_secs_f64());
            scores.push((row.clone(), s));
        }
    }
    Ok(DatasetReport {
        dataset: name,
        examples: inputs.len(),
        truth,
        scores,
        seconds,
        unscored,
    })
}

/// FUTE's score of each prompt: the cosine of the dataset's DTE and the
/// prompted LLM's MTE, both from `method` on the same surrogate.
fn fute_scores(
    backend: &dyn LlmBackend,
    set: &PromptSet,
    ds: &Dataset,
    cfg: &PromptEvalConfig,
    space: &FuteSpace<'_>,
    method: &Method,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<f64>> {
    let name = &ds.card.name;
    let probe = ProbeSet::from_dataset(ds, Split::Train, space.dte_limit, cfg.seed)?;
    let (subject, extra) = dte_subject(ds, Split::Train, &probe);
    report(format!("{name}: {} DTE", method.name()));
    let dte = embed(
        space.store,
        space.surrogate,
        EmbedRequest {
            subject,
            kind: EmbeddingKind::Dte,
            probe: &probe,
            method,
            seed: cfg.seed,
            corpus: None,
            dtype: StoredDType::F32,
            extra,
        },
        &mut |line| report(format!("{name}: DTE: {line}")),
    )?
    .record;
    let mut mtes = Vec::with_capacity(set.prompts.len());
    for p in 0..set.prompts.len() {
        mtes.push(prompted_mte(
            backend,
            set,
            p,
            cfg,
            space,
            method,
            &mut |line| report(format!("MTE of prompt {p}: {line}")),
        )?);
    }
    let ranked = space.store.rank(
        &dte,
        &mtes,
        RankOptions {
            centre: space.centre,
            fuse_components: false,
        },
    )?;
    Ok(mtes
        .iter()
        .map(|m| {
            ranked
                .iter()
                .find(|r| r.id == m.id)
                .map(|r| r.score)
                .unwrap_or(f64::NEG_INFINITY)
        })
        .collect())
}

/// The MTE of prompt `p` of `set` on the space's corpus (computed or found in the store).
pub fn prompted_mte(
    backend: &dyn LlmBackend,
    set: &PromptSet,
    p: usize,
    cfg: &PromptEvalConfig,
    space: &FuteSpace<'_>,
    method: &Method,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<fute_core::embedding::EmbeddingRecord> {
    let llm = PromptedLlm {
        backend,
        set,
        prompt: p,
        settings: &cfg.settings,
        max_chars: cfg.max_chars,
    };
    let inputs: Vec<Vec<String>> = space
        .corpus
        .inputs
        .iter()
        .map(|i| i.segments.clone())
        .collect();
    let probe = llm.probe_set(inputs, &mut |done, total| {
        report(format!("labelling U {done}/{total}"))
    })?;
    Ok(embed(
        space.store,
        space.surrogate,
        EmbedRequest {
            subject: llm.subject()?,
            kind: EmbeddingKind::Mte,
            probe: &probe,
            method,
            seed: cfg.seed,
            corpus: Some(space.corpus.card.hash.clone()),
            dtype: StoredDType::F32,
            extra: llm.provenance(&space.corpus.card.name),
        },
        report,
    )?
    .record)
}

/// The letters that name prompts in the Self-Select question.
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The question Self-Select puts to the LLM: every prompt of the set, named by
/// a letter, with the input slots shown as placeholders.
pub fn self_select_question(set: &PromptSet) -> anyhow::Result<String> {
    if set.prompts.len() > LETTERS.len() {
        anyhow::bail!(fute_core::Error::Invalid(format!(
            "Self-Select names prompts by letter, so at most {} prompts (this set has {})",
            LETTERS.len(),
            set.prompts.len()
        )));
    }
    let task = if set.task.is_empty() {
        &set.name
    } else {
        &set.task
    };
    let mut q = format!(
        "I will use one of the following instructions to ask you {task} questions. [TEXT], [PREMISE] and [HYPOTHESIS] stand for the input.\n\n"
    );
    for (i, p) in set.prompts.iter().enumerate() {
        let shown = p
            .template
            .replace("{{text}}", "[TEXT]")
            .replace("{{premise}}", "[PREMISE]")
            .replace("{{hypothesis}}", "[HYPOTHESIS]");
        let how = match p.mode {
            PromptMode::Vanilla => "answer at once",
            PromptMode::Cot => "reason step by step first",
        };
        q.push_str(&format!(
            "{}. {} (answers: {}; {how})\n",
            &LETTERS[i..i + 1],
            shown.trim(),
            p.label_space()
        ));
    }
    q.push_str(
        "\nWith which instruction would you answer most accurately? Answer with its letter only.",
    );
    Ok(q)
}

/// Self-Select, done for real: the LLM is shown its prompts and asked which one
/// it would answer best with; each prompt's score is the log-probability of
/// its letter as the first answer token (the reference hard-codes lists whose
/// origin is unknown, paper §6).
pub fn self_select(backend: &dyn LlmBackend, set: &PromptSet) -> anyhow::Result<Vec<f64>> {
    let question = self_select_question(set)?;
    let mut messages = Vec::new();
    if let Some(system) = &set.system {
        messages.push(fute_llm::ChatMessage::system(system.clone()));
    }
    messages.push(fute_llm::ChatMessage::user(question));
    let candidates: Vec<String> = (0..set.prompts.len())
        .map(|i| LETTERS[i..i + 1].to_string())
        .collect();
    let answer = backend.score_answer(
        &messages,
        &ScoreQuery {
            candidates,
            top_k: 50,
            max_steps: 5,
            raw_logits: false,
            ..ScoreQuery::default()
        },
    )?;
    // A letter outside a server's top list scores below the lowest listed one.
    let floor = answer.floor.map(f64::from).unwrap_or(-1e9) - 1.0;
    Ok(answer
        .candidates
        .iter()
        .map(|c| c.score.map(f64::from).unwrap_or(floor))
        .collect())
}
