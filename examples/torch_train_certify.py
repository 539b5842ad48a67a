"""Train a small MLP in PyTorch on Fashion-MNIST, export it to ONNX, and certify it with
ironbound from Python.

    pip install .                      # the ironbound package (repository root)
    pip install torch onnx             # PyTorch and the ONNX exporter's dependency
    python examples/torch_train_certify.py [--epochs 3] [--eps 0.01] [--n 1000]

Reads the IDX files of Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, or
--data DIR). Prints the test accuracy in PyTorch and in ironbound (the same logits), bounds of
one image, and clean / certified / PGD accuracy at --eps.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn

import ironbound


def idx(path: str) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(data_dir: str, prefix: str):
    def find(name: str) -> str:
        for candidate in (name, name + ".gz"):
            if os.path.exists(os.path.join(data_dir, candidate)):
                return os.path.join(data_dir, candidate)
        raise SystemExit(f"{data_dir}: no {name}[.gz] (install Debian's dataset-fashion-mnist, or pass --data DIR)")

    # The same values as torchvision's ToTensor and ironbound's loader: bytes / 255 in float32.
    x = idx(find(f"{prefix}-images-idx3-ubyte")).astype(np.float32)[:, None] / np.float32(255)
    y = idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return np.ascontiguousarray(x), y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--n", type=int, default=1000, help="test images to certify")
    p.add_argument("--out", default=None, help="where to write model.onnx (default: a temporary directory)")
    a = p.parse_args()

    torch.manual_seed(0)
    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "t10k")
    xte, yte = xte[: a.n], yte[: a.n]

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    t0 = time.time()
    for epoch in range(a.epochs):
        perm = torch.randperm(len(xt))
        total = 0.0
        for i in range(0, len(xt), 128):
            batch = perm[i : i + 128]
            loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}: mean training loss {total / len(xt):.4f}")
    print(f"trained {a.epochs} epochs in {time.time() - t0:.1f} s")

    model.eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(xte)).numpy()
    out_dir = a.out or tempfile.mkdtemp(prefix="ironbound-example-")
    onnx_path = os.path.join(out_dir, "model.onnx")
    # The TorchScript exporter (dynamo=False) needs only the onnx package; torch warns that it
    # is no longer the default.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 28, 28),),
            onnx_path,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=13,
            dynamo=False,
        )
    print(f"exported {onnx_path}")

    m = ironbound.load(onnx_path)
    print(m)
    # torch tensors go in as they are (DLPack, no copy).
    logits = m.forward(torch.from_numpy(xte))
    print(f"test accuracy: PyTorch {np.mean(torch_logits.argmax(1) == yte):.4f}, ironbound {np.mean(logits.argmax(1) == yte):.4f}; "
          f"largest logit difference {np.max(np.abs(logits - torch_logits)):.2e}")

    b = m.bounds(xte[:1], a.eps, method="crown", labels=yte[:1], clip=(0.0, 1.0))
    np.set_printoptions(precision=3, suppress=True, linewidth=120)
    print(f"CROWN bounds of image 0 (label {yte[0]}) at eps {a.eps}:")
    print("  lower       ", b["lower"][0])
    print("  upper       ", b["upper"][0])
    print("  margin_lower", b["margin_lower"][0])

    t0 = time.time()
    r = ironbound.certify(m, xte, yte, a.eps, methods=["ibp", "deepz", "crown", "alpha-crown"], pgd=20)
    print(f"certify {r['n']} test images at eps {r['eps']} ({time.time() - t0:.1f} s):")
    print(f"  clean accuracy         {r['clean_accuracy']:.4f}")
    for method, acc in r["certified_accuracy"].items():
        print(f"  certified {method:<12} {acc:.4f}")
    print(f"  PGD-20 accuracy        {r['pgd_accuracy']:.4f}")


if __name__ == "__main__":
    main()
