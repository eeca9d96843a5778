/* PDU codec: header checks bound every length; digests match RFC 3720 B.4 vectors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rod/util.h"
#include "../../lib/iscsi/iscsi_pdu.h"

static void bhs(uint8_t *h, uint8_t op, uint8_t ahs_words, uint32_t dlen)
{
	memset(h, 0, ISCSI_BHS_LEN);
	h[0] = op;
	h[4] = ahs_words;
	rod_put_be24(h + 5, dlen);
	rod_put_be32(h + 16, 0x1234);
}

static void test_valid_headers(void **state)
{
	uint8_t h[ISCSI_BHS_LEN];
	struct iscsi_bhs_info in;
	bhs(h, ISCSI_OP_SCSI_CMD | ISCSI_IMMEDIATE, 4, 4096);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), 0);
	assert_true(in.known);
	assert_true(in.immediate);
	assert_int_equal(in.opcode, ISCSI_OP_SCSI_CMD);
	assert_int_equal(in.ahs_len, 16);
	assert_int_equal(in.data_len, 4096);
	assert_int_equal(in.itt, 0x1234);
	bhs(h, ISCSI_OP_LOGOUT_REQ, 0, 0);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), 0);
	/* well framed but unknown: skipped and rejected, not a dropped connection */
	bhs(h, 0x1c, 0, 100);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), 0);
	assert_false(in.known);
	assert_int_equal(in.data_len, 100);
}

static void test_malformed_headers(void **state)
{
	uint8_t h[ISCSI_BHS_LEN];
	struct iscsi_bhs_info in;
	const char *why = NULL;
	/* data longer than we declared */
	bhs(h, ISCSI_OP_DATA_OUT, 0, 8193);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, &why), -EPROTO);
	assert_non_null(why);
	/* the largest 24-bit length */
	bhs(h, ISCSI_OP_SCSI_CMD, 0, 0xffffff);
	assert_int_equal(rod_iscsi_bhs_check(h, 262144, &in, NULL), -EPROTO);
	/* AHS only on SCSI Command, and bounded */
	bhs(h, ISCSI_OP_NOP_OUT, 1, 0);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), -EPROTO);
	bhs(h, ISCSI_OP_SCSI_CMD, 255, 0);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), -EPROTO);
	/* data where the PDU has none */
	bhs(h, ISCSI_OP_TMF_REQ, 0, 4);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), -EPROTO);
	bhs(h, ISCSI_OP_LOGOUT_REQ, 0, 4);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), -EPROTO);
	/* target opcodes and the reserved bit */
	bhs(h, ISCSI_OP_SCSI_RSP, 0, 0);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), -EPROTO);
	bhs(h, 0x80 | ISCSI_OP_NOP_OUT, 0, 0);
	assert_int_equal(rod_iscsi_bhs_check(h, 8192, &in, NULL), -EPROTO);
}

/* RFC 3720 B.4 gives CRC32C results as the bytes sent on the wire. */
static void test_digest_vectors(void **state)
{
	uint8_t buf[32], wire[4];
	memset(buf, 0, 32);
	rod_iscsi_put_digest(wire, rod_iscsi_digest(buf, 32));
	assert_memory_equal(wire, ((uint8_t[]){ 0xaa, 0x36, 0x91, 0x8a }), 4);
	memset(buf, 0xff, 32);
	rod_iscsi_put_digest(wire, rod_iscsi_digest(buf, 32));
	assert_memory_equal(wire, ((uint8_t[]){ 0x43, 0xab, 0xa8, 0x62 }), 4);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	rod_iscsi_put_digest(wire, rod_iscsi_digest(buf, 32));
	assert_memory_equal(wire, ((uint8_t[]){ 0x4e, 0x79, 0xdd, 0x46 }), 4);
	assert_int_equal(rod_iscsi_get_digest(wire), rod_iscsi_digest(buf, 32));
	/* split computation (data + padding) equals the whole */
	assert_int_equal(rod_iscsi_digest2(buf, 13, buf + 13, 19), rod_iscsi_digest(buf, 32));
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	rod_iscsi_put_digest(wire, rod_iscsi_digest(buf, 32));
	assert_memory_equal(wire, ((uint8_t[]){ 0x5c, 0xdb, 0x3f, 0x11 }), 4);
}

static void test_serial_numbers(void **state)
{
	assert_true(rod_sn_lt(1, 2));
	assert_true(rod_sn_lt(0xfffffff0u, 5));   /* wraps */
	assert_false(rod_sn_lt(5, 0xfffffff0u));
	assert_true(rod_sn_le(7, 7));
	assert_int_equal(rod_iscsi_pad4(0), 0);
	assert_int_equal(rod_iscsi_pad4(1), 3);
	assert_int_equal(rod_iscsi_pad4(4), 0);
	assert_int_equal(rod_iscsi_pad4(6), 2);
}

static void test_bhs_init(void **state)
{
	uint8_t h[ISCSI_BHS_LEN];
	memset(h, 0xee, sizeof(h));
	rod_iscsi_bhs_init(h, ISCSI_OP_SCSI_RSP, ISCSI_FINAL, 0x010203, 0xcafef00d);
	assert_int_equal(h[0], 0x21);
	assert_int_equal(h[1], 0x80);
	assert_int_equal(h[4], 0);
	assert_int_equal(rod_get_be24(h + 5), 0x010203);
	assert_int_equal(rod_get_be32(h + 16), 0xcafef00d);
	assert_int_equal(h[47], 0);
	assert_string_equal(rod_iscsi_opcode_name(ISCSI_OP_R2T), "R2T");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_headers),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_digest_vectors),
		cmocka_unit_test(test_serial_numbers),
		cmocka_unit_test(test_bhs_init),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
