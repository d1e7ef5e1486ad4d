//! Real tier: `fute train --base smollm2`'s path. The packaged SmolLM2-135M
//! GGUF becomes a Hugging Face folder whose tokenizer gives the GGUF
//! tokenizer's ids, and LoRA fine-tuning of it changes only the adapted
//! linears (merged) and the head. Skipped when asset `smollm2` is not fetched,
//! unless `FUTE_REQUIRE_ASSETS=1`.

use std::path::{Path, PathBuf};

use fute::finetune::gguf_base::{gguf_file_of, prepare};
use fute::finetune::{finetune, FinetuneOptions, Tuning};
use fute_core::dataset::{
    Dataset, DatasetCard, Example, Input, InputShape, Split, Target, TaskSchema,
};
use fute_llm::GgufTokenizer;
use fute_nn::train::Control;
use fute_nn::{models, BuildOptions, HeadSpec, TextInput, TextTokenizer, Truncation};

fn smollm2() -> Option<PathBuf> {
    let dir = fute_core::testing::real_asset("smollm2")?;
    Some(
        gguf_file_of(&dir)
            .unwrap()
            .expect("the smollm2 asset holds one GGUF file"),
    )
}

fn convert(gguf: &Path, cache: &Path) -> (PathBuf, usize) {
    let mut conversions = 0;
    let dir = prepare(gguf, cache, &mut |_| conversions += 1).unwrap();
    (dir, conversions)
}

#[test]
fn converted_smollm2_tokenizes_like_the_gguf_and_loads() {
    let Some(gguf) = smollm2() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, n) = convert(&gguf, tmp.path());
    assert_eq!(n, 1);
    let (again, n) = convert(&gguf, tmp.path());
    assert_eq!(
        (again.as_path(), n),
        (dir.as_path(), 0),
        "a current conversion is reused"
    );

    let ours = TextTokenizer::from_folder(&dir).unwrap();
    let theirs = GgufTokenizer::from_file(&gguf).unwrap();
    assert_eq!(
        ours.pad_id(),
        2,
        "pads with the GGUF's padding token <|im_end|>"
    );
    for text in [
        "A soccer game with multiple males playing.",
        "  Café naïve résumé — déjà vu in Zürich, 1999 or 2024?!",
        "<|im_start|>user\nnot a control token<|im_end|>",
        "tabs\tand\nnewlines   and    spaces",
        "12345678 x 0.5 = 6172839",
    ] {
        let got = ours
            .encode(TextInput::Single(text), 512, Truncation::LongestFirst)
            .unwrap();
        assert_eq!(got.ids, theirs.encode_literal(text).unwrap(), "{text:?}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["pad_token_id"], 2);
    let m = models::load(&dir, HeadSpec::Regression, &BuildOptions::default()).unwrap();
    assert_eq!(m.describe().num_layers, 30);
}

fn sentiment() -> Dataset {
    let schema = TaskSchema::Classification {
        inputs: InputShape::Single,
        labels: vec!["negative".into(), "positive".into()],
    };
    let words = [
        ("wonderful", 1),
        ("terrible", 0),
        ("great", 1),
        ("awful", 0),
    ];
    let examples = (0..20)
        .map(|i| {
            let (w, label) = words[i % 4];
            Example {
                id: format!("ex{i}"),
                input: Input::Single(format!("The film number {i} was {w}.")),
                target: Target::Label(label),
                fixed_split: Some(if i % 5 == 4 { Split::Dev } else { Split::Train }),
            }
        })
        .collect();
    Dataset {
        card: DatasetCard::new("toy-sentiment", schema),
        examples,
    }
}

#[test]
fn lora_fine_tuning_of_smollm2_changes_only_adapted_linears_and_the_head() {
    let Some(gguf) = smollm2() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (base, _) = convert(&gguf, &tmp.path().join("bases"));
    let out = tmp.path().join("model");
    let opts = FinetuneOptions {
        epochs: 1,
        lr: 1e-3,
        batch_size: 8,
        max_len: 24,
        seed: 3,
        tuning: Tuning::lora(),
        ..Default::default()
    };
    let report = finetune(&sentiment(), &base, &out, &opts, &mut |_| Control::Continue).unwrap();
    assert_eq!(report.train.steps, 2);
    assert!(report
        .train
        .history
        .iter()
        .all(|e| e.train_loss.is_finite()));
    let before =
        candle_core::safetensors::load(base.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let after =
        candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert!(
        after.keys().all(|k| !k.contains("lora")),
        "adapters merged, not saved"
    );
    let (mut changed, mut same) = (0, 0);
    for (name, w) in &before {
        let a = after
            .get(name)
            .unwrap_or_else(|| panic!("{name} not saved"));
        let diff = (a - w)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // LoRA's default Llama targets: q_proj and v_proj.
        if name.contains("q_proj") || name.contains("v_proj") {
            assert!(diff > 0.0, "{name} was not updated");
            changed += 1;
        } else {
            assert_eq!(diff, 0.0, "{name} is frozen under LoRA");
            same += 1;
        }
    }
    assert_eq!(changed, 60);
    assert!(same > 200);
    assert!(after.contains_key("score.weight"));
    let back = models::load_task_folder(&out, &BuildOptions::default()).unwrap();
    assert_eq!(back.head(), HeadSpec::Classification { num_labels: 2 });
}
