#!/usr/bin/env bash
# `make demo` as a newcomer runs it: a fresh clone, `make setup` (not timed), then RUNS runs of `make demo` in a
# row, each into a log file (`make demo > demo.log 2>&1`, as CI or `| tee` would). For each run: wall time, the
# log's line count, the per-language before/after rows and the time per stage (demo_out/timings.json).
#
#   bash benchmarks/demo_wall.sh [REPO] [WORK] [RUNS]      # defaults: this checkout, /tmp/demo-wall, 3
set -euo pipefail
REPO=${1:-$(git rev-parse --show-toplevel)}
WORK=${2:-/tmp/demo-wall}
RUNS=${3:-3}
rm -rf "$WORK" && mkdir -p "$WORK"
git clone -q "$REPO" "$WORK/clone"
cd "$WORK/clone"
echo "commit $(git rev-parse --short HEAD); $(nproc) cores; $(python3 -c 'import time; t=time.time()
for i in range(20_000_000): pass
print(f"20M-iteration Python loop {time.time() - t:.2f} s")')"
t=$(date +%s); make setup > "$WORK/setup.log" 2>&1; echo "make setup (not counted): $(( $(date +%s) - t )) s"
for i in $(seq 1 "$RUNS"); do
  t=$(date +%s)
  make demo > "$WORK/demo-$i.log" 2>&1 || { echo "run $i FAILED (log: $WORK/demo-$i.log)"; exit 1; }
  wall=$(( $(date +%s) - t ))
  echo "run $i: make demo ${wall} s ($(awk "BEGIN{printf \"%.1f\", $wall/60}") min), log $(wc -l < "$WORK/demo-$i.log") lines"
  sed -n '/^language  *before  *after/,/^$/p' "$WORK/demo-$i.log" | sed 's/^/    /'
  grep -E "^[0-9]+ steps; final loss|^the registered model is" "$WORK/demo-$i.log" | sed 's/^/    /'
  python3 -c "import json; d=json.load(open('demo_out/timings.json'));
print('    stages: ' + ', '.join(f'{k} {v:.0f} s' for k, v in d['stages_s'].items()))"
done
