//! A local `.gguf` LLM on candle (llama or Gemma 3 architecture), with its
//! tokenizer and chat template built from the file's metadata.

use crate::backend::{
    log_softmax, AnswerScores, BackendIdentity, CandidateScore, GenerateOptions, Generation,
    LlmBackend, Perplexity, ScoreKind, ScoreQuery, TokenScore,
};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::dense::{architecture, DenseModel, KvCache};
use crate::tokenizer::{chat_template, meta};
pub use crate::tokenizer::{chat_template_from_file, GgufTokenizer};
use crate::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A `.gguf` model run on candle's CPU device: llama architecture (e.g.
/// SmolLM2-135M-Instruct) or Gemma 3 (e.g. Gemma-3-270M). By default its
/// weights are expanded to f32 once, into a [`DenseModel`] ([`crate::DenseLlama`]
/// or [`crate::DenseGemma3`]) that scores and generates through [`KvCache`]s (a prompt
/// sharing its start with an earlier call runs only the part that differs)
/// and scores a whole text in one pass for perplexity.
///
/// Calls may run concurrently ([`GgufOptions::workers`] of them to good
/// effect, see [`LlmBackend::concurrency`]): they share the one copy of the
/// weights, and each takes a KV cache of its own from a pool, the one whose
/// tokens share the longest start with its prompt. With
/// `dequantize: false` scoring and generation run candle's `quantized_llama`
/// on the file's own quantization (the dense model is then built on first
/// perplexity; llama architecture only).
///
/// The chat template comes from the file; a file without one whose
/// vocabulary has no ChatML markers is a base (completion) model, prompted
/// with plain text ([`ChatTemplate::completion`]).
pub struct GgufBackend {
    path: PathBuf,
    name: String,
    hash: String,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    model: Engine,
    /// Calls the backend runs at once to good effect.
    workers: usize,
    /// The weights in f32 (4 bytes per weight): built at load when
    /// dequantizing, else on first perplexity.
    dense: OnceLock<DenseModel>,
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
    /// candle's `quantized_llama` on the file's quantization, with its own
    /// cache: one call at a time.
    Quantized(Mutex<Box<ModelWeights>>),
    /// [`GgufBackend::dense`] with a pool of KV caches (at most one per call
    /// that ran at the same time as others), each holding the keys and values
    /// of the last call that used it.
    Dense(Mutex<Vec<KvCache>>),
}

/// One call's hold on the engine: the quantized model, or a KV cache taken
/// from the pool (put back when the session ends).
enum Session<'a> {
    Quantized(MutexGuard<'a, Box<ModelWeights>>),
    Dense {
        cache: KvCache,
        pool: &'a Mutex<Vec<KvCache>>,
    },
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Session::Dense { cache, pool } = self {
            let cache = std::mem::take(cache);
            pool.lock().unwrap_or_else(|p| p.into_inner()).push(cache);
        }
    }
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
    /// Calls to run at once ([`LlmBackend::concurrency`]; at least 1): each
    /// on a core of its own, over the one copy of the weights. Default: the
    /// CPUs this process may use. Only the dequantized engine runs calls
    /// concurrently (the quantized one has a single cache). Not part of the
    /// model hash: results differ from one worker's only by float rounding
    /// (a cache may reuse a prompt's start at another position).
    pub workers: usize,
}

impl Default for GgufOptions {
    fn default() -> Self {
        GgufOptions {
            dequantize: true,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Name of the packaged SmolLM2 GGUF inside asset `smollm2`.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Name of the packaged Gemma-3-270M GGUF inside asset `gemma3`.
pub const GEMMA3_FILE: &str = fute_core::assets::GEMMA3_FILE;

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
        let template = chat_template(&content, &tokenizer)?;
        let arch = architecture(&content).map_err(|e| model_err(e.to_string()))?;
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
                DenseModel::from_gguf(&content, &mut file, &device)
                    .map_err(|e| model_err(e.to_string()))?,
            );
            Engine::Dense(Mutex::new(Vec::new()))
        } else if arch != "llama" {
            // candle's quantized_gemma3 (0.11.1) uses SiLU where Gemma 3 has
            // GeLU-tanh, so only the dense pass runs other architectures.
            return Err(model_err(format!(
                "architecture `{arch}` runs only with its weights expanded to f32 (dequantize); the quantized path is llama-only"
            )));
        } else {
            Engine::Quantized(Mutex::new(Box::new(
                ModelWeights::from_gguf(content, &mut file, &device)
                    .map_err(|e| model_err(e.to_string()))?,
            )))
        };
        let hash = if options.dequantize {
            format!("{hash}+f32")
        } else {
            hash
        };
        let mut stop_ids: Vec<u32> = tokenizer.eos().into_iter().collect();
        for special in ["<|im_end|>", "<|endoftext|>", "<end_of_turn>"] {
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
            workers: if options.dequantize {
                options.workers.max(1)
            } else {
                1
            },
            model,
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

    /// Loads the packaged Gemma-3-270M, a base model prompted
    /// completion-style (asset `gemma3`, opt-in under the Gemma Terms of
    /// Use: `fute assets fetch gemma3`).
    ///
    /// # Errors
    /// When the asset is not fetched (the message names the fetch command),
    /// or as [`GgufBackend::load`].
    pub fn gemma3() -> Result<Self> {
        let dir = fute_core::assets::Assets::from_env()
            .dir("gemma3")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Self::load(dir.join(GEMMA3_FILE))
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

    /// A hold on the engine for one call whose prompt is `prompt`: the
    /// quantized model (waiting for other calls), or the pooled KV cache whose
    /// tokens share the longest start with `prompt` (an empty one when the
    /// pool is empty because every cache is in use).
    fn session(&self, prompt: &[u32]) -> Session<'_> {
        match &self.model {
            Engine::Quantized(m) => Session::Quantized(m.lock().unwrap_or_else(|p| p.into_inner())),
            Engine::Dense(pool) => {
                let mut caches = pool.lock().unwrap_or_else(|p| p.into_inner());
                let best = (0..caches.len()).max_by_key(|&i| caches[i].common_prefix(prompt));
                let cache = best.map(|i| caches.swap_remove(i)).unwrap_or_default();
                Session::Dense { cache, pool }
            }
        }
    }

    /// Runs `tokens` starting at position `pos` (0 starts a new sequence) and
    /// returns the logits after the last one.
    ///
    /// The dense engine's cache keeps the keys and values of the previous
    /// sequence that used it: a new one runs only from where it first differs
    /// (the prompts of one set share system message, instruction and template
    /// head), with the same result as running it whole up to float rounding.
    fn forward(&self, session: &mut Session, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let cache = match session {
            Session::Quantized(model) => {
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
            Session::Dense { cache, .. } => cache,
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
    pub fn dense(&self) -> Result<&DenseModel> {
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
        let dense = DenseModel::from_gguf(&content, &mut file, &self.device)
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
        let mut session = self.session(tokens);
        self.forward(&mut session, tokens, 0)
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
        let mut session = self.session(&[]);
        let mut logprobs = Vec::with_capacity(ids.len() - 1);
        for pos in 0..ids.len() - 1 {
            let logits = self.forward(&mut session, &ids[pos..pos + 1], pos)?;
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
        let mut session = self.session(prompt);
        let mut logits = self.forward(&mut session, prompt, 0)?;
        let mut pos = prompt.len();
        let mut out = Vec::new();
        while out.len() < max_tokens {
            let next = argmax(&logits);
            if self.stop_ids.contains(&next) {
                break;
            }
            out.push(next);
            logits = self.forward(&mut session, &[next], pos)?;
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
    fn concurrency(&self) -> usize {
        self.workers
    }

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
        let mut session = self.session(&prompt);
        let first = self.forward(&mut session, &prompt, 0)?;
        let found = crate::logits::answer_step(
            &prompt,
            first,
            query.max_steps,
            query.logits_processing,
            |id| self.stop_ids.contains(&id),
            |id| self.tokenizer.decode(&[id]),
            |id, pos| self.forward(&mut session, &[id], pos),
        )?;
        drop(session);
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
        let mut session = self.session(&prompt);
        let mut logits = self.forward(&mut session, &prompt, 0)?;
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
            logits = self.forward(&mut session, &[next], pos)?;
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
        let context = dense.context_length();
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
