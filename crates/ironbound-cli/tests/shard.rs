//! `--shard I/N` and `ironbound merge` as a user runs them (CONTRACT.md, `ironbound certify`):
//! the merged shards of a certify run (bound methods, a cascade, PGD) are the unsharded report
//! (every key but `seconds`, to the byte), also when N does not divide n and batches straddle the shards' edges; the merged
//! shards of `verify --instances` are the unsharded results.csv; missing, overlapping and
//! inconsistent shards are refused with one line and exit code 2.

use ironbound::net::{NetSpec, NodeSpec, OpSpec};
use ironbound::tensor::default_device;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-shard-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironbound")).args(args).output().expect("run ironbound")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Exit code 2, a single stderr line that mentions `needle`, no panic message.
fn assert_bad_input(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// FC-SMALL trained with PGD at eps 0.1 on Fashion-MNIST (results/): at eps 0.08 some test
/// images are certified, some only PGD-robust, some broken, and PGD's outcome depends on its
/// random starts (batches of 7 and 100 give different reports), so a shard that attacked a
/// sample from another start than the unsharded run would show.
fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/fcsmall-pgd-eps0.1-lp-milp/model.onnx").display().to_string()
}

fn certify(out: &Path, n: usize, extra: &[&str]) -> Output {
    let model = model();
    let n = n.to_string();
    let mut args = vec!["certify", "--model", &model, "--dataset", "fashion-mnist", "--eps", "0.08", "--method", "ibp,crown", "--cascade", "ibp,crown", "--pgd", "5", "--n", &n];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    run(&args)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The file's text without the lines of its `seconds` object.
fn without_seconds(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut kept = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim_start().starts_with("\"seconds\"") {
            inside = !line.trim_end().ends_with("},") && !line.trim_end().ends_with('}');
            continue;
        }
        if inside {
            inside = !line.trim_start().starts_with('}');
            continue;
        }
        kept.push(line);
    }
    kept.join("\n")
}

#[test]
fn merged_certify_shards_equal_the_unsharded_report() {
    let d = workdir("certify");
    let n = 30;
    for batch in ["100", "7"] {
        let whole = d.join(format!("whole-{batch}.json"));
        ok(&certify(&whole, n, &["--batch-size", batch]));
        let expected = json(&whole);
        assert!(expected.get("shard").is_none(), "an unsharded report has no shard object");
        let (clean, crown, pgd) = (expected["clean_accuracy"].as_f64().unwrap(), expected["certified_accuracy"]["crown"].as_f64().unwrap(), expected["pgd_accuracy"].as_f64().unwrap());
        assert!(0.0 < crown && crown < pgd && pgd < clean, "a test that sees every outcome: {expected}");
        assert_eq!(expected["cascade_stages"]["cascade:ibp>crown"].as_array().map(Vec::len), Some(2), "{expected}");
        // 3 divides 30; 4 does not (8, 8, 7, 7), and batches of 7 cross the shards' edges.
        for count in [3usize, 4] {
            let mut files = Vec::new();
            let mut seconds = 0.0;
            for index in (1..=count).rev() {
                let f = d.join(format!("shard-{batch}-{index}of{count}.json"));
                ok(&certify(&f, n, &["--batch-size", batch, "--shard", &format!("{index}/{count}")]));
                let r = json(&f);
                let s = &r["shard"];
                assert_eq!((s["index"].as_u64(), s["count"].as_u64(), s["total"].as_u64()), (Some(index as u64), Some(count as u64), Some(n as u64)));
                assert_eq!(r["n"].as_u64().unwrap(), s["end"].as_u64().unwrap() - s["start"].as_u64().unwrap());
                seconds += r["seconds"]["crown"].as_f64().unwrap();
                files.push(f);
            }
            let merged = d.join(format!("merged-{batch}-{count}.json"));
            let mut args = vec!["merge".to_string(), "--out".into(), merged.display().to_string()];
            args.extend(files.iter().map(|f| f.display().to_string()));
            ok(&run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
            let mut got = json(&merged);
            let mut want = expected.clone();
            let got_seconds = got.as_object_mut().unwrap().remove("seconds").unwrap();
            let want_seconds = want.as_object_mut().unwrap().remove("seconds").unwrap();
            assert_eq!(got, want, "batch {batch}, {count} shards");
            assert_eq!(without_seconds(&merged), without_seconds(&whole), "batch {batch}, {count} shards: byte for byte");
            let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&got_seconds), keys(&want_seconds));
            assert!((got_seconds["crown"].as_f64().unwrap() - seconds).abs() < 1e-9, "seconds are the shards' sums");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn merge_refuses_missing_overlapping_and_inconsistent_shards() {
    let d = workdir("refuse");
    let shard = |name: &str, spec: &str, extra: &[&str]| {
        let f = d.join(name);
        let mut args = vec!["--shard", spec];
        args.extend_from_slice(extra);
        ok(&certify(&f, 10, &args));
        f.display().to_string()
    };
    let (a, b, c) = (shard("a.json", "1/3", &[]), shard("b.json", "2/3", &[]), shard("c.json", "3/3", &[]));
    let four = shard("q.json", "2/4", &[]);
    let other_eps = {
        let f = d.join("e.json");
        let model = model();
        ok(&run(&["certify", "--model", &model, "--dataset", "fashion-mnist", "--eps", "0.09", "--method", "ibp,crown", "--cascade", "ibp,crown", "--pgd", "5", "--n", "10", "--shard", "2/3", "--out", f.to_str().unwrap()]));
        f.display().to_string()
    };
    let whole = d.join("whole.json");
    ok(&certify(&whole, 10, &[]));
    let out = d.join("merged.json");
    let merge = |files: &[&str]| {
        let mut args = vec!["merge", "--out", out.to_str().unwrap()];
        args.extend_from_slice(files);
        run(&args)
    };
    for (files, needle) in [
        (vec![a.as_str(), c.as_str()], "missing shard 2/3"),
        (vec![a.as_str(), b.as_str(), b.as_str(), c.as_str()], "overlapping"),
        (vec![a.as_str(), four.as_str(), c.as_str()], "different splits"),
        (vec![a.as_str(), other_eps.as_str(), c.as_str()], "eps"),
        (vec![a.as_str(), whole.to_str().unwrap()], "not a shard report"),
    ] {
        assert_bad_input(&merge(&files), needle);
        assert!(!out.exists(), "{needle}: no output file");
    }
    // Bad --shard values.
    for (spec, needle) in [("0/3", "I/N"), ("4/3", "I/N"), ("x", "I/N"), ("3/11", "10 samples")] {
        let f = d.join("bad.json");
        assert_bad_input(&certify(&f, 10, &["--shard", spec]), needle);
        assert!(!f.exists());
    }
    ok(&merge(&[&c, &a, &b]));
    assert_eq!(without_seconds(&out), without_seconds(&whole));
    let _ = std::fs::remove_dir_all(&d);
}

/// y = relu(x) - 0.5 on x in a box: `Y_0 <= t` is sat for t >= -0.5 and unsat below.
fn tiny_model(dir: &Path) -> PathBuf {
    let spec = NetSpec {
        input_shape: [1, 1, 1],
        nodes: vec![
            NodeSpec { name: "0".into(), op: OpSpec::Linear { in_features: 1, out_features: 1 }, inputs: vec![0] },
            NodeSpec { name: "1".into(), op: OpSpec::Relu, inputs: vec![1] },
            NodeSpec { name: "2".into(), op: OpSpec::Linear { in_features: 1, out_features: 1 }, inputs: vec![2] },
        ],
    };
    let net = spec.build(&default_device(), &mut |name, _| Ok(if name == "2.bias" { vec![-0.5] } else if name.ends_with("bias") { vec![0.0] } else { vec![1.0] })).unwrap();
    let path = dir.join("m.onnx");
    ironbound::io::save_model(&net, &path).unwrap();
    path
}

/// The rows of a results.csv without the `seconds` column.
fn rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').enumerate().filter(|(i, _)| *i != 3).map(|(_, c)| c.to_string()).collect()).collect()
}

#[test]
fn merged_verify_shards_equal_the_unsharded_results_csv() {
    let d = workdir("verify");
    tiny_model(&d);
    let mut instances = String::new();
    for (i, t) in ["-0.9", "0.2", "-0.7", "0.5", "-0.6"].iter().enumerate() {
        let prop = format!("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (<= Y_0 {t}))\n");
        std::fs::write(d.join(format!("p{i}.vnnlib")), prop).unwrap();
        instances.push_str(&format!("m.onnx,p{i}.vnnlib,30\n"));
    }
    let csv = d.join("instances.csv");
    std::fs::write(&csv, instances).unwrap();
    let verify = |out: &Path, extra: &[&str]| {
        let mut args = vec!["verify", "--instances", csv.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&args)
    };
    let whole = d.join("whole.csv");
    ok(&verify(&whole, &[]));
    let answers: Vec<String> = rows(&whole)[1..].iter().map(|r| r[2].clone()).collect();
    assert_eq!(answers, ["unsat", "sat", "unsat", "sat", "unsat"]);
    let mut shards = Vec::new();
    for spec in ["2/2", "1/2"] {
        let f = d.join(format!("s{}.csv", &spec[..1]));
        ok(&verify(&f, &["--shard", spec]));
        shards.push(f.display().to_string());
    }
    let first = std::fs::read_to_string(&shards[1]).unwrap();
    assert_eq!(first.lines().next(), Some("onnx,vnnlib,result,seconds,stage,instance,shard,total"));
    assert_eq!(first.lines().count(), 4, "shard 1/2 of 5 holds 3 instances: {first}");
    let merged = d.join("merged.csv");
    ok(&run(&["merge", "--out", merged.to_str().unwrap(), &shards[0], &shards[1]]));
    assert_eq!(rows(&merged), rows(&whole));

    assert_bad_input(&run(&["merge", "--out", merged.to_str().unwrap(), &shards[1]]), "missing shard 2/2");
    assert_bad_input(&run(&["merge", "--out", merged.to_str().unwrap(), &shards[1], &shards[1], &shards[0]]), "overlapping");
    assert_bad_input(&run(&["merge", "--out", merged.to_str().unwrap(), &shards[1], whole.to_str().unwrap()]), "not a shard");
    let _ = std::fs::remove_dir_all(&d);
}
