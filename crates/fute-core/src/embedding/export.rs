//! Exporting a stored vector for other tools.

use super::store::{EmbeddingRecord, Store};
use super::vectors::{self, StoredDType};
use crate::fsutil::write_atomic;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// NumPy `.npy`: one 1-D float32 array, components concatenated in storage order.
    Npy,
    /// safetensors: one float32 tensor per component, provenance in the metadata.
    Safetensors,
    /// JSON: `{"id", "meta", "components": {name: [values]}}`.
    Json,
}

/// Writes `rec` to `out` in `format` (atomically).
pub fn export(
    store: &Store,
    rec: &EmbeddingRecord,
    format: ExportFormat,
    out: &Path,
) -> Result<()> {
    let comps = store.read(rec)?;
    match format {
        ExportFormat::Npy => {
            let n: usize = comps.iter().map(|(_, v)| v.len()).sum();
            let mut header =
                format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n},), }}");
            // Magic + version + u16 length + header padded so the data starts at a multiple of 64.
            let unpadded = 10 + header.len() + 1;
            header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
            header.push('\n');
            let mut bytes = Vec::with_capacity(10 + header.len() + n * 4);
            bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            for (_, v) in &comps {
                v.iter()
                    .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
            }
            write_atomic(out, &bytes)
        }
        ExportFormat::Safetensors => {
            let meta = BTreeMap::from([
                ("fute.id".to_owned(), rec.id.clone()),
                (
                    "fute.meta".to_owned(),
                    serde_json::to_string(&rec.meta).expect("meta serialises"),
                ),
            ]);
            vectors::write(out, &comps, StoredDType::F32, &meta)
        }
        ExportFormat::Json => {
            let components: serde_json::Map<String, serde_json::Value> = comps
                .into_iter()
                .map(|(k, v)| (k, serde_json::json!(v)))
                .collect();
            let v = serde_json::json!({"id": rec.id, "meta": rec.meta, "components": components});
            write_atomic(
                out,
                serde_json::to_string(&v)
                    .map_err(|e| Error::Invalid(e.to_string()))?
                    .as_bytes(),
            )
        }
    }
}
