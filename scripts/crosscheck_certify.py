#!/usr/bin/env python3
"""Cross-check `ironbound certify` against an independent PyTorch implementation.

Trains a small PyTorch model with a normalisation front (Sub/Div in ONNX) on Fashion-MNIST,
exports it to ONNX, runs `ironbound certify` on it, and recomputes clean / IBP / CROWN-IBP /
CROWN / DeepZ certified accuracy with the plain-PyTorch bound code of
shared/bench/torch_reference.py (normalisation folded into the first linear layer, which is
exact for an MLP). Prints both and exits non-zero if they differ by more than 0.2 points.

    python3 scripts/crosscheck_certify.py --ironbound target/release/ironbound --n 1000
Needs torch, numpy and onnx.
"""
import argparse, gzip, json, os, subprocess, sys, tempfile
import numpy as np
import torch, torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "bench"))
import torch_reference as ref  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    if data[2] == 8 and data[3] == 3:
        n = int.from_bytes(data[4:8], "big")
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / 255
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


class Norm(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ironbound", default=os.path.join(HERE, "..", "target", "release", "ironbound"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.01)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--arch", choices=["fc5", "conv"], default="fc5",
                    help="fc5: 784-400-200-100-100-10; conv: conv 16 4x4/2, conv 32 4x4/2, FC 100 (no padding, so the "
                         "normalisation folds exactly into the first layer)")
    a = ap.parse_args()
    torch.manual_seed(0)
    xtr, ytr = idx(f"{FMNIST}/train-images-idx3-ubyte.gz"), idx(f"{FMNIST}/train-labels-idx1-ubyte.gz")
    xte, yte = idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz")[: a.n], idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz")[: a.n]
    mean, std = 0.2860, 0.3530
    if a.arch == "fc5":
        body = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 200), nn.ReLU(),
                             nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    else:
        body = nn.Sequential(nn.Conv2d(1, 16, 4, 2), nn.ReLU(), nn.Conv2d(16, 32, 4, 2), nn.ReLU(), nn.Flatten(),
                             nn.Linear(32 * 5 * 5, 100), nn.ReLU(), nn.Linear(100, 10))
    model = nn.Sequential(Norm(mean, std), body)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    X, Y = torch.tensor(xtr), torch.tensor(ytr)
    for _ in range(a.epochs):
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            b = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[b]), Y[b]).backward()
            opt.step()
    model.eval()
    tmp = tempfile.mkdtemp()
    onnx_path = os.path.join(tmp, f"{a.arch}_norm.onnx")
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), onnx_path, opset_version=13,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
    methods = ["ibp", "crown-ibp", "crown", "deepz"]
    report = os.path.join(tmp, "report.json")
    subprocess.run([a.ironbound, "certify", "--model", onnx_path, "--dataset", "fashion-mnist",
                    "--eps", str(a.eps), "--method", ",".join(methods), "--n", str(a.n),
                    "--out", report], check=True)
    ours = json.load(open(report))

    # Reference: fold the normalisation into the first affine layer (exact without padding).
    layers = [m for m in body]
    k = 1 if a.arch == "fc5" else 0
    first = layers[k]
    folded = nn.Linear(784, 400) if a.arch == "fc5" else nn.Conv2d(1, 16, 4, 2)
    with torch.no_grad():
        folded.weight.copy_(first.weight / std)
        folded.bias.copy_(first.bias - first.weight.flatten(1).sum(1) * mean / std)
    layers[k] = folded
    shapes = ref.layer_input_shapes(nn.Sequential(*layers), (1, 28, 28))
    x, y = torch.tensor(xte), torch.tensor(yte)
    lbs = {m: [] for m in methods}
    with torch.no_grad():
        pred = nn.Sequential(*layers)(x).argmax(1)
        correct = pred == y
        for i in range(0, len(x), 100):  # batches keep the reference's memory bounded
            xb, yb = x[i:i + 100], y[i:i + 100]
            xl, xu = (xb - a.eps).clamp(0, 1), (xb + a.eps).clamp(0, 1)
            C = ref.spec_matrix(yb)
            lbs["ibp"].append(ref.ibp(layers, xl, xu, C)[0])
            lbs["crown-ibp"].append(ref.crown_ibp(layers, shapes, xl, xu, C)[0])
            lbs["crown"].append(ref.full_backsub(layers, shapes, xl, xu, C, "crown")[0])
            lbs["deepz"].append(ref.full_backsub(layers, shapes, xl, xu, C, "deepz")[0])
    lbs = {m: torch.cat(v) for m, v in lbs.items()}
    theirs = {"clean_accuracy": correct.float().mean().item(),
              "certified_accuracy": {m: ((lb > 0).all(1) & correct).float().mean().item() for m, lb in lbs.items()}}
    print(json.dumps({"ironbound": ours, "pytorch": theirs}, indent=1))
    worst = abs(ours["clean_accuracy"] - theirs["clean_accuracy"])
    for m in methods:
        worst = max(worst, abs(ours["certified_accuracy"][m] - theirs["certified_accuracy"][m]))
    print(f"largest difference: {100 * worst:.2f} points")
    sys.exit(0 if worst <= 0.002 else 1)


if __name__ == "__main__":
    main()
