//! One sample's input box pushed through the network as linear constraints, stage by stage.
//!
//! Columns: the input pixels (the box), then per hidden stage its pre-activations `z` (bounded
//! by the best bounds known) tied to the previous layer by equality rows, then one column per
//! unstable ReLU output. Stable ReLUs need no column: an active one *is* its `z`, an inactive
//! one is 0. Each unstable ReLU gets one of three encodings (paradox App. K.1; Tjeng et al.):
//!
//! - Triangle: a >= 0, a >= z, a <= u (z - l) / (u - l) (the convex hull);
//! - Parallelogram: a >= 0, a >= z, a <= u, a <= z - l;
//! - Exact: a binary d with a >= 0, a >= z, a <= u d, a <= z - l (1 - d) (big-M from l, u);
//! - Phase: the same rows with d continuous in [0, 1]. Their LP relaxation is the Triangle
//!   again, and fixing d to 0 or 1 fixes the ReLU's phase exactly: the branching variable of
//!   the certified phase search (`phase_bab.rs`).
//!
//! Every row is implied by the real-valued network (the LP bounds are float-sound when the
//! column bounds are): an affine row is a range row as wide as its stage's radii
//! (`Stages`), the Triangle's upper line has its intercept rounded up, and the objective's
//! constant is lowered by the rounding of the objective's own products.

use super::solver::Program;
use super::stages::Stages;
use crate::bounds::sound;
use crate::error::Result;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluEncoding {
    Triangle,
    Parallelogram,
    Exact,
    Phase,
}

/// The columns of an unstable ReLU encoded with `ReluEncoding::Phase`.
#[derive(Clone, Copy, Debug)]
pub struct PhaseCols {
    pub stage: usize,
    pub neuron: usize,
    /// Pre-activation, output, and phase (0: inactive, 1: active) columns.
    pub z: usize,
    pub a: usize,
    pub d: usize,
}

/// Elementwise bounds of one stage's pre-activations.
#[derive(Clone, Debug, PartialEq)]
pub struct StageBounds {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

impl StageBounds {
    pub fn unstable(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.lo.len()).filter(|&j| self.lo[j] < 0.0 && self.hi[j] > 0.0)
    }
}

/// `v` moved down (up) by more than its own rounding.
fn down(v: f64) -> f64 {
    v - (v.abs() * 2.0 * sound::U + sound::TINY)
}

fn up(v: f64) -> f64 {
    v + v.abs() * 2.0 * sound::U + sound::TINY
}

pub struct Encoding<'a> {
    stages: &'a Stages,
    pub program: Program,
    /// Input columns (the first `input_dim` columns).
    inputs: usize,
    /// The values feeding the next affine stage: a column, or None for a constant 0.
    current: Vec<Option<usize>>,
    /// Pre-activation columns of the stage added last.
    z: Vec<usize>,
    /// Bounds of every stage added so far (tightened in place).
    pub bounds: Vec<StageBounds>,
    /// The ReLUs encoded with `ReluEncoding::Phase`, in order.
    pub phases: Vec<PhaseCols>,
}

impl<'a> Encoding<'a> {
    /// The input box `[lo, hi]` (flat, the network's input order).
    pub fn new(stages: &'a Stages, lo: &[f64], hi: &[f64]) -> Result<Encoding<'a>> {
        let mut program = Program::new()?;
        let current = lo.iter().zip(hi).map(|(&l, &h)| program.add_col(l, h).map(Some)).collect::<Result<Vec<_>>>()?;
        Ok(Encoding { stages, program, inputs: lo.len(), current, z: Vec::new(), bounds: Vec::new(), phases: Vec::new() })
    }

    /// Stages added so far.
    pub fn depth(&self) -> usize {
        self.bounds.len()
    }

    /// Sparse terms of affine row `row` over the current columns, its constant, and a bound on
    /// how far the real network's row is from them over the columns' bounds.
    fn affine_terms(&self, stage: usize, row: usize) -> (Vec<(usize, f64)>, f64, f64) {
        let a = &self.stages.affine[stage];
        let terms = a.rows[row].iter().filter_map(|&(i, w)| self.current[i].map(|c| (c, w))).collect();
        let magnitude = |i: usize| {
            self.current[i].map_or(0.0, |c| {
                let (lo, hi) = self.program.col_bounds(c);
                lo.abs().max(hi.abs())
            })
        };
        (terms, a.bias[row], a.row_error(row, &magnitude))
    }

    /// Adds the next hidden stage's pre-activations, bounded by `bounds`.
    pub fn add_stage(&mut self, bounds: StageBounds) -> Result<()> {
        let k = self.depth();
        let n = self.stages.affine[k].outputs();
        let mut z = Vec::with_capacity(n);
        for j in 0..n {
            let col = self.program.add_col(bounds.lo[j], bounds.hi[j])?;
            let (mut terms, b, err) = self.affine_terms(k, j);
            terms.iter_mut().for_each(|t| t.1 = -t.1);
            terms.push((col, 1.0));
            let (lo, hi) = if err == 0.0 { (b, b) } else { (down(b - err), up(b + err)) };
            self.program.add_row(terms, lo, hi)?;
            z.push(col);
        }
        self.z = z;
        self.bounds.push(bounds);
        Ok(())
    }

    /// Tightens the unstable neurons of the last stage by minimising and maximising each over
    /// the program (every bound is a dual certificate, so never invalid). Stops at `deadline`, which also
    /// limits each LP (a stopped LP still gives a valid, looser bound).
    pub fn tighten_last(&mut self, deadline: Option<Instant>) -> Result<()> {
        let k = self.depth() - 1;
        let unstable: Vec<usize> = self.bounds[k].unstable().collect();
        for j in unstable {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let col = self.z[j];
            self.program.set_time_limit(deadline.map(|d| d.saturating_duration_since(Instant::now())));
            let lo = self.program.minimize(&[(col, 1.0)], 0.0, None)?;
            let b = &mut self.bounds[k];
            b.lo[j] = b.lo[j].max(lo);
            if b.lo[j] < 0.0 {
                let hi = -self.program.minimize(&[(col, -1.0)], 0.0, None)?;
                b.hi[j] = b.hi[j].min(hi).max(b.lo[j]);
            }
            let (lo, hi) = (self.bounds[k].lo[j], self.bounds[k].hi[j]);
            self.program.set_col_bounds(col, lo, hi)?;
        }
        self.program.set_time_limit(None);
        Ok(())
    }

    /// Adds the ReLU after the last stage; `encoding(j)` picks each unstable neuron's encoding.
    pub fn add_relu(&mut self, encoding: &dyn Fn(usize) -> ReluEncoding) -> Result<()> {
        let k = self.depth() - 1;
        let mut next = Vec::with_capacity(self.z.len());
        for (j, &z) in self.z.clone().iter().enumerate() {
            let (l, u) = (self.bounds[k].lo[j], self.bounds[k].hi[j]);
            if u <= 0.0 {
                next.push(None);
                continue;
            }
            if l >= 0.0 {
                next.push(Some(z));
                continue;
            }
            let a = self.program.add_col(0.0, u)?;
            // a >= z
            self.program.add_row(vec![(a, 1.0), (z, -1.0)], 0.0, f64::INFINITY)?;
            match encoding(j) {
                ReluEncoding::Triangle => {
                    // a <= lambda z + t, lambda = u / (u - l) rounded, t the lowest intercept
                    // that keeps the line above the ReLU at both ends (then on all of [l, u]),
                    // rounded up: -lambda l in exact arithmetic.
                    let lambda = u / (u - l);
                    let t = up((-lambda * l).max(u - lambda * u) + 4.0 * sound::U * (lambda * l).abs().max(u.abs() + (lambda * u).abs()));
                    self.program.add_row(vec![(a, 1.0), (z, -lambda)], f64::NEG_INFINITY, t)?;
                }
                ReluEncoding::Parallelogram => {
                    // a <= u is the column bound; a <= z - l
                    self.program.add_row(vec![(a, 1.0), (z, -1.0)], f64::NEG_INFINITY, -l)?;
                }
                ReluEncoding::Exact | ReluEncoding::Phase => {
                    let d = match encoding(j) {
                        ReluEncoding::Exact => self.program.add_binary()?,
                        _ => {
                            let d = self.program.add_col(0.0, 1.0)?;
                            self.phases.push(PhaseCols { stage: k, neuron: j, z, a, d });
                            d
                        }
                    };
                    // a <= u d
                    self.program.add_row(vec![(a, 1.0), (d, -u)], f64::NEG_INFINITY, 0.0)?;
                    // a <= z - l (1 - d)  <=>  a - z - l d <= -l
                    self.program.add_row(vec![(a, 1.0), (z, -1.0), (d, -l)], f64::NEG_INFINITY, -l)?;
                }
            }
            next.push(Some(a));
        }
        self.current = next;
        Ok(())
    }

    /// The objective `c . logits` over the columns feeding the last stage, and its constant,
    /// lowered so that `terms . x + constant` is at most the real network's `c . logits` on the
    /// columns' bounds: by the last stage's radii and the rounding of the f64 products and sums
    /// below (gamma(terms) of their absolute values).
    pub fn output_objective(&self, c: &[f64]) -> (Vec<(usize, f64)>, f64) {
        let last = self.stages.affine.len() - 1;
        debug_assert_eq!(self.depth(), last, "every hidden stage is encoded first");
        let mut acc = vec![0.0; self.program.num_cols()];
        let mut abs = vec![0.0; self.program.num_cols()];
        let (mut constant, mut constant_abs, mut slack) = (0.0, 0.0, 0.0);
        let rows = c.iter().filter(|&&ci| ci != 0.0).count();
        for (row, &ci) in c.iter().enumerate() {
            if ci == 0.0 {
                continue;
            }
            let (terms, b, err) = self.affine_terms(last, row);
            constant += ci * b;
            constant_abs += (ci * b).abs();
            slack += ci.abs() * err;
            for (col, w) in terms {
                acc[col] += ci * w;
                abs[col] += (ci * w).abs();
            }
        }
        let g = sound::gamma(rows + 1);
        let mut rounding = g * constant_abs;
        for (j, a) in abs.iter().enumerate() {
            if *a != 0.0 {
                let (lo, hi) = self.program.col_bounds(j);
                rounding += g * a * lo.abs().max(hi.abs());
            }
        }
        let allowance = (slack + rounding) * (1.0 + 2.0 * sound::gamma(acc.len() + rows + 2)) + if slack + rounding > 0.0 { sound::TINY } else { 0.0 };
        let terms = acc.into_iter().enumerate().filter(|&(_, v)| v != 0.0).collect();
        (terms, down(constant - allowance))
    }

    /// The input part of a solution's column values.
    pub fn input_point(&self, columns: &[f64]) -> Vec<f64> {
        columns[..self.inputs].to_vec()
    }

    /// The input part, clamped into the box (solver points may leave it by the feasibility
    /// tolerance).
    pub fn input_in_box(&self, columns: &[f64]) -> Vec<f64> {
        (0..self.inputs)
            .map(|j| {
                let (lo, hi) = self.program.col_bounds(j);
                columns[j].clamp(lo, hi)
            })
            .collect()
    }

    pub fn stages(&self) -> &Stages {
        self.stages
    }
}
