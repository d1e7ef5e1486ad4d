//! `fute doctor`: checks the workspace's state and repairs what is safe.

use super::{print_json, user};
use crate::Context;
use clap::Args;
use fute_core::doctor::examine;

/// Flags of `fute doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Make the safe fixes: remove leftovers of interrupted writes and orphan vector files,
    /// drop catalogue rows whose vector is missing or damaged, drop unreadable cache lines.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `fute doctor`; exits 1 while problems remain.
pub fn run(ctx: &Context, args: DoctorArgs) -> anyhow::Result<()> {
    let report = examine(&ctx.workspace, args.repair)?;
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "checked {}: {} catalogue rows, {} vector files, {} LLM caches, {} datasets and corpora",
            ctx.workspace.state_dir().display(),
            report.rows,
            report.vector_files,
            report.caches,
            report.datasets_and_corpora
        );
        for f in &report.findings {
            let state = if f.repaired { "repaired" } else { "problem" };
            println!(
                "{state}: {}\n  {}\n  fix: {}",
                f.path.display(),
                f.problem,
                f.fix
            );
        }
    }
    let open = report.open_problems();
    if open == 0 {
        if !args.json {
            println!(
                "{}",
                if report.findings.is_empty() {
                    "no problems found"
                } else {
                    "every problem found was repaired"
                }
            );
        }
        return Ok(());
    }
    let safe = report
        .findings
        .iter()
        .filter(|f| !f.repaired && f.safe)
        .count();
    Err(user(if safe > 0 && !args.repair {
        format!("{open} problem(s) in the workspace; `fute doctor --repair` fixes {safe} of them")
    } else {
        format!("{open} problem(s) in the workspace need a fix by hand (see above)")
    }))
}
