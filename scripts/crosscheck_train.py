#!/usr/bin/env python3
"""Box (IBP) certified training of the paradox FC/CONV networks in plain PyTorch, following the
paradox code release (cert.py + provable_training/{train,utils,hybridzono}.py) step for step:
a Normalization layer first, PyTorch default init, per-batch linear eps/kappa schedules after
the warm-up, elided margins (C = e_y - e_j), loss kappa*CE + (1-kappa)*CE(worst logits) +
lambda*L1(weights), Adam, MultiStepLR (x0.1) stepped per batch.

It exists to tell apart "ironbound trains differently" from "this recipe gives this result":
run it and `ironbound train --config configs/paradox-fashion-mnist-<net>-ibp.toml` and compare
the metrics.jsonl lines it writes (same keys for clean/certified accuracy) epoch by epoch.

    python3 scripts/crosscheck_train.py --net fc --out runs/torch-fc-ibp [--epochs 200]
Needs torch and numpy.
"""
import argparse, gzip, json, os, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2861, 0.3530  # paradox networks.py, fashion-mnist


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    if data[3] == 3:
        n = int.from_bytes(data[4:8], "big")
        return torch.from_numpy(np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / 255)
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=8).astype(np.int64))


def layers(net):
    if net == "fc":
        return [nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 100),
                nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10)]
    return [nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 14 * 14, 100), nn.ReLU(),
            nn.Linear(100, 10)]


def margins_lower(body, x, y, eps):
    """IBP lower bounds of logit_y - logit_j (j != y), last layer elided, inputs clipped to [0, 1]."""
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    lo, hi = (lo - MEAN) / STD, (hi - MEAN) / STD
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    *hidden, last = body
    for layer in hidden:
        if isinstance(layer, nn.Linear):
            mid, rad = F.linear(mid, layer.weight, layer.bias), F.linear(rad, layer.weight.abs())
        elif isinstance(layer, nn.Conv2d):
            mid = F.conv2d(mid, layer.weight, layer.bias, layer.stride, layer.padding)
            rad = F.conv2d(rad, layer.weight.abs(), None, layer.stride, layer.padding)
        elif isinstance(layer, nn.ReLU):
            l, u = F.relu(mid - rad), F.relu(mid + rad)
            mid, rad = (u + l) / 2, (u - l) / 2
        else:
            mid, rad = layer(mid), layer(rad)
    k = last.out_features
    eye = torch.eye(k)
    c = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # [B, K, K]: row j = e_y - e_j
    keep = ~F.one_hot(y, k).bool()
    c = c[keep].view(len(y), k - 1, k)
    w, b = c.matmul(last.weight), c.matmul(last.bias)
    return (w.matmul(mid.unsqueeze(-1)).squeeze(-1) + b) - w.abs().matmul(rad.unsqueeze(-1)).squeeze(-1)


def robust_ce(lb):
    logits = torch.cat([torch.zeros(len(lb), 1), -lb], 1)
    return F.cross_entropy(logits, torch.zeros(len(lb), dtype=torch.long))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["fc", "conv"], default="fc")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=None, help="default: table2.sh (fc 10, conv 0)")
    ap.add_argument("--ramp", type=int, default=None, help="default: table2.sh (fc 100, conv 50)")
    ap.add_argument("--kappa-end", type=float, default=None, help="default: table2.sh (fc 0, conv 0.5)")
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--l1", type=float, default=5e-6)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--milestones", default="130,190")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    warmup = a.warmup if a.warmup is not None else (10 if a.net == "fc" else 0)
    ramp = a.ramp if a.ramp is not None else (100 if a.net == "fc" else 50)
    kappa_end = a.kappa_end if a.kappa_end is not None else (0.0 if a.net == "fc" else 0.5)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)

    xtr, ytr = idx(f"{FMNIST}/train-images-idx3-ubyte.gz"), idx(f"{FMNIST}/train-labels-idx1-ubyte.gz")
    xte, yte = idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz"), idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz")
    body = nn.Sequential(*layers(a.net))
    opt = torch.optim.Adam(body.parameters(), lr=a.lr)
    nb = (len(xtr) + 99) // 100
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [nb * int(m) for m in a.milestones.split(",")], gamma=0.1)
    warm_steps, mix_steps, step = nb * warmup, nb * ramp, 0

    def value(start, end):
        if step < warm_steps:
            return start
        return end if step >= warm_steps + mix_steps else start + (step - warm_steps) / mix_steps * (end - start)

    log = open(os.path.join(a.out, "metrics.jsonl"), "w")
    for epoch in range(a.epochs):
        t0 = time.time()
        body.train()
        perm = torch.randperm(len(xtr))
        for i in range(nb):
            sel = perm[i * 100:(i + 1) * 100]
            x, y = xtr[sel], ytr[sel]
            eps, kappa = value(0.0, a.eps), value(1.0, kappa_end)
            nat = F.cross_entropy(body((x - MEAN) / STD), y)
            if epoch < warmup or kappa == 1:
                loss = nat
            else:
                loss = kappa * nat + (1 - kappa) * robust_ce(margins_lower(body, x, y, eps))
            loss = loss + a.l1 * sum(p.abs().sum() for n, p in body.named_parameters() if "weight" in n)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        with torch.no_grad():
            clean = cert = 0
            for j in range(0, len(xte), 1000):
                x, y = xte[j:j + 1000], yte[j:j + 1000]
                ok = body((x - MEAN) / STD).argmax(1) == y
                clean += ok.sum().item()
                cert += (ok & (margins_lower(body, x, y, a.eps) > 0).all(1)).sum().item()
        rec = {"epoch": epoch + 1, "clean_accuracy": clean / len(xte), "certified_accuracy": cert / len(xte),
               "eps": eps, "kappa": kappa, "lr": sched.get_last_lr()[0], "seconds": time.time() - t0}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(rec, flush=True)


if __name__ == "__main__":
    main()
