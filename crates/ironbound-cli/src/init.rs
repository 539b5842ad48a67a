//! `ironbound init`: a named architecture with seeded random weights, saved as a model file.

use clap::Parser;
use ironbound::data::DatasetName;
use ironbound::error::Result;
use ironbound::net::arch;
use ironbound::tensor::default_device;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// Architecture name (`ironbound init --arch list` prints them).
    #[arg(long)]
    arch: String,
    /// Dataset whose input shape the model takes.
    #[arg(long, default_value = "fashion-mnist")]
    dataset: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output model (.safetensors or .onnx); default model.safetensors.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the architectures and exit.
    #[arg(long)]
    list: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.list || a.arch == "list" {
        for (name, desc) in arch::list() {
            println!("{name:<12} {desc}");
        }
        return Ok(());
    }
    let dataset: DatasetName = a.dataset.parse()?;
    let spec = arch::named(&a.arch, dataset.input_shape())?;
    let net = spec.init(a.seed, &default_device())?;
    let out = a.out.unwrap_or_else(|| PathBuf::from("model.safetensors"));
    ironbound::io::save_model(&net, &out)
}
