//! The tokenizer stored in a GGUF file's metadata: byte-level BPE
//! (`tokenizer.ggml.model = gpt2`, SmolLM2) or SentencePiece-style
//! (`llama`, Gemma; see [`crate::spm`]).

use crate::chat::{ChatTemplate, Piece};
use crate::spm::SpmVocab;
use crate::{Error, Result};
use candle_core::quantized::gguf_file;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token type of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// The tokenizer described by a GGUF file's metadata, with control tokens
/// recognised in template text and read as plain text in user text.
///
/// Two kinds are supported: byte-level BPE (`tokenizer.ggml.model = gpt2`,
/// `tokenizer.ggml.merges`, pre-tokenizer `smollm`: single digits, then the
/// GPT-2 split) and SentencePiece-style (`llama`: pieces with scores, `▁` for
/// spaces, byte fallback), each giving llama.cpp's ids.
pub struct GgufTokenizer {
    kind: Kind,
    fingerprint: String,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    control: Vec<u32>,
    vocab_size: usize,
}

/// How text becomes ids.
enum Kind {
    /// Byte-level BPE; `literal` is the same tokenizer with control-token
    /// strings read as plain text.
    Bpe {
        inner: Box<Tokenizer>,
        literal: Box<Tokenizer>,
    },
    /// SentencePiece-style pieces and scores.
    Spm(SpmVocab),
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

pub(crate) fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    content.metadata.get(key)
}

fn meta_strings(content: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let value = meta(content, key)
        .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata lacks `{key}`")))?;
    let items = value
        .to_vec()
        .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))?;
    items
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))
        })
        .collect()
}

fn meta_f32s(content: &gguf_file::Content, key: &str) -> Result<Vec<f32>> {
    let value = meta(content, key)
        .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata lacks `{key}`")))?;
    value
        .to_vec()
        .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))?
        .iter()
        .map(|v| {
            v.to_f32()
                .map_err(|e| Error::Tokenizer(format!("`{key}`: {e}")))
        })
        .collect()
}

/// The byte-level BPE of a `gpt2` GGUF tokenizer, and its fingerprint.
fn bpe(
    content: &gguf_file::Content,
    tokens: &[String],
    types: &[i32],
    control: &[u32],
) -> Result<(Kind, String)> {
    let pre = meta(content, "tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "default".into());
    let split_digits = match pre.as_str() {
        "smollm" | "starcoder" | "refact" => true,
        "gpt2" | "default" => false,
        other => {
            return Err(Error::Tokenizer(format!(
                "pre-tokenizer `{other}` is not supported (smollm, starcoder, gpt2)"
            )))
        }
    };
    let merges_text = meta_strings(content, "tokenizer.ggml.merges")?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges_text
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Tokenizer(format!("bad merge `{m}`")))
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut inner = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, false, true);
    if split_digits {
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            byte_level.into(),
        ])));
    } else {
        inner.with_pre_tokenizer(Some(byte_level));
    }
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = control
        .iter()
        .map(|&i| AddedToken::from(tokens[i as usize].clone(), true))
        .collect();
    inner
        .add_special_tokens(specials)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut literal = inner.clone();
    literal.set_encode_special_tokens(true);
    // The fingerprint HTTP cache keys were made with before SentencePiece
    // support: kept byte for byte so those keys stay valid.
    let mut h = Sha256::new();
    for part in [tokens, &merges_text[..]] {
        for t in part {
            h.update(t.as_bytes());
            h.update([0u8]);
        }
        h.update([1u8]);
    }
    h.update(format!("{pre}:{types:?}").as_bytes());
    let kind = Kind::Bpe {
        inner: Box::new(inner),
        literal: Box::new(literal),
    };
    Ok((kind, hex::encode(h.finalize())))
}

impl GgufTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the metadata is missing, its tables disagree,
    /// or it describes an unsupported tokenizer (`gpt2`-style BPE with the
    /// `smollm`, `gpt2` or `default` pre-tokenizer, or `llama`-style
    /// SentencePiece).
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let model = meta(content, "tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if model != "gpt2" && model != "llama" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (byte-level BPE `gpt2` or SentencePiece `llama`)"
            )));
        }
        let tokens = meta_strings(content, "tokenizer.ggml.tokens")?;
        let types: Vec<i32> = match meta(content, "tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        // A file whose tables disagree is refused here; indexing by them later
        // would panic (found by the fuzz target gguf_metadata_values_never_panic).
        if tokens.is_empty() {
            return Err(Error::Tokenizer(
                "tokenizer.ggml.tokens is empty: the file holds no vocabulary".into(),
            ));
        }
        if types.len() != tokens.len() {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens in tokenizer.ggml.tokens",
                types.len(),
                tokens.len()
            )));
        }
        let id = |key: &str| -> Result<Option<u32>> {
            match meta(content, key).and_then(|v| v.to_u32().ok()) {
                Some(i) if i as usize >= tokens.len() => Err(Error::Tokenizer(format!(
                    "{key} is {i}, beyond the {} tokens of tokenizer.ggml.tokens",
                    tokens.len()
                ))),
                other => Ok(other),
            }
        };
        let flag = |key: &str| meta(content, key).and_then(|v| v.to_bool().ok());
        let control: Vec<u32> = types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
            .map(|(i, _)| i as u32)
            .collect();
        // llama.cpp's defaults when the flags are absent: SentencePiece
        // models get a BOS and a space prefix, BPE models neither.
        let spm = model == "llama";
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(spm);
        let (kind, fingerprint) = if spm {
            let scores = meta_f32s(content, "tokenizer.ggml.scores")?;
            let space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
            let mut h = Sha256::new();
            h.update(format!("spm:{space_prefix}:{types:?}").as_bytes());
            for (t, s) in tokens.iter().zip(&scores) {
                h.update(t.as_bytes());
                h.update([0u8]);
                h.update(s.to_le_bytes());
            }
            let unknown = id("tokenizer.ggml.unknown_token_id")?;
            let vocab = SpmVocab::new(tokens.clone(), scores, types, unknown, space_prefix)?;
            (Kind::Spm(vocab), hex::encode(h.finalize()))
        } else {
            bpe(content, &tokens, &types, &control)?
        };
        Ok(GgufTokenizer {
            kind,
            fingerprint,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            add_bos,
            control,
            vocab_size: tokens.len(),
        })
    }

    /// Reads only the metadata of the `.gguf` file at `path` and builds its
    /// tokenizer (e.g. to give an [`crate::HttpBackend`] exact verbaliser tokens).
    ///
    /// # Errors
    /// [`Error::Model`] when the file is not GGUF, or as [`GgufTokenizer::from_gguf`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_gguf(&read_metadata(path.as_ref())?)
    }

    /// Whether this is a SentencePiece-style (`llama`) tokenizer.
    pub fn is_sentencepiece(&self) -> bool {
        matches!(self.kind, Kind::Spm(_))
    }

    /// Token ids of `text` (control tokens such as `<|im_start|>` written in
    /// the text become their ids, like llama.cpp with `special = true`; no BOS).
    /// For template text only: user text goes through
    /// [`GgufTokenizer::encode_literal`] or [`GgufTokenizer::encode_pieces`].
    ///
    /// # Errors
    /// [`Error::Tokenizer`] on an encoding failure.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.kind {
            Kind::Bpe { inner, .. } => bpe_ids(inner, text),
            Kind::Spm(vocab) => vocab.encode(text, true),
        }
    }

    /// Token ids of `text` read as plain text: a `<|im_end|>` in it is the
    /// tokens of those characters, never the control token (llama.cpp with
    /// `special = false`; no BOS).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] on an encoding failure.
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        match &self.kind {
            Kind::Bpe { literal, .. } => bpe_ids(literal, text),
            Kind::Spm(vocab) => vocab.encode(text, false),
        }
    }

    /// The `tokenizers` tokenizer of [`GgufTokenizer::encode_literal`] for a
    /// byte-level BPE vocabulary (control strings in text read as plain text),
    /// e.g. to save as the `tokenizer.json` of a model converted from this
    /// GGUF file; `None` for a SentencePiece vocabulary, which has no such form.
    pub fn literal_tokenizer(&self) -> Option<&Tokenizer> {
        match &self.kind {
            Kind::Bpe { literal, .. } => Some(literal),
            Kind::Spm(_) => None,
        }
    }

    /// Token ids of a rendered chat ([`ChatTemplate::render_pieces`]): each
    /// control piece is its one control token, the text between two control
    /// pieces is encoded literally as one string (so a chat without
    /// control-token strings in its messages gets the ids of
    /// [`GgufTokenizer::encode`] on the rendered text).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when a control piece is not one control token of
    /// this vocabulary, or on an encoding failure.
    pub fn encode_pieces(&self, pieces: &[Piece]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut text = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Control(c) => {
                    ids.extend(self.encode_literal(&std::mem::take(&mut text))?);
                    match self.encode(c)?[..] {
                        [id] if self.is_control(id) => ids.push(id),
                        _ => {
                            return Err(Error::Tokenizer(format!(
                                "the chat template's `{c}` is not a control token of this model"
                            )))
                        }
                    }
                }
            }
        }
        ids.extend(self.encode_literal(&text)?);
        Ok(ids)
    }

    /// sha256 of the vocabulary, token types and the rules that split text
    /// (merges and pre-tokenizer, or scores and space prefix): two tokenizers
    /// with the same fingerprint give the same ids.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The text of `ids` (control tokens kept).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] on an unknown id.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.kind {
            Kind::Bpe { inner, .. } => inner
                .decode(ids, false)
                .map_err(|e| Error::Tokenizer(e.to_string())),
            Kind::Spm(vocab) => vocab.decode(ids),
        }
    }

    /// BOS token id, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// EOS token id, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether the model asks for a BOS at the start of every prompt.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `id` is a control token.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.binary_search(&id).is_ok()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

fn bpe_ids(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(encoding.get_ids().to_vec())
}

pub(crate) fn read_metadata(path: &Path) -> Result<gguf_file::Content> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    gguf_file::Content::read(&mut file).map_err(|e| Error::Model {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The chat template of a GGUF file: ChatML when its metadata holds one
/// (`tokenizer.chat_template`), plain completion text when it holds none and
/// its vocabulary has no ChatML markers (a base model such as Gemma-3-270M),
/// else ChatML without a default system message.
///
/// # Errors
/// [`Error::Invalid`] when the stored template is not ChatML.
pub(crate) fn chat_template(
    content: &gguf_file::Content,
    tokenizer: &GgufTokenizer,
) -> Result<ChatTemplate> {
    match meta(content, "tokenizer.chat_template").and_then(|v| v.to_string().ok()) {
        Some(t) => ChatTemplate::from_jinja(t),
        None => {
            let chatml =
                matches!(tokenizer.encode("<|im_start|>")?[..], [id] if tokenizer.is_control(id));
            Ok(if chatml {
                ChatTemplate::default()
            } else {
                ChatTemplate::completion()
            })
        }
    }
}

/// The chat template of the `.gguf` file at `path` (see the rules of
/// [`crate::GgufBackend`]: ChatML from the file, or plain completion text for
/// a base model without one).
///
/// # Errors
/// [`Error::Model`] when the file is not GGUF; [`Error::Invalid`] when its
/// template is not ChatML; [`Error::Tokenizer`] for its tokenizer.
pub fn chat_template_from_file(path: impl AsRef<Path>) -> Result<ChatTemplate> {
    let content = read_metadata(path.as_ref())?;
    let tokenizer = GgufTokenizer::from_gguf(&content)?;
    chat_template(&content, &tokenizer)
}
