//! Every LLM call cached on disk, so a rerun costs nothing and a crash loses
//! nothing.
//!
//! [`CallCache`] is an append-only JSONL file per backend identity
//! (`<dir>/<kind>-<model hash>.jsonl`), one line `{"key", "op", "value"}` per
//! call, flushed when the call returns. A line cut off by a crash is skipped
//! when the file is opened again. [`CachedBackend`] wraps any
//! [`LlmBackend`]; the key is the sha256 of (backend kind, model, model hash,
//! the backend's [`LlmBackend::answer_settings`] (for a server: URL, endpoint,
//! top log-probabilities, template), operation, the exact messages or text,
//! every setting of the request). Credentials, timeouts and retry counts
//! change no answer and are not in the key; nothing but answers is written.
//! Failed calls are not cached.

use crate::backend::{
    AnswerScores, BackendIdentity, GenerateOptions, Generation, LlmBackend, Perplexity, ScoreQuery,
};
use crate::chat::ChatMessage;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// `<workspace>/.fute/cache/llm`.
pub fn default_cache_dir(workspace: impl AsRef<Path>) -> PathBuf {
    workspace.as_ref().join(".fute").join("cache").join("llm")
}

/// An append-only JSONL file of call results keyed by hash.
#[derive(Debug)]
pub struct CallCache {
    path: PathBuf,
    entries: Mutex<HashMap<String, Value>>,
    file: Mutex<File>,
    skipped_lines: usize,
}

impl CallCache {
    /// Opens (creating) the cache file at `path` and loads its entries.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created or read.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut entries = HashMap::new();
        let mut skipped_lines = 0;
        for line in BufReader::new(&file).lines() {
            let line = line.map_err(|e| Error::io(&path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(mut obj)) => match (obj.remove("key"), obj.remove("value")) {
                    (Some(Value::String(key)), Some(value)) => {
                        entries.insert(key, value);
                    }
                    _ => skipped_lines += 1,
                },
                _ => skipped_lines += 1,
            }
        }
        // A crash may have left a last line without its newline: end it so the
        // next entry starts on a line of its own.
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| Error::io(&path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(CallCache {
            path,
            entries: Mutex::new(entries),
            file: Mutex::new(file),
            skipped_lines,
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of cached calls.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines that could not be read when the file was opened (a line cut off
    /// by a crash).
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// The cached value of `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Records `value` under `key` (appended and flushed at once).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn put(&self, key: &str, op: &str, value: Value) -> Result<()> {
        let mut line = serde_json::to_string(&json!({ "key": key, "op": op, "value": value }))
            .map_err(|e| Error::Cache {
                path: self.path.display().to_string(),
                message: e.to_string(),
            })?;
        line.push('\n');
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(line.as_bytes())
                .and_then(|_| file.flush())
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), value);
        Ok(())
    }
}

/// Hits and misses of a [`CachedBackend`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls passed to the backend (and then cached).
    pub misses: u64,
}

/// Any backend with its calls cached on disk.
#[derive(Debug)]
pub struct CachedBackend<B> {
    inner: B,
    identity: BackendIdentity,
    settings: Value,
    cache: CallCache,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<B: LlmBackend> CachedBackend<B> {
    /// Wraps `inner`, caching in `dir` (e.g. [`default_cache_dir`]).
    ///
    /// # Errors
    /// [`Error::Io`] when the cache file cannot be opened.
    pub fn open(inner: B, dir: impl AsRef<Path>) -> Result<Self> {
        let identity = inner.identity();
        let settings = inner.answer_settings();
        let short: String = hex::encode(Sha256::digest(
            format!(
                "{}\n{}\n{}",
                identity.kind, identity.model, identity.model_hash
            )
            .as_bytes(),
        ))
        .chars()
        .take(16)
        .collect();
        let kind: String = identity
            .kind
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let cache = CallCache::open(dir.as_ref().join(format!("{kind}-{short}.jsonl")))?;
        Ok(CachedBackend {
            inner,
            identity,
            settings,
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The cache.
    pub fn cache(&self) -> &CallCache {
        &self.cache
    }

    /// Hits and misses since this value was made.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn key(&self, op: &str, request: &Value) -> String {
        let material = json!({
            "kind": self.identity.kind,
            "model": self.identity.model,
            "model_hash": self.identity.model_hash,
            "settings": self.settings,
            "op": op,
            "request": request,
        });
        hex::encode(Sha256::digest(material.to_string().as_bytes()))
    }

    fn cached<T: Serialize + DeserializeOwned>(
        &self,
        op: &str,
        request: Value,
        compute: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let key = self.key(op, &request);
        if let Some(value) = self.cache.get(&key) {
            if let Ok(hit) = serde_json::from_value::<T>(value) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let fresh = compute()?;
        let value = serde_json::to_value(&fresh).map_err(|e| Error::Cache {
            path: self.cache.path().display().to_string(),
            message: e.to_string(),
        })?;
        self.cache.put(&key, op, value)?;
        Ok(fresh)
    }
}

impl<B: LlmBackend> LlmBackend for CachedBackend<B> {
    fn identity(&self) -> BackendIdentity {
        self.identity.clone()
    }

    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    fn answer_settings(&self) -> Value {
        self.settings.clone()
    }

    fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.inner.render_chat(messages, add_generation_prompt)
    }

    fn score_answer(&self, messages: &[ChatMessage], query: &ScoreQuery) -> Result<AnswerScores> {
        self.cached(
            "score_answer",
            json!({ "messages": messages, "query": query }),
            || self.inner.score_answer(messages, query),
        )
    }

    fn generate(&self, messages: &[ChatMessage], options: &GenerateOptions) -> Result<Generation> {
        self.cached(
            "generate",
            json!({ "messages": messages, "options": options }),
            || self.inner.generate(messages, options),
        )
    }

    fn perplexity(&self, text: &str, add_bos: bool) -> Result<Perplexity> {
        self.cached(
            "perplexity",
            json!({ "text": text, "add_bos": add_bos }),
            || self.inner.perplexity(text, add_bos),
        )
    }

    fn perplexity_chat(&self, messages: &[ChatMessage], add_bos: bool) -> Result<Perplexity> {
        self.cached(
            "perplexity_chat",
            json!({ "messages": messages, "add_bos": add_bos }),
            || self.inner.perplexity_chat(messages, add_bos),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{AnswerScores, ScoreKind};
    use std::sync::atomic::AtomicUsize;

    /// Counts every call that reaches the backend.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
    }

    impl LlmBackend for Counting {
        fn identity(&self) -> BackendIdentity {
            BackendIdentity {
                kind: "counting".into(),
                model: "m".into(),
                model_hash: "h1".into(),
            }
        }
        fn answer_settings(&self) -> Value {
            Value::Null
        }
        fn render_chat(&self, _: &[ChatMessage], _: bool) -> Result<String> {
            Ok(String::new())
        }
        fn score_answer(
            &self,
            messages: &[ChatMessage],
            query: &ScoreQuery,
        ) -> Result<AnswerScores> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(AnswerScores {
                kind: ScoreKind::LogProbs,
                step: 0,
                greedy: vec![messages[0].content.clone()],
                top: vec![],
                candidates: vec![],
                floor: Some(query.top_k as f32),
            })
        }
        fn generate(
            &self,
            messages: &[ChatMessage],
            options: &GenerateOptions,
        ) -> Result<Generation> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Generation {
                text: format!("{}:{}", messages[0].content, options.max_tokens),
                n_tokens: 1,
                finish_reason: "stop".into(),
            })
        }
        fn perplexity(&self, text: &str, _: bool) -> Result<Perplexity> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Perplexity::from_logprobs(&[-(text.len() as f64)]))
        }
        fn perplexity_chat(&self, messages: &[ChatMessage], b: bool) -> Result<Perplexity> {
            self.perplexity(&messages[0].content, b)
        }
    }

    fn run_all(b: &CachedBackend<Counting>) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..5 {
            let m = [ChatMessage::user(format!("input {i}"))];
            let q = ScoreQuery {
                top_k: i,
                ..ScoreQuery::default()
            };
            out.push(format!("{:?}", b.score_answer(&m, &q).unwrap()));
            out.push(format!(
                "{:?}",
                b.generate(&m, &GenerateOptions::default()).unwrap()
            ));
            out.push(format!(
                "{:?}",
                b.perplexity(&m[0].content, i % 2 == 0).unwrap()
            ));
        }
        out
    }

    #[test]
    fn no_call_is_repeated_across_reruns() {
        let dir = tempfile::tempdir().unwrap();
        let first = CachedBackend::open(Counting::default(), dir.path()).unwrap();
        let a = run_all(&first);
        assert_eq!(first.inner().calls.load(Ordering::SeqCst), 15);
        // Same calls again in the same process: all hits.
        assert_eq!(run_all(&first), a);
        assert_eq!(first.inner().calls.load(Ordering::SeqCst), 15);
        assert_eq!(
            first.stats(),
            CacheStats {
                hits: 15,
                misses: 15
            }
        );
        drop(first);
        // A new process (reopened file): zero calls, same answers.
        let second = CachedBackend::open(Counting::default(), dir.path()).unwrap();
        assert_eq!(run_all(&second), a);
        assert_eq!(second.inner().calls.load(Ordering::SeqCst), 0);
        // Other settings are other keys.
        let m = [ChatMessage::user("input 0")];
        second
            .score_answer(
                &m,
                &ScoreQuery {
                    max_steps: 3,
                    ..ScoreQuery::default()
                },
            )
            .unwrap();
        assert_eq!(second.inner().calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_line_cut_off_by_a_crash_is_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = CachedBackend::open(Counting::default(), dir.path()).unwrap();
        run_all(&first);
        let path = first.cache().path().to_path_buf();
        drop(first);
        // Simulate a crash in the middle of writing one more entry.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"key\": \"abc\", \"op\": \"gen").unwrap();
        drop(f);
        let second = CachedBackend::open(Counting::default(), dir.path()).unwrap();
        assert_eq!(second.cache().skipped_lines(), 1);
        assert_eq!(second.cache().len(), 15);
        run_all(&second);
        assert_eq!(second.inner().calls.load(Ordering::SeqCst), 0);
        // New entries after the broken line are readable next time.
        second.perplexity("new text", false).unwrap();
        drop(second);
        let third = CachedBackend::open(Counting::default(), dir.path()).unwrap();
        assert_eq!(third.cache().len(), 16);
        assert_eq!(third.cache().skipped_lines(), 1);
    }

    #[test]
    fn another_model_hash_does_not_share_entries() {
        struct Other(Counting);
        impl LlmBackend for Other {
            fn identity(&self) -> BackendIdentity {
                BackendIdentity {
                    model_hash: "h2".into(),
                    ..self.0.identity()
                }
            }
            fn answer_settings(&self) -> Value {
                Value::Null
            }
            fn render_chat(&self, m: &[ChatMessage], g: bool) -> Result<String> {
                self.0.render_chat(m, g)
            }
            fn score_answer(&self, m: &[ChatMessage], q: &ScoreQuery) -> Result<AnswerScores> {
                self.0.score_answer(m, q)
            }
            fn generate(&self, m: &[ChatMessage], o: &GenerateOptions) -> Result<Generation> {
                self.0.generate(m, o)
            }
            fn perplexity(&self, t: &str, b: bool) -> Result<Perplexity> {
                self.0.perplexity(t, b)
            }
            fn perplexity_chat(&self, m: &[ChatMessage], b: bool) -> Result<Perplexity> {
                self.0.perplexity_chat(m, b)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let a = CachedBackend::open(Counting::default(), dir.path()).unwrap();
        a.perplexity("same", false).unwrap();
        let b = CachedBackend::open(Other(Counting::default()), dir.path()).unwrap();
        b.perplexity("same", false).unwrap();
        assert_eq!(b.inner().0.calls.load(Ordering::SeqCst), 1);
        assert_ne!(a.cache().path(), b.cache().path());
    }
}
