//! `fute data list|show|stats|import`.

use super::{print_json, spinner, user};
use crate::table::{thousands, Table};
use crate::Context;
use clap::{Subcommand, ValueEnum};
use fute_core::dataset::stats::stats;
use fute_core::dataset::{
    read_csv, read_jsonl, Dataset, DatasetCard, FieldMap, InputShape, Split, SplitConfig, Target,
    TaskSchema,
};
use fute_core::workspace::DatasetOrigin;
use serde::Serialize;
use std::path::PathBuf;

/// Dataset sub-commands.
#[derive(Subcommand)]
pub enum DataCmd {
    /// Every dataset: schema, classes, examples per split, rows dropped on import.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a few examples of a dataset.
    ///
    /// Example: fute data show imdb --n 3 --split dev
    Show {
        /// Dataset name (see `fute data list`).
        name: String,
        /// How many examples.
        #[arg(long, default_value_t = 5)]
        n: usize,
        /// Only this split (train, dev, test).
        #[arg(long)]
        split: Option<Split>,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Length distribution, label balance and split sizes of a dataset.
    Stats {
        /// Dataset name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import your own JSONL or CSV file as a workspace dataset (validated line by line).
    ///
    /// Examples:
    ///   fute data import reviews --file reviews.csv --schema classification \
    ///        --labels negative,positive --map text=review --map label=stars
    ///   fute data import my-qa --file qa.jsonl --schema extractive-qa
    #[command(verbatim_doc_comment)]
    Import {
        /// Name of the new dataset.
        name: String,
        /// The JSONL or CSV file (format from the extension unless --format).
        #[arg(long)]
        file: PathBuf,
        /// File format.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Task schema.
        #[arg(long, value_enum)]
        schema: SchemaArg,
        /// Label names, comma-separated, in index order (classification).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// CSV column mapping FIELD=COLUMN (fields: id, text, text_pair, label, value, question, context, answer, answer_start).
        #[arg(long = "map", value_name = "FIELD=COLUMN")]
        map: Vec<String>,
        /// Seed of the train/dev/test split.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Fraction of examples in dev.
        #[arg(long, default_value_t = 0.1)]
        dev: f64,
        /// Fraction of examples in test.
        #[arg(long, default_value_t = 0.1)]
        test: f64,
        /// Replace an existing workspace dataset of that name.
        #[arg(long)]
        force: bool,
    },
}

/// Input file formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// Task schemas on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum SchemaArg {
    /// Single-text classification.
    Classification,
    /// Text-pair classification.
    PairClassification,
    /// Single-text regression.
    Regression,
    /// Text-pair regression.
    PairRegression,
    /// Extractive question answering.
    ExtractiveQa,
}

/// Runs a data sub-command.
pub fn run(ctx: &Context, cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::List { json } => list(ctx, json),
        DataCmd::Show {
            name,
            n,
            split,
            json,
        } => show(ctx, &name, n, split, json),
        DataCmd::Stats { name, json } => stats_cmd(ctx, &name, json),
        DataCmd::Import {
            name,
            file,
            format,
            schema,
            labels,
            map,
            seed,
            dev,
            test,
            force,
        } => import(
            ctx,
            &name,
            &file,
            format,
            schema,
            labels,
            &map,
            SplitConfig { seed, dev, test },
            force,
        ),
    }
}

/// One row of `fute data list`.
#[derive(Serialize)]
pub struct DatasetRow {
    name: String,
    origin: DatasetOrigin,
    available: bool,
    schema: Option<String>,
    classes: Option<usize>,
    train: Option<usize>,
    dev: Option<usize>,
    test: Option<usize>,
    examples: Option<usize>,
    source_rows: Option<usize>,
    dropped: Option<usize>,
    fetch_with: Option<String>,
}

/// Rows of `fute data list` (imports packaged datasets on first use).
pub fn rows(ctx: &Context) -> anyhow::Result<Vec<DatasetRow>> {
    let entries = ctx.workspace.datasets()?;
    let pb = spinner("loading datasets");
    let mut rows = Vec::new();
    for e in entries {
        let mut row = DatasetRow {
            name: e.name.clone(),
            origin: e.origin,
            available: e.available,
            schema: None,
            classes: None,
            train: None,
            dev: None,
            test: None,
            examples: None,
            source_rows: None,
            dropped: None,
            fetch_with: e
                .asset
                .filter(|_| !e.available)
                .map(|a| format!("fute assets fetch {a}")),
        };
        if e.available {
            pb.set_message(format!("loading {}", e.name));
            let ds = ctx.workspace.load_dataset(&e.name)?;
            let sizes = |s: Split| ds.split(s).len();
            row.schema = Some(ds.card.schema.short_name().to_owned());
            row.classes = ds.card.schema.labels().map(<[String]>::len);
            row.train = Some(sizes(Split::Train));
            row.dev = Some(sizes(Split::Dev));
            row.test = Some(sizes(Split::Test));
            row.examples = Some(ds.examples.len());
            row.source_rows = ds.card.source_rows;
            row.dropped = Some(ds.card.dropped.iter().map(|d| d.count).sum());
        }
        rows.push(row);
    }
    pb.finish_and_clear();
    Ok(rows)
}

/// Prints the dataset table.
pub fn list(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let rows = rows(ctx)?;
    if json {
        return print_json(&rows);
    }
    let num = |v: Option<usize>| v.map(thousands).unwrap_or_else(|| "-".into());
    let mut t = Table::new(&[
        "DATASET",
        "ORIGIN",
        "SCHEMA",
        "CLASSES",
        "TRAIN",
        "DEV",
        "TEST",
        "EXAMPLES",
        "SOURCE ROWS",
        "DROPPED",
    ]);
    for r in &rows {
        let origin = match r.origin {
            DatasetOrigin::Workspace => "workspace",
            DatasetOrigin::Packaged => "packaged",
        };
        if !r.available {
            let hint = r.fetch_with.clone().unwrap_or_default();
            t.row(vec![
                r.name.clone(),
                origin.into(),
                format!("not fetched: {hint}"),
            ]);
            continue;
        }
        t.row(vec![
            r.name.clone(),
            origin.into(),
            r.schema.clone().unwrap_or_default(),
            num(r.classes),
            num(r.train),
            num(r.dev),
            num(r.test),
            num(r.examples),
            num(r.source_rows),
            num(r.dropped),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

fn show(
    ctx: &Context,
    name: &str,
    n: usize,
    split: Option<Split>,
    json: bool,
) -> anyhow::Result<()> {
    let ds = ctx.workspace.load_dataset(name)?;
    let picked: Vec<_> = ds
        .examples
        .iter()
        .filter(|e| split.is_none_or(|s| ds.split_of(e) == s))
        .take(n)
        .collect();
    if json {
        let subset = Dataset {
            card: ds.card.clone(),
            examples: picked.into_iter().cloned().collect(),
        };
        print!(
            "{}",
            String::from_utf8(fute_core::dataset::to_jsonl(
                &subset.examples,
                &subset.card.schema
            ))?
        );
        return Ok(());
    }
    println!(
        "{} — {} ({} examples)",
        ds.card.name,
        ds.card.schema.short_name(),
        thousands(ds.examples.len())
    );
    for ex in picked {
        println!("\n[{}] {}", ex.id, ds.split_of(ex));
        let names: &[&str] = match ex.input {
            fute_core::dataset::Input::Single(_) => &["text"],
            fute_core::dataset::Input::Pair(..) => &["text", "text_pair"],
            fute_core::dataset::Input::Qa { .. } => &["question", "context"],
        };
        for (field, seg) in names.iter().zip(ex.input.segments()) {
            println!("  {field:9} {}", clip(seg, 300));
        }
        let target = match &ex.target {
            Target::Label(i) => ds
                .card
                .schema
                .labels()
                .and_then(|l| l.get(*i))
                .cloned()
                .unwrap_or_default(),
            Target::Value(v) => v.to_string(),
            Target::Span(Some(s)) => format!("{:?} at character {}", s.text, s.start),
            Target::Span(None) => "(unanswerable)".into(),
        };
        println!("  → {target}");
    }
    Ok(())
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn stats_cmd(ctx: &Context, name: &str, json: bool) -> anyhow::Result<()> {
    let ds = ctx.workspace.load_dataset(name)?;
    let st = stats(&ds);
    if json {
        return print_json(&st);
    }
    println!("{} — {}", ds.card.name, ds.card.schema.short_name());
    if !ds.card.source.is_empty() {
        println!("source:  {}", ds.card.source);
    }
    if !ds.card.licence.is_empty() {
        println!("licence: {}", ds.card.licence);
    }
    if let Some(rows) = ds.card.source_rows {
        println!("source rows: {}", thousands(rows));
    }
    for d in &ds.card.dropped {
        println!("dropped: {} ({})", thousands(d.count), d.reason);
    }
    let s = |k: &str| st.split_sizes.get(k).copied().unwrap_or(0);
    println!(
        "splits:  train {}  dev {}  test {}",
        thousands(s("train")),
        thousands(s("dev")),
        thousands(s("test"))
    );
    if !st.label_counts.is_empty() {
        let mut t = Table::new(&["LABEL", "TRAIN", "DEV", "TEST", "ALL", "SHARE"]);
        let total = ds.examples.len() as f64;
        for (label, by) in &st.label_counts {
            let g = |k: &str| by.get(k).copied().unwrap_or(0);
            let all: usize = by.values().sum();
            t.row(vec![
                label.clone(),
                thousands(g("train")),
                thousands(g("dev")),
                thousands(g("test")),
                thousands(all),
                format!("{:.1}%", 100.0 * all as f64 / total),
            ]);
        }
        print!("\n{}", t.render());
    }
    if let Some((lo, mean, hi)) = st.value_range {
        println!("values:  min {lo:.3}  mean {mean:.3}  max {hi:.3}");
    }
    if st.unanswerable > 0 {
        println!("unanswerable: {}", thousands(st.unanswerable));
    }
    let mut t = Table::new(&["LENGTH", "MIN", "MEDIAN", "P90", "MAX", "MEAN"]);
    for (what, l) in [("characters", &st.chars), ("words", &st.words)] {
        if let Some(l) = l {
            t.row(vec![
                what.into(),
                thousands(l.min),
                thousands(l.p50),
                thousands(l.p90),
                thousands(l.max),
                format!("{:.1}", l.mean),
            ]);
        }
    }
    print!("\n{}", t.render());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn import(
    ctx: &Context,
    name: &str,
    file: &std::path::Path,
    format: Option<Format>,
    schema: SchemaArg,
    labels: Vec<String>,
    map: &[String],
    split: SplitConfig,
    force: bool,
) -> anyhow::Result<()> {
    let dir = ctx.workspace.dataset_dir(name)?;
    if !(0.0..1.0).contains(&(split.dev + split.test)) || split.dev < 0.0 || split.test < 0.0 {
        return Err(user(
            "--dev and --test must be fractions that sum to less than 1",
        ));
    }
    let schema = schema_from(schema, labels)?;
    let format = match format {
        Some(f) => f,
        None => match file.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("jsonl") | Some("json") => Format::Jsonl,
            _ => return Err(user(format!("cannot tell the format of {} from its extension; pass --format jsonl or --format csv", file.display()))),
        },
    };
    let examples = match format {
        Format::Jsonl => {
            if !map.is_empty() {
                return Err(user(
                    "--map applies to CSV files; JSONL records use the field names directly",
                ));
            }
            read_jsonl(file, &schema)?
        }
        Format::Csv => read_csv(file, &schema, &FieldMap::parse(map)?)?,
    };
    let mut card = DatasetCard::new(name, schema);
    card.source = file.display().to_string();
    card.split = split;
    let ds = Dataset { card, examples };
    if dir.exists() && !force {
        // A rerun (say after an interrupted import) of the same file with the same
        // settings finds the same dataset: nothing to do. Anything else needs --force.
        let same = ctx.workspace.load_dataset(name).is_ok_and(|old| {
            old.content_hash() == ds.content_hash()
                && serde_json::to_value(old.card.split).ok()
                    == serde_json::to_value(ds.card.split).ok()
        });
        if !same {
            return Err(user(format!(
                "dataset `{name}` already exists in {} with other content or settings; \
                 pass --force to replace it",
                dir.display()
            )));
        }
        eprintln!("dataset `{name}` is already imported from this file with these settings; nothing to do");
        return Ok(());
    }
    ds.save_dir(&dir)?;
    let sizes: Vec<String> = Split::ALL
        .iter()
        .map(|s| format!("{} {}", s, thousands(ds.split(*s).len())))
        .collect();
    println!(
        "imported {} examples into {} ({})",
        thousands(ds.examples.len()),
        dir.display(),
        sizes.join(", ")
    );
    Ok(())
}

/// The task schema named on the command line (classification needs `--labels`).
pub fn schema_from(schema: SchemaArg, labels: Vec<String>) -> anyhow::Result<TaskSchema> {
    let needs_labels = matches!(
        schema,
        SchemaArg::Classification | SchemaArg::PairClassification
    );
    if needs_labels && labels.is_empty() {
        return Err(user(
            "a classification dataset needs --labels, e.g. --labels negative,positive",
        ));
    }
    let schema = match schema {
        SchemaArg::Classification => TaskSchema::Classification {
            inputs: InputShape::Single,
            labels,
        },
        SchemaArg::PairClassification => TaskSchema::Classification {
            inputs: InputShape::Pair,
            labels,
        },
        SchemaArg::Regression => TaskSchema::Regression {
            inputs: InputShape::Single,
            range: None,
        },
        SchemaArg::PairRegression => TaskSchema::Regression {
            inputs: InputShape::Pair,
            range: None,
        },
        SchemaArg::ExtractiveQa => TaskSchema::ExtractiveQa,
    };
    schema.check().map_err(user)?;
    Ok(schema)
}
