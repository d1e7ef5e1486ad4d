//! GPT-2 (Radford et al. 2019) in the Hugging Face layout, with its task heads.
//!
//! Layout (`transformer.…`): `wte` (words), `wpe` (learned absolute positions),
//! per block `h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}`,
//! and the final `ln_f`
//! (<https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/models/gpt2/modeling_gpt2.py>).
//! A block is pre-LayerNorm: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`;
//! `c_attn` is one fused `[3·hidden]` query|key|value projection; the MLP's
//! activation is `activation_function` (`gelu_new`, GELU's tanh approximation).
//! Attention is causal and skips padding keys: query `i` sees the key/value
//! prefixes and the attended keys `j ≤ i` (prompt positions count as tokens).
//!
//! `c_attn`, `c_proj` and `c_fc` are `Conv1D` modules, whose checkpoint weights
//! are `[in, out]`: they are transposed once at load into the `[out, in]` every
//! linear map here has (so LoRA, Fisher and the fused linear op see one layout)
//! and transposed back when saving ([`TaskModel::checkpoint_layout`]).
//!
//! Heads: `GPT2ForSequenceClassification` applies `score` (no bias) to the final
//! hidden state of each row's **last attended token** (rightmost position whose
//! attention mask is 1). transformers takes the rightmost token whose id is not
//! `pad_token_id` instead; the two agree on right- or left-padded batches whose
//! padding id never occurs as a real token (fute's batches), and fute also
//! works without a `pad_token_id` (transformers then refuses batches > 1).
//! `GPT2ForQuestionAnswering` applies `qa_outputs` to every token. Neither has
//! dropout. Token types are ignored: GPT-2 tokenizers return none
//! (transformers would add `wte(token_type_ids)` when given them).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::Architecture;
use crate::nn::{Activation, Embedding, LayerNorm, Linear, Mode};
use crate::params::{Checkpoint, Init, Need, Params};
use crate::task::{
    BuildOptions, EmbeddingTable, Forward, HeadSpec, ModelDescription, ModelInput, TableIndex,
    TaskModel, TaskOutput,
};
use crate::{Error, Result};

/// GPT-2 in the registry ([`crate::models::ARCHITECTURES`]).
pub static ARCHITECTURE: Architecture = Architecture {
    model_type: "gpt2",
    base_prefix: "transformer",
    sequence_class: "GPT2ForSequenceClassification",
    qa_class: "GPT2ForQuestionAnswering",
    sequence_output: "score",
    required_fields: &["vocab_size", "n_embd", "n_layer", "n_head", "n_positions"],
    encoder_roots: &["wte", "wpe", "h", "ln_f"],
    load: load_folder,
};

mod config;

pub use config::Gpt2Config;

fn load_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    Ok(Box::new(Gpt2TaskModel::from_folder(dir, spec, opts)?))
}

/// The linears of a block [`Hooks::linear`] sees, relative to the block prefix.
pub const LAYER_LINEARS: [&str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

/// A `Conv1D` (`y = x W + b`, `W` stored `[in, out]`), held as a [`Linear`]
/// with `W` transposed to `[out, in]`.
fn conv1d(p: &Params, in_dim: usize, out_dim: usize, std: f64, need: Need) -> Result<Linear> {
    Ok(Linear {
        weight: p.get_transposed([out_dim, in_dim], "weight", Init::Normal(std), need)?,
        bias: p.get(&[out_dim], "bias", Init::Zeros, need)?,
    })
}

/// One `transformer.h.N` (`GPT2Block`).
#[derive(Debug, Clone)]
pub struct Gpt2Block {
    /// `ln_1`, before attention.
    pub ln_1: LayerNorm,
    /// `attn.c_attn` (`[3·hidden, hidden]`: query | key | value) and `attn.c_proj`.
    pub attn: [Linear; 2],
    /// `ln_2`, before the MLP.
    pub ln_2: LayerNorm,
    /// `mlp.c_fc` and `mlp.c_proj`.
    pub mlp: [Linear; 2],
    heads: usize,
    scale: f64,
    activation: Activation,
    attn_pdrop: f64,
    resid_pdrop: f64,
    linears: [String; 4],
    taps: [String; 2],
    index: usize,
}

impl Gpt2Block {
    fn new(p: &Params, cfg: &Gpt2Config, index: usize) -> Result<Self> {
        let (h, r) = (cfg.n_embd, Need::Required);
        let std = cfg.initializer_range;
        // transformers' fresh `c_proj` weights are scaled by 1/√(2·n_layer)
        // (GPT-2's residual-path initialisation).
        let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        let ln = |name: &str| LayerNorm::new(&p.pp(name), h, cfg.layer_norm_epsilon, r);
        let pa = p.pp("attn");
        // Causal-mask buffers of older checkpoints (transformers skips them too).
        pa.skip_buffer("bias");
        pa.skip_buffer("masked_bias");
        let hd = h / cfg.n_head;
        let mut scale = if cfg.scale_attn_weights {
            1.0 / (hd as f64).sqrt()
        } else {
            1.0
        };
        if cfg.scale_attn_by_inverse_layer_idx {
            scale /= (index + 1) as f64;
        }
        Ok(Self {
            ln_1: ln("ln_1")?,
            attn: [
                conv1d(&pa.pp("c_attn"), h, 3 * h, std, r)?,
                conv1d(&pa.pp("c_proj"), h, h, proj_std, r)?,
            ],
            ln_2: ln("ln_2")?,
            mlp: [
                conv1d(&p.pp("mlp").pp("c_fc"), h, cfg.inner(), std, r)?,
                conv1d(&p.pp("mlp").pp("c_proj"), cfg.inner(), h, proj_std, r)?,
            ],
            heads: cfg.n_head,
            scale,
            activation: Activation::from_hf(&cfg.activation_function).expect("validated config"),
            attn_pdrop: cfg.attn_pdrop,
            resid_pdrop: cfg.resid_pdrop,
            linears: LAYER_LINEARS.map(|l| p.full_name(l)),
            taps: ["multihead_output", "layer_output"].map(|t| p.full_name(t)),
            index,
        })
    }

    /// `x` `[B, N, H]` → `[B, N, H]`; `bias` is the additive mask
    /// `[B·N, 1, 1, P' + N]` of [`attention_bias`].
    fn forward(&self, x: &Tensor, bias: &Tensor, mode: &Mode, hooks: &Hooks) -> Result<Tensor> {
        let (b, n, h) = x.dims3()?;
        let hd = h / self.heads;
        let split = |y: Tensor| -> Result<Tensor> {
            let len = y.dim(1)?;
            Ok(y.reshape((b, len, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let [c_attn, c_proj] = &self.attn;
        let qkv = hooks.linear(c_attn, &self.linears[0], &self.ln_1.forward(x)?)?;
        let q = split(qkv.narrow(2, 0, h)?)?;
        let mut k = split(qkv.narrow(2, h, h)?)?;
        let mut v = split(qkv.narrow(2, 2 * h, h)?)?;
        if let Some(prefix) = hooks.prefix {
            let (pk, pv) = &prefix[self.index];
            k = Tensor::cat(&[&split(pk.to_dtype(x.dtype())?)?, &k], 2)?;
            v = Tensor::cat(&[&split(pv.to_dtype(x.dtype())?)?, &v], 2)?;
        }
        let keys = k.dim(2)?;
        // Scores `[B, heads, N, K]` regrouped as `[B·N, heads, 1, K]` so that the
        // fused softmax takes one mask row per (example, query): causal and
        // padding masking in one additive term, as transformers' 4-D mask.
        let scores = q.matmul(&k.t()?)?.transpose(1, 2)?.contiguous()?.reshape((
            b * n,
            self.heads,
            1,
            keys,
        ))?;
        let probs = crate::ops::masked_softmax(&scores, bias, self.scale)?
            .reshape((b, n, self.heads, keys))?
            .transpose(1, 2)?
            .contiguous()?;
        let probs = mode.dropout(&probs, self.attn_pdrop)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, n, h))?;
        let ctx = hooks.tap(&self.taps[0], ctx)?;
        let a = hooks.linear(c_proj, &self.linears[1], &ctx)?;
        let x = (x + mode.dropout(&a, self.resid_pdrop)?)?;
        let [c_fc, mlp_proj] = &self.mlp;
        let f = hooks.linear(c_fc, &self.linears[2], &self.ln_2.forward(&x)?)?;
        let f = hooks.linear(mlp_proj, &self.linears[3], &self.activation.forward(&f)?)?;
        let x = (x + mode.dropout(&f, self.resid_pdrop)?)?;
        hooks.tap(&self.taps[1], x)
    }
}

/// The additive attention mask of a `[B, T]` 0/1 `mask` with `np` prompt
/// positions in front of the tokens and `nk` key/value prefixes, as
/// `[B·N, 1, 1, nk + N]` (`N = np + T` queries): 0 where query `i` may look
/// at key `j` — every prefix key, and the prompt or attended positions `≤ i` —
/// and the dtype's lowest finite value elsewhere (transformers' value; a query
/// with no visible key then spreads over all keys, as there).
fn attention_bias(mask: &Tensor, np: usize, nk: usize, dtype: DType) -> Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let rows = mask.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let min = match dtype {
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    };
    let n = np + t;
    let k = nk + n;
    let mut out = vec![0.0f64; b * n * k];
    for (bi, row) in rows.iter().enumerate() {
        for i in 0..n {
            let o = &mut out[(bi * n + i) * k..][..k];
            for (j, v) in o.iter_mut().enumerate().skip(nk) {
                let pos = j - nk;
                let visible = pos <= i && (pos < np || row[pos - np] != 0);
                if !visible {
                    *v = min;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (b * n, 1, 1, k), mask.device())?.to_dtype(dtype)?)
}

/// Per row of a `[B, T]` 0/1 mask, the flat index `b·T + i` of its last
/// attended position `i`; an error for a row with none.
fn last_attended(mask: &Tensor, device: &Device) -> Result<Tensor> {
    let (_, t) = mask.dims2()?;
    let rows = mask.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let idx = rows
        .iter()
        .enumerate()
        .map(|(bi, row)| {
            row.iter()
                .rposition(|&m| m != 0)
                .map(|i| (bi * t + i) as u32)
                .ok_or_else(|| {
                    Error::BadInput(format!(
                        "batch row {bi} has no attended token (all padding)"
                    ))
                })
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(Tensor::new(idx.as_slice(), device)?)
}

/// The head of a GPT-2 task model.
#[derive(Debug, Clone)]
pub enum Gpt2Head {
    /// `score` (no bias) on the last attended token.
    Sequence {
        /// `score`; its bias is a constant zero, not a parameter.
        score: Linear,
    },
    /// `qa_outputs` on every token.
    Span {
        /// `qa_outputs`.
        qa_outputs: Linear,
    },
}

/// A GPT-2 decoder with one task head.
#[derive(Clone)]
pub struct Gpt2TaskModel {
    /// The configuration.
    pub config: Gpt2Config,
    /// `transformer.wte` (no padding row: transformers' has none either).
    pub wte: Embedding,
    /// `transformer.wpe`.
    pub wpe: Embedding,
    /// `transformer.h.N`.
    pub blocks: Vec<Gpt2Block>,
    /// `transformer.ln_f`.
    pub ln_f: LayerNorm,
    /// The head.
    pub head: Gpt2Head,
    spec: HeadSpec,
    varmap: VarMap,
    source_dir: Option<PathBuf>,
    description: ModelDescription,
}

impl std::fmt::Debug for Gpt2TaskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpt2TaskModel")
            .field("spec", &self.spec)
            .field("blocks", &self.blocks.len())
            .field("source_dir", &self.source_dir)
            .finish_non_exhaustive()
    }
}

/// Vu et al.'s `cls_output`: here the last attended token's final hidden
/// state `[B, hidden]`, what `score` reads.
const SEQUENCE_TAP: &str = "cls_output";

impl Gpt2TaskModel {
    /// Builds a model from `checkpoint` (decoder tensors required, head fresh if
    /// absent) or all fresh (seeded) without one.
    pub fn build(
        config: &Gpt2Config,
        spec: HeadSpec,
        checkpoint: Option<&Checkpoint>,
        opts: &BuildOptions,
    ) -> Result<Self> {
        spec.check()?;
        crate::models::build_checked(&ARCHITECTURE, checkpoint, opts, |p, varmap| {
            Self::assemble(p, config, spec, varmap)
        })
    }

    /// Loads `config.json` and `model.safetensors` from a HF folder with head `spec`.
    pub fn from_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Self> {
        let config = Gpt2Config::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let mut model = Self::build(&config, spec, Some(&ckpt), opts)?;
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    fn assemble(p: &Params, cfg: &Gpt2Config, spec: HeadSpec, varmap: VarMap) -> Result<Self> {
        cfg.validate().map_err(|message| Error::Config {
            path: PathBuf::from("<config>"),
            message,
        })?;
        let (h, std, r) = (cfg.n_embd, cfg.initializer_range, Need::Required);
        let pt = p.pp(ARCHITECTURE.base_prefix);
        let wte = Embedding::new(&pt.pp("wte"), cfg.vocab_size, h, std, r)?;
        let wpe = Embedding::new(&pt.pp("wpe"), cfg.n_positions, h, std, r)?;
        let blocks = (0..cfg.n_layer)
            .map(|i| Gpt2Block::new(&pt.pp("h").pp(i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(&pt.pp("ln_f"), h, cfg.layer_norm_epsilon, r)?;
        let fresh = Need::FreshIfMissing;
        let head = match spec {
            HeadSpec::QuestionAnswering => Gpt2Head::Span {
                qa_outputs: Linear::new(&p.head().pp("qa_outputs"), h, 2, std, fresh)?,
            },
            _ => {
                let n = spec.num_outputs();
                let weight =
                    p.head()
                        .pp("score")
                        .get(&[n, h], "weight", Init::Normal(std), fresh)?;
                let bias = Tensor::zeros(n, p.dtype(), p.device())?;
                Gpt2Head::Sequence {
                    score: Linear { weight, bias },
                }
            }
        };
        Ok(Self {
            config: cfg.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            head,
            spec,
            varmap,
            source_dir: None,
            description: describe(cfg, spec),
        })
    }
}

fn describe(cfg: &Gpt2Config, spec: HeadSpec) -> ModelDescription {
    let b = ARCHITECTURE.base_prefix;
    let layer_prefixes: Vec<String> = (0..cfg.n_layer).map(|i| format!("{b}.h.{i}.")).collect();
    let table = |t: &str, index| EmbeddingTable {
        name: format!("{b}.{t}.weight"),
        index,
    };
    ModelDescription {
        model_type: ARCHITECTURE.model_type,
        num_layers: cfg.n_layer,
        hidden_size: cfg.n_embd,
        num_attention_heads: cfg.n_head,
        max_positions: cfg.n_positions,
        pad_token_id: cfg.pad_token_id,
        backbone_prefix: format!("{b}."),
        // `wte` and `wpe` are the only backbone names starting with `w`.
        embeddings_prefix: format!("{b}.w"),
        layer_taps: layer_prefixes
            .iter()
            .map(|p| [format!("{p}multihead_output"), format!("{p}layer_output")])
            .collect(),
        layer_prefixes,
        // No pooler; the final LayerNorm is the backbone's one part after the
        // blocks and stands in scopes where the pooler would.
        pooler_prefix: Some(format!("{b}.ln_f.")),
        layer_linears: LAYER_LINEARS.to_vec(),
        // The fused query|key|value map, as HF peft's default for GPT-2: its
        // rank-r update has 4·r·hidden parameters per layer, as BERT's
        // query+value default, and covers the query and value maps Hu et al.
        // adapt (the key rows ride along: one `A` is shared by the fused map).
        default_lora_targets: &["c_attn"],
        embedding_tables: vec![
            table("wte", TableIndex::TokenIds),
            table("wpe", TableIndex::Positions),
        ],
        embeddings_tap: format!("{b}.embeddings.sum"),
        sequence_tap: (spec != HeadSpec::QuestionAnswering).then(|| SEQUENCE_TAP.into()),
    }
}

impl TaskModel for Gpt2TaskModel {
    fn describe(&self) -> &ModelDescription {
        &self.description
    }

    fn head(&self) -> HeadSpec {
        self.spec
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn forward_with(&self, input: &ModelInput, mode: &Mode, hooks: &Hooks) -> Result<Forward> {
        let dtype = self.wte.weight.dtype();
        let (b, t) = input.input_ids.dims2()?;
        if input.attention_mask.dims() != [b, t] {
            return Err(Error::BadInput(format!(
                "attention_mask has shape {:?}, input_ids {:?}",
                input.attention_mask.dims(),
                [b, t]
            )));
        }
        let (np, nk) = hooks.check(b, self.blocks.len(), self.config.n_embd)?;
        let bias = attention_bias(&input.attention_mask, np, nk, dtype)?;
        let mut words = self.wte.forward(&input.input_ids)?;
        if let Some(p) = hooks.prompt {
            words = Tensor::cat(&[&p.to_dtype(dtype)?, &words], 1)?;
        }
        let n = np + t;
        if n > self.config.n_positions {
            return Err(Error::BadInput(format!(
                "sequence length {n} exceeds n_positions {}",
                self.config.n_positions
            )));
        }
        let positions = Tensor::arange(0u32, n as u32, input.input_ids.device())?;
        let x = words.broadcast_add(&self.wpe.forward(&positions)?)?;
        let x = hooks.tap(&self.description.embeddings_tap, x)?;
        let mut x = mode.dropout(&x, self.config.embd_pdrop)?;
        for block in &self.blocks {
            x = block.forward(&x, &bias, mode, hooks)?;
        }
        let mut x = self.ln_f.forward(&x)?;
        if np > 0 {
            x = x.narrow(1, np, t)?;
        }
        let output = match &self.head {
            Gpt2Head::Sequence { score } => {
                let idx = last_attended(&input.attention_mask, x.device())?;
                let last = x
                    .reshape((b * t, self.config.n_embd))?
                    .index_select(&idx, 0)?;
                let last = hooks.tap(SEQUENCE_TAP, last)?;
                TaskOutput::sequence(self.spec, score.forward(&last)?)?
            }
            Gpt2Head::Span { qa_outputs } => TaskOutput::span_from(&qa_outputs.forward(&x)?)?,
        };
        Ok(Forward {
            output,
            last_hidden_state: x,
        })
    }

    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>> {
        let p = Params::from_vars(&self.varmap, live, self.dtype(), &self.device());
        let mut m = Self::assemble(&p, &self.config, self.spec, self.varmap.clone())?;
        m.source_dir = self.source_dir.clone();
        Ok(Box::new(m))
    }

    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>> {
        let (b, t) = input.input_ids.dims2()?;
        let ids = input.input_ids.flatten_all()?.to_vec1::<u32>()?;
        let positions = (0..b).flat_map(|_| 0..t as u32).collect();
        Ok(vec![(ids, None), (positions, None)])
    }

    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value> {
        let base = if self.config.raw.is_object() {
            self.config.raw.clone()
        } else {
            serde_json::to_value(&self.config).map_err(|e| Error::Bug(format!("config: {e}")))?
        };
        crate::checkpoint::task_config(base, &ARCHITECTURE, self.spec, opts)
    }

    fn source_dir(&self) -> Option<&Path> {
        self.source_dir.as_deref()
    }

    fn checkpoint_layout(&self, name: &str, t: &Tensor) -> Result<Tensor> {
        let conv1d = name.strip_suffix(".weight").is_some_and(|module| {
            self.description
                .layer_prefixes
                .iter()
                .any(|p| LAYER_LINEARS.iter().any(|l| module == format!("{p}{l}")))
        });
        Ok(if conv1d {
            t.t()?.contiguous()?
        } else {
            t.clone()
        })
    }
}
