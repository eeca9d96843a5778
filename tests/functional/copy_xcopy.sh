#!/usr/bin/env bash
# EXTENDED COPY (LID1) through a real rodd: copies between volumes and inside one
# (overlapping), CSCD 0xFFFF, rodcp --method xcopy and auto, RECEIVE COPY RESULTS; a
# volume the host cannot see is an unreachable copy target; malformed lists get the
# sense libiscsi's test-tool and hypervisors expect.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/copy_lib.bash"
start_rodd

T=$ROD_TMP
for v in a b c; do rodctl vol create $v --size 32M >/dev/null; done
rodctl host create h --iqn '*' >/dev/null
rodctl host create other --iqn iqn.2026-11.test:other >/dev/null
rodctl host connect h a >/dev/null          # LUN 0
rodctl host connect h b >/dev/null          # LUN 1
rodctl host connect other c >/dev/null      # c is not visible to h
A=$(rod_url 0)
B=$(rod_url 1)
DA=$(expect_good desig "$A")
DB=$(expect_good desig "$B")
DC=$("$RODTEST_COPY" -i iqn.2026-11.test:other desig "$(rod_url 0)") || fail "designator of c"
[ "$DA" != "$DB" ] || fail "a and b have the same designator $DA"
head -c 32M /dev/urandom >"$T/a0"
rc_copy load "$A" 0 "$T/a0"

# Operating parameters agree with VPD 0x8F (parameter data descriptor).
p=$(expect_good rcr-params "$B")
grep -q '^max_cscd=64$' <<<"$p" || fail "RCR operating parameters: $p"
grep -q '^max_segs=64$' <<<"$p" || fail "RCR operating parameters: $p"
grep -q '^codes=02e4$' <<<"$p" || fail "RCR implemented descriptor codes: $p"

# 1. a -> b, two segments, sent to b
expect_good xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:2048:0:4096 --seg 0:1:100:9000:100 >/dev/null
rc_copy dump "$B" 4096 2048 "$T/g1"
dd if="$T/a0" bs=512 count=2048 status=none >"$T/w1"
same_bytes "$T/w1" "$T/g1" "segment 1"
rc_copy dump "$B" 100 100 "$T/g2"
dd if="$T/a0" bs=512 skip=9000 count=100 status=none >"$T/w2"
same_bytes "$T/w2" "$T/g2" "segment 2"

# 2. inside a, overlapping (0..1M -> 512K..1.5M), source named by CSCD id 0xFFFF
expect_good xcopy "$A" --cscd "$DA" --seg 65535:0:2048:0:1024 >/dev/null
splice "$T/a1" "$T/a0" $((1024 * 512)) "$T/a0" 0 $((1 << 20))
rc_copy dump "$A" 0 65536 "$T/a1got"
same_bytes "$T/a1" "$T/a1got" "a after an overlapping EXTENDED COPY"

# 3. rodcp: whole volume by EXTENDED COPY (4 MiB segments, 8 in flight), then auto
before=$(data_bytes)
out=$("$RODCP" --method xcopy --json "$A" "$B") || fail "rodcp --method xcopy"
expect_eq xcopy "$(jq -r .method <<<"$out")" "rodcp method"
rc_copy dump "$B" 0 65536 "$T/b3"
same_bytes "$T/a1" "$T/b3" "b after rodcp --method xcopy"
after=$(data_bytes)
[ $((after - before)) -lt $((4 << 20)) ] || fail "a 32 MiB EXTENDED COPY grew the data directory by $((after - before)) bytes"
sb=$(rodctl --json vol show b | jq -c .space)
expect_eq 33554432 "$(jq -r .logical <<<"$sb")" "bytes written on b after the copy"
expect_eq 0 "$(jq -r .physical <<<"$sb")" "physical bytes of b (only ever written by copies)"
out=$("$RODCP" --json --src-offset 1M --dst-offset 2M --length 5M "$B" "$A") || fail "rodcp auto"
expect_eq odx "$(jq -r .method <<<"$out")" "rodcp auto picks ODX first"

# 3b. the host read/write fallback copies the same bytes (odd offsets, short chunks)
out=$("$RODCP" --method rw --json --chunk 96K --src-offset 512 --dst-offset 3M --length 2M "$A" "$B") ||
	fail "rodcp --method rw"
expect_eq rw "$(jq -r .method <<<"$out")" "rodcp method"
rc_copy dump "$B" 6144 4096 "$T/rw"
# (a now holds the auto copy above: a[2M..7M) = b[1M..6M) = a1[1M..6M))
splice "$T/anow" "$T/a1" $((2 << 20)) "$T/a1" $((1 << 20)) $((5 << 20))
dd if="$T/anow" bs=512 skip=1 count=4096 status=none >"$T/rwwant"
same_bytes "$T/rwwant" "$T/rw" "b after rodcp --method rw"
# rodcp refuses what cannot work, with a message and a non-zero exit
expect_rc 1 "$RODCP" --quiet --length 1M --dst-offset 32M "$A" "$B"
expect_stderr "past the end"
expect_rc 1 "$RODCP" --quiet --length 1000 "$A" "$B"
expect_stderr "multiples of the 512-byte block size"
expect_rc 2 "$RODCP" --method fast "$A" "$B"
expect_rc 1 "$RODCP" token write /dev/null "$B"
expect_stderr "not a token file"

# 4. RECEIVE COPY RESULTS: COPY STATUS of a held list id on the same I_T nexus; an
# unknown id (or one from another session) is refused
expect_sense 05/24/00 rcr-status "$B" 9
s=$(expect_good xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0 --list-id 9 --usage 0 --status)
expect_eq "status=1 segs=1 units=0 count=4096" "$s" "COPY STATUS"
expect_sense 05/24/00 rcr-status "$B" 9

# 5. unreachable copy targets: a volume of another host, a CSCD index not in the list
expect_sense 0A/08/04 xcopy "$B" --cscd "$DC" --cscd "$DB" --seg 0:1:8:0:0
out=$("$RODTEST_COPY" xcopy "$B" --cscd "$DA" --seg 0:1:8:0:0 --status 2>&1) && fail "XCOPY naming a missing CSCD succeeded"
expect_eq "sense=0A/08/04
status=2 segs=0 units=0 count=0" "$out" "missing CSCD index: sense and COPY STATUS"
# out of range: COPY ABORTED, nothing written past the end
expect_sense 0A/00/00 xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:2048:0:65535

# 5b. block sizes differ: a (512) -> d (4096-byte blocks); NUMBER OF BLOCKS counts
# source blocks (DC=0), and a segment that is not whole destination blocks is inexact
rodctl vol create d --size 32M --block-size 4096 >/dev/null
rodctl host connect h d >/dev/null          # LUN 2
D=$(rod_url 2)
DD=$(expect_good desig "$D")
expect_good xcopy "$D" --cscd "$DA" --cscd "$DD" --seg 0:1:64:8:100 >/dev/null
rc_copy dump "$D" 100 8 "$T/d1"
dd if="$T/a1" bs=512 skip=8 count=64 status=none >"$T/d1want"
same_bytes "$T/d1want" "$T/d1" "4096-byte-block volume after EXTENDED COPY from a 512-byte one"
expect_sense 0A/26/0A xcopy "$D" --cscd "$DA" --cscd "$DD" --seg 0:1:7:0:0

# 6. malformed lists
expect_sense 05/1A/00 xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0 --truncate 1
expect_sense 05/1A/00 xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0 --truncate 29
expect_sense 05/26/07 xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0 --cscd-type 0xE0
expect_sense 05/26/09 xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0 --seg-type 0x03
expect_sense 05/26/0B xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0 --inline 4
many=$(for i in $(seq 65); do printf -- '--cscd %s ' "$DA"; done)
# shellcheck disable=SC2086
expect_sense 05/26/06 xcopy "$B" $many --seg 0:0:8:0:8
segs=$(for i in $(seq 65); do printf -- '--seg 0:1:1:%d:%d ' "$i" "$i"; done)
# shellcheck disable=SC2086
expect_sense 05/26/08 xcopy "$B" --cscd "$DA" --cscd "$DB" $segs
# PARAMETER LIST LENGTH 0: GOOD, nothing done
expect_good xcopy "$B" --truncate 16 >/dev/null

# 7. qemu-img convert -C (copy offload required: EXTENDED COPY to the destination, list
# id 1 from parallel requests) produces the same bytes.
if command -v qemu-img >/dev/null; then
	head -c 32M /dev/urandom >"$T/q"
	rc_copy load "$A" 0 "$T/q"
	qemu-img convert -C -n -f raw -O raw "$A" "$B" 2>"$T/qemu.err" ||
		fail "qemu-img convert -C failed: $(cat "$T/qemu.err")"
	rc_copy dump "$B" 0 65536 "$T/qgot"
	same_bytes "$T/q" "$T/qgot" "b after qemu-img convert -C"
else
	note "qemu-img not installed: skipping the qemu-img convert -C check"
fi

# 8. copy offload switched off on b (rodctl vol set): hosts are told the commands do not
# exist there, and rodcp's auto mode falls back to read/write, saying why.
rodctl vol set b --offload off >/dev/null
out=$("$RODCP" --json --length 1M "$A" "$B" 2>"$T/fallback.err") || fail "rodcp auto with offload off"
expect_eq rw "$(jq -r .method <<<"$out")" "method with offload off on the destination"
grep -q "odx did not work; trying xcopy" "$T/fallback.err" || fail "no fallback message: $(cat "$T/fallback.err")"
grep -q "INVALID COMMAND OPERATION CODE" "$T/fallback.err" || fail "no reason given: $(cat "$T/fallback.err")"
expect_sense 05/20/00 xcopy "$B" --cscd "$DA" --cscd "$DB" --seg 0:1:8:0:0
rodctl vol set b --offload on >/dev/null
out=$("$RODCP" --json --length 1M "$A" "$B") || fail "rodcp after offload back on"
expect_eq odx "$(jq -r .method <<<"$out")" "method with offload back on"

stop_rodd
