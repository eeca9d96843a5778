#!/usr/bin/env bash
# rodd --stdin: one iSCSI connection on stdin/stdout (no listener), rodd exits 0 when
# it ends. (1) Recorded sessions in files (what an AFL-style fuzzer would feed):
# login, TEST UNIT READY, WRITE(10) or READ(10), logout; the answers are parsed from stdout. (2) inetd
# style: a small relay accepts TCP connections and starts rodd --stdin on each, and
# libiscsi writes and reads through it. (3) SIGTERM during a --stdin session.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || fail "python3 is needed"
FUZZ_DIR=$(cd "$(dirname "$0")/../fuzz" && pwd)

start_rodd
url=$(rod_quick_lun v1 16M)
iqn=$ROD_IQN
stop_rodd

stdin_rodd() {
	"$RODD" --stdin --data "$ROD_DATA" --socket "$ROD_TMP/stdin.sock" "$@"
}

# ---- (1) recorded sessions from a file ----------------------------------------------------
# session KIND: login, TEST UNIT READY (takes the new nexus' unit attention 06/29/00),
# then WRITE(10) or READ(10) of 2 blocks at LBA 16, then logout. The write and the read
# go in two sessions: the SCSI layer does not order tasks by their attribute (an
# ORDERED READ after a SIMPLE WRITE in one session ran first; see docs/reliability.md).
session() {
	python3 - "$FUZZ_DIR" "$iqn" "$1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import gen_corpus as g
normal = [("InitiatorName", "iqn.2026-11.io.rodstore.test:stdin"), ("TargetName", sys.argv[2]),
          ("SessionType", "Normal"), ("HeaderDigest", "None"), ("DataDigest", "None"),
          ("MaxRecvDataSegmentLength", "65536"), ("InitialR2T", "No"), ("ImmediateData", "Yes")]
payload = bytes(range(256)) * 4
if sys.argv[3] == "write":
    cmd = g.scsi_cmd(2, 1, g.cdb16(b"\x2a\x00", g.be32(16), b"\x00", g.be16(2)), write=True, edtl=1024, data=payload)
else:
    cmd = g.scsi_cmd(2, 1, g.cdb16(b"\x28\x00", g.be32(16), b"\x00", g.be16(2)), read=True, edtl=1024)
logout = bytearray(g.bhs(0x46, 0x80, 0, 0x99))
logout[24:28] = g.be32(2)
sys.stdout.buffer.write(g.login_pdu(normal) + g.scsi_cmd(1, 0, g.cdb16(b"\x00")) + cmd + bytes(logout))
PY
}

# answers FILE: parse the target's PDUs; prints the Data-In bytes (hex)
answers() {
	python3 - "$1" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
ops, datain, pos = [], b"", 0
while pos + 48 <= len(b):
    h = b[pos:pos + 48]
    ahs = h[4] * 4
    dlen = int.from_bytes(h[5:8], "big")
    data = b[pos + 48 + ahs:pos + 48 + ahs + dlen]
    op = h[0] & 0x3f
    ops.append(op)
    if op == 0x23:
        assert h[36] == 0, "login status class %d" % h[36]
    if op == 0x21 and int.from_bytes(h[16:20], "big") != 1:
        assert h[3] == 0, "SCSI status %#x" % h[3]
    if op == 0x25:
        datain += data
    pos += 48 + ahs + (dlen + 3) // 4 * 4
assert pos == len(b), "trailing bytes"
assert ops[0] == 0x23 and ops[-1] == 0x26, "PDUs %s" % ops
sys.stderr.write("answers: %s\n" % " ".join("%#x" % o for o in ops))
print(datain.hex())
PY
}

for kind in write read; do
	session "$kind" >"$ROD_TMP/$kind.in"
	rc=0
	stdin_rodd <"$ROD_TMP/$kind.in" >"$ROD_TMP/$kind.out" 2>>"$ROD_LOG" || rc=$?
	expect_eq 0 "$rc" "rodd --stdin exit status after the $kind session"
	answers "$ROD_TMP/$kind.out" >"$ROD_TMP/$kind.hex" || fail "answers of the $kind session"
done
expect_eq "$(python3 -c 'print((bytes(range(256)) * 4).hex())')" "$(cat "$ROD_TMP/read.hex")" \
	"READ(10) through --stdin returns what WRITE(10) through --stdin wrote"
note "recorded sessions: login, write / read back, logout through stdin/stdout"

# ---- (2) inetd style: each TCP connection served by its own rodd --stdin -----------------
python3 - "$RODD" "$ROD_DATA" "$ROD_TMP" 2 >"$ROD_TMP/relay.out" 2>>"$ROD_LOG" <<'PY' &
import socket, subprocess, sys
rodd, data, tmp, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4)
open(tmp + "/relay.port", "w").write(str(ls.getsockname()[1]))
codes = []
for _ in range(n):
    c, _ = ls.accept()
    p = subprocess.Popen([rodd, "--stdin", "--data", data, "--socket", tmp + "/stdin.sock"],
                         stdin=c.fileno(), stdout=c.fileno(), stderr=open(tmp + "/rodd.log", "a"))
    c.close()
    codes.append(p.wait())
print(" ".join(map(str, codes)))
PY
relay=$!
for _ in $(seq 100); do [ -s "$ROD_TMP/relay.port" ] && break; sleep 0.1; done
port=$(cat "$ROD_TMP/relay.port")
surl="iscsi://127.0.0.1:$port/$iqn/0"
rodtest_iscsi write "$surl" 64 256 17 || fail "write through rodd --stdin"
rodtest_iscsi verify "$surl" 64 256 17 || fail "read back through another rodd --stdin"
wait "$relay" || fail "relay failed"
expect_eq "0 0" "$(cat "$ROD_TMP/relay.out")" "rodd --stdin exit statuses"
note "inetd style: write and verify, each connection its own rodd --stdin, exit 0"

# ---- (3) SIGTERM while a --stdin connection is open --------------------------------------
mkfifo "$ROD_TMP/fifo"
"$RODD" --stdin --data "$ROD_DATA" --socket "$ROD_TMP/stdin.sock" <"$ROD_TMP/fifo" >"$ROD_TMP/out2.bin" 2>"$ROD_TMP/term.log" &
pid=$!
exec 9>"$ROD_TMP/fifo"      # the writer stays open: rodd waits for PDUs
for _ in $(seq 200); do grep -q "serving one iSCSI connection" "$ROD_TMP/term.log" && break; sleep 0.1; done
grep -q "serving one iSCSI connection" "$ROD_TMP/term.log" || fail "rodd --stdin did not start: $(cat "$ROD_TMP/term.log")"
kill -TERM "$pid"
rc=0
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "rodd --stdin did not stop on SIGTERM within 15 s"
wait "$pid" || rc=$?
exec 9>&-
cat "$ROD_TMP/term.log" >>"$ROD_LOG"
expect_eq 0 "$rc" "rodd --stdin exit status after SIGTERM"
note "SIGTERM during an idle --stdin connection: exit 0"

# the data written through --stdin is there for a normal rodd too
start_rodd
rodtest_iscsi verify "$(rod_url 0)" 64 256 17 || fail "data written through --stdin, read by a normal rodd"
stop_rodd
