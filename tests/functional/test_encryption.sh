#!/usr/bin/env bash
# Encryption at rest, dedupe and compression seen from outside: a marker written by a
# host through iSCSI is nowhere in the data directory (segments, RocksDB) with
# encryption on, and is found there with encryption off (so the grep works); the key
# file is created 0600; a missing or wrong key file stops rodd at start saying so;
# rekey re-wraps the data key; the same data in two volumes is stored once (shared, not
# unique, per volume); text-like data takes less physical than logical space, except on
# a volume with compression switched off (rodctl vol set --compress off).
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img is not installed (scripts/deps.sh: qemu-utils)"
qemu-img --help | grep -qw iscsi || fail "qemu-img has no iscsi driver"

I=iqn.2008-11.org.linux-kvm
MARK=RODSTORE-PLAINTEXT-MARKER-7f3a9c
# 4 MiB of a repeated marker line: compressible, and easy to grep.
{ yes "$MARK 0123456789 the quick brown fox" || true; } | head -c $((4 << 20)) >"$ROD_TMP/marker.img"

# qemu-img writes a file to LUN $1 (offset 0) / compares it back.
iscsi_opts() { echo "driver=iscsi,transport=tcp,portal=$ROD_PORTAL,target=$ROD_IQN,lun=$1,initiator-name=$I"; }
put() { qemu-img convert -n -f raw "$2" --target-image-opts "$(iscsi_opts "$1")" || fail "qemu-img write to LUN $1"; }
same() {
	rm -f "$ROD_TMP/back.img"
	qemu-img convert -O raw --image-opts "$(iscsi_opts "$1")" "$ROD_TMP/back.img" || fail "qemu-img read of LUN $1"
	cmp -s -n "$(stat -c %s "$2")" "$2" "$ROD_TMP/back.img"
}
# Bytes of a volume from vol show --json.
space() { rodctl --json vol show "$1" | jq -r ".space.$2"; }
found_in_data() { grep -rqa -- "$MARK" "$1"; }

start_rodd
KEY=$ROD_TMP/rod.key
[ -f "$KEY" ] || fail "rodd did not create the key file $KEY"
expect_eq "600" "$(stat -c %a "$KEY")" "key file mode"
rodctl vol create e1 --size 16M >/dev/null
rodctl vol create e2 --size 16M >/dev/null
rodctl host create qemu --iqn $I >/dev/null
rodctl host connect qemu e1 --lun 0 >/dev/null
rodctl host connect qemu e2 --lun 1 >/dev/null
put 0 "$ROD_TMP/marker.img"
same 0 "$ROD_TMP/marker.img" || fail "LUN 0 does not read back what was written"

# Compression: the marker data is text-like.
log0=$(space e1 logical)
phys0=$(space e1 physical)
expect_eq "$((4 << 20))" "$log0" "logical bytes of e1"
[ "$phys0" -lt $((log0 / 2)) ] || fail "compressible data: physical $phys0 not < half of logical $log0"

# Dedupe: random data written to both volumes costs its physical space once.
head -c $((4 << 20)) /dev/urandom >"$ROD_TMP/random.img"
arr0=$(rodctl --json array space | jq -r .physical)
qemu-img convert -n -f raw "$ROD_TMP/random.img" --target-image-opts "$(iscsi_opts 1)" || fail "write random to LUN 1"
arr1=$(rodctl --json array space | jq -r .physical)
qemu-img convert -n -f raw "$ROD_TMP/random.img" --target-image-opts "$(iscsi_opts 0)" || fail "write random to LUN 0"
arr2=$(rodctl --json array space | jq -r .physical)
grown1=$((arr1 - arr0))
[ "$grown1" -ge $((4 << 20)) ] || fail "4 MiB of random data added only $grown1 physical bytes"
# The second copy replaced e1's marker data (which goes away) and added nothing new.
[ "$arr2" -le "$arr1" ] || fail "second copy of the same data grew physical space: $arr1 -> $arr2"
same 0 "$ROD_TMP/random.img" || fail "LUN 0 (deduplicated) does not read back the random data"
same 1 "$ROD_TMP/random.img" || fail "LUN 1 does not read back the random data"
ratio=$(rodctl --json array space | jq -r .reduction)
awk -v r="$ratio" 'BEGIN { exit !(r > 1.9) }' || fail "reduction ratio $ratio with two identical volumes"
# Per volume, that data is shared (the other volume references it too), not unique.
expect_eq "$((4 << 20))" "$(space e1 shared)" "e1 shared bytes"
expect_eq 0 "$(space e1 unique)" "e1 unique bytes"
# Put the marker back on e1 for the plaintext check.
put 0 "$ROD_TMP/marker.img"
stop_rodd

# No plaintext anywhere in the data directory (segments, RocksDB files, everything).
found_in_data "$ROD_DATA" && fail "the marker written by the host is in the data directory in clear"

# A wrong key file (another valid key) and a missing one: rodd refuses to start.
printf '%064x\n' 12345 >"$ROD_TMP/wrong.key"
chmod 600 "$ROD_TMP/wrong.key"
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --listen 127.0.0.1:0 --socket "$ROD_SOCKET" --key-file "$ROD_TMP/wrong.key"
expect_stderr "not this store's key"
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --listen 127.0.0.1:0 --socket "$ROD_SOCKET" --key-file "$ROD_TMP/nokey"
expect_stderr "missing"
[ -e "$ROD_TMP/nokey" ] && fail "rodd created a key file for a store that already has a data key"

# Rekey: afterwards only the new key file opens the store, and the data is intact.
start_rodd
rodctl array rekey --key-file "$ROD_TMP/new.key" >/dev/null
expect_eq "600" "$(stat -c %a "$ROD_TMP/new.key")" "new key file mode"
stop_rodd
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --listen 127.0.0.1:0 --socket "$ROD_SOCKET" --key-file "$KEY"
expect_stderr "not this store's key"
ROD_KEY_FILE=$ROD_TMP/new.key start_rodd
same 0 "$ROD_TMP/marker.img" || fail "data unreadable after rekey"

# Per-volume switch (benchmarking): e2 with compression off stores the marker data as
# 4096-byte chunks while e1 holds it compressed; the switch survives a restart.
rodctl vol set e2 --compress off >/dev/null
expect_eq "false" "$(rodctl --json vol show e2 | jq -r .compress)" "e2 compress after vol set"
expect_eq "true" "$(rodctl --json vol show e2 | jq -r .dedupe)" "e2 dedupe untouched"
expect_rc 1 rodctl vol set e2 --compress maybe   # usage error
# (numbered lines: no two grains alike, so nothing is only a dedupe reference)
{ seq -f "%08g $MARK e2 copy, compression off" 1 200000 || true; } | head -c $((4 << 20)) >"$ROD_TMP/marker2.img"
put 1 "$ROD_TMP/marker2.img"
same 1 "$ROD_TMP/marker2.img" || fail "LUN 1 (compression off) does not read back"
expect_eq "$((4 << 20))" "$(space e2 physical)" "e2 physical with compression off"
[ "$(space e1 physical)" -lt $((2 << 20)) ] || fail "e1 (compression on) is no longer compressed"
stop_rodd
ROD_KEY_FILE=$ROD_TMP/new.key start_rodd
expect_eq "false" "$(rodctl --json vol show e2 | jq -r .compress)" "e2 compress after restart"
stop_rodd

# Encryption off (benchmark switch): the same marker is then found, so the grep above
# would have seen it.
ROD_DATA=$ROD_TMP/clear
ROD_KEY_FILE=$ROD_TMP/clear.key start_rodd --no-reduction encrypt
rodctl vol create c1 --size 16M >/dev/null
rodctl host create qemu --iqn $I >/dev/null
rodctl host connect qemu c1 --lun 0 >/dev/null
put 0 "$ROD_TMP/marker.img"
stop_rodd
found_in_data "$ROD_DATA" || fail "with encryption off the marker should be in the data directory"
note "ok"
