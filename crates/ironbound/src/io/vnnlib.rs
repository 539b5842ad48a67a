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

use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::path::Path;

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
}

impl Property {
    /// Whether `(x, y)` is a counterexample, every comparison relaxed by `tol`; used to check
    /// a `sat` answer. False when a length does not match the declared variables.
    pub fn is_counterexample(&self, x: &[f64], y: &[f64], tol: f64) -> bool {
        x.len() == self.num_inputs
            && y.len() == self.num_outputs
            && self.cases.iter().any(|case| case.contains(x, tol) && case.output_holds(y, tol))
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

/// Parses a property from VNN-LIB text (see the module documentation for what is accepted).
pub fn parse(text: &str) -> std::result::Result<Property, ParseError> {
    let mut lexer = Lexer::new(text);
    let mut reader = Reader::default();
    while let Some((items, pos)) = read_command(&mut lexer)? {
        reader.command(&items, pos)?;
    }
    reader.finish()
}

// ---------------------------------------------------------------------------------------------
// Lexing and s-expressions

/// A place in the text, 1-based, columns counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    fn err(self, message: impl Into<String>) -> ParseError {
        ParseError { line: Some(self.line), column: Some(self.column), message: message.into() }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}", self.line, self.column)
    }
}

fn err_nowhere(message: impl Into<String>) -> ParseError {
    ParseError { line: None, column: None, message: message.into() }
}

enum Token<'a> {
    Open,
    Close,
    Atom(&'a str),
}

struct Lexer<'a> {
    text: &'a str,
    at: usize,
    pos: Pos,
}

/// Bytes that end an atom. All are ASCII, so atoms are sliced at character boundaries.
fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'(' | b')' | b';')
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer { text, at: 0, pos: Pos { line: 1, column: 1 } }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn bump(&mut self) {
        let Some(b) = self.peek() else { return };
        self.at += 1;
        if b == b'\n' {
            self.pos = Pos { line: self.pos.line + 1, column: 1 };
        } else if b & 0xC0 != 0x80 {
            // A UTF-8 continuation byte does not start a new character.
            self.pos.column += 1;
        }
    }

    fn next_token(&mut self) -> Option<(Token<'a>, Pos)> {
        loop {
            let b = self.peek()?;
            let pos = self.pos;
            match b {
                b';' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump();
                    }
                }
                b'(' | b')' => {
                    self.bump();
                    return Some((if b == b'(' { Token::Open } else { Token::Close }, pos));
                }
                _ if b.is_ascii_whitespace() => self.bump(),
                _ => {
                    let start = self.at;
                    while self.peek().is_some_and(|c| !is_delimiter(c)) {
                        self.bump();
                    }
                    return Some((Token::Atom(self.text.get(start..self.at).unwrap_or("\u{fffd}")), pos));
                }
            }
        }
    }
}

enum Sexp<'a> {
    Atom(&'a str, Pos),
    List(Vec<Sexp<'a>>, Pos),
}

impl Sexp<'_> {
    fn pos(&self) -> Pos {
        match self {
            Sexp::Atom(_, pos) | Sexp::List(_, pos) => *pos,
        }
    }

    /// Short description for messages: the atom itself, or the list's head.
    fn describe(&self) -> String {
        match self {
            Sexp::Atom(s, _) => format!("'{}'", clip(s)),
            Sexp::List(items, _) => match items.first() {
                Some(Sexp::Atom(head, _)) => format!("'({} ...)'", clip(head)),
                Some(Sexp::List(..)) => "'((...) ...)'".to_string(),
                None => "'()'".to_string(),
            },
        }
    }
}

/// Keeps messages one short line even for a megabyte-long atom.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

/// Reads the next top-level command `( ... )` with an explicit stack (no recursion), or None
/// at the end of the file.
fn read_command<'a>(lexer: &mut Lexer<'a>) -> std::result::Result<Option<(Vec<Sexp<'a>>, Pos)>, ParseError> {
    let open = match lexer.next_token() {
        None => return Ok(None),
        Some((Token::Open, pos)) => pos,
        Some((Token::Close, pos)) => return Err(pos.err("unexpected ')' with no matching '('")),
        Some((Token::Atom(s), pos)) => return Err(pos.err(format!("unexpected '{}' outside a command; expected '('", clip(s)))),
    };
    let mut stack: Vec<(Vec<Sexp<'a>>, Pos)> = vec![(Vec::new(), open)];
    loop {
        let Some((token, pos)) = lexer.next_token() else {
            let unclosed = stack.last().map_or(open, |(_, p)| *p);
            return Err(lexer.pos.err(format!("expected ')' but the file ended (the '(' at {unclosed} is never closed)")));
        };
        match token {
            Token::Open if stack.len() >= MAX_DEPTH => {
                return Err(pos.err(format!("parentheses nested deeper than {MAX_DEPTH} levels")))
            }
            Token::Open => stack.push((Vec::new(), pos)),
            Token::Atom(s) => {
                if let Some((items, _)) = stack.last_mut() {
                    items.push(Sexp::Atom(s, pos));
                }
            }
            Token::Close => {
                let Some((items, start)) = stack.pop() else { return Err(pos.err("unbalanced ')'")) };
                match stack.last_mut() {
                    Some((parent, _)) => parent.push(Sexp::List(items, start)),
                    None => return Ok(Some((items, start))),
                }
            }
        }
    }
}

/// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`, checked by hand because
/// Rust's float parser also accepts `inf`, `NaN` and `infinity`.
fn is_numeral(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

// ---------------------------------------------------------------------------------------------
// Variables and linear expressions

/// A declared variable; inputs sort before outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Var {
    X(usize),
    Y(usize),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::X(i) => write!(f, "X_{i}"),
            Var::Y(j) => write!(f, "Y_{j}"),
        }
    }
}

/// `X_<i>` or `Y_<j>` with a canonical decimal index (no sign, no leading zero), so that two
/// different names never denote the same variable.
fn var_name(s: &str) -> Option<Var> {
    let (kind, digits) = if let Some(d) = s.strip_prefix("X_") {
        (Var::X as fn(usize) -> Var, d)
    } else {
        (Var::Y as fn(usize) -> Var, s.strip_prefix("Y_")?)
    };
    let canonical =
        !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok().map(kind)
}

/// `sum terms + constant`; after `normalise` the terms are sorted by variable, merged, and
/// free of zero coefficients.
#[derive(Clone, Debug)]
struct Linear {
    terms: Vec<(Var, f64)>,
    constant: f64,
}

impl Linear {
    fn constant(c: f64) -> Self {
        Linear { terms: Vec::new(), constant: c }
    }

    fn normalise(mut self) -> Self {
        self.terms.sort_by_key(|&(v, _)| v);
        let mut merged: Vec<(Var, f64)> = Vec::with_capacity(self.terms.len());
        for (v, c) in self.terms {
            match merged.last_mut() {
                Some((last, sum)) if *last == v => *sum += c,
                _ => merged.push((v, c)),
            }
        }
        merged.retain(|&(_, c)| c != 0.0);
        Linear { terms: merged, constant: self.constant }
    }

    fn scaled(mut self, k: f64) -> Self {
        for (_, c) in &mut self.terms {
            *c *= k;
        }
        self.constant *= k;
        self.normalise()
    }

    fn is_constant(&self) -> bool {
        self.terms.is_empty()
    }

    /// Sum of several (normalised) expressions, in one sort rather than pairwise merges so a
    /// long `(+ ...)` stays n log n.
    fn sum(parts: impl IntoIterator<Item = Linear>) -> Self {
        let mut total = Linear::constant(0.0);
        for p in parts {
            total.terms.extend(p.terms);
            total.constant += p.constant;
        }
        total.normalise()
    }
}

// ---------------------------------------------------------------------------------------------
// Constraints and disjunctive normal form

/// A normalised comparison that is not constant.
enum AtomKind {
    /// `X_index <= value` (upper) or `X_index >= value`.
    Bound { index: usize, upper: bool, value: f64 },
    /// `sum coef_j Y_j <= rhs`, sparse and sorted.
    Output { coef: Vec<(usize, f64)>, rhs: f64 },
}

struct Atom {
    kind: AtomKind,
    pos: Pos,
}

/// A formula in disjunctive normal form over atom ids: `common AND (OR of terms)`, each term a
/// conjunction. Keeping the shared conjunction apart means `(and bounds... (or a b))` does
/// not copy the bounds into every disjunct until the final grouping. Invariants: no terms is
/// `false`; a single term is always the empty one (it is moved into `common`).
struct Dnf {
    common: Vec<usize>,
    terms: Vec<Vec<usize>>,
    /// Total length of `terms`, kept to price expansions without rescanning.
    size: usize,
}

impl Dnf {
    fn truth() -> Self {
        Dnf { common: Vec::new(), terms: vec![Vec::new()], size: 0 }
    }

    fn falsity() -> Self {
        Dnf { common: Vec::new(), terms: Vec::new(), size: 0 }
    }

    fn atom(id: usize) -> Self {
        Dnf { common: vec![id], terms: vec![Vec::new()], size: 0 }
    }

    fn is_false(&self) -> bool {
        self.terms.is_empty()
    }

    /// A disjunction of `terms`, whose lengths add up to `size`.
    fn from_terms(mut terms: Vec<Vec<usize>>, size: usize) -> Self {
        if terms.len() == 1 {
            let common = terms.pop().unwrap_or_default();
            return Dnf { common, terms: vec![Vec::new()], size: 0 };
        }
        Dnf { common: Vec::new(), terms, size }
    }

    /// The terms with `common` copied into each, and their total length.
    fn expanded(self, budget: &mut Budget) -> std::result::Result<(Vec<Vec<usize>>, usize), ParseError> {
        if self.common.is_empty() {
            return Ok((self.terms, self.size));
        }
        let copies = self.terms.len().saturating_mul(self.common.len());
        budget.charge(copies.saturating_add(self.size))?;
        let terms = self
            .terms
            .into_iter()
            .map(|t| {
                let mut full = self.common.clone();
                full.extend(t);
                full
            })
            .collect();
        Ok((terms, copies.saturating_add(self.size)))
    }

    fn and(mut self, other: Dnf, budget: &mut Budget) -> std::result::Result<Dnf, ParseError> {
        if self.is_false() || other.is_false() {
            return Ok(Dnf::falsity());
        }
        self.common.extend(other.common);
        if other.terms.len() == 1 {
            return Ok(self);
        }
        if self.terms.len() == 1 {
            return Ok(Dnf { common: self.common, terms: other.terms, size: other.size });
        }
        let count = self.terms.len().saturating_mul(other.terms.len());
        check_disjuncts(count)?;
        let size = self.terms.len().saturating_mul(other.size).saturating_add(other.terms.len().saturating_mul(self.size));
        budget.charge(size.saturating_add(count))?;
        let mut terms = Vec::with_capacity(count);
        for a in &self.terms {
            for b in &other.terms {
                let mut t = Vec::with_capacity(a.len() + b.len());
                t.extend_from_slice(a);
                t.extend_from_slice(b);
                terms.push(t);
            }
        }
        Ok(Dnf { common: self.common, terms, size })
    }

    fn or(self, other: Dnf, budget: &mut Budget) -> std::result::Result<Dnf, ParseError> {
        if self.is_false() {
            return Ok(other);
        }
        if other.is_false() {
            return Ok(self);
        }
        // Moving the accumulated terms (their `common` is empty) keeps a wide `or` linear.
        let (mut terms, size) = self.expanded(budget)?;
        let (more, more_size) = other.expanded(budget)?;
        terms.extend(more);
        check_disjuncts(terms.len())?;
        Ok(Dnf::from_terms(terms, size.saturating_add(more_size)))
    }
}

fn check_disjuncts(count: usize) -> std::result::Result<(), ParseError> {
    if count > MAX_DISJUNCTS {
        return Err(err_nowhere(format!(
            "the property has more than {MAX_DISJUNCTS} disjuncts in disjunctive normal form; split it into several files"
        )));
    }
    Ok(())
}

/// Counts the constraint copies made while expanding, to refuse files whose expansion would
/// take more memory or time than any real benchmark needs.
#[derive(Default)]
struct Budget {
    used: usize,
}

impl Budget {
    fn charge(&mut self, amount: usize) -> std::result::Result<(), ParseError> {
        self.used = self.used.saturating_add(amount);
        if self.used > MAX_EXPANSION {
            return Err(err_nowhere(format!(
                "the property is too large once expanded to disjunctive normal form (more than {MAX_EXPANSION} constraint copies); split it into several files"
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Commands and formulas

#[derive(Default)]
struct Reader {
    /// Declared variables with where they were declared.
    declared: HashMap<Var, Pos>,
    atoms: Vec<Atom>,
    /// Conjunction of the asserts read so far.
    asserted: Option<Dnf>,
    budget: Budget,
}

type Parsed<T> = std::result::Result<T, ParseError>;

impl Reader {
    fn command(&mut self, items: &[Sexp<'_>], pos: Pos) -> Parsed<()> {
        let Some(Sexp::Atom(head, _)) = items.first() else {
            return Err(pos.err("expected a command such as (assert ...) or (declare-const ...)"));
        };
        match *head {
            "declare-const" => match items {
                [_, name, ty] => self.declare(name, ty),
                _ => Err(pos.err("expected (declare-const NAME Real)")),
            },
            "declare-fun" => match items {
                [_, name, Sexp::List(args, _), ty] if args.is_empty() => self.declare(name, ty),
                _ => Err(pos.err("expected (declare-fun NAME () Real)")),
            },
            "assert" => match items {
                [_, formula] => {
                    let dnf = self.formula(formula)?;
                    let all = match self.asserted.take() {
                        Some(previous) => previous.and(dnf, &mut self.budget)?,
                        None => dnf,
                    };
                    self.asserted = Some(all);
                    Ok(())
                }
                _ => Err(pos.err("expected exactly one formula in (assert ...)")),
            },
            // Solver directives that some files carry; they do not change the property.
            "check-sat" | "get-model" | "exit" | "set-logic" | "set-info" | "set-option" => Ok(()),
            other => Err(pos.err(format!("unknown command '{}' (expected declare-const or assert)", clip(other)))),
        }
    }

    fn declare(&mut self, name: &Sexp<'_>, ty: &Sexp<'_>) -> Parsed<()> {
        let Sexp::Atom(text, pos) = name else { return Err(name.pos().err("expected a variable name")) };
        let Some(var) = var_name(text) else {
            return Err(
                pos.err(format!("unsupported variable name '{}': expected X_<i> for inputs or Y_<j> for outputs", clip(text)))
            );
        };
        match ty {
            Sexp::Atom("Real", _) => {}
            other => return Err(other.pos().err(format!("{var} has type {}; only Real is supported", other.describe()))),
        }
        if let Some(first) = self.declared.insert(var, *pos) {
            return Err(pos.err(format!("{var} is declared twice (first at {first})")));
        }
        Ok(())
    }

    fn formula(&mut self, e: &Sexp<'_>) -> Parsed<Dnf> {
        let (items, pos) = match e {
            Sexp::Atom("true", _) => return Ok(Dnf::truth()),
            Sexp::Atom("false", _) => return Ok(Dnf::falsity()),
            Sexp::Atom(..) => {
                return Err(e.pos().err(format!("expected a constraint such as (<= X_0 1), found {}", e.describe())))
            }
            Sexp::List(items, pos) => (items, *pos),
        };
        let Some(Sexp::Atom(head, _)) = items.first() else {
            return Err(pos.err(format!("expected a constraint such as (<= X_0 1), found {}", e.describe())));
        };
        let args = items.get(1..).unwrap_or_default();
        match *head {
            "and" => args.iter().try_fold(Dnf::truth(), |acc, a| {
                let d = self.formula(a)?;
                acc.and(d, &mut self.budget)
            }),
            "or" => args.iter().try_fold(Dnf::falsity(), |acc, a| {
                let d = self.formula(a)?;
                acc.or(d, &mut self.budget)
            }),
            "<=" | ">=" | "<" | ">" | "=" => self.comparison(head, args, pos),
            "not" | "=>" | "xor" | "ite" | "distinct" | "forall" | "exists" => {
                Err(pos.err(format!("unsupported connective '{head}': only and, or and comparisons are supported")))
            }
            other => Err(pos.err(format!("unknown constraint operator '{}'", clip(other)))),
        }
    }

    /// `(op t1 t2 ... tk)` is the conjunction of `t_i op t_{i+1}`.
    fn comparison(&mut self, op: &str, args: &[Sexp<'_>], pos: Pos) -> Parsed<Dnf> {
        if args.len() < 2 {
            return Err(pos.err(format!("'{op}' needs at least two arguments")));
        }
        let terms = args.iter().map(|a| self.term(a)).collect::<Parsed<Vec<_>>>()?;
        let mut result = Dnf::truth();
        for pair in terms.windows(2) {
            let [a, b] = pair else { continue };
            let mut parts = Vec::new();
            // a <= b is a - b <= 0; a >= b is b - a <= 0; a = b is both.
            if matches!(op, "<=" | "<" | "=") {
                parts.push(difference(a, b));
            }
            if matches!(op, ">=" | ">" | "=") {
                parts.push(difference(b, a));
            }
            for diff in parts {
                let dnf = self.atom(diff, pos)?;
                result = result.and(dnf, &mut self.budget)?;
            }
        }
        Ok(result)
    }

    /// Classifies `diff <= 0`: constant, input bound, or output constraint.
    fn atom(&mut self, diff: Linear, pos: Pos) -> Parsed<Dnf> {
        let rhs = -diff.constant + 0.0; // never -0.0
        if !rhs.is_finite() || diff.terms.iter().any(|(_, c)| !c.is_finite()) {
            return Err(pos.err("a number in this constraint is out of range after arithmetic"));
        }
        let kind = match diff.terms.as_slice() {
            [] => return Ok(if 0.0 <= rhs { Dnf::truth() } else { Dnf::falsity() }),
            [(Var::X(index), a)] => {
                // Adding 0.0 turns -0.0 into 0.0 so equal boxes compare equal bit for bit.
                let value = rhs / a + 0.0;
                if !value.is_finite() {
                    return Err(pos.err(format!("the bound on X_{index} is out of range")));
                }
                AtomKind::Bound { index: *index, upper: *a > 0.0, value }
            }
            terms if terms.iter().all(|(v, _)| matches!(v, Var::Y(_))) => AtomKind::Output {
                coef: terms.iter().filter_map(|&(v, c)| if let Var::Y(j) = v { Some((j, c)) } else { None }).collect(),
                rhs,
            },
            terms => {
                let what = if terms.iter().all(|(v, _)| matches!(v, Var::X(_))) {
                    "a constraint on a combination of several inputs"
                } else {
                    "a constraint that mixes inputs and outputs"
                };
                return Err(
                    pos.err(format!("unsupported property: {what}; inputs may only have bounds like (<= X_0 1) and (>= X_0 0)"))
                );
            }
        };
        self.atoms.push(Atom { kind, pos });
        Ok(Dnf::atom(self.atoms.len() - 1))
    }

    fn term(&self, e: &Sexp<'_>) -> Parsed<Linear> {
        match e {
            Sexp::Atom(s, pos) => self.leaf(s, *pos),
            Sexp::List(items, pos) => {
                let Some(Sexp::Atom(head, _)) = items.first() else {
                    return Err(pos.err(format!("expected a number, a variable or an arithmetic term, found {}", e.describe())));
                };
                let args = items.get(1..).unwrap_or_default();
                let values = args.iter().map(|a| self.term(a)).collect::<Parsed<Vec<_>>>()?;
                arithmetic(head, values, *pos)
            }
        }
    }

    fn leaf(&self, s: &str, pos: Pos) -> Parsed<Linear> {
        if is_numeral(s) {
            let value: f64 = s.parse().map_err(|_| pos.err(format!("invalid number '{}'", clip(s))))?;
            if !value.is_finite() {
                return Err(pos.err(format!("number '{}' is out of range", clip(s))));
            }
            return Ok(Linear::constant(value));
        }
        match var_name(s) {
            Some(var) if self.declared.contains_key(&var) => Ok(Linear { terms: vec![(var, 1.0)], constant: 0.0 }),
            Some(var) => Err(pos.err(format!("undeclared variable '{var}'"))),
            None => Err(pos.err(format!("'{}' is neither a number nor a declared variable", clip(s)))),
        }
    }

    /// Checks the declarations and turns the asserted normal form into cases.
    fn finish(self) -> Parsed<Property> {
        let num_inputs = self.count_declared(true)?;
        let num_outputs = self.count_declared(false)?;
        let Reader { atoms, asserted, budget, .. } = self;
        let dnf = asserted.unwrap_or_else(Dnf::truth);
        if dnf.is_false() {
            return Err(err_nowhere("the assertions contradict each other, so the property has no input box"));
        }
        let mut builder = Builder { atoms: &atoms, num_inputs, num_outputs, budget, cases: Vec::new() };
        builder.run(dnf)?;
        Ok(Property { num_inputs, num_outputs, cases: builder.cases })
    }

    /// Number of declared inputs (or outputs), checking they are numbered 0..n-1.
    fn count_declared(&self, inputs: bool) -> Parsed<usize> {
        let (letter, role) = if inputs { ('X', "input") } else { ('Y', "output") };
        let mut indices: Vec<(usize, Pos)> = self
            .declared
            .iter()
            .filter_map(|(v, p)| match (v, inputs) {
                (Var::X(i), true) | (Var::Y(i), false) => Some((*i, *p)),
                _ => None,
            })
            .collect();
        if indices.is_empty() {
            return Err(err_nowhere(format!("no {role} variables declared (expected (declare-const {letter}_0 Real) ...)")));
        }
        indices.sort_unstable_by_key(|&(i, _)| i);
        let n = indices.len();
        // Distinct indices all below n are exactly 0..n-1.
        if let Some(&(last, pos)) = indices.last().filter(|(i, _)| *i >= n) {
            let missing = indices.iter().enumerate().find(|(k, (i, _))| k != i).map_or(0, |(k, _)| k);
            return Err(pos.err(format!(
                "{letter}_{last} is declared but {letter}_{missing} is not ({role}s must be numbered {letter}_0, {letter}_1, ... without gaps)"
            )));
        }
        Ok(n)
    }
}

fn difference(a: &Linear, b: &Linear) -> Linear {
    Linear::sum([a.clone(), b.clone().scaled(-1.0)])
}

/// `(head args...)` on already evaluated linear arguments.
fn arithmetic(head: &str, mut args: Vec<Linear>, pos: Pos) -> Parsed<Linear> {
    match head {
        "+" => Ok(Linear::sum(args)),
        "-" => match args.len() {
            0 => Err(pos.err("'-' needs at least one argument")),
            1 => Ok(args.remove(0).scaled(-1.0)),
            _ => {
                let first = args.remove(0);
                Ok(Linear::sum(std::iter::once(first).chain(args.into_iter().map(|a| a.scaled(-1.0)))))
            }
        },
        "*" => {
            if args.is_empty() {
                return Err(pos.err("'*' needs at least one argument"));
            }
            // Linear means at most one factor that is not a constant.
            let mut variable: Option<Linear> = None;
            let mut factor = 1.0;
            for a in args {
                if a.is_constant() {
                    factor *= a.constant;
                } else if variable.is_some() {
                    return Err(pos.err(
                        "non-linear term: a product of two expressions with variables (only constant coefficients are supported)",
                    ));
                } else {
                    variable = Some(a);
                }
            }
            Ok(variable.map_or(Linear::constant(factor), |v| v.scaled(factor)))
        }
        "/" => match args.as_slice() {
            [_, d] if !d.is_constant() => Err(pos.err("non-linear term: division by an expression with variables")),
            [_, d] if d.constant == 0.0 => Err(pos.err("division by zero")),
            [_, d] => {
                let k = 1.0 / d.constant;
                Ok(args.remove(0).scaled(k))
            }
            _ => Err(pos.err("'/' needs exactly two arguments")),
        },
        other => Err(pos.err(format!("unknown arithmetic operator '{}' (expected +, -, * or /)", clip(other)))),
    }
}

// ---------------------------------------------------------------------------------------------
// From normal form to cases

/// Lower and upper bounds of every input.
type Bounds = (Vec<f64>, Vec<f64>);

/// Splits the disjuncts into boxes and output conjunctions and groups them by box.
struct Builder<'a> {
    atoms: &'a [Atom],
    num_inputs: usize,
    num_outputs: usize,
    budget: Budget,
    cases: Vec<Case>,
}

impl Builder<'_> {
    fn run(&mut self, dnf: Dnf) -> Parsed<()> {
        check_disjuncts(dnf.terms.len())?;
        let (base_bounds, base_outputs) = self.split(dnf.common);
        let base_box = self.tightened(Self::unbounded(self.num_inputs), &base_bounds);
        // Disjuncts with the same set of extra bound atoms share a box without rebuilding it;
        // different sets that happen to give the same box are merged by `box_case`.
        let mut case_of_bounds: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut box_case: HashMap<Vec<u64>, usize> = HashMap::new();
        let mut seen: HashSet<(usize, Vec<usize>)> = HashSet::new();
        for term in dnf.terms {
            let (mut bounds, mut outputs) = self.split(term);
            bounds.sort_unstable();
            bounds.dedup();
            let case = match case_of_bounds.get(&bounds) {
                Some(&c) => c,
                None => {
                    let c = self.case_for(&base_box, &base_bounds, &bounds, &mut box_case)?;
                    case_of_bounds.insert(bounds, c);
                    c
                }
            };
            // Sorting atom ids puts constraints in the order they appear in the file.
            outputs.extend_from_slice(&base_outputs);
            outputs.sort_unstable();
            outputs.dedup();
            if seen.insert((case, outputs.clone())) {
                self.budget.charge(outputs.len().saturating_mul(self.num_outputs + 1))?;
                let conj = outputs.iter().filter_map(|&id| self.constraint(id)).collect();
                if let Some(c) = self.cases.get_mut(case) {
                    c.disjuncts.push(conj);
                }
            }
        }
        Ok(())
    }

    /// Atom ids split into input bounds and output constraints.
    fn split(&self, ids: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
        ids.into_iter().partition(|&id| matches!(self.atoms.get(id), Some(Atom { kind: AtomKind::Bound { .. }, .. })))
    }

    fn unbounded(n: usize) -> Bounds {
        (vec![f64::NEG_INFINITY; n], vec![f64::INFINITY; n])
    }

    fn tightened(&self, (mut lower, mut upper): Bounds, bounds: &[usize]) -> Bounds {
        for &id in bounds {
            if let Some(Atom { kind: AtomKind::Bound { index, upper: is_upper, value }, .. }) = self.atoms.get(id) {
                let side = if *is_upper { upper.get_mut(*index) } else { lower.get_mut(*index) };
                if let Some(b) = side {
                    *b = if *is_upper { b.min(*value) } else { b.max(*value) };
                }
            }
        }
        (lower, upper)
    }

    /// The case index of the box `base_box` tightened by `bounds`, creating it if new.
    fn case_for(
        &mut self,
        base_box: &Bounds,
        base_bounds: &[usize],
        bounds: &[usize],
        box_case: &mut HashMap<Vec<u64>, usize>,
    ) -> Parsed<usize> {
        self.budget.charge(self.num_inputs.saturating_mul(4))?;
        let (lower, upper) = self.tightened(base_box.clone(), bounds);
        self.validate(&lower, &upper, base_bounds, bounds)?;
        let key: Vec<u64> = lower.iter().chain(&upper).map(|v| v.to_bits()).collect();
        if let Some(&c) = box_case.get(&key) {
            return Ok(c);
        }
        self.cases.push(Case { lower, upper, disjuncts: Vec::new() });
        box_case.insert(key, self.cases.len() - 1);
        Ok(self.cases.len() - 1)
    }

    fn validate(&self, lower: &[f64], upper: &[f64], base_bounds: &[usize], bounds: &[usize]) -> Parsed<()> {
        let several_boxes = !bounds.is_empty();
        for (i, (&lo, &hi)) in lower.iter().zip(upper).enumerate() {
            let missing = if lo == f64::NEG_INFINITY {
                Some("lower")
            } else if hi == f64::INFINITY {
                Some("upper")
            } else {
                None
            };
            if let Some(side) = missing {
                let which = if several_boxes { " in one of the input boxes" } else { "" };
                return Err(err_nowhere(format!(
                    "X_{i} has no {side} bound{which}: every input needs (>= X_{i} c) and (<= X_{i} c)"
                )));
            }
            if lo > hi {
                let message = format!("X_{i}: lower bound {lo} is above upper bound {hi}");
                let at = base_bounds.iter().chain(bounds).find_map(|&id| match self.atoms.get(id) {
                    Some(Atom { kind: AtomKind::Bound { index, upper: false, value }, pos }) if *index == i && *value == lo => {
                        Some(*pos)
                    }
                    _ => None,
                });
                return Err(match at {
                    Some(pos) => pos.err(message),
                    None => err_nowhere(message),
                });
            }
        }
        Ok(())
    }

    fn constraint(&self, id: usize) -> Option<Constraint> {
        let Some(Atom { kind: AtomKind::Output { coef, rhs }, .. }) = self.atoms.get(id) else { return None };
        let mut dense = vec![0.0; self.num_outputs];
        for &(j, c) in coef {
            if let Some(slot) = dense.get_mut(j) {
                *slot = c;
            }
        }
        Some(Constraint { coef: dense, rhs: *rhs })
    }
}
