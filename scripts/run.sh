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
	# rodd returns once its listeners and control socket are up
	$rodd --data "$data" --listen "$listen" --socket "$sock" --pidfile "$(dirname "$sock")/rodd.pid"
	for _ in $(seq 100); do
		$rodctl array show >/dev/null 2>&1 && break
		sleep 0.1
	done
fi
$rodctl vol show demo >/dev/null 2>&1 || $rodctl vol create demo --size 10G >/dev/null
# The host that every initiator matches: an existing '*' host, else a new demo-hosts.
host=$($rodctl --json host list | jq -r '[.hosts[] | select(.iqns | index("*"))][0].name // empty')
if [ -z "$host" ]; then
	host=demo-hosts
	$rodctl host create "$host" --iqn '*' >/dev/null
fi
lun=$($rodctl --json vol show demo | jq -r --arg h "$host" '[.connections[] | select(.host == $h)][0].lun // empty')
if [ -z "$lun" ]; then
	lun=$($rodctl --json host connect "$host" demo | jq -r .lun)
fi
iqn=$($rodctl --json array show | jq -r .target_iqn)
port=${listen##*:}
addr=${listen%:*}
case $addr in 0.0.0.0|"[::]") addr=127.0.0.1 ;; esac
echo "rodd is running (data $data, control socket $sock)."
echo "Attach the demo volume at: iscsi://$addr:$port/$iqn/$lun"
echo "Stop it with: kill \$(cat $(dirname "$sock")/rodd.pid)"
