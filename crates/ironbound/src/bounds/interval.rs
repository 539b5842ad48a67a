//! Interval arithmetic (Box/IBP): every value of the network bounded elementwise.

use crate::net::{relu, Network, Op};
use crate::tensor::Tensor;

/// Elementwise bounds `lo <= x <= hi` on a batch `[N, C, H, W]`.
#[derive(Clone, Debug)]
pub struct Interval {
    pub lo: Tensor<4>,
    pub hi: Tensor<4>,
}

impl Interval {
    pub fn new(lo: Tensor<4>, hi: Tensor<4>) -> Self {
        Interval { lo, hi }
    }

    pub fn center(&self) -> Tensor<4> {
        (self.lo.clone() + self.hi.clone()) / 2.0
    }

    pub fn radius(&self) -> Tensor<4> {
        (self.hi.clone() - self.lo.clone()) / 2.0
    }

    pub fn detach(&self) -> Interval {
        Interval { lo: self.lo.clone().detach(), hi: self.hi.clone().detach() }
    }

    /// The same interval in float type `dtype` (exact when widening float32 to float64).
    pub fn cast(&self, dtype: crate::tensor::DType) -> Interval {
        Interval { lo: self.lo.clone().cast(dtype), hi: self.hi.clone().cast(dtype) }
    }

    pub fn to_device(&self, device: &crate::tensor::Device) -> Interval {
        Interval { lo: self.lo.clone().to_device(device), hi: self.hi.clone().to_device(device) }
    }
}

/// Interval bounds of every value (index = value id), starting from the input box.
pub fn propagate(net: &Network, input: &Interval) -> Vec<Interval> {
    let mut values: Vec<Interval> = Vec::with_capacity(net.nodes().len() + 1);
    values.push(input.clone());
    for node in net.nodes() {
        let x = &values[node.inputs[0]];
        let y = match &node.op {
            Op::Relu => {
                let (lo, hi) = relu::interval(x.lo.clone(), x.hi.clone());
                Interval::new(lo, hi)
            }
            Op::Add => {
                let b = &values[node.inputs[1]];
                Interval::new(x.lo.clone() + b.lo.clone(), x.hi.clone() + b.hi.clone())
            }
            op => {
                let layer = op.as_affine().unwrap_or_else(|| unreachable!());
                let c = layer.forward(x.center());
                let r = layer.abs_linear(x.radius());
                Interval::new(c.clone() - r.clone(), c + r)
            }
        };
        values.push(y);
    }
    values
}
