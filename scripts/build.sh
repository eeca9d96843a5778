#!/usr/bin/env bash
# Configure and build into build/ (or $1). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DROD_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
