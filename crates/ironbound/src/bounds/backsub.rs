//! Back-substitution (CROWN/DeepPoly/Fast-Lin style): a linear form over one value is pushed
//! backwards through the graph, layer by layer, until it can be concretised on known bounds.
//!
//! Linear forms are `A` `[B, K, F]` (B = 1 while the form is the same for every sample, N once
//! a ReLU made it sample-specific) plus a constant `[B, K]`. Affine layers transpose `A`
//! (`AffineLayer::transpose`: a matmul, or a transposed convolution for conv layers), ReLUs
//! pick the lower or upper line per coefficient sign, residual adds copy `A` to both inputs.

use super::interval::Interval;
use super::spec::apply_rows;
use crate::net::{numel, Network, Op, ReluLines};
use crate::tensor::{pos, Tensor};

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
        for (v, a) in seeds {
            acc[v] = Some(add_opt(acc[v].take(), a));
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
                    let mid = apply_rows(a.clone(), flatten_values(&b.center()));
                    let spread = apply_rows(a.abs(), flatten_values(&b.radius()));
                    if both {
                        hi = Some(add_opt(hi, mid.clone() + spread.clone()));
                    }
                    lo = Some(add_opt(lo, mid - spread));
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
                    let dot = |t: Tensor<3>| (t * lines.upper_intercept.clone()).sum_dim(2).squeeze_dim::<2>(2);
                    let ap = pos(a.clone());
                    let an = a.clone() - ap.clone();
                    let next = if both {
                        c_hi = Some(add_opt(c_hi, dot(ap)));
                        c_lo = Some(add_opt(c_lo, dot(an)));
                        a * lines.lower_slope.clone()
                    } else {
                        c_lo = Some(add_opt(c_lo, dot(an.clone())));
                        ap * lines.lower_slope.clone() + an * lines.upper_slope.clone()
                    };
                    acc[input] = Some(add_opt(acc[input].take(), next));
                }
                Op::Add => {
                    acc[input] = Some(add_opt(acc[input].take(), a.clone()));
                    let other = node.inputs[1];
                    acc[other] = Some(add_opt(acc[other].take(), a));
                }
                op => {
                    let layer = op.as_affine().unwrap_or_else(|| unreachable!());
                    let out = self.net.shape(v);
                    let in_shape = self.net.shape(input);
                    let a4 = a.reshape([bsz * k, out[0], out[1], out[2]]);
                    if let Some(c) = layer.bias_term(&a4) {
                        let c = c.reshape([bsz, k]);
                        if both {
                            c_hi = Some(add_opt(c_hi, c.clone()));
                        }
                        c_lo = Some(add_opt(c_lo, c));
                    }
                    let next = layer.transpose(a4, &in_shape).reshape([bsz, k, numel(&in_shape)]);
                    acc[input] = Some(add_opt(acc[input].take(), next));
                }
            }
        }
        let finish = |t: Option<Tensor<2>>, c: Option<Tensor<2>>| {
            let t = t.unwrap_or_else(|| unreachable!("a linear form always reaches a concretisation"));
            match c {
                Some(c) => t + c,
                None => t,
            }
        };
        let upper = both.then(|| finish(hi, c_hi));
        (finish(lo, c_lo), upper)
    }
}
