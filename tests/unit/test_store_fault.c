/* Engine fault injection (lib/store/fault.c) and the array scrub, at the API level:
 * what a caller gets from each fault, that nothing acknowledged is lost across a
 * reopen, and what rod_store_scrub reports for a flipped bit. The iSCSI-level test of
 * the same points (sense codes) is tests/functional/test_faults.sh. */
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

#define MiB (1024ull * 1024)
#define G 4096u

static char tmpl[64];

static struct rod_store *open_store(bool create)
{
	return stu_open(tmpl, "fault-array", create, false);
}

static int setup(void **state)
{
	stu_mkdtemp(tmpl, sizeof(tmpl), "rodtest");
	*state = open_store(true);
	return 0;
}

static int teardown(void **state)
{
	rod_store_fault_set("off", NULL, 0);
	if (*state)
		rod_store_close(*state);
	stu_rmtree(tmpl, NULL);
	return 0;
}

static void check_grains(struct rod_vol *v, uint64_t g0, uint64_t n, uint32_t seed)
{
	uint8_t *want = malloc(n * G), *got = malloc(n * G);

	stu_fill(want, n * G, seed);
	assert_int_equal(rod_vol_read(v, g0 * G, got, n * G), 0);
	assert_memory_equal(want, got, n * G);
	free(want);
	free(got);
}

static void write_grains(struct rod_vol *v, uint64_t g0, uint64_t n, uint32_t seed, int expect)
{
	uint8_t *buf = malloc(n * G);

	stu_fill(buf, n * G, seed);
	assert_int_equal(rod_vol_write(v, g0 * G, buf, n * G, 0), expect);
	free(buf);
}

static void test_spec(void **state)
{
	char err[256], shown[512];

	(void)state;
	assert_int_equal(rod_store_fault_set("nonsense", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown fault point"));
	assert_int_equal(rod_store_fault_set("enospc:after=x", err, sizeof(err)), -EINVAL);
	assert_int_equal(rod_store_fault_set("enospc:grain=3", err, sizeof(err)), -EINVAL);
	assert_int_equal(rod_store_fault_set("enospc:after=2:count=0,bitflip:grain=7", err, sizeof(err)), 0);
	rod_store_fault_show(shown, sizeof(shown));
	assert_non_null(strstr(shown, "enospc:after=2:count=0:fired=0"));
	assert_non_null(strstr(shown, "bitflip:after=0:count=1:fired=0"));
	assert_int_equal(rod_store_fault_set("off", err, sizeof(err)), 0);
	rod_store_fault_show(shown, sizeof(shown));
	assert_string_equal(shown, "");
}

/* ENOSPC from the file system: the write fails, the store goes on. */
static void test_enospc(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "v", 16 * MiB);
	struct rod_store_stats st;

	write_grains(v, 0, 8, 1, 0);
	assert_int_equal(rod_store_fault_set("enospc", NULL, 0), 0);
	write_grains(v, 8, 4, 2, -ENOSPC);
	rod_store_stats(s, &st);
	assert_false(st.read_only);
	write_grains(v, 8, 4, 3, 0);
	check_grains(v, 0, 8, 1);
	check_grains(v, 8, 4, 3);
	rod_vol_close(v);
	rod_store_close(s);
	*state = s = open_store(false);
	assert_int_equal(rod_vol_open(s, "v", &v), 0);
	check_grains(v, 0, 8, 1);
	check_grains(v, 8, 4, 3);
	rod_vol_close(v);
}

/* A failed write, fdatasync or RocksDB batch: -EIO, then read-only (-EROFS) until the
 * store is reopened; everything acknowledged reads back, also after the reopen. */
static void one_failure(struct rod_store **sp, const char *point, uint64_t g0)
{
	struct rod_store *s = *sp;
	struct rod_vol *v;
	struct rod_store_stats st;

	assert_int_equal(rod_vol_open(s, "v", &v), 0);
	write_grains(v, g0, 4, (uint32_t)g0, 0);
	assert_int_equal(rod_store_fault_set(point, NULL, 0), 0);
	write_grains(v, g0 + 4, 4, 99, -EIO);
	write_grains(v, g0 + 8, 4, 98, -EROFS);
	assert_int_equal(rod_vol_create(s, "new", MiB, 512, NULL), -EROFS);
	rod_store_stats(s, &st);
	assert_true(st.read_only);
	check_grains(v, g0, 4, (uint32_t)g0);
	(void)rod_store_flush(s); /* -EIO when something was unsynced (never fdatasync again); returns */
	rod_vol_close(v);
	rod_store_close(s);
	*sp = s = open_store(false);
	rod_store_stats(s, &st);
	assert_false(st.read_only);
	assert_int_equal(rod_vol_open(s, "v", &v), 0);
	check_grains(v, g0, 4, (uint32_t)g0);
	write_grains(v, g0 + 8, 4, 97, 0);
	check_grains(v, g0 + 8, 4, 97);
	rod_vol_close(v);
}

static void test_failures(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "v", 16 * MiB);

	rod_vol_close(v);
	one_failure((struct rod_store **)state, "segment_pwrite_fail", 0);
	one_failure((struct rod_store **)state, "segment_pwrite_short", 16);
	one_failure((struct rod_store **)state, "fdatasync_fail", 32);
	one_failure((struct rod_store **)state, "rocksdb_write_fail", 48);
	s = *state;
	assert_int_equal(rod_vol_open(s, "v", &v), 0);
	for (uint64_t g = 0; g < 64; g += 16)
		check_grains(v, g, 4, (uint32_t)g);
	rod_vol_close(v);
}

struct damage {
	int n;
	uint64_t chunk, lba[4];
	char view[4][64];
};

static int on_damage(void *arg, const struct rod_scrub_damage *d)
{
	struct damage *dm = arg;

	assert_int_equal(d->error, -EBADMSG);
	if (dm->n < 4) {
		dm->lba[dm->n] = d->lba;
		snprintf(dm->view[dm->n], sizeof(dm->view[0]), "%s", d->view);
	}
	dm->chunk = d->chunk_id;
	dm->n++;
	return 0;
}

/* A flipped bit: that grain fails (-EBADMSG), its neighbours read; scrub names the
 * chunk, the volume and its snapshot at the grain's LBA. */
static void test_bitflip_scrub(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "v", 16 * MiB);
	struct rod_scrub_stats st;
	struct damage dm = { 0 };
	uint8_t buf[G];

	assert_int_equal(rod_store_fault_set("bitflip:grain=5", NULL, 0), 0);
	write_grains(v, 0, 16, 7, 0);
	assert_int_equal(rod_vol_read(v, 5 * G, buf, G), -EBADMSG);
	assert_int_equal(rod_vol_read(v, 5 * G + 512, buf, 512), -EBADMSG);
	check_grains(v, 0, 5, 7);
	{
		uint8_t *want = malloc(16 * G);

		stu_fill(want, 16 * G, 7);
		assert_int_equal(rod_vol_read(v, 6 * G, buf, G), 0);
		assert_memory_equal(buf, want + 6 * G, G);
		free(want);
	}
	assert_int_equal(rod_vol_snapshot(s, "v", "s1", NULL), 0);
	assert_int_equal(rod_store_scrub(s, NULL, on_damage, &dm, &st), 0);
	assert_int_equal(st.chunks_damaged, 1);
	assert_int_equal(st.refs_damaged, 2);
	assert_int_equal(dm.n, 2);
	assert_int_equal(dm.lba[0], 5 * 8);
	assert_int_equal(dm.lba[1], 5 * 8);
	assert_true((!strcmp(dm.view[0], "v") && !strcmp(dm.view[1], "v.s1")) ||
		    (!strcmp(dm.view[1], "v") && !strcmp(dm.view[0], "v.s1")));
	assert_true(st.chunks_checked >= 16);
	/* rewriting the grain heals the volume; the snapshot keeps the damaged chunk */
	write_grains(v, 5, 1, 8, 0);
	check_grains(v, 5, 1, 8);
	memset(&dm, 0, sizeof(dm));
	assert_int_equal(rod_store_scrub(s, NULL, on_damage, &dm, &st), 0);
	assert_int_equal(st.refs_damaged, 1);
	assert_string_equal(dm.view[0], "v.s1");
	rod_vol_close(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec),
		cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bitflip_scrub, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
