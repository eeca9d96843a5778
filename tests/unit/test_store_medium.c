/* Storage engine, medium module: range entries merge, compose and stay shallow; the
 * resolution of a grain follows the newest entry. Uses the internal header of lib/store. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/store/medium.h"
#include "../../lib/store/meta.h"

static char dir[64];
static struct meta *M;
static struct media MD;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/rodmed.XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(meta_open(dir, true, &M), 0);
	memset(&MD, 0, sizeof(MD));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	media_free(&MD);
	meta_close(M);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void put_block(uint64_t lin, uint64_t lba, uint64_t epoch, uint64_t chunk)
{
	uint8_t k[MAP_KEY_LEN], v[MAP_VAL_LEN];
	struct map_val mv = { .chunk = chunk, .len = 4096 };

	map_key(k, lin, lba, epoch);
	map_val_encode(&mv, v);
	assert_int_equal(meta_put(M, CF_MAP, k, sizeof(k), v, sizeof(v)), 0);
}

static struct resolved resolve(uint64_t lin, uint64_t epoch, uint64_t lba, uint64_t max)
{
	struct meta_iter *it = meta_iter_new(M, CF_MAP);
	struct resolved r;

	assert_int_equal(medium_resolve(&MD, it, lin, epoch, lba, max, &r), 0);
	meta_iter_free(it);
	return r;
}

/* A storm of adjacent copies becomes one range entry; the part of the storm that copies
 * a hole of the source points at the deallocated lineage instead (a second entry). */
static void test_storm_merges(void **state)
{
	struct lineage *src = media_add(&MD, 16), *dst = media_add(&MD, 17);
	struct mutbuf mb = { 0 };
	uint64_t p;

	(void)state;
	for (uint64_t g = 0; g < 4096; g++)
		put_block(16, g, 1, (1ull << 20) + g);
	lin_note_write(src, 0, 4096);
	p = lin_pin(src, &mb);
	assert_int_equal(p, 1);
	for (uint64_t i = 0; i < 1024; i++)
		assert_int_equal(lin_add_range(&MD, M, dst, i * 4, (i + 1) * 4, 16,
					       lin_pin(src, &mb), 0, &mb), 0);
	assert_int_equal(dst->nrng, 1);
	assert_int_equal(dst->rng[0].end, 4096);
	assert_int_equal(dst->rng[0].tlin, 16);
	for (uint64_t i = 1024; i < 2048; i++)
		assert_int_equal(lin_add_range(&MD, M, dst, i * 4, (i + 1) * 4, 16,
					       lin_pin(src, &mb), 0, &mb), 0);
	assert_int_equal(dst->nrng, 2);
	assert_int_equal(dst->rng[1].start, 4096);
	assert_int_equal(dst->rng[1].end, 8192);
	assert_int_equal(dst->rng[1].tlin, LIN_UNMAP);
	struct resolved r = resolve(17, EPOCH_MAX, 100, 1);
	assert_int_equal(r.kind, RES_CHUNK);
	assert_int_equal(r.v.chunk, (1ull << 20) + 100);
	/* beyond the written source: deallocated, as one run to the next boundary */
	r = resolve(17, EPOCH_MAX, 5000, 1u << 22);
	assert_int_equal(r.kind, RES_UNMAP);
	assert_int_equal(r.run, 8192 - 5000);
	mutbuf_free(&mb);
}

/* A write between two copies prevents merging across it only where it overlaps. */
static void test_write_breaks_merge_only_when_overlapping(void **state)
{
	struct lineage *src = media_add(&MD, 16), *dst = media_add(&MD, 17);
	struct mutbuf mb = { 0 };

	(void)state;
	for (uint64_t g = 0; g < 40; g++)
		put_block(16, g, 1, (1ull << 20) + g);
	lin_note_write(src, 0, 40);
	uint64_t p = lin_pin(src, &mb);
	assert_int_equal(lin_add_range(&MD, M, dst, 0, 10, 16, p, 0, &mb), 0);
	lin_note_write(dst, 100, 1);   /* elsewhere */
	assert_int_equal(lin_add_range(&MD, M, dst, 10, 20, 16, p, 0, &mb), 0);
	assert_int_equal(dst->nrng, 1);
	lin_note_write(dst, 25, 1);    /* inside the next copy */
	assert_int_equal(lin_add_range(&MD, M, dst, 20, 30, 16, p, 0, &mb), 0);
	assert_int_equal(dst->nrng, 2);
	assert_true(dst->rng[1].epoch > dst->rng[0].epoch);
	mutbuf_free(&mb);
}

/* A copy of a copy points at the original; a chain of copies stays at depth 1. */
static void test_composition_keeps_depth(void **state)
{
	struct mutbuf mb = { 0 };
	struct lineage *l[20];

	(void)state;
	for (int i = 0; i < 20; i++)
		l[i] = media_add(&MD, 16 + (uint64_t)i);
	for (uint64_t g = 0; g < 64; g++)
		put_block(16, g, 1, (2ull << 20) + g);
	lin_note_write(l[0], 0, 64);
	for (int i = 1; i < 20; i++) {
		uint64_t p = lin_pin(l[i - 1], &mb);

		assert_int_equal(lin_add_range(&MD, M, l[i], 0, 64, l[i - 1]->id, p, 0, &mb), 0);
		assert_int_equal(l[i]->nrng, 1);
		assert_int_equal(l[i]->rng[0].tlin, 16);
		assert_int_equal(l[i]->rng[0].depth, 1);
	}
	struct resolved r = resolve(16 + 19, EPOCH_MAX, 7, 1);
	assert_int_equal(r.v.chunk, (2ull << 20) + 7);
	mutbuf_free(&mb);
}

/* Without composition (each hop overwritten in part) depth grows to the hard limit and
 * the next copy is refused with -ELOOP (the engine then copies data). */
static void test_depth_limit(void **state)
{
	struct mutbuf mb = { 0 };
	struct lineage *l[DEPTH_HARD + 3];
	int i;

	(void)state;
	for (i = 0; i < (int)DEPTH_HARD + 3; i++)
		l[i] = media_add(&MD, 16 + (uint64_t)i);
	put_block(16, 0, 1, 3ull << 20);
	lin_note_write(l[0], 0, 1);
	for (i = 1; i < (int)DEPTH_HARD + 3; i++) {
		/* a block inside the source range defeats composition */
		put_block(l[i - 1]->id, 5, l[i - 1]->cur, (4ull << 20) + (uint64_t)i);
		lin_note_write(l[i - 1], 5, 1);
		uint64_t p = lin_pin(l[i - 1], &mb);
		int rc = lin_add_range(&MD, M, l[i], 0, 64, l[i - 1]->id, p, 0, &mb);

		if (i <= (int)DEPTH_HARD) {
			assert_int_equal(rc, 0);
			assert_int_equal(l[i]->rng[0].depth, (uint32_t)i);
		} else {
			assert_int_equal(rc, -ELOOP);
			break;
		}
	}
	struct resolved r = resolve(16 + DEPTH_HARD, EPOCH_MAX, 0, 1);
	assert_int_equal(r.v.chunk, 3ull << 20);
	mutbuf_free(&mb);
}

/* Block entries win over a range entry of the same epoch; a snapshot epoch keeps what it
 * saw. */
static void test_epochs(void **state)
{
	struct lineage *l = media_add(&MD, 16);
	struct mutbuf mb = { 0 };

	(void)state;
	put_block(16, 3, l->cur, 5ull << 20);
	lin_note_write(l, 3, 1);
	uint64_t snap = lin_pin(l, &mb);
	assert_int_equal(lin_add_range(&MD, M, l, 0, 10, LIN_UNMAP, 0, 0, &mb), 0);
	assert_int_equal(resolve(16, EPOCH_MAX, 3, 1).kind, RES_UNMAP);
	assert_int_equal(resolve(16, snap, 3, 1).v.chunk, 5ull << 20);
	put_block(16, 3, l->cur, 6ull << 20);   /* written after the range, same epoch */
	lin_note_write(l, 3, 1);
	assert_int_equal(resolve(16, EPOCH_MAX, 3, 1).v.chunk, 6ull << 20);
	assert_int_equal(resolve(16, snap, 3, 1).v.chunk, 5ull << 20);
	mutbuf_free(&mb);
}

/* The range lookup index (segment tree over the entries) against a brute-force search:
 * random overlapping entries of random epochs (one spanning everything first, like a
 * clone that then received copies), random removals, lookups at random grains/epochs. */
static void test_lookup_index(void **state)
{
	struct lineage *l = media_add(&MD, 16);
	struct mutbuf mb = { 0 };
	uint64_t x = 12345;

	(void)state;
	assert_int_equal(lin_rng_add_at(l, 0, 100000, 1, LIN_ZERO, &mb), 0);
	for (int i = 0; i < 3000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t a = (x >> 20) % 100000, len = 1 + (x >> 40) % 300, ep = 1 + (x >> 8) % 50;

		assert_int_equal(lin_rng_add_at(l, a, a + len, ep, (x >> 3) & 1 ? LIN_ZERO : LIN_UNMAP,
						&mb), 0);
		if (i % 7 == 0 && l->nrng > 10) /* drop one */
			assert_int_equal(lin_rng_remove(l, l->rng[(x >> 12) % l->nrng].seq, &mb), 0);
	}
	for (int q = 0; q < 20000; q++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t g = (x >> 20) % 100500, e = (x >> 4) % 64 ? 1 + (x >> 8) % 52 : EPOCH_MAX;
		const struct rng_ent *best = NULL;
		uint64_t nstart = UINT64_MAX, run;

		for (size_t j = 0; j < l->nrng; j++) {
			const struct rng_ent *r = &l->rng[j];

			if (r->epoch > e)
				continue;
			if (r->start <= g && r->end > g &&
			    (!best || r->epoch > best->epoch || (r->epoch == best->epoch && r->seq > best->seq)))
				best = r;
			if (r->start > g && r->start < nstart)
				nstart = r->start;
		}
		run = 1000;
		if (nstart - g < run)
			run = nstart - g;
		if (best && best->end - g < run)
			run = best->end - g;
		struct resolved r = resolve(16, e, g, 1000);

		assert_int_equal(r.kind, !best ? RES_UNMAP : best->tlin == LIN_ZERO ? RES_ZERO : RES_UNMAP);
		assert_int_equal(r.run, run ? run : 1);
	}
	mutbuf_free(&mb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_storm_merges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_breaks_merge_only_when_overlapping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_composition_keeps_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_epochs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_index, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
