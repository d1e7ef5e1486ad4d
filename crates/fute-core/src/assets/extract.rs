//! Reading archives: checksums, and extracting only the catalogued members.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::catalogue::{ArchiveFormat, AssetSpec};
use super::clients::{deb_fsys_tar, Programs};
use super::manifest::ManifestFile;
use crate::{Error, Result};

/// The sha256 of a file, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Progress of one extraction: files written so far, and how much of the
/// archive was read (compressed bytes; `None` when unknown, e.g. a `.deb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub files_done: usize,
    pub archive_read: Option<u64>,
}

/// How often (in archive bytes) to report progress between files.
const REPORT_EVERY: u64 = 8 << 20;

/// Extracts the members `spec` selects from `archive` into `stage` and returns
/// the files written (sorted by path).
///
/// # Errors
/// [`Error::Invalid`] when the archive cannot be read or its layout is not
/// what the catalogue expects; [`Error::Io`] when `stage` cannot be written;
/// [`Error::Tool`] when a `.deb` needs `dpkg-deb` and it is missing or fails.
pub(crate) fn extract(
    spec: &AssetSpec,
    archive: &Path,
    programs: &Programs,
    stage: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<ManifestFile>> {
    let mut sink = Sink {
        spec,
        stage,
        archive,
        written: BTreeMap::new(),
    };
    match spec.archive.format {
        ArchiveFormat::Zip => extract_zip(&mut sink, progress)?,
        ArchiveFormat::TarGz => {
            let file = File::open(archive).map_err(|e| Error::io("opening", archive, e))?;
            let read = Rc::new(Cell::new(0u64));
            let counting = CountingReader {
                inner: BufReader::with_capacity(1 << 20, file),
                count: Rc::clone(&read),
            };
            let gz = flate2::read::GzDecoder::new(counting);
            extract_tar(&mut sink, gz, &|| Some(read.get()), progress)?;
        }
        ArchiveFormat::Deb => {
            let mut child = deb_fsys_tar(spec, programs, archive)?;
            let stdout = child.stdout.take().expect("stdout is piped");
            let result = extract_tar(&mut sink, BufReader::new(stdout), &|| None, progress);
            // Drain stderr and reap the child whatever happened.
            let output = child
                .wait_with_output()
                .map_err(|e| Error::Tool(format!("{}: waiting for dpkg-deb: {e}", spec.name)))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(Error::Tool(format!(
                    "{}: `dpkg-deb --fsys-tarfile {}` failed ({}): {}",
                    spec.name,
                    archive.display(),
                    output.status,
                    stderr.lines().last().unwrap_or("no output").trim()
                )));
            }
            result?;
        }
    }
    sink.finish()
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Where selected members go, and what was written.
struct Sink<'a> {
    spec: &'a AssetSpec,
    stage: &'a Path,
    archive: &'a Path,
    written: BTreeMap<String, u64>,
}

impl Sink<'_> {
    /// The destination of `member`, when a rule of the spec selects it.
    fn destination(&self, member: &str) -> Option<String> {
        self.spec
            .extract
            .iter()
            .find_map(|rule| rule.destination(member))
    }

    /// Refuses a member whose own path climbs out (`..`) or is absolute, selected
    /// or not: no honest package holds one, and an archive that does is hostile.
    fn check_member(&self, name: &str) -> Result<()> {
        let climbs = Path::new(name).components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
        if climbs || name.contains('\0') {
            return Err(self.corrupt(format!("unsafe member path `{}`", name.escape_debug())));
        }
        Ok(())
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::Invalid(format!(
            "{}: cannot read archive {}: {what}; delete it and fetch again",
            self.spec.name,
            self.archive.display()
        ))
    }

    /// Writes one selected member to `<stage>/<dest>`.
    fn write(&mut self, dest: &str, reader: &mut dyn Read) -> Result<()> {
        let rel = Path::new(dest);
        // Only plain components: no `..`, root, prefix or `.`; and never through a
        // link (members that are links are skipped, so the stage holds none).
        if dest.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(self.corrupt(format!("unsafe member path `{dest}`")));
        }
        let path = self.stage.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let mut out = File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
        let size = std::io::copy(reader, &mut out).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof
            {
                self.corrupt(format!("member `{dest}`: {e}"))
            } else {
                Error::io("writing", &path, e)
            }
        })?;
        self.written.insert(dest.to_owned(), size);
        Ok(())
    }

    /// Checks the layout against the catalogue and lists the files.
    fn finish(self) -> Result<Vec<ManifestFile>> {
        let mut missing = Vec::new();
        for rule in self.spec.extract {
            for pattern in rule.patterns.iter().filter(|p| !p.contains('*')) {
                let dest = rule.destination(&format!("{}{pattern}", rule.from));
                if dest.is_none_or(|d| !self.written.contains_key(&d)) {
                    missing.push(format!("{}{pattern}", rule.from));
                }
            }
        }
        if !missing.is_empty() || self.written.len() != self.spec.files {
            return Err(Error::Invalid(format!(
                "{}: archive {} yielded {} files, the catalogue expects {}{}; the catalogue entry does not match the package (a bug in fute)",
                self.spec.name,
                self.archive.display(),
                self.written.len(),
                self.spec.files,
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" (missing: {})", missing.join(", "))
                }
            )));
        }
        Ok(self
            .written
            .into_iter()
            .map(|(path, size)| ManifestFile { path, size })
            .collect())
    }
}

fn extract_zip(sink: &mut Sink<'_>, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let file = File::open(sink.archive).map_err(|e| Error::io("opening", sink.archive, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| sink.corrupt(e))?;
    let mut read = 0u64;
    let mut reported = 0u64;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| sink.corrupt(e))?;
        read += entry.compressed_size();
        let name = entry.name().map_err(|e| sink.corrupt(e))?.into_owned();
        sink.check_member(&name)?;
        if !entry.is_file() {
            continue;
        }
        if let Some(dest) = sink.destination(&name) {
            sink.write(&dest, &mut entry)?;
            reported = read;
            progress(Progress {
                files_done: sink.written.len(),
                archive_read: Some(read),
            });
        } else if read - reported >= REPORT_EVERY {
            reported = read;
            progress(Progress {
                files_done: sink.written.len(),
                archive_read: Some(read),
            });
        }
    }
    Ok(())
}

fn extract_tar(
    sink: &mut Sink<'_>,
    reader: impl Read,
    read: &dyn Fn() -> Option<u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mut tar = tar::Archive::new(reader);
    let mut reported = 0u64;
    for entry in tar.entries().map_err(|e| sink.corrupt(e))? {
        let mut entry = entry.map_err(|e| sink.corrupt(e))?;
        let now = read();
        let due = now.is_some_and(|n| n - reported >= REPORT_EVERY);
        let name = entry.path().map_err(|e| sink.corrupt(e))?;
        let name = name.to_string_lossy().into_owned();
        sink.check_member(&name)?;
        if entry.header().entry_type().is_file() {
            if let Some(dest) = sink.destination(&name) {
                sink.write(&dest, &mut entry)?;
                reported = now.unwrap_or(0);
                progress(Progress {
                    files_done: sink.written.len(),
                    archive_read: now,
                });
                continue;
            }
        }
        if due {
            reported = now.unwrap_or(0);
            progress(Progress {
                files_done: sink.written.len(),
                archive_read: now,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "extract_security_tests.rs"]
mod security_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::catalogue::{ArchiveSpec, AssetKind, Extract, Source};

    const RULES: &[Extract] = &[
        Extract {
            from: "pkg/data/",
            patterns: &["keep.txt", "*/*.json"],
            exclude: &[],
            to: "",
        },
        Extract {
            from: "pkg/text/",
            patterns: &["*"],
            exclude: &[".dat"],
            to: "text",
        },
    ];

    pub(super) fn spec(format: ArchiveFormat, files: usize) -> AssetSpec {
        AssetSpec {
            name: "toy",
            kind: AssetKind::UnlabelledText,
            description: "a toy archive",
            source: Source::Npm {
                package: "toy",
                version: "0.0.0",
            },
            archive: ArchiveSpec {
                file: "toy",
                sha256: "",
                size: 0,
                format,
            },
            extract: RULES,
            files,
            checks: &[],
            licence: "none",
            opt_in: false,
            parts: &[],
            assemble: None,
            terms: None,
        }
    }

    const MEMBERS: &[(&str, &str)] = &[
        ("pkg/data/keep.txt", "keep"),
        ("pkg/data/skip.txt", "skip"),
        ("pkg/data/g1/a.json", "{}"),
        ("pkg/data/g1/a.txt", "twin"),
        ("pkg/data/list.json", "[]"),
        ("pkg/text/one", "one"),
        ("pkg/text/one.dat", "index"),
    ];

    fn write_tgz(path: &Path) {
        let gz =
            flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, body) in MEMBERS {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, body.as_bytes()).unwrap();
        }
        // A symlink that a glob would match: never extracted.
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_cksum();
        tar.append_link(&mut header, "pkg/text/two", "one").unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }

    fn write_zip(path: &Path) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, body) in MEMBERS {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut zip, body.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
    }

    fn check(format: ArchiveFormat, write: fn(&Path)) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("toy.archive");
        write(&archive);
        let stage = dir.path().join("stage");
        let mut events = Vec::new();
        let files = extract(
            &spec(format, 3),
            &archive,
            &Programs::default(),
            &stage,
            &mut |p| events.push(p.files_done),
        )
        .unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["g1/a.json", "keep.txt", "text/one"]);
        assert_eq!(
            std::fs::read_to_string(stage.join("text/one")).unwrap(),
            "one"
        );
        assert_eq!(files[1].size, 4);
        assert_eq!(events.last(), Some(&3));
        assert!(!stage.join("skip.txt").exists());

        // A layout that differs from the catalogue is an error, not a silent success.
        let err = extract(
            &spec(format, 4),
            &archive,
            &Programs::default(),
            &dir.path().join("stage2"),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("yielded 3 files, the catalogue expects 4"),
            "{err}"
        );
    }

    #[test]
    fn extracts_selected_members_from_tar_gz() {
        check(ArchiveFormat::TarGz, write_tgz);
    }

    #[test]
    fn extracts_selected_members_from_zip() {
        check(ArchiveFormat::Zip, write_zip);
    }

    #[test]
    fn truncated_archive_is_reported_as_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("toy.tgz");
        write_tgz(&archive);
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        let err = extract(
            &spec(ArchiveFormat::TarGz, 3),
            &archive,
            &Programs::default(),
            &dir.path().join("stage"),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
