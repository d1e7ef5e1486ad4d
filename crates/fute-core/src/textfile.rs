//! Reading the text files people write: one reader for every text file fute reads.
//!
//! Editors on Windows (Notepad, Excel's "CSV UTF-8", PowerShell's `Out-File`)
//! start UTF-8 files with a byte-order mark, `EF BB BF`. A JSON or CSV parser
//! sees it as a stray character before the first `{` or header, so every reader
//! of a user's file (datasets, cards, corpora, prompt sets, model configs and
//! tokenizer files) goes through [`read_text`], which drops it. Files in UTF-16
//! or UTF-32 (recognised by their byte-order marks) and bytes that are not UTF-8
//! are refused with the line where decoding failed and how to fix the file.

use crate::{Error, Result};
use std::path::Path;

/// The UTF-8 byte-order mark.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads `path` as UTF-8 text, without a leading byte-order mark.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::InvalidData`] (with the
/// line) when it is not UTF-8.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    decode(path, bytes)
}

/// Decodes the bytes of `path` (for messages) as UTF-8 text without a BOM.
///
/// # Errors
/// [`Error::InvalidData`] naming the encoding found (UTF-16/32 by their marks)
/// or the line of the first byte that is not UTF-8.
pub fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<String> {
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    } else if let Some(enc) = wide_encoding(&bytes) {
        return Err(Error::data(
            path,
            None,
            None,
            format!(
                "the file is {enc} (it starts with a {enc} byte-order mark); save it as UTF-8 \
                 (e.g. `iconv -f {enc} -t UTF-8 in > out`)"
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|b| **b == b'\n').count();
        Error::data(
            path,
            Some(line),
            None,
            format!(
                "not valid UTF-8 (byte 0x{:02X} at offset {at}); save the file as UTF-8",
                bytes[at]
            ),
        )
    })
}

/// Drops a UTF-8 byte-order mark from the start of `text`, if there is one.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{FEFF}').unwrap_or(text)
}

fn wide_encoding(bytes: &[u8]) -> Option<&'static str> {
    // UTF-32 first: its little-endian mark starts with UTF-16LE's.
    if bytes.starts_with(b"\xFF\xFE\x00\x00") {
        Some("UTF-32LE")
    } else if bytes.starts_with(b"\x00\x00\xFE\xFF") {
        Some("UTF-32BE")
    } else if bytes.starts_with(b"\xFF\xFE") {
        Some("UTF-16LE")
    } else if bytes.starts_with(b"\xFE\xFF") {
        Some("UTF-16BE")
    } else {
        None
    }
}

/// Reads `path` as JSON (after [`read_text`]); `what` names the file's role in
/// messages ("dataset card", "corpus card", …).
///
/// # Errors
/// As [`read_text`], and [`Error::InvalidData`] with the line and column when
/// the JSON does not parse or does not have the expected shape.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::data(path, Some(e.line()), None, format!("invalid {what}: {e}")))
}

/// Whether `c` shows nothing: whitespace, a control character, or one of the
/// zero-width and formatting characters (joiners, directional marks, variation
/// selectors, fillers, tags) that render as nothing.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Whether `text` has at least one visible character (see [`is_invisible`]).
pub fn has_visible_text(text: &str) -> bool {
    text.chars().any(|c| !is_invisible(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Result<String> {
        decode(Path::new("f.jsonl"), bytes.to_vec())
    }

    #[test]
    fn bom_is_dropped_and_plain_text_kept() {
        assert_eq!(dec(b"\xEF\xBB\xBF{\"a\":1}\n").unwrap(), "{\"a\":1}\n");
        assert_eq!(dec(b"{\"a\":1}").unwrap(), "{\"a\":1}");
        assert_eq!(dec(b"").unwrap(), "");
        // Only the leading mark goes: one inside the text is data.
        assert_eq!(dec(b"a\xEF\xBB\xBFb").unwrap(), "a\u{FEFF}b");
    }

    #[test]
    fn utf16_and_bad_bytes_are_refused_with_the_line() {
        let e = dec(b"\xFF\xFEa\x00").unwrap_err().to_string();
        assert!(
            e.contains("UTF-16LE") && e.contains("save it as UTF-8"),
            "{e}"
        );
        let e = dec(b"\xFF\xFE\x00\x00").unwrap_err().to_string();
        assert!(e.contains("UTF-32LE"), "{e}");
        let e = dec(b"ok\nok\nbad \xC3(\n").unwrap_err().to_string();
        assert!(e.starts_with("f.jsonl:3") && e.contains("0xC3"), "{e}");
    }

    #[test]
    fn invisible_text_is_recognised() {
        for t in [
            "",
            " \t\n",
            "\u{200B}\u{200D}",
            "\u{FEFF}",
            "\u{0001}\u{007F}",
            "\u{2060}\u{00A0}",
            "\u{3164}",
        ] {
            assert!(!has_visible_text(t), "{t:?}");
        }
        for t in ["a", " x ", "\u{200B}é", "😀", "١"] {
            assert!(has_visible_text(t), "{t:?}");
        }
    }
}
