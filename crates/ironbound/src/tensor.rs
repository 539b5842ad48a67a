//! The thin layer between ironbound and the tensor library.
//!
//! Everything numeric goes through burn's `Tensor`, whose backend is chosen at run time by the
//! `Device`; nothing else in the crate names a backend. `default_device` is the one place that
//! picks one (burn's pure-Rust Flex CPU backend today; a GPU feature would switch it here).
//! The helpers below are the few conversions and idioms the bound code uses everywhere.

pub use burn::tensor::{module as ops, Bool, DType, Device, Int, Tensor, TensorData};

/// The device every command runs on unless told otherwise.
pub fn default_device() -> Device {
    Device::flex()
}

/// The same device with gradient tracking (for training, PGD and alpha-CROWN).
pub fn autodiff_device(device: &Device) -> Device {
    device.clone().autodiff()
}

/// A float tensor from row-major values. The caller guarantees `values.len()` matches `shape`.
pub fn from_vec<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Row-major values of a float tensor (reads it back from the device).
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    // ok: every tensor ironbound creates is float32, so the conversion cannot fail.
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("float32 tensor")
}

/// Row-major values of a float tensor as f64 (exact for float32 and float64 tensors).
pub fn to_vec64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    // ok: converting float values to f64 cannot fail.
    t.into_data().convert::<f64>().try_into_vec::<f64>().expect("float tensor")
}

/// Positive part max(t, 0). burn's `relu` rather than `clamp_min`: under autodiff a clamp is
/// a comparison plus two masked fills, `relu` one fused kernel each way (the positive and
/// negative parts of back-substitution rows are the hottest element-wise ops of training).
pub fn pos<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    burn::tensor::activation::relu(t)
}

/// Negative part min(t, 0) = t - max(t, 0) (exact in floating point).
pub fn neg<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.clone() - pos(t)
}

/// 1.0 where `mask` holds and 0.0 elsewhere, in `dtype` (a mask's `float()` has the device's
/// default float type, float32, which must not meet the float64 tensors of float-sound mode).
pub fn indicator<const D: usize>(mask: Tensor<D, Bool>, dtype: DType) -> Tensor<D> {
    mask.float().cast(dtype)
}
