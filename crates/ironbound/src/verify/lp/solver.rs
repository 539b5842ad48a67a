//! A linear (or mixed-integer) program on HiGHS, mirrored in our own sparse rows so that every
//! LP bound we report is recomputed from a dual solution rather than trusted from the solver.
//!
//! Why: HiGHS works with feasibility tolerances (1e-7), so its optimal objective can sit a
//! little on the wrong side of the true minimum. For any row multipliers y, weak duality gives
//! `c.x >= sum_i min(y_i lo_i, y_i hi_i) + sum_j min(r_j l_j, r_j u_j)` with `r = c - A^T y`,
//! whatever y is (Neumaier & Shcherbina 2004). We evaluate that with HiGHS's duals in f64 and
//! subtract a rounding allowance, so an LP bound is valid even when the solver is sloppy or
//! stopped early. MILP answers have no such certificate; their counterexamples are checked by a
//! forward pass instead (see `milp.rs`).

use crate::error::{Error, Result};
use highs::{Col, ColProblem, HighsModelStatus, Model, Sense};
use std::time::Duration;

/// One column's bounds and its HiGHS handle.
#[derive(Clone, Copy, Debug)]
struct Column {
    lo: f64,
    hi: f64,
    handle: Col,
}

#[derive(Clone, Debug)]
struct RowData {
    terms: Vec<(usize, f64)>,
    lo: f64,
    hi: f64,
}

/// How one MILP ended.
#[derive(Clone, Debug, PartialEq)]
pub enum MilpOutcome {
    /// No feasible point with objective below the cutoff: the minimum is >= cutoff.
    AboveCutoff,
    /// A point with objective below the cutoff (the column values).
    Below { objective: f64, point: Vec<f64> },
    /// Solved to optimality (no cutoff); `lower` is the proven bound (objective - gap).
    Optimal { objective: f64, lower: f64, point: Vec<f64> },
    /// The time limit ended the search; the best proven lower bound so far.
    TimedOut { lower: f64 },
    /// The solver reported something else (numerical trouble); nothing is claimed.
    Failed(String),
}

/// An LP solve: the certified lower bound, and HiGHS's point and objective (not certified).
#[derive(Clone, Debug)]
pub struct LpSolution {
    pub lower: f64,
    /// HiGHS found an optimal point (false: infeasible, or stopped early).
    pub optimal: bool,
    pub objective: f64,
    pub point: Vec<f64>,
}

pub struct Program {
    model: Model,
    cols: Vec<Column>,
    rows: Vec<RowData>,
    /// The costs HiGHS holds now.
    cost: Vec<f64>,
    has_integers: bool,
    /// Seconds one LP solve may take (`set_time_limit`).
    lp_time_limit: f64,
}

fn highs_error(e: impl std::fmt::Debug) -> Error {
    Error::internal(format!("HiGHS: {e:?}"))
}

impl Program {
    pub fn new() -> Result<Program> {
        let mut model = ColProblem::default().optimise(Sense::Minimise);
        model.make_quiet();
        // One thread per program: callers run programs of different samples in parallel.
        model.try_set_option("threads", 1i32).map_err(highs_error)?;
        model.try_set_option("mip_rel_gap", 0.0).map_err(highs_error)?;
        Ok(Program { model, cols: Vec::new(), rows: Vec::new(), cost: Vec::new(), has_integers: false, lp_time_limit: f64::INFINITY })
    }

    pub fn num_cols(&self) -> usize {
        self.cols.len()
    }

    /// A continuous column with finite bounds (the dual bound needs them finite).
    pub fn add_col(&mut self, lo: f64, hi: f64) -> Result<usize> {
        self.add(lo, hi, false)
    }

    pub fn add_binary(&mut self) -> Result<usize> {
        self.has_integers = true;
        self.add(0.0, 1.0, true)
    }

    fn add(&mut self, lo: f64, hi: f64, integer: bool) -> Result<usize> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::internal(format!("LP column with bounds [{lo}, {hi}]")));
        }
        let handle = self.model.try_add_column_with_integrality(0.0, lo..=hi, std::iter::empty(), integer).map_err(highs_error)?;
        self.cols.push(Column { lo, hi, handle });
        Ok(self.cols.len() - 1)
    }

    /// `lo <= sum terms <= hi` (either side may be infinite).
    pub fn add_row(&mut self, terms: Vec<(usize, f64)>, lo: f64, hi: f64) -> Result<()> {
        let factors: Vec<(Col, f64)> = terms.iter().map(|&(j, v)| (self.cols[j].handle, v)).collect();
        self.model.try_add_row(lo..=hi, factors).map_err(highs_error)?;
        self.rows.push(RowData { terms, lo, hi });
        Ok(())
    }

    pub fn set_col_bounds(&mut self, j: usize, lo: f64, hi: f64) -> Result<()> {
        let (lo, hi) = (lo.max(self.cols[j].lo), hi.min(self.cols[j].hi));
        let hi = hi.max(lo);
        let handle = self.cols[j].handle;
        self.model.change_column_bounds(handle, lo..=hi);
        self.cols[j] = Column { lo, hi, handle };
        Ok(())
    }

    /// Replaces column `j`'s bounds (the phase search fixes and releases its phase columns).
    pub fn replace_col_bounds(&mut self, j: usize, lo: f64, hi: f64) -> Result<()> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::internal(format!("LP column with bounds [{lo}, {hi}]")));
        }
        let handle = self.cols[j].handle;
        self.model.change_column_bounds(handle, lo..=hi);
        self.cols[j] = Column { lo, hi, handle };
        Ok(())
    }

    pub fn col_bounds(&self, j: usize) -> (f64, f64) {
        (self.cols[j].lo, self.cols[j].hi)
    }

    /// Limits every later LP solve to `limit` (None: no limit). A solve stopped by it still
    /// gives a valid bound, from the multipliers HiGHS holds then (the dual simplex keeps them
    /// dual feasible, so the bound only grows with time), just a looser one.
    pub fn set_time_limit(&mut self, limit: Option<Duration>) {
        self.lp_time_limit = limit.map_or(f64::INFINITY, |d| d.as_secs_f64().max(1e-3));
    }

    /// Simplex iterations before an LP counts as stalled: typical solves take a few thousand.
    fn iteration_limit(&self) -> i32 {
        (20 * (self.rows.len() + self.cols.len())).clamp(10_000, 1_000_000) as i32
    }

    /// Sets the costs, touching only the columns whose cost changes (programs are re-solved
    /// hundreds of times with objectives of a few hundred non-zeros).
    fn set_objective(&mut self, objective: &[(usize, f64)]) -> Vec<f64> {
        let mut c = vec![0.0; self.cols.len()];
        for &(j, v) in objective {
            c[j] += v;
        }
        self.cost.resize(self.cols.len(), 0.0);
        let model = &mut self.model;
        for (j, col) in self.cols.iter().enumerate() {
            if self.cost[j] != c[j] {
                model.change_column_cost(col.handle, c[j]);
                self.cost[j] = c[j];
            }
        }
        c
    }

    /// A guaranteed lower bound of `objective . x + constant` over the LP (integrality
    /// ignored), from the duals of HiGHS's solution. With `stop_above`, the dual simplex may
    /// stop as soon as it has proved the minimum exceeds that value.
    pub fn minimize(&mut self, objective: &[(usize, f64)], constant: f64, stop_above: Option<f64>) -> Result<f64> {
        Ok(self.solve_lp(objective, constant, stop_above)?.lower)
    }

    /// `minimize`, also returning HiGHS's primal point and objective.
    pub fn solve_lp(&mut self, objective: &[(usize, f64)], constant: f64, stop_above: Option<f64>) -> Result<LpSolution> {
        let c = self.set_objective(objective);
        let iterations = self.iteration_limit();
        let (cols, rows, time_limit) = (self.cols.len(), self.rows.len(), self.lp_time_limit);
        let started = std::time::Instant::now();
        let model = &mut self.model;
        let bound = stop_above.map(|s| s - constant).unwrap_or(f64::INFINITY);
        model.try_set_option("objective_bound", bound).map_err(highs_error)?;
        model.try_set_option("time_limit", time_limit).map_err(highs_error)?;
        // With binaries present, HiGHS would solve the MILP; its duals would bound nothing.
        model.try_set_option("solve_relaxation", true).map_err(highs_error)?;
        // Re-solves differ from the last one by a cost vector or a column bound: the simplex
        // warm-starts from the previous basis, which presolve would throw away.
        model.try_set_option("presolve", "off").map_err(highs_error)?;
        model.try_set_option("solver", "simplex").map_err(highs_error)?;
        model.try_set_option("simplex_iteration_limit", iterations).map_err(highs_error)?;
        let mut status = run(model);
        if !matches!(status, Ok(s) if s != HighsModelStatus::ReachedIterationLimit) {
            // The dual simplex stalls on some degenerate ReLU LPs (seen: 10^5 iterations and
            // more on 224 rows, warm or cold), and on CONV networks' LPs it once ended in an
            // error status; the interior point method with crossover, from a cleared solver,
            // solves them. The next solve goes back to the simplex.
            tracing::debug!("LP simplex ended with {status:?}; solving by interior point");
            // SAFETY: the live HiGHS instance of `model`.
            unsafe { highs_sys::Highs_clearSolver(model.as_mut_ptr()) };
            model.try_set_option("solver", "ipm").map_err(highs_error)?;
            status = run(model);
        }
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                // No solution to read. Any multipliers give a valid bound, none a useful
                // one: claim nothing (-inf), which every caller treats as "not proved".
                tracing::warn!("HiGHS failed on an LP of {rows} rows ({e}); its bound is not used");
                // SAFETY: the live HiGHS instance of `model`.
                unsafe { highs_sys::Highs_clearSolver(model.as_mut_ptr()) };
                return Ok(LpSolution { lower: f64::NEG_INFINITY, optimal: false, objective: f64::NAN, point: vec![0.0; cols] });
            }
        };
        tracing::trace!("LP of {rows} rows: {status:?} after {} simplex iterations, {:.3} s", int_info(model, c"simplex_iteration_count"), started.elapsed().as_secs_f64());
        let (point, duals) = read_solution(model, cols, rows);
        let objective = objective_value(model) + constant;
        let ray = (status == HighsModelStatus::Infeasible).then(|| dual_ray(model, rows)).flatten();
        let optimal = status == HighsModelStatus::Optimal;
        if let Some(ray) = ray {
            if self.proves_empty(&ray) {
                return Ok(LpSolution { lower: f64::INFINITY, optimal: false, objective, point });
            }
        }
        Ok(LpSolution { lower: self.dual_bound(&c, &duals) + constant, optimal, objective, point })
    }

    /// Whether row multipliers `ray` (either sign, conventions differ) prove the program has
    /// no point: the weak-duality bound with zero costs is positive, so 0 >= positive would
    /// hold at any point (Farkas; the bound is the same certified sum as `dual_bound`).
    fn proves_empty(&self, ray: &[f64]) -> bool {
        let zero = vec![0.0; self.cols.len()];
        let flipped: Vec<f64> = ray.iter().map(|v| -v).collect();
        self.dual_bound(&zero, ray) > 0.0 || self.dual_bound(&zero, &flipped) > 0.0
    }

    /// Weak-duality bound for multipliers `y`, with a rounding allowance.
    fn dual_bound(&self, c: &[f64], y: &[f64]) -> f64 {
        let mut r = c.to_vec();
        let mut total = 0.0f64;
        let mut magnitude = 0.0f64;
        let mut terms = 0usize;
        for (row, &yi) in self.rows.iter().zip(y) {
            // A multiplier may only use a finite side of its row: drop it otherwise.
            let side = if yi > 0.0 { row.lo } else { row.hi };
            if yi == 0.0 || !side.is_finite() || !yi.is_finite() {
                continue;
            }
            total += yi * side;
            magnitude += (yi * side).abs();
            for &(j, a) in &row.terms {
                r[j] -= yi * a;
                magnitude += (yi * a).abs() * self.cols[j].lo.abs().max(self.cols[j].hi.abs());
            }
            terms += row.terms.len() + 1;
        }
        for ((rj, col), cj) in r.iter().zip(&self.cols).zip(c) {
            let v = if *rj > 0.0 { rj * col.lo } else { rj * col.hi };
            total += v;
            // r_j's rounding is relative to |c_j| too (r_j may cancel to ~0).
            magnitude += v.abs() + cj.abs() * col.lo.abs().max(col.hi.abs());
        }
        terms += self.cols.len();
        // Each product and sum above rounds with relative error <= eps; their accumulated error
        // is below (terms + 2) eps times the sum of magnitudes.
        total - magnitude * (terms as f64 + 2.0) * f64::EPSILON
    }

    /// Minimises `objective . x + constant` with integrality. With `cutoff`, points whose
    /// objective is not below it are pruned and the search stops at the first point below it.
    pub fn solve_milp(&mut self, objective: &[(usize, f64)], constant: f64, cutoff: Option<f64>, time_limit: Duration) -> Result<MilpOutcome> {
        if !self.has_integers {
            // A pure LP: its dual certificate decides.
            let s = self.solve_lp(objective, constant, None)?;
            return Ok(match cutoff {
                Some(cut) if s.lower >= cut => MilpOutcome::AboveCutoff,
                Some(cut) if s.objective < cut => MilpOutcome::Below { objective: s.objective, point: s.point },
                Some(_) => MilpOutcome::Failed("LP optimum at the cutoff".into()),
                None => MilpOutcome::Optimal { objective: s.objective, lower: s.lower, point: s.point },
            });
        }
        self.set_objective(objective);
        let (cols, rows) = (self.cols.len(), self.rows.len());
        let model = &mut self.model;
        model.try_set_option("time_limit", time_limit.as_secs_f64().max(1e-3)).map_err(highs_error)?;
        // Options persist between solves: set both limits every time.
        let (bound, target) = cutoff.map(|c| (c - constant, c - constant)).unwrap_or((f64::INFINITY, f64::NEG_INFINITY));
        model.try_set_option("objective_bound", bound).map_err(highs_error)?;
        model.try_set_option("objective_target", target).map_err(highs_error)?;
        model.try_set_option("solve_relaxation", false).map_err(highs_error)?;
        model.try_set_option("presolve", "choose").map_err(highs_error)?;
        model.try_set_option("solver", "choose").map_err(highs_error)?;
        model.try_set_option("simplex_iteration_limit", i32::MAX).map_err(highs_error)?;
        let status = match run(model) {
            Ok(status) => status,
            Err(e) => return Ok(MilpOutcome::Failed(e)),
        };
        let point = |model: &mut Model| read_solution(model, cols, rows).0;
        let objective = objective_value(model) + constant;
        let mut dual = f64::NEG_INFINITY;
        // SAFETY: the live HiGHS instance of `model`; `dual` receives one double.
        if unsafe { highs_sys::Highs_getDoubleInfoValue(model.as_mut_ptr(), c"mip_dual_bound".as_ptr(), &mut dual) } == highs_sys::kHighsStatusError {
            dual = f64::NEG_INFINITY;
        }
        let dual = dual + constant;
        Ok(match status {
            HighsModelStatus::Infeasible if cutoff.is_some() => MilpOutcome::AboveCutoff,
            HighsModelStatus::ObjectiveBound => MilpOutcome::AboveCutoff,
            HighsModelStatus::ObjectiveTarget => MilpOutcome::Below { objective, point: point(model) },
            HighsModelStatus::Optimal => match cutoff {
                Some(cut) if objective < cut => MilpOutcome::Below { objective, point: point(model) },
                Some(_) => MilpOutcome::AboveCutoff,
                None => MilpOutcome::Optimal { objective, lower: dual.min(objective), point: point(model) },
            },
            HighsModelStatus::ReachedTimeLimit => MilpOutcome::TimedOut { lower: dual },
            other => MilpOutcome::Failed(format!("{other:?}")),
        })
    }
}

/// Runs HiGHS on `model` in place and returns its model status. The crate's `try_solve`
/// consumes the model and drops it on an error status, but a program must survive a failed
/// solve: the caller falls back to another solver or claims nothing, and solves again later.
fn run(model: &mut Model) -> std::result::Result<HighsModelStatus, String> {
    // HiGHS compares `time_limit` with a clock that runs across solves of the same instance:
    // without zeroing it, a program re-solved for minutes had every later solve stop at
    // once, after 0 iterations. Zeroed, the limit is per solve, as the callers mean it.
    // SAFETY: the live HiGHS instance of `model`.
    unsafe { highs_sys::Highs_zeroAllClocks(model.as_mut_ptr()) };
    // SAFETY: as above.
    let code = unsafe { highs_sys::Highs_run(model.as_mut_ptr()) };
    if code == highs_sys::kHighsStatusError {
        return Err("error status".into());
    }
    // SAFETY: as above.
    let status = unsafe { highs_sys::Highs_getModelStatus(model.as_mut_ptr()) };
    HighsModelStatus::try_from(status).map_err(|_| format!("unknown model status {status}"))
}

fn int_info(model: &mut Model, name: &std::ffi::CStr) -> i64 {
    let mut v: highs_sys::HighsInt = 0;
    // SAFETY: the live HiGHS instance of `model`; `v` receives one HighsInt.
    unsafe { highs_sys::Highs_getIntInfoValue(model.as_mut_ptr(), name.as_ptr(), &mut v) };
    i64::from(v)
}

fn objective_value(model: &mut Model) -> f64 {
    // SAFETY: the live HiGHS instance of `model`.
    unsafe { highs_sys::Highs_getObjectiveValue(model.as_mut_ptr()) }
}

/// The column values and row duals of the last solve.
fn read_solution(model: &mut Model, cols: usize, rows: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut col_value, mut col_dual) = (vec![0.0f64; cols], vec![0.0f64; cols]);
    let (mut row_value, mut row_dual) = (vec![0.0f64; rows], vec![0.0f64; rows]);
    // SAFETY: the live HiGHS instance of `model`, which has `cols` columns and `rows` rows;
    // HiGHS writes one value per column or row into each buffer.
    unsafe {
        highs_sys::Highs_getSolution(model.as_mut_ptr(), col_value.as_mut_ptr(), col_dual.as_mut_ptr(), row_value.as_mut_ptr(), row_dual.as_mut_ptr());
    }
    (col_value, row_dual)
}

/// HiGHS's dual ray of an infeasible LP (the `highs` crate does not wrap it).
fn dual_ray(model: &mut Model, rows: usize) -> Option<Vec<f64>> {
    let mut has: highs_sys::HighsInt = 0;
    let mut ray = vec![0.0f64; rows];
    // SAFETY: the live HiGHS instance of `model`; HiGHS writes one value per row into `ray`,
    // which has exactly that many.
    let status = unsafe { highs_sys::Highs_getDualRay(model.as_mut_ptr(), &mut has, ray.as_mut_ptr()) };
    (status != highs_sys::kHighsStatusError && has != 0).then_some(ray)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// min x + y s.t. x + 2y >= 2, 3x + y >= 3, 0 <= x, y <= 10: optimum 1.4 at (0.8, 0.6).
    #[test]
    fn dual_bound_matches_the_optimum_and_is_below_it() {
        let mut p = Program::new().unwrap();
        let x = p.add_col(0.0, 10.0).unwrap();
        let y = p.add_col(0.0, 10.0).unwrap();
        p.add_row(vec![(x, 1.0), (y, 2.0)], 2.0, f64::INFINITY).unwrap();
        p.add_row(vec![(x, 3.0), (y, 1.0)], 3.0, f64::INFINITY).unwrap();
        let lb = p.minimize(&[(x, 1.0), (y, 1.0)], 0.5, None).unwrap();
        assert!(lb <= 1.9 && lb > 1.9 - 1e-9, "{lb}");
        // Maximise by minimising the negation: max x + y = 20 at the box corner.
        let ub = -p.minimize(&[(x, -1.0), (y, -1.0)], 0.0, None).unwrap();
        assert!(ub >= 20.0 && ub < 20.0 + 1e-9, "{ub}");
    }

    /// The time limit is per solve: HiGHS's own clock runs across the solves of one instance,
    /// and before it was zeroed every solve after the first `limit` seconds of a program's
    /// life stopped at once with 0 iterations (and a weak bound).
    #[test]
    fn time_limits_apply_to_each_solve_not_to_the_programs_lifetime() {
        let mut p = Program::new().unwrap();
        let x = p.add_col(0.0, 10.0).unwrap();
        let y = p.add_col(0.0, 10.0).unwrap();
        p.add_row(vec![(x, 1.0), (y, 2.0)], 2.0, f64::INFINITY).unwrap();
        p.add_row(vec![(x, 3.0), (y, 1.0)], 3.0, f64::INFINITY).unwrap();
        p.set_time_limit(Some(Duration::from_millis(200)));
        let start = std::time::Instant::now();
        let mut solves = 0;
        while start.elapsed() < Duration::from_millis(600) || solves < 10 {
            // Alternate objectives so that every solve has simplex work to do.
            let sign = if solves % 2 == 0 { 1.0 } else { -1.0 };
            let s = p.solve_lp(&[(x, sign), (y, 1.0)], 0.0, None).unwrap();
            assert!(s.optimal, "solve {solves} after {:?} stopped early", start.elapsed());
            solves += 1;
        }
    }

    /// An integer program whose LP relaxation is looser: min -x - y with 2x + 2y <= 3, binary.
    #[test]
    fn milp_optimum_cutoff_and_target() {
        let mut p = Program::new().unwrap();
        let x = p.add_binary().unwrap();
        let y = p.add_binary().unwrap();
        p.add_row(vec![(x, 2.0), (y, 2.0)], f64::NEG_INFINITY, 3.0).unwrap();
        let lp = p.minimize(&[(x, -1.0), (y, -1.0)], 0.0, None).unwrap();
        assert!((lp + 1.5).abs() < 1e-6, "LP relaxation {lp}");
        let t = Duration::from_secs(10);
        match p.solve_milp(&[(x, -1.0), (y, -1.0)], 0.0, None, t).unwrap() {
            MilpOutcome::Optimal { objective, .. } => assert!((objective + 1.0).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.solve_milp(&[(x, -1.0), (y, -1.0)], 0.0, Some(-1.5), t).unwrap(), MilpOutcome::AboveCutoff);
        match p.solve_milp(&[(x, -1.0), (y, -1.0)], 0.0, Some(-0.5), t).unwrap() {
            MilpOutcome::Below { objective, .. } => assert!(objective < -0.5),
            other => panic!("{other:?}"),
        }
    }
}
