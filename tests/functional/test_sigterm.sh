#!/usr/bin/env bash
# SIGTERM while a host is writing: rodd finishes the commands in flight, flushes and
# exits 0; every write it acknowledged reads back after a restart.
. "$(dirname "$0")/lib.sh"
start_rodd
rodctl vol create big --size 256M >/dev/null
rodctl host create all --iqn '*' >/dev/null
rodctl host connect all big >/dev/null
url=$(rod_url 0)

# 512 Ki blocks (256 MiB) in 64 KiB commands; progress lines = blocks acknowledged
rodtest_iscsi -p write "$url" 0 524288 9 >"$ROD_TMP/progress" 2>"$ROD_TMP/client.err" &
client=$!
for _ in $(seq 200); do
	[ -s "$ROD_TMP/progress" ] && break
	sleep 0.05
done
[ -s "$ROD_TMP/progress" ] || fail "the writer made no progress"
stop_rodd                                   # fails unless rodd exits 0
# the writer loses its session (or has finished); never wait for it forever
for _ in $(seq 100); do kill -0 "$client" 2>/dev/null || break; sleep 0.1; done
kill "$client" 2>/dev/null && fail "the writer hung after rodd stopped"
wait "$client" || true
acked=$(tail -n 1 "$ROD_TMP/progress")
note "$acked blocks acknowledged before shutdown"
[ "$acked" -gt 0 ] || fail "nothing acknowledged"

start_rodd
rodtest_iscsi verify "$url" 0 "$acked" 9 || fail "acknowledged writes lost across SIGTERM"
stop_rodd
note "ok"
