//! GPT-2's `config.json` (`GPT2Config`), read with transformers' generic
//! aliases and checked for what fute supports.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ARCHITECTURE;
use crate::nn::Activation;
use crate::{Error, Result};

/// transformers' `GPT2Config.attribute_map`: generic names a config may use
/// for GPT-2's own fields.
const ATTRIBUTE_MAP: [(&str, &str); 4] = [
    ("hidden_size", "n_embd"),
    ("max_position_embeddings", "n_positions"),
    ("num_attention_heads", "n_head"),
    ("num_hidden_layers", "n_layer"),
];

/// A GPT-2 `config.json`; unknown keys are kept in [`Gpt2Config::raw`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// Rows of `wte`.
    pub vocab_size: usize,
    /// Rows of `wpe`: the longest input, in tokens.
    pub n_positions: usize,
    /// Hidden width.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// MLP width (`None` = 4 · `n_embd`).
    pub n_inner: Option<usize>,
    /// MLP activation (`gelu_new`, `gelu`, `gelu_pytorch_tanh`, `relu`).
    pub activation_function: String,
    /// Dropout after each `c_proj`.
    pub resid_pdrop: f64,
    /// Dropout after the embedding sum.
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities.
    pub attn_pdrop: f64,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// Standard deviation of fresh weights.
    pub initializer_range: f64,
    /// Scale attention scores by `1/√head_dim`.
    pub scale_attn_weights: bool,
    /// Also scale block `N`'s scores by `1/(N+1)`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Compute attention scores in f32 under mixed precision; fute computes
    /// them in the model's dtype either way (the same in f32 and f64).
    pub reorder_and_upcast_attn: bool,
    /// Cross-attention blocks (not supported).
    pub add_cross_attention: bool,
    /// Padding token (GPT-2 has none by default; only the attention mask matters to fute).
    pub pad_token_id: Option<u32>,
    /// The whole JSON object the config was read from.
    #[serde(skip)]
    pub raw: serde_json::Value,
}

impl Default for Gpt2Config {
    /// transformers' `GPT2Config()` defaults (the 124M `gpt2`).
    fn default() -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: "gelu_new".into(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            add_cross_attention: false,
            pad_token_id: None,
            raw: serde_json::Value::Null,
        }
    }
}

impl Gpt2Config {
    /// Reads and validates a `config.json`. Generic field names
    /// (`hidden_size`, `num_hidden_layers`, …) are read as GPT-2's own, as
    /// transformers does.
    pub fn from_file(path: &Path) -> Result<Self> {
        let (mut raw, arch) = crate::models::read_config(path)?;
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if arch.model_type != ARCHITECTURE.model_type {
            return Err(err(format!(
                "model_type `{}` is not a GPT-2 configuration",
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
            .map_err(|e| err(format!("not a GPT-2 configuration: {e}")))?;
        cfg.raw = raw;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// The MLP width.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Checks that this implementation supports the configuration.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.add_cross_attention {
            return Err("add_cross_attention is not supported (decoder-only GPT-2)".into());
        }
        if Activation::from_hf(&self.activation_function).is_none() {
            return Err(format!(
                "activation_function `{}` is not supported (use gelu_new, gelu, \
                 gelu_pytorch_tanh or relu)",
                self.activation_function
            ));
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!(
                "n_embd {} is not a multiple of n_head {}",
                self.n_embd, self.n_head
            ));
        }
        for (name, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.vocab_size == 0 || self.n_layer == 0 || self.n_positions == 0 {
            return Err("vocab_size, n_layer and n_positions must be positive".into());
        }
        Ok(())
    }
}
