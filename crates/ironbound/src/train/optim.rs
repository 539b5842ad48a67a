//! Optimisers over a `Network`'s trainable parameters (weights and biases of linear, conv and
//! batch-norm layers; normalisation constants and running statistics are not trained).
//!
//! Usage: `let tracked = opt.track(&net)`, compute a loss from `tracked`, then
//! `net = opt.step(&tracked, &loss.backward())`.

use crate::error::Result;
use crate::net::{Network, Param};
use crate::tensor::Tensor;
use burn::tensor::Gradients;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba) with PyTorch's defaults for betas and eps.
    Adam { beta1: f64, beta2: f64, eps: f64 },
    /// SGD with (optionally Nesterov-free) momentum, PyTorch's convention.
    Sgd { momentum: f64 },
}

impl OptimizerKind {
    pub fn adam() -> Self {
        OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// One optimiser buffer per trainable parameter (None until its first update), as plain
/// row-major values: what `Optimizer::state` returns and `restore_state` takes.
pub type MomentBuffers = Vec<Option<Vec<f32>>>;

/// Gradients of a network's trainable parameters in `map_params` order, detached from the
/// graph; None where the loss does not depend on a parameter.
pub type ParamGrads = Vec<Option<Param>>;

/// The gradients `grads` holds for `tracked`'s trainable parameters.
pub fn gradients(tracked: &Network, grads: &Gradients) -> ParamGrads {
    let mut out = Vec::new();
    tracked.map_params(&mut |name, p| {
        if is_trainable(name) {
            out.push(p.grad(grads));
        }
        p
    });
    out
}

/// Parameter-wise sum of gradient lists of the same network (the shards of one batch).
pub fn sum_gradients(parts: Vec<ParamGrads>) -> ParamGrads {
    let mut parts = parts.into_iter();
    let mut acc = parts.next().unwrap_or_default();
    for part in parts {
        for (a, g) in acc.iter_mut().zip(part) {
            *a = match (a.take(), g) {
                (Some(Param::D1(x)), Some(Param::D1(y))) => Some(Param::D1(x + y)),
                (Some(Param::D2(x)), Some(Param::D2(y))) => Some(Param::D2(x + y)),
                (Some(Param::D4(x)), Some(Param::D4(y))) => Some(Param::D4(x + y)),
                (Some(_), Some(_)) => unreachable!("gradients of one parameter share its rank"),
                (x, y) => x.or(y),
            };
        }
    }
    acc
}

/// Euclidean norm of all the gradients together.
pub fn grad_norm(grads: &ParamGrads) -> f64 {
    grads.iter().flatten().map(|g| g.to_vec().iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()).sum::<f64>().sqrt()
}

pub fn is_trainable(local_name: &str) -> bool {
    matches!(local_name, "weight" | "bias")
}

/// Per-parameter optimiser state, in `map_params` order of the trainable parameters.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay`).
    pub weight_decay: f64,
    pub steps: u64,
    /// First moments (Adam) or momentum buffers (SGD).
    m: Vec<Option<Param>>,
    /// Second moments (Adam).
    v: Vec<Option<Param>>,
}

fn update<const D: usize>(
    kind: OptimizerKind,
    lr: f64,
    wd: f64,
    t: u64,
    p: Tensor<D>,
    g: Tensor<D>,
    m: Option<Tensor<D>>,
    v: Option<Tensor<D>>,
) -> (Tensor<D>, Tensor<D>, Option<Tensor<D>>) {
    let g = if wd != 0.0 { g + p.clone() * wd } else { g };
    match kind {
        OptimizerKind::Adam { beta1, beta2, eps } => {
            let m = m.map(|m| m * beta1 + g.clone() * (1.0 - beta1)).unwrap_or_else(|| g.clone() * (1.0 - beta1));
            let v = v.map(|v| v * beta2 + g.clone().square() * (1.0 - beta2)).unwrap_or_else(|| g.square() * (1.0 - beta2));
            let (c1, c2) = (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32));
            let step = (m.clone() / c1) / ((v.clone() / c2).sqrt() + eps);
            (p - step * lr, m, Some(v))
        }
        OptimizerKind::Sgd { momentum } => {
            let buf = match (m, momentum > 0.0) {
                (Some(b), true) => b * momentum + g,
                _ => g,
            };
            (p - buf.clone() * lr, buf, None)
        }
    }
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, lr: f64, weight_decay: f64) -> Self {
        Optimizer { kind, lr, weight_decay, steps: 0, m: Vec::new(), v: Vec::new() }
    }

    /// The network with its trainable parameters tracked for gradients.
    pub fn track(&self, net: &Network) -> Network {
        net.map_params(&mut |name, p| if is_trainable(name) { p.plain().require_grad() } else { p })
    }

    /// [`Optimizer::track`] for the nodes from `first` on; the parameters of the nodes before
    /// stay plain, so they get no gradient and `apply` leaves them bit for bit (COLT's frozen
    /// layers).
    pub fn track_from(&self, net: &Network, first: usize) -> Network {
        net.map_node_params(&mut |node, name, p| match (is_trainable(name), node >= first) {
            (true, true) => p.plain().require_grad(),
            (true, false) => p.plain(),
            (false, _) => p,
        })
    }

    /// One update from the gradients of a loss computed on `tracked`; returns plain weights.
    pub fn step(&mut self, tracked: &Network, grads: &Gradients) -> Result<Network> {
        self.step_scaled(tracked, grads, 1.0)
    }

    /// Euclidean norm of all trainable parameters' gradients together (PyTorch's
    /// `clip_grad_norm_` total norm), for gradient clipping.
    pub fn grad_norm(&self, tracked: &Network, grads: &Gradients) -> f64 {
        grad_norm(&gradients(tracked, grads))
    }

    /// Like `step`, with every gradient multiplied by `scale` first (gradient clipping:
    /// `scale = min(1, max_norm / (norm + 1e-6))`).
    pub fn step_scaled(&mut self, tracked: &Network, grads: &Gradients, scale: f64) -> Result<Network> {
        self.apply(tracked, gradients(tracked, grads), scale)
    }

    /// One update of `net`'s trainable parameters from gradients in `map_params` order (see
    /// `gradients`), each multiplied by `scale`; returns plain weights.
    pub fn apply(&mut self, net: &Network, mut grads: ParamGrads, scale: f64) -> Result<Network> {
        self.steps += 1;
        let t = self.steps;
        let (kind, lr, wd) = (self.kind, self.lr, self.weight_decay);
        let mut i = 0usize;
        let (m, v) = (&mut self.m, &mut self.v);
        let next = net.map_params(&mut |name, p| {
            if !is_trainable(name) {
                return p;
            }
            let idx = i;
            i += 1;
            if m.len() <= idx {
                m.resize(idx + 1, None);
                v.resize(idx + 1, None);
            }
            let Some(g) = grads.get_mut(idx).and_then(Option::take) else {
                // A parameter the loss does not depend on keeps its value.
                return p.plain();
            };
            let p = p.plain();
            macro_rules! go {
                ($variant:ident, $p:expr, $g:expr) => {{
                    let Param::$variant(g) = $g else { unreachable!("gradient rank matches parameter") };
                    let g = if scale != 1.0 { g * scale } else { g };
                    let mm = m[idx].take().map(|x| match x { Param::$variant(t) => t, _ => unreachable!() });
                    let vv = v[idx].take().map(|x| match x { Param::$variant(t) => t, _ => unreachable!() });
                    let (np, nm, nv) = update(kind, lr, wd, t, $p, g, mm, vv);
                    m[idx] = Some(Param::$variant(nm));
                    v[idx] = nv.map(Param::$variant);
                    Param::$variant(np)
                }};
            }
            match p {
                Param::D1(p) => go!(D1, p, g),
                Param::D2(p) => go!(D2, p, g),
                Param::D4(p) => go!(D4, p, g),
            }
        });
        Ok(next)
    }

    /// The moment buffers as plain float vectors (for checkpoints).
    pub fn state(&self) -> (MomentBuffers, MomentBuffers) {
        let f = |v: &Vec<Option<Param>>| v.iter().map(|p| p.as_ref().map(Param::to_vec)).collect();
        (f(&self.m), f(&self.v))
    }

    /// Restores moment buffers saved by `state` (and the step count, which Adam's bias
    /// correction needs). Shapes come from `net`'s trainable parameters, in the same order.
    pub fn restore_state(&mut self, net: &Network, m: MomentBuffers, v: MomentBuffers, steps: u64) -> Result<()> {
        let shapes: Vec<(Vec<usize>, crate::tensor::Device)> = net
            .named_params()
            .into_iter()
            .filter(|(name, _)| is_trainable(name.rsplit('.').next().unwrap_or("")))
            .map(|(_, p)| (p.dims(), p.device()))
            .collect();
        let build = |bufs: MomentBuffers, what: &str| -> Result<Vec<Option<Param>>> {
            if bufs.len() > shapes.len() {
                return Err(crate::error::Error::input(format!(
                    "optimiser state has {} {what} buffers, the network {} trainable parameters",
                    bufs.len(),
                    shapes.len()
                )));
            }
            bufs.into_iter()
                .zip(&shapes)
                .enumerate()
                .map(|(i, (buf, (dims, device)))| {
                    let Some(values) = buf else { return Ok(None) };
                    let n: usize = dims.iter().product();
                    if values.len() != n {
                        return Err(crate::error::Error::input(format!(
                            "optimiser {what} buffer {i} has {} values, expected {n} ({dims:?})",
                            values.len()
                        )));
                    }
                    use crate::tensor::from_vec;
                    Ok(Some(match dims.len() {
                        1 => Param::D1(from_vec(values, [dims[0]], device)),
                        2 => Param::D2(from_vec(values, [dims[0], dims[1]], device)),
                        4 => Param::D4(from_vec(values, [dims[0], dims[1], dims[2], dims[3]], device)),
                        r => return Err(crate::error::Error::internal(format!("parameter of rank {r}"))),
                    }))
                })
                .collect()
        };
        let (m, v) = (build(m, "first-moment")?, build(v, "second-moment")?);
        let len = m.len().max(v.len());
        self.m = m;
        self.v = v;
        self.m.resize(len, None);
        self.v.resize(len, None);
        self.steps = steps;
        Ok(())
    }
}
