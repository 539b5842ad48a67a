//! Complete decisions for one sample: is every margin `f_y - f_j` positive on the box?
//!
//! The cheap stages go first: the Triangle LP with layer-by-layer tightened bounds, whose dual
//! certificates already settle most robust samples. The rest go to Tjeng et al.'s MILP over the
//! same bounds (binaries only for the unstable ReLUs the policy names: all of them for `milp`,
//! some for COLT's partial encodings), one program per margin, most-violated margin first, each
//! stopped as soon as its sign is decided (a cutoff prunes every node whose bound is positive;
//! the first negative point ends the search).
//!
//! HiGHS decides within tolerances; with `sound`, each of its "no point below the cutoff"
//! answers is proved again by the certified phase search over the same binaries
//! (`phase_bab.rs`) before a sample counts as certified.

use super::encode::{ReluEncoding, StageBounds};
use super::phase_bab::{self, Search};
use super::solver::MilpOutcome;
use super::{encode_fixed, encode_tightened, InputBox, Stages};
use crate::error::Result;
use std::time::Instant;

/// A margin counts as positive when the MILP proves it is at least this. Ties (margin 0) are
/// not robust under CONTRACT.md's `> 0` rule, so the cutoff sits just above 0.
pub const MARGIN_CUTOFF: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every margin is positive on the box.
    Certified,
    /// The MILP's point (flat input) where some margin is negative; a forward pass of the real
    /// network must confirm it before anyone calls the sample falsified.
    Candidate(Vec<f64>),
    /// The time budget ran out first.
    Timeout,
    /// Neither proved nor refuted (a relaxation too loose, or solver trouble).
    Unknown,
}

/// Which unstable ReLUs get binaries, given the tightened bounds of every stage: `mask[k][j]`.
pub type ExactPolicy<'p> = &'p dyn Fn(&[StageBounds]) -> Vec<Vec<bool>>;

/// Every unstable ReLU exact: the complete MILP.
pub fn all_exact(bounds: &[StageBounds]) -> Vec<Vec<bool>> {
    bounds.iter().map(|b| vec![true; b.lo.len()]).collect()
}

/// The margin rows `e_y - e_j`, j != y.
fn margins(label: usize, classes: usize) -> Vec<(usize, Vec<f64>)> {
    (0..classes)
        .filter(|&j| j != label)
        .map(|j| {
            let mut c = vec![0.0; classes];
            c[label] = 1.0;
            c[j] = -1.0;
            (j, c)
        })
        .collect()
}

/// The float-sound proof of a MILP's answer: the phase search with a phase column where the
/// MILP had a binary (`exact`), over the same bounds. `goal`: rows `(c, d)`, proved when some
/// `c . f(x) > d` holds at every point of the box.
pub fn prove_again(stages: &Stages, input: &InputBox, bounds: &[StageBounds], exact: &[Vec<bool>], goal: &[(Vec<f64>, f64)], deadline: Instant) -> Result<Search> {
    let encoding = |k: usize, j: usize| if exact[k][j] { ReluEncoding::Phase } else { ReluEncoding::Triangle };
    phase_bab::prove(encode_fixed(stages, input, bounds, &encoding)?, goal, deadline)
}

/// Decides one sample. `seed` are CROWN-quality bounds of every hidden stage; `deadline` bounds
/// the whole decision (LP tightening included). With `sound` (seeds float-sound too), a
/// `Certified` is float-sound.
pub fn decide(stages: &Stages, input: &InputBox, seed: &[StageBounds], label: usize, policy: ExactPolicy, deadline: Instant, sound: bool) -> Result<Verdict> {
    let classes = stages.affine.last().map(|a| a.outputs()).unwrap_or(0);
    let mut lp = encode_tightened(stages, input, seed, &|_, _| ReluEncoding::Triangle, Some(deadline))?;
    let mut open: Vec<(f64, Vec<f64>)> = Vec::new();
    for (_, c) in margins(label, classes) {
        let (terms, constant) = lp.output_objective(&c);
        let bound = lp.program.minimize(&terms, constant, Some(0.0))?;
        if bound <= 0.0 {
            open.push((bound, c));
        }
    }
    if open.is_empty() {
        return Ok(Verdict::Certified);
    }
    let bounds = lp.bounds.clone();
    drop(lp);
    let exact = policy(&bounds);
    let encoding = |k: usize, j: usize| if exact[k][j] { ReluEncoding::Exact } else { ReluEncoding::Triangle };
    let mut milp = encode_fixed(stages, input, &bounds, &encoding)?;
    open.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut undecided = false;
    for (_, c) in open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Verdict::Timeout);
        }
        let (terms, constant) = milp.output_objective(&c);
        let complete = exact.iter().zip(&bounds).all(|(m, b)| b.unstable().all(|j| m[j]));
        match milp.program.solve_milp(&terms, constant, Some(MARGIN_CUTOFF), left)? {
            MilpOutcome::AboveCutoff if sound => match prove_again(stages, input, &bounds, &exact, &[(c, 0.0)], deadline)? {
                Search::Proved => {}
                Search::Candidate(x) if complete => return Ok(Verdict::Candidate(x)),
                Search::Timeout => return Ok(Verdict::Timeout),
                Search::Candidate(_) | Search::Exhausted => undecided = true,
            },
            MilpOutcome::AboveCutoff => {}
            MilpOutcome::Below { point, .. } => {
                // With some ReLUs relaxed the point may be spurious; only a complete
                // encoding's point is worth a forward pass.
                if complete {
                    return Ok(Verdict::Candidate(milp.input_in_box(&point)));
                }
                undecided = true;
            }
            MilpOutcome::TimedOut { .. } => return Ok(Verdict::Timeout),
            MilpOutcome::Optimal { .. } | MilpOutcome::Failed(_) => undecided = true,
        }
        if undecided {
            return Ok(Verdict::Unknown);
        }
    }
    Ok(Verdict::Certified)
}


/// Lower bounds of arbitrary rows `c . f(x)` by the complete MILP (every unstable ReLU exact,
/// bounds tightened by the Triangle LP first): the exact minimum when HiGHS finishes within
/// `deadline`, else the best bound it proved, and never below the LP's. With `sound` (seeds
/// float-sound too), HiGHS's bound counts only once the phase search proves it, less a
/// margin of 1e-6 relative; otherwise the LP's certified bound stands.
pub fn exact_row_bounds(stages: &Stages, input: &InputBox, seed: &[StageBounds], rows: &[Vec<f64>], deadline: Instant, sound: bool) -> Result<Vec<f64>> {
    let mut lp = encode_tightened(stages, input, seed, &|_, _| ReluEncoding::Triangle, Some(deadline))?;
    let lp_bounds = rows
        .iter()
        .map(|c| {
            let (terms, constant) = lp.output_objective(c);
            lp.program.minimize(&terms, constant, None)
        })
        .collect::<Result<Vec<f64>>>()?;
    let bounds = lp.bounds.clone();
    drop(lp);
    let mut milp = encode_fixed(stages, input, &bounds, &|_, _| ReluEncoding::Exact)?;
    let all = all_exact(&bounds);
    rows.iter()
        .zip(lp_bounds)
        .map(|(c, lp_bound)| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(lp_bound);
            }
            let (terms, constant) = milp.output_objective(c);
            let claimed = match milp.program.solve_milp(&terms, constant, None, left)? {
                MilpOutcome::Optimal { lower, .. } | MilpOutcome::TimedOut { lower } if lower > lp_bound => lower,
                _ => return Ok(lp_bound),
            };
            if !sound {
                return Ok(claimed);
            }
            let target = claimed - 1e-6 * (1.0 + claimed.abs());
            Ok(match prove_again(stages, input, &bounds, &all, &[(c.clone(), target)], deadline)? {
                Search::Proved => target.max(lp_bound),
                _ => lp_bound,
            })
        })
        .collect()
}
