//! Projected gradient descent in the l-infinity ball (Madry et al.): a sound *upper* bound on
//! robust accuracy, to compare with the certified lower bounds.

use crate::bounds::Interval;
use crate::loss::{cross_entropy, one_hot, predictions};
use crate::net::init::SplitMix64;
use crate::net::Network;
use crate::tensor::{from_vec, Tensor};

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

/// Runs PGD from one start; returns the final point and whether each sample was
/// misclassified at some step.
fn one_run(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig, restart: u64) -> (Tensor<4>, Vec<bool>) {
    let k = net.num_outputs();
    let device = x.device();
    let targets = one_hot(y, k, &device);
    let mut x_adv = x.clone();
    if cfg.random_start {
        let dims = x.dims();
        let n = dims.iter().product();
        let mut rng = SplitMix64::new(cfg.seed.wrapping_mul(0x100000001B3).wrapping_add(restart));
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
        let grads = cross_entropy(logits, targets.clone()).backward();
        let Some(g) = tracked.grad(&grads) else { break };
        x_adv = (x_adv + g.sign() * step).max_pair(region.lo.clone()).min_pair(region.hi.clone());
    }
    mark(net.forward(x_adv.clone()), &mut fooled);
    (x_adv, fooled)
}

/// Per sample: true when no restart found a misclassified point in the region.
pub fn robust(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig) -> Vec<bool> {
    let mut fooled = vec![false; y.len()];
    for r in 0..cfg.restarts.max(1) {
        let (_, f) = one_run(net, x, y, region, eps, cfg, r as u64);
        for (a, b) in fooled.iter_mut().zip(f) {
            *a |= b;
        }
    }
    fooled.into_iter().map(|f| !f).collect()
}

/// The adversarial points of one PGD run (for attacks used in training and analysis).
pub fn attack(net: &Network, x: &Tensor<4>, y: &[usize], region: &Interval, eps: f64, cfg: &PgdConfig) -> Tensor<4> {
    one_run(net, x, y, region, eps, cfg, 0).0
}
