//! Helpers for the "real" test tier, which needs fetched assets.
//!
//! A real-tier test calls [`real_asset`]. When the asset is absent the test is
//! skipped with a note, unless `FUTE_REQUIRE_ASSETS=1` (set by `.ci/run` after it
//! fetched the assets), in which case absence is a failure: CI never silently
//! skips the real tier.

use std::path::PathBuf;

/// Environment variable that makes a missing asset a test failure.
pub const REQUIRE_ENV: &str = "FUTE_REQUIRE_ASSETS";

/// The extracted folder of asset `name` (e.g. `"minilm"`), if it was fetched.
///
/// # Panics
/// When the asset is missing and `FUTE_REQUIRE_ASSETS=1`.
pub fn real_asset(name: &str) -> Option<PathBuf> {
    let assets = crate::assets::Assets::from_env();
    let dir = assets.root().join(name);
    // Present = recorded in the manifest with intact files, not merely a folder.
    if assets.is_present(name).unwrap_or(false) {
        return Some(dir);
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!(
            "asset `{name}` is required ({REQUIRE_ENV}=1) but {} does not exist; run `fute assets fetch {name}`",
            dir.display()
        );
    }
    eprintln!(
        "skipping: asset `{name}` not fetched ({} missing); run `fute assets fetch {name}`",
        dir.display()
    );
    None
}

/// Environment variable that turns on the heavy real-data tier (`FUTE_HEAVY=1`).
pub const HEAVY_ENV: &str = "FUTE_HEAVY";

/// Whether the heavy tier runs: real-data checks that take minutes on a CPU
/// (full-size PEFT training runs, …). They are off in the README's
/// `cargo test --workspace`, which must stay fast, and on in `.ci/run`'s
/// separate heavy step (`FUTE_HEAVY=1 cargo test --workspace heavy_`). When off,
/// prints why `what` is skipped.
pub fn heavy(what: &str) -> bool {
    if std::env::var(HEAVY_ENV).as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipping heavy check `{what}`: set {HEAVY_ENV}=1 to run it");
    false
}
