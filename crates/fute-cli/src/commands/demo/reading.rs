//! The demo's task maps, and what they show in numbers (cosines, not pictures).

use super::llm::LlmPart;
use super::models::Dtes;
use super::{print_table, Demo};
use fute::map::{MapOptions, MapPoint, Marker, TaskClass, TaskMap};
use fute::report::Table;
use fute_core::embedding::EmbeddingRecord;
use std::time::Instant;

/// One map per FUTE method (DTEs, model MTEs, prompted-LLM MTEs), with a table of the
/// cosines that say whether tasks cluster.
pub(crate) fn maps(
    demo: &mut Demo<'_>,
    dtes: &Dtes,
    model_mtes: &Dtes,
    llm: Option<&LlmPart>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let rows: Vec<String> = demo.fute_methods.iter().map(|(r, _)| r.clone()).collect();
    let pb = demo.step("task maps (PCA and t-SNE) and the report", rows.len());
    let mut maps = Vec::new();
    for row in &rows {
        let mut records: Vec<EmbeddingRecord> = Vec::new();
        for ((r, _), rec) in dtes.iter().chain(model_mtes.iter()) {
            if r == row {
                records.push(rec.clone());
            }
        }
        if let Some(l) = llm {
            records.extend(
                l.mtes
                    .iter()
                    .filter(|(r, _)| r == row)
                    .map(|(_, rec)| rec.clone()),
            );
        }
        pb.set_message(format!("{row}: {} embeddings", records.len()));
        let map = TaskMap::build(
            &demo.store,
            &records,
            Some(&demo.ctx.workspace),
            &MapOptions::default(),
        )?;
        maps.push((row.clone(), map));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let sec = demo.report.section("Task maps");
    sec.text(
        "Every DTE (dataset), model MTE and prompted-LLM MTE of one method, laid out by PCA and by t-SNE (on centred cosine distances). Colour = task class from the data's labels (SA: sentiment labels; NLI: entailment labels; CR: other classification/regression), marker = kind. Hover a point in the explorer for its nearest neighbours.",
    );
    for (row, map) in &maps {
        let stem = format!("map-{}", map.method);
        sec.map(
            format!("{row} ({}): task map", map.method),
            stem,
            map.clone(),
        );
        sec.table(super::super::map::points_table(map));
    }
    let mut numbers = Table::new(
        "Reading the maps: mean centred cosines between groups of points (−1…1; pairs of distinct points)",
        &["method", "question", "value"],
    );
    for (row, map) in &maps {
        for (q, v) in readings(map) {
            numbers.row(vec![row.clone(), q, v]);
        }
    }
    print_table(&numbers);
    demo.run.write_table("map-readings.csv", &numbers)?;
    demo.report.section("Reading the maps").table(numbers);
    demo.run.record("maps", t.elapsed().as_secs_f64());
    Ok(())
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:+.3}"))
}

/// The numbers behind "do DTEs and MTEs of the same task land together?" and
/// "does sentiment separate from NLI?".
fn readings(map: &TaskMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // A source model's MTE against its own dataset's DTE, and against the other DTEs.
    for (i, p) in map.points.iter().enumerate() {
        if p.marker != Marker::ModelMte {
            continue;
        }
        let own = map
            .points
            .iter()
            .position(|q| q.marker == Marker::Dte && model_dataset(p) == q.subject);
        let Some(d) = own else { continue };
        let others: Vec<f64> = map
            .points
            .iter()
            .enumerate()
            .filter(|(j, q)| q.marker == Marker::Dte && *j != d)
            .map(|(j, _)| map.cosine[i][j])
            .collect();
        let rank = 1 + others.iter().filter(|&&c| c > map.cosine[i][d]).count();
        out.push((
            format!("the {} model's MTE: cosine with its own dataset's DTE vs the mean over the other {} DTEs (rank of its own among all DTEs)", model_dataset(p), others.len()),
            format!(
                "{} vs {} (rank {rank} of {})",
                fmt(Some(map.cosine[i][d])),
                fmt(Some(others.iter().sum::<f64>() / others.len().max(1) as f64)),
                others.len() + 1
            ),
        ));
    }
    let llm = |c: TaskClass| {
        move |p: &MapPoint| matches!(p.marker, Marker::LlmVanilla | Marker::LlmCot) && p.class == c
    };
    let dte = |c: TaskClass| move |p: &MapPoint| p.marker == Marker::Dte && p.class == c;
    let not_sa_dte = |p: &MapPoint| p.marker == Marker::Dte && p.class != TaskClass::Sa;
    out.push((
        "prompted LLMs: SA prompts among themselves / NLI prompts among themselves / SA with NLI"
            .into(),
        format!(
            "{} / {} / {}",
            fmt(map.mean_cosine(llm(TaskClass::Sa), llm(TaskClass::Sa))),
            fmt(map.mean_cosine(llm(TaskClass::Nli), llm(TaskClass::Nli))),
            fmt(map.mean_cosine(llm(TaskClass::Sa), llm(TaskClass::Nli)))
        ),
    ));
    out.push((
        "sentiment DTEs with SA-prompted LLMs / with NLI-prompted LLMs".into(),
        format!(
            "{} / {}",
            fmt(map.mean_cosine(dte(TaskClass::Sa), llm(TaskClass::Sa))),
            fmt(map.mean_cosine(dte(TaskClass::Sa), llm(TaskClass::Nli)))
        ),
    ));
    out.push((
        "sentiment DTEs among themselves / with the other DTEs".into(),
        format!(
            "{} / {}",
            fmt(map.mean_cosine(dte(TaskClass::Sa), dte(TaskClass::Sa))),
            fmt(map.mean_cosine(dte(TaskClass::Sa), not_sa_dte))
        ),
    ));
    let vanilla = |p: &MapPoint| p.marker == Marker::LlmVanilla;
    let cot = |p: &MapPoint| p.marker == Marker::LlmCot;
    out.push((
        "prompted LLMs: vanilla prompts among themselves / CoT among themselves / vanilla with CoT"
            .into(),
        format!(
            "{} / {} / {}",
            fmt(map.mean_cosine(vanilla, vanilla)),
            fmt(map.mean_cosine(cot, cot)),
            fmt(map.mean_cosine(vanilla, cot))
        ),
    ));
    if let Some(row) = by_llm_or_by_task(map) {
        out.push(row);
    }
    out
}

/// With two LLMs on the map: do their points group by task or by LLM? Mean cosine of
/// the same prompt in two LLMs, of one LLM's SA and NLI prompts, and of different
/// LLMs with different tasks (pairs of distinct points).
fn by_llm_or_by_task(map: &TaskMap) -> Option<(String, String)> {
    let llm_points: Vec<(usize, &str, &str, TaskClass)> = map
        .points
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.marker, Marker::LlmVanilla | Marker::LlmCot))
        .filter_map(|(i, p)| {
            let (llm, prompt) = p.label.split_once(':')?;
            Some((i, llm, prompt, p.class))
        })
        .collect();
    let mut sums = [(0.0, 0usize); 3];
    for (a, &(i, llm_i, prompt_i, class_i)) in llm_points.iter().enumerate() {
        for &(j, llm_j, prompt_j, class_j) in &llm_points[a + 1..] {
            let bucket = if llm_i != llm_j && prompt_i == prompt_j {
                0
            } else if llm_i == llm_j && class_i != class_j {
                1
            } else if llm_i != llm_j && class_i != class_j {
                2
            } else {
                continue;
            };
            sums[bucket].0 += map.cosine[i][j];
            sums[bucket].1 += 1;
        }
    }
    let mean = |k: usize| (sums[k].1 > 0).then(|| sums[k].0 / sums[k].1 as f64);
    mean(0)?;
    Some((
        "two LLMs: same prompt in both / one LLM, SA with NLI prompts / other LLM and other task"
            .into(),
        format!("{} / {} / {}", fmt(mean(0)), fmt(mean(1)), fmt(mean(2))),
    ))
}

/// The dataset a model was fine-tuned on: the demo names model folders `<dataset>-n…`.
fn model_dataset(p: &MapPoint) -> String {
    let name = p.label.split(" (").next().unwrap_or(&p.label);
    match name.find("-n") {
        Some(i) => name[..i].to_owned(),
        None => name.to_owned(),
    }
}
