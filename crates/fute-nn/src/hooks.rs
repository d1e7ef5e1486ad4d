//! What a forward pass lets parameter-efficient methods and probes add, for any
//! architecture.
//!
//! Every model file accepts [`Hooks`] in its forward pass and calls them at
//! fixed places: [`Hooks::linear`] on each hookable linear map (by its full HF
//! name, e.g. `bert.encoder.layer.0.attention.self.query`), [`Hooks::tap`] where
//! an activation may be probed (names listed in
//! [`crate::task::ModelDescription::taps`]), soft prompt tokens before the word
//! embeddings and key/value prefixes in every self-attention. No hook knows
//! which architecture it is in; [`crate::peft`] produces hooks, [`crate::fisher`]
//! taps activations.

use candle_core::Tensor;

use crate::nn::Linear;
use crate::{Error, Result};

/// Adds a term to the output of a linear map (LoRA).
pub trait LinearHook: Send + Sync {
    /// The term added to `linear(x)` for the linear called `name` (its full HF
    /// module name), if any (`x`: the linear's input `[…, in]`; result `[…, out]`).
    fn delta(&self, name: &str, x: &Tensor) -> Result<Option<Tensor>>;
}

/// Sees (and may replace) an activation where the model offers a tap.
pub trait Tap: Send + Sync {
    /// The value that continues the forward pass in place of `x`, the activation
    /// called `name` (a zero-valued probe may be added to read its gradient).
    fn tap(&self, name: &str, x: &Tensor) -> Result<Tensor>;
}

/// Optional additions to a forward pass. The default (no hooks) is the plain model.
#[derive(Default, Clone, Copy)]
pub struct Hooks<'a> {
    /// Soft tokens `[B, P, hidden]` put in front of the word embeddings (prompt
    /// tuning, as P-tuning v2's `*PromptFor*` classes): position embeddings then
    /// cover all `P + T` positions, the attention mask gets `P` ones in front,
    /// and the `P` positions are removed from the output again (so the last
    /// hidden state is `[B, T, hidden]` and a head reads the real tokens).
    pub prompt: Option<&'a Tensor>,
    /// Per layer, key and value prefixes, each `[B, P, hidden]`, concatenated in
    /// front of that layer's self-attention keys and values (P-tuning v2); the
    /// attention mask gets `P` ones in front; the tokens' positions are
    /// untouched. (T5, whose positions are relative, treats the prefix as `P`
    /// past keys/values at positions `0..P`, as transformers' cache does: its
    /// position bias covers the prefix keys; see [`crate::models::t5`].)
    pub prefix: Option<&'a [(Tensor, Tensor)]>,
    /// Extra terms on linear maps, by name.
    pub linear: Option<&'a dyn LinearHook>,
    /// Probes on named activations.
    pub taps: Option<&'a dyn Tap>,
}

impl Hooks<'_> {
    /// `lin(x)` plus the linear hook's term for the linear called `name`.
    pub fn linear(&self, lin: &Linear, name: &str, x: &Tensor) -> Result<Tensor> {
        let y = lin.forward(x)?;
        match self.linear {
            Some(h) => match h.delta(name, x)? {
                Some(d) => Ok((y + d)?),
                None => Ok(y),
            },
            None => Ok(y),
        }
    }

    /// `x`, or what the tap makes of it, at the activation called `name`.
    pub fn tap(&self, name: &str, x: Tensor) -> Result<Tensor> {
        match self.taps {
            Some(t) => t.tap(name, &x),
            None => Ok(x),
        }
    }

    /// Checks the prompt (`[batch, P, hidden]`) and the prefixes (one key/value
    /// pair per layer, each `[batch, P', hidden]`) and returns `(P, P')`.
    pub fn check(&self, batch: usize, layers: usize, hidden: usize) -> Result<(usize, usize)> {
        let n_prompt = match self.prompt {
            Some(p) => {
                let (pb, np, ph) = p.dims3()?;
                if pb != batch || ph != hidden {
                    return Err(Error::BadInput(format!(
                        "prompt has shape {:?}, expected [{batch}, P, {hidden}]",
                        p.dims()
                    )));
                }
                np
            }
            None => 0,
        };
        let mut n_prefix = 0;
        if let Some(prefix) = self.prefix {
            if prefix.len() != layers {
                return Err(Error::BadInput(format!(
                    "{} prefix pairs for {layers} layers",
                    prefix.len()
                )));
            }
            n_prefix = prefix[0].0.dim(1)?;
            for (k, v) in prefix {
                for p in [k, v] {
                    if p.dims() != [batch, n_prefix, hidden] {
                        return Err(Error::BadInput(format!(
                            "prefix has shape {:?}, expected [{batch}, {n_prefix}, {hidden}]",
                            p.dims()
                        )));
                    }
                }
            }
        }
        Ok((n_prompt, n_prefix))
    }
}

impl std::fmt::Debug for Hooks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("prompt", &self.prompt.map(|t| t.dims().to_vec()))
            .field("prefix_layers", &self.prefix.map(|p| p.len()))
            .field("linear", &self.linear.is_some())
            .field("taps", &self.taps.is_some())
            .finish()
    }
}
