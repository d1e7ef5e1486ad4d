//! `fute corpus build|list|show`.

use super::{print_json, spinner, user};
use crate::table::{thousands, Table};
use crate::Context;
use clap::{Subcommand, ValueEnum};
use fute_core::corpus::{build as build_corpus, CorpusShape, CorpusSpec, TEXT_SOURCES};

/// Corpus sub-commands.
#[derive(Subcommand)]
pub enum CorpusCmd {
    /// Build the unlabelled corpus U from text sources and/or dataset inputs (labels dropped).
    ///
    /// Examples:
    ///   fute corpus build u                       all unlabelled sources, 1000 each
    ///   fute corpus build u-sa --shape single --datasets tweets,spam-assassin --exclude imdb
    ///   fute corpus build u-nli --shape pair --from wordnet-examples --datasets vitaminc --per-source 100
    #[command(verbatim_doc_comment)]
    Build {
        /// Name of the corpus (stored in .fute/corpora/NAME).
        name: String,
        /// Unlabelled text sources, comma-separated (default: all of them; `none` for no source).
        #[arg(long = "from", value_delimiter = ',')]
        from: Vec<String>,
        /// Labelled datasets whose inputs join U, comma-separated.
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
        /// Datasets kept out of U (evaluation datasets), comma-separated.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        /// At most this many inputs per source or dataset.
        #[arg(long, default_value_t = 1000)]
        per_source: usize,
        /// At most this many inputs overall.
        #[arg(long)]
        max_total: Option<usize>,
        /// Seed of every shuffle.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Reshape inputs for a task family.
        #[arg(long, value_enum, default_value_t = ShapeArg::Any)]
        shape: ShapeArg,
        /// Replace an existing corpus of that name.
        #[arg(long)]
        force: bool,
        /// Print the corpus card as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the workspace's corpora and the available text sources.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a corpus's card and a few inputs.
    Show {
        /// Corpus name.
        name: String,
        /// How many inputs.
        #[arg(long, default_value_t = 5)]
        n: usize,
    },
}

/// Input shapes on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ShapeArg {
    /// Keep inputs as they are.
    Any,
    /// Single texts (sentiment-style models).
    Single,
    /// Text pairs (NLI-style models).
    Pair,
}

/// Runs a corpus sub-command.
pub fn run(ctx: &Context, cmd: CorpusCmd) -> anyhow::Result<()> {
    match cmd {
        CorpusCmd::Build {
            name,
            from,
            datasets,
            exclude,
            per_source,
            max_total,
            seed,
            shape,
            force,
            json,
        } => {
            let sources = match from.as_slice() {
                [] => TEXT_SOURCES.iter().map(|s| s.name.to_owned()).collect(),
                [none] if none == "none" => Vec::new(),
                _ => from,
            };
            let shape = match shape {
                ShapeArg::Any => CorpusShape::Any,
                ShapeArg::Single => CorpusShape::Single,
                ShapeArg::Pair => CorpusShape::Pair,
            };
            let spec = CorpusSpec {
                sources,
                datasets,
                exclude,
                per_source,
                max_total,
                seed,
                shape,
            };
            build(ctx, &name, &spec, force, json)
        }
        CorpusCmd::List { json } => list(ctx, json),
        CorpusCmd::Show { name, n } => show(ctx, &name, n),
    }
}

/// Builds and saves a corpus, printing its card.
pub fn build(
    ctx: &Context,
    name: &str,
    spec: &CorpusSpec,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let dir = ctx.workspace.corpus_dir(name)?;
    let pb = spinner(format!("building corpus {name}"));
    let corpus = build_corpus(name, spec, ctx.workspace.assets_root(), |d| {
        ctx.workspace.load_dataset(d)
    })?;
    if dir.exists() && !force {
        // A rerun (say after an interrupted run) with the same settings and data
        // finds the same corpus: nothing to do. Anything else needs --force.
        let same = ctx
            .workspace
            .load_corpus(name)
            .is_ok_and(|old| old.card.hash == corpus.card.hash);
        pb.finish_and_clear();
        if !same {
            return Err(user(format!(
                "corpus `{name}` already exists in {} with other settings or data; \
                 pass --force to rebuild it",
                dir.display()
            )));
        }
        eprintln!("corpus `{name}` is already built with these settings and data; nothing to do");
    } else {
        corpus.save_dir(&dir)?;
        pb.finish_and_clear();
    }
    if json {
        return print_json(&corpus.card);
    }
    let mut t = Table::new(&["SOURCE", "INPUTS"]);
    for (s, n) in &corpus.card.per_source {
        t.row(vec![s.clone(), thousands(*n)]);
    }
    print!("{}", t.render());
    println!(
        "corpus `{name}`: {} inputs, hash {}",
        thousands(corpus.card.size),
        corpus.card.hash
    );
    println!("saved to {}", dir.display());
    Ok(())
}

fn list(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let names = ctx.workspace.corpora()?;
    let cards: Vec<_> = names
        .iter()
        .map(|n| ctx.workspace.load_corpus(n).map(|c| c.card))
        .collect::<Result<_, _>>()?;
    if json {
        return print_json(&cards);
    }
    let mut t = Table::new(&["CORPUS", "INPUTS", "SHAPE", "SEED", "HASH"]);
    for c in &cards {
        t.row(vec![
            c.name.clone(),
            thousands(c.size),
            format!("{:?}", c.spec.shape).to_lowercase(),
            c.spec.seed.to_string(),
            c.hash[..16].to_owned(),
        ]);
    }
    if cards.is_empty() {
        println!("no corpus yet; build one with `fute corpus build u`");
    } else {
        print!("{}", t.render());
    }
    let mut s = Table::new(&["TEXT SOURCE", "ASSET", "DESCRIPTION"]);
    for src in TEXT_SOURCES {
        s.row(vec![
            src.name.into(),
            src.asset.into(),
            src.description.into(),
        ]);
    }
    print!("\n{}", s.render());
    Ok(())
}

fn show(ctx: &Context, name: &str, n: usize) -> anyhow::Result<()> {
    let c = ctx.workspace.load_corpus(name)?;
    println!("{}", serde_json::to_string_pretty(&c.card)?);
    for i in c.inputs.iter().take(n) {
        println!("[{}] {}", i.source, i.segments.join("  ||  "));
    }
    Ok(())
}
