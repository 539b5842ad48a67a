//! Loss-landscape measurements during training (Lee et al., "Loss Landscape Matters",
//! Section 4.1, Appendix A.1, H and J; SPEC.md 2.3). With `landscape_every = K`, `ironbound
//! train` measures, at the end of every K-th epoch, under the training objective at that
//! epoch's last eps, kappa and beta and its learning rate eta:
//!
//! - the loss along the gradient direction, `L(theta(t))` with
//!   `theta(t) = theta0 - t * eta * grad L(theta0)` (the plain gradient, not the optimiser's
//!   step, Eq. 8), at the step lengths [`step_lengths`]: 0, 1 and ten log-spaced points in
//!   [0.5, 5] (the paper: "ten points from [0,5] on a log scale"; these are its code's). The
//!   loss variation is `max_t L - min_t L` (Figure 1's band, Figures 7-9);
//! - the cosine similarity `cos(grad L(theta(0)), grad L(theta(1)))` of consecutive gradients
//!   (Figure 2, top) and their difference `||grad L(theta(0)) - grad L(theta(1))||_2`
//!   (Appendix H, Figure 10; also its RMS over the parameters, which the authors' code logs);
//! - the ratio of unstable ReLUs (`l < 0 < u`) per ReLU layer and overall, with the training
//!   relaxation's intermediate bounds at the current eps (IBP bounds for natural and PGD
//!   training), and of active (`l >= 0`) and dead (`u <= 0`) ones (Figure 2 bottom, Appendix J).
//!
//! The measured batches are the first `landscape_batches` batches of the training split in
//! its stored order (no shuffle, no augmentation), the same every epoch. Each batch is
//! measured on its own, as the paper does at a training step; the keys hold the means over
//! the batches (the ReLU ratios are pooled over all their samples). The loss's randomness
//! (PGD starts, random projections, random slope starts) comes from a stream of its own,
//! drawn once per batch and shared by all t, so the landscape is deterministic (as the paper
//! fixes CAP's Cauchy matrix). Nothing here changes the network, the optimiser or any random
//! stream of training: a run measured every epoch trains bit for bit like one that is not.

use super::batches::{self, Stream};
use super::config::TrainMethod;
use super::objective::{Objective, CLIP};
use super::optim::{gradients, is_trainable, sum_gradients, ParamGrads};
use super::schedule::StepValues;
use crate::bounds::{input_region, intermediate, interval, Method};
use crate::data::Dataset;
use crate::error::Result;
use crate::loss::one_hot;
use crate::net::{Network, Op, Param};
use crate::tensor::{from_vec, to_vec, Device, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// Every key this module writes into metrics.jsonl starts with this.
pub const PREFIX: &str = "landscape_";

/// The step lengths t of `theta(t)`, ascending: 0, 1, and `0.5 * 10^(k/9)` for k = 0..9
/// (LAND's code: `{0} + logspace(log10 0.5, log10 5, 10) + {1}`).
pub fn step_lengths() -> Vec<f64> {
    let mut t: Vec<f64> = (0..10).map(|k| 0.5 * 10f64.powf(k as f64 / 9.0)).collect();
    t.push(0.0);
    t.push(1.0);
    t.sort_by(f64::total_cmp);
    t
}

/// One measurement (means over the measured batches).
#[derive(Clone, Debug, PartialEq)]
pub struct Landscape {
    /// The step lengths and the mean loss at each.
    pub t: Vec<f64>,
    pub loss_curve: Vec<f64>,
    /// `L(theta(0))` and `L(theta(1))`.
    pub loss: f64,
    pub loss_next: f64,
    /// Means over the batches of `min_t L`, `max_t L` and `max_t L - min_t L`.
    pub loss_min: f64,
    pub loss_max: f64,
    pub loss_variation: f64,
    /// `||grad L(theta(0))||_2` and `||grad L(theta(1))||_2`.
    pub grad_norm: f64,
    pub grad_norm_next: f64,
    /// Mean cosine over the batches whose two gradients are non-zero (None if none is).
    pub grad_cosine: Option<f64>,
    /// `||g0 - g1||_2` and `||g0 - g1||_2 / sqrt(number of trainable parameters)`.
    pub grad_diff: f64,
    pub grad_diff_rms: f64,
    /// Unstable ReLUs per ReLU layer (in network order) and overall; active and dead overall.
    pub unstable_ratio_layers: Vec<f64>,
    pub unstable_ratio: f64,
    pub active_ratio: f64,
    pub dead_ratio: f64,
    pub batches: usize,
    pub samples: usize,
    pub seconds: f64,
}

impl Landscape {
    /// The metrics.jsonl keys (all numbers, except `landscape_loss_curve`, the list of the
    /// mean losses at the step lengths of [`step_lengths`]).
    pub fn keys(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Value| {
            m.insert(format!("{PREFIX}{k}"), v);
        };
        for (k, v) in [
            ("loss", self.loss),
            ("loss_next", self.loss_next),
            ("loss_min", self.loss_min),
            ("loss_max", self.loss_max),
            ("loss_variation", self.loss_variation),
            ("grad_norm", self.grad_norm),
            ("grad_norm_next", self.grad_norm_next),
            ("grad_diff", self.grad_diff),
            ("grad_diff_rms", self.grad_diff_rms),
            ("unstable_ratio", self.unstable_ratio),
            ("active_ratio", self.active_ratio),
            ("dead_ratio", self.dead_ratio),
            ("seconds", self.seconds),
        ] {
            put(k, number(v));
        }
        put("grad_cosine", self.grad_cosine.map_or(Value::Null, number));
        for (i, r) in self.unstable_ratio_layers.iter().enumerate() {
            put(&format!("unstable_ratio_layer{}", i + 1), number(*r));
        }
        put("loss_curve", Value::Array(self.loss_curve.iter().map(|&v| number(v)).collect()));
        put("batches", Value::from(self.batches));
        put("samples", Value::from(self.samples));
        m
    }
}

/// A JSON number (null for a non-finite value, which JSON cannot hold).
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// What the trainer keeps between epochs: the measured batches and the settings.
pub struct Probe {
    every: usize,
    batches: Vec<(Tensor<4>, Vec<usize>)>,
    classes: usize,
    seed: u64,
    threads: usize,
}

impl Probe {
    /// The probe of a run measuring every `every` epochs (None for 0) on the first `count`
    /// batches of `batch_size` samples of `train`.
    pub fn new(every: usize, count: usize, batch_size: usize, train: &Dataset, classes: usize, seed: u64, threads: usize, device: &Device) -> Option<Probe> {
        if every == 0 || train.is_empty() {
            return None;
        }
        let n = train.len().min(count.max(1).saturating_mul(batch_size.max(1)));
        let s = train.shape;
        let batches = (0..n)
            .collect::<Vec<_>>()
            .chunks(batch_size.max(1))
            .map(|idx| {
                let (pixels, y) = batches::gather(train, idx, None);
                (from_vec(pixels, [idx.len(), s[0], s[1], s[2]], device), y)
            })
            .collect();
        Some(Probe { every, batches, classes, seed, threads: threads.max(1) })
    }

    /// Whether the 1-based epoch `epoch` is measured.
    pub fn due(&self, epoch: usize) -> bool {
        epoch % self.every == 0
    }

    /// Measures `net` at the end of 0-based epoch `epoch` with the step values `v` (eps 0
    /// during warm-up) and learning rate `lr`.
    pub fn measure(&self, net: &Network, objective: &Objective, v: &StepValues, lr: f64, epoch: usize) -> Result<Landscape> {
        let start = Instant::now();
        let ts = step_lengths();
        let mut rng = batches::rng(self.seed, Stream::Landscape, epoch as u64);
        let mut sums = Sums { curve: vec![0.0; ts.len()], ..Sums::default() };
        let mut counts: Vec<[u64; 3]> = Vec::new();
        for (x, y) in &self.batches {
            let seed = rng.next_u64();
            let (l0, g0) = self.loss_and_grad(objective, net, x, y, v, seed, true)?;
            let g0 = g0.unwrap_or_default();
            let at = |t: f64| step(net, &g0, t * lr);
            let (l1, g1) = self.loss_and_grad(objective, &at(1.0), x, y, v, seed, true)?;
            let g1 = g1.unwrap_or_default();
            let mut losses = Vec::with_capacity(ts.len());
            for &t in &ts {
                losses.push(if t == 0.0 {
                    l0
                } else if t == 1.0 {
                    l1
                } else {
                    self.loss_and_grad(objective, &at(t), x, y, v, seed, false)?.0
                });
            }
            let (min, max) = losses.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &l| (a.min(l), b.max(l)));
            let g = compare(net, &g0, &g1);
            for (c, l) in sums.curve.iter_mut().zip(&losses) {
                *c += l;
            }
            sums.min += min;
            sums.max += max;
            sums.variation += max - min;
            sums.norm0 += g.dot00.sqrt();
            sums.norm1 += g.dot11.sqrt();
            sums.diff += g.diff2.sqrt();
            sums.diff_rms += (g.diff2 / g.count.max(1) as f64).sqrt();
            if g.dot00 > 0.0 && g.dot11 > 0.0 {
                sums.cosine += g.dot01 / (g.dot00.sqrt() * g.dot11.sqrt());
                sums.cosines += 1;
            }
            let layers = relu_states(net, x, v.eps, objective.method)?;
            if counts.is_empty() {
                counts = vec![[0; 3]; layers.len()];
            }
            for (acc, c) in counts.iter_mut().zip(layers) {
                for i in 0..3 {
                    acc[i] += c[i];
                }
            }
        }
        let b = self.batches.len().max(1) as f64;
        let ratio = |num: u64, den: u64| if den == 0 { 0.0 } else { num as f64 / den as f64 };
        let total = |i: usize| counts.iter().map(|c| c[i]).sum::<u64>();
        let all = total(0) + total(1) + total(2);
        Ok(Landscape {
            loss_curve: sums.curve.iter().map(|c| c / b).collect(),
            loss: sums.curve[ts.iter().position(|&t| t == 0.0).unwrap_or(0)] / b,
            loss_next: sums.curve[ts.iter().position(|&t| t == 1.0).unwrap_or(0)] / b,
            t: ts,
            loss_min: sums.min / b,
            loss_max: sums.max / b,
            loss_variation: sums.variation / b,
            grad_norm: sums.norm0 / b,
            grad_norm_next: sums.norm1 / b,
            grad_cosine: (sums.cosines > 0).then(|| sums.cosine / sums.cosines as f64),
            grad_diff: sums.diff / b,
            grad_diff_rms: sums.diff_rms / b,
            unstable_ratio_layers: counts.iter().map(|c| ratio(c[0], c[0] + c[1] + c[2])).collect(),
            unstable_ratio: ratio(total(0), all),
            active_ratio: ratio(total(1), all),
            dead_ratio: ratio(total(2), all),
            batches: self.batches.len(),
            samples: self.batches.iter().map(|(_, y)| y.len()).sum(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The batch's training loss (its mean over the samples) and, with `grad`, its gradient,
    /// computed in shards on parallel threads as a training step is.
    #[allow(clippy::too_many_arguments)]
    fn loss_and_grad(&self, objective: &Objective, net: &Network, x: &Tensor<4>, y: &[usize], v: &StepValues, seed: u64, grad: bool) -> Result<(f64, Option<ParamGrads>)> {
        let n = y.len();
        let [_, c, h, w] = x.dims();
        let shard = |j: usize, rows: std::ops::Range<usize>| -> Result<(f64, Option<ParamGrads>)> {
            let weight = rows.len() as f64 / n as f64;
            let xs = x.clone().slice([rows.clone(), 0..c, 0..h, 0..w]);
            let ys = &y[rows];
            let oh = one_hot(ys, self.classes, &x.device());
            let shard_seed = seed.wrapping_add(j as u64);
            if !grad {
                let parts = objective.loss(net, net, &xs, ys, &oh, v.eps, v.kappa, v.beta, v.warmup, shard_seed)?;
                return Ok((weight * f64::from(parts.total.into_scalar::<f32>()), None));
            }
            let tracked = track(net);
            let parts = objective.loss(&tracked, net, &xs, ys, &oh, v.eps, v.kappa, v.beta, v.warmup, shard_seed)?;
            let loss = weight * f64::from(parts.total.clone().into_scalar::<f32>());
            let total = if weight == 1.0 { parts.total } else { parts.total * weight };
            Ok((loss, Some(gradients(&tracked, &total.backward()))))
        };
        let parts = batches::in_parallel(batches::shards(n, self.threads), &shard)?;
        let loss = parts.iter().map(|p| p.0).sum();
        let grads = grad.then(|| sum_gradients(parts.into_iter().filter_map(|p| p.1).collect()));
        Ok((loss, grads))
    }
}

#[derive(Default)]
struct Sums {
    curve: Vec<f64>,
    min: f64,
    max: f64,
    variation: f64,
    norm0: f64,
    norm1: f64,
    cosine: f64,
    cosines: usize,
    diff: f64,
    diff_rms: f64,
}

/// The network with its trainable parameters tracked for gradients (as `Optimizer::track`).
fn track(net: &Network) -> Network {
    net.map_params(&mut |name, p| if is_trainable(name) { p.plain().require_grad() } else { p })
}

/// `theta - scale * g` for the trainable parameters (those without a gradient stay).
pub fn step(net: &Network, grads: &ParamGrads, scale: f64) -> Network {
    let mut i = 0usize;
    net.map_params(&mut |name, p| {
        if !is_trainable(name) {
            return p;
        }
        let g = grads.get(i).cloned().flatten();
        i += 1;
        match (p.plain(), g) {
            (Param::D1(p), Some(Param::D1(g))) => Param::D1(p - g * scale),
            (Param::D2(p), Some(Param::D2(g))) => Param::D2(p - g * scale),
            (Param::D4(p), Some(Param::D4(g))) => Param::D4(p - g * scale),
            (p, _) => p,
        }
    })
}

/// Inner products of two gradient lists of `net` in f64: `g0.g0`, `g1.g1`, `g0.g1`,
/// `|g0 - g1|^2`, and the number of trainable parameters (a missing gradient counts as 0).
struct Compared {
    dot00: f64,
    dot11: f64,
    dot01: f64,
    diff2: f64,
    count: usize,
}

fn compare(net: &Network, g0: &ParamGrads, g1: &ParamGrads) -> Compared {
    let mut sizes = Vec::new();
    net.map_params(&mut |name, p| {
        if is_trainable(name) {
            sizes.push(p.dims().iter().product::<usize>());
        }
        p
    });
    let mut c = Compared { dot00: 0.0, dot11: 0.0, dot01: 0.0, diff2: 0.0, count: sizes.iter().sum() };
    for (i, &size) in sizes.iter().enumerate() {
        let get = |g: &ParamGrads| g.get(i).cloned().flatten().map(|p| p.to_vec()).unwrap_or_else(|| vec![0.0; size]);
        let (a, b) = (get(g0), get(g1));
        for (&x, &y) in a.iter().zip(&b) {
            let (x, y) = (f64::from(x), f64::from(y));
            c.dot00 += x * x;
            c.dot11 += y * y;
            c.dot01 += x * y;
            c.diff2 += (x - y) * (x - y);
        }
    }
    c
}

/// Per ReLU layer (network order): how many of its neurons over the batch are unstable
/// (`l < 0 < u`), active (`l >= 0`) and dead (`u <= 0`), with the intermediate bounds of the
/// training relaxation (IBP's for natural and PGD training) over the eps ball.
pub fn relu_states(net: &Network, x: &Tensor<4>, eps: f64, method: TrainMethod) -> Result<Vec<[u64; 3]>> {
    let region = input_region(x, eps, Some(CLIP));
    let relaxation = match method {
        TrainMethod::Bound(m) => m.relaxation(),
        TrainMethod::Natural | TrainMethod::Pgd | TrainMethod::Colt => Method::Ibp.relaxation(),
    };
    let inter = intermediate(net, &region, &relaxation)?;
    let mut ibp = None;
    let mut out = Vec::new();
    for node in net.nodes() {
        if !matches!(node.op, Op::Relu) {
            continue;
        }
        let v = node.inputs[0];
        let b = match inter.bounds.get(v).cloned().flatten() {
            Some(b) => b,
            None => ibp.get_or_insert_with(|| interval::propagate(net, &region))[v].clone(),
        };
        let (lo, hi) = (to_vec(b.lo), to_vec(b.hi));
        let mut c = [0u64; 3];
        for (l, u) in lo.iter().zip(&hi) {
            let i = if *l < 0.0 && *u > 0.0 {
                0
            } else if *u <= 0.0 {
                2
            } else {
                1
            };
            c[i] += 1;
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "landscape_tests.rs"]
mod tests;
