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
use crate::verify::certify::{certify_shard, CertifyConfig};
use crate::verify::shard::{arrange, Part, Shard};
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
    /// Only this slice of the samples (`analyze tightness --shard I/N`).
    pub shard: Option<Shard>,
}

/// Where a shard's samples lie among all of them (`ironbound merge` needs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurveShard {
    pub index: usize,
    pub count: usize,
    pub start: usize,
    pub end: usize,
    pub total: usize,
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
    /// The figure's title (kept so that merged shards draw the same figure).
    #[serde(default)]
    pub title: String,
    /// Only in a shard's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<CurveShard>,
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
    pub fn write(&self, dir: &Path) -> Result<()> {
        use crate::io::atomic::write_bytes;
        let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).map(|s| s + "\n").map_err(Error::internal);
        write_bytes(&dir.join("cr_curve.csv"), self.csv().as_bytes())?;
        write_bytes(&dir.join("cr_auc.json"), json(&serde_json::to_value(self.auc()).map_err(Error::internal)?)?.as_bytes())?;
        let mut detail = serde_json::to_value(self).map_err(Error::internal)?;
        detail["cr_auc_percent_eps"] = serde_json::to_value(self.auc_paper_units()).map_err(Error::internal)?;
        write_bytes(&dir.join("tightness.json"), json(&detail)?.as_bytes())?;
        self.chart(&self.title).write(&dir.join("cr_curve"))
    }
}

/// The curves of all samples from the curves of every shard (in any order): the counts are
/// summed, so every fraction, AUC and figure equals the unsharded run's; seconds are summed.
pub fn merge(parts: &[(String, CrCurves)]) -> Result<CrCurves> {
    let described = parts
        .iter()
        .map(|(name, c)| {
            let s = c.shard.ok_or_else(|| Error::file(name, "is not the output of `analyze tightness --shard`"))?;
            Ok(Part { name: name.clone(), shard: Shard::new(s.index, s.count)?, total: s.total, range: s.start..s.end })
        })
        .collect::<Result<Vec<_>>>()?;
    let order = arrange(&described, "samples")?;
    let (first_name, first) = &parts[order[0]];
    let mut out = CrCurves { n: 0, clean: 0, shard: None, ..first.clone() };
    out.certified.values_mut().for_each(|v| v.iter_mut().for_each(|c| *c = 0));
    out.seconds.values_mut().for_each(|t| *t = 0.0);
    for &i in &order {
        let (name, c) = &parts[i];
        if c.radii != first.radii || c.methods != first.methods || c.eps_max != first.eps_max {
            return Err(Error::input(format!("{name} and {first_name} have different radii or methods: shards of different runs cannot be merged")));
        }
        out.n += c.n;
        out.clean += c.clean;
        for m in &c.methods {
            let (Some(sum), Some(add)) = (out.certified.get_mut(m), c.certified.get(m)) else {
                return Err(Error::file(name, format!("has no counts for {m}")));
            };
            sum.iter_mut().zip(add).for_each(|(s, a)| *s += a);
            *out.seconds.entry(m.clone()).or_default() += c.seconds.get(m).copied().unwrap_or(0.0);
        }
    }
    Ok(out)
}

/// Reads a shard's (or any run's) `tightness.json`.
pub fn read(dir: &Path) -> Result<CrCurves> {
    let path = dir.join("tightness.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::file(&path, format!("not an `analyze tightness` output: {e}")))
}

/// The CR curves of `cfg.methods` on the samples (of the shard, with `cfg.shard`), titled
/// `title`. `progress(done, total)` counts sample-radius pairs.
pub fn cr_curves(net: &Network, data: &[f32], labels: &[usize], cfg: &TightnessConfig, title: &str, device: &Device, progress: &mut dyn FnMut(usize, usize)) -> Result<CrCurves> {
    let radii = radii(cfg.eps_max, cfg.steps)?;
    if cfg.methods.is_empty() {
        return Err(Error::input("the method list is empty: give at least one method"));
    }
    let range = match cfg.shard {
        Some(s) => s.checked_range(labels.len(), "samples")?,
        None => 0..labels.len(),
    };
    let n = range.len();
    let total = n * radii.len();
    let methods: Vec<String> = cfg.methods.iter().map(CertMethod::name).collect();
    let mut certified: BTreeMap<String, Vec<usize>> = methods.iter().map(|m| (m.clone(), Vec::new())).collect();
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    let mut clean = 0;
    for (i, &eps) in radii.iter().enumerate() {
        let run = CertifyConfig { eps, methods: cfg.methods.clone(), batch_size: cfg.batch_size, pgd: None, clip: cfg.clip, timeout: cfg.timeout, seed: 0, sound: true };
        let (report, results) = certify_shard(net, data, labels, cfg.shard, &run, device, &mut |done| {
            progress(i * n + done, total);
            Ok(())
        })?;
        clean = results.correct.iter().filter(|&&c| c).count();
        for m in &methods {
            let counts = report.outcomes.get(m).ok_or_else(|| Error::internal(format!("certify reported no result for {m}")))?;
            certified.entry(m.clone()).or_default().push(counts.certified);
            *seconds.entry(m.clone()).or_default() += report.seconds.get(m).copied().unwrap_or(0.0);
        }
    }
    let shard = cfg.shard.map(|s| CurveShard { index: s.index, count: s.count, start: range.start, end: range.end, total: labels.len() });
    Ok(CrCurves { n, eps_max: cfg.eps_max, radii, clean, methods, certified, seconds, title: title.into(), shard })
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
            title: String::new(),
            shard: None,
        };
        let auc = curves.auc();
        assert!((auc["a"] - 0.5).abs() < 1e-15 && (auc["b"] - 0.8).abs() < 1e-15, "{auc:?}");
        assert!((curves.auc_paper_units()["a"] - 100.0).abs() < 1e-12);
        assert_eq!(curves.csv().lines().next(), Some("eps,method,certified_accuracy"));
        assert_eq!(curves.csv().lines().nth(2), Some("1,a,0.5"));
        assert_eq!(curves.csv().lines().count(), 7);
    }
}
