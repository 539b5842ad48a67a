//! Identities and orderings between relaxations that are theorems (engine against engine).

mod common;

use common::*;
use ironbound::bounds::{input_region, intermediate, lower_bound, mixed_lower_bound, output_bounds_with_labels, Engine, Interval, LowerLine, Method, Relaxation, Spec};
use ironbound::net::{Network, Op, ReluLower};
use ironbound::tensor::{to_vec, Tensor};

const TOL: f64 = 1e-4;

fn fixed(intermediate: Engine, final_pass: Engine, lower: ReluLower) -> Relaxation {
    Relaxation { intermediate, final_pass, intermediate_lower: lower, final_lower: LowerLine::Fixed(lower), sound: false }
}

/// The networks and regions every identity is checked on: (name, net, x, eps).
fn cases() -> Vec<(&'static str, Network, Tensor<4>, f64)> {
    let mut out = Vec::new();
    for (name, net, eps) in [
        ("mlp-6-8-8-3", mlp(21, &[6, 8, 8, 3]), 0.15),
        ("mlp-5-7-7-7-4", mlp(22, &[5, 7, 7, 7, 4]), 0.2),
        ("mlp-wide", mlp(23, &[4, 16, 16, 5]), 0.3),
        ("convnet", convnet(24), 0.06),
        ("convnet-remainder", convnet_remainder(25), 0.1),
        ("normalized", normalized_convnet(26), 0.1),
    ] {
        let (x, _) = random_inputs(&net, 3, 77, 0.0, 1.0);
        out.push((name, net, x, eps));
    }
    out
}

/// (margin lower bounds, output lower, output upper) as rows.
fn all_bounds(net: &Network, region: &Interval, r: &Relaxation) -> [Vec<Vec<f32>>; 3] {
    let n = region.lo.dims()[0];
    let k = net.num_outputs();
    let labels: Vec<usize> = (0..n).map(|i| (i + 1) % k).collect();
    let spec = Spec::margins(&labels, k, &dev()).unwrap();
    let lb = lower_bound(net, region, &spec, r).unwrap();
    let (lo, up) = output_bounds_with_labels(net, region, r, &labels).unwrap();
    [rows2(lb), rows2(lo), rows2(up)]
}

fn as_f64(rows: &[Vec<f32>]) -> Vec<Vec<f64>> {
    rows.iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect()
}

fn assert_same(what: &str, a: &[Vec<Vec<f32>>; 3], b: &[Vec<Vec<f32>>; 3]) {
    for (part, (x, y)) in ["margins", "lower", "upper"].iter().zip(a.iter().zip(b)) {
        assert_close_rows(&format!("{what} {part}"), x, &as_f64(y), TOL);
    }
}

/// `a >= b - tol` entrywise for lower bounds (margins, lower) and `a <= b + tol` for upper.
/// Returns the largest improvement of `a` over `b`.
fn assert_tighter(what: &str, a: &[Vec<Vec<f32>>; 3], b: &[Vec<Vec<f32>>; 3], tol: f32) -> f32 {
    let mut gain = 0.0f32;
    for (part, sign) in [(0, 1.0f32), (1, 1.0), (2, -1.0)] {
        for (ra, rb) in a[part].iter().zip(&b[part]) {
            for (x, y) in ra.iter().zip(rb) {
                let d = sign * (x - y);
                assert!(d >= -tol * (1.0 + y.abs()), "{what} part {part}: {x} is looser than {y}\n{ra:?}\n{rb:?}");
                gain = gain.max(d);
            }
        }
    }
    gain
}

#[test]
fn deepz_by_backsubstitution_equals_deepz_by_zonotopes() {
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let backsub = all_bounds(&net, &region, &Method::Deepz.relaxation());
        let zono = all_bounds(&net, &region, &fixed(Engine::Zonotope, Engine::Zonotope, ReluLower::Parallel));
        assert_same(name, &backsub, &zono);
    }
}

#[test]
fn hbox_by_zonotopes_equals_hbox_by_backsubstitution() {
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let zono = all_bounds(&net, &region, &fixed(Engine::Zonotope, Engine::Zonotope, ReluLower::Box));
        let backsub = all_bounds(&net, &region, &fixed(Engine::BackSubstitution, Engine::BackSubstitution, ReluLower::Box));
        assert_same(name, &zono, &backsub);
    }
}

#[test]
fn alpha_crown_is_never_looser_than_crown() {
    let mut best_gain = 0.0f32;
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let crown = all_bounds(&net, &region, &Method::Crown.relaxation());
        let alpha = all_bounds(&net, &region, &Method::AlphaCrown.relaxation());
        best_gain = best_gain.max(assert_tighter(&format!("{name} alpha-crown vs crown"), &alpha, &crown, 1e-6));
    }
    // the optimisation must actually do something somewhere
    assert!(best_gain > 1e-3, "alpha-crown never improved on crown (best gain {best_gain})");
}

#[test]
fn alpha_crown_keeps_the_best_bound_over_iterations() {
    // Zero Adam steps is CROWN; the optimiser is deterministic and keeps the best bound seen,
    // so more steps never give a looser bound.
    let alpha = |iterations| Relaxation { final_lower: LowerLine::Optimised { iterations, learning_rate: 0.1 }, ..Method::AlphaCrown.relaxation() };
    for (name, net, x, eps) in cases().into_iter().take(4) {
        let region = input_region(&x, eps, None);
        let crown = all_bounds(&net, &region, &Method::Crown.relaxation());
        assert_same(&format!("{name} alpha-0 vs crown"), &all_bounds(&net, &region, &alpha(0)), &crown);
        let a20 = all_bounds(&net, &region, &alpha(20));
        let a40 = all_bounds(&net, &region, &alpha(40));
        assert_tighter(&format!("{name} alpha-40 vs alpha-20"), &a40, &a20, 1e-6);
    }
}

#[test]
fn hbox_is_never_looser_than_ibp() {
    // Paradox paper, Appendix C: hBox bounds are contained in Box bounds.
    let mut best_gain = 0.0f32;
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let ibp = all_bounds(&net, &region, &Method::Ibp.relaxation());
        let hbox = all_bounds(&net, &region, &Method::Hbox.relaxation());
        best_gain = best_gain.max(assert_tighter(&format!("{name} hbox vs ibp"), &hbox, &ibp, 1e-5));
        // and so are its intermediate bounds
        let hi = intermediate(&net, &region, &Method::Hbox.relaxation()).unwrap();
        let ii = intermediate(&net, &region, &Method::Ibp.relaxation()).unwrap();
        for (i, node) in net.nodes().iter().enumerate() {
            if matches!(node.op, Op::Relu) {
                let v = node.inputs[0];
                let (h, b) = (hi.bounds[v].as_ref().unwrap(), ii.bounds[v].as_ref().unwrap());
                for (a, c) in to_vec(h.lo.clone()).iter().zip(to_vec(b.lo.clone())) {
                    assert!(*a >= c - 1e-5 * (1.0 + c.abs()), "{name} relu {i}: hbox lower {a} < ibp {c}");
                }
                for (a, c) in to_vec(h.hi.clone()).iter().zip(to_vec(b.hi.clone())) {
                    assert!(*a <= c + 1e-5 * (1.0 + c.abs()), "{name} relu {i}: hbox upper {a} > ibp {c}");
                }
            }
        }
    }
    assert!(best_gain > 1e-3, "hbox never improved on ibp (best gain {best_gain})");
}

#[test]
fn folded_margins_are_never_looser_than_output_differences() {
    // For a fixed relaxation the margin row is bounded over one relaxed set, so it is at least
    // lower[y] - upper[j] (alpha-CROWN optimises each row separately and is excluded).
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let n = x.dims()[0];
        let k = net.num_outputs();
        for m in Method::ALL.into_iter().filter(|m| *m != Method::AlphaCrown) {
            let [mg, lo, up] = all_bounds(&net, &region, &m.relaxation());
            for s in 0..n {
                let y = (s + 1) % k;
                for (r, j) in (0..k).filter(|&j| j != y).enumerate() {
                    let diff = lo[s][y] - up[s][j];
                    assert!(mg[s][r] >= diff - 1e-5 * (1.0 + diff.abs()), "{name} {m}: margin {} < {diff}", mg[s][r]);
                }
            }
        }
    }
}

#[test]
fn first_layer_bounds_are_exact_in_every_method() {
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let d = dense(&net);
        let (xlo, xhi) = (to_vec(region.lo.clone()), to_vec(region.hi.clone()));
        let f = d.n_in;
        // the first ReLU's input in the dense list and in the graph
        let first_relu = d.layers.iter().position(|l| matches!(l, Layer::Relu)).unwrap();
        let v = net.nodes().iter().find(|n| matches!(n.op, Op::Relu)).unwrap().inputs[0];
        for m in Method::ALL {
            let inter = intermediate(&net, &region, &m.relaxation()).unwrap();
            let b = inter.bounds[v].as_ref().unwrap_or_else(|| panic!("{name} {m}: no bounds for the first ReLU"));
            let (lo, hi) = (rows_of(&b.lo), rows_of(&b.hi));
            for s in 0..x.dims()[0] {
                let bx: Vec<f64> = xlo[s * f..(s + 1) * f].iter().map(|&v| v as f64).collect();
                let by: Vec<f64> = xhi[s * f..(s + 1) * f].iter().map(|&v| v as f64).collect();
                // interval arithmetic through the affine layers before the first ReLU is exact
                // (at most one dense layer, the rest elementwise)
                let (wl, wh) = &ibp_all(&d, &bx, &by)[first_relu];
                assert_close_rows(&format!("{name} {m} first-layer lower"), &lo[s..s + 1], &[wl.clone()], TOL);
                assert_close_rows(&format!("{name} {m} first-layer upper"), &hi[s..s + 1], &[wh.clone()], TOL);
            }
        }
    }
}

fn rows_of(t: &Tensor<4>) -> Vec<Vec<f32>> {
    let [n, c, h, w] = t.dims();
    rows2(t.clone().reshape([n, c * h * w]))
}

#[test]
fn crown_intermediate_bounds_match_reference() {
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, None);
        let d = dense(&net);
        let (xlo, xhi) = (to_vec(region.lo.clone()), to_vec(region.hi.clone()));
        let f = d.n_in;
        let relu_inputs: Vec<usize> = net.nodes().iter().filter(|n| matches!(n.op, Op::Relu)).map(|n| n.inputs[0]).collect();
        for (m, rule) in [(Method::Crown, Rule::Adaptive), (Method::Deepz, Rule::Parallel), (Method::Crown0, Rule::Zero)] {
            let inter = intermediate(&net, &region, &m.relaxation()).unwrap();
            for s in 0..x.dims()[0] {
                let bx: Vec<f64> = xlo[s * f..(s + 1) * f].iter().map(|&v| v as f64).collect();
                let by: Vec<f64> = xhi[s * f..(s + 1) * f].iter().map(|&v| v as f64).collect();
                let want: Vec<Bounds> = intermediate_ref(&d, &bx, &by, rule);
                assert_eq!(want.len(), relu_inputs.len());
                for (r, (v, (wl, wh))) in relu_inputs.iter().zip(want).enumerate() {
                    let b = inter.bounds[*v].as_ref().unwrap();
                    assert_close_rows(&format!("{name} {m} relu {r} lower"), &rows_of(&b.lo)[s..s + 1], &[wl], TOL);
                    assert_close_rows(&format!("{name} {m} relu {r} upper"), &rows_of(&b.hi)[s..s + 1], &[wh], TOL);
                }
            }
        }
    }
}

fn intermediate_ref(d: &Dense, lo: &[f64], hi: &[f64], rule: Rule) -> Vec<Bounds> {
    common::intermediate(d, lo, hi, Some(rule)).into_iter().flatten().collect()
}

#[test]
fn one_hidden_layer_ibp_intermediates_change_nothing() {
    // With a single ReLU layer every intermediate bound is a first-layer bound, exact for IBP
    // too: CROWN-IBP equals CROWN and CAP-IBP equals DeepZ.
    for seed in [31, 32, 33] {
        let net = mlp(seed, &[6, 12, 4]);
        let (x, _) = random_inputs(&net, 3, seed, -1.0, 1.0);
        let region = input_region(&x, 0.3, None);
        for (a, b) in [(Method::CrownIbp, Method::Crown), (Method::CapIbp, Method::Deepz)] {
            assert_same(&format!("{a} vs {b}"), &all_bounds(&net, &region, &a.relaxation()), &all_bounds(&net, &region, &b.relaxation()));
        }
    }
}

#[test]
fn ibp_is_monotone_in_the_region() {
    // Interval arithmetic is inclusion-isotone: a larger box never gives tighter bounds.
    for (name, net, x, eps) in cases() {
        let small = all_bounds(&net, &input_region(&x, eps / 2.0, None), &Method::Ibp.relaxation());
        let large = all_bounds(&net, &input_region(&x, eps, None), &Method::Ibp.relaxation());
        let gain = assert_tighter(&format!("{name} ibp eps/2 vs eps"), &small, &large, 1e-6);
        assert!(gain > 0.0, "{name}: halving eps changed nothing");
    }
}

fn check_linear_network_exact(methods: &[Method]) {
    // No ReLU: every relaxation is exact, lower = W c - |W| r + b.
    let net = mlp(41, &[6, 5]);
    let (x, xv) = random_inputs(&net, 3, 42, -1.0, 1.0);
    let d = dense(&net);
    let region = input_region(&x, 0.2, None);
    for m in methods {
        let (lo, up) = output_bounds_with_labels(&net, &region, &m.relaxation(), &[0, 1, 2]).unwrap();
        for s in 0..3 {
            let (bl, bh) = box_of(&xv, 6, s, 0.2, None);
            let (wl, wh) = &ibp_all(&d, &bl, &bh)[1];
            assert_close_rows(&format!("{m} lower"), &rows2(lo.clone())[s..s + 1], &[wl.clone()], TOL);
            assert_close_rows(&format!("{m} upper"), &rows2(up.clone())[s..s + 1], &[wh.clone()], TOL);
        }
    }
}

#[test]
fn linear_networks_are_bounded_exactly() {
    let methods: Vec<Method> = Method::ALL.into_iter().filter(|m| *m != Method::AlphaCrown).collect();
    check_linear_network_exact(&methods);
}

#[test]
fn alpha_crown_bounds_a_linear_network_exactly() {
    check_linear_network_exact(&[Method::AlphaCrown]);
}

#[test]
fn mixed_bound_is_the_beta_combination_of_ibp_and_the_relaxation() {
    // CROWN-IBP training's (1 - beta) * IBP + beta * CROWN-IBP, with the intermediate bounds
    // shared, equals the two bounds computed apart; beta 0 and 1 give the pure bounds.
    for (name, net, x, eps) in cases() {
        let region = input_region(&x, eps, Some((0.0, 1.0)));
        let k = net.num_outputs();
        let labels: Vec<usize> = (0..x.dims()[0]).map(|i| (i + 2) % k).collect();
        let spec = Spec::margins(&labels, k, &dev()).unwrap();
        for method in [Method::CrownIbp, Method::CapIbp, Method::Crown] {
            let r = method.relaxation();
            let ibp = as_f64(&rows2(lower_bound(&net, &region, &spec, &Method::Ibp.relaxation()).unwrap()));
            let own = as_f64(&rows2(lower_bound(&net, &region, &spec, &r).unwrap()));
            for beta in [0.0, 0.3, 1.0] {
                let mixed = rows2(mixed_lower_bound(&net, &region, &spec, &r, beta).unwrap());
                let want: Vec<Vec<f64>> =
                    ibp.iter().zip(&own).map(|(a, b)| a.iter().zip(b).map(|(a, b)| (1.0 - beta) * a + beta * b).collect()).collect();
                assert_close_rows(&format!("{name} {method} beta {beta}"), &mixed, &want, TOL);
            }
        }
    }
}
