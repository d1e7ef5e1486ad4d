//! `fute embed dataset|model`: compute DTEs and MTEs into the workspace store.

use crate::Context;
use clap::{Args, Subcommand, ValueEnum};
use fute::embed::{dte_subject, embed, EmbedRequest, Embedded};
use fute::methods::fim::{FimComponents, FimConfig};
use fute::methods::peft::{default_lr, PeftMethod};
use fute::methods::surrogate_training::SurrogateTraining;
use fute::methods::Method;
use fute::model_outputs::{mte_probe, SubjectModel};
use fute::probe::ProbeSet;
use fute::prompted::PromptedLlm;
use fute::surrogate::{resolve_model_dir, Surrogate};
use fute_core::corpus::ModelInput;
use fute_core::dataset::Split;
use fute_core::embedding::{EmbeddingKind, Store, StoredDType, Subject, SubjectKind};
use fute_nn::fisher::FisherVariant;
use fute_nn::peft::{LoraConfig, PeftConfig, PrefixConfig, PromptConfig, Reduce};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What to embed.
#[derive(Subcommand)]
pub enum EmbedCmd {
    /// Dataset task embedding (DTE): the method on the surrogate trained on the dataset's gold pairs.
    ///
    /// Examples:
    ///   fute embed dataset imdb --method textemb --limit 1000
    ///   fute embed dataset tweets --method fim --fisher per-example --limit 500 --epochs 1
    ///   fute embed dataset tweets --method prefix --prefix-len 16 --limit 300 --epochs 3
    #[command(verbatim_doc_comment)]
    Dataset {
        /// Dataset name (see `fute data list`); or give --data.
        #[arg(required_unless_present = "data")]
        name: Option<String>,
        /// Embed a JSONL file of normalised records instead (all its examples; see the README).
        #[arg(long, conflicts_with = "name", requires = "schema")]
        data: Option<PathBuf>,
        /// Schema of the --data file.
        #[arg(long, value_enum)]
        schema: Option<super::data::SchemaArg>,
        /// Label names of the --data file, comma-separated (classification).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Embedding method.
        #[arg(long, value_enum, default_value_t = MethodArg::Fim)]
        method: MethodArg,
        #[command(flatten)]
        common: CommonArgs,
        /// Which split's gold pairs to use.
        #[arg(long, default_value = "train")]
        split: Split,
    },
    /// Model task embedding (MTE): label the corpus U with the model, train the surrogate on that.
    ///
    /// Example:
    ///   fute corpus build u --per-source 200
    ///   fute embed model runs/imdb-minilm --corpus u --method fim --limit 500
    #[command(verbatim_doc_comment)]
    Model {
        /// A fine-tuned model folder (from `fute train` or transformers' save_pretrained).
        dir: PathBuf,
        /// The unlabelled corpus U (see `fute corpus build`).
        #[arg(long)]
        corpus: String,
        /// Embedding method (one that trains the surrogate on the targets).
        #[arg(long, value_enum, default_value_t = MethodArg::Fim)]
        method: MethodArg,
        /// How the model reads its input, when its folder does not record it (models
        /// from `fute train` do): each corpus row is shaped to it (paper §2.4).
        #[arg(long, value_enum)]
        input: Option<InputArg>,
        /// Examples the model was fine-tuned on (its DataSize for `fute rank --by
        /// datasize`), when its folder does not record it.
        #[arg(long)]
        data_size: Option<usize>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// MTE of an LLM driven by a prompt: label U with its label distributions, train the surrogate on that.
    ///
    /// Examples:
    ///   fute corpus build u-sa --shape single --exclude imdb,rotten-tomatoes --per-source 50
    ///   fute embed llm --prompt-set sa --prompt 3 --corpus u-sa --method fim
    ///   fute embed llm --backend http --url http://127.0.0.1:8080 --model smollm2 --prompt-set sa --prompt 3 --corpus u-sa
    #[command(verbatim_doc_comment)]
    Llm {
        /// Prompt set: a built-in name (sa, nli) or a .toml/.json file.
        #[arg(long, default_value = "sa")]
        prompt_set: String,
        /// Which prompt of the set (0-based; see `fute prompts list`).
        #[arg(long)]
        prompt: usize,
        /// The task-shaped unlabelled corpus U (see `fute corpus build --shape`).
        #[arg(long)]
        corpus: String,
        /// Embedding method (one that trains the surrogate on the targets).
        #[arg(long, value_enum, default_value_t = MethodArg::Fim)]
        method: MethodArg,
        #[command(flatten)]
        llm: super::llm::LlmArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Flags shared by every embedding request.
#[derive(Args)]
pub struct CommonArgs {
    /// Surrogate model: a model asset name or a Hugging Face folder. It defines the space.
    #[arg(long, default_value = "minilm")]
    pub surrogate: String,
    /// Maximum tokens per input.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Use at most N examples (a seeded random subset).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of every random choice (subset, head initialisation, shuffling, sampled labels).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Store the vector in 16-bit floats (half the space).
    #[arg(long)]
    pub f16: bool,
    /// Print the stored record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Epochs of surrogate fine-tuning before the embedding is read (fim).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Peak learning rate of that fine-tuning [default: 2e-5 for fim and curvegrad,
    /// 1e-2 for prefix and prompt-tuning, 1e-3 for lora and bitfit].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Micro-batch size of fine-tuning (and of TextEmb's forward passes).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Fisher definition: FUTE's square-of-mean (the "FUTE + TaskEmb" of the paper),
    /// the exact per-example Fisher, or Vu et al.'s per-batch.
    #[arg(long, value_enum, default_value_t = FisherArg::SquareOfMean)]
    pub fisher: FisherArg,
    /// Batch size of the per-batch Fisher (and of the square-of-mean pass, whose value does not depend on it).
    #[arg(long, default_value_t = 8)]
    pub fisher_batch: usize,
    /// Gold labels (empirical Fisher) or labels sampled from the surrogate.
    #[arg(long, value_enum, default_value_t = LabelsArg::Gold)]
    pub fisher_labels: LabelsArg,
    /// Draws per example with --fisher-labels sampled.
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// Which Fisher components.
    #[arg(long, value_enum, default_value_t = ComponentsArg::Encoder)]
    pub components: ComponentsArg,
    /// Only these encoder layers, comma-separated (0-based).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// Prefix length (prefix) or number of soft tokens (prompt-tuning).
    #[arg(long, default_value_t = 16)]
    pub prefix_len: usize,
    /// Reparameterise the prefix by an MLP (TuPaTE's --prefix_projection).
    #[arg(long)]
    pub projection: bool,
    /// Width of that MLP.
    #[arg(long, default_value_t = 512)]
    pub projection_dim: usize,
    /// Dropout on the prefixes during training (FUTE 0.15, TuPaTE 0.1).
    #[arg(long, default_value_t = fute::methods::label::FUTE_PREFIX_DROPOUT)]
    pub prefix_dropout: f64,
    /// How a prefix / prompt table becomes a vector [default: layers for prefix, positions for prompt-tuning].
    #[arg(long, value_enum)]
    pub reduce: Option<ReduceArg>,
    /// LoRA rank r.
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// LoRA scale numerator: updates are (alpha / r)·B·A·x.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Linear maps of every layer that get LoRA adapters, comma-separated, by
    /// HF name: a layer-relative name (`attention.self.query`, `output.dense`),
    /// a last component (`query`, `value`, `dense`) or a module
    /// (`intermediate`, `output`); checked against the surrogate's linears.
    #[arg(long, value_delimiter = ',', default_value = "query,value")]
    pub lora_targets: Vec<String>,
    /// OS threads of the Fisher pass.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Loss against soft targets (MTEs of classifiers and prompted LLMs), in training
    /// and in the Fisher pass: BCE-with-logits as the FUTE reference, or soft cross-entropy.
    #[arg(long, value_enum, default_value_t = SoftLossArg::Bce)]
    pub soft_loss: SoftLossArg,
}

/// Soft-label losses on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum SoftLossArg {
    /// Element-wise binary cross-entropy with logits, mean over classes (FUTE, paper §2.5).
    Bce,
    /// −Σ_c t_c log softmax(x)_c (paper §10's alternative).
    SoftCe,
}

/// Model input shapes on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum InputArg {
    /// One text: a corpus row gives its last segment.
    Single,
    /// A text pair: a row gives its two segments, or (text, "").
    Pair,
}

/// Methods on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum MethodArg {
    /// TaskEmb's diagonal Fisher of the fine-tuned surrogate (FUTE + TaskEmb).
    Fim,
    /// Mean-pooled final-layer states of the pre-trained surrogate (Vu et al.'s TextEmb; DTEs only).
    Textemb,
    /// Prefix tuning (P-tuning v2) of the frozen surrogate; the vector is the prefix (FUTE + TuPaTE).
    Prefix,
    /// Soft prompt tokens before the input; the vector is their mean (TuPaTE).
    PromptTuning,
    /// LoRA adapters; the vector is every LoRA tensor (TuPaTE).
    Lora,
    /// Only the biases are tuned; the vector is every encoder bias (TuPaTE).
    Bitfit,
    /// Loss-curve slopes at 10/20/30/50/70 % of fine-tuning (baseline; rank with --by curvegrad).
    Curvegrad,
}

/// Reductions of a prefix / prompt table.
#[derive(Clone, Copy, ValueEnum)]
pub enum ReduceArg {
    /// Mean over prefix positions (TuPaTE).
    Positions,
    /// Mean over layers (the FUTE code; prefix only).
    Layers,
    /// No reduction.
    Full,
}

/// Fisher definitions.
#[derive(Clone, Copy, ValueEnum)]
pub enum FisherArg {
    /// (1/N) Σ_i (∇ℓ_i)²: the exact empirical Fisher diagonal.
    PerExample,
    /// (1/N) Σ_b (∇ batch-mean loss)²: Vu et al.'s code.
    PerBatch,
    /// (∇ mean loss)²: the released FUTE code (paper §2.6.2); the default.
    SquareOfMean,
}

/// Fisher labels.
#[derive(Clone, Copy, ValueEnum)]
pub enum LabelsArg {
    /// The probe set's targets.
    Gold,
    /// Drawn from the surrogate's own prediction.
    Sampled,
}

/// Fisher component sets.
#[derive(Clone, Copy, ValueEnum)]
pub enum ComponentsArg {
    /// Every encoder parameter (FUTE).
    Encoder,
    /// Every parameter incl. the head, plus activation components (Vu et al.).
    Taskemb,
    /// Only per-layer activation components and CLS (small vectors).
    Activations,
}

impl CommonArgs {
    /// The method `m` with these hyper-parameters.
    pub fn method(&self, m: MethodArg) -> Method {
        match m {
            MethodArg::Textemb => Method::TextEmb {
                max_len: self.max_len,
                batch: self.batch,
            },
            MethodArg::Curvegrad => Method::CurveGrad(self.training()),
            MethodArg::Prefix | MethodArg::PromptTuning | MethodArg::Lora | MethodArg::Bitfit => {
                self.peft(m)
            }
            MethodArg::Fim => Method::Fim(FimConfig {
                training: self.training(),
                variant: match self.fisher {
                    FisherArg::PerExample => FisherVariant::PerExample,
                    FisherArg::PerBatch => FisherVariant::PerBatch,
                    FisherArg::SquareOfMean => FisherVariant::SquareOfMean,
                },
                batch: self.fisher_batch,
                sampled_trials: matches!(self.fisher_labels, LabelsArg::Sampled)
                    .then_some(self.trials),
                components: match self.components {
                    ComponentsArg::Encoder => FimComponents::Encoder,
                    ComponentsArg::Taskemb => FimComponents::TaskEmb,
                    ComponentsArg::Activations => FimComponents::Activations,
                },
                layers: (!self.layers.is_empty()).then(|| self.layers.clone()),
                workers: self.workers,
            }),
        }
    }

    fn training(&self) -> SurrogateTraining {
        SurrogateTraining {
            epochs: self.epochs,
            lr: self.lr.unwrap_or(2e-5),
            batch: self.batch,
            grad_accum: self.grad_accum,
            max_len: self.max_len,
            soft_loss: match self.soft_loss {
                SoftLossArg::Bce => fute_nn::loss::SoftLoss::BceWithLogits,
                SoftLossArg::SoftCe => fute_nn::loss::SoftLoss::SoftCrossEntropy,
            },
        }
    }

    fn peft(&self, m: MethodArg) -> Method {
        let peft = match m {
            MethodArg::Prefix => PeftConfig::Prefix(PrefixConfig {
                len: self.prefix_len,
                projection: self.projection.then_some(self.projection_dim),
                dropout: self.prefix_dropout,
            }),
            MethodArg::PromptTuning => PeftConfig::PromptTuning(PromptConfig {
                len: self.prefix_len,
            }),
            MethodArg::Lora => PeftConfig::Lora(LoraConfig {
                rank: self.lora_rank,
                alpha: self.lora_alpha,
                targets: self.lora_targets.clone(),
            }),
            _ => PeftConfig::BitFit,
        };
        let reduce = match (self.reduce, &peft) {
            (Some(ReduceArg::Positions), _) => Reduce::Positions,
            (Some(ReduceArg::Layers), _) => Reduce::Layers,
            (Some(ReduceArg::Full), _) => Reduce::Full,
            (None, PeftConfig::Prefix(_)) => Reduce::Layers,
            (None, _) => Reduce::Positions,
        };
        let mut training = self.training();
        training.lr = self.lr.unwrap_or_else(|| default_lr(&peft));
        Method::Peft(PeftMethod {
            training,
            peft,
            reduce,
        })
    }

    fn dtype(&self) -> StoredDType {
        if self.f16 {
            StoredDType::F16
        } else {
            StoredDType::F32
        }
    }
}

fn run_embed(
    ctx: &Context,
    common: &CommonArgs,
    method: MethodArg,
    what: String,
    make: impl FnOnce(
        &Surrogate,
        &Method,
    ) -> anyhow::Result<(
        Subject,
        EmbeddingKind,
        ProbeSet,
        Option<String>,
        BTreeMap<String, Value>,
    )>,
) -> anyhow::Result<()> {
    let surrogate = Surrogate::open(&resolve_model_dir(&common.surrogate, &ctx.assets)?)?;
    fute::finetune::check_max_len(
        common.max_len,
        surrogate.description.max_positions,
        &surrogate.dir,
    )?;
    let store = Store::open(&ctx.workspace.state_dir())?;
    let method = common.method(method);
    let (subject, kind, probe, corpus, mut extra) = make(&surrogate, &method)?;
    extra.insert(
        "surrogate_dir".into(),
        surrogate.dir.display().to_string().into(),
    );
    let pb = super::spinner(format!(
        "{} {} of {what} ({} examples)",
        method.name(),
        kind.as_str().to_uppercase(),
        probe.len()
    ));
    let req = EmbedRequest {
        subject,
        kind,
        probe: &probe,
        method: &method,
        seed: common.seed,
        corpus,
        dtype: common.dtype(),
        extra,
    };
    let out = embed(&store, &surrogate, req, &mut |line| pb.set_message(line))?;
    pb.finish_and_clear();
    report(&out, common.json)
}

/// Runs an embed sub-command.
pub fn run(ctx: &Context, cmd: EmbedCmd) -> anyhow::Result<()> {
    match cmd {
        EmbedCmd::Dataset {
            name,
            data,
            schema,
            labels,
            method,
            common,
            split,
        } => {
            let ds = match (&name, &data) {
                (Some(n), _) => ctx.workspace.load_dataset(n)?,
                (None, Some(file)) => {
                    let schema =
                        super::data::schema_from(schema.expect("clap requires --schema"), labels)?;
                    let examples = fute_core::dataset::read_jsonl(file, &schema)?;
                    let stem = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "data".into());
                    let mut card = fute_core::dataset::DatasetCard::new(stem, schema);
                    // A bare file: every example is training data unless a record fixes its split.
                    card.split = fute_core::dataset::SplitConfig {
                        seed: 42,
                        dev: 0.0,
                        test: 0.0,
                    };
                    fute_core::dataset::Dataset { card, examples }
                }
                (None, None) => unreachable!("clap requires a name or --data"),
            };
            let name = ds.card.name.clone();
            run_embed(ctx, &common, method, name.clone(), |_, _| {
                let probe = ProbeSet::from_dataset(&ds, split, common.limit, common.seed)?;
                let (subject, extra) = dte_subject(&ds, split, &probe);
                Ok((subject, EmbeddingKind::Dte, probe, None, extra))
            })
        }
        EmbedCmd::Model {
            dir,
            corpus,
            method,
            input,
            data_size,
            common,
        } => {
            let what = dir.display().to_string();
            run_embed(ctx, &common, method, what.clone(), |_, method| {
                let u = load_corpus(ctx, &corpus, &common)?;
                if !method.uses_targets() {
                    anyhow::bail!(fute_core::Error::Invalid(format!(
                        "method `{}` ignores targets, so every model's MTE on the same corpus would be identical; use --method fim",
                        method.name()
                    )));
                }
                let mut model = SubjectModel::open(&dir)?;
                if let Some(shape) = input {
                    let given = match shape {
                        InputArg::Single => ModelInput::Single,
                        InputArg::Pair => ModelInput::Pair,
                    };
                    match model.input {
                        Some(known) if known != given => anyhow::bail!(fute_core::Error::Invalid(format!(
                            "{what} reads `{}` inputs (its training record or its QA head says so), not `{}`; drop --input",
                            known.name(),
                            given.name()
                        ))),
                        _ => model.input = Some(given),
                    }
                }
                if let Some(n) = data_size {
                    if let Some(recorded) = model.train_examples.filter(|r| *r != n) {
                        eprintln!("note: {what} records {recorded} training examples; using --data-size {n}");
                    }
                    model.train_examples = Some(n);
                }
                let pb = super::spinner(format!("running {what} on corpus {corpus}"));
                let cache = ctx.workspace.state_dir().join("cache").join("outputs");
                let probe = mte_probe(&model, &u, &cache, common.max_len, 32, |done, total| {
                    pb.set_message(format!("running {what} on corpus {corpus}: {done}/{total}"))
                })?;
                pb.finish_and_clear();
                let subject = Subject {
                    kind: SubjectKind::Model,
                    name: what.clone(),
                    hash: model.subject_hash()?,
                };
                let mut extra = BTreeMap::from([
                    ("corpus_name".into(), Value::from(corpus.clone())),
                    ("model_hash".into(), Value::from(model.hash.clone())),
                    ("model_input".into(), Value::from(model.input()?.name())),
                    ("model_type".into(), Value::from(model.model_type.clone())),
                ]);
                if let Some(n) = model.train_examples {
                    extra.insert("train_examples".into(), Value::from(n));
                }
                if let Some(labels) = &model.labels {
                    // The order of the soft targets, so they are read by name later.
                    extra.insert("labels".into(), Value::from(labels.clone()));
                }
                Ok((
                    subject,
                    EmbeddingKind::Mte,
                    probe,
                    Some(u.card.hash.clone()),
                    extra,
                ))
            })
        }
        EmbedCmd::Llm {
            prompt_set,
            prompt,
            corpus,
            method,
            llm,
            common,
        } => embed_llm(ctx, &prompt_set, prompt, &corpus, method, &llm, &common),
    }
}

/// Corpus `name`, or a seeded subset of it with `--limit` (still a fixed corpus, with its own hash).
fn load_corpus(
    ctx: &Context,
    name: &str,
    common: &CommonArgs,
) -> anyhow::Result<fute_core::corpus::Corpus> {
    let mut u = ctx.workspace.load_corpus(name)?;
    if let Some(n) = common.limit {
        u.keep_seeded_subset(n, common.seed);
    }
    Ok(u)
}

fn embed_llm(
    ctx: &Context,
    prompt_set: &str,
    prompt: usize,
    corpus: &str,
    method: MethodArg,
    llm: &super::llm::LlmArgs,
    common: &CommonArgs,
) -> anyhow::Result<()> {
    let set = fute_llm::PromptSet::load(prompt_set)?;
    set.prompt(prompt)?;
    let backend = llm.open(ctx)?;
    let cached = super::llm::cached(ctx, &*backend)?;
    let settings = llm.settings();
    let prompted = PromptedLlm {
        backend: &cached,
        set: &set,
        prompt,
        settings: &settings,
        max_chars: llm.max_chars,
    };
    let what = prompted.name();
    run_embed(ctx, common, method, what.clone(), |_, method| {
        let u = load_corpus(ctx, corpus, common)?;
        if !method.uses_targets() {
            anyhow::bail!(fute_core::Error::Invalid(format!(
                "method `{}` ignores targets, so every prompt's MTE on the same corpus would be identical; use --method fim",
                method.name()
            )));
        }
        let pb = super::progress_bar(format!("labelling corpus {corpus} with {what}"));
        let probe = prompted.probe_set(
            u.inputs.iter().map(|i| i.segments.clone()).collect(),
            &mut |done, total| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            },
        )?;
        pb.finish_and_clear();
        let stats = cached.stats();
        eprintln!(
            "{what}: {} LLM calls answered from the cache, {} made",
            stats.hits, stats.misses
        );
        Ok((
            prompted.subject()?,
            EmbeddingKind::Mte,
            probe,
            Some(u.card.hash.clone()),
            prompted.provenance(corpus),
        ))
    })
}

fn report(out: &Embedded, json: bool) -> anyhow::Result<()> {
    if let Some(w) = out
        .record
        .meta
        .extra
        .get("warning")
        .and_then(|v| v.as_str())
    {
        eprintln!("warning: {w}");
    }
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
