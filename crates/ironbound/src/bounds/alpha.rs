//! alpha-CROWN: the lower slopes of unstable ReLUs in the final back-substitution are free
//! parameters in [0, 1], one per (sample, spec row, neuron), optimised by Adam to maximise the
//! bound. Starting from CROWN's slopes and keeping the best bound seen per entry makes the
//! result never looser than CROWN.

use super::backsub::{Backsub, RowLines};
use super::interval::Interval;
use super::spec::Spec;
use crate::error::Result;
use crate::net::{relu, Network, Op, ReluLower};
use crate::tensor::{indicator, Tensor};

/// Adam's moment estimates for one parameter tensor.
struct AdamState {
    m: Tensor<3>,
    v: Tensor<3>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// With `sound` (sound interval bounds of every value, see `backsub.rs`) the slopes are still
/// optimised with plain arithmetic; the slopes that gave each entry its best bound are kept,
/// and one float-sound pass with them gives the result.
pub fn optimise(net: &Network, bounds: &[Option<Interval>], spec: &Spec, iterations: usize, lr: f64, sound: Option<&[Interval]>) -> Result<Tensor<2>> {
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
    let reaches = reaches_output(net);
    for (i, node) in net.nodes().iter().enumerate() {
        // A ReLU off every path to the output (a dangling branch of a graph) has no slope that
        // could move the bound: it gets none, rather than a parameter without a gradient.
        if !reaches[i + 1] {
            continue;
        }
        let (Op::Relu, Some(b)) = (&node.op, &bounds[node.inputs[0]]) else { continue };
        let b = b.detach();
        let crown = RowLines::from_lines(&relu::lines(&b.lo, &b.hi, ReluLower::Adaptive));
        let flat = |t: Tensor<4>| {
            let [n, c, h, w] = t.dims();
            t.reshape([n, 1, c * h * w])
        };
        let dtype = b.lo.dtype();
        let active = flat(indicator(b.lo.clone().greater_equal_elem(0.0), dtype));
        let unstable = flat(indicator(b.lo.clone().lower_elem(0.0).bool_and(b.hi.clone().greater_elem(0.0)), dtype));
        let [n, _, f] = crown.lower_slope.dims();
        alphas.push(crown.lower_slope.clone().expand([n, k, f]));
        relus.push(Relu { node: i, active, unstable, upper: crown });
    }
    let bounds_detached: Vec<Option<Interval>> = bounds.iter().map(|b| b.as_ref().map(Interval::detach)).collect();
    let spec_c = spec.c.clone().detach();
    let out = net.output_value();
    let run_with = |alphas: &[Tensor<3>], sound: Option<&[Interval]>| -> Tensor<2> {
        let mut lines: Vec<Option<RowLines>> = vec![None; net.nodes().len()];
        for (r, a) in relus.iter().zip(alphas) {
            lines[r.node] = Some(RowLines {
                lower_slope: r.active.clone() + a.clone().clamp(0.0, 1.0) * r.unstable.clone(),
                upper_slope: r.upper.upper_slope.clone(),
                upper_intercept: r.upper.upper_intercept.clone(),
            });
        }
        let ctx = Backsub { net, bounds: &bounds_detached, lines: &lines, sound };
        ctx.lower_bound(vec![(out, spec_c.clone())], None, &|_| true)
    };
    let run = |alphas: &[Tensor<3>]| run_with(alphas, None);
    // Per (sample, spec row): the slopes of its best bound so far (each row has its own).
    let mut best_alphas = alphas.clone();
    let keep_best = |best_alphas: &mut Vec<Tensor<3>>, best: &Tensor<2>, lb: &Tensor<2>, alphas: &[Tensor<3>]| {
        let better = lb.clone().greater(best.clone()).unsqueeze_dim::<3>(2);
        for (b, a) in best_alphas.iter_mut().zip(alphas) {
            let shape = a.dims();
            *b = b.clone().mask_where(better.clone().expand(shape), a.clone());
        }
    };

    let mut best = run(&alphas).detach();
    if alphas.is_empty() {
        // No ReLU: the bound is already exact, there is nothing to optimise.
        return Ok(match sound {
            Some(_) => run_with(&alphas, sound),
            None => best,
        });
    }
    let mut states: Vec<AdamState> =
        alphas.iter().map(|a| AdamState { m: a.zeros_like(), v: a.zeros_like() }).collect();
    for step in 1..=iterations {
        let tracked: Vec<Tensor<3>> = alphas.iter().map(|a| a.clone().autodiff().require_grad()).collect();
        let lb = run(&tracked);
        let plain = lb.clone().detach().without_autodiff();
        if sound.is_some() {
            keep_best(&mut best_alphas, &best, &plain, &alphas);
        }
        best = best.max_pair(plain);
        if !lb.is_tracked() {
            // No slope reaches the bound (every one was masked out): nothing to optimise, and
            // backward would panic on an untracked tensor.
            break;
        }
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
        let last = run(&alphas).detach();
        if sound.is_some() {
            keep_best(&mut best_alphas, &best, &last, &alphas);
        }
        best = best.max_pair(last);
    }
    if sound.is_some() {
        return Ok(run_with(&best_alphas, sound));
    }
    Ok(best)
}

/// `reaches[v]`: whether value v feeds the network output (the output reaches itself).
fn reaches_output(net: &Network) -> Vec<bool> {
    let mut reaches = vec![false; net.output_value() + 1];
    reaches[net.output_value()] = true;
    for (i, node) in net.nodes().iter().enumerate().rev() {
        if reaches[i + 1] {
            for &v in &node.inputs {
                reaches[v] = true;
            }
        }
    }
    reaches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::{input_region, Method};
    use crate::net::{NetSpec, NodeSpec, OpSpec};
    use crate::tensor::{default_device, from_vec, to_vec};

    /// x -> fc1 -> relu (a branch that goes nowhere); x -> fc2 -> relu -> fc3 (the output),
    /// and the same without the second ReLU, so that no slope reaches the output at all.
    fn dangling(with_live_relu: bool) -> Network {
        let node = |name: &str, op, inputs: Vec<usize>| NodeSpec { name: name.into(), op, inputs };
        let fc = |i, o| OpSpec::Linear { in_features: i, out_features: o };
        let mut nodes = vec![node("fc1", fc(3, 4), vec![0]), node("dead", OpSpec::Relu, vec![1]), node("fc2", fc(3, 5), vec![0])];
        let mut last = 3;
        if with_live_relu {
            nodes.push(node("relu", OpSpec::Relu, vec![3]));
            last = 4;
        }
        nodes.push(node("fc3", fc(5, 2), vec![last]));
        NetSpec { input_shape: [3, 1, 1], nodes }.init(7, &default_device()).unwrap()
    }

    #[test]
    fn dangling_relu_branches_get_no_slopes_and_bounds_stay_sound() {
        let device = default_device();
        for live in [false, true] {
            let net = dangling(live);
            let x = from_vec(vec![0.2, -0.4, 0.9, 0.0, 0.5, -1.0], [2, 3, 1, 1], &device);
            let region = input_region(&x, 0.3, None);
            let (lo, _) = crate::bounds::output_bounds(&net, &region, &Method::AlphaCrown.relaxation()).unwrap();
            let (crown, _) = crate::bounds::output_bounds(&net, &region, &Method::Crown.relaxation()).unwrap();
            let (lo, crown) = (to_vec(lo), to_vec(crown));
            // Never looser than CROWN, and below the outputs of sampled points of the box.
            assert!(lo.iter().zip(&crown).all(|(a, c)| a >= &(c - 1e-5)), "live {live}: {lo:?} vs {crown:?}");
            let xs = to_vec(x.clone());
            for corner in 0..8usize {
                let pt: Vec<f32> = (0..6).map(|j| xs[j] + if corner >> (j % 3) & 1 == 1 { 0.3 } else { -0.3 }).collect();
                let y = to_vec(net.forward(from_vec(pt, [2, 3, 1, 1], &device)));
                assert!(y.iter().zip(&lo).all(|(y, l)| y >= &(l - 1e-5)), "live {live}: {y:?} below {lo:?}");
            }
        }
    }
}
