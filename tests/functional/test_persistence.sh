#!/usr/bin/env bash
# Restart persistence: volumes, hosts, connections (LUN maps) and data written
# through iSCSI survive SIGTERM (exit 0) and a restart on the same data dir and port.
. "$(dirname "$0")/lib.sh"
start_rodd

I=iqn.1994-05.com.redhat:persist
rodctl vol create data1 --size 32M >/dev/null
rodctl vol create data2 --size 8M --block-size 4096 >/dev/null
rodctl host create h1 --iqn $I >/dev/null
printf 'persist-secret-1\n' >"$ROD_TMP/s1"
rodctl host create h2 --iqn iqn.2000-01.org.test:h2 --chap-user u2 --chap-secret-file "$ROD_TMP/s1" >/dev/null
rodctl host connect h1 data1 --lun 2 >/dev/null
rodctl host connect h1 data2 >/dev/null
rodctl host connect h2 data1 >/dev/null
rodtest_iscsi -i $I write "$(rod_url 2)" 0 256 77
rodtest_iscsi -i $I write "$(rod_url 0)" 100 16 78
expect_eq "131072" "$(rodctl --json vol show data1 | jq -r .space.logical)" "bytes written to data1"
before_vols=$(rodctl --json vol list | jq -c '[.volumes[] | {name, id, uuid, size, block_size, connections}] | sort_by(.name)')
before_hosts=$(rodctl --json host list | jq -c '[.hosts[] | {name, id, iqns, chap_user, connections}] | sort_by(.name)')
array_id=$(rodctl --json array show | jq -r .id)

stop_rodd
[ -S "$ROD_SOCKET" ] && fail "rodd left its control socket behind"
start_rodd

expect_eq "$array_id" "$(rodctl --json array show | jq -r .id)" "array id after restart"
expect_eq "$before_vols" "$(rodctl --json vol list | jq -c '[.volumes[] | {name, id, uuid, size, block_size, connections}] | sort_by(.name)')" "volumes after restart"
expect_eq "$before_hosts" "$(rodctl --json host list | jq -c '[.hosts[] | {name, id, iqns, chap_user, connections}] | sort_by(.name)')" "hosts after restart"
expect_eq "0 2" "$(rodtest_iscsi -i $I luns "$(rod_url 0)" | sort -n | tr '\n' ' ' | sed 's/ $//')" "LUN map after restart"
rodtest_iscsi -i $I verify "$(rod_url 2)" 0 256 77 || fail "data of data1 lost across restart"
rodtest_iscsi -i $I verify "$(rod_url 0)" 100 16 78 || fail "data of data2 lost across restart"
expect_eq "2048 4096" "$(rodtest_iscsi -i $I capacity "$(rod_url 0)")" "data2 capacity"
# CHAP secret kept: h2 logs in with it
rodtest_iscsi -i iqn.2000-01.org.test:h2 login "$(rod_url 0 u2%persist-secret-1)" || fail "h2 CHAP login after restart"
# host ids are not reused after a delete + restart
rodctl host disconnect h2 data1 >/dev/null
h2id=$(rodctl --json host show h2 | jq -r .id)
rodctl host delete h2 >/dev/null
stop_rodd
start_rodd
newid=$(rodctl --json host create h3 --iqn iqn.2000-01.org.test:h3 | jq -r .id)
[ "$newid" -gt "$h2id" ] || fail "host id $newid reused (h2 had $h2id)"
stop_rodd
note "ok"
