//! `fute doctor`: checks a workspace's state and says how to repair what it
//! finds. A crash (kill -9, power loss) can leave at worst: a vector file
//! without its catalogue row, a temporary file or staging folder, a cut-off
//! last line in an LLM call cache. Outside damage can leave more: a row whose
//! vector file is missing, changed or unreadable; a dataset or corpus that no
//! longer loads; a corrupt SQLite file.
//!
//! With `repair`, the safe fixes are made: leftovers and orphan files are
//! removed, rows whose vector is missing or damaged are dropped (the vector
//! must be computed again; the finding names the subject), and unreadable
//! cache lines are dropped (those calls are made again). Nothing that holds
//! user data the workspace cannot rebuild (datasets, corpora) is touched.

use crate::fsutil::{sha256_hex, write_atomic};
use crate::workspace::{DatasetOrigin, Workspace};
use crate::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Temporary files and folders younger than this may belong to a running
/// fute process: reported, never removed.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(10 * 60);

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file or folder concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
    /// How to repair it.
    pub fix: String,
    /// Whether `--repair` may fix it (it loses nothing that cannot be recomputed).
    pub safe: bool,
    /// Whether it was repaired in this run.
    pub repaired: bool,
}

/// What was checked and what was found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Catalogue rows checked.
    pub rows: usize,
    /// Vector files checked.
    pub vector_files: usize,
    /// LLM call-cache files checked.
    pub caches: usize,
    /// Workspace datasets and corpora loaded.
    pub datasets_and_corpora: usize,
    /// Problems, in the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Problems not repaired.
    pub fn open_problems(&self) -> usize {
        self.findings.iter().filter(|f| !f.repaired).count()
    }

    fn found(&mut self, path: &Path, problem: String, fix: String, safe: bool, repaired: bool) {
        self.findings.push(Finding {
            path: path.to_path_buf(),
            problem,
            fix,
            safe,
            repaired,
        });
    }
}

/// Checks the workspace `ws`; with `repair`, makes the safe fixes.
///
/// # Errors
/// [`Error::Io`] when a folder cannot be listed or a repair fails.
pub fn examine(ws: &Workspace, repair: bool) -> Result<Report> {
    let state = ws.state_dir();
    let mut report = Report::default();
    if !state.is_dir() {
        return Ok(report);
    }
    leftovers(&state, repair, &mut report)?;
    store(&state, repair, &mut report)?;
    caches(&state.join("cache").join("llm"), repair, &mut report)?;
    data(ws, &mut report)?;
    Ok(report)
}

/// Time since `path` was last modified (0 when unknown: treated as recent).
fn age(path: &Path) -> Duration {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// Temporary files of atomic writes (`.tmp*`) and staging folders
/// (`.staging-*`, `.old-*`) left by a process that died mid-write.
fn leftovers(dir: &Path, repair: bool, report: &mut Report) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = path.is_dir() && !path.is_symlink();
        let leftover =
            name.starts_with(".tmp") || name.starts_with(".staging-") || name.starts_with(".old-");
        if leftover {
            let old = age(&path) >= LEFTOVER_AGE;
            let mut repaired = false;
            if repair && old {
                if is_dir {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
                .map_err(|e| Error::io("removing", &path, e))?;
                repaired = true;
            }
            let fix = if old {
                "remove it (`fute doctor --repair`)".to_string()
            } else {
                format!(
                    "it is younger than {} min and may belong to a running fute: run doctor again later",
                    LEFTOVER_AGE.as_secs() / 60
                )
            };
            report.found(
                &path,
                "temporary file or folder left by an interrupted write".into(),
                fix,
                old,
                repaired,
            );
        } else if is_dir {
            leftovers(&path, repair, report)?;
        }
    }
    Ok(())
}

/// The catalogue against the vector files.
fn store(state: &Path, repair: bool, report: &mut Report) -> Result<()> {
    let db = state.join("store.sqlite");
    let vectors = state.join("vectors");
    if !db.is_file() {
        return Ok(());
    }
    let sql = |e: rusqlite::Error| Error::data(&db, None, None, e.to_string());
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(60)).map_err(sql)?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| e.to_string());
    if integrity != "ok" {
        report.found(
            &db,
            format!("the SQLite catalogue is damaged: {integrity}"),
            "move store.sqlite aside and embed again (the vector files stay readable with `fute export`)"
                .into(),
            false,
            false,
        );
        return Ok(());
    }
    let has_hash = conn
        .prepare("SELECT 1 FROM pragma_table_info('embeddings') WHERE name = 'file_sha256'")
        .and_then(|mut s| s.exists([]))
        .map_err(sql)?;
    let query = if has_hash {
        "SELECT id, file, subject_name, file_sha256 FROM embeddings ORDER BY id"
    } else {
        "SELECT id, file, subject_name, NULL FROM embeddings ORDER BY id"
    };
    let rows: Vec<(String, String, String, Option<String>)> = conn
        .prepare(query)
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(sql)?;
    report.rows = rows.len();
    let mut referenced = std::collections::BTreeSet::new();
    for (id, file, subject, recorded) in rows {
        let path = state.join(&file);
        referenced.insert(path.clone());
        let problem = match std::fs::read(&path) {
            Err(_) => Some("its vector file is missing".to_string()),
            Ok(bytes) => match recorded {
                Some(h) if h != sha256_hex(&bytes) => {
                    Some("its vector file differs from the one stored (sha256 mismatch)".into())
                }
                _ => match crate::embedding::vectors::VectorFile::open(&path) {
                    Err(e) => Some(format!("its vector file cannot be read: {e}")),
                    Ok(v) if v.metadata().get("fute.id") != Some(&id) => {
                        Some("its vector file belongs to another embedding".into())
                    }
                    Ok(_) => None,
                },
            },
        };
        let Some(problem) = problem else { continue };
        let mut repaired = false;
        if repair {
            conn.execute("DELETE FROM embeddings WHERE id = ?1", [&id])
                .map_err(sql)?;
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
            }
            repaired = true;
        }
        report.found(
            &path,
            format!("embedding {id} ({subject}): {problem}"),
            format!(
                "`fute doctor --repair` drops the row; then run the embed command for `{subject}` again"
            ),
            true,
            repaired,
        );
    }
    if vectors.is_dir() {
        let entries = std::fs::read_dir(&vectors).map_err(|e| Error::io("listing", &vectors, e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io("listing", &vectors, e))?.path();
            let is_vector = path.extension().is_some_and(|e| e == "safetensors");
            if !is_vector {
                continue;
            }
            report.vector_files += 1;
            if referenced.contains(&path) {
                continue;
            }
            // A running embed writes its file just before its row.
            let old = age(&path) >= LEFTOVER_AGE;
            let mut repaired = false;
            if repair && old {
                std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
                repaired = true;
            }
            report.found(
                &path,
                "vector file without a catalogue row (an embed interrupted between file and row)"
                    .into(),
                if old {
                    "remove it (`fute doctor --repair`); the rerun of that embed writes it again"
                        .into()
                } else {
                    "it is recent and may belong to a running embed: run doctor again later".into()
                },
                old,
                repaired,
            );
        }
    }
    Ok(())
}

/// Every line of every LLM call cache must be a `{"key", "op", "value"}` object.
fn caches(dir: &Path, repair: bool, report: &mut Report) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for path in files {
        report.caches += 1;
        let text = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
        let text = String::from_utf8_lossy(&text);
        let mut good = String::new();
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let ok = serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                v.get("key").is_some_and(|k| k.is_string()) && v.get("value").is_some()
            });
            if ok {
                good.push_str(line);
                good.push('\n');
            } else {
                bad.push(i + 1);
            }
        }
        if bad.is_empty() {
            continue;
        }
        let mut repaired = false;
        if repair {
            write_atomic(&path, good.as_bytes())?;
            repaired = true;
        }
        report.found(
            &path,
            format!(
                "{} unreadable line(s) (line {}), e.g. cut off by a crash",
                bad.len(),
                bad.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "`fute doctor --repair` drops them; those LLM calls are made again on the next run"
                .into(),
            true,
            repaired,
        );
    }
    Ok(())
}

/// The workspace's own datasets and corpora must load.
fn data(ws: &Workspace, report: &mut Report) -> Result<()> {
    for entry in ws.datasets()? {
        if entry.origin != DatasetOrigin::Workspace {
            continue;
        }
        report.datasets_and_corpora += 1;
        if let Err(e) = ws.load_dataset(&entry.name) {
            report.found(
                &ws.dataset_dir(&entry.name)?,
                format!("dataset `{}` does not load: {e}", entry.name),
                format!(
                    "import it again with `fute data import {} --file …` (not repaired automatically)",
                    entry.name
                ),
                false,
                false,
            );
        }
    }
    for name in ws.corpora()? {
        report.datasets_and_corpora += 1;
        if let Err(e) = ws.load_corpus(&name) {
            report.found(
                &ws.corpus_dir(&name)?,
                format!("corpus `{name}` does not load: {e}"),
                format!(
                    "build it again with `fute corpus build {name} …` (not repaired automatically)"
                ),
                false,
                false,
            );
        }
    }
    Ok(())
}
