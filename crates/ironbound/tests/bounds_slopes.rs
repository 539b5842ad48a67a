//! LAND's per-sample slopes (`one-step`, `random-slope`, multi-step, p/q): sound for every
//! draw, the engine's bound equals a dense reference with the same slopes, one-step's slopes
//! are binary wherever the gradient is non-zero and independent of eta >= 1, and a sample's
//! slopes depend on (seed, its index) only, never on the batch it is in.

mod common;

use common::*;
use ironbound::bounds::slopes::{self, ReluSlopes};
use ironbound::bounds::{input_region, intermediate, lower_bound, output_bounds, output_bounds_with_labels, Engine, Interval, LowerLine, Method, Relaxation, SlopeRule, Spec};
use ironbound::error::Error;
use ironbound::net::init::SplitMix64;
use ironbound::net::{Network, Op, ReluLower};
use ironbound::tensor::{from_vec, to_vec, Tensor};
use ironbound::verify::bounds_table::{bounds_table, BoundsOptions};
use ironbound::verify::certify::{certify, CertifyConfig};
use ironbound::verify::CertMethod;
use std::time::Duration;

const TOL: f64 = 1e-4;

fn slack(v: f32) -> f32 {
    1e-5 * (1.0 + v.abs())
}

/// IBP intermediate bounds and the final pass with the rule's slopes.
fn sampled(rule: SlopeRule) -> Relaxation {
    Relaxation { intermediate: Engine::Interval, final_pass: Engine::BackSubstitution, intermediate_lower: ReluLower::Adaptive, final_lower: LowerLine::Sampled(rule), sound: false }
}

/// The two presets and the library-only variants, with a seed.
fn rules(seed: u64) -> Vec<(&'static str, Relaxation)> {
    vec![
        ("one-step", Method::OneStep.relaxation().with_seed(seed)),
        ("random-slope", Method::RandomSlope.relaxation().with_seed(seed)),
        ("multi-step", sampled(SlopeRule { seed, ..SlopeRule::multi_step() })),
        ("binary 0.5/0.5", sampled(SlopeRule { seed, ..SlopeRule::binary(0.5, 0.5) })),
        ("binary then a step", sampled(SlopeRule { seed, steps: 1, step_size: 1.0, ..SlopeRule::binary(0.3, 0.9) })),
    ]
}

/// `steps` of signed-gradient descent on `row . f(x)` over the region from its centre and from
/// a random corner; returns the lowest value found (a strong attacker for one spec row).
fn pgd_min(net: &Network, region: &Interval, row: &[f32], steps: usize, rng: &mut SplitMix64) -> f32 {
    let dims = region.lo.dims();
    let (lo, hi) = (to_vec(region.lo.clone()), to_vec(region.hi.clone()));
    let k = row.len();
    let c = from_vec(row.to_vec(), [1, k], &dev());
    let mut best = f32::INFINITY;
    let corner: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| if rng.uniform() < 0.5 { *l } else { *h }).collect();
    let centre: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| (l + h) / 2.0).collect();
    let step = lo.iter().zip(&hi).map(|(l, h)| h - l).fold(0.0f32, f32::max) as f64 / 8.0;
    for start in [centre, corner] {
        let mut x = from_vec(start, dims, &dev());
        for _ in 0..steps {
            let tracked = x.clone().autodiff().require_grad();
            let value = (net.forward(tracked.clone()) * c.clone()).sum();
            best = best.min(to_vec(value.clone().detach().without_autodiff())[0]);
            let grads = value.backward();
            let Some(g) = tracked.grad(&grads) else { break };
            x = (x - g.sign() * step).max_pair(region.lo.clone()).min_pair(region.hi.clone());
        }
        best = best.min(to_vec((net.forward(x) * c.clone()).sum())[0]);
    }
    best
}

/// Output and margin bounds of every rule against sampled points and PGD on each row.
fn check_sound(name: &str, net: &Network, x: Tensor<4>, eps: f64, clip: Option<(f64, f64)>, seed: u64) {
    let n = x.dims()[0];
    let k = net.num_outputs();
    let labels: Vec<usize> = (0..n).map(|i| (i + 1) % k).collect();
    let region = input_region(&x, eps, clip);
    let spec = Spec::margins(&labels, k, &dev()).unwrap();
    let [_, c, h, w] = x.dims();
    let f = c * h * w;
    let (rlo, rhi) = (to_vec(region.lo.clone()), to_vec(region.hi.clone()));
    let mut rng = SplitMix64::new(seed);
    for (rule, r) in rules(seed) {
        let (lo, up) = output_bounds_with_labels(net, &region, &r, &labels).unwrap();
        let (lo, up, mg) = (rows2(lo), rows2(up), rows2(lower_bound(net, &region, &spec, &r).unwrap()));
        for s in 0..n {
            let y = labels[s];
            let pts = sample_box(&rlo[s * f..(s + 1) * f], &rhi[s * f..(s + 1) * f], 500, &mut rng);
            for out in forward_points(net, &pts) {
                for j in 0..k {
                    assert!(out[j] >= lo[s][j] - slack(lo[s][j]) && out[j] <= up[s][j] + slack(up[s][j]), "{name} {rule}: sample {s} output {j} = {} outside [{}, {}]", out[j], lo[s][j], up[s][j]);
                }
                for (row, j) in (0..k).filter(|&j| j != y).enumerate() {
                    assert!(out[y] - out[j] >= mg[s][row] - slack(mg[s][row]), "{name} {rule}: sample {s} margin f{y}-f{j} = {} below {}", out[y] - out[j], mg[s][row]);
                }
            }
            let one = Interval::new(
                from_vec(rlo[s * f..(s + 1) * f].to_vec(), [1, c, h, w], &dev()),
                from_vec(rhi[s * f..(s + 1) * f].to_vec(), [1, c, h, w], &dev()),
            );
            let e = |j: usize, v: f32| (0..k).map(|i| if i == j { v } else { 0.0 }).collect::<Vec<f32>>();
            for j in 0..k {
                let min = pgd_min(net, &one, &e(j, 1.0), 20, &mut rng);
                let max = -pgd_min(net, &one, &e(j, -1.0), 20, &mut rng);
                assert!(min >= lo[s][j] - slack(lo[s][j]) && max <= up[s][j] + slack(up[s][j]), "{name} {rule}: PGD reaches [{min}, {max}] outside [{}, {}]", lo[s][j], up[s][j]);
            }
            for (row, j) in (0..k).filter(|&j| j != y).enumerate() {
                let mut c = e(y, 1.0);
                c[j] = -1.0;
                let min = pgd_min(net, &one, &c, 20, &mut rng);
                assert!(min >= mg[s][row] - slack(mg[s][row]), "{name} {rule}: PGD margin f{y}-f{j} = {min} below {}", mg[s][row]);
            }
        }
    }
}

#[test]
fn slopes_are_sound_on_mlps_and_convnets() {
    for (seed, widths, eps) in [(1u64, &[6usize, 8, 8, 3][..], 0.15), (2, &[4, 10, 10, 4], 0.3), (3, &[5, 7, 7, 7, 4], 0.1)] {
        let net = mlp(seed, widths);
        let (x, _) = random_inputs(&net, 3, seed + 10, -0.5, 0.5);
        check_sound(&format!("mlp {widths:?}"), &net, x, eps, None, seed);
    }
    for (name, net, eps) in [("convnet", convnet(4), 0.05), ("convnet-remainder", convnet_remainder(5), 0.1), ("normalized", normalized_convnet(6), 0.08)] {
        let (x, _) = random_inputs(&net, 2, 20, 0.0, 1.0);
        check_sound(name, &net, x.clone(), eps, None, 9);
        check_sound(&format!("{name} clipped"), &net, x, 3.0 * eps, Some((0.0, 1.0)), 10);
    }
}

/// Dense-layer index of each ReLU node (the reference drops Flatten nodes).
fn dense_index(net: &Network) -> Vec<Option<usize>> {
    let mut next = 0;
    net.nodes()
        .iter()
        .map(|node| match node.op {
            Op::Flatten(_) => None,
            _ => {
                next += 1;
                matches!(node.op, Op::Relu).then_some(next - 1)
            }
        })
        .collect()
}

/// The f64 reference: IBP intermediate bounds, back-substitution with lower slope `a[i][j]` on
/// unstable neuron j of dense ReLU layer i and the chord above.
fn reference_with_slopes(d: &Dense, lo: &[f64], hi: &[f64], rows: &[Vec<f64>], a: &[Option<Vec<f64>>]) -> Vec<f64> {
    let pre = common::intermediate(d, lo, hi, None);
    rows.iter()
        .map(|row| {
            let (mut coef, mut cst) = (row.clone(), 0.0);
            for i in (0..d.layers.len()).rev() {
                match &d.layers[i] {
                    Layer::Affine { w, b, n_in, n_out } => {
                        cst += (0..*n_out).map(|o| coef[o] * b[o]).sum::<f64>();
                        coef = (0..*n_in).map(|j| (0..*n_out).map(|o| coef[o] * w[o * n_in + j]).sum()).collect();
                    }
                    Layer::Relu => {
                        let (l, u) = pre[i].as_ref().expect("bounds of every ReLU input");
                        let slopes = a[i].as_ref().expect("slopes of every ReLU");
                        for j in 0..coef.len() {
                            let (ls, us, ui) = match (l[j], u[j]) {
                                (l, _) if l >= 0.0 => (1.0, 1.0, 0.0),
                                (_, u) if u <= 0.0 => (0.0, 0.0, 0.0),
                                (l, u) => (slopes[j], u / (u - l), -u * l / (u - l)),
                            };
                            if coef[j] >= 0.0 {
                                coef[j] *= ls;
                            } else {
                                cst += coef[j] * ui;
                                coef[j] *= us;
                            }
                        }
                    }
                }
            }
            cst + (0..coef.len()).map(|j| if coef[j] > 0.0 { coef[j] * lo[j] } else { coef[j] * hi[j] }).sum::<f64>()
        })
        .collect()
}

/// The slopes `choose` gives on IBP bounds for samples with these labels.
fn chosen(net: &Network, region: &Interval, labels: &[usize], rule: SlopeRule) -> Vec<ReluSlopes> {
    let inter = intermediate(net, region, &sampled(rule)).unwrap();
    slopes::choose(net, &inter.bounds, &Spec::margins(labels, net.num_outputs(), &dev()).unwrap(), &rule).unwrap()
}

#[test]
fn the_final_pass_equals_a_dense_reference_with_the_same_slopes() {
    for (name, net, eps) in [("mlp", mlp(21, &[6, 8, 8, 3]), 0.2), ("convnet", convnet(22), 0.08), ("normalized", normalized_convnet(23), 0.1)] {
        let (x, xv) = random_inputs(&net, 3, 31, 0.0, 1.0);
        let region = input_region(&x, eps, None);
        let d = dense(&net);
        let k = net.num_outputs();
        let labels: Vec<usize> = (0..3).map(|i| i % k).collect();
        let f: usize = net.input_shape().iter().product();
        for (rule_name, r) in rules(5) {
            let LowerLine::Sampled(rule) = r.final_lower else { unreachable!() };
            let slopes = chosen(&net, &region, &labels, rule);
            let margins = rows2(lower_bound(&net, &region, &Spec::margins(&labels, k, &dev()).unwrap(), &r).unwrap());
            let index = dense_index(&net);
            for s in 0..3 {
                let mut a: Vec<Option<Vec<f64>>> = vec![None; d.layers.len()];
                for rs in &slopes {
                    let v = to_vec(rs.slopes.clone());
                    let per = v.len() / 3;
                    a[index[rs.node].expect("a ReLU node")] = Some(v[s * per..(s + 1) * per].iter().map(|&x| x as f64).collect());
                }
                let (lo, hi) = box_of(&xv, f, s, eps, None);
                let want = reference_with_slopes(&d, &lo, &hi, &margin_rows(labels[s], k), &a);
                assert_close_rows(&format!("{name} {rule_name} sample {s}"), &margins[s..s + 1], &[want], TOL);
            }
        }
    }
}

/// Per ReLU, flattened: (unstable, start, gradient, slope) of every sample and neuron.
fn entries(s: &ReluSlopes) -> Vec<(f32, f32, f32, f32)> {
    let g = to_vec(s.gradient.clone().expect("one step has a gradient"));
    let (u, a0, a) = (to_vec(s.unstable.clone()), to_vec(s.start.clone()), to_vec(s.slopes.clone()));
    (0..a.len()).map(|i| (u[i], a0[i], g[i], a[i])).collect()
}

#[test]
fn one_step_slopes_are_binary_where_the_gradient_is_non_zero_and_independent_of_eta() {
    for (name, net, eps) in [("mlp", mlp(41, &[6, 10, 10, 4]), 0.3), ("convnet", convnet(42), 0.1)] {
        let (x, _) = random_inputs(&net, 4, 43, 0.0, 1.0);
        let region = input_region(&x, eps, None);
        let labels = [0, 1, 2, 0];
        let one = chosen(&net, &region, &labels, SlopeRule::one_step());
        let (mut moved, mut kept) = (0, 0);
        for s in &one {
            for (unstable, a0, g, a) in entries(s) {
                assert!((0.0..=1.0).contains(&a0), "{name}: start {a0}");
                if g == 0.0 {
                    assert_eq!(a, a0, "{name}: a zero gradient keeps the start");
                    kept += 1;
                } else {
                    assert_eq!(a, if g > 0.0 { 0.0 } else { 1.0 }, "{name}: gradient {g} from {a0}");
                    assert_eq!(unstable, 1.0, "{name}: only unstable neurons' slopes have a gradient");
                    moved += 1;
                }
            }
        }
        assert!(moved > 0 && kept > 0, "{name}: {moved} slopes moved, {kept} kept");
        for eta in [2.0, 5.0] {
            let other = chosen(&net, &region, &labels, SlopeRule { step_size: eta, ..SlopeRule::one_step() });
            for (a, b) in one.iter().zip(&other) {
                assert_eq!(to_vec(a.slopes.clone()), to_vec(b.slopes.clone()), "{name}: eta 1 vs {eta}");
            }
            let bound = |r: SlopeRule| to_vec(lower_bound(&net, &region, &Spec::margins(&labels, net.num_outputs(), &dev()).unwrap(), &sampled(r)).unwrap());
            assert_eq!(bound(SlopeRule::one_step()), bound(SlopeRule { step_size: eta, ..SlopeRule::one_step() }), "{name}: bounds for eta 1 vs {eta}");
        }
    }
}

#[test]
fn binary_slopes_zero_one_are_crown_ibp() {
    // p = 0, q = 1: slope 1 exactly where |l| <= |u|, which is CROWN's rule up to ties (none in
    // random nets); p = q = 0 is CROWN-0's line with IBP intermediate bounds.
    let net = mlp(51, &[6, 8, 8, 3]);
    let (x, _) = random_inputs(&net, 4, 52, 0.0, 1.0);
    let region = input_region(&x, 0.2, None);
    let spec = Spec::margins(&[0, 1, 2, 0], 3, &dev()).unwrap();
    let fixed = |lower| Relaxation { final_lower: LowerLine::Fixed(lower), ..Method::CrownIbp.relaxation() };
    for (rule, lower) in [(SlopeRule::binary(0.0, 1.0), ReluLower::Adaptive), (SlopeRule::binary(0.0, 0.0), ReluLower::Zero)] {
        let got = rows2(lower_bound(&net, &region, &spec, &sampled(rule)).unwrap());
        let want = rows2(lower_bound(&net, &region, &spec, &fixed(lower)).unwrap());
        assert_close_rows(&format!("{rule:?}"), &got, &as_f64(&want), 1e-6);
    }
}

fn as_f64(rows: &[Vec<f32>]) -> Vec<Vec<f64>> {
    rows.iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect()
}

#[test]
fn bounds_do_not_depend_on_the_batch_size() {
    let net = convnet(61);
    let (_, xv) = random_inputs(&net, 7, 62, 0.0, 1.0);
    let labels: Vec<usize> = (0..7).map(|i| i % 3).collect();
    for method in [Method::RandomSlope, Method::OneStep] {
        let table = |batch_size, seed| {
            let opts = BoundsOptions { eps: 0.1, method: CertMethod::Bound(method), clip: Some((0.0, 1.0)), timeout: Duration::from_secs(1), batch_size, seed, sound: false };
            bounds_table(&net, &xv, Some(&labels), &opts, &dev(), &mut |_| Ok(())).unwrap()
        };
        let (one, seven) = (table(1, 3), table(7, 3));
        assert_eq!(one, seven, "{method}: batch size 1 vs 7");
        let other = table(7, 4);
        assert_ne!(one.lower, other.lower, "{method}: another seed draws other slopes");
    }
}

#[test]
fn a_samples_slopes_follow_its_index_not_its_batch() {
    // Sample 5 alone (index 5) gets the slopes it has in the batch of 7; at index 0 it does not.
    let net = mlp(71, &[6, 8, 8, 3]);
    let (x, xv) = random_inputs(&net, 7, 72, 0.0, 1.0);
    let f = 6;
    let alone = from_vec(xv[5 * f..6 * f].to_vec(), [1, 6, 1, 1], &dev());
    let rule = SlopeRule { seed: 9, ..SlopeRule::random() };
    let relaxation = sampled(rule);
    let slopes_of = |x: &Tensor<4>, spec: Spec| {
        let region = input_region(x, 0.3, None);
        let inter = intermediate(&net, &region, &relaxation).unwrap();
        slopes::choose(&net, &inter.bounds, &spec, &rule).unwrap().iter().map(|s| to_vec(s.slopes.clone())).collect::<Vec<_>>()
    };
    let batch = slopes_of(&x, Spec::identity(3, &dev()));
    let at5 = slopes_of(&alone, Spec::identity(3, &dev()).with_indices(vec![5]));
    let at0 = slopes_of(&alone, Spec::identity(3, &dev()));
    for ((b, a5), a0) in batch.iter().zip(&at5).zip(&at0) {
        let per = b.len() / 7;
        assert_eq!(&b[5 * per..6 * per], &a5[..], "index 5 alone vs in the batch");
        assert_ne!(&b[5 * per..6 * per], &a0[..], "index 0 draws other slopes");
    }
}

#[test]
fn certify_outcomes_do_not_depend_on_the_batch_size() {
    let net = mlp(81, &[6, 8, 8, 3]);
    let (_, xv) = random_inputs(&net, 12, 82, 0.0, 1.0);
    let labels = ironbound::loss::predictions(net.forward(from_vec(xv.clone(), [12, 6, 1, 1], &dev())));
    let methods = vec![CertMethod::Bound(Method::OneStep), CertMethod::Bound(Method::RandomSlope)];
    let run = |batch_size| {
        let cfg = CertifyConfig { eps: 0.4, methods: methods.clone(), batch_size, pgd: None, clip: None, timeout: Duration::from_secs(1), seed: 7, sound: true };
        certify(&net, &xv, &labels, &cfg, &dev(), &mut |_| {}).unwrap().1.outcomes
    };
    let one = run(1);
    for (m, outcomes) in &one {
        let certified = outcomes.iter().filter(|o| **o == ironbound::verify::certify::Outcome::Certified).count();
        assert!(certified > 0 && certified < 12, "{m}: {certified} of 12 certified, the test needs both kinds");
    }
    assert_eq!(one, run(5));
}

#[test]
fn one_step_needs_labels_random_slope_does_not() {
    let net = mlp(91, &[4, 6, 3]);
    let (x, _) = random_inputs(&net, 2, 92, 0.0, 1.0);
    let region = input_region(&x, 0.1, None);
    let r = Method::OneStep.relaxation();
    assert!(Method::OneStep.needs_labels() && !Method::RandomSlope.needs_labels() && !Method::Crown.needs_labels());
    assert!(matches!(output_bounds(&net, &region, &r), Err(Error::InvalidInput(m)) if m.contains("labels")));
    assert!(matches!(lower_bound(&net, &region, &Spec::identity(3, &dev()), &r), Err(Error::InvalidInput(m)) if m.contains("labels")));
    assert!(output_bounds_with_labels(&net, &region, &r, &[0, 2]).is_ok());
    assert!(output_bounds(&net, &region, &Method::RandomSlope.relaxation()).is_ok());
    assert!(lower_bound(&net, &region, &Spec::identity(3, &dev()).with_labels(&[0, 1, 2]), &r).is_err(), "3 labels for 2 samples");
    assert_eq!("optimized-slope".parse::<Method>().unwrap(), Method::OneStep);
    assert_eq!("random-slope".parse::<Method>().unwrap(), Method::RandomSlope);
    // Seeds only touch random slopes.
    assert_eq!(Method::Crown.relaxation().with_seed(3), Method::Crown.relaxation());
    assert_ne!(Method::RandomSlope.relaxation().with_seed(3), Method::RandomSlope.relaxation());
    let bad = sampled(SlopeRule::binary(1.5, 0.0));
    assert!(matches!(output_bounds(&net, &region, &bad), Err(Error::InvalidInput(m)) if m.contains("[0, 1]")));
}

#[test]
fn one_step_bounds_are_differentiable_in_the_weights_with_the_same_slopes() {
    // Training's view: on a tracked network the bound has the plain network's value (the
    // slopes are chosen on detached values) and gradients reach the weights through the final
    // pass. The value agrees to float32 rounding, not bit for bit: with tracked weights the
    // first convolution runs as im2col + GEMM (net/conv2d.rs), a different summation order.
    let net = convnet(101);
    let tracked = net.map_params(&mut |_, p| p.require_grad());
    let (x, _) = random_inputs(&net, 3, 102, 0.0, 1.0);
    let region = input_region(&x, 0.05, Some((0.0, 1.0)));
    let spec = Spec::margins(&[0, 1, 2], 3, &dev()).unwrap();
    let r = Method::OneStep.relaxation().with_seed(4);
    let plain = to_vec(lower_bound(&net, &region, &spec, &r).unwrap());
    let lb = lower_bound(&tracked, &region, &spec, &r).unwrap();
    let value = to_vec(lb.clone().detach().without_autodiff());
    assert_eq!(value.len(), plain.len());
    for (a, b) in value.iter().zip(&plain) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "tracked {a} vs plain {b}");
    }
    let grads = ironbound::loss::robust_cross_entropy(lb).backward();
    let mut reached = 0;
    for (name, p) in tracked.named_params() {
        let g = p.grad(&grads).unwrap_or_else(|| panic!("{name} has no gradient")).to_vec();
        reached += g.iter().any(|v| *v != 0.0) as usize;
    }
    assert!(reached > 0, "no weight gets a gradient");
}
