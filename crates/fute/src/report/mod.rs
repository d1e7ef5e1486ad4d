//! Run folders and their one-file HTML report.
//!
//! Every long command (`fute demo`, `fute prompts evaluate`, `fute transfer evaluate`)
//! keeps what it did in `<workspace>/.fute/runs/<run-id>/`: the raw results (CSV, JSON),
//! the maps, and one self-contained `report.html` — tables, maps inline (data URIs and
//! an interactive explorer), provenance and timings — that opens from `file://` with no
//! server and no network.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use fute::report::{Report, RunFolder, Table};
//! let mut run = RunFolder::create(std::path::Path::new(".fute"), "prompts-evaluate")?;
//! let mut report = Report::new("Which prompt?");
//! report.provenance.seeds.insert("sampling".into(), 42);
//! let mut t = Table::new("Prompts ranked by FUTE", &["prompt", "accuracy"]);
//! t.row(vec!["#3".into(), "0.81".into()]);
//! run.write_table("prompts.csv", &t)?;              // raw CSV next to the report
//! report.section("Results").table(t);
//! run.time("evaluate", || { /* work */ });         // timings go into the provenance
//! let html = run.write_report(&mut report)?;        // report.html, printed by the caller
//! println!("{}", html.display());
//! # Ok(()) }
//! ```

pub mod explorer;
pub mod html;

use crate::map::{draw, Layout, TaskMap};
use fute_core::fsutil::write_atomic;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The git commit checked out (HEAD) when fute was built; `unknown` outside a git checkout.
/// Local changes on top of it are not marked.
pub const GIT_COMMIT: &str = env!("FUTE_GIT_COMMIT");

/// One run's folder, `<state>/runs/<run-id>/`, with the timings of its steps.
#[derive(Debug)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
    /// `<UTC time>-<command>[-n]`, e.g. `20261130T214501Z-demo`.
    pub id: String,
    started: Instant,
    timings: Vec<(String, f64)>,
}

impl RunFolder {
    /// Creates a new, empty run folder under `<state_dir>/runs/` for `command` (a short
    /// word such as `demo`). Two runs started in the same second get `-2`, `-3`, ….
    ///
    /// Errors: the folder cannot be created (permissions, disk).
    pub fn create(state_dir: &Path, command: &str) -> anyhow::Result<RunFolder> {
        let runs = state_dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|e| fute_core::Error::io("creating", &runs, e))?;
        let stamp: String = fute_core::assets::rfc3339_utc(std::time::SystemTime::now())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let word: String = command
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        for n in 1..1000 {
            let id = if n == 1 {
                format!("{stamp}-{word}")
            } else {
                format!("{stamp}-{word}-{n}")
            };
            let dir = runs.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(RunFolder {
                        dir,
                        id,
                        started: Instant::now(),
                        timings: Vec::new(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fute_core::Error::io("creating", &dir, e).into()),
            }
        }
        anyhow::bail!(
            "could not find a free run folder name under {}",
            runs.display()
        )
    }

    /// `<run>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `<run>/<name>` atomically; returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fute_core::Error::io("creating", parent, e))?;
        }
        write_atomic(&p, bytes)?;
        Ok(p)
    }

    /// Writes `value` as pretty JSON to `<run>/<name>`.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> anyhow::Result<PathBuf> {
        self.write(name, serde_json::to_string_pretty(value)?.as_bytes())
    }

    /// Writes a table as CSV to `<run>/<name>`.
    pub fn write_table(&self, name: &str, table: &Table) -> anyhow::Result<PathBuf> {
        self.write(name, table.to_csv().as_bytes())
    }

    /// Runs `f` and records its wall time under `step`.
    pub fn time<T>(&mut self, step: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.record(step, t.elapsed().as_secs_f64());
        out
    }

    /// Records that `step` took `seconds`.
    pub fn record(&mut self, step: &str, seconds: f64) {
        self.timings.push((step.to_owned(), seconds));
    }

    /// The timings recorded so far, in order.
    pub fn timings(&self) -> &[(String, f64)] {
        &self.timings
    }

    /// Writes the report's map pictures and data next to it (`<stem>-pca.svg`, …) and
    /// `report.html`; the report's provenance gets the run id, the timings and the total
    /// wall time. Returns the path of `report.html`.
    pub fn write_report(&self, report: &mut Report) -> anyhow::Result<PathBuf> {
        report.provenance.run_id = Some(self.id.clone());
        report.provenance.timings = self.timings.clone();
        report.provenance.total_seconds = Some(self.started.elapsed().as_secs_f64());
        for (stem, m) in report.maps() {
            crate::map::write_files(&m.map, &self.dir, &stem, &m.title)?;
        }
        self.write_json("provenance.json", &report.provenance)?;
        self.write("report.html", report.render().as_bytes())
    }
}

/// How a run was made: enough to rerun it and to trust its numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// fute's version.
    pub fute_version: String,
    /// Git commit of the build ([`GIT_COMMIT`]).
    pub git_commit: String,
    /// The command line.
    pub command: Vec<String>,
    /// When the report was made (UTC, RFC 3339).
    pub created_at: String,
    /// The run folder's id, once written.
    pub run_id: Option<String>,
    /// Seeds by purpose (`sampling`, `training`, …).
    pub seeds: BTreeMap<String, u64>,
    /// Content hashes of the inputs (surrogate, datasets, corpus, models).
    pub hashes: BTreeMap<String, String>,
    /// Every setting that shapes a number.
    pub settings: BTreeMap<String, Value>,
    /// Wall seconds per step, in order.
    pub timings: Vec<(String, f64)>,
    /// Wall seconds of the whole run.
    pub total_seconds: Option<f64>,
}

/// The command line with the value of every secret-bearing option (`--api-key`,
/// and any option whose name says key, token, password or secret) replaced by
/// `[redacted]`: a report is shared, a key must never reach it.
pub fn redact_secrets(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let secret = |flag: &str| {
        let name = flag.trim_start_matches('-').to_ascii_lowercase();
        flag.starts_with("--")
            && ["key", "token", "password", "secret"]
                .iter()
                .any(|w| name.contains(w))
    };
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("[redacted]".to_owned());
            hide_next = false;
        } else if let Some((flag, _)) = a.split_once('=').filter(|(f, _)| secret(f)) {
            out.push(format!("{flag}=[redacted]"));
        } else {
            hide_next = secret(&a);
            out.push(a);
        }
    }
    out
}

impl Provenance {
    /// Provenance of the current process: version, commit, command line, time.
    pub fn current() -> Provenance {
        Provenance {
            fute_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit: GIT_COMMIT.to_owned(),
            command: redact_secrets(std::env::args()),
            created_at: fute_core::assets::rfc3339_utc(std::time::SystemTime::now()),
            run_id: None,
            seeds: BTreeMap::new(),
            hashes: BTreeMap::new(),
            settings: BTreeMap::new(),
            timings: Vec::new(),
            total_seconds: None,
        }
    }
}

/// A table of text cells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// Caption shown above it.
    pub caption: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows (each as long as the header).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(caption: impl Into<String>, header: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row. Panics when its length differs from the header's (a bug in the caller).
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.header.len(),
            "row length != header length in table `{}`",
            self.caption
        );
        self.rows.push(cells);
    }

    /// RFC 4180 CSV, header first.
    pub fn to_csv(&self) -> String {
        let line = |cells: &[String]| {
            cells
                .iter()
                .map(|c| crate::map::csv_field(c))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = line(&self.header);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// A map shown in a report: static pictures of both layouts and the explorer.
#[derive(Debug, Clone)]
pub struct MapBlock {
    /// Title above it and in the pictures.
    pub title: String,
    /// File stem in the run folder (`map-fim` → `map-fim-pca.svg`, …).
    pub stem: String,
    /// The map.
    pub map: TaskMap,
}

/// One piece of a section.
#[derive(Debug, Clone)]
pub enum Block {
    /// A paragraph of plain text (escaped; never markup).
    Text(String),
    /// A table.
    Table(Table),
    /// A task map.
    Map(Box<MapBlock>),
    /// Preformatted plain text (a log excerpt, a command).
    Pre(String),
}

/// A titled part of a report.
#[derive(Debug, Clone)]
pub struct Section {
    /// Heading.
    pub heading: String,
    /// Contents, in order.
    pub blocks: Vec<Block>,
}

impl Section {
    /// Adds a paragraph.
    pub fn text(&mut self, s: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Text(s.into()));
        self
    }

    /// Adds a table.
    pub fn table(&mut self, t: Table) -> &mut Self {
        self.blocks.push(Block::Table(t));
        self
    }

    /// Adds preformatted text.
    pub fn pre(&mut self, s: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Pre(s.into()));
        self
    }

    /// Adds a map; its files are written as `<stem>-*` in the run folder.
    pub fn map(
        &mut self,
        title: impl Into<String>,
        stem: impl Into<String>,
        map: TaskMap,
    ) -> &mut Self {
        self.blocks.push(Block::Map(Box::new(MapBlock {
            title: title.into(),
            stem: stem.into(),
            map,
        })));
        self
    }
}

/// A report: a title, sections, provenance.
#[derive(Debug, Clone)]
pub struct Report {
    /// Title of the page.
    pub title: String,
    /// Sections, in order.
    pub sections: Vec<Section>,
    /// How the run was made.
    pub provenance: Provenance,
}

impl Report {
    /// An empty report with the current process's provenance.
    pub fn new(title: impl Into<String>) -> Report {
        Report {
            title: title.into(),
            sections: Vec::new(),
            provenance: Provenance::current(),
        }
    }

    /// Appends a section and returns it for filling.
    pub fn section(&mut self, heading: impl Into<String>) -> &mut Section {
        self.sections.push(Section {
            heading: heading.into(),
            blocks: Vec::new(),
        });
        self.sections.last_mut().expect("just pushed")
    }

    /// The maps of the report, with their file stems.
    pub fn maps(&self) -> Vec<(String, &MapBlock)> {
        self.sections
            .iter()
            .flat_map(|s| &s.blocks)
            .filter_map(|b| match b {
                Block::Map(m) => Some((m.stem.clone(), m.as_ref())),
                _ => None,
            })
            .collect()
    }

    /// The whole page: one HTML file, styles, scripts, pictures and data inline.
    pub fn render(&self) -> String {
        html::page(self)
    }
}

/// The static pictures of a map for inlining: `(layout, mime type, base64 data)`.
/// PNG when a font is available (it is smaller for many labels), SVG otherwise.
pub(crate) fn map_pictures(m: &MapBlock) -> Vec<(Layout, &'static str, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for layout in [Layout::Pca, Layout::Tsne] {
        if m.map.coords(layout).is_none() {
            continue;
        }
        match draw::png(&m.map, layout, &m.title) {
            Ok(bytes) => out.push((layout, "image/png", b64.encode(bytes))),
            Err(_) => {
                if let Ok(svg) = draw::svg(&m.map, layout, &m.title) {
                    out.push((layout, "image/svg+xml", b64.encode(svg.as_bytes())));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_secrets;

    #[test]
    fn secrets_never_reach_the_recorded_command_line() {
        let args = [
            "fute",
            "prompts",
            "--api-key",
            "sk-1",
            "--url",
            "http://x",
            "--auth-token=t2",
            "--model",
            "m",
        ]
        .map(String::from);
        assert_eq!(
            redact_secrets(args),
            [
                "fute",
                "prompts",
                "--api-key",
                "[redacted]",
                "--url",
                "http://x",
                "--auth-token=[redacted]",
                "--model",
                "m"
            ]
        );
    }
}
