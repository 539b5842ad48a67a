//! VNN-LIB reader property tests: random well-formed properties round trip through text and
//! are read back with the same meaning; random and mutated inputs never panic (the fuzz
//! harness `fuzz_never_panics`; run it long with
//! `IRONBOUND_FUZZ_CASES=100000 cargo test -p ironbound --test vnnlib_properties fuzz`).

mod vnnlib_support;

use ironbound::io::vnnlib::{self, Property};
use proptest::prelude::*;
use std::fmt::Write as _;
use vnnlib_support::{boxed, decls};

// ---------------------------------------------------------------------------------------------
// Property tests

/// An output comparison `sum coef_j Y_j <= rhs / 4` with small integer coefficients, so every
/// evaluation below is exact in f64 and ties on the boundary are compared exactly too.
#[derive(Clone, Debug)]
struct OutAtom {
    coef: Vec<i32>,
    rhs: i32,
    style: u8,
}

#[derive(Clone, Debug)]
enum Tree {
    Atom(OutAtom),
    And(Vec<Tree>),
    Or(Vec<Tree>),
}

/// A well-formed property: boxes in quarter units, each with an output formula.
#[derive(Clone, Debug)]
struct Spec {
    n: usize,
    m: usize,
    boxes: Vec<(Vec<(i32, i32)>, Tree)>,
    styles: Vec<u8>,
    seed: u64,
}

fn out_atom(m: usize) -> impl Strategy<Value = OutAtom> {
    (prop::collection::vec(-3i32..=3, m), -12i32..=12, 0u8..6).prop_map(|(coef, rhs, style)| OutAtom { coef, rhs, style })
}

fn tree(m: usize) -> impl Strategy<Value = Tree> {
    out_atom(m).prop_map(Tree::Atom).prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::And),
            prop::collection::vec(inner, 0..4).prop_map(Tree::Or),
        ]
    })
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..5, 1usize..5, 1usize..4).prop_flat_map(|(n, m, k)| {
        let bound = (-8i32..=8, 0i32..=8).prop_map(|(lo, width)| (lo, lo + width));
        let one_box = (prop::collection::vec(bound, n), tree(m));
        (prop::collection::vec(one_box, k), prop::collection::vec(any::<u8>(), 8), any::<u64>(), any::<bool>()).prop_map(
            move |(mut boxes, styles, seed, duplicate)| {
                if duplicate && boxes.len() > 1 {
                    boxes[1].0 = boxes[0].0.clone(); // same box twice: merged into one case
                }
                Spec { n, m, boxes, styles, seed }
            },
        )
    })
}

fn num(v: f64) -> String {
    format!("{v:?}")
}

fn linear_text(coef: &[i32], sign: i32) -> String {
    let terms: Vec<String> = coef
        .iter()
        .enumerate()
        .filter(|(_, &a)| a != 0)
        .map(|(j, &a)| match a * sign {
            1 => format!("Y_{j}"),
            -1 => format!("(- Y_{j})"),
            b => format!("(* {b} Y_{j})"),
        })
        .collect();
    match terms.len() {
        0 => "0".to_string(),
        1 => terms[0].clone(),
        _ => format!("(+ {})", terms.join(" ")),
    }
}

fn atom_text(a: &OutAtom) -> String {
    let r = a.rhs as f64 / 4.0;
    let lhs = linear_text(&a.coef, 1);
    match a.style {
        0 => format!("(<= {lhs} {})", num(r)),
        1 => format!("(>= {} {lhs})", num(r)),
        2 => format!("(>= {} {})", linear_text(&a.coef, -1), num(-r)),
        3 => format!("(<= (- {lhs} {}) 0)", num(r)),
        4 => format!("(<= (* 2 {lhs}) {})", num(2.0 * r)),
        _ => format!("(<= (/ {lhs} 0.5) (/ {} 2))", a.rhs),
    }
}

fn tree_text(t: &Tree) -> String {
    match t {
        Tree::Atom(a) => atom_text(a),
        Tree::And(ts) => format!("(and {})", ts.iter().map(tree_text).collect::<Vec<_>>().join(" ")),
        Tree::Or(ts) => format!("(or {})", ts.iter().map(tree_text).collect::<Vec<_>>().join(" ")),
    }
}

fn bound_texts(i: usize, lo: i32, hi: i32, style: u8) -> Vec<String> {
    let (l, h) = (lo as f64 / 4.0, hi as f64 / 4.0);
    match style % 4 {
        0 => vec![format!("(>= X_{i} {})", num(l)), format!("(<= X_{i} {})", num(h))],
        1 => vec![format!("(<= {} X_{i})", num(h)).replace("<=", ">="), format!("(<= {} X_{i})", num(l))],
        2 => vec![format!("(<= {} X_{i} {})", num(l), num(h))],
        _ => vec![format!("(<= (* -2 X_{i}) {})", num(-2.0 * l)), format!("(<= (* 4 X_{i}) {})", hi)],
    }
}

fn spec_text(s: &Spec) -> String {
    let mut names: Vec<String> = (0..s.n).map(|i| format!("X_{i}")).chain((0..s.m).map(|j| format!("Y_{j}"))).collect();
    // Declaration order does not matter; rotate by the seed.
    let k = (s.seed % names.len() as u64) as usize;
    names.rotate_left(k);
    let mut out = String::from("; generated\n");
    for name in names {
        writeln!(out, "(declare-const {name} Real)").unwrap();
    }
    let separate = s.boxes.len() == 1 && s.styles[0].is_multiple_of(2);
    if separate {
        let (bounds, t) = &s.boxes[0];
        for (i, &(lo, hi)) in bounds.iter().enumerate() {
            for b in bound_texts(i, lo, hi, s.styles[(i + 1) % s.styles.len()]) {
                writeln!(out, "(assert {b}) ; X_{i}").unwrap();
            }
        }
        match t {
            // A top-level conjunction may be spread over several asserts.
            Tree::And(parts) if s.styles[1].is_multiple_of(2) => {
                for part in parts {
                    writeln!(out, "(assert {})", tree_text(part)).unwrap();
                }
            }
            _ => writeln!(out, "(assert {})", tree_text(t)).unwrap(),
        }
    } else {
        out.push_str("(assert (or\n");
        for (b, (bounds, t)) in s.boxes.iter().enumerate() {
            let mut parts: Vec<String> = bounds
                .iter()
                .enumerate()
                .flat_map(|(i, &(lo, hi))| bound_texts(i, lo, hi, s.styles[(b + i) % s.styles.len()]))
                .collect();
            parts.push(tree_text(t));
            let r = (s.seed as usize + b) % parts.len();
            parts.rotate_left(r);
            writeln!(out, "  (and {})", parts.join(" ")).unwrap();
        }
        out.push_str("))\n");
    }
    out
}

fn eval_tree(t: &Tree, y: &[f64]) -> bool {
    match t {
        Tree::Atom(a) => a.coef.iter().zip(y).map(|(&c, v)| c as f64 * v).sum::<f64>() <= a.rhs as f64 / 4.0,
        Tree::And(ts) => ts.iter().all(|t| eval_tree(t, y)),
        Tree::Or(ts) => ts.iter().any(|t| eval_tree(t, y)),
    }
}

fn reference(s: &Spec, x: &[f64], y: &[f64]) -> bool {
    s.boxes.iter().any(|(bounds, t)| {
        bounds.iter().zip(x).all(|(&(lo, hi), &v)| v >= lo as f64 / 4.0 && v <= hi as f64 / 4.0) && eval_tree(t, y)
    })
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

/// Structural invariants every parsed property satisfies, and an exact text round trip.
fn check_invariants(p: &Property) {
    assert!(p.num_inputs > 0 && p.num_outputs > 0 && !p.cases.is_empty());
    for case in &p.cases {
        assert_eq!(case.lower.len(), p.num_inputs);
        assert_eq!(case.upper.len(), p.num_inputs);
        assert!(case.lower.iter().zip(&case.upper).all(|(l, u)| l.is_finite() && u.is_finite() && l <= u));
        assert!(!case.disjuncts.is_empty());
        for c in case.disjuncts.iter().flatten() {
            assert_eq!(c.coef.len(), p.num_outputs);
            assert!(c.rhs.is_finite() && c.coef.iter().all(|v| v.is_finite()) && c.coef.iter().any(|&v| v != 0.0));
        }
    }
    assert_eq!(vnnlib::parse(&p.to_vnnlib()).as_ref(), Ok(p));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn printed_properties_parse_to_equivalent_ones(s in spec()) {
        let text = spec_text(&s);
        let mut rng = SplitMix(s.seed);
        let samples: Vec<(Vec<f64>, Vec<f64>)> = (0..200)
            .map(|_| {
                let (bounds, _) = &s.boxes[(rng.next() % s.boxes.len() as u64) as usize];
                // x on an eighth grid around a box (inside, on its faces, just outside), y on a grid.
                let x = bounds.iter().map(|&(lo, hi)| rng.int(2 * lo - 2, 2 * hi + 2) as f64 / 8.0).collect();
                let y = (0..s.m).map(|_| rng.int(-16, 16) as f64 / 8.0).collect();
                (x, y)
            })
            .collect();
        match vnnlib::parse(&text) {
            Ok(p) => {
                prop_assert_eq!((p.num_inputs, p.num_outputs), (s.n, s.m));
                let distinct: std::collections::HashSet<_> = s.boxes.iter().map(|(b, _)| b.clone()).collect();
                prop_assert!(p.cases.len() <= distinct.len());
                check_invariants(&p);
                for (x, y) in &samples {
                    prop_assert_eq!(p.is_counterexample(x, y, 0.0), reference(&s, x, y), "x {:?} y {:?}\n{}", x, y, text);
                }
            }
            // Only constant-false output formulas make a generated property contradictory.
            Err(e) => {
                prop_assert!(e.to_string().contains("contradict"), "{}\n{}", e, text);
                for (x, y) in &samples {
                    prop_assert!(!reference(&s, x, y));
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(p) = vnnlib::parse(&text) {
            check_invariants(&p);
        }
    }
}

const VOCABULARY: &[&str] = &[
    "(",
    ")",
    "(",
    ")",
    " ",
    "\n",
    ";",
    "assert",
    "declare-const",
    "declare-fun",
    "Real",
    "Int",
    "and",
    "or",
    "not",
    "<=",
    ">=",
    "<",
    ">",
    "=",
    "+",
    "-",
    "*",
    "/",
    "X_0",
    "X_1",
    "X_2",
    "Y_0",
    "Y_1",
    "Y_7",
    "X_01",
    "0",
    "1",
    "-1",
    "0.5",
    "1e-3",
    "-2.5E+01",
    "1e999",
    "1e308",
    "true",
    "false",
    "()",
    "check-sat",
    "é",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize),
    Byte(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 0..VOCABULARY.len()).prop_map(|(p, t)| Mutation::Insert(p, t)),
        (any::<usize>(), 1usize..60).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Delete(p, n) => {
                let p = p % len;
                bytes.drain(p.min(bytes.len())..(p + n).min(bytes.len()));
            }
            Mutation::Insert(p, t) => {
                let p = (p % len).min(bytes.len());
                bytes.splice(p..p, format!(" {} ", VOCABULARY[t]).into_bytes());
            }
            Mutation::Duplicate(p, n) => {
                let p = (p % len).min(bytes.len());
                let piece: Vec<u8> = bytes[p..(p + n).min(bytes.len())].to_vec();
                bytes.splice(p..p, piece);
            }
            Mutation::Byte(p, b) => {
                if let Some(slot) = bytes.get_mut(p % len) {
                    *slot = b;
                }
            }
            Mutation::Truncate(p) => bytes.truncate(p % len),
        }
    }
    bytes
}

const TERM_LEAVES: &[&str] =
    &["Y_0", "Y_1", "Y_0", "Y_1", "Y_0", "Y_1", "Y_2", "X_0", "0", "1", "-1", "0.5", "2", "-0.25", "1e-3", "1e300"];

/// A random arithmetic term, mostly linear.
fn random_term() -> impl Strategy<Value = String> {
    let leaf = (0..TERM_LEAVES.len()).prop_map(|i| TERM_LEAVES[i].to_string());
    leaf.prop_recursive(3, 16, 3, |inner| {
        let args = prop::collection::vec(inner.clone(), 1..4);
        prop_oneof![
            3 => args.clone().prop_map(|xs| format!("(+ {})", xs.join(" "))),
            2 => args.clone().prop_map(|xs| format!("(- {})", xs.join(" "))),
            3 => (-3i32..=3, inner.clone()).prop_map(|(k, t)| format!("(* {k} {t})")),
            1 => args.prop_map(|xs| format!("(* {})", xs.join(" "))),
            1 => (inner, -2i32..=2).prop_map(|(t, k)| format!("(/ {t} {k})")),
        ]
    })
}

/// A random balanced formula over comparisons of random terms, with some ill-formed nodes,
/// so that fuzzing reaches terms and the normal form rather than stopping at the first error.
fn random_formula() -> impl Strategy<Value = String> {
    const OPS: &[&str] = &["<=", ">=", "<", ">", "=", "<=", ">="];
    let comparison =
        (0..OPS.len(), prop::collection::vec(random_term(), 2..4)).prop_map(|(o, ts)| format!("({} {})", OPS[o], ts.join(" ")));
    let leaf = prop_oneof![8 => comparison, 1 => Just("true".to_string()), 1 => Just("false".to_string()), 1 => random_term()];
    leaf.prop_recursive(4, 48, 4, |inner| {
        let head = prop_oneof![20 => Just("and"), 20 => Just("or"), 1 => Just("not"), 1 => Just("<=")];
        (head, prop::collection::vec(inner, 0..4)).prop_map(|(h, xs)| format!("({h} {})", xs.join(" ")))
    })
}

/// A fuzz input: a mutated well-formed property, random asserts over declared variables, or a
/// random token sequence.
fn fuzz_input() -> impl Strategy<Value = String> {
    let mutated = (spec(), prop::collection::vec(mutation(), 1..4))
        .prop_map(|(s, ms)| String::from_utf8_lossy(&mutate(spec_text(&s).into_bytes(), &ms)).into_owned());
    let grammar = (1usize..4, 2usize..4, any::<bool>(), prop::collection::vec(random_formula(), 1..4)).prop_map(
        |(n, m, bounded, asserts)| {
            let mut text = if bounded { boxed(&vec![0.0; n], &vec![1.0; n], m) } else { decls(n, m) };
            for a in asserts {
                writeln!(text, "(assert {a})").unwrap();
            }
            text
        },
    );
    let tokens = prop::collection::vec(0..VOCABULARY.len(), 0..80)
        .prop_map(|ts| ts.into_iter().map(|t| VOCABULARY[t]).collect::<Vec<_>>().join(" "));
    prop_oneof![2 => mutated, 3 => grammar, 1 => tokens]
}

fn fuzz_cases() -> u32 {
    std::env::var("IRONBOUND_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// The fuzz harness: parsing never panics, whatever parses satisfies the invariants, and
    /// every rejection is one line (the CLI prefixes the file).
    #[test]
    fn fuzz_never_panics(text in fuzz_input()) {
        match vnnlib::parse(&text) {
            Ok(p) => check_invariants(&p),
            Err(e) => prop_assert!(!e.to_string().contains(['\n', '\r']), "error is not one line: {:?}", e.to_string()),
        }
    }
}
