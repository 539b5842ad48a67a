//! `ironbound certify`: clean, certified and PGD accuracy on a dataset split.

use crate::common;
use clap::Parser;
use ironbound::data::{self, DataOptions, DatasetName, Split};
use ironbound::error::{Error, Result};
use ironbound::tensor::default_device;
use ironbound::verify::certify::DEFAULT_TIMEOUT;
use ironbound::verify::certify::certify_shard;
use ironbound::verify::{parse_cert_methods, CertMethod, CertifyConfig, PgdConfig, Shard};
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
    /// Comma-separated methods: relaxations (ibp, crown, ...), lp-triangle, lp-parallelogram,
    /// milp (complete), colt (COLT's cascade), milp-last-layer, milp-partial[-K].
    #[arg(long, required_unless_present = "cascade")]
    method: Option<String>,
    /// Try these methods in order per sample and stop at the first that decides it (reported
    /// as one more method, `cascade:A>B>...`, with per-stage counts).
    #[arg(long)]
    cascade: Option<String>,
    /// Per-sample time budget in seconds of the solver-based methods (MILP, LP tightening);
    /// a sample that runs out counts as not certified (`timed_out` in the report).
    #[arg(long, allow_negative_numbers = true)]
    timeout: Option<f64>,
    /// Evaluate the first N samples (all when omitted).
    #[arg(long)]
    n: Option<usize>,
    /// Evaluate only the I-th of N contiguous, nearly equal slices of those samples (1-based);
    /// `ironbound merge` combines the N reports into the unsharded one.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
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
    /// Seed of the random slopes of one-step and random-slope (sample i's come from (S, i),
    /// whatever the batch size or shard).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Plain float32 bounds instead of float-sound ones (faster; the report says
    /// "sound": false).
    #[arg(long)]
    fast: bool,
    #[command(flatten)]
    normalize: common::NormalizeArg,
    /// Output report.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let mut methods = parse_cert_methods(a.method.as_deref().unwrap_or(""))?;
    if let Some(list) = &a.cascade {
        methods.push(CertMethod::cascade(list)?);
    }
    if methods.is_empty() {
        return Err(Error::input("--method needs at least one method"));
    }
    let timeout = common::timeout(a.timeout, DEFAULT_TIMEOUT)?;
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let name: DatasetName = a.dataset.parse()?;
    let split: Split = a.split.parse()?;
    ironbound::verify::certify::check_eps(a.eps)?;
    common::check_output(&a.out)?;
    let device = default_device();
    let net = a.normalize.load(&a.model, &device)?;
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
        timeout,
        seed: a.seed,
        sound: !a.fast,
    };
    let selected = match shard {
        Some(s) => s.checked_range(labels.len(), "samples")?.len(),
        None => labels.len(),
    };
    let bar = common::progress(selected, "certify");
    let (report, _) = certify_shard(&net, &ds.images, &labels, shard, &cfg, &device, &mut |done| {
        bar.set_position(done as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    common::write_json(&a.out, &report)?;
    eprintln!(
        "{}n={} eps={} clean={:.4} certified={} {}",
        report.shard.as_ref().map(|s| format!("shard {}/{} (samples {}..{} of {}): ", s.index, s.count, s.start, s.end, s.total)).unwrap_or_default(),
        report.n,
        report.eps,
        report.clean_accuracy,
        report.certified_accuracy.iter().map(|(k, v)| format!("{k}:{v:.4}")).collect::<Vec<_>>().join(" "),
        report.pgd_accuracy.map(|p| format!("pgd={p:.4}")).unwrap_or_default()
    );
    Ok(())
}
