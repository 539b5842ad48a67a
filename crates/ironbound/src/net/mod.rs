//! The network IR: a DAG of layers in topological order.
//!
//! Values are numbered: value 0 is the network input, value i + 1 is the output of node i.
//! Every value is a batch of 3-d samples `[N, C, H, W]`; flat feature vectors are `[N, F, 1, 1]`,
//! so one tensor rank serves every layer and every bound engine.

pub mod add;
pub mod affine;
pub mod arch;
pub mod avgpool;
pub mod batchnorm;
pub mod channel_affine;
pub mod conv2d;
pub mod flatten;
pub mod graph;
pub mod init;
pub mod linear;
pub mod normalize;
pub mod relu;
pub mod spec;

pub use affine::AffineLayer;
pub use avgpool::AvgPool2d;
pub use batchnorm::BatchNorm;
pub use conv2d::Conv2d;
pub use flatten::Flatten;
pub use graph::{Network, Node};
pub use linear::Linear;
pub use normalize::Normalize;
pub use spec::{NetSpec, NodeSpec, OpSpec};
pub use relu::{ReluLines, ReluLower};

use crate::tensor::{Device, Tensor};

/// Shape of one sample: channels, height, width. Flat vectors are `[F, 1, 1]`.
pub type Shape = [usize; 3];

pub fn numel(shape: &Shape) -> usize {
    shape.iter().product()
}

/// One layer. Affine layers share the `AffineLayer` rules; ReLU and Add have their own
/// transformers in `relu.rs` and `add.rs`.
#[derive(Clone, Debug)]
pub enum Op {
    Linear(Linear),
    Conv2d(Conv2d),
    Normalize(Normalize),
    BatchNorm(BatchNorm),
    AvgPool2d(AvgPool2d),
    Flatten(Flatten),
    Relu,
    /// Residual sum of two values of the same shape.
    Add,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear(_) => "linear",
            Op::Conv2d(_) => "conv2d",
            Op::Normalize(_) => "normalize",
            Op::BatchNorm(_) => "batchnorm",
            Op::AvgPool2d(_) => "avgpool2d",
            Op::Flatten(_) => "flatten",
            Op::Relu => "relu",
            Op::Add => "add",
        }
    }

    /// The affine rules of this op, if it is a single-input affine layer.
    pub fn as_affine(&self) -> Option<&dyn AffineLayer> {
        match self {
            Op::Linear(l) => Some(l),
            Op::Conv2d(l) => Some(l),
            Op::Normalize(l) => Some(l),
            Op::BatchNorm(l) => Some(l),
            Op::AvgPool2d(l) => Some(l),
            Op::Flatten(l) => Some(l),
            Op::Relu | Op::Add => None,
        }
    }

    pub fn num_inputs(&self) -> usize {
        match self {
            Op::Add => 2,
            _ => 1,
        }
    }
}

/// A parameter tensor of any of the ranks layers use.
#[derive(Clone, Debug)]
pub enum Param {
    D1(Tensor<1>),
    D2(Tensor<2>),
    D4(Tensor<4>),
}

impl Param {
    pub fn map(
        self,
        f1: impl FnOnce(Tensor<1>) -> Tensor<1>,
        f2: impl FnOnce(Tensor<2>) -> Tensor<2>,
        f4: impl FnOnce(Tensor<4>) -> Tensor<4>,
    ) -> Param {
        match self {
            Param::D1(t) => Param::D1(f1(t)),
            Param::D2(t) => Param::D2(f2(t)),
            Param::D4(t) => Param::D4(f4(t)),
        }
    }

    /// Tracks gradients of this tensor from now on.
    pub fn require_grad(self) -> Param {
        self.map(|t| t.autodiff().require_grad(), |t| t.autodiff().require_grad(), |t| t.autodiff().require_grad())
    }

    /// Plain values: no autodiff association, no graph.
    pub fn plain(self) -> Param {
        self.map(|t| t.detach().without_autodiff(), |t| t.detach().without_autodiff(), |t| t.detach().without_autodiff())
    }

    /// This tensor's gradient in `grads`, if it has one.
    pub fn grad(&self, grads: &burn::tensor::Gradients) -> Option<Param> {
        match self {
            Param::D1(t) => t.grad(grads).map(Param::D1),
            Param::D2(t) => t.grad(grads).map(Param::D2),
            Param::D4(t) => t.grad(grads).map(Param::D4),
        }
    }

    pub fn dims(&self) -> Vec<usize> {
        match self {
            Param::D1(t) => t.dims().to_vec(),
            Param::D2(t) => t.dims().to_vec(),
            Param::D4(t) => t.dims().to_vec(),
        }
    }

    pub fn dtype(&self) -> crate::tensor::DType {
        match self {
            Param::D1(t) => t.dtype(),
            Param::D2(t) => t.dtype(),
            Param::D4(t) => t.dtype(),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Param::D1(t) => t.device(),
            Param::D2(t) => t.device(),
            Param::D4(t) => t.device(),
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            Param::D1(t) => crate::tensor::to_vec(t.clone()),
            Param::D2(t) => crate::tensor::to_vec(t.clone()),
            Param::D4(t) => crate::tensor::to_vec(t.clone()),
        }
    }
}

impl Op {
    /// The op's parameters by local name, in a fixed order.
    pub fn params(&self) -> Vec<(&'static str, Param)> {
        match self {
            Op::Linear(l) => vec![("weight", Param::D2(l.weight.clone())), ("bias", Param::D1(l.bias.clone()))],
            Op::Conv2d(c) => vec![("weight", Param::D4(c.weight.clone())), ("bias", Param::D1(c.bias.clone()))],
            Op::BatchNorm(b) => vec![
                ("weight", Param::D1(b.gamma.clone())),
                ("bias", Param::D1(b.beta.clone())),
                ("running_mean", Param::D1(b.running_mean.clone())),
                ("running_var", Param::D1(b.running_var.clone())),
            ],
            // Normalize constants belong to the architecture (NetSpec), not to training.
            Op::Normalize(_) | Op::AvgPool2d(_) | Op::Flatten(_) | Op::Relu | Op::Add => vec![],
        }
    }

    /// Every tensor of the op (parameters and constants) replaced by `f(local_name, tensor)`.
    pub fn map_params(&self, f: &mut dyn FnMut(&str, Param) -> Param) -> Op {
        fn d1(f: &mut dyn FnMut(&str, Param) -> Param, name: &str, t: &Tensor<1>) -> Tensor<1> {
            match f(name, Param::D1(t.clone())) {
                Param::D1(t) => t,
                _ => unreachable!("map_params must keep ranks"),
            }
        }
        match self {
            Op::Linear(l) => {
                let weight = match f("weight", Param::D2(l.weight.clone())) {
                    Param::D2(t) => t,
                    _ => unreachable!("map_params must keep ranks"),
                };
                Op::Linear(Linear::new(weight, d1(f, "bias", &l.bias)))
            }
            Op::Conv2d(c) => {
                let weight = match f("weight", Param::D4(c.weight.clone())) {
                    Param::D4(t) => t,
                    _ => unreachable!("map_params must keep ranks"),
                };
                Op::Conv2d(Conv2d::new(weight, d1(f, "bias", &c.bias), c.stride, c.padding))
            }
            Op::Normalize(n) => Op::Normalize(Normalize::new(d1(f, "mean", &n.mean), d1(f, "std", &n.std))),
            Op::BatchNorm(b) => Op::BatchNorm(BatchNorm {
                gamma: d1(f, "weight", &b.gamma),
                beta: d1(f, "bias", &b.beta),
                running_mean: d1(f, "running_mean", &b.running_mean),
                running_var: d1(f, "running_var", &b.running_var),
                eps: b.eps,
            }),
            other => other.clone(),
        }
    }

    fn first_param_device(&self) -> Option<Device> {
        self.params().first().map(|(_, p)| p.device())
    }
}
