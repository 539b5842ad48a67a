//! The training checkpoint's checksum: a checkpoint reads back exactly as written, and every
//! truncation and every single-bit flip of it is an error naming the file (exit code 2), never
//! a checkpoint loaded with damaged contents. A version-1 checkpoint (before the checksum) is
//! refused with its own message.

mod common;

use ironbound::train::checkpoint::{self, CheckpointMeta};
use ironbound::train::{EpochMetrics, Optimizer, OptimizerKind, TrainConfig};
use safetensors::tensor::{SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

const PATH: &str = "run/checkpoint.safetensors";

/// A small checkpoint: a 4-3-2 MLP, Adam moment buffers, one epoch of metrics.
fn small_checkpoint() -> (CheckpointMeta, Vec<u8>) {
    let net = common::mlp(3, &[4, 3, 2]);
    let mut opt = Optimizer::new(OptimizerKind::adam(), 1e-3, 0.0);
    let sizes: Vec<usize> = net.named_params().iter().map(|(_, p)| p.to_vec().len()).collect();
    let buffers = |offset: f32| sizes.iter().map(|&n| Some((0..n).map(|i| offset + i as f32 / 8.0).collect())).collect();
    opt.restore_state(&net, buffers(0.5), buffers(2.0), 7).unwrap();
    let record: EpochMetrics = serde_json::from_value(serde_json::json!({
        "epoch": 1, "loss": 0.5, "natural_loss": 0.4, "robust_loss": 0.6, "train_accuracy": 0.7,
        "clean_accuracy": 0.8, "certified_accuracy": 0.3, "certified_accuracy_ibp": 0.2,
        "certify_method": "crown-ibp", "pgd_accuracy": null, "eps": 0.1, "eps_test": 0.1,
        "kappa": 0.5, "beta": 0.5, "lr": 0.001, "steps": 7, "eval_n": 10, "eval_split": "test",
        "seconds": 1.5, "train_seconds": 1.0
    }))
    .unwrap();
    let meta = CheckpointMeta {
        version: checkpoint::VERSION,
        epoch: 1,
        global_step: 7,
        optimizer_steps: 7,
        seed: 11,
        config: serde_json::to_value(TrainConfig::default()).unwrap(),
        arch: net.spec(),
        metrics: vec![record],
    };
    let bytes = checkpoint::to_bytes(&meta, &net, &opt).unwrap();
    (meta, bytes)
}

fn load(bytes: &[u8]) -> ironbound::Result<checkpoint::Checkpoint> {
    checkpoint::from_bytes(bytes, Path::new(PATH), &common::dev())
}

/// The error of a damaged checkpoint: bad input (exit 2) on one line, naming the file.
fn assert_refused(bytes: &[u8], what: &str) {
    match load(bytes) {
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(e.exit_code(), 2, "{what}: {msg}");
            assert!(msg.starts_with(&format!("{PATH}: damaged checkpoint (truncated or corrupted): ")), "{what}: {msg}");
            assert!(!msg.contains('\n'), "{what}: {msg}");
        }
    }
}

#[test]
fn a_checkpoint_reads_back_as_written() {
    let (meta, bytes) = small_checkpoint();
    let ck = load(&bytes).unwrap();
    assert_eq!(serde_json::to_value(&ck.meta).unwrap(), serde_json::to_value(&meta).unwrap());
    let net = common::mlp(3, &[4, 3, 2]);
    for ((na, pa), (nb, pb)) in net.named_params().into_iter().zip(ck.net.named_params()) {
        assert_eq!((na, pa.to_vec()), (nb, pb.to_vec()));
    }
    assert_eq!(ck.m.len(), 4);
    assert_eq!(ck.m[0].as_ref().unwrap()[..2], [0.5, 0.625]);
    assert_eq!(ck.v[3].as_ref().unwrap()[..2], [2.0, 2.125]);
}

#[test]
fn every_truncation_is_detected() {
    let (_, bytes) = small_checkpoint();
    for len in 0..bytes.len() {
        assert_refused(&bytes[..len], &format!("truncated to {len} of {} bytes", bytes.len()));
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let (_, bytes) = small_checkpoint();
    let mut damaged = bytes.clone();
    for at in 0..bytes.len() {
        for bit in 0..8 {
            damaged[at] ^= 1 << bit;
            assert_refused(&damaged, &format!("bit {bit} of byte {at} flipped"));
            damaged[at] = bytes[at];
        }
    }
}

#[test]
fn a_version_1_checkpoint_without_checksum_is_refused_by_name() {
    let (mut meta, bytes) = small_checkpoint();
    // Rewritten as ironbound wrote version 1: the same tensors, no checksum.
    meta.version = 1;
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, TensorView<'_>)> = st.tensors();
    let header = HashMap::from([("ironbound.checkpoint".to_string(), serde_json::to_string(&meta).unwrap())]);
    let old = safetensors::tensor::serialize(tensors, Some(header)).unwrap();
    let e = load(&old).err().expect("refused");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().starts_with(&format!("{PATH}: checkpoint version 1 has no checksum (this ironbound reads version 2)")), "{e}");
}
