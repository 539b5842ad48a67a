//! ReLU: its forward pass and its relaxations.
//!
//! For pre-activation bounds l < 0 < u the output lies between a lower line through the origin
//! (slope chosen by `ReluLower`) and an upper line. Stable neurons are exact: identity when
//! l >= 0, zero when u <= 0. The bound engines in `bounds/` only ever see `ReluLines`.

use crate::tensor::{indicator, neg, pos, Tensor};

/// The lower line of an unstable ReLU (see the Relaxations table of CONTRACT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluLower {
    /// Box/IBP/hBox: the output is only known to lie in [0, u] (upper line constant u).
    Box,
    /// CROWN/DeepPoly: slope 1 if u > -l, else 0.
    Adaptive,
    /// CROWN-0: slope 0.
    Zero,
    /// DeepZ/Fast-Lin/CAP: slope u / (u - l), parallel to the chord.
    Parallel,
}

/// Linear bounds `lower_slope * x <= relu(x) <= upper_slope * x + upper_intercept`, per neuron.
#[derive(Clone, Debug)]
pub struct ReluLines {
    pub lower_slope: Tensor<4>,
    pub upper_slope: Tensor<4>,
    pub upper_intercept: Tensor<4>,
}

/// Smallest width used when dividing by u - l (as the reference implementations do).
const MIN_WIDTH: f64 = 1e-12;

pub fn forward(x: Tensor<4>) -> Tensor<4> {
    pos(x)
}

/// Interval transformer: [relu(l), relu(u)].
pub fn interval(lo: Tensor<4>, hi: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    (pos(lo), pos(hi))
}

/// Chord slope u/(u-l) on unstable neurons, 1 on active and 0 on dead ones, and the chord's
/// intercept -slope*l (0 on stable neurons).
pub fn chord(l: &Tensor<4>, u: &Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let lc = neg(l.clone());
    let uc = pos(u.clone());
    let slope = uc.clone() / (uc - lc.clone()).clamp_min(MIN_WIDTH);
    let intercept = slope.clone().neg() * lc;
    (slope, intercept)
}

/// The relaxation of every neuron for bounds `l`, `u` of its input.
pub fn lines(l: &Tensor<4>, u: &Tensor<4>, lower: ReluLower) -> ReluLines {
    let (slope, intercept) = chord(l, u);
    match lower {
        ReluLower::Box => {
            // Active neurons stay exact; unstable ones become the constant range [0, u].
            let active = indicator(l.clone().greater_equal_elem(0.0), l.dtype());
            let unstable_u = pos(u.clone() * (active.clone().neg() + 1.0));
            ReluLines { lower_slope: active.clone(), upper_slope: active, upper_intercept: unstable_u }
        }
        ReluLower::Adaptive => {
            // slope > 0.5 <=> u > -l on unstable neurons; 1 on active, 0 on dead ones.
            let lower_slope = indicator(slope.clone().detach().greater_elem(0.5), slope.dtype());
            ReluLines { lower_slope, upper_slope: slope, upper_intercept: intercept }
        }
        ReluLower::Zero => {
            let lower_slope = indicator(slope.clone().detach().greater_equal_elem(1.0), slope.dtype());
            ReluLines { lower_slope, upper_slope: slope, upper_intercept: intercept }
        }
        ReluLower::Parallel => ReluLines { lower_slope: slope.clone(), upper_slope: slope, upper_intercept: intercept },
    }
}

/// Lines whose lower slope is given per neuron (alpha-CROWN, random slopes); the slopes of
/// stable neurons are overridden to stay exact.
pub fn lines_with_slopes(l: &Tensor<4>, u: &Tensor<4>, alpha: Tensor<4>) -> ReluLines {
    let (slope, intercept) = chord(l, u);
    let active = indicator(l.clone().greater_equal_elem(0.0), l.dtype());
    let unstable = indicator(l.clone().lower_elem(0.0).bool_and(u.clone().greater_elem(0.0)), l.dtype());
    ReluLines { lower_slope: active + alpha * unstable, upper_slope: slope, upper_intercept: intercept }
}
