//! ONNX import and export.
//!
//! Import reads opsets 9 to 20: `Gemm`, `MatMul` (+ `Add` bias), `Conv` (2-d, group 1, no
//! dilation, symmetric pads), `Relu`, `Flatten`, `Reshape` (flattening), `BatchNormalization`
//! (inference), `AveragePool`, `Add` (residual or by a constant), `Sub`/`Mul`/`Div` by scalar or
//! per-channel constants (folded into `Normalize`, a bias, or a per-channel affine `BatchNorm`),
//! `Identity`, `Dropout` (inference), `Constant`, and the constant sub-graphs PyTorch emits
//! (`Shape`, `Gather`, `Unsqueeze`, `Squeeze`, `Concat`, `Cast`, arithmetic on constants).
//!
//! Export writes opset 13 with input `input` `[batch, C, H, W]` (or `[batch, F]` for flat
//! inputs) and output `output` `[batch, K]`; export followed by import gives the same `NetSpec`
//! and parameters.

mod export;
mod fold;
mod import;
pub mod proto;

pub use export::{export, export_bytes, IR_VERSION, OPSET};
pub use import::{import, import_bytes};
