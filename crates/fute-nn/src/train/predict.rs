//! Batched inference in eval mode and QA span decoding.

use crate::nn::Mode;
use crate::task::{TaskModel, TaskOutput};
use crate::tokenize::Encoding;
use crate::train::data::pad_batch;
use crate::Result;

/// A model's raw output for one example.
#[derive(Debug, Clone, PartialEq)]
pub enum RawPrediction {
    /// Class logits.
    Logits(Vec<f32>),
    /// A regression value.
    Score(f32),
    /// Start and end logits over the example's own tokens (padding dropped).
    Span {
        /// Start logits.
        start: Vec<f32>,
        /// End logits.
        end: Vec<f32>,
    },
}

/// Runs `model` (eval mode) over `encodings` in batches of `batch_size`; batches
/// are formed from length-sorted examples so little padding is computed, and
/// outputs come back in input order.
pub fn predict(
    model: &dyn TaskModel,
    encodings: &[Encoding],
    pad_id: u32,
    batch_size: usize,
) -> Result<Vec<RawPrediction>> {
    let device = super::data::model_device(model);
    let mode = Mode::eval();
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&i| encodings[i].len());
    let mut out: Vec<Option<RawPrediction>> = vec![None; encodings.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch = pad_batch(
            chunk.iter().map(|&i| encodings[i].clone()).collect(),
            pad_id,
        );
        let input = batch.to_input(&device)?;
        let f32 = |t: &candle_core::Tensor| t.to_dtype(candle_core::DType::F32);
        match model.forward(&input, &mode)? {
            TaskOutput::Logits(l) => {
                for (&i, row) in chunk.iter().zip(f32(&l)?.to_vec2::<f32>()?) {
                    out[i] = Some(RawPrediction::Logits(row));
                }
            }
            TaskOutput::Scores(s) => {
                for (&i, v) in chunk.iter().zip(f32(&s)?.to_vec1::<f32>()?) {
                    out[i] = Some(RawPrediction::Score(v));
                }
            }
            TaskOutput::Span { start, end } => {
                let (s, e) = (f32(&start)?.to_vec2::<f32>()?, f32(&end)?.to_vec2::<f32>()?);
                for ((&i, mut s), mut e) in chunk.iter().zip(s).zip(e) {
                    let len = encodings[i].len();
                    s.truncate(len);
                    e.truncate(len);
                    out[i] = Some(RawPrediction::Span { start: s, end: e });
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|p| p.expect("every example predicted"))
        .collect())
}

/// The best answer span `(first, last)` token of the context (segment 1), or
/// `None` for "unanswerable": the SQuAD 2.0 rule of the HF examples — the best
/// `start[i] + end[j]` with `i ≤ j < i + max_answer_tokens`, both in the
/// context, against the null score `start[0] + end[0]`.
pub fn best_span(
    encoding: &Encoding,
    start: &[f32],
    end: &[f32],
    max_answer_tokens: usize,
) -> Option<(usize, usize)> {
    let in_context = |i: usize| encoding.sequence_ids.get(i).copied().flatten() == Some(1);
    let null = start.first().copied().unwrap_or(f32::NEG_INFINITY)
        + end.first().copied().unwrap_or(f32::NEG_INFINITY);
    let mut best: Option<((usize, usize), f32)> = None;
    for i in (0..start.len()).filter(|&i| in_context(i)) {
        let last = end.len().min(i + max_answer_tokens.max(1));
        for (j, e) in end.iter().enumerate().take(last).skip(i) {
            if !in_context(j) {
                break;
            }
            let s = start[i] + e;
            if best.is_none_or(|(_, b)| s > b) {
                best = Some(((i, j), s));
            }
        }
    }
    match best {
        Some((span, s)) if s > null => Some(span),
        _ => None,
    }
}
