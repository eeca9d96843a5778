/* Storage engine: volumes, I/O, snapshots, clones, copies, persistence. */
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

#define MiB (1024ull * 1024)

static char tmpl[64];

static struct rod_store *open_store(bool create)
{
	return stu_open(tmpl, "test-array", create, false);
}

static int setup(void **state)
{
	stu_mkdtemp(tmpl, sizeof(tmpl), "rodtest");
	*state = open_store(true);
	return 0;
}

static int teardown(void **state)
{
	rod_store_close(*state);
	stu_rmtree(tmpl, NULL);
	return 0;
}

static void test_identity_and_thin(void **state)
{
	struct rod_store *s = *state;
	const struct rod_array_identity *id = rod_store_identity(s);
	struct rod_vol *v = stu_mkvol(s, "thin", 16 * MiB);
	uint8_t buf[8192], zero[8192] = { 0 };
	bool mapped;
	uint64_t len;

	assert_string_equal(id->name, "test-array");
	assert_int_equal(id->format_version, 2);
	assert_int_equal(rod_vol_read(v, 4096, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, zero, sizeof(buf));
	assert_int_equal(rod_vol_lba_status(v, 0, 16 * MiB, &mapped, &len), 0);
	assert_false(mapped);
	assert_int_equal(len, 16 * MiB);
	assert_int_equal(rod_vol_read(v, 16 * MiB - 512, buf, 1024), -ERANGE);
	assert_int_equal(rod_vol_read(v, 100, buf, 512), -EINVAL);
	rod_vol_close(v);
	assert_int_equal(rod_vol_create(s, "thin", MiB, 512, NULL), -EEXIST);
	assert_int_equal(rod_vol_create(s, "bad.name", MiB, 512, NULL), -EINVAL);
	assert_int_equal(rod_vol_create(s, "odd", MiB + 512, 4096, NULL), -EINVAL);
}

static void test_write_read_subgrain(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "v1", 16 * MiB);
	uint8_t *a = malloc(MiB), *b = malloc(MiB), *r = malloc(MiB);

	stu_fill(a, MiB, 1);
	assert_int_equal(rod_vol_write(v, 0, a, MiB, 0), 0);
	assert_int_equal(rod_vol_read(v, 0, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	/* 512-byte write in the middle of a grain keeps its neighbours */
	stu_fill(b, 512, 2);
	assert_int_equal(rod_vol_write(v, 4096 + 1024, b, 512, 0), 0);
	memcpy(a + 4096 + 1024, b, 512);
	assert_int_equal(rod_vol_read(v, 0, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	/* unaligned read */
	assert_int_equal(rod_vol_read(v, 512, r, 7 * 512), 0);
	assert_memory_equal(a + 512, r, 7 * 512);
	bool mapped;
	uint64_t len;
	assert_int_equal(rod_vol_lba_status(v, 0, 4 * MiB, &mapped, &len), 0);
	assert_true(mapped);
	assert_int_equal(len, MiB);
	assert_int_equal(rod_vol_lba_status(v, MiB, 4 * MiB, &mapped, &len), 0);
	assert_false(mapped);
	assert_int_equal(len, 4 * MiB);
	rod_vol_close(v);
	free(a);
	free(b);
	free(r);
}

static void test_zero_unmap(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "z", 16 * MiB);
	uint8_t *a = malloc(8 * MiB), *r = malloc(8 * MiB);
	bool mapped;
	uint64_t len;

	stu_fill(a, 8 * MiB, 3);
	assert_int_equal(rod_vol_write(v, 0, a, 8 * MiB, 0), 0);
	/* small unaligned zero */
	assert_int_equal(rod_vol_zero(v, 1024, 10240), 0);
	memset(a + 1024, 0, 10240);
	/* large unmap (range entry) with unaligned edges */
	assert_int_equal(rod_vol_unmap(v, 2 * MiB + 512, 3 * MiB), 0);
	memset(a + 2 * MiB + 512, 0, 3 * MiB);
	assert_int_equal(rod_vol_read(v, 0, r, 8 * MiB), 0);
	assert_memory_equal(a, r, 8 * MiB);
	assert_int_equal(rod_vol_lba_status(v, 2 * MiB + 4096, 16 * MiB, &mapped, &len), 0);
	assert_false(mapped);
	assert_int_equal(len, 3 * MiB - 4096);
	/* zero keeps the range mapped */
	assert_int_equal(rod_vol_zero(v, 8 * MiB, 4 * MiB), 0);
	assert_int_equal(rod_vol_lba_status(v, 8 * MiB, 4 * MiB, &mapped, &len), 0);
	assert_true(mapped);
	assert_int_equal(len, 4 * MiB);
	rod_vol_close(v);
	free(a);
	free(r);
}

static void test_snapshot_clone_revert(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "db", 8 * MiB), *sn, *cl;
	uint8_t *a = malloc(MiB), *b = malloc(MiB), *r = malloc(MiB);
	struct rod_vol_info info;

	stu_fill(a, MiB, 4);
	stu_fill(b, MiB, 5);
	assert_int_equal(rod_vol_write(v, 0, a, MiB, 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "db", "s1", &info), 0);
	assert_string_equal(info.name, "db.s1");
	assert_true(info.is_snapshot);
	assert_int_equal(rod_vol_write(v, 0, b, MiB, 0), 0);
	assert_int_equal(rod_vol_open(s, "db.s1", &sn), 0);
	assert_int_equal(rod_vol_read(sn, 0, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	assert_int_equal(rod_vol_write(sn, 0, b, 4096, 0), -EROFS);
	assert_int_equal(rod_vol_clone(s, "db.s1", "dbc", NULL), 0);
	assert_int_equal(rod_vol_open(s, "dbc", &cl), 0);
	assert_int_equal(rod_vol_read(cl, 0, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	assert_int_equal(rod_vol_write(cl, 4096, b, 4096, 0), 0);
	assert_int_equal(rod_vol_read(sn, 4096, r, 4096), 0);
	assert_memory_equal(a + 4096, r, 4096);
	assert_int_equal(rod_vol_revert(s, "db", "db.s1"), 0);
	assert_int_equal(rod_vol_read(v, 0, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	rod_vol_close(cl);
	rod_vol_close(sn);
	rod_vol_close(v);
	free(a);
	free(b);
	free(r);
}

static void test_copy(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "src", 16 * MiB), *d = stu_mkvol(s, "dst", 16 * MiB);
	uint8_t *a = malloc(16 * MiB), *e = malloc(16 * MiB), *r = malloc(16 * MiB);

	stu_fill(a, 16 * MiB, 6);
	assert_int_equal(rod_vol_write(v, 0, a, 16 * MiB, 0), 0);
	/* aligned, adjacent 1 MiB copies merge */
	memset(e, 0, 16 * MiB);
	for (int i = 0; i < 4; i++)
		assert_int_equal(rod_vol_copy(v, i * MiB, d, 4 * MiB + i * MiB, MiB), 0);
	memcpy(e + 4 * MiB, a, 4 * MiB);
	/* same grain phase, unaligned edges */
	assert_int_equal(rod_vol_copy(v, 512, d, 512 + 8 * MiB, 2 * MiB), 0);
	memcpy(e + 8 * MiB + 512, a + 512, 2 * MiB);
	/* different phase: data copy */
	assert_int_equal(rod_vol_copy(v, 1024, d, 12 * MiB + 512, 64 * 1024), 0);
	memcpy(e + 12 * MiB + 512, a + 1024, 64 * 1024);
	assert_int_equal(rod_vol_read(d, 0, r, 16 * MiB), 0);
	assert_memory_equal(e, r, 16 * MiB);
	/* source changes afterwards do not show in the copy */
	assert_int_equal(rod_vol_write(v, 0, e, MiB, 0), 0);
	assert_int_equal(rod_vol_read(d, 4 * MiB, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	/* overlapping same-volume copy reads the pre-copy state */
	assert_int_equal(rod_vol_read(v, 0, a, 16 * MiB), 0);
	assert_int_equal(rod_vol_copy(v, 0, v, MiB + 4096, 4 * MiB), 0);
	memmove(a + MiB + 4096, a, 4 * MiB);
	assert_int_equal(rod_vol_read(v, 0, r, 16 * MiB), 0);
	assert_memory_equal(a, r, 16 * MiB);
	rod_vol_close(v);
	rod_vol_close(d);
	free(a);
	free(e);
	free(r);
}

static void test_caw(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "caw", MiB);
	uint8_t buf[1024], r[512];
	struct rod_io io = { .op = ROD_IO_CAW, .vol = v, .off = 512, .len = 512, .buf = buf };

	memset(buf, 0, 512);
	memset(buf + 512, 0xab, 512);
	assert_int_equal(rod_io_run(&io), 0);
	assert_int_equal(rod_vol_read(v, 512, r, 512), 0);
	assert_memory_equal(r, buf + 512, 512);
	/* second time the compare fails at byte 0 */
	assert_int_equal(rod_io_run(&io), -EILSEQ);
	assert_int_equal(io.miscompare_off, 0);
	rod_vol_close(v);
}

static int kv_count(void *arg, const char *key, const void *val, size_t len)
{
	(void)key; (void)val; (void)len;
	(*(int *)arg)++;
	return 0;
}

static void test_persist_and_lifecycle(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "p", 4 * MiB);
	uint8_t *a = malloc(MiB), *r = malloc(MiB);
	void *val;
	size_t len;
	int n = 0;

	stu_fill(a, MiB, 7);
	assert_int_equal(rod_vol_write(v, MiB, a, MiB, 0), 0);
	rod_vol_close(v);
	assert_int_equal(rod_store_meta_put(s, "host/a", "x", 1), 0);
	assert_int_equal(rod_store_meta_put(s, "host/b", "yy", 2), 0);
	assert_int_equal(rod_store_meta_put(s, "lun/1", "z", 1), 0);
	assert_int_equal(rod_vol_snapshot(s, "p", "daily", NULL), 0);
	assert_int_equal(rod_vol_rename(s, "p", "q"), 0);
	rod_store_close(s);
	s = open_store(false);
	*state = s;
	assert_int_equal(rod_vol_open(s, "q", &v), 0);
	assert_int_equal(rod_vol_read(v, MiB, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	rod_vol_close(v);
	assert_int_equal(rod_vol_open(s, "q.daily", &v), 0);
	assert_int_equal(rod_vol_read(v, MiB, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	rod_vol_close(v);
	assert_int_equal(rod_store_meta_get(s, "host/b", &val, &len), 0);
	assert_int_equal(len, 2);
	free(val);
	assert_int_equal(rod_store_meta_scan(s, "host/", kv_count, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(rod_store_meta_del(s, "host/a"), 0);
	assert_int_equal(rod_store_meta_get(s, "host/a", &val, &len), -ENOENT);
	/* resize: shrink drops data, grow reads zeros */
	assert_int_equal(rod_vol_resize(s, "q", MiB + 512), 0);
	assert_int_equal(rod_vol_resize(s, "q", 4 * MiB), 0);
	assert_int_equal(rod_vol_open(s, "q", &v), 0);
	assert_int_equal(rod_vol_size(v), 4 * MiB);
	assert_int_equal(rod_vol_read(v, MiB, r, MiB), 0);
	assert_memory_equal(a, r, 512);
	for (size_t i = 512; i < MiB; i++)
		if (r[i])
			fail_msg("byte %zu not zero after shrink+grow", i);
	/* destroy: I/O fails, recover brings it back, eradicate drops it */
	assert_int_equal(rod_vol_destroy(s, "q"), 0);
	assert_int_equal(rod_vol_read(v, 0, r, 512), -ENOENT);
	assert_int_equal(rod_vol_open(s, "q", &v), -ENOENT);
	assert_int_equal(rod_vol_recover(s, "q"), 0);
	assert_int_equal(rod_vol_read(v, MiB, r, 512), 0);
	rod_vol_close(v);
	assert_int_equal(rod_vol_eradicate(s, "q"), -EBUSY);
	assert_int_equal(rod_vol_destroy(s, "q"), 0);
	assert_int_equal(rod_vol_eradicate(s, "q"), 0);
	assert_int_equal(rod_vol_info_get(s, "q", &(struct rod_vol_info){ 0 }), -ENOENT);
	assert_int_equal(rod_vol_open(s, "q.daily", &v), 0);
	assert_int_equal(rod_vol_read(v, MiB, r, MiB), 0);
	assert_memory_equal(a, r, MiB);
	rod_vol_close(v);
	free(a);
	free(r);
}

static void test_pin(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "pv", 4 * MiB), *p;
	uint8_t a[8192], b[8192], r[8192];

	stu_fill(a, sizeof(a), 8);
	stu_fill(b, sizeof(b), 9);
	assert_int_equal(rod_vol_write(v, 0, a, sizeof(a), 0), 0);
	assert_int_equal(rod_vol_pin(v, &p), 0);
	assert_int_equal(rod_vol_write(v, 0, b, sizeof(b), 0), 0);
	assert_int_equal(rod_vol_read(p, 0, r, sizeof(r)), 0);
	assert_memory_equal(a, r, sizeof(a));
	assert_int_equal(rod_vol_write(p, 0, b, 512, 0), -EROFS);
	rod_vol_close(p);
	rod_vol_close(v);
}

static void test_gc_reclaims(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "g", 64 * MiB);
	uint8_t *a = malloc(4 * MiB), *r = malloc(4 * MiB);
	struct rod_space sp0, sp1;
	struct rod_store_stats st;

	for (int i = 0; i < 8; i++) {
		stu_fill(a, 4 * MiB, 100 + i);
		assert_int_equal(rod_vol_write(v, 0, a, 4 * MiB, 0), 0);
	}
	assert_int_equal(rod_vol_write(v, 32 * MiB, a, 4 * MiB, 0), 0);
	assert_int_equal(rod_store_space(s, &sp0), 0);
	assert_int_equal(sp0.logical, 8 * MiB);
	/* The copy at 32 MiB is the same data: deduplicated, stored once. */
	assert_int_equal(sp0.physical, 4 * MiB);
	assert_true(sp0.reduction > 1.99 && sp0.reduction < 2.01);
	assert_true(sp0.used >= 32 * MiB);
	assert_int_equal(rod_store_gc(s, false), 0);
	assert_int_equal(rod_store_space(s, &sp1), 0);
	assert_true(sp1.used < sp0.used);
	assert_int_equal(rod_vol_read(v, 0, r, 4 * MiB), 0);
	assert_memory_equal(a, r, 4 * MiB);
	/* full pass relocates everything still live */
	assert_int_equal(rod_store_gc(s, true), 0);
	assert_int_equal(rod_vol_read(v, 32 * MiB, r, 4 * MiB), 0);
	assert_memory_equal(a, r, 4 * MiB);
	rod_vol_close(v);
	/* eradicated volumes' space comes back */
	assert_int_equal(rod_vol_destroy(s, "g"), 0);
	assert_int_equal(rod_vol_eradicate(s, "g"), 0);
	assert_int_equal(rod_store_gc(s, false), 0);
	assert_int_equal(rod_store_space(s, &sp1), 0);
	assert_int_equal(sp1.physical, 0);
	assert_true(sp1.used < 4 * MiB);
	rod_store_stats(s, &st);
	assert_true(st.gc_segments_freed > 0);
	free(a);
	free(r);
}

/* Chunks moved by GC again and again read back right: a place the map cache
 * remembers (mapcache.h) is gone after the next pass, and the read asks the chunk table. */
static void test_read_after_repeated_moves(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "m", 16 * MiB);
	uint8_t *a = malloc(4 * MiB), *b = malloc(MiB), *r = malloc(4 * MiB);

	stu_fill(a, 4 * MiB, 7);
	assert_int_equal(rod_vol_write(v, 0, a, 4 * MiB, 0), 0);
	for (int round = 0; round < 4; round++) {
		/* other data comes and goes, so each pass has a segment to free */
		stu_fill(b, MiB, 1000 + round);
		assert_int_equal(rod_vol_write(v, 8 * MiB, b, MiB, 0), 0);
		assert_int_equal(rod_store_gc(s, true), 0);
		memset(r, 0, 4 * MiB);
		assert_int_equal(rod_vol_read(v, 0, r, 4 * MiB), 0);
		assert_memory_equal(a, r, 4 * MiB);
		assert_int_equal(rod_vol_read(v, 8 * MiB, r, MiB), 0);
		assert_memory_equal(b, r, MiB);
	}
	rod_vol_close(v);
	free(a);
	free(b);
	free(r);
}

static void test_full_disk(void **state)
{
	struct rod_store *s = *state;
	struct rod_store_opts o = { .dir = tmpl, .capacity_bytes = 96 * MiB,
				    .reserve_bytes = 16 * MiB, .no_gc_thread = true };
	struct rod_vol *v;
	uint8_t *a = malloc(4 * MiB);
	int rc = 0;
	uint64_t written = 0;

	rod_store_close(s);
	assert_int_equal(rod_store_open(&o, &s), 0);
	*state = s;
	v = stu_mkvol(s, "full", 512 * MiB);
	while (written < 256 * MiB) {
		stu_fill(a, 4 * MiB, (uint32_t)written);
		rc = rod_vol_write(v, written, a, 4 * MiB, 0);
		if (rc)
			break;
		written += 4 * MiB;
	}
	assert_int_equal(rc, -ENOSPC);
	assert_true(written >= 64 * MiB);
	/* reads, unmap and GC still work and give space back */
	assert_int_equal(rod_vol_read(v, 0, a, 4 * MiB), 0);
	assert_int_equal(rod_vol_unmap(v, 0, written), 0);
	assert_int_equal(rod_store_gc(s, false), 0);
	stu_fill(a, 4 * MiB, 77);
	assert_int_equal(rod_vol_write(v, 0, a, 4 * MiB, 0), 0);
	rod_vol_close(v);
	free(a);
}

static void test_unknown_version(void **state)
{
	struct rod_store *s = *state;
	char path[128];
	FILE *f;
	struct rod_store_opts o = { .dir = tmpl };
	uint8_t ver[4] = { 0, 0, 0, 99 };

	rod_store_close(s);
	snprintf(path, sizeof(path), "%s/superblock", tmpl);
	f = fopen(path, "r+b");
	assert_non_null(f);
	fseek(f, 8, SEEK_SET);
	fwrite(ver, 1, 4, f);
	fclose(f);
	assert_int_equal(rod_store_open(&o, &s), -EPROTO);
	/* put it back so teardown can close something */
	ver[3] = 2; /* ROD_FORMAT_VERSION */
	f = fopen(path, "r+b");
	fseek(f, 8, SEEK_SET);
	fwrite(ver, 1, 4, f);
	fclose(f);
	*state = open_store(false);
}

static void test_rebuild_metadata(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "rb", 32 * MiB), *c;
	uint8_t *a = malloc(4 * MiB), *b = malloc(4 * MiB), *r = malloc(4 * MiB);
	void *val;
	size_t len;
	uint64_t n = 0;

	stu_fill(a, 4 * MiB, 11);
	stu_fill(b, 4 * MiB, 12);
	assert_int_equal(rod_store_meta_put(s, "conf/x", "hello", 5), 0);
	assert_int_equal(rod_vol_write(v, 0, a, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "rb", "s1", NULL), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(rod_vol_write(v, 8 * MiB, b, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_clone(s, "rb.s1", "rbc", NULL), 0);
	assert_int_equal(rod_vol_copy(v, 8 * MiB, v, 16 * MiB, 4 * MiB), 0);
	rod_vol_close(v);
	/* GC frees the first segments (relocating live data, relogging metadata). */
	assert_int_equal(rod_store_gc(s, true), 0);
	rod_store_close(s);
	*state = NULL;
	assert_int_equal(rod_store_rebuild_metadata(tmpl, &n), 0);
	assert_true(n > 0);
	s = open_store(false);
	*state = s;
	assert_int_equal(rod_vol_open(s, "rb", &v), 0);
	assert_int_equal(rod_vol_read(v, 0, r, 4 * MiB), 0);
	assert_memory_equal(a, r, 4 * MiB);
	assert_int_equal(rod_vol_read(v, 8 * MiB, r, 4 * MiB), 0);
	assert_memory_equal(b, r, 4 * MiB);
	assert_int_equal(rod_vol_read(v, 16 * MiB, r, 4 * MiB), 0);
	assert_memory_equal(b, r, 4 * MiB);
	rod_vol_close(v);
	assert_int_equal(rod_vol_open(s, "rbc", &c), 0);
	assert_int_equal(rod_vol_read(c, 0, r, 4 * MiB), 0);
	assert_memory_equal(a, r, 4 * MiB);
	rod_vol_close(c);
	assert_int_equal(rod_vol_open(s, "rb.s1", &c), 0);
	assert_int_equal(rod_vol_read(c, 8 * MiB, r, 4 * MiB), 0);
	for (size_t i = 0; i < 4 * MiB; i++)
		if (r[i])
			fail_msg("snapshot byte %zu not zero", i);
	rod_vol_close(c);
	assert_int_equal(rod_store_meta_get(s, "conf/x", &val, &len), 0);
	assert_int_equal(len, 5);
	free(val);
	free(a);
	free(b);
	free(r);
}

static void test_space_snapshots(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "sp", 16 * MiB), *sn;
	uint8_t *a = malloc(4 * MiB), *b = malloc(2 * MiB), *r = malloc(4 * MiB);
	struct rod_space sp;

	stu_fill(a, 4 * MiB, 21);
	stu_fill(b, 2 * MiB, 22);
	assert_int_equal(rod_vol_write(v, 0, a, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_snapshot(s, "sp", "before", NULL), 0);
	assert_int_equal(rod_vol_write(v, 0, b, 2 * MiB, 0), 0);
	assert_int_equal(rod_store_space(s, &sp), 0);
	assert_int_equal(sp.provisioned, 16 * MiB);
	assert_int_equal(sp.logical, 4 * MiB);
	assert_int_equal(sp.physical, 6 * MiB);
	assert_int_equal(sp.snapshots, 2 * MiB);
	assert_int_equal(sp.shared, 2 * MiB);
	/* GC keeps what only the snapshot references */
	assert_int_equal(rod_store_gc(s, true), 0);
	assert_int_equal(rod_vol_open(s, "sp.before", &sn), 0);
	assert_int_equal(rod_vol_read(sn, 0, r, 4 * MiB), 0);
	assert_memory_equal(a, r, 4 * MiB);
	rod_vol_close(sn);
	assert_int_equal(rod_vol_clone(s, "sp", "spc", NULL), 0);
	assert_int_equal(rod_vol_space(s, "spc", &sp), 0);
	assert_int_equal(sp.logical, 4 * MiB);
	assert_int_equal(sp.physical, 0); /* shares everything with its source */
	assert_int_equal(rod_vol_destroy(s, "sp.before"), 0);
	assert_int_equal(rod_vol_eradicate(s, "sp.before"), 0);
	assert_int_equal(rod_store_gc(s, true), 0);
	assert_int_equal(rod_store_space(s, &sp), 0);
	assert_int_equal(sp.physical, 4 * MiB);
	assert_int_equal(sp.snapshots, 0);
	assert_int_equal(rod_vol_read(v, 0, r, 4 * MiB), 0);
	assert_memory_equal(b, r, 2 * MiB);
	assert_memory_equal(a + 2 * MiB, r + 2 * MiB, 2 * MiB);
	rod_vol_close(v);
	free(a);
	free(b);
	free(r);
}

struct cw {
	struct rod_store *s;
	struct rod_vol *v;
	uint64_t base, len;
	uint32_t seed;
	volatile int *stop;
	int errors;
	/* mix: grain-aligned writes of zeros, of a few repeated patterns (dedupe) and of
	 * new data, so GC has map entries without data to relog; the model is kept */
	bool mix;
	uint8_t *model;
};

/* Writer with read-back checks of its own region while GC runs. */
static void *cw_main(void *arg)
{
	struct cw *w = arg;
	uint8_t *model = calloc(1, w->len), *buf = malloc(256 * 1024), *rb = malloc(256 * 1024);
	uint32_t x = w->seed;

	while (!*w->stop && !w->errors) {
		x = x * 1103515245u + 12345u;
		uint64_t len = 512 * (1 + (x >> 8) % 128);
		x = x * 1103515245u + 12345u;
		uint64_t off = 512 * ((x >> 4) % ((w->len - len) / 512));

		if (w->mix) {
			len = 4096 * (1 + (x >> 8) % 8);
			off = 4096 * ((x >> 4) % ((w->len - len) / 4096));
			if ((x >> 20) % 3 == 0)
				memset(buf, 0, len);
			else if ((x >> 20) % 3 == 1)
				for (uint64_t g = 0; g < len; g += 4096)
					stu_fill(buf + g, 4096, 7 + (x >> 24) % 4);
			else
				stu_fill(buf, len, x);
		} else {
			stu_fill(buf, len, x);
		}
		if (rod_vol_write(w->v, w->base + off, buf, len, 0)) {
			w->errors++;
			break;
		}
		memcpy(model + off, buf, len);
		x = x * 1103515245u + 12345u;
		off = 512 * ((x >> 4) % ((w->len - 256 * 1024) / 512));
		if (rod_vol_read(w->v, w->base + off, rb, 256 * 1024) ||
		    memcmp(rb, model + off, 256 * 1024))
			w->errors++;
	}
	if (w->mix)
		w->model = model;
	else
		free(model);
	free(buf);
	free(rb);
	return NULL;
}

/* Two writers on v, each on its own 4 MiB (seeds seed, seed + 1). */
static void cw_start(struct cw w[2], pthread_t th[2], struct rod_store *s, struct rod_vol *v,
		     uint32_t seed, volatile int *stop, bool mix)
{
	for (int i = 0; i < 2; i++) {
		w[i] = (struct cw){ .s = s, .v = v, .base = (uint64_t)i * 4 * MiB, .len = 4 * MiB,
				    .seed = seed + (uint32_t)i, .stop = stop, .mix = mix };
		pthread_create(&th[i], NULL, cw_main, &w[i]);
	}
}

/* Stops them; neither may have seen an error. */
static void cw_stop(struct cw w[2], pthread_t th[2], volatile int *stop)
{
	*stop = 1;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].errors, 0);
	}
}

static void test_concurrent_gc(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "cgc", 8 * MiB);
	volatile int stop = 0;
	struct cw w[2];
	pthread_t th[2];
	int passes = 0;

	cw_start(w, th, s, v, 100u, &stop, false);
	for (int i = 0; i < 15; i++) {
		assert_int_equal(rod_store_gc(s, i % 3 == 0), 0);
		passes++;
		usleep(20000);
	}
	cw_stop(w, th, &stop);
	struct rod_store_stats st;
	rod_store_stats(s, &st);
	assert_true(st.gc_runs >= (uint64_t)passes);
	rod_vol_close(v);
}

/* GC passes while writers overwrite zero, duplicate and new grains: the values GC
 * relogs were read off the commit thread (commit_watch_*), some of them overwritten
 * before they were logged. Metadata rebuilt from the segments alone must give what the
 * writers wrote last. */
static void test_concurrent_gc_rebuild(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "cgr", 8 * MiB);
	volatile int stop = 0;
	struct cw w[2];
	pthread_t th[2];
	uint8_t *r = malloc(4 * MiB);
	uint64_t n = 0;

	cw_start(w, th, s, v, 300u, &stop, true);
	setenv("ROD_TEST_GC_PAUSE_MS", "20", 1);
	for (int i = 0; i < 12; i++) {
		assert_int_equal(rod_store_gc(s, true), 0);
		usleep(10000);
	}
	unsetenv("ROD_TEST_GC_PAUSE_MS");
	cw_stop(w, th, &stop);
	/* (no quiet pass: it would relog every current value again) */
	rod_vol_close(v);
	rod_store_close(s);
	*state = NULL;
	assert_int_equal(rod_store_rebuild_metadata(tmpl, &n), 0);
	s = open_store(false);
	*state = s;
	assert_int_equal(rod_vol_open(s, "cgr", &v), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rod_vol_read(v, (uint64_t)i * 4 * MiB, r, 4 * MiB), 0);
		for (uint64_t g = 0; g < 4 * MiB; g += 4096)
			if (memcmp(r + g, w[i].model + g, 4096))
				fail_msg("writer %d grain at %llu differs after the rebuild", i,
					 (unsigned long long)g);
		free(w[i].model);
	}
	rod_vol_close(v);
	free(r);
}

/* Map cache (mapcache.h): readers hammer a few grains (filling the cache from lookups
 * that may be older than the writes racing them) while a writer overwrites them and reads
 * each one back after its write completed: it must never see an older value. */
struct mcr {
	struct rod_vol *v;
	volatile int *stop;
	int errors;
};

static void *mcr_reader(void *arg)
{
	struct mcr *r = arg;
	uint8_t b[4096];

	while (!*r->stop)
		for (uint64_t g = 0; g < 8; g++)
			if (rod_vol_read(r->v, g * 4096, b, 4096))
				r->errors++;
	return NULL;
}

static void test_map_cache_read_after_write(void **state)
{
	struct rod_store *s;
	struct rod_vol *v;
	volatile int stop = 0;
	struct mcr r[2];
	pthread_t th[2];
	uint8_t w[4096], b[4096];

	/* fills wait 200 us after their lookup, so writes land in between; 4 slots for 8
	 * grains, so readers keep missing and filling */
	rod_store_close(*state);
	setenv("ROD_TEST_MC_FILL_DELAY_US", "200", 1);
	setenv("ROD_MAP_CACHE_SLOTS", "4", 1);
	*state = s = open_store(false);
	unsetenv("ROD_TEST_MC_FILL_DELAY_US");
	unsetenv("ROD_MAP_CACHE_SLOTS");
	v = stu_mkvol(s, "mcr", MiB);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 2; i++) {
		r[i] = (struct mcr){ .v = v, .stop = &stop };
		pthread_create(&th[i], NULL, mcr_reader, &r[i]);
	}
	for (uint32_t n = 1; n <= 1000; n++) {
		uint64_t g = n % 8;

		stu_fill(w, sizeof(w), n);
		memcpy(w, &n, sizeof(n));
		assert_int_equal(rod_vol_write(v, g * 4096, w, 4096, 0), 0);
		/* at once, and after fills that raced the write have landed */
		for (int k = 0; k < 2; k++) {
			if (k)
				usleep(500);
			assert_int_equal(rod_vol_read(v, g * 4096, b, 4096), 0);
			if (memcmp(b, w, sizeof(b))) {
				uint32_t got;

				memcpy(&got, b, sizeof(got));
				fail_msg("grain %llu: wrote version %u, read back version %u",
					 (unsigned long long)g, n, got);
			}
		}
	}
	stop = 1;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].errors, 0);
	}
	rod_vol_close(v);
}

/* Completions may submit more writes (the SCSI layer chains them): no deadlock, data
 * right. */
struct chain {
	struct rod_io io;
	uint8_t buf[512];
	int left;
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
};

static void chain_done(struct rod_io *io)
{
	struct chain *ch = io->priv;

	if (io->result || --ch->left == 0) {
		pthread_mutex_lock(&ch->m);
		ch->done = true;
		pthread_cond_signal(&ch->c);
		pthread_mutex_unlock(&ch->m);
		return;
	}
	ch->buf[0] = (uint8_t)ch->left;
	io->off = 512u * (unsigned)(ch->left % 7);
	rod_io_submit(io);
}

static void test_submit_from_completion(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "chain", MiB);
	struct chain ch = { .left = 200, .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
	uint8_t other[512], r[4096];

	memset(ch.buf, 0x5a, sizeof(ch.buf));
	memset(other, 0x11, sizeof(other));
	ch.io = (struct rod_io){ .op = ROD_IO_WRITE, .vol = v, .off = 0, .len = 512, .buf = ch.buf,
				 .done = chain_done, .priv = &ch };
	rod_io_submit(&ch.io);
	/* meanwhile, read-modify-writes of the same grain from this thread */
	for (int i = 0; i < 50; i++)
		assert_int_equal(rod_vol_write(v, 512 * 7, other, 512, 0), 0);
	pthread_mutex_lock(&ch.m);
	while (!ch.done)
		pthread_cond_wait(&ch.c, &ch.m);
	pthread_mutex_unlock(&ch.m);
	assert_int_equal(ch.io.result, 0);
	assert_int_equal(rod_vol_read(v, 0, r, 4096), 0);
	assert_memory_equal(r + 512 * 7, other, 512);
	rod_vol_close(v);
}

/* A write-back write whose batch did not reach the disk (a power cut) is lost cleanly:
 * the grain reads its old contents, not an I/O error, even though RocksDB had the map
 * entry. Simulated by cutting the log tail and dropping the checkpoint. */
static void test_writeback_torn_tail(void **state)
{
	struct rod_store *s = *state;
	struct rod_vol *v = stu_mkvol(s, "wb", MiB);
	uint8_t a[4096], b[4096], r[4096];
	char path[256], last[512] = "", cmd[600];
	FILE *p;

	stu_fill(a, sizeof(a), 31);
	stu_fill(b, sizeof(b), 32);
	assert_int_equal(rod_vol_set_cache(s, "wb", ROD_CACHE_WRITE_BACK), 0);
	assert_int_equal(rod_vol_write(v, 0, a, 4096, 0), 0);
	assert_int_equal(rod_vol_flush(v), 0);
	assert_int_equal(rod_vol_write(v, 4096, b, 4096, 0), 0);
	rod_vol_close(v);
	rod_store_close(s);
	*state = NULL;
	/* cut the last batch (4 KiB header + 4 KiB payload) in half; forget the checkpoint */
	snprintf(cmd, sizeof(cmd), "ls %s/seg/*.seg | sort | tail -1", tmpl);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(last, sizeof(last), p));
	pclose(p);
	last[strcspn(last, "\n")] = 0;
	snprintf(cmd, sizeof(cmd), "truncate -s -4096 %s", last);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/checkpoint", tmpl);
	assert_int_equal(unlink(path), 0);
	s = open_store(false);
	*state = s;
	assert_int_equal(rod_vol_open(s, "wb", &v), 0);
	assert_int_equal(rod_vol_read(v, 0, r, 4096), 0);
	assert_memory_equal(a, r, 4096);
	assert_int_equal(rod_vol_read(v, 4096, r, 4096), 0);
	for (int i = 0; i < 4096; i++)
		if (r[i])
			fail_msg("lost write-back grain byte %d not zero", i);
	rod_vol_close(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_thin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_subgrain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_unmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_clone_revert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_caw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_and_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_reclaims, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_after_repeated_moves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebuild_metadata, setup, teardown),
		cmocka_unit_test_setup_teardown(test_space_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_gc_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_cache_read_after_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_from_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writeback_torn_tail, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
