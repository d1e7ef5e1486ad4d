//! TaskEmb's Fisher embedding on the fine-tuned surrogate (FUTE + TaskEmb).

use super::surrogate_training::{encode_probe, trained_surrogate, SurrogateTraining};
use super::MethodOutput;
use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;
use fute_nn::fisher::{
    fisher_embedding, FisherExample, FisherLabels, FisherOptions, FisherScope, FisherTarget,
    FisherVariant, LayerSelection,
};
use fute_nn::train::TrainTarget;
use serde_json::Value;
use std::collections::BTreeMap;

/// Which components the Fisher vector holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FimComponents {
    /// Every encoder parameter, no head (the FUTE code).
    Encoder,
    /// Vu et al.'s set: every parameter including the head, plus activation components.
    TaskEmb,
    /// Only the activation components (per-layer attention and layer outputs, CLS): small vectors.
    Activations,
}

impl FimComponents {
    /// Name on the command line and in the space.
    pub fn name(self) -> &'static str {
        match self {
            FimComponents::Encoder => "encoder",
            FimComponents::TaskEmb => "taskemb",
            FimComponents::Activations => "activations",
        }
    }

    fn scope(self) -> FisherScope {
        match self {
            FimComponents::Encoder => FisherScope::encoder(),
            FimComponents::TaskEmb => FisherScope::taskemb(),
            FimComponents::Activations => FisherScope::activations_only(),
        }
    }
}

/// Settings of the `fim` method.
#[derive(Debug, Clone, PartialEq)]
pub struct FimConfig {
    /// Fine-tuning of the surrogate before the Fisher pass.
    pub training: SurrogateTraining,
    /// How squared gradients are formed.
    pub variant: FisherVariant,
    /// Examples per batch of the Fisher pass (`per-batch`, `square-of-mean`).
    pub batch: usize,
    /// Gold labels, or `Some(trials)` labels sampled from the surrogate.
    pub sampled_trials: Option<usize>,
    /// Which components.
    pub components: FimComponents,
    /// Only these encoder layers (`None` = all).
    pub layers: Option<Vec<usize>>,
    /// OS-thread workers of the Fisher pass.
    pub workers: usize,
}

/// CLI / space name of a variant.
pub fn variant_name(v: FisherVariant) -> &'static str {
    match v {
        FisherVariant::PerExample => "per-example",
        FisherVariant::PerBatch => "per-batch",
        FisherVariant::SquareOfMean => "square-of-mean",
    }
}

impl FimConfig {
    /// Every hyper-parameter that shapes the vector.
    pub fn params(&self) -> BTreeMap<String, Value> {
        let mut p = self.training.params();
        p.insert("fisher".into(), Value::from(variant_name(self.variant)));
        // The square of the mean gradient does not depend on how the mean is
        // batched (Σ_b |b|/N·g_b is the full gradient), so only per-batch keeps it.
        if self.variant == FisherVariant::PerBatch {
            p.insert("fisher_batch".into(), Value::from(self.batch));
        }
        p.insert(
            "fisher_labels".into(),
            match self.sampled_trials {
                None => Value::from("gold"),
                Some(t) => Value::from(format!("sampled-{t}")),
            },
        );
        p.insert("components".into(), Value::from(self.components.name()));
        if let Some(l) = &self.layers {
            p.insert("layers".into(), serde_json::json!(l));
        }
        p
    }

    /// Trains the surrogate on `probe`, then reads its diagonal Fisher.
    pub fn run(
        &self,
        surrogate: &Surrogate,
        probe: &ProbeSet,
        seed: u64,
        report: &mut dyn FnMut(String),
    ) -> anyhow::Result<MethodOutput> {
        let examples = encode_probe(surrogate, probe, self.training.max_len)?;
        let (model, fit) =
            trained_surrogate(surrogate, probe, &examples, &self.training, seed, report)?;
        report(format!(
            "Fisher pass over {} examples ({})",
            examples.len(),
            variant_name(self.variant)
        ));
        let fex: Vec<FisherExample> = examples
            .into_iter()
            .map(|e| FisherExample {
                target: match e.target {
                    TrainTarget::Label(l) => FisherTarget::Label(l),
                    TrainTarget::Soft(p) => FisherTarget::Soft(p),
                    TrainTarget::Value(v) => FisherTarget::Value(v),
                    TrainTarget::Span { start, end } => FisherTarget::Span { start, end },
                },
                encoding: e.encoding,
            })
            .collect();
        let mut scope = self.components.scope();
        if let Some(l) = &self.layers {
            scope.layers = LayerSelection::Only(l.clone());
        }
        let opts = FisherOptions {
            variant: self.variant,
            batch_size: self.batch,
            labels: match self.sampled_trials {
                None => FisherLabels::Gold,
                Some(trials) => FisherLabels::Sampled { trials, seed },
            },
            scope,
            workers: self.workers,
            soft_loss: self.training.soft_loss,
            ..Default::default()
        };
        Ok(MethodOutput {
            components: fisher_embedding(&model, &fex, &opts)?.components,
            fit,
        })
    }
}
