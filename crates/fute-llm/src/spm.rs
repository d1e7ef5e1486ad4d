//! The SentencePiece-style tokenizer of GGUF files with
//! `tokenizer.ggml.model = llama` (Gemma, Llama 2, Mistral): a vocabulary
//! with scores, spaces written `▁`, and byte fallback (`<0x41>`) for text no
//! piece covers.
//!
//! Encoding follows llama.cpp's (the peer fute is checked against):
//! 1. special pieces are cut out of the text first, longest first — control
//!    pieces only when control tokens are parsed, user-defined pieces (Gemma's
//!    `\n`, runs of spaces and tabs, HTML tags) always;
//! 2. in each remaining fragment spaces become `▁` (with a leading one when
//!    the file asks for a space prefix and the fragment follows a special
//!    piece or starts the text), and, starting from single characters, the
//!    adjacent pair whose joined text is the best-scoring vocabulary piece is
//!    merged until no pair is a piece (ties: the leftmost pair);
//! 3. a symbol that is not a piece becomes its UTF-8 bytes' `<0xXX>` tokens.

use crate::{Error, Result};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// GGUF token types (`tokenizer.ggml.token_type`).
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// A SentencePiece vocabulary as stored in GGUF metadata.
#[derive(Debug, Clone)]
pub(crate) struct SpmVocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
    index: HashMap<String, u32>,
    /// `<0xXX>` token of every byte, when the vocabulary has it.
    bytes: Vec<Option<u32>>,
    unknown: Option<u32>,
    /// Control, user-defined and unknown pieces, longest text first (the
    /// order llama.cpp cuts them out of the text).
    specials: Vec<u32>,
    add_space_prefix: bool,
}

/// Part of a text being tokenised: still text, or already one token.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// A candidate merge of two adjacent symbols.
#[derive(Debug, PartialEq)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the joined text (a stale entry no longer matches it).
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Higher score first; on a tie the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One symbol of the merge: a byte range of the fragment, linked to its
/// neighbours; `len == 0` once merged into its left neighbour.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl SpmVocab {
    /// Builds the vocabulary from the token, score and type tables.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the tables differ in length.
    pub(crate) fn new(
        tokens: Vec<String>,
        scores: Vec<f32>,
        types: Vec<i32>,
        unknown: Option<u32>,
        add_space_prefix: bool,
    ) -> Result<Self> {
        if scores.len() != tokens.len() {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.scores has {} entries for {} tokens in tokenizer.ggml.tokens",
                scores.len(),
                tokens.len()
            )));
        }
        // A later duplicate wins, as in llama.cpp's text-to-token map.
        let index: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bytes = (0..=255u8)
            .map(|b| index.get(&format!("<0x{b:02X}>")).copied())
            .collect();
        let mut specials: Vec<u32> = (0..tokens.len() as u32)
            .filter(|&i| {
                matches!(
                    types[i as usize],
                    TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN
                ) && !tokens[i as usize].is_empty()
            })
            .collect();
        specials.sort_by(|&a, &b| {
            tokens[b as usize]
                .len()
                .cmp(&tokens[a as usize].len())
                .then(a.cmp(&b))
        });
        Ok(SpmVocab {
            tokens,
            scores,
            types,
            index,
            bytes,
            unknown,
            specials,
            add_space_prefix,
        })
    }

    /// Token ids of `text`; with `parse_control` control pieces written in
    /// the text (`<start_of_turn>`) become their ids, else they are text.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when a byte has no `<0xXX>` token and the
    /// vocabulary no unknown token.
    pub(crate) fn encode(&self, text: &str, parse_control: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut after_special = true;
        for fragment in self.partition(text, parse_control) {
            match fragment {
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    let mut escaped = String::with_capacity(t.len() + 3);
                    if self.add_space_prefix && after_special {
                        escaped.push('▁');
                    }
                    escaped.push_str(&t.replace(' ', "▁"));
                    self.merge(&escaped, &mut ids)?;
                    after_special = false;
                }
            }
        }
        Ok(ids)
    }

    /// Cuts special pieces out of `text`, longest first, each at every
    /// non-overlapping occurrence from the left.
    fn partition<'a>(&self, text: &'a str, parse_control: bool) -> Vec<Fragment<'a>> {
        let mut fragments = vec![Fragment::Text(text)];
        for &id in &self.specials {
            if !parse_control && self.types[id as usize] != TYPE_USER_DEFINED {
                continue;
            }
            let piece = self.tokens[id as usize].as_str();
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(piece)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    next.push(fragment);
                    continue;
                };
                while let Some(at) = rest.find(piece) {
                    if at > 0 {
                        next.push(Fragment::Text(&rest[..at]));
                    }
                    next.push(Fragment::Token(id));
                    rest = &rest[at + piece.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The best-score pair merging of one escaped fragment, then byte
    /// fallback for symbols that are not pieces.
    fn merge(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        if symbols.is_empty() {
            return Ok(());
        }
        let mut queue = BinaryHeap::new();
        let try_pair = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: usize, r: usize| {
            let (a, b) = (symbols[l], symbols[r]);
            let joined = &text[a.start..b.start + b.len];
            if let Some(&id) = self.index.get(joined) {
                queue.push(Bigram {
                    left: l,
                    right: r,
                    score: self.scores[id as usize],
                    len: joined.len(),
                });
            }
        };
        for i in 1..symbols.len() {
            try_pair(&mut queue, &symbols, i - 1, i);
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            // Stale: one side was merged elsewhere since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
                continue;
            }
            symbols[bigram.left].len += r.len;
            symbols[bigram.left].next = r.next;
            symbols[bigram.right].len = 0;
            if let Some(n) = r.next {
                symbols[n].prev = Some(bigram.left);
            }
            if let Some(p) = l.prev {
                try_pair(&mut queue, &symbols, p, bigram.left);
            }
            if let Some(n) = r.next {
                try_pair(&mut queue, &symbols, bigram.left, n);
            }
        }
        let mut at = Some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.index.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        out.push(self.bytes[b as usize].or(self.unknown).ok_or_else(|| {
                            Error::Tokenizer(format!(
                                "byte 0x{b:02X} has no <0x{b:02X}> token and the vocabulary no unknown token"
                            ))
                        })?);
                    }
                }
            }
            at = s.next;
        }
        Ok(())
    }

    /// The bytes `id` stands for: `▁` as a space, a byte token as its byte,
    /// control tokens as their text.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] for an id outside the vocabulary.
    pub(crate) fn piece_bytes(&self, id: u32, out: &mut Vec<u8>) -> Result<()> {
        let text = self.tokens.get(id as usize).ok_or_else(|| {
            Error::Tokenizer(format!(
                "token id {id} outside the vocabulary ({})",
                self.tokens.len()
            ))
        })?;
        if self.types[id as usize] == TYPE_BYTE {
            let hex = text
                .strip_prefix("<0x")
                .and_then(|t| t.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                return Ok(());
            }
        }
        out.extend_from_slice(text.replace('▁', " ").as_bytes());
        Ok(())
    }

    /// The text of `ids` (invalid UTF-8 from partial byte tokens replaced).
    ///
    /// # Errors
    /// As [`SpmVocab::piece_bytes`].
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            self.piece_bytes(id, &mut bytes)?;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: control `<c>`, user-defined `\n`, bytes for `é`'s
    /// two bytes only, and pieces whose scores decide the merge order.
    fn vocab() -> SpmVocab {
        let table: &[(&str, f32, i32)] = &[
            ("<unk>", 0.0, TYPE_CONTROL),
            ("<c>", 0.0, TYPE_CONTROL),
            ("\n", 0.0, TYPE_USER_DEFINED),
            ("<0xC3>", 0.0, TYPE_BYTE),
            ("<0xA9>", 0.0, TYPE_BYTE),
            ("▁", -1.0, 1),
            ("a", -1.0, 1),
            ("b", -1.0, 1),
            ("c", -1.0, 1),
            ("ab", -5.0, 1),
            ("bc", -2.0, 1),
            ("abc", -3.0, 1),
            ("▁a", -4.0, 1),
            ("<", -1.0, 1),
            (">", -1.0, 1),
        ];
        SpmVocab::new(
            table.iter().map(|t| t.0.to_string()).collect(),
            table.iter().map(|t| t.1).collect(),
            table.iter().map(|t| t.2).collect(),
            Some(0),
            false,
        )
        .unwrap()
    }

    #[test]
    fn the_best_scoring_pair_merges_first() {
        let v = vocab();
        // "bc" (-2) beats "ab" (-5): a + bc, then "abc" (-3) is a piece.
        assert_eq!(v.encode("abc", false).unwrap(), [11]);
        // "ab" alone merges.
        assert_eq!(v.encode("ab", false).unwrap(), [9]);
        // Spaces are ▁: " a" → "▁a".
        assert_eq!(v.encode(" ab", false).unwrap(), [12, 7]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes_or_unk() {
        let v = vocab();
        assert_eq!(v.encode("é", false).unwrap(), [3, 4]);
        assert_eq!(v.decode(&[3, 4]).unwrap(), "é");
        // No byte token for 'z' (0x7A): the unknown token.
        assert_eq!(v.encode("z", false).unwrap(), [0]);
    }

    #[test]
    fn user_defined_pieces_are_always_cut_control_pieces_only_when_asked() {
        let v = vocab();
        assert_eq!(v.encode("a\nb", false).unwrap(), [6, 2, 7]);
        assert_eq!(v.encode("a<c>", true).unwrap(), [6, 1]);
        assert_eq!(v.encode("a<c>", false).unwrap(), [6, 13, 8, 14]);
        assert_eq!(v.decode(&[12, 2, 1]).unwrap(), " a\n<c>");
    }
}
