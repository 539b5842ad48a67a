//! What ironbound's own CPU kernels (`patches.rs`, `relu_rows.rs`) share: their element types
//! and the step from burn-flex tensors to plain slices and back.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Element, TensorData};

/// The element types of the kernels (float32 training, float64 float-sound bounds).
pub(super) trait Float:
    bytemuck::Pod + Default + Send + Sync + Element + PartialOrd + std::ops::AddAssign + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + 'static
{
    const ONE: Self;
}

impl Float for f32 {
    const ONE: f32 = 1.0;
}

impl Float for f64 {
    const ONE: f64 = 1.0;
}

/// The tensor's values in row-major order from offset 0 (a copy only for a strided view).
pub(super) fn contiguous(t: FlexTensor) -> FlexTensor {
    match t.is_contiguous() && t.layout().start_offset() == 0 {
        true => t,
        false => t.to_contiguous(),
    }
}

/// Runs `f` on the float32 or float64 values of `tensors` (the caller has checked that all
/// are contiguous and of the first one's dtype).
pub(super) fn typed<const N: usize>(tensors: [&FlexTensor; N], f32s: impl FnOnce([&[f32]; N]) -> TensorData, f64s: impl FnOnce([&[f64]; N]) -> TensorData) -> FlexTensor {
    let data = match tensors[0].dtype() {
        DType::F64 => f64s(tensors.map(|t| t.storage::<f64>())),
        _ => f32s(tensors.map(|t| t.storage::<f32>())),
    };
    FlexTensor::from_data(data)
}
