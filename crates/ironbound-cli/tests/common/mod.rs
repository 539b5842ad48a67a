//! Helpers of the `ironbound train` fault tests (train_kill.rs, train_faults.rs): small
//! synthetic IDX data found through `--data-dir`, the training command, and its files.
#![allow(dead_code)] // each test crate uses some of these

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A fresh, empty directory for one test.
pub fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-train-{}-{name}", std::process::id()));
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

/// A Fashion-MNIST look-alike with `train` and `test` images under `dir/data`; returns the
/// `--data-dir`.
pub fn dataset(dir: &Path, train: usize, test: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("fashion-mnist")).unwrap();
    write_idx(&data.join("fashion-mnist"), "train", train, 1);
    write_idx(&data.join("fashion-mnist"), "t10k", test, 2);
    data
}

/// `ironbound train` of fc-small with CROWN-IBP in batches of 50 (stderr piped).
pub fn train_command(data: &Path, out: &Path, epochs: usize, eval_n: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironbound"));
    c.args(["train", "--dataset", "fashion-mnist", "--arch", "fc-small", "--method", "crown-ibp", "--eps", "0.1"])
        .args(["--epochs", &epochs.to_string(), "--seed", "7", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--set", "warmup_epochs=0", "--set", "rampup_epochs=2", "--set", "batch_size=50"])
        .args(["--set", "lr=1e-3", "--set", &format!("eval_n={eval_n}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// metrics.jsonl as JSON values (none when missing).
pub fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// metrics.jsonl without the timings, which differ from run to run.
pub fn metrics_without_times(out: &Path) -> Vec<serde_json::Value> {
    let mut all = metrics(out);
    for m in &mut all {
        let o = m.as_object_mut().unwrap();
        o.remove("seconds");
        o.remove("train_seconds");
    }
    all
}

pub fn run_to_end(mut command: Command) -> String {
    let o = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// The epoch of the checkpoint in `out` (0 when there is none), loading it in full: it must
/// always be a valid checkpoint.
pub fn checkpoint_epoch(out: &Path) -> usize {
    let path = out.join(ironbound::train::checkpoint::FILE_NAME);
    if !path.exists() {
        return 0;
    }
    match ironbound::train::checkpoint::load(&path, &ironbound::tensor::default_device()) {
        Ok(c) => c.meta.epoch,
        Err(e) => panic!("the checkpoint does not load: {e}"),
    }
}

/// Temporary files of atomic writes left in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(".tmp"))
        .collect()
}

/// The error lines (`ironbound: ...`) of a failed run's stderr; asserts there is exactly one
/// and that it is the last line, and returns it.
pub fn one_error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ironbound:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "the error is not the last line:\n{stderr}");
    errors[0].to_string()
}

/// Whether two output files hold the same thing: the same bytes, except that a safetensors
/// header (whose metadata map is written in no fixed order) is compared as JSON.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let split = |bytes: &[u8]| -> Option<(serde_json::Value, Vec<u8>)> {
        let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
        let header = serde_json::from_slice(bytes.get(8..8 + len)?).ok()?;
        Some((header, bytes[8 + len..].to_vec()))
    };
    match (split(&a), split(&b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
