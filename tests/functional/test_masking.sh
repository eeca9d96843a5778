#!/usr/bin/env bash
# LUN masking through iSCSI: an initiator sees exactly the volumes connected to the
# host it matches (exact IQN beats a glob, a longer glob beats a shorter one); a
# disconnect or a destroy takes the LUN away; an initiator matching no host cannot log in.
. "$(dirname "$0")/lib.sh"
start_rodd

A=iqn.1994-05.com.redhat:alpha
B=iqn.1994-05.com.redhat:beta
C=iqn.1998-01.com.vmware:esx1
for v in va vb vc vall; do rodctl vol create $v --size 16M >/dev/null; done
rodctl host create alpha --iqn $A >/dev/null
rodctl host create redhat --iqn 'iqn.1994-05.com.redhat:*' >/dev/null
rodctl host create vmware --iqn 'iqn.1998-01.com.vmware:esx?' --iqn 'iqn.1998-01.com.vmware:esx1?' >/dev/null
rodctl host connect alpha va >/dev/null           # alpha LUN 0
rodctl host connect alpha vall --lun 3 >/dev/null # alpha LUN 3
rodctl host connect redhat vb >/dev/null          # redhat LUN 0
rodctl host connect vmware vc --lun 5 >/dev/null  # vmware LUN 5

luns() { # initiator -> sorted LUN list on one line
	rodtest_iscsi -i "$1" luns "$(rod_url 0)" | sort -n | tr '\n' ' ' | sed 's/ $//'
}
expect_eq "0 3" "$(luns $A)" "LUNs of alpha (exact IQN beats the redhat glob)"
expect_eq "0" "$(luns $B)" "LUNs of beta (redhat glob)"
expect_eq "5" "$(luns $C)" "LUNs of esx1"

# Each LUN is the right volume: write a pattern through alpha's LUN 3 (vall), connect
# vall to redhat too and read it back through beta's view.
rodtest_iscsi -i $A write "$(rod_url 3)" 0 64 11
expect_eq "1" "$(rodctl --json host connect redhat vall | jq -r .lun)" "vall at redhat LUN 1"
rodtest_iscsi -i $B verify "$(rod_url 1)" 0 64 11 || fail "beta does not read what alpha wrote to vall"
# and beta's LUN 0 is vb, not va: the pattern is not there
rodtest_iscsi -i $A write "$(rod_url 0)" 0 8 12
if rodtest_iscsi -i $B verify "$(rod_url 0)" 0 8 12 2>/dev/null; then
	fail "beta's LUN 0 shows alpha's volume"
fi

# An initiator matching no host: login refused (no '*' host exists yet).
expect_rc 3 rodtest_iscsi -i iqn.2001-04.com.example:nobody login "$(rod_url 0)"
# With a catch-all host it logs in but sees only the catch-all's volumes.
rodctl host create any --iqn '*' >/dev/null
expect_eq "" "$(luns iqn.2001-04.com.example:nobody)" "LUNs of an unconnected catch-all host"
rodctl host connect any vc >/dev/null
expect_eq "0" "$(luns iqn.2001-04.com.example:nobody)" "LUNs of the catch-all host"

# A resize shows through READ CAPACITY on the hosts that see the volume.
expect_eq "32768 512" "$(rodtest_iscsi -i $B capacity "$(rod_url 0)")" "vb capacity"
rodctl vol resize vb --size 48M >/dev/null
expect_eq "98304 512" "$(rodtest_iscsi -i $B capacity "$(rod_url 0)")" "vb capacity after resize"

# Disconnect and destroy take LUNs away at once.
rodctl host disconnect alpha va >/dev/null
expect_eq "3" "$(luns $A)" "alpha after disconnect"
rodctl vol destroy vall >/dev/null
expect_eq "" "$(luns $A)" "alpha after destroying vall"
expect_eq "0" "$(luns $B)" "beta after destroying vall"

# Discovery shows the one target of the array.
if out=$(rodtest_iscsi discover "iscsi://$ROD_PORTAL" 2>&1); then
	grep -q "^$ROD_IQN " <<<"$out" || fail "SendTargets does not list $ROD_IQN: $out"
else
	fail "discovery failed: $out"
fi

stop_rodd
note "ok"
