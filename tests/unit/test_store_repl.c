/* Storage engine: replication support (rod_vol_diff, rod_vol_read_raw, rod_vol_write_fp,
 * fingerprints, replica names). Diffs are checked against a brute-force comparison of
 * the two snapshots' contents, and by applying them to a copy of the base. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_test_util.h"

#include "rod/store.h"
#include "rod/util.h"
#include "../../lib/store/repl.h"

#define MiB (1024ull * 1024)
#define G ROD_GRAIN

static char tmpl[64];

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *p = buf;

	for (size_t i = 0; i < len / 8; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = seed ^ i;
	}
}

static struct rod_store *open_store(bool create, bool no_dedupe)
{
	return stu_open(tmpl, "test-array", create, no_dedupe);
}

static int setup(void **state)
{
	stu_mkdtemp(tmpl, sizeof(tmpl), "rodrepl");
	*state = open_store(true, false);
	return 0;
}

static int teardown(void **state)
{
	rod_store_close(*state);
	stu_rmtree(tmpl, NULL);
	return 0;
}

/* ---- what a snapshot holds, grain by grain, through the ordinary API ---- */

struct image {
	uint64_t size, ngr;
	uint8_t *data;
	uint8_t *kind;   /* enum rod_diff_kind per grain */
};

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void image_load(struct rod_store *s, const char *name, struct image *im)
{
	struct rod_vol *v;

	assert_int_equal(rod_vol_open(s, name, &v), 0);
	im->size = rod_vol_size(v);
	im->ngr = (im->size + G - 1) / G;
	im->data = calloc(im->ngr, G);
	im->kind = calloc(im->ngr, 1);
	assert_non_null(im->data);
	assert_int_equal(rod_vol_read(v, 0, im->data, im->size), 0);
	for (uint64_t g = 0; g < im->ngr;) {
		bool mapped;
		uint64_t len;

		assert_int_equal(rod_vol_lba_status(v, g * G, im->size - g * G, &mapped, &len), 0);
		uint64_t n = (len + G - 1) / G;

		assert_true(n >= 1);
		for (uint64_t i = g; i < g + n && i < im->ngr; i++)
			im->kind[i] = !mapped ? ROD_DIFF_UNMAP :
				      all_zero(im->data + i * G, G) ? ROD_DIFF_ZERO : ROD_DIFF_DATA;
		g += n;
	}
	rod_vol_close(v);
}

static void image_free(struct image *im)
{
	free(im->data);
	free(im->kind);
}

/* ---- collecting extents ---- */

struct ext {
	uint64_t off, len;
	enum rod_diff_kind kind;
};

struct exts {
	struct ext *e;
	size_t n, cap;
	size_t stop_after;   /* 0: never stop */
};

static int collect(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind)
{
	struct exts *x = arg;

	if (x->n == x->cap) {
		x->cap = x->cap ? 2 * x->cap : 64;
		x->e = realloc(x->e, x->cap * sizeof(*x->e));
		assert_non_null(x->e);
	}
	x->e[x->n++] = (struct ext){ off, len, kind };
	if (x->stop_after && x->n == x->stop_after)
		return 7;
	return 0;
}

/* The extents of diff(base, snap) must: be sorted, grain aligned, inside snap, DATA ones
 * at most 1 MiB; say exactly what snap holds; cover every grain that differs. Applying
 * them to the base gives the snapshot. */
static void check_diff(struct rod_store *s, const char *base, const char *snap,
		       struct repl_diff_stats *st_out)
{
	struct image ib = { 0 }, is;
	struct exts x = { 0 };
	struct repl_diff_stats st;
	uint8_t *covered, *apply;

	if (base)
		image_load(s, base, &ib);
	image_load(s, snap, &is);
	assert_int_equal(repl_vol_diff(s, base, snap, 0, collect, &x, &st), 0);
	covered = calloc(is.ngr + 1, 1);
	apply = calloc(is.ngr + 1, G);
	if (base)
		memcpy(apply, ib.data, ROD_MIN(ib.size, is.size));
	if (ib.size < is.size && ib.size % G) /* the receiver's regrown tail reads zeros */
		memset(apply + ib.size, 0, G - ib.size % G);
	uint64_t prev_end = 0;
	for (size_t i = 0; i < x.n; i++) {
		struct ext *e = &x.e[i];

		assert_true(e->off % G == 0);
		assert_true(e->off >= prev_end);
		assert_true(e->len > 0);
		assert_true(e->off + e->len <= is.size);
		assert_true(e->len % G == 0 || e->off + e->len == is.size);
		if (e->kind == ROD_DIFF_DATA)
			assert_true(e->len <= MiB);
		prev_end = e->off + e->len;
		for (uint64_t g = e->off / G; g < (e->off + e->len + G - 1) / G; g++) {
			if (is.kind[g] != e->kind)
				fail_msg("%s..%s: grain %llu reported kind %d, snap holds %d", base ? base : "-",
					 snap, (unsigned long long)g, e->kind, is.kind[g]);
			covered[g] = 1;
			if (e->kind == ROD_DIFF_DATA)
				memcpy(apply + g * G, is.data + g * G, G);
			else
				memset(apply + g * G, 0, G);
		}
	}
	for (uint64_t g = 0; g < is.ngr; g++) {
		bool differs;

		if (g < ib.ngr)
			differs = is.kind[g] != ib.kind[g] || memcmp(is.data + g * G, ib.data + g * G,
								    ROD_MIN(G, is.size - g * G));
		else
			differs = is.kind[g] != ROD_DIFF_UNMAP;
		if (differs && !covered[g])
			fail_msg("%s..%s: grain %llu differs (kind %d -> %d) but is not reported",
				 base ? base : "-", snap, (unsigned long long)g,
				 g < ib.ngr ? ib.kind[g] : -1, is.kind[g]);
	}
	assert_memory_equal(apply, is.data, is.size);
	if (st_out)
		*st_out = st;

	/* Resume: stop after a few extents, continue from the end of the last one. */
	if (x.n >= 3) {
		struct exts y = { 0 };
		size_t k = x.n / 2;

		y.stop_after = k;
		assert_int_equal(rod_vol_diff(s, base, snap, 0, collect, &y), 7);
		assert_int_equal(y.n, k);
		y.stop_after = 0;
		assert_int_equal(rod_vol_diff(s, base, snap, y.e[k - 1].off + y.e[k - 1].len, collect, &y), 0);
		assert_int_equal(y.n, x.n);
		for (size_t i = 0; i < x.n; i++) {
			assert_true(y.e[i].off == x.e[i].off);
			assert_true(y.e[i].len == x.e[i].len);
			assert_int_equal(y.e[i].kind, x.e[i].kind);
		}
		free(y.e);
	}
	free(x.e);
	free(covered);
	free(apply);
	if (base)
		image_free(&ib);
	image_free(&is);
}

/* ---- the random workload ---- */

static uint8_t repeated[4][G];

static void random_phase(struct rod_store *s, struct rod_vol *v, struct rod_vol *other,
			 int nops)
{
	uint64_t size = rod_vol_size(v), ng = size / G;
	uint8_t *buf = malloc(64 * G);

	for (int i = 0; i < nops; i++) {
		uint64_t g = rnd() % ng, n = 1 + rnd() % 16, op = rnd() % 10;

		if (g + n > ng)
			n = ng - g;
		switch (op) {
		case 0: case 1: case 2: /* unique data */
			fill(buf, n * G, rnd());
			assert_int_equal(rod_vol_write(v, g * G, buf, n * G, 0), 0);
			break;
		case 3: /* repeated data: dedupe */
			for (uint64_t j = 0; j < n; j++)
				memcpy(buf + j * G, repeated[rnd() % 4], G);
			assert_int_equal(rod_vol_write(v, g * G, buf, n * G, 0), 0);
			break;
		case 4: { /* partial grains (512e) */
			uint64_t off = g * G + 512 * (1 + rnd() % 7), len = 512 * (1 + rnd() % 12);

			if (off + len > size)
				break;
			fill(buf, len, rnd());
			assert_int_equal(rod_vol_write(v, off, buf, len, 0), 0);
			break;
		}
		case 5: /* zero, small or large (range entry) */
			if (rnd() % 3 == 0)
				n = 300 + rnd() % 200;
			if (n > ng - g)
				n = ng - g;
			assert_int_equal(rod_vol_zero(v, g * G, n * G), 0);
			break;
		case 6: /* unmap, small or large */
			if (rnd() % 3 == 0)
				n = 300 + rnd() % 200;
			if (n > ng - g)
				n = ng - g;
			assert_int_equal(rod_vol_unmap(v, g * G, n * G), 0);
			break;
		case 7: { /* range copy from another volume (aligned: a range entry) */
			uint64_t so = rnd() % (rod_vol_size(other) / G - 64), cn = n * 4;

			if (cn > ng - g)
				cn = ng - g;

			assert_int_equal(rod_vol_copy(other, so * G, v, g * G, cn * G), 0);
			break;
		}
		case 8: { /* misaligned copy: data moves */
			uint64_t so = rnd() % (rod_vol_size(other) / G - 64);

			if (g * G + 512 + n * G > size)
				break;
			assert_int_equal(rod_vol_copy(other, so * G, v, g * G + 512, n * G), 0);
			break;
		}
		default: /* zeros written as data */
			memset(buf, 0, n * G);
			assert_int_equal(rod_vol_write(v, g * G, buf, n * G, 0), 0);
			break;
		}
	}
	free(buf);
}

static void test_diff_random(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "src", 8 * MiB), *o = stu_mkvol(s, "other", 4 * MiB);
	uint8_t *buf = malloc(4 * MiB);
	char name[64], prev[64];
	struct repl_diff_stats st;
	int nsnap = 0;

	for (int i = 0; i < 4; i++)
		fill(repeated[i], G, 1000 + i);
	fill(buf, 4 * MiB, 77);
	assert_int_equal(rod_vol_write(o, 0, buf, 4 * MiB, 0), 0);
	fill(buf, 4 * MiB, 78);
	assert_int_equal(rod_vol_write(v, 0, buf, 4 * MiB, 0), 0);
	/* The first snapshot against nothing: every mapped grain. */
	assert_int_equal(rod_vol_snapshot(s, "src", "p0", NULL), 0);
	check_diff(s, NULL, "src.p0", &st);
	assert_int_equal(st.method, REPL_DIFF_FULL_SCAN); /* no range entry yet: one key scan */
	/* and with zeros (block entries) and unmapped grains among the data */
	{
		uint8_t z[3 * G] = { 0 };

		assert_int_equal(rod_vol_write(o, 8 * G, z, sizeof(z), 0), 0);
		assert_int_equal(rod_vol_unmap(o, 20 * G, 5 * G), 0);
		assert_int_equal(rod_vol_snapshot(s, "other", "z", NULL), 0);
		fill(buf, 2 * G, 79);
		assert_int_equal(rod_vol_write(o, 8 * G, buf, G, 0), 0); /* after the snapshot */
		check_diff(s, NULL, "other.z", &st);
		assert_int_equal(st.method, REPL_DIFF_FULL_SCAN);
	}
	snprintf(prev, sizeof(prev), "src.p0");
	for (int phase = 1; phase <= 12; phase++) {
		random_phase(s, v, o, 40);
		if (phase == 4 || phase == 9) {
			/* Revert to an older snapshot, then change a little. */
			assert_int_equal(rod_vol_revert(s, "src", phase == 4 ? "src.p1" : "src.p8"), 0);
			random_phase(s, v, o, 5);
		}
		if (phase == 6) {
			assert_int_equal(rod_vol_resize(s, "src", 10 * MiB), 0);
			random_phase(s, v, o, 10);
		}
		if (phase == 8) /* shrink to a size that is not a grain multiple */
			assert_int_equal(rod_vol_resize(s, "src", 7 * MiB + 1536), 0);
		if (phase == 10) {
			assert_int_equal(rod_vol_resize(s, "src", 9 * MiB), 0);
			random_phase(s, v, o, 10);
		}
		snprintf(name, sizeof(name), "p%d", phase);
		assert_int_equal(rod_vol_snapshot(s, "src", name, NULL), 0);
		nsnap++;
		snprintf(name, sizeof(name), "src.p%d", phase);
		check_diff(s, prev, name, &st);
		assert_int_equal(st.method, REPL_DIFF_WINDOW);
		check_diff(s, NULL, name, NULL);
		snprintf(prev, sizeof(prev), "%s", name);
	}
	/* Wider windows, and a resize with no write in between (equal epochs). */
	check_diff(s, "src.p0", "src.p12", NULL);
	check_diff(s, "src.p3", "src.p7", NULL);
	assert_int_equal(rod_vol_resize(s, "src", 12 * MiB), 0);
	assert_int_equal(rod_vol_snapshot(s, "src", "p13", NULL), 0);
	check_diff(s, "src.p12", "src.p13", NULL);
	/* Another lineage: a clone of an old snapshot, changed, against snapshots of src. */
	assert_int_equal(rod_vol_clone(s, "src.p5", "cl", NULL), 0);
	{
		struct rod_vol *c;

		assert_int_equal(rod_vol_open(s, "cl", &c), 0);
		random_phase(s, c, o, 30);
		assert_int_equal(rod_vol_snapshot(s, "cl", "s1", NULL), 0);
		rod_vol_close(c);
	}
	check_diff(s, "src.p5", "cl.s1", &st);
	assert_int_equal(st.method, REPL_DIFF_COMPARE);
	check_diff(s, "src.p12", "cl.s1", NULL);
	/* Flatten rewrites range entries (reverts, copies, clone bases) as block entries at
	 * their old epochs: every diff stays right, also after a restart. */
	assert_int_equal(rod_vol_flatten(s, "src", ROD_FLATTEN_ALL, NULL, NULL), 0);
	assert_int_equal(rod_vol_flatten(s, "cl", ROD_FLATTEN_ALL, NULL, NULL), 0);
	for (int pass = 0; pass < 2; pass++) {
		for (int phase = 1; phase <= 13; phase++) {
			snprintf(prev, sizeof(prev), "src.p%d", phase - 1);
			snprintf(name, sizeof(name), "src.p%d", phase);
			check_diff(s, prev, name, &st);
		}
		check_diff(s, "src.p5", "cl.s1", NULL);
		if (pass == 0) {
			rod_vol_close(v);
			rod_vol_close(o);
			rod_store_close(s);
			s = *state = open_store(false, false);
			assert_int_equal(rod_vol_open(s, "src", &v), 0);
			assert_int_equal(rod_vol_open(s, "other", &o), 0);
		}
	}
	/* Refusals. */
	struct exts x = { 0 };
	assert_int_equal(rod_vol_diff(s, "src.p5", "src.p2", 0, collect, &x), -EINVAL);
	assert_int_equal(rod_vol_diff(s, "src.p1", "src", 0, collect, &x), -EINVAL);
	assert_int_equal(rod_vol_diff(s, "src.p1", "nope.p1", 0, collect, &x), -ENOENT);
	assert_int_equal(x.n, 0);
	(void)nsnap;
	free(buf);
	rod_vol_close(v);
	rod_vol_close(o);
}

/* diff(base, snap) must report exactly the grains listed (each as DATA, all of it). */
static void expect_grains(struct rod_store *s, const char *base, const char *snap,
			  const uint64_t *offs, size_t n, struct repl_diff_stats *st)
{
	struct exts x = { 0 };
	size_t covered = 0;

	assert_int_equal(repl_vol_diff(s, base, snap, 0, collect, &x, st), 0);
	for (size_t i = 0; i < x.n; i++) {
		assert_int_equal(x.e[i].kind, ROD_DIFF_DATA);
		for (uint64_t o = x.e[i].off; o < x.e[i].off + x.e[i].len; o += G) {
			bool listed = false;

			for (size_t j = 0; j < n; j++)
				listed |= offs[j] == o;
			if (!listed)
				fail_msg("%s..%s: grain at %llu reported, not changed", base, snap,
					 (unsigned long long)o);
			covered++;
		}
	}
	assert_int_equal(covered, n);
	free(x.e);
}

/* The cost of a diff between snapshots of one volume follows what changed between
 * them, not the volume's size: 10 grains changed in a written 1 GiB volume. */
static void test_diff_cost(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "big", 1024 * MiB);
	uint8_t *buf = malloc(4 * MiB);
	struct repl_diff_stats st;
	uint64_t changed[16];

	for (uint64_t off = 0; off < 1000 * MiB; off += 4 * MiB) {
		fill(buf, 4 * MiB, off);
		assert_int_equal(rod_vol_write(v, off, buf, 4 * MiB, 0), 0);
	}
	assert_int_equal(rod_vol_snapshot(s, "big", "a", NULL), 0);
	for (int i = 0; i < 10; i++) {
		bool dup;

		do { /* ten distinct grains, none next to another */
			changed[i] = (16 + rnd() % (1024 * MiB / G - 32)) * G;
			dup = false;
			for (int j = 0; j < i; j++)
				dup |= changed[j] + G >= changed[i] && changed[i] + G >= changed[j];
		} while (dup);
		fill(buf, G, 5000 + i);
		assert_int_equal(rod_vol_write(v, changed[i], buf, G, 0), 0);
	}
	assert_int_equal(rod_vol_snapshot(s, "big", "b", NULL), 0);
	expect_grains(s, "big.a", "big.b", changed, 10, &st);
	print_message("diff of 10 changed grains in 1 GiB: %llu map keys, %llu summary keys, "
		      "%llu resolves, %llu extents\n", (unsigned long long)st.map_keys,
		      (unsigned long long)st.chg_keys, (unsigned long long)st.resolves,
		      (unsigned long long)st.extents);
	assert_int_equal(st.method, REPL_DIFF_WINDOW);
	/* The 10 grains' entries (2 each) and the next key after each (the full scan reads
	 * more than 256 Ki keys). */
	assert_true(st.map_keys <= 10 * 3);
	assert_true(st.chg_keys == 1);
	assert_true(st.resolves == 10);
	/* Nothing changed: nothing read. */
	assert_int_equal(rod_vol_snapshot(s, "big", "c", NULL), 0);
	expect_grains(s, "big.b", "big.c", NULL, 0, &st);
	assert_true(st.map_keys == 0);
	/* After a restart the epoch that was current has no summary: the walk falls back to
	 * reading the lineage's keys, and is still right; later windows are cheap again. */
	for (int i = 0; i < 3; i++) {
		changed[10 + i] = changed[i] + G;
		fill(buf, G, 6000 + i);
		assert_int_equal(rod_vol_write(v, changed[10 + i], buf, G, 0), 0);
	}
	rod_vol_close(v);
	rod_store_close(s);
	s = *state = open_store(false, false);
	assert_int_equal(rod_vol_open(s, "big", &v), 0);
	changed[13] = 7 * G;
	fill(buf, G, 7000);
	assert_int_equal(rod_vol_write(v, changed[13], buf, G, 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "big", "d", NULL), 0);
	expect_grains(s, "big.c", "big.d", changed + 10, 4, &st);
	assert_int_equal(st.method, REPL_DIFF_WINDOW_SCAN);
	assert_true(st.map_keys >= 1000 * MiB / G);
	changed[14] = 9 * G;
	fill(buf, G, 7001);
	assert_int_equal(rod_vol_write(v, changed[14], buf, G, 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "big", "e", NULL), 0);
	expect_grains(s, "big.d", "big.e", changed + 14, 1, &st);
	assert_int_equal(st.method, REPL_DIFF_WINDOW);
	assert_true(st.map_keys <= 3);
	expect_grains(s, "big.a", "big.e", changed, 15, &st);
	assert_int_equal(st.method, REPL_DIFF_WINDOW_SCAN);
	free(buf);
	rod_vol_close(v);
}

/* An epoch with more grain runs than a summary record holds (16384) is summarised by
 * its bitmap pages: still exact, one key per changed grain. */
static void test_diff_many_runs(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "runs", 1400 * MiB);
	uint8_t buf[G];
	struct repl_diff_stats st;
	struct exts x = { 0 };

	assert_int_equal(rod_vol_set_cache(s, "runs", ROD_CACHE_WRITE_BACK), 0);
	fill(buf, G, 1);
	assert_int_equal(rod_vol_write(v, 0, buf, G, 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "runs", "a", NULL), 0);
	for (uint64_t g = 0; g < 20000 * 16; g += 16) {
		fill(buf, G, g + 2);
		assert_int_equal(rod_vol_write(v, g * G, buf, G, 0), 0);
	}
	assert_int_equal(rod_vol_flush(v), 0);
	assert_int_equal(rod_vol_snapshot(s, "runs", "b", NULL), 0);
	assert_int_equal(repl_vol_diff(s, "runs.a", "runs.b", 0, collect, &x, &st), 0);
	print_message("many runs: %llu map keys, %llu resolves\n", (unsigned long long)st.map_keys,
		      (unsigned long long)st.resolves);
	assert_int_equal(st.method, REPL_DIFF_WINDOW);
	assert_int_equal(x.n, 20000);
	for (size_t i = 0; i < x.n; i++) {
		assert_true(x.e[i].off == i * 16 * G && x.e[i].len == G);
		assert_int_equal(x.e[i].kind, ROD_DIFF_DATA);
	}
	/* grain 0 has two entries (before and after a) */
	assert_true(st.map_keys >= 20000 && st.map_keys <= 20001);
	free(x.e);
	rod_vol_close(v);
}

/* Summaries go with their lineage: eradicating a volume and its snapshots, then GC,
 * leaves no summary key behind. */
static void test_summaries_dropped(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "gone", 8 * MiB), *o;
	uint8_t buf[4 * G];
	uint64_t before;

	fill(buf, sizeof(buf), 1);
	for (int i = 0; i < 3; i++) {
		char sfx[8];

		assert_int_equal(rod_vol_write(v, (uint64_t)i * MiB, buf, sizeof(buf), 0), 0);
		snprintf(sfx, sizeof(sfx), "s%d", i);
		assert_int_equal(rod_vol_snapshot(s, "gone", sfx, NULL), 0);
	}
	/* A revert, flattened: a span record (lineage|epoch|seq) too. */
	assert_int_equal(rod_vol_revert(s, "gone", "gone.s0"), 0);
	assert_int_equal(rod_vol_flatten(s, "gone", ROD_FLATTEN_ALL, NULL, NULL), 0);
	o = stu_mkvol(s, "stays", MiB);
	assert_int_equal(rod_vol_write(o, 0, buf, sizeof(buf), 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "stays", "s", NULL), 0);
	before = repl_chg_keys(s);
	assert_true(before >= 5);
	rod_vol_close(v);
	for (int i = 0; i < 3; i++) {
		char n[16];

		snprintf(n, sizeof(n), "gone.s%d", i);
		assert_int_equal(rod_vol_destroy(s, n), 0);
		assert_int_equal(rod_vol_eradicate(s, n), 0);
	}
	assert_int_equal(rod_vol_destroy(s, "gone"), 0);
	assert_int_equal(rod_vol_eradicate(s, "gone"), 0);
	assert_int_equal(rod_store_gc(s, false), 0);
	assert_int_equal(repl_chg_keys(s), 1); /* "stays": one sealed epoch */
	rod_vol_close(o);
}

/* ---- grains as stored ---- */

static void test_read_raw(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "raw", 4 * MiB);
	uint8_t *buf = malloc(64 * G), back[G], plain[G];
	struct rod_grain_raw r, r2;
	int comp_seen[3] = { 0 };

	/* Random (incompressible), compressible, repeated and zero grains. */
	fill(buf, 16 * G, 5);
	for (int i = 16; i < 32; i++) {
		memset(buf + i * G, 'a' + i % 3, G);
		memcpy(buf + i * G, &i, sizeof(i));
	}
	for (int i = 32; i < 40; i++)
		memcpy(buf + i * G, buf + 3 * G, G); /* same as grain 3 */
	memset(buf + 40 * G, 0, 4 * G);
	assert_int_equal(rod_vol_write(v, 0, buf, 32 * G, 0), 0);
	/* (a later write: grains of one write are not deduplicated against each other) */
	assert_int_equal(rod_vol_write(v, 32 * G, buf + 32 * G, 12 * G, 0), 0);
	assert_int_equal(rod_vol_unmap(v, 40 * G, 2 * G), 0);
	for (uint64_t g = 0; g < 48; g++) {
		assert_int_equal(rod_vol_read_raw(v, g * G, &r), 0);
		assert_int_equal(rod_vol_read(v, g * G, back, G), 0);
		if (g >= 40) {
			assert_int_equal(r.kind, g < 42 || g >= 44 ? ROD_DIFF_UNMAP : ROD_DIFF_ZERO);
			continue;
		}
		assert_int_equal(r.kind, ROD_DIFF_DATA);
		assert_true(r.len >= 1 && r.len <= G);
		assert_true(r.comp <= ROD_RAW_COMP_ZSTD);
		comp_seen[r.comp]++;
		assert_int_equal(rod_grain_decompress(r.comp, r.data, r.len, plain), 0);
		assert_memory_equal(plain, back, G);
	}
	assert_true(comp_seen[ROD_RAW_COMP_NONE] > 0);
	assert_true(comp_seen[ROD_RAW_COMP_LZ4] > 0);
	/* Same content, same chunk. */
	assert_int_equal(rod_vol_read_raw(v, 3 * G, &r), 0);
	for (uint64_t g = 32; g < 40; g++) {
		assert_int_equal(rod_vol_read_raw(v, g * G, &r2), 0);
		assert_true(r2.chunk_id == r.chunk_id);
	}
	assert_int_equal(rod_vol_read_raw(v, 4 * G, &r2), 0);
	assert_true(r2.chunk_id != r.chunk_id);
	/* A snapshot sees the same chunk; GC relocation keeps the id. */
	assert_int_equal(rod_vol_snapshot(s, "raw", "s", NULL), 0);
	fill(buf, 8 * G, 6);
	assert_int_equal(rod_vol_write(v, 0, buf, 8 * G, 0), 0); /* garbage for GC */
	assert_int_equal(rod_store_gc(s, true), 0);
	{
		struct rod_vol *sn;

		assert_int_equal(rod_vol_open(s, "raw.s", &sn), 0);
		assert_int_equal(rod_vol_read_raw(sn, 35 * G, &r2), 0);
		assert_true(r2.chunk_id == r.chunk_id);
		assert_int_equal(rod_vol_read(sn, 35 * G, back, G), 0);
		assert_int_equal(rod_grain_decompress(r2.comp, r2.data, r2.len, plain), 0);
		assert_memory_equal(plain, back, G);
		for (uint64_t g = 0; g < 40; g++) {
			assert_int_equal(rod_vol_read_raw(sn, g * G, &r2), 0);
			assert_int_equal(rod_vol_read(sn, g * G, back, G), 0);
			assert_int_equal(rod_grain_decompress(r2.comp, r2.data, r2.len, plain), 0);
			assert_memory_equal(plain, back, G);
		}
		rod_vol_close(sn);
	}
	/* Alignment and range. */
	assert_int_equal(rod_vol_read_raw(v, 512, &r), -EINVAL);
	assert_int_equal(rod_vol_read_raw(v, 4 * MiB, &r), -ERANGE);
	/* zstd helper: round trip, and 0 for incompressible data. */
	{
		uint8_t z[G];
		uint32_t zl = rod_grain_compress_zstd(buf + 0 * G, z);

		assert_int_equal(zl, 0);
		memset(plain, 'q', G);
		zl = rod_grain_compress_zstd(plain, z);
		assert_true(zl > 0 && zl < G);
		assert_int_equal(rod_grain_decompress(ROD_RAW_COMP_ZSTD, z, zl, back), 0);
		assert_memory_equal(back, plain, G);
		assert_int_equal(rod_grain_decompress(ROD_RAW_COMP_ZSTD, z, zl - 1, back), -EINVAL);
		assert_int_equal(rod_grain_decompress(ROD_RAW_COMP_NONE, z, 100, back), -EINVAL);
		assert_int_equal(rod_grain_decompress(9, z, zl, back), -EINVAL);
	}
	free(buf);
	rod_vol_close(v);
}

/* ---- write by fingerprint ---- */

static void test_write_fp(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "fpa", 4 * MiB), *w = stu_mkvol(s, "fpb", 4 * MiB);
	uint8_t buf[4 * G], back[G], fp[32], fp2[32];
	struct rod_space sp0, sp1;

	fill(buf, sizeof(buf), 9);
	assert_int_equal(rod_vol_write(v, 0, buf, sizeof(buf), 0), 0);
	assert_int_equal(rod_store_space(s, &sp0), 0);
	for (int i = 0; i < 4; i++) {
		rod_store_fingerprint(s, buf + i * G, fp);
		assert_int_equal(rod_vol_write_fp(w, (uint64_t)(10 + i) * G, fp, 0), 0);
		assert_int_equal(rod_vol_read(w, (uint64_t)(10 + i) * G, back, G), 0);
		assert_memory_equal(back, buf + i * G, G);
	}
	assert_int_equal(rod_store_space(s, &sp1), 0);
	assert_true(sp1.physical == sp0.physical);
	assert_true(sp1.logical == sp0.logical + 4 * G);
	/* Same bytes, same fingerprint; a different grain, a different one. */
	rod_store_fingerprint(s, buf, fp);
	rod_store_fingerprint(s, buf, fp2);
	assert_memory_equal(fp, fp2, 32);
	rod_store_fingerprint(s, buf + G, fp2);
	assert_memory_not_equal(fp, fp2, 32);
	/* Unknown fingerprint. */
	memset(fp2, 0x5a, sizeof(fp2));
	assert_int_equal(rod_vol_write_fp(w, 0, fp2, 0), -ENOENT);
	uint8_t other[G];
	fill(other, G, 12345);
	rod_store_fingerprint(s, other, fp2);
	assert_int_equal(rod_vol_write_fp(w, 0, fp2, 0), -ENOENT);
	/* Durable and shared: survives a restart, read_raw gives the same chunk. */
	{
		struct rod_grain_raw ra, rb;

		assert_int_equal(rod_vol_read_raw(v, 0, &ra), 0);
		assert_int_equal(rod_vol_read_raw(w, 10 * G, &rb), 0);
		assert_true(ra.chunk_id == rb.chunk_id);
	}
	rod_vol_close(v);
	rod_vol_close(w);
	rod_store_close(s);
	s = *state = open_store(false, false);
	assert_int_equal(rod_vol_open(s, "fpb", &w), 0);
	assert_int_equal(rod_vol_read(w, 11 * G, back, G), 0);
	assert_memory_equal(back, buf + G, G);
	/* Refusals: a snapshot, misalignment, past the end. */
	assert_int_equal(rod_vol_snapshot(s, "fpb", "s", NULL), 0);
	{
		struct rod_vol *sn;

		assert_int_equal(rod_vol_open(s, "fpb.s", &sn), 0);
		assert_int_equal(rod_vol_write_fp(sn, 0, fp, 0), -EROFS);
		rod_vol_close(sn);
	}
	assert_int_equal(rod_vol_write_fp(w, 512, fp, 0), -EINVAL);
	assert_int_equal(rod_vol_write_fp(w, 4 * MiB, fp, 0), -ERANGE);
	assert_int_equal(rod_vol_write_fp(w, 0, fp, ROD_IO_FUA), 0);
	/* A volume with dedupe switched off takes no dedupe hit. */
	assert_int_equal(rod_vol_set_reduction(s, "fpb", false, true), 0);
	assert_int_equal(rod_vol_write_fp(w, 0, fp, 0), -ENOENT);
	assert_int_equal(rod_vol_set_reduction(s, "fpb", true, true), 0);
	rod_vol_close(w);
	/* Dedupe switched off: the fingerprint table is not kept, nothing is found. */
	rod_store_close(s);
	s = *state = open_store(false, true);
	assert_int_equal(rod_vol_open(s, "fpb", &w), 0);
	assert_int_equal(rod_vol_write_fp(w, 0, fp, 0), -ENOENT);
	rod_vol_close(w);
}

/* write_fp racing GC passes: the chunks it references are dead (their grains were
 * overwritten), so a pass wants to delete their segments. Every write_fp that returns 0
 * must read back its data after the passes, another full pass and a restart. */
struct gc_loop {
	struct rod_store *s;
	volatile int stop;
	int passes;
};

static void *gc_thread(void *arg)
{
	struct gc_loop *g = arg;

	while (!g->stop) {
		assert_int_equal(rod_store_gc(g->s, true), 0);
		g->passes++;
	}
	return NULL;
}

static void test_write_fp_vs_gc(void **state)
{
	struct rod_store *s = *state;
	enum { N = 512 };
	struct rod_vol *a = stu_mkvol(s, "a", 4 * MiB), *b = stu_mkvol(s, "b", 4 * MiB);
	uint8_t *data = malloc(N * G), back[G], (*fps)[32] = malloc(N * 32);
	bool *ok = calloc(N, 1);
	struct gc_loop g = { .s = s };
	pthread_t th;
	int nok = 0;

	fill(data, N * G, 99);
	assert_int_equal(rod_vol_write(a, 0, data, N * G, 0), 0);
	for (int i = 0; i < N; i++)
		rod_store_fingerprint(s, data + (size_t)i * G, fps[i]);
	{
		uint8_t *other = malloc(N * G);

		fill(other, N * G, 100);
		assert_int_equal(rod_vol_write(a, 0, other, N * G, 0), 0); /* chunks now dead */
		free(other);
	}
	assert_int_equal(pthread_create(&th, NULL, gc_thread, &g), 0);
	for (int round = 0; round < 4; round++)
		for (int i = 0; i < N; i++) {
			int rc = rod_vol_write_fp(b, (uint64_t)i * G, fps[i], 0);

			assert_true(rc == 0 || rc == -ENOENT);
			if (!rc && !ok[i]) {
				ok[i] = true;
				nok++;
			}
		}
	g.stop = 1;
	pthread_join(th, NULL);
	print_message("write_fp vs GC: %d of %d grains referenced, %d GC passes\n", nok, N, g.passes);
	assert_int_equal(rod_store_gc(s, true), 0);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < N; i++) {
			if (!ok[i])
				continue;
			assert_int_equal(rod_vol_read(b, (uint64_t)i * G, back, G), 0);
			assert_memory_equal(back, data + (size_t)i * G, G);
		}
		if (pass == 0) {
			rod_vol_close(a);
			rod_vol_close(b);
			rod_store_close(s);
			s = *state = open_store(false, false);
			assert_int_equal(rod_vol_open(s, "a", &a), 0);
			assert_int_equal(rod_vol_open(s, "b", &b), 0);
		}
	}
	rod_vol_close(a);
	rod_vol_close(b);
	free(data);
	free(fps);
	free(ok);
}

/* ---- replica names ---- */

static void test_replica_names(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol_info info;

	assert_true(rod_replica_name_valid("arr1:db"));
	assert_false(rod_replica_name_valid("db"));
	assert_false(rod_replica_name_valid("a:b:c"));
	assert_false(rod_replica_name_valid(":db"));
	assert_false(rod_replica_name_valid("arr:"));
	assert_false(rod_replica_name_valid("arr:d.b"));
	assert_false(rod_name_valid("arr1:db"));
	assert_int_equal(rod_vol_create(s, "arr1:db", MiB, 512, &info), 0);
	assert_string_equal(info.name, "arr1:db");
	assert_int_equal(rod_vol_snapshot(s, "arr1:db", "r1", &info), 0);
	assert_string_equal(info.name, "arr1:db.r1");
	assert_int_equal(rod_vol_snapshot(s, "arr1:db", "x:y", NULL), -EINVAL);
	assert_int_equal(rod_vol_clone(s, "arr1:db.r1", "arr1:db2", NULL), 0);
	assert_int_equal(rod_vol_rename(s, "arr1:db2", "arr2:db2"), 0);
	assert_int_equal(rod_vol_info_get(s, "arr2:db2", &info), 0);
	assert_int_equal(rod_vol_rename(s, "arr2:db2", "plain"), 0);
	assert_int_equal(rod_vol_rename(s, "plain", "bad:na:me"), -EINVAL);
	assert_int_equal(rod_vol_create(s, "a:b:c", MiB, 512, NULL), -EINVAL);
	assert_int_equal(rod_vol_create(s, ":b", MiB, 512, NULL), -EINVAL);
	assert_int_equal(rod_vol_clone(s, "arr1:db", "x:", NULL), -EINVAL);
	/* Rename of a replica's snapshot keeps the "ARRAY:NAME." prefix. */
	assert_int_equal(rod_vol_rename(s, "arr1:db.r1", "arr1:db.r2"), 0);
	assert_int_equal(rod_vol_info_get(s, "arr1:db.r2", &info), 0);
	assert_true(info.is_snapshot);
	/* And they survive a restart. */
	rod_store_close(s);
	s = *state = open_store(false, false);
	assert_int_equal(rod_vol_info_get(s, "arr1:db.r2", &info), 0);
	assert_int_equal(rod_vol_info_get(s, "arr1:db", &info), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_diff_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_diff_cost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_diff_many_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_summaries_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_raw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_fp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_fp_vs_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_names, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
