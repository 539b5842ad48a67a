//! One line of `metrics.jsonl` per epoch.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (the optimised objective).
    pub loss: f64,
    /// Mean natural cross-entropy over the epoch's batches.
    pub natural_loss: f64,
    /// Mean robust loss over the batches that computed one (null during warm-up).
    pub robust_loss: Option<f64>,
    /// Accuracy on the training batches, before each update.
    pub train_accuracy: f64,
    /// Accuracy on the evaluation split.
    pub clean_accuracy: f64,
    /// Certified accuracy at `eps_test` with `certify_method`.
    pub certified_accuracy: f64,
    /// Certified accuracy at `eps_test` with IBP.
    pub certified_accuracy_ibp: f64,
    pub certify_method: String,
    /// PGD accuracy at `eps_test` (only with `eval_pgd_steps`).
    pub pgd_accuracy: Option<f64>,
    /// Training radius at the last step of the epoch (the schedule's value).
    pub eps: f64,
    /// Radius of the certified accuracies.
    pub eps_test: f64,
    pub kappa: f64,
    /// CROWN-IBP / CAP-IBP mixing weight (null for other methods).
    pub beta: Option<f64>,
    pub lr: f64,
    /// Optimiser steps taken so far.
    pub steps: u64,
    /// Samples the accuracies were measured on, and on which split.
    pub eval_n: usize,
    pub eval_split: String,
    /// Wall-clock seconds of the epoch (training and evaluation), and of training alone.
    pub seconds: f64,
    pub train_seconds: f64,
    /// Tightness regularizers (only when computed): the mean over the epoch's batches of the
    /// batch means of `sum_t d_t` and `sum_t r_t`, at each step's training radius, and the
    /// weights lambda, gamma at the epoch's last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_d: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_r: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_d_weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_r_weight: Option<f64>,
    /// Further measurements as flat keys of the same object: the loss-landscape ones of
    /// `train/landscape.rs` (`landscape_*`, on the epochs `landscape_every` picks). Any key
    /// of a checkpoint's record that is not a field above lands here, so resuming keeps it.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Writes every record, one JSON object a line, atomically (so the file always matches the
/// checkpoint it was written after).
pub fn write_jsonl(path: &Path, records: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).map_err(Error::internal)?);
        text.push('\n');
    }
    crate::io::atomic::write_bytes(path, text.as_bytes())
}

/// Reads `metrics.jsonl`.
pub fn read_jsonl(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::file(path, format!("line {}: {e}", i + 1))))
        .collect()
}
