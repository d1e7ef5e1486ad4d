//! `fute embed dataset|model`: compute DTEs and MTEs into the workspace store.

use crate::Context;
use clap::{Args, Subcommand, ValueEnum};
use fute::embed::{embed, EmbedRequest};
use fute::methods::Method;
use fute::probe::ProbeSet;
use fute::surrogate::{resolve_model_dir, Surrogate};
use fute_core::dataset::Split;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
use std::collections::BTreeMap;

/// What to embed.
#[derive(Subcommand)]
pub enum EmbedCmd {
    /// Dataset task embedding (DTE) of a labelled dataset.
    ///
    /// Examples:
    ///   fute embed dataset imdb --method textemb --limit 1000
    ///   fute embed dataset tweets --surrogate minilm --method textemb --split train
    #[command(verbatim_doc_comment)]
    Dataset {
        /// Dataset name (see `fute data list`).
        name: String,
        #[command(flatten)]
        common: CommonArgs,
        /// Which split's gold pairs to use.
        #[arg(long, default_value = "train")]
        split: Split,
    },
}

/// Flags shared by every embedding request.
#[derive(Args)]
pub struct CommonArgs {
    /// Surrogate model: a model asset name or a Hugging Face folder. It defines the space.
    #[arg(long, default_value = "minilm")]
    pub surrogate: String,
    /// Embedding method.
    #[arg(long, value_enum, default_value_t = MethodArg::Textemb)]
    pub method: MethodArg,
    /// Maximum tokens per input.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Use at most N examples (a seeded random subset).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Store the vector in 16-bit floats (half the space).
    #[arg(long)]
    pub f16: bool,
    /// Print the stored record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Methods on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// Mean-pooled final-layer states of the pre-trained surrogate (Vu et al.'s TextEmb).
    Textemb,
}

impl CommonArgs {
    fn method(&self) -> Method {
        match self.method {
            MethodArg::Textemb => Method::TextEmb {
                max_len: self.max_len,
                batch: self.batch,
            },
        }
    }
}

/// Runs an embed sub-command.
pub fn run(ctx: &Context, cmd: EmbedCmd) -> anyhow::Result<()> {
    match cmd {
        EmbedCmd::Dataset {
            name,
            common,
            split,
        } => {
            let ds = ctx.workspace.load_dataset(&name)?;
            let probe = ProbeSet::from_dataset(&ds, split, common.limit, common.seed)?;
            let surrogate = Surrogate::open(&resolve_model_dir(&common.surrogate, &ctx.assets)?)?;
            let store = Store::open(&ctx.workspace.state_dir())?;
            let extra = BTreeMap::from([
                ("dataset_hash".into(), ds.content_hash().into()),
                ("split".into(), split.as_str().into()),
                (
                    "surrogate_dir".into(),
                    surrogate.dir.display().to_string().into(),
                ),
            ]);
            let subject = Subject {
                kind: SubjectKind::Dataset,
                name: name.clone(),
                hash: probe.hash(),
            };
            let method = common.method();
            let pb = super::spinner(format!(
                "{} DTE of {name} ({} examples)",
                method.name(),
                probe.len()
            ));
            let out = embed(
                &store,
                &surrogate,
                EmbedRequest {
                    subject,
                    kind: EmbeddingKind::Dte,
                    probe: &probe,
                    method: &method,
                    seed: common.seed,
                    corpus: None,
                    dtype: if common.f16 {
                        StoredDType::F16
                    } else {
                        StoredDType::F32
                    },
                    extra,
                },
            )?;
            pb.finish_and_clear();
            report(&out, common.json)
        }
    }
}

fn report(out: &fute::embed::Embedded, json: bool) -> anyhow::Result<()> {
    if json {
        return super::print_json(&out.record);
    }
    let r = &out.record;
    let how = if out.cached {
        "already in the store (nothing computed)".to_owned()
    } else {
        format!("computed in {:.1} s", r.meta.wall_seconds)
    };
    println!(
        "{}  {} {} of {}  dim {}  {how}",
        r.id,
        r.meta.space.method,
        r.meta.kind.as_str().to_uppercase(),
        r.meta.subject.name,
        r.dim
    );
    Ok(())
}
