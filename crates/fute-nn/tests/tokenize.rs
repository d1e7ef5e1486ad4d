//! Tokenisation: our truncation and padding, character offsets on non-ASCII text,
//! answer spans between characters and tokens.

mod common;

use common::fixture;
use fute_nn::{TextInput, TextTokenizer, Truncation};

fn tiny() -> TextTokenizer {
    TextTokenizer::from_folder(fixture("tiny-bert")).unwrap()
}

#[test]
fn offsets_are_characters_not_bytes() {
    let tok = tiny();
    let text = "café naïve résumé";
    let e = tok
        .encode(TextInput::Single(text), 32, Truncation::LongestFirst)
        .unwrap();
    // [CLS] cafe naive resume [SEP]: accents are stripped by the normaliser, but offsets
    // point into the original text, counted in characters (bytes would give 0..5, 6..12, ...).
    assert_eq!(e.len(), 5);
    assert_eq!(
        e.offsets,
        vec![None, Some((0, 4)), Some((5, 10)), Some((11, 17)), None]
    );
    assert_eq!(e.sequence_ids, vec![None, Some(0), Some(0), Some(0), None]);
    let chars: Vec<char> = text.chars().collect();
    let (s, t) = e.token_span_to_char_span(2, 2).unwrap();
    assert_eq!(chars[s..t].iter().collect::<String>(), "naïve");
    assert_eq!(e.char_span_to_token_span(0, 5, 10), Some((2, 2)));
    assert_eq!(e.char_span_to_token_span(0, 5, 17), Some((2, 3)));
    // A span starting inside a token maps to that token.
    assert_eq!(e.char_span_to_token_span(0, 7, 8), Some((2, 2)));
    assert_eq!(e.token_span_to_char_span(0, 1), None, "special token");
}

#[test]
fn pairs_get_segments_and_per_segment_offsets() {
    let tok = tiny();
    let q = "who plays?";
    let c = "the man plays guitar in paris.";
    let e = tok
        .encode(TextInput::Pair(q, c), 64, Truncation::OnlySecond)
        .unwrap();
    let sep = e.ids.iter().position(|&i| i == 3).unwrap();
    assert!(e.type_ids[..=sep].iter().all(|&t| t == 0));
    assert!(e.type_ids[sep + 1..].iter().all(|&t| t == 1));
    let answer = "guitar";
    let start = c.find(answer).unwrap();
    let (ts, te) = e
        .char_span_to_token_span(1, start, start + answer.len())
        .unwrap();
    assert_eq!(
        e.token_span_to_char_span(ts, te),
        Some((start, start + answer.len()))
    );
    assert_eq!(e.sequence_ids[ts], Some(1));
    // The same characters in the question's segment are a different question.
    assert_eq!(e.char_span_to_token_span(0, 0, 3), Some((1, 1)));
}

#[test]
fn only_second_truncation_keeps_the_question() {
    let tok = tiny();
    let q = "where is the market?";
    let c = "the stock market fell sharply today, said the happy woman in paris.";
    let full = tok
        .encode(TextInput::Pair(q, c), 128, Truncation::OnlySecond)
        .unwrap();
    assert!(!full.truncated);
    let e = tok
        .encode(TextInput::Pair(q, c), 12, Truncation::OnlySecond)
        .unwrap();
    assert!(e.truncated);
    assert_eq!(e.len(), 12);
    let q_tokens = |x: &fute_nn::Encoding| x.sequence_ids.iter().filter(|s| **s == Some(0)).count();
    assert_eq!(q_tokens(&e), q_tokens(&full), "question must be whole");
    // An answer inside the kept context maps; one in the cut part does not.
    let start = c.find("market").unwrap();
    assert!(e.char_span_to_token_span(1, start, start + 6).is_some());
    let start = c.find("paris").unwrap();
    assert_eq!(e.char_span_to_token_span(1, start, start + 5), None);
    // A question that fills the budget is an error, not a silent cut.
    assert!(tok
        .encode(TextInput::Pair(q, c), 7, Truncation::OnlySecond)
        .is_err());
}

#[test]
fn longest_first_and_dynamic_padding() {
    let tok = tiny();
    let long = "the man is playing guitar in paris with a big red dog today";
    let e = tok
        .encode(TextInput::Single(long), 6, Truncation::LongestFirst)
        .unwrap();
    assert_eq!(e.len(), 6);
    assert_eq!(e.ids[0], 2);
    assert_eq!(*e.ids.last().unwrap(), 3, "[SEP] survives truncation");
    let e = tok
        .encode(TextInput::Pair(long, "a dog"), 10, Truncation::LongestFirst)
        .unwrap();
    assert_eq!(e.len(), 10);
    assert_eq!(
        e.sequence_ids.iter().filter(|s| **s == Some(1)).count(),
        2,
        "short segment whole"
    );

    let batch = tok
        .encode_batch(
            &[
                TextInput::Single("a dog"),
                TextInput::Single(long),
                TextInput::Pair("who", "a cat"),
            ],
            128,
            Truncation::LongestFirst,
        )
        .unwrap();
    let longest = batch.encodings.iter().map(|e| e.len()).max().unwrap();
    assert_eq!(
        batch.seq_len, longest,
        "padded to the longest example, not a fixed length"
    );
    let (ids, types, mask) = batch.padded();
    assert_eq!(ids.len(), 3 * longest);
    assert_eq!(mask[..longest].iter().sum::<u32>(), 4);
    assert_eq!(ids[4..longest].to_vec(), vec![0; longest - 4]);
    assert!(types[2 * longest..].contains(&1));
    let input = batch.to_input(&candle_core::Device::Cpu).unwrap();
    assert_eq!(input.input_ids.dims(), &[3, longest]);
}
