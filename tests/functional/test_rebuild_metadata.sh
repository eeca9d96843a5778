# Lost metadata: a store with volumes, hosts, LUN maps, a snapshot, a clone and in-array
# copies (EXTENDED COPY, ODX token copies, zero-token zeroing, overwrites after) loses its
# RocksDB directory (DATA/meta); `rodd --rebuild-metadata` rebuilds it from the segment
# files and every volume reads back byte for byte, the control-plane objects are back,
# and the rebuilt store keeps working. Done twice: after a clean stop, and after
# SIGKILL with writes just acknowledged.
. "$(dirname "$0")/lib.sh"
RODTEST_COPY=${RODTEST_COPY:-$(dirname "$RODTEST_ISCSI")/rodtest-copy}
[ -x "$RODTEST_COPY" ] || fail "rodtest-copy not found (set RODTEST_COPY)"
T=$RODTEST_COPY

start_rodd
u1=$(rod_quick_lun r1 32M)
u2=$(rod_quick_lun r2 32M)
u3=$(rod_quick_lun r3 16M)
d1=$($T desig "$u1")
d2=$($T desig "$u2")

rodtest_iscsi write "$u1" 0 32768 11 || fail "write r1"
rodtest_iscsi write "$u3" 0 8192 33 || fail "write r3"
# EXTENDED COPY r1[0,8192) -> r2[8192,...)
$T xcopy "$u1" --cscd "$d1" --cscd "$d2" --seg 0:1:8192:0:8192 >/dev/null || fail "xcopy"
# ODX r1[16384,+4096) -> r2[0,+4096) and inside r1 itself
$T pt "$u1" 16384:4096 "$ROD_TMP/tok" >/dev/null || fail "populate token"
$T wut "$u2" "$ROD_TMP/tok" 0:4096 || fail "write using token r2"
$T wut "$u1" "$ROD_TMP/tok" 40000:4096 || fail "write using token r1"
# a snapshot and a clone of r1 as it is now (the snapshot is read through a clone of
# it made after the rebuild; snapshots cannot be connected)
rodctl vol snap r1 --suffix s1 >/dev/null || fail "vol snap"
rodctl vol clone r1 r1c >/dev/null || fail "vol clone"
uc=$(rodctl --json host connect all r1c | jq -r .lun)
uc=$(rod_url "$uc")
$T dump "$u1" 0 65536 "$ROD_TMP/img"
snap_sum=$(sha256sum <"$ROD_TMP/img" | cut -c1-64)
# overwrite the copied sources afterwards: the copies must keep the old data
rodtest_iscsi write "$u1" 0 2048 12 || fail "overwrite r1"
rodtest_iscsi write "$u1" 16384 1024 13 || fail "overwrite r1 (odx source)"
# zero a range with the zero ROD token, and a misaligned (512e) write
$T wut "$u1" - 24576:2048 --zero-token || fail "zero token"
rodtest_iscsi write "$u2" 30001 77 21 || fail "misaligned write r2"

# dump_all TAG: a checksum of every volume's whole content
dump_all() {
	local v u
	: >"$ROD_TMP/sums.$1"
	for v in 1 2 3 c; do
		eval u=\$u$v
		local n=$([ $v = 3 ] && echo 32768 || echo 65536)
		$T dump "$u" 0 $n "$ROD_TMP/img" || fail "$1: dump of r$v failed"
		echo "r$v $(sha256sum <"$ROD_TMP/img" | cut -c1-64)" >>"$ROD_TMP/sums.$1"
	done
}
objects() {
	{
		rodctl --json vol list | jq -c '[.volumes[] | {name, id, uuid, size, block_size, cache, offload, connections}] | sort_by(.name)'
		rodctl --json host list | jq -c '[.hosts[] | {name, iqns, connections}] | sort_by(.name)'
		rodctl --json vol snap list | jq -c '[.snapshots[] | {name, id, uuid, size, source}] | sort_by(.name)'
	} >"$ROD_TMP/objects.$1" 2>&1
}
dump_all before
objects before
stop_rodd

rebuild() {
	rm -rf "$ROD_DATA/meta"
	[ ! -e "$ROD_DATA/meta" ] || fail "could not delete $ROD_DATA/meta"
	expect_rc 0 "$RODD" --foreground --data "$ROD_DATA" --socket "$ROD_SOCKET" --rebuild-metadata
	grep -q "rebuilt from" "$ROD_TMP/stdout" || fail "rodd --rebuild-metadata said: $(cat "$ROD_TMP/stdout")"
	[ -d "$ROD_DATA/meta" ] || fail "no meta directory after the rebuild"
	note "$1: $(cat "$ROD_TMP/stdout")"
}
rebuild "after a clean stop"
start_rodd
objects after
diff -u "$ROD_TMP/objects.before" "$ROD_TMP/objects.after" >&2 || fail "volumes/hosts/maps differ after the rebuild"
dump_all after
diff -u "$ROD_TMP/sums.before" "$ROD_TMP/sums.after" >&2 || fail "volume contents differ after the rebuild"
# the snapshot still holds r1 as it was when it was taken
check_snap() {
	rodctl vol clone r1.s1 "$1" >/dev/null || fail "$2: clone of the snapshot failed"
	local l
	l=$(rodctl --json host connect all "$1" | jq -r .lun)
	$T dump "$(rod_url "$l")" 0 65536 "$ROD_TMP/img"
	[ "$(sha256sum <"$ROD_TMP/img" | cut -c1-64)" = "$snap_sum" ] || fail "$2: snapshot r1.s1 differs"
}
check_snap s1view "after the rebuild"
# the rebuilt copies are still point-in-time: overwriting their source r1[0,8192)
# leaves r2 (which got it by EXTENDED COPY) as it was
rodtest_iscsi write "$u1" 0 8192 14 || fail "write after rebuild"
dump_all after1b
diff <(grep -v '^r1' "$ROD_TMP/sums.after") <(grep -v '^r1' "$ROD_TMP/sums.after1b") >&2 ||
	fail "writing r1 after the rebuild changed r2/r3"
rodtest_iscsi verify "$u1" 0 8192 14 || fail "r1 head after rebuild"

# Second round: writes acknowledged just before SIGKILL, then the metadata is lost.
rodtest_iscsi write "$u3" 4096 4096 34 || fail "write r3"
$T pt "$u3" 4096:4096 "$ROD_TMP/tok3" >/dev/null || fail "populate token r3"
$T wut "$u2" "$ROD_TMP/tok3" 50000:4096 || fail "write using token r3 -> r2"
dump_all before2
objects before2
kill -KILL "$RODD_PID"
wait "$RODD_PID" 2>/dev/null || true
RODD_PID=
rebuild "after SIGKILL"
start_rodd
dump_all after2
diff -u "$ROD_TMP/sums.before2" "$ROD_TMP/sums.after2" >&2 || fail "volume contents differ after SIGKILL + rebuild"
objects after2
diff -u "$ROD_TMP/objects.before2" "$ROD_TMP/objects.after2" >&2 || fail "volumes/hosts/maps differ after SIGKILL + rebuild"
# the rebuilt store takes new writes and keeps them over a restart
rodtest_iscsi write "$u3" 0 1024 35 || fail "write after the second rebuild"
stop_rodd
start_rodd
rodtest_iscsi verify "$u3" 0 1024 35 || fail "write after the second rebuild lost over a restart"

# Third round: after GC has collected segments (their live chunks moved, the map
# entries they held relogged), the segments alone must still rebuild everything.
# A 128 MiB capacity makes space short, so GC runs within seconds.
stop_rodd
start_rodd --capacity 128M
seg_mib() { du -sm "$ROD_DATA/seg" | cut -f1; }
# 6 x 16 MiB of new data into a store that refuses new data above 64 MiB used: it
# only fits if GC frees the overwritten chunks (refused writes are retried).
refusals=0
for round in 1 2 3 4 5 6; do
	for try in $(seq 120); do
		rodtest_iscsi write "$u3" 0 32768 $((40 + round)) 2>"$ROD_TMP/err" && break
		grep -q "7/27/07" "$ROD_TMP/err" || fail "overwrite round $round of r3: $(cat "$ROD_TMP/err")"
		[ "$try" -lt 120 ] || fail "writes still refused after 60 s: GC freed nothing"
		refusals=$((refusals + 1))
		sleep 0.5
	done
done
rodtest_iscsi verify "$u3" 0 32768 46 || fail "r3 after the overwrites"
note "96 MiB of overwrites fitted in a 64 MiB budget ($refusals refusals while GC caught up; segments now $(seg_mib) MiB)"
dump_all before3
stop_rodd
rebuild "after GC"
start_rodd
dump_all after3
diff -u "$ROD_TMP/sums.before3" "$ROD_TMP/sums.after3" >&2 || fail "volume contents differ after GC + rebuild"
check_snap s1view3 "after GC + rebuild"
stop_rodd
note "ok"
