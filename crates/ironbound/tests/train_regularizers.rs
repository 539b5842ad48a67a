//! The tightness regularizers as training terms: with weights 0 a run is bit-identical to one
//! without the keys (also when d and r are only measured for the metrics), the weights ramp up
//! from 0 after the warm-up, d and r are logged per epoch, and bad keys are one-line errors
//! naming the key and the file.

mod common;

use common::{small_run, synthetic};
use ironbound::data::Split;
use ironbound::train::batches::{self, TrainData};
use ironbound::train::{run, EpochMetrics, Outcome, Resolved, RunOptions, Silent, Sources, TrainConfig};
use std::path::{Path, PathBuf};

fn config(method: &str, extra: &[(&str, &str)]) -> Resolved {
    let quoted = format!("\"{method}\"");
    let mut keys = vec![("method", quoted.as_str()), ("epochs", "4"), ("seed", "3"), ("warmup_epochs", "1"), ("rampup_epochs", "2")];
    keys.extend_from_slice(extra);
    small_run(&keys).resolve(&Sources::default()).unwrap()
}

fn train(name: &str, r: &Resolved) -> (Outcome, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ironbound-reg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data: TrainData = batches::prepare(r, synthetic(80, 1, Split::Train), Some(synthetic(40, 2, Split::Test)));
    let out = run(r, &data, &dir, &RunOptions::default(), &mut Silent).unwrap();
    assert!(out.completed);
    (out, dir)
}

fn weights(o: &Outcome) -> Vec<(String, Vec<f32>)> {
    o.net.named_params().into_iter().map(|(n, p)| (n, p.to_vec())).collect()
}

fn text(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// Everything but the wall-clock fields.
fn without_times(m: &[EpochMetrics]) -> Vec<EpochMetrics> {
    m.iter().map(|e| EpochMetrics { seconds: 0.0, train_seconds: 0.0, reg_d: None, reg_r: None, reg_d_weight: None, reg_r_weight: None, ..e.clone() }).collect()
}

#[test]
fn zero_weights_leave_the_run_bit_identical() {
    for (method, extra) in [("deepz", None), ("crown-ibp", None), ("deepz", Some(("projections", "7")))] {
        let with = |more: &[(&'static str, &'static str)]| {
            let mut all: Vec<(&str, &str)> = extra.into_iter().collect();
            all.extend_from_slice(more);
            config(method, &all)
        };
        let (plain, plain_dir) = train(&format!("{method}-plain"), &with(&[]));
        let (zero, zero_dir) = train(&format!("{method}-zero"), &with(&[("reg_d_weight", "0.0"), ("reg_r_weight", "0.0")]));
        let (logged, logged_dir) = train(&format!("{method}-logged"), &with(&[("log_regularizers", "true")]));
        assert_eq!(weights(&plain), weights(&zero), "{method}: explicit zero weights changed the model");
        // Same metrics apart from the wall clock: compare the records without their times.
        assert_eq!(without_times(&plain.metrics), without_times(&zero.metrics), "{method}");
        assert_eq!(text(&plain_dir, "config.toml"), text(&zero_dir, "config.toml"), "{method}: config.toml differs");
        // Measuring d and r for the metrics does not change the training either.
        assert_eq!(weights(&plain), weights(&logged), "{method}: log_regularizers changed the model");
        assert_eq!(without_times(&plain.metrics), without_times(&logged.metrics), "{method}");
        assert!(plain.metrics.iter().all(|m| m.reg_d.is_none() && m.reg_d_weight.is_none()));
        // Logged from the first epoch with a robust loss (not during the warm-up).
        assert!(logged.metrics[0].reg_d.is_none(), "{method}: d measured during the warm-up");
        for m in &logged.metrics[1..] {
            assert_eq!((m.reg_d_weight, m.reg_r_weight), (Some(0.0), Some(0.0)));
            if m.beta == Some(0.0) {
                // CROWN-IBP's second stage (pure IBP): no regularizer.
                assert!(m.reg_d.is_none(), "{method} epoch {}: d measured at beta = 0", m.epoch);
                continue;
            }
            let (d, r) = (m.reg_d.unwrap(), m.reg_r.unwrap());
            assert!(d.is_finite() && r.is_finite() && r >= 0.0, "{method} epoch {}: d {d}, r {r}", m.epoch);
            if extra.is_none() {
                assert!(d >= -1e-4, "{method} epoch {}: d = {d} on sound bounds", m.epoch);
            }
        }
        assert!(text(&logged_dir, "metrics.jsonl").contains("\"reg_r\":"));
        for d in [plain_dir, zero_dir, logged_dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn weights_ramp_up_after_the_warm_up_and_change_the_run() {
    for method in ["crown", "crown-ibp", "deepz"] {
        let lambda_gamma = [("reg_d_weight", "0.002"), ("reg_r_weight", "1.0")];
        let r = config(method, &lambda_gamma);
        // Default ramp-up of the weights: the eps ramp-up (2 epochs).
        assert_eq!(r.config.reg_rampup_epochs, Some(2));
        let (on, dir) = train(&format!("{method}-on"), &r);
        let (off, off_dir) = train(&format!("{method}-off"), &config(method, &[("log_regularizers", "true")]));
        assert_ne!(weights(&on), weights(&off), "{method}: the regularizers changed nothing");
        // 80 samples in batches of 16: 5 steps per epoch; the weights grow over steps 5..15.
        let factors: Vec<f64> = on.metrics.iter().map(|m| m.reg_r_weight.unwrap()).collect();
        let want = [0.0, 0.4, 0.9, 1.0];
        for (g, w) in factors.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{method}: gamma per epoch {factors:?}, want {want:?}");
        }
        assert!((on.metrics[3].reg_d_weight.unwrap() - 0.002).abs() < 1e-15);
        // Identical through the warm-up, where the weights are 0.
        assert_eq!(without_times(&on.metrics[..1]), without_times(&off.metrics[..1]));
        assert!(on.metrics[1..3].iter().all(|m| m.reg_r.is_some_and(f64::is_finite)), "{method}");
        let (saved, _) = TrainConfig::load(&dir.join("config.toml")).unwrap();
        assert_eq!(saved, r.config, "{method}: config.toml reruns the run");
        for d in [dir, off_dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A config file with the base keys, `method` and `extra`.
fn config_file(extra: &str, method: &str) -> (TrainConfig, Sources, PathBuf) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("ironbound-reg-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("reg-{}.toml", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
    let body = format!("dataset = \"fashion-mnist\"\narch = \"fc-small\"\nmethod = \"{method}\"\neps = 0.1\nepochs = 10\n{extra}\n");
    std::fs::write(&path, body).unwrap();
    let (c, keys) = TrainConfig::load(&path).unwrap();
    (c, Sources { file: Some(path.clone()), file_keys: keys, ..Default::default() }, path)
}

#[test]
fn bad_regularizer_keys_name_the_key_and_the_file() {
    for (extra, method, key, says) in [
        ("reg_d_weight = -0.5", "crown-ibp", "reg_d_weight", ">= 0"),
        ("reg_r_weight = -1e-3", "deepz", "reg_r_weight", ">= 0"),
        ("reg_r_weight = nan", "crown", "reg_r_weight", ">= 0"),
        ("reg_r_weight = 0.5", "ibp", "reg_r_weight", "deepz, crown or crown-ibp"),
        ("log_regularizers = true", "hbox", "log_regularizers", "deepz, crown or crown-ibp"),
        ("reg_d_weight = 1e-3", "pgd", "reg_d_weight", "deepz, crown or crown-ibp"),
        ("reg_d_weight = 1e-3\nspec = \"eye\"", "crown", "reg_d_weight", "diffs"),
        ("reg_r_weight = 0.5\nwarmup_epochs = 2\nreg_rampup_epochs = 9", "crown-ibp", "reg_rampup_epochs", "longer than training"),
    ] {
        let (c, s, path) = config_file(extra, method);
        let err = c.resolve(&s).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{extra}");
        let msg = err.to_string();
        assert!(!msg.contains('\n') && msg.contains(&path.display().to_string()), "{extra}: {msg}");
        assert!(msg.contains(&format!("`{key}`")) && msg.contains(says), "{extra}: {msg}");
    }
    // Valid: every supported method, DeepZ also with random projections.
    for (method, more) in [("deepz", "projections = 5"), ("deepz", ""), ("crown", ""), ("crown-ibp", "")] {
        let (c, s, _) = config_file(&format!("reg_d_weight = 2e-3\nreg_r_weight = 1.0\n{more}"), method);
        let r = c.resolve(&s).unwrap();
        assert!(r.regularizers && r.config.reg_rampup_epochs == Some(5), "{method}: the default is the eps ramp-up, half the epochs");
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("ironbound-reg-config-{}", std::process::id())));
}
