//! Fuzzing of every reader of user input (issue 14, item 4): no panic, no hang, no absurd
//! allocation, and a one-line error naming the file for every rejected input; see
//! `fuzz/mod.rs` for the engine and what counts as a failure. The PyTorch checkpoint and
//! VNN-LIB readers have their harnesses in `torch_fuzz.rs` and `vnnlib.rs`.
//!
//! A short run of each reader is part of the tests. `scripts/fuzz.sh` runs them all long:
//! `IRONBOUND_FUZZ_CASES=100000 cargo test -p ironbound --release --test fuzz_readers -- --nocapture`
//! (`IRONBOUND_FUZZ_SEED` picks another deterministic stream of inputs). Failing inputs are
//! saved under `target/fuzz-failures/`.

mod fuzz;

use fuzz::{data, models, npy, text};

#[global_allocator]
static ALLOC: fuzz::Counting = fuzz::Counting;

/// Inputs per reader in an ordinary test run.
const SHORT: usize = 300;

/// A scratch directory for writing seed files.
fn scratch(name: &str) -> std::path::PathBuf {
    let d = fuzz::failures_dir().join("work").join(format!("seeds-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The allocator really counts: otherwise the memory check of every harness passes vacuously.
#[test]
fn engine_measures_the_memory_a_case_holds() {
    let ((), peak) = fuzz::peak_of(|| drop(std::hint::black_box(vec![1u8; 8 << 20])));
    assert!(peak >= 8 << 20, "{peak}");
    let (big, _) = fuzz::peak_of(|| Vec::<u8>::new().try_reserve_exact(8 << 30).is_err());
    assert!(big, "a request beyond the refusal threshold must fail while a case runs");
}

#[test]
fn fuzz_npy() {
    let dir = scratch("npy");
    let seeds = npy::seeds(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    fuzz::fuzz("npy", SHORT, |rng| npy::generate(rng, &seeds), npy::exec);
}

#[test]
fn fuzz_idx_raw() {
    let seeds = data::idx_seeds();
    fuzz::fuzz("idx-raw", SHORT, |rng| data::idx_generate(rng, &seeds, false), data::idx_exec);
}

#[test]
fn fuzz_idx_gz() {
    let seeds = data::idx_seeds();
    fuzz::fuzz("idx-gz", SHORT, |rng| data::idx_generate(rng, &seeds, true), data::idx_exec);
}

#[test]
fn fuzz_cifar() {
    let seeds = data::cifar_seeds();
    fuzz::fuzz("cifar", SHORT, |rng| data::cifar_generate(rng, &seeds), data::cifar_exec);
}

#[test]
fn fuzz_svhn() {
    let seeds = data::svhn_seeds();
    fuzz::fuzz("svhn", SHORT, |rng| data::svhn_generate(rng, &seeds), data::svhn_exec);
}

#[test]
fn fuzz_onnx() {
    let dir = scratch("onnx");
    let seeds = models::onnx_seeds(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    fuzz::fuzz("onnx", SHORT, |rng| models::onnx_generate(rng, &seeds), models::model_exec(models::ONNX_FILE));
}

#[test]
fn fuzz_native() {
    let dir = scratch("native");
    let seeds = models::native_seeds(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    fuzz::fuzz("native", SHORT, |rng| models::native_generate(rng, &seeds), models::model_exec(models::NATIVE_FILE));
}

#[test]
fn fuzz_toml_config() {
    let seeds = text::config_seeds();
    fuzz::fuzz("toml-config", SHORT, |rng| text::config_generate(rng, &seeds), text::config_exec);
}

#[test]
fn fuzz_set_values() {
    let seeds = text::config_seeds();
    fuzz::fuzz("set-values", SHORT, |rng| text::set_generate(rng, &seeds), text::set_exec);
}
