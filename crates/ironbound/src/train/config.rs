//! The configuration of `ironbound train`: one flat TOML table whose keys are the fields of
//! [`TrainConfig`]. Unknown keys and wrong types are errors naming the key and the file;
//! command-line flags override the file; [`TrainConfig::resolve`] fills method-dependent
//! defaults and checks every value before any work starts, naming the key and where its
//! value came from (file, flag or default).

use super::colt;
use super::land::{self, StabilityForm};
use super::schedule::{LrKind, RampShape, Span};
use crate::bounds::{Method, SlopeRule};
use crate::data::DatasetName;
use crate::error::{one_line, Error, Result};
use crate::net::{arch, NetSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A TOML value, for setting keys from the command line.
pub use toml::Value as ConfigValue;

/// Which lower bounds the robust loss uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpecKind {
    /// Margins y - j with the specification folded into the last layer ("elision",
    /// Gowal et al.): lower bounds `[N, K-1]`.
    #[default]
    Diffs,
    /// Bounds of the logits themselves (no elision): the worst-case logits are the lower
    /// bound of the label and the upper bounds of the others.
    Eye,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    #[default]
    Adam,
    Sgd,
}

/// Where per-epoch accuracies are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The test split (what the CROWN-IBP and paradox papers report; no model selection).
    #[default]
    Test,
    /// The last `holdout_fraction` of the training split, which is then not trained on.
    Holdout,
}

/// What the training loss is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainMethod {
    /// Cross-entropy on clean inputs only.
    Natural,
    /// Adversarial training (Madry et al.) with PGD points.
    Pgd,
    /// Certified training with worst-case margins from a relaxation.
    Bound(Method),
    /// COLT's layerwise adversarial training in latent zonotopes (`colt.rs`).
    Colt,
}

impl TrainMethod {
    pub fn name(&self) -> &'static str {
        match self {
            TrainMethod::Natural => "natural",
            TrainMethod::Pgd => "pgd",
            TrainMethod::Bound(m) => m.name(),
            TrainMethod::Colt => "colt",
        }
    }

    /// Methods whose robust bound mixes IBP with a tighter final pass by beta (Eq. 9 of
    /// CROWN-IBP, Eq. 7 of the loss-landscape paper).
    pub fn mixes_ibp(&self) -> bool {
        matches!(self, TrainMethod::Bound(Method::CrownIbp | Method::CapIbp | Method::OneStep | Method::RandomSlope))
    }
}

impl fmt::Display for TrainMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TrainMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "natural" | "standard" | "clean" => Ok(TrainMethod::Natural),
            "pgd" | "adversarial" => Ok(TrainMethod::Pgd),
            "colt" => Ok(TrainMethod::Colt),
            other => match other.parse::<Method>() {
                Ok(Method::AlphaCrown) => Err(Error::input(
                    "alpha-crown optimises its slopes per input and is not a training relaxation; train with crown",
                )),
                Ok(m) => Ok(TrainMethod::Bound(m)),
                Err(_) => {
                    let names: Vec<&str> = ["natural", "pgd", "colt"]
                        .into_iter()
                        .chain(Method::ALL.iter().filter(|m| **m != Method::AlphaCrown).map(|m| m.name()))
                        .collect();
                    Err(Error::input(format!("unknown method '{s}' (known: {})", names.join(", "))))
                }
            },
        }
    }
}

/// Every setting of a training run. Optional fields get defaults in [`TrainConfig::resolve`]
/// (some depend on the method); `config.toml` in the output directory holds them all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Free text (paper, table row); ignored by training.
    pub note: Option<String>,
    pub dataset: Option<String>,
    pub arch: Option<String>,
    /// natural, pgd, or a relaxation (ibp, hbox, deepz, crown, crown-0, crown-ibp, cap-ibp).
    pub method: Option<String>,
    /// Test radius: per-epoch certified accuracy is measured at this eps.
    pub eps: Option<f64>,
    pub epochs: Option<usize>,
    pub seed: u64,

    /// Training radius reached at the end of the ramp-up (default: `eps`).
    pub eps_train: Option<f64>,
    /// Radius at the start of the ramp-up (Wong et al. start from 0.001).
    pub eps_start: f64,
    /// Natural training epochs before the ramp-up.
    pub warmup_epochs: usize,
    /// Epochs over which eps, kappa and beta move to their end values (default: half of the
    /// epochs after warm-up).
    pub rampup_epochs: Option<usize>,
    /// Warm-up and ramp-up in optimiser steps instead of epochs (Gowal et al.: 2K and 10K);
    /// each excludes its epoch key.
    pub warmup_steps: Option<usize>,
    pub rampup_steps: Option<usize>,
    /// linear or smoothed.
    pub eps_schedule: RampShape,
    pub smoothed_mid: f64,
    pub smoothed_power: f64,
    /// Weight of the natural loss: loss = kappa natural + (1 - kappa) robust.
    pub kappa_start: Option<f64>,
    pub kappa_end: Option<f64>,
    /// CROWN-IBP / CAP-IBP: robust bound = (1 - beta) IBP + beta relaxation.
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    /// diffs (margins, elided last layer) or eye (bounds of the logits).
    pub spec: SpecKind,

    pub optimizer: OptimizerName,
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 penalty added to the gradients (PyTorch's weight_decay).
    pub weight_decay: f64,
    /// L1 penalty on the weights (not biases) added to the loss.
    pub l1: f64,
    /// Clip the total gradient norm to this value.
    pub grad_clip: Option<f64>,
    /// constant, milestones or step.
    pub lr_schedule: LrKind,
    /// Epochs (0-based, counted from the start) at which the learning rate is multiplied by
    /// `lr_decay`.
    pub lr_milestones: Vec<usize>,
    /// ...or in optimiser steps (Gowal et al.: 15K and 25K), excluding `lr_milestones`.
    pub lr_milestone_steps: Vec<usize>,
    /// Factor of each decay (default 0.1 for milestones, 0.5 for step).
    pub lr_decay: Option<f64>,
    /// step schedule: decay every `lr_step` epochs...
    pub lr_step: Option<usize>,
    /// ...from this epoch on.
    pub lr_step_start: usize,
    pub batch_size: usize,

    /// PGD training: attack steps and step size as a fraction of eps.
    pub pgd_steps: usize,
    pub pgd_step_fraction: f64,
    /// DeepZ/hBox training: estimate the bounds with this many Cauchy random projections per
    /// noise source (Wong et al. 2018) instead of computing them (0: exact). Evaluation and
    /// certification are always exact.
    pub projections: usize,

    /// Tightness regularizers (Zhu et al., SPEC.md section 1; methods deepz, crown, crown-ibp):
    /// the loss gets `+ reg_d_weight * sum_t d_t + reg_r_weight * sum_t r_t` (lambda and gamma
    /// of the paper's Eq. 3), averaged over the batch. Omitted from config.toml when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub reg_d_weight: f64,
    #[serde(skip_serializing_if = "is_zero")]
    pub reg_r_weight: f64,
    /// Epochs, counted from the end of the warm-up, over which both weights grow linearly
    /// from 0 (the paper's warm-up of lambda and gamma; default: the ramp-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reg_rampup_epochs: Option<usize>,
    /// Measure d and r at every step and log them in metrics.jsonl also when both weights are 0
    /// (a baseline's values; the training itself is unchanged).
    #[serde(skip_serializing_if = "is_false")]
    pub log_regularizers: bool,

    /// one-step and random-slope (loss-landscape paper, SPEC.md section 2): sign-gradient steps
    /// of the slopes and their size (default: the method's preset, one step of 1 for one-step
    /// and none for random-slope; Appendix M's multi-step variant is 7 steps of 0.1), and
    /// binary starts with P(a = 1) = `slope_p` where |l| > |u| and `slope_q` elsewhere (Section
    /// 5; both or neither; default: a ~ U[0, 1]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slope_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slope_step_size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slope_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slope_q: Option<f64>,
    /// Weight of the ReLU-stability term (0: off) on the relaxation's intermediate bounds
    /// (COLT: on the next latent layer's), in the form `tanh` (-tanh(1 + u l), Xiao et al.,
    /// the loss-landscape paper's Appendix R; the default) or `product` (relu(-l) relu(u),
    /// COLT's code; its default).
    #[serde(skip_serializing_if = "is_zero")]
    pub relu_stability: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu_stability_form: Option<StabilityForm>,

    /// COLT (`method = "colt"`, SPEC.md section 3): the latent layers of its phases (0 = the
    /// input, k = after the k-th ReLU), the epochs of each phase (they sum to `epochs` -
    /// `warmup_epochs`), each phase's factors of eps_train and of the learning rate, the
    /// epochs over which a phase's loss takes over from the previous one's, and the latent
    /// attack's sign steps and step size (in units of the noise symbols, which lie in [-1, 1]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub colt_layers: Vec<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub colt_phase_epochs: Vec<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub colt_eps_factors: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub colt_lr_factors: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colt_mix_epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colt_pgd_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colt_pgd_step: Option<f64>,
    /// Factor on `relu_stability` per later phase (the code's `relu_stable_factor`, default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colt_stability_growth: Option<f64>,

    /// Directory searched first for the dataset.
    pub data_dir: Option<String>,
    /// Train on the first N samples only (quick runs).
    pub train_n: Option<usize>,
    /// Random crops (zero padding `crop_padding`) and, with `flip`, horizontal flips.
    pub augment: bool,
    pub crop_padding: usize,
    pub flip: bool,
    /// Prepend a per-channel normalisation layer with the dataset's statistics.
    pub normalize: bool,

    /// test or holdout.
    pub eval_split: EvalSplit,
    pub holdout_fraction: f64,
    /// Evaluate on the first N samples of the evaluation split only.
    pub eval_n: Option<usize>,
    pub eval_batch_size: usize,
    /// Relaxation of `certified_accuracy` (default: the one the final training loss uses).
    pub certify_method: Option<String>,
    /// Also measure PGD accuracy at `eps` with this many steps each epoch (0: off).
    pub eval_pgd_steps: usize,
    /// Each batch is split into this many shards whose losses and gradients are computed on
    /// parallel threads (0: one per available core, at most 8). Changes results only at
    /// rounding level; a run is exactly reproducible for a fixed value.
    pub threads: usize,
    /// Write TensorBoard event files of the metrics into `DIR/tb/` (`--no-tensorboard`: off).
    pub tensorboard: bool,
    /// Loss-landscape measurements (train/landscape.rs) every this many epochs (0: off).
    pub landscape_every: usize,
    /// ...on this many batches (of `batch_size`) from the start of the training split.
    pub landscape_batches: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            note: None,
            dataset: None,
            arch: None,
            method: None,
            eps: None,
            epochs: None,
            seed: 0,
            eps_train: None,
            eps_start: 0.0,
            warmup_epochs: 0,
            rampup_epochs: None,
            warmup_steps: None,
            rampup_steps: None,
            eps_schedule: RampShape::Linear,
            smoothed_mid: 0.25,
            smoothed_power: 4.0,
            kappa_start: None,
            kappa_end: None,
            beta_start: None,
            beta_end: None,
            spec: SpecKind::Diffs,
            optimizer: OptimizerName::Adam,
            lr: 5e-4,
            momentum: 0.9,
            weight_decay: 0.0,
            l1: 0.0,
            grad_clip: None,
            lr_schedule: LrKind::Constant,
            lr_milestones: Vec::new(),
            lr_milestone_steps: Vec::new(),
            lr_decay: None,
            lr_step: None,
            lr_step_start: 0,
            batch_size: 100,
            pgd_steps: 10,
            projections: 0,
            reg_d_weight: 0.0,
            reg_r_weight: 0.0,
            reg_rampup_epochs: None,
            log_regularizers: false,
            slope_steps: None,
            slope_step_size: None,
            slope_p: None,
            slope_q: None,
            relu_stability: 0.0,
            relu_stability_form: None,
            colt_layers: Vec::new(),
            colt_phase_epochs: Vec::new(),
            colt_eps_factors: Vec::new(),
            colt_lr_factors: Vec::new(),
            colt_mix_epochs: None,
            colt_pgd_steps: None,
            colt_pgd_step: None,
            colt_stability_growth: None,
            pgd_step_fraction: 0.25,
            data_dir: None,
            train_n: None,
            augment: false,
            crop_padding: 4,
            flip: true,
            normalize: false,
            eval_split: EvalSplit::Test,
            holdout_fraction: 0.1,
            eval_n: None,
            eval_batch_size: 500,
            certify_method: None,
            eval_pgd_steps: 0,
            threads: 0,
            tensorboard: true,
            landscape_every: 0,
            landscape_batches: 10,
        }
    }
}

/// Every key a config file may hold (kept equal to the fields by a test).
pub const KEYS: &[&str] = &[
    "note", "dataset", "arch", "method", "eps", "epochs", "seed", "eps_train", "eps_start", "warmup_epochs",
    "rampup_epochs", "warmup_steps", "rampup_steps", "eps_schedule", "smoothed_mid", "smoothed_power", "kappa_start", "kappa_end", "beta_start",
    "beta_end", "spec", "optimizer", "lr", "momentum", "weight_decay", "l1", "grad_clip", "lr_schedule",
    "lr_milestones", "lr_milestone_steps", "lr_decay", "lr_step", "lr_step_start", "batch_size", "pgd_steps", "pgd_step_fraction", "projections",
    "reg_d_weight", "reg_r_weight", "reg_rampup_epochs", "log_regularizers",
    "slope_steps", "slope_step_size", "slope_p", "slope_q", "relu_stability", "relu_stability_form",
    "colt_layers", "colt_phase_epochs", "colt_eps_factors", "colt_lr_factors", "colt_mix_epochs", "colt_pgd_steps", "colt_pgd_step", "colt_stability_growth",
    "data_dir", "train_n", "augment", "crop_padding", "flip", "normalize", "eval_split", "holdout_fraction",
    "eval_n", "eval_batch_size", "certify_method", "eval_pgd_steps", "threads", "tensorboard",
    "landscape_every", "landscape_batches",
];

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Where each key's value came from, for error messages.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub file_keys: BTreeSet<String>,
    /// key -> how it was given on the command line (`--eps`, `--set lr=...`).
    pub flags: BTreeMap<String, String>,
}

impl Sources {
    /// "--eps", "configs/x.toml" or "default".
    pub fn origin(&self, key: &str) -> String {
        if let Some(flag) = self.flags.get(key) {
            return one_line(flag);
        }
        match &self.file {
            Some(f) if self.file_keys.contains(key) => f.display().to_string(),
            _ => "default".to_string(),
        }
    }
}

/// The same error with its message on one line: a `--set` argument, a quoted TOML key or a
/// string value may hold a newline. (`Error::file` escapes the reasons of file errors itself.)
fn escaped(e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(one_line(&m)),
        other => other,
    }
}

fn closest_key(key: &str) -> Option<&'static str> {
    fn dist(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut prev = row[0];
            row[0] = i;
            for j in 1..=b.len() {
                let cur = row[j];
                row[j] = (row[j] + 1).min(row[j - 1] + 1).min(prev + usize::from(a[i - 1] != b[j - 1]));
                prev = cur;
            }
        }
        row[b.len()]
    }
    const ALIASES: [(&str, &str); 17] = [
        ("learning_rate", "lr"),
        ("eps_test", "eps"),
        ("epsilon", "eps"),
        ("n_epochs", "epochs"),
        ("num_epochs", "epochs"),
        ("warmup", "warmup_epochs"),
        ("rampup", "rampup_epochs"),
        ("ramp_up", "rampup_epochs"),
        ("l1_reg", "l1"),
        ("model", "arch"),
        ("net", "arch"),
        ("relaxation", "method"),
        ("clip_grad", "grad_clip"),
        ("elision", "spec"),
        ("kappa", "kappa_end"),
        ("beta", "beta_end"),
        ("milestones", "lr_milestones"),
    ];
    if let Some((_, k)) = ALIASES.iter().find(|(a, _)| *a == key) {
        return Some(k);
    }
    KEYS.iter().map(|k| (dist(key, k), *k)).filter(|(d, _)| *d <= 3).min().map(|(_, k)| k)
}

/// One line naming the key of a TOML deserialisation error.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or("");
        let hint = closest_key(key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
        let line = e.span().map(|s| format!("line {}: ", text[..s.start.min(text.len())].matches('\n').count() + 1)).unwrap_or_default();
        return format!("{line}unknown key `{key}`{hint}; known keys: {}", KEYS.join(", "));
    }
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line_no = text[..start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("");
            match line.split_once('=') {
                Some((key, _)) => format!("line {line_no}: key `{}`: {msg}", key.trim()),
                None => format!("line {line_no}: {msg}"),
            }
        }
        None => msg.to_string(),
    }
}

impl TrainConfig {
    /// Parses a config file; errors name the file, the line and the key.
    pub fn parse(text: &str, path: &Path) -> Result<(TrainConfig, BTreeSet<String>)> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Error::file(path, describe_toml_error(&e, text)))?;
        let config: TrainConfig = toml::from_str(text).map_err(|e| Error::file(path, describe_toml_error(&e, text)))?;
        Ok((config, table.keys().cloned().collect()))
    }

    pub fn load(path: &Path) -> Result<(TrainConfig, BTreeSet<String>)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        Self::parse(&text, path)
    }

    /// Sets `key` to `value` (a TOML value) as if written in the file; `origin` names the flag
    /// in errors.
    pub fn set(&mut self, key: &str, value: toml::Value, origin: &str) -> Result<()> {
        self.set_unescaped(key, value, origin).map_err(escaped)
    }

    fn set_unescaped(&mut self, key: &str, value: toml::Value, origin: &str) -> Result<()> {
        let mut table = toml::Table::try_from(&*self).map_err(Error::internal)?;
        if !KEYS.contains(&key) {
            let hint = closest_key(key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
            return Err(Error::input(format!("{origin}: unknown key `{key}`{hint}")));
        }
        table.insert(key.to_string(), value);
        *self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::input(format!("{origin}: key `{key}`: {}", e.message().trim())))?;
        Ok(())
    }

    /// Parses `KEY=VALUE` (VALUE in TOML syntax; a bare word is taken as a string) and sets it.
    pub fn set_str(&mut self, assignment: &str) -> Result<String> {
        let origin = format!("--set {assignment}");
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| escaped(Error::input(format!("{origin}: expected KEY=VALUE"))))?;
        let key = key.trim();
        let value = value.trim();
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        self.set(key, parsed, &origin)?;
        Ok(key.to_string())
    }

    /// The TOML text of this config (what `config.toml` holds).
    pub fn to_toml(&self) -> Result<String> {
        let mut text = toml::to_string(self).map_err(Error::internal)?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

/// A checked configuration with every default filled in and the names parsed.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Every optional field set: serialise it to rerun exactly this run.
    pub config: TrainConfig,
    pub dataset: DatasetName,
    pub method: TrainMethod,
    pub certify_method: Method,
    /// The architecture for the dataset's input shape (with a normalisation layer first when
    /// `normalize` is set).
    pub arch: NetSpec,
    pub eps: f64,
    pub eps_train: f64,
    pub epochs: usize,
    pub warmup: Span,
    pub rampup: Span,
    /// The step-counted span's key and where it was set, for `check_steps`.
    steps_key: Option<(&'static str, String)>,
    pub kappa_start: f64,
    pub kappa_end: f64,
    pub beta_start: f64,
    pub beta_end: f64,
    pub lr_decay: f64,
    /// Whether the tightness regularizers are computed (a weight > 0 or `log_regularizers`),
    /// and the span over which their weights grow from 0.
    pub regularizers: bool,
    pub reg_rampup: Span,
    /// The slope rule of one-step / random-slope when a `slope_*` key changes the preset.
    pub slopes: Option<SlopeRule>,
    /// Weight and form of the ReLU-stability term (bound methods; COLT's is in its plan).
    pub stability: Option<(f64, StabilityForm)>,
    /// COLT's phases.
    pub colt: Option<colt::Plan>,
}

impl Resolved {
    /// Checks a warm-up or ramp-up counted in steps against the length of training, which is
    /// known once the data are loaded.
    pub fn check_steps(&self, steps_per_epoch: usize) -> Result<()> {
        let (w, r) = (self.warmup.steps(steps_per_epoch), self.rampup.steps(steps_per_epoch));
        let total = (self.epochs as u64).saturating_mul(steps_per_epoch as u64);
        match &self.steps_key {
            Some((key, origin)) if w.saturating_add(r) > total => Err(Error::input(format!(
                "{origin}: `{key}`: warm-up ({w} steps) + ramp-up ({r} steps) is longer than training ({} epochs of {steps_per_epoch} steps = {total})",
                self.epochs
            ))),
            _ => Ok(()),
        }
    }
}

/// Per-channel mean and std of the training split (the values CROWN-IBP and the DeepMind IBP
/// code use for CIFAR-10).
pub fn dataset_statistics(name: DatasetName) -> (Vec<f32>, Vec<f32>) {
    match name {
        DatasetName::Mnist => (vec![0.1307], vec![0.3081]),
        DatasetName::FashionMnist => (vec![0.2860], vec![0.3530]),
        DatasetName::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010]),
        DatasetName::Svhn => (vec![0.4377, 0.4438, 0.4728], vec![0.1980, 0.2010, 0.1970]),
    }
}

impl TrainConfig {
    /// Fills defaults and checks every value; errors name the key and its origin.
    pub fn resolve(&self, sources: &Sources) -> Result<Resolved> {
        self.resolve_unescaped(sources).map_err(escaped)
    }

    fn resolve_unescaped(&self, sources: &Sources) -> Result<Resolved> {
        let err = |key: &str, problem: String| Error::input(format!("{}: `{key}` {problem}", sources.origin(key)));
        let missing = |key: &str| {
            let file = sources.file.as_ref().map(|f| format!(" or `{key}` in {}", f.display())).unwrap_or_default();
            Error::input(format!("missing {key}: give --{key}{file}"))
        };
        let mut c = self.clone();

        let dataset: DatasetName = c.dataset.as_deref().ok_or_else(|| missing("dataset"))?.parse().map_err(|e: Error| err("dataset", format!("is invalid: {e}")))?;
        c.dataset = Some(dataset.as_str().to_string());
        let arch_name = c.arch.clone().ok_or_else(|| missing("arch"))?;
        let mut arch = arch::named(&arch_name, dataset.input_shape()).map_err(|e| err("arch", format!("is invalid: {e}")))?;
        if c.normalize {
            let (mean, std) = dataset_statistics(dataset);
            arch = arch.with_normalize(mean, std);
        }
        let method: TrainMethod = c.method.as_deref().ok_or_else(|| missing("method"))?.parse().map_err(|e: Error| err("method", format!("is invalid: {e}")))?;
        c.method = Some(method.name().to_string());

        let eps = c.eps.ok_or_else(|| missing("eps"))?;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(err("eps", format!("must be a finite number >= 0, got {eps}")));
        }
        let eps_train = *c.eps_train.get_or_insert(eps);
        if !(eps_train.is_finite() && eps_train >= 0.0) {
            return Err(err("eps_train", format!("must be a finite number >= 0, got {eps_train}")));
        }
        if !(c.eps_start.is_finite() && c.eps_start >= 0.0 && c.eps_start <= eps_train) {
            return Err(err("eps_start", format!("must lie in [0, eps_train = {eps_train}], got {}", c.eps_start)));
        }
        let epochs = c.epochs.ok_or_else(|| missing("epochs"))?;
        if epochs == 0 {
            return Err(err("epochs", "must be at least 1".into()));
        }
        if c.warmup_steps.is_some() && c.warmup_epochs > 0 {
            return Err(err("warmup_steps", "and `warmup_epochs` both set: give the warm-up in one unit".into()));
        }
        if c.rampup_steps.is_some() && c.rampup_epochs.is_some() {
            return Err(err("rampup_steps", "and `rampup_epochs` both set: give the ramp-up in one unit".into()));
        }
        if c.warmup_epochs > epochs {
            return Err(err("warmup_epochs", format!("= {} is longer than training (`epochs` = {epochs})", c.warmup_epochs)));
        }
        let warmup = c.warmup_steps.map_or(Span::Epochs(c.warmup_epochs), Span::Steps);
        let rampup = match c.rampup_steps {
            Some(s) => Span::Steps(s),
            // COLT trains each phase at its own constant radius.
            None if method == TrainMethod::Colt => Span::Epochs(*c.rampup_epochs.get_or_insert(0)),
            None => Span::Epochs(*c.rampup_epochs.get_or_insert((epochs - c.warmup_epochs) / 2)),
        };
        if let (Span::Epochs(w), Span::Epochs(r)) = (warmup, rampup) {
            if w + r > epochs {
                return Err(err("rampup_epochs", format!("= {r}: warm-up ({w}) + ramp-up ({r}) is longer than training (`epochs` = {epochs})")));
            }
        }
        let steps_key = [("rampup_steps", c.rampup_steps), ("warmup_steps", c.warmup_steps)]
            .into_iter()
            .find(|(_, v)| v.is_some())
            .map(|(key, _)| (key, sources.origin(key)));
        // Checked whatever the schedule: a NaN would be written to config.toml and read back
        // unequal to itself.
        for (key, v) in [("smoothed_mid", c.smoothed_mid), ("smoothed_power", c.smoothed_power)] {
            if !v.is_finite() {
                return Err(err(key, format!("must be a finite number, got {v}")));
            }
        }
        if c.eps_schedule == RampShape::Smoothed {
            if !(0.0..=1.0).contains(&c.smoothed_mid) {
                return Err(err("smoothed_mid", format!("must lie in [0, 1], got {}", c.smoothed_mid)));
            }
            if !(c.smoothed_power >= 2.0 && c.smoothed_power.is_finite()) {
                return Err(err("smoothed_power", format!("must be >= 2, got {}", c.smoothed_power)));
            }
        }

        let (k0, k1) = match method {
            TrainMethod::Natural => (1.0, 1.0),
            TrainMethod::Pgd | TrainMethod::Colt => (0.0, 0.0),
            TrainMethod::Bound(_) => (1.0, 0.0),
        };
        let kappa_start = *c.kappa_start.get_or_insert(k0);
        let kappa_end = *c.kappa_end.get_or_insert(k1);
        for (key, v) in [("kappa_start", kappa_start), ("kappa_end", kappa_end)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(err(key, format!("must lie in [0, 1], got {v}")));
            }
        }
        let (beta_start, beta_end) = if method.mixes_ibp() {
            let b1 = if method == TrainMethod::Bound(Method::CrownIbp) { 0.0 } else { 1.0 };
            (*c.beta_start.get_or_insert(1.0), *c.beta_end.get_or_insert(b1))
        } else {
            for key in ["beta_start", "beta_end"] {
                if sources.file_keys.contains(key) || sources.flags.contains_key(key) {
                    tracing::warn!("{}: `{key}` only applies to crown-ibp, cap-ibp, one-step and random-slope; ignored for {method}", sources.origin(key));
                }
            }
            c.beta_start = None;
            c.beta_end = None;
            (1.0, 1.0)
        };
        for (key, v) in [("beta_start", beta_start), ("beta_end", beta_end)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(err(key, format!("must lie in [0, 1], got {v}")));
            }
        }

        if !(c.lr.is_finite() && c.lr > 0.0) {
            return Err(err("lr", format!("must be > 0, got {}", c.lr)));
        }
        if !(0.0..1.0).contains(&c.momentum) {
            return Err(err("momentum", format!("must lie in [0, 1), got {}", c.momentum)));
        }
        for (key, v) in [("weight_decay", c.weight_decay), ("l1", c.l1)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(key, format!("must be >= 0, got {v}")));
            }
        }
        if let Some(g) = c.grad_clip {
            if !(g.is_finite() && g > 0.0) {
                return Err(err("grad_clip", format!("must be > 0, got {g}")));
            }
        }
        let lr_decay = *c.lr_decay.get_or_insert(match c.lr_schedule {
            LrKind::Step => 0.5,
            _ => 0.1,
        });
        if !(lr_decay.is_finite() && lr_decay > 0.0) {
            return Err(err("lr_decay", format!("must be > 0, got {lr_decay}")));
        }
        match c.lr_schedule {
            LrKind::Milestones => {
                let (key, list) = match (c.lr_milestones.is_empty(), c.lr_milestone_steps.is_empty()) {
                    (true, true) => return Err(err("lr_schedule", "= \"milestones\" needs `lr_milestones` (epochs) or `lr_milestone_steps`".into())),
                    (false, false) => return Err(err("lr_milestone_steps", "and `lr_milestones` both set: give the milestones in one unit".into())),
                    (false, true) => ("lr_milestones", &c.lr_milestones),
                    (true, false) => ("lr_milestone_steps", &c.lr_milestone_steps),
                };
                if list.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(err(key, format!("must be increasing, got {list:?}")));
                }
            }
            LrKind::Step => {
                match c.lr_step {
                    None => return Err(err("lr_schedule", "= \"step\" needs `lr_step`, the number of epochs between decays".into())),
                    Some(0) => return Err(err("lr_step", "must be at least 1".into())),
                    Some(_) => {}
                }
            }
            LrKind::Constant => {}
        }
        for (key, v) in [("batch_size", c.batch_size), ("eval_batch_size", c.eval_batch_size)] {
            if v == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        for (key, v) in [("train_n", c.train_n), ("eval_n", c.eval_n)] {
            if v == Some(0) {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if c.landscape_every > 0 && c.landscape_batches == 0 {
            return Err(err("landscape_batches", "must be at least 1 when `landscape_every` is set".into()));
        }
        if method == TrainMethod::Pgd && c.pgd_steps == 0 {
            return Err(err("pgd_steps", "must be at least 1 for method pgd".into()));
        }
        if c.projections > 0 && !matches!(method, TrainMethod::Bound(Method::Deepz | Method::Hbox) | TrainMethod::Colt) {
            return Err(err("projections", format!("random projections estimate zonotope bounds: they need method deepz, hbox or colt, not {method}")));
        }
        let (regularizers, reg_rampup) = resolve_regularizers(&mut c, method, warmup, rampup, epochs, &err)?;
        if !(c.pgd_step_fraction.is_finite() && c.pgd_step_fraction > 0.0) {
            return Err(err("pgd_step_fraction", format!("must be > 0, got {}", c.pgd_step_fraction)));
        }
        let [_, h, w] = dataset.input_shape();
        if c.crop_padding >= h.min(w) {
            return Err(err("crop_padding", format!("= {} is not smaller than the images ({h}x{w})", c.crop_padding)));
        }
        if !(c.holdout_fraction > 0.0 && c.holdout_fraction < 1.0) {
            return Err(err("holdout_fraction", format!("must lie in (0, 1), got {}", c.holdout_fraction)));
        }

        let slopes = land::resolve_slopes(&c, method, &err)?;
        let stability = land::resolve_stability(&c, method, &err)?;
        let colt = match method {
            TrainMethod::Colt => {
                if c.landscape_every > 0 {
                    return Err(err("landscape_every", "is not defined for colt (its loss has no single relaxation to measure)".into()));
                }
                Some(colt::resolve(&mut c, &arch, epochs, &err)?)
            }
            _ => {
                colt::refuse_keys(&c, method, &err)?;
                None
            }
        };

        let default_cert = match method {
            TrainMethod::Natural | TrainMethod::Pgd => Method::Ibp,
            // COLT's certification starts from DeepZ (learned slopes refine it).
            TrainMethod::Colt => Method::Deepz,
            // CROWN-IBP with beta -> 0 ends as pure IBP training: its network is certified by IBP
            // (the paradox paper's Table 2 verifies it with Box).
            TrainMethod::Bound(_) if method.mixes_ibp() && beta_end == 0.0 => Method::Ibp,
            TrainMethod::Bound(m) => m,
        };
        let certify_method = match c.certify_method.as_deref() {
            Some(s) => s.parse::<Method>().map_err(|e| err("certify_method", format!("is invalid: {e}")))?,
            None => default_cert,
        };
        c.certify_method = Some(certify_method.name().to_string());

        Ok(Resolved {
            config: c,
            dataset,
            method,
            certify_method,
            arch,
            eps,
            eps_train,
            epochs,
            warmup,
            rampup,
            steps_key,
            kappa_start,
            kappa_end,
            beta_start,
            beta_end,
            lr_decay,
            regularizers,
            reg_rampup,
            slopes,
            stability,
            colt,
        })
    }
}

/// Checks the regularizer keys; returns whether d and r are computed and the span of their
/// weights' ramp-up (default: the eps ramp-up, in its unit).
fn resolve_regularizers(c: &mut TrainConfig, method: TrainMethod, warmup: Span, rampup: Span, epochs: usize, err: &dyn Fn(&str, String) -> Error) -> Result<(bool, Span)> {
    for (key, v) in [("reg_d_weight", c.reg_d_weight), ("reg_r_weight", c.reg_r_weight)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(err(key, format!("must be a finite number >= 0, got {v}")));
        }
    }
    let key = [("reg_d_weight", c.reg_d_weight > 0.0), ("reg_r_weight", c.reg_r_weight > 0.0), ("log_regularizers", c.log_regularizers)]
        .into_iter()
        .find(|(_, on)| *on)
        .map(|(k, _)| k);
    let Some(key) = key else { return Ok((false, Span::Epochs(0))) };
    match method {
        TrainMethod::Bound(m) if crate::bounds::regularizers::supports(m) => {}
        _ => return Err(err(key, format!("needs method deepz, crown or crown-ibp (the tightness regularizers are defined on their relaxed optimum), not {method}"))),
    }
    if c.spec == SpecKind::Eye {
        return Err(err(key, "needs `spec` = \"diffs\": the tightness regularizers are defined per margin row f_y - f_t".into()));
    }
    let span = match (c.reg_rampup_epochs, rampup) {
        (Some(e), _) => Span::Epochs(e),
        (None, Span::Epochs(e)) => {
            c.reg_rampup_epochs = Some(e);
            Span::Epochs(e)
        }
        (None, steps) => steps,
    };
    if let (Span::Epochs(w), Span::Epochs(r)) = (warmup, span) {
        if w.saturating_add(r) > epochs {
            return Err(err("reg_rampup_epochs", format!("= {r}: warm-up ({w}) + the regularizers' ramp-up ({r}) is longer than training (`epochs` = {epochs})")));
        }
    }
    Ok((true, span))
}
