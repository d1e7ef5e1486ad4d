//! Records the git commit fute is built from (`FUTE_GIT_COMMIT`, shown in run reports).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // No "-dirty" mark: the build script reruns only when HEAD moves, so it could not
    // keep such a mark true; the report says "HEAD at build".
    println!("cargo:rustc-env=FUTE_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: the HEAD file (branch switches) and the branch's ref (commits).
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(name) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(r) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={r}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
