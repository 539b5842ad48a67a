#!/usr/bin/env python3
"""ironbound against both PyTorch peers, side by side in one run (issue 13's table).

For every workload and thread count it runs, back to back so that machine noise hurts all
three alike, `ironbound bench` and `shared/bench/torch_reference.py --impl plain` and
`--impl lirpa` (auto_LiRPA), each in a process of its own so that its peak RSS is that
workload's alone. Prints a Markdown table (median ms, the ratio against the better peer,
peak RSS) and writes every measurement as JSON lines.

    python3 scripts/bench_peers.py --python /work/venv-torch/bin/python \\
        [--threads 2,1] [--workload A,B] [--iters 3] [--warmup 1] [--out bench.jsonl]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

WORKLOADS = [
    "train-natural-dmsmall", "train-ibp-dmsmall", "train-crownibp-dmsmall",
    "train-crownibp-dmlarge-cifar", "bounds-crown-fc5", "bounds-crown-conv",
    "bounds-deepz-fc5", "attack-pgd40-dmsmall",
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    """(the JSON line of one workload or None, peak RSS in MB, stderr tail)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0)
        err.seek(0)
        lines = [l for l in out.read().decode().splitlines() if l.startswith("{")]
        tail = err.read().decode().strip().splitlines()[-1:] or [""]
    ok = os.waitstatus_to_exitcode(status) == 0 and lines
    return (json.loads(lines[-1]) if ok else None), usage.ru_maxrss / 1024.0, tail[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="the Python with torch and auto_LiRPA")
    p.add_argument("--ironbound", default=os.path.join(ROOT, "target/release/ironbound"))
    p.add_argument("--reference", default=os.path.join(ROOT, "../shared/bench/torch_reference.py"))
    p.add_argument("--threads", default="2,1")
    p.add_argument("--workload", default=",".join(WORKLOADS))
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", help="write every measurement here as JSON lines")
    a = p.parse_args()
    common = ["--iters", str(a.iters), "--warmup", str(a.warmup), "--json"]
    rows, records = [], []
    for w in a.workload.split(","):
        for t in [int(x) for x in a.threads.split(",")]:
            cmds = {
                "ironbound": [a.ironbound, "bench", "--workload", w, "--threads", str(t)] + common,
                "plain": [a.python, a.reference, "--impl", "plain", "--workload", w, "--threads", str(t)] + common,
                "lirpa": [a.python, a.reference, "--impl", "lirpa", "--workload", w, "--threads", str(t)] + common,
            }
            got = {}
            for impl, cmd in cmds.items():
                line, rss, err = run(cmd)
                got[impl] = (line["ms_median"] if line else None, rss)
                records.append({"workload": w, "threads": t, "impl": impl, "ms_median": got[impl][0],
                                "ms_min": line["ms_min"] if line else None, "peak_rss_mb": rss,
                                "error": None if line else err})
                print(f"{w} T={t} {impl}: {got[impl][0]} ms, {rss:.0f} MB {'' if line else err}", file=sys.stderr)
            peers = [got[k] for k in ("plain", "lirpa") if got[k][0] is not None]
            best = min(peers, key=lambda g: g[0]) if peers else (None, None)
            mine = got["ironbound"]
            ratio = mine[0] / best[0] if mine[0] and best[0] else None
            rss_ratio = mine[1] / min(g[1] for g in peers) if peers else None
            rows.append((w, t, mine, got["plain"], got["lirpa"], ratio, rss_ratio))
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"
    print("| workload | T | ironbound ms | PyTorch ms | auto_LiRPA ms | ratio to the better | peak RSS MB (ours / plain / lirpa) | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for w, t, mine, plain, lirpa, ratio, rss_ratio in rows:
        print(f"| {w} | {t} | {fmt(mine[0])} | {fmt(plain[0])} | {fmt(lirpa[0])} | "
              f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {mine[1]:.0f} / {plain[1]:.0f} / {lirpa[1]:.0f} | "
              f"{'n/a' if rss_ratio is None else f'{rss_ratio:.2f}'} |")
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
