#!/usr/bin/env bash
# Long runs of the whole-array crash test (tests/crash/iscsi/crash_iscsi.c).
#
#   bench/crash/run.sh [CYCLES [RUNS [BUILD_DIR]]]
#
# Runs crash_iscsi RUNS times (default 1) with CYCLES kill -9 cycles each (default 500),
# a new seed per run (printed, so a failure can be rerun with the same seed:
# build/tests/crash/iscsi/crash_iscsi build/cmd/rodd/rodd build/cmd/rodctl/rodctl N SEED),
# and prints one JSON line per run and a summary line:
#   {"run":1,"seed":...,"cycles":500,"ok":true,"acked":...,"seconds":...}
# A failing run keeps its work dir (rodd log, data dir) and the script exits 1.
# Extra arguments for crash_iscsi go in CRASH_ARGS (e.g. CRASH_ARGS="--capacity 256M").
set -uo pipefail
cycles=${1:-500}
runs=${2:-1}
build=${3:-$(cd "$(dirname "$0")/../.." && pwd)/build}
bin=$build/tests/crash/iscsi/crash_iscsi
for f in "$bin" "$build/cmd/rodd/rodd" "$build/cmd/rodctl/rodctl"; do
	[ -x "$f" ] || { echo "missing $f (build it: cmake --build $build --target crash_iscsi rodd rodctl)" >&2; exit 2; }
done
failed=0 total_acked=0 total_cycles=0
for run in $(seq 1 "$runs"); do
	seed=${SEED:-$(( (RANDOM << 15 | RANDOM) + run ))}
	log=$(mktemp "${TMPDIR:-/tmp}/crash_run.XXXXXX.log")
	t0=$(date +%s.%N)
	# shellcheck disable=SC2086
	"$bin" "$build/cmd/rodd/rodd" "$build/cmd/rodctl/rodctl" "$cycles" "$seed" ${CRASH_ARGS:-} >"$log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	acked=$(sed -n 's/.* after \([0-9]*\) acknowledged commands.*/\1/p' "$log" | tail -1)
	ok=true
	if [ "$rc" -ne 0 ]; then
		ok=false
		failed=$((failed + 1))
	else
		rm -f "$log"
	fi
	total_acked=$((total_acked + ${acked:-0}))
	[ "$ok" = true ] && total_cycles=$((total_cycles + cycles))
	printf '{"run":%d,"seed":%d,"cycles":%d,"ok":%s,"acked":%d,"seconds":%.1f%s}\n' "$run" "$seed" "$cycles" \
		"$ok" "${acked:-0}" "$(echo "$t1 - $t0" | bc)" "$([ "$ok" = true ] || echo ",\"log\":\"$log\"")"
done
printf '{"summary":true,"runs":%d,"failed":%d,"cycles_survived":%d,"acked":%d}\n' "$runs" "$failed" \
	"$total_cycles" "$total_acked"
[ "$failed" -eq 0 ]
