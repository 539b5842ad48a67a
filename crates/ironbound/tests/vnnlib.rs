//! VNN-LIB property reader: exact structures for every construct, real-looking competition
//! files, every error message and counterexample checks (the property tests and the fuzz
//! harness are in `vnnlib_properties.rs`).

mod vnnlib_support;

use ironbound::io::vnnlib::{self, Case, Constraint, Property, MAX_DEPTH};
use vnnlib_support::{boxed, decls};
use std::fmt::Write as _;

fn ok(text: &str) -> Property {
    match vnnlib::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("parse failed: {e}\n--- text ---\n{}", text.chars().take(2000).collect::<String>()),
    }
}

fn err(text: &str) -> String {
    match vnnlib::parse(text) {
        Ok(p) => panic!("parsed without error: {p:?}\n--- text ---\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(text: &str, expected: &[&str]) {
    let message = err(text);
    for part in expected {
        assert!(message.contains(part), "error {message:?} does not contain {part:?}");
    }
    assert!(!message.contains('\n'), "error is not one line: {message:?}");
}

fn c(coef: &[f64], rhs: f64) -> Constraint {
    Constraint { coef: coef.to_vec(), rhs }
}

fn single(lower: &[f64], upper: &[f64], disjuncts: Vec<Vec<Constraint>>) -> Vec<Case> {
    vec![Case { lower: lower.to_vec(), upper: upper.to_vec(), disjuncts }]
}

// ---------------------------------------------------------------------------------------------
// Constructs

#[test]
fn box_and_output_comparisons() {
    let text = boxed(&[0.0, -1.0], &[1.0, 2.5], 3)
        + "(assert (<= Y_0 Y_1))\n(assert (>= Y_0 Y_2))\n(assert (<= Y_1 0.5))\n(assert (>= Y_2 -3))\n";
    let p = ok(&text);
    assert_eq!(p.num_inputs, 2);
    assert_eq!(p.num_outputs, 3);
    let conj = vec![c(&[1.0, -1.0, 0.0], 0.0), c(&[-1.0, 0.0, 1.0], 0.0), c(&[0.0, 1.0, 0.0], 0.5), c(&[0.0, 0.0, -1.0], 3.0)];
    assert_eq!(p.cases, single(&[0.0, -1.0], &[1.0, 2.5], vec![conj]));
}

#[test]
fn bounds_in_every_orientation_and_the_tightest_wins() {
    let text = decls(3, 1)
        + "(assert (<= 0.1 X_0)) (assert (>= 0.9 X_0))\n\
           (assert (<= X_1 5)) (assert (<= X_1 4)) (assert (>= X_1 -4)) (assert (>= X_1 -5))\n\
           (assert (<= -1 X_2 1))\n\
           (assert (<= Y_0 0))";
    let p = ok(&text);
    assert_eq!(p.cases, single(&[0.1, -4.0, -1.0], &[0.9, 4.0, 1.0], vec![vec![c(&[1.0], 0.0)]]));
}

#[test]
fn scaled_input_bounds() {
    // A positive coefficient keeps the direction of the bound, a negative one flips it.
    let text = decls(2, 1)
        + "(assert (<= (* 2 X_0) 1)) (assert (>= (* X_0 -4) 2))\n\
           (assert (<= (- X_1) 1)) (assert (<= (/ X_1 2) 0.25)) (assert (>= (+ X_1 1) 0.75))\n\
           (assert (<= Y_0 1))";
    // X_0 <= 0.5 and -4 X_0 >= 2, i.e. X_0 <= -0.5: two upper bounds and no lower one.
    assert_err(&text, &["X_0 has no lower bound"]);
    let fixed = text.replace("(assert (<= Y_0 1))", "(assert (>= X_0 -1)) (assert (<= Y_0 1))");
    let p = ok(&fixed);
    assert_eq!(p.cases[0].lower, vec![-1.0, -0.25]);
    assert_eq!(p.cases[0].upper, vec![-0.5, 0.5]);
}

#[test]
fn or_of_ands_over_outputs() {
    // ACAS Xu property 7 style: the counterexample is "Y_3 or Y_4 is minimal".
    let text = boxed(&[0.0], &[1.0], 5)
        + "(assert (or\n  (and (<= Y_3 Y_0) (<= Y_3 Y_1) (<= Y_3 Y_2))\n  (and (<= Y_4 Y_0) (<= Y_4 Y_1) (<= Y_4 Y_2))\n))";
    let p = ok(&text);
    let d = |k: usize| {
        (0..3)
            .map(|j| {
                let mut coef = vec![0.0; 5];
                coef[k] = 1.0;
                coef[j] = -1.0;
                c(&coef, 0.0)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(p.cases, single(&[0.0], &[1.0], vec![d(3), d(4)]));
}

#[test]
fn nested_and_or_distribute_in_source_order() {
    let text = boxed(&[0.0], &[1.0], 1)
        + "(assert (and (<= Y_0 1) (or (<= Y_0 2) (<= Y_0 3)) (<= Y_0 4) (or (<= Y_0 5) (and (<= Y_0 6) (<= Y_0 7)))))";
    let p = ok(&text);
    let k = |r: f64| c(&[1.0], r);
    assert_eq!(
        p.cases[0].disjuncts,
        vec![
            vec![k(1.0), k(2.0), k(4.0), k(5.0)],
            vec![k(1.0), k(2.0), k(4.0), k(6.0), k(7.0)],
            vec![k(1.0), k(3.0), k(4.0), k(5.0)],
            vec![k(1.0), k(3.0), k(4.0), k(6.0), k(7.0)],
        ]
    );
}

#[test]
fn separate_asserts_multiply_out() {
    let text = boxed(&[0.0], &[1.0], 2) + "(assert (or (<= Y_0 1) (<= Y_1 1)))\n(assert (or (>= Y_0 2) (>= Y_1 2)))";
    let p = ok(&text);
    assert_eq!(
        p.cases[0].disjuncts,
        vec![
            vec![c(&[1.0, 0.0], 1.0), c(&[-1.0, 0.0], -2.0)],
            vec![c(&[1.0, 0.0], 1.0), c(&[0.0, -1.0], -2.0)],
            vec![c(&[0.0, 1.0], 1.0), c(&[-1.0, 0.0], -2.0)],
            vec![c(&[0.0, 1.0], 1.0), c(&[0.0, -1.0], -2.0)],
        ]
    );
}

#[test]
fn linear_combinations_of_outputs() {
    let text = boxed(&[0.0], &[1.0], 3)
        + "(assert (<= (+ Y_0 (* 2 Y_1) (- Y_2) (* Y_1 0.5 2)) (- 3 1)))\n\
           (assert (>= (- Y_0 Y_1 1) (* -1 (+ Y_2 Y_2))))\n\
           (assert (<= (/ (- Y_0 Y_1) 4) (* 2 (+ 1 0.5))))\n\
           (assert (<= (* 3 (- Y_0 Y_0)) (+ Y_1 (* 0 Y_2))))";
    let p = ok(&text);
    assert_eq!(
        p.cases[0].disjuncts,
        vec![vec![
            c(&[1.0, 3.0, -1.0], 2.0),
            c(&[-1.0, 1.0, -2.0], -1.0),
            c(&[0.25, -0.25, 0.0], 3.0),
            c(&[0.0, -1.0, 0.0], 0.0),
        ]]
    );
}

#[test]
fn several_input_boxes_in_one_file() {
    // The whole property as one top-level or: two boxes, each with its own outputs; a third
    // disjunct with the first box again is merged into the first case.
    let text = decls(2, 2)
        + "(assert (or\n\
             (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 Y_1))\n\
             (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 5) (>= Y_1 5))\n\
             (and (<= X_1 1) (>= X_1 0) (<= X_0 1) (>= X_0 0) (<= Y_1 -1))\n\
           ))";
    let p = ok(&text);
    assert_eq!(
        p.cases,
        vec![
            Case {
                lower: vec![0.0, 0.0],
                upper: vec![1.0, 1.0],
                disjuncts: vec![vec![c(&[1.0, -1.0], 0.0)], vec![c(&[0.0, 1.0], -1.0)]],
            },
            Case {
                lower: vec![2.0, 0.0],
                upper: vec![3.0, 1.0],
                disjuncts: vec![vec![c(&[-1.0, 0.0], -5.0), c(&[0.0, -1.0], -5.0)]],
            },
        ]
    );
}

#[test]
fn shared_bounds_with_alternative_ranges() {
    // ACAS Xu property 6 style: X_1 in one of two ranges, the rest shared, outputs shared.
    let text = decls(3, 2)
        + "(assert (<= X_0 0.7)) (assert (>= X_0 -0.1))\n\
           (assert (or (and (<= X_1 -0.1) (>= X_1 -0.5)) (and (<= X_1 0.5) (>= X_1 0.1))))\n\
           (assert (<= X_2 0.5)) (assert (>= X_2 0.4))\n\
           (assert (or (and (<= Y_1 Y_0))))";
    let p = ok(&text);
    let d = vec![vec![c(&[-1.0, 1.0], 0.0)]];
    assert_eq!(
        p.cases,
        vec![
            Case { lower: vec![-0.1, -0.5, 0.4], upper: vec![0.7, -0.1, 0.5], disjuncts: d.clone() },
            Case { lower: vec![-0.1, 0.1, 0.4], upper: vec![0.7, 0.5, 0.5], disjuncts: d },
        ]
    );
}

#[test]
fn comments_whitespace_and_directives() {
    let text = "; header comment\n(set-logic QF_LRA) ;; trailing\n\
                (declare-const X_0 Real) ; input\r\n(declare-fun Y_0 () Real)\n\
                (assert ; inside\n (<= X_0 ; more\n 1))\t(assert(>= X_0 0))\n\
                (assert (<= Y_0 ; ) not a paren\n 2))\n(check-sat)\n(get-model)\n(exit)\n; no newline at end";
    let p = ok(text);
    assert_eq!(p.cases, single(&[0.0], &[1.0], vec![vec![c(&[1.0], 2.0)]]));
}

#[test]
#[allow(clippy::excessive_precision)] // more digits than f64 holds, on purpose
fn scientific_and_other_number_forms() {
    let text = decls(6, 1)
        + "(assert (>= X_0 1e-3)) (assert (<= X_0 2.5E+01))\n\
           (assert (>= X_1 -2.5E+01)) (assert (<= X_1 1.5e2))\n\
           (assert (>= X_2 .5)) (assert (<= X_2 3.))\n\
           (assert (>= X_3 +2)) (assert (<= X_3 7E0))\n\
           (assert (>= X_4 -0)) (assert (<= X_4 1e-400))\n\
           (assert (>= X_5 (- 0.25))) (assert (<= X_5 0.123456789012345678901234567890))\n\
           (assert (<= Y_0 -1.0e-7))";
    let p = ok(&text);
    assert_eq!(p.cases[0].lower, vec![1e-3, -25.0, 0.5, 2.0, 0.0, -0.25]);
    assert_eq!(p.cases[0].upper, vec![25.0, 150.0, 3.0, 7.0, 0.0, 0.123456789012345678901234567890]);
    assert_eq!(p.cases[0].disjuncts, vec![vec![c(&[1.0], -1.0e-7)]]);
}

#[test]
fn strict_equal_and_chained_comparisons() {
    let text = decls(2, 2) + "(assert (< 0 X_0 1)) (assert (= X_1 0.5))\n(assert (> Y_0 Y_1 2)) (assert (= Y_0 3))";
    let p = ok(&text);
    assert_eq!(p.cases[0].lower, vec![0.0, 0.5]);
    assert_eq!(p.cases[0].upper, vec![1.0, 0.5]);
    assert_eq!(
        p.cases[0].disjuncts,
        vec![vec![c(&[-1.0, 1.0], 0.0), c(&[0.0, -1.0], -2.0), c(&[1.0, 0.0], 3.0), c(&[-1.0, 0.0], -3.0)]]
    );
}

#[test]
fn constants_true_false_and_empty_connectives() {
    // Constant comparisons and true/(and) vanish; false/(or) remove their disjunct.
    let text = boxed(&[0.0], &[1.0], 1)
        + "(assert (and true (<= 1 2) (and)))\n(assert (or (<= Y_0 1) false (>= 0 1) (or) (and (<= Y_0 2) (<= (* 0 Y_0) -1))))";
    let p = ok(&text);
    assert_eq!(p.cases[0].disjuncts, vec![vec![c(&[1.0], 1.0)]]);
    // No output constraint at all: every output is a counterexample.
    let p = ok(&(boxed(&[0.0], &[1.0], 1) + "(assert (or true (<= Y_0 1)))"));
    assert_eq!(p.cases[0].disjuncts, vec![Vec::<Constraint>::new(), vec![c(&[1.0], 1.0)]]);
    assert!(p.is_counterexample(&[0.5], &[1e9], 0.0));
}

#[test]
fn declarations_in_any_order_before_use() {
    let text = "(declare-const Y_1 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const X_0 Real)\n\
                (assert (<= 0 X_0 1))(assert (<= 0 X_1 1))(assert (<= Y_1 Y_0))";
    let p = ok(text);
    assert_eq!((p.num_inputs, p.num_outputs), (2, 2));
    assert_eq!(p.cases[0].disjuncts, vec![vec![c(&[-1.0, 1.0], 0.0)]]);
}

#[test]
fn deepest_accepted_nesting() {
    // (assert (and ... (and (<= Y_0 1)))) with k ands nests k + 2 levels of parentheses.
    let nested = |k: usize| boxed(&[0.0], &[1.0], 1) + "(assert " + &"(and ".repeat(k) + "(<= Y_0 1)" + &")".repeat(k + 1);
    let p = ok(&nested(MAX_DEPTH - 2));
    assert_eq!(p.cases[0].disjuncts, vec![vec![c(&[1.0], 1.0)]]);
    assert_err(&nested(MAX_DEPTH - 1), &["line 5:5004", "nested deeper than 1000"]);
    // The same depth in arithmetic: (<= (+ 1 (+ 1 ... Y_0)) 0).
    let k = MAX_DEPTH - 2;
    let terms = boxed(&[0.0], &[1.0], 1) + "(assert (<= " + &"(+ 1 ".repeat(k) + "Y_0" + &")".repeat(k) + " 0))";
    let p = ok(&terms);
    assert_eq!(p.cases[0].disjuncts, vec![vec![c(&[1.0], -(k as f64))]]);
}

// ---------------------------------------------------------------------------------------------
// Real-looking competition files

const ACASXU_PROP_2: &str = "; ACAS Xu property 2
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const X_3 Real)
(declare-const X_4 Real)

(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(declare-const Y_3 Real)
(declare-const Y_4 Real)

; Unscaled Input 0: (55947.691, 60760)
(assert (<= X_0 0.679857769))
(assert (>= X_0 0.600000000))

; Unscaled Input 1: (-3.141593, 3.141593)
(assert (<= X_1 0.500000000))
(assert (>= X_1 -0.500000000))

; Unscaled Input 2: (-3.141593, 3.141593)
(assert (<= X_2 0.500000000))
(assert (>= X_2 -0.500000000))

; Unscaled Input 3: (1145, 1200)
(assert (<= X_3 0.500000000))
(assert (>= X_3 0.450000000))

; Unscaled Input 4: (0, 60)
(assert (<= X_4 -0.450000000))
(assert (>= X_4 -0.500000000))

; unsafe if COC is maximal
(assert (>= Y_0 Y_1))
(assert (>= Y_0 Y_2))
(assert (>= Y_0 Y_3))
(assert (>= Y_0 Y_4))
";

#[test]
fn acasxu_property_2() {
    let p = ok(ACASXU_PROP_2);
    assert_eq!((p.num_inputs, p.num_outputs), (5, 5));
    let conj: Vec<Constraint> = (1..5)
        .map(|j| {
            let mut coef = vec![0.0; 5];
            coef[0] = -1.0;
            coef[j] = 1.0;
            c(&coef, 0.0)
        })
        .collect();
    assert_eq!(p.cases, single(&[0.6, -0.5, -0.5, 0.45, -0.5], &[0.679857769, 0.5, 0.5, 0.5, -0.45], vec![conj]));
    // Y_0 maximal inside the box is a counterexample; Y_1 larger is not; outside the box is not.
    assert!(p.is_counterexample(&[0.65, 0.0, 0.0, 0.47, -0.47], &[1.0, 0.5, 0.2, 0.9, 1.0], 0.0));
    assert!(!p.is_counterexample(&[0.65, 0.0, 0.0, 0.47, -0.47], &[1.0, 1.5, 0.2, 0.9, 1.0], 0.0));
    assert!(!p.is_counterexample(&[0.7, 0.0, 0.0, 0.47, -0.47], &[1.0, 0.5, 0.2, 0.9, 1.0], 0.0));
}

/// An mnist_fc-style file: 784 pixel bounds around an image, then "some other class scores at
/// least as high as the label".
fn mnist_file(label: usize, eps: f64) -> (String, Vec<f64>) {
    let pixels: Vec<f64> = (0..784).map(|k| ((k * 37 % 256) as f64) / 255.0).collect();
    let mut s = String::from("; Mnist property with label: 7.\n\n");
    for i in 0..784 {
        writeln!(s, "(declare-const X_{i} Real)").unwrap();
    }
    s.push('\n');
    for j in 0..10 {
        writeln!(s, "(declare-const Y_{j} Real)").unwrap();
    }
    s.push_str("\n; Input constraints:\n");
    for (i, v) in pixels.iter().enumerate() {
        writeln!(s, "(assert (<= X_{i} {}))\n(assert (>= X_{i} {}))", (v + eps).min(1.0), (v - eps).max(0.0)).unwrap();
    }
    s.push_str("\n; Output constraints:\n(assert (or\n");
    for j in (0..10).filter(|&j| j != label) {
        writeln!(s, "    (and (>= Y_{j} Y_{label}))").unwrap();
    }
    s.push_str("))\n");
    (s, pixels)
}

#[test]
fn mnist_style_property() {
    let (text, pixels) = mnist_file(7, 0.02);
    let p = ok(&text);
    assert_eq!((p.num_inputs, p.num_outputs, p.cases.len()), (784, 10, 1));
    let case = &p.cases[0];
    for (i, v) in pixels.iter().enumerate() {
        assert_eq!(case.lower[i], (v - 0.02).max(0.0), "X_{i}");
        assert_eq!(case.upper[i], (v + 0.02).min(1.0), "X_{i}");
    }
    let expected: Vec<Vec<Constraint>> = (0..10)
        .filter(|&j| j != 7)
        .map(|j| {
            let mut coef = vec![0.0; 10];
            coef[7] = 1.0;
            coef[j] = -1.0;
            vec![c(&coef, 0.0)]
        })
        .collect();
    assert_eq!(case.disjuncts, expected);
    let mut y = vec![0.0; 10];
    y[7] = 1.0;
    assert!(!p.is_counterexample(&pixels, &y, 0.0));
    y[3] = 1.0;
    assert!(p.is_counterexample(&pixels, &y, 0.0));
}

#[test]
fn large_files_parse_quickly() {
    // 10k inputs (20k bound lines) and a 10k-box top-level or (100k bounds): both well under
    // a second in release, a few seconds at most in the test profile.
    let n = 10_000;
    let (lo, hi): (Vec<f64>, Vec<f64>) = (0..n).map(|i| (i as f64 * 1e-4, i as f64 * 1e-4 + 0.01)).unzip();
    let text = boxed(&lo, &hi, 10) + "(assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0))))";
    let start = std::time::Instant::now();
    let p = ok(&text);
    assert_eq!(p.cases[0].lower, lo);
    let mut boxes = decls(5, 2) + "(assert (or\n";
    for b in 0..10_000 {
        boxes.push_str("  (and");
        for i in 0..5 {
            write!(boxes, " (>= X_{i} {b}) (<= X_{i} {})", b + 1).unwrap();
        }
        boxes.push_str(" (<= Y_0 Y_1))\n");
    }
    boxes.push_str("))");
    let p = ok(&boxes);
    assert_eq!(p.cases.len(), 10_000);
    assert_eq!(p.cases[9999].lower, vec![9999.0; 5]);
    let seconds = start.elapsed().as_secs_f64();
    assert!(seconds < 10.0, "parsing took {seconds} s");
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn truncated_file() {
    let text = boxed(&[0.0], &[1.0], 1) + "(assert (or (and (<= Y_0 1)\n";
    assert_err(&text, &["line 6:1: expected ')' but the file ended", "'(' at line 5:13 is never closed"]);
    assert_err("(declare-const X_0", &["line 1:19: expected ')' but the file ended"]);
}

#[test]
fn unbalanced_and_stray_tokens() {
    let base = boxed(&[0.0], &[1.0], 1);
    assert_err(&(base.clone() + "(assert (<= Y_0 1)))"), &["line 5:20", "unexpected ')'"]);
    assert_err(&(base.clone() + "assert"), &["line 5:1", "unexpected 'assert' outside a command"]);
    assert_err(&(base.clone() + "()"), &["line 5:1", "expected a command"]);
    assert_err(&(base.clone() + "((assert))"), &["expected a command"]);
}

#[test]
fn nonsense_tokens() {
    let base = boxed(&[0.0], &[1.0], 2);
    assert_err(
        &(base.clone() + "(assert (<= Y_0 banana))"),
        &["line 6:17", "'banana' is neither a number nor a declared variable"],
    );
    for bad in ["inf", "NaN", "1e", "1.2.3", "--1", "0x10", "1e+", "."] {
        assert_err(&(base.clone() + &format!("(assert (<= Y_0 {bad}))")), &[&format!("'{bad}' is neither a number")]);
    }
    assert_err(&(base.clone() + "(assert (<= Y_0 1e999))"), &["number '1e999' is out of range"]);
    assert_err(&(base.clone() + "(assert (<= Y_0 (* 1e300 1e300)))"), &["out of range after arithmetic"]);
    assert_err(&(base.clone() + "(assert (frobnicate Y_0 1))"), &["unknown constraint operator 'frobnicate'"]);
    assert_err(&(base.clone() + "(assert (<= (max Y_0 Y_1) 1))"), &["unknown arithmetic operator 'max'"]);
    assert_err(&(base.clone() + "(assert (not (<= Y_0 1)))"), &["unsupported connective 'not'"]);
    assert_err(&(base.clone() + "(assert Y_0)"), &["expected a constraint", "'Y_0'"]);
    assert_err(&(base.clone() + "(assert ((<= Y_0 1)))"), &["expected a constraint"]);
    assert_err(&(base.clone() + "(assert (<= Y_0))"), &["'<=' needs at least two arguments"]);
    assert_err(&(base.clone() + "(assert (<= Y_0 1) (<= Y_1 1))"), &["exactly one formula"]);
    assert_err(&(base.clone() + "(assert (<= (/ Y_0 0) 1))"), &["division by zero"]);
    assert_err(&(base.clone() + "(assert (<= (/ 1 Y_0) 1))"), &["non-linear term: division"]);
    assert_err(&(base.clone() + "(assert (<= (- ) 1))"), &["'-' needs at least one argument"]);
    assert_err(&(base.clone() + "(push 1)"), &["unknown command 'push'"]);
    assert_err(&(base + "(assert (<= Y_0 1)) \u{00e9}\u{00e9} (x"), &["line 6:21", "unexpected 'éé'"]);
}

#[test]
fn unknown_and_badly_declared_variables() {
    let base = boxed(&[0.0], &[1.0], 2);
    assert_err(&(base.clone() + "(assert (<= Y_5 1))"), &["line 6:13: undeclared variable 'Y_5'"]);
    assert_err(&(base.clone() + "(assert (<= X_1 1))"), &["undeclared variable 'X_1'"]);
    // Use before declaration is an error too (SMT-LIB scoping).
    assert_err("(assert (<= X_0 1))(declare-const X_0 Real)", &["line 1:13", "undeclared variable 'X_0'"]);
    assert_err(&(base.clone() + "(declare-const X_0 Real)"), &["line 6:16: X_0 is declared twice (first at line 1:16)"]);
    for name in ["foo", "X_01", "X_0_0", "x_0", "X_", "X_-1", "Y_+1", "X_99999999999999999999999"] {
        assert_err(&format!("(declare-const {name} Real)"), &["unsupported variable name", name]);
    }
    assert_err("(declare-const X_0 Int)", &["X_0 has type 'Int'; only Real is supported"]);
    assert_err("(declare-const X_0)", &["expected (declare-const NAME Real)"]);
    assert_err("(declare-fun X_0 (Real) Real)", &["expected (declare-fun NAME () Real)"]);
    let gap = "(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)";
    assert_err(gap, &["line 1:40", "X_2 is declared but X_1 is not"]);
    assert_err("(declare-const Y_1 Real)(declare-const X_0 Real)", &["Y_1 is declared but Y_0 is not"]);
    assert_err("(declare-const Y_0 Real)", &["no input variables declared"]);
    assert_err("(declare-const X_0 Real)(assert (<= 0 X_0 1))", &["no output variables declared"]);
    assert_err("", &["no input variables declared"]);
    assert_err("; only a comment", &["no input variables declared"]);
}

#[test]
fn non_linear_and_unsupported_constraints() {
    let base = boxed(&[0.0, 0.0], &[1.0, 1.0], 2);
    assert_err(&(base.clone() + "(assert (<= (* Y_0 Y_1) 1))"), &["line 9:13", "non-linear term"]);
    assert_err(&(base.clone() + "(assert (<= (* 2 (+ Y_0 1) (- Y_1)) 1))"), &["non-linear term"]);
    assert_err(&(base.clone() + "(assert (<= X_0 Y_0))"), &["line 9:9", "mixes inputs and outputs"]);
    assert_err(&(base.clone() + "(assert (or (<= Y_0 1) (<= (+ X_0 X_1) 1)))"), &["line 9:24", "combination of several inputs"]);
    // A constraint whose input terms cancel out is fine.
    let p = ok(&(base + "(assert (<= (- (+ X_0 Y_0) X_0) 1))"));
    assert_eq!(p.cases[0].disjuncts, vec![vec![c(&[1.0, 0.0], 1.0)]]);
}

#[test]
fn unbounded_inputs() {
    let text = decls(2, 1) + "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (<= X_1 1)) (assert (<= Y_0 0))";
    assert_err(&text, &["X_1 has no lower bound"]);
    let text = decls(2, 1) + "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (>= X_1 1)) (assert (<= Y_0 0))";
    assert_err(&text, &["X_1 has no upper bound"]);
    // Bounded in one box only.
    let text = decls(1, 1) + "(assert (or (and (<= X_0 1) (>= X_0 0)) (<= X_0 5))) (assert (<= Y_0 0))";
    assert_err(&text, &["X_0 has no lower bound in one of the input boxes"]);
    // Only output constraints.
    assert_err(&(decls(1, 1) + "(assert (<= Y_0 0))"), &["X_0 has no lower bound"]);
}

#[test]
fn empty_box() {
    let text = decls(4, 1)
        + "(assert (<= 0 X_0 1)) (assert (<= 0 X_1 1)) (assert (<= 0 X_2 1))\n\
           (assert (>= X_3 0.5)) (assert (<= X_3 0.2)) (assert (<= Y_0 0))";
    assert_err(&text, &["line 7:9: X_3: lower bound 0.5 is above upper bound 0.2"]);
}

#[test]
fn contradictory_property() {
    let text = boxed(&[0.0], &[1.0], 1) + "(assert (<= 1 0))";
    assert_err(&text, &["contradict"]);
    let text = boxed(&[0.0], &[1.0], 1) + "(assert (or))";
    assert_err(&text, &["contradict"]);
}

#[test]
fn normal_form_blow_up_is_refused() {
    // Six independent 10-way disjunctions multiply to a million disjuncts.
    let mut text = boxed(&[0.0], &[1.0], 1);
    for k in 0..6 {
        text.push_str("(assert (or");
        for r in 0..10 {
            write!(text, " (<= Y_0 {})", k * 10 + r).unwrap();
        }
        text.push_str("))\n");
    }
    assert_err(&text, &["more than 100000 disjuncts"]);
    // Few disjuncts, but each a copy of a wide conjunction: 2000 copies of 10k constraints.
    let mut text = boxed(&[0.0], &[1.0], 1);
    let or1000: String = (0..1000).map(|r| format!(" (<= Y_0 {r})")).collect();
    let wide: String = (0..10_000).map(|r| format!(" (>= Y_0 {r})")).collect();
    write!(text, "(assert (and (or{or1000}) (or (and{wide}) (and{wide}))))").unwrap();
    assert_err(&text, &["too large once expanded"]);
}

#[test]
fn a_megabyte_of_open_parentheses() {
    assert_err(&"(".repeat(1 << 20), &["line 1:1001", "nested deeper than 1000"]);
    assert_err(&")".repeat(1 << 20), &["line 1:1", "unexpected ')'"]);
    let mut long_atom = decls(1, 1);
    long_atom.push_str("(assert (<= Y_0 ");
    long_atom.push_str(&"7".repeat(1 << 20));
    long_atom.push_str("))");
    let message = err(&long_atom);
    assert!(message.contains("out of range") && message.len() < 200, "{message}");
}

#[test]
fn read_names_the_file() {
    let dir = std::env::temp_dir().join(format!("ironbound-vnnlib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("prop_2.vnnlib");
    std::fs::write(&good, ACASXU_PROP_2).unwrap();
    assert_eq!(vnnlib::read(&good).unwrap(), ok(ACASXU_PROP_2));

    let gz = dir.join("prop_2.vnnlib.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, ACASXU_PROP_2.as_bytes()).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    assert_eq!(vnnlib::read(&gz).unwrap(), ok(ACASXU_PROP_2));

    let bad = dir.join("bad.vnnlib");
    std::fs::write(&bad, "(declare-const X_0 Real)\n(assert (<= X_9 1))").unwrap();
    let e = vnnlib::read(&bad).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: line 2:13: undeclared variable 'X_9'", bad.display()));
    assert_eq!(e.exit_code(), 2);

    let missing = dir.join("missing.vnnlib");
    let e = vnnlib::read(&missing).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: cannot read", missing.display())), "{e}");

    let binary = dir.join("binary.vnnlib");
    std::fs::write(&binary, [0xff, 0xfe, 0x28]).unwrap();
    assert!(vnnlib::read(&binary).unwrap_err().to_string().contains("not UTF-8"));
    std::fs::write(&binary, [0x1f, 0x8b, 0x00, 0x01]).unwrap();
    assert!(vnnlib::read(&binary).unwrap_err().to_string().contains("corrupt gzip"));
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------
// Counterexample checks

#[test]
fn is_counterexample_checks_box_disjuncts_tolerance_and_shapes() {
    let text = decls(2, 2)
        + "(assert (or\n\
             (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (or (<= Y_0 Y_1) (and (>= Y_0 10) (>= Y_1 10))))\n\
             (and (>= X_0 5) (<= X_0 6) (>= X_1 0) (<= X_1 1) (<= (+ Y_0 Y_1) -1))))";
    let p = ok(&text);
    assert_eq!(p.cases.len(), 2);
    assert!(p.is_counterexample(&[0.5, 0.5], &[1.0, 2.0], 0.0)); // first box, Y_0 <= Y_1
    assert!(p.is_counterexample(&[1.0, 0.0], &[1.0, 1.0], 0.0)); // boundaries count
    assert!(p.is_counterexample(&[0.5, 0.5], &[11.0, 10.0], 0.0)); // second disjunct
    assert!(!p.is_counterexample(&[0.5, 0.5], &[3.0, 2.0], 0.0)); // no disjunct holds
    assert!(!p.is_counterexample(&[5.5, 0.5], &[1.0, 2.0], 0.0)); // second box, its own output
    assert!(p.is_counterexample(&[5.5, 0.5], &[-1.0, 0.0], 0.0));
    assert!(!p.is_counterexample(&[3.0, 0.5], &[-1.0, 0.0], 0.0)); // between the boxes
                                                                   // Tolerance relaxes both the box and the constraints.
    assert!(!p.is_counterexample(&[1.0 + 1e-7, 0.5], &[1.0, 1.0], 0.0));
    assert!(p.is_counterexample(&[1.0 + 1e-7, 0.5], &[1.0, 1.0], 1e-6));
    assert!(!p.is_counterexample(&[0.5, 0.5], &[1.0 + 1e-7, 1.0], 0.0));
    assert!(p.is_counterexample(&[0.5, 0.5], &[1.0 + 1e-7, 1.0], 1e-6));
    // Wrong lengths and NaNs are never counterexamples.
    assert!(!p.is_counterexample(&[0.5], &[1.0, 2.0], 0.0));
    assert!(!p.is_counterexample(&[0.5, 0.5], &[1.0, 2.0, 3.0], 0.0));
    assert!(!p.is_counterexample(&[f64::NAN, 0.5], &[1.0, 2.0], 0.0));
    assert!(!p.is_counterexample(&[0.5, 0.5], &[f64::NAN, 2.0], 0.0));
}

#[test]
fn to_vnnlib_round_trips_exactly() {
    let (mnist, _) = mnist_file(3, 0.1);
    for text in [ACASXU_PROP_2.to_string(), mnist] {
        let p = ok(&text);
        assert_eq!(ok(&p.to_vnnlib()), p);
    }
    let p = Property {
        num_inputs: 2,
        num_outputs: 3,
        cases: vec![
            Case {
                lower: vec![-1e-300, 0.1],
                upper: vec![1e300, 0.30000000000000004],
                disjuncts: vec![vec![c(&[1.0, -2.5, 0.0], 1e-7)], vec![c(&[0.0, 0.0, -1.0], -0.0), c(&[3.0, 1.0, 1.0], 7.0)]],
            },
            Case { lower: vec![2.0, 2.0], upper: vec![2.0, 3.0], disjuncts: vec![vec![]] },
        ],
    };
    assert_eq!(ok(&p.to_vnnlib()), p);
}
