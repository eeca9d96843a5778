#!/usr/bin/env bash
# The audit log: every change through the control socket or REST is recorded with who
# (peer uid / token id), what (method + params, secrets masked) and when; reads are not;
# failed attempts are, marked failed; --since/--limit; kept across restarts. Also REST
# parity of the new volume methods through /api/v1/rpc/METHOD.
. "$(dirname "$0")/lib.sh"

start_rodd --http 127.0.0.1:0
HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
[ -n "$HTTP" ] || fail "rodd did not log its HTTP address"
me="uid:$(id -u)"

rodctl vol create e1 --size 16M >/dev/null
rodctl vol snap e1 --suffix a >/dev/null
rodctl vol list >/dev/null
rodctl vol show e1 >/dev/null
expect_rc 3 rodctl vol create e1 --size 16M
printf 'very-secret-chap-1\n' >"$ROD_TMP/sec"
rodctl host create h1 --iqn '*' --chap-user u1 --chap-secret-file "$ROD_TMP/sec" >/dev/null

j=$(rodctl --json events)
expect_eq "vol.create vol.snap vol.create host.create" "$(jq -r '[.events[].method] | join(" ")' <<<"$j")" \
	"recorded methods (reads left out)"
expect_eq "$me" "$(jq -r '.events[0].who' <<<"$j")" "who"
expect_eq "e1 a" "$(jq -r '.events[1].params | "\(.name) \(.suffix)"' <<<"$j")" "params"
expect_eq "true false" "$(jq -r '[.events[0].ok, .events[2].ok] | map(tostring) | join(" ")' <<<"$j")" "ok flags"
[[ $(jq -r '.events[2].error' <<<"$j") == *"already exists"* ]] || fail "failed attempt's error: $j"
expect_eq "***" "$(jq -r '.events[3].params.chap_secret' <<<"$j")" "secret masked"
rodctl --json events | grep -q very-secret-chap && fail "the CHAP secret appears in the audit log"
[[ $(jq -r '.events[0].time' <<<"$j") =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] || fail "time: $j"
rodctl events | grep -Eq "vol\.snap +ok" || fail "human events: $(rodctl events)"

# --limit keeps the newest; --since filters by time
expect_eq "host.create" "$(rodctl --json events --limit 1 | jq -r '[.events[].method] | join(" ")')" "--limit 1"
expect_eq "0" "$(rodctl --json events --since 2099-01-01T00:00:00Z | jq '.events | length')" "--since future"
expect_eq "4" "$(rodctl --json events --since 1h | jq '.events | length')" "--since 1h"
expect_rc 1 rodctl events --since yesterday
expect_rc 1 rodctl events --limit 0

# REST: changes are recorded with the token id; the new methods answer as over the socket
tok=$(rodctl array token create --name audit 2>/dev/null)
tid=$(cut -d_ -f2 <<<"$tok")
r=$(curl -s -H "Authorization: Bearer $tok" -X POST --data '{"source":"e1.a","name":"e2"}' "http://$HTTP/api/v1/rpc/vol.clone")
expect_eq "e2 e1.a" "$(jq -r '"\(.name) \(.source)"' <<<"$r")" "REST vol.clone"
expect_eq "token:$tid" "$(rodctl --json events --limit 1 | jq -r '.events[0].who')" "REST caller in the audit log"
expect_eq "vol.clone" "$(rodctl --json events --limit 1 | jq -r '.events[0].method')" "REST method recorded"
r=$(curl -s -H "Authorization: Bearer $tok" -X POST --data '{"volume":"e1"}' "http://$HTTP/api/v1/rpc/vol.snap.list")
expect_eq "$(rodctl --json vol snap list e1 | jq -S -c .)" "$(jq -S -c . <<<"$r")" "REST and rodctl snap list"
r=$(curl -s -H "Authorization: Bearer $tok" -X POST --data '{}' "http://$HTTP/api/v1/rpc/array.space")
expect_eq "$(rodctl --json array space | jq -c 'del(.used, .free)')" "$(jq -c 'del(.used, .free)' <<<"$r")" \
	"REST and rodctl array space"
expect_eq "401" "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{}' "http://$HTTP/api/v1/rpc/events.list")" \
	"events without a token"

# REST routes of the new operations: same JSON as rodctl --json
rest() {
	local m=$1 path=$2 body=${3:-}
	local args=(-s -o "$ROD_TMP/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $tok")
	[ -n "$body" ] && args+=(--data "$body")
	curl "${args[@]}" "http://$HTTP/api/v1$path" >"$ROD_TMP/code"
	cat "$ROD_TMP/body"
}
r=$(rest POST /volumes/e1/snapshots '{"suffix":"r1"}')
expect_eq "201" "$(cat "$ROD_TMP/code")" "REST snapshot status"
expect_eq "$(rodctl --json vol show e1.r1 | jq -S -c 'del(.space)')" "$(jq -S -c 'del(.space)' <<<"$r")" "REST snapshot object"
r=$(rest POST /volumes/e1/copy '{"target":"e3"}')
expect_eq "200 true" "$(cat "$ROD_TMP/code") $(jq -r .created <<<"$r")" "REST copy"
r=$(rest POST /volumes/e3/copy '{"target":"e1"}')
expect_eq "409" "$(cat "$ROD_TMP/code")" "REST copy over an existing volume without overwrite"
r=$(rest POST /volumes/e3/rename '{"new_name":"e4"}')
expect_eq "200 e4" "$(cat "$ROD_TMP/code") $(jq -r .name <<<"$r")" "REST rename"
r=$(rest GET /array/space)
expect_eq "200" "$(cat "$ROD_TMP/code")" "REST array space"
r=$(rest POST /array/gc '{}')
expect_eq "202 gc" "$(cat "$ROD_TMP/code") $(jq -r .kind <<<"$r")" "REST gc job"
gid=$(jq -r .id <<<"$r")
rodctl job show "$gid" --watch >/dev/null || fail "REST-started GC job did not finish"
r=$(rest GET "/jobs/$gid")
expect_eq "200 done" "$(cat "$ROD_TMP/code") $(jq -r .state <<<"$r")" "REST job show"
expect_eq "$(rodctl --json job show "$gid" | jq -S -c 'del(.rate)')" "$(jq -S -c 'del(.rate)' <<<"$r")" "REST job object"
rest DELETE "/jobs/$gid" >/dev/null
expect_eq "409" "$(cat "$ROD_TMP/code")" "REST cancel of a finished job"
rest GET /jobs/999 >/dev/null
expect_eq "404" "$(cat "$ROD_TMP/code")" "REST unknown job"
r=$(rest GET /events)
expect_eq "token:$tid" "$(jq -r '.events[-1].who' <<<"$r")" "REST events"

# kept across a restart
n=$(rodctl --json events | jq '.events | length')
stop_rodd
start_rodd
expect_eq "$n" "$(rodctl --json events | jq '.events | length')" "events after restart"
rodctl vol destroy e2 >/dev/null
expect_eq "vol.destroy e2" "$(rodctl --json events --limit 1 | jq -r '.events[0] | "\(.method) \(.params.name)"')" \
	"recording continues after restart"
stop_rodd
note "ok"
