//! TextEmb: the average, over inputs, of each input's mask-aware mean final-layer state.

use crate::probe::{text_input, ProbeSet};
use crate::surrogate::Surrogate;
use candle_core::{DType, Device};
use fute_nn::{models, BuildOptions, HeadSpec, Hooks, Mode, TaskModel, TextInput, Truncation};

/// Runs TextEmb with the pre-trained surrogate (no training).
pub fn embed(
    surrogate: &Surrogate,
    probe: &ProbeSet,
    max_len: usize,
    batch: usize,
) -> anyhow::Result<Vec<(String, Vec<f32>)>> {
    // The head is unused; any spec loads the encoder.
    let model = models::load(
        &surrogate.dir,
        HeadSpec::Regression,
        &BuildOptions::default(),
    )?;
    // Inference only: every parameter detached, so no autograd graph is built.
    let model = fute_nn::train::frozen_view(model.as_ref(), &[])?;
    let hidden = surrogate.description.hidden_size;
    let mut sum = vec![0f64; hidden];
    for chunk in probe.inputs.chunks(batch.max(1)) {
        let inputs: Vec<TextInput> = chunk.iter().map(|s| text_input(s)).collect();
        let enc = surrogate
            .tokenizer
            .encode_batch(&inputs, max_len, Truncation::LongestFirst)?;
        let input = enc.to_input(&Device::Cpu)?;
        let out = model.forward_with(&input, &Mode::eval(), &Hooks::default())?;
        let mask = input.attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = out.last_hidden_state.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let means: Vec<Vec<f32>> = summed.broadcast_div(&counts)?.to_vec2()?;
        for m in means {
            for (s, v) in sum.iter_mut().zip(m) {
                *s += f64::from(v);
            }
        }
    }
    let n = probe.inputs.len().max(1) as f64;
    Ok(vec![(
        "avg_sequence_output".into(),
        sum.into_iter().map(|s| (s / n) as f32).collect(),
    )])
}
