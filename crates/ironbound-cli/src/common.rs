//! Helpers shared by the commands: model loading, progress bars, JSON output.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ironbound::data::{self, DataOptions, Dataset, DatasetName, Split};
use ironbound::error::{Error, Result};
use ironbound::net::Network;
use ironbound::tensor::Device;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

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

/// A model evaluated on the first N samples of a dataset split (certify, analyze).
#[derive(clap::Args, Clone, Debug)]
pub struct ModelData {
    /// Model file (.onnx or .safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// mnist, fashion-mnist, cifar10 or svhn.
    #[arg(long)]
    pub dataset: String,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Evaluate the first N samples (all when omitted).
    #[arg(long)]
    pub n: Option<usize>,
    /// Directory searched first for the dataset.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Do not intersect the ball with the pixel range [0, 1].
    #[arg(long)]
    pub no_clip: bool,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    #[command(flatten)]
    pub normalize: NormalizeArg,
}

impl ModelData {
    /// The input domain the balls are intersected with.
    pub fn clip(&self) -> Option<(f64, f64)> {
        (!self.no_clip).then_some((0.0, 1.0))
    }

    /// Loads the model and the first N samples, checking that they fit each other (the model
    /// first: a mismatch is reported without looking for the dataset).
    pub fn load(&self, device: &Device) -> Result<(Network, Dataset)> {
        let name: DatasetName = self.dataset.parse()?;
        let net = load_for(&self.model, &self.normalize, name, device)?;
        Ok((net, load_dataset(name, &self.split, self.data_dir.as_deref(), self.n)?))
    }
}

/// The first `n` samples (all when `None`) of a dataset split.
pub fn load_dataset(name: DatasetName, split: &str, data_dir: Option<&Path>, n: Option<usize>) -> Result<Dataset> {
    let split: Split = split.parse()?;
    if n == Some(0) {
        return Err(Error::input("--n must be at least 1"));
    }
    let mut ds = data::load(name, split, &DataOptions { data_dir: data_dir.map(Path::to_path_buf), ..Default::default() })?;
    if let Some(n) = n {
        ds.truncate(n);
    }
    Ok(ds)
}

/// Loads a model (with `--normalize`) and checks that it takes the dataset's images.
pub fn load_for(path: &Path, normalize: &NormalizeArg, name: DatasetName, device: &Device) -> Result<Network> {
    let net = normalize.load(path, device)?;
    if net.input_shape() != name.input_shape() {
        return Err(Error::input(format!("{}: model input {:?} does not match {name} images {:?}", path.display(), net.input_shape(), name.input_shape())));
    }
    Ok(net)
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

/// Refuses an output directory path that is an existing file.
pub fn check_output_dir(path: &Path) -> Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(Error::input(format!("{}: exists and is not a directory", path.display())));
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
