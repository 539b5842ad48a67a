//! The epoch loop of `ironbound train`: batches, schedules, loss, update, per-epoch evaluation,
//! checkpoint, metrics, and the final model files. Rerunning on the same output directory
//! resumes from the checkpoint; with the same seed the result equals an uninterrupted run's.

use super::batches::{self, Augment, Stream, TrainData};
use super::checkpoint::{self, CheckpointMeta};
use super::colt;
use super::config::{Resolved, TrainConfig, TrainMethod};
use super::land::SlopeCounts;
use super::metrics::{self, EpochMetrics};
use super::landscape::Probe;
use super::objective::{Objective, RegWeights, CLIP};
use super::schedule::{LrSchedule, RampSchedule, RegSchedule, StepValues};
use super::tensorboard::{self, EventLog};
use super::optim::{gradients, grad_norm, sum_gradients, Optimizer, OptimizerKind, ParamGrads};
use crate::bounds::Method;
use crate::error::{Error, Result};
use crate::loss::{one_hot, predictions};
use crate::net::Network;
use crate::tensor::{default_device, from_vec, Device};
use crate::verify::{certify, CertMethod, CertifyConfig, PgdConfig};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the caller wants to hear about (the CLI draws progress bars from it).
pub trait Progress {
    fn message(&mut self, _msg: &str) {}
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _samples: usize) {}
    fn step(&mut self, _samples_done: usize, _loss: f64) {}
    fn eval_start(&mut self, _samples: usize) {}
    fn eval_step(&mut self, _samples_done: usize) {}
    fn epoch_end(&mut self, _metrics: &EpochMetrics) {}
    /// Asked after each step and each epoch: true stops the run there as if it had been
    /// interrupted (the checkpoint holds the last finished epoch; rerunning resumes). Python's
    /// `train` uses it for Ctrl-C and for an exception in its callback.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop after this many epochs in this invocation, as if interrupted (for tests).
    pub max_epochs_this_run: Option<usize>,
}

pub struct Outcome {
    pub metrics: Vec<EpochMetrics>,
    /// All epochs done and the final files written.
    pub completed: bool,
    /// The epoch the run resumed from (None: started afresh).
    pub resumed_from: Option<usize>,
    pub net: Network,
}

/// Output file names inside the run directory.
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join(checkpoint::FILE_NAME)
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn onnx(&self) -> PathBuf {
        self.dir.join("model.onnx")
    }
    pub fn tensorboard(&self) -> PathBuf {
        self.dir.join(tensorboard::DIR_NAME)
    }
    /// What is left when the run stops with an error after `epochs` finished epochs.
    fn kept(&self, epochs: usize) -> String {
        if epochs > 0 {
            format!("the last good checkpoint (epoch {epochs}) is kept in {}", self.checkpoint().display())
        } else {
            "no earlier epoch was saved, so there is no checkpoint".to_string()
        }
    }
}

/// Keys that may differ between a checkpoint and the rerun that resumes it.
const RESUMABLE_CHANGES: [&str; 8] = ["epochs", "data_dir", "eval_batch_size", "note", "threads", "tensorboard", "landscape_every", "landscape_batches"];

fn check_same_run(files: &RunFiles, saved: &serde_json::Value, now: &TrainConfig) -> Result<()> {
    let now = serde_json::to_value(now).map_err(Error::internal)?;
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else {
        return Err(Error::internal("configuration is not a JSON object"));
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        if RESUMABLE_CHANGES.contains(&key.as_str()) {
            continue;
        }
        let (x, y) = (a.get(key).unwrap_or(&serde_json::Value::Null), b.get(key).unwrap_or(&serde_json::Value::Null));
        if x != y {
            return Err(Error::input(format!(
                "{}: holds a run with `{key}` = {x}, this command asks for {y}; use another --out, or delete {} to start afresh",
                files.dir.display(),
                files.checkpoint().display()
            )));
        }
    }
    Ok(())
}

fn new_optimizer(c: &TrainConfig) -> Optimizer {
    let kind = match c.optimizer {
        super::config::OptimizerName::Adam => OptimizerKind::adam(),
        super::config::OptimizerName::Sgd => OptimizerKind::Sgd { momentum: c.momentum },
    };
    Optimizer::new(kind, c.lr, c.weight_decay)
}

fn schedules(r: &Resolved, steps_per_epoch: usize) -> (RampSchedule, LrSchedule) {
    let c = &r.config;
    let ramp = RampSchedule {
        warmup_steps: r.warmup.steps(steps_per_epoch),
        rampup_steps: r.rampup.steps(steps_per_epoch),
        shape: c.eps_schedule,
        eps_start: c.eps_start,
        eps_end: r.eps_train,
        kappa_start: r.kappa_start,
        kappa_end: r.kappa_end,
        beta_start: r.beta_start,
        beta_end: r.beta_end,
        smoothed_mid: c.smoothed_mid,
        smoothed_power: c.smoothed_power,
    };
    let lr = LrSchedule {
        kind: c.lr_schedule,
        base: c.lr,
        decay: r.lr_decay,
        milestones: if c.lr_milestone_steps.is_empty() { c.lr_milestones.clone() } else { c.lr_milestone_steps.clone() },
        milestones_in_steps: !c.lr_milestone_steps.is_empty(),
        step: c.lr_step.unwrap_or(0),
        start: c.lr_step_start,
    };
    (ramp, lr)
}

/// Writes model.safetensors, model.onnx and config.toml. Interrupted, a rerun writes them
/// again from the checkpoint (which holds the last epoch).
fn write_final(files: &RunFiles, net: &Network, config_toml: &str) -> Result<()> {
    crate::io::save_model(net, &files.model())?;
    crate::io::save_model(net, &files.onnx())?;
    crate::io::atomic::write_bytes(&files.config(), config_toml.as_bytes())
}

/// Trains (or resumes) the run described by `r` on `data`, writing into `out`.
pub fn run(r: &Resolved, data: &TrainData, out: &Path, opts: &RunOptions, progress: &mut dyn Progress) -> Result<Outcome> {
    let device: Device = default_device();
    let c = &r.config;
    let files = RunFiles { dir: out.to_path_buf() };
    if data.train.is_empty() {
        return Err(Error::input(format!("{}: no training samples", r.dataset)));
    }
    if data.train.shape != r.arch.input_shape {
        return Err(Error::input(format!("images are {:?}, the architecture expects {:?}", data.train.shape, r.arch.input_shape)));
    }
    let n = data.train.len();
    let bs = c.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(bs);
    r.check_steps(steps_per_epoch)?;
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, format!("cannot create the output directory: {e}")))?;
    let config_toml = c.to_toml()?;
    let config_json = serde_json::to_value(c).map_err(Error::internal)?;

    for file in [files.checkpoint(), files.metrics(), files.config(), files.model(), files.onnx()] {
        crate::io::atomic::remove_stale_temps(&file);
    }

    let mut opt = new_optimizer(c);
    // `try_exists`: a checkpoint that cannot even be looked at is an error, not a fresh start.
    let have_checkpoint = files.checkpoint().try_exists().map_err(|e| Error::file(files.checkpoint(), format!("cannot read: {e}")))?;
    let (mut net, mut history, mut global_step, start_epoch) = if have_checkpoint {
        let ck = checkpoint::load(&files.checkpoint(), &device)?;
        check_same_run(&files, &ck.meta.config, c)?;
        if ck.meta.arch != r.arch {
            return Err(Error::input(format!("{}: the checkpoint's architecture differs from `arch` = {:?}", files.checkpoint().display(), c.arch)));
        }
        if ck.meta.epoch > r.epochs {
            return Err(Error::input(format!(
                "{}: the checkpoint is at epoch {}, past `epochs` = {}",
                files.checkpoint().display(),
                ck.meta.epoch,
                r.epochs
            )));
        }
        opt.restore_state(&ck.net, ck.m, ck.v, ck.meta.optimizer_steps)?;
        progress.message(&format!("resuming {} from epoch {} of {}", out.display(), ck.meta.epoch, r.epochs));
        (ck.net, ck.meta.metrics, ck.meta.global_step, ck.meta.epoch)
    } else {
        (r.arch.init(c.seed, &device)?, Vec::new(), 0u64, 0usize)
    };
    // The files always describe the checkpoint: drop metrics of an epoch that never finished.
    metrics::write_jsonl(&files.metrics(), &history)?;
    crate::io::atomic::write_bytes(&files.config(), config_toml.as_bytes())?;
    let events = if c.tensorboard { Some(EventLog::open(&files.tensorboard(), &history)?) } else { None };
    let resumed_from = (start_epoch > 0).then_some(start_epoch);

    let threads = match c.threads {
        // One shard on a GPU: the device parallelises each step itself.
        0 if !crate::tensor::on_cpu() => 1,
        0 => std::thread::available_parallelism().map_or(1, |p| p.get()).min(8),
        t => t,
    };
    let (ramp, lr_schedule) = schedules(r, steps_per_epoch);
    let reg_schedule = RegSchedule {
        start_step: r.warmup.steps(steps_per_epoch),
        rampup_steps: r.reg_rampup.steps(steps_per_epoch),
        d_weight: c.reg_d_weight,
        r_weight: c.reg_r_weight,
    };
    let objective = Objective {
        method: r.method,
        spec: c.spec,
        l1: c.l1,
        pgd_steps: c.pgd_steps,
        pgd_step_fraction: c.pgd_step_fraction,
        projections: c.projections,
        slopes: r.slopes,
        stability: r.stability,
    };
    let augment = c.augment.then_some(Augment { padding: c.crop_padding, flip: c.flip });
    let shape = data.train.shape;
    let k = r.dataset.num_classes();
    let eval_labels: Vec<usize> = data.eval.labels.iter().map(|&l| usize::from(l)).collect();
    let mut methods = vec![r.certify_method];
    if r.certify_method != Method::Ibp {
        methods.push(Method::Ibp);
    }
    let cert_cfg = CertifyConfig {
        eps: r.eps,
        methods: methods.into_iter().map(CertMethod::Bound).collect(),
        batch_size: c.eval_batch_size,
        pgd: (c.eval_pgd_steps > 0).then(|| PgdConfig { seed: c.seed, ..PgdConfig::new(c.eval_pgd_steps) }),
        clip: Some(CLIP),
        timeout: crate::verify::certify::DEFAULT_TIMEOUT,
        seed: c.seed,
        // Per-epoch monitoring in plain float32 (a final `ironbound certify` is float-sound).
        sound: false,
    };

    let probe = Probe::new(c.landscape_every, c.landscape_batches, bs, &data.train, k, c.seed, threads, &device);

    let last = match opts.max_epochs_this_run {
        Some(m) => (start_epoch + m).min(r.epochs),
        None => r.epochs,
    };
    'epochs: for epoch in start_epoch..last {
        let t0 = Instant::now();
        progress.epoch_start(epoch + 1, r.epochs, n);
        let order = batches::epoch_order(n, c.seed, epoch);
        let mut aug_rng = batches::rng(c.seed, Stream::Augment, epoch as u64);
        let (mut loss_sum, mut nat_sum, mut rob_sum, mut rob_batches, mut correct) = (0.0f64, 0.0f64, 0.0f64, 0usize, 0usize);
        let mut values = ramp.at(global_step);
        let (mut reg_d_sum, mut reg_r_sum, mut reg_batches) = (0.0f64, 0.0f64, 0usize);
        let mut reg = RegWeights::OFF;
        let mut side = SideSums::default();
        let mut colt_step = None;
        for (b, idx) in order.chunks(bs).enumerate() {
            values = ramp.at(global_step);
            let (lambda, gamma) = reg_schedule.at(global_step);
            reg = RegWeights { d: lambda, r: gamma, measure: r.regularizers };
            opt.lr = lr_schedule.at(epoch, global_step);
            colt_step = r.colt.as_ref().and_then(|plan| plan.at(epoch, b, steps_per_epoch));
            if let (Some(plan), Some(at)) = (&r.colt, colt_step) {
                let phase = &plan.phases[at.index];
                if epoch == phase.start_epoch && b == 0 {
                    // Each phase trains other layers: a fresh optimiser (the published code's).
                    opt = new_optimizer(c);
                }
                let start_step = (phase.start_epoch * steps_per_epoch) as u64;
                opt.lr = lr_schedule.at(epoch - phase.start_epoch, global_step - start_step) * phase.lr_factor;
                values.eps *= phase.eps_factor;
            }
            let (pixels, y) = batches::gather(&data.train, idx, augment.as_ref().map(|a| (a, &mut aug_rng)));
            let x = from_vec(pixels, [idx.len(), shape[0], shape[1], shape[2]], &device);
            let shard = |j: usize, rows: Range<usize>| -> Result<ShardStep> {
                let weight = rows.len() as f64 / idx.len() as f64;
                let xs = x.clone().slice([rows.clone(), 0..shape[0], 0..shape[1], 0..shape[2]]);
                let ys = &y[rows];
                let step_seed = batches::step_seed(c.seed, global_step).wrapping_add(j as u64);
                let targets = one_hot(ys, k, &device);
                let (tracked, parts) = match (&r.colt, colt_step) {
                    (Some(plan), Some(at)) if !values.warmup => {
                        let frozen = colt::latent_value(&net, plan.phases[at.index].latent)?;
                        let tracked = opt.track_from(&net, frozen);
                        let parts = colt::loss(plan, &tracked, &xs, &targets, values.eps, values.kappa, c.l1, at, step_seed)?;
                        (tracked, parts)
                    }
                    _ => {
                        let tracked = opt.track(&net);
                        let parts = objective.loss_with(&tracked, &net, &xs, ys, &targets, values.eps, values.kappa, values.beta, values.warmup, step_seed, reg)?;
                        (tracked, parts)
                    }
                };
                let scalar = |t: &crate::tensor::Tensor<1>| weight * f64::from(t.clone().into_scalar::<f32>());
                let preds = predictions(parts.logits.clone().detach().without_autodiff());
                let total = if weight == 1.0 { parts.total.clone() } else { parts.total.clone() * weight };
                Ok(ShardStep {
                    loss: scalar(&parts.total),
                    natural: scalar(&parts.natural),
                    robust: parts.robust.as_ref().map(scalar),
                    reg_d: parts.reg_d.as_ref().map(scalar),
                    reg_r: parts.reg_r.as_ref().map(scalar),
                    slopes: parts.extras.slopes,
                    stability: parts.extras.stability.as_ref().map(scalar),
                    correct: preds.iter().zip(ys).filter(|(p, t)| p == t).count(),
                    grads: gradients(&tracked, &total.backward()),
                })
            };
            let step = ShardStep::sum(batches::in_parallel(batches::shards(idx.len(), threads), &shard)?);
            let loss = step.loss;
            if !loss.is_finite() {
                return Err(Error::internal(format!(
                    "training diverged: the loss is {loss} at epoch {}, step {} of {steps_per_epoch} (eps {:.4}, lr {}); {}; \
                     try a lower `lr`, `grad_clip`, or a longer `rampup_epochs`",
                    epoch + 1,
                    b + 1,
                    values.eps,
                    opt.lr,
                    files.kept(epoch)
                )));
            }
            loss_sum += loss;
            nat_sum += step.natural;
            if let Some(rl) = step.robust {
                rob_sum += rl;
                rob_batches += 1;
            }
            if let (Some(d), Some(rr)) = (step.reg_d, step.reg_r) {
                reg_d_sum += d;
                reg_r_sum += rr;
                reg_batches += 1;
            }
            side.add(step.slopes, step.stability);
            correct += step.correct;
            let scale = match c.grad_clip {
                Some(max) => (max / (grad_norm(&step.grads) + 1e-6)).min(1.0),
                None => 1.0,
            };
            net = opt.apply(&net, step.grads, scale)?;
            global_step += 1;
            crate::fault::point("step");
            progress.step(((b + 1) * bs).min(n), loss_sum / (b + 1) as f64);
            if progress.stop_requested() {
                break 'epochs;
            }
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let mut extra = match &probe {
            Some(p) if p.due(epoch + 1) => {
                let v = StepValues { eps: if values.warmup { 0.0 } else { values.eps }, ..values };
                p.measure(&net, &objective, &v, opt.lr, epoch)?.keys()
            }
            _ => Default::default(),
        };
        extra.extend(side.keys());
        if let (Some(plan), Some(at)) = (&r.colt, colt_step) {
            extra.insert("colt_phase".into(), (at.index + 1).into());
            extra.insert("colt_latent_layer".into(), plan.phases[at.index].latent.into());
            extra.insert("colt_mix".into(), at.mix.into());
        }

        progress.eval_start(eval_labels.len());
        let (report, _) = certify(&net, &data.eval.images, &eval_labels, &cert_cfg, &device, &mut |done| progress.eval_step(done))?;
        let cert = |m: Method| report.certified_accuracy.get(m.name()).copied().unwrap_or(0.0);
        let record = EpochMetrics {
            epoch: epoch + 1,
            loss: loss_sum / steps_per_epoch as f64,
            natural_loss: nat_sum / steps_per_epoch as f64,
            robust_loss: (rob_batches > 0).then(|| rob_sum / rob_batches as f64),
            train_accuracy: correct as f64 / n as f64,
            clean_accuracy: report.clean_accuracy,
            certified_accuracy: cert(r.certify_method),
            certified_accuracy_ibp: cert(Method::Ibp),
            certify_method: r.certify_method.name().to_string(),
            pgd_accuracy: report.pgd_accuracy,
            eps: if values.warmup { 0.0 } else { values.eps },
            eps_test: r.eps,
            kappa: if values.warmup || r.method == TrainMethod::Natural { 1.0 } else { values.kappa },
            beta: r.method.mixes_ibp().then_some(values.beta),
            lr: opt.lr,
            steps: opt.steps,
            eval_n: report.n,
            eval_split: format!("{:?}", data.eval_split).to_lowercase(),
            seconds: t0.elapsed().as_secs_f64(),
            train_seconds,
            reg_d: (reg_batches > 0).then(|| reg_d_sum / reg_batches as f64),
            reg_r: (reg_batches > 0).then(|| reg_r_sum / reg_batches as f64),
            reg_d_weight: r.regularizers.then_some(reg.d),
            reg_r_weight: r.regularizers.then_some(reg.r),
            extra,
        };
        history.push(record);
        let meta = CheckpointMeta {
            version: checkpoint::VERSION,
            epoch: epoch + 1,
            global_step,
            optimizer_steps: opt.steps,
            seed: c.seed,
            config: config_json.clone(),
            arch: r.arch.clone(),
            metrics: history.clone(),
        };
        // Nothing of this epoch (metrics, events, model files) is written unless it is saved.
        checkpoint::save(&files.checkpoint(), &meta, &net, &opt)
            .map_err(|e| Error::internal(format!("{e}; training stopped at epoch {}: {}, rerun the same command to resume", epoch + 1, files.kept(epoch))))?;
        metrics::write_jsonl(&files.metrics(), &history)?;
        if let Some(m) = history.last() {
            // After the checkpoint, so the event file never holds an epoch it lacks.
            if let Some(log) = &events {
                log.append(m)?;
            }
            progress.epoch_end(m);
        }
        if progress.stop_requested() {
            break;
        }
    }

    let completed = history.len() >= r.epochs;
    if completed {
        write_final(&files, &net, &config_toml)?;
    }
    Ok(Outcome { metrics: history, completed, resumed_from, net })
}

/// One shard's part of a batch step: its loss values weighted by its share of the batch, and
/// the gradients of its weighted loss (so that the shards' sums are the whole batch's).
struct ShardStep {
    loss: f64,
    natural: f64,
    robust: Option<f64>,
    reg_d: Option<f64>,
    reg_r: Option<f64>,
    slopes: Option<SlopeCounts>,
    stability: Option<f64>,
    correct: usize,
    grads: ParamGrads,
}

/// Per-epoch sums of what some methods measure besides their loss.
#[derive(Default)]
struct SideSums {
    slopes: Option<SlopeCounts>,
    stability: f64,
    stability_steps: usize,
}

impl SideSums {
    fn add(&mut self, slopes: Option<SlopeCounts>, stability: Option<f64>) {
        if let Some(s) = slopes {
            self.slopes = Some(self.slopes.unwrap_or_default().add(s));
        }
        if let Some(v) = stability {
            self.stability += v;
            self.stability_steps += 1;
        }
    }

    /// `slopes_*` (LAND's slope choices and unstable ratio) and `relu_stability_loss` (the mean
    /// of the term before its weight over the steps that computed it).
    fn keys(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let mut m = self.slopes.map(|s| s.keys()).unwrap_or_default();
        if self.stability_steps > 0 {
            m.insert("relu_stability_loss".into(), (self.stability / self.stability_steps as f64).into());
        }
        m
    }
}

impl ShardStep {
    fn sum(parts: Vec<ShardStep>) -> ShardStep {
        let robust = parts.iter().map(|p| p.robust).sum::<Option<f64>>();
        ShardStep {
            loss: parts.iter().map(|p| p.loss).sum(),
            natural: parts.iter().map(|p| p.natural).sum(),
            robust,
            reg_d: parts.iter().map(|p| p.reg_d).sum::<Option<f64>>(),
            reg_r: parts.iter().map(|p| p.reg_r).sum::<Option<f64>>(),
            slopes: parts.iter().filter_map(|p| p.slopes).reduce(SlopeCounts::add),
            stability: parts.iter().map(|p| p.stability).sum::<Option<f64>>(),
            correct: parts.iter().map(|p| p.correct).sum(),
            grads: sum_gradients(parts.into_iter().map(|p| p.grads).collect()),
        }
    }
}
