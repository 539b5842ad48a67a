#!/usr/bin/env bash
# Runs every fuzz harness of the readers of user input (issue 14, item 4) long, in release
# mode, and prints the inputs and seconds per reader:
#   fuzz_readers.rs: npy/npz, IDX raw and gz, CIFAR-10, SVHN .mat, ONNX, native safetensors,
#                    TOML configs and --set values
#   torch_fuzz.rs:   PyTorch checkpoints (three properties, each with the given count)
#   vnnlib.rs:       VNN-LIB properties (fuzz_never_panics)
#
#   scripts/fuzz.sh            # 100000 inputs per reader
#   scripts/fuzz.sh 2000       # a quick pass
#   IRONBOUND_FUZZ_SEED=7 scripts/fuzz.sh   # another deterministic stream (fuzz_readers)
#
# Failing inputs of fuzz_readers are saved under target/fuzz-failures/; proptest prints the
# minimal failing input of the other two.
set -euo pipefail
cd "$(dirname "$0")/.."

export IRONBOUND_FUZZ_CASES="${1:-${IRONBOUND_FUZZ_CASES:-100000}}"
tests=(--test fuzz_readers --test torch_fuzz --test vnnlib_properties)
cargo test -p ironbound --release "${tests[@]}" --no-run

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

# One test at a time, so that each reader's seconds are its own.
if ! cargo test -p ironbound --release --test fuzz_readers -- --nocapture --test-threads=1 >"$log" 2>&1; then
    status=1
fi
grep -E '^fuzz |^[0-9]+ like |panicked' "$log" || true

timed() {
    local label=$1 inputs=$2
    shift 2
    local start end
    start=$(date +%s.%N)
    if ! cargo test -p ironbound --release "$@" >"$log" 2>&1; then
        status=1
        tail -n 40 "$log"
    fi
    end=$(date +%s.%N)
    printf 'fuzz %s: %s inputs in %s s (%s)\n' "$label" "$inputs" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" \
        "$(grep -E '^test result' "$log" | tail -n 1)"
}
timed torch "3 x $IRONBOUND_FUZZ_CASES" --test torch_fuzz -- --test-threads=1
timed vnnlib "$IRONBOUND_FUZZ_CASES" --test vnnlib_properties fuzz_never_panics -- --test-threads=1

exit $status
