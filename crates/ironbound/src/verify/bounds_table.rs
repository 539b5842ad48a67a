//! The table `ironbound bounds` writes: for rows of inputs, lower and upper bounds of every
//! output over the l-infinity ball around each row (optionally clipped), and with labels the
//! margin lower bounds `f_y - f_j`. The CLI and the Python package both call [`bounds_table`],
//! so they give the same bits for the same inputs.

use super::lp::{self, milp, Stages};
use super::method::CertMethod;
use crate::bounds::{input_region, lower_bound, regularizers, sound, spec, Interval, Method, Spec};
use crate::error::{Error, Result};
use crate::net::Network;
use crate::tensor::{from_vec, to_vec, Device, Tensor};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// Rows per batch when the caller has no preference (the CLI's `--batch-size` default).
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// How the bounds are computed.
#[derive(Clone, Debug)]
pub struct BoundsOptions {
    /// Radius of the l-infinity ball.
    pub eps: f64,
    pub method: CertMethod,
    /// The ball is intersected with [MIN, MAX] when given.
    pub clip: Option<(f64, f64)>,
    /// Per-sample time budget of `milp` (then the best bound proved so far).
    pub timeout: Duration,
    /// Rows per batch; results do not depend on it beyond rounding of batched arithmetic, so
    /// callers that must agree bit for bit use the same value.
    pub batch_size: usize,
    /// Seed of the random slopes (`one-step`, `random-slope`); row i's slopes come from
    /// (seed, i), whatever the batch size.
    pub seed: u64,
    /// Float-sound bounds (`bounds --sound`, `bounds/sound.rs`): they hold for the real-valued
    /// network over the region with the exact decimal eps and clip. Only the bound engines'
    /// methods have this mode.
    pub sound: bool,
}

impl BoundsOptions {
    /// `ironbound bounds`'s defaults for everything but the radius and the method, so that
    /// callers name only what they change (`BoundsOptions { clip, ..BoundsOptions::new(..) }`).
    pub fn new(eps: f64, method: CertMethod) -> BoundsOptions {
        BoundsOptions { eps, method, clip: None, timeout: super::certify::DEFAULT_TIMEOUT, batch_size: DEFAULT_BATCH_SIZE, seed: 0, sound: false }
    }
}

/// Bounds of `n` rows on `k` outputs, row-major `[n, k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundsTable {
    pub n: usize,
    pub k: usize,
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
    /// With labels: lower bounds of `f_y - f_j` (column y is 0).
    pub margin_lower: Option<Vec<f32>>,
}

/// Refuses methods that decide samples without giving bounds (cascades, COLT's partial MILPs).
pub fn check_method(method: &CertMethod) -> Result<()> {
    if !matches!(method, CertMethod::Bound(_) | CertMethod::Lp(_) | CertMethod::Milp) {
        return Err(Error::input(format!("method '{method}' decides samples but gives no bounds; use it with `ironbound certify`")));
    }
    Ok(())
}

/// The number of rows in inputs of `shape` holding `data`, or why they do not fit `net` (the
/// caller names the inputs in front of the reason: a file path, or `x` in Python).
pub fn check_rows(net: &Network, shape: &[usize], data: &[f32]) -> std::result::Result<usize, String> {
    let input = net.input_shape();
    let per: usize = input.iter().product();
    let n = shape.first().copied().unwrap_or(0);
    // Checked: the row count comes from the file's header and may be huge when another
    // dimension is 0.
    if shape.len() < 2 || n.checked_mul(per) != Some(data.len()) {
        return Err(format!("has shape {shape:?}, expected [N, {}] or [N, {}, {}, {}] for this model", per, input[0], input[1], input[2]));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(format!("contains a non-finite value (NaN or inf) at flat index {i}"));
    }
    Ok(n)
}

/// Labels as class indices, or why they do not fit `n` inputs and `k` outputs (the caller
/// names the labels in front of the reason).
pub fn check_labels(labels: &[i64], n: usize, k: usize) -> std::result::Result<Vec<usize>, String> {
    if labels.len() != n {
        return Err(format!("has {} labels for {n} inputs", labels.len()));
    }
    match labels.iter().find(|&&y| y < 0 || y as usize >= k) {
        Some(bad) => Err(format!("label {bad} is out of range for a model with {k} outputs")),
        None => Ok(labels.iter().map(|&y| y as usize).collect()),
    }
}

/// Bounds for the rows of `x` (checked with [`check_rows`]), with margins when `labels` (one
/// per row, checked with [`check_labels`]) are given. `progress(rows_done)` runs after each
/// batch; an error from it stops the work and is returned (Python's Ctrl-C).
pub fn bounds_table(
    net: &Network,
    x: &[f32],
    labels: Option<&[usize]>,
    opts: &BoundsOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<BoundsTable> {
    check_method(&opts.method)?;
    let shape = net.input_shape();
    let per: usize = shape.iter().product();
    let n = x.len() / per.max(1);
    if n * per != x.len() || labels.is_some_and(|l| l.len() != n) {
        return Err(Error::internal("bounds_table: inputs or labels not checked against the model"));
    }
    let k = net.num_outputs();
    let stages = match opts.method {
        CertMethod::Bound(_) => None,
        _ => Some(lp::stages::extract(net)?),
    };
    let (mut lower, mut upper, mut margins) = (Vec::new(), Vec::new(), Vec::new());
    let bs = opts.batch_size.max(1);
    for start in (0..n).step_by(bs) {
        let end = (start + bs).min(n);
        let xb = from_vec(x[start * per..end * per].to_vec(), [end - start, shape[0], shape[1], shape[2]], device);
        let region = match opts.sound {
            true => sound::input_region(&xb, opts.eps, opts.clip),
            false => input_region(&xb, opts.eps, opts.clip),
        };
        // One pass for everything: rows [I; -I] give lower and (negated) upper bounds of the
        // outputs, followed by the margin rows when labels are given, so the intermediate
        // bounds are computed once.
        let m = end - start;
        let pair = Spec::identity_pair(k, device).c;
        let ys = labels.map(|l| &l[start..end]);
        let rows = match ys {
            Some(ys) => Tensor::cat(vec![pair.expand([m, 2 * k, k]), Spec::margins(ys, k, device)?.c], 1),
            None => pair,
        };
        let mut spec = Spec::new(rows).with_indices((start as u64..end as u64).collect());
        if let Some(ys) = ys {
            spec = spec.with_labels(ys);
        }
        let lb = rows_lower_bound(net, stages.as_ref(), &region, &spec, opts)?;
        let total = lb.dims()[1];
        lower.extend(to_vec(lb.clone().slice([0..m, 0..k])));
        upper.extend(to_vec(lb.clone().slice([0..m, k..2 * k]).neg()));
        if let Some(ys) = ys {
            let margin = to_vec(lb.slice([0..m, 2 * k..total]));
            margins.extend(spec::insert_label_column(&margin, ys, k));
        }
        progress(end)?;
    }
    // Float32 overflow (weights or inputs too large) gives inf or NaN bounds; a NaN bound
    // holds nothing, so none is returned, and neither is an infinite one.
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
    Ok(BoundsTable { n, k, lower, upper, margin_lower: labels.is_some().then_some(margins) })
}

/// The relaxation of `--regularizers`: deepz, crown or crown-ibp, else why not.
pub fn regularizers_method(method: &CertMethod) -> Result<Method> {
    match method {
        CertMethod::Bound(m) if regularizers::supports(*m) => Ok(*m),
        other => Err(Error::input(format!(
            "--regularizers needs --method deepz, crown or crown-ibp (d and r are read off their relaxed optimum), not {}",
            other.name()
        ))),
    }
}

/// The tightness regularizers d and r ([`crate::bounds::regularizers`]) of every margin row
/// `f_y - f_j` of the rows of `x` and their labels (both checked as for [`bounds_table`]), over
/// the regions of `opts`: row-major `[n, k]` each, column y 0 (`ironbound bounds
/// --regularizers`).
pub fn regularizers_table(
    net: &Network,
    x: &[f32],
    labels: &[usize],
    opts: &BoundsOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let method = regularizers_method(&opts.method)?;
    let shape = net.input_shape();
    let per: usize = shape.iter().product();
    let n = labels.len();
    if n * per != x.len() {
        return Err(Error::internal("regularizers_table: inputs or labels not checked against the model"));
    }
    let k = net.num_outputs();
    let relaxation = method.relaxation().with_seed(opts.seed);
    let (mut d, mut r) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
    let bs = opts.batch_size.max(1);
    for start in (0..n).step_by(bs) {
        let end = (start + bs).min(n);
        let xb = from_vec(x[start * per..end * per].to_vec(), [end - start, shape[0], shape[1], shape[2]], device);
        let region = input_region(&xb, opts.eps, opts.clip);
        let ys = &labels[start..end];
        let t = regularizers::tightness(net, &region, &xb, &Spec::margins(ys, k, device)?, &relaxation)?;
        d.extend(spec::insert_label_column(&to_vec(t.d), ys, k));
        r.extend(spec::insert_label_column(&to_vec(t.r), ys, k));
        progress(end)?;
    }
    for (what, v) in [("reg_d", &d), ("reg_r", &r)] {
        if let Some(i) = v.iter().position(|b| !b.is_finite()) {
            return Err(Error::input(format!(
                "{what} of row {}, output {} is {}: float32 overflowed (the model's weights or the inputs are too large)",
                i / k.max(1),
                i % k.max(1),
                v[i]
            )));
        }
    }
    Ok((d, r))
}

/// Lower bounds `[N, R]` of the spec rows by the chosen method.
fn rows_lower_bound(net: &Network, stages: Option<&Stages>, region: &Interval, spec: &Spec, opts: &BoundsOptions) -> Result<Tensor<2>> {
    let stages = || stages.ok_or_else(|| Error::internal("LP stages missing"));
    let timeout = opts.timeout;
    match &opts.method {
        CertMethod::Bound(m) => lower_bound(net, region, spec, &m.relaxation().with_seed(opts.seed).with_sound(opts.sound)),
        CertMethod::Lp(r) => lp::lower_bound(net, stages()?, region, spec, *r, opts.sound, Some(timeout)),
        _ => {
            let stages = stages()?;
            let n = region.lo.dims()[0];
            let seeds = lp::engine_bounds(net, stages, region, Method::Crown, opts.sound)?;
            let boxes = lp::boxes(region);
            let rows = lp::spec_rows(spec, n);
            let bounds = (0..n)
                .into_par_iter()
                .map(|i| milp::exact_row_bounds(stages, &boxes[i], &seeds[i], &rows[i], Instant::now() + timeout, opts.sound))
                .collect::<Result<Vec<Vec<f64>>>>()?;
            let flat: Vec<f32> = bounds.into_iter().flatten().map(lp::round_down).collect();
            Ok(from_vec(flat, [n, spec.rows()], &region.lo.device()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::arch;
    use crate::tensor::default_device;

    fn net() -> Network {
        let device = default_device();
        arch::named("fc-small", [1, 28, 28]).and_then(|a| a.init(3, &device)).expect("fc-small initialises")
    }

    #[test]
    fn checks_name_the_problem() {
        let net = net();
        let per: usize = net.input_shape().iter().product();
        assert_eq!(check_rows(&net, &[2, per], &vec![0.5; 2 * per]), Ok(2));
        assert!(check_rows(&net, &[2, 5], &[0.0; 10]).unwrap_err().contains("has shape [2, 5]"));
        assert!(check_rows(&net, &[per], &vec![0.0; per]).unwrap_err().contains("expected [N, 784]"));
        let mut nan = vec![0.5; per];
        nan[7] = f32::NAN;
        assert!(check_rows(&net, &[1, per], &nan).unwrap_err().contains("at flat index 7"));
        assert_eq!(check_labels(&[1, 2], 2, 10), Ok(vec![1, 2]));
        assert!(check_labels(&[1], 2, 10).unwrap_err().contains("1 labels for 2 inputs"));
        assert!(check_labels(&[10, 0], 2, 10).unwrap_err().contains("label 10 is out of range"));
        assert!(check_labels(&[-1, 0], 2, 10).unwrap_err().contains("label -1 is out of range"));
    }

    #[test]
    fn batches_margins_and_interruption() {
        let net = net();
        let device = default_device();
        let per: usize = net.input_shape().iter().product();
        let x: Vec<f32> = (0..3 * per).map(|i| (i % 17) as f32 / 17.0).collect();
        let opts = BoundsOptions { eps: 0.01, method: CertMethod::Bound(Method::Crown), clip: Some((0.0, 1.0)), timeout: Duration::from_secs(1), batch_size: 2, seed: 0, sound: false };
        let mut seen = Vec::new();
        let t = bounds_table(&net, &x, Some(&[0, 1, 2]), &opts, &device, &mut |d| {
            seen.push(d);
            Ok(())
        })
        .expect("bounds");
        assert_eq!(seen, [2, 3]);
        assert_eq!((t.n, t.k, t.lower.len(), t.upper.len()), (3, 10, 30, 30));
        assert!(t.lower.iter().zip(&t.upper).all(|(l, u)| l <= u));
        let m = t.margin_lower.expect("margins with labels");
        assert_eq!((m[0], m[11], m[22]), (0.0, 0.0, 0.0));
        let stop = bounds_table(&net, &x, None, &opts, &device, &mut |_| Err(Error::internal("stop")));
        assert!(matches!(stop, Err(Error::Internal(s)) if s == "stop"));
        let cascade = BoundsOptions { method: CertMethod::colt(10), ..opts };
        assert!(bounds_table(&net, &x, None, &cascade, &device, &mut |_| Ok(())).is_err());
    }
}
