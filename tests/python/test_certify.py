"""ironbound.certify gives the report `ironbound certify` writes for the same samples."""

from __future__ import annotations

import json

import numpy as np

import ironbound


def cli_report(cli, model, tmp_path, *args) -> dict:
    out = tmp_path / "report.json"
    cli.run("certify", "--model", model, "--dataset", "fashion-mnist", *args, "--out", out)
    return json.loads(out.read_text())


def assert_same_report(py: dict, cli: dict) -> None:
    assert sorted(py) == sorted(cli)
    for key in cli:
        if key == "seconds":
            assert sorted(py[key]) == sorted(cli[key])
        else:
            assert py[key] == cli[key], key


def test_certify_equals_cli_report(cli, trained_model, fashion_test, tmp_path):
    x, y = fashion_test
    x, y = x[:100], y[:100]
    m = ironbound.load(trained_model)
    py = ironbound.certify(m, x, y, 0.05, methods=["ibp", "crown", "deepz"], pgd=5)
    want = cli_report(cli, trained_model, tmp_path, "--eps", "0.05", "--method", "ibp,crown,deepz", "--pgd", "5", "--n", "100")
    assert_same_report(py, want)
    # The contract's keys, and numbers that are not trivial.
    assert py["n"] == 100 and py["eps"] == 0.05
    assert 0.5 < py["clean_accuracy"] <= 1.0
    assert 0.0 < py["certified_accuracy"]["crown"] <= py["pgd_accuracy"] <= py["clean_accuracy"]
    assert py["soundness_conflicts"] == 0


def test_certify_options_equal_cli(cli, trained_model, fashion_test, tmp_path):
    x, y = fashion_test
    x, y = x[:30], y[:30]
    m = ironbound.load(trained_model)
    py = ironbound.certify(m, x.reshape(30, 784), y.astype(np.int32), 0.02, methods="crown-ibp,alpha-crown", clip=None, batch_size=7, cascade=["ibp", "crown"])
    want = cli_report(cli, trained_model, tmp_path, "--eps", "0.02", "--method", "crown-ibp,alpha-crown", "--no-clip", "--batch-size", "7", "--cascade", "ibp,crown", "--n", "30")
    assert_same_report(py, want)
    assert py["clip"] is None and "cascade:ibp>crown" in py["certified_accuracy"]


def test_dataset_matches_the_idx_files(fashion_test):
    x, y = fashion_test
    assert x.dtype == np.float32 and x.shape == (200, 1, 28, 28) and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.shape == (200,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) <= set(range(10))
