#!/usr/bin/env python3
"""Test-set d and r of the two 5-epoch models, without numpy.

    python3 measure_regularizers.py IRONBOUND N

writes x.npy / y.npy (the first N Fashion-MNIST test images in [0, 1] and their labels) into
a temporary directory, runs `IRONBOUND bounds --method deepz --eps 0.1 --clip 0 1 --labels
y.npy --regularizers` on reg-on/model.onnx and reg-off/model.onnx, and prints the mean over
the samples of sum_t d_t and sum_t r_t (the quantities metrics.jsonl logs per batch) and the
share of samples whose every margin bound is > 0.
"""
import gzip, io, json, os, struct, subprocess, sys, tempfile, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("IRONBOUND_DATA", "/usr/share/datasets/fashion-mnist")


def npy(path, shape, fmt, values):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (fmt, "".join(f"{s}, " for s in shape))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%d%s" % (len(values), "f" if fmt == "<f4" else "q"), *values))


def npz_f32(path, name):
    with zipfile.ZipFile(path) as z:
        raw = z.read(name + ".npy")
    hlen = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + hlen].decode()
    assert "<f4" in header, header
    body = raw[10 + hlen:]
    return struct.unpack("<%df" % (len(body) // 4), body)


def main():
    exe, n = sys.argv[1], int(sys.argv[2])
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")) as f:
        images = f.read()[16:16 + n * 784]
    with gzip.open(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = list(f.read()[8:8 + n])
    tmp = tempfile.mkdtemp()
    x, y = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    npy(x, (n, 1, 28, 28), "<f4", [b / 255.0 for b in images])
    npy(y, (n,), "<i8", labels)
    out = {}
    for run in ["reg-on", "reg-off"]:
        b = os.path.join(tmp, run + ".npz")
        subprocess.run([exe, "bounds", "--model", os.path.join(HERE, run, "model.onnx"), "--input", x, "--labels", y,
                        "--eps", "0.1", "--clip", "0", "1", "--method", "deepz", "--regularizers", "--out", b], check=True)
        d, r, m = npz_f32(b, "reg_d"), npz_f32(b, "reg_r"), npz_f32(b, "margin_lower")
        rows = lambda v: [v[i * 10:(i + 1) * 10] for i in range(n)]
        cert = sum(all(v > 0 for j, v in enumerate(row) if j != labels[i]) for i, row in enumerate(rows(m)))
        off = lambda v: [x for i, row in enumerate(rows(v)) for j, x in enumerate(row) if j != labels[i]]
        out[run] = {"n": n, "mean_sum_d": sum(d) / n, "mean_sum_r": sum(r) / n, "min_d": min(off(d)), "max_d": max(off(d)),
                    "zero_r_share": sum(v == 0.0 for v in off(r)) / (9 * n), "deepz_certified": cert / n}
    print(json.dumps(out, indent=1))


main()
