//! ONNX export + import round trips, hand-built models shaped like PyTorch's exports, and
//! models exported by PyTorch itself (`tests/data/pytorch_*.onnx`).
//!
//! The PyTorch files and `tests/data/onnx_pytorch_reference.json` were made once with
//! torch 2.15 / onnx 1.23 (`torch.onnx.export(..., dynamo=False)`) by this script:
//!
//! ```python
//! import json, torch, torch.nn as nn
//! class Net(nn.Module):
//!     def __init__(s, view):
//!         super().__init__()
//!         s.view = view
//!         s.register_buffer("mean", torch.tensor([0.1307]).view(1, 1, 1, 1))
//!         s.register_buffer("std", torch.tensor([0.3081]).view(1, 1, 1, 1))
//!         s.conv1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)
//!         s.bn = nn.BatchNorm2d(4)
//!         s.conv2 = nn.Conv2d(4, 4, 3, padding=1)
//!         s.pool = nn.AvgPool2d(2)
//!         s.flat = nn.Flatten()
//!         s.fc1 = nn.Linear(16, 16)
//!         s.fc2 = nn.Linear(16, 10)
//!     def forward(s, x):
//!         x = (x - s.mean) / s.std
//!         x = torch.relu(s.bn(s.conv1(x)))
//!         x = x + torch.relu(s.conv2(x))
//!         x = s.pool(x)
//!         x = x.view(x.size(0), -1) if s.view else s.flat(x)
//!         return s.fc2(torch.relu(s.fc1(x)))
//! ref = {}
//! for view in [False, True]:
//!     torch.manual_seed(0)
//!     m = Net(view)
//!     with torch.no_grad():
//!         m.bn.running_mean.uniform_(-0.5, 0.5); m.bn.running_var.uniform_(0.5, 2.0)
//!         m.bn.weight.uniform_(0.5, 1.5); m.bn.bias.uniform_(-0.5, 0.5)
//!     m.eval()
//!     x = torch.rand(1, 1, 8, 8)
//!     y = m(x)
//!     for opset in ([13, 17] if not view else [13]):
//!         name = f"pytorch_{'view' if view else 'flatten'}_opset{opset}.onnx"
//!         kw = dict(input_names=["x"], output_names=["logits"], opset_version=opset, dynamo=False)
//!         if view:
//!             kw["dynamic_axes"] = {"x": {0: "batch"}, "logits": {0: "batch"}}
//!         torch.onnx.export(m, (x,), name, **kw)
//!         ref[name] = {"input_shape": list(x.shape), "input": x.flatten().tolist(), "output": y.flatten().tolist()}
//! json.dump(ref, open("onnx_pytorch_reference.json", "w"), indent=1)
//! ```

use ironbound::io::onnx::{self, proto::*};
use ironbound::net::{NetSpec, Network, NodeSpec, OpSpec, Shape};
use ironbound::tensor::{default_device, from_vec, to_vec, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

// ---------- helpers ----------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn node(name: &str, op: OpSpec, inputs: &[usize]) -> NodeSpec {
    NodeSpec { name: name.into(), op, inputs: inputs.to_vec() }
}

fn linear(i: usize, o: usize) -> OpSpec {
    OpSpec::Linear { in_features: i, out_features: o }
}

fn conv(i: usize, o: usize, k: [usize; 2], s: [usize; 2], p: [usize; 2]) -> OpSpec {
    OpSpec::Conv2d { in_channels: i, out_channels: o, kernel: k, stride: s, padding: p }
}

/// A network with random (non-trivial) parameters; BatchNorm variances are positive.
fn random_net(spec: &NetSpec, seed: u64) -> Network {
    let mut rng = Rng(seed);
    spec.build(&default_device(), &mut |name, shape| {
        let n: usize = shape.iter().product();
        let v = rng.vec(n);
        Ok(if name.ends_with("running_var") { v.iter().map(|x| x.abs() + 0.5).collect() } else { v.iter().map(|x| x * 0.7).collect() })
    })
    .unwrap()
}

/// A network with the given parameters.
fn net_with(spec: &NetSpec, params: &HashMap<&str, Vec<f32>>) -> Network {
    spec.build(&default_device(), &mut |name, _| Ok(params.get(name).unwrap_or_else(|| panic!("no param {name}")).clone())).unwrap()
}

fn batch(shape: Shape, n: usize, seed: u64) -> Tensor<4> {
    let mut rng = Rng(seed);
    from_vec(rng.vec(n * shape.iter().product::<usize>()), [n, shape[0], shape[1], shape[2]], &default_device())
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}: element {i}: {x} vs {y}");
    }
}

fn same_outputs(a: &Network, b: &Network, what: &str) {
    let x = batch(a.input_shape(), 3, 99);
    let ya = to_vec(a.forward(x.clone()));
    let yb = to_vec(b.forward(x));
    assert_close(&yb, &ya, 1e-5, what);
}

fn ops(net: &Network) -> Vec<&'static str> {
    net.nodes().iter().map(|n| n.op.kind()).collect()
}

fn roundtrip(spec: NetSpec, what: &str) -> Network {
    let net = random_net(&spec, 7);
    let bytes = onnx::export_bytes(&net);
    let back = onnx::import_bytes(&bytes, &format!("{what}.onnx"), &default_device()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(back.spec(), net.spec(), "{what}: specs differ");
    let (pa, pb) = (net.named_params(), back.named_params());
    assert_eq!(pa.len(), pb.len());
    for ((na, va), (nb, vb)) in pa.iter().zip(&pb) {
        assert_eq!(na, nb);
        assert_eq!(va.dims(), vb.dims(), "{what}: {na}");
        assert_eq!(va.to_vec(), vb.to_vec(), "{what}: {na}");
    }
    same_outputs(&net, &back, what);
    back
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ironbound-onnx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------- round trips ----------

#[test]
fn mlp_with_normalize_round_trips() {
    let spec = NetSpec {
        input_shape: [3, 4, 4],
        nodes: vec![
            node("norm", OpSpec::Normalize { mean: vec![0.4914, 0.4822, 0.4465], std: vec![0.247, 0.2435, 0.2616] }, &[0]),
            node("flatten", OpSpec::Flatten, &[1]),
            node("fc1", linear(48, 20), &[2]),
            node("relu1", OpSpec::Relu, &[3]),
            node("fc2", linear(20, 10), &[4]),
        ],
    };
    roundtrip(spec, "mlp");
}

#[test]
fn flat_input_mlp_with_feature_normalize_and_batchnorm_round_trips() {
    let spec = NetSpec {
        input_shape: [16, 1, 1],
        nodes: vec![
            node(
                "norm",
                OpSpec::Normalize { mean: (0..16).map(|i| i as f32 * 0.1).collect(), std: (0..16).map(|i| 0.5 + i as f32).collect() },
                &[0],
            ),
            node("0", linear(16, 8), &[1]),
            node("1", OpSpec::Relu, &[2]),
            node("bn", OpSpec::BatchNorm { channels: 8, eps: 1e-3 }, &[3]),
            node("2", linear(8, 4), &[4]),
        ],
    };
    roundtrip(spec, "flat_mlp");
}

#[test]
fn convnet_with_stride_and_padding_round_trips() {
    // The first Linear reads the conv output directly (no Flatten node): the exporter inserts a
    // Reshape, which the importer turns back into nothing.
    let spec = NetSpec {
        input_shape: [3, 9, 9],
        nodes: vec![
            node("conv1", conv(3, 4, [3, 3], [2, 2], [1, 1]), &[0]),
            node("relu1", OpSpec::Relu, &[1]),
            node("conv2", conv(4, 6, [3, 2], [1, 2], [0, 1]), &[2]),
            node("relu2", OpSpec::Relu, &[3]),
            node("fc1", linear(6 * 3 * 3, 12), &[4]),
            node("relu3", OpSpec::Relu, &[5]),
            node("fc2", linear(12, 10), &[6]),
        ],
    };
    roundtrip(spec, "convnet");
    let named = ironbound::net::arch::named("conv-small", [1, 28, 28]).unwrap();
    roundtrip(named, "conv-small");
}

#[test]
fn residual_net_round_trips() {
    let spec = NetSpec {
        input_shape: [2, 6, 6],
        nodes: vec![
            node("conv0", conv(2, 4, [3, 3], [1, 1], [1, 1]), &[0]),
            node("relu0", OpSpec::Relu, &[1]),
            node("block.conv1", conv(4, 4, [3, 3], [1, 1], [1, 1]), &[2]),
            node("block.relu1", OpSpec::Relu, &[3]),
            node("block.conv2", conv(4, 4, [3, 3], [1, 1], [1, 1]), &[4]),
            node("block.add", OpSpec::Add, &[2, 5]),
            node("relu2", OpSpec::Relu, &[6]),
            node("flatten", OpSpec::Flatten, &[7]),
            node("fc", linear(4 * 36, 10), &[8]),
        ],
    };
    roundtrip(spec, "residual");
}

#[test]
fn batchnorm_net_round_trips() {
    let spec = NetSpec {
        input_shape: [3, 8, 8],
        nodes: vec![
            node("conv", conv(3, 5, [3, 3], [1, 1], [0, 0]), &[0]),
            node("bn", OpSpec::BatchNorm { channels: 5, eps: 1e-5 }, &[1]),
            node("relu", OpSpec::Relu, &[2]),
            node("flatten", OpSpec::Flatten, &[3]),
            node("fc", linear(5 * 36, 10), &[4]),
        ],
    };
    roundtrip(spec, "batchnorm");
}

#[test]
fn avgpool_net_round_trips() {
    let spec = NetSpec {
        input_shape: [2, 8, 8],
        nodes: vec![
            node("conv", conv(2, 3, [3, 3], [1, 1], [1, 1]), &[0]),
            node("relu", OpSpec::Relu, &[1]),
            node("pool1", OpSpec::AvgPool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0] }, &[2]),
            node("pool2", OpSpec::AvgPool2d { kernel: [3, 3], stride: [1, 1], padding: [1, 1] }, &[3]),
            node("flatten", OpSpec::Flatten, &[4]),
            node("fc", linear(3 * 16, 5), &[5]),
        ],
    };
    roundtrip(spec, "avgpool");
}

#[test]
fn mixed_ranks_and_odd_endings_round_trip() {
    // Flat input read by both a Linear (rank 2) and a 1x1 Conv (rank 4), added, ending in a
    // Normalize; a conv net ending in a conv; an empty network.
    let spec = NetSpec {
        input_shape: [5, 1, 1],
        nodes: vec![
            node("lin", linear(5, 4), &[0]),
            node("conv", conv(5, 4, [1, 1], [1, 1], [0, 0]), &[0]),
            node("add", OpSpec::Add, &[1, 2]),
            node("relu", OpSpec::Relu, &[3]),
            node("bn", OpSpec::BatchNorm { channels: 4, eps: 0.0 }, &[4]),
            node("norm", OpSpec::Normalize { mean: vec![1.0, 2.0, 3.0, 4.0], std: vec![1.0, 0.5, 0.25, 3.0] }, &[5]),
        ],
    };
    roundtrip(spec, "mixed");
    let spec = NetSpec {
        input_shape: [1, 6, 6],
        nodes: vec![
            node("c1", conv(1, 2, [3, 3], [1, 1], [0, 0]), &[0]),
            node("r", OpSpec::Relu, &[1]),
            node("c2", conv(2, 3, [4, 4], [1, 1], [0, 0]), &[2]),
        ],
    };
    roundtrip(spec, "ends_in_conv");
    roundtrip(NetSpec { input_shape: [2, 3, 3], nodes: vec![] }, "empty");
    roundtrip(NetSpec { input_shape: [4, 1, 1], nodes: vec![] }, "empty_flat");
}

#[test]
fn export_writes_a_file_that_imports_back() {
    let spec = ironbound::net::arch::named("fc5", [1, 28, 28]).unwrap();
    let net = random_net(&spec, 3);
    let dir = temp_dir("file");
    let path = dir.join("fc5.onnx");
    onnx::export(&net, &path).unwrap();
    let back = onnx::import(&path, &default_device()).unwrap();
    assert_eq!(back.spec(), net.spec());
    same_outputs(&net, &back, "fc5 file");
    // Only the model is left in the directory (the temporary file was renamed).
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("fc5.onnx")]);
    // The header says what was promised.
    let model = ModelProto::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(model.ir_version, 7);
    assert_eq!(model.producer_name, "ironbound");
    assert_eq!(model.opset_import[0].version, 13);
    let g = model.graph.unwrap();
    assert_eq!(g.input[0].name, "input");
    assert_eq!(g.output[0].name, "output");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------- hand-built models, the way PyTorch exports them ----------

fn model(inputs: Vec<ValueInfoProto>, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, output: &str, opset: i64) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: "pytorch".into(),
        graph: Some(GraphProto {
            name: "main_graph".into(),
            node: nodes,
            initializer: inits,
            input: inputs,
            output: vec![ValueInfoProto::float_tensor(output, &[None, None])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .to_bytes()
}

fn n(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    NodeProto::new(op, name, ins, outs, vec![])
}

fn na(op: &str, name: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto::new(op, name, ins, outs, attrs)
}

fn int_const(name: &str, dims: &[usize], v: &[i64]) -> NodeProto {
    na("Constant", name, &[], &[name], vec![AttributeProto::tensor("value", TensorProto::from_i64("", dims, v))])
}

fn import(bytes: &[u8], what: &str) -> Network {
    onnx::import_bytes(bytes, what, &default_device()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn pytorch_style_normalize_conv_and_shape_gather_concat_reshape_flatten() {
    let mut rng = Rng(11);
    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    let (cw, cb, fw, fb) = (rng.vec(4 * 3 * 9), rng.vec(4), rng.vec(5 * 36), rng.vec(5));
    let bytes = model(
        vec![ValueInfoProto::float_tensor("input.1", &[None, Some(3), Some(6), Some(6)])],
        vec![
            n("Sub", "/Sub", &["input.1", "mean"], &["/Sub_output_0"]),
            n("Div", "/Div", &["/Sub_output_0", "std"], &["/Div_output_0"]),
            na(
                "Conv",
                "/conv/Conv",
                &["/Div_output_0", "conv.weight", "conv.bias"],
                &["/conv/Conv_output_0"],
                vec![
                    AttributeProto::ints("dilations", &[1, 1]),
                    AttributeProto::int("group", 1),
                    AttributeProto::ints("kernel_shape", &[3, 3]),
                    AttributeProto::ints("pads", &[1, 1, 1, 1]),
                    AttributeProto::ints("strides", &[2, 2]),
                ],
            ),
            n("Relu", "/relu/Relu", &["/conv/Conv_output_0"], &["/relu/Relu_output_0"]),
            n("Shape", "/Shape", &["/relu/Relu_output_0"], &["/Shape_output_0"]),
            int_const("/Constant_output_0", &[], &[0]),
            na(
                "Gather",
                "/Gather",
                &["/Shape_output_0", "/Constant_output_0"],
                &["/Gather_output_0"],
                vec![AttributeProto::int("axis", 0)],
            ),
            int_const("/Constant_1_output_0", &[1], &[0]),
            n("Unsqueeze", "/Unsqueeze", &["/Gather_output_0", "/Constant_1_output_0"], &["/Unsqueeze_output_0"]),
            int_const("/Constant_2_output_0", &[1], &[-1]),
            na(
                "Concat",
                "/Concat",
                &["/Unsqueeze_output_0", "/Constant_2_output_0"],
                &["/Concat_output_0"],
                vec![AttributeProto::int("axis", 0)],
            ),
            n("Reshape", "/Reshape", &["/relu/Relu_output_0", "/Concat_output_0"], &["/Reshape_output_0"]),
            na(
                "Gemm",
                "/fc/Gemm",
                &["/Reshape_output_0", "fc.weight", "fc.bias"],
                &["19"],
                vec![AttributeProto::float("alpha", 1.0), AttributeProto::float("beta", 1.0), AttributeProto::int("transB", 1)],
            ),
        ],
        vec![
            TensorProto::from_f32("mean", &[1, 3, 1, 1], &mean),
            TensorProto::from_f32("std", &[1, 3, 1, 1], &std),
            TensorProto::from_f32("conv.weight", &[4, 3, 3, 3], &cw),
            TensorProto::from_f32("conv.bias", &[4], &cb),
            TensorProto::from_f32("fc.weight", &[5, 36], &fw),
            TensorProto::from_f32("fc.bias", &[5], &fb),
        ],
        "19",
        13,
    );
    let net = import(&bytes, "pytorch_style.onnx");
    assert_eq!(ops(&net), vec!["normalize", "conv2d", "relu", "linear"]);
    assert_eq!(net.nodes()[1].name, "conv");
    assert_eq!(net.nodes()[3].name, "fc");
    let reference = NetSpec {
        input_shape: [3, 6, 6],
        nodes: vec![
            node("norm", OpSpec::Normalize { mean: mean.to_vec(), std: std.to_vec() }, &[0]),
            node("conv", conv(3, 4, [3, 3], [2, 2], [1, 1]), &[1]),
            node("relu", OpSpec::Relu, &[2]),
            node("flatten", OpSpec::Flatten, &[3]),
            node("fc", linear(36, 5), &[4]),
        ],
    };
    let params = HashMap::from([("conv.weight", cw), ("conv.bias", cb), ("fc.weight", fw), ("fc.bias", fb)]);
    same_outputs(&net_with(&reference, &params), &net, "pytorch_style");
    match &net.spec().nodes[0].op {
        OpSpec::Normalize { mean: m, std: s } => {
            assert_close(m, &mean, 1e-6, "mean");
            assert_close(s, &std, 1e-6, "std");
        }
        other => panic!("expected normalize, got {other:?}"),
    }
}

#[test]
fn matmul_plus_add_becomes_linear_with_bias() {
    let mut rng = Rng(12);
    let (w1, b1, w2, b2) = (rng.vec(8 * 6), rng.vec(6), rng.vec(6 * 3), rng.vec(3));
    let bytes = model(
        vec![ValueInfoProto::float_tensor("x", &[None, Some(8)])],
        vec![
            n("MatMul", "/fc1/MatMul", &["x", "onnx::MatMul_10"], &["/fc1/MatMul_output_0"]),
            n("Add", "/fc1/Add", &["fc1.bias", "/fc1/MatMul_output_0"], &["/fc1/Add_output_0"]),
            n("Relu", "/Relu", &["/fc1/Add_output_0"], &["/Relu_output_0"]),
            n("MatMul", "/fc2/MatMul", &["/Relu_output_0", "onnx::MatMul_11"], &["/fc2/MatMul_output_0"]),
            n("Add", "/fc2/Add", &["/fc2/MatMul_output_0", "fc2.bias"], &["y"]),
        ],
        vec![
            TensorProto::from_f32("onnx::MatMul_10", &[8, 6], &w1),
            TensorProto::from_f32("fc1.bias", &[6], &b1),
            TensorProto::from_f32("onnx::MatMul_11", &[6, 3], &w2),
            TensorProto::from_f32("fc2.bias", &[3], &b2),
        ],
        "y",
        14,
    );
    let net = import(&bytes, "matmul.onnx");
    assert_eq!(ops(&net), vec!["linear", "relu", "linear"]);
    let t = |w: &[f32], r: usize, c: usize| (0..c).flat_map(|j| (0..r).map(move |i| w[i * c + j])).collect::<Vec<f32>>();
    let params = net.named_params();
    assert_eq!(params[0].1.to_vec(), t(&w1, 8, 6));
    assert_eq!(params[1].1.to_vec(), b1);
    assert_eq!(params[3].1.to_vec(), b2);
    let reference = NetSpec {
        input_shape: [8, 1, 1],
        nodes: vec![node("a", linear(8, 6), &[0]), node("r", OpSpec::Relu, &[1]), node("b", linear(6, 3), &[2])],
    };
    let p = HashMap::from([("a.weight", t(&w1, 8, 6)), ("a.bias", b1), ("b.weight", t(&w2, 6, 3)), ("b.bias", b2)]);
    same_outputs(&net_with(&reference, &p), &net, "matmul");
}

#[test]
fn gemm_with_trans_b_0_alpha_and_beta() {
    let mut rng = Rng(13);
    let (b, c) = (rng.vec(7 * 4), rng.vec(4));
    let bytes = model(
        vec![ValueInfoProto::float_tensor("x", &[Some(1), Some(7)])],
        vec![na("Gemm", "gemm", &["x", "B", "C"], &["y"], vec![AttributeProto::float("alpha", 0.5), AttributeProto::float("beta", 2.0)])],
        vec![TensorProto::from_f32("B", &[7, 4], &b), TensorProto::from_f32("C", &[1, 4], &c)],
        "y",
        11,
    );
    let net = import(&bytes, "gemm.onnx");
    let w: Vec<f32> = (0..4).flat_map(|j| (0..7).map(|i| 0.5 * b[i * 4 + j]).collect::<Vec<_>>()).collect();
    let bias: Vec<f32> = c.iter().map(|x| 2.0 * x).collect();
    let reference = NetSpec { input_shape: [7, 1, 1], nodes: vec![node("g", linear(7, 4), &[0])] };
    same_outputs(&net_with(&reference, &HashMap::from([("g.weight", w), ("g.bias", bias)])), &net, "gemm");
}

#[test]
fn scalar_and_negative_affine_chains_old_opset_constants_and_conv_bias_add() {
    // Opset 11: Div by 255, Sub mean, Mul by a per-channel [-1, 2] and Add of a scalar -> one
    // per-channel affine map (BatchNorm with eps 0); a bias-less Conv followed by Add of a
    // [1, C, 1, 1] constant -> the Conv's bias; Identity, Dropout, Cast and Unsqueeze with axes
    // attribute in the flatten chain.
    let mut rng = Rng(14);
    let (cw, cb, fw, fb) = (rng.vec(3 * 2 * 4), rng.vec(3), rng.vec(2 * 27), rng.vec(2));
    let bytes = model(
        vec![ValueInfoProto::float_tensor("x", &[None, Some(2), Some(4), Some(4)])],
        vec![
            n("Div", "div", &["x", "k255"], &["a"]),
            n("Sub", "sub", &["a", "mean"], &["b"]),
            n("Mul", "mul", &["scale", "b"], &["c"]),
            n("Add", "add", &["c", "half"], &["d"]),
            n("Identity", "id", &["d"], &["e"]),
            na("Conv", "conv", &["e", "conv.weight"], &["f"], vec![AttributeProto::ints("kernel_shape", &[2, 2])]),
            n("Add", "conv_bias", &["f", "cbias"], &["g"]),
            n("Dropout", "drop", &["g"], &["h"]),
            n("Relu", "relu", &["h"], &["i"]),
            n("Shape", "shape", &["i"], &["s"]),
            na("Cast", "cast", &["s"], &["s64"], vec![AttributeProto::int("to", 7)]),
            na("Gather", "gather", &["s64", "zero"], &["nb"], vec![AttributeProto::int("axis", 0)]),
            na("Unsqueeze", "unsq", &["nb"], &["nb1"], vec![AttributeProto::ints("axes", &[0])]),
            na("Concat", "cat", &["nb1", "minus1"], &["target"], vec![AttributeProto::int("axis", 0)]),
            n("Reshape", "reshape", &["i", "target"], &["j"]),
            na("Gemm", "fc", &["j", "fc.weight", "fc.bias"], &["y"], vec![AttributeProto::int("transB", 1)]),
        ],
        vec![
            TensorProto::from_f32("k255", &[], &[255.0]),
            TensorProto::from_f32("mean", &[2, 1, 1], &[0.5, 0.25]),
            TensorProto::from_f32("scale", &[1, 2, 1, 1], &[-1.0, 2.0]),
            TensorProto::from_f32("half", &[1], &[0.5]),
            TensorProto::from_f32("conv.weight", &[3, 2, 2, 2], &cw),
            TensorProto::from_f32("cbias", &[1, 3, 1, 1], &cb),
            TensorProto::from_i64("zero", &[], &[0]),
            TensorProto::from_i64("minus1", &[1], &[-1]),
            TensorProto::from_f32("fc.weight", &[2, 27], &fw),
            TensorProto::from_f32("fc.bias", &[2], &fb),
        ],
        "y",
        11,
    );
    let net = import(&bytes, "chains.onnx");
    // The four constant ops compose into one per-channel map with a negative scale:
    // [-1, 2] * (x / 255 - [0.5, 0.25]) + 0.5 = [-1/255, 2/255] x + [1, 0].
    assert_eq!(ops(&net), vec!["batchnorm", "conv2d", "relu", "linear"]);
    assert_eq!(net.nodes()[0].name, "div");
    let reference = NetSpec {
        input_shape: [2, 4, 4],
        nodes: vec![
            node("a", OpSpec::BatchNorm { channels: 2, eps: 0.0 }, &[0]),
            node("conv", conv(2, 3, [2, 2], [1, 1], [0, 0]), &[1]),
            node("relu", OpSpec::Relu, &[2]),
            node("fc", linear(27, 2), &[3]),
        ],
    };
    let p = HashMap::from([
        ("a.weight", vec![-1.0 / 255.0, 2.0 / 255.0]),
        ("a.bias", vec![1.0, 0.0]),
        ("a.running_mean", vec![0.0, 0.0]),
        ("a.running_var", vec![1.0, 1.0]),
        ("conv.weight", cw),
        ("conv.bias", cb),
        ("fc.weight", fw),
        ("fc.bias", fb),
    ]);
    same_outputs(&net_with(&reference, &p), &net, "chains");
}

// ---------- models exported by PyTorch ----------

#[test]
fn pytorch_exports_reproduce_pytorch_outputs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let text = std::fs::read_to_string(dir.join("onnx_pytorch_reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>();
    let files = reference.as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (file, r) in files {
        let net = onnx::import(&dir.join(file), &default_device()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let shape: Vec<usize> = r["input_shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, vec![1, 1, 8, 8]);
        assert_eq!(net.input_shape(), [1, 8, 8]);
        let (x, expected) = (floats(&r["input"]), floats(&r["output"]));
        let y = to_vec(net.forward(from_vec(x.clone(), [1, 1, 8, 8], &default_device())));
        assert_close(&y, &expected, 1e-5, file);
        // Batch independence: three copies of the sample give three copies of the output.
        let x3: Vec<f32> = x.iter().cycle().take(3 * 64).copied().collect();
        let y3 = to_vec(net.forward(from_vec(x3, [3, 1, 8, 8], &default_device())));
        let e3: Vec<f32> = expected.iter().cycle().take(3 * 10).copied().collect();
        assert_close(&y3, &e3, 1e-5, file);
        let kinds = ops(&net);
        assert_eq!(kinds[..3], ["normalize", "conv2d", "relu"], "{file}: {kinds:?}");
        assert!(kinds.contains(&"add") && kinds.contains(&"avgpool2d"), "{file}: {kinds:?}");
        assert!(net.named_params().iter().any(|(n, _)| n == "fc2.weight"), "{file}");
        // And the imported network exports and imports back to itself.
        let back = onnx::import_bytes(&onnx::export_bytes(&net), file, &default_device()).unwrap();
        assert_eq!(back.spec(), net.spec());
    }
}
