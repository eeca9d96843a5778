#!/usr/bin/env bash
# Jobs: a rate-limited scrub shows progress, rate and ETA while it runs and stops when
# cancelled; GC runs as a job; job list/show/cancel, --watch output, exit codes.
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

# GC as a job; it cannot be stopped once running
j=$(rodctl --json array gc --full --wait)
expect_eq "gc done true" "$(jq -r '"\(.kind) \(.state) \(.result.full)"' <<<"$j")" "gc job"
gid=$(jq -r .id <<<"$j")
expect_rc 3 rodctl job cancel "$gid"
rodctl array gc | grep -q '^job [0-9]* started' || fail "human array gc"

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
stop_rodd
note "ok"
