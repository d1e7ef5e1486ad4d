//! The TuPaTE family: the surrogate's backbone frozen, a parameter-efficient
//! module (prefix, prompt tokens, LoRA, biases) and the task head trained on the
//! probe set; the tuned parameters (head excluded) are the vector.
//!
//! Defaults on the command line (`fute embed … --method prefix|prompt-tuning|lora|bitfit`):
//! lr 1e-2 for prefix and prompt tuning (FUTE's DTE setting and TuPaTE's RTE
//! script), 1e-3 for LoRA and BitFit; prefix / prompt length 16 (FUTE); prefix
//! reduced by FUTE's mean over layers, prompts by TuPaTE's mean over positions.
//! FUTE trains prefixes for 1 epoch (MTE) or up to 120 with early stopping (DTE);
//! on a CPU the epochs are the caller's choice (`--epochs`).

use super::surrogate_training::{encode_probe, trained_surrogate_with, SurrogateTraining};
use super::MethodOutput;
use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;
use fute_nn::peft::{Peft, PeftConfig, Reduce};
use serde_json::Value;
use std::collections::BTreeMap;

/// Settings of a parameter-efficient method.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftMethod {
    /// Training of the module and the head (the backbone stays frozen).
    pub training: SurrogateTraining,
    /// Which module and its shape.
    pub peft: PeftConfig,
    /// How a prefix / prompt table becomes a vector (ignored by LoRA and BitFit).
    pub reduce: Reduce,
}

/// The default learning rate of a method (see the module documentation).
pub fn default_lr(peft: &PeftConfig) -> f64 {
    match peft {
        PeftConfig::Prefix(_) | PeftConfig::PromptTuning(_) => 1e-2,
        PeftConfig::Lora(_) | PeftConfig::BitFit => 1e-3,
    }
}

impl PeftMethod {
    /// `prefix`, `prompt-tuning`, `lora` or `bitfit`.
    pub fn name(&self) -> &'static str {
        self.peft.name()
    }

    /// Every hyper-parameter that shapes the vector.
    pub fn params(&self) -> BTreeMap<String, Value> {
        let mut p = self.training.params();
        match &self.peft {
            PeftConfig::Prefix(c) => {
                p.insert("prefix_len".into(), Value::from(c.len));
                p.insert("prefix_projection".into(), serde_json::json!(c.projection));
                p.insert("prefix_dropout".into(), Value::from(c.dropout));
                p.insert("reduce".into(), Value::from(self.reduce.name()));
            }
            PeftConfig::PromptTuning(c) => {
                p.insert("prompt_len".into(), Value::from(c.len));
                p.insert("reduce".into(), Value::from(self.reduce.name()));
            }
            PeftConfig::Lora(c) => {
                p.insert("lora_rank".into(), Value::from(c.rank));
                p.insert("lora_alpha".into(), Value::from(c.alpha));
                p.insert("lora_targets".into(), serde_json::json!(c.targets));
            }
            PeftConfig::BitFit => {}
        }
        p
    }

    /// Trains the module and head on `probe` with the backbone frozen, then reads the vector.
    pub fn run(
        &self,
        surrogate: &Surrogate,
        probe: &ProbeSet,
        seed: u64,
        report: &mut dyn FnMut(String),
    ) -> anyhow::Result<MethodOutput> {
        if matches!(self.peft, PeftConfig::PromptTuning(_)) && self.reduce == Reduce::Layers {
            anyhow::bail!(fute_core::Error::Invalid(
                "prompt tuning has one table for all layers: use --reduce positions or full".into()
            ));
        }
        if let PeftConfig::PromptTuning(c) = &self.peft {
            let max_pos = surrogate.description.max_positions;
            if self.training.max_len + c.len > max_pos {
                anyhow::bail!(fute_core::Error::Invalid(format!(
                    "--max-len {} plus {} prompt tokens exceeds the surrogate's {max_pos} positions",
                    self.training.max_len, c.len
                )));
            }
        }
        let examples = encode_probe(surrogate, probe, self.training.max_len)?;
        let (model, fit) = trained_surrogate_with(
            surrogate,
            probe,
            &examples,
            &self.training,
            seed,
            |m| {
                let adapted = Peft::adapt(m, &self.peft, seed)?;
                let trainable = adapted.peft.trainable_names(&adapted);
                Ok((adapted, Some(trainable)))
            },
            report,
        )?;
        Ok(MethodOutput {
            components: model.peft.task_vector(&model, self.reduce)?,
            fit,
        })
    }
}
