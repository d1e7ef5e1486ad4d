//! Tokenised training examples, seeded shuffling and dynamic padding.

use candle_core::{Device, Tensor};

use crate::rng::SeededRng;
use crate::task::ModelInput;
use crate::tokenize::{EncodedBatch, Encoding};
use crate::Result;

/// What one example should produce.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainTarget {
    /// A class index (classification head).
    Label(u32),
    /// A distribution over the classes (classification head; loss by
    /// [`crate::train::TrainConfig::soft_loss`]): another model's soft labels.
    Soft(Vec<f32>),
    /// A real value (regression head).
    Value(f32),
    /// Token positions of the answer's first and last token (QA head);
    /// `(0, 0)` — the `[CLS]` token — for unanswerable or truncated-away answers.
    Span {
        /// First answer token.
        start: u32,
        /// Last answer token.
        end: u32,
    },
}

/// One tokenised example with its target.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainExample {
    /// The unpadded encoding.
    pub encoding: Encoding,
    /// The gold target.
    pub target: TrainTarget,
}

/// Token positions of a QA answer given by characters `[char_start, char_end)`
/// of the context (segment 1): its first and last token, or `(0, 0)` when the
/// span is empty or (partly) truncated away, as Hugging Face's QA preprocessing does.
pub fn answer_positions(encoding: &Encoding, char_start: usize, char_end: usize) -> TrainTarget {
    match encoding.char_span_to_token_span(1, char_start, char_end) {
        Some((s, e)) => TrainTarget::Span {
            start: s as u32,
            end: e as u32,
        },
        None => TrainTarget::Span { start: 0, end: 0 },
    }
}

/// The order of `n` examples in epoch `epoch`: a Fisher–Yates shuffle drawn from
/// a generator seeded by `(seed, epoch)` only, so any epoch's order can be
/// recomputed on resume without saved generator state.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let rng = SeededRng::new(mix(seed, 0x0053_4855_4646_4c45, epoch as u64));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// A well-mixed 64-bit value from a seed, a purpose tag and a counter.
pub fn mix(seed: u64, tag: u64, counter: u64) -> u64 {
    let rng =
        SeededRng::new(seed ^ tag.rotate_left(17) ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next_u64()
}

/// Pads the encodings of `examples` to their longest (dynamic padding).
pub fn pad_batch(encodings: Vec<Encoding>, pad_id: u32) -> EncodedBatch {
    let seq_len = encodings.iter().map(Encoding::len).max().unwrap_or(0);
    EncodedBatch {
        encodings,
        seq_len,
        pad_id,
    }
}

/// Model input for a batch of examples, padded to the longest one.
pub fn batch_input(examples: &[&TrainExample], pad_id: u32, device: &Device) -> Result<ModelInput> {
    let encs = examples.iter().map(|e| e.encoding.clone()).collect();
    pad_batch(encs, pad_id).to_input(device)
}

/// Target tensors of a batch: `[B]` u32 labels, `[B]` values, or `[B]` start and end positions.
#[derive(Debug)]
pub enum BatchTargets {
    /// Class labels.
    Labels(Tensor),
    /// Class distributions `[B, C]` (f32).
    Soft(Tensor),
    /// Regression values (f32).
    Values(Tensor),
    /// Start and end positions.
    Spans(Tensor, Tensor),
}

/// Stacks the targets of a batch; an error when kinds are mixed.
pub fn batch_targets(examples: &[&TrainExample], device: &Device) -> Result<BatchTargets> {
    let mixed = || crate::Error::BadInput("a batch mixes target kinds".into());
    match examples.first().map(|e| &e.target) {
        Some(TrainTarget::Label(_)) => {
            let v = examples
                .iter()
                .map(|e| match e.target {
                    TrainTarget::Label(l) => Ok(l),
                    _ => Err(mixed()),
                })
                .collect::<Result<Vec<u32>>>()?;
            Ok(BatchTargets::Labels(Tensor::new(v, device)?))
        }
        Some(TrainTarget::Soft(first)) => {
            let c = first.len();
            let mut v = Vec::with_capacity(examples.len() * c);
            for ex in examples {
                match &ex.target {
                    TrainTarget::Soft(p) if p.len() == c => v.extend_from_slice(p),
                    TrainTarget::Soft(_) => {
                        return Err(crate::Error::BadInput(
                            "soft targets of one batch have different numbers of classes".into(),
                        ))
                    }
                    _ => return Err(mixed()),
                }
            }
            Ok(BatchTargets::Soft(Tensor::from_vec(
                v,
                (examples.len(), c),
                device,
            )?))
        }
        Some(TrainTarget::Value(_)) => {
            let v = examples
                .iter()
                .map(|e| match e.target {
                    TrainTarget::Value(x) => Ok(x),
                    _ => Err(mixed()),
                })
                .collect::<Result<Vec<f32>>>()?;
            Ok(BatchTargets::Values(Tensor::new(v, device)?))
        }
        Some(TrainTarget::Span { .. }) => {
            let (mut s, mut e) = (Vec::new(), Vec::new());
            for ex in examples {
                match ex.target {
                    TrainTarget::Span { start, end } => {
                        s.push(start);
                        e.push(end);
                    }
                    _ => return Err(mixed()),
                }
            }
            Ok(BatchTargets::Spans(
                Tensor::new(s, device)?,
                Tensor::new(e, device)?,
            ))
        }
        None => Err(crate::Error::BadInput("empty batch".into())),
    }
}

/// The device a model's parameters live on.
pub fn model_device(model: &dyn crate::task::TaskModel) -> Device {
    model.device()
}

#[cfg(test)]
mod tests {
    use super::epoch_order;

    #[test]
    fn orders_are_seeded_permutations() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0));
        assert_ne!(a, epoch_order(50, 7, 1));
        assert_ne!(a, epoch_order(50, 8, 0));
    }
}
