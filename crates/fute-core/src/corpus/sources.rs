//! Readers of the unlabelled text sources, each yielding texts in a fixed order.

use crate::import::read_text_lenient;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// An unlabelled text source fute knows how to read.
#[derive(Debug, Clone, Copy)]
pub struct TextSource {
    /// Name used on the command line.
    pub name: &'static str,
    /// The asset holding it.
    pub asset: &'static str,
    /// One line for humans.
    pub description: &'static str,
    read: fn(&Path) -> Result<Vec<String>>,
}

/// Every unlabelled source.
pub const TEXT_SOURCES: &[TextSource] = &[
    TextSource {
        name: "wordnet-examples",
        asset: "wordnet",
        description: "WordNet 3.0 example sentences (quoted usage examples)",
        read: wordnet_examples,
    },
    TextSource {
        name: "wordnet-glosses",
        asset: "wordnet",
        description: "WordNet 3.0 glosses (definitions)",
        read: wordnet_glosses,
    },
    TextSource {
        name: "fortunes",
        asset: "fortunes",
        description: "fortune-mod quotes and jokes (Debian `fortunes`)",
        read: fortunes,
    },
    TextSource {
        name: "moby-dick",
        asset: "stdlib-text",
        description: "sentences of Moby-Dick (H. Melville)",
        read: moby_dick,
    },
    TextSource {
        name: "sotu",
        asset: "stdlib-text",
        description: "sentences of US State of the Union addresses 1790-2016",
        read: sotu,
    },
];

/// Texts shorter or longer than this (in characters) are skipped: fragments and walls of text.
pub const MIN_CHARS: usize = 20;
/// See [`MIN_CHARS`].
pub const MAX_CHARS: usize = 600;

impl TextSource {
    /// The source called `name`.
    pub fn find(name: &str) -> Result<&'static TextSource> {
        TEXT_SOURCES.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<_> = TEXT_SOURCES.iter().map(|s| s.name).collect();
            Error::Invalid(format!(
                "unknown text source `{name}`; sources are: {}",
                names.join(", ")
            ))
        })
    }

    /// Reads every usable text of this source from the asset cache at `assets_root`.
    pub fn read(&self, assets_root: &Path) -> Result<Vec<String>> {
        let dir = assets_root.join(self.asset);
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "text source `{}` needs asset `{}`, which is not fetched; run `fute assets fetch {}`",
                self.name, self.asset, self.asset
            )));
        }
        Ok((self.read)(&dir)?
            .into_iter()
            .filter(|t| usable(t))
            .collect())
    }
}

fn usable(t: &str) -> bool {
    let n = t.chars().count();
    (MIN_CHARS..=MAX_CHARS).contains(&n)
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let p = e.map_err(|e| Error::io("listing", dir, e))?.path();
        if p.is_file() && keep(&p) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// The gloss of each synset line in WordNet's `data.*` files: the text after `| `.
fn wordnet_glosses_raw(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for pos in ["noun", "verb", "adj", "adv"] {
        let path = dir.join(format!("data.{pos}"));
        let text = read_text_lenient(&path)?;
        for line in text.lines() {
            // The licence header lines start with two spaces.
            if line.starts_with("  ") {
                continue;
            }
            if let Some((_, gloss)) = line.split_once(" | ") {
                out.push(gloss.trim().to_owned());
            }
        }
    }
    Ok(out)
}

/// Splits a gloss into definitions and quoted examples.
fn gloss_parts(gloss: &str) -> (Vec<String>, Vec<String>) {
    let (mut defs, mut examples) = (Vec::new(), Vec::new());
    for part in gloss.split("; ") {
        let p = part.trim();
        if p.starts_with('"') {
            let inner = p.trim_matches(|c| c == '"' || c == ';' || c == ' ');
            let inner = inner
                .split("\" - ")
                .next()
                .unwrap_or(inner)
                .trim_end_matches('"');
            examples.push(squash(inner));
        } else if !p.is_empty() {
            defs.push(squash(p));
        }
    }
    (defs, examples)
}

fn wordnet_examples(dir: &Path) -> Result<Vec<String>> {
    Ok(wordnet_glosses_raw(dir)?
        .iter()
        .flat_map(|g| gloss_parts(g).1)
        .collect())
}

fn wordnet_glosses(dir: &Path) -> Result<Vec<String>> {
    Ok(wordnet_glosses_raw(dir)?
        .iter()
        .filter_map(|g| gloss_parts(g).0.into_iter().next())
        .collect())
}

/// Fortune files: entries separated by lines holding only `%`.
fn fortunes(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in sorted_files(dir, |p| p.extension().is_none())? {
        let text = read_text_lenient(&f)?;
        for entry in text.split("\n%\n") {
            let e = squash(entry.trim_start_matches("%\n"));
            if !e.is_empty() {
                out.push(e);
            }
        }
    }
    Ok(out)
}

fn moby_dick(dir: &Path) -> Result<Vec<String>> {
    sentences_of_files(&dir.join("moby-dick"))
}

fn sotu(dir: &Path) -> Result<Vec<String>> {
    sentences_of_files(&dir.join("sotu"))
}

fn sentences_of_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in sorted_files(dir, |p| p.extension().is_some_and(|x| x == "txt"))? {
        out.extend(split_sentences(&read_text_lenient(&f)?));
    }
    Ok(out)
}

/// A plain rule-based sentence splitter: a sentence ends at `.`, `!` or `?`
/// (optionally followed by a closing quote or bracket) before whitespace and an
/// upper-case letter or opening quote. Good enough for unlabelled probe text.
pub fn split_sentences(text: &str) -> Vec<String> {
    let text = squash(text);
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '!' | '?') {
            let mut end = i + 1;
            while end < chars.len() && matches!(chars[end], '"' | '\'' | ')' | '”' | '’') {
                end += 1;
            }
            let next_ok = end + 1 < chars.len()
                && chars[end] == ' '
                && (chars[end + 1].is_uppercase() || matches!(chars[end + 1], '"' | '“' | '\''));
            if next_ok || end >= chars.len() {
                let s: String = chars[start..end].iter().collect();
                if !s.trim().is_empty() {
                    out.push(s.trim().to_owned());
                }
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if start < chars.len() {
        let s: String = chars[start..].iter().collect();
        if !s.trim().is_empty() {
            out.push(s.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_terminal_punctuation() {
        let s = split_sentences("Call me Ishmael. Some years ago—never mind how long—I went. \"Is it?\" he said. e.g. this stays.");
        assert_eq!(
            s,
            [
                "Call me Ishmael.",
                "Some years ago—never mind how long—I went.",
                "\"Is it?\" he said. e.g. this stays."
            ]
        );
    }

    #[test]
    fn gloss_parts_separate_definitions_and_examples() {
        let (d, e) =
            gloss_parts("full of life; \"the oceans are teeming with life\"; \"a lively party\"");
        assert_eq!(d, ["full of life"]);
        assert_eq!(e, ["the oceans are teeming with life", "a lively party"]);
    }
}
