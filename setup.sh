#!/usr/bin/env bash
# Sets up ironbound on a fresh Debian/Ubuntu machine: system packages (the Fashion-MNIST
# dataset package), a Rust toolchain if none is installed, and the `ironbound` binary in
# ~/.cargo/bin. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# cmake, a C++ compiler and libclang build HiGHS (the LP/MILP solver) from source; python3-venv
# and python3-pip are for the Python package (`pip install .` in a virtual environment).
PACKAGES="dataset-fashion-mnist build-essential pkg-config curl ca-certificates cmake libclang-dev python3-venv python3-pip"
missing=""
for p in $PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

echo "setup: building ironbound (release; a few minutes the first time)" >&2
cargo install --locked --quiet --path crates/ironbound-cli --root "$HOME/.cargo"
case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) echo "setup: add \$HOME/.cargo/bin to your PATH (e.g. export PATH=\"\$HOME/.cargo/bin:\$PATH\")" >&2 ;;
esac
echo "setup: done: $("$HOME/.cargo/bin/ironbound" --version)" >&2
