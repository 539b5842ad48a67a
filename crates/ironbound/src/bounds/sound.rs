//! Float-sound bounds: results that hold for the real-valued network the float32 weights
//! define, although every operation is computed in floating point with round-to-nearest.
//!
//! Sound mode computes in float64: the float32 weights and inputs are exact in it, and its
//! rounding errors are 2^29 times smaller, so the sound bounds stay within float32 rounding of
//! the fast ones (a float32 error term alone would cost ~1e-3 on a 784-input layer). The
//! entry points (`bounds::lower_bound`, `bounds::intermediate`) move the network, region and
//! spec to float64 and round the results outwards to float32 on the way out.
//!
//! Nothing here changes what the engines compute; it adds a rigorous error term. For a sum of
//! n products computed in floating point in any order (a GEMM, a convolution, a reduction),
//! the rounding error is at most gamma(n) = n u / (1 - n u) times the same sum over absolute
//! values (u = 2^-53 for float64; Higham, *Accuracy and Stability of Numerical Algorithms*,
//! Section 3.1; fused multiply-adds only make it smaller). The engines' linear forms stay what
//! floating point made of them: a back-substitution step that should give `a W` gives some
//! tensor `A'`, and the difference `(a W - A') z` is bounded with the magnitudes of z known
//! from sound interval bounds. So each step adds to a non-negative error term, which is
//! subtracted at the end (ERAN's DeepPoly keeps interval coefficients instead; this costs one
//! extra product per step with the same shapes as the concretisation, not a second copy of
//! the engine).
//!
//! Every such error term is doubled before it is used, which covers the rounding of the error
//! computation itself (all of its terms are non-negative, so it is underestimated by a factor
//! of at most 1 - gamma). An absolute `TINY` per result covers underflow (gradual, or flushed
//! to zero). The assumptions: IEEE-754 arithmetic with round-to-nearest, sums of products
//! without fast-math reassociation into other formulas (no Winograd or FFT convolutions),
//! which holds for burn's CPU backend. A float32 tensor meeting a float64 one would break them
//! silently in burn's release kernels, so its dtype checks stay on in release builds
//! (Cargo.toml) and every tensor the engines create takes the dtype of what it meets.

use super::interval::Interval;
use crate::net::{relu, Network, Op};
use crate::tensor::{pos, to_vec64, DType, Tensor};
use std::borrow::Cow;

/// The float type of sound mode.
pub const WORKING: DType = DType::F64;

/// Unit roundoff of float64, round-to-nearest.
pub const U: f64 = 1.0 / 9_007_199_254_740_992.0;

/// Absolute slack per result for underflow: far above n 2^-1022 for any n a network has, far
/// below any bound that matters (and a normal float32, so it survives the way out).
pub const TINY: f64 = 1e-30;

/// Roundings a layer's float constants may carry on top of its products (batch norm's shift
/// beta - mean * scale, normalisation's -mean / std), for the bias terms.
const CONSTANT_ROUNDINGS: usize = 8;

/// gamma(n) = n u / (1 - n u): the relative error bound of a sum of n products. Sums too long
/// for the bound to mean anything get a factor that makes every bound infinite (still sound).
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    if nu < 0.5 {
        nu / (1.0 - nu)
    } else {
        f32::MAX as f64
    }
}

/// The error bound of `a . b` for `a` a bias vector's worth of terms: bias terms sum over every
/// output of a layer.
pub fn gamma_bias(outputs: usize) -> f64 {
    gamma(outputs + CONSTANT_ROUNDINGS)
}

/// The smallest float32 at or above the real number `v` (a decimal read as f64 is within
/// 2^-53 of it; the step up covers that too).
pub fn f32_up(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64) < v + v.abs() * 2f64.powi(-52) { f.next_up() } else { f }
}

/// The largest float32 at or below `v`.
pub fn f32_down(v: f64) -> f32 {
    -f32_up(-v)
}

/// A float64 at or above the real number a decimal `v` was read from (the parse is within half
/// a float64 step of it).
fn f64_up(v: f64) -> f64 {
    v.next_up()
}

/// `t` moved down by more than one rounding error of the operation that produced it.
pub fn down<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.clone() - (t.abs() * (2.0 * U) + TINY)
}

/// `t` moved up by more than one rounding error.
pub fn up<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.clone() + (t.abs() * (2.0 * U) + TINY)
}

/// The network in the working float type (a copy unless it already is; the float32 weights
/// are exact in it).
pub fn working_network(net: &Network) -> Cow<'_, Network> {
    match net.dtype() {
        Some(d) if d != WORKING => Cow::Owned(net.with_dtype(WORKING)),
        _ => Cow::Borrowed(net),
    }
}

/// The largest float32 at or below each entry of a float64 `t`: rounding to nearest, then one
/// step down where that went up. The step `|f| 2^-24 (1 + 2^-23)` is more than half and less
/// than one and a half float32 spacings below a normal `f` (also at powers of two, where the
/// spacing changes), so `f` minus it rounds to the next float32 down; `TINY` covers
/// subnormals.
pub fn lower_to_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let f = t.clone().cast(DType::F32);
    let above = f.clone().cast(WORKING).greater(t);
    // (An entry past f32::MAX rounded to infinity steps down to a finite float.)
    let finite = f.clone().clamp(-f32::MAX as f64, f32::MAX as f64);
    let stepped = finite.clone() - (finite.abs() * (2f64.powi(-24) * (1.0 + 2f64.powi(-23))) + TINY);
    f.mask_where(above, stepped)
}

/// The smallest float32 at or above each entry of a float64 `t`.
pub fn upper_to_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    lower_to_f32(t.neg()).neg()
}

/// The float32 interval enclosing a float64 one.
pub fn interval_to_f32(b: &Interval) -> Interval {
    Interval::new(lower_to_f32(b.lo.clone()), upper_to_f32(b.hi.clone()))
}

/// The l-infinity ball of radius `eps` around each sample, intersected with [min, max], in the
/// working float type with ends rounded outwards: it contains the region whose ends are the
/// exact decimals given.
pub fn input_region(x: &Tensor<4>, eps: f64, clip: Option<(f64, f64)>) -> Interval {
    let x = x.clone().cast(WORKING);
    let e = f64_up(eps.max(0.0));
    let (mut lo, mut hi) = (down(x.clone() - e), up(x + e));
    if let Some((min, max)) = clip {
        let (min, max) = (-f64_up(-min), f64_up(max));
        lo = lo.clamp(min, max);
        hi = hi.clamp(min, max);
    }
    Interval::new(lo, hi)
}

/// Rigorous enclosures `(lo, hi)` of the real-valued network's outputs at the single point
/// `x` (`[1, C, H, W]`, float32): sound interval arithmetic on the degenerate box, in float64.
/// Validates counterexamples: their outputs in real arithmetic, not as float32 computed them.
pub fn outputs_at(net: &Network, x: Tensor<4>) -> (Vec<f64>, Vec<f64>) {
    let net = working_network(net);
    let x = x.cast(WORKING);
    let out = propagate(&net, &Interval::new(x.clone(), x), &[]).pop().unwrap_or_else(|| unreachable!("propagate returns the input at least"));
    (to_vec64(out.lo), to_vec64(out.hi))
}

/// Center and a radius large enough that [c - r, c + r] contains the interval although both
/// were rounded.
pub fn center_radius(b: &Interval) -> (Tensor<4>, Tensor<4>) {
    let (c, r) = (b.center(), b.radius());
    let r = r.clone() + (r + c.clone().abs()) * (4.0 * U) + TINY;
    (c, r)
}

/// max(|lo|, |hi|) flattened to `[N, F]`: a bound on the magnitude of every point.
pub fn magnitude(b: &Interval) -> Tensor<2> {
    let [n, c, h, w] = b.lo.dims();
    b.lo.clone().abs().max_pair(b.hi.clone().abs()).reshape([n, c * h * w])
}

/// |b| of an affine layer `[1, out...]`: its output at zero.
/// (`like` gives the device and the float type.)
pub fn abs_bias(layer: &dyn crate::net::AffineLayer, input: &crate::net::Shape, like: &Tensor<4>) -> Tensor<4> {
    layer.forward(Tensor::zeros([1, input[0], input[1], input[2]], (&like.device(), like.dtype()))).abs()
}

/// Sound interval bounds of every value (index = value id) from the input box, intersected
/// with the bounds already `known` for some values (sound bounds from another engine).
pub fn propagate(net: &Network, input: &Interval, known: &[Option<Interval>]) -> Vec<Interval> {
    let intersect = |v: usize, b: Interval| match known.get(v) {
        Some(Some(k)) => Interval::new(b.lo.max_pair(k.lo.clone()), b.hi.min_pair(k.hi.clone())),
        _ => b,
    };
    let mut values: Vec<Interval> = Vec::with_capacity(net.nodes().len() + 1);
    values.push(intersect(0, input.clone()));
    for (i, node) in net.nodes().iter().enumerate() {
        let x = &values[node.inputs[0]];
        let y = match &node.op {
            Op::Relu => {
                let (lo, hi) = relu::interval(x.lo.clone(), x.hi.clone());
                Interval::new(lo, hi)
            }
            Op::Add => {
                let b = &values[node.inputs[1]];
                Interval::new(down(x.lo.clone() + b.lo.clone()), up(x.hi.clone() + b.hi.clone()))
            }
            op => {
                let layer = op.as_affine().unwrap_or_else(|| unreachable!());
                let in_shape = net.shape(node.inputs[0]);
                let (c, r) = center_radius(x);
                let g = gamma(layer.max_terms(&in_shape));
                let err = (layer.abs_linear(c.clone().abs() + r.clone()) + abs_bias(layer, &in_shape, &c)) * (2.0 * g);
                let (c, r) = (layer.forward(c), layer.abs_linear(r) + err);
                Interval::new(down(c.clone() - r.clone()), up(c + r))
            }
        };
        values.push(intersect(i + 1, y));
    }
    values
}

/// The lowest upper intercept t that keeps `slope x + t >= relu(x)` on [l, u], rounded up, on
/// unstable neurons (the line lies above a convex function on an interval iff it does at both
/// ends: t = max(relu(l) - slope l, relu(u) - slope u)); stable neurons keep `given`, whose
/// lines are exact (slope 1 or 0, intercept 0).
pub fn upper_intercept(l: Tensor<3>, u: Tensor<3>, slope: Tensor<3>, given: Tensor<3>) -> Tensor<3> {
    let at_l = pos(l.clone()) - slope.clone() * l.clone();
    let at_u = pos(u.clone()) - slope * u.clone();
    let t = at_l.max_pair(at_u) + (l.clone().abs() + u.clone().abs()) * (4.0 * U) + TINY;
    let unstable = l.lower_elem(0.0).bool_and(u.greater_elem(0.0));
    given.mask_where(unstable, t)
}

/// A lower bound `s - err` (s a rounded sum, `err` the accumulated error term) rounded down;
/// `upper` for the mirror image.
pub fn settle_lower(s: Tensor<2>, err: &Tensor<2>) -> Tensor<2> {
    down(s.clone() - (err.clone() * 2.0 + s.abs() * (2.0 * U) + TINY))
}

pub fn settle_upper(s: Tensor<2>, err: &Tensor<2>) -> Tensor<2> {
    up(s.clone() + (err.clone() * 2.0 + s.abs() * (2.0 * U) + TINY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_rounded_outwards() {
        for v in [0.1, 0.3, 1.0 / 3.0, 0.5, 2.0, 1e-7, 0.0] {
            let (d, u) = (f32_down(v), f32_up(v));
            assert!((d as f64) <= v && (u as f64) >= v, "{v}: {d} {u}");
            assert!(u.next_down() <= d.next_up(), "{v}: one step apart at most ({d}, {u})");
        }
        // 0.1 is not a float32: the ends differ; 0.5 is one, but the f64 parse could be one
        // 2^-53 off a decimal that is not, so the upward end still steps.
        assert!(f32_down(0.1) < f32_up(0.1));
    }

    #[test]
    fn float64_results_leave_as_the_nearest_float32_outwards() {
        let device = crate::tensor::default_device();
        let v: Vec<f64> = vec![0.1, -0.1, 1.0, -1.0, 0.3, 16_777_215.0, -16_777_217.0, 0.219_353_765_249, 16_777_217.0, 1.5 * 2f64.powi(-126), 1e-40, -1e-40, 1e39, -1e39, 0.0];
        // Powers of two (where the float32 spacing changes) and values just beside them.
        let mut v = v;
        for k in -120..120 {
            let p = 2f64.powi(k);
            for x in [p, -p, p * (1.0 + 1e-12), -p * (1.0 + 1e-12), p * (1.0 - 1e-12), -p * (1.0 - 1e-12), 3.0 * p, -3.0 * p] {
                v.push(x);
            }
        }
        let t = Tensor::<1>::from_data(crate::tensor::TensorData::new(v.clone(), [v.len()]), (&device, WORKING));
        let (lo, hi) = (crate::tensor::to_vec(lower_to_f32(t.clone())), crate::tensor::to_vec(upper_to_f32(t)));
        for ((&v, &l), &h) in v.iter().zip(&lo).zip(&hi) {
            assert!((l as f64) <= v && (h as f64) >= v, "{v}: [{l}, {h}]");
            if v.abs() > 1e-20 && v.abs() < 1e38 {
                // The closest ones (where TINY is negligible): one float32 step further in is past v.
                assert!((l.next_up() as f64) > v && (h.next_down() as f64) < v, "{v}: [{l}, {h}] not the nearest");
            }
        }
    }

    #[test]
    fn gamma_is_the_textbook_bound() {
        assert!((gamma(1) - U / (1.0 - U)).abs() < 1e-20);
        assert!(gamma(1000) > 1000.0 * U && gamma(1000) < 1000.0 * U * 1.001);
        assert!(gamma(usize::MAX / 2) >= f32::MAX as f64);
    }
}
