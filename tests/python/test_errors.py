"""Bad input raises TypeError or ValueError with the CLI's one-line message (the CLI names a
file where Python names the argument), never a crash."""

from __future__ import annotations

import numpy as np
import pytest

import ironbound
from conftest import inputs


def same_reason(py_message: str, cli_message: str) -> None:
    """The messages agree after their subjects (`x: ...` in Python, `path: ...` in the CLI)."""
    assert py_message.split(": ", 1)[1] == cli_message.split(": ", 1)[1], (py_message, cli_message)


@pytest.fixture
def fc(models):
    return ironbound.load(models["fc-small.onnx"])


def cli_bounds_error(cli, model, tmp_path, x=None, y=None, eps="0.1", method="ibp", extra=()):
    xp = tmp_path / "x.npy"
    np.save(xp, inputs(2) if x is None else x)
    args = ["bounds", "--model", model, "--input", xp, "--eps", eps, "--method", method, "--out", tmp_path / "b.npz", *extra]
    if y is not None:
        np.save(tmp_path / "y.npy", y)
        args += ["--labels", tmp_path / "y.npy"]
    message = cli.error(*args)
    assert not (tmp_path / "b.npz").exists()
    return message


def test_wrong_dtype_is_a_type_error(fc):
    with pytest.raises(TypeError, match=r"^x: has dtype float64, expected float32"):
        fc.bounds(inputs(2).astype(np.float64), 0.1)
    with pytest.raises(TypeError, match=r"^x: has dtype int64, expected float32"):
        fc.forward(np.zeros((1, 784), dtype=np.int64))
    with pytest.raises(TypeError, match=r"^labels: has dtype float32, expected an integer array"):
        fc.bounds(inputs(2), 0.1, labels=np.array([0.0, 1.0], dtype=np.float32))
    with pytest.raises(TypeError, match=r"^x: has dtype object"):
        fc.bounds({"not": "an array"}, 0.1)


def test_wrong_shape_names_the_expected_shapes(cli, models, fc, tmp_path):
    x = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ValueError) as e:
        fc.bounds(x, 0.1)
    assert str(e.value) == "x: has shape [2, 5], expected [N, 784] or [N, 1, 28, 28] for this model"
    same_reason(str(e.value), cli_bounds_error(cli, models["fc-small.onnx"], tmp_path, x=x))
    with pytest.raises(ValueError, match=r"^x: has shape \[784\]"):
        fc.bounds(np.zeros(784, dtype=np.float32), 0.1)


def test_non_contiguous_input_is_refused_not_copied(fc):
    x = inputs(4)
    with pytest.raises(ValueError, match=r"^x: is not C-contiguous; pass np.ascontiguousarray\(x\)"):
        fc.bounds(x[::2], 0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        fc.forward(np.asfortranarray(x.reshape(4, 784)))
    # What the message says works.
    assert fc.bounds(np.ascontiguousarray(x[::2]), 0.1)["lower"].shape == (2, 10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_inputs(cli, models, fc, tmp_path, bad):
    x = inputs(2)
    x[0, 0, 0, 5] = bad
    with pytest.raises(ValueError) as e:
        fc.bounds(x, 0.1)
    assert str(e.value) == "x: contains a non-finite value (NaN or inf) at flat index 5"
    same_reason(str(e.value), cli_bounds_error(cli, models["fc-small.onnx"], tmp_path, x=x))
    with pytest.raises(ValueError, match="NaN"):
        fc.forward(x)
    with pytest.raises(ValueError, match="NaN"):
        ironbound.certify(fc, x, np.array([0, 1]), 0.1)


def test_bad_labels(cli, models, fc, tmp_path):
    for y, reason in [(np.array([0, 10]), "label 10 is out of range for a model with 10 outputs"), (np.array([1, 2, 3]), "has 3 labels for 2 inputs")]:
        with pytest.raises(ValueError) as e:
            fc.bounds(inputs(2), 0.1, labels=y)
        assert str(e.value) == f"labels: {reason}"
        same_reason(str(e.value), cli_bounds_error(cli, models["fc-small.onnx"], tmp_path, y=y))
    with pytest.raises(ValueError, match="label -1 is out of range"):
        fc.bounds(inputs(2), 0.1, labels=np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"^y: has shape \[2, 1\], expected \[N\]"):
        ironbound.certify(fc, inputs(2), np.array([[0], [1]]), 0.1)


def test_bad_arguments_have_the_cli_message(cli, models, fc, tmp_path):
    m = models["fc-small.onnx"]
    for kwargs, cli_args in [
        ({"method": "nonsense"}, {"method": "nonsense"}),
        ({"eps": -0.1}, {"eps": "-0.1"}),
        ({"eps": float("nan")}, {"eps": "nan"}),
        ({"method": "colt"}, {"method": "colt"}),
    ]:
        with pytest.raises(ValueError) as e:
            fc.bounds(inputs(2), **{"eps": 0.1, **kwargs})
        assert str(e.value) == cli_bounds_error(cli, m, tmp_path, **cli_args)
    with pytest.raises(ValueError, match=r"^clip needs MIN <= MAX, got \(1.0, 0.0\)"):
        fc.bounds(inputs(2), 0.1, clip=(1, 0))
    with pytest.raises(ValueError, match="clip takes two values"):
        fc.bounds(inputs(2), 0.1, clip=(0, 1, 2))
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got -1"):
        fc.bounds(inputs(2), 0.1, method="milp", timeout=-1)


def test_unreadable_models(cli, tmp_path):
    missing = tmp_path / "missing.onnx"
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage that is no protobuf model")
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    for path in [missing, garbage, truncated]:
        with pytest.raises(ValueError) as e:
            ironbound.load(path)
        assert str(e.value) == cli.error("bounds", "--model", path, "--input", tmp_path / "none.npy", "--eps", "0.1", "--method", "ibp", "--out", tmp_path / "b.npz")
        assert str(path) in str(e.value)


def test_certify_argument_errors(cli, fc, tmp_path):
    x, y = inputs(2), np.array([0, 1])
    with pytest.raises(ValueError) as e:
        ironbound.certify(fc, x, y, 0.1, methods=["ibp", "nonsense"])
    assert str(e.value) == cli.error("certify", "--model", fc.path, "--dataset", "fashion-mnist", "--eps", "0.1", "--method", "ibp,nonsense", "--out", tmp_path / "r.json")
    with pytest.raises(ValueError, match="methods needs at least one method"):
        ironbound.certify(fc, x, y, 0.1, methods=[])
    with pytest.raises(TypeError, match="expected an ironbound.Model"):
        ironbound.certify("model.onnx", x, y, 0.1)
    with pytest.raises(TypeError, match=r"^y: has dtype float64"):
        ironbound.certify(fc, x, np.array([0.0, 1.0]), 0.1)


def test_train_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"config\['lrr'\]: unknown key `lrr` \(did you mean `lr`\?\)"):
        ironbound.train({"dataset": "fashion-mnist", "lrr": 0.1}, tmp_path / "run")
    with pytest.raises(ValueError, match=r"config\['epochs'\]: key `epochs`"):
        ironbound.train({"epochs": "many"}, tmp_path / "run")
    with pytest.raises(ValueError, match=r"<config>: line 2: unknown key `batchsize`"):
        ironbound.train('dataset = "fashion-mnist"\nbatchsize = 3\n', tmp_path / "run")
    with pytest.raises(ValueError, match="no-such.toml: cannot read"):
        ironbound.train(tmp_path / "no-such.toml", tmp_path / "run")
    with pytest.raises(TypeError, match="config: expected a dict"):
        ironbound.train(42, tmp_path / "run")
    assert not (tmp_path / "run").exists()
