//! The surrogate Θ_T: the fixed base model whose space every embedding lives in.

use anyhow::{bail, Context as _};
use fute_nn::task::ModelDescription;
use fute_nn::{BuildOptions, HeadSpec, TextTokenizer};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// Files a surrogate folder must hold.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A surrogate model folder, its tokenizer and its content hash.
pub struct Surrogate {
    /// The Hugging Face–format folder.
    pub dir: PathBuf,
    /// sha256 of config.json, tokenizer.json and model.safetensors: identifies the space.
    pub hash: String,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Its layout (hidden size, positions, layers), whatever its architecture.
    pub description: ModelDescription,
}

/// Resolves `spec`: a folder path, or the name of a fetched model asset (`minilm`).
pub fn resolve_model_dir(
    spec: &str,
    assets: &fute_core::assets::Assets,
) -> anyhow::Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    if fute_core::assets::find(spec).is_ok() {
        return Ok(assets.dir(spec)?);
    }
    bail!(fute_core::Error::Invalid(format!(
        "`{spec}` is neither a model folder nor a model asset (e.g. `minilm`; see `fute assets list`)"
    )))
}

/// sha256 over a model folder's `config.json`, `tokenizer.json` and `model.safetensors`:
/// the identity of a model (a surrogate's defines the space; a subject model's keys its cache).
pub fn hash_model_folder(dir: &Path) -> anyhow::Result<String> {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let path = dir.join(f);
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

impl Surrogate {
    /// Opens a surrogate folder, checking its files and loading its weights
    /// once through the registry (any registered architecture; a checkpoint
    /// that disagrees with its config is refused here, before any work).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        for f in REQUIRED_FILES {
            if !dir.join(f).is_file() {
                bail!(fute_core::Error::Invalid(format!(
                    "surrogate folder {} lacks {f}; a surrogate is a Hugging Face folder with {}",
                    dir.display(),
                    REQUIRED_FILES.join(", ")
                )));
            }
        }
        let hash = hash_model_folder(dir)?;
        let tokenizer = TextTokenizer::from_folder(dir)?;
        // Any head: only the backbone's layout is kept.
        let model = fute_nn::models::load(dir, HeadSpec::Regression, &BuildOptions::default())?;
        let description = model.describe().clone();
        Ok(Surrogate {
            dir: dir.to_path_buf(),
            hash,
            tokenizer,
            description,
        })
    }
}
