"""`ironbound train` writes TensorBoard event files into DIR/tb/ that TensorBoard's own reader
loads: every numeric key of each metrics.jsonl line as a scalar (step = epoch), each epoch
exactly once also after a resumed run whose last append was torn; `--no-tensorboard` writes
none.

Needs only the `ironbound` binary ($IRONBOUND_BIN, else target/debug/ironbound) and the
`tensorboard` package (tests/python/requirements.txt); Fashion-MNIST is looked up where
`ironbound train` looks (Debian's dataset-fashion-mnist package).
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
from pathlib import Path

import pytest

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

ROOT = Path(__file__).resolve().parents[2]

# A tiny run: FC-SMALL, IBP, 300 training and 100 test images, 2 epochs of 6 steps.
TRAIN = [
    "train", "--dataset", "fashion-mnist", "--arch", "fc-small", "--method", "ibp", "--eps", "0.01",
    "--epochs", "2", "--seed", "1",
    "--set", "train_n=300", "--set", "eval_n=100", "--set", "batch_size=50", "--set", "lr=1e-3",
    "--set", "warmup_epochs=0", "--set", "rampup_epochs=1",
]


def binary() -> Path:
    path = Path(os.environ.get("IRONBOUND_BIN", ROOT / "target" / "debug" / "ironbound"))
    if not path.is_file():
        pytest.skip(f"no ironbound binary at {path}; run `cargo build -p ironbound-cli` or set IRONBOUND_BIN")
    return path


def train(out: Path, *extra: str) -> None:
    cmd = [str(binary()), *TRAIN, "--out", str(out), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if res.returncode == 2 and "fashion-mnist" in res.stderr.lower() and "dataset" in res.stderr.lower():
        pytest.skip(f"Fashion-MNIST unavailable: {res.stderr.strip()}")
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()}"


def metrics(out: Path) -> list:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def scalars(tb: Path) -> dict:
    """tag -> [(step, value)] as TensorBoard loads them from the directory."""
    acc = event_accumulator.EventAccumulator(str(tb), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_events_match_metrics(out: Path) -> None:
    records = metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    got = scalars(out / "tb")
    numeric = {k for r in records for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(got) == numeric, f"tags {sorted(got)} vs numeric keys {sorted(numeric)}"
    for tag in numeric:
        want = [(r["epoch"], r[tag]) for r in records if isinstance(r.get(tag), (int, float))]
        assert [s for s, _ in got[tag]] == [s for s, _ in want], f"{tag}: each epoch exactly once"
        for (step, value), (_, x) in zip(got[tag], want):
            assert math.isclose(value, f32(x), rel_tol=1e-6, abs_tol=1e-30), f"{tag} at epoch {step}: {value} vs {x}"


def test_event_files_hold_every_metric(tmp_path):
    out = tmp_path / "run"
    train(out)
    files = list((out / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    # events.out.tfevents.<unix secs>.<hostname>.<pid>.<n>
    secs, *_, pid, n = files[0].name[len("events.out.tfevents."):].split(".")
    assert secs.isdigit() and pid.isdigit() and n.isdigit(), files[0].name
    assert_events_match_metrics(out)


def test_resume_after_a_torn_append_shows_each_epoch_once(tmp_path):
    out = tmp_path / "run"
    train(out, "--stop-after-epochs", "1")
    assert [r["epoch"] for r in metrics(out)] == [1]
    (event_file,) = (out / "tb").glob("events.out.tfevents.*")
    # A kill in the middle of appending the next epoch's record leaves a torn record.
    with open(event_file, "ab") as f:
        f.write(b"\x30\x00\x00\x00\x00\x00\x00\x00\x01\x02")
    train(out)
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    assert_events_match_metrics(out)
    # A finished run rerun rewrites its final files only: still each epoch once.
    train(out)
    assert_events_match_metrics(out)


def test_no_tensorboard_writes_no_event_files(tmp_path):
    out = tmp_path / "run"
    train(out, "--no-tensorboard")
    assert not (out / "tb").exists()
    assert "tensorboard = false" in (out / "config.toml").read_text()
