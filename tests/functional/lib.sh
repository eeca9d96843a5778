# Reusable harness for functional tests against a real rodd. Source it from a bash
# test script:
#
#   . "$(dirname "$0")/lib.sh"
#   start_rodd                      # temp data dir, temp socket, loopback port chosen by rodd
#   rodctl vol create v1 --size 64M
#   rodctl host create h1 --iqn '*'
#   rodctl host connect h1 v1
#   rodtest_iscsi write "$(rod_url 0)" 0 8 42
#   stop_rodd                       # SIGTERM; fails the test unless rodd exits 0
#
# (or, instead of the three rodctl lines: url=$(rod_quick_lun v1 64M), which uses a
# catch-all host named "all").
#
# Binaries come from the environment that CTest sets (RODD, RODCTL, RODTEST_ISCSI);
# run by hand with e.g. RODD=build/cmd/rodd/rodd RODCTL=build/cmd/rodctl/rodctl
# RODTEST_ISCSI=build/tests/functional/rodtest-iscsi bash tests/functional/test_x.sh
#
# After start_rodd: ROD_TMP (scratch dir, removed at exit), ROD_DATA, ROD_SOCKET,
# ROD_PORTAL (127.0.0.1:PORT), ROD_PORT, ROD_IQN (the target), RODD_PID, ROD_LOG.
# start_rodd again after stop_rodd restarts on the same data dir and port.
# ROD_ARRAY_NAME (default functest; empty: no --array-name) names a new array.

set -euo pipefail

: "${RODD:?set RODD to the rodd binary}"
: "${RODCTL:?set RODCTL to the rodctl binary}"
RODTEST_ISCSI=${RODTEST_ISCSI:-}

ROD_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rodft.XXXXXX")
ROD_DATA=${ROD_DATA:-$ROD_TMP/data}
export ROD_SOCKET=$ROD_TMP/rodd.sock
ROD_LOG=$ROD_TMP/rodd.log
# Every rodd of a test keeps its key-encryption key in the test's temp dir (never /etc).
export ROD_KEY_FILE=$ROD_TMP/rod.key
ROD_PORT=${ROD_PORT:-0}
RODD_PID=
ROD_TEST_NAME=$(basename "$0" .sh)

rod_cleanup() {
	local rc=$?
	if [ -n "$RODD_PID" ] && kill -0 "$RODD_PID" 2>/dev/null; then
		kill -TERM "$RODD_PID" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$RODD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$RODD_PID" 2>/dev/null || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$ROD_LOG" ]; then
		echo "---- rodd log (last 60 lines) ----" >&2
		tail -n 60 "$ROD_LOG" >&2 || true
	fi
	if [ "${ROD_KEEP_TMP:-0}" = 1 ]; then
		echo "kept $ROD_TMP" >&2
	else
		rm -rf "$ROD_TMP"
	fi
	exit "$rc"
}
trap rod_cleanup EXIT

fail() {
	echo "FAIL [$ROD_TEST_NAME]: $*" >&2
	exit 1
}

note() {
	echo "[$ROD_TEST_NAME] $*"
}

rodctl() {
	"$RODCTL" "$@"
}

rodtest_iscsi() {
	[ -n "$RODTEST_ISCSI" ] || fail "RODTEST_ISCSI is not set"
	"$RODTEST_ISCSI" "$@"
}

# start_rodd [extra rodd args...]: foreground rodd in the background of this shell,
# returns once rodctl gets an answer. Extra args go after the harness's own (so a
# test may add --config, --array-name ...).
start_rodd() {
	mkdir -p "$ROD_TMP"
	local name=()
	[ -n "${ROD_ARRAY_NAME-functest}" ] && name=(--array-name "${ROD_ARRAY_NAME-functest}")
	"$RODD" --foreground --data "$ROD_DATA" --listen "127.0.0.1:$ROD_PORT" --socket "$ROD_SOCKET" \
		"${name[@]}" "$@" >>"$ROD_LOG" 2>&1 &
	RODD_PID=$!
	wait_rodd_ready
}

# wait_rodd_ready: until the control socket answers (20 s), or fail if rodd died.
wait_rodd_ready() {
	local i
	for i in $(seq 200); do
		if "$RODCTL" array show >/dev/null 2>&1; then
			rod_read_array
			return 0
		fi
		if [ -n "$RODD_PID" ] && ! kill -0 "$RODD_PID" 2>/dev/null; then
			fail "rodd exited before it was ready (see the log)"
		fi
		sleep 0.1
	done
	fail "rodd did not answer on $ROD_SOCKET within 20 s"
}

rod_read_array() {
	local j
	j=$("$RODCTL" --json array show)
	ROD_IQN=$(jq -r .target_iqn <<<"$j")
	ROD_PORTAL=$(jq -r '.portals[0]' <<<"$j")
	ROD_PORT=${ROD_PORTAL##*:}
}

# stop_rodd: SIGTERM and wait; fails unless rodd exits 0 within 30 s.
stop_rodd() {
	[ -n "$RODD_PID" ] || fail "stop_rodd: rodd is not running"
	kill -TERM "$RODD_PID"
	local i
	for i in $(seq 300); do
		kill -0 "$RODD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$RODD_PID" 2>/dev/null && fail "rodd did not exit within 30 s of SIGTERM"
	local rc=0
	wait "$RODD_PID" || rc=$?
	RODD_PID=
	[ "$rc" -eq 0 ] || fail "rodd exited with status $rc after SIGTERM (expected 0)"
}

# rod_url LUN [user%secret]: the iSCSI URL of a LUN on the running rodd.
rod_url() {
	local lun=$1 cred=${2:-}
	[ -n "$cred" ] && cred="$cred@"
	echo "iscsi://$cred$ROD_PORTAL/$ROD_IQN/$lun"
}

# expect_rc WANT CMD...: run CMD (stderr kept in $ROD_TMP/stderr), fail unless its exit
# status is WANT.
expect_rc() {
	local want=$1; shift
	local rc=0
	"$@" >"$ROD_TMP/stdout" 2>"$ROD_TMP/stderr" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		cat "$ROD_TMP/stderr" >&2
		fail "'$*' exited $rc, expected $want"
	fi
}

# expect_stderr REGEX: the last expect_rc's stderr matches.
expect_stderr() {
	grep -Eq -- "$1" "$ROD_TMP/stderr" || fail "stderr '$(cat "$ROD_TMP/stderr")' does not match /$1/"
}

# expect_eq WANT GOT [what]
expect_eq() {
	[ "$1" = "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}

# rod_quick_lun VOL SIZE: create VOL, connect it to a catch-all host "all" (created on
# first use) at the lowest free LUN, print its iSCSI URL. For tests that just need a LUN.
rod_quick_lun() {
	local vol=$1 size=$2 lun
	"$RODCTL" vol create "$vol" --size "$size" >/dev/null
	"$RODCTL" host show all >/dev/null 2>&1 || "$RODCTL" host create all --iqn '*' >/dev/null
	lun=$("$RODCTL" --json host connect all "$vol" | jq -r .lun)
	rod_url "$lun"
}
