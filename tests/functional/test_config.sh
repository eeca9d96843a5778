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
note "ok"
