//! `Network` -> ONNX (opset 13).
//!
//! Each value is written with the rank ONNX operators expect: 2 (`[N, F]`) after `Linear` and
//! `Flatten` (and for a flat network input), 4 (`[N, C, H, W]`) otherwise. Where an operator
//! needs the other rank (a `Linear` reading a convolution's output, a `Conv` reading a flat
//! value), a `Reshape` to `[-1, F]` or `[-1, C, H, W]` is inserted; the importer turns those
//! back into nothing, so export + import gives the same `NetSpec`.

use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use crate::error::Result;
use crate::net::{Network, Op, Shape};
use crate::tensor::to_vec;
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 7;

/// Writes `net` as an ONNX file, atomically: a failed export leaves no partial file behind.
pub fn export(net: &Network, path: &Path) -> Result<()> {
    crate::io::atomic::write_bytes(path, &export_bytes(net))
}

/// The ONNX encoding of `net`.
pub fn export_bytes(net: &Network) -> Vec<u8> {
    model(net).to_bytes()
}

fn is_flat(s: &Shape) -> bool {
    s[1] == 1 && s[2] == 1
}

struct Writer<'n> {
    net: &'n Network,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// ONNX name and rank of every IR value.
    names: Vec<String>,
    ranks: Vec<usize>,
    reshaped: HashMap<(usize, usize), String>,
}

impl Writer<'_> {
    fn init_f32(&mut self, name: String, dims: &[usize], values: &[f32]) -> String {
        self.inits.push(TensorProto::from_f32(name.clone(), dims, values));
        name
    }

    /// The ONNX name of value `v` with rank `rank`, inserting a `Reshape` if needed.
    fn with_rank(&mut self, v: usize, rank: usize) -> String {
        if self.ranks[v] == rank {
            return self.names[v].clone();
        }
        if let Some(n) = self.reshaped.get(&(v, rank)) {
            return n.clone();
        }
        let s = self.net.shape(v);
        let target: Vec<i64> =
            if rank == 2 { vec![-1, (s[0] * s[1] * s[2]) as i64] } else { vec![-1, s[0] as i64, s[1] as i64, s[2] as i64] };
        let base = self.names[v].clone();
        let shape_name = format!("{base}.shape{rank}");
        self.inits.push(TensorProto::from_i64(shape_name.clone(), &[target.len()], &target));
        let out = format!("{base}.rank{rank}");
        self.nodes.push(NodeProto::new("Reshape", format!("{base}/reshape{rank}"), &[&base, &shape_name], &[&out], vec![]));
        self.reshaped.insert((v, rank), out.clone());
        out
    }
}

fn model(net: &Network) -> ModelProto {
    let input_shape = net.input_shape();
    let input_rank = if is_flat(&input_shape) { 2 } else { 4 };
    let mut w = Writer {
        net,
        nodes: Vec::new(),
        inits: Vec::new(),
        names: vec!["input".to_string()],
        ranks: vec![input_rank],
        reshaped: HashMap::new(),
    };
    let mut used_names = HashSet::new();
    for node in net.nodes() {
        // Node names are unique in a well-formed network; keep ONNX names unique regardless.
        let mut name = node.name.clone();
        let mut k = 1;
        while !used_names.insert(name.clone()) {
            name = format!("{}_{k}", node.name);
            k += 1;
        }
        let n = name.as_str();
        let out = format!("{n}.out");
        let x = node.inputs.first().copied().unwrap_or(0);
        let rank = match &node.op {
            Op::Linear(l) => {
                let a = w.with_rank(x, 2);
                let (o, f) = (l.out_features(), l.in_features());
                let wt = w.init_f32(format!("{n}.weight"), &[o, f], &to_vec(l.weight.clone()));
                let b = w.init_f32(format!("{n}.bias"), &[o], &to_vec(l.bias.clone()));
                w.nodes.push(NodeProto::new("Gemm", n, &[&a, &wt, &b], &[&out], vec![AttributeProto::int("transB", 1)]));
                2
            }
            Op::Conv2d(c) => {
                let a = w.with_rank(x, 4);
                let dims = c.weight.dims();
                let wt = w.init_f32(format!("{n}.weight"), &dims, &to_vec(c.weight.clone()));
                let b = w.init_f32(format!("{n}.bias"), &[dims[0]], &to_vec(c.bias.clone()));
                let [ph, pw] = c.padding.map(|p| p as i64);
                let attrs = vec![
                    AttributeProto::ints("kernel_shape", &[dims[2] as i64, dims[3] as i64]),
                    AttributeProto::ints("strides", &c.stride.map(|s| s as i64)),
                    AttributeProto::ints("pads", &[ph, pw, ph, pw]),
                    AttributeProto::ints("dilations", &[1, 1]),
                    AttributeProto::int("group", 1),
                ];
                w.nodes.push(NodeProto::new("Conv", n, &[&a, &wt, &b], &[&out], attrs));
                4
            }
            Op::Normalize(nm) => {
                let r = w.ranks[x];
                let mean = to_vec(nm.mean.clone());
                let std = to_vec(nm.std.clone());
                let dims: Vec<usize> = if r == 4 { vec![mean.len(), 1, 1] } else { vec![mean.len()] };
                let m = w.init_f32(format!("{n}.mean"), &dims, &mean);
                let s = w.init_f32(format!("{n}.std"), &dims, &std);
                let centered = format!("{n}.centered");
                let a = w.names[x].clone();
                w.nodes.push(NodeProto::new("Sub", n, &[&a, &m], &[&centered], vec![]));
                w.nodes.push(NodeProto::new("Div", format!("{n}/div"), &[&centered, &s], &[&out], vec![]));
                r
            }
            Op::BatchNorm(b) => {
                let r = w.ranks[x];
                let c = b.gamma.dims()[0];
                let mut ins = vec![w.names[x].clone()];
                for (local, t) in
                    [("weight", &b.gamma), ("bias", &b.beta), ("running_mean", &b.running_mean), ("running_var", &b.running_var)]
                {
                    ins.push(w.init_f32(format!("{n}.{local}"), &[c], &to_vec(t.clone())));
                }
                let ins: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
                let attrs = vec![AttributeProto::float("epsilon", b.eps as f32)];
                w.nodes.push(NodeProto::new("BatchNormalization", n, &ins, &[&out], attrs));
                r
            }
            Op::AvgPool2d(p) => {
                let a = w.with_rank(x, 4);
                let [ph, pw] = p.padding.map(|v| v as i64);
                let attrs = vec![
                    AttributeProto::ints("kernel_shape", &p.kernel.map(|k| k as i64)),
                    AttributeProto::ints("strides", &p.stride.map(|s| s as i64)),
                    AttributeProto::ints("pads", &[ph, pw, ph, pw]),
                    AttributeProto::int("count_include_pad", 1),
                ];
                w.nodes.push(NodeProto::new("AveragePool", n, &[&a], &[&out], attrs));
                4
            }
            Op::Flatten(_) => {
                let a = w.names[x].clone();
                w.nodes.push(NodeProto::new("Flatten", n, &[&a], &[&out], vec![AttributeProto::int("axis", 1)]));
                2
            }
            Op::Relu => {
                let a = w.names[x].clone();
                w.nodes.push(NodeProto::new("Relu", n, &[&a], &[&out], vec![]));
                w.ranks[x]
            }
            Op::Add => {
                let r = w.ranks[x];
                let a = w.names[x].clone();
                let b = w.with_rank(node.inputs.get(1).copied().unwrap_or(x), r);
                w.nodes.push(NodeProto::new("Add", n, &[&a, &b], &[&out], vec![]));
                r
            }
        };
        w.names.push(out);
        w.ranks.push(rank);
    }

    // The graph output "output" is [N, K].
    let last = net.output_value();
    let k = net.num_outputs();
    if w.ranks[last] == 2 && last > 0 {
        if let Some(out) = w.nodes.last_mut().and_then(|n| n.output.first_mut()) {
            *out = "output".into();
        }
    } else {
        let src = w.names[last].clone();
        if w.ranks[last] == 2 {
            w.nodes.push(NodeProto::new("Identity", "output/identity", &[&src], &["output"], vec![]));
        } else {
            let shape_name = "output.shape".to_string();
            w.inits.push(TensorProto::from_i64(shape_name.clone(), &[2], &[-1, k as i64]));
            w.nodes.push(NodeProto::new("Reshape", "output/reshape", &[&src, &shape_name], &["output"], vec![]));
        }
    }

    let input_dims: Vec<Option<usize>> = if input_rank == 2 {
        vec![None, Some(input_shape[0])]
    } else {
        vec![None, Some(input_shape[0]), Some(input_shape[1]), Some(input_shape[2])]
    };
    let graph = GraphProto {
        name: "ironbound".into(),
        node: w.nodes,
        initializer: w.inits,
        input: vec![ValueInfoProto::float_tensor("input", &input_dims)],
        output: vec![ValueInfoProto::float_tensor("output", &[None, Some(k)])],
        ..Default::default()
    };
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "ironbound".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
}
