//! LP and MILP certification on HiGHS: the Triangle and Parallelogram relaxations solved as
//! linear programs (paradox App. K.1), and Tjeng et al.'s exact MILP.
//!
//! The bound engines start the work: their intermediate bounds (CROWN's for Triangle and the
//! MILP, IBP's for Parallelogram, both implied by the LP they seed) bound every column, and the
//! LP then tightens the unstable neurons layer by layer. Samples are independent programs and
//! run in parallel.

pub mod encode;
pub mod milp;
pub mod phase_bab;
pub mod solver;
pub mod stages;

pub use encode::{Encoding, ReluEncoding, StageBounds};
pub use milp::{decide, Verdict};
pub use stages::Stages;

use crate::bounds::{intermediate, Interval, Method, Spec};
use crate::error::Result;
use crate::net::Network;
use crate::tensor::{from_vec, to_vec, to_vec64, Tensor};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// The LP relaxations of CONTRACT.md's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LpRelaxation {
    Triangle,
    Parallelogram,
}

impl LpRelaxation {
    pub fn name(self) -> &'static str {
        match self {
            LpRelaxation::Triangle => "lp-triangle",
            LpRelaxation::Parallelogram => "lp-parallelogram",
        }
    }

    fn encoding(self) -> ReluEncoding {
        match self {
            LpRelaxation::Triangle => ReluEncoding::Triangle,
            LpRelaxation::Parallelogram => ReluEncoding::Parallelogram,
        }
    }

    /// The bound engines this relaxation's LP dominates in exact arithmetic: CROWN's and
    /// DeepZ's lines lie outside the triangle, the box and hBox's constant upper line outside
    /// the parallelogram. The LP result is never reported below theirs: in floating point, or
    /// when HiGHS stops short (time limit, or the degenerate LPs of a zero radius, on which it
    /// proved nothing for 9 of 10 CONV samples), the larger of two valid bounds is the answer.
    fn dominated(self) -> [Method; 2] {
        match self {
            LpRelaxation::Triangle => [Method::Crown, Method::Deepz],
            LpRelaxation::Parallelogram => [Method::Ibp, Method::Hbox],
        }
    }

    /// The engine whose bounds seed the tightening. They must be implied by the LP itself, so
    /// that seeding changes the cost and not the result: CROWN's lines are looser than the
    /// triangle, IBP's box is looser than the parallelogram.
    pub fn seed(self) -> Method {
        match self {
            LpRelaxation::Triangle => Method::Crown,
            LpRelaxation::Parallelogram => Method::Ibp,
        }
    }
}

/// One sample's input box, flat, in f64.
#[derive(Clone, Debug)]
pub struct InputBox {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

/// The per-sample boxes of a batch region (of either float type: f64 holds both exactly).
pub fn boxes(region: &Interval) -> Vec<InputBox> {
    let n = region.lo.dims()[0];
    let (lo, hi) = (to_vec64(region.lo.clone()), to_vec64(region.hi.clone()));
    let per = lo.len() / n.max(1);
    (0..n).map(|i| InputBox { lo: lo[i * per..(i + 1) * per].to_vec(), hi: hi[i * per..(i + 1) * per].to_vec() }).collect()
}

/// The engine's bounds on every hidden stage, per sample, widened by 1e-6 relative. With
/// `sound` they are float-sound bounds (`bounds/sound.rs`) of the real network over `region`
/// (which should then be `sound::input_region`'s), and widening them keeps them so; it is
/// needed all the same, as HiGHS's dual simplex stalled on the degenerate LPs that the exact
/// ends made. Without `sound`, float32 bounds: the widening keeps an LP column bound from
/// cutting off a real value in practice, but proves nothing.
pub fn engine_bounds(net: &Network, stages: &Stages, region: &Interval, method: Method, sound: bool) -> Result<Vec<Vec<StageBounds>>> {
    let inter = intermediate(net, region, &method.relaxation().with_sound(sound))?;
    let n = region.lo.dims()[0];
    let mut out = vec![Vec::with_capacity(stages.hidden()); n];
    let mut fallback: Option<Vec<Interval>> = None;
    for &v in &stages.relu_inputs {
        let b = match &inter.bounds[v] {
            Some(b) => b.clone(),
            None => fallback
                .get_or_insert_with(|| match sound {
                    true => crate::bounds::sound::propagate(&crate::bounds::sound::working_network(net), &region.cast(crate::bounds::sound::WORKING), &[]),
                    false => crate::bounds::interval::propagate(net, region),
                })[v]
                .clone(),
        };
        let (lo, hi) = (to_vec64(b.lo), to_vec64(b.hi));
        let per = lo.len() / n.max(1);
        for (i, sample) in out.iter_mut().enumerate() {
            let range = i * per..(i + 1) * per;
            let widen = |l: f64, h: f64| {
                let slack = 1e-6 * (1.0 + l.abs() + h.abs());
                (l - slack, h + slack)
            };
            let (l, h): (Vec<f64>, Vec<f64>) = lo[range.clone()].iter().zip(&hi[range]).map(|(&l, &h)| widen(l, h)).unzip();
            sample.push(StageBounds { lo: l, hi: h });
        }
    }
    Ok(out)
}

/// Encodes every hidden stage of one sample, tightening each stage after the first (whose
/// interval bounds are already exact) by LP before its ReLU is added. A `deadline` is shared
/// out evenly: stage k of the K tightened ones may run until k/K of the time is up (what an
/// earlier stage leaves passes on), so that a wide first stage cannot starve the later ones,
/// whose bounds matter as much for the output.
pub fn encode_tightened<'a>(
    stages: &'a Stages,
    input: &InputBox,
    seed: &[StageBounds],
    relu: &dyn Fn(usize, usize) -> ReluEncoding,
    deadline: Option<Instant>,
) -> Result<Encoding<'a>> {
    let mut enc = Encoding::new(stages, &input.lo, &input.hi)?;
    let start = Instant::now();
    let tightened = seed.len().saturating_sub(1).max(1) as u32;
    for (k, bounds) in seed.iter().enumerate() {
        enc.add_stage(bounds.clone())?;
        if k > 0 {
            let share = deadline.map(|d| start + d.saturating_duration_since(start) * k as u32 / tightened);
            enc.tighten_last(share)?;
        }
        enc.add_relu(&|j| relu(k, j))?;
    }
    Ok(enc)
}

/// Encodes the hidden stages with bounds fixed in advance (no tightening).
pub fn encode_fixed<'a>(stages: &'a Stages, input: &InputBox, bounds: &[StageBounds], relu: &dyn Fn(usize, usize) -> ReluEncoding) -> Result<Encoding<'a>> {
    let mut enc = Encoding::new(stages, &input.lo, &input.hi)?;
    for (k, b) in bounds.iter().enumerate() {
        enc.add_stage(b.clone())?;
        enc.add_relu(&|j| relu(k, j))?;
    }
    Ok(enc)
}

/// The rows of a spec `[B, R, K]` for each of `n` samples.
pub fn spec_rows(spec: &Spec, n: usize) -> Vec<Vec<Vec<f64>>> {
    let [b, r, k] = spec.c.dims();
    let c = to_vec64(spec.c.clone());
    (0..n)
        .map(|i| {
            let s = if b == 1 { 0 } else { i };
            (0..r).map(|row| c[(s * r + row) * k..(s * r + row + 1) * k].to_vec()).collect()
        })
        .collect()
}

/// Lower bounds `[N, R]` of `spec . f(x)` over the region by the LP relaxation, never below
/// those of the engines it dominates (`LpRelaxation::dominated`). With `sound` they
/// are float-sound (over `sound::input_region`'s region): sound seeds, rows implied by the
/// real network (`encode.rs`), and every LP bound a dual certificate evaluated with a
/// rounding allowance (`solver.rs`). With `timeout`, each sample's tightening stops after
/// that long and each of its output LPs may take that long: a stopped LP keeps the bound its
/// multipliers prove, so the result stays valid and only gets looser (seen on CONV networks,
/// whose LPs of ~10^4 rows the simplex can take minutes on).
pub fn lower_bound(net: &Network, stages: &Stages, region: &Interval, spec: &Spec, relaxation: LpRelaxation, sound: bool, timeout: Option<Duration>) -> Result<Tensor<2>> {
    let n = region.lo.dims()[0];
    let seeds = engine_bounds(net, stages, region, relaxation.seed(), sound)?;
    let rows = spec_rows(spec, n);
    let inputs = boxes(region);
    let per_sample: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let deadline = timeout.map(|t| Instant::now() + t);
            let mut enc = encode_tightened(stages, &inputs[i], &seeds[i], &|_, _| relaxation.encoding(), deadline)?;
            enc.program.set_time_limit(timeout);
            rows[i]
                .iter()
                .map(|c| {
                    let (terms, constant) = enc.output_objective(c);
                    enc.program.minimize(&terms, constant, None)
                })
                .collect::<Result<Vec<f64>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let r = spec.rows();
    let mut flat: Vec<f32> = per_sample.into_iter().flatten().map(round_down).collect();
    for method in relaxation.dominated() {
        let other = to_vec(crate::bounds::lower_bound(net, region, spec, &method.relaxation().with_sound(sound))?);
        flat.iter_mut().zip(other).for_each(|(a, b)| *a = a.max(b));
    }
    Ok(from_vec(flat, [n, r], &region.lo.device()))
}

/// The largest float32 not above `v` (an f64 lower bound stays a lower bound in float32).
pub fn round_down(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v {
        f.next_down()
    } else {
        f
    }
}
