//! Parameter-efficient tuning of a frozen BERT (the TuPaTE family) and how the
//! tuned parameters become a task vector.
//!
//! | method | trainable (besides the task head) | vector |
//! | --- | --- | --- |
//! | prefix (P-tuning v2) | `prefix_encoder.*`: keys/values in front of every layer's attention | mean over positions (TuPaTE) or over layers (FUTE), or the full table |
//! | prompt tuning | `prefix_encoder.weight`: `P` soft tokens before the word embeddings | mean over positions (TuPaTE), or the full table |
//! | LoRA | `<linear>.lora_A` / `lora_B` on the targeted linears (e.g. `bert.encoder.layer.N.attention.self.query`) | every LoRA tensor, by name |
//! | BitFit | every backbone `….bias` | every backbone bias, by name |
//!
//! Works on any [`TaskModel`]: [`Peft::attach`] adds the modules' parameters to
//! the model's `VarMap` (seeded initialisation; names as in TuPaTE / loralib),
//! and [`Adapted`] wraps the model so its forward pass gets the modules as
//! [`Hooks`] (the model never names PEFT). LoRA targets are chosen by HF linear
//! name ([`crate::task::ModelDescription::lora_targets`]).
//! [`Peft::trainable_names`] is what [`crate::train::TrainConfig::trainable`]
//! should get: the backbone stays bit-for-bit frozen, the task head is trained
//! (as in FUTE and TuPaTE) but is not part of the vector ([`Peft::task_vector`]).
//!
//! Choices (documented deviations from the references):
//! * prompt tuning: soft tokens are prepended to the word embeddings, so position
//!   embeddings cover `P + T` positions (as P-tuning v2); they get token type 0
//!   while real tokens keep their segment ids (P-tuning v2 drops them all to 0);
//!   the soft positions are removed after the encoder, so the pooler and the QA
//!   head read the real tokens (`[CLS]`), where P-tuning v2's classifier pools the
//!   first soft token;
//! * initialisation is seeded everywhere (the FUTE code sets no seed): tables
//!   N(0, 1) (PyTorch's `nn.Embedding`), linear maps and LoRA `A` uniform in
//!   `±1/√in` (PyTorch's Linear / loralib), LoRA `B` zeros.

mod lora;
mod prefix;

pub use lora::{LoraAdapters, LoraPair};
pub use prefix::PrefixEncoder;

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::nn::{Linear, Mode};
use crate::rng::SeededRng;
use crate::task::{Forward, HeadSpec, ModelDescription, ModelInput, TaskModel};
use crate::{Error, Result};

/// Prefix tuning (P-tuning v2, TuPaTE `--prefix`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixConfig {
    /// Prefix length `P` (FUTE: 16; TuPaTE's default 4).
    pub len: usize,
    /// Width of the reparameterisation MLP (TuPaTE `--prefix_projection`, 512),
    /// or `None` for a plain table.
    pub projection: Option<usize>,
    /// Dropout on the prefixes during training (FUTE 0.15, TuPaTE the model's 0.1).
    pub dropout: f64,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self {
            len: 16,
            projection: None,
            dropout: 0.1,
        }
    }
}

/// Prompt tuning (TuPaTE `--prompt`).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptConfig {
    /// Number of soft tokens `P`.
    pub len: usize,
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self { len: 16 }
    }
}

/// LoRA (TuPaTE `--lora`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r`.
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / r) · B A x`.
    pub alpha: f64,
    /// Which linear maps of every layer get adapters, by HF name (`query`,
    /// `attention.self.value`, `q_lin`, …; see
    /// [`crate::task::ModelDescription::lora_targets`]); empty = the
    /// architecture's default (`query,value` for BERT).
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: Vec::new(),
        }
    }
}

/// Which parameter-efficient method.
#[derive(Debug, Clone, PartialEq)]
pub enum PeftConfig {
    /// Trainable key/value prefixes in every layer.
    Prefix(PrefixConfig),
    /// Soft tokens before the input.
    PromptTuning(PromptConfig),
    /// Low-rank adapters.
    Lora(LoraConfig),
    /// Only the biases.
    BitFit,
}

impl PeftConfig {
    /// The method's name (`prefix`, `prompt-tuning`, `lora`, `bitfit`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Prefix(_) => "prefix",
            Self::PromptTuning(_) => "prompt-tuning",
            Self::Lora(_) => "lora",
            Self::BitFit => "bitfit",
        }
    }
}

/// How a prefix or prompt table becomes a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// TuPaTE: mean of the trainable table over prefix positions
    /// (`[L·2·hidden]`; `[hidden]` with projection or for prompts).
    Positions,
    /// FUTE: the per-layer prefixes averaged over layers (`[2·hidden·P]`); prefix only.
    Layers,
    /// No reduction: the per-layer prefixes (`[P·L·2·hidden]`) or the prompt table.
    Full,
}

impl Reduce {
    /// Name on the command line and in a space.
    pub fn name(self) -> &'static str {
        match self {
            Self::Positions => "positions",
            Self::Layers => "layers",
            Self::Full => "full",
        }
    }
}

#[derive(Debug, Clone)]
enum Modules {
    Prefix(PrefixEncoder),
    Prompt(Tensor),
    Lora(Arc<LoraAdapters>),
    BitFit,
}

/// Parameter-efficient modules attached to a [`TaskModel`].
#[derive(Debug, Clone)]
pub struct Peft {
    /// The settings they were built with.
    pub config: PeftConfig,
    modules: Modules,
    /// Names of the modules' own parameters, sorted.
    names: Vec<String>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

#[derive(Clone, Copy)]
enum Dist {
    Normal(f64),
    Uniform(f64),
    Zeros,
}

/// Creates, registers and returns a fresh parameter (seeded by `seed` and its name).
struct Maker<'a> {
    varmap: &'a VarMap,
    seed: u64,
    dtype: DType,
    device: Device,
    names: Vec<String>,
}

impl Maker<'_> {
    fn make(&mut self, name: &str, shape: &[usize], dist: Dist) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let rng = SeededRng::new(self.seed ^ fnv1a(name.as_bytes()) ^ 0x5045_4654);
        let values: Vec<f64> = match dist {
            Dist::Zeros => vec![0.0; n],
            Dist::Normal(std) => (0..n).map(|_| rng.normal() * std).collect(),
            Dist::Uniform(bound) => (0..n)
                .map(|_| (rng.uniform() * 2.0 - 1.0) * bound)
                .collect(),
        };
        let t = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        let var = Var::from_tensor(&t)?;
        let mut data = self.varmap.data().lock().expect("VarMap lock poisoned");
        if data.contains_key(name) {
            return Err(Error::BadInput(format!(
                "parameter `{name}` already exists (PEFT attached twice?)"
            )));
        }
        data.insert(name.to_string(), var.clone());
        self.names.push(name.to_string());
        Ok(var.as_tensor().clone())
    }

    fn linear(&mut self, name: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        Ok(Linear {
            weight: self.make(
                &format!("{name}.weight"),
                &[out_dim, in_dim],
                Dist::Uniform(bound),
            )?,
            bias: self.make(&format!("{name}.bias"), &[out_dim], Dist::Uniform(bound))?,
        })
    }
}

fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

impl Peft {
    /// Adds the parameters of `config`'s modules to `model`'s `VarMap` (fresh,
    /// seeded by `seed`) and returns the modules; [`Peft::adapt`] also wraps the
    /// model so its forward pass uses them. Errors on bad settings, unknown
    /// LoRA targets (listing the valid ones) or modules attached twice.
    pub fn attach(model: &dyn TaskModel, config: &PeftConfig, seed: u64) -> Result<Peft> {
        let d = model.describe();
        let (layers, hidden) = (d.num_layers, d.hidden_size);
        let mut mk = Maker {
            varmap: model.varmap(),
            seed,
            dtype: model.dtype(),
            device: model.device(),
            names: Vec::new(),
        };
        let modules = match config {
            PeftConfig::Prefix(c) => {
                if c.len == 0 {
                    return Err(Error::BadInput("prefix length must be at least 1".into()));
                }
                if !(0.0..1.0).contains(&c.dropout) {
                    return Err(Error::BadInput(format!(
                        "prefix dropout must be in [0, 1), got {}",
                        c.dropout
                    )));
                }
                let out = layers * 2 * hidden;
                let (embedding, trans) = match c.projection {
                    None => (
                        mk.make(
                            "prefix_encoder.embedding.weight",
                            &[c.len, out],
                            Dist::Normal(1.0),
                        )?,
                        None,
                    ),
                    Some(0) => {
                        return Err(Error::BadInput(
                            "prefix projection width must be at least 1".into(),
                        ))
                    }
                    Some(m) => {
                        let e = mk.make(
                            "prefix_encoder.embedding.weight",
                            &[c.len, hidden],
                            Dist::Normal(1.0),
                        )?;
                        let l1 = mk.linear("prefix_encoder.trans.0", hidden, m)?;
                        let l2 = mk.linear("prefix_encoder.trans.2", m, out)?;
                        (e, Some((l1, l2)))
                    }
                };
                Modules::Prefix(PrefixEncoder {
                    embedding,
                    trans,
                    layers,
                    hidden,
                    dropout: c.dropout,
                })
            }
            PeftConfig::PromptTuning(c) => {
                if c.len == 0 {
                    return Err(Error::BadInput("prompt length must be at least 1".into()));
                }
                Modules::Prompt(mk.make(
                    "prefix_encoder.weight",
                    &[c.len, hidden],
                    Dist::Normal(1.0),
                )?)
            }
            PeftConfig::Lora(c) => {
                if c.rank == 0 {
                    return Err(Error::BadInput("LoRA needs a rank of at least 1".into()));
                }
                let targets = d.lora_targets(&c.targets)?;
                let mut pairs = std::collections::BTreeMap::new();
                for prefix in &d.layer_prefixes {
                    for t in &targets {
                        let base = format!("{prefix}{t}");
                        // Layers of one model may differ (T5's encoder blocks
                        // have no cross-attention): a target is adapted in
                        // the layers that have it.
                        let Some(w) = model.parameter(&format!("{base}.weight")) else {
                            continue;
                        };
                        let (out_dim, in_dim) = w.dims2()?;
                        let a = mk.make(
                            &format!("{base}.lora_A"),
                            &[c.rank, in_dim],
                            Dist::Uniform(1.0 / (in_dim as f64).sqrt()),
                        )?;
                        let b =
                            mk.make(&format!("{base}.lora_B"), &[out_dim, c.rank], Dist::Zeros)?;
                        pairs.insert(base, LoraPair { a, b });
                    }
                }
                for t in &targets {
                    if !pairs.keys().any(|k| k.ends_with(t)) {
                        return Err(Error::Bug(format!(
                            "LoRA target `{t}` is a linear of no layer of this model"
                        )));
                    }
                }
                Modules::Lora(Arc::new(LoraAdapters {
                    pairs,
                    scale: c.alpha / c.rank as f64,
                }))
            }
            PeftConfig::BitFit => {
                // Decoders such as Llama have no bias anywhere: BitFit would
                // silently train the head alone.
                let has_bias = model
                    .named_parameters()
                    .iter()
                    .any(|(n, _)| d.in_backbone(n) && n.ends_with(".bias"));
                if !has_bias {
                    return Err(Error::BadInput(format!(
                        "BitFit tunes the backbone's biases, and this {} model has none \
                         (its linear maps and norms are bias-free); use LoRA or prefix tuning",
                        d.model_type
                    )));
                }
                Modules::BitFit
            }
        };
        let mut names = mk.names;
        names.sort();
        Ok(Peft {
            config: config.clone(),
            modules,
            names,
        })
    }

    /// [`Peft::attach`], then `model` wrapped so its forward pass uses the modules.
    pub fn adapt<M: TaskModel>(model: M, config: &PeftConfig, seed: u64) -> Result<Adapted<M>> {
        let peft = Self::attach(&model, config, seed)?;
        Ok(Adapted { model, peft })
    }

    /// Names of the modules' own parameters (empty for BitFit), sorted.
    pub fn own_names(&self) -> &[String] {
        &self.names
    }

    /// The parameters to train: the modules' own, the task head's and, for
    /// BitFit, every backbone bias. Everything else stays frozen.
    pub fn trainable_names(&self, model: &dyn TaskModel) -> Vec<String> {
        let d = model.describe();
        let mut out: Vec<String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.names.contains(n)
                    || !d.in_backbone(n)
                    || (matches!(self.modules, Modules::BitFit) && n.ends_with(".bias"))
            })
            .collect();
        out.sort();
        out
    }

    /// Runs `f` with the hooks that put the modules into a forward pass over a
    /// batch of `batch` examples (prefix dropout follows `mode`), keeping the
    /// taps of `outer`.
    pub fn with_hooks<R>(
        &self,
        batch: usize,
        mode: &Mode,
        outer: &Hooks,
        f: impl FnOnce(&Hooks) -> Result<R>,
    ) -> Result<R> {
        let base = Hooks {
            taps: outer.taps,
            ..Default::default()
        };
        match &self.modules {
            Modules::Prefix(p) => {
                let kv = p.keys_values(batch, mode)?;
                f(&Hooks {
                    prefix: Some(&kv),
                    ..base
                })
            }
            Modules::Prompt(table) => {
                let (n, h) = table.dims2()?;
                let prompt = table
                    .unsqueeze(0)?
                    .broadcast_as((batch, n, h))?
                    .contiguous()?;
                f(&Hooks {
                    prompt: Some(&prompt),
                    ..base
                })
            }
            Modules::Lora(l) => f(&Hooks {
                linear: Some(l.as_ref()),
                ..base
            }),
            Modules::BitFit => f(&base),
        }
    }

    /// The same modules on the same tensors, those whose name fails `live`
    /// detached (see [`TaskModel::with_live`]).
    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Peft {
        let keep = |t: &Tensor, name: &str| {
            if live(name) {
                t.clone()
            } else {
                t.detach()
            }
        };
        let lin = |l: &Linear, name: &str| Linear {
            weight: keep(&l.weight, &format!("{name}.weight")),
            bias: keep(&l.bias, &format!("{name}.bias")),
        };
        let modules = match &self.modules {
            Modules::Prefix(p) => Modules::Prefix(PrefixEncoder {
                embedding: keep(&p.embedding, "prefix_encoder.embedding.weight"),
                trans: p.trans.as_ref().map(|(a, b)| {
                    (
                        lin(a, "prefix_encoder.trans.0"),
                        lin(b, "prefix_encoder.trans.2"),
                    )
                }),
                ..p.clone()
            }),
            Modules::Prompt(t) => Modules::Prompt(keep(t, "prefix_encoder.weight")),
            Modules::Lora(l) => Modules::Lora(Arc::new(LoraAdapters {
                pairs: l
                    .pairs
                    .iter()
                    .map(|(n, p)| {
                        let pair = LoraPair {
                            a: keep(&p.a, &format!("{n}.lora_A")),
                            b: keep(&p.b, &format!("{n}.lora_B")),
                        };
                        (n.clone(), pair)
                    })
                    .collect(),
                scale: l.scale,
            })),
            Modules::BitFit => Modules::BitFit,
        };
        Peft {
            config: self.config.clone(),
            modules,
            names: self.names.clone(),
        }
    }

    /// The task vector as named components (head excluded).
    ///
    /// `reduce` applies to prefix and prompt tuning (prompt tuning has no layers);
    /// LoRA and BitFit give one component per tuned tensor, by name.
    pub fn task_vector(
        &self,
        model: &dyn TaskModel,
        reduce: Reduce,
    ) -> Result<Vec<(String, Vec<f32>)>> {
        match &self.modules {
            Modules::Prefix(p) => {
                let heads = model.describe().num_attention_heads;
                let (name, t) = match reduce {
                    Reduce::Positions => ("prefix.mean_over_positions", p.mean_over_positions()?),
                    Reduce::Layers => ("prefix.mean_over_layers", p.mean_over_layers(heads)?),
                    Reduce::Full => ("prefix.key_values", p.table()?),
                };
                Ok(vec![(name.into(), to_f32(&t)?)])
            }
            Modules::Prompt(table) => {
                let (name, t) = match reduce {
                    Reduce::Positions => ("prompt.mean_over_positions", table.mean(D::Minus2)?),
                    Reduce::Full => ("prompt.tokens", table.clone()),
                    Reduce::Layers => {
                        return Err(Error::BadInput(
                            "prompt tuning has one table for all layers: reduce by positions \
                             or keep it full"
                                .into(),
                        ))
                    }
                };
                Ok(vec![(name.into(), to_f32(&t)?)])
            }
            Modules::Lora(_) => self.components(model, |n| self.names.iter().any(|m| m == n)),
            Modules::BitFit => {
                let d = model.describe();
                self.components(model, |n| d.in_backbone(n) && n.ends_with(".bias"))
            }
        }
    }

    fn components(
        &self,
        model: &dyn TaskModel,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, Vec<f32>)>> {
        model
            .named_parameters()
            .into_iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, v)| Ok((n, to_f32(v.as_tensor())?)))
            .collect()
    }
}

/// A task model with parameter-efficient modules: its forward pass is the
/// wrapped model's with the modules' [`Hooks`]; everything else is the wrapped
/// model's (the modules' parameters are in its `VarMap`).
#[derive(Debug, Clone)]
pub struct Adapted<M> {
    /// The wrapped model.
    pub model: M,
    /// The modules.
    pub peft: Peft,
}

impl<M: TaskModel> TaskModel for Adapted<M> {
    fn describe(&self) -> &ModelDescription {
        self.model.describe()
    }

    fn head(&self) -> HeadSpec {
        self.model.head()
    }

    fn varmap(&self) -> &VarMap {
        self.model.varmap()
    }

    fn forward_with(&self, input: &ModelInput, mode: &Mode, hooks: &Hooks) -> Result<Forward> {
        if hooks.prompt.is_some() || hooks.prefix.is_some() || hooks.linear.is_some() {
            return Err(Error::Bug(
                "an adapted model takes no further prompt, prefix or linear hooks".into(),
            ));
        }
        let b = input.input_ids.dim(0)?;
        self.peft
            .with_hooks(b, mode, hooks, |h| self.model.forward_with(input, mode, h))
    }

    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>> {
        Ok(Box::new(Adapted {
            model: self.model.with_live(live)?,
            peft: self.peft.with_live(live),
        }))
    }

    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>> {
        self.model.embedding_rows(input)
    }

    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value> {
        self.model.hf_config(opts)
    }

    fn source_dir(&self) -> Option<&Path> {
        self.model.source_dir()
    }

    fn checkpoint_layout(&self, name: &str, t: &Tensor) -> Result<Tensor> {
        self.model.checkpoint_layout(name, t)
    }
}
