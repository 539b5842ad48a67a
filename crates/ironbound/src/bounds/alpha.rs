//! alpha-CROWN: the lower slopes of unstable ReLUs in the final back-substitution are free
//! parameters in [0, 1], one per (sample, spec row, neuron), optimised by Adam to maximise the
//! bound. Starting from CROWN's slopes and keeping the best bound seen per entry makes the
//! result never looser than CROWN.

use super::backsub::{Backsub, RowLines};
use super::interval::Interval;
use super::spec::Spec;
use crate::error::Result;
use crate::net::{relu, Network, Op, ReluLower};
use crate::tensor::Tensor;

/// Adam's moment estimates for one parameter tensor.
struct AdamState {
    m: Tensor<3>,
    v: Tensor<3>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

pub fn optimise(net: &Network, bounds: &[Option<Interval>], spec: &Spec, iterations: usize, lr: f64) -> Result<Tensor<2>> {
    let k = spec.rows();
    // Per ReLU node: masks of active/unstable neurons and the fixed upper line, [N, 1, F].
    struct Relu {
        node: usize,
        active: Tensor<3>,
        unstable: Tensor<3>,
        upper: RowLines,
    }
    let mut relus = Vec::new();
    let mut alphas: Vec<Tensor<3>> = Vec::new();
    for (i, node) in net.nodes().iter().enumerate() {
        let (Op::Relu, Some(b)) = (&node.op, &bounds[node.inputs[0]]) else { continue };
        let b = b.detach();
        let crown = RowLines::from_lines(&relu::lines(&b.lo, &b.hi, ReluLower::Adaptive));
        let flat = |t: Tensor<4>| {
            let [n, c, h, w] = t.dims();
            t.reshape([n, 1, c * h * w])
        };
        let active = flat(b.lo.clone().greater_equal_elem(0.0).float());
        let unstable = flat(b.lo.clone().lower_elem(0.0).float() * b.hi.clone().greater_elem(0.0).float());
        let [n, _, f] = crown.lower_slope.dims();
        alphas.push(crown.lower_slope.clone().expand([n, k, f]));
        relus.push(Relu { node: i, active, unstable, upper: crown });
    }
    let bounds_detached: Vec<Option<Interval>> = bounds.iter().map(|b| b.as_ref().map(Interval::detach)).collect();
    let spec_c = spec.c.clone().detach();
    let out = net.output_value();
    let run = |alphas: &[Tensor<3>]| -> Tensor<2> {
        let mut lines: Vec<Option<RowLines>> = vec![None; net.nodes().len()];
        for (r, a) in relus.iter().zip(alphas) {
            lines[r.node] = Some(RowLines {
                lower_slope: r.active.clone() + a.clone().clamp(0.0, 1.0) * r.unstable.clone(),
                upper_slope: r.upper.upper_slope.clone(),
                upper_intercept: r.upper.upper_intercept.clone(),
            });
        }
        let ctx = Backsub { net, bounds: &bounds_detached, lines: &lines };
        ctx.lower_bound(vec![(out, spec_c.clone())], None, &|_| true)
    };

    let mut best = run(&alphas).detach();
    if alphas.is_empty() {
        // No ReLU: the bound is already exact, there is nothing to optimise.
        return Ok(best);
    }
    let mut states: Vec<AdamState> =
        alphas.iter().map(|a| AdamState { m: a.zeros_like(), v: a.zeros_like() }).collect();
    for step in 1..=iterations {
        let tracked: Vec<Tensor<3>> = alphas.iter().map(|a| a.clone().autodiff().require_grad()).collect();
        let lb = run(&tracked);
        best = best.max_pair(lb.clone().detach().without_autodiff());
        let grads = lb.sum().neg().backward();
        let (c1, c2) = (1.0 - BETA1.powi(step as i32), 1.0 - BETA2.powi(step as i32));
        for ((a, t), s) in alphas.iter_mut().zip(&tracked).zip(states.iter_mut()) {
            let Some(g) = t.grad(&grads) else { continue };
            s.m = s.m.clone() * BETA1 + g.clone() * (1.0 - BETA1);
            s.v = s.v.clone() * BETA2 + g.square() * (1.0 - BETA2);
            let update = (s.m.clone() / c1) / ((s.v.clone() / c2).sqrt() + ADAM_EPS);
            *a = (a.clone() - update * lr).clamp(0.0, 1.0);
        }
    }
    if iterations > 0 {
        best = best.max_pair(run(&alphas).detach());
    }
    Ok(best)
}
