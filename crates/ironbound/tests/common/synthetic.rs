//! Synthetic training data for the training tests (no dataset files needed).

use ironbound::data::{Dataset, DatasetName, Split};
use ironbound::net::init::SplitMix64;

/// Fashion-MNIST-shaped images: noise plus a bright 6x6 patch whose place encodes the label.
pub fn synthetic(n: usize, seed: u64, split: Split) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = (i % 10) as u8;
        let (r0, c0) = (2 + (y as usize / 5) * 12, 2 + (y as usize % 5) * 5);
        for r in 0..28 {
            for c in 0..28 {
                let patch = (r0..r0 + 6).contains(&r) && (c0..c0 + 4).contains(&c);
                let noise = 0.3 * rng.uniform() as f32;
                images.push(if patch { 0.7 + noise } else { noise });
            }
        }
        labels.push(y);
    }
    Dataset::from_parts(DatasetName::FashionMnist, split, images, labels).unwrap()
}

/// A training config for the short synthetic runs of the training tests: Fashion-MNIST-shaped
/// inputs, fc-small, eps 0.05, batch 16, lr 1e-3, two threads, no TensorBoard; then `keys`
/// (`KEY`, TOML value) in order, which may override any of these.
pub fn small_run(keys: &[(&str, &str)]) -> ironbound::train::TrainConfig {
    let mut c = ironbound::train::TrainConfig::default();
    let base = [
        ("dataset", "\"fashion-mnist\""),
        ("arch", "\"fc-small\""),
        ("eps", "0.05"),
        ("batch_size", "16"),
        ("lr", "1e-3"),
        ("eval_batch_size", "20"),
        ("threads", "2"),
        ("tensorboard", "false"),
    ];
    for (k, v) in base.iter().chain(keys) {
        c.set_str(&format!("{k}={v}")).unwrap_or_else(|e| panic!("{k} = {v}: {e}"));
    }
    c
}
