//! Branch and bound over ReLU phases with LP nodes: the float-sound proof behind a MILP's
//! answer.
//!
//! HiGHS decides a MILP within tolerances (1e-7 on every row and bound, integrality 1e-6) and
//! leaves no certificate, so its "no point below the cutoff" is a strong hint, not a proof.
//! This search proves the same statement with LP dual certificates only (`solver.rs`), which
//! are evaluated with a rounding allowance, on rows the real network implies (`encode.rs`).
//! Each ReLU that the MILP made exact is encoded with `ReluEncoding::Phase`: the big-M rows
//! with a continuous phase column d in [0, 1], whose LP relaxation is the Triangle. A node
//! fixes some phases (d = 0: inactive, d = 1: active, both exact) and is closed when its LP's
//! dual bound proves the goal on all of it. The LP is one program, re-solved warm from the
//! last basis after each change of the phase columns' bounds.
//!
//! Complete up to the allowance: with every phase fixed, a node's LP is the network itself on
//! that activation pattern. Nodes are taken lowest bound first; the LP's point of each open
//! node is a counterexample candidate (the caller confirms it with the real network).

use super::encode::Encoding;
use crate::error::Result;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub enum Search {
    /// At every point of the box some goal row `c . y > d` holds (certified).
    Proved,
    /// An input (flat, clamped to the box) where the f64 forward pass violates every row.
    Candidate(Vec<f64>),
    Timeout,
    /// A node with every phase fixed was neither proved nor refuted (within the allowance).
    Exhausted,
}

/// An open node: the phases it fixes, and its parent's certified bound (the order key).
struct Node {
    bound: f64,
    fixed: Vec<(usize, bool)>,
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.bound == other.bound
    }
}
impl Eq for Node {}
impl PartialOrd for Node {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Node {
    /// Reversed: the heap pops the lowest bound first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.bound.total_cmp(&self.bound)
    }
}

/// Proves that at every point of the encoding's box some row of `goal` holds strictly:
/// `c . f(x) > d` (a conjunction of `c . f(x) <= d` has no point). Consumes the encoding: it
/// gains the rows of `t >= c . f(x) - d` and the search minimises t, so a node is closed when
/// its LP's certified minimum of t is positive.
pub fn prove(mut enc: Encoding, goal: &[(Vec<f64>, f64)], deadline: Instant) -> Result<Search> {
    // t over real points is at least max_i (lower bound of row i - d_i); any upper end >= 0
    // keeps every counterexample (t <= 0) feasible.
    let mut t_lo = f64::NEG_INFINITY;
    let mut objectives = Vec::with_capacity(goal.len());
    for (c, d) in goal {
        let (terms, constant) = enc.output_objective(c);
        let lb = enc.program.minimize(&terms, constant, None)?;
        if lb > *d {
            return Ok(Search::Proved);
        }
        t_lo = t_lo.max(lb - d);
        objectives.push((terms, constant, *d));
    }
    let t_lo = if t_lo.is_finite() { t_lo } else { -1e9 };
    let t = enc.program.add_col(t_lo, t_lo.abs().max(1.0))?;
    for (terms, constant, d) in objectives {
        // terms . x + constant - d <= t
        let mut row = terms;
        row.push((t, -1.0));
        enc.program.add_row(row, f64::NEG_INFINITY, d - constant)?;
    }
    let phases = enc.phases.clone();
    // The phase columns' current state in the program: None = free in [0, 1].
    let mut state: Vec<Option<bool>> = vec![None; phases.len()];
    let mut heap = BinaryHeap::new();
    heap.push(Node { bound: t_lo, fixed: Vec::new() });
    let mut solved = 0usize;
    while let Some(node) = heap.pop() {
        if Instant::now() >= deadline {
            tracing::debug!("phase search: {solved} nodes solved, {} open at the deadline", heap.len() + 1);
            return Ok(Search::Timeout);
        }
        let mut want: Vec<Option<bool>> = vec![None; phases.len()];
        for &(i, active) in &node.fixed {
            want[i] = Some(active);
        }
        for (i, p) in phases.iter().enumerate() {
            if want[i] != state[i] {
                let (lo, hi) = match want[i] {
                    None => (0.0, 1.0),
                    Some(false) => (0.0, 0.0),
                    Some(true) => (1.0, 1.0),
                };
                enc.program.replace_col_bounds(p.d, lo, hi)?;
                state[i] = want[i];
            }
        }
        // The dual simplex may stop once it has proved t > 0, which closes the node.
        let mut s = enc.program.solve_lp(&[(t, 1.0)], 0.0, Some(0.0))?;
        solved += 1;
        if s.lower > 0.0 {
            continue;
        }
        if !s.optimal {
            s = enc.program.solve_lp(&[(t, 1.0)], 0.0, None)?;
            if s.lower > 0.0 {
                continue;
            }
            if !s.optimal {
                // Infeasible to HiGHS but not certified empty (a tolerance artefact), or
                // numerical trouble: nothing to branch on.
                return Ok(Search::Exhausted);
            }
        }
        let x = enc.input_in_box(&s.point);
        let y = enc.stages().forward(&x);
        if goal.iter().all(|(c, d)| c.iter().zip(&y).map(|(a, b)| a * b).sum::<f64>() <= *d) {
            return Ok(Search::Candidate(x));
        }
        // Branch where the LP uses its relaxation most: the largest a - relu(z) at its point.
        let gap = |i: usize| s.point[phases[i].a] - s.point[phases[i].z].max(0.0);
        let Some(i) = (0..phases.len()).filter(|&i| want[i].is_none()).max_by(|&a, &b| gap(a).total_cmp(&gap(b))) else {
            return Ok(Search::Exhausted);
        };
        for active in [false, true] {
            let mut fixed = node.fixed.clone();
            fixed.push((i, active));
            heap.push(Node { bound: s.lower, fixed });
        }
    }
    tracing::debug!("phase search: proved with {solved} nodes");
    Ok(Search::Proved)
}
