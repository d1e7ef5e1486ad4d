//! The label distribution of (LLM, prompt, input), as in the FUTE reference
//! (paper.md §2.5): at the first generated step whose greedy token is not
//! whitespace, each label's score is the best first-token score among its
//! verbalisers; the distribution is the softmax over labels.

use crate::backend::{GenerateOptions, LlmBackend, ScoreKind, ScoreQuery};
use crate::logits::LogitsProcessing;
use crate::prompts::{PromptInput, PromptMode, PromptSet};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How label distributions are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSettings {
    /// Clip every label score at 0 before the softmax (the reference code's
    /// running max starts at 0). Works on raw logits, so only with a local
    /// backend. Off by default.
    pub clip_at_zero: bool,
    /// Greedy steps searched for the first non-whitespace token (reference: 5).
    pub max_steps: usize,
    /// Top tokens kept with each answer (for inspection and HTTP matching).
    pub top_k: usize,
    /// New tokens of chain-of-thought round 1 (reference: 512).
    pub cot_max_tokens: usize,
    /// Raw model scores (default) or after the reference's logits processors
    /// (repetition penalty 1.2, no repeated 3-gram; local backends only).
    #[serde(default, skip_serializing_if = "LogitsProcessing::is_raw")]
    pub logits_processing: LogitsProcessing,
}

impl Default for LabelSettings {
    fn default() -> Self {
        LabelSettings {
            clip_at_zero: false,
            max_steps: 5,
            top_k: 20,
            cot_max_tokens: 512,
            logits_processing: LogitsProcessing::Raw,
        }
    }
}

/// A label distribution and how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelDistribution {
    /// The labels, in the prompt set's order.
    pub labels: Vec<String>,
    /// Softmax of `scores`.
    pub probs: Vec<f64>,
    /// Each label's score (best verbaliser first-token score, clipped if asked).
    pub scores: Vec<f64>,
    /// What the scores are (log-probabilities or raw logits).
    pub kind: ScoreKind,
    /// Labels none of whose verbalisers were in a server's top-k list: their
    /// score is the lowest listed score (an upper bound).
    pub imputed: Vec<bool>,
    /// Index of the label with the highest unclipped score (lowest index on
    /// ties): the most probable label, or with clipping the reference's raw argmax.
    pub predicted: usize,
    /// The greedy tokens up to the scored step.
    pub greedy: Vec<String>,
    /// Chain-of-thought round-1 text.
    pub reasoning: Option<String>,
}

/// Softmax in f64 (max-shifted).
pub fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0 / scores.len() as f64; scores.len()];
    }
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The label distribution of `backend` with prompt `index` of `set` on
/// `input`. Vanilla prompts take one scoring call; chain-of-thought prompts a
/// greedy generation (round 1) and a scoring call on the round-2 chat.
///
/// # Errors
/// Prompt errors ([`Error::Invalid`]), backend failures, and
/// [`Error::Invalid`] when clipping is asked of a backend without raw logits.
pub fn label_distribution<B: LlmBackend + ?Sized>(
    backend: &B,
    set: &PromptSet,
    index: usize,
    input: &PromptInput,
    settings: &LabelSettings,
) -> Result<LabelDistribution> {
    let prompt = set.prompt(index)?;
    let mut messages = set.messages(index, input)?;
    let mut reasoning = None;
    if prompt.mode == PromptMode::Cot {
        let round1 = backend.generate(
            &messages,
            &GenerateOptions {
                max_tokens: settings.cot_max_tokens,
                stop: Vec::new(),
                logits_processing: settings.logits_processing,
            },
        )?;
        messages = set.cot_round2(index, input, &round1.text)?;
        reasoning = Some(round1.text);
    }
    let mut candidates: Vec<String> = Vec::new();
    for v in &prompt.verbalizers {
        for w in &v.words {
            if !candidates.contains(w) {
                candidates.push(w.clone());
            }
        }
    }
    let query = ScoreQuery {
        candidates,
        top_k: settings.top_k,
        max_steps: settings.max_steps,
        raw_logits: settings.clip_at_zero,
        logits_processing: settings.logits_processing,
    };
    let answer = backend.score_answer(&messages, &query)?;
    if settings.clip_at_zero && answer.kind != ScoreKind::Logits {
        return Err(Error::Invalid(
            "clipping at 0 needs raw logits, and this backend returned log-probabilities".into(),
        ));
    }
    let mut raw = Vec::with_capacity(set.labels.len());
    let mut scores = Vec::with_capacity(set.labels.len());
    let mut imputed = Vec::with_capacity(set.labels.len());
    for label in &set.labels {
        let words = set.words(index, label)?;
        let best = answer
            .candidates
            .iter()
            .filter(|c| words.contains(&c.candidate))
            .filter_map(|c| c.score)
            .map(f64::from)
            .fold(f64::NEG_INFINITY, f64::max);
        let (score, guessed) = if best.is_finite() {
            (best, false)
        } else {
            match answer.floor {
                Some(floor) => (f64::from(floor), true),
                None => (f64::NEG_INFINITY, true),
            }
        };
        raw.push(score);
        scores.push(if settings.clip_at_zero {
            score.max(0.0)
        } else {
            score
        });
        imputed.push(guessed);
    }
    let probs = softmax(&scores);
    // The argmax of the unclipped scores, as the reference predicts: with
    // clipping, two negative scores tie at 0 but the prediction still follows
    // the larger one. Without clipping this is the argmax of `probs`.
    let mut predicted = 0;
    for (i, s) in raw.iter().enumerate() {
        if *s > raw[predicted] {
            predicted = i;
        }
    }
    Ok(LabelDistribution {
        labels: set.labels.clone(),
        probs,
        scores,
        kind: answer.kind,
        imputed,
        predicted,
        greedy: answer.greedy,
        reasoning,
    })
}

/// How many inputs had labels that the backend did not score: none of the
/// label's verbalisers was among the tokens a server returned, so the label
/// got the lowest listed score (an upper bound) or no score at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unscored {
    /// Inputs looked at.
    pub inputs: usize,
    /// Inputs on which at least one label was unscored.
    pub some_labels: usize,
    /// Inputs on which every label was unscored: the distribution says nothing.
    pub all_labels: usize,
}

/// Counts the unscored labels of `dists` (one distribution per input).
pub fn unscored(dists: &[LabelDistribution]) -> Unscored {
    let mut u = Unscored {
        inputs: dists.len(),
        ..Unscored::default()
    };
    for d in dists {
        if d.imputed.iter().any(|&i| i) {
            u.some_labels += 1;
        }
        if !d.imputed.is_empty() && d.imputed.iter().all(|&i| i) {
            u.all_labels += 1;
        }
    }
    u
}

impl Unscored {
    /// Refuses results where most inputs had every label unscored: their
    /// distributions are uniform (or a floor), so every prompt would tie and
    /// any number computed from them would be noise.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `what` (e.g. the prompt) and `example`
    /// (the greedy tokens of an unscored input), with what to check.
    pub fn check(&self, what: &str, example: &[String]) -> Result<()> {
        if self.inputs > 0 && 2 * self.all_labels > self.inputs {
            return Err(Error::Invalid(format!(
                "{what}: on {} of {} inputs no verbaliser of any label was among the tokens the LLM \
                 returned at the answer step (it answered {example:?}), so every label distribution \
                 is uniform; check that the prompt set's verbalisers are words this model answers \
                 with, or that the server returns enough top log-probabilities",
                self.all_labels, self.inputs
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{
        AnswerScores, BackendIdentity, CandidateScore, Generation, Perplexity, TokenScore,
    };
    use crate::chat::{ChatMessage, Role};
    use std::sync::Mutex;

    /// Answers every query with fixed first-token scores per word.
    struct Scripted {
        kind: ScoreKind,
        scores: Vec<(&'static str, Option<f32>)>,
        floor: Option<f32>,
        seen: Mutex<Vec<Vec<ChatMessage>>>,
    }

    impl LlmBackend for Scripted {
        fn identity(&self) -> BackendIdentity {
            BackendIdentity {
                kind: "scripted".into(),
                model: "m".into(),
                model_hash: "h".into(),
            }
        }
        fn answer_settings(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn render_chat(&self, _: &[ChatMessage], _: bool) -> Result<String> {
            Ok(String::new())
        }
        fn score_answer(
            &self,
            messages: &[ChatMessage],
            query: &ScoreQuery,
        ) -> Result<AnswerScores> {
            self.seen.lock().unwrap().push(messages.to_vec());
            if query.raw_logits && self.kind != ScoreKind::Logits {
                return Err(Error::Invalid("no logits".into()));
            }
            Ok(AnswerScores {
                kind: self.kind,
                step: 1,
                greedy: vec!["\n".into(), "yes".into()],
                top: vec![TokenScore {
                    id: Some(1),
                    text: "yes".into(),
                    score: 0.0,
                }],
                candidates: query
                    .candidates
                    .iter()
                    .map(|c| CandidateScore {
                        candidate: c.clone(),
                        token: Some(c.clone()),
                        score: self
                            .scores
                            .iter()
                            .find(|(w, _)| w == c)
                            .and_then(|(_, s)| *s),
                    })
                    .collect(),
                floor: self.floor,
            })
        }
        fn generate(&self, messages: &[ChatMessage], _: &GenerateOptions) -> Result<Generation> {
            self.seen.lock().unwrap().push(messages.to_vec());
            Ok(Generation {
                text: "It is good.".into(),
                n_tokens: 4,
                finish_reason: "stop".into(),
            })
        }
        fn perplexity(&self, _: &str, _: bool) -> Result<Perplexity> {
            Ok(Perplexity::from_logprobs(&[-1.0]))
        }
        fn perplexity_chat(&self, _: &[ChatMessage], _: bool) -> Result<Perplexity> {
            Ok(Perplexity::from_logprobs(&[-1.0]))
        }
    }

    fn scripted(
        kind: ScoreKind,
        scores: Vec<(&'static str, Option<f32>)>,
        floor: Option<f32>,
    ) -> Scripted {
        Scripted {
            kind,
            scores,
            floor,
            seen: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn best_verbaliser_per_label_then_softmax() {
        // SA prompt 1: positive = good/Good/positive, negative = bad/Bad/negative.
        let b = scripted(
            ScoreKind::LogProbs,
            vec![
                ("good", Some(-3.0)),
                ("Good", Some(-1.0)),
                ("positive", Some(-2.0)),
                ("bad", Some(-0.5)),
                ("Bad", Some(-4.0)),
                ("negative", Some(-6.0)),
            ],
            None,
        );
        let set = PromptSet::builtin("sa").unwrap();
        let d = label_distribution(
            &b,
            &set,
            1,
            &PromptInput::text("x"),
            &LabelSettings::default(),
        )
        .unwrap();
        assert_eq!(d.scores, [-0.5, -1.0]);
        let p_neg = 1.0 / (1.0 + (-0.5f64).exp());
        assert!((d.probs[0] - p_neg).abs() < 1e-12);
        assert_eq!(d.predicted, 0);
        assert_eq!(d.greedy, ["\n", "yes"]);
        assert_eq!(d.imputed, [false, false]);
    }

    #[test]
    fn clipping_at_zero_matches_the_reference_quirk() {
        // Raw logits: negative labels clip to 0, so two negative logits give a uniform distribution.
        let b = scripted(
            ScoreKind::Logits,
            vec![
                ("yes", Some(-2.0)),
                ("Yes", Some(-1.0)),
                ("no", Some(3.0)),
                ("No", Some(-5.0)),
            ],
            None,
        );
        let set = PromptSet::builtin("sa").unwrap();
        let clip = LabelSettings {
            clip_at_zero: true,
            ..LabelSettings::default()
        };
        let d = label_distribution(&b, &set, 0, &PromptInput::text("x"), &clip).unwrap();
        assert_eq!(d.scores, [3.0, 0.0]);
        assert!((d.probs[0] - 1.0 / (1.0 + (-3.0f64).exp())).abs() < 1e-12);
        let b = scripted(
            ScoreKind::Logits,
            vec![
                ("yes", Some(-2.0)),
                ("Yes", Some(-1.0)),
                ("no", Some(-3.0)),
                ("No", Some(-5.0)),
            ],
            None,
        );
        let d = label_distribution(&b, &set, 0, &PromptInput::text("x"), &clip).unwrap();
        assert_eq!(d.scores, [0.0, 0.0]);
        assert_eq!(d.probs, [0.5, 0.5]);
        // The prediction is the raw argmax (Yes −1 > no −3), as in the reference (F11a).
        assert_eq!(d.predicted, 1);
        // Without clipping the same logits are not uniform.
        let d = label_distribution(
            &b,
            &set,
            0,
            &PromptInput::text("x"),
            &LabelSettings::default(),
        )
        .unwrap();
        assert_eq!(d.scores, [-3.0, -1.0]);
        // Clipping log-probabilities is refused.
        let lp = scripted(ScoreKind::LogProbs, vec![], None);
        assert!(label_distribution(&lp, &set, 0, &PromptInput::text("x"), &clip).is_err());
    }

    #[test]
    fn a_label_missing_from_a_top_k_list_gets_the_floor() {
        let b = scripted(
            ScoreKind::LogProbs,
            vec![
                ("yes", Some(-0.1)),
                ("Yes", None),
                ("no", None),
                ("No", None),
            ],
            Some(-7.0),
        );
        let set = PromptSet::builtin("sa").unwrap();
        let d = label_distribution(
            &b,
            &set,
            0,
            &PromptInput::text("x"),
            &LabelSettings::default(),
        )
        .unwrap();
        assert_eq!(d.scores, [-7.0, f64::from(-0.1f32)]);
        assert_eq!(d.imputed, [true, false]);
    }

    #[test]
    fn chain_of_thought_runs_two_rounds() {
        let b = scripted(
            ScoreKind::LogProbs,
            vec![("yes", Some(-0.1)), ("no", Some(-1.0))],
            None,
        );
        let set = PromptSet::builtin("sa").unwrap();
        let d = label_distribution(
            &b,
            &set,
            10,
            &PromptInput::text("Nice."),
            &LabelSettings::default(),
        )
        .unwrap();
        assert_eq!(d.reasoning.as_deref(), Some("It is good."));
        let seen = b.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0][0].content.contains("Reason step by step"));
        let round2 = &seen[1];
        assert_eq!(
            round2.iter().map(|m| m.role).collect::<Vec<_>>(),
            [Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(round2[1].content, "It is good.");
        assert!(round2[2]
            .content
            .starts_with("According to the provided reasoning"));
    }

    #[test]
    fn softmax_is_stable() {
        let p = softmax(&[1000.0, 1000.0, f64::NEG_INFINITY]);
        assert_eq!(p, [0.5, 0.5, 0.0]);
        assert_eq!(softmax(&[f64::NEG_INFINITY; 2]), [0.5, 0.5]);
    }
}
