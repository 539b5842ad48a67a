"""ironbound.train runs `ironbound train`: the same files and metrics, a callback per epoch,
and a clean stop (checkpoint kept, resumable) when the callback raises."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import ironbound

CONFIG = {
    "dataset": "fashion-mnist",
    "arch": "fc-small",
    "method": "ibp",
    "eps": 0.01,
    "epochs": 2,
    "seed": 1,
    "train_n": 300,
    "eval_n": 100,
    "batch_size": 50,
    "lr": 1e-3,
    "warmup_epochs": 0,
    "rampup_epochs": 1,
    "note": None,
}

TOML = "\n".join(f"{k} = {json.dumps(v)}" for k, v in CONFIG.items() if v is not None) + "\n"


def metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def tensors(path):
    """The float32 tensors of a safetensors file (its header's key order varies from run to
    run, so the files are compared tensor by tensor)."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n :]
    return {k: np.frombuffer(data[v["data_offsets"][0] : v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]) for k, v in header.items()}


def without_times(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in records]


def test_train_equals_cli_and_calls_back_each_epoch(cli, fashion_test, tmp_path):
    seen = []
    out = ironbound.train(CONFIG, tmp_path / "py", callback=seen.append)
    assert out["completed"] and out["resumed_from"] is None and out["out_dir"] == str(tmp_path / "py")
    assert [m["epoch"] for m in seen] == [1, 2]
    assert seen == out["metrics"] == metrics(tmp_path / "py" / "metrics.jsonl")
    for name in ["model.safetensors", "model.onnx", "config.toml", "metrics.jsonl"]:
        assert (tmp_path / "py" / name).is_file(), name
    for key in ["epoch", "loss", "clean_accuracy", "certified_accuracy", "eps", "seconds"]:
        assert key in seen[0], key

    (tmp_path / "c.toml").write_text(TOML)
    cli.run("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "cli")
    assert without_times(seen) == without_times(metrics(tmp_path / "cli" / "metrics.jsonl"))
    py_weights, cli_weights = tensors(tmp_path / "py" / "model.safetensors"), tensors(tmp_path / "cli" / "model.safetensors")
    assert sorted(py_weights) == sorted(cli_weights)
    for name, w in py_weights.items():
        assert np.array_equal(w, cli_weights[name]), name
    assert (tmp_path / "py" / "config.toml").read_text() == (tmp_path / "cli" / "config.toml").read_text()

    # The TOML text and the TOML file give the same run.
    text = ironbound.train(TOML, tmp_path / "text")
    path = ironbound.train(tmp_path / "c.toml", tmp_path / "path")
    assert without_times(text["metrics"]) == without_times(path["metrics"]) == without_times(seen)


class Stop(Exception):
    pass


def test_an_exception_in_the_callback_stops_cleanly_and_the_run_resumes(fashion_test, tmp_path):
    config = {**CONFIG, "epochs": 3}
    calls = []

    def callback(m):
        calls.append(m["epoch"])
        raise Stop(f"stop after epoch {m['epoch']}")

    with pytest.raises(Stop, match="stop after epoch 1"):
        ironbound.train(config, tmp_path / "run", callback=callback)
    assert calls == [1]
    assert len(metrics(tmp_path / "run" / "metrics.jsonl")) == 1
    assert not (tmp_path / "run" / "model.safetensors").exists()
    again = ironbound.train(config, tmp_path / "run")
    assert again["completed"] and again["resumed_from"] == 1
    assert [m["epoch"] for m in again["metrics"]] == [1, 2, 3]
