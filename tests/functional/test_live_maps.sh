#!/usr/bin/env bash
# LUN map changes reach initiators that are already logged in: a connect shows up in
# REPORT LUNS of the open session, a disconnect or a destroy takes the LUN away at
# once (commands to it get LOGICAL UNIT NOT SUPPORTED, 05/25/00); a cache-mode change
# shows in the caching mode page after a MODE PARAMETERS CHANGED unit attention.
. "$(dirname "$0")/lib.sh"
start_rodd
rodctl vol create keep --size 8M >/dev/null
rodctl vol create gone --size 8M >/dev/null
rodctl vol create later --size 8M >/dev/null
rodctl host create h --iqn '*' >/dev/null
rodctl host connect h keep >/dev/null           # LUN 0
rodctl host connect h gone --lun 3 >/dev/null

mkfifo "$ROD_TMP/in"
rodtest_iscsi session "$(rod_url 0)" <"$ROD_TMP/in" >"$ROD_TMP/out" 2>"$ROD_TMP/session.err" &
client=$!
exec 3>"$ROD_TMP/in"
# ask CMD: send one command to the open session, print its answer line (commands are
# answered in order, one line each; works from subshells, unlike a counter)
ask() {
	local n
	n=$(($(wc -l <"$ROD_TMP/out") + 1))
	echo "$1" >&3
	for _ in $(seq 200); do
		[ "$(wc -l <"$ROD_TMP/out")" -ge "$n" ] && break
		kill -0 "$client" 2>/dev/null || fail "the session client died: $(cat "$ROD_TMP/session.err")"
		sleep 0.05
	done
	[ "$(wc -l <"$ROD_TMP/out")" -ge "$n" ] || fail "no answer to '$1'"
	sed -n "${n}p" "$ROD_TMP/out"
}

# ask_past_ua CMD: the first answer that is not a unit attention (sense key 6)
ask_past_ua() {
	local a
	for _ in 1 2 3 4 5; do
		a=$(ask "$1")
		[[ $a == "sense 6/"* ]] || break
	done
	echo "$a"
}

expect_eq "luns: 0 3 " "$(ask luns)" "LUNs at login"
expect_eq "good" "$(ask_past_ua 'read 3 0')" "read from LUN 3"

rodctl vol destroy gone >/dev/null
expect_eq "luns: 0 " "$(ask luns)" "LUNs after destroying the volume at LUN 3"
expect_eq "sense 5/25/00" "$(ask 'read 3 0')" "read from the destroyed LUN"

rodctl host connect h later --lun 7 >/dev/null
expect_eq "luns: 0 7 " "$(ask luns)" "LUNs after a connect"
expect_eq "good" "$(ask_past_ua 'tur 7')" "TEST UNIT READY on the new LUN"

# cache mode: hosts see the WCE bit change, after a MODE PARAMETERS CHANGED attention
expect_eq "wce 0" "$(ask_past_ua 'wce 7')" "WCE of a write-through volume"
rodctl vol set later --cache write-back >/dev/null
expect_eq "sense 6/2a/01" "$(ask 'tur 7')" "unit attention after the cache mode changed"
expect_eq "wce 1" "$(ask_past_ua 'wce 7')" "WCE of a write-back volume"

rodctl host disconnect h keep >/dev/null
expect_eq "luns: 7 " "$(ask luns)" "LUNs after a disconnect"
expect_eq "sense 5/25/00" "$(ask 'tur 0')" "TUR on the disconnected LUN"

exec 3>&-
for _ in $(seq 100); do kill -0 "$client" 2>/dev/null || break; sleep 0.1; done
wait "$client" || fail "the session client failed: $(cat "$ROD_TMP/session.err")"
stop_rodd
note "ok"
