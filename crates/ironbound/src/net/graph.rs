//! `Network`: the nodes of a feed-forward DAG in topological order, with every value's shape.

use super::{add, numel, relu, Op, Shape};
use crate::error::{Error, Result};
use crate::tensor::{Device, Tensor};

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// Value ids this node reads (0 = network input, i + 1 = output of node i).
    pub inputs: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Network {
    input_shape: Shape,
    nodes: Vec<Node>,
    /// `shapes[v]` is the per-sample shape of value v.
    shapes: Vec<Shape>,
}

impl Network {
    pub fn new(input_shape: Shape) -> Self {
        Network { input_shape, nodes: Vec::new(), shapes: vec![input_shape] }
    }

    /// Appends a node reading `inputs`; returns its value id. Checks arity and shapes.
    pub fn push(&mut self, name: impl Into<String>, op: Op, inputs: &[usize]) -> Result<usize> {
        let name = name.into();
        if inputs.len() != op.num_inputs() {
            return Err(Error::input(format!("node {name}: {} takes {} inputs, got {}", op.kind(), op.num_inputs(), inputs.len())));
        }
        if let Some(&bad) = inputs.iter().find(|&&v| v >= self.shapes.len()) {
            return Err(Error::input(format!("node {name}: input value {bad} does not exist yet")));
        }
        let shape = match &op {
            Op::Relu => Ok(self.shapes[inputs[0]]),
            Op::Add => add::output_shape(&self.shapes[inputs[0]], &self.shapes[inputs[1]]),
            other => other.as_affine().map(|a| a.output_shape(&self.shapes[inputs[0]])).unwrap_or_else(|| unreachable!()),
        }
        .map_err(|e| Error::input(format!("node {name}: {e}")))?;
        // Bounded so that later shape products cannot overflow and a hostile padding cannot
        // ask for an absurd allocation.
        if super::spec::checked_numel(&shape).is_none() {
            return Err(Error::input(format!("node {name}: its output of shape {shape:?} per sample is too large")));
        }
        self.nodes.push(Node { name, op, inputs: inputs.to_vec() });
        self.shapes.push(shape);
        Ok(self.shapes.len() - 1)
    }

    /// Appends a single-input node reading the current output.
    pub fn chain(&mut self, name: impl Into<String>, op: Op) -> Result<usize> {
        let last = self.output_value();
        self.push(name, op, &[last])
    }

    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn shape(&self, value: usize) -> Shape {
        self.shapes[value]
    }

    pub fn output_value(&self) -> usize {
        self.nodes.len()
    }

    pub fn output_shape(&self) -> Shape {
        self.shapes[self.output_value()]
    }

    /// Number of outputs (classes).
    pub fn num_outputs(&self) -> usize {
        numel(&self.output_shape())
    }

    /// The node producing value `v` (None for the input).
    pub fn producer(&self, v: usize) -> Option<&Node> {
        v.checked_sub(1).map(|i| &self.nodes[i])
    }

    pub fn device(&self) -> Option<Device> {
        self.nodes.iter().find_map(|n| n.op.first_param_device())
    }

    /// Checks that `x` is a batch of this network's inputs.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<()> {
        let [_, c, h, w] = dims;
        if [c, h, w] != self.input_shape {
            return Err(Error::input(format!(
                "input has shape {c}x{h}x{w} per sample but the model expects {}x{}x{}",
                self.input_shape[0], self.input_shape[1], self.input_shape[2]
            )));
        }
        Ok(())
    }

    /// Every value of the forward pass (index = value id).
    pub fn forward_values(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut values = Vec::with_capacity(self.nodes.len() + 1);
        values.push(x);
        for node in &self.nodes {
            let input = |k: usize| values[node.inputs[k]].clone();
            let y = match &node.op {
                Op::Relu => relu::forward(input(0)),
                Op::Add => add::forward(input(0), input(1)),
                op => op.as_affine().map(|a| a.forward(input(0))).unwrap_or_else(|| unreachable!()),
            };
            values.push(y);
        }
        values
    }

    /// Logits `[N, K]` for a batch `[N, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let n = x.dims()[0];
        let k = self.num_outputs();
        let out = if self.nodes.is_empty() { x } else { self.forward_values(x).pop().unwrap_or_else(|| unreachable!()) };
        out.reshape([n, k])
    }

    /// The same network with every parameter tensor replaced by `f(tensor)` (moving to
    /// another device, detaching, marking for gradients).
    /// (`f` gets the local name: weight, bias, mean, std, running_mean, running_var.)
    pub fn map_params(&self, f: &mut dyn FnMut(&str, super::Param) -> super::Param) -> Network {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node { name: n.name.clone(), op: n.op.map_params(f), inputs: n.inputs.clone() })
            .collect();
        Network { input_shape: self.input_shape, nodes, shapes: self.shapes.clone() }
    }

    /// [`Network::map_params`] with the index of each parameter's node.
    pub fn map_node_params(&self, f: &mut dyn FnMut(usize, &str, super::Param) -> super::Param) -> Network {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Node { name: n.name.clone(), op: n.op.map_params(&mut |name, p| f(i, name, p)), inputs: n.inputs.clone() })
            .collect();
        Network { input_shape: self.input_shape, nodes, shapes: self.shapes.clone() }
    }

    /// The same network behind an input normalisation `(x - mean[c]) / std[c]`, so that its
    /// inputs (and eps) are in pixel units. `mean` and `std` have one entry per input channel
    /// (or one for all); every `std` must be > 0.
    pub fn with_normalize(&self, mean: &[f32], std: &[f32]) -> Result<Network> {
        let c = self.input_shape[0];
        let (mean, std) = super::normalize::per_channel(mean, std, c, "--normalize").map_err(Error::input)?;
        let device = self.device().unwrap_or_else(crate::tensor::default_device);
        let norm = super::Normalize::new(crate::tensor::from_vec(mean, [c], &device), crate::tensor::from_vec(std, [c], &device));
        let mut out = Network::new(self.input_shape);
        out.push("normalize", Op::Normalize(norm), &[0])?;
        for node in &self.nodes {
            let inputs: Vec<usize> = node.inputs.iter().map(|v| v + 1).collect();
            out.push(node.name.clone(), node.op.clone(), &inputs)?;
        }
        Ok(out)
    }

    pub fn to_device(&self, device: &Device) -> Network {
        self.map_params(&mut |_, p| p.map(|t1| t1.to_device(device), |t2| t2.to_device(device), |t4| t4.to_device(device)))
    }

    /// The float type of the parameters and constants (None for a network without any).
    pub fn dtype(&self) -> Option<crate::tensor::DType> {
        let mut found = None;
        self.map_params(&mut |_, p| {
            found.get_or_insert(p.dtype());
            p
        });
        found
    }

    /// The same network with every parameter and constant in float type `dtype` (exact when
    /// widening float32 to float64: float-sound bounds compute in float64).
    pub fn with_dtype(&self, dtype: crate::tensor::DType) -> Network {
        self.map_params(&mut |_, p| p.map(|t1| t1.cast(dtype), |t2| t2.cast(dtype), |t4| t4.cast(dtype)))
    }

    /// Named parameters, PyTorch style (`<node>.weight`, `<node>.bias`, ...).
    pub fn named_params(&self) -> Vec<(String, super::Param)> {
        self.nodes
            .iter()
            .flat_map(|n| n.op.params().into_iter().map(move |(k, p)| (format!("{}.{}", n.name, k), p)))
            .collect()
    }
}
