//! Training terms of the loss-landscape paper (LAND, Lee et al.; SPEC.md section 2) beyond the
//! slopes themselves (`bounds/slopes.rs`): what the slopes chose (its Figure 5), how many ReLUs
//! are unstable, and the ReLU-stability loss (its Appendix R, after Xiao et al. 2019), which
//! COLT's code also adds in another form.

use super::config::{TrainConfig, TrainMethod};
use crate::bounds::slopes::ReluSlopes;
use crate::bounds::{Interval, LowerLine, Method, SlopeRule, SlopeStart};
use crate::error::{Error, Result};
use crate::net::{Network, Op};
use crate::tensor::{to_vec, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The form of the ReLU-stability term on pre-activation bounds `l <= x <= u`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StabilityForm {
    /// `-tanh(1 + u l)` per neuron, averaged over the neurons of every ReLU layer (Xiao et al.,
    /// LAND Appendix R): largest for unstable neurons with wide bounds, about -0.76 or less for
    /// stable ones.
    #[default]
    Tanh,
    /// `relu(-l) relu(u)` per neuron, summed over the neurons (COLT's code): zero for stable
    /// neurons.
    Product,
}

/// The ReLU-stability loss `[1]` of the bounds of every ReLU input in `bounds` (index = value
/// id; value 0, the input region, is not a ReLU input and is skipped), the mean over the batch.
/// Differentiable through the bounds. Zero when no ReLU has bounds.
pub fn stability_loss(net: &Network, bounds: &[Option<Interval>], form: StabilityForm) -> Option<Tensor<1>> {
    let mut terms: Vec<(Tensor<1>, usize)> = Vec::new();
    for node in net.nodes() {
        let (Op::Relu, Some(b)) = (&node.op, &bounds[node.inputs[0]]) else { continue };
        let [n, c, h, w] = b.lo.dims();
        let f = c * h * w;
        let per_neuron = match form {
            StabilityForm::Tanh => ((b.lo.clone() * b.hi.clone()) + 1.0).tanh().neg(),
            StabilityForm::Product => b.lo.clone().neg().clamp_min(0.0) * b.hi.clone().clamp_min(0.0),
        };
        terms.push((per_neuron.reshape([n, f]).sum_dim(1).reshape([n]).mean(), f));
    }
    let neurons: usize = terms.iter().map(|(_, f)| f).sum();
    let total = terms.into_iter().map(|(t, _)| t).reduce(|a, b| a + b)?;
    Some(match form {
        StabilityForm::Tanh => total / neurons as f64,
        StabilityForm::Product => total,
    })
}

/// Counts over the unstable neurons of the slopes a training step used (LAND Figure 5): the
/// slope at 1 or 0, where the lower bound is the wider side (|l| > |u|) or not, and the slopes
/// strictly between (a random start the step did not move). Plus the share of unstable
/// neurons among all the ReLU neurons of the final pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlopeCounts {
    pub one_l_wider: f64,
    pub zero_l_wider: f64,
    pub one_u_wider: f64,
    pub zero_u_wider: f64,
    pub fractional: f64,
    pub unstable: f64,
    pub neurons: f64,
}

impl SlopeCounts {
    /// The counts of one step's slopes on `bounds` (the bounds they were chosen on).
    pub fn of(net: &Network, bounds: &[Option<Interval>], chosen: &[ReluSlopes]) -> SlopeCounts {
        let mut c = SlopeCounts::default();
        for r in chosen {
            let Some(b) = &bounds[net.nodes()[r.node].inputs[0]] else { continue };
            let (lo, hi) = (to_vec(b.lo.clone().detach()), to_vec(b.hi.clone().detach()));
            let (a, unstable) = (to_vec(r.slopes.clone().detach()), to_vec(r.unstable.clone()));
            c.neurons += a.len() as f64;
            for i in 0..a.len() {
                if unstable[i] == 0.0 {
                    continue;
                }
                c.unstable += 1.0;
                let l_wider = -lo[i] > hi[i];
                match (a[i], l_wider) {
                    (x, true) if x == 1.0 => c.one_l_wider += 1.0,
                    (x, true) if x == 0.0 => c.zero_l_wider += 1.0,
                    (x, false) if x == 1.0 => c.one_u_wider += 1.0,
                    (x, false) if x == 0.0 => c.zero_u_wider += 1.0,
                    _ => c.fractional += 1.0,
                }
            }
        }
        c
    }

    pub fn add(self, o: SlopeCounts) -> SlopeCounts {
        SlopeCounts {
            one_l_wider: self.one_l_wider + o.one_l_wider,
            zero_l_wider: self.zero_l_wider + o.zero_l_wider,
            one_u_wider: self.one_u_wider + o.one_u_wider,
            zero_u_wider: self.zero_u_wider + o.zero_u_wider,
            fractional: self.fractional + o.fractional,
            unstable: self.unstable + o.unstable,
            neurons: self.neurons + o.neurons,
        }
    }

    /// metrics.jsonl keys: `slopes_*` as shares of the unstable neurons (they sum to 1) and
    /// `slopes_unstable_ratio`, the share of unstable neurons, over the epoch's steps.
    pub fn keys(&self) -> BTreeMap<String, Value> {
        let share = |x: f64, of: f64| if of > 0.0 { Value::from(x / of) } else { Value::Null };
        let u = self.unstable;
        BTreeMap::from([
            ("slopes_one_l_wider".to_string(), share(self.one_l_wider, u)),
            ("slopes_zero_l_wider".to_string(), share(self.zero_l_wider, u)),
            ("slopes_one_u_wider".to_string(), share(self.one_u_wider, u)),
            ("slopes_zero_u_wider".to_string(), share(self.zero_u_wider, u)),
            ("slopes_fractional".to_string(), share(self.fractional, u)),
            ("slopes_unstable_ratio".to_string(), share(u, self.neurons)),
        ])
    }
}

/// The slope rule the `slope_*` keys ask for (None: the method's preset), checked: the keys
/// need one-step or random-slope, `slope_p` and `slope_q` come together and lie in [0, 1].
pub fn resolve_slopes(c: &TrainConfig, method: TrainMethod, err: &dyn Fn(&str, String) -> Error) -> Result<Option<SlopeRule>> {
    let given = [("slope_steps", c.slope_steps.is_some()), ("slope_step_size", c.slope_step_size.is_some()), ("slope_p", c.slope_p.is_some()), ("slope_q", c.slope_q.is_some())];
    let Some((key, _)) = given.iter().find(|(_, on)| *on) else { return Ok(None) };
    let TrainMethod::Bound(m @ (Method::OneStep | Method::RandomSlope)) = method else {
        return Err(err(key, format!("sets LAND's per-sample slopes: it needs method one-step or random-slope, not {method}")));
    };
    let LowerLine::Sampled(mut rule) = m.relaxation().final_lower else { unreachable!("one-step and random-slope sample their slopes") };
    for (key, v) in [("slope_p", c.slope_p), ("slope_q", c.slope_q)] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return Err(err(key, format!("is a probability and must lie in [0, 1], got {v}")));
            }
        }
    }
    match (c.slope_p, c.slope_q) {
        (Some(p), Some(q)) => rule.start = SlopeStart::Binary { p, q },
        (None, None) => {}
        (Some(_), None) => return Err(err("slope_p", "needs `slope_q` too (the probability where |l| <= |u|)".into())),
        (None, Some(_)) => return Err(err("slope_q", "needs `slope_p` too (the probability where |l| > |u|)".into())),
    }
    if let Some(steps) = c.slope_steps {
        rule.steps = steps;
    }
    if let Some(size) = c.slope_step_size {
        if !(size.is_finite() && size > 0.0) {
            return Err(err("slope_step_size", format!("must be a finite number > 0, got {size}")));
        }
        rule.step_size = size;
    }
    if rule.steps > 0 && rule.step_size == 0.0 {
        return Err(err("slope_steps", "needs `slope_step_size` > 0 (random-slope takes no steps of its own)".into()));
    }
    Ok(Some(rule))
}

/// The ReLU-stability weight and form of a bound method (None when off; COLT's is in its plan).
pub fn resolve_stability(c: &TrainConfig, method: TrainMethod, err: &dyn Fn(&str, String) -> Error) -> Result<Option<(f64, StabilityForm)>> {
    if !(c.relu_stability.is_finite() && c.relu_stability >= 0.0) {
        return Err(err("relu_stability", format!("must be a finite number >= 0, got {}", c.relu_stability)));
    }
    if c.relu_stability == 0.0 {
        return Ok(None);
    }
    match method {
        TrainMethod::Colt => Ok(None),
        TrainMethod::Bound(_) if c.projections == 0 && c.reg_d_weight == 0.0 && c.reg_r_weight == 0.0 && !c.log_regularizers => {
            Ok(Some((c.relu_stability, c.relu_stability_form.unwrap_or(StabilityForm::Tanh))))
        }
        TrainMethod::Bound(_) => Err(err("relu_stability", "cannot be combined with `projections` or the tightness regularizers".into())),
        _ => Err(err("relu_stability", format!("acts on the bounds of a relaxation: it needs a bound method or colt, not {method}"))),
    }
}
