#!/usr/bin/env bash
# Does every relaxation train from its config, and does it beat a naturally trained network on
# its own certificate? Runs each paradox Table 2 config for one network (plus CROWN-0 and CAP-IBP,
# which reuse the CROWN / CROWN-IBP configs with --method) on a shortened schedule, trains the
# same network naturally for as long, then certifies both with the relaxation on the first N test
# images and prints a Markdown table.
#
#   scripts/relaxation_sweep.sh [NET] [OUT]      NET: conv (default) or fc; OUT: runs/sweep-NET
#
# Environment: EPOCHS (6), RAMP (3), TRAIN_N (5000), N (1000), DATASET (fashion-mnist),
# IRONBOUND (target/release/ironbound), ONLY (comma-separated names of the rows to run; all). The schedule keeps each config's eps, kappa, beta, spec,
# optimiser, L1 and normalisation; only the length, the training subset and the lr schedule
# (constant) change, so the numbers show that each relaxation trains, not the paper's accuracy.
set -euo pipefail

net=${1:-conv}
out=${2:-runs/sweep-$net}
epochs=${EPOCHS:-6}
ramp=${RAMP:-3}
train_n=${TRAIN_N:-5000}
n=${N:-1000}
dataset=${DATASET:-fashion-mnist}
bin=${IRONBOUND:-target/release/ironbound}
mkdir -p "$out"

short=(--epochs "$epochs" --set warmup_epochs=0 --set "rampup_epochs=$ramp" --set "train_n=$train_n"
       --set "eval_n=$n" --set lr_schedule=constant)

# name | config suffix | method override | relaxation that certifies it
runs=(
  "ibp|ibp||ibp"
  "hbox|hbox||hbox"
  "deepz|deepz||deepz"
  "crown|crown||crown"
  "crown-0|crown|crown-0|crown-0"
  "crown-ibp-r|crown-ibp-r||crown-ibp"
  "crown-ibp|crown-ibp||ibp"
  "cap-ibp|crown-ibp-r|cap-ibp|cap-ibp"
)

config() { echo "configs/paradox-$dataset-$net-$1.toml"; }
eps=$(sed -n 's/^eps = //p' "$(config ibp)")

"$bin" train --config "$(config ibp)" --method natural "${short[@]}" --out "$out/natural" >"$out/natural.log" 2>&1

certified() { # model method report -> certified percentage
  "$bin" certify --model "$1" --dataset "$dataset" --eps "$eps" --method "$2" --n "$n" --out "$3" >/dev/null 2>&1
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{100*r['certified_accuracy'][sys.argv[2]]:.1f} {100*r['clean_accuracy']:.1f}\")" "$3" "$2"
}

echo "| relaxation | config | certified (trained) | clean (trained) | certified (natural) | train time |"
echo "|---|---|---|---|---|---|"
for row in "${runs[@]}"; do
  IFS='|' read -r name suffix method cert <<<"$row"
  [[ -n ${ONLY:-} && ",$ONLY," != *",$name,"* ]] && continue
  args=(--config "$(config "$suffix")" "${short[@]}" --out "$out/$name")
  [[ -n $method ]] && args+=(--method "$method")
  start=$(date +%s)
  "$bin" train "${args[@]}" >"$out/$name.log" 2>&1
  secs=$(( $(date +%s) - start ))
  read -r trained clean < <(certified "$out/$name/model.onnx" "$cert" "$out/$name/certify.json")
  read -r natural _ < <(certified "$out/natural/model.onnx" "$cert" "$out/natural/certify-$cert.json")
  echo "| $name (certified with $cert) | $(basename "$(config "$suffix")") ${method:+--method $method} | $trained % | $clean % | $natural % | ${secs} s |"
done
