//! `ironbound bounds`: output and margin bounds for inputs from a .npy/.npz file.

use crate::common;
use clap::Parser;
use ironbound::bounds::{input_region, lower_bound, spec, Interval, Spec};
use ironbound::error::{Error, Result};
use ironbound::io::npy;
use ironbound::tensor::{default_device, from_vec, to_vec, Tensor};
use ironbound::net::Network;
use ironbound::verify::certify::{check_eps, DEFAULT_TIMEOUT};
use ironbound::verify::lp::{self, milp, Stages};
use ironbound::verify::CertMethod;
use rayon::prelude::*;
use std::time::{Duration, Instant};
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
    /// lp-triangle, lp-parallelogram, milp).
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
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[command(flatten)]
    normalize: common::NormalizeArg,
    /// Output .npz with lower, upper [N, K] (and margin_lower).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let method: CertMethod = a.method.parse()?;
    if !matches!(method, CertMethod::Bound(_) | CertMethod::Lp(_) | CertMethod::Milp) {
        return Err(Error::input(format!("method '{method}' decides samples but gives no bounds; use it with `ironbound certify`")));
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
    let shape = net.input_shape();
    let per: usize = shape.iter().product();
    let n = x.shape.first().copied().unwrap_or(0);
    // Checked: the row count comes from the file's header and may be huge when another
    // dimension is 0.
    if x.shape.len() < 2 || n.checked_mul(per) != Some(x.data.len()) {
        return Err(Error::file(&a.input, format!("has shape {:?}, expected [N, {}] or [N, {}, {}, {}] for this model", x.shape, per, shape[0], shape[1], shape[2])));
    }
    let k = net.num_outputs();
    let labels: Option<Vec<usize>> = match &a.labels {
        None => None,
        Some(p) => {
            let l = npy::read_labels(p)?;
            if l.data.len() != n {
                return Err(Error::file(p, format!("has {} labels for {n} inputs", l.data.len())));
            }
            if let Some(bad) = l.data.iter().find(|&&y| y as usize >= k) {
                return Err(Error::file(p, format!("label {bad} is out of range for a model with {k} outputs")));
            }
            Some(l.data.iter().map(|&y| y as usize).collect())
        }
    };
    let stages = match method {
        CertMethod::Bound(_) => None,
        _ => Some(lp::stages::extract(&net)?),
    };
    let (mut lower, mut upper, mut margins) = (Vec::new(), Vec::new(), Vec::new());
    let bs = a.batch_size.max(1);
    let bar = common::progress(n, "bounds");
    for start in (0..n).step_by(bs) {
        let end = (start + bs).min(n);
        let xb = from_vec(x.data[start * per..end * per].to_vec(), [end - start, shape[0], shape[1], shape[2]], &device);
        let region = input_region(&xb, eps, clip);
        // One pass for everything: rows [I; -I] give lower and (negated) upper bounds of the
        // outputs, followed by the margin rows when labels are given, so the intermediate
        // bounds are computed once.
        let m = end - start;
        let pair = Spec::identity_pair(k, &device).c;
        let ys = labels.as_ref().map(|l| &l[start..end]);
        let rows = match ys {
            Some(ys) => Tensor::cat(vec![pair.expand([m, 2 * k, k]), Spec::margins(ys, k, &device)?.c], 1),
            None => pair,
        };
        let lb = rows_lower_bound(&net, stages.as_ref(), &region, &Spec::new(rows), &method, timeout)?;
        let total = lb.dims()[1];
        lower.extend(to_vec(lb.clone().slice([0..m, 0..k])));
        upper.extend(to_vec(lb.clone().slice([0..m, k..2 * k]).neg()));
        if let Some(ys) = ys {
            let margin = to_vec(lb.slice([0..m, 2 * k..total]));
            margins.extend(spec::insert_label_column(&margin, ys, k));
        }
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    // Float32 overflow (weights or inputs too large) gives inf or NaN bounds; a NaN bound
    // holds nothing, so none is written, and neither is an infinite one.
    for (what, v) in [("lower", &lower), ("upper", &upper), ("margin_lower", &margins)] {
        if let Some(i) = v.iter().position(|b| !b.is_finite()) {
            return Err(Error::input(format!(
                "the {what} bound of row {}, output {} is {}: float32 overflowed (the model's weights or the inputs are too large to bound)",
                i / k.max(1),
                i % k.max(1),
                v[i]
            )));
        }
    }
    let dims = [n, k];
    let mut arrays: Vec<(&str, &[usize], &[f32])> = vec![("lower", &dims, &lower), ("upper", &dims, &upper)];
    if labels.is_some() {
        arrays.push(("margin_lower", &dims, &margins));
    }
    npy::write_npz(&a.out, &arrays)
}

/// Lower bounds `[N, R]` of the spec rows by the chosen method.
fn rows_lower_bound(net: &Network, stages: Option<&Stages>, region: &Interval, spec: &Spec, method: &CertMethod, timeout: Duration) -> Result<Tensor<2>> {
    let stages = || stages.ok_or_else(|| Error::internal("LP stages missing"));
    match method {
        CertMethod::Bound(m) => lower_bound(net, region, spec, &m.relaxation()),
        CertMethod::Lp(r) => lp::lower_bound(net, stages()?, region, spec, *r),
        _ => {
            let stages = stages()?;
            let n = region.lo.dims()[0];
            let seeds = lp::engine_bounds(net, stages, region, ironbound::bounds::Method::Crown)?;
            let boxes = lp::boxes(region);
            let rows = lp::spec_rows(spec, n);
            let bounds = (0..n)
                .into_par_iter()
                .map(|i| milp::exact_row_bounds(stages, &boxes[i], &seeds[i], &rows[i], Instant::now() + timeout))
                .collect::<Result<Vec<Vec<f64>>>>()?;
            let flat: Vec<f32> = bounds.into_iter().flatten().map(lp::round_down).collect();
            Ok(from_vec(flat, [n, spec.rows()], &region.lo.device()))
        }
    }
}
