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
    let mut v = vec![
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
    ];
    v.extend(paper_table());
    v
}

/// Convolutions (out, kernel, stride, padding) then hidden dense widths, ReLU after each,
/// then the 10-way output layer.
fn convnet(convs: &[(usize, usize, usize, usize)], hidden: &[usize]) -> Vec<L> {
    let mut layers = Vec::new();
    for &(o, k, s, p) in convs {
        layers.extend([Conv(o, k, s, p), Relu]);
    }
    layers.push(Flatten);
    for &h in hidden {
        layers.extend([Fc(h), Relu]);
    }
    layers.push(Fc(10));
    layers
}

/// The architectures of the papers in shared/papers. Paddings the papers leave out follow the
/// authors' code: "VALID" (0) for the DeepMind models (DM-small/medium, loss-landscape
/// Small*), "SAME" (1) for 3x3 stride-1/2 and 4x4 stride-2 convs of the CROWN-IBP models and
/// of the paradox CONV and COLT nets, 0 for the stride-4 convs of CROWN-IBP models C-F, O-R.
fn paper_table() -> Vec<(&'static str, &'static str, Vec<L>)> {
    let four = |a: usize, b: usize, h: usize| convnet(&[(a, 3, 1, 1), (a, 4, 2, 1), (b, 3, 1, 1), (b, 4, 2, 1)], &[h, h]);
    let three = |a: usize, b: usize, k: usize, k3: usize, h: usize| convnet(&[(a, k, 1, 1), (b, k, 1, 1), (b, k3, 4, 0)], &[h]);
    let two = |a: usize, b: usize, h: usize| convnet(&[(a, 4, 2, 1), (b, 4, 2, 1)], &[h]);
    vec![
        // Paradox of certified training (Jovanovic et al.), Table 5 and Appendix B.
        ("fc", "paradox FC: FC 400, 200, 100, 100, 10 (same as fc5)", convnet(&[], &[400, 200, 100, 100])),
        ("conv", "paradox CONV: conv 16 4x4+2 pad 1, FC 100, FC 10 (same as conv-small)", convnet(&[(16, 4, 2, 1)], &[100])),
        ("conv-plus", "paradox CONV+ (= DM-small): conv 16 4x4+2, conv 32 4x4+1, FC 100", convnet(&[(16, 4, 2, 0), (32, 4, 1, 0)], &[100])),
        ("fc-small", "paradox FC-SMALL: FC 100, 100, 10", convnet(&[], &[100, 100])),
        // CROWN-IBP (Zhang et al. 2020), Table B: training-stability models A-T.
        ("crown-ibp-a", "CROWN-IBP A: conv 4 4x4+2, conv 8 4x4+2, FC 128", two(4, 8, 128)),
        ("crown-ibp-b", "CROWN-IBP B: conv 8 4x4+2, conv 16 4x4+2, FC 256", two(8, 16, 256)),
        ("crown-ibp-c", "CROWN-IBP C: conv 4 3x3+1, conv 8 3x3+1, conv 8 4x4+4, FC 64", three(4, 8, 3, 4, 64)),
        ("crown-ibp-d", "CROWN-IBP D: conv 8 3x3+1, conv 16 3x3+1, conv 16 4x4+4, FC 128", three(8, 16, 3, 4, 128)),
        ("crown-ibp-e", "CROWN-IBP E: conv 4 5x5+1, conv 8 5x5+1, conv 8 5x5+4, FC 64", three(4, 8, 5, 5, 64)),
        ("crown-ibp-f", "CROWN-IBP F: conv 8 5x5+1, conv 16 5x5+1, conv 16 5x5+4, FC 128", three(8, 16, 5, 5, 128)),
        ("crown-ibp-g", "CROWN-IBP G: conv 4 3x3+1, 4 4x4+2, 8 3x3+1, 8 4x4+2, FC 256, 256", four(4, 8, 256)),
        ("crown-ibp-h", "CROWN-IBP H: conv 8 3x3+1, 8 4x4+2, 16 3x3+1, 16 4x4+2, FC 256, 256", four(8, 16, 256)),
        ("crown-ibp-i", "CROWN-IBP I: conv 4 3x3+1, 4 4x4+2, 8 3x3+1, 8 4x4+2, FC 512, 512", four(4, 8, 512)),
        ("crown-ibp-j", "CROWN-IBP J: conv 8 3x3+1, 8 4x4+2, 16 3x3+1, 16 4x4+2, FC 512, 512", four(8, 16, 512)),
        ("crown-ibp-k", "CROWN-IBP K: conv 16 3x3+1, 16 4x4+2, 32 3x3+1, 32 4x4+2, FC 256, 256", four(16, 32, 256)),
        ("crown-ibp-l", "CROWN-IBP L: conv 16 3x3+1, 16 4x4+2, 32 3x3+1, 32 4x4+2, FC 512, 512", four(16, 32, 512)),
        ("crown-ibp-m", "CROWN-IBP M: conv 32 3x3+1, 32 4x4+2, 64 3x3+1, 64 4x4+2, FC 512, 512", four(32, 64, 512)),
        ("crown-ibp-n", "CROWN-IBP N: conv 64 3x3+1, 64 4x4+2, 128 3x3+1, 128 4x4+2, FC 512, 512", four(64, 128, 512)),
        ("crown-ibp-o", "CROWN-IBP O: conv 64 5x5+1, conv 128 5x5+1, conv 128 4x4+4, FC 512", three(64, 128, 5, 4, 512)),
        ("crown-ibp-p", "CROWN-IBP P: conv 32 5x5+1, conv 64 5x5+1, conv 64 4x4+4, FC 512", three(32, 64, 5, 4, 512)),
        ("crown-ibp-q", "CROWN-IBP Q: conv 16 5x5+1, conv 32 5x5+1, conv 32 5x5+4, FC 512", three(16, 32, 5, 5, 512)),
        ("crown-ibp-r", "CROWN-IBP R: conv 32 3x3+1, conv 64 3x3+1, conv 64 3x3+4, FC 512", three(32, 64, 3, 3, 512)),
        ("crown-ibp-s", "CROWN-IBP S: conv 32 4x4+2, conv 64 4x4+2, FC 128", two(32, 64, 128)),
        ("crown-ibp-t", "CROWN-IBP T: conv 64 4x4+2, conv 128 4x4+2, FC 256", two(64, 128, 256)),
        // Loss-landscape paper (Lee et al.), Appendix A: Gowal et al.'s models and variants.
        ("ll-small", "loss-landscape Small (= DM-small)", convnet(&[(16, 4, 2, 0), (32, 4, 1, 0)], &[100])),
        ("ll-small-star", "loss-landscape Small*: conv 16 4x4+2, conv 32 4x4+2, FC 100", convnet(&[(16, 4, 2, 0), (32, 4, 2, 0)], &[100])),
        ("ll-medium", "loss-landscape Medium (= DM-medium)", convnet(&[(32, 3, 1, 0), (32, 4, 2, 0), (64, 3, 1, 0), (64, 4, 2, 0)], &[512, 512])),
        ("ll-large", "loss-landscape Large (= DM-large)", convnet(&[(64, 3, 1, 1), (64, 3, 1, 1), (128, 3, 2, 1), (128, 3, 1, 1), (128, 3, 1, 1)], &[512])),
        ("ll-large-star", "loss-landscape Large*: conv 64 3x3+1, 128 3x3+2, 128 3x3+1, 128 3x3+1, FC 512", convnet(&[(64, 3, 1, 1), (128, 3, 2, 1), (128, 3, 1, 1), (128, 3, 1, 1)], &[512])),
        // COLT (Balunovic & Vechev 2020): the CIFAR-10 network of Section 5.
        ("colt-conv", "COLT: conv 32 4x4+2, conv 128 4x4+2, FC 150, FC 10", two(32, 128, 150)),
        // COLT's released networks (code/networks.py ConvMed / ConvMedBig, trained_models/).
        ("colt-convmed-2-2-100", "COLT convmed_flat_2_2_100 (MNIST 0.1): conv 32 5x5+2 pad 2, conv 64 4x4+2, FC 100", convnet(&[(32, 5, 2, 2), (64, 4, 2, 1)], &[100])),
        ("colt-convmed-2-4-250", "COLT convmed_flat_2_4_250 (MNIST 0.3, CIFAR-10 8/255): conv 32 5x5+2 pad 2, conv 128 4x4+2, FC 250", convnet(&[(32, 5, 2, 2), (128, 4, 2, 1)], &[250])),
        (
            "colt-convmedbig-2-2-4-250",
            "COLT convmedbig_flat_2_2_4_250 (CIFAR-10 2/255): conv 32 3x3+1, conv 32 4x4+2, conv 128 4x4+2, FC 250",
            convnet(&[(32, 3, 1, 1), (32, 4, 2, 1), (128, 4, 2, 1)], &[250]),
        ),
        // convex_adversarial (Wong & Kolter), examples/problems.py: mnist_model / cifar_model
        // and mnist_model_large / cifar_model_large (= crown-ibp-m).
        ("wong-small", "convex_adversarial small: conv 16 4x4+2, conv 32 4x4+2, FC 100", two(16, 32, 100)),
        ("wong-large", "convex_adversarial large (= crown-ibp-m): conv 32 3x3+1, 32 4x4+2, 64 3x3+1, 64 4x4+2, FC 512, 512", four(32, 64, 512)),
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
