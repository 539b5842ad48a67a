//! ONNX -> `Network`.
//!
//! The graph is interpreted node by node. Every ONNX value is either a constant (initializers,
//! `Constant` nodes and everything computed only from constants, folded by `fold`) or a value
//! of the network: an IR value id, its ONNX rank (2 = `[N, F]`, 4 = `[N, C, H, W]`) and a
//! pending per-channel affine map `x * s + t` collected from `Add`/`Sub`/`Mul`/`Div` by
//! constants. A pending map becomes a `Normalize` node (all scales > 0), is added to the bias of
//! the `Linear`/`Conv2d` that produced the value (`MatMul` + `Add`, a pure bias), or becomes an
//! inference `BatchNorm` with mean 0, variance 1 and eps 0 (any other per-channel map) when a
//! consumer needs the value itself.
//!
//! A `Reshape` that flattens and feeds only `Gemm`/`MatMul` (or the graph output) creates no
//! node: `Linear` flattens its input implicitly. Such a value is "virtually flat": rank 2 in
//! ONNX while its IR shape is still `[C, H, W]`.

use super::fold::{self, checked_numel, Const, MAX_DIM};
use super::proto::{data_type, tensor_shape_proto::dimension, type_proto, AttributeProto, ModelProto, NodeProto};
use crate::error::{Error, Result};
use crate::net::{NetSpec, Network, NodeSpec, OpSpec, Shape};
use crate::tensor::Device;
use std::collections::{HashMap, HashSet};
use std::path::Path;

mod ops;

/// Opsets 7 and 8 (ACAS Xu's VNN-COMP models) differ from 9 only in operators this importer
/// does not read (Upsample, Cast, Scan) and in BatchNormalization's `spatial` attribute, which
/// `batchnorm` checks.
const MIN_OPSET: i64 = 7;
const MAX_OPSET: i64 = 20;
/// Largest per-sample size (elements) of any value.
const MAX_NUMEL: usize = 1 << 40;

const SUPPORTED: &[&str] = &[
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Conv",
    "Relu",
    "Flatten",
    "Reshape",
    "BatchNormalization",
    "AveragePool",
    "Constant",
    "Identity",
    "Dropout",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Cast",
];

/// Reads an ONNX model file.
pub fn import(path: &Path, device: &Device) -> Result<Network> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read the file: {e}")))?;
    import_impl(&bytes, path, device)
}

/// Reads an ONNX model from memory; `name_for_errors` (usually the file name) prefixes every
/// error message.
pub fn import_bytes(bytes: &[u8], name_for_errors: &str, device: &Device) -> Result<Network> {
    import_impl(bytes, Path::new(name_for_errors), device)
}

fn import_impl(bytes: &[u8], file: &Path, device: &Device) -> Result<Network> {
    let model = ModelProto::from_bytes(bytes).map_err(|e| Error::file(file, format!("not a valid ONNX model: {e}")))?;
    let graph = model.graph.as_ref().ok_or_else(|| Error::file(file, "not a valid ONNX model: it has no graph"))?;
    let mut imp = Importer::new(file);
    imp.check_opset(&model)?;
    let (spec, mut params) = imp.run(graph)?;
    spec.build(device, &mut |name, _shape| {
        params.remove(name).ok_or_else(|| Error::internal(format!("onnx import: parameter {name} was not collected")))
    })
    .map_err(|e| match e {
        Error::InvalidInput(m) => Error::file(file, m),
        other => other,
    })
}

/// A per-channel affine map `x * s + t` waiting to be applied.
#[derive(Clone, Debug)]
struct Affine {
    s: Vec<f64>,
    t: Vec<f64>,
    /// Built from `Add`s only (so `s == 1`): a bias.
    only_add: bool,
    /// Name for the node it becomes.
    name: String,
}

#[derive(Clone, Debug)]
struct NetVal {
    id: usize,
    /// ONNX rank: 2 or 4.
    rank: usize,
    affine: Option<Affine>,
    /// No other ONNX value refers to `id`: a pending bias may be folded into its producer.
    exclusive: bool,
}

#[derive(Clone, Debug)]
enum Val {
    C(Const),
    N(NetVal),
}

struct BNode {
    name: String,
    op: OpSpec,
    inputs: Vec<usize>,
    params: Vec<(&'static str, Vec<f32>)>,
}

struct Importer<'a> {
    file: &'a Path,
    opset: i64,
    vals: HashMap<String, Val>,
    uses: HashMap<String, usize>,
    consumers: HashMap<String, Vec<String>>,
    nodes: Vec<BNode>,
    shapes: Vec<Shape>,
    names: HashSet<String>,
    batch: usize,
}

const OUTPUT_USE: &str = "<graph output>";

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn to_f64_exactish(x: f32) -> f64 {
    // The shortest decimal that reads back as `x`, read as f64: 1e-5f32 -> 1e-5.
    format!("{x}").parse::<f64>().unwrap_or(x as f64)
}

impl<'a> Importer<'a> {
    fn new(file: &'a Path) -> Self {
        Importer {
            file,
            opset: 0,
            vals: HashMap::new(),
            uses: HashMap::new(),
            consumers: HashMap::new(),
            nodes: Vec::new(),
            shapes: Vec::new(),
            names: HashSet::new(),
            batch: 1,
        }
    }

    fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::file(self.file, msg)
    }

    fn unsupported(&self, msg: impl std::fmt::Display) -> Error {
        Error::unsupported(format!("{}: {msg}", self.file.display()))
    }

    fn check_opset(&mut self, model: &ModelProto) -> Result<()> {
        let default = model.opset_import.iter().filter(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).max();
        let Some(version) = default else {
            return Err(self.invalid("not a valid ONNX model: it imports no version of the default operator set"));
        };
        if !(MIN_OPSET..=MAX_OPSET).contains(&version) {
            return Err(self.unsupported(format!("ONNX opset {version} is not supported (supported: {MIN_OPSET} to {MAX_OPSET})")));
        }
        self.opset = version;
        Ok(())
    }

    fn node_label(node: &NodeProto, idx: usize) -> String {
        if node.name.is_empty() {
            format!("#{idx} ({})", node.op_type)
        } else {
            node.name.clone()
        }
    }

    fn run(&mut self, graph: &super::proto::GraphProto) -> Result<(NetSpec, HashMap<String, Vec<f32>>)> {
        // Unsupported operators first: the most useful message for a model we cannot read.
        for (idx, node) in graph.node.iter().enumerate() {
            if !(node.domain.is_empty() || node.domain == "ai.onnx") {
                return Err(self.unsupported(format!(
                    "node '{}' has unsupported op type '{}' (domain '{}')",
                    Self::node_label(node, idx),
                    node.op_type,
                    node.domain
                )));
            }
            if !SUPPORTED.contains(&node.op_type.as_str()) {
                return Err(self.unsupported(format!("node '{}' has unsupported op type '{}'", Self::node_label(node, idx), node.op_type)));
            }
        }
        for init in &graph.initializer {
            let c = fold::from_proto(init).map_err(|e| self.invalid(format!("initializer '{}' {e}", init.name)))?;
            self.vals.insert(init.name.clone(), Val::C(c));
        }
        self.read_input(graph)?;
        if graph.output.len() != 1 {
            return Err(self.unsupported(format!("the model has {} outputs; exactly one is supported", graph.output.len())));
        }
        let out_name = graph.output[0].name.clone();
        for node in &graph.node {
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                *self.uses.entry(i.clone()).or_default() += 1;
                self.consumers.entry(i.clone()).or_default().push(node.op_type.clone());
            }
        }
        *self.uses.entry(out_name.clone()).or_default() += 1;
        self.consumers.entry(out_name.clone()).or_default().push(OUTPUT_USE.into());

        for (idx, node) in graph.node.iter().enumerate() {
            let label = Self::node_label(node, idx);
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                if !self.vals.contains_key(i) {
                    return Err(self.invalid(format!(
                        "node '{label}' ({}) reads '{i}', which is neither an initializer, the graph input, nor the output of an earlier node",
                        node.op_type
                    )));
                }
            }
            let first =
                node.output.first().filter(|o| !o.is_empty()).ok_or_else(|| self.invalid(format!("node '{label}' has no output")))?;
            for extra in node.output.iter().skip(1).filter(|o| !o.is_empty()) {
                if self.uses.get(extra).copied().unwrap_or(0) > 0 {
                    return Err(self.unsupported(format!(
                        "node '{label}' ({}): its output '{extra}' is used, but only the first output is supported",
                        node.op_type
                    )));
                }
            }
            let val = self.node(node, idx, &label)?;
            if self.vals.insert(first.clone(), val).is_some() {
                return Err(self.invalid(format!("node '{label}' redefines value '{first}'")));
            }
        }

        let out = match self.vals.get(&out_name) {
            Some(Val::N(_)) => self.realized(&out_name)?,
            Some(Val::C(_)) => {
                return Err(self.unsupported(format!("the graph output '{out_name}' is a constant, not computed from the input")))
            }
            None => return Err(self.invalid(format!("the graph output '{out_name}' is not computed by any node"))),
        };
        Ok(self.finish(out.id))
    }

    fn read_input(&mut self, graph: &super::proto::GraphProto) -> Result<()> {
        let inputs: Vec<_> = graph.input.iter().filter(|i| !matches!(self.vals.get(&i.name), Some(Val::C(_)))).collect();
        let input = match inputs.as_slice() {
            [one] => *one,
            [] => return Err(self.invalid("the graph has no input")),
            many => {
                let names: Vec<_> = many.iter().map(|i| i.name.as_str()).collect();
                return Err(self.unsupported(format!(
                    "the graph has {} inputs ({}); exactly one is supported",
                    many.len(),
                    names.join(", ")
                )));
            }
        };
        let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t,
            None => return Err(self.unsupported(format!("the graph input '{}' is not a tensor of known type", input.name))),
        };
        if tensor.elem_type != data_type::FLOAT {
            return Err(self
                .unsupported(format!("the graph input '{}' has element type {}; only float is supported", input.name, tensor.elem_type)));
        }
        let dims = tensor.shape.as_ref().map(|s| &s.dim[..]).ok_or_else(|| {
            self.unsupported(format!("the graph input '{}' has no static shape; it must be [N, C, H, W] or [N, F]", input.name))
        })?;
        let mut fixed = Vec::new();
        for (k, d) in dims.iter().enumerate() {
            match d.value {
                Some(dimension::Value::DimValue(v)) if (1..=MAX_DIM).contains(&v) => fixed.push(Some(v as usize)),
                Some(dimension::Value::DimValue(v)) if k > 0 => {
                    return Err(self.invalid(format!("the graph input '{}' has invalid dimension {v}", input.name)))
                }
                _ if k == 0 => fixed.push(None),
                _ => {
                    return Err(self.unsupported(format!(
                        "the graph input '{}' has a symbolic dimension {k}; only the batch dimension may be symbolic",
                        input.name
                    )))
                }
            }
        }
        // A single sample without a batch dimension (VNN-COMP's test networks) reads as `[1, F]`.
        if fixed.len() == 1 && fixed[0].is_some() {
            fixed.insert(0, Some(1));
        }
        let dim = |k: usize| fixed[k].unwrap_or(1);
        let (shape, rank) = match fixed.len() {
            4 => ([dim(1), dim(2), dim(3)], 4),
            2 => ([dim(1), 1, 1], 2),
            // VNN-COMP's `[N, F, 1]` inputs (mnistfc): read as `[N, F, 1, 1]`-like images,
            // which every consumer that flattens treats the same.
            3 => ([dim(1), dim(2), 1], 4),

            r => return Err(self.unsupported(format!("the graph input '{}' has rank {r}; it must be [N, C, H, W] or [N, F]", input.name))),
        };
        if checked_numel(&shape, MAX_NUMEL).is_err() {
            return Err(self.invalid(format!("the graph input '{}' is too large: {shape:?}", input.name)));
        }
        self.batch = fixed[0].unwrap_or(1);
        self.shapes.push(shape);
        self.vals.insert(input.name.clone(), Val::N(NetVal { id: 0, rank, affine: None, exclusive: true }));
        Ok(())
    }

    // ----- attributes -----

    fn attr_int(&self, node: &NodeProto, label: &str, name: &str, default: i64) -> Result<i64> {
        match attr(node, name) {
            None => Ok(default),
            Some(a) => a.i.ok_or_else(|| self.invalid(format!("node '{label}': attribute '{name}' is not an integer"))),
        }
    }

    fn attr_float(&self, node: &NodeProto, label: &str, name: &str, default: f32) -> Result<f32> {
        match attr(node, name) {
            None => Ok(default),
            Some(a) => a.f.ok_or_else(|| self.invalid(format!("node '{label}': attribute '{name}' is not a float"))),
        }
    }

    fn attr_ints(&self, node: &NodeProto, name: &str) -> Option<Vec<i64>> {
        attr(node, name).map(|a| a.ints.clone())
    }

    fn attr_string(&self, node: &NodeProto, name: &str) -> Option<String> {
        attr(node, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
    }

    // ----- values -----

    fn value(&self, node: &NodeProto, k: usize, label: &str) -> Result<&Val> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.invalid(format!("node '{label}' ({}) lacks its input {}", node.op_type, k + 1)))?;
        self.vals.get(name).ok_or_else(|| self.invalid(format!("node '{label}' reads undefined value '{name}'")))
    }

    fn has_input(node: &NodeProto, k: usize) -> bool {
        node.input.get(k).is_some_and(|n| !n.is_empty())
    }

    fn constant(&self, node: &NodeProto, k: usize, label: &str) -> Result<Const> {
        match self.value(node, k, label)? {
            Val::C(c) => Ok(c.clone()),
            Val::N(_) => Err(self.unsupported(format!(
                "node '{label}' ({}): input {} ('{}') must be a constant (initializer), but it is computed from the network input",
                node.op_type,
                k + 1,
                node.input[k]
            ))),
        }
    }

    fn net_name<'n>(&self, node: &'n NodeProto, k: usize, label: &str) -> Result<&'n str> {
        match self.value(node, k, label)? {
            Val::N(_) => Ok(&node.input[k]),
            Val::C(_) => Err(self.unsupported(format!(
                "node '{label}' ({}): input {} ('{}') is a constant, but ironbound needs it to be computed from the network input",
                node.op_type,
                k + 1,
                node.input[k]
            ))),
        }
    }

    fn uses(&self, name: &str) -> usize {
        self.uses.get(name).copied().unwrap_or(0)
    }

    /// The named value with its pending affine map applied (cached).
    fn realized(&mut self, name: &str) -> Result<NetVal> {
        let v = match self.vals.get(name) {
            Some(Val::N(v)) => v.clone(),
            _ => return Err(Error::internal(format!("onnx import: '{name}' is not a network value"))),
        };
        if v.affine.is_none() {
            return Ok(v);
        }
        let v = self.materialize(v)?;
        self.vals.insert(name.to_string(), Val::N(v.clone()));
        Ok(v)
    }

    /// Like `realized`, and a virtually flat value gets a real `Flatten` node.
    fn devirtualized(&mut self, name: &str) -> Result<NetVal> {
        let v = self.realized(name)?;
        if !self.is_virtual(&v) {
            return Ok(v);
        }
        let n = self.fresh_name(&format!("{name}.flatten"));
        let id = self.push(n, OpSpec::Flatten, vec![v.id], vec![])?;
        let v = NetVal { id, rank: 2, affine: None, exclusive: true };
        self.vals.insert(name.to_string(), Val::N(v.clone()));
        Ok(v)
    }

    fn is_virtual(&self, v: &NetVal) -> bool {
        let s = self.shapes[v.id];
        v.rank == 2 && (s[1] != 1 || s[2] != 1)
    }

    /// ONNX dims of a network value, batch first.
    fn onnx_dims(&self, v: &NetVal) -> Vec<usize> {
        let s = self.shapes[v.id];
        if v.rank == 2 {
            vec![self.batch, s[0] * s[1] * s[2]]
        } else {
            vec![self.batch, s[0], s[1], s[2]]
        }
    }

    fn materialize(&mut self, v: NetVal) -> Result<NetVal> {
        let Some(a) = v.affine.clone() else { return Ok(v) };
        let plain = NetVal { affine: None, ..v.clone() };
        if v.exclusive && a.only_add && v.id > 0 {
            let node = &mut self.nodes[v.id - 1];
            if matches!(node.op, OpSpec::Linear { .. } | OpSpec::Conv2d { .. }) {
                if let Some((_, bias)) = node.params.iter_mut().find(|(k, _)| *k == "bias") {
                    if bias.len() == a.t.len() {
                        for (b, t) in bias.iter_mut().zip(&a.t) {
                            *b = (*b as f64 + t) as f32;
                        }
                        return Ok(plain);
                    }
                }
            }
        }
        if a.s.iter().all(|&s| s == 1.0) && a.t.iter().all(|&t| t == 0.0) {
            return Ok(plain);
        }
        let c = a.s.len();
        let name = self.fresh_name(&a.name);
        let mean: Vec<f32> = a.s.iter().zip(&a.t).map(|(s, t)| (-t / s) as f32).collect();
        let std: Vec<f32> = a.s.iter().map(|s| (1.0 / s) as f32).collect();
        let normalize_ok =
            a.s.iter().all(|&s| s > 0.0) && mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0);
        let id = if normalize_ok {
            self.push(name, OpSpec::Normalize { mean, std }, vec![v.id], vec![])?
        } else {
            if a.s.iter().chain(&a.t).any(|x| !(x.is_finite() && (*x as f32).is_finite())) {
                return Err(self.unsupported(format!("node '{}': the per-channel scale or shift is not finite", a.name)));
            }
            let params = vec![
                ("weight", a.s.iter().map(|&x| x as f32).collect()),
                ("bias", a.t.iter().map(|&x| x as f32).collect()),
                ("running_mean", vec![0.0; c]),
                ("running_var", vec![1.0; c]),
            ];
            self.push(name, OpSpec::BatchNorm { channels: c, eps: 0.0 }, vec![v.id], params)?
        };
        Ok(NetVal { id, rank: v.rank, affine: None, exclusive: true })
    }

    fn fresh_name(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "node" } else { base };
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn base_name(node: &NodeProto, idx: usize, weight: Option<&str>) -> String {
        if let Some(prefix) = weight.and_then(|w| w.strip_suffix(".weight")).filter(|p| !p.is_empty()) {
            return prefix.to_string();
        }
        if !node.name.is_empty() {
            return node.name.clone();
        }
        format!("{}_{idx}", node.op_type.to_ascii_lowercase())
    }

    fn push(&mut self, name: String, op: OpSpec, inputs: Vec<usize>, params: Vec<(&'static str, Vec<f32>)>) -> Result<usize> {
        let ins: Vec<Shape> = inputs.iter().map(|&i| self.shapes[i]).collect();
        let shape = out_shape(&op, &ins).map_err(|e| self.invalid(format!("node '{name}': {e}")))?;
        match checked_numel(&shape, MAX_NUMEL) {
            Ok(0) => return Err(self.invalid(format!("node '{name}': output {shape:?} is empty"))),
            Ok(_) => {}
            Err(_) => return Err(self.invalid(format!("node '{name}': output {shape:?} is too large"))),
        }
        self.nodes.push(BNode { name, op, inputs, params });
        self.shapes.push(shape);
        Ok(self.shapes.len() - 1)
    }

    fn fresh(&self, id: usize, rank: usize) -> Val {
        Val::N(NetVal { id, rank, affine: None, exclusive: true })
    }

    /// A value passed through unchanged (Identity, Dropout, Cast to float).
    fn pass_through(&mut self, name: &str) -> Result<Val> {
        if self.uses(name) == 1 {
            return Ok(self.vals.get(name).cloned().unwrap_or_else(|| unreachable!("checked by the caller")));
        }
        let v = self.realized(name)?;
        Ok(Val::N(NetVal { exclusive: false, ..v }))
    }

    // ----- nodes -----

    fn node(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let op = node.op_type.as_str();
        let folded = |r: fold::R<Const>| r.map(Val::C).map_err(|e| self.invalid(format!("node '{label}' ({op}): {e}")));
        match op {
            "Constant" => self.constant_node(node, label),
            "Identity" | "Dropout" => {
                if op == "Dropout" && Self::has_input(node, 2) {
                    let training = self.constant(node, 2, label)?;
                    if training.to_f32().iter().any(|&x| x != 0.0) {
                        return Err(self.unsupported(format!("node '{label}': Dropout in training mode is not supported")));
                    }
                }
                match self.value(node, 0, label)?.clone() {
                    Val::C(c) => Ok(Val::C(c)),
                    Val::N(_) => self.pass_through(&node.input[0]),
                }
            }
            "Cast" => {
                let to = self.attr_int(node, label, "to", 0)?;
                match self.value(node, 0, label)?.clone() {
                    Val::C(c) => folded(fold::cast(&c, to)),
                    Val::N(_) if to == data_type::FLOAT as i64 => self.pass_through(&node.input[0]),
                    Val::N(_) => {
                        Err(self.unsupported(format!("node '{label}': Cast of the network's values to type {to} is not supported")))
                    }
                }
            }
            "Shape" => {
                let dims: Vec<i64> = match self.value(node, 0, label)? {
                    Val::C(c) => c.dims.iter().map(|&d| d as i64).collect(),
                    Val::N(v) => self.onnx_dims(v).iter().map(|&d| d as i64).collect(),
                };
                let r = dims.len() as i64;
                let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
                let start = clamp(self.attr_int(node, label, "start", 0)?);
                let end = clamp(self.attr_int(node, label, "end", r)?);
                let dims = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
                Ok(Val::C(Const::ints(vec![dims.len()], dims)))
            }
            "Gather" => {
                let data = self.constant(node, 0, label)?;
                let indices = self.constant(node, 1, label)?;
                let axis = self.attr_int(node, label, "axis", 0)?;
                folded(fold::gather(&data, &indices, axis))
            }
            "Unsqueeze" | "Squeeze" => {
                let x = self.constant(node, 0, label)?;
                let axes = if Self::has_input(node, 1) {
                    Some(self.constant(node, 1, label)?.as_ints().map_err(|e| self.invalid(format!("node '{label}': {e}")))?.to_vec())
                } else {
                    self.attr_ints(node, "axes")
                };
                if op == "Unsqueeze" {
                    let axes = axes.ok_or_else(|| self.invalid(format!("node '{label}': Unsqueeze without axes")))?;
                    folded(fold::unsqueeze(&x, &axes))
                } else {
                    folded(fold::squeeze(&x, axes.as_deref()))
                }
            }
            "Concat" => {
                let mut xs = Vec::new();
                for k in 0..node.input.len() {
                    if Self::has_input(node, k) {
                        xs.push(self.constant(node, k, label)?);
                    }
                }
                let axis =
                    attr(node, "axis").and_then(|a| a.i).ok_or_else(|| self.invalid(format!("node '{label}': Concat without axis")))?;
                let refs: Vec<&Const> = xs.iter().collect();
                folded(fold::concat(&refs, axis))
            }
            "Reshape" => self.reshape(node, idx, label),
            "Add" | "Sub" | "Mul" | "Div" => self.binary(node, idx, label),
            "Relu" => {
                let x = self.net_name(node, 0, label)?;
                let v = self.realized(x)?;
                let name = self.fresh_name(&Self::base_name(node, idx, None));
                let id = self.push(name, OpSpec::Relu, vec![v.id], vec![])?;
                Ok(self.fresh(id, v.rank))
            }
            "Flatten" => {
                let x = self.net_name(node, 0, label)?;
                let v = self.realized(x)?;
                let axis = self.attr_int(node, label, "axis", 1)?;
                if fold::axis(axis, v.rank) != Ok(1) {
                    return Err(self.unsupported(format!("node '{label}': Flatten with axis {axis} is not supported (only axis 1)")));
                }
                let name = self.fresh_name(&Self::base_name(node, idx, None));
                let id = self.push(name, OpSpec::Flatten, vec![v.id], vec![])?;
                Ok(self.fresh(id, 2))
            }
            "Gemm" | "MatMul" => self.gemm(node, idx, label),
            "Conv" => self.conv(node, idx, label),
            "BatchNormalization" => self.batchnorm(node, idx, label),
            "AveragePool" => self.avgpool(node, idx, label),
            other => Err(self.unsupported(format!("node '{label}' has unsupported op type '{other}'"))),
        }
    }

    /// Keeps the nodes the output depends on and renumbers them.
    fn finish(&mut self, out: usize) -> (NetSpec, HashMap<String, Vec<f32>>) {
        let mut keep = vec![false; self.nodes.len() + 1];
        keep[0] = true;
        if out > 0 {
            keep[out] = true;
        }
        for id in (1..=out).rev() {
            if keep[id] {
                for &i in &self.nodes[id - 1].inputs {
                    keep[i] = true;
                }
            }
        }
        let mut new_id = vec![0usize; self.nodes.len() + 1];
        let mut next = 1;
        let mut nodes = Vec::new();
        let mut params = HashMap::new();
        for (i, node) in std::mem::take(&mut self.nodes).into_iter().enumerate().take(out) {
            if !keep[i + 1] {
                continue;
            }
            new_id[i + 1] = next;
            next += 1;
            for (local, v) in node.params {
                params.insert(format!("{}.{local}", node.name), v);
            }
            nodes.push(NodeSpec { name: node.name, op: node.op, inputs: node.inputs.iter().map(|&i| new_id[i]).collect() });
        }
        (NetSpec { input_shape: self.shapes[0], nodes }, params)
    }
}

fn out_shape(op: &OpSpec, ins: &[Shape]) -> std::result::Result<Shape, String> {
    let x = ins.first().copied().unwrap_or([0, 0, 0]);
    let numel = x[0] * x[1] * x[2];
    let window = |size: usize, k: usize, s: usize, p: usize| -> std::result::Result<usize, String> {
        let padded = size + 2 * p;
        if padded < k || s == 0 {
            return Err(format!("kernel {k} with padding {p} does not fit an input of size {size}"));
        }
        Ok((padded - k) / s + 1)
    };
    match op {
        OpSpec::Linear { in_features, out_features } => {
            if numel != *in_features {
                return Err(format!("linear layer expects {in_features} input features, got {numel} ({x:?})"));
            }
            Ok([*out_features, 1, 1])
        }
        OpSpec::Conv2d { in_channels, out_channels, kernel, stride, padding } => {
            if x[0] != *in_channels {
                return Err(format!("conv expects {in_channels} input channels, got {}", x[0]));
            }
            Ok([*out_channels, window(x[1], kernel[0], stride[0], padding[0])?, window(x[2], kernel[1], stride[1], padding[1])?])
        }
        OpSpec::AvgPool2d { kernel, stride, padding } => {
            Ok([x[0], window(x[1], kernel[0], stride[0], padding[0])?, window(x[2], kernel[1], stride[1], padding[1])?])
        }
        OpSpec::Normalize { mean, .. } if mean.len() != x[0] => Err(format!("{} channel constants for {} channels", mean.len(), x[0])),
        OpSpec::BatchNorm { channels, .. } if *channels != x[0] => Err(format!("{channels} channels for an input with {}", x[0])),
        OpSpec::Normalize { .. } | OpSpec::BatchNorm { .. } | OpSpec::Relu => Ok(x),
        OpSpec::Flatten => Ok([numel, 1, 1]),
        OpSpec::Add => match ins {
            [a, b] if a == b => Ok(*a),
            _ => Err(format!("add: operand shapes differ: {ins:?}")),
        },
    }
}
