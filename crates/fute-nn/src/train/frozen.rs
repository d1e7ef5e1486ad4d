//! A view of a model in which the parameters a run does not train are detached.
//!
//! Every parameter is a candle `Var`, so a backward pass computes a gradient for
//! each of them, trained or not. In a parameter-efficient run (prefix, prompt
//! tuning, LoRA, BitFit) that is almost all of the work: the `[vocab, hidden]`
//! word-embedding gradient and every weight-gradient matmul of the frozen
//! backbone. In the view the frozen tensors are detached (same storage, no
//! gradient tracking); [`crate::ops::linear`] then forms only input gradients
//! for them, and ops whose inputs are all frozen leave the graph. Trained
//! parameters are the model's own `Var` tensors, so optimiser updates are seen
//! by the view and gradients are keyed by the same tensors.

use std::collections::HashSet;

use candle_core::{Tensor, TensorId};

use crate::heads::{BertTaskModel, Head};
use crate::nn::{Embedding, LayerNorm, Linear};

/// `model` with every parameter not named in `trainable` detached.
///
/// Forward values are unchanged; backward computes gradients only for the
/// `trainable` parameters (and what they need). Parameters that only the PEFT
/// modules hold are left as they are (they are trained in every PEFT run).
pub fn frozen_view(model: &BertTaskModel, trainable: &[String]) -> BertTaskModel {
    let keep: HashSet<&str> = trainable.iter().map(String::as_str).collect();
    let frozen: HashSet<TensorId> = model
        .named_parameters()
        .into_iter()
        .filter(|(name, _)| !keep.contains(name.as_str()))
        .map(|(_, var)| var.as_tensor().id())
        .collect();
    let mut view = model.clone();
    let mut fix = |t: &mut Tensor| {
        if frozen.contains(&t.id()) {
            *t = t.detach();
        }
    };
    let bert = &mut view.bert;
    let emb = &mut bert.embeddings;
    for e in [
        &mut emb.word_embeddings,
        &mut emb.position_embeddings,
        &mut emb.token_type_embeddings,
    ] {
        embedding(e, &mut fix);
    }
    norm(&mut emb.layer_norm, &mut fix);
    for layer in &mut bert.layers {
        let att = &mut layer.attention_self;
        for l in [&mut att.query, &mut att.key, &mut att.value] {
            linear(l, &mut fix);
        }
        linear(&mut layer.attention_output.dense, &mut fix);
        norm(&mut layer.attention_output.layer_norm, &mut fix);
        linear(&mut layer.intermediate, &mut fix);
        linear(&mut layer.output.dense, &mut fix);
        norm(&mut layer.output.layer_norm, &mut fix);
    }
    if let Some(p) = &mut bert.pooler {
        linear(&mut p.dense, &mut fix);
    }
    match &mut view.head {
        Head::Sequence { classifier, .. } => linear(classifier, &mut fix),
        Head::Span { qa_outputs } => linear(qa_outputs, &mut fix),
    }
    view
}

fn linear(l: &mut Linear, fix: &mut impl FnMut(&mut Tensor)) {
    fix(&mut l.weight);
    fix(&mut l.bias);
}

fn norm(n: &mut LayerNorm, fix: &mut impl FnMut(&mut Tensor)) {
    fix(&mut n.weight);
    fix(&mut n.bias);
}

fn embedding(e: &mut Embedding, fix: &mut impl FnMut(&mut Tensor)) {
    fix(&mut e.weight);
}
