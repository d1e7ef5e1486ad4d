//! A dense (f32) llama forward pass over a GGUF file's weights that returns
//! the logits of every position in one pass, for perplexity scoring.
//!
//! It runs a whole sequence at once (causal attention, grouped KV heads,
//! RMSNorm, SwiGLU MLP, interleaved rotary embeddings as GGUF's permuted q/k
//! weights expect), and can continue a [`KvCache`]: the keys and values of
//! the positions already run, so a prompt that shares its start with the
//! previous one (same system message, instruction and template head) runs
//! only the part that differs, and greedy steps run one token each.

pub use crate::dense::KvCache;
use crate::dense::{
    attention, check_tokens, expect_shape, read_f32, read_shaped, rope_interleaved, rotary_tables,
    split_heads, with_past, AttentionShape, Linear, RmsNorm,
};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Result, Tensor};
use std::io::{Read, Seek};

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
            let mut read =
                |t: &str, want: &[usize]| read_shaped(content, reader, device, &name(t), want);
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
        let mut read =
            |name: &str, want: &[usize]| read_shaped(content, reader, device, name, want);
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
        let (cos, sin) = rotary_tables(
            config.rope_base,
            head_dim,
            config.context_length,
            1.0,
            device,
        )?;
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
        check_tokens(
            tokens,
            start,
            self.config.context_length,
            self.embedding.dims()[0],
        )?;
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
        let shape = AttentionShape {
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim(),
            scale: 1.0 / (config.head_dim() as f64).sqrt(),
            window: None,
            softcap: None,
        };
        let heads = |t: Tensor, n: usize| split_heads(&t, n, shape.head_dim);
        let q = rope_interleaved(&heads(self.q.forward(h)?, shape.n_heads)?, cos, sin)?;
        let k = rope_interleaved(&heads(self.k.forward(h)?, shape.n_kv_heads)?, cos, sin)?;
        let v = heads(self.v.forward(h)?, shape.n_kv_heads)?;
        let (k, v, offset) = with_past(k, v, past)?;
        let out = attention(&q, &k, &v, offset, &shape)?;
        Ok((self.out.forward(&out)?, (k, v)))
    }
}
