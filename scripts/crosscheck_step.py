#!/usr/bin/env python3
"""One IBP or CROWN-IBP training step of ironbound against the same step in PyTorch, from the
same weights.

`ironbound train` runs the paradox recipe (configs/paradox-fashion-mnist-<net>-<method>.toml) on
the first 100 training images at full eps 0.3 and kappa 0.5 (CROWN-IBP: beta 0.5, so both bounds
and their mix count) three times: with SGD at lr 1e-30
(the initial weights w0), with SGD at lr 1 (w0 - gradient, so the gradient is w0 - w1), and with
Adam for three steps. The PyTorch loss of scripts/crosscheck_train.py (normalisation, elided
margins, kappa-mix, L1 on weights; CROWN-IBP bounds from shared/bench/torch_reference.py) is
evaluated from w0 on the same batch; the script prints the
relative difference of the losses, of every parameter's gradient and of the three Adam updates,
and fails when the loss or a gradient differs by more than 1e-4, an Adam update by more than
1e-3, or more than 0.1% of the weights step apart (Adam's step lr * g / (|g| + 1e-8) flips where
a gradient cancels to rounding level).

    python3 scripts/crosscheck_step.py --net conv [--method ibp|crown-ibp] [--ironbound target/release/ironbound]
Needs torch and numpy (the safetensors files are read by hand).
"""
import argparse, importlib.util, json, os, struct, subprocess, sys, tempfile
import numpy as np
import torch, torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import crosscheck_train as ct  # noqa: E402

EPS, KAPPA, BETA, L1, N = 0.3, 0.5, 0.5, 5e-6, 100


def torch_reference():
    path = os.path.join(HERE, "..", "..", "shared", "bench", "torch_reference.py")
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, base, out = json.loads(raw[8:8 + n]), 8 + n, {}
    for name, v in header.items():
        if name != "__metadata__":
            s, e = v["data_offsets"]
            out[name] = torch.from_numpy(np.frombuffer(raw[base + s:base + e], np.float32).reshape(v["shape"]).copy())
    return out


def ironbound_weights(binary, net, method, out, *sets):
    base = ["epochs=1", "rampup_epochs=0", "warmup_epochs=0", f"kappa_start={KAPPA}", f"kappa_end={KAPPA}",
            f"train_n={N}", f"eval_n={N}", "threads=1", 'lr_schedule="constant"', "seed=0", f"l1={L1}"]
    if method == "crown-ibp":
        base += [f"beta_start={BETA}", f"beta_end={BETA}"]
    cmd = [binary, "train", "--config", f"configs/paradox-fashion-mnist-{net}-{method}.toml", "--out", out]
    for s in base + list(sets):
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return load_safetensors(os.path.join(out, "model.safetensors")), json.loads(open(os.path.join(out, "metrics.jsonl")).readline())


def margins_lower(body, x, y, method, ref):
    """Elided margin lower bounds: IBP, or (1 - beta) IBP + beta CROWN-IBP."""
    ibp = ct.margins_lower(body, x, y, EPS)
    if method == "ibp":
        return ibp
    # torch_reference has no normalisation layer: bound the network after it on the normalised
    # box, which is the image of the input box (an exact, per-element increasing map).
    lo, hi = ref.input_box(x, EPS)
    lo, hi = (lo - ct.MEAN) / ct.STD, (hi - ct.MEAN) / ct.STD
    layers = list(body)
    shapes = ref.layer_input_shapes(body, tuple(x.shape[1:]))
    crown, _ = ref.crown_ibp(layers, shapes, lo, hi, ref.spec_matrix(y))
    return (1 - BETA) * ibp + BETA * crown


def loss_of(body, x, y, method, ref):
    nat = F.cross_entropy(body((x - ct.MEAN) / ct.STD), y)
    rob = ct.robust_ce(margins_lower(body, x, y, method, ref))
    l1 = sum(p.abs().sum() for n, p in body.named_parameters() if "weight" in n)
    return KAPPA * nat + (1 - KAPPA) * rob + L1 * l1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["fc", "conv"], default="conv")
    ap.add_argument("--method", choices=["ibp", "crown-ibp"], default="ibp")
    ap.add_argument("--ironbound", default="target/release/ironbound")
    a = ap.parse_args()
    ct.MEAN = 0.2860  # the configs' Fashion-MNIST mean (the paradox code rounds to 0.2861)
    tmp = tempfile.mkdtemp(prefix="crosscheck-step-")
    sgd = ['optimizer="sgd"', "momentum=0"]
    run = lambda out, *sets: ironbound_weights(a.ironbound, a.net, a.method, f"{tmp}/{out}", *sets)
    w0, m0 = run("w0", *sgd, "lr=1e-30")
    w1, _ = run("w1", *sgd, "lr=1")
    wa, _ = run("adam", "epochs=3")
    ref = torch_reference() if a.method == "crown-ibp" else None

    body = torch.nn.Sequential(*ct.layers(a.net))
    params = dict(body.named_parameters())
    if set(params) != set(w0):
        sys.exit(f"parameter names differ: torch {sorted(params)} vs ironbound {sorted(w0)}")

    def reset():
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(w0[n])

    reset()
    x = ct.idx(f"{ct.FMNIST}/train-images-idx3-ubyte.gz")[:N]
    y = ct.idx(f"{ct.FMNIST}/train-labels-idx1-ubyte.gz")[:N]
    loss = loss_of(body, x, y, a.method, ref)  # ironbound logs the loss with its L1 term
    worst = abs(loss.item() - m0["loss"]) / abs(loss.item())
    print(f"loss: torch {loss.item():.6f} ironbound {m0['loss']:.6f} rel {worst:.1e}")
    loss.backward()
    for n, p in params.items():
        rel = ((w0[n] - w1[n]) - p.grad).norm().item() / p.grad.norm().item()
        print(f"gradient {n}: |g| {p.grad.norm():.4e} rel {rel:.1e}")
        worst = max(worst, rel)
    opt = torch.optim.Adam(body.parameters(), lr=5e-4)
    reset()
    for _ in range(3):
        opt.zero_grad()
        loss_of(body, x, y, a.method, ref).backward()
        opt.step()
    # Adam moves a weight by about lr * g / (|g| + 1e-8): where the gradient cancels to rounding
    # level (e.g. the L1 term against the data term) the two implementations may step in
    # opposite directions. Those weights are counted, not compared.
    flipped = total = 0
    adam_worst = 0.0
    for n, p in params.items():
        dt, do = p.detach() - w0[n], wa[n] - w0[n]
        off = (dt - do).abs() > 5e-5
        flipped, total = flipped + off.sum().item(), total + off.numel()
        rel = (dt - do)[~off].norm().item() / dt.norm().item()
        print(f"3 Adam steps {n}: |dw| {dt.norm():.4e} rel {rel:.1e} ({off.sum().item()} weights stepped apart)")
        adam_worst = max(adam_worst, rel)
    # Adam divides by the gradient's running magnitude, so it amplifies rounding: 1e-3 for it.
    print(f"worst relative difference: loss and gradients {worst:.1e}, Adam updates {adam_worst:.1e}; "
          f"{flipped} of {total} weights stepped apart by Adam")
    sys.exit(0 if worst < 1e-4 and adam_worst < 1e-3 and flipped <= 1e-3 * total else 1)


if __name__ == "__main__":
    main()
