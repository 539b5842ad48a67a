//! `ironbound analyze`: measurements of relaxations and models, each writing CSV/JSON and a
//! figure into `--out DIR`.

use crate::common;
use clap::{Parser, Subcommand};
use ironbound::analyze::plot::{LineChart, Series};
use ironbound::analyze::scan::{self, Direction, Scan, ScanConfig};
use ironbound::analyze::tightness::{self, TightnessConfig};
use ironbound::bounds::relaxation::parse_methods;
use ironbound::error::{Error, Result};
use ironbound::io::atomic::write_bytes;
use ironbound::tensor::{default_device, from_vec, Device};
use ironbound::verify::certify::DEFAULT_TIMEOUT;
use ironbound::verify::parse_cert_methods;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    #[command(subcommand)]
    command: Analysis,
}

#[derive(Subcommand)]
enum Analysis {
    /// Certified-robustness curves and CR-AUC of relaxations (paradox Section 3).
    Tightness(TightnessArgs),
    /// Output lower bounds and robust loss along a path of the first layer's weights, and
    /// their discontinuities (paradox Section 4, Figures 3-4).
    Scan(ScanArgs),
    /// Every model certified with every method: the cross-certification matrix (paradox
    /// Table 7).
    Cross(CrossArgs),
    /// Distributions of tightness and robust loss over the samples for several models and
    /// relaxations, as violins (loss-landscape Figure 4).
    Violin(ViolinArgs),
    /// Mode connectivity: trains a quadratic Bezier curve between two models of the same
    /// architecture and measures loss, clean and certified accuracy along it and along the
    /// straight line (loss-landscape Appendix I).
    Connectivity(ConnectivityArgs),
    /// The loss-landscape measurements of training runs (`landscape_every`) side by side:
    /// loss variation, gradient cosine and difference, unstable ReLUs (loss-landscape
    /// Figures 1, 2 and 10).
    Landscape(LandscapeArgs),
}

#[derive(Parser)]
struct LandscapeArgs {
    /// Comma-separated training run directories (each with a metrics.jsonl).
    #[arg(long)]
    runs: String,
    /// Comma-separated run names (default: the directory names).
    #[arg(long)]
    names: Option<String>,
    /// Output directory: landscape.csv, summary.json, landscape_{variation,loss,cosine,grad_diff,unstable,curves}.png/.svg.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Parser)]
struct ConnectivityArgs {
    /// The model at t = 0.
    #[arg(long)]
    model_a: PathBuf,
    /// The model at t = 1 (the same architecture as A).
    #[arg(long)]
    model_b: PathBuf,
    /// Names of A and B for the files and figures, comma-separated (default: the file names
    /// without extension).
    #[arg(long)]
    names: Option<String>,
    #[arg(long)]
    dataset: String,
    /// Radius of the robust loss and the certified accuracies.
    #[arg(long, allow_negative_numbers = true)]
    eps: f64,
    /// The loss the curve is trained on and measured with: a training method of `ironbound
    /// train` (ibp, crown-ibp, ..., natural, pgd), kappa 0.
    #[arg(long)]
    method: String,
    /// CROWN-IBP / CAP-IBP mixing weight: (1 - beta) IBP + beta relaxation.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    beta: f64,
    /// Epochs of training for the control point (0: it stays at the midpoint).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Train on the first N samples of the training split (all when omitted).
    #[arg(long)]
    train_n: Option<usize>,
    /// Evenly spaced t in [0, 1] where both paths are measured (both ends included).
    #[arg(long, default_value_t = 11)]
    points: usize,
    /// Measure on the first N samples of the evaluation split (all when omitted).
    #[arg(long)]
    n: Option<usize>,
    #[arg(long, default_value = "test")]
    split: String,
    /// Comma-separated methods of the certified accuracies, as for `ironbound certify`
    /// (default: the method's relaxation, IBP for natural and pgd).
    #[arg(long)]
    certify_method: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Shards of each batch on parallel threads (0: one per core, at most 8).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 500)]
    eval_batch_size: usize,
    /// Output directory: connectivity.csv, connectivity.json, connectivity_loss.png/.svg,
    /// connectivity_accuracy.png/.svg, control.safetensors (the trained C).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Parser)]
struct ViolinArgs {
    /// Comma-separated model files.
    #[arg(long)]
    models: String,
    /// Comma-separated model names (default: the file names without extension).
    #[arg(long)]
    names: Option<String>,
    /// Comma-separated relaxations; every model is measured with each.
    #[arg(long, default_value = "crown-ibp")]
    method: String,
    #[arg(long)]
    dataset: String,
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, allow_negative_numbers = true)]
    eps: f64,
    #[arg(long)]
    n: Option<usize>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[command(flatten)]
    normalize: common::NormalizeArg,
    /// Output directory: violin.csv, summary.json, violin_tightness.png/.svg, violin_loss.png/.svg.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Parser)]
struct CrossArgs {
    /// Comma-separated model files (rows of the matrix).
    #[arg(long)]
    models: String,
    /// Comma-separated row names (default: the file names without extension).
    #[arg(long)]
    names: Option<String>,
    /// mnist, fashion-mnist, cifar10 or svhn.
    #[arg(long)]
    dataset: String,
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, allow_negative_numbers = true)]
    eps: f64,
    /// Comma-separated methods (columns), as for `ironbound certify`.
    #[arg(long, default_value = "ibp,hbox,crown-ibp,deepz,crown")]
    method: String,
    #[arg(long)]
    n: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    timeout: Option<f64>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[command(flatten)]
    normalize: common::NormalizeArg,
    /// Output directory: cross.csv, cross.json, cross.png/.svg.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Parser)]
struct TightnessArgs {
    #[command(flatten)]
    data: common::ModelData,
    /// The largest radius E; the curves use `steps` radii evenly spaced in [0, E].
    #[arg(long, allow_negative_numbers = true)]
    eps_max: f64,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Comma-separated methods, as for `ironbound certify`.
    #[arg(long)]
    method: String,
    /// Per-sample time budget in seconds of the solver-based methods.
    #[arg(long, allow_negative_numbers = true)]
    timeout: Option<f64>,
    /// Evaluate only the I-th of N contiguous slices of the samples; `ironbound merge --out
    /// DIR SHARD_DIR...` makes the unsharded outputs from the shards' directories.
    #[arg(long)]
    shard: Option<ironbound::verify::shard::Shard>,
    /// Output directory: cr_curve.csv, cr_auc.json, cr_curve.png/.svg, tightness.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Parser)]
struct ScanArgs {
    /// A built-in network instead of --model: `paradox-fig3` (paradox Section 4.1: the
    /// first layer's bias w from -2 to 2, input [-1, 1]).
    #[arg(long, conflicts_with_all = ["model", "dataset"])]
    example: Option<String>,
    /// Model file (.onnx or .safetensors).
    #[arg(long, required_unless_present = "example")]
    model: Option<PathBuf>,
    /// The dataset whose sample is scanned.
    #[arg(long, required_unless_present = "example")]
    dataset: Option<String>,
    #[arg(long, default_value = "test")]
    split: String,
    /// Which sample of the split.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Radius of the ball around the sample (the example's input box is [-1, 1]).
    #[arg(long, allow_negative_numbers = true)]
    eps: Option<f64>,
    /// Comma-separated relaxations.
    #[arg(long, default_value = "ibp,hbox,deepz,crown,crown-ibp")]
    method: String,
    /// `gradient` (of the real network's output --output at the sample, unit norm),
    /// `random` (seeded, unit norm), or an .npz file with `weight` and `bias` of the first
    /// affine layer.
    #[arg(long, default_value = "gradient")]
    direction: String,
    /// The output whose lower bound is plotted (and whose gradient is the direction);
    /// default: the sample's label.
    #[arg(long)]
    output: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    from: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    to: Option<f64>,
    #[arg(long, default_value_t = 501)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory searched first for the dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    normalize: common::NormalizeArg,
    /// Output directory: scan.csv, jumps.json, scan_lower_J.png/.svg, scan_loss.png/.svg.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Analysis::Tightness(t) => run_tightness(t),
        Analysis::Scan(s) => run_scan(s),
        Analysis::Cross(c) => run_cross(c),
        Analysis::Violin(v) => run_violin(v),
        Analysis::Connectivity(c) => run_connectivity(c),
        Analysis::Landscape(l) => run_landscape(l),
    }
}

fn run_landscape(a: LandscapeArgs) -> Result<()> {
    use ironbound::analyze::landscape::{self, Run};
    let dirs: Vec<PathBuf> = a.runs.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    if dirs.is_empty() {
        return Err(Error::input("--runs: give at least one run directory"));
    }
    let names: Vec<String> = match &a.names {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => dirs.iter().map(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()).collect(),
    };
    if names.len() != dirs.len() {
        return Err(Error::input(format!("--names has {} names for {} runs", names.len(), dirs.len())));
    }
    common::check_output_dir(&a.out)?;
    ironbound::analyze::plot::ensure_font()?;
    let runs = dirs.iter().zip(&names).map(|(d, n)| Run::load(d, n)).collect::<Result<Vec<_>>>()?;
    landscape::write(&a.out, &runs)?;
    for s in runs.iter().map(Run::summary) {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
        eprintln!(
            "{}: {} ramp-up epochs: loss variation {}, gradient cosine {}, unstable ReLUs {}, corr(unstable, cosine) {}",
            s.name,
            s.rampup_epochs,
            f(s.loss_variation),
            f(s.grad_cosine),
            f(s.unstable_ratio),
            f(s.corr_unstable_cosine)
        );
    }
    Ok(())
}

fn run_connectivity(a: ConnectivityArgs) -> Result<()> {
    use ironbound::analyze::connectivity::{self as mc, CurveConfig, CurvePath};
    use ironbound::train::TrainMethod;
    let method: TrainMethod = a.method.parse().map_err(|e: Error| Error::input(format!("--method: {e}")))?;
    let stem = |p: &std::path::Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (name_a, name_b) = match a.names.as_deref().map(|l| l.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()) {
        Some(v) if v.len() == 2 => (v[0].clone(), v[1].clone()),
        Some(v) => return Err(Error::input(format!("--names has {} names; give two, for A and B", v.len()))),
        None => (stem(&a.model_a), stem(&a.model_b)),
    };
    ironbound::verify::certify::check_eps(a.eps)?;
    let ts = mc::points(a.points)?;
    if !(0.0..=1.0).contains(&a.beta) {
        return Err(Error::input(format!("--beta must lie in [0, 1], got {}", a.beta)));
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(Error::input(format!("--lr must be > 0, got {}", a.lr)));
    }
    for (flag, v) in [("--batch-size", Some(a.batch_size)), ("--eval-batch-size", Some(a.eval_batch_size)), ("--train-n", a.train_n), ("--n", a.n)] {
        if v == Some(0) {
            return Err(Error::input(format!("{flag} must be at least 1")));
        }
    }
    let certify = match &a.certify_method {
        Some(list) => parse_cert_methods(list)?,
        None => vec![ironbound::verify::CertMethod::Bound(match method {
            TrainMethod::Bound(m) => m,
            TrainMethod::Natural | TrainMethod::Pgd => ironbound::bounds::Method::Ibp,
            TrainMethod::Colt => ironbound::bounds::Method::Deepz,
        })],
    };
    if certify.is_empty() {
        return Err(Error::input("--certify-method: the method list is empty; give at least one method"));
    }
    common::check_output_dir(&a.out)?;
    ironbound::analyze::plot::ensure_font()?;
    let device = default_device();
    let name: ironbound::data::DatasetName = a.dataset.parse()?;
    let no_norm = common::NormalizeArg::default();
    let model_a = common::load_for(&a.model_a, &no_norm, name, &device)?;
    let model_b = common::load_for(&a.model_b, &no_norm, name, &device)?;
    mc::check_same_architecture(&model_a, &model_b)?;
    let train = common::load_dataset(name, "train", a.data_dir.as_deref(), a.train_n)?;
    let test = common::load_dataset(name, &a.split, a.data_dir.as_deref(), a.n)?;
    let labels: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |p| p.get()).min(8),
        t => t,
    };
    let cfg = CurveConfig { method, eps: a.eps, beta: a.beta, epochs: a.epochs, lr: a.lr, batch_size: a.batch_size, seed: a.seed, threads, points: a.points, certify, eval_batch_size: a.eval_batch_size };
    let start = std::time::Instant::now();
    let bar = common::progress(a.epochs * train.len().div_ceil(a.batch_size.min(train.len().max(1))), "train curve");
    let (control, train_loss) = mc::train_control(&model_a, &model_b, &train, &cfg, &device, &mut |done, total, loss| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("train curve loss {loss:.4}"));
    })?;
    bar.finish_and_clear();
    // The line's ends are A and B, the curve's too: measured once, shared by both paths.
    let bar = common::progress(2 * ts.len() - 2, "measure paths");
    let (mut curve, mut straight) = (Vec::new(), Vec::new());
    for (i, &t) in ts.iter().enumerate() {
        let on_curve = mc::evaluate(&mc::bezier(&model_a, &control, &model_b, t), &test.images, &labels, t, &cfg, &device)?;
        bar.inc(1);
        let on_line = if i == 0 || i + 1 == ts.len() {
            on_curve.clone()
        } else {
            bar.inc(1);
            mc::evaluate(&mc::line(&model_a, &model_b, t), &test.images, &labels, t, &cfg, &device)?
        };
        curve.push(on_curve);
        straight.push(on_line);
    }
    bar.finish_and_clear();
    let result = mc::Connectivity {
        model_a: name_a,
        model_b: name_b,
        method: method.name().to_string(),
        eps: a.eps,
        beta: a.beta,
        epochs: a.epochs,
        lr: a.lr,
        batch_size: a.batch_size,
        train_n: train.len(),
        seed: a.seed,
        n: labels.len(),
        certify_methods: cfg.certify.iter().map(|m| m.name()).collect(),
        train_loss,
        paths: vec![CurvePath::new("bezier", curve), CurvePath::new("line", straight)],
        seconds: start.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(&a.out).map_err(|e| Error::file(&a.out, format!("cannot create the output directory: {e}")))?;
    ironbound::io::save_model(&control, &a.out.join("control.safetensors"))?;
    result.write(&a.out, &format!("A = {}, B = {}, {} (n = {})", result.model_a, result.model_b, a.dataset, labels.len()))?;
    eprintln!(
        "loss barrier: bezier {:.4}, line {:.4}; files in {}",
        result.paths[0].loss_barrier,
        result.paths[1].loss_barrier,
        a.out.display()
    );
    Ok(())
}

/// Model files and their names from `--models` / `--names`.
fn model_list(models: &str, names: Option<&str>) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let paths: Vec<PathBuf> = models.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    if paths.is_empty() {
        return Err(Error::input("--models: give at least one model file"));
    }
    let names: Vec<String> = match names {
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        None => paths.iter().map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()).collect(),
    };
    if names.len() != paths.len() {
        return Err(Error::input(format!("--names has {} names for {} models", names.len(), paths.len())));
    }
    Ok((paths, names))
}

fn run_violin(a: ViolinArgs) -> Result<()> {
    use ironbound::analyze::violin::{self, Group};
    let methods = parse_methods(&a.method)?;
    if methods.is_empty() {
        return Err(Error::input("--method: the method list is empty; give at least one method"));
    }
    let (paths, names) = model_list(&a.models, a.names.as_deref())?;
    ironbound::verify::certify::check_eps(a.eps)?;
    common::check_output_dir(&a.out)?;
    ironbound::analyze::plot::ensure_font()?;
    let device = default_device();
    let name: ironbound::data::DatasetName = a.dataset.parse()?;
    let nets = paths.iter().map(|p| common::load_for(p, &a.normalize, name, &device)).collect::<Result<Vec<_>>>()?;
    let ds = common::load_dataset(name, &a.split, a.data_dir.as_deref(), a.n)?;
    let labels: Vec<usize> = ds.labels.iter().map(|&l| l as usize).collect();
    let bar = common::progress(nets.len() * methods.len(), "violin");
    let mut groups = Vec::new();
    for (net, model) in nets.iter().zip(&names) {
        for &m in &methods {
            let (tightness, robust_loss) = violin::measure(net, &ds.images, &labels, a.eps, Some((0.0, 1.0)), m, a.batch_size, &device)?;
            groups.push(Group { model: model.clone(), method: m.name().to_string(), tightness, robust_loss });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    violin::write(&a.out, &groups, a.eps)?;
    eprintln!("{} groups of {} samples into {}", groups.len(), labels.len(), a.out.display());
    Ok(())
}

fn run_cross(a: CrossArgs) -> Result<()> {
    use ironbound::analyze::cross::{CrossMatrix, Row};
    let methods = parse_cert_methods(&a.method)?;
    if methods.is_empty() {
        return Err(Error::input("--method: the method list is empty; give at least one method"));
    }
    let (paths, names) = model_list(&a.models, a.names.as_deref())?;
    ironbound::verify::certify::check_eps(a.eps)?;
    common::check_output_dir(&a.out)?;
    ironbound::analyze::plot::ensure_font()?;
    let timeout = common::timeout(a.timeout, DEFAULT_TIMEOUT)?;
    let device = default_device();
    let name: ironbound::data::DatasetName = a.dataset.parse()?;
    // Every model is loaded (and checked) before the first long certification.
    let nets = paths.iter().map(|p| common::load_for(p, &a.normalize, name, &device)).collect::<Result<Vec<_>>>()?;
    let ds = common::load_dataset(name, &a.split, a.data_dir.as_deref(), a.n)?;
    let labels: Vec<usize> = ds.labels.iter().map(|&l| l as usize).collect();
    let cfg = ironbound::verify::CertifyConfig { eps: a.eps, methods: methods.clone(), batch_size: a.batch_size, pgd: None, clip: Some((0.0, 1.0)), timeout, seed: 0, sound: true };
    let bar = common::progress(labels.len() * nets.len(), "cross-certify");
    let mut rows = Vec::new();
    for (i, (net, model)) in nets.iter().zip(&names).enumerate() {
        let (report, _) = ironbound::verify::certify(net, &ds.images, &labels, &cfg, &device, &mut |done| bar.set_position((i * labels.len() + done) as u64))?;
        rows.push(Row { model: model.clone(), clean_accuracy: report.clean_accuracy, certified_accuracy: report.certified_accuracy });
    }
    bar.finish_and_clear();
    let matrix = CrossMatrix { n: labels.len(), eps: a.eps, methods: methods.iter().map(|m| m.name()).collect(), rows };
    matrix.write(&a.out, &format!("certified accuracy (%) on {} (n = {}), eps {}", a.dataset, labels.len(), a.eps))?;
    eprint!("{}", matrix.csv());
    Ok(())
}

/// What a scan runs on: a network, one input, its label, the outputs to plot, the direction,
/// the radius and the default range.
struct ScanSubject {
    net: ironbound::net::Network,
    x: ironbound::tensor::Tensor<4>,
    label: usize,
    outputs: Vec<usize>,
    direction: Direction,
    eps: f64,
    clip: Option<(f64, f64)>,
    range: (f64, f64),
    title: String,
}

fn scan_subject(a: &ScanArgs, device: &Device) -> Result<ScanSubject> {
    if let Some(name) = &a.example {
        if name != "paradox-fig3" {
            return Err(Error::input(format!("--example: unknown example '{name}' (known: paradox-fig3)")));
        }
        let (net, direction) = scan::paradox_fig3(device)?;
        return Ok(ScanSubject {
            net,
            x: from_vec(vec![0.0], [1, 1, 1, 1], device),
            label: 0,
            outputs: vec![0, 1],
            direction,
            eps: a.eps.unwrap_or(1.0),
            clip: None,
            range: (-2.0, 2.0),
            title: "paradox Fig. 3 network, first-layer bias w".into(),
        });
    }
    let (Some(model), Some(dataset)) = (&a.model, &a.dataset) else {
        return Err(Error::input("give --model and --dataset, or --example"));
    };
    let eps = a.eps.ok_or_else(|| Error::input("--eps is required with --model"))?;
    ironbound::verify::certify::check_eps(eps)?;
    let data = common::ModelData {
        model: model.clone(),
        dataset: dataset.clone(),
        split: a.split.clone(),
        n: Some(a.index + 1),
        data_dir: a.data_dir.clone(),
        no_clip: false,
        batch_size: 1,
        normalize: a.normalize.clone(),
    };
    let (net, ds) = data.load(device)?;
    if ds.labels.len() <= a.index {
        return Err(Error::input(format!("--index {}: the {} split has {} samples", a.index, a.split, ds.labels.len())));
    }
    let s = net.input_shape();
    let per: usize = s.iter().product();
    let x = from_vec(ds.images[a.index * per..(a.index + 1) * per].to_vec(), [1, s[0], s[1], s[2]], device);
    let label = ds.labels[a.index] as usize;
    let output = a.output.unwrap_or(label);
    let direction = match a.direction.as_str() {
        "gradient" => Direction::gradient(&net, &x, output)?,
        "random" => Direction::random(&net, a.seed)?,
        file => {
            let path = std::path::Path::new(file);
            let read = |name: &str| ironbound::io::npy::read_f32(path, &[name]).map(|arr| arr.data);
            Direction { weight: read("weight")?, bias: read("bias")? }
        }
    };
    direction.check(&net)?;
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(ScanSubject {
        net,
        x,
        label,
        outputs: vec![output],
        direction,
        eps,
        clip: Some((0.0, 1.0)),
        range: (-1.0, 1.0),
        title: format!("{stem}, {dataset} #{} (label {label}), eps {eps}, direction {}", a.index, a.direction),
    })
}

fn run_scan(a: ScanArgs) -> Result<()> {
    let methods = parse_methods(&a.method)?;
    if methods.is_empty() {
        return Err(Error::input("--method: the method list is empty; give at least one method"));
    }
    common::check_output_dir(&a.out)?;
    ironbound::analyze::plot::ensure_font()?;
    let device = default_device();
    let subject = scan_subject(&a, &device)?;
    let (from, to) = (a.from.unwrap_or(subject.range.0), a.to.unwrap_or(subject.range.1));
    scan::deltas(from, to, a.steps)?;
    if let Some(&bad) = subject.outputs.iter().find(|&&j| j >= subject.net.num_outputs()) {
        return Err(Error::input(format!("--output {bad}: the model has {} outputs", subject.net.num_outputs())));
    }
    let cfg = ScanConfig { methods, from, to, steps: a.steps, eps: subject.eps, clip: subject.clip };
    let bar = common::progress(a.steps, "scan");
    let result = scan::scan(&subject.net, &subject.x, subject.label, &subject.direction, &cfg, &mut |i| bar.set_position(i as u64))?;
    bar.finish_and_clear();
    write_scan(&a.out, &result, &subject)?;
    let jumps = result.jumps();
    eprintln!(
        "{} deltas in [{from}, {to}]; jumps in the plotted bounds: {}",
        a.steps,
        result.methods.iter().map(|m| format!("{m}={}", jumps[m].iter().filter(|j| j.output.is_some_and(|o| subject.outputs.contains(&o))).count())).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}

fn write_scan(dir: &std::path::Path, s: &Scan, subject: &ScanSubject) -> Result<()> {
    let jumps = s.jumps();
    let summary = serde_json::json!({
        "rule": {
            "jump_factor": scan::JUMP_FACTOR,
            "window": scan::WINDOW,
            "floor_relative": scan::FLOOR_REL,
            "meaning": "a step between neighbouring deltas larger than jump_factor times the largest of the window steps on each side, and above floor_relative times max(1, the curve's range)",
        },
        "label": s.label,
        "plotted_outputs": subject.outputs,
        "methods": s.methods.iter().map(|m| {
            let plotted = jumps[m].iter().filter(|j| j.output.is_some_and(|o| subject.outputs.contains(&o))).count();
            (m.clone(), serde_json::json!({
                "jumps_plotted_outputs": plotted,
                "jumps_any_output": jumps[m].iter().filter(|j| j.output.is_some()).count(),
                "jumps_robust_loss": jumps[m].iter().filter(|j| j.output.is_none()).count(),
                "jumps": jumps[m],
            }))
        }).collect::<serde_json::Map<_, _>>(),
    });
    write_bytes(&dir.join("scan.csv"), s.csv().as_bytes())?;
    let text = serde_json::to_string_pretty(&summary).map_err(Error::internal)? + "\n";
    write_bytes(&dir.join("jumps.json"), text.as_bytes())?;
    let curve = |f: &dyn Fn(&str, usize) -> f64| -> Vec<Series> {
        s.methods.iter().map(|m| Series { name: m.clone(), points: s.deltas.iter().enumerate().map(|(i, &d)| (d, f(m, i))).collect() }).collect()
    };
    for &j in &subject.outputs {
        let chart = LineChart {
            title: format!("lower bound of output {j}: {}", subject.title),
            x_label: "delta (shift along the direction)".into(),
            y_label: format!("lower bound of output {j}"),
            series: curve(&|m, i| s.lower[m][i][j] as f64),
            y_range: None,
        };
        chart.write(&dir.join(format!("scan_lower_{j}")))?;
    }
    let chart = LineChart {
        title: format!("robust loss (label {}): {}", s.label, subject.title),
        x_label: "delta (shift along the direction)".into(),
        y_label: "robust cross-entropy".into(),
        series: curve(&|m, i| s.loss[m][i] as f64),
        y_range: None,
    };
    chart.write(&dir.join("scan_loss"))
}

fn run_tightness(a: TightnessArgs) -> Result<()> {
    let methods = parse_cert_methods(&a.method)?;
    if methods.is_empty() {
        return Err(Error::input("--method: the method list is empty; give at least one method"));
    }
    // Checked before the (long) work starts, like every other input.
    tightness::radii(a.eps_max, a.steps)?;
    common::check_output_dir(&a.out)?;
    ironbound::analyze::plot::ensure_font()?;
    let timeout = common::timeout(a.timeout, DEFAULT_TIMEOUT)?;
    let device = default_device();
    let (net, ds) = a.data.load(&device)?;
    let labels: Vec<usize> = ds.labels.iter().map(|&l| l as usize).collect();
    let cfg = TightnessConfig { eps_max: a.eps_max, steps: a.steps, methods, batch_size: a.data.batch_size, clip: a.data.clip(), timeout, shard: a.shard };
    let model = a.data.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // The title names all samples, also in a shard, so merged shards draw the same figure.
    let title = format!("CR curves: {model} on {} (n = {})", a.data.dataset, labels.len());
    let bar = common::progress(labels.len() * a.steps, "tightness");
    let curves = tightness::cr_curves(&net, &ds.images, &labels, &cfg, &title, &device, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    curves.write(&a.out)?;
    let auc = curves.auc();
    eprintln!(
        "n={} eps_max={} steps={} cr_auc: {}",
        curves.n,
        curves.eps_max,
        a.steps,
        curves.methods.iter().map(|m| format!("{m}={:.4}", auc[m])).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}
