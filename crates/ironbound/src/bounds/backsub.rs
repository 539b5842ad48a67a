//! Back-substitution (CROWN/DeepPoly/Fast-Lin style): a linear form over one value is pushed
//! backwards through the graph, layer by layer, until it can be concretised on known bounds.
//!
//! Linear forms are `A` `[B, K, F]` (B = 1 while the form is the same for every sample, N once
//! a ReLU made it sample-specific) plus a constant `[B, K]`. Affine layers transpose `A`
//! (`AffineLayer::transpose`: a matmul, or a transposed convolution for conv layers), ReLUs
//! pick the lower or upper line per coefficient sign, residual adds copy `A` to both inputs.

use super::interval::Interval;
use super::sound;
use super::spec::apply_rows;
use crate::net::{numel, AffineLayer, Network, Op, ReluLines};
use crate::tensor::{relu_intercepts, relu_lines, Tensor};

/// ReLU lines broadcastable against `A` `[N, K, F]`: `[N, 1, F]`, or `[N, K, F]` when the
/// lower slope differs per row (alpha-CROWN).
#[derive(Clone, Debug)]
pub struct RowLines {
    pub lower_slope: Tensor<3>,
    pub upper_slope: Tensor<3>,
    pub upper_intercept: Tensor<3>,
}

impl RowLines {
    pub fn from_lines(lines: &ReluLines) -> RowLines {
        let flat = |t: &Tensor<4>| {
            let [n, c, h, w] = t.dims();
            t.clone().reshape([n, 1, c * h * w])
        };
        RowLines {
            lower_slope: flat(&lines.lower_slope),
            upper_slope: flat(&lines.upper_slope),
            upper_intercept: flat(&lines.upper_intercept),
        }
    }
}

/// The coefficients a back-substitution pass ended with (the tightness regularizers of
/// `regularizers.rs` read the relaxed optimum off them): over the output of each ReLU it
/// crossed (indexed by node; their signs chose the lines) and over each value it concretised
/// (value 0: the input region).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub relu: Vec<Option<Tensor<3>>>,
    pub concretised: Vec<(usize, Tensor<3>)>,
}

/// What back-substitution needs to know about the network.
pub struct Backsub<'a> {
    pub net: &'a Network,
    /// Interval bounds of values, where known (value 0 is the input region).
    pub bounds: &'a [Option<Interval>],
    /// Lines of each ReLU node (indexed by node), built from the bounds of its input.
    pub lines: &'a [Option<RowLines>],
    /// Float-sound mode (`sound.rs`): sound interval bounds of every value the pass crosses,
    /// which bound the magnitudes in its error term. `bounds` must be sound too; the upper
    /// intercepts of `lines` are then recomputed from them, rounded up.
    pub sound: Option<&'a [Interval]>,
}

fn flatten_values(t: &Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = t.dims();
    t.clone().reshape([n, c * h * w])
}

fn add_opt<const D: usize>(acc: Option<Tensor<D>>, t: Tensor<D>) -> Tensor<D> {
    match acc {
        Some(a) => a + t,
        None => t,
    }
}

impl Backsub<'_> {
    /// Lower bound `[N, K]` of `sum_v a_v . value(v) + bias` over the seeds `(v, a_v)`.
    ///
    /// `expand(v)` says whether to back-substitute through the node producing value v; when
    /// it returns false the form is concretised on `bounds[v]` instead. Value 0 is always
    /// concretised on the input region.
    pub fn lower_bound(&self, seeds: Vec<(usize, Tensor<3>)>, bias: Option<Tensor<2>>, expand: &dyn Fn(usize) -> bool) -> Tensor<2> {
        self.run(seeds, bias, expand, false, None).0
    }

    /// [`Backsub::lower_bound`] and the coefficients it ended with.
    pub fn lower_bound_traced(&self, seeds: Vec<(usize, Tensor<3>)>, bias: Option<Tensor<2>>, expand: &dyn Fn(usize) -> bool) -> (Tensor<2>, Trace) {
        let mut trace = Trace { relu: vec![None; self.net.nodes().len()], concretised: Vec::new() };
        let lb = self.run(seeds, bias, expand, false, Some(&mut trace)).0;
        (lb, trace)
    }

    /// Lower and upper bounds of the same linear form in one pass. Valid only when every
    /// ReLU's lines are parallel (lower slope = upper slope: DeepZ, box): then the
    /// coefficients do not depend on the direction, only the constants do.
    pub fn symmetric_bounds(&self, seeds: Vec<(usize, Tensor<3>)>, bias: Option<Tensor<2>>, expand: &dyn Fn(usize) -> bool) -> (Tensor<2>, Tensor<2>) {
        let (lo, hi) = self.run(seeds, bias, expand, true, None);
        (lo, hi.unwrap_or_else(|| unreachable!("symmetric pass returns both bounds")))
    }

    fn run(&self, seeds: Vec<(usize, Tensor<3>)>, bias: Option<Tensor<2>>, expand: &dyn Fn(usize) -> bool, both: bool, mut trace: Option<&mut Trace>) -> (Tensor<2>, Option<Tensor<2>>) {
        let top = seeds.iter().map(|(v, _)| *v).max().unwrap_or(0);
        let mut acc: Vec<Option<Tensor<3>>> = vec![None; top + 1];
        let mut err = RoundingError::new(self.sound);
        for (v, a) in seeds {
            acc[v] = Some(err.accumulate(acc[v].take(), a, v));
        }
        let mut c_lo = bias.clone();
        let mut c_hi = if both { bias } else { None };
        let (mut lo, mut hi): (Option<Tensor<2>>, Option<Tensor<2>>) = (None, None);
        for v in (0..=top).rev() {
            let Some(a) = acc[v].take() else { continue };
            let node = match self.net.producer(v) {
                Some(node) if expand(v) => node,
                _ => {
                    let b = self.bounds[v].as_ref().unwrap_or_else(|| panic!("back-substitution reached value {v} without bounds"));
                    if let Some(t) = trace.as_deref_mut() {
                        t.concretised.push((v, a.clone()));
                    }
                    let (center, radius) = match self.sound {
                        Some(_) => sound::center_radius(b),
                        None => (b.center(), b.radius()),
                    };
                    let (center, radius) = (flatten_values(&center), flatten_values(&radius));
                    let block = err.concretise(&a, &center, &radius);
                    let mid = blocked_rows(a.clone(), center, block);
                    let spread = blocked_rows(a.abs(), radius, block);
                    if both {
                        hi = Some(err.add(hi, mid.clone() + spread.clone()));
                    }
                    lo = Some(err.add(lo, mid - spread));
                    continue;
                }
            };
            let [bsz, k, _] = a.dims();
            let input = node.inputs[0];
            match &node.op {
                Op::Relu => {
                    let idx = v - 1;
                    let lines = self.lines[idx].as_ref().unwrap_or_else(|| panic!("no relaxation for ReLU node {idx}"));
                    if let Some(t) = trace.as_deref_mut() {
                        t.relu[idx] = Some(a.clone());
                    }
                    let intercept = match self.sound {
                        // The tightest intercept that is valid for the slope in real arithmetic.
                        Some(_) => {
                            let b = self.bounds[input].as_ref().unwrap_or_else(|| panic!("ReLU node {idx} has lines but no bounds"));
                            let flat = |t: &Tensor<4>| flatten_values(t).unsqueeze_dim::<3>(1);
                            sound::upper_intercept(flat(&b.lo), flat(&b.hi), lines.upper_slope.clone(), lines.upper_intercept.clone())
                        }
                        None => lines.upper_intercept.clone(),
                    };
                    // Fused kernels (`tensor/relu_rows.rs`): the constants of both signs, then
                    // the coefficients on the lines their signs pick.
                    let constants = relu_intercepts(a.clone(), intercept);
                    let [nb, nk, _] = constants.dims();
                    let part = |i: usize| constants.clone().slice([0..nb, 0..nk, i..i + 1]).reshape([nb, nk]);
                    let f = lines.upper_slope.dims()[2];
                    let dn = part(0);
                    err.constant(&dn, f);
                    c_lo = Some(err.add(c_lo, dn));
                    let next = if both {
                        let up = part(1);
                        err.constant(&up, f);
                        c_hi = Some(err.add(c_hi, up));
                        relu_lines(a, lines.lower_slope.clone(), lines.lower_slope.clone())
                    } else {
                        relu_lines(a, lines.lower_slope.clone(), lines.upper_slope.clone())
                    };
                    // One rounding per coefficient (a product; the other term is zero).
                    err.coefficients(&next, input, 2.0 * sound::U);
                    acc[input] = Some(err.accumulate(acc[input].take(), next, input));
                }
                Op::Add => {
                    acc[input] = Some(err.accumulate(acc[input].take(), a.clone(), input));
                    let other = node.inputs[1];
                    acc[other] = Some(err.accumulate(acc[other].take(), a, other));
                }
                op => {
                    let layer = op.as_affine().unwrap_or_else(|| unreachable!());
                    let out = self.net.shape(v);
                    let in_shape = self.net.shape(input);
                    err.affine(self.net, &a, layer, input);
                    let a4 = a.reshape([bsz * k, out[0], out[1], out[2]]);
                    if let Some(c) = layer.bias_term(&a4) {
                        let c = c.reshape([bsz, k]);
                        if both {
                            c_hi = Some(err.add(c_hi, c.clone()));
                        }
                        c_lo = Some(err.add(c_lo, c));
                    }
                    let next = layer.transpose(a4, &in_shape).reshape([bsz, k, numel(&in_shape)]);
                    acc[input] = Some(err.accumulate(acc[input].take(), next, input));
                }
            }
        }
        let t = lo.unwrap_or_else(|| unreachable!("a linear form always reaches a concretisation"));
        let lower = match c_lo {
            Some(c) => t + c,
            None => t,
        };
        let upper = both.then(|| {
            let t = hi.unwrap_or_else(|| unreachable!("a linear form always reaches a concretisation"));
            match c_hi {
                Some(c) => t + c,
                None => t,
            }
        });
        match err.total() {
            Some(e) => (sound::settle_lower(lower, &e), upper.map(|u| sound::settle_upper(u, &e))),
            None => (lower, upper),
        }
    }
}

/// Columns per partial sum of a float-sound concretisation (see `RoundingError::concretise`).
const SOUND_BLOCK: usize = 32;

/// `apply_rows(a, x)` summed over blocks of `block` columns, then over the blocks.
fn blocked_rows(a: Tensor<3>, x: Tensor<2>, block: usize) -> Tensor<2> {
    let [b, k, f] = a.dims();
    let n = x.dims()[0];
    if block >= f {
        return apply_rows(a, x);
    }
    let mut total: Option<Tensor<2>> = None;
    for start in (0..f).step_by(block) {
        let cols = start..(start + block).min(f);
        let part = apply_rows(a.clone().slice([0..b, 0..k, cols.clone()]), x.clone().slice([0..n, cols]));
        total = Some(add_opt(total, part));
    }
    total.unwrap_or_else(|| unreachable!("f > block >= 1 gives at least one block"))
}

/// The rounding error a float-sound pass accumulates (see `sound.rs`): `[N, K]`, one entry per
/// row of the linear form, or nothing in plain float32 mode. Every method is a no-op there.
struct RoundingError<'a> {
    values: Option<&'a [Interval]>,
    total: Option<Tensor<2>>,
}

impl<'a> RoundingError<'a> {
    fn new(values: Option<&'a [Interval]>) -> Self {
        RoundingError { values, total: None }
    }

    fn push(&mut self, e: Tensor<2>) {
        self.total = Some(add_opt(self.total.take(), e));
    }

    fn magnitude(&self, v: usize) -> Option<Tensor<2>> {
        self.values.map(|vals| sound::magnitude(&vals[v]))
    }

    /// `factor * |coeffs| . m_v`: an error of at most `factor` relative per coefficient of value v.
    fn coefficients(&mut self, coeffs: &Tensor<3>, v: usize, factor: f64) {
        if let Some(m) = self.magnitude(v) {
            self.push(apply_rows(coeffs.clone().abs(), m) * factor);
        }
    }

    /// `acc + t` for the coefficients of value v, with the addition's rounding.
    fn accumulate(&mut self, acc: Option<Tensor<3>>, t: Tensor<3>, v: usize) -> Tensor<3> {
        match acc {
            None => t,
            Some(a) => {
                let sum = a + t;
                self.coefficients(&sum, v, 2.0 * sound::U);
                sum
            }
        }
    }

    /// `acc + t` for constants `[N, K]`, with the addition's rounding.
    fn add(&mut self, acc: Option<Tensor<2>>, t: Tensor<2>) -> Tensor<2> {
        match acc {
            None => t,
            Some(a) => {
                let sum = a + t;
                if self.values.is_some() {
                    self.push(sum.clone().abs() * (2.0 * sound::U));
                }
                sum
            }
        }
    }

    /// A constant that is a sum of `f` products (a ReLU's intercepts).
    fn constant(&mut self, c: &Tensor<2>, f: usize) {
        if self.values.is_some() {
            self.push(c.clone().abs() * (2.0 * sound::gamma(f + 1)));
        }
    }

    /// Concretising rows `a` on a box given by center and radius `[N, F]`: the two products and
    /// their difference. Returns the block length the products are to be summed in: in sound
    /// mode sums of `SOUND_BLOCK` columns, then the sum of the blocks, whose error bound is
    /// gamma(block + blocks + 1) rather than gamma(F + 1) (14 times smaller for F = 784).
    fn concretise(&mut self, a: &Tensor<3>, center: &Tensor<2>, radius: &Tensor<2>) -> usize {
        let f = center.dims()[1];
        if self.values.is_none() {
            return f;
        }
        let block = SOUND_BLOCK.min(f).max(1);
        let terms = block + f.div_ceil(block) + 1;
        self.push(apply_rows(a.clone().abs(), center.clone().abs() + radius.clone()) * (2.0 * sound::gamma(terms)));
        block
    }

    /// Rows `a` over an affine layer's output become `a W` over its input plus `a b`: at most
    /// gamma(n) |a| (|W| m_in) and gamma_bias |a| |b| off.
    fn affine(&mut self, net: &Network, a: &Tensor<3>, layer: &dyn AffineLayer, input: usize) {
        let Some(m) = self.magnitude(input) else { return };
        let in_shape = net.shape(input);
        let n = m.dims()[0];
        let through = layer.abs_linear(m.reshape([n, in_shape[0], in_shape[1], in_shape[2]]));
        let out = through.dims();
        let bias = sound::abs_bias(layer, &in_shape, &through);
        let outputs = out[1] * out[2] * out[3];
        let per = through * sound::gamma(layer.transpose_terms(&in_shape)) + bias * sound::gamma_bias(outputs);
        self.push(apply_rows(a.clone().abs(), per.reshape([n, outputs])) * 2.0);
    }

    fn total(self) -> Option<Tensor<2>> {
        self.values.map(|_| self.total.unwrap_or_else(|| unreachable!("a sound pass records at least its concretisation")))
    }
}
