//! `ironbound analyze` as a user runs it: the tightness curve points are what `certify` reports
//! at the same radii, CR-AUC is their normalised trapezoid, the figures are real PNG/SVG files,
//! and bad input is one line with exit code 2 and no output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-analyze-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironbound")).args(args).output().expect("run ironbound")
}

/// FC-SMALL PGD-trained at eps 0.1 on Fashion-MNIST (committed under results/).
fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/fcsmall-pgd-eps0.1-lp-milp/model.onnx")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn cr_curves_match_certify_at_every_radius() {
    let d = workdir("curves");
    let out_dir = d.join("tight");
    let m = model();
    let (n, steps, eps_max) = ("40", 4, 0.06);
    let out = run(&["analyze", "tightness", "--model", m.to_str().unwrap(), "--dataset", "fashion-mnist", "--eps-max", "0.06", "--steps", "4", "--method", "ibp,crown,deepz", "--n", n, "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let csv = std::fs::read_to_string(out_dir.join("cr_curve.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("eps,method,certified_accuracy"));
    let rows: Vec<(f64, String, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 3 * steps);
    let auc = json(&out_dir.join("cr_auc.json"));
    for method in ["ibp", "crown", "deepz"] {
        let curve: Vec<(f64, f64)> = rows.iter().filter(|r| r.1 == method).map(|r| (r.0, r.2)).collect();
        assert_eq!(curve.len(), steps);
        assert_eq!((curve[0].0, curve[steps - 1].0), (0.0, eps_max));
        // Each point is exactly `certify --eps r` on the same samples.
        for &(eps, acc) in &curve {
            let report = d.join(format!("{method}-{eps}.json"));
            let out = run(&["certify", "--model", m.to_str().unwrap(), "--dataset", "fashion-mnist", "--eps", &eps.to_string(), "--method", method, "--n", n, "--out", report.to_str().unwrap()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(json(&report)["certified_accuracy"][method].as_f64().unwrap(), acc, "{method} at eps {eps}");
        }
        for w in curve.windows(2) {
            assert!(w[1].1 <= w[0].1, "{method}: the curve rises from {:?} to {:?}", w[0], w[1]);
        }
        let area: f64 = curve.windows(2).map(|w| 0.5 * (w[1].0 - w[0].0) * (w[0].1 + w[1].1)).sum();
        let got = auc[method].as_f64().unwrap();
        assert!((got - area / eps_max).abs() < 1e-12, "{method}: cr_auc {got} vs trapezoid {}", area / eps_max);
        assert!((0.0..=1.0).contains(&got));
    }
    // Tightness order on a PGD-trained net (paradox Table 4): back-substitution beats Box.
    assert!(auc["crown"].as_f64().unwrap() >= auc["ibp"].as_f64().unwrap());
    assert!(auc["deepz"].as_f64().unwrap() >= auc["ibp"].as_f64().unwrap());
    let detail = json(&out_dir.join("tightness.json"));
    let paper = detail["cr_auc_percent_eps"]["crown"].as_f64().unwrap();
    assert!((paper - auc["crown"].as_f64().unwrap() * 100.0 * eps_max).abs() < 1e-9);

    let png = std::fs::read(out_dir.join("cr_curve.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out_dir.join("cr_curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("crown") && svg.contains("certified accuracy (%)"));
}

#[test]
fn bad_tightness_input_is_one_line_and_writes_nothing() {
    let d = workdir("bad");
    let m = model();
    let out_dir = d.join("never");
    let base = ["analyze", "tightness", "--model", m.to_str().unwrap(), "--n", "5", "--out", out_dir.to_str().unwrap()];
    let fmnist = ["--dataset", "fashion-mnist"];
    let cases: [(&[&str], &str); 5] = [
        (&[&fmnist[..], &["--eps-max", "0.1", "--method", ","]].concat(), "method list is empty"),
        (&[&fmnist[..], &["--eps-max", "0.1", "--steps", "1", "--method", "ibp"]].concat(), "--steps"),
        (&[&fmnist[..], &["--eps-max", "-0.1", "--method", "ibp"]].concat(), "--eps-max"),
        (&[&fmnist[..], &["--eps-max", "0.1", "--method", "simplex"]].concat(), "unknown method 'simplex'"),
        (&["--dataset", "cifar10", "--eps-max", "0.1", "--method", "ibp"], "does not match"),
    ];
    for (extra, needle) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out_dir.exists(), "{args:?} left {}", out_dir.display());
    }
}

#[test]
fn scan_of_paradox_fig3_finds_the_papers_jumps() {
    let d = workdir("scan");
    let out_dir = d.join("scan");
    let out = run(&["analyze", "scan", "--example", "paradox-fig3", "--steps", "201", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jumps = json(&out_dir.join("jumps.json"));
    let count = |m: &str| jumps["methods"][m]["jumps_any_output"].as_u64().unwrap();
    assert_eq!((count("ibp"), count("deepz"), count("crown"), count("crown-ibp"), count("hbox")), (0, 0, 1, 1, 1));
    let first = |m: &str| jumps["methods"][m]["jumps"][0].clone();
    // CROWN: l(y1) from 1 (w <= 0) to w; hBox: l(y2) from -1 - w to 0 at w = 1.
    assert_eq!((first("crown")["output"].as_u64(), first("crown")["from"].as_f64()), (Some(0), Some(0.0)));
    assert_eq!((first("hbox")["output"].as_u64(), first("hbox")["to"].as_f64()), (Some(1), Some(1.0)));
    let csv = std::fs::read_to_string(out_dir.join("scan.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("delta,method,robust_loss,lower_0,lower_1"));
    assert_eq!(csv.lines().count(), 1 + 5 * 201);
    for f in ["scan_lower_0.png", "scan_lower_1.svg", "scan_loss.png"] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
}

#[test]
fn cross_certification_rows_are_certify_reports() {
    let d = workdir("cross");
    let out_dir = d.join("cross");
    let m = model();
    let out = run(&["analyze", "cross", "--models", &format!("{0},{0}", m.display()), "--names", "a,b", "--dataset", "fashion-mnist", "--eps", "0.05", "--method", "ibp,crown", "--n", "30", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = d.join("r.json");
    let out = run(&["certify", "--model", m.to_str().unwrap(), "--dataset", "fashion-mnist", "--eps", "0.05", "--method", "ibp,crown", "--n", "30", "--out", report.to_str().unwrap()]);
    assert!(out.status.success());
    let r = json(&report);
    let csv = std::fs::read_to_string(out_dir.join("cross.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("model,clean_accuracy,ibp,crown"));
    let want = [r["clean_accuracy"].as_f64(), r["certified_accuracy"]["ibp"].as_f64(), r["certified_accuracy"]["crown"].as_f64()];
    for (line, name) in lines.zip(["a", "b"]) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], name);
        let got: Vec<Option<f64>> = f[1..].iter().map(|v| v.parse().ok()).collect();
        assert_eq!(got, want, "{line}");
    }
    assert_eq!(csv.lines().count(), 3);
    assert!(out_dir.join("cross.png").exists() && out_dir.join("cross.svg").exists());
    let out = run(&["analyze", "cross", "--models", m.to_str().unwrap(), "--names", "a,b", "--dataset", "fashion-mnist", "--eps", "0.05", "--out", d.join("x").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--names has 2 names for 1 models"));
}

#[test]
fn report_renders_a_committed_run_and_refuses_a_directory_without_metrics() {
    let d = workdir("report");
    let run_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/fcsmall-pgd-eps0.1-lp-milp");
    let page = d.join("page.html");
    let out = run(&["report", run_dir.to_str().unwrap(), "--out", page.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.matches("<svg").count() >= 4, "figures inlined");
    assert!(html.contains("<h2>Accuracy</h2>") && html.contains("<h2>Configuration</h2>"));
    let out = run(&["report", d.to_str().unwrap(), "--out", d.join("x.html").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no metrics.jsonl") && err.trim_end().lines().count() == 1, "{err}");
    assert!(!d.join("x.html").exists());
}

#[test]
fn tightness_shards_merge_into_the_unsharded_outputs() {
    let d = workdir("shards");
    let m = model();
    let args = |out: &Path, shard: Option<&str>| {
        let mut v = vec!["analyze", "tightness", "--model", m.to_str().unwrap(), "--dataset", "fashion-mnist", "--eps-max", "0.05", "--steps", "3", "--method", "ibp,crown", "--n", "23", "--batch-size", "10"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        v.extend(["--out".into(), out.display().to_string()]);
        if let Some(s) = shard {
            v.extend(["--shard".into(), s.into()]);
        }
        v
    };
    let call = |v: Vec<String>| run(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let whole = d.join("whole");
    assert!(call(args(&whole, None)).status.success());
    let shards: Vec<PathBuf> = (1..=3).map(|i| d.join(format!("s{i}"))).collect();
    for (i, s) in shards.iter().enumerate() {
        let out = call(args(s, Some(&format!("{}/3", i + 1))));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let merged = d.join("merged");
    let mut margs = vec!["merge".to_string(), "--out".into(), merged.display().to_string()];
    margs.extend(shards.iter().rev().map(|s| s.display().to_string()));
    let out = call(margs);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["cr_curve.csv", "cr_auc.json", "cr_curve.svg"] {
        assert_eq!(std::fs::read(whole.join(f)).unwrap(), std::fs::read(merged.join(f)).unwrap(), "{f}");
    }
    let (mut a, mut b) = (json(&whole.join("tightness.json")), json(&merged.join("tightness.json")));
    a.as_object_mut().unwrap().remove("seconds");
    b.as_object_mut().unwrap().remove("seconds");
    assert_eq!(a, b);
    // A missing shard is refused.
    let out = call(vec!["merge".into(), "--out".into(), d.join("bad").display().to_string(), shards[0].display().to_string(), shards[2].display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing shard 2/3"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn violins_summarise_per_sample_tightness_and_loss() {
    let d = workdir("violin");
    let out_dir = d.join("v");
    let m = model();
    let out = run(&["analyze", "violin", "--models", m.to_str().unwrap(), "--names", "pgd", "--method", "ibp,crown", "--dataset", "fashion-mnist", "--eps", "0.05", "--n", "20", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(out_dir.join("violin.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 20);
    let mean = |method: &str| -> f64 {
        let v: Vec<f64> = csv.lines().skip(1).filter(|l| l.split(',').nth(1) == Some(method)).map(|l| l.split(',').nth(3).unwrap().parse().unwrap()).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    // CROWN is tighter than IBP on every sample of a PGD-trained net, so on average too.
    assert!(mean("crown") < mean("ibp"), "crown {} ibp {}", mean("crown"), mean("ibp"));
    let s = json(&out_dir.join("summary.json"));
    assert_eq!(s["groups"].as_array().unwrap().len(), 2);
    assert!(out_dir.join("violin_tightness.png").exists() && out_dir.join("violin_loss.svg").exists());
}

/// The rows of connectivity.csv as (path, t) -> the other columns by header name.
fn connectivity_rows(csv: &str) -> Vec<(String, f64, std::collections::BTreeMap<String, f64>)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let cols = header.iter().zip(&f).skip(2).map(|(h, v)| (h.to_string(), v.parse().unwrap())).collect();
            (f[0].to_string(), f[1].parse().unwrap(), cols)
        })
        .collect()
}

#[test]
fn landscape_keys_of_a_short_run_and_a_connectivity_curve_whose_ends_are_certify() {
    let d = workdir("connectivity");
    // Model B: one epoch of IBP training on 300 images, measuring the landscape.
    let run_dir = d.join("b");
    let out = run(&["train", "--dataset", "fashion-mnist", "--arch", "fc-small", "--method", "ibp", "--eps", "0.02", "--epochs", "2", "--out", run_dir.to_str().unwrap(), "--set", "train_n=300", "--set", "eval_n=20", "--set", "warmup_epochs=0", "--set", "landscape_every=1", "--set", "landscape_batches=2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["landscape_loss_variation", "landscape_grad_cosine", "landscape_grad_diff", "landscape_unstable_ratio", "landscape_unstable_ratio_layer1", "landscape_unstable_ratio_layer2"] {
            assert!(m[key].is_number(), "{key} in {line}");
        }
        let cos = m["landscape_grad_cosine"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&cos));
        assert_eq!(m["landscape_samples"].as_u64(), Some(200));
    }
    let figs = d.join("land");
    let out = run(&["analyze", "landscape", "--runs", run_dir.to_str().unwrap(), "--names", "ibp", "--out", figs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(figs.join("landscape.csv")).unwrap().lines().count(), 3);
    for f in ["summary.json", "landscape_variation.png", "landscape_cosine.svg", "landscape_unstable.png", "landscape_curves.svg"] {
        assert!(figs.join(f).exists(), "{f}");
    }

    let (a, b) = (model(), run_dir.join("model.safetensors"));
    let conn = d.join("conn");
    let out = run(&["analyze", "connectivity", "--model-a", a.to_str().unwrap(), "--model-b", b.to_str().unwrap(), "--dataset", "fashion-mnist", "--eps", "0.02", "--method", "ibp", "--epochs", "1", "--train-n", "200", "--batch-size", "50", "--points", "3", "--n", "30", "--out", conn.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = connectivity_rows(&std::fs::read_to_string(conn.join("connectivity.csv")).unwrap());
    assert_eq!(rows.len(), 6);
    assert_eq!(rows.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(), [("bezier", 0.0), ("bezier", 0.5), ("bezier", 1.0), ("line", 0.0), ("line", 0.5), ("line", 1.0)]);
    for (t, model) in [(0.0, &a), (1.0, &b)] {
        let report = d.join(format!("certify-{t}.json"));
        let out = run(&["certify", "--model", model.to_str().unwrap(), "--dataset", "fashion-mnist", "--eps", "0.02", "--method", "ibp", "--n", "30", "--out", report.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r = json(&report);
        // The robust IBP loss of the same samples, per sample, from `analyze violin`.
        let v = d.join(format!("violin-{t}"));
        let out = run(&["analyze", "violin", "--models", model.to_str().unwrap(), "--method", "ibp", "--dataset", "fashion-mnist", "--eps", "0.02", "--n", "30", "--out", v.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let violin = std::fs::read_to_string(v.join("violin.csv")).unwrap();
        let losses: Vec<f64> = violin.lines().skip(1).map(|l| l.split(',').nth(4).unwrap().parse().unwrap()).collect();
        let mean_loss = losses.iter().sum::<f64>() / losses.len() as f64;
        for row in rows.iter().filter(|r| r.1 == t) {
            assert_eq!(row.2["clean_accuracy"], r["clean_accuracy"].as_f64().unwrap(), "{} at t = {t}", row.0);
            assert_eq!(row.2["certified_ibp"], r["certified_accuracy"]["ibp"].as_f64().unwrap(), "{} at t = {t}", row.0);
            assert!((row.2["loss"] - mean_loss).abs() <= 1e-4 * (1.0 + mean_loss), "{} at t = {t}: loss {} vs {mean_loss}", row.0, row.2["loss"]);
        }
    }
    let summary = json(&conn.join("connectivity.json"));
    assert_eq!(summary["paths"].as_array().unwrap().len(), 2);
    assert_eq!(summary["train_loss"].as_array().unwrap().len(), 1);
    let barrier = summary["paths"][0]["loss_barrier"].as_f64().unwrap();
    let bez: Vec<f64> = rows.iter().filter(|r| r.0 == "bezier").map(|r| r.2["loss"]).collect();
    assert!((barrier - (bez.iter().cloned().fold(f64::MIN, f64::max) - bez[0].max(bez[2]))).abs() < 1e-12);
    for f in ["connectivity_loss.png", "connectivity_loss.svg", "connectivity_accuracy.png", "control.safetensors"] {
        assert!(conn.join(f).exists(), "{f}");
    }
}

#[test]
fn bad_connectivity_and_landscape_input_is_one_line_and_writes_nothing() {
    let d = workdir("bad-connectivity");
    let out_dir = d.join("never");
    let a = model();
    let normalized = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/tightness-f-fashion-mnist-fcsmall-standard/model.onnx");
    let conv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/paradox-fashion-mnist-conv-ibp/model.onnx");
    let (a, normalized, conv) = (a.to_str().unwrap(), normalized.to_str().unwrap(), conv.to_str().unwrap());
    let base = |b: &str, dataset: &str, eps: &str, method: &str, points: &str| -> Vec<String> {
        ["analyze", "connectivity", "--model-a", a, "--model-b", b, "--dataset", dataset, "--eps", eps, "--method", method, "--points", points, "--epochs", "1", "--train-n", "10", "--n", "5", "--out", out_dir.to_str().unwrap()].map(String::from).to_vec()
    };
    let cases = [
        (base(conv, "fashion-mnist", "0.1", "ibp", "5"), "different architectures"),
        (base(normalized, "fashion-mnist", "0.1", "ibp", "5"), "different architectures"),
        (base(a, "fashion-mnist", "0.1", "ibp", "1"), "--points must be at least 2"),
        (base(a, "fashion-mnist", "-0.1", "ibp", "5"), "eps"),
        (base(a, "fashion-mnist", "0.1", "simplex", "5"), "unknown method 'simplex'"),
        (base(a, "cifar10", "0.1", "ibp", "5"), "does not match"),
        (base(&d.join("missing.onnx").display().to_string(), "fashion-mnist", "0.1", "ibp", "5"), "missing.onnx"),
    ];
    for (args, needle) in cases {
        let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out_dir.exists(), "{args:?} left {}", out_dir.display());
    }
    // A run trained without landscape_every has nothing to show.
    let plain_run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/fcsmall-pgd-eps0.1-lp-milp");
    let out = run(&["analyze", "landscape", "--runs", plain_run.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no landscape_* measurements") && err.trim_end().lines().count() == 1, "{err}");
    assert!(!out_dir.exists());
}
