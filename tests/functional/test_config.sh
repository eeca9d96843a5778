#!/usr/bin/env bash
# rodd's configuration: defaults < config file < command line; config errors name the
# file, the line and what is wrong; daemon mode returns once rodd answers; --help.
. "$(dirname "$0")/lib.sh"

# --help documents the interface, including the key file's default.
"$RODD" --help | grep -q -- '--key-file' || fail "--help lacks --key-file"
"$RODD" --help | grep -q '/etc/rodstore/rod.key' || fail "--help does not give the key file's default"
expect_rc 1 "$RODD" --bogus
expect_rc 1 "$RODD" --foreground --listen 127.0.0.1
expect_stderr 'ADDR:PORT'
expect_rc 1 "$RODD" --foreground --array-name 'bad name'
expect_stderr 'not valid'

# Errors in the config file: file:line and what is wrong, exit 1.
cfg=$ROD_TMP/rod.conf
printf '# rodstore\ndata = %s/x\nbogus = 1\n' "$ROD_TMP" >"$cfg"
expect_rc 1 "$RODD" --foreground --config "$cfg"
expect_stderr "rod.conf:3: unknown key \"bogus\""
printf '[rodd]\nlisten = 127.0.0.1:99999\n' >"$cfg"
expect_rc 1 "$RODD" --foreground --config "$cfg"
expect_stderr "rod.conf:2: listen \"127.0.0.1:99999\": the port"
printf '[other]\ndata = /x\n' >"$cfg"
expect_rc 1 "$RODD" --foreground --config "$cfg"
expect_stderr "rod.conf:2: unknown section \[other\]"
printf 'data = /x\nthis is not ini\n' >"$cfg"
expect_rc 1 "$RODD" --foreground --config "$cfg"
expect_stderr "rod.conf:2: "
expect_rc 1 "$RODD" --foreground --config "$ROD_TMP/missing.conf"
expect_stderr "cannot read config file"

# --check-config prints the effective settings: defaults < config file < flags
printf 'socket = /from/config.sock\nlisten = 127.0.0.1:1, [::1]:2\narray_name = cfg\n' >"$cfg"
out=$("$RODD" --check-config) || fail "--check-config without a config failed"
grep -qx 'data = /var/lib/rodstore' <<<"$out" || fail "default data dir: $out"
grep -qx 'listen = 0.0.0.0:3260' <<<"$out" || fail "default listen: $out"
grep -qx 'socket = /run/rodstore/rodd.sock' <<<"$out" || fail "default socket: $out"
out=$("$RODD" --config "$cfg" --check-config --array-name flag)
grep -qx 'socket = /from/config.sock' <<<"$out" || fail "config socket: $out"
expect_eq "listen = 127.0.0.1:1,listen = [::1]:2" "$(grep '^listen' <<<"$out" | paste -sd,)" "config listens"
grep -qx 'array_name = flag' <<<"$out" || fail "flag overrides config: $out"
out=$("$RODD" --config "$cfg" --check-config --listen 127.0.0.1:9)
expect_eq "listen = 127.0.0.1:9" "$(grep '^listen' <<<"$out")" "--listen replaces the config's list"
printf 'nonsense = 1\n' >"$cfg"
expect_rc 1 "$RODD" --config "$cfg" --check-config
expect_stderr 'rod.conf:1: unknown key'

# The config file's values apply...
cat >"$cfg" <<CONF
# a comment
[rodd]
data = $ROD_TMP/cfgdata
socket = $ROD_TMP/cfg.sock
listen = 127.0.0.1:0
array_name = fromconfig
key_file = $ROD_TMP/rod.key
CONF
"$RODD" --foreground --config "$cfg" >>"$ROD_LOG" 2>&1 &
RODD_PID=$!
export ROD_SOCKET=$ROD_TMP/cfg.sock
wait_rodd_ready
j=$(rodctl --json array show)
expect_eq "fromconfig" "$(jq -r .name <<<"$j")" "array name from the config file"
expect_eq "$ROD_TMP/rod.key" "$(jq -r .key_file <<<"$j")" "key file recorded"
expect_eq "$ROD_TMP/cfgdata" "$(jq -r .data_dir <<<"$j")" "data dir shown"
jq -r '.warnings[]' <<<"$j" | grep -q 'inside the data directory' && fail "key file outside the data dir warned about"
[ -d "$ROD_TMP/cfgdata" ] || fail "data directory from the config file not created"
stop_rodd

# ...and flags override them (a new data dir so the array name is chosen again).
export ROD_SOCKET=$ROD_TMP/flag.sock
"$RODD" --foreground --config "$cfg" --data "$ROD_TMP/flagdata" --socket "$ROD_SOCKET" \
	--array-name fromflag >>"$ROD_LOG" 2>&1 &
RODD_PID=$!
wait_rodd_ready
expect_eq "fromflag" "$(rodctl --json array show | jq -r .name)" "array name from the flag"
[ -S "$ROD_TMP/cfg.sock" ] && fail "config socket used although --socket was given"
[ -d "$ROD_TMP/flagdata" ] || fail "--data not used"
stop_rodd
# a key file inside the data directory is warned about (the store's own key, copied there)
cp "$ROD_TMP/rod.key" "$ROD_TMP/flagdata/rod.key"
"$RODD" --foreground --data "$ROD_TMP/flagdata" --socket "$ROD_SOCKET" --listen 127.0.0.1:0 \
	--key-file "$ROD_TMP/flagdata/rod.key" >>"$ROD_LOG" 2>&1 &
RODD_PID=$!
wait_rodd_ready
rodctl array show | grep -q '^warning: .*inside the data directory' || fail "no warning for a key file in the data dir"
# a second rodd on the same socket is refused
expect_rc 1 "$RODD" --foreground --data "$ROD_TMP/other" --listen 127.0.0.1:0 --socket "$ROD_SOCKET"
expect_stderr 'another rodd answers'
# and so is a second rodd on the same data directory
expect_rc 1 "$RODD" --foreground --data "$ROD_TMP/flagdata" --listen 127.0.0.1:0 --socket "$ROD_TMP/other.sock"
expect_stderr 'in use by another rodd'
[ -S "$ROD_TMP/other.sock" ] && fail "the refused rodd left a socket behind"
stop_rodd

# Several portals, IPv6 written [ADDR]:PORT: both listed, both serve the LUNs.
if ip -6 addr show lo 2>/dev/null | grep -q '::1'; then
	export ROD_SOCKET=$ROD_TMP/v6.sock
	"$RODD" --foreground --data "$ROD_TMP/v6data" --listen '[::1]:0' --listen 127.0.0.1:0 \
		--socket "$ROD_SOCKET" >>"$ROD_LOG" 2>&1 &
	RODD_PID=$!
	wait_rodd_ready
	j=$(rodctl --json array show)
	expect_eq "2" "$(jq '.portals | length' <<<"$j")" "portal count"
	p6=$(jq -r '.portals[] | select(startswith("[::1]:"))' <<<"$j")
	[ -n "$p6" ] || fail "no IPv6 portal in $j"
	rodctl vol create v6 --size 1M >/dev/null
	rodctl host create any --iqn '*' >/dev/null
	rodctl host connect any v6 >/dev/null
	expect_eq "2048 512" "$(rodtest_iscsi capacity "iscsi://$p6/$ROD_IQN/0")" "capacity over IPv6"
	stop_rodd
else
	note "no IPv6 loopback: IPv6 portal not tested"
fi

# Daemon mode: rodd returns once the listener and the socket are up; the pid file
# names the daemon; SIGTERM stops it and removes the pid file.
export ROD_SOCKET=$ROD_TMP/daemon.sock
"$RODD" --data "$ROD_TMP/ddata" --listen 127.0.0.1:0 --socket "$ROD_SOCKET" --pidfile "$ROD_TMP/rodd.pid" \
	--array-name daemon || fail "rodd did not daemonise cleanly"
rodctl array show >/dev/null || fail "rodctl cannot reach rodd right after it returned"
pid=$(cat "$ROD_TMP/rodd.pid")
kill -0 "$pid" || fail "pid file does not name a live process"
kill -TERM "$pid"
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "daemon did not stop on SIGTERM"
[ -e "$ROD_TMP/rodd.pid" ] && fail "pid file left behind"
# Limits (rod.conf(5) LIMITS): each value checked with file:line, --limit KEY=VALUE over
# the file, --check-config shows the effective ones.
for bad in 'max_volumes = -3:max_volumes "-3": expected a number' 'gc_rate = fast:gc_rate "fast": expected a rate' \
	'gc_threshold = 150%:gc_threshold "150%": expected a used-space percentage' \
	'job_workers = 0:job_workers "0": expected a number of jobs' \
	'http_require_token = maybe:http_require_token "maybe": expected yes or no' \
	'recovery_window = 40d:recovery_window "40d": expected a duration'; do
	printf '[rodd]\n# limits\n%s\n' "${bad%%:*}" >"$cfg"
	expect_rc 1 "$RODD" --config "$cfg" --check-config
	expect_stderr "rod.conf:3: ${bad#*:}"
done
out=$("$RODD" --check-config)
for l in 'max_volumes = unlimited' 'gc_rate = unlimited' 'gc_threshold = off' 'job_workers = 1' \
	'http_require_token = yes'; do
	grep -qx "$l" <<<"$out" || fail "default limit '$l' not in: $out"
done
printf 'max_volumes = 10\ngc_rate = 64M\ngc_threshold = 70%%\nrecovery_window = 2h\njob_workers = 2\n' >"$cfg"
out=$("$RODD" --config "$cfg" --check-config --limit max_volumes=20)
for l in 'max_volumes = 20' "gc_rate = $((64 << 20))" 'gc_threshold = 70%' 'recovery_window = 7200s' 'job_workers = 2'; do
	grep -qx "$l" <<<"$out" || fail "limit '$l' not in: $out"
done
expect_rc 1 "$RODD" --check-config --limit bogus=1
expect_stderr 'expected KEY=VALUE with a limit key'
expect_rc 1 "$RODD" --check-config --limit job_workers=99
expect_stderr 'job_workers "99"'

# Their effect, and SIGHUP applies them.
export ROD_SOCKET=$ROD_TMP/lim.sock
ROD_DATA=$ROD_TMP/limdata
printf '[rodd]\nmax_volumes = 2\nrecovery_window = 1h\ngc_rate = 8M\n' >"$cfg"
start_rodd --config "$cfg" --http 127.0.0.1:0
hup() { # hup CONFIG-TEXT: write the config, SIGHUP, wait until the limits are applied
	local n
	n=$(grep -c 'SIGHUP: limits applied' "$ROD_LOG" || true)
	printf "$1" >"$cfg"
	kill -HUP "$RODD_PID"
	for _ in $(seq 50); do [ "$(grep -c 'SIGHUP: limits applied' "$ROD_LOG")" -gt "$n" ] && return 0; sleep 0.1; done
	fail "SIGHUP did not apply the limits"
}
# max_volumes: volumes and snapshots count; refused with a message naming the key
rodctl vol create l1 --size 1M >/dev/null
rodctl vol snap l1 --suffix s1 >/dev/null
expect_rc 3 rodctl vol create l2 --size 1M
expect_stderr 'holds 2 volumes and snapshots, the most rod.conf allows \(max_volumes = 2\)'
expect_rc 3 rodctl vol clone l1 l2
expect_stderr 'max_volumes = 2'
expect_rc 3 rodctl vol snap l1
expect_rc 3 rodctl vol copy l1 l2
# recovery_window from the file
expect_eq 3600 "$(rodctl --json array show | jq .recovery_window_s)" "recovery window from rod.conf"
# gc_rate: the rate of GC jobs unless --rate is given
expect_eq $((8 << 20)) "$(rodctl --json array gc --wait | jq .result.rate_limit)" "gc_rate"
expect_eq $((16 << 20)) "$(rodctl --json array gc --rate 16M --wait | jq .result.rate_limit)" "gc --rate over gc_rate"
# http_require_token (default yes): no token, no answer
HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
expect_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/api/v1/array")" "REST without a token"

# reload: more volumes, a shorter window, loopback clients without a token, 2 job workers
hup '[rodd]\nmax_volumes = 3\nrecovery_window = 0\nhttp_require_token = no\njob_workers = 2\n'
rodctl vol create l2 --size 64M >/dev/null || fail "max_volumes raised by SIGHUP not applied"
expect_rc 3 rodctl vol create l3 --size 1M
expect_eq 0 "$(rodctl --json array show | jq .recovery_window_s)" "recovery window after SIGHUP"
rodctl vol destroy l1.s1 >/dev/null
for _ in $(seq 50); do
	rodctl --json vol list --destroyed | jq -e '[.volumes[]? // .[]? | select(.name == "l1.s1")] | length == 0' \
		>/dev/null 2>&1 && break
	sleep 0.1
done
rodctl --json job list | jq -e '[.jobs[] | select(.kind == "eradicate" and .result.eradicated == ["l1.s1"])] | length == 1' \
	>/dev/null || fail "recovery_window = 0 did not eradicate l1.s1: $(rodctl --json job list)"
expect_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/api/v1/array")" "REST without a token, loopback"
# two jobs run at once with job_workers = 2
a=$(rodctl --json vol scrub l2 --rate 4M | jq .id)
b=$(rodctl --json vol scrub l2 --rate 4M | jq .id)
for _ in $(seq 50); do
	[ "$(rodctl --json job show "$b" | jq -r .state)" = running ] && break
	sleep 0.1
done
expect_eq "running running" "$(rodctl --json job show "$a" | jq -r .state) $(rodctl --json job show "$b" | jq -r .state)" \
	"two jobs with job_workers = 2"
rodctl job cancel "$a" >/dev/null
rodctl job cancel "$b" >/dev/null
# back to one worker: a restart applies it; a third scrub waits for the second
stop_rodd
printf '[rodd]\nmax_volumes = 3\n' >"$cfg"
start_rodd --config "$cfg"
a=$(rodctl --json vol scrub l2 --rate 4M | jq .id)
b=$(rodctl --json vol scrub l2 --rate 4M | jq .id)
sleep 0.3
expect_eq "queued" "$(rodctl --json job show "$b" | jq -r .state)" "second job waits with one worker"
rodctl job cancel "$a" >/dev/null
rodctl job cancel "$b" >/dev/null
# gc_threshold: used space above it starts a background GC job
stop_rodd
start_rodd --config "$cfg" --capacity 512M --limit gc_threshold=1%
rodtest_iscsi write "$(rod_quick_lun g3 16M)" 0 32768 3
for _ in $(seq 100); do
	rodctl --json job list | jq -e '[.jobs[] | select(.target == "array (background)")] | length >= 1' >/dev/null && break
	sleep 0.1
done
rodctl --json job list | jq -e '[.jobs[] | select(.kind == "gc" and .target == "array (background)")] | length >= 1' \
	>/dev/null || fail "no background GC job above gc_threshold: $(rodctl --json job list)"
stop_rodd
# max_sessions (refused with 03/02 at login, raised by SIGHUP) and max_odx_tokens (the
# token table: POPULATE TOKEN beyond it gets 05/55/0D)
RODTEST_COPY=${RODTEST_COPY:-$(dirname "$RODTEST_ISCSI")/rodtest-copy}
printf '[rodd]\nmax_sessions = 1\nmax_odx_tokens = 16\n' >"$cfg"
"$RODD" --config "$cfg" --check-config | grep -qx 'max_odx_tokens = 16' || fail "--check-config max_odx_tokens"
start_rodd --config "$cfg"
u=$(rod_quick_lun s1 8M)
mkfifo "$ROD_TMP/sin"
rodtest_iscsi session "$u" <"$ROD_TMP/sin" >"$ROD_TMP/sout" 2>&1 &
SPID=$!
exec 7>"$ROD_TMP/sin"
echo "tur 0" >&7
for _ in $(seq 100); do grep -q . "$ROD_TMP/sout" && break; sleep 0.1; done
expect_rc 3 rodtest_iscsi login "$u"
grep -q 'refused: the target holds its maximum of sessions' "$ROD_LOG" || fail "no log line for the refused session"
hup '[rodd]\nmax_sessions = 2\nmax_odx_tokens = 16\n'
rodtest_iscsi login "$u" || fail "a second session refused after max_sessions = 2"
exec 7>&-
wait "$SPID" || true
for i in $(seq 16); do
	"$RODTEST_COPY" pt "$u" 0:8 "$ROD_TMP/tok$i" >/dev/null || fail "POPULATE TOKEN $i of 16"
done
expect_rc 4 "$RODTEST_COPY" pt "$u" 0:8 "$ROD_TMP/tok17"
grep -qi 'sense=5/55/d\|sense=05/55/0d' "$ROD_TMP/stdout" "$ROD_TMP/stderr" ||
	fail "17th token: $(cat "$ROD_TMP/stdout" "$ROD_TMP/stderr")"
stop_rodd
note "ok"
