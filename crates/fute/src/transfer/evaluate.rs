//! Scoring source-ranking methods against a transfer matrix: the paper's table
//! (§3.5, §7.1), CR / QA × in-class / all-class × ρ and NDCG, one row per method.
//!
//! For each target t and seed k, the candidates are the other tasks, of t's
//! class (in-class) or of any class (all-class). A method gives every candidate
//! a score (higher = predicted to transfer better). Then
//!
//! * ρ = the expected 1-based position, in the method's ranking, of the source
//!   whose target score after transfer is highest (lower is better, 1 = perfect;
//!   [`fute_core::metrics::rank_of_best`], ties as the expectation over orders);
//! * NDCG = Σ_i (2^rel_i − 1)/log₂(i + 1) over all candidates, divided by the
//!   ideal ordering's value, with rel = the target score after transfer in points
//!   ([`fute_core::metrics::ndcg`]), ×100. With scores in points, 2^rel makes
//!   the best few sources dominate: NDCG mostly says whether the top of the
//!   ranking holds the best sources.
//!
//! Both are averaged over the targets of the class, per seed; the table gives
//! the mean ± sample standard deviation over seeds.
//!
//! The random ranking is evaluated exactly, not sampled: every candidate gets
//! the same score, and the tie rule takes the expectation over all orders, which
//! is the expectation over uniformly random rankings ((n + 1)/2 for ρ).

use std::collections::BTreeMap;

use anyhow::Result;
use fute_core::metrics::{ndcg, rank_of_best};
use serde::{Deserialize, Serialize};

use super::collect::{Matrix, SeedScores};
use super::invalid;
use super::plan::TaskClass;

/// Scores of one method: target → source → score (higher = better source).
pub type Scores = BTreeMap<String, BTreeMap<String, f64>>;

/// One ranking method's predictions, for every seed or one set for all seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// Row name (`DataSize`, `LogME`, `FUTE + TaskEmb`, …).
    pub method: String,
    /// How the scores were computed (shown with the table).
    #[serde(default)]
    pub note: String,
    /// One score table per seed of the matrix (methods that use each seed's
    /// source models), or a single table used for every seed.
    pub per_seed: Vec<Scores>,
}

impl MethodScores {
    fn for_seed(&self, k: usize) -> &Scores {
        if self.per_seed.len() == 1 {
            &self.per_seed[0]
        } else {
            &self.per_seed[k]
        }
    }
}

/// Which candidates a column considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Sources of the target's class.
    InClass,
    /// Sources of every class.
    AllClass,
}

/// One column pair of the table: ρ and NDCG for a class and scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Target class.
    pub class: TaskClass,
    /// Candidate scope.
    pub scope: Scope,
    /// Targets averaged.
    pub targets: usize,
    /// Candidates per target (the largest count).
    pub candidates: usize,
    /// ρ over seeds (each seed's value is the mean over targets).
    pub rho: SeedScores,
    /// NDCG ×100 over seeds.
    pub ndcg: SeedScores,
}

/// One method's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Method name.
    pub method: String,
    /// How it was computed.
    pub note: String,
    /// Every (class, scope) with at least one target and one candidate.
    pub cells: Vec<Cell>,
}

/// One target's values for one method, scope and seed (the detail behind a cell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetDetail {
    /// Method name.
    pub method: String,
    /// Target task.
    pub target: String,
    /// Candidate scope.
    pub scope: Scope,
    /// Seed.
    pub seed: u64,
    /// The truly best source.
    pub best_source: String,
    /// The method's top source (first in candidate order among ties).
    pub predicted_top: String,
    /// ρ for this target.
    pub rho: f64,
    /// NDCG ×100 for this target.
    pub ndcg: f64,
}

/// The evaluation table, serialisable for reports (`evaluation.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The matrix's plan commit.
    pub matrix_commit: String,
    /// Seeds of the matrix.
    pub seeds: Vec<u64>,
    /// Tasks by class.
    pub tasks: BTreeMap<String, Vec<String>>,
    /// One row per method.
    pub rows: Vec<Row>,
    /// Every target's ρ/NDCG per method, scope and seed.
    pub details: Vec<TargetDetail>,
}

/// DataSize (Vu et al.): rank sources by their number of training examples
/// (the whole train split, as the method knows it; independent of the target).
pub fn datasize(m: &Matrix) -> MethodScores {
    let mut s = Scores::new();
    for t in &m.tasks {
        let row = m
            .tasks
            .iter()
            .filter(|c| c.name != t.name)
            .map(|c| (c.name.clone(), c.train_size as f64))
            .collect();
        s.insert(t.name.clone(), row);
    }
    MethodScores {
        method: "DataSize".into(),
        note: "sources by training-set size (whole train split), largest first".into(),
        per_seed: vec![s],
    }
}

/// The random ranking, evaluated exactly (all scores tied; see the module docs).
pub fn random(m: &Matrix) -> MethodScores {
    let mut s = Scores::new();
    for t in &m.tasks {
        let row = m
            .tasks
            .iter()
            .filter(|c| c.name != t.name)
            .map(|c| (c.name.clone(), 0.0))
            .collect();
        s.insert(t.name.clone(), row);
    }
    MethodScores {
        method: "Random".into(),
        note: "expectation over uniformly random rankings, computed exactly".into(),
        per_seed: vec![s],
    }
}

/// Evaluates `methods` against `m`. A method with no scores for a target skips
/// it (the cell counts the targets used); a target with scores for only some
/// candidates is an error naming the missing one.
pub fn evaluate(m: &Matrix, methods: &[MethodScores]) -> Result<Evaluation> {
    let seeds = &m.settings.seeds;
    for ms in methods {
        if ms.per_seed.len() != 1 && ms.per_seed.len() != seeds.len() {
            return Err(invalid(format!(
                "method `{}` has {} score tables but the matrix has {} seeds (give one table, \
                 or one per seed)",
                ms.method,
                ms.per_seed.len(),
                seeds.len()
            )));
        }
    }
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for ms in methods {
        let mut cells = Vec::new();
        for class in [TaskClass::Cr, TaskClass::Qa] {
            for scope in [Scope::InClass, Scope::AllClass] {
                let mut rho_seeds = Vec::new();
                let mut ndcg_seeds = Vec::new();
                let mut targets = 0;
                let mut most = 0;
                for (k, &seed) in seeds.iter().enumerate() {
                    let (mut rho_sum, mut ndcg_sum, mut count) = (0.0, 0.0, 0usize);
                    for t in m.tasks.iter().filter(|t| t.class == class) {
                        let cells_t: Vec<_> = m
                            .cells_for(&t.name)
                            .into_iter()
                            .filter(|c| {
                                scope == Scope::AllClass || m.class_of(&c.source) == Some(class)
                            })
                            .collect();
                        if cells_t.is_empty() {
                            continue;
                        }
                        // A method that does not cover a target (LogME on QA) skips it.
                        let Some(scores_t) = ms.for_seed(k).get(&t.name) else {
                            continue;
                        };
                        let truth: Vec<f64> = cells_t.iter().map(|c| c.score.per_seed[k]).collect();
                        let pred = cells_t
                            .iter()
                            .map(|c| {
                                scores_t.get(&c.source).copied().ok_or_else(|| {
                                    invalid(format!(
                                        "method `{}` has no score for source `{}` on target \
                                             `{}` (seed {seed})",
                                        ms.method, c.source, t.name
                                    ))
                                })
                            })
                            .collect::<Result<Vec<f64>>>()?;
                        let rho = rank_of_best(&pred, &truth);
                        let nd = ndcg(&pred, &truth) * 100.0;
                        let argmax = |v: &[f64]| {
                            (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
                        };
                        details.push(TargetDetail {
                            method: ms.method.clone(),
                            target: t.name.clone(),
                            scope,
                            seed,
                            best_source: cells_t[argmax(&truth)].source.clone(),
                            predicted_top: cells_t[argmax(&pred)].source.clone(),
                            rho,
                            ndcg: nd,
                        });
                        rho_sum += rho;
                        ndcg_sum += nd;
                        count += 1;
                        most = most.max(cells_t.len());
                    }
                    if count > 0 {
                        rho_seeds.push(rho_sum / count as f64);
                        ndcg_seeds.push(ndcg_sum / count as f64);
                        targets = count;
                    }
                }
                if !rho_seeds.is_empty() {
                    cells.push(Cell {
                        class,
                        scope,
                        targets,
                        candidates: most,
                        rho: SeedScores::new(rho_seeds),
                        ndcg: SeedScores::new(ndcg_seeds),
                    });
                }
            }
        }
        rows.push(Row {
            method: ms.method.clone(),
            note: ms.note.clone(),
            cells,
        });
    }
    let mut tasks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &m.tasks {
        tasks
            .entry(t.class.as_str().to_string())
            .or_default()
            .push(t.name.clone());
    }
    Ok(Evaluation {
        matrix_commit: m.plan_commit.clone(),
        seeds: seeds.clone(),
        tasks,
        rows,
        details,
    })
}

fn column_name(class: TaskClass, scope: Scope) -> String {
    format!(
        "{} {}",
        class.as_str(),
        match scope {
            Scope::InClass => "in-class",
            Scope::AllClass => "all-class",
        }
    )
}

impl Evaluation {
    /// The table as CSV: one row per method, ρ and NDCG mean and std per column.
    pub fn to_csv(&self) -> String {
        let cols = self.columns();
        let mut out = String::from("method");
        for (c, s) in &cols {
            let n = column_name(*c, *s).replace(' ', "_");
            out.push_str(&format!(",{n}_rho,{n}_rho_std,{n}_ndcg,{n}_ndcg_std"));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.method);
            for (c, s) in &cols {
                match r.cells.iter().find(|x| x.class == *c && x.scope == *s) {
                    Some(x) => out.push_str(&format!(
                        ",{},{},{},{}",
                        x.rho.mean, x.rho.std, x.ndcg.mean, x.ndcg.std
                    )),
                    None => out.push_str(",,,,"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The (class, scope) columns any row has, in table order.
    pub fn columns(&self) -> Vec<(TaskClass, Scope)> {
        let mut cols = Vec::new();
        for c in [TaskClass::Cr, TaskClass::Qa] {
            for s in [Scope::InClass, Scope::AllClass] {
                if self
                    .rows
                    .iter()
                    .any(|r| r.cells.iter().any(|x| x.class == c && x.scope == s))
                {
                    cols.push((c, s));
                }
            }
        }
        cols
    }

    /// Column titles for a text or Markdown table (`CR in-class ρ↓`, …).
    pub fn column_titles(&self) -> Vec<String> {
        self.columns()
            .into_iter()
            .flat_map(|(c, s)| {
                let n = column_name(c, s);
                [format!("{n} ρ↓"), format!("{n} NDCG↑")]
            })
            .collect()
    }

    /// One method's values in column order (`2.50 ± 0.10`; `–` where absent).
    pub fn row_values(&self, row: &Row) -> Vec<String> {
        let fmt = |s: &SeedScores| {
            if s.per_seed.len() > 1 {
                format!("{:.2} ± {:.2}", s.mean, s.std)
            } else {
                format!("{:.2}", s.mean)
            }
        };
        self.columns()
            .into_iter()
            .flat_map(
                |(c, s)| match row.cells.iter().find(|x| x.class == c && x.scope == s) {
                    Some(x) => [fmt(&x.rho), fmt(&x.ndcg)],
                    None => ["–".to_string(), "–".to_string()],
                },
            )
            .collect()
    }
}
