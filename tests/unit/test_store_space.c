/* Storage engine, full store: a refused operation changes nothing; background garbage
 * collection gives way to volume I/O. */
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

#include "store_test_util.h"

#include "rod/store.h"
#include "../../lib/store/gc.h"

#define MiB (1024ull * 1024)

static char tmpl[64];

/* Incompressible, never repeating data (the store compresses and dedupes). */
static void fill(void *buf, size_t len, uint32_t seed)
{
	uint64_t *p = buf, x = 0x9e3779b97f4a7c15ull * (seed + 1);

	for (size_t i = 0; i < len / 8; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		p[i] = z ^ (z >> 31);
	}
}

static int setup(void **state)
{
	struct rod_store_opts o = { .dir = tmpl, .create = true, .array_name = "space",
				    .capacity_bytes = 160 * MiB, .reserve_bytes = 16 * MiB,
				    .no_gc_thread = true };
	struct rod_store *s;

	stu_mkdtemp(tmpl, sizeof(tmpl), "rodspace");
	assert_int_equal(rod_store_open(&o, &s), 0);
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	rod_store_close(*state);
	stu_rmtree(tmpl, NULL);
	return 0;
}

/* A copy from a source behind a chain of clones deeper than the hard limit must move
 * data; when the store is full it is refused before it touches the destination (the
 * destination keeps its data and its mapped state, holes of the source included). */
static void test_refused_deep_copy_changes_nothing(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v, *d, *fillv;
	uint8_t *a = malloc(MiB), *b = malloc(MiB), *r = malloc(MiB);
	char prev[32] = "c0", name[32];
	int rc = 0;

	fill(a, MiB, 1);
	fill(b, MiB, 2);
	/* c0: a hole first (a data copy would unmap it), data in its second MiB */
	assert_int_equal(rod_vol_create(s, "c0", 2 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "c0", &v), 0);
	assert_int_equal(rod_vol_write(v, MiB, a, 512 * 1024, 0), 0);
	rod_vol_close(v);
	/* clones of clones, each with a write inside so no hop can be skipped */
	for (int i = 1; i <= 16; i++) { /* c16 reads through 16 range entries */
		snprintf(name, sizeof(name), "c%d", i);
		assert_int_equal(rod_vol_clone(s, prev, name, NULL), 0);
		assert_int_equal(rod_vol_open(s, name, &v), 0);
		assert_int_equal(rod_vol_write(v, MiB + 4096 * (uint64_t)i, a + 4096 * i, 4096, 0), 0);
		rod_vol_close(v);
		snprintf(prev, sizeof(prev), "%s", name);
	}
	/* the destination is written all over */
	assert_int_equal(rod_vol_create(s, "dst", 2 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "dst", &d), 0);
	assert_int_equal(rod_vol_write(d, 0, b, MiB, 0), 0);
	assert_int_equal(rod_vol_write(d, MiB, b, MiB, 0), 0);
	/* fill the store */
	assert_int_equal(rod_vol_create(s, "filler", 512 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "filler", &fillv), 0);
	for (uint64_t off = 0; off < 512 * MiB && !rc; off += MiB) {
		fill(r, MiB, (uint32_t)(off >> 20) + 1000);
		rc = rod_vol_write(fillv, off, r, MiB, 0);
	}
	assert_int_equal(rc, -ENOSPC);
	/* the copy is refused and the destination is untouched */
	assert_int_equal(rod_vol_open(s, prev, &v), 0);
	assert_int_equal(rod_vol_copy(v, 0, d, 0, 2 * MiB), -ENOSPC);
	for (uint64_t off = 0; off < 2 * MiB; off += MiB) {
		bool mapped;
		uint64_t len;

		assert_int_equal(rod_vol_read(d, off, r, MiB), 0);
		assert_memory_equal(r, b, MiB);
		assert_int_equal(rod_vol_lba_status(d, off, MiB, &mapped, &len), 0);
		assert_true(mapped);
		assert_int_equal(len, MiB);
	}
	/* a refused write changes nothing either */
	assert_int_equal(rod_vol_write(d, 4096, a, 8192, 0), -ENOSPC);
	assert_int_equal(rod_vol_read(d, 0, r, MiB), 0);
	assert_memory_equal(r, b, MiB);
	/* freeing space makes the copy possible again, with the source's content */
	assert_int_equal(rod_vol_unmap(fillv, 0, 512 * MiB), 0);
	assert_int_equal(rod_store_gc(s, false), 0);
	assert_int_equal(rod_vol_copy(v, 0, d, 0, 2 * MiB), 0);
	assert_int_equal(rod_vol_read(d, 0, r, MiB), 0);
	assert_int_equal(rod_vol_read(v, 0, b, MiB), 0);
	assert_memory_equal(r, b, MiB);
	rod_vol_close(v);
	rod_vol_close(d);
	rod_vol_close(fillv);
	free(a);
	free(b);
	free(r);
}

/* A background pass (space not short) gives way to volume I/O: it waits for 2 s
 * without I/O, but not more than 60 s after it became due. */
static void test_background_gc_defers_to_io(void **state)
{
	const uint64_t S = 1000000000ull;
	uint64_t due = 0;

	(void)state;
	/* no I/O ever, or none for 2 s: run now */
	assert_false(gc_defer(100 * S, 0, &due));
	assert_int_equal(due, 0);
	assert_false(gc_defer(100 * S, 98 * S, &due));
	/* I/O 1 s ago: wait, from now on */
	assert_true(gc_defer(100 * S, 99 * S, &due));
	assert_int_equal(due, 100 * S);
	/* I/O keeps coming: still waiting 59 s later, the due time unchanged */
	assert_true(gc_defer(159 * S, 159 * S - 1000, &due));
	assert_int_equal(due, 100 * S);
	/* 60 s after it became due it runs anyway (paced), and the wait starts over */
	assert_false(gc_defer(160 * S, 160 * S - 1000, &due));
	assert_int_equal(due, 0);
	/* the I/O stops: a pass due meanwhile runs once it has been quiet for 2 s */
	assert_true(gc_defer(170 * S, 169 * S, &due));
	assert_false(gc_defer(171 * S, 169 * S, &due));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_refused_deep_copy_changes_nothing, setup, teardown),
		cmocka_unit_test(test_background_gc_defers_to_io),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
