#!/usr/bin/env bash
# paradox tightness experiments B and C (CONV, PGD training at eps 0.1 / 0.3) on Fashion-MNIST
# on the shortened schedule of G and H (20 epochs of PGD-20, see results/tightness-g-*/README.md),
# then CR curves of the five relaxations on 1000 test images and, when LP_SAMPLES is given,
# with Triangle and Parallelogram on that many images (each LP sample's tightening is capped
# at --timeout 30 s, after which its bounds are valid but looser; 20 images take about an hour
# on one core). Usage: scripts/tightness_conv_pgd.sh b|c [LP_SAMPLES]
# Re-running the same command resumes training from its checkpoint and redoes the analyses.
set -euo pipefail
exp=${1:?usage: $0 b|c [LP_SAMPLES]}
lp_n=${2:-0}
case $exp in
  b) name=tightness-b-fashion-mnist-conv-pgd0.1; eps=0.1; eps_max=0.15 ;;
  c) name=tightness-c-fashion-mnist-conv-pgd0.3; eps=0.3; eps_max=0.4 ;;
  *) echo "unknown experiment '$exp' (b or c)" >&2; exit 2 ;;
esac
bin=${IRONBOUND:-ironbound}
out=runs/issue12/$name
methods=ibp,hbox,crown-ibp,deepz,crown
time_it() { local t0=$SECONDS; "$@"; echo "[$name] $(( SECONDS - t0 )) s: ${*:1:2}" >&2; }
time_it "$bin" train --config "configs/$name.toml" --set epochs=20 --set warmup_epochs=1 --set rampup_epochs=8 \
  --set pgd_steps=20 --set pgd_step_fraction=0.125 --set threads=1 --no-tensorboard --out "$out"
time_it "$bin" certify --model "$out/model.onnx" --dataset fashion-mnist --eps "$eps" --method ibp,crown --pgd 20 \
  --out "$out/certify.json"
time_it "$bin" analyze tightness --model "$out/model.onnx" --dataset fashion-mnist --eps-max "$eps_max" --steps 31 \
  --method "$methods" --n 1000 --out "$out/tightness"
[ "$lp_n" -gt 0 ] || exit 0
time_it "$bin" analyze tightness --model "$out/model.onnx" --dataset fashion-mnist --eps-max "$eps_max" --steps 11 \
  --method "$methods,lp-parallelogram,lp-triangle" --n "$lp_n" --timeout 30 --out "$out/tightness-lp"
