/* Data reduction primitives of lib/store (reduce.h): fingerprints, compression with the
 * 1/8 rule, AES-256-XTS per chunk, key files and the wrapped data key, the RAM
 * fingerprint filter. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../lib/store/reduce.h"
#include "../../lib/store/segment.h"
#include "rod/store.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/rodred.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void fill_random(uint8_t *b, size_t n, unsigned seed)
{
	srand(seed);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rand();
}

/* Text-like grain: words from a small vocabulary, compressible about 2-3x. */
static void fill_text(uint8_t *b, size_t n, unsigned seed)
{
	static const char *w[] = { "storage ", "array ", "grain ", "volume ", "snapshot ",
				   "the ", "of ", "segment ", "commit ", "chunk " };
	size_t i = 0;

	srand(seed);
	while (i < n) {
		const char *s = w[rand() % 10];
		for (size_t j = 0; s[j] && i < n; j++)
			b[i++] = (uint8_t)s[j];
	}
}

static void test_fingerprint(void **state)
{
	uint8_t secret[32], secret2[32], a[ROD_GRAIN], b[ROD_GRAIN], f1[32], f2[32], f3[32],
		ref[32];
	unsigned rl = 0;
	struct red_fp_key *k, *k2;

	(void)state;
	fill_random(secret, 32, 1);
	memcpy(secret2, secret, 32);
	secret2[0] ^= 1;
	fill_random(a, sizeof(a), 2);
	memcpy(b, a, sizeof(b));
	assert_int_equal(red_fp_key_new(secret, &k), 0);
	assert_int_equal(red_fp_key_new(secret2, &k2), 0);
	assert_int_equal(red_fingerprint(k, a, sizeof(a), f1), 0);
	assert_int_equal(red_fingerprint(k, b, sizeof(b), f2), 0);
	assert_memory_equal(f1, f2, 32);
	/* It is HMAC-SHA-256 with the array secret, all 32 bytes. */
	assert_non_null(HMAC(EVP_sha256(), secret, 32, a, sizeof(a), ref, &rl));
	assert_int_equal(rl, 32);
	assert_memory_equal(f1, ref, 32);
	/* One bit of data or of the secret changes it. */
	b[100] ^= 0x10;
	assert_int_equal(red_fingerprint(k, b, sizeof(b), f2), 0);
	assert_memory_not_equal(f1, f2, 32);
	assert_int_equal(red_fingerprint(k2, a, sizeof(a), f3), 0);
	assert_memory_not_equal(f1, f3, 32);
	/* Back to the first key (the per-thread context follows the key), twice. */
	assert_int_equal(red_fingerprint(k, a, sizeof(a), f2), 0);
	assert_memory_equal(f2, ref, 32);
	assert_int_equal(red_fingerprint(k, a, sizeof(a), f2), 0);
	assert_memory_equal(f2, ref, 32);
	red_fp_key_free(k);
	red_fp_key_free(k2);
}

static void test_compress(void **state)
{
	uint8_t in[ROD_GRAIN], c[2 * ROD_GRAIN], out[ROD_GRAIN];
	uint32_t l;

	(void)state;
	/* Text compresses, and both codecs round-trip it. */
	fill_text(in, sizeof(in), 3);
	l = red_lz4_compress(in, ROD_GRAIN, c, sizeof(c));
	assert_true(l >= RED_MIN_STORED && l <= ROD_GRAIN - ROD_GRAIN / 8);
	memset(out, 0, sizeof(out));
	assert_int_equal(red_decompress(COMP_LZ4, c, l, out, ROD_GRAIN), 0);
	assert_memory_equal(in, out, ROD_GRAIN);
	uint32_t lz = red_zstd_compress(in, ROD_GRAIN, c, sizeof(c));
	assert_true(lz >= RED_MIN_STORED && lz < l); /* zstd -1 beats LZ4 on text */
	memset(out, 0, sizeof(out));
	assert_int_equal(red_decompress(COMP_ZSTD, c, lz, out, ROD_GRAIN), 0);
	assert_memory_equal(in, out, ROD_GRAIN);
	/* A truncated or corrupt stream is refused, not returned as data. */
	assert_int_equal(red_decompress(COMP_ZSTD, c, lz - 3, out, ROD_GRAIN), -EBADMSG);
	assert_int_equal(red_decompress(COMP_LZ4, c, lz, out, ROD_GRAIN), -EBADMSG);
	assert_int_equal(red_decompress(7, c, lz, out, ROD_GRAIN), -EBADMSG);

	/* Random data does not save 1/8: stored raw, and the sample says so before either
	 * codec runs. Text is tried. */
	assert_false(red_looks_random(in, ROD_GRAIN));
	fill_random(in, sizeof(in), 4);
	assert_true(red_looks_random(in, ROD_GRAIN));
	assert_int_equal(red_lz4_compress(in, ROD_GRAIN, c, sizeof(c)), 0);
	assert_int_equal(red_zstd_compress(in, ROD_GRAIN, c, sizeof(c)), 0);
	/* One random 512-byte sector written 8 times: every byte value as likely as in
	 * random data, but the halves of the sample repeat, so it is tried and kept. */
	for (int i = 1; i < 8; i++)
		memcpy(in + i * 512, in, 512);
	assert_false(red_looks_random(in, ROD_GRAIN));
	l = red_lz4_compress(in, ROD_GRAIN, c, sizeof(c));
	assert_true(l > 0 && l < ROD_GRAIN / 4);
	memset(out, 0, sizeof(out));
	assert_int_equal(red_decompress(COMP_LZ4, c, l, out, ROD_GRAIN), 0);
	assert_memory_equal(in, out, ROD_GRAIN);
	fill_random(in, sizeof(in), 4);

	/* Half random, half zeros: saves more than 1/8, kept. A grain with only 1/16 of
	 * zeros saves less than 1/8: raw. */
	memset(in + ROD_GRAIN / 2, 0, ROD_GRAIN / 2);
	assert_true(red_lz4_compress(in, ROD_GRAIN, c, sizeof(c)) > 0);
	fill_random(in, sizeof(in), 5);
	memset(in, 0, ROD_GRAIN / 16);
	assert_int_equal(red_lz4_compress(in, ROD_GRAIN, c, sizeof(c)), 0);
}

static void test_xts(void **state)
{
	struct red_dek k;
	uint8_t p[ROD_GRAIN], c1[ROD_GRAIN], c2[ROD_GRAIN], out[ROD_GRAIN];

	(void)state;
	fill_random(k.key, sizeof(k.key), 6);
	k.gen = 1;
	fill_text(p, sizeof(p), 7);
	assert_int_equal(red_encrypt(&k, 0x500003, 1, p, c1, ROD_GRAIN), 0);
	assert_memory_not_equal(p, c1, ROD_GRAIN);
	assert_null(memmem(c1, ROD_GRAIN, "storage ", 8));
	assert_int_equal(red_decrypt(&k, 0x500003, 1, c1, out, ROD_GRAIN), 0);
	assert_memory_equal(p, out, ROD_GRAIN);
	/* Another chunk id, or another generation of the same chunk: other ciphertext. */
	assert_int_equal(red_encrypt(&k, 0x500004, 1, p, c2, ROD_GRAIN), 0);
	assert_memory_not_equal(c1, c2, ROD_GRAIN);
	assert_int_equal(red_encrypt(&k, 0x500003, 2, p, c2, ROD_GRAIN), 0);
	assert_memory_not_equal(c1, c2, ROD_GRAIN);
	/* The wrong tweak does not give the data back. */
	assert_int_equal(red_decrypt(&k, 0x500003, 2, c1, out, ROD_GRAIN), 0);
	assert_memory_not_equal(p, out, ROD_GRAIN);

	/* Compressed lengths (not multiples of 16): ciphertext stealing, same length. */
	for (uint32_t len = 16; len < 200; len += 7) {
		assert_int_equal(red_encrypt(&k, 42, 1, p, c1, len), 0);
		assert_int_equal(red_decrypt(&k, 42, 1, c1, out, len), 0);
		assert_memory_equal(p, out, len);
	}
	/* In place. */
	memcpy(c1, p, ROD_GRAIN);
	assert_int_equal(red_encrypt(&k, 9, 1, c1, c1, 1001), 0);
	assert_int_equal(red_decrypt(&k, 9, 1, c1, c1, 1001), 0);
	assert_memory_equal(p, c1, 1001);
	assert_int_equal(red_encrypt(&k, 9, 1, p, c1, 15), -EINVAL);
}

static void test_keys(void **state)
{
	char kf[128], kf2[128], bad[128];
	uint8_t kek[32], kek2[32], kek3[32];
	struct red_dek d, d2;
	struct stat st;
	bool created;
	FILE *f;

	(void)state;
	snprintf(kf, sizeof(kf), "%s/etc/rod.key", dir);
	snprintf(kf2, sizeof(kf2), "%s/new.key", dir);
	/* Absent and not to be created. */
	assert_int_equal(red_kek_load(kf, false, kek, &created), -ENOENT);
	/* Created with its directory, mode 0600. */
	assert_int_equal(red_kek_load(kf, true, kek, &created), 0);
	assert_true(created);
	assert_int_equal(stat(kf, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(red_kek_load(kf, true, kek2, &created), 0);
	assert_false(created);
	assert_memory_equal(kek, kek2, 32);

	/* No data key yet. */
	assert_int_equal(red_dek_load(dir, kek, &d), -ENOENT);
	assert_int_equal(red_dek_create(dir, kek, &d), 0);
	assert_int_equal(d.gen, 1);
	assert_int_equal(red_dek_load(dir, kek, &d2), 0);
	assert_memory_equal(d.key, d2.key, sizeof(d.key));
	/* The file holds the data key wrapped, not in clear. */
	{
		char p[128];
		uint8_t b[256];
		snprintf(p, sizeof(p), "%s/datakey", dir);
		f = fopen(p, "rb");
		assert_non_null(f);
		size_t n = fread(b, 1, sizeof(b), f);
		fclose(f);
		assert_null(memmem(b, n, d.key, 8));
		assert_null(memmem(b, n, d.key + 32, 8));
	}
	/* Another KEK is refused. */
	assert_int_equal(red_kek_create(kf2, kek3), 0);
	assert_int_equal(red_dek_load(dir, kek3, &d2), -EKEYREJECTED);
	/* Rekey: re-wrap under the new KEK; the data key itself does not change. */
	assert_int_equal(red_dek_store(dir, kek3, &d), 0);
	assert_int_equal(red_dek_load(dir, kek, &d2), -EKEYREJECTED);
	assert_int_equal(red_dek_load(dir, kek3, &d2), 0);
	assert_memory_equal(d.key, d2.key, sizeof(d.key));
	/* Creating over an existing key file is refused. */
	assert_int_equal(red_kek_create(kf2, kek3), -EEXIST);

	/* Malformed key files. */
	snprintf(bad, sizeof(bad), "%s/bad.key", dir);
	f = fopen(bad, "w");
	assert_non_null(f);
	fputs("not a key\n", f);
	fclose(f);
	assert_int_equal(red_kek_load(bad, true, kek2, &created), -EINVAL);
	f = fopen(bad, "w");
	fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeefX\n", f);
	fclose(f);
	assert_int_equal(red_kek_load(bad, false, kek2, NULL), -EINVAL);
}

static void test_fpidx(void **state)
{
	struct red_fpidx x;
	struct red_fp_key *k;
	uint8_t secret[32] = { 1 }, fp[32];
	const uint64_t N = 200000;
	uint64_t fpos = 0;

	(void)state;
	assert_int_equal(red_fp_key_new(secret, &k), 0);
	assert_int_equal(red_fpidx_init(&x, 0), 0);
	for (uint64_t i = 0; i < N; i++) {
		assert_int_equal(red_fingerprint(k, &i, sizeof(i), fp), 0);
		assert_int_equal(red_fpidx_add(&x, fp), 0);
	}
	/* Everything added is found (no false negatives), across growths. */
	for (uint64_t i = 0; i < N; i++) {
		assert_int_equal(red_fingerprint(k, &i, sizeof(i), fp), 0);
		assert_true(red_fpidx_maybe(&x, fp));
	}
	/* Few false positives for fingerprints never added. */
	for (uint64_t i = N; i < 2 * N; i++) {
		assert_int_equal(red_fingerprint(k, &i, sizeof(i), fp), 0);
		fpos += red_fpidx_maybe(&x, fp);
	}
	assert_true(fpos < N / 1000);
	/* The documented RAM bound: at most 8 bytes per stored chunk. */
	assert_true(red_fpidx_count(&x) > N - 20); /* 32-bit tag collisions are rare */
	assert_true(red_fpidx_bytes(&x) <= 8 * N);
	print_message("fpidx: %llu chunks, %llu bytes (%.2f B/chunk), %llu false positives of %llu\n",
		      (unsigned long long)red_fpidx_count(&x),
		      (unsigned long long)red_fpidx_bytes(&x),
		      (double)red_fpidx_bytes(&x) / (double)N, (unsigned long long)fpos,
		      (unsigned long long)N);
	red_fpidx_destroy(&x);
	red_fp_key_free(k);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_compress),
		cmocka_unit_test(test_xts),
		cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
		cmocka_unit_test(test_fpidx),
	};
	return cmocka_run_group_tests(t, NULL, NULL);
}
