#!/usr/bin/env bash
# Copy-offload benchmark: one rodd on a scratch data directory, a source volume filled
# with pseudo-random data, then copies of its first 1, 4 and 16 GiB to a second volume
# by ODX, EXTENDED COPY (4 MiB segments, 8 commands in flight, as a hypervisor's data
# mover sends them) and host read/write, all through rodcp. Prints one JSON document.
#
#   RODD=... RODCTL=... RODCP=... RODBENCH_FILL=... bash bench/copy/copy_bench.sh \
#       [--sizes "1G 4G 16G"] [--methods "odx xcopy rw"] [--dir DIR]
set -euo pipefail
: "${RODD:?}" "${RODCTL:?}" "${RODCP:?}" "${RODBENCH_FILL:?}"
SIZES="1G 4G 16G"
METHODS="odx xcopy rw"
BASE=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--methods) METHODS=$2; shift 2 ;;
	--dir) BASE=$2; shift 2 ;;
	*) echo "usage: copy_bench.sh [--sizes LIST] [--methods LIST] [--dir DIR]" >&2; exit 2 ;;
	esac
done
DIR=$(mktemp -d "$BASE/rodbench-copy.XXXXXX")
export ROD_SOCKET=$DIR/rodd.sock
RODD_PID=
cleanup() {
	[ -n "$RODD_PID" ] && kill -TERM "$RODD_PID" 2>/dev/null && wait "$RODD_PID" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT

"$RODD" --foreground --data "$DIR/data" --listen 127.0.0.1:0 --socket "$ROD_SOCKET" \
	--array-name bench >"$DIR/rodd.log" 2>&1 &
RODD_PID=$!
for _ in $(seq 200); do "$RODCTL" array show >/dev/null 2>&1 && break; sleep 0.1; done
arr=$("$RODCTL" --json array show)
IQN=$(jq -r .target_iqn <<<"$arr")
PORTAL=$(jq -r '.portals[0]' <<<"$arr")

max=0
for s in $SIZES; do
	b=$(numfmt --from=iec "$s")
	[ "$b" -gt "$max" ] && max=$b
done
"$RODCTL" vol create src --size "$max" >/dev/null
"$RODCTL" vol create dst --size "$max" >/dev/null
"$RODCTL" host create bench --iqn '*' >/dev/null
"$RODCTL" host connect bench src >/dev/null
"$RODCTL" host connect bench dst >/dev/null
SRC=iscsi://$PORTAL/$IQN/0
DST=iscsi://$PORTAL/$IQN/1

echo "filling $(numfmt --to=iec "$max") of src with random data..." >&2
fill=$("$RODBENCH_FILL" "$SRC" "$max" 1)

results=()
for s in $SIZES; do
	for m in $METHODS; do
		echo "copy $s by $m..." >&2
		t0=$(date +%s.%N)
		r=$("$RODCP" --method "$m" --length "$s" --json --quiet "$SRC" "$DST")
		t1=$(date +%s.%N)
		results+=("$(jq -c --arg size "$s" --argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')" \
			'. + {size: ($size), wall_seconds: $wall,
			      per_command_ms: (if .commands > 0 then .seconds * 1000 / .commands else null end)}' \
			<<<"$r")")
	done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
printf '%s\n' "${results[@]}" | jq -s \
	--argjson fill "$fill" --arg cpu "$cpu" --arg kernel "$(uname -r)" \
	--argjson cpus "$(nproc)" --argjson mem "$(awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo)" \
	--arg fs "$(df -T "$DIR" | awk 'NR==2 {print $2}')" '
	def pick(m; s): map(select(.method == m and .size == s)) | first;
	{ benchmark: "copy", machine: {cpu: $cpu, cpus: $cpus, mem_bytes: $mem, kernel: $kernel, fs: $fs},
	  fill: $fill, results: .,
	  targets: (
	    (pick("odx"; "16G")) as $o | (pick("xcopy"; "16G")) as $x16 | (pick("xcopy"; "1G")) as $x1 |
	    (pick("rw"; "16G")) as $rw |
	    { odx_16g_seconds: ($o.seconds // null), odx_16g_le_50ms: (if $o then $o.seconds <= 0.05 else null end),
	      xcopy_16g_seconds: ($x16.seconds // null), xcopy_16g_le_1s: (if $x16 then $x16.seconds <= 1 else null end),
	      xcopy_per_command_ratio_16g_1g: (if $x16 and $x1 then $x16.per_command_ms / $x1.per_command_ms else null end),
	      xcopy_per_command_within_20pct: (if $x16 and $x1 then ($x16.per_command_ms / $x1.per_command_ms) <= 1.2 else null end),
	      rw_16g_seconds: ($rw.seconds // null),
	      odx_speedup_vs_rw_16g: (if $o and $rw then $rw.seconds / $o.seconds else null end),
	      xcopy_speedup_vs_rw_16g: (if $x16 and $rw then $rw.seconds / $x16.seconds else null end) }) }'
