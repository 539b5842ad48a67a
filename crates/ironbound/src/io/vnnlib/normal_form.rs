//! Disjunctive normal form and grouping into cases: the conjunction of all asserts is kept as
//! `common AND (OR of terms)` over atom ids, with its expansion capped by
//! [`MAX_DISJUNCTS`](super::MAX_DISJUNCTS) and [`MAX_EXPANSION`](super::MAX_EXPANSION) so a small
//! file cannot exhaust memory; each final disjunct is then split into an input box and output
//! constraints, and disjuncts with the same box become one [`Case`](super::Case).

use super::sexpr::{err_nowhere, Pos};
use super::{Case, Constraint, ParseError, Parsed, MAX_DISJUNCTS, MAX_EXPANSION};
use std::collections::{HashMap, HashSet};

/// A normalised comparison that is not constant.
pub(super) enum AtomKind {
    /// `X_index <= value` (upper) or `X_index >= value`.
    Bound { index: usize, upper: bool, value: f64 },
    /// `sum coef_j Y_j <= rhs`, sparse and sorted.
    Output { coef: Vec<(usize, f64)>, rhs: f64 },
}

pub(super) struct Atom {
    pub(super) kind: AtomKind,
    pub(super) pos: Pos,
}

/// A formula in disjunctive normal form over atom ids: `common AND (OR of terms)`, each term a
/// conjunction. Keeping the shared conjunction apart means `(and bounds... (or a b))` does
/// not copy the bounds into every disjunct until the final grouping. Invariants: no terms is
/// `false`; a single term is always the empty one (it is moved into `common`).
pub(super) struct Dnf {
    common: Vec<usize>,
    terms: Vec<Vec<usize>>,
    /// Total length of `terms`, kept to price expansions without rescanning.
    size: usize,
}

impl Dnf {
    pub(super) fn truth() -> Self {
        Dnf { common: Vec::new(), terms: vec![Vec::new()], size: 0 }
    }

    pub(super) fn falsity() -> Self {
        Dnf { common: Vec::new(), terms: Vec::new(), size: 0 }
    }

    pub(super) fn atom(id: usize) -> Self {
        Dnf { common: vec![id], terms: vec![Vec::new()], size: 0 }
    }

    pub(super) fn is_false(&self) -> bool {
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

    pub(super) fn and(mut self, other: Dnf, budget: &mut Budget) -> std::result::Result<Dnf, ParseError> {
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

    pub(super) fn or(self, other: Dnf, budget: &mut Budget) -> std::result::Result<Dnf, ParseError> {
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
pub(super) struct Budget {
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

/// Lower and upper bounds of every input.
type Bounds = (Vec<f64>, Vec<f64>);

/// Splits the disjuncts into boxes and output conjunctions and groups them by box.
pub(super) struct Builder<'a> {
    pub(super) atoms: &'a [Atom],
    pub(super) num_inputs: usize,
    pub(super) num_outputs: usize,
    pub(super) budget: Budget,
    pub(super) cases: Vec<Case>,
}

impl Builder<'_> {
    pub(super) fn run(&mut self, dnf: Dnf) -> Parsed<()> {
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
