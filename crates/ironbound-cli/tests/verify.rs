//! `ironbound verify` as a user runs it: answers on a hand-checkable network (each stage of the
//! pipeline deciding once), the result files, a benchmark directory, and bad input.

use ironbound::net::arch::{sequential, L};
use ironbound::net::init::SplitMix64;
use ironbound::net::{NetSpec, Network, NodeSpec, OpSpec};
use ironbound::tensor::{default_device, from_vec, to_vec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-verify-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironbound")).args(args).output().expect("run ironbound")
}

/// h = [[1, 1], [1, -1]] x + [1, 0], out = [[1, 1], [1, -1]] relu(h) on x in [-1, 1]^2:
/// out1 ranges over [0, 3], out2 over [-1, 3] (minimum at x = (1, -1)); CROWN, DeepZ and even
/// alpha-CROWN / the Triangle LP only prove out2 >= -1.5.
fn network_a(dir: &Path) -> PathBuf {
    let spec = NetSpec {
        input_shape: [2, 1, 1],
        nodes: vec![
            NodeSpec { name: "0".into(), op: OpSpec::Linear { in_features: 2, out_features: 2 }, inputs: vec![0] },
            NodeSpec { name: "1".into(), op: OpSpec::Relu, inputs: vec![1] },
            NodeSpec { name: "2".into(), op: OpSpec::Linear { in_features: 2, out_features: 2 }, inputs: vec![2] },
        ],
    };
    let net = spec
        .build(&default_device(), &mut |name, _| {
            Ok(match name {
                "0.weight" | "2.weight" => vec![1.0, 1.0, 1.0, -1.0],
                "0.bias" => vec![1.0, 0.0],
                _ => vec![0.0, 0.0],
            })
        })
        .unwrap();
    let path = dir.join("a.onnx");
    ironbound::io::save_model(&net, &path).unwrap();
    path
}

fn property(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const BOX: &str = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n\
(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n";

fn verify(model: &Path, prop: &Path, extra: &[&str]) -> (String, Output) {
    let mut args = vec!["verify", "--model", model.to_str().unwrap(), "--property", prop.to_str().unwrap(), "--timeout", "60"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let answer = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    (answer, out)
}

#[test]
fn answers_on_a_hand_checked_network_and_result_files() {
    let d = workdir("answers");
    let m = network_a(&d);
    // out1 >= 0 > -0.5 everywhere: IBP proves it.
    let p = property(&d, "unsat_bounds.vnnlib", &format!("{BOX}(assert (<= Y_0 -0.5))\n"));
    let json = d.join("r.json");
    let res = d.join("r.txt");
    let (a, out) = verify(&m, &p, &["--out", json.to_str().unwrap(), "--vnncomp-result", res.to_str().unwrap()]);
    assert_eq!(a, "unsat", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&res).unwrap(), "unsat\n");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["result"], "unsat");
    assert_eq!(v["stage"], "bounds");
    assert!(v.get("counterexample").is_none());

    // out2 reaches -1 only near x = (1, -1): the falsifier finds it, and the counterexample
    // lies in the box and satisfies the property.
    let p = property(&d, "sat.vnnlib", &format!("{BOX}(assert (<= Y_1 -0.95))\n"));
    let (a, out) = verify(&m, &p, &["--out", json.to_str().unwrap(), "--vnncomp-result", res.to_str().unwrap()]);
    assert_eq!(a, "sat", "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let x: Vec<f64> = v["counterexample"]["x"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    let y: Vec<f64> = v["counterexample"]["y"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)), "{x:?}");
    let h = [(x[0] + x[1] + 1.0).max(0.0), (x[0] - x[1]).max(0.0)];
    assert!((y[1] - (h[0] - h[1])).abs() < 1e-5 && y[1] <= -0.95, "{x:?} {y:?}");
    let text = std::fs::read_to_string(&res).unwrap();
    assert!(text.starts_with("sat\n((X_0 ") && text.contains("(Y_1 ") && text.trim_end().ends_with("))"), "{text}");

    // -1.2 < -1 = min out2, but every relaxation stops at -1.5: only the complete search
    // (input branch and bound) proves it.
    let p = property(&d, "unsat_bab.vnnlib", &format!("{BOX}(assert (<= Y_1 -1.2))\n"));
    let (a, out) = verify(&m, &p, &["--out", json.to_str().unwrap()]);
    assert_eq!(a, "unsat", "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["stage"], "bab");

    // Two boxes in one file: the second holds the counterexample.
    let two = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n\
(assert (or (and (>= X_0 -1) (<= X_0 -0.5) (>= X_1 -1) (<= X_1 1) (>= Y_0 2.5))\n\
            (and (>= X_0 0.5) (<= X_0 1) (>= X_1 0.5) (<= X_1 1) (>= Y_0 2.5))))\n";
    let p = property(&d, "two_boxes.vnnlib", two);
    let (a, _) = verify(&m, &p, &[]);
    assert_eq!(a, "sat");
}

#[test]
fn milp_decides_a_wider_network_consistently_with_sampling() {
    let d = workdir("milp");
    let device = default_device();
    let net: Network = sequential([20, 1, 1], &[L::Fc(12), L::Relu, L::Fc(8), L::Relu, L::Fc(3)]).init(17, &device).unwrap();
    let m = d.join("w.onnx");
    ironbound::io::save_model(&net, &m).unwrap();
    let mut rng = SplitMix64::new(3);
    let centre: Vec<f64> = (0..20).map(|_| rng.uniform() - 0.5).collect();
    let y0 = to_vec(net.forward(from_vec(centre.iter().map(|&v| v as f32).collect(), [1, 20, 1, 1], &device)));
    let (top, other) = if y0[0] >= y0[1] { (0, 1) } else { (1, 0) };
    let mut answers = Vec::new();
    for eps in [0.01, 0.3] {
        let mut text = String::new();
        for i in 0..20 {
            text += &format!("(declare-const X_{i} Real)\n");
        }
        for j in 0..3 {
            text += &format!("(declare-const Y_{j} Real)\n");
        }
        for (i, c) in centre.iter().enumerate() {
            text += &format!("(assert (>= X_{i} {}))\n(assert (<= X_{i} {}))\n", c - eps, c + eps);
        }
        text += &format!("(assert (>= Y_{other} Y_{top}))\n");
        let p = property(&d, &format!("p{eps}.vnnlib"), &text);
        let json = d.join("w.json");
        let (a, out) = verify(&m, &p, &["--out", json.to_str().unwrap()]);
        assert!(a == "sat" || a == "unsat", "{a}: {}", String::from_utf8_lossy(&out.stderr));
        if a == "unsat" {
            // No sampled point of the box may be a counterexample.
            for _ in 0..2000 {
                let x: Vec<f32> = centre.iter().map(|&c| (c + eps * (2.0 * rng.uniform() - 1.0)) as f32).collect();
                let y = to_vec(net.forward(from_vec(x, [1, 20, 1, 1], &device)));
                assert!(y[other] < y[top], "eps {eps}: unsat but a sampled point has {y:?}");
            }
        }
        answers.push(a);
    }
    // A tiny box around a point the network separates clearly is safe.
    assert_eq!(answers[0], "unsat");
}

#[test]
fn a_benchmark_directory_gives_one_results_csv() {
    let d = workdir("bench");
    network_a(&d);
    property(&d, "u.vnnlib", &format!("{BOX}(assert (<= Y_0 -0.5))\n"));
    property(&d, "s.vnnlib", &format!("{BOX}(assert (<= Y_1 -0.95))\n"));
    std::fs::write(d.join("instances.csv"), "a.onnx,u.vnnlib,30\na.onnx,s.vnnlib,30\na.onnx,missing.vnnlib,30\n").unwrap();
    let out_csv = d.join("results.csv");
    let out = run(&["verify", "--instances", d.join("instances.csv").to_str().unwrap(), "--out", out_csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&out_csv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["onnx", "vnnlib", "result", "seconds", "stage"]);
    assert_eq!((rows[1][2], rows[2][2], rows[3][2]), ("unsat", "sat", "error"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.vnnlib"));
}

#[test]
fn bad_properties_exit_2_with_one_line_and_no_output() {
    let d = workdir("bad");
    let m = network_a(&d);
    let cases = [
        ("truncated.vnnlib", format!("{BOX}(assert (<= Y_0 "), "truncated.vnnlib"),
        ("wrong_inputs.vnnlib", "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))(assert (>= X_2 0))(assert (<= X_2 1))(assert (<= Y_0 0))\n".to_string(), "3 inputs"),
        ("wrong_outputs.vnnlib", "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))(assert (<= Y_0 0))\n".to_string(), "1 outputs"),
        ("empty_box.vnnlib", format!("{}(assert (>= X_0 0.5))\n(assert (<= X_0 0.2))\n(assert (<= Y_0 0))\n", BOX.replace("(assert (>= X_0 -1))\n(assert (<= X_0 1))\n", "")), "X_0"),
        ("garbage.vnnlib", "\u{0}\u{1}PK not a property".to_string(), "garbage.vnnlib"),
    ];
    for (name, text, needle) in cases {
        let p = property(&d, name, &text);
        let json = d.join("out.json");
        let res = d.join("out.txt");
        let (_, out) = verify(&m, &p, &["--out", json.to_str().unwrap(), "--vnncomp-result", res.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(needle) && err.contains(name), "{name}: stderr should name the file and {needle:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
        assert!(!json.exists() && !res.exists(), "{name}: no output file");
    }
}
