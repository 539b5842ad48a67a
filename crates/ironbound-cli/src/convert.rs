//! `ironbound convert`: a PyTorch checkpoint into a named architecture, saved as a model file.

use crate::common;
use clap::Parser;
use ironbound::data::DatasetName;
use ironbound::error::{Error, Result};
use ironbound::io::torch::{self, Normalization};
use ironbound::io::ModelFormat;
use ironbound::tensor::default_device;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// PyTorch checkpoint (.pt/.pth): a state dict or a dict holding one, zip or legacy format.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Architecture name (`ironbound init --arch list` prints them).
    #[arg(long)]
    arch: String,
    /// Prepend (x - MEAN) / STD, per channel (comma-separated lists); replaces a normalisation
    /// stored in the checkpoint.
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"], allow_negative_numbers = true)]
    normalize: Option<Vec<String>>,
    /// Dataset whose input shape the model takes (default: 1x28x28 or 3x32x32, whichever fits).
    #[arg(long)]
    dataset: Option<String>,
    /// Output model (.onnx or .safetensors).
    #[arg(long)]
    out: PathBuf,
}

/// "0.4914,0.4822,0.4465" as numbers.
fn parse_list(text: &str, what: &str) -> Result<Vec<f32>> {
    text.split(',')
        .map(|v| v.trim().parse::<f32>().map_err(|_| Error::input(format!("--normalize: {what} '{text}' is not a comma-separated list of numbers"))))
        .collect()
}

pub fn run(a: Args) -> Result<()> {
    ModelFormat::of(&a.out)?;
    common::check_output(&a.out)?;
    let normalize = match a.normalize.as_deref() {
        Some([mean, std]) => Some(Normalization { mean: parse_list(mean, "MEAN")?, std: parse_list(std, "STD")? }),
        Some(_) => return Err(Error::input("--normalize takes two values: MEAN STD")),
        None => None,
    };
    let input_shape = a.dataset.as_deref().map(|d| d.parse::<DatasetName>().map(|d| d.input_shape())).transpose()?;
    let net = torch::load_network(&a.checkpoint, &a.arch, input_shape, normalize.as_ref(), &default_device())?;
    ironbound::io::save_model(&net, &a.out)
}
