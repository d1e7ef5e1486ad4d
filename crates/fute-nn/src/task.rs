//! The task-model interface every architecture implements, and what training,
//! prediction, Fisher, PEFT, checkpoints and fute's methods see of a model.
//!
//! A [`TaskModel`] is an encoder (or decoder) plus one task head. It runs a
//! neutral [`ModelInput`] with [`Hooks`] and returns a [`TaskOutput`]; it names
//! its parameters as the HF task class does; it describes itself
//! ([`ModelDescription`]: layers, hidden size, hookable linears, taps,
//! embedding tables) so that generic code never matches on the architecture.
//! Architectures are chosen by `config.json`'s `model_type` in
//! [`crate::models`]; [`crate::peft::Adapted`] wraps any task model with
//! parameter-efficient modules.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::HeadKind;
use crate::nn::Mode;
use crate::{Error, Result};

/// A padded batch: ids, mask and (for architectures with segments) token types,
/// each `[B, T]` u32.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Vocabulary ids.
    pub input_ids: Tensor,
    /// Segment ids (0 for the first text, 1 for the second); `None` = all 0.
    /// Architectures without segments (DistilBERT) ignore them.
    pub token_type_ids: Option<Tensor>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

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

    /// Width of the head's output layer (HF `num_labels`; 2 for QA).
    pub fn num_outputs(&self) -> usize {
        match self {
            Self::Classification { num_labels } => *num_labels,
            Self::Regression => 1,
            Self::QuestionAnswering => 2,
        }
    }

    /// The head of kind `kind` with `num_labels` outputs (default 2) and HF
    /// `problem_type`: one output or `regression` is a regression head.
    pub fn from_kind(
        kind: HeadKind,
        num_labels: Option<usize>,
        problem_type: Option<&str>,
    ) -> Self {
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

    /// The head a saved task model's `config.json` (`raw`) declares
    /// (`architectures`, `problem_type`, `id2label` / `num_labels`), if any.
    pub fn from_hf_config(raw: &serde_json::Value) -> Option<Self> {
        let class = raw.get("architectures")?.as_array()?.first()?.as_str()?;
        let (_, kind) = crate::models::class_head(class)?;
        let n = raw
            .get("id2label")
            .and_then(|m| m.as_object())
            .map(|m| m.len())
            .or_else(|| {
                raw.get("num_labels")
                    .and_then(|n| n.as_u64())
                    .map(|n| n as usize)
            });
        let problem = raw.get("problem_type").and_then(|p| p.as_str());
        Some(Self::from_kind(kind, n, problem))
    }

    /// Refuses a classification head with fewer than 2 labels.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Classification { num_labels } if *num_labels < 2 => {
                Err(Error::BadInput(format!(
                    "classification needs at least 2 labels, got {num_labels} (use regression for 1)"
                )))
            }
            _ => Ok(()),
        }
    }
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

    /// Logits or scores of a sequence head from its output layer `[B, n]`.
    pub fn sequence(spec: HeadSpec, logits: Tensor) -> Result<Self> {
        Ok(match spec {
            HeadSpec::Regression => Self::Scores(logits.squeeze(1)?),
            _ => Self::Logits(logits),
        })
    }

    /// Start and end logits from a `[B, T, 2]` output layer.
    pub fn span_from(both: &Tensor) -> Result<Self> {
        Ok(Self::Span {
            start: both.narrow(2, 0, 1)?.squeeze(2)?,
            end: both.narrow(2, 1, 1)?.squeeze(2)?,
        })
    }
}

/// A forward pass's results.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The head's output.
    pub output: TaskOutput,
    /// The encoder's last hidden states `[B, T, hidden]` (soft prompt positions removed).
    pub last_hidden_state: Tensor,
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
    /// Initialise the task head freshly (seeded by `seed` and its parameter
    /// names) even when the checkpoint holds one of the same shape. This is
    /// intermediate-task transfer: a head trained on another task's labels means
    /// nothing for this one, so a source's head is never reused; the fresh head
    /// is the same one the base model gets for the same seed. Hugging Face's
    /// `ignore_mismatched_sizes=True` re-initialises only heads of another shape.
    pub fresh_head: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            seed: 0,
            fresh_head: false,
        }
    }
}

/// Which ids select the rows of an embedding table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableIndex {
    /// The token ids.
    TokenIds,
    /// The positions.
    Positions,
    /// The token-type ids.
    TokenTypes,
}

/// An embedding table and what indexes it (for sparse Fisher gradients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingTable {
    /// The table's parameter name.
    pub name: String,
    /// What selects its rows.
    pub index: TableIndex,
}

/// What generic code needs to know about a task model's layout.
#[derive(Debug, Clone)]
pub struct ModelDescription {
    /// The `config.json` `model_type`.
    pub model_type: &'static str,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Longest input (in tokens, soft prompt included) the position table covers.
    pub max_positions: usize,
    /// Id of the padding token, if the vocabulary has one.
    pub pad_token_id: Option<u32>,
    /// Name prefix of the backbone's parameters, with its dot (`bert.`);
    /// everything else belongs to the task head. Empty for a task class whose
    /// backbone has no prefix (see [`Self::in_backbone`]).
    pub backbone_prefix: String,
    /// Name prefix of the embeddings (`bert.embeddings.`).
    pub embeddings_prefix: String,
    /// Name prefix of each layer, with its dot (`bert.encoder.layer.0.`).
    pub layer_prefixes: Vec<String>,
    /// Name prefix of a pooler that is part of the backbone (BERT's), if any, or
    /// of the backbone's part after its layers (GPT-2's final `ln_f`), which
    /// Fisher scopes then treat as the pooler.
    pub pooler_prefix: Option<String>,
    /// Hookable linears of a layer, relative to its prefix (`attention.self.query`, …).
    pub layer_linears: Vec<&'static str>,
    /// LoRA targets when none are given (`query,value` for BERT).
    pub default_lora_targets: &'static [&'static str],
    /// The embedding tables.
    pub embedding_tables: Vec<EmbeddingTable>,
    /// Tap on the sum of the embedding tables' rows, before normalisation, `[B, T, H]`.
    pub embeddings_tap: String,
    /// Per layer, Vu et al.'s taps `[B, T, H]`: the attention context before the
    /// output projection and the layer output.
    pub layer_taps: Vec<[String; 2]>,
    /// Tap on the pooled sequence representation the head reads `[B, H]`
    /// (Vu et al.'s `cls_output`), for sequence heads.
    pub sequence_tap: Option<String>,
}

impl ModelDescription {
    /// Whether parameter `name` belongs to the backbone rather than the task
    /// head: it starts with [`Self::backbone_prefix`], or, for a task class
    /// whose backbone has no prefix (`T5ForQuestionAnswering`: `shared.`,
    /// `encoder.`, `decoder.`, `qa_outputs.`), its first component is one of
    /// the architecture's encoder roots
    /// ([`crate::models::Architecture::encoder_roots`]).
    pub fn in_backbone(&self, name: &str) -> bool {
        if !self.backbone_prefix.is_empty() {
            return name.starts_with(self.backbone_prefix.as_str());
        }
        let roots = crate::models::architecture(self.model_type, Path::new("config.json"))
            .map_or(&[][..], |a| a.encoder_roots);
        name.split('.').next().is_some_and(|r| roots.contains(&r))
    }

    /// Full names of every hookable linear, layer by layer.
    pub fn linear_names(&self) -> Vec<String> {
        self.layer_prefixes
            .iter()
            .flat_map(|p| self.layer_linears.iter().map(move |l| format!("{p}{l}")))
            .collect()
    }

    /// The layer-relative linear names that the LoRA `targets` select, in layer
    /// order. A target selects, first match wins: the linear of that relative
    /// name (`output.dense`); linears whose last component it is (`query`,
    /// `dense`); linears whose module it is (`intermediate`, `output`,
    /// `attention.output`); the same with `_`/`-` read as `.`
    /// (`attention_output`). Empty `targets` = [`Self::default_lora_targets`].
    /// A target that selects nothing is an error listing the valid names.
    pub fn lora_targets(&self, targets: &[String]) -> Result<Vec<&'static str>> {
        let defaults: Vec<String>;
        let targets = if targets.is_empty() {
            defaults = self
                .default_lora_targets
                .iter()
                .map(|s| s.to_string())
                .collect();
            &defaults
        } else {
            targets
        };
        let select = |t: &str| -> Vec<&'static str> {
            let rules: [&dyn Fn(&str) -> bool; 3] =
                [&|r| r == t, &|r| r.rsplit('.').next() == Some(t), &|r| {
                    r.rsplit_once('.').map(|(m, _)| m) == Some(t)
                }];
            for rule in rules {
                let hit: Vec<&'static str> = self
                    .layer_linears
                    .iter()
                    .copied()
                    .filter(|r| rule(r))
                    .collect();
                if !hit.is_empty() {
                    return hit;
                }
            }
            Vec::new()
        };
        let mut out: Vec<&'static str> = Vec::new();
        for t in targets {
            let mut hit = select(t);
            if hit.is_empty() {
                hit = select(&t.replace(['_', '-'], "."));
            }
            if hit.is_empty() {
                let last: std::collections::BTreeSet<&str> = self
                    .layer_linears
                    .iter()
                    .filter_map(|r| r.rsplit('.').next())
                    .collect();
                return Err(Error::BadInput(format!(
                    "LoRA target `{t}` names no linear map of this {} model; valid targets: {} \
                     (or a last component: {})",
                    self.model_type,
                    self.layer_linears.join(", "),
                    last.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            for h in hit {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
        // Forward-pass order, whatever order the targets came in.
        out.sort_by_key(|r| self.layer_linears.iter().position(|l| l == r));
        Ok(out)
    }
}

/// A model with one task head, in any architecture; see the module docs.
///
/// Parameters are trainable `Var`s in one [`VarMap`] under their HF task-model
/// names; an optimiser, a checkpoint or a task vector reads them from there.
pub trait TaskModel: Send + Sync {
    /// The layout generic code needs.
    fn describe(&self) -> &ModelDescription;

    /// The head.
    fn head(&self) -> HeadSpec;

    /// Every parameter (PEFT modules add theirs here too).
    fn varmap(&self) -> &VarMap;

    /// Runs the model on a padded batch with `hooks`.
    fn forward_with(&self, input: &ModelInput, mode: &Mode, hooks: &Hooks) -> Result<Forward>;

    /// The same model on the same tensors, where parameters whose name fails
    /// `live` are detached (constants to autograd), for passes that want some
    /// gradients only (Fisher). Its forward pass computes exactly this model's.
    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>>;

    /// Per embedding table ([`ModelDescription::embedding_tables`], same order),
    /// the row each of the batch's `B·T` positions reads, row-major, and the row
    /// that receives no gradient (PyTorch `padding_idx`), if any.
    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>>;

    /// The `config.json` the model is saved with.
    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value>;

    /// The folder the weights came from (tokenizer files are copied from here when saving).
    fn source_dir(&self) -> Option<&Path>;

    /// Head output for a padded batch (no hooks).
    fn forward(&self, input: &ModelInput, mode: &Mode) -> Result<TaskOutput> {
        Ok(self.forward_with(input, mode, &Hooks::default())?.output)
    }

    /// The parameters' dtype.
    fn dtype(&self) -> DType {
        self.named_parameters()
            .first()
            .map_or(DType::F32, |(_, v)| v.dtype())
    }

    /// The device parameters live on.
    fn device(&self) -> Device {
        self.named_parameters()
            .first()
            .map_or(Device::Cpu, |(_, v)| v.device().clone())
    }

    /// All parameters, sorted by name.
    fn named_parameters(&self) -> Vec<(String, Var)> {
        let data = self.varmap().data().lock().expect("VarMap lock poisoned");
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The trainable variable called `name`, if any.
    fn parameter(&self, name: &str) -> Option<Var> {
        let data = self.varmap().data().lock().expect("VarMap lock poisoned");
        data.get(name).cloned()
    }

    /// Overwrites parameter `name` with `value` (converted to the model's dtype).
    fn set_parameter(&self, name: &str, value: &Tensor) -> Result<()> {
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
    fn num_parameters(&self) -> usize {
        self.named_parameters()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// Parameter `name`'s value (or gradient) `t` in the layout its Hugging
    /// Face checkpoint stores: `t` itself, except for parameters the
    /// architecture keeps transposed (GPT-2's `Conv1D` weights, held `[out, in]`
    /// like every linear here and stored `[in, out]`; see
    /// [`crate::params::Params::get_transposed`]). Saving writes this layout.
    fn checkpoint_layout(&self, name: &str, t: &Tensor) -> Result<Tensor> {
        let _ = name;
        Ok(t.clone())
    }

    /// Saves the model as a Hugging Face folder at `dir`, atomically
    /// (see [`crate::checkpoint`]).
    fn save_pretrained(&self, dir: &Path, opts: &SaveOptions) -> Result<()> {
        crate::checkpoint::save_pretrained(self, dir, opts)
    }
}

impl<T: TaskModel + ?Sized> TaskModel for Box<T> {
    fn describe(&self) -> &ModelDescription {
        (**self).describe()
    }
    fn head(&self) -> HeadSpec {
        (**self).head()
    }
    fn varmap(&self) -> &VarMap {
        (**self).varmap()
    }
    fn forward_with(&self, input: &ModelInput, mode: &Mode, hooks: &Hooks) -> Result<Forward> {
        (**self).forward_with(input, mode, hooks)
    }
    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>> {
        (**self).with_live(live)
    }
    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>> {
        (**self).embedding_rows(input)
    }
    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value> {
        (**self).hf_config(opts)
    }
    fn source_dir(&self) -> Option<&Path> {
        (**self).source_dir()
    }
    fn checkpoint_layout(&self, name: &str, t: &Tensor) -> Result<Tensor> {
        (**self).checkpoint_layout(name, t)
    }
}
