//! `fute demo`: one command from a fresh machine to a result on real assets.

use crate::Context;
use clap::Args;

/// Options of the demo.
#[derive(Args)]
pub struct DemoArgs {
    /// Also fetch the opt-in BIG-bench tasks (342 MB).
    #[arg(long)]
    bigbench: bool,
}

/// Fetches the real assets, then shows what fute can work with.
pub fn run(ctx: &Context, args: DemoArgs) -> anyhow::Result<()> {
    eprintln!("== 1/3 fetching the real assets (package registries only; cached by checksum)");
    let names: Vec<String> = if args.bigbench {
        vec!["bigbench".into()]
    } else {
        Vec::new()
    };
    super::assets::fetch(ctx, &names, true, false)?;
    eprintln!("== 2/3 importing and validating every packaged dataset");
    super::data::list(ctx, false)?;
    eprintln!("== 3/3 building the unlabelled corpus U (1,000 inputs per source, seed 42)");
    let spec = fute_core::corpus::CorpusSpec::default();
    super::corpus::build(ctx, "demo-u", &spec, true, false)?;
    Ok(())
}
