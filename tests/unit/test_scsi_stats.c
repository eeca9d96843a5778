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

#define VOL_SIZE (16ull << 20)
#define BS 512u

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *tgt;
	struct rod_vol_info v1, v2;
	struct rod_scsi_nexus n;
};

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void cmd_done(struct rod_scsi_cmd *c)
{
	struct waiter *w = c->transport_priv;
	pthread_mutex_lock(&w->mu);
	w->done++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static uint8_t run(struct env *e, uint64_t lun, const uint8_t cdb[16], const void *out, uint32_t out_len,
		   void *in, uint32_t in_cap)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	struct rod_scsi_cmd c;
	memset(&c, 0, sizeof(c));
	c.nexus = &e->n;
	c.lun = lun;
	memcpy(c.cdb, cdb, 16);
	c.cdb_len = 16;
	c.out_buf = out;
	c.out_len = out_len;
	c.exp_len = out ? out_len : in_cap;
	c.in_buf = in;
	c.in_cap = in_cap;
	c.dir = out ? ROD_SCSI_DIR_OUT : in ? ROD_SCSI_DIR_IN : ROD_SCSI_DIR_NONE;
	c.done = cmd_done;
	c.transport_priv = &w;
	rod_scsi_exec(e->tgt, &c);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	return c.status;
}

static void cdb_rw16(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	rod_put_be64(cdb + 2, lba);
	rod_put_be32(cdb + 10, n);
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/rodstats.XXXXXX");
	if (!mkdtemp(e->dir))
		return -1;
	struct rod_store_opts so = { .dir = e->dir, .create = true, .array_name = "t", .no_gc_thread = true };
	if (rod_store_open(&so, &e->store) || rod_vol_create(e->store, "v1", VOL_SIZE, BS, &e->v1) ||
	    rod_vol_create(e->store, "v2", VOL_SIZE, BS, &e->v2))
		return -1;
	struct rod_scsi_target_opts o = { .store = e->store, .target_name = "iqn.2026-11.io.rodstore:t" };
	if (rod_scsi_target_new(&o, &e->tgt) || rod_scsi_map_add(e->tgt, 1, 0, e->v1.id) ||
	    rod_scsi_map_add(e->tgt, 1, 1, e->v2.id))
		return -1;
	snprintf(e->n.initiator_name, sizeof(e->n.initiator_name), "iqn.1994-05.com.example:a");
	snprintf(e->n.initiator_port, sizeof(e->n.initiator_port), "iqn.1994-05.com.example:a,i,0x000000000001");
	e->n.isid[5] = 1;
	e->n.tpgt = 1;
	e->n.rel_port = 1;
	e->n.host_id = 1;
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
	rod_scsi_target_free(e->tgt);
	rod_store_close(e->store);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
	if (system(cmd) != 0)
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
	cdb_rw16(cdb, 0x8a, 0, 16);             /* WRITE(16) 16 blocks on v1 */
	assert_int_equal(run(e, 0, cdb, buf, sizeof(buf), NULL, 0), SAM_STAT_GOOD);
	cdb_rw16(cdb, 0x88, 0, 8);              /* READ(16) 8 blocks, twice */
	assert_int_equal(run(e, 0, cdb, NULL, 0, buf, 8 * BS), SAM_STAT_GOOD);
	assert_int_equal(run(e, 0, cdb, NULL, 0, buf, 8 * BS), SAM_STAT_GOOD);
	cdb_rw16(cdb, 0x88, VOL_SIZE / BS - 1, 2);   /* past the end: 05/21/00, no bytes */
	assert_int_equal(run(e, 0, cdb, NULL, 0, buf, 2 * BS), SAM_STAT_CHECK_CONDITION);
	cdb_rw16(cdb, 0x8a, 100, 4);            /* v2: one write of 4 blocks */
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
		cdb_rw16(cdb, 0x8a, (uint64_t)i, 1);
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
