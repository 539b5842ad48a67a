//! The training loss: `kappa * natural + (1 - kappa) * robust (+ l1 * |W|_1)`, where the robust
//! part is the cross-entropy of worst-case logits from a relaxation's lower bounds (certified
//! training), or of PGD points (adversarial training).
//!
//! For CROWN-IBP and CAP-IBP the lower bound is `(1 - beta) * IBP + beta * relaxation`
//! (Eq. 9 of Zhang et al. 2020); beta = 1 throughout is "CROWN-IBP (R)" of the paradox paper.

use super::config::{SpecKind, TrainMethod};
use crate::bounds::zonotope::{self, Projections};
use crate::bounds::{input_region, mixed_lower_bound, Interval, LowerLine, Method, Spec};
use crate::error::{Error, Result};
use crate::loss::{cross_entropy, robust_cross_entropy};
use crate::net::{Network, Param};
use crate::tensor::{Device, Tensor};
use crate::verify::pgd::{self, PgdConfig};

/// Pixel range the perturbation ball is clipped to.
pub const CLIP: (f64, f64) = (0.0, 1.0);

#[derive(Clone, Debug)]
pub struct Objective {
    pub method: TrainMethod,
    pub spec: SpecKind,
    pub l1: f64,
    pub pgd_steps: usize,
    pub pgd_step_fraction: f64,
    /// Cauchy random projections per noise source for DeepZ/hBox (0: exact bounds).
    pub projections: usize,
}

/// The pieces of one step's loss (scalars as tensors, still attached to the graph).
pub struct LossParts {
    pub total: Tensor<1>,
    pub natural: Tensor<1>,
    pub robust: Option<Tensor<1>>,
    pub logits: Tensor<2>,
}

/// Cross-entropy of the worst-case logits given lower bounds of the identity pair
/// (`lb[:, :K]` lower bounds of the logits, `-lb[:, K:]` upper bounds).
fn eye_loss(lb: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    let [n, two_k] = lb.dims();
    let k = two_k / 2;
    let lower = lb.clone().slice([0..n, 0..k]);
    let upper = lb.slice([0..n, k..two_k]).neg();
    let worst = lower * one_hot.clone() + upper * (one_hot.clone().neg() + 1.0);
    cross_entropy(worst, one_hot)
}

impl Objective {
    /// The robust loss at radius eps with CROWN-IBP weight beta, on the tracked network
    /// (`plain` is the same network without gradient tracking, for the PGD attack). `seed`
    /// drives this step's randomness (PGD random start, random projections, random slopes).
    #[allow(clippy::too_many_arguments)]
    pub fn robust(&self, tracked: &Network, plain: &Network, x: &Tensor<4>, y: &[usize], one_hot: &Tensor<2>, eps: f64, beta: f64, seed: u64) -> Result<Tensor<1>> {
        let device: Device = x.device();
        let k = tracked.num_outputs();
        match self.method {
            TrainMethod::Natural => Ok(cross_entropy(tracked.forward(x.clone()), one_hot.clone())),
            TrainMethod::Pgd => {
                let cfg = PgdConfig {
                    steps: self.pgd_steps,
                    step_size: Some(self.pgd_step_fraction * eps),
                    restarts: 1,
                    random_start: true,
                    seed,
                };
                let region = input_region(x, eps, Some(CLIP));
                let x_adv = if eps > 0.0 { pgd::attack(plain, x, y, &region, eps, &cfg) } else { x.clone() };
                Ok(cross_entropy(tracked.forward(x_adv.detach()), one_hot.clone()))
            }
            TrainMethod::Bound(method) => {
                let spec = match self.spec {
                    SpecKind::Diffs => Spec::margins(y, k, &device)?,
                    // The labels serve relaxations whose slopes descend the margins' loss.
                    SpecKind::Eye => Spec::identity_pair(k, &device).with_labels(y),
                };
                let region = input_region(x, eps, Some(CLIP));
                let beta = if self.method.mixes_ibp() { beta } else { 1.0 };
                let lb = if self.projections > 0 {
                    projected_lower_bound(tracked, &region, &spec, method, Projections { count: self.projections, seed })?
                } else {
                    mixed_lower_bound(tracked, &region, &spec, &method.relaxation().with_seed(seed), beta)?
                };
                Ok(match self.spec {
                    SpecKind::Diffs => robust_cross_entropy(lb),
                    SpecKind::Eye => eye_loss(lb, one_hot.clone()),
                })
            }
        }
    }

    /// The whole loss of one batch. During warm-up (or for natural training) only the
    /// natural cross-entropy is used.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(&self, tracked: &Network, plain: &Network, x: &Tensor<4>, y: &[usize], one_hot: &Tensor<2>, eps: f64, kappa: f64, beta: f64, warmup: bool, seed: u64) -> Result<LossParts> {
        let logits = tracked.forward(x.clone());
        let natural = cross_entropy(logits.clone(), one_hot.clone());
        let natural_only = warmup || self.method == TrainMethod::Natural;
        let (mut total, robust) = if natural_only || kappa >= 1.0 {
            (natural.clone(), None)
        } else if kappa <= 0.0 {
            let r = self.robust(tracked, plain, x, y, one_hot, eps, beta, seed)?;
            (r.clone(), Some(r))
        } else {
            let r = self.robust(tracked, plain, x, y, one_hot, eps, beta, seed)?;
            (natural.clone() * kappa + r.clone() * (1.0 - kappa), Some(r))
        };
        if self.l1 > 0.0 {
            total = total + l1_norm(tracked) * self.l1;
        }
        Ok(LossParts { total, natural, robust, logits })
    }
}

/// A DeepZ/hBox lower bound of `spec . f(x)` estimated by propagating Cauchy random
/// projections (Wong et al. 2018): cheaper than the bound, and not a bound, so training only.
fn projected_lower_bound(net: &Network, region: &Interval, spec: &Spec, method: Method, projections: Projections) -> Result<Tensor<2>> {
    let lower = match method.relaxation().final_lower {
        LowerLine::Fixed(lower) => lower,
        LowerLine::Optimised { .. } | LowerLine::Sampled(_) => return Err(Error::input(format!("{method} cannot be estimated by random projections"))),
    };
    let (z, _) = zonotope::propagate_projected(net, region, lower, projections)?;
    Ok(zonotope::spec_lower(&z, spec.c.clone()))
}

/// Sum of |w| over the weights (not biases) of linear and conv layers.
pub fn l1_norm(net: &Network) -> Tensor<1> {
    let mut sum: Option<Tensor<1>> = None;
    for (name, p) in net.named_params() {
        if !name.ends_with(".weight") {
            continue;
        }
        let s = match p {
            Param::D2(t) => t.abs().sum(),
            Param::D4(t) => t.abs().sum(),
            // BatchNorm scales are not regularised.
            Param::D1(_) => continue,
        };
        sum = Some(match sum {
            Some(acc) => acc + s,
            None => s,
        });
    }
    sum.unwrap_or_else(|| Tensor::zeros([1], &crate::tensor::default_device()))
}
