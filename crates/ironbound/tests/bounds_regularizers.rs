//! The tightness regularizers d and r (`bounds::regularizers`, SPEC.md section 1):
//! hand-computed values of a one-neuron and a two-neuron network, an independent f64 reference
//! of the relaxed optimum (checked to be optimal on the relaxed network and against an LP
//! solved by HiGHS), d >= 0 and r >= 0 on sound bounds, exactness without unstable ReLUs, the
//! relaxed point inside the region, and gradients (against finite differences).
//!
//! One-neuron network: x in [-1, 1] (center 0, eps 1), h = x + 1/2 in [-1/2, 3/2], out =
//! (relu(h), 0). Chord slope 3/4, intercept 3/8; CROWN's lower slope 1 (u > -l).
//!   Label 0, row f_0 - f_1 = relu(h): coefficient 1 > 0, lower line (delta* = 0).
//!     DeepZ: (3/4) h = (3/4) x + 3/8 >= -3/8 at x' = -1; relu(h(-1)) = 0, so d = 3/8;
//!            h' = -1/2, so r = |h'| = 1/2.
//!     CROWN: h >= -1/2 at x' = -1; d = 1/2, r = 1/2.
//!   Label 1, row f_1 - f_0 = -relu(h): coefficient -1 < 0, upper line (delta* = 3/8):
//!     -(3/4)(x + 1/2) - 3/8 = -(3/4) x - 3/4 >= -3/2 at x' = 1; relu(h(1)) = 3/2, so d = 0;
//!     h' = 3/2 = u, so r = min(|h' - l|, |h' - u|) = 0 (every method).
//!
//! Two-neuron network A of bounds_golden.rs: x in [-1, 1]^2, h = (x1 + x2 + 1, x1 - x2) in
//! [-1, 3] x [-2, 2], out = (r1 + r2, r1 - r2).
//!   Label 0, row out1 - out2 = 2 r2: coefficients (0, 2) over r, both delta* = 0.
//!     DeepZ: 2 (h2 / 2) = x1 - x2 >= -2 at x' = (-1, 1): h' = (1, -2), value 2 relu(-2) = 0;
//!            d = 2, r = (|1| + |-2|) / 2 = 3/2.
//!     CROWN (tie u = -l: slope 0): coefficients over x vanish, x' = x = (0, 0), p = 0;
//!            h' = (1, 0), value 0: d = 0 but r = (1 + 0) / 2 = 1/2.
//!   Label 1, row out2 - out1 = -2 r2: r2 takes its upper line h2 / 2 + 1 (delta* = 1):
//!     -x1 + x2 - 2 >= -4 at x' = (1, -1): h' = (1, 2), value -2 * 2 = -4: d = 0;
//!     r = (|1| + min(|2 + 2|, |2 - 2|)) / 2 = 1/2 (every method).

mod common;

use common::*;
use ironbound::bounds::regularizers::{self, tightness, Tightness};
use ironbound::bounds::{input_region, lower_bound, Method, Spec};
use ironbound::net::init::SplitMix64;
use ironbound::net::{Network, Param};
use ironbound::tensor::{from_vec, to_vec, Tensor};
use ironbound::verify::bounds_table::{regularizers_table, BoundsOptions};
use ironbound::verify::lp::solver::Program;
use ironbound::verify::CertMethod;

const METHODS: [Method; 3] = [Method::Deepz, Method::Crown, Method::CrownIbp];

fn run(net: &Network, x: &[f32], labels: &[usize], eps: f64, clip: Option<(f64, f64)>, m: Method) -> Tightness {
    let [c, h, w] = net.input_shape();
    let n = labels.len();
    let xt = from_vec(x.to_vec(), [n, c, h, w], &dev());
    let region = input_region(&xt, eps, clip);
    let spec = Spec::margins(labels, net.num_outputs(), &dev()).unwrap();
    tightness(net, &region, &xt, &spec, &m.relaxation()).unwrap()
}

fn assert_near(what: &str, got: Vec<f32>, want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5, "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn one_neuron_by_hand() {
    let net = net_from(1, 1, 2, &[1.0], &[0.5], &[1.0, 0.0], &[0.0, 0.0]);
    for m in METHODS {
        // Two samples at x = 0: label 0 (row f_0 - f_1) and label 1 (row f_1 - f_0).
        let t = run(&net, &[0.0, 0.0], &[0, 1], 1.0, None, m);
        let (p0, d0) = if m == Method::Deepz { (-0.375, 0.375) } else { (-0.5, 0.5) };
        assert_near(&format!("{m} p*"), to_vec(t.lower.clone()), &[p0, -1.5]);
        assert_near(&format!("{m} value at x'"), to_vec(t.relaxed_value.clone()), &[0.0, -1.5]);
        assert_near(&format!("{m} d"), to_vec(t.d.clone()), &[d0, 0.0]);
        assert_near(&format!("{m} r"), to_vec(t.r.clone()), &[0.5, 0.0]);
        assert_near(&format!("{m} x'"), to_vec(t.point.clone()), &[-1.0, 1.0]);
        assert_near(&format!("{m} upper line"), to_vec(t.upper_line[1].clone().unwrap()), &[0.0, 1.0]);
        assert_near(&format!("{m} unstable"), to_vec(t.unstable.clone()), &[1.0, 1.0]);
        // The relaxation's lower bound itself.
        let xt = from_vec(vec![0.0, 0.0], [2, 1, 1, 1], &dev());
        let lb = lower_bound(&net, &input_region(&xt, 1.0, None), &Spec::margins(&[0, 1], 2, &dev()).unwrap(), &m.relaxation()).unwrap();
        assert_eq!(to_vec(lb), to_vec(t.lower.clone()), "{m}: p* is lower_bound's");
    }
}

#[test]
fn two_neurons_by_hand_and_the_table() {
    let net = net_from(2, 2, 2, &[1.0, 1.0, 1.0, -1.0], &[1.0, 0.0], &[1.0, 1.0, 1.0, -1.0], &[0.0, 0.0]);
    for m in METHODS {
        let t = run(&net, &[0.0; 4], &[0, 1], 1.0, None, m);
        let deepz = m == Method::Deepz;
        let (p0, d0, r0) = if deepz { (-2.0, 2.0, 1.5) } else { (0.0, 0.0, 0.5) };
        assert_near(&format!("{m} p*"), to_vec(t.lower.clone()), &[p0, -4.0]);
        assert_near(&format!("{m} d"), to_vec(t.d.clone()), &[d0, 0.0]);
        assert_near(&format!("{m} r"), to_vec(t.r.clone()), &[r0, 0.5]);
        let x0: [f32; 2] = if deepz { [-1.0, 1.0] } else { [0.0, 0.0] };
        assert_near(&format!("{m} x'"), to_vec(t.point.clone()), &[x0[0], x0[1], 1.0, -1.0]);
        // Only r2 of the label-1 row takes its upper line.
        assert_near(&format!("{m} upper line"), to_vec(t.upper_line[1].clone().unwrap()), &[0.0, 0.0, 0.0, 1.0]);

        // `ironbound bounds --regularizers`' table: [N, K] with column y = 0.
        let opts = BoundsOptions { batch_size: 1, ..BoundsOptions::new(1.0, CertMethod::Bound(m)) };
        let (d, r) = regularizers_table(&net, &[0.0; 4], &[0, 1], &opts, &dev(), &mut |_| Ok(())).unwrap();
        assert_near(&format!("{m} reg_d"), d, &[0.0, d0, 0.0, 0.0]);
        assert_near(&format!("{m} reg_r"), r, &[0.0, r0, 0.5, 0.0]);
    }
    for bad in [Method::Ibp, Method::Hbox, Method::CapIbp, Method::AlphaCrown, Method::OneStep] {
        assert!(regularizers::check_method(bad).is_err(), "{bad}");
        let opts = BoundsOptions::new(1.0, CertMethod::Bound(bad));
        let err = regularizers_table(&net, &[0.0; 2], &[0], &opts, &dev(), &mut |_| Ok(())).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("deepz, crown or crown-ibp"), "{err}");
    }
}

/// The reference's view of one row: the relaxed optimum read off an f64 back-substitution.
struct Reference {
    p: f64,
    /// The relaxed network evaluated at (x', delta*): equals p when (x', delta*) is optimal.
    relaxed_p: f64,
    point: Vec<f64>,
    d: f64,
    r: f64,
}

fn reference(dn: &Dense, x: &[f64], lo: &[f64], hi: &[f64], pre: &[Option<Bounds>], rule: Rule, c: &[f64]) -> Reference {
    let layers = &dn.layers;
    let mut a = c.to_vec();
    let mut cst = 0.0;
    let mut upper: Vec<Vec<bool>> = vec![Vec::new(); layers.len()];
    for i in (0..layers.len()).rev() {
        match &layers[i] {
            Layer::Affine { w, b, n_in, n_out } => {
                cst += (0..*n_out).map(|o| a[o] * b[o]).sum::<f64>();
                a = (0..*n_in).map(|j| (0..*n_out).map(|o| a[o] * w[o * n_in + j]).sum()).collect();
            }
            Layer::Relu => {
                let (l, u) = pre[i].as_ref().unwrap();
                upper[i] = vec![false; a.len()];
                for j in 0..a.len() {
                    let (ls, us, ui) = relu_line(l[j], u[j], rule);
                    if a[j] >= 0.0 {
                        a[j] *= ls;
                    } else {
                        cst += a[j] * ui;
                        a[j] *= us;
                        upper[i][j] = l[j] < 0.0 && u[j] > 0.0;
                    }
                }
            }
        }
    }
    let point: Vec<f64> = (0..a.len()).map(|j| if a[j] > 0.0 { lo[j] } else if a[j] < 0.0 { hi[j] } else { x[j] }).collect();
    let p = cst + a.iter().zip(&point).map(|(a, z)| a * z).sum::<f64>();
    // The real network at x' (keeping its pre-activations) and the relaxed one at (x', delta*).
    let (mut real, mut relaxed) = (point.clone(), point.clone());
    let (mut dist, mut count) = (0.0, 0usize);
    for (i, layer) in layers.iter().enumerate() {
        match layer {
            Layer::Affine { w, b, n_in, n_out } => {
                let apply = |v: &[f64]| -> Vec<f64> { (0..*n_out).map(|o| b[o] + (0..*n_in).map(|j| w[o * n_in + j] * v[j]).sum::<f64>()).collect() };
                real = apply(&real);
                relaxed = apply(&relaxed);
            }
            Layer::Relu => {
                let (l, u) = pre[i].as_ref().unwrap();
                for j in 0..real.len() {
                    let (ls, us, ui) = relu_line(l[j], u[j], rule);
                    if l[j] < 0.0 && u[j] > 0.0 {
                        count += 1;
                        dist += if upper[i][j] { (real[j] - l[j]).abs().min((real[j] - u[j]).abs()) } else { real[j].abs() };
                    }
                    relaxed[j] = if upper[i][j] { us * relaxed[j] + ui } else { ls * relaxed[j] };
                    real[j] = real[j].max(0.0);
                }
            }
        }
    }
    let dot = |v: &[f64]| c.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
    Reference { p, relaxed_p: dot(&relaxed), point, d: dot(&real) - p, r: dist / count.max(1) as f64 }
}

/// `min c . x_L` over the relaxed network as an LP (input box, every unstable ReLU between its
/// lower and upper line, pre-activations free), solved by HiGHS.
fn lp_minimum(dn: &Dense, lo: &[f64], hi: &[f64], pre: &[Option<Bounds>], rule: Rule, c: &[f64]) -> f64 {
    const FREE: f64 = 1e4;
    let mut lp = Program::new().unwrap();
    let mut cols: Vec<usize> = (0..lo.len()).map(|j| lp.add_col(lo[j], hi[j]).unwrap()).collect();
    for (i, layer) in dn.layers.iter().enumerate() {
        match layer {
            Layer::Affine { w, b, n_in, n_out } => {
                let next: Vec<usize> = (0..*n_out).map(|_| lp.add_col(-FREE, FREE).unwrap()).collect();
                for o in 0..*n_out {
                    let mut terms = vec![(next[o], 1.0)];
                    terms.extend((0..*n_in).map(|j| (cols[j], -w[o * n_in + j])));
                    lp.add_row(terms, b[o], b[o]).unwrap();
                }
                cols = next;
            }
            Layer::Relu => {
                let (l, u) = pre[i].as_ref().unwrap();
                let next: Vec<usize> = (0..cols.len()).map(|_| lp.add_col(-FREE, FREE).unwrap()).collect();
                for j in 0..cols.len() {
                    let (ls, us, ui) = relu_line(l[j], u[j], rule);
                    lp.add_row(vec![(next[j], 1.0), (cols[j], -ls)], 0.0, f64::INFINITY).unwrap();
                    lp.add_row(vec![(next[j], 1.0), (cols[j], -us)], f64::NEG_INFINITY, ui).unwrap();
                }
                cols = next;
            }
        }
    }
    let objective: Vec<(usize, f64)> = cols.iter().zip(c).map(|(&j, &v)| (j, v)).collect();
    let sol = lp.solve_lp(&objective, 0.0, None).unwrap();
    assert!(sol.optimal, "HiGHS found no optimum");
    sol.objective
}

fn rule_and_ibp(m: Method) -> (Rule, Option<Rule>) {
    match m {
        Method::Deepz => (Rule::Parallel, Some(Rule::Parallel)),
        Method::Crown => (Rule::Adaptive, Some(Rule::Adaptive)),
        Method::CrownIbp => (Rule::Adaptive, None),
        _ => unreachable!(),
    }
}

#[test]
fn random_networks_match_the_f64_and_lp_references() {
    let mut lp_checked = 0;
    for (seed, widths) in [(1u64, vec![4, 7, 6, 3]), (2, vec![5, 8, 8, 6, 4]), (3, vec![3, 10, 5])] {
        let net = mlp(seed, &widths);
        let dn = dense(&net);
        let f = widths[0];
        let k = *widths.last().unwrap();
        let n = 4;
        let (_, x) = random_inputs(&net, n, seed + 10, 0.0, 1.0);
        let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
        for (eps, clip) in [(0.3, Some((0.0, 1.0))), (0.5, None)] {
            for m in METHODS {
                let t = run(&net, &x, &labels, eps, clip, m);
                let (p, d, r, pt) = (rows2(t.lower.clone()), rows2(t.d.clone()), rows2(t.r.clone()), to_vec(t.point.clone()));
                let (rule, inter) = rule_and_ibp(m);
                for i in 0..n {
                    let (lo, hi) = box_of(&x, f, i, eps, clip);
                    let xi: Vec<f64> = x[i * f..(i + 1) * f].iter().map(|&v| v as f64).collect();
                    let pre = common::intermediate(&dn, &lo, &hi, inter);
                    for (row, c) in margin_rows(labels[i], k).iter().enumerate() {
                        let want = reference(&dn, &xi, &lo, &hi, &pre, rule, c);
                        let what = format!("{m} net {seed} eps {eps} sample {i} row {row}");
                        assert!(close(want.relaxed_p, want.p, 1e-9), "{what}: the reference's (x', delta*) is not optimal");
                        assert!(close(p[i][row] as f64, want.p, 1e-4), "{what}: p* {} vs {}", p[i][row], want.p);
                        assert!(close(d[i][row] as f64, want.d, 1e-3), "{what}: d {} vs {}", d[i][row], want.d);
                        assert!(close(r[i][row] as f64, want.r, 1e-3), "{what}: r {} vs {}", r[i][row], want.r);
                        let got = &pt[(i * (k - 1) + row) * f..(i * (k - 1) + row + 1) * f];
                        for j in 0..f {
                            assert!(got[j] as f64 >= lo[j] - 1e-6 && got[j] as f64 <= hi[j] + 1e-6, "{what}: x' leaves the region");
                            assert!(close(got[j] as f64, want.point[j], 1e-6), "{what}: x'[{j}] {} vs {}", got[j], want.point[j]);
                        }
                        if i < 2 {
                            let lp = lp_minimum(&dn, &lo, &hi, &pre, rule, c);
                            assert!(close(lp, want.p, 1e-6), "{what}: LP minimum {lp} vs {}", want.p);
                            lp_checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(lp_checked > 50);
}

#[test]
fn d_and_r_are_nonnegative_on_convnets_and_the_relaxed_value_is_the_networks() {
    let mut rng = SplitMix64::new(5);
    for (seed, net) in [(1u64, convnet(1)), (2, normalized_convnet(2)), (3, rect_convnet(3)), (4, stacked_affine(4, true))] {
        let [c, h, w] = net.input_shape();
        let f = c * h * w;
        let k = net.num_outputs();
        let n = 5;
        let (_, x) = random_inputs(&net, n, seed, 0.0, 1.0);
        let labels: Vec<usize> = (0..n).map(|_| (rng.uniform() * k as f64) as usize % k).collect();
        for m in METHODS {
            let t = run(&net, &x, &labels, 0.1, Some((0.0, 1.0)), m);
            let (d, r, p, v) = (to_vec(t.d.clone()), to_vec(t.r.clone()), to_vec(t.lower.clone()), to_vec(t.relaxed_value.clone()));
            for (j, (&dj, &pj)) in d.iter().zip(&p).enumerate() {
                assert!(dj >= -1e-5 * (1.0 + pj.abs()), "{m} net {seed}: d = {dj} < 0 at {j}");
                assert!(r[j] >= 0.0 && r[j].is_finite(), "{m} net {seed}: r = {}", r[j]);
                // Proposition 1: r = 0 makes the relaxed optimum the real network's.
                if r[j] == 0.0 {
                    assert!(dj.abs() <= 1e-5 * (1.0 + pj.abs()), "{m} net {seed}: r = 0 but d = {dj}");
                }
            }
            // The relaxed value is the network's margin at x', by an independent forward pass.
            let pts: Vec<Vec<f32>> = to_vec(t.point.clone()).chunks(f).map(|p| p.to_vec()).collect();
            let logits = forward_points(&net, &pts);
            for (row_idx, out) in logits.iter().enumerate() {
                let (i, row) = (row_idx / (k - 1), row_idx % (k - 1));
                let j = (0..k).filter(|&j| j != labels[i]).nth(row).unwrap();
                let margin = out[labels[i]] - out[j];
                assert!((margin - v[row_idx]).abs() <= 1e-4 * (1.0 + margin.abs()), "{m} net {seed}: {margin} vs {}", v[row_idx]);
                let (lo, hi) = box_of(&x, f, i, 0.1, Some((0.0, 1.0)));
                assert!(pts[row_idx].iter().enumerate().all(|(q, z)| (*z as f64) >= lo[q] - 1e-6 && (*z as f64) <= hi[q] + 1e-6));
            }
        }
    }
}

#[test]
fn without_unstable_relus_the_relaxation_is_exact() {
    for seed in 0..4u64 {
        let net = mlp(seed, &[6, 12, 8, 5]);
        let (_, x) = random_inputs(&net, 6, seed + 3, 0.0, 1.0);
        let labels = [0, 1, 2, 3, 4, 0];
        for m in METHODS {
            let t = run(&net, &x, &labels, 1e-5, None, m);
            assert!(to_vec(t.unstable.clone()).iter().all(|&u| u == 0.0), "{m}: eps 1e-5 leaves an unstable ReLU; pick another seed");
            for (&d, &p) in to_vec(t.d.clone()).iter().zip(&to_vec(t.lower.clone())) {
                assert!(d.abs() <= 1e-5 * (1.0 + p.abs()), "{m}: d = {d}");
            }
            assert!(to_vec(t.r.clone()).iter().all(|&r| r == 0.0), "{m}: r != 0");
        }
    }
}

/// `sum d + sum r` of a batch on `net` (tracked or plain).
fn objective(net: &Network, x: &Tensor<4>, labels: &[usize], m: Method) -> Tensor<1> {
    let region = input_region(x, 0.1, Some((0.0, 1.0)));
    let spec = Spec::margins(labels, net.num_outputs(), &x.device()).unwrap();
    let t = tightness(net, &region, x, &spec, &m.relaxation()).unwrap();
    t.d.sum() + t.r.sum()
}

#[test]
fn gradients_match_finite_differences() {
    let net = mlp(7, &[5, 9, 7, 4]);
    let (_, xv) = random_inputs(&net, 3, 8, 0.0, 1.0);
    let labels = [0, 2, 3];
    let mut rng = SplitMix64::new(11);
    let direction: Vec<(String, Vec<f32>)> = net.named_params().into_iter().map(|(name, p)| (name, p.to_vec().iter().map(|_| if rng.uniform() < 0.5 { -1.0 } else { 1.0 }).collect())).collect();
    let shifted = |s: f32| {
        let mut i = 0;
        net.map_params(&mut |_, p| {
            let dir = &direction[i].1;
            i += 1;
            assert_eq!(p.dims().iter().product::<usize>(), dir.len(), "map_params and named_params agree on the order");
            let v: Vec<f32> = p.to_vec().iter().zip(dir).map(|(a, b)| a + s * b).collect();
            match p.dims()[..] {
                [a] => Param::D1(from_vec(v, [a], &dev())),
                [a, b] => Param::D2(from_vec(v, [a, b], &dev())),
                [a, b, c, d] => Param::D4(from_vec(v, [a, b, c, d], &dev())),
                _ => unreachable!(),
            }
        })
    };
    for m in METHODS {
        let tracked = net.map_params(&mut |_, p| p.require_grad());
        let x = from_vec(xv.clone(), [3, 5, 1, 1], &dev());
        let loss = objective(&tracked, &x, &labels, m);
        let grads = loss.backward();
        let mut analytic = 0.0f64;
        let mut nonzero = 0;
        for ((_, p), (_, dir)) in tracked.named_params().iter().zip(&direction) {
            let g = p.grad(&grads).map(|g| g.to_vec()).unwrap_or_default();
            nonzero += g.iter().filter(|v| **v != 0.0).count();
            analytic += g.iter().zip(dir).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>();
        }
        assert!(nonzero > 0, "{m}: no gradient reached the weights");
        // d and r jump where a selection changes (a coefficient's sign, a neuron's stability),
        // so a difference quotient may straddle a jump on one side: one side must agree.
        let x = from_vec(xv.clone(), [3, 5, 1, 1], &dev());
        let base = objective(&net, &x, &labels, m).into_scalar::<f32>() as f64;
        let mut quotients = Vec::new();
        for h in [1e-4f32, 3e-5] {
            let plus = objective(&shifted(h), &x, &labels, m).into_scalar::<f32>() as f64;
            let minus = objective(&shifted(-h), &x, &labels, m).into_scalar::<f32>() as f64;
            quotients.extend([(plus - base) / h as f64, (base - minus) / h as f64]);
        }
        assert!(
            quotients.iter().any(|q| (q - analytic).abs() <= 1e-2 * (1.0 + analytic.abs())),
            "{m}: difference quotients {quotients:?} vs gradient {analytic}"
        );
    }
}

#[test]
fn the_relaxation_is_checked() {
    let net = mlp(1, &[3, 4, 2]);
    let x = from_vec(vec![0.5; 3], [1, 3, 1, 1], &dev());
    let region = input_region(&x, 0.1, None);
    let spec = Spec::margins(&[0], 2, &dev()).unwrap();
    for m in [Method::Ibp, Method::Hbox, Method::AlphaCrown, Method::RandomSlope] {
        assert!(tightness(&net, &region, &x, &spec, &m.relaxation()).is_err(), "{m}");
    }
    // Intermediate bounds found otherwise (here: the CROWN ones) with DeepZ lines still work.
    let inter = ironbound::bounds::intermediate(&net, &region, &Method::Crown.relaxation()).unwrap();
    let t = regularizers::tightness_on(&net, &inter.bounds, &x, &spec, ironbound::net::ReluLower::Parallel).unwrap();
    assert!(to_vec(t.d).iter().all(|d| d.is_finite() && *d >= -1e-6));
}

#[test]
fn projected_deepz_bounds_give_estimates_of_d_and_r() {
    // DeepZ training with Cauchy random projections: d and r from the exact final pass on the
    // estimated ReLU input bounds approach the exact ones as the projections grow.
    use ironbound::bounds::zonotope::{propagate_projected, Projections};
    let net = mlp(4, &[20, 16, 12, 5]);
    let (xt, x) = random_inputs(&net, 6, 2, 0.0, 1.0);
    let labels = [0, 1, 2, 3, 4, 0];
    let exact = run(&net, &x, &labels, 0.05, Some((0.0, 1.0)), Method::Deepz);
    let region = input_region(&xt, 0.05, Some((0.0, 1.0)));
    let spec = Spec::margins(&labels, 5, &dev()).unwrap();
    let (_, pre) = propagate_projected(&net, &region, ironbound::net::ReluLower::Parallel, Projections { count: 4001, seed: 3 }).unwrap();
    let est = regularizers::tightness_on(&net, &pre, &xt, &spec, ironbound::net::ReluLower::Parallel).unwrap();
    let mean = |t: &Tensor<2>| to_vec(t.clone()).iter().map(|v| *v as f64).sum::<f64>() / 30.0;
    for (what, e, x) in [("p*", &est.lower, &exact.lower), ("d", &est.d, &exact.d), ("r", &est.r, &exact.r)] {
        let (e, x) = (mean(e), mean(x));
        assert!((e - x).abs() <= 0.1 * x.abs() + 1e-3, "{what}: estimated {e}, exact {x}");
    }
    assert!(mean(&exact.r) > 0.0, "eps 0.05 leaves unstable ReLUs");
    // Not the exact values themselves: a few projections give visibly other bounds.
    let (_, few) = propagate_projected(&net, &region, ironbound::net::ReluLower::Parallel, Projections { count: 3, seed: 3 }).unwrap();
    let rough = regularizers::tightness_on(&net, &few, &xt, &spec, ironbound::net::ReluLower::Parallel).unwrap();
    assert_ne!(to_vec(rough.lower), to_vec(exact.lower.clone()));
}
