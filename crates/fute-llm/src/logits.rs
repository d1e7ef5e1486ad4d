//! The logits the label scores are read from, and the greedy search for the
//! answer step (paper.md §2.5, §12).
//!
//! The FUTE reference generates with Hugging Face's `generate` and reads
//! `output.scores`, the logits *after* its processors: a repetition penalty
//! of 1.2 over every token of the prompt and of the answer so far, and no
//! repeated 3-gram. fute reads the raw model scores by default
//! ([`LogitsProcessing::Raw`]); [`LogitsProcessing::Reference`] applies the
//! reference's two processors at every greedy step, so that truths, baselines
//! and MTE targets can be compared with the reference's. Because the prompt
//! lists the verbalisers, the penalty divides their (positive) logits by 1.2
//! when they appear in it, which can move label scores by several units.

use crate::backend::is_whitespace_token;
use crate::Result;
use serde::{Deserialize, Serialize};

/// The reference's repetition penalty (HF `repetition_penalty`).
pub const REPETITION_PENALTY: f32 = 1.2;
/// The reference's no-repeat n-gram size (HF `no_repeat_ngram_size`).
pub const NO_REPEAT_NGRAM: usize = 3;

/// Which logits the greedy steps and the label scores use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogitsProcessing {
    /// The model's own logits (or their log-softmax).
    #[default]
    Raw,
    /// After the reference's repetition penalty (1.2) and no-repeat 3-grams.
    Reference,
}

impl LogitsProcessing {
    /// Whether this is [`LogitsProcessing::Raw`] (kept out of cache keys, so
    /// keys made before the switch existed stay valid).
    pub fn is_raw(&self) -> bool {
        *self == LogitsProcessing::Raw
    }

    /// Applies the processors to the next-token `logits` after `context`
    /// (prompt and tokens generated so far, in order).
    pub fn apply(self, logits: &mut [f32], context: &[u32]) {
        if self == LogitsProcessing::Reference {
            repetition_penalty(logits, context, REPETITION_PENALTY);
            no_repeat_ngram(logits, context, NO_REPEAT_NGRAM);
        }
    }
}

/// HF's `RepetitionPenaltyLogitsProcessor`: every token id present in
/// `context` (once, however often it occurs) has its logit divided by
/// `penalty` when positive and multiplied by it when negative.
pub fn repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &id in context {
        let i = id as usize;
        if i < logits.len() && !seen[i] {
            seen[i] = true;
            let l = logits[i];
            logits[i] = if l < 0.0 { l * penalty } else { l / penalty };
        }
    }
}

/// HF's `NoRepeatNGramLogitsProcessor`: a token that would complete an
/// `n`-gram already present in `context` gets −∞.
pub fn no_repeat_ngram(logits: &mut [f32], context: &[u32], n: usize) {
    if n == 0 || context.len() + 1 < n {
        return;
    }
    let prefix = &context[context.len() + 1 - n..];
    for window in context.windows(n) {
        if &window[..n - 1] == prefix {
            if let Some(l) = logits.get_mut(window[n - 1] as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// The answer step of a greedy decode.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerStep {
    /// Index of the step (0 = right after the prompt).
    pub step: usize,
    /// Greedy token ids up to and including that step.
    pub ids: Vec<u32>,
    /// Their texts.
    pub texts: Vec<String>,
    /// The (processed) logits at that step.
    pub logits: Vec<f32>,
}

/// Greedy decoding after `prompt` until the first step whose greedy token is
/// not whitespace (an empty decode counts as whitespace, as Python's
/// `"".strip() == ""` does in the reference), an end-of-turn token, or
/// `max_steps` steps. `first` are the logits after the prompt; `next(id, pos)`
/// runs token `id` at position `pos` and returns the logits after it. Every
/// step's logits go through `processing` with the prompt and the tokens
/// chosen so far as context, and the greedy token is their argmax.
///
/// # Errors
/// Whatever `decode` or `next` return.
pub fn answer_step(
    prompt: &[u32],
    first: Vec<f32>,
    max_steps: usize,
    processing: LogitsProcessing,
    is_stop: impl Fn(u32) -> bool,
    decode: impl Fn(u32) -> Result<String>,
    mut next: impl FnMut(u32, usize) -> Result<Vec<f32>>,
) -> Result<AnswerStep> {
    let mut context = prompt.to_vec();
    let mut logits = first;
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    let max_steps = max_steps.max(1);
    loop {
        processing.apply(&mut logits, &context);
        let id = argmax(&logits);
        let text = decode(id)?;
        ids.push(id);
        texts.push(text.clone());
        let step = ids.len() - 1;
        if !is_whitespace_token(&text) || step + 1 >= max_steps || is_stop(id) {
            return Ok(AnswerStep {
                step,
                ids,
                texts,
                logits,
            });
        }
        context.push(id);
        logits = next(id, context.len() - 1)?;
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// `score` as it can be written to JSON: −∞ (a token banned by the
/// no-repeat rule) becomes `f32::MIN`, which gives it probability 0 all the same.
pub fn finite(score: f32) -> f32 {
    if score == f32::NEG_INFINITY {
        f32::MIN
    } else {
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits_once() {
        let mut l = vec![2.4, -1.0, 0.5, 3.0];
        // Token 0 twice in the context: still penalised once.
        repetition_penalty(&mut l, &[0, 1, 0], 1.2);
        // a negative logit is multiplied by the penalty: -1.0 * 1.2
        assert_eq!(l, [2.4 / 1.2, -1.2, 0.5, 3.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_the_completion_of_a_seen_trigram() {
        // Context 5 6 7 5 6: the trigram (5, 6, 7) was seen, so 7 is banned.
        let mut l = vec![0.0; 9];
        no_repeat_ngram(&mut l, &[5, 6, 7, 5, 6], 3);
        assert_eq!(l[7], f32::NEG_INFINITY);
        assert!(l.iter().enumerate().all(|(i, &v)| i == 7 || v == 0.0));
        // (5, 6) followed by 8 elsewhere too: both are banned.
        let mut l = vec![0.0; 9];
        no_repeat_ngram(&mut l, &[5, 6, 8, 5, 6, 7, 1, 5, 6], 3);
        assert_eq!(l[7], f32::NEG_INFINITY);
        assert_eq!(l[8], f32::NEG_INFINITY);
        // Too short a context bans nothing.
        let mut l = vec![0.0; 3];
        no_repeat_ngram(&mut l, &[1], 3);
        assert_eq!(l, [0.0; 3]);
    }

    /// A 6-token vocabulary: 0 = "\n", 1 = "", 2 = "yes", 3 = "no", 4 = "a", 5 = end.
    fn decode(id: u32) -> Result<String> {
        Ok(["\n", "", "yes", "no", "a", "</s>"][id as usize].to_string())
    }

    #[test]
    fn the_reference_processors_change_the_answer_and_its_scores() {
        // After the prompt [2, 4] ("yes a"): raw logits favour "yes" (2.4 vs 2.1);
        // the penalty divides "yes" (in the prompt) by 1.2 → 2.0, so "no" wins.
        let first = vec![-1.0, -5.0, 2.4, 2.1, 0.0, -3.0];
        let never = |_: u32, _: usize| -> Result<Vec<f32>> { unreachable!() };
        let raw = answer_step(
            &[2, 4],
            first.clone(),
            5,
            LogitsProcessing::Raw,
            |i| i == 5,
            decode,
            never,
        )
        .unwrap();
        assert_eq!((raw.step, raw.ids.clone()), (0, vec![2]));
        assert_eq!(raw.logits, first);
        let reference = answer_step(
            &[2, 4],
            first,
            5,
            LogitsProcessing::Reference,
            |i| i == 5,
            decode,
            never,
        )
        .unwrap();
        assert_eq!(reference.ids, [3]);
        assert_eq!(
            reference.logits,
            [-1.0, -5.0, 2.4 / 1.2, 2.1, 0.0 / 1.2, -3.0]
        );
    }

    #[test]
    fn whitespace_and_empty_decodes_are_skipped_with_the_context_growing() {
        // Step 0: "\n"; step 1: "" (empty decode = whitespace); step 2: the answer.
        let mut seen = Vec::new();
        let steps = [
            vec![0.0, 5.0, 1.0, 1.0, 0.0, 0.0],
            // At step 2 the context is [4, 4, 0, 1]: "a" (4) is penalised, 3.0 → 2.5.
            vec![0.0, 0.0, 2.0, 2.2, 3.0, 0.0],
        ];
        let got = answer_step(
            &[4, 4],
            vec![9.0, 0.0, 1.0, 1.0, 0.0, 0.0],
            5,
            LogitsProcessing::Reference,
            |i| i == 5,
            decode,
            |id, pos| {
                seen.push((id, pos));
                Ok(steps[seen.len() - 1].clone())
            },
        )
        .unwrap();
        assert_eq!(seen, [(0, 2), (1, 3)]);
        assert_eq!(got.step, 2);
        assert_eq!(got.ids, [0, 1, 4]);
        assert_eq!(got.texts, ["\n", "", "a"]);
        // "a" was penalised to 2.5, still above "no" (2.2).
        assert_eq!(got.logits[4], 2.5);
        // max_steps stops at whitespace too.
        let got = answer_step(
            &[4],
            vec![9.0, 0.0, 1.0, 1.0, 0.0, 0.0],
            1,
            LogitsProcessing::Raw,
            |i| i == 5,
            decode,
            |_, _| unreachable!(),
        )
        .unwrap();
        assert_eq!((got.step, got.texts), (0, vec!["\n".to_string()]));
    }

    #[test]
    fn banned_scores_are_written_as_the_lowest_finite_value() {
        assert_eq!(finite(f32::NEG_INFINITY), f32::MIN);
        assert_eq!(finite(-3.5), -3.5);
    }
}
