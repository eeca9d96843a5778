/* CHAP value encoding and MD5 responses (expected digests computed independently with
 * Python's hashlib: md5(id || secret || challenge)). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/iscsi/iscsi_chap.h"

static void test_md5_response(void **state)
{
	uint8_t chal[16], out[16], want[16];
	for (int i = 0; i < 16; i++)
		chal[i] = (uint8_t)i;
	rod_iscsi_chap_md5(7, "topsecret12", chal, sizeof(chal), out);
	size_t n = 0;
	assert_int_equal(rod_iscsi_chap_decode("0x881fd2c73fc36649b7ac2ab92d029e03", want,
					       sizeof(want), &n), 0);
	assert_int_equal(n, 16);
	assert_memory_equal(out, want, 16);
	assert_int_equal(rod_iscsi_chap_cmp(out, want, 16), 0);
	want[15] ^= 1;
	assert_int_not_equal(rod_iscsi_chap_cmp(out, want, 16), 0);

	uint8_t c2[20];
	memset(c2, 0xaa, sizeof(c2));
	rod_iscsi_chap_md5(200, "mutualsecret", c2, sizeof(c2), out);
	assert_int_equal(rod_iscsi_chap_decode("0XA23B391F89D84A1CE9AACEFE8FF87273", want,
					       sizeof(want), &n), 0);
	assert_memory_equal(out, want, 16);
}

static void test_decode_forms(void **state)
{
	uint8_t b[32];
	size_t n = 0;
	/* base64 (RFC 7143 6.1 "0b" prefix) of bytes 0..15 */
	assert_int_equal(rod_iscsi_chap_decode("0bAAECAwQFBgcICQoLDA0ODw==", b, sizeof(b), &n), 0);
	assert_int_equal(n, 16);
	for (int i = 0; i < 16; i++)
		assert_int_equal(b[i], i);
	/* odd number of hex digits: leading nibble */
	assert_int_equal(rod_iscsi_chap_decode("0xabc", b, sizeof(b), &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(b[0], 0x0a);
	assert_int_equal(b[1], 0xbc);
	/* malformed or too long */
	assert_int_equal(rod_iscsi_chap_decode("abcd", b, sizeof(b), &n), -EINVAL);
	assert_int_equal(rod_iscsi_chap_decode("0x", b, sizeof(b), &n), -EINVAL);
	assert_int_equal(rod_iscsi_chap_decode("0xzz", b, sizeof(b), &n), -EINVAL);
	assert_int_equal(rod_iscsi_chap_decode("0x0102030405", b, 4, &n), -EINVAL);
	assert_int_equal(rod_iscsi_chap_decode("0b!!!!", b, sizeof(b), &n), -EINVAL);
	assert_int_equal(rod_iscsi_chap_decode(NULL, b, sizeof(b), &n), -EINVAL);
}

static void test_encode_roundtrip(void **state)
{
	uint8_t in[16], back[16];
	char txt[40];
	for (int i = 0; i < 16; i++)
		in[i] = (uint8_t)(0xf0 + i);
	rod_iscsi_chap_encode(in, sizeof(in), txt, sizeof(txt));
	assert_string_equal(txt, "0xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
	size_t n = 0;
	assert_int_equal(rod_iscsi_chap_decode(txt, back, sizeof(back), &n), 0);
	assert_int_equal(n, 16);
	assert_memory_equal(in, back, 16);
	/* too small an output buffer gives an empty string, never an overflow */
	char small[8] = "xxxxxxx";
	rod_iscsi_chap_encode(in, sizeof(in), small, sizeof(small));
	assert_string_equal(small, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_md5_response),
		cmocka_unit_test(test_decode_forms),
		cmocka_unit_test(test_encode_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
