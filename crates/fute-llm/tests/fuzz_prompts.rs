//! Property tests of prompt-set files (TOML and JSON, as a user writes them):
//! whatever the text, parsing answers `Ok` or a clear error, never a panic; a
//! UTF-8 byte-order mark does not change the result. `cargo test` runs 64
//! cases; `scripts/fuzz.sh` runs more.

use fute_llm::prompts::PromptSet;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name = \"x\"\n".to_owned()),
        Just("labels = [\"yes\", \"no\"]\n".to_owned()),
        Just("labels = []\n".to_owned()),
        Just("[[prompts]]\n".to_owned()),
        Just("template = \"Review: {text}\\nAnswer:\"\n".to_owned()),
        Just("template = \"{nope} {text\"\n".to_owned()),
        Just("verbalizers = [{ label = \"yes\", words = [\"Yes\"] }, { label = \"no\", words = [\"No\"] }]\n".to_owned()),
        Just("verbalizers = [{ label = \"maybe\", words = [] }]\n".to_owned()),
        Just("cot = true\n".to_owned()),
        Just("\u{FEFF}".to_owned()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prompt_set_files_never_panic(pieces in prop::collection::vec(piece(), 0..10)) {
        let text: String = pieces.concat();
        let _ = PromptSet::from_toml_str(&text);
        let _ = PromptSet::from_json_str(&text);
        if let Ok(v) = toml::from_str::<toml::Value>(&text) {
            let json = serde_json::to_string(&v).unwrap();
            let _ = PromptSet::from_json_str(&json);
        }
    }

    #[test]
    fn a_bom_does_not_change_a_prompt_set_file(pieces in prop::collection::vec(piece(), 0..10)) {
        // Only the leading mark is dropped (found by this target: a text that starts
        // with U+FEFF itself keeps that one as data; see the regression test below).
        let text = pieces.concat().trim_start_matches('\u{FEFF}').to_owned();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p.toml");
        let bom = dir.path().join("b.toml");
        std::fs::write(&plain, &text).unwrap();
        std::fs::write(&bom, format!("\u{FEFF}{text}")).unwrap();
        let a = PromptSet::load(plain.to_str().unwrap()).map_err(|e| e.to_string().replace("p.toml", "F"));
        let b = PromptSet::load(bom.to_str().unwrap()).map_err(|e| e.to_string().replace("b.toml", "F"));
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

/// The built-in sets saved as files with a byte-order mark load like the built-ins.
#[test]
fn builtin_sets_load_from_files_with_a_bom() {
    for name in ["sa", "nli"] {
        let set = PromptSet::load(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("set.json");
        std::fs::write(
            &p,
            format!("\u{FEFF}{}", serde_json::to_string(&set).unwrap()),
        )
        .unwrap();
        let again = PromptSet::load(p.to_str().unwrap()).unwrap();
        assert_eq!(format!("{set:?}"), format!("{again:?}"));
    }
}

/// Regression (found by `a_bom_does_not_change_a_prompt_set_file`): a file that
/// starts with two marks loses only the first; the second is text, which TOML
/// then refuses with the position.
#[test]
fn only_the_leading_bom_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("two.toml");
    std::fs::write(&p, "\u{FEFF}\u{FEFF}").unwrap();
    let e = PromptSet::load(p.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1, column 1"), "{e}");
}
