//! Float-sound bounds: results that hold for the real-valued network the float32 weights
//! define, although every operation is computed in float32 with round-to-nearest.
//!
//! Nothing here changes what the engines compute; it adds a rigorous error term. For a sum of
//! n products computed in float32 in any order (a GEMM, a convolution, a reduction), the
//! rounding error is at most gamma(n) = n u / (1 - n u) times the same sum over absolute values
//! (u = 2^-24; Higham, *Accuracy and Stability of Numerical Algorithms*, Section 3.1; fused
//! multiply-adds only make it smaller). The engines' linear forms stay what float32 made of
//! them: a back-substitution step that should give `a W` gives some float tensor `A'`, and the
//! difference `(a W - A') z` is bounded with the magnitudes of z known from sound interval
//! bounds. So each step adds to a non-negative error term, which is subtracted at the end
//! (ERAN's DeepPoly keeps interval coefficients instead; this costs one extra product per step
//! with the same shapes as the concretisation, not a second copy of the engine).
//!
//! Every such error term is doubled before it is used, which covers the rounding of the error
//! computation itself (all of its terms are non-negative, so float32 underestimates them by a
//! factor of at most 1 - gamma). An absolute `TINY` per result covers underflow (gradual, or
//! flushed to zero). The assumptions: IEEE-754 float32 arithmetic with round-to-nearest, sums
//! of products without fast-math reassociation into other formulas (no Winograd or FFT
//! convolutions), which holds for burn's CPU backend.

use super::interval::Interval;
use crate::net::{relu, Network, Op};
use crate::tensor::{pos, Tensor};

/// Unit roundoff of float32, round-to-nearest.
pub const U: f64 = 1.0 / 16_777_216.0;

/// Absolute slack per result for underflow: far above n 2^-126 for any n a network has, far
/// below any bound that matters.
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

/// `t` moved down by more than one rounding error of the operation that produced it.
pub fn down<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.clone() - (t.abs() * (2.0 * U) + TINY)
}

/// `t` moved up by more than one rounding error.
pub fn up<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.clone() + (t.abs() * (2.0 * U) + TINY)
}

/// The l-infinity ball of radius `eps` around each sample, intersected with [min, max], with
/// ends rounded outwards: it contains the region whose ends are the exact decimals given.
pub fn input_region(x: &Tensor<4>, eps: f64, clip: Option<(f64, f64)>) -> Interval {
    let e = f32_up(eps.max(0.0)) as f64;
    let (mut lo, mut hi) = (down(x.clone() - e), up(x.clone() + e));
    if let Some((min, max)) = clip {
        let (min, max) = (f32_down(min) as f64, f32_up(max) as f64);
        lo = lo.clamp(min, max);
        hi = hi.clamp(min, max);
    }
    Interval::new(lo, hi)
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
pub fn abs_bias(layer: &dyn crate::net::AffineLayer, input: &crate::net::Shape, device: &crate::tensor::Device) -> Tensor<4> {
    layer.forward(Tensor::zeros([1, input[0], input[1], input[2]], device)).abs()
}

/// Sound interval bounds of every value (index = value id) from the input box, intersected
/// with the bounds already `known` for some values (sound bounds from another engine).
pub fn propagate(net: &Network, input: &Interval, known: &[Option<Interval>]) -> Vec<Interval> {
    let device = input.lo.device();
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
                let err = (layer.abs_linear(c.clone().abs() + r.clone()) + abs_bias(layer, &in_shape, &device)) * (2.0 * g);
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
    fn gamma_is_the_textbook_bound() {
        assert!((gamma(1) - U / (1.0 - U)).abs() < 1e-20);
        assert!(gamma(1000) > 1000.0 * U && gamma(1000) < 1000.0 * U * 1.001);
        assert!(gamma(usize::MAX / 2) >= f32::MAX as f64);
    }
}
