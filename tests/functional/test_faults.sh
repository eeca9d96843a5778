#!/usr/bin/env bash
# Fault injection through iSCSI (docs/reliability.md "Fault injection"): each named
# point of the engine (lib/store/fault.c), armed at run time with the test-only
# JSON-RPC method array.fault (rodd started with ROD_TEST_FAULTS=1) or at start with
# ROD_FAULT, gives the host the right sense, loses nothing acknowledged, and leaves
# the store working (ENOSPC) or read-only until restarted (EIO, fdatasync, RocksDB).
. "$(dirname "$0")/lib.sh"
command -v qemu-io >/dev/null || fail "qemu-io (qemu-utils) is needed"
command -v python3 >/dev/null || fail "python3 is needed"

export ROD_TEST_FAULTS=1

# rpc METHOD JSON-PARAMS: one JSON-RPC request on the control socket, the answer on stdout
rpc() {
	python3 - "$ROD_SOCKET" "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": sys.argv[2],
                       "params": json.loads(sys.argv[3])}) + "\n").encode())
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(65536)
    if not d:
        break
    buf += d
print(buf.decode().strip())
PY
}

arm() {
	local r
	r=$(rpc array.fault "{\"spec\":\"$1\"}")
	jq -e .result.faults <<<"$r" >/dev/null || fail "array.fault $1: $r"
}

# SIGTERM and wait, whatever the exit status (a store that went read-only cannot make
# its last flush durable and says so with exit 1).
kill_rodd() {
	kill -TERM "$RODD_PID"
	wait "$RODD_PID" || true
	RODD_PID=
}

# zeros LBA COUNT: the blocks read as zeros
zeros() {
	qemu-io -f raw -c "read -P 0 $(($1 * 512)) $(($2 * 512))" "$url" >"$ROD_TMP/qio" 2>&1 &&
		! grep -q "Pattern verification failed\|error" "$ROD_TMP/qio"
}

# old_or_new LBA COUNT SEED: an unacknowledged write left either zeros or its data
old_or_new() {
	zeros "$1" "$2" || rodtest_iscsi verify "$url" "$1" "$2" "$3" ||
		fail "blocks $1+$2 hold neither zeros nor the failed write's data"
}

# ---- ROD_FAULT at start, and the method's checks ------------------------------------
ROD_FAULT="bitflip:grain=999999999:after=2" start_rodd
r=$(rpc array.fault '{}')
grep -q 'bitflip:after=2:count=1:fired=0' <<<"$(jq -r .result.faults <<<"$r")" ||
	fail "ROD_FAULT not armed at start: $r"
r=$(rpc array.fault '{"spec":"nonsense"}')
expect_eq "-32602" "$(jq -r .error.code <<<"$r")" "unknown fault point refused"
r=$(rpc array.fault '{"spec":"enospc:after=x"}')
expect_eq "-32602" "$(jq -r .error.code <<<"$r")" "bad parameter refused"
arm off
url=$(rod_quick_lun v1 64M)
rodtest_iscsi write "$url" 0 256 1 || fail "first write"

# ---- ENOSPC from the file system: 07/27/07, the store goes on -----------------------
arm enospc
expect_rc 4 rodtest_iscsi write "$url" 256 8 2
expect_stderr 'CHECK CONDITION 7/27/07'
zeros 256 8 || fail "a write refused with ENOSPC left data"
expect_eq false "$(rodctl --json array show | jq .read_only)" "read-only after ENOSPC"
rodtest_iscsi write "$url" 256 8 3 || fail "writes did not resume after one ENOSPC"
rodtest_iscsi verify "$url" 256 8 3 || fail "write after ENOSPC"
rodtest_iscsi verify "$url" 0 256 1 || fail "data before ENOSPC"
note "enospc: 07/27/07, the next write succeeds"

# ---- failed and short segment writes, fdatasync, RocksDB: 03/0C/00, then read-only ----
n=0
for point in segment_pwrite_fail segment_pwrite_short fdatasync_fail rocksdb_write_fail; do
	n=$((n + 1))
	lba=$((1024 * n))
	rodtest_iscsi write "$url" "$lba" 16 "$((100 + n))" || fail "$point: write before the fault"
	arm "$point"
	expect_rc 4 rodtest_iscsi write "$url" $((lba + 64)) 8 "$((200 + n))"
	expect_stderr 'CHECK CONDITION 3/0c/00'
	# the store is read-only now: writes refused as write protected, reads work
	expect_rc 4 rodtest_iscsi write "$url" $((lba + 128)) 8 "$((300 + n))"
	expect_stderr 'CHECK CONDITION 7/27/00'
	rodtest_iscsi verify "$url" "$lba" 16 "$((100 + n))" || fail "$point: acknowledged data while read-only"
	rodtest_iscsi verify "$url" 0 256 1 || fail "$point: earlier data while read-only"
	grep -q "group commit failed" "$ROD_LOG" || fail "$point: no log line for the failed commit"
	expect_eq true "$(rodctl --json array show | jq .read_only)" "$point: array show says read-only"
	rodctl --json array show | jq -r '.warnings[]' | grep -q "refuses writes" || fail "$point: no warning"
	kill_rodd
	start_rodd
	url=$(rod_url 0)
	for i in $(seq 1 "$n"); do
		rodtest_iscsi verify "$url" $((1024 * i)) 16 "$((100 + i))" ||
			fail "$point: acknowledged data lost after restart ($i)"
		old_or_new $((1024 * i + 64)) 8 "$((200 + i))"
	done
	rodtest_iscsi verify "$url" 0 256 1 || fail "$point: earlier data after restart"
	rodtest_iscsi verify "$url" 256 8 3 || fail "$point: data after ENOSPC, after restart"
	zeros $((lba + 128)) 8 || fail "$point: a write refused while read-only left data"
	expect_eq false "$(rodctl --json array show | jq .read_only)" "$point: read-only after the restart"
	rodtest_iscsi write "$url" $((lba + 128)) 8 "$((300 + n))" || fail "$point: writes after restart"
	rodtest_iscsi verify "$url" $((lba + 128)) 8 "$((300 + n))" || fail "$point: write after restart"
	note "$point: 03/0C/00, then 07/27/00 until restart; nothing acknowledged lost"
done

# ---- torn segment tail: rodd killed in the middle of an append ----------------------
rodtest_iscsi write "$url" 8192 64 7 || fail "write before torn_tail"
arm torn_tail
rc=0
rodtest_iscsi write "$url" 8256 64 8 2>/dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "a write was acknowledged although rodd died appending it"
for _ in $(seq 100); do kill -0 "$RODD_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$RODD_PID" 2>/dev/null && fail "torn_tail did not kill rodd"
wait "$RODD_PID" || true
RODD_PID=
start_rodd
url=$(rod_url 0)
grep -q "discarding .* bytes of an incomplete batch" "$ROD_LOG" || fail "replay did not cut the torn tail"
rodtest_iscsi verify "$url" 8192 64 7 || fail "data before the torn append"
zeros 8256 64 || fail "the torn append left data"
rodtest_iscsi verify "$url" 0 256 1 || fail "earlier data after the torn tail"
rodtest_iscsi write "$url" 8256 64 9 || fail "write after the torn tail"
rodtest_iscsi verify "$url" 8256 64 9 || fail "write after the torn tail reads back"
note "torn_tail: replay cut the torn batch, earlier data intact, writes go on"

# ---- a flipped bit in a stored chunk: 03/11/00 for that grain only, scrub reports it ----
# grain 2001 = LBA 16008-16015 (512-byte blocks)
arm "bitflip:grain=2001"
rodtest_iscsi write "$url" 16000 32 11 || fail "write of the bitflip range"
expect_rc 4 rodtest_iscsi verify "$url" 16008 8 11
expect_stderr 'CHECK CONDITION 3/11/00'
expect_rc 4 rodtest_iscsi verify "$url" 16012 1 11
expect_stderr 'CHECK CONDITION 3/11/00'
rodtest_iscsi verify "$url" 16000 8 11 || fail "the grain before the flipped one"
rodtest_iscsi verify "$url" 16016 16 11 || fail "the grains after the flipped one"
rodctl vol snap v1 --suffix s1 >/dev/null
expect_rc 5 rodctl --json array scrub --wait
j=$(rodctl --json job list | jq '[.jobs[] | select(.kind == "scrub" and .target == "array")] | last')
expect_eq 1 "$(jq -r .result.chunks_damaged <<<"$j")" "damaged chunks found by scrub"
expect_eq 2 "$(jq -r '.result.damaged[0].refs | length' <<<"$j")" "references (volume and snapshot)"
expect_eq "16008 8" "$(jq -r '.result.damaged[0].refs[] | select(.volume == "v1") | "\(.lba) \(.blocks)"' <<<"$j")" \
	"damaged LBAs of v1"
expect_eq "v1.s1" "$(jq -r '.result.damaged[0].refs[] | select(.snapshot) | .volume' <<<"$j")" "snapshot ref"
expect_eq "checksum mismatch" "$(jq -r '.result.damaged[0].error' <<<"$j")" "error"
rodctl array scrub --wait >"$ROD_TMP/scrub.txt" 2>&1 || true
grep -q "volume v1 LBA 16008-16015" "$ROD_TMP/scrub.txt" || fail "human scrub output: $(cat "$ROD_TMP/scrub.txt")"
note "bitflip: 03/11/00 for one grain, scrub lists v1 and v1.s1 LBA 16008"
stop_rodd
