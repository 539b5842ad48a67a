//! Helpers shared by the commands: model loading, progress bars, JSON output.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ironbound::error::{Error, Result};
use ironbound::net::Network;
use ironbound::tensor::Device;
use std::io::IsTerminal;
use std::path::Path;

pub fn load_model(path: &Path, device: &Device) -> Result<Network> {
    ironbound::io::load_model(path, device)
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

/// Writes pretty JSON atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(Error::internal)?;
    ironbound::io::atomic::write_bytes(path, format!("{text}\n").as_bytes())
}

/// Refuses to start when the output's directory cannot hold it (before any long work).
pub fn check_output(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::input(format!("{}: is a directory, expected a file path", path.display())));
    }
    Ok(())
}
