#!/usr/bin/env bash
# Other initiators against rodd: qemu-img (qemu's libiscsi block driver, iscsi:// URLs)
# writes and reads a LUN, the data survives a restart; libiscsi-bin's iscsi-ls lists
# what each initiator may see and iscsi-inq reads the standard INQUIRY.
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img missing (scripts/deps.sh installs qemu-utils)"
start_rodd
rodctl vol create qv --size 64M >/dev/null
rodctl vol create hidden --size 16M >/dev/null
rodctl host create every --iqn '*' >/dev/null
rodctl host create vip --iqn iqn.2001-04.com.example:vip >/dev/null
rodctl host connect every qv >/dev/null
rodctl host connect vip hidden --lun 2 >/dev/null
url=$(rod_url 0)

info=$(qemu-img info --output=json "$url") || fail "qemu-img info failed (is qemu-block-extra installed?)"
expect_eq "67108864" "$(jq -r '."virtual-size"' <<<"$info")" "qemu-img virtual size"

head -c $((12 << 20)) /dev/urandom >"$ROD_TMP/src"
qemu-img convert -n -f raw -O raw "$ROD_TMP/src" "$url" || fail "qemu-img write"
qemu-img convert -f raw -O raw "$url" "$ROD_TMP/out" || fail "qemu-img read"
cmp -n $((12 << 20)) "$ROD_TMP/src" "$ROD_TMP/out" || fail "qemu-img read back other bytes"
# the rest of the volume was never written: zeros
cmp -i $((12 << 20)) -n $((52 << 20)) "$ROD_TMP/out" /dev/zero || fail "unwritten area is not zero"

stop_rodd
start_rodd
rm -f "$ROD_TMP/out"
qemu-img convert -f raw -O raw "$url" "$ROD_TMP/out" || fail "qemu-img read after restart"
cmp -n $((12 << 20)) "$ROD_TMP/src" "$ROD_TMP/out" || fail "data written by qemu-img lost across restart"

# iscsi-ls: the default initiator sees LUN 0 only; vip sees LUN 2 only
out=$(iscsi-ls -s "iscsi://$ROD_PORTAL") || fail "iscsi-ls failed: $out"
grep -q "Target:$ROD_IQN " <<<"$out" || fail "iscsi-ls does not list $ROD_IQN: $out"
expect_eq "0" "$(sed -n 's/^Lun:\([0-9]*\) .*/\1/p' <<<"$out" | tr '\n' ' ' | sed 's/ $//')" "iscsi-ls LUNs (default initiator)"
out=$(iscsi-ls -i iqn.2001-04.com.example:vip -s "iscsi://$ROD_PORTAL") || fail "iscsi-ls as vip failed: $out"
expect_eq "2" "$(sed -n 's/^Lun:\([0-9]*\) .*/\1/p' <<<"$out" | tr '\n' ' ' | sed 's/ $//')" "iscsi-ls LUNs (vip)"
iscsi-inq "$url" | grep -q 'Peripheral Device Type:DIRECT_ACCESS' || fail "iscsi-inq: not a disk"
stop_rodd
note "ok"
