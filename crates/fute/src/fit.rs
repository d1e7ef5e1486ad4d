//! Did a model learn? A score next to the level that a model which learned
//! nothing reaches, so a run at chance says so instead of ending quietly.
//!
//! Used for every fine-tune's dev score ([`crate::finetune`]) and for the
//! surrogate trained on a probe set before a Fisher or PEFT embedding is read
//! (a vector of a surrogate that never fitted its targets says little about the
//! task; TaskEmb/Task2Vec users ask exactly this).

use serde::{Deserialize, Serialize};

/// A score, the chance level it is compared with, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitCheck {
    /// What was measured (`dev accuracy`, `dev MSE`, `agreement with the probe targets`, …).
    pub metric: String,
    /// The score.
    pub score: f64,
    /// The score of a model that learned nothing (majority class; the mean value).
    pub chance: f64,
    /// How `chance` was obtained, for humans.
    pub chance_rule: String,
    /// Whether higher scores are better (accuracy) or lower (MSE).
    pub higher_is_better: bool,
    /// Examples the score was measured on.
    pub examples: usize,
    /// Whether the score is within noise of `chance` (or worse).
    pub at_chance: bool,
}

impl FitCheck {
    /// One line: the score against the chance level.
    pub fn summary(&self) -> String {
        format!(
            "{} {:.4} vs {:.4} for {} ({} examples)",
            self.metric, self.score, self.chance, self.chance_rule, self.examples
        )
    }
}

/// How well the surrogate fitted its probe set before the embedding was read:
/// recorded in the embedding's provenance (`surrogate_fit`) and shown by `fute show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurrogateFit {
    /// Mean training loss of the last epoch.
    pub final_train_loss: f64,
    /// Agreement of the trained surrogate's predictions with the probe targets
    /// (argmax for classes, MSE for values) against chance; `None` for QA.
    pub agreement: Option<FitCheck>,
}

impl SurrogateFit {
    /// A warning when the surrogate's predictions are at chance, with what to try.
    pub fn warning(&self) -> Option<String> {
        let c = self.agreement.as_ref().filter(|c| c.at_chance)?;
        Some(format!(
            "the surrogate did not fit its probe set ({}; final train loss {:.4}): its embedding \
             says little about the task. Train it longer or harder (--epochs, --lr), or give it \
             more examples (--limit)",
            c.summary(),
            self.final_train_loss
        ))
    }
}

/// The most frequent class of `labels` (by index) and its share; `None` when empty.
pub fn majority(labels: &[usize]) -> Option<(usize, f64)> {
    let n = labels.len();
    if n == 0 {
        return None;
    }
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut counts = vec![0usize; k];
    for l in labels {
        counts[*l] += 1;
    }
    // Ties go to the lowest index, so the verdict does not depend on hashing.
    let (class, count) =
        counts.iter().enumerate().fold(
            (0, 0),
            |best, (i, c)| if *c > best.1 { (i, *c) } else { best },
        );
    Some((class, count as f64 / n as f64))
}

/// Checks an accuracy (or agreement) `score` over `gold` against always
/// answering the majority class. `names[i]` names class `i` in the message
/// (may be empty). At chance when the score is below the majority share plus
/// one standard error of a proportion over `gold.len()` examples (at least
/// 0.01): on 100 balanced examples a model needs above 0.55 to count as learned.
pub fn check_accuracy(
    metric: &str,
    score: f64,
    gold: &[usize],
    names: &[String],
) -> Option<FitCheck> {
    let (class, share) = majority(gold)?;
    let n = gold.len();
    let margin = (share * (1.0 - share) / n as f64).sqrt().max(0.01);
    let name = names
        .get(class)
        .map_or_else(|| format!("class {class}"), |s| format!("`{s}`"));
    Some(FitCheck {
        metric: metric.into(),
        score,
        chance: share,
        chance_rule: format!("always answering the majority class {name}"),
        higher_is_better: true,
        examples: n,
        at_chance: score < share + margin,
    })
}

/// Checks a mean squared error over `gold` values against always answering
/// their mean (whose MSE is their variance). At chance when the model explains
/// less than 5 % of the variance.
pub fn check_mse(metric: &str, mse: f64, gold: &[f64]) -> Option<FitCheck> {
    let n = gold.len();
    if n < 2 {
        return None;
    }
    let mean = gold.iter().sum::<f64>() / n as f64;
    let var = gold.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
    Some(FitCheck {
        metric: metric.into(),
        score: mse,
        chance: var,
        chance_rule: format!("always answering the mean {mean:.4}"),
        higher_is_better: false,
        examples: n,
        at_chance: mse >= 0.95 * var,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_share_and_ties() {
        assert_eq!(majority(&[]), None);
        assert_eq!(majority(&[1, 1, 0, 1]), Some((1, 0.75)));
        assert_eq!(majority(&[1, 0]), Some((0, 0.5)));
    }

    #[test]
    fn accuracy_at_and_above_chance() {
        let gold: Vec<usize> = (0..100).map(|i| i % 2).collect();
        // se of 0.5 over 100 = 0.05: 0.54 is noise, 0.56 is learning.
        assert!(check_accuracy("acc", 0.54, &gold, &[]).unwrap().at_chance);
        assert!(!check_accuracy("acc", 0.56, &gold, &[]).unwrap().at_chance);
        // Below the majority share is at chance too (a model predicting the minority).
        let skewed: Vec<usize> = (0..100).map(|i| usize::from(i % 10 == 0)).collect();
        let c = check_accuracy("acc", 0.85, &skewed, &["no".into(), "yes".into()]).unwrap();
        assert!(c.at_chance && c.chance_rule.contains("`no`"), "{c:?}");
    }

    #[test]
    fn mse_against_the_variance() {
        let gold = [0.0, 1.0, 2.0, 3.0]; // variance 1.25
        assert!(check_mse("mse", 1.2, &gold).unwrap().at_chance);
        assert!(!check_mse("mse", 0.5, &gold).unwrap().at_chance);
        assert_eq!(check_mse("mse", 0.5, &[1.0]), None);
    }
}
