#!/usr/bin/env bash
# Every rodctl command of the first control-plane issue: human and --json output,
# exit codes (1 usage, 2 not found, 3 conflict, 4 unreachable) and what errors say.
. "$(dirname "$0")/lib.sh"

# Unreachable daemon first: exit 4 and a hint.
expect_rc 4 rodctl --socket "$ROD_TMP/none.sock" array show
expect_stderr 'cannot reach rodd'
expect_rc 1 rodctl
expect_rc 1 rodctl vol frobnicate
expect_rc 1 rodctl vol create v1            # no --size
expect_rc 1 rodctl vol create v1 --size 10Q
expect_stderr 'not a size'

start_rodd

# array show
j=$(rodctl --json array show)
expect_eq "functest" "$(jq -r .name <<<"$j")" "array name"
expect_eq "iqn.2026-11.io.rodstore:functest" "$(jq -r .target_iqn <<<"$j")" "target IQN"
[ "$(jq -r '.id | length' <<<"$j")" -eq 32 ] || fail "array id is not 32 hex digits: $j"
expect_eq "1" "$(jq '.portals | length' <<<"$j")" "portal count"
[[ $(jq -r '.portals[0]' <<<"$j") =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "portal: $j"
rodctl array show | grep -q "^target IQN: *iqn.2026-11.io.rodstore:functest$" || fail "human array show"
# global options may come after the command too
expect_eq "functest" "$(rodctl array show --json | jq -r .name)" "--json after the command"

# vol create / show / list
j=$(rodctl --json vol create v1 --size 64M)
expect_eq "v1" "$(jq -r .name <<<"$j")" "vol name"
expect_eq "$((64 << 20))" "$(jq -r .size <<<"$j")" "vol size"
expect_eq "512" "$(jq -r .block_size <<<"$j")" "default block size"
j=$(rodctl --json vol create v4k --size 1G --block-size 4096)
expect_eq "4096" "$(jq -r .block_size <<<"$j")" "4096 block size"
expect_eq "$((1 << 30))" "$(jq -r .size <<<"$j")" "1G is 2^30"
expect_rc 3 rodctl vol create v1 --size 1M
expect_stderr 'already exists'
expect_rc 1 rodctl vol create 'bad.name' --size 1M
expect_stderr 'not a valid volume name'
expect_rc 1 rodctl vol create v2 --size 1M --block-size 1024
expect_stderr '512 or 4096'
expect_rc 1 rodctl vol create v2 --size 1000
expect_stderr 'multiple of the block size'
expect_rc 1 rodctl vol create v2 --size 6K --block-size 4096
expect_eq "2" "$(rodctl --json vol list | jq '.volumes | length')" "volumes listed"
rodctl vol list | grep -Eq '^v1 +64M +512' || fail "human vol list: $(rodctl vol list)"
expect_eq "v4k" "$(rodctl --json vol show v4k | jq -r .name)" "vol show"
expect_rc 2 rodctl vol show nosuch
expect_stderr 'volume "nosuch" not found \(rodctl vol list shows volumes\)'

# vol resize: grow, refuse a silent shrink, shrink with --shrink
expect_eq "$((128 << 20))" "$(rodctl --json vol resize v1 --size 128M | jq -r .size)" "grown size"
expect_rc 1 rodctl vol resize v1 --size 32M
expect_stderr 'add --shrink'
expect_eq "$((32 << 20))" "$(rodctl --json vol resize v1 --size 32M --shrink | jq -r .size)" "shrunk size"
expect_rc 2 rodctl vol resize nosuch --size 1G

# vol set: cache mode and copy offload
j=$(rodctl --json vol set v4k --cache write-back --offload off)
expect_eq "write-back false" "$(jq -r '"\(.cache) \(.offload)"' <<<"$j")" "vol set result"
expect_eq "write-back" "$(rodctl --json vol show v4k | jq -r .cache)" "cache mode kept"
rodctl vol show v4k | grep -q '^offload: *off$' || fail "human vol show lacks offload off"
rodctl vol set v4k --cache write-through --offload on >/dev/null
expect_rc 1 rodctl vol set v4k --cache sometimes
expect_stderr 'write-through or write-back'
expect_rc 1 rodctl vol set v4k --offload maybe
expect_rc 1 rodctl vol set v4k
expect_rc 2 rodctl vol set nosuch --cache write-back

# host create / list
j=$(rodctl --json host create h1 --iqn iqn.1994-05.com.redhat:h1)
expect_eq "iqn.1994-05.com.redhat:h1" "$(jq -r '.iqns[0]' <<<"$j")" "host iqn"
[ "$(jq -r .id <<<"$j")" -ge 1 ] || fail "host id"
expect_rc 3 rodctl host create h1 --iqn iqn.1994-05.com.redhat:other
expect_stderr 'already exists'
expect_rc 3 rodctl host create h1b --iqn iqn.1994-05.com.redhat:h1
expect_stderr 'already belongs to host "h1"'
rodctl host create all --iqn '*' >/dev/null
rodctl host create redhat --iqn 'iqn.1994-05.com.redhat:*' >/dev/null
# same length as the redhat glob and overlapping: an ambiguous tie, refused
expect_rc 3 rodctl host create tie --iqn 'iqn.1994-05.com.redha?:*'
expect_stderr 'ties with'
# same length, no overlap: fine
rodctl host create vmware --iqn 'iqn.1998-01.com.vmwar?:*' >/dev/null
expect_rc 1 rodctl host create bad --iqn 'not an iqn'
expect_stderr 'not a valid initiator name'
expect_rc 1 rodctl host create bad
expect_stderr 'needs --iqn'
expect_eq "4" "$(rodctl --json host list | jq '.hosts | length')" "hosts listed"
rodctl host list | grep -Eq '^all +\* +no' || fail "human host list: $(rodctl host list)"

# CHAP secrets come from files and are never shown
printf 'abcdefghijkl\n' >"$ROD_TMP/secret"
printf 'short\n' >"$ROD_TMP/short"
j=$(rodctl --json host create chap1 --iqn iqn.2000-01.org.test:chap1 --chap-user u1 --chap-secret-file "$ROD_TMP/secret")
expect_eq "u1" "$(jq -r .chap_user <<<"$j")" "chap user"
rodctl --json host list | grep -q abcdefghijkl && fail "a CHAP secret appears in host list"
expect_eq "all,chap1,h1,redhat,vmware" "$(rodctl --json host list | jq -r '[.hosts[].name] | join(",")')" "hosts sorted by name"
expect_rc 1 rodctl host create chap2 --iqn iqn.2000-01.org.test:chap2 --chap-user u --chap-secret-file "$ROD_TMP/short"
expect_stderr '12 to 255'
expect_rc 1 rodctl host create chap2 --iqn iqn.2000-01.org.test:chap2 --chap-user u
expect_rc 1 rodctl host create chap2 --iqn iqn.2000-01.org.test:chap2 --chap-user u --chap-secret-file "$ROD_TMP/missing"
expect_stderr 'cannot read secret file'

# host connect / disconnect
j=$(rodctl --json host connect h1 v1)
expect_eq "0" "$(jq -r .lun <<<"$j")" "first LUN"
expect_eq "1" "$(rodctl --json host connect h1 v4k | jq -r .lun)" "second LUN"
expect_rc 3 rodctl host connect h1 v1
expect_stderr 'already connected'
expect_eq "7" "$(rodctl --json host connect all v1 --lun 7 | jq -r .lun)" "explicit LUN"
rodctl vol create v3 --size 1M >/dev/null
expect_rc 3 rodctl host connect all v3 --lun 7
expect_stderr 'LUN 7 of host "all" is taken'
expect_eq "0" "$(rodctl --json host connect all v3 | jq -r .lun)" "lowest free LUN"
expect_rc 1 rodctl host connect all v3 --lun 99999
expect_rc 2 rodctl host connect nosuch v1
expect_stderr 'host "nosuch" not found'
expect_rc 2 rodctl host connect h1 nosuch
rodctl host connect h1 v1 2>/dev/null && fail "double connect succeeded"
j=$(rodctl --json vol show v1)
expect_eq "all:7,h1:0" "$(jq -r '[.connections[] | "\(.host):\(.lun)"] | sort | join(",")' <<<"$j")" "v1 connections"
expect_eq "v1:0,v4k:1" "$(rodctl --json host show h1 | jq -r '[.connections[] | "\(.volume):\(.lun)"] | sort | join(",")')" "h1 connections"
rodctl host disconnect h1 v1 | grep -q 'disconnected' || fail "human disconnect"
expect_rc 2 rodctl host disconnect h1 v1
expect_stderr 'not connected'
# the freed LUN 0 is the lowest free one again
expect_eq "0" "$(rodctl --json host connect h1 v3 | jq -r .lun)" "reused lowest LUN"

# host delete refuses while connected
expect_rc 3 rodctl host delete h1
expect_stderr 'disconnect them first'
rodctl host delete vmware >/dev/null
expect_rc 2 rodctl host show vmware

# vol destroy: leaves every host
rodctl vol destroy v1 | grep -q destroyed || fail "human destroy"
expect_rc 2 rodctl vol show v1
expect_eq "" "$(rodctl --json host list | jq -r '.hosts[].connections[] | select(.volume == "v1") | .host')" "v1 still connected"
expect_rc 2 rodctl vol destroy v1
# the name stays taken while v1 is recoverable, and is free once eradicated
expect_rc 3 rodctl vol create v1 --size 1M
expect_stderr 'a destroyed volume is named "v1"'
rodctl vol eradicate v1 >/dev/null
rodctl vol create v1 --size 1M >/dev/null

# (raw JSON-RPC framing and error objects: tests/unit/test_ctl_rpc.c)

stop_rodd
note "ok"
