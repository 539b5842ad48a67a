//! PyTorch checkpoints (`.pt`, `.pth`) read in pure Rust, without Python or torch.
//!
//! `read_state_dict` opens either file layout of `torch.save` (`container`, `zip`), unpickles
//! the main object with a restricted unpickler that executes nothing (`pickle`, `object`),
//! finds the state dict in it (`statedict`) and converts every tensor to f32 (`tensor`,
//! `dtype`); `mapping` then assigns those tensors to the parameters of a named architecture.
//! Every failure is one line naming the file; no input makes it panic.

mod container;
mod dtype;
mod mapping;
mod object;
mod pickle;
mod statedict;
mod tensor;
mod zip;

pub use mapping::{fit, load_network, Normalization};

use crate::error::{Error, Result};
use std::path::Path;

/// One tensor of a state dict: its shape and its values in row-major order, as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorValue {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A state dict in the checkpoint's key order (`module.` prefixes removed).
pub type StateDict = Vec<(String, TensorValue)>;

/// Reads the state dict of the checkpoint at `path`.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    parse_state_dict(&bytes, path)
}

/// Reads the state dict of a checkpoint held in memory (`path` only names it in errors).
pub fn parse_state_dict(bytes: &[u8], path: &Path) -> Result<StateDict> {
    let c = container::Container::open(bytes).map_err(|e| Error::file(path, e))?;
    statedict::read(&c, bytes.len()).map_err(|e| Error::file(path, e))
}
