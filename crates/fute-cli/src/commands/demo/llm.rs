//! The demo's LLM side: MTEs of SmolLM2 with vanilla and chain-of-thought prompts of
//! the SA and NLI sets, and "which prompt should SmolLM2 use for Rotten Tomatoes?"
//! with FUTE beside the label-free baselines and each prompt's measured accuracy.

use super::models::picks_table;
use super::{print_table, Demo, SEED, TARGET};
use fute::methods::Method;
use fute::prompt_eval::{evaluate_dataset, prompted_mte, FuteSpace, PromptEvalConfig, TaskMetric};
use fute::prompted::restrict_to_labels;
use fute::report::Table;
use fute_core::corpus::Corpus;
use fute_core::dataset::Split;
use fute_core::embedding::EmbeddingRecord;
use fute_llm::gguf::SMOLLM2_FILE;
use fute_llm::{GgufBackend, LabelSettings, LlmBackend, PromptMode, PromptSet};
use std::collections::BTreeMap;
use std::time::Instant;

/// The prompted LLMs' MTEs, by (method row, subject name).
pub(crate) struct LlmPart {
    /// MTEs of every (prompt, method).
    pub mtes: Vec<(String, EmbeddingRecord)>,
    /// The answer to "which prompt?" in one sentence.
    pub answer: String,
}

/// The built-in set `name` cut to `prompts` (kept in that order); its name says so
/// (`sa-demo`), since a prompt's number in it is its position in the cut set.
fn subset(name: &str, prompts: &[usize]) -> anyhow::Result<(PromptSet, Vec<usize>)> {
    let full = PromptSet::builtin(name)?;
    let mut set = full.clone();
    set.name = format!("{name}-demo");
    set.prompts = prompts
        .iter()
        .map(|&p| full.prompt(p).cloned())
        .collect::<Result<_, _>>()?;
    Ok((set, prompts.to_vec()))
}

fn mode(set: &PromptSet, p: usize) -> &'static str {
    match set.prompts[p].mode {
        PromptMode::Vanilla => "vanilla",
        PromptMode::Cot => "CoT",
    }
}

/// MTEs of SmolLM2 + each demo prompt, then the prompt choice for Rotten Tomatoes.
pub(crate) fn prompted(demo: &mut Demo<'_>, u: &Corpus) -> anyhow::Result<LlmPart> {
    let t = Instant::now();
    let sets = [
        subset("sa", &demo.sizes.sa_prompts)?,
        subset("nli", &demo.sizes.nli_prompts)?,
    ];
    let n_prompts: usize = sets.iter().map(|(s, _)| s.prompts.len()).sum();
    let methods = demo.fute_methods.clone();
    // Gemma-3-270M (opt-in, Gemma Terms of Use) joins the maps when fetched: the
    // poster's second map, two LLMs with the same prompts in one space.
    let gemma = demo.gemma && demo.ctx.assets.is_present("gemma3")?;
    let llms = if gemma {
        "SmolLM2-135M-Instruct and Gemma-3-270M"
    } else {
        "SmolLM2-135M-Instruct"
    };
    let pb = demo.step(
        &format!(
            "MTEs of {llms} with {n_prompts} prompts (SA and NLI, vanilla and chain-of-thought) on U"
        ),
        n_prompts * methods.len() * if gemma { 2 } else { 1 },
    );
    pb.set_message("loading SmolLM2 (GGUF, expanded to f32)");
    let backend = GgufBackend::load(demo.ctx.assets.dir("smollm2")?.join(SMOLLM2_FILE))?;
    let cached = super::super::llm::cached(demo.ctx, &backend)?;
    let cfg = PromptEvalConfig {
        split: Split::Test,
        limit: Some(demo.sizes.reviews),
        seed: SEED,
        max_chars: Some(1500),
        settings: LabelSettings {
            cot_max_tokens: demo.sizes.cot_tokens,
            ..LabelSettings::default()
        },
        spell_inputs: 5.min(demo.sizes.reviews),
        metric: TaskMetric::Accuracy,
        self_select: true,
    };
    let space = FuteSpace {
        store: &demo.store,
        surrogate: &demo.surrogate,
        corpus: u,
        methods: methods.clone(),
        dte_limit: Some(demo.sizes.dte_examples),
        centre: true,
    };
    let mut prompts = Table::new(
        "The prompts (number in the demo set → the built-in set's prompt)",
        &["prompt", "built-in", "mode", "template"],
    );
    for (set, original) in &sets {
        for (p, (prompt, builtin)) in set.prompts.iter().zip(original).enumerate() {
            prompts.row(vec![
                format!("{}#{p}", set.name),
                format!("{} #{builtin}", &set.name[..set.name.len() - 5]),
                mode(set, p).into(),
                prompt.template.trim().to_owned(),
            ]);
        }
    }
    let mut mtes = prompted_mtes(&cached, "SmolLM2", &sets, &cfg, &space, &methods, &pb)?;
    if gemma {
        pb.set_message("loading Gemma-3-270M (GGUF, expanded to f32)");
        let backend = GgufBackend::gemma3()?;
        let cached = super::super::llm::cached(demo.ctx, &backend)?;
        mtes.extend(prompted_mtes(
            &cached, "Gemma-3", &sets, &cfg, &space, &methods, &pb,
        )?);
    }
    pb.finish_and_clear();
    demo.run.record("LLM MTEs", t.elapsed().as_secs_f64());

    // Which prompt for Rotten Tomatoes: the SA prompts, measured and ranked.
    let t = Instant::now();
    let (sa, original) = &sets[0];
    let reviews = demo.sizes.reviews;
    let pb = demo.step(
        &format!(
            "which prompt should SmolLM2 use for {TARGET}? {} prompts on {reviews} test reviews (CoT cut to {} tokens), baselines, FUTE",
            sa.prompts.len(),
            demo.sizes.cot_tokens
        ),
        sa.prompts.len() * reviews,
    );
    let ds = demo.ctx.workspace.load_dataset(TARGET)?;
    let (ds, _) = restrict_to_labels(&ds, &sa.labels, &BTreeMap::new())?;
    let space = FuteSpace {
        store: &demo.store,
        surrogate: &demo.surrogate,
        corpus: u,
        methods: methods.clone(),
        dte_limit: Some(demo.sizes.dte_examples),
        centre: true,
    };
    let r = evaluate_dataset(&cached, sa, &ds, &cfg, Some(&space), &mut |m| {
        if let Some(pos) = progress_of(&m, reviews) {
            pb.set_position(pos as u64);
        }
        pb.set_message(m);
    })?;
    pb.finish_and_clear();
    let names: Vec<String> = (0..sa.prompts.len())
        .map(|p| format!("#{p} ({} {})", mode(sa, p), original[p]))
        .collect();
    let mut measured = Table::new(
        format!(
            "Measured: SmolLM2's accuracy with each prompt on {} {TARGET} test reviews",
            r.examples
        ),
        &["prompt", "mode", "accuracy"],
    );
    for (p, acc) in r.truth.iter().enumerate() {
        measured.row(vec![
            format!("{}#{p}", sa.name),
            mode(sa, p).into(),
            format!("{acc:.3}"),
        ]);
    }
    let picks = picks_table(
        &format!("Which prompt should SmolLM2 use for {TARGET}? (FUTE rows: centred cosine of the DTE with each prompted LLM's MTE)"),
        &names,
        &r.scores,
        &r.truth,
    );
    print_table(&measured);
    print_table(&picks);
    demo.run.write_table("prompt-truth.csv", &measured)?;
    demo.run.write_table("prompt-picks.csv", &picks)?;
    demo.run.write_table("prompts.csv", &prompts)?;
    demo.run.write_json("prompt-evaluation.json", &r)?;
    let sec = demo
        .report
        .section(format!("Which prompt should SmolLM2 use for {TARGET}?"));
    sec.text(format!(
        "Each prompt's accuracy is measured on {} test reviews (the truth). The label-free baselines (MI, LocalE, GlobalE, ZPS, SPELL, MDL) score the prompts from SmolLM2's label distributions on the same reviews without their labels; Self-Select asks SmolLM2 itself; FUTE compares {TARGET}'s DTE with each prompted LLM's MTE on U. With {} reviews, accuracies differ by chance by several points.",
        r.examples, r.examples
    ));
    sec.table(picks);
    sec.table(measured);
    sec.table(prompts);
    demo.run
        .record("which prompt (LLM on reviews)", t.elapsed().as_secs_f64());
    let answer = super::models::answer(
        &format!("Which prompt should SmolLM2 use for {TARGET}?"),
        &names,
        &r.scores,
        &r.truth,
        reviews,
    );
    Ok(LlmPart { mtes, answer })
}

/// Position of a progress line `…: prompt P/N, input D/T` among N·T units.
fn progress_of(line: &str, per_prompt: usize) -> Option<usize> {
    let rest = line.split(": prompt ").nth(1)?;
    let p: usize = rest.split('/').next()?.trim().parse().ok()?;
    let done: usize = rest
        .split("input ")
        .nth(1)?
        .split('/')
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some(p * per_prompt + done)
}

/// The MTE of `llm` with every prompt of `sets` by every FUTE method, as
/// (method row, record).
fn prompted_mtes(
    llm: &dyn LlmBackend,
    llm_name: &str,
    sets: &[(PromptSet, Vec<usize>)],
    cfg: &PromptEvalConfig,
    space: &FuteSpace<'_>,
    methods: &[(String, Method)],
    pb: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<(String, EmbeddingRecord)>> {
    let mut mtes = Vec::new();
    for (set, _) in sets {
        for p in 0..set.prompts.len() {
            for (row, method) in methods {
                let rec = prompted_mte(llm, set, p, cfg, space, method, &mut |m| {
                    pb.set_message(format!(
                        "{llm_name}, {row}, {}#{p} ({}): {m}",
                        set.name,
                        mode(set, p)
                    ))
                })?;
                mtes.push((row.clone(), rec));
                pb.inc(1);
            }
        }
    }
    Ok(mtes)
}
