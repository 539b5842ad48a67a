//! `bounds --method one-step | random-slope`: one-step needs `--labels` (exit 2, one line, no
//! file), `--seed` picks the slopes, and the result does not depend on `--batch-size` (beyond
//! the rounding of batched arithmetic).

use std::path::{Path, PathBuf};
use std::process::Output;

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-cli-slopes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ironbound")).args(args).output().expect("run ironbound")
}

/// conv-small with seeded weights, 5 inputs and their labels.
fn fixture(dir: &Path) -> (String, String, String) {
    let model = dir.join("m.safetensors");
    let out = run(&["init", "--arch", "conv-small", "--seed", "4", "--out", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let data: Vec<f32> = (0..5 * 784).map(|i| ((i * 53) % 97) as f32 / 96.0).collect();
    ironbound::io::npy::write_npy(&x, &[5, 1, 28, 28], &data).unwrap();
    ironbound::io::npy::write_npy(&y, &[5], &[1.0, 7.0, 3.0, 0.0, 9.0]).unwrap();
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    (s(model), s(x), s(y))
}

/// lower, upper and margin_lower of one run (the margins only with labels).
fn bounds(d: &Path, m: &str, x: &str, extra: &[&str], name: &str) -> Vec<Vec<f32>> {
    let b = d.join(format!("{name}.npz"));
    let mut args = vec!["bounds", "--model", m, "--input", x, "--eps", "0.02", "--clip", "0", "1", "--out", b.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    ["lower", "upper", "margin_lower"].iter().filter_map(|k| ironbound::io::npy::read_f32(&b, &[k]).ok()).map(|a| a.data).collect()
}

#[test]
fn one_step_without_labels_is_one_line_exit_2_and_no_file() {
    let d = workdir("no-labels");
    let (m, x, _) = fixture(&d);
    for method in ["one-step", "optimized-slope"] {
        let b = d.join("b.npz");
        let out = run(&["bounds", "--model", &m, "--input", &x, "--eps", "0.02", "--method", method, "--out", b.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{method}: {err}");
        assert!(err.contains("--labels") && !err.contains("panicked"), "{method}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{method}: one line: {err}");
        assert!(!b.exists(), "{method}: no output file");
    }
}

#[test]
fn seeded_slopes_do_not_depend_on_the_batch_size() {
    let d = workdir("seeds");
    let (m, x, y) = fixture(&d);
    for method in ["one-step", "random-slope"] {
        let with = |seed: &str, batch: &str| bounds(&d, &m, &x, &["--method", method, "--labels", &y, "--seed", seed, "--batch-size", batch], &format!("{method}-{seed}-{batch}"));
        let (one, three) = (with("11", "1"), with("11", "3"));
        assert_eq!(one.len(), 3, "{method}: lower, upper and margins");
        // The same slopes; batched convolutions may round differently in the last bit.
        for (a, b) in one.iter().flatten().zip(three.iter().flatten()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{method}: --batch-size 1 gives {a}, 3 gives {b}");
        }
        assert!(one[0].iter().zip(&one[1]).all(|(l, u)| l <= u), "{method}: lower <= upper");
        assert_ne!(one, with("12", "3"), "{method}: another seed, other slopes");
    }
    // random-slope needs no labels; the default seed is 0.
    let plain = bounds(&d, &m, &x, &["--method", "random-slope"], "random-default");
    assert_eq!(plain.len(), 2);
    assert_eq!(plain, bounds(&d, &m, &x, &["--method", "random-slope", "--seed", "0"], "random-0")[..2]);
}
