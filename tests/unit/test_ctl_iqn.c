/* Unit tests for lib/ctl's initiator-name rules: validity, glob matching, ranking
 * (exact beats glob, longer glob beats shorter), tie detection, target names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "rod/ctl.h"

static void test_valid(void **state)
{
	assert_true(rod_iqn_pattern_valid("*"));
	assert_true(rod_iqn_pattern_valid("iqn.1994-05.com.redhat:*"));
	assert_true(rod_iqn_pattern_valid("iqn.1994-05.com.redhat:abc123"));
	assert_true(rod_iqn_pattern_valid("eui.02004567a425678d"));
	assert_true(rod_iqn_pattern_valid("naa.52004567ba64678d"));
	assert_false(rod_iqn_pattern_valid(""));
	assert_false(rod_iqn_pattern_valid("server1"));           /* no iqn./eui./naa. and no glob */
	assert_false(rod_iqn_pattern_valid("iqn.1994-05.com.redhat:a b"));
	assert_false(rod_iqn_pattern_valid("iqn.1994-05.com.redhat:[ab]"));
	assert_false(rod_iqn_pattern_valid("IQN.1994-05.com.redhat:x")); /* callers lowercase first */
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memcpy(longname, "iqn.", 4);
	assert_false(rod_iqn_pattern_valid(longname));            /* longer than 223 bytes */
}

static void test_match(void **state)
{
	assert_true(rod_iqn_match("*", "iqn.2000-01.org.example:h1"));
	assert_true(rod_iqn_match("iqn.1994-05.com.redhat:*", "iqn.1994-05.com.redhat:abc"));
	assert_false(rod_iqn_match("iqn.1994-05.com.redhat:*", "iqn.1998-01.com.vmware:esx1"));
	assert_true(rod_iqn_match("iqn.*:esx?", "iqn.1998-01.com.vmware:esx1"));
	assert_false(rod_iqn_match("iqn.*:esx?", "iqn.1998-01.com.vmware:esx12"));
	assert_true(rod_iqn_match("iqn.1998-01.com.vmware:esx1", "IQN.1998-01.COM.VMWARE:ESX1"));
	assert_true(rod_iqn_match("*a*b*", "xxaxxbxx"));
	assert_false(rod_iqn_match("*a*b", "xxaxxbxx"));
}

static void test_rank(void **state)
{
	const char *name = "iqn.1994-05.com.redhat:host7";
	long exact = rod_iqn_rank(name, name);
	long redhat = rod_iqn_rank("iqn.1994-05.com.redhat:*", name);
	long any = rod_iqn_rank("*", name);
	assert_true(exact > redhat);
	assert_true(redhat > any);
	assert_true(any >= 0);
	assert_int_equal(rod_iqn_rank("iqn.1998-01.com.vmware:*", name), -1);
}

static void test_overlap(void **state)
{
	assert_true(rod_iqn_globs_overlap("iqn.a:*", "iqn.?:x"));
	assert_true(rod_iqn_globs_overlap("*x", "y*"));           /* "yx" matches both */
	assert_false(rod_iqn_globs_overlap("iqn.a:*", "iqn.b:*"));
	assert_false(rod_iqn_globs_overlap("a?", "b?"));
	assert_true(rod_iqn_globs_overlap("*", "*"));
	assert_true(rod_iqn_globs_overlap("ab*", "*c?d"));        /* "abcxd" matches both */
	assert_false(rod_iqn_globs_overlap("ab*", "x*"));
	assert_false(rod_iqn_globs_overlap("*ab", "*ba"));
}

static void test_names(void **state)
{
	char buf[ROD_IQN_MAX];
	rod_array_name_from_host("Storage_01.example.com", buf, sizeof(buf));
	assert_string_equal(buf, "storage-01");
	rod_array_name_from_host("", buf, sizeof(buf));
	assert_string_equal(buf, "rodstore");
	rod_target_iqn("My_Array", buf, sizeof(buf));
	assert_string_equal(buf, "iqn.2026-11.io.rodstore:my-array");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_rank),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
