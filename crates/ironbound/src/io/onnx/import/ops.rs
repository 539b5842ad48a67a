//! The per-operator conversions of the ONNX importer: constants, reshapes, elementwise
//! constant maps, residual adds, Gemm/MatMul, Conv, BatchNormalization, AveragePool.

use super::*;

impl Importer<'_> {
    pub(super) fn constant_node(&self, node: &NodeProto, label: &str) -> Result<Val> {
        let bad = |e: String| self.invalid(format!("node '{label}' (Constant): {e}"));
        // A Constant node carries exactly one of the value attributes.
        let Some(a) = node.attribute.first() else {
            return Err(bad("it has no value".into()));
        };
        let c = match a.name.as_str() {
            "value" => {
                let t = a.t.as_ref().ok_or_else(|| bad("attribute 'value' holds no tensor".into()))?;
                fold::from_proto(t).map_err(|e| bad(format!("tensor {e}")))?
            }
            "value_float" => Const::floats(vec![], vec![a.f.ok_or_else(|| bad("'value_float' holds no float".into()))?]),
            "value_floats" => Const::floats(vec![a.floats.len()], a.floats.clone()),
            "value_int" => Const::ints(vec![], vec![a.i.ok_or_else(|| bad("'value_int' holds no integer".into()))?]),
            "value_ints" => Const::ints(vec![a.ints.len()], a.ints.clone()),
            other => return Err(self.unsupported(format!("node '{label}': Constant with attribute '{other}' is not supported"))),
        };
        Ok(Val::C(c))
    }

    pub(super) fn reshape(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let target = self.constant(node, 1, label)?;
        let target = target.as_ints().map_err(|e| self.invalid(format!("node '{label}': shape {e}")))?.to_vec();
        let allowzero = self.attr_int(node, label, "allowzero", 0)? != 0;
        let x = match self.value(node, 0, label)?.clone() {
            Val::C(c) => {
                return fold::reshape(&c, &target, allowzero)
                    .map(Val::C)
                    .map_err(|e| self.invalid(format!("node '{label}' (Reshape): {e}")))
            }
            Val::N(_) => node.input[0].clone(),
        };
        let v = self.realized(&x)?;
        let dims = self.onnx_dims(&v);
        let r = fold::reshape_target(&dims, &target, allowzero).map_err(|e| self.invalid(format!("node '{label}' (Reshape): {e}")))?;
        let cur = self.shapes[v.id];
        let numel = cur[0] * cur[1] * cur[2];
        let new: Option<Shape> = match r.as_slice() {
            [n, f] if *n == self.batch => Some([*f, 1, 1]),
            [n, c, h, w] if *n == self.batch => Some([*c, *h, *w]),
            _ => None,
        };
        let Some(new) = new else {
            return Err(self.unsupported(format!(
                "node '{label}': Reshape from {dims:?} to {r:?} is not supported (only flattening to [N, features])"
            )));
        };
        let rank = r.len();
        let exclusive = v.exclusive && self.uses(&x) == 1;
        if new == cur {
            return Ok(Val::N(NetVal { id: v.id, rank, affine: None, exclusive }));
        }
        if new != [numel, 1, 1] {
            return Err(self.unsupported(format!(
                "node '{label}': Reshape from {dims:?} to {r:?} is not supported (only flattening to [N, features])"
            )));
        }
        let out = node.output.first().cloned().unwrap_or_default();
        let only_linear = self.consumers.get(&out).is_some_and(|c| c.iter().all(|op| op == "Gemm" || op == "MatMul" || op == OUTPUT_USE));
        if rank == 2 && only_linear {
            return Ok(Val::N(NetVal { id: v.id, rank, affine: None, exclusive }));
        }
        let name = self.fresh_name(&Self::base_name(node, idx, None));
        let id = self.push(name, OpSpec::Flatten, vec![v.id], vec![])?;
        Ok(self.fresh(id, rank))
    }

    /// The per-channel vector (length = IR channels of `v`) of a constant broadcast against `v`,
    /// or None when it varies along other axes.
    pub(super) fn channel_vector(&self, v: &NetVal, c: &Const) -> Option<Vec<f64>> {
        let dims = self.onnx_dims(v);
        if c.rank() > dims.len() || c.len() == 0 {
            return None;
        }
        let off = dims.len() - c.rank();
        for (k, &cd) in c.dims.iter().enumerate() {
            let j = k + off;
            if !(cd == 1 || (j == 1 && cd == dims[1])) {
                return None;
            }
        }
        let channels = self.shapes[v.id][0];
        let values = c.to_f32();
        if values.len() == 1 {
            Some(vec![values[0] as f64; channels])
        } else if values.len() == channels && !self.is_virtual(v) {
            Some(values.iter().map(|&x| x as f64).collect())
        } else {
            None
        }
    }

    pub(super) fn binary(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let op = node.op_type.as_str();
        let a = self.value(node, 0, label)?.clone();
        let b = self.value(node, 1, label)?.clone();
        let (name, c, net_first) = match (a, b) {
            (Val::C(x), Val::C(y)) => {
                return fold::binary(op, &x, &y).map(Val::C).map_err(|e| self.invalid(format!("node '{label}' ({op}): {e}")))
            }
            (Val::N(_), Val::N(_)) => {
                if op != "Add" {
                    return Err(self.unsupported(format!(
                        "node '{label}': {op} of two values computed from the input is not supported (only Add, as a residual connection)"
                    )));
                }
                return self.residual_add(node, idx, label);
            }
            (Val::N(_), Val::C(c)) => (node.input[0].clone(), c, true),
            (Val::C(c), Val::N(_)) => (node.input[1].clone(), c, false),
        };
        if op == "Div" && !net_first {
            return Err(self.unsupported(format!("node '{label}': dividing a constant by the network's values is not supported")));
        }
        let mut v = match self.vals.get(&name) {
            Some(Val::N(v)) => v.clone(),
            _ => return Err(Error::internal("onnx import: binary operand vanished")),
        };
        if self.uses(&name) > 1 {
            v = NetVal { exclusive: false, ..self.realized(&name)? };
        }
        let mut c = c;
        // A constant with one value per element of a sample (VNN-COMP's ACAS Xu subtracts a
        // mean per input of a [1, 1, 1, 5] tensor) is per-channel once the value is flat.
        let per_element = v.rank == 4 && c.len() > 1 && self.channel_vector(&v, &c).is_none() && c.len() == crate::net::numel(&self.shapes[v.id]);
        if c.len() > 1 && (self.is_virtual(&v) || per_element) {
            // A per-feature constant on a virtually flat value needs the real flat layout.
            let base = self.materialize(v)?;
            let n = self.fresh_name(&format!("{name}.flatten"));
            let id = self.push(n, OpSpec::Flatten, vec![base.id], vec![])?;
            v = NetVal { id, rank: 2, affine: None, exclusive: true };
            if per_element {
                c = Const::floats(vec![1, c.len()], c.to_f32());
            }
        }
        let k = self.channel_vector(&v, &c).ok_or_else(|| {
            self.unsupported(format!(
                "node '{label}': {op} by a constant of shape {:?} is not supported for a value of shape {:?} (only scalars and per-channel constants)",
                c.dims,
                self.onnx_dims(&v)
            ))
        })?;
        let channels = k.len();
        let mut a = v.affine.take().unwrap_or_else(|| Affine {
            s: vec![1.0; channels],
            t: vec![0.0; channels],
            only_add: true,
            name: Self::base_name(node, idx, None),
        });
        match (op, net_first) {
            ("Add", _) => a.t.iter_mut().zip(&k).for_each(|(t, k)| *t += k),
            ("Sub", true) => {
                a.t.iter_mut().zip(&k).for_each(|(t, k)| *t -= k);
                a.only_add = false;
            }
            ("Sub", false) => {
                a.s.iter_mut().for_each(|s| *s = -*s);
                a.t.iter_mut().zip(&k).for_each(|(t, k)| *t = k - *t);
                a.only_add = false;
            }
            ("Mul", _) => {
                a.s.iter_mut().zip(&k).for_each(|(s, k)| *s *= k);
                a.t.iter_mut().zip(&k).for_each(|(t, k)| *t *= k);
                a.only_add = false;
            }
            _ => {
                if k.contains(&0.0) {
                    return Err(self.invalid(format!("node '{label}': division by zero")));
                }
                a.s.iter_mut().zip(&k).for_each(|(s, k)| *s /= k);
                a.t.iter_mut().zip(&k).for_each(|(t, k)| *t /= k);
                a.only_add = false;
            }
        }
        Ok(Val::N(NetVal { affine: Some(a), ..v }))
    }

    pub(super) fn residual_add(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let (x, y) = (node.input[0].clone(), node.input[1].clone());
        let mut a = self.realized(&x)?;
        let mut b = self.realized(&y)?;
        if self.shapes[a.id] != self.shapes[b.id] || a.rank != b.rank {
            if self.onnx_dims(&a) != self.onnx_dims(&b) {
                return Err(self.unsupported(format!(
                    "node '{label}': Add of values of shapes {:?} and {:?} is not supported (no broadcasting)",
                    self.onnx_dims(&a),
                    self.onnx_dims(&b)
                )));
            }
            a = self.devirtualized(&x)?;
            b = self.devirtualized(&y)?;
        }
        let name = self.fresh_name(&Self::base_name(node, idx, None));
        let id = self.push(name, OpSpec::Add, vec![a.id, b.id], vec![])?;
        Ok(self.fresh(id, a.rank))
    }

    pub(super) fn gemm(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let op = node.op_type.as_str();
        let x = self.net_name(node, 0, label)?.to_string();
        let w = self.constant(node, 1, label)?;
        let v = self.realized(&x)?;
        if v.rank != 2 {
            return Err(self.unsupported(format!(
                "node '{label}': {op} on a value of shape {:?} is not supported (it must be [N, features]; add a Flatten)",
                self.onnx_dims(&v)
            )));
        }
        let s = self.shapes[v.id];
        let f = s[0] * s[1] * s[2];
        let (mut trans_b, mut alpha, mut beta) = (false, 1.0f32, 1.0f32);
        if op == "Gemm" {
            if self.attr_int(node, label, "transA", 0)? != 0 {
                return Err(self.unsupported(format!("node '{label}': Gemm with transA=1 on the network's values is not supported")));
            }
            trans_b = self.attr_int(node, label, "transB", 0)? != 0;
            alpha = self.attr_float(node, label, "alpha", 1.0)?;
            beta = self.attr_float(node, label, "beta", 1.0)?;
        }
        let wv = w.to_f32();
        let (k, weight) = match (w.dims.as_slice(), trans_b) {
            (&[k, fi], true) if fi == f => (k, wv.iter().map(|&x| x * alpha).collect::<Vec<f32>>()),
            (&[fi, k], false) if fi == f => {
                let mut t = vec![0.0f32; k * f];
                for i in 0..f {
                    for j in 0..k {
                        t[j * f + i] = wv[i * k + j] * alpha;
                    }
                }
                (k, t)
            }
            (dims, _) => {
                return Err(self.invalid(format!(
                    "node '{label}' ({op}): weight '{}' has shape {dims:?}, which does not fit {f} input features{}",
                    node.input[1],
                    if op == "Gemm" { format!(" (transB={})", trans_b as i32) } else { String::new() }
                )))
            }
        };
        let mut bias = vec![0.0f32; k];
        if op == "Gemm" && Self::has_input(node, 2) {
            let c = self.constant(node, 2, label)?;
            let cv = c.to_f32();
            let ok_shape = match c.dims.as_slice() {
                [] => true,
                [n] => *n == 1 || *n == k,
                [m, n] => *m == 1 && (*n == 1 || *n == k),
                _ => false,
            };
            if !ok_shape || cv.is_empty() {
                return Err(self.invalid(format!("node '{label}' (Gemm): bias '{}' has shape {:?}, expected [{k}]", node.input[2], c.dims)));
            }
            for (j, b) in bias.iter_mut().enumerate() {
                *b = beta * if cv.len() == 1 { cv[0] } else { cv[j] };
            }
        }
        let name = self.fresh_name(&Self::base_name(node, idx, Some(&node.input[1])));
        let id =
            self.push(name, OpSpec::Linear { in_features: f, out_features: k }, vec![v.id], vec![("weight", weight), ("bias", bias)])?;
        Ok(self.fresh(id, 2))
    }

    pub(super) fn spatial_attrs(&self, node: &NodeProto, label: &str, what: &str) -> Result<([usize; 2], [usize; 2])> {
        let to_dim = |x: i64, min: i64| -> Result<usize> {
            if (min..=MAX_DIM).contains(&x) {
                Ok(x as usize)
            } else {
                Err(self.invalid(format!("node '{label}' ({what}): invalid value {x}")))
            }
        };
        match self.attr_string(node, "auto_pad").as_deref() {
            None | Some("NOTSET") | Some("") | Some("VALID") => {}
            Some(other) => return Err(self.unsupported(format!("node '{label}': {what} with auto_pad={other} is not supported"))),
        }
        let valid = self.attr_string(node, "auto_pad").as_deref() == Some("VALID");
        if let Some(d) = self.attr_ints(node, "dilations") {
            if d.iter().any(|&x| x != 1) {
                return Err(self.unsupported(format!("node '{label}': {what} with dilations {d:?} is not supported")));
            }
        }
        let strides = self.attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
        let [sh, sw] = strides[..] else {
            return Err(self.unsupported(format!("node '{label}': {what} with strides {strides:?}: only 2-d is supported")));
        };
        let pads = if valid { vec![0; 4] } else { self.attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]) };
        let [pt, pl, pb, pr] = pads[..] else {
            return Err(self.unsupported(format!("node '{label}': {what} with pads {pads:?}: only 2-d is supported")));
        };
        if pt != pb || pl != pr {
            return Err(self.unsupported(format!("node '{label}': {what} with asymmetric pads {pads:?} is not supported")));
        }
        Ok(([to_dim(sh, 1)?, to_dim(sw, 1)?], [to_dim(pt, 0)?, to_dim(pl, 0)?]))
    }

    pub(super) fn spatial_input(&mut self, node: &NodeProto, label: &str) -> Result<NetVal> {
        let x = self.net_name(node, 0, label)?.to_string();
        let v = self.realized(&x)?;
        if v.rank != 4 {
            return Err(self.unsupported(format!(
                "node '{label}': {} on a value of shape {:?} is not supported (it must be [N, C, H, W])",
                node.op_type,
                self.onnx_dims(&v)
            )));
        }
        Ok(v)
    }

    pub(super) fn conv(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let v = self.spatial_input(node, label)?;
        let w = self.constant(node, 1, label)?;
        let &[o, i, kh, kw] = w.dims.as_slice() else {
            return Err(self.unsupported(format!("node '{label}': Conv with a weight of shape {:?} is not supported (only 2-d)", w.dims)));
        };
        if w.len() == 0 {
            return Err(self.invalid(format!("node '{label}': Conv weight of shape {:?} is empty", w.dims)));
        }
        if self.attr_int(node, label, "group", 1)? != 1 {
            return Err(self.unsupported(format!("node '{label}': grouped Conv is not supported")));
        }
        if let Some(k) = self.attr_ints(node, "kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(self.invalid(format!("node '{label}': kernel_shape {k:?} does not match the weight's shape {:?}", w.dims)));
            }
        }
        let (stride, padding) = self.spatial_attrs(node, label, "Conv")?;
        let c = self.shapes[v.id][0];
        if i != c {
            return Err(self.invalid(format!("node '{label}': Conv weight has {i} input channels but its input has {c}")));
        }
        let bias = if Self::has_input(node, 2) {
            let b = self.constant(node, 2, label)?;
            if b.len() != o {
                return Err(self.invalid(format!("node '{label}': Conv bias has {} values, expected {o}", b.len())));
            }
            b.to_f32()
        } else {
            vec![0.0; o]
        };
        let name = self.fresh_name(&Self::base_name(node, idx, Some(&node.input[1])));
        let op = OpSpec::Conv2d { in_channels: i, out_channels: o, kernel: [kh, kw], stride, padding };
        let id = self.push(name, op, vec![v.id], vec![("weight", w.to_f32()), ("bias", bias)])?;
        Ok(self.fresh(id, 4))
    }

    pub(super) fn batchnorm(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let x = self.net_name(node, 0, label)?.to_string();
        if self.attr_int(node, label, "training_mode", 0)? != 0 {
            return Err(self.unsupported(format!("node '{label}': BatchNormalization in training mode is not supported")));
        }
        // Opsets 7-8: spatial = 0 normalises per element instead of per channel.
        if self.attr_int(node, label, "spatial", 1)? != 1 {
            return Err(self.unsupported(format!("node '{label}': BatchNormalization with spatial = 0 is not supported")));
        }
        let v = self.devirtualized(&x)?;
        let c = self.shapes[v.id][0];
        let mut ps = Vec::new();
        for (k, local) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
            let t = self.constant(node, k, label)?;
            if t.len() != c {
                return Err(self.invalid(format!(
                    "node '{label}': BatchNormalization input {} ('{}') has {} values, expected {c}",
                    k + 1,
                    node.input[k],
                    t.len()
                )));
            }
            ps.push((local, t.to_f32()));
        }
        let eps = self.attr_float(node, label, "epsilon", 1e-5)?;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(self.invalid(format!("node '{label}': invalid epsilon {eps}")));
        }
        let name = self.fresh_name(&Self::base_name(node, idx, Some(&node.input[1])));
        let id = self.push(name, OpSpec::BatchNorm { channels: c, eps: to_f64_exactish(eps) }, vec![v.id], ps)?;
        Ok(self.fresh(id, v.rank))
    }

    pub(super) fn avgpool(&mut self, node: &NodeProto, idx: usize, label: &str) -> Result<Val> {
        let v = self.spatial_input(node, label)?;
        let k = self.attr_ints(node, "kernel_shape").unwrap_or_default();
        let &[kh, kw] = k.as_slice() else {
            return Err(self.unsupported(format!("node '{label}': AveragePool with kernel_shape {k:?} is not supported (only 2-d)")));
        };
        if !(1..=MAX_DIM).contains(&kh) || !(1..=MAX_DIM).contains(&kw) {
            return Err(self.invalid(format!("node '{label}': invalid kernel_shape {k:?}")));
        }
        let kernel = [kh as usize, kw as usize];
        let (stride, padding) = self.spatial_attrs(node, label, "AveragePool")?;
        if padding != [0, 0] && self.attr_int(node, label, "count_include_pad", 0)? == 0 {
            return Err(self.unsupported(format!("node '{label}': AveragePool with padding and count_include_pad=0 is not supported")));
        }
        if self.attr_int(node, label, "ceil_mode", 0)? != 0 {
            let s = self.shapes[v.id];
            for d in 0..2 {
                let span = (s[d + 1] + 2 * padding[d]).checked_sub(kernel[d]);
                if span.is_some_and(|x| x % stride[d] != 0) {
                    return Err(self.unsupported(format!("node '{label}': AveragePool with ceil_mode=1 is not supported")));
                }
            }
        }
        let name = self.fresh_name(&Self::base_name(node, idx, None));
        let id = self.push(name, OpSpec::AvgPool2d { kernel, stride, padding }, vec![v.id], vec![])?;
        Ok(self.fresh(id, 4))
    }
}
