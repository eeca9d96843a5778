/* SCSI core against a real store in a temp dir: CDBs in, data and exact sense out. */
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

#include "rod/scsi.h"
#include "rod/store.h"
#include "rod/util.h"

#include "scsi_test_util.h"

#define VOL_SIZE (64ull << 20)
#define BS 512u
#define BLOCKS (VOL_SIZE / BS)

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *tgt;
	struct rod_vol_info vol;
	struct rod_scsi_nexus n1, n2;   /* two initiators of host 1 */
	struct rod_scsi_nexus n3;       /* an initiator of host 2 */
};

/* ---- running one command and waiting for it --------------------------------- */

static struct scsi_res run(struct env *e, struct rod_scsi_nexus *n, uint64_t lun,
			   const uint8_t *cdb, size_t cdb_len, const void *out, uint32_t out_len,
			   void *in, uint32_t in_cap)
{
	return scsi_run(e->tgt, n, lun, cdb, cdb_len, out, out_len, in, in_cap);
}

#define assert_good(r) do { struct scsi_res _r = (r); if (_r.status != SAM_STAT_GOOD) \
	fail_msg("status 0x%x sense %x/%02x/%02x", _r.status, _r.key, _r.asc, _r.ascq); } while (0)
#define assert_sense(r, k, a, q) do { struct scsi_res _r = (r); \
	assert_int_equal(_r.status, SAM_STAT_CHECK_CONDITION); \
	if (_r.key != (k) || _r.asc != (a) || _r.ascq != (q)) \
		fail_msg("sense %x/%02x/%02x, expected %x/%02x/%02x", _r.key, _r.asc, _r.ascq, \
			 (k), (a), (q)); } while (0)

static void cdb_rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	rod_put_be32(cdb + 2, lba);
	rod_put_be16(cdb + 7, n);
}

static struct scsi_res tur(struct env *e, struct rod_scsi_nexus *n)
{
	uint8_t cdb[6] = { 0 };
	return run(e, n, 0, cdb, 6, NULL, 0, NULL, 0);
}

/* Consume pending unit attentions of nexus n on LUN 0. */
static void clear_ua(struct env *e, struct rod_scsi_nexus *n)
{
	for (int i = 0; i < 10; i++)
		if (tur(e, n).status == SAM_STAT_GOOD)
			return;
	fail_msg("unit attentions did not clear");
}

static int open_target(struct env *e)
{
	struct rod_scsi_target_opts o = { .store = e->store,
					  .target_name = "iqn.2026-11.io.rodstore:test" };
	return rod_scsi_target_new(&o, &e->tgt);
}

/* The store (options from opts, NULL: none) with volume v1 of vol_size bytes at LUN 0
 * of host 1, whose initiators are n1 and n2; n3 is an initiator of host 2. */
static int setup_with(void **state, const struct rod_store_opts *opts, uint64_t vol_size)
{
	struct env *e = calloc(1, sizeof(*e));
	if (scsi_store_open(e->dir, sizeof(e->dir), "rodscsi", opts, &e->store) < 0)
		return -1;
	if (rod_vol_create(e->store, "v1", vol_size, BS, &e->vol) < 0)
		return -1;
	if (open_target(e) < 0)
		return -1;
	if (rod_scsi_map_add(e->tgt, 1, 0, e->vol.id) < 0)
		return -1;
	scsi_nexus_init(&e->n1, "iqn.1994-05.com.example:a", 1, 1);
	scsi_nexus_init(&e->n2, "iqn.1994-05.com.example:b", 2, 1);
	scsi_nexus_init(&e->n3, "iqn.1994-05.com.example:c", 3, 2);
	rod_scsi_nexus_register(e->tgt, &e->n1);
	rod_scsi_nexus_register(e->tgt, &e->n2);
	rod_scsi_nexus_register(e->tgt, &e->n3);
	*state = e;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, NULL, VOL_SIZE);
}

static int teardown(void **state)
{
	struct env *e = *state;
	rod_scsi_nexus_unregister(e->tgt, &e->n1);
	rod_scsi_nexus_unregister(e->tgt, &e->n2);
	rod_scsi_nexus_unregister(e->tgt, &e->n3);
	if (scsi_env_close(e->dir, e->store, e->tgt) < 0)
		return -1;
	free(e);
	return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_power_on_ua_then_ready(void **state)
{
	struct env *e = *state;
	assert_sense(tur(e, &e->n1), 0x6, 0x29, 0x00);
	assert_good(tur(e, &e->n1));
	/* the other nexus still has its own */
	assert_sense(tur(e, &e->n2), 0x6, 0x29, 0x00);
}

static void test_inquiry(void **state)
{
	struct env *e = *state;
	uint8_t cdb[6] = { 0x12, 0, 0, 0, 255, 0 }, buf[255];
	struct scsi_res r = run(e, &e->n1, 0, cdb, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_true(r.in_len >= 36);
	assert_int_equal(buf[0], 0x00);
	assert_int_equal(buf[2], 0x06);             /* SPC-4 */
	assert_int_equal(buf[5] & 0x30, 0x10);      /* TPGS implicit */
	assert_int_equal(buf[7] & 0x02, 0x02);      /* CMDQUE */
	assert_memory_equal(buf + 8, "RODSTORE", 8);
	assert_int_equal(buf[5] & 0x08, 0x08);      /* 3PC: EXTENDED COPY is implemented */

	/* VPD 0x00 lists what we answer */
	uint8_t v[6] = { 0x12, 1, 0x00, 0, 255, 0 };
	r = run(e, &e->n1, 0, v, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_non_null(memchr(buf + 4, 0xb2, buf[3]));
	assert_non_null(memchr(buf + 4, 0x83, buf[3]));

	/* VPD 0x83: NAA 6 first, stable for the volume, different per volume */
	v[2] = 0x83;
	r = run(e, &e->n1, 0, v, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(buf[4 + 1] & 0x0f, 3);
	assert_int_equal(buf[4 + 3], 16);
	assert_int_equal(buf[8] >> 4, 6);
	uint8_t naa1[16];
	memcpy(naa1, buf + 8, 16);
	struct rod_vol_info v2;
	assert_int_equal(rod_vol_create(e->store, "v2", VOL_SIZE, BS, &v2), 0);
	assert_int_equal(rod_scsi_map_add(e->tgt, 1, 1, v2.id), 0);
	r = run(e, &e->n1, 1, v, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_memory_not_equal(buf + 8, naa1, 16);

	/* VPD 0xB0: finite MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT, CAW length 1 */
	v[2] = 0xb0;
	r = run(e, &e->n1, 0, v, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(r.in_len, 64);
	assert_int_equal(buf[5], 1);
	assert_int_equal(rod_get_be16(buf + 6), 8);
	uint32_t bdc = rod_get_be32(buf + 24);
	assert_true(bdc > 0 && bdc < 0xffffffffu);

	/* VPD 0xB2: LBPU LBPWS LBPWS10 LBPRZ, thin */
	v[2] = 0xb2;
	r = run(e, &e->n1, 0, v, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(buf[5], 0xe4);
	assert_int_equal(buf[6] & 0x07, 2);

	/* unknown VPD page: 05/24/00 with the field pointer at byte 2 */
	v[2] = 0xc7;
	r = run(e, &e->n1, 0, v, 6, NULL, 0, buf, sizeof(buf));
	assert_sense(r, 0x5, 0x24, 0x00);
	assert_int_equal(r.sense[15] & 0xc0, 0xc0);  /* SKSV, C/D = CDB */
	assert_int_equal(rod_get_be16(r.sense + 16), 2);

	/* a LUN without LU: peripheral qualifier 3 for INQUIRY, 05/25/00 otherwise */
	r = run(e, &e->n1, 7, cdb, 6, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(buf[0], 0x7f);
	uint8_t tcdb[6] = { 0 };
	assert_sense(run(e, &e->n1, 7, tcdb, 6, NULL, 0, NULL, 0), 0x5, 0x25, 0x00);
}

static void test_read_capacity(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16] = { 0x9e, 0x10 }, buf[32];
	rod_put_be32(cdb + 10, 32);
	struct scsi_res r = run(e, &e->n1, 0, cdb, 16, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(rod_get_be64(buf), BLOCKS - 1);
	assert_int_equal(rod_get_be32(buf + 8), BS);
	assert_int_equal(buf[13] & 0x0f, 3);        /* 8 logical per physical block */
	assert_int_equal(buf[14] & 0xc0, 0xc0);     /* LBPME, LBPRZ */
	uint8_t c10[10] = { 0x25 };
	r = run(e, &e->n1, 0, c10, 10, NULL, 0, buf, 8);
	assert_good(r);
	assert_int_equal(rod_get_be32(buf), BLOCKS - 1);
}

static void test_write_read_bounds(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16], out[8 * BS], in[8 * BS];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 3);
	cdb_rw10(cdb, 0x2a, 100, 8);
	cdb[1] = 0x08; /* FUA */
	assert_good(run(e, &e->n1, 0, cdb, 10, out, sizeof(out), NULL, 0));
	scsi_cdb_rw16(cdb, 0x88, 100, 8);
	memset(in, 0, sizeof(in));
	struct scsi_res r = run(e, &e->n1, 0, cdb, 16, NULL, 0, in, sizeof(in));
	assert_good(r);
	assert_int_equal(r.in_len, sizeof(in));
	assert_memory_equal(in, out, sizeof(out));
	/* unaligned to the 4 KiB grain: one block at 101 */
	uint8_t one[BS];
	memset(one, 0xab, BS);
	scsi_cdb_rw16(cdb, 0x8a, 101, 1);
	assert_good(run(e, &e->n1, 0, cdb, 16, one, BS, NULL, 0));
	cdb_rw10(cdb, 0x28, 100, 3);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, 3 * BS));
	assert_memory_equal(in, out, BS);
	assert_memory_equal(in + BS, one, BS);
	assert_memory_equal(in + 2 * BS, out + 2 * BS, BS);

	/* last block fine, one beyond: 05/21/00; LBA past the end with 0 blocks too */
	scsi_cdb_rw16(cdb, 0x88, BLOCKS - 1, 1);
	assert_good(run(e, &e->n1, 0, cdb, 16, NULL, 0, in, BS));
	scsi_cdb_rw16(cdb, 0x88, BLOCKS - 1, 2);
	assert_sense(run(e, &e->n1, 0, cdb, 16, NULL, 0, in, 2 * BS), 0x5, 0x21, 0x00);
	scsi_cdb_rw16(cdb, 0x8a, BLOCKS, 1);
	assert_sense(run(e, &e->n1, 0, cdb, 16, one, BS, NULL, 0), 0x5, 0x21, 0x00);
	cdb_rw10(cdb, 0x28, BLOCKS + 1, 0);
	assert_sense(run(e, &e->n1, 0, cdb, 10, NULL, 0, NULL, 0), 0x5, 0x21, 0x00);
	scsi_cdb_rw16(cdb, 0x88, UINT64_MAX, 1);
	assert_sense(run(e, &e->n1, 0, cdb, 16, NULL, 0, in, BS), 0x5, 0x21, 0x00);

	/* RDPROTECT set without protection information: 05/24/00 at byte 1 bit 7 */
	cdb_rw10(cdb, 0x28, 0, 1);
	cdb[1] = 0x20;
	struct scsi_res p = run(e, &e->n1, 0, cdb, 10, NULL, 0, in, BS);
	assert_sense(p, 0x5, 0x24, 0x00);
	assert_int_equal(p.sense[15], 0x80 | 0x40 | 0x08 | 5);
	assert_int_equal(rod_get_be16(p.sense + 16), 1);

	/* Data-Out shorter than the command (EDTL < SPDTL): the blocks that arrived are
	 * written, nothing beyond them */
	uint8_t pre[2 * BS];
	memset(pre, 0xee, sizeof(pre));
	cdb_rw10(cdb, 0x2a, 200, 2);
	assert_good(run(e, &e->n1, 0, cdb, 10, pre, sizeof(pre), NULL, 0));
	assert_good(run(e, &e->n1, 0, cdb, 10, out, BS + 100, NULL, 0));
	cdb_rw10(cdb, 0x28, 200, 2);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, 2 * BS));
	assert_memory_equal(in, out, BS);
	assert_memory_equal(in + BS, pre + BS, BS);
	/* a short UNMAP parameter list is refused: 05/0E/03 */
	uint8_t um[10] = { 0x42 };
	rod_put_be16(um + 7, 24);
	assert_sense(run(e, &e->n1, 0, um, 10, out, 8, NULL, 0), 0x5, 0x0e, 0x03);

	/* READ(6): transfer length 0 means 256 blocks */
	uint8_t c6[6] = { 0x08, 0, 0, 100, 0, 0 };
	uint8_t *big = malloc(256 * BS);
	r = run(e, &e->n1, 0, c6, 6, NULL, 0, big, 256 * BS);
	assert_good(r);
	assert_int_equal(r.in_len, 256 * BS);
	assert_memory_equal(big, out, BS);
	free(big);

	/* smaller Data-In buffer than the command: the data that fits, GOOD */
	cdb_rw10(cdb, 0x28, 100, 1);
	r = run(e, &e->n1, 0, cdb, 10, NULL, 0, in, 200);
	assert_good(r);
	assert_int_equal(r.in_len, 200);
	assert_memory_equal(in, out, 200);
}

static void test_orwrite(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16], a[2 * BS], b[2 * BS], in[2 * BS];
	memset(a, 0x0f, sizeof(a));
	memset(b, 0x30, sizeof(b));
	b[7] = 0x80;
	cdb_rw10(cdb, 0x2a, 300, 2);
	assert_good(run(e, &e->n1, 0, cdb, 10, a, sizeof(a), NULL, 0));
	scsi_cdb_rw16(cdb, 0x8b, 300, 2);
	assert_good(run(e, &e->n1, 0, cdb, 16, b, sizeof(b), NULL, 0));
	cdb_rw10(cdb, 0x28, 300, 2);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, sizeof(in)));
	for (unsigned i = 0; i < sizeof(in); i++)
		assert_int_equal(in[i], i == 7 ? 0x8f : 0x3f);
	scsi_cdb_rw16(cdb, 0x8b, BLOCKS - 1, 2);
	assert_sense(run(e, &e->n1, 0, cdb, 16, b, sizeof(b), NULL, 0), 0x5, 0x21, 0x00);
}

static void test_invalid_opcode(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16] = { 0x48 }; /* SANITIZE: not implemented */
	assert_sense(run(e, &e->n1, 0, cdb, 10, NULL, 0, NULL, 0), 0x5, 0x20, 0x00);
	uint8_t sa[16] = { 0x9e, 0x1f }; /* SERVICE ACTION IN(16) with an unknown SA */
	assert_sense(run(e, &e->n1, 0, sa, 16, NULL, 0, NULL, 0), 0x5, 0x24, 0x00);
}

static void test_compare_and_write(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16], blk[BS], buf[2 * BS], in[BS];
	memset(blk, 0x11, BS);
	cdb_rw10(cdb, 0x2a, 50, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, blk, BS, NULL, 0));

	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	rod_put_be64(cdb + 2, 50);
	cdb[13] = 1;
	memcpy(buf, blk, BS);
	memset(buf + BS, 0x22, BS);
	assert_good(run(e, &e->n1, 0, cdb, 16, buf, 2 * BS, NULL, 0));
	cdb_rw10(cdb + 0, 0x28, 50, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, BS));
	assert_memory_equal(in, buf + BS, BS);

	/* miscompare at byte 37: 0E/1D/00, VALID, INFORMATION = 37; data unchanged */
	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	rod_put_be64(cdb + 2, 50);
	cdb[13] = 1;
	memset(buf, 0x22, BS);
	buf[37] = 0;
	memset(buf + BS, 0x33, BS);
	struct scsi_res r = run(e, &e->n1, 0, cdb, 16, buf, 2 * BS, NULL, 0);
	assert_sense(r, 0xe, 0x1d, 0x00);
	assert_int_equal(r.sense[0] & 0x80, 0x80);
	assert_int_equal(rod_get_be32(r.sense + 3), 37);
	cdb_rw10(cdb, 0x28, 50, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, BS));
	memset(blk, 0x22, BS);
	assert_memory_equal(in, blk, BS);

	/* 0 blocks with data (a count that overflowed the byte): 05/24/00 */
	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	assert_sense(run(e, &e->n1, 0, cdb, 16, buf, 2 * BS, NULL, 0), 0x5, 0x24, 0x00);
	/* wrong Data-Out size, too many blocks */
	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	cdb[13] = 1;
	assert_int_equal(run(e, &e->n1, 0, cdb, 16, buf, BS, NULL, 0).status,
			 SAM_STAT_CHECK_CONDITION);
	cdb[13] = 2;
	assert_sense(run(e, &e->n1, 0, cdb, 16, buf, 2 * BS, NULL, 0), 0x5, 0x24, 0x00);
}

/* COMPARE AND WRITE as a lock: several initiators increment a counter block with
 * read / CAW(old -> old+1), retrying on miscompare. No increment may be lost. */
struct caw_worker {
	struct env *e;
	struct rod_scsi_nexus *n;
	int increments;
	int miscompares;
};

static void *caw_worker_run(void *arg)
{
	struct caw_worker *w = arg;
	uint8_t cdb[16], buf[2 * BS];
	for (int done = 0; done < w->increments;) {
		scsi_cdb_rw16(cdb, 0x88, 77, 1);
		struct scsi_res r = run(w->e, w->n, 0, cdb, 16, NULL, 0, buf, BS);
		if (r.status != SAM_STAT_GOOD)
			continue; /* a unit attention; try again */
		memcpy(buf + BS, buf, BS);
		uint64_t v = rod_get_be64(buf + BS);
		rod_put_be64(buf + BS, v + 1);
		memset(cdb, 0, 16);
		cdb[0] = 0x89;
		rod_put_be64(cdb + 2, 77);
		cdb[13] = 1;
		r = run(w->e, w->n, 0, cdb, 16, buf, 2 * BS, NULL, 0);
		if (r.status == SAM_STAT_GOOD)
			done++;
		else if (r.key == 0xe && r.asc == 0x1d)
			w->miscompares++;
	}
	return NULL;
}

static void test_caw_concurrent_counter(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	uint8_t zero[BS], cdb[16], in[BS];
	memset(zero, 0, BS);
	cdb_rw10(cdb, 0x2a, 77, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, zero, BS, NULL, 0));
	struct caw_worker w[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct caw_worker){ e, i % 2 ? &e->n2 : &e->n1, 50, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, caw_worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	cdb_rw10(cdb, 0x28, 77, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, BS));
	assert_int_equal(rod_get_be64(in), 200);
}

static uint8_t lba_status(struct env *e, uint64_t lba, uint64_t *first_lba, uint32_t *count)
{
	uint8_t cdb[16] = { 0x9e, 0x12 }, buf[24];
	rod_put_be64(cdb + 2, lba);
	rod_put_be32(cdb + 10, sizeof(buf));
	struct scsi_res r = run(e, &e->n1, 0, cdb, 16, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	*first_lba = rod_get_be64(buf + 8);
	*count = rod_get_be32(buf + 16);
	return buf[20] & 0x0f;
}

static void test_write_same_unmap_lba_status(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16], blk[BS], in[64 * BS];
	/* a non-zero pattern is written to every block */
	for (unsigned i = 0; i < BS; i++)
		blk[i] = (uint8_t)(i ^ 0x5a);
	scsi_cdb_rw16(cdb, 0x93, 1000, 64);
	assert_good(run(e, &e->n1, 0, cdb, 16, blk, BS, NULL, 0));
	scsi_cdb_rw16(cdb, 0x88, 1000, 64);
	assert_good(run(e, &e->n1, 0, cdb, 16, NULL, 0, in, sizeof(in)));
	for (unsigned b = 0; b < 64; b++)
		assert_memory_equal(in + b * BS, blk, BS);
	uint64_t first;
	uint32_t cnt;
	assert_int_equal(lba_status(e, 1000, &first, &cnt), 0);
	assert_int_equal(first, 1000);

	/* WRITE SAME(16) UNMAP with zeros deallocates; reads zero (LBPRZ) */
	memset(blk, 0, BS);
	scsi_cdb_rw16(cdb, 0x93, 1000, 64);
	cdb[1] = 0x08;
	assert_good(run(e, &e->n1, 0, cdb, 16, blk, BS, NULL, 0));
	scsi_cdb_rw16(cdb, 0x88, 1000, 64);
	assert_good(run(e, &e->n1, 0, cdb, 16, NULL, 0, in, sizeof(in)));
	for (unsigned i = 0; i < sizeof(in); i++)
		assert_int_equal(in[i], 0);
	assert_int_equal(lba_status(e, 1000, &first, &cnt), 1);
	assert_int_equal(first, 1000);

	/* ANCHOR is refused; Data-Out must be exactly one block */
	scsi_cdb_rw16(cdb, 0x93, 0, 8);
	cdb[1] = 0x10 | 0x08;
	assert_sense(run(e, &e->n1, 0, cdb, 16, blk, BS, NULL, 0), 0x5, 0x24, 0x00);
	scsi_cdb_rw16(cdb, 0x93, 0, 8);
	assert_int_equal(run(e, &e->n1, 0, cdb, 16, in, 2 * BS, NULL, 0).status,
			 SAM_STAT_CHECK_CONDITION);
	/* NDOB: no Data-Out, zeros */
	scsi_cdb_rw16(cdb, 0x93, 0, 8);
	cdb[1] = 0x01;
	assert_good(run(e, &e->n1, 0, cdb, 16, NULL, 0, NULL, 0));

	/* GET LBA STATUS: starts exactly at the requested LBA (inside a grain), and past
	 * the end is 05/21/00 */
	memset(blk, 0x77, BS);
	cdb_rw10(cdb, 0x2a, 2000, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, blk, BS, NULL, 0));
	/* mapping is tracked per 4 KiB grain (8 blocks): 2000..2007 are mapped now */
	assert_int_equal(lba_status(e, 2003, &first, &cnt), 0);
	assert_int_equal(first, 2003);
	assert_int_equal(cnt, 5);
	assert_int_equal(lba_status(e, 2000, &first, &cnt), 0);
	assert_int_equal(first, 2000);
	assert_int_equal(lba_status(e, 2008, &first, &cnt), 1);
	assert_int_equal(first, 2008);
	assert_int_equal(lba_status(e, 2009, &first, &cnt), 1);
	assert_int_equal(first, 2009);
	uint8_t g[16] = { 0x9e, 0x12 };
	rod_put_be64(g + 2, BLOCKS);
	rod_put_be32(g + 10, 24);
	assert_sense(run(e, &e->n1, 0, g, 16, NULL, 0, in, 24), 0x5, 0x21, 0x00);
}

/* WRITE SAME of 1..256 blocks at LBA 0, each read back at once (libiscsi
 * WriteSame10.Check), after the range was unmapped in grain-unaligned pieces. */
static void test_write_same_read_back(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[16], blk[BS], *in = malloc(256 * BS);
	for (int round = 0; round < 3; round++) {
		for (uint32_t i = 1; i <= 256; i++) {
			if (round > 0) {
				/* unmap a few unaligned blocks first, as the earlier tests do */
				memset(blk, 0, BS);
				cdb_rw10(cdb, 0x41, i % 8, (uint16_t)(8 - i % 8));
				cdb[1] = 0x08;
				assert_good(run(e, &e->n1, 0, cdb, 10, blk, BS, NULL, 0));
			}
			memset(blk, (int)(i + round), BS);
			cdb_rw10(cdb, 0x41, 0, (uint16_t)i);
			assert_good(run(e, &e->n1, 0, cdb, 10, blk, BS, NULL, 0));
			cdb_rw10(cdb, 0x28, 0, (uint16_t)i);
			assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, in, i * BS));
			for (uint32_t b = 0; b < i; b++)
				if (memcmp(in + b * BS, blk, BS))
					fail_msg("round %d: WRITE SAME of %u blocks, block %u reads %02x, wrote %02x",
						 round, i, b, in[b * BS], blk[0]);
		}
	}
	free(in);
}

static void test_unmap(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[10] = { 0x42 }, pl[8 + 2 * 16], blk[8 * BS], in[8 * BS];
	memset(blk, 0x3c, sizeof(blk));
	uint8_t w[16];
	cdb_rw10(w, 0x2a, 4096, 8);
	assert_good(run(e, &e->n1, 0, w, 10, blk, sizeof(blk), NULL, 0));

	memset(pl, 0, sizeof(pl));
	rod_put_be16(pl, 6 + 16);
	rod_put_be16(pl + 2, 16);
	rod_put_be64(pl + 8, 4096);
	rod_put_be32(pl + 16, 8);
	rod_put_be16(cdb + 7, 24);
	assert_good(run(e, &e->n1, 0, cdb, 10, pl, 24, NULL, 0));
	cdb_rw10(w, 0x28, 4096, 8);
	assert_good(run(e, &e->n1, 0, w, 10, NULL, 0, in, sizeof(in)));
	for (unsigned i = 0; i < sizeof(in); i++)
		assert_int_equal(in[i], 0);

	/* one block inside a grain whose neighbours stay mapped: reads zero, neighbours
	 * keep their data */
	cdb_rw10(w, 0x2a, 4096, 8);
	assert_good(run(e, &e->n1, 0, w, 10, blk, sizeof(blk), NULL, 0));
	rod_put_be64(pl + 8, 4099);
	rod_put_be32(pl + 16, 1);
	assert_good(run(e, &e->n1, 0, cdb, 10, pl, 24, NULL, 0));
	cdb_rw10(w, 0x28, 4096, 8);
	assert_good(run(e, &e->n1, 0, w, 10, NULL, 0, in, sizeof(in)));
	for (unsigned i = 0; i < sizeof(in); i++)
		assert_int_equal(in[i], i / BS == 3 ? 0 : 0x3c);
	/* a range over grain boundaries: 4097..4110 */
	rod_put_be64(pl + 8, 4097);
	rod_put_be32(pl + 16, 14);
	assert_good(run(e, &e->n1, 0, cdb, 10, pl, 24, NULL, 0));
	assert_good(run(e, &e->n1, 0, w, 10, NULL, 0, in, sizeof(in)));
	for (unsigned i = 0; i < sizeof(in); i++)
		assert_int_equal(in[i], i / BS == 0 ? 0x3c : 0);

	/* parameter list shorter than its header: 05/1A/00 */
	rod_put_be16(cdb + 7, 6);
	assert_sense(run(e, &e->n1, 0, cdb, 10, pl, 6, NULL, 0), 0x5, 0x1a, 0x00);
	/* out of range descriptor: 05/21/00 */
	rod_put_be64(pl + 8, BLOCKS - 4);
	rod_put_be32(pl + 16, 8);
	rod_put_be16(cdb + 7, 24);
	assert_sense(run(e, &e->n1, 0, cdb, 10, pl, 24, NULL, 0), 0x5, 0x21, 0x00);
	/* zero-length list: GOOD */
	rod_put_be16(cdb + 7, 0);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, NULL, 0));
}

static struct scsi_res mode_sense6(struct env *e, struct rod_scsi_nexus *n, uint8_t pcpage, uint8_t *buf)
{
	uint8_t cdb[6] = { 0x1a, 0x08, pcpage, 0, 255, 0 };
	return run(e, n, 0, cdb, 6, NULL, 0, buf, 255);
}

static void test_mode_pages(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	uint8_t buf[255];
	/* caching page: WCE follows the volume's cache mode (write-through: 0) */
	assert_good(mode_sense6(e, &e->n1, 0x08, buf));
	assert_int_equal(buf[4], 0x08);
	assert_int_equal(buf[4 + 2] & 0x04, 0);
	/* changeable: only WCE */
	assert_good(mode_sense6(e, &e->n1, 0x40 | 0x08, buf));
	assert_int_equal(buf[4 + 2], 0x04);
	/* saved pages are not supported */
	assert_sense(mode_sense6(e, &e->n1, 0xc0 | 0x08, buf), 0x5, 0x39, 0x00);
	/* all pages has caching, control, informational exceptions */
	struct scsi_res r = mode_sense6(e, &e->n1, 0x3f, buf);
	assert_good(r);
	assert_int_equal(buf[0] + 1, (int)r.in_len);
	assert_int_equal(buf[4], 0x08);
	assert_int_equal(buf[4 + 20], 0x0a);
	assert_int_equal(buf[4 + 32], 0x1c);

	/* MODE SELECT WCE=1: the volume becomes write-back; the other nexus hears 2A/01 */
	assert_good(mode_sense6(e, &e->n1, 0x08, buf));
	uint8_t pl[4 + 20];
	memset(pl, 0, 4);
	memcpy(pl + 4, buf + 4, 20);
	pl[4 + 2] |= 0x04;
	uint8_t sel[6] = { 0x15, 0x10, 0, 0, sizeof(pl), 0 };
	assert_good(run(e, &e->n1, 0, sel, 6, pl, sizeof(pl), NULL, 0));
	struct rod_vol_info info;
	assert_int_equal(rod_vol_info_get(e->store, "v1", &info), 0);
	assert_int_equal(info.cache, ROD_CACHE_WRITE_BACK);
	assert_good(mode_sense6(e, &e->n1, 0x08, buf));
	assert_int_equal(buf[4 + 2] & 0x04, 0x04);
	assert_sense(tur(e, &e->n2), 0x6, 0x2a, 0x01);
	assert_good(tur(e, &e->n1));

	/* a non-changeable field: 05/26/00 pointing at it */
	pl[4 + 3] = 0x01;
	r = run(e, &e->n1, 0, sel, 6, pl, sizeof(pl), NULL, 0);
	assert_sense(r, 0x5, 0x26, 0x00);
	assert_int_equal(r.sense[15] & 0x40, 0);     /* C/D = parameter list */
	assert_int_equal(rod_get_be16(r.sense + 16), 7);
	/* back to write-through */
	pl[4 + 3] = 0;
	pl[4 + 2] &= (uint8_t)~0x04;
	assert_good(run(e, &e->n1, 0, sel, 6, pl, sizeof(pl), NULL, 0));
	assert_int_equal(rod_vol_info_get(e->store, "v1", &info), 0);
	assert_int_equal(info.cache, ROD_CACHE_WRITE_THROUGH);

	/* D_SENSE=1: sense data in descriptor format, INFORMATION in a descriptor */
	assert_good(mode_sense6(e, &e->n1, 0x0a, buf));
	uint8_t cp[4 + 12];
	memset(cp, 0, 4);
	memcpy(cp + 4, buf + 4, 12);
	cp[4 + 2] |= 0x04;
	uint8_t sel2[6] = { 0x15, 0x10, 0, 0, sizeof(cp), 0 };
	assert_good(run(e, &e->n1, 0, sel2, 6, cp, sizeof(cp), NULL, 0));
	uint8_t cdb[16];
	scsi_cdb_rw16(cdb, 0x88, BLOCKS, 1);
	r = run(e, &e->n1, 0, cdb, 16, NULL, 0, buf, BS < 255 ? BS : 255);
	assert_int_equal(r.sense[0], 0x72);
	assert_sense(r, 0x5, 0x21, 0x00);
	cp[4 + 2] &= (uint8_t)~0x04;
	assert_good(run(e, &e->n1, 0, sel2, 6, cp, sizeof(cp), NULL, 0));
	r = run(e, &e->n1, 0, cdb, 16, NULL, 0, buf, 255);
	assert_int_equal(r.sense[0], 0x70);
}

static void test_report_luns_and_ua(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	struct rod_vol_info v2, v3;
	assert_int_equal(rod_vol_create(e->store, "v2", VOL_SIZE, BS, &v2), 0);
	assert_int_equal(rod_vol_create(e->store, "v3", VOL_SIZE, BS, &v3), 0);
	assert_int_equal(rod_scsi_map_add(e->tgt, 1, 5, v2.id), 0);
	assert_int_equal(rod_scsi_map_add(e->tgt, 2, 0, v3.id), 0);
	/* host 1 was told its LUN inventory changed */
	assert_sense(tur(e, &e->n1), 0x6, 0x3f, 0x0e);
	uint8_t cdb[12] = { 0xa0 }, buf[256];
	rod_put_be32(cdb + 6, sizeof(buf));
	struct scsi_res r = run(e, &e->n1, 0, cdb, 12, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(rod_get_be32(buf), 16);        /* LUN 0 and 5 only */
	assert_int_equal(buf[8 + 1], 0);
	assert_int_equal(buf[16 + 1], 5);
	/* host 2 sees only its own volume */
	r = run(e, &e->n3, 0, cdb, 12, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(rod_get_be32(buf), 8);
	/* select report 02h adds the REPORT LUNS well-known LU */
	cdb[2] = 0x02;
	r = run(e, &e->n3, 0, cdb, 12, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(rod_get_be32(buf), 16);
	assert_int_equal(buf[16], 0xc1);
	assert_int_equal(buf[17], 0x01);
	/* the well-known LU answers REPORT LUNS */
	cdb[2] = 0;
	r = run(e, &e->n3, 0xC101000000000000ull, cdb, 12, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	/* after REPORT LUNS, the 3F/0E of the other LUN is cleared as well */
	assert_good(run(e, &e->n1, 0, cdb, 12, NULL, 0, buf, sizeof(buf)));
	uint8_t t6[6] = { 0 };
	struct scsi_res u = run(e, &e->n1, 5, t6, 6, NULL, 0, NULL, 0);
	/* LUN 5 is new to this nexus: it may report power-on but not 3F/0E */
	assert_false(u.status == SAM_STAT_CHECK_CONDITION && u.asc == 0x3f);

	/* unmapping: host 1 hears about it, LUN 5 is gone */
	assert_int_equal(rod_scsi_map_remove(e->tgt, 1, 5), 0);
	assert_sense(tur(e, &e->n1), 0x6, 0x3f, 0x0e);
	assert_sense(run(e, &e->n1, 5, t6, 6, NULL, 0, NULL, 0), 0x5, 0x25, 0x00);

	/* resize: 2A/09 */
	assert_int_equal(rod_vol_resize(e->store, "v1", 2 * VOL_SIZE), 0);
	rod_scsi_vol_resized(e->tgt, e->vol.id);
	assert_sense(tur(e, &e->n1), 0x6, 0x2a, 0x09);
	uint8_t rc[16] = { 0x9e, 0x10 };
	rod_put_be32(rc + 10, 32);
	r = run(e, &e->n1, 0, rc, 16, NULL, 0, buf, 32);
	assert_good(r);
	assert_int_equal(rod_get_be64(buf), 2 * BLOCKS - 1);

	/* REQUEST SENSE returns (and clears) a pending unit attention */
	rod_scsi_vol_params_changed(e->tgt, e->vol.id);
	uint8_t rs[6] = { 0x03, 0, 0, 0, 252, 0 };
	r = run(e, &e->n1, 0, rs, 6, NULL, 0, buf, 252);
	assert_good(r);
	assert_int_equal(buf[2] & 0x0f, 0x6);
	assert_int_equal(buf[12], 0x2a);
	assert_int_equal(buf[13], 0x01);
	assert_good(tur(e, &e->n1));
}

static void test_rsoc(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[12] = { 0xa3, 0x0c, 0x00 }, *buf = malloc(8192);
	rod_put_be32(cdb + 6, 8192);
	struct scsi_res r = run(e, &e->n1, 0, cdb, 12, NULL, 0, buf, 8192);
	assert_good(r);
	uint32_t len = rod_get_be32(buf);
	assert_int_equal(len % 8, 0);
	bool saw_caw = false, saw_read16 = false, saw_rc16 = false;
	for (uint32_t off = 4; off < 4 + len; off += 8) {
		uint8_t op = buf[off];
		uint16_t sa = rod_get_be16(buf + off + 2);
		saw_caw |= op == 0x89;
		saw_read16 |= op == 0x88 && rod_get_be16(buf + off + 6) == 16;
		saw_rc16 |= op == 0x9e && sa == 0x10 && (buf[off + 5] & 0x01);
		/* every listed command is executable: it is not an invalid opcode */
		assert_true(op != 0x48);
	}
	assert_true(saw_caw && saw_read16 && saw_rc16);
	/* one command: WRITE(16) usage data has FUA and DPO, and byte 0 is the opcode */
	uint8_t one[12] = { 0xa3, 0x0c, 0x01, 0x8a };
	rod_put_be32(one + 6, 64);
	r = run(e, &e->n1, 0, one, 12, NULL, 0, buf, 64);
	assert_good(r);
	assert_int_equal(buf[1] & 0x07, 3);
	assert_int_equal(rod_get_be16(buf + 2), 16);
	assert_int_equal(buf[4], 0x8a);
	assert_int_equal(buf[5] & 0x18, 0x18);
	/* one command for an opcode with service actions needs option 2 */
	one[3] = 0x9e;
	assert_sense(run(e, &e->n1, 0, one, 12, NULL, 0, buf, 64), 0x5, 0x24, 0x00);
	one[2] = 0x02;
	rod_put_be16(one + 4, 0x12);
	r = run(e, &e->n1, 0, one, 12, NULL, 0, buf, 64);
	assert_good(r);
	assert_int_equal(buf[4], 0x9e);
	assert_int_equal(buf[5] & 0x1f, 0x12);
	/* not implemented: SUPPORT 001b */
	one[2] = 0x01;
	one[3] = 0x48;
	rod_put_be16(one + 4, 0);
	r = run(e, &e->n1, 0, one, 12, NULL, 0, buf, 64);
	assert_good(r);
	assert_int_equal(buf[1] & 0x07, 1);
	free(buf);
}

static struct scsi_res prout(struct env *e, struct rod_scsi_nexus *n, uint8_t sa, uint8_t type,
			uint64_t key, uint64_t sakey, bool aptpl)
{
	uint8_t cdb[10] = { 0x5f, sa, type }, pl[24];
	rod_put_be32(cdb + 5, 24);
	memset(pl, 0, sizeof(pl));
	rod_put_be64(pl, key);
	rod_put_be64(pl + 8, sakey);
	pl[20] = aptpl ? 1 : 0;
	return run(e, n, 0, cdb, 10, pl, 24, NULL, 0);
}

static struct scsi_res write1(struct env *e, struct rod_scsi_nexus *n, uint64_t lba)
{
	uint8_t cdb[16], blk[BS];
	memset(blk, 0x42, BS);
	scsi_cdb_rw16(cdb, 0x8a, lba, 1);
	return run(e, n, 0, cdb, 16, blk, BS, NULL, 0);
}

static struct scsi_res read1(struct env *e, struct rod_scsi_nexus *n, uint64_t lba)
{
	uint8_t cdb[16], blk[BS];
	scsi_cdb_rw16(cdb, 0x88, lba, 1);
	return run(e, n, 0, cdb, 16, NULL, 0, blk, BS);
}

static void test_persistent_reservations(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	/* register both, n1 reserves write exclusive - registrants only */
	assert_good(prout(e, &e->n1, 0x00, 0, 0, 0xaa, false));
	assert_good(prout(e, &e->n2, 0x00, 0, 0, 0xbb, false));
	assert_int_equal(prout(e, &e->n2, 0x00, 0, 0x1234, 0xcc, false).status,
			 SAM_STAT_RESERVATION_CONFLICT);   /* wrong key */
	assert_good(prout(e, &e->n1, 0x01, 5, 0xaa, 0, false));
	/* registrants may write; a stranger (n2 unregisters) may read, not write */
	assert_good(write1(e, &e->n2, 10));
	assert_good(prout(e, &e->n2, 0x00, 0, 0xbb, 0, false));
	assert_int_equal(write1(e, &e->n2, 10).status, SAM_STAT_RESERVATION_CONFLICT);
	assert_good(read1(e, &e->n2, 10));

	/* READ KEYS / READ RESERVATION / READ FULL STATUS */
	uint8_t cdb[10] = { 0x5e, 0x00 }, buf[512];
	rod_put_be16(cdb + 7, sizeof(buf));
	assert_good(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be32(buf + 4), 8);
	assert_int_equal(rod_get_be64(buf + 8), 0xaa);
	cdb[1] = 0x01;
	assert_good(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be32(buf + 4), 16);
	assert_int_equal(buf[21] & 0x0f, 5);
	cdb[1] = 0x03;
	struct scsi_res r = run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(rod_get_be64(buf + 8), 0xaa);
	assert_int_equal(buf[8 + 12] & 0x01, 1);              /* R_HOLDER */
	assert_int_equal(buf[8 + 24] & 0x0f, 0x05);           /* iSCSI TransportID */
	assert_non_null(strstr((char *)buf + 8 + 28, "example:a,i,0x"));
	cdb[1] = 0x04; /* no such service action */
	assert_sense(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)), 0x5, 0x24, 0x00);

	/* n2 registers again; the holder unregisters: a registrants-only reservation is
	 * released, n2 hears 2A/04, the holder's own nexus does not */
	assert_good(prout(e, &e->n2, 0x00, 0, 0, 0xbb, false));
	assert_good(prout(e, &e->n1, 0x00, 0, 0xaa, 0, false));
	assert_good(tur(e, &e->n1));
	assert_sense(tur(e, &e->n2), 0x6, 0x2a, 0x04);
	cdb[1] = 0x01;
	assert_good(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be32(buf + 4), 0);

	/* exclusive access by n2, n1 preempts it: n2's registration goes (2A/05) */
	assert_good(prout(e, &e->n2, 0x01, 3, 0xbb, 0, false));
	assert_int_equal(read1(e, &e->n1, 0).status, SAM_STAT_RESERVATION_CONFLICT);
	assert_good(prout(e, &e->n1, 0x00, 0, 0, 0xaa, false));
	assert_good(prout(e, &e->n1, 0x04, 3, 0xaa, 0xbb, false));
	assert_sense(tur(e, &e->n2), 0x6, 0x2a, 0x05);
	assert_good(read1(e, &e->n1, 0));
	assert_int_equal(read1(e, &e->n2, 0).status, SAM_STAT_RESERVATION_CONFLICT);
	/* releasing with the wrong type: 05/26/04 */
	assert_sense(prout(e, &e->n1, 0x02, 1, 0xaa, 0, false), 0x5, 0x26, 0x04);
	/* CLEAR drops everything */
	assert_good(prout(e, &e->n1, 0x03, 0, 0xaa, 0, false));
	assert_good(read1(e, &e->n2, 0));
}

/* REGISTER AND MOVE: the holder hands its reservation to another I_T nexus named by an
 * iSCSI TransportID, registering it with the service action key. */
static void test_pr_register_and_move(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	assert_good(prout(e, &e->n1, 0x00, 0, 0, 0x11, false));
	assert_good(prout(e, &e->n1, 0x01, 1, 0x11, 0, false)); /* write exclusive */
	assert_int_equal(write1(e, &e->n2, 7).status, SAM_STAT_RESERVATION_CONFLICT);

	uint8_t cdb[10] = { 0x5f, 0x07, 0x01 }, pl[24 + 64];
	memset(pl, 0, sizeof(pl));
	rod_put_be64(pl, 0x11);
	rod_put_be64(pl + 8, 0x22);
	pl[17] = 0x02; /* UNREG: the mover lets go of its own registration */
	rod_put_be16(pl + 18, 1);
	uint8_t *tid = pl + 24;
	const char *port = e->n2.initiator_port;
	size_t l = strlen(port) + 1, tl = (l + 3) / 4 * 4;
	tid[0] = 0x40 | 0x05;
	rod_put_be16(tid + 2, (uint16_t)tl);
	memcpy(tid + 4, port, l);
	rod_put_be32(pl + 20, (uint32_t)(4 + tl));
	uint32_t plen = (uint32_t)(24 + 4 + tl);
	rod_put_be32(cdb + 5, plen);
	assert_good(run(e, &e->n1, 0, cdb, 10, pl, plen, NULL, 0));

	/* n2 holds it now with key 0x22; n1 is no longer registered */
	assert_good(write1(e, &e->n2, 7));
	assert_int_equal(write1(e, &e->n1, 7).status, SAM_STAT_RESERVATION_CONFLICT);
	uint8_t in[10] = { 0x5e, 0x01 }, buf[64];
	rod_put_be16(in + 7, sizeof(buf));
	assert_good(run(e, &e->n1, 0, in, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be64(buf + 8), 0x22);
	in[1] = 0x00;
	assert_good(run(e, &e->n1, 0, in, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be32(buf + 4), 8);
	/* moving to itself is refused */
	rod_put_be64(pl, 0x22);
	rod_put_be64(pl + 8, 0x33);
	assert_sense(run(e, &e->n2, 0, cdb, 10, pl, plen, NULL, 0), 0x5, 0x26, 0x00);
}

/* ALL_TG_PT=1 registers the initiator port through every target port; and with a
 * persistent reservation in place RESERVE(6) is GOOD (no effect) only for the holder. */
static void test_pr_all_tg_pt_and_crh(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	uint8_t cdb[10] = { 0x5f, 0x06 }, pl[24];
	rod_put_be32(cdb + 5, 24);
	memset(pl, 0, sizeof(pl));
	rod_put_be64(pl + 8, 0x77);
	pl[20] = 0x04; /* ALL_TG_PT */
	assert_good(run(e, &e->n1, 0, cdb, 10, pl, 24, NULL, 0));
	/* the same initiator port through relative target port 2 is the same registrant */
	struct rod_scsi_nexus other = e->n1;
	other.rel_port = 2;
	assert_int_equal(rod_scsi_nexus_register(e->tgt, &other), 0);
	clear_ua(e, &other);
	assert_good(prout(e, &other, 0x01, 1, 0x77, 0, false));
	uint8_t in[10] = { 0x5e, 0x03 }, buf[256];
	rod_put_be16(in + 7, sizeof(buf));
	assert_good(run(e, &e->n2, 0, in, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(buf[8 + 12], 0x03); /* ALL_TG_PT, R_HOLDER */
	/* CRH: holder's RESERVE(6) is GOOD, the other initiator's is a conflict */
	uint8_t res6[6] = { 0x16 };
	assert_good(run(e, &e->n1, 0, res6, 6, NULL, 0, NULL, 0));
	assert_int_equal(run(e, &e->n2, 0, res6, 6, NULL, 0, NULL, 0).status,
			 SAM_STAT_RESERVATION_CONFLICT);
	assert_good(write1(e, &e->n1, 1));
	assert_int_equal(write1(e, &e->n2, 1).status, SAM_STAT_RESERVATION_CONFLICT);
	rod_scsi_nexus_unregister(e->tgt, &other);
}

static void test_pr_aptpl_survives_restart(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	assert_good(prout(e, &e->n1, 0x00, 0, 0, 0x5151, true));
	assert_good(prout(e, &e->n1, 0x01, 1, 0x5151, 0, false));
	/* a new target on the same store (a daemon restart) finds the reservation */
	rod_scsi_nexus_unregister(e->tgt, &e->n1);
	rod_scsi_nexus_unregister(e->tgt, &e->n2);
	rod_scsi_nexus_unregister(e->tgt, &e->n3);
	rod_scsi_target_free(e->tgt);
	assert_int_equal(open_target(e), 0);
	assert_int_equal(rod_scsi_map_add(e->tgt, 1, 0, e->vol.id), 0);
	rod_scsi_nexus_register(e->tgt, &e->n1);
	rod_scsi_nexus_register(e->tgt, &e->n2);
	rod_scsi_nexus_register(e->tgt, &e->n3);
	clear_ua(e, &e->n2);
	assert_int_equal(write1(e, &e->n2, 3).status, SAM_STAT_RESERVATION_CONFLICT);
	uint8_t cdb[10] = { 0x5e, 0x01 }, buf[64];
	rod_put_be16(cdb + 7, sizeof(buf));
	assert_good(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be64(buf + 8), 0x5151);
	cdb[1] = 0x02; /* REPORT CAPABILITIES: PTPL_C and PTPL_A */
	assert_good(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(buf[2] & 0x01, 1);
	assert_int_equal(buf[3] & 0x01, 1);

	/* re-registering with APTPL=0 drops the saved state: nothing after a restart */
	clear_ua(e, &e->n1);
	assert_good(prout(e, &e->n1, 0x00, 0, 0x5151, 0x5252, false));
	rod_scsi_nexus_unregister(e->tgt, &e->n1);
	rod_scsi_nexus_unregister(e->tgt, &e->n2);
	rod_scsi_nexus_unregister(e->tgt, &e->n3);
	rod_scsi_target_free(e->tgt);
	assert_int_equal(open_target(e), 0);
	assert_int_equal(rod_scsi_map_add(e->tgt, 1, 0, e->vol.id), 0);
	rod_scsi_nexus_register(e->tgt, &e->n1);
	rod_scsi_nexus_register(e->tgt, &e->n2);
	rod_scsi_nexus_register(e->tgt, &e->n3);
	clear_ua(e, &e->n2);
	assert_good(write1(e, &e->n2, 3));
	cdb[1] = 0x00;
	assert_good(run(e, &e->n2, 0, cdb, 10, NULL, 0, buf, sizeof(buf)));
	assert_int_equal(rod_get_be32(buf + 4), 0);
}

static void test_spc2_reserve(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	uint8_t res6[6] = { 0x16 }, rel6[6] = { 0x17 }, buf[255];
	assert_good(run(e, &e->n1, 0, res6, 6, NULL, 0, NULL, 0));
	/* the other initiator: even MODE SENSE conflicts; INQUIRY does not */
	assert_int_equal(mode_sense6(e, &e->n2, 0x3f, buf).status, SAM_STAT_RESERVATION_CONFLICT);
	assert_int_equal(tur(e, &e->n2).status, SAM_STAT_RESERVATION_CONFLICT);
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	assert_good(run(e, &e->n2, 0, inq, 6, NULL, 0, buf, 96));
	assert_int_equal(run(e, &e->n2, 0, res6, 6, NULL, 0, NULL, 0).status,
			 SAM_STAT_RESERVATION_CONFLICT);
	/* its RELEASE is GOOD but does nothing */
	assert_good(run(e, &e->n2, 0, rel6, 6, NULL, 0, NULL, 0));
	assert_int_equal(tur(e, &e->n2).status, SAM_STAT_RESERVATION_CONFLICT);
	assert_good(mode_sense6(e, &e->n1, 0x3f, buf));
	/* a LUN reset ends it */
	assert_int_equal(rod_scsi_tmf(e->tgt, &e->n1, ROD_TMF_LOGICAL_UNIT_RESET, 0), 0);
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	assert_good(mode_sense6(e, &e->n2, 0x3f, buf));
	/* and so does the holder's logout */
	assert_good(run(e, &e->n1, 0, res6, 6, NULL, 0, NULL, 0));
	rod_scsi_nexus_unregister(e->tgt, &e->n1);
	assert_good(tur(e, &e->n2));
	rod_scsi_nexus_register(e->tgt, &e->n1);
}

/* A small store: writes past the soft threshold raise 38/07 on every nexus; a full
 * store refuses new data with 07/27/07, while reads and UNMAP keep working. */
static int setup_small(void **state)
{
	struct rod_store_opts so = { .capacity_bytes = 64ull << 20, .reserve_bytes = 16ull << 20,
				     .soft_threshold_pct = 30 };
	return setup_with(state, &so, 1ull << 30);
}

static void test_full_store(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	const uint32_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk), cdb[16];
	uint64_t x = 88172645463325252ull;
	bool soft = false, full = false;
	uint32_t lba = 0;
	for (int i = 0; i < 96 && !full; i++) {
		for (uint32_t k = 0; k < chunk / 8; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(buf + 8 * k, &x, 8);
		}
		cdb_rw10(cdb, 0x2a, lba, chunk / BS);
		struct scsi_res r = run(e, &e->n1, 0, cdb, 10, buf, chunk, NULL, 0);
		if (r.status == SAM_STAT_CHECK_CONDITION && r.key == 0x6 && r.asc == 0x38) {
			assert_int_equal(r.ascq, 0x07);
			soft = true;
			continue; /* the write did not run; do it again */
		}
		if (r.status == SAM_STAT_CHECK_CONDITION && r.key == 0x7) {
			assert_sense(r, 0x7, 0x27, 0x07);
			full = true;
			break;
		}
		assert_good(r);
		lba += chunk / BS;
		usleep(120000); /* the threshold is sampled at most every 100 ms */
	}
	assert_true(soft);
	assert_true(full);
	/* the other nexus heard of the threshold too */
	assert_sense(tur(e, &e->n2), 0x6, 0x38, 0x07);
	/* reads and UNMAP still work on a full store */
	cdb_rw10(cdb, 0x28, 0, chunk / BS);
	assert_good(run(e, &e->n1, 0, cdb, 10, NULL, 0, buf, chunk));
	uint8_t um[10] = { 0x42 }, pl[24];
	memset(pl, 0, sizeof(pl));
	rod_put_be16(pl, 22);
	rod_put_be16(pl + 2, 16);
	rod_put_be64(pl + 8, 0);
	rod_put_be32(pl + 16, chunk / BS);
	rod_put_be16(um + 7, 24);
	assert_good(run(e, &e->n1, 0, um, 10, pl, 24, NULL, 0));
	free(buf);
}

static void test_rtpg_rstmf_request_sense(void **state)
{
	struct env *e = *state;
	clear_ua(e, &e->n1);
	uint8_t cdb[12] = { 0xa3, 0x0a }, buf[64];
	rod_put_be32(cdb + 6, sizeof(buf));
	struct scsi_res r = run(e, &e->n1, 0, cdb, 12, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(rod_get_be32(buf), 12);          /* one group, one port */
	assert_int_equal(buf[4] & 0x0f, 0);               /* active/optimized */
	assert_int_equal(rod_get_be16(buf + 6), 1);       /* group 1, as in VPD 0x83 */
	assert_int_equal(rod_get_be16(buf + 4 + 10), 1);  /* relative port of this nexus */
	cdb[1] = 0x20 | 0x0a;                             /* extended header */
	r = run(e, &e->n1, 0, cdb, 12, NULL, 0, buf, sizeof(buf));
	assert_good(r);
	assert_int_equal(buf[4], 0x10);
	assert_int_equal(rod_get_be16(buf + 8 + 2), 1);

	uint8_t tm[12] = { 0xa3, 0x0d };
	rod_put_be32(tm + 6, 16);
	r = run(e, &e->n1, 0, tm, 12, NULL, 0, buf, 16);
	assert_good(r);
	assert_int_equal(r.in_len, 4);
	assert_int_equal(buf[0] & 0x88, 0x88);            /* ABORT TASK, LU RESET */

	/* REQUEST SENSE with DESC=1 and nothing pending: descriptor-format NO SENSE */
	uint8_t rs[6] = { 0x03, 0x01, 0, 0, 252, 0 };
	r = run(e, &e->n1, 0, rs, 6, NULL, 0, buf, 64);
	assert_good(r);
	assert_int_equal(buf[0], 0x72);
	assert_int_equal(buf[1] & 0x0f, 0);
	/* on a LUN without LU: 05/25/00 as sense data, GOOD status */
	rs[1] = 0;
	r = run(e, &e->n1, 9, rs, 6, NULL, 0, buf, 64);
	assert_good(r);
	assert_int_equal(buf[2] & 0x0f, 0x5);
	assert_int_equal(buf[12], 0x25);
}

static void test_lun_codec(void **state)
{
	uint8_t l[8];
	rod_scsi_lun_encode(5, l);
	assert_int_equal(l[0], 0);
	assert_int_equal(l[1], 5);
	assert_int_equal(rod_scsi_lun_decode(l), 5);
	rod_scsi_lun_encode(300, l);
	assert_int_equal(l[0], 0x41);
	assert_int_equal(rod_scsi_lun_decode(l), 300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_power_on_ua_then_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inquiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_opcode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_orwrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_caw_concurrent_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compare_and_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_same_unmap_lba_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_same_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_luns_and_ua, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rsoc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persistent_reservations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pr_register_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pr_all_tg_pt_and_crh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pr_aptpl_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spc2_reserve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_store, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_rtpg_rstmf_request_sense, setup, teardown),
		cmocka_unit_test(test_lun_codec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
