#!/usr/bin/env bash
# Long fuzzing runs: builds the libFuzzer targets (as scripts/fuzz.sh does) and runs
# each for SECONDS (default 600) with its seed corpus and dictionary, keeping what
# the fuzzer learns in $ROD_FUZZ_WORK/<target> (default build-fuzz/fuzz-work) so the
# next run continues from there. Prints one JSON object per target (executions,
# exec/s, coverage, corpus size, crash files) and a final summary line.
# Usage: bench/fuzz/run.sh [SECONDS] [TARGET...]     (-jobs: ROD_FUZZ_JOBS, default 1)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
secs=${1:-600}
shift || true
dir=${ROD_FUZZ_BUILD:-build-fuzz}
work=${ROD_FUZZ_WORK:-$root/$dir/fuzz-work}
jobs=${ROD_FUZZ_JOBS:-1}
all=(fuzz_iscsi_pdu fuzz_iscsi_keys fuzz_iscsi_session fuzz_scsi_cdb fuzz_tpc_lists
     fuzz_rod_token fuzz_ctl_rpc)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	-DCMAKE_BUILD_TYPE=Debug -DROD_SANITIZE=ON -DROD_FUZZ=ON >/dev/null || exit 1
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}" >/dev/null || { echo "build failed"; exit 1; }

failed=0
for t in "${targets[@]}"; do
	mkdir -p "$work/$t"
	log="$work/$t.log"
	dict=()
	[ -f tests/fuzz/$t.dict ] && dict=(-dict="$root/tests/fuzz/$t.dict")
	touch "$work/.start-$t"
	start=$(date +%s)
	# -fork keeps going after a finding (each crash is saved, then the run continues)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		"$dir/tests/fuzz/$t" -max_total_time="$secs" -timeout=25 -rss_limit_mb=4096 \
		-print_final_stats=1 -artifact_prefix="$work/$t-" "${dict[@]}" \
		$([ "$jobs" -gt 1 ] && echo "-fork=$jobs -ignore_crashes=1") \
		"$work/$t" tests/fuzz/corpus/"$t" >"$log" 2>&1
	rc=$?
	end=$(date +%s)
	runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}')
	if [ "$runs" = 0 ]; then # -fork prints no final stats: take the last status line
		runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
		runs=${runs:-0}
	fi
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
	corp=$(find "$work/$t" -type f | wc -l)
	crashes=$(find "$work" -maxdepth 1 -name "$t-*" -newer "$work/.start-$t" 2>/dev/null | wc -l)
	elapsed=$((end - start))
	[ $elapsed -gt 0 ] || elapsed=1
	printf '{"target":"%s","seconds":%d,"executions":%s,"exec_per_s":%d,"coverage":%s,"corpus":%d,"exit":%d,"findings":%d,"log":"%s"}\n' \
		"$t" "$elapsed" "$runs" $((runs / elapsed)) "${cov:-0}" "$corp" "$rc" "$crashes" "$log"
	[ $rc -eq 0 ] || failed=$((failed + 1))
done
echo "fuzz: ${#targets[@]} targets, $failed with findings (crash inputs in $work)"
[ $failed -eq 0 ]
