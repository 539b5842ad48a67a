//! Shared helpers for the bound-engine tests: an independent dense f64 reference of every
//! relaxation (here), random network/input builders and a sampler (`nets.rs`).
//!
//! The reference never calls the bound engine: it reads the network's parameters, builds dense
//! matrices with explicit loops and implements interval arithmetic, back-substitution and
//! zonotope propagation with plain loops over `Vec<f64>`, one sample at a time.
#![allow(dead_code)]

mod nets;
mod synthetic;
// Each test crate uses some of these: the rest is not dead, only unused there.
#[allow(unused_imports)]
pub use nets::*;
#[allow(unused_imports)]
pub use synthetic::{small_run, synthetic};

use ironbound::bounds::Method;
use ironbound::net::{Network, Op};
use ironbound::tensor::to_vec;

// ---------------------------------------------------------------- dense network

/// One layer of the dense reference: `y = W x + b` (W row-major `[n_out, n_in]`) or a ReLU.
#[derive(Clone, Debug)]
pub enum Layer {
    Affine { w: Vec<f64>, b: Vec<f64>, n_in: usize, n_out: usize },
    Relu,
}

/// A sequential network as dense affine maps and ReLUs (Flatten dropped: row-major identity).
#[derive(Clone, Debug)]
pub struct Dense {
    pub n_in: usize,
    pub layers: Vec<Layer>,
}

fn f64s(t: Vec<f32>) -> Vec<f64> {
    t.into_iter().map(f64::from).collect()
}

pub fn dense(net: &Network) -> Dense {
    let mut layers = Vec::new();
    for (i, node) in net.nodes().iter().enumerate() {
        assert_eq!(node.inputs, vec![i], "the dense reference handles sequential networks only");
        let [ci, hi, wi] = net.shape(i);
        let [co, ho, wo] = net.shape(i + 1);
        let (n_in, n_out) = (ci * hi * wi, co * ho * wo);
        match &node.op {
            Op::Relu => layers.push(Layer::Relu),
            Op::Flatten(_) => {}
            Op::Linear(l) => {
                let w = f64s(to_vec(l.weight.clone()));
                assert_eq!(w.len(), n_in * n_out);
                layers.push(Layer::Affine { w, b: f64s(to_vec(l.bias.clone())), n_in, n_out });
            }
            Op::Conv2d(c) => {
                let kw4 = f64s(to_vec(c.weight.clone()));
                let bias = f64s(to_vec(c.bias.clone()));
                let [kh, kw] = [c.weight.dims()[2], c.weight.dims()[3]];
                let (s, p) = (c.stride, c.padding);
                let mut w = vec![0.0; n_out * n_in];
                let mut b = vec![0.0; n_out];
                for o in 0..co {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let row = (o * ho + oy) * wo + ox;
                            b[row] = bias[o];
                            for ic in 0..ci {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy = (oy * s[0] + ky) as isize - p[0] as isize;
                                        let ix = (ox * s[1] + kx) as isize - p[1] as isize;
                                        if iy < 0 || ix < 0 || iy >= hi as isize || ix >= wi as isize {
                                            continue; // zero padding
                                        }
                                        let col = (ic * hi + iy as usize) * wi + ix as usize;
                                        w[row * n_in + col] += kw4[((o * ci + ic) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                        }
                    }
                }
                layers.push(Layer::Affine { w, b, n_in, n_out });
            }
            Op::Normalize(nm) => {
                let (mean, std) = (f64s(to_vec(nm.mean.clone())), f64s(to_vec(nm.std.clone())));
                let mut w = vec![0.0; n_in * n_in];
                let mut b = vec![0.0; n_in];
                for j in 0..n_in {
                    let c = j / (hi * wi);
                    w[j * n_in + j] = 1.0 / std[c];
                    b[j] = -mean[c] / std[c];
                }
                layers.push(Layer::Affine { w, b, n_in, n_out });
            }
            other => panic!("dense reference: unsupported op {}", other.kind()),
        }
    }
    Dense { n_in: numel(net.input_shape()), layers }
}

fn numel(s: [usize; 3]) -> usize {
    s.iter().product()
}

fn affine(w: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    let n_in = x.len();
    b.iter().enumerate().map(|(o, bo)| bo + (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum::<f64>()).collect()
}

impl Dense {
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut v = x.to_vec();
        for layer in &self.layers {
            v = match layer {
                Layer::Affine { w, b, .. } => affine(w, b, &v),
                Layer::Relu => v.iter().map(|a| a.max(0.0)).collect(),
            };
        }
        v
    }
}

// ---------------------------------------------------------------- relaxations

/// The ReLU lower line of an unstable neuron (l < 0 < u).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// The output replaced by the box [0, u] (IBP/hBox): lower 0, upper constant u.
    Box,
    /// CROWN: slope 1 if u > -l else 0.
    Adaptive,
    /// CROWN-0: slope 0.
    Zero,
    /// DeepZ/CAP: slope u / (u - l).
    Parallel,
}

/// (lower slope, upper slope, upper intercept) of one neuron with input bounds [l, u].
pub fn relu_line(l: f64, u: f64, rule: Rule) -> (f64, f64, f64) {
    if l >= 0.0 {
        return (1.0, 1.0, 0.0);
    }
    if u <= 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let chord = u / (u - l);
    match rule {
        Rule::Box => (0.0, 0.0, u),
        Rule::Adaptive => (if u > -l { 1.0 } else { 0.0 }, chord, -chord * l),
        Rule::Zero => (0.0, chord, -chord * l),
        Rule::Parallel => (chord, chord, -chord * l),
    }
}

/// Bounds of one vector value.
pub type Bounds = (Vec<f64>, Vec<f64>);

/// Interval bounds of every value (index 0 = input, i + 1 = output of layer i).
pub fn ibp_all(d: &Dense, lo: &[f64], hi: &[f64]) -> Vec<Bounds> {
    let mut out = vec![(lo.to_vec(), hi.to_vec())];
    for layer in &d.layers {
        let (l, u) = out.last().unwrap().clone();
        out.push(match layer {
            Layer::Relu => (l.iter().map(|a| a.max(0.0)).collect(), u.iter().map(|a| a.max(0.0)).collect()),
            Layer::Affine { w, b, n_in, n_out } => {
                let (mut nl, mut nu) = (b.clone(), b.clone());
                for o in 0..*n_out {
                    for i in 0..*n_in {
                        let a = w[o * n_in + i];
                        nl[o] += if a > 0.0 { a * l[i] } else { a * u[i] };
                        nu[o] += if a > 0.0 { a * u[i] } else { a * l[i] };
                    }
                }
                (nl, nu)
            }
        });
    }
    out
}

/// Lower bounds of `rows . value(top) + cst` by back-substitution to the input box, where
/// `pre[i]` holds the bounds of the input of ReLU layer i (needed for every ReLU below `top`).
pub fn backsub(d: &Dense, top: usize, rows: &[Vec<f64>], pre: &[Option<Bounds>], rule: Rule, lo: &[f64], hi: &[f64]) -> Vec<f64> {
    rows.iter()
        .map(|row| {
            let mut a = row.clone();
            let mut cst = 0.0;
            for i in (0..top).rev() {
                match &d.layers[i] {
                    Layer::Affine { w, b, n_in, n_out } => {
                        cst += (0..*n_out).map(|o| a[o] * b[o]).sum::<f64>();
                        a = (0..*n_in).map(|j| (0..*n_out).map(|o| a[o] * w[o * n_in + j]).sum()).collect();
                    }
                    Layer::Relu => {
                        let (l, u) = pre[i].as_ref().expect("bounds of every ReLU input");
                        for j in 0..a.len() {
                            let (ls, us, ui) = relu_line(l[j], u[j], rule);
                            if a[j] >= 0.0 {
                                a[j] *= ls;
                            } else {
                                cst += a[j] * ui;
                                a[j] *= us;
                            }
                        }
                    }
                }
            }
            cst + (0..a.len()).map(|j| if a[j] > 0.0 { a[j] * lo[j] } else { a[j] * hi[j] }).sum::<f64>()
        })
        .collect()
}

fn identity_pair(n: usize) -> Vec<Vec<f64>> {
    (0..2 * n).map(|r| (0..n).map(|j| if j == r % n { if r < n { 1.0 } else { -1.0 } } else { 0.0 }).collect()).collect()
}

/// Bounds of every ReLU input (index = layer), by interval arithmetic or by back-substitution
/// with `rule` (bounds of the value before ReLU i back-substituted with `[I; -I]`).
pub fn intermediate(d: &Dense, lo: &[f64], hi: &[f64], by_backsub: Option<Rule>) -> Vec<Option<Bounds>> {
    let mut pre: Vec<Option<Bounds>> = vec![None; d.layers.len()];
    let ibp = ibp_all(d, lo, hi);
    for (i, layer) in d.layers.iter().enumerate() {
        if !matches!(layer, Layer::Relu) {
            continue;
        }
        pre[i] = Some(match by_backsub {
            None => ibp[i].clone(),
            Some(rule) => {
                let n = ibp[i].0.len();
                let lb = backsub(d, i, &identity_pair(n), &pre, rule, lo, hi);
                (lb[..n].to_vec(), lb[n..].iter().map(|v| -v).collect())
            }
        });
    }
    pre
}

/// Lower bounds of `c . f(x)` by IBP with the spec folded into the last affine layer.
pub fn ibp_spec(d: &Dense, lo: &[f64], hi: &[f64], c: &[Vec<f64>]) -> Vec<f64> {
    let all = ibp_all(d, lo, hi);
    let last = d.layers.len() - 1;
    assert!(matches!(d.layers[last], Layer::Affine { .. }), "the last layer must be affine");
    let (l, u) = &all[last];
    // one back-substitution step through the last layer, then concretise on its input box
    let step = Dense { n_in: l.len(), layers: vec![d.layers[last].clone()] };
    backsub(&step, 1, c, &[None], Rule::Box, l, u)
}

/// Forward zonotope propagation with parallel ReLU lines (Box = hBox, Parallel = DeepZ);
/// returns lower bounds of `c . f(x)` on the output zonotope.
pub fn zonotope_spec(d: &Dense, lo: &[f64], hi: &[f64], rule: Rule, c: &[Vec<f64>]) -> Vec<f64> {
    assert!(matches!(rule, Rule::Box | Rule::Parallel));
    let n = lo.len();
    let mut center: Vec<f64> = (0..n).map(|j| (lo[j] + hi[j]) / 2.0).collect();
    // gens[j] = coefficients of neuron j on every noise symbol so far
    let mut gens: Vec<Vec<f64>> = (0..n).map(|j| (0..n).map(|g| if g == j { (hi[j] - lo[j]) / 2.0 } else { 0.0 }).collect()).collect();
    let mut num_gens = n;
    for layer in &d.layers {
        match layer {
            Layer::Affine { w, b, n_in, n_out } => {
                center = affine(w, b, &center);
                gens = (0..*n_out)
                    .map(|o| (0..num_gens).map(|g| (0..*n_in).map(|i| w[o * n_in + i] * gens[i][g]).sum()).collect())
                    .collect();
            }
            Layer::Relu => {
                let width = center.len();
                for j in 0..width {
                    let r: f64 = gens[j].iter().map(|v| v.abs()).sum();
                    let (l, u) = (center[j] - r, center[j] + r);
                    let (lambda, _, gap) = relu_line(l, u, rule);
                    center[j] = lambda * center[j] + gap / 2.0;
                    for g in gens[j].iter_mut() {
                        *g *= lambda;
                    }
                    if gap > 0.0 {
                        for (k, row) in gens.iter_mut().enumerate() {
                            row.push(if k == j { gap / 2.0 } else { 0.0 });
                        }
                        num_gens += 1;
                    }
                }
            }
        }
    }
    c.iter()
        .map(|row| {
            let mid: f64 = row.iter().zip(&center).map(|(a, b)| a * b).sum();
            let spread: f64 = (0..num_gens).map(|g| row.iter().zip(&gens).map(|(a, gj)| a * gj[g]).sum::<f64>().abs()).sum();
            mid - spread
        })
        .collect()
}

/// How a reference relaxation computes intermediate bounds and the final bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pass {
    Ibp,
    Backsub(Rule),
    Zonotope(Rule),
}

/// The reference of each preset, written from the contract (not from `Method::relaxation`).
pub fn reference_of(m: Method) -> Option<(Pass, Pass)> {
    use Rule::*;
    Some(match m {
        Method::Ibp => (Pass::Ibp, Pass::Ibp),
        Method::Hbox => (Pass::Zonotope(Box), Pass::Zonotope(Box)),
        Method::Deepz => (Pass::Backsub(Parallel), Pass::Backsub(Parallel)),
        Method::Crown => (Pass::Backsub(Adaptive), Pass::Backsub(Adaptive)),
        Method::Crown0 => (Pass::Backsub(Zero), Pass::Backsub(Zero)),
        Method::CrownIbp => (Pass::Ibp, Pass::Backsub(Adaptive)),
        Method::CapIbp => (Pass::Ibp, Pass::Backsub(Parallel)),
        // Optimised or per-sample slopes: alpha-CROWN is checked against CROWN, LAND's slopes
        // against a reference with the engine's slopes (bounds_slopes.rs).
        Method::AlphaCrown | Method::OneStep | Method::RandomSlope => return None,
    })
}

/// Lower bounds of `c . f(x)` over the box [lo, hi] for one sample.
pub fn reference_lower(d: &Dense, lo: &[f64], hi: &[f64], inter: Pass, fin: Pass, c: &[Vec<f64>]) -> Vec<f64> {
    match fin {
        Pass::Ibp => ibp_spec(d, lo, hi, c),
        Pass::Zonotope(rule) => {
            assert_eq!(inter, fin, "the reference zonotope pass computes its own intermediate bounds");
            zonotope_spec(d, lo, hi, rule, c)
        }
        Pass::Backsub(rule) => {
            let pre = match inter {
                Pass::Ibp => intermediate(d, lo, hi, None),
                Pass::Backsub(r) => intermediate(d, lo, hi, Some(r)),
                Pass::Zonotope(_) => panic!("unsupported combination"),
            };
            backsub(d, d.layers.len(), c, &pre, rule, lo, hi)
        }
    }
}

/// Reference (lower, upper) output bounds for one sample.
pub fn reference_output(d: &Dense, lo: &[f64], hi: &[f64], inter: Pass, fin: Pass) -> Bounds {
    let k = d.forward(lo).len();
    let lb = reference_lower(d, lo, hi, inter, fin, &identity_pair(k));
    (lb[..k].to_vec(), lb[k..].iter().map(|v| -v).collect())
}

/// Margin rows e_y - e_j, j != y in increasing order.
pub fn margin_rows(y: usize, k: usize) -> Vec<Vec<f64>> {
    (0..k).filter(|&j| j != y).map(|j| (0..k).map(|i| if i == y { 1.0 } else if i == j { -1.0 } else { 0.0 }).collect()).collect()
}

/// (unstable, total) counts of ReLU inputs under the given intermediate bounds.
pub fn stability(pre: &[Option<Bounds>]) -> (usize, usize) {
    let mut unstable = 0;
    let mut total = 0;
    for (l, u) in pre.iter().flatten() {
        total += l.len();
        unstable += l.iter().zip(u).filter(|(l, u)| **l < 0.0 && **u > 0.0).count();
    }
    (unstable, total)
}
