//! Crafted archives: members whose paths leave the target folder, and links
//! that would lead a later member outside it. Nothing may land outside the stage.

use super::tests::spec;
use super::*;
use crate::assets::catalogue::ArchiveFormat;

/// A tar member header with `name` written raw (tar's builder refuses `..`,
/// which is exactly what an attacker's archive holds).
fn raw_header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// Writes a .tar.gz of `(name, kind, body or link target)` members.
fn write_tgz(path: &Path, members: &[(&str, tar::EntryType, &str)]) {
    let gz =
        flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, kind, body) in members {
        if kind.is_file() {
            let h = raw_header(name, *kind, body.len() as u64, None);
            tar.append(&h, body.as_bytes()).unwrap();
        } else {
            let h = raw_header(name, *kind, 0, Some(body));
            tar.append(&h, std::io::empty()).unwrap();
        }
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn run(
    format: ArchiveFormat,
    archive: &Path,
    stage: &Path,
    files: usize,
) -> Result<Vec<ManifestFile>> {
    extract(
        &spec(format, files),
        archive,
        &Programs::default(),
        stage,
        &mut |_| {},
    )
}

/// Every file under `dir` (recursively), relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            assert!(
                !meta.file_type().is_symlink(),
                "a link was created: {}",
                p.display()
            );
            if meta.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

use tar::EntryType as T;

#[test]
fn tar_members_with_dot_dot_are_refused() {
    for evil in [
        "pkg/data/../evil.json",
        "pkg/text/../../../evil",
        "pkg/text/sub/../../../x",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (archive, stage) = (dir.path().join("a.tgz"), dir.path().join("w/stage"));
        write_tgz(
            &archive,
            &[
                ("pkg/data/keep.txt", T::Regular, "k"),
                (evil, T::Regular, "pwned"),
            ],
        );
        let err = run(ArchiveFormat::TarGz, &archive, &stage, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsafe member path"), "{evil}: {err}");
        assert_eq!(tree(dir.path()), ["a.tgz", "w/stage/keep.txt"], "{evil}");
    }
}

#[test]
fn absolute_tar_members_never_leave_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.json");
    let abs = format!("/{}", outside.display().to_string().trim_start_matches('/'));
    let (archive, stage) = (dir.path().join("a.tgz"), dir.path().join("stage"));
    write_tgz(
        &archive,
        &[
            ("pkg/data/keep.txt", T::Regular, "k"),
            (abs.as_str(), T::Regular, "pwned"),
        ],
    );
    let err = run(ArchiveFormat::TarGz, &archive, &stage, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsafe member path"), "{err}");
    assert!(!outside.exists());
}

#[test]
fn unselected_members_that_climb_out_are_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, stage) = (dir.path().join("a.tgz"), dir.path().join("stage"));
    write_tgz(
        &archive,
        &[
            ("other/../../x", T::Regular, "pwned"),
            ("pkg/data/keep.txt", T::Regular, "k"),
        ],
    );
    let err = run(ArchiveFormat::TarGz, &archive, &stage, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsafe member path `other/../../x`"), "{err}");
    assert_eq!(
        tree(dir.path()),
        ["a.tgz"],
        "refused before anything was written"
    );
}

#[test]
fn tar_links_are_never_followed_or_created() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let (archive, stage) = (dir.path().join("a.tgz"), dir.path().join("stage"));
    let target = outside.display().to_string();
    write_tgz(
        &archive,
        &[
            // A directory symlink out of the stage, then a member written "through" it.
            ("pkg/data/g1", T::Symlink, target.as_str()),
            ("pkg/data/g1/a.json", T::Regular, "{}"),
            // A hard link to a file outside, under a name a rule selects.
            ("pkg/data/keep.txt", T::Link, "/etc/hostname"),
            ("pkg/text/one", T::Symlink, "/etc/passwd"),
        ],
    );
    let err = run(ArchiveFormat::TarGz, &archive, &stage, 1)
        .unwrap_err()
        .to_string();
    // Links are skipped, so keep.txt and text/one are missing: refused as a wrong layout.
    assert!(err.contains("missing: pkg/data/keep.txt"), "{err}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert_eq!(tree(&stage), ["g1/a.json"]);
}

fn write_zip(path: &Path, files: &[(&str, &str)], links: &[(&str, &str)]) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, target) in links {
        zip.add_symlink(*name, *target, opts).unwrap();
    }
    for (name, body) in files {
        zip.start_file(*name, opts).unwrap();
        std::io::Write::write_all(&mut zip, body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn zip_members_with_dot_dot_are_refused() {
    for evil in ["pkg/data/../evil.json", "pkg/text/../../../evil"] {
        let dir = tempfile::tempdir().unwrap();
        let (archive, stage) = (dir.path().join("a.zip"), dir.path().join("w/stage"));
        write_zip(
            &archive,
            &[("pkg/data/keep.txt", "k"), (evil, "pwned")],
            &[],
        );
        let err = run(ArchiveFormat::Zip, &archive, &stage, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsafe member path"), "{evil}: {err}");
        assert_eq!(tree(dir.path()), ["a.zip", "w/stage/keep.txt"], "{evil}");
    }
}

#[test]
fn zip_symlinks_are_never_followed_or_created() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let (archive, stage) = (dir.path().join("a.zip"), dir.path().join("stage"));
    write_zip(
        &archive,
        &[("pkg/data/g1/a.json", "{}"), ("pkg/data/keep.txt", "k")],
        &[
            ("pkg/data/g1", outside.to_str().unwrap()),
            ("pkg/text/one", "/etc/passwd"),
        ],
    );
    // The links are skipped; the two regular members land inside the stage.
    let files = run(ArchiveFormat::Zip, &archive, &stage, 2).unwrap();
    assert_eq!(files.len(), 2);
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert_eq!(tree(&stage), ["g1/a.json", "keep.txt"]);
}
