"""Fixtures shared by the Python tests: the `ironbound` binary to compare against, small
models, and data.

Run through scripts/python-tests.sh, which builds the wheel into a fresh virtual environment
(target/pyvenv), installs it, and runs pytest there. The tests compare the installed package
with the CLI binary: $IRONBOUND_BIN, else target/debug/ironbound, else target/release/ironbound.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

try:
    import ironbound  # noqa: F401  (the installed wheel, not the sources in python/)
except ImportError as e:  # pragma: no cover - a setup problem, not a test result
    raise pytest.UsageError(f"ironbound is not installed in this interpreter ({e}); run scripts/python-tests.sh") from e


def ironbound_bin() -> Path:
    env = os.environ.get("IRONBOUND_BIN")
    candidates = [Path(env)] if env else [ROOT / "target" / "debug" / "ironbound", ROOT / "target" / "release" / "ironbound"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise pytest.UsageError(f"no ironbound binary at {', '.join(map(str, candidates))}; run `cargo build -p ironbound-cli` or set IRONBOUND_BIN")


class Cli:
    """Runs the `ironbound` binary."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, *args: object, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.path), *map(str, args)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()}")
        return out

    def error(self, *args: object) -> str:
        """The one-line message of a command that must fail with exit code 2."""
        out = self.run(*args, check=False)
        assert out.returncode == 2, f"exit {out.returncode}: {out.stderr}"
        lines = [line for line in out.stderr.splitlines() if line.startswith("ironbound: ")]
        assert len(lines) == 1, out.stderr
        return lines[0][len("ironbound: ") :]

    def bounds(self, model: Path, x: np.ndarray, eps: float, method: str, tmp: Path, labels=None, clip=None, extra=()) -> Dict[str, np.ndarray]:
        """`ironbound bounds` on x (saved as .npy), read back from its .npz; `extra` are more
        flags (`--seed 7`)."""
        xp, out = tmp / f"x-{method}.npy", tmp / f"b-{method}.npz"
        np.save(xp, x)
        args: List[object] = ["bounds", "--model", model, "--input", xp, "--eps", repr(eps), "--method", method, "--out", out]
        if labels is not None:
            yp = tmp / f"y-{method}.npy"
            np.save(yp, labels)
            args += ["--labels", yp]
        if clip is not None:
            args += ["--clip", repr(clip[0]), repr(clip[1])]
        self.run(*args, *extra)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}

    def json(self, *args: object) -> dict:
        return json.loads(self.run(*args).stdout)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli(ironbound_bin())


@pytest.fixture(scope="session")
def models(cli: Cli, tmp_path_factory) -> Dict[str, Path]:
    """fc-small (784-100-100-10) and a small convnet with seeded random weights, as ONNX and
    native files."""
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for arch in ["fc-small", "conv-small"]:
        for ext in ["onnx", "safetensors"]:
            p = d / f"{arch}.{ext}"
            cli.run("init", "--arch", arch, "--seed", "3", "--out", p)
            paths[f"{arch}.{ext}"] = p
    return paths


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """A committed, PGD-trained fc-small (results/), so accuracies are not trivially 0."""
    return ROOT / "results" / "fcsmall-pgd-eps0.1-lp-milp" / "model.onnx"


@pytest.fixture(scope="session")
def fashion_test():
    """The first 200 Fashion-MNIST test images and labels, through the library's loader (the
    CLI's --dataset); skipped where the dataset is neither installed nor downloadable."""
    try:
        return ironbound.dataset("fashion-mnist", "test", n=200)
    except ValueError as e:
        pytest.skip(f"Fashion-MNIST unavailable: {e}")


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """n random images in [0, 1], float32 [n, 1, 28, 28]."""
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)
