//! Real tier: prefix, prompt tuning, LoRA and BitFit on the MiniLM surrogate and
//! real tweets — the loss goes down with the backbone frozen bit for bit.
//! Heavy tier: runs with `FUTE_HEAVY=1` (as `.ci/run` does in its own step).
//! Prints epoch losses and wall times (`-- --nocapture`); `FUTE_PEFT_REAL_N`
//! and `FUTE_PEFT_REAL_EPOCHS` change the size (default 256 examples, 3 epochs).

use fute_core::dataset::{Split, Target, TaskSchema};
use fute_core::rng::SplitMix64;
use fute_core::workspace::Workspace;
use fute_nn::peft::{LoraConfig, Peft, PeftConfig, PrefixConfig, PromptConfig, Reduce};
use fute_nn::train::{train, AdamWConfig, Control, Event, TrainConfig, TrainExample, TrainTarget};
use fute_nn::TaskModel;
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec, TextInput, TextTokenizer, Truncation};

fn setting(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn heavy_peft_loss_goes_down_on_real_tweets() {
    // Minutes on a CPU: the heavy tier (`FUTE_HEAVY=1`, a separate `.ci/run` step).
    if !fute_core::testing::heavy("PEFT training on real tweets") {
        return;
    }
    let Some(dir) = fute_core::testing::real_asset("minilm") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace::new(tmp.path(), fute_core::assets::default_root());
    let ds = match ws.load_dataset("tweets") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping: dataset `tweets` not available ({e})");
            return;
        }
    };
    let n = setting("FUTE_PEFT_REAL_N", 256);
    let epochs = setting("FUTE_PEFT_REAL_EPOCHS", 3);
    let TaskSchema::Classification { labels, .. } = &ds.card.schema else {
        panic!("tweets is a classification dataset")
    };
    let num_labels = labels.len();
    let mut rows = ds.split(Split::Train);
    SplitMix64::new(1).shuffle(&mut rows);
    rows.truncate(n);
    let tok = TextTokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let examples: Vec<TrainExample> = rows
        .iter()
        .map(|e| {
            let segs = e.input.segments();
            let input = match segs.as_slice() {
                [a, b, ..] => TextInput::Pair(a, b),
                [a] => TextInput::Single(a),
                [] => TextInput::Single(""),
            };
            let Target::Label(l) = e.target else {
                panic!("label expected")
            };
            TrainExample {
                encoding: tok.encode(input, 64, Truncation::LongestFirst).unwrap(),
                target: TrainTarget::Label(l as u32),
            }
        })
        .collect();
    let configs = [
        (PeftConfig::Prefix(PrefixConfig::default()), 1e-2),
        (PeftConfig::PromptTuning(PromptConfig::default()), 1e-2),
        (PeftConfig::Lora(LoraConfig::default()), 1e-3),
        (PeftConfig::BitFit, 1e-3),
    ];
    for (cfg, lr) in configs {
        let t = std::time::Instant::now();
        let opts = BuildOptions {
            seed: 1,
            ..Default::default()
        };
        let model =
            BertTaskModel::from_folder(&dir, HeadSpec::Classification { num_labels }, &opts)
                .unwrap();
        let model = Peft::adapt(model, &cfg, 1).unwrap();
        let peft = model.peft.clone();
        let trainable = peft.trainable_names(&model);
        let frozen: Vec<(String, Vec<f32>)> = model
            .named_parameters()
            .into_iter()
            .filter(|(n, _)| !trainable.contains(n))
            .map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        let tc = TrainConfig {
            epochs,
            batch_size: 16,
            optimizer: AdamWConfig {
                lr,
                ..Default::default()
            },
            seed: 1,
            trainable: Some(trainable),
            ..Default::default()
        };
        let mut losses = Vec::new();
        train(&model, &examples, None, tok.pad_id(), &tc, &mut |e| {
            if let Event::Epoch(r) = e {
                losses.push(r.train_loss);
            }
            Control::Continue
        })
        .unwrap();
        let v = peft
            .task_vector(
                &model,
                if matches!(cfg, PeftConfig::Prefix(_)) {
                    Reduce::Layers
                } else {
                    Reduce::Positions
                },
            )
            .unwrap();
        let dim: usize = v.iter().map(|(_, c)| c.len()).sum();
        eprintln!(
            "{}: {} examples × {epochs} epochs, lr {lr}, epoch losses {losses:?}, dim {dim}, {:.1} s",
            cfg.name(),
            examples.len(),
            t.elapsed().as_secs_f64()
        );
        for (name, old) in &frozen {
            let new: Vec<f32> = model
                .parameter(name)
                .unwrap()
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(
                new.iter().zip(old).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: frozen {name} changed",
                cfg.name()
            );
        }
        assert!(
            losses.last().unwrap() < losses.first().unwrap(),
            "{}: loss did not go down: {losses:?}",
            cfg.name()
        );
    }
}
