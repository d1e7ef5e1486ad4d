//! The store: a SQLite catalogue (`store.sqlite`) of embeddings with full
//! provenance, and one vector file per embedding (`vectors/<id>.safetensors`).
//!
//! Writes are atomic: the vector file is written (temp + rename) before its row
//! is inserted in a transaction, so a crash leaves at worst an unreferenced
//! file, never a row without its vector.

use super::candidates::{select, CandidateRules, Selection};
use super::vectors::{self, Component, StoredDType, VectorFile};
use super::{EmbeddingKind, EmbeddingMeta, SubjectKind};
use crate::similarity::{cosines, gram, order_by_score, reciprocal_rank_fusion};
use crate::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Adds `file_sha256` (the vector file's hash, for `fute doctor`) to a
/// catalogue made before it existed; rows stored before have none.
fn add_hash_column(conn: &Connection) -> rusqlite::Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('embeddings') WHERE name = 'file_sha256'")?
        .exists([])?;
    if !has {
        match conn.execute_batch("ALTER TABLE embeddings ADD COLUMN file_sha256 TEXT") {
            // Another process added it meanwhile.
            Err(e) if e.to_string().contains("duplicate column") => {}
            other => other?,
        }
    }
    Ok(())
}

/// How long a store waits for another process's write before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// Similarity (cosine) or fused score (RRF); with several seeds, the mean over them.
    pub score: f64,
    /// The seeds averaged over (empty when the ranking used one seed).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub seeds: Vec<u64>,
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
        // Another fute process may be writing: wait for it instead of failing.
        // The timeout must come first, because switching to WAL takes a lock.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql(&path, e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL;")
            .map_err(|e| sql(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| sql(&path, e))?;
        add_hash_column(&conn).map_err(|e| sql(&path, e))?;
        let store = Store {
            dir: dir.to_path_buf(),
            conn,
        };
        store.refresh_space_keys()?;
        Ok(store)
    }

    /// Recomputes the `space_key` column from each row's provenance where it is
    /// stale (rows stored before the training schedule left the space key), so
    /// listing by space finds every comparable embedding.
    fn refresh_space_keys(&self) -> Result<()> {
        let path = self.db_path();
        let mut stmt = self
            .conn
            .prepare("SELECT id, space_key, meta_json FROM embeddings")
            .map_err(|e| sql(&path, e))?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| sql(&path, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| sql(&path, e))?;
        for (id, key, meta_json) in rows {
            // An unreadable row is reported when it is read, not here.
            let Ok(meta) = serde_json::from_str::<EmbeddingMeta>(&meta_json) else {
                continue;
            };
            let fresh = meta.space.key();
            if fresh != key {
                self.conn
                    .execute(
                        "UPDATE embeddings SET space_key = ?1 WHERE id = ?2",
                        params![fresh, id],
                    )
                    .map_err(|e| sql(&path, e))?;
            }
        }
        Ok(())
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
        // Recorded so `fute doctor` can tell a damaged or replaced file.
        let bytes = std::fs::read(self.dir.join(&rel))
            .map_err(|e| Error::io("reading", self.dir.join(&rel), e))?;
        let file_sha256 = crate::fsutil::sha256_hex(&bytes);
        let created_at = crate::assets::rfc3339_utc(std::time::SystemTime::now());
        let dtype_s = serde_json::to_value(dtype)
            .expect("dtype")
            .as_str()
            .unwrap_or("f32")
            .to_owned();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO embeddings
                 (id, subject_kind, subject_name, subject_hash, kind, method, space_key, corpus, dim, dtype, file, meta_json, created_at, file_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
                    created_at,
                    file_sha256
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

    /// Adds or replaces provenance entries of a stored record (a model's data
    /// size given after its MTE was computed, …) and returns the record. The
    /// vector file keeps the provenance it was written with; the catalogue is
    /// what `fute show` and the rankings read.
    pub fn merge_extra(
        &self,
        id: &str,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<EmbeddingRecord> {
        let mut rec = self.get(id)?;
        rec.meta
            .extra
            .extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        let meta_json = serde_json::to_string(&rec.meta).expect("meta serialises");
        self.conn
            .execute(
                "UPDATE embeddings SET meta_json = ?1 WHERE id = ?2",
                params![meta_json, rec.id],
            )
            .map_err(|e| sql(&self.db_path(), e))?;
        self.get(&rec.id)
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
                seeds: Vec::new(),
            })
            .collect())
    }

    /// `rec`'s embedding with another seed (same subject, kind, space and
    /// schedule), if stored.
    pub fn with_seed(&self, rec: &EmbeddingRecord, seed: u64) -> Result<Option<EmbeddingRecord>> {
        let mut meta = rec.meta.clone();
        meta.seed = seed;
        let id = meta.id();
        if self.contains(&id)? {
            Ok(Some(self.get(&id)?))
        } else {
            Ok(None)
        }
    }

    /// Every stored embedding that differs from `rec` only in its seed (itself
    /// included), by seed.
    pub fn seed_siblings(&self, rec: &EmbeddingRecord) -> Result<BTreeMap<u64, EmbeddingRecord>> {
        let same_space = self.list(&ListFilter {
            space_key: Some(rec.meta.space.key()),
            ..Default::default()
        })?;
        Ok(same_space
            .into_iter()
            .filter(|r| {
                let mut m = r.meta.clone();
                m.seed = rec.meta.seed;
                m.id() == rec.id
            })
            .map(|r| (r.meta.seed, r))
            .collect())
    }

    /// Chooses the comparable candidates for `target` (see [`super::candidates`]).
    pub fn select(
        &self,
        target: &EmbeddingRecord,
        candidates: &[EmbeddingRecord],
        rules: &CandidateRules,
    ) -> Result<Selection> {
        select(target, candidates, rules, &mut |seed| {
            self.with_seed(target, seed)
        })
    }

    /// Ranks a selection: each seed's candidates against the target's embedding
    /// of that seed (centring within the seed), then each subject's scores
    /// averaged over its seeds.
    pub fn rank_selection(&self, sel: &Selection, opts: RankOptions) -> Result<Vec<Ranked>> {
        if let [only] = sel.groups.as_slice() {
            return self.rank(&only.target, &only.candidates, opts);
        }
        // (kind, subject kind, subject name) → (first id, score sum, seeds)
        type SubjectKey = (String, String, String);
        let mut per_subject: BTreeMap<SubjectKey, (Ranked, f64, Vec<u64>)> = BTreeMap::new();
        for g in &sel.groups {
            for r in self.rank(&g.target, &g.candidates, opts)? {
                let rec = g
                    .candidates
                    .iter()
                    .find(|c| c.id == r.id)
                    .expect("ranked candidates come from the group");
                let key = (
                    rec.meta.kind.as_str().to_owned(),
                    rec.meta.subject.kind.as_str().to_owned(),
                    rec.meta.subject.name.clone(),
                );
                let e = per_subject
                    .entry(key)
                    .or_insert_with(|| (r.clone(), 0.0, Vec::new()));
                e.1 += r.score;
                e.2.push(g.seed);
            }
        }
        let scored: Vec<Ranked> = per_subject
            .into_values()
            .map(|(mut r, sum, seeds)| {
                r.score = sum / seeds.len() as f64;
                r.seeds = seeds;
                r
            })
            .collect();
        let scores: Vec<f64> = scored.iter().map(|r| r.score).collect();
        Ok(order_by_score(&scores)
            .into_iter()
            .map(|i| scored[i].clone())
            .collect())
    }
}

impl Store {
    /// DataSize (Vu et al. 2020; `paper.md` §3.3): candidates ranked by the
    /// number of training examples of their subject, largest first, whatever the
    /// target. A DTE's size is its dataset split's (`dataset_examples`); a model
    /// MTE's is the size of the data the model was fine-tuned on
    /// (`train_examples`, recorded by `fute train` or given with `fute embed
    /// model --data-size`). The number of corpus inputs embedded is no data size
    /// (every MTE on one U would tie, giving a random ranking), so a candidate
    /// without a known size is an error that says how to give it. Candidates of
    /// one subject (other seeds) count once.
    pub fn rank_by_datasize(
        &self,
        target: &EmbeddingRecord,
        candidates: &[EmbeddingRecord],
    ) -> Result<Vec<Ranked>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut scored: Vec<(&EmbeddingRecord, f64)> = Vec::new();
        for c in candidates.iter().filter(|c| c.id != target.id) {
            let key = (
                c.meta.kind.as_str(),
                c.meta.subject.kind.as_str(),
                c.meta.subject.name.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            scored.push((c, data_size(c)?));
        }
        Ok(ranked(scored))
    }

    /// CurveGrad's rule: ranks candidates by each of their (scalar) components —
    /// the slopes of a loss curve — smallest first, so the source whose loss
    /// still falls fastest (the most negative slope) ranks first, and fuses the
    /// rankings by RRF (k = 60). Why steepest first: see `fute::methods::curvegrad`.
    /// The target only fixes the space.
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
                    // Negated: steeper (more negative) slopes score higher.
                    .map(|v| -v[k].1.iter().map(|x| f64::from(*x)).sum::<f64>())
                    .collect()
            })
            .collect();
        let fused = reciprocal_rank_fusion(&lists, 60.0);
        Ok(ranked(candidates.into_iter().zip(fused).collect()))
    }
}

/// The training-data size of a candidate's subject (see [`Store::rank_by_datasize`]).
fn data_size(c: &EmbeddingRecord) -> Result<f64> {
    let field = match c.meta.kind {
        EmbeddingKind::Dte => "dataset_examples",
        EmbeddingKind::Mte => "train_examples",
    };
    if let Some(n) = c.meta.extra.get(field).and_then(serde_json::Value::as_f64) {
        return Ok(n);
    }
    let how = match (c.meta.kind, c.meta.subject.kind) {
        (EmbeddingKind::Mte, SubjectKind::Model) => format!(
            "recompute it with `fute embed model {} --data-size N` (N = the examples the model was fine-tuned on; models from `fute train` record it themselves)",
            c.meta.subject.name
        ),
        (EmbeddingKind::Mte, _) => {
            "an LLM's training-data size is unknown to fute; leave it out with --kind dte or --candidates".to_owned()
        }
        (EmbeddingKind::Dte, _) => "recompute the DTE with this version of fute, which records its dataset's size".to_owned(),
    };
    Err(Error::Invalid(format!(
        "DataSize needs the training-data size of every candidate, and {} ({} {}) has none (no `{field}` in its provenance): {how}",
        c.id,
        c.meta.kind.as_str(),
        c.meta.subject.name
    )))
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
            seeds: Vec::new(),
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
