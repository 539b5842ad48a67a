//! The thin layer between ironbound and the tensor library.
//!
//! Everything numeric goes through burn's `Tensor`, whose backend is chosen at run time by the
//! `Device`; nothing else in the crate names a backend. `default_device` is the one place that
//! picks one: burn's pure-Rust Flex CPU backend, or, in a build with the `cuda` feature and
//! after `select_device(DeviceChoice::Cuda(i))` (the CLI's `--device cuda`), burn's CUDA one.
//! The helpers below are the few conversions and idioms the bound code uses everywhere.

pub use burn::tensor::{module as ops, Bool, DType, Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use std::sync::OnceLock;

mod cpu;
mod patches;
mod relu_rows;
pub use patches::{conv2d, conv_transpose2d, Patches};
pub use relu_rows::{relu_intercepts, relu_lines};

/// Where the tensors of this process live (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// A CUDA GPU by index.
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<DeviceChoice> {
        let bad = || Error::input(format!("unknown device '{}' (expected cpu, cuda or cuda:N)", crate::error::one_line(s)));
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s.strip_prefix("cuda:").and_then(|i| i.parse().ok()).map(DeviceChoice::Cuda).ok_or_else(bad),
        }
    }
}

static SELECTED: OnceLock<(DeviceChoice, Device)> = OnceLock::new();

/// Makes `choice` the device of every later `default_device()`, once per process, after
/// checking that it computes (a CUDA device without a driver fails here, on one line, rather
/// than in the middle of a run). Without the `cuda` feature a GPU is an error naming the fix.
pub fn select_device(choice: DeviceChoice) -> Result<()> {
    let device = match choice {
        DeviceChoice::Cpu => Device::flex(),
        DeviceChoice::Cuda(index) => cuda_device(index)?,
    };
    let probe = device.clone();
    let works = crate::error::catch_panic(move || {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &probe);
        to_vec(t.clone() + t) == [2.0, 4.0]
    });
    if works != Ok(true) {
        return Err(Error::input(format!("device {choice:?} does not compute (is a driver installed and the GPU visible?)")));
    }
    let (chosen, _) = SELECTED.get_or_init(|| (choice, device));
    match *chosen == choice {
        true => Ok(()),
        false => Err(Error::internal(format!("the device was already chosen for this process ({chosen:?})"))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device> {
    Err(Error::input("this ironbound was built without GPU support: reinstall with `cargo install --path crates/ironbound-cli --features cuda` (needs an NVIDIA driver at run time, no CUDA toolkit to build)"))
}

/// The device every command runs on: the selected one, else the CPU.
pub fn default_device() -> Device {
    SELECTED.get().map_or_else(Device::flex, |(_, d)| d.clone())
}

/// Whether this process computes on the CPU (data-parallel shards on threads pay only there).
pub fn on_cpu() -> bool {
    SELECTED.get().is_none_or(|(c, _)| *c == DeviceChoice::Cpu)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_unknown_ones_are_input_errors() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:-1", "CPU", "cuda:x"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }

    /// Without the feature a GPU is a usage error that names the rebuild, and the CPU stays
    /// the device (the choice is process-wide, so this test only takes the failing path and
    /// the CPU, which every other test uses anyway).
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_gpu_without_the_feature_is_refused_and_the_cpu_is_kept() {
        let e = select_device(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(e.exit_code() == 2 && e.to_string().contains("--features cuda"), "{e}");
        select_device(DeviceChoice::Cpu).unwrap();
        assert!(on_cpu());
        assert_eq!(to_vec(Tensor::<1>::from_floats([1.5], &default_device())), [1.5]);
    }
}
