//! Real tier: the TuPaTE family on the MiniLM surrogate and real tweets — the
//! loss goes down for every method with the backbone frozen.
//!
//! Heavy tier (minutes on a CPU; runs with `FUTE_HEAVY=1`, as `.ci/run` does in
//! its own step); prints epoch losses and wall times:
//! `FUTE_HEAVY=1 cargo test -p fute --test peft_real -- --nocapture`.

use fute::methods::peft::{default_lr, PeftMethod};
use fute::methods::surrogate_training::SurrogateTraining;
use fute::probe::ProbeSet;
use fute::surrogate::Surrogate;
use fute_core::dataset::Split;
use fute_core::workspace::Workspace;
use fute_nn::peft::{LoraConfig, PeftConfig, PrefixConfig, PromptConfig, Reduce};

/// Examples and epochs of each run (`FUTE_PEFT_REAL_N`, `FUTE_PEFT_REAL_EPOCHS` override).
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
    let probe = ProbeSet::from_dataset(&ds, Split::Train, Some(n), 1).unwrap();
    let s = Surrogate::open(&dir).unwrap();
    let configs = [
        (PeftConfig::Prefix(PrefixConfig::default()), Reduce::Layers),
        (
            PeftConfig::PromptTuning(PromptConfig::default()),
            Reduce::Positions,
        ),
        (PeftConfig::Lora(LoraConfig::default()), Reduce::Positions),
        (PeftConfig::BitFit, Reduce::Positions),
    ];
    for (peft, reduce) in configs {
        let m = PeftMethod {
            training: SurrogateTraining {
                epochs,
                lr: default_lr(&peft),
                batch: 16,
                grad_accum: 1,
                max_len: 64,
                soft_loss: Default::default(),
            },
            peft,
            reduce,
        };
        let mut losses = Vec::new();
        let t = std::time::Instant::now();
        let v = m
            .run(&s, &probe, 1, &mut |line| {
                if let Some(x) = line.split("mean loss ").nth(1) {
                    losses.push(x.trim().parse::<f64>().unwrap());
                }
            })
            .unwrap()
            .components;
        let secs = t.elapsed().as_secs_f64();
        let dim: usize = v.iter().map(|(_, c)| c.len()).sum();
        eprintln!(
            "{}: {} examples × {epochs} epochs, lr {}, epoch losses {losses:?}, dim {dim}, {secs:.1} s",
            m.name(),
            probe.len(),
            m.training.lr
        );
        assert_eq!(losses.len(), epochs);
        assert!(
            losses.last().unwrap() < losses.first().unwrap(),
            "{}: loss did not go down: {losses:?}",
            m.name()
        );
        assert!(v.iter().flat_map(|(_, c)| c).all(|x| x.is_finite()));
    }
}
