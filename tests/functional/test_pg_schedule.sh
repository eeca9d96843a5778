# Protection group schedules and retention with the injectable clock (rodd started with
# ROD_TEST_TIME_OFFSET; rodctl pg tick --advance moves the clock and runs the scheduler):
# a scheduled snapshot fires once per slot and holds the data of its time; retention
# "keep all for 1d, then 4 per day for 2d" keeps exactly that over four simulated days
# and destroys the rest; a daemon that was down for 10 hours takes one catch-up
# snapshot, not ten.
. "$(dirname "$0")/lib.sh"

export ROD_TEST_TIME_OFFSET=0
start_rodd
u=$(rod_quick_lun v1 8M)
rodctl pg create s >/dev/null
rodctl pg add s v1 >/dev/null
expect_rc 1 rodctl pg schedule s
expect_rc 1 rodctl pg schedule s --every 1x
expect_rc 1 rodctl pg schedule s --every 1d --at 25:00
rodctl pg schedule s --every 1d --at 02:30 >/dev/null
[[ $(rodctl --json pg show s | jq -r .schedule.next_run) == *T02:30:00Z ]] || fail "daily run not at 02:30"
rodctl pg schedule s --every 1h >/dev/null
[[ $(rodctl --json pg show s | jq -r .schedule.next_run) == *:00:00Z ]] || fail "hourly run not on the hour"
expect_eq 0 "$(rodctl --json pg tick | jq '.taken | length')" "snapshots before the first slot"

# the scheduled snapshot holds what was written before it, not after
rodtest_iscsi write "$u" 0 64 5
j=$(rodctl --json pg tick --advance 1h)
expect_eq 1 "$(jq '.taken | length' <<<"$j")" "snapshots at the first slot"
first=$(jq -r '.taken[0].suffix' <<<"$j")
rodtest_iscsi write "$u" 0 64 6
expect_eq 0 "$(rodctl --json pg tick | jq '.taken | length')" "second run in the same slot"
rodctl pg restore s "$first" --clone-prefix c- >/dev/null
l=$(rodctl --json host connect all c-v1 | jq -r .lun)
rodtest_iscsi verify "$(rod_url "$l")" 0 64 5 || fail "scheduled snapshot does not hold the data of its time"
expect_eq scheduled "$(rodctl --json pg show s | jq -r .last_snapshot.kind)" "kind"

# retention over four simulated days of hourly snapshots
expect_rc 1 rodctl pg retention s --then-per-day 4
expect_rc 1 rodctl pg retention s --keep-all 1d --then-per-day 4
rodctl pg retention s --keep-all 1d --then-per-day 4 --for 2d >/dev/null
rodctl pg snap s --suffix manual-keep >/dev/null   # retention leaves manual snapshots alone
for i in $(seq 95); do
	j=$(rodctl --json pg tick --advance 1h)
	expect_eq 1 "$(jq '.taken | length' <<<"$j")" "snapshots taken at hour $i"
done
now=$(jq .now_s <<<"$j")
show=$(rodctl --json pg show s)
sched=$(jq -c --argjson now "$now" '[.snapshots[] | select(.kind=="scheduled") | {c: .created_s, age: ($now - .created_s)}]' <<<"$show")
expect_eq 0 "$(jq '[.[] | select(.age >= 3*86400)] | length' <<<"$sched")" "snapshots older than 3 days"
expect_eq 24 "$(jq '[.[] | select(.age < 86400)] | length' <<<"$sched")" "snapshots of the last day (all kept)"
# between 1 and 3 days old: one per 6-hour slice of the day
mid=$(jq -c '[.[] | select(.age >= 86400) | (.c / 21600 | floor)]' <<<"$sched")
expect_eq "$(jq 'length' <<<"$mid")" "$(jq 'unique | length' <<<"$mid")" "one snapshot per slice"
n=$(jq 'length' <<<"$mid")
[ "$n" -ge 8 ] && [ "$n" -le 9 ] || fail "expected 8 or 9 per-day snapshots over 2 days, got $n"
jq -e '.snapshots[] | select(.suffix=="manual-keep")' <<<"$show" >/dev/null || fail "retention removed a manual snapshot"
# the engine snapshots of pruned group snapshots are gone too
expect_eq "$(jq '.snapshots | length' <<<"$show")" "$(rodctl --json vol snap list v1 | jq '.snapshots | length')" \
	"engine snapshots of v1 vs group snapshots"

# rodd down for 10 hours: one catch-up snapshot when it comes back
off=$(rodctl --json pg tick | jq .offset_s)
last=$(rodctl --json pg show s | jq '[.snapshots[].created_s] | max')
stop_rodd
export ROD_TEST_TIME_OFFSET=$((off + 36000))
start_rodd
for _ in $(seq 50); do
	after=$(rodctl --json pg show s | jq --argjson l "$last" '[.snapshots[] | select(.created_s > $l)] | length')
	[ "$after" -ge 1 ] && break
	sleep 0.1
done
sleep 1.5   # the scheduler runs every second: a burst would show by now
expect_eq 1 "$(rodctl --json pg show s | jq --argjson l "$last" '[.snapshots[] | select(.created_s > $l)] | length')" \
	"catch-up snapshots after 10 hours down"
expect_eq 0 "$(rodctl --json pg tick | jq '.taken | length')" "a second catch-up"
expect_eq 1 "$(rodctl --json pg tick --advance 1h | jq '.taken | length')" "next hourly run after the catch-up"
rodctl pg schedule s --off >/dev/null
expect_eq 0 "$(rodctl --json pg tick --advance 5h | jq '.taken | length')" "runs with the schedule off"
stop_rodd
note "ok"
