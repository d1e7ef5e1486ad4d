//! A GGUF base model (the packaged SmolLM2-135M, or any Llama-family `.gguf`)
//! as a Hugging Face folder that [`super::finetune`] trains like any other.
//!
//! [`prepare`] converts the file once into a cached folder: `config.json` and
//! `model.safetensors` from fute-nn's GGUF reader (weights dequantised to f32,
//! query/key rows in Hugging Face order; [`fute_nn::models::llama::gguf`]) and
//! a `tokenizer.json` that is the GGUF's own tokenizer
//! ([`fute_llm::GgufTokenizer`], user text read literally, as llama.cpp with
//! `special = false`), padding with the model's `pad_token_id`, so the
//! sequence head finds the last real token. A stamp (`fute_gguf_source.json`:
//! the file's path, size and modification time) written last decides whether
//! the cache is current; an interrupted conversion has none and is redone.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use fute_llm::GgufTokenizer;
use fute_nn::models::llama::gguf;

use super::invalid;

/// The stamp file of a converted folder.
pub const STAMP_FILE: &str = "fute_gguf_source.json";

/// The GGUF file a base names, if it is one: the path itself when it ends in
/// `.gguf`, or the only `.gguf` file of a folder without `config.json` (the
/// layout of the packaged `smollm2` asset). A folder with several is an error.
pub fn gguf_file_of(base: &Path) -> Result<Option<PathBuf>> {
    if base.is_file() {
        let is_gguf = base
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        return Ok(is_gguf.then(|| base.to_path_buf()));
    }
    if !base.is_dir() || base.join("config.json").is_file() {
        return Ok(None);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(base)
        .with_context(|| format!("reading {}", base.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(invalid(format!(
            "{} holds {n} GGUF files and no config.json; give one of them as --base",
            base.display()
        ))),
    }
}

fn stamp(gguf: &Path) -> Result<serde_json::Value> {
    let meta = std::fs::metadata(gguf).with_context(|| format!("reading {}", gguf.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(serde_json::json!({
        "gguf": gguf.canonicalize().unwrap_or_else(|_| gguf.to_path_buf()),
        "bytes": meta.len(),
        "modified_unix": modified,
    }))
}

/// The Hugging Face folder of `gguf` under `cache` (`<cache>/<file stem>`),
/// converted now unless a current one is there. `on_convert` is called before
/// a conversion (which takes seconds and writes about 4 bytes per parameter).
///
/// # Errors
/// A user error for a GGUF file fute cannot train (another architecture, a
/// tokenizer other than byte-level BPE, no padding or end-of-sequence token);
/// I/O errors naming the file.
pub fn prepare(gguf: &Path, cache: &Path, on_convert: &mut dyn FnMut(&Path)) -> Result<PathBuf> {
    let stem = gguf
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let dir = cache.join(stem);
    let want = stamp(gguf)?;
    let current = std::fs::read_to_string(dir.join(STAMP_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|s| s == want);
    if current && super::check_model_folder(&dir, "converted base").is_ok() {
        return Ok(dir);
    }
    on_convert(&dir);
    let _ = std::fs::remove_file(dir.join(STAMP_FILE));
    let config = gguf::save_hf_base(gguf, &dir)?;
    let tok = GgufTokenizer::from_file(gguf).map_err(|e| {
        invalid(format!(
            "{}: its tokenizer cannot be used for training: {e}",
            gguf.display()
        ))
    })?;
    let pad = config.pad_token_id.or(tok.eos()).ok_or_else(|| {
        invalid(format!(
            "{} names neither a padding nor an end-of-sequence token \
                 (tokenizer.ggml.padding_token_id / eos_token_id)",
            gguf.display()
        ))
    })?;
    let inner = tok.literal_tokenizer().ok_or_else(|| {
        invalid(format!(
            "{}: only a byte-level BPE tokenizer (tokenizer.ggml.model gpt2) can be saved \
             for training; this one is SentencePiece",
            gguf.display()
        ))
    })?;
    let pad_token = inner.id_to_token(pad).ok_or_else(|| {
        invalid(format!(
            "{}: padding id {pad} is not in the vocabulary",
            gguf.display()
        ))
    })?;
    let text = inner
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("serialising the GGUF tokenizer: {e}"))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)?;
    // `tokenizers` does not save "encode special tokens as text": without the
    // added-token list, `<|im_end|>` written in user text is the BPE pieces of
    // those characters, exactly as `GgufTokenizer::encode_literal` reads it (the
    // control tokens stay in the vocabulary).
    json["added_tokens"] = serde_json::json!([]);
    // Padding as `tokenizers` writes it; fute-nn reads the id from here.
    json["padding"] = serde_json::json!({
        "strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": pad, "pad_type_id": 0, "pad_token": pad_token,
    });
    let path = dir.join("tokenizer.json");
    fute_core::fsutil::write_atomic(&path, (serde_json::to_string(&json)? + "\n").as_bytes())?;
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    if cfg["pad_token_id"].is_null() {
        // The sequence head needs one; the tokenizer pads with it.
        cfg["pad_token_id"] = serde_json::json!(pad);
        let text = serde_json::to_string_pretty(&cfg)? + "\n";
        fute_core::fsutil::write_atomic(&dir.join("config.json"), text.as_bytes())?;
    }
    let text = serde_json::to_string_pretty(&want)? + "\n";
    fute_core::fsutil::write_atomic(&dir.join(STAMP_FILE), text.as_bytes())?;
    Ok(dir)
}
