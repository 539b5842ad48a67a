//! `ironbound train`: certified (or natural, or adversarial) training of a named architecture.

use crate::common;
use clap::Parser;
use indicatif::ProgressBar;
use ironbound::error::{Error, Result};
use ironbound::net::arch;
use ironbound::train::config::ConfigValue;
use ironbound::train::{self, batches, EpochMetrics, Progress, RunOptions, Sources, TrainConfig};
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// mnist, fashion-mnist, cifar10 or svhn.
    #[arg(long)]
    dataset: Option<String>,
    /// Architecture name; `--arch list` prints them.
    #[arg(long)]
    arch: Option<String>,
    /// natural, pgd, ibp, hbox, deepz, crown, crown-0, crown-ibp or cap-ibp.
    #[arg(long)]
    method: Option<String>,
    /// Test radius (certified accuracy is measured at it; `eps_train` defaults to it).
    #[arg(long, allow_negative_numbers = true)]
    eps: Option<f64>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// TOML file with any of the keys listed in docs/train.md; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory: model.safetensors, model.onnx, config.toml, metrics.jsonl, checkpoint,
    /// tb/ (TensorBoard event files).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory searched first for the dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Set any config key, e.g. `--set lr=1e-3 --set lr_milestones=[130,190]` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Do not write TensorBoard event files into DIR/tb/ (the `tensorboard` key).
    #[arg(long)]
    no_tensorboard: bool,
    /// Check the configuration, print it resolved (TOML) and exit without training.
    #[arg(long)]
    dry_run: bool,
    /// Stop after this many epochs of this invocation, as if interrupted (rerun to resume).
    #[arg(long, hide = true)]
    stop_after_epochs: Option<usize>,
}

/// Progress bars on stderr (hidden when it is not a terminal) and one line per epoch.
struct Bars {
    bar: Option<ProgressBar>,
    label: String,
}

impl Progress for Bars {
    fn message(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
    fn epoch_start(&mut self, epoch: usize, epochs: usize, samples: usize) {
        self.label = format!("epoch {epoch}/{epochs}");
        self.bar = Some(common::progress(samples, &self.label));
    }
    fn step(&mut self, done: usize, loss: f64) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
            b.set_message(format!("{} loss {loss:.4}", self.label));
        }
    }
    fn eval_start(&mut self, samples: usize) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        self.bar = Some(common::progress(samples, "evaluate"));
    }
    fn eval_step(&mut self, done: usize) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
        }
    }
    fn epoch_end(&mut self, m: &EpochMetrics) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!(
            "epoch {:>3}  loss {:.4}  clean {:.4}  certified[{}] {:.4}{}{}  eps {:.4}  kappa {:.3}{}  lr {:.2e}  {:.1} s",
            m.epoch,
            m.loss,
            m.clean_accuracy,
            m.certify_method,
            m.certified_accuracy,
            if m.certify_method == "ibp" { String::new() } else { format!("  certified[ibp] {:.4}", m.certified_accuracy_ibp) },
            m.pgd_accuracy.map(|p| format!("  pgd {p:.4}")).unwrap_or_default(),
            m.eps,
            m.kappa,
            m.beta.map(|b| format!("  beta {b:.3}")).unwrap_or_default(),
            m.lr,
            m.seconds
        );
    }
}

/// The configuration from the file and the flags, and where each key came from.
fn configure(a: &Args) -> Result<(TrainConfig, Sources)> {
    let mut sources = Sources::default();
    let mut config = match &a.config {
        Some(path) => {
            let (c, keys) = TrainConfig::load(path)?;
            sources.file = Some(path.clone());
            sources.file_keys = keys;
            c
        }
        None => TrainConfig::default(),
    };
    let flags: [(&str, Option<ConfigValue>); 7] = [
        ("dataset", a.dataset.clone().map(ConfigValue::String)),
        ("arch", a.arch.clone().map(ConfigValue::String)),
        ("method", a.method.clone().map(ConfigValue::String)),
        ("eps", a.eps.map(ConfigValue::Float)),
        ("epochs", a.epochs.map(|e| ConfigValue::Integer(e as i64))),
        ("seed", a.seed.map(|s| ConfigValue::Integer(s as i64))),
        ("data_dir", a.data_dir.as_ref().map(|d| ConfigValue::String(d.display().to_string()))),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            let flag = format!("--{}", key.replace('_', "-"));
            config.set(key, v, &flag)?;
            sources.flags.insert(key.to_string(), flag);
        }
    }
    if a.no_tensorboard {
        config.set("tensorboard", ConfigValue::Boolean(false), "--no-tensorboard")?;
        sources.flags.insert("tensorboard".into(), "--no-tensorboard".into());
    }
    for assignment in &a.set {
        let key = config.set_str(assignment)?;
        sources.flags.insert(key, format!("--set {assignment}"));
    }
    Ok((config, sources))
}

pub fn run(a: Args) -> Result<()> {
    if a.arch.as_deref() == Some("list") {
        for (name, desc) in arch::list() {
            println!("{name:<16} {desc}");
        }
        return Ok(());
    }
    let (config, sources) = configure(&a)?;
    let resolved = config.resolve(&sources)?;
    if a.dry_run {
        print!("{}", resolved.config.to_toml()?);
        return Ok(());
    }
    let out = a.out.clone().ok_or_else(|| Error::input("missing --out DIR (the run directory)"))?;
    if out.is_file() {
        return Err(Error::input(format!("{}: is a file, expected a directory", out.display())));
    }
    let data = batches::load(&resolved)?;
    tracing::info!("training on {} samples, evaluating on {} ({:?})", data.train.len(), data.eval.len(), data.eval_split);
    let opts = RunOptions { max_epochs_this_run: a.stop_after_epochs };
    let outcome = train::run(&resolved, &data, &out, &opts, &mut Bars { bar: None, label: String::new() })?;
    if outcome.completed {
        if let Some(m) = outcome.metrics.last() {
            eprintln!(
                "done: {} epochs; clean {:.4}, certified[{}] {:.4} at eps {}; model in {}",
                m.epoch,
                m.clean_accuracy,
                m.certify_method,
                m.certified_accuracy,
                m.eps_test,
                out.join("model.safetensors").display()
            );
        }
    } else {
        eprintln!("stopped after epoch {}; rerun the same command to resume", outcome.metrics.len());
    }
    Ok(())
}
