//! Training checkpoints: one safetensors file holding the weights (`model.<param>`), the
//! optimiser's moment buffers (`opt.m.<i>`, `opt.v.<i>`), and in its metadata the epoch, the
//! step counters, the random-number state, the resolved configuration and the metrics so far.
//! Written atomically after every epoch, so an interrupted run resumes from the last one.
//!
//! The metadata also holds a SHA-256 of the rest (`ironbound.sha256`, see [`checksum`]), so a
//! truncated or corrupted checkpoint is an error naming the file, never a run silently resumed
//! from damaged weights or restarted from scratch.

use super::metrics::EpochMetrics;
use super::optim::{is_trainable, MomentBuffers, Optimizer};
use crate::error::{Error, Result};
use crate::net::{NetSpec, Network};
use crate::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

pub const FILE_NAME: &str = "checkpoint.safetensors";
const META_KEY: &str = "ironbound.checkpoint";
const CHECKSUM_KEY: &str = "ironbound.sha256";
/// 2: with the checksum. Version 1 (before it) is refused: its damage could not be detected.
pub const VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub version: u32,
    /// Completed epochs.
    pub epoch: usize,
    /// Batches trained so far (drives the eps/kappa/beta schedule).
    pub global_step: u64,
    /// Adam's step count (bias correction).
    pub optimizer_steps: u64,
    /// The run's seed; every random stream (shuffling, augmentation, PGD starts) is derived
    /// from it and the epoch/step, so nothing else is needed to continue identically.
    pub seed: u64,
    /// The resolved configuration (JSON of `TrainConfig`).
    pub config: serde_json::Value,
    pub arch: NetSpec,
    pub metrics: Vec<EpochMetrics>,
}

pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub net: Network,
    pub m: MomentBuffers,
    pub v: MomentBuffers,
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serialises the training state.
pub fn to_bytes(meta: &CheckpointMeta, net: &Network, opt: &Optimizer) -> Result<Vec<u8>> {
    let params = net.named_params();
    let trainable: Vec<Vec<usize>> =
        params.iter().filter(|(n, _)| is_trainable(n.rsplit('.').next().unwrap_or(""))).map(|(_, p)| p.dims()).collect();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> =
        params.iter().map(|(name, p)| (format!("model.{name}"), p.dims(), le_bytes(&p.to_vec()))).collect();
    let (m, v) = opt.state();
    for (kind, bufs) in [("m", m), ("v", v)] {
        for (i, buf) in bufs.into_iter().enumerate() {
            if let (Some(values), Some(shape)) = (buf, trainable.get(i)) {
                owned.push((format!("opt.{kind}.{i}"), shape.clone(), le_bytes(&values)));
            }
        }
    }
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(Error::internal)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta_json = serde_json::to_string(meta).map_err(Error::internal)?;
    let sum = checksum(&meta_json, &views);
    let header = HashMap::from([(META_KEY.to_string(), meta_json), (CHECKSUM_KEY.to_string(), sum)]);
    safetensors::tensor::serialize(views, Some(header)).map_err(Error::internal)
}

/// SHA-256 (hex) of the metadata JSON and of every tensor's name, dtype, shape and bytes in
/// name order, each field preceded by its length. Together with the safetensors header checks
/// (offsets cover the data exactly, shapes match sizes) it covers every byte of the file: a
/// change either breaks the format or changes something hashed here.
fn checksum(meta_json: &str, tensors: &[(String, TensorView<'_>)]) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(meta_json.as_bytes());
    let mut sorted: Vec<&(String, TensorView<'_>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in sorted {
        field(name.as_bytes());
        field(format!("{:?} {:?}", view.dtype(), view.shape()).as_bytes());
        field(view.data());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the checkpoint atomically.
pub fn save(path: &Path, meta: &CheckpointMeta, net: &Network, opt: &Optimizer) -> Result<()> {
    crate::io::atomic::write_bytes(path, &to_bytes(meta, net, opt)?)
}

fn floats(view: &TensorView<'_>) -> Vec<f32> {
    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Reads a checkpoint written by `save`.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    from_bytes(&bytes, path, device)
}

/// Parses a checkpoint's bytes, verifying its checksum before anything is used; `path` names
/// the file in errors.
pub fn from_bytes(bytes: &[u8], path: &Path, device: &Device) -> Result<Checkpoint> {
    let bad = |reason: String| Error::file(path, format!("{reason} (delete it to start the run afresh)"));
    let damaged = |what: String| bad(format!("damaged checkpoint (truncated or corrupted): {what}"));
    let st = SafeTensors::deserialize(bytes).map_err(|e| damaged(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| damaged(e.to_string()))?;
    let header = header.metadata().as_ref();
    let meta_json = header.and_then(|m| m.get(META_KEY)).ok_or_else(|| damaged(format!("no '{META_KEY}' metadata")))?;
    let Some(stored) = header.and_then(|m| m.get(CHECKSUM_KEY)) else {
        // Only to word the error: unverified metadata is never used.
        return Err(match serde_json::from_str::<CheckpointMeta>(meta_json) {
            Ok(old) if old.version < VERSION => Error::file(
                path,
                format!(
                    "checkpoint version {} has no checksum (this ironbound reads version {VERSION}): finish the run with the ironbound that started it, or delete it to start afresh",
                    old.version
                ),
            ),
            _ => damaged(format!("no '{CHECKSUM_KEY}' checksum")),
        });
    };
    if *stored != checksum(meta_json, &st.tensors()) {
        return Err(damaged("the SHA-256 checksum does not match the contents".into()));
    }
    let meta: CheckpointMeta = serde_json::from_str(meta_json).map_err(|e| bad(format!("invalid metadata: {e}")))?;
    if meta.version != VERSION {
        return Err(bad(format!("checkpoint version {} (this ironbound reads {VERSION})", meta.version)));
    }
    let net = meta.arch.build(device, &mut |name, shape| {
        let view = st.tensor(&format!("model.{name}")).map_err(|_| Error::input(format!("parameter '{name}' is missing")))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(Error::input(format!("parameter '{name}' has shape {:?}, expected {shape:?}", view.shape())));
        }
        Ok(floats(&view))
    });
    let net = net.map_err(|e| bad(e.to_string()))?;
    let n_trainable = net.named_params().iter().filter(|(n, _)| is_trainable(n.rsplit('.').next().unwrap_or(""))).count();
    let buffers = |kind: &str| -> MomentBuffers {
        (0..n_trainable).map(|i| st.tensor(&format!("opt.{kind}.{i}")).ok().map(|v| floats(&v))).collect()
    };
    let (m, v) = (buffers("m"), buffers("v"));
    Ok(Checkpoint { meta, net, m, v })
}
