//! Task heads on the BERT encoder, in the Hugging Face layout.
//!
//! * classification (single text or text pair) and regression:
//!   `BertForSequenceClassification` — pooler output → dropout → `classifier`
//!   (`Linear(hidden, num_labels)`; regression is `num_labels = 1`);
//! * extractive QA: `BertForQuestionAnswering` — `qa_outputs`
//!   (`Linear(hidden, 2)`) on every token → start and end logits.
//!
//! Parameters are named as in those HF classes (`bert.…`, `classifier.weight`,
//! `qa_outputs.weight`), so a saved model loads in `transformers` unchanged.

use std::path::{Path, PathBuf};

use candle_nn::VarMap;

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::bert::{self, BertConfig, BertModel};
use crate::nn::{Linear, Mode};
use crate::params::{Checkpoint, Need, Params};
pub use crate::task::{BuildOptions, HeadSpec, TaskOutput};
use crate::task::{EmbeddingTable, Forward, ModelDescription, ModelInput, TableIndex, TaskModel};
use crate::{Error, Result};

/// A head's output layer.
#[derive(Debug, Clone)]
pub enum Head {
    /// `classifier` on the pooled output (classification and regression).
    Sequence {
        /// `classifier`.
        classifier: Linear,
        /// Dropout probability before it.
        dropout: f64,
    },
    /// `qa_outputs` on every token.
    Span {
        /// `qa_outputs`.
        qa_outputs: Linear,
    },
}

/// A BERT encoder with one task head, all parameters trainable `Var`s in [`Self::varmap`].
#[derive(Clone)]
pub struct BertTaskModel {
    /// The encoder (parameters under `bert.`).
    pub bert: BertModel,
    /// The head's output layer.
    pub head: Head,
    /// Which head this is.
    pub spec: HeadSpec,
    /// Every parameter, by its HF task-model name.
    pub varmap: VarMap,
    /// The folder the weights were loaded from, if any (tokenizer files are copied
    /// from here when saving).
    pub source_dir: Option<PathBuf>,
    description: ModelDescription,
}

impl std::fmt::Debug for BertTaskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTaskModel")
            .field("spec", &self.spec)
            .field("layers", &self.bert.layers.len())
            .field("dtype", &self.bert.dtype())
            .field("source_dir", &self.source_dir)
            .finish_non_exhaustive()
    }
}

impl BertTaskModel {
    /// Builds a model whose parameters are read from `checkpoint` where present
    /// (encoder tensors must be; head and pooler are fresh if absent), or all
    /// freshly initialised when `checkpoint` is `None`.
    pub fn build(
        config: &BertConfig,
        spec: HeadSpec,
        checkpoint: Option<&Checkpoint>,
        opts: &BuildOptions,
    ) -> Result<Self> {
        spec.check()?;
        crate::models::build_checked(&bert::ARCHITECTURE, checkpoint, opts, |p, varmap| {
            Self::assemble(p, config, spec, varmap)
        })
    }

    /// The modules of the model, their parameters made by `p`.
    fn assemble(p: &Params, config: &BertConfig, spec: HeadSpec, varmap: VarMap) -> Result<Self> {
        let with_pooler = !matches!(spec, HeadSpec::QuestionAnswering);
        let bert = BertModel::new(&p.pp("bert"), config, with_pooler)?;
        let std = config.initializer_range;
        let h = config.hidden_size;
        let head = match spec {
            HeadSpec::Classification { .. } | HeadSpec::Regression => Head::Sequence {
                classifier: Linear::new(
                    &p.head().pp("classifier"),
                    h,
                    spec.num_outputs(),
                    std,
                    Need::FreshIfMissing,
                )?,
                dropout: config.classifier_dropout_prob(),
            },
            HeadSpec::QuestionAnswering => Head::Span {
                qa_outputs: Linear::new(
                    &p.head().pp("qa_outputs"),
                    h,
                    2,
                    std,
                    Need::FreshIfMissing,
                )?,
            },
        };
        let description = describe(config, spec);
        Ok(Self {
            bert,
            head,
            spec,
            varmap,
            source_dir: None,
            description,
        })
    }

    /// Loads `config.json` and `model.safetensors` from a Hugging Face folder and
    /// adds head `spec` (taken from the checkpoint when it has one of that shape).
    pub fn from_folder(dir: impl AsRef<Path>, spec: HeadSpec, opts: &BuildOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg_path = dir.join("config.json");
        // The registry first: an unsupported `model_type` is named as such.
        crate::models::read_config(&cfg_path)?;
        let config = BertConfig::from_file(&cfg_path)?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let mut model = Self::build(&config, spec, Some(&ckpt), opts)?;
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    /// Loads a folder saved as a task model, taking the head from its config.
    pub fn from_task_folder(dir: impl AsRef<Path>, opts: &BuildOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg_path = dir.join("config.json");
        let (raw, _) = crate::models::read_config(&cfg_path)?;
        let spec = HeadSpec::from_hf_config(&raw).ok_or_else(|| Error::Config {
            path: cfg_path,
            message: "declares no BertForSequenceClassification / BertForQuestionAnswering head \
                      (`architectures`)"
                .into(),
        })?;
        Self::from_folder(dir, spec, opts)
    }

    /// The configuration of the encoder.
    pub fn config(&self) -> &BertConfig {
        &self.bert.config
    }
}

/// The layout of a BERT task model (see [`ModelDescription`]).
fn describe(cfg: &BertConfig, spec: HeadSpec) -> ModelDescription {
    let with_pooler = !matches!(spec, HeadSpec::QuestionAnswering);
    let layer_prefixes: Vec<String> = (0..cfg.num_hidden_layers)
        .map(|i| format!("bert.encoder.layer.{i}."))
        .collect();
    let table = |t: &str, index| EmbeddingTable {
        name: format!("bert.embeddings.{t}.weight"),
        index,
    };
    ModelDescription {
        model_type: bert::ARCHITECTURE.model_type,
        num_layers: cfg.num_hidden_layers,
        hidden_size: cfg.hidden_size,
        num_attention_heads: cfg.num_attention_heads,
        max_positions: cfg.max_position_embeddings,
        pad_token_id: cfg.pad_token_id,
        backbone_prefix: "bert.".into(),
        embeddings_prefix: "bert.embeddings.".into(),
        layer_taps: layer_prefixes
            .iter()
            .map(|p| [format!("{p}multihead_output"), format!("{p}layer_output")])
            .collect(),
        layer_prefixes,
        pooler_prefix: with_pooler.then(|| "bert.pooler.".into()),
        layer_linears: bert::LAYER_LINEARS.to_vec(),
        default_lora_targets: bert::DEFAULT_LORA_TARGETS,
        embedding_tables: vec![
            table("word_embeddings", TableIndex::TokenIds),
            table("position_embeddings", TableIndex::Positions),
            table("token_type_embeddings", TableIndex::TokenTypes),
        ],
        embeddings_tap: format!("bert.{}", bert::EMBEDDINGS_TAP),
        sequence_tap: with_pooler.then(|| SEQUENCE_TAP.into()),
    }
}

/// Vu et al.'s name for the pooled output a sequence head reads.
const SEQUENCE_TAP: &str = "cls_output";

impl TaskModel for BertTaskModel {
    fn describe(&self) -> &ModelDescription {
        &self.description
    }

    fn head(&self) -> HeadSpec {
        self.spec
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward_with(&self, input: &ModelInput, mode: &Mode, hooks: &Hooks) -> Result<Forward> {
        let enc = self.bert.forward_with_hooks(input, mode, hooks)?;
        let output = match &self.head {
            Head::Sequence {
                classifier,
                dropout,
            } => {
                let pooled = enc
                    .pooled_output
                    .ok_or_else(|| Error::Bug("sequence head needs the pooler".into()))?;
                let pooled = hooks.tap(SEQUENCE_TAP, pooled)?;
                let logits = classifier.forward(&mode.dropout(&pooled, *dropout)?)?;
                TaskOutput::sequence(self.spec, logits)?
            }
            Head::Span { qa_outputs } => {
                TaskOutput::span_from(&qa_outputs.forward(&enc.sequence_output)?)?
            }
        };
        Ok(Forward {
            output,
            last_hidden_state: enc.sequence_output,
        })
    }

    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>> {
        let p = Params::from_vars(&self.varmap, live, self.bert.dtype(), &self.device());
        let mut m = Self::assemble(&p, self.config(), self.spec, self.varmap.clone())?;
        m.source_dir = self.source_dir.clone();
        Ok(Box::new(m))
    }

    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>> {
        let (b, t) = input.input_ids.dims2()?;
        let ids = input.input_ids.flatten_all()?.to_vec1::<u32>()?;
        let types = match &input.token_type_ids {
            Some(tt) => tt.flatten_all()?.to_vec1::<u32>()?,
            None => vec![0; b * t],
        };
        let positions = (0..b).flat_map(|_| 0..t as u32).collect();
        Ok(vec![
            (ids, self.config().pad_token_id),
            (positions, None),
            (types, None),
        ])
    }

    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value> {
        let cfg = self.config();
        let base = if cfg.raw.is_object() {
            cfg.raw.clone()
        } else {
            serde_json::to_value(cfg).map_err(|e| Error::Bug(format!("config: {e}")))?
        };
        crate::checkpoint::task_config(base, &bert::ARCHITECTURE, self.spec, opts)
    }

    fn source_dir(&self) -> Option<&Path> {
        self.source_dir.as_deref()
    }
}
