//! The training loop; see the module documentation of [`crate::train`].

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Tensor};

use super::data::{batch_input, batch_targets, epoch_order, mix, BatchTargets, TrainExample};
use super::optim::{clip_grad_norm, global_norm, AdamW, Moments};
use super::schedule::LinearSchedule;
use super::state::{self, RunState};
use super::{Control, EpochRecord, Event, TrainConfig, TrainReport};
use crate::loss::{cross_entropy, mse, span_cross_entropy, SoftLoss};
use crate::nn::Mode;
use crate::task::{TaskModel, TaskOutput};
use crate::{Error, Result};

const DROPOUT_TAG: u64 = 0x0044_524f_504f_5554;
const STATE_VERSION: u32 = 1;

/// The loss of a head's output against a batch's targets.
fn loss_of(out: &TaskOutput, targets: &BatchTargets, soft: SoftLoss) -> Result<Tensor> {
    match (out, targets) {
        (TaskOutput::Logits(l), BatchTargets::Labels(y)) => cross_entropy(l, y),
        (TaskOutput::Logits(l), BatchTargets::Soft(p)) => {
            if l.dim(1)? != p.dim(1)? {
                return Err(Error::BadInput(format!(
                    "soft targets have {} classes but the head has {}",
                    p.dim(1)?,
                    l.dim(1)?
                )));
            }
            soft.apply(l, p)
        }
        (TaskOutput::Scores(s), BatchTargets::Values(y)) => mse(s, y),
        (TaskOutput::Span { start, end }, BatchTargets::Spans(s, e)) => {
            span_cross_entropy(start, end, s, e)
        }
        _ => Err(Error::BadInput(
            "the training targets do not fit the model's head (labels need a classification \
             head, values a regression head, spans a QA head)"
                .into(),
        )),
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Dev loss (mean over examples) and score (higher is better: accuracy for
/// classification, −MSE for regression, −span loss for QA) of `model` in eval mode.
/// Soft targets are scored by agreement of argmaxes, their loss is BCE-with-logits.
pub fn evaluate(
    model: &dyn TaskModel,
    examples: &[TrainExample],
    pad_id: u32,
    batch_size: usize,
) -> Result<(f64, f64)> {
    if examples.is_empty() {
        return Err(Error::BadInput("no examples to evaluate".into()));
    }
    let device = super::data::model_device(model);
    let mode = Mode::eval();
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let mut classification = false;
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&TrainExample> = chunk.iter().collect();
        let input = batch_input(&refs, pad_id, &device)?;
        let targets = batch_targets(&refs, &device)?;
        let out = model.forward(&input, &mode)?;
        loss_sum += scalar(&loss_of(&out, &targets, SoftLoss::default())?)? * chunk.len() as f64;
        if let TaskOutput::Logits(l) = &out {
            let gold = match &targets {
                BatchTargets::Labels(y) => Some(y.to_vec1::<u32>()?),
                BatchTargets::Soft(p) => Some(p.argmax(1)?.to_vec1::<u32>()?),
                _ => None,
            };
            if let Some(gold) = gold {
                classification = true;
                let pred = l.argmax(1)?.to_vec1::<u32>()?;
                correct += pred.iter().zip(&gold).filter(|(p, g)| p == g).count();
            }
        }
    }
    let n = examples.len() as f64;
    let loss = loss_sum / n;
    let score = if classification {
        correct as f64 / n
    } else {
        -loss
    };
    Ok((loss, score))
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

/// Identifies settings + data + model shape, so a checkpoint is only resumed by the same run.
fn fingerprint(
    model: &dyn TaskModel,
    train: &[TrainExample],
    dev: Option<&[TrainExample]>,
    cfg: &TrainConfig,
) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    fnv(
        &mut h,
        serde_json::to_string(cfg)
            .expect("config serialises")
            .as_bytes(),
    );
    fnv(&mut h, format!("{:?}", model.head()).as_bytes());
    for (name, var) in model.named_parameters() {
        fnv(&mut h, format!("{name}{:?}", var.dims()).as_bytes());
    }
    for set in [Some(train), dev].into_iter().flatten() {
        fnv(&mut h, &set.len().to_le_bytes());
        for ex in set {
            for id in &ex.encoding.ids {
                fnv(&mut h, &id.to_le_bytes());
            }
            fnv(&mut h, format!("{:?}", ex.target).as_bytes());
        }
    }
    format!("{h:016x}")
}

/// Copies of the parameters the run trains. The others never change during the run
/// (and a resumed run rebuilds them from the same base), so these restore the model;
/// for a LoRA fine-tune of a 135M-parameter decoder they are ~1 % of its weights.
fn snapshot(params: &[(String, candle_core::Var)]) -> Result<HashMap<String, Tensor>> {
    params
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// Puts the trained parameters of a checkpoint or snapshot back into `model`.
fn restore(
    model: &dyn TaskModel,
    params: &[(String, candle_core::Var)],
    weights: &HashMap<String, Tensor>,
) -> Result<()> {
    for (name, _) in params {
        let t = weights.get(name).ok_or_else(|| {
            Error::BadInput(format!("training checkpoint lacks parameter `{name}`"))
        })?;
        model.set_parameter(name, t)?;
    }
    Ok(())
}

fn moments_map(opt: &AdamW) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (name, m) in &opt.state {
        out.insert(format!("m/{name}"), m.m.clone());
        out.insert(format!("v/{name}"), m.v.clone());
    }
    out
}

/// The parameters the run updates: all, or the named subset (every name must exist).
fn trainable_params(
    model: &dyn TaskModel,
    names: Option<&[String]>,
) -> Result<Vec<(String, candle_core::Var)>> {
    let all = model.named_parameters();
    let Some(names) = names else {
        return Ok(all);
    };
    if names.is_empty() {
        return Err(Error::BadInput(
            "the list of trainable parameters is empty".into(),
        ));
    }
    let wanted: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
    if let Some(missing) = wanted
        .iter()
        .find(|n| !all.iter().any(|(m, _)| m.as_str() == **n))
    {
        return Err(Error::BadInput(format!(
            "trainable parameter `{missing}` is not a parameter of the model"
        )));
    }
    Ok(all
        .into_iter()
        .filter(|(n, _)| wanted.contains(n.as_str()))
        .collect())
}

/// Trains `model` in place on `train`, evaluating on `dev` after every epoch.
///
/// `pad_id` pads batches; `on_event` sees progress and may stop the run. With
/// [`TrainConfig::checkpoint_dir`] set, an existing checkpoint there made by the
/// same settings and data is resumed (one made by others is an error), and new
/// ones are written at every epoch end and every
/// [`TrainConfig::checkpoint_every`] steps.
pub fn train(
    model: &dyn TaskModel,
    train: &[TrainExample],
    dev: Option<&[TrainExample]>,
    pad_id: u32,
    cfg: &TrainConfig,
    on_event: &mut dyn FnMut(&Event) -> Control,
) -> Result<TrainReport> {
    if train.is_empty() {
        return Err(Error::BadInput("no training examples".into()));
    }
    if cfg.batch_size == 0 || cfg.grad_accum == 0 || cfg.epochs == 0 {
        return Err(Error::BadInput(
            "epochs, batch size and gradient accumulation must be at least 1".into(),
        ));
    }
    let dev = dev.filter(|d| !d.is_empty());
    let device = super::data::model_device(model);
    let params = trainable_params(model, cfg.trainable.as_deref())?;
    let n = train.len();
    let n_batches = n.div_ceil(cfg.batch_size);
    let steps_per_epoch = n_batches.div_ceil(cfg.grad_accum);
    let total_steps = steps_per_epoch * cfg.epochs;
    let schedule = LinearSchedule::with_fraction(total_steps, cfg.warmup_fraction);
    let fp = fingerprint(model, train, dev, cfg);

    let mut opt = AdamW::new(cfg.optimizer);
    let mut best: Option<HashMap<String, Tensor>> = None;
    let mut st = RunState {
        version: STATE_VERSION,
        fingerprint: fp.clone(),
        ..Default::default()
    };
    let mut resumed = false;
    if let Some(dir) = &cfg.checkpoint_dir {
        if let Some(snap) = state::read(dir)? {
            if snap.state.fingerprint != fp || snap.state.version != STATE_VERSION {
                return Err(Error::BadInput(format!(
                    "the training checkpoint in {} was made with other settings, data or model; \
                     delete it to start over, or rerun with the same options to resume",
                    dir.display()
                )));
            }
            restore(model, &params, &snap.weights)?;
            for (name, step) in &snap.state.param_steps {
                let get = |k: String| {
                    snap.moments.get(&k).cloned().ok_or_else(|| {
                        Error::BadInput(format!("training checkpoint lacks moment `{k}`"))
                    })
                };
                let m = get(format!("m/{name}"))?;
                let v = get(format!("v/{name}"))?;
                opt.state
                    .insert(name.clone(), Moments { m, v, step: *step });
            }
            best = snap.best;
            st = snap.state;
            resumed = true;
        }
    }

    let save = |st: &mut RunState, opt: &AdamW, best: &Option<HashMap<String, Tensor>>| {
        let Some(dir) = &cfg.checkpoint_dir else {
            return Ok::<bool, Error>(false);
        };
        st.param_steps = opt.state.iter().map(|(k, m)| (k.clone(), m.step)).collect();
        let weights: HashMap<String, Tensor> = params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        state::write(dir, st, &weights, &moments_map(opt), best.as_ref())?;
        Ok(true)
    };

    let started = Instant::now();
    let mut examples_seen = 0usize;
    let report = |st: &RunState, interrupted: bool, examples: usize| TrainReport {
        steps: st.step,
        epochs_done: st.history.len(),
        history: st.history.clone(),
        best_epoch: st.best_epoch,
        best_score: st.best_score,
        stopped_early: st.stopped_early,
        interrupted,
        resumed,
        examples,
        seconds: started.elapsed().as_secs_f64(),
    };

    if on_event(&Event::Start {
        total_steps,
        done_steps: st.step,
        examples_per_epoch: n,
        resumed,
    }) == Control::Stop
    {
        return Ok(report(&st, true, 0));
    }

    // Parameters outside `trainable` are detached in the view the loop runs:
    // backward then forms no gradient for them (see `frozen::frozen_view`).
    let view = cfg
        .trainable
        .as_deref()
        .map(|names| super::frozen::frozen_view(model, names))
        .transpose()?;
    let net: &dyn TaskModel = match &view {
        Some(v) => v.as_ref(),
        None => model,
    };
    while st.epoch < cfg.epochs && !st.stopped_early {
        let epoch = st.epoch;
        let order = epoch_order(n, cfg.seed, epoch);
        let mut acc: HashMap<String, Tensor> = HashMap::new();
        let (mut acc_count, mut acc_loss, mut acc_examples) = (0usize, 0.0f64, 0usize);
        for b in st.batch_in_epoch..n_batches {
            let idx = &order[b * cfg.batch_size..((b + 1) * cfg.batch_size).min(n)];
            let refs: Vec<&TrainExample> = idx.iter().map(|&i| &train[i]).collect();
            let input = batch_input(&refs, pad_id, &device)?;
            let targets = batch_targets(&refs, &device)?;
            let counter = (epoch * n_batches + b) as u64;
            let mode = Mode::train(mix(cfg.seed, DROPOUT_TAG, counter));
            let out = net.forward(&input, &mode)?;
            let loss = loss_of(&out, &targets, cfg.soft_loss)?;
            let loss_val = scalar(&loss)?;
            if !loss_val.is_finite() {
                return Err(Error::BadInput(format!(
                    "training diverged: loss is {loss_val} at epoch {} batch {b}; try a lower learning rate",
                    epoch + 1
                )));
            }
            let grads = loss.backward()?;
            for (name, var) in &params {
                if let Some(g) = grads.get(var.as_tensor()) {
                    let g = match acc.remove(name) {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    };
                    acc.insert(name.clone(), g);
                }
            }
            acc_count += 1;
            acc_loss += loss_val;
            acc_examples += refs.len();
            st.epoch_loss_sum += loss_val;
            st.batch_in_epoch = b + 1;
            if acc_count < cfg.grad_accum && b + 1 < n_batches {
                continue;
            }
            if acc_count > 1 {
                for g in acc.values_mut() {
                    *g = (&*g / acc_count as f64)?;
                }
            }
            let grad_norm = match cfg.max_grad_norm {
                Some(max) => clip_grad_norm(&mut acc, max)?,
                None => global_norm(&acc)?,
            };
            let lr = cfg.optimizer.lr * schedule.factor(st.step);
            opt.step(&params, &acc, lr)?;
            st.step += 1;
            examples_seen += acc_examples;
            let step_loss = acc_loss / acc_count as f64;
            acc.clear();
            (acc_count, acc_loss, acc_examples) = (0, 0.0, 0);
            let ev = Event::Step {
                step: st.step,
                total_steps,
                epoch,
                loss: step_loss,
                lr,
                grad_norm,
                examples: examples_seen,
                elapsed: started.elapsed().as_secs_f64(),
            };
            if on_event(&ev) == Control::Stop {
                return Ok(report(&st, true, examples_seen));
            }
            let periodic = cfg
                .checkpoint_every
                .is_some_and(|k| k > 0 && st.step.is_multiple_of(k));
            if periodic
                && b + 1 < n_batches
                && save(&mut st, &opt, &best)?
                && on_event(&Event::Checkpoint { step: st.step }) == Control::Stop
            {
                return Ok(report(&st, true, examples_seen));
            }
        }

        let (dev_loss, dev_score) = match dev {
            Some(d) => {
                let (l, s) = evaluate(model, d, pad_id, cfg.eval_batch_size)?;
                (Some(l), Some(s))
            }
            None => (None, None),
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: st.epoch_loss_sum / n_batches as f64,
            dev_loss,
            dev_score,
        };
        if let Some(score) = dev_score {
            if st.best_score.is_none_or(|b| score > b) {
                st.best_score = Some(score);
                st.best_epoch = Some(epoch + 1);
                st.bad_epochs = 0;
                best = Some(snapshot(&params)?);
            } else {
                st.bad_epochs += 1;
                if cfg.patience.is_some_and(|p| st.bad_epochs >= p) {
                    st.stopped_early = true;
                }
            }
        }
        st.history.push(record.clone());
        st.epoch += 1;
        st.batch_in_epoch = 0;
        st.epoch_loss_sum = 0.0;
        let saved = save(&mut st, &opt, &best)?;
        if on_event(&Event::Epoch(record)) == Control::Stop {
            return Ok(report(&st, true, examples_seen));
        }
        if saved && on_event(&Event::Checkpoint { step: st.step }) == Control::Stop {
            return Ok(report(&st, true, examples_seen));
        }
    }

    if cfg.keep_best {
        if let Some(b) = &best {
            restore(model, &params, b)?;
        }
    }
    Ok(report(&st, false, examples_seen))
}
