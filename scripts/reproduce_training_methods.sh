#!/usr/bin/env bash
# Reproduction runs of issue 11 (the training methods of the tightness-regularizer, loss-landscape
# and COLT papers) on Fashion-MNIST, two seeds each, each model certified on the full 10,000-image
# test set by an independent `ironbound certify`. Every step is resumable: rerun the same command
# after an interruption (training resumes from its checkpoint; finished steps are skipped).
#
#   scripts/reproduce_training_methods.sh QUEUE [OUT]
#
# QUEUE: land (one-step vs CROWN-IBP beta 1 at eps 0.3), tightreg (CROWN-IBP with and without r;
# Fast-Lin/CAP 2x100 with and without d, r), tightreg-weights (the same with smaller weights),
# tightreg-long (CROWN-IBP +- r on a 40-epoch schedule; SEEDS="0" runs one seed),
# colt (COLT vs IBP on CONV at eps 0.1), or all.
# OUT defaults to runs/issue11. Binary: $IRONBOUND or target/release/ironbound.
set -euo pipefail
queue=${1:?usage: $0 land|tightreg|colt|all [OUT]}
out=${2:-runs/issue11}
ib=${IRONBOUND:-target/release/ironbound}
mkdir -p "$out"

# train NAME CONFIG [--set KEY=VALUE ...]: trains into $out/NAME (wall time in $out/NAME.time).
train() {
  local name=$1 config=$2; shift 2
  [ -f "$out/$name/model.onnx" ] && return 0
  local t0=$SECONDS
  "$ib" train --config "$config" "$@" --no-tensorboard --out "$out/$name"
  echo "$((SECONDS - t0)) s: $ib train --config $config $* --out $out/$name" >> "$out/$name.time"
}

# certify NAME EPS METHODS [N]: the independent report $out/NAME/certify.json on the test set.
certify() {
  local name=$1 eps=$2 methods=$3 n=${4:-}
  [ -f "$out/$name/certify.json" ] && return 0
  local t0=$SECONDS
  "$ib" certify --model "$out/$name/model.onnx" --dataset fashion-mnist --eps "$eps" --method "$methods" \
    ${n:+--n "$n"} --pgd 20 --out "$out/$name/certify.json"
  echo "$((SECONDS - t0)) s: certify $name --eps $eps --method $methods ${n:+--n $n}" >> "$out/$name.time"
}

land() {
  for seed in 0 1; do
    train land-crown-ibp-seed$seed configs/land-fashion-mnist-fcsmall-crown-ibp-eps0.3.toml --set seed=$seed
    train land-one-step-seed$seed configs/land-fashion-mnist-fcsmall-one-step-eps0.3.toml --set seed=$seed
    certify land-crown-ibp-seed$seed 0.3 crown-ibp,one-step,ibp,crown
    certify land-one-step-seed$seed 0.3 crown-ibp,one-step,ibp,crown
  done
}

tightreg() {
  for seed in 0 1; do
    train tightreg-crown-ibp-r-seed$seed configs/tightreg-fashion-mnist-fcsmall-crown-ibp-r-eps0.1.toml --set seed=$seed
    train tightreg-crown-ibp-seed$seed configs/tightreg-fashion-mnist-fcsmall-crown-ibp-r-eps0.1.toml --set seed=$seed --set reg_r_weight=0.0
    certify tightreg-crown-ibp-r-seed$seed 0.1 ibp,crown-ibp,crown
    certify tightreg-crown-ibp-seed$seed 0.1 ibp,crown-ibp,crown
  done
  # Fast-Lin/CAP (exact DeepZ) 2x100 with (lambda, gamma) = (2e-3, 1) and without, on a
  # 10-epoch schedule over 20,000 training images (the config's 20 epochs on 60,000 take ~1 h).
  local short=(--set epochs=10 --set train_n=20000 --set threads=1)
  for seed in 0 1; do
    train tightreg-cap-2x100-reg-seed$seed configs/tightreg-fashion-mnist-2x100-exact-cp-eps0.1.toml "${short[@]}" --set seed=$seed
    train tightreg-cap-2x100-seed$seed configs/tightreg-fashion-mnist-2x100-exact-cp-eps0.1.toml "${short[@]}" --set seed=$seed \
      --set reg_d_weight=0.0 --set reg_r_weight=0.0 --set log_regularizers=true
    certify tightreg-cap-2x100-reg-seed$seed 0.1 deepz,crown,ibp
    certify tightreg-cap-2x100-seed$seed 0.1 deepz,crown,ibp
  done
}

# Smaller regularizer weights than the paper's, on the same schedules: does the sign of the
# effect depend on the weight?
tightreg_weights() {
  local short=(--set epochs=10 --set train_n=20000 --set threads=1)
  for seed in 0 1; do
    train tightreg-crown-ibp-r0.05-seed$seed configs/tightreg-fashion-mnist-fcsmall-crown-ibp-r-eps0.1.toml --set seed=$seed --set reg_r_weight=0.05
    certify tightreg-crown-ibp-r0.05-seed$seed 0.1 ibp,crown-ibp,crown
    for gamma in 0.1 0.02; do
      train tightreg-cap-2x100-reg$gamma-seed$seed configs/tightreg-fashion-mnist-2x100-exact-cp-eps0.1.toml "${short[@]}" --set seed=$seed --set reg_r_weight=$gamma
      certify tightreg-cap-2x100-reg$gamma-seed$seed 0.1 deepz,crown,ibp
    done
  done
}

# CROWN-IBP +- r at the paper's gamma 0.5 on a schedule 3.3x as long (40 epochs: 2 warm-up,
# 20 ramp-up, r warmed up over 5).
tightreg_long() {
  local long=(--set epochs=40 --set warmup_epochs=2 --set rampup_epochs=20 --set reg_rampup_epochs=5)
  for seed in ${SEEDS:-0 1}; do
    train tightreg-crown-ibp-r-long-seed$seed configs/tightreg-fashion-mnist-fcsmall-crown-ibp-r-eps0.1.toml "${long[@]}" --set seed=$seed
    train tightreg-crown-ibp-long-seed$seed configs/tightreg-fashion-mnist-fcsmall-crown-ibp-r-eps0.1.toml "${long[@]}" --set seed=$seed --set reg_r_weight=0.0 --set log_regularizers=true
    certify tightreg-crown-ibp-r-long-seed$seed 0.1 ibp,crown-ibp,crown
    certify tightreg-crown-ibp-long-seed$seed 0.1 ibp,crown-ibp,crown
  done
}

colt() {
  for seed in 0 1; do
    train colt-ibp-seed$seed configs/landscape-fashion-mnist-conv-ibp.toml --set seed=$seed --set landscape_every=0
    train colt-colt-seed$seed configs/colt-fashion-mnist-conv-eps0.1.toml --set seed=$seed
    certify colt-ibp-seed$seed 0.1 ibp,deepz,crown
    certify colt-colt-seed$seed 0.1 ibp,deepz,crown
  done
}

case $queue in
  land) land ;;
  tightreg) tightreg ;;
  tightreg-weights) tightreg_weights ;;
  tightreg-long) tightreg_long ;;
  colt) colt ;;
  all) land; tightreg; tightreg_weights; tightreg_long; colt ;;
  *) echo "unknown queue '$queue' (land, tightreg, tightreg-weights, tightreg-long, colt, all)" >&2; exit 2 ;;
esac
