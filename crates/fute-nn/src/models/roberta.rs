//! RoBERTa (Liu et al. 2019) in the Hugging Face layout, with its task heads.
//!
//! The transformer layers are BERT's ([`BertLayer`], the same HF module); what
//! differs lives here:
//! * positions are counted from `padding_idx + 1` over non-padding tokens, and
//!   padding tokens get position `padding_idx` (`create_position_ids_from_input_ids`,
//!   <https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/models/roberta/modeling_roberta.py#L1597>);
//!   both the word and the position table leave row `padding_idx` without gradient;
//! * the summed embeddings are `(words + token types) + positions`;
//! * no pooler: `RobertaForSequenceClassification` reads `<s>` (position 0)
//!   through its own head `classifier.dense → tanh → classifier.out_proj`
//!   (`RobertaClassificationHead`), dropout before each;
//! * `type_vocab_size` is 1 in every released checkpoint: token types are
//!   ignored (all 0) when the table has one row.
//!
//! Parameters: `roberta.embeddings.*`, `roberta.encoder.layer.N.*` (as BERT),
//! `classifier.dense.*`, `classifier.out_proj.*`, or `qa_outputs.*`.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::checkpoint::SaveOptions;
use crate::hooks::Hooks;
use crate::models::bert::{BertConfig, BertLayer, LAYER_LINEARS};
use crate::models::Architecture;
use crate::nn::{Embedding, LayerNorm, Linear, Mode};
use crate::params::{Checkpoint, Need, Params};
use crate::task::{
    BuildOptions, EmbeddingTable, Forward, HeadSpec, ModelDescription, ModelInput, TableIndex,
    TaskModel, TaskOutput,
};
use crate::{Error, Result};

/// RoBERTa in the registry ([`crate::models::ARCHITECTURES`]).
pub static ARCHITECTURE: Architecture = Architecture {
    model_type: "roberta",
    base_prefix: "roberta",
    sequence_class: "RobertaForSequenceClassification",
    qa_class: "RobertaForQuestionAnswering",
    sequence_output: "classifier.out_proj",
    required_fields: &[
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "pad_token_id",
    ],
    encoder_roots: &["embeddings", "encoder"],
    load: load_folder,
};

fn load_folder(dir: &Path, spec: HeadSpec, opts: &BuildOptions) -> Result<Box<dyn TaskModel>> {
    Ok(Box::new(RobertaTaskModel::from_folder(dir, spec, opts)?))
}

/// Reads a RoBERTa `config.json` (BERT's fields; `pad_token_id` is required,
/// as positions depend on it).
pub fn config_from_file(path: &Path) -> Result<BertConfig> {
    let (raw, _) = crate::models::read_config(path)?;
    BertConfig::parse_as(raw, path, &ARCHITECTURE)
}

/// The RoBERTa position ids of a `[B, T]` batch of `ids` preceded by `prompt`
/// soft tokens: `pad + 1, pad + 2, …` over non-padding tokens (soft tokens
/// count as tokens), `pad` on padding.
fn position_ids(ids: &[u32], (b, t): (usize, usize), prompt: usize, pad: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(b * (prompt + t));
    for row in ids.chunks(t) {
        let mut n = 0u32;
        for _ in 0..prompt {
            n += 1;
            out.push(pad + n);
        }
        for &id in row {
            if id == pad {
                out.push(pad);
            } else {
                n += 1;
                out.push(pad + n);
            }
        }
    }
    out
}

/// `RobertaEmbeddings`.
#[derive(Debug, Clone)]
pub struct RobertaEmbeddings {
    /// `word_embeddings` (row `pad_token_id` gets no gradient).
    pub word_embeddings: Embedding,
    /// `position_embeddings` (row `pad_token_id` gets no gradient).
    pub position_embeddings: Embedding,
    /// `token_type_embeddings`.
    pub token_type_embeddings: Embedding,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    pad: u32,
    dropout: f64,
    tap: String,
}

impl RobertaEmbeddings {
    fn new(p: &Params, cfg: &BertConfig, pad: u32) -> Result<Self> {
        let (std, h, r) = (cfg.initializer_range, cfg.hidden_size, Need::Required);
        let mut word_embeddings =
            Embedding::new(&p.pp("word_embeddings"), cfg.vocab_size, h, std, r)?;
        word_embeddings.padding_idx = Some(pad);
        let mut position_embeddings = Embedding::new(
            &p.pp("position_embeddings"),
            cfg.max_position_embeddings,
            h,
            std,
            r,
        )?;
        position_embeddings.padding_idx = Some(pad);
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_embeddings: Embedding::new(
                &p.pp("token_type_embeddings"),
                cfg.type_vocab_size,
                h,
                std,
                r,
            )?,
            layer_norm: LayerNorm::new(&p.pp("LayerNorm"), h, cfg.layer_norm_eps, r)?,
            pad,
            dropout: cfg.hidden_dropout_prob,
            tap: p.full_name("sum"),
        })
    }

    /// Token types as the table sees them: all 0 for a one-row table.
    fn types(&self, input: &ModelInput) -> Result<Tensor> {
        match &input.token_type_ids {
            Some(tt) if self.token_type_embeddings.weight.dim(0)? > 1 => Ok(tt.clone()),
            _ => Ok(input.input_ids.zeros_like()?),
        }
    }

    fn forward(&self, input: &ModelInput, mode: &Mode, hooks: &Hooks) -> Result<Tensor> {
        let (b, t) = input.input_ids.dims2()?;
        let ids = input.input_ids.flatten_all()?.to_vec1::<u32>()?;
        let mut words = self.word_embeddings.forward(&input.input_ids)?;
        let mut types = self.types(input)?;
        let np = match hooks.prompt {
            Some(p) => {
                let np = p.dim(1)?;
                words = Tensor::cat(&[&p.to_dtype(words.dtype())?, &words], 1)?;
                let zeros = Tensor::zeros((b, np), types.dtype(), types.device())?;
                types = Tensor::cat(&[&zeros, &types], 1)?;
                np
            }
            None => 0,
        };
        let pos = position_ids(&ids, (b, t), np, self.pad);
        let max_pos = self.position_embeddings.weight.dim(0)?;
        if let Some(&m) = pos.iter().max() {
            if m as usize >= max_pos {
                return Err(Error::BadInput(format!(
                    "sequence of {} tokens needs position {m}, but max_position_embeddings is \
                     {max_pos} (RoBERTa positions start at pad_token_id + 1 = {})",
                    np + t,
                    self.pad + 1
                )));
            }
        }
        let pos = Tensor::from_vec(pos, (b, np + t), input.input_ids.device())?;
        let x = (words + self.token_type_embeddings.forward(&types)?)?;
        let x = (x + self.position_embeddings.forward(&pos)?)?;
        let x = hooks.tap(&self.tap, x)?;
        let x = self.layer_norm.forward(&x)?;
        mode.dropout(&x, self.dropout)
    }
}

/// The head of a RoBERTa task model.
#[derive(Debug, Clone)]
pub enum RobertaHead {
    /// `RobertaClassificationHead`: `<s>` → dropout → `dense` → tanh → dropout → `out_proj`.
    Sequence {
        /// `classifier.dense`.
        dense: Linear,
        /// `classifier.out_proj`.
        out_proj: Linear,
        /// Dropout before each.
        dropout: f64,
    },
    /// `qa_outputs` on every token.
    Span {
        /// `qa_outputs`.
        qa_outputs: Linear,
    },
}

/// A RoBERTa encoder with one task head (`RobertaForSequenceClassification`,
/// `RobertaForQuestionAnswering`).
#[derive(Clone)]
pub struct RobertaTaskModel {
    /// The configuration.
    pub config: BertConfig,
    /// `roberta.embeddings`.
    pub embeddings: RobertaEmbeddings,
    /// `roberta.encoder.layer.N`.
    pub layers: Vec<BertLayer>,
    /// The head.
    pub head: RobertaHead,
    spec: HeadSpec,
    varmap: VarMap,
    source_dir: Option<PathBuf>,
    description: ModelDescription,
}

impl std::fmt::Debug for RobertaTaskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobertaTaskModel")
            .field("spec", &self.spec)
            .field("layers", &self.layers.len())
            .field("source_dir", &self.source_dir)
            .finish_non_exhaustive()
    }
}

/// Vu et al.'s `cls_output`: here the head's `tanh(dense(<s>))`.
const SEQUENCE_TAP: &str = "cls_output";

impl RobertaTaskModel {
    /// Builds a model from `checkpoint` (encoder tensors required, head fresh if
    /// absent) or all fresh (seeded) without one.
    pub fn build(
        config: &BertConfig,
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
        let config = config_from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir.join("model.safetensors"))?;
        let mut model = Self::build(&config, spec, Some(&ckpt), opts)?;
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    fn assemble(p: &Params, cfg: &BertConfig, spec: HeadSpec, varmap: VarMap) -> Result<Self> {
        cfg.validate().map_err(|message| Error::Config {
            path: PathBuf::from("<config>"),
            message,
        })?;
        let pad = cfg.pad_token_id.ok_or_else(|| Error::Config {
            path: PathBuf::from("<config>"),
            message: "RoBERTa needs pad_token_id (positions start after it)".into(),
        })?;
        let base = p.pp(ARCHITECTURE.base_prefix);
        let embeddings = RobertaEmbeddings::new(&base.pp("embeddings"), cfg, pad)?;
        let pe = base.pp("encoder").pp("layer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(&pe.pp(i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let (std, h, fresh) = (cfg.initializer_range, cfg.hidden_size, Need::FreshIfMissing);
        let head = match spec {
            HeadSpec::QuestionAnswering => RobertaHead::Span {
                qa_outputs: Linear::new(&p.head().pp("qa_outputs"), h, 2, std, fresh)?,
            },
            _ => {
                let c = p.head().pp("classifier");
                RobertaHead::Sequence {
                    dense: Linear::new(&c.pp("dense"), h, h, std, fresh)?,
                    out_proj: Linear::new(&c.pp("out_proj"), h, spec.num_outputs(), std, fresh)?,
                    dropout: cfg.classifier_dropout_prob(),
                }
            }
        };
        let description = describe(cfg, spec);
        Ok(Self {
            config: cfg.clone(),
            embeddings,
            layers,
            head,
            spec,
            varmap,
            source_dir: None,
            description,
        })
    }
}

fn describe(cfg: &BertConfig, spec: HeadSpec) -> ModelDescription {
    let b = ARCHITECTURE.base_prefix;
    let layer_prefixes: Vec<String> = (0..cfg.num_hidden_layers)
        .map(|i| format!("{b}.encoder.layer.{i}."))
        .collect();
    let table = |t: &str, index| EmbeddingTable {
        name: format!("{b}.embeddings.{t}.weight"),
        index,
    };
    let pad = cfg.pad_token_id.unwrap_or(1) as usize;
    ModelDescription {
        model_type: ARCHITECTURE.model_type,
        num_layers: cfg.num_hidden_layers,
        hidden_size: cfg.hidden_size,
        num_attention_heads: cfg.num_attention_heads,
        max_positions: cfg.max_position_embeddings.saturating_sub(pad + 1),
        pad_token_id: cfg.pad_token_id,
        backbone_prefix: format!("{b}."),
        embeddings_prefix: format!("{b}.embeddings."),
        layer_taps: layer_prefixes
            .iter()
            .map(|p| [format!("{p}multihead_output"), format!("{p}layer_output")])
            .collect(),
        layer_prefixes,
        pooler_prefix: None,
        layer_linears: LAYER_LINEARS.to_vec(),
        default_lora_targets: crate::models::bert::DEFAULT_LORA_TARGETS,
        embedding_tables: vec![
            table("word_embeddings", TableIndex::TokenIds),
            table("position_embeddings", TableIndex::Positions),
            table("token_type_embeddings", TableIndex::TokenTypes),
        ],
        embeddings_tap: format!("{b}.embeddings.sum"),
        sequence_tap: (spec != HeadSpec::QuestionAnswering).then(|| SEQUENCE_TAP.into()),
    }
}

impl TaskModel for RobertaTaskModel {
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
        let dtype = self.embeddings.word_embeddings.weight.dtype();
        let (b, t) = input.input_ids.dims2()?;
        let (np, nk) = hooks.check(b, self.layers.len(), self.config.hidden_size)?;
        let mask_add = crate::nn::additive_mask(&input.attention_mask, (b, t), np + nk, dtype)?;
        let mut x = self.embeddings.forward(input, mode, hooks)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_add, mode, hooks)?;
        }
        if np > 0 {
            x = x.narrow(1, np, t)?;
        }
        let output = match &self.head {
            RobertaHead::Sequence {
                dense,
                out_proj,
                dropout,
            } => {
                let first = x.narrow(1, 0, 1)?.squeeze(1)?;
                let h = dense.forward(&mode.dropout(&first, *dropout)?)?.tanh()?;
                let h = hooks.tap(SEQUENCE_TAP, h)?;
                TaskOutput::sequence(self.spec, out_proj.forward(&mode.dropout(&h, *dropout)?)?)?
            }
            RobertaHead::Span { qa_outputs } => TaskOutput::span_from(&qa_outputs.forward(&x)?)?,
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
        let types = self
            .embeddings
            .types(input)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let pad = self.embeddings.pad;
        let positions = position_ids(&ids, (b, t), 0, pad);
        Ok(vec![
            (ids, Some(pad)),
            (positions, Some(pad)),
            (types, None),
        ])
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
}

#[cfg(test)]
mod tests {
    use super::position_ids;

    #[test]
    fn positions_start_after_padding_idx_and_skip_padding() {
        // As transformers' create_position_ids_from_input_ids with padding_idx 1.
        let ids = [0u32, 5, 6, 2, 1, 1, 0, 7, 2, 9, 9, 2];
        assert_eq!(
            position_ids(&ids, (2, 6), 0, 1),
            [2, 3, 4, 5, 1, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            position_ids(&ids[..6], (1, 6), 2, 1),
            [2, 3, 4, 5, 6, 7, 1, 1]
        );
    }
}
