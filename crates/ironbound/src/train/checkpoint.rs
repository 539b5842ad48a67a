//! Training checkpoints: one safetensors file holding the weights (`model.<param>`), the
//! optimiser's moment buffers (`opt.m.<i>`, `opt.v.<i>`), and in its metadata the epoch, the
//! step counters, the random-number state, the resolved configuration and the metrics so far.
//! Written atomically after every epoch, so an interrupted run resumes from the last one.

use super::metrics::EpochMetrics;
use super::optim::{is_trainable, MomentBuffers, Optimizer};
use crate::error::{Error, Result};
use crate::net::{NetSpec, Network};
use crate::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FILE_NAME: &str = "checkpoint.safetensors";
const META_KEY: &str = "ironbound.checkpoint";
const VERSION: u32 = 1;

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
    safetensors::tensor::serialize(views, Some(HashMap::from([(META_KEY.to_string(), meta_json)]))).map_err(Error::internal)
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
    let bad = |reason: String| Error::file(path, format!("{reason} (delete it to start the run afresh)"));
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a valid checkpoint: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta_json = header.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| bad(format!("no '{META_KEY}' metadata")))?;
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
