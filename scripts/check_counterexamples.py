#!/usr/bin/env python3
"""Checks ironbound's `sat` answers independently: every counterexample must lie in the
property's input box and satisfy its output constraints when the ONNX model is run by
onnxruntime (tolerance 1e-4, as VNN-COMP checks them).

    python3 scripts/check_counterexamples.py --results results.csv --bench DIR [--ironbound BIN]

`results.csv` is what `ironbound verify --instances DIR/instances.csv --out results.csv`
wrote; every `sat` row is decided again with `--out` to get its counterexample, which is then
evaluated here with onnxruntime and a small VNN-LIB evaluator of our own (s-expressions with
and / or / <= / >= / + / - / * over X_i, Y_j and numbers). Needs numpy and onnxruntime.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

TOL = 1e-4


def tokens(text):
    for line in text.splitlines():
        line = line.split(";", 1)[0]
        for t in line.replace("(", " ( ").replace(")", " ) ").split():
            yield t


def parse(text):
    stack = [[]]
    for t in tokens(text):
        if t == "(":
            stack.append([])
        elif t == ")":
            e = stack.pop()
            stack[-1].append(e)
        else:
            stack[-1].append(t)
    return stack[0]


def value(term, env):
    if isinstance(term, list):
        op, args = term[0], [value(a, env) for a in term[1:]]
        if op == "+":
            return sum(args)
        if op == "-":
            return -args[0] if len(args) == 1 else args[0] - sum(args[1:])
        if op == "*":
            return float(np.prod(args))
        if op == "/":
            return args[0] / args[1]
        raise ValueError(f"unknown term {op}")
    return env[term] if term in env else float(term)


def holds(f, env):
    op = f[0]
    if op == "and":
        return all(holds(g, env) for g in f[1:])
    if op == "or":
        return any(holds(g, env) for g in f[1:])
    a, b = value(f[1], env), value(f[2], env)
    if op in ("<=", "<"):
        return a <= b + TOL
    if op in (">=", ">"):
        return a >= b - TOL
    raise ValueError(f"unknown formula {op}")


def check(onnx_path, vnnlib_path, cex):
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.array(cex["x"], dtype=np.float32).reshape(shape)
    y = sess.run(None, {inp.name: x})[0].reshape(-1).astype(np.float64)
    env = {f"X_{i}": float(v) for i, v in enumerate(x.reshape(-1))}
    env.update({f"Y_{j}": float(v) for j, v in enumerate(y)})
    with open(vnnlib_path) as fh:
        asserts = [e[1] for e in parse(fh.read()) if isinstance(e, list) and e and e[0] == "assert"]
    ok = all(holds(a, env) for a in asserts)
    return ok, float(np.abs(y - np.array(cex["y"])).max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--bench", required=True, help="directory the instances.csv paths are relative to")
    ap.add_argument("--ironbound", default="ironbound")
    a = ap.parse_args()
    bad = checked = 0
    with open(a.results) as fh:
        rows = [r for r in csv.DictReader(fh) if r["result"] == "sat"]
    for r in rows:
        onnx_path, prop = os.path.join(a.bench, r["onnx"]), os.path.join(a.bench, r["vnnlib"])
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            subprocess.run([a.ironbound, "verify", "--model", onnx_path, "--property", prop, "--timeout", "300", "--out", out], check=True, capture_output=True)
            res = json.load(open(out))
        if res["result"] != "sat":
            print(f"{r['onnx']} {r['vnnlib']}: second run answered {res['result']}")
            continue
        ok, dy = check(onnx_path, prop, res["counterexample"])
        checked += 1
        bad += not ok
        print(f"{r['onnx']} {r['vnnlib']}: {'ok' if ok else 'NOT A COUNTEREXAMPLE'} (max |y_ort - y_ironbound| = {dy:.2e})")
    print(f"{checked} counterexamples checked, {bad} invalid")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
