//! A Llama-family model from a GGUF file (llama.cpp's format, e.g. the packaged
//! SmolLM2-135M), dequantised to f32 and renamed to the Hugging Face layout.
//!
//! Hyper-parameters come from the `llama.*` metadata (`block_count`,
//! `embedding_length`, `feed_forward_length`, `attention.head_count`,
//! `attention.head_count_kv`, `rope.freq_base`,
//! `attention.layer_norm_rms_epsilon`, `context_length`, `vocab_size`) and
//! the special tokens from `tokenizer.ggml.*`. Tensors are renamed
//! (`blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight`, …, see
//! [`hf_name`]) and the query/key rows are put back in Hugging Face's order:
//! llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`)
//! interleaves the two rotary halves of every head, because llama.cpp rotates
//! adjacent pairs where transformers rotates halves (`rotate_half`).
//! transformers' own GGUF loader undoes the same permutation
//! (`reverse_permute_weights` in `modeling_gguf_pytorch_utils.py`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};

use super::LlamaConfig;
use crate::params::Checkpoint;
use crate::{Error, Result};

/// The `general.architecture` this module reads.
pub const GGUF_ARCHITECTURE: &str = "llama";

/// The HF name of GGUF tensor `name` (`None` for the causal-LM output matrix
/// `output.weight`, which no task model uses), or an error message.
pub fn hf_name(name: &str) -> std::result::Result<Option<String>, String> {
    let simple = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => return Ok(None),
        _ => None,
    };
    if let Some(s) = simple {
        return Ok(Some(s.to_string()));
    }
    let unknown = || format!("tensor `{name}` is not part of a Llama model fute knows");
    let rest = name.strip_prefix("blk.").ok_or_else(unknown)?;
    let (layer, module) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: usize = layer.parse().map_err(|_| unknown())?;
    let hf = match module {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return Err(unknown()),
    };
    Ok(Some(format!("model.layers.{layer}.{hf}")))
}

/// Rows of a `[heads · head_dim, in]` query/key matrix back in HF order: GGUF
/// row `h·hd + 2i + s` becomes HF row `h·hd + s·hd/2 + i` (`s` ∈ {0, 1}, `i < hd/2`).
pub fn unpermute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / heads;
    Ok(w.reshape((heads, hd / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

fn metadata_usize(v: &Value) -> Option<usize> {
    let n: i128 = match v {
        Value::U8(x) => (*x).into(),
        Value::I8(x) => (*x).into(),
        Value::U16(x) => (*x).into(),
        Value::I16(x) => (*x).into(),
        Value::U32(x) => (*x).into(),
        Value::I32(x) => (*x).into(),
        Value::U64(x) => (*x).into(),
        Value::I64(x) => (*x).into(),
        _ => return None,
    };
    usize::try_from(n).ok()
}

fn metadata_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(f64::from(*x)),
        Value::F64(x) => Some(*x),
        _ => None,
    }
}

/// Reads a Llama GGUF file: its configuration and its tensors, dequantised
/// to f32 under HF names (a [`Checkpoint`] naming `path` in its errors).
///
/// # Errors
/// [`Error::MissingFile`]; [`Error::Config`] naming the file and the metadata
/// key or tensor for an unreadable file, another architecture, a missing or
/// malformed key, rotary scaling, or a tensor a Llama of that configuration has
/// no place for (or lacks).
pub fn read(path: &Path) -> Result<(LlamaConfig, Checkpoint)> {
    let (config, tensors) = read_tensors(path)?;
    Ok((config, Checkpoint::from_tensors(path, tensors)))
}

/// Writes the Llama GGUF file `gguf` as a Hugging Face base-model folder `dir`
/// (`config.json` of a `LlamaModel`, `model.safetensors` in f32 under `model.…`
/// names), replacing `dir` atomically; returns the configuration. transformers
/// loads the folder with `LlamaModel` / `LlamaForSequenceClassification`, and
/// [`crate::models::load`] with any head. (No tokenizer: the caller writes one.)
///
/// # Errors
/// As [`read`], and I/O errors naming the file.
pub fn save_hf_base(gguf: &Path, dir: &Path) -> Result<LlamaConfig> {
    let (config, tensors) = read_tensors(gguf)?;
    let mut cfg = serde_json::to_value(&config).map_err(|e| Error::Bug(format!("config: {e}")))?;
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| Error::Bug("a Llama config is not a JSON object".into()))?;
    obj.insert("model_type".into(), serde_json::json!("llama"));
    obj.insert("architectures".into(), serde_json::json!(["LlamaModel"]));
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
    let name = dir
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> Result<()> {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        let path = tmp.join("config.json");
        let text = serde_json::to_string_pretty(&cfg).expect("JSON value serialises") + "\n";
        std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))?;
        let path = tmp.join("model.safetensors");
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        // In memory then `fs::write`, as crate::checkpoint: the file gets the umask's mode.
        let bytes = safetensors::tensor::serialize(tensors.iter(), Some(metadata))
            .map_err(|e| Error::io("writing", &path, std::io::Error::other(e.to_string())))?;
        std::fs::write(&path, bytes).map_err(|e| Error::io("writing", &path, e))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io("replacing", dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io("renaming into place", dir, e))
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| config)
}

/// [`read`]'s configuration and tensors, by HF name.
fn read_tensors(path: &Path) -> Result<(LlamaConfig, HashMap<String, Tensor>)> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            what: "GGUF model",
        });
    }
    let err = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let content =
        Content::read(&mut file).map_err(|e| err(format!("not a readable GGUF file: {e}")))?;
    let md = &content.metadata;
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| err("no `general.architecture` string in the metadata".into()))?;
    if arch != GGUF_ARCHITECTURE {
        return Err(err(format!(
            "general.architecture is `{arch}`; only `{GGUF_ARCHITECTURE}` GGUF files load as \
             trainable models"
        )));
    }
    let key = |k: &str| format!("{GGUF_ARCHITECTURE}.{k}");
    let count = |k: &str| -> Result<Option<usize>> {
        match md.get(&key(k)) {
            None => Ok(None),
            Some(v) => metadata_usize(v)
                .map(Some)
                .ok_or_else(|| err(format!("metadata `{}` is not an integer", key(k)))),
        }
    };
    let required = |k: &str| -> Result<usize> {
        count(k)?.ok_or_else(|| err(format!("metadata `{}` is missing", key(k))))
    };
    let real = |k: &str| -> Result<Option<f64>> {
        match md.get(&key(k)) {
            None => Ok(None),
            Some(v) => metadata_f64(v)
                .map(Some)
                .ok_or_else(|| err(format!("metadata `{}` is not a number", key(k)))),
        }
    };
    let token = |k: &str| {
        md.get(&format!("tokenizer.ggml.{k}"))
            .and_then(metadata_usize)
            .and_then(|v| u32::try_from(v).ok())
    };
    if let Some(kind) = md.get(&key("rope.scaling.type")) {
        let kind = kind.to_string().map(String::as_str).unwrap_or("?");
        if kind != "none" {
            return Err(err(format!(
                "rotary scaling `{kind}` ({}) is not supported",
                key("rope.scaling.type")
            )));
        }
    }
    let embed_rows = content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|t| t.shape.dims().first().copied());
    let heads = required("attention.head_count")?;
    let hidden = required("embedding_length")?;
    let rope_theta = real("rope.freq_base")?.unwrap_or(10000.0);
    let config = LlamaConfig {
        vocab_size: count("vocab_size")?
            .or(embed_rows)
            .ok_or_else(|| err("neither `llama.vocab_size` nor `token_embd.weight`".into()))?,
        hidden_size: hidden,
        intermediate_size: required("feed_forward_length")?,
        num_hidden_layers: required("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(count("attention.head_count_kv")?.unwrap_or(heads)),
        max_position_embeddings: count("context_length")?.unwrap_or(2048),
        rms_norm_eps: real("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        rope_parameters: Some(
            serde_json::json!({"rope_type": "default", "rope_theta": rope_theta}),
        ),
        pad_token_id: token("padding_token_id"),
        bos_token_id: token("bos_token_id"),
        eos_token_id: token("eos_token_id").map(|e| serde_json::json!(e)),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        ..LlamaConfig::default()
    };
    config.validate().map_err(&err)?;
    if let Some(d) = count("rope.dimension_count")? {
        if d != config.head_dim() {
            return Err(err(format!(
                "{} = {d} but the head width is {} (partial rotary is not supported)",
                key("rope.dimension_count"),
                config.head_dim()
            )));
        }
    }
    let mut tensors = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let Some(hf) = hf_name(name).map_err(&err)? else {
            continue;
        };
        if let Some(layer) = hf
            .strip_prefix("model.layers.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&l| l >= config.num_hidden_layers)
        {
            return Err(err(format!(
                "tensor `{name}` belongs to layer {layer}, but {} is {}",
                key("block_count"),
                config.num_hidden_layers
            )));
        }
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| err(format!("tensor `{name}`: {e}")))?;
        let mut t = q
            .dequantize(&Device::Cpu)
            .map_err(|e| err(format!("tensor `{name}`: cannot dequantise: {e}")))?;
        // A matrix of another shape is left as it is: building the model then
        // names it with the shape it should have.
        let hd = config.head_dim();
        if hf.ends_with("q_proj.weight") && t.dim(0)? == heads * hd {
            t = unpermute_rows(&t, heads)?;
        } else if hf.ends_with("k_proj.weight") && t.dim(0)? == config.kv_heads() * hd {
            t = unpermute_rows(&t, config.kv_heads())?;
        }
        tensors.insert(hf, t);
    }
    Ok((config, tensors))
}
