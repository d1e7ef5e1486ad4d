//! Where the asset cache lives.

use std::path::PathBuf;

/// Environment variable that overrides the asset cache folder.
pub const ASSETS_ENV: &str = "FUTE_ASSETS";

/// The asset cache folder: `$FUTE_ASSETS`, else `$XDG_CACHE_HOME/fute/assets`,
/// else `$HOME/.cache/fute/assets`, else `./.fute-assets`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("fute").join("assets");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home)
            .join(".cache")
            .join("fute")
            .join("assets");
    }
    PathBuf::from(".fute-assets")
}
