//! `ironbound convert` as a user meets it: a real torch checkpoint becomes an ONNX or native
//! model with PyTorch's logits; bad input is exit code 2, one line, and no output file.

use ironbound::tensor::{default_device, from_vec, to_vec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ironbound/tests/fixtures/torch").join(name).to_string_lossy().into_owned()
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-convert-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn convert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironbound")).arg("convert").args(args).output().expect("run ironbound")
}

/// Exit code 2, one stderr line mentioning `needle`, and nothing at all written to `dir`.
fn assert_rejected(out: &Output, needle: &str, dir: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "no output left behind in {}", dir.display());
}

fn expected_logits(name: &str) -> Vec<f32> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    v["logits"][name].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32)).collect()
}

#[test]
fn converts_a_checkpoint_to_onnx_and_native_with_pytorch_logits() {
    let d = workdir("ok");
    let want = expected_logits("crown_ibp_e_half");
    for (out, extra) in [("m.onnx", vec![]), ("m.safetensors", vec!["--dataset", "mnist"])] {
        let path = d.join(out);
        let mut args = vec!["--checkpoint", &fixture("crown_ibp_e_half.pt")[..], "--arch", "crown-ibp-e", "--out", path.to_str().unwrap()]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = convert(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let net = ironbound::io::load_model(&path, &default_device()).unwrap();
        let x: Vec<f32> = (0..2 * 784).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let got = to_vec(net.forward(from_vec(x, [2, 1, 28, 28], &default_device())));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{out}: {got:?} vs {want:?}");
        }
    }
    let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "only the two models: {names:?}");
}

#[test]
fn normalize_flag_prepends_a_normalisation() {
    let d = workdir("norm");
    let out = d.join("m.safetensors");
    let o = convert(&["--checkpoint", &fixture("crown_ibp_e_half.pt"), "--arch", "crown-ibp-e", "--normalize", "0.1307", "0.3081", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let net = ironbound::io::load_model(&out, &default_device()).unwrap();
    assert_eq!(net.nodes()[0].op.kind(), "normalize");
}

#[test]
fn not_a_checkpoint() {
    let d = workdir("notorch");
    let src = std::env::temp_dir().join(format!("ironbound-convert-{}-hello.pt", std::process::id()));
    std::fs::write(&src, "hello, world\n").unwrap();
    let o = convert(&["--checkpoint", src.to_str().unwrap(), "--arch", "conv", "--out", d.join("m.onnx").to_str().unwrap()]);
    assert_rejected(&o, "not a PyTorch checkpoint (no zip archive and no pickle magic)", &d);
}

#[test]
fn truncated_checkpoints() {
    let d = workdir("trunc");
    for name in ["tiny_legacy.pt", "crown_ibp_e_half.pt"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let src = std::env::temp_dir().join(format!("ironbound-convert-{}-cut-{name}", std::process::id()));
        std::fs::write(&src, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let o = convert(&["--checkpoint", src.to_str().unwrap(), "--arch", "crown-ibp-e", "--out", d.join("m.onnx").to_str().unwrap()]);
        assert_rejected(&o, "truncated", &d);
    }
}

#[test]
fn wrong_architecture() {
    let d = workdir("arch");
    let o = convert(&["--checkpoint", &fixture("crown_ibp_e_half.pt"), "--arch", "crown-ibp-f", "--out", d.join("m.onnx").to_str().unwrap()]);
    assert_rejected(&o, "does not fit arch crown-ibp-f: mis-shaped 0.weight (checkpoint [4,1,5,5], arch [8,1,5,5])", &d);
    let o = convert(&["--checkpoint", &fixture("crown_ibp_e_half.pt"), "--arch", "nonesuch", "--out", d.join("m.onnx").to_str().unwrap()]);
    assert_rejected(&o, "unknown architecture 'nonesuch'", &d);
}

#[test]
fn bad_flags() {
    let d = workdir("flags");
    let ckpt = fixture("crown_ibp_e_half.pt");
    let out = d.join("m.onnx");
    let o = convert(&["--checkpoint", &ckpt, "--arch", "crown-ibp-e", "--normalize", "0.1,x", "0.3", "--out", out.to_str().unwrap()]);
    assert_rejected(&o, "--normalize: MEAN '0.1,x'", &d);
    let o = convert(&["--checkpoint", &ckpt, "--arch", "crown-ibp-e", "--normalize", "0.1,0.2", "0.3,0.4", "--out", out.to_str().unwrap()]);
    assert_rejected(&o, "2 mean and 2 std values but the input has 1 channel", &d);
    let o = convert(&["--checkpoint", &ckpt, "--arch", "crown-ibp-e", "--out", d.join("m.txt").to_str().unwrap()]);
    assert_rejected(&o, "expected a .onnx or .safetensors file", &d);
}
