"""Ctrl-C (SIGINT) interrupts long calls with KeyboardInterrupt after the batch in flight."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

SCRIPT = r"""
import sys, numpy as np, ironbound
m = ironbound.load(sys.argv[1])
x = np.random.default_rng(0).random((5000, 784), dtype=np.float32)
print("started", flush=True)
try:
    if sys.argv[2] == "bounds":
        m.bounds(x, 0.01, method="alpha-crown", batch_size=64)  # minutes uninterrupted
    else:
        ironbound.train({"dataset": "fashion-mnist", "arch": "fc-small", "method": "crown-ibp", "eps": 0.1, "epochs": 50}, sys.argv[3])
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("finished", flush=True)
"""


@pytest.mark.parametrize("what", ["bounds", "train"])
def test_sigint_interrupts(models, fashion_test, tmp_path, what):
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, str(models["fc-small.onnx"]), what, str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "started"
        time.sleep(2.0)  # inside the long call, which takes minutes
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 3, (out, err)
    assert out.strip() == "interrupted"
