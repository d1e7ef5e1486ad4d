//! T5 (Raffel et al. 2020), the FUTE paper's surrogate (T5-base), in the
//! Hugging Face layout, with the task heads transformers gives it.
//!
//! Layout: `shared` (the one token table, read by encoder and decoder), the
//! encoder `encoder.block.N` and decoder `decoder.block.N` ([`layer::T5Block`])
//! each closed by a `final_layer_norm`. There are no position embeddings: the
//! first block of each stack holds `relative_attention_bias`, a per-head bias
//! for each bucket of `key − query` ([`layer::relative_position_bucket`]:
//! bidirectional in the encoder, causal in the decoder), shared by every block
//! of that stack. Attention scores are not scaled. Norms are T5 LayerNorms
//! (RMSNorm without bias or mean subtraction). The feed-forward is `relu`
//! (`wi`, `wo`) or gated (`gated-gelu`, T5 v1.1: `wi_0`, `wi_1`, `wo`). No
//! linear has a bias. `tie_word_embeddings` only concerns a language-model
//! head, which task models do not have; it is kept as read.
//!
//! Heads (<https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/t5/modeling_t5.py>):
//! * `T5ForSequenceClassification` (base under `transformer.`): the decoder
//!   input is the input shifted right behind `decoder_start_token_id`
//!   (`_shift_right`); the decoder self-attention is causal only (no padding
//!   mask, as transformers without `decoder_attention_mask`); the cross-attention
//!   skips padded encoder positions; the representation is the decoder's final
//!   state at each row's **last eos token of the input**; `classification_head`
//!   is `dense → tanh → out_proj` with dropout before each linear. transformers
//!   additionally requires every row to hold the same number of eos tokens; fute
//!   reads each row's last eos whatever the count (the same token when the
//!   counts agree) and refuses a row without one.
//! * `T5ForQuestionAnswering` (base at the top level: `shared.`, `encoder.`,
//!   `decoder.`): `qa_outputs` on every decoder state.
//!
//! Hooks ([`Hooks`]): the model's layers ([`ModelDescription::layer_prefixes`])
//! are the encoder blocks, then the decoder blocks. Key/value prefixes go into
//! the self-attention of **every** block, encoder and decoder (the FUTE prefix
//! method puts them into the decoder's self-attention; fute also gives the
//! encoder its own, as P-tuning v2 does for every layer of an encoder, so that
//! a prefix has one pair per layer of the description). A prefix sits at
//! positions `0..P` before the tokens, exactly as transformers treats a cache
//! of `P` past keys/values: the relative position bias also covers the prefix
//! keys, the tokens' relative positions among themselves are unchanged, and
//! every query sees every prefix key. Prefixes need `num_heads · d_kv =
//! d_model` (their width is the model's hidden size). A soft prompt is put in
//! front of the encoder's token embeddings (Lester et al. 2021); the decoder
//! attends to it through the cross-attention, and its input stays the shifted
//! input ids. LoRA targets are HF names (`q`, `v` by default: HF peft's T5
//! default, which adapts the self- and cross-attention queries and values);
//! BitFit is refused: T5 has no biases ([`crate::peft`]).
//!
//! Fisher: the embedding tap is the encoder's and the decoder's token
//! embeddings side by side (`[B, 2T, d_model]`, [`TaskModel::embedding_rows`]
//! lists the input ids then the shifted ids of each row), both read `shared`.
//! The two final layer norms are the backbone's part after its layers, where
//! BERT's pooler sits. The QA class has no base prefix: its description's
//! backbone prefix is empty, and PEFT and Fisher tell its head (`qa_outputs`)
//! from its backbone by the architecture's encoder roots
//! ([`ModelDescription::in_backbone`]).

pub mod config;
pub mod layer;

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use candle_nn::VarMap;

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::Architecture;
use crate::nn::{Embedding, Linear, Mode, RmsNorm};
use crate::params::{Checkpoint, Need, Params};
use crate::task::{
    BuildOptions, EmbeddingTable, Forward, HeadSpec, ModelDescription, ModelInput, TableIndex,
    TaskModel, TaskOutput,
};
use crate::{Error, Result};

pub use config::T5Config;
pub use layer::{relative_position_bucket, T5Attention, T5Block, LAYER_TAPS};

/// T5 in the registry ([`crate::models::ARCHITECTURES`]).
pub static ARCHITECTURE: Architecture = Architecture {
    model_type: "t5",
    base_prefix: "transformer",
    sequence_class: "T5ForSequenceClassification",
    qa_class: "T5ForQuestionAnswering",
    sequence_output: "classification_head.out_proj",
    required_fields: &[
        "vocab_size",
        "d_model",
        "d_kv",
        "d_ff",
        "num_layers",
        "num_heads",
    ],
    encoder_roots: &["shared", "encoder", "decoder"],
    load: load_folder,
};

fn load_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    Ok(Box::new(T5TaskModel::from_folder(dir, spec, opts)?))
}

/// The base prefix of the task class of `spec` (`T5ForQuestionAnswering` has none).
fn base_of(spec: HeadSpec) -> &'static str {
    match spec {
        HeadSpec::QuestionAnswering => "",
        _ => ARCHITECTURE.base_prefix,
    }
}

/// `name` under `base` (`base.name`, or `name` for an empty base).
fn under(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

/// The head of a T5 task model.
#[derive(Debug, Clone)]
pub enum T5Head {
    /// `classification_head`: `dense` `[d_model, d_model]` → tanh → `out_proj`.
    Sequence {
        /// `classification_head.dense`.
        dense: Linear,
        /// `classification_head.out_proj`.
        out_proj: Linear,
    },
    /// `qa_outputs` `[2, d_model]` on every decoder state.
    Span {
        /// `qa_outputs`.
        qa_outputs: Linear,
    },
}

/// A T5 encoder-decoder with one task head.
#[derive(Clone)]
pub struct T5TaskModel {
    /// The configuration.
    pub config: T5Config,
    /// `shared`, the token table of both stacks.
    pub shared: Embedding,
    /// `encoder.block.N`.
    pub encoder: Vec<T5Block>,
    /// `encoder.final_layer_norm`.
    pub encoder_final_layer_norm: RmsNorm,
    /// `decoder.block.N`.
    pub decoder: Vec<T5Block>,
    /// `decoder.final_layer_norm`.
    pub decoder_final_layer_norm: RmsNorm,
    /// The head.
    pub head: T5Head,
    spec: HeadSpec,
    varmap: VarMap,
    source_dir: Option<PathBuf>,
    description: ModelDescription,
}

impl std::fmt::Debug for T5TaskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("T5TaskModel")
            .field("spec", &self.spec)
            .field("encoder", &self.encoder.len())
            .field("decoder", &self.decoder.len())
            .field("source_dir", &self.source_dir)
            .finish_non_exhaustive()
    }
}

/// The decoder state the sequence head reads, `[B, d_model]` (Vu et al.'s `cls_output`).
const SEQUENCE_TAP: &str = "cls_output";

impl T5TaskModel {
    /// Builds a model from `checkpoint` (base tensors required, with or without
    /// the `transformer.` prefix; head fresh if absent) or all fresh (seeded)
    /// without one.
    pub fn build(
        config: &T5Config,
        spec: HeadSpec,
        checkpoint: Option<&Checkpoint>,
        opts: &BuildOptions,
    ) -> Result<Self> {
        spec.check()?;
        crate::models::build_checked_under(
            &ARCHITECTURE,
            base_of(spec),
            &[],
            checkpoint,
            opts,
            |p, varmap| Self::assemble(p, config, spec, varmap),
        )
    }

    /// Loads `config.json` and `model.safetensors` from a HF folder with head `spec`.
    pub fn from_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Self> {
        let config = T5Config::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let mut model = Self::build(&config, spec, Some(&ckpt), opts)?;
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    fn assemble(p: &Params, cfg: &T5Config, spec: HeadSpec, varmap: VarMap) -> Result<Self> {
        cfg.validate().map_err(|message| Error::Config {
            path: PathBuf::from("<config>"),
            message,
        })?;
        let (d, f, r) = (cfg.d_model, cfg.initializer_factor, Need::Required);
        let pb = p.pp(base_of(spec));
        let shared = Embedding::new(&pb.pp("shared"), cfg.vocab_size, d, f, r)?;
        let mut stacks = Vec::new();
        for (stack, n, decoder) in [
            ("encoder", cfg.num_layers, false),
            ("decoder", cfg.decoder_layers(), true),
        ] {
            let ps = pb.pp(stack);
            // transformers ties both stacks' `embed_tokens` to `shared`; files
            // written by older versions hold the copies.
            ps.skip_buffer("embed_tokens.weight");
            let blocks = (0..n)
                .map(|i| T5Block::new(&ps.pp("block").pp(i), cfg, i, decoder))
                .collect::<Result<Vec<_>>>()?;
            let norm = RmsNorm::new(&ps.pp("final_layer_norm"), d, cfg.layer_norm_epsilon, r)?;
            stacks.push((blocks, norm));
        }
        let (decoder, decoder_final_layer_norm) = stacks.pop().expect("two stacks");
        let (encoder, encoder_final_layer_norm) = stacks.pop().expect("two stacks");
        let fresh = Need::FreshIfMissing;
        let std = f * (d as f64).powf(-0.5);
        let head = match spec {
            HeadSpec::QuestionAnswering => T5Head::Span {
                qa_outputs: Linear::new(&p.head().pp("qa_outputs"), d, 2, std, fresh)?,
            },
            _ => {
                let ph = p.head().pp("classification_head");
                T5Head::Sequence {
                    dense: Linear::new(&ph.pp("dense"), d, d, std, fresh)?,
                    out_proj: Linear::new(&ph.pp("out_proj"), d, spec.num_outputs(), std, fresh)?,
                }
            }
        };
        Ok(Self {
            config: cfg.clone(),
            shared,
            encoder,
            encoder_final_layer_norm,
            decoder,
            decoder_final_layer_norm,
            head,
            spec,
            varmap,
            source_dir: None,
            description: describe(cfg, spec),
        })
    }

    /// `_shift_right`: each row of `ids` `[B, T]` moved one step right behind
    /// the decoder start id.
    pub fn shift_right(&self, ids: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let start = self.config.decoder_start().expect("validated config");
        ids.iter()
            .map(|row| {
                std::iter::once(start)
                    .chain(row.iter().copied().take(row.len().saturating_sub(1)))
                    .collect()
            })
            .collect()
    }

    /// Per row of `ids`, the flat index `b·T + i` of its last eos token `i`.
    fn last_eos(&self, ids: &[Vec<u32>]) -> Result<Vec<u32>> {
        let eos = self.config.eos().ok_or_else(|| {
            Error::BadInput(
                "the T5 config has no eos_token_id: the sequence head reads the decoder \
                 state at the last eos token"
                    .into(),
            )
        })?;
        ids.iter()
            .enumerate()
            .map(|(bi, row)| {
                row.iter()
                    .rposition(|&x| x == eos)
                    .map(|i| (bi * row.len() + i) as u32)
                    .ok_or_else(|| {
                        Error::BadInput(format!(
                            "batch row {bi} has no end-of-sequence token (id {eos}): T5's \
                             sequence head reads the decoder state at the last one; encode \
                             with a T5 tokenizer, which appends </s>"
                        ))
                    })
            })
            .collect()
    }
}

fn describe(cfg: &T5Config, spec: HeadSpec) -> ModelDescription {
    let b = base_of(spec);
    let layer_prefixes: Vec<String> = (0..cfg.num_layers)
        .map(|i| under(b, &format!("encoder.block.{i}.")))
        .chain((0..cfg.decoder_layers()).map(|i| under(b, &format!("decoder.block.{i}."))))
        .collect();
    let backbone_prefix = if b.is_empty() {
        String::new()
    } else {
        format!("{b}.")
    };
    ModelDescription {
        model_type: ARCHITECTURE.model_type,
        num_layers: layer_prefixes.len(),
        hidden_size: cfg.d_model,
        num_attention_heads: cfg.num_heads,
        max_positions: cfg.n_positions.unwrap_or(512),
        pad_token_id: cfg.pad_token_id,
        embeddings_prefix: under(b, "shared."),
        layer_taps: layer_prefixes
            .iter()
            .map(|p| LAYER_TAPS.map(|t| format!("{p}{t}")))
            .collect(),
        layer_prefixes,
        // The two final layer norms are all the backbone holds outside the
        // embeddings and the blocks (Fisher scopes test those first).
        pooler_prefix: Some(backbone_prefix.clone()),
        backbone_prefix,
        layer_linears: layer::layer_linears(cfg.feed_forward().expect("validated config")),
        // HF peft's default for T5.
        default_lora_targets: &["q", "v"],
        embedding_tables: vec![EmbeddingTable {
            name: under(b, "shared.weight"),
            index: TableIndex::TokenIds,
        }],
        embeddings_tap: under(b, "shared.output"),
        sequence_tap: (spec != HeadSpec::QuestionAnswering).then(|| SEQUENCE_TAP.into()),
    }
}

impl TaskModel for T5TaskModel {
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
        let cfg = &self.config;
        let dtype = self.shared.weight.dtype();
        let device = input.input_ids.device().clone();
        let (b, t) = input.input_ids.dims2()?;
        let d = cfg.d_model;
        if input.attention_mask.dims() != [b, t] {
            return Err(Error::BadInput(format!(
                "attention_mask has shape {:?}, input_ids {:?}",
                input.attention_mask.dims(),
                [b, t]
            )));
        }
        if hooks.prefix.is_some() && cfg.inner_dim() != d {
            return Err(Error::BadInput(format!(
                "prefix tuning on this T5 needs num_heads · d_kv = d_model, got {} · {} = {} \
                 and {d}",
                cfg.num_heads,
                cfg.d_kv,
                cfg.inner_dim()
            )));
        }
        let n_enc = self.encoder.len();
        let (np, nk) = hooks.check(b, n_enc + self.decoder.len(), d)?;
        let ids = input.input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let dec_ids = Tensor::new(self.shift_right(&ids), &device)?;

        // Both stacks' token embeddings, side by side for the one Fisher tap.
        let words = Tensor::cat(
            &[
                &self.shared.forward(&input.input_ids)?,
                &self.shared.forward(&dec_ids)?,
            ],
            1,
        )?;
        let words = hooks.tap(&self.description.embeddings_tap, words)?;
        let mut x = words.narrow(1, 0, t)?;
        let y = words.narrow(1, t, t)?;
        let mut keep = input.attention_mask.to_dtype(dtype)?;
        if let Some(p) = hooks.prompt {
            x = Tensor::cat(&[&p.to_dtype(dtype)?, &x], 1)?;
            keep = Tensor::cat(&[&Tensor::ones((b, np), dtype, &device)?, &keep], 1)?;
        }
        let n = np + t;
        let min = layer::mask_value(dtype);
        // Padded encoder keys, `[B, 1, 1, n]` (0 attended, `min` padded).
        let enc_mask = (keep.affine(-1.0, 1.0)? * min)?.reshape((b, 1, 1, n))?;
        let prefix = |i: usize| hooks.prefix.map(|p| &p[i]);

        // Encoder: bidirectional buckets, prefix keys at positions 0..nk.
        let buckets = layer::bucket_ids(nk, n, nk + n, true, cfg, &device)?;
        let pos = self.encoder[0]
            .self_attention
            .position_bias(&buckets)?
            .ok_or_else(|| Error::Bug("encoder block 0 has no position table".into()))?;
        let with_prefix = if nk > 0 {
            Tensor::cat(
                &[&Tensor::zeros((b, 1, 1, nk), dtype, &device)?, &enc_mask],
                3,
            )?
        } else {
            enc_mask.clone()
        };
        let enc_bias = pos.broadcast_add(&with_prefix)?;
        let mut x = mode.dropout(&x, cfg.dropout_rate)?;
        for (i, block) in self.encoder.iter().enumerate() {
            x = block.forward(&x, &enc_bias, prefix(i), None, mode, hooks)?;
        }
        let enc = mode.dropout(
            &self.encoder_final_layer_norm.forward(&x)?,
            cfg.dropout_rate,
        )?;

        // Decoder: causal buckets and mask, every prefix key visible.
        let buckets = layer::bucket_ids(nk, t, nk + t, false, cfg, &device)?;
        let pos = self.decoder[0]
            .self_attention
            .position_bias(&buckets)?
            .ok_or_else(|| Error::Bug("decoder block 0 has no position table".into()))?;
        let causal: Vec<f64> = (0..t)
            .flat_map(|i| (0..nk + t).map(move |j| if j <= nk + i { 0.0 } else { min }))
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, t, nk + t), &device)?.to_dtype(dtype)?;
        let dec_bias = pos.broadcast_add(&causal)?;
        let mut y = mode.dropout(&y, cfg.dropout_rate)?;
        for (j, block) in self.decoder.iter().enumerate() {
            y = block.forward(
                &y,
                &dec_bias,
                prefix(n_enc + j),
                Some((&enc, &enc_mask)),
                mode,
                hooks,
            )?;
        }
        let y = mode.dropout(
            &self.decoder_final_layer_norm.forward(&y)?,
            cfg.dropout_rate,
        )?;

        let output = match &self.head {
            T5Head::Sequence { dense, out_proj } => {
                let rows = Tensor::new(self.last_eos(&ids)?, &device)?;
                let rep = y.reshape((b * t, d))?.index_select(&rows, 0)?;
                let rep = hooks.tap(SEQUENCE_TAP, rep)?;
                let h = mode.dropout(&rep, cfg.classifier_dropout)?;
                let h = dense.forward(&h)?.tanh()?;
                let h = mode.dropout(&h, cfg.classifier_dropout)?;
                TaskOutput::sequence(self.spec, out_proj.forward(&h)?)?
            }
            T5Head::Span { qa_outputs } => TaskOutput::span_from(&qa_outputs.forward(&y)?)?,
        };
        Ok(Forward {
            output,
            last_hidden_state: y,
        })
    }

    fn with_live(&self, live: &dyn Fn(&str) -> bool) -> Result<Box<dyn TaskModel>> {
        let p = Params::from_vars(&self.varmap, live, self.dtype(), &self.device());
        let mut m = Self::assemble(&p, &self.config, self.spec, self.varmap.clone())?;
        m.source_dir = self.source_dir.clone();
        Ok(Box::new(m))
    }

    fn embedding_rows(&self, input: &ModelInput) -> Result<Vec<(Vec<u32>, Option<u32>)>> {
        let ids = input.input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let shifted = self.shift_right(&ids);
        // Row-major over the tap `[B, 2T]`: each row's input ids, then its
        // decoder ids. `shared` has no padding row in transformers' T5.
        let rows = ids
            .iter()
            .zip(&shifted)
            .flat_map(|(a, s)| a.iter().chain(s).copied())
            .collect();
        Ok(vec![(rows, None)])
    }

    fn hf_config(&self, opts: &SaveOptions) -> Result<serde_json::Value> {
        let base = if self.config.raw.is_object() {
            self.config.raw.clone()
        } else {
            serde_json::to_value(&self.config).map_err(|e| Error::Bug(format!("config: {e}")))?
        };
        let mut v = crate::checkpoint::task_config(base, &ARCHITECTURE, self.spec, opts)?;
        if let Some(obj) = v.as_object_mut() {
            // transformers' `_shift_right` refuses a config without it.
            obj.entry("decoder_start_token_id")
                .or_insert(serde_json::json!(self.config.decoder_start()));
        }
        Ok(v)
    }

    fn source_dir(&self) -> Option<&Path> {
        self.source_dir.as_deref()
    }
}
