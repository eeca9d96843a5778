#!/usr/bin/env bash
# /metrics: the exposition parses (every line a comment, a HELP/TYPE pair before its
# family's samples, or a well-formed sample; counters end in _total; histogram buckets
# cumulative with +Inf = _count), and the values move with I/O done through iSCSI:
# per-volume ops/bytes/latency, errors by sense key, copy offload (ODX and zero token),
# live ROD tokens, iSCSI sessions, space figures (cached: they move within
# metrics_interval, 1 s here, and say their age), GC passes and jobs.
. "$(dirname "$0")/lib.sh"
RODTEST_COPY=${RODTEST_COPY:-$(dirname "$RODTEST_ISCSI")/rodtest-copy}
[ -x "$RODTEST_COPY" ] || fail "rodtest-copy not found next to rodtest-iscsi (set RODTEST_COPY)"

start_rodd --http 127.0.0.1:0 --limit metrics_interval=1s
HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
[ -n "$HTTP" ] || fail "rodd did not log its HTTP address"

# scrape FILE: /metrics (no token needed) into FILE, checked line by line.
scrape() {
	local code
	code=$(curl -s -o "$1" -w '%{http_code}' "http://$HTTP/metrics") || fail "curl /metrics"
	expect_eq 200 "$code" "GET /metrics"
	awk '
	function bad(msg) { printf "line %d: %s: %s\n", NR, msg, $0; err = 1; exit 1 }
	/^# HELP / { if ($3 in help) bad("second HELP"); help[$3] = 1; next }
	/^# TYPE / {
		if (!($3 in help)) bad("TYPE before HELP")
		if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) bad("unknown type")
		if ($4 == "counter" && $3 !~ /_total$/) bad("counter without _total")
		type[$3] = $4; cur = $3; next
	}
	/^#/ { bad("unknown comment") }
	{
		if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? ([-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)$/)
			bad("not a sample")
		name = $0; sub(/[{ ].*/, "", name)
		base = name
		if (type[cur] == "histogram") sub(/_(bucket|sum|count)$/, "", base)
		if (base != cur) bad("sample outside its family " cur)
		n++
	}
	END { if (!err && n < 20) { print "only " n " samples"; exit 1 } }
	' "$1" >"$ROD_TMP/awk.out" || fail "/metrics does not parse: $(cat "$ROD_TMP/awk.out")"
}

# val FILE SERIES: the value of one series, exactly as written (labels included).
val() {
	local v
	v=$(awk -v s="$2" '{ i = length($0); while (substr($0, i, 1) != " ") i--;
		if (substr($0, 1, i - 1) == s) print substr($0, i + 1) }' "$1")
	[ -n "$v" ] || fail "series $2 missing from /metrics"
	echo "$v"
}

# histogram FILE NAME VOLUME: buckets cumulative, +Inf bucket == _count
histogram_ok() {
	awk -v n="$2_bucket{volume=\"$3\"," '
	index($0, n) == 1 { v = $NF + 0; if (v < last) { print "not cumulative: " $0; exit 1 } last = v; inf = v }
	END { print inf }' "$1" >"$ROD_TMP/inf" || fail "$2: $(cat "$ROD_TMP/inf")"
	expect_eq "$(cat "$ROD_TMP/inf")" "$(val "$1" "$2_count{volume=\"$3\"}")" "$2 +Inf bucket vs _count"
}

A=$(rod_quick_lun a 64M)
B=$(rod_quick_lun b 64M)
scrape "$ROD_TMP/m0"
for s in read_ops_total write_ops_total read_bytes_total write_bytes_total; do
	expect_eq 0 "$(val "$ROD_TMP/m0" "rodstore_volume_${s}{volume=\"a\"}")" "$s before I/O"
done
expect_eq 67108864 "$(val "$ROD_TMP/m0" 'rodstore_volume_size_bytes{volume="a"}')" "volume size"
val "$ROD_TMP/m0" rodstore_data_reduction_ratio >/dev/null
val "$ROD_TMP/m0" rodstore_gc_runs_total >/dev/null
val "$ROD_TMP/m0" rodstore_space_capacity_bytes >/dev/null

note "reads and writes through iSCSI"
rodtest_iscsi write "$A" 0 64 7 || fail "write"
rodtest_iscsi verify "$A" 0 64 7 || fail "verify"
scrape "$ROD_TMP/m1"
w_ops=$(val "$ROD_TMP/m1" 'rodstore_volume_write_ops_total{volume="a"}')
[ "$w_ops" -ge 1 ] || fail "write ops did not move ($w_ops)"
expect_eq 32768 "$(val "$ROD_TMP/m1" 'rodstore_volume_write_bytes_total{volume="a"}')" "write bytes after 64 blocks"
r_bytes=$(val "$ROD_TMP/m1" 'rodstore_volume_read_bytes_total{volume="a"}')
[ "$r_bytes" -ge 32768 ] || fail "read bytes $r_bytes after reading 64 blocks"
[ "$(val "$ROD_TMP/m1" 'rodstore_volume_read_ops_total{volume="a"}')" -ge 1 ] || fail "read ops did not move"
expect_eq 0 "$(val "$ROD_TMP/m1" 'rodstore_volume_write_bytes_total{volume="b"}')" "b untouched"
histogram_ok "$ROD_TMP/m1" rodstore_volume_write_latency_seconds a
histogram_ok "$ROD_TMP/m1" rodstore_volume_read_latency_seconds a
expect_eq "$w_ops" "$(val "$ROD_TMP/m1" 'rodstore_volume_write_latency_seconds_count{volume="a"}')" "latency count vs ops"
sum=$(val "$ROD_TMP/m1" 'rodstore_volume_write_latency_seconds_sum{volume="a"}')
awk -v s="$sum" 'BEGIN { exit !(s > 0) }' || fail "write latency sum $sum"
# space figures come from a cache recomputed every metrics_interval (1 s) while scraped
for _ in $(seq 50); do
	scrape "$ROD_TMP/ms"
	[ "$(val "$ROD_TMP/ms" rodstore_space_logical_bytes)" -ge 32768 ] &&
		[ "$(val "$ROD_TMP/ms" 'rodstore_volume_logical_bytes{volume="a"}')" -ge 32768 ] && break
	sleep 0.2
done
logical=$(val "$ROD_TMP/ms" rodstore_space_logical_bytes)
[ "$logical" -ge 32768 ] || fail "array logical bytes $logical after writing 32 KiB"
[ "$(val "$ROD_TMP/ms" 'rodstore_volume_logical_bytes{volume="a"}')" -ge 32768 ] || fail "volume logical bytes"
age=$(val "$ROD_TMP/ms" rodstore_space_figures_age_seconds)
awk -v a="$age" 'BEGIN { exit !(a >= 0 && a < 3) }' || fail "space figures $age s old with metrics_interval 1 s"
rodtest_iscsi write "$A" 64 128 8 || fail "second write"
scrape "$ROD_TMP/m2"
expect_eq 98304 "$(val "$ROD_TMP/m2" 'rodstore_volume_write_bytes_total{volume="a"}')" "write bytes after 192 blocks"

note "errors by sense key"
ill0=$(val "$ROD_TMP/m2" 'rodstore_scsi_errors_total{sense_key="illegal_request"}')
# past the end of the 64 MiB LUN (131072 blocks): 05/21/00
expect_rc 4 rodtest_iscsi write "$A" 131070 8 9
scrape "$ROD_TMP/m3"
ill1=$(val "$ROD_TMP/m3" 'rodstore_scsi_errors_total{sense_key="illegal_request"}')
[ "$ill1" -gt "$ill0" ] || fail "illegal_request errors did not move ($ill0 -> $ill1)"
expect_eq 98304 "$(val "$ROD_TMP/m3" 'rodstore_volume_write_bytes_total{volume="a"}')" "a failed write moves no bytes"

note "copy offload: POPULATE TOKEN + WRITE USING TOKEN, zero token"
"$RODTEST_COPY" pt "$A" 0:128 "$ROD_TMP/tok" >/dev/null || fail "POPULATE TOKEN"
scrape "$ROD_TMP/m4"
[ "$(val "$ROD_TMP/m4" rodstore_rod_tokens_live)" -ge 1 ] || fail "no live token after POPULATE TOKEN"
expect_eq 1 "$(val "$ROD_TMP/m4" rodstore_rod_tokens_created_total)" "tokens created"
"$RODTEST_COPY" wut "$B" "$ROD_TMP/tok" 0:128 >/dev/null || fail "WRITE USING TOKEN"
"$RODTEST_COPY" wut "$B" "$ROD_TMP/tok" 1000:16 --zero-token >/dev/null || fail "WRITE USING TOKEN (zero)"
scrape "$ROD_TMP/m5"
expect_eq 1 "$(val "$ROD_TMP/m5" 'rodstore_copy_offload_ops_total{kind="odx"}')" "odx ops"
expect_eq 65536 "$(val "$ROD_TMP/m5" 'rodstore_copy_offload_bytes_total{kind="odx"}')" "odx bytes"
expect_eq 1 "$(val "$ROD_TMP/m5" 'rodstore_copy_offload_ops_total{kind="zero"}')" "zero-token ops"
expect_eq 8192 "$(val "$ROD_TMP/m5" 'rodstore_copy_offload_bytes_total{kind="zero"}')" "zero-token bytes"
expect_eq 0 "$(val "$ROD_TMP/m5" 'rodstore_copy_offload_ops_total{kind="xcopy"}')" "xcopy ops"
rodtest_iscsi verify "$B" 0 64 7 || fail "b does not hold the copied blocks"

note "EXTENDED COPY"
DA=$("$RODTEST_COPY" desig "$A") || fail "designator of a"
DB=$("$RODTEST_COPY" desig "$B") || fail "designator of b"
"$RODTEST_COPY" xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:64:0:4096 >/dev/null || fail "EXTENDED COPY"
scrape "$ROD_TMP/m6"
expect_eq 1 "$(val "$ROD_TMP/m6" 'rodstore_copy_offload_ops_total{kind="xcopy"}')" "xcopy ops"
expect_eq 32768 "$(val "$ROD_TMP/m6" 'rodstore_copy_offload_bytes_total{kind="xcopy"}')" "xcopy bytes"

note "iSCSI sessions"
expect_eq 0 "$(val "$ROD_TMP/m6" rodstore_iscsi_sessions)" "sessions when idle"
mkfifo "$ROD_TMP/in"
rodtest_iscsi session "$A" <"$ROD_TMP/in" >"$ROD_TMP/session.out" 2>&1 &
SPID=$!
exec 7>"$ROD_TMP/in"
echo "tur 0" >&7
for _ in $(seq 100); do grep -q . "$ROD_TMP/session.out" && break; sleep 0.1; done
scrape "$ROD_TMP/m7"
expect_eq 1 "$(val "$ROD_TMP/m7" rodstore_iscsi_sessions)" "sessions with one client logged in"
[ "$(val "$ROD_TMP/m7" rodstore_iscsi_pdus_received_total)" -gt 0 ] || fail "no PDUs counted"
exec 7>&-
wait "$SPID" || true

note "GC pass and jobs"
expect_eq 0 "$(val "$ROD_TMP/m7" rodstore_gc_running)" "no GC running"
expect_eq 0 "$(val "$ROD_TMP/m7" 'rodstore_jobs{state="running"}')" "no job running"
j=$(rodctl --json array gc --full --wait)
scrape "$ROD_TMP/m8"
expect_eq "$(jq .done <<<"$j")" "$(val "$ROD_TMP/m8" 'rodstore_gc_pass_segments{state="done"}')" "GC pass segments done"
expect_eq "$(jq .total <<<"$j")" "$(val "$ROD_TMP/m8" 'rodstore_gc_pass_segments{state="total"}')" "GC pass segments total"
expect_eq "$(jq .result.bytes_read <<<"$j")" "$(val "$ROD_TMP/m8" rodstore_gc_pass_read_bytes)" "GC pass bytes read"
[ "$(val "$ROD_TMP/m8" rodstore_gc_runs_total)" -ge 1 ] || fail "gc runs did not move"

note "the exposition does not need a token, /api does"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/api/v1/volumes")
expect_eq 401 "$code" "/api without a token"
stop_rodd
note "ok"
