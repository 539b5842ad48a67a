#!/usr/bin/env bash
# The Python package's tests: builds the wheel (maturin, dev profile), installs it into a fresh
# virtual environment in target/pyvenv, and runs pytest on tests/python against the CLI binary.
#
#   bash scripts/python-tests.sh [PYTEST ARGS...]
#
# The dev profile compiles dependencies at opt-level 3 (Cargo.toml), so the wheel reuses what
# `cargo test --workspace` already built in target/ instead of a ~20 minute release build of
# burn. The CLI compared against is $IRONBOUND_BIN, else target/debug/ironbound (built here
# when missing), else target/release/ironbound.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=target/pyvenv
WHEELS=target/pywheels

# A fresh environment each run, so that nothing installed by hand hides a missing dependency.
rm -rf "$VENV" "$WHEELS"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "maturin>=1.9,<2.0" -r tests/python/requirements.txt

if [ -z "${IRONBOUND_BIN:-}" ] && [ ! -x target/debug/ironbound ] && [ ! -x target/release/ironbound ]; then
  cargo build --locked -p ironbound-cli
fi

start=$(date +%s)
# --auditwheel skip: a local test build, not a wheel for distribution (the manylinux check
# would only look at which system libraries it links).
"$VENV/bin/maturin" build --locked --profile dev --auditwheel skip --interpreter "$VENV/bin/python" --out "$WHEELS"
echo "python-tests: wheel built in $(( $(date +%s) - start )) s" >&2
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" ironbound

# Run from tests/python so that `import ironbound` finds the installed wheel, never python/.
cd tests/python
exec "../../$VENV/bin/python" -m pytest -q "$@"
