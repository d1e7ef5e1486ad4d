//! LoRA (Hu et al. 2021): `W x + (α/r) · B A x` on chosen linear maps of every layer.

use candle_core::Tensor;

use std::collections::BTreeMap;

use crate::hooks::LinearHook;
use crate::Result;

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
