//! `ironbound._ironbound`: the Rust half of the Python package `ironbound` (the pure-Python
//! half in python/ironbound/ converts array-likes and documents the API).
//!
//! Every entry point calls the same library functions as the `ironbound` binary, so results
//! are the CLI's to the bit, and its errors carry the CLI's one-line messages: bad input (the
//! CLI's exit code 2) becomes `ValueError`, anything else `RuntimeError`. Long work runs with
//! the GIL released and checks for Ctrl-C after each batch (or training step).

mod model;
mod run;
mod train;

use ironbound::error::Error;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::time::Duration;

/// The library's error as the Python exception the contract names.
pub(crate) fn py_err(e: Error) -> PyErr {
    match e.exit_code() {
        2 => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A bad argument: `ValueError` with `what: reason`, as the CLI names a file.
pub(crate) fn bad_arg(what: &str, reason: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {reason}"))
}

/// Remembers why Python asked to stop (Ctrl-C, or an exception in a callback) while the
/// library runs without the GIL; the library sees a plain error and unwinds.
#[derive(Default)]
pub(crate) struct Interrupt {
    pub error: Option<PyErr>,
}

impl Interrupt {
    /// Runs pending signal handlers (Ctrl-C raises KeyboardInterrupt there); an error stops
    /// the work.
    pub fn check_signals(&mut self) -> ironbound::Result<()> {
        if self.error.is_none() {
            if let Err(e) = Python::attach(|py| py.check_signals()) {
                self.error = Some(e);
            }
        }
        match self.error {
            Some(_) => Err(Error::internal("interrupted from Python")),
            None => Ok(()),
        }
    }

    /// The library's result, or the Python error that stopped it.
    pub fn finish<T>(self, result: ironbound::Result<T>) -> PyResult<T> {
        match (self.error, result) {
            (Some(e), _) => Err(e),
            (None, r) => r.map_err(py_err),
        }
    }
}

/// `timeout=` in seconds (`default` when None); like the CLI's `--timeout`, it must be
/// positive.
pub(crate) fn timeout(secs: Option<f64>, default: Duration) -> PyResult<Duration> {
    match secs {
        None => Ok(default),
        Some(t) if t.is_finite() && t > 0.0 => Ok(Duration::from_secs_f64(t)),
        Some(t) => Err(PyValueError::new_err(format!("timeout must be a positive number of seconds, got {t}"))),
    }
}

/// `clip=(MIN, MAX)`: the CLI's `--clip` check.
pub(crate) fn clip(c: Option<(f64, f64)>) -> PyResult<Option<(f64, f64)>> {
    match c {
        Some((lo, hi)) if lo <= hi => Ok(Some((lo, hi))),
        Some((lo, hi)) => Err(PyValueError::new_err(format!("clip needs MIN <= MAX, got ({lo:?}, {hi:?})"))),
        None => Ok(None),
    }
}

/// A serialisable library value (report, verdict, metrics) as a Python dict, through JSON so
/// that it holds exactly what the CLI's JSON files hold.
pub(crate) fn to_dict<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

#[pymodule]
fn _ironbound(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(run::certify, m)?)?;
    m.add_function(wrap_pyfunction!(run::merge, m)?)?;
    m.add_function(wrap_pyfunction!(run::verify, m)?)?;
    m.add_function(wrap_pyfunction!(run::dataset, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    Ok(())
}
