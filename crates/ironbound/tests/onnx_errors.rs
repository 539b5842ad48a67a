//! Bad ONNX input returns an error naming the file, never panics.

use ironbound::io::onnx::{self, proto::*};
use ironbound::net::{NetSpec, NodeSpec, OpSpec};
use ironbound::tensor::default_device;
use ironbound::Error;

fn small_model_bytes() -> Vec<u8> {
    let spec = NetSpec {
        input_shape: [2, 6, 6],
        nodes: vec![
            NodeSpec { name: "norm".into(), op: OpSpec::Normalize { mean: vec![0.1, 0.2], std: vec![0.3, 0.4] }, inputs: vec![0] },
            NodeSpec {
                name: "conv".into(),
                op: OpSpec::Conv2d { in_channels: 2, out_channels: 3, kernel: [3, 3], stride: [2, 2], padding: [1, 1] },
                inputs: vec![1],
            },
            NodeSpec { name: "bn".into(), op: OpSpec::BatchNorm { channels: 3, eps: 1e-5 }, inputs: vec![2] },
            NodeSpec { name: "relu".into(), op: OpSpec::Relu, inputs: vec![3] },
            NodeSpec { name: "add".into(), op: OpSpec::Add, inputs: vec![4, 3] },
            NodeSpec { name: "pool".into(), op: OpSpec::AvgPool2d { kernel: [2, 2], stride: [1, 1], padding: [1, 1] }, inputs: vec![5] },
            NodeSpec { name: "fc".into(), op: OpSpec::Linear { in_features: 48, out_features: 4 }, inputs: vec![6] },
        ],
    };
    let net = spec.init(1, &default_device()).unwrap();
    onnx::export_bytes(&net)
}

fn import_err(bytes: &[u8], name: &str) -> Error {
    match onnx::import_bytes(bytes, name, &default_device()) {
        Ok(_) => panic!("{name}: imported without error"),
        Err(e) => {
            assert!(e.to_string().contains(name), "{name}: message does not name the file: {e}");
            e
        }
    }
}

fn simple_model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![ValueInfoProto::float_tensor("x", &[None, Some(4)])],
            output: vec![ValueInfoProto::float_tensor("y", &[None, Some(2)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().unwrap()
}

fn gemm_model() -> ModelProto {
    simple_model(
        vec![NodeProto::new("Gemm", "fc", &["x", "fc.weight", "fc.bias"], &["y"], vec![AttributeProto::int("transB", 1)])],
        vec![TensorProto::from_f32("fc.weight", &[2, 4], &[0.5; 8]), TensorProto::from_f32("fc.bias", &[2], &[1.0, 2.0])],
        13,
    )
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn the_valid_models_used_below_import() {
    onnx::import_bytes(&small_model_bytes(), "small.onnx", &default_device()).unwrap();
    onnx::import_bytes(&gemm_model().to_bytes(), "gemm.onnx", &default_device()).unwrap();
}

#[test]
fn truncated_files_are_errors() {
    let bytes = small_model_bytes();
    let dir = std::env::temp_dir().join(format!("ironbound-onnx-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truncated.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = onnx::import(&path, &default_device()).unwrap_err();
    assert!(matches!(e, Error::InvalidFile { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated.onnx") && e.to_string().contains("not a valid ONNX model"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    // Every strict prefix fails (the graph is the last, length-delimited field).
    for cut in 0..bytes.len() {
        import_err(&bytes[..cut], "prefix.onnx");
    }
}

#[test]
fn missing_file_is_an_error() {
    let e = onnx::import(std::path::Path::new("/nonexistent/dir/model.onnx"), &default_device()).unwrap_err();
    assert!(e.to_string().contains("model.onnx"), "{e}");
}

#[test]
fn random_bytes_are_errors() {
    let mut rng = Lcg(42);
    for len in [1usize, 2, 3, 7, 16, 100, 1000, 10_000] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            import_err(&bytes, "random.onnx");
        }
    }
}

#[test]
fn corrupted_models_never_panic() {
    // Byte flips of a valid model: any outcome but a panic is fine.
    let bytes = small_model_bytes();
    let mut rng = Lcg(7);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() as usize) % b.len();
            b[i] = match rng.next() % 3 {
                0 => rng.next() as u8,
                1 => b[i] ^ (1 << (rng.next() % 8)),
                _ => 0xff,
            };
        }
        if let Err(e) = onnx::import_bytes(&b, "flipped.onnx", &default_device()) {
            assert!(e.to_string().contains("flipped.onnx"), "{e}");
        }
    }
}

#[test]
fn unsupported_op_names_node_and_op_type() {
    let mut m = gemm_model();
    let g = m.graph.as_mut().unwrap();
    g.node.insert(0, NodeProto::new("Sigmoid", "act1", &["x"], &["s"], vec![]));
    g.node[1].input[0] = "s".into();
    let e = import_err(&m.to_bytes(), "sigmoid.onnx");
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert_eq!(e.to_string(), "sigmoid.onnx: node 'act1' has unsupported op type 'Sigmoid'");
}

#[test]
fn missing_initializer_is_an_error() {
    let mut m = gemm_model();
    m.graph.as_mut().unwrap().initializer.remove(0);
    let e = import_err(&m.to_bytes(), "missing.onnx");
    assert!(matches!(e, Error::InvalidFile { .. }), "{e:?}");
    assert!(e.to_string().contains("fc.weight"), "{e}");
}

#[test]
fn malformed_graphs_are_errors() {
    let bytes = |f: &dyn Fn(&mut ModelProto)| {
        let mut m = gemm_model();
        f(&mut m);
        m.to_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "no graph"),
        ("empty_graph", bytes(&|m| *graph(m) = GraphProto::default()), "no input"),
        ("no_nodes", bytes(&|m| graph(m).node.clear()), "not computed"),
        ("wrong_dims", bytes(&|m| graph(m).initializer[0].dims = vec![4, 2]), "does not fit"),
        ("short_raw", bytes(&|m| graph(m).initializer[0].raw_data.truncate(5)), "bytes of raw data"),
        ("negative_dim", bytes(&|m| graph(m).initializer[0].dims = vec![-2, -4]), "invalid dimension"),
        ("float16", bytes(&|m| graph(m).initializer[0].data_type = 10), "data type 10"),
        ("opset_21", bytes(&|m| m.opset_import[0].version = 21), "opset 21"),
        ("opset_6", bytes(&|m| m.opset_import[0].version = 6), "opset 6"),
        ("no_opset", bytes(&|m| m.opset_import.clear()), "operator set"),
        ("two_outputs", bytes(&|m| graph(m).output.push(ValueInfoProto::float_tensor("z", &[None]))), "2 outputs"),
        ("two_inputs", bytes(&|m| graph(m).input.push(ValueInfoProto::float_tensor("z", &[None, Some(4)]))), "2 inputs"),
        ("rank5_input", bytes(&|m| graph(m).input[0] = ValueInfoProto::float_tensor("x", &[None, Some(4), Some(1), Some(1), Some(1)])), "rank 5"),
        ("no_input_type", bytes(&|m| graph(m).input[0].r#type = None), "not a tensor"),
        ("symbolic_feature", bytes(&|m| graph(m).input[0] = ValueInfoProto::float_tensor("x", &[None, None])), "symbolic"),
        (
            "redefined",
            bytes(&|m| {
                let n = graph(m).node[0].clone();
                graph(m).node.push(n);
            }),
            "redefines",
        ),
        (
            "out_of_order",
            bytes(&|m| {
                graph(m).node[0].input[0] = "r".into();
                graph(m).node.push(NodeProto::new("Relu", "late", &["x"], &["r"], vec![]));
            }),
            "'r'",
        ),
        ("custom_domain", bytes(&|m| graph(m).node[0].domain = "com.microsoft".into()), "com.microsoft"),
        ("trans_a", bytes(&|m| graph(m).node[0].attribute.push(AttributeProto::int("transA", 1))), "transA"),
        ("bad_bias", bytes(&|m| graph(m).initializer[1] = TensorProto::from_f32("fc.bias", &[3], &[1.0; 3])), "bias"),
        (
            "constant_output",
            bytes(&|m| {
                graph(m).node = vec![NodeProto::new("Identity", "i", &["fc.bias"], &["y"], vec![])];
            }),
            "constant",
        ),
    ];
    for (name, b, needle) in cases {
        let file = format!("{name}.onnx");
        let e = import_err(&b, &file);
        assert!(e.to_string().contains(needle), "{name}: expected '{needle}' in: {e}");
    }
}

#[test]
fn unsupported_attributes_and_patterns_are_errors() {
    let conv_model = |attrs: Vec<AttributeProto>, w: &[usize]| {
        let n: usize = w.iter().product();
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(GraphProto {
                node: vec![NodeProto::new("Conv", "conv", &["x", "w"], &["y"], attrs)],
                initializer: vec![TensorProto::from_f32("w", w, &vec![0.1; n])],
                input: vec![ValueInfoProto::float_tensor("x", &[Some(1), Some(2), Some(5), Some(5)])],
                output: vec![ValueInfoProto::float_tensor("y", &[None])],
                ..Default::default()
            }),
            ..Default::default()
        }
        .to_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("group", conv_model(vec![AttributeProto::int("group", 2)], &[2, 1, 3, 3]), "grouped"),
        ("dilation", conv_model(vec![AttributeProto::ints("dilations", &[2, 2])], &[2, 2, 3, 3]), "dilations"),
        ("asym", conv_model(vec![AttributeProto::ints("pads", &[1, 1, 0, 0])], &[2, 2, 3, 3]), "asymmetric"),
        ("same", conv_model(vec![AttributeProto::string("auto_pad", "SAME_UPPER")], &[2, 2, 3, 3]), "auto_pad"),
        ("conv1d", conv_model(vec![], &[2, 2, 3]), "only 2-d"),
        ("channels", conv_model(vec![], &[2, 3, 3, 3]), "input channels"),
        ("too_big_kernel", conv_model(vec![], &[2, 2, 7, 7]), "does not fit"),
        ("zero_stride", conv_model(vec![AttributeProto::ints("strides", &[0, 1])], &[2, 2, 3, 3]), "invalid value 0"),
        ("empty_kernel", conv_model(vec![], &[2, 2, 0, 3]), "empty"),
    ];
    for (name, b, needle) in cases {
        let file = format!("{name}.onnx");
        let e = import_err(&b, &file);
        assert!(e.to_string().contains(needle), "{name}: expected '{needle}' in: {e}");
    }

    // Elementwise ops that are not per-channel affine maps of one value.
    let two_input = |op: &str, b_is_const: bool, cdims: &[usize]| {
        let n: usize = cdims.iter().product();
        let mut m = gemm_model();
        let g = m.graph.as_mut().unwrap();
        let second = if b_is_const { "c" } else { "x" };
        g.node.insert(0, NodeProto::new(op, "elt", &["x", second], &["e"], vec![]));
        g.node[1].input[0] = "e".into();
        g.initializer.push(TensorProto::from_f32("c", cdims, &vec![2.0; n]));
        m.to_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("mul_two_values", two_input("Mul", false, &[1]), "Mul of two values"),
        ("sub_two_values", two_input("Sub", false, &[1]), "Sub of two values"),
        ("broadcast_up", two_input("Add", true, &[3, 1, 4]), "not supported"),
        ("div_zero", two_input("Div", true, &[1]), "x"),
    ];
    for (name, b, needle) in cases {
        let file = format!("{name}.onnx");
        if name == "div_zero" {
            // Division by 2 is fine; by zero is an error.
            onnx::import_bytes(&b, &file, &default_device()).unwrap();
            let mut m = ModelProto::from_bytes(&b).unwrap();
            let c = m.graph.as_mut().unwrap().initializer.last_mut().unwrap();
            *c = TensorProto::from_f32("c", &[1], &[0.0]);
            let e = import_err(&m.to_bytes(), &file);
            assert!(e.to_string().contains("division by zero"), "{e}");
            continue;
        }
        let e = import_err(&b, &file);
        assert!(e.to_string().contains(needle), "{name}: expected '{needle}' in: {e}");
    }
}

#[test]
fn constant_folding_errors_are_reported() {
    // Gather with an out-of-range index in a Shape chain.
    let mut m = gemm_model();
    let g = m.graph.as_mut().unwrap();
    g.node.insert(0, NodeProto::new("Shape", "shape", &["x"], &["s"], vec![]));
    g.node.insert(1, NodeProto::new("Gather", "gather", &["s", "idx"], &["n"], vec![]));
    g.node.insert(2, NodeProto::new("Reshape", "reshape", &["x", "n"], &["r"], vec![]));
    g.node[3].input[0] = "r".into();
    g.initializer.push(TensorProto::from_i64("idx", &[1], &[5]));
    let e = import_err(&m.to_bytes(), "gather.onnx");
    assert!(e.to_string().contains("out of range"), "{e}");
    // Reshape that does not flatten.
    let g = m.graph.as_mut().unwrap();
    *g.initializer.last_mut().unwrap() = TensorProto::from_i64("idx", &[1], &[0]);
    g.node.insert(2, NodeProto::new("Concat", "cat", &["n", "shape_tail"], &["n2"], vec![AttributeProto::int("axis", 0)]));
    g.node[3].input[1] = "n2".into();
    g.initializer.push(TensorProto::from_i64("shape_tail", &[2], &[2, 2]));
    let e = import_err(&m.to_bytes(), "reshape.onnx");
    assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains("Reshape"), "{e}");
}

#[test]
fn export_to_a_bad_path_fails_and_leaves_nothing() {
    let net = NetSpec {
        input_shape: [4, 1, 1],
        nodes: vec![NodeSpec { name: "fc".into(), op: OpSpec::Linear { in_features: 4, out_features: 2 }, inputs: vec![0] }],
    }
    .init(0, &default_device())
    .unwrap();
    let dir = std::env::temp_dir().join(format!("ironbound-onnx-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("occupied.onnx")).unwrap();
    // Target is a directory: the rename fails, and the temporary file is removed.
    let e = onnx::export(&net, &dir.join("occupied.onnx")).unwrap_err();
    assert!(e.to_string().contains("occupied.onnx"), "{e}");
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("occupied.onnx")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The layouts of VNN-COMP's models import and compute what ONNX says: ACAS Xu's opset-8
/// `[1, 1, 1, 5]` input with a per-element `Sub` before `Flatten` + `MatMul`, mnistfc's
/// `[1, F, 1]` input, and the test networks' batch-less `[F]` input.
#[test]
fn vnncomp_input_layouts_import() {
    use ironbound::tensor::{from_vec, to_vec};
    let w: Vec<f32> = (0..8).map(|i| i as f32 * 0.25 - 1.0).collect(); // [4, 2], MatMul layout
    let x = [0.3f32, -0.2, 0.9, 0.5];
    let mean = [0.1f32, 0.2, -0.3, 0.4];
    let want: Vec<f32> = (0..2).map(|j| (0..4).map(|i| (x[i] - mean[i]) * w[i * 2 + j]).sum::<f32>() + [1.0, 2.0][j]).collect();
    let layouts: [(&str, Vec<Option<usize>>, i64); 3] =
        [("acasxu", vec![Some(1), Some(1), Some(1), Some(4)], 8), ("mnistfc", vec![Some(1), Some(4), Some(1)], 9), ("batchless", vec![Some(4)], 13)];
    for (name, dims, opset) in layouts {
        let mean_dims: Vec<usize> = dims.iter().map(|d| d.unwrap()).collect();
        let mut m = simple_model(
            vec![
                NodeProto::new("Sub", "sub", &["x", "mean"], &["c"], vec![]),
                NodeProto::new("Flatten", "flat", &["c"], &["f"], vec![]),
                NodeProto::new("MatMul", "mm", &["f", "w"], &["p"], vec![]),
                NodeProto::new("Add", "add", &["p", "b"], &["y"], vec![]),
            ],
            vec![TensorProto::from_f32("mean", &mean_dims, &mean), TensorProto::from_f32("w", &[4, 2], &w), TensorProto::from_f32("b", &[2], &[1.0, 2.0])],
            opset,
        );
        graph(&mut m).input[0] = ValueInfoProto::float_tensor("x", &dims);
        if name == "batchless" {
            // Flatten of a rank-1 tensor is not defined in ONNX: the test networks go straight
            // to MatMul.
            let g = graph(&mut m);
            g.node.remove(1);
            g.node[1].input[0] = "c".into();
        }
        let net = onnx::import_bytes(&m.to_bytes(), &format!("{name}.onnx"), &default_device()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ironbound::net::numel(&net.input_shape()), 4, "{name}");
        let [c, h, wd] = net.input_shape();
        let got = to_vec(net.forward(from_vec(x.to_vec(), [1, c, h, wd], &default_device())));
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-5, "{name}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn non_finite_or_huge_initializers_are_errors() {
    for (value, name, needle) in [(f32::NAN, "nan_weight", "non-finite"), (f32::NEG_INFINITY, "inf_weight", "non-finite"), (2e36, "huge_weight", "beyond")] {
        let mut m = gemm_model();
        let mut w = vec![0.5; 8];
        w[3] = value;
        graph(&mut m).initializer[0] = TensorProto::from_f32("fc.weight", &[2, 4], &w);
        let e = import_err(&m.to_bytes(), &format!("{name}.onnx")).to_string();
        assert!(e.contains(needle) && e.contains("index 3") && !e.contains('\n'), "{name}: {e}");
    }
    let mut m = gemm_model();
    graph(&mut m).initializer[1] = TensorProto::from_f32("fc.bias", &[2], &[1.0, f32::NAN]);
    assert!(import_err(&m.to_bytes(), "nan_bias.onnx").to_string().contains("non-finite"));
}
