#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz: -DROD_FUZZ=ON, ASan+UBSan) and
# runs each one for a short time over its seed corpus (CTest label "fuzz"; the time per
# target is ROD_FUZZ_TIME seconds, default 10). Prints CTest's summary; exit status 0
# only when every target ran without a finding. Longer runs: bench/fuzz/run.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${ROD_FUZZ_BUILD:-build-fuzz}
secs=${ROD_FUZZ_TIME:-10}
if ! command -v clang >/dev/null; then
	echo "fuzz: clang not installed (scripts/deps.sh installs clang and libclang-rt-14-dev)"
	exit 1
fi
echo "== build (clang, libFuzzer, ASan+UBSan) in $dir"
# -Werror is the gcc build's gate (scripts/test.sh); here a clang-only warning in a
# library must not stop the fuzz pass. The fuzz targets themselves build with -Werror.
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	-DCMAKE_BUILD_TYPE=Debug -DROD_SANITIZE=ON -DROD_FUZZ=ON -DROD_FUZZ_TIME="$secs" \
	-DROD_WERROR=OFF >/dev/null || { echo "fuzz: cmake failed"; exit 1; }
cmake --build "$dir" -j"$(nproc)" --target fuzz || { echo "fuzz: build failed"; exit 1; }
echo "== fuzz targets, ${secs}s each"
cd "$dir" && ctest --output-on-failure -L fuzz
