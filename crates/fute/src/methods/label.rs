//! What a FUTE table row is called: the paper's name when the method is run as
//! the FUTE reference runs it, and the name plus every departure otherwise, so
//! a row never claims a variant it did not compute.
//!
//! FUTE's settings (`paper.md` §2.6): "FUTE + TaskEmb" is the Fisher of the
//! fine-tuned surrogate as the square of the dataset-mean gradient (§2.6.2,
//! §12), from the gold labels (DTE) or M's outputs (MTE), over the encoder
//! without the head; "FUTE + TuPaTE" is a plain prefix table of 16 positions
//! trained with dropout 0.15 and averaged over layers (§2.6.1).

use super::fim::{variant_name, FimComponents, FimConfig};
use super::peft::PeftMethod;
use super::Method;
use fute_nn::fisher::FisherVariant;
use fute_nn::peft::{PeftConfig, Reduce};

/// FUTE's Fisher: (∇ mean loss)² (`paper.md` §2.6.2).
pub const FUTE_FISHER: FisherVariant = FisherVariant::SquareOfMean;
/// FUTE's dropout on the prefixes during training (§2.6.1).
pub const FUTE_PREFIX_DROPOUT: f64 = 0.15;
/// FUTE's prefix length (§2.6.1).
pub const FUTE_PREFIX_LEN: usize = 16;
/// FUTE's reduction of the per-layer prefixes: their mean over layers (§2.6.1).
pub const FUTE_PREFIX_REDUCE: Reduce = Reduce::Layers;

/// The table row of `method`, e.g. "FUTE + TaskEmb" or
/// "FUTE + TaskEmb (per-example Fisher)": the paper's name, followed in
/// parentheses by every setting that differs from FUTE's.
pub fn row_label(method: &Method) -> String {
    let (name, departures) = match method {
        Method::Fim(c) => ("TaskEmb", fim_departures(c)),
        Method::Peft(p) => peft_label(p),
        Method::TextEmb { .. } => ("TextEmb", Vec::new()),
        Method::CurveGrad(_) => ("CurveGrad", Vec::new()),
    };
    let soft = method
        .training()
        .map(|t| t.soft_loss_departure())
        .unwrap_or_default();
    let departures: Vec<String> = departures.into_iter().chain(soft).collect();
    if departures.is_empty() {
        format!("FUTE + {name}")
    } else {
        format!("FUTE + {name} ({})", departures.join(", "))
    }
}

fn fim_departures(c: &FimConfig) -> Vec<String> {
    let mut d = Vec::new();
    if c.variant != FUTE_FISHER {
        d.push(format!("{} Fisher", variant_name(c.variant)));
    }
    if let Some(trials) = c.sampled_trials {
        d.push(format!("labels sampled ×{trials}"));
    }
    match c.components {
        FimComponents::Encoder => {}
        FimComponents::TaskEmb => d.push("TaskEmb components with head".into()),
        FimComponents::Activations => d.push("activation components".into()),
    }
    if let Some(layers) = &c.layers {
        let l: Vec<String> = layers.iter().map(usize::to_string).collect();
        d.push(format!("layers {}", l.join(",")));
    }
    d
}

fn peft_label(p: &PeftMethod) -> (&'static str, Vec<String>) {
    let mut d = Vec::new();
    let name = match &p.peft {
        PeftConfig::Prefix(c) => {
            match p.reduce {
                Reduce::Layers => {}
                Reduce::Positions => d.push("position mean".into()),
                Reduce::Full => d.push("all layers, no mean".into()),
            }
            if c.len != FUTE_PREFIX_LEN {
                d.push(format!("prefix length {}", c.len));
            }
            if c.dropout != FUTE_PREFIX_DROPOUT {
                d.push(format!("dropout {}", c.dropout));
            }
            if let Some(width) = c.projection {
                d.push(format!("MLP reparameterised, width {width}"));
            }
            "TuPaTE"
        }
        PeftConfig::PromptTuning(_) => {
            if p.reduce == Reduce::Full {
                d.push("no mean".into());
            }
            "TuPaTE prompt tuning"
        }
        PeftConfig::Lora(_) => "TuPaTE LoRA",
        PeftConfig::BitFit => "TuPaTE BitFit",
    };
    (name, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::surrogate_training::SurrogateTraining;
    use fute_nn::peft::PrefixConfig;

    fn training() -> SurrogateTraining {
        SurrogateTraining {
            epochs: 1,
            lr: 2e-5,
            batch: 8,
            grad_accum: 1,
            max_len: 64,
            soft_loss: Default::default(),
        }
    }

    fn fim(variant: FisherVariant) -> FimConfig {
        FimConfig {
            training: training(),
            variant,
            batch: 8,
            sampled_trials: None,
            components: FimComponents::Encoder,
            layers: None,
            workers: 1,
        }
    }

    fn prefix(reduce: Reduce, dropout: f64) -> Method {
        Method::Peft(PeftMethod {
            training: training(),
            peft: PeftConfig::Prefix(PrefixConfig {
                len: 16,
                projection: None,
                dropout,
            }),
            reduce,
        })
    }

    #[test]
    fn the_paper_names_only_the_papers_variants() {
        assert_eq!(
            row_label(&Method::Fim(fim(FisherVariant::SquareOfMean))),
            "FUTE + TaskEmb"
        );
        assert_eq!(
            row_label(&Method::Fim(fim(FisherVariant::PerExample))),
            "FUTE + TaskEmb (per-example Fisher)"
        );
        let mut c = fim(FisherVariant::PerBatch);
        c.sampled_trials = Some(100);
        c.components = FimComponents::TaskEmb;
        assert_eq!(
            row_label(&Method::Fim(c)),
            "FUTE + TaskEmb (per-batch Fisher, labels sampled ×100, TaskEmb components with head)"
        );
        assert_eq!(row_label(&prefix(Reduce::Layers, 0.15)), "FUTE + TuPaTE");
        assert_eq!(
            row_label(&prefix(Reduce::Positions, 0.1)),
            "FUTE + TuPaTE (position mean, dropout 0.1)"
        );
    }
}
