//! Fisher throughput on the real all-MiniLM-L6-v2 (2-way head) at max length 128,
//! in examples per second, next to PyTorch on this machine
//! (`research/peer-baselines.md`, 2 threads: per-example loop 10.0, per-batch B=8
//! 22.4, square-of-mean B=8 20.9). Not a test:
//!
//!     cargo bench -p fute-nn --bench fisher
//!
//! Text: IMDB reviews (`$FUTE_ASSETS/imdb/reviews.json`), only reviews that fill
//! all 128 tokens, labels alternating. `FUTE_BENCH_EXAMPLES` (default 24) examples
//! per row, after one warm-up row; `FUTE_BENCH_REPEATS` (default 2) passes, best kept.
//! Run it on a quiet machine: another compile on the same cores halves the numbers.
//!
//! Set `CANDLE_NUM_THREADS=1`: candle 0.11's element-wise ops otherwise run on a
//! spinning barrier pool whose one lock serialises the two Fisher workers and
//! whose spin-waits cost 4-5x when the cores are shared (measured; see the module
//! docs of `fute_nn::fisher`). Matmuls still use `RAYON_NUM_THREADS` threads.
//!
//! Measured 2026-11-27 01:10-01:12, quiet (1-min load ≈ 2 = the benchmark itself),
//! 16 examples, best of 1, two runs each, ex/s, before → after the fused ops
//! (`fute_nn::ops`), both with `CANDLE_NUM_THREADS=1`: per-example naive dense
//! 4.4 → 4.3-4.7; sparse 1 worker 5.5 → 6.3-6.5; sparse 2 workers 9.1-9.7 → 8.9-9.5
//! (PyTorch 10.0); per-batch B=8 1 worker 4.8-5.0 → 8.4; 2 workers 7.5-7.6 →
//! 10.6-11.1 (PyTorch 22.4); square-of-mean B=8 2 workers 7.6-8.0 → 11.0-11.7
//! (PyTorch 20.9). Per-example is now bound by the per-example accumulation of
//! squared gradients and per-op overhead, not by the ops fused here.

use std::time::Instant;

use fute_nn::fisher::{
    fisher_embedding, EmbeddingGradients, FisherExample, FisherLabels, FisherOptions, FisherScope,
    FisherTarget, FisherVariant, SoftLoss,
};
use fute_nn::{BertTaskModel, BuildOptions, HeadSpec, TextInput, TextTokenizer, Truncation};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // As the `fute` binary does: CANDLE_NUM_THREADS=1 unless set (set it to 2 to
    // measure candle's own element-wise pool).
    fute_nn::runtime::configure_process();
    let Some(dir) = fute_core::testing::real_asset("minilm") else {
        eprintln!("MiniLM asset not fetched (`fute assets fetch minilm`): nothing to measure");
        return;
    };
    let Some(imdb) = fute_core::testing::real_asset("imdb") else {
        eprintln!("IMDB asset not fetched (`fute assets fetch imdb`): nothing to measure");
        return;
    };
    let n = env_usize("FUTE_BENCH_EXAMPLES", 24);
    let repeats = env_usize("FUTE_BENCH_REPEATS", 2);
    let model = BertTaskModel::from_folder(
        &dir,
        HeadSpec::Classification { num_labels: 2 },
        &BuildOptions::default(),
    )
    .expect("MiniLM loads");
    let tok = TextTokenizer::from_folder(&dir).expect("tokenizer loads");
    let text = std::fs::read_to_string(imdb.join("reviews.json")).expect("reviews.json");
    let reviews: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
    let examples: Vec<FisherExample> = reviews
        .iter()
        .filter_map(|r| r["t"].as_str())
        .map(|t| {
            tok.encode(TextInput::Single(t), 128, Truncation::LongestFirst)
                .expect("encodes")
        })
        .filter(|e| e.len() == 128)
        .take(n)
        .enumerate()
        .map(|(i, encoding)| FisherExample {
            encoding,
            target: FisherTarget::Label((i % 2) as u32),
        })
        .collect();
    assert_eq!(examples.len(), n, "not enough long reviews");

    let row = |variant, batch_size, workers, emb| FisherOptions {
        variant,
        batch_size,
        labels: FisherLabels::Gold,
        soft_loss: SoftLoss::BceWithLogits,
        scope: FisherScope::encoder(),
        embedding_gradients: emb,
        workers,
    };
    use EmbeddingGradients::{Dense, Sparse};
    use FisherVariant::{PerBatch, PerExample, SquareOfMean};
    let rows: Vec<(&str, FisherOptions, &str)> = vec![
        (
            "per-example, naive loop (dense emb., 1 worker)",
            row(PerExample, 1, 1, Dense),
            "10.0 (loop, 2 thr)",
        ),
        (
            "per-example, sparse emb., 1 worker",
            row(PerExample, 1, 1, Sparse),
            "",
        ),
        (
            "per-example, sparse emb., 2 workers x 1 thread",
            row(PerExample, 1, 2, Sparse),
            "10.0 (loop, 2 thr)",
        ),
        (
            "per-batch B=8, 1 worker",
            row(PerBatch, 8, 1, Sparse),
            "22.4",
        ),
        (
            "per-batch B=8, 2 workers x 1 thread",
            row(PerBatch, 8, 2, Sparse),
            "22.4",
        ),
        (
            "square-of-mean B=8, 2 workers x 1 thread",
            row(SquareOfMean, 8, 2, Sparse),
            "20.9",
        ),
    ];
    // Warm-up (page-in of weights, allocator).
    fisher_embedding(&model, &examples[..4], &row(PerExample, 1, 2, Sparse)).expect("runs");
    println!(
        "Fisher over all encoder parameters, all-MiniLM-L6-v2, {n} IMDB reviews x 128 tokens, \
         RAYON_NUM_THREADS={}, CANDLE_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!(
        "| {:<48} | {:>8} | {:>18} |",
        "mode", "fute ex/s", "PyTorch 2 thr ex/s"
    );
    println!("| {:-<48} | {:->8} | {:->18} |", "", "", "");
    for (name, o, torch) in rows {
        let mut best = f64::MAX;
        for _ in 0..repeats {
            let t = Instant::now();
            let f = fisher_embedding(&model, &examples, &o).expect("runs");
            best = best.min(t.elapsed().as_secs_f64());
            assert!(f.examples == n);
        }
        println!(
            "| {:<48} | {:>9.2} | {:>18} |",
            name,
            n as f64 / best,
            torch
        );
    }
}
