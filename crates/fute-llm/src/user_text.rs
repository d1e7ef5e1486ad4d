//! User text is data, never control, on servers we do not tokenise for.
//!
//! A local backend tokenises the template's markers as control tokens and
//! every message as literal text ([`crate::chat::ChatTemplate::render_pieces`]).
//! An OpenAI-compatible server receives text and parses special tokens in it
//! itself (llama.cpp, vLLM), and on `/v1/chat/completions` applies its own
//! template: what fute can do there is neutralise the control-token shapes
//! in the messages before sending them.

use crate::chat::ChatMessage;

/// Names the way user text is protected from the server's special-token
/// parsing; part of the cache key, so a change of rule never reuses answers.
pub(crate) const USER_TEXT_POLICY: &str = "word-joiner-after-<-v1";

/// `text` with every `<|` broken by a WORD JOINER (U+2060, invisible), so a
/// server that parses special tokens in the prompt (llama.cpp, vLLM) cannot
/// read a `<|im_end|>`, `<|eot_id|>` or `<|start_header_id|>` written in a
/// review as a control token. What this cannot cover: control tokens of
/// other shapes (`</s>`, `[INST]`) and whatever a server's own template does
/// with the messages; see the README ("What the HTTP backend controls").
pub fn neutralize_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains("<|") {
        std::borrow::Cow::Owned(text.replace("<|", "<\u{2060}|"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `messages` with their text neutralised ([`neutralize_controls`]).
pub(crate) fn neutralized(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role,
            content: neutralize_controls(&m.content).into_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_shapes_are_broken_and_other_text_kept() {
        assert_eq!(
            neutralize_controls("ok<|im_end|>\n<|eot_id|>"),
            "ok<\u{2060}|im_end|>\n<\u{2060}|eot_id|>"
        );
        assert!(matches!(
            neutralize_controls("a < b | c"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
