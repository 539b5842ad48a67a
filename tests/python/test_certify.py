"""ironbound.certify gives the report `ironbound certify` writes for the same samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
    assert py["sound"] is True


def test_fast_equals_cli_fast(cli, trained_model, fashion_test, tmp_path):
    # fast=True is --fast: plain float32 bounds, and the report says it is not float-sound.
    x, y = fashion_test
    x, y = x[:40], y[:40]
    m = ironbound.load(trained_model)
    py = ironbound.certify(m, x, y, 0.05, methods="crown,deepz", fast=True)
    assert_same_report(py, cli_report(cli, trained_model, tmp_path, "--eps", "0.05", "--method", "crown,deepz", "--n", "40", "--fast"))
    assert py["sound"] is False
    sound = ironbound.certify(m, x, y, 0.05, methods="crown,deepz")
    for method in ["crown", "deepz"]:
        assert sound["certified_accuracy"][method] <= py["certified_accuracy"][method]


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


def test_random_slope_seed_equals_cli(cli, trained_model, fashion_test, tmp_path):
    # `--method random-slope --seed 7`: the same slopes per sample, so the same report.
    x, y = fashion_test
    x, y = x[:60], y[:60]
    m = ironbound.load(trained_model)
    py = ironbound.certify(m, x, y, 0.02, methods="random-slope,one-step", seed=7, batch_size=25)
    want = cli_report(cli, trained_model, tmp_path, "--eps", "0.02", "--method", "random-slope,one-step", "--seed", "7", "--batch-size", "25", "--n", "60")
    assert_same_report(py, want)
    assert 0.0 < py["certified_accuracy"]["random-slope"] <= py["clean_accuracy"]


def test_shards_merge_into_the_unsharded_report(cli, trained_model, fashion_test, tmp_path):
    # certify(shard=(I, 3)) is `certify --shard I/3`; merge (dicts or files) is `ironbound merge`.
    x, y = fashion_test
    x, y = x[:50], y[:50]
    m = ironbound.load(trained_model)
    args = ("--eps", "0.05", "--method", "ibp,crown", "--pgd", "5", "--batch-size", "8", "--n", "50")
    shards = [ironbound.certify(m, x, y, 0.05, methods=["ibp", "crown"], pgd=5, batch_size=8, shard=(i, 3)) for i in (1, 2, 3)]
    for i, s in enumerate(shards, 1):
        want = cli_report(cli, trained_model, tmp_path, *args, "--shard", f"{i}/3")
        assert_same_report(s, want)
        (tmp_path / f"shard-{i}.json").write_text(json.dumps(s))
    assert [s["shard"]["start"] for s in shards] == [0, 17, 34] and [s["n"] for s in shards] == [17, 17, 16]
    unsharded = ironbound.certify(m, x, y, 0.05, methods=["ibp", "crown"], pgd=5, batch_size=8)
    merged = ironbound.merge([shards[2], shards[0], shards[1]])
    assert_same_report(merged, unsharded)
    files = [tmp_path / f"shard-{i}.json" for i in (1, 2, 3)]
    assert ironbound.merge(files, out=tmp_path / "py-merged.json") == merged
    cli.run("merge", "--out", tmp_path / "cli-merged.json", *files)
    assert (tmp_path / "py-merged.json").read_bytes() == (tmp_path / "cli-merged.json").read_bytes()


def test_shard_and_merge_errors(cli, trained_model, fashion_test, tmp_path):
    x, y = fashion_test
    m = ironbound.load(trained_model)
    for bad in [(0, 3), (4, 3), (1, 0), (-1, 2)]:
        with pytest.raises(ValueError, match=r"^shard=\(.*\): expected \(I, N\) with 1 <= I <= N$"):
            ironbound.certify(m, x[:4], y[:4], 0.05, shard=bad)
    with pytest.raises(ValueError, match=r"^--shard 5/5: 4 samples cannot be split into 5 non-empty shards$"):
        ironbound.certify(m, x[:4], y[:4], 0.05, shard=(5, 5))
    shards = [ironbound.certify(m, x[:4], y[:4], 0.05, methods="ibp", shard=(i, 2)) for i in (1, 2)]
    paths = []
    for i, s in enumerate(shards, 1):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(s))
    # The CLI's one-line messages, files named as the CLI names them.
    for files in [[paths[0]], [paths[0], paths[0], paths[1]]]:
        with pytest.raises(ValueError) as e:
            ironbound.merge(files)
        assert str(e.value) == cli.error("merge", "--out", tmp_path / "m.json", *files)
    with pytest.raises(ValueError, match=r"^missing shard 1/2 of 4 samples$"):
        ironbound.merge([shards[1]])
    with pytest.raises(ValueError, match=r"^reports\[0\]: not a shard report"):
        ironbound.merge([ironbound.certify(m, x[:4], y[:4], 0.05, methods="ibp"), shards[1]])
    with pytest.raises(ValueError, match=r"cannot read"):
        ironbound.merge([tmp_path / "missing.json"])
    with pytest.raises(TypeError):
        ironbound.merge(paths[0])
    assert not (tmp_path / "m.json").exists()
