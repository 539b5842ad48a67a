//! PyTorch checkpoints written by real torch (scripts/make_torch_fixtures.py) read back in
//! Rust: both file layouts, every tensor layout and dtype the fixtures hold, the key layouts of
//! the papers' code releases, and the networks' logits equal PyTorch's to 1e-5.

use ironbound::io::torch::{self, fit, load_network, parse_state_dict, read_state_dict, Normalization};
use ironbound::net::arch::{sequential, L};
use ironbound::net::{NetSpec, Network, Op};
use ironbound::tensor::{default_device, from_vec, to_vec};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch").join(name)
}

fn expected(name: &str) -> Vec<f32> {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["logits"][name].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32)).collect()
}

/// The fixtures' tiny net: conv 2 3x3 pad 1, FC 5, FC 3 on c x 6 x 6.
fn tiny(c: usize) -> NetSpec {
    sequential([c, 6, 6], &[L::Conv(2, 3, 1, 1), L::Relu, L::Flatten, L::Fc(5), L::Relu, L::Fc(3)])
}

/// Logits on the script's batch: x.flatten()[i] = ((i * 37) % 101) / 100, two samples.
fn logits(net: &Network) -> Vec<f32> {
    let [c, h, w] = net.input_shape();
    let x: Vec<f32> = (0..2 * c * h * w).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    to_vec(net.forward(from_vec(x, [2, c, h, w], &default_device())))
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "logits {got:?} vs PyTorch {want:?}");
    }
}

fn fit_tiny(file: &str, c: usize, normalize: Option<&Normalization>) -> Network {
    let state = read_state_dict(&fixture(file)).unwrap();
    fit(&state, &tiny(c), "tiny", normalize, &fixture(file), &default_device()).unwrap()
}

fn err_of<T: std::fmt::Debug>(r: ironbound::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn zip_and_legacy_layouts_read_the_same_state_dict() {
    let zip = read_state_dict(&fixture("tiny_zip.pt")).unwrap();
    let legacy = read_state_dict(&fixture("tiny_legacy.pt")).unwrap();
    assert_eq!(zip, legacy);
    let keys: Vec<&str> = zip.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"]);
    assert_eq!(zip[2].1.shape, vec![5, 72]);
    assert_close(&logits(&fit_tiny("tiny_zip.pt", 1, None)), &expected("tiny"));
}

#[test]
fn transposed_offset_strided_and_shared_storages() {
    for file in ["tiny_views.pt", "tiny_views_legacy.pt"] {
        assert_close(&logits(&fit_tiny(file, 1, None)), &expected("tiny_views"));
    }
}

#[test]
fn float64_and_float16_storages() {
    assert_close(&logits(&fit_tiny("tiny_f64.pt", 1, None)), &expected("tiny_f64"));
    // CROWN-IBP model E in half precision, input shape found from the checkpoint.
    let net = load_network(&fixture("crown_ibp_e_half.pt"), "crown-ibp-e", None, None, &default_device()).unwrap();
    assert_eq!(net.input_shape(), [1, 28, 28]);
    assert_close(&logits(&net), &expected("crown_ibp_e_half"));
}

#[test]
fn state_dict_inside_a_training_checkpoint() {
    // Next to an optimizer state, an argparse.Namespace, a numpy scalar and a 2**70 int.
    assert_close(&logits(&fit_tiny("tiny_wrapped.pt", 1, None)), &expected("tiny_wrapped"));
    // DataParallel's `module.` prefix under `model_state_dict`, legacy layout.
    let state = read_state_dict(&fixture("tiny_dataparallel.pt")).unwrap();
    assert!(state.iter().all(|(k, _)| !k.starts_with("module.")));
    assert_close(&logits(&fit_tiny("tiny_dataparallel.pt", 1, None)), &expected("tiny_dataparallel"));
    // convex_adversarial: a list of state dicts under `state_dict`; the first is the model.
    assert_close(&logits(&fit_tiny("tiny_list.pt", 1, None)), &expected("tiny_list"));
}

fn normalization_of(net: &Network) -> Option<(Vec<f32>, Vec<f32>)> {
    match &net.nodes()[0].op {
        Op::Normalize(n) => Some((to_vec(n.mean.clone()), to_vec(n.std.clone()))),
        _ => None,
    }
}

#[test]
fn paradox_layout_keeps_its_stored_normalisation() {
    let net = fit_tiny("tiny_paradox.pt", 3, None);
    assert_eq!(normalization_of(&net), Some((vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010])));
    assert_close(&logits(&net), &expected("tiny_paradox"));
    // A given normalisation replaces the stored one; a single value serves every channel.
    let given = Normalization { mean: vec![0.5], std: vec![0.25] };
    let net = fit_tiny("tiny_paradox.pt", 3, Some(&given));
    assert_eq!(normalization_of(&net), Some((vec![0.5; 3], vec![0.25; 3])));
}

#[test]
fn colt_layout_drops_relu_slopes_and_takes_a_given_normalisation() {
    let net = fit_tiny("tiny_colt.pt", 1, None);
    assert_eq!(normalization_of(&net), None);
    let colt = Normalization { mean: vec![0.1307], std: vec![0.3081] };
    let net = fit_tiny("tiny_colt.pt", 1, Some(&colt));
    assert_close(&logits(&net), &expected("tiny_colt"));
}

#[test]
fn a_misfit_lists_missing_unexpected_and_misshaped_keys() {
    let e = err_of(load_network(&fixture("tiny_zip.pt"), "conv", None, None, &default_device()));
    assert!(e.contains("tiny_zip.pt: does not fit arch conv: mis-shaped 0.weight (checkpoint [2,1,3,3], arch [16,1,4,4])"), "{e}");
    // Our names, one layer more than the checkpoint has.
    let deeper = sequential([1, 6, 6], &[L::Conv(2, 3, 1, 1), L::Relu, L::Flatten, L::Fc(5), L::Relu, L::Fc(3), L::Relu, L::Fc(2)]);
    let state = read_state_dict(&fixture("tiny_zip.pt")).unwrap();
    let e = err_of(fit(&state, &deeper, "deeper", None, Path::new("t.pt"), &default_device()));
    assert_eq!(e, "t.pt: does not fit arch deeper: missing 7.weight, 7.bias");
    // paradox's keys are matched by order and reported in its own names.
    let state = read_state_dict(&fixture("tiny_paradox.pt")).unwrap();
    let wider = sequential([3, 6, 6], &[L::Conv(4, 3, 1, 1), L::Relu, L::Flatten, L::Fc(5), L::Relu, L::Fc(3)]);
    let e = err_of(fit(&state, &wider, "wider", None, Path::new("p.pt"), &default_device()));
    assert!(e.starts_with("p.pt: does not fit arch wider: mis-shaped layers.1.weight as 0.weight (checkpoint [2,3,3,3], arch [4,3,3,3])"), "{e}");
    let mut extra = state.clone();
    extra.push(("fc3.weight".into(), extra[2].1.clone()));
    let e = err_of(fit(&extra, &tiny(3), "tiny", None, Path::new("p.pt"), &default_device()));
    assert_eq!(e, "p.pt: does not fit arch tiny: unexpected fc3.weight");
}

/// A legacy checkpoint with no storages around `main`, a hand-written pickle.
fn legacy_with(main: &[u8]) -> Vec<u8> {
    let mut v = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}.".to_vec();
    v.extend_from_slice(main);
    v.extend_from_slice(b"\x80\x02].");
    v
}

#[test]
fn errors_are_one_line_and_name_the_problem() {
    let p = Path::new("ckpt.pt");
    let e = err_of(parse_state_dict(b"hello, world", p));
    assert_eq!(e, "ckpt.pt: not a PyTorch checkpoint (no zip archive and no pickle magic)");
    let legacy = std::fs::read(fixture("tiny_legacy.pt")).unwrap();
    let e = err_of(parse_state_dict(&legacy[..legacy.len() - 10], p));
    assert!(e.starts_with("ckpt.pt: truncated storage '"), "{e}");
    let zip = std::fs::read(fixture("tiny_zip.pt")).unwrap();
    let e = err_of(parse_state_dict(&zip[..zip.len() / 2], p));
    assert!(e.contains("truncated or corrupt zip archive"), "{e}");
    // Nothing is executed: os.system is an opaque value, and there is no state dict.
    let e = err_of(parse_state_dict(&legacy_with(b"\x80\x02}X\x01\x00\x00\x00xcos\nsystem\nX\x02\x00\x00\x00ls\x85Rs."), p));
    assert!(e.contains("holds no state dict: its top-level dict has x (a os.system object)"), "{e}");
    for e in [e, err_of(torch::read_state_dict(Path::new("/nonexistent/ckpt.pt")))] {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// The central-directory record of `member` in a zip: its compressed and stored sizes are at
/// +20 and +24.
fn central_record(zip: &[u8], member: &str) -> usize {
    let sig = [0x50, 0x4b, 0x01, 0x02];
    (0..zip.len() - 46)
        .find(|&i| zip[i..i + 4] == sig && zip[i + 46..].starts_with(member.as_bytes()))
        .unwrap()
}

#[test]
fn a_short_zip_member_is_a_truncated_storage() {
    let mut zip = std::fs::read(fixture("tiny_zip.pt")).unwrap();
    let at = central_record(&zip, "tiny_zip/data/2");
    for field in [at + 20, at + 24] {
        let n = u32::from_le_bytes(zip[field..field + 4].try_into().unwrap()) - 4;
        zip[field..field + 4].copy_from_slice(&n.to_le_bytes());
    }
    let e = err_of(parse_state_dict(&zip, Path::new("ckpt.pt")));
    assert_eq!(e, "ckpt.pt: truncated storage 'tiny_zip/data/2'");
}

#[test]
fn non_finite_or_huge_weights_are_rejected_naming_the_checkpoint() {
    for (value, what) in [(f32::NAN, "non-finite"), (f32::INFINITY, "non-finite"), (1e35, "beyond")] {
        let mut state = read_state_dict(&fixture("tiny_zip.pt")).unwrap();
        state[2].1.data[7] = value;
        let e = err_of(fit(&state, &tiny(1), "tiny", None, Path::new("bad.pt"), &default_device()));
        assert!(e.starts_with("bad.pt: parameter ") && e.contains(what) && e.contains("index 7"), "{e}");
    }
}
