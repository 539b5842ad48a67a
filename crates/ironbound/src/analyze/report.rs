//! `ironbound report RUN_DIR`: one self-contained HTML page for a training run: the curves of
//! metrics.jsonl (loss, accuracies, the eps/kappa/beta schedule, learning rate, timing, and
//! every other numeric measurement, e.g. the loss-landscape ones), the resolved config, and
//! the analyses found in the directory (tightness, scans, cross-certification), with their
//! figures inlined as SVG so the page is one file that opens anywhere.

use super::plot::{LineChart, Series};
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Charts of metrics.jsonl: a title, a y label, a scale for the values, and its keys.
const GROUPS: [(&str, &str, f64, &[&str]); 5] = [
    ("Loss", "loss", 1.0, &["loss", "natural_loss", "robust_loss"]),
    ("Accuracy", "accuracy (%)", 100.0, &["train_accuracy", "clean_accuracy", "certified_accuracy", "certified_accuracy_ibp", "pgd_accuracy"]),
    ("Schedule", "value", 1.0, &["eps", "kappa", "beta"]),
    ("Learning rate", "learning rate", 1.0, &["lr"]),
    ("Time per epoch", "seconds", 1.0, &["seconds", "train_seconds"]),
];

/// Keys that are bookkeeping, not curves.
const NOT_CURVES: [&str; 4] = ["epoch", "steps", "eval_n", "eps_test"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Reads metrics.jsonl as one JSON object per line.
pub fn read_metrics(path: &Path) -> Result<Vec<serde_json::Map<String, Value>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => rows.push(m),
            Ok(_) => return Err(Error::file(path, format!("line {} is not a JSON object", i + 1))),
            Err(e) => return Err(Error::file(path, format!("line {}: {e}", i + 1))),
        }
    }
    if rows.is_empty() {
        return Err(Error::file(path, "has no epochs"));
    }
    Ok(rows)
}

/// The numeric curve of `key` over the epochs (epochs where it is null are skipped).
fn curve(rows: &[serde_json::Map<String, Value>], key: &str, scale: f64) -> Vec<(f64, f64)> {
    rows.iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let epoch = r.get("epoch").and_then(Value::as_f64).unwrap_or((i + 1) as f64);
            r.get(key).and_then(Value::as_f64).map(|v| (epoch, v * scale))
        })
        .collect()
}

/// Every chart of the run's metrics, as SVG, with its title.
fn metric_charts(rows: &[serde_json::Map<String, Value>]) -> Result<Vec<(String, String)>> {
    let mut charts = Vec::new();
    let mut used: BTreeSet<&str> = NOT_CURVES.into_iter().collect();
    let mut add = |title: &str, y_label: &str, series: Vec<Series>| -> Result<()> {
        if series.iter().any(|s| !s.points.is_empty()) {
            let chart = LineChart { title: title.into(), x_label: "epoch".into(), y_label: y_label.into(), series, y_range: None };
            charts.push((title.to_string(), chart.svg()?));
        }
        Ok(())
    };
    for (title, y_label, scale, keys) in GROUPS {
        used.extend(keys.iter().copied());
        let series = keys.iter().map(|k| Series { name: k.to_string(), points: curve(rows, k, scale) }).filter(|s| !s.points.is_empty()).collect();
        add(title, y_label, series)?;
    }
    // Everything else numeric (landscape measurements, regularisers, ...), one chart each.
    let others: BTreeSet<String> = rows.iter().flat_map(|r| r.iter().filter(|(k, v)| v.is_number() && !used.contains(k.as_str())).map(|(k, _)| k.clone())).collect();
    for key in others {
        add(&key, &key, vec![Series { name: key.clone(), points: curve(rows, &key, 1.0) }])?;
    }
    Ok(charts)
}

/// An HTML table of the last epoch's values.
fn last_epoch_table(rows: &[serde_json::Map<String, Value>]) -> String {
    let mut out = String::from("<table><tr><th>key</th><th>value</th></tr>");
    if let Some(last) = rows.last() {
        for (k, v) in last {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(&shown));
        }
    }
    out + "</table>"
}

/// An SVG file's markup for inlining (without an XML declaration).
fn inline_svg(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let start = text.find("<svg")?;
    Some(text[start..].to_string())
}

/// A CSV file as an HTML table.
fn csv_table(path: &Path, max_rows: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut out = String::from("<table>");
    for (i, line) in text.lines().take(max_rows + 1).enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        out.push_str("<tr>");
        for field in line.split(',') {
            let _ = write!(out, "<{cell}>{}</{cell}>", escape(field));
        }
        out.push_str("</tr>");
    }
    Some(out + "</table>")
}

/// The directories (the run directory and its subdirectories) that hold analyses.
fn analysis_dirs(run: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![run.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(run) {
        let mut subs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
        subs.sort();
        dirs.extend(subs);
    }
    dirs
}

/// The analyses' sections: tightness (cr_auc.json), scans (jumps.json), cross-certification.
fn analysis_sections(run: &Path) -> String {
    let mut out = String::new();
    for dir in analysis_dirs(run) {
        let name = dir.strip_prefix(run).ok().map(|p| p.display().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| ".".into());
        let mut section = |title: &str, table: Option<String>, figures: &[PathBuf]| {
            let _ = write!(out, "<h2>{} <small>({})</small></h2>", escape(title), escape(&name));
            out.push_str(&table.unwrap_or_default());
            for f in figures {
                if let Some(svg) = inline_svg(f) {
                    let _ = write!(out, "<figure>{svg}</figure>");
                }
            }
        };
        if dir.join("cr_auc.json").exists() {
            let auc = std::fs::read_to_string(dir.join("cr_auc.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Map<String, Value>>(&t).ok());
            let table = auc.map(|m| {
                let rows: String = m.iter().map(|(k, v)| format!("<tr><td>{}</td><td>{}</td></tr>", escape(k), v.as_f64().map(|x| format!("{x:.4}")).unwrap_or_default())).collect();
                format!("<table><tr><th>method</th><th>CR-AUC</th></tr>{rows}</table>")
            });
            section("Tightness: CR curves", table, &[dir.join("cr_curve.svg")]);
        }
        if dir.join("jumps.json").exists() {
            let mut figures: Vec<PathBuf> = std::fs::read_dir(&dir).map(|e| e.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "svg")).collect()).unwrap_or_default();
            figures.sort();
            let summary = std::fs::read_to_string(dir.join("jumps.json")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).map(|j| {
                let rows: String = j["methods"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", escape(k), v["jumps_any_output"], v["jumps_robust_loss"])).collect())
                    .unwrap_or_default();
                format!("<table><tr><th>method</th><th>jumps in output bounds</th><th>jumps in robust loss</th></tr>{rows}</table>")
            });
            section("Continuity scan", summary, &figures);
        }
        if dir.join("cross.csv").exists() {
            section("Cross-certification", csv_table(&dir.join("cross.csv"), 50), &[dir.join("cross.svg")]);
        }
    }
    out
}

/// The whole page for `run` (which holds metrics.jsonl).
pub fn render(run: &Path) -> Result<String> {
    let metrics = run.join("metrics.jsonl");
    if !metrics.exists() {
        return Err(Error::file(run, "has no metrics.jsonl (is it a training run directory?)"));
    }
    let rows = read_metrics(&metrics)?;
    let charts = metric_charts(&rows)?;
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap_or_default();
    let title = format!("ironbound run {}", run.display());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px}} figure{{margin:1em 0}} svg{{max-width:100%;height:auto}}\
         table{{border-collapse:collapse;margin:0.5em 0}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}\
         pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body><h1>{t}</h1>\
         <p>{n} epochs. Generated by ironbound {v}.</p>",
        t = escape(&title),
        n = rows.len(),
        v = env!("CARGO_PKG_VERSION")
    );
    let _ = write!(page, "<h2>Last epoch</h2>{}", last_epoch_table(&rows));
    for (title, svg) in &charts {
        let _ = write!(page, "<h2>{}</h2><figure>{svg}</figure>", escape(title));
    }
    page.push_str(&analysis_sections(run));
    if !config.is_empty() {
        let _ = write!(page, "<h2>Configuration</h2><pre>{}</pre>", escape(&config));
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_every_metric_and_the_analyses() {
        let dir = std::env::temp_dir().join(format!("ironbound-report-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tight")).unwrap();
        let lines = [
            r#"{"epoch":1,"loss":1.0,"clean_accuracy":0.5,"certified_accuracy":0.1,"eps":0.0,"kappa":1.0,"lr":0.001,"seconds":2.0,"grad_cosine":0.3,"certify_method":"ibp","robust_loss":null}"#,
            r#"{"epoch":2,"loss":0.5,"clean_accuracy":0.7,"certified_accuracy":0.3,"eps":0.1,"kappa":0.5,"lr":0.001,"seconds":2.0,"grad_cosine":0.6,"certify_method":"ibp","robust_loss":0.9}"#,
        ];
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
        std::fs::write(dir.join("config.toml"), "method = \"ibp\" # <b>\n").unwrap();
        std::fs::write(dir.join("tight/cr_auc.json"), r#"{"ibp": 0.25}"#).unwrap();
        std::fs::write(dir.join("tight/cr_curve.svg"), "<?xml version=\"1.0\"?><svg id=\"cr\"></svg>").unwrap();
        let page = render(&dir).unwrap();
        for needle in ["<h2>Loss</h2>", "<h2>Accuracy</h2>", "<h2>Schedule</h2>", "<h2>grad_cosine</h2>", "robust_loss", "CR-AUC", "0.2500", "<svg id=\"cr\">", "&lt;b&gt;"] {
            assert!(page.contains(needle), "missing {needle}");
        }
        assert!(!page.contains("<?xml version=\"1.0\"?><svg id"), "SVG inlined with its declaration");
        assert!(render(&dir.join("tight")).unwrap_err().to_string().contains("no metrics.jsonl"));
        std::fs::write(dir.join("metrics.jsonl"), "{not json}").unwrap();
        assert!(render(&dir).unwrap_err().to_string().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
