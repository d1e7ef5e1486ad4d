//! Chat messages and the ChatML template (`<|im_start|>role\n…<|im_end|>\n`).

use serde::{Deserialize, Serialize};

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role name used by ChatML and the OpenAI API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// The ChatML chat template, with the default system message a model's
/// template inserts when the conversation has none (SmolLM2's does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTemplate {
    /// Inserted as the first message when the conversation has no system message.
    pub default_system: Option<String>,
}

impl ChatTemplate {
    /// Reads a Jinja chat template (as stored in `tokenizer.chat_template`)
    /// and keeps what ChatML rendering needs: the default system message.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] when the template is not ChatML.
    pub fn from_jinja(template: &str) -> crate::Result<Self> {
        if !template.contains("<|im_start|>") || !template.contains("<|im_end|>") {
            return Err(crate::Error::Invalid(
                "only ChatML chat templates (<|im_start|>role ... <|im_end|>) are supported".into(),
            ));
        }
        let marker = "<|im_start|>system\n";
        let default_system = template.find(marker).and_then(|start| {
            let rest = &template[start + marker.len()..];
            rest.find("<|im_end|>").map(|end| rest[..end].to_string())
        });
        Ok(ChatTemplate { default_system })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with
    /// `<|im_start|>assistant\n`, where the answer starts.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        let has_system = messages.first().map(|m| m.role) == Some(Role::System);
        if let (false, Some(system)) = (has_system, &self.default_system) {
            push_turn(&mut out, "system", system);
        }
        for message in messages {
            push_turn(&mut out, message.role.as_str(), &message.content);
        }
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        out
    }
}

fn push_turn(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml_with_default_system() {
        let t = ChatTemplate::from_jinja(
            "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are nice<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
        )
        .unwrap();
        assert_eq!(t.default_system.as_deref(), Some("You are nice"));
        let text = t.render(&[ChatMessage::user("hi")], true);
        assert_eq!(
            text,
            "<|im_start|>system\nYou are nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let own = t.render(&[ChatMessage::system("S"), ChatMessage::user("u")], false);
        assert_eq!(
            own,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nu<|im_end|>\n"
        );
        assert!(ChatTemplate::from_jinja("[INST] {{ x }} [/INST]").is_err());
    }
}
