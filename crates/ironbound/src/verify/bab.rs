//! Branch and bound over the input box, for low-dimensional inputs (ACAS Xu has 5): bound the
//! conjunction's rows with CROWN on a batch of sub-boxes, drop the boxes where some row is
//! provably violated, look for a counterexample at the centres of the rest, and split each
//! remaining box in two along the input with the largest influence (gradient times width).
//!
//! Complete in the limit: a box that can no longer be split (its widths at float resolution)
//! ends the search with `Exhausted`, never with a claim.

use super::falsify::Conjunction;
use crate::bounds::{lower_bound, Interval, Method};
use crate::error::Result;
use crate::net::Network;
use crate::tensor::{from_vec, to_vec};
use std::time::Instant;

/// Sub-boxes bounded per engine call.
const BATCH: usize = 512;

#[derive(Clone, Debug, PartialEq)]
pub enum BabResult {
    /// Every sub-box has a row whose lower bound exceeds its right-hand side.
    Proved,
    /// A centre where the conjunction holds under the float32 forward pass (to be checked).
    Candidate(Vec<f32>),
    Timeout,
    /// A box too small to split was neither proved nor refuted.
    Exhausted,
}

/// A float-sound lower bound `lb` of `c . y` (`bounds/sound.rs`) proves `c . y > d`.
pub fn proves(lb: f32, d: f64) -> bool {
    f64::from(lb) > d
}

/// Decides whether the conjunction holds somewhere in `[lo, hi]`, splitting until `deadline`.
pub fn search(net: &Network, lo: &[f32], hi: &[f32], conj: &Conjunction, deadline: Instant) -> Result<BabResult> {
    let [c, h, w] = net.input_shape();
    let f = lo.len();
    let device = net.device().unwrap_or_else(crate::tensor::default_device);
    let spec = conj.spec(&device);
    // Float-sound: a proof covers the real-valued network on every real point of the box.
    let relaxation = Method::Crown.relaxation().with_sound(true);
    let mut stack: Vec<(Vec<f32>, Vec<f32>)> = vec![(lo.to_vec(), hi.to_vec())];
    let mut bounded = 0usize;
    while !stack.is_empty() {
        if Instant::now() >= deadline {
            tracing::debug!("input branch and bound: {bounded} boxes bounded, {} open at the deadline", stack.len());
            return Ok(BabResult::Timeout);
        }
        // Depth first keeps the stack small; the batch takes the newest (smallest) boxes.
        let take = stack.len().min(BATCH);
        let batch: Vec<(Vec<f32>, Vec<f32>)> = stack.split_off(stack.len() - take);
        let b = batch.len();
        bounded += b;
        let lo_t = from_vec(batch.iter().flat_map(|(l, _)| l.iter().copied()).collect(), [b, c, h, w], &device);
        let hi_t = from_vec(batch.iter().flat_map(|(_, u)| u.iter().copied()).collect(), [b, c, h, w], &device);
        let region = Interval::new(lo_t.clone(), hi_t.clone());
        let lb = to_vec(lower_bound(net, &region, &spec, &relaxation)?);
        let m = conj.rows.len();
        let open: Vec<usize> = (0..b).filter(|&i| !(0..m).any(|r| proves(lb[i * m + r], conj.rhs[r]))).collect();
        if open.is_empty() {
            continue;
        }
        // Centres of the open boxes: counterexample candidates and the split heuristic's
        // gradient, in one forward and backward pass.
        let centres: Vec<f32> = open.iter().flat_map(|&i| batch[i].0.iter().zip(&batch[i].1).map(|(&l, &u)| l + (u - l) / 2.0)).collect();
        let x = from_vec(centres.clone(), [open.len(), c, h, w], &device).autodiff().require_grad();
        let viol = conj.violation(net.forward(x.clone()));
        let values = to_vec(viol.clone().detach().without_autodiff());
        if let Some(i) = (0..open.len()).filter(|&i| values[i] <= 0.0).min_by(|&a, &b| values[a].total_cmp(&values[b])) {
            return Ok(BabResult::Candidate(centres[i * f..(i + 1) * f].to_vec()));
        }
        let grads = viol.sum().backward();
        let g = x.grad(&grads).map(to_vec).unwrap_or_else(|| vec![1.0; open.len() * f]);
        for (o, &i) in open.iter().enumerate() {
            let (l, u) = &batch[i];
            let score = |j: usize| (u[j] - l[j]) * g[o * f + j].abs().max(1e-12);
            let Some(j) = (0..f).filter(|&j| u[j] > l[j]).max_by(|&a, &b| score(a).total_cmp(&score(b))) else {
                return Ok(BabResult::Exhausted);
            };
            let mid = l[j] + (u[j] - l[j]) / 2.0;
            if !(mid > l[j] && mid < u[j]) {
                return Ok(BabResult::Exhausted);
            }
            let (mut left_hi, mut right_lo) = (u.clone(), l.clone());
            left_hi[j] = mid;
            right_lo[j] = mid;
            stack.push((l.clone(), left_hi));
            stack.push((right_lo, u.clone()));
        }
    }
    Ok(BabResult::Proved)
}
