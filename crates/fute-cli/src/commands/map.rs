//! `fute map`: stored embeddings of one space drawn in two dimensions (PCA and t-SNE)
//! as PNG, SVG and an HTML explorer.

use crate::Context;
use clap::Args;
use fute::map::{MapOptions, TaskMap, TsneSettings};
use fute::report::{Report, Table};
use fute_core::embedding::{EmbeddingRecord, ListFilter, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `fute map` options.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
fute map --method fim                     # every fim embedding (must be one space)\n  \
fute map --space 3f2a9c1b --kind dte      # the DTEs of one space (key from `fute ls`)\n  \
fute map 4b1e0c 9d2f11 77aa03 --out maps/ # these embeddings\n\n\
Writes map-pca.{png,svg}, map-tsne.{png,svg}, map.csv, map.json and map.html (an explorer:\n\
hover a point for its nearest neighbours; works from a file, no server).")]
pub struct MapArgs {
    /// Embedding ids (or unique prefixes); default: every embedding the filters select.
    ids: Vec<String>,
    /// Only this space (its key, or a prefix of it, as `fute ls` shows it).
    #[arg(long)]
    space: Option<String>,
    /// Only this method (`fim`, `prefix`, …).
    #[arg(long)]
    method: Option<String>,
    /// Only DTEs or only MTEs.
    #[arg(long, value_enum)]
    kind: Option<super::store::KindArg>,
    /// Cosines of the raw vectors instead of centred ones (t-SNE and neighbours).
    #[arg(long)]
    no_centre: bool,
    /// Upper bound on the t-SNE perplexity (the one used is at most (n − 1)/3).
    #[arg(long, default_value_t = 30.0)]
    perplexity: f64,
    /// t-SNE iterations.
    #[arg(long, default_value_t = 1000)]
    epochs: usize,
    /// Output folder (default: <workspace>/.fute/maps/<space key>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Title of the pictures and page.
    #[arg(long)]
    title: Option<String>,
}

/// `fute map`.
pub fn run(ctx: &Context, args: MapArgs) -> anyhow::Result<()> {
    let store = Store::open(&ctx.workspace.state_dir())?;
    let records = select(&store, &args)?;
    if args.perplexity.is_nan() || args.perplexity <= 0.0 || args.epochs == 0 {
        return Err(super::user(
            "--perplexity must be > 0 and --epochs ≥ 1 (try the defaults: 30 and 1000)",
        ));
    }
    let opts = MapOptions {
        centre: !args.no_centre,
        tsne: TsneSettings {
            max_perplexity: args.perplexity,
            epochs: args.epochs,
        },
        ..MapOptions::default()
    };
    let pb = super::spinner(format!(
        "mapping {} embeddings (Gram matrix, PCA, t-SNE)",
        records.len()
    ));
    let map = TaskMap::build(&store, &records, Some(&ctx.workspace), &opts)?;
    pb.finish_and_clear();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| ctx.workspace.state_dir().join("maps").join(&map.space_key));
    let title = args.title.clone().unwrap_or_else(|| {
        format!(
            "Task map: {} embeddings, method {}",
            map.points.len(),
            map.method
        )
    });
    let files = fute::map::write_files(&map, &out, "map", &title)?;
    let mut report = Report::new(title.clone());
    report
        .provenance
        .settings
        .insert("centred cosines".into(), opts.centre.into());
    report
        .provenance
        .settings
        .insert("t-SNE perplexity".into(), map.perplexity.into());
    report
        .provenance
        .settings
        .insert("t-SNE iterations".into(), opts.tsne.epochs.into());
    report
        .provenance
        .hashes
        .insert("space".into(), map.space_key.clone());
    report
        .provenance
        .hashes
        .insert("surrogate".into(), records[0].meta.space.surrogate.clone());
    report.section("Map").map(title, "map", map.clone());
    report.section("Points").table(points_table(&map));
    let html = out.join("map.html");
    fute_core::fsutil::write_atomic(&html, report.render().as_bytes())?;
    for p in files.png.iter().chain(&files.svg) {
        println!("wrote {}", p.display());
    }
    println!("wrote {}", files.csv.display());
    println!("wrote {}", files.json.display());
    if let Some(why) = &files.png_skipped {
        eprintln!("note: no PNG: {why}");
    }
    println!("wrote {} (open it in a browser)", html.display());
    Ok(())
}

/// The map's points with their nearest neighbour.
pub fn points_table(map: &TaskMap) -> Table {
    let mut t = Table::new(
        format!(
            "{} points; {} cosine to the nearest other point",
            map.points.len(),
            if map.centred { "centred" } else { "plain" }
        ),
        &[
            "label",
            "kind",
            "class",
            "architecture",
            "id",
            "nearest",
            "cosine",
        ],
    );
    for (i, p) in map.points.iter().enumerate() {
        let (nn, c) = map.neighbours[i]
            .first()
            .map_or((String::new(), String::new()), |&(j, c)| {
                (map.points[j].label.clone(), format!("{c:.3}"))
            });
        t.row(vec![
            p.label.clone(),
            p.marker.describe().into(),
            p.class.as_str().into(),
            p.architecture.clone().unwrap_or_default(),
            p.id.clone(),
            nn,
            c,
        ]);
    }
    t
}

fn select(store: &Store, args: &MapArgs) -> anyhow::Result<Vec<EmbeddingRecord>> {
    let mut recs: Vec<EmbeddingRecord> = if args.ids.is_empty() {
        store.list(&ListFilter {
            kind: args.kind.map(Into::into),
            method: args.method.clone(),
            ..Default::default()
        })?
    } else {
        args.ids
            .iter()
            .map(|i| store.get(i))
            .collect::<Result<_, _>>()?
    };
    if let Some(prefix) = &args.space {
        recs.retain(|r| r.meta.space.key().starts_with(prefix.as_str()));
    }
    if recs.is_empty() {
        return Err(super::user(
            "no stored embedding matches; `fute ls` lists them (SPACE column = --space)",
        ));
    }
    let mut spaces: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for r in &recs {
        spaces
            .entry(r.meta.space.key())
            .or_insert_with(|| (r.meta.space.method.clone(), 0))
            .1 += 1;
    }
    if spaces.len() > 1 {
        let list: Vec<String> = spaces
            .iter()
            .map(|(k, (m, n))| format!("{} ({m}, {n} embeddings)", &k[..8]))
            .collect();
        return Err(super::user(format!(
            "the selection spans {} spaces, and a map shows one: {}; add --space KEY",
            spaces.len(),
            list.join(", ")
        )));
    }
    Ok(recs)
}
