#!/usr/bin/env python3
"""PyTorch timings of the method workloads of `ironbound bench` (METHOD_WORKLOADS in
crates/ironbound/src/bench/mod.rs), built on the plain-PyTorch peer of
../shared/bench/torch_reference.py (its DM-small, data, specification, IBP and CROWN
back-substitution), timed the same way: setup untimed, 2 warm-up iterations, the wall clock
around each iteration, weights restored before every iteration with the Adam state kept.

  train-onestep-dmsmall  CROWN-IBP (beta = 1) with the loss-landscape paper's one-step slopes:
                         IBP intermediate bounds, a ~ U[0, 1], the robust loss's gradient with
                         respect to a, a = clip(a - sign(grad), 0, 1) detached, the bound again
                         with a, robust CE, backward, Adam.
  train-colt-dmsmall     COLT in the latent region after the first conv ReLU: its DeepZ lines
                         (the conv's bounds are exact intervals), noise e ~ U[-1, 1], 7 sign
                         steps of 0.25 on e maximising the CE of the layers after it, CE at the
                         latent point, backward through those layers (the conv frozen), Adam.
  train-crown-conv       full CROWN on paradox CONV, batch 100 (stream 5), eps 0.1: every ReLU
  train-deepz-conv       input bounded by back-substitution (DeepZ: parallel lower lines), the
                         margins' lower bound, robust CE, backward, Adam. With --impl lirpa the
                         same through auto_LiRPA (compute_bounds(method="backward"), DeepZ as
                         its "same-slope" option).

Usage: python3 scripts/bench_methods_torch.py [--threads 2] [--iters 10] [--warmup 2] [--impl plain[,lirpa]] [--json]
Prints one JSON line per workload and implementation, as `ironbound bench --json` does, with
"impl" "plain" or "lirpa" (the one-step and COLT steps have no auto_LiRPA form).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.environ.get("IRONBOUND_BENCH_DIR", os.path.join(HERE, "..", "..", "shared", "bench"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workload", default="train-onestep-dmsmall,train-colt-dmsmall")
    ap.add_argument("--impl", default="plain", help="plain, lirpa or plain,lirpa (CONV workloads only for lirpa)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, REFERENCE)
    import torch
    import torch.nn.functional as F
    import torch_reference as ref

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    eps, batch = 0.1, 256
    wl = ref.WORKLOADS["train-crownibp-dmsmall"]

    def setup():
        net = ref.build_net(wl["arch"])
        x, y = ref.make_data(wl["arch"], batch, wl["stream"])
        C = ref.spec_matrix(y)
        shapes = ref.layer_input_shapes(net, ref.ARCHS[wl["arch"]]["input"])
        return net, list(net), x, y, C, shapes

    def onestep():
        net, layers, x, y, C, shapes = setup()
        params = list(net.parameters())
        relax = ref.relu_relax
        slopes = {}

        def with_slopes(l, u, mode):
            du, bu, dl = relax(l, u, "crown")
            return du, bu, slopes.get(id(l), dl)

        ref.relu_relax = with_slopes

        def bound(pre):
            last = layers[-1]
            lb, _ = ref.backward(layers, shapes, len(layers) - 1, pre, xl, xu, C.matmul(last.weight), C.matmul(last.bias),
                                 lower=True, upper=False, mode="crown")
            return lb

        xl, xu = ref.input_box(x, eps)

        def loss():
            with torch.no_grad():
                net(x)  # clean logits (metric only)
            _, _, pre = ref.ibp(layers, xl, xu, stop_at_last_relu=True)
            start = {i: torch.rand_like(l) for i, (l, u) in pre.items()}
            detached = {i: (l.detach(), u.detach()) for i, (l, u) in pre.items()}
            a = {i: s.clone().requires_grad_() for i, s in start.items()}
            slopes.clear()
            for i, (l, _) in detached.items():
                slopes[id(l)] = a[i]
            grads = torch.autograd.grad(ref.robust_ce(bound(detached)), [a[i] for i in a], allow_unused=True)
            slopes.clear()
            for (i, (l, _)), g in zip(pre.items(), grads):
                g = torch.zeros_like(start[i]) if g is None else g
                slopes[id(l)] = (start[i] - g.sign()).clamp(0, 1).detach()
            return ref.robust_ce(bound(pre))

        return params, loss

    def colt():
        net, layers, x, y, C, shapes = setup()
        prefix, suffix = layers[:2], torch.nn.Sequential(*layers[2:])
        for p in prefix[0].parameters():
            p.requires_grad_(False)
        params = list(suffix.parameters())
        conv = prefix[0]
        xl, xu = ref.input_box(x, eps)

        def loss():
            with torch.no_grad():
                net(x)  # clean logits (metric only)
                _, _, pre = ref.ibp(prefix, xl, xu, stop_at_last_relu=True)
                l, u = pre[1]
                unstable = (l < 0) & (u > 0)
                lam = torch.where(unstable, u / (u - l), (l >= 0).to(l))
                mu = torch.where(unstable, -l * u / (2 * (u - l)), torch.zeros_like(l))
                c, r = (xl + xu) / 2, (xu - xl) / 2
            e0 = torch.rand_like(x) * 2 - 1
            e1 = torch.rand_like(l) * 2 - 1

            def point(e0, e1):
                return lam * conv(c + r * e0) + mu + mu * e1

            for _ in range(7):
                e0.requires_grad_(True)
                e1.requires_grad_(True)
                g0, g1 = torch.autograd.grad(F.cross_entropy(suffix(point(e0, e1)), y, reduction="sum"), [e0, e1])
                with torch.no_grad():
                    e0 = (e0 + 0.25 * g0.sign()).clamp(-1, 1)
                    e1 = (e1 + 0.25 * g1.sign()).clamp(-1, 1)
            with torch.no_grad():
                p = point(e0, e1)
            return F.cross_entropy(suffix(p), y)

        return params, loss

    def full_backsub(mode, impl):
        """A full CROWN (mode "crown") or DeepZ ("deepz") training step on paradox CONV."""
        net = ref.build_net("conv")
        x, y = ref.make_data("conv", 100, 5)
        C = ref.spec_matrix(y)
        xl, xu = ref.input_box(x, eps)
        if impl == "lirpa":
            BoundedModule, BoundedTensor, PerturbationLpNorm = ref._import_lirpa()
            opts = {"activation_bound_option": "same-slope"} if mode == "deepz" else {}
            model = BoundedModule(net, torch.empty_like(x), bound_opts=opts, device="cpu")
            model.train()
            bx = BoundedTensor(x, PerturbationLpNorm(norm=float("inf"), eps=eps, x_L=xl, x_U=xu))

            def loss():
                model(bx)  # clean logits (metric only)
                lb, _ = model.compute_bounds(C=C, method="backward", bound_upper=False)
                return ref.robust_ce(lb)

            return list(model.parameters()), loss
        layers = list(net)
        shapes = ref.layer_input_shapes(net, ref.ARCHS["conv"]["input"])

        def loss():
            with torch.no_grad():
                net(x)  # clean logits (metric only)
            lb, _ = ref.full_backsub(layers, shapes, xl, xu, C, mode)
            return ref.robust_ce(lb)

        return list(net.parameters()), loss

    steps = {
        ("train-onestep-dmsmall", "plain"): onestep,
        ("train-colt-dmsmall", "plain"): colt,
        ("train-crown-conv", "plain"): lambda: full_backsub("crown", "plain"),
        ("train-crown-conv", "lirpa"): lambda: full_backsub("crown", "lirpa"),
        ("train-deepz-conv", "plain"): lambda: full_backsub("deepz", "plain"),
        ("train-deepz-conv", "lirpa"): lambda: full_backsub("deepz", "lirpa"),
    }
    for name, impl in [(n, i) for n in args.workload.split(",") for i in args.impl.split(",")]:
        if (name, impl) not in steps:
            if impl == "plain":
                sys.exit(f"unknown workload '{name}'")
            continue
        params, loss = steps[(name, impl)]()
        opt = torch.optim.Adam(params, lr=ref.LR)
        initial = [p.detach().clone() for p in params]
        times = []
        for it in range(args.warmup + args.iters):
            with torch.no_grad():
                for p, p0 in zip(params, initial):
                    p.copy_(p0)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            value = loss()
            value.backward()
            opt.step()
            assert torch.isfinite(value)
            if it >= args.warmup:
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        line = {"workload": name, "ms_median": times[len(times) // 2], "ms_min": times[0], "iters": args.iters, "threads": args.threads, "impl": impl}
        print(json.dumps(line) if args.json else f"{name}: median {line['ms_median']:.1f} ms, min {line['ms_min']:.1f} ms")


if __name__ == "__main__":
    main()
