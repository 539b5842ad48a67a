//! Certification of a dataset: clean accuracy, certified accuracy per relaxation, and PGD
//! accuracy, over the l-infinity ball of radius eps (clipped to the data range).

use super::pgd::{self, PgdConfig};
use crate::bounds::{input_region, lower_bound, Method, Spec};
use crate::error::{Error, Result};
use crate::loss::predictions;
use crate::net::Network;
use crate::tensor::{from_vec, to_vec, Device};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct CertifyConfig {
    pub eps: f64,
    pub methods: Vec<Method>,
    pub batch_size: usize,
    pub pgd: Option<PgdConfig>,
    /// The input domain the ball is intersected with ([0, 1] for images).
    pub clip: Option<(f64, f64)>,
}

/// `report.json` of `ironbound certify` (CONTRACT.md keys first, then extras).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub n: usize,
    pub eps: f64,
    pub clean_accuracy: f64,
    pub certified_accuracy: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgd_accuracy: Option<f64>,
    /// Wall-clock seconds spent per method.
    pub seconds: BTreeMap<String, f64>,
    pub clip: Option<(f64, f64)>,
}

/// Per-sample results, for callers that want more than the accuracies.
#[derive(Clone, Debug, Default)]
pub struct SampleResults {
    pub correct: Vec<bool>,
    pub certified: BTreeMap<String, Vec<bool>>,
    pub pgd_robust: Option<Vec<bool>>,
}

/// Checks eps and returns it.
pub fn check_eps(eps: f64) -> Result<f64> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(Error::input(format!("eps must be a finite number >= 0, got {eps}")));
    }
    Ok(eps)
}

/// Certifies `images` (`[N, C, H, W]` row-major in `data`) with labels, in batches.
/// `progress(done)` is called after each batch.
pub fn certify(
    net: &Network,
    data: &[f32],
    labels: &[usize],
    cfg: &CertifyConfig,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<(Report, SampleResults)> {
    check_eps(cfg.eps)?;
    let shape = net.input_shape();
    let per = shape.iter().product::<usize>();
    let n = labels.len();
    if data.len() != n * per {
        return Err(Error::input(format!("{} values for {n} samples of shape {shape:?}", data.len())));
    }
    let k = net.num_outputs();
    if let Some(bad) = labels.iter().find(|&&y| y >= k) {
        return Err(Error::input(format!("label {bad} out of range for a model with {k} outputs")));
    }
    let mut results = SampleResults::default();
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    let bs = cfg.batch_size.max(1);
    for start in (0..n).step_by(bs) {
        let end = (start + bs).min(n);
        let m = end - start;
        let x = from_vec(data[start * per..end * per].to_vec(), [m, shape[0], shape[1], shape[2]], device);
        let y = &labels[start..end];
        let correct: Vec<bool> = predictions(net.forward(x.clone())).iter().zip(y).map(|(p, t)| p == t).collect();
        let region = input_region(&x, cfg.eps, cfg.clip);
        let spec = Spec::margins(y, k, device)?;
        for method in &cfg.methods {
            let t0 = Instant::now();
            let lb = to_vec(lower_bound(net, &region, &spec, &method.relaxation())?);
            let ok: Vec<bool> = (0..m).map(|i| correct[i] && lb[i * (k - 1)..(i + 1) * (k - 1)].iter().all(|&v| v > 0.0)).collect();
            results.certified.entry(method.name().to_string()).or_default().extend(ok);
            *seconds.entry(method.name().to_string()).or_default() += t0.elapsed().as_secs_f64();
        }
        if let Some(p) = &cfg.pgd {
            let t0 = Instant::now();
            let robust = pgd::robust(net, &x, y, &region, cfg.eps, p);
            let ok = robust.iter().zip(&correct).map(|(r, c)| *r && *c);
            results.pgd_robust.get_or_insert_with(Vec::new).extend(ok);
            *seconds.entry("pgd".into()).or_default() += t0.elapsed().as_secs_f64();
        }
        results.correct.extend(correct);
        progress(end);
    }
    let frac = |v: &[bool]| if n == 0 { 0.0 } else { v.iter().filter(|&&b| b).count() as f64 / n as f64 };
    let report = Report {
        n,
        eps: cfg.eps,
        clean_accuracy: frac(&results.correct),
        certified_accuracy: results.certified.iter().map(|(k, v)| (k.clone(), frac(v))).collect(),
        pgd_accuracy: results.pgd_robust.as_deref().map(frac),
        seconds,
        clip: cfg.clip,
    };
    Ok((report, results))
}
