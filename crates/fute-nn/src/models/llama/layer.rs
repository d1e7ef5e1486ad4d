//! One Llama decoder layer (`model.layers.N`): pre-norm grouped-query
//! self-attention with rotary positions, then a pre-norm SwiGLU feed-forward,
//! each added to the residual stream; and the causal mask and rotary tables
//! the layers share.
//!
//! Source: transformers' `LlamaDecoderLayer`, `LlamaAttention`,
//! `eager_attention_forward`, `apply_rotary_pos_emb` and `LlamaMLP`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/llama/modeling_llama.py>).

use candle_core::{DType, Device, Tensor};

use super::LlamaConfig;
use crate::hooks::Hooks;
use crate::nn::{Linear, Mode, RmsNorm};
use crate::params::{Need, Params};
use crate::Result;

/// The linears of a layer [`Hooks::linear`] sees, relative to the layer prefix.
pub const LAYER_LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// The layer taps (relative to the layer prefix): the attention context
/// before `o_proj` and the layer output, each `[B, T, hidden]`.
pub const LAYER_TAPS: [&str; 2] = ["self_attn.context", "layer_output"];

/// Rotary position tables for `n` positions: `(cos, sin)`, each `[n, head_dim]`,
/// with HF's `rotate_half` layout (the `head_dim / 2` frequencies twice over):
/// angle `pos · θ^(−2i/head_dim)` for column `i` and `i + head_dim/2`.
///
/// Computed in f64 and cast to `dtype` (transformers computes them in float32;
/// the difference is below float32 rounding).
pub fn rotary_tables(
    n: usize,
    head_dim: usize,
    theta: f64,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect();
    let mut cos = Vec::with_capacity(n * head_dim);
    let mut sin = Vec::with_capacity(n * head_dim);
    for pos in 0..n {
        for _ in 0..2 {
            for f in &inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    let t = |v: Vec<f64>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (n, head_dim), device)?.to_dtype(dtype)?)
    };
    Ok((t(cos)?, t(sin)?))
}

/// The additive mask `[B, 1, T, extra + T]` of a decoder: query `i` sees key
/// `j ≤ i` where `keep[b, j] = 1`, and every one of the `extra` keys in front
/// (prefix keys/values); 0 where attended, the dtype's lowest finite value
/// elsewhere (as transformers' `create_causal_mask` for eager attention).
/// `keep` is `[B, T]` (0/1), soft prompt positions included.
pub fn causal_mask(keep: &Tensor, extra: usize, dtype: DType) -> Result<Tensor> {
    let (b, t) = keep.dims2()?;
    let device = keep.device().clone();
    let keep = keep.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let min = match dtype {
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    };
    let k = extra + t;
    let mut out = vec![0f64; b * t * k];
    for (bi, row) in keep.iter().enumerate() {
        for i in 0..t {
            let base = (bi * t + i) * k + extra;
            for (j, &kept) in row.iter().enumerate() {
                if j > i || kept == 0 {
                    out[base + j] = min;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (b, 1, t, k), &device)?.to_dtype(dtype)?)
}

/// One `model.layers.N` (`LlamaDecoderLayer`).
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    /// `self_attn.q_proj`, `k_proj`, `v_proj`, `o_proj` (`[heads·hd, hidden]`,
    /// `[kv·hd, hidden]` twice, `[hidden, heads·hd]`).
    pub self_attn: [Linear; 4],
    /// `mlp.gate_proj`, `up_proj` (`[ffn, hidden]`) and `down_proj` (`[hidden, ffn]`).
    pub mlp: [Linear; 3],
    /// `input_layernorm` (before attention).
    pub input_layernorm: RmsNorm,
    /// `post_attention_layernorm` (before the feed-forward).
    pub post_attention_layernorm: RmsNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    attention_dropout: f64,
    linears: [String; 7],
    taps: [String; 2],
    index: usize,
}

impl DecoderLayer {
    /// Layer `index` under `p` (`model.layers.N`).
    pub fn new(p: &Params, cfg: &LlamaConfig, index: usize) -> Result<Self> {
        let (h, std, r) = (cfg.hidden_size, cfg.initializer_range, Need::Required);
        let hd = cfg.head_dim();
        let kv = cfg.kv_heads();
        let lin = |name: &str, i, o, bias: bool| {
            if bias {
                Linear::new(&p.pp(name), i, o, std, r)
            } else {
                Linear::without_bias(&p.pp(name), i, o, std, r)
            }
        };
        let (ab, mb) = (cfg.attention_bias, cfg.mlp_bias);
        Ok(Self {
            self_attn: [
                lin("self_attn.q_proj", h, cfg.num_attention_heads * hd, ab)?,
                lin("self_attn.k_proj", h, kv * hd, ab)?,
                lin("self_attn.v_proj", h, kv * hd, ab)?,
                lin("self_attn.o_proj", cfg.num_attention_heads * hd, h, ab)?,
            ],
            mlp: [
                lin("mlp.gate_proj", h, cfg.intermediate_size, mb)?,
                lin("mlp.up_proj", h, cfg.intermediate_size, mb)?,
                lin("mlp.down_proj", cfg.intermediate_size, h, mb)?,
            ],
            input_layernorm: RmsNorm::new(&p.pp("input_layernorm"), h, cfg.rms_norm_eps, r)?,
            post_attention_layernorm: RmsNorm::new(
                &p.pp("post_attention_layernorm"),
                h,
                cfg.rms_norm_eps,
                r,
            )?,
            heads: cfg.num_attention_heads,
            kv_heads: kv,
            head_dim: hd,
            attention_dropout: cfg.attention_dropout,
            linears: LAYER_LINEARS.map(|l| p.full_name(l)),
            taps: LAYER_TAPS.map(|t| p.full_name(t)),
            index,
        })
    }

    /// The layer on `x` `[B, T, hidden]` with the shared `mask_add`
    /// ([`causal_mask`]) and rotary tables `[T, head_dim]`.
    ///
    /// Key/value prefixes (`hooks.prefix`, each `[B, P, hidden]`) are read as
    /// one prefix per *query* head (`hidden = heads · head_dim`), carry no
    /// rotation and are put in front of the keys after they are shared out to
    /// the query heads; every query sees them. (PEFT's prefix tuning for a
    /// decoder instead has one prefix per key/value head and shifts the real
    /// tokens' positions by `P`; here positions stay `0..T`, as
    /// [`Hooks::prefix`] promises for every architecture.)
    pub fn forward(
        &self,
        x: &Tensor,
        mask_add: &Tensor,
        rotary: &(Tensor, Tensor),
        mode: &Mode,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hd = self.head_dim;
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            let n = y.dim(1)?;
            Ok(y.reshape((b, n, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        // Each key/value head serves `heads / kv_heads` consecutive query heads (HF `repeat_kv`).
        let share = |y: Tensor| -> Result<Tensor> {
            let rep = self.heads / self.kv_heads;
            if rep == 1 {
                return Ok(y);
            }
            let n = y.dim(2)?;
            Ok(y.unsqueeze(2)?
                .broadcast_as((b, self.kv_heads, rep, n, hd))?
                .contiguous()?
                .reshape((b, self.heads, n, hd))?)
        };
        let [q_proj, k_proj, v_proj, o_proj] = &self.self_attn;
        let normed = self.input_layernorm.forward(x)?;
        let q = split(hooks.linear(q_proj, &self.linears[0], &normed)?, self.heads)?;
        let k = split(
            hooks.linear(k_proj, &self.linears[1], &normed)?,
            self.kv_heads,
        )?;
        let v = split(
            hooks.linear(v_proj, &self.linears[2], &normed)?,
            self.kv_heads,
        )?;
        let (cos, sin) = rotary;
        let q = crate::ops::rotary(&q, cos, sin)?;
        let mut k = share(crate::ops::rotary(&k, cos, sin)?)?;
        let mut v = share(v)?;
        if let Some(prefix) = hooks.prefix {
            let (pk, pv) = &prefix[self.index];
            k = Tensor::cat(&[&split(pk.to_dtype(x.dtype())?, self.heads)?, &k], 2)?;
            v = Tensor::cat(&[&split(pv.to_dtype(x.dtype())?, self.heads)?, &v], 2)?;
        }
        let scale = 1.0 / (hd as f64).sqrt();
        // One op for scale, causal mask and softmax: it keeps only the
        // probabilities for the backward pass (the composite form kept five
        // `[B, heads, T, K]` tensors per layer, the largest part of a
        // layer's memory in a Fisher or training step).
        let probs = crate::ops::masked_softmax(&q.matmul(&k.t()?)?, mask_add, scale)?;
        let probs = mode.dropout(&probs, self.attention_dropout)?;
        let ctx =
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, self.heads * hd))?;
        let ctx = hooks.tap(&self.taps[0], ctx)?;
        let x = (x + hooks.linear(o_proj, &self.linears[3], &ctx)?)?;
        let [gate, up, down] = &self.mlp;
        let normed = self.post_attention_layernorm.forward(&x)?;
        let g = hooks.linear(gate, &self.linears[4], &normed)?.silu()?;
        let u = hooks.linear(up, &self.linears[5], &normed)?;
        let f = hooks.linear(down, &self.linears[6], &(g * u)?)?;
        hooks.tap(&self.taps[1], (x + f)?)
    }
}
