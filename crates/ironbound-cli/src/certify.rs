//! `ironbound certify`: clean, certified and PGD accuracy on a dataset split.

use crate::common;
use clap::Parser;
use ironbound::bounds::parse_methods;
use ironbound::data::{self, DataOptions, DatasetName, Split};
use ironbound::error::{Error, Result};
use ironbound::tensor::default_device;
use ironbound::verify::{certify, CertifyConfig, PgdConfig};
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// Model file (.onnx or .safetensors).
    #[arg(long)]
    model: PathBuf,
    /// mnist, fashion-mnist, cifar10 or svhn.
    #[arg(long)]
    dataset: String,
    #[arg(long, default_value = "test")]
    split: String,
    /// Radius of the l-infinity ball (in [0, 1] pixel units, before any normalisation).
    #[arg(long, allow_negative_numbers = true)]
    eps: f64,
    /// Comma-separated relaxations.
    #[arg(long)]
    method: String,
    /// Evaluate the first N samples (all when omitted).
    #[arg(long)]
    n: Option<usize>,
    /// Also run PGD with this many steps (step eps/4, random start).
    #[arg(long)]
    pgd: Option<usize>,
    /// PGD restarts.
    #[arg(long, default_value_t = 1)]
    pgd_restarts: usize,
    /// Directory searched first for the dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Do not intersect the ball with the pixel range [0, 1].
    #[arg(long)]
    no_clip: bool,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Output report.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let methods = parse_methods(&a.method)?;
    if methods.is_empty() {
        return Err(Error::input("--method needs at least one relaxation"));
    }
    let name: DatasetName = a.dataset.parse()?;
    let split: Split = a.split.parse()?;
    ironbound::verify::certify::check_eps(a.eps)?;
    common::check_output(&a.out)?;
    let device = default_device();
    let net = common::load_model(&a.model, &device)?;
    if net.input_shape() != name.input_shape() {
        return Err(Error::input(format!(
            "{}: model input {:?} does not match {name} images {:?}",
            a.model.display(),
            net.input_shape(),
            name.input_shape()
        )));
    }
    let mut ds = data::load(name, split, &DataOptions { data_dir: a.data_dir.clone(), ..Default::default() })?;
    if let Some(n) = a.n {
        ds.truncate(n);
    }
    let labels: Vec<usize> = ds.labels.iter().map(|&l| l as usize).collect();
    let cfg = CertifyConfig {
        eps: a.eps,
        methods,
        batch_size: a.batch_size,
        pgd: a.pgd.map(|steps| PgdConfig { restarts: a.pgd_restarts, ..PgdConfig::new(steps) }),
        clip: (!a.no_clip).then_some((0.0, 1.0)),
    };
    let bar = common::progress(labels.len(), "certify");
    let (report, _) = certify(&net, &ds.images, &labels, &cfg, &device, &mut |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    common::write_json(&a.out, &report)?;
    eprintln!(
        "n={} eps={} clean={:.4} certified={} {}",
        report.n,
        report.eps,
        report.clean_accuracy,
        report.certified_accuracy.iter().map(|(k, v)| format!("{k}:{v:.4}")).collect::<Vec<_>>().join(" "),
        report.pgd_accuracy.map(|p| format!("pgd={p:.4}")).unwrap_or_default()
    );
    Ok(())
}
