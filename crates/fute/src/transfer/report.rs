//! The run folder of `fute transfer evaluate`: the paper's table (§7.1) as one
//! self-contained `report.html`, with the ground-truth matrix it was scored
//! against, each method's pick per target, the provenance, and the raw CSV/JSON.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::collect::{Matrix, SeedScores};
use super::evaluate::{Evaluation, MethodScores, Scope};
use crate::report::{Report, RunFolder, Table};

/// Writes into `run`: `evaluation.json`, `evaluation.csv`, `matrix.csv`,
/// `methods.json` (every method's scores, as given), one CSV per report table,
/// and `report.html`. `matrix_path` is the file `m` was read from (its sha256
/// goes into the provenance). Returns the path of `report.html`.
///
/// Errors: a file cannot be read or written.
pub fn write_run(
    run: &RunFolder,
    m: &Matrix,
    matrix_path: &Path,
    e: &Evaluation,
    methods: &[MethodScores],
) -> Result<PathBuf> {
    run.write_json("evaluation.json", e)?;
    run.write("evaluation.csv", e.to_csv().as_bytes())?;
    run.write("matrix.csv", m.to_csv().as_bytes())?;
    run.write_json("methods.json", &methods)?;

    let mut report = Report::new(format!(
        "fute transfer evaluate: {} tasks, {} seed(s), base {}",
        m.tasks.len(),
        m.settings.seeds.len(),
        m.settings.base
    ));
    provenance(&mut report, m, matrix_path)?;

    let ranking = ranking_table(e);
    run.write_table("ranking.csv", &ranking)?;
    let intro = "ρ = the expected position of the true best source in the method's ranking \
                 (1 is perfect, lower is better); NDCG ×100 with gain 2^rel − 1, rel = the \
                 target's score after transfer in points, discount log₂(i + 1), over all \
                 candidates. Cells are mean ± sample standard deviation over seeds.";
    let s = report.section("Ranking methods against the ground truth");
    s.text(intro).table(ranking);
    for ms in methods {
        if !ms.note.is_empty() {
            s.text(format!("{}: {}", ms.method, ms.note));
        }
    }

    let truth = truth_table(m, |c| &c.score, "score after transfer");
    let gains = truth_table(m, |c| &c.gain, "gain over no transfer");
    run.write_table("truth-scores.csv", &truth)?;
    run.write_table("truth-gains.csv", &gains)?;
    report
        .section("Ground truth: the transfer matrix")
        .text(
            "Each target fine-tuned from each source model (rows: targets, columns: \
             sources), in points of the target's own metric on its dev sample; the \
             no-transfer column is the base model fine-tuned on the target alone.",
        )
        .table(truth)
        .table(gains);

    let picks = picks_table(e);
    run.write_table("picks.csv", &picks)?;
    report
        .section("Each method's pick per target")
        .text("All-class candidates, first seed: the source each method ranks first beside the true best.")
        .table(picks);
    run.write_report(&mut report)
}

fn provenance(report: &mut Report, m: &Matrix, matrix_path: &Path) -> Result<()> {
    let p = &mut report.provenance;
    let bytes =
        std::fs::read(matrix_path).map_err(|e| fute_core::Error::io("reading", matrix_path, e))?;
    p.hashes.insert(
        format!("matrix {}", matrix_path.display()),
        fute_core::fsutil::sha256_hex(&bytes),
    );
    p.hashes.insert(
        format!("base {}", m.settings.base),
        m.settings.base_hash.clone(),
    );
    for t in &m.tasks {
        p.hashes
            .insert(format!("dataset {}", t.name), t.content_hash.clone());
    }
    for (k, &seed) in m.settings.seeds.iter().enumerate() {
        p.seeds.insert(format!("transfer seed {k}"), seed);
    }
    // One row per setting: a single JSON blob runs off the page.
    if let serde_json::Value::Object(fields) = serde_json::to_value(&m.settings)? {
        for (k, v) in fields {
            p.settings.insert(format!("transfer {k}"), v);
        }
    }
    p.settings
        .insert("plan commit".into(), m.plan_commit.clone().into());
    p.settings
        .insert("job commits".into(), serde_json::to_value(&m.job_commits)?);
    Ok(())
}

fn ranking_table(e: &Evaluation) -> Table {
    let titles = e.column_titles();
    let mut header = vec!["method"];
    header.extend(titles.iter().map(String::as_str));
    let mut t = Table::new(
        "ρ (lower is better) and NDCG (higher is better) per task class and candidate scope",
        &header,
    );
    for r in &e.rows {
        let mut cells = vec![r.method.clone()];
        cells.extend(e.row_values(r));
        t.row(cells);
    }
    t
}

fn mean_std(s: &SeedScores) -> String {
    if s.per_seed.len() > 1 {
        format!("{:.1} ± {:.1}", s.mean, s.std)
    } else {
        format!("{:.1}", s.mean)
    }
}

fn truth_table(
    m: &Matrix,
    value: impl Fn(&super::collect::TransferCell) -> &SeedScores,
    what: &str,
) -> Table {
    let names: Vec<&str> = m.tasks.iter().map(|t| t.name.as_str()).collect();
    let mut header = vec!["target", "metric", "no transfer"];
    header.extend(names.iter().copied());
    let mut t = Table::new(format!("{what} (points)"), &header);
    for target in &m.tasks {
        let mut row = vec![target.name.clone(), target.metric.clone()];
        row.push(
            m.baselines
                .get(&target.name)
                .map(mean_std)
                .unwrap_or_else(|| "–".into()),
        );
        let cells = m.cells_for(&target.name);
        for source in &names {
            let cell = cells.iter().find(|c| c.source == *source);
            row.push(match cell {
                Some(c) => mean_std(value(c)),
                None => "–".into(),
            });
        }
        t.row(row);
    }
    t
}

fn picks_table(e: &Evaluation) -> Table {
    let mut t = Table::new(
        "first seed, all-class candidates",
        &[
            "target",
            "true best source",
            "method",
            "method's top pick",
            "ρ",
            "NDCG",
        ],
    );
    let first = e.seeds.first().copied();
    for d in e
        .details
        .iter()
        .filter(|d| d.scope == Scope::AllClass && Some(d.seed) == first)
    {
        t.row(vec![
            d.target.clone(),
            d.best_source.clone(),
            d.method.clone(),
            d.predicted_top.clone(),
            format!("{:.2}", d.rho),
            format!("{:.1}", d.ndcg),
        ]);
    }
    t
}
