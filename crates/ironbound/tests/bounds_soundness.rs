//! Soundness of every method: sampled points of the input region never leave the bounds.

mod common;

use common::*;
use ironbound::bounds::{input_region, lower_bound, output_bounds_with_labels, Method, Spec};
use ironbound::net::init::SplitMix64;
use ironbound::net::Network;
use ironbound::tensor::{to_vec, Tensor};
use proptest::prelude::*;

/// Absolute slack for f32 rounding (plus a relative part of the same size).
const SLACK: f32 = 1e-5;

fn slack(v: f32) -> f32 {
    SLACK * (1.0 + v.abs())
}

/// Per method: output lower, output upper, margin lower bounds, all `[N][..]`.
struct MethodBounds {
    method: Method,
    lower: Vec<Vec<f32>>,
    upper: Vec<Vec<f32>>,
    margins: Vec<Vec<f32>>,
}

/// Checks every method's output and margin bounds against `points` samples of each region
/// (all corners of small boxes, random corners, uniform points), forwarded by the network.
fn check_sound(name: &str, net: &Network, x: Tensor<4>, eps: f64, clip: Option<(f64, f64)>, points: usize, seed: u64, methods: &[Method]) {
    let n = x.dims()[0];
    let k = net.num_outputs();
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let region = input_region(&x, eps, clip);
    let spec = Spec::margins(&labels, k, &dev()).unwrap();
    let all: Vec<MethodBounds> = methods
        .iter()
        .map(|&m| {
            let r = m.relaxation();
            let (lo, up) = output_bounds_with_labels(net, &region, &r, &labels).unwrap();
            let lb = lower_bound(net, &region, &spec, &r).unwrap();
            MethodBounds { method: m, lower: rows2(lo), upper: rows2(up), margins: rows2(lb) }
        })
        .collect();
    let f: usize = net.input_shape().iter().product();
    let (rlo, rhi) = (to_vec(region.lo.clone()), to_vec(region.hi.clone()));
    let mut rng = SplitMix64::new(seed);
    for s in 0..n {
        let pts = sample_box(&rlo[s * f..(s + 1) * f], &rhi[s * f..(s + 1) * f], points, &mut rng);
        assert!(pts.len() >= points);
        let logits = forward_points(net, &pts);
        for b in &all {
            let (lo, up, mg) = (&b.lower[s], &b.upper[s], &b.margins[s]);
            for j in 0..k {
                assert!(lo[j].is_finite() && up[j].is_finite() && lo[j] <= up[j] + slack(up[j]), "{name} {}: [{}, {}]", b.method, lo[j], up[j]);
            }
            for (p, out) in logits.iter().enumerate() {
                for j in 0..k {
                    assert!(
                        out[j] >= lo[j] - slack(lo[j]) && out[j] <= up[j] + slack(up[j]),
                        "{name} {}: sample {s} point {p} output {j} = {} outside [{}, {}]",
                        b.method,
                        out[j],
                        lo[j],
                        up[j]
                    );
                }
                let y = labels[s];
                for (r, j) in (0..k).filter(|&j| j != y).enumerate() {
                    let margin = out[y] - out[j];
                    assert!(margin >= mg[r] - slack(mg[r]), "{name} {}: sample {s} point {p} margin f{y}-f{j} = {margin} below {}", b.method, mg[r]);
                }
            }
        }
    }
}

#[test]
fn every_method_is_sound_on_mlps() {
    for (seed, widths, eps) in [(1u64, &[6usize, 8, 8, 3][..], 0.15), (2, &[4, 10, 10, 4], 0.3), (3, &[5, 7, 7, 7, 4], 0.1)] {
        let net = mlp(seed, widths);
        let (x, _) = random_inputs(&net, 4, seed + 10, -0.5, 0.5);
        check_sound(&format!("mlp {widths:?}"), &net, x, eps, None, 2000, seed, &Method::ALL);
    }
}

#[test]
fn every_method_is_sound_on_convnets() {
    for (name, net, eps) in [("convnet", convnet(4), 0.05), ("convnet-remainder", convnet_remainder(5), 0.1), ("normalized", normalized_convnet(6), 0.08), ("rect", rect_convnet(7), 0.1), ("conv-conv", stacked_affine(8, true), 0.3)] {
        let (x, _) = random_inputs(&net, 3, 20, 0.0, 1.0);
        check_sound(name, &net, x, eps, None, 2000, 9, &Method::ALL);
    }
}

#[test]
fn every_method_is_sound_with_a_clipped_region() {
    let net = mlp(7, &[6, 8, 8, 3]);
    let (x, _) = random_inputs(&net, 4, 30, 0.0, 1.0);
    check_sound("clipped", &net, x, 0.4, Some((0.0, 1.0)), 2000, 3, &Method::ALL);
}

#[test]
fn a_degenerate_region_gives_the_exact_output() {
    // eps = 0: every neuron is stable and every method must return f(x) itself.
    for net in [mlp(11, &[6, 8, 8, 3]), convnet(12)] {
        let (x, _) = random_inputs(&net, 3, 40, -1.0, 1.0);
        let fx = rows2(net.forward(x.clone()));
        let region = input_region(&x, 0.0, None);
        let k = net.num_outputs();
        let labels = [0, 1, 2];
        let spec = Spec::margins(&labels, k, &dev()).unwrap();
        for m in Method::ALL {
            let (lo, up) = output_bounds_with_labels(&net, &region, &m.relaxation(), &labels).unwrap();
            let lb = rows2(lower_bound(&net, &region, &spec, &m.relaxation()).unwrap());
            for (s, (l, u)) in rows2(lo).iter().zip(rows2(up)).enumerate() {
                for j in 0..k {
                    assert!((l[j] - fx[s][j]).abs() < 1e-5 && (u[j] - fx[s][j]).abs() < 1e-5, "{m}: {l:?} {u:?} vs {:?}", fx[s]);
                }
                for (r, j) in (0..k).filter(|&j| j != labels[s]).enumerate() {
                    let want = fx[s][labels[s]] - fx[s][j];
                    assert!((lb[s][r] - want).abs() < 1e-5, "{m}: margin {} vs {want}", lb[s][r]);
                }
            }
        }
    }
}

#[test]
fn bounds_tighten_to_the_output_as_eps_shrinks() {
    // Sound but useless bounds would pass the sampling tests; check that every method's
    // width vanishes linearly with eps on a small region.
    let net = mlp(13, &[6, 8, 8, 3]);
    let (x, _) = random_inputs(&net, 2, 50, -1.0, 1.0);
    for m in Method::ALL {
        let width = |eps: f64| {
            let (lo, up) = output_bounds_with_labels(&net, &input_region(&x, eps, None), &m.relaxation(), &[0, 1]).unwrap();
            to_vec(up).iter().zip(to_vec(lo)).map(|(u, l)| u - l).fold(0.0f32, f32::max)
        };
        let (w1, w2) = (width(1e-2), width(1e-3));
        assert!(w1 > 0.0 && w2 < 0.2 * w1, "{m}: widths {w1} at 1e-2, {w2} at 1e-3");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn every_method_is_sound_for_random_nets_and_eps(seed in 0u64..1_000_000, eps in 0.01f64..0.5, conv in any::<bool>(), clip in any::<bool>()) {
        let net = if conv { convnet_remainder(seed) } else { mlp(seed, &[4, 6, 6, 3]) };
        let (x, _) = random_inputs(&net, 2, seed ^ 0x5eed, 0.0, 1.0);
        let clip = clip.then_some((0.0, 1.0));
        check_sound(&format!("seed {seed} eps {eps} clip {clip:?}"), &net, x, eps, clip, 500, seed, &Method::ALL);
    }
}
