//! `ironbound.load` and `Model`: a network read from ONNX or native safetensors, with the
//! bounds of `ironbound bounds` and a plain forward pass.

use crate::{bad_arg, py_err, Interrupt};
use ironbound::error::Error;
use ironbound::net::Network;
use ironbound::tensor::{default_device, from_vec, to_vec};
use ironbound::verify::bounds_table::{self, BoundsOptions, DEFAULT_BATCH_SIZE};
use ironbound::verify::certify::{check_eps, DEFAULT_TIMEOUT};
use ironbound::verify::CertMethod;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

/// A network loaded by `ironbound.load`.
#[pyclass(frozen, module = "ironbound._ironbound")]
pub struct Model {
    pub(crate) net: Network,
    path: PathBuf,
}

/// Reads a model (`.onnx` or native `.safetensors`); `normalize=(mean, std)` prepends a
/// per-channel normalisation, as the CLI's `--normalize`.
#[pyfunction]
#[pyo3(signature = (path, normalize = None))]
pub fn load(py: Python<'_>, path: PathBuf, normalize: Option<(Vec<f32>, Vec<f32>)>) -> PyResult<Model> {
    let net = py
        .detach(|| {
            let net = ironbound::io::load_model(&path, &default_device())?;
            match &normalize {
                Some((mean, std)) => net.with_normalize(mean, std).map_err(|e| Error::file(&path, e)),
                None => Ok(net),
            }
        })
        .map_err(py_err)?;
    Ok(Model { net, path })
}

/// Row-major float32 inputs that fit the model, and their number of rows. Named `what` in
/// errors, as the CLI names the input file.
pub(crate) fn rows<'a>(net: &Network, x: &'a PyReadonlyArrayDyn<'_, f32>, what: &str) -> PyResult<(&'a [f32], usize)> {
    let data = x.as_slice().map_err(|_| bad_arg(what, format!("is not C-contiguous; pass np.ascontiguousarray({what})")))?;
    let n = bounds_table::check_rows(net, x.shape(), data).map_err(|e| bad_arg(what, e))?;
    Ok((data, n))
}

/// Labels `[N]` as class indices of a model with `k` outputs.
pub(crate) fn labels(y: &PyReadonlyArrayDyn<'_, i64>, n: usize, k: usize, what: &str) -> PyResult<Vec<usize>> {
    if y.ndim() != 1 {
        return Err(bad_arg(what, format!("has shape {:?}, expected [N]", y.shape())));
    }
    let values = y.as_slice().map_err(|_| bad_arg(what, format!("is not C-contiguous; pass np.ascontiguousarray({what})")))?;
    bounds_table::check_labels(values, n, k).map_err(|e| bad_arg(what, e))
}

/// A float32 array `[n, k]` owning `values`.
fn matrix(py: Python<'_>, values: Vec<f32>, n: usize, k: usize) -> PyResult<Bound<'_, PyAny>> {
    Ok(PyArray1::from_vec(py, values).reshape([n, k])?.into_any())
}

#[pymethods]
impl Model {
    /// Bounds over the l-infinity ball of radius `eps` around each row of `x` (intersected
    /// with `clip`), exactly what `ironbound bounds` writes for the same arguments.
    /// With `regularizers=True` (and labels) the dict also holds `reg_d` and `reg_r` `[n, k]`, the
    /// tightness regularizers of each margin row, as `ironbound bounds --regularizers` writes.
    #[pyo3(signature = (x, eps, method = "crown", labels = None, clip = None, timeout = None, batch_size = DEFAULT_BATCH_SIZE, seed = 0, sound = false, regularizers = false))]
    #[allow(clippy::too_many_arguments)] // the CLI's flags, one keyword each
    fn bounds<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        eps: f64,
        method: &str,
        labels: Option<PyReadonlyArrayDyn<'py, i64>>,
        clip: Option<(f64, f64)>,
        timeout: Option<f64>,
        batch_size: usize,
        seed: u64,
        sound: bool,
        regularizers: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        // The CLI's order of checks, so that the first problem reported is the same.
        let method: CertMethod = method.parse().map_err(py_err)?;
        bounds_table::check_method(&method).map_err(py_err)?;
        if let (CertMethod::Bound(m), None) = (&method, &labels) {
            if m.needs_labels() {
                return Err(py_err(Error::input(format!("method {m} needs labels: its slopes descend the robust loss of the margins f_y - f_j"))));
            }
        }
        if regularizers {
            bounds_table::regularizers_method(&method).map_err(py_err)?;
            if labels.is_none() {
                return Err(py_err(Error::input("regularizers=True needs labels: d and r are defined per margin row f_y - f_j")));
            }
        }
        let timeout = crate::timeout(timeout, DEFAULT_TIMEOUT)?;
        let eps = check_eps(eps).map_err(py_err)?;
        let clip = crate::clip(clip)?;
        let (data, n) = rows(&self.net, &x, "x")?;
        let ys = match &labels {
            Some(y) => Some(self::labels(y, n, self.net.num_outputs(), "labels")?),
            None => None,
        };
        let opts = BoundsOptions { clip, timeout, batch_size, seed, sound, ..BoundsOptions::new(eps, method) };
        let mut stop = Interrupt::default();
        let result = py.detach(|| {
            let device = default_device();
            let table = bounds_table::bounds_table(&self.net, data, ys.as_deref(), &opts, &device, &mut |_| stop.check_signals())?;
            let regs = match (&ys, regularizers) {
                (Some(ys), true) => Some(bounds_table::regularizers_table(&self.net, data, ys, &opts, &device, &mut |_| stop.check_signals())?),
                _ => None,
            };
            Ok((table, regs))
        });
        let (table, regs) = stop.finish(result)?;
        let out = PyDict::new(py);
        out.set_item("lower", matrix(py, table.lower, table.n, table.k)?)?;
        out.set_item("upper", matrix(py, table.upper, table.n, table.k)?)?;
        if let Some(m) = table.margin_lower {
            out.set_item("margin_lower", matrix(py, m, table.n, table.k)?)?;
        }
        if let Some((d, r)) = regs {
            out.set_item("reg_d", matrix(py, d, table.n, table.k)?)?;
            out.set_item("reg_r", matrix(py, r, table.n, table.k)?)?;
        }
        Ok(out)
    }

    /// The outputs (logits) `[N, K]` for the rows of `x`.
    #[pyo3(signature = (x, batch_size = DEFAULT_BATCH_SIZE))]
    fn forward<'py>(&self, py: Python<'py>, x: PyReadonlyArrayDyn<'py, f32>, batch_size: usize) -> PyResult<Bound<'py, PyAny>> {
        let (data, n) = rows(&self.net, &x, "x")?;
        let [c, h, w] = self.net.input_shape();
        let (per, k, bs) = (c * h * w, self.net.num_outputs(), batch_size.max(1));
        let mut stop = Interrupt::default();
        let result = py.detach(|| {
            let device = default_device();
            let mut out = Vec::with_capacity(n * k);
            for start in (0..n).step_by(bs) {
                let end = (start + bs).min(n);
                out.extend(to_vec(self.net.forward(from_vec(data[start * per..end * per].to_vec(), [end - start, c, h, w], &device))));
                stop.check_signals()?;
            }
            Ok(out)
        });
        matrix(py, stop.finish(result)?, n, k)
    }

    /// (channels, height, width) of one input.
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.net.input_shape();
        (c, h, w)
    }

    /// Number of outputs (classes).
    #[getter]
    fn num_outputs(&self) -> usize {
        self.net.num_outputs()
    }

    /// The file the model was read from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    fn __repr__(&self) -> String {
        let [c, h, w] = self.net.input_shape();
        format!("Model('{}', input_shape=({c}, {h}, {w}), num_outputs={})", self.path.display(), self.net.num_outputs())
    }
}
