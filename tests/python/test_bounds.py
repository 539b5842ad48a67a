"""Model.bounds equals `ironbound bounds`, bit for bit, for every bound method, both model
formats, with and without labels and clipping, and for every way of passing the inputs."""

from __future__ import annotations

import numpy as np
import pytest

import ironbound
from conftest import inputs

METHODS = ["ibp", "hbox", "deepz", "crown", "crown-0", "crown-ibp", "cap-ibp", "alpha-crown"]


def assert_same(py: dict, cli: dict) -> None:
    assert sorted(py) == sorted(cli)
    for k in cli:
        assert py[k].dtype == np.float32 and cli[k].dtype == np.float32, k
        assert py[k].shape == cli[k].shape, k
        # array_equal on float32: the same bits (no NaN can occur in bounds of finite inputs).
        assert np.array_equal(py[k], cli[k]), f"{k}: max difference {np.max(np.abs(py[k] - cli[k]))}"


@pytest.mark.parametrize("method", METHODS)
def test_bounds_equal_cli_bit_for_bit(cli, models, tmp_path, method):
    x = inputs(7, seed=1)
    y = np.arange(7, dtype=np.int64) % 10
    for name in ["fc-small.onnx", "conv-small.safetensors"]:
        m = ironbound.load(models[name])
        py = m.bounds(x, 0.02, method=method, labels=y, clip=(0.0, 1.0))
        assert_same(py, cli.bounds(models[name], x, 0.02, method, tmp_path, labels=y, clip=(0.0, 1.0)))
        assert py["lower"].shape == (7, 10)
        assert np.all(py["lower"] <= py["upper"])
        assert np.all(py["margin_lower"][np.arange(7), y] == 0)


def test_without_labels_or_clip_and_more_rows_than_a_batch(cli, models, tmp_path):
    # 300 rows: two batches of the CLI's default 256, so batching must agree too.
    x = inputs(300, seed=2)
    m = ironbound.load(models["fc-small.safetensors"])
    py = m.bounds(x, 0.05, method="crown")
    assert sorted(py) == ["lower", "upper"]
    assert_same(py, cli.bounds(models["fc-small.safetensors"], x, 0.05, "crown", tmp_path))


@pytest.mark.parametrize("method", ["lp-triangle", "lp-parallelogram"])
def test_lp_methods_equal_cli(cli, trained_model, fashion_test, tmp_path, method):
    # A trained model at a small radius: few unstable ReLUs, so the LPs take a second.
    x, y = fashion_test
    x, y = x[:2], y[:2]
    m = ironbound.load(trained_model)
    py = m.bounds(x, 0.002, method=method, labels=y, clip=(0.0, 1.0))
    assert_same(py, cli.bounds(trained_model, x, 0.002, method, tmp_path, labels=y, clip=(0.0, 1.0)))


class ArrayOnly:
    """Something with only __array__ (as many array libraries have)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


class DlpackOnly:
    """Something with only the DLPack protocol (as torch tensors have, beside __array__)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_array_likes_flat_rows_and_label_types_give_the_same_bounds(models):
    x = inputs(4, seed=4)
    y = np.array([0, 1, 2, 3], dtype=np.int64)
    m = ironbound.load(models["conv-small.onnx"])
    want = m.bounds(x, 0.01, labels=y)
    same = [
        m.bounds(ArrayOnly(x), 0.01, labels=y),
        m.bounds(DlpackOnly(x), 0.01, labels=DlpackOnly(y)),
        m.bounds(x.reshape(4, 784), 0.01, labels=y.astype(np.int32)),
        m.bounds(x, 0.01, labels=[0, 1, 2, 3]),
    ]
    for got in same:
        for k in want:
            assert np.array_equal(got[k], want[k]), k


def test_torch_tensors_when_torch_is_installed(models):
    torch = pytest.importorskip("torch")
    x = inputs(3, seed=5)
    m = ironbound.load(models["fc-small.onnx"])
    want = m.bounds(x, 0.01, labels=np.array([1, 2, 3]))
    got = m.bounds(torch.from_numpy(x), 0.01, labels=torch.tensor([1, 2, 3]))
    for k in want:
        assert np.array_equal(got[k], want[k]), k


def test_forward_matches_the_cli_bounds_at_eps_0(models):
    x = inputs(5, seed=6)
    m = ironbound.load(models["fc-small.safetensors"])
    logits = m.forward(x)
    assert logits.dtype == np.float32 and logits.shape == (5, 10)
    b = m.bounds(x, 0.0, method="ibp")
    assert np.allclose(b["lower"], logits, atol=1e-4) and np.allclose(b["upper"], logits, atol=1e-4)


def test_model_attributes(models):
    m = ironbound.load(models["conv-small.onnx"])
    assert m.input_shape == (1, 28, 28)
    assert m.num_outputs == 10
    assert m.path == str(models["conv-small.onnx"])
    assert "conv-small.onnx" in repr(m)


def test_sound_bounds_equal_cli_sound(cli, models, tmp_path):
    # sound=True is --sound: the same bits, and an enclosure of the plain float32 bounds.
    x = inputs(6, seed=5)
    y = np.arange(6, dtype=np.int64) % 10
    m = ironbound.load(models["conv-small.onnx"])
    py = m.bounds(x, 0.02, method="crown", labels=y, clip=(0.0, 1.0), sound=True)
    assert_same(py, cli.bounds(models["conv-small.onnx"], x, 0.02, "crown", tmp_path, labels=y, clip=(0.0, 1.0), extra=["--sound"]))
    plain = m.bounds(x, 0.02, method="crown", labels=y, clip=(0.0, 1.0))
    assert np.all(py["lower"] <= plain["lower"]) and np.all(py["upper"] >= plain["upper"])
    assert np.any(py["lower"] < plain["lower"])


@pytest.mark.parametrize("method", ["random-slope", "one-step"])
def test_random_slopes_with_a_seed_equal_cli(cli, models, tmp_path, method):
    # LAND's slopes: drawn per (seed, row), so Python and `ironbound bounds --seed 7` agree to
    # the bit, and another seed gives other bounds.
    x = inputs(9, seed=3)
    y = np.arange(9, dtype=np.int64) % 10
    for name in ["fc-small.onnx", "conv-small.safetensors"]:
        m = ironbound.load(models[name])
        py = m.bounds(x, 0.02, method=method, labels=y, clip=(0.0, 1.0), seed=7)
        assert_same(py, cli.bounds(models[name], x, 0.02, method, tmp_path, labels=y, clip=(0.0, 1.0), extra=["--seed", "7"]))
        assert_same(m.bounds(x, 0.02, method=method, labels=y, clip=(0.0, 1.0)), cli.bounds(models[name], x, 0.02, method, tmp_path, labels=y, clip=(0.0, 1.0)))
        other = m.bounds(x, 0.02, method=method, labels=y, clip=(0.0, 1.0), seed=8)
        assert not np.array_equal(py["margin_lower"], other["margin_lower"]), name


def test_seed_and_labels_errors(cli, models, tmp_path):
    m = ironbound.load(models["fc-small.onnx"])
    with pytest.raises(ValueError, match=r"^method one-step needs labels: its slopes descend the robust loss"):
        m.bounds(inputs(2), 0.1, method="one-step")
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 2\*\*64\), got -1$"):
        m.bounds(inputs(2), 0.1, method="random-slope", seed=-1)
    with pytest.raises(TypeError, match=r"^seed: expected an integer, got float$"):
        m.bounds(inputs(2), 0.1, method="random-slope", seed=1.5)
    np.save(tmp_path / "x.npy", inputs(2))
    assert cli.error("bounds", "--model", models["fc-small.onnx"], "--input", tmp_path / "x.npy", "--eps", "0.1", "--method", "one-step", "--out", tmp_path / "b.npz").startswith("--method one-step needs --labels")


@pytest.mark.parametrize("method", ["deepz", "crown", "crown-ibp"])
def test_regularizers_equal_cli_bit_for_bit(cli, models, tmp_path, method):
    x = inputs(5, seed=9)
    y = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    m = ironbound.load(models["fc-small.onnx"])
    py = m.bounds(x, 0.03, method=method, labels=y, clip=(0.0, 1.0), regularizers=True)
    assert_same(py, cli.bounds(models["fc-small.onnx"], x, 0.03, method, tmp_path, labels=y, clip=(0.0, 1.0), extra=("--regularizers",)))
    assert py["reg_d"].shape == (5, 10) and np.all(py["reg_d"][np.arange(5), y] == 0)
    # Without the flag the dict has no regularizers; without labels it is an error, as in the CLI.
    assert "reg_d" not in m.bounds(x, 0.03, method=method, labels=y)
    with pytest.raises(ValueError, match="labels"):
        m.bounds(x, 0.03, method=method, regularizers=True)
    with pytest.raises(ValueError, match="regularizers"):
        m.bounds(x, 0.03, method="ibp", labels=y, regularizers=True)
