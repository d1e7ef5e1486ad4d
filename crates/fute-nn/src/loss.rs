//! Training losses, all differentiable and numerically stable (log-sum-exp).
//!
//! Every loss returns a scalar tensor: the mean over examples (and, for
//! [`bce_with_logits`], over classes too, as PyTorch's `BCEWithLogitsLoss`).

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// `log softmax(x)` along the last dimension. The max subtracted for stability is
/// detached: it cancels mathematically, so no gradient flows through it.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

fn check_labels(labels: &Tensor, batch: usize, classes: usize, what: &str) -> Result<Tensor> {
    let labels = labels.to_dtype(DType::U32)?;
    if labels.dims() != [batch] {
        return Err(Error::BadInput(format!(
            "{what}: expected {batch} labels, got shape {:?}",
            labels.dims()
        )));
    }
    if let Some(bad) = labels
        .to_vec1::<u32>()?
        .into_iter()
        .find(|&l| l as usize >= classes)
    {
        return Err(Error::BadInput(format!(
            "{what}: label {bad} out of range for {classes} classes"
        )));
    }
    Ok(labels)
}

/// Cross-entropy of `logits` `[B, C]` against hard labels `[B]` (integer dtype), mean over B.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    let labels = check_labels(labels, b, c, "cross_entropy")?;
    let logp = log_softmax(logits)?;
    let picked = logp.gather(&labels.unsqueeze(1)?, 1)?; // [B, 1]
    Ok((picked.sum_all()? * (-1.0 / b as f64))?)
}

fn check_targets(logits: &Tensor, targets: &Tensor, what: &str) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        return Err(Error::BadInput(format!(
            "{what}: logits {:?} and targets {:?} differ in shape",
            logits.dims(),
            targets.dims()
        )));
    }
    Ok(targets.to_dtype(logits.dtype())?.detach())
}

/// Binary cross-entropy with logits against soft targets in `[0, 1]`, element-wise
/// then averaged over every element (PyTorch `BCEWithLogitsLoss(reduction="mean")`).
/// This is what the FUTE reference code uses to fit a surrogate to a model's
/// output distribution. Stable form: `max(x,0) − x·t + log(1 + e^{−|x|})`.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let t = check_targets(logits, targets, "bce_with_logits")?;
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let per = ((logits.relu()? - logits.mul(&t)?)? + softplus_neg_abs)?;
    Ok(per.mean_all()?)
}

/// Soft cross-entropy `−Σ_c t_c log softmax(x)_c`, mean over the batch.
/// `targets` `[B, C]` are probability distributions.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, _) = logits.dims2()?;
    let t = check_targets(logits, targets, "soft_cross_entropy")?;
    let logp = log_softmax(logits)?;
    Ok((logp.mul(&t)?.sum_all()? * (-1.0 / b as f64))?)
}

/// `KL(t ‖ softmax(x)) = Σ_c t_c (log t_c − log softmax(x)_c)`, mean over the batch
/// (PyTorch `kl_div(..., reduction="batchmean")`), with `0 log 0 = 0`. Its gradient
/// equals [`soft_cross_entropy`]'s; the value is 0 at a perfect fit.
pub fn kl_to_targets(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, _) = logits.dims2()?;
    let t = check_targets(logits, targets, "kl_to_targets")?;
    // Entropy term is a constant: compute it where t > 0 only.
    let positive = t.gt(0.0)?;
    let safe_t = positive.where_cond(&t, &t.ones_like()?)?;
    let neg_entropy = t.mul(&safe_t.log()?)?.sum_all()?;
    let cross = log_softmax(logits)?.mul(&t)?.sum_all()?;
    Ok(((neg_entropy - cross)? * (1.0 / b as f64))?)
}

/// Mean squared error between predictions and targets of the same shape.
pub fn mse(predictions: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let t = check_targets(predictions, targets, "mse")?;
    Ok((predictions - t)?.sqr()?.mean_all()?)
}

/// Span loss of extractive QA: mean of the start and end cross-entropies
/// (HF `BertForQuestionAnswering`). Logits `[B, T]`; positions `[B]` must be `< T`.
pub fn span_cross_entropy(
    start_logits: &Tensor,
    end_logits: &Tensor,
    start_positions: &Tensor,
    end_positions: &Tensor,
) -> Result<Tensor> {
    let s = cross_entropy(start_logits, start_positions)?;
    let e = cross_entropy(end_logits, end_positions)?;
    Ok(((s + e)? * 0.5)?)
}

/// The loss against soft targets (a distribution, or per-class scores in `[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SoftLoss {
    /// Element-wise binary cross-entropy with logits, mean over classes: what the
    /// FUTE reference code ends up using for soft labels.
    #[default]
    BceWithLogits,
    /// −Σ_c t_c log softmax(x)_c, mean over examples: the principled alternative.
    SoftCrossEntropy,
}

impl SoftLoss {
    /// The loss of `logits` `[B, C]` against `targets` `[B, C]`.
    pub fn apply(self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        match self {
            SoftLoss::BceWithLogits => bce_with_logits(logits, targets),
            SoftLoss::SoftCrossEntropy => soft_cross_entropy(logits, targets),
        }
    }
}
