"""examples/ray_certify.py on a real local Ray cluster (`ray start --head --num-cpus 2`, two
worker processes at a time): the merged report of 1000 Fashion-MNIST test images in 4 shards
equals the unsharded `ironbound certify` report, also when one shard's worker is SIGKILLed
mid-run and Ray reruns the task."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pytest

import ironbound
from conftest import ROOT

EXAMPLE = ROOT / "examples" / "ray_certify.py"
N, SHARDS, EPS = 1000, 4, "0.05"
# PGD makes every shard take a few seconds, so that a kill lands while its task runs.
METHODS, PGD = "ibp,crown", "10"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A local Ray head node: its address, and the environment its drivers need."""

    def __init__(self, address: str, env: Dict[str, str]) -> None:
        self.address, self.env = address, env


def stop(head: subprocess.Popen) -> None:
    """Stops the cluster we started, and nothing else: SIGTERM to our `ray start --block`,
    which drains the node and stops the processes it started (about 2 s), then SIGKILL to
    whatever is left of its process group."""
    pgid = head.pid

    def alive() -> bool:
        head.poll()  # reaps our child, or killpg(0) would see its zombie
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False

    for sig, grace in [(signal.SIGTERM, 40.0), (signal.SIGKILL, 10.0)]:
        if not alive():
            return
        if sig == signal.SIGTERM:
            head.send_signal(sig)
        else:
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node with 2 CPUs, in its own process group and temp dir (short: Ray's socket
    paths must fit in 107 bytes), on free ports, with a token of its own (Ray 2.60 turns token
    authentication on when ~/.ray/auth_token exists, so the test sets it either way), stopped
    in the finalizer whatever happened."""
    ray_bin = Path(sys.executable).parent / "ray"
    temp = tempfile.mkdtemp(prefix="ibray-", dir="/tmp")
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    log_path = Path(temp) / "ray-start.log"
    cmd = [
        str(ray_bin), "start", "--head", "--block", "--num-cpus", "2", "--temp-dir", temp,
        "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
        "--dashboard-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
        "--ray-client-server-port", str(free_port()), "--object-store-memory", str(200 * 2**20),
        "--disable-usage-stats",
    ]  # fmt: skip
    with open(log_path, "w") as log:
        head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ray start failed (exit {head.poll()}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", env)
    finally:
        stop(head)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def unsharded(cli, trained_model, tmp_path_factory) -> dict:
    """`ironbound certify` on the first 1000 test images, in one process."""
    try:
        ironbound.dataset("fashion-mnist", "test", n=1)
    except ValueError as e:
        pytest.skip(f"Fashion-MNIST unavailable: {e}")
    out = tmp_path_factory.mktemp("unsharded") / "report.json"
    cli.run("certify", "--model", trained_model, "--dataset", "fashion-mnist", "--eps", EPS, "--method", METHODS, "--pgd", PGD, "--n", N, "--out", out)
    return json.loads(out.read_text())


def example(cluster: Cluster, model: Path, out: Path) -> List[str]:
    return [sys.executable, str(EXAMPLE), "--address", cluster.address, "--model", str(model), "--n", str(N), "--shards", str(SHARDS), "--eps", EPS, "--methods", METHODS, "--pgd", PGD, "--out", str(out)]


def assert_equal_reports(merged: dict, want: dict) -> None:
    """Every field equal, exactly; `seconds` (sums of the shards' times) by key only."""
    assert sorted(merged) == sorted(want)
    for key in want:
        if key == "seconds":
            assert sorted(merged[key]) == sorted(want[key])
        else:
            assert merged[key] == want[key], key
    assert "shard" not in merged


def check_outputs(cli, out: Path, want: dict) -> List[Dict]:
    merged = json.loads((out / "report.json").read_text())
    assert_equal_reports(merged, want)
    assert merged["n"] == N and 0.5 < merged["clean_accuracy"] and 0.0 < merged["certified_accuracy"]["crown"] < merged["clean_accuracy"]
    # The shard files merge to the same bytes with the CLI: one merge, two front ends.
    shards = [out / f"shard-{i}-of-{SHARDS}.json" for i in range(1, SHARDS + 1)]
    cli.run("merge", "--out", out / "cli-report.json", *shards)
    assert (out / "cli-report.json").read_bytes() == (out / "report.json").read_bytes()
    return json.loads((out / "attempts.json").read_text())


def test_ray_certify_equals_unsharded_cli(cli, ray_cluster, trained_model, unsharded, tmp_path):
    out = tmp_path / "ray"
    t0 = time.monotonic()
    run = subprocess.run(example(ray_cluster, trained_model, out), capture_output=True, text=True, timeout=300, env=ray_cluster.env)
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"ray_certify: {time.monotonic() - t0:.1f} s\n{run.stdout}")
    attempts = check_outputs(cli, out, unsharded)
    assert sorted(a["shard"] for a in attempts) == list(range(1, SHARDS + 1))  # one attempt each


def run_killing_one_worker(cmd: List[str], env: Dict[str, str]):
    """Runs the driver and SIGKILLs the worker process of the first shard task as soon as the
    driver logs that it started ("shard 2/4: attempt 1 started (pid 1234, node ...)").
    Returns (exit code, output, (shard, pid) killed)."""
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: List[str] = []
    killed = None
    try:
        assert driver.stdout is not None
        for line in driver.stdout:
            lines.append(line)
            if killed is None and ": attempt 1 started (pid " in line:
                shard = int(line.split("/")[0].split()[1])
                pid = int(line.split("(pid ")[1].split(",")[0])
                os.kill(pid, signal.SIGKILL)
                killed = (shard, pid)
                lines.append(f"[test] SIGKILL to pid {pid} (shard {shard})\n")
        rc = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    text = "".join(lines)
    print(text)
    assert killed is not None, text
    return rc, text, killed


def test_killed_worker_is_rerun_by_ray(cli, ray_cluster, trained_model, unsharded, tmp_path):
    out = tmp_path / "ray"
    rc, text, (shard, pid) = run_killing_one_worker(example(ray_cluster, trained_model, out), ray_cluster.env)
    assert rc == 0, text
    # The kill landed mid-run: the shard had not reported before it, and Ray ran it again in
    # another worker process.
    assert text.index(f"[test] SIGKILL to pid {pid}") < text.index(f"shard {shard}/{SHARDS}: samples"), text
    attempts = check_outputs(cli, out, unsharded)
    runs = [a for a in attempts if a["shard"] == shard]
    assert [a["attempt"] for a in runs] == [1, 2] and runs[0]["pid"] == pid and runs[1]["pid"] != pid, attempts
    assert f"retried by Ray: shards {shard}/{SHARDS}" in text


def test_without_retries_a_killed_worker_fails_the_run(ray_cluster, trained_model, tmp_path):
    # The control: with --max-retries 0 nobody reruns the shard, so the reruns above are Ray's.
    out = tmp_path / "ray"
    rc, text, (shard, _) = run_killing_one_worker(example(ray_cluster, trained_model, out) + ["--max-retries", "0"], ray_cluster.env)
    assert rc == 1, text
    errors = [line for line in text.splitlines() if line.startswith("ray_certify: ")]
    assert errors[-1].startswith(f"ray_certify: shard {shard}/{SHARDS}: WorkerCrashedError: "), text
    assert not (out / "report.json").exists()
