#!/usr/bin/env bash
# Builds rodstore, starts rodd (daemonised) with the default data directory, and
# makes a demo volume visible to every initiator. Prints the iSCSI URL to attach.
# Environment: ROD_DATA (default /var/lib/rodstore), ROD_LISTEN (default 0.0.0.0:3260),
# ROD_SOCKET (default /run/rodstore/rodd.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build
data=${ROD_DATA:-/var/lib/rodstore}
listen=${ROD_LISTEN:-0.0.0.0:3260}
sock=${ROD_SOCKET:-/run/rodstore/rodd.sock}
export ROD_SOCKET=$sock
rodd=build/cmd/rodd/rodd
rodctl=build/cmd/rodctl/rodctl

if ! $rodctl array show >/dev/null 2>&1; then
	mkdir -p "$(dirname "$sock")" "$data"
	$rodd --data "$data" --listen "$listen" --socket "$sock" --pidfile "$(dirname "$sock")/rodd.pid"
	for _ in $(seq 100); do
		$rodctl array show >/dev/null 2>&1 && break
		sleep 0.1
	done
fi
$rodctl vol show demo >/dev/null 2>&1 || $rodctl vol create demo --size 10G
$rodctl host list --json | grep -q '"demo-hosts"' || $rodctl host create demo-hosts --iqn '*'
$rodctl host connect demo-hosts demo >/dev/null 2>&1 || true
iqn=$($rodctl --json array show | sed -n 's/.*"target_iqn": *"\([^"]*\)".*/\1/p')
port=${listen##*:}
echo "rodd is running (data $data, control socket $sock)."
echo "Attach the demo volume at: iscsi://127.0.0.1:$port/$iqn/0"
echo "Stop it with: kill \$(cat $(dirname "$sock")/rodd.pid)"
