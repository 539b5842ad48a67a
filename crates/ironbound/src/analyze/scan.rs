//! Continuity and sensitivity scans (paradox Section 4, Figures 3-4, Appendix E): the output
//! lower bounds and the robust loss of each relaxation along a path theta + delta * d of the
//! weights, with d on the first affine layer (weights and bias), and the jumps along it.
//!
//! A jump is a step between neighbouring grid points larger than the local variation
//! predicts: `|f(i+1) - f(i)| > JUMP_FACTOR` times the largest of the `WINDOW` steps on each
//! side, and above an absolute floor of `FLOOR_REL` times the curve's range. Where the curve
//! is continuous and piecewise smooth, a step across a kink lies between the slopes on its
//! two sides, so it never exceeds its largest neighbour by much; a jump of size J stays a
//! step of J however fine the grid. (A median of the neighbours is not enough: several
//! kinks close together make the neighbours small.)

use crate::bounds::{input_region, lower_bound, Method, Spec};
use crate::error::{Error, Result};
use crate::loss::robust_cross_entropy;
use crate::net::arch::{sequential, L};
use crate::net::init::SplitMix64;
use crate::net::{Network, Op, Param};
use crate::tensor::{from_vec, to_vec, Device, Tensor};
use serde::Serialize;
use std::collections::BTreeMap;

/// A step counts as a jump when it exceeds this many times its largest neighbour.
pub const JUMP_FACTOR: f64 = 10.0;
/// Neighbouring steps on each side that set the local variation.
pub const WINDOW: usize = 2;
/// Steps below this fraction of the curve's range (or of 1, when the range is smaller) are
/// never jumps: rounding noise on flat curves.
pub const FLOOR_REL: f64 = 1e-6;

/// The shift d of the first affine layer's weight and bias (shapes of that layer).
#[derive(Clone, Debug, PartialEq)]
pub struct Direction {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Direction {
    fn norm(&self) -> f64 {
        self.weight.iter().chain(&self.bias).map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt()
    }

    /// The same direction with unit Euclidean norm (an error for the zero direction).
    pub fn normalised(self) -> Result<Direction> {
        let n = self.norm();
        if !(n.is_finite() && n > 0.0) {
            return Err(Error::input("the scan direction is zero (or not finite); choose another direction or sample"));
        }
        let s = |v: Vec<f32>| v.into_iter().map(|x| (x as f64 / n) as f32).collect();
        Ok(Direction { weight: s(self.weight), bias: s(self.bias) })
    }

    /// Gaussian-free random direction: uniform in [-1, 1] per entry, seeded, unit norm.
    pub fn random(net: &Network, seed: u64) -> Result<Direction> {
        let (w, b) = first_layer_sizes(net)?;
        let mut rng = SplitMix64::new(seed);
        let mut draw = |n: usize| (0..n).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect::<Vec<f32>>();
        Direction { weight: draw(w), bias: draw(b) }.normalised()
    }

    /// The gradient of the real network's output `j` at `x` (`[1, C, H, W]`) with respect to
    /// the first layer, unit norm: paradox Section 4.3's "gradient direction of that output".
    pub fn gradient(net: &Network, x: &Tensor<4>, j: usize) -> Result<Direction> {
        let idx = first_affine(net)?;
        let mut tracked: Vec<Param> = Vec::new();
        let ad = rebuild(net, idx, &mut |_, p| {
            let p = p.require_grad();
            tracked.push(p.clone());
            p
        })?;
        let out = ad.forward(x.clone().autodiff());
        let k = out.dims()[1];
        if j >= k {
            return Err(Error::input(format!("output {j} does not exist: the model has {k} outputs")));
        }
        let grads = out.slice([0..1, j..j + 1]).sum().backward();
        let mut g = tracked.iter().map(|p| p.grad(&grads).map(|g| g.to_vec()).unwrap_or_else(|| vec![0.0; p.dims().iter().product()]));
        let (weight, bias) = (g.next().unwrap_or_default(), g.next().unwrap_or_default());
        Direction { weight, bias }.normalised()
    }

    /// Checks that a given direction fits the network's first layer.
    pub fn check(&self, net: &Network) -> Result<()> {
        let (w, b) = first_layer_sizes(net)?;
        if self.weight.len() != w || self.bias.len() != b {
            return Err(Error::input(format!(
                "the direction has {} weight and {} bias values, the model's first layer {w} and {b}",
                self.weight.len(),
                self.bias.len()
            )));
        }
        if self.weight.iter().chain(&self.bias).any(|v| !v.is_finite()) {
            return Err(Error::input("the direction has non-finite values"));
        }
        Ok(())
    }
}

/// The index of the first Linear or Conv2d node.
fn first_affine(net: &Network) -> Result<usize> {
    net.nodes()
        .iter()
        .position(|n| matches!(n.op, Op::Linear(_) | Op::Conv2d(_)))
        .ok_or_else(|| Error::input("the model has no linear or convolutional layer to shift"))
}

fn first_layer_sizes(net: &Network) -> Result<(usize, usize)> {
    let params = net.nodes()[first_affine(net)?].op.params();
    let size = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, p)| p.dims().iter().product()).unwrap_or(0);
    Ok((size("weight"), size("bias")))
}

/// The network with node `idx`'s parameters replaced by `f(local_name, param)`.
fn rebuild(net: &Network, idx: usize, f: &mut dyn FnMut(&str, Param) -> Param) -> Result<Network> {
    let mut out = Network::new(net.input_shape());
    for (i, node) in net.nodes().iter().enumerate() {
        let op = if i == idx { node.op.map_params(f) } else { node.op.clone() };
        out.push(node.name.clone(), op, &node.inputs)?;
    }
    Ok(out)
}

/// theta + delta * d.
pub fn shifted(net: &Network, d: &Direction, delta: f64) -> Result<Network> {
    let idx = first_affine(net)?;
    let add = |t: Vec<f32>, dv: &[f32]| -> Vec<f32> { t.iter().zip(dv).map(|(&a, &b)| (a as f64 + delta * b as f64) as f32).collect() };
    rebuild(net, idx, &mut |name, p| {
        let device = p.device();
        let dims = p.dims();
        let dv: &[f32] = if name == "weight" { &d.weight } else { &d.bias };
        let v = add(p.to_vec(), dv);
        match dims.len() {
            1 => Param::D1(from_vec(v, [dims[0]], &device)),
            2 => Param::D2(from_vec(v, [dims[0], dims[1]], &device)),
            _ => Param::D4(from_vec(v, [dims[0], dims[1], dims[2], dims[3]], &device)),
        }
    })
}

/// paradox Section 4.1's minimal network at w = 0: x1 = x2 = x0 + w (w the first layer's
/// bias, so the direction is bias (1, 1)), y1 = relu(x2) + 1, y2 = relu(x2) - relu(x1), on
/// x0 in [-1, 1]. CROWN's l(y1) jumps at w = 0 (from 1 to w), hBox's l(y2) at w = 1 (from -2
/// to 0); Box and DeepZ are continuous.
pub fn paradox_fig3(device: &Device) -> Result<(Network, Direction)> {
    let spec = sequential([1, 1, 1], &[L::Flatten, L::Fc(2), L::Relu, L::Fc(2)]);
    let net = spec.build(device, &mut |name, _| {
        Ok(match name {
            "1.weight" => vec![1.0, 1.0],
            "1.bias" => vec![0.0, 0.0],
            "3.weight" => vec![0.0, 1.0, -1.0, 1.0],
            "3.bias" => vec![1.0, 0.0],
            other => return Err(Error::internal(format!("paradox-fig3 has no parameter {other}"))),
        })
    })?;
    Ok((net, Direction { weight: vec![0.0, 0.0], bias: vec![1.0, 1.0] }))
}

#[derive(Clone, Debug)]
pub struct ScanConfig {
    pub methods: Vec<Method>,
    /// The deltas: `steps` values evenly spaced in [from, to].
    pub from: f64,
    pub to: f64,
    pub steps: usize,
    pub eps: f64,
    pub clip: Option<(f64, f64)>,
}

/// One detected jump: between `deltas[at]` and `deltas[at + 1]`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Jump {
    /// The output whose lower bound jumps, or `None` for the robust loss.
    pub output: Option<usize>,
    pub from: f64,
    pub to: f64,
    pub size: f64,
}

/// The scan's curves: per method, per delta, the output lower bounds and the robust loss.
#[derive(Clone, Debug, Serialize)]
pub struct Scan {
    pub deltas: Vec<f64>,
    pub methods: Vec<String>,
    pub label: usize,
    pub lower: BTreeMap<String, Vec<Vec<f32>>>,
    pub loss: BTreeMap<String, Vec<f32>>,
}

/// Indices i where f jumps between i and i + 1 (see the module comment for the rule).
pub fn jumps(values: &[f64]) -> Vec<usize> {
    let steps: Vec<f64> = values.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let floor = FLOOR_REL * (hi - lo).max(1.0);
    (0..steps.len())
        .filter(|&i| {
            let s = steps[i];
            if !(s > floor) {
                return false;
            }
            let near = (i.saturating_sub(WINDOW)..(i + WINDOW + 1).min(steps.len())).filter(|&k| k != i).map(|k| steps[k]);
            s > JUMP_FACTOR * near.fold(0.0, f64::max)
        })
        .collect()
}

/// The deltas of the scan, both ends included.
pub fn deltas(from: f64, to: f64, steps: usize) -> Result<Vec<f64>> {
    if steps < 2 {
        return Err(Error::input(format!("--steps must be at least 2, got {steps}")));
    }
    if !(from.is_finite() && to.is_finite() && from < to) {
        return Err(Error::input(format!("the scan range needs finite FROM < TO, got [{from}, {to}]")));
    }
    Ok((0..steps).map(|i| if i + 1 == steps { to } else { from + (to - from) * i as f64 / (steps - 1) as f64 }).collect())
}

/// Scans one input `x` (`[1, C, H, W]`) with label `label` along `d`.
pub fn scan(net: &Network, x: &Tensor<4>, label: usize, d: &Direction, cfg: &ScanConfig, progress: &mut dyn FnMut(usize)) -> Result<Scan> {
    d.check(net)?;
    if cfg.methods.is_empty() {
        return Err(Error::input("the method list is empty: give at least one method"));
    }
    let deltas = deltas(cfg.from, cfg.to, cfg.steps)?;
    let k = net.num_outputs();
    let device = x.device();
    let region = input_region(x, cfg.eps, cfg.clip);
    // Output rows first, then the label's margins: one pass gives both.
    let rows = Tensor::cat(vec![Spec::identity(k, &device).c, Spec::margins(&[label], k, &device)?.c], 1);
    let spec = Spec::new(rows);
    let methods: Vec<String> = cfg.methods.iter().map(|m| m.name().to_string()).collect();
    let mut lower: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    let mut loss: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (i, &delta) in deltas.iter().enumerate() {
        let moved = shifted(net, d, delta)?;
        for (m, name) in cfg.methods.iter().zip(&methods) {
            let lb = lower_bound(&moved, &region, &spec, &m.relaxation())?;
            let total = lb.dims()[1];
            let margins = lb.clone().slice([0..1, k..total]);
            lower.entry(name.clone()).or_default().push(to_vec(lb.slice([0..1, 0..k])));
            loss.entry(name.clone()).or_default().push(to_vec(robust_cross_entropy(margins))[0]);
        }
        progress(i + 1);
    }
    Ok(Scan { deltas, methods, label, lower, loss })
}

impl Scan {
    /// Every jump per method: in each output's lower bound and in the robust loss.
    pub fn jumps(&self) -> BTreeMap<String, Vec<Jump>> {
        let mut out = BTreeMap::new();
        for m in &self.methods {
            let mut found = Vec::new();
            let outputs = self.lower[m].first().map_or(0, Vec::len);
            let curves = (0..outputs).map(|j| (Some(j), self.lower[m].iter().map(|v| v[j] as f64).collect::<Vec<f64>>())).chain(std::iter::once((None, self.loss[m].iter().map(|&v| v as f64).collect())));
            for (output, ys) in curves {
                for i in jumps(&ys) {
                    found.push(Jump { output, from: self.deltas[i], to: self.deltas[i + 1], size: ys[i + 1] - ys[i] });
                }
            }
            out.insert(m.clone(), found);
        }
        out
    }

    /// `scan.csv`: `delta,method,robust_loss,lower_0,...`.
    pub fn csv(&self) -> String {
        let outputs = self.methods.first().and_then(|m| self.lower[m].first()).map_or(0, Vec::len);
        let mut out = String::from("delta,method,robust_loss");
        for j in 0..outputs {
            out.push_str(&format!(",lower_{j}"));
        }
        out.push('\n');
        for m in &self.methods {
            for (i, delta) in self.deltas.iter().enumerate() {
                out.push_str(&format!("{delta},{m},{}", self.loss[m][i]));
                for v in &self.lower[m][i] {
                    out.push_str(&format!(",{v}"));
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::default_device;

    #[test]
    fn jump_rule_finds_steps_not_kinks() {
        let xs: Vec<f64> = (0..401).map(|i| -2.0 + 0.01 * i as f64).collect();
        // |x| has a kink, 1/(1+x^2) curvature: no jumps; a unit step at 0.5: one jump.
        assert!(jumps(&xs.iter().map(|x| x.abs()).collect::<Vec<_>>()).is_empty());
        assert!(jumps(&xs.iter().map(|x| 1.0 / (1.0 + x * x)).collect::<Vec<_>>()).is_empty());
        assert!(jumps(&xs.iter().map(|x| 0.0 * x).collect::<Vec<_>>()).is_empty());
        // Slope 1, then flat for two steps, then slope 1/100: kinks, no jump.
        let kinks: Vec<f64> = xs.iter().map(|&x| if x < 0.0 { x } else if x < 0.02 { 0.0 } else { (x - 0.02) / 100.0 }).collect();
        assert!(jumps(&kinks).is_empty());
        let step: Vec<f64> = xs.iter().map(|&x| if x < 0.5 { x } else { x + 1.0 }).collect();
        let found = jumps(&step);
        assert_eq!(found.len(), 1);
        assert!(xs[found[0]] < 0.5 && xs[found[0] + 1] >= 0.5);
    }

    #[test]
    fn paradox_fig3_has_the_papers_jumps() {
        let device = default_device();
        let (net, d) = paradox_fig3(&device).unwrap();
        let x = from_vec(vec![0.0], [1, 1, 1, 1], &device);
        let methods = vec![Method::Ibp, Method::Hbox, Method::Deepz, Method::Crown, Method::CrownIbp];
        let cfg = ScanConfig { methods, from: -2.0, to: 2.0, steps: 401, eps: 1.0, clip: None };
        let s = scan(&net, &x, 0, &d, &cfg, &mut |_| {}).unwrap();
        let jumps = s.jumps();
        let bound_jumps = |m: &str| -> Vec<(usize, f64, f64, f64)> { jumps[m].iter().filter_map(|j| j.output.map(|o| (o, j.from, j.to, j.size))).collect() };
        assert!(bound_jumps("ibp").is_empty() && bound_jumps("deepz").is_empty(), "{jumps:?}");
        // CROWN (and CROWN-IBP, whose final pass is CROWN's): l(y1) = 1 for w <= 0, w after.
        for m in ["crown", "crown-ibp"] {
            let j = bound_jumps(m);
            assert_eq!(j.len(), 1, "{m}: {j:?}");
            let (o, from, to, size) = j[0];
            assert_eq!(o, 0);
            assert!(from <= 0.0 && to > 0.0 && (size + 1.0).abs() < 0.02, "{m}: {j:?}");
        }
        // hBox: l(y2) = -1 - w on (-1, 1), 0 from w = 1 on.
        let j = bound_jumps("hbox");
        assert_eq!(j.len(), 1, "{j:?}");
        let (o, from, to, size) = j[0];
        assert!(o == 1 && from >= 0.98 && to <= 1.02 && (size - 2.0).abs() < 0.02, "{j:?}");
        // The closed forms at a few points.
        let at = |m: &str, w: f64, o: usize| s.lower[m][s.deltas.iter().position(|&d| (d - w).abs() < 1e-9).unwrap()][o];
        assert_eq!(at("crown", -0.5, 0), 1.0);
        assert!((at("crown", 0.5, 0) - 0.5).abs() < 1e-6);
        assert!((at("hbox", 0.5, 1) + 1.5).abs() < 1e-6);
        assert_eq!(at("hbox", 1.5, 1), 0.0);
    }
}
