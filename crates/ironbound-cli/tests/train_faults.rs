//! `ironbound train` when writing fails (a full disk, a directory without write permission) and
//! when its checkpoint is damaged: one error line naming the file, the last checkpoint kept as
//! it was (never a silent fresh start), and once the fault is gone the same command resumes
//! to the uninterrupted run's result.

mod common;

use common::{checkpoint_epoch, dataset, metrics, metrics_without_times, one_error_line, run_to_end, same_contents, temp_files, train_command, workdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const EPOCHS: usize = 2;
const CHECKPOINT: &str = "checkpoint.safetensors";

/// The data shared by the tests and the uninterrupted run's directory.
fn shared() -> &'static (PathBuf, PathBuf) {
    static SHARED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = workdir("faults-shared");
        let data = dataset(&dir, 300, 100);
        let whole = dir.join("whole");
        run_to_end(train_command(&data, &whole, EPOCHS, 100));
        assert_eq!(metrics(&whole).len(), EPOCHS);
        (data, whole)
    })
}

fn command(out: &Path) -> Command {
    train_command(&shared().0, out, EPOCHS, 100)
}

/// A run directory holding the checkpoint of epoch 1 of the shared run (as if interrupted).
fn after_one_epoch(name: &str) -> PathBuf {
    let out = workdir(name).join("run");
    let mut first = command(&out);
    first.args(["--stop-after-epochs", "1"]);
    run_to_end(first);
    assert_eq!(checkpoint_epoch(&out), 1);
    out
}

/// Reruns the command without the fault: it resumes and ends like the uninterrupted run.
fn assert_resumes_to_the_same_result(out: &Path) {
    let stderr = run_to_end(command(out));
    assert!(stderr.contains("resuming"), "{stderr}");
    let whole = &shared().1;
    assert_eq!(metrics_without_times(out), metrics_without_times(whole));
    for file in ["model.safetensors", "model.onnx", "config.toml"] {
        assert!(same_contents(&out.join(file), &whole.join(file)), "{file} differs");
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
    let out = after_one_epoch("disk-full-checkpoint");
    let before = std::fs::read(out.join(CHECKPOINT)).unwrap();
    // 256 KiB: room for metrics.jsonl and config.toml, not for a 1 MB checkpoint.
    let (code, stderr) = fails(with_file_size_limit(&command(&out), 256));
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join(CHECKPOINT).display())), "{line}");
    assert!(line.contains("File too large") && line.contains("checkpoint (epoch 1) is kept"), "{line}");
    assert!(std::fs::read(out.join(CHECKPOINT)).unwrap() == before, "the last checkpoint changed");
    assert_eq!(temp_files(&out), Vec::<String>::new());
    // Nothing claims the epoch that could not be saved.
    assert_eq!(metrics(&out).len(), 1);
    assert!(!out.join("model.safetensors").exists());
    assert_resumes_to_the_same_result(&out);
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn a_failed_write_during_the_final_export_is_an_error_and_a_rerun_completes_it() {
    // All epochs checkpointed, no model file yet: a run killed at the start of its export.
    let out = workdir("disk-full-export").join("run");
    run_to_end(command(&out));
    for file in ["model.safetensors", "model.onnx"] {
        std::fs::remove_file(out.join(file)).unwrap();
    }
    let (code, stderr) = fails(with_file_size_limit(&command(&out), 256));
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join("model.safetensors").display())), "{line}");
    assert!(!out.join("model.safetensors").exists() && !out.join("model.onnx").exists());
    assert_eq!(temp_files(&out), Vec::<String>::new());
    // model.onnx that cannot be written (a directory in its place) is an error as well.
    std::fs::create_dir(out.join("model.onnx")).unwrap();
    let (code, stderr) = fails(command(&out));
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join("model.onnx").display())), "{line}");
    std::fs::remove_dir(out.join("model.onnx")).unwrap();
    assert_eq!(temp_files(&out), Vec::<String>::new());
    assert_resumes_to_the_same_result(&out);
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
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
    let out = after_one_epoch("read-only");
    let before = std::fs::read(out.join(CHECKPOINT)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    let Some(denied) = unprivileged(&out, &command(&out)) else {
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
        eprintln!("skipped: this process writes into read-only directories and cannot drop that");
        return;
    };
    let (code, stderr) = fails(denied);
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    // Resuming first rewrites metrics.jsonl: that is the write refused.
    let line = one_error_line(&stderr);
    assert!(line.contains(&format!("{}: cannot write", out.join("metrics.jsonl").display())), "{line}");
    assert!(line.contains("Permission denied"), "{line}");
    assert!(std::fs::read(out.join(CHECKPOINT)).unwrap() == before, "the last checkpoint changed");
    assert_eq!(temp_files(&out), Vec::<String>::new());
    assert_resumes_to_the_same_result(&out);
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}

#[test]
fn a_damaged_checkpoint_is_an_error_naming_it_never_a_fresh_start() {
    let out = after_one_epoch("damaged");
    let good = std::fs::read(out.join(CHECKPOINT)).unwrap();
    let flipped = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x10;
        b
    };
    let n = good.len();
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated to half", good[..n / 2].to_vec()),
        ("one byte short", good[..n - 1].to_vec()),
        ("a bit flipped in the weights", flipped(n * 3 / 4)),
        ("a bit flipped in the header", flipped(200)),
    ];
    for (what, bytes) in cases {
        std::fs::write(out.join(CHECKPOINT), &bytes).unwrap();
        let (code, stderr) = fails(command(&out));
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        let prefix = format!("ironbound: {}: damaged checkpoint", out.join(CHECKPOINT).display());
        assert!(stderr.starts_with(&prefix), "{what}: {stderr}");
        assert!(std::fs::read(out.join(CHECKPOINT)).unwrap() == bytes, "{what}: the checkpoint was replaced");
        assert_eq!(metrics(&out).len(), 1, "{what}: metrics.jsonl was rewritten");
        assert!(!out.join("model.safetensors").exists(), "{what}");
    }
    std::fs::write(out.join(CHECKPOINT), &good).unwrap();
    assert_resumes_to_the_same_result(&out);
    let _ = std::fs::remove_dir_all(out.parent().unwrap());
}
