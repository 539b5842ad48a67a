//! Tests of train/landscape.rs: the measurements against closed forms on a hand-checkable
//! classifier and hand-computed ReLU states, and training trajectories that a measurement
//! every epoch leaves bit for bit unchanged (also across a resume).

use super::*;
use crate::bounds::Method;
use crate::data::{Dataset, DatasetName, Split};
use crate::net::arch::{sequential, L};
use crate::net::init::SplitMix64;
use crate::tensor::default_device;
use crate::train::batches::TrainData;
use crate::train::config::SpecKind;
use crate::train::{run, EpochMetrics, Resolved, RunOptions, Silent, Sources, TrainConfig};
use std::path::PathBuf;

fn objective(method: TrainMethod) -> Objective {
    Objective { method, spec: SpecKind::Diffs, l1: 0.0, pgd_steps: 10, pgd_step_fraction: 0.25, projections: 0, slopes: None, stability: None }
}

fn probe(x: Vec<f32>, shape: [usize; 3], y: Vec<usize>, classes: usize) -> Probe {
    let n = y.len();
    let t = from_vec(x, [n, shape[0], shape[1], shape[2]], &default_device());
    Probe { every: 1, batches: vec![(t, y)], classes, seed: 0, threads: 1 }
}

#[test]
fn step_lengths_are_zero_one_and_ten_log_spaced_points_to_five() {
    let t = step_lengths();
    assert_eq!(t.len(), 12);
    assert_eq!((t[0], t[1]), (0.0, 0.5));
    assert!((t[11] - 5.0).abs() < 1e-12);
    assert!(t.contains(&1.0));
    let logs: Vec<f64> = t.iter().filter(|&&v| v > 0.0 && v != 1.0).map(|v| v.ln()).collect();
    assert_eq!(logs.len(), 10);
    for w in logs.windows(2) {
        assert!((w[1] - w[0] - 10f64.ln() / 9.0).abs() < 1e-12);
    }
}

/// Mean cross-entropy of the linear classifier `z = w x + b` on scalar inputs, and its
/// gradient `((p - e_y) x, p - e_y)` averaged over the samples, in f64.
fn reference(w: [f64; 2], b: [f64; 2], xs: &[f64], ys: &[usize]) -> (f64, [f64; 4]) {
    let n = xs.len() as f64;
    let (mut loss, mut g) = (0.0, [0.0; 4]);
    for (&x, &y) in xs.iter().zip(ys) {
        let z = [w[0] * x + b[0], w[1] * x + b[1]];
        let m = z[0].max(z[1]);
        let s = (z[0] - m).exp() + (z[1] - m).exp();
        let p = [(z[0] - m).exp() / s, (z[1] - m).exp() / s];
        loss += -(p[y].ln()) / n;
        for j in 0..2 {
            let d = (p[j] - if j == y { 1.0 } else { 0.0 }) / n;
            g[j] += d * x;
            g[2 + j] += d;
        }
    }
    (loss, g)
}

#[test]
fn measurements_match_the_closed_form_gradient_of_a_linear_classifier() {
    let (w, b) = ([0.5, -0.3], [0.1, 0.0]);
    let (xs, ys) = ([0.2, 0.9, 0.6], [0usize, 1, 1]);
    let net = sequential([1, 1, 1], &[L::Flatten, L::Fc(2)])
        .build(&default_device(), &mut |name, _| {
            Ok(match name {
                "1.weight" => vec![w[0] as f32, w[1] as f32],
                _ => vec![b[0] as f32, b[1] as f32],
            })
        })
        .unwrap();
    let p = probe(xs.iter().map(|&v| v as f32).collect(), [1, 1, 1], ys.to_vec(), 2);
    let lr = 2.0;
    let v = StepValues { warmup: false, eps: 0.0, kappa: 1.0, beta: 1.0 };
    let m = p.measure(&net, &objective(TrainMethod::Natural), &v, lr, 0).unwrap();

    let (l0, g0) = reference(w, b, &xs, &ys);
    let at = |t: f64| {
        let th: Vec<f64> = [w[0], w[1], b[0], b[1]].iter().zip(&g0).map(|(p, g)| p - t * lr * g).collect();
        reference([th[0], th[1]], [th[2], th[3]], &xs, &ys)
    };
    let (l1, g1) = at(1.0);
    let close = |got: f64, want: f64, what: &str| assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{what}: {got} vs {want}");
    close(m.loss, l0, "loss");
    close(m.loss_next, l1, "loss_next");
    let curve: Vec<f64> = step_lengths().iter().map(|&t| at(t).0).collect();
    for ((got, want), t) in m.loss_curve.iter().zip(&curve).zip(step_lengths()) {
        close(*got, *want, &format!("loss at t = {t}"));
    }
    let (min, max) = curve.iter().fold((f64::MAX, f64::MIN), |(a, b), &l| (a.min(l), b.max(l)));
    close(m.loss_min, min, "loss_min");
    close(m.loss_max, max, "loss_max");
    close(m.loss_variation, max - min, "loss_variation");
    // Large enough steps overshoot: the curve is not monotone, so the variation is not just
    // L(0) - L(5).
    assert!(max - min > (curve[0] - curve[11]).abs() + 1e-3, "{curve:?}");
    let dot = |a: &[f64; 4], b: &[f64; 4]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    close(m.grad_norm, dot(&g0, &g0).sqrt(), "grad_norm");
    close(m.grad_norm_next, dot(&g1, &g1).sqrt(), "grad_norm_next");
    close(m.grad_cosine.unwrap(), dot(&g0, &g1) / (dot(&g0, &g0) * dot(&g1, &g1)).sqrt(), "grad_cosine");
    let diff: f64 = g0.iter().zip(&g1).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    close(m.grad_diff, diff, "grad_diff");
    close(m.grad_diff_rms, diff / 2.0, "grad_diff_rms (4 parameters)");
    // No ReLU: nothing to count.
    assert!(m.unstable_ratio_layers.is_empty());
    assert_eq!((m.unstable_ratio, m.batches, m.samples), (0.0, 1, 3));
    let keys = m.keys();
    assert_eq!(keys["landscape_grad_cosine"].as_f64(), m.grad_cosine);
    assert_eq!(keys["landscape_loss_curve"].as_array().map(Vec::len), Some(12));
    assert!(keys.keys().all(|k| k.starts_with(PREFIX)));
}

/// Flatten, FC 3, ReLU, FC 3, ReLU, FC 2 with hand-picked weights: over x in [0.25, 0.75]
/// the first ReLU layer has one unstable ([-0.25, 0.25]), one active ([0.25, 0.75]) and one
/// dead ([-0.75, -0.25]) neuron; the second one unstable ([-0.1, 0.15]) and two dead
/// ([-0.75, -0.25] and [0, 0]).
fn relu_net() -> Network {
    sequential([1, 1, 1], &[L::Flatten, L::Fc(3), L::Relu, L::Fc(3), L::Relu, L::Fc(2)])
        .build(&default_device(), &mut |name, _| {
            Ok(match name {
                "1.weight" => vec![1.0, 1.0, 1.0],
                "1.bias" => vec![-0.5, 0.0, -1.0],
                "3.weight" => vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                "3.bias" => vec![-0.1, -1.0, 0.0],
                "5.weight" => vec![1.0, -1.0, 0.5, 0.0, 1.0, 1.0],
                _ => vec![0.0, 0.0],
            })
        })
        .unwrap()
}

#[test]
fn relu_states_are_counted_from_the_training_relaxations_bounds() {
    let net = relu_net();
    let x = from_vec(vec![0.5], [1, 1, 1, 1], &default_device());
    for method in [TrainMethod::Bound(Method::Ibp), TrainMethod::Bound(Method::CrownIbp), TrainMethod::Bound(Method::Crown), TrainMethod::Pgd] {
        assert_eq!(relu_states(&net, &x, 0.25, method).unwrap(), vec![[1, 1, 1], [1, 0, 2]], "{method}");
    }
    // Radius 0: nothing is unstable; a pre-activation of exactly 0 counts as dead.
    assert_eq!(relu_states(&net, &x, 0.0, TrainMethod::Natural).unwrap(), vec![[0, 1, 2], [0, 0, 3]]);

    let p = probe(vec![0.5, 0.5], [1, 1, 1], vec![0, 1], 2);
    let v = StepValues { warmup: false, eps: 0.25, kappa: 0.0, beta: 1.0 };
    let m = p.measure(&net, &objective(TrainMethod::Bound(Method::Ibp)), &v, 1e-3, 3).unwrap();
    assert_eq!(m.unstable_ratio_layers, vec![1.0 / 3.0, 1.0 / 3.0]);
    assert_eq!((m.unstable_ratio, m.active_ratio, m.dead_ratio), (2.0 / 6.0, 1.0 / 6.0, 3.0 / 6.0));
    assert_eq!(m.keys()["landscape_unstable_ratio_layer2"].as_f64(), Some(1.0 / 3.0));
}

/// Fashion-MNIST-shaped images: noise plus a bright patch whose place encodes the label.
fn synthetic(n: usize, seed: u64, split: Split) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = (i % 10) as u8;
        let (r0, c0) = (2 + (y as usize / 5) * 12, 2 + (y as usize % 5) * 5);
        for r in 0..28 {
            for c in 0..28 {
                let patch = (r0..r0 + 6).contains(&r) && (c0..c0 + 4).contains(&c);
                let noise = 0.3 * rng.uniform() as f32;
                images.push(if patch { 0.7 + noise } else { noise });
            }
        }
        labels.push(y);
    }
    Dataset::from_parts(DatasetName::FashionMnist, split, images, labels).unwrap()
}

fn config(method: &str, landscape_every: usize) -> Resolved {
    let mut c = TrainConfig::default();
    for (k, v) in [
        ("dataset", "\"fashion-mnist\""),
        ("arch", "\"fc-small\""),
        ("method", &format!("\"{method}\"")),
        ("eps", "0.05"),
        ("epochs", "3"),
        ("seed", "3"),
        ("batch_size", "16"),
        ("warmup_epochs", "1"),
        ("rampup_epochs", "1"),
        ("lr", "1e-3"),
        ("augment", "true"),
        ("crop_padding", "2"),
        ("eval_batch_size", "20"),
        ("threads", "2"),
        ("landscape_every", &landscape_every.to_string()),
        ("landscape_batches", "2"),
    ] {
        c.set_str(&format!("{k}={v}")).unwrap();
    }
    c.resolve(&Sources::default()).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ironbound-landscape-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The record without its timings and measurements.
fn trajectory(m: &EpochMetrics) -> EpochMetrics {
    EpochMetrics { seconds: 0.0, train_seconds: 0.0, extra: BTreeMap::new(), ..m.clone() }
}

fn weights(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let net = crate::io::load_model(&dir.join("model.safetensors"), &default_device()).unwrap();
    net.named_params().into_iter().map(|(n, p)| (n, p.to_vec())).collect()
}

fn check_unchanged_trajectory(method: &str) {
    let data = |r: &Resolved| -> TrainData { batches::prepare(r, synthetic(80, 1, Split::Train), Some(synthetic(40, 2, Split::Test))) };
    let (plain, measured, resumed) = (temp_dir(&format!("plain-{method}")), temp_dir(&format!("measured-{method}")), temp_dir(&format!("resumed-{method}")));
    let (r0, r1) = (config(method, 0), config(method, 1));
    let a = run(&r0, &data(&r0), &plain, &RunOptions::default(), &mut Silent).unwrap();
    let b = run(&r1, &data(&r1), &measured, &RunOptions::default(), &mut Silent).unwrap();
    assert!(a.completed && b.completed);
    assert_eq!(a.metrics.iter().map(trajectory).collect::<Vec<_>>(), b.metrics.iter().map(trajectory).collect::<Vec<_>>(), "{method}");
    assert_eq!(weights(&plain), weights(&measured), "{method}: the final weights differ");
    // (one-step logs its slope choices in every run; only the landscape keys are asked for.)
    assert!(a.metrics.iter().all(|m| m.extra.keys().all(|k| !k.starts_with("landscape_"))));
    for m in &b.metrics {
        for key in ["landscape_loss_variation", "landscape_grad_cosine", "landscape_grad_diff", "landscape_unstable_ratio", "landscape_unstable_ratio_layer2"] {
            assert!(m.extra.get(key).is_some_and(|v| v.is_number()), "{method}, epoch {}: {key} missing", m.epoch);
        }
    }
    // Epoch 1 is warm-up (eps 0: no unstable ReLU); the ramp-up makes some unstable.
    assert_eq!(b.metrics[0].extra["landscape_unstable_ratio"].as_f64(), Some(0.0));
    assert!(b.metrics[2].extra["landscape_unstable_ratio"].as_f64().unwrap() > 0.0, "{method}");
    // metrics.jsonl and the TensorBoard events carry the keys.
    let lines = crate::train::metrics::read_jsonl(&measured.join("metrics.jsonl")).unwrap();
    assert_eq!(lines, b.metrics);
    let events: Vec<_> = std::fs::read_dir(measured.join("tb")).unwrap().flatten().flat_map(|e| crate::train::tensorboard::read_file(&e.path()).unwrap()).collect();
    let steps: Vec<i64> = events.iter().filter(|e| e.scalar("landscape_grad_cosine").is_some()).map(|e| e.step).collect();
    assert_eq!(steps, vec![1, 2, 3]);

    // Interrupted after one epoch and resumed: the same weights and measurements.
    let first = run(&r1, &data(&r1), &resumed, &RunOptions { max_epochs_this_run: Some(1) }, &mut Silent).unwrap();
    assert!(!first.completed);
    let rest = run(&r1, &data(&r1), &resumed, &RunOptions::default(), &mut Silent).unwrap();
    assert_eq!(rest.resumed_from, Some(1));
    let without_time = |m: &EpochMetrics| {
        let mut e = m.extra.clone();
        e.remove("landscape_seconds");
        (trajectory(m), e)
    };
    assert_eq!(b.metrics.iter().map(without_time).collect::<Vec<_>>(), rest.metrics.iter().map(without_time).collect::<Vec<_>>());
    assert_eq!(weights(&measured), weights(&resumed));
    for d in [plain, measured, resumed] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn measuring_every_epoch_leaves_crown_ibp_training_bit_identical() {
    check_unchanged_trajectory("crown-ibp");
}

#[test]
fn measuring_every_epoch_leaves_one_step_training_bit_identical() {
    // Random slopes: the measurement draws from its own stream.
    check_unchanged_trajectory("one-step");
}
