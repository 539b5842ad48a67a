//! Mode connectivity of certified training (loss-landscape Appendix I, after Garipov et al.
//! 2018): the quadratic Bezier curve
//! `phi(t) = (1-t)^2 A + 2t(1-t) C + t^2 B` between two trained models A and B of the same
//! architecture. The control point C starts at the midpoint `(A + B) / 2` and is trained with
//! Adam to minimise `E_{t ~ U[0,1]} l(phi(t))`, one t per batch, `l` the method's robust loss
//! at eps (kappa 0; CROWN-IBP and CAP-IBP with their mixing weight beta). Then the loss, the
//! clean and the certified accuracy are measured at evenly spaced t along the curve and, as a
//! baseline, along the straight line `(1-t) A + t B`. At t = 0 and t = 1 both paths are A and
//! B themselves, bit for bit, so their points are what `ironbound certify` reports for A and B.
//! The curve has a barrier when `l(phi(t)) > max(l(A), l(B))` somewhere.

use super::plot::{LineChart, Series};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes;
use crate::loss::one_hot;
use crate::net::init::SplitMix64;
use crate::net::{Network, Op, Param};
use crate::tensor::{from_vec, Device, Tensor};
use crate::train::batches;
use crate::train::config::{SpecKind, TrainMethod};
use crate::train::objective::Objective;
use crate::train::optim::{gradients, is_trainable, sum_gradients, Optimizer, OptimizerKind};
use crate::verify::{certify, CertMethod, CertifyConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct CurveConfig {
    pub method: TrainMethod,
    pub eps: f64,
    /// CROWN-IBP / CAP-IBP: the bound is `(1 - beta) IBP + beta relaxation`.
    pub beta: f64,
    /// Passes over the training samples for C (0: C stays at the midpoint).
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: u64,
    /// Shards of each batch computed on parallel threads (as `ironbound train`).
    pub threads: usize,
    /// Evenly spaced t in [0, 1], both ends included.
    pub points: usize,
    /// Methods of the certified accuracies.
    pub certify: Vec<CertMethod>,
    pub eval_batch_size: usize,
}

impl CurveConfig {
    fn objective(&self) -> Objective {
        Objective { method: self.method, spec: SpecKind::Diffs, l1: 0.0, pgd_steps: 10, pgd_step_fraction: 0.25, projections: 0, slopes: None, stability: None }
    }
}

/// The P values of t: `i / (P - 1)`, i = 0..P-1.
pub fn points(p: usize) -> Result<Vec<f64>> {
    if p < 2 {
        return Err(Error::input(format!("--points must be at least 2 (t = 0 and t = 1), got {p}")));
    }
    Ok((0..p).map(|i| i as f64 / (p - 1) as f64).collect())
}

/// One line per value and parameter of the network: what two networks must share to be
/// points of one curve (their constants, such as a normalisation, too).
fn signature(net: &Network) -> Vec<String> {
    let mut out = vec![format!("input {:?}", net.input_shape())];
    for (i, node) in net.nodes().iter().enumerate() {
        let extra = match &node.op {
            Op::Conv2d(c) => format!(" stride {:?} padding {:?}", c.stride, c.padding),
            Op::AvgPool2d(p) => format!(" kernel {:?} stride {:?} padding {:?}", p.kernel, p.stride, p.padding),
            Op::Normalize(n) => format!(" mean {:?} std {:?}", crate::tensor::to_vec(n.mean.clone()), crate::tensor::to_vec(n.std.clone())),
            _ => String::new(),
        };
        let params: Vec<String> = node.op.params().iter().map(|(k, p)| format!("{k} {:?}", p.dims())).collect();
        out.push(format!("node {} ({}) reads {:?}, output {:?}{extra} {}", i + 1, node.op.kind(), node.inputs, net.shape(i + 1), params.join(" ")));
    }
    out
}

/// An error naming the first difference when A and B are not the same architecture.
pub fn check_same_architecture(a: &Network, b: &Network) -> Result<()> {
    let (sa, sb) = (signature(a), signature(b));
    if let Some((x, y)) = sa.iter().zip(&sb).find(|(x, y)| x != y) {
        return Err(Error::input(format!("--model-a and --model-b are different architectures: {x} vs {y}")));
    }
    if sa.len() != sb.len() {
        return Err(Error::input(format!("--model-a and --model-b are different architectures: {} vs {} layers", sa.len() - 1, sb.len() - 1)));
    }
    Ok(())
}

fn params_of(net: &Network) -> Vec<Param> {
    let mut out = Vec::new();
    net.map_params(&mut |_, p| {
        out.push(p.clone());
        p
    });
    out
}

/// `sum_i w_i * nets_i` parameter by parameter; constants of the architecture that are not
/// weights (a normalisation's mean and std) are the first network's.
fn combine(base: &Network, nets: &[(&Network, f64)]) -> Network {
    let lists: Vec<(Vec<Param>, f64)> = nets.iter().map(|(n, w)| (params_of(n), *w)).collect();
    let mut i = 0usize;
    base.map_params(&mut |name, p| {
        let idx = i;
        i += 1;
        if matches!(name, "mean" | "std") {
            return p;
        }
        let mut acc: Option<Param> = None;
        for (list, w) in &lists {
            // Networks of another architecture (refused by `check_same_architecture`) leave
            // the base's value.
            let Some(term) = list.get(idx).cloned() else { return p };
            let term = term.map(|t| t * *w, |t| t * *w, |t| t * *w);
            acc = Some(match (acc, term) {
                (None, t) => t,
                (Some(Param::D1(a)), Param::D1(t)) => Param::D1(a + t),
                (Some(Param::D2(a)), Param::D2(t)) => Param::D2(a + t),
                (Some(Param::D4(a)), Param::D4(t)) => Param::D4(a + t),
                (Some(a), _) => a,
            });
        }
        acc.unwrap_or(p)
    })
}

/// The curve's network at t (`c` may track gradients; A and B are constants).
pub fn bezier(a: &Network, c: &Network, b: &Network, t: f64) -> Network {
    combine(c, &[(a, (1.0 - t) * (1.0 - t)), (c, 2.0 * t * (1.0 - t)), (b, t * t)])
}

/// The straight line's network at t.
pub fn line(a: &Network, b: &Network, t: f64) -> Network {
    combine(a, &[(a, 1.0 - t), (b, t)])
}

fn track(net: &Network) -> Network {
    net.map_params(&mut |name, p| if is_trainable(name) { p.plain().require_grad() } else { p })
}

/// Trains the control point; `progress(done, total, mean loss so far)` after every batch.
/// Returns C and the mean training loss of each epoch.
pub fn train_control(a: &Network, b: &Network, train: &Dataset, cfg: &CurveConfig, device: &Device, progress: &mut dyn FnMut(usize, usize, f64)) -> Result<(Network, Vec<f64>)> {
    let mut c = line(a, b, 0.5);
    let n = train.len();
    if n == 0 && cfg.epochs > 0 {
        return Err(Error::input("no training samples for the control point"));
    }
    let bs = cfg.batch_size.clamp(1, n.max(1));
    let steps = n.div_ceil(bs);
    let objective = cfg.objective();
    let mut opt = Optimizer::new(OptimizerKind::adam(), cfg.lr, 0.0);
    let mut t_rng = SplitMix64::new(cfg.seed ^ 0x6d6f_6465_2d63_6f6e);
    let k = a.num_outputs();
    let s = train.shape;
    let mut history = Vec::new();
    for epoch in 0..cfg.epochs {
        let order = batches::epoch_order(n, cfg.seed, epoch);
        let mut sum = 0.0;
        for (i, idx) in order.chunks(bs).enumerate() {
            let t = t_rng.uniform();
            let seed = batches::step_seed(cfg.seed, (epoch * steps + i) as u64);
            let (pixels, y) = batches::gather(train, idx, None);
            let x = from_vec(pixels, [idx.len(), s[0], s[1], s[2]], device);
            let shard = |j: usize, rows: std::ops::Range<usize>| -> Result<(f64, crate::train::optim::ParamGrads)> {
                let weight = rows.len() as f64 / idx.len() as f64;
                let xs = x.clone().slice([rows.clone(), 0..s[0], 0..s[1], 0..s[2]]);
                let ys = &y[rows];
                let tracked = track(&c);
                let curve = bezier(a, &tracked, b, t);
                let plain = bezier(a, &c, b, t);
                let parts = objective.loss(&curve, &plain, &xs, ys, &one_hot(ys, k, device), cfg.eps, 0.0, cfg.beta, false, seed.wrapping_add(j as u64))?;
                let loss = weight * f64::from(parts.total.clone().into_scalar::<f32>());
                let total = if weight == 1.0 { parts.total } else { parts.total * weight };
                Ok((loss, gradients(&tracked, &total.backward())))
            };
            let parts = batches::in_parallel(batches::shards(idx.len(), cfg.threads.max(1)), &shard)?;
            let loss: f64 = parts.iter().map(|p| p.0).sum();
            if !loss.is_finite() {
                return Err(Error::internal(format!("training the curve diverged: loss {loss} at epoch {}, step {}; try a lower --lr", epoch + 1, i + 1)));
            }
            sum += loss;
            c = opt.apply(&c, sum_gradients(parts.into_iter().map(|p| p.1).collect()), 1.0)?;
            progress(epoch * steps + i + 1, cfg.epochs * steps, sum / (i + 1) as f64);
        }
        history.push(sum / steps as f64);
    }
    Ok((c, history))
}

/// Loss and accuracies of one network of a path.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Point {
    pub t: f64,
    /// The method's robust loss at eps (mean over the samples).
    pub loss: f64,
    pub natural_loss: f64,
    pub clean_accuracy: f64,
    pub certified_accuracy: BTreeMap<String, f64>,
}

/// Evaluates `net` on `(images, labels)`.
pub fn evaluate(net: &Network, images: &[f32], labels: &[usize], t: f64, cfg: &CurveConfig, device: &Device) -> Result<Point> {
    let s = net.input_shape();
    let per: usize = s.iter().product();
    let k = net.num_outputs();
    let objective = cfg.objective();
    let bs = cfg.eval_batch_size.max(1);
    let (mut loss, mut natural) = (0.0, 0.0);
    for start in (0..labels.len()).step_by(bs) {
        let end = (start + bs).min(labels.len());
        let x: Tensor<4> = from_vec(images[start * per..end * per].to_vec(), [end - start, s[0], s[1], s[2]], device);
        let y = &labels[start..end];
        let parts = objective.loss(net, net, &x, y, &one_hot(y, k, device), cfg.eps, 0.0, cfg.beta, false, batches::step_seed(cfg.seed, start as u64))?;
        let w = (end - start) as f64 / labels.len() as f64;
        loss += w * f64::from(parts.total.into_scalar::<f32>());
        natural += w * f64::from(parts.natural.into_scalar::<f32>());
    }
    let cert = CertifyConfig { batch_size: bs, ..CertifyConfig::new(cfg.eps, cfg.certify.clone()) };
    let (report, _) = certify(net, images, labels, &cert, device, &mut |_| {})?;
    Ok(Point { t, loss, natural_loss: natural, clean_accuracy: report.clean_accuracy, certified_accuracy: report.certified_accuracy })
}

/// One path's points and its barriers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CurvePath {
    pub name: String,
    pub points: Vec<Point>,
    /// `max_t loss - max(loss(0), loss(1))`: positive iff the path has a loss barrier.
    pub loss_barrier: f64,
    /// Per certify method, `min(acc(0), acc(1)) - min_t acc`: positive iff the certified
    /// accuracy dips below both ends somewhere.
    pub certified_dip: BTreeMap<String, f64>,
}

impl CurvePath {
    pub fn new(name: &str, points: Vec<Point>) -> CurvePath {
        let ends = |f: &dyn Fn(&Point) -> f64| match (points.first(), points.last()) {
            (Some(a), Some(b)) => (f(a), f(b)),
            _ => (0.0, 0.0),
        };
        let (l0, l1) = ends(&|p| p.loss);
        let loss_barrier = points.iter().map(|p| p.loss).fold(f64::NEG_INFINITY, f64::max) - l0.max(l1);
        let methods: Vec<String> = points.first().map(|p| p.certified_accuracy.keys().cloned().collect()).unwrap_or_default();
        let certified_dip = methods
            .into_iter()
            .map(|m| {
                let acc = |p: &Point| p.certified_accuracy.get(&m).copied().unwrap_or(0.0);
                let (a0, a1) = ends(&acc);
                let low = points.iter().map(acc).fold(f64::INFINITY, f64::min);
                (m.clone(), a0.min(a1) - low)
            })
            .collect();
        CurvePath { name: name.to_string(), points, loss_barrier, certified_dip }
    }
}

/// Everything `analyze connectivity` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Connectivity {
    /// The names of the models at t = 0 and t = 1.
    pub model_a: String,
    pub model_b: String,
    pub method: String,
    pub eps: f64,
    pub beta: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub train_n: usize,
    pub seed: u64,
    /// Evaluation samples.
    pub n: usize,
    pub certify_methods: Vec<String>,
    /// Mean training loss of the curve per epoch.
    pub train_loss: Vec<f64>,
    pub paths: Vec<CurvePath>,
    pub seconds: f64,
}

impl Connectivity {
    /// `connectivity.csv`: `path,t,loss,natural_loss,clean_accuracy,certified_<M>...`.
    pub fn csv(&self) -> String {
        let mut out = String::from("path,t,loss,natural_loss,clean_accuracy");
        for m in &self.certify_methods {
            out.push_str(&format!(",certified_{m}"));
        }
        out.push('\n');
        for path in &self.paths {
            for p in &path.points {
                out.push_str(&format!("{},{},{},{},{}", path.name, p.t, p.loss, p.natural_loss, p.clean_accuracy));
                for m in &self.certify_methods {
                    out.push_str(&format!(",{}", p.certified_accuracy.get(m).copied().unwrap_or(f64::NAN)));
                }
                out.push('\n');
            }
        }
        out
    }

    /// connectivity.csv, connectivity.json, connectivity_loss.png/.svg and
    /// connectivity_accuracy.png/.svg into `dir`.
    pub fn write(&self, dir: &Path, title: &str) -> Result<()> {
        write_bytes(&dir.join("connectivity.csv"), self.csv().as_bytes())?;
        let text = serde_json::to_string_pretty(self).map_err(Error::internal)? + "\n";
        write_bytes(&dir.join("connectivity.json"), text.as_bytes())?;
        let series = |f: &dyn Fn(&Point) -> f64, label: &dyn Fn(&str) -> String| -> Vec<Series> {
            self.paths.iter().map(|p| Series { name: label(&p.name), points: p.points.iter().map(|q| (q.t, f(q))).collect() }).collect()
        };
        LineChart {
            title: format!("{} robust loss along the paths: {title}", self.method),
            x_label: "t (0: model A, 1: model B)".into(),
            y_label: format!("{} robust loss, eps {}", self.method, self.eps),
            series: series(&|q| q.loss, &|n| n.to_string()),
            y_range: None,
        }
        .write(&dir.join("connectivity_loss"))?;
        let mut acc = series(&|q| 100.0 * q.clean_accuracy, &|n| format!("{n}: clean"));
        for m in &self.certify_methods {
            acc.extend(series(&|q| 100.0 * q.certified_accuracy.get(m).copied().unwrap_or(0.0), &|n| format!("{n}: certified ({m})")));
        }
        LineChart {
            title: format!("accuracy along the paths: {title}"),
            x_label: "t (0: model A, 1: model B)".into(),
            y_label: format!("accuracy (%), certified at eps {}", self.eps),
            series: acc,
            y_range: Some((0.0, 100.0)),
        }
        .write(&dir.join("connectivity_accuracy"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::arch;
    use crate::tensor::default_device;

    #[test]
    fn the_paths_are_the_models_at_their_ends_and_the_midpoint_in_between() {
        let dev = default_device();
        let a = arch::named("fc-small", [1, 28, 28]).and_then(|s| s.init(1, &dev)).unwrap();
        let b = arch::named("fc-small", [1, 28, 28]).and_then(|s| s.init(2, &dev)).unwrap();
        let c = line(&a, &b, 0.5);
        let vals = |n: &Network| params_of(n).iter().flat_map(Param::to_vec).collect::<Vec<f32>>();
        let (va, vb, vc) = (vals(&a), vals(&b), vals(&c));
        assert_eq!(vals(&bezier(&a, &c, &b, 0.0)), va);
        assert_eq!(vals(&bezier(&a, &c, &b, 1.0)), vb);
        assert_eq!(vals(&line(&a, &b, 0.0)), va);
        assert_eq!(vals(&line(&a, &b, 1.0)), vb);
        // phi(1/2) = A/4 + C/2 + B/4 = (A + B)/2 when C is the midpoint.
        for ((x, y), m) in va.iter().zip(&vb).zip(vals(&bezier(&a, &c, &b, 0.5))) {
            assert!((m - 0.5 * (x + y)).abs() <= 1e-6, "{m} vs {}", 0.5 * (x + y));
        }
        for ((x, y), m) in va.iter().zip(&vb).zip(&vc) {
            assert!((m - 0.5 * (x + y)).abs() <= 1e-7);
        }
        check_same_architecture(&a, &b).unwrap();
        let conv = arch::named("conv", [1, 28, 28]).and_then(|s| s.init(1, &dev)).unwrap();
        let err = check_same_architecture(&a, &conv).unwrap_err().to_string();
        assert!(err.contains("different architectures"), "{err}");
        let normalized = a.with_normalize(&[0.5], &[0.25]).unwrap();
        assert!(check_same_architecture(&a, &normalized).is_err());
        assert!(points(1).is_err());
        assert_eq!(points(3).unwrap(), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn barriers_compare_the_path_with_its_ends() {
        let pt = |t: f64, loss: f64, acc: f64| Point { t, loss, natural_loss: 0.0, clean_accuracy: 1.0, certified_accuracy: BTreeMap::from([("ibp".to_string(), acc)]) };
        let p = CurvePath::new("bezier", vec![pt(0.0, 1.0, 0.5), pt(0.5, 1.5, 0.2), pt(1.0, 0.8, 0.4)]);
        assert!((p.loss_barrier - 0.5).abs() < 1e-12);
        assert!((p.certified_dip["ibp"] - 0.2).abs() < 1e-12);
        let q = CurvePath::new("line", vec![pt(0.0, 1.0, 0.5), pt(0.5, 0.9, 0.6), pt(1.0, 0.8, 0.4)]);
        assert!(q.loss_barrier <= 0.0 && q.certified_dip["ibp"] <= 0.0);
    }
}
