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

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::models::bert::{self, BertConfig, BertInput, BertModel, BertOutput};
use crate::models::HeadKind;
use crate::nn::{Linear, Mode};
use crate::params::{Checkpoint, Need, Params};
use crate::{Error, Result};

/// Which head a task model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSpec {
    /// Sequence classification into `num_labels` classes (single text or pair).
    Classification {
        /// Number of classes (≥ 2; use [`HeadSpec::Regression`] for one output).
        num_labels: usize,
    },
    /// One real-valued output (`num_labels = 1`, `problem_type = "regression"`).
    Regression,
    /// Extractive question answering: start/end logits over tokens.
    QuestionAnswering,
}

impl HeadSpec {
    /// Which kind of HF head class holds this head.
    pub fn kind(&self) -> HeadKind {
        match self {
            Self::Classification { .. } | Self::Regression => HeadKind::Sequence,
            Self::QuestionAnswering => HeadKind::QuestionAnswering,
        }
    }

    /// The BERT class name that holds this head (see
    /// [`crate::models::Architecture::class_name`] for other architectures).
    pub fn architecture(&self) -> &'static str {
        bert::ARCHITECTURE.class_name(self.kind())
    }

    /// Width of the head's output layer (HF `num_labels`; 2 for QA).
    pub fn num_outputs(&self) -> usize {
        match self {
            Self::Classification { num_labels } => *num_labels,
            Self::Regression => 1,
            Self::QuestionAnswering => 2,
        }
    }

    /// The head a saved task model declares in its config (`architectures`,
    /// `problem_type`, `id2label`), if it declares one.
    pub fn from_config(cfg: &BertConfig) -> Option<Self> {
        let class = cfg.architectures.as_ref()?.first()?.as_str();
        let (_, kind) = crate::models::class_head(class)?;
        Some(Self::from_kind(
            kind,
            cfg.declared_num_labels(),
            cfg.problem_type.as_deref(),
        ))
    }

    /// The head of kind `kind` with `num_labels` outputs (default 2) and HF
    /// `problem_type`: one output or `regression` is a regression head.
    pub fn from_kind(kind: HeadKind, num_labels: Option<usize>, problem_type: Option<&str>) -> Self {
        match kind {
            HeadKind::QuestionAnswering => Self::QuestionAnswering,
            HeadKind::Sequence => {
                let n = num_labels.unwrap_or(2);
                if problem_type == Some("regression") || n == 1 {
                    Self::Regression
                } else {
                    Self::Classification { num_labels: n }
                }
            }
        }
    }
}

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

/// What a task model returns.
#[derive(Debug, Clone)]
pub enum TaskOutput {
    /// Class logits `[B, num_labels]`.
    Logits(Tensor),
    /// Regression predictions `[B]`.
    Scores(Tensor),
    /// Start and end logits, each `[B, T]` (padding positions are not masked, as in HF).
    Span {
        /// Start-position logits.
        start: Tensor,
        /// End-position logits.
        end: Tensor,
    },
}

impl TaskOutput {
    /// The class logits; an error for other heads.
    pub fn logits(&self) -> Result<&Tensor> {
        match self {
            Self::Logits(t) => Ok(t),
            _ => Err(Error::BadInput(
                "this model has no classification head".into(),
            )),
        }
    }

    /// The regression predictions; an error for other heads.
    pub fn scores(&self) -> Result<&Tensor> {
        match self {
            Self::Scores(t) => Ok(t),
            _ => Err(Error::BadInput("this model has no regression head".into())),
        }
    }

    /// The start and end logits; an error for other heads.
    pub fn span(&self) -> Result<(&Tensor, &Tensor)> {
        match self {
            Self::Span { start, end } => Ok((start, end)),
            _ => Err(Error::BadInput(
                "this model has no question-answering head".into(),
            )),
        }
    }
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
    /// Parameter-efficient modules (prefix, prompt, LoRA), when attached with
    /// [`crate::peft::Peft::attach`]; their parameters are in [`Self::varmap`] too.
    pub peft: Option<crate::peft::Peft>,
}

/// Options for building a task model.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Parameter dtype (F32 for training, F64 for gradient checks).
    pub dtype: DType,
    /// Where parameters live.
    pub device: Device,
    /// Seed of fresh parameters (heads, a missing pooler, or all in a random model).
    pub seed: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            seed: 0,
        }
    }
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
        if let HeadSpec::Classification { num_labels } = spec {
            if num_labels < 2 {
                return Err(Error::BadInput(format!(
                    "classification needs at least 2 labels, got {num_labels} (use regression for 1)"
                )));
            }
        }
        let varmap = VarMap::new();
        let arch = &crate::models::bert::ARCHITECTURE;
        let p = Params::new(&varmap, opts.dtype, &opts.device, checkpoint, opts.seed)
            .with_base_prefix(arch.base_prefix);
        let with_pooler = !matches!(spec, HeadSpec::QuestionAnswering);
        let bert = BertModel::new(&p.pp("bert"), config, with_pooler)?;
        let std = config.initializer_range;
        let h = config.hidden_size;
        let head = match spec {
            HeadSpec::Classification { .. } | HeadSpec::Regression => Head::Sequence {
                classifier: Linear::new(
                    &p.pp("classifier"),
                    h,
                    spec.num_outputs(),
                    std,
                    Need::FreshIfMissing,
                )?,
                dropout: config.classifier_dropout_prob(),
            },
            HeadSpec::QuestionAnswering => Head::Span {
                qa_outputs: Linear::new(&p.pp("qa_outputs"), h, 2, std, Need::FreshIfMissing)?,
            },
        };
        if let Some(ckpt) = checkpoint {
            let unused = ckpt.unused_under(arch.base_prefix, arch.encoder_roots);
            if !unused.is_empty() {
                return Err(Error::UnexpectedTensors {
                    path: ckpt.path().to_path_buf(),
                    names: unused,
                });
            }
        }
        Ok(Self {
            bert,
            head,
            spec,
            varmap,
            source_dir: None,
            peft: None,
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
        crate::models::read_config(&cfg_path)?;
        let config = BertConfig::from_file(&cfg_path)?;
        let spec = HeadSpec::from_config(&config).ok_or_else(|| Error::Config {
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

    /// Encoder output and head output.
    pub fn forward_full(&self, input: &BertInput, mode: &Mode) -> Result<(BertOutput, TaskOutput)> {
        let enc = match &self.peft {
            None => self.bert.forward(input, mode)?,
            Some(peft) => peft.forward_encoder(&self.bert, input, mode)?,
        };
        let out = match &self.head {
            Head::Sequence {
                classifier,
                dropout,
            } => {
                let pooled = enc
                    .pooled_output
                    .as_ref()
                    .ok_or_else(|| Error::Bug("sequence head needs the pooler".into()))?;
                let logits = classifier.forward(&mode.dropout(pooled, *dropout)?)?;
                match self.spec {
                    HeadSpec::Regression => TaskOutput::Scores(logits.squeeze(1)?),
                    _ => TaskOutput::Logits(logits),
                }
            }
            Head::Span { qa_outputs } => {
                let both = qa_outputs.forward(&enc.sequence_output)?; // [B, T, 2]
                TaskOutput::Span {
                    start: both.narrow(2, 0, 1)?.squeeze(2)?,
                    end: both.narrow(2, 1, 1)?.squeeze(2)?,
                }
            }
        };
        Ok((enc, out))
    }

    /// Head output for a padded batch.
    pub fn forward(&self, input: &BertInput, mode: &Mode) -> Result<TaskOutput> {
        Ok(self.forward_full(input, mode)?.1)
    }

    /// The trainable variable called `name` (HF task-model name), if any.
    pub fn parameter(&self, name: &str) -> Option<candle_core::Var> {
        let data = self.varmap.data().lock().expect("VarMap lock poisoned");
        data.get(name).cloned()
    }

    /// Overwrites parameter `name` with `value` (converted to the model's dtype).
    pub fn set_parameter(&self, name: &str, value: &Tensor) -> Result<()> {
        let var = self
            .parameter(name)
            .ok_or_else(|| Error::BadInput(format!("the model has no parameter `{name}`")))?;
        if var.dims() != value.dims() {
            return Err(Error::BadInput(format!(
                "parameter `{name}` has shape {:?}, the new value {:?}",
                var.dims(),
                value.dims()
            )));
        }
        var.set(&value.to_dtype(var.dtype())?)?;
        Ok(())
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.named_parameters()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// All parameters, sorted by name.
    pub fn named_parameters(&self) -> Vec<(String, candle_core::Var)> {
        let data = self.varmap.data().lock().expect("VarMap lock poisoned");
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
