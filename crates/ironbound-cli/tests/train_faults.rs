//! `ironbound train` when writing fails (a full disk, a directory without write permission) and
//! when its checkpoint is damaged: one error line naming the file, the last checkpoint kept as
//! it was (never a silent fresh start), and once the fault is gone the same command resumes
//! to the uninterrupted run's result.

mod common;

use common::{checkpoint_epoch, dataset, metrics, metrics_without_times, one_error_line, run_to_end, same_contents, temp_files, train_command, workdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const EPOCHS: usize = 2;
const CHECKPOINT: &str = "checkpoint.safetensors";

/// One test's directory: synthetic data, the uninterrupted run and the run the faults hit.
struct Case {
    dir: PathBuf,
    data: PathBuf,
    whole: PathBuf,
    run: PathBuf,
}

impl Case {
    fn new(name: &str) -> Case {
        let dir = workdir(name);
        let data = dataset(&dir, 300, 100);
        let (whole, run) = (dir.join("whole"), dir.join("run"));
        run_to_end(train_command(&data, &whole, EPOCHS, 100));
        assert_eq!(metrics(&whole).len(), EPOCHS);
        Case { dir, data, whole, run }
    }

    /// With the checkpoint of epoch 1 in `run`, as if interrupted there.
    fn after_one_epoch(name: &str) -> Case {
        let case = Case::new(name);
        let mut first = case.command();
        first.args(["--stop-after-epochs", "1"]);
        run_to_end(first);
        assert_eq!(checkpoint_epoch(&case.run), 1);
        case
    }

    /// The training command on `run`.
    fn command(&self) -> Command {
        train_command(&self.data, &self.run, EPOCHS, 100)
    }

    /// Reruns the command without the fault: it resumes and ends like the uninterrupted run.
    /// Then removes the test's directory.
    fn assert_resumes_to_the_same_result(self) {
        let stderr = run_to_end(self.command());
        assert!(stderr.contains("resuming"), "{stderr}");
        assert_eq!(metrics_without_times(&self.run), metrics_without_times(&self.whole));
        for file in ["model.safetensors", "model.onnx", "config.toml"] {
            assert!(same_contents(&self.run.join(file), &self.whole.join(file)), "{file} differs");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `command` run through the program and arguments of `prefix` (which end by running the
/// arguments that follow them).
fn wrapped(prefix: &[&str], command: &Command) -> Command {
    let mut c = Command::new(prefix[0]);
    c.args(&prefix[1..]).arg(command.get_program()).args(command.get_args()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// `command` with regular files limited to `kib` KiB (RLIMIT_FSIZE through bash's `ulimit`),
/// SIGXFSZ ignored so that a write past the limit fails with EFBIG, as on a full disk.
fn with_file_size_limit(command: &Command, kib: u64) -> Command {
    wrapped(&["bash", "-c", &format!("trap '' XFSZ; ulimit -f {kib}; exec \"$@\""), "bash"], command)
}

/// The exit code and stderr of a run expected to fail.
fn fails(mut command: Command) -> (Option<i32>, String) {
    let o = command.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_full_disk_at_a_checkpoint_write_stops_training_and_keeps_the_last_checkpoint() {
    let case = Case::after_one_epoch("disk-full-checkpoint");
    let out = &case.run;
    let before = std::fs::read(out.join(CHECKPOINT)).unwrap();
    // 256 KiB: room for metrics.jsonl and config.toml, not for a 1 MB checkpoint.
    let (code, stderr) = fails(with_file_size_limit(&case.command(), 256));
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join(CHECKPOINT).display())), "{line}");
    assert!(line.contains("File too large") && line.contains("checkpoint (epoch 1) is kept"), "{line}");
    assert!(std::fs::read(out.join(CHECKPOINT)).unwrap() == before, "the last checkpoint changed");
    assert_eq!(temp_files(out), Vec::<String>::new());
    // Nothing claims the epoch that could not be saved.
    assert_eq!(metrics(out).len(), 1);
    assert!(!out.join("model.safetensors").exists());
    case.assert_resumes_to_the_same_result();
}

#[test]
fn a_failed_write_during_the_final_export_is_an_error_and_a_rerun_completes_it() {
    // All epochs checkpointed, no model file yet: a run killed at the start of its export.
    let case = Case::new("disk-full-export");
    let out = &case.run;
    run_to_end(case.command());
    for file in ["model.safetensors", "model.onnx"] {
        std::fs::remove_file(out.join(file)).unwrap();
    }
    let (code, stderr) = fails(with_file_size_limit(&case.command(), 256));
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join("model.safetensors").display())), "{line}");
    assert!(!out.join("model.safetensors").exists() && !out.join("model.onnx").exists());
    assert_eq!(temp_files(out), Vec::<String>::new());
    // model.onnx that cannot be written (a directory in its place) is an error as well.
    std::fs::create_dir(out.join("model.onnx")).unwrap();
    let (code, stderr) = fails(case.command());
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join("model.onnx").display())), "{line}");
    std::fs::remove_dir(out.join("model.onnx")).unwrap();
    assert_eq!(temp_files(out), Vec::<String>::new());
    case.assert_resumes_to_the_same_result();
}

/// `command` as a process unable to write into `dir` (mode 0555): as it is when this test is
/// not privileged, as `nobody` through `setpriv` when it is (root writes anyway). `None` when
/// there is no way to deny it here.
fn unprivileged(dir: &Path, command: &Command) -> Option<Command> {
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"").is_err() {
        return Some(wrapped(&["env"], command));
    }
    std::fs::remove_file(&probe).unwrap();
    let setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let run = |args: &[&str]| Command::new(setpriv[0]).args(&setpriv[1..]).args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    let denied = run(&["true"]) && !run(&["sh", "-c", &format!("echo > '{}'", probe.display())]);
    denied.then(|| wrapped(&setpriv, command))
}

#[test]
fn a_directory_without_write_permission_stops_training_and_keeps_the_last_checkpoint() {
    use std::os::unix::fs::PermissionsExt;
    let case = Case::after_one_epoch("read-only");
    let out = &case.run;
    let before = std::fs::read(out.join(CHECKPOINT)).unwrap();
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o555)).unwrap();
    let Some(denied) = unprivileged(out, &case.command()) else {
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!("skipped: this process writes into read-only directories and cannot drop that");
        let _ = std::fs::remove_dir_all(&case.dir);
        return;
    };
    let (code, stderr) = fails(denied);
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    // Resuming first rewrites metrics.jsonl: that is the write refused.
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join("metrics.jsonl").display())), "{line}");
    assert!(line.contains("Permission denied"), "{line}");
    assert!(std::fs::read(out.join(CHECKPOINT)).unwrap() == before, "the last checkpoint changed");
    assert_eq!(temp_files(out), Vec::<String>::new());
    case.assert_resumes_to_the_same_result();
}

#[test]
fn a_damaged_checkpoint_is_an_error_naming_it_never_a_fresh_start() {
    let case = Case::after_one_epoch("damaged");
    let out = &case.run;
    let good = std::fs::read(out.join(CHECKPOINT)).unwrap();
    let flipped = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x10;
        b
    };
    let n = good.len();
    let damages: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated to half", good[..n / 2].to_vec()),
        ("one byte short", good[..n - 1].to_vec()),
        ("a bit flipped in the weights", flipped(n * 3 / 4)),
        ("a bit flipped in the header", flipped(200)),
    ];
    for (what, bytes) in damages {
        std::fs::write(out.join(CHECKPOINT), &bytes).unwrap();
        let (code, stderr) = fails(case.command());
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        let prefix = format!("ironbound: {}: damaged checkpoint", out.join(CHECKPOINT).display());
        assert!(stderr.starts_with(&prefix), "{what}: {stderr}");
        assert!(std::fs::read(out.join(CHECKPOINT)).unwrap() == bytes, "{what}: the checkpoint was replaced");
        assert_eq!(metrics(out).len(), 1, "{what}: metrics.jsonl was rewritten");
        assert!(!out.join("model.safetensors").exists(), "{what}");
    }
    std::fs::write(out.join(CHECKPOINT), &good).unwrap();
    case.assert_resumes_to_the_same_result();
}
