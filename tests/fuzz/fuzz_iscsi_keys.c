/* Fuzz target: login/text key parsing and operational negotiation (lib/iscsi
 * iscsi_keys.c), as the login state machine drives them.
 * Input: [1 byte flags: bit 0 discovery session, bit 1 small response buffer]
 *        then the key=value text as an initiator would send it (NUL separated).
 * Every value also goes through the CHAP binary decoder (CHAP_C/CHAP_R: "0x" hex or
 * "0b" base64).
 * Checked: the result respects RFC 7143's ranges (the connection sizes buffers from
 * it), a response that overflows says so instead of running past its buffer, and a
 * decoded CHAP value fits its buffer and survives encode + decode unchanged. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/iscsi/iscsi_chap.h"
#include "../../lib/iscsi/iscsi_keys.h"

static void bad(const char *what, unsigned v)
{
	fprintf(stderr, "fuzz_iscsi_keys: %s (%u)\n", what, v);
	abort();
}

static void check_chap_value(const char *v)
{
	uint8_t *bin = malloc(ISCSI_CHAP_BIN_MAX);
	size_t len = 0;
	if (rod_iscsi_chap_decode(v, bin, ISCSI_CHAP_BIN_MAX, &len) == 0) {
		if (len == 0 || len > ISCSI_CHAP_BIN_MAX)
			bad("CHAP value length", (unsigned)len);
		size_t cap = 2 * len + 3;
		char *hex = malloc(cap);
		rod_iscsi_chap_encode(bin, len, hex, cap);
		uint8_t *again = malloc(ISCSI_CHAP_BIN_MAX);
		size_t len2 = 0;
		if (rod_iscsi_chap_decode(hex, again, ISCSI_CHAP_BIN_MAX, &len2) != 0 || len2 != len ||
		    memcmp(bin, again, len) != 0)
			bad("CHAP value changes through encode + decode", (unsigned)len);
		free(again);
		free(hex);
	}
	free(bin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > ISCSI_TEXT_MAX)
		return 0;
	uint8_t flags = data[0];
	size_t len = size - 1;
	char *buf = malloc(len + 1); /* the one spare byte the parser may use */
	memcpy(buf, data + 1, len);
	struct iscsi_kv kv[ISCSI_TEXT_KEYS_MAX];
	size_t n = 0;
	int r = rod_iscsi_text_parse(buf, len, kv, ISCSI_TEXT_KEYS_MAX, &n);
	if (r == 0) {
		if (n > ISCSI_TEXT_KEYS_MAX)
			bad("too many pairs", (unsigned)n);
		for (size_t i = 0; i < n; i++) {
			if (kv[i].key < buf || kv[i].key > buf + len || kv[i].val < buf ||
			    kv[i].val > buf + len)
				bad("pair outside the buffer", (unsigned)i);
			size_t kl = strlen(kv[i].key);
			if (kl == 0 || kl > ISCSI_KEY_NAME_MAX)
				bad("key length", (unsigned)kl);
			if (strlen(kv[i].val) > ISCSI_KEY_VALUE_MAX)
				bad("value length", (unsigned)strlen(kv[i].val));
		}
		for (size_t i = 0; i < n; i++)
			check_chap_value(kv[i].val);
		struct iscsi_params target;
		rod_iscsi_params_target(&target);
		struct iscsi_negotiation neg;
		rod_iscsi_negotiation_init(&neg, &target, flags & 1);
		size_t cap = flags & 2 ? 64 : 8192;
		struct iscsi_text_out o = { .buf = malloc(cap), .cap = cap };
		int failed = 0;
		for (size_t i = 0; i < n && !failed; i++)
			if (rod_iscsi_key_negotiate(&neg, kv[i].key, kv[i].val, &o) < 0)
				failed = 1;
		if (!failed)
			rod_iscsi_negotiation_finish(&neg, &o);
		if (o.len > o.cap)
			bad("response longer than its buffer", (unsigned)o.len);
		if (!o.overflow && o.len && memchr(o.buf, 0, o.len) == NULL)
			bad("response text without NUL separators", (unsigned)o.len);
		const struct iscsi_params *p = &neg.p;
		if (!failed) {
			if (p->max_recv_dsl_ini < 512 || p->max_recv_dsl_ini > 16777215)
				bad("MaxRecvDataSegmentLength out of range", p->max_recv_dsl_ini);
			if (p->max_burst < 512 || p->max_burst > 16777215)
				bad("MaxBurstLength out of range", p->max_burst);
			if (p->first_burst > p->max_burst)
				bad("FirstBurstLength above MaxBurstLength", p->first_burst);
			if (p->max_outstanding_r2t < 1 || p->max_conns < 1)
				bad("MaxOutstandingR2T/MaxConnections zero", 0);
			if (p->erl > 2)
				bad("ErrorRecoveryLevel", p->erl);
		}
		free(o.buf);
	} else if (r != -EPROTO) {
		bad("text_parse returned an unexpected code", (unsigned)-r);
	}
	free(buf);
	return 0;
}
