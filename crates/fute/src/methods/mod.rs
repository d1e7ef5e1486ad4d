//! Embedding methods: how a surrogate and a probe set become a vector.

pub mod textemb;

use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;
use serde_json::Value;
use std::collections::BTreeMap;

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
}

impl Method {
    /// The method's name as stored in a space.
    pub fn name(&self) -> &'static str {
        match self {
            Method::TextEmb { .. } => "textemb",
        }
    }

    /// Whether the vector depends on the probe targets (an MTE of a target-blind
    /// method would be the same for every model on the same corpus).
    pub fn uses_targets(&self) -> bool {
        match self {
            Method::TextEmb { .. } => false,
        }
    }

    /// Every hyper-parameter that shapes the vector (part of the space).
    pub fn params(&self) -> BTreeMap<String, Value> {
        match self {
            Method::TextEmb { max_len, .. } => {
                BTreeMap::from([("max_len".into(), Value::from(*max_len))])
            }
        }
    }

    /// Computes the vector as named components.
    pub fn run(
        &self,
        surrogate: &Surrogate,
        probe: &ProbeSet,
        seed: u64,
    ) -> anyhow::Result<Vec<(String, Vec<f32>)>> {
        let _ = seed;
        match self {
            Method::TextEmb { max_len, batch } => {
                textemb::embed(surrogate, probe, *max_len, *batch)
            }
        }
    }
}
