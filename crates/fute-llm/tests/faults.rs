//! Fault handling of the HTTP backend against a fake OpenAI-compatible server
//! started in the test on 127.0.0.1: timeouts, 5xx, malformed JSON, missing
//! log-probabilities, a server dying mid-run (and the rerun resuming from the
//! cache with no call repeated).

use fute_llm::{
    label_distribution, CachedBackend, Endpoint, Error, HttpBackend, HttpConfig, LabelSettings,
    LlmBackend, PromptInput, PromptSet,
};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the fake server does with request number n.
enum Reply {
    Json(String),
    Status(u16, String),
    /// Hold the connection open without answering.
    Hang(Duration),
    /// Close the connection without answering (a dying server).
    Drop,
}

struct Fake {
    url: String,
    hits: Arc<AtomicUsize>,
    bodies: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Fake {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let path = first.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
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
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, String::from_utf8_lossy(&body).into_owned()))
}

fn fake(script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = Arc::new(script);
    let (h, b) = (hits.clone(), bodies.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let (h, b, script) = (h.clone(), b.clone(), script.clone());
            std::thread::spawn(move || {
                let Some((path, body)) = read_request(&mut stream) else {
                    return;
                };
                let n = h.fetch_add(1, Ordering::SeqCst);
                b.lock().unwrap().push(body);
                let (status, text) = match script(n, &path) {
                    Reply::Json(text) => (200, text),
                    Reply::Status(status, text) => (status, text),
                    Reply::Hang(d) => {
                        std::thread::sleep(d);
                        return;
                    }
                    Reply::Drop => return,
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    Fake { url, hits, bodies }
}

/// A `/v1/completions` answer whose single generated token is `token`.
fn completion(token: &str, top: &[(&str, f64)]) -> String {
    let top: serde_json::Map<String, serde_json::Value> = top
        .iter()
        .map(|(t, lp)| (t.to_string(), json!(lp)))
        .collect();
    json!({
        "choices": [{
            "text": token,
            "index": 0,
            "finish_reason": "length",
            "logprobs": {
                "tokens": [token],
                "token_logprobs": [top.get(token).cloned().unwrap_or(json!(-0.1))],
                "top_logprobs": [top],
                "text_offset": [0],
            },
        }]
    })
    .to_string()
}

fn yes_answer() -> String {
    completion(
        "yes",
        &[("yes", -0.2), ("no", -1.9), ("Yes", -3.0), ("No", -4.0)],
    )
}

fn client(url: &str, retries: u32, timeout_ms: u64) -> HttpBackend {
    let mut config = HttpConfig::new(url, "fake-model");
    config.retries = retries;
    config.backoff = Duration::from_millis(10);
    config.timeout = Duration::from_millis(timeout_ms);
    HttpBackend::new(config)
}

fn sa_distribution<B: LlmBackend + ?Sized>(backend: &B, text: &str) -> fute_llm::Result<Vec<f64>> {
    let set = PromptSet::builtin("sa").unwrap();
    label_distribution(
        backend,
        &set,
        4,
        &PromptInput::text(text),
        &LabelSettings::default(),
    )
    .map(|d| d.probs)
}

#[test]
fn label_distribution_from_a_server_answer() {
    let server = fake(|_, _| Reply::Json(yes_answer()));
    let backend = client(&server.url, 0, 5_000);
    let probs = sa_distribution(&backend, "Great.").unwrap();
    // negative = max(no, No) = -1.9, positive = max(yes, Yes) = -0.2.
    let want_pos = 1.0 / (1.0 + (-1.9f64 - -0.2).exp());
    assert!((probs[1] - want_pos).abs() < 1e-6, "{probs:?}");
    // The request asked for greedy decoding with log-probabilities, on the
    // ChatML-formatted prompt.
    let body: serde_json::Value = serde_json::from_str(&server.bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(body["temperature"], json!(0.0));
    assert_eq!(body["logprobs"], json!(50));
    assert!(body["prompt"]
        .as_str()
        .unwrap()
        .ends_with("<|im_end|>\n<|im_start|>assistant\n"));
}

#[test]
fn server_errors_are_retried_with_backoff_then_succeed() {
    let server = fake(|n, _| {
        if n < 2 {
            Reply::Status(500, "{\"error\":\"busy\"}".into())
        } else {
            Reply::Json(yes_answer())
        }
    });
    let backend = client(&server.url, 3, 5_000);
    sa_distribution(&backend, "Great.").unwrap();
    assert_eq!(server.hits(), 3);
    assert_eq!(backend.requests_sent(), 3);
}

#[test]
fn persistent_500_gives_a_clear_error_after_the_retries() {
    let server = fake(|_, _| Reply::Status(503, "model is loading".into()));
    let backend = client(&server.url, 2, 5_000);
    let err = sa_distribution(&backend, "Great.").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert!(text.contains("failed after 3 attempt(s)"), "{text}");
    assert!(text.contains("HTTP 503: model is loading"), "{text}");
    assert_eq!(server.hits(), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let server = fake(|_, _| Reply::Status(404, "no such model".into()));
    let backend = client(&server.url, 3, 5_000);
    let err = sa_distribution(&backend, "Great.").unwrap_err().to_string();
    assert!(err.contains("HTTP 404: no such model"), "{err}");
    assert_eq!(server.hits(), 1);
}

#[test]
fn timeouts_are_retried_then_reported() {
    let server = fake(|_, _| Reply::Hang(Duration::from_secs(3)));
    let backend = client(&server.url, 1, 300);
    let start = std::time::Instant::now();
    let err = sa_distribution(&backend, "Great.").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert!(text.contains("failed after 2 attempt(s)"), "{text}");
    assert!(text.to_lowercase().contains("timeout"), "{text}");
    assert_eq!(server.hits(), 2);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn malformed_json_is_a_clear_error() {
    let server = fake(|_, _| Reply::Json("{\"choices\": [{\"text\": \"yes\"".into()));
    let backend = client(&server.url, 3, 5_000);
    let err = sa_distribution(&backend, "Great.").unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("body starts"), "{err}");
    assert_eq!(server.hits(), 1, "a malformed answer is not retried");

    let server = fake(|_, _| Reply::Json("{\"object\": \"list\"}".into()));
    let err = sa_distribution(&client(&server.url, 0, 5_000), "Great.").unwrap_err();
    assert!(err.to_string().contains("no `choices[0]`"), "{err}");
}

#[test]
fn a_server_without_logprobs_is_a_clear_error() {
    let plain = json!({"choices": [{"text": "yes", "index": 0, "logprobs": null, "finish_reason": "length"}]});
    let server = fake(move |_, _| Reply::Json(plain.to_string()));
    let err = sa_distribution(&client(&server.url, 3, 5_000), "Great.").unwrap_err();
    assert!(matches!(err, Error::NoLogprobs { .. }), "{err:?}");
    assert!(
        err.to_string().contains("returned no log-probabilities"),
        "{err}"
    );
    assert_eq!(server.hits(), 1);

    let chat = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}]});
    let server = fake(move |_, _| Reply::Json(chat.to_string()));
    let mut config = HttpConfig::new(&server.url, "fake-model");
    config.endpoint = Endpoint::Chat;
    let err = sa_distribution(&HttpBackend::new(config), "Great.").unwrap_err();
    assert!(matches!(err, Error::NoLogprobs { .. }), "{err:?}");
}

#[test]
fn raw_logits_are_refused_over_http() {
    let server = fake(|_, _| Reply::Json(yes_answer()));
    let set = PromptSet::builtin("sa").unwrap();
    let settings = LabelSettings {
        clip_at_zero: true,
        ..LabelSettings::default()
    };
    let err = label_distribution(
        &client(&server.url, 0, 5_000),
        &set,
        0,
        &PromptInput::text("x"),
        &settings,
    )
    .unwrap_err();
    assert!(err.to_string().contains("raw logits"), "{err}");
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_server_dying_mid_run_resumes_from_the_cache_without_repeating_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..6).map(|i| format!("Review number {i}.")).collect();

    // The server answers 3 calls, then drops every connection until it is
    // "restarted" (on the same address: the endpoint is part of the cache key).
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = restarted.clone();
    let dying = fake(move |n, _| {
        if n < 3 || flag.load(Ordering::SeqCst) {
            Reply::Json(yes_answer())
        } else {
            Reply::Drop
        }
    });
    let first = CachedBackend::open(client(&dying.url, 2, 5_000), dir.path()).unwrap();
    let mut done = Vec::new();
    let mut failure = None;
    for text in &texts {
        match sa_distribution(&first, text) {
            Ok(p) => done.push(p),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    assert_eq!(done.len(), 3);
    let failure = failure.expect("the dead server fails the run");
    assert!(matches!(failure, Error::Http { .. }), "{failure:?}");
    assert!(
        failure.to_string().contains("failed after 3 attempt(s)"),
        "{failure}"
    );
    assert_eq!(dying.hits(), 6, "3 answers + 1 call tried 3 times");
    drop(first);

    // Rerun once the server is back: only the 3 missing calls reach it.
    restarted.store(true, Ordering::SeqCst);
    let fresh = &dying;
    let second = CachedBackend::open(client(&fresh.url, 2, 5_000), dir.path()).unwrap();
    let all: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| sa_distribution(&second, t).unwrap())
        .collect();
    assert_eq!(fresh.hits(), 6 + 3);
    assert_eq!(&all[..3], &done[..]);
    let stats = second.stats();
    assert_eq!((stats.hits, stats.misses), (3, 3));
    drop(second);

    // A third run costs nothing.
    let third = CachedBackend::open(client(&fresh.url, 2, 5_000), dir.path()).unwrap();
    for t in &texts {
        sa_distribution(&third, t).unwrap();
    }
    assert_eq!(fresh.hits(), 6 + 3);
    assert_eq!(third.stats().hits, 6);
    assert_eq!(third.inner().requests_sent(), 0);
}
