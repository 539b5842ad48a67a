//! The command line as a user meets it: bad input gives one line on stderr naming the
//! problem, exit code 2, no panic and no output file; good input writes what CONTRACT.md says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ironbound"))
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run ironbound")
}

/// Exit code 2, a single stderr line that mentions `needle`, no panic message.
fn assert_bad_input(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// A small model and inputs for it: conv-small on 1x28x28 and 3 random rows.
fn fixture(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("m.safetensors");
    let out = run(&["init", "--arch", "conv-small", "--seed", "3", "--out", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x = dir.join("x.npy");
    let data: Vec<f32> = (0..3 * 784).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    ironbound::io::npy::write_npy(&x, &[3, 1, 28, 28], &data).unwrap();
    let y = dir.join("y.npy");
    ironbound::io::npy::write_npy(&y, &[3], &[1.0, 7.0, 3.0]).unwrap();
    (model, x, y)
}

#[test]
fn bounds_writes_lower_upper_and_margins() {
    let d = workdir("ok");
    let (m, x, y) = fixture(&d);
    let b = d.join("b.npz");
    let out = run(&["bounds", "--model", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--labels", y.to_str().unwrap(), "--eps", "0.05", "--clip", "0", "1", "--method", "crown", "--out", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lower = ironbound::io::npy::read_f32(&b, &["lower"]).unwrap();
    let upper = ironbound::io::npy::read_f32(&b, &["upper"]).unwrap();
    let margin = ironbound::io::npy::read_f32(&b, &["margin_lower"]).unwrap();
    assert_eq!(lower.shape, vec![3, 10]);
    assert_eq!(margin.shape, vec![3, 10]);
    assert!(lower.data.iter().zip(&upper.data).all(|(l, u)| l <= u));
    for (i, label) in [1usize, 7, 3].iter().enumerate() {
        assert_eq!(margin.data[i * 10 + label], 0.0, "label column is 0");
        for j in 0..10 {
            // Folded margins are never looser than lower[y] - upper[j].
            let naive = lower.data[i * 10 + label] - upper.data[i * 10 + j];
            assert!(margin.data[i * 10 + j] >= naive - 1e-4);
        }
    }
}

#[test]
fn bad_inputs_exit_2_and_write_nothing() {
    let d = workdir("bad");
    let (m, x, y) = fixture(&d);
    let b = d.join("b.npz");
    let (m, x, y, bs) = (m.to_str().unwrap(), x.to_str().unwrap(), y.to_str().unwrap(), b.to_str().unwrap());
    let bounds = |model: &str, input: &str, eps: &str, method: &str| {
        run(&["bounds", "--model", model, "--input", input, "--eps", eps, "--method", method, "--out", bs])
    };
    assert_bad_input(&bounds(m, x, "0.1", "nonsense"), "unknown method 'nonsense'");
    assert_bad_input(&bounds(m, x, "-0.1", "ibp"), "eps");
    assert_bad_input(&bounds(m, x, "nan", "ibp"), "eps");

    // Truncated and corrupt models.
    let bytes = std::fs::read(m).unwrap();
    let trunc = d.join("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    assert_bad_input(&bounds(trunc.to_str().unwrap(), x, "0.1", "ibp"), "trunc.safetensors");
    let onnx = d.join("garbage.onnx");
    std::fs::write(&onnx, b"\x08\x07\x12\x04junk\xff\xff\xff").unwrap();
    assert_bad_input(&bounds(onnx.to_str().unwrap(), x, "0.1", "ibp"), "garbage.onnx");
    let missing = d.join("missing.onnx");
    assert_bad_input(&bounds(missing.to_str().unwrap(), x, "0.1", "ibp"), "missing.onnx");

    // Wrong input shape and NaN input.
    let wrong = d.join("wrong.npy");
    ironbound::io::npy::write_npy(&wrong, &[2, 10], &[0.5; 20]).unwrap();
    assert_bad_input(&bounds(m, wrong.to_str().unwrap(), "0.1", "ibp"), "wrong.npy");
    let nan = d.join("nan.npy");
    let mut v = vec![0.5f32; 784];
    v[17] = f32::NAN;
    ironbound::io::npy::write_npy(&nan, &[1, 1, 28, 28], &v).unwrap();
    assert_bad_input(&bounds(m, nan.to_str().unwrap(), "0.1", "ibp"), "NaN");

    // Labels out of range.
    let bad_y = d.join("bad_y.npy");
    ironbound::io::npy::write_npy(&bad_y, &[3], &[1.0, 12.0, 3.0]).unwrap();
    let out = run(&["bounds", "--model", m, "--input", x, "--labels", bad_y.to_str().unwrap(), "--eps", "0.1", "--method", "ibp", "--out", bs]);
    assert_bad_input(&out, "label 12");
    let _ = y;
    assert!(!b.exists(), "no output file after errors");
    let leftovers: Vec<_> = std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n.to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn certify_rejects_bad_dataset_and_missing_data() {
    let d = workdir("cert");
    let (m, _, _) = fixture(&d);
    let r = d.join("r.json");
    let out = run(&["certify", "--model", m.to_str().unwrap(), "--dataset", "imagenet", "--eps", "0.1", "--method", "ibp", "--out", r.to_str().unwrap()]);
    assert_bad_input(&out, "imagenet");
    // MNIST train is not on these machines: no download possible from an unreachable mirror.
    let out = bin()
        .args(["certify", "--model", m.to_str().unwrap(), "--dataset", "mnist", "--split", "train", "--eps", "0.1", "--method", "ibp", "--data-dir", d.to_str().unwrap(), "--out", r.to_str().unwrap()])
        .env("IRONBOUND_DATA", &d)
        .env("IRONBOUND_MIRROR", format!("file://{}/nowhere", d.display()))
        .env("XDG_CACHE_HOME", &d)
        .env("HOME", &d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!r.exists());
}

#[test]
fn certify_reports_contract_keys_on_mnist_test() {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !mnist.join("mnist").exists() {
        eprintln!("skipping: ../shared/data/mnist not present");
        return;
    }
    let d = workdir("mnist");
    let (m, _, _) = fixture(&d);
    let r = d.join("r.json");
    let out = run(&["certify", "--model", m.to_str().unwrap(), "--dataset", "mnist", "--eps", "0.01", "--method", "ibp,crown", "--n", "20", "--pgd", "5", "--data-dir", mnist.to_str().unwrap(), "--out", r.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    assert_eq!(v["n"], 20);
    assert_eq!(v["eps"], 0.01);
    let clean = v["clean_accuracy"].as_f64().unwrap();
    let pgd = v["pgd_accuracy"].as_f64().unwrap();
    for m in ["ibp", "crown"] {
        let c = v["certified_accuracy"][m].as_f64().unwrap();
        assert!(c <= pgd + 1e-12 && pgd <= clean + 1e-12, "{m}: certified {c} <= pgd {pgd} <= clean {clean}");
    }
}
