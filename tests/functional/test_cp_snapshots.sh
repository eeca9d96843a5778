#!/usr/bin/env bash
# Snapshots, clones, array-side copies, revert, rename, the destroyed-items area
# (destroy / recover / eradicate / expiry), array space and settings, host set: every
# data claim checked by reading the volumes back through iSCSI.
. "$(dirname "$0")/lib.sh"

start_rodd
url=$(rod_quick_lun v1 16M)
rodtest_iscsi write "$url" 0 256 11

# vol snap: named suffix and the default UTC-time suffix
j=$(rodctl --json vol snap v1 --suffix s1)
expect_eq "v1.s1 true v1" "$(jq -r '"\(.name) \(.snapshot) \(.source)"' <<<"$j")" "snapshot"
n=$(rodctl --json vol snap v1 | jq -r .name)
[[ $n =~ ^v1\.[0-9]{8}-[0-9]{6}$ ]] || fail "default snapshot name $n"
expect_rc 3 rodctl vol snap v1 --suffix s1
expect_stderr 'already exists'
expect_rc 1 rodctl vol snap v1 --suffix 'bad/suffix'
expect_rc 2 rodctl vol snap nosuch
expect_rc 1 rodctl vol snap v1.s1
expect_eq "2" "$(rodctl --json vol snap list v1 | jq '.snapshots | length')" "snapshots of v1"
rodctl vol snap list | grep -q '^v1\.s1 ' || fail "human snap list: $(rodctl vol snap list)"
expect_rc 2 rodctl vol snap list nosuch
# snapshots are not volumes in vol list
expect_eq "v1" "$(rodctl --json vol list | jq -r '[.volumes[].name] | join(",")')" "vol list"

# overwrite the volume: the snapshot keeps the old data (read through a clone)
rodtest_iscsi write "$url" 0 256 22
j=$(rodctl --json vol clone v1.s1 c1)
expect_eq "c1 false v1.s1" "$(jq -r '"\(.name) \(.snapshot) \(.source)"' <<<"$j")" "clone"
expect_rc 3 rodctl vol clone v1 c1
expect_rc 2 rodctl vol clone nosuch c2
expect_rc 1 rodctl vol clone v1 'bad.name'
c1=$(rod_url "$(rodctl --json host connect all c1 | jq -r .lun)")
rodtest_iscsi verify "$c1" 0 256 11 || fail "clone of the snapshot does not read the old data"
rodtest_iscsi verify "$url" 0 256 22 || fail "volume lost its new data"

# vol copy: creates the target, refuses to overwrite without --overwrite, checks sizes
j=$(rodctl --json vol copy v1 cp1)
expect_eq "true" "$(jq -r .created <<<"$j")" "copy created the target"
cp1=$(rod_url "$(rodctl --json host connect all cp1 | jq -r .lun)")
rodtest_iscsi verify "$cp1" 0 256 22 || fail "copy does not read the source's data"
expect_rc 3 rodctl vol copy v1.s1 cp1
expect_stderr 'add --overwrite'
rodctl vol copy v1.s1 cp1 --overwrite | grep -q 'existing volume "cp1"' || fail "human copy"
rodtest_iscsi verify "$cp1" 0 256 11 || fail "copy --overwrite does not read the snapshot's data"
rodctl vol create small --size 8M >/dev/null
expect_rc 1 rodctl vol copy v1 small --overwrite
expect_stderr 'resize the target'
expect_rc 1 rodctl vol copy v1 v1.s1 --overwrite
expect_rc 2 rodctl vol copy nosuch cp9

# vol revert: the volume reads the snapshot again (the LUN stays)
rodctl --json vol revert v1 s1 >/dev/null
rodtest_iscsi verify "$url" 0 256 11 || fail "revert: volume does not read the snapshot's data"
expect_rc 1 rodctl vol revert v1 c1
expect_rc 2 rodctl vol revert v1 nosuch

# vol rename: LUN maps and snapshots follow
lun=$(rodctl --json vol show v1 | jq -r '.connections[0].lun')
j=$(rodctl --json vol rename v1 db1)
expect_eq "db1 $lun" "$(jq -r '"\(.name) \(.connections[0].lun)"' <<<"$j")" "renamed volume keeps its LUN"
rodtest_iscsi verify "$url" 0 256 11 || fail "renamed volume's LUN data"
expect_eq "db1.s1" "$(rodctl --json vol show db1.s1 | jq -r .name)" "snapshot follows the rename"
expect_rc 2 rodctl vol show v1
expect_rc 3 rodctl vol rename db1 c1
expect_rc 1 rodctl vol rename db1 'x y'

# destroy / recover: data kept, hidden from vol list, shown with --destroyed
rodctl vol destroy c1 | grep -q 'vol recover c1' || fail "human destroy"
expect_rc 2 rodctl vol show c1
[ "$(rodctl --json vol list | jq '[.volumes[] | select(.name == "c1")] | length')" = 0 ] || fail "destroyed c1 listed"
j=$(rodctl --json vol list --destroyed)
expect_eq "c1" "$(jq -r '[.volumes[].name] | join(",")' <<<"$j")" "destroyed items"
[ "$(jq -r '.volumes[0].eradicate_at' <<<"$j")" != null ] || fail "no eradication time: $j"
rodctl vol list --destroyed | grep -q '^c1 ' || fail "human destroyed list"
expect_eq "1" "$(rodctl --json array space | jq .destroyed_items)" "destroyed items in array space"
rodctl --json vol recover c1 >/dev/null
expect_rc 2 rodctl vol recover c1
c1=$(rod_url "$(rodctl --json host connect all c1 | jq -r .lun)")
rodtest_iscsi verify "$c1" 0 256 11 || fail "recovered volume lost its data"

# eradicate: only destroyed items; frees the space (physical at once, used after GC)
expect_rc 3 rodctl vol eradicate c1
expect_stderr 'destroy it first'
expect_rc 2 rodctl vol eradicate nosuch
big=$(rod_url "$(rodctl vol create big --size 32M >/dev/null; rodctl --json host connect all big | jq -r .lun)")
rodtest_iscsi write "$big" 0 49152 33
rodctl array gc --wait >/dev/null
s0=$(rodctl --json array space)
rodctl vol destroy big >/dev/null
s1=$(rodctl --json array space)
expect_eq "$(jq .physical <<<"$s0")" "$(jq .physical <<<"$s1")" "a destroyed volume still holds its space"
out=$(rodctl vol eradicate big --wait) || fail "eradicate --wait"
grep -q 'eradicated; job' <<<"$out" || fail "human eradicate: $out"
expect_rc 2 rodctl vol recover big
# the eradicate job's GC pass reclaimed the space
rodctl --json job list | jq -e '[.jobs[] | select(.kind == "eradicate")][-1].result.segments_freed >= 1' >/dev/null ||
	fail "GC freed no segment after eradicating big"
s2=$(rodctl --json array space)
p0=$(jq .physical <<<"$s0"); p2=$(jq .physical <<<"$s2")
u0=$(jq .used <<<"$s0"); u2=$(jq .used <<<"$s2")
[ $((p0 - p2)) -ge $((20 << 20)) ] || fail "physical space did not drop by the 24 MiB of big: $p0 -> $p2"
[ $((u0 - u2)) -ge $((8 << 20)) ] || fail "used space did not drop after GC: $u0 -> $u2"
rodctl array space | grep -q '^reduction: ' || fail "human array space"

# array set: the recovery window; the daemon eradicates expired items by itself
expect_eq "86400" "$(rodctl --json array set --recovery-window 24h | jq .recovery_window_s)" "window"
expect_rc 1 rodctl array set --recovery-window soon
expect_rc 1 rodctl array set --recovery-window 999d
expect_rc 1 rodctl array set
rodctl vol destroy cp1 >/dev/null
rodctl array set --recovery-window 1s >/dev/null
for _ in $(seq 50); do
	[ "$(rodctl --json vol list --destroyed | jq '.volumes | length')" = 0 ] && break
	sleep 0.2
done
expect_eq "0" "$(rodctl --json vol list --destroyed | jq '.volumes | length')" "expired items eradicated"
expect_rc 2 rodctl vol recover cp1
rodctl array set --recovery-window 2d >/dev/null
rodctl vol destroy small >/dev/null

# persistence: the window and the destroyed-items area survive a restart
stop_rodd
start_rodd
expect_eq "172800" "$(rodctl --json array show | jq .recovery_window_s)" "window after restart"
rodctl array show | grep -q '^recovery: *destroyed items kept 172800 s$' || fail "human array show: recovery window"
expect_eq "small" "$(rodctl --json vol list --destroyed | jq -r '[.volumes[].name] | join(",")')" "destroyed after restart"
rodctl vol recover small >/dev/null
expect_eq "db1.s1" "$(rodctl --json vol snap list db1 | jq -r '.snapshots[] | select(.name == "db1.s1") | .name')" \
	"snapshot after restart"

# host set: CHAP switched on and off for a live host
printf 'secret-of-all-1\n' >"$ROD_TMP/s1"
j=$(rodctl --json host set all --chap-user alluser --chap-secret-file "$ROD_TMP/s1")
expect_eq "alluser" "$(jq -r .chap_user <<<"$j")" "chap user set"
url=$(rod_url 0)
expect_rc 3 rodtest_iscsi login "$url"
rodtest_iscsi login "$(rod_url 0 alluser%secret-of-all-1)" || fail "login with the new CHAP secret"
expect_rc 1 rodctl host set all
expect_rc 1 rodctl host set all --mutual-user m --mutual-secret-file "$ROD_TMP/s1"
expect_stderr 'must differ'
expect_rc 2 rodctl host set nosuch --no-chap
expect_eq "null" "$(rodctl --json host set all --no-chap | jq -r .chap_user)" "chap cleared"
rodtest_iscsi login "$url" || fail "login without CHAP after --no-chap"
stop_rodd
note "ok"
