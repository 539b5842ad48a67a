//! Float-sound certificates through the CLI: `certify` is sound by default and says so in
//! report.json, `--fast` opts out; `bounds --sound` encloses the plain float32 bounds, closely,
//! for the bound engines and the LPs alike.

use std::path::{Path, PathBuf};
use std::process::Output;

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-cli-sound-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ironbound")).args(args).output().expect("run ironbound")
}

fn ok(out: Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

fn model(dir: &Path) -> String {
    let m = dir.join("m.safetensors");
    ok(run(&["init", "--arch", "fc-small", "--seed", "11", "--out", m.to_str().unwrap()]), "init");
    m.to_str().unwrap().to_string()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn certify_is_sound_by_default_and_fast_says_it_is_not() {
    let d = workdir("certify");
    let m = model(&d);
    let (sound, fast, lp) = (d.join("sound.json"), d.join("fast.json"), d.join("lp.json"));
    let common = ["certify", "--model", &m, "--dataset", "fashion-mnist", "--eps", "0.002", "--n", "30"];
    let with = |extra: &[&str], out: &Path| {
        let mut args = common.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        ok(run(&args), "certify");
        report(out)
    };
    let s = with(&["--method", "ibp,crown,deepz"], &sound);
    let f = with(&["--method", "ibp,crown,deepz", "--fast"], &fast);
    assert_eq!(s["sound"], serde_json::json!(true));
    assert_eq!(f["sound"], serde_json::json!(false));
    for method in ["ibp", "crown", "deepz"] {
        let (a, b) = (s["certified_accuracy"][method].as_f64().unwrap(), f["certified_accuracy"][method].as_f64().unwrap());
        // Sound bounds are looser by ~1e-6 relative: at most a sample or two may flip.
        assert!(a <= b && b - a <= 2.0 / 30.0, "{method}: sound {a} vs fast {b}");
    }
    assert!(s["certified_accuracy"]["crown"].as_f64().unwrap() > 0.0, "the radius is small enough to certify something");
    // The LP and MILP methods are float-sound too (dual certificates, the phase search).
    let l = with(&["--method", "crown,lp-triangle,milp"], &lp);
    assert_eq!(l["sound"], serde_json::json!(true));
    for method in ["lp-triangle", "milp"] {
        let (a, c) = (l["certified_accuracy"][method].as_f64().unwrap(), l["certified_accuracy"]["crown"].as_f64().unwrap());
        assert!(a >= c, "{method} {a} certifies less than crown {c}");
    }
}

#[test]
fn bounds_sound_is_the_float32_bounds_up_to_rounding() {
    let d = workdir("bounds");
    let m = model(&d);
    let x = d.join("x.npy");
    let data: Vec<f32> = (0..4 * 784).map(|i| ((i * 31) % 101) as f32 / 100.0).collect();
    ironbound::io::npy::write_npy(&x, &[4, 784], &data).unwrap();
    let read = |name: &str, method: &str, extra: &[&str]| {
        let b = d.join(format!("{name}.npz"));
        let mut args = vec!["bounds", "--model", &m, "--input", x.to_str().unwrap(), "--eps", "0.005", "--clip", "0", "1", "--method", method, "--out", b.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(run(&args), name);
        let get = |k: &str| ironbound::io::npy::read_f32(&b, &[k]).unwrap().data;
        (get("lower"), get("upper"))
    };
    let (lo, hi) = read("plain", "crown", &[]);
    let (slo, shi) = read("sound", "crown", &["--sound"]);
    // Sound mode computes in float64, so it differs from plain float32 by float32's own
    // rounding (either way), not by its error terms: at most 1e-5 of the largest bound.
    let scale = lo.iter().chain(&hi).fold(1.0f32, |m, v| m.max(v.abs()));
    for i in 0..lo.len() {
        assert!((lo[i] - slo[i]).abs() <= 1e-5 * scale && (shi[i] - hi[i]).abs() <= 1e-5 * scale, "entry {i}: sound [{}, {}] vs plain [{}, {}]", slo[i], shi[i], lo[i], hi[i]);
    }

    // The LPs too: sound Triangle bounds are the plain ones up to rounding, and at least as
    // tight as sound CROWN's (seeded by it, certified by the LP duals).
    let (llo, lhi) = read("lp-plain", "lp-triangle", &[]);
    let (sllo, slhi) = read("lp-sound", "lp-triangle", &["--sound"]);
    for i in 0..lo.len() {
        assert!((llo[i] - sllo[i]).abs() <= 1e-5 * scale && (slhi[i] - lhi[i]).abs() <= 1e-5 * scale, "entry {i}: sound LP [{}, {}] vs plain [{}, {}]", sllo[i], slhi[i], llo[i], lhi[i]);
        assert!(sllo[i] >= slo[i] - 1e-6 * scale && slhi[i] <= shi[i] + 1e-6 * scale, "entry {i}: sound LP [{}, {}] looser than sound CROWN [{}, {}]", sllo[i], slhi[i], slo[i], shi[i]);
    }
}
