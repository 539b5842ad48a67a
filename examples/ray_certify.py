"""Certify a model on a Ray cluster: one Ray task per shard, merged as `ironbound merge` does.

    ray start --head --num-cpus 4            # or any existing cluster
    python examples/ray_certify.py --address auto --model results/fcsmall-pgd-eps0.1-lp-milp/model.onnx \\
        --n 1000 --shards 4 --eps 0.05 --methods ibp,crown --pgd 10 --out runs/ray-certify

Every task certifies one shard through the Python package: `ironbound.certify(...,
shard=(I, N))` evaluates the I-th of N contiguous, nearly equal slices of the first N test
images, exactly as `ironbound certify --shard I/N` does (same library call, same batches, same
per-sample seeds). The driver writes each shard's report to OUT/shard-I-of-N.json as it
arrives, then `ironbound.merge` (the library function behind `ironbound merge`) turns them into
OUT/report.json, the report one unsharded `ironbound certify` run writes (only `seconds`
differ: they are summed over the shards).

Failures are Ray's to handle: a task whose worker process dies (killed, out of memory, node
lost) is rerun by Ray (`max_retries`), and since a shard is a pure function of its inputs the
rerun's report is the same. Each attempt is logged (`shard I/N: attempt K started ...`) and
listed in OUT/attempts.json. An error raised by ironbound itself (bad model, unknown method) is
not retried: it is printed on one line and the script exits with code 2.

The model file and the images travel through Ray's object store, so worker nodes need neither a
shared filesystem nor the dataset, only `pip install ray ironbound`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import ray

import ironbound


@ray.remote(num_cpus=0)
class Attempts:
    """Where the shard tasks say that they started, so that the driver can log retries."""

    def __init__(self) -> None:
        self.log: List[Dict[str, Any]] = []

    def started(self, shard: int, pid: int, node: str) -> None:
        self.log.append({"shard": shard, "attempt": sum(a["shard"] == shard for a in self.log) + 1, "pid": pid, "node": node, "time": time.time()})

    def since(self, k: int) -> List[Dict[str, Any]]:
        return self.log[k:]


@ray.remote
def certify_shard(index: int, count: int, model_bytes: bytes, model_name: str, x, y, eps: float, methods: str, options: Dict[str, Any], attempts) -> Dict[str, Any]:
    """Shard `index` of `count`: the report of `ironbound certify --shard index/count`."""
    ray.get(attempts.started.remote(index, os.getpid(), ray.get_runtime_context().get_node_id()))
    with tempfile.TemporaryDirectory(prefix="ironbound-ray-") as d:
        path = Path(d) / model_name  # keeps the suffix (.onnx / .safetensors) that tells the format
        path.write_bytes(model_bytes)
        model = ironbound.load(path)
    return ironbound.certify(model, x, y, eps, methods=methods, shard=(index, count), **options)


def write_json(path: Path, value: Any) -> None:
    """Atomically: a killed driver never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster (host:port or 'auto'; default $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--model", required=True, type=Path, help=".onnx or native .safetensors model")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=1000, help="certify the first N samples (default 1000)")
    p.add_argument("--shards", type=int, default=4, help="number of shards = Ray tasks (default 4)")
    p.add_argument("--eps", type=float, required=True)
    p.add_argument("--methods", default="ibp,crown", help="comma-separated `ironbound certify --method` names")
    p.add_argument("--pgd", type=int, default=None, help="also run PGD with this many steps")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the random slopes (one-step, random-slope)")
    p.add_argument("--cpus-per-task", type=int, default=1, help="Ray CPUs per task, and ironbound's threads in it")
    p.add_argument("--max-retries", type=int, default=3, help="Ray reruns of a task whose worker died")
    p.add_argument("--out", required=True, type=Path, help="directory for shard-I-of-N.json, report.json, attempts.json")
    a = p.parse_args(argv)
    if not 1 <= a.shards <= a.n:
        print(f"ray_certify: --shards {a.shards}: expected 1 <= shards <= n = {a.n}", file=sys.stderr)
        return 2
    options = {"pgd": a.pgd, "batch_size": a.batch_size, "seed": a.seed}
    try:
        model_bytes = a.model.read_bytes()
        model = ironbound.load(a.model)
        x, y = ironbound.dataset(a.dataset, a.split, n=a.n)
        # Every argument checked once, here (certify on no samples), so that a bad model, method
        # or eps fails before any task starts.
        ironbound.certify(model, x[:0], y[:0], a.eps, methods=a.methods, **options)
    except (OSError, ValueError, TypeError) as e:
        print(f"ray_certify: {e}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)

    ray.init(address=a.address, log_to_driver=False)
    attempts = Attempts.remote()
    task = certify_shard.options(
        num_cpus=a.cpus_per_task,
        max_retries=a.max_retries,
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(a.cpus_per_task)}},
    )
    model_ref, x_ref, y_ref = ray.put(model_bytes), ray.put(x), ray.put(y)
    t0 = time.time()
    pending = {task.remote(i, a.shards, model_ref, a.model.name, x_ref, y_ref, a.eps, a.methods, options, attempts): i for i in range(1, a.shards + 1)}
    print(f"ray_certify: {a.n} {a.dataset} {a.split} samples in {a.shards} shards on {ray.cluster_resources().get('CPU', 0):g} CPUs", flush=True)
    shard_files: Dict[int, Path] = {}
    log: List[Dict[str, Any]] = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
        for event in ray.get(attempts.since.remote(len(log))):
            log.append(event)
            print(f"shard {event['shard']}/{a.shards}: attempt {event['attempt']} started (pid {event['pid']}, node {event['node'][:12]})", flush=True)
        for ref in done:
            i = pending.pop(ref)
            try:
                report = ray.get(ref)
            except ray.exceptions.RayError as e:  # an error in the task, retries exhausted, node lost
                cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and isinstance(e.cause, Exception) else e
                print(f"ray_certify: shard {i}/{a.shards}: {type(cause).__name__}: {str(cause).strip().splitlines()[0]}", file=sys.stderr)
                # The other shards are of no use now; their errors would only repeat this one.
                for other in pending:
                    ray.cancel(other, force=True)
                os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
                return 2 if isinstance(cause, (ValueError, TypeError)) else 1
            shard_files[i] = a.out / f"shard-{i}-of-{a.shards}.json"
            write_json(shard_files[i], report)
            s = report["shard"]
            print(f"shard {i}/{a.shards}: samples {s['start']}..{s['end']} done: clean {report['clean_accuracy']:.4f}, certified {report['certified_accuracy']}", flush=True)
    # Late attempt events (none expected: every task logged before it returned).
    log.extend(ray.get(attempts.since.remote(len(log))))
    write_json(a.out / "attempts.json", log)
    merged = ironbound.merge([shard_files[i] for i in sorted(shard_files)], out=a.out / "report.json")
    retried = sorted({e["shard"] for e in log if e["attempt"] > 1})
    print(
        f"merged {a.shards} shards in {time.time() - t0:.1f} s into {a.out / 'report.json'}: n={merged['n']} clean={merged['clean_accuracy']:.4f} "
        + " ".join(f"{k}={v:.4f}" for k, v in merged["certified_accuracy"].items())
        + (f" pgd={merged['pgd_accuracy']:.4f}" if "pgd_accuracy" in merged else "")
        + (f" (retried by Ray: shards {', '.join(f'{i}/{a.shards}' for i in retried)})" if retried else ""),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
