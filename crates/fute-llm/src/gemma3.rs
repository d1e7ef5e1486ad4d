//! A dense (f32) Gemma 3 forward pass over a GGUF file's weights (e.g.
//! Gemma-3-270M), for scoring, greedy decoding through a [`KvCache`] and
//! perplexity in one pass.
//!
//! Gemma 3 differs from llama in: embeddings scaled by √hidden; four RMSNorms
//! per block (before and after attention, before and after the feed-forward
//! network), each output norm applied before the residual add; RMSNorm of
//! every query and key head before the rotary embedding; rotary embedding on
//! halves (NeoX form: the GGUF q/k weights are not permuted); a GeLU-tanh
//! gated feed-forward network; local layers that attend within a sliding
//! window with their own rotary base, and every n-th layer global; attention
//! scaled by `query_pre_attn_scalar`^-½; optional soft-capping of attention
//! scores and final logits; output tied to the embedding. The GGUF converter
//! stores Gemma's `(1 + weight)` norm scales with the 1 already added, so the
//! norms read their scale as stored (as llama.cpp does).

use crate::dense::{
    attention, check_tokens, read_f32, read_shaped, rope_halves, rotary_tables, split_heads,
    with_past, AttentionShape, KvCache, Linear, RmsNorm,
};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Result, Tensor};
use std::io::{Read, Seek};

/// Every n-th layer is global when the file does not say (llama.cpp's and
/// Hugging Face's Gemma 3 pattern: five local layers, then one global).
const DEFAULT_GLOBAL_EVERY: usize = 6;
/// Rotary base of the local layers when the file does not say.
const DEFAULT_LOCAL_ROPE_BASE: f64 = 10_000.0;

/// Shape and numerics of a Gemma 3 model, from the GGUF `gemma3.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    /// Transformer blocks (`gemma3.block_count`).
    pub n_layers: usize,
    /// Hidden size (`gemma3.embedding_length`).
    pub hidden: usize,
    /// Query heads (`gemma3.attention.head_count`).
    pub n_heads: usize,
    /// Key/value heads (`gemma3.attention.head_count_kv`).
    pub n_kv_heads: usize,
    /// Size of one head (`gemma3.attention.key_length`; Gemma's heads are
    /// not `hidden / n_heads` wide).
    pub head_dim: usize,
    /// RMSNorm epsilon (`gemma3.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// Rotary base of the global layers (`gemma3.rope.freq_base`).
    pub rope_base: f64,
    /// Rotary base of the local layers (`gemma3.rope.freq_base_swa`, else
    /// 10 000).
    pub local_rope_base: f64,
    /// Linear rotary scaling factor of the global layers
    /// (`gemma3.rope.scaling.factor` with type `linear`, else 1).
    pub rope_scale: f64,
    /// Sliding window of the local layers (`gemma3.attention.sliding_window`).
    pub sliding_window: usize,
    /// Which layers attend within the window (from
    /// `gemma3.attention.sliding_window_pattern`: a period n, where every n-th
    /// layer is global, or one flag per layer; period 6 when absent).
    pub local: Vec<bool>,
    /// Attention scores are multiplied by this (`query_pre_attn_scalar`^-½
    /// from `gemma3.attention.query_pre_attn_scalar`, or
    /// `gemma3.attention.scale`, else `head_dim`^-½).
    pub attention_scale: f64,
    /// `gemma3.attn_logit_softcapping`, when set.
    pub attention_softcap: Option<f64>,
    /// `gemma3.final_logit_softcapping`, when set.
    pub final_softcap: Option<f64>,
    /// Longest sequence the model was trained for (`gemma3.context_length`).
    pub context_length: usize,
}

impl Gemma3Config {
    /// Reads the configuration from GGUF metadata.
    ///
    /// # Errors
    /// When a required key is missing, the architecture is not `gemma3`, or
    /// the shape is inconsistent.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let arch = crate::dense::architecture(content)?;
        if arch != "gemma3" {
            candle_core::bail!("architecture `{arch}` is not gemma3");
        }
        let md = &content.metadata;
        let key = |k: &str| format!("gemma3.{k}");
        let get = |k: &str| {
            md.get(&key(k))
                .ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata lacks `gemma3.{k}`")))
        };
        let opt_f64 = |k: &str| -> Result<Option<f64>> {
            md.get(&key(k)).map(|v| Ok(v.to_f32()? as f64)).transpose()
        };
        let n_layers = get("block_count")?.to_u32()? as usize;
        let n_heads = get("attention.head_count")?.to_u32()? as usize;
        let head_dim = get("attention.key_length")?.to_u32()? as usize;
        if let Some(v) = md.get(&key("attention.value_length")) {
            if v.to_u32()? as usize != head_dim {
                candle_core::bail!("value heads differ in size from key heads");
            }
        }
        let local = match md.get(&key("attention.sliding_window_pattern")) {
            None => period_pattern(n_layers, DEFAULT_GLOBAL_EVERY),
            Some(gguf_file::Value::Array(flags)) => {
                let flags = flags
                    .iter()
                    .map(|f| f.to_bool())
                    .collect::<Result<Vec<_>>>()?;
                if flags.len() != n_layers {
                    candle_core::bail!(
                        "sliding_window_pattern has {} flags for {n_layers} layers",
                        flags.len()
                    );
                }
                flags
            }
            Some(v) => period_pattern(n_layers, v.to_u32()? as usize),
        };
        let rope_scale = match md.get(&key("rope.scaling.type")) {
            Some(t) if t.to_string()? == "linear" => opt_f64("rope.scaling.factor")?.unwrap_or(1.0),
            Some(t) if t.to_string()? != "none" => {
                candle_core::bail!("rope scaling `{}` is not supported", t.to_string()?)
            }
            _ => 1.0,
        };
        let attention_scale = match (
            opt_f64("attention.query_pre_attn_scalar")?,
            opt_f64("attention.scale")?,
        ) {
            (Some(q), _) => q.powf(-0.5),
            (None, Some(s)) => s,
            (None, None) => (head_dim as f64).powf(-0.5),
        };
        let config = Gemma3Config {
            n_layers,
            hidden: get("embedding_length")?.to_u32()? as usize,
            n_heads,
            n_kv_heads: match md.get(&key("attention.head_count_kv")) {
                Some(v) => v.to_u32()? as usize,
                None => n_heads,
            },
            head_dim,
            rms_eps: get("attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: opt_f64("rope.freq_base")?.unwrap_or(1_000_000.0),
            local_rope_base: opt_f64("rope.freq_base_swa")?.unwrap_or(DEFAULT_LOCAL_ROPE_BASE),
            rope_scale,
            sliding_window: get("attention.sliding_window")?.to_u32()? as usize,
            local,
            attention_scale,
            attention_softcap: opt_f64("attn_logit_softcapping")?.filter(|&c| c > 0.0),
            final_softcap: opt_f64("final_logit_softcapping")?.filter(|&c| c > 0.0),
            context_length: get("context_length")?.to_u32()? as usize,
        };
        if config.n_heads == 0
            || config.n_kv_heads == 0
            || !config.n_heads.is_multiple_of(config.n_kv_heads)
            || config.head_dim == 0
            || !config.head_dim.is_multiple_of(2)
            || config.sliding_window == 0
            || config.rope_scale <= 0.0
        {
            candle_core::bail!("unsupported gemma3 shape {config:?}");
        }
        Ok(config)
    }

    fn shape(&self, layer: usize) -> AttentionShape {
        AttentionShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            scale: self.attention_scale,
            window: self.local[layer].then_some(self.sliding_window),
            softcap: self.attention_softcap,
        }
    }
}

/// Layers `0..n` with every `period`-th one (1-based) global.
fn period_pattern(n: usize, period: usize) -> Vec<bool> {
    (0..n)
        .map(|i| period == 0 || (i + 1) % period != 0)
        .collect()
}

/// One Gemma 3 block.
#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    out: Linear,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: RmsNorm,
}

/// A Gemma 3 decoder with every weight in f32, run a whole sequence at a time.
#[derive(Debug, Clone)]
pub struct DenseGemma3 {
    config: Gemma3Config,
    embedding: Tensor,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    /// (vocab, hidden); the embedding itself when the file ties them.
    output: Tensor,
    /// Rotary tables of the global and the local layers, (context, head_dim / 2).
    global_rope: (Tensor, Tensor),
    local_rope: (Tensor, Tensor),
}

impl DenseGemma3 {
    /// Builds the model from a GGUF file's tensors, expanding quantized ones
    /// to f32 (4 bytes per weight in memory).
    ///
    /// # Errors
    /// When metadata or a tensor is missing, or a shape does not fit.
    pub fn from_gguf<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let config = Gemma3Config::from_gguf(content)?;
        let (hidden, head_dim) = (config.hidden, config.head_dim);
        let (q_width, kv_width) = (config.n_heads * head_dim, config.n_kv_heads * head_dim);
        let embedding = read_f32(content, reader, device, "token_embd.weight")?;
        let vocab = embedding.dim(0)?;
        let embedding =
            crate::dense::expect_shape(embedding, "token_embd.weight", &[vocab, hidden])?;
        let norm = |scale: Tensor| RmsNorm {
            scale,
            eps: config.rms_eps,
        };
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            // The FFN width is known only from the tensors themselves.
            let gate = read_f32(content, reader, device, &name("ffn_gate"))?;
            let ffn = gate.dim(0)?;
            let gate = crate::dense::expect_shape(gate, &name("ffn_gate"), &[ffn, hidden])?;
            let mut read =
                |t: &str, want: &[usize]| read_shaped(content, reader, device, &name(t), want);
            let linear = |weight| Linear { weight };
            blocks.push(Block {
                attn_norm: norm(read("attn_norm", &[hidden])?),
                q: linear(read("attn_q", &[q_width, hidden])?),
                k: linear(read("attn_k", &[kv_width, hidden])?),
                v: linear(read("attn_v", &[kv_width, hidden])?),
                q_norm: norm(read("attn_q_norm", &[head_dim])?),
                k_norm: norm(read("attn_k_norm", &[head_dim])?),
                out: linear(read("attn_output", &[hidden, q_width])?),
                post_attn_norm: norm(read("post_attention_norm", &[hidden])?),
                ffn_norm: norm(read("ffn_norm", &[hidden])?),
                gate: linear(gate),
                up: linear(read("ffn_up", &[ffn, hidden])?),
                down: linear(read("ffn_down", &[hidden, ffn])?),
                post_ffn_norm: norm(read("post_ffw_norm", &[hidden])?),
            });
        }
        let final_norm = norm(read_shaped(
            content,
            reader,
            device,
            "output_norm.weight",
            &[hidden],
        )?);
        let output = if content.tensor_infos.contains_key("output.weight") {
            read_shaped(content, reader, device, "output.weight", &[vocab, hidden])?
        } else {
            embedding.clone()
        };
        let len = config.context_length;
        let global_rope =
            rotary_tables(config.rope_base, head_dim, len, config.rope_scale, device)?;
        let local_rope = rotary_tables(config.local_rope_base, head_dim, len, 1.0, device)?;
        Ok(DenseGemma3 {
            config,
            embedding,
            blocks,
            final_norm,
            output,
            global_rope,
            local_rope,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Gemma3Config {
        &self.config
    }

    /// Vocabulary size (rows of the output projection).
    pub fn vocab_size(&self) -> usize {
        self.output.dims()[0]
    }

    /// Runs `tokens` after the positions held in `cache` and appends their
    /// keys and values to it; returns the final-normed hidden states of the
    /// new positions, (tokens, hidden).
    ///
    /// # Errors
    /// When `tokens` is empty, the total exceeds the context length, or a
    /// token id is outside the vocabulary.
    pub fn extend(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Tensor> {
        let (start, seq) = (cache.len(), tokens.len());
        check_tokens(
            tokens,
            start,
            self.config.context_length,
            self.embedding.dim(0)?,
        )?;
        let ids = Tensor::new(tokens, self.embedding.device())?;
        let mut x = (self.embedding.index_select(&ids, 0)? * (self.config.hidden as f64).sqrt())?;
        let rows = |(cos, sin): &(Tensor, Tensor)| -> Result<(Tensor, Tensor)> {
            Ok((cos.narrow(0, start, seq)?, sin.narrow(0, start, seq)?))
        };
        let (global, local) = (rows(&self.global_rope)?, rows(&self.local_rope)?);
        let mut layers = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let rope = if self.config.local[i] {
                &local
            } else {
                &global
            };
            let (y, kv) = block.forward(&x, &self.config, i, rope, cache.layers.get(i))?;
            x = y;
            layers.push(kv);
        }
        cache.layers = layers;
        cache.tokens.extend_from_slice(tokens);
        self.final_norm.forward(&x)
    }

    /// Logits of `hidden` rows, (rows, vocab), soft-capped when the model
    /// says so.
    ///
    /// # Errors
    /// On a shape mismatch.
    pub fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = hidden.matmul(&self.output.t()?)?;
        match self.config.final_softcap {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }

    /// Logits at every position of `tokens`, (seq, vocab).
    ///
    /// # Errors
    /// As [`DenseGemma3::extend`].
    pub fn forward(&self, tokens: &[u32]) -> Result<Tensor> {
        self.project(&self.extend(&mut KvCache::default(), tokens)?)
    }
}

impl Block {
    /// `x`: (seq, hidden) residual stream in and out, with the layer's keys
    /// and values of all positions.
    fn forward(
        &self,
        x: &Tensor,
        config: &Gemma3Config,
        layer: usize,
        (cos, sin): &(Tensor, Tensor),
        past: Option<&(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let shape = config.shape(layer);
        let h = self.attn_norm.forward(x)?;
        let q = split_heads(&self.q.forward(&h)?, shape.n_heads, shape.head_dim)?;
        let k = split_heads(&self.k.forward(&h)?, shape.n_kv_heads, shape.head_dim)?;
        let v = split_heads(&self.v.forward(&h)?, shape.n_kv_heads, shape.head_dim)?;
        let q = rope_halves(&self.q_norm.forward(&q)?, cos, sin)?;
        let k = rope_halves(&self.k_norm.forward(&k)?, cos, sin)?;
        let (k, v, offset) = with_past(k, v, past)?;
        let a = attention(&q, &k, &v, offset, &shape)?;
        let a = self.post_attn_norm.forward(&self.out.forward(&a)?)?;
        let x = (x + a)?;
        let h = self.ffn_norm.forward(&x)?;
        let ff = (self.gate.forward(&h)?.gelu()? * self.up.forward(&h)?)?;
        let ff = self.post_ffn_norm.forward(&self.down.forward(&ff)?)?;
        Ok(((x + ff)?, (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sixth_layer_is_global_by_default() {
        let p = period_pattern(18, 6);
        let global: Vec<usize> = (0..18).filter(|&i| !p[i]).collect();
        assert_eq!(global, [5, 11, 17]);
        assert!(period_pattern(3, 0).iter().all(|&l| l));
    }
}
