//! Named architectures from the papers, built from a compact layer list.

use super::spec::{NetSpec, NodeSpec, OpSpec};
use super::Shape;
use crate::error::{Error, Result};

/// One entry of a sequential layer list.
#[derive(Clone, Copy, Debug)]
pub enum L {
    /// conv out_channels, kernel, stride, padding
    Conv(usize, usize, usize, usize),
    /// linear out_features (input flattened implicitly)
    Fc(usize),
    Relu,
    Flatten,
}

/// A sequential architecture; node names are the PyTorch `nn.Sequential` indices.
pub fn sequential(input_shape: Shape, layers: &[L]) -> NetSpec {
    let mut nodes = Vec::new();
    let mut shape = input_shape;
    for (i, layer) in layers.iter().enumerate() {
        let op = match *layer {
            L::Conv(out, k, s, p) => {
                let op = OpSpec::Conv2d { in_channels: shape[0], out_channels: out, kernel: [k, k], stride: [s, s], padding: [p, p] };
                shape = [out, (shape[1] + 2 * p - k) / s + 1, (shape[2] + 2 * p - k) / s + 1];
                op
            }
            L::Fc(out) => {
                let op = OpSpec::Linear { in_features: shape.iter().product(), out_features: out };
                shape = [out, 1, 1];
                op
            }
            L::Relu => OpSpec::Relu,
            L::Flatten => {
                shape = [shape.iter().product(), 1, 1];
                OpSpec::Flatten
            }
        };
        nodes.push(NodeSpec { name: i.to_string(), op, inputs: vec![i] });
    }
    NetSpec { input_shape, nodes }
}

use L::*;

/// (name, description, layers) for 1x28x28 or 3x32x32 inputs with 10 classes.
fn table(input: Shape) -> Vec<(&'static str, &'static str, Vec<L>)> {
    // The first dense layer after convolutions depends on the input size; `sequential`
    // computes it, so each entry lists only output widths.
    let _ = input;
    vec![
        ("fc5", "bench FC5: 784-400-200-100-100-10", vec![Flatten, Fc(400), Relu, Fc(200), Relu, Fc(100), Relu, Fc(100), Relu, Fc(10)]),
        ("conv-small", "bench CONV: conv 16 4x4/2 pad 1, FC 100, FC 10", vec![Conv(16, 4, 2, 1), Relu, Flatten, Fc(100), Relu, Fc(10)]),
        ("dm-small", "CROWN-IBP DM-small: conv 16 4/2, conv 32 4/1, FC 100", vec![Conv(16, 4, 2, 0), Relu, Conv(32, 4, 1, 0), Relu, Flatten, Fc(100), Relu, Fc(10)]),
        (
            "dm-medium",
            "CROWN-IBP DM-medium: conv 32 3/1, conv 32 4/2, conv 64 3/1, conv 64 4/2, FC 512, FC 512",
            vec![Conv(32, 3, 1, 0), Relu, Conv(32, 4, 2, 0), Relu, Conv(64, 3, 1, 0), Relu, Conv(64, 4, 2, 0), Relu, Flatten, Fc(512), Relu, Fc(512), Relu, Fc(10)],
        ),
        (
            "dm-large",
            "CROWN-IBP DM-large: conv 64,64,128(/2),128,128 3x3 pad 1, FC 512",
            vec![Conv(64, 3, 1, 1), Relu, Conv(64, 3, 1, 1), Relu, Conv(128, 3, 2, 1), Relu, Conv(128, 3, 1, 1), Relu, Conv(128, 3, 1, 1), Relu, Flatten, Fc(512), Relu, Fc(10)],
        ),
    ]
}

/// Names and one-line descriptions of every named architecture.
pub fn list() -> Vec<(&'static str, &'static str)> {
    table([1, 28, 28]).into_iter().map(|(n, d, _)| (n, d)).collect()
}

/// The named architecture for inputs of `input_shape`.
pub fn named(name: &str, input_shape: Shape) -> Result<NetSpec> {
    let key = name.to_ascii_lowercase();
    table(input_shape)
        .into_iter()
        .find(|(n, _, _)| *n == key)
        .map(|(_, _, layers)| sequential(input_shape, &layers))
        .ok_or_else(|| {
            let names: Vec<_> = list().into_iter().map(|(n, _)| n).collect();
            Error::input(format!("unknown architecture '{name}' (known: {})", names.join(", ")))
        })
}
