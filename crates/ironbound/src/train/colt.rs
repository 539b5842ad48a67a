//! COLT (Balunovic & Vechev, "Adversarial training and provable defenses: bridging the gap";
//! SPEC.md section 3): layerwise adversarial training in latent convex regions.
//!
//! Training runs in phases over latent layers (0 = the input, k = the output of the k-th
//! ReLU). In phase j the region `C(x)` of latent layer `v_j` is the DeepZ zonotope of the
//! input ball through the layers before it (its bounds without gradient, optionally from Cauchy
//! projections); a latent adversarial example is found by sign-PGD on the zonotope's noise
//! symbols `e in [-1, 1]` from a random start, and the layers after `v_j` are trained on it
//! while the layers before stay frozen. The loss mixes the current phase's latent loss with the
//! previous phase's (the natural loss in phase 0) by a weight growing from 0 to 1 over the
//! phase's first `colt_mix_epochs`, as the published code does.
//!
//! Exact regions take their ReLU bounds from back-substitution with DeepZ's parallel lines,
//! which gives the zonotope's bounds without holding its generators.
//!
//! A point of the zonotope never needs its generator matrix: pushing the input point
//! `center + radius * e_0` through the layers, with each ReLU replaced by DeepZ's line
//! `lambda x + mu` plus its own noise `mu * e_k`, gives `a + A e` exactly (the affine maps are
//! linear in the noise). One forward pass of the prefix per PGD step.

use super::config::TrainConfig;
use super::land::{self, StabilityForm};
use super::objective::{l1_norm, Extras, LossParts, CLIP};
use crate::bounds::zonotope::{self, Projections};
use crate::bounds::{input_region, Interval, Method};
use crate::error::{Error, Result};
use crate::loss::cross_entropy;
use crate::net::init::SplitMix64;
use crate::net::spec::{NetSpec, OpSpec};
use crate::net::{relu, Network, Op, ReluLower};
use crate::tensor::{from_vec, Tensor};

/// One phase of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// 0 = input, k = after the k-th ReLU.
    pub latent: usize,
    /// First epoch (0-based, counted from the start of the run) and number of epochs.
    pub start_epoch: usize,
    pub epochs: usize,
    /// Training radius = factor * eps_train.
    pub eps_factor: f64,
    /// Learning rate = factor * the lr schedule's value.
    pub lr_factor: f64,
    /// Epochs over which the current latent loss's weight grows from 0 to 1.
    pub mix_epochs: usize,
    /// Weight of the ReLU-stability term in this phase (`relu_stability * growth^j`).
    pub stability_weight: f64,
}

/// The phases and the latent attack.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub phases: Vec<Phase>,
    pub pgd_steps: usize,
    pub pgd_step: f64,
    /// Cauchy projections for the regions' bounds (0: exact DeepZ).
    pub projections: usize,
    /// Form of the ReLU-stability term (None: off; the weights are the phases').
    pub stability: Option<StabilityForm>,
}

/// Where a training step is in the plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseStep {
    pub index: usize,
    /// Weight of the current phase's latent loss (1 - it: the previous phase's).
    pub mix: f64,
}

impl Plan {
    /// The phase of `epoch` (None during the natural warm-up).
    pub fn phase_of(&self, epoch: usize) -> Option<usize> {
        self.phases.iter().position(|p| (p.start_epoch..p.start_epoch + p.epochs).contains(&epoch))
    }

    /// The phase and mixing weight of a step at `epoch`, `step_in_epoch` of `steps_per_epoch`
    /// (the weight grows per step, so a resumed run recomputes it).
    pub fn at(&self, epoch: usize, step_in_epoch: usize, steps_per_epoch: usize) -> Option<PhaseStep> {
        let index = self.phase_of(epoch)?;
        let p = &self.phases[index];
        let mix = if p.mix_epochs == 0 {
            1.0
        } else {
            let done = ((epoch - p.start_epoch) * steps_per_epoch + step_in_epoch) as f64;
            (done / (p.mix_epochs * steps_per_epoch) as f64).min(1.0)
        };
        Some(PhaseStep { index, mix })
    }
}

/// Value id of latent layer `k` of `net` (0: the input; k: the output of the k-th ReLU).
pub fn latent_value(net: &Network, k: usize) -> Result<usize> {
    if k == 0 {
        return Ok(0);
    }
    let relus: Vec<usize> = net.nodes().iter().enumerate().filter(|(_, n)| matches!(n.op, Op::Relu)).map(|(i, _)| i + 1).collect();
    relus.get(k - 1).copied().ok_or_else(|| Error::input(format!("latent layer {k} does not exist: the network has {} ReLU layers", relus.len())))
}

/// The network cut at value `v`: the layers computing `v` and the layers after it, with `v`
/// as the input of the second. Nothing after `v` may read a value before it.
pub fn split(net: &Network, v: usize) -> Result<(Network, Network)> {
    let mut prefix = Network::new(net.input_shape());
    let mut suffix = Network::new(net.shape(v));
    for (i, node) in net.nodes().iter().enumerate() {
        if i < v {
            prefix.push(node.name.clone(), node.op.clone(), &node.inputs)?;
            continue;
        }
        let inputs = node
            .inputs
            .iter()
            .map(|&u| u.checked_sub(v).ok_or_else(|| Error::input(format!("node {} reads a value from before latent value {v} (a residual connection across it)", node.name))))
            .collect::<Result<Vec<usize>>>()?;
        suffix.push(node.name.clone(), node.op.clone(), &inputs)?;
    }
    Ok((prefix, suffix))
}

/// The latent region of one batch: the input box and DeepZ's line of every ReLU before the
/// latent layer (constants: no gradient flows through the region).
pub struct Region {
    center: Tensor<4>,
    radius: Tensor<4>,
    /// Per prefix node: the ReLU's slope lambda and half-gap mu (`y = lambda x + mu + mu e`).
    lines: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl Region {
    /// The DeepZ region of `prefix`'s output for the input box `input`.
    pub fn new(prefix: &Network, input: &Interval, projections: usize, seed: u64) -> Result<Region> {
        let plain = prefix.map_params(&mut |_, p| p.plain());
        let input = Interval::new(input.lo.clone().detach(), input.hi.clone().detach());
        let pre = deepz_bounds(&plain, &input, projections, seed)?;
        let lines = plain
            .nodes()
            .iter()
            .map(|node| match (&node.op, &pre[node.inputs[0]]) {
                (Op::Relu, Some(b)) => {
                    let l = relu::lines(&b.lo, &b.hi, ReluLower::Parallel);
                    Some((l.lower_slope, l.upper_intercept / 2.0))
                }
                _ => None,
            })
            .collect();
        Ok(Region { center: input.center(), radius: input.radius(), lines })
    }

    /// Noise symbols drawn uniformly from [-1, 1]: the input's and each ReLU's.
    pub fn random_noise(&self, prefix: &Network, rng: &mut SplitMix64) -> Vec<Tensor<4>> {
        let n = self.center.dims()[0];
        let device = self.center.device();
        let mut shapes = vec![self.center.dims()];
        for (node, line) in prefix.nodes().iter().zip(&self.lines) {
            if line.is_some() {
                let [c, h, w] = prefix.shape(node.inputs[0]);
                shapes.push([n, c, h, w]);
            }
        }
        shapes
            .into_iter()
            .map(|dims| {
                let count: usize = dims.iter().product();
                let draws: Vec<f32> = (0..count).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
                from_vec(draws, dims, &device)
            })
            .collect()
    }

    /// The point `a + A e` of the region for noise `e` (as `random_noise` lays it out).
    pub fn point(&self, prefix: &Network, e: &[Tensor<4>]) -> Tensor<4> {
        let mut values = vec![self.center.clone() + self.radius.clone() * e[0].clone()];
        let mut next = 1;
        for (node, line) in prefix.nodes().iter().zip(&self.lines) {
            let x = values[node.inputs[0]].clone();
            let y = match (&node.op, line) {
                (Op::Relu, Some((lambda, mu))) => {
                    let noise = e[next].clone();
                    next += 1;
                    lambda.clone() * x + mu.clone() + mu.clone() * noise
                }
                (Op::Relu, None) => relu::forward(x),
                (Op::Add, _) => x + values[node.inputs[1]].clone(),
                (op, _) => op.as_affine().map(|a| a.forward(x)).unwrap_or_else(|| unreachable!()),
            };
            values.push(y);
        }
        values.pop().unwrap_or_else(|| unreachable!())
    }
}

/// DeepZ's bounds of every ReLU input of `net` (index = value id): exact ones by
/// back-substitution with DeepZ's parallel lines (the same bounds as the zonotope, in chunks
/// of rows and with interval bounds where those are exact), or estimates from Cauchy
/// projections of the zonotope.
fn deepz_bounds(net: &Network, input: &Interval, projections: usize, seed: u64) -> Result<Vec<Option<Interval>>> {
    match projections {
        0 => Ok(crate::bounds::intermediate(net, input, &Method::Deepz.relaxation())?.bounds),
        k => Ok(zonotope::propagate_projected(net, input, ReluLower::Parallel, Projections { count: k, seed })?.1),
    }
}

/// Sign-PGD on the noise symbols, maximising the cross-entropy of `suffix` at the latent
/// point; returns the final noise (every entry in [-1, 1]). `on_step` sees the noise after
/// each step (tests check the point stays in the region).
#[allow(clippy::too_many_arguments)]
pub fn attack(
    prefix: &Network,
    suffix: &Network,
    region: &Region,
    one_hot: &Tensor<2>,
    steps: usize,
    step: f64,
    rng: &mut SplitMix64,
    on_step: &mut dyn FnMut(&[Tensor<4>]),
) -> Vec<Tensor<4>> {
    let suffix = suffix.map_params(&mut |_, p| p.plain());
    let mut e = region.random_noise(prefix, rng);
    on_step(&e);
    for _ in 0..steps {
        let tracked: Vec<Tensor<4>> = e.iter().map(|t| t.clone().autodiff().require_grad()).collect();
        let logits = suffix.forward(region.point(prefix, &tracked));
        // Summed over the batch: the sign of each sample's gradient is its own.
        let loss = cross_entropy(logits, one_hot.clone()) * one_hot.dims()[0] as f64;
        let grads = loss.backward();
        e = tracked
            .iter()
            .zip(&e)
            .map(|(t, old)| match t.grad(&grads) {
                Some(g) => (old.clone() + g.sign() * step).clamp(-1.0, 1.0),
                None => old.clone(),
            })
            .collect();
        on_step(&e);
    }
    e
}

/// The adversarial point of latent layer `latent` for the batch (detached), and the layers of
/// `net` after it (as `net` tracks them).
fn latent_example(plan: &Plan, net: &Network, latent: usize, x: &Tensor<4>, eps: f64, one_hot: &Tensor<2>, seed: u64) -> Result<(Tensor<4>, Network)> {
    let (prefix, suffix) = split(net, latent_value(net, latent)?)?;
    let prefix = prefix.map_params(&mut |_, p| p.plain());
    let mut rng = SplitMix64::new(seed);
    let region = Region::new(&prefix, &input_region(x, eps, Some(CLIP)), plan.projections, rng.next_u64())?;
    let e = attack(&prefix, &suffix, &region, one_hot, plan.pgd_steps, plan.pgd_step, &mut rng, &mut |_| {});
    Ok((region.point(&prefix, &e).detach(), suffix))
}

/// The COLT loss of one batch in phase `at`: `kappa * natural + (1 - kappa) * (mix * CE at the
/// latent example + (1 - mix) * the previous phase's)`, plus L1 and the ReLU-stability term on
/// the bounds of the next phase's latent layer. `tracked` has gradients only for the layers
/// after the current latent layer.
#[allow(clippy::too_many_arguments)]
pub fn loss(plan: &Plan, tracked: &Network, x: &Tensor<4>, one_hot: &Tensor<2>, eps: f64, kappa: f64, l1: f64, at: PhaseStep, seed: u64) -> Result<LossParts> {
    let phase = &plan.phases[at.index];
    let logits = tracked.forward(x.clone());
    let natural = cross_entropy(logits.clone(), one_hot.clone());
    let latent_loss = |latent: usize, seed: u64| -> Result<Tensor<1>> {
        let (point, suffix) = latent_example(plan, tracked, latent, x, eps, one_hot, seed)?;
        Ok(cross_entropy(suffix.forward(point), one_hot.clone()))
    };
    let current = latent_loss(phase.latent, seed)?;
    let robust = if at.mix >= 1.0 {
        current
    } else {
        let previous = match at.index {
            0 => natural.clone(),
            i => latent_loss(plan.phases[i - 1].latent, seed ^ 0x9E37_79B9_7F4A_7C15)?,
        };
        current * at.mix + previous * (1.0 - at.mix)
    };
    let mut total = if kappa > 0.0 { natural.clone() * kappa + robust.clone() * (1.0 - kappa) } else { robust.clone() };
    if l1 > 0.0 {
        total = total + l1_norm(tracked) * l1;
    }
    let mut extras = Extras::default();
    if let (Some(form), Some(next)) = (plan.stability, plan.phases.get(at.index + 1)) {
        if let Some(rs) = next_layer_stability(tracked, x, eps, next.latent, form, plan.projections, seed)? {
            total = total + rs.clone() * (phase.stability_weight * at.mix);
            extras.stability = Some(rs);
        }
    }
    Ok(LossParts { total, natural, robust: Some(robust), logits, reg_d: None, reg_r: None, extras })
}

/// The ReLU-stability term of the ReLU whose output is latent layer `latent`, on its DeepZ
/// input bounds (with gradient, for the layers `tracked` tracks).
fn next_layer_stability(tracked: &Network, x: &Tensor<4>, eps: f64, latent: usize, form: StabilityForm, projections: usize, seed: u64) -> Result<Option<Tensor<1>>> {
    let v = latent_value(tracked, latent)?;
    let (prefix, _) = split(tracked, v)?;
    let region = input_region(x, eps, Some(CLIP));
    let mut pre = deepz_bounds(&prefix, &region, projections, seed)?;
    // Only the last ReLU of the prefix (the one producing the latent layer) counts.
    let last_input = prefix.nodes().last().map(|n| n.inputs[0]);
    for (i, b) in pre.iter_mut().enumerate() {
        if Some(i) != last_input {
            *b = None;
        }
    }
    Ok(land::stability_loss(&prefix, &pre, form))
}

/// Number of ReLU layers of an architecture.
pub fn relu_layers(arch: &NetSpec) -> usize {
    arch.nodes.iter().filter(|n| matches!(n.op, OpSpec::Relu)).count()
}

/// Checks the `colt_*` keys and fills their defaults (the published code's: the input and the
/// output of every ReLU but the last, epochs split evenly, eps factors `1.05 * 1.1^(P-1-j)`,
/// lr factors `0.75^j`, the first 30% of each phase mixing, 7 steps of 0.25, the same
/// ReLU-stability weight in every phase).
pub fn resolve(c: &mut TrainConfig, arch: &NetSpec, epochs: usize, err: &dyn Fn(&str, String) -> Error) -> Result<Plan> {
    let relus = relu_layers(arch);
    if c.colt_layers.is_empty() {
        c.colt_layers = (0..relus.max(1)).collect();
    }
    if let Some(&bad) = c.colt_layers.iter().find(|&&k| k > relus) {
        return Err(err("colt_layers", format!("names latent layer {bad}, but `arch` = {:?} has {relus} ReLU layers (0 = the input, 1..={relus} = after each ReLU)", c.arch.as_deref().unwrap_or(""))));
    }
    if c.colt_layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(err("colt_layers", format!("must be increasing, got {:?}", c.colt_layers)));
    }
    let p = c.colt_layers.len();
    let trainable = epochs - c.warmup_epochs;
    if c.colt_phase_epochs.is_empty() {
        c.colt_phase_epochs = (0..p).map(|j| trainable / p + usize::from(j < trainable % p)).collect();
    }
    let list_len = |key: &str, len: usize| if len == p { Ok(()) } else { Err(err(key, format!("has {len} entries for {p} latent layers (`colt_layers`)"))) };
    list_len("colt_phase_epochs", c.colt_phase_epochs.len())?;
    if c.colt_phase_epochs.iter().sum::<usize>() != trainable || c.colt_phase_epochs.contains(&0) {
        return Err(err("colt_phase_epochs", format!("= {:?} must be at least 1 each and sum to `epochs` - `warmup_epochs` = {trainable}", c.colt_phase_epochs)));
    }
    if c.colt_eps_factors.is_empty() {
        c.colt_eps_factors = (0..p).map(|j| 1.05 * 1.1f64.powi((p - 1 - j) as i32)).collect();
    }
    if c.colt_lr_factors.is_empty() {
        c.colt_lr_factors = (0..p).map(|j| 0.75f64.powi(j as i32)).collect();
    }
    for (key, list) in [("colt_eps_factors", &c.colt_eps_factors), ("colt_lr_factors", &c.colt_lr_factors)] {
        list_len(key, list.len())?;
        if let Some(bad) = list.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(err(key, format!("must hold numbers > 0, got {bad}")));
        }
    }
    let mix = |epochs: usize| c.colt_mix_epochs.unwrap_or((epochs * 3).div_ceil(10)).min(epochs);
    let pgd_steps = *c.colt_pgd_steps.get_or_insert(7);
    let pgd_step = *c.colt_pgd_step.get_or_insert(0.25);
    if !(pgd_step.is_finite() && pgd_step > 0.0) {
        return Err(err("colt_pgd_step", format!("must be > 0 (a step of the noise symbols in [-1, 1]), got {pgd_step}")));
    }
    let growth = *c.colt_stability_growth.get_or_insert(1.0);
    if !(growth.is_finite() && growth > 0.0) {
        return Err(err("colt_stability_growth", format!("must be a number > 0 (the ReLU-stability weight's factor per phase), got {growth}")));
    }
    let mut start = c.warmup_epochs;
    let mut phases = Vec::new();
    for j in 0..p {
        let epochs = c.colt_phase_epochs[j];
        phases.push(Phase {
            latent: c.colt_layers[j],
            start_epoch: start,
            epochs,
            eps_factor: c.colt_eps_factors[j],
            lr_factor: c.colt_lr_factors[j],
            mix_epochs: mix(epochs),
            stability_weight: c.relu_stability * growth.powi(j as i32),
        });
        start += epochs;
    }
    let stability = (c.relu_stability > 0.0).then(|| c.relu_stability_form.unwrap_or(StabilityForm::Product));
    Ok(Plan { phases, pgd_steps, pgd_step, projections: c.projections, stability })
}

/// Refuses `colt_*` keys for the other methods.
pub fn refuse_keys(c: &TrainConfig, method: super::config::TrainMethod, err: &dyn Fn(&str, String) -> Error) -> Result<()> {
    let given = [
        ("colt_layers", !c.colt_layers.is_empty()),
        ("colt_phase_epochs", !c.colt_phase_epochs.is_empty()),
        ("colt_eps_factors", !c.colt_eps_factors.is_empty()),
        ("colt_lr_factors", !c.colt_lr_factors.is_empty()),
        ("colt_mix_epochs", c.colt_mix_epochs.is_some()),
        ("colt_pgd_steps", c.colt_pgd_steps.is_some()),
        ("colt_pgd_step", c.colt_pgd_step.is_some()),
        ("colt_stability_growth", c.colt_stability_growth.is_some()),
    ];
    match given.iter().find(|(_, on)| *on) {
        Some((key, _)) => Err(err(key, format!("is a COLT key: it needs method colt, not {method}"))),
        None => Ok(()),
    }
}
