//! Hand-computed bounds of tiny networks.
//!
//! Network A: x in [-1, 1]^2 (center 0, eps 1), h = W1 x + b1 with W1 = [[1, 1], [1, -1]],
//! b1 = [1, 0], r = relu(h), out = W2 r with W2 = [[1, 1], [1, -1]], b2 = 0.
//!
//!   h1 = x1 + x2 + 1 in [-1, 3]: chord (3/4)(h1 + 1), slope 3/4, intercept 3/4; u > -l.
//!   h2 = x1 - x2     in [-2, 2]: chord (1/2)(h2 + 2), slope 1/2, intercept 1;  u = -l.
//!   out1 = r1 + r2, out2 = r1 - r2.
//!
//! IBP: r in [0,3] x [0,2], so out1 in [0, 5], out2 in [0 - 2, 3 - 0] = [-2, 3].
//! CROWN (lower slopes 1, 0):
//!   out1 >= h1 = x1 + x2 + 1 >= -1;  out1 <= (3/4)h1 + 3/4 + h2/2 + 1 = 1.25x1 + 0.25x2 + 2.5 <= 4
//!   out2 >= h1 - (h2/2 + 1) = 0.5x1 + 1.5x2 >= -2;  out2 <= (3/4)h1 + 3/4 - 0 <= 3
//! CROWN-0 (lower slopes 0, 0): out1 >= 0; out2 >= -(h2/2 + 1) >= -2; the upper bounds use
//!   the same lines as CROWN (r2's lower slope is 0 in both): 4 and 3.
//! DeepZ (lower slopes 3/4, 1/2):
//!   out1 >= (3/4)h1 + h2/2 = 1.25x1 + 0.25x2 + 0.75 >= -0.75;  out1 <= 4
//!   out2 >= (3/4)h1 - h2/2 - 1 = 0.25x1 + 1.25x2 - 0.25 >= -1.75
//!   out2 <= (3/4)h1 + 3/4 - h2/2 = 0.25x1 + 1.25x2 + 1.5 <= 3
//! hBox: both ReLUs unstable, so r is the box [0,3] x [0,2] and hBox = IBP.
//! CROWN-IBP = CROWN and CAP-IBP = DeepZ (the only intermediate bounds are exact).
//! alpha-CROWN: out1 >= a1 h1 + a2 h2 = (a1+a2)x1 + (a1-a2)x2 + a1 >= a1 - |a1+a2| - |a1-a2|,
//!   whose maximum over [0,1]^2 is 0 (a = 0); out2 >= a1 h1 - h2/2 - 1, minimum
//!   a1 - 1 - |a1 - 1/2| - |a1 + 1/2|, maximised at a1 = 1/2: -1.5 (CROWN's a1 = 1 gives -2).
//!   Upper bounds: -out1 = -r1 - r2 takes only upper lines (4); -out2 = -r1 + r2 >=
//!   -(3/4)h1 - 3/4 + a2 h2, whose minimum is -3 for every a2 in [0, 3/4] (3).
//! Margins, label 0: out1 - out2 = 2 r2, C W2 = [0, 2]. IBP folds C into W2: min over
//!   r in [0,3]x[0,2] of 2 r2 = 0 (whereas lower[0] - upper[1] = 0 - 3 = -3). CROWN: r2's
//!   coefficient 2 > 0 takes r2's lower line (slope 0): 0. CROWN-0, hBox, alpha: 0.
//!   DeepZ / CAP-IBP: 2 (h2/2) = x1 - x2 >= -2.
//! Label 1: out2 - out1 = -2 r2 takes r2's upper line: -2(h2/2 + 1) = -h2 - 2 >= -4 in every
//!   back-substitution method; IBP and hBox: -2 * 2 = -4.

mod common;

use common::{dev, net_from};
use ironbound::bounds::{input_region, intermediate, lower_bound, output_bounds, Interval, Method, Spec};
use ironbound::net::{relu, Network, ReluLower};
use ironbound::tensor::{from_vec, to_vec, Tensor};

const TOL: f32 = 1e-5;

fn net_a() -> (Network, Interval) {
    let net = net_from(2, 2, 2, &[1.0, 1.0, 1.0, -1.0], &[1.0, 0.0], &[1.0, 1.0, 1.0, -1.0], &[0.0, 0.0]);
    let x = from_vec(vec![0.0, 0.0], [1, 2, 1, 1], &dev());
    (net, input_region(&x, 1.0, None))
}

fn assert_vec(what: &str, got: Vec<f32>, want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= TOL, "{what}: got {got:?}, want {want:?}");
    }
}

fn bounds(m: Method) -> (Vec<f32>, Vec<f32>) {
    let (net, region) = net_a();
    let (lo, up) = output_bounds(&net, &region, &m.relaxation()).unwrap();
    (to_vec(lo), to_vec(up))
}

fn margin(m: Method, label: usize) -> f32 {
    let (net, region) = net_a();
    let spec = Spec::margins(&[label], 2, &dev()).unwrap();
    let lb = to_vec(lower_bound(&net, &region, &spec, &m.relaxation()).unwrap());
    assert_eq!(lb.len(), 1);
    lb[0]
}

#[test]
fn the_forward_pass_is_the_hand_network() {
    let (net, _) = net_a();
    let x = from_vec(vec![0.5, -0.25, -1.0, -1.0], [2, 2, 1, 1], &dev());
    // x = (0.5, -0.25): h = (1.25, 0.75), out = (2, 0.5); x = (-1, -1): h = (-1, 0), out = 0
    assert_vec("forward", to_vec(net.forward(x)), &[2.0, 0.5, 0.0, 0.0]);
}

#[test]
fn relu_lines_of_the_hidden_layer() {
    let l: Tensor<4> = from_vec(vec![-1.0, -2.0], [1, 2, 1, 1], &dev());
    let u: Tensor<4> = from_vec(vec![3.0, 2.0], [1, 2, 1, 1], &dev());
    for (lower, slopes) in [(ReluLower::Adaptive, [1.0, 0.0]), (ReluLower::Zero, [0.0, 0.0]), (ReluLower::Parallel, [0.75, 0.5])] {
        let lines = relu::lines(&l, &u, lower);
        assert_vec(&format!("{lower:?} lower slope"), to_vec(lines.lower_slope), &slopes);
        assert_vec(&format!("{lower:?} upper slope"), to_vec(lines.upper_slope), &[0.75, 0.5]);
        assert_vec(&format!("{lower:?} intercept"), to_vec(lines.upper_intercept), &[0.75, 1.0]);
    }
    let boxed = relu::lines(&l, &u, ReluLower::Box);
    assert_vec("box lower", to_vec(boxed.lower_slope), &[0.0, 0.0]);
    assert_vec("box upper slope", to_vec(boxed.upper_slope), &[0.0, 0.0]);
    assert_vec("box upper", to_vec(boxed.upper_intercept), &[3.0, 2.0]);
}

#[test]
fn hidden_bounds_are_exact_in_every_method() {
    let (net, region) = net_a();
    for m in Method::ALL {
        let inter = intermediate(&net, &region, &m.relaxation()).unwrap();
        let b = inter.bounds[1].as_ref().unwrap_or_else(|| panic!("{m}: no bounds for h"));
        assert_vec(&format!("{m} h lower"), to_vec(b.lo.clone()), &[-1.0, -2.0]);
        assert_vec(&format!("{m} h upper"), to_vec(b.hi.clone()), &[3.0, 2.0]);
    }
}

#[test]
fn ibp_output_bounds() {
    let (lo, up) = bounds(Method::Ibp);
    assert_vec("ibp lower", lo, &[0.0, -2.0]);
    assert_vec("ibp upper", up, &[5.0, 3.0]);
}

#[test]
fn hbox_equals_ibp_here() {
    let (lo, up) = bounds(Method::Hbox);
    assert_vec("hbox lower", lo, &[0.0, -2.0]);
    assert_vec("hbox upper", up, &[5.0, 3.0]);
}

#[test]
fn crown_and_crown_ibp_output_bounds() {
    for m in [Method::Crown, Method::CrownIbp] {
        let (lo, up) = bounds(m);
        assert_vec(&format!("{m} lower"), lo, &[-1.0, -2.0]);
        assert_vec(&format!("{m} upper"), up, &[4.0, 3.0]);
    }
}

#[test]
fn crown0_output_bounds() {
    let (lo, up) = bounds(Method::Crown0);
    assert_vec("crown-0 lower", lo, &[0.0, -2.0]);
    assert_vec("crown-0 upper", up, &[4.0, 3.0]);
}

#[test]
fn deepz_and_cap_ibp_output_bounds() {
    for m in [Method::Deepz, Method::CapIbp] {
        let (lo, up) = bounds(m);
        assert_vec(&format!("{m} lower"), lo, &[-0.75, -1.75]);
        assert_vec(&format!("{m} upper"), up, &[4.0, 3.0]);
    }
}

#[test]
fn alpha_crown_reaches_the_optimal_slopes() {
    let (lo, up) = bounds(Method::AlphaCrown);
    assert!(lo[0] >= -0.05 && lo[0] <= TOL, "alpha-crown out1 lower {} (optimum 0, crown -1)", lo[0]);
    assert!(lo[1] >= -1.55 && lo[1] <= -1.5 + TOL, "alpha-crown out2 lower {} (optimum -1.5, crown -2)", lo[1]);
    assert_vec("alpha-crown upper", up, &[4.0, 3.0]);
}

#[test]
fn margins_with_label_0_are_folded() {
    // out1 - out2 = 2 relu(h2) >= 0: folding beats lower[0] - upper[1] = -3
    let (lo, up) = bounds(Method::Ibp);
    assert!((lo[0] - up[1] - -3.0).abs() <= TOL);
    for (m, want) in [
        (Method::Ibp, 0.0),
        (Method::Hbox, 0.0),
        (Method::Crown, 0.0),
        (Method::Crown0, 0.0),
        (Method::CrownIbp, 0.0),
        (Method::AlphaCrown, 0.0),
        (Method::Deepz, -2.0),
        (Method::CapIbp, -2.0),
    ] {
        let got = margin(m, 0);
        assert!((got - want).abs() <= TOL, "{m}: margin f0 - f1 lower bound {got}, want {want}");
    }
}

#[test]
fn margins_with_label_1() {
    // out2 - out1 = -2 relu(h2) >= -4 for every method
    for m in Method::ALL {
        let got = margin(m, 1);
        assert!((got - -4.0).abs() <= TOL, "{m}: margin f1 - f0 lower bound {got}, want -4");
    }
}

/// Network B: x in [-1, 1], h = (x + 2, -x + 2, x + 0.5), out = r1 + r2 + r3 = 4 + relu(x + 0.5)
/// in [4, 5.5]. h1, h2 in [1, 3] are active, h3 in [-0.5, 1.5] is unstable (chord slope 3/4,
/// intercept 3/8, and u > -l so CROWN's lower slope is 1).
///   IBP: [1+1+0, 3+3+1.5] = [2, 7.5]. hBox: r1 + r2 = 4 exactly, r3 in [0, 1.5]: [4, 5.5].
///   CROWN: 4 + (x + 0.5) >= 3.5, upper 4 + (3/4)(x + 0.5) + 3/8 <= 5.5: [3.5, 5.5].
///   CROWN-0: [4, 5.5]. DeepZ: 4 + (3/4)(x + 0.5) >= 3.625: [3.625, 5.5].
///   CROWN-IBP/CAP-IBP equal CROWN/DeepZ; alpha-CROWN reaches the exact 4 (slope 0).
#[test]
fn correlated_active_neurons() {
    let net = net_from(1, 3, 1, &[1.0, -1.0, 1.0], &[2.0, 2.0, 0.5], &[1.0, 1.0, 1.0], &[0.0]);
    let region = input_region(&from_vec(vec![0.0], [1, 1, 1, 1], &dev()), 1.0, None);
    for (m, lo_want, hi_want) in [
        (Method::Ibp, 2.0, 7.5),
        (Method::Hbox, 4.0, 5.5),
        (Method::Crown, 3.5, 5.5),
        (Method::CrownIbp, 3.5, 5.5),
        (Method::Crown0, 4.0, 5.5),
        (Method::Deepz, 3.625, 5.5),
        (Method::CapIbp, 3.625, 5.5),
    ] {
        let (lo, up) = output_bounds(&net, &region, &m.relaxation()).unwrap();
        assert_vec(&format!("{m} bounds"), vec![to_vec(lo)[0], to_vec(up)[0]], &[lo_want, hi_want]);
    }
    let (lo, up) = output_bounds(&net, &region, &Method::AlphaCrown.relaxation()).unwrap();
    let (lo, up) = (to_vec(lo)[0], to_vec(up)[0]);
    assert!(lo >= 3.95 && lo <= 4.0 + TOL && (up - 5.5).abs() <= TOL, "alpha-crown [{lo}, {up}]");
}

#[test]
fn malformed_specs_are_errors() {
    let (net, region) = net_a();
    assert!(Spec::margins(&[2], 2, &dev()).is_err(), "label out of range");
    assert!(Spec::margins(&[0], 1, &dev()).is_err(), "one class");
    let wrong = Spec::new(from_vec(vec![1.0, 0.0, -1.0], [1, 1, 3], &dev()));
    for m in Method::ALL {
        assert!(lower_bound(&net, &region, &wrong, &m.relaxation()).is_err(), "{m}: 3 spec columns for 2 outputs");
    }
}
