//! Load time, resident memory and seconds per label-distribution call of one
//! packaged LLM, on the SA prompt set's ten vanilla prompts over five fixed
//! reviews (50 calls, no call cache). Run once per model, each in its own
//! process so resident memory is the model's own:
//!
//!     for m in smollm2 gemma3; do cargo run -p fute-llm --example llm_footprint -- $m; done

use fute_llm::{label_distribution, GgufBackend, LabelSettings, PromptInput, PromptSet};
use std::time::Instant;

const REVIEWS: &[&str] = &[
    "A wonderful, moving film with great acting.",
    "Boring, predictable and far too long. I walked out.",
    "The plot was dull and the acting was wooden.",
    "I laughed from start to finish; the cast is superb.",
    "Not bad, but I expected more from this director.",
];

/// `VmRSS` and `VmHWM` of this process, in MB (Linux only).
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "smollm2".into());
    let start = Instant::now();
    let model = match name.as_str() {
        "smollm2" => GgufBackend::smollm2()?,
        "gemma3" => GgufBackend::gemma3()?,
        other => return Err(format!("unknown LLM `{other}` (smollm2, gemma3)").into()),
    };
    let load_s = start.elapsed().as_secs_f64();
    let (rss_loaded, _) = memory_mb();
    let set = PromptSet::builtin("sa")?;
    let settings = LabelSettings::default();
    let mut calls = 0;
    let mut positive = 0;
    let start = Instant::now();
    for prompt in 0..10 {
        for review in REVIEWS {
            let dist =
                label_distribution(&model, &set, prompt, &PromptInput::text(*review), &settings)?;
            calls += 1;
            positive += usize::from(dist.probs[1] > dist.probs[0]);
        }
    }
    let per_call = start.elapsed().as_secs_f64() / calls as f64;
    let (rss, hwm) = memory_mb();
    println!(
        "{name}: load {load_s:.2} s; RSS after load {rss_loaded:.0} MB, after {calls} calls {rss:.0} MB (peak {hwm:.0} MB); {per_call:.3} s per label distribution; {positive}/{calls} read as positive"
    );
    Ok(())
}
