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

// ------------------------------------------------------------------ hostile files (fuzzing review)

/// A `.npy` file of format `version` (1 or 2): the header text padded as NumPy pads it
/// (spaces, a newline, total a multiple of 64), then `data`.
fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    let prefix = if version == 1 { 10 } else { 12 };
    while (prefix + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    match version {
        1 => out.extend((h.len() as u16).to_le_bytes()),
        _ => out.extend((h.len() as u32).to_le_bytes()),
    }
    out.extend(h);
    out.extend(data);
    out
}

/// `bounds` with `model` and `input` fails with exit 2, one line naming `needle`, and leaves
/// no output (nor a temporary file) in `dir`.
fn assert_bounds_rejects(dir: &Path, model: &Path, input: &Path, method: &str, needle: &str) {
    let b = dir.join("rejected.npz");
    let out = run(&["bounds", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap(), "--eps", "0.1", "--method", method, "--out", b.to_str().unwrap()]);
    assert_bad_input(&out, needle);
    assert!(!b.exists(), "no output file after an error");
    let tmp: Vec<_> = std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n.to_string_lossy().contains(".tmp")).collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn npy_shape_product_overflow_is_bad_input() {
    let d = workdir("npy-overflow");
    let (m, _, _) = fixture(&d);
    // 2^32 * 2^32 * 784 wraps to 0 in 64 bits, which matched the empty data.
    let big = 1u64 << 32;
    let x = write(&d, "overflow.npy", &npy_bytes(1, &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({big}, {big}, 1, 28, 28), }}"), &[]));
    assert_bounds_rejects(&d, &m, &x, "ibp", "overflow.npy");
    // A zero dimension makes the product 0 honestly; the row count times 784 must not wrap.
    let x = write(&d, "zero.npy", &npy_bytes(1, &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 0), }}", u64::MAX / 2), &[]));
    assert_bounds_rejects(&d, &m, &x, "ibp", "zero.npy");
}

#[test]
fn npy_nested_brace_header_is_rejected_at_once() {
    let d = workdir("npy-braces");
    let (m, _, _) = fixture(&d);
    // The review's 112-byte header: npyz's parser takes time exponential in the depth.
    let header = format!("{{'descr': {}", "{".repeat(100));
    let x = write(&d, "braces.npy", &npy_bytes(1, &header, &[]));
    assert_bounds_rejects(&d, &m, &x, "ibp", "braces.npy");
}

#[test]
fn npy_huge_header_length_and_element_claims_are_rejected() {
    let d = workdir("npy-claims");
    let (m, _, _) = fixture(&d);
    // Version 2, header length 0xfffffff0: used to allocate 4 GiB before failing.
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend(0xffff_fff0u32.to_le_bytes());
    b.extend(b"{'descr': '<f4'");
    let x = write(&d, "hugeheader.npy", &b);
    assert_bounds_rejects(&d, &m, &x, "ibp", "header length");
    // 10^12 elements claimed, 784 * 4 bytes present.
    let x = write(&d, "claims.npy", &npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", &[0; 3136]));
    assert_bounds_rejects(&d, &m, &x, "ibp", "claims.npy");
}

/// The native model at `src` written to `dst` with its architecture JSON edited by `f`
/// (a safetensors file: u64 header length, JSON header with `__metadata__`, data).
fn patch_arch(src: &Path, dst: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let b = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let mut arch: serde_json::Value = serde_json::from_str(header["__metadata__"]["ironbound.architecture"].as_str().unwrap()).unwrap();
    f(&mut arch);
    header["__metadata__"]["ironbound.architecture"] = serde_json::Value::String(arch.to_string());
    let mut h = serde_json::to_vec(&header).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&b[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

#[test]
fn native_conv_with_stride_zero_or_absurd_padding_is_bad_input() {
    let d = workdir("native-conv");
    let (m, x, _) = fixture(&d);
    let conv = |arch: &mut serde_json::Value| -> serde_json::Value {
        arch["nodes"].as_array().unwrap().iter().find(|n| n["op"] == "conv2d").unwrap().clone()
    };
    let edit = |name: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let p = d.join(name);
        patch_arch(&m, &p, |arch| {
            let first = conv(arch);
            let node = arch["nodes"].as_array_mut().unwrap().iter_mut().find(|n| **n == first).unwrap();
            f(node);
        });
        p
    };
    let stride0 = edit("stride0.safetensors", &|n| n["stride"] = serde_json::json!([0, 0]));
    assert_bounds_rejects(&d, &stride0, &x, "ibp", "stride0.safetensors");
    let pad = edit("pad.safetensors", &|n| n["padding"] = serde_json::json!([1u64 << 40, 1u64 << 40]));
    assert_bounds_rejects(&d, &pad, &x, "ibp", "pad.safetensors");
    // A field this version does not know would change the network if it were ignored.
    let dil = edit("dilation.safetensors", &|n| n["dilation"] = serde_json::json!([2, 2]));
    assert_bounds_rejects(&d, &dil, &x, "ibp", "dilation");
    let pool = edit("pool.safetensors", &|n| *n = serde_json::json!({"name": n["name"], "op": "avg_pool2d", "kernel": [0, 0], "stride": [1, 1], "padding": [0, 0], "inputs": n["inputs"]}));
    assert_bounds_rejects(&d, &pool, &x, "ibp", "pool.safetensors");
}

/// x -> fc1 -> relu, a branch that reaches nothing; x -> fc2 -> (relu ->) fc3, the output.
fn dangling_relu_net(live_relu: bool) -> ironbound::net::Network {
    use ironbound::net::{NetSpec, NodeSpec, OpSpec};
    let node = |name: &str, op, inputs: Vec<usize>| NodeSpec { name: name.into(), op, inputs };
    let fc = |i, o| OpSpec::Linear { in_features: i, out_features: o };
    let mut nodes = vec![node("fc1", fc(4, 6), vec![0]), node("dead", OpSpec::Relu, vec![1]), node("fc2", fc(4, 5), vec![0])];
    if live_relu {
        nodes.push(node("relu", OpSpec::Relu, vec![3]));
    }
    let last = nodes.len();
    nodes.push(node("fc3", fc(5, 3), vec![last]));
    NetSpec { input_shape: [4, 1, 1], nodes }.init(5, &ironbound::tensor::default_device()).unwrap()
}

#[test]
fn alpha_crown_on_a_relu_branch_that_misses_the_output() {
    let d = workdir("alpha-dangling");
    let x = d.join("x.npy");
    ironbound::io::npy::write_npy(&x, &[2, 4], &[0.1, 0.5, -0.3, 0.9, 0.0, -1.0, 0.4, 0.2]).unwrap();
    for live in [false, true] {
        let m = d.join(format!("dangling-{live}.safetensors"));
        ironbound::io::save_model(&dangling_relu_net(live), &m).unwrap();
        let bounds = |method: &str| {
            let b = d.join(format!("b-{live}-{method}.npz"));
            let out = run(&["bounds", "--model", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--eps", "0.2", "--method", method, "--out", b.to_str().unwrap()]);
            assert!(out.status.success(), "{method}, live relu {live}: {}", String::from_utf8_lossy(&out.stderr));
            (ironbound::io::npy::read_f32(&b, &["lower"]).unwrap().data, ironbound::io::npy::read_f32(&b, &["upper"]).unwrap().data)
        };
        let (lo, hi) = bounds("alpha-crown");
        let (crown_lo, crown_hi) = bounds("crown");
        for i in 0..lo.len() {
            assert!(lo[i] <= hi[i] && lo[i] >= crown_lo[i] - 1e-5 && hi[i] <= crown_hi[i] + 1e-5, "never looser than crown: {lo:?} {hi:?} vs {crown_lo:?} {crown_hi:?}");
        }
    }
}

/// `net` with every weight and bias replaced by `value`.
fn filled(net: &ironbound::net::Network, value: f32) -> ironbound::net::Network {
    net.map_params(&mut |_, p| p.map(|t| t.ones_like() * value as f64, |t| t.ones_like() * value as f64, |t| t.ones_like() * value as f64))
}

#[test]
fn non_finite_weights_are_rejected_when_a_model_is_loaded() {
    let d = workdir("nan-weights");
    let (m, x, _) = fixture(&d);
    let net = ironbound::io::load_model(&m, &ironbound::tensor::default_device()).unwrap();
    for (value, name) in [(f32::NAN, "nan"), (f32::INFINITY, "inf"), (3e35, "huge")] {
        for ext in ["safetensors", "onnx"] {
            let p = d.join(format!("{name}.{ext}"));
            ironbound::io::save_model(&filled(&net, value), &p).unwrap();
            assert_bounds_rejects(&d, &p, &x, "ibp", &format!("{name}.{ext}"));
        }
    }
}

#[test]
fn overflowing_bounds_and_non_finite_clip_are_errors_not_nan() {
    let d = workdir("overflow-bounds");
    let (m, x, _) = fixture(&d);
    // Weights of 1e25 pass the load check (1e30) but overflow float32 in the second layer.
    let net = ironbound::io::load_model(&m, &ironbound::tensor::default_device()).unwrap();
    let big = d.join("big.safetensors");
    ironbound::io::save_model(&filled(&net, 1e25), &big).unwrap();
    for method in ["ibp", "crown"] {
        assert_bounds_rejects(&d, &big, &x, method, "overflowed");
    }
    let b = d.join("b.npz");
    for clip in [["nan", "1"], ["0", "inf"]] {
        let out = run(&["bounds", "--model", m.to_str().unwrap(), "--input", x.to_str().unwrap(), "--eps", "0.1", "--clip", clip[0], clip[1], "--method", "ibp", "--out", b.to_str().unwrap()]);
        assert_bad_input(&out, "--clip");
    }
    assert!(!b.exists());
}

#[test]
fn usage_errors_are_one_line_and_help_still_works() {
    for args in [&["bounds", "--nonsense"][..], &["no-such-command"], &["bounds", "--eps", "abc"], &[]] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("ironbound: ") && err.trim_end().ends_with("(see --help)") && !err.contains("error: "), "{args:?}: {err}");
    }
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).lines().count() > 5, "full help text");
    let help = run(&["bounds", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--eps"));
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("ironbound "));
}

#[test]
fn dataset_not_found_is_one_line() {
    let d = workdir("no-dataset");
    let (m, _, _) = fixture(&d);
    let r = d.join("r.json");
    let out = bin()
        .args(["certify", "--model", m.to_str().unwrap(), "--dataset", "mnist", "--split", "train", "--eps", "0.1", "--method", "ibp", "--data-dir", d.to_str().unwrap(), "--out", r.to_str().unwrap()])
        .env("IRONBOUND_DATA", &d)
        .env("IRONBOUND_MIRROR", format!("file://{}/nowhere", d.display()))
        .env("XDG_CACHE_HOME", &d)
        .env("HOME", &d)
        .output()
        .unwrap();
    // The message lists every place searched and every way to fix it, on one line.
    assert_bad_input(&out, "mnist");
    assert!(!r.exists());
}

#[test]
fn certify_never_counts_an_overflowed_margin_as_certified() {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !mnist.join("mnist").exists() {
        eprintln!("skipping: ../shared/data/mnist not present");
        return;
    }
    let d = workdir("cert-overflow");
    let (m, _, _) = fixture(&d);
    let net = ironbound::io::load_model(&m, &ironbound::tensor::default_device()).unwrap();
    // Random weights times 1e25: every bound overflows float32 to inf or NaN.
    let big = net.map_params(&mut |_, p| p.map(|t| t * 1e25, |t| t * 1e25, |t| t * 1e25));
    let bm = d.join("big.safetensors");
    ironbound::io::save_model(&big, &bm).unwrap();
    let r = d.join("r.json");
    let out = run(&["certify", "--model", bm.to_str().unwrap(), "--dataset", "mnist", "--eps", "0.01", "--method", "ibp,crown,alpha-crown", "--n", "10", "--data-dir", mnist.to_str().unwrap(), "--out", r.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    for m in ["ibp", "crown", "alpha-crown"] {
        assert_eq!(v["certified_accuracy"][m].as_f64(), Some(0.0), "{m}: a NaN margin is not > 0: {v}");
    }
}

/// The training methods' bad keys in a config file: one line naming the key and the file,
/// exit 2, before any training (no output directory).
#[test]
fn bad_training_method_keys_in_a_config_file_are_one_line_errors() {
    let dir = workdir("method-keys");
    let cases = [
        ("deepz", "reg_d_weight = -1.0", "reg_d_weight"),
        ("colt", "colt_layers = [0, 5]", "colt_layers"),
        ("one-step", "slope_p = 1.5\nslope_q = 0.5", "slope_p"),
        ("random-slope", "slope_q = -0.5\nslope_p = 0.5", "slope_q"),
        ("crown", "slope_steps = 3", "slope_steps"),
        ("ibp", "colt_pgd_steps = 3", "colt_pgd_steps"),
    ];
    for (i, (method, keys, needle)) in cases.iter().enumerate() {
        let config = dir.join(format!("c{i}.toml"));
        let text = format!("dataset = \"fashion-mnist\"\narch = \"fc-small\"\nmethod = \"{method}\"\neps = 0.1\nepochs = 2\n{keys}\n");
        std::fs::write(&config, text).unwrap();
        let out_dir = dir.join(format!("run{i}"));
        let out = run(&["train", "--config", config.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
        assert_bad_input(&out, &format!("`{needle}`"));
        assert!(String::from_utf8_lossy(&out.stderr).contains(config.to_str().unwrap()), "{method}: the file is not named");
        assert!(!out_dir.exists(), "{method}: {} was created", out_dir.display());
    }
}
