//! `fute ls|show|export|similarity|rank`: the embeddings in the workspace store.

use super::print_json;
use crate::table::Table;
use crate::Context;
use clap::{Args, ValueEnum};
use fute_core::embedding::candidates::{select, CandidateRules, Selection};
use fute_core::embedding::export::{export, ExportFormat};
use fute_core::embedding::store::RankOptions;
use fute_core::embedding::{EmbeddingKind, EmbeddingRecord, ListFilter, Store};
use std::path::PathBuf;

/// `fute ls` options.
#[derive(Args)]
pub struct LsArgs {
    /// Only DTEs or MTEs.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Only this method.
    #[arg(long)]
    method: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// DTE or MTE on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// Dataset task embeddings.
    Dte,
    /// Model task embeddings.
    Mte,
}

impl From<KindArg> for EmbeddingKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Dte => EmbeddingKind::Dte,
            KindArg::Mte => EmbeddingKind::Mte,
        }
    }
}

/// `fute export` options.
#[derive(Args)]
pub struct ExportArgs {
    /// Embedding id (or a unique prefix).
    id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Safetensors)]
    format: FormatArg,
    /// Output file (default: <id>.<format>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Export formats on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// One float32 array (components concatenated).
    Npy,
    /// One tensor per component, provenance in the metadata.
    Safetensors,
    /// Provenance and values as JSON.
    Json,
}

/// Ranking rules.
#[derive(Clone, Copy, ValueEnum)]
pub enum ByArg {
    /// Cosine similarity (optionally centred, optionally fused over components).
    Cosine,
    /// Number of examples of each candidate's subject, largest first.
    Datasize,
    /// RRF of the candidates' loss-curve slopes (embeddings made with --method curvegrad).
    Curvegrad,
}

/// `fute rank` options.
#[derive(Args)]
pub struct RankArgs {
    /// The target embedding (id or prefix).
    #[arg(long)]
    target: String,
    /// Candidate ids, comma-separated (default: every embedding in the target's space).
    #[arg(long, value_delimiter = ',')]
    candidates: Vec<String>,
    /// Only candidates of this kind.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Subtract the candidates' mean vector first (spreads the near-1 cosines of these embeddings).
    #[arg(long)]
    centre: bool,
    /// Rank per component and fuse with reciprocal rank fusion (k = 60).
    #[arg(long)]
    fuse: bool,
    /// Show only the best K.
    #[arg(long)]
    top: Option<usize>,
    /// Ranking rule: cosine similarity to the target, or the target-independent
    /// baselines DataSize (most examples first) and CurveGrad (RRF of loss-curve slopes).
    #[arg(long, value_enum, default_value_t = ByArg::Cosine)]
    by: ByArg,
    /// Keep other embeddings of the target's own dataset or model (other seeds or
    /// limits), which are left out by default because they trivially rank first.
    #[arg(long)]
    include_self: bool,
    /// Candidates made with other seeds than the target are refused; with this flag
    /// each seed's candidates are compared with the target's embedding of that seed
    /// and the scores averaged per subject.
    #[arg(long)]
    average_seeds: bool,
    /// Rank only the MTEs made on this corpus U (name or hash prefix) [default: the
    /// target's corpus, or the only one among the candidates].
    #[arg(long)]
    corpus: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `fute similarity` options.
#[derive(Args)]
pub struct SimilarityArgs {
    /// First embedding (id or prefix).
    a: String,
    /// Second embedding (id or prefix).
    b: String,
    /// Embeddings of different seeds are refused; with this flag the cosine is
    /// averaged over every seed for which both subjects have an embedding.
    #[arg(long)]
    average_seeds: bool,
}

fn open(ctx: &Context) -> anyhow::Result<Store> {
    Ok(Store::open(&ctx.workspace.state_dir())?)
}

/// `fute ls`.
pub fn ls(ctx: &Context, args: LsArgs) -> anyhow::Result<()> {
    let store = open(ctx)?;
    let recs = store.list(&ListFilter {
        kind: args.kind.map(Into::into),
        method: args.method,
        ..Default::default()
    })?;
    if args.json {
        return print_json(&recs);
    }
    if recs.is_empty() {
        println!("no embeddings yet; try `fute embed dataset tweets --limit 500`");
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID", "KIND", "SUBJECT", "METHOD", "SPACE", "DIM", "EXAMPLES", "SEED", "SECONDS", "CREATED",
    ]);
    for r in &recs {
        t.row(vec![
            r.id.clone(),
            r.meta.kind.as_str().into(),
            r.meta.subject.name.clone(),
            r.meta.space.method.clone(),
            r.meta.space.key()[..8].to_owned(),
            r.dim.to_string(),
            r.meta
                .extra
                .get("probe_examples")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            r.meta.seed.to_string(),
            format!("{:.1}", r.meta.wall_seconds),
            r.created_at.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `fute show ID`.
pub fn show(ctx: &Context, id: &str) -> anyhow::Result<()> {
    let store = open(ctx)?;
    let rec = store.get(id)?;
    let comps = store.components(&rec)?;
    if let Some(fit) = rec.meta.extra.get("surrogate_fit") {
        // The JSON below holds it too; say it in words where a person looks.
        if let Ok(fit) = serde_json::from_value::<fute::fit::SurrogateFit>(fit.clone()) {
            let line = fit.agreement.as_ref().map_or_else(
                || format!("final train loss {:.4}", fit.final_train_loss),
                |c| {
                    format!(
                        "{}; final train loss {:.4}",
                        c.summary(),
                        fit.final_train_loss
                    )
                },
            );
            eprintln!("surrogate fit: {line}");
            if let Some(w) = fit.warning() {
                eprintln!("warning: {w}");
            }
        }
    }
    let v = serde_json::json!({"record": rec, "components": comps});
    print_json(&v)
}

/// `fute export`.
pub fn export_cmd(ctx: &Context, args: ExportArgs) -> anyhow::Result<()> {
    let store = open(ctx)?;
    let rec = store.get(&args.id)?;
    let (format, ext) = match args.format {
        FormatArg::Npy => (ExportFormat::Npy, "npy"),
        FormatArg::Safetensors => (ExportFormat::Safetensors, "safetensors"),
        FormatArg::Json => (ExportFormat::Json, "json"),
    };
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.{ext}", rec.id)));
    export(&store, &rec, format, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `fute similarity A B`.
pub fn similarity(ctx: &Context, args: SimilarityArgs) -> anyhow::Result<()> {
    let store = open(ctx)?;
    let (a, b) = (store.get(&args.a)?, store.get(&args.b)?);
    let show = |r: &EmbeddingRecord| format!("{} {}", r.meta.subject.name, r.meta.kind.as_str());
    if !args.average_seeds {
        if a.meta.seed != b.meta.seed {
            return Err(super::user(format!(
                "{} ({}) was made with seed {} and {} ({}) with seed {}; a tuned vector is its seeded initialisation plus what training moved, so vectors of different seeds are not comparable. Recompute one with the other's --seed, or pass --average-seeds",
                a.id, show(&a), a.meta.seed, b.id, show(&b), b.meta.seed
            )));
        }
        let s = store.similarity(&a, &b)?;
        println!("{s:.6}  cos({}, {})", show(&a), show(&b));
        return Ok(());
    }
    let (sa, sb) = (store.seed_siblings(&a)?, store.seed_siblings(&b)?);
    let mut sims = Vec::new();
    for (seed, ra) in &sa {
        if let Some(rb) = sb.get(seed) {
            sims.push((*seed, store.similarity(ra, rb)?));
        }
    }
    if sims.is_empty() {
        return Err(super::user(format!(
            "no seed has embeddings of both: {} has seeds {:?}, {} has seeds {:?}",
            show(&a),
            sa.keys().collect::<Vec<_>>(),
            show(&b),
            sb.keys().collect::<Vec<_>>()
        )));
    }
    let mean = sims.iter().map(|(_, s)| s).sum::<f64>() / sims.len() as f64;
    let seeds: Vec<String> = sims.iter().map(|(s, _)| s.to_string()).collect();
    println!(
        "{mean:.6}  cos({}, {}), mean over seeds {}",
        show(&a),
        show(&b),
        seeds.join(", ")
    );
    Ok(())
}

/// `fute rank`.
pub fn rank(ctx: &Context, args: RankArgs) -> anyhow::Result<()> {
    let store = open(ctx)?;
    let target = store.get(&args.target)?;
    if matches!(args.by, ByArg::Curvegrad) && target.meta.space.method != "curvegrad" {
        return Err(super::user(format!(
            "--by curvegrad ranks curvegrad embeddings, but the target {} was made with `{}`",
            target.id, target.meta.space.method
        )));
    }
    let candidates: Vec<EmbeddingRecord> = if args.candidates.is_empty() {
        store.list(&ListFilter {
            kind: args.kind.map(Into::into),
            space_key: Some(target.meta.space.key()),
            ..Default::default()
        })?
    } else {
        args.candidates
            .iter()
            .map(|c| store.get(c))
            .collect::<Result<_, _>>()?
    };
    let mut rules = CandidateRules {
        include_self: args.include_self,
        average_seeds: args.average_seeds,
        corpus: args.corpus.clone(),
    };
    let selection: Selection = match args.by {
        ByArg::Cosine => store.select(&target, &candidates, &rules)?,
        // DataSize and CurveGrad read no target vector, so any seed may be ranked.
        ByArg::Datasize | ByArg::Curvegrad => {
            rules.average_seeds = true;
            select(&target, &candidates, &rules, &mut |_| {
                Ok(Some(target.clone()))
            })?
        }
    };
    for note in &selection.notes {
        eprintln!("note: {note}");
    }
    let chosen: Vec<EmbeddingRecord> = selection
        .groups
        .iter()
        .flat_map(|g| g.candidates.iter().cloned())
        .collect();
    let mut ranked = match args.by {
        ByArg::Cosine => store.rank_selection(
            &selection,
            RankOptions {
                centre: args.centre,
                fuse_components: args.fuse,
            },
        )?,
        ByArg::Datasize => store.rank_by_datasize(&target, &chosen)?,
        ByArg::Curvegrad => store.rank_by_component_values(&target, &chosen)?,
    };
    if let Some(k) = args.top {
        ranked.truncate(k);
    }
    if args.json {
        return print_json(&ranked);
    }
    println!(
        "target {} ({} {}):",
        target.id,
        target.meta.subject.name,
        target.meta.kind.as_str()
    );
    let header = match args.by {
        ByArg::Cosine if args.fuse => "RRF",
        ByArg::Cosine => "COSINE",
        ByArg::Datasize => "EXAMPLES",
        ByArg::Curvegrad => "RRF",
    };
    let averaged = ranked.iter().any(|r| !r.seeds.is_empty());
    let mut cols = vec!["RANK", "ID", "KIND", "SUBJECT", header];
    if averaged {
        cols.push("SEEDS");
    }
    let mut t = Table::new(&cols);
    for (i, r) in ranked.iter().enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            r.id.clone(),
            r.kind.as_str().into(),
            r.name.clone(),
            if matches!(args.by, ByArg::Datasize) {
                format!("{:.0}", r.score)
            } else {
                format!("{:.4}", r.score)
            },
        ];
        if averaged {
            let seeds: Vec<String> = r.seeds.iter().map(u64::to_string).collect();
            row.push(seeds.join(","));
        }
        t.row(row);
    }
    print!("{}", t.render());
    Ok(())
}
