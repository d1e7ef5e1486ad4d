//! Prompts as data: a [`PromptSet`] holds templates with `{{text}}` /
//! `{{premise}}` / `{{hypothesis}}` slots, verbalisers per label, and the
//! instruction texts of vanilla and chain-of-thought prompting.
//!
//! Sets are TOML or JSON files of this shape (see `src/prompts/sa.toml`):
//!
//! ```toml
//! name = "sa"
//! task = "sentiment"
//! labels = ["negative", "positive"]
//! instruction = "Write your answer ({label_space}) in lower case without any explanation."
//! cot_instruction = "Reason step by step ... the answer is [{label_space}]"
//! cot_followup = "According to the provided reasoning, write your answer ({label_space}) ..."
//! # system = "You are a helpful assistant."   (optional)
//!
//! [[prompts]]
//! mode = "vanilla"          # or "cot"
//! template = "Is the movie review below positive? \n\n{{text}}"
//! verbalizers = [
//!   { label = "positive", words = ["yes", "Yes"] },
//!   { label = "negative", words = ["no", "No"] },
//! ]
//! ```

use crate::chat::ChatMessage;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Vanilla (one round) or chain-of-thought (reason, then answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptMode {
    /// Template + answer instruction; the answer is scored at once.
    Vanilla,
    /// Round 1: template + "reason step by step"; round 2: a follow-up turn
    /// asks for the answer, which is scored.
    Cot,
}

/// The words that stand for one label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verbalizer {
    /// The label (one of [`PromptSet::labels`]).
    pub label: String,
    /// Its words; a label's score is the best first-token score among them.
    pub words: Vec<String>,
}

/// One prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSpec {
    /// Vanilla or chain-of-thought.
    pub mode: PromptMode,
    /// Text with `{{slot}}` placeholders.
    pub template: String,
    /// Verbalisers, in the order they are listed in `{label_space}`.
    pub verbalizers: Vec<Verbalizer>,
}

/// The input a prompt is filled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    /// One text (`{{text}}`).
    Text {
        /// The text.
        text: String,
    },
    /// A premise/hypothesis pair (`{{premise}}`, `{{hypothesis}}`).
    Pair {
        /// First segment.
        premise: String,
        /// Second segment.
        hypothesis: String,
    },
}

impl PromptInput {
    /// A single text.
    pub fn text(text: impl Into<String>) -> Self {
        PromptInput::Text { text: text.into() }
    }

    /// A premise/hypothesis pair.
    pub fn pair(premise: impl Into<String>, hypothesis: impl Into<String>) -> Self {
        PromptInput::Pair {
            premise: premise.into(),
            hypothesis: hypothesis.into(),
        }
    }

    /// From a corpus row of 1 or 2 segments.
    ///
    /// # Errors
    /// [`Error::Invalid`] for 0 or more than 2 segments.
    pub fn from_segments(segments: &[String]) -> Result<Self> {
        match segments {
            [text] => Ok(Self::text(text.clone())),
            [a, b] => Ok(Self::pair(a.clone(), b.clone())),
            _ => Err(Error::Invalid(format!(
                "an input has 1 or 2 segments, not {}",
                segments.len()
            ))),
        }
    }

    fn slot(&self, name: &str) -> Option<&str> {
        match (self, name) {
            (PromptInput::Text { text }, "text") => Some(text),
            (PromptInput::Pair { premise, .. }, "premise") => Some(premise),
            (PromptInput::Pair { hypothesis, .. }, "hypothesis") => Some(hypothesis),
            _ => None,
        }
    }
}

/// A set of prompts for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSet {
    /// Short name (`sa`, `nli`).
    pub name: String,
    /// Task category (free text, e.g. `sentiment`, `nli`).
    #[serde(default)]
    pub task: String,
    /// The labels, in the order of every label distribution.
    pub labels: Vec<String>,
    /// Optional system message (none: the model's chat template decides).
    #[serde(default)]
    pub system: Option<String>,
    /// Appended after a vanilla prompt (on a new line); `{label_space}` is
    /// replaced by the comma-joined verbalisers.
    pub instruction: String,
    /// Appended after a chain-of-thought prompt in round 1.
    pub cot_instruction: String,
    /// The round-2 user turn of a chain-of-thought prompt.
    pub cot_followup: String,
    /// The prompts (indices are what users select).
    pub prompts: Vec<PromptSpec>,
}

const SA_TOML: &str = include_str!("prompts/sa.toml");
const NLI_TOML: &str = include_str!("prompts/nli.toml");

impl PromptSet {
    /// Names of the built-in sets.
    pub const BUILTIN: [&'static str; 2] = ["sa", "nli"];

    /// A built-in set: `sa` (sentiment, labels negative/positive) or `nli`
    /// (entailment/neutral/contradiction), 10 vanilla + 3 CoT prompts each.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another name.
    pub fn builtin(name: &str) -> Result<Self> {
        let text = match name {
            "sa" | "sentiment" => SA_TOML,
            "nli" => NLI_TOML,
            other => {
                return Err(Error::Invalid(format!(
                    "no built-in prompt set `{other}` (built-in: sa, nli)"
                )))
            }
        };
        Self::from_toml_str(text)
    }

    /// Parses and validates a TOML prompt set.
    ///
    /// # Errors
    /// [`Error::Invalid`] on a syntax error or an inconsistent set.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let set: PromptSet =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("prompt set: {e}")))?;
        set.validate()?;
        Ok(set)
    }

    /// Parses and validates a JSON prompt set (same fields as TOML).
    ///
    /// # Errors
    /// [`Error::Invalid`] on a syntax error or an inconsistent set.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let set: PromptSet =
            serde_json::from_str(text).map_err(|e| Error::Invalid(format!("prompt set: {e}")))?;
        set.validate()?;
        Ok(set)
    }

    /// Loads a `.toml` or `.json` file, or a built-in set by name.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Invalid`] when it
    /// does not parse or validate.
    pub fn load(spec: &str) -> Result<Self> {
        if Self::BUILTIN.contains(&spec) || spec == "sentiment" {
            return Self::builtin(spec);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(Error::Invalid(format!(
                "no prompt set `{spec}`: not a built-in set (sa, nli) and no such file; a set of your own is a .toml or .json file"
            )));
        }
        // The shared reader: a leading UTF-8 byte-order mark is dropped, other encodings named.
        let text = fute_core::textfile::read_text(path).map_err(|e| match e {
            fute_core::Error::Io { source, .. } => Error::io(path, source),
            other => Error::Invalid(other.to_string()),
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::from_json_str(&text),
            _ => Self::from_toml_str(&text),
        }
    }

    /// Checks labels, verbalisers and slots.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(format!("prompt set `{}`: {msg}", self.name)));
        if self.labels.len() < 2 {
            return bad("needs at least two labels".into());
        }
        if self.prompts.is_empty() {
            return bad("has no prompts".into());
        }
        for (i, p) in self.prompts.iter().enumerate() {
            for label in &self.labels {
                match p.verbalizers.iter().find(|v| &v.label == label) {
                    Some(v) if !v.words.is_empty() && v.words.iter().all(|w| !w.is_empty()) => {}
                    _ => return bad(format!("prompt {i} has no verbaliser words for `{label}`")),
                }
            }
            if let Some(v) = p
                .verbalizers
                .iter()
                .find(|v| !self.labels.contains(&v.label))
            {
                return bad(format!("prompt {i}: unknown label `{}`", v.label));
            }
            let slots = template_slots(&p.template);
            if slots.is_empty() {
                return bad(format!("prompt {i}: the template has no {{{{slot}}}}"));
            }
            if let Some(s) = slots
                .iter()
                .find(|s| !["text", "premise", "hypothesis"].contains(&s.as_str()))
            {
                return bad(format!(
                    "prompt {i}: unknown slot {{{{{s}}}}} (text, premise, hypothesis)"
                ));
            }
        }
        Ok(())
    }

    /// Prompt `index`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when out of range.
    pub fn prompt(&self, index: usize) -> Result<&PromptSpec> {
        self.prompts.get(index).ok_or_else(|| {
            Error::Invalid(format!(
                "prompt set `{}` has prompts 0..{}, not {index}",
                self.name,
                self.prompts.len()
            ))
        })
    }

    /// The words of `label` in prompt `index`.
    pub fn words(&self, index: usize, label: &str) -> Result<&[String]> {
        self.prompt(index)?
            .verbalizers
            .iter()
            .find(|v| v.label == label)
            .map(|v| v.words.as_slice())
            .ok_or_else(|| Error::Invalid(format!("no verbaliser for `{label}`")))
    }

    /// The round-1 user message of prompt `index` for `input`: the filled
    /// template, a new line, then the vanilla or CoT instruction.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the input lacks a slot the template uses.
    pub fn user_message(&self, index: usize, input: &PromptInput) -> Result<String> {
        let p = self.prompt(index)?;
        let filled = fill(&p.template, input)?;
        let instruction = match p.mode {
            PromptMode::Vanilla => &self.instruction,
            PromptMode::Cot => &self.cot_instruction,
        };
        Ok(format!(
            "{filled}\n{}",
            instruction.replace("{label_space}", &p.label_space())
        ))
    }

    /// The round-1 chat of prompt `index` for `input` (system message first
    /// when the set has one).
    ///
    /// # Errors
    /// As [`PromptSet::user_message`].
    pub fn messages(&self, index: usize, input: &PromptInput) -> Result<Vec<ChatMessage>> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(self.user_message(index, input)?));
        Ok(messages)
    }

    /// The round-2 chat of a chain-of-thought prompt: round 1, the model's
    /// reasoning as the assistant turn, then the follow-up question.
    ///
    /// # Errors
    /// As [`PromptSet::user_message`].
    pub fn cot_round2(
        &self,
        index: usize,
        input: &PromptInput,
        reasoning: &str,
    ) -> Result<Vec<ChatMessage>> {
        let p = self.prompt(index)?;
        let mut messages = self.messages(index, input)?;
        messages.push(ChatMessage::assistant(reasoning.trim().to_string()));
        messages.push(ChatMessage::user(
            self.cot_followup.replace("{label_space}", &p.label_space()),
        ));
        Ok(messages)
    }
}

impl PromptSpec {
    /// Every verbaliser word, comma-joined, in listing order (`yes, Yes, no, No`).
    pub fn label_space(&self) -> String {
        self.verbalizers
            .iter()
            .flat_map(|v| v.words.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn template_slots(template: &str) -> Vec<String> {
    let mut slots = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                slots.push(after[..end].trim().to_string());
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    slots
}

/// Fills `{{slot}}` placeholders from `input`.
///
/// # Errors
/// [`Error::Invalid`] when the input lacks a slot the template uses.
pub fn fill(template: &str, input: &PromptInput) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        let value = input.slot(name).ok_or_else(|| {
            Error::Invalid(format!(
                "the template uses {{{{{name}}}}} but the input has no such segment"
            ))
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_have_10_vanilla_and_3_cot() {
        for name in PromptSet::BUILTIN {
            let set = PromptSet::builtin(name).unwrap();
            assert_eq!(set.prompts.len(), 13, "{name}");
            for (i, p) in set.prompts.iter().enumerate() {
                let want = if i < 10 {
                    PromptMode::Vanilla
                } else {
                    PromptMode::Cot
                };
                assert_eq!(p.mode, want, "{name} {i}");
            }
            for i in 0..3 {
                assert_eq!(set.prompts[10 + i].template, set.prompts[i].template);
                assert_eq!(set.prompts[10 + i].verbalizers, set.prompts[i].verbalizers);
            }
        }
        let sa = PromptSet::builtin("sa").unwrap();
        assert_eq!(sa.labels, ["negative", "positive"]);
        assert_eq!(sa.prompts[5].template, sa.prompts[9].template);
        assert_eq!(
            sa.prompts[2].template,
            format!("{} ", sa.prompts[8].template)
        );
        let nli = PromptSet::builtin("nli").unwrap();
        assert_eq!(nli.labels, ["entailment", "neutral", "contradiction"]);
        assert_eq!(nli.words(8, "contradiction").unwrap(), ["never", "Never"]);
    }

    #[test]
    fn renders_vanilla_and_cot_messages() {
        let sa = PromptSet::builtin("sa").unwrap();
        let input = PromptInput::text("Great film.");
        assert_eq!(
            sa.user_message(4, &input).unwrap(),
            "Is the movie review below positive? \n\nGreat film.\nWrite your answer (yes, Yes, no, No) in lower case without any explanation."
        );
        let cot = sa.user_message(10, &input).unwrap();
        assert!(cot.ends_with("the answer is [yes, Yes, no, No]"), "{cot}");
        let round2 = sa.cot_round2(10, &input, " It was great. ").unwrap();
        assert_eq!(round2.len(), 3);
        assert_eq!(round2[1].content, "It was great.");
        assert!(round2[2].content.starts_with(
            "According to the provided reasoning, write your answer (yes, Yes, no, No)"
        ));
        let nli = PromptSet::builtin("nli").unwrap();
        let pair = PromptInput::pair("A man sleeps.", "A person rests.");
        assert!(nli
            .user_message(2, &pair)
            .unwrap()
            .starts_with("A man sleeps.\nQuestion: A person rests. true, false, or maybe?\n"));
        assert!(
            nli.user_message(0, &input).is_err(),
            "a text has no premise"
        );
    }

    #[test]
    fn loads_user_sets_from_toml_and_json_and_rejects_bad_ones() {
        let toml_text = r#"
name = "mine"
labels = ["no", "yes"]
instruction = "Answer ({label_space})."
cot_instruction = "Think. ({label_space})"
cot_followup = "So? ({label_space})"
system = "Be brief."
[[prompts]]
mode = "vanilla"
template = "Q: {{ text }}"
verbalizers = [{ label = "yes", words = ["Y"] }, { label = "no", words = ["N"] }]
"#;
        let set = PromptSet::from_toml_str(toml_text).unwrap();
        let msgs = set.messages(0, &PromptInput::text("x")).unwrap();
        assert_eq!(msgs[0], ChatMessage::system("Be brief."));
        assert_eq!(msgs[1].content, "Q: x\nAnswer (Y, N).");
        let json_text = serde_json::to_string(&set).unwrap();
        assert_eq!(PromptSet::from_json_str(&json_text).unwrap(), set);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.json");
        std::fs::write(&path, &json_text).unwrap();
        assert_eq!(PromptSet::load(path.to_str().unwrap()).unwrap(), set);
        let missing = toml_text.replace(r#", { label = "no", words = ["N"] }"#, "");
        let err = PromptSet::from_toml_str(&missing).unwrap_err().to_string();
        assert!(err.contains("no verbaliser words for `no`"), "{err}");
        let slot = toml_text.replace("{{ text }}", "{{ body }}");
        assert!(PromptSet::from_toml_str(&slot)
            .unwrap_err()
            .to_string()
            .contains("unknown slot"));
        assert!(PromptSet::builtin("qa").is_err());
    }
}
