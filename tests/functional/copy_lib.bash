# Helpers for the copy-offload functional tests (sourced after lib.sh).
: "${RODCP:?set RODCP to the rodcp binary}"
: "${RODTEST_COPY:?set RODTEST_COPY to the rodtest-copy binary}"

rc_copy() {
	"$RODTEST_COPY" "$@"
}

# expect_sense WANT rodtest-copy-args...: the command ends in CHECK CONDITION with
# sense key/ASC/ASCQ WANT ("05/26/00").
expect_sense() {
	local want=$1; shift
	local out rc=0
	out=$("$RODTEST_COPY" "$@" 2>&1) || rc=$?
	[ "$rc" -eq 4 ] || fail "'rodtest-copy $*' exited $rc ($out), expected CHECK CONDITION $want"
	grep -q "^sense=$want\$" <<<"$out" || fail "'rodtest-copy $*': got '$out', expected sense=$want"
}

# expect_good rodtest-copy-args...
expect_good() {
	local out rc=0
	out=$("$RODTEST_COPY" "$@" 2>&1) || rc=$?
	[ "$rc" -eq 0 ] || fail "'rodtest-copy $*' exited $rc: $out"
	printf '%s' "$out"
}

# same_bytes FILE_A FILE_B what
same_bytes() {
	cmp -s "$1" "$2" || fail "$3: data differs ($(cmp "$1" "$2" 2>&1 | head -1))"
}

# splice OUT BASE OFF_BYTES SRC SRC_OFF LEN: OUT = BASE with [OFF, OFF+LEN) taken from
# SRC at SRC_OFF (the expected image after a copy).
splice() {
	[ "$1" = "$2" ] || cp "$2" "$1"
	dd if="$4" of="$1" bs=512 skip=$(($5 / 512)) seek=$(($3 / 512)) count=$(($6 / 512)) \
		conv=notrunc status=none
}

data_bytes() {
	du -sb "$ROD_DATA" | cut -f1
}
