#!/usr/bin/env bash
# ODX through a real rodd: POPULATE TOKEN / RRTI / WRITE USING TOKEN copy exactly the
# bytes they should (between volumes, inside a volume, with offsets into the ROD,
# several ranges, across initiators), point in time, without new space; the zero token
# zeroes; every bad token or range gets its sense.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/copy_lib.bash"
start_rodd

T=$ROD_TMP
rodctl vol create a --size 32M >/dev/null
rodctl vol create b --size 32M >/dev/null
rodctl host create h --iqn '*' >/dev/null
rodctl host connect h a >/dev/null     # LUN 0
rodctl host connect h b >/dev/null     # LUN 1
A=$(rod_url 0)
B=$(rod_url 1)
head -c 32M /dev/urandom >"$T/a0"
rc_copy load "$A" 0 "$T/a0" || fail "loading random data into a"

# VPD 0x8F: block device ROD token limits first (Windows reads only that one).
p=$(expect_good vpd "$A" 0x8f)
expect_eq "008f" "${p:0:4}" "VPD 0x8F header"
expect_eq "00000020" "${p:8:8}" "first 0x8F descriptor (type 0000, length 0x20)"

# 1. whole volume a -> b with rodcp, ODX only; no new space taken.
before=$(data_bytes)
out=$("$RODCP" --method odx --json "$A" "$B") || fail "rodcp --method odx failed"
expect_eq odx "$(jq -r .method <<<"$out")" "rodcp method"
expect_eq 33554432 "$(jq -r .bytes <<<"$out")" "rodcp bytes"
rc_copy dump "$B" 0 65536 "$T/b1" || fail "reading b"
same_bytes "$T/a0" "$T/b1" "b after the ODX copy of a"
after=$(data_bytes)
[ $((after - before)) -lt $((4 << 20)) ] || fail "a 32 MiB ODX copy grew the data directory by $((after - before)) bytes"
# the array's own accounting: b reads 32 MiB but owns no stored bytes; a's are shared
sb=$(rodctl --json vol show b | jq -c .space)
expect_eq 33554432 "$(jq -r .logical <<<"$sb")" "bytes written on b after the copy"
expect_eq 0 "$(jq -r .physical <<<"$sb")" "physical bytes of b after the copy"
expect_eq 33554432 "$(rodctl --json vol show a | jq -r .space.shared)" "shared bytes of a"

# 2. inside one volume, overlapping ranges, with byte offsets (3M..11M -> 7M..15M):
# the result is the source as it was (point in time), like memmove.
"$RODCP" --method odx --quiet --src-offset 3M --dst-offset 7M --length 8M "$A" "$A" ||
	fail "rodcp overlapping copy inside a"
splice "$T/a2" "$T/a0" $((7 << 20)) "$T/a0" $((3 << 20)) $((8 << 20))
rc_copy dump "$A" 0 65536 "$T/a2got"
same_bytes "$T/a2" "$T/a2got" "a after the overlapping copy"
cp "$T/a2" "$T/acur"

# 3. point in time: a token taken before the source is overwritten still copies the old data.
expect_good pt "$A" 0:2048 "$T/tok_pit" >/dev/null
head -c 1M /dev/urandom >"$T/new"
rc_copy load "$A" 0 "$T/new"
splice "$T/acur" "$T/acur" 0 "$T/new" 0 $((1 << 20))
expect_good wut "$B" "$T/tok_pit" 8192:2048 >/dev/null
rc_copy dump "$B" 8192 2048 "$T/pit"
head -c 1M "$T/a2" >"$T/pit_want"
same_bytes "$T/pit_want" "$T/pit" "WRITE USING TOKEN after the source changed"

# 4. several ranges and OFFSET INTO ROD: token = a[100..110) + a[500..520) (30 blocks);
# write blocks 5..25 of it to b[0..15) + b[1000..1005).
expect_good pt "$A" 100:10,500:20 "$T/tok_r" >/dev/null
expect_good wut "$B" "$T/tok_r" 0:15,1000:5 --offset 5 >/dev/null
{ dd if="$T/acur" bs=512 skip=100 count=10 status=none
  dd if="$T/acur" bs=512 skip=500 count=20 status=none; } >"$T/rod"
dd if="$T/rod" bs=512 skip=5 count=15 status=none >"$T/want1"
dd if="$T/rod" bs=512 skip=20 count=5 status=none >"$T/want2"
rc_copy dump "$B" 0 15 "$T/got1"
rc_copy dump "$B" 1000 5 "$T/got2"
same_bytes "$T/want1" "$T/got1" "first destination range (offset into the ROD)"
same_bytes "$T/want2" "$T/got2" "second destination range"
# asking for more than the token holds past the offset: COPY TARGET DEVICE DATA UNDERRUN
expect_sense 05/0D/04 wut "$B" "$T/tok_r" 0:26 --offset 5

# 5. token passing: one initiator creates it with rodcp, another writes it (new sessions).
RODCP_INITIATOR=iqn.2026-11.test:host-one "$RODCP" token create "$A" --src-offset 16M --length 4M \
	--out "$T/passed.tok" --quiet || fail "rodcp token create"
expect_eq 512 "$(stat -c %s "$T/passed.tok")" "token file size"
RODCP_INITIATOR=iqn.2026-11.test:host-two "$RODCP" token write "$T/passed.tok" "$B" \
	--dst-offset 24M --quiet || fail "rodcp token write from another initiator"
rc_copy dump "$B" $((24 << 11)) 8192 "$T/passed"
dd if="$T/acur" bs=1M skip=16 count=4 status=none >"$T/passed_want"
same_bytes "$T/passed_want" "$T/passed" "copy through a token passed between initiators"

# 6. zero token: rodcp zero, and WUT with the zero ROD token directly.
"$RODCP" zero "$B" --dst-offset 1M --length 2M --quiet || fail "rodcp zero"
rc_copy dump "$B" 2048 4096 "$T/z"
head -c 2M /dev/zero >"$T/zeros"
same_bytes "$T/zeros" "$T/z" "b after rodcp zero"
expect_good wut "$B" - 20000:100 --zero-token >/dev/null
rc_copy dump "$B" 20000 100 "$T/z2"
head -c 51200 /dev/zero >"$T/zeros2"
same_bytes "$T/zeros2" "$T/z2" "b after a zero-token WRITE USING TOKEN"

# 6b. different block sizes: a (512) -> c (4096-byte blocks) and back, with offsets
rodctl vol create c --size 32M --block-size 4096 >/dev/null
rodctl host connect h c >/dev/null     # LUN 2
C=$(rod_url 2)
"$RODCP" --method odx --quiet --src-offset 2M --dst-offset 8M --length 3M "$A" "$C" ||
	fail "ODX copy from 512-byte to 4096-byte blocks"
rc_copy dump "$C" 2048 768 "$T/c1"
dd if="$T/acur" bs=1M skip=2 count=3 status=none >"$T/c1want"
same_bytes "$T/c1want" "$T/c1" "4096-byte-block volume after an ODX copy from a 512-byte one"
"$RODCP" token create "$C" --src-offset 8M --length 3M --out "$T/c.tok" --quiet || fail "token from c"
"$RODCP" token write "$T/c.tok" "$B" --dst-offset 28M --quiet || fail "token of c written to b"
rc_copy dump "$B" $((28 << 11)) 6144 "$T/c2"
same_bytes "$T/c1want" "$T/c2" "b after writing a token of the 4096-byte-block volume"

# 7. bad tokens are refused before any lookup, with their 23/xx reason.
expect_good pt "$A" 0:64 "$T/tok" >/dev/null
expect_sense 05/23/05 wut "$B" "$T/tok" 0:8 --flip 300          # altered body: corrupt
expect_sense 05/23/05 wut "$B" "$T/tok" 0:8 --flip 500          # altered MAC
expect_sense 05/23/02 wut "$B" "$T/tok" 0:8 --flip 140          # another array's id
expect_sense 05/23/01 wut "$B" "$T/tok" 0:8 --flip 3            # unknown ROD type
expect_good wut "$B" "$T/tok" 0:8 >/dev/null                    # the real one works
# DEL_TKN: usable for that command, deleted afterwards
expect_good wut "$B" "$T/tok" 0:8 --del >/dev/null
expect_sense 05/23/09 wut "$B" "$T/tok" 0:8
# inactivity timeout
expect_good pt "$A" 0:64 "$T/tok_short" --timeout 1 >/dev/null
sleep 2.5
expect_sense 05/23/07 wut "$B" "$T/tok_short" 0:8
expect_sense 05/26/00 pt "$A" 0:64 "$T/x" --timeout 601         # above MAXIMUM INACTIVITY TIMEOUT

# 8. bad ranges
expect_sense 05/21/00 pt "$A" 65535:2 "$T/x"                    # past the end
expect_sense 05/26/00 pt "$A" 0:10,5:10 "$T/x"                  # overlapping
ranges=$(for i in $(seq 0 64); do printf '%d:1,' $((i * 2)); done)
expect_sense 05/24/00 pt "$A" "${ranges%,}" "$T/x"              # 65 ranges > 64
expect_good pt "$A" 0:64 "$T/tok" >/dev/null
expect_sense 05/21/00 wut "$B" "$T/tok" 65530:8                 # destination past the end
expect_sense 05/26/00 wut "$B" "$T/tok" 0:8,4:8                 # overlapping destinations
expect_sense 05/26/00 pt "$A" 0:8 "$T/x" --rtv 0x00010000       # a ROD type we do not make
expect_sense 05/24/00 rrti "$A" 123456                          # unknown list id

# 9. RRTI of a completed POPULATE TOKEN reports blocks and the token.
r=$(expect_good pt "$A" 0:64,1000:36 "$T/tok" --list-id 77)
grep -q "sa=0x10 status=0x01 count=100 units=0xf1 token=1" <<<"$r" || fail "RRTI after PT: $r"

# 9b. a real token of another array (a second rodd, its own id and secret) is refused
# as a remote token, even though it is well formed and correctly signed there.
mkdir -p "$T/other"
"$RODD" --foreground --data "$T/other/data" --listen 127.0.0.1:0 --socket "$T/other/s" \
	--array-name other >"$T/other/log" 2>&1 &
OTHER_PID=$!
# stop it too if the test fails before the end of this step
trap 'rc=$?; kill -TERM "$OTHER_PID" 2>/dev/null; (exit $rc); rod_cleanup' EXIT
for _ in $(seq 200); do ROD_SOCKET=$T/other/s "$RODCTL" array show >/dev/null 2>&1 && break; sleep 0.1; done
o=$(ROD_SOCKET=$T/other/s "$RODCTL" --json array show) || fail "second rodd did not start"
ROD_SOCKET=$T/other/s "$RODCTL" vol create x --size 16M >/dev/null
ROD_SOCKET=$T/other/s "$RODCTL" host create h --iqn '*' >/dev/null
ROD_SOCKET=$T/other/s "$RODCTL" host connect h x >/dev/null
X="iscsi://$(jq -r '.portals[0]' <<<"$o")/$(jq -r .target_iqn <<<"$o")/0"
expect_good pt "$X" 0:64 "$T/foreign.tok" >/dev/null
expect_sense 05/23/02 wut "$B" "$T/foreign.tok" 0:8
kill -TERM "$OTHER_PID"
wait "$OTHER_PID" || fail "second rodd exited with an error"
trap rod_cleanup EXIT

# 10. tokens do not survive a restart (hosts fall back, as SPC-4 allows).
stop_rodd
start_rodd
expect_sense 05/23/04 wut "$B" "$T/tok" 0:8

stop_rodd
