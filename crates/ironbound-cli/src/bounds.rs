//! `ironbound bounds`: output and margin bounds for inputs from a .npy/.npz file.

use crate::common;
use clap::Parser;
use ironbound::error::{Error, Result};
use ironbound::io::npy;
use ironbound::tensor::default_device;
use ironbound::verify::bounds_table::{self, BoundsOptions, DEFAULT_BATCH_SIZE};
use ironbound::verify::certify::{check_eps, DEFAULT_TIMEOUT};
use ironbound::verify::CertMethod;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// Model file (.onnx or .safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Inputs, float32 [N, ...] with C*H*W values per row (.npy, or .npz with one array or 'x').
    #[arg(long)]
    input: PathBuf,
    /// Radius of the l-infinity ball.
    #[arg(long, allow_negative_numbers = true)]
    eps: f64,
    /// Relaxation (ibp, hbox, deepz, crown, crown-0, crown-ibp, cap-ibp, alpha-crown,
    /// one-step, random-slope, lp-triangle, lp-parallelogram, milp).
    #[arg(long)]
    method: String,
    /// Per-sample time budget of `milp` in seconds (then the best bound proved so far).
    #[arg(long, allow_negative_numbers = true)]
    timeout: Option<f64>,
    /// Labels (int64 [N]): also writes margin_lower, bounds on f_y - f_j.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Intersect the ball with [MIN, MAX].
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], allow_negative_numbers = true)]
    clip: Option<Vec<f64>>,
    /// Rows per batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Also write the tightness regularizers reg_d and reg_r [N, K] of each margin row (column
    /// y 0; methods deepz, crown, crown-ibp; needs --labels).
    #[arg(long)]
    regularizers: bool,
    /// Seed of the random slopes of one-step and random-slope (row i's come from (S, i)).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Float-sound bounds: they hold for the real-valued network the float32 weights define,
    /// over the region with the exact decimal --eps and --clip (outward rounding throughout).
    #[arg(long)]
    sound: bool,
    #[command(flatten)]
    normalize: common::NormalizeArg,
    /// Output .npz with lower, upper [N, K] (and margin_lower, reg_d, reg_r).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let method: CertMethod = a.method.parse()?;
    bounds_table::check_method(&method)?;
    if let (CertMethod::Bound(m), None) = (&method, &a.labels) {
        if m.needs_labels() {
            return Err(Error::input(format!("--method {m} needs --labels: its slopes descend the robust loss of the margins f_y - f_j")));
        }
    }
    if a.regularizers {
        bounds_table::regularizers_method(&method)?;
        if a.labels.is_none() {
            return Err(Error::input("--regularizers needs --labels: d and r are defined per margin row f_y - f_j"));
        }
    }
    let timeout = common::timeout(a.timeout, DEFAULT_TIMEOUT)?;
    let eps = check_eps(a.eps)?;
    let clip = match a.clip.as_deref() {
        Some(&[lo, hi]) if lo.is_finite() && hi.is_finite() && lo <= hi => Some((lo, hi)),
        Some(c) => return Err(Error::input(format!("--clip needs finite MIN <= MAX, got {c:?}"))),
        None => None,
    };
    common::check_output(&a.out)?;
    let device = default_device();
    let net = a.normalize.load(&a.model, &device)?;
    let x = npy::read_f32(&a.input, &["x", "input"])?;
    let n = bounds_table::check_rows(&net, &x.shape, &x.data).map_err(|e| Error::file(&a.input, e))?;
    let labels = match &a.labels {
        None => None,
        Some(p) => Some(bounds_table::check_labels(&npy::read_labels(p)?.data, n, net.num_outputs()).map_err(|e| Error::file(p, e))?),
    };
    let opts = BoundsOptions { eps, method, clip, timeout, batch_size: a.batch_size, seed: a.seed, sound: a.sound };
    let bar = common::progress(n, "bounds");
    let table = bounds_table::bounds_table(&net, &x.data, labels.as_deref(), &opts, &device, &mut |done| {
        bar.set_position(done as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    let regs = match (&labels, a.regularizers) {
        (Some(ys), true) => {
            let bar = common::progress(n, "regularizers");
            let regs = bounds_table::regularizers_table(&net, &x.data, ys, &opts, &device, &mut |done| {
                bar.set_position(done as u64);
                Ok(())
            })?;
            bar.finish_and_clear();
            Some(regs)
        }
        _ => None,
    };
    let dims = [table.n, table.k];
    let mut arrays: Vec<(&str, &[usize], &[f32])> = vec![("lower", &dims, &table.lower), ("upper", &dims, &table.upper)];
    if let Some(m) = &table.margin_lower {
        arrays.push(("margin_lower", &dims, m));
    }
    if let Some((d, r)) = &regs {
        arrays.push(("reg_d", &dims, d));
        arrays.push(("reg_r", &dims, r));
    }
    npy::write_npz(&a.out, &arrays)
}
