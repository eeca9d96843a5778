#!/usr/bin/env bash
# Builds rodstore with -Werror and runs every test (CTest), then runs the suite again
# under ASan+UBSan (label "asan": unit, model, crash and functional tests; the
# conformance suite runs only in the first pass), then builds the libFuzzer targets with
# clang and runs each briefly (scripts/fuzz.sh). Ends with "N passed, N failed".
# ROD_SKIP_ASAN=1 / ROD_SKIP_FUZZ=1 skip those passes.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
total_pass=0
total_fail=0

count_summary() { # log-file: adds CTest's "N tests failed out of M" to the totals
	local log=$1
	local line
	line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
	if [ -z "$line" ]; then
		echo "ctest in $dir printed no summary"
		total_fail=$((total_fail + 1))
	else
		local failed all
		failed=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
		all=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
		total_pass=$((total_pass + all - failed))
		total_fail=$((total_fail + failed))
	fi
}

run_ctest() { # build-dir label-args...
	local dir=$1; shift
	local log
	log=$(mktemp)
	(cd "$dir" && ctest --output-on-failure -j"$jobs" "$@") 2>&1 | tee "$log"
	count_summary "$log"
	rm -f "$log"
}

echo "== build (release, -Werror)"
if ! scripts/build.sh build; then
	echo "build failed"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "== tests (release)"
run_ctest build

if [ "${ROD_SKIP_ASAN:-0}" != 1 ]; then
	echo "== build (ASan+UBSan)"
	if scripts/build.sh build-asan -DROD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug; then
		echo "== tests (ASan+UBSan, label asan)"
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
			run_ctest build-asan -L asan
	else
		echo "ASan build failed"
		total_fail=$((total_fail + 1))
	fi
fi

if [ "${ROD_SKIP_FUZZ:-0}" != 1 ]; then
	# libFuzzer targets (clang, ASan+UBSan), ROD_FUZZ_TIME seconds each (default 10).
	log=$(mktemp)
	scripts/fuzz.sh 2>&1 | tee "$log"
	count_summary "$log"
	rm -f "$log"
fi

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
