#!/usr/bin/env bash
# Installs every system package needed to build, run and test rodstore on Debian 12.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
    build-essential cmake pkg-config git ca-certificates \
    librocksdb-dev libisal-dev liblz4-dev libzstd-dev libssl-dev \
    libcmocka-dev libjansson-dev libmicrohttpd-dev libinih-dev liburing-dev \
    libiscsi-dev libiscsi-bin qemu-utils qemu-block-extra tgt jq curl \
    clang libclang-rt-14-dev procps iproute2
