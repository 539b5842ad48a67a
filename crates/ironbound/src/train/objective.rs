//! The training loss: `kappa * natural + (1 - kappa) * robust (+ l1 * |W|_1)`, where the robust
//! part is the cross-entropy of worst-case logits from a relaxation's lower bounds (certified
//! training), or of PGD points (adversarial training).
//!
//! For CROWN-IBP and CAP-IBP the lower bound is `(1 - beta) * IBP + beta * relaxation`
//! (Eq. 9 of Zhang et al. 2020); beta = 1 throughout is "CROWN-IBP (R)" of the paradox paper.
//!
//! The tightness regularizers of Zhu et al. (`bounds::regularizers`) add
//! `lambda * mean_n sum_t d_t + gamma * mean_n sum_t r_t` (their Eq. 3) for deepz, crown and
//! crown-ibp, computed from the same bounds as the robust loss; for crown-ibp only while beta > 0
//! ("the first stage", while the CROWN-IBP bound is in the loss).

use super::config::{SpecKind, TrainMethod};
use super::land::{self, SlopeCounts, StabilityForm};
use crate::bounds::zonotope::{self, Projections};
use crate::bounds::regularizers::{self, Tightness};
use crate::bounds::{final_pass, ibp_final_pass, input_region, intermediate, mixed_lower_bound, slopes, Interval, LowerLine, Method, Relaxation, SlopeRule, Spec};
use crate::error::{Error, Result};
use crate::loss::{cross_entropy, robust_cross_entropy};
use crate::net::{Network, Param, ReluLower};
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
    /// The slope rule of one-step and random-slope in place of their presets (multi-step,
    /// p/q starts: `slope_*` keys).
    pub slopes: Option<SlopeRule>,
    /// Weight and form of the ReLU-stability term on the relaxation's intermediate bounds.
    pub stability: Option<(f64, StabilityForm)>,
}

/// The pieces of one step's loss (scalars as tensors, still attached to the graph).
pub struct LossParts {
    pub total: Tensor<1>,
    pub natural: Tensor<1>,
    pub robust: Option<Tensor<1>>,
    pub logits: Tensor<2>,
    /// The batch means of `sum_t d_t` and `sum_t r_t` (detached), when they were computed.
    pub reg_d: Option<Tensor<1>>,
    pub reg_r: Option<Tensor<1>>,
    pub extras: Extras,
}

/// What a robust bound computed besides itself.
#[derive(Default)]
pub struct Extras {
    /// The slopes' choices (one-step, random-slope).
    pub slopes: Option<SlopeCounts>,
    /// The ReLU-stability loss before its weight (attached to the graph).
    pub stability: Option<Tensor<1>>,
}

/// This step's weights of the tightness regularizers.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct RegWeights {
    /// lambda, the weight of d.
    pub d: f64,
    /// gamma, the weight of r.
    pub r: f64,
    /// Compute d and r (for the metrics) even when both weights are 0.
    pub measure: bool,
}

impl RegWeights {
    pub const OFF: RegWeights = RegWeights { d: 0.0, r: 0.0, measure: false };

    fn wanted(&self) -> bool {
        self.d > 0.0 || self.r > 0.0 || self.measure
    }
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
        Ok(self.robust_with_extras(tracked, plain, x, y, one_hot, eps, beta, seed)?.0)
    }

    /// The training relaxation of `method` with this step's seed (and the configured slopes).
    pub fn relaxation(&self, method: Method, seed: u64) -> Relaxation {
        let r = method.relaxation();
        let r = match (self.slopes, r.final_lower) {
            (Some(rule), LowerLine::Sampled(_)) => Relaxation { final_lower: LowerLine::Sampled(rule), ..r },
            _ => r,
        };
        r.with_seed(seed)
    }

    /// [`Objective::robust`] and what it found on the way.
    #[allow(clippy::too_many_arguments)]
    fn robust_with_extras(&self, tracked: &Network, plain: &Network, x: &Tensor<4>, y: &[usize], one_hot: &Tensor<2>, eps: f64, beta: f64, seed: u64) -> Result<(Tensor<1>, Extras)> {
        let device: Device = x.device();
        let k = tracked.num_outputs();
        let plain_loss = |t: Tensor<1>| (t, Extras::default());
        match self.method {
            TrainMethod::Natural => Ok(plain_loss(cross_entropy(tracked.forward(x.clone()), one_hot.clone()))),
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
                Ok(plain_loss(cross_entropy(tracked.forward(x_adv.detach()), one_hot.clone())))
            }
            TrainMethod::Colt => Err(Error::internal("colt's loss is train::colt::loss, not a robust bound")),
            TrainMethod::Bound(method) => {
                let spec = match self.spec {
                    SpecKind::Diffs => Spec::margins(y, k, &device)?,
                    // The labels serve relaxations whose slopes descend the margins' loss.
                    SpecKind::Eye => Spec::identity_pair(k, &device).with_labels(y),
                };
                let region = input_region(x, eps, Some(CLIP));
                let beta = if self.method.mixes_ibp() { beta } else { 1.0 };
                let relaxation = self.relaxation(method, seed);
                let (lb, extras) = if self.projections > 0 {
                    (projected_lower_bound(tracked, &region, &spec, method, Projections { count: self.projections, seed })?, Extras::default())
                } else if self.stability.is_some() || matches!(relaxation.final_lower, LowerLine::Sampled(_)) {
                    self.lower_bound_with_extras(tracked, &region, &spec, &relaxation, beta)?
                } else {
                    (mixed_lower_bound(tracked, &region, &spec, &relaxation, beta)?, Extras::default())
                };
                let loss = match self.spec {
                    SpecKind::Diffs => robust_cross_entropy(lb),
                    SpecKind::Eye => eye_loss(lb, one_hot.clone()),
                };
                Ok((loss, extras))
            }
        }
    }

    /// The whole loss of one batch. During warm-up (or for natural training) only the
    /// natural cross-entropy is used.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(&self, tracked: &Network, plain: &Network, x: &Tensor<4>, y: &[usize], one_hot: &Tensor<2>, eps: f64, kappa: f64, beta: f64, warmup: bool, seed: u64) -> Result<LossParts> {
        self.loss_with(tracked, plain, x, y, one_hot, eps, kappa, beta, warmup, seed, RegWeights::OFF)
    }

    /// [`Objective::loss`] with the tightness regularizers at these weights. Without them
    /// (weights 0, nothing to measure) it is `loss`, bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_with(&self, tracked: &Network, plain: &Network, x: &Tensor<4>, y: &[usize], one_hot: &Tensor<2>, eps: f64, kappa: f64, beta: f64, warmup: bool, seed: u64, reg: RegWeights) -> Result<LossParts> {
        let logits = tracked.forward(x.clone());
        let natural = cross_entropy(logits.clone(), one_hot.clone());
        let natural_only = warmup || self.method == TrainMethod::Natural;
        if let TrainMethod::Bound(method) = self.method {
            let first_stage = !self.method.mixes_ibp() || beta > 0.0;
            if reg.wanted() && !natural_only && first_stage && regularizers::supports(method) && self.spec == SpecKind::Diffs {
                return self.loss_with_tightness(tracked, x, y, logits, natural, eps, kappa, beta, seed, method, reg);
            }
        }
        let (mut total, robust, extras) = if natural_only || kappa >= 1.0 {
            (natural.clone(), None, Extras::default())
        } else if kappa <= 0.0 {
            let (r, extras) = self.robust_with_extras(tracked, plain, x, y, one_hot, eps, beta, seed)?;
            (r.clone(), Some(r), extras)
        } else {
            let (r, extras) = self.robust_with_extras(tracked, plain, x, y, one_hot, eps, beta, seed)?;
            (natural.clone() * kappa + r.clone() * (1.0 - kappa), Some(r), extras)
        };
        if let (Some((weight, _)), Some(rs)) = (self.stability, &extras.stability) {
            total = total + rs.clone() * weight;
        }
        if self.l1 > 0.0 {
            total = total + l1_norm(tracked) * self.l1;
        }
        Ok(LossParts { total, natural, robust, logits, reg_d: None, reg_r: None, extras })
    }

    /// The robust lower bound as `mixed_lower_bound` computes it, from intermediate bounds
    /// computed here so that the ReLU-stability term and the slopes' statistics can read them.
    fn lower_bound_with_extras(&self, net: &Network, region: &Interval, spec: &Spec, relaxation: &Relaxation, beta: f64) -> Result<(Tensor<2>, Extras)> {
        let inter = intermediate(net, region, relaxation)?;
        let stability = match self.stability {
            Some((_, form)) => land::stability_loss(net, &inter.bounds, form),
            None => None,
        };
        let ibp_lb = if beta < 1.0 { Some(ibp_final_pass(net, region, spec, relaxation, &inter)?) } else { None };
        let (lb, slopes) = match relaxation.final_lower {
            LowerLine::Sampled(rule) if beta > 0.0 => {
                let chosen = slopes::choose(net, &inter.bounds, spec, &rule)?;
                let counts = SlopeCounts::of(net, &inter.bounds, &chosen);
                (Some(slopes::lower_bound_with(net, &inter.bounds, spec, &chosen, None)), Some(counts))
            }
            _ if beta > 0.0 => (Some(final_pass(net, region, spec, relaxation, inter.clone())?), None),
            _ => (None, None),
        };
        let lb = match (ibp_lb, lb) {
            (Some(i), Some(m)) => i * (1.0 - beta) + m * beta,
            (Some(i), None) => i,
            (None, Some(m)) => m,
            (None, None) => unreachable!("beta < 1 or beta > 0"),
        };
        Ok((lb, Extras { slopes, stability }))
    }

    /// The loss with the regularizers: the robust bound and d, r from one computation of the
    /// intermediate bounds.
    #[allow(clippy::too_many_arguments)]
    fn loss_with_tightness(
        &self,
        tracked: &Network,
        x: &Tensor<4>,
        y: &[usize],
        logits: Tensor<2>,
        natural: Tensor<1>,
        eps: f64,
        kappa: f64,
        beta: f64,
        seed: u64,
        method: Method,
        reg: RegWeights,
    ) -> Result<LossParts> {
        let (lb, t) = self.bound_and_tightness(tracked, x, y, eps, beta, seed, method)?;
        let (mut total, robust) = if kappa >= 1.0 {
            (natural.clone(), None)
        } else if kappa <= 0.0 {
            let r = robust_cross_entropy(lb);
            (r.clone(), Some(r))
        } else {
            let r = robust_cross_entropy(lb);
            (natural.clone() * kappa + r.clone() * (1.0 - kappa), Some(r))
        };
        let d = t.d.sum_dim(1).mean();
        let r = t.r.sum_dim(1).mean();
        if reg.d > 0.0 {
            total = total + d.clone() * reg.d;
        }
        if reg.r > 0.0 {
            total = total + r.clone() * reg.r;
        }
        if self.l1 > 0.0 {
            total = total + l1_norm(tracked) * self.l1;
        }
        Ok(LossParts { total, natural, robust, logits, reg_d: Some(d.detach()), reg_r: Some(r.detach()), extras: Extras::default() })
    }

    /// The margins' robust lower bound (as [`Objective::robust`] computes it) and the tightness
    /// of the relaxation behind it.
    #[allow(clippy::too_many_arguments)]
    fn bound_and_tightness(&self, net: &Network, x: &Tensor<4>, y: &[usize], eps: f64, beta: f64, seed: u64, method: Method) -> Result<(Tensor<2>, Tightness)> {
        let spec = Spec::margins(y, net.num_outputs(), &x.device())?;
        let region = input_region(x, eps, Some(CLIP));
        if self.projections > 0 {
            // The estimated zonotope gives the loss (as without regularizers); its ReLU input
            // bounds feed an exact final pass for d and r.
            let (z, pre) = zonotope::propagate_projected(net, &region, ReluLower::Parallel, Projections { count: self.projections, seed })?;
            let lb = zonotope::spec_lower(&z, spec.c.clone());
            return Ok((lb, regularizers::tightness_on(net, &pre, x, &spec, ReluLower::Parallel)?));
        }
        // mixed_lower_bound's computation in its order (so that weights 0 change no bit), with
        // the relaxation's final pass traced.
        let relaxation = method.relaxation().with_seed(seed);
        let lower = regularizers::linear_lower(&relaxation)?;
        let inter = intermediate(net, &region, &relaxation)?;
        let beta = if self.method.mixes_ibp() { beta } else { 1.0 };
        let ibp_lb = if beta < 1.0 { Some(ibp_final_pass(net, &region, &spec, &relaxation, &inter)?) } else { None };
        let t = regularizers::tightness_on(net, &inter.bounds, x, &spec, lower)?;
        let lb = match ibp_lb {
            Some(ibp_lb) => ibp_lb * (1.0 - beta) + t.lower.clone() * beta,
            None => t.lower.clone(),
        };
        Ok((lb, t))
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
