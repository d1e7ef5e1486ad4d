//! CurveGrad (Bingel & Søgaard 2017, as a baseline in Vu et al. 2020): the slopes
//! of the surrogate's training-loss curve at 10, 20, 30, 50 and 70 % of a
//! fine-tuning run on the probe set. Sources are ranked by each slope, steepest
//! fall first, and the rankings fused by reciprocal rank fusion — see
//! `fute rank --by curvegrad`.
//!
//! **Direction (checked 2026-12-01).** Vu et al. 2020 give CurveGrad in one
//! sentence, summarised at <https://tkukurin.github.io/predicting-transferability-nlp>
//! (`paper.md` §3.4): "Assumption that multi-task will work better if main task
//! quickly plateaus (small) while aux. task improves (large negative gradients).
//! … compute grad at 10, 20, 30, 50, 70% … Rank source tasks descendingly using
//! reciprocal rank fusion". This is Bingel & Søgaard's (2017) finding: gains are
//! more likely with auxiliary (source) tasks whose curves do *not* plateau. So the
//! preferred source has the *largest negative* gradient, and "descendingly" is
//! by the size of the fall: fute ranks the signed slope ascending (most negative
//! first). Until 2026-11-30 fute ranked the signed slope descending (flattest
//! first), the reverse. Their code release (github.com/tuvuumass/task-transferability)
//! has no CurveGrad script, so this rests on the stated assumption, not on code.
//! The stored components are the signed slopes.

use super::surrogate_training::{encode_probe, SurrogateTraining};
use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;
use fute_nn::train::{train, AdamWConfig, Control, Event, TrainConfig};
use fute_nn::{models, BuildOptions};

/// Where along the run the slope is read (fractions of all steps).
pub const POINTS: [f64; 5] = [0.1, 0.2, 0.3, 0.5, 0.7];

/// Slope of a loss curve at fraction `at` of its length: a least-squares line
/// through the losses within ±`half_window` steps, in loss units per 1 % of the run.
pub fn slope_at(losses: &[f64], at: f64, half_window: usize) -> f64 {
    let n = losses.len();
    if n < 2 {
        return 0.0;
    }
    let centre = ((n - 1) as f64 * at).round() as usize;
    let lo = centre.saturating_sub(half_window);
    let hi = (centre + half_window).min(n - 1);
    let xs: Vec<f64> = (lo..=hi).map(|i| i as f64).collect();
    let ys = &losses[lo..=hi];
    let mx = xs.iter().sum::<f64>() / xs.len() as f64;
    let my = ys.iter().sum::<f64>() / ys.len() as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return 0.0;
    }
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    // Per step → per 1 % of the run, so runs of different lengths compare.
    sxy / sxx * (n as f64 / 100.0)
}

/// Fine-tunes the surrogate, recording the loss of every optimiser step, and returns
/// one single-value component per point of [`POINTS`].
pub fn run(
    surrogate: &Surrogate,
    probe: &ProbeSet,
    training: &SurrogateTraining,
    seed: u64,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<(String, Vec<f32>)>> {
    let examples = encode_probe(surrogate, probe, training.max_len)?;
    let opts = BuildOptions {
        seed,
        ..Default::default()
    };
    let model = models::load(
        &surrogate.dir,
        super::surrogate_training::head_spec(probe.head),
        &opts,
    )?;
    let cfg = TrainConfig {
        epochs: training.epochs.max(1),
        batch_size: training.batch,
        grad_accum: training.grad_accum,
        optimizer: AdamWConfig {
            lr: training.lr,
            ..Default::default()
        },
        seed,
        ..Default::default()
    };
    let mut losses = Vec::new();
    train(
        &model,
        &examples,
        None,
        surrogate.tokenizer.pad_id(),
        &cfg,
        &mut |e| {
            if let Event::Step {
                step,
                total_steps,
                loss,
                ..
            } = e
            {
                losses.push(*loss);
                report(format!(
                    "curvegrad: step {step}/{total_steps}, loss {loss:.4}"
                ));
            }
            Control::Continue
        },
    )?;
    if losses.len() < 10 {
        anyhow::bail!(fute_core::Error::Invalid(format!(
            "curvegrad needs a loss curve of at least 10 steps, got {}; use more examples, more epochs or a smaller batch",
            losses.len()
        )));
    }
    let half = (losses.len() / 20).max(1);
    Ok(POINTS
        .iter()
        .map(|p| {
            (
                format!("slope_at_{:.0}%", p * 100.0),
                vec![slope_at(&losses, *p, half) as f32],
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_decaying_curve() {
        let line: Vec<f64> = (0..101).map(|i| 5.0 - 0.01 * i as f64).collect();
        // −0.01 per step over 101 steps = −0.0101 per 1 % of the run.
        assert!((slope_at(&line, 0.5, 5) + 0.0101).abs() < 1e-12);
        let decay: Vec<f64> = (0..200).map(|i| (-(i as f64) / 40.0).exp()).collect();
        let early = slope_at(&decay, 0.1, 5);
        let late = slope_at(&decay, 0.7, 5);
        assert!(early < late && late < 0.0, "{early} {late}");
    }
}
