//! Training-step throughput of fute-nn's MiniLM (forward + backward + AdamW), in
//! examples per second at max length 128, batch 8 and 32, next to PyTorch's figures
//! measured on the same kind of machine (`research/peer-baselines.md`: 12.1 and 13.6
//! ex/s with 2 threads). Not a test.
//!
//!     FUTE_ASSETS=/path/to/assets cargo bench -p fute-nn --bench train_step
//!
//! Uses the real all-MiniLM-L6-v2 when `$FUTE_ASSETS/minilm` exists, otherwise a
//! randomly initialised model of the same shape (same cost). Steps per batch size:
//! `FUTE_BENCH_STEPS` (default 3, after one warm-up step); batch sizes:
//! `FUTE_BENCH_BATCHES` (default `8,32`). The optimiser is fute's own AdamW (what
//! `fute train` runs). Like the `fute` binary, it sets `CANDLE_NUM_THREADS=1`
//! unless set (`fute_nn::runtime::configure_process`); `CANDLE_NUM_THREADS=2`
//! measures candle's own element-wise pool. Run it on a quiet machine: another
//! compile on the same cores halves the numbers.
//!
//! Measured 2026-11-26 on the 2-vCPU dev machine, quiet (other processes < 1 % CPU at
//! start), real MiniLM, 2 steps after a warm-up, default threads, before the fused
//! ops: batch 8: 3.96 ex/s (2.02 s/step = fwd 0.50 + bwd 1.11 + AdamW 0.32), 0.33x
//! PyTorch; batch 32: 3.23 ex/s (9.92 s/step = fwd 2.55 + bwd 6.51 + AdamW 0.59).
//!
//! Measured 2026-11-27 01:08-01:10, quiet (1-min load ≈ 2.0-2.4 = the benchmark's own
//! two threads; no other process above 20 % CPU in 10-s samples), real MiniLM, 2 steps
//! after a warm-up, binaries interleaved, two runs each (ex/s; PyTorch 2 threads):
//!
//! | build | batch 8 | batch 32 |
//! | --- | --- | --- |
//! | before (composite ops, candle-nn AdamW, candle pool of 2) | 2.90 / 3.96 | 5.30 / 5.73 |
//! | now, `CANDLE_NUM_THREADS=1` (default) | **8.61 / 8.85** (s/step 0.90: fwd 0.25, bwd 0.60, AdamW 0.03) | **7.78 / 7.75** |
//! | now, `CANDLE_NUM_THREADS=2` | 7.66 / 8.01 | 7.82 / 7.72 |
//! | PyTorch 2.15 (peer-baselines.md) | 12.1 | 13.6 |
//! | fute / PyTorch (default) | 0.71-0.73 | 0.57 |
//!
//! Earlier, heavily contended measurements (per-change attribution):
//!
//! Measured 2026-11-27 00:28-00:55, machine heavily contended the whole time (load
//! average 8-11 on 2 vCPUs: other engineers' test binaries, a llama.cpp server and
//! compiles), old and new binaries interleaved, 2 steps, two runs each (ex/s):
//!
//! | build | batch 8 | batch 32 |
//! | --- | --- | --- |
//! | before (composite ops, candle-nn AdamW, candle pool) | 1.11 / 1.02 | 1.57 / 1.62 |
//! | + fused softmax/GELU/LayerNorm (`fute_nn::ops`) | 1.72 / 1.45 / 1.69 / 1.65 | 2.48 / 2.17 / 2.74 / 2.67 |
//! | + fused embedding, fute's fused in-place AdamW (0.9-1.2 → 0.05-0.15 s/step)¹ | 2.18 / 3.14 / 2.14 / 2.24 | 3.25 / 3.59 / 2.81 / 3.20 |
//! | + `CANDLE_NUM_THREADS=1` (the default now) | 4.60 / 3.43 | 4.10 / 4.22 |
//!
//! ¹ The last two of each were run with glibc `mallopt` raising the mmap and trim
//! thresholds (page faults were ~20 % of a profile); no gain showed, so it was dropped.
//!
//! PyTorch: 12.1 / 13.6 ex/s (quiet machine), so the contended figures above are
//! 0.28-0.38x and 0.30-0.31x of a *quiet* PyTorch; compare on a quiet machine.

use fute_nn::TaskModel;
use std::time::Instant;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use fute_nn::train::{AdamW, AdamWConfig};
use fute_nn::{
    loss, BertConfig, BertTaskModel, BuildOptions, HeadSpec, Mode, TextInput, TextTokenizer,
    Truncation,
};

const PARAGRAPHS: [&str; 6] = [
    "I went into this film expecting very little, having read a handful of lukewarm reviews, \
     and came out genuinely moved. The lead performance is restrained in a way that lets the \
     quieter scenes breathe, and the script trusts its audience to notice small details: a \
     letter left unopened on a kitchen table, a phone call that goes unanswered for two full \
     minutes, a song that plays once early on and returns, changed, at the very end.",
    "The plot, such as it is, concerns a retired engineer who returns to the coastal town where \
     he grew up in order to sell his late mother's house. What follows is less a story than a \
     series of encounters with neighbours, old rivals and a teenage girl who works at the \
     harbour cafe, each of whom reveals something about the man he used to be.",
    "Unfortunately the second half never lives up to the promise of the first. The director \
     seems to lose interest in the characters and instead piles on subplots about a land \
     developer, a missing dog and a storm that arrives exactly when the screenplay needs it to. \
     By the time the credits rolled I had stopped caring who ended up with the house.",
    "Technically the picture is superb. The cinematography makes the grey northern light look \
     almost luminous, the sound design is subtle and precise, and the editing keeps a steady, \
     unhurried rhythm that suits the material. Even the minor roles are cast with care, and \
     several of the supporting actors deserve more screen time than they are given here.",
    "Some viewers will find it slow, and they will not be wrong. There are long stretches in which \
     nothing much happens except weather and conversation. But patience is rewarded: the final \
     twenty minutes tie the threads together with a grace that recalls the best European dramas \
     of the seventies, without ever feeling like an imitation of them.",
    "I would recommend it to anyone who enjoys character studies and does not need explosions to \
     stay awake. It is not a perfect film, and its ambitions occasionally exceed its grasp, yet it \
     is honest, humane and beautifully made, which is more than can be said for most of what \
     reaches cinemas these days. Eight out of ten, and I will certainly watch it again.",
];

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            // Distinct texts of well over 128 tokens: rotate the paragraphs.
            (0..4)
                .map(|k| PARAGRAPHS[(i + k) % PARAGRAPHS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn minilm_shape() -> BertConfig {
    BertConfig::from_json_str(
        r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
            "max_position_embeddings": 512, "type_vocab_size": 2, "model_type": "bert"}"#,
    )
    .expect("valid config")
}

fn main() -> fute_nn::Result<()> {
    // As the `fute` binary does: CANDLE_NUM_THREADS=1 unless set (set it to 2 to
    // measure candle's own element-wise pool).
    fute_nn::runtime::configure_process();
    let batches: Vec<usize> = std::env::var("FUTE_BENCH_BATCHES")
        .ok()
        .map(|s| s.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 32]);
    let steps: usize = std::env::var("FUTE_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let assets = std::env::var_os("FUTE_ASSETS").map(std::path::PathBuf::from);
    let dir = assets
        .map(|a| a.join("minilm"))
        .filter(|d| d.join("model.safetensors").is_file());
    let opts = BuildOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        seed: 0,
        ..Default::default()
    };
    let spec = HeadSpec::Classification { num_labels: 2 };
    let (model, tok) = match &dir {
        Some(d) => (
            BertTaskModel::from_folder(d, spec, &opts)?,
            Some(TextTokenizer::from_folder(d)?),
        ),
        None => (
            BertTaskModel::build(&minilm_shape(), spec, None, &opts)?,
            None,
        ),
    };
    println!(
        "model: {} ({} parameters), threads: {}, CANDLE_NUM_THREADS={}",
        dir.as_ref()
            .map_or("random MiniLM-shaped BERT".into(), |d| d
                .display()
                .to_string()),
        model.num_parameters(),
        candle_core::utils::get_num_threads(),
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
    );
    // fute's own AdamW (what `fute train` uses), no decay on biases / LayerNorm.
    let params = model.named_parameters();
    let mut opt = AdamW::new(AdamWConfig {
        lr: 2e-5,
        weight_decay: 0.01,
        ..Default::default()
    });
    let all_texts = texts(64);
    println!("| batch | fute ex/s (fwd+bwd+AdamW) | s/step | PyTorch 2 threads | fute / PyTorch |");
    println!("| --- | --- | --- | --- | --- |");
    for (batch, torch) in [(8usize, 12.1f64), (32, 13.6)] {
        if !batches.contains(&batch) {
            continue;
        }
        let make_input = |step: usize| -> fute_nn::Result<fute_nn::BertInput> {
            let chunk: Vec<&String> = (0..batch)
                .map(|i| &all_texts[(step * batch + i) % all_texts.len()])
                .collect();
            match &tok {
                Some(tok) => {
                    let inputs: Vec<TextInput> =
                        chunk.iter().map(|t| TextInput::Single(t)).collect();
                    let b = tok.encode_batch(&inputs, 128, Truncation::LongestFirst)?;
                    assert_eq!(b.seq_len, 128, "benchmark texts must fill 128 tokens");
                    b.to_input(&Device::Cpu)
                }
                None => {
                    let ids: Vec<u32> = (0..batch * 128)
                        .map(|i| 1000 + (i as u32 * 7919) % 20000)
                        .collect();
                    Ok(fute_nn::BertInput {
                        input_ids: Tensor::from_vec(ids, (batch, 128), &Device::Cpu)?,
                        token_type_ids: Some(Tensor::zeros(
                            (batch, 128),
                            DType::U32,
                            &Device::Cpu,
                        )?),
                        attention_mask: Tensor::ones((batch, 128), DType::U32, &Device::Cpu)?,
                    })
                }
            }
        };
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % 2).collect();
        let labels = Tensor::new(labels.as_slice(), &Device::Cpu)?;
        // Seconds in forward, backward, optimiser.
        let mut parts = [0f64; 3];
        let mut step = |i: usize, parts: &mut [f64; 3]| -> fute_nn::Result<f32> {
            let input = make_input(i)?;
            let t = Instant::now();
            let logits = model
                .forward(&input, &Mode::train(i as u64))?
                .logits()?
                .clone();
            let l = loss::cross_entropy(&logits, &labels)?;
            let value = l.to_scalar::<f32>()?;
            parts[0] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let store = l.backward()?;
            let grads: HashMap<String, Tensor> = params
                .iter()
                .filter_map(|(n, v)| store.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
                .collect();
            parts[1] += t.elapsed().as_secs_f64();
            let t = Instant::now();
            opt.step(&params, &grads, 2e-5)?;
            parts[2] += t.elapsed().as_secs_f64();
            Ok(value)
        };
        step(0, &mut [0.0; 3])?; // warm-up: first-touch allocations
        let t0 = Instant::now();
        for i in 1..=steps {
            std::hint::black_box(step(i, &mut parts)?);
        }
        let secs = t0.elapsed().as_secs_f64();
        let ex_s = (batch * steps) as f64 / secs;
        let per = |x: f64| x / steps as f64;
        println!(
            "| {batch} | {ex_s:.2} | {:.2} (fwd {:.2}, bwd {:.2}, AdamW {:.2}) | {torch} | {:.2} |",
            per(secs),
            per(parts[0]),
            per(parts[1]),
            per(parts[2]),
            ex_s / torch
        );
    }
    Ok(())
}
