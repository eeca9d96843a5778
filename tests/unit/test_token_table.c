/* ROD token format and live-token table: what a host sees when it hands back a token
 * (accepted, or the 23/xx reason), expiry, DEL_TKN, revocation, capacity. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/scsi/token.h"

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }
static int pins_released;
static void release_pin(void *pin) { pins_released++; free(pin); }

static const uint8_t ARRAY_ID[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t SECRET[32] = { 0xaa, 0xbb, 0xcc };

static struct rod_token_table *new_table(uint32_t max)
{
	struct rod_token_table_opts o = { .max_tokens = max, .release_pin = release_pin,
					  .clock = fake_clock };
	struct rod_token_table *t;

	memcpy(o.array_id, ARRAY_ID, 16);
	memcpy(o.secret, SECRET, 32);
	assert_int_equal(rod_token_table_new(&o, &t), 0);
	return t;
}

static int add_token(struct rod_token_table *t, uint64_t vol, uint32_t timeout_s, uint8_t out[512])
{
	struct rod_token_range r[2] = { { 0, 8 }, { 100, 16 } };
	struct rod_token_spec s = {
		.rod_type = ROD_TOKEN_TYPE_PIT, .pin = malloc(1), .src_vol_id = vol,
		.block_size = 512, .ranges = r, .nranges = 2,
		.timeout_ns = (uint64_t)timeout_s * 1000000000ull,
	};
	int rc = rod_token_add(t, &s, out);

	if (rc)
		free(s.pin);
	return rc;
}

static void test_encode_layout(void **state)
{
	struct rod_token_table *t = new_table(16);
	uint8_t tok[512];
	struct rod_token_fields f;

	fake_now = 1;
	assert_int_equal(add_token(t, 7, 60, tok), 0);
	/* SPC-4 generic ROD token header */
	assert_int_equal(rod_token_type(tok), 0x00800000u);
	assert_int_equal(tok[6] << 8 | tok[7], 0x1F8);
	assert_int_equal(rod_token_verify(tok, ARRAY_ID, SECRET, &f), ROD_TOKEN_OK);
	assert_int_equal(f.bytes, 24 * 512);
	assert_int_equal(f.block_size, 512);
	assert_memory_equal(f.array_id, ARRAY_ID, 16);
	assert_int_not_equal(f.id, 0);
	rod_token_table_free(t);
}

static void test_get_put_and_tampering(void **state)
{
	struct rod_token_table *t = new_table(16);
	uint8_t tok[512], bad[512];
	uint8_t other_id[16] = { 9 };
	struct rod_token *tk;

	fake_now = 1000;
	assert_int_equal(add_token(t, 7, 60, tok), 0);
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_OK);
	assert_int_equal(tk->total_blocks, 24);
	assert_int_equal(tk->nranges, 2);
	assert_int_equal(tk->ranges[1].lba, 100);
	rod_token_put(t, tk, false);

	/* one bit flipped anywhere in the signed part: corrupt */
	for (unsigned off = 8; off < 480; off += 37) {
		memcpy(bad, tok, 512);
		bad[off] ^= 0x10;
		enum rod_token_ascq r = rod_token_get(t, bad, &tk);
		assert_true(r == ROD_TOKEN_CORRUPT || r == ROD_TOKEN_REMOTE);
	}
	memcpy(bad, tok, 512);
	bad[500] ^= 1;                               /* the MAC itself */
	assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_CORRUPT);
	memcpy(bad, tok, 512);
	bad[3] = 0x10;                               /* ROD type changed */
	assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_UNSUPPORTED_TYPE);
	memcpy(bad, tok, 512);
	bad[7] = 0x00;                               /* ROD TOKEN LENGTH */
	assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_BAD_LENGTH);
	/* all zeros but a valid type: not ours */
	memset(bad, 0, 512);
	bad[1] = 0x80;
	bad[6] = 0x01; bad[7] = 0xF8;
	assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_REMOTE);
	/* properly signed by another array (other id, other secret): remote */
	{
		struct rod_token_fields f = { .rod_type = ROD_TOKEN_TYPE_PIT, .id = 5, .bytes = 512,
					      .block_size = 512 };
		uint8_t secret2[32] = { 1 };

		memcpy(f.array_id, other_id, 16);
		rod_token_encode(&f, secret2, bad);
		assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_REMOTE);
		/* our array id but signed with the wrong secret: forged */
		memcpy(f.array_id, ARRAY_ID, 16);
		rod_token_encode(&f, secret2, bad);
		assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_CORRUPT);
		/* correctly signed, unknown id (e.g. from before a restart): unknown */
		rod_token_encode(&f, SECRET, bad);
		assert_int_equal(rod_token_get(t, bad, &tk), ROD_TOKEN_UNKNOWN);
	}
	/* the original still works */
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_OK);
	rod_token_put(t, tk, false);
	rod_token_table_free(t);
}

static void test_expiry(void **state)
{
	struct rod_token_table *t = new_table(16);
	uint8_t tok[512];
	struct rod_token *tk;

	pins_released = 0;
	fake_now = 5ull * 1000000000;
	assert_int_equal(add_token(t, 7, 10, tok), 0);
	/* a use in progress keeps it alive past the timeout */
	fake_now += 9ull * 1000000000;
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_OK);
	fake_now += 30ull * 1000000000;
	assert_int_equal(rod_token_expire(t), 0);
	rod_token_put(t, tk, false);              /* inactivity restarts here */
	fake_now += 9ull * 1000000000;
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_OK);
	rod_token_put(t, tk, false);
	fake_now += 11ull * 1000000000;
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_EXPIRED);
	assert_int_equal(pins_released, 1);
	assert_int_equal(rod_token_count(t), 0);
	/* still reported as expired (not unknown) afterwards */
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_EXPIRED);
	rod_token_table_free(t);
}

static void test_sweep_releases_pins(void **state)
{
	struct rod_token_table *t = new_table(64);
	uint8_t tok[512];

	pins_released = 0;
	fake_now = 1ull * 1000000000;
	for (int i = 0; i < 10; i++)
		assert_int_equal(add_token(t, 7, 1 + i, tok), 0);
	fake_now += 5500000000ull;                /* 5.5 s: timeouts 1..5 passed */
	assert_int_equal(rod_token_expire(t), 5);
	assert_int_equal(pins_released, 5);
	assert_int_equal(rod_token_count(t), 5);
	rod_token_table_free(t);
	assert_int_equal(pins_released, 10);      /* free releases the rest */
}

static void test_delete(void **state)
{
	struct rod_token_table *t = new_table(16);
	uint8_t tok[512];
	struct rod_token *a, *b;

	pins_released = 0;
	fake_now = 1;
	assert_int_equal(add_token(t, 7, 60, tok), 0);
	assert_int_equal(rod_token_get(t, tok, &a), ROD_TOKEN_OK);
	assert_int_equal(rod_token_get(t, tok, &b), ROD_TOKEN_OK);
	rod_token_put(t, a, true);                /* DEL_TKN while another use runs */
	assert_int_equal(pins_released, 0);       /* the pin stays for the running use */
	assert_int_equal(rod_token_get(t, tok, &a), ROD_TOKEN_DELETED);
	rod_token_put(t, b, false);
	assert_int_equal(pins_released, 1);
	assert_int_equal(rod_token_get(t, tok, &a), ROD_TOKEN_DELETED);
	rod_token_table_free(t);
}

static void test_revoke(void **state)
{
	struct rod_token_table *t = new_table(16);
	uint8_t t1[512], t2[512];
	struct rod_token *tk;

	fake_now = 1;
	assert_int_equal(add_token(t, 7, 60, t1), 0);
	assert_int_equal(add_token(t, 8, 60, t2), 0);
	assert_int_equal(rod_token_revoke_vol(t, 7), 1);
	assert_int_equal(rod_token_get(t, t1, &tk), ROD_TOKEN_REVOKED);
	assert_int_equal(rod_token_get(t, t2, &tk), ROD_TOKEN_OK);
	rod_token_put(t, tk, false);
	rod_token_table_free(t);
}

static void test_capacity_4096(void **state)
{
	struct rod_token_table *t = new_table(4096);
	uint8_t (*toks)[512] = malloc(4097 * 512);
	struct rod_token *tk;
	uint8_t list[4 * 96];

	fake_now = 1;
	for (int i = 0; i < 4096; i++)
		assert_int_equal(add_token(t, 1 + (i & 3), 60, toks[i]), 0);
	assert_int_equal(rod_token_count(t), 4096);
	/* full: the 4097th is refused, nothing is evicted */
	assert_int_equal(add_token(t, 1, 60, toks[4096]), -ENOSPC);
	for (int i = 0; i < 4096; i += 97) {
		assert_int_equal(rod_token_get(t, toks[i], &tk), ROD_TOKEN_OK);
		rod_token_put(t, tk, false);
	}
	/* after expiry the table takes new tokens again */
	fake_now += 61ull * 1000000000;
	assert_int_equal(add_token(t, 1, 60, toks[4096]), 0);
	assert_int_equal(rod_token_count(t), 1);
	assert_int_equal(rod_token_list(t, 1, list, 4, 96), 1);
	assert_memory_equal(list, toks[4096], 96);
	assert_int_equal(rod_token_list(t, 2, list, 4, 96), 0);
	free(toks);
	rod_token_table_free(t);
}

/* Any change to a token's bytes, anywhere, is refused before the table is searched. */
static void test_random_mutations_refused(void **state)
{
	struct rod_token_table *t = new_table(16);
	uint8_t tok[512], bad[512];
	struct rod_token *tk;
	uint32_t seed = 7;

	fake_now = 1;
	assert_int_equal(add_token(t, 7, 60, tok), 0);
	for (int i = 0; i < 20000; i++) {
		memcpy(bad, tok, 512);
		for (int k = 0; k < 1 + i % 3; k++) {
			seed = seed * 1103515245u + 12345u;
			unsigned pos = (seed >> 8) % 512;
			seed = seed * 1103515245u + 12345u;
			bad[pos] ^= (uint8_t)(1 + (seed >> 16) % 255);
		}
		enum rod_token_ascq r = rod_token_get(t, bad, &tk);
		assert_int_not_equal(r, ROD_TOKEN_OK);
		assert_true(r == ROD_TOKEN_CORRUPT || r == ROD_TOKEN_REMOTE ||
			    r == ROD_TOKEN_UNSUPPORTED_TYPE || r == ROD_TOKEN_BAD_LENGTH);
	}
	assert_int_equal(rod_token_get(t, tok, &tk), ROD_TOKEN_OK);
	rod_token_put(t, tk, false);
	rod_token_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_layout),
		cmocka_unit_test(test_get_put_and_tampering),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_sweep_releases_pins),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_revoke),
		cmocka_unit_test(test_capacity_4096),
		cmocka_unit_test(test_random_mutations_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
