//! A network's architecture without its weights: what the native model file stores in its
//! metadata, what named architectures produce, and what random initialisation consumes.

use super::init::{pytorch_default, SplitMix64};
use super::{AvgPool2d, BatchNorm, Conv2d, Flatten, Linear, Network, Normalize, Op, Shape};
use crate::error::{Error, Result};
use crate::tensor::{from_vec, Device};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// Unknown fields are errors: a field this version does not know (say a `dilation`) would
// otherwise be dropped silently and the file would describe another network.
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpSpec {
    Linear { in_features: usize, out_features: usize },
    Conv2d { in_channels: usize, out_channels: usize, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2] },
    /// Per-channel (x - mean) / std; the constants are part of the architecture.
    Normalize { mean: Vec<f32>, std: Vec<f32> },
    BatchNorm { channels: usize, eps: f64 },
    AvgPool2d { kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2] },
    Flatten,
    Relu,
    Add,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    #[serde(flatten)]
    pub op: OpSpec,
    pub inputs: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub input_shape: Shape,
    pub nodes: Vec<NodeSpec>,
}

impl NetSpec {
    /// This architecture behind a `Normalize` node named `normalize` (every value id shifts by
    /// one), as `ironbound train` and `convert` build normalised networks.
    pub fn with_normalize(&self, mean: Vec<f32>, std: Vec<f32>) -> NetSpec {
        let mut nodes = vec![NodeSpec { name: "normalize".into(), op: OpSpec::Normalize { mean, std }, inputs: vec![0] }];
        nodes.extend(self.nodes.iter().map(|n| NodeSpec { inputs: n.inputs.iter().map(|v| v + 1).collect(), ..n.clone() }));
        NetSpec { input_shape: self.input_shape, nodes }
    }
}

impl OpSpec {
    /// Shapes of the op's stored parameters, by local name (matches `Op::params`).
    pub fn param_shapes(&self) -> Vec<(&'static str, Vec<usize>)> {
        match *self {
            OpSpec::Linear { in_features, out_features } => {
                vec![("weight", vec![out_features, in_features]), ("bias", vec![out_features])]
            }
            OpSpec::Conv2d { in_channels, out_channels, kernel, .. } => vec![
                ("weight", vec![out_channels, in_channels, kernel[0], kernel[1]]),
                ("bias", vec![out_channels]),
            ],
            OpSpec::BatchNorm { channels, .. } => vec![
                ("weight", vec![channels]),
                ("bias", vec![channels]),
                ("running_mean", vec![channels]),
                ("running_var", vec![channels]),
            ],
            _ => vec![],
        }
    }
}

/// Largest magnitude accepted for a parameter or a normalisation constant. Trained networks
/// stay many orders of magnitude below it; beyond it bound arithmetic overflows float32 after
/// a layer or two (1e30 times a few hundred inputs of size 1e6 already exceeds f32::MAX, about
/// 3.4e38), so such a model is rejected when it is loaded rather than yielding inf/NaN bounds.
pub const MAX_ABS_VALUE: f32 = 1e30;

/// Most elements one parameter or one sample's value may have (2^31 floats, 8 GiB): far
/// beyond any network ironbound can bound, and small enough that a hostile architecture
/// cannot make shape arithmetic overflow or ask for an absurd allocation.
pub const MAX_NUMEL: usize = 1 << 31;

/// Product of dims, `None` on overflow or beyond [`MAX_NUMEL`].
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_NUMEL)
}

/// The first value that is NaN, infinite or beyond [`MAX_ABS_VALUE`], as a message.
pub fn check_values(what: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !(v.abs() <= MAX_ABS_VALUE)) {
        None => Ok(()),
        Some(i) if values[i].is_finite() => Err(Error::input(format!("{what} has the value {:e} at flat index {i}, beyond the {MAX_ABS_VALUE:e} that bounds can handle in float32", values[i]))),
        Some(i) => Err(Error::input(format!("{what} has a non-finite value ({}) at flat index {i}", values[i]))),
    }
}

impl OpSpec {
    /// Checks the hyper-parameters alone (before any parameter is read): every size >= 1,
    /// strides >= 1, parameter shapes small enough to multiply. Output sizes are checked by
    /// `Network::push` against the input shape.
    fn validate(&self) -> std::result::Result<(), String> {
        let positive = |what: &str, v: &[usize]| match v.iter().any(|&x| x == 0) {
            true => Err(format!("{what} {v:?} must be >= 1")),
            false => Ok(()),
        };
        match self {
            OpSpec::Linear { in_features, out_features } => positive("in/out features", &[*in_features, *out_features])?,
            OpSpec::Conv2d { in_channels, out_channels, kernel, stride, .. } => {
                positive("conv channels", &[*in_channels, *out_channels])?;
                positive("conv kernel", kernel)?;
                positive("conv stride", stride)?;
            }
            OpSpec::AvgPool2d { kernel, stride, .. } => {
                positive("avgpool kernel", kernel)?;
                positive("avgpool stride", stride)?;
            }
            OpSpec::BatchNorm { channels, eps } => {
                positive("batchnorm channels", &[*channels])?;
                if !(eps.is_finite() && *eps >= 0.0) {
                    return Err(format!("batchnorm eps {eps} must be a finite number >= 0"));
                }
            }
            OpSpec::Normalize { .. } | OpSpec::Flatten | OpSpec::Relu | OpSpec::Add => {}
        }
        for (name, shape) in self.param_shapes() {
            if checked_numel(&shape).is_none() {
                return Err(format!("parameter {name} of shape {shape:?} is too large"));
            }
        }
        Ok(())
    }
}

impl NetSpec {
    /// Builds the network, asking `param(full_name, shape)` for each parameter's values.
    /// Every architecture (native file, ONNX import, checkpoint, PyTorch conversion) passes
    /// through here, so this is where hyper-parameters and weights are validated.
    pub fn build(&self, device: &Device, param: &mut dyn FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Network> {
        if self.input_shape.contains(&0) || checked_numel(&self.input_shape).is_none() {
            return Err(Error::input(format!("invalid input shape {:?}", self.input_shape)));
        }
        let mut net = Network::new(self.input_shape);
        for node in &self.nodes {
            node.op.validate().map_err(|e| Error::input(format!("node {}: {e}", node.name)))?;
            let mut get = |local: &str, shape: &[usize]| -> Result<Vec<f32>> {
                let full = format!("{}.{}", node.name, local);
                let v = param(&full, shape)?;
                // validate() bounded every parameter shape, so the product cannot overflow.
                let expected = checked_numel(shape).ok_or_else(|| Error::input(format!("parameter {full} of shape {shape:?} is too large")))?;
                if v.len() != expected {
                    return Err(Error::input(format!("parameter {full} has {} values, expected {expected} ({shape:?})", v.len())));
                }
                check_values(&format!("parameter {full}"), &v)?;
                Ok(v)
            };
            let op = match &node.op {
                OpSpec::Linear { in_features: i, out_features: o } => Op::Linear(Linear::new(
                    from_vec(get("weight", &[*o, *i])?, [*o, *i], device),
                    from_vec(get("bias", &[*o])?, [*o], device),
                )),
                OpSpec::Conv2d { in_channels: i, out_channels: o, kernel: k, stride, padding } => Op::Conv2d(Conv2d::new(
                    from_vec(get("weight", &[*o, *i, k[0], k[1]])?, [*o, *i, k[0], k[1]], device),
                    from_vec(get("bias", &[*o])?, [*o], device),
                    *stride,
                    *padding,
                )),
                OpSpec::Normalize { mean, std } => {
                    if mean.len() != std.len() || std.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
                        return Err(Error::input(format!("node {}: normalize needs as many std as mean values, all > 0", node.name)));
                    }
                    check_values(&format!("node {}: normalize mean", node.name), mean)?;
                    check_values(&format!("node {}: normalize std", node.name), std)?;
                    let c = mean.len();
                    Op::Normalize(Normalize::new(from_vec(mean.clone(), [c], device), from_vec(std.clone(), [c], device)))
                }
                OpSpec::BatchNorm { channels: c, eps } => {
                    let running_var = get("running_var", &[*c])?;
                    // The scale divides by sqrt(var + eps): it must be a positive number.
                    if let Some(i) = running_var.iter().position(|&v| !(f64::from(v) + eps > 0.0)) {
                        return Err(Error::input(format!("node {}: running_var[{i}] + eps = {} is not > 0", node.name, f64::from(running_var[i]) + eps)));
                    }
                    Op::BatchNorm(BatchNorm {
                        gamma: from_vec(get("weight", &[*c])?, [*c], device),
                        beta: from_vec(get("bias", &[*c])?, [*c], device),
                        running_mean: from_vec(get("running_mean", &[*c])?, [*c], device),
                        running_var: from_vec(running_var, [*c], device),
                        eps: *eps,
                    })
                }
                OpSpec::AvgPool2d { kernel, stride, padding } => {
                    Op::AvgPool2d(AvgPool2d { kernel: *kernel, stride: *stride, padding: *padding })
                }
                OpSpec::Flatten => Op::Flatten(Flatten),
                OpSpec::Relu => Op::Relu,
                OpSpec::Add => Op::Add,
            };
            net.push(node.name.clone(), op, &node.inputs)?;
        }
        Ok(net)
    }

    /// PyTorch's default initialisation from a seed (BatchNorm: identity statistics).
    pub fn init(&self, seed: u64, device: &Device) -> Result<Network> {
        let mut rng = SplitMix64::new(seed);
        self.build(device, &mut |name, shape| {
            let n: usize = shape.iter().product();
            Ok(match name.rsplit('.').next() {
                Some("running_var") | Some("weight") if shape.len() == 1 => vec![1.0; n],
                Some("running_mean") | Some("bias") if self.is_batchnorm_param(name) => vec![0.0; n],
                _ => {
                    let fan_in = self.fan_in_of(name);
                    pytorch_default(&mut rng, n, fan_in)
                }
            })
        })
    }

    fn node_of(&self, param: &str) -> Option<&NodeSpec> {
        let node = param.rsplit_once('.').map(|(n, _)| n)?;
        self.nodes.iter().find(|s| s.name == node)
    }

    fn is_batchnorm_param(&self, param: &str) -> bool {
        matches!(self.node_of(param).map(|n| &n.op), Some(OpSpec::BatchNorm { .. }))
    }

    fn fan_in_of(&self, param: &str) -> usize {
        match self.node_of(param).map(|n| &n.op) {
            Some(OpSpec::Linear { in_features, .. }) => *in_features,
            Some(OpSpec::Conv2d { in_channels, kernel, .. }) => in_channels * kernel[0] * kernel[1],
            _ => 1,
        }
    }
}

impl Network {
    /// The architecture of this network (inverse of `NetSpec::build`).
    pub fn spec(&self) -> NetSpec {
        let nodes = self
            .nodes()
            .iter()
            .map(|n| {
                let op = match &n.op {
                    Op::Linear(l) => OpSpec::Linear { in_features: l.in_features(), out_features: l.out_features() },
                    Op::Conv2d(c) => OpSpec::Conv2d {
                        in_channels: c.in_channels(),
                        out_channels: c.out_channels(),
                        kernel: c.kernel(),
                        stride: c.stride,
                        padding: c.padding,
                    },
                    Op::Normalize(nm) => OpSpec::Normalize {
                        mean: crate::tensor::to_vec(nm.mean.clone()),
                        std: crate::tensor::to_vec(nm.std.clone()),
                    },
                    Op::BatchNorm(b) => OpSpec::BatchNorm { channels: b.gamma.dims()[0], eps: b.eps },
                    Op::AvgPool2d(p) => OpSpec::AvgPool2d { kernel: p.kernel, stride: p.stride, padding: p.padding },
                    Op::Flatten(_) => OpSpec::Flatten,
                    Op::Relu => OpSpec::Relu,
                    Op::Add => OpSpec::Add,
                };
                NodeSpec { name: n.name.clone(), op, inputs: n.inputs.clone() }
            })
            .collect();
        NetSpec { input_shape: self.input_shape(), nodes }
    }
}
