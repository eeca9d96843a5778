/* Fuzz target: ROD token verification (lib/scsi/token.c) and the live-token table.
 * A token is a capability handed to hosts, so the property checked is that no bytes
 * except the exact ones the array issued are ever accepted.
 * Input: [1 byte mode] then
 *   mode 0: up to 512 token bytes (zero padded)          -> rod_token_verify
 *   mode 1: 8 bytes of fields, then (offset 2 bytes, xor 1 byte) edits applied to the
 *           freshly encoded token                         -> verify before and after
 *   mode 2: (offset, xor) edits applied to a token the table issued -> rod_token_get
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

#include "../../lib/scsi/token.h"

static const uint8_t array_id[16] = "fuzz-array-id-0";
static const uint8_t secret[32] = "fuzz secret for rod tokens, 32b";

static struct rod_token_table *table;
static uint8_t issued[4][ROD_TOKEN_LEN];
static int pins_live;

static void release_pin(void *pin)
{
	free(pin);
	pins_live--;
}

static void table_free(void)
{
	rod_token_table_free(table);
	if (pins_live != 0) {
		fprintf(stderr, "fuzz_rod_token: %d pins not released\n", pins_live);
		abort();
	}
}

static void table_init(void)
{
	struct rod_token_table_opts o = { .max_tokens = 64, .release_pin = release_pin };
	memcpy(o.array_id, array_id, 16);
	memcpy(o.secret, secret, 32);
	if (rod_token_table_new(&o, &table))
		abort();
	static const struct rod_token_range r[2] = { { 0, 8 }, { 100, 16 } };
	for (unsigned i = 0; i < 4; i++) {
		struct rod_token_spec s = {
			.rod_type = i & 1 ? ROD_TOKEN_TYPE_PIT_PERSISTENT : ROD_TOKEN_TYPE_PIT,
			.pin = malloc(16), .src_vol_id = 1 + i, .block_size = 512,
			.ranges = r, .nranges = 1 + (i & 1),
			/* never expire while the fuzzer runs */
			.timeout_ns = 1000ull * 3600 * 1000000000ull,
		};
		pins_live++;
		if (rod_token_add(table, &s, issued[i]))
			abort();
	}
	atexit(table_free);
}

/* Apply (offset, xor) edits; returns whether any byte ended up different. */
static int apply_edits(uint8_t tok[ROD_TOKEN_LEN], const uint8_t *orig, const uint8_t *d, size_t n)
{
	for (; n >= 3; d += 3, n -= 3)
		tok[rod_get_be16(d) % ROD_TOKEN_LEN] ^= d[2];
	return memcmp(tok, orig, ROD_TOKEN_LEN) != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!table)
		table_init();
	if (size < 1)
		return 0;
	unsigned mode = data[0] % 3;
	data++;
	size--;
	uint8_t *tok = malloc(ROD_TOKEN_LEN);
	memset(tok, 0, ROD_TOKEN_LEN);
	struct rod_token_fields f;
	if (mode == 0) {
		memcpy(tok, data, size < ROD_TOKEN_LEN ? size : ROD_TOKEN_LEN);
		int known = 0;
		for (unsigned i = 0; i < 4; i++)
			known |= memcmp(tok, issued[i], ROD_TOKEN_LEN) == 0;
		if (rod_token_verify(tok, array_id, secret, &f) == ROD_TOKEN_OK && !known) {
			fprintf(stderr, "fuzz_rod_token: forged token accepted\n");
			abort();
		}
	} else if (mode == 1) {
		if (size < 8)
			goto out;
		struct rod_token_fields in;
		memset(&in, 0, sizeof(in));
		in.rod_type = data[0] & 1 ? ROD_TOKEN_TYPE_PIT_PERSISTENT : ROD_TOKEN_TYPE_PIT;
		in.id = rod_get_be64(data);
		in.bytes = (uint64_t)rod_get_be32(data + 4) << 9;
		in.block_size = data[1] & 1 ? 4096 : 512;
		memcpy(in.array_id, array_id, 16);
		in.created_wall_ns = in.id ^ 0x5555;
		rod_token_encode(&in, secret, tok);
		if (rod_token_verify(tok, array_id, secret, &f) != ROD_TOKEN_OK || f.id != in.id ||
		    f.bytes != in.bytes || f.block_size != in.block_size || f.rod_type != in.rod_type) {
			fprintf(stderr, "fuzz_rod_token: own token refused or misread\n");
			abort();
		}
		uint8_t orig[ROD_TOKEN_LEN];
		memcpy(orig, tok, ROD_TOKEN_LEN);
		if (apply_edits(tok, orig, data + 8, size - 8) &&
		    rod_token_verify(tok, array_id, secret, &f) == ROD_TOKEN_OK) {
			fprintf(stderr, "fuzz_rod_token: altered token accepted\n");
			abort();
		}
	} else {
		if (size < 1)
			goto out;
		const uint8_t *orig = issued[data[0] % 4];
		memcpy(tok, orig, ROD_TOKEN_LEN);
		int changed = apply_edits(tok, orig, data + 1, size - 1);
		struct rod_token *tk = NULL;
		enum rod_token_ascq a = rod_token_get(table, tok, &tk);
		if (a == ROD_TOKEN_OK) {
			if (changed || !tk || memcmp(tk->bytes, orig, ROD_TOKEN_LEN) != 0) {
				fprintf(stderr, "fuzz_rod_token: table accepted altered bytes\n");
				abort();
			}
			rod_token_put(table, tk, false);
		} else if (!changed) {
			fprintf(stderr, "fuzz_rod_token: table refused its own token (%#x)\n", a);
			abort();
		}
	}
out:
	free(tok);
	return 0;
}
