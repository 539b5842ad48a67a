//! The bound engine: one interval engine, one back-substitution engine and one zonotope
//! engine, driven by a `Relaxation` value. Everything is differentiable with respect to the
//! weights (the tensors carry autodiff when the network's parameters do).

pub mod alpha;
pub mod backsub;
pub mod interval;
pub mod regularizers;
pub mod relaxation;
pub mod slopes;
pub mod sound;
pub mod spec;
pub mod zonotope;

pub use backsub::{Backsub, RowLines, Trace};
pub use interval::Interval;
pub use relaxation::{parse_methods, Engine, LowerLine, Method, Relaxation};
pub use slopes::{SlopeRule, SlopeStart};
pub use spec::Spec;

use crate::error::{Error, Result};
use crate::net::{relu, Network, Op, ReluLower};
use crate::tensor::{DType, Tensor};
use std::borrow::Cow;

/// The l-infinity ball of radius `eps` around each sample, intersected with [min, max].
pub fn input_region(x: &Tensor<4>, eps: f64, clip: Option<(f64, f64)>) -> Interval {
    let (mut lo, mut hi) = (x.clone() - eps, x.clone() + eps);
    if let Some((min, max)) = clip {
        lo = lo.clamp(min, max);
        hi = hi.clamp(min, max);
    }
    Interval::new(lo, hi)
}

/// Number of dense (non-elementwise) affine layers between the input and each value, or
/// `usize::MAX` after a ReLU or a residual add. Interval bounds are exact up to depth 1.
fn affine_depth(net: &Network) -> Vec<usize> {
    let mut depth = vec![0usize];
    for node in net.nodes() {
        let d = match &node.op {
            Op::Relu | Op::Add => usize::MAX,
            op => {
                let before = depth[node.inputs[0]];
                let elementwise = op.as_affine().is_some_and(|a| a.is_elementwise());
                if elementwise { before } else { before.saturating_add(1) }
            }
        };
        depth.push(d);
    }
    depth
}

/// Bounds of the inputs of every ReLU (and value 0, the input region), plus the interval
/// bounds of every value when they were computed anyway.
#[derive(Clone)]
pub struct Intermediate {
    pub bounds: Vec<Option<Interval>>,
    pub output_zonotope: Option<zonotope::Zonotope>,
}

fn relu_lines(net: &Network, bounds: &[Option<Interval>], lower: ReluLower) -> Vec<Option<RowLines>> {
    net.nodes()
        .iter()
        .map(|node| match (&node.op, &bounds[node.inputs[0]]) {
            (Op::Relu, Some(b)) => Some(RowLines::from_lines(&relu::lines(&b.lo, &b.hi, lower))),
            _ => None,
        })
        .collect()
}

/// Most bytes the coefficients of one back-substitution pass for intermediate bounds may take.
/// The rows of such a pass (one per neuron, two without parallel lines) are independent, and all
/// of them at once hold `batch x rows x (widest value)` floats: 20 GB for the second conv layer
/// of CIFAR-10 CONV+ at batch 200. Larger layers go in chunks of rows.
const ROWS_BUDGET_BYTES: usize = 1 << 30;

/// Bounds of value v by back-substitution to the input. When v comes out of a linear layer
/// the identity is folded into it (the rows start as W). With parallel ReLU lines one pass
/// gives both sides; otherwise the rows are [I; -I] (lower bounds and negated upper bounds).
fn backsub_value(ctx: &Backsub, v: usize, parallel: bool, rows_budget: usize) -> Interval {
    let shape = ctx.net.shape(v);
    let f = shape.iter().product::<usize>();
    let region = ctx.bounds[0].as_ref().unwrap_or_else(|| unreachable!("back-substitution needs the input region"));
    let device = region.lo.device();
    let (seed_value, a, bias) = match ctx.net.producer(v).map(|n| (&n.op, n.inputs[0])) {
        Some((Op::Linear(l), input)) => (input, l.weight.clone().unsqueeze::<3>(), Some(l.bias.clone().unsqueeze::<2>())),
        _ => (v, Spec::identity(f, &device).c.cast(region.lo.dtype()), None),
    };
    let widest = (0..=v).map(|u| crate::net::numel(&ctx.net.shape(u))).max().unwrap_or(f);
    let per_row = region.lo.dims()[0] * widest * region.lo.dtype().size() * if parallel { 1 } else { 2 };
    let chunk = (rows_budget / per_row.max(1)).clamp(1, f);
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    for start in (0..f).step_by(chunk) {
        let rows = start..(start + chunk).min(f);
        let [b, _, cols] = a.dims();
        let a = a.clone().slice([0..b, rows.clone(), 0..cols]);
        let bias = bias.clone().map(|t| t.slice([0..1, rows.clone()]));
        let (l, h) = rows_bounds(ctx, seed_value, a, bias, parallel);
        lo.push(l);
        hi.push(h);
    }
    let to4 = |parts: Vec<Tensor<2>>| {
        let t = Tensor::cat(parts, 1);
        let n = t.dims()[0];
        t.reshape([n, shape[0], shape[1], shape[2]])
    };
    Interval::new(to4(lo), to4(hi))
}

/// Lower and upper bounds of the rows `a` (+ `bias`) of value `seed_value`'s producer input.
fn rows_bounds(ctx: &Backsub, seed_value: usize, a: Tensor<3>, bias: Option<Tensor<2>>, parallel: bool) -> (Tensor<2>, Tensor<2>) {
    if parallel {
        return ctx.symmetric_bounds(vec![(seed_value, a)], bias, &|_| true);
    }
    let m = a.dims()[1];
    let pair = Tensor::cat(vec![a.clone(), a.neg()], 1);
    let bias = bias.map(|b| Tensor::cat(vec![b.clone(), b.neg()], 1));
    let lb = ctx.lower_bound(vec![(seed_value, pair)], bias, &|_| true);
    let n = lb.dims()[0];
    (lb.clone().slice([0..n, 0..m]), lb.slice([0..n, m..2 * m]).neg())
}

/// Computes the bounds every ReLU needs, with the relaxation's intermediate engine. Float-sound
/// ones are computed in float64 (`sound.rs`) and rounded outwards to float32.
pub fn intermediate(net: &Network, region: &Interval, relaxation: &Relaxation) -> Result<Intermediate> {
    let (net, dtype) = working(net, region, relaxation);
    let inter = intermediate_in_chunks(&net, &region.cast(dtype), relaxation, ROWS_BUDGET_BYTES)?;
    if relaxation.sound {
        let bounds = inter.bounds.iter().map(|b| b.as_ref().map(sound::interval_to_f32)).collect();
        return Ok(Intermediate { bounds, output_zonotope: None });
    }
    Ok(inter)
}

/// The network and the float type the engines compute in: float64 for float-sound bounds
/// (`sound.rs`), otherwise the network's own (a float-sound region is float64 and gets cast).
fn working<'a>(net: &'a Network, region: &Interval, relaxation: &Relaxation) -> (Cow<'a, Network>, DType) {
    let net = if relaxation.sound { sound::working_network(net) } else { Cow::Borrowed(net) };
    let fallback = if relaxation.sound { sound::WORKING } else { region.lo.dtype() };
    let dtype = net.dtype().unwrap_or(fallback);
    (net, dtype)
}

/// `intermediate` with back-substitution rows in chunks of at most `rows_budget` bytes.
fn intermediate_in_chunks(net: &Network, region: &Interval, relaxation: &Relaxation, rows_budget: usize) -> Result<Intermediate> {
    let sound = relaxation.sound;
    let boxes = |known: &[Option<Interval>]| match sound {
        true => sound::propagate(net, region, known),
        false => interval::propagate(net, region),
    };
    match sound_engine(relaxation.intermediate, sound) {
        Engine::Interval => {
            let all = boxes(&[]);
            Ok(Intermediate { bounds: all.into_iter().map(Some).collect(), output_zonotope: None })
        }
        Engine::Zonotope => {
            let (z, bounds) = zonotope::propagate(net, region, relaxation.intermediate_lower)?;
            Ok(Intermediate { bounds, output_zonotope: Some(z) })
        }
        Engine::BackSubstitution => {
            let ibp = boxes(&[]);
            let depth = affine_depth(net);
            let mut bounds: Vec<Option<Interval>> = vec![None; net.nodes().len() + 1];
            bounds[0] = Some(region.clone());
            let mut lines: Vec<Option<RowLines>> = vec![None; net.nodes().len()];
            for (i, node) in net.nodes().iter().enumerate() {
                if !matches!(node.op, Op::Relu) {
                    continue;
                }
                let v = node.inputs[0];
                if bounds[v].is_none() {
                    bounds[v] = Some(if depth[v] <= 1 {
                        ibp[v].clone()
                    } else {
                        // Sound mode: the magnitudes of every value so far, from the tightest
                        // bounds known (intervals refined by the earlier layers' bounds).
                        let refined = sound.then(|| boxes(&bounds));
                        let ctx = Backsub { net, bounds: &bounds, lines: &lines, sound: refined.as_deref() };
                        let parallel = matches!(relaxation.intermediate_lower, ReluLower::Parallel | ReluLower::Box);
                        backsub_value(&ctx, v, parallel, rows_budget)
                    });
                }
                let b = bounds[v].as_ref().unwrap_or_else(|| unreachable!());
                lines[i] = Some(RowLines::from_lines(&relu::lines(&b.lo, &b.hi, relaxation.intermediate_lower)));
            }
            Ok(Intermediate { bounds, output_zonotope: None })
        }
    }
}

/// Lower bounds `[N, K]` of `spec . f(x)` over the region, with the given relaxation.
/// Float-sound ones are computed in float64 and rounded down to float32.
pub fn lower_bound(net: &Network, region: &Interval, spec: &Spec, relaxation: &Relaxation) -> Result<Tensor<2>> {
    check_spec(net, spec)?;
    let (net, dtype) = working(net, region, relaxation);
    let (region, spec) = (region.cast(dtype), spec.cast(dtype));
    let inter = intermediate_in_chunks(&net, &region, relaxation, ROWS_BUDGET_BYTES)?;
    let lb = final_pass(&net, &region, &spec, relaxation, inter)?;
    Ok(if relaxation.sound { sound::lower_to_f32(lb) } else { lb })
}

/// `(1 - beta) * IBP + beta * relaxation` lower bounds: CROWN-IBP's mix of its own bound with
/// IBP's (Zhang et al. 2020, Eq. 9). When the relaxation's intermediate bounds are IBP's (as in
/// CROWN-IBP and CAP-IBP) they are computed once and serve both final passes.
/// A training objective, so never float-sound.
pub fn mixed_lower_bound(net: &Network, region: &Interval, spec: &Spec, relaxation: &Relaxation, beta: f64) -> Result<Tensor<2>> {
    if relaxation.sound {
        return Err(Error::internal("the CROWN-IBP mix of bounds is a training objective and has no float-sound mode"));
    }
    let ibp = Method::Ibp.relaxation();
    if beta <= 0.0 {
        return lower_bound(net, region, spec, &ibp);
    }
    if beta >= 1.0 {
        return lower_bound(net, region, spec, relaxation);
    }
    check_spec(net, spec)?;
    let inter = intermediate(net, region, relaxation)?;
    let ibp_lb = ibp_final_pass(net, region, spec, relaxation, &inter)?;
    Ok(ibp_lb * (1.0 - beta) + final_pass(net, region, spec, relaxation, inter)? * beta)
}

/// IBP's lower bounds of `spec . f(x)` for the CROWN-IBP mix, next to `relaxation`'s
/// intermediate bounds `inter`: those serve IBP too when they are interval bounds (CROWN-IBP,
/// CAP-IBP, the sampled slopes), otherwise IBP's are computed.
pub fn ibp_final_pass(net: &Network, region: &Interval, spec: &Spec, relaxation: &Relaxation, inter: &Intermediate) -> Result<Tensor<2>> {
    let ibp = Method::Ibp.relaxation();
    let ibp_inter = match relaxation.intermediate {
        Engine::Interval => Intermediate { bounds: inter.bounds.clone(), output_zonotope: None },
        _ => intermediate(net, region, &ibp)?,
    };
    final_pass(net, region, spec, &ibp, ibp_inter)
}

fn check_spec(net: &Network, spec: &Spec) -> Result<()> {
    let outputs = net.output_shape().iter().product::<usize>();
    if spec.c.dims()[2] != outputs {
        return Err(Error::input(format!("spec has {} columns, the network {} outputs", spec.c.dims()[2], net.num_outputs())));
    }
    Ok(())
}

/// The engine that computes what `engine` does in float-sound mode: zonotopes have no sound
/// mode of their own, and back-substitution with the same parallel lines gives the same bounds
/// (tests/bounds_identities.rs).
fn sound_engine(engine: Engine, sound: bool) -> Engine {
    match (engine, sound) {
        (Engine::Zonotope, true) => Engine::BackSubstitution,
        (e, _) => e,
    }
}

pub(crate) fn final_pass(net: &Network, region: &Interval, spec: &Spec, relaxation: &Relaxation, inter: Intermediate) -> Result<Tensor<2>> {
    let out = net.output_value();
    // Sound mode: interval bounds of every value, refined by the intermediate ones, for the
    // magnitudes in the error term.
    let boxes = relaxation.sound.then(|| sound::propagate(net, region, &inter.bounds));
    let sound = boxes.as_deref();
    match sound_engine(relaxation.final_pass, relaxation.sound) {
        Engine::Zonotope => {
            let z = match inter.output_zonotope {
                Some(z) => z,
                None => zonotope::propagate(net, region, ReluLower::Parallel)?.0,
            };
            Ok(zonotope::spec_lower(&z, spec.c.clone()))
        }
        Engine::Interval => {
            // Fold the spec into the last layer when it is affine: one back-substitution step,
            // then concretise on the interval bounds of its input.
            let all: Vec<Option<Interval>> = match (sound, inter.bounds.iter().all(|b| b.is_some())) {
                (Some(b), _) => b.iter().cloned().map(Some).collect(),
                (None, true) => inter.bounds,
                (None, false) => interval::propagate(net, region).into_iter().map(Some).collect(),
            };
            let fold = net.producer(out).is_some_and(|n| n.op.as_affine().is_some());
            let ctx = Backsub { net, bounds: &all, lines: &[], sound };
            Ok(ctx.lower_bound(vec![(out, spec.c.clone())], None, &|v| fold && v == out))
        }
        Engine::BackSubstitution => match relaxation.final_lower {
            LowerLine::Fixed(lower) => {
                let lines = relu_lines(net, &inter.bounds, lower);
                let ctx = Backsub { net, bounds: &inter.bounds, lines: &lines, sound };
                Ok(ctx.lower_bound(vec![(out, spec.c.clone())], None, &|_| true))
            }
            LowerLine::Optimised { iterations, learning_rate } => {
                alpha::optimise(net, &inter.bounds, spec, iterations, learning_rate, sound)
            }
            LowerLine::Sampled(rule) => slopes::lower_bound(net, &inter.bounds, spec, &rule, sound),
        },
    }
}

/// Elementwise lower and upper bounds `[N, K]` of the outputs.
pub fn output_bounds(net: &Network, region: &Interval, relaxation: &Relaxation) -> Result<(Tensor<2>, Tensor<2>)> {
    output_bounds_of(net, region, relaxation, Spec::identity_pair(net.num_outputs(), &region.lo.device()))
}

/// [`output_bounds`] of samples with these labels, for relaxations that need them (one-step).
pub fn output_bounds_with_labels(net: &Network, region: &Interval, relaxation: &Relaxation, labels: &[usize]) -> Result<(Tensor<2>, Tensor<2>)> {
    output_bounds_of(net, region, relaxation, Spec::identity_pair(net.num_outputs(), &region.lo.device()).with_labels(labels))
}

fn output_bounds_of(net: &Network, region: &Interval, relaxation: &Relaxation, spec: Spec) -> Result<(Tensor<2>, Tensor<2>)> {
    let k = net.num_outputs();
    let lb = lower_bound(net, region, &spec, relaxation)?;
    let n = lb.dims()[0];
    Ok((lb.clone().slice([0..n, 0..k]), lb.slice([0..n, k..2 * k]).neg()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::init::SplitMix64;
    use crate::net::arch;
    use crate::tensor::{default_device, from_vec, to_vec};

    #[test]
    fn chunked_rows_give_the_same_intermediate_bounds() {
        let device = default_device();
        let net = arch::named("fc-small", [1, 28, 28]).and_then(|s| s.init(4, &device)).unwrap();
        let x = from_vec(SplitMix64::new(9).uniforms(3 * 784), [3, 1, 28, 28], &device);
        let region = input_region(&x, 0.05, Some((0.0, 1.0)));
        for method in [Method::Deepz, Method::Crown, Method::Hbox] {
            let whole = intermediate(&net, &region, &method.relaxation()).unwrap();
            // A budget of one byte forces one row per pass.
            let chunked = intermediate_in_chunks(&net, &region, &method.relaxation(), 1).unwrap();
            for (a, b) in whole.bounds.iter().zip(&chunked.bounds) {
                if let (Some(a), Some(b)) = (a, b) {
                    for (x, y) in to_vec(a.lo.clone()).iter().zip(to_vec(b.lo.clone())).chain(to_vec(a.hi.clone()).iter().zip(to_vec(b.hi.clone()))) {
                        assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{method}: {x} vs {y}");
                    }
                }
            }
        }
    }
}
