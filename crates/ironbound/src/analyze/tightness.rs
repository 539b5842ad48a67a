//! Tightness as certified-robustness (CR) curves and their area, CR-AUC (paradox Section 3,
//! Appendix B): the certified accuracy of each relaxation at evenly spaced radii in [0, E].
//!
//! Each radius is one `certify` run over the same samples, batches and settings as
//! `ironbound certify --eps r`, so a curve point is exactly what that command reports. The
//! curves are not forced to be monotone: adaptive relaxations (CROWN's slope choice) are not
//! monotone under box inclusion, and a point that disagrees with `certify` would be worse.

use super::plot::{LineChart, Series};
use crate::error::{Error, Result};
use crate::net::Network;
use crate::tensor::Device;
use crate::verify::certify::{certify, CertifyConfig};
use crate::verify::CertMethod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct TightnessConfig {
    /// The largest radius E (pixel units).
    pub eps_max: f64,
    /// Radii evenly spaced in [0, E], both ends included (at least 2).
    pub steps: usize,
    pub methods: Vec<CertMethod>,
    pub batch_size: usize,
    pub clip: Option<(f64, f64)>,
    pub timeout: Duration,
}

/// Certified counts per method and radius: everything the outputs are made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrCurves {
    pub n: usize,
    pub eps_max: f64,
    pub radii: Vec<f64>,
    /// Correctly classified samples (the curves' value at eps = 0 for exact methods).
    pub clean: usize,
    /// Methods in the order asked for.
    pub methods: Vec<String>,
    /// Per method, the number of samples certified at each radius.
    pub certified: BTreeMap<String, Vec<usize>>,
    /// Wall-clock seconds per method over all radii.
    pub seconds: BTreeMap<String, f64>,
}

/// `steps` radii evenly spaced in [0, eps_max]; the last is eps_max exactly.
pub fn radii(eps_max: f64, steps: usize) -> Result<Vec<f64>> {
    if !eps_max.is_finite() || eps_max <= 0.0 {
        return Err(Error::input(format!("--eps-max must be a finite number > 0, got {eps_max}")));
    }
    if steps < 2 {
        return Err(Error::input(format!("--steps must be at least 2 (both ends of [0, eps-max]), got {steps}")));
    }
    Ok((0..steps).map(|i| if i + 1 == steps { eps_max } else { eps_max * i as f64 / (steps - 1) as f64 }).collect())
}

/// The area under `ys` over `xs` by the trapezoidal rule.
pub fn trapezoid(xs: &[f64], ys: &[f64]) -> f64 {
    xs.windows(2).zip(ys.windows(2)).map(|(x, y)| 0.5 * (x[1] - x[0]) * (y[0] + y[1])).sum()
}

impl CrCurves {
    /// Certified accuracy (a fraction) of `method` at each radius.
    pub fn accuracy(&self, method: &str) -> Vec<f64> {
        let frac = |c: usize| if self.n == 0 { 0.0 } else { c as f64 / self.n as f64 };
        self.certified.get(method).map(|counts| counts.iter().map(|&c| frac(c)).collect()).unwrap_or_default()
    }

    /// CR-AUC per method as the contract defines it: the trapezoidal area under the curve of
    /// fractions, divided by E, so in [0, 1].
    pub fn auc(&self) -> BTreeMap<String, f64> {
        self.methods.iter().map(|m| (m.clone(), trapezoid(&self.radii, &self.accuracy(m)) / self.eps_max)).collect()
    }

    /// CR-AUC in paradox Table 4's units: certified accuracy in percent integrated over eps in
    /// pixel units (at most 100 E), i.e. `auc * 100 * E`.
    pub fn auc_paper_units(&self) -> BTreeMap<String, f64> {
        self.auc().into_iter().map(|(m, a)| (m, a * 100.0 * self.eps_max)).collect()
    }

    /// `cr_curve.csv`: header `eps,method,certified_accuracy`, methods in the order asked for.
    pub fn csv(&self) -> String {
        let mut out = String::from("eps,method,certified_accuracy\n");
        for m in &self.methods {
            for (eps, acc) in self.radii.iter().zip(self.accuracy(m)) {
                out.push_str(&format!("{eps},{m},{acc}\n"));
            }
        }
        out
    }

    /// The CR curves as one chart, certified accuracy in percent.
    pub fn chart(&self, title: &str) -> LineChart {
        let auc = self.auc();
        let series = self
            .methods
            .iter()
            .map(|m| Series {
                name: format!("{m} (AUC {:.3})", auc.get(m).copied().unwrap_or(0.0)),
                points: self.radii.iter().copied().zip(self.accuracy(m).into_iter().map(|a| 100.0 * a)).collect(),
            })
            .collect();
        LineChart { title: title.into(), x_label: "eps (l-inf radius, pixel units)".into(), y_label: "certified accuracy (%)".into(), series, y_range: Some((0.0, 100.0)) }
    }

    /// Writes cr_curve.csv, cr_auc.json, cr_curve.png/.svg and tightness.json (the counts,
    /// the paper-unit AUCs and timings) into `dir`, each file atomically.
    pub fn write(&self, dir: &Path, title: &str) -> Result<()> {
        use crate::io::atomic::write_bytes;
        let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).map(|s| s + "\n").map_err(Error::internal);
        write_bytes(&dir.join("cr_curve.csv"), self.csv().as_bytes())?;
        write_bytes(&dir.join("cr_auc.json"), json(&serde_json::to_value(self.auc()).map_err(Error::internal)?)?.as_bytes())?;
        let mut detail = serde_json::to_value(self).map_err(Error::internal)?;
        detail["cr_auc_percent_eps"] = serde_json::to_value(self.auc_paper_units()).map_err(Error::internal)?;
        write_bytes(&dir.join("tightness.json"), json(&detail)?.as_bytes())?;
        self.chart(title).write(&dir.join("cr_curve"))
    }
}

/// The CR curves of `cfg.methods` on the samples. `progress(done, total)` counts
/// sample-radius pairs.
pub fn cr_curves(net: &Network, data: &[f32], labels: &[usize], cfg: &TightnessConfig, device: &Device, progress: &mut dyn FnMut(usize, usize)) -> Result<CrCurves> {
    let radii = radii(cfg.eps_max, cfg.steps)?;
    if cfg.methods.is_empty() {
        return Err(Error::input("the method list is empty: give at least one method"));
    }
    let n = labels.len();
    let total = n * radii.len();
    let methods: Vec<String> = cfg.methods.iter().map(CertMethod::name).collect();
    let mut certified: BTreeMap<String, Vec<usize>> = methods.iter().map(|m| (m.clone(), Vec::new())).collect();
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    let mut clean = 0;
    for (i, &eps) in radii.iter().enumerate() {
        let run = CertifyConfig { eps, methods: cfg.methods.clone(), batch_size: cfg.batch_size, pgd: None, clip: cfg.clip, timeout: cfg.timeout };
        let (report, results) = certify(net, data, labels, &run, device, &mut |done| progress(i * n + done, total))?;
        clean = results.correct.iter().filter(|&&c| c).count();
        for m in &methods {
            let counts = report.outcomes.get(m).ok_or_else(|| Error::internal(format!("certify reported no result for {m}")))?;
            certified.entry(m.clone()).or_default().push(counts.certified);
            *seconds.entry(m.clone()).or_default() += report.seconds.get(m).copied().unwrap_or(0.0);
        }
    }
    Ok(CrCurves { n, eps_max: cfg.eps_max, radii, clean, methods, certified, seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radii_include_both_ends_evenly() {
        let r = radii(0.07, 100).unwrap();
        assert_eq!((r.len(), r[0], r[99]), (100, 0.0, 0.07));
        assert!(r.windows(2).all(|w| ((w[1] - w[0]) - 0.07 / 99.0).abs() < 1e-15));
        assert!(radii(0.1, 1).unwrap_err().to_string().contains("--steps"));
        assert!(radii(0.0, 10).is_err() && radii(f64::NAN, 10).is_err());
    }

    #[test]
    fn auc_is_the_normalised_trapezoid() {
        // Certified fractions 1, 0.5, 0 at eps 0, 0.5, 1: area 0.5 over E = 1; a constant 0.8
        // curve has area 0.8 E.
        let curves = CrCurves {
            n: 10,
            eps_max: 2.0,
            radii: vec![0.0, 1.0, 2.0],
            clean: 10,
            methods: vec!["a".into(), "b".into()],
            certified: [("a".to_string(), vec![10, 5, 0]), ("b".to_string(), vec![8, 8, 8])].into(),
            seconds: BTreeMap::new(),
        };
        let auc = curves.auc();
        assert!((auc["a"] - 0.5).abs() < 1e-15 && (auc["b"] - 0.8).abs() < 1e-15, "{auc:?}");
        assert!((curves.auc_paper_units()["a"] - 100.0).abs() < 1e-12);
        assert_eq!(curves.csv().lines().next(), Some("eps,method,certified_accuracy"));
        assert_eq!(curves.csv().lines().nth(2), Some("1,a,0.5"));
        assert_eq!(curves.csv().lines().count(), 7);
    }
}
