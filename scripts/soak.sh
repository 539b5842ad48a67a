#!/usr/bin/env bash
# Soak test of `ironbound certify` and `ironbound bounds`: ROUNDS rounds (default 50) of four
# back-to-back runs each:
#   - the same `bounds` command (CROWN margins of the committed FC-SMALL on 64 inputs),
#   - the same `certify` command (IBP and CROWN on 50 images, the committed CONV model),
#   - one random valid run (model, method, eps, N, --labels, --clip, --sound, --pgd, --fast,
#     --shard drawn at random): it must exit 0 and write its output,
#   - one random invalid run (wrong shape, corrupt or truncated .npy/.onnx/IDX, NaN input,
#     labels out of range, a model for other inputs, unknown method or dataset, bad eps or
#     shard): it must exit 2 with exactly one line on stderr and leave no output file.
# Peak RSS of every run comes from GNU time (`/usr/bin/time -f %M`, the "Maximum resident set
# size" of `-v`); for each of the two repeated commands the maximum over the last 10 rounds
# must be within 10% of the maximum over the first 10. No temporary file may be left behind.
# The data are synthetic (Fashion-MNIST-shaped IDX files and .npy inputs written by python3).
#
#   scripts/soak.sh                       # 50 rounds, `ironbound` from PATH
#   scripts/soak.sh 5                     # a quick smoke run
#   IRONBOUND=target/release/ironbound SOAK_SEED=7 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-50}
bin=${IRONBOUND:-ironbound}
RANDOM=${SOAK_SEED:-1}
command -v "$bin" >/dev/null || { echo "soak: $bin not found (set IRONBOUND=path/to/ironbound)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "soak: needs GNU time in /usr/bin/time (apt-get install time)" >&2; exit 1; }
fc=results/fcsmall-pgd-eps0.1-lp-milp/model.onnx
conv=results/paradox-fashion-mnist-conv-ibp/model.onnx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Writes the synthetic inputs: `gen.py npy PATH N C H W SEED [nan]`, `gen.py labels PATH N
# SEED [bad]`, `gen.py idx DIR N SEED` (t10k and train IDX files), `gen.py junk PATH N SEED`.
cat >"$work/gen.py" <<'EOF'
import os, random, struct, sys
kind, path = sys.argv[1], sys.argv[2]
def npy(path, descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join(f"{d}, " for d in shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload)
if kind == "npy":
    n, c, h, w, seed = map(int, sys.argv[3:8])
    r = random.Random(seed)
    values = [r.random() for _ in range(n * c * h * w)]
    if sys.argv[8:] == ["nan"]:
        values[r.randrange(len(values))] = float("nan")
    npy(path, "<f4", (n, c, h, w), struct.pack(f"<{len(values)}f", *values))
elif kind == "labels":
    n, seed = map(int, sys.argv[3:5])
    r = random.Random(seed)
    labels = [r.randrange(10) for _ in range(n)]
    if sys.argv[5:] == ["bad"]:
        labels[r.randrange(n)] = r.choice([10, -1, 1 << 40])
    npy(path, "<i8", (n,), struct.pack(f"<{n}q", *labels))
elif kind == "idx":
    n, seed = map(int, sys.argv[3:5])
    r = random.Random(seed)
    os.makedirs(path, exist_ok=True)
    for prefix in ("t10k", "train"):
        labels = bytes(r.randrange(10) for _ in range(n))
        images = bytes(r.randrange(256) for _ in range(n * 784))
        with open(f"{path}/{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", n, 28, 28) + images)
        with open(f"{path}/{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + labels)
elif kind == "junk":
    n, seed = map(int, sys.argv[3:5])
    with open(path, "wb") as f:
        f.write(random.Random(seed).randbytes(n))
EOF
gen() { python3 "$work/gen.py" "$@"; }
# pick VAR CHOICES...: one at random into VAR (no subshell: those would reseed $RANDOM).
pick() {
    local -n into=$1
    shift
    local choices=("$@")
    into=${choices[RANDOM % ${#choices[@]}]}
}
truncated() { head -c "$2" "$1" >"$3"; } # FILE BYTES OUT

data=$work/data
gen idx "$data/fashion-mnist" 200 1
gen npy "$work/fixed.npy" 64 1 28 28 1
gen labels "$work/fixed-labels.npy" 64 2
# A model of CIFAR-10's input shape (native file), for a model/data shape mismatch.
"$bin" init --arch fc-small --dataset cifar10 --out "$work/cifar.safetensors" 2>/dev/null

failures=0
runs=0
declare -a rss_bounds rss_certify
max_valid=0
max_invalid=0
last_rss=0

# check EXPECT OUT ARGS...: runs `ironbound ARGS`, checks the contract for EXPECT (0: success
# and OUT written; 2: exactly one stderr line, no OUT) and leaves the peak RSS in last_rss (KiB).
check() {
    local expect=$1 out=$2
    shift 2
    rm -f "$out"
    local code=0
    /usr/bin/time -f %M -o "$work/rss" "$bin" "$@" >"$work/stdout" 2>"$work/stderr" || code=$?
    last_rss=$(tail -n 1 "$work/rss")
    runs=$((runs + 1))
    local problem=""
    if [ "$code" != "$expect" ]; then
        problem="exit $code, expected $expect"
    elif [ "$expect" = 0 ] && [ ! -s "$out" ]; then
        problem="no output file"
    elif [ "$expect" = 2 ] && [ "$(wc -l <"$work/stderr")" != 1 ]; then
        problem="$(wc -l <"$work/stderr") lines on stderr"
    elif [ "$expect" = 2 ] && [ -e "$out" ]; then
        problem="an output file was left behind"
    fi
    if [ -n "$problem" ]; then
        failures=$((failures + 1))
        echo "FAIL ($problem): ironbound $*" >&2
        sed 's/^/    /' "$work/stderr" | head -n 5 >&2
    fi
}

valid_run() {
    local out=$work/valid.out
    if [ $((RANDOM % 2)) = 0 ]; then
        local n=$((1 + RANDOM % 32))
        gen npy "$work/x.npy" "$n" 1 28 28 "$RANDOM"
        local model eps method
        pick model "$fc" "$conv"
        pick eps 0 0.001 0.01 0.05 0.1 0.3
        pick method ibp hbox deepz crown crown-0 crown-ibp cap-ibp random-slope
        local args=(bounds --model "$model" --input "$work/x.npy" --eps "$eps" --method "$method")
        [ $((RANDOM % 2)) = 0 ] && { gen labels "$work/y.npy" "$n" "$RANDOM"; args+=(--labels "$work/y.npy"); }
        [ $((RANDOM % 2)) = 0 ] && args+=(--clip 0 1)
        [ $((RANDOM % 2)) = 0 ] && args+=(--sound)
        check 0 "$out.npz" "${args[@]}" --out "$out.npz"
    else
        local model eps method
        pick model "$fc" "$conv"
        pick eps 0.01 0.05 0.1
        pick method ibp crown crown-ibp,ibp deepz,hbox cap-ibp
        local args=(certify --model "$model" --dataset fashion-mnist --data-dir "$data" --n $((5 + RANDOM % 40)) --eps "$eps" --method "$method")
        [ $((RANDOM % 3)) = 0 ] && args+=(--pgd 5)
        [ $((RANDOM % 3)) = 0 ] && args+=(--fast)
        [ $((RANDOM % 3)) = 0 ] && args+=(--shard "$((1 + RANDOM % 3))/3")
        check 0 "$out.json" "${args[@]}" --out "$out.json"
    fi
    [ "$last_rss" -gt "$max_valid" ] && max_valid=$last_rss
    return 0
}

invalid_run() {
    local out=$work/invalid.out x=$work/bad.npy model=$fc
    local n=$((1 + RANDOM % 8)) eps=0.05 method=crown extra=()
    gen npy "$x" "$n" 1 28 28 "$RANDOM"
    local kind value
    pick kind shape cifar-model junk-npy truncated-npy nan method eps labels labels-count junk-model truncated-model \
        missing-model certify-method certify-eps certify-dataset certify-model certify-shard certify-idx certify-shape
    case $kind in
        shape) pick value 1 3; gen npy "$x" "$n" "$value" 27 28 "$RANDOM" ;;
        junk-npy) gen junk "$x" $((1 + RANDOM % 4000)) "$RANDOM" ;;
        truncated-npy) truncated "$work/fixed.npy" $((RANDOM % 8000)) "$x" ;;
        nan) gen npy "$x" "$n" 1 28 28 "$RANDOM" nan ;;
        method) pick method crown-foo "" IBP+ milp2 'crown,ibp' ;;
        eps) pick eps -0.1 nan inf abc 1e999 '' ;;
        labels) gen labels "$work/y.npy" "$n" "$RANDOM" bad; extra=(--labels "$work/y.npy") ;;
        labels-count) gen labels "$work/y.npy" $((n + 1)) "$RANDOM"; extra=(--labels "$work/y.npy") ;;
        junk-model) model=$work/junk.onnx; gen junk "$model" $((1 + RANDOM % 20000)) "$RANDOM" ;;
        truncated-model) model=$work/cut.onnx; truncated "$conv" $((RANDOM * 30 % 1260000)) "$model" ;;
        missing-model) model=$work/missing.onnx ;;
        cifar-model) model=$work/cifar.safetensors ;;
    esac
    case $kind in
        certify-*)
            local dataset=fashion-mnist dir=$data shard=()
            model=$conv method=ibp
            case $kind in
                certify-method) pick method colt2 crown-foo lp-hexagon ;;
                certify-eps) pick eps -1 nan x 2e308 ;;
                certify-dataset) pick dataset imagenet fashion mnist-c ;;
                certify-model) model=$work/junk.onnx; gen junk "$model" $((1 + RANDOM % 20000)) "$RANDOM" ;;
                certify-shape) model=$work/cifar.safetensors ;;
                certify-shard) pick value 0/3 4/3 1/0 a/b 2; shard=(--shard "$value") ;;
                certify-idx)
                    dir=$work/baddata
                    mkdir -p "$dir/fashion-mnist"
                    cp "$data"/fashion-mnist/* "$dir/fashion-mnist/"
                    truncated "$data/fashion-mnist/t10k-images-idx3-ubyte" $((RANDOM % 150000)) "$dir/fashion-mnist/t10k-images-idx3-ubyte" ;;
            esac
            local args=(certify --model "$model" --dataset "$dataset" --data-dir "$dir" --n 10 --eps "$eps" --method "$method" "${shard[@]}")
            check 2 "$out.json" "${args[@]}" --out "$out.json"
            ;;
        *) check 2 "$out.npz" bounds --model "$model" --input "$x" --eps "$eps" --method "$method" "${extra[@]}" --out "$out.npz" ;;
    esac
    [ "$last_rss" -gt "$max_invalid" ] && max_invalid=$last_rss
    return 0
}

start=$(date +%s)
for ((i = 1; i <= rounds; i++)); do
    check 0 "$work/fixed.npz" bounds --model "$fc" --input "$work/fixed.npy" --labels "$work/fixed-labels.npy" --eps 0.05 --method crown --out "$work/fixed.npz"
    rss_bounds+=("$last_rss")
    check 0 "$work/fixed.json" certify --model "$conv" --dataset fashion-mnist --data-dir "$data" --n 50 --eps 0.05 --method ibp,crown --out "$work/fixed.json"
    rss_certify+=("$last_rss")
    valid_run
    invalid_run
done
seconds=$(($(date +%s) - start))
leftovers=$(find "$work" -name '.*.tmp*' | wc -l)
[ "$leftovers" = 0 ] || { echo "FAIL: $leftovers temporary files left behind" >&2; failures=$((failures + 1)); }

# flat NAME VALUES...: the maximum of the last 10 against the first 10 (or fewer, for short runs).
flat() {
    local name=$1
    shift
    local all=("$@") k=$(($# < 10 ? $# : 10))
    local first last
    first=$(printf '%s\n' "${all[@]:0:k}" | sort -n | tail -n 1)
    last=$(printf '%s\n' "${all[@]: -k}" | sort -n | tail -n 1)
    local ok=yes
    [ $((last * 10)) -le $((first * 11)) ] || { ok=no; failures=$((failures + 1)); }
    echo "  $name: peak RSS first $k runs max $first KiB, last $k runs max $last KiB ($(awk "BEGIN {printf \"%+.1f\", ($last - $first) * 100 / $first}")%), flat: $ok"
}
echo "soak: $rounds rounds, $runs runs in $seconds s (seed ${SOAK_SEED:-1})"
flat "bounds  (repeated)" "${rss_bounds[@]}"
flat "certify (repeated)" "${rss_certify[@]}"
echo "  random valid runs: peak RSS max $max_valid KiB; random invalid runs: peak RSS max $max_invalid KiB"
echo "  failures: $failures"
[ "$failures" = 0 ]
