/* Login key negotiation (RFC 7143 section 13): defaults, ranges, result rules,
 * declarations, unknown and duplicate keys, discovery sessions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/iscsi/iscsi_keys.h"

struct ctx {
	struct iscsi_params target;
	struct iscsi_negotiation n;
	char buf[8192];
	struct iscsi_text_out o;
};

static struct ctx C;

static void start(bool discovery)
{
	memset(&C, 0, sizeof(C));
	rod_iscsi_params_target(&C.target);
	rod_iscsi_negotiation_init(&C.n, &C.target, discovery);
	C.o = (struct iscsi_text_out){ C.buf, sizeof(C.buf), 0, false };
}

/* Negotiate one key and return the answer's value ("" when none). */
static const char *answer(const char *key, const char *val, int *rc)
{
	static char v[512];
	size_t before = C.o.len;
	int r = rod_iscsi_key_negotiate(&C.n, key, val, &C.o);
	if (rc)
		*rc = r;
	else
		assert_int_equal(r, 0);
	v[0] = '\0';
	if (C.o.len > before) {
		const char *pair = C.buf + before;
		const char *eq = strchr(pair, '=');
		assert_non_null(eq);
		assert_int_equal((size_t)(eq - pair), strlen(key));
		assert_memory_equal(pair, key, strlen(key));
		snprintf(v, sizeof(v), "%s", eq + 1);
	}
	return v;
}

static void test_defaults(void **state)
{
	struct iscsi_params p;
	rod_iscsi_params_default(&p);
	assert_false(p.header_digest);
	assert_false(p.data_digest);
	assert_int_equal(p.max_recv_dsl_ini, 8192);
	assert_int_equal(p.max_burst, 262144);
	assert_int_equal(p.first_burst, 65536);
	assert_true(p.initial_r2t);
	assert_true(p.immediate_data);
	assert_int_equal(p.max_outstanding_r2t, 1);
	assert_true(p.data_pdu_in_order);
	assert_true(p.data_seq_in_order);
	assert_int_equal(p.time2wait, 2);
	assert_int_equal(p.time2retain, 20);
	assert_int_equal(p.erl, 0);
	assert_int_equal(p.max_conns, 1);
}

static void test_digests(void **state)
{
	start(false);
	assert_string_equal(answer("HeaderDigest", "CRC32C,None", NULL), "CRC32C");
	assert_true(C.n.p.header_digest);
	assert_string_equal(answer("DataDigest", "None,CRC32C", NULL), "None");
	assert_false(C.n.p.data_digest);
	start(false);
	assert_string_equal(answer("HeaderDigest", "MD5,CRC32C", NULL), "CRC32C");
	assert_string_equal(answer("DataDigest", "MD5", NULL), "Reject");
}

static void test_numbers(void **state)
{
	start(false);
	assert_string_equal(answer("MaxBurstLength", "1048576", NULL), "1048576");
	assert_int_equal(C.n.p.max_burst, 1048576);
	assert_string_equal(answer("FirstBurstLength", "0x10000", NULL), "65536");
	assert_string_equal(answer("MaxOutstandingR2T", "64", NULL), "16");   /* min with ours */
	assert_string_equal(answer("ErrorRecoveryLevel", "2", NULL), "0");
	assert_string_equal(answer("MaxConnections", "8", NULL), "1");
	assert_string_equal(answer("DefaultTime2Wait", "0", NULL), "2");      /* max */
	assert_string_equal(answer("DefaultTime2Retain", "20", NULL), "0");   /* min */
	/* out of range / not a number */
	start(false);
	assert_string_equal(answer("MaxBurstLength", "511", NULL), "Reject");
	assert_string_equal(answer("FirstBurstLength", "16777216", NULL), "Reject");
	assert_string_equal(answer("MaxOutstandingR2T", "0", NULL), "Reject");
	assert_string_equal(answer("DefaultTime2Wait", "3601", NULL), "Reject");
	assert_string_equal(answer("ErrorRecoveryLevel", "x", NULL), "Reject");
	assert_string_equal(answer("MaxConnections", "-1", NULL), "Reject");
	assert_int_equal(C.n.p.max_burst, 262144);   /* rejected values change nothing */
}

static void test_booleans(void **state)
{
	start(false);
	/* InitialR2T is OR: our No lets the initiator's choice stand */
	assert_string_equal(answer("InitialR2T", "No", NULL), "No");
	assert_false(C.n.p.initial_r2t);
	assert_string_equal(answer("ImmediateData", "No", NULL), "No");   /* AND */
	assert_false(C.n.p.immediate_data);
	assert_string_equal(answer("DataPDUInOrder", "No", NULL), "Yes");   /* OR, ours Yes */
	assert_string_equal(answer("DataSequenceInOrder", "Yes", NULL), "Yes");
	start(false);
	assert_string_equal(answer("InitialR2T", "Yes", NULL), "Yes");
	assert_string_equal(answer("ImmediateData", "Yes", NULL), "Yes");
	assert_string_equal(answer("DataPDUInOrder", "maybe", NULL), "Reject");
	/* RFC 3720 markers: we do none */
	assert_string_equal(answer("IFMarker", "Yes", NULL), "No");
	assert_string_equal(answer("OFMarkInt", "1-65535", NULL), "Irrelevant");
}

static void test_declarations(void **state)
{
	start(false);
	/* The initiator declares what it receives; we answer with our own limit once. */
	assert_string_equal(answer("MaxRecvDataSegmentLength", "65536", NULL), "262144");
	assert_int_equal(C.n.p.max_recv_dsl_ini, 65536);
	size_t len = C.o.len;
	rod_iscsi_negotiation_finish(&C.n, &C.o);
	assert_int_equal(C.o.len, len);   /* not declared twice */
	assert_int_equal(C.n.p.max_recv_dsl_tgt, 262144);
	/* never declared by the initiator: we still declare ours at the end */
	start(false);
	rod_iscsi_negotiation_finish(&C.n, &C.o);
	assert_string_equal(C.buf, "MaxRecvDataSegmentLength=262144");
	assert_int_equal(C.n.p.max_recv_dsl_ini, 8192);
	assert_string_equal(answer("MaxRecvDataSegmentLength", "100", NULL), "Reject");
}

static void test_unknown_duplicate_and_target_only(void **state)
{
	int rc;
	start(false);
	assert_string_equal(answer("X-com.example.Foo", "bar", NULL), "NotUnderstood");
	assert_string_equal(answer("SomethingElse", "1", NULL), "NotUnderstood");
	answer("MaxBurstLength", "65536", NULL);
	answer("MaxBurstLength", "65536", &rc);
	assert_int_equal(rc, -EPROTO);
	start(false);
	answer("TargetAlias", "x", &rc);
	assert_int_equal(rc, -EPROTO);
	answer("TargetPortalGroupTag", "1", &rc);
	assert_int_equal(rc, -EPROTO);
	/* the initiator answering one of our declarations needs no reply */
	start(false);
	assert_string_equal(answer("MaxBurstLength", "NotUnderstood", NULL), "");
}

static void test_first_burst_not_above_max(void **state)
{
	start(false);
	C.n.target.first_burst = 16776192;
	answer("FirstBurstLength", "262144", NULL);
	answer("MaxBurstLength", "131072", NULL);
	rod_iscsi_negotiation_finish(&C.n, &C.o);
	assert_int_equal(C.n.p.max_burst, 131072);
	assert_int_equal(C.n.p.first_burst, 131072);
}

static void test_discovery_irrelevant(void **state)
{
	start(true);
	assert_string_equal(answer("MaxBurstLength", "65536", NULL), "Irrelevant");
	assert_string_equal(answer("InitialR2T", "No", NULL), "Irrelevant");
	assert_string_equal(answer("MaxConnections", "1", NULL), "Irrelevant");
	assert_string_equal(answer("HeaderDigest", "None", NULL), "None");
	assert_string_equal(answer("MaxRecvDataSegmentLength", "8192", NULL), "262144");
}

static void test_text_parse(void **state)
{
	char buf[256];
	struct iscsi_kv kv[4];
	size_t n = 0;
	static const char t1[] = "InitiatorName=iqn.x\0SessionType=Normal\0\0\0";
	memcpy(buf, t1, sizeof(t1));
	assert_int_equal(rod_iscsi_text_parse(buf, sizeof(t1) - 1, kv, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(kv[0].key, "InitiatorName");
	assert_string_equal(kv[0].val, "iqn.x");
	assert_string_equal(kv[1].val, "Normal");
	/* a last pair without its NUL still parses (the buffer has a spare byte) */
	memcpy(buf, "A=1\0B=2", 7);
	assert_int_equal(rod_iscsi_text_parse(buf, 7, kv, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(kv[1].val, "2");
	/* empty value is fine, no '=' or an empty key is not */
	memcpy(buf, "A=\0", 3);
	assert_int_equal(rod_iscsi_text_parse(buf, 3, kv, 4, &n), 0);
	assert_string_equal(kv[0].val, "");
	memcpy(buf, "ABC\0", 4);
	assert_int_equal(rod_iscsi_text_parse(buf, 4, kv, 4, &n), -EPROTO);
	memcpy(buf, "=x\0", 3);
	assert_int_equal(rod_iscsi_text_parse(buf, 3, kv, 4, &n), -EPROTO);
	/* too many pairs */
	memcpy(buf, "a=1\0b=2\0c=3\0d=4\0e=5\0", 20);
	assert_int_equal(rod_iscsi_text_parse(buf, 20, kv, 4, &n), -EPROTO);
	/* a 64-character key is too long (63 max) */
	memset(buf, 'k', 64);
	memcpy(buf + 64, "=v", 3);
	assert_int_equal(rod_iscsi_text_parse(buf, 66, kv, 4, &n), -EPROTO);
	memset(buf, 'k', 63);
	memcpy(buf + 63, "=v", 3);
	assert_int_equal(rod_iscsi_text_parse(buf, 65, kv, 4, &n), 0);
}

static void test_text_out_overflow(void **state)
{
	char buf[16];
	struct iscsi_text_out o = { buf, sizeof(buf), 0, false };
	rod_iscsi_text_add(&o, "Key", "%s", "value");   /* 10 bytes with NUL */
	assert_false(o.overflow);
	assert_int_equal(o.len, 10);
	rod_iscsi_text_add(&o, "Key2", "%s", "v");       /* 7 more: does not fit */
	assert_true(o.overflow);
	assert_int_equal(o.len, 10);
}

static void test_numbers_parse(void **state)
{
	uint64_t v;
	assert_int_equal(rod_iscsi_parse_number("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(rod_iscsi_parse_number("0xFFff", &v), 0);
	assert_int_equal(v, 0xffff);
	assert_int_equal(rod_iscsi_parse_number("", &v), -EINVAL);
	assert_int_equal(rod_iscsi_parse_number("0x", &v), -EINVAL);
	assert_int_equal(rod_iscsi_parse_number("12a", &v), -EINVAL);
	assert_int_equal(rod_iscsi_parse_number(" 1", &v), -EINVAL);
	assert_int_equal(rod_iscsi_parse_number("99999999999999999999999", &v), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_digests),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_declarations),
		cmocka_unit_test(test_unknown_duplicate_and_target_only),
		cmocka_unit_test(test_first_burst_not_above_max),
		cmocka_unit_test(test_discovery_irrelevant),
		cmocka_unit_test(test_text_parse),
		cmocka_unit_test(test_text_out_overflow),
		cmocka_unit_test(test_numbers_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
