//! `ironbound bench`: the eight workloads of shared/bench/WORKLOADS.md, timed the same way as
//! the PyTorch reference (setup untimed, warm-up iterations, wall clock around each iteration,
//! training weights restored before every iteration with the Adam state kept).

pub mod models;

use crate::bounds::{input_region, lower_bound, Method, Spec};
use crate::error::{Error, Result};
use crate::loss::{cross_entropy, one_hot, predictions, robust_cross_entropy};
use crate::net::init::SplitMix64;
use crate::net::{Network, Op};
use crate::tensor::{Device, Tensor};
use crate::train::batches::{in_parallel, shards};
use crate::train::colt;
use crate::train::optim::{gradients, sum_gradients, ParamGrads};
use crate::train::{Optimizer, OptimizerKind};
use crate::verify::pgd::{self, PgdConfig};
use models::{inputs, BenchModel, CONV, DM_LARGE, DM_SMALL, FC5};
use serde::Serialize;
use std::ops::Range;
use std::time::Instant;

pub const WORKLOADS: [&str; 8] = [
    "train-natural-dmsmall",
    "train-ibp-dmsmall",
    "train-crownibp-dmsmall",
    "train-crownibp-dmlarge-cifar",
    "bounds-crown-fc5",
    "bounds-crown-conv",
    "bounds-deepz-fc5",
    "attack-pgd40-dmsmall",
];

/// One step of the other papers' training methods (their PyTorch timings come from
/// `scripts/bench_methods_torch.py`): CROWN-IBP (beta = 1) with one-step optimised slopes
/// (loss-landscape paper) on DM-small; a COLT step in the latent region after the first conv
/// ReLU (the DeepZ region, 7 sign-PGD steps on its noise symbols, CE at the latent point,
/// backward through the layers after it, Adam) on DM-small; and full CROWN and DeepZ training
/// steps (every ReLU input bounded by back-substitution, paradox Table 2's CROWN, DeepZ and,
/// at the cost of DeepZ's, hBox rows) on paradox CONV, batch 100. Not run by default; name
/// them with `--workload`.
pub const METHOD_WORKLOADS: [&str; 4] = ["train-onestep-dmsmall", "train-colt-dmsmall", "train-crown-conv", "train-deepz-conv"];

/// The bounds workloads with float-sound arithmetic (`bounds/sound.rs`): what soundness costs.
/// Not run by default (the PyTorch peers have no such mode); name them with `--workload`.
pub const SOUND_WORKLOADS: [&str; 3] = ["bounds-crown-fc5-sound", "bounds-crown-conv-sound", "bounds-deepz-fc5-sound"];

/// The machine's float32 GEMM rate through the same kernels (burn's matmul on the `gemm`
/// crate, the convolutions' GEMM too), on the same threads: the peak that natural and IBP
/// training's useful FLOP/s are compared with. Not run by default.
pub const PEAK_WORKLOADS: [&str; 1] = ["gemm-2048"];

/// One line of `ironbound bench --json`: the contract's fields, then, for the workloads whose
/// useful work is counted (natural and IBP training, the GEMM peak), GFLOP per iteration and
/// GFLOP/s at the median.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub workload: String,
    pub ms_median: f64,
    pub ms_min: f64,
    pub iters: usize,
    pub threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflop: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
}

/// What one iteration does; `prepare` runs untimed before each iteration.
trait Workload {
    fn prepare(&mut self) {}
    /// The useful floating-point work of one iteration in GFLOP, where it is counted.
    fn gflop(&self) -> Option<f64> {
        None
    }
    fn iterate(&mut self) -> Result<()>;
}

/// Training step: clean forward for accuracy, a loss, backward, optimiser step. The batch is
/// split into `threads` shards computed on parallel threads, as `ironbound train` does.
struct TrainStep {
    initial: Network,
    net: Network,
    opt: Optimizer,
    x: Tensor<4>,
    y: Vec<usize>,
    eps: f64,
    loss: StepLoss,
    threads: usize,
}

/// The loss of a training step.
enum StepLoss {
    Natural,
    Bound(Method),
    /// COLT in the latent layer of the plan's second phase (the first's loss fully mixed out).
    Colt(Box<colt::Plan>),
}

impl Workload for TrainStep {
    fn prepare(&mut self) {
        self.net = self.initial.clone();
    }
    /// The convolutions' and matrix products' FLOPs: a forward pass is F multiply-adds per
    /// row, its backward 2F less the first layer's input gradient (the data needs none).
    /// Natural training: one tracked pass. IBP: an untracked clean pass (the accuracy) and two
    /// tracked ones (centre and radius).
    fn gflop(&self) -> Option<f64> {
        let macs = layer_macs(&self.net);
        let (forward, first) = (macs.iter().sum::<usize>() as f64, *macs.first()? as f64);
        let trained = 3.0 * forward - first;
        let per_row = match &self.loss {
            StepLoss::Natural => trained,
            StepLoss::Bound(Method::Ibp) => forward + 2.0 * trained,
            _ => return None,
        };
        Some(2.0 * per_row * self.x.dims()[0] as f64 / 1e9)
    }
    fn iterate(&mut self) -> Result<()> {
        let device = self.x.device();
        let k = self.net.num_outputs();
        let [n, c, h, w] = self.x.dims();
        let shard = |_: usize, rows: Range<usize>| -> Result<(f32, ParamGrads)> {
            let weight = rows.len() as f64 / n as f64;
            let x = self.x.clone().slice([rows.clone(), 0..c, 0..h, 0..w]);
            let y = &self.y[rows];
            let (tracked, loss) = match &self.loss {
                StepLoss::Natural => {
                    let tracked = self.opt.track(&self.net);
                    let loss = cross_entropy(tracked.forward(x), one_hot(y, k, &device));
                    (tracked, loss)
                }
                StepLoss::Bound(m) => {
                    let tracked = self.opt.track(&self.net);
                    let _correct = predictions(self.net.forward(x.clone()));
                    let region = input_region(&x, self.eps, Some((0.0, 1.0)));
                    let spec = Spec::margins(y, k, &device)?;
                    let loss = robust_cross_entropy(lower_bound(&tracked, &region, &spec, &m.relaxation())?);
                    (tracked, loss)
                }
                StepLoss::Colt(plan) => {
                    let at = colt::PhaseStep { index: 1, mix: 1.0 };
                    let tracked = self.opt.track_from(&self.net, colt::latent_value(&self.net, plan.phases[1].latent)?);
                    let parts = colt::loss(plan, &tracked, &x, &one_hot(y, k, &device), self.eps, 0.0, 0.0, at, 0)?;
                    (tracked, parts.total)
                }
            };
            let grads = gradients(&tracked, &(loss.clone() * weight).backward());
            Ok((loss.into_scalar(), grads))
        };
        let (values, grads): (Vec<f32>, Vec<ParamGrads>) = in_parallel(shards(n, self.threads), &shard)?.into_iter().unzip();
        self.net = self.opt.apply(&self.net, sum_gradients(grads), 1.0)?;
        if !values.iter().all(|v| v.is_finite()) {
            return Err(Error::internal("bench loss is not finite"));
        }
        Ok(())
    }
}

/// Multiply-adds of one row's forward pass through each convolution and linear layer.
fn layer_macs(net: &Network) -> Vec<usize> {
    let per_output = |node: &crate::net::Node| match &node.op {
        Op::Linear(l) => Some(l.weight.dims()[1]),
        Op::Conv2d(c) => Some(c.in_channels() * c.kernel()[0] * c.kernel()[1]),
        _ => None,
    };
    let outputs = |v: usize| net.shape(v).iter().product::<usize>();
    net.nodes().iter().enumerate().filter_map(|(i, node)| per_output(node).map(|k| k * outputs(i + 1))).collect()
}

/// A 2048^3 float32 GEMM.
struct GemmPeak {
    a: Tensor<2>,
    b: Tensor<2>,
}

impl Workload for GemmPeak {
    fn iterate(&mut self) -> Result<()> {
        let _ = crate::tensor::to_vec(self.a.clone().matmul(self.b.clone()).slice([0..1, 0..1]));
        Ok(())
    }
    fn gflop(&self) -> Option<f64> {
        Some(2.0 * 2048f64.powi(3) / 1e9)
    }
}

struct BoundStep {
    net: Network,
    x: Tensor<4>,
    y: Vec<usize>,
    eps: f64,
    method: Method,
    sound: bool,
}

impl Workload for BoundStep {
    fn iterate(&mut self) -> Result<()> {
        let region = match self.sound {
            true => crate::bounds::sound::input_region(&self.x, self.eps, Some((0.0, 1.0))),
            false => input_region(&self.x, self.eps, Some((0.0, 1.0))),
        };
        let spec = Spec::margins(&self.y, self.net.num_outputs(), &self.x.device())?;
        let lb = lower_bound(&self.net, &region, &spec, &self.method.relaxation().with_sound(self.sound))?;
        let _ = crate::tensor::to_vec(lb);
        Ok(())
    }
}

struct AttackStep {
    net: Network,
    x: Tensor<4>,
    y: Vec<usize>,
    eps: f64,
    seed: u64,
}

impl Workload for AttackStep {
    fn iterate(&mut self) -> Result<()> {
        let region = input_region(&self.x, self.eps, Some((0.0, 1.0)));
        self.seed += 1;
        let cfg = PgdConfig { seed: self.seed, ..PgdConfig::new(40) };
        let _robust = pgd::robust(&self.net, &self.x, &self.y, &region, self.eps, &cfg);
        Ok(())
    }
}

fn train(model: &BenchModel, n: usize, stream: u64, eps: f64, loss: StepLoss, threads: usize, device: &Device) -> Result<Box<dyn Workload>> {
    let net = model.network(device)?;
    let (x, y) = inputs(n, model.input, stream, device);
    let opt = Optimizer::new(OptimizerKind::adam(), 5e-4, 0.0);
    Ok(Box::new(TrainStep { initial: net.clone(), net, opt, x, y, eps, loss, threads }))
}

/// COLT's plan for the bench step: phase 2 trains after the first ReLU, exact DeepZ regions,
/// 7 steps of 0.25, no ReLU-stability term.
fn colt_plan() -> colt::Plan {
    let phase = |latent| colt::Phase { latent, start_epoch: 0, epochs: 1, eps_factor: 1.0, lr_factor: 1.0, mix_epochs: 0, stability_weight: 0.0 };
    colt::Plan { phases: vec![phase(0), phase(1)], pgd_steps: 7, pgd_step: 0.25, projections: 0, stability: None }
}

fn bounds(model: &BenchModel, n: usize, stream: u64, method: Method, sound: bool, device: &Device) -> Result<Box<dyn Workload>> {
    let (x, y) = inputs(n, model.input, stream, device);
    Ok(Box::new(BoundStep { net: model.network(device)?, x, y, eps: 0.1, method, sound }))
}

fn build(name: &str, threads: usize, device: &Device) -> Result<Box<dyn Workload>> {
    match name {
        "train-natural-dmsmall" => train(&DM_SMALL, 256, 1, 0.0, StepLoss::Natural, threads, device),
        "train-ibp-dmsmall" => train(&DM_SMALL, 256, 1, 0.1, StepLoss::Bound(Method::Ibp), threads, device),
        "train-crownibp-dmsmall" => train(&DM_SMALL, 256, 1, 0.1, StepLoss::Bound(Method::CrownIbp), threads, device),
        "train-crownibp-dmlarge-cifar" => train(&DM_LARGE, 32, 7, 2.0 / 255.0, StepLoss::Bound(Method::CrownIbp), threads, device),
        "train-onestep-dmsmall" => train(&DM_SMALL, 256, 1, 0.1, StepLoss::Bound(Method::OneStep), threads, device),
        "train-colt-dmsmall" => train(&DM_SMALL, 256, 1, 0.1, StepLoss::Colt(Box::new(colt_plan())), threads, device),
        "train-crown-conv" => train(&CONV, 100, 5, 0.1, StepLoss::Bound(Method::Crown), threads, device),
        "train-deepz-conv" => train(&CONV, 100, 5, 0.1, StepLoss::Bound(Method::Deepz), threads, device),
        "bounds-crown-fc5" => bounds(&FC5, 100, 3, Method::Crown, false, device),
        "bounds-crown-conv" => bounds(&CONV, 32, 5, Method::Crown, false, device),
        "bounds-deepz-fc5" => bounds(&FC5, 100, 3, Method::Deepz, false, device),
        "bounds-crown-fc5-sound" => bounds(&FC5, 100, 3, Method::Crown, true, device),
        "bounds-crown-conv-sound" => bounds(&CONV, 32, 5, Method::Crown, true, device),
        "bounds-deepz-fc5-sound" => bounds(&FC5, 100, 3, Method::Deepz, true, device),
        "gemm-2048" => {
            let random = |stream| crate::tensor::from_vec(SplitMix64::new(stream).uniforms(2048 * 2048), [2048, 2048], device);
            Ok(Box::new(GemmPeak { a: random(9), b: random(10) }))
        }
        "attack-pgd40-dmsmall" => {
            let (x, y) = inputs(256, DM_SMALL.input, 1, device);
            Ok(Box::new(AttackStep { net: DM_SMALL.network(device)?, x, y, eps: 0.1, seed: 0 }))
        }
        other => Err(unknown(other)),
    }
}

fn unknown(name: &str) -> Error {
    let known = [&WORKLOADS[..], &METHOD_WORKLOADS, &SOUND_WORKLOADS, &PEAK_WORKLOADS].map(|l| l.join(", "));
    Error::input(format!("unknown workload '{name}' (known: {})", known.join(", ")))
}

/// Parses a comma-separated workload list (all of `WORKLOADS` when empty).
pub fn parse_workloads(list: Option<&str>) -> Result<Vec<String>> {
    let names: Vec<String> = match list {
        None => WORKLOADS.iter().map(|s| s.to_string()).collect(),
        Some(l) => l.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    };
    for n in &names {
        if ![&WORKLOADS[..], &METHOD_WORKLOADS, &SOUND_WORKLOADS, &PEAK_WORKLOADS].iter().any(|list| list.contains(&n.as_str())) {
            return Err(unknown(n));
        }
    }
    Ok(names)
}

/// Runs one workload: `warmup` untimed iterations, then `iters` timed ones.
pub fn run(name: &str, iters: usize, warmup: usize, threads: usize, device: &Device) -> Result<Timing> {
    let mut w = build(name, threads, device)?;
    for _ in 0..warmup {
        w.prepare();
        w.iterate()?;
    }
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        w.prepare();
        let t0 = Instant::now();
        w.iterate()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let median = if ms.len() % 2 == 1 { ms[ms.len() / 2] } else { (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0 };
    let gflop = w.gflop();
    let gflops = gflop.map(|g| g / (median / 1e3));
    Ok(Timing { workload: name.to_string(), ms_median: median, ms_min: ms[0], iters: ms.len(), threads, gflop, gflops })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::default_device;

    /// DM-small's products counted by hand (WORKLOADS.md's shapes), per row: conv 1 16x13x13
    /// outputs of 1x4x4, conv 2 32x10x10 of 16x4x4, linear 3200x100 and 100x10.
    #[test]
    fn training_steps_count_the_flops_of_their_products() {
        let d = default_device();
        let (conv1, conv2, fc1, fc2) = (2704.0 * 16.0, 3200.0 * 256.0, 320_000.0, 1000.0);
        let forward = conv1 + conv2 + fc1 + fc2;
        let trained = 3.0 * forward - conv1;
        let natural = build("train-natural-dmsmall", 1, &d).unwrap().gflop().unwrap();
        assert!((natural - 2.0 * 256.0 * trained / 1e9).abs() < 1e-9, "{natural}");
        let ibp = build("train-ibp-dmsmall", 1, &d).unwrap().gflop().unwrap();
        assert!((ibp - 2.0 * 256.0 * (forward + 2.0 * trained) / 1e9).abs() < 1e-9, "{ibp}");
        assert!(build("train-crownibp-dmsmall", 1, &d).unwrap().gflop().is_none());
        assert_eq!(build("gemm-2048", 1, &d).unwrap().gflop(), Some(2.0 * 2048f64.powi(3) / 1e9));
    }
}
