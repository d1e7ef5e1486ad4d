//! Targets of Fisher examples and the loss of one batch, gold or sampled.

use candle_core::{DType, Device, Tensor, D};

use crate::heads::TaskOutput;
use crate::loss;
use crate::rng::SeededRng;
use crate::{Error, Result};

use super::{FisherLabels, SoftLoss};

/// What one example's loss is measured against.
#[derive(Debug, Clone, PartialEq)]
pub enum FisherTarget {
    /// A class index (classification head, cross-entropy).
    Label(u32),
    /// A distribution (or per-class scores in `[0, 1]`) over the classes
    /// (classification head, loss chosen by [`SoftLoss`]).
    Soft(Vec<f32>),
    /// A real value (regression head, squared error).
    Value(f32),
    /// Answer start and end token positions (QA head, mean of the two cross-entropies).
    Span {
        /// First answer token.
        start: u32,
        /// Last answer token.
        end: u32,
    },
}

/// Standard deviation of the Gaussian that regression labels are sampled from
/// (Vu et al.'s `FIM_scale`).
pub const SAMPLED_REGRESSION_SIGMA: f64 = 0.25;
/// Range sampled regression labels are kept in (Vu et al.: STS-B scores).
pub const SAMPLED_REGRESSION_RANGE: (f64, f64) = (0.0, 5.0);

/// A generator for example `index` under `seed`: sampled labels depend on the
/// seed and the example's position in the input only, not on batching.
fn example_rng(seed: u64, index: usize) -> SeededRng {
    let r = SeededRng::new(seed ^ 0x4649_5348_4552_5f4c);
    let mixed = r.next_u64() ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let r = SeededRng::new(mixed);
    r.next_u64();
    r
}

/// Counts of `trials` draws from the categorical `probs`, divided by `trials`.
fn sample_frequencies(probs: &[f64], trials: usize, rng: &SeededRng) -> Vec<f64> {
    let mut freq = vec![0.0; probs.len()];
    for _ in 0..trials {
        let u = rng.uniform();
        let mut acc = 0.0;
        let mut pick = probs.len() - 1;
        for (c, p) in probs.iter().enumerate() {
            acc += p;
            if u < acc {
                pick = c;
                break;
            }
        }
        freq[pick] += 1.0;
    }
    freq.iter_mut().for_each(|f| *f /= trials as f64);
    freq
}

fn probabilities(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let p = candle_nn::ops::softmax(&logits.detach().to_dtype(DType::F64)?, D::Minus1)?;
    Ok(p.to_vec2::<f64>()?)
}

fn sampled_targets(logits: &Tensor, indices: &[usize], trials: usize, seed: u64) -> Result<Tensor> {
    let probs = probabilities(logits)?;
    let rows: Vec<f64> = probs
        .iter()
        .zip(indices)
        .flat_map(|(p, &i)| sample_frequencies(p, trials, &example_rng(seed, i)))
        .collect();
    Ok(Tensor::from_vec(rows, logits.shape(), logits.device())?.to_dtype(logits.dtype())?)
}

fn wrong_kind(what: &str) -> Error {
    Error::BadInput(format!("Fisher: {what}"))
}

/// The mean loss of a batch whose examples have global indices `indices`.
pub(crate) fn batch_loss(
    out: &TaskOutput,
    targets: &[&FisherTarget],
    indices: &[usize],
    labels: &FisherLabels,
    soft_loss: SoftLoss,
    device: &Device,
) -> Result<Tensor> {
    match (out, labels) {
        (TaskOutput::Logits(logits), FisherLabels::Gold) => match targets.first() {
            Some(FisherTarget::Label(_)) => {
                let v = targets
                    .iter()
                    .map(|t| match t {
                        FisherTarget::Label(l) => Ok(*l),
                        _ => Err(wrong_kind("a batch mixes target kinds")),
                    })
                    .collect::<Result<Vec<u32>>>()?;
                loss::cross_entropy(logits, &Tensor::new(v, device)?)
            }
            Some(FisherTarget::Soft(_)) => {
                let c = logits.dim(1)?;
                let mut v = Vec::with_capacity(targets.len() * c);
                for t in targets {
                    match t {
                        FisherTarget::Soft(d) if d.len() == c => v.extend_from_slice(d),
                        FisherTarget::Soft(d) => {
                            return Err(wrong_kind(&format!(
                                "a soft target has {} classes, the head {c}",
                                d.len()
                            )))
                        }
                        _ => return Err(wrong_kind("a batch mixes target kinds")),
                    }
                }
                let t = Tensor::from_vec(v, (targets.len(), c), device)?;
                soft_loss.apply(logits, &t)
            }
            _ => Err(wrong_kind(
                "a classification head needs Label or Soft targets",
            )),
        },
        (TaskOutput::Logits(logits), FisherLabels::Sampled { trials, seed }) => {
            let t = sampled_targets(logits, indices, *trials, *seed)?;
            loss::soft_cross_entropy(logits, &t)
        }
        (TaskOutput::Scores(pred), FisherLabels::Gold) => {
            let v = targets
                .iter()
                .map(|t| match t {
                    FisherTarget::Value(x) => Ok(*x),
                    _ => Err(wrong_kind("a regression head needs Value targets")),
                })
                .collect::<Result<Vec<f32>>>()?;
            loss::mse(pred, &Tensor::new(v, device)?)
        }
        (TaskOutput::Scores(pred), FisherLabels::Sampled { trials, seed }) => {
            // Gaussian log-likelihood of draws y ~ N(pred, σ²) kept in the label
            // range, averaged over draws: its gradient is (pred − ȳ)/σ².
            let p = pred.detach().to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let (lo, hi) = SAMPLED_REGRESSION_RANGE;
            let s = SAMPLED_REGRESSION_SIGMA;
            let means: Vec<f64> = p
                .iter()
                .zip(indices)
                .map(|(&mu, &i)| {
                    let rng = example_rng(*seed, i);
                    let (mut sum, mut kept, mut tries) = (0.0, 0usize, 0usize);
                    while kept < *trials && tries < 1000 * trials {
                        let y = mu + s * rng.normal();
                        tries += 1;
                        if (lo..=hi).contains(&y) {
                            sum += y;
                            kept += 1;
                        }
                    }
                    if kept == 0 {
                        mu.clamp(lo, hi)
                    } else {
                        sum / kept as f64
                    }
                })
                .collect();
            let y = Tensor::from_vec(means, pred.shape(), device)?.to_dtype(pred.dtype())?;
            Ok(((pred - y)?.sqr()?.mean_all()? * (0.5 / (s * s)))?)
        }
        (TaskOutput::Span { start, end }, FisherLabels::Gold) => {
            let (mut s, mut e) = (Vec::new(), Vec::new());
            for t in targets {
                match t {
                    FisherTarget::Span { start, end } => {
                        s.push(*start);
                        e.push(*end);
                    }
                    _ => return Err(wrong_kind("a QA head needs Span targets")),
                }
            }
            loss::span_cross_entropy(
                start,
                end,
                &Tensor::new(s, device)?,
                &Tensor::new(e, device)?,
            )
        }
        (TaskOutput::Span { start, end }, FisherLabels::Sampled { trials, seed }) => {
            // Start and end drawn separately, the two losses averaged (Vu et al.).
            let ts = sampled_targets(start, indices, *trials, *seed)?;
            let te = sampled_targets(end, indices, *trials, seed.wrapping_add(1))?;
            let a = loss::soft_cross_entropy(start, &ts)?;
            let b = loss::soft_cross_entropy(end, &te)?;
            Ok(((a + b)? * 0.5)?)
        }
    }
}
