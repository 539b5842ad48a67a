//! `ironbound.train`: the run of `ironbound train --config ... --out DIR`, with a Python
//! callback after each epoch.

use crate::{py_err, to_dict, Interrupt};
use ironbound::error::{Error, Result};
use ironbound::train::{batches, run as run_training, EpochMetrics, Outcome, Progress, RunOptions, Sources, TrainConfig};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

/// Reports to Python: each epoch's metrics to the callback, messages to the `ironbound`
/// logger; asks the run to stop at Ctrl-C or when the callback raises.
struct PyProgress<'a> {
    callback: Option<&'a Py<PyAny>>,
    stop: Interrupt,
}

impl PyProgress<'_> {
    fn call(&mut self, f: impl for<'py> FnOnce(Python<'py>) -> PyResult<()>) {
        if self.stop.error.is_none() {
            if let Err(e) = Python::attach(f) {
                self.stop.error = Some(e);
            }
        }
    }
}

impl Progress for PyProgress<'_> {
    fn message(&mut self, msg: &str) {
        self.call(|py| py.import("logging")?.call_method1("getLogger", ("ironbound",))?.call_method1("info", (msg,)).map(drop));
    }
    fn step(&mut self, _done: usize, _loss: f64) {
        // The error is kept in `stop` and ends the run through `stop_requested`.
        let _ = self.stop.check_signals();
    }
    fn eval_step(&mut self, _done: usize) {
        let _ = self.stop.check_signals();
    }
    fn epoch_end(&mut self, m: &EpochMetrics) {
        if let Some(cb) = self.callback {
            self.call(|py| cb.call1(py, (to_dict(py, m)?,)).map(drop));
        }
    }
    fn stop_requested(&mut self) -> bool {
        self.stop.error.is_some()
    }
}

/// What `train` returns (as a dict).
#[derive(serde::Serialize)]
struct TrainResult<'a> {
    completed: bool,
    resumed_from: Option<usize>,
    out_dir: &'a Path,
    metrics: &'a [EpochMetrics],
}

/// The configuration from a dict (each key set as `--set` would, errors naming
/// `config['key']`), a TOML text, or a TOML file.
fn configure(py: Python<'_>, dict: Option<&Bound<'_, PyDict>>, toml_text: Option<&str>, path: Option<&Path>) -> PyResult<(TrainConfig, Sources)> {
    let mut sources = Sources::default();
    match (dict, toml_text, path) {
        (Some(d), None, None) => {
            let mut config = TrainConfig::default();
            let dumps = py.import("json")?.getattr("dumps")?;
            for (key, value) in d.iter() {
                let key: String = key.extract()?;
                let origin = format!("config['{key}']");
                let json: String = dumps.call1((value,))?.extract()?;
                let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| py_err(Error::input(format!("{origin}: {e}"))))?;
                let value = toml::Value::try_from(value).map_err(|e| py_err(Error::input(format!("{origin}: not a TOML value ({e})"))))?;
                config.set(&key, value, &origin).map_err(py_err)?;
                sources.flags.insert(key, origin);
            }
            Ok((config, sources))
        }
        (None, Some(text), None) => {
            let name = Path::new("<config>");
            let (config, keys) = TrainConfig::parse(text, name).map_err(py_err)?;
            (sources.file, sources.file_keys) = (Some(name.to_path_buf()), keys);
            Ok((config, sources))
        }
        (None, None, Some(p)) => {
            let (config, keys) = TrainConfig::load(p).map_err(py_err)?;
            (sources.file, sources.file_keys) = (Some(p.to_path_buf()), keys);
            Ok((config, sources))
        }
        _ => Err(py_err(Error::internal("train: give exactly one of a dict, a TOML text or a TOML file"))),
    }
}

/// Trains (or resumes) the run in `out_dir`; see `ironbound.train` for the arguments.
#[pyfunction]
#[pyo3(signature = (out_dir, callback = None, config_dict = None, config_toml = None, config_path = None))]
pub fn train<'py>(
    py: Python<'py>,
    out_dir: PathBuf,
    callback: Option<Py<PyAny>>,
    config_dict: Option<Bound<'py, PyDict>>,
    config_toml: Option<&str>,
    config_path: Option<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let (config, sources) = configure(py, config_dict.as_ref(), config_toml, config_path.as_deref())?;
    let resolved = config.resolve(&sources).map_err(py_err)?;
    if out_dir.is_file() {
        return Err(py_err(Error::input(format!("{}: is a file, expected a directory", out_dir.display()))));
    }
    let mut progress = PyProgress { callback: callback.as_ref(), stop: Interrupt::default() };
    let result = py.detach(|| -> Result<Outcome> {
        let data = batches::load(&resolved)?;
        run_training(&resolved, &data, &out_dir, &RunOptions::default(), &mut progress)
    });
    let outcome = progress.stop.finish(result)?;
    to_dict(py, &TrainResult { completed: outcome.completed, resumed_from: outcome.resumed_from, out_dir: &out_dir, metrics: &outcome.metrics })
}
