//! Saving a task model as a Hugging Face folder.
//!
//! The folder holds `model.safetensors` (the task model's HF names, e.g.
//! `bert.…`, `classifier.weight`/`.bias` or `qa_outputs.weight`/`.bias`,
//! float32), `config.json` (the original config plus `architectures`,
//! `model_type`, `num_labels`, `id2label`, `label2id`, `problem_type`) and the
//! tokenizer files of the source folder. `transformers` loads it unchanged as the
//! architecture's `…ForSequenceClassification` / `…ForQuestionAnswering`, and
//! [`crate::models::load_task_folder`] loads it back bit-identically.
//!
//! Saving is atomic: everything is written into a temporary folder beside the
//! target, which is then renamed into place, so a crash never leaves a
//! half-written model under the target name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use crate::models::Architecture;
use crate::task::{HeadSpec, TaskModel};
use crate::{Error, Result};

/// Tokenizer-related files copied from the source folder when present.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
];

/// Options of [`TaskModel::save_pretrained`].
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Label names by index (`id2label`); default `LABEL_0`, `LABEL_1`, ….
    pub labels: Option<Vec<String>>,
    /// HF `problem_type`; default `single_label_classification` for
    /// classification, `regression` for regression, none for QA.
    pub problem_type: Option<String>,
    /// Folder whose tokenizer files are copied; default the model's
    /// [`TaskModel::source_dir`]. When given explicitly it must hold `tokenizer.json`.
    pub tokenizer_dir: Option<PathBuf>,
}

/// `base` (a model's `config.json` object) with the task fields of head `spec`
/// in architecture `arch`: `architectures`, `model_type`, `num_labels`,
/// `id2label`, `label2id` and `problem_type`.
pub fn task_config(
    mut v: Value,
    arch: &Architecture,
    spec: HeadSpec,
    opts: &SaveOptions,
) -> Result<Value> {
    let n = spec.num_outputs();
    let labels: Vec<String> = match &opts.labels {
        Some(l) if l.len() != n => {
            return Err(Error::BadInput(format!(
                "{} label names given for a head with {n} outputs",
                l.len()
            )))
        }
        Some(l) => l.clone(),
        None => (0..n).map(|i| format!("LABEL_{i}")).collect(),
    };
    let id2label: BTreeMap<String, String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone()))
        .collect();
    let label2id: BTreeMap<String, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i))
        .collect();
    let problem_type = opts.problem_type.clone().or(match spec {
        HeadSpec::Classification { .. } => Some("single_label_classification".into()),
        HeadSpec::Regression => Some("regression".into()),
        HeadSpec::QuestionAnswering => None,
    });
    let obj = v
        .as_object_mut()
        .ok_or_else(|| Error::Bug("a model config is not a JSON object".into()))?;
    obj.insert(
        "architectures".into(),
        json!([arch.class_name(spec.kind())]),
    );
    obj.insert("model_type".into(), json!(arch.model_type));
    obj.insert("num_labels".into(), json!(n));
    obj.insert("id2label".into(), json!(id2label));
    obj.insert("label2id".into(), json!(label2id));
    match problem_type {
        Some(p) => obj.insert("problem_type".into(), json!(p)),
        None => obj.remove("problem_type"),
    };
    Ok(v)
}

/// All parameters of `model` as float32 tensors under their HF names, in the
/// checkpoint's layout ([`TaskModel::checkpoint_layout`]).
pub fn state_dict<M: TaskModel + ?Sized>(model: &M) -> Result<HashMap<String, Tensor>> {
    model
        .named_parameters()
        .into_iter()
        .map(|(k, v)| {
            let t = model.checkpoint_layout(&k, v.as_tensor())?;
            Ok((k, t.to_dtype(DType::F32)?.contiguous()?))
        })
        .collect()
}

/// Saves `model` as a Hugging Face folder at `dir` (replacing any folder there),
/// atomically; what [`TaskModel::save_pretrained`] does.
pub fn save_pretrained<M: TaskModel + ?Sized>(
    model: &M,
    dir: &Path,
    opts: &SaveOptions,
) -> Result<()> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::BadInput(format!("cannot save to {}", dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = parent.join(format!(".{name}.tmp-{}-{stamp}", std::process::id()));
    let result = write_folder(model, &tmp, opts).and_then(|()| replace_dir(&tmp, dir));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_folder<M: TaskModel + ?Sized>(model: &M, tmp: &Path, opts: &SaveOptions) -> Result<()> {
    std::fs::create_dir(tmp).map_err(|e| Error::io("creating", tmp, e))?;
    // Config first: it validates the labels before anything heavy is written.
    let config = model.hf_config(opts)?;
    let cfg_path = tmp.join("config.json");
    let text = serde_json::to_string_pretty(&config).expect("JSON value serialises");
    std::fs::write(&cfg_path, text + "\n").map_err(|e| Error::io("writing", &cfg_path, e))?;

    let tensors = state_dict(model)?;
    let weights = tmp.join("model.safetensors");
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    // Serialised in memory and written with `fs::write`: safetensors' own file
    // writer creates the file 0600, whatever the umask.
    let bytes = safetensors::tensor::serialize(tensors.iter(), Some(metadata))
        .map_err(|e| Error::io("writing", &weights, std::io::Error::other(e.to_string())))?;
    std::fs::write(&weights, bytes).map_err(|e| Error::io("writing", &weights, e))?;

    let tok_dir = opts
        .tokenizer_dir
        .clone()
        .or_else(|| model.source_dir().map(Path::to_path_buf));
    if let Some(src) = tok_dir {
        if opts.tokenizer_dir.is_some() && !src.join("tokenizer.json").is_file() {
            return Err(Error::MissingFile {
                path: src.join("tokenizer.json"),
                what: "tokenizer to copy into the saved model",
            });
        }
        for f in TOKENIZER_FILES {
            let from = src.join(f);
            if from.is_file() {
                let to = tmp.join(f);
                // Read and write rather than `fs::copy`, which would carry the source's
                // mode over: the copy gets the umask's permissions like its siblings.
                let bytes = std::fs::read(&from).map_err(|e| Error::io("reading", &from, e))?;
                std::fs::write(&to, bytes).map_err(|e| Error::io("writing", &to, e))?;
            }
        }
    }
    Ok(())
}

/// Moves folder `tmp` to `dir`, replacing `dir` if it exists. The old folder is
/// first renamed aside, so `dir` always names either the old or the new model.
fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let aside = tmp.with_extension("old");
        std::fs::rename(dir, &aside).map_err(|e| Error::io("moving aside", dir, e))?;
        std::fs::rename(tmp, dir).map_err(|e| Error::io("renaming into place", dir, e))?;
        std::fs::remove_dir_all(&aside).map_err(|e| Error::io("removing", &aside, e))?;
    } else {
        std::fs::rename(tmp, dir).map_err(|e| Error::io("renaming into place", dir, e))?;
    }
    Ok(())
}
