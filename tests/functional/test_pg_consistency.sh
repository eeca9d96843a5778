# Group snapshots are crash-consistent across members, end to end through iSCSI: a
# writer puts sequence k into volume A, and only after A acknowledged it, k into B;
# group snapshots are taken meanwhile. In every group snapshot B holds k or k-1... never
# more than A: seq(B) <= seq(A) <= seq(B) + 1 (read back from clones of the snapshot).
. "$(dirname "$0")/lib.sh"

start_rodd
ua=$(rod_quick_lun ca 8M)
ub=$(rod_quick_lun cb 8M)
rodctl pg create cg >/dev/null
rodctl pg add cg ca >/dev/null
rodctl pg add cg cb >/dev/null
BASE=1000
NMAX=3000   # the writer stops at this sequence if the snapshots never finish
rodtest_iscsi write "$ua" 0 16 $BASE
rodtest_iscsi write "$ub" 0 16 $BASE
# The writer runs until the snapshot loop is done (not for a fixed count: on a quiet
# machine a fixed count finished before enough snapshots were taken).
(
	k=0
	while [ ! -e "$ROD_TMP/snaps-done" ] && [ "$k" -lt $NMAX ]; do
		k=$((k + 1))
		rodtest_iscsi write "$ua" 0 16 $((BASE + k))
		rodtest_iscsi write "$ub" 0 16 $((BASE + k))
	done
	echo "$k" >"$ROD_TMP/writer-last"
) &
wpid=$!
snaps=0
while [ "$snaps" -lt 8 ] && kill -0 "$wpid" 2>/dev/null; do
	rodctl pg snap cg --suffix "c$snaps" >/dev/null
	snaps=$((snaps + 1))
	sleep 0.03
done
touch "$ROD_TMP/snaps-done"
wait "$wpid" || fail "writer failed"
N=$(cat "$ROD_TMP/writer-last")
[ "$snaps" -ge 5 ] || fail "only $snaps group snapshots taken during the writes"

# seq_of URL FROM: the sequence number the volume holds (searching upwards from FROM)
seq_of() {
	local url=$1 k=$2
	while [ "$k" -le "$N" ]; do
		rodtest_iscsi verify "$url" 0 16 $((BASE + k)) >/dev/null 2>&1 && { echo "$k"; return 0; }
		k=$((k + 1))
	done
	echo "none"
}
pa=0 pb=0 mixed=0
for ((j = 0; j < snaps; j++)); do
	rodctl pg restore cg "c$j" --clone-prefix "r$j-" >/dev/null
	la=$(rodctl --json host connect all "r$j-ca" | jq -r .lun)
	lb=$(rodctl --json host connect all "r$j-cb" | jq -r .lun)
	sa=$(seq_of "$(rod_url "$la")" "$pa")
	sb=$(seq_of "$(rod_url "$lb")" "$pb")
	[ "$sa" != none ] && [ "$sb" != none ] || fail "snapshot c$j holds no written sequence (a=$sa b=$sb)"
	[ "$sb" -le "$sa" ] || fail "snapshot c$j: B has write $sb but A only $sa (not crash-consistent)"
	[ "$sa" -le $((sb + 1)) ] || fail "snapshot c$j: A has write $sa but B only $sb (B got $((sb + 1)) before A got $sa: the cut is not one instant)"
	[ "$sa" -ne "$sb" ] && mixed=$((mixed + 1))
	pa=$sa pb=$sb
	rodctl host disconnect all "r$j-ca" >/dev/null
	rodctl host disconnect all "r$j-cb" >/dev/null
done
note "$snaps group snapshots consistent ($mixed caught between A's and B's write); last a=$pa b=$pb"
stop_rodd
note "ok"
