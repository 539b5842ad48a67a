//! Cauchy random projections (training-time estimates of DeepZ/hBox bounds): with many
//! projections the estimates approach the exact zonotope bounds; they are reproducible from
//! their seed.

mod common;

use common::*;
use ironbound::bounds::zonotope::{propagate, propagate_projected, spec_lower, Projections};
use ironbound::bounds::{input_region, Interval, Spec};
use ironbound::net::{Network, ReluLower};
use ironbound::tensor::{to_vec, Tensor};

fn cases() -> Vec<(&'static str, Network, Tensor<4>, f64)> {
    let mut out = Vec::new();
    for (name, net, eps) in [
        ("mlp-6-8-8-3", mlp(31, &[6, 8, 8, 3]), 0.15),
        ("mlp-wide", mlp(32, &[4, 16, 16, 5]), 0.3),
        ("convnet", convnet(33), 0.06),
        ("normalized", normalized_convnet(34), 0.1),
    ] {
        let (x, _) = random_inputs(&net, 3, 78, 0.0, 1.0);
        out.push((name, net, x, eps));
    }
    out
}

fn margins(net: &Network, n: usize) -> Spec {
    let k = net.num_outputs();
    let labels: Vec<usize> = (0..n).map(|i| (i + 2) % k).collect();
    Spec::margins(&labels, k, &dev()).unwrap()
}

/// Margin lower bounds and the flattened ReLU input bounds (lower then upper).
fn estimates(net: &Network, region: &Interval, lower: ReluLower, projections: Option<Projections>) -> (Vec<f32>, Vec<f32>) {
    let (z, pre) = match projections {
        Some(p) => propagate_projected(net, region, lower, p).unwrap(),
        None => propagate(net, region, lower).unwrap(),
    };
    let lb = to_vec(spec_lower(&z, margins(net, region.lo.dims()[0]).c));
    let mut relu_bounds = Vec::new();
    for b in pre.iter().skip(1).flatten() {
        relu_bounds.extend(to_vec(b.lo.clone()));
        relu_bounds.extend(to_vec(b.hi.clone()));
    }
    (lb, relu_bounds)
}

#[test]
fn many_projections_approach_the_exact_zonotope_bounds() {
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, Some((0.0, 1.0)));
        for lower in [ReluLower::Parallel, ReluLower::Box] {
            let exact = estimates(&net, &region, lower, None);
            let est = estimates(&net, &region, lower, Some(Projections { count: 4001, seed: 5 }));
            for (part, e, g) in [("margins", &exact.0, &est.0), ("relu inputs", &exact.1, &est.1)] {
                assert_eq!(e.len(), g.len(), "{name} {lower:?} {part}");
                // The median of 4001 |Cauchy| samples is within a few percent of the scale; errors
                // compound through layers, so allow 15% of the exact bound's magnitude.
                let scale = e.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-3);
                for (a, b) in e.iter().zip(g.iter()) {
                    assert!((a - b).abs() <= 0.15 * scale, "{name} {lower:?} {part}: exact {a} estimated {b} (scale {scale})");
                }
            }
        }
    }
}

#[test]
fn projections_are_reproducible_from_their_seed() {
    let (_, net, x, eps) = cases().remove(0);
    let region = input_region(&x, eps, Some((0.0, 1.0)));
    let at = |seed| estimates(&net, &region, ReluLower::Parallel, Some(Projections { count: 9, seed })).0;
    assert_eq!(at(1), at(1));
    assert_ne!(at(1), at(2));
}

#[test]
fn zero_projections_are_rejected() {
    let (_, net, x, eps) = cases().remove(0);
    let region = input_region(&x, eps, None);
    let err = propagate_projected(&net, &region, ReluLower::Parallel, Projections { count: 0, seed: 1 }).unwrap_err();
    assert!(err.to_string().contains("at least one projection"), "{err}");
}
