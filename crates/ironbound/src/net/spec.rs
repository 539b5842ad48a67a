//! A network's architecture without its weights: what the native model file stores in its
//! metadata, what named architectures produce, and what random initialisation consumes.

use super::init::{pytorch_default, SplitMix64};
use super::{AvgPool2d, BatchNorm, Conv2d, Flatten, Linear, Network, Normalize, Op, Shape};
use crate::error::{Error, Result};
use crate::tensor::{from_vec, Device};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
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

impl NetSpec {
    /// Builds the network, asking `param(full_name, shape)` for each parameter's values.
    pub fn build(&self, device: &Device, param: &mut dyn FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Network> {
        let mut net = Network::new(self.input_shape);
        for node in &self.nodes {
            let mut get = |local: &str, shape: &[usize]| -> Result<Vec<f32>> {
                let full = format!("{}.{}", node.name, local);
                let v = param(&full, shape)?;
                let expected: usize = shape.iter().product();
                if v.len() != expected {
                    return Err(Error::input(format!("parameter {full} has {} values, expected {expected} ({shape:?})", v.len())));
                }
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
                    let c = mean.len();
                    Op::Normalize(Normalize::new(from_vec(mean.clone(), [c], device), from_vec(std.clone(), [c], device)))
                }
                OpSpec::BatchNorm { channels: c, eps } => Op::BatchNorm(BatchNorm {
                    gamma: from_vec(get("weight", &[*c])?, [*c], device),
                    beta: from_vec(get("bias", &[*c])?, [*c], device),
                    running_mean: from_vec(get("running_mean", &[*c])?, [*c], device),
                    running_var: from_vec(get("running_var", &[*c])?, [*c], device),
                    eps: *eps,
                }),
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
