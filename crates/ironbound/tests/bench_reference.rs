//! The bench models, inputs and margin bounds against the PyTorch reference
//! (shared/bench/torch_reference.py --impl plain --dump): weights and inputs come from the
//! same SplitMix64 streams, so the margin lower bounds must agree to about 1e-4 relative.
//! The reference values were dumped once and are stored in tests/data/reference/.

use ironbound::bench::models::{inputs, BenchModel, CONV, DM_SMALL, FC5};
use ironbound::bounds::{input_region, lower_bound, Method, Spec};
use ironbound::io::npy;
use ironbound::tensor::{default_device, to_vec};
use std::path::PathBuf;

fn reference(file: &str) -> Vec<f32> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference").join(file);
    npy::read_f32(&p, &[]).expect("reference file").data
}

fn check(model: &BenchModel, n: usize, stream: u64, method: Method, file: &str) {
    let dev = default_device();
    let net = model.network(&dev).unwrap();
    let (x, y) = inputs(n, model.input, stream, &dev);
    let region = input_region(&x, 0.1, Some((0.0, 1.0)));
    let spec = Spec::margins(&y, 10, &dev).unwrap();
    let ours = to_vec(lower_bound(&net, &region, &spec, &method.relaxation()).unwrap());
    let theirs = reference(file);
    assert_eq!(ours.len(), theirs.len());
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "{file}: largest relative difference {worst}");
}

#[test]
fn fc5_crown_matches_reference() {
    check(&FC5, 100, 3, Method::Crown, "bounds-crown-fc5.margin_lower_crown.npy");
}

#[test]
fn fc5_deepz_matches_reference() {
    check(&FC5, 100, 3, Method::Deepz, "bounds-deepz-fc5.margin_lower_deepz.npy");
}

#[test]
fn conv_crown_matches_reference() {
    check(&CONV, 32, 5, Method::Crown, "bounds-crown-conv.margin_lower_crown.npy");
}

#[test]
fn dmsmall_ibp_matches_reference() {
    check(&DM_SMALL, 256, 1, Method::Ibp, "train-ibp-dmsmall.margin_lower_ibp.npy");
}

#[test]
fn dmsmall_crown_ibp_matches_reference() {
    check(&DM_SMALL, 256, 1, Method::CrownIbp, "train-crownibp-dmsmall.margin_lower_crown_ibp.npy");
}

#[test]
fn bench_inputs_follow_the_published_streams() {
    let dev = default_device();
    let (x, y) = inputs(256, [1, 28, 28], 1, &dev);
    let v = to_vec(x);
    for (a, b) in v.iter().zip([0.5665616f32, 0.7457818, 0.97100276, 0.4443592]) {
        assert!((a - b).abs() < 1e-7);
    }
    assert_eq!(&y[..5], &[5, 7, 5, 7, 3]);
}
