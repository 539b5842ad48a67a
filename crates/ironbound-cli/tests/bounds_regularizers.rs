//! `bounds --regularizers`: reg_d and reg_r [N, K] (column y 0) next to the bounds, equal to
//! the library's values; needs --labels and deepz, crown or crown-ibp (otherwise one line,
//! exit 2, no file).

use ironbound::bounds::{input_region, regularizers, Method, Spec};
use ironbound::io::npy;
use ironbound::tensor::{default_device, from_vec, to_vec};
use std::path::{Path, PathBuf};
use std::process::Output;

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-cli-reg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ironbound")).args(args).output().expect("run ironbound")
}

const LABELS: [usize; 4] = [1, 7, 3, 0];

/// fc-small with seeded weights, 4 inputs and their labels.
fn fixture(dir: &Path) -> (String, String, String) {
    let model = dir.join("m.safetensors");
    let out = run(&["init", "--arch", "fc-small", "--seed", "5", "--out", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let data: Vec<f32> = (0..4 * 784).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    npy::write_npy(&x, &[4, 1, 28, 28], &data).unwrap();
    npy::write_npy(&y, &[4], &LABELS.map(|v| v as f32)).unwrap();
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    (s(model), s(x), s(y))
}

#[test]
fn writes_reg_d_and_reg_r_equal_to_the_library() {
    let d = workdir("ok");
    let (m, x, y) = fixture(&d);
    let dev = default_device();
    let net = ironbound::io::load_model(Path::new(&m), &dev).unwrap();
    let xs = npy::read_f32(Path::new(&x), &["x"]).unwrap().data;
    for method in ["deepz", "crown", "crown-ibp"] {
        let b = d.join(format!("{method}.npz"));
        let out = run(&["bounds", "--model", &m, "--input", &x, "--labels", &y, "--eps", "0.02", "--clip", "0", "1", "--method", method, "--regularizers", "--batch-size", "3", "--out", b.to_str().unwrap()]);
        assert!(out.status.success(), "{method}: {}", String::from_utf8_lossy(&out.stderr));
        let (rd, rr) = (npy::read_f32(&b, &["reg_d"]).unwrap(), npy::read_f32(&b, &["reg_r"]).unwrap());
        assert_eq!((rd.shape.as_slice(), rr.shape.as_slice()), (&[4usize, 10][..], &[4usize, 10][..]), "{method}");
        assert!(npy::read_f32(&b, &["margin_lower"]).is_ok(), "{method}: the bounds are still there");
        let t = regularizers::tightness(
            &net,
            &input_region(&from_vec(xs.clone(), [4, 1, 28, 28], &dev), 0.02, Some((0.0, 1.0))),
            &from_vec(xs.clone(), [4, 1, 28, 28], &dev),
            &Spec::margins(&LABELS, 10, &dev).unwrap(),
            &method.parse::<Method>().unwrap().relaxation(),
        )
        .unwrap();
        let want_d = ironbound::bounds::spec::insert_label_column(&to_vec(t.d), &LABELS, 10);
        let want_r = ironbound::bounds::spec::insert_label_column(&to_vec(t.r), &LABELS, 10);
        for (i, y) in LABELS.iter().enumerate() {
            assert_eq!((rd.data[i * 10 + y], rr.data[i * 10 + y]), (0.0, 0.0), "{method}: column y is 0");
        }
        for (got, want) in rd.data.iter().zip(&want_d).chain(rr.data.iter().zip(&want_r)) {
            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{method}: {got} vs {want}");
        }
        assert!(rd.data.iter().all(|v| *v >= -1e-4) && rr.data.iter().all(|v| *v >= 0.0), "{method}: d, r >= 0");
        assert!(rr.data.iter().any(|v| *v > 0.0), "{method}: eps 0.02 leaves unstable ReLUs, r > 0 somewhere");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wrong_method_or_missing_labels_is_one_line_exit_2_and_no_file() {
    let d = workdir("bad");
    let (m, x, y) = fixture(&d);
    for (method, labels, says) in [("ibp", true, "deepz, crown or crown-ibp"), ("alpha-crown", true, "deepz, crown or crown-ibp"), ("lp-triangle", true, "deepz, crown or crown-ibp"), ("crown", false, "--labels")] {
        let b = d.join("b.npz");
        let mut args = vec!["bounds", "--model", &m, "--input", &x, "--eps", "0.02", "--method", method, "--regularizers", "--out", b.to_str().unwrap()];
        if labels {
            args.extend(["--labels", &y]);
        }
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{method}: {err}");
        assert!(err.contains(says) && err.contains("--regularizers") && !err.contains("panicked"), "{method}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{method}: one line: {err}");
        assert!(!b.exists(), "{method}: no output file");
    }
    let _ = std::fs::remove_dir_all(&d);
}
