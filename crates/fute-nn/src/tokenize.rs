//! Tokenisation with the `tokenizers` crate, with our own truncation and padding.
//!
//! The truncation and padding stored inside a `tokenizer.json` are ignored (the
//! packaged all-MiniLM-L6-v2 file pads everything to 128 tokens); instead
//! [`TextTokenizer::encode`] truncates with an explicit [`Truncation`] rule and
//! [`TextTokenizer::encode_batch`] pads a batch to its longest member.
//!
//! Offsets are **character** offsets (Unicode scalar values, as Python's `str`
//! indexes), not the bytes the Rust crate reports by default: each segment is
//! encoded with `encode_char_offsets`, so "café" maps right.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

use crate::task::ModelInput;
use crate::{Error, Result};

/// One input: a single text or a pair (e.g. premise/hypothesis, question/context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextInput<'a> {
    /// One segment.
    Single(&'a str),
    /// Two segments, encoded as `[CLS] a [SEP] b [SEP]` for BERT.
    Pair(&'a str, &'a str),
}

/// How to shorten an input that exceeds the maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Shorten the longer segment first; when both must be cut they end up with
    /// equal budgets (the HF `longest_first` rule of the fast tokenizers).
    LongestFirst,
    /// Only cut the first segment (error when the second alone is too long).
    OnlyFirst,
    /// Only cut the second segment: extractive QA keeps the question whole and
    /// cuts the context (error when the first alone is too long).
    OnlySecond,
    /// Extractive QA as Hugging Face's `run_squad` does it: the question (first
    /// segment) is cut to `max_question` tokens (`max_query_length`) and, when
    /// the pair is still too long, to at most half the room, then the context is
    /// cut. A long question never aborts a run.
    Question {
        /// Most question tokens kept (HF's default is [`DEFAULT_MAX_QUESTION_LEN`]).
        max_question: usize,
    },
}

/// Hugging Face's default `max_query_length` for extractive QA: 64 tokens.
pub const DEFAULT_MAX_QUESTION_LEN: usize = 64;

/// One encoded input (not padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Vocabulary ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment of each token (0 or 1) as the model's token-type ids.
    pub type_ids: Vec<u32>,
    /// Which input segment each token came from; `None` for special tokens.
    pub sequence_ids: Vec<Option<usize>>,
    /// Character span `[start, end)` of each token in its own segment's text;
    /// `None` for special tokens.
    pub offsets: Vec<Option<(usize, usize)>>,
    /// Whether truncation removed tokens.
    pub truncated: bool,
}

impl Encoding {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The tokens (first and last, inclusive) covering characters
    /// `[char_start, char_end)` of segment `segment`, or `None` when the span is
    /// empty or lies (partly) in a truncated part.
    pub fn char_span_to_token_span(
        &self,
        segment: usize,
        char_start: usize,
        char_end: usize,
    ) -> Option<(usize, usize)> {
        if char_end <= char_start {
            return None;
        }
        let mut first = None;
        let mut last = None;
        let mut covered_end = 0;
        for (i, (seq, off)) in self.sequence_ids.iter().zip(&self.offsets).enumerate() {
            let (Some(seq), Some((s, e))) = (seq, off) else {
                continue;
            };
            if *seq != segment {
                continue;
            }
            covered_end = covered_end.max(*e);
            if *e > char_start && *s < char_end {
                first.get_or_insert(i);
                last = Some(i);
            }
        }
        if self.truncated && char_end > covered_end {
            return None;
        }
        Some((first?, last?))
    }

    /// The character span `[start, end)` covered by tokens `start_token..=end_token`,
    /// in the segment of those tokens; `None` when either is a special token, they
    /// are in different segments, or `end_token < start_token`.
    pub fn token_span_to_char_span(
        &self,
        start_token: usize,
        end_token: usize,
    ) -> Option<(usize, usize)> {
        if end_token < start_token || end_token >= self.len() {
            return None;
        }
        let seq = self.sequence_ids[start_token]?;
        if self.sequence_ids[end_token]? != seq {
            return None;
        }
        Some((self.offsets[start_token]?.0, self.offsets[end_token]?.1))
    }
}

/// A padded batch: every encoding plus the common length.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// The encodings, unpadded.
    pub encodings: Vec<Encoding>,
    /// Length of the longest encoding: the padded length.
    pub seq_len: usize,
    /// Id used for padding.
    pub pad_id: u32,
}

impl EncodedBatch {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.encodings.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.encodings.is_empty()
    }

    /// Row-major `[B, T]` ids, token types and attention mask, padded on the right.
    pub fn padded(&self) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let (b, t) = (self.len(), self.seq_len);
        let mut ids = vec![self.pad_id; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0u32; b * t];
        for (r, e) in self.encodings.iter().enumerate() {
            let row = r * t;
            ids[row..row + e.len()].copy_from_slice(&e.ids);
            types[row..row + e.len()].copy_from_slice(&e.type_ids);
            mask[row..row + e.len()].fill(1);
        }
        (ids, types, mask)
    }

    /// The batch as model input tensors on `device`.
    pub fn to_input(&self, device: &Device) -> Result<ModelInput> {
        let shape = (self.len(), self.seq_len);
        let (ids, types, mask) = self.padded();
        Ok(ModelInput {
            input_ids: Tensor::from_vec(ids, shape, device)?,
            token_type_ids: Some(Tensor::from_vec(types, shape, device)?),
            attention_mask: Tensor::from_vec(mask, shape, device)?,
        })
    }
}

/// A `tokenizer.json` tokenizer whose own padding/truncation are switched off.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                what: "tokenizer (tokenizer.json)",
            });
        }
        // Through fute-core's shared reader, so a UTF-8 byte-order mark is accepted.
        let text =
            fute_core::textfile::read_text(path).map_err(|e| Error::Tokenizer(e.to_string()))?;
        // The tokenizers crate panics on some malformed files (a `decoder` of the
        // wrong kind hits an `expect` in its deserialiser, found by fuzzing): a
        // bad file must be an error naming it, never a crash.
        let parsed = std::panic::catch_unwind(|| text.parse::<Tokenizer>()).map_err(|_| {
            Error::Tokenizer(format!(
                "{}: the tokenizers library could not read this file (it panicked); \
                 the file is malformed — use the tokenizer.json saved with the model",
                path.display()
            ))
        })?;
        let mut inner = parsed.map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self {
            inner,
            pad_id,
            path: path.to_path_buf(),
        })
    }

    /// Loads `tokenizer.json` from a model folder.
    pub fn from_folder(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The underlying `tokenizers` tokenizer (padding and truncation disabled).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    fn segment(&self, text: &str) -> Result<tokenizers::Encoding> {
        self.inner
            .encode_char_offsets(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Number of special tokens added around a single input or a pair.
    pub fn num_special_tokens(&self, pair: bool) -> usize {
        self.inner
            .get_post_processor()
            .map(|pp| pp.added_tokens(pair))
            .unwrap_or(0)
    }

    /// Encodes one input to at most `max_len` tokens (special tokens included).
    pub fn encode(
        &self,
        input: TextInput<'_>,
        max_len: usize,
        truncation: Truncation,
    ) -> Result<Encoding> {
        let pair = matches!(input, TextInput::Pair(..));
        let special = self.num_special_tokens(pair);
        // A pair needs a token of each text; a single text one.
        let least = special + if pair { 2 } else { 1 };
        if max_len < least {
            return Err(Error::BadInput(format!(
                "maximum length {max_len} (--max-len) leaves no room for {} after the {special} \
                 special tokens; use a maximum length of at least {least} (typically 128 or more)",
                if pair {
                    "both texts of a pair"
                } else {
                    "the text"
                }
            )));
        }
        let budget = max_len - special;
        let (mut a, mut b) = match input {
            TextInput::Single(t) => (self.segment(t)?, None),
            TextInput::Pair(t1, t2) => (self.segment(t1)?, Some(self.segment(t2)?)),
        };
        let mut cut_question = false;
        if let (Truncation::Question { max_question }, Some(_)) = (truncation, &b) {
            if a.len() > max_question.max(1) {
                a.truncate(max_question.max(1), 0, TruncationDirection::Right);
                cut_question = true;
            }
        }
        let na = a.len();
        let nb = b.as_ref().map_or(0, |e| e.len());
        let truncated = cut_question || na + nb > budget;
        if na + nb > budget {
            let (ka, kb) = match (&b, truncation) {
                (Some(_), Truncation::Question { .. }) => {
                    // The question keeps at most half the room (at least 1 token).
                    let ka = na.min((budget / 2).max(1));
                    (ka, (budget - ka).min(nb))
                }
                (None, Truncation::OnlySecond | Truncation::Question { .. }) => {
                    return Err(Error::BadInput(
                        "only-second truncation needs a text pair".into(),
                    ))
                }
                (None, _) => (budget, 0),
                (Some(_), Truncation::LongestFirst) => longest_first(na, nb, budget),
                (Some(_), Truncation::OnlySecond) => {
                    if na >= budget {
                        return Err(Error::BadInput(format!(
                            "the first text has {na} tokens, leaving no room for the second within {max_len}"
                        )));
                    }
                    (na, budget - na)
                }
                (Some(_), Truncation::OnlyFirst) => {
                    if nb >= budget {
                        return Err(Error::BadInput(format!(
                            "the second text has {nb} tokens, leaving no room for the first within {max_len}"
                        )));
                    }
                    (budget - nb, nb)
                }
            };
            a.truncate(ka, 0, TruncationDirection::Right);
            if let Some(b) = b.as_mut() {
                b.truncate(kb, 0, TruncationDirection::Right);
            }
        }
        let kept_a = a.len();
        let kept_b = b.as_ref().map_or(0, |e| e.len());
        let enc = self
            .inner
            .post_process(a, b, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        // Segment of each token: the post-processor inserts special tokens around the
        // segments in order (first text, then second), so count the non-special tokens.
        // (`Encoding::get_sequence_ids` is unreliable for separately encoded segments.)
        let mut seen = 0;
        let sequence_ids: Vec<Option<usize>> = enc
            .get_special_tokens_mask()
            .iter()
            .map(|&special| {
                if special == 1 {
                    return None;
                }
                seen += 1;
                Some(if seen <= kept_a { 0 } else { 1 })
            })
            .collect();
        if seen != kept_a + kept_b {
            return Err(Error::Tokenizer(format!(
                "post-processing kept {seen} of {} text tokens",
                kept_a + kept_b
            )));
        }
        let offsets = enc
            .get_offsets()
            .iter()
            .zip(&sequence_ids)
            .map(|(o, s)| s.map(|_| *o))
            .collect();
        Ok(Encoding {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            sequence_ids,
            offsets,
            truncated,
        })
    }

    /// Encodes a batch and pads it to its longest member (dynamic padding).
    pub fn encode_batch(
        &self,
        inputs: &[TextInput<'_>],
        max_len: usize,
        truncation: Truncation,
    ) -> Result<EncodedBatch> {
        let encodings = inputs
            .iter()
            .map(|i| self.encode(*i, max_len, truncation))
            .collect::<Result<Vec<_>>>()?;
        let seq_len = encodings.iter().map(Encoding::len).max().unwrap_or(0);
        Ok(EncodedBatch {
            encodings,
            seq_len,
            pad_id: self.pad_id,
        })
    }
}

/// Token budgets `(first, second)` under the longest-first rule: cut the longer
/// segment down to what the shorter leaves; if both exceed half the budget, split
/// it evenly (the second gets the odd token).
fn longest_first(na: usize, nb: usize, budget: usize) -> (usize, usize) {
    let short = na.min(nb);
    let (ks, kl) = if short <= budget / 2 {
        (short, budget - short)
    } else {
        (budget / 2, budget / 2 + budget % 2)
    };
    if na <= nb {
        (ks, kl)
    } else {
        (kl, ks)
    }
}

#[cfg(test)]
mod tests {
    use super::longest_first;

    #[test]
    fn longest_first_budgets() {
        assert_eq!(longest_first(3, 20, 10), (3, 7));
        assert_eq!(longest_first(20, 3, 10), (7, 3));
        assert_eq!(longest_first(8, 9, 10), (5, 5));
        assert_eq!(longest_first(8, 9, 11), (5, 6));
        assert_eq!(longest_first(9, 8, 11), (6, 5));
    }
}
