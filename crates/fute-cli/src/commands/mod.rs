//! One module per sub-command.

pub mod assets;
pub mod bench;
pub mod corpus;
pub mod data;
pub mod demo;
pub mod doctor;
pub mod embed;
pub mod llm;
pub mod map;
pub mod predict;
pub mod prompts;
pub mod store;
pub mod train;
pub mod transfer;
pub mod transfer_scores;

/// An error in what the user asked for, raised by the CLI itself (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Shorthand for a [`UserError`] as `anyhow::Error`.
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    UserError(msg.into()).into()
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A spinner on stderr for work that may take more than a second; hidden when stderr is not a terminal.
pub fn spinner(msg: impl Into<String>) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("valid template"),
    );
    pb.set_message(msg.into());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// A progress bar on stderr (position/length set by the caller); hidden when stderr is not a terminal.
pub fn progress_bar(msg: impl Into<String>) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(msg.into());
    pb
}
