"""ironbound.verify decides a VNN-LIB property as `ironbound verify` does."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ironbound


def robustness_property(x: np.ndarray, label: int, eps: float, other: int) -> str:
    """The counterexample 'within eps of x (clipped to [0, 1]), output `other` >= output
    `label`' in VNN-LIB."""
    flat = x.reshape(-1).astype(np.float64)
    lines = [f"(declare-const X_{i} Real)" for i in range(flat.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i, v in enumerate(flat):
        lines.append(f"(assert (>= X_{i} {max(float(v) - eps, 0.0)!r}))")
        lines.append(f"(assert (<= X_{i} {min(float(v) + eps, 1.0)!r}))")
    lines.append(f"(assert (>= Y_{other} Y_{label}))")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("eps, expected", [(0.001, "unsat"), (0.3, "sat")])
def test_verify_equals_cli(cli, trained_model, fashion_test, tmp_path, eps, expected):
    x, y = fashion_test
    label = int(y[0])
    prop = tmp_path / "p.vnnlib"
    prop.write_text(robustness_property(x[0], label, eps, (label + 1) % 10))
    py = ironbound.verify(trained_model, prop, timeout=60)
    out = tmp_path / "r.json"
    first = cli.run("verify", "--model", trained_model, "--property", prop, "--timeout", "60", "--out", out).stdout.splitlines()[0]
    want = json.loads(out.read_text())
    assert py["result"] == first == want["result"] == expected
    assert sorted(py) == sorted(want)
    assert py["stage"] == want["stage"]
    assert py.get("counterexample") == want.get("counterexample")
    if expected == "sat":
        # The counterexample is in the box and breaks the property under the model.
        cex = py["counterexample"]
        logits = ironbound.load(trained_model).forward(np.asarray(cex["x"], dtype=np.float32).reshape(1, 784))[0]
        assert logits[(label + 1) % 10] >= logits[label]
        assert np.all(np.abs(np.asarray(cex["x"]) - x[0].reshape(-1)) <= 0.3 + 1e-6)


def test_verify_accepts_a_model_object_and_reports_bad_properties(cli, trained_model, tmp_path):
    m = ironbound.load(trained_model)
    small = tmp_path / "small.vnnlib"
    small.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= Y_0 0))\n")
    with pytest.raises(ValueError) as e:
        ironbound.verify(m, small)
    assert str(e.value) == cli.error("verify", "--model", trained_model, "--property", small)
    with pytest.raises(ValueError, match="missing.vnnlib"):
        ironbound.verify(m, tmp_path / "missing.vnnlib")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        ironbound.verify(m, small, timeout=0)
