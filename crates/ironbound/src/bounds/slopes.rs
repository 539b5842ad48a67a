//! Per-sample lower slopes of the final pass (LAND, Lee et al.; SPEC section 2): a random
//! start per sample and neuron, optionally moved by projected sign-gradient steps of the robust
//! loss (their Eq. 6: `a = clip(a0 - eta * sign(grad_a L), 0, 1)`).
//!
//! The slopes only choose lines for the ordinary back-substitution engine: for any slope a in
//! [0, 1], `a x <= relu(x)` for every x, so the bound is sound whatever the draws or the
//! gradient. Stable neurons stay exact (identity or zero) whatever their slope.
//!
//! Randomness: sample s draws from its own SplitMix64 stream, keyed by (seed, the sample's
//! index in its data set, `Spec::indices`), one uniform per neuron of every ReLU in graph
//! order. A sample's slopes therefore do not depend on the batch it is in nor on its position
//! there (nor on the batch size); only the rounding of batched arithmetic can differ.

use super::backsub::{Backsub, RowLines};
use super::interval::Interval;
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::loss::robust_cross_entropy;
use crate::net::init::SplitMix64;
use crate::net::{relu, Network, Op};
use crate::tensor::{from_vec, indicator, Tensor};

/// How the random start is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SlopeStart {
    /// a0 ~ U[0, 1] (LAND's RANDOM, and the start of its one-step slopes).
    Uniform,
    /// a0 in {0, 1} with P(a0 = 1) = p where |l| > |u| and q where |l| <= |u| (LAND Section 5,
    /// Table 3). p = 0, q = 1 is CROWN's rule up to ties |l| = |u|.
    Binary { p: f64, q: f64 },
}

/// Per-sample slopes: a random start, then `steps` projected sign-gradient steps of size
/// `step_size` on the robust cross-entropy of the margins (which needs the labels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlopeRule {
    pub start: SlopeStart,
    pub steps: usize,
    pub step_size: f64,
    pub seed: u64,
}

impl SlopeRule {
    /// LAND's RANDOM: a ~ U[0, 1], no step.
    pub fn random() -> SlopeRule {
        SlopeRule { start: SlopeStart::Uniform, steps: 0, step_size: 0.0, seed: 0 }
    }

    /// LAND's one step (Eq. 6). The paper asks for eta >= 1 (its code uses 2): from a0 in
    /// [0, 1] any such step lands on 0 or 1 wherever the gradient is non-zero, so the slopes
    /// are the same for every eta >= 1.
    pub fn one_step() -> SlopeRule {
        SlopeRule { start: SlopeStart::Uniform, steps: 1, step_size: 1.0, seed: 0 }
    }

    /// LAND's multi-step variant (Appendix M, Eq. 17): 7 steps of 0.1.
    pub fn multi_step() -> SlopeRule {
        SlopeRule { start: SlopeStart::Uniform, steps: 7, step_size: 0.1, seed: 0 }
    }

    /// LAND's p/q slopes (Section 5): binary draws, no step.
    pub fn binary(p: f64, q: f64) -> SlopeRule {
        SlopeRule { start: SlopeStart::Binary { p, q }, ..SlopeRule::random() }
    }

    /// Whether the rule descends the robust loss of the margins, and so needs the labels.
    pub fn needs_labels(&self) -> bool {
        self.steps > 0
    }

    /// Refuses probabilities outside [0, 1] and steps that are negative or not finite.
    pub fn check(&self) -> Result<()> {
        if let SlopeStart::Binary { p, q } = self.start {
            if !(0.0..=1.0).contains(&p) || !(0.0..=1.0).contains(&q) {
                return Err(Error::input(format!("binary slope probabilities must lie in [0, 1], got p = {p}, q = {q}")));
            }
        }
        if !self.step_size.is_finite() || self.step_size < 0.0 {
            return Err(Error::input(format!("the slope step size must be a finite number >= 0, got {}", self.step_size)));
        }
        Ok(())
    }
}

/// The slopes of one ReLU node of the final pass, each `[N, 1, F]` (F: the node's width).
pub struct ReluSlopes {
    /// Index of the ReLU node in `net.nodes()`.
    pub node: usize,
    /// 1 where the neuron is unstable (l < 0 < u), the only place a slope matters.
    pub unstable: Tensor<3>,
    /// The random start a0.
    pub start: Tensor<3>,
    /// The robust loss's gradient at the start of the last step (None without steps, or
    /// when no slope reaches the bound).
    pub gradient: Option<Tensor<3>>,
    /// The slopes the bound uses, in [0, 1].
    pub slopes: Tensor<3>,
}

/// The stream of the sample with `index` under `seed`: keyed by a hash of both, so that
/// neighbouring indices and seeds give unrelated streams.
fn sample_stream(seed: u64, index: u64) -> SplitMix64 {
    let key = SplitMix64::new(seed).next_u64();
    SplitMix64::new(SplitMix64::new(key ^ index).next_u64())
}

fn flat(t: Tensor<4>) -> Tensor<3> {
    let [n, c, h, w] = t.dims();
    t.reshape([n, 1, c * h * w])
}

/// The ReLU lines with the given lower slopes `[N, 1, F]` on the bounds of their input.
fn lines(b: &Interval, slopes: Tensor<3>) -> RowLines {
    let [n, c, h, w] = b.lo.dims();
    RowLines::from_lines(&relu::lines_with_slopes(&b.lo, &b.hi, slopes.reshape([n, c, h, w])))
}

/// Chooses the slopes of every ReLU with bounds, for the samples of `spec` (labels, indices).
/// Every bound of `bounds` is used detached: the slopes depend on the current weights, but
/// no gradient flows through them.
pub fn choose(net: &Network, bounds: &[Option<Interval>], spec: &Spec, rule: &SlopeRule) -> Result<Vec<ReluSlopes>> {
    rule.check()?;
    let region = bounds.first().and_then(Option::as_ref).ok_or_else(|| Error::internal("slopes need the input region"))?;
    let n = region.lo.dims()[0];
    let device = region.lo.device();
    let indices: Vec<u64> = match &spec.indices {
        Some(ix) if ix.len() == n => ix.clone(),
        Some(ix) => return Err(Error::input(format!("the spec names {} sample indices for {n} samples", ix.len()))),
        None => (0..n as u64).collect(),
    };
    let mut streams: Vec<SplitMix64> = indices.iter().map(|&i| sample_stream(rule.seed, i)).collect();
    let plain: Vec<Option<Interval>> =
        bounds.iter().map(|b| b.as_ref().map(|b| Interval::new(b.lo.clone().detach().without_autodiff(), b.hi.clone().detach().without_autodiff()))).collect();
    let mut relus = Vec::new();
    for (i, node) in net.nodes().iter().enumerate() {
        let (Op::Relu, Some(b)) = (&node.op, &plain[node.inputs[0]]) else { continue };
        let [_, c, h, w] = b.lo.dims();
        let f = c * h * w;
        let draws: Vec<f32> = streams.iter_mut().flat_map(|s| s.uniforms(f)).collect();
        let u = from_vec(draws, [n, 1, f], &device).cast(b.lo.dtype());
        let (lo, hi) = (flat(b.lo.clone()), flat(b.hi.clone()));
        let start = match rule.start {
            SlopeStart::Uniform => u,
            SlopeStart::Binary { p, q } => {
                let dtype = u.dtype();
                let wider = indicator(lo.clone().neg().greater(hi.clone()), dtype);
                indicator(u.clone().lower_elem(p), dtype) * wider.clone() + indicator(u.lower_elem(q), dtype) * (wider.neg() + 1.0)
            }
        };
        let unstable = indicator(lo.clone().lower_elem(0.0).bool_and(hi.greater_elem(0.0)), lo.dtype());
        relus.push(ReluSlopes { node: i, unstable, slopes: start.clone(), start, gradient: None });
    }
    let labels = match (rule.needs_labels(), spec.labels.as_deref()) {
        (false, _) => return Ok(relus),
        (true, Some(labels)) if labels.len() == n => labels,
        (true, Some(labels)) => return Err(Error::input(format!("the spec has {} labels for {n} samples", labels.len()))),
        (true, None) => {
            return Err(Error::input("slopes by sign-gradient steps (one-step) descend the robust loss of the margins and need the samples' labels"))
        }
    };
    if relus.is_empty() {
        return Ok(relus);
    }
    let margins = Spec::margins(labels, net.num_outputs(), &device)?.c.cast(region.lo.dtype());
    // The weights as plain values: the step is a function of them, not differentiated through.
    let plain_net = net.map_params(&mut |_, p| p.plain());
    let out = net.output_value();
    for _ in 0..rule.steps {
        let tracked: Vec<Tensor<3>> = relus.iter().map(|r| r.slopes.clone().autodiff().require_grad()).collect();
        let mut row_lines: Vec<Option<RowLines>> = vec![None; net.nodes().len()];
        for (r, a) in relus.iter().zip(&tracked) {
            let b = plain[net.nodes()[r.node].inputs[0]].as_ref().unwrap_or_else(|| unreachable!("slopes exist only where bounds do"));
            row_lines[r.node] = Some(lines(b, a.clone()));
        }
        let ctx = Backsub { net: &plain_net, bounds: &plain, lines: &row_lines, sound: None };
        let lb = ctx.lower_bound(vec![(out, margins.clone())], None, &|_| true);
        if !lb.is_tracked() {
            // No slope reaches the margins (no unstable neuron on the way): nothing to move,
            // and backward would panic on an untracked tensor.
            break;
        }
        let grads = robust_cross_entropy(lb).backward();
        for (r, a) in relus.iter_mut().zip(&tracked) {
            let Some(g) = a.grad(&grads) else { continue };
            // sign(g) with sign(0) = 0, and 0 for a NaN gradient too: those slopes stay put.
            let sign = indicator(g.clone().greater_elem(0.0), g.dtype()) - indicator(g.clone().lower_elem(0.0), g.dtype());
            r.slopes = (r.slopes.clone() - sign * rule.step_size).clamp(0.0, 1.0);
            r.gradient = Some(g);
        }
    }
    Ok(relus)
}

/// Lower bounds `[N, K]` of `spec . f(x)` by back-substitution with the rule's slopes on every
/// ReLU and the chord above, on `bounds` as they are (differentiable in the weights when they
/// are, the slopes being constants).
/// With `sound` the final pass is float-sound (`backsub.rs`); the slopes are chosen as usual.
pub fn lower_bound(net: &Network, bounds: &[Option<Interval>], spec: &Spec, rule: &SlopeRule, sound: Option<&[Interval]>) -> Result<Tensor<2>> {
    let chosen = choose(net, bounds, spec, rule)?;
    Ok(lower_bound_with(net, bounds, spec, &chosen, sound))
}

/// [`lower_bound`] with slopes already chosen (training reads their statistics too).
pub fn lower_bound_with(net: &Network, bounds: &[Option<Interval>], spec: &Spec, chosen: &[ReluSlopes], sound: Option<&[Interval]>) -> Tensor<2> {
    let mut row_lines: Vec<Option<RowLines>> = vec![None; net.nodes().len()];
    for r in chosen {
        let b = bounds[net.nodes()[r.node].inputs[0]].as_ref().unwrap_or_else(|| unreachable!("slopes exist only where bounds do"));
        row_lines[r.node] = Some(lines(b, r.slopes.clone()));
    }
    let ctx = Backsub { net, bounds, lines: &row_lines, sound };
    ctx.lower_bound(vec![(net.output_value(), spec.c.clone())], None, &|_| true)
}
