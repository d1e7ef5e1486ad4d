//! Vector files: one safetensors file per embedding, one 1-D tensor per component
//! (a parameter or activation name), provenance in the header's `__metadata__`.
//!
//! Readers stream: [`VectorFile::chunks`] yields fixed-size pieces, so comparing
//! 10⁸-float vectors never needs them in memory.

use crate::fsutil::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How vector values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoredDType {
    /// 32-bit floats (exact).
    #[default]
    F32,
    /// 16-bit floats: half the space, ~3 significant digits.
    F16,
}

impl StoredDType {
    fn tag(self) -> &'static str {
        match self {
            StoredDType::F32 => "F32",
            StoredDType::F16 => "F16",
        }
    }

    fn width(self) -> usize {
        match self {
            StoredDType::F32 => 4,
            StoredDType::F16 => 2,
        }
    }
}

/// A named part of an embedding and its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Name (e.g. `encoder.layer.0.attention.self.query.weight`, `cls_output`).
    pub name: String,
    /// Number of values.
    pub len: usize,
}

/// Writes components to a safetensors file atomically. Component order is kept.
pub fn write(
    path: &Path,
    components: &[(String, Vec<f32>)],
    dtype: StoredDType,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, values) in components {
        if name == "__metadata__" || name.is_empty() {
            return Err(Error::Invalid(format!("invalid component name `{name}`")));
        }
        if header.contains_key(name) {
            return Err(Error::Invalid(format!("component `{name}` appears twice")));
        }
        let end = offset + values.len() * dtype.width();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.tag(), "shape": [values.len()], "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(metadata).expect("strings"),
    );
    let mut head = serde_json::to_vec(&Value::Object(header)).expect("JSON");
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + head.len() + offset);
    bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&head);
    for (_, values) in components {
        match dtype {
            StoredDType::F32 => values
                .iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
            StoredDType::F16 => values
                .iter()
                .for_each(|v| bytes.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        }
    }
    write_atomic(path, &bytes)
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    dtype: StoredDType,
    start: u64,
    len: usize,
}

/// An opened vector file (header parsed, data not read).
#[derive(Debug, Clone)]
pub struct VectorFile {
    path: PathBuf,
    data_start: u64,
    entries: Vec<Entry>,
    metadata: BTreeMap<String, String>,
}

impl VectorFile {
    /// Opens and validates the header.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |m: String| Error::data(path, None, None, format!("not a fute vector file: {m}"));
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let file_len = f
            .metadata()
            .map_err(|e| Error::io("reading", path, e))?
            .len();
        let mut n = [0u8; 8];
        f.read_exact(&mut n)
            .map_err(|e| bad(format!("no header ({e})")))?;
        let n = u64::from_le_bytes(n);
        if n > 100_000_000 || 8 + n > file_len {
            return Err(bad(format!("header length {n} does not fit the file")));
        }
        let mut head = vec![0u8; n as usize];
        f.read_exact(&mut head).map_err(|e| bad(e.to_string()))?;
        let header: serde_json::Map<String, Value> =
            serde_json::from_slice(&head).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + n;
        let mut metadata = BTreeMap::new();
        let mut entries = Vec::new();
        for (name, v) in header {
            if name == "__metadata__" {
                metadata = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
                continue;
            }
            let dtype = match v["dtype"].as_str() {
                Some("F32") => StoredDType::F32,
                Some("F16") => StoredDType::F16,
                other => {
                    return Err(bad(format!(
                        "component `{name}` has unsupported dtype {other:?}"
                    )))
                }
            };
            let offs = v["data_offsets"]
                .as_array()
                .ok_or_else(|| bad(format!("`{name}` has no data_offsets")))?;
            let (a, b) = (offs[0].as_u64().unwrap_or(0), offs[1].as_u64().unwrap_or(0));
            if b < a || data_start + b > file_len || (b - a) % dtype.width() as u64 != 0 {
                return Err(bad(format!(
                    "component `{name}` lies outside the file (truncated?)"
                )));
            }
            entries.push(Entry {
                name,
                dtype,
                start: a,
                len: ((b - a) / dtype.width() as u64) as usize,
            });
        }
        // Component order = storage order.
        entries.sort_by_key(|e| e.start);
        Ok(VectorFile {
            path: path.to_path_buf(),
            data_start,
            entries,
            metadata,
        })
    }

    /// Components in storage order.
    pub fn components(&self) -> Vec<Component> {
        self.entries
            .iter()
            .map(|e| Component {
                name: e.name.clone(),
                len: e.len,
            })
            .collect()
    }

    /// Total number of values.
    pub fn dim(&self) -> usize {
        self.entries.iter().map(|e| e.len).sum()
    }

    /// The header's metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Reads one component completely.
    pub fn read_component(&self, name: &str) -> Result<Vec<f32>> {
        let i = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| {
                Error::Invalid(format!("no component `{name}` in {}", self.path.display()))
            })?;
        let mut out = Vec::with_capacity(self.entries[i].len);
        self.stream(Some(i), usize::MAX, |_, chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads every component completely (for export and small vectors).
    pub fn read_all(&self) -> Result<Vec<(String, Vec<f32>)>> {
        self.entries
            .iter()
            .map(|e| Ok((e.name.clone(), self.read_component(&e.name)?)))
            .collect()
    }

    /// Calls `f(component_index, values)` on consecutive pieces of at most `chunk` values,
    /// component by component, in storage order.
    pub fn chunks(
        &self,
        chunk: usize,
        mut f: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut r = self.reader(chunk)?;
        while let Some((i, vals)) = r.next_chunk()? {
            f(i, vals)?;
        }
        Ok(())
    }

    fn stream(
        &self,
        only: Option<usize>,
        chunk: usize,
        mut f: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut r = self.reader(chunk)?;
        r.only = only;
        while let Some((i, vals)) = r.next_chunk()? {
            f(i, vals)?;
        }
        Ok(())
    }

    /// A pull-style reader of consecutive chunks; readers of files with the same
    /// layout and chunk size yield aligned chunks (used to stream several vectors in lockstep).
    pub fn reader(&self, chunk: usize) -> Result<ChunkReader> {
        let file =
            std::fs::File::open(&self.path).map_err(|e| Error::io("opening", &self.path, e))?;
        Ok(ChunkReader {
            file: std::io::BufReader::with_capacity(1 << 20, file),
            path: self.path.clone(),
            data_start: self.data_start,
            entries: self.entries.clone(),
            chunk: chunk.clamp(1, 1 << 22),
            entry: 0,
            left: None,
            only: None,
            raw: Vec::new(),
            vals: Vec::new(),
        })
    }
}

/// See [`VectorFile::reader`].
pub struct ChunkReader {
    file: std::io::BufReader<std::fs::File>,
    path: PathBuf,
    data_start: u64,
    entries: Vec<Entry>,
    chunk: usize,
    entry: usize,
    left: Option<usize>,
    only: Option<usize>,
    raw: Vec<u8>,
    vals: Vec<f32>,
}

impl ChunkReader {
    /// The next chunk as (component index, values), or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<(usize, &[f32])>> {
        loop {
            if self.entry >= self.entries.len() {
                return Ok(None);
            }
            if self.only.is_some_and(|o| o != self.entry) {
                self.entry += 1;
                continue;
            }
            let e = &self.entries[self.entry];
            let left = match self.left {
                Some(l) => l,
                None => {
                    self.file
                        .seek(SeekFrom::Start(self.data_start + e.start))
                        .map_err(|err| Error::io("seeking in", &self.path, err))?;
                    e.len
                }
            };
            if left == 0 {
                self.entry += 1;
                self.left = None;
                continue;
            }
            let n = left.min(self.chunk);
            self.raw.resize(n * e.dtype.width(), 0);
            self.file
                .read_exact(&mut self.raw)
                .map_err(|err| Error::io("reading", &self.path, err))?;
            self.vals.clear();
            match e.dtype {
                StoredDType::F32 => self.vals.extend(
                    self.raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                ),
                StoredDType::F16 => self.vals.extend(
                    self.raw
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
                ),
            }
            self.left = Some(left - n);
            return Ok(Some((self.entry, &self.vals)));
        }
    }
}
