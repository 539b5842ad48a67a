//! Commands, formulas and linear terms: reads declarations and asserts, evaluates arithmetic
//! terms to linear expressions (rejecting non-linear ones), and normalises each comparison to
//! `sum a_k v_k <= b`, classified as an input bound or an output constraint. The formulas are
//! combined in disjunctive normal form by the `normal_form` module.

use super::normal_form::{Atom, AtomKind, Budget, Builder, Dnf};
use super::sexpr::{clip, err_nowhere, is_numeral, Pos, Sexp};
use super::{Parsed, Property};
use std::collections::HashMap;
use std::fmt;

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

#[derive(Default)]
pub(super) struct Reader {
    /// Declared variables with where they were declared.
    declared: HashMap<Var, Pos>,
    atoms: Vec<Atom>,
    /// Conjunction of the asserts read so far.
    asserted: Option<Dnf>,
    budget: Budget,
}

impl Reader {
    pub(super) fn command(&mut self, items: &[Sexp<'_>], pos: Pos) -> Parsed<()> {
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
    pub(super) fn finish(self) -> Parsed<Property> {
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
