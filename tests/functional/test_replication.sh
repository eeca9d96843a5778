#!/usr/bin/env bash
# Replication of a protection group between two rodd on loopback (docs/protection.md
# "Replication"): a baseline and two incremental transfers of writes made through iSCSI,
# each checked byte for byte (md5 of the source group snapshot read through a clone vs
# the replica's member snapshot read through a clone on the target); incremental bytes
# on the wire far below the volume size; identical data written at another offset goes
# as references; a wrong or unknown key is refused at the TLS handshake; SIGKILL of the
# target and of the source mid-transfer (bandwidth-limited so the kill lands inside it):
# the job resumes after the restart and completes, and no partial replica snapshot is
# ever listed; a replica snapshot is cloned and read on the target while a transfer runs.
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img is not installed (scripts/deps.sh: qemu-utils)"
grep -qw iscsi <<<"$(qemu-img --help)" || fail "qemu-img has no iscsi driver"

I=iqn.2008-11.org.linux-kvm
MiB=$((1 << 20))

# ---- the target array: a second rodd with its own directory, socket and ports ----
T=$ROD_TMP/target
mkdir -p "$T"
T_SOCK=$T/rodd.sock T_LOG=$T/rodd.log T_PID= T_PORT=0 T_RPORT=0
start_target() {
	"$RODD" --foreground --data "$T/data" --listen "127.0.0.1:$T_PORT" --socket "$T_SOCK" --array-name tgt \
		--key-file "$T/rod.key" --replication "127.0.0.1:$T_RPORT" >>"$T_LOG" 2>&1 &
	T_PID=$!
	for _ in $(seq 200); do
		tgt array show >/dev/null 2>&1 && break
		kill -0 "$T_PID" 2>/dev/null || fail "target rodd exited at start: $(tail -5 "$T_LOG")"
		sleep 0.1
	done
	T_PORTAL=$(tgt --json array show | jq -r '.portals[0]')
	T_IQN=$(tgt --json array show | jq -r .target_iqn)
	T_PORT=${T_PORTAL##*:}
	T_REPL=$(tgt --json replica list | jq -r .listen)
	T_RPORT=${T_REPL##*:}
}
tgt() { "$RODCTL" --socket "$T_SOCK" "$@"; }
trap 'rc=$?; if [ -n "$T_PID" ]; then kill -KILL "$T_PID" 2>/dev/null || true; fi
      if [ "$rc" -ne 0 ]; then echo "---- target log ----" >&2; tail -n 40 "$T_LOG" >&2 || true; fi
      (exit $rc) && rod_cleanup || rod_cleanup' EXIT

# ---- iSCSI data helpers (qemu-img) ----
# put PORTAL IQN LUN OFFSET FILE: write FILE at OFFSET of the LUN.
put() {
	qemu-img convert -n -f raw "$5" --target-image-opts \
		"driver=raw,offset=$4,size=$(stat -c %s "$5"),file.driver=iscsi,file.transport=tcp,file.portal=$1,file.target=$2,file.lun=$3,file.initiator-name=$I" \
		|| fail "qemu-img write to $1 LUN $3 at $4"
}
# lun_md5 PORTAL IQN LUN
lun_md5() {
	rm -f "$ROD_TMP/read.img"
	qemu-img convert -O raw --image-opts "driver=iscsi,transport=tcp,portal=$1,target=$2,lun=$3,initiator-name=$I" \
		"$ROD_TMP/read.img" || fail "qemu-img read of $1 LUN $3"
	md5sum <"$ROD_TMP/read.img" | cut -d' ' -f1
}
# 4 KiB blocks alternating random and text: zstd finds about half of it compressible.
gen() { # FILE MIB
	python3 - "$1" "$2" <<'EOF'
import os, sys
out = open(sys.argv[1], "wb")
for i in range(int(sys.argv[2]) * 256):
    if i % 2:
        out.write(os.urandom(4096))
    else:
        out.write((b"block %08d %s the quick brown fox jumps over the lazy dog\n" % (i, os.urandom(4).hex().encode())) * 56 + b"\0" * (4096 - 56 * 74))
EOF
}
src_put() { put "$ROD_PORTAL" "$ROD_IQN" "$@"; }

# Clone a snapshot into a new volume, connect it, print its md5. CTL: rodctl or tgt.
clone_md5() { # CTL PORTAL IQN SNAPSHOT CLONE
	local ctl=$1 portal=$2 iqn=$3 snap=$4 clone=$5 lun
	$ctl vol clone "$snap" "$clone" >/dev/null || fail "clone of $snap"
	$ctl host show all >/dev/null 2>&1 || $ctl host create all --iqn '*' >/dev/null
	# a LUN number never used before on either array (a LUN of a destroyed volume may be
	# reused otherwise)
	lun=$(( $(cat "$ROD_TMP/lunseq" 2>/dev/null || echo 100) + 1 ))
	echo "$lun" >"$ROD_TMP/lunseq"
	$ctl host connect all "$clone" --lun "$lun" >/dev/null
	lun_md5 "$portal" "$iqn" "$lun"
}
N=0
# check_replica GROUP VOL...: the last replicated snapshot of GROUP, member by member, is
# the same on both arrays.
check_replica() {
	local g=$1; shift
	local sfx v a b
	sfx=$(rodctl --json pg show "$g" | jq -r .replication.last_snapshot)
	[ "$sfx" != null ] || fail "no replicated snapshot of $g"
	tgt --json replica list | jq -e --arg n "functest:$g.$sfx" '[.groups[].snapshots[].name] | index($n)' >/dev/null \
		|| fail "the target does not list functest:$g.$sfx"
	for v in "$@"; do
		N=$((N + 1))
		a=$(clone_md5 rodctl "$ROD_PORTAL" "$ROD_IQN" "$v.$g-$sfx" "chk$N")
		b=$(clone_md5 tgt "$T_PORTAL" "$T_IQN" "functest:$v.$g-$sfx" "chk$N")
		expect_eq "$a" "$b" "md5 of $v.$g-$sfx on the target"
	done
}
# replicate GROUP [args]: start a transfer, wait for its job, print the job's result.
replicate() {
	local g=$1; shift
	local id
	id=$(rodctl --json pg replicate "$g" "$@" | jq -r .job)
	wait_job "$id"
}
wait_job() {
	rodctl job show "$1" --watch >/dev/null || fail "replication job $1 did not complete: $(rodctl --json job show "$1" | jq -c .)"
	rodctl --json job show "$1" | jq -c .result
}
# wait until job $1 has sent at least $2 bytes
wait_progress() {
	for _ in $(seq 300); do
		[ "$(rodctl --json job show "$1" | jq -r '.done // 0')" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "job $1 made no progress: $(rodctl --json job show "$1" | jq -c .)"
}
# replica_snaps GROUP: how many replica snapshots of GROUP the target lists
replica_snaps() {
	tgt --json replica list | jq --arg n "functest:$1" '[.groups[] | select(.name == $n) | .snapshots[]] | length'
}

# the source's scheduler runs on a test clock (pg tick), see docs/protection.md
export ROD_TEST_TIME_OFFSET=0
start_rodd
unset ROD_TEST_TIME_OFFSET
start_target
note "source $ROD_PORTAL, target $T_PORTAL, replication on $T_REPL"

# ---- rod.conf key and --check-config ----
printf 'replication = 127.0.0.1:7450\n' >"$ROD_TMP/repl.conf"
grep -qx "replication = 127.0.0.1:7450" <<<"$("$RODD" --check-config --config "$ROD_TMP/repl.conf")" \
	|| fail "rod.conf replication key not taken"
grep -qx "replication = 127.0.0.1:7451" <<<"$("$RODD" --check-config --config "$ROD_TMP/repl.conf" --replication 127.0.0.1:7451)" \
	|| fail "--replication does not override rod.conf"
printf 'replication = nowhere\n' >"$ROD_TMP/bad.conf"
expect_rc 1 "$RODD" --check-config --config "$ROD_TMP/bad.conf"

# ---- keys -------------------------------------------------------------------------------
tgt array replication-key create --out "$T/key" >/dev/null
expect_eq 600 "$(stat -c %a "$T/key")" "key file mode"
grep -Eq '^rodrk1:[0-9a-f]+:[0-9a-f]{64}$' "$T/key" || fail "key file: $(cat "$T/key")"
KID=$(cut -d: -f2 "$T/key")
expect_eq "$KID" "$(tgt --json array replication-key list | jq -r '.keys[0].id')" "listed key id"
tgt array replication-key create --out "$T/key2" >/dev/null
tgt array replication-key delete "$(cut -d: -f2 "$T/key2")" >/dev/null
expect_eq 1 "$(tgt --json array replication-key list | jq '.keys | length')" "keys after delete"

# ---- the group ----------------------------------------------------------------------------
rodctl vol create db1 --size 64M >/dev/null
rodctl vol create db2 --size 16M >/dev/null
rodctl host create all --iqn '*' >/dev/null
L1=$(rodctl --json host connect all db1 | jq -r .lun)
L2=$(rodctl --json host connect all db2 | jq -r .lun)
rodctl pg create prod >/dev/null
rodctl pg add prod --pattern 'db*' >/dev/null

# ---- wrong and unknown keys are refused at the handshake -------------------------------------------
rodctl vol create x1 --size 4M >/dev/null
rodctl pg create bad >/dev/null
rodctl pg add bad x1 >/dev/null
sed -E 's/:([0-9a-f])([0-9a-f]{63})$/:\2\1/' "$T/key" >"$ROD_TMP/wrong.key"
cmp -s "$T/key" "$ROD_TMP/wrong.key" && sed -i -E 's/:(.)(.{63})$/:f\2/' "$ROD_TMP/wrong.key"
expect_rc 5 rodctl pg replicate bad --to "$T_REPL" --key-file "$ROD_TMP/wrong.key" --wait
expect_stderr "refused the replication key"
grep -q "refused a connection" "$T_LOG" || fail "the target did not log the refused handshake"
sed -E "s/^rodrk1:[0-9a-f]+:/rodrk1:0badc0de:/" "$T/key" >"$ROD_TMP/unknown.key"
expect_rc 5 rodctl pg replicate bad --to "$T_REPL" --key-file "$ROD_TMP/unknown.key" --wait
grep -q 'unknown replication key "0badc0de"' "$T_LOG" || fail "the target did not log the unknown key"
expect_eq failed "$(rodctl --json pg show bad | jq -r .replication.state)" "state after a refused key"
rodctl pg replicate bad --off >/dev/null
expect_eq null "$(rodctl --json pg show bad | jq -r .replication)" "link after --off"
expect_eq 0 "$(tgt --json replica list | jq '.groups | length')" "replica groups after refused keys"

# ---- baseline ---------------------------------------------------------------------------------------
head -c $MiB /dev/urandom >"$ROD_TMP/r1"
gen "$ROD_TMP/base1" 6
gen "$ROD_TMP/base2" 2
src_put "$L1" 0 "$ROD_TMP/r1"
src_put "$L1" $((8 * MiB)) "$ROD_TMP/base1"
src_put "$L2" $((4 * MiB)) "$ROD_TMP/base2"
res=$(replicate prod --to "$T_REPL" --key-file "$T/key")
note "baseline: $res"
check_replica prod db1 db2
ev=$(rodctl --json events --limit 1000)
grep -q "$(cut -d: -f3 "$T/key")" <<<"$ev" && fail "the replication key is in the audit log"
grep -q '"pg.replicate"' <<<"$ev" || fail "pg replicate is not in the audit log"
wire=$(jq .wire_bytes <<<"$res")
[ "$wire" -lt $((9 * MiB)) ] || fail "baseline of 9 MiB written sent $wire bytes (compression?)"
expect_eq 1 "$(replica_snaps prod)" "replica snapshots after the baseline"
# staging volumes are neither connectable nor clonable; their snapshots are
expect_rc 1 tgt vol clone functest:db1 nope
expect_rc 1 tgt host connect all functest:db1
out=$(rodctl pg show prod)
grep -q "replication: to $T_REPL (tgt), idle" <<<"$out" || fail "pg show: $out"

# ---- incremental 1: 20 random 64 KiB writes ------------------------------------------------------------
changed=0
for slot in $(shuf -i 0-1000 -n 16); do
	head -c 65536 /dev/urandom >"$ROD_TMP/w"
	src_put "$L1" $((slot * 65536)) "$ROD_TMP/w"
	changed=$((changed + 65536))
done
for slot in $(shuf -i 0-250 -n 4); do
	head -c 65536 /dev/urandom >"$ROD_TMP/w"
	src_put "$L2" $((slot * 65536)) "$ROD_TMP/w"
	changed=$((changed + 65536))
done
res=$(replicate prod)
note "incremental 1 ($changed bytes changed): $res"
wire=$(jq .wire_bytes <<<"$res")
[ "$wire" -lt $((2 * changed)) ] || fail "incremental sent $wire bytes for $changed changed"
[ "$wire" -lt $((80 * MiB / 10)) ] || fail "incremental sent $wire bytes: not far below the volumes' 80 MiB"
check_replica prod db1 db2
expect_eq 2 "$(replica_snaps prod)" "replica snapshots after incremental 1"

# ---- incremental 2: data the target has already, at another offset, goes as references -----------------
src_put "$L1" $((40 * MiB)) "$ROD_TMP/r1"
res=$(replicate prod)
note "incremental 2 (1 MiB sent before, written elsewhere): $res"
[ "$(jq .ref_grains <<<"$res")" -ge 250 ] || fail "expected references for the re-written MiB: $res"
[ "$(jq .data_grains <<<"$res")" -le 8 ] || fail "expected (almost) no data grains: $res"
[ "$(jq .wire_bytes <<<"$res")" -lt $((128 << 10)) ] || fail "references should cost little on the wire: $res"
check_replica prod db1 db2

# ---- the target lost the replica (destroyed, eradicated, garbage-collected): the next transfer is
# full, and the references the source sends for chunks the target no longer has are resent as data.
for n in $(tgt --json vol list | jq -r '.volumes[].name | select(startswith("chk"))') \
	$(tgt --json vol snap list | jq -r '.snapshots[].name | select(startswith("functest:db"))') \
	functest:db1 functest:db2; do
	tgt vol destroy "$n" >/dev/null
	tgt vol eradicate "$n" >/dev/null
done
tgt array gc --full --wait >/dev/null
expect_eq 0 "$(replica_snaps prod)" "replica snapshots listed after they were destroyed"
res=$(replicate prod)
note "after the target lost the replica: $res"
check_replica prod db1 db2
[ "$(jq .resent_grains <<<"$res")" -gt 0 ] || fail "expected references answered with a resend: $res"
expect_eq 1 "$(replica_snaps prod)" "replica snapshots after the full transfer"

# ---- scheduled snapshots are replicated; retention keeps the replication base ------------------------------
rodctl pg schedule prod --every 1h >/dev/null
s1=$(rodctl --json pg tick --advance 1h | jq -r '.taken[0].suffix')
[ "$s1" != null ] || fail "the schedule took no snapshot"
for _ in $(seq 100); do
	[ "$(rodctl --json pg show prod | jq -r .replication.last_snapshot)" = "$s1" ] && break
	sleep 0.1
done
expect_eq "$s1" "$(rodctl --json pg show prod | jq -r .replication.last_snapshot)" "scheduled snapshot replicated"
expect_eq 2 "$(replica_snaps prod)" "replica snapshots after the scheduled one"
rodctl pg retention prod --keep-all 1h >/dev/null
# s1 is the last replicated snapshot: retention keeps it although it expired
t=$(rodctl --json pg tick --advance 3h)
s2=$(jq -r '.taken[0].suffix' <<<"$t")
jq -e --arg s "$s1" '[.pruned[].suffix] | index($s) | not' <<<"$t" >/dev/null \
	|| fail "retention destroyed the last replicated snapshot $s1: $t"
for _ in $(seq 100); do
	[ "$(rodctl --json pg show prod | jq -r .replication.last_snapshot)" = "$s2" ] && break
	sleep 0.1
done
expect_eq "$s2" "$(rodctl --json pg show prod | jq -r .replication.last_snapshot)" "second scheduled snapshot replicated"
# now s2 is the base: s1 goes at the next run of the scheduler (it runs every second)
rodctl pg tick --advance 1m >/dev/null
rodctl --json pg show prod | jq -e --arg s "$s1" '[.snapshots[].suffix] | index($s) | not' >/dev/null \
	|| fail "expired snapshot $s1 kept after it stopped being the replication base"
check_replica prod db1 db2
rodctl pg schedule prod --off >/dev/null
rodctl pg retention prod --off >/dev/null

# ---- SIGKILL of the target mid-transfer -------------------------------------------------------------------
rodctl vol create big1 --size 64M >/dev/null
LB=$(rodctl --json host connect all big1 | jq -r .lun)
rodctl pg create big >/dev/null
rodctl pg add big big1 >/dev/null
head -c $((12 * MiB)) /dev/urandom >"$ROD_TMP/big"
src_put "$LB" 0 "$ROD_TMP/big"
job=$(rodctl --json pg replicate big --to "$T_REPL" --key-file "$T/key" --bwlimit 3M | jq -r .job)
wait_progress "$job" $((4 * MiB))
kill -KILL "$T_PID"
wait "$T_PID" 2>/dev/null || true
T_PID=
note "target killed mid-transfer (job $job: $(rodctl --json job show "$job" | jq -c '{state, done, total}'))"
start_target
expect_eq 0 "$(replica_snaps big)" "replica snapshots of big while the transfer is unfinished"
res=$(wait_job "$job")
note "after the target's restart: $res"
expect_eq 1 "$(replica_snaps big)" "replica snapshots of big after the transfer"
[ "$(jq .wire_bytes <<<"$res")" -lt $((17 * MiB)) ] || fail "the transfer started over instead of resuming: $res"
grep -q "closed the connection\|stopped" "$T_LOG" || true
check_replica big big1
BIG_SFX1=$(rodctl --json pg show big | jq -r .replication.last_snapshot)
BIG_MD5=$(clone_md5 rodctl "$ROD_PORTAL" "$ROD_IQN" "big1.big-$BIG_SFX1" "bigref")

# ---- SIGKILL of the source mid-transfer; a replica is cloned meanwhile (failover test) -------------------
head -c $((12 * MiB)) /dev/urandom >"$ROD_TMP/big2"
src_put "$LB" $((20 * MiB)) "$ROD_TMP/big2"
job=$(rodctl --json pg replicate big | jq -r .job)
wait_progress "$job" $((4 * MiB))
kill -KILL "$RODD_PID"
wait "$RODD_PID" 2>/dev/null || true
RODD_PID=
note "source killed mid-transfer"
expect_eq 1 "$(replica_snaps big)" "replica snapshots of big while the second transfer is unfinished"
start_rodd
job=$(rodctl --json pg show big | jq -r .replication.job)
[ "$job" -gt 0 ] || fail "the source did not restart the transfer: $(rodctl --json pg show big | jq -c .replication)"
# failover test while the transfer goes on: the previous replica, cloned and read on the target
expect_eq "$BIG_MD5" "$(clone_md5 tgt "$T_PORTAL" "$T_IQN" "functest:big1.big-$BIG_SFX1" failover1)" \
	"md5 of a replica cloned during a transfer"
# replica restore: every member of a replica group snapshot cloned at once
tgt replica restore functest:big "$BIG_SFX1" --clone-prefix fo- >/dev/null
lun=$(tgt --json host connect all fo-big1 | jq -r .lun)
expect_eq "$BIG_MD5" "$(lun_md5 "$T_PORTAL" "$T_IQN" "$lun")" "md5 of replica restore's clone"
expect_rc 3 tgt replica restore functest:big "$BIG_SFX1" --clone-prefix fo-
rodctl --json job show "$job" | jq -e '.state == "running" or .state == "queued" or .state == "done"' >/dev/null
res=$(wait_job "$job")
note "after the source's restart: $res"
expect_eq 2 "$(replica_snaps big)" "replica snapshots of big after the resumed transfer"
check_replica big big1
out=$(rodctl pg show big)
grep -q "lag" <<<"$out" || fail "pg show big has no lag: $out"

rodctl pg replicate big --off >/dev/null
stop_rodd
kill -TERM "$T_PID"
wait "$T_PID" || fail "target rodd exited with $? after SIGTERM"
T_PID=
note "ok"
