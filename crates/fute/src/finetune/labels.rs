//! Where a model's labels meet a dataset's: by name, never by position.
//!
//! A classifier's output `i` means the label `config.json` names in
//! `id2label["i"]`. A dataset imported with the same labels in another order
//! (`--labels positive,negative` instead of `negative,positive`) numbers them
//! differently, so comparing indices scores a perfect model at 1 − accuracy.
//! Every place a saved model's outputs meet a dataset's labels (prediction,
//! fine-tuning a model further) goes through [`LabelMap`].

use std::path::Path;

use anyhow::Result;
use candle_core::Tensor;
use fute_nn::TaskModel;

use super::invalid;

/// The label names of a saved classifier by output index, read from
/// `config.json`'s `id2label`; `None` when it has none or only the generic
/// `LABEL_0`, `LABEL_1`, … that `transformers` writes when it was never told.
///
/// # Errors
/// When `id2label` is malformed: keys that are not the indices `0..n`, or
/// a name given twice.
pub fn model_label_names(
    config: &serde_json::Value,
    config_path: &Path,
) -> Result<Option<Vec<String>>> {
    let map: Vec<(String, String)> = match config.get("id2label") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(v) => Ok((k.clone(), v.to_string())),
                None => Err(invalid(format!(
                    "{}: id2label[\"{k}\"] is {v}, not a label name (a string)",
                    config_path.display()
                ))),
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "{}: id2label is {other}, not an object of output index → label name",
                config_path.display()
            )))
        }
    };
    let mut names = vec![None; map.len()];
    for (k, v) in &map {
        let i = k
            .parse::<usize>()
            .ok()
            .filter(|i| *i < names.len())
            .ok_or_else(|| {
                invalid(format!(
                    "{}: id2label key `{k}` is not an output index 0..{}; keys are the \
                     indices \"0\", \"1\", … of the classifier's outputs",
                    config_path.display(),
                    map.len()
                ))
            })?;
        names[i] = Some(v.clone());
    }
    let names: Vec<String> = names.into_iter().map(Option::unwrap_or_default).collect();
    if let Some((i, n)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(invalid(format!(
            "{}: id2label names `{n}` twice (outputs {} and {i}); each output needs its own label",
            config_path.display(),
            names.iter().position(|m| m == n).unwrap_or(0)
        )));
    }
    let generic = names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("LABEL_{i}"));
    Ok((!generic).then_some(names))
}

/// How a model's outputs are read as a dataset's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelMap {
    /// `to_dataset[i]` is the dataset label index of model output `i`.
    ByName {
        /// Model output index → dataset label index (a permutation).
        to_dataset: Vec<usize>,
    },
    /// The model has no label names: output `i` is taken as dataset label `i`.
    ByPosition,
}

impl LabelMap {
    /// The dataset label index of model output `i`.
    pub fn dataset_index(&self, i: usize) -> usize {
        match self {
            LabelMap::ByName { to_dataset } => to_dataset[i],
            LabelMap::ByPosition => i,
        }
    }

    /// Whether output `i` is dataset label `i` for every `i`.
    pub fn is_identity(&self) -> bool {
        match self {
            LabelMap::ByName { to_dataset } => to_dataset.iter().enumerate().all(|(i, d)| i == *d),
            LabelMap::ByPosition => true,
        }
    }

    /// Reorders a vector of per-output values (logits, probabilities) into the
    /// dataset's label order.
    pub fn to_dataset_order<T: Copy + Default>(&self, per_output: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); per_output.len()];
        for (i, v) in per_output.iter().enumerate() {
            out[self.dataset_index(i)] = *v;
        }
        out
    }

    /// A short description for reports: `by name` or `by position (…)`.
    pub fn describe(&self) -> &'static str {
        match self {
            LabelMap::ByName { .. } => "by name (config.json id2label)",
            LabelMap::ByPosition => {
                "by position: the model's config.json names no labels (only LABEL_0, LABEL_1, …)"
            }
        }
    }
}

/// Matches a model's label names to a dataset's: exactly, else ignoring case
/// when that is unambiguous.
///
/// # Errors
/// When the two sets of names differ, naming the labels each side lacks and
/// how to fix it. `model` and `dataset` name the two sides in the message.
pub fn match_labels(
    model_labels: &[String],
    dataset_labels: &[String],
    model: &str,
    dataset: &str,
) -> Result<LabelMap> {
    let find = |name: &str| {
        dataset_labels.iter().position(|d| d == name).or_else(|| {
            let mut hits = dataset_labels
                .iter()
                .enumerate()
                .filter(|(_, d)| d.eq_ignore_ascii_case(name));
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
    };
    let to_dataset: Vec<Option<usize>> = model_labels.iter().map(|m| find(m)).collect();
    let mut used = vec![false; dataset_labels.len()];
    for d in to_dataset.iter().flatten() {
        used[*d] = true;
    }
    let model_only: Vec<&str> = model_labels
        .iter()
        .zip(&to_dataset)
        .filter(|(_, d)| d.is_none())
        .map(|(m, _)| m.as_str())
        .collect();
    let dataset_only: Vec<&str> = dataset_labels
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(d, _)| d.as_str())
        .collect();
    if model_only.is_empty()
        && dataset_only.is_empty()
        && model_labels.len() == dataset_labels.len()
    {
        return Ok(LabelMap::ByName {
            to_dataset: to_dataset.into_iter().flatten().collect(),
        });
    }
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    Err(invalid(format!(
        "the labels of {model} ({}) are not those of {dataset} ({}): only the model has {}; \
         only the dataset has {}. Labels are matched by name: import the dataset with the \
         model's label names (`fute data import … --labels {}`), or use a model trained on these labels",
        model_labels.join(", "),
        dataset_labels.join(", "),
        list(&model_only),
        list(&dataset_only),
        model_labels.join(",")
    )))
}

/// How a fine-tuning run starts its classification head from a base model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadInit {
    /// Not a classification task: the base's head where it holds one of this
    /// shape, fresh (seeded) otherwise.
    AsBase,
    /// The base has no classifier of this shape, or a fresh one was asked for:
    /// a fresh, seeded head.
    Fresh,
    /// The base's classifier, its rows reordered to the dataset's labels by name.
    FromBaseByName(LabelMap),
    /// The base's classifier by position: its config names no labels.
    FromBaseByPosition,
    /// The base's classifier was trained for other labels: replaced by a fresh head.
    ReplacedOtherLabels(String),
}

impl HeadInit {
    /// Whether the head must be built fresh whatever the checkpoint holds.
    pub fn is_fresh(&self) -> bool {
        matches!(self, HeadInit::Fresh | HeadInit::ReplacedOtherLabels(_))
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            HeadInit::AsBase => "head from the base model where it has one of this shape".into(),
            HeadInit::Fresh => "fresh classification head".into(),
            HeadInit::FromBaseByName(_) => {
                "classification head from the base model, labels matched by name".into()
            }
            HeadInit::FromBaseByPosition => {
                "classification head from the base model by position (its config.json names no labels)"
                    .into()
            }
            HeadInit::ReplacedOtherLabels(why) => {
                format!("fresh classification head: the base model's head is for other labels ({why})")
            }
        }
    }
}

/// Reorders the classifier `model` took from its base so that output `d`
/// means dataset label `d`: the rows of `output` (the sequence head's output
/// layer, e.g. `classifier`) and its bias, if it has one (GPT-2's `score`
/// has none), are permuted by `map`.
///
/// # Errors
/// A model without `output.weight` (a bug: the registry names it); tensor
/// errors (a bug).
pub fn align_head(model: &dyn TaskModel, output: &str, map: &LabelMap) -> Result<()> {
    let LabelMap::ByName { to_dataset } = map else {
        return Ok(());
    };
    let w = model
        .parameter(&format!("{output}.weight"))
        .ok_or_else(|| anyhow::anyhow!("internal error: the model has no `{output}.weight`"))?;
    // Row d of the new head is the base's row for the output that means label d.
    let mut from = vec![0u32; to_dataset.len()];
    for (i, d) in to_dataset.iter().enumerate() {
        from[*d] = i as u32;
    }
    let idx = Tensor::new(from.as_slice(), w.device())?;
    w.set(&w.as_tensor().index_select(&idx, 0)?)?;
    if let Some(b) = model.parameter(&format!("{output}.bias")) {
        b.set(&b.as_tensor().index_select(&idx, 0)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head without bias (GPT-2's `score`) is reordered too, not skipped.
    #[test]
    fn align_head_permutes_a_head_without_bias() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fute-nn/tests/fixtures/conformance/gpt2/model");
        let spec = fute_nn::HeadSpec::Classification { num_labels: 3 };
        let m = fute_nn::models::load(&dir, spec, &fute_nn::BuildOptions::default()).unwrap();
        assert!(m.parameter("score.bias").is_none());
        let rows: Vec<f32> = (0..3 * 16).map(|i| (i / 16) as f32).collect();
        let w = Tensor::from_vec(rows, (3, 16), &candle_core::Device::Cpu).unwrap();
        m.set_parameter("score.weight", &w).unwrap();
        // Base output 0 means dataset label 2, 1 → 0, 2 → 1.
        let map = LabelMap::ByName {
            to_dataset: vec![2, 0, 1],
        };
        align_head(m.as_ref(), "score", &map).unwrap();
        let got = m
            .parameter("score.weight")
            .unwrap()
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap();
        let firsts: Vec<f32> = got.iter().map(|r| r[0]).collect();
        assert_eq!(firsts, [1.0, 2.0, 0.0]);
    }
}
