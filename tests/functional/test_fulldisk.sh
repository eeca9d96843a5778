# Full disk: a store limited to 128 MiB by rodd --capacity (reserve: 64 MiB) is filled
# through iSCSI with unique data until writes fail. Writes must get DATA PROTECT 07/27/07
# (SPACE ALLOCATION FAILED WRITE PROTECT), every write acknowledged before must read back,
# and space freed by UNMAP (qemu-io discard) or by destroying + eradicating another volume
# must, once GC has run, let writes resume (a destroyed volume keeps its space until it
# is eradicated); nothing acknowledged is lost, also across a restart.
. "$(dirname "$0")/lib.sh"
command -v qemu-io >/dev/null || fail "qemu-io (qemu-utils) is needed"

start_rodd --capacity 128M
a=$(rod_quick_lun fa 512M)
b=$(rod_quick_lun fb 64M)
CHUNK=8192                      # blocks of 512 bytes: 4 MiB per write command batch

# fb: 24 MiB that will be destroyed to free space later
rodtest_iscsi write "$b" 0 $((6 * CHUNK)) 900 || fail "writing fb failed"

# Fill fa until the store refuses; chunk i holds a pattern of seed 100+i.
full=
for i in $(seq 0 40); do
	if ! rodtest_iscsi write "$a" $((i * CHUNK)) $CHUNK $((100 + i)) 2>"$ROD_TMP/err"; then
		full=$i
		break
	fi
done
[ -n "$full" ] || fail "41 chunks of 4 MiB fitted in a 128 MiB store with a 64 MiB reserve"
grep -q "CHECK CONDITION 7/27/07" "$ROD_TMP/err" ||
	fail "a write to a full store failed without 07/27/07: $(cat "$ROD_TMP/err")"
note "store full after $full chunks of 4 MiB: $(head -c 120 "$ROD_TMP/err")"
[ "$full" -ge 4 ] || fail "only $full chunks fitted before the store reported full"

# Reads still work and return what was acknowledged.
verify_all() {
	local i
	for i in $(seq 0 $((full - 1))); do
		rodtest_iscsi verify "$a" $((i * CHUNK)) $CHUNK $((100 + i)) || fail "$1: chunk $i of fa differs"
	done
	rodtest_iscsi verify "$b" 0 $((6 * CHUNK)) 900 || fail "$1: fb differs"
}
verify_all "store full"
# Still full: a second attempt is refused the same way (not a one-off).
expect_rc 4 rodtest_iscsi write "$a" $((full * CHUNK)) 64 7
grep -q "7/27/07" "$ROD_TMP/stderr" || fail "second write to the full store: $(cat "$ROD_TMP/stderr")"

# until_writes_resume LBA SEED WHY: GC runs in the background (every few seconds while
# space is low); the write must succeed within 60 s.
until_writes_resume() {
	local t
	for t in $(seq 120); do
		if rodtest_iscsi write "$a" "$1" 64 "$2" 2>"$ROD_TMP/err"; then
			note "writes resumed $((t / 2)) s after $3"
			return 0
		fi
		grep -q "7/27/07" "$ROD_TMP/err" || fail "write after $3: $(cat "$ROD_TMP/err")"
		sleep 0.5
	done
	fail "writes still refused 60 s after $3"
}

# 1. UNMAP: discard the last two full chunks of fa (qemu-io sends UNMAP).
last=$((full - 2))
qemu-io -f raw -c "discard $((last * CHUNK * 512)) $((2 * CHUNK * 512))" "$a" >"$ROD_TMP/qio" 2>&1 ||
	fail "qemu-io discard failed: $(cat "$ROD_TMP/qio")"
until_writes_resume $((full * CHUNK)) 500 "UNMAP of 8 MiB"
rodtest_iscsi verify "$a" $((full * CHUNK)) 64 500 || fail "the write after UNMAP does not read back"
# the discarded chunks read as zeroes; the others are intact
qemu-io -f raw -c "read -P 0 $((last * CHUNK * 512)) $((2 * CHUNK * 512))" "$a" >"$ROD_TMP/qio" 2>&1 ||
	fail "discarded range does not read as zeroes: $(cat "$ROD_TMP/qio")"
full=$last
verify_all "after UNMAP"

# Fill again until refused even right after a GC pass (`rodctl array gc --wait`), so
# that no garbage is left to free and what comes next is due to the destroy alone.
extra=49
for i in $(seq 50 90); do
	if ! rodtest_iscsi write "$a" $((i * CHUNK)) $CHUNK $((100 + i)) 2>"$ROD_TMP/err"; then
		grep -q "7/27/07" "$ROD_TMP/err" || fail "second fill: $(cat "$ROD_TMP/err")"
		rodctl array gc --wait >/dev/null || fail "rodctl array gc --wait failed"
		rodtest_iscsi write "$a" $((i * CHUNK)) $CHUNK $((100 + i)) 2>"$ROD_TMP/err" || break
	fi
	extra=$i
done
grep -q "7/27/07" "$ROD_TMP/err" || fail "second fill did not end in 07/27/07: $(cat "$ROD_TMP/err")"

# 2. destroy another volume: it goes to the destroyed-items area with its space kept
# (it can still be recovered); eradicate gives the space back after GC.
rodctl host disconnect all fb >/dev/null
rodctl vol destroy fb >/dev/null || fail "rodctl vol destroy fb failed"
b=
rodctl array gc --wait >/dev/null
expect_rc 4 rodtest_iscsi write "$a" $((100 * CHUNK)) 64 501
grep -q "7/27/07" "$ROD_TMP/stderr" ||
	fail "write after destroy (space kept for recovery): $(cat "$ROD_TMP/stderr")"
rodctl vol eradicate fb >/dev/null || fail "rodctl vol eradicate fb failed"
until_writes_resume $((100 * CHUNK)) 501 "eradicating fb (24 MiB)"
rodtest_iscsi verify "$a" $((100 * CHUNK)) 64 501 || fail "the write after eradicate does not read back"
verify_all_a() {
	local i
	for i in $(seq 0 $((full - 1))); do
		rodtest_iscsi verify "$a" $((i * CHUNK)) $CHUNK $((100 + i)) || fail "$1: chunk $i of fa differs"
	done
	for i in $(seq 50 "$extra"); do
		rodtest_iscsi verify "$a" $((i * CHUNK)) $CHUNK $((100 + i)) || fail "$1: chunk $i of fa differs"
	done
}
verify_all_a "after destroy"

# Nothing is lost across a restart either.
stop_rodd
start_rodd --capacity 128M
verify_all_a "after restart"
rodtest_iscsi verify "$a" $((100 * CHUNK)) 64 501 || fail "after restart: the write after destroy differs"
stop_rodd
note "ok"
