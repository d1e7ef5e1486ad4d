//! Task maps: embeddings of one space laid out in two dimensions (the paper's Figure 1
//! and the poster's maps), by PCA and by t-SNE, coloured by task class and marked by kind.
//!
//! ```text
//! records ──store.gram (streamed)──► G (n×n) ──► PCA (eigen of J G J)
//!                                        └─────► cosines ──► t-SNE (bhtsne), neighbours
//! ```
//! The vectors are never all in memory: only the Gram matrix is, which the store
//! computes chunk by chunk. [`draw`] renders PNG and SVG with `plotters`; the
//! interactive HTML explorer is in [`crate::report`].

pub mod classify;
pub mod draw;
pub mod labels;
pub mod reduce;

pub use classify::{classify, Marker, TaskClass};
pub use reduce::{Pca, TsneSettings};

use fute_core::embedding::{EmbeddingKind, EmbeddingRecord, Store, SubjectKind};
use fute_core::similarity::gram;
use fute_core::workspace::Workspace;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One point of a map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapPoint {
    /// Embedding id.
    pub id: String,
    /// The label drawn next to it (unique within the map).
    pub label: String,
    /// The subject's full name (dataset, model folder, `MODEL:SET#PROMPT`).
    pub subject: String,
    /// DTE or MTE.
    pub kind: EmbeddingKind,
    /// Task class (colour).
    pub class: TaskClass,
    /// Kind of subject (marker).
    pub marker: Marker,
    /// Embedding method (`fim`, `prefix`, …).
    pub method: String,
    /// A fine-tuned model's architecture (`config.json`'s `model_type`: `bert`,
    /// `llama`, …); `None` for datasets and prompted LLMs, or when unknown.
    pub architecture: Option<String>,
}

/// Options of [`TaskMap::build`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapOptions {
    /// Compute cosines (for t-SNE and the neighbours) after subtracting the points' mean.
    pub centre: bool,
    /// t-SNE settings.
    pub tsne: TsneSettings,
    /// Nearest neighbours kept per point (for the explorer's tooltips).
    pub neighbours: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            centre: true,
            tsne: TsneSettings::default(),
            neighbours: 5,
        }
    }
}

/// A map of n embeddings of one space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMap {
    /// The points, in the order given.
    pub points: Vec<MapPoint>,
    /// Method of every point.
    pub method: String,
    /// The space key shared by every point.
    pub space_key: String,
    /// Whether cosines are of centred vectors.
    pub centred: bool,
    /// n×n cosine matrix (centred when `centred`).
    pub cosine: Vec<Vec<f64>>,
    /// PCA layout (from the Gram matrix).
    pub pca: Vec<[f64; 2]>,
    /// Share of variance of PC1 and PC2.
    pub explained: [f64; 2],
    /// t-SNE layout; `None` with fewer than 4 points.
    pub tsne: Option<Vec<[f64; 2]>>,
    /// The perplexity t-SNE used.
    pub perplexity: Option<f64>,
    /// t-SNE iterations.
    pub tsne_epochs: usize,
    /// For each point: its nearest other points `(index, cosine)`.
    pub neighbours: Vec<Vec<(usize, f64)>>,
}

/// Which 2-D layout to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Layout {
    /// First two principal components.
    Pca,
    /// t-SNE.
    Tsne,
}

impl Layout {
    /// `pca` or `tsne`.
    pub fn key(self) -> &'static str {
        match self {
            Layout::Pca => "pca",
            Layout::Tsne => "tsne",
        }
    }
}

impl TaskMap {
    /// Builds the map of `records` (all of one space, at least 2), streaming their
    /// vectors from `store`. `workspace` resolves datasets' task classes (see [`classify`]).
    ///
    /// Errors: fewer than 2 records, records of different spaces (with the reason), an
    /// unreadable vector file.
    pub fn build(
        store: &Store,
        records: &[EmbeddingRecord],
        workspace: Option<&Workspace>,
        opts: &MapOptions,
    ) -> anyhow::Result<TaskMap> {
        if records.len() < 2 {
            anyhow::bail!(fute_core::Error::Invalid(format!(
                "a map needs at least 2 embeddings of one space, got {}; embed more (`fute embed …`) or widen the selection",
                records.len()
            )));
        }
        let first = &records[0];
        for r in &records[1..] {
            first.meta.space.check_compatible(&r.meta.space).map_err(|why| {
                fute_core::Error::Invalid(format!(
                    "embeddings {} ({}) and {} ({}) live in different spaces and cannot share a map: {why}; select one space with --space",
                    first.id, first.meta.subject.name, r.id, r.meta.subject.name
                ))
            })?;
        }
        let files = records
            .iter()
            .map(|r| store.vector_file(r))
            .collect::<fute_core::Result<Vec<_>>>()?;
        let g = gram(&files)?.total();
        let pca = reduce::pca_from_gram(&g);
        let cosine = reduce::cosine_matrix(&g, opts.centre);
        let tsne = reduce::tsne(&cosine, &pca.coords, &opts.tsne);
        let neighbours = reduce::nearest(&cosine, opts.neighbours);
        let points = describe(records, workspace);
        Ok(TaskMap {
            points,
            method: first.meta.space.method.clone(),
            space_key: first.meta.space.key(),
            centred: opts.centre,
            cosine,
            pca: pca.coords,
            explained: pca.explained,
            perplexity: reduce::tsne_perplexity(records.len(), &opts.tsne),
            tsne,
            tsne_epochs: opts.tsne.epochs,
            neighbours,
        })
    }

    /// The coordinates of a layout (`None`: t-SNE with fewer than 4 points).
    pub fn coords(&self, layout: Layout) -> Option<&[[f64; 2]]> {
        match layout {
            Layout::Pca => Some(&self.pca),
            Layout::Tsne => self.tsne.as_deref(),
        }
    }

    /// The points and both layouts as CSV
    /// (`id,label,subject,kind,class,marker,method,pca_x,pca_y,tsne_x,tsne_y,architecture`).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "id,label,subject,kind,class,marker,method,pca_x,pca_y,tsne_x,tsne_y,architecture\n",
        );
        for (i, p) in self.points.iter().enumerate() {
            let (tx, ty) = self
                .tsne
                .as_ref()
                .map_or((String::new(), String::new()), |t| {
                    (t[i][0].to_string(), t[i][1].to_string())
                });
            let fields = [
                p.id.clone(),
                p.label.clone(),
                p.subject.clone(),
                p.kind.as_str().to_owned(),
                p.class.as_str().to_owned(),
                p.marker.key().to_owned(),
                p.method.clone(),
                self.pca[i][0].to_string(),
                self.pca[i][1].to_string(),
                tx,
                ty,
                p.architecture.clone().unwrap_or_default(),
            ];
            let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// Mean cosine between points of two groups (pairs of distinct points only);
    /// `None` when no such pair exists. Used to read a map with numbers.
    pub fn mean_cosine(
        &self,
        a: impl Fn(&MapPoint) -> bool,
        b: impl Fn(&MapPoint) -> bool,
    ) -> Option<f64> {
        let mut sum = 0.0;
        let mut n = 0usize;
        for (i, p) in self.points.iter().enumerate() {
            for (j, q) in self.points.iter().enumerate() {
                if i != j && a(p) && b(q) {
                    sum += self.cosine[i][j];
                    n += 1;
                }
            }
        }
        (n > 0).then(|| sum / n as f64)
    }
}

/// CSV quoting (RFC 4180): quote when the field holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Points for `records`: class and marker from [`classify`], a short unique label.
pub fn describe(records: &[EmbeddingRecord], workspace: Option<&Workspace>) -> Vec<MapPoint> {
    let mut points: Vec<MapPoint> = records
        .iter()
        .map(|r| {
            let (class, marker) = classify(r, workspace);
            MapPoint {
                id: r.id.clone(),
                label: short_label(&r.meta.subject.name, r.meta.subject.kind),
                subject: r.meta.subject.name.clone(),
                kind: r.meta.kind,
                class,
                marker,
                method: r.meta.space.method.clone(),
                architecture: architecture(r),
            }
        })
        .collect();
    // Models of several architectures on one map: say each one's beside its name.
    let archs: std::collections::BTreeSet<&str> = points
        .iter()
        .filter_map(|p| p.architecture.as_deref())
        .collect();
    if archs.len() > 1 {
        for p in &mut points {
            if let Some(a) = &p.architecture {
                p.label = format!("{} [{a}]", p.label);
            }
        }
    }
    // A DTE and the MTE of a model named after the same dataset share a name: say which is which.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for p in &points {
        *count.entry(p.label.clone()).or_default() += 1;
    }
    for p in &mut points {
        if count[&p.label] > 1 {
            p.label = format!("{} ({})", p.label, p.marker.key());
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for p in &mut points {
        let k = seen.entry(p.label.clone()).or_default();
        *k += 1;
        if *k > 1 {
            p.label = format!("{} [{}]", p.label, &p.id[..p.id.len().min(6)]);
        }
    }
    points
}

/// A fine-tuned model's architecture: the `model_type` recorded with its MTE, else
/// the one in its folder's `config.json` (MTEs stored before it was recorded).
fn architecture(rec: &EmbeddingRecord) -> Option<String> {
    if rec.meta.subject.kind != SubjectKind::Model {
        return None;
    }
    if let Some(t) = rec.meta.extra.get("model_type").and_then(|v| v.as_str()) {
        return Some(t.to_owned());
    }
    let text =
        std::fs::read_to_string(Path::new(&rec.meta.subject.name).join("config.json")).ok()?;
    let cfg: serde_json::Value = serde_json::from_str(&text).ok()?;
    cfg["model_type"].as_str().map(str::to_owned)
}

/// A model folder's last path component; a prompted LLM's model cut to its first word
/// (`SmolLM2-135M-Instruct:sa#3` or a GGUF `general.name` such as
/// `Smollm2 135M 8k …:sa#3` → `Smollm2:sa#3`); other names unchanged.
fn short_label(name: &str, kind: SubjectKind) -> String {
    let trimmed = name.trim_end_matches(['/', '\\']);
    if kind == SubjectKind::PromptedLlm {
        if let Some((model, prompt)) = trimmed.rsplit_once(':') {
            let model = model.rsplit(['/', '\\']).next().unwrap_or(model);
            let first = model.split(['-', '.', '_', ' ']).next().unwrap_or(model);
            return format!("{first}:{prompt}");
        }
    }
    if trimmed.contains(['/', '\\']) {
        Path::new(trimmed)
            .file_name()
            .map_or_else(|| trimmed.to_owned(), |f| f.to_string_lossy().into_owned())
    } else {
        trimmed.to_owned()
    }
}

/// The files [`write_files`] wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MapFiles {
    /// PNG per layout (absent when no font was found for the PNG's text; see [`draw::png`]).
    pub png: Vec<PathBuf>,
    /// SVG per layout.
    pub svg: Vec<PathBuf>,
    /// Points and coordinates.
    pub csv: PathBuf,
    /// The whole map (points, cosines, neighbours, layouts).
    pub json: PathBuf,
    /// Why a PNG is missing, if one is.
    pub png_skipped: Option<String>,
}

/// Writes `<dir>/<stem>-{pca,tsne}.{png,svg}`, `<stem>.csv` and `<stem>.json` (atomically).
/// A missing font for the PNG's text skips the PNGs with the reason in
/// [`MapFiles::png_skipped`]; any other failure is an error.
pub fn write_files(map: &TaskMap, dir: &Path, stem: &str, title: &str) -> anyhow::Result<MapFiles> {
    use fute_core::fsutil::write_atomic;
    std::fs::create_dir_all(dir).map_err(|e| fute_core::Error::io("creating", dir, e))?;
    let mut files = MapFiles {
        csv: dir.join(format!("{stem}.csv")),
        json: dir.join(format!("{stem}.json")),
        ..Default::default()
    };
    write_atomic(&files.csv, map.to_csv().as_bytes())?;
    write_atomic(&files.json, serde_json::to_string_pretty(map)?.as_bytes())?;
    for layout in [Layout::Pca, Layout::Tsne] {
        if map.coords(layout).is_none() {
            continue;
        }
        let svg = draw::svg(map, layout, title)?;
        let path = dir.join(format!("{stem}-{}.svg", layout.key()));
        write_atomic(&path, svg.as_bytes())?;
        files.svg.push(path);
        match draw::png(map, layout, title) {
            Ok(bytes) => {
                let path = dir.join(format!("{stem}-{}.png", layout.key()));
                write_atomic(&path, &bytes)?;
                files.png.push(path);
            }
            Err(draw::DrawError::NoFont(why)) => files.png_skipped = Some(why),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_labels_keep_the_model_family_and_the_prompt() {
        let llm = SubjectKind::PromptedLlm;
        assert_eq!(
            short_label("SmolLM2-135M-Instruct:sa#3", llm),
            "SmolLM2:sa#3"
        );
        // A GGUF's general.name has spaces, not dashes.
        assert_eq!(
            short_label("Smollm2 135M 8k Lc100K Mix1 Ep2:nli-demo#1", llm),
            "Smollm2:nli-demo#1"
        );
        assert_eq!(
            short_label("/w/.fute/models/imdb-n48/", SubjectKind::Model),
            "imdb-n48"
        );
        assert_eq!(
            short_label("rotten-tomatoes", SubjectKind::Dataset),
            "rotten-tomatoes"
        );
    }
}
