#!/bin/bash
# Run libiscsi's iscsi-test-cu (family ALL) against a fresh rodd, one process per
# suite (a failed test can leave a libiscsi context unusable for the next suite).
#
#   run.sh EXPECTED_PASS_FILE
#
# Writes results.txt ("<test> PASS|FAIL|SKIP") and the raw logs to $ROD_CONFORMANCE_OUT
# (default: a temp dir), prints a summary, and exits 1 if a test named in
# EXPECTED_PASS_FILE did not pass. By hand:
#   RODD=build/cmd/rodd/rodd RODCTL=build/cmd/rodctl/rodctl \
#     bash tests/conformance/run.sh tests/conformance/expected-pass.txt
# ROD_CONFORMANCE_SUITES="Read10 Write10" limits the run to those suites;
# ROD_CONFORMANCE_BLOCK_SIZE=4096 tests a volume with 4096-byte logical blocks.
HERE=$(cd "$(dirname "$0")" && pwd)
EXPECTED=${1:?usage: run.sh EXPECTED_PASS_FILE}
ISCSI_TEST_CU=${ISCSI_TEST_CU:-iscsi-test-cu}
export ROD_ARRAY_NAME=conformance
. "$HERE/../functional/lib.sh"
ROD_TEST_NAME=conformance
OUT=${ROD_CONFORMANCE_OUT:-$ROD_TMP/out}
mkdir -p "$OUT/logs"
RESULTS=$OUT/results.txt
: >"$RESULTS"

start_rodd
# A thin 1 GiB volume with 512-byte blocks (or ROD_CONFORMANCE_BLOCK_SIZE), seen by
# every initiator (iscsi-test-cu logs in with two initiator names).
rodctl vol create v --size 1G ${ROD_CONFORMANCE_BLOCK_SIZE:+--block-size $ROD_CONFORMANCE_BLOCK_SIZE} >/dev/null
rodctl host create all --iqn '*' >/dev/null
rodctl host connect all v >/dev/null
URL=$(rod_url 0)
note "target $URL"

suites=${ROD_CONFORMANCE_SUITES:-$("$ISCSI_TEST_CU" --list | sed -n 's/^ALL\.\([^.]*\)$/\1/p')}
start=$(date +%s)
for s in $suites; do
	log=$OUT/logs/$s.log
	args=(-d "$URL")
	# MultipathIO needs a second path: the same portal again (a second I_T nexus).
	[ "$s" = MultipathIO ] && args+=("$URL")
	timeout 120 "$ISCSI_TEST_CU" -t "ALL.$s" "${args[@]}" >"$log" 2>&1 || true
	# Right after a suite that resets the target (Reserve6), the next login can be
	# refused for a moment while the old sessions are torn down: retry that once,
	# and say so (README.md "Harness notes").
	if grep -q "^Failed to connect to SCSI device" "$log"; then
		note "suite $s: login refused, retrying in 3 s"
		sleep 3
		timeout 120 "$ISCSI_TEST_CU" -t "ALL.$s" "${args[@]}" >"$log" 2>&1 || true
	fi
	# CUnit verbose output: "  Test: NAME ..." then the test's log lines, then CUnit's
	# verdict "passed" or "FAILED" (unbracketed; a "[FAILED]" log line is not one, and
	# log lines after the verdict come from suite clean-up). A test that logs
	# [SKIPPED] did not exercise the target.
	awk -v suite="$s" '
		function verdict(l) {
			if (status == "" && l ~ /\[SKIPPED\]/) skipped = 1
			if (status == "" && l ~ /^passed/) status = "PASS"
			if (status == "" && l ~ /^FAILED/) status = "FAIL"
		}
		function flush() {
			if (name != "") {
				st = status == "" ? "FAIL" : status
				if (st == "PASS" && skipped) st = "SKIP"
				print "ALL." suite "." name, st
			}
			name = ""; status = ""; skipped = 0
		}
		/^ *Test: / {
			flush()
			line = $0
			sub(/^ *Test: /, "", line)
			name = line; sub(/ \.\.\..*$/, "", name)
			rest = line; sub(/^[^.]*\.\.\./, "", rest)
			verdict(rest)
			next
		}
		name != "" { verdict($0) }
		/^Run Summary/ { flush() }
		END { flush() }
	' "$log" >>"$RESULTS"
	# A suite that produced no result lines at all (crash, hang) counts against every
	# test it holds.
	if ! grep -q "^ALL\.$s\." "$RESULTS"; then
		"$ISCSI_TEST_CU" --list | grep "^ALL\.$s\." | sed 's/$/ FAIL/' >>"$RESULTS"
	fi
done
secs=$(( $(date +%s) - start ))

pass=$(grep -c ' PASS$' "$RESULTS" || true)
fail=$(grep -c ' FAIL$' "$RESULTS" || true)
skip=$(grep -c ' SKIP$' "$RESULTS" || true)
note "iscsi-test-cu ALL: $pass passed, $fail failed, $skip skipped ($secs s); results in $RESULTS"
grep ' FAIL$' "$RESULTS" | sed 's/^/  failed: /' || true

missing=0
while read -r t; do
	case "$t" in ''|'#'*) continue ;; esac
	if ! grep -qx "$t PASS" "$RESULTS"; then
		echo "expected to pass but did not: $t ($(grep "^$t " "$RESULTS" | cut -d' ' -f2))" >&2
		missing=$((missing + 1))
	fi
done <"$EXPECTED"
stop_rodd
[ "$missing" -eq 0 ] || fail "$missing expected passes did not pass (logs in $OUT/logs)"
note "every expected pass passed"
