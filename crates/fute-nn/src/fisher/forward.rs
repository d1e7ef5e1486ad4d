//! A forward pass of a [`BertTaskModel`] built for Fisher extraction.
//!
//! It computes exactly what [`BertTaskModel::forward`] computes in eval mode (a
//! test checks the logits are bit-identical), with three differences that only
//! change which gradients a backward pass produces:
//!
//! * parameters outside the selected scope are detached, so backward skips their
//!   weight-gradient matmuls;
//! * the three embedding tables are always detached; instead a zero probe `Var`
//!   is added to `words + positions + types`, whose gradient `G[b, t, :]` gives
//!   every embedding-table gradient sparsely (a word row is the sum of `G` over
//!   the tokens with that id), so no dense `[vocab, hidden]` gradient is built;
//! * zero probes on Vu et al.'s activations (attention context before the output
//!   dense, layer output, pooled CLS output) expose their gradients.
//!
//! The model files are not touched: the pass is assembled from the model's public
//! parts ([`Linear`], [`LayerNorm`], [`Activation`]).

use candle_core::{DType, Device, Tensor, Var};

use crate::heads::{BertTaskModel, Head, HeadSpec, TaskOutput};
use crate::models::bert::BertInput;
use crate::nn::{Activation, LayerNorm, Linear};
use crate::Result;

/// Which parts of the network are live (gradients wanted).
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    pub embeddings: bool,
    /// Embedding tables live in autograd (dense gradients) instead of probed.
    pub dense_tables: bool,
    pub layers: Vec<bool>,
    pub pooler: bool,
    pub head: bool,
    /// Probes on attention context and layer output of these layers.
    pub activation_layers: Vec<bool>,
    /// Probe on the pooled output.
    pub cls: bool,
}

/// One live-or-detached `Linear`, with its HF name.
#[derive(Debug, Clone)]
pub(crate) struct NamedLinear {
    pub name: String,
    pub live: bool,
    pub lin: Linear,
}

/// One live-or-detached `LayerNorm`, with its HF name.
#[derive(Debug, Clone)]
pub(crate) struct NamedNorm {
    pub name: String,
    pub live: bool,
    pub norm: LayerNorm,
}

#[derive(Debug, Clone)]
struct NetLayer {
    query: NamedLinear,
    key: NamedLinear,
    value: NamedLinear,
    attn_dense: NamedLinear,
    attn_norm: NamedNorm,
    intermediate: NamedLinear,
    out_dense: NamedLinear,
    out_norm: NamedNorm,
}

/// The network, ready for probed forward passes.
#[derive(Debug, Clone)]
pub(crate) struct FisherNet {
    pub word: Tensor,
    pub position: Tensor,
    pub token_type: Tensor,
    pub emb_norm: NamedNorm,
    layers: Vec<NetLayer>,
    pooler: Option<NamedLinear>,
    head: NamedLinear,
    spec: HeadSpec,
    activation: Activation,
    num_heads: usize,
    head_dim: usize,
    pub hidden: usize,
    pad_token: Option<u32>,
    pub dtype: DType,
    pub device: Device,
    pub live: Liveness,
}

/// Probes of one forward pass (`None` when not requested).
#[derive(Debug)]
pub(crate) struct Probes {
    /// On `words + positions + types`, `[B, T, H]`.
    pub embeddings: Option<Var>,
    /// On each layer's attention context, `[B, T, H]`.
    pub context: Vec<Option<Var>>,
    /// On each layer's output, `[B, T, H]`.
    pub layer_output: Vec<Option<Var>>,
    /// On the pooled output, `[B, H]`.
    pub cls: Option<Var>,
}

fn linear(name: String, l: &Linear, live: bool) -> NamedLinear {
    let lin = if live {
        l.clone()
    } else {
        Linear {
            weight: l.weight.detach(),
            bias: l.bias.detach(),
        }
    };
    NamedLinear { name, live, lin }
}

fn norm(name: String, n: &LayerNorm, live: bool) -> NamedNorm {
    let norm = if live {
        n.clone()
    } else {
        LayerNorm {
            weight: n.weight.detach(),
            bias: n.bias.detach(),
            eps: n.eps,
        }
    };
    NamedNorm { name, live, norm }
}

fn probe(x: &Tensor, on: bool) -> Result<(Tensor, Option<Var>)> {
    if !on {
        return Ok((x.clone(), None));
    }
    let p = Var::zeros(x.shape(), x.dtype(), x.device())?;
    Ok(((x + p.as_tensor())?, Some(p)))
}

impl FisherNet {
    /// Assembles the pass from `model`'s parameters.
    pub fn new(model: &BertTaskModel, live: Liveness) -> Result<Self> {
        let bert = &model.bert;
        let cfg = bert.config.clone();
        let e = &bert.embeddings;
        let le = live.embeddings;
        let layers = bert
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let on = live.layers[i];
                let p = format!("bert.encoder.layer.{i}.");
                NetLayer {
                    query: linear(
                        format!("{p}attention.self.query"),
                        &l.attention_self.query,
                        on,
                    ),
                    key: linear(format!("{p}attention.self.key"), &l.attention_self.key, on),
                    value: linear(
                        format!("{p}attention.self.value"),
                        &l.attention_self.value,
                        on,
                    ),
                    attn_dense: linear(
                        format!("{p}attention.output.dense"),
                        &l.attention_output.dense,
                        on,
                    ),
                    attn_norm: norm(
                        format!("{p}attention.output.LayerNorm"),
                        &l.attention_output.layer_norm,
                        on,
                    ),
                    intermediate: linear(format!("{p}intermediate.dense"), &l.intermediate, on),
                    out_dense: linear(format!("{p}output.dense"), &l.output.dense, on),
                    out_norm: norm(format!("{p}output.LayerNorm"), &l.output.layer_norm, on),
                }
            })
            .collect();
        let pooler = bert
            .pooler
            .as_ref()
            .map(|p| linear("bert.pooler.dense".into(), &p.dense, live.pooler));
        let head = match &model.head {
            Head::Sequence { classifier, .. } => linear("classifier".into(), classifier, live.head),
            Head::Span { qa_outputs } => linear("qa_outputs".into(), qa_outputs, live.head),
        };
        let device = e.word_embeddings.weight.device().clone();
        let table = |t: &Tensor| {
            if le && live.dense_tables {
                t.clone()
            } else {
                t.detach()
            }
        };
        Ok(Self {
            word: table(&e.word_embeddings.weight),
            position: table(&e.position_embeddings.weight),
            token_type: table(&e.token_type_embeddings.weight),
            emb_norm: norm("bert.embeddings.LayerNorm".into(), &e.layer_norm, le),
            layers,
            pooler,
            head,
            spec: model.spec,
            activation: cfg.activation(),
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.hidden_size / cfg.num_attention_heads,
            hidden: cfg.hidden_size,
            pad_token: cfg.pad_token_id,
            dtype: bert.dtype(),
            device,
            live,
        })
    }

    /// Every live `Linear` and `LayerNorm` as (HF name prefix, weight, bias).
    pub fn live_dense(&self) -> Vec<(String, Tensor, Tensor)> {
        let mut out = Vec::new();
        if self.emb_norm.live {
            let n = &self.emb_norm;
            out.push((n.name.clone(), n.norm.weight.clone(), n.norm.bias.clone()));
        }
        for l in &self.layers {
            for lin in [&l.query, &l.key, &l.value, &l.attn_dense] {
                if lin.live {
                    out.push((
                        lin.name.clone(),
                        lin.lin.weight.clone(),
                        lin.lin.bias.clone(),
                    ));
                }
            }
            if l.attn_norm.live {
                let n = &l.attn_norm;
                out.push((n.name.clone(), n.norm.weight.clone(), n.norm.bias.clone()));
            }
            for lin in [&l.intermediate, &l.out_dense] {
                if lin.live {
                    out.push((
                        lin.name.clone(),
                        lin.lin.weight.clone(),
                        lin.lin.bias.clone(),
                    ));
                }
            }
            if l.out_norm.live {
                let n = &l.out_norm;
                out.push((n.name.clone(), n.norm.weight.clone(), n.norm.bias.clone()));
            }
        }
        for lin in self.pooler.iter().chain(std::iter::once(&self.head)) {
            if lin.live {
                out.push((
                    lin.name.clone(),
                    lin.lin.weight.clone(),
                    lin.lin.bias.clone(),
                ));
            }
        }
        out
    }

    /// Eval-mode forward pass with the requested probes.
    pub fn forward(&self, input: &BertInput) -> Result<(TaskOutput, Probes)> {
        let (b, t) = input.input_ids.dims2()?;
        let min = match self.dtype {
            DType::F64 => f64::MIN,
            _ => f32::MIN as f64,
        };
        let keep = input.attention_mask.to_dtype(self.dtype)?;
        let mask_add = ((keep.affine(-1.0, 1.0)?) * min)?.reshape((b, 1, 1, t))?;

        let flat = input.input_ids.flatten_all()?;
        let mut words = self.word.index_select(&flat, 0)?;
        if let (true, Some(pad)) = (self.live.dense_tables, self.pad_token) {
            // The padding row gets no gradient (PyTorch `padding_idx`).
            let is_pad = flat.eq(pad)?.unsqueeze(1)?.broadcast_as(words.shape())?;
            words = is_pad.where_cond(&words.detach(), &words)?;
        }
        let words = words.reshape((b, t, self.hidden))?;
        let positions = Tensor::arange(0u32, t as u32, &self.device)?;
        let pos = self.position.index_select(&positions, 0)?;
        let types = self
            .token_type
            .index_select(&input.token_type_ids.flatten_all()?, 0)?
            .reshape((b, t, self.hidden))?;
        let x = words.broadcast_add(&pos)?.add(&types)?;
        let (x, emb_probe) = probe(&x, self.live.embeddings && !self.live.dense_tables)?;
        let mut x = self.emb_norm.norm.forward(&x)?;

        let mut context = Vec::with_capacity(self.layers.len());
        let mut layer_output = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let split = |y: Tensor| -> Result<Tensor> {
                Ok(y.reshape((b, t, self.num_heads, self.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = split(l.query.lin.forward(&x)?)?;
            let k = split(l.key.lin.forward(&x)?)?;
            let v = split(l.value.lin.forward(&x)?)?;
            let scale = 1.0 / (self.head_dim as f64).sqrt();
            let scores = q.matmul(&k.t()?)?;
            let probs = crate::ops::masked_softmax(&scores, &mask_add, scale)?;
            let ctx =
                probs
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b, t, self.hidden))?;
            let act = self.live.activation_layers[i];
            let (ctx, pc) = probe(&ctx, act)?;
            context.push(pc);
            let a = l
                .attn_norm
                .norm
                .forward(&(l.attn_dense.lin.forward(&ctx)? + &x)?)?;
            let h = self.activation.forward(&l.intermediate.lin.forward(&a)?)?;
            let o = l
                .out_norm
                .norm
                .forward(&(l.out_dense.lin.forward(&h)? + &a)?)?;
            let (o, po) = probe(&o, act)?;
            layer_output.push(po);
            x = o;
        }

        let mut cls_probe = None;
        let out = match &self.pooler {
            Some(pooler) => {
                let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
                let pooled = pooler.lin.forward(&cls)?.tanh()?;
                let (pooled, pc) = probe(&pooled, self.live.cls)?;
                cls_probe = pc;
                let logits = self.head.lin.forward(&pooled)?;
                match self.spec {
                    HeadSpec::Regression => TaskOutput::Scores(logits.squeeze(1)?),
                    _ => TaskOutput::Logits(logits),
                }
            }
            None => {
                let both = self.head.lin.forward(&x)?;
                TaskOutput::Span {
                    start: both.narrow(2, 0, 1)?.squeeze(2)?,
                    end: both.narrow(2, 1, 1)?.squeeze(2)?,
                }
            }
        };
        Ok((
            out,
            Probes {
                embeddings: emb_probe,
                context,
                layer_output,
                cls: cls_probe,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::BuildOptions;
    use crate::models::bert::BertConfig;
    use crate::nn::Mode;

    /// The probed pass must compute what the model computes: if `bert.rs` changes,
    /// this fails until the copy here follows.
    #[test]
    fn probed_forward_equals_model_forward() {
        let cfg = BertConfig::from_json_str(
            r#"{"vocab_size": 23, "hidden_size": 12, "num_hidden_layers": 2,
                "num_attention_heads": 3, "intermediate_size": 17,
                "max_position_embeddings": 16, "initializer_range": 0.3}"#,
        )
        .unwrap();
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[2u32, 5, 7, 3, 9, 3, 0], [2, 8, 11, 4, 3, 6, 3]], &dev).unwrap();
        let types = Tensor::new(&[[0u32, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1, 1]], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]], &dev).unwrap();
        let input = BertInput {
            input_ids: ids,
            token_type_ids: types,
            attention_mask: mask,
        };
        for spec in [
            HeadSpec::Classification { num_labels: 3 },
            HeadSpec::Regression,
            HeadSpec::QuestionAnswering,
        ] {
            let model = BertTaskModel::build(&cfg, spec, None, &BuildOptions::default()).unwrap();
            let n = model.bert.layers.len();
            for dense_tables in [false, true] {
                let live = Liveness {
                    embeddings: true,
                    dense_tables,
                    layers: vec![true; n],
                    pooler: true,
                    head: true,
                    activation_layers: vec![true; n],
                    cls: spec != HeadSpec::QuestionAnswering,
                };
                let net = FisherNet::new(&model, live).unwrap();
                let (ours, _) = net.forward(&input).unwrap();
                let theirs = model.forward(&input, &Mode::eval()).unwrap();
                let flat = |o: &TaskOutput| -> Vec<f32> {
                    match o {
                        TaskOutput::Logits(t) | TaskOutput::Scores(t) => {
                            t.flatten_all().unwrap().to_vec1().unwrap()
                        }
                        TaskOutput::Span { start, end } => Tensor::cat(&[start, end], 0)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap(),
                    }
                };
                assert_eq!(flat(&ours), flat(&theirs), "{spec:?}");
            }
        }
    }
}
