//! VNN-LIB property reader (VNN-COMP conventions).
//!
//! A VNN-LIB file describes a **counterexample**: an input `x` and the network's output `y`
//! violate the specification iff they satisfy every assertion of the file. The file is a
//! sequence of SMT-LIB-like s-expressions:
//!
//! ```text
//! file     := command*                       ; ';' starts a comment up to the end of the line
//! command  := (declare-const NAME Real) | (declare-fun NAME () Real) | (assert formula)
//!           | (check-sat) | (get-model) | (exit) | (set-logic ..) | (set-info ..) | (set-option ..)
//! formula  := (and formula*) | (or formula*) | (OP term term+) | true | false
//! OP       := <= | >= | < | > | =            ; chains (<= a b c) mean a <= b and b <= c
//! term     := NUMBER | NAME | (+ term*) | (- term term*) | (* term+) | (/ term NUMBER-term)
//! NAME     := X_<i> (inputs) | Y_<j> (outputs), indices 0..n-1 without gaps or leading zeros
//! NUMBER   := [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?
//! ```
//!
//! Terms must stay linear: a product may have at most one non-constant factor and a divisor
//! must be a non-zero constant. Strict comparisons are read as non-strict ones: that can only
//! enlarge the counterexample set, so an `unsat` proved for the file as read also holds for
//! the file as written (a `sat` answer is checked by [`Property::is_counterexample`] anyway).
//! Non-ASCII symbols, `not`, `ite` and quantifiers are rejected.
//!
//! Every constraint is normalised to `sum_k a_k v_k <= b`. One that involves exactly one input
//! and no output is an input bound (`X_i <= c` or `X_i >= c`); one that involves only outputs is
//! an output [`Constraint`]; any other (inputs and outputs mixed, or several inputs) is
//! rejected, because the verifier only handles box input sets. The conjunction of all asserts
//! is expanded to disjunctive normal form, each disjunct is split into its input box and its
//! output conjunction, and disjuncts with the same box are grouped into one [`Case`]. Every
//! input must be bounded on both sides in every case and no box may be empty.
//!
//! The reader never panics and never recurses deeper than [`MAX_DEPTH`] levels of nesting
//! (the s-expressions themselves are read with an explicit stack); the normal-form expansion is
//! capped at [`MAX_DISJUNCTS`] disjuncts and [`MAX_EXPANSION`] copied constraints, so a small
//! file cannot make it run out of memory. Its time is linear in the size of the file plus the
//! size of the expansion.

mod normal_form;
mod sexpr;
mod terms;

use crate::error::{Error, Result};
use sexpr::{read_command, Lexer};
use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::path::Path;
use terms::Reader;

/// Deepest nesting of parentheses accepted (real files nest fewer than ten levels).
pub const MAX_DEPTH: usize = 1000;
/// Most disjuncts the disjunctive normal form of a property may have.
pub const MAX_DISJUNCTS: usize = 100_000;
/// Most constraint copies (and stored numbers) the expansion to normal form may create.
pub const MAX_EXPANSION: usize = 20_000_000;
/// Largest decompressed size of a gzipped property file.
const MAX_GZIP_BYTES: u64 = 1 << 30;

/// A parsed property: the counterexample set is the union over `cases` of
/// `{(x, y) : x in the case's box and some disjunct of the case holds for y}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    /// Number of declared inputs `X_0 .. X_{n-1}`.
    pub num_inputs: usize,
    /// Number of declared outputs `Y_0 .. Y_{m-1}`.
    pub num_outputs: usize,
    /// Input boxes with their output conditions, in order of first appearance; never empty.
    pub cases: Vec<Case>,
}

/// One input box with a disjunction of conjunctions of output constraints: `(x, y)` is a
/// counterexample of this case iff `lower <= x <= upper` and ALL constraints of SOME disjunct
/// hold for `y`. An empty conjunction holds for every `y`.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Lower bounds of the inputs (finite, `lower[i] <= upper[i]`), length `num_inputs`.
    pub lower: Vec<f64>,
    /// Upper bounds of the inputs (finite), length `num_inputs`.
    pub upper: Vec<f64>,
    /// Disjunction of conjunctions; never empty when produced by [`parse`].
    pub disjuncts: Vec<Vec<Constraint>>,
}

/// A linear constraint on the outputs: `sum_j coef[j] * Y_j <= rhs`. `>=` constraints are
/// stored negated; `coef` has length `num_outputs` and at least one non-zero entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    pub coef: Vec<f64>,
    pub rhs: f64,
}

/// Why a text is not a supported VNN-LIB property; `line` and `column` (1-based) locate it
/// when the problem has a place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}:{column}: {}", self.message),
            (Some(line), None) => write!(f, "line {line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

impl Constraint {
    /// `sum_j coef[j] * y[j]`.
    pub fn value(&self, y: &[f64]) -> f64 {
        self.coef.iter().zip(y).map(|(c, v)| c * v).sum()
    }

    /// Whether `y` satisfies the constraint up to `tol` (false when `y` holds a NaN).
    pub fn holds(&self, y: &[f64], tol: f64) -> bool {
        self.value(y) <= self.rhs + tol
    }

    /// Whether the constraint holds in real arithmetic for every `y` in the box `[lo, hi]`,
    /// with the coefficients and the right-hand side being the decimals of the file (their f64
    /// parses are within 2^-53 relative): the worst corner's value, computed in f64, plus a
    /// rigorous bound on that computation's rounding and on the parses', must stay below.
    pub fn holds_everywhere(&self, lo: &[f64], hi: &[f64]) -> bool {
        const U: f64 = 1.0 / 9_007_199_254_740_992.0;
        if lo.iter().chain(hi).any(|v| v.is_nan()) {
            return false;
        }
        let (mut worst, mut magnitude) = (0.0f64, 0.0f64);
        for ((&c, &l), &h) in self.coef.iter().zip(lo).zip(hi) {
            worst += (c * l).max(c * h);
            magnitude += c.abs() * l.abs().max(h.abs());
        }
        // A sum of k products: gamma(k) (~k u) times the sum of magnitudes; each coefficient's
        // parse adds u of its term, the right-hand side's u of itself; doubled for the rounding
        // of this very computation, plus an absolute 1e-300 for underflow.
        let k = self.coef.len() as f64 + 2.0;
        let pad = 2.0 * ((k + 1.0) * U * magnitude + 2.0 * U * self.rhs.abs()) + 1e-300;
        worst.is_finite() && worst + pad <= self.rhs
    }
}

impl Case {
    /// Whether `x` lies in the box, widened by `tol` (false for a wrong length or a NaN).
    pub fn contains(&self, x: &[f64], tol: f64) -> bool {
        x.len() == self.lower.len()
            && x.iter().zip(&self.lower).zip(&self.upper).all(|((&v, &lo), &hi)| v >= lo - tol && v <= hi + tol)
    }

    /// Whether some disjunct holds for `y` up to `tol`.
    pub fn output_holds(&self, y: &[f64], tol: f64) -> bool {
        self.disjuncts.iter().any(|conj| conj.iter().all(|c| c.holds(y, tol)))
    }

    /// Whether `x` lies strictly inside the box, or on an end whose value is 0 (a box end is
    /// a decimal whose f64 parse may be off by 2^-53 relative, which strictness covers).
    pub fn contains_strictly(&self, x: &[f64]) -> bool {
        x.len() == self.lower.len()
            && x.iter().zip(&self.lower).zip(&self.upper).all(|((&v, &lo), &hi)| (v > lo || v == 0.0 && lo == 0.0) && (v < hi || v == 0.0 && hi == 0.0))
    }
}

impl Property {
    /// Whether `(x, y)` is a counterexample, every comparison relaxed by `tol`; used to check
    /// a `sat` answer. False when a length does not match the declared variables.
    pub fn is_counterexample(&self, x: &[f64], y: &[f64], tol: f64) -> bool {
        x.len() == self.num_inputs
            && y.len() == self.num_outputs
            && self.cases.iter().any(|case| case.contains(x, tol) && case.output_holds(y, tol))
    }

    /// Whether `x` is a counterexample in real arithmetic: strictly inside a case's box, with
    /// every constraint of one of its disjuncts holding for every output in `[y_lo, y_hi]`
    /// (rigorous enclosures of the real network's outputs at `x`).
    pub fn is_real_counterexample(&self, x: &[f64], y_lo: &[f64], y_hi: &[f64]) -> bool {
        x.len() == self.num_inputs
            && y_lo.len() == self.num_outputs
            && y_hi.len() == self.num_outputs
            && self.cases.iter().any(|case| {
                case.contains_strictly(x) && case.disjuncts.iter().any(|conj| conj.iter().all(|c| c.holds_everywhere(y_lo, y_hi)))
            })
    }

    /// The property as VNN-LIB text that [`parse`] reads back to an equal `Property`
    /// (numbers are printed with Rust's shortest round-trip formatting).
    pub fn to_vnnlib(&self) -> String {
        let mut out = String::new();
        for i in 0..self.num_inputs {
            let _ = writeln!(out, "(declare-const X_{i} Real)");
        }
        for j in 0..self.num_outputs {
            let _ = writeln!(out, "(declare-const Y_{j} Real)");
        }
        if let [case] = self.cases.as_slice() {
            // The usual competition layout: one assert per bound, then the output condition.
            for (i, (lo, hi)) in case.lower.iter().zip(&case.upper).enumerate() {
                let _ = writeln!(out, "(assert (>= X_{i} {lo:?}))\n(assert (<= X_{i} {hi:?}))");
            }
            let _ = writeln!(out, "(assert {})", disjunction_text(&case.disjuncts));
            return out;
        }
        out.push_str("(assert (or\n");
        for case in &self.cases {
            out.push_str("  (and");
            for (i, (lo, hi)) in case.lower.iter().zip(&case.upper).enumerate() {
                let _ = write!(out, " (>= X_{i} {lo:?}) (<= X_{i} {hi:?})");
            }
            let _ = writeln!(out, "\n    {})", disjunction_text(&case.disjuncts));
        }
        out.push_str("))\n");
        out
    }
}

fn disjunction_text(disjuncts: &[Vec<Constraint>]) -> String {
    let mut out = String::from("(or");
    for conj in disjuncts {
        out.push_str(" (and");
        for c in conj {
            out.push(' ');
            out.push_str(&constraint_text(c));
        }
        out.push(')');
    }
    out.push(')');
    out
}

fn constraint_text(c: &Constraint) -> String {
    let terms: Vec<String> = c
        .coef
        .iter()
        .enumerate()
        .filter(|(_, &a)| a != 0.0)
        .map(|(j, a)| if *a == 1.0 { format!("Y_{j}") } else { format!("(* {a:?} Y_{j})") })
        .collect();
    let lhs = match terms.as_slice() {
        [] => "0".to_string(),
        [one] => one.clone(),
        _ => format!("(+ {})", terms.join(" ")),
    };
    format!("(<= {lhs} {:?})", c.rhs)
}

/// Reads a property file (plain text, or gzip-compressed as some benchmark sets ship them).
/// Errors name the file: `path: line 12:3: undeclared variable 'X_9'`.
pub fn read(path: &Path) -> Result<Property> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) { gunzip(&bytes).map_err(|e| Error::file(path, e))? } else { bytes };
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::file(path, format!("not UTF-8 text: {e}")))?;
    parse(text).map_err(|e| Error::file(path, e))
}

fn gunzip(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_GZIP_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt gzip data: {e}"))?;
    if out.len() as u64 > MAX_GZIP_BYTES {
        return Err(format!("decompresses to more than {MAX_GZIP_BYTES} bytes"));
    }
    Ok(out)
}

/// Result of the reading steps; shared by the submodules.
type Parsed<T> = std::result::Result<T, ParseError>;

/// Parses a property from VNN-LIB text (see the module documentation for what is accepted).
pub fn parse(text: &str) -> std::result::Result<Property, ParseError> {
    let mut lexer = Lexer::new(text);
    let mut reader = Reader::default();
    while let Some((items, pos)) = read_command(&mut lexer)? {
        reader.command(&items, pos)?;
    }
    reader.finish()
}
