//! DistilBERT (Sanh et al. 2019) in the Hugging Face layout, with its task heads.
//!
//! Layout (`distilbert.…`): `embeddings.{word_embeddings, position_embeddings,
//! LayerNorm}` (no token types; LayerNorm eps fixed at 1e-12), and per layer
//! `transformer.layer.N.attention.{q_lin, k_lin, v_lin, out_lin}`,
//! `sa_layer_norm`, `ffn.{lin1, lin2}`, `output_layer_norm`
//! (<https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/models/distilbert/modeling_distilbert.py>).
//! A layer is post-norm like BERT's, but without dropout after `out_lin`.
//!
//! Heads: `DistilBertForSequenceClassification` reads `[CLS]` through
//! `pre_classifier` → ReLU → dropout (`seq_classif_dropout`) → `classifier`;
//! `DistilBertForQuestionAnswering` applies dropout (`qa_dropout`) then
//! `qa_outputs` to every token. Sinusoidal position tables
//! (`sinusoidal_pos_embds`) are not supported.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::Architecture;
use crate::nn::{Activation, Embedding, LayerNorm, Linear, Mode};
use crate::params::{Checkpoint, Need, Params};
use crate::task::{
    BuildOptions, EmbeddingTable, Forward, HeadSpec, ModelDescription, ModelInput, TableIndex,
    TaskModel, TaskOutput,
};
use crate::{Error, Result};

/// DistilBERT in the registry ([`crate::models::ARCHITECTURES`]).
pub static ARCHITECTURE: Architecture = Architecture {
    model_type: "distilbert",
    base_prefix: "distilbert",
    sequence_class: "DistilBertForSequenceClassification",
    qa_class: "DistilBertForQuestionAnswering",
    sequence_output: "classifier",
    required_fields: &[
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "hidden_dim",
        "max_position_embeddings",
    ],
    encoder_roots: &["embeddings", "transformer"],
    load: load_folder,
};

fn load_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    Ok(Box::new(DistilBertTaskModel::from_folder(dir, spec, opts)?))
}

/// The linears of a layer [`Hooks::linear`] sees, relative to the layer prefix.
pub const LAYER_LINEARS: [&str; 6] = [
    "attention.q_lin",
    "attention.k_lin",
    "attention.v_lin",
    "attention.out_lin",
    "ffn.lin1",
    "ffn.lin2",
];

/// A DistilBERT `config.json`; unknown keys are kept in [`DistilBertConfig::raw`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DistilBertConfig {
    /// Rows of the word table.
    pub vocab_size: usize,
    /// Hidden width.
    pub dim: usize,
    /// Number of layers.
    pub n_layers: usize,
    /// Attention heads per layer.
    pub n_heads: usize,
    /// Feed-forward width.
    pub hidden_dim: usize,
    /// Dropout after embeddings and feed-forward.
    pub dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Feed-forward activation (`gelu`, `gelu_new`, `relu`).
    pub activation: String,
    /// Rows of the position table.
    pub max_position_embeddings: usize,
    /// Fixed sinusoidal positions (not supported).
    pub sinusoidal_pos_embds: bool,
    /// Dropout before the sequence classifier.
    pub seq_classif_dropout: f64,
    /// Dropout before the QA output.
    pub qa_dropout: f64,
    /// Standard deviation of fresh weights.
    pub initializer_range: f64,
    /// Padding token (its word row gets no gradient).
    pub pad_token_id: Option<u32>,
    /// The whole JSON object the config was read from.
    #[serde(skip)]
    pub raw: serde_json::Value,
}

impl Default for DistilBertConfig {
    /// transformers' `DistilBertConfig()` defaults.
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            dim: 768,
            n_layers: 6,
            n_heads: 12,
            hidden_dim: 3072,
            dropout: 0.1,
            attention_dropout: 0.1,
            activation: "gelu".into(),
            max_position_embeddings: 512,
            sinusoidal_pos_embds: false,
            seq_classif_dropout: 0.2,
            qa_dropout: 0.1,
            initializer_range: 0.02,
            pad_token_id: Some(0),
            raw: serde_json::Value::Null,
        }
    }
}

impl DistilBertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let (raw, arch) = crate::models::read_config(path)?;
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if arch.model_type != ARCHITECTURE.model_type {
            return Err(err(format!(
                "model_type `{}` is not a DistilBERT configuration",
                arch.model_type
            )));
        }
        ARCHITECTURE.check_required(&raw, path)?;
        let mut cfg: Self = serde_json::from_value(raw.clone())
            .map_err(|e| err(format!("not a DistilBERT configuration: {e}")))?;
        cfg.raw = raw;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Checks that this implementation supports the configuration.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.sinusoidal_pos_embds {
            return Err("sinusoidal_pos_embds is not supported (learned positions only)".into());
        }
        if Activation::from_hf(&self.activation).is_none() {
            return Err(format!(
                "activation `{}` is not supported (use gelu, gelu_new or relu)",
                self.activation
            ));
        }
        if self.n_heads == 0 || !self.dim.is_multiple_of(self.n_heads) {
            return Err(format!(
                "dim {} is not a multiple of n_heads {}",
                self.dim, self.n_heads
            ));
        }
        for (name, p) in [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("seq_classif_dropout", self.seq_classif_dropout),
            ("qa_dropout", self.qa_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.vocab_size == 0 || self.n_layers == 0 {
            return Err("vocab_size and n_layers must be positive".into());
        }
        Ok(())
    }
}

/// One `transformer.layer.N` (`TransformerBlock`).
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    /// `attention.q_lin`, `k_lin`, `v_lin`, `out_lin`.
    pub attention: [Linear; 4],
    /// `sa_layer_norm`.
    pub sa_layer_norm: LayerNorm,
    /// `ffn.lin1`, `ffn.lin2`.
    pub ffn: [Linear; 2],
    /// `output_layer_norm`.
    pub output_layer_norm: LayerNorm,
    heads: usize,
    activation: Activation,
    dropout: f64,
    attention_dropout: f64,
    linears: [String; 6],
    taps: [String; 2],
    index: usize,
}

impl TransformerBlock {
    fn new(p: &Params, cfg: &DistilBertConfig, index: usize) -> Result<Self> {
        let (h, std, r) = (cfg.dim, cfg.initializer_range, Need::Required);
        let pa = p.pp("attention");
        let lin = |name: &str, i, o| Linear::new(&p.pp(name), i, o, std, r);
        let ln = |name: &str| LayerNorm::new(&p.pp(name), h, 1e-12, r);
        Ok(Self {
            attention: [
                Linear::new(&pa.pp("q_lin"), h, h, std, r)?,
                Linear::new(&pa.pp("k_lin"), h, h, std, r)?,
                Linear::new(&pa.pp("v_lin"), h, h, std, r)?,
                Linear::new(&pa.pp("out_lin"), h, h, std, r)?,
            ],
            sa_layer_norm: ln("sa_layer_norm")?,
            ffn: [
                lin("ffn.lin1", h, cfg.hidden_dim)?,
                lin("ffn.lin2", cfg.hidden_dim, h)?,
            ],
            output_layer_norm: ln("output_layer_norm")?,
            heads: cfg.n_heads,
            activation: Activation::from_hf(&cfg.activation).expect("validated config"),
            dropout: cfg.dropout,
            attention_dropout: cfg.attention_dropout,
            linears: LAYER_LINEARS.map(|l| p.full_name(l)),
            taps: ["multihead_output", "layer_output"].map(|t| p.full_name(t)),
            index,
        })
    }

    fn forward(&self, x: &Tensor, mask_add: &Tensor, mode: &Mode, hooks: &Hooks) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let hd = h / self.heads;
        let split = |y: Tensor| -> Result<Tensor> {
            let n = y.dim(1)?;
            Ok(y.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let [q_lin, k_lin, v_lin, out_lin] = &self.attention;
        let q = split(hooks.linear(q_lin, &self.linears[0], x)?)?;
        let mut k = split(hooks.linear(k_lin, &self.linears[1], x)?)?;
        let mut v = split(hooks.linear(v_lin, &self.linears[2], x)?)?;
        if let Some(prefix) = hooks.prefix {
            let (pk, pv) = &prefix[self.index];
            k = Tensor::cat(&[&split(pk.to_dtype(x.dtype())?)?, &k], 2)?;
            v = Tensor::cat(&[&split(pv.to_dtype(x.dtype())?)?, &v], 2)?;
        }
        let scores = q.matmul(&k.t()?)?;
        let probs = crate::ops::masked_softmax(&scores, mask_add, 1.0 / (hd as f64).sqrt())?;
        let probs = mode.dropout(&probs, self.attention_dropout)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let ctx = hooks.tap(&self.taps[0], ctx)?;
        let sa = hooks.linear(out_lin, &self.linears[3], &ctx)?;
        let sa = self.sa_layer_norm.forward(&(sa + x)?)?;
        let [lin1, lin2] = &self.ffn;
        let f = self
            .activation
            .forward(&hooks.linear(lin1, &self.linears[4], &sa)?)?;
        let f = mode.dropout(&hooks.linear(lin2, &self.linears[5], &f)?, self.dropout)?;
        let o = self.output_layer_norm.forward(&(f + sa)?)?;
        hooks.tap(&self.taps[1], o)
    }
}

/// The head of a DistilBERT task model.
#[derive(Debug, Clone)]
pub enum DistilBertHead {
    /// `[CLS]` → `pre_classifier` → ReLU → dropout → `classifier`.
    Sequence {
        /// `pre_classifier`.
        pre_classifier: Linear,
        /// `classifier`.
        classifier: Linear,
        /// `seq_classif_dropout`.
        dropout: f64,
    },
    /// dropout → `qa_outputs` on every token.
    Span {
        /// `qa_outputs`.
        qa_outputs: Linear,
        /// `qa_dropout`.
        dropout: f64,
    },
}

/// A DistilBERT encoder with one task head.
#[derive(Clone)]
pub struct DistilBertTaskModel {
    /// The configuration.
    pub config: DistilBertConfig,
    /// `distilbert.embeddings.word_embeddings` (row `pad_token_id` gets no gradient).
    pub word_embeddings: Embedding,
    /// `distilbert.embeddings.position_embeddings`.
    pub position_embeddings: Embedding,
    /// `distilbert.embeddings.LayerNorm`.
    pub embeddings_norm: LayerNorm,
    /// `distilbert.transformer.layer.N`.
    pub layers: Vec<TransformerBlock>,
    /// The head.
    pub head: DistilBertHead,
    spec: HeadSpec,
    varmap: VarMap,
    source_dir: Option<PathBuf>,
    description: ModelDescription,
}

impl std::fmt::Debug for DistilBertTaskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistilBertTaskModel")
            .field("spec", &self.spec)
            .field("layers", &self.layers.len())
            .field("source_dir", &self.source_dir)
            .finish_non_exhaustive()
    }
}

/// Vu et al.'s `cls_output`: here `relu(pre_classifier([CLS]))`.
const SEQUENCE_TAP: &str = "cls_output";

impl DistilBertTaskModel {
    /// Builds a model from `checkpoint` (encoder tensors required, head fresh if
    /// absent) or all fresh (seeded) without one.
    pub fn build(
        config: &DistilBertConfig,
        spec: HeadSpec,
        checkpoint: Option<&Checkpoint>,
        opts: &BuildOptions,
    ) -> Result<Self> {
        spec.check()?;
        crate::models::build_checked(&ARCHITECTURE, checkpoint, opts, |p, varmap| {
            Self::assemble(p, config, spec, varmap)
        })
    }

    /// Loads `config.json` and `model.safetensors` from a HF folder with head `spec`.
    pub fn from_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Self> {
        let config = DistilBertConfig::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let mut model = Self::build(&config, spec, Some(&ckpt), opts)?;
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    fn assemble(
        p: &Params,
        cfg: &DistilBertConfig,
        spec: HeadSpec,
        varmap: VarMap,
    ) -> Result<Self> {
        cfg.validate().map_err(|message| Error::Config {
            path: PathBuf::from("<config>"),
            message,
        })?;
        let (h, std, r) = (cfg.dim, cfg.initializer_range, Need::Required);
        let pe = p.pp(ARCHITECTURE.base_prefix).pp("embeddings");
        let mut word_embeddings =
            Embedding::new(&pe.pp("word_embeddings"), cfg.vocab_size, h, std, r)?;
        word_embeddings.padding_idx = cfg.pad_token_id;
        let position_embeddings = Embedding::new(
            &pe.pp("position_embeddings"),
            cfg.max_position_embeddings,
            h,
            std,
            r,
        )?;
        let embeddings_norm = LayerNorm::new(&pe.pp("LayerNorm"), h, 1e-12, r)?;
        let pl = p.pp(ARCHITECTURE.base_prefix).pp("transformer").pp("layer");
        let layers = (0..cfg.n_layers)
            .map(|i| TransformerBlock::new(&pl.pp(i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let fresh = Need::FreshIfMissing;
        let head = match spec {
            HeadSpec::QuestionAnswering => DistilBertHead::Span {
                qa_outputs: Linear::new(&p.head().pp("qa_outputs"), h, 2, std, fresh)?,
                dropout: cfg.qa_dropout,
            },
            _ => DistilBertHead::Sequence {
                pre_classifier: Linear::new(&p.head().pp("pre_classifier"), h, h, std, fresh)?,
                classifier: Linear::new(
                    &p.head().pp("classifier"),
                    h,
                    spec.num_outputs(),
                    std,
                    fresh,
                )?,
                dropout: cfg.seq_classif_dropout,
            },
        };
        Ok(Self {
            config: cfg.clone(),
            word_embeddings,
            position_embeddings,
            embeddings_norm,
            layers,
            head,
            spec,
            varmap,
            source_dir: None,
            description: describe(cfg, spec),
        })
    }
}

fn describe(cfg: &DistilBertConfig, spec: HeadSpec) -> ModelDescription {
    let b = ARCHITECTURE.base_prefix;
    let layer_prefixes: Vec<String> = (0..cfg.n_layers)
        .map(|i| format!("{b}.transformer.layer.{i}."))
        .collect();
    let table = |t: &str, index| EmbeddingTable {
        name: format!("{b}.embeddings.{t}.weight"),
        index,
    };
    ModelDescription {
        model_type: ARCHITECTURE.model_type,
        num_layers: cfg.n_layers,
        hidden_size: cfg.dim,
        num_attention_heads: cfg.n_heads,
        max_positions: cfg.max_position_embeddings,
        pad_token_id: cfg.pad_token_id,
        backbone_prefix: format!("{b}."),
        embeddings_prefix: format!("{b}.embeddings."),
        layer_taps: layer_prefixes
            .iter()
            .map(|p| [format!("{p}multihead_output"), format!("{p}layer_output")])
            .collect(),
        layer_prefixes,
        pooler_prefix: None,
        layer_linears: LAYER_LINEARS.to_vec(),
        // HF peft's default for DistilBERT.
        default_lora_targets: &["q_lin", "v_lin"],
        embedding_tables: vec![
            table("word_embeddings", TableIndex::TokenIds),
            table("position_embeddings", TableIndex::Positions),
        ],
        embeddings_tap: format!("{b}.embeddings.sum"),
        sequence_tap: (spec != HeadSpec::QuestionAnswering).then(|| SEQUENCE_TAP.into()),
    }
}

impl TaskModel for DistilBertTaskModel {
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
        let dtype = self.word_embeddings.weight.dtype();
        let (b, t) = input.input_ids.dims2()?;
        let (np, nk) = hooks.check(b, self.layers.len(), self.config.dim)?;
        let mask_add = crate::nn::additive_mask(&input.attention_mask, (b, t), np + nk, dtype)?;
        let mut words = self.word_embeddings.forward(&input.input_ids)?;
        if let Some(p) = hooks.prompt {
            words = Tensor::cat(&[&p.to_dtype(dtype)?, &words], 1)?;
        }
        let n = np + t;
        let max_pos = self.position_embeddings.weight.dim(0)?;
        if n > max_pos {
            return Err(Error::BadInput(format!(
                "sequence length {n} exceeds max_position_embeddings {max_pos}"
            )));
        }
        let positions = Tensor::arange(0u32, n as u32, input.input_ids.device())?;
        let x = words.broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        let x = hooks.tap(&self.description.embeddings_tap, x)?;
        let mut x = mode.dropout(&self.embeddings_norm.forward(&x)?, self.config.dropout)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_add, mode, hooks)?;
        }
        if np > 0 {
            x = x.narrow(1, np, t)?;
        }
        let output = match &self.head {
            DistilBertHead::Sequence {
                pre_classifier,
                classifier,
                dropout,
            } => {
                let first = x.narrow(1, 0, 1)?.squeeze(1)?;
                let h = pre_classifier.forward(&first)?.relu()?;
                let h = hooks.tap(SEQUENCE_TAP, h)?;
                TaskOutput::sequence(self.spec, classifier.forward(&mode.dropout(&h, *dropout)?)?)?
            }
            DistilBertHead::Span {
                qa_outputs,
                dropout,
            } => TaskOutput::span_from(&qa_outputs.forward(&mode.dropout(&x, *dropout)?)?)?,
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
        let (b, t) = input.input_ids.dims2()?;
        let ids = input.input_ids.flatten_all()?.to_vec1::<u32>()?;
        let positions = (0..b).flat_map(|_| 0..t as u32).collect();
        Ok(vec![(ids, self.config.pad_token_id), (positions, None)])
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
