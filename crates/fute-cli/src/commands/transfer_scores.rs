//! `fute transfer scores`: the embedding rows of the transfer table (FUTE + TaskEmb,
//! FUTE + TuPaTE, TextEmb), computed on a run folder's source models and written as
//! scores files that `fute transfer evaluate --scores` reads.

use std::path::PathBuf;

use clap::Args;
use fute::methods::Method;
use fute::surrogate::Surrogate;
use fute::transfer::embed_scores::{embedding_scores, EmbedScoreConfig};
use fute_core::embedding::Store;

use super::train::resolve_model;
use crate::Context;

/// Arguments of `fute transfer scores`.
#[derive(Args)]
pub struct ScoresArgs {
    /// The run folder (after `fute transfer run` and `collect`: its matrix.json and models/).
    pub run_dir: PathBuf,
    /// Rows to compute, comma-separated: fute-taskemb (target DTE vs source model MTE,
    /// square-of-mean Fisher), fute-tupate (the same with a 16-token prefix), textemb
    /// (target DTE vs source dataset DTE).
    #[arg(long, value_delimiter = ',', default_value = "fute-taskemb,fute-tupate,textemb",
          value_parser = ["fute-taskemb", "fute-tupate", "textemb"])]
    pub methods: Vec<String>,
    /// The surrogate every embedding goes through: a folder or an asset name.
    #[arg(long, default_value = "minilm", value_name = "DIR|ASSET")]
    pub surrogate: String,
    /// The corpus U the source models' MTEs are computed on (`fute corpus build NAME`).
    #[arg(long, default_value = "u", value_name = "NAME")]
    pub corpus: String,
    /// Inputs of U used (a seeded sample).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub u_limit: usize,
    /// Training examples per DTE (a seeded sample of each task's train split).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub dte_limit: usize,
    /// Seed of the samples and of every embedding's training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Plain cosine instead of the cosine after centring on the candidates' mean
    /// (rows named "… (plain cosine)", files RUN_DIR/scores/<method>-plain.json).
    #[arg(long)]
    pub plain: bool,
}

/// Computes each row and writes RUN_DIR/scores/<row>.json.
pub fn scores(ctx: &Context, a: ScoresArgs) -> anyhow::Result<()> {
    if a.u_limit == 0 || a.dte_limit == 0 {
        return Err(super::user("--u-limit and --dte-limit must be at least 1"));
    }
    let matrix_path = a.run_dir.join("matrix.json");
    let m = fute::transfer::Matrix::load(&matrix_path)?;
    let store = Store::open(&ctx.workspace.state_dir())?;
    let surrogate = Surrogate::open(&resolve_model(ctx, &a.surrogate)?)?;
    let needs_u = a.methods.iter().any(|m| m != "textemb");
    let corpus = if needs_u {
        let mut u = ctx.workspace.load_corpus(&a.corpus)?;
        u.keep_seeded_subset(a.u_limit, a.seed);
        u.card.name = format!("{}[{}]", a.corpus, u.inputs.len());
        Some(u)
    } else {
        None
    };
    let outputs_cache = ctx.workspace.state_dir().join("cache").join("outputs");
    let scores_dir = a.run_dir.join("scores");
    let mut written = Vec::new();
    for name in &a.methods {
        let (row, method) = row(name);
        // Each similarity rule is its own row and file, so both can be scored side by side.
        let (row, file) = if a.plain {
            (
                format!("{row} (plain cosine)"),
                format!("{name}-plain.json"),
            )
        } else {
            (row.to_owned(), format!("{name}.json"))
        };
        let cfg = EmbedScoreConfig {
            row: row.clone(),
            method: &method,
            store: &store,
            surrogate: &surrogate,
            corpus: corpus.as_ref(),
            outputs_cache: &outputs_cache,
            dte_examples: a.dte_limit,
            seed: a.seed,
            centre: !a.plain,
        };
        let pb = super::progress_bar(row.clone());
        let s = embedding_scores(
            &m,
            &a.run_dir,
            &cfg,
            &|t| Ok(ctx.workspace.load_dataset(t)?),
            &mut |done, total, what| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
                pb.set_message(format!("{row}: {what}"));
            },
        )?;
        pb.finish_and_clear();
        let path = scores_dir.join(file);
        fute::transfer::io::write_json(&path, &s)?;
        println!("{row}: wrote {}", path.display());
        written.push(path);
    }
    let mut hint = format!(
        "score them: fute transfer evaluate --matrix {}",
        matrix_path.display()
    );
    for p in &written {
        hint.push_str(&format!(" --scores {}", p.display()));
    }
    println!("{hint}");
    Ok(())
}

fn row(name: &str) -> (&'static str, Method) {
    match name {
        "fute-taskemb" => ("FUTE + TaskEmb", super::demo::fim_method()),
        "fute-tupate" => ("FUTE + TuPaTE", super::demo::prefix_method()),
        "textemb" => (
            "TextEmb",
            Method::TextEmb {
                max_len: 64,
                batch: 16,
            },
        ),
        other => unreachable!("clap restricts --methods, got {other}"),
    }
}
