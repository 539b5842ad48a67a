//! Files: model formats (ONNX, native safetensors), NumPy arrays, atomic writes.

pub mod atomic;
pub mod native;
pub mod npy;
pub mod onnx;
pub mod torch;
pub mod vnnlib;

use crate::error::{Error, Result};
use crate::net::Network;
use crate::tensor::Device;
use std::path::Path;

/// Which model format a path holds, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Onnx,
    Native,
}

impl ModelFormat {
    pub fn of(path: &Path) -> Result<ModelFormat> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("onnx") => Ok(ModelFormat::Onnx),
            Some("safetensors") => Ok(ModelFormat::Native),
            _ => Err(Error::file(path, "unknown model format: expected a .onnx or .safetensors file")),
        }
    }
}

/// Loads a model from `.onnx` or ironbound's `.safetensors`.
pub fn load_model(path: &Path, device: &Device) -> Result<Network> {
    if !path.exists() {
        return Err(Error::file(path, "no such file"));
    }
    match ModelFormat::of(path)? {
        ModelFormat::Onnx => onnx::import(path, device),
        ModelFormat::Native => native::load(path, device),
    }
}

/// Saves a model in the format its extension names.
pub fn save_model(net: &Network, path: &Path) -> Result<()> {
    match ModelFormat::of(path)? {
        ModelFormat::Onnx => onnx::export(net, path),
        ModelFormat::Native => native::save(net, path),
    }
}
