#!/usr/bin/env bash
# A data directory written by an unknown store format is refused with a clear message
# (and rodd exits 1 instead of touching it); a directory that is not a store is refused too.
. "$(dirname "$0")/lib.sh"
start_rodd
rodctl vol create keep --size 1M >/dev/null
stop_rodd

sb=$ROD_DATA/superblock
[ -f "$sb" ] || fail "no superblock in the data directory"
cp "$sb" "$ROD_TMP/superblock.orig"
# The superblock holds the format version as a big-endian 32-bit number at byte 8
# (lib/store/store.c). Make it a version from the future.
printf '\x00\x00\x00\xff' | dd of="$sb" bs=1 seek=8 conv=notrunc status=none
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --listen 127.0.0.1:0 --socket "$ROD_SOCKET"
expect_stderr 'format version 255'
expect_stderr 'does not know|knows version'
cmp -s "$sb" "$ROD_TMP/superblock.orig" && fail "superblock not modified by the test itself"
# untouched: the original superblock brings the array back with its volume
cp "$ROD_TMP/superblock.orig" "$sb"
start_rodd
rodctl vol show keep >/dev/null || fail "volume lost after the refused start"
stop_rodd

# a file where the superblock should be that is not one
printf 'garbage garbage garbage' >"$sb"
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --listen 127.0.0.1:0 --socket "$ROD_SOCKET"
expect_stderr 'not a rodstore superblock'
note "ok"
