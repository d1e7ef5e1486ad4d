//! T5's blocks: `T5Attention` (no score scaling; relative position bias from
//! the first block), `T5LayerFF` (ReLU or gated), and one `T5Block` of the
//! encoder (`layer.0` self-attention, `layer.1` feed-forward) or the decoder
//! (`layer.0` causal self-attention, `layer.1` cross-attention, `layer.2`
//! feed-forward), each sublayer pre-norm (T5 LayerNorm = RMSNorm without
//! bias) with a residual.
//!
//! Source: transformers' `T5Attention`, `T5LayerSelfAttention`,
//! `T5LayerCrossAttention`, `T5LayerFF`, `T5Block`
//! (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/t5/modeling_t5.py>).

use candle_core::{DType, Device, Tensor, D};

use super::config::{FeedForward, T5Config};
use crate::hooks::Hooks;
use crate::nn::{Embedding, Linear, Mode, RmsNorm};
use crate::params::{Need, Params};
use crate::Result;

/// The layer-relative linear names of every block (encoder and decoder
/// blocks together; a name a block lacks, such as `layer.1.EncDecAttention.q`
/// in the encoder, is skipped there), for the feed-forward `ff`.
pub fn layer_linears(ff: FeedForward) -> Vec<&'static str> {
    let mut v = vec![
        "layer.0.SelfAttention.q",
        "layer.0.SelfAttention.k",
        "layer.0.SelfAttention.v",
        "layer.0.SelfAttention.o",
        "layer.1.EncDecAttention.q",
        "layer.1.EncDecAttention.k",
        "layer.1.EncDecAttention.v",
        "layer.1.EncDecAttention.o",
    ];
    if ff.gated {
        v.extend([
            "layer.1.DenseReluDense.wi_0",
            "layer.1.DenseReluDense.wi_1",
            "layer.1.DenseReluDense.wo",
            "layer.2.DenseReluDense.wi_0",
            "layer.2.DenseReluDense.wi_1",
            "layer.2.DenseReluDense.wo",
        ]);
    } else {
        v.extend([
            "layer.1.DenseReluDense.wi",
            "layer.1.DenseReluDense.wo",
            "layer.2.DenseReluDense.wi",
            "layer.2.DenseReluDense.wo",
        ]);
    }
    v
}

/// The block taps (relative to the block prefix), each `[B, T, d_model]`:
/// the self-attention sublayer's output (after `o`, before the residual) and
/// the block output.
pub const LAYER_TAPS: [&str; 2] = ["self_attention_output", "layer_output"];

/// The bucket of relative position `rel = key − query` (Raffel et al. 2020,
/// §2.1; transformers' `_relative_position_bucket`): exact buckets for small
/// distances, logarithmic ones up to `max_distance`, one bucket beyond. A
/// bidirectional attention (the encoder) spends half the buckets on keys after
/// the query; a causal one (the decoder) maps keys after the query to 0.
///
/// The logarithm is taken in f32, as transformers does, so that bucket
/// boundaries agree exactly.
pub fn relative_position_bucket(
    rel: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> u32 {
    let mut buckets = num_buckets as i64;
    let mut out = 0i64;
    let dist = if bidirectional {
        buckets /= 2;
        if rel > 0 {
            out += buckets;
        }
        rel.abs()
    } else {
        (-rel).max(0)
    };
    let max_exact = buckets / 2;
    if dist < max_exact {
        out += dist;
    } else {
        let ratio = (dist as f32 / max_exact as f32).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32);
        let large = max_exact + (ratio * (buckets - max_exact) as f32) as i64;
        out += large.min(buckets - 1);
    }
    out as u32
}

/// The `[Tq, Tk]` bucket ids of queries at positions `q0..q0+tq` and keys at
/// `0..tk`.
pub fn bucket_ids(
    q0: usize,
    tq: usize,
    tk: usize,
    bidirectional: bool,
    cfg: &T5Config,
    device: &Device,
) -> Result<Tensor> {
    let mut ids = Vec::with_capacity(tq * tk);
    for i in 0..tq {
        for j in 0..tk {
            ids.push(relative_position_bucket(
                j as i64 - (q0 + i) as i64,
                bidirectional,
                cfg.relative_attention_num_buckets,
                cfg.relative_attention_max_distance,
            ));
        }
    }
    Ok(Tensor::from_vec(ids, (tq, tk), device)?)
}

/// The dtype's lowest finite value, transformers' masking value.
pub fn mask_value(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// One `T5Attention`: `q`, `k`, `v` (`[heads·d_kv, d_model]`) and `o`
/// (`[d_model, heads·d_kv]`), none with bias; in the first block of each
/// stack also `relative_attention_bias` (`[num_buckets, heads]`).
#[derive(Debug, Clone)]
pub struct T5Attention {
    /// `q`, `k`, `v`, `o`.
    pub qkvo: [Linear; 4],
    /// `relative_attention_bias`, in the first block's self-attention only.
    pub relative_attention_bias: Option<Embedding>,
    heads: usize,
    d_kv: usize,
    dropout: f64,
    names: [String; 4],
}

impl T5Attention {
    fn new(p: &Params, cfg: &T5Config, relative_bias: bool) -> Result<Self> {
        let (d, inner, f, r) = (
            cfg.d_model,
            cfg.inner_dim(),
            cfg.initializer_factor,
            Need::Required,
        );
        let df = d as f64;
        // transformers' `_init_weights` for T5Attention.
        let lin = |name: &str, i, o, std: f64| Linear::without_bias(&p.pp(name), i, o, f * std, r);
        Ok(Self {
            qkvo: [
                lin("q", d, inner, (df * cfg.d_kv as f64).powf(-0.5))?,
                lin("k", d, inner, df.powf(-0.5))?,
                lin("v", d, inner, df.powf(-0.5))?,
                lin("o", inner, d, (inner as f64).powf(-0.5))?,
            ],
            relative_attention_bias: if relative_bias {
                Some(Embedding::new(
                    &p.pp("relative_attention_bias"),
                    cfg.relative_attention_num_buckets,
                    cfg.num_heads,
                    f * df.powf(-0.5),
                    r,
                )?)
            } else {
                None
            },
            heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            dropout: cfg.dropout_rate,
            names: ["q", "k", "v", "o"].map(|n| p.full_name(n)),
        })
    }

    /// The position bias `[1, heads, Tq, Tk]` for bucket ids `[Tq, Tk]`.
    pub fn position_bias(&self, buckets: &Tensor) -> Result<Option<Tensor>> {
        let Some(table) = &self.relative_attention_bias else {
            return Ok(None);
        };
        Ok(Some(
            table
                .forward(buckets)?
                .permute((2, 0, 1))?
                .unsqueeze(0)?
                .contiguous()?,
        ))
    }

    /// Attention of `x` `[B, Tq, d_model]` over `kv` `[B, Tk, d_model]` (`x`
    /// itself for self-attention) with key/value `prefix` (each `[B, P,
    /// heads·d_kv]`) in front, and the additive `bias` (position bias plus
    /// mask, broadcastable to `[B, heads, Tq, P + Tk]`). Scores are not scaled
    /// (T5 folds the scale into its initialisation).
    fn forward(
        &self,
        x: &Tensor,
        kv: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        bias: &Tensor,
        mode: &Mode,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let (b, tq, _) = x.dims3()?;
        let hd = self.d_kv;
        let split = |y: Tensor| -> Result<Tensor> {
            let n = y.dim(1)?;
            Ok(y.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let [q, k, v, o] = &self.qkvo;
        let q = split(hooks.linear(q, &self.names[0], x)?)?;
        let mut k = split(hooks.linear(k, &self.names[1], kv)?)?;
        let mut v = split(hooks.linear(v, &self.names[2], kv)?)?;
        if let Some((pk, pv)) = prefix {
            k = Tensor::cat(&[&split(pk.to_dtype(x.dtype())?)?, &k], 2)?;
            v = Tensor::cat(&[&split(pv.to_dtype(x.dtype())?)?, &v], 2)?;
        }
        let z = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax(&z, D::Minus1)?;
        let probs = mode.dropout(&probs, self.dropout)?;
        let ctx =
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, tq, self.heads * hd))?;
        hooks.linear(o, &self.names[3], &ctx)
    }
}

/// `T5LayerFF`'s `DenseReluDense`: `wo(act(wi x))`, or gated
/// `wo(act(wi_0 x) · wi_1 x)`; no biases.
#[derive(Debug, Clone)]
pub struct DenseReluDense {
    /// `wi` (or `wi_0` and `wi_1` when gated), `[d_ff, d_model]`.
    pub wi: Vec<Linear>,
    /// `wo`, `[d_model, d_ff]`.
    pub wo: Linear,
    ff: FeedForward,
    dropout: f64,
    names: Vec<String>,
}

impl DenseReluDense {
    fn new(p: &Params, cfg: &T5Config, ff: FeedForward) -> Result<Self> {
        let (d, f, r) = (cfg.d_model, cfg.initializer_factor, Need::Required);
        let std_in = f * (d as f64).powf(-0.5);
        let inputs: &[&str] = if ff.gated { &["wi_0", "wi_1"] } else { &["wi"] };
        let wi = inputs
            .iter()
            .map(|n| Linear::without_bias(&p.pp(n), d, cfg.d_ff, std_in, r))
            .collect::<Result<Vec<_>>>()?;
        let wo = Linear::without_bias(
            &p.pp("wo"),
            cfg.d_ff,
            d,
            f * (cfg.d_ff as f64).powf(-0.5),
            r,
        )?;
        let mut names: Vec<String> = inputs.iter().map(|n| p.full_name(n)).collect();
        names.push(p.full_name("wo"));
        Ok(Self {
            wi,
            wo,
            ff,
            dropout: cfg.dropout_rate,
            names,
        })
    }

    fn forward(&self, x: &Tensor, mode: &Mode, hooks: &Hooks) -> Result<Tensor> {
        let h = self
            .ff
            .activation
            .forward(&hooks.linear(&self.wi[0], &self.names[0], x)?)?;
        let h = if self.ff.gated {
            (h * hooks.linear(&self.wi[1], &self.names[1], x)?)?
        } else {
            h
        };
        let h = mode.dropout(&h, self.dropout)?;
        hooks.linear(&self.wo, self.names.last().expect("wo"), &h)
    }
}

/// One `encoder.block.N` or `decoder.block.N` (`T5Block`).
#[derive(Debug, Clone)]
pub struct T5Block {
    /// `layer.0.SelfAttention`.
    pub self_attention: T5Attention,
    /// `layer.0.layer_norm`.
    pub self_attention_norm: RmsNorm,
    /// Decoder only: `layer.1.EncDecAttention` and `layer.1.layer_norm`.
    pub cross_attention: Option<(T5Attention, RmsNorm)>,
    /// `layer.{1|2}.DenseReluDense`.
    pub ff: DenseReluDense,
    /// `layer.{1|2}.layer_norm`.
    pub ff_norm: RmsNorm,
    dropout: f64,
    taps: [String; 2],
}

impl T5Block {
    /// Block `index` of the encoder (`decoder = false`) or decoder under `p`.
    pub fn new(p: &Params, cfg: &T5Config, index: usize, decoder: bool) -> Result<Self> {
        let ff = cfg.feed_forward().map_err(crate::Error::BadInput)?;
        let (d, eps, r) = (cfg.d_model, cfg.layer_norm_epsilon, Need::Required);
        let norm = |l: &Params| RmsNorm::new(&l.pp("layer_norm"), d, eps, r);
        let l0 = p.pp("layer").pp(0);
        let self_attention = T5Attention::new(&l0.pp("SelfAttention"), cfg, index == 0)?;
        let self_attention_norm = norm(&l0)?;
        let (cross_attention, ff_layer) = if decoder {
            let l1 = p.pp("layer").pp(1);
            // Old checkpoints hold a cross-attention position table that
            // transformers never uses (`_keys_to_ignore_on_load_unexpected`).
            l1.pp("EncDecAttention")
                .skip_buffer("relative_attention_bias.weight");
            let cross = T5Attention::new(&l1.pp("EncDecAttention"), cfg, false)?;
            (Some((cross, norm(&l1)?)), p.pp("layer").pp(2))
        } else {
            (None, p.pp("layer").pp(1))
        };
        Ok(Self {
            self_attention,
            self_attention_norm,
            cross_attention,
            ff: DenseReluDense::new(&ff_layer.pp("DenseReluDense"), cfg, ff)?,
            ff_norm: norm(&ff_layer)?,
            dropout: cfg.dropout_rate,
            taps: LAYER_TAPS.map(|t| p.full_name(t)),
        })
    }

    /// The block on `x` `[B, T, d_model]`: `self_bias` is the self-attention's
    /// position bias plus mask; `cross` the encoder output and its mask
    /// (decoder blocks).
    pub fn forward(
        &self,
        x: &Tensor,
        self_bias: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        cross: Option<(&Tensor, &Tensor)>,
        mode: &Mode,
        hooks: &Hooks,
    ) -> Result<Tensor> {
        let h = self.self_attention_norm.forward(x)?;
        let a = self
            .self_attention
            .forward(&h, &h, prefix, self_bias, mode, hooks)?;
        let a = hooks.tap(&self.taps[0], a)?;
        let mut x = (x + mode.dropout(&a, self.dropout)?)?;
        if let (Some((attn, norm)), Some((enc, enc_bias))) = (&self.cross_attention, cross) {
            let h = norm.forward(&x)?;
            let a = attn.forward(&h, enc, None, enc_bias, mode, hooks)?;
            x = (x + mode.dropout(&a, self.dropout)?)?;
        }
        let h = self.ff_norm.forward(&x)?;
        let f = self.ff.forward(&h, mode, hooks)?;
        let x = (x + mode.dropout(&f, self.dropout)?)?;
        hooks.tap(&self.taps[1], x)
    }
}
