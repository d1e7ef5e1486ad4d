//! A tiny OpenAI-compatible server for tests, run on a thread of the calling
//! process (127.0.0.1, a free port): the shapes real servers answer with,
//! without a model. It replays the mock of the 2026-11-30 failure cases
//! (`cases/2026-11-30/19/server.py`): reviews with "great", "loved", "warm"
//! or "delight" lean positive, others negative, and the token surface form of
//! the answer follows [`MockMode`]. Every request is counted and its body
//! kept, so a test can assert that no call is repeated.

use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How the mock writes the tokens of its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockMode {
    /// `" Yes"`, `" no"`: the leading space llama.cpp and OpenAI report.
    LeadingSpace,
    /// `"Yes"`, `"no"`: bare words (the control).
    NoSpace,
    /// `"▁Yes"`: SentencePiece vocabulary entries.
    SentencePiece,
    /// `"ĠYes"`: GPT-2 byte-level vocabulary entries.
    ByteLevel,
    /// `" Affirmative"`, `" Negatory"`: words no built-in verbaliser uses.
    Unrelated,
    /// `"logprobs": null` (llama.cpp#11346's shape).
    NullLogprobs,
    /// HTTP 401 whose message echoes the credential it refused, as some
    /// hosted APIs do.
    Unauthorized,
}

/// A running mock server; stopped when dropped.
#[derive(Debug)]
pub struct MockServer {
    url: String,
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl MockServer {
    /// Starts a server answering in `mode`.
    ///
    /// # Panics
    /// When no local port can be bound (a test fixture: nothing to recover).
    pub fn start(mode: MockMode) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds a local port");
        let url = format!("http://{}", listener.local_addr().expect("has an address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, b, s) = (requests.clone(), bodies.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, b) = (r.clone(), b.clone());
                std::thread::spawn(move || serve(stream, mode, &r, &b));
            }
        });
        MockServer {
            url,
            requests,
            bodies,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests received so far (`GET /v1/models` included).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The JSON bodies of the POST requests received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn serve(
    mut stream: TcpStream,
    mode: MockMode,
    requests: &AtomicUsize,
    bodies: &Mutex<Vec<Value>>,
) {
    let Some((method, path, auth, body)) = read_request(&stream) else {
        return;
    };
    requests.fetch_add(1, Ordering::SeqCst);
    if mode == MockMode::Unauthorized {
        let text = json!({ "error": { "message": format!("Incorrect API key provided: {auth}") } })
            .to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        return;
    }
    let answer = if method == "GET" {
        json!({ "data": [{ "id": "mock" }] })
    } else {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(body.clone());
        answer(mode, &path, &body)
    };
    let text = answer.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Method, path, `authorization` header and body of one request.
fn read_request(stream: &TcpStream) -> Option<(String, String, String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut words = first.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let mut length = 0usize;
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            } else if k.eq_ignore_ascii_case("authorization") {
                auth = v.trim().to_string();
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, auth, body))
}

/// The mock's answer to a POST, as `server.py` gives it.
fn answer(mode: MockMode, path: &str, body: &Value) -> Value {
    if path.contains("chat") {
        return json!({ "choices": [{ "message": { "role": "assistant", "content": "yes" },
            "logprobs": null, "finish_reason": "stop" }] });
    }
    let prompt = body.get("prompt").and_then(Value::as_str).unwrap_or("");
    if body.get("echo").and_then(Value::as_bool) == Some(true) {
        let tokens: Vec<&str> = prompt.split(' ').collect();
        let mut lps = vec![Value::Null];
        lps.extend(std::iter::repeat_n(
            json!(-1.0),
            tokens.len().saturating_sub(1),
        ));
        return json!({ "choices": [{ "text": prompt, "finish_reason": "length",
            "logprobs": { "tokens": tokens, "token_logprobs": lps, "top_logprobs": null } }] });
    }
    if mode == MockMode::NullLogprobs {
        return json!({ "choices": [{ "text": " yes", "index": 0, "logprobs": null,
            "finish_reason": "length" }] });
    }
    if body.get("logprobs").is_none() {
        return json!({ "choices": [{ "text": " positive", "index": 0, "logprobs": null,
            "finish_reason": "stop" }], "usage": { "completion_tokens": 1 } });
    }
    let lower = body.to_string().to_lowercase();
    let liked = ["great", "loved", "warm", "delight"]
        .iter()
        .any(|w| lower.contains(w));
    let (a, b) = if liked { (-0.1, -2.5) } else { (-2.5, -0.1) };
    let words: [(&str, f64); 8] = match mode {
        MockMode::Unrelated => [
            ("Affirmative", a),
            ("affirmative", a - 0.3),
            ("Negatory", b),
            ("negatory", b - 0.3),
            ("Fine", a - 1.0),
            ("Awful", b - 1.0),
            ("Pleased", a - 0.5),
            ("Displeased", b - 0.5),
        ],
        _ => [
            ("Yes", a),
            ("yes", a - 0.3),
            ("No", b),
            ("no", b - 0.3),
            ("Good", a - 1.0),
            ("Bad", b - 1.0),
            ("positive", a - 0.5),
            ("negative", b - 0.5),
        ],
    };
    let marker = match mode {
        MockMode::NoSpace => "",
        MockMode::SentencePiece => "\u{2581}",
        MockMode::ByteLevel => "\u{0120}",
        _ => " ",
    };
    let mut top = Map::new();
    let mut best = (String::new(), f64::NEG_INFINITY);
    for (w, lp) in words {
        let token = format!("{marker}{w}");
        if lp > best.1 {
            best = (token.clone(), lp);
        }
        top.insert(token, json!(lp));
    }
    json!({ "choices": [{ "text": best.0, "index": 0, "finish_reason": "length",
        "logprobs": { "tokens": [best.0], "token_logprobs": [best.1], "top_logprobs": [top] } }] })
}
