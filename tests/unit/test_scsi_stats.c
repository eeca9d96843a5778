/* I/O statistics of the SCSI core (lib/scsi/stats.c) against a real store: commands
 * through rod_scsi_exec move the per-volume counters by what they transferred, errors
 * are counted by sense key, two volumes are kept apart, concurrent writers lose no
 * count. */
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

#include "rod/scsi.h"
#include "rod/scsi_stats.h"
#include "rod/store.h"
#include "rod/util.h"

#include "scsi_test_util.h"

#define VOL_SIZE (16ull << 20)
#define BS 512u

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *tgt;
	struct rod_vol_info v1, v2;
	struct rod_scsi_nexus n;
};

static uint8_t run(struct env *e, uint64_t lun, const uint8_t cdb[16], const void *out, uint32_t out_len,
		   void *in, uint32_t in_cap)
{
	return scsi_run(e->tgt, &e->n, lun, cdb, 16, out, out_len, in, in_cap).status;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	if (scsi_store_open(e->dir, sizeof(e->dir), "rodstats", NULL, &e->store) ||
	    rod_vol_create(e->store, "v1", VOL_SIZE, BS, &e->v1) ||
	    rod_vol_create(e->store, "v2", VOL_SIZE, BS, &e->v2))
		return -1;
	struct rod_scsi_target_opts o = { .store = e->store, .target_name = "iqn.2026-11.io.rodstore:t" };
	if (rod_scsi_target_new(&o, &e->tgt) || rod_scsi_map_add(e->tgt, 1, 0, e->v1.id) ||
	    rod_scsi_map_add(e->tgt, 1, 1, e->v2.id))
		return -1;
	scsi_nexus_init(&e->n, "iqn.1994-05.com.example:a", 1, 1);
	rod_scsi_nexus_register(e->tgt, &e->n);
	/* consume the power-on unit attentions: they are counted, tests look at deltas */
	uint8_t tur[16] = { 0 };
	for (int lun = 0; lun < 2; lun++)
		for (int i = 0; i < 5 && run(e, (uint64_t)lun, tur, NULL, 0, NULL, 0) != SAM_STAT_GOOD; i++)
			;
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	rod_scsi_nexus_unregister(e->tgt, &e->n);
	if (scsi_env_close(e->dir, e->store, e->tgt) < 0)
		return -1;
	free(e);
	return 0;
}

static const struct rod_scsi_vol_stats *find(const struct rod_scsi_stats_snapshot *s, uint64_t id)
{
	for (size_t i = 0; i < s->n_vols; i++)
		if (s->vols[i].vol_id == id)
			return &s->vols[i];
	return NULL;
}

static uint64_t buckets(const struct rod_scsi_io_stats *io)
{
	uint64_t n = 0;
	for (unsigned b = 0; b <= ROD_SCSI_LAT_BOUNDS; b++)
		n += io->lat_bucket[b];
	return n;
}

static void test_read_write_counted(void **state)
{
	struct env *e = *state;
	struct rod_scsi_stats_snapshot s0, s1;
	assert_int_equal(rod_scsi_stats_get(e->tgt, &s0), 0);
	assert_int_equal(s0.n_vols, 0);         /* TEST UNIT READY is neither read nor write */

	static uint8_t buf[16 * BS];
	memset(buf, 0xab, sizeof(buf));
	uint8_t cdb[16];
	scsi_cdb_rw16(cdb, 0x8a, 0, 16);             /* WRITE(16) 16 blocks on v1 */
	assert_int_equal(run(e, 0, cdb, buf, sizeof(buf), NULL, 0), SAM_STAT_GOOD);
	scsi_cdb_rw16(cdb, 0x88, 0, 8);              /* READ(16) 8 blocks, twice */
	assert_int_equal(run(e, 0, cdb, NULL, 0, buf, 8 * BS), SAM_STAT_GOOD);
	assert_int_equal(run(e, 0, cdb, NULL, 0, buf, 8 * BS), SAM_STAT_GOOD);
	scsi_cdb_rw16(cdb, 0x88, VOL_SIZE / BS - 1, 2);   /* past the end: 05/21/00, no bytes */
	assert_int_equal(run(e, 0, cdb, NULL, 0, buf, 2 * BS), SAM_STAT_CHECK_CONDITION);
	scsi_cdb_rw16(cdb, 0x8a, 100, 4);            /* v2: one write of 4 blocks */
	assert_int_equal(run(e, 1, cdb, buf, 4 * BS, NULL, 0), SAM_STAT_GOOD);
	uint8_t bad[16] = { 0xff };             /* unknown opcode: 05/20/00 */
	assert_int_equal(run(e, 0, bad, NULL, 0, NULL, 0), SAM_STAT_CHECK_CONDITION);

	assert_int_equal(rod_scsi_stats_get(e->tgt, &s1), 0);
	const struct rod_scsi_vol_stats *a = find(&s1, e->v1.id), *b = find(&s1, e->v2.id);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->write.ops, 1);
	assert_int_equal(a->write.bytes, 16 * BS);
	assert_int_equal(a->read.ops, 3);
	assert_int_equal(a->read.bytes, 16 * BS);       /* the failed read moved nothing */
	assert_int_equal(buckets(&a->read), 3);
	assert_int_equal(buckets(&a->write), 1);
	assert_true(a->write.lat_sum_ns > 0);
	assert_int_equal(b->write.ops, 1);
	assert_int_equal(b->write.bytes, 4 * BS);
	assert_int_equal(b->read.ops, 0);
	assert_int_equal(s1.sense_keys[5] - s0.sense_keys[5], 2);   /* ILLEGAL REQUEST x2 */
	free(s0.vols);
	free(s1.vols);
}

struct writer {
	struct env *e;
	int n;
};

static void *writer(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[BS], cdb[16];
	memset(buf, 1, sizeof(buf));
	for (int i = 0; i < w->n; i++) {
		scsi_cdb_rw16(cdb, 0x8a, (uint64_t)i, 1);
		if (run(w->e, 0, cdb, buf, BS, NULL, 0) != SAM_STAT_GOOD)
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent_counts(void **state)
{
	struct env *e = *state;
	pthread_t th[4];
	struct writer w = { e, 50 };
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, writer, &w), 0);
	for (int i = 0; i < 4; i++) {
		void *rc;
		pthread_join(th[i], &rc);
		assert_null(rc);
	}
	struct rod_scsi_stats_snapshot s;
	assert_int_equal(rod_scsi_stats_get(e->tgt, &s), 0);
	const struct rod_scsi_vol_stats *a = find(&s, e->v1.id);
	assert_non_null(a);
	assert_int_equal(a->write.ops, 200);
	assert_int_equal(a->write.bytes, 200 * BS);
	assert_int_equal(buckets(&a->write), 200);
	free(s.vols);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_write_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_counts, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
