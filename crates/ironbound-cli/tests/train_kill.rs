//! `ironbound train` killed with SIGKILL in the middle of an epoch and restarted with the same
//! command ends with the same metrics as an uninterrupted run (CONTRACT.md, `ironbound train`).
//! The data are small synthetic IDX files written here, found through `--data-dir`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-kill-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Uncompressed IDX files of `n` 28x28 images whose class is written into the picture (a
/// bright band at a class-dependent row) plus noise, so training has something to learn.
fn write_idx(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = (next() % 10) as u8;
        labels.push(label);
        for r in 0..28 {
            for _ in 0..28 {
                let band = r / 3 == label as usize;
                images.push(if band { 200 + (next() % 56) as u8 } else { (next() % 60) as u8 });
            }
        }
    }
    let mut f = std::fs::File::create(dir.join(format!("{prefix}-images-idx3-ubyte"))).unwrap();
    f.write_all(&[0, 0, 8, 3]).unwrap();
    for d in [n as u32, 28, 28] {
        f.write_all(&d.to_be_bytes()).unwrap();
    }
    f.write_all(&images).unwrap();
    let mut f = std::fs::File::create(dir.join(format!("{prefix}-labels-idx1-ubyte"))).unwrap();
    f.write_all(&[0, 0, 8, 1]).unwrap();
    f.write_all(&(n as u32).to_be_bytes()).unwrap();
    f.write_all(&labels).unwrap();
}

fn train_command(data: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironbound"));
    c.args(["train", "--dataset", "fashion-mnist", "--arch", "fc-small", "--method", "crown-ibp", "--eps", "0.1"])
        .args(["--epochs", "3", "--seed", "7", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--set", "warmup_epochs=0", "--set", "rampup_epochs=2", "--set", "batch_size=50"])
        .args(["--set", "lr=1e-3", "--set", "eval_n=200"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_to_end(data: &Path, out: &Path) {
    let o = train_command(data, out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sigkill_mid_epoch_then_same_command_equals_uninterrupted_run() {
    let dir = workdir("run");
    let data = dir.join("data/fashion-mnist");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train", 3000, 1);
    write_idx(&data, "t10k", 200, 2);
    let data = dir.join("data");

    let whole = dir.join("whole");
    run_to_end(&data, &whole);
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

    run_to_end(&data, &killed);
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
