//! Running the registries' own clients (`pip`, `npm`, `apt-get`, `dpkg-deb`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::catalogue::{AssetSpec, Source};
use crate::{Error, Result};

/// Finds programs on a search path (`$PATH` unless overridden).
#[derive(Debug, Clone, Default)]
pub(crate) struct Programs {
    /// Replaces `$PATH` for the look-up when set.
    pub search_path: Option<OsString>,
}

impl Programs {
    /// The first executable called `name` on the search path.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        let path = match &self.search_path {
            Some(path) => path.clone(),
            None => std::env::var_os("PATH")?,
        };
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    }

    /// Like [`Programs::find`], but a missing program is a one-line
    /// [`Error::Tool`] naming the asset, the program and the fix.
    pub fn require(&self, spec: &AssetSpec, names: &[&str], purpose: &str) -> Result<PathBuf> {
        names
            .iter()
            .find_map(|name| self.find(name))
            .ok_or_else(|| {
                Error::Tool(format!(
                    "{}: `{}` is not on PATH (needed to {purpose}); {}, or fetch another way: put the verified archive `{}` (sha256 {}) into the asset cache's archives/ folder",
                    spec.name,
                    names[0],
                    install_hint(names[0]),
                    spec.archive.file,
                    spec.archive.sha256,
                ))
            })
    }
}

fn install_hint(program: &str) -> &'static str {
    match program {
        "pip" => "install pip (Debian: python3-pip)",
        "npm" => "install npm (Debian: npm, or Node.js)",
        "apt-get" => "use a Debian or Ubuntu machine (apt-get)",
        "dpkg-deb" => "install dpkg (Debian: dpkg)",
        _ => "install it",
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// The command line that fetches `spec` into `dir`, for messages and progress.
pub(crate) fn describe(spec: &AssetSpec) -> String {
    let mut words: Vec<String> = client_args(&spec.source)
        .into_iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    words.insert(0, spec.source.client().to_owned());
    words.join(" ")
}

/// Arguments after the program name (the destination is added at run time).
fn client_args(source: &Source) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    match source {
        Source::Pypi { pip_args, .. } => {
            for a in [
                "download",
                "--no-deps",
                "--no-input",
                "--disable-pip-version-check",
            ] {
                args.push(a.into());
            }
            args.extend(pip_args.iter().map(OsString::from));
        }
        Source::Npm { .. } => args.push("pack".into()),
        Source::Debian { .. } => args.push("download".into()),
    }
    args.push(source.requirement().into());
    args
}

/// Downloads `spec`'s archive into the empty folder `dir` with the registry's
/// client and returns the path of the file it wrote.
pub(crate) fn download(spec: &AssetSpec, programs: &Programs, dir: &Path) -> Result<PathBuf> {
    let purpose = format!("run `{}`", describe(spec));
    let mut cmd = match spec.source {
        Source::Pypi { .. } => {
            let pip = programs.require(spec, &["pip", "pip3"], &purpose)?;
            let mut cmd = Command::new(pip);
            cmd.args(client_args(&spec.source));
            cmd.arg("--dest").arg(dir);
            cmd
        }
        Source::Npm { .. } => {
            let npm = programs.require(spec, &["npm"], &purpose)?;
            let mut cmd = Command::new(npm);
            cmd.args(client_args(&spec.source));
            cmd.arg("--pack-destination").arg(dir);
            cmd.args(["--silent", "--no-fund", "--no-audit"]);
            cmd
        }
        Source::Debian { .. } => {
            let apt = programs.require(spec, &["apt-get"], &purpose)?;
            let mut cmd = Command::new(apt);
            cmd.args(client_args(&spec.source));
            cmd
        }
    };
    cmd.current_dir(dir);
    let output = run(&mut cmd, spec)?;
    if !output.status.success() {
        return Err(Error::Tool(format!(
            "{}: `{}` failed ({}): {}; {}",
            spec.name,
            describe(spec),
            output.status,
            last_line(&output),
            failure_hint(&spec.source)
        )));
    }
    find_archive(spec, dir)
}

fn failure_hint(source: &Source) -> &'static str {
    match source {
        Source::Pypi { .. } => "check that PyPI is reachable (pip's index and proxy settings)",
        Source::Npm { .. } => "check that the npm registry is reachable (npm config get registry)",
        Source::Debian { .. } => {
            "run `apt-get update` so apt knows this version, and check that the Debian mirror is reachable"
        }
    }
}

fn run(cmd: &mut Command, spec: &AssetSpec) -> Result<Output> {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::Tool(format!(
                "{}: could not start `{}`: {e}",
                spec.name,
                cmd.get_program().to_string_lossy()
            ))
        })
}

/// The last non-empty line of stderr (else stdout), for one-line errors.
fn last_line(output: &Output) -> String {
    [&output.stderr, &output.stdout]
        .into_iter()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .find_map(|text| {
            text.lines()
                .rev()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "no output".to_owned())
}

/// The archive the client wrote: the expected name, else the only file there.
fn find_archive(spec: &AssetSpec, dir: &Path) -> Result<PathBuf> {
    let expected = dir.join(spec.archive.file);
    if expected.is_file() {
        return Ok(expected);
    }
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    match files.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(Error::Tool(format!(
            "{}: `{}` succeeded but left {} files instead of `{}`; {}",
            spec.name,
            describe(spec),
            files.len(),
            spec.archive.file,
            failure_hint(&spec.source)
        ))),
    }
}

/// Starts `dpkg-deb --fsys-tarfile FILE`, whose stdout is the package's file system as a tar.
pub(crate) fn deb_fsys_tar(
    spec: &AssetSpec,
    programs: &Programs,
    deb: &Path,
) -> Result<std::process::Child> {
    let dpkg = programs.require(spec, &["dpkg-deb"], "unpack a Debian package")?;
    Command::new(&dpkg)
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Tool(format!(
                "{}: could not start `{}`: {e}",
                spec.name,
                dpkg.display()
            ))
        })
}
