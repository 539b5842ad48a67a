//! `analyze landscape`: the loss-landscape measurements that `ironbound train` records with
//! `landscape_every` (train/landscape.rs) for several runs side by side, as the
//! loss-landscape paper shows them (Figure 1: the loss and its variation along the gradient;
//! Figure 2: gradient cosine similarity and unstable ReLUs; Figure 10: gradient difference),
//! with their means over the ramp-up and the correlation between unstable ReLUs and cosine.
//!
//! A ramp-up epoch is a measured epoch whose `eps` is above 0 while the previous epoch's was
//! below the run's largest `eps` (so the epoch that reaches it counts, later ones do not).

use super::plot::{LineChart, Series};
use super::report::read_metrics;
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes;
use crate::train::landscape::step_lengths;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;

/// The per-epoch keys of the CSV and the charts (without their `landscape_` prefix).
const KEYS: [&str; 9] = ["loss", "loss_min", "loss_max", "loss_variation", "grad_cosine", "grad_diff", "grad_diff_rms", "grad_norm", "unstable_ratio"];

/// One run's measured epochs.
#[derive(Clone, Debug)]
pub struct Run {
    pub name: String,
    pub rows: Vec<Map<String, Value>>,
}

fn get(row: &Map<String, Value>, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

fn measured(row: &Map<String, Value>) -> bool {
    row.contains_key("landscape_loss")
}

impl Run {
    /// Reads `DIR/metrics.jsonl`; a run without any measurement is an error.
    pub fn load(dir: &Path, name: &str) -> Result<Run> {
        let path = dir.join("metrics.jsonl");
        if !path.is_file() {
            return Err(Error::input(format!("{}: no metrics.jsonl (not a training run directory)", dir.display())));
        }
        let rows = read_metrics(&path)?;
        if !rows.iter().any(measured) {
            return Err(Error::file(&path, "has no landscape_* measurements: train with `--set landscape_every=1`"));
        }
        Ok(Run { name: name.to_string(), rows })
    }

    /// The measured rows with their epoch and whether they are ramp-up epochs.
    fn epochs(&self) -> Vec<(f64, bool, &Map<String, Value>)> {
        let max = self.rows.iter().filter_map(|r| get(r, "eps")).fold(0.0, f64::max);
        let mut prev = 0.0;
        let mut out = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            let eps = get(r, "eps").unwrap_or(0.0);
            let ramp = eps > 0.0 && prev < max;
            prev = eps;
            if measured(r) {
                out.push((get(r, "epoch").unwrap_or((i + 1) as f64), ramp, r));
            }
        }
        out
    }

    pub fn summary(&self) -> RunSummary {
        let ramp: Vec<&Map<String, Value>> = self.epochs().into_iter().filter(|e| e.1).map(|e| e.2).collect();
        let mean = |key: &str| {
            let v: Vec<f64> = ramp.iter().filter_map(|r| get(r, &format!("landscape_{key}"))).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let pairs: Vec<(f64, f64)> = ramp.iter().filter_map(|r| Some((get(r, "landscape_unstable_ratio")?, get(r, "landscape_grad_cosine")?))).collect();
        RunSummary {
            name: self.name.clone(),
            measured_epochs: self.epochs().len(),
            rampup_epochs: ramp.len(),
            loss_variation: mean("loss_variation"),
            grad_cosine: mean("grad_cosine"),
            grad_diff: mean("grad_diff"),
            unstable_ratio: mean("unstable_ratio"),
            corr_unstable_cosine: pearson(&pairs),
        }
    }
}

/// Means over a run's ramp-up epochs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunSummary {
    pub name: String,
    pub measured_epochs: usize,
    pub rampup_epochs: usize,
    pub loss_variation: Option<f64>,
    pub grad_cosine: Option<f64>,
    pub grad_diff: Option<f64>,
    pub unstable_ratio: Option<f64>,
    /// Pearson correlation of the unstable-ReLU ratio and the gradient cosine over the
    /// ramp-up epochs (None with fewer than 3 or a constant series).
    pub corr_unstable_cosine: Option<f64>,
}

/// Pearson's correlation coefficient.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// `landscape.csv`: `run,epoch,eps,rampup,loss,...,unstable_ratio` (the landscape keys
/// without their prefix; empty where a value is null).
pub fn csv(runs: &[Run]) -> String {
    let mut out = format!("run,epoch,eps,rampup,{}\n", KEYS.join(","));
    for run in runs {
        for (epoch, ramp, r) in run.epochs() {
            let cells: Vec<String> = KEYS.iter().map(|k| get(r, &format!("landscape_{k}")).map(|v| v.to_string()).unwrap_or_default()).collect();
            out.push_str(&format!("{},{epoch},{},{},{}\n", run.name, get(r, "eps").unwrap_or(0.0), u8::from(ramp), cells.join(",")));
        }
    }
    out
}

/// The mean over the ramp-up epochs of `L(theta(t)) - L(theta(0))` at each step length
/// (the paper's Figure 1, right).
pub fn mean_curve(run: &Run) -> Vec<(f64, f64)> {
    let curves: Vec<Vec<f64>> = run
        .epochs()
        .into_iter()
        .filter(|e| e.1)
        .filter_map(|e| e.2.get("landscape_loss_curve")?.as_array().map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect::<Vec<f64>>()))
        .filter(|c| c.len() == step_lengths().len())
        .collect();
    step_lengths()
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, curves.iter().map(|c| c[i] - c[0]).sum::<f64>() / curves.len().max(1) as f64))
        .collect()
}

/// landscape.csv, summary.json and the figures into `dir`.
pub fn write(dir: &Path, runs: &[Run]) -> Result<()> {
    write_bytes(&dir.join("landscape.csv"), csv(runs).as_bytes())?;
    let summaries: Vec<RunSummary> = runs.iter().map(Run::summary).collect();
    let pooled: Vec<(f64, f64)> = runs
        .iter()
        .flat_map(|r| r.epochs().into_iter().filter(|e| e.1).filter_map(|e| Some((get(e.2, "landscape_unstable_ratio")?, get(e.2, "landscape_grad_cosine")?))).collect::<Vec<_>>())
        .collect();
    let summary = serde_json::json!({
        "rampup_rule": "measured epochs with eps > 0 whose previous epoch's eps is below the run's largest",
        "runs": summaries,
        "corr_unstable_cosine_pooled": pearson(&pooled),
        "rampup_epochs_pooled": pooled.len(),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(Error::internal)? + "\n";
    write_bytes(&dir.join("summary.json"), text.as_bytes())?;
    let per_epoch = |key: &str| -> Vec<Series> {
        runs.iter().map(|r| Series { name: r.name.clone(), points: r.epochs().into_iter().filter_map(|(e, _, row)| Some((e, get(row, &format!("landscape_{key}"))?))).collect() }).collect()
    };
    let chart = |stem: &str, title: &str, y: &str, series: Vec<Series>| LineChart { title: title.into(), x_label: "epoch".into(), y_label: y.into(), series, y_range: None }.write(&dir.join(stem));
    chart("landscape_variation", "loss variation along the gradient (max - min over t in [0, 5])", "loss variation", per_epoch("loss_variation"))?;
    let band: Vec<Series> = runs
        .iter()
        .flat_map(|r| {
            ["loss", "loss_min", "loss_max"].map(|k| Series { name: format!("{}: {}", r.name, k.replace('_', " ")), points: r.epochs().into_iter().filter_map(|(e, _, row)| Some((e, get(row, &format!("landscape_{k}"))?))).collect() })
        })
        .collect();
    chart("landscape_loss", "training loss and its range along the gradient direction", "loss L(theta(t))", band)?;
    chart("landscape_cosine", "cosine similarity of consecutive gradients", "cos(grad L(theta0), grad L(theta1))", per_epoch("grad_cosine"))?;
    chart("landscape_grad_diff", "difference of consecutive gradients", "||grad L(theta0) - grad L(theta1)||", per_epoch("grad_diff"))?;
    chart("landscape_unstable", "unstable ReLUs (l < 0 < u) under the training relaxation", "ratio of unstable ReLUs", per_epoch("unstable_ratio"))?;
    LineChart {
        title: "loss along the gradient direction, mean over the ramp-up".into(),
        x_label: "t (theta(t) = theta0 - t lr grad L)".into(),
        y_label: "L(theta(t)) - L(theta0)".into(),
        series: runs.iter().map(|r| Series { name: r.name.clone(), points: mean_curve(r) }).collect(),
        y_range: None,
    }
    .write(&dir.join("landscape_curves"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, eps: f64, unstable: f64, cosine: f64) -> Map<String, Value> {
        let v = serde_json::json!({"epoch": epoch, "eps": eps, "landscape_loss": 1.0, "landscape_loss_variation": 0.5, "landscape_unstable_ratio": unstable, "landscape_grad_cosine": cosine});
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn rampup_means_and_correlation() {
        // Warm-up (eps 0), three ramp-up epochs (the last reaches 0.3), one after.
        let run = Run { name: "a".into(), rows: vec![row(1, 0.0, 0.0, 0.9), row(2, 0.1, 0.1, 0.8), row(3, 0.2, 0.2, 0.6), row(4, 0.3, 0.3, 0.4), row(5, 0.3, 0.5, 0.1)] };
        let s = run.summary();
        assert_eq!((s.measured_epochs, s.rampup_epochs), (5, 3));
        assert!((s.unstable_ratio.unwrap() - 0.2).abs() < 1e-12);
        assert!((s.grad_cosine.unwrap() - 0.6).abs() < 1e-12);
        // cosine = 1 - 2 unstable exactly on the ramp-up: correlation -1.
        assert!((s.corr_unstable_cosine.unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]), Some(1.0));
        assert_eq!(pearson(&[(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]), None);
        let table = csv(&[run]);
        assert_eq!(table.lines().count(), 6);
        assert!(table.lines().nth(2).unwrap().starts_with("a,2,0.1,1,1,,,0.5,0.8,"), "{table}");
    }
}
