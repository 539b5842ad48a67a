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

/// `--normalize MEAN STD`: per-channel comma-separated lists (e.g. `0.1307 0.3081`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NormalizeArg {
    /// Prepend (x - MEAN) / STD to the model (per channel, comma-separated lists), for models
    /// exported without their input normalisation (COLT's), so that inputs and eps stay in
    /// pixel units.
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"], allow_negative_numbers = true)]
    pub normalize: Option<Vec<String>>,
}

impl NormalizeArg {
    /// The parsed (mean, std) lists, if given.
    pub fn parse(&self) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let list = |text: &str, what: &str| -> Result<Vec<f32>> {
            text.split(',')
                .map(|v| v.trim().parse::<f32>().map_err(|_| Error::input(format!("--normalize: {what} '{text}' is not a comma-separated list of numbers"))))
                .collect()
        };
        match self.normalize.as_deref() {
            Some([mean, std]) => Ok(Some((list(mean, "MEAN")?, list(std, "STD")?))),
            Some(_) => Err(Error::input("--normalize takes two values: MEAN STD")),
            None => Ok(None),
        }
    }

    /// Loads the model and prepends the normalisation when one was given.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Network> {
        let net = load_model(path, device)?;
        match self.parse()? {
            Some((mean, std)) => net.with_normalize(&mean, &std).map_err(|e| Error::file(path, e)),
            None => Ok(net),
        }
    }
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

/// `--timeout SECONDS` as a duration (`default` when absent); it must be positive.
pub fn timeout(secs: Option<f64>, default: std::time::Duration) -> Result<std::time::Duration> {
    match secs {
        None => Ok(default),
        Some(t) if t.is_finite() && t > 0.0 => Ok(std::time::Duration::from_secs_f64(t)),
        Some(t) => Err(Error::input(format!("--timeout must be a positive number of seconds, got {t}"))),
    }
}
