//! Projected gradient descent in the l-infinity ball (Madry et al.): a sound *upper* bound on
//! robust accuracy, to compare with the certified lower bounds.

use crate::bounds::Interval;
use crate::loss::{cross_entropy, cross_entropy_sum, one_hot, predictions};
use crate::net::init::SplitMix64;
use crate::net::Network;
use crate::tensor::{from_vec, Tensor};
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct PgdConfig {
    pub steps: usize,
    /// Step size; `None` means eps / 4 (the bench's choice, and 2.5 eps / steps is common).
    pub step_size: Option<f64>,
    pub restarts: usize,
    pub random_start: bool,
    pub seed: u64,
}

impl PgdConfig {
    pub fn new(steps: usize) -> Self {
        PgdConfig { steps, step_size: None, restarts: 1, random_start: true, seed: 0 }
    }
}

/// One PGD run: its restart number, where the rows of `x` sit in their batch, and how the
/// loss is reduced.
#[derive(Clone, Copy)]
struct Run {
    restart: u64,
    /// The batch position of the first row: the random start skips the noise of the rows
    /// before it.
    position: usize,
    /// Sum the per-sample losses instead of averaging them, so that no row's gradient depends
    /// on how many rows there are.
    summed: bool,
}

const BATCH: Run = Run { restart: 0, position: 0, summed: false };

/// Runs PGD from one start; returns the final point and whether each sample was
/// misclassified at some step.
fn one_run(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig, at: Run) -> (Tensor<4>, Vec<bool>) {
    let k = net.num_outputs();
    let device = x.device();
    let targets = one_hot(y, k, &device);
    let mut x_adv = x.clone();
    if cfg.random_start {
        let dims = x.dims();
        let n: usize = dims.iter().product();
        let mut rng = SplitMix64::new(cfg.seed.wrapping_mul(0x100000001B3).wrapping_add(at.restart));
        for _ in 0..at.position * (n / dims[0].max(1)) {
            rng.next_u64();
        }
        let noise: Vec<f32> = (0..n).map(|_| ((2.0 * rng.uniform() - 1.0) * eps) as f32).collect();
        x_adv = x_adv + from_vec(noise, dims, &device);
        x_adv = x_adv.max_pair(region.lo.clone()).min_pair(region.hi.clone());
    }
    let step = cfg.step_size.unwrap_or(eps / 4.0);
    let mut fooled = vec![false; y.len()];
    let mark = |logits: Tensor<2>, fooled: &mut Vec<bool>| {
        for (i, p) in predictions(logits).into_iter().enumerate() {
            fooled[i] |= p != y[i];
        }
    };
    for _ in 0..cfg.steps {
        let tracked = x_adv.clone().autodiff().require_grad();
        let logits = net.forward(tracked.clone());
        mark(logits.clone().detach().without_autodiff(), &mut fooled);
        let loss = if at.summed { cross_entropy_sum(logits, targets.clone()) } else { cross_entropy(logits, targets.clone()) };
        let grads = loss.backward();
        let Some(g) = tracked.grad(&grads) else { break };
        x_adv = (x_adv + g.sign() * step).max_pair(region.lo.clone()).min_pair(region.hi.clone());
    }
    mark(net.forward(x_adv.clone()), &mut fooled);
    (x_adv, fooled)
}

/// Per sample: true when no restart found a misclassified point in the region.
pub fn robust(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig) -> Vec<bool> {
    robust_placed(net, x, y, region, eps, cfg, BATCH)
}

/// [`robust`] for rows that sit at `position..` of a batch, each attacked exactly as it would
/// be in the whole batch: its random start is its part of the batch's noise, and the loss is
/// summed so its gradient does not depend on the other rows. `certify` uses it so that a
/// shard's samples meet the attack of one unsharded run.
pub fn robust_at(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig, position: usize) -> Vec<bool> {
    robust_placed(net, x, y, region, eps, cfg, Run { position, summed: true, ..BATCH })
}

/// Samples are attacked independently, so on the CPU the rows are split into one shard per
/// worker thread, each attacked as it sits in the batch (its part of the noise, the summed
/// loss: the sign of its gradient is the batch's). A whole-batch step spends much of its time
/// in element-wise kernels that run on one thread; shards keep every core busy.
fn robust_placed(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig, at: Run) -> Vec<bool> {
    let n = y.len();
    let parts = if crate::tensor::on_cpu() { rayon::current_num_threads().min(n) } else { 1 };
    if parts <= 1 {
        return robust_rows(net, x, y, region, eps, cfg, at);
    }
    let size = n.div_ceil(parts);
    let rows = |t: &Tensor<4>, r: &std::ops::Range<usize>| {
        let [_, c, h, w] = t.dims();
        t.clone().slice([r.clone(), 0..c, 0..h, 0..w])
    };
    let shards: Vec<std::ops::Range<usize>> = (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect();
    let parts: Vec<Vec<bool>> = shards
        .into_par_iter()
        .map(|r| {
            let shard_region = Interval { lo: rows(&region.lo, &r), hi: rows(&region.hi, &r) };
            let shard_at = Run { position: at.position + r.start, summed: true, ..at };
            robust_rows(net, &rows(x, &r), &y[r.clone()], &shard_region, eps, cfg, shard_at)
        })
        .collect();
    parts.concat()
}

fn robust_rows(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig, at: Run) -> Vec<bool> {
    let mut fooled = vec![false; y.len()];
    for r in 0..cfg.restarts.max(1) {
        let (_, f) = one_run(net, x, y, region, eps, cfg, Run { restart: r as u64, ..at });
        for (a, b) in fooled.iter_mut().zip(f) {
            *a |= b;
        }
    }
    fooled.into_iter().map(|f| !f).collect()
}

/// The adversarial points of one PGD run (for attacks used in training and analysis).
pub fn attack(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig) -> Tensor<4> {
    one_run(net, x, y, region, eps, cfg, BATCH).0
}
