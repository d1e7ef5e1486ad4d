//! Training the surrogate on a probe set: the first step of every method that
//! reads a trained surrogate (FIM, and the parameter-efficient ones).

use crate::fit::{check_accuracy, check_mse, SurrogateFit};
use crate::probe::{ProbeHead, ProbeSet, ProbeTargets};
use crate::surrogate::Surrogate;
use anyhow::Context as _;
use fute_nn::loss::SoftLoss;
use fute_nn::train::{
    answer_positions, train, AdamWConfig, Control, Event, RawPrediction, TrainConfig, TrainExample,
    TrainTarget,
};
use fute_nn::{models, BuildOptions, HeadSpec, TaskModel, TextInput, Truncation};
use serde_json::Value;
use std::collections::BTreeMap;

/// How the surrogate is fine-tuned before the embedding is read.
#[derive(Debug, Clone, PartialEq)]
pub struct SurrogateTraining {
    /// Passes over the probe set (0 = use the pre-trained surrogate as is).
    pub epochs: usize,
    /// Peak learning rate (AdamW, linear warm-up 5 % then decay).
    pub lr: f64,
    /// Examples per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Maximum tokens per input.
    pub max_len: usize,
    /// Loss against soft targets (an MTE's model or LLM outputs), in training and
    /// in the Fisher pass: BCE-with-logits as the FUTE reference (`paper.md` §2.5),
    /// or soft cross-entropy (§10). Gold labels always use cross-entropy.
    pub soft_loss: SoftLoss,
}

/// Command-line / space name of a soft-label loss.
pub fn soft_loss_name(l: SoftLoss) -> &'static str {
    match l {
        SoftLoss::BceWithLogits => "bce",
        SoftLoss::SoftCrossEntropy => "soft-ce",
    }
}

impl SurrogateTraining {
    /// The hyper-parameters as space parameters (prefixed `train_`). The soft
    /// loss is listed only when it is not FUTE's BCE, so embeddings stored before
    /// the switch existed keep their ids.
    pub fn params(&self) -> BTreeMap<String, Value> {
        let mut p = BTreeMap::from([
            ("train_epochs".into(), Value::from(self.epochs)),
            ("train_lr".into(), Value::from(self.lr)),
            (
                "train_batch".into(),
                Value::from(self.batch * self.grad_accum),
            ),
            ("max_len".into(), Value::from(self.max_len)),
        ]);
        if self.soft_loss != SoftLoss::BceWithLogits {
            p.insert(
                "soft_loss".into(),
                Value::from(soft_loss_name(self.soft_loss)),
            );
        }
        p
    }

    /// How a table row names a soft loss other than FUTE's (none for BCE).
    pub fn soft_loss_departure(&self) -> Option<String> {
        (self.soft_loss != SoftLoss::BceWithLogits)
            .then(|| format!("{} soft loss", soft_loss_name(self.soft_loss)))
    }
}

/// The surrogate head a probe set needs.
pub fn head_spec(head: ProbeHead) -> HeadSpec {
    match head {
        ProbeHead::Classification(n) => HeadSpec::Classification { num_labels: n },
        ProbeHead::Regression => HeadSpec::Regression,
        ProbeHead::QuestionAnswering => HeadSpec::QuestionAnswering,
    }
}

/// Tokenises a probe set for the surrogate and maps its targets (QA answers go
/// from characters to the surrogate's own tokens).
pub fn encode_probe(
    surrogate: &Surrogate,
    probe: &ProbeSet,
    max_len: usize,
) -> anyhow::Result<Vec<TrainExample>> {
    let qa = probe.head == ProbeHead::QuestionAnswering;
    probe
        .inputs
        .iter()
        .enumerate()
        .map(|(i, segs)| {
            let (input, trunc) = match (segs.as_slice(), qa) {
                ([a, b, ..], true) => (
                    TextInput::Pair(a, b),
                    Truncation::Question {
                        max_question: fute_nn::tokenize::DEFAULT_MAX_QUESTION_LEN,
                    },
                ),
                ([a, b, ..], false) => (TextInput::Pair(a, b), Truncation::LongestFirst),
                ([a], _) => (TextInput::Single(a), Truncation::LongestFirst),
                ([], _) => anyhow::bail!("probe input {i} has no text"),
            };
            let encoding = surrogate
                .tokenizer
                .encode(input, max_len, trunc)
                .with_context(|| format!("probe input {i}"))?;
            let target = match &probe.targets {
                ProbeTargets::Labels(v) => TrainTarget::Label(v[i] as u32),
                ProbeTargets::Soft(v) => TrainTarget::Soft(v[i].clone()),
                ProbeTargets::Values(v) => TrainTarget::Value(v[i]),
                ProbeTargets::Spans(v) => match v[i] {
                    Some((s, e)) => answer_positions(&encoding, s, e),
                    None => TrainTarget::Span { start: 0, end: 0 },
                },
            };
            Ok(TrainExample { encoding, target })
        })
        .collect()
}

/// How well a trained surrogate fits its probe set: the last epoch's mean
/// loss, and its predictions on the probe inputs against the targets (class
/// agreement, or MSE for values) next to chance.
pub fn surrogate_fit(
    model: &dyn TaskModel,
    examples: &[TrainExample],
    final_train_loss: f64,
    pad_id: u32,
    batch: usize,
) -> anyhow::Result<SurrogateFit> {
    let encodings: Vec<_> = examples.iter().map(|e| e.encoding.clone()).collect();
    let preds = fute_nn::train::predict(model, &encodings, pad_id, batch.max(1) * 2)?;
    let metric = "surrogate agreement with its probe targets";
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
    };
    let (mut gold, mut hits, mut values, mut sq) = (Vec::new(), 0usize, Vec::new(), 0.0);
    for (e, p) in examples.iter().zip(&preds) {
        match (&e.target, p) {
            (TrainTarget::Label(l), RawPrediction::Logits(z)) => {
                gold.push(*l as usize);
                hits += usize::from(argmax(z) == *l as usize);
            }
            (TrainTarget::Soft(t), RawPrediction::Logits(z)) => {
                gold.push(argmax(t));
                hits += usize::from(argmax(z) == argmax(t));
            }
            (TrainTarget::Value(v), RawPrediction::Score(s)) => {
                values.push(f64::from(*v));
                sq += (f64::from(*s) - f64::from(*v)).powi(2);
            }
            _ => {}
        }
    }
    let agreement = if !gold.is_empty() {
        check_accuracy(metric, hits as f64 / gold.len() as f64, &gold, &[])
    } else if !values.is_empty() {
        check_mse(
            "surrogate MSE on its probe targets",
            sq / values.len() as f64,
            &values,
        )
    } else {
        None
    };
    Ok(SurrogateFit {
        final_train_loss,
        agreement,
    })
}

/// Builds the surrogate with the probe set's head (seeded) and fine-tunes it;
/// also returns how well it fitted (`None` when `cfg.epochs` is 0).
pub fn trained_surrogate(
    surrogate: &Surrogate,
    probe: &ProbeSet,
    examples: &[TrainExample],
    cfg: &SurrogateTraining,
    seed: u64,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<(Box<dyn TaskModel>, Option<SurrogateFit>)> {
    trained_surrogate_with(
        surrogate,
        probe,
        examples,
        cfg,
        seed,
        |m| Ok((m, None)),
        report,
    )
}

/// [`trained_surrogate`] with a hook between building and training: `prepare`
/// may wrap the model (with parameter-efficient modules) and returns it with the
/// names of the parameters to train (`None` = all; the rest stay bit-for-bit frozen).
pub fn trained_surrogate_with<M: TaskModel>(
    surrogate: &Surrogate,
    probe: &ProbeSet,
    examples: &[TrainExample],
    cfg: &SurrogateTraining,
    seed: u64,
    prepare: impl FnOnce(Box<dyn TaskModel>) -> anyhow::Result<(M, Option<Vec<String>>)>,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<(M, Option<SurrogateFit>)> {
    let opts = BuildOptions {
        seed,
        ..Default::default()
    };
    let model = models::load(&surrogate.dir, head_spec(probe.head), &opts)?;
    let (model, trainable) = prepare(model)?;
    if cfg.epochs == 0 {
        return Ok((model, None));
    }
    let train_cfg = TrainConfig {
        epochs: cfg.epochs,
        batch_size: cfg.batch,
        grad_accum: cfg.grad_accum,
        optimizer: AdamWConfig {
            lr: cfg.lr,
            ..Default::default()
        },
        seed,
        trainable,
        soft_loss: cfg.soft_loss,
        ..Default::default()
    };
    let trained = train(
        &model,
        examples,
        None,
        surrogate.tokenizer.pad_id(),
        &train_cfg,
        &mut |e| {
            match e {
                Event::Step {
                    step,
                    total_steps,
                    loss,
                    examples,
                    elapsed,
                    ..
                } => report(format!(
                    "training surrogate: step {step}/{total_steps}, loss {loss:.4}, {:.1} ex/s",
                    *examples as f64 / elapsed.max(1e-9)
                )),
                Event::Epoch(r) => report(format!(
                    "training surrogate: epoch {} mean loss {:.4}",
                    r.epoch, r.train_loss
                )),
                _ => {}
            }
            Control::Continue
        },
    )?;
    let final_loss = trained.history.last().map_or(f64::NAN, |r| r.train_loss);
    report("checking the surrogate's fit on its probe set".into());
    let fit = surrogate_fit(
        &model,
        examples,
        final_loss,
        surrogate.tokenizer.pad_id(),
        cfg.batch,
    )?;
    Ok((model, Some(fit)))
}
