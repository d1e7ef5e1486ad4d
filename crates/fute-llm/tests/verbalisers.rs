//! Verbaliser matching across the token surface forms real servers return
//! (case 19 of 2026-11-30: a server whose tokens carry a leading space made
//! every label unscored and every distribution uniform, silently), against
//! the in-process mock server.

use fute_llm::mock::{MockMode, MockServer};
use fute_llm::{
    label_distribution, unscored, HttpBackend, HttpConfig, LabelSettings, PromptInput, PromptSet,
};

fn backend(server: &MockServer) -> HttpBackend {
    let mut config = HttpConfig::new(server.url(), "m");
    config.retries = 0;
    HttpBackend::new(config)
}

/// Label distributions of the vanilla SA prompts on a liked and a disliked review.
fn distributions(mode: MockMode) -> Vec<fute_llm::LabelDistribution> {
    let server = MockServer::start(mode);
    let b = backend(&server);
    let set = PromptSet::builtin("sa").unwrap();
    let mut out = Vec::new();
    for text in ["I loved this warm film.", "A dull and tiresome mess."] {
        for p in 0..set.prompts.len() {
            if set.prompts[p].mode == fute_llm::PromptMode::Cot {
                continue;
            }
            out.push(
                label_distribution(
                    &b,
                    &set,
                    p,
                    &PromptInput::text(text),
                    &LabelSettings::default(),
                )
                .unwrap(),
            );
        }
    }
    out
}

#[test]
fn every_surface_form_scores_like_bare_words() {
    let bare = distributions(MockMode::NoSpace);
    let u = unscored(&bare);
    assert_eq!((u.inputs, u.some_labels, u.all_labels), (20, 0, 0), "{u:?}");
    // Liked reviews come out positive (label 1), disliked ones negative.
    assert!(bare[..10].iter().all(|d| d.predicted == 1), "{bare:?}");
    assert!(bare[10..].iter().all(|d| d.predicted == 0), "{bare:?}");
    // Prompt 0 (yes/no): label scores are the mock's log-probabilities, −0.1 and −2.5.
    assert_eq!(bare[0].scores, [f64::from(-2.5f32), f64::from(-0.1f32)]);
    for mode in [
        MockMode::LeadingSpace,
        MockMode::SentencePiece,
        MockMode::ByteLevel,
    ] {
        let d = distributions(mode);
        let u = unscored(&d);
        assert_eq!(u.some_labels, 0, "{mode:?}: {u:?}");
        for (a, b) in d.iter().zip(&bare) {
            assert_eq!(a.probs, b.probs, "{mode:?}");
            assert_eq!(a.scores, b.scores, "{mode:?}");
        }
    }
}

#[test]
fn verbalisers_the_server_never_returns_are_counted_and_refused() {
    let d = distributions(MockMode::Unrelated);
    let u = unscored(&d);
    assert_eq!((u.inputs, u.some_labels, u.all_labels), (20, 20, 20));
    assert!(d.iter().all(|x| x.probs == [0.5, 0.5]));
    let err = u
        .check("m:sa#0", &d[0].greedy)
        .expect_err("uniform on every input is refused")
        .to_string();
    assert!(err.contains("on 20 of 20 inputs"), "{err}");
    assert!(
        err.contains("Affirmative"),
        "names what the LLM answered: {err}"
    );
    // A minority of unscored inputs passes (and is reported by the caller).
    let mut mixed = distributions(MockMode::NoSpace);
    mixed.truncate(3);
    mixed.extend(d.into_iter().take(2));
    let u = unscored(&mixed);
    assert_eq!((u.inputs, u.some_labels, u.all_labels), (5, 2, 2));
    u.check("m:sa#0", &[]).unwrap();
}
