//! A local `.gguf` LLM on candle (`quantized_llama`), with its tokenizer and
//! chat template built from the file's metadata.

use crate::backend::{
    log_softmax, AnswerScores, BackendIdentity, CandidateScore, GenerateOptions, Generation,
    LlmBackend, Perplexity, ScoreKind, ScoreQuery, TokenScore,
};
use crate::chat::{ChatMessage, ChatTemplate, Piece};
use crate::llama::{DenseLlama, KvCache};
use crate::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token type of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// The byte-level BPE tokenizer described by a GGUF file's metadata
/// (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`, pre-tokenizer `smollm`:
/// single digits, then the GPT-2 split), with control tokens recognised in text.
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// The same tokenizer with control-token strings read as plain text.
    literal: Tokenizer,
    fingerprint: String,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    control: Vec<u32>,
    vocab_size: usize,
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

fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
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

impl GgufTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the metadata is missing or describes an
    /// unsupported tokenizer (only `gpt2`-style BPE with the `smollm`,
    /// `gpt2` or `default` pre-tokenizer is supported).
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let model = meta(content, "tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (byte-level BPE `gpt2` only)"
            )));
        }
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
        let tokens = meta_strings(content, "tokenizer.ggml.tokens")?;
        let merges = meta_strings(content, "tokenizer.ggml.merges")?;
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
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges_text = merges;
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
        let control: Vec<u32> = types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
            .map(|(i, _)| i as u32)
            .collect();
        let specials: Vec<AddedToken> = control
            .iter()
            .map(|&i| AddedToken::from(tokens[i as usize].clone(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let id = |key: &str| -> Result<Option<u32>> {
            match meta(content, key).and_then(|v| v.to_u32().ok()) {
                Some(i) if i as usize >= tokens.len() => Err(Error::Tokenizer(format!(
                    "{key} is {i}, beyond the {} tokens of tokenizer.ggml.tokens",
                    tokens.len()
                ))),
                other => Ok(other),
            }
        };
        let add_bos = meta(content, "tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let mut literal = inner.clone();
        literal.set_encode_special_tokens(true);
        let mut h = Sha256::new();
        for part in [&tokens, &merges_text] {
            for t in part {
                h.update(t.as_bytes());
                h.update([0u8]);
            }
            h.update([1u8]);
        }
        h.update(format!("{pre}:{types:?}").as_bytes());
        Ok(GgufTokenizer {
            inner,
            literal,
            fingerprint: hex::encode(h.finalize()),
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

    /// Token ids of `text` (control tokens such as `<|im_start|>` written in
    /// the text become their ids, like llama.cpp with `special = true`; no BOS).
    /// For template text only: user text goes through
    /// [`GgufTokenizer::encode_literal`] or [`GgufTokenizer::encode_pieces`].
    ///
    /// # Errors
    /// [`Error::Tokenizer`] on an encoding failure.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of `text` read as plain text: a `<|im_end|>` in it is the
    /// tokens of those characters, never the control token (llama.cpp with
    /// `special = false`; no BOS).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] on an encoding failure.
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .literal
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
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

    /// sha256 of the vocabulary, merges, pre-tokenizer and token types: two
    /// tokenizers with the same fingerprint give the same ids.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The text of `ids` (control tokens kept).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] on an unknown id.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
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

fn read_metadata(path: &Path) -> Result<gguf_file::Content> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    gguf_file::Content::read(&mut file).map_err(|e| Error::Model {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The chat template stored in the `.gguf` file at `path` (ChatML only; the
/// default when the file has none).
///
/// # Errors
/// [`Error::Model`] when the file is not GGUF; [`Error::Invalid`] when its
/// template is not ChatML.
pub fn chat_template_from_file(path: impl AsRef<Path>) -> Result<ChatTemplate> {
    let content = read_metadata(path.as_ref())?;
    match meta(&content, "tokenizer.chat_template").and_then(|v| v.to_string().ok()) {
        Some(t) => ChatTemplate::from_jinja(t),
        None => Ok(ChatTemplate::default()),
    }
}

/// A `.gguf` llama-architecture model (e.g. SmolLM2-135M-Instruct) run on
/// candle's CPU device. By default its weights are expanded to f32 once, into
/// a [`DenseLlama`] that scores and generates through a [`KvCache`] (a prompt
/// sharing its start with the previous call runs only the part that differs)
/// and scores a whole text in one pass for perplexity. With
/// `dequantize: false` scoring and generation run candle's `quantized_llama`
/// on the file's own quantization (the dense model is then built on first
/// perplexity).
pub struct GgufBackend {
    path: PathBuf,
    name: String,
    hash: String,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    model: Mutex<Engine>,
    /// The weights in f32 (4 bytes per weight): built at load when
    /// dequantizing, else on first perplexity.
    dense: OnceLock<DenseLlama>,
    device: Device,
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for GgufBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufBackend")
            .field("path", &self.path)
            .field("name", &self.name)
            .finish()
    }
}

/// What runs scoring and generation.
enum Engine {
    /// candle's `quantized_llama` on the file's quantization, with its own cache.
    Quantized(Box<ModelWeights>),
    /// [`GgufBackend::dense`] with the keys and values of the last call.
    Dense(KvCache),
}

/// How a GGUF file is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufOptions {
    /// Expand quantized weights to f32 at load time. candle has no SIMD kernel
    /// for some formats (Q4_1, SmolLM2's), so this is ~10× faster on CPU and
    /// more exact (no 8-bit activation rounding), at 4 bytes per weight. Off =
    /// the file's own quantization, the arithmetic llama.cpp uses. The choice is
    /// part of the model hash, so cached calls never mix the two.
    pub dequantize: bool,
}

impl Default for GgufOptions {
    fn default() -> Self {
        GgufOptions { dequantize: true }
    }
}

/// Name of the packaged SmolLM2 GGUF inside asset `smollm2`.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl GgufBackend {
    /// Loads a `.gguf` file: weights, tokenizer and chat template.
    ///
    /// # Errors
    /// [`Error::Model`] when the file cannot be read or is not a supported
    /// llama-architecture GGUF; [`Error::Tokenizer`] for its tokenizer.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &GgufOptions::default())
    }

    /// [`GgufBackend::load`] with explicit options.
    ///
    /// # Errors
    /// As [`GgufBackend::load`].
    pub fn load_with(path: impl AsRef<Path>, options: &GgufOptions) -> Result<Self> {
        let path = path.as_ref();
        let model_err = |message: String| Error::Model {
            path: path.display().to_string(),
            message,
        };
        let hash = sha256_file(path)?;
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| model_err(e.to_string()))?;
        let tokenizer = GgufTokenizer::from_gguf(&content)?;
        let template =
            match meta(&content, "tokenizer.chat_template").and_then(|v| v.to_string().ok()) {
                Some(t) => ChatTemplate::from_jinja(t)?,
                None => ChatTemplate::default(),
            };
        let name = meta(&content, "general.name")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let device = Device::Cpu;
        let dense = OnceLock::new();
        // Dequantized: one f32 copy of the weights serves scoring, generation
        // and perplexity (candle's quantized_llama would hold a second one).
        let model = if options.dequantize {
            let _ = dense.set(
                DenseLlama::from_gguf(&content, &mut file, &device)
                    .map_err(|e| model_err(e.to_string()))?,
            );
            Engine::Dense(KvCache::default())
        } else {
            Engine::Quantized(Box::new(
                ModelWeights::from_gguf(content, &mut file, &device)
                    .map_err(|e| model_err(e.to_string()))?,
            ))
        };
        let hash = if options.dequantize {
            format!("{hash}+f32")
        } else {
            hash
        };
        let mut stop_ids: Vec<u32> = tokenizer.eos().into_iter().collect();
        for special in ["<|im_end|>", "<|endoftext|>"] {
            if let Ok(ids) = tokenizer.encode(special) {
                if let [id] = ids[..] {
                    if tokenizer.is_control(id) && !stop_ids.contains(&id) {
                        stop_ids.push(id);
                    }
                }
            }
        }
        Ok(GgufBackend {
            path: path.to_path_buf(),
            name,
            hash,
            tokenizer,
            template,
            model: Mutex::new(model),
            dense,
            device,
            stop_ids,
        })
    }

    /// Loads the packaged SmolLM2-135M-Instruct (asset `smollm2`, see
    /// `fute assets fetch smollm2`).
    ///
    /// # Errors
    /// When the asset is not fetched, or as [`GgufBackend::load`].
    pub fn smollm2() -> Result<Self> {
        let dir = fute_core::assets::Assets::from_env()
            .dir("smollm2")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Self::load(dir.join(SMOLLM2_FILE))
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokenizer built from the file's metadata.
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// The chat template from the file's metadata.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn infer_err(e: candle_core::Error) -> Error {
        Error::Inference(e.to_string())
    }

    /// Runs `tokens` starting at position `pos` (0 starts a new sequence) and
    /// returns the logits after the last one.
    ///
    /// The dense engine keeps the keys and values of the previous sequence: a
    /// new one runs only from where it first differs (the prompts of one set
    /// share system message, instruction and template head), with the same
    /// result as running it whole up to float rounding.
    fn forward(&self, engine: &mut Engine, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let cache = match engine {
            Engine::Quantized(model) => {
                let input = Tensor::new(tokens, &self.device)
                    .and_then(|t| t.unsqueeze(0))
                    .map_err(Self::infer_err)?;
                let logits = model.forward(&input, pos).map_err(Self::infer_err)?;
                return logits
                    .squeeze(0)
                    .and_then(|t| t.to_dtype(candle_core::DType::F32))
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(Self::infer_err);
            }
            Engine::Dense(cache) => cache,
        };
        if tokens.is_empty() {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        let dense = self.dense()?;
        let run: &[u32] = if pos == 0 {
            // At least the last token runs: its logits are the answer.
            let keep = cache.common_prefix(tokens).min(tokens.len() - 1);
            cache.truncate(keep).map_err(Self::infer_err)?;
            &tokens[keep..]
        } else if pos == cache.len() {
            tokens
        } else {
            return Err(Error::Inference(format!(
                "position {pos} does not continue the {} cached positions",
                cache.len()
            )));
        };
        // `extend` changes the cache only when every layer ran, so a failure
        // leaves it consistent.
        dense
            .extend(cache, run)
            .and_then(|hidden| {
                let last = hidden.narrow(0, hidden.dim(0)? - 1, 1)?;
                dense.project(&last)?.squeeze(0)?.to_vec1::<f32>()
            })
            .map_err(Self::infer_err)
    }

    /// The dense f32 model used for perplexity (built from the file on first
    /// use when the backend was loaded without `dequantize`).
    ///
    /// # Errors
    /// [`Error::Model`] when the file can no longer be read or has changed
    /// since load.
    pub fn dense(&self) -> Result<&DenseLlama> {
        if let Some(dense) = self.dense.get() {
            return Ok(dense);
        }
        let model_err = |message: String| Error::Model {
            path: self.path.display().to_string(),
            message,
        };
        // The identity (and so every cache key) names the file loaded.
        if !self.hash.starts_with(&sha256_file(&self.path)?) {
            return Err(model_err("file changed since it was loaded".into()));
        }
        let mut file = std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| model_err(e.to_string()))?;
        let dense = DenseLlama::from_gguf(&content, &mut file, &self.device)
            .map_err(|e| model_err(e.to_string()))?;
        // A concurrent caller may have won the race; both built the same model.
        Ok(self.dense.get_or_init(|| dense))
    }

    /// Logits after `tokens` from the KV-cache model (cache reset), as used
    /// for scoring and generation.
    ///
    /// # Errors
    /// Inference failures.
    pub fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        self.forward(&mut model, tokens, 0)
    }

    /// Token ids of `text` (literal) for perplexity: BOS first when asked.
    fn perplexity_ids(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        self.with_bos(self.tokenizer.encode_literal(text)?, add_bos)
    }

    fn with_bos(&self, text_ids: Vec<u32>, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if add_bos {
            ids.extend(self.tokenizer.bos());
        }
        ids.extend(text_ids);
        if ids.len() < 2 {
            return Err(Error::Invalid(
                "perplexity needs at least two tokens".into(),
            ));
        }
        Ok(ids)
    }

    /// [`LlmBackend::perplexity`] computed one token at a time through the
    /// KV-cache model: the slow reference the one-pass version is checked
    /// against (~27 ms per token for SmolLM2 on CPU).
    ///
    /// # Errors
    /// As [`LlmBackend::perplexity`].
    pub fn perplexity_stepwise(&self, text: &str, add_bos: bool) -> Result<Perplexity> {
        let ids = self.perplexity_ids(text, add_bos)?;
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let mut logprobs = Vec::with_capacity(ids.len() - 1);
        for pos in 0..ids.len() - 1 {
            let logits = self.forward(&mut model, &ids[pos..pos + 1], pos)?;
            let lp = log_softmax(&logits);
            logprobs.push(lp[ids[pos + 1] as usize] as f64);
        }
        Ok(Perplexity::from_logprobs(&logprobs))
    }

    /// Token ids of the chat with the generation prompt: the template's
    /// control tokens, the messages as literal text (user text is data).
    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let pieces = self.template.render_pieces(messages, true);
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos());
        }
        ids.extend(self.tokenizer.encode_pieces(&pieces)?);
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        Ok(ids)
    }

    /// Greedy token ids after `prompt` ids (no chat template), at most
    /// `max_tokens`, stopping at an end-of-turn token.
    ///
    /// # Errors
    /// Inference failures.
    pub fn greedy_ids(&self, prompt: &[u32], max_tokens: usize) -> Result<Vec<u32>> {
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let mut logits = self.forward(&mut model, prompt, 0)?;
        let mut pos = prompt.len();
        let mut out = Vec::new();
        while out.len() < max_tokens {
            let next = argmax(&logits);
            if self.stop_ids.contains(&next) {
                break;
            }
            out.push(next);
            logits = self.forward(&mut model, &[next], pos)?;
            pos += 1;
        }
        Ok(out)
    }
}

/// Positions projected to the vocabulary at once when scoring perplexity.
const PERPLEXITY_ROWS: usize = 256;

/// `log_softmax(logits)[id]`, with the normaliser summed in f64 as
/// [`log_softmax`] does.
fn logprob_of(logits: &[f32], id: u32) -> f64 {
    logits[id as usize] as f64 - crate::backend::log_sum_exp(logits)
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..values.len() as u32).collect();
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| {
        values[b as usize]
            .total_cmp(&values[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| {
        values[b as usize]
            .total_cmp(&values[a as usize])
            .then(a.cmp(&b))
    });
    idx.into_iter().map(|i| (i, values[i as usize])).collect()
}

impl LlmBackend for GgufBackend {
    fn identity(&self) -> BackendIdentity {
        BackendIdentity {
            kind: "gguf".into(),
            model: self.name.clone(),
            model_hash: self.hash.clone(),
        }
    }

    /// How user text is tokenised (literal since the 2026-11-30 case 22 fix):
    /// cached answers from before it are not reused.
    fn answer_settings(&self) -> serde_json::Value {
        serde_json::json!({ "user_text": "literal" })
    }

    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        Ok(self.template.render(messages, add_generation_prompt))
    }

    fn score_answer(&self, messages: &[ChatMessage], query: &ScoreQuery) -> Result<AnswerScores> {
        let prompt = self.prompt_ids(messages)?;
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.forward(&mut model, &prompt, 0)?;
        let found = crate::logits::answer_step(
            &prompt,
            first,
            query.max_steps,
            query.logits_processing,
            |id| self.stop_ids.contains(&id),
            |id| self.tokenizer.decode(&[id]),
            |id, pos| self.forward(&mut model, &[id], pos),
        )?;
        drop(model);
        let (step, greedy, logits) = (found.step, found.texts, found.logits);
        let (kind, scores) = if query.raw_logits {
            (ScoreKind::Logits, logits)
        } else {
            (ScoreKind::LogProbs, log_softmax(&logits))
        };
        // JSON has no −∞ (a token the no-repeat rule banned).
        let scores: Vec<f32> = scores.into_iter().map(crate::logits::finite).collect();
        let top = top_k(&scores, query.top_k)
            .into_iter()
            .map(|(id, score)| {
                Ok(TokenScore {
                    id: Some(id),
                    text: self.tokenizer.decode(&[id])?,
                    score,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let candidates = query
            .candidates
            .iter()
            .map(|c| {
                let ids = self.tokenizer.encode_literal(c)?;
                Ok(match ids.first() {
                    Some(&id) => CandidateScore {
                        candidate: c.clone(),
                        token: Some(self.tokenizer.decode(&[id])?),
                        score: Some(scores[id as usize]),
                    },
                    None => CandidateScore {
                        candidate: c.clone(),
                        token: None,
                        score: None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AnswerScores {
            kind,
            step,
            greedy,
            top,
            candidates,
            floor: None,
        })
    }

    fn generate(&self, messages: &[ChatMessage], options: &GenerateOptions) -> Result<Generation> {
        let prompt = self.prompt_ids(messages)?;
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let mut logits = self.forward(&mut model, &prompt, 0)?;
        let mut pos = prompt.len();
        let mut ids = Vec::new();
        let mut finish = "length";
        let mut text = String::new();
        let mut context = prompt.clone();
        while ids.len() < options.max_tokens {
            options.logits_processing.apply(&mut logits, &context);
            let next = argmax(&logits);
            context.push(next);
            if self.stop_ids.contains(&next) {
                finish = "stop";
                break;
            }
            ids.push(next);
            text = self.tokenizer.decode(&ids)?;
            if let Some(cut) = options
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(cut);
                finish = "stop";
                break;
            }
            if ids.len() == options.max_tokens {
                break;
            }
            logits = self.forward(&mut model, &[next], pos)?;
            pos += 1;
        }
        Ok(Generation {
            text,
            n_tokens: ids.len(),
            finish_reason: finish.into(),
        })
    }

    /// One forward pass of the dense model over the whole text; the last
    /// token needs no logits, so it is not run.
    fn perplexity(&self, text: &str, add_bos: bool) -> Result<Perplexity> {
        let ids = self.perplexity_ids(text, add_bos)?;
        self.perplexity_of_ids(&ids)
    }

    fn perplexity_chat(&self, messages: &[ChatMessage], add_bos: bool) -> Result<Perplexity> {
        let pieces = self.template.render_pieces(messages, false);
        let ids = self.with_bos(self.tokenizer.encode_pieces(&pieces)?, add_bos)?;
        self.perplexity_of_ids(&ids)
    }
}

impl GgufBackend {
    /// Perplexity of `ids` (all but the first scored) in one dense pass.
    fn perplexity_of_ids(&self, ids: &[u32]) -> Result<Perplexity> {
        let dense = self.dense()?;
        let context = dense.config().context_length;
        if ids.len() > context {
            return Err(Error::Invalid(format!(
                "text is {} tokens, longer than the model's context of {context}",
                ids.len()
            )));
        }
        let inputs = &ids[..ids.len() - 1];
        let hidden = dense.hidden_states(inputs).map_err(Self::infer_err)?;
        let mut logprobs = Vec::with_capacity(inputs.len());
        // Project in row chunks so a long text never holds seq × vocab floats.
        for start in (0..inputs.len()).step_by(PERPLEXITY_ROWS) {
            let rows = PERPLEXITY_ROWS.min(inputs.len() - start);
            let logits = hidden
                .narrow(0, start, rows)
                .and_then(|h| dense.project(&h))
                .and_then(|l| l.to_vec2::<f32>())
                .map_err(Self::infer_err)?;
            for (i, row) in logits.iter().enumerate() {
                logprobs.push(logprob_of(row, ids[start + i + 1]));
            }
        }
        Ok(Perplexity::from_logprobs(&logprobs))
    }
}
