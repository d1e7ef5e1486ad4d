//! Token surface forms across tokenisers, in one place for every backend.
//!
//! A verbaliser ("yes") and the token a model emits for it rarely have the
//! same text: servers report a word-initial token with its leading space
//! (`" yes"`, llama.cpp, OpenAI), SentencePiece vocabularies mark it with
//! `▁` (U+2581, Llama, Mistral), GPT-2 byte-level vocabularies with `Ġ`
//! (U+0120) when a server returns raw vocabulary entries, and some models
//! answer in another case. [`normalize`] strips the word-start markers;
//! [`match_candidate`] finds a verbaliser's score in a list of returned tokens
//! by the normalised form, exact case first and case-insensitive only when no
//! exact match exists.

/// Word-start markers that tokenisers put in front of a token's text.
const WORD_START: [char; 3] = [' ', '\u{2581}', '\u{0120}'];

/// `token` without its word-start marker (one leading space, `▁` or `Ġ`);
/// nothing else changes, so `"\n"` stays `"\n"` and `"yes"` stays `"yes"`.
pub fn normalize(token: &str) -> &str {
    let mut chars = token.chars();
    match chars.next() {
        Some(c) if WORD_START.contains(&c) && !chars.as_str().is_empty() => chars.as_str(),
        _ => token,
    }
}

/// How a candidate was found among the returned tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// Same text after [`normalize`].
    Exact,
    /// Same text after [`normalize`] and lower-casing (no exact match was listed).
    CaseFolded,
}

/// The best-scoring entry of `top` that stands for `candidate`.
///
/// With `first_token` (the candidate's first token, when the tokenizer is
/// known) an entry matches when its normalised text equals the normalised
/// first token. Without it, an entry matches when its normalised text is a
/// non-empty prefix of the normalised candidate, and the longest such entry
/// wins (a verbaliser's first token is a prefix of it). In both cases an
/// exact-case match is preferred; a case-insensitive one is used only when no
/// exact one is listed. Among entries of the same normalised text (`"yes"` and
/// `" yes"`), the highest score is taken.
///
/// Returns the matched entry's text, its score and how it matched.
pub fn match_candidate<'a>(
    candidate: &str,
    first_token: Option<&str>,
    top: &'a [(String, f32)],
) -> Option<(&'a str, f32, MatchKind)> {
    let want = normalize(first_token.unwrap_or(candidate));
    let by_exact = best(top, |t| match first_token {
        Some(_) => (t == want).then_some(t.len()),
        None => (!t.is_empty() && want.starts_with(t)).then_some(t.len()),
    });
    if let Some((text, score)) = by_exact {
        return Some((text, score, MatchKind::Exact));
    }
    let want_lower = want.to_lowercase();
    best(top, |t| {
        let t = t.to_lowercase();
        match first_token {
            Some(_) => (t == want_lower).then_some(t.len()),
            None => (!t.is_empty() && want_lower.starts_with(&t)).then_some(t.len()),
        }
    })
    .map(|(text, score)| (text, score, MatchKind::CaseFolded))
}

/// The entry with the longest match (as `matches` measures it on the
/// normalised text), ties broken by the highest score, then by text.
fn best<'a>(
    top: &'a [(String, f32)],
    matches: impl Fn(&str) -> Option<usize>,
) -> Option<(&'a str, f32)> {
    let mut found: Option<(usize, &'a str, f32)> = None;
    for (text, score) in top {
        let Some(len) = matches(normalize(text)) else {
            continue;
        };
        let better = match found {
            None => true,
            Some((l, t, s)) => {
                len > l || (len == l && (*score > s || (*score == s && text.as_str() < t)))
            }
        };
        if better {
            found = Some((len, text, *score));
        }
    }
    found.map(|(_, t, s)| (t, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(entries: &[(&str, f32)]) -> Vec<(String, f32)> {
        entries.iter().map(|(t, s)| (t.to_string(), *s)).collect()
    }

    #[test]
    fn word_start_markers_of_real_tokenisers_are_stripped() {
        assert_eq!(normalize(" Yes"), "Yes");
        assert_eq!(normalize("\u{2581}yes"), "yes");
        assert_eq!(normalize("\u{0120}yes"), "yes");
        assert_eq!(normalize("yes"), "yes");
        // Only one marker, and a lone marker is a token of its own.
        assert_eq!(normalize("  no"), " no");
        assert_eq!(normalize(" "), " ");
        assert_eq!(normalize("\n"), "\n");
    }

    #[test]
    fn each_surface_form_matches_without_a_tokenizer() {
        for form in [" Yes", "\u{2581}Yes", "\u{0120}Yes", "Yes"] {
            let list = top(&[(form, -0.5), (" No", -2.0)]);
            let m = match_candidate("Yes", None, &list).unwrap();
            assert_eq!(m, (form, -0.5, MatchKind::Exact), "{form:?}");
        }
        // A longer verbaliser matches its first listed piece, the longest one.
        let list = top(&[(" pos", -1.0), (" positive", -0.7), (" p", -0.2)]);
        assert_eq!(
            match_candidate("positive", None, &list),
            Some((" positive", -0.7, MatchKind::Exact))
        );
    }

    #[test]
    fn with_a_known_first_token_only_that_token_matches() {
        let list = top(&[(" yes", -0.3), (" y", -0.1)]);
        assert_eq!(
            match_candidate("yes", Some("yes"), &list),
            Some((" yes", -0.3, MatchKind::Exact))
        );
        assert_eq!(match_candidate("yes", Some("ye"), &list), None);
    }

    #[test]
    fn case_is_folded_only_when_no_exact_form_is_listed() {
        let list = top(&[(" yes", -0.3), (" YES", -0.1)]);
        assert_eq!(
            match_candidate("yes", None, &list),
            Some((" yes", -0.3, MatchKind::Exact))
        );
        let list = top(&[(" YES", -0.1), ("\u{2581}Yes", -0.4)]);
        assert_eq!(
            match_candidate("yes", None, &list),
            Some((" YES", -0.1, MatchKind::CaseFolded))
        );
        assert_eq!(match_candidate("maybe", None, &list), None);
    }

    #[test]
    fn two_forms_of_one_token_give_the_higher_score() {
        let list = top(&[("yes", -2.0), (" yes", -0.4)]);
        assert_eq!(
            match_candidate("yes", None, &list),
            Some((" yes", -0.4, MatchKind::Exact))
        );
    }
}
