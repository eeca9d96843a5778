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
ver() { od -An -tu1 -j8 -N4 "$sb" | awk '{print $1*16777216+$2*65536+$3*256+$4}'; }
expect_eq 2 "$(ver)" "format version of a new store"

# Version 1 (before dedupe entries): opened and upgraded to 2 in place, so binaries of
# version 1, which would replay a dedupe entry as an unmap, refuse it from then on. The
# CRC at byte 12 covers the header with the CRC field zeroed (CRC32C); recompute it.
python3 - "$sb" <<'PY'
import sys
def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[8:12] = (1).to_bytes(4, 'big')
b[12:16] = bytes(4)
b[12:16] = crc32c(b).to_bytes(4, 'big')
open(p, 'wb').write(b)
PY
expect_eq 1 "$(ver)" "format version set to 1 by the test"
start_rodd
rodctl vol show keep >/dev/null || fail "volume lost after the upgrade"
expect_eq 2 "$(rodctl --json array show | jq -r .format_version)" "array show format_version"
stop_rodd
expect_eq 2 "$(ver)" "format version after opening a version-1 store"
grep -q "upgraded from format version 1 to 2" "$ROD_LOG" || fail "no upgrade message in the rodd log"

# a file where the superblock should be that is not one
printf 'garbage garbage garbage' >"$sb"
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --listen 127.0.0.1:0 --socket "$ROD_SOCKET"
expect_stderr 'not a rodstore superblock'
note "ok"
