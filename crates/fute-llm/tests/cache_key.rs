//! A cache key holds everything that changes the answer (case 25 of
//! 2026-11-30: a second server with the same `--model` name was never
//! contacted; every answer came from the first server's cache), and nothing
//! else: credentials, timeouts and retries share entries, and the API key is
//! written nowhere.

use fute_llm::mock::{MockMode, MockServer};
use fute_llm::{
    CachedBackend, ChatMessage, ChatTemplate, Endpoint, GenerateOptions, HttpBackend, HttpConfig,
    LlmBackend, LogitsProcessing, ScoreQuery,
};
use std::path::Path;
use std::time::Duration;

const KEY: &str = "sk-test-8f3a1c9e77d24b6b";

fn base(url: &str) -> HttpConfig {
    let mut c = HttpConfig::new(url, "m");
    c.retries = 0;
    c
}

/// One scoring and one generation call through the cache in `dir`.
fn calls(config: HttpConfig, dir: &Path, query: &ScoreQuery, options: &GenerateOptions) {
    let cached = CachedBackend::open(HttpBackend::new(config), dir).unwrap();
    let messages = [ChatMessage::user("a warm and funny film")];
    // Errors (a chat endpoint without logprobs, a refused setting) still count as calls made.
    let _ = cached.score_answer(&messages, query);
    let _ = cached.generate(&messages, options);
}

#[test]
fn every_answer_shaping_setting_is_in_the_key_and_nothing_else() {
    let a = MockServer::start(MockMode::NoSpace);
    let b = MockServer::start(MockMode::NoSpace);
    let dir = tempfile::tempdir().unwrap();
    let q = ScoreQuery {
        candidates: vec!["yes".into(), "no".into()],
        ..ScoreQuery::default()
    };
    let o = GenerateOptions {
        max_tokens: 4,
        ..GenerateOptions::default()
    };
    calls(base(a.url()), dir.path(), &q, &o);
    assert_eq!(a.requests(), 2);

    // Changes that cannot change an answer: all hits.
    let mut same = base(a.url());
    same.api_key = Some(KEY.into());
    same.timeout = Duration::from_secs(7);
    same.retries = 9;
    same.backoff = Duration::from_millis(1);
    calls(same, dir.path(), &q, &o);
    let mut slash = base(&format!("{}/v1/", a.url()));
    slash.api_key = Some("another-key".into());
    calls(slash, dir.path(), &q, &o);
    assert_eq!(
        a.requests(),
        2,
        "credentials, timeouts, retries and URL spelling share entries"
    );

    // Each change that can change an answer: a miss on server A (or a call to B).
    let variants: Vec<(&str, HttpConfig, ScoreQuery, GenerateOptions)> = vec![
        (
            "model",
            HttpConfig::new(a.url(), "m2"),
            q.clone(),
            o.clone(),
        ),
        (
            "model hash",
            HttpConfig {
                model_hash: Some("v2".into()),
                ..base(a.url())
            },
            q.clone(),
            o.clone(),
        ),
        (
            "endpoint",
            HttpConfig {
                endpoint: Endpoint::Chat,
                ..base(a.url())
            },
            q.clone(),
            o.clone(),
        ),
        (
            "top log-probabilities",
            HttpConfig {
                top_logprobs: 5,
                ..base(a.url())
            },
            q.clone(),
            o.clone(),
        ),
        (
            "template",
            HttpConfig {
                template: ChatTemplate {
                    default_system: Some("Be brief.".into()),
                    ..ChatTemplate::default()
                },
                ..base(a.url())
            },
            q.clone(),
            o.clone(),
        ),
        (
            "max tokens / steps",
            base(a.url()),
            ScoreQuery {
                max_steps: 2,
                ..q.clone()
            },
            GenerateOptions {
                max_tokens: 5,
                ..o.clone()
            },
        ),
        (
            "top-k / stop",
            base(a.url()),
            ScoreQuery {
                top_k: 3,
                ..q.clone()
            },
            GenerateOptions {
                stop: vec!["\n".into()],
                ..o.clone()
            },
        ),
        (
            "candidates / max tokens",
            base(a.url()),
            ScoreQuery {
                candidates: vec!["yes".into()],
                ..q.clone()
            },
            GenerateOptions {
                max_tokens: 6,
                ..o.clone()
            },
        ),
    ];
    for (what, config, query, options) in variants {
        let before = a.requests();
        calls(config, dir.path(), &query, &options);
        assert_eq!(
            a.requests(),
            before + 2,
            "changing the {what} must miss the cache"
        );
    }
    // The logits-processing switch is a request setting: a miss (refused by a
    // server backend before any request, so nothing reaches A either, and
    // nothing is cached).
    let before = a.requests();
    let reference = ScoreQuery {
        logits_processing: LogitsProcessing::Reference,
        ..q.clone()
    };
    let cached = CachedBackend::open(HttpBackend::new(base(a.url())), dir.path()).unwrap();
    let err = cached
        .score_answer(&[ChatMessage::user("a warm and funny film")], &reference)
        .unwrap_err();
    assert!(err.to_string().contains("GGUF"), "{err}");
    assert_eq!(cached.stats().misses, 1);
    assert_eq!(a.requests(), before);

    // Another server with the same model name is contacted (case 25).
    calls(base(b.url()), dir.path(), &q, &o);
    assert_eq!(b.requests(), 2);
}

#[test]
fn the_api_key_is_written_nowhere() {
    let a = MockServer::start(MockMode::LeadingSpace);
    let dir = tempfile::tempdir().unwrap();
    let mut c = base(a.url());
    c.api_key = Some(KEY.into());
    assert!(!format!("{c:?}").contains(KEY));
    let backend = HttpBackend::new(c.clone());
    assert!(!backend.answer_settings().to_string().contains(KEY));
    assert!(!format!("{:?}", backend.identity()).contains(KEY));
    calls(
        c,
        dir.path(),
        &ScoreQuery::default(),
        &GenerateOptions::default(),
    );
    // A server that echoes the refused credential: the error names it not.
    let denied = MockServer::start(MockMode::Unauthorized);
    let mut c = base(denied.url());
    c.api_key = Some(KEY.into());
    let err = HttpBackend::new(c)
        .generate(&[ChatMessage::user("hi")], &GenerateOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("[api key]"), "{err}");
    assert!(!err.contains(KEY), "{err}");
    // The mock saw the key (it was sent), the cache files never hold it.
    assert!(a.requests() > 0);
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(KEY));
        files += 1;
    }
    assert_eq!(files, 1);
}
