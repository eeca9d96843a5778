/* Unit tests for lib/util: sizes, names, checksums, hex. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "rod/util.h"

static void test_parse_size(void **state)
{
	uint64_t v;
	assert_int_equal(rod_parse_size("10G", &v), 0);
	assert_int_equal(v, 10ull << 30);
	assert_int_equal(rod_parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(rod_parse_size("512", &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(rod_parse_size("1TiB", &v), 0);
	assert_int_equal(v, 1ull << 40);
	assert_int_equal(rod_parse_size("1MB", &v), 0);
	assert_int_equal(v, 1ull << 20);
	assert_int_equal(rod_parse_size("", &v), -EINVAL);
	assert_int_equal(rod_parse_size("-1G", &v), -EINVAL);
	assert_int_equal(rod_parse_size("10X", &v), -EINVAL);
	assert_int_equal(rod_parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(rod_parse_size("999999999999P", &v), -ERANGE);
}

static void test_format_size(void **state)
{
	char b[32];
	assert_string_equal(rod_format_size(10ull << 30, b, sizeof(b)), "10G");
	assert_string_equal(rod_format_size(1536ull << 20, b, sizeof(b)), "1.50G");
	assert_string_equal(rod_format_size(100, b, sizeof(b)), "100");
}

static void test_names(void **state)
{
	assert_true(rod_name_valid("db1"));
	assert_true(rod_name_valid("a-b_C9"));
	assert_false(rod_name_valid(""));
	assert_false(rod_name_valid("db1.snap"));
	assert_false(rod_name_valid("has space"));
	char longname[65];
	memset(longname, 'a', 64);
	longname[64] = 0;
	assert_false(rod_name_valid(longname));
	longname[63] = 0;
	assert_true(rod_name_valid(longname));
}

static void test_crc32c(void **state)
{
	/* RFC 3720 B.4 test vector: 32 bytes of zeros -> 0x8a9136aa */
	uint8_t z[32] = { 0 };
	assert_int_equal(rod_crc32c(0, z, sizeof(z)), 0x8a9136aa);
	/* "123456789" -> 0xe3069283 (the CRC-32C check value) */
	assert_int_equal(rod_crc32c(0, "123456789", 9), 0xe3069283);
	/* incremental equals one-shot */
	uint32_t c = rod_crc32c(0, "1234", 4);
	assert_int_equal(rod_crc32c(c, "56789", 5), 0xe3069283);
}

static void test_hex(void **state)
{
	uint8_t in[3] = { 0x00, 0xab, 0xff }, out[3];
	char h[7];
	rod_hex(in, 3, h);
	assert_string_equal(h, "00abff");
	assert_int_equal(rod_unhex("00ABff", out, 3), 0);
	assert_memory_equal(in, out, 3);
	assert_int_equal(rod_unhex("0g", out, 1), -EINVAL);
	assert_int_equal(rod_unhex("00", out, 3), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size), cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_names),      cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_hex),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
