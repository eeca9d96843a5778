#!/usr/bin/env bash
# Network threads. Connections are spread: a second session opened while the first is
# busy goes to the other thread (rodd's debug log names each connection's thread).
# Threads follow their initiator's CPU (docs/iscsi.md, "Following the
# initiator"): a client pinned to CPU 0, then 1, then 0, then 1 reads a LUN one
# command at a time; the data reads back right, and the thread serving it moved to
# the client's CPU (rodstore_iscsi_thread_moves_total) unless the machine has one CPU
# or rodd said it cannot follow. With ROD_ISCSI_FOLLOW=0 no thread moves.
. "$(dirname "$0")/lib.sh"
command -v taskset >/dev/null || fail "taskset (util-linux) is missing"

# moves: the counter's value now
moves() {
	curl -s "http://$HTTP/metrics" | awk '$1 == "rodstore_iscsi_thread_moves_total" { print $2 }'
}

# run_pinned: write the LUN once, then read it back from alternate CPUs
run_pinned() {
	rodtest_iscsi write "$url" 0 8192 5 || fail "write failed"
	local cpu
	for cpu in 0 1 0 1; do
		taskset -c "$((cpu % ncpu))" "$RODTEST_ISCSI" verify "$url" 0 8192 5 ||
			fail "read back from CPU $cpu does not match"
	done
}

start_test() {
	start_rodd --http 127.0.0.1:0 --config "$ROD_TMP/rod.conf"
	HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
	[ -n "$HTTP" ] || fail "rodd did not log its HTTP address"
}

ncpu=$(nproc)
mkdir -p "$ROD_TMP"
printf '[rodd]\nlog_level = debug\n' >"$ROD_TMP/rod.conf"
start_test
url=$(rod_quick_lun v 64M)

if [ "$ncpu" -ge 2 ]; then
	# session A logs in and stays idle; session B connects meanwhile
	mkfifo "$ROD_TMP/a.in"
	rodtest_iscsi -i iqn.2026-11.io.rodstore.test:a session "$url" <"$ROD_TMP/a.in" >"$ROD_TMP/a.out" 2>&1 &
	apid=$!
	exec 7>"$ROD_TMP/a.in"
	echo "tur 0" >&7   # the first answer is the power-on unit attention
	echo "tur 0" >&7
	for _ in $(seq 100); do [ "$(wc -l <"$ROD_TMP/a.out")" -ge 2 ] && break; sleep 0.1; done
	expect_eq good "$(tail -n 1 "$ROD_TMP/a.out")" "session A's second TEST UNIT READY"
	rodtest_iscsi -i iqn.2026-11.io.rodstore.test:b login "$url" || fail "session B failed"
	exec 7>&-
	wait "$apid" || fail "session A failed"
	threads=$(grep -o 'iscsi: connection from .* on thread [0-9]*' "$ROD_LOG" | awk '{print $NF}')
	expect_eq 2 "$(sort -u <<<"$threads" | wc -l)" "threads serving two sessions at once ($(echo $threads))"
fi

before=$(moves)
[ -n "$before" ] || fail "rodstore_iscsi_thread_moves_total missing from /metrics"
run_pinned
after=$(moves)
if [ "$ncpu" -lt 2 ]; then
	expect_eq "$before" "$after" "thread moves on a machine with one CPU"
elif grep -q "will not follow initiators" "$ROD_LOG"; then
	note "rodd cannot leave SCHED_IDLE here; checking that nothing moved"
	expect_eq "$before" "$after" "thread moves without CAP_SYS_NICE"
else
	[ "$after" -gt "$before" ] ||
		fail "no network thread moved to its initiator's CPU ($before -> $after)"
	note "$((after - before)) thread moves"
fi
stop_rodd

ROD_ISCSI_FOLLOW=0 start_test
before=$(moves)
run_pinned
expect_eq "$before" "$(moves)" "thread moves with ROD_ISCSI_FOLLOW=0"
stop_rodd
note "ok"
