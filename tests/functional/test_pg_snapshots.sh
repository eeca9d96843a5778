# Protection groups: membership by name and pattern (later volumes join), crash-
# consistent group snapshots whose member snapshots hold the data of the snapshot
# point (read back through iSCSI from clones), restore by clone, revert in place with a
# safety snapshot, destroy with and without the snapshots, rodctl exit codes.
. "$(dirname "$0")/lib.sh"

start_rodd
u1=$(rod_quick_lun db-1 16M)
u2=$(rod_quick_lun db-2 16M)
rod_quick_lun other 16M >/dev/null
rodtest_iscsi write "$u1" 0 256 11
rodtest_iscsi write "$u2" 0 256 12

rodctl pg create g1 >/dev/null
expect_rc 3 rodctl pg create g1
expect_rc 2 rodctl pg show nope
expect_rc 2 rodctl pg add g1 no-such-volume
expect_rc 1 rodctl pg add g1
expect_rc 1 rodctl pg create 'bad.name'
expect_rc 1 rodctl pg snap g1          # no members yet
expect_rc 1 rodctl pg tick --advance 1h # tests only: rodd runs without ROD_TEST_TIME_OFFSET
rodctl pg add g1 --pattern 'db-*' >/dev/null
expect_rc 3 rodctl pg add g1 --pattern 'db-*'
expect_eq '["db-1","db-2"]' "$(rodctl --json pg show g1 | jq -c .members)" "members by pattern"
# a volume created later that matches joins by itself
rod_quick_lun db-3 8M >/dev/null
expect_eq '["db-1","db-2","db-3"]' "$(rodctl --json pg show g1 | jq -c .members)" "members after db-3"

j=$(rodctl --json pg snap g1 --suffix s1)
expect_eq '["db-1.g1-s1","db-2.g1-s1","db-3.g1-s1"]' "$(jq -c '[.members[].snapshot]' <<<"$j")" "member snapshots"
expect_rc 3 rodctl pg snap g1 --suffix s1
expect_eq "db-1.g1-s1" "$(rodctl --json vol snap list db-1 | jq -r '.snapshots[].name')" "engine snapshot"
expect_eq "s1" "$(rodctl --json pg show g1 | jq -r .last_snapshot.suffix)" "last snapshot"
rodctl pg show g1 | grep -q "snap space" || fail "pg show lacks the snapshot space"

# new data after the snapshot point
rodtest_iscsi write "$u1" 0 256 21
rodtest_iscsi write "$u2" 0 256 22

# restore: clones hold the snapshot's data; the volumes keep theirs
rodctl pg restore g1 s1 --clone-prefix r- >/dev/null
expect_rc 3 rodctl pg restore g1 s1 --clone-prefix r-
expect_rc 2 rodctl pg restore g1 nope --clone-prefix x-
expect_rc 1 rodctl pg restore g1 s1
l1=$(rodctl --json host connect all r-db-1 | jq -r .lun)
l2=$(rodctl --json host connect all r-db-2 | jq -r .lun)
rodtest_iscsi verify "$(rod_url "$l1")" 0 256 11 || fail "clone of db-1 does not hold the snapshot's data"
rodtest_iscsi verify "$(rod_url "$l2")" 0 256 12 || fail "clone of db-2 does not hold the snapshot's data"
rodtest_iscsi verify "$u1" 0 256 21 || fail "db-1 changed by the restore"

# revert in place: a safety snapshot first, then the members read as at s1
j=$(rodctl --json pg revert g1 g1-s1)     # the member snapshots' suffix works too
safety=$(jq -r .safety_snapshot <<<"$j")
[[ $safety == safety-* ]] || fail "no safety snapshot in the revert answer: $j"
rodtest_iscsi verify "$u1" 0 256 11 || fail "db-1 not reverted"
rodtest_iscsi verify "$u2" 0 256 12 || fail "db-2 not reverted"
expect_eq "safety" "$(rodctl --json pg show g1 | jq -r --arg s "$safety" '.snapshots[] | select(.suffix==$s) | .kind')" "safety kind"
rodctl pg restore g1 "$safety" --clone-prefix sf- >/dev/null
l3=$(rodctl --json host connect all sf-db-1 | jq -r .lun)
rodtest_iscsi verify "$(rod_url "$l3")" 0 256 21 || fail "the safety snapshot does not hold the pre-revert data"

# a member removed no longer gets snapshots; groups survive a restart
rodctl pg remove g1 --pattern 'db-*' >/dev/null
rodctl pg add g1 db-2 >/dev/null
expect_rc 2 rodctl pg remove g1 db-1
rodctl pg snap g1 --suffix s2 >/dev/null
stop_rodd
start_rodd
expect_eq '["db-2"]' "$(rodctl --json pg show g1 | jq -c .members)" "members after restart"
expect_eq "3" "$(rodctl --json pg show g1 | jq '.snapshots | length')" "group snapshots after restart"
expect_eq "db-2.g1-s2" "$(rodctl --json vol snap list db-2 | jq -r '.snapshots[].name' | grep s2)" "s2 of db-2"
rodctl --json vol snap list db-1 | jq -r '.snapshots[].name' | grep -q s2 && fail "db-1 got snapshot s2"
expect_eq "g1" "$(rodctl --json pg list | jq -r '.groups[].name')" "pg list"

# destroy keeps the snapshots unless told
rodctl pg destroy g1 >/dev/null
expect_rc 2 rodctl pg show g1
rodctl --json vol snap list db-1 | jq -r '.snapshots[].name' | grep -qx db-1.g1-s1 || fail "destroy dropped the snapshots"
rodctl pg create g2 >/dev/null
rodctl pg add g2 other >/dev/null
rodctl pg snap g2 --suffix x >/dev/null
rodctl pg destroy g2 --with-snapshots >/dev/null
[ -z "$(rodctl --json vol snap list other | jq -r '.snapshots[].name')" ] || fail "--with-snapshots kept them"
stop_rodd
note "ok"
