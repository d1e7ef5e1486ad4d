//! The demo's model side: the corpus U, fine-tuned source models, DTEs and model MTEs,
//! and "which model should I transfer from for Rotten Tomatoes?" against measured transfer.

use super::{print_table, Demo, DTE_DATASETS, SEED, TARGET};
use fute::embed::{dte_subject, embed, EmbedRequest};
use fute::finetune::{finetune, predict, FinetuneOptions};
use fute::methods::Method;
use fute::model_outputs::{mte_probe, SubjectModel};
use fute::probe::ProbeSet;
use fute::report::Table;
use fute_core::corpus::{Corpus, CorpusSpec};
use fute_core::dataset::Split;
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{EmbeddingKind, EmbeddingRecord, StoredDType, Subject, SubjectKind};
use fute_core::metrics::ranking;
use fute_nn::train::{Control, Event};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// A fine-tuned source model.
pub(crate) struct Source {
    /// The dataset it was fine-tuned on.
    pub dataset: &'static str,
    /// Its folder.
    pub dir: PathBuf,
    /// Training examples in the dataset's train split (DataSize's number).
    pub dataset_examples: usize,
}

/// DTEs by (method row, dataset).
pub(crate) type Dtes = BTreeMap<(String, String), EmbeddingRecord>;

/// The corpus U the MTEs are computed on: `u_inputs` inputs drawn (seeded) from the
/// packaged unlabelled texts, built once as `demo-u`.
pub(crate) fn corpus(demo: &mut Demo<'_>) -> anyhow::Result<Corpus> {
    let t = Instant::now();
    let pb = demo.step(
        &format!(
            "the unlabelled corpus U ({} inputs for the MTEs)",
            demo.sizes.u_inputs
        ),
        1,
    );
    let ctx = demo.ctx;
    if !ctx.workspace.corpus_dir("demo-u")?.is_dir() {
        pb.suspend(|| {
            super::super::corpus::build(ctx, "demo-u", &CorpusSpec::default(), true, false)
        })?;
    }
    let mut u = ctx.workspace.load_corpus("demo-u")?;
    u.keep_seeded_subset(demo.sizes.u_inputs, SEED);
    u.card.name = format!("demo-u[{}]", demo.sizes.u_inputs);
    pb.inc(1);
    pb.finish_and_clear();
    demo.report
        .provenance
        .hashes
        .insert(format!("corpus {}", u.card.name), u.card.hash.clone());
    demo.run.record("corpus U", t.elapsed().as_secs_f64());
    Ok(u)
}

/// MiniLM fine-tuned on each source dataset (found in `.fute/demo/models/` when done before).
pub(crate) fn finetune_sources(demo: &mut Demo<'_>) -> anyhow::Result<Vec<Source>> {
    let t = Instant::now();
    let n = demo.sizes.sources.len();
    let pb = demo.step(
        &format!(
            "fine-tuning MiniLM on {n} source datasets ({} examples × {} epochs each)",
            demo.sizes.train_examples, demo.sizes.train_epochs
        ),
        n,
    );
    let mut out = Vec::new();
    let mut table = Table::new(
        "Fine-tuned source models (MiniLM + a fresh head)",
        &[
            "source dataset",
            "train examples used",
            "test accuracy",
            "folder",
        ],
    );
    for &name in &demo.sizes.sources.clone() {
        let ds = demo.ctx.workspace.load_dataset(name)?;
        // 2e-4: at 1e-4 with 160 examples × 2 epochs the IMDB model stayed at chance (0.51).
        let opts = FinetuneOptions {
            epochs: demo.sizes.train_epochs,
            lr: 2e-4,
            batch_size: 16,
            max_len: 64,
            seed: SEED,
            limit: Some(demo.sizes.train_examples),
            eval_limit: Some(64),
            ..FinetuneOptions::default()
        };
        let dir = demo
            .ctx
            .workspace
            .state_dir()
            .join("demo")
            .join("models")
            .join(format!(
                "{name}-n{}-{}",
                demo.sizes.train_examples,
                settings_tag(&opts, "")
            ));
        if !is_model(&dir) {
            finetune(&ds, &demo.minilm, &dir, &opts, &mut |e| {
                if let Event::Step {
                    step, total_steps, ..
                } = e
                {
                    pb.set_message(format!("fine-tuning on {name}: step {step}/{total_steps}"));
                }
                Control::Continue
            })?;
        }
        pb.set_message(format!("measuring the {name} model"));
        let acc = cached_accuracy(&dir.with_extension("accuracy.json"), Value::Null, || {
            accuracy_on_test(demo, &ds, &dir)
        })?;
        table.row(vec![
            name.into(),
            demo.sizes.train_examples.to_string(),
            format!("{acc:.3}"),
            dir.display().to_string(),
        ]);
        out.push(Source {
            dataset: name,
            dataset_examples: ds.split(Split::Train).len(),
            dir,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    print_table(&table);
    demo.run.write_table("source-models.csv", &table)?;
    demo.report.section("Source models").table(table);
    demo.run
        .record("fine-tuning source models", t.elapsed().as_secs_f64());
    Ok(out)
}

/// A measured accuracy kept in `file` (JSON), measured by `measure` the first time.
fn cached_accuracy(
    file: &std::path::Path,
    provenance: Value,
    measure: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<f64> {
    if let Ok(text) = std::fs::read_to_string(file) {
        if let Some(a) = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("accuracy").and_then(Value::as_f64))
        {
            return Ok(a);
        }
    }
    let acc = measure()?;
    let mut record = serde_json::json!({ "accuracy": acc });
    if let (Some(r), Value::Object(extra)) = (record.as_object_mut(), provenance) {
        r.extend(extra);
    }
    fute_core::fsutil::write_atomic(file, record.to_string().as_bytes())?;
    Ok(acc)
}

fn is_model(dir: &std::path::Path) -> bool {
    [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        fute::finetune::TRAIN_RECORD_FILE,
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

/// Accuracy of a model on `transfer_eval` seeded test examples of `ds`.
fn accuracy_on_test(
    demo: &Demo<'_>,
    ds: &fute_core::dataset::Dataset,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    let r = predict(
        ds,
        dir,
        Split::Test,
        Some(demo.sizes.transfer_eval),
        32,
        Some(64),
    )?;
    r.metrics
        .get("accuracy")
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no accuracy for {}", ds.card.name))
}

/// DTEs of the five datasets with every FUTE method and TextEmb.
pub(crate) fn dataset_embeddings(demo: &mut Demo<'_>) -> anyhow::Result<Dtes> {
    let t = Instant::now();
    let mut methods: Vec<(String, Method)> = demo.fute_methods.clone();
    methods.push(("TextEmb".into(), demo.textemb.clone()));
    let pb = demo.step(
        &format!(
            "DTEs of {} datasets ({} examples each): FUTE + TaskEmb, FUTE + TuPaTE, TextEmb",
            DTE_DATASETS.len(),
            demo.sizes.dte_examples
        ),
        DTE_DATASETS.len() * methods.len(),
    );
    let mut out = Dtes::new();
    for name in DTE_DATASETS {
        let ds = demo.ctx.workspace.load_dataset(name)?;
        let probe = ProbeSet::from_dataset(&ds, Split::Train, Some(demo.sizes.dte_examples), SEED)?;
        for (row, method) in &methods {
            let (subject, extra) = dte_subject(&ds, Split::Train, &probe);
            let rec = embed(
                &demo.store,
                &demo.surrogate,
                EmbedRequest {
                    subject,
                    kind: EmbeddingKind::Dte,
                    probe: &probe,
                    method,
                    seed: SEED,
                    corpus: None,
                    dtype: StoredDType::F32,
                    extra,
                },
                &mut |m| pb.set_message(format!("{row} DTE of {name}: {m}")),
            )?
            .record;
            out.insert((row.clone(), name.to_owned()), rec);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    demo.run.record("DTEs", t.elapsed().as_secs_f64());
    Ok(out)
}

/// MTEs of the source models on U with every FUTE method, by (method row, source dataset).
pub(crate) fn model_embeddings(
    demo: &mut Demo<'_>,
    sources: &[Source],
    u: &Corpus,
) -> anyhow::Result<Dtes> {
    let t = Instant::now();
    let methods = demo.fute_methods.clone();
    let pb = demo.step(
        &format!("MTEs of the {} source models on U", sources.len()),
        sources.len() * methods.len(),
    );
    let cache = demo.ctx.workspace.state_dir().join("cache").join("outputs");
    let mut out = Dtes::new();
    for s in sources {
        let model = SubjectModel::open(&s.dir)?;
        let probe = mte_probe(&model, u, &cache, 64, 16, |d, n| {
            pb.set_message(format!("{} model on U: {d}/{n}", s.dataset))
        })?;
        for (row, method) in &methods {
            let rec = embed(
                &demo.store,
                &demo.surrogate,
                EmbedRequest {
                    subject: Subject {
                        kind: SubjectKind::Model,
                        name: s.dir.display().to_string(),
                        hash: model.hash.clone(),
                    },
                    kind: EmbeddingKind::Mte,
                    probe: &probe,
                    method,
                    seed: SEED,
                    corpus: Some(u.card.hash.clone()),
                    dtype: StoredDType::F32,
                    extra: BTreeMap::from([
                        ("corpus_name".into(), Value::from(u.card.name.clone())),
                        ("source_dataset".into(), Value::from(s.dataset)),
                        ("dataset_examples".into(), Value::from(s.dataset_examples)),
                        ("model_type".into(), Value::from(model.model_type.clone())),
                    ]),
                },
                &mut |m| pb.set_message(format!("{row} MTE of the {} model: {m}", s.dataset)),
            )?
            .record;
            out.insert((row.clone(), s.dataset.to_owned()), rec);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    demo.run.record("model MTEs", t.elapsed().as_secs_f64());
    Ok(out)
}

/// "Which model should I transfer from for Rotten Tomatoes?": every source model is
/// fine-tuned further on a few Rotten Tomatoes examples and measured on its test split
/// (the truth); FUTE ranks the models by the cosine of Rotten Tomatoes' DTE with each
/// model's MTE; the baselines rank by the source datasets' TextEmb DTEs and by DataSize.
pub(crate) fn which_source(
    demo: &mut Demo<'_>,
    sources: &[Source],
    dtes: &Dtes,
    mtes: &Dtes,
) -> anyhow::Result<String> {
    let t = Instant::now();
    let pb = demo.step(
        &format!(
            "which model should I transfer from for {TARGET}? measuring {} transfers ({} target examples each) and the no-transfer baseline",
            sources.len(),
            demo.sizes.transfer_examples
        ),
        sources.len() + 1,
    );
    let target = demo.ctx.workspace.load_dataset(TARGET)?;
    let mut truth = Vec::new();
    let mut measured = Table::new(
        format!(
            "Measured transfer to {TARGET}: each model fine-tuned on {} {TARGET} examples, accuracy on {} test reviews",
            demo.sizes.transfer_examples, demo.sizes.transfer_eval
        ),
        &["start from", "accuracy"],
    );
    let baseline = transfer_accuracy(demo, &target, None, &pb)?;
    pb.inc(1);
    measured.row(vec![
        "MiniLM (no intermediate task)".into(),
        format!("{baseline:.3}"),
    ]);
    for s in sources {
        let acc = transfer_accuracy(demo, &target, Some(s), &pb)?;
        truth.push(acc);
        measured.row(vec![
            format!("the {} model", s.dataset),
            format!("{acc:.3}"),
        ]);
        pb.inc(1);
    }
    pb.finish_and_clear();

    let mut scores: Vec<(String, Vec<f64>)> = Vec::new();
    for (row, _) in &demo.fute_methods {
        let target_dte = &dtes[&(row.clone(), TARGET.to_owned())];
        let cands: Vec<EmbeddingRecord> = sources
            .iter()
            .map(|s| mtes[&(row.clone(), s.dataset.to_owned())].clone())
            .collect();
        let ranked = demo.store.rank(
            target_dte,
            &cands,
            RankOptions {
                centre: true,
                fuse_components: false,
            },
        )?;
        scores.push((
            format!("{row} (DTE · model MTE)"),
            cands
                .iter()
                .map(|c| {
                    ranked
                        .iter()
                        .find(|r| r.id == c.id)
                        .map_or(f64::NEG_INFINITY, |r| r.score)
                })
                .collect(),
        ));
    }
    // TextEmb compares datasets only: the target's DTE with each source dataset's DTE.
    let te_target = &dtes[&("TextEmb".to_owned(), TARGET.to_owned())];
    let te: Vec<EmbeddingRecord> = sources
        .iter()
        .map(|s| dtes[&("TextEmb".to_owned(), s.dataset.to_owned())].clone())
        .collect();
    let ranked = demo.store.rank(
        te_target,
        &te,
        RankOptions {
            centre: false,
            fuse_components: false,
        },
    )?;
    scores.push((
        "TextEmb (DTE · source DTE)".into(),
        te.iter()
            .map(|c| {
                ranked
                    .iter()
                    .find(|r| r.id == c.id)
                    .map_or(f64::NEG_INFINITY, |r| r.score)
            })
            .collect(),
    ));
    scores.push((
        "DataSize".into(),
        sources.iter().map(|s| s.dataset_examples as f64).collect(),
    ));
    let names: Vec<String> = sources.iter().map(|s| s.dataset.to_owned()).collect();
    let picks = picks_table(
        &format!(
            "Which model should I transfer from for {TARGET}? (truth: best = {})",
            best_names(&names, &truth)
        ),
        &names,
        &scores,
        &truth,
    );
    print_table(&measured);
    print_table(&picks);
    demo.run.write_table("transfer-truth.csv", &measured)?;
    demo.run.write_table("transfer-picks.csv", &picks)?;
    demo.run.write_json("transfer-scores.json", &scores)?;
    let sec = demo
        .report
        .section(format!("Which model should I transfer from for {TARGET}?"));
    sec.text(format!(
        "Each source model (MiniLM fine-tuned on a source dataset) is fine-tuned further on {} {TARGET} training examples and measured on {} of its test reviews: that is the truth. FUTE ranks the models by the centred cosine of {TARGET}'s DTE with each model's MTE (both through the MiniLM surrogate); TextEmb ranks the source datasets by the cosine of their TextEmb DTEs; DataSize prefers the largest source dataset. With this few examples the accuracies are noisy: differences of a few points are within chance.",
        demo.sizes.transfer_examples, demo.sizes.transfer_eval
    ));
    sec.table(picks);
    sec.table(measured);
    demo.run
        .record("which source (transfer truth)", t.elapsed().as_secs_f64());
    Ok(answer(
        &format!("Which model should I transfer from for {TARGET}?"),
        &names,
        &scores,
        &truth,
        demo.sizes.transfer_eval,
    ))
}

/// Whether accuracies `truth`, each measured on the same `n` examples, tell the
/// candidates apart: the gap between two is compared with twice its chance spread,
/// 2·√(p₁(1−p₁)/n + p₂(1−p₂)/n) (two binomial proportions; ignoring that the test
/// examples are shared makes it conservative). One sentence for the answer line.
pub(crate) fn separation(truth: &[f64], n: usize) -> String {
    let mut sorted: Vec<f64> = truth.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (Some(&best), Some(&worst)) = (sorted.first(), sorted.last()) else {
        return String::new();
    };
    let second = sorted.get(1).copied().unwrap_or(best);
    let chance = |a: f64, b: f64| 2.0 * ((a * (1.0 - a) + b * (1.0 - b)) / n.max(1) as f64).sqrt();
    if best - worst < chance(best, worst) {
        format!(
            "The truth does not separate the candidates: best and worst differ by {:.1} points,              within chance (±{:.1}) on {n} examples, so no pick is confirmed or refuted here",
            (best - worst) * 100.0,
            chance(best, worst) * 100.0
        )
    } else if best - second < chance(best, second) {
        format!(
            "The best is within chance of the runner-up ({:.1} points apart, ±{:.1} on {n} examples)",
            (best - second) * 100.0,
            chance(best, second) * 100.0
        )
    } else {
        format!("The best is ahead of the runner-up beyond chance on {n} examples")
    }
}

/// One sentence: the truth's best and each method's pick, then whether the truth
/// separates the candidates at all ([`separation`], `n` examples per accuracy).
pub(crate) fn answer(
    question: &str,
    names: &[String],
    scores: &[(String, Vec<f64>)],
    truth: &[f64],
    n: usize,
) -> String {
    let picks: Vec<String> = scores
        .iter()
        .map(|(m, s)| {
            let ranks = ranking::shared_ranks(s);
            let top = ranks.iter().copied().fold(f64::MAX, f64::min);
            let p: Vec<&str> = (0..s.len())
                .filter(|&i| ranks[i] == top)
                .map(|i| names[i].as_str())
                .collect();
            format!("{m} picks {}", p.join(" / "))
        })
        .collect();
    format!(
        "{question} Measured best: {} ({:.3}). {}. {}.",
        best_names(names, truth),
        truth.iter().copied().fold(f64::MIN, f64::max),
        picks.join("; "),
        separation(truth, n)
    )
}

fn best_names(names: &[String], truth: &[f64]) -> String {
    let best = truth.iter().copied().fold(f64::MIN, f64::max);
    names
        .iter()
        .zip(truth)
        .filter(|(_, t)| **t == best)
        .map(|(n, _)| n.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row per method: what it picks (ties listed), the truth of its pick, its share of the best.
pub(crate) fn picks_table(
    caption: &str,
    names: &[String],
    scores: &[(String, Vec<f64>)],
    truth: &[f64],
) -> Table {
    let mut t = Table::new(
        caption,
        &[
            "method",
            "picks",
            "truth of the pick",
            "of the best",
            "ranking (best first)",
        ],
    );
    for (method, s) in scores {
        let ranks = ranking::shared_ranks(s);
        let top = ranks.iter().copied().fold(f64::MAX, f64::min);
        let picks: Vec<&str> = (0..s.len())
            .filter(|&i| ranks[i] == top)
            .map(|i| names[i].as_str())
            .collect();
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
        t.row(vec![
            method.clone(),
            picks.join(" / "),
            format!("{:.3}", ranking::performance(s, truth)),
            format!("{:.0} %", ranking::rate(s, truth) * 100.0),
            order
                .iter()
                .map(|&i| names[i].as_str())
                .collect::<Vec<_>>()
                .join(" > "),
        ]);
    }
    t
}

/// Accuracy on the target's test split after fine-tuning `source` (or MiniLM itself)
/// on `transfer_examples` target examples; cached in `.fute/demo/transfer/`.
fn transfer_accuracy(
    demo: &Demo<'_>,
    target: &fute_core::dataset::Dataset,
    source: Option<&Source>,
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<f64> {
    let (from, base) = match source {
        Some(s) => (
            s.dir
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            s.dir.clone(),
        ),
        None => ("minilm".to_owned(), demo.minilm.clone()),
    };
    let opts = FinetuneOptions {
        epochs: 3,
        lr: 2e-4,
        batch_size: 16,
        max_len: 64,
        seed: SEED,
        limit: Some(demo.sizes.transfer_examples),
        eval_limit: Some(32),
        ..FinetuneOptions::default()
    };
    let key = format!(
        "{from}-to-{TARGET}-n{}-{}",
        demo.sizes.transfer_examples,
        settings_tag(&opts, &format!("eval {}", demo.sizes.transfer_eval))
    );
    let dir = demo.ctx.workspace.state_dir().join("demo").join("transfer");
    let result = dir.join(format!("{key}.json"));
    let provenance =
        serde_json::json!({"from": from, "target": TARGET, "options": format!("{opts:?}")});
    cached_accuracy(&result, provenance, || {
        let out = dir.join(&key);
        let what = source.map_or("MiniLM".to_owned(), |s| format!("the {} model", s.dataset));
        finetune(target, &base, &out, &opts, &mut |e| {
            if let Event::Step {
                step, total_steps, ..
            } = e
            {
                pb.set_message(format!("{what} → {TARGET}: step {step}/{total_steps}"));
            }
            Control::Continue
        })?;
        pb.set_message(format!("{what} → {TARGET}: measuring"));
        let acc = accuracy_on_test(demo, target, &out)?;
        // Only the number is needed again; a model folder is ~90 MB.
        let _ = std::fs::remove_dir_all(&out);
        Ok(acc)
    })
}

/// A short tag of every setting a cached result depends on (its options and `extra`), so
/// that changed settings never reuse a result made with other ones.
fn settings_tag(opts: &FinetuneOptions, extra: &str) -> String {
    let digest = fute_core::fsutil::sha256_hex(format!("{opts:?} {extra}").as_bytes());
    digest[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::separation;

    #[test]
    fn equal_accuracies_are_not_a_verdict() {
        // The --quick demo once measured 0.422 for every source and no transfer.
        let s = separation(&[0.422, 0.422, 0.422], 64);
        assert!(s.starts_with("The truth does not separate"), "{s}");
    }

    #[test]
    fn chance_spread_follows_the_binomial_error() {
        // 0.690 vs 0.555 on 200: gap 13.5 points > 2·√(.69·.31/200 + .555·.445/200) = 9.6.
        // 0.690 vs 0.655: gap 3.5 < 9.4, so the runner-up is within chance.
        let s = separation(&[0.655, 0.690, 0.560, 0.555], 200);
        assert!(
            s.starts_with("The best is within chance of the runner-up (3.5 points apart, ±9.4"),
            "{s}"
        );
        // Same accuracies on 20 reviews: no longer separated at all (±30.4 > 13.5).
        let s = separation(&[0.655, 0.690, 0.560, 0.555], 20);
        assert!(s.starts_with("The truth does not separate"), "{s}");
        let s = separation(&[0.9, 0.5], 200);
        assert!(s.starts_with("The best is ahead"), "{s}");
    }
}
