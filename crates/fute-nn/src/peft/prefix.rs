//! P-tuning v2 prefixes: trainable keys and values in front of every layer's
//! self-attention, optionally reparameterised by an MLP.

use candle_core::{Tensor, D};

use crate::nn::{Linear, Mode};
use crate::Result;

/// The prefix table and its optional reparameterisation.
///
/// Without projection the table is `[P, L·2·hidden]` (TuPaTE's
/// `prefix_encoder.embedding.weight`); with projection it is `[P, hidden]` and
/// `Linear(hidden, m) → tanh → Linear(m, L·2·hidden)` maps it to the per-layer
/// keys and values (`prefix_encoder.trans.0`, `prefix_encoder.trans.2`).
/// Along the last axis the layout is `[layer, key|value, hidden]`, as P-tuning
/// v2's `past_key_values` view.
#[derive(Debug, Clone)]
pub struct PrefixEncoder {
    /// The trainable table.
    pub embedding: Tensor,
    /// The reparameterisation MLP, if any.
    pub trans: Option<(Linear, Linear)>,
    /// Number of layers `L`.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Dropout on the prefixes in training mode.
    pub dropout: f64,
}

impl PrefixEncoder {
    /// Prefix length `P`.
    pub fn len(&self) -> usize {
        self.embedding.dims()[0]
    }

    /// Whether the prefix is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The per-layer keys and values for all positions, `[P, L·2·hidden]`.
    pub fn table(&self) -> Result<Tensor> {
        match &self.trans {
            None => Ok(self.embedding.clone()),
            Some((l1, l2)) => l2.forward(&l1.forward(&self.embedding)?.tanh()?),
        }
    }

    /// Per layer `(key, value)`, each `[batch, P, hidden]`, with prefix dropout
    /// (independent masks per example, as P-tuning v2 drops out after expanding).
    pub fn keys_values(&self, batch: usize, mode: &Mode) -> Result<Vec<(Tensor, Tensor)>> {
        let table = self.table()?;
        let (p, e) = table.dims2()?;
        let x = table
            .unsqueeze(0)?
            .broadcast_as((batch, p, e))?
            .contiguous()?;
        let x = mode.dropout(&x, self.dropout)?;
        let x = x.reshape((batch, p, self.layers * 2, self.hidden))?;
        (0..self.layers)
            .map(|i| {
                let k = x.narrow(2, 2 * i, 1)?.squeeze(2)?;
                let v = x.narrow(2, 2 * i + 1, 1)?.squeeze(2)?;
                Ok((k, v))
            })
            .collect()
    }

    /// FUTE's reduction: the per-layer prefixes averaged over layers, laid out as
    /// `[key|value, head, P, head_dim]` (the reference's
    /// `stack(past_key_values).mean(0)`), flattened.
    pub fn mean_over_layers(&self, heads: usize) -> Result<Tensor> {
        let table = self.table()?;
        let p = table.dim(0)?;
        let hd = self.hidden / heads;
        let x = table.reshape((p, self.layers, 2, heads, hd))?.mean(1)?; // [P, 2, heads, hd]
        Ok(x.permute((1, 2, 0, 3))?.contiguous()?.flatten_all()?)
    }

    /// TuPaTE's reduction: the trainable table averaged over positions
    /// (`[L·2·hidden]`, or `[hidden]` with projection).
    pub fn mean_over_positions(&self) -> Result<Tensor> {
        Ok(self.embedding.mean(D::Minus2)?)
    }
}
