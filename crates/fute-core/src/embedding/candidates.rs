//! Which stored embeddings may be ranked against a target, and how.
//!
//! A ranking compares the target with every candidate *and* the candidates
//! with each other (centring subtracts their mean), so the candidates must be
//! comparable among themselves, not only with the target:
//!
//! - **Corpus U.** MTEs made on different corpora answer different questions;
//!   only the MTEs on one U are kept (the target's own U, or the one named with
//!   `corpus`), and the others are left out with a note. Candidates on several
//!   corpora with nothing to choose between them are refused.
//! - **The target's own subject.** Other embeddings of the target's dataset or
//!   model (another seed or `--limit`) would trivially rank first; they are left
//!   out unless `include_self`.
//! - **Seeds.** A prefix, prompt or LoRA vector is its seeded initialisation plus
//!   what training moved (review F8), so vectors of different seeds differ by a
//!   random term about as large as the signal. Candidates whose seed is not the
//!   target's are refused (the message names the seeds), or with
//!   `average_seeds` each seed's candidates are compared with the target's own
//!   embedding of that seed and the scores averaged per subject.
//! - **Schedule.** Candidates of one kind must share one training schedule
//!   (the schedule is not part of the space: see [`super`]).

use super::store::EmbeddingRecord;
use super::{EmbeddingKind, SubjectKind};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// How candidates are chosen.
#[derive(Debug, Clone, Default)]
pub struct CandidateRules {
    /// Keep other embeddings of the target's own subject.
    pub include_self: bool,
    /// Pair candidates with the target's embedding of their seed and average per subject.
    pub average_seeds: bool,
    /// Keep only MTEs on this corpus (its name or a prefix of its hash).
    pub corpus: Option<String>,
}

/// Candidates that share a seed, and the target embedding they are compared with.
#[derive(Debug, Clone)]
pub struct SeedGroup {
    /// The seed.
    pub seed: u64,
    /// The target's embedding with this seed.
    pub target: EmbeddingRecord,
    /// The candidates with this seed.
    pub candidates: Vec<EmbeddingRecord>,
}

/// The outcome of [`select`].
#[derive(Debug, Clone)]
pub struct Selection {
    /// One group per seed (one group unless `average_seeds`).
    pub groups: Vec<SeedGroup>,
    /// What was left out and why, for the user.
    pub notes: Vec<String>,
}

/// Whether `a` and `b` embed the same dataset or model: the same subject kind
/// and name, the same subject hash, or (datasets) the same dataset content hash.
pub fn same_subject(a: &EmbeddingRecord, b: &EmbeddingRecord) -> bool {
    let (sa, sb) = (&a.meta.subject, &b.meta.subject);
    if sa.kind != sb.kind {
        return false;
    }
    let data_hash = |r: &EmbeddingRecord| r.meta.extra.get("dataset_hash").cloned();
    sa.name == sb.name
        || sa.hash == sb.hash
        || (sa.kind == SubjectKind::Dataset
            && data_hash(a).is_some()
            && data_hash(a) == data_hash(b))
}

/// How a corpus is shown: its name when recorded, and its hash.
fn corpus_label(r: &EmbeddingRecord) -> String {
    let hash = r.meta.space.corpus.as_deref().unwrap_or("");
    match r.meta.extra.get("corpus_name").and_then(|v| v.as_str()) {
        Some(name) => format!("`{name}` ({})", &hash[..hash.len().min(12)]),
        None => hash[..hash.len().min(12)].to_string(),
    }
}

/// Applies the rules to `candidates` for `target`. `lookup(seed)` returns the
/// target's embedding with another seed (same subject, kind, space and
/// schedule), if stored; it is called only with `average_seeds`.
pub fn select(
    target: &EmbeddingRecord,
    candidates: &[EmbeddingRecord],
    rules: &CandidateRules,
    lookup: &mut dyn FnMut(u64) -> Result<Option<EmbeddingRecord>>,
) -> Result<Selection> {
    let mut notes = Vec::new();
    let mut kept: Vec<EmbeddingRecord> = candidates
        .iter()
        .filter(|c| c.id != target.id)
        .cloned()
        .collect();

    if !rules.include_self {
        let before = kept.len();
        kept.retain(|c| !same_subject(target, c));
        let dropped = before - kept.len();
        if dropped > 0 {
            notes.push(format!(
                "left out {dropped} other embedding(s) of the target's own subject `{}` (other seeds or limits); --include-self keeps them",
                target.meta.subject.name
            ));
        }
    }

    // One corpus U among the MTEs: the one asked for, else the target's, else the only one.
    let corpora: BTreeMap<String, (String, usize)> = kept
        .iter()
        .filter_map(|c| c.meta.space.corpus.clone().map(|h| (h, c)))
        .fold(BTreeMap::new(), |mut m, (h, c)| {
            m.entry(h).or_insert_with(|| (corpus_label(c), 0)).1 += 1;
            m
        });
    let wanted: Option<String> = if let Some(asked) = &rules.corpus {
        let hit = kept.iter().find(|c| {
            c.meta
                .space
                .corpus
                .as_ref()
                .is_some_and(|h| h.starts_with(asked.as_str()))
                || c.meta.extra.get("corpus_name").and_then(|v| v.as_str()) == Some(asked)
        });
        match hit {
            Some(c) => c.meta.space.corpus.clone(),
            None => {
                return Err(Error::Invalid(format!(
                    "no candidate MTE was made on corpus `{asked}`; the candidates' corpora: {}",
                    list_corpora(&corpora)
                )))
            }
        }
    } else if let Some(own) = &target.meta.space.corpus {
        Some(own.clone())
    } else if corpora.len() > 1 {
        return Err(Error::Invalid(format!(
            "the candidate MTEs were made on {} different corpora U ({}); MTEs on different U are not comparable. Choose one with --corpus NAME",
            corpora.len(),
            list_corpora(&corpora)
        )));
    } else {
        corpora.keys().next().cloned()
    };
    if let Some(u) = &wanted {
        let before = kept.len();
        let others: BTreeMap<String, (String, usize)> = corpora
            .iter()
            .filter(|(h, _)| *h != u)
            .map(|(h, v)| (h.clone(), v.clone()))
            .collect();
        kept.retain(|c| c.meta.space.corpus.as_ref().is_none_or(|h| h == u));
        let dropped = before - kept.len();
        if dropped > 0 {
            notes.push(format!(
                "left out {dropped} MTE(s) made on other corpora U: {}",
                list_corpora(&others)
            ));
        }
    }

    for kind in [EmbeddingKind::Dte, EmbeddingKind::Mte] {
        let schedules: BTreeMap<String, usize> =
            kept.iter()
                .filter(|c| c.meta.kind == kind)
                .fold(BTreeMap::new(), |mut m, c| {
                    *m.entry(c.meta.space.schedule()).or_insert(0) += 1;
                    m
                });
        if schedules.len() > 1 {
            let shown: Vec<String> = schedules
                .iter()
                .map(|(s, n)| format!("[{s}] ×{n}"))
                .collect();
            return Err(Error::Invalid(format!(
                "the candidate {}s were trained on different schedules ({}); rank one schedule at a time with --candidates",
                kind.as_str().to_uppercase(),
                shown.join(", ")
            )));
        }
    }

    if kept.is_empty() {
        return Err(Error::Invalid(format!(
            "no candidates to rank against {} ({}){}",
            target.id,
            target.meta.subject.name,
            if notes.is_empty() {
                String::new()
            } else {
                format!(": {}", notes.join("; "))
            }
        )));
    }

    let seeds: BTreeSet<u64> = kept.iter().map(|c| c.meta.seed).collect();
    if !rules.average_seeds {
        if seeds.iter().any(|&s| s != target.meta.seed) {
            let shown: Vec<String> = seeds.iter().map(u64::to_string).collect();
            return Err(Error::Invalid(format!(
                "the candidates were made with seeds {} and the target with seed {}; a tuned vector is its seeded initialisation plus what training moved, so vectors of different seeds are not comparable. Recompute with one --seed, or pass --average-seeds to compare each seed's candidates with the target's embedding of that seed and average per subject",
                shown.join(", "),
                target.meta.seed
            )));
        }
        return Ok(Selection {
            groups: vec![SeedGroup {
                seed: target.meta.seed,
                target: target.clone(),
                candidates: kept,
            }],
            notes,
        });
    }
    let mut groups = Vec::new();
    for seed in seeds {
        let of_seed: Vec<EmbeddingRecord> = kept
            .iter()
            .filter(|c| c.meta.seed == seed)
            .cloned()
            .collect();
        let t = if seed == target.meta.seed {
            Some(target.clone())
        } else {
            lookup(seed)?
        };
        match t {
            Some(t) => groups.push(SeedGroup {
                seed,
                target: t,
                candidates: of_seed,
            }),
            None => notes.push(format!(
                "left out {} candidate(s) of seed {seed}: the target `{}` has no embedding with seed {seed} (compute it with --seed {seed})",
                of_seed.len(),
                target.meta.subject.name
            )),
        }
    }
    if groups.is_empty() {
        return Err(Error::Invalid(format!(
            "no seed is shared by the target and the candidates: {}",
            notes.join("; ")
        )));
    }
    Ok(Selection { groups, notes })
}

fn list_corpora(c: &BTreeMap<String, (String, usize)>) -> String {
    c.values()
        .map(|(label, n)| format!("{label} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
