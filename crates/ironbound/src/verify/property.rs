//! Deciding a VNN-LIB property (`ironbound verify`).
//!
//! The property describes a counterexample: for some case, an input in its box whose outputs
//! satisfy every constraint of one of its disjuncts. The pipeline, cheapest first:
//!
//! 1. falsify: sign-gradient descent on each disjunct's worst violation from many starts;
//! 2. bound: IBP, CROWN and alpha-CROWN on the whole box; a disjunct with a row whose lower
//!    bound exceeds its right-hand side is impossible;
//! 3. search completely: branch and bound over the input box for low-dimensional inputs, the
//!    MILP (with Triangle-LP-tightened bounds) otherwise, until the deadline.
//!
//! `Sat` is only returned for a point that lies in the box and satisfies the disjunct in real
//! arithmetic (rigorous enclosures of the real network's outputs, not just its float32 forward
//! pass); `Unsat` only when every disjunct of every case was proved impossible, by float-sound
//! bounds.

use super::bab::{self, BabResult};
use super::falsify::{self, Conjunction, FalsifyConfig};
use super::lp::{self, milp, phase_bab::Search, solver::MilpOutcome, InputBox, ReluEncoding};
use crate::bounds::{lower_bound, sound, Interval, Method};
use crate::error::{Error, Result};
use crate::io::vnnlib::{Case, Property};
use crate::net::Network;
use crate::tensor::{from_vec, to_vec};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Inputs up to this many dimensions are split directly; larger ones go to the MILP.
pub const INPUT_SPLIT_MAX_DIMS: usize = 16;

#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub timeout: Duration,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Unsat,
    Sat,
    Unknown,
    Timeout,
}

impl Answer {
    pub fn as_str(&self) -> &'static str {
        match self {
            Answer::Unsat => "unsat",
            Answer::Sat => "sat",
            Answer::Unknown => "unknown",
            Answer::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Counterexample {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub result: Answer,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
    /// Which stage decided: falsify, bounds, bab, milp (or none).
    pub stage: String,
}

/// Checks that the property's variables fit the model.
pub fn check_fits(net: &Network, prop: &Property) -> Result<()> {
    let inputs = crate::net::numel(&net.input_shape());
    if prop.num_inputs != inputs {
        return Err(Error::input(format!("the property declares {} inputs X_i but the model has {inputs}", prop.num_inputs)));
    }
    if prop.num_outputs != net.num_outputs() {
        return Err(Error::input(format!("the property declares {} outputs Y_j but the model has {}", prop.num_outputs, net.num_outputs())));
    }
    Ok(())
}

fn conjunction(constraints: &[crate::io::vnnlib::Constraint]) -> Conjunction {
    Conjunction { rows: constraints.iter().map(|c| c.coef.clone()).collect(), rhs: constraints.iter().map(|c| c.rhs).collect() }
}

/// The network's outputs at `x` (as float32 computes them) if `x` is a counterexample of the
/// property in real arithmetic: strictly inside its box, with the disjunct holding for every
/// output in rigorous enclosures of the real network's outputs (`sound::outputs_at`), so a
/// float32 rounding can never make a `sat`. A point on a box end is first moved one float32
/// step inwards.
fn confirm(net: &Network, prop: &Property, x: &[f32]) -> Option<Counterexample> {
    let [c, h, w] = net.input_shape();
    let device = net.device().unwrap_or_else(crate::tensor::default_device);
    let x = inwards(prop, x);
    let xt = from_vec(x.clone(), [1, c, h, w], &device);
    let y: Vec<f64> = to_vec(net.forward(xt.clone())).into_iter().map(f64::from).collect();
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    if !prop.is_counterexample(&x, &y, 0.0) {
        return None;
    }
    let (y_lo, y_hi) = sound::outputs_at(net, xt);
    prop.is_real_counterexample(&x, &y_lo, &y_hi).then_some(Counterexample { x, y })
}

/// `x` with every coordinate that sits on an end of the first box holding it moved one float32
/// step inwards (where the box is wide enough): a box end is a decimal, which its parse may
/// miss by 2^-53 relative.
fn inwards(prop: &Property, x: &[f32]) -> Vec<f32> {
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let Some(case) = prop.cases.iter().find(|c| c.contains(&x64, 0.0)) else { return x.to_vec() };
    let step = |(&v, (&lo, &hi)): (&f32, (&f64, &f64))| match f64::from(v) {
        e if e == lo && lo != 0.0 && f64::from(v.next_up()) <= hi => v.next_up(),
        e if e == hi && hi != 0.0 && f64::from(v.next_down()) >= lo => v.next_down(),
        _ => v,
    };
    x.iter().zip(case.lower.iter().zip(&case.upper)).map(step).collect()
}

/// The case's box in float32, rounded inwards so that every float32 point of it is in the
/// real box.
fn f32_box(case: &Case) -> (Vec<f32>, Vec<f32>) {
    let inward = |v: f64, up: bool| {
        let f = v as f32;
        match (up, f64::from(f) < v, f64::from(f) > v) {
            (true, true, _) => f.next_up(),
            (false, _, true) => f.next_down(),
            _ => f,
        }
    };
    (case.lower.iter().map(|&v| inward(v, true)).collect(), case.upper.iter().map(|&v| inward(v, false)).collect())
}

/// The case's box in float32, rounded outwards so that it holds every real point of the real
/// box: what a proof must cover (the bounds are float-sound, `bounds/sound.rs`).
fn outward_box(case: &Case) -> (Vec<f32>, Vec<f32>) {
    (case.lower.iter().map(|&v| sound::f32_down(v)).collect(), case.upper.iter().map(|&v| sound::f32_up(v)).collect())
}

/// Decides the property within `cfg.timeout`.
pub fn verify(net: &Network, prop: &Property, cfg: &VerifyConfig) -> Result<Verdict> {
    check_fits(net, prop)?;
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let done = |result: Answer, stage: &str, cex: Option<Counterexample>| Verdict { result, seconds: start.elapsed().as_secs_f64(), counterexample: cex, stage: stage.into() };
    let device = net.device().unwrap_or_else(crate::tensor::default_device);
    let [c, h, w] = net.input_shape();
    // Every (case, disjunct) still open, with its float32 box (inward: where counterexamples
    // are looked for) and the outward box that proofs cover.
    let mut open = Vec::new();
    for (ci, case) in prop.cases.iter().enumerate() {
        let (lo, hi) = f32_box(case);
        if lo.iter().zip(&hi).any(|(l, u)| l > u) {
            // The box holds no float32 point other than ones outside it: treat as unbounded
            // rounding and refuse rather than guess.
            return Err(Error::input("an input box is narrower than float32 resolution"));
        }
        let outward = outward_box(case);
        for d in &case.disjuncts {
            open.push((ci, lo.clone(), hi.clone(), outward.clone(), conjunction(d)));
        }
    }
    // 1. Falsify.
    let fcfg = FalsifyConfig { seed: cfg.seed, ..FalsifyConfig::default() };
    for (_, lo, hi, _, conj) in &open {
        for x in falsify::search(net, lo, hi, conj, &fcfg).into_iter().take(8) {
            if let Some(cex) = confirm(net, prop, &x) {
                return Ok(done(Answer::Sat, "falsify", Some(cex)));
            }
        }
        if Instant::now() >= deadline {
            return Ok(done(Answer::Timeout, "falsify", None));
        }
    }
    // 2. Bound each disjunct on its whole box.
    let mut hard = Vec::new();
    for (ci, lo, hi, (olo, ohi), conj) in open {
        let region = Interval::new(from_vec(olo.clone(), [1, c, h, w], &device), from_vec(ohi.clone(), [1, c, h, w], &device));
        let spec = conj.spec(&device);
        let mut proved = false;
        for method in [Method::Ibp, Method::Crown, Method::AlphaCrown] {
            let lb = to_vec(lower_bound(net, &region, &spec, &method.relaxation().with_sound(true))?);
            if lb.iter().zip(&conj.rhs).any(|(&l, &d)| bab::proves(l, d)) {
                proved = true;
                break;
            }
        }
        if !proved {
            hard.push((ci, lo, hi, (olo, ohi), conj));
        }
    }
    if hard.is_empty() {
        return Ok(done(Answer::Unsat, "bounds", None));
    }
    // 3. Complete search, disjunct by disjunct.
    let small = crate::net::numel(&net.input_shape()) <= INPUT_SPLIT_MAX_DIMS;
    let stages = if small { None } else { Some(lp::stages::extract(net)?) };
    let mut unknown = false;
    let mut to_prove = Vec::new();
    // The LP-tightened bounds of a case's box serve all its disjuncts.
    let mut tightened: Option<(usize, lp::Encoding)> = None;
    for (ci, lo, hi, (olo, ohi), conj) in &hard {
        let outcome = match &stages {
            None => MilpPass::Done(bab::search(net, olo, ohi, conj, deadline)?),
            Some(st) => {
                if tightened.as_ref().map(|t| t.0) != Some(*ci) {
                    tightened = Some((*ci, tighten(net, st, olo, ohi, deadline)?));
                }
                let tight = &mut tightened.as_mut().unwrap_or_else(|| unreachable!()).1;
                milp_search(st, tight, (olo, ohi), (lo, hi), conj, deadline)?
            }
        };
        let stage = if small { "bab" } else { "milp" };
        let outcome = match outcome {
            MilpPass::Done(outcome) => outcome,
            MilpPass::ToProve(proof) => {
                to_prove.push(proof);
                continue;
            }
        };
        match outcome {
            BabResult::Proved => {}
            BabResult::Candidate(x) => match confirm(net, prop, &x) {
                Some(cex) => return Ok(done(Answer::Sat, stage, Some(cex))),
                None => unknown = true,
            },
            BabResult::Timeout => return Ok(done(Answer::Timeout, stage, None)),
            BabResult::Exhausted => unknown = true,
        }
    }
    // HiGHS's "no point" answers, proved again once no disjunct has a counterexample left to
    // find (a property with one sat disjunct among many is answered at MILP speed).
    for proof in to_prove {
        match milp::prove_again(stages.as_ref().unwrap_or_else(|| unreachable!("only the MILP defers")), &proof.input, &proof.bounds, &milp::all_exact(&proof.bounds), &proof.goal, deadline)? {
            Search::Proved => {}
            Search::Candidate(x) => {
                match confirm(net, prop, &clamp_inward(&x, &proof.lo, &proof.hi)) {
                    Some(cex) => return Ok(done(Answer::Sat, "milp", Some(cex))),
                    None => unknown = true,
                }
            }
            Search::Timeout => return Ok(done(Answer::Timeout, "milp", None)),
            Search::Exhausted => unknown = true,
        }
    }
    let stage = if small { "bab" } else { "milp" };
    Ok(if unknown { done(Answer::Unknown, stage, None) } else { done(Answer::Unsat, stage, None) })
}

/// The box encoded with the Triangle LP, every stage's bounds tightened by LP.
fn tighten<'a>(net: &Network, st: &'a lp::Stages, lo: &[f32], hi: &[f32], deadline: Instant) -> Result<lp::Encoding<'a>> {
    let [c, h, w] = net.input_shape();
    let device = net.device().unwrap_or_else(crate::tensor::default_device);
    let region = Interval::new(from_vec(lo.to_vec(), [1, c, h, w], &device), from_vec(hi.to_vec(), [1, c, h, w], &device));
    let seed = lp::engine_bounds(net, st, &region, Method::Crown, true)?;
    lp::encode_tightened(st, &lp::boxes(&region)[0], &seed[0], &|_, _| ReluEncoding::Triangle, Some(deadline))
}

/// The conjunction as one MILP over the tightened bounds of the outward box: minimise t
/// subject to `c_i . y - d_i <= t` for every row; it can hold iff the minimum is <= 0.
/// Candidates are clamped into the inward box.
fn milp_search(st: &lp::Stages, tight: &mut lp::Encoding, (olo, ohi): (&[f32], &[f32]), (lo, hi): (&[f32], &[f32]), conj: &Conjunction, deadline: Instant) -> Result<MilpPass> {
    // Row bounds by LP: one provably violated row settles it; they also bound t.
    let mut t_lo = f64::NEG_INFINITY;
    for (row, &d) in conj.rows.iter().zip(&conj.rhs) {
        let (terms, constant) = tight.output_objective(row);
        let lb = tight.program.minimize(&terms, constant, None)?;
        if lb - d > 0.0 {
            return Ok(MilpPass::Done(BabResult::Proved));
        }
        t_lo = t_lo.max(lb - d);
    }
    if Instant::now() >= deadline {
        return Ok(MilpPass::Done(BabResult::Timeout));
    }
    let input = InputBox { lo: olo.iter().map(|&v| f64::from(v)).collect(), hi: ohi.iter().map(|&v| f64::from(v)).collect() };
    let mut enc = lp::encode_fixed(st, &input, &tight.bounds, &|_, _| ReluEncoding::Exact)?;
    let t = enc.program.add_col(t_lo.max(-1e9), 1e9)?;
    for (row, &d) in conj.rows.iter().zip(&conj.rhs) {
        let (mut terms, constant) = enc.output_objective(row);
        terms.push((t, -1.0));
        enc.program.add_row(terms, f64::NEG_INFINITY, d - constant)?;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    // The cutoff sits above 0 so that a point with t = 0 exactly (on the property's boundary,
    // a counterexample) is never pruned.
    Ok(MilpPass::Done(match enc.program.solve_milp(&[(t, 1.0)], 0.0, Some(milp::MARGIN_CUTOFF), left)? {
        // HiGHS decides within tolerances: the certified phase search proves it again, later.
        MilpOutcome::AboveCutoff => {
            let goal = conj.rows.iter().cloned().zip(conj.rhs.iter().copied()).collect();
            return Ok(MilpPass::ToProve(Proof { input, bounds: tight.bounds.clone(), goal, lo: lo.to_vec(), hi: hi.to_vec() }));
        }
        MilpOutcome::Below { point, .. } | MilpOutcome::Optimal { point, .. } => {
            BabResult::Candidate(clamp_inward(&enc.input_point(&point), lo, hi))
        }
        MilpOutcome::TimedOut { .. } => BabResult::Timeout,
        MilpOutcome::Failed(_) => BabResult::Exhausted,
    }))
}

/// A solver's point as float32, clamped into the inward box.
fn clamp_inward(x: &[f64], lo: &[f32], hi: &[f32]) -> Vec<f32> {
    x.iter().zip(lo.iter().zip(hi)).map(|(&v, (&l, &u))| (v as f32).clamp(l, u)).collect()
}

/// A disjunct's MILP pass: decided, or HiGHS's "no point" still to be proved.
enum MilpPass {
    Done(BabResult),
    ToProve(Proof),
}

/// What the phase search needs to prove a disjunct again: the outward box, its tightened
/// bounds, the rows, and the inward box (where a counterexample is clamped).
struct Proof {
    input: InputBox,
    bounds: Vec<lp::StageBounds>,
    goal: Vec<(Vec<f64>, f64)>,
    lo: Vec<f32>,
    hi: Vec<f32>,
}
