#!/usr/bin/env bash
# The float-sound bounds of every relaxation against the real-valued network (evaluated in
# f64) at many sampled points: `tests/bounds_sound.rs`'s two sweeps, scaled up (POINTS each;
# the every-layer sweep adds PGD points). A failure saves a reproducible case under
# target/tmp/soundness-failures/.
#
#   scripts/soundness_sweep.sh            # 10^6 points per sweep
#   scripts/soundness_sweep.sh 100000
set -euo pipefail
cd "$(dirname "$0")/.."
export IRONBOUND_SWEEP_POINTS="${1:-1000000}"
start=$(date +%s)
# The dev profile: dependencies are optimised anyway (Cargo.toml), and it reuses the test build.
cargo test --workspace --test bounds_sound -- sweep_every_sound_bound --nocapture
echo "soundness sweep: $IRONBOUND_SWEEP_POINTS points in $(( $(date +%s) - start )) s" >&2
