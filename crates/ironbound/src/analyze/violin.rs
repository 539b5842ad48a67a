//! Distributions of tightness and robust loss over a test set (loss-landscape Section 6,
//! Figure 4, Appendix P): for each (model, relaxation) pair and each sample, the tightness
//! `T = sum_m s_m`, with `s_m` the upper bound of the margin `z_m - z_y` (`s_y = 0`, lower is
//! tighter), and the robust loss `CE([0, -lb], 0) = ln(1 + sum_m exp(-lb_m))` of the margin
//! lower bounds `lb = -s`.

use super::plot::{quantile, Violins};
use crate::bounds::{input_region, lower_bound, Method, Spec};
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes;
use crate::net::Network;
use crate::tensor::{from_vec, to_vec, Device};
use serde::Serialize;
use std::path::Path;

/// One violin: a model certified with one relaxation.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub model: String,
    pub method: String,
    pub tightness: Vec<f64>,
    pub robust_loss: Vec<f64>,
}

impl Group {
    pub fn name(&self) -> String {
        format!("{} / {}", self.model, self.method)
    }
}

/// The robust cross-entropy of one sample's margin lower bounds, in f64 and stable.
pub fn robust_loss(margin_lower: &[f64]) -> f64 {
    let worst = margin_lower.iter().map(|&l| -l).fold(0.0, f64::max);
    let sum: f64 = std::iter::once(0.0).chain(margin_lower.iter().map(|&l| -l)).map(|z| (z - worst).exp()).sum();
    worst + sum.ln()
}

/// Per-sample tightness and robust loss of `method` on `net` (`data` row-major images).
pub fn measure(net: &Network, data: &[f32], labels: &[usize], eps: f64, clip: Option<(f64, f64)>, method: Method, batch_size: usize, device: &Device) -> Result<(Vec<f64>, Vec<f64>)> {
    let s = net.input_shape();
    let per: usize = s.iter().product();
    if data.len() != labels.len() * per {
        return Err(Error::input(format!("{} values for {} samples of shape {s:?}", data.len(), labels.len())));
    }
    let k = net.num_outputs();
    let (mut tight, mut loss) = (Vec::new(), Vec::new());
    for start in (0..labels.len()).step_by(batch_size.max(1)) {
        let end = (start + batch_size.max(1)).min(labels.len());
        let x = from_vec(data[start * per..end * per].to_vec(), [end - start, s[0], s[1], s[2]], device);
        let region = input_region(&x, eps, clip);
        let lb = to_vec(lower_bound(net, &region, &Spec::margins(&labels[start..end], k, device)?, &method.relaxation())?);
        for row in lb.chunks(k - 1) {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            tight.push(-row.iter().sum::<f64>());
            loss.push(robust_loss(&row));
        }
    }
    Ok((tight, loss))
}

/// violin.csv, summary.json, violin_tightness.png/.svg and violin_loss.png/.svg into `dir`.
pub fn write(dir: &Path, groups: &[Group], eps: f64) -> Result<()> {
    let mut csv = String::from("model,method,sample,tightness,robust_loss\n");
    for g in groups {
        for (i, (t, l)) in g.tightness.iter().zip(&g.robust_loss).enumerate() {
            csv.push_str(&format!("{},{},{i},{t},{l}\n", g.model, g.method));
        }
    }
    write_bytes(&dir.join("violin.csv"), csv.as_bytes())?;
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        serde_json::json!({"q25": quantile(&s, 0.25), "median": quantile(&s, 0.5), "q75": quantile(&s, 0.75), "mean": s.iter().sum::<f64>() / s.len().max(1) as f64})
    };
    let summary: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| serde_json::json!({"model": g.model, "method": g.method, "n": g.tightness.len(), "tightness": stats(&g.tightness), "robust_loss": stats(&g.robust_loss)}))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({"eps": eps, "groups": summary})).map_err(Error::internal)? + "\n";
    write_bytes(&dir.join("summary.json"), text.as_bytes())?;
    let violins = |title: &str, y: &str, pick: &dyn Fn(&Group) -> Vec<f64>| Violins { title: title.into(), y_label: y.into(), groups: groups.iter().map(|g| (g.name(), pick(g))).collect() };
    violins(&format!("tightness (sum of margin upper bounds; lower is tighter), eps {eps}"), "tightness T", &|g| g.tightness.clone()).write(&dir.join("violin_tightness"))?;
    violins(&format!("robust loss, eps {eps}"), "robust cross-entropy", &|g| g.robust_loss.clone()).write(&dir.join("violin_loss"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_loss_is_the_worst_case_cross_entropy() {
        // Margins 0 and 0 over three classes: uniform worst-case logits, loss ln 3.
        assert!((robust_loss(&[0.0, 0.0]) - 3f64.ln()).abs() < 1e-12);
        // Large margins: loss -> 0; very negative: loss ~ -lb (no overflow).
        assert!(robust_loss(&[50.0, 60.0]) < 1e-20);
        assert!((robust_loss(&[-1000.0, 0.0]) - 1000.0).abs() < 1e-9);
    }
}
