//! Pieces shared by the dense (f32) decoders over GGUF weights
//! ([`crate::llama::DenseLlama`], [`crate::gemma3::DenseGemma3`]): the KV
//! cache, RMSNorm, bias-free linear layers, rotary tables and the blocked
//! causal attention; and [`DenseModel`], whichever of the two a file holds.

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Result, Tensor, D};
use std::io::{Read, Seek};

use crate::gemma3::DenseGemma3;
use crate::llama::DenseLlama;

/// Query rows per attention block: bounds the score matrix at
/// `heads × ATTENTION_BLOCK × seq` floats for long sequences.
const ATTENTION_BLOCK: usize = 512;

/// Keys and values of the positions run so far (per layer, `(kv_heads, len,
/// head_dim)`, after rotary embedding), with the tokens they came from.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub(crate) layers: Vec<(Tensor, Tensor)>,
    pub(crate) tokens: Vec<u32>,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens whose keys and values are held.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Keeps the first `len` positions (all when `len` ≥ [`KvCache::len`]).
    ///
    /// # Errors
    /// On a tensor failure.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.tokens.len() {
            return Ok(());
        }
        if len == 0 {
            self.layers.clear();
        } else {
            for (k, v) in &mut self.layers {
                *k = k.narrow(1, 0, len)?;
                *v = v.narrow(1, 0, len)?;
            }
        }
        self.tokens.truncate(len);
        Ok(())
    }

    /// Length of the common start of the held tokens and `tokens`.
    pub fn common_prefix(&self, tokens: &[u32]) -> usize {
        self.tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count()
    }
}

/// RMSNorm with a learned per-channel scale (the scale as the GGUF stores
/// it: Gemma's converter has already added its `1 +`).
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    pub scale: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    /// Normalises over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.scale)
    }
}

/// A bias-free linear layer; `weight` is (out, in) as GGUF stores it.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub weight: Tensor,
}

impl Linear {
    /// `x`: (rows, in) → (rows, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)
    }
}

/// Reads tensor `name` and expands it to f32.
pub(crate) fn read_f32<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    device: &Device,
    name: &str,
) -> Result<Tensor> {
    content
        .tensor(reader, name, device)?
        .dequantize(device)?
        .to_dtype(DType::F32)
}

/// Reads tensor `name` as f32 and fails unless it has shape `want`.
pub(crate) fn read_shaped<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    device: &Device,
    name: &str,
    want: &[usize],
) -> Result<Tensor> {
    expect_shape(read_f32(content, reader, device, name)?, name, want)
}

/// Fails unless `t` has shape `want`.
pub(crate) fn expect_shape(t: Tensor, name: &str, want: &[usize]) -> Result<Tensor> {
    if t.dims() != want {
        candle_core::bail!("`{name}` has shape {:?}, want {want:?}", t.dims());
    }
    Ok(t)
}

/// cos/sin of `position / scale × base^(-2i/head_dim)` for `len` positions,
/// (len, head_dim / 2). Computed in f64 so long positions keep their angle.
pub(crate) fn rotary_tables(
    base: f64,
    head_dim: usize,
    len: usize,
    position_scale: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| base.powf(-((2 * i) as f64) / head_dim as f64))
        .collect();
    let (mut cos, mut sin) = (
        Vec::with_capacity(len * half),
        Vec::with_capacity(len * half),
    );
    for pos in 0..len {
        for f in &inv_freq {
            let angle = pos as f64 / position_scale * f;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (len, half), device)?,
        Tensor::from_vec(sin, (len, half), device)?,
    ))
}

/// Rotates adjacent pairs `(x[2i], x[2i+1])` of every head by the position's
/// angle (the "interleaved" form, matching GGUF's permuted llama q/k weights).
/// `x`: (heads, seq, head_dim); `cos`, `sin`: (seq, head_dim / 2).
pub(crate) fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (heads, seq, dim) = x.dims3()?;
    let pairs = x.reshape((heads, seq, dim / 2, 2))?;
    let even = pairs.narrow(3, 0, 1)?;
    let odd = pairs.narrow(3, 1, 1)?;
    let cos = cos.unsqueeze(2)?;
    let sin = sin.unsqueeze(2)?;
    let new_even = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
    let new_odd = (even.broadcast_mul(&sin)? + odd.broadcast_mul(&cos)?)?;
    Tensor::cat(&[new_even, new_odd], 3)?.reshape((heads, seq, dim))
}

/// Rotates the pairs `(x[i], x[i + head_dim/2])` of every head (the "NeoX"
/// form, which llama.cpp uses for Gemma's unpermuted q/k weights).
/// `x`: (heads, seq, head_dim); `cos`, `sin`: (seq, head_dim / 2).
pub(crate) fn rope_halves(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dim = x.dim(2)?;
    let first = x.narrow(2, 0, dim / 2)?;
    let second = x.narrow(2, dim / 2, dim / 2)?;
    let new_first = (first.broadcast_mul(cos)? - second.broadcast_mul(sin)?)?;
    let new_second = (first.broadcast_mul(sin)? + second.broadcast_mul(cos)?)?;
    Tensor::cat(&[new_first, new_second], 2)
}

/// Softmax over the last dimension (rows hold at least one finite value).
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Additive mask for query rows at positions `start..start + rows` against
/// keys `0..start + rows`: 0 where the key is not after the query (and, with
/// a `window`, fewer than `window` positions before it), −∞ elsewhere.
fn attention_mask(
    start: usize,
    rows: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let keys = start + rows;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|i| {
            let query = start + i;
            (0..keys).map(move |key| {
                let too_far = window.is_some_and(|w| query - key.min(query) >= w);
                if key > query || too_far {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (rows, keys), device)
}

/// How one attention layer weighs its scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q·k (1/√head_dim, or Gemma's `query_pre_attn_scalar`^-½).
    pub scale: f64,
    /// Keys further back than this many positions are masked (sliding window).
    pub window: Option<usize>,
    /// `cap · tanh(score / cap)` on the scaled scores, when set.
    pub softcap: Option<f64>,
}

/// Causal attention of queries `q` (n_heads, seq, head_dim) at positions
/// `offset..offset + seq` over keys and values `k`, `v` (n_kv_heads,
/// offset + seq, head_dim) → (seq, n_heads · head_dim). Consecutive query
/// heads share a KV head (grouped-query attention).
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    offset: usize,
    shape: &AttentionShape,
) -> Result<Tensor> {
    let seq = q.dim(1)?;
    let (n_heads, n_kv, head_dim) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    let group = n_heads / n_kv;
    let mut outputs = Vec::with_capacity(seq.div_ceil(ATTENTION_BLOCK));
    for block_start in (0..seq).step_by(ATTENTION_BLOCK) {
        let rows = ATTENTION_BLOCK.min(seq - block_start);
        // Absolute position of the block's first query.
        let start = offset + block_start;
        let keys = start + rows;
        // Fold each group of query heads into the row dimension so one
        // batched matmul per KV head covers it.
        let q_block = q.narrow(1, block_start, rows)?.contiguous()?.reshape((
            n_kv,
            group * rows,
            head_dim,
        ))?;
        let k_block = k.narrow(1, 0, keys)?;
        let v_block = v.narrow(1, 0, keys)?;
        let mut scores = (q_block.matmul(&k_block.t()?)? * shape.scale)?;
        if let Some(cap) = shape.softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        let scores = scores
            .reshape((n_kv, group, rows, keys))?
            .broadcast_add(&attention_mask(start, rows, shape.window, q.device())?)?;
        let probs = softmax_last(&scores)?.reshape((n_kv, group * rows, keys))?;
        let out = probs
            .matmul(&v_block.contiguous()?)?
            .reshape((n_heads, rows, head_dim))?;
        outputs.push(out);
    }
    Tensor::cat(&outputs, 1)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((seq, n_heads * head_dim))
}

/// Splits (seq, n · head_dim) into heads: (n, seq, head_dim).
pub(crate) fn split_heads(t: &Tensor, n: usize, head_dim: usize) -> Result<Tensor> {
    let seq = t.dim(0)?;
    t.reshape((seq, n, head_dim))?.transpose(0, 1)?.contiguous()
}

/// Appends the new keys and values to a layer's past ones; returns them all
/// and the number of past positions.
pub(crate) fn with_past(
    k: Tensor,
    v: Tensor,
    past: Option<&(Tensor, Tensor)>,
) -> Result<(Tensor, Tensor, usize)> {
    Ok(match past {
        Some((pk, pv)) => (
            Tensor::cat(&[pk, &k], 1)?,
            Tensor::cat(&[pv, &v], 1)?,
            pk.dim(1)?,
        ),
        None => (k, v, 0),
    })
}

/// Checks a run of `tokens` after `start` cached positions: not empty,
/// within `context`, every id below `vocab`.
pub(crate) fn check_tokens(
    tokens: &[u32],
    start: usize,
    context: usize,
    vocab: usize,
) -> Result<()> {
    if tokens.is_empty() {
        candle_core::bail!("no tokens");
    }
    if start + tokens.len() > context {
        candle_core::bail!(
            "{} tokens exceed the context length {context}",
            start + tokens.len()
        );
    }
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("token id {bad} outside the vocabulary ({vocab})");
    }
    Ok(())
}

/// The dense decoder a GGUF file describes (`general.architecture`).
#[derive(Debug, Clone)]
pub enum DenseModel {
    /// `llama` (SmolLM2).
    Llama(DenseLlama),
    /// `gemma3` (Gemma-3-270M).
    Gemma3(DenseGemma3),
}

impl DenseModel {
    /// Builds the model the file's `general.architecture` names (`llama`
    /// when absent), expanding its weights to f32.
    ///
    /// # Errors
    /// An unsupported architecture, or as the model's own `from_gguf`.
    pub fn from_gguf<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        match architecture(content)?.as_str() {
            "llama" => Ok(DenseModel::Llama(DenseLlama::from_gguf(
                content, reader, device,
            )?)),
            "gemma3" => Ok(DenseModel::Gemma3(DenseGemma3::from_gguf(
                content, reader, device,
            )?)),
            other => candle_core::bail!("architecture `{other}` is not supported (llama, gemma3)"),
        }
    }

    /// Longest sequence the model takes.
    pub fn context_length(&self) -> usize {
        match self {
            DenseModel::Llama(m) => m.config().context_length,
            DenseModel::Gemma3(m) => m.config().context_length,
        }
    }

    /// Vocabulary size (rows of the output projection).
    pub fn vocab_size(&self) -> usize {
        match self {
            DenseModel::Llama(m) => m.vocab_size(),
            DenseModel::Gemma3(m) => m.vocab_size(),
        }
    }

    /// Runs `tokens` after the positions held in `cache`, appends their keys
    /// and values, and returns the final-normed hidden states of the new
    /// positions, (tokens, hidden).
    ///
    /// # Errors
    /// When `tokens` is empty, the total exceeds the context length, or a
    /// token id is outside the vocabulary.
    pub fn extend(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Tensor> {
        match self {
            DenseModel::Llama(m) => m.extend(cache, tokens),
            DenseModel::Gemma3(m) => m.extend(cache, tokens),
        }
    }

    /// Final-normed hidden states of every position of `tokens`, (seq, hidden).
    ///
    /// # Errors
    /// As [`DenseModel::extend`].
    pub fn hidden_states(&self, tokens: &[u32]) -> Result<Tensor> {
        self.extend(&mut KvCache::default(), tokens)
    }

    /// Logits of `hidden` rows, (rows, vocab).
    ///
    /// # Errors
    /// On a shape mismatch.
    pub fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        match self {
            DenseModel::Llama(m) => m.project(hidden),
            DenseModel::Gemma3(m) => m.project(hidden),
        }
    }

    /// Logits at every position of `tokens`, (seq, vocab): row `i` scores
    /// the token after `tokens[..=i]`.
    ///
    /// # Errors
    /// As [`DenseModel::extend`].
    pub fn forward(&self, tokens: &[u32]) -> Result<Tensor> {
        self.project(&self.hidden_states(tokens)?)
    }
}

/// `general.architecture` (`llama` when absent, as older files are).
pub(crate) fn architecture(content: &gguf_file::Content) -> Result<String> {
    match content.metadata.get("general.architecture") {
        Some(v) => Ok(v.to_string()?.clone()),
        None => Ok("llama".into()),
    }
}
