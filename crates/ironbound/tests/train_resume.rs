//! Resuming an interrupted training run gives the same result as an uninterrupted one, and a
//! diverging run stops with an error naming the epoch and step, keeping its last checkpoint.

mod common;

use common::synthetic;
use ironbound::data::Split;
use ironbound::train::batches::{self, TrainData};
use ironbound::train::{checkpoint, run, EpochMetrics, Resolved, RunOptions, Silent, Sources, TrainConfig};
use std::path::PathBuf;

fn config(method: &str, epochs: usize) -> Resolved {
    let mut c = TrainConfig::default();
    for (k, v) in [
        ("dataset", "\"fashion-mnist\""),
        ("arch", "\"fc-small\""),
        ("method", &format!("\"{method}\"")),
        ("eps", "0.05"),
        ("epochs", &epochs.to_string()),
        ("seed", "7"),
        ("batch_size", "16"),
        ("warmup_epochs", "1"),
        ("rampup_epochs", "1"),
        ("lr", "1e-3"),
        ("l1", "1e-6"),
        ("grad_clip", "10.0"),
        ("augment", "true"),
        ("crop_padding", "2"),
        ("eval_batch_size", "20"),
    ] {
        c.set_str(&format!("{k}={v}")).unwrap();
    }
    c.resolve(&Sources::default()).unwrap()
}

fn data(r: &Resolved) -> TrainData {
    batches::prepare(r, synthetic(80, 1, Split::Train), Some(synthetic(40, 2, Split::Test)))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ironbound-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn assert_same(a: &[EpochMetrics], b: &[EpochMetrics]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let close = |p: f64, q: f64, what: &str| assert!((p - q).abs() <= 1e-6, "epoch {}: {what} {p} vs {q}", x.epoch);
        assert_eq!(x.epoch, y.epoch);
        close(x.loss, y.loss, "loss");
        close(x.natural_loss, y.natural_loss, "natural_loss");
        close(x.robust_loss.unwrap_or(-1.0), y.robust_loss.unwrap_or(-1.0), "robust_loss");
        close(x.train_accuracy, y.train_accuracy, "train_accuracy");
        close(x.clean_accuracy, y.clean_accuracy, "clean_accuracy");
        close(x.certified_accuracy, y.certified_accuracy, "certified_accuracy");
        close(x.certified_accuracy_ibp, y.certified_accuracy_ibp, "certified_accuracy_ibp");
        close(x.eps, y.eps, "eps");
        close(x.kappa, y.kappa, "kappa");
        close(x.beta.unwrap_or(-1.0), y.beta.unwrap_or(-1.0), "beta");
        close(x.lr, y.lr, "lr");
        assert_eq!(x.steps, y.steps);
    }
}

fn check_resume(method: &str) {
    let r = config(method, 3);
    let d = data(&r);
    let (once, twice) = (temp_dir(&format!("once-{method}")), temp_dir(&format!("twice-{method}")));

    let full = run(&r, &d, &once, &RunOptions::default(), &mut Silent).unwrap();
    assert!(full.completed && full.resumed_from.is_none());
    assert_eq!(full.metrics.len(), 3);
    // Not a trivial comparison: the runs do change from epoch to epoch.
    assert_ne!(full.metrics[0].loss, full.metrics[2].loss);
    assert!(full.metrics[2].eps > full.metrics[0].eps);

    let first = run(&r, &d, &twice, &RunOptions { max_epochs_this_run: Some(1) }, &mut Silent).unwrap();
    assert!(!first.completed);
    assert_eq!(first.metrics.len(), 1);
    assert!(!twice.join("model.safetensors").exists());
    assert_eq!(ironbound::train::metrics::read_jsonl(&twice.join("metrics.jsonl")).unwrap().len(), 1);

    let rest = run(&r, &d, &twice, &RunOptions::default(), &mut Silent).unwrap();
    assert!(rest.completed);
    assert_eq!(rest.resumed_from, Some(1));
    assert_same(&full.metrics, &rest.metrics);
    assert_same(&full.metrics, &ironbound::train::metrics::read_jsonl(&twice.join("metrics.jsonl")).unwrap());

    // The final weights are bit-identical.
    let dev = ironbound::tensor::default_device();
    let a = ironbound::io::load_model(&once.join("model.safetensors"), &dev).unwrap();
    let b = ironbound::io::load_model(&twice.join("model.safetensors"), &dev).unwrap();
    for ((na, pa), (nb, pb)) in a.named_params().into_iter().zip(b.named_params()) {
        assert_eq!(na, nb);
        assert_eq!(pa.to_vec(), pb.to_vec(), "{na}");
    }
    // config.toml reruns the same thing.
    let (saved, _) = TrainConfig::load(&twice.join("config.toml")).unwrap();
    assert_eq!(saved, r.config);
    // A finished run rerun does nothing more.
    let again = run(&r, &d, &twice, &RunOptions::default(), &mut Silent).unwrap();
    assert!(again.completed);
    assert_same(&full.metrics, &again.metrics);
    let _ = std::fs::remove_dir_all(&once);
    let _ = std::fs::remove_dir_all(&twice);
}

#[test]
fn resumed_ibp_run_equals_uninterrupted_run() {
    check_resume("ibp");
}

#[test]
fn resumed_crown_ibp_run_equals_uninterrupted_run() {
    check_resume("crown-ibp");
}

#[test]
fn resumed_pgd_run_equals_uninterrupted_run() {
    check_resume("pgd");
}

#[test]
fn resuming_with_another_configuration_is_refused() {
    let r = config("ibp", 2);
    let d = data(&r);
    let dir = temp_dir("mismatch");
    run(&r, &d, &dir, &RunOptions { max_epochs_this_run: Some(1) }, &mut Silent).unwrap();
    let mut other = r.config.clone();
    other.set_str("lr=0.01").unwrap();
    let other = other.resolve(&Sources::default()).unwrap();
    let err = run(&other, &d, &dir, &RunOptions::default(), &mut Silent).err().expect("refused");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("`lr`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nan_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint() {
    let r = config("ibp", 3);
    let d = data(&r);
    let dir = temp_dir("nan");
    run(&r, &d, &dir, &RunOptions { max_epochs_this_run: Some(1) }, &mut Silent).unwrap();
    let before = std::fs::read(dir.join(checkpoint::FILE_NAME)).unwrap();

    let mut bad = synthetic(80, 1, Split::Train);
    bad.images.iter_mut().for_each(|v| *v = f32::NAN);
    let bad = batches::prepare(&r, bad, Some(synthetic(40, 2, Split::Test)));
    let err = run(&r, &bad, &dir, &RunOptions::default(), &mut Silent).err().expect("diverges");
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 1, "{msg}");
    assert!(msg.contains("epoch 2, step 1"), "{msg}");
    assert!(msg.contains("NaN"), "{msg}");
    assert_eq!(std::fs::read(dir.join(checkpoint::FILE_NAME)).unwrap(), before, "checkpoint untouched");
    let ck = checkpoint::load(&dir.join(checkpoint::FILE_NAME), &ironbound::tensor::default_device()).unwrap();
    assert_eq!(ck.meta.epoch, 1);
    assert!(!dir.join("model.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sharded_batches_train_like_whole_batches() {
    // threads = 3 splits every batch of 16 rows into 6 + 5 + 5 on three threads; each shard's
    // loss is weighted by its share, so a step equals the whole batch's up to rounding.
    let runs: Vec<Vec<EpochMetrics>> = [1usize, 3]
        .iter()
        .map(|&threads| {
            let mut r = config("crown-ibp", 3);
            r.config.threads = threads;
            let dir = temp_dir(&format!("threads-{threads}"));
            let out = run(&r, &data(&r), &dir, &RunOptions::default(), &mut Silent).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            out.metrics
        })
        .collect();
    for (a, b) in runs[0].iter().zip(&runs[1]) {
        let close = |p: f64, q: f64, tol: f64, what: &str| assert!((p - q).abs() <= tol, "epoch {}: {what} {p} vs {q}", a.epoch);
        close(a.loss, b.loss, 1e-4, "loss");
        close(a.natural_loss, b.natural_loss, 1e-4, "natural_loss");
        close(a.robust_loss.unwrap_or(-1.0), b.robust_loss.unwrap_or(-1.0), 1e-4, "robust_loss");
        // One of the 40 evaluation images may flip on a rounding difference.
        close(a.clean_accuracy, b.clean_accuracy, 0.026, "clean_accuracy");
        close(a.certified_accuracy, b.certified_accuracy, 0.026, "certified_accuracy");
        assert_eq!(a.steps, b.steps);
    }
    assert!(runs[0][2].robust_loss.is_some(), "the robust loss was trained");
}

/// Asks to stop after `after_steps` optimiser steps, or at the end of the first epoch.
struct StopAfter {
    steps: usize,
    after_steps: Option<usize>,
    epochs_seen: usize,
}

impl ironbound::train::Progress for StopAfter {
    fn step(&mut self, _done: usize, _loss: f64) {
        self.steps += 1;
    }
    fn epoch_end(&mut self, _m: &EpochMetrics) {
        self.epochs_seen += 1;
    }
    fn stop_requested(&mut self) -> bool {
        match self.after_steps {
            Some(s) => self.steps >= s,
            None => self.epochs_seen >= 1,
        }
    }
}

#[test]
fn a_stop_request_ends_the_run_like_an_interruption() {
    let r = config("ibp", 2);
    let d = data(&r);
    // After epoch 1: the same files as `max_epochs_this_run = 1`, and a rerun resumes.
    let dir = temp_dir("stop-epoch");
    let mut at_epoch = StopAfter { steps: 0, after_steps: None, epochs_seen: 0 };
    let first = run(&r, &d, &dir, &RunOptions::default(), &mut at_epoch).unwrap();
    assert!(!first.completed);
    assert_eq!(first.metrics.len(), 1);
    assert!(!dir.join("model.safetensors").exists());
    let rest = run(&r, &d, &dir, &RunOptions::default(), &mut Silent).unwrap();
    assert!(rest.completed && rest.resumed_from == Some(1));
    let _ = std::fs::remove_dir_all(&dir);
    // Mid-epoch (80 samples in batches of 16: 5 steps per epoch): nothing of epoch 2 is kept.
    let dir = temp_dir("stop-step");
    let mut mid = StopAfter { steps: 0, after_steps: Some(7), epochs_seen: 0 };
    let stopped = run(&r, &d, &dir, &RunOptions::default(), &mut mid).unwrap();
    assert!(!stopped.completed);
    assert_eq!((stopped.metrics.len(), mid.steps), (1, 7));
    assert_eq!(checkpoint::load(&dir.join(checkpoint::FILE_NAME), &ironbound::tensor::default_device()).unwrap().meta.epoch, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
