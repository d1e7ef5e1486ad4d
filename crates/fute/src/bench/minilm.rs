//! fute's side of the MiniLM rows: training and PEFT steps, Fisher, TextEmb.

use std::path::Path;

use anyhow::Context as _;
use candle_core::{DType, Device, Tensor};
use fute_nn::fisher::{
    fisher_embedding, EmbeddingGradients, FisherExample, FisherLabels, FisherOptions, FisherScope,
    FisherTarget, FisherVariant, SoftLoss,
};
use fute_nn::peft::{LoraConfig, Peft, PeftConfig, PrefixConfig, PromptConfig};
use fute_nn::train::frozen_view;
use fute_nn::{
    BertInput, BertTaskModel, BuildOptions, Encoding, HeadSpec, Hooks, Mode, TaskModel, TextInput,
    TextTokenizer, Truncation,
};

use super::{measure, time_train_steps, Kind, Measurement, Workload};

/// Token ids of the first `n` IMDB reviews (`reviews.json`, field `t`) that
/// fill `seq_len` tokens, with labels alternating 0, 1, …
pub fn review_ids(
    tokenizer: &TextTokenizer,
    reviews_json: &Path,
    n: usize,
    seq_len: usize,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let text = std::fs::read_to_string(reviews_json)
        .with_context(|| format!("reading {}", reviews_json.display()))?;
    let reviews: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON array", reviews_json.display()))?;
    let mut out = Vec::with_capacity(n);
    for r in &reviews {
        let Some(t) = r.get("t").and_then(|t| t.as_str()) else {
            continue;
        };
        let e = tokenizer.encode(TextInput::Single(t), seq_len, Truncation::LongestFirst)?;
        if e.len() == seq_len {
            out.push(e.ids);
            if out.len() == n {
                return Ok(out);
            }
        }
    }
    anyhow::bail!(
        "{} has only {} reviews of at least {seq_len} tokens, {n} needed",
        reviews_json.display(),
        out.len()
    )
}

fn batch(ids: &[Vec<u32>]) -> anyhow::Result<BertInput> {
    let (b, t) = (ids.len(), ids[0].len());
    let flat: Vec<u32> = ids.iter().flatten().copied().collect();
    let dev = Device::Cpu;
    Ok(BertInput {
        input_ids: Tensor::from_vec(flat, (b, t), &dev)?,
        token_type_ids: Some(Tensor::zeros((b, t), DType::U32, &dev)?),
        attention_mask: Tensor::ones((b, t), DType::U32, &dev)?,
    })
}

fn labels(b: usize) -> anyhow::Result<Tensor> {
    let v: Vec<u32> = (0..b as u32).map(|i| i % 2).collect();
    Ok(Tensor::new(v.as_slice(), &Device::Cpu)?)
}

fn load(dir: &Path) -> anyhow::Result<BertTaskModel> {
    Ok(BertTaskModel::from_folder(
        dir,
        HeadSpec::Classification { num_labels: 2 },
        &BuildOptions::default(),
    )?)
}

/// The PEFT configuration of a PEFT row (FUTE/TuPaTE defaults: 16 positions,
/// LoRA r = 8 on query and value).
fn peft_config(kind: Kind) -> Option<PeftConfig> {
    Some(match kind {
        Kind::PeftPrefix => PeftConfig::Prefix(PrefixConfig::default()),
        Kind::PeftPrompt => PeftConfig::PromptTuning(PromptConfig::default()),
        Kind::PeftLora => PeftConfig::Lora(LoraConfig::default()),
        Kind::PeftBitfit => PeftConfig::BitFit,
        _ => return None,
    })
}

/// Runs workload `w` with fute on the model in `dir` and the token ids `ids`.
pub fn run(
    w: &Workload,
    dir: &Path,
    ids: &[Vec<u32>],
    threads: usize,
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!ids.is_empty(), "no inputs");
    let pick = |i: usize, b: usize| -> Vec<Vec<u32>> {
        (0..b)
            .map(|k| ids[(i * b + k) % ids.len()].clone())
            .collect()
    };
    match w.kind {
        Kind::Train | Kind::PeftPrefix | Kind::PeftPrompt | Kind::PeftLora | Kind::PeftBitfit => {
            let base = load(dir)?;
            let (model, trainable): (Box<dyn TaskModel>, _) = match peft_config(w.kind) {
                Some(cfg) => {
                    let adapted = Peft::adapt(base, &cfg, 0)?;
                    let names = adapted.peft.trainable_names(&adapted);
                    (Box::new(adapted), Some(names))
                }
                None => (Box::new(base), None),
            };
            let params: Vec<_> = model
                .named_parameters()
                .into_iter()
                .filter(|(n, _)| trainable.as_ref().is_none_or(|t| t.contains(n)))
                .collect();
            // As `fute train`: frozen parameters detached, fute's AdamW.
            let view = trainable
                .as_ref()
                .map(|t| frozen_view(model.as_ref(), t))
                .transpose()?;
            let net: &dyn TaskModel = match &view {
                Some(v) => v.as_ref(),
                None => model.as_ref(),
            };
            let y = labels(w.batch)?;
            time_train_steps(w, net, &params, &y, |i| batch(&pick(i, w.batch)))
        }
        Kind::FisherPerExample | Kind::FisherPerBatch | Kind::FisherSquareOfMean => {
            let model = load(dir)?;
            let examples: Vec<FisherExample> = (0..w.units + w.warmup)
                .map(|i| FisherExample {
                    encoding: Encoding {
                        ids: ids[i % ids.len()].clone(),
                        type_ids: vec![0; ids[i % ids.len()].len()],
                        sequence_ids: vec![Some(0); ids[i % ids.len()].len()],
                        offsets: vec![None; ids[i % ids.len()].len()],
                        truncated: true,
                    },
                    target: FisherTarget::Label((i % 2) as u32),
                })
                .collect();
            let opts = FisherOptions {
                variant: match w.kind {
                    Kind::FisherPerExample => FisherVariant::PerExample,
                    Kind::FisherPerBatch => FisherVariant::PerBatch,
                    _ => FisherVariant::SquareOfMean,
                },
                batch_size: w.batch,
                labels: FisherLabels::Gold,
                soft_loss: SoftLoss::BceWithLogits,
                scope: FisherScope::encoder(),
                embedding_gradients: EmbeddingGradients::Sparse,
                workers: threads.max(1),
            };
            if w.warmup > 0 {
                fisher_embedding(&model, &examples[w.units..], &opts)?;
            }
            measure(
                || {
                    fisher_embedding(&model, &examples[..w.units], &opts)?;
                    Ok(())
                },
                w.examples(),
            )
        }
        Kind::TextEmb => {
            // Inference: every parameter detached, so no autograd graph is kept.
            let model = frozen_view(&load(dir)?, &[])?;
            let fwd = |i: usize| -> anyhow::Result<()> {
                let input = batch(&pick(i, w.batch))?;
                let out = model.forward_with(&input, &Mode::eval(), &Hooks::default())?;
                // Mask-aware mean of the last hidden states, as `methods::textemb`.
                let mask = input.attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = out.last_hidden_state.broadcast_mul(&mask)?.sum(1)?;
                let means = summed.broadcast_div(&mask.sum(1)?)?;
                std::hint::black_box(means.to_vec2::<f32>()?);
                Ok(())
            };
            for i in 0..w.warmup {
                fwd(i)?;
            }
            measure(
                || {
                    for i in 0..w.units {
                        fwd(w.warmup + i)?;
                    }
                    Ok(())
                },
                w.examples(),
            )
        }
        Kind::LlmLabels | Kind::LlmPerplexity => {
            anyhow::bail!("{} is an LLM row (bench::llm)", w.id)
        }
    }
}
