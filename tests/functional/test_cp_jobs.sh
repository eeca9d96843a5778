#!/usr/bin/env bash
# Jobs: a rate-limited scrub shows progress, rate and ETA while it runs and stops when
# cancelled; GC runs as a job with progress in segments, stops when cancelled and leaves
# the data readable; eradicate (by hand and at the end of the recovery window) reclaims
# space in a job; recover is recorded as one; job list/show/cancel, --watch output, exit
# codes.
. "$(dirname "$0")/lib.sh"

start_rodd
url=$(rod_quick_lun v1 64M)
rodtest_iscsi write "$url" 0 131072 5

# a scrub at 8 MiB/s of 64 MiB takes ~8 s: watch it move, then cancel it
j=$(rodctl --json vol scrub v1 --rate 8M)
id=$(jq -r .id <<<"$j")
expect_eq "scrub v1 bytes" "$(jq -r '"\(.kind) \(.target) \(.unit)"' <<<"$j")" "scrub job"
sleep 1.5
j=$(rodctl --json job show "$id")
expect_eq "running" "$(jq -r .state <<<"$j")" "scrub state"
expect_eq "$((64 << 20))" "$(jq -r .total <<<"$j")" "scrub total"
d1=$(jq -r .done <<<"$j")
[ "$d1" -gt 0 ] && [ "$d1" -lt $((64 << 20)) ] || fail "scrub progress $d1"
jq -e '.rate > 1000000 and .rate < 20000000 and .eta_s > 0' <<<"$j" >/dev/null || fail "rate/ETA: $j"
sleep 0.6
[ "$(rodctl --json job show "$id" | jq -r .done)" -gt "$d1" ] || fail "scrub progress does not move"
rodctl job show "$id" | grep -Eq '^state: +running' || fail "human job show"
rodctl job list | grep -Eq "^$id +scrub +v1 +running" || fail "human job list: $(rodctl job list)"
rodctl job cancel "$id" | grep -q "job $id" || fail "human job cancel"
for _ in $(seq 50); do
	[ "$(rodctl --json job show "$id" | jq -r .state)" = cancelled ] && break
	sleep 0.1
done
j=$(rodctl --json job show "$id")
expect_eq "cancelled" "$(jq -r .state <<<"$j")" "state after cancel"
[ "$(jq -r .done <<<"$j")" -lt $((64 << 20)) ] || fail "cancelled scrub ran to the end"
expect_rc 3 rodctl job cancel "$id"
expect_stderr 'already finished'
expect_rc 5 rodctl job show "$id" --watch

# a full scrub with --wait: plain progress lines when not on a terminal, exit 0
rodctl vol scrub v1 --wait >"$ROD_TMP/watch" || fail "scrub --wait failed"
grep -q 'scrub done 100.0%' "$ROD_TMP/watch" || fail "watch output: $(cat "$ROD_TMP/watch")"
j=$(rodctl --json job list | jq '.jobs[-1]')
expect_eq "done 0" "$(jq -r '"\(.state) \(.result.damaged_chunks)"' <<<"$j")" "finished scrub"

# GC as a job
j=$(rodctl --json array gc --full --wait)
expect_eq "gc done true" "$(jq -r '"\(.kind) \(.state) \(.result.full)"' <<<"$j")" "gc job"
gid=$(jq -r .id <<<"$j")
expect_rc 3 rodctl job cancel "$gid"
rodctl array gc | grep -q '^job [0-9]* started' || fail "human array gc"
for _ in $(seq 100); do [ "$(rodctl --json job list | jq -r '.jobs[-1].state')" = done ] && break; sleep 0.1; done

# GC progress and cancel: 96 MiB written twice leaves ~12 segments of garbage; a full
# pass at 8 MiB/s reads one 8 MiB segment a second
url2=$(rod_quick_lun g1 96M)
rodtest_iscsi write "$url2" 0 196608 7
rodtest_iscsi write "$url2" 0 196608 8
j=$(rodctl --json array gc --full --rate 8M)
gid=$(jq -r .id <<<"$j")
expect_eq "gc segments true" "$(jq -r '"\(.kind) \(.unit) \(.cancellable)"' <<<"$j")" "gc job fields"
d1=0
for _ in $(seq 100); do
	j=$(rodctl --json job show "$gid")
	d1=$(jq -r .done <<<"$j")
	[ "$d1" -ge 1 ] && break
	sleep 0.1
done
expect_eq "running" "$(jq -r .state <<<"$j")" "gc state"
jq -e '.total > .done and .percent > 0 and .percent < 100' <<<"$j" >/dev/null || fail "gc progress: $j"
for _ in $(seq 50); do
	[ "$(rodctl --json job show "$gid" | jq -r .done)" -gt "$d1" ] && break
	sleep 0.1
done
j=$(rodctl --json job show "$gid")
[ "$(jq -r .done <<<"$j")" -gt "$d1" ] || fail "gc progress does not move: $j"
jq -e '.rate > 0 and .eta_s > 0' <<<"$j" >/dev/null || fail "gc rate/ETA: $j"
rodctl job list | grep -Eq "^$gid +gc +array \(full\) +running" || fail "human job list: $(rodctl job list)"
rodctl job cancel "$gid" >/dev/null
for _ in $(seq 50); do
	[ "$(rodctl --json job show "$gid" | jq -r .state)" = cancelled ] && break
	sleep 0.1
done
j=$(rodctl --json job show "$gid")
expect_eq "cancelled" "$(jq -r .state <<<"$j")" "gc state after cancel"
jq -e '.done < .total and .result.segments_examined >= 1 and .result.bytes_read > 0' <<<"$j" >/dev/null ||
	fail "cancelled gc: $j"
rodtest_iscsi verify "$url2" 0 196608 8 || fail "data after a cancelled GC"
# a pass to the end frees the garbage; the data still reads back
j=$(rodctl --json array gc --full --wait)
jq -e '.state == "done" and .done == .total and .result.segments_freed > 0 and .result.bytes_freed > 0' \
	<<<"$j" >/dev/null || fail "gc after cancel: $j"
rodtest_iscsi verify "$url2" 0 196608 8 || fail "data after GC"

# recover is recorded as a job; eradicate reclaims the space in one
rodctl vol destroy g1 >/dev/null
r=$(rodctl --json vol recover g1)
rj=$(rodctl --json job show "$(jq -r .job <<<"$r")")
expect_eq "recover g1 done 1 1" "$(jq -r '"\(.kind) \(.target) \(.state) \(.done) \(.total)"' <<<"$rj")" "recover job"
used0=$(rodctl --json array space | jq .used)
rodctl vol destroy g1 >/dev/null
rodctl vol eradicate g1 | grep -q 'eradicated; job [0-9]* reclaims its space' || fail "human eradicate"
ej=$(rodctl --json job list | jq '[.jobs[] | select(.kind == "eradicate")][-1]')
rodctl job show "$(jq -r .id <<<"$ej")" --watch >/dev/null || fail "eradicate job failed"
ej=$(rodctl --json job show "$(jq -r .id <<<"$ej")")
expect_eq 'g1 ["g1"]' "$(jq -c -r '"\(.target) \(.result.eradicated)"' <<<"$ej")" "eradicate job"
jq -e '.state == "done" and .result.bytes_freed > 0' <<<"$ej" >/dev/null || fail "eradicate job: $ej"
[ "$(rodctl --json array space | jq .used)" -lt "$used0" ] || fail "eradicate freed nothing"
# at the end of the recovery window rodd eradicates by itself, in a job too
rodctl vol create g2 --size 8M >/dev/null
rodctl array set --recovery-window 0 >/dev/null
rodctl vol destroy g2 >/dev/null
for _ in $(seq 100); do
	ej=$(rodctl --json job list | jq -c '[.jobs[] | select(.kind == "eradicate")][-1]')
	[ "$(jq -c .result.eradicated <<<"$ej")" = '["g2"]' ] && break
	sleep 0.1
done
expect_eq '1 expired item(s) done ["g2"]' "$(jq -r -c '"\(.target) \(.state) \(.result.eradicated)"' <<<"$ej")" \
	"automatic eradicate job"
rodctl array set --recovery-window 24h >/dev/null

# flatten: a chain of array-side copies, each written a little after its copy (so the
# next copy is one range entry deeper), is flattened by a job rodd starts by itself
# (past depth 4) and by hand; the data reads back
url3=$(rod_quick_lun f0 8M)
rodtest_iscsi write "$url3" 0 16384 21
prev=f0
for i in 1 2 3 4 5 6 7; do
	rodctl vol copy "$prev" "f$i" >/dev/null
	prev=f$i
	lun=$(rodctl --json host connect all "f$i" | jq -r .lun)
	rodtest_iscsi write "$(rod_url "$lun")" $((i * 64)) 8 $((30 + i))
done
for _ in $(seq 200); do
	fj=$(rodctl --json job list | jq -c '[.jobs[] | select(.kind == "flatten" and .target == "f7")][-1]')
	[ "$(jq -r .state <<<"$fj")" = done ] && break
	sleep 0.1
done
jq -e '.state == "done" and .unit == "bytes" and .result.automatic and .result.depth_before > 4 and
	.result.depth_after <= 4 and .done == .total and .total > 0' <<<"$fj" >/dev/null || fail "automatic flatten: $fj"
fj=$(rodctl --json vol flatten f7 --all --wait)
jq -e '.kind == "flatten" and .state == "done" and .cancellable and .result.all and .result.depth_after == 0' \
	<<<"$fj" >/dev/null || fail "vol flatten --all: $fj"
u7=$(rod_url "$lun")
for i in 0 1 2 3 4 5 6 7; do
	lo=$((i == 0 ? 0 : i * 64 + 8)) hi=$((i == 7 ? 16384 : (i + 1) * 64))
	rodtest_iscsi verify "$u7" "$lo" $((hi - lo)) 21 || fail "data of a flattened copy (blocks $lo-$hi)"
	[ "$i" -gt 0 ] && { rodtest_iscsi verify "$u7" $((i * 64)) 8 $((30 + i)) || fail "block $((i * 64)) of f7"; }
done
expect_rc 2 rodctl vol flatten nosuch

# finished jobs are listed after a restart, and new ids continue after them
last=$(rodctl --json job list | jq '.jobs[-1].id')
for _ in $(seq 50); do [ "$(rodctl --json job list | jq -r '.jobs[-1].state')" = done ] && break; sleep 0.1; done
before=$(rodctl --json job list | jq -c '[.jobs[] | {id, kind, state, done, total, result}]')
stop_rodd
start_rodd
expect_eq "$before" "$(rodctl --json job list | jq -c '[.jobs[] | {id, kind, state, done, total, result}]')" \
	"job history after restart"
expect_eq "cancelled" "$(rodctl --json job show "$id" | jq -r .state)" "cancelled scrub after restart"
nid=$(rodctl --json array gc | jq .id)
[ "$nid" -gt "$last" ] || fail "job id $nid reused after restart (last was $last)"

# errors
expect_rc 2 rodctl job show 999
expect_rc 2 rodctl job cancel 999
expect_rc 1 rodctl job show abc
expect_rc 2 rodctl vol scrub nosuch
expect_rc 1 rodctl vol scrub v1 --rate fast
expect_rc 1 rodctl array gc --rate fast
expect_rc 2 rodctl vol eradicate nosuch --wait
stop_rodd
note "ok"
