#!/usr/bin/env bash
# SIGHUP re-reads rod.conf: the log level changes live; keys that cannot change while
# rodd runs (listen, data, ...) are named in the log; a broken file changes nothing and
# the log gives file:line. --check-config shows log_level.
. "$(dirname "$0")/lib.sh"

conf=$ROD_TMP/rod.conf
printf '[rodd]\nlog_level = warn\n' >"$conf"
"$RODD" --config "$conf" --data "$ROD_TMP/x" --check-config | grep -qx 'log_level = warn' || fail "--check-config log_level"
printf 'log_level = loud\n' >"$ROD_TMP/bad.conf"
expect_rc 1 "$RODD" --config "$ROD_TMP/bad.conf" --check-config
expect_stderr 'bad.conf:1: log_level must be error, warn, info or debug'

start_rodd --config "$conf"
rodctl vol create quiet1 --size 1M >/dev/null
grep -q 'volume quiet1 created' "$ROD_LOG" && fail "info line logged at log_level warn"

# live: log level; not live: listen (said in the log)
printf '[rodd]\nlog_level = info\nlisten = 127.0.0.1:1\n' >"$conf"
kill -HUP "$RODD_PID"
for _ in $(seq 50); do grep -q 'SIGHUP: .* re-read' "$ROD_LOG" && break; sleep 0.1; done
grep -q "listen addresses cannot change while rodd runs" "$ROD_LOG" || fail "no word about listen in the log"
rodctl vol create loud1 --size 1M >/dev/null
grep -q 'volume loud1 created' "$ROD_LOG" || fail "log level info not applied by SIGHUP"
rodctl array show >/dev/null || fail "rodd stopped answering after SIGHUP"

# a broken file: error with file:line, nothing changes
printf '[rodd]\nlog_level = warn\nfrobnicate = 1\n' >"$conf"
kill -HUP "$RODD_PID"
for _ in $(seq 50); do grep -q 'configuration unchanged' "$ROD_LOG" && break; sleep 0.1; done
grep -q "rod.conf:3: unknown key \"frobnicate\".*configuration unchanged" "$ROD_LOG" || fail "broken file not reported"
rodctl vol create loud2 --size 1M >/dev/null
grep -q 'volume loud2 created' "$ROD_LOG" || fail "a broken file changed the log level"
stop_rodd
note "ok"
