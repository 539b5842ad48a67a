//! Model files: ONNX (exports of small networks and the PyTorch exports in `tests/data`) and
//! native `.safetensors`, damaged byte by byte and structurally: decoded, edited (tensor dims
//! and data, attributes, op types, wiring, opsets; the architecture JSON, tensor entries and
//! the header length of safetensors) and encoded again, so that inputs get past the container
//! into the importer. Read with `io::load_model`, as every command reads `--model`.

use super::{havoc, Rng, Verdicts, INTERESTING};
use ironbound::io::onnx::proto::{attribute_type, tensor_shape_proto::dimension::Value as Dim, type_proto, AttributeProto, ModelProto, NodeProto, TensorProto};
use ironbound::io::{load_model, save_model};
use ironbound::net::arch::{sequential, L};
use ironbound::net::{numel, NetSpec, Network, NodeSpec, OpSpec};
use ironbound::tensor::{default_device, from_vec, to_vec};
use serde_json::Value;
use std::path::Path;

pub const ONNX_FILE: &str = "model.onnx";
pub const NATIVE_FILE: &str = "model.safetensors";

/// Small networks covering every op of the IR.
fn networks() -> Vec<Network> {
    let dev = default_device();
    let residual = NetSpec {
        input_shape: [2, 6, 6],
        nodes: vec![
            NodeSpec { name: "norm".into(), op: OpSpec::Normalize { mean: vec![0.1, 0.2], std: vec![0.3, 0.4] }, inputs: vec![0] },
            NodeSpec { name: "conv".into(), op: OpSpec::Conv2d { in_channels: 2, out_channels: 3, kernel: [3, 3], stride: [2, 2], padding: [1, 1] }, inputs: vec![1] },
            NodeSpec { name: "bn".into(), op: OpSpec::BatchNorm { channels: 3, eps: 1e-5 }, inputs: vec![2] },
            NodeSpec { name: "relu".into(), op: OpSpec::Relu, inputs: vec![3] },
            NodeSpec { name: "add".into(), op: OpSpec::Add, inputs: vec![4, 3] },
            NodeSpec { name: "pool".into(), op: OpSpec::AvgPool2d { kernel: [2, 2], stride: [1, 1], padding: [1, 1] }, inputs: vec![5] },
            NodeSpec { name: "flat".into(), op: OpSpec::Flatten, inputs: vec![6] },
            NodeSpec { name: "fc".into(), op: OpSpec::Linear { in_features: 48, out_features: 4 }, inputs: vec![7] },
        ],
    };
    vec![
        sequential([4, 1, 1], &[L::Fc(5), L::Relu, L::Fc(3)]).init(1, &dev).unwrap(),
        sequential([1, 6, 6], &[L::Conv(2, 3, 1, 1), L::Relu, L::Flatten, L::Fc(5), L::Relu, L::Fc(3)]).init(2, &dev).unwrap(),
        residual.init(3, &dev).unwrap(),
    ]
}

/// The files `save_model` writes for [`networks`] in the format of `file`'s extension.
fn saved(dir: &Path, file: &str) -> Vec<Vec<u8>> {
    let p = dir.join(file);
    networks()
        .iter()
        .map(|net| {
            save_model(net, &p).unwrap();
            std::fs::read(&p).unwrap()
        })
        .collect()
}

pub fn onnx_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds = saved(dir, ONNX_FILE);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for f in ["pytorch_flatten_opset13.onnx", "pytorch_flatten_opset17.onnx", "pytorch_view_opset13.onnx"] {
        seeds.push(std::fs::read(data.join(f)).unwrap());
    }
    seeds
}

pub fn native_seeds(dir: &Path) -> Vec<Vec<u8>> {
    saved(dir, NATIVE_FILE)
}

/// What a loaded model must survive: one forward pass, when its values are small enough to
/// compute (a valid file may describe a network too large to run here).
fn check_network(net: &Network) {
    let small = (0..=net.nodes().len()).all(|v| numel(&net.shape(v)) <= 1 << 16);
    if small {
        let [c, h, w] = net.input_shape();
        let x = from_vec(vec![0.5; c * h * w], [1, c, h, w], &default_device());
        let y = to_vec(net.forward(x));
        assert_eq!(y.len(), net.num_outputs(), "forward pass of an accepted model");
    }
}

pub fn model_exec(file: &'static str) -> impl Fn(&Path, &mut Verdicts) {
    move |dir, v| {
        if let Some(net) = v.file(load_model(&dir.join(file), &default_device()), dir) {
            check_network(&net);
        }
    }
}

// ---------------------------------------------------------------- ONNX

/// Signed boundary values for ONNX's int64 fields (dims, attributes, opsets).
const INTS: &[i64] = &[0, 1, -1, 2, -2, 3, 4, 7, 8, 13, 20, 21, 28, 784, 1 << 31, (1 << 31) - 1, -(1 << 31), 1 << 32, 1_000_000_000_000, i64::MAX, i64::MIN];

const OPS: &[&str] = &[
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "Relu", "Flatten", "Reshape", "BatchNormalization", "AveragePool", "Constant",
    "Identity", "Dropout", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "MaxPool", "Sigmoid", "Loop", "",
];

const ATTRS: &[&str] = &[
    "transA", "transB", "alpha", "beta", "axis", "axes", "group", "dilations", "kernel_shape", "pads", "strides", "auto_pad", "ceil_mode",
    "count_include_pad", "epsilon", "momentum", "spatial", "allowzero", "to", "value", "training_mode",
];

fn int(rng: &mut Rng) -> i64 {
    if rng.chance(1, 2) {
        rng.below(5) as i64 - 1
    } else {
        *rng.pick(INTS)
    }
}

fn damage_tensor(rng: &mut Rng, t: &mut TensorProto) {
    match rng.below(6) {
        0 if !t.dims.is_empty() => {
            let i = rng.below(t.dims.len());
            t.dims[i] = int(rng);
        }
        1 => {
            if rng.chance(1, 2) {
                t.dims.pop();
            } else {
                t.dims.push(int(rng));
            }
        }
        2 => t.data_type = *rng.pick(&[0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 16, 99, -1]),
        3 => {
            let n = rng.below(t.raw_data.len() + 9);
            t.raw_data.resize(n, 0x7f);
        }
        4 => {
            // The same values in the typed field instead, or in both.
            t.float_data = t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            t.float_data.push(*rng.pick(&[f32::NAN, f32::INFINITY, 1e38, 0.0]));
            if rng.chance(1, 2) {
                t.raw_data.clear();
            }
        }
        _ => t.data_location = 1,
    }
}

fn damage_attribute(rng: &mut Rng, a: &mut AttributeProto) {
    match rng.below(6) {
        0 => a.i = Some(int(rng)),
        1 => {
            let v = int(rng);
            match a.ints.len() {
                0 => a.ints.push(v),
                n => a.ints[rng.below(n)] = v,
            }
        }
        2 => {
            a.ints.truncate(rng.below(a.ints.len() + 1));
            a.ints.extend((0..rng.below(4)).map(|_| int(rng)));
        }
        3 => a.f = Some(*rng.pick(&[f32::NAN, f32::INFINITY, -1.0, 0.0, 1e-45, 2.0])),
        4 => a.r#type = *rng.pick(&[0, attribute_type::FLOAT, attribute_type::INT, attribute_type::STRING, attribute_type::TENSOR, attribute_type::INTS, 5, 8]),
        _ => match &mut a.t {
            Some(t) => damage_tensor(rng, t),
            None => a.s = Some(rng.pick(&[&b"SAME_UPPER"[..], b"VALID", b"NOTSET", b"\xff"]).to_vec()),
        },
    }
}

/// One structural edit of a decoded model.
fn damage_model(rng: &mut Rng, m: &mut ModelProto) {
    let names: Vec<String> = match &m.graph {
        Some(g) => g.node.iter().flat_map(|n| n.input.iter().chain(&n.output)).chain(g.initializer.iter().map(|t| &t.name)).cloned().collect(),
        None => Vec::new(),
    };
    let Some(g) = m.graph.as_mut() else { return };
    let (nodes, inits) = (g.node.len(), g.initializer.len());
    match rng.below(12) {
        0 | 1 if inits > 0 => {
            let i = rng.below(inits);
            damage_tensor(rng, &mut g.initializer[i])
        }
        2 | 3 if nodes > 0 => {
            let node = &mut g.node[rng.below(nodes)];
            match node.attribute.len() {
                0 => {
                    let name: &str = *rng.pick(ATTRS);
                    node.attribute.push(AttributeProto::ints(name, &[int(rng), int(rng)]))
                }
                n if rng.chance(1, 5) => node.attribute.push(node.attribute[rng.below(n)].clone()),
                n if rng.chance(1, 5) => drop(node.attribute.remove(rng.below(n))),
                n if rng.chance(1, 4) => node.attribute[rng.below(n)].name = rng.pick(ATTRS).to_string(),
                n => {
                    let i = rng.below(n);
                    damage_attribute(rng, &mut node.attribute[i])
                }
            }
        }
        4 if nodes > 0 => g.node[rng.below(nodes)].op_type = rng.pick(OPS).to_string(),
        5 if nodes > 0 && !names.is_empty() => {
            // Rewire: a node reads or writes another value (cycles and duplicates included).
            let node = &mut g.node[rng.below(nodes)];
            let name = rng.pick(&names).clone();
            let list = if rng.chance(2, 3) { &mut node.input } else { &mut node.output };
            match (list.len(), rng.below(3)) {
                (0, _) | (_, 0) => list.push(name),
                (n, 1) => list[rng.below(n)] = name,
                (n, _) => drop(list.remove(rng.below(n))),
            }
        }
        6 if nodes > 0 => match rng.below(3) {
            0 => drop(g.node.remove(rng.below(nodes))),
            1 => g.node.push(g.node[rng.below(nodes)].clone()),
            _ => g.node.swap(rng.below(nodes), rng.below(nodes)),
        },
        7 if inits > 0 => match rng.below(3) {
            0 => drop(g.initializer.remove(rng.below(inits))),
            1 => g.initializer.push(g.initializer[rng.below(inits)].clone()),
            _ => g.initializer[rng.below(inits)].name = rng.pick(&names).clone(),
        },
        8 => {
            let vi = if rng.chance(1, 2) { g.input.first_mut() } else { g.output.first_mut() };
            if let Some(type_proto::Value::TensorType(t)) = vi.and_then(|v| v.r#type.as_mut()).and_then(|t| t.value.as_mut()) {
                match (t.shape.as_mut(), rng.below(3)) {
                    (Some(s), 0) if !s.dim.is_empty() => {
                        let i = rng.below(s.dim.len());
                        s.dim[i].value = Some(Dim::DimValue(int(rng)));
                    }
                    (Some(s), 1) => s.dim.truncate(rng.below(s.dim.len() + 1)),
                    _ => t.elem_type = *rng.pick(&[0, 2, 7, 10, 11]),
                }
            }
        }
        9 => {
            // A constant that claims a huge shape and holds (almost) nothing, fed to a Reshape.
            let dims: Vec<i64> = (0..1 + rng.below(3)).map(|_| *rng.pick(INTS)).collect();
            let t = TensorProto { name: "big".into(), dims, data_type: *rng.pick(&[1, 7]), raw_data: vec![0; 8 * rng.below(2)], ..Default::default() };
            g.node.insert(0, NodeProto::new("Constant", "big_c", &[], &["big"], vec![AttributeProto::tensor("value", t)]));
            if let Some(n) = g.node.iter_mut().find(|n| n.op_type == "Reshape" || n.op_type == "Gemm") {
                let last = n.input.len().saturating_sub(1);
                n.input[last.min(1)] = "big".into();
            }
        }
        10 => match m.opset_import.first_mut() {
            Some(o) if rng.chance(2, 3) => o.version = int(rng),
            Some(o) => o.domain = rng.pick(&["ai.onnx.ml", "com.microsoft", "ai.onnx"]).to_string(),
            None => {}
        },
        _ => {
            if let Some(v) = g.output.first_mut() {
                v.name = rng.pick(&names).clone();
            }
        }
    }
}

pub fn onnx_generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut bytes = rng.pick(seeds).clone();
    if rng.chance(2, 3) {
        if let Ok(mut m) = ModelProto::from_bytes(&bytes) {
            for _ in 0..1 + rng.below(3) {
                damage_model(rng, &mut m);
            }
            bytes = m.to_bytes();
        }
        if rng.chance(1, 8) {
            havoc(rng, &mut bytes, seeds, 0);
        }
    } else {
        havoc(rng, &mut bytes, seeds, 0);
    }
    vec![(ONNX_FILE.into(), bytes)]
}

// ---------------------------------------------------------------- native safetensors

/// The `k`-th value of a JSON tree in pre-order (decrements `k` along the way).
fn nth_mut<'a>(v: &'a mut Value, k: &mut usize) -> Option<&'a mut Value> {
    if *k == 0 {
        return Some(v);
    }
    *k -= 1;
    match v {
        Value::Array(xs) => xs.iter_mut().find_map(|x| nth_mut(x, k)),
        Value::Object(m) => m.values_mut().find_map(|x| nth_mut(x, k)),
        _ => None,
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(xs) => xs.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

/// A boundary JSON number: unsigned, negative or fractional.
fn json_number(rng: &mut Rng) -> Value {
    // Mostly small, so that edited architectures often still build and reach the shape checks.
    match rng.below(8) {
        0..=3 => Value::from(rng.below(6)),
        4 | 5 => Value::from(*rng.pick(INTERESTING)),
        6 => Value::from(*rng.pick(&[-1i64, -2, i64::MIN])),
        _ => Value::from(*rng.pick(&[0.5f64, 1e300, -0.0, 2.5e-308])),
    }
}

/// One edit of a random value of a JSON tree.
fn damage_json(rng: &mut Rng, root: &mut Value) {
    let mut k = rng.below(count(root));
    let Some(v) = nth_mut(root, &mut k) else { return };
    match v {
        Value::Number(_) => *v = if rng.chance(5, 6) { json_number(rng) } else { Value::Null },
        Value::String(s) => {
            *s = rng.pick(&["linear", "conv2d", "relu", "add", "flatten", "batch_norm", "avg_pool2d", "normalize", "F16", "", "weight"]).to_string()
        }
        Value::Array(xs) => match (xs.len(), rng.below(4)) {
            (0, _) | (_, 0) => xs.push(json_number(rng)),
            (n, 1) => drop(xs.remove(rng.below(n))),
            (n, 2) => xs.push(xs[rng.below(n)].clone()),
            (n, _) => xs.swap(rng.below(n), rng.below(n)),
        },
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            match rng.below(3) {
                0 if !keys.is_empty() => drop(m.remove(rng.pick(&keys))),
                1 => drop(m.insert(rng.pick(&["dilation", "groups", "op", "inputs", "stride"]).to_string(), json_number(rng))),
                _ => drop(m.insert("extra".into(), Value::Array(vec![]))),
            }
        }
        _ => *v = json_number(rng),
    }
}

/// Splits a safetensors file into its header JSON and its data.
fn split(bytes: &[u8]) -> Option<(Value, &[u8])> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    Some((header, &bytes[8 + n..]))
}

fn join(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

pub fn native_generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let seed = rng.pick(seeds);
    let Some((mut header, data)) = split(seed) else { unreachable!("seeds are valid safetensors files") };
    let mut data = data.to_vec();
    let mut text = None;
    for _ in 0..1 + rng.below(3) {
        match rng.below(16) {
            0..=8 => {
                // The architecture: JSON inside a JSON string.
                let arch = &mut header["__metadata__"]["ironbound.architecture"];
                if let Some(mut spec) = arch.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()) {
                    damage_json(rng, &mut spec);
                    *arch = Value::String(spec.to_string());
                }
            }
            9..=11 => damage_json(rng, &mut header),
            12 => {
                let n = rng.below(data.len() + 16);
                data.resize(n, 0x41);
            }
            13 => {
                let mut t = header.to_string().into_bytes();
                havoc(rng, &mut t, &[], 0);
                text = Some(t);
            }
            _ => {
                let mut f = seed.clone();
                havoc(rng, &mut f, seeds, 16);
                return vec![(NATIVE_FILE.into(), f)];
            }
        }
    }
    let text = text.unwrap_or_else(|| header.to_string().into_bytes());
    vec![(NATIVE_FILE.into(), join(&text, &data))]
}
