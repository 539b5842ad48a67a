//! Searching an input box for a point where a conjunction of linear output constraints
//! `C y <= d` holds: projected sign-gradient descent on the largest violation, from many
//! random starts at once (the box corners and centre among them).

use crate::net::init::SplitMix64;
use crate::net::Network;
use crate::tensor::{from_vec, to_vec, Tensor};

/// A conjunction `C y <= d` over the K outputs.
#[derive(Clone, Debug)]
pub struct Conjunction {
    /// Rows of C, each of length K.
    pub rows: Vec<Vec<f64>>,
    pub rhs: Vec<f64>,
}

impl Conjunction {
    /// `C` as a `[1, m, K]` spec tensor.
    pub fn spec(&self, device: &crate::tensor::Device) -> crate::bounds::Spec {
        let (m, k) = (self.rows.len(), self.rows.first().map_or(0, Vec::len));
        let c: Vec<f32> = self.rows.iter().flatten().map(|&v| v as f32).collect();
        crate::bounds::Spec::new(from_vec(c, [1, m, k], device))
    }

    /// `max_i (c_i . y - d_i)` for each row of logits `[B, K]`: <= 0 where the conjunction holds.
    pub fn violation(&self, logits: Tensor<2>) -> Tensor<1> {
        let device = logits.device();
        let [b, _] = logits.dims();
        let c = self.spec(&device).c;
        let m = self.rows.len();
        let d = from_vec(self.rhs.iter().map(|&v| v as f32).collect(), [1, m], &device);
        let v = crate::bounds::spec::apply_rows(c, logits) - d.expand([b, m]);
        v.max_dim(1).reshape([b])
    }

    /// Whether `y` satisfies every constraint (exactly, in f64).
    pub fn holds(&self, y: &[f64]) -> bool {
        self.rows.iter().zip(&self.rhs).all(|(c, &d)| c.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() <= d)
    }
}

#[derive(Clone, Debug)]
pub struct FalsifyConfig {
    pub restarts: usize,
    pub steps: usize,
    pub seed: u64,
}

impl Default for FalsifyConfig {
    fn default() -> Self {
        FalsifyConfig { restarts: 64, steps: 50, seed: 0 }
    }
}

/// Points of the box (flat) where the conjunction appears to hold under the network's
/// float32 forward pass, best first; the caller checks them before believing any.
pub fn search(net: &Network, lo: &[f32], hi: &[f32], conj: &Conjunction, cfg: &FalsifyConfig) -> Vec<Vec<f32>> {
    let [c, h, w] = net.input_shape();
    let f = lo.len();
    let device = net.device().unwrap_or_else(crate::tensor::default_device);
    let mut rng = SplitMix64::new(cfg.seed ^ 0x5eed_fa15);
    let r = cfg.restarts.max(2);
    let mut start = Vec::with_capacity(r * f);
    for i in 0..r {
        for j in 0..f {
            let u = match i {
                0 => 0.5,
                _ if i < r / 4 => (rng.uniform() < 0.5) as u8 as f64,
                _ => rng.uniform(),
            };
            start.push((f64::from(lo[j]) + (f64::from(hi[j]) - f64::from(lo[j])) * u) as f32);
        }
    }
    let lo_t = from_vec(lo.repeat(r), [r, c, h, w], &device);
    let hi_t = from_vec(hi.repeat(r), [r, c, h, w], &device);
    let width = hi_t.clone() - lo_t.clone();
    let mut x = from_vec(start, [r, c, h, w], &device);
    let mut found: Vec<(f32, Vec<f32>)> = Vec::new();
    for step in 0..=cfg.steps {
        let tracked = x.clone().autodiff().require_grad();
        let viol = conj.violation(net.forward(tracked.clone()));
        let values = to_vec(viol.clone().detach().without_autodiff());
        let points = to_vec(x.clone());
        for (i, &v) in values.iter().enumerate() {
            if v <= 0.0 {
                found.push((v, points[i * f..(i + 1) * f].to_vec()));
            }
        }
        if !found.is_empty() || step == cfg.steps {
            break;
        }
        let grads = viol.sum().backward();
        let Some(g) = tracked.grad(&grads) else { break };
        // Step sizes shrink from a quarter of the box to a small fraction of it.
        let size = 0.25 * (1.0 - step as f64 / cfg.steps as f64) + 0.01;
        x = (x - g.sign() * width.clone() * size).max_pair(lo_t.clone()).min_pair(hi_t.clone());
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.into_iter().map(|(_, p)| p).collect()
}
