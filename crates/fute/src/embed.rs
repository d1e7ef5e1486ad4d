//! One embedding request, end to end: cache lookup, method run, store.

use crate::methods::Method;
use crate::probe::ProbeSet;
use crate::surrogate::Surrogate;
use fute_core::dataset::{Dataset, Split};
use fute_core::embedding::{
    EmbeddingKind, EmbeddingMeta, EmbeddingRecord, Space, Store, StoredDType, Subject, SubjectKind,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// What to embed and how.
pub struct EmbedRequest<'a> {
    /// The subject (its hash must identify exactly the data or model embedded).
    pub subject: Subject,
    /// DTE or MTE.
    pub kind: EmbeddingKind,
    /// The (input, target) pairs.
    pub probe: &'a ProbeSet,
    /// The method.
    pub method: &'a Method,
    /// Seed of every random choice.
    pub seed: u64,
    /// The corpus U's hash (MTEs).
    pub corpus: Option<String>,
    /// Storage precision.
    pub dtype: StoredDType,
    /// Extra provenance to keep.
    pub extra: BTreeMap<String, Value>,
}

/// Result of [`embed`].
pub struct Embedded {
    /// The stored record.
    pub record: EmbeddingRecord,
    /// Whether it was already in the store (nothing computed).
    pub cached: bool,
}

/// The store subject and provenance of a DTE whose `probe` was drawn from
/// `split` of `ds` (the subject hash is the probe's: exactly the pairs embedded).
pub fn dte_subject(
    ds: &Dataset,
    split: Split,
    probe: &ProbeSet,
) -> (Subject, BTreeMap<String, Value>) {
    let subject = Subject {
        kind: SubjectKind::Dataset,
        name: ds.card.name.clone(),
        hash: probe.hash(),
    };
    let provenance = BTreeMap::from([
        ("dataset_hash".into(), Value::from(ds.content_hash())),
        ("split".into(), Value::from(split.as_str())),
        (
            "dataset_examples".into(),
            Value::from(ds.split(split).len()),
        ),
        // The task's schema and labels travel with the DTE, so a map can colour it by
        // task class without the dataset at hand.
        (
            "schema".into(),
            serde_json::to_value(&ds.card.schema).unwrap_or(Value::Null),
        ),
    ]);
    (subject, provenance)
}

/// Versions recorded with every embedding.
pub fn versions() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("fute".into(), env!("CARGO_PKG_VERSION").into()),
        ("candle".into(), "0.11.1".into()),
    ])
}

/// Computes (or finds in the store) one embedding.
pub fn embed(
    store: &Store,
    surrogate: &Surrogate,
    req: EmbedRequest<'_>,
    report: &mut dyn FnMut(String),
) -> anyhow::Result<Embedded> {
    if req.kind == EmbeddingKind::Mte && !req.method.uses_targets() {
        anyhow::bail!(fute_core::Error::Invalid(format!(
            "method `{}` ignores targets, so every model's MTE on the same corpus would be identical; use it for DTEs, or pick a method that trains the surrogate (fim, prefix, …)",
            req.method.name()
        )));
    }
    if req.probe.is_empty() {
        anyhow::bail!(fute_core::Error::Invalid(
            "nothing to embed: the probe set is empty".into()
        ));
    }
    let mut extra = req.extra;
    extra.insert("probe_examples".into(), Value::from(req.probe.len()));
    extra.insert("probe_hash".into(), Value::from(req.probe.hash()));
    let mut meta = EmbeddingMeta {
        subject: req.subject,
        kind: req.kind,
        space: Space {
            surrogate: surrogate.hash.clone(),
            method: req.method.name().into(),
            params: req.method.params(),
            corpus: req.corpus,
        },
        seed: req.seed,
        wall_seconds: 0.0,
        versions: versions(),
        extra,
    };
    let id = meta.id();
    if store.contains(&id)? {
        // Same subject, space and seed: the same vector. Provenance the request
        // knows better (a data size given now) is kept with it.
        let stored = store.get(&id)?;
        let newer: BTreeMap<String, Value> = meta
            .extra
            .iter()
            .filter(|(k, v)| stored.meta.extra.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let record = if newer.is_empty() {
            stored
        } else {
            store.merge_extra(&id, &newer)?
        };
        return Ok(Embedded {
            record,
            cached: true,
        });
    }
    let t = std::time::Instant::now();
    let out = req.method.run(surrogate, req.probe, req.seed, report)?;
    meta.wall_seconds = t.elapsed().as_secs_f64();
    if let Some(fit) = &out.fit {
        // Provenance, not identity: the id was fixed above from subject, space and seed.
        meta.extra
            .insert("surrogate_fit".into(), serde_json::to_value(fit)?);
        if let Some(w) = fit.warning() {
            meta.extra.insert("warning".into(), Value::from(w));
        }
    }
    let record = store.put(&meta, &out.components, req.dtype)?;
    Ok(Embedded {
        record,
        cached: false,
    })
}
