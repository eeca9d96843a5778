/* SCSI core task set (SAM-5 8.6, TST=000): task attributes SIMPLE / ORDERED / HEAD OF
 * QUEUE / ACA against a real store. A WRITE is kept running by the test hook
 * ROD_SCSI_TEST_DELAY_MS (WRITE(10) with GROUP NUMBER 0x15 is held); the other commands
 * are checked for the order in which they complete and the data they read. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rod/scsi.h"
#include "rod/store.h"
#include "rod/util.h"

#include "scsi_test_util.h"

#define VOL_SIZE (16ull << 20)
#define BS 512u

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *tgt;
	struct rod_vol_info vol;
	struct rod_scsi_nexus n1, n2;   /* two initiators of host 1 (one task set) */
};

/* ---- asynchronous commands: completion order is what the tests check ---------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_seq;

struct acmd {
	struct rod_scsi_cmd c;
	int done_at;                    /* 0: not yet; else 1, 2, ... in completion order */
	uint8_t buf[BS];
};

static void acmd_done(struct rod_scsi_cmd *c)
{
	struct acmd *a = c->transport_priv;
	pthread_mutex_lock(&mu);
	a->done_at = ++done_seq;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void acmd_start(struct env *e, struct acmd *a, struct rod_scsi_nexus *n,
		       enum rod_scsi_task_attr attr, const uint8_t *cdb, bool write)
{
	memset(&a->c, 0, sizeof(a->c));
	a->done_at = 0;
	a->c.nexus = n;
	a->c.lun = 0;
	memcpy(a->c.cdb, cdb, 16);
	a->c.cdb_len = 16;
	a->c.attr = attr;
	if (write) {
		a->c.dir = ROD_SCSI_DIR_OUT;
		a->c.out_buf = a->buf;
		a->c.out_len = BS;
		a->c.exp_len = BS;
	} else if (cdb[0] != 0x00) {
		a->c.dir = ROD_SCSI_DIR_IN;
		a->c.in_buf = a->buf;
		a->c.in_cap = BS;
		a->c.exp_len = BS;
	}
	a->c.done = acmd_done;
	a->c.transport_priv = a;
	rod_scsi_exec(e->tgt, &a->c);
}

static int acmd_wait(struct acmd *a)
{
	pthread_mutex_lock(&mu);
	while (!a->done_at)
		pthread_cond_wait(&cv, &mu);
	int at = a->done_at;
	pthread_mutex_unlock(&mu);
	return at;
}

static int acmd_done_at(struct acmd *a)
{
	pthread_mutex_lock(&mu);
	int at = a->done_at;
	pthread_mutex_unlock(&mu);
	return at;
}

static void cdb_rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint8_t group)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	rod_put_be32(cdb + 2, lba);
	cdb[6] = group;
	rod_put_be16(cdb + 7, 1);
}

/* WRITE(10) of one block filled with `fill`; held by the hook when hold is set. */
static void start_write(struct env *e, struct acmd *a, struct rod_scsi_nexus *n,
			enum rod_scsi_task_attr attr, uint32_t lba, uint8_t fill, bool hold)
{
	uint8_t cdb[16];
	cdb_rw10(cdb, 0x2a, lba, hold ? 0x15 : 0);
	memset(a->buf, fill, BS);
	acmd_start(e, a, n, attr, cdb, true);
}

static void start_read(struct env *e, struct acmd *a, struct rod_scsi_nexus *n,
		       enum rod_scsi_task_attr attr, uint32_t lba)
{
	uint8_t cdb[16];
	cdb_rw10(cdb, 0x28, lba, 0);
	memset(a->buf, 0xee, BS);
	acmd_start(e, a, n, attr, cdb, false);
}

static void start_tur(struct env *e, struct acmd *a, struct rod_scsi_nexus *n,
		      enum rod_scsi_task_attr attr)
{
	uint8_t cdb[16] = { 0 };
	acmd_start(e, a, n, attr, cdb, false);
}

static void assert_filled(const uint8_t *buf, uint8_t v)
{
	for (size_t i = 0; i < BS; i++)
		if (buf[i] != v)
			fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, buf[i], v);
}

static void assert_good(struct acmd *a)
{
	assert_false(a->c.aborted);
	if (a->c.status != SAM_STAT_GOOD)
		fail_msg("status 0x%x sense %02x %02x %02x", a->c.status, a->c.sense[2],
			 a->c.sense[12], a->c.sense[13]);
}

/* ---- fixtures: the hook's hold time is read when the target is created --------- */

static void clear_ua(struct env *e, struct rod_scsi_nexus *n)
{
	for (int i = 0; i < 10; i++) {
		struct acmd a;
		start_tur(e, &a, n, ROD_TASK_SIMPLE);
		acmd_wait(&a);
		if (a.c.status == SAM_STAT_GOOD)
			return;
	}
	fail_msg("unit attentions did not clear");
}

static int setup_hold(void **state, const char *ms)
{
	struct env *e = calloc(1, sizeof(*e));
	if (scsi_store_open(e->dir, sizeof(e->dir), "rodtaskset", NULL, &e->store) < 0)
		return -1;
	if (rod_vol_create(e->store, "v1", VOL_SIZE, BS, &e->vol) < 0)
		return -1;
	setenv("ROD_SCSI_TEST_DELAY_MS", ms, 1);
	struct rod_scsi_target_opts o = { .store = e->store,
					  .target_name = "iqn.2026-11.io.rodstore:test" };
	int rc = rod_scsi_target_new(&o, &e->tgt);
	unsetenv("ROD_SCSI_TEST_DELAY_MS");
	if (rc < 0 || rod_scsi_map_add(e->tgt, 1, 0, e->vol.id) < 0)
		return -1;
	scsi_nexus_init(&e->n1, "iqn.1994-05.com.example:a", 1, 1);
	scsi_nexus_init(&e->n2, "iqn.1994-05.com.example:b", 2, 1);
	rod_scsi_nexus_register(e->tgt, &e->n1);
	rod_scsi_nexus_register(e->tgt, &e->n2);
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	*state = e;
	return 0;
}

/* held WRITEs complete on their own after 300 ms */
static int setup_short(void **state) { return setup_hold(state, "300"); }
/* held WRITEs stay until aborted */
static int setup_long(void **state) { return setup_hold(state, "600000"); }

static int teardown(void **state)
{
	struct env *e = *state;
	rod_scsi_nexus_unregister(e->tgt, &e->n1);
	rod_scsi_nexus_unregister(e->tgt, &e->n2);
	if (scsi_env_close(e->dir, e->store, e->tgt) < 0)
		return -1;
	free(e);
	return 0;
}

/* ---- tests ------------------------------------------------------------------ */

/* The case: an ORDERED READ right after a SIMPLE WRITE of the same block waits
 * for the WRITE and reads the new data. */
static void test_ordered_read_after_simple_write(void **state)
{
	struct env *e = *state;
	struct acmd *w = calloc(1, sizeof(*w)), *r = calloc(1, sizeof(*r));
	start_write(e, w, &e->n1, ROD_TASK_SIMPLE, 5, 0xb5, true);
	start_read(e, r, &e->n1, ROD_TASK_ORDERED, 5);
	int rw = acmd_wait(w), rr = acmd_wait(r);
	assert_good(w);
	assert_good(r);
	assert_true(rr > rw);
	assert_filled(r->buf, 0xb5);
	free(w);
	free(r);
}

/* SIMPLE commands (of any nexus: one task set per LU) received after an ORDERED one
 * wait for it; an ORDERED one waits for every earlier command. */
static void test_simple_after_ordered_waits(void **state)
{
	struct env *e = *state;
	struct acmd *w = calloc(1, sizeof(*w)), *r1 = calloc(1, sizeof(*r1)),
		    *r2 = calloc(1, sizeof(*r2)), *t = calloc(1, sizeof(*t)),
		    *w2 = calloc(1, sizeof(*w2)), *r3 = calloc(1, sizeof(*r3));
	start_write(e, w, &e->n1, ROD_TASK_ORDERED, 6, 0xc6, true);
	start_read(e, r1, &e->n1, ROD_TASK_SIMPLE, 6);
	start_read(e, r2, &e->n2, ROD_TASK_SIMPLE, 6);
	start_tur(e, t, &e->n2, ROD_TASK_SIMPLE);
	/* a second ORDERED after those: runs once they are done, then a SIMPLE after it */
	start_write(e, w2, &e->n2, ROD_TASK_ORDERED, 6, 0xd6, true);
	start_read(e, r3, &e->n1, ROD_TASK_SIMPLE, 6);
	int dw = acmd_wait(w);
	int d1 = acmd_wait(r1), d2 = acmd_wait(r2), dt = acmd_wait(t);
	int dw2 = acmd_wait(w2), d3 = acmd_wait(r3);
	struct acmd *all[] = { w, r1, r2, t, w2, r3 };
	for (size_t i = 0; i < 6; i++)
		assert_good(all[i]);
	assert_true(d1 > dw && d2 > dw && dt > dw);
	assert_filled(r1->buf, 0xc6);
	assert_filled(r2->buf, 0xc6);
	assert_true(dw2 > d1 && dw2 > d2 && dw2 > dt);
	assert_true(d3 > dw2);
	assert_filled(r3->buf, 0xd6);
	for (size_t i = 0; i < 6; i++)
		free(all[i]);
}

/* HEAD OF QUEUE runs at once, past a running WRITE and a dormant ORDERED command;
 * ABORT TASK of the held WRITE then lets the ORDERED READ run (old data: the WRITE
 * never ran). */
static void test_head_of_queue_not_delayed(void **state)
{
	struct env *e = *state;
	struct acmd *w = calloc(1, sizeof(*w)), *o = calloc(1, sizeof(*o)),
		    *h = calloc(1, sizeof(*h)), *ht = calloc(1, sizeof(*ht));
	start_write(e, w, &e->n1, ROD_TASK_SIMPLE, 7, 0xa7, true);
	start_read(e, o, &e->n1, ROD_TASK_ORDERED, 7);
	start_read(e, h, &e->n2, ROD_TASK_HEAD_OF_QUEUE, 7);
	start_tur(e, ht, &e->n1, ROD_TASK_HEAD_OF_QUEUE);
	acmd_wait(h);
	acmd_wait(ht);
	assert_good(h);
	assert_good(ht);
	assert_filled(h->buf, 0x00);
	assert_int_equal(acmd_done_at(w), 0);
	assert_int_equal(acmd_done_at(o), 0);
	rod_scsi_cmd_abort(e->tgt, &w->c);
	int dw = acmd_wait(w), dor = acmd_wait(o);
	assert_true(w->c.aborted);
	assert_true(dor > dw);
	assert_good(o);
	assert_filled(o->buf, 0x00);
	free(w);
	free(o);
	free(h);
	free(ht);
}

/* ACA: NormACA=0, no ACA condition is ever established: 05/24/00. */
static void test_aca_refused(void **state)
{
	struct env *e = *state;
	struct acmd *a = calloc(1, sizeof(*a));
	start_tur(e, a, &e->n1, ROD_TASK_ACA);
	acmd_wait(a);
	assert_int_equal(a->c.status, SAM_STAT_CHECK_CONDITION);
	assert_int_equal(a->c.sense[2] & 0x0f, 0x05);
	assert_int_equal(a->c.sense[12], 0x24);
	assert_int_equal(a->c.sense[13], 0x00);
	start_write(e, a, &e->n1, ROD_TASK_ACA, 8, 0x88, false);
	acmd_wait(a);
	assert_int_equal(a->c.status, SAM_STAT_CHECK_CONDITION);
	assert_int_equal(a->c.sense[12], 0x24);
	start_read(e, a, &e->n1, ROD_TASK_SIMPLE, 8);
	acmd_wait(a);
	assert_good(a);
	assert_filled(a->buf, 0x00);   /* the refused WRITE wrote nothing */
	free(a);
}

/* Aborting a dormant ORDERED command finishes it at once, unrun, and releases the
 * SIMPLE commands behind it; a LOGICAL UNIT RESET finishes dormant commands of every
 * nexus and the held one. */
static void test_abort_dormant(void **state)
{
	struct env *e = *state;
	struct acmd *w = calloc(1, sizeof(*w)), *o = calloc(1, sizeof(*o)),
		    *s = calloc(1, sizeof(*s)), *o2 = calloc(1, sizeof(*o2)),
		    *s2 = calloc(1, sizeof(*s2));
	start_write(e, w, &e->n1, ROD_TASK_SIMPLE, 9, 0x99, true);
	start_write(e, o, &e->n1, ROD_TASK_ORDERED, 10, 0x10, false);
	start_read(e, s, &e->n2, ROD_TASK_SIMPLE, 9);
	assert_int_equal(acmd_done_at(o), 0);
	assert_int_equal(acmd_done_at(s), 0);
	rod_scsi_cmd_abort(e->tgt, &o->c);
	acmd_wait(o);
	assert_true(o->c.aborted);
	acmd_wait(s);              /* released: the write is still held */
	assert_good(s);
	assert_filled(s->buf, 0x00);
	assert_int_equal(acmd_done_at(w), 0);

	start_write(e, o2, &e->n2, ROD_TASK_ORDERED, 10, 0x20, false);
	start_tur(e, s2, &e->n1, ROD_TASK_SIMPLE);
	assert_int_equal(acmd_done_at(o2), 0);
	assert_int_equal(rod_scsi_tmf(e->tgt, &e->n1, ROD_TMF_LOGICAL_UNIT_RESET, 0), 0);
	acmd_wait(w);
	acmd_wait(o2);
	acmd_wait(s2);
	assert_true(w->c.aborted);
	assert_true(o2->c.aborted);
	assert_true(s2->c.aborted);
	clear_ua(e, &e->n1);
	/* nothing of the aborted writes reached the store; the task set is empty again */
	struct acmd *r = calloc(1, sizeof(*r));
	start_read(e, r, &e->n1, ROD_TASK_ORDERED, 10);
	acmd_wait(r);
	assert_good(r);
	assert_filled(r->buf, 0x00);
	start_read(e, r, &e->n1, ROD_TASK_SIMPLE, 9);
	acmd_wait(r);
	assert_good(r);
	assert_filled(r->buf, 0x00);
	free(r);
	free(w);
	free(o);
	free(s);
	free(o2);
	free(s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ordered_read_after_simple_write, setup_short,
						teardown),
		cmocka_unit_test_setup_teardown(test_simple_after_ordered_waits, setup_short,
						teardown),
		cmocka_unit_test_setup_teardown(test_head_of_queue_not_delayed, setup_long,
						teardown),
		cmocka_unit_test_setup_teardown(test_aca_refused, setup_long, teardown),
		cmocka_unit_test_setup_teardown(test_abort_dormant, setup_long, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
