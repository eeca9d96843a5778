#!/usr/bin/env bash
# REST API over HTTP: bearer tokens (created with rodctl, only a hash stored, refused
# when missing/wrong/deleted), volumes, hosts and connections through REST with the
# same JSON objects rodctl --json prints, errors with HTTP statuses, the generic
# /api/v1/rpc/METHOD route, loopback-only binding, persistence of tokens.
. "$(dirname "$0")/lib.sh"

start_rodd --http 127.0.0.1:0
HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
[ -n "$HTTP" ] || fail "rodd did not log its HTTP address"
BASE=http://$HTTP/api/v1

# api METHOD PATH [BODY]: prints the body; the HTTP status goes to $ROD_TMP/code (the
# call usually runs in a $(...) subshell).
api() {
	local m=$1 p=$2 body=${3:-}
	local args=(-s -o "$ROD_TMP/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN")
	[ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
	curl "${args[@]}" "$BASE$p" >"$ROD_TMP/code" || fail "curl $m $p failed"
	cat "$ROD_TMP/body"
}
expect_code() {
	local code
	code=$(cat "$ROD_TMP/code")
	[ "$code" = "$1" ] || fail "$2: HTTP $code, expected $1 ($(cat "$ROD_TMP/body"))"
}
same_json() {
	[ "$(jq -S . <<<"$1")" = "$(jq -S . <<<"$2")" ] || fail "$3: REST and rodctl differ:
REST:   $1
rodctl: $2"
}

note "tokens"
TOKEN=$(rodctl array token create --name ci 2>/dev/null)
[[ $TOKEN =~ ^rod_[0-9a-f]{16}_[0-9a-f]{64}$ ]] || fail "token '$TOKEN' is not rod_<16 hex>_<64 hex>"
TID=$(cut -d_ -f2 <<<"$TOKEN")
SECRET=$(cut -d_ -f3 <<<"$TOKEN")
list=$(rodctl --json array token list)
expect_eq "$TID" "$(jq -r '.tokens[0].id' <<<"$list")" "token id in the list"
expect_eq ci "$(jq -r '.tokens[0].name' <<<"$list")" "token name"
grep -q "$SECRET" <<<"$list" && fail "token list shows the secret"
jq -e '.tokens[0] | has("sha256") | not' <<<"$list" >/dev/null || fail "token list shows the hash"
rodctl --json array token list >/dev/null
# only a hash of it is stored: the secret appears nowhere in the data directory
if grep -rqa "$SECRET" "$ROD_DATA"; then fail "the token secret is stored in $ROD_DATA"; fi

note "401 without a token, with a wrong one, with a tampered one"
for hdr in "" "Authorization: Bearer nope" "Authorization: Bearer rod_${TID}_$(printf '0%.0s' {1..64})" \
	   "Authorization: Basic $TOKEN" "Authorization: Bearer ${TOKEN}x"; do
	args=(-s -o "$ROD_TMP/body" -w '%{http_code}')
	[ -n "$hdr" ] && args+=(-H "$hdr")
	code=$(curl "${args[@]}" "$BASE/volumes")
	expect_eq 401 "$code" "GET /volumes with '${hdr:-no header}'"
	jq -e '.error.message | test("token")' "$ROD_TMP/body" >/dev/null || fail "401 body: $(cat "$ROD_TMP/body")"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{"name":"x","size":"1M"}' "$BASE/volumes")
expect_eq 401 "$code" "POST /volumes without a token"
expect_rc 2 rodctl vol show x

note "array"
r=$(api GET /array); expect_code 200 "GET /array"
same_json "$r" "$(rodctl --json array show)" "array show"

note "volumes: create, list, show, resize, errors"
r=$(api POST /volumes '{"name":"db1","size":"64M"}'); expect_code 201 "POST /volumes"
expect_eq 67108864 "$(jq .size <<<"$r")" "created size"
grep -q "http: token $TID: POST /api/v1/volumes -> vol.create ok" "$ROD_LOG" || fail "the change is not logged with the token id"
same_json "$r" "$(rodctl --json vol show db1)" "vol create vs vol show"
api POST /volumes '{"name":"db2","size":1048576,"block_size":4096}' >/dev/null; expect_code 201 "POST /volumes db2"
expect_eq 4096 "$(rodctl --json vol show db2 | jq .block_size)" "db2 block size seen by rodctl"
r=$(api GET /volumes); expect_code 200 "GET /volumes"
same_json "$r" "$(rodctl --json vol list)" "vol list"
expect_eq "db1 db2" "$(jq -r '[.volumes[].name] | join(" ")' <<<"$r")" "volume names"
r=$(api GET /volumes/db1); expect_code 200 "GET /volumes/db1"
same_json "$r" "$(rodctl --json vol show db1)" "vol show"
r=$(api PATCH /volumes/db1 '{"size":"128M"}'); expect_code 200 "PATCH /volumes/db1"
expect_eq 134217728 "$(jq .size <<<"$r")" "resized size"
expect_eq 134217728 "$(rodctl --json vol show db1 | jq .size)" "resized size seen by rodctl"
r=$(api POST /volumes/db1/resize '{"size":"192M"}'); expect_code 200 "POST /volumes/db1/resize"
expect_eq 201326592 "$(rodctl --json vol show db1 | jq .size)" "second resize seen by rodctl"
api PATCH /volumes/db1 '{"size":"64M"}' >/dev/null; expect_code 400 "shrink without shrink:true"
jq -e '.error.code == -32602 and (.error.message | test("shrink"))' "$ROD_TMP/body" >/dev/null ||
	fail "shrink error body: $(cat "$ROD_TMP/body")"
api PATCH /volumes/db1 '{"size":"64M","shrink":true}' >/dev/null; expect_code 200 "shrink with shrink:true"
expect_eq 67108864 "$(rodctl --json vol show db1 | jq .size)" "shrunk size"
api PATCH /volumes/db1 '{"cache":"write-back","offload":false}' >/dev/null; expect_code 200 "PATCH settings"
expect_eq "write-back false" "$(rodctl --json vol show db1 | jq -r '"\(.cache) \(.offload)"')" "settings seen by rodctl"
api PATCH /volumes/db1 '{"size":"128M","cache":"write-through"}' >/dev/null; expect_code 400 "size and settings at once"
expect_eq 67108864 "$(rodctl --json vol show db1 | jq .size)" "size after a refused PATCH"
api PATCH /volumes/db1 '{"cache":"write-through","offload":true}' >/dev/null; expect_code 200 "PATCH settings back"
api POST /volumes '{"name":"db1","size":"1M"}' >/dev/null; expect_code 409 "duplicate volume"
jq -e '.error.kind == "conflict"' "$ROD_TMP/body" >/dev/null || fail "409 body: $(cat "$ROD_TMP/body")"
api GET /volumes/nope >/dev/null; expect_code 404 "missing volume"
jq -e '.error.code == -32001 and (.error.message | test("nope"))' "$ROD_TMP/body" >/dev/null ||
	fail "404 body: $(cat "$ROD_TMP/body")"
api POST /volumes '{"name":"bad name","size":"1M"}' >/dev/null; expect_code 400 "bad volume name"
api POST /volumes '{"name":"v3","size":"lots"}' >/dev/null; expect_code 400 "bad size"
api POST /volumes '{"name":"v3",' >/dev/null; expect_code 400 "body not JSON"
jq -e '.error.code == -32700' "$ROD_TMP/body" >/dev/null || fail "parse error body: $(cat "$ROD_TMP/body")"
api POST /volumes '[1,2]' >/dev/null; expect_code 400 "body not an object"
api PUT /volumes >/dev/null; expect_code 405 "PUT /volumes"
code=$(head -c 1100000 /dev/zero | tr '\0' ' ' | curl -s -o "$ROD_TMP/body" -w '%{http_code}' -X POST \
	-H "Authorization: Bearer $TOKEN" --data-binary @- "$BASE/volumes")
expect_eq 413 "$code" "a body over 1 MiB"
api GET /nothing >/dev/null; expect_code 404 "unknown path"
expect_rc 2 rodctl vol show v3

note "hosts and connections"
r=$(api POST /hosts '{"name":"h1","iqns":["iqn.2026-11.test:h1"]}'); expect_code 201 "POST /hosts"
same_json "$r" "$(rodctl --json host show h1)" "host create vs host show"
r=$(api POST /hosts/h1/connections '{"volume":"db1","lun":3}'); expect_code 201 "connect"
expect_eq 3 "$(jq .lun <<<"$r")" "connected LUN"
expect_eq 3 "$(rodctl --json host show h1 | jq '.connections[0].lun')" "connection seen by rodctl"
api POST /hosts/h1/connections '{"volume":"db1"}' >/dev/null; expect_code 409 "connect twice"
r=$(api GET /hosts); expect_code 200 "GET /hosts"
same_json "$r" "$(rodctl --json host list)" "host list"
r=$(api GET /hosts/h1); expect_code 200 "GET /hosts/h1"
same_json "$r" "$(rodctl --json host show h1)" "host show"
api DELETE /hosts/h1 >/dev/null; expect_code 409 "delete a host with connections"
api DELETE /hosts/h1/connections/db1 >/dev/null; expect_code 200 "disconnect"
expect_eq 0 "$(rodctl --json host show h1 | jq '.connections | length')" "connections after disconnect"
api DELETE /hosts/h1/connections/db1 >/dev/null; expect_code 404 "disconnect twice"
api DELETE /hosts/h1 >/dev/null; expect_code 200 "DELETE /hosts/h1"
expect_rc 2 rodctl host show h1

note "any JSON-RPC method through /api/v1/rpc/METHOD"
r=$(api POST /rpc/vol.show '{"name":"db2"}'); expect_code 200 "rpc vol.show"
same_json "$r" "$(rodctl --json vol show db2)" "rpc vol.show"
api POST /rpc/no.such.method '{}' >/dev/null; expect_code 404 "rpc unknown method"
jq -e '.error.code == -32601' "$ROD_TMP/body" >/dev/null || fail "unknown method body: $(cat "$ROD_TMP/body")"

note "delete a volume"
r=$(api DELETE /volumes/db2); expect_code 200 "DELETE /volumes/db2"
expect_eq db2 "$(jq -r .name <<<"$r")" "deleted name"
expect_rc 2 rodctl vol show db2
api DELETE /volumes/db2 >/dev/null; expect_code 404 "DELETE twice"

note "tokens over REST; a deleted token is refused"
r=$(api POST /tokens '{"name":"second"}'); expect_code 201 "POST /tokens"
T2=$(jq -r .token <<<"$r")
expect_eq 2 "$(rodctl --json array token list | jq '.tokens | length')" "tokens after a REST create"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T2" "$BASE/volumes")
expect_eq 200 "$code" "the second token works"
rodctl array token delete "$(cut -d_ -f2 <<<"$T2")" >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T2" "$BASE/volumes")
expect_eq 401 "$code" "a deleted token"
expect_rc 2 rodctl array token delete "$(cut -d_ -f2 <<<"$T2")"
expect_rc 1 rodctl array token delete not-hex

note "tokens survive a restart"
stop_rodd
start_rodd --http 127.0.0.1:0
HTTP=$(grep -o 'HTTP API and /metrics on [^ ]*' "$ROD_LOG" | tail -1 | awk '{print $NF}')
BASE=http://$HTTP/api/v1
r=$(api GET /volumes/db1); expect_code 200 "GET after restart"
expect_eq 67108864 "$(jq .size <<<"$r")" "db1 size after restart"
stop_rodd

note "loopback only unless --http-allow-remote"
expect_rc 1 "$RODD" --foreground --data "$ROD_DATA" --socket "$ROD_SOCKET" --listen 127.0.0.1:0 --http 0.0.0.0:0
expect_stderr "not a loopback address.*--http-allow-remote"
expect_rc 1 "$RODD" --check-config --http nonsense
expect_stderr "--http nonsense"
"$RODD" --help | grep -q -- "--http-allow-remote" || fail "--help does not mention --http-allow-remote"
expect_rc 0 "$RODD" --check-config --http 127.0.0.1:8080
grep -qx "http = 127.0.0.1:8080" "$ROD_TMP/stdout" || fail "--check-config: $(cat "$ROD_TMP/stdout")"
printf 'http = [::1]:9090\nhttp_allow_remote = yes\n' >"$ROD_TMP/rod.conf"
expect_rc 0 "$RODD" --check-config --config "$ROD_TMP/rod.conf"
grep -qx "http_allow_remote = yes" "$ROD_TMP/stdout" || fail "config http_allow_remote: $(cat "$ROD_TMP/stdout")"
note "ok"
