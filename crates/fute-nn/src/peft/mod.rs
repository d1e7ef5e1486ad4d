//! Parameter-efficient tuning of a frozen BERT (the TuPaTE family) and how the
//! tuned parameters become a task vector.
//!
//! | method | trainable (besides the task head) | vector |
//! | --- | --- | --- |
//! | prefix (P-tuning v2) | `prefix_encoder.*`: keys/values in front of every layer's attention | mean over positions (TuPaTE) or over layers (FUTE), or the full table |
//! | prompt tuning | `prefix_encoder.weight`: `P` soft tokens before the word embeddings | mean over positions (TuPaTE), or the full table |
//! | LoRA | `bert.encoder.layer.N.<site>.lora_A` / `lora_B` | every LoRA tensor, by name |
//! | BitFit | every `bert.…bias` | every encoder bias, by name |
//!
//! [`Peft::attach`] adds the modules' parameters to the model's `VarMap` (seeded
//! initialisation; names as in TuPaTE / loralib) and makes
//! [`BertTaskModel::forward`] use them. [`Peft::trainable_names`] is what
//! [`crate::train::TrainConfig::trainable`] should get: the backbone stays
//! bit-for-bit frozen, the task head is trained (as in FUTE and TuPaTE) but is
//! not part of the vector ([`Peft::task_vector`]).
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

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::heads::BertTaskModel;
use crate::models::bert::{BertHooks, BertInput, BertModel, BertOutput, LinearSite};
use crate::nn::{Linear, Mode};
use crate::rng::SeededRng;
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
    /// Which linear maps of every layer get adapters.
    pub targets: Vec<LinearSite>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: vec![LinearSite::Query, LinearSite::Value],
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

/// Parameter-efficient modules attached to a [`BertTaskModel`].
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
    model: &'a BertTaskModel,
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
        let mut data = self
            .model
            .varmap
            .data()
            .lock()
            .expect("VarMap lock poisoned");
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
    /// Adds the modules of `config` to `model` (fresh parameters seeded by `seed`).
    pub fn attach(model: &mut BertTaskModel, config: &PeftConfig, seed: u64) -> Result<()> {
        if model.peft.is_some() {
            return Err(Error::BadInput(
                "the model already has parameter-efficient modules".into(),
            ));
        }
        let cfg = model.config().clone();
        let (layers, hidden) = (cfg.num_hidden_layers, cfg.hidden_size);
        let mut mk = Maker {
            model,
            seed,
            dtype: model.bert.dtype(),
            device: model
                .bert
                .embeddings
                .word_embeddings
                .weight
                .device()
                .clone(),
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
                if c.rank == 0 || c.targets.is_empty() {
                    return Err(Error::BadInput(
                        "LoRA needs a rank of at least 1 and at least one target".into(),
                    ));
                }
                let mut pairs = Vec::with_capacity(layers);
                for (i, layer) in model.bert.layers.iter().enumerate() {
                    let mut sites = Vec::new();
                    for &site in &c.targets {
                        if sites.iter().any(|(s, _)| *s == site) {
                            continue;
                        }
                        let lin = match site {
                            LinearSite::Query => &layer.attention_self.query,
                            LinearSite::Key => &layer.attention_self.key,
                            LinearSite::Value => &layer.attention_self.value,
                            LinearSite::AttentionOutput => &layer.attention_output.dense,
                            LinearSite::Intermediate => &layer.intermediate,
                            LinearSite::Output => &layer.output.dense,
                        };
                        let (out_dim, in_dim) = lin.weight.dims2()?;
                        let base = format!("bert.encoder.layer.{i}.{}", site.hf_name());
                        let a = mk.make(
                            &format!("{base}.lora_A"),
                            &[c.rank, in_dim],
                            Dist::Uniform(1.0 / (in_dim as f64).sqrt()),
                        )?;
                        let b =
                            mk.make(&format!("{base}.lora_B"), &[out_dim, c.rank], Dist::Zeros)?;
                        sites.push((site, LoraPair { a, b }));
                    }
                    pairs.push(sites);
                }
                Modules::Lora(Arc::new(LoraAdapters {
                    pairs,
                    scale: c.alpha / c.rank as f64,
                }))
            }
            PeftConfig::BitFit => Modules::BitFit,
        };
        let mut names = mk.names;
        names.sort();
        model.peft = Some(Peft {
            config: config.clone(),
            modules,
            names,
        });
        Ok(())
    }

    /// Names of the modules' own parameters (empty for BitFit), sorted.
    pub fn own_names(&self) -> &[String] {
        &self.names
    }

    /// The parameters to train: the modules' own, the task head's and, for
    /// BitFit, every encoder bias. Everything else stays frozen.
    pub fn trainable_names(&self, model: &BertTaskModel) -> Vec<String> {
        let mut out: Vec<String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.names.contains(n)
                    || !n.starts_with("bert.")
                    || (matches!(self.modules, Modules::BitFit) && n.ends_with(".bias"))
            })
            .collect();
        out.sort();
        out
    }

    /// The encoder pass with the modules in place (see [`BertHooks`]).
    pub fn forward_encoder(
        &self,
        bert: &BertModel,
        input: &BertInput,
        mode: &Mode,
    ) -> Result<BertOutput> {
        let b = input.input_ids.dim(0)?;
        match &self.modules {
            Modules::Prefix(p) => {
                let kv = p.keys_values(b, mode)?;
                let hooks = BertHooks {
                    prefix: Some(&kv),
                    ..Default::default()
                };
                bert.forward_with_hooks(input, mode, &hooks)
            }
            Modules::Prompt(table) => {
                let (n, h) = table.dims2()?;
                let prompt = table.unsqueeze(0)?.broadcast_as((b, n, h))?.contiguous()?;
                let hooks = BertHooks {
                    prompt: Some(&prompt),
                    ..Default::default()
                };
                bert.forward_with_hooks(input, mode, &hooks)
            }
            Modules::Lora(l) => {
                let hooks = BertHooks {
                    linear: Some(l.as_ref()),
                    ..Default::default()
                };
                bert.forward_with_hooks(input, mode, &hooks)
            }
            Modules::BitFit => bert.forward(input, mode),
        }
    }

    /// The task vector as named components (head excluded).
    ///
    /// `reduce` applies to prefix and prompt tuning (prompt tuning has no layers);
    /// LoRA and BitFit give one component per tuned tensor, by name.
    pub fn task_vector(
        &self,
        model: &BertTaskModel,
        reduce: Reduce,
    ) -> Result<Vec<(String, Vec<f32>)>> {
        match &self.modules {
            Modules::Prefix(p) => {
                let heads = model.config().num_attention_heads;
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
                self.components(model, |n| n.starts_with("bert.") && n.ends_with(".bias"))
            }
        }
    }

    fn components(
        &self,
        model: &BertTaskModel,
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
