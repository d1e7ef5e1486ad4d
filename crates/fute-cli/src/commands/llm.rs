//! Choosing an LLM on the command line: a local GGUF file or an
//! OpenAI-compatible server, always behind the on-disk call cache.

use crate::Context;
use clap::{Args, ValueEnum};
use fute_llm::{
    CachedBackend, GgufBackend, GgufOptions, HttpBackend, HttpConfig, LabelSettings, LlmBackend,
    LogitsProcessing,
};
use std::path::PathBuf;
use std::time::Duration;

/// Where the LLM runs.
#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// A local .gguf file on candle (default: the packaged SmolLM2-135M-Instruct).
    Gguf,
    /// An OpenAI-compatible server (llama.cpp, vLLM, TGI, a hosted API) with logprobs.
    Http,
}

/// The packaged LLMs (assets).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PackagedLlm {
    /// SmolLM2-135M-Instruct (asset `smollm2`), a chat model.
    Smollm2,
    /// Gemma-3-270M (asset `gemma3`, opt-in, Gemma Terms of Use), a base model
    /// prompted completion-style.
    Gemma3,
}

impl PackagedLlm {
    /// Asset name and the GGUF file inside it.
    fn asset(self) -> (&'static str, &'static str) {
        match self {
            PackagedLlm::Smollm2 => ("smollm2", fute_llm::gguf::SMOLLM2_FILE),
            PackagedLlm::Gemma3 => ("gemma3", fute_llm::gguf::GEMMA3_FILE),
        }
    }
}

/// Which logits label scores are read from.
#[derive(Clone, Copy, ValueEnum)]
pub enum ProcessingArg {
    /// The model's own scores.
    Raw,
    /// After the FUTE reference's processors (repetition penalty 1.2, no-repeat 3-gram).
    Reference,
}

/// Flags that pick and configure the LLM.
#[derive(Args)]
pub struct LlmArgs {
    /// Where the LLM runs.
    #[arg(long, value_enum, default_value_t = BackendArg::Gguf)]
    pub backend: BackendArg,
    /// Which packaged LLM the gguf backend runs: smollm2 (chat) or gemma3 (base
    /// model, completion-style prompts; `fute assets fetch gemma3` first).
    #[arg(long, value_enum, default_value_t = PackagedLlm::Smollm2)]
    pub llm: PackagedLlm,
    /// A .gguf file to run instead of a packaged LLM (gguf backend).
    #[arg(long, conflicts_with = "llm")]
    pub gguf: Option<PathBuf>,
    /// Keep the file's quantized weights (llama.cpp's arithmetic; ~10× slower on CPU for Q4_1).
    #[arg(long)]
    pub native_quant: bool,
    /// Calls the local LLM runs at once (gguf backend), each on its own core over
    /// one copy of the weights, with a KV cache of its own [default: the CPUs
    /// available]. 1 runs them one after another.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub llm_workers: Option<u64>,
    /// Server base URL (http backend), e.g. http://127.0.0.1:8080.
    #[arg(long, required_if_eq("backend", "http"))]
    pub url: Option<String>,
    /// Model name the server knows (http backend).
    #[arg(long, required_if_eq("backend", "http"))]
    pub model: Option<String>,
    /// Bearer token for the server.
    #[arg(long, env = "FUTE_LLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds one server request may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Retries after a timeout, a dropped connection, 429 or 5xx.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Clip label scores at 0 before the softmax (the reference code's quirk; gguf only).
    /// The prediction stays the argmax of the unclipped scores, as in the reference.
    #[arg(long)]
    pub clip_at_zero: bool,
    /// Label scores from the model's raw logits, or after the reference's logits processing
    /// (repetition penalty 1.2 over the prompt and answer so far, no repeated 3-gram; gguf only).
    /// See paper.md §2.5 and §12.
    #[arg(long, value_enum, default_value_t = ProcessingArg::Raw)]
    pub logits_processing: ProcessingArg,
    /// New tokens of a chain-of-thought prompt's reasoning round (reference: 512).
    #[arg(long, default_value_t = 512)]
    pub cot_max_tokens: usize,
    /// Cut inputs longer than this many characters before they fill a prompt.
    #[arg(long)]
    pub max_chars: Option<usize>,
}

impl LlmArgs {
    /// Opens the backend (not yet cached; see [`cached`]).
    pub fn open(&self, ctx: &Context) -> anyhow::Result<Box<dyn LlmBackend>> {
        Ok(match self.backend {
            BackendArg::Gguf => {
                let path = match &self.gguf {
                    Some(p) => p.clone(),
                    None => {
                        let (asset, file) = self.llm.asset();
                        ctx.assets
                            .dir(asset)
                            .map_err(|e| {
                                super::user(format!(
                                    "{e}\nfetch the packaged LLM with `fute assets fetch {asset}`, or give --gguf FILE"
                                ))
                            })?
                            .join(file)
                    }
                };
                let pb = super::spinner(format!("loading {}", path.display()));
                let b = GgufBackend::load_with(
                    &path,
                    &GgufOptions {
                        dequantize: !self.native_quant,
                        workers: self
                            .llm_workers
                            .map_or(GgufOptions::default().workers, |n| n as usize),
                    },
                )?;
                pb.finish_and_clear();
                Box::new(b)
            }
            BackendArg::Http => {
                let mut config = HttpConfig::new(
                    self.url.clone().expect("clap requires --url"),
                    self.model.clone().expect("clap requires --model"),
                );
                config.api_key = self.api_key.clone();
                config.timeout = Duration::from_secs(self.timeout.max(1));
                config.retries = self.retries;
                Box::new(HttpBackend::new(config))
            }
        })
    }

    /// Label-distribution settings from the flags.
    pub fn settings(&self) -> LabelSettings {
        LabelSettings {
            clip_at_zero: self.clip_at_zero,
            cot_max_tokens: self.cot_max_tokens,
            logits_processing: match self.logits_processing {
                ProcessingArg::Raw => LogitsProcessing::Raw,
                ProcessingArg::Reference => LogitsProcessing::Reference,
            },
            ..LabelSettings::default()
        }
    }
}

/// `backend` behind the workspace's call cache: reruns cost nothing, an
/// interrupted run resumes where it stopped.
pub fn cached<'a>(
    ctx: &Context,
    backend: &'a dyn LlmBackend,
) -> anyhow::Result<CachedBackend<&'a dyn LlmBackend>> {
    Ok(CachedBackend::open(
        backend,
        ctx.workspace.state_dir().join("cache").join("llm"),
    )?)
}
