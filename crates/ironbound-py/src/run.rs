//! `ironbound.certify`, `ironbound.merge`, `ironbound.verify` and `ironbound.dataset`: the
//! library calls behind `ironbound certify`, `ironbound merge` and `ironbound verify`, and the
//! dataset loader they use.

use crate::model::{labels, rows, Model};
use crate::{py_err, to_dict, Interrupt};
use ironbound::data::{self, DataOptions, DatasetName, Split};
use ironbound::error::Error;
use ironbound::io::{atomic, vnnlib};
use ironbound::tensor::default_device;
use ironbound::verify::certify::{certify_shard, check_eps, DEFAULT_TIMEOUT};
use ironbound::verify::property::{self, VerifyConfig};
use ironbound::verify::shard::{self, Merged};
use ironbound::verify::{parse_cert_methods, CertMethod, CertifyConfig, PgdConfig, Shard};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::path::PathBuf;
use std::time::Duration;

/// Clean, certified and PGD accuracy of `model` on the rows of `x` with labels `y`: the dict
/// `ironbound certify` writes as report.json for the same samples.
#[pyfunction]
#[pyo3(signature = (model, x, y, eps, methods = "ibp,crown", pgd = None, clip = Some((0.0, 1.0)), timeout = None, batch_size = 100, pgd_restarts = 1, cascade = None, shard = None, seed = 0, fast = false))]
#[allow(clippy::too_many_arguments)] // the CLI's flags, one keyword each
pub fn certify<'py>(
    py: Python<'py>,
    model: PyRef<'py, Model>,
    x: PyReadonlyArrayDyn<'py, f32>,
    y: PyReadonlyArrayDyn<'py, i64>,
    eps: f64,
    methods: &str,
    pgd: Option<usize>,
    clip: Option<(f64, f64)>,
    timeout: Option<f64>,
    batch_size: usize,
    pgd_restarts: usize,
    cascade: Option<&str>,
    shard: Option<(i64, i64)>,
    seed: u64,
    fast: bool,
) -> PyResult<Bound<'py, PyAny>> {
    // The CLI's order of checks, so that the first problem reported is the same.
    let mut methods = parse_cert_methods(methods).map_err(py_err)?;
    if let Some(list) = cascade {
        methods.push(CertMethod::cascade(list).map_err(py_err)?);
    }
    if methods.is_empty() {
        return Err(py_err(Error::input("methods needs at least one method")));
    }
    let timeout = crate::timeout(timeout, DEFAULT_TIMEOUT)?;
    let shard = shard.map(self::shard).transpose()?;
    check_eps(eps).map_err(py_err)?;
    let clip = crate::clip(clip)?;
    let net = &model.net;
    let (data, n) = rows(net, &x, "x")?;
    let labels = labels(&y, n, net.num_outputs(), "y")?;
    let cfg = CertifyConfig {
        batch_size,
        pgd: pgd.map(|steps| PgdConfig { restarts: pgd_restarts, ..PgdConfig::new(steps) }),
        clip,
        timeout,
        seed,
        sound: !fast,
        ..CertifyConfig::new(eps, methods)
    };
    let mut stop = Interrupt::default();
    let result = py.detach(|| certify_shard(net, data, &labels, shard, &cfg, &default_device(), &mut |_| stop.check_signals()));
    let (report, _) = stop.finish(result)?;
    to_dict(py, &report)
}

/// `shard=(I, N)`: the CLI's `--shard I/N` (1 <= I <= N).
fn shard((index, count): (i64, i64)) -> PyResult<Shard> {
    let bad = || PyValueError::new_err(format!("shard=({index}, {count}): expected (I, N) with 1 <= I <= N"));
    let (i, n) = (usize::try_from(index).map_err(|_| bad())?, usize::try_from(count).map_err(|_| bad())?);
    Shard::new(i, n).map_err(|_| bad())
}

/// Merges the reports of `certify --shard 1/N ... N/N` (or verify's sharded results.csv)
/// into what one unsharded run writes, as `ironbound merge` does. `files` are (name, text)
/// pairs, the name only for error messages; a pair without text is a file that is read here,
/// as the CLI reads it. A report comes back as a dict, a results.csv as its text; with `out`
/// it is also written there as `ironbound merge --out` writes it.
#[pyfunction]
#[pyo3(signature = (files, out = None))]
pub fn merge<'py>(py: Python<'py>, files: Vec<(String, Option<String>)>, out: Option<PathBuf>) -> PyResult<Bound<'py, PyAny>> {
    if let Some(path) = out.as_ref().filter(|p| p.is_dir()) {
        return Err(py_err(Error::input(format!("{}: is a directory, expected a file path", path.display()))));
    }
    let merged = py
        .detach(|| {
            let files = files
                .into_iter()
                .map(|(name, text)| match text {
                    Some(t) => Ok((name, t)),
                    None => std::fs::read_to_string(&name).map(|t| (name.clone(), t)).map_err(|e| Error::file(&name, format!("cannot read: {e}"))),
                })
                .collect::<ironbound::Result<Vec<_>>>()?;
            shard::merge(&files)
        })
        .map_err(py_err)?;
    match merged {
        Merged::Report(report) => {
            if let Some(path) = &out {
                // `ironbound merge --out`'s file: pretty JSON and a newline, written atomically.
                let text = serde_json::to_string_pretty(&report).map_err(|e| py_err(Error::internal(e)))?;
                py.detach(|| atomic::write_bytes(path, format!("{text}\n").as_bytes())).map_err(py_err)?;
            }
            to_dict(py, &report)
        }
        Merged::ResultsCsv(text) => {
            if let Some(path) = &out {
                py.detach(|| atomic::write_bytes(path, text.as_bytes())).map_err(py_err)?;
            }
            Ok(PyString::new(py, &text).into_any())
        }
    }
}

/// Decides a VNN-LIB property on `model`: the dict `ironbound verify --out` writes.
#[pyfunction]
#[pyo3(signature = (model, property, timeout = 300.0, seed = 0))]
pub fn verify<'py>(py: Python<'py>, model: PyRef<'py, Model>, property: PathBuf, timeout: f64, seed: u64) -> PyResult<Bound<'py, PyAny>> {
    let cfg = VerifyConfig { timeout: crate::timeout(Some(timeout), Duration::ZERO)?, seed };
    let net = &model.net;
    let verdict = py
        .detach(|| {
            let prop = vnnlib::read(&property)?;
            property::check_fits(net, &prop).map_err(|e| Error::file(&property, e))?;
            property::verify(net, &prop, &cfg)
        })
        .map_err(py_err)?;
    to_dict(py, &verdict)
}

/// The images (float32 `[N, C, H, W]` in [0, 1]) and labels (int64 `[N]`) of a dataset
/// split, found where `--dataset` looks (and downloaded with a checksum check if missing).
#[pyfunction]
#[pyo3(signature = (name, split = "test", n = None, data_dir = None))]
pub fn dataset<'py>(py: Python<'py>, name: &str, split: &str, n: Option<usize>, data_dir: Option<PathBuf>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let name: DatasetName = name.parse().map_err(py_err)?;
    let split: Split = split.parse().map_err(py_err)?;
    let mut ds = py.detach(|| data::load(name, split, &DataOptions { data_dir, ..Default::default() })).map_err(py_err)?;
    if let Some(n) = n {
        ds.truncate(n);
    }
    let [c, h, w] = ds.shape;
    let count = ds.len();
    let labels: Vec<i64> = ds.labels.iter().map(|&l| i64::from(l)).collect();
    let x = PyArray1::from_vec(py, ds.images).reshape([count, c, h, w])?.into_any();
    Ok((x, PyArray1::from_vec(py, labels).into_any()))
}
