//! Files written atomically get `0666` less the umask, like any program's
//! (case 23 of 2026-11-30: they were `0600` whatever the umask). One test in
//! its own binary, because the umask is per process.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;

use fute_core::dataset::{Dataset, DatasetCard, Example, Input, InputShape, Target, TaskSchema};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn atomic_writes_honour_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for (umask, file, folder) in [
        (0o022, 0o644, 0o755),
        (0o077, 0o600, 0o700),
        (0o002, 0o664, 0o775),
    ] {
        // SAFETY: this binary runs this one test; nothing else creates files meanwhile.
        let old = unsafe { libc::umask(umask) };
        let f = dir.path().join(format!("f{umask:o}"));
        fute_core::fsutil::write_atomic(&f, b"x").unwrap();
        // A replaced file gets the mode anew, not the old file's.
        fute_core::fsutil::write_atomic(&f, b"y").unwrap();
        let ds_dir = dir.path().join(format!("ds{umask:o}"));
        let ds = Dataset {
            card: DatasetCard::new(
                "d",
                TaskSchema::Classification {
                    inputs: InputShape::Single,
                    labels: vec!["a".into(), "b".into()],
                },
            ),
            examples: vec![Example {
                id: "1".into(),
                input: Input::Single("text".into()),
                target: Target::Label(0),
                fixed_split: None,
            }],
        };
        ds.save_dir(&ds_dir).unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(mode(&f), file, "umask {umask:o}: file");
        assert_eq!(mode(&ds_dir), folder, "umask {umask:o}: dataset folder");
        for e in std::fs::read_dir(&ds_dir).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), file, "umask {umask:o}: {}", p.display());
        }
    }
}
