//! `ironbound train` killed with SIGKILL (in the middle of an epoch, while writing a checkpoint,
//! during the final export) and restarted with the same command ends with the same metrics and
//! files as an uninterrupted run (CONTRACT.md, `ironbound train`).

mod common;

use common::{checkpoint_epoch, dataset, metrics, metrics_without_times, run_to_end, same_contents, temp_files, train_command, workdir};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn sigkill_mid_epoch_then_same_command_equals_uninterrupted_run() {
    let dir = workdir("kill-timed");
    let data = dataset(&dir, 3000, 200);
    let train_command = |data: &Path, out: &Path| train_command(data, out, 3, 200);

    let whole = dir.join("whole");
    run_to_end(train_command(&data, &whole));
    let expected = metrics(&whole);
    assert_eq!(expected.len(), 3);

    // Kill as soon as the first epoch's checkpoint is on disk: the second epoch is under way.
    let killed = dir.join("killed");
    let mut child = train_command(&data, &killed).spawn().unwrap();
    let start = Instant::now();
    while metrics(&killed).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(600), "first epoch never finished");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training ended before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(metrics(&killed).len() < 3, "the run finished before the kill");
    assert!(!killed.join("model.safetensors").exists(), "a killed run must not look complete");

    run_to_end(train_command(&data, &killed));
    let resumed = metrics(&killed);
    assert_eq!(resumed.len(), expected.len());
    for (a, b) in expected.iter().zip(&resumed) {
        for key in ["loss", "clean_accuracy", "certified_accuracy", "certified_accuracy_ibp", "eps", "kappa", "beta", "lr"] {
            let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6, "epoch {}: {key} {x} vs {y}", a["epoch"]);
        }
    }
    assert!(killed.join("model.safetensors").exists() && killed.join("model.onnx").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `command` with the test hook `IRONBOUND_FAULT_AT=point` (crates/ironbound/src/fault.rs),
/// waits until the process says it stopped there and SIGKILLs it.
fn kill_at(mut command: Command, point: &str) {
    let mut child = command.env("IRONBOUND_FAULT_AT", point).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let marker = format!("ironbound: IRONBOUND_FAULT_AT: stopped at {point}");
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line == marker => break,
            Ok(line) => seen.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("{point} was never reached ({e:?}; exit {:?}):\n{}", child.wait().unwrap(), seen.join("\n"));
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

/// Kills at 20 points spread over a run of 3 epochs of 6 steps (mid-epoch at steps drawn from
/// a fixed seed, in each stage of the checkpoint's and the metrics' atomic writes, between the
/// final model files), rerunning the same command each time, then lets it finish: the metrics
/// and the model files equal those of the uninterrupted run. After every kill the checkpoint
/// loads (checksum included) at the expected epoch, metrics.jsonl never holds an epoch that
/// the checkpoint lacks, and every model file present is already the final one.
#[test]
fn sigkill_at_20_points_including_checkpoint_writes_and_the_final_export() {
    const STEPS: usize = 6; // 300 samples in batches of 50
    let dir = workdir("kill-points");
    let data = dataset(&dir, 300, 100);
    let command = |out: &Path| train_command(&data, out, 3, 100);
    let whole = dir.join("whole");
    run_to_end(command(&whole));
    let expected = metrics_without_times(&whole);
    assert_eq!(expected.len(), 3);
    assert_ne!(expected[0]["loss"], expected[2]["loss"], "the epochs must differ for the comparison to mean something");

    let mut rng = 0x5eed_u64;
    let mut step_in = |lo: usize| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        format!("step:{}", lo + 1 + (rng >> 33) as usize % STEPS)
    };
    let ckpt = |stage: &str| format!("{stage}:checkpoint.safetensors:1");
    // (point, epoch of the checkpoint once killed there): each rerun resumes from it.
    let points: Vec<(String, usize)> = vec![
        (step_in(0), 0),
        (ckpt("mid-write"), 0),
        (step_in(STEPS), 1), // past epoch 1's checkpoint, in epoch 2
        (ckpt("before-rename"), 1),
        (step_in(0), 1),
        (ckpt("after-rename"), 2), // epoch 2 saved, metrics.jsonl not yet rewritten
        ("mid-write:metrics.jsonl:1".into(), 2), // the rewrite when resuming
        (step_in(0), 2),
        (ckpt("mid-write"), 2),
        (step_in(0), 2),
        (ckpt("before-rename"), 2),
        (ckpt("after-rename"), 3),
        ("before-rename:metrics.jsonl:1".into(), 3),
        ("mid-write:model.safetensors:1".into(), 3),
        ("before-rename:model.safetensors:1".into(), 3),
        ("after-rename:model.safetensors:1".into(), 3),
        ("mid-write:model.onnx:1".into(), 3),
        ("after-rename:model.onnx:1".into(), 3),
        ("mid-write:config.toml:2".into(), 3), // the first config.toml write is at the start
        ("after-rename:config.toml:2".into(), 3),
    ];
    assert_eq!(points.len(), 20);
    let killed = dir.join("killed");
    for (point, epoch) in &points {
        kill_at(command(&killed), point);
        assert_eq!(checkpoint_epoch(&killed), *epoch, "after a kill at {point}");
        assert!(metrics(&killed).len() <= *epoch, "after a kill at {point}: metrics.jsonl is ahead of the checkpoint");
        for file in ["model.safetensors", "model.onnx"] {
            if killed.join(file).exists() {
                assert!(same_contents(&killed.join(file), &whole.join(file)), "after a kill at {point}: {file} is not the final one");
            }
        }
    }
    let stderr = run_to_end(command(&killed));
    assert!(stderr.contains("resuming"), "{stderr}");
    assert_eq!(metrics_without_times(&killed), expected);
    for file in ["model.safetensors", "model.onnx", "config.toml"] {
        assert!(same_contents(&killed.join(file), &whole.join(file)), "{file} differs");
    }
    assert_eq!(temp_files(&killed), Vec::<String>::new(), "temporary files of killed writes are cleaned up");
    let _ = std::fs::remove_dir_all(&dir);
}
