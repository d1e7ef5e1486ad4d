//! BERT encoder (Devlin et al. 2019) in the Hugging Face `transformers` layout.
//!
//! Struct and field names mirror the checkpoint's tensor names, e.g.
//! `embeddings.word_embeddings.weight`,
//! `encoder.layer.N.attention.self.query.weight`,
//! `encoder.layer.N.attention.output.LayerNorm.weight`,
//! `encoder.layer.N.intermediate.dense`, `encoder.layer.N.output.dense`,
//! `pooler.dense`. Works in F32 and F64.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::hooks::Hooks;
use crate::models::Architecture;
use crate::nn::{Activation, Embedding, LayerNorm, Linear, Mode};
use crate::params::{Need, Params};
use crate::{Error, Result};

/// BERT in the registry ([`crate::models::ARCHITECTURES`]).
pub static ARCHITECTURE: Architecture = Architecture {
    model_type: "bert",
    base_prefix: "bert",
    sequence_class: "BertForSequenceClassification",
    qa_class: "BertForQuestionAnswering",
    sequence_output: "classifier",
    required_fields: &[
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
    ],
    encoder_roots: &["embeddings", "encoder"],
    load: load_folder,
};

fn load_folder(
    dir: &Path,
    spec: crate::task::HeadSpec,
    opts: &crate::task::BuildOptions,
) -> Result<Box<dyn crate::task::TaskModel>> {
    Ok(Box::new(crate::heads::BertTaskModel::from_folder(
        dir, spec, opts,
    )?))
}

fn default_vocab_size() -> usize {
    30522
}
fn default_hidden_size() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_intermediate() -> usize {
    3072
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_pad_token_id() -> Option<u32> {
    Some(0)
}
fn default_position_type() -> String {
    "absolute".into()
}

/// A BERT configuration as found in a Hugging Face `config.json`.
///
/// Unknown keys are kept in [`BertConfig::raw`] so that saving a model writes
/// them back unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BertConfig {
    /// Number of rows of the word-embedding table.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Width of every hidden state.
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    /// Number of transformer layers.
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    #[serde(default = "default_intermediate")]
    pub intermediate_size: usize,
    /// Feed-forward activation: `gelu`, `gelu_new` (or `gelu_pytorch_tanh`), `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Dropout after embeddings, attention output, feed-forward output.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Longest sequence the position table covers.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Standard deviation of fresh weights.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token (HF default 0). Its word-embedding row receives no
    /// gradient, as with PyTorch's `nn.Embedding(padding_idx=...)`.
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: Option<u32>,
    /// Only `absolute` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// Dropout before a classification head; `None` means `hidden_dropout_prob`.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Decoder BERTs (causal attention) are not supported.
    #[serde(default)]
    pub is_decoder: bool,
    /// Cross-attention is not supported.
    #[serde(default)]
    pub add_cross_attention: bool,
    /// Must be `bert` when present.
    #[serde(default)]
    pub model_type: Option<String>,
    /// HF head class names, e.g. `["BertForSequenceClassification"]`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Label names by index (as strings, HF style).
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// `regression`, `single_label_classification` or `multi_label_classification`.
    #[serde(default)]
    pub problem_type: Option<String>,
    /// Number of head outputs when written explicitly.
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// The whole JSON object the config was read from.
    #[serde(skip)]
    pub raw: serde_json::Value,
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                what: "model configuration (config.json)",
            });
        }
        // fute-core's shared reader: accepts a UTF-8 byte-order mark, names other encodings.
        let text = fute_core::textfile::read_text(path).map_err(|e| match e {
            fute_core::Error::Io { source, .. } => Error::io("reading", path, source),
            other => Error::Config {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates a config from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        Self::parse(text, Path::new("<memory>"))
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: PathBuf::from(path),
            message: format!("not valid JSON: {e}"),
        })?;
        Self::parse_as(raw, path, &ARCHITECTURE)
    }

    /// Reads `raw` (the `config.json` at `path`) as the configuration of `arch`,
    /// a BERT-family architecture whose config has BERT's fields (RoBERTa):
    /// its `model_type` must be `arch`'s (or absent), and every field of
    /// [`Architecture::required_fields`] present.
    pub(crate) fn parse_as(
        raw: serde_json::Value,
        path: &Path,
        arch: &Architecture,
    ) -> Result<Self> {
        let err = |message: String| Error::Config {
            path: PathBuf::from(path),
            message,
        };
        if let Some(mt) = raw.get("model_type").and_then(|t| t.as_str()) {
            if mt != arch.model_type {
                return Err(err(format!(
                    "model_type `{mt}` is not supported by the {} implementation (only `{}`)",
                    arch.model_type, arch.model_type
                )));
            }
        }
        arch.check_required(&raw, path)?;
        let mut cfg: BertConfig = serde_json::from_value(raw.clone())
            .map_err(|e| err(format!("not a {} configuration: {e}", arch.model_type)))?;
        cfg.raw = raw;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Checks that this implementation supports the configuration.
    /// (`model_type` is checked when the file is read, against the registry.)
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            ));
        }
        if Activation::from_hf(&self.hidden_act).is_none() {
            return Err(format!(
                "hidden_act `{}` is not supported (use gelu, gelu_new or relu)",
                self.hidden_act
            ));
        }
        if self.is_decoder || self.add_cross_attention {
            return Err("decoder / cross-attention BERT configurations are not supported".into());
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.classifier_dropout.unwrap_or(0.0)),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.vocab_size == 0 || self.num_hidden_layers == 0 || self.type_vocab_size == 0 {
            return Err(
                "vocab_size, num_hidden_layers and type_vocab_size must be positive".into(),
            );
        }
        Ok(())
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Activation {
        Activation::from_hf(&self.hidden_act).expect("validated config")
    }

    /// Dropout probability before a classification head.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Number of labels the config declares (`id2label` wins over `num_labels`), if any.
    pub fn declared_num_labels(&self) -> Option<usize> {
        self.id2label.as_ref().map(|m| m.len()).or(self.num_labels)
    }
}

/// The neutral batch under its former name.
pub type BertInput = crate::task::ModelInput;

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Last layer's hidden states, `[B, T, hidden]`.
    pub sequence_output: Tensor,
    /// `tanh(dense(h_[CLS]))`, `[B, hidden]`, when the model has a pooler.
    pub pooled_output: Option<Tensor>,
}

/// The linears of a layer [`Hooks::linear`] sees, relative to the layer's prefix,
/// in forward order.
pub const LAYER_LINEARS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// LoRA targets by default (Hu et al. adapt queries and values).
pub const DEFAULT_LORA_TARGETS: &[&str] = &["query", "value"];

/// Name of the tap on the summed embeddings, under the encoder prefix.
pub const EMBEDDINGS_TAP: &str = "embeddings.sum";

/// Word + position + token-type embeddings, then LayerNorm and dropout.
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    /// `word_embeddings`.
    pub word_embeddings: Embedding,
    /// `position_embeddings`.
    pub position_embeddings: Embedding,
    /// `token_type_embeddings`.
    pub token_type_embeddings: Embedding,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    dropout: f64,
    tap: String,
}

impl BertEmbeddings {
    fn new(p: &Params, cfg: &BertConfig) -> Result<Self> {
        let std = cfg.initializer_range;
        let r = Need::Required;
        let mut word_embeddings = Embedding::new(
            &p.pp("word_embeddings"),
            cfg.vocab_size,
            cfg.hidden_size,
            std,
            r,
        )?;
        word_embeddings.padding_idx = cfg.pad_token_id;
        Ok(Self {
            word_embeddings,
            position_embeddings: Embedding::new(
                &p.pp("position_embeddings"),
                cfg.max_position_embeddings,
                cfg.hidden_size,
                std,
                r,
            )?,
            token_type_embeddings: Embedding::new(
                &p.pp("token_type_embeddings"),
                cfg.type_vocab_size,
                cfg.hidden_size,
                std,
                r,
            )?,
            layer_norm: LayerNorm::new(&p.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps, r)?,
            dropout: cfg.hidden_dropout_prob,
            tap: p.full_name("sum"),
        })
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        mode: &Mode,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let words = self.word_embeddings.forward(input_ids)?;
        let (words, token_type_ids, t) = match hooks.prompt {
            None => (words, token_type_ids.clone(), t),
            Some(p) => {
                let np = p.dim(1)?;
                let zeros = Tensor::zeros((b, np), token_type_ids.dtype(), p.device())?;
                (
                    Tensor::cat(&[&p.to_dtype(words.dtype())?, &words], 1)?,
                    Tensor::cat(&[&zeros, token_type_ids], 1)?,
                    t + np,
                )
            }
        };
        let max_pos = self.position_embeddings.weight.dim(0)?;
        if t > max_pos {
            return Err(Error::BadInput(format!(
                "sequence length {t} exceeds max_position_embeddings {max_pos}"
            )));
        }
        let positions = Tensor::arange(0u32, t as u32, input_ids.device())?;
        let pos = self.position_embeddings.forward(&positions)?; // [T, H]
        let types = self.token_type_embeddings.forward(&token_type_ids)?;
        let x = words.broadcast_add(&pos)?.add(&types)?;
        let x = hooks.tap(&self.tap, x)?;
        let x = self.layer_norm.forward(&x)?;
        mode.dropout(&x, self.dropout)
    }
}

/// Multi-head scaled dot-product self-attention (`attention.self`).
#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    /// `query`.
    pub query: Linear,
    /// `key`.
    pub key: Linear,
    /// `value`.
    pub value: Linear,
    num_heads: usize,
    head_dim: usize,
    dropout: f64,
}

impl BertSelfAttention {
    fn new(p: &Params, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let std = cfg.initializer_range;
        let r = Need::Required;
        Ok(Self {
            query: Linear::new(&p.pp("query"), h, h, std, r)?,
            key: Linear::new(&p.pp("key"), h, h, std, r)?,
            value: Linear::new(&p.pp("value"), h, h, std, r)?,
            num_heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            dropout: cfg.attention_probs_dropout_prob,
        })
    }

    /// `x`: `[B, T, H]`; `mask_add`: `[B, 1, 1, P + T]`, 0 for keys to attend to and
    /// a large negative number for padding keys (`P` = prefix length, 0 without).
    fn forward(
        &self,
        x: &Tensor,
        mask_add: &Tensor,
        mode: &Mode,
        layer: &LayerNames,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let split = |y: Tensor| -> Result<Tensor> {
            let n = y.dim(1)?;
            Ok(y.reshape((b, n, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(hooks.linear(&self.query, &layer.linears[0], x)?)?;
        let mut k = split(hooks.linear(&self.key, &layer.linears[1], x)?)?;
        let mut v = split(hooks.linear(&self.value, &layer.linears[2], x)?)?;
        if let Some(prefix) = hooks.prefix {
            let (pk, pv) = &prefix[layer.index];
            k = Tensor::cat(&[&split(pk.to_dtype(x.dtype())?)?, &k], 2)?;
            v = Tensor::cat(&[&split(pv.to_dtype(x.dtype())?)?, &v], 2)?;
        }
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = q.matmul(&k.t()?)?;
        let probs = crate::ops::masked_softmax(&scores, mask_add, scale)?;
        let probs = mode.dropout(&probs, self.dropout)?;
        let ctx = probs.matmul(&v)?; // [B, heads, T, head_dim]
        Ok(ctx
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, self.num_heads * self.head_dim))?)
    }
}

/// Dense + dropout + residual + LayerNorm (`attention.output` and `output`).
#[derive(Debug, Clone)]
pub struct BertResidualOutput {
    /// `dense`.
    pub dense: Linear,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    dropout: f64,
}

impl BertResidualOutput {
    fn new(p: &Params, cfg: &BertConfig, in_dim: usize) -> Result<Self> {
        let r = Need::Required;
        Ok(Self {
            dense: Linear::new(
                &p.pp("dense"),
                in_dim,
                cfg.hidden_size,
                cfg.initializer_range,
                r,
            )?,
            layer_norm: LayerNorm::new(&p.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps, r)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        residual: &Tensor,
        mode: &Mode,
        dense: (&Hooks, &str),
    ) -> Result<Tensor> {
        let (hooks, name) = dense;
        let y = mode.dropout(&hooks.linear(&self.dense, name, x)?, self.dropout)?;
        self.layer_norm.forward(&(y + residual)?)
    }
}

/// One transformer layer (`encoder.layer.N`).
#[derive(Debug, Clone)]
pub struct BertLayer {
    /// `attention.self`.
    pub attention_self: BertSelfAttention,
    /// `attention.output`.
    pub attention_output: BertResidualOutput,
    /// `intermediate.dense`.
    pub intermediate: Linear,
    /// `output`.
    pub output: BertResidualOutput,
    activation: Activation,
    names: LayerNames,
}

/// A layer's index and the full names of its hookable linears and taps.
#[derive(Debug, Clone)]
struct LayerNames {
    index: usize,
    /// [`LAYER_LINEARS`] under the layer's prefix.
    linears: [String; 6],
    /// `multihead_output` (attention context) and `layer_output`.
    taps: [String; 2],
}

impl BertLayer {
    pub(crate) fn new(p: &Params, cfg: &BertConfig, index: usize) -> Result<Self> {
        let pa = p.pp("attention");
        let names = LayerNames {
            index,
            linears: LAYER_LINEARS.map(|l| p.full_name(l)),
            taps: ["multihead_output", "layer_output"].map(|t| p.full_name(t)),
        };
        Ok(Self {
            attention_self: BertSelfAttention::new(&pa.pp("self"), cfg)?,
            attention_output: BertResidualOutput::new(&pa.pp("output"), cfg, cfg.hidden_size)?,
            intermediate: Linear::new(
                &p.pp("intermediate").pp("dense"),
                cfg.hidden_size,
                cfg.intermediate_size,
                cfg.initializer_range,
                Need::Required,
            )?,
            output: BertResidualOutput::new(&p.pp("output"), cfg, cfg.intermediate_size)?,
            activation: cfg.activation(),
            names,
        })
    }

    /// The layer on `x` `[B, T, H]` with the additive mask `[B, 1, 1, P + T]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        mask_add: &Tensor,
        mode: &Mode,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let n = &self.names;
        let ctx = self.attention_self.forward(x, mask_add, mode, n, hooks)?;
        let ctx = hooks.tap(&n.taps[0], ctx)?;
        let a = self
            .attention_output
            .forward(&ctx, x, mode, (hooks, &n.linears[3]))?;
        let inter = hooks.linear(&self.intermediate, &n.linears[4], &a)?;
        let h = self.activation.forward(&inter)?;
        let o = self.output.forward(&h, &a, mode, (hooks, &n.linears[5]))?;
        hooks.tap(&n.taps[1], o)
    }
}

/// `tanh(dense(h_[CLS]))` (`pooler.dense`).
#[derive(Debug, Clone)]
pub struct BertPooler {
    /// `dense`.
    pub dense: Linear,
}

impl BertPooler {
    fn forward(&self, sequence_output: &Tensor) -> Result<Tensor> {
        let cls = sequence_output.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(self.dense.forward(&cls)?.tanh()?)
    }
}

/// The BERT encoder: embeddings, `num_hidden_layers` layers, optional pooler.
#[derive(Debug, Clone)]
pub struct BertModel {
    /// The configuration it was built from.
    pub config: BertConfig,
    /// `embeddings`.
    pub embeddings: BertEmbeddings,
    /// `encoder.layer.N`.
    pub layers: Vec<BertLayer>,
    /// `pooler`, when built.
    pub pooler: Option<BertPooler>,
}

impl BertModel {
    /// Builds the encoder with parameters under `p` (normally prefix `bert`).
    ///
    /// Encoder tensors are required when `p` reads a checkpoint; the pooler (when
    /// `with_pooler`) is freshly initialised if the checkpoint lacks it, as HF does.
    pub fn new(p: &Params, cfg: &BertConfig, with_pooler: bool) -> Result<Self> {
        cfg.validate().map_err(|message| Error::Config {
            path: PathBuf::from("<config>"),
            message,
        })?;
        let embeddings = BertEmbeddings::new(&p.pp("embeddings"), cfg)?;
        let pe = p.pp("encoder").pp("layer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(&pe.pp(i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let pooler = if with_pooler {
            Some(BertPooler {
                dense: Linear::new(
                    &p.pp("pooler").pp("dense"),
                    cfg.hidden_size,
                    cfg.hidden_size,
                    cfg.initializer_range,
                    Need::FreshIfMissing,
                )?,
            })
        } else {
            None
        };
        Ok(Self {
            config: cfg.clone(),
            embeddings,
            layers,
            pooler,
        })
    }

    /// The dtype of the parameters.
    pub fn dtype(&self) -> DType {
        self.embeddings.word_embeddings.weight.dtype()
    }

    /// Runs the encoder on a padded batch.
    pub fn forward(&self, input: &BertInput, mode: &Mode) -> Result<BertOutput> {
        self.forward_with_hooks(input, mode, &Hooks::default())
    }

    /// Runs the encoder with parameter-efficient additions and taps (see
    /// [`Hooks`]); with no hooks this is [`BertModel::forward`].
    pub fn forward_with_hooks(
        &self,
        input: &BertInput,
        mode: &Mode,
        hooks: &Hooks,
    ) -> Result<BertOutput> {
        let dtype = self.dtype();
        let (b, t) = input.input_ids.dims2()?;
        let token_type_ids = match &input.token_type_ids {
            Some(tt) if tt.dims() != [b, t] => {
                return Err(Error::BadInput(format!(
                    "token_type_ids has shape {:?}, input_ids {:?}",
                    tt.dims(),
                    [b, t]
                )))
            }
            Some(tt) => tt.clone(),
            None => input.input_ids.zeros_like()?,
        };
        let (n_prompt, n_prefix) = hooks.check(b, self.layers.len(), self.config.hidden_size)?;
        let mask_add =
            crate::nn::additive_mask(&input.attention_mask, (b, t), n_prompt + n_prefix, dtype)?;
        // Queries and keys of the tokens (incl. soft prompt tokens) see the whole
        // mask; prefix keys come first, so the token part starts after them.
        let mut x = self
            .embeddings
            .forward(&input.input_ids, &token_type_ids, mode, hooks)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_add, mode, hooks)?;
        }
        if n_prompt > 0 {
            x = x.narrow(1, n_prompt, t)?;
        }
        let pooled_output = match &self.pooler {
            Some(p) => Some(p.forward(&x)?),
            None => None,
        };
        Ok(BertOutput {
            sequence_output: x,
            pooled_output,
        })
    }
}
