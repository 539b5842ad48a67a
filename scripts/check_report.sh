#!/usr/bin/env bash
# Renders `ironbound report RUN_DIR` in a real headless browser (Debian's chromium) and checks
# what the browser built: the page parses, every figure is an SVG element, the headings are
# there; it also saves a screenshot to look at.
#   scripts/check_report.sh RUN_DIR [SCREENSHOT.png]
# Needs chromium (apt-get install chromium) and the ironbound binary (IRONBOUND_BIN, default
# target/debug/ironbound).
set -euo pipefail
run=${1:?usage: scripts/check_report.sh RUN_DIR [SCREENSHOT.png]}
shot=${2:-$run/report.png}
bin=${IRONBOUND_BIN:-target/debug/ironbound}
command -v chromium >/dev/null || { echo "check_report: chromium is not installed (apt-get install chromium)" >&2; exit 2; }
"$bin" report "$run" --out "$run/report.html"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The flags keep chromium off the network (this machine has none) and out of ~/.config.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile")
page="file://$(realpath "$run/report.html")"
dom=$(timeout 120 chromium "${flags[@]}" --dump-dom "$page" 2>/dev/null)
svgs=$(grep -o '<svg' <<<"$dom" | wc -l)
charts=$(grep -o '<h2>' <<<"$dom" | wc -l)
grep -q '<h2>Loss</h2>' <<<"$dom" || { echo "check_report: the browser's page has no Loss chart" >&2; exit 1; }
grep -q '<h2>Accuracy</h2>' <<<"$dom" || { echo "check_report: the browser's page has no Accuracy chart" >&2; exit 1; }
[ "$svgs" -ge 4 ] || { echo "check_report: only $svgs SVG figures in the rendered page" >&2; exit 1; }
timeout 120 chromium "${flags[@]}" --window-size=1100,3000 --screenshot="$(realpath -m "$shot")" "$page" >/dev/null 2>&1
echo "check_report: $run/report.html renders in chromium: $charts sections, $svgs SVG figures; screenshot $shot"
