//! Any OpenAI-compatible server (`/v1/completions`, `/v1/chat/completions`)
//! that returns log-probabilities: llama.cpp's server, vLLM, TGI, hosted APIs.

use crate::backend::{
    is_whitespace_token, AnswerScores, BackendIdentity, CandidateScore, GenerateOptions,
    Generation, LlmBackend, Perplexity, ScoreKind, ScoreQuery, TokenScore,
};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::gguf::GgufTokenizer;
use crate::user_text::{neutralize_controls, neutralized, USER_TEXT_POLICY};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which endpoint scoring and generation use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions` with the prompt formatted here by
    /// [`HttpConfig::template`] (exactly the same text as a local backend).
    Completions,
    /// `/v1/chat/completions`: the server applies its own chat template.
    Chat,
}

/// Settings of an [`HttpBackend`].
#[derive(Clone)]
pub struct HttpConfig {
    /// Base URL, e.g. `http://127.0.0.1:8765` (with or without `/v1`).
    pub base_url: String,
    /// Model name sent in every request.
    pub model: String,
    /// Bearer token, if the server wants one.
    pub api_key: Option<String>,
    /// Endpoint used for scoring and generation.
    pub endpoint: Endpoint,
    /// Limit for one request (connect + answer).
    pub timeout: Duration,
    /// Retries after a timeout, a dropped connection, 429 or 5xx.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// How many top log-probabilities to ask for at each generated step
    /// (verbalisers outside them are unknown; see [`AnswerScores::floor`]).
    pub top_logprobs: usize,
    /// Chat template used with [`Endpoint::Completions`].
    pub template: ChatTemplate,
    /// The model's tokenizer, if known: then a verbaliser's first token is
    /// computed exactly instead of matched by prefix among the returned tokens.
    pub tokenizer: Option<Arc<GgufTokenizer>>,
    /// Identifies the model in cache keys (e.g. its file's sha256); defaults
    /// to the model name.
    pub model_hash: Option<String>,
}

impl HttpConfig {
    /// Defaults for a local server: completions endpoint, ChatML, 60 s
    /// timeout, 3 retries from 250 ms, top 50 log-probabilities.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        HttpConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            endpoint: Endpoint::Completions,
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_millis(250),
            top_logprobs: 50,
            template: ChatTemplate::default(),
            tokenizer: None,
            model_hash: None,
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// A client of an OpenAI-compatible server.
#[derive(Debug)]
pub struct HttpBackend {
    config: HttpConfig,
    agent: ureq::Agent,
    requests: AtomicU64,
}

/// One generated step as returned by the server.
struct Step {
    token: String,
    top: Vec<(String, f32)>,
}

impl HttpBackend {
    /// A client with `config` (no request is made yet).
    pub fn new(config: HttpConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        HttpBackend {
            config,
            agent,
            requests: AtomicU64::new(0),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}/v1/{path}")
    }

    /// Lists the served model ids (`GET /v1/models`).
    ///
    /// # Errors
    /// As [`HttpBackend`]'s other calls.
    pub fn models(&self) -> Result<Vec<String>> {
        let value = self.request("models", None)?;
        let url = self.url("models");
        let data = value
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(&url, "no `data` list", &value))?;
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(String::from))
            .collect())
    }

    /// [`HttpBackend::send`], with the API key blanked out of any error (a
    /// server may echo the credential it refused).
    fn request(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        self.send(path, body)
            .map_err(|e| match &self.config.api_key {
                Some(key) if !key.is_empty() => redact(e, key),
                _ => e,
            })
    }

    /// Sends one request with retries (timeouts, dropped connections, 429,
    /// 5xx) and exponential backoff; other 4xx fail at once.
    fn send(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = self.url(path);
        let attempts = self.config.retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(self.config.backoff * 2u32.saturating_pow(attempt - 1));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match body {
                Some(body) => {
                    let mut req = self
                        .agent
                        .post(&url)
                        .header("content-type", "application/json");
                    if let Some(key) = &self.config.api_key {
                        req = req.header("authorization", &format!("Bearer {key}"));
                    }
                    req.send(body.to_string())
                }
                None => {
                    let mut req = self.agent.get(&url);
                    if let Some(key) = &self.config.api_key {
                        req = req.header("authorization", &format!("Bearer {key}"));
                    }
                    req.call()
                }
            };
            let mut response = match outcome {
                Ok(r) => r,
                Err(e) => {
                    // Timeouts, refused or reset connections: worth retrying.
                    last = format!("{e}");
                    continue;
                }
            };
            let status = response.status().as_u16();
            let text = match response
                .body_mut()
                .with_config()
                .limit(256 << 20)
                .read_to_string()
            {
                Ok(t) => t,
                Err(e) => {
                    last = format!("HTTP {status}, body cut off: {e}");
                    continue;
                }
            };
            if status == 429 || status >= 500 {
                last = format!("HTTP {status}: {}", snippet(&text));
                continue;
            }
            if status >= 400 {
                return Err(Error::Http {
                    url,
                    message: format!("HTTP {status}: {}", snippet(&text)),
                });
            }
            return serde_json::from_str(&text).map_err(|e| Error::Malformed {
                url: url.clone(),
                message: format!("{e}; body starts {:?}", snippet(&text)),
            });
        }
        Err(Error::Http {
            url,
            message: format!("failed after {attempts} attempt(s); last: {last}"),
        })
    }

    /// Runs the prompt and returns the generated steps with their top
    /// log-probabilities.
    fn steps(&self, messages: &[ChatMessage], max_tokens: usize, top: usize) -> Result<Vec<Step>> {
        let messages = &neutralized(messages)[..];
        match self.config.endpoint {
            Endpoint::Completions => {
                let prompt = self.config.template.render(messages, true);
                let body = json!({
                    "model": self.config.model,
                    "prompt": prompt,
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                    "top_p": 1.0,
                    "repeat_penalty": 1.0,
                    "logprobs": top,
                });
                let value = self.request("completions", Some(&body))?;
                completion_steps(&self.url("completions"), &value)
            }
            Endpoint::Chat => {
                let body = json!({
                    "model": self.config.model,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                    "top_p": 1.0,
                    "repeat_penalty": 1.0,
                    "logprobs": true,
                    "top_logprobs": top,
                });
                let value = self.request("chat/completions", Some(&body))?;
                chat_steps(&self.url("chat/completions"), &value)
            }
        }
    }

    /// The text of `candidate`'s first token, when a tokenizer is known.
    fn first_token_text(&self, candidate: &str) -> Result<Option<String>> {
        match &self.config.tokenizer {
            Some(tok) => match tok.encode_literal(candidate)?.first() {
                Some(&id) => Ok(Some(tok.decode(&[id])?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

fn reference_processing_unavailable() -> Error {
    Error::Invalid(
        "the reference's logits processing (repetition penalty 1.2, no repeated 3-gram) needs \
         the local GGUF backend: an OpenAI-compatible server applies its own penalties, if any; \
         use --logits-processing raw with --backend http"
            .into(),
    )
}

/// `e` with every occurrence of `key` replaced by `[api key]`.
fn redact(e: Error, key: &str) -> Error {
    let clean = |s: String| s.replace(key, "[api key]");
    match e {
        Error::Http { url, message } => Error::Http {
            url: clean(url),
            message: clean(message),
        },
        Error::Malformed { url, message } => Error::Malformed {
            url: clean(url),
            message: clean(message),
        },
        Error::NoLogprobs { url, message } => Error::NoLogprobs {
            url: clean(url),
            message: clean(message),
        },
        other => other,
    }
}

fn malformed(url: &str, what: &str, value: &Value) -> Error {
    Error::Malformed {
        url: url.to_string(),
        message: format!("{what}; got {}", snippet(&value.to_string())),
    }
}

fn first_choice<'a>(url: &str, value: &'a Value) -> Result<&'a Value> {
    if let Some(err) = value.get("error") {
        return Err(Error::Http {
            url: url.into(),
            message: format!("server error: {}", snippet(&err.to_string())),
        });
    }
    value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| malformed(url, "no `choices[0]`", value))
}

fn completion_steps(url: &str, value: &Value) -> Result<Vec<Step>> {
    let choice = first_choice(url, value)?;
    let logprobs = match choice.get("logprobs") {
        Some(v) if !v.is_null() => v,
        _ => {
            return Err(Error::NoLogprobs {
                url: url.into(),
                message: "`choices[0].logprobs` is missing".into(),
            })
        }
    };
    let tokens = logprobs
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(url, "no `logprobs.tokens`", value))?;
    let tops = logprobs
        .get("top_logprobs")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::NoLogprobs {
            url: url.into(),
            message: "`logprobs.top_logprobs` is missing".into(),
        })?;
    let mut steps = Vec::new();
    for (token, top) in tokens.iter().zip(tops) {
        let token = token
            .as_str()
            .ok_or_else(|| malformed(url, "a token is not a string", value))?;
        let top = top
            .as_object()
            .ok_or_else(|| Error::NoLogprobs {
                url: url.into(),
                message: "a `top_logprobs` entry is not an object".into(),
            })?
            .iter()
            .map(|(t, lp)| {
                lp.as_f64()
                    .map(|lp| (t.clone(), lp as f32))
                    .ok_or_else(|| malformed(url, "a log-probability is not a number", value))
            })
            .collect::<Result<Vec<_>>>()?;
        steps.push(Step {
            token: token.to_string(),
            top,
        });
    }
    Ok(steps)
}

fn chat_steps(url: &str, value: &Value) -> Result<Vec<Step>> {
    let choice = first_choice(url, value)?;
    let content = choice
        .get("logprobs")
        .and_then(|l| l.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| Error::NoLogprobs {
            url: url.into(),
            message: "`choices[0].logprobs.content` is missing".into(),
        })?;
    content
        .iter()
        .map(|entry| {
            let token = entry
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(url, "a logprobs entry has no `token`", value))?;
            let top = entry
                .get("top_logprobs")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::NoLogprobs {
                    url: url.into(),
                    message: "`top_logprobs` is missing".into(),
                })?
                .iter()
                .map(|t| {
                    let text = t.get("token").and_then(Value::as_str);
                    let lp = t.get("logprob").and_then(Value::as_f64);
                    match (text, lp) {
                        (Some(text), Some(lp)) => Ok((text.to_string(), lp as f32)),
                        _ => Err(malformed(
                            url,
                            "a top_logprobs entry lacks token/logprob",
                            value,
                        )),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Step {
                token: token.to_string(),
                top,
            })
        })
        .collect()
}

fn generated_text(url: &str, value: &Value, chat: bool) -> Result<(String, String)> {
    let choice = first_choice(url, value)?;
    let text = if chat {
        choice.get("message").and_then(|m| m.get("content"))
    } else {
        choice.get("text")
    }
    .and_then(Value::as_str)
    .ok_or_else(|| malformed(url, "no generated text", value))?;
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    Ok((text.to_string(), finish.to_string()))
}

impl LlmBackend for HttpBackend {
    fn identity(&self) -> BackendIdentity {
        BackendIdentity {
            kind: "openai".into(),
            model: self.config.model.clone(),
            model_hash: self
                .config
                .model_hash
                .clone()
                .unwrap_or_else(|| self.config.model.clone()),
        }
    }

    /// The server's URL (normalised), the endpoint, the top log-probabilities
    /// asked for, the template, the tokenizer, the fixed sampling settings and
    /// the user-text rule; never the API key, timeout or retries.
    fn answer_settings(&self) -> Value {
        json!({
            "url": self.url(""),
            "endpoint": match self.config.endpoint {
                Endpoint::Completions => "completions",
                Endpoint::Chat => "chat",
            },
            "top_logprobs": self.config.top_logprobs,
            "template": self.config.template,
            "tokenizer": self.config.tokenizer.as_ref().map(|t| t.fingerprint().to_string()),
            "sampling": { "temperature": 0.0, "top_p": 1.0, "repeat_penalty": 1.0 },
            "user_text": USER_TEXT_POLICY,
        })
    }

    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        Ok(self.config.template.render(messages, add_generation_prompt))
    }

    fn score_answer(&self, messages: &[ChatMessage], query: &ScoreQuery) -> Result<AnswerScores> {
        if !query.logits_processing.is_raw() {
            return Err(reference_processing_unavailable());
        }
        if query.raw_logits {
            return Err(Error::Invalid(
                "an OpenAI-compatible server returns log-probabilities, not raw logits; clipping scores at 0 needs a local (GGUF) backend".into(),
            ));
        }
        let url = self.url(match self.config.endpoint {
            Endpoint::Completions => "completions",
            Endpoint::Chat => "chat/completions",
        });
        let top_n = self.config.top_logprobs.max(query.top_k);
        let steps = self.steps(messages, query.max_steps.max(1), top_n)?;
        if steps.is_empty() {
            return Err(Error::Malformed {
                url,
                message: "the server generated no token (end of turn at once), so there is no answer step to score".into(),
            });
        }
        let index = steps
            .iter()
            .position(|s| !is_whitespace_token(&s.token))
            .unwrap_or(steps.len() - 1);
        let greedy = steps[..=index].iter().map(|s| s.token.clone()).collect();
        let mut top = steps[index].top.clone();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let floor = top.last().map(|t| t.1);
        let candidates = query
            .candidates
            .iter()
            .map(|c| {
                // Matched by surface form (leading space, `▁`, `Ġ`, case): see `surface`.
                let first = self.first_token_text(c)?;
                let found = crate::surface::match_candidate(c, first.as_deref(), &top);
                Ok(CandidateScore {
                    candidate: c.clone(),
                    token: found.map(|(t, _, _)| t.to_string()).or(first),
                    score: found.map(|(_, s, _)| s),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let top = top
            .into_iter()
            .take(query.top_k)
            .map(|(text, score)| TokenScore {
                id: None,
                text,
                score,
            })
            .collect();
        Ok(AnswerScores {
            kind: ScoreKind::LogProbs,
            step: index,
            greedy,
            top,
            candidates,
            floor,
        })
    }

    fn generate(&self, messages: &[ChatMessage], options: &GenerateOptions) -> Result<Generation> {
        if !options.logits_processing.is_raw() {
            return Err(reference_processing_unavailable());
        }
        let messages = &neutralized(messages)[..];
        let (path, body) = match self.config.endpoint {
            Endpoint::Completions => (
                "completions",
                json!({
                    "model": self.config.model,
                    "prompt": self.config.template.render(messages, true),
                    "max_tokens": options.max_tokens,
                    "temperature": 0.0,
                    "top_p": 1.0,
                    "repeat_penalty": 1.0,
                    "stop": options.stop,
                }),
            ),
            Endpoint::Chat => (
                "chat/completions",
                json!({
                    "model": self.config.model,
                    "messages": messages,
                    "max_tokens": options.max_tokens,
                    "temperature": 0.0,
                    "top_p": 1.0,
                    "repeat_penalty": 1.0,
                    "stop": options.stop,
                }),
            ),
        };
        let value = self.request(path, Some(&body))?;
        let url = self.url(path);
        let (text, finish_reason) = generated_text(&url, &value, path != "completions")?;
        let n_tokens = value
            .get("usage")
            .and_then(|u| u.get("completion_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        Ok(Generation {
            text,
            n_tokens,
            finish_reason,
        })
    }

    /// Uses `/v1/completions` with `echo` and `logprobs` (OpenAI convention:
    /// entry i is log p(token i | tokens before it), the first is null); the
    /// text is neutralised ([`crate::user_text::neutralize_controls`]).
    fn perplexity(&self, text: &str, add_bos: bool) -> Result<Perplexity> {
        self.echo_perplexity(&neutralize_controls(text), add_bos)
    }

    /// The chat rendered here with [`HttpConfig::template`], the messages
    /// neutralised ([`crate::user_text::neutralize_controls`]).
    fn perplexity_chat(&self, messages: &[ChatMessage], add_bos: bool) -> Result<Perplexity> {
        let text = self.config.template.render(&neutralized(messages), false);
        self.echo_perplexity(&text, add_bos)
    }
}

impl HttpBackend {
    /// Perplexity of `text` sent as it is (the server parses its special tokens).
    fn echo_perplexity(&self, text: &str, add_bos: bool) -> Result<Perplexity> {
        let url = self.url("completions");
        let prompt = if add_bos {
            let bos = self
                .config
                .tokenizer
                .as_ref()
                .and_then(|t| t.bos().map(|id| t.decode(&[id])))
                .transpose()?
                .ok_or_else(|| {
                    Error::Invalid("add_bos over HTTP needs the model's tokenizer".into())
                })?;
            format!("{bos}{text}")
        } else {
            text.to_string()
        };
        let body = json!({
            "model": self.config.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": true,
            "logprobs": 0,
        });
        let value = self.request("completions", Some(&body))?;
        let choice = first_choice(&url, &value)?;
        let lps = choice
            .get("logprobs")
            .and_then(|l| l.get("token_logprobs"))
            .and_then(Value::as_array)
            .ok_or_else(|| Error::NoLogprobs {
                url: url.clone(),
                message: "`logprobs.token_logprobs` is missing (echo)".into(),
            })?;
        let offsets = choice
            .get("logprobs")
            .and_then(|l| l.get("text_offset"))
            .and_then(Value::as_array);
        // Keep the prompt's tokens only (the echo is followed by one generated token).
        let n_prompt = match offsets {
            Some(offsets) => offsets
                .iter()
                .take_while(|o| o.as_u64().is_some_and(|o| (o as usize) < prompt.len()))
                .count(),
            None => lps.len().saturating_sub(1),
        };
        let values: Vec<f64> = lps
            .iter()
            .take(n_prompt)
            .skip(1)
            .map(|v| {
                v.as_f64().ok_or_else(|| {
                    malformed(&url, "a token log-probability is not a number", &value)
                })
            })
            .collect::<Result<_>>()?;
        Ok(Perplexity::from_logprobs(&values))
    }
}
