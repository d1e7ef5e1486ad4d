//! T5's `config.json` (`T5Config`), read with transformers' generic aliases
//! and checked for what fute supports.
//!
//! Source: transformers' `configuration_t5.py`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/t5/configuration_t5.py>).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ARCHITECTURE;
use crate::nn::Activation;
use crate::{Error, Result};

/// transformers' `T5Config.attribute_map`: generic names a config may use for
/// T5's own fields.
const ATTRIBUTE_MAP: [(&str, &str); 4] = [
    ("hidden_size", "d_model"),
    ("num_attention_heads", "num_heads"),
    ("num_hidden_layers", "num_layers"),
    ("head_dim", "d_kv"),
];

/// A T5 `config.json`; unknown keys are kept in [`T5Config::raw`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct T5Config {
    /// Rows of `shared` (the one token table of encoder and decoder).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of one attention head (`num_heads · d_kv` need not be `d_model`).
    pub d_kv: usize,
    /// Width of the feed-forward.
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Decoder blocks (`None` = `num_layers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_decoder_layers: Option<usize>,
    /// Attention heads per attention.
    pub num_heads: usize,
    /// Buckets of the relative position bias.
    pub relative_attention_num_buckets: usize,
    /// Distances at or beyond this share the last bucket.
    pub relative_attention_max_distance: usize,
    /// Dropout on embeddings, attention probabilities, every sublayer output,
    /// the feed-forward's inner activation and each stack's output.
    pub dropout_rate: f64,
    /// Added to the mean square in every T5 LayerNorm.
    pub layer_norm_epsilon: f64,
    /// Scale of fresh weights (transformers' T5 initialisation).
    pub initializer_factor: f64,
    /// `relu` (original T5), `gated-gelu` (T5 v1.1: GELU-tanh gate times a
    /// linear map), or `ACT` / `gated-ACT` for ACT in `relu`, `gelu`, `gelu_new`.
    pub feed_forward_proj: String,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// End-of-sequence token(s): the sequence head reads the decoder state at
    /// the last of them (the first, if a list).
    pub eos_token_id: Option<serde_json::Value>,
    /// First decoder input (`None` = `pad_token_id`, T5's convention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder_start_token_id: Option<u32>,
    /// Dropout in the classification head.
    pub classifier_dropout: f64,
    /// Whether a language-model head shares `shared` (no effect on task
    /// models; kept as read so that a saved folder says what it said).
    pub tie_word_embeddings: bool,
    /// Legacy longest input; T5's positions are relative, so only fute's
    /// length checks read it (`None` = 512, T5's pre-training length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_positions: Option<usize>,
    /// Always true for T5.
    pub is_encoder_decoder: bool,
    /// The whole JSON object the config was read from (`Null` when built in code).
    #[serde(skip)]
    pub raw: serde_json::Value,
}

impl Default for T5Config {
    /// transformers' `T5Config()` defaults (`t5-small`'s shape).
    fn default() -> Self {
        Self {
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 6,
            num_decoder_layers: None,
            num_heads: 8,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
            layer_norm_epsilon: 1e-6,
            initializer_factor: 1.0,
            feed_forward_proj: "relu".into(),
            pad_token_id: Some(0),
            eos_token_id: Some(serde_json::json!(1)),
            decoder_start_token_id: None,
            classifier_dropout: 0.0,
            tie_word_embeddings: true,
            n_positions: None,
            is_encoder_decoder: true,
            raw: serde_json::Value::Null,
        }
    }
}

/// The feed-forward a config asks for: gated or not, and its activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedForward {
    /// `wi_0` (through the activation) times `wi_1`, instead of one `wi`.
    pub gated: bool,
    /// The activation.
    pub activation: Activation,
}

impl T5Config {
    /// Reads and validates a `config.json`. Generic field names (`hidden_size`,
    /// `num_hidden_layers`, …) are read as T5's own, as transformers does.
    pub fn from_file(path: &Path) -> Result<Self> {
        let (mut raw, arch) = crate::models::read_config(path)?;
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if arch.model_type != ARCHITECTURE.model_type {
            return Err(err(format!(
                "model_type `{}` is not a T5 configuration",
                arch.model_type
            )));
        }
        if let Some(obj) = raw.as_object_mut() {
            for (generic, own) in ATTRIBUTE_MAP {
                if obj.get(own).is_none_or(serde_json::Value::is_null) {
                    if let Some(v) = obj.remove(generic) {
                        obj.insert(own.to_string(), v);
                    }
                }
            }
        }
        ARCHITECTURE.check_required(&raw, path)?;
        let mut cfg: Self = serde_json::from_value(raw.clone())
            .map_err(|e| err(format!("not a T5 configuration: {e}")))?;
        cfg.raw = raw;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Decoder blocks.
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Width of the attention's query/key/value space, `num_heads · d_kv`.
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// The end-of-sequence id the sequence head looks for.
    pub fn eos(&self) -> Option<u32> {
        let v = self.eos_token_id.as_ref()?;
        let first = v.as_array().and_then(|a| a.first()).unwrap_or(v);
        first.as_u64().and_then(|x| u32::try_from(x).ok())
    }

    /// The first decoder input id.
    pub fn decoder_start(&self) -> Option<u32> {
        self.decoder_start_token_id.or(self.pad_token_id)
    }

    /// The feed-forward `feed_forward_proj` names (`gated-gelu` is GELU-tanh,
    /// as transformers keeps it for backward compatibility).
    pub fn feed_forward(&self) -> std::result::Result<FeedForward, String> {
        let bad = || {
            format!(
                "feed_forward_proj `{}` is not supported (use relu, gated-gelu, or ACT / \
                 gated-ACT with ACT one of relu, gelu, gelu_new)",
                self.feed_forward_proj
            )
        };
        if self.feed_forward_proj == "gated-gelu" {
            return Ok(FeedForward {
                gated: true,
                activation: Activation::GeluTanh,
            });
        }
        let (gated, act) = match self.feed_forward_proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            Some(_) => return Err(bad()),
            None => (false, self.feed_forward_proj.as_str()),
        };
        let activation = Activation::from_hf(act).ok_or_else(bad)?;
        Ok(FeedForward { gated, activation })
    }

    /// Checks that this implementation supports the configuration.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.feed_forward()?;
        if self.vocab_size == 0 || self.d_model == 0 || self.d_kv == 0 || self.d_ff == 0 {
            return Err("vocab_size, d_model, d_kv and d_ff must be positive".into());
        }
        if self.num_layers == 0 || self.decoder_layers() == 0 || self.num_heads == 0 {
            return Err("num_layers, num_decoder_layers and num_heads must be positive".into());
        }
        if self.relative_attention_num_buckets < 4 || self.relative_attention_max_distance == 0 {
            return Err(format!(
                "relative_attention_num_buckets must be at least 4 and \
                 relative_attention_max_distance positive, got {} and {}",
                self.relative_attention_num_buckets, self.relative_attention_max_distance
            ));
        }
        for (name, p) in [
            ("dropout_rate", self.dropout_rate),
            ("classifier_dropout", self.classifier_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon < 0.0 {
            return Err(format!(
                "layer_norm_epsilon must be ≥ 0, got {}",
                self.layer_norm_epsilon
            ));
        }
        if self.decoder_start().is_none() {
            return Err(
                "neither decoder_start_token_id nor pad_token_id is set: T5's decoder input \
                 is the input shifted right behind that id (T5 uses 0)"
                    .into(),
            );
        }
        if !self.is_encoder_decoder {
            return Err(
                "is_encoder_decoder is false: only the encoder-decoder T5 is supported".into(),
            );
        }
        Ok(())
    }
}
