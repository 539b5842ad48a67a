#!/usr/bin/env python3
"""Writes the PyTorch checkpoints that crates/ironbound/tests/torch_checkpoint.rs reads.

Run once with real PyTorch (any torch >= 1.6; made with 2.15 on CPU):

    python3 scripts/make_torch_fixtures.py [--out crates/ironbound/tests/fixtures/torch]

Each file exercises one thing the Rust reader must handle: the zip and the legacy layout, a
transposed / offset / strided tensor and storages shared between tensors, float64 and float16
storages, a state dict wrapped in a dict of other things (epoch, optimizer state, an
argparse.Namespace, numpy scalars), DataParallel's `module.` prefix, convex_adversarial's list
of state dicts, paradox's stored normalisation, COLT's wrapped layers with ReLU slopes. The
models are tiny (1x6x6 or 3x6x6 inputs) except `crown_ibp_e_half.pt`, CROWN-IBP model E on
1x28x28 stored in float16 (32 KB), which `ironbound convert --arch crown-ibp-e` accepts.

expected.json holds each model's logits on a fixed batch of two inputs,
x.flatten()[i] = ((i * 37) % 101) / 100, computed in float32 from the stored weights
(float64 for the float64 file), so the Rust test can compare its own forward pass to 1e-5.
"""
import argparse
import collections
import json
import os

import numpy as np
import torch
import torch.nn as nn


def inputs(c, h, w):
    n = 2 * c * h * w
    return torch.tensor([((i * 37) % 101) / 100 for i in range(n)], dtype=torch.float32).view(2, c, h, w)


def tiny(c=1):
    """conv 2 3x3 pad 1, FC 5, FC 3 on c x 6 x 6: keys 0.*, 3.*, 5.* as ironbound names them."""
    return nn.Sequential(nn.Conv2d(c, 2, 3, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(72, 5), nn.ReLU(), nn.Linear(5, 3))


class Normalization(nn.Module):
    """paradox's provable_training/networks.py Normalization: mean and sigma are buffers."""

    def __init__(self, mean, sigma):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("sigma", torch.tensor(sigma).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.sigma


class ParadoxNet(nn.Module):
    """paradox's Conv: `layers` = Normalization, conv, ReLU, Flatten, FC, ReLU, FC."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(Normalization([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]), *tiny(3))

    def forward(self, x):
        return self.layers(x)


class ColtConv(nn.Module):
    def __init__(self, *a):
        super().__init__()
        self.conv = nn.Conv2d(*a)

    def forward(self, x):
        return self.conv(x)


class ColtLinear(nn.Module):
    def __init__(self, *a):
        super().__init__()
        self.linear = nn.Linear(*a)

    def forward(self, x):
        return self.linear(x)


class ColtReLU(nn.Module):
    """COLT's ReLU holds the DeepZ slopes as a parameter; it does not change the forward pass."""

    def __init__(self, dims):
        super().__init__()
        self.deepz_lambda = nn.Parameter(torch.rand(dims))

    def forward(self, x):
        return x.relu()


class ColtBlocks(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class ColtNet(nn.Module):
    """COLT's SeqNet: blocks.layers = [Normalization (no state), conv, ReLU, Flatten, FC, ReLU, FC]."""

    def __init__(self):
        super().__init__()
        self.mean, self.sigma = 0.1307, 0.3081
        self.blocks = ColtBlocks([nn.Identity(), ColtConv(1, 2, 3, 1, 1), ColtReLU((2, 6, 6)), nn.Flatten(), ColtLinear(72, 5), ColtReLU(5), ColtLinear(5, 3)])

    def forward(self, x):
        x = (x - self.mean) / self.sigma
        for layer in list(self.blocks.layers)[1:]:
            x = layer(x)
        return x


def crown_ibp_e():
    """CROWN-IBP model E (ironbound arch crown-ibp-e): conv 4 5x5+1, conv 8 5x5+1, conv 8 5x5+4, FC 64."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 5, 1, 1), nn.ReLU(), nn.Conv2d(4, 8, 5, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 5, 4, 0), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))


def logits(model, shape, dtype=torch.float32):
    with torch.no_grad():
        return model.to(dtype)(inputs(*shape).to(dtype)).double().tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "crates", "ironbound", "tests", "fixtures", "torch"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    path = lambda name: os.path.join(out, name)
    expected = {}
    torch.manual_seed(0)

    net = tiny()
    sd = net.state_dict()
    torch.save(sd, path("tiny_zip.pt"))
    torch.save(sd, path("tiny_legacy.pt"), _use_new_zipfile_serialization=False)
    expected["tiny"] = logits(net, (1, 6, 6))

    # Views: a transposed weight, a weight at a storage offset, a strided bias, and two
    # biases sharing one storage.
    views = tiny()
    with torch.no_grad():
        views[3].weight = nn.Parameter(torch.randn(72, 5).t())
        views[0].weight = nn.Parameter(torch.randn(40)[4:22].view(2, 1, 3, 3))
        shared = torch.randn(12)
        views[0].bias = nn.Parameter(shared[1:3])
        views[5].bias = nn.Parameter(shared[4:10:2])
    vsd = views.state_dict()
    assert not vsd["3.weight"].is_contiguous() and vsd["0.weight"].storage_offset() == 4
    torch.save(vsd, path("tiny_views.pt"))
    torch.save(vsd, path("tiny_views_legacy.pt"), _use_new_zipfile_serialization=False)
    expected["tiny_views"] = logits(views, (1, 6, 6))

    double = tiny().double()
    torch.save(double.state_dict(), path("tiny_f64.pt"))
    expected["tiny_f64"] = logits(double, (1, 6, 6), torch.float64)

    # A training checkpoint: the state dict among an optimizer state and other objects.
    wrapped = tiny()
    opt = torch.optim.Adam(wrapped.parameters(), lr=1e-3)
    wrapped(inputs(1, 6, 6)).sum().backward()
    opt.step()
    torch.save({
        "epoch": 7, "args": argparse.Namespace(lr=1e-3, arch="tiny"), "acc": np.float64(0.5), "history": [1.0, 2.5],
        "note": "trained", "big": 2 ** 70, "optimizer": opt.state_dict(), "state_dict": wrapped.state_dict(),
    }, path("tiny_wrapped.pt"))
    expected["tiny_wrapped"] = logits(wrapped, (1, 6, 6))

    dp_net = tiny()
    dp = nn.DataParallel(dp_net)
    assert all(k.startswith("module.") for k in dp.state_dict())
    torch.save({"model_state_dict": dp.state_dict(), "epoch": 3}, path("tiny_dataparallel.pt"), _use_new_zipfile_serialization=False)
    expected["tiny_dataparallel"] = logits(dp_net, (1, 6, 6))

    # convex_adversarial's examples/mnist.py: a list of state dicts (cascade stages).
    first, second = tiny(), tiny()
    torch.save({"state_dict": [first.state_dict(), second.state_dict()], "err": 0.25, "epoch": 3, "sampler_indices": torch.arange(5)},
               path("tiny_list.pt"), _use_new_zipfile_serialization=False)
    expected["tiny_list"] = logits(first, (1, 6, 6))

    paradox = ParadoxNet()
    torch.save(paradox.state_dict(), path("tiny_paradox.pt"))
    expected["tiny_paradox"] = logits(paradox, (3, 6, 6))

    colt = ColtNet()
    torch.save(colt.state_dict(), path("tiny_colt.pt"), _use_new_zipfile_serialization=False)
    expected["tiny_colt"] = logits(colt, (1, 6, 6))

    e = crown_ibp_e()
    e_sd = collections.OrderedDict((k, v.half()) for k, v in e.state_dict().items())
    torch.save({"state_dict": e_sd, "epoch": 100}, path("crown_ibp_e_half.pt"))
    e.load_state_dict({k: v.float() for k, v in e_sd.items()})
    expected["crown_ibp_e_half"] = logits(e, (1, 28, 28))

    with open(path("expected.json"), "w") as f:
        json.dump({"torch": torch.__version__, "logits": expected}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(path(n)) for n in os.listdir(out))
    print(f"wrote {len(os.listdir(out))} files, {total} bytes, to {out}")


if __name__ == "__main__":
    main()
