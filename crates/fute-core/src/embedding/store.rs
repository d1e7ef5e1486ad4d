//! The store: a SQLite catalogue (`store.sqlite`) of embeddings with full
//! provenance, and one vector file per embedding (`vectors/<id>.safetensors`).
//!
//! Writes are atomic: the vector file is written (temp + rename) before its row
//! is inserted in a transaction, so a crash leaves at worst an unreferenced
//! file, never a row without its vector.

use super::vectors::{self, Component, StoredDType, VectorFile};
use super::{EmbeddingKind, EmbeddingMeta, SubjectKind};
use crate::similarity::{cosines, gram, order_by_score, reciprocal_rank_fusion};
use crate::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS embeddings (
    id            TEXT PRIMARY KEY,
    subject_kind  TEXT NOT NULL,
    subject_name  TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    method        TEXT NOT NULL,
    space_key     TEXT NOT NULL,
    corpus        TEXT,
    dim           INTEGER NOT NULL,
    dtype         TEXT NOT NULL,
    file          TEXT NOT NULL,
    meta_json     TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_by_space ON embeddings(space_key);
";

/// One stored embedding (without its values).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRecord {
    /// Deterministic id (see [`EmbeddingMeta::id`]).
    pub id: String,
    /// Provenance.
    pub meta: EmbeddingMeta,
    /// Number of values.
    pub dim: usize,
    /// Storage type.
    pub dtype: StoredDType,
    /// The vector file.
    pub file: PathBuf,
    /// When it was stored (UTC).
    pub created_at: String,
}

/// Which embeddings to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only DTEs or only MTEs.
    pub kind: Option<EmbeddingKind>,
    /// Only this method.
    pub method: Option<String>,
    /// Only this subject kind.
    pub subject_kind: Option<SubjectKind>,
    /// Only this space key (see [`super::Space::key`]).
    pub space_key: Option<String>,
}

/// A candidate's place in a ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    /// Embedding id.
    pub id: String,
    /// Subject name.
    pub name: String,
    /// DTE or MTE.
    pub kind: EmbeddingKind,
    /// Similarity (cosine) or fused score (RRF).
    pub score: f64,
}

/// How to score candidates against a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RankOptions {
    /// Subtract the candidates' mean from every vector first.
    pub centre: bool,
    /// Rank per component and fuse the rankings (RRF, k = 60) instead of one cosine.
    pub fuse_components: bool,
}

/// The embedding store of a workspace.
pub struct Store {
    dir: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` (usually `<workspace>/.fute`).
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir.join("vectors"))
            .map_err(|e| Error::io("creating", dir.join("vectors"), e))?;
        let path = dir.join("store.sqlite");
        let conn = Connection::open(&path).map_err(|e| sql(&path, e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
            .map_err(|e| sql(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sql(&path, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            conn,
        })
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join("store.sqlite")
    }

    /// Stores a vector given as named components; returns its record. Storing the same
    /// id again replaces it (same subject, kind, space and seed ⇒ same id).
    pub fn put(
        &self,
        meta: &EmbeddingMeta,
        components: &[(String, Vec<f32>)],
        dtype: StoredDType,
    ) -> Result<EmbeddingRecord> {
        let dim: usize = components.iter().map(|(_, v)| v.len()).sum();
        if dim == 0 {
            return Err(Error::Invalid("refusing to store an empty vector".into()));
        }
        if let Some((name, _)) = components
            .iter()
            .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
        {
            return Err(Error::Invalid(format!(
                "component `{name}` holds NaN or infinite values; not stored"
            )));
        }
        let id = meta.id();
        let rel = PathBuf::from("vectors").join(format!("{id}.safetensors"));
        let meta_json = serde_json::to_string(meta).expect("meta serialises");
        let header = BTreeMap::from([
            ("fute.meta".to_owned(), meta_json.clone()),
            ("fute.id".to_owned(), id.clone()),
        ]);
        vectors::write(&self.dir.join(&rel), components, dtype, &header)?;
        let created_at = crate::assets::rfc3339_utc(std::time::SystemTime::now());
        let dtype_s = serde_json::to_value(dtype)
            .expect("dtype")
            .as_str()
            .unwrap_or("f32")
            .to_owned();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO embeddings
                 (id, subject_kind, subject_name, subject_hash, kind, method, space_key, corpus, dim, dtype, file, meta_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    id,
                    meta.subject.kind.as_str(),
                    meta.subject.name,
                    meta.subject.hash,
                    meta.kind.as_str(),
                    meta.space.method,
                    meta.space.key(),
                    meta.space.corpus,
                    dim as i64,
                    dtype_s,
                    rel.to_string_lossy(),
                    meta_json,
                    created_at
                ],
            )
            .map_err(|e| sql(&self.db_path(), e))?;
        self.get(&id)
    }

    /// The record whose id is `id` or starts with `id` (a unique prefix).
    pub fn get(&self, id: &str) -> Result<EmbeddingRecord> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Invalid(format!(
                "`{id}` is not an embedding id (hex); see `fute ls`"
            )));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, dim, dtype, file, meta_json, created_at FROM embeddings WHERE id LIKE ?1 || '%' LIMIT 2")
            .map_err(|e| sql(&self.db_path(), e))?;
        let rows: Vec<_> = stmt
            .query_map([id], row_tuple)
            .map_err(|e| sql(&self.db_path(), e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| sql(&self.db_path(), e))?;
        match rows.len() {
            0 => Err(Error::Invalid(format!(
                "no embedding `{id}` in {}; see `fute ls`",
                self.db_path().display()
            ))),
            1 => self.record(rows.into_iter().next().expect("one row")),
            _ => Err(Error::Invalid(format!(
                "id prefix `{id}` is ambiguous; give more characters"
            ))),
        }
    }

    /// Whether an embedding with exactly this id is stored (and its vector file exists).
    pub fn contains(&self, id: &str) -> Result<bool> {
        let file: Option<String> = self
            .conn
            .query_row("SELECT file FROM embeddings WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| sql(&self.db_path(), e))?;
        Ok(file.is_some_and(|f| self.dir.join(f).is_file()))
    }

    /// Every record matching `filter`, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<EmbeddingRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, dim, dtype, file, meta_json, created_at FROM embeddings
                 WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR method = ?2)
                   AND (?3 IS NULL OR subject_kind = ?3) AND (?4 IS NULL OR space_key = ?4)
                 ORDER BY created_at, id",
            )
            .map_err(|e| sql(&self.db_path(), e))?;
        let rows: Vec<_> = stmt
            .query_map(
                params![
                    filter.kind.map(EmbeddingKind::as_str),
                    filter.method,
                    filter.subject_kind.map(SubjectKind::as_str),
                    filter.space_key
                ],
                row_tuple,
            )
            .map_err(|e| sql(&self.db_path(), e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| sql(&self.db_path(), e))?;
        rows.into_iter().map(|r| self.record(r)).collect()
    }

    fn record(
        &self,
        (id, dim, dtype, file, meta_json, created_at): RowTuple,
    ) -> Result<EmbeddingRecord> {
        let meta: EmbeddingMeta = serde_json::from_str(&meta_json).map_err(|e| {
            Error::data(
                self.db_path(),
                None,
                Some("meta_json"),
                format!("embedding {id}: unreadable provenance: {e}"),
            )
        })?;
        let dtype = serde_json::from_value(serde_json::Value::String(dtype)).unwrap_or_default();
        Ok(EmbeddingRecord {
            id,
            meta,
            dim: dim as usize,
            dtype,
            file: self.dir.join(file),
            created_at,
        })
    }

    /// Opens a record's vector file.
    pub fn vector_file(&self, rec: &EmbeddingRecord) -> Result<VectorFile> {
        VectorFile::open(&rec.file)
    }

    /// Reads a record's whole vector as named components.
    pub fn read(&self, rec: &EmbeddingRecord) -> Result<Vec<(String, Vec<f32>)>> {
        self.vector_file(rec)?.read_all()
    }

    /// Component names and lengths of a record.
    pub fn components(&self, rec: &EmbeddingRecord) -> Result<Vec<Component>> {
        Ok(self.vector_file(rec)?.components())
    }

    fn check_same_space(a: &EmbeddingRecord, b: &EmbeddingRecord) -> Result<()> {
        a.meta.space.check_compatible(&b.meta.space).map_err(|why| {
            Error::Invalid(format!(
                "embeddings {} ({}) and {} ({}) live in different spaces and cannot be compared: {why}",
                a.id, a.meta.subject.name, b.id, b.meta.subject.name
            ))
        })
    }

    /// Cosine similarity of two embeddings (streamed).
    pub fn similarity(&self, a: &EmbeddingRecord, b: &EmbeddingRecord) -> Result<f64> {
        Self::check_same_space(a, b)?;
        let g = gram(&[self.vector_file(a)?, self.vector_file(b)?])?.total();
        Ok(cosines(&g, 0, &[1], false)[0])
    }

    /// Ranks `candidates` by similarity to `target` (candidates in other spaces are an error).
    pub fn rank(
        &self,
        target: &EmbeddingRecord,
        candidates: &[EmbeddingRecord],
        opts: RankOptions,
    ) -> Result<Vec<Ranked>> {
        let candidates: Vec<&EmbeddingRecord> =
            candidates.iter().filter(|c| c.id != target.id).collect();
        if candidates.is_empty() {
            return Err(Error::Invalid(format!(
                "no candidates to rank against {}",
                target.id
            )));
        }
        for c in &candidates {
            Self::check_same_space(target, c)?;
        }
        let mut files = vec![self.vector_file(target)?];
        for c in &candidates {
            files.push(self.vector_file(c)?);
        }
        let g = gram(&files)?;
        let idx: Vec<usize> = (1..files.len()).collect();
        let scores = if opts.fuse_components {
            let lists: Vec<Vec<f64>> = g
                .per_component
                .iter()
                .map(|pc| cosines(pc, 0, &idx, opts.centre))
                .collect();
            reciprocal_rank_fusion(&lists, 60.0)
        } else {
            cosines(&g.total(), 0, &idx, opts.centre)
        };
        Ok(order_by_score(&scores)
            .into_iter()
            .map(|i| Ranked {
                id: candidates[i].id.clone(),
                name: candidates[i].meta.subject.name.clone(),
                kind: candidates[i].meta.kind,
                score: scores[i],
            })
            .collect())
    }
}

impl Store {
    /// DataSize (Vu et al.): candidates ranked by the size of their subject's data,
    /// largest first, whatever the target: the dataset's split size when recorded
    /// (`dataset_examples`), else the number of examples embedded.
    pub fn rank_by_datasize(
        &self,
        target: &EmbeddingRecord,
        candidates: &[EmbeddingRecord],
    ) -> Result<Vec<Ranked>> {
        let scored: Vec<(&EmbeddingRecord, f64)> = candidates
            .iter()
            .filter(|c| c.id != target.id)
            .map(|c| {
                let extra = &c.meta.extra;
                let n = extra
                    .get("dataset_examples")
                    .or_else(|| extra.get("probe_examples"))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0);
                (c, n)
            })
            .collect();
        Ok(ranked(scored))
    }

    /// Ranks candidates by each of their (scalar) components, descending, and fuses
    /// the rankings by RRF (k = 60): CurveGrad's rule. The target only fixes the space.
    pub fn rank_by_component_values(
        &self,
        target: &EmbeddingRecord,
        candidates: &[EmbeddingRecord],
    ) -> Result<Vec<Ranked>> {
        let candidates: Vec<&EmbeddingRecord> =
            candidates.iter().filter(|c| c.id != target.id).collect();
        for c in &candidates {
            Self::check_same_space(target, c)?;
        }
        let values: Vec<Vec<(String, Vec<f32>)>> = candidates
            .iter()
            .map(|c| self.read(c))
            .collect::<Result<_>>()?;
        let n_comp = values.first().map_or(0, Vec::len);
        let lists: Vec<Vec<f64>> = (0..n_comp)
            .map(|k| {
                values
                    .iter()
                    .map(|v| v[k].1.iter().map(|x| f64::from(*x)).sum::<f64>())
                    .collect()
            })
            .collect();
        let fused = reciprocal_rank_fusion(&lists, 60.0);
        Ok(ranked(candidates.into_iter().zip(fused).collect()))
    }
}

fn ranked(scored: Vec<(&EmbeddingRecord, f64)>) -> Vec<Ranked> {
    let scores: Vec<f64> = scored.iter().map(|(_, s)| *s).collect();
    order_by_score(&scores)
        .into_iter()
        .map(|i| Ranked {
            id: scored[i].0.id.clone(),
            name: scored[i].0.meta.subject.name.clone(),
            kind: scored[i].0.meta.kind,
            score: scored[i].1,
        })
        .collect()
}

type RowTuple = (String, i64, String, String, String, String);

fn row_tuple(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowTuple> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn sql(path: &Path, e: rusqlite::Error) -> Error {
    Error::Invalid(format!("store {}: {e}", path.display()))
}
