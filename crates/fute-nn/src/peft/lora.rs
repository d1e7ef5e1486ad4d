//! LoRA (Hu et al. 2021): `W x + (α/r) · B A x` on chosen linear maps of every layer.

use candle_core::Tensor;

use std::collections::BTreeMap;

use crate::hooks::LinearHook;
use crate::task::TaskModel;
use crate::{Error, Result};

/// One adapter pair on one linear map.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `[r, in]`, uniform in `±1/√in` (PyTorch's default for a Linear, as loralib).
    pub a: Tensor,
    /// `[out, r]`, zeros: the adapted model starts as the frozen one.
    pub b: Tensor,
}

/// LoRA adapters, by the full HF name of the linear they adapt.
#[derive(Debug, Clone)]
pub struct LoraAdapters {
    /// Adapter pair of each adapted linear.
    pub pairs: BTreeMap<String, LoraPair>,
    /// `alpha / rank`.
    pub scale: f64,
}

impl LinearHook for LoraAdapters {
    fn delta(&self, name: &str, x: &Tensor) -> Result<Option<Tensor>> {
        let Some(p) = self.pairs.get(name) else {
            return Ok(None);
        };
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("rank >= 1");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let low = x2.matmul(&p.a.t()?)?; // [rows, r]
        let up = (low.matmul(&p.b.t()?)? * self.scale)?; // [rows, out]
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = p.b.dim(0)?;
        Ok(Some(up.reshape(out_dims)?))
    }
}

impl super::Peft {
    /// Folds trained LoRA adapters into `model`'s own weights
    /// (`W ← W + (alpha/r)·B·A` for every adapted linear) and removes the
    /// adapter parameters from its `VarMap`, so `model` alone computes what the
    /// adapted model did and saves as a plain task model (transformers loads it
    /// without PEFT). BitFit has nothing to fold (it trains the model's own
    /// biases). Prefix and prompt tuning change the input, not a weight, and
    /// cannot be folded: an error.
    pub fn merge_into(&self, model: &dyn TaskModel) -> Result<()> {
        match &self.modules {
            super::Modules::BitFit => return Ok(()),
            super::Modules::Lora(l) => {
                for (name, p) in &l.pairs {
                    let w = format!("{name}.weight");
                    let var = model.parameter(&w).ok_or_else(|| {
                        Error::Bug(format!("LoRA adapts `{name}`, which has no weight"))
                    })?;
                    let delta = (p.b.matmul(&p.a)? * l.scale)?.to_dtype(var.dtype())?;
                    var.set(&(var.as_tensor() + delta)?)?;
                }
            }
            _ => {
                return Err(Error::BadInput(format!(
                    "{} adds to the input, not to a weight: it cannot be merged into the model",
                    self.config.name()
                )))
            }
        }
        let mut data = model.varmap().data().lock().expect("VarMap lock poisoned");
        for n in self.own_names() {
            data.remove(n);
        }
        Ok(())
    }
}
