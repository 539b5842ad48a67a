//! `verify` answers about the real-valued network the float32 weights define: a point whose
//! float32 forward pass violates the property but whose real outputs do not is no
//! counterexample (`sat` is validated in real arithmetic), and such a property is proved.

mod common;

use common::net_from;
use ironbound::io::vnnlib::parse;
use ironbound::verify::property::{verify, Answer, VerifyConfig};
use std::time::Duration;

/// y = relu(x + 4096) - 4096 = x for x > -4096, which float32 computes through 4096 (spacing
/// 2^-11 there): for x near 1e-4 it returns 0, while the real output is x.
fn through_4096() -> ironbound::net::Network {
    net_from(1, 1, 1, &[1.0], &[4096.0], &[1.0], &[-4096.0])
}

fn property(lo: f64, hi: f64, y_at_most: f64) -> ironbound::io::vnnlib::Property {
    let text = format!("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 {lo}))\n(assert (<= X_0 {hi}))\n(assert (<= Y_0 {y_at_most}))\n");
    parse(&text).expect("property")
}

fn answer(lo: f64, hi: f64, y_at_most: f64) -> (Answer, Option<Vec<f64>>) {
    let net = through_4096();
    // The float32 forward pass really is wrong here (what the falsifier sees).
    let x = ironbound::tensor::from_vec(vec![1e-4], [1, 1, 1, 1], &common::dev());
    assert_eq!(ironbound::tensor::to_vec(net.forward(x)), vec![0.0], "float32 rounds the output to 0");
    let v = verify(&net, &property(lo, hi, y_at_most), &VerifyConfig { timeout: Duration::from_secs(20), seed: 0 }).expect("verify");
    (v.result, v.counterexample.map(|c| c.x))
}

#[test]
fn a_float32_rounding_is_no_counterexample_and_the_real_property_is_proved() {
    // Real outputs on the box are >= 9e-5 > 5e-5: no counterexample exists, although float32
    // gives 0 <= 5e-5 at every point of the box.
    let (result, cex) = answer(9e-5, 1.1e-4, 5e-5);
    assert_eq!(result, Answer::Unsat, "counterexample {cex:?}");
}

#[test]
fn real_counterexamples_are_still_found() {
    // Real outputs reach below 2e-4 on the box [1e-4, 3e-4]: sat, at a point whose real output
    // is below the bound.
    let (result, cex) = answer(1e-4, 3e-4, 2e-4);
    assert_eq!(result, Answer::Sat);
    let x = cex.expect("a counterexample")[0];
    assert!((1e-4..=2e-4).contains(&x), "x = {x}: its real output x is not <= 2e-4");
}

#[test]
fn constraints_hold_everywhere_only_with_a_margin_above_rounding() {
    use ironbound::io::vnnlib::Constraint;
    // Y_0 - Y_1 <= 0 on boxes of outputs.
    let c = Constraint { coef: vec![1.0, -1.0], rhs: 0.0 };
    assert!(c.holds_everywhere(&[0.0, 1.0], &[0.5, 2.0]), "worst corner 0.5 - 1 < 0");
    assert!(!c.holds_everywhere(&[0.0, 1.0], &[1.0, 2.0]), "worst corner 1 - 1 = 0: no margin for rounding");
    assert!(!c.holds_everywhere(&[0.0, 1.0], &[1.0 + 1e-15, 2.0]), "violated at a corner");
    // A right-hand side that is a decimal: 0.1 <= 0.1 is no margin, 0.1 - 1e-12 is one.
    let c = Constraint { coef: vec![1.0], rhs: 0.1 };
    assert!(!c.holds_everywhere(&[0.1], &[0.1]));
    assert!(c.holds_everywhere(&[0.1 - 1e-12], &[0.1 - 1e-12]));
    assert!(!c.holds_everywhere(&[f64::NAN], &[0.0]), "a NaN holds nothing");
}
