//! Where parameters come from: a checkpoint file or a seeded fresh initialisation.
//!
//! Every parameter is created as a [`candle_nn::Var`] inside one [`VarMap`], under
//! the full Hugging Face name of a task model (`bert.encoder.layer.0...`,
//! `classifier.weight`, `qa_outputs.weight`). Saving is therefore a plain dump of
//! the map, and an optimiser gets every trainable tensor from
//! [`VarMap::all_vars`].

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::rng::SeededRng;
use crate::{Error, Result};

/// A `model.safetensors` file opened for reading tensors by name, or tensors
/// already in memory under HF names (a dequantised GGUF file,
/// [`Checkpoint::from_tensors`]).
///
/// It remembers which tensors a model took ([`Checkpoint::unused_under`]), so a
/// checkpoint holding tensors its config has no place for is refused.
pub struct Checkpoint {
    path: PathBuf,
    tensors: Store,
    used: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .finish()
    }
}

impl Checkpoint {
    /// Opens (memory-maps) a safetensors file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(Error::MissingFile {
                path,
                what: "model weights (safetensors)",
            });
        }
        // SAFETY: the file is only read; a concurrent writer could change the bytes
        // under us, which fute never does to a checkpoint it is loading (saves go
        // through a temporary folder and a rename).
        let tensors = unsafe { MmapedSafetensors::new(&path) }.map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("not a readable safetensors file: {e}"),
        })?;
        Ok(Self {
            path,
            tensors: Store::Mapped(tensors),
            used: Default::default(),
        })
    }

    /// A checkpoint of tensors in memory, by HF name; `path` is the file they
    /// were read from, which errors name.
    pub fn from_tensors(
        path: impl AsRef<Path>,
        tensors: std::collections::HashMap<String, Tensor>,
    ) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            tensors: Store::Memory(tensors),
            used: Default::default(),
        }
    }

    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of all tensors in the file.
    pub fn names(&self) -> Vec<String> {
        match &self.tensors {
            Store::Mapped(m) => m.tensors().into_iter().map(|(name, _)| name).collect(),
            Store::Memory(m) => m.keys().cloned().collect(),
        }
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        match &self.tensors {
            Store::Mapped(m) => m.get(name).is_ok(),
            Store::Memory(m) => m.contains_key(name),
        }
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match &self.tensors {
            Store::Mapped(m) => m.get(name).ok().map(|v| v.shape().to_vec()),
            Store::Memory(m) => m.get(name).map(|t| t.dims().to_vec()),
        }
    }

    /// Loads tensor `name` onto `device` in `dtype`, checking its shape.
    pub fn load(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let found = self.shape(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            expected: shape.to_vec(),
        })?;
        if found != shape {
            return Err(Error::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found,
            });
        }
        self.used
            .lock()
            .expect("checkpoint lock poisoned")
            .insert(name.to_string());
        let t = match &self.tensors {
            Store::Mapped(m) => m.load(name, device)?,
            Store::Memory(m) => m[name].to_device(device)?,
        };
        Ok(t.to_dtype(dtype)?)
    }

    /// The name under which the file stores the model parameter `name`
    /// (full task-model name such as `bert.embeddings.word_embeddings.weight`),
    /// trying in turn: the name itself; the name without its leading
    /// `<base_prefix>.` (checkpoints of a bare encoder, e.g. sentence-transformers'
    /// all-MiniLM-L6-v2); and both again with the legacy LayerNorm names
    /// `gamma`/`beta` for `weight`/`bias` (TF-converted BERTs), which
    /// transformers also accepts (`_fix_state_dict_key_on_load`,
    /// <https://github.com/huggingface/transformers/blob/v4.57.1/src/transformers/modeling_utils.py#L4915>).
    pub fn resolve_under(&self, name: &str, base_prefix: Option<&str>) -> Option<String> {
        let stripped =
            base_prefix.and_then(|b| name.strip_prefix(b).and_then(|rest| rest.strip_prefix('.')));
        let legacy = |n: &str| -> Option<String> {
            if let Some(head) = n.strip_suffix("LayerNorm.weight") {
                Some(format!("{head}LayerNorm.gamma"))
            } else {
                n.strip_suffix("LayerNorm.bias")
                    .map(|head| format!("{head}LayerNorm.beta"))
            }
        };
        let mut candidates = vec![name.to_string()];
        candidates.extend(stripped.map(str::to_string));
        candidates.extend(legacy(name));
        candidates.extend(stripped.and_then(legacy));
        candidates.into_iter().find(|c| self.contains(c))
    }

    /// [`Checkpoint::resolve_under`] with BERT's base prefix `bert`.
    pub fn resolve(&self, name: &str) -> Option<String> {
        self.resolve_under(name, Some("bert"))
    }

    /// Tensors of the file under one of `roots` (first name components, after an
    /// optional `<base_prefix>.`) that no model parameter was loaded from, sorted.
    /// Buffers transformers itself ignores (`*.position_ids`) are not counted.
    pub fn unused_under(&self, base_prefix: &str, roots: &[&str]) -> Vec<String> {
        let used = self.used.lock().expect("checkpoint lock poisoned");
        let mut out: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !used.contains(n) && !n.ends_with("position_ids"))
            .filter(|n| {
                let rest = n
                    .strip_prefix(base_prefix)
                    .and_then(|r| r.strip_prefix('.'))
                    .unwrap_or(n);
                roots.iter().any(|r| rest.split('.').next() == Some(*r))
            })
            .collect();
        out.sort();
        out
    }
}

/// Where a [`Checkpoint`]'s tensors are.
enum Store {
    /// A memory-mapped safetensors file.
    Mapped(MmapedSafetensors),
    /// Tensors already loaded.
    Memory(std::collections::HashMap<String, Tensor>),
}

/// How a parameter is initialised when it does not come from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// Whether a parameter must be in the checkpoint when one is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Part of the pretrained encoder: a checkpoint without it is an error.
    Required,
    /// New for the task (heads, and the pooler which some checkpoints omit):
    /// freshly initialised when absent, as Hugging Face does.
    FreshIfMissing,
}

/// Where [`Params::get`] takes existing tensors from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Nowhere: every parameter is fresh.
    Fresh,
    /// A checkpoint file (fresh where [`Need::FreshIfMissing`] allows).
    Checkpoint(&'a Checkpoint),
    /// The `Var`s of a built model: those whose name passes `live` as they are,
    /// the others detached (constants to autograd). Nothing is registered.
    Vars {
        map: &'a VarMap,
        live: &'a dyn Fn(&str) -> bool,
    },
}

/// Creates parameters under a name prefix; see the module documentation.
#[derive(Clone)]
pub struct Params<'a> {
    varmap: &'a VarMap,
    prefix: String,
    dtype: DType,
    device: Device,
    source: Source<'a>,
    base_prefix: Option<&'static str>,
    base_aliases: &'static [&'static str],
    seed: u64,
    fresh_heads: bool,
}

impl std::fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field("prefix", &self.prefix)
            .field("dtype", &self.dtype)
            .field(
                "source",
                &match self.source {
                    Source::Fresh => "fresh".to_string(),
                    Source::Checkpoint(c) => c.path().display().to_string(),
                    Source::Vars { .. } => "vars".to_string(),
                },
            )
            .finish()
    }
}

impl<'a> Params<'a> {
    /// Parameters registered in `varmap`, loaded from `source` when given, fresh
    /// ones drawn from a generator seeded by `seed` and the parameter's name (so a
    /// fresh head is the same whatever else the checkpoint holds).
    pub fn new(
        varmap: &'a VarMap,
        dtype: DType,
        device: &Device,
        source: Option<&'a Checkpoint>,
        seed: u64,
    ) -> Self {
        Self {
            varmap,
            prefix: String::new(),
            dtype,
            device: device.clone(),
            source: source.map_or(Source::Fresh, Source::Checkpoint),
            base_prefix: None,
            base_aliases: &[],
            seed,
            fresh_heads: false,
        }
    }

    /// Parameters taken from the `Var`s already in `varmap` (a built model):
    /// those whose full name passes `live` unchanged, the others detached, so
    /// the same model code runs on them with gradients only where wanted.
    /// Nothing new is registered; a name missing from `varmap` is a bug.
    pub fn from_vars(
        varmap: &'a VarMap,
        live: &'a dyn Fn(&str) -> bool,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            varmap,
            prefix: String::new(),
            dtype,
            device: device.clone(),
            source: Source::Vars { map: varmap, live },
            base_prefix: None,
            base_aliases: &[],
            seed: 0,
            fresh_heads: false,
        }
    }

    /// The same builder reading checkpoints that may omit the encoder's name
    /// prefix `base_prefix` (see [`Checkpoint::resolve_under`]).
    pub fn with_base_prefix(mut self, base_prefix: &'static str) -> Self {
        self.base_prefix = Some(base_prefix);
        self
    }

    /// The same builder reading checkpoints that may store the encoder under
    /// another prefix instead of `base_prefix`: Llama's question-answering class
    /// keeps its base under `transformer.` where every other Llama class (and a
    /// causal LM checkpoint) has `model.`.
    pub fn with_base_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.base_aliases = aliases;
        self
    }

    /// The same builder, whose [`Params::head`] ignores the checkpoint when
    /// `fresh` (see [`crate::task::BuildOptions::fresh_head`]).
    pub fn with_fresh_heads(mut self, fresh: bool) -> Self {
        self.fresh_heads = fresh;
        self
    }

    /// The builder for a task head's parameters: this one, or a fresh (seeded)
    /// one when built [`Params::with_fresh_heads`] from a checkpoint.
    pub fn head(&self) -> Self {
        let mut p = self.clone();
        if self.fresh_heads && matches!(self.source, Source::Checkpoint(_)) {
            p.source = Source::Fresh;
        }
        p
    }

    /// The same builder one level down: names get `name.` prepended.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let mut p = self.clone();
        p.prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        };
        p
    }

    /// The dtype parameters are created in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The full name of parameter `name` under this prefix.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// Creates (and registers as a trainable `Var`) parameter `name` of `shape`.
    pub fn get(&self, shape: &[usize], name: &str, init: Init, need: Need) -> Result<Tensor> {
        self.get_laid_out(shape, name, init, need, false)
    }

    /// [`Params::get`] for a matrix of `shape` `[rows, cols]` that checkpoints
    /// store transposed, `[cols, rows]` (GPT-2's `Conv1D` weights are `[in, out]`
    /// where a `Linear`'s are `[out, in]`): read from the file as `[cols, rows]`
    /// (errors name that shape) and transposed once, here. The model then holds
    /// `[rows, cols]`; [`crate::task::TaskModel::checkpoint_layout`] transposes
    /// back when saving.
    pub fn get_transposed(
        &self,
        shape: [usize; 2],
        name: &str,
        init: Init,
        need: Need,
    ) -> Result<Tensor> {
        self.get_laid_out(&shape, name, init, need, true)
    }

    fn get_laid_out(
        &self,
        shape: &[usize],
        name: &str,
        init: Init,
        need: Need,
        transposed: bool,
    ) -> Result<Tensor> {
        let full = self.full_name(name);
        let file_shape: Vec<usize> = if transposed {
            shape.iter().rev().copied().collect()
        } else {
            shape.to_vec()
        };
        let value = match self.source {
            Source::Vars { map, live } => {
                let data = map.data().lock().expect("VarMap lock poisoned");
                let var = data.get(&full).ok_or_else(|| {
                    Error::Bug(format!("rebuilding a model: no parameter `{full}`"))
                })?;
                return Ok(if live(&full) {
                    var.as_tensor().clone()
                } else {
                    var.as_tensor().detach()
                });
            }
            Source::Checkpoint(ckpt) => match self.resolve(ckpt, &full) {
                Some(file_name) => {
                    let t = ckpt.load(&file_name, &file_shape, self.dtype, &self.device)?;
                    Some(if transposed { t.t()?.contiguous()? } else { t })
                }
                None if need == Need::Required => {
                    return Err(Error::MissingTensor {
                        path: ckpt.path().to_path_buf(),
                        name: full,
                        expected: file_shape,
                    })
                }
                None => None,
            },
            Source::Fresh => None,
        };
        let value = match value {
            Some(v) => v,
            None => self.fresh(&full, shape, init)?,
        };
        let var = Var::from_tensor(&value)?;
        let mut data = self.varmap.data().lock().expect("VarMap lock poisoned");
        if data.contains_key(&full) {
            return Err(Error::Bug(format!("parameter `{full}` created twice")));
        }
        data.insert(full, var.clone());
        Ok(var.as_tensor().clone())
    }

    /// Takes note that the checkpoint's tensor `name` (under this prefix), if it
    /// has one, is a buffer the model does not need (GPT-2's causal-mask
    /// `attn.bias`, which older checkpoints hold and transformers skips), so
    /// that it is not reported as a tensor the config has no place for.
    pub fn skip_buffer(&self, name: &str) {
        if let Source::Checkpoint(ckpt) = self.source {
            if let Some(file_name) = self.resolve(ckpt, &self.full_name(name)) {
                ckpt.used
                    .lock()
                    .expect("checkpoint lock poisoned")
                    .insert(file_name);
            }
        }
    }

    /// The checkpoint name of parameter `full`: [`Checkpoint::resolve_under`]
    /// with the base prefix, then with each alias in its place.
    fn resolve(&self, ckpt: &Checkpoint, full: &str) -> Option<String> {
        ckpt.resolve_under(full, self.base_prefix).or_else(|| {
            let rest = full.strip_prefix(self.base_prefix?)?.strip_prefix('.')?;
            self.base_aliases
                .iter()
                .find_map(|a| ckpt.resolve_under(&format!("{a}.{rest}"), None))
        })
    }

    fn fresh(&self, full: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let t = match init {
            Init::Zeros => Tensor::zeros(shape, self.dtype, &self.device)?,
            Init::Ones => Tensor::ones(shape, self.dtype, &self.device)?,
            Init::Normal(std) => {
                let rng = SeededRng::new(self.seed ^ fnv1a(full.as_bytes()));
                let values: Vec<f64> = (0..n).map(|_| rng.normal() * std).collect();
                Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?
            }
        };
        Ok(t)
    }
}

/// FNV-1a hash of `bytes` (stable across runs and platforms, unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}
