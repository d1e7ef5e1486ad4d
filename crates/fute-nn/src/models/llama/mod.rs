//! Llama-family decoders (Touvron et al. 2023; SmolLM2 is one) in the Hugging
//! Face layout, with the task heads transformers gives them.
//!
//! Layout (`model.…`): `embed_tokens`, per layer `layers.N.{input_layernorm,
//! self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj}`
//! ([`layer::DecoderLayer`]), and the final RMSNorm `norm`. Positions are
//! rotary (HF's `rotate_half` convention); attention is causal and grouped
//! (`num_key_value_heads` key/value heads shared by `num_attention_heads`
//! query heads); the feed-forward is SwiGLU. Linears have no bias unless
//! `attention_bias` / `mlp_bias` say so.
//!
//! Heads, as transformers' generic classes
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/modeling_layers.py>):
//! `LlamaForSequenceClassification` applies `score` (no bias) to the last
//! token that is not `pad_token_id` (the rightmost one, from the ids, whatever
//! the attention mask says); `LlamaForQuestionAnswering` keeps its base under
//! `transformer.` (not `model.`) and applies `qa_outputs` to every token.
//! Either loads a checkpoint that stores the base under the other prefix or
//! under none (a bare `LlamaModel`), as well as a `LlamaForCausalLM` (its
//! `lm_head` is not used). [`LlamaTaskModel::from_gguf`] loads a llama.cpp
//! GGUF file instead ([`gguf`]).

pub mod gguf;
pub mod layer;

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::Architecture;
use crate::nn::{Embedding, Linear, Mode, RmsNorm};
use crate::params::{Checkpoint, Need, Params};
use crate::task::{
    BuildOptions, EmbeddingTable, Forward, HeadSpec, ModelDescription, ModelInput, TableIndex,
    TaskModel, TaskOutput,
};
use crate::{Error, Result};

pub use layer::{DecoderLayer, LAYER_LINEARS, LAYER_TAPS};

/// Llama in the registry ([`crate::models::ARCHITECTURES`]).
pub static ARCHITECTURE: Architecture = Architecture {
    model_type: "llama",
    base_prefix: "model",
    sequence_class: "LlamaForSequenceClassification",
    qa_class: "LlamaForQuestionAnswering",
    sequence_output: "score",
    required_fields: &[
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    ],
    encoder_roots: &["embed_tokens", "layers", "norm"],
    load: load_folder,
};

/// Where `LlamaForQuestionAnswering` keeps its base (transformers' backward-compatible name).
const QA_BASE: &str = "transformer";

fn load_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    Ok(Box::new(LlamaTaskModel::from_folder(dir, spec, opts)?))
}

/// A Llama `config.json` (transformers' `LlamaConfig`); unknown keys are kept
/// in [`LlamaConfig::raw`]. Defaults are transformers'.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    /// Rows of `embed_tokens`.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention); `None` = one per query head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Width of a head; `None` = `hidden_size / num_attention_heads` (the only value supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Feed-forward gate activation (`silu`).
    pub hidden_act: String,
    /// Longest sequence the model was trained on (rotary positions have no table).
    pub max_position_embeddings: usize,
    /// Added to the mean square in every RMSNorm.
    pub rms_norm_eps: f64,
    /// transformers ≥ 5: `{"rope_type": "default", "rope_theta": θ}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// transformers < 5: the rotary base θ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// transformers < 5: rotary scaling (only none or `default` is supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// Biases on the attention projections.
    pub attention_bias: bool,
    /// Biases on the feed-forward projections.
    pub mlp_bias: bool,
    /// Dropout on attention probabilities (training only).
    pub attention_dropout: f64,
    /// Standard deviation of fresh weights.
    pub initializer_range: f64,
    /// Padding token: its `embed_tokens` row gets no gradient, and the sequence
    /// head reads the last token that is not it.
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    /// Whether a causal LM head shares `embed_tokens` (no effect on task models).
    pub tie_word_embeddings: bool,
    /// The whole JSON object the config was read from (`Null` when built in code).
    #[serde(skip)]
    pub raw: serde_json::Value,
}

impl Default for LlamaConfig {
    /// transformers' `LlamaConfig()` defaults.
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_parameters: None,
            rope_theta: None,
            rope_scaling: None,
            attention_bias: false,
            mlp_bias: false,
            attention_dropout: 0.0,
            initializer_range: 0.02,
            pad_token_id: None,
            bos_token_id: Some(1),
            eos_token_id: Some(serde_json::json!(2)),
            tie_word_embeddings: false,
            raw: serde_json::Value::Null,
        }
    }
}

impl LlamaConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let (raw, arch) = crate::models::read_config(path)?;
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if arch.model_type != ARCHITECTURE.model_type {
            return Err(err(format!(
                "model_type `{}` is not a Llama configuration",
                arch.model_type
            )));
        }
        ARCHITECTURE.check_required(&raw, path)?;
        let mut cfg: Self = serde_json::from_value(raw.clone())
            .map_err(|e| err(format!("not a Llama configuration: {e}")))?;
        cfg.raw = raw;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Key/value heads per layer.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The rotary base θ: `rope_parameters.rope_theta`, else `rope_theta`, else 10000.
    pub fn rope_base(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|r| r.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(10000.0)
    }

    /// Checks that this implementation supports the configuration.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (heads, kv) = (self.num_attention_heads, self.kv_heads());
        if self.vocab_size == 0 || self.num_hidden_layers == 0 || self.intermediate_size == 0 {
            return Err(
                "vocab_size, num_hidden_layers and intermediate_size must be positive".into(),
            );
        }
        if heads == 0 || !self.hidden_size.is_multiple_of(heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {heads}",
                self.hidden_size
            ));
        }
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
            ));
        }
        let hd = self.hidden_size / heads;
        if let Some(d) = self.head_dim.filter(|&d| d != hd) {
            return Err(format!(
                "head_dim {d} differs from hidden_size / num_attention_heads = {hd} (not supported)"
            ));
        }
        if !hd.is_multiple_of(2) {
            return Err(format!(
                "head width {hd} is odd: rotary positions need pairs"
            ));
        }
        if !matches!(self.hidden_act.as_str(), "silu" | "swish") {
            return Err(format!(
                "hidden_act `{}` is not supported (Llama's SwiGLU uses silu)",
                self.hidden_act
            ));
        }
        let rope_type = |v: &serde_json::Value| {
            v.get("rope_type")
                .or_else(|| v.get("type"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("default")
                .to_string()
        };
        for r in [&self.rope_parameters, &self.rope_scaling]
            .into_iter()
            .flatten()
        {
            let t = rope_type(r);
            if !r.is_null() && t != "default" {
                return Err(format!(
                    "rotary scaling `{t}` is not supported (only the default rotary positions)"
                ));
            }
        }
        if self.rope_base().is_nan() || self.rope_base() <= 0.0 {
            return Err(format!(
                "rope_theta must be positive, got {}",
                self.rope_base()
            ));
        }
        if !(0.0..1.0).contains(&self.attention_dropout) {
            return Err(format!(
                "attention_dropout must be in [0, 1), got {}",
                self.attention_dropout
            ));
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps < 0.0 {
            return Err(format!(
                "rms_norm_eps must be ≥ 0, got {}",
                self.rms_norm_eps
            ));
        }
        Ok(())
    }
}

/// The head of a Llama task model.
#[derive(Debug, Clone)]
pub enum LlamaHead {
    /// `score` (no bias) on the last non-padding token.
    Sequence {
        /// `score`, `[num_labels, hidden]`.
        score: Linear,
    },
    /// `qa_outputs` on every token.
    Span {
        /// `qa_outputs`, `[2, hidden]` with bias.
        qa_outputs: Linear,
    },
}

/// A Llama decoder with one task head.
#[derive(Clone)]
pub struct LlamaTaskModel {
    /// The configuration.
    pub config: LlamaConfig,
    /// `<base>.embed_tokens` (row `pad_token_id` gets no gradient).
    pub embed_tokens: Embedding,
    /// `<base>.layers.N`.
    pub layers: Vec<DecoderLayer>,
    /// `<base>.norm`, the final RMSNorm.
    pub norm: RmsNorm,
    /// The head.
    pub head: LlamaHead,
    spec: HeadSpec,
    varmap: VarMap,
    source_dir: Option<PathBuf>,
    description: ModelDescription,
}

impl std::fmt::Debug for LlamaTaskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaTaskModel")
            .field("spec", &self.spec)
            .field("layers", &self.layers.len())
            .field("source_dir", &self.source_dir)
            .finish_non_exhaustive()
    }
}

/// The hidden state the sequence head reads, `[B, hidden]`.
const SEQUENCE_TAP: &str = "last_token_output";

/// The base prefix of the task class of `spec`, and the other one a checkpoint may use.
fn base_of(spec: HeadSpec) -> (&'static str, &'static [&'static str]) {
    match spec {
        HeadSpec::QuestionAnswering => (QA_BASE, &["model"]),
        _ => (ARCHITECTURE.base_prefix, &[QA_BASE]),
    }
}

impl LlamaTaskModel {
    /// Builds a model from `checkpoint` (base tensors required, under `model.`,
    /// `transformer.` or no prefix; head fresh if absent) or all fresh (seeded)
    /// without one.
    pub fn build(
        config: &LlamaConfig,
        spec: HeadSpec,
        checkpoint: Option<&Checkpoint>,
        opts: &BuildOptions,
    ) -> Result<Self> {
        spec.check()?;
        let (base, aliases) = base_of(spec);
        crate::models::build_checked_under(
            &ARCHITECTURE,
            base,
            aliases,
            checkpoint,
            opts,
            |p, varmap| Self::assemble(p, config, spec, varmap),
        )
    }

    /// Loads `config.json` and `model.safetensors` from a HF folder with head `spec`.
    pub fn from_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let mut model = Self::build(&config, spec, Some(&ckpt), opts)?;
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    /// Loads a Llama GGUF file (see [`gguf`]: dequantised to f32, HF names)
    /// with head `spec`; the head is fresh (seeded by `opts.seed`).
    pub fn from_gguf(path: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Self> {
        let (config, ckpt) = gguf::read(path)?;
        Self::build(&config, spec, Some(&ckpt), opts)
    }

    fn assemble(p: &Params, cfg: &LlamaConfig, spec: HeadSpec, varmap: VarMap) -> Result<Self> {
        cfg.validate().map_err(|message| Error::Config {
            path: PathBuf::from("<config>"),
            message,
        })?;
        let (h, std, r) = (cfg.hidden_size, cfg.initializer_range, Need::Required);
        let pb = p.pp(base_of(spec).0);
        let mut embed_tokens = Embedding::new(&pb.pp("embed_tokens"), cfg.vocab_size, h, std, r)?;
        embed_tokens.padding_idx = cfg.pad_token_id;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(&pb.pp("layers").pp(i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&pb.pp("norm"), h, cfg.rms_norm_eps, r)?;
        let fresh = Need::FreshIfMissing;
        let head = match spec {
            HeadSpec::QuestionAnswering => LlamaHead::Span {
                qa_outputs: Linear::new(&p.head().pp("qa_outputs"), h, 2, std, fresh)?,
            },
            _ => LlamaHead::Sequence {
                score: Linear::without_bias(
                    &p.head().pp("score"),
                    h,
                    spec.num_outputs(),
                    std,
                    fresh,
                )?,
            },
        };
        Ok(Self {
            config: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            head,
            spec,
            varmap,
            source_dir: None,
            description: describe(cfg, spec),
        })
    }

    /// Per row of `ids` `[B, T]`, the rightmost position whose id is not the
    /// padding id (0 when all are), as transformers' sequence head.
    fn last_tokens(&self, ids: &Tensor) -> Result<Vec<usize>> {
        let rows = ids.to_vec2::<u32>()?;
        let Some(pad) = self.config.pad_token_id else {
            if rows.len() == 1 {
                return Ok(vec![rows[0].len().saturating_sub(1)]);
            }
            return Err(Error::BadInput(
                "this Llama config has no pad_token_id, so the last token of each padded \
                 sequence cannot be found (transformers refuses such batches too); set \
                 pad_token_id in config.json"
                    .into(),
            ));
        };
        Ok(rows
            .iter()
            .map(|r| r.iter().rposition(|&id| id != pad).unwrap_or(0))
            .collect())
    }
}

fn describe(cfg: &LlamaConfig, spec: HeadSpec) -> ModelDescription {
    let b = base_of(spec).0;
    let layer_prefixes: Vec<String> = (0..cfg.num_hidden_layers)
        .map(|i| format!("{b}.layers.{i}."))
        .collect();
    ModelDescription {
        model_type: ARCHITECTURE.model_type,
        num_layers: cfg.num_hidden_layers,
        hidden_size: cfg.hidden_size,
        num_attention_heads: cfg.num_attention_heads,
        max_positions: cfg.max_position_embeddings,
        pad_token_id: cfg.pad_token_id,
        backbone_prefix: format!("{b}."),
        embeddings_prefix: format!("{b}.embed_tokens."),
        layer_taps: layer_prefixes
            .iter()
            .map(|p| LAYER_TAPS.map(|t| format!("{p}{t}")))
            .collect(),
        layer_prefixes,
        // The final RMSNorm stands where BERT's pooler does: after the last
        // layer, before the head, so Fisher scopes treat it alike.
        pooler_prefix: Some(format!("{b}.norm.")),
        layer_linears: LAYER_LINEARS.to_vec(),
        // HF peft's default for Llama.
        default_lora_targets: &["q_proj", "v_proj"],
        embedding_tables: vec![EmbeddingTable {
            name: format!("{b}.embed_tokens.weight"),
            index: TableIndex::TokenIds,
        }],
        embeddings_tap: format!("{b}.embed_tokens.output"),
        sequence_tap: (spec != HeadSpec::QuestionAnswering).then(|| SEQUENCE_TAP.into()),
    }
}

impl TaskModel for LlamaTaskModel {
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
        let dtype = self.embed_tokens.weight.dtype();
        let device = input.input_ids.device();
        let (b, t) = input.input_ids.dims2()?;
        let h = self.config.hidden_size;
        let (np, nk) = hooks.check(b, self.layers.len(), h)?;
        if input.attention_mask.dims() != [b, t] {
            return Err(Error::BadInput(format!(
                "attention_mask has shape {:?}, input_ids {:?}",
                input.attention_mask.dims(),
                [b, t]
            )));
        }
        let words = self.embed_tokens.forward(&input.input_ids)?;
        let mut x = hooks.tap(&self.description.embeddings_tap, words)?;
        let mut keep = input.attention_mask.to_dtype(DType::U32)?;
        if let Some(p) = hooks.prompt {
            x = Tensor::cat(&[&p.to_dtype(dtype)?, &x], 1)?;
            keep = Tensor::cat(&[&Tensor::ones((b, np), DType::U32, device)?, &keep], 1)?;
        }
        let mask_add = layer::causal_mask(&keep, nk, dtype)?;
        let rotary = layer::rotary_tables(
            np + t,
            self.config.head_dim(),
            self.config.rope_base(),
            dtype,
            device,
        )?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_add, &rotary, mode, hooks)?;
        }
        let mut x = self.norm.forward(&x)?;
        if np > 0 {
            x = x.narrow(1, np, t)?.contiguous()?;
        }
        let output = match &self.head {
            LlamaHead::Sequence { score } => {
                let rows: Vec<u32> = self
                    .last_tokens(&input.input_ids)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, j)| (i * t + j) as u32)
                    .collect();
                let rows = Tensor::new(rows.as_slice(), device)?;
                let pooled = x.reshape((b * t, h))?.index_select(&rows, 0)?;
                let pooled = hooks.tap(SEQUENCE_TAP, pooled)?;
                TaskOutput::sequence(self.spec, score.forward(&pooled)?)?
            }
            LlamaHead::Span { qa_outputs } => TaskOutput::span_from(&qa_outputs.forward(&x)?)?,
        };
        Ok(Forward {
            output,
            last_hidden_state: x,
        })
    }

    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>> {
        let p = Params::from_vars(&self.varmap, live, self.dtype(), &self.device());
        let mut m = Self::assemble(&p, &self.config, self.spec, self.varmap.clone())?;
        m.source_dir = self.source_dir.clone();
        Ok(Box::new(m))
    }

    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>> {
        let ids = input.input_ids.flatten_all()?.to_vec1::<u32>()?;
        Ok(vec![(ids, self.config.pad_token_id)])
    }

    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value> {
        let base = if self.config.raw.is_object() {
            self.config.raw.clone()
        } else {
            serde_json::to_value(&self.config).map_err(|e| Error::Bug(format!("config: {e}")))?
        };
        crate::checkpoint::task_config(base, &ARCHITECTURE, self.spec, opts)
    }

    fn source_dir(&self) -> Option<&Path> {
        self.source_dir.as_deref()
    }
}
