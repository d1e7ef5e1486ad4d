//! A dense (f32) llama forward pass over a GGUF file's weights that returns
//! the logits of every position in one pass, for perplexity scoring.
//!
//! It runs a whole sequence at once (causal attention, grouped KV heads,
//! RMSNorm, SwiGLU MLP, interleaved rotary embeddings as GGUF's permuted q/k
//! weights expect), and can continue a [`KvCache`]: the keys and values of
//! the positions already run, so a prompt that shares its start with the
//! previous one (same system message, instruction and template head) runs
//! only the part that differs, and greedy steps run one token each.

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Result, Tensor, D};
use std::io::{Read, Seek};

/// Query rows per attention block: bounds the score matrix at
/// `heads × ATTENTION_BLOCK × seq` floats for long sequences.
const ATTENTION_BLOCK: usize = 512;

/// Shape and numerics of a llama model, from the GGUF `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks (`llama.block_count`).
    pub n_layers: usize,
    /// Hidden size (`llama.embedding_length`).
    pub hidden: usize,
    /// Query heads (`llama.attention.head_count`).
    pub n_heads: usize,
    /// Key/value heads (`llama.attention.head_count_kv`; query heads are
    /// grouped onto them).
    pub n_kv_heads: usize,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// Rotary base (`llama.rope.freq_base`, 10 000 when absent).
    pub rope_base: f64,
    /// Longest sequence the model was trained for (`llama.context_length`).
    pub context_length: usize,
}

impl LlamaConfig {
    /// Reads the configuration from GGUF metadata.
    ///
    /// # Errors
    /// When a required key is missing or the architecture is not `llama`.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let get = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata lacks `{key}`")))
        };
        if let Some(arch) = content.metadata.get("general.architecture") {
            let arch = arch.to_string()?;
            if arch != "llama" {
                candle_core::bail!("architecture `{arch}` is not llama");
            }
        }
        let n_heads = get("llama.attention.head_count")?.to_u32()? as usize;
        let config = LlamaConfig {
            n_layers: get("llama.block_count")?.to_u32()? as usize,
            hidden: get("llama.embedding_length")?.to_u32()? as usize,
            n_heads,
            n_kv_heads: match content.metadata.get("llama.attention.head_count_kv") {
                Some(v) => v.to_u32()? as usize,
                None => n_heads,
            },
            rms_eps: get("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: match content.metadata.get("llama.rope.freq_base") {
                Some(v) => v.to_f32()? as f64,
                None => 10_000.0,
            },
            context_length: get("llama.context_length")?.to_u32()? as usize,
        };
        if config.n_heads == 0
            || config.n_kv_heads == 0
            || !config.n_heads.is_multiple_of(config.n_kv_heads)
            || !config.hidden.is_multiple_of(config.n_heads)
            || !config.head_dim().is_multiple_of(2)
        {
            candle_core::bail!("unsupported llama shape {config:?}");
        }
        // Partial rotary embeddings are not llama; refuse rather than mis-rotate.
        if let Some(v) = content.metadata.get("llama.rope.dimension_count") {
            let rot = v.to_u32()? as usize;
            if rot != config.head_dim() {
                candle_core::bail!(
                    "rope dimension {rot} differs from head size {}",
                    config.head_dim()
                );
            }
        }
        Ok(config)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.n_heads
    }
}

/// RMSNorm with a learned per-channel scale.
#[derive(Debug, Clone)]
struct RmsNorm {
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// `x`: (seq, hidden).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.scale)
    }
}

/// A bias-free linear layer; `weight` is (out, in) as GGUF stores it.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)
    }
}

/// One transformer block: pre-norm self-attention and pre-norm SwiGLU MLP,
/// each added to the residual stream.
#[derive(Debug, Clone)]
pub struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Keys and values of the positions run so far (per layer, `(kv_heads, len,
/// head_dim)`, after rotary embedding), with the tokens they came from.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    tokens: Vec<u32>,
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

/// A llama decoder with every weight in f32, run a whole sequence at a time.
#[derive(Debug, Clone)]
pub struct DenseLlama {
    config: LlamaConfig,
    embedding: Tensor,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    /// (vocab, hidden); the embedding itself when the file ties them.
    output: Tensor,
    /// (context, head_dim / 2) rotary tables.
    cos: Tensor,
    sin: Tensor,
}

/// Reads tensor `name` and expands it to f32.
fn read_f32<R: Read + Seek>(
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

/// Fails unless `t` has shape `want`.
fn expect_shape(t: Tensor, name: &str, want: &[usize]) -> Result<Tensor> {
    if t.dims() != want {
        candle_core::bail!("`{name}` has shape {:?}, want {want:?}", t.dims());
    }
    Ok(t)
}

impl DenseLlama {
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
        let config = LlamaConfig::from_gguf(content)?;
        let (hidden, head_dim) = (config.hidden, config.head_dim());
        let kv_width = config.n_kv_heads * head_dim;
        let embedding = read_f32(content, reader, device, "token_embd.weight")?;
        let vocab = embedding.dim(0)?;
        let embedding = expect_shape(embedding, "token_embd.weight", &[vocab, hidden])?;
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            // The FFN width is known only from the tensors themselves.
            let gate = read_f32(content, reader, device, &name("ffn_gate"))?;
            let ffn = gate.dim(0)?;
            let gate = expect_shape(gate, &name("ffn_gate"), &[ffn, hidden])?;
            let norm = |scale: Tensor| RmsNorm {
                scale,
                eps: config.rms_eps,
            };
            let mut read = |t: &str, want: &[usize]| -> Result<Tensor> {
                expect_shape(read_f32(content, reader, device, &name(t))?, &name(t), want)
            };
            blocks.push(Block {
                attn_norm: norm(read("attn_norm", &[hidden])?),
                q: Linear {
                    weight: read("attn_q", &[hidden, hidden])?,
                },
                k: Linear {
                    weight: read("attn_k", &[kv_width, hidden])?,
                },
                v: Linear {
                    weight: read("attn_v", &[kv_width, hidden])?,
                },
                out: Linear {
                    weight: read("attn_output", &[hidden, hidden])?,
                },
                ffn_norm: norm(read("ffn_norm", &[hidden])?),
                gate: Linear { weight: gate },
                up: Linear {
                    weight: read("ffn_up", &[ffn, hidden])?,
                },
                down: Linear {
                    weight: read("ffn_down", &[hidden, ffn])?,
                },
            });
        }
        let mut read = |name: &str, want: &[usize]| -> Result<Tensor> {
            expect_shape(read_f32(content, reader, device, name)?, name, want)
        };
        let final_norm = RmsNorm {
            scale: read("output_norm.weight", &[hidden])?,
            eps: config.rms_eps,
        };
        // Small models tie the output projection to the embedding.
        let output = if content.tensor_infos.contains_key("output.weight") {
            read("output.weight", &[vocab, hidden])?
        } else {
            embedding.clone()
        };
        let (cos, sin) = rotary_tables(&config, device)?;
        Ok(DenseLlama {
            config,
            embedding,
            blocks,
            final_norm,
            output,
            cos,
            sin,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Vocabulary size (rows of the output projection).
    pub fn vocab_size(&self) -> usize {
        self.output.dims()[0]
    }

    /// Final-normed hidden states of every position of `tokens`, (seq, hidden).
    ///
    /// # Errors
    /// When `tokens` is empty, longer than the context length, or holds an
    /// id outside the vocabulary.
    pub fn hidden_states(&self, tokens: &[u32]) -> Result<Tensor> {
        self.extend(&mut KvCache::default(), tokens)
    }

    /// Runs `tokens` after the positions held in `cache` and appends their keys
    /// and values to it; returns the final-normed hidden states of the new
    /// positions, (tokens, hidden). With an empty cache this is
    /// [`DenseLlama::hidden_states`].
    ///
    /// # Errors
    /// When `tokens` is empty, the total exceeds the context length, or a
    /// token id is outside the vocabulary.
    pub fn extend(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Tensor> {
        let (start, seq) = (cache.len(), tokens.len());
        if seq == 0 {
            candle_core::bail!("no tokens");
        }
        if start + seq > self.config.context_length {
            candle_core::bail!(
                "{} tokens exceed the context length {}",
                start + seq,
                self.config.context_length
            );
        }
        let vocab = self.embedding.dims()[0];
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("token id {bad} outside the vocabulary ({vocab})");
        }
        let ids = Tensor::new(tokens, self.embedding.device())?;
        let mut x = self.embedding.index_select(&ids, 0)?;
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let mut layers = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let (y, kv) = block.forward(&x, &self.config, &cos, &sin, cache.layers.get(i))?;
            x = y;
            layers.push(kv);
        }
        cache.layers = layers;
        cache.tokens.extend_from_slice(tokens);
        self.final_norm.forward(&x)
    }

    /// Logits of `hidden` rows (from [`DenseLlama::hidden_states`]), (rows, vocab).
    ///
    /// # Errors
    /// On a shape mismatch.
    pub fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden.matmul(&self.output.t()?)
    }

    /// Logits at every position of `tokens`, (seq, vocab): row `i` scores
    /// the token after `tokens[..=i]`.
    ///
    /// # Errors
    /// As [`DenseLlama::hidden_states`].
    pub fn forward(&self, tokens: &[u32]) -> Result<Tensor> {
        self.project(&self.hidden_states(tokens)?)
    }
}

/// cos/sin of `position × base^(-2i/head_dim)` for every position of the
/// context, (context, head_dim / 2). Computed in f64 so long positions keep
/// their angle.
fn rotary_tables(config: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = config.head_dim() / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| {
            config
                .rope_base
                .powf(-((2 * i) as f64) / config.head_dim() as f64)
        })
        .collect();
    let n = config.context_length * half;
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for pos in 0..config.context_length {
        for f in &inv_freq {
            let angle = pos as f64 * f;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let shape = (config.context_length, half);
    Ok((
        Tensor::from_vec(cos, shape, device)?,
        Tensor::from_vec(sin, shape, device)?,
    ))
}

/// Rotates adjacent pairs `(x[2i], x[2i+1])` of every head by the position's
/// angle (the "interleaved" form, matching GGUF's permuted q/k weights).
/// `x`: (heads, seq, head_dim); `cos`, `sin`: (seq, head_dim / 2).
fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
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

/// Softmax over the last dimension (rows hold at least one finite value).
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Additive causal mask for query rows `start..start + rows` against keys
/// `0..start + rows`: 0 where the key is not after the query, −∞ after.
fn causal_mask(start: usize, rows: usize, device: &Device) -> Result<Tensor> {
    let keys = start + rows;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|i| {
            (0..keys).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (rows, keys), device)
}

/// One layer's cached keys and values, `(kv_heads, len, head_dim)` each.
type LayerKv = (Tensor, Tensor);

impl Block {
    /// `x`: (seq, hidden) residual stream of the new positions in, residual
    /// stream out, with the layer's keys and values of all positions (`past`
    /// and new); `cos`, `sin` are the new positions' rows.
    fn forward(
        &self,
        x: &Tensor,
        config: &LlamaConfig,
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&LayerKv>,
    ) -> Result<(Tensor, LayerKv)> {
        let h = self.attn_norm.forward(x)?;
        let (a, kv) = self.attention(&h, config, cos, sin, past)?;
        let x = (x + a)?;
        let h = self.ffn_norm.forward(&x)?;
        let mlp = (self.gate.forward(&h)?.silu()? * self.up.forward(&h)?)?;
        Ok(((x + self.down.forward(&mlp)?)?, kv))
    }

    /// Causal self-attention of the new positions `h` (seq, hidden) over
    /// `past` and themselves → (seq, hidden), and all keys and values.
    fn attention(
        &self,
        h: &Tensor,
        config: &LlamaConfig,
        cos: &Tensor,
        sin: &Tensor,
        past: Option<&LayerKv>,
    ) -> Result<(Tensor, LayerKv)> {
        let seq = h.dim(0)?;
        let (n_heads, n_kv, head_dim) = (config.n_heads, config.n_kv_heads, config.head_dim());
        let group = n_heads / n_kv;
        // (seq, heads·dim) → (heads, seq, dim)
        let heads =
            |t: Tensor, n: usize| t.reshape((seq, n, head_dim))?.transpose(0, 1)?.contiguous();
        let q = rope_interleaved(&heads(self.q.forward(h)?, n_heads)?, cos, sin)?;
        let k = rope_interleaved(&heads(self.k.forward(h)?, n_kv)?, cos, sin)?;
        let v = heads(self.v.forward(h)?, n_kv)?;
        let (k, v, offset) = match past {
            Some((pk, pv)) => (
                Tensor::cat(&[pk, &k], 1)?,
                Tensor::cat(&[pv, &v], 1)?,
                pk.dim(1)?,
            ),
            None => (k, v, 0),
        };
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut outputs = Vec::with_capacity(seq.div_ceil(ATTENTION_BLOCK));
        for block_start in (0..seq).step_by(ATTENTION_BLOCK) {
            let rows = ATTENTION_BLOCK.min(seq - block_start);
            // Absolute position of the block's first query.
            let start = offset + block_start;
            let keys = start + rows;
            // Consecutive query heads share a KV head: fold each group into
            // the row dimension so one batched matmul per KV head covers it.
            let q_block = q.narrow(1, block_start, rows)?.contiguous()?.reshape((
                n_kv,
                group * rows,
                head_dim,
            ))?;
            let k_block = k.narrow(1, 0, keys)?;
            let v_block = v.narrow(1, 0, keys)?;
            let scores = (q_block.matmul(&k_block.t()?)? * scale)?
                .reshape((n_kv, group, rows, keys))?
                .broadcast_add(&causal_mask(start, rows, h.device())?)?;
            let probs = softmax_last(&scores)?.reshape((n_kv, group * rows, keys))?;
            let out = probs
                .matmul(&v_block.contiguous()?)?
                .reshape((n_heads, rows, head_dim))?;
            outputs.push(out);
        }
        let out = Tensor::cat(&outputs, 1)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((seq, n_heads * head_dim))?;
        Ok((self.out.forward(&out)?, (k, v)))
    }
}
