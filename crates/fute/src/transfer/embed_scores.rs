//! The embedding rows of the transfer table (paper §3.5, §7.1): each source scored
//! for each target by the similarity of task embeddings, written as a
//! [`MethodScores`] that `fute transfer evaluate --scores` reads.
//!
//! * **FUTE + X** (X = TaskEmb's Fisher or TuPaTE's prefix): the target's DTE
//!   against each source *model*'s MTE, both through the one surrogate; the MTE is
//!   computed from the source model's own outputs on the corpus U (paper Eq. 3–4).
//!   Source models differ per seed, so there is one score table per seed.
//! * **TextEmb** (and any method that ignores targets): the target's DTE against
//!   each source *dataset*'s DTE; one table for every seed.
//!
//! Similarity: the cosine after subtracting the candidates' mean (centring), or the
//! plain cosine, as [`EmbedScoreConfig::centre`] says.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use fute_core::corpus::{Corpus, ModelInput};
use fute_core::dataset::{Dataset, Split};
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{
    EmbeddingKind, EmbeddingRecord, Store, StoredDType, Subject, SubjectKind,
};
use serde_json::Value;

use super::collect::Matrix;
use super::evaluate::{MethodScores, Scores};
use super::job::source_model_dir;
use super::plan::source_job_id;
use crate::embed::{dte_subject, embed, EmbedRequest};
use crate::methods::Method;
use crate::model_outputs::{mte_probe, SubjectModel};
use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;

/// How one embedding row is computed.
pub struct EmbedScoreConfig<'a> {
    /// Row name in the table (`FUTE + TaskEmb`, `TextEmb`, …).
    pub row: String,
    /// The embedding method (its surrogate training, Fisher or PEFT settings).
    pub method: &'a Method,
    /// The store every embedding is found in or added to.
    pub store: &'a Store,
    /// The surrogate all embeddings go through.
    pub surrogate: &'a Surrogate,
    /// The corpus U of the MTEs (needed when the method uses targets).
    pub corpus: Option<&'a Corpus>,
    /// Where the source models' outputs on U are cached.
    pub outputs_cache: &'a Path,
    /// Training examples per DTE (a seeded sample of each task's train split).
    pub dte_examples: usize,
    /// Seed of the DTE samples and of every embedding's training.
    pub seed: u64,
    /// Cosine after centring on the candidates' mean (`true`) or plain cosine.
    pub centre: bool,
}

/// Scores every (target, source) pair of `m` with one embedding row; source
/// models are read from `run_dir/models/` (the run's source jobs, every seed).
///
/// `progress(done, total, what)` is called as embeddings start and finish (units:
/// one embedding).
///
/// Errors: a missing source model (run `fute transfer run` first), a method that
/// needs U without a corpus, a store or training failure.
pub fn embedding_scores(
    m: &Matrix,
    run_dir: &Path,
    cfg: &EmbedScoreConfig<'_>,
    load_dataset: &dyn Fn(&str) -> Result<Dataset>,
    progress: &mut dyn FnMut(usize, usize, String),
) -> Result<MethodScores> {
    let n = m.tasks.len();
    let total = n + if cfg.method.uses_targets() {
        n * m.settings.seeds.len()
    } else {
        0
    };
    if cfg.method.uses_targets() {
        // Checked before any DTE is trained: a folder without models fails at once.
        for &seed in &m.settings.seeds {
            for t in &m.tasks {
                let dir = source_model_dir(run_dir, &source_job_id(&t.name, seed));
                if !dir.join("config.json").is_file() {
                    return Err(super::invalid(format!(
                        "{} needs the source models, but {} holds none; run `fute transfer \
                         run {}` first (its source jobs save them there). A results folder \
                         kept without its models can only be re-scored from scores files.",
                        cfg.row,
                        dir.display(),
                        run_dir.display()
                    )));
                }
            }
        }
    }
    let mut done = 0;
    let mut dtes = BTreeMap::new();
    let mut datasets = BTreeMap::new();
    for t in &m.tasks {
        let ds = load_dataset(&t.name)?;
        let rec = dte(&ds, cfg, &mut |line| progress(done, total, line))?;
        dtes.insert(t.name.clone(), rec);
        datasets.insert(t.name.clone(), ds);
        done += 1;
    }
    let per_seed = if cfg.method.uses_targets() {
        let corpus = cfg.corpus.ok_or_else(|| {
            super::invalid(format!(
                "{} compares the target's DTE with each source model's MTE, which needs a \
                 corpus U; give --corpus NAME (see `fute corpus list`)",
                cfg.row
            ))
        })?;
        let mut tables = Vec::new();
        for &seed in &m.settings.seeds {
            let mut mtes = BTreeMap::new();
            for t in &m.tasks {
                let dir = source_model_dir(run_dir, &source_job_id(&t.name, seed));
                crate::finetune::check_model_folder(&dir, "source model")?;
                let rec = mte(&dir, &datasets[&t.name], corpus, cfg, &mut |line| {
                    progress(done, total, format!("seed {seed}: {line}"))
                })?;
                mtes.insert(t.name.clone(), rec);
                done += 1;
            }
            tables.push(score_table(m, &dtes, &mtes, cfg)?);
        }
        tables
    } else {
        vec![score_table(m, &dtes, &dtes, cfg)?]
    };
    progress(done, total, "scored".into());
    let against = if cfg.method.uses_targets() {
        "each source model's MTE on U"
    } else {
        "each source dataset's DTE"
    };
    Ok(MethodScores {
        method: cfg.row.clone(),
        note: format!(
            "{} cosine of the target's DTE ({} train examples) with {against}; method {}, \
             surrogate {}",
            if cfg.centre { "centred" } else { "plain" },
            cfg.dte_examples,
            cfg.method.name(),
            &cfg.surrogate.hash[..12.min(cfg.surrogate.hash.len())]
        ),
        per_seed,
    })
}

fn dte(
    ds: &Dataset,
    cfg: &EmbedScoreConfig<'_>,
    progress: &mut dyn FnMut(String),
) -> Result<EmbeddingRecord> {
    let probe = ProbeSet::from_dataset(ds, Split::Train, Some(cfg.dte_examples), cfg.seed)?;
    let (subject, extra) = dte_subject(ds, Split::Train, &probe);
    let name = ds.card.name.clone();
    Ok(embed(
        cfg.store,
        cfg.surrogate,
        EmbedRequest {
            subject,
            kind: EmbeddingKind::Dte,
            probe: &probe,
            method: cfg.method,
            seed: cfg.seed,
            corpus: None,
            dtype: StoredDType::F32,
            extra,
        },
        &mut |line| progress(format!("DTE of {name}: {line}")),
    )?
    .record)
}

fn mte(
    dir: &Path,
    source: &Dataset,
    u: &Corpus,
    cfg: &EmbedScoreConfig<'_>,
    progress: &mut dyn FnMut(String),
) -> Result<EmbeddingRecord> {
    let mut model = SubjectModel::open(dir)?;
    // Source models of runs made before `finetune` kept a training record: the
    // plan says which task each was fine-tuned on, hence how it reads its input.
    model
        .input
        .get_or_insert(ModelInput::of_schema(&source.card.schema));
    let source = source.card.name.as_str();
    let probe = mte_probe(&model, u, cfg.outputs_cache, 64, 16, |d, n| {
        progress(format!("the {source} model on U: {d}/{n}"))
    })?;
    Ok(embed(
        cfg.store,
        cfg.surrogate,
        EmbedRequest {
            subject: Subject {
                kind: SubjectKind::Model,
                name: dir.display().to_string(),
                hash: model.subject_hash()?,
            },
            kind: EmbeddingKind::Mte,
            probe: &probe,
            method: cfg.method,
            seed: cfg.seed,
            corpus: Some(u.card.hash.clone()),
            dtype: StoredDType::F32,
            extra: BTreeMap::from([
                ("corpus_name".into(), Value::from(u.card.name.clone())),
                ("source_dataset".into(), Value::from(source)),
            ]),
        },
        &mut |line| progress(format!("MTE of the {source} model: {line}")),
    )?
    .record)
}

/// target → source → similarity, candidates = every other task.
fn score_table(
    m: &Matrix,
    targets: &BTreeMap<String, EmbeddingRecord>,
    sources: &BTreeMap<String, EmbeddingRecord>,
    cfg: &EmbedScoreConfig<'_>,
) -> Result<Scores> {
    let mut table = Scores::new();
    for t in &m.tasks {
        let cands: Vec<EmbeddingRecord> = m
            .tasks
            .iter()
            .filter(|s| s.name != t.name)
            .map(|s| sources[&s.name].clone())
            .collect();
        let ranked = cfg.store.rank(
            &targets[&t.name],
            &cands,
            RankOptions {
                centre: cfg.centre,
                fuse_components: false,
            },
        )?;
        let row = table.entry(t.name.clone()).or_default();
        for (s, c) in m.tasks.iter().filter(|s| s.name != t.name).zip(&cands) {
            let r = ranked.iter().find(|r| r.id == c.id).ok_or_else(|| {
                super::invalid(format!(
                    "the {} embedding of {} was not ranked against {} (same vector as the \
                     target?)",
                    cfg.row, s.name, t.name
                ))
            })?;
            row.insert(s.name.clone(), r.score);
        }
    }
    Ok(table)
}
