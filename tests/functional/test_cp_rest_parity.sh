#!/usr/bin/env bash
# REST parity: protection groups, jobs and array calls through the REST routes of
# docs/api.md give the same JSON as rodctl --json (and as POST /api/v1/rpc/METHOD);
# statuses 200/201/202/404; a token is needed.
. "$(dirname "$0")/lib.sh"

start_rodd --http 127.0.0.1:0
HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
[ -n "$HTTP" ] || fail "rodd did not log its HTTP address"
BASE=http://$HTTP/api/v1
TOKEN=$(rodctl --json array token create --name parity | jq -r .token)

# api METHOD PATH [BODY]: the body on stdout, the status in $ROD_TMP/code
api() {
	local m=$1 p=$2 body=${3:-}
	local args=(-s -o "$ROD_TMP/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN")
	[ -n "$body" ] && args+=(--data "$body")
	curl "${args[@]}" "$BASE$p" >"$ROD_TMP/code" || fail "curl $m $p failed"
	cat "$ROD_TMP/body"
}
code() { expect_eq "$1" "$(cat "$ROD_TMP/code")" "$2 ($(cat "$ROD_TMP/body"))"; }
same() { [ "$(jq -S . <<<"$1")" = "$(jq -S . <<<"$2")" ] || fail "$3: REST and rodctl differ:
REST:   $1
rodctl: $2"; }

expect_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/pgs")" "pgs without a token"
rodctl vol create d1 --size 8M >/dev/null
rodctl vol create d2 --size 8M >/dev/null

# protection groups: a change through REST on g1 and through rodctl on g2 answer the
# same object (but for the name and creation time)
norm() { jq -S 'del(.name, .created)' <<<"$1"; }
r=$(api POST /pgs '{"name":"g1"}'); code 201 "POST /pgs"
same "$(norm "$r")" "$(norm "$(rodctl --json pg create g2)")" "pg.create"
r=$(api POST /pgs/g1/members '{"volume":"d1"}'); code 200 "POST /pgs/g1/members"
same "$(norm "$r")" "$(norm "$(rodctl --json pg add g2 d1)")" "pg.add"
rodctl pg destroy g2 >/dev/null
api POST /pgs/g1/members '{"pattern":"d*"}' >/dev/null; code 200 "pattern member"
api DELETE /pgs/g1/members '{"pattern":"d*"}' >/dev/null; code 200 "DELETE pattern member"
rodctl pg add g1 d2 >/dev/null
api DELETE /pgs/g1/members/d2 >/dev/null; code 200 "DELETE /pgs/g1/members/d2"
same "$(api GET /pgs/g1)" "$(rodctl --json pg show g1)" "GET /pgs/g1"
same "$(api GET /pgs)" "$(rodctl --json pg list)" "GET /pgs"
same "$(api POST /rpc/pg.list '{}')" "$(rodctl --json pg list)" "rpc/pg.list"
r=$(api POST /pgs/g1/snapshots '{"suffix":"s1"}'); code 201 "POST /pgs/g1/snapshots"
expect_eq "g1 s1" "$(rodctl --json pg show g1 | jq -r '"\(.name) \(.snapshots[-1].suffix // .snapshots[-1].name)"')" \
	"group snapshot made through REST"
api PUT /pgs/g1/schedule '{"every":"1h"}' >/dev/null; code 200 "PUT schedule"
api PUT /pgs/g1/retention '{"keep_all":"1d"}' >/dev/null; code 200 "PUT retention"
same "$(api GET /pgs/g1)" "$(rodctl --json pg show g1)" "pg after schedule/retention"
r=$(api POST /pgs/g1/snapshots/s1/restore '{"clone_prefix":"r-"}'); code 201 "restore"
rodctl --json vol show r-d1 >/dev/null || fail "restore through REST made no clone"
api POST /pgs/g1/snapshots/s1/revert >/dev/null; code 200 "revert"
api DELETE /pgs/g1/snapshots/s1 >/dev/null; code 200 "DELETE snapshot"
api GET /pgs/nosuch >/dev/null; code 404 "unknown pg"
api DELETE /pgs/g1 >/dev/null; code 200 "DELETE /pgs/g1"
expect_eq '[]' "$(rodctl --json pg list | jq -c '.groups // .pgs // []')" "pg list after delete"

# jobs, array
r=$(api POST /array/gc '{"full":true}'); code 202 "POST /array/gc"
id=$(jq .id <<<"$r")
rodctl job show "$id" --watch >/dev/null
same "$(api GET "/jobs/$id")" "$(rodctl --json job show "$id")" "GET /jobs/ID"
same "$(api GET /jobs)" "$(rodctl --json job list)" "GET /jobs"
r=$(api POST /volumes/d1/flatten '{"all":true}'); code 202 "POST /volumes/d1/flatten"
expect_eq "flatten d1" "$(jq -r '"\(.kind) \(.target)"' <<<"$r")" "flatten job through REST"
same "$(api GET /array/space)" "$(rodctl --json array space)" "GET /array/space"
same "$(api POST /rpc/array.space '{}')" "$(rodctl --json array space)" "rpc/array.space"
same "$(api GET /volumes/d1)" "$(rodctl --json vol show d1)" "GET /volumes/d1"
stop_rodd
note "ok"
