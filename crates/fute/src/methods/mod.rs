//! Embedding methods: how a surrogate and a probe set become a vector.

pub mod curvegrad;
pub mod fim;
pub mod label;
pub mod peft;
pub mod surrogate_training;
pub mod textemb;

use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;
use serde_json::Value;
use std::collections::BTreeMap;

/// What a method computed: the vector's named components, and how well the
/// surrogate fitted its probe set when the method trained it first.
#[derive(Debug, Clone)]
pub struct MethodOutput {
    /// Named components of the vector.
    pub components: Vec<(String, Vec<f32>)>,
    /// The trained surrogate's fit (`None` for methods that train none).
    pub fit: Option<crate::fit::SurrogateFit>,
}

/// A method and its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// TextEmb (Vu et al. 2020): mask-aware mean of the pre-trained surrogate's
    /// final-layer states, averaged over the probe inputs. Ignores targets.
    TextEmb {
        /// Maximum tokens per input.
        max_len: usize,
        /// Inputs per forward pass.
        batch: usize,
    },
    /// TaskEmb's diagonal Fisher of the surrogate fine-tuned on the probe set.
    Fim(fim::FimConfig),
    /// The TuPaTE family (`prefix`, `prompt-tuning`, `lora`, `bitfit`): the tuned
    /// parameters of a frozen surrogate.
    Peft(peft::PeftMethod),
    /// Loss-curve slopes of a fine-tuning run (a ranking baseline; rank with `--by curvegrad`).
    CurveGrad(surrogate_training::SurrogateTraining),
}

impl Method {
    /// The method's name as stored in a space.
    pub fn name(&self) -> &'static str {
        match self {
            Method::TextEmb { .. } => "textemb",
            Method::Fim(_) => "fim",
            Method::Peft(p) => p.name(),
            Method::CurveGrad(_) => "curvegrad",
        }
    }

    /// The surrogate fine-tuning this method runs first (`None` for TextEmb).
    pub fn training(&self) -> Option<&surrogate_training::SurrogateTraining> {
        match self {
            Method::TextEmb { .. } => None,
            Method::Fim(c) => Some(&c.training),
            Method::Peft(p) => Some(&p.training),
            Method::CurveGrad(t) => Some(t),
        }
    }

    /// Whether the vector depends on the probe targets (an MTE of a target-blind
    /// method would be the same for every model on the same corpus).
    pub fn uses_targets(&self) -> bool {
        match self {
            Method::TextEmb { .. } => false,
            Method::Fim(_) | Method::CurveGrad(_) | Method::Peft(_) => true,
        }
    }

    /// Every hyper-parameter that shapes the vector (part of the space).
    pub fn params(&self) -> BTreeMap<String, Value> {
        match self {
            Method::TextEmb { max_len, .. } => {
                BTreeMap::from([("max_len".into(), Value::from(*max_len))])
            }
            Method::Fim(c) => c.params(),
            Method::Peft(p) => p.params(),
            Method::CurveGrad(t) => t.params(),
        }
    }

    /// Computes the vector as named components, with the trained surrogate's
    /// fit for the methods that train one; `report` receives progress lines.
    pub fn run(
        &self,
        surrogate: &Surrogate,
        probe: &ProbeSet,
        seed: u64,
        report: &mut dyn FnMut(String),
    ) -> anyhow::Result<MethodOutput> {
        let without_fit = |components| MethodOutput {
            components,
            fit: None,
        };
        Ok(match self {
            Method::TextEmb { max_len, batch } => {
                without_fit(textemb::embed(surrogate, probe, *max_len, *batch)?)
            }
            Method::Fim(c) => c.run(surrogate, probe, seed, report)?,
            Method::Peft(p) => p.run(surrogate, probe, seed, report)?,
            Method::CurveGrad(t) => without_fit(curvegrad::run(surrogate, probe, t, seed, report)?),
        })
    }
}
