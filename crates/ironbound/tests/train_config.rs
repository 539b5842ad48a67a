//! Training configuration: every file in configs/ parses and validates; errors name the key
//! and the file; the architecture table builds.

use ironbound::net::{arch, numel};
use ironbound::train::config::KEYS;
use ironbound::train::schedule::Span;
use ironbound::train::{Sources, TrainConfig, TrainMethod};
use std::path::{Path, PathBuf};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ironbound-train-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn sources_for(path: &Path) -> (TrainConfig, Sources) {
    let (c, keys) = TrainConfig::load(path).unwrap();
    (c, Sources { file: Some(path.to_path_buf()), file_keys: keys, ..Default::default() })
}

#[test]
fn every_config_file_parses_and_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let (c, sources) = sources_for(&path);
        let r = c.resolve(&sources).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(r.config.note.is_some(), "{}: say which paper row it reproduces in `note`", path.display());
        // The resolved config round-trips through TOML (what config.toml holds).
        let text = r.config.to_toml().unwrap();
        let (again, _) = TrainConfig::parse(&text, Path::new("config.toml")).unwrap();
        assert_eq!(again, r.config, "{}", path.display());
        n += 1;
    }
    assert!(n >= 30, "only {n} configs");
}

#[test]
fn paradox_fashion_mnist_table_is_complete() {
    for net in ["fc", "conv"] {
        for r in ["ibp", "hbox", "crown-ibp-r", "deepz", "crown", "crown-ibp"] {
            let path = configs_dir().join(format!("paradox-fashion-mnist-{net}-{r}.toml"));
            let (c, s) = sources_for(&path);
            let res = c.resolve(&s).unwrap();
            assert_eq!(res.eps, 0.3);
            assert_eq!(res.epochs, 200);
            if r == "crown-ibp-r" {
                assert_eq!((res.beta_start, res.beta_end), (1.0, 1.0));
                assert_eq!(res.certify_method.name(), "crown-ibp");
            }
            if r == "crown-ibp" {
                assert_eq!((res.beta_start, res.beta_end), (1.0, 0.0));
                assert_eq!(res.certify_method.name(), "ibp");
            }
        }
    }
}

#[test]
fn keys_list_matches_the_fields() {
    // A config with every optional field set serialises every key.
    let (c, s) = sources_for(&configs_dir().join("paradox-fashion-mnist-conv-crown-ibp.toml"));
    let mut full = c.resolve(&s).unwrap().config;
    full.grad_clip = Some(1.0);
    full.lr_step = Some(3);
    full.data_dir = Some("d".into());
    full.train_n = Some(5);
    full.eval_n = Some(5);
    full.warmup_steps = Some(5);
    full.rampup_steps = Some(5);
    full.reg_d_weight = 2e-3;
    full.reg_r_weight = 1.0;
    full.reg_rampup_epochs = Some(2);
    full.log_regularizers = true;
    (full.slope_steps, full.slope_step_size, full.slope_p, full.slope_q) = (Some(7), Some(0.1), Some(0.5), Some(0.5));
    (full.relu_stability, full.relu_stability_form) = (0.01, Some(ironbound::train::land::StabilityForm::Tanh));
    (full.colt_layers, full.colt_phase_epochs, full.colt_eps_factors, full.colt_lr_factors) = (vec![0], vec![1], vec![1.0], vec![1.0]);
    (full.colt_mix_epochs, full.colt_pgd_steps, full.colt_pgd_step, full.colt_stability_growth) = (Some(1), Some(7), Some(0.25), Some(1.5));
    let table: toml::Table = toml::from_str(&full.to_toml().unwrap()).unwrap();
    let mut got: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = KEYS.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let path = write("unknown.toml", "dataset = \"mnist\"\nlearning_rate = 0.1\n");
    let err = TrainConfig::load(&path).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(msg.contains("learning_rate") && msg.contains("unknown.toml") && msg.contains("line 2"), "{msg}");
    assert!(msg.contains("did you mean"), "{msg}");
}

#[test]
fn wrong_type_names_the_key_and_the_file() {
    let path = write("types.toml", "dataset = \"mnist\"\n\neps = \"big\"\n");
    let msg = TrainConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("`eps`") && msg.contains("types.toml") && msg.contains("line 3"), "{msg}");
    let path = write("types2.toml", "epochs = 1.5\n");
    let msg = TrainConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("`epochs`") && msg.contains("types2.toml"), "{msg}");
    let path = write("syntax.toml", "epochs = = 3\n");
    let msg = TrainConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("syntax.toml") && msg.contains("line 1"), "{msg}");
}

fn base(extra: &str) -> (TrainConfig, Sources) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = write(
        &format!("base-{}.toml", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
        &format!("dataset = \"fashion-mnist\"\narch = \"conv\"\nmethod = \"ibp\"\neps = 0.1\nepochs = 10\n{extra}\n"),
    );
    sources_for(&path)
}

fn resolve_err(extra: &str) -> String {
    let (c, s) = base(extra);
    let err = c.resolve(&s).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    err.to_string()
}

#[test]
fn validation_names_key_and_file() {
    for (extra, key) in [
        ("eps_train = -0.1", "eps_train"),
        ("rampup_epochs = 20", "rampup_epochs"),
        ("warmup_epochs = 4\nrampup_epochs = 7", "rampup_epochs"),
        ("kappa_end = 2.0", "kappa_end"),
        ("lr = 0.0", "lr"),
        ("batch_size = 0", "batch_size"),
        ("lr_schedule = \"milestones\"", "lr_milestones"),
        ("lr_schedule = \"milestones\"\nlr_milestones = [5, 3]", "lr_milestones"),
        ("lr_schedule = \"step\"", "lr_step"),
        ("grad_clip = -1.0", "grad_clip"),
        ("certify_method = \"magic\"", "certify_method"),
        ("projections = 50", "projections"),
        ("warmup_epochs = 1\nwarmup_steps = 10", "warmup_steps"),
        ("rampup_epochs = 2\nrampup_steps = 10", "rampup_steps"),
        ("lr_schedule = \"milestones\"\nlr_milestones = [3]\nlr_milestone_steps = [5]", "lr_milestone_steps"),
        ("lr_schedule = \"milestones\"\nlr_milestone_steps = [5, 3]", "lr_milestone_steps"),
    ] {
        let msg = resolve_err(extra);
        assert!(msg.contains(&format!("`{key}`")) && msg.contains(".toml"), "{extra}: {msg}");
    }
    let (mut c, s) = base("");
    c.method = Some("dual-lp".into());
    assert!(c.resolve(&s).unwrap_err().to_string().contains("unknown method 'dual-lp'"));
    let (mut c, s) = base("");
    c.arch = Some("resnet-9000".into());
    assert!(c.resolve(&s).unwrap_err().to_string().contains("unknown architecture"));
    let (mut c, s) = base("");
    c.dataset = Some("imagenet".into());
    assert!(c.resolve(&s).unwrap_err().to_string().contains("unknown dataset"));
    let (mut c, s) = base("");
    c.method = Some("alpha-crown".into());
    assert!(c.resolve(&s).unwrap_err().to_string().contains("train with crown"));
    for method in ["deepz", "hbox"] {
        let (mut c, s) = base("projections = 50");
        c.method = Some(method.into());
        assert!(c.resolve(&s).is_ok(), "{method} takes projections");
    }
}

#[test]
fn step_counted_ramps_are_checked_against_the_data() {
    // 10 epochs: 1000 warm-up + ramp-up steps fit 600 steps per epoch, not 50.
    let (c, s) = base("warmup_steps = 200\nrampup_steps = 800");
    let r = c.resolve(&s).unwrap();
    assert!(r.check_steps(600).is_ok());
    let msg = r.check_steps(50).unwrap_err().to_string();
    assert!(msg.contains("`rampup_steps`") && msg.contains(".toml") && msg.contains("500"), "{msg}");
    // The resolved config keeps the step keys and leaves the epoch key unset.
    let text = r.config.to_toml().unwrap();
    assert!(text.contains("rampup_steps = 800") && !text.contains("rampup_epochs"), "{text}");
}

#[test]
fn flags_override_the_file_and_are_named_in_errors() {
    let (mut c, mut s) = base("lr = 0.01");
    c.set("eps_train", toml::Value::Float(-1.0), "--set eps_train=-1").unwrap();
    s.flags.insert("eps_train".into(), "--set eps_train=-1".into());
    let msg = c.resolve(&s).unwrap_err().to_string();
    assert!(msg.starts_with("--set eps_train=-1: `eps_train`"), "{msg}");

    let (mut c, s) = base("lr = 0.01");
    assert_eq!(c.set_str("lr=0.5").unwrap(), "lr");
    c.set_str("lr_milestones=[3, 6]").unwrap();
    c.set_str("lr_schedule=milestones").unwrap();
    let r = c.resolve(&s).unwrap();
    assert_eq!(r.config.lr, 0.5);
    assert_eq!(r.config.lr_milestones, vec![3, 6]);
    let err = c.set_str("epoch=3").unwrap_err().to_string();
    assert!(err.contains("unknown key `epoch`") && err.contains("epochs"), "{err}");
    let err = c.set_str("epochs=many").unwrap_err().to_string();
    assert!(err.contains("`epochs`"), "{err}");
}

#[test]
fn defaults_depend_on_the_method() {
    let (c, s) = base("");
    let r = c.resolve(&s).unwrap();
    assert_eq!((r.kappa_start, r.kappa_end, r.rampup, r.eps_train), (1.0, 0.0, Span::Epochs(5), 0.1));
    assert_eq!(r.method, TrainMethod::Bound(ironbound::bounds::Method::Ibp));
    let (mut c, s) = base("");
    c.method = Some("crown-ibp".into());
    let r = c.resolve(&s).unwrap();
    assert_eq!((r.beta_start, r.beta_end, r.certify_method.name()), (1.0, 0.0, "ibp"));
    let (mut c, s) = base("");
    c.method = Some("pgd".into());
    let r = c.resolve(&s).unwrap();
    assert_eq!((r.kappa_start, r.kappa_end), (0.0, 0.0));
}

#[test]
fn architectures_build_for_both_input_shapes() {
    for (name, _) in arch::list() {
        for shape in [[1, 28, 28], [3, 32, 32]] {
            let spec = arch::named(name, shape).unwrap();
            let net = spec.build(&ironbound::tensor::default_device(), &mut |_, s| Ok(vec![0.0; s.iter().product()])).unwrap();
            assert_eq!(net.num_outputs(), 10, "{name}");
        }
    }
    // COLT's CIFAR-10 network has 16 544 neurons (Section 5).
    let colt = arch::named("colt-conv", [3, 32, 32]).unwrap();
    let net = colt.build(&ironbound::tensor::default_device(), &mut |_, s| Ok(vec![0.0; s.iter().product()])).unwrap();
    let neurons: usize = (1..=net.nodes().len()).filter(|&v| matches!(net.nodes()[v - 1].op, ironbound::net::Op::Relu)).map(|v| numel(&net.shape(v))).sum();
    assert_eq!(neurons + 10, 16544);
    // DM-small, DM-large parameter counts of shared/bench/WORKLOADS.md.
    let count = |name: &str, shape| -> usize {
        arch::named(name, shape).unwrap().nodes.iter().flat_map(|n| n.op.param_shapes()).map(|(_, s)| s.iter().product::<usize>()).sum()
    };
    assert_eq!(count("dm-small", [1, 28, 28]), 329_606);
    assert_eq!(count("conv-plus", [1, 28, 28]), 329_606);
    assert_eq!(count("dm-large", [3, 32, 32]), 17_190_602);
    assert_eq!(count("conv", [1, 28, 28]), 314_982);
    assert_eq!(count("fc", [1, 28, 28]), 425_410);
}

#[test]
fn control_characters_in_keys_and_values_keep_errors_on_one_line() {
    // Found by fuzz_readers: a quoted TOML key, a string value or a `--set` argument may hold
    // a newline, which ended up raw in the message.
    let one_line = |e: ironbound::Error| {
        let msg = e.to_string();
        assert!(!msg.contains(['\n', '\r']), "{msg:?}");
        msg
    };
    let path = write("newline-key.toml", "\"a\\nb\" = 1\n");
    assert!(one_line(TrainConfig::load(&path).unwrap_err()).contains("unknown key `a\\nb`"));
    let (mut c, mut s) = base("");
    assert!(one_line(c.set_str("lr=0.1\nx").unwrap_err()).contains("--set lr=0.1\\nx"));
    assert!(one_line(c.set_str("x\ny=1").unwrap_err()).contains("unknown key `x\\ny`"));
    assert!(one_line(c.set_str("a\nb").unwrap_err()).contains("expected KEY=VALUE"));
    let k = c.set_str("method=\"crown\\nibp\"").unwrap();
    s.flags.insert(k, "--set method=\"crown\nibp\"".into());
    assert!(one_line(c.resolve(&s).unwrap_err()).contains("unknown method 'crown\\nibp'"));
}

#[test]
fn absurd_epoch_counts_do_not_overflow_the_step_check() {
    // Found by fuzz_readers: epochs * steps per epoch overflowed (a panic in debug builds, a
    // wrapped total in release ones).
    let (mut c, s) = base("rampup_steps = 100");
    c.epochs = Some(usize::MAX / 2);
    let r = c.resolve(&s).unwrap();
    assert!(r.check_steps(600).is_ok());
    c.warmup_epochs = usize::MAX / 2;
    let r = c.resolve(&s).unwrap();
    assert_eq!(r.warmup.steps(600), u64::MAX);
    let _ = r.check_steps(600);
}

#[test]
fn unused_smoothed_schedule_values_must_still_be_finite() {
    // Found by fuzz_readers: `smoothed_power = nan` with the linear schedule was accepted, and
    // config.toml then read back unequal to the resolved config.
    for extra in ["smoothed_power = nan", "smoothed_mid = inf"] {
        let msg = resolve_err(extra);
        assert!(msg.contains("must be a finite number") && msg.contains(".toml"), "{msg}");
    }
}
