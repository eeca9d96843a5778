/* Copy-offload handlers inside the SCSI core, against a real store in a temp dir:
 * VPD 0x8F and RECEIVE COPY RESULTS agree, tokens cross hosts, list ids belong to
 * their I_T nexus, a removed volume revokes its tokens, the token table is bounded. */
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

#define VOL_SIZE (16ull << 20)
#define BS 512u

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *tgt;
	struct rod_vol_info v1, v2;
	struct rod_scsi_nexus n1, n2;   /* host 1 sees v1 at LUN 0; host 2 sees v2 at LUN 0 */
};

static struct scsi_res exec_cmd(struct env *e, struct rod_scsi_nexus *n, const uint8_t cdb[16],
				const void *data_out, uint32_t out_len, void *in, uint32_t in_cap)
{
	return scsi_run(e->tgt, n, 0, cdb, 16, data_out, out_len, in, in_cap);
}

#define GOOD(o) do { struct scsi_res _o = (o); if (_o.status) \
	fail_msg("status %x sense %x/%02x/%02x", _o.status, _o.key, _o.asc, _o.ascq); } while (0)
#define SENSE(o, k, a, q) do { struct scsi_res _o = (o); \
	if (_o.status != SAM_STAT_CHECK_CONDITION || _o.key != (k) || _o.asc != (a) || \
	    _o.ascq != (q)) \
		fail_msg("status %x sense %x/%02x/%02x, expected %x/%02x/%02x", _o.status, \
			 _o.key, _o.asc, _o.ascq, (k), (a), (q)); } while (0)

static void clear_ua(struct env *e, struct rod_scsi_nexus *n)
{
	uint8_t tur[16] = { 0 };

	for (int i = 0; i < 10; i++)
		if (exec_cmd(e, n, tur, NULL, 0, NULL, 0).status == SAM_STAT_GOOD)
			return;
	fail_msg("unit attentions did not clear");
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct rod_store_opts so = { .array_name = "tpc" };
	struct rod_scsi_target_opts to = { .target_name = "iqn.2026-11.io.rodstore:tpc" };

	if (scsi_store_open(e->dir, sizeof(e->dir), "rodtpc", &so, &e->store) < 0 ||
	    rod_vol_create(e->store, "v1", VOL_SIZE, BS, &e->v1) < 0 ||
	    rod_vol_create(e->store, "v2", VOL_SIZE, BS, &e->v2) < 0)
		return -1;
	to.store = e->store;
	if (rod_scsi_target_new(&to, &e->tgt) < 0 ||
	    rod_scsi_map_add(e->tgt, 1, 0, e->v1.id) < 0 ||
	    rod_scsi_map_add(e->tgt, 2, 0, e->v2.id) < 0)
		return -1;
	scsi_nexus_init(&e->n1, "iqn.2026-11.test:one", 1, 1);
	scsi_nexus_init(&e->n2, "iqn.2026-11.test:two", 2, 2);
	rod_scsi_nexus_register(e->tgt, &e->n1);
	rod_scsi_nexus_register(e->tgt, &e->n2);
	clear_ua(e, &e->n1);
	clear_ua(e, &e->n2);
	*state = e;
	return 0;
}

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

/* ---- command builders --------------------------------------------------------------- */

static struct scsi_res inquiry_vpd(struct env *e, uint8_t page, void *buf, uint16_t alloc)
{
	uint8_t cdb[16] = { 0x12, 0x01, page };

	rod_put_be16(cdb + 3, alloc);
	return exec_cmd(e, &e->n1, cdb, NULL, 0, buf, alloc);
}

static struct scsi_res populate(struct env *e, struct rod_scsi_nexus *n, uint32_t list_id,
			   uint64_t lba, uint32_t nblocks)
{
	uint8_t cdb[16] = { 0x83, 0x10 }, pl[32] = { 0 };

	rod_put_be32(cdb + 6, list_id);
	rod_put_be32(cdb + 10, sizeof(pl));
	rod_put_be16(pl, sizeof(pl) - 2);
	rod_put_be16(pl + 14, 16);
	rod_put_be64(pl + 16, lba);
	rod_put_be32(pl + 24, nblocks);
	return exec_cmd(e, n, cdb, pl, sizeof(pl), NULL, 0);
}

static struct scsi_res rrti(struct env *e, struct rod_scsi_nexus *n, uint32_t list_id, uint8_t *r,
		       uint32_t cap)
{
	uint8_t cdb[16] = { 0x84, 0x07 };

	rod_put_be32(cdb + 2, list_id);
	rod_put_be32(cdb + 10, cap);
	return exec_cmd(e, n, cdb, NULL, 0, r, cap);
}

static struct scsi_res write_using(struct env *e, struct rod_scsi_nexus *n, const uint8_t tok[512],
			      uint64_t lba, uint32_t nblocks)
{
	uint8_t cdb[16] = { 0x83, 0x11 }, pl[552] = { 0 };

	rod_put_be32(cdb + 6, 99);
	rod_put_be32(cdb + 10, sizeof(pl));
	rod_put_be16(pl, sizeof(pl) - 2);
	memcpy(pl + 16, tok, 512);
	rod_put_be16(pl + 534, 16);
	rod_put_be64(pl + 536, lba);
	rod_put_be32(pl + 544, nblocks);
	return exec_cmd(e, n, cdb, pl, sizeof(pl), NULL, 0);
}

static struct scsi_res rw16(struct env *e, struct rod_scsi_nexus *n, bool write, uint64_t lba,
		       uint32_t nblocks, void *buf)
{
	uint8_t cdb[16] = { write ? 0x8A : 0x88 };

	rod_put_be64(cdb + 2, lba);
	rod_put_be32(cdb + 10, nblocks);
	return write ? exec_cmd(e, n, cdb, buf, nblocks * BS, NULL, 0)
		     : exec_cmd(e, n, cdb, NULL, 0, buf, nblocks * BS);
}

/* Find descriptor type in a 0x8F page; returns its offset or 0. */
static size_t find_desc(const uint8_t *p, size_t len, uint16_t type)
{
	for (size_t off = 4; off + 4 <= len; off += 4u + rod_get_be16(p + off + 2))
		if (rod_get_be16(p + off) == type)
			return off;
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_vpd_8f_agrees_with_op_params(void **state)
{
	struct env *e = *state;
	uint8_t p[1024], r[256], cdb[16] = { 0x84, 0x03 };
	size_t len, d;

	GOOD(inquiry_vpd(e, 0x8F, p, sizeof(p)));
	len = 4u + rod_get_be16(p + 2);
	assert_int_equal(p[1], 0x8F);
	/* Windows: first descriptor is block device ROD token limits, length 0x20 */
	assert_int_equal(rod_get_be16(p + 4), 0x0000);
	assert_int_equal(rod_get_be16(p + 6), 0x0020);
	assert_int_equal(rod_get_be16(p + 4 + 10), 64);            /* max range descriptors */
	assert_int_equal(rod_get_be32(p + 4 + 16), 60);            /* default inactivity */
	assert_true(rod_get_be32(p + 4 + 12) >= 60);
	/* descriptors tile the page exactly */
	{
		size_t off = 4;
		while (off < len)
			off += 4u + rod_get_be16(p + off + 2);
		assert_int_equal(off, len);
	}
	rod_put_be32(cdb + 10, sizeof(r));
	GOOD(exec_cmd(e, &e->n1, cdb, NULL, 0, r, sizeof(r)));
	d = find_desc(p, len, 0x0004);                              /* parameter data */
	assert_int_not_equal(d, 0);
	assert_int_equal(rod_get_be16(p + d + 8), rod_get_be16(r + 8));   /* max CSCDs */
	assert_int_equal(rod_get_be16(p + d + 10), rod_get_be16(r + 10)); /* max segments */
	assert_int_equal(rod_get_be32(p + d + 12), rod_get_be32(r + 12)); /* max list length */
	assert_int_equal(rod_get_be32(p + d + 16), rod_get_be32(r + 20)); /* max inline */
	d = find_desc(p, len, 0x8001);                              /* general copy operations */
	assert_int_not_equal(d, 0);
	assert_int_equal(rod_get_be32(p + d + 4), rod_get_be16(r + 34));  /* total concurrent */
	assert_int_equal(rod_get_be32(p + d + 8), r[36]);                 /* max identified */
	assert_int_equal(rod_get_be32(p + d + 12), rod_get_be32(r + 16)); /* max segment length */
	assert_int_equal(p[d + 16], r[37]);                               /* granularity */
	d = find_desc(p, len, 0x0008);                              /* supported descriptors */
	assert_int_equal(p[d + 4], r[43]);
	assert_memory_equal(p + d + 5, r + 44, r[43]);
	d = find_desc(p, len, 0x0001);                              /* supported commands */
	assert_int_not_equal(d, 0);
	{
		static const uint8_t want[] = { 0x83, 3, 0x00, 0x10, 0x11, 0x84, 4, 0x00, 0x03, 0x07, 0x08 };
		assert_int_equal(p[d + 4], sizeof(want));
		assert_memory_equal(p + d + 5, want, sizeof(want));
	}
	d = find_desc(p, len, 0x0108);                              /* supported ROD types */
	assert_int_not_equal(d, 0);
	assert_int_equal(rod_get_be32(p + d + 8), 0x00800000);
	/* a short allocation length truncates, it is not an error */
	memset(r, 0xee, sizeof(r));
	GOOD(inquiry_vpd(e, 0x8F, r, 8));
	assert_memory_equal(r, p, 8);
	/* VPD 0x00 lists 0x8F, in ascending order (Windows needs both) */
	GOOD(inquiry_vpd(e, 0x00, r, 255));
	{
		bool found = false;
		for (unsigned i = 0; i < r[3]; i++) {
			if (i)
				assert_true(r[4 + i] > r[3 + i]);
			found |= r[4 + i] == 0x8F;
		}
		assert_true(found);
	}
}

static void test_token_across_hosts_and_nexus_scope(void **state)
{
	struct env *e = *state;
	uint8_t *data = malloc(64 * BS), *back = malloc(64 * BS), r[1024], tok[512];
	size_t off;

	for (unsigned i = 0; i < 64 * BS; i++)
		data[i] = (uint8_t)(i * 7 + 3);
	GOOD(rw16(e, &e->n1, true, 100, 64, data));
	GOOD(populate(e, &e->n1, 5, 100, 64));
	/* list ids belong to the I_T nexus: the other host's nexus does not see 5 */
	SENSE(rrti(e, &e->n2, 5, r, sizeof(r)), 0x5, 0x24, 0x00);
	GOOD(rrti(e, &e->n1, 5, r, sizeof(r)));
	assert_int_equal(r[4], 0x10);                   /* response to POPULATE TOKEN */
	assert_int_equal(r[5], 0x01);                   /* completed */
	assert_int_equal(r[15], 0xF1);
	assert_int_equal(rod_get_be64(r + 16), 64);
	off = 32u + r[13];
	assert_int_equal(rod_get_be32(r + off), 514);   /* Windows insists on 514 */
	assert_int_equal(rod_get_be16(r + off + 4), 0);
	memcpy(tok, r + off + 6, 512);
	/* host 2 writes it into its own volume */
	GOOD(write_using(e, &e->n2, tok, 0, 64));
	GOOD(rw16(e, &e->n2, false, 0, 64, back));
	assert_memory_equal(back, data, 64 * BS);
	/* RRTI for that WRITE USING TOKEN on host 2's nexus: completed, 64 blocks, no token */
	GOOD(rrti(e, &e->n2, 99, r, sizeof(r)));
	assert_int_equal(r[4], 0x11);
	assert_int_equal(r[5], 0x01);
	assert_int_equal(rod_get_be64(r + 16), 64);
	assert_int_equal(rod_get_be32(r + 32 + r[13]), 0);
	free(data);
	free(back);
}

static void test_removed_volume_revokes_tokens(void **state)
{
	struct env *e = *state;
	uint8_t r[1024], tok[512];

	GOOD(populate(e, &e->n1, 6, 0, 8));
	GOOD(rrti(e, &e->n1, 6, r, sizeof(r)));
	memcpy(tok, r + 32 + r[13] + 6, 512);
	GOOD(write_using(e, &e->n2, tok, 0, 8));
	rod_scsi_vol_removed(e->tgt, e->v1.id);
	SENSE(write_using(e, &e->n2, tok, 0, 8), 0x5, 0x23, 0x06);
}

static uint32_t report_all_tokens(struct env *e, uint8_t *r, uint32_t cap)
{
	uint8_t cdb[16] = { 0x84, 0x08 };

	rod_put_be32(cdb + 10, cap);
	GOOD(exec_cmd(e, &e->n1, cdb, NULL, 0, r, cap));
	return rod_get_be32(r) >= 4 ? (rod_get_be32(r) - 4) / 96 : 0;
}

static void test_idle_tokens_end_without_traffic(void **state)
{
	struct env *e = *state;
	uint8_t cdb[16] = { 0x83, 0x10 }, pl[32] = { 0 }, r[2048], tok[512];

	/* POPULATE TOKEN with a 1 s inactivity timeout */
	rod_put_be32(cdb + 6, 8);
	rod_put_be32(cdb + 10, sizeof(pl));
	rod_put_be16(pl, sizeof(pl) - 2);
	rod_put_be32(pl + 4, 1);
	rod_put_be16(pl + 14, 16);
	rod_put_be32(pl + 24, 8);
	GOOD(exec_cmd(e, &e->n1, cdb, pl, sizeof(pl), NULL, 0));
	GOOD(rrti(e, &e->n1, 8, r, sizeof(r)));
	memcpy(tok, r + 32 + r[13] + 6, 512);
	/* REPORT ALL ROD TOKENS lists it by its first 96 bytes */
	assert_int_equal(report_all_tokens(e, r, sizeof(r)), 1);
	assert_memory_equal(r + 8, tok, 96);
	/* no ODX command at all for 2.5 s: the array ends it by itself */
	usleep(2500000);
	assert_int_equal(report_all_tokens(e, r, sizeof(r)), 0);
	SENSE(write_using(e, &e->n2, tok, 0, 8), 0x5, 0x23, 0x07);
}

/* Start a command without waiting; wait_cmd collects it. */
struct pending {
	struct rod_scsi_cmd c;
	struct scsi_wait w;
};

static void start_cmd(struct env *e, struct pending *p, struct rod_scsi_nexus *n,
		      const uint8_t cdb[16], const void *out, uint32_t out_len)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->w.mu, NULL);
	pthread_cond_init(&p->w.cv, NULL);
	p->c.nexus = n;
	memcpy(p->c.cdb, cdb, 16);
	p->c.cdb_len = 16;
	p->c.out_buf = out;
	p->c.out_len = out_len;
	p->c.exp_len = out_len;
	p->c.done = scsi_wait_done;
	p->c.transport_priv = &p->w;
	rod_scsi_exec(e->tgt, &p->c);
}

static struct scsi_res wait_cmd(struct pending *p)
{
	scsi_wait(&p->w);
	return scsi_res_of(&p->c);
}

static void test_list_id_in_use(void **state)
{
	struct env *e = *state;
	uint8_t r[1024], tok[512], cdb[16] = { 0x83, 0x11 };
	static uint8_t pl[536 + 64 * 16], pl2[552];
	struct pending a, b;

	GOOD(populate(e, &e->n1, 9, 0, 64 * 8));
	GOOD(rrti(e, &e->n1, 9, r, sizeof(r)));
	memcpy(tok, r + 32 + r[13] + 6, 512);
	/* a WRITE USING TOKEN of 64 ranges (64 engine copies, each waiting for its commit)
	 * and, while it runs, another one with the same list id on the same nexus */
	rod_put_be16(pl, sizeof(pl) - 2);
	memcpy(pl + 16, tok, 512);
	rod_put_be16(pl + 534, 64 * 16);
	for (int i = 0; i < 64; i++) {
		rod_put_be64(pl + 536 + 16 * i, 4096 + 16 * i);
		rod_put_be32(pl + 536 + 16 * i + 8, 8);
	}
	rod_put_be32(cdb + 6, 4242);
	rod_put_be32(cdb + 10, sizeof(pl));
	memcpy(pl2, pl, 552);
	rod_put_be16(pl2, sizeof(pl2) - 2);
	rod_put_be16(pl2 + 534, 16);
	start_cmd(e, &a, &e->n2, cdb, pl, sizeof(pl));
	rod_put_be32(cdb + 10, sizeof(pl2));
	start_cmd(e, &b, &e->n2, cdb, pl2, sizeof(pl2));
	SENSE(wait_cmd(&b), 0x5, 0x00, 0x16);            /* OPERATION IN PROGRESS */
	GOOD(wait_cmd(&a));
	/* once it completed, the id is free again */
	GOOD(exec_cmd(e, &e->n2, cdb, pl2, sizeof(pl2), NULL, 0));
	/* the same id on another nexus never conflicts */
	GOOD(exec_cmd(e, &e->n1, cdb, pl2, sizeof(pl2), NULL, 0));
}

static void put_seg(uint8_t *d, uint16_t n, uint64_t slba, uint64_t dlba)
{
	memset(d, 0, 28);
	d[0] = 0x02;
	rod_put_be16(d + 2, 0x18);
	rod_put_be16(d + 4, 0xFFFF);             /* both ends: the LU that got the command */
	rod_put_be16(d + 6, 0xFFFF);
	rod_put_be16(d + 10, n);
	rod_put_be64(d + 12, slba);
	rod_put_be64(d + 20, dlba);
}

static void test_xcopy_segments_in_order(void **state)
{
	struct env *e = *state;
	uint8_t cdb[16] = { 0x83, 0x00 }, pl[16 + 3 * 28] = { 0 }, r[64];
	uint8_t *data = malloc(32 * BS), *back = malloc(32 * BS), *zero = calloc(1, 32 * BS);
	uint8_t rcr[16] = { 0x84, 0x00, 3 };

	for (unsigned i = 0; i < 32 * BS; i++)
		data[i] = (uint8_t)(i * 13 + 1);
	GOOD(rw16(e, &e->n1, true, 0, 32, data));
	/* three segments; the third runs past the end of the LU */
	pl[0] = 3;                                 /* list id 3, usage 00b (held) */
	rod_put_be32(pl + 8, 3 * 28);
	put_seg(pl + 16, 16, 0, 1000);
	put_seg(pl + 16 + 28, 16, 16, 2000);
	put_seg(pl + 16 + 56, 16, 0, VOL_SIZE / BS - 8);
	rod_put_be32(cdb + 10, sizeof(pl));
	{
		struct scsi_res c = scsi_run(e->tgt, &e->n1, 0, cdb, 16, pl, sizeof(pl), NULL, 0);

		assert_int_equal(c.status, SAM_STAT_CHECK_CONDITION);
		assert_true(c.sense_len >= 18);
		assert_int_equal(c.sense[2] & 0x0f, 0x0A);          /* COPY ABORTED */
		assert_int_equal(c.sense[0], 0xF0);                 /* INFORMATION valid */
		assert_int_equal(rod_get_be32(c.sense + 3), VOL_SIZE / BS - 8);  /* the LBA */
		assert_int_equal(rod_get_be32(c.sense + 8), 2);     /* failing segment */
		assert_int_equal(c.sense[15], 0x80 | 0x20);         /* SKSV, SD */
		assert_int_equal(rod_get_be16(c.sense + 16), 16 + 56); /* its offset */
	}
	/* segments 0 and 1 were copied before segment 2 failed */
	GOOD(rw16(e, &e->n1, false, 1000, 16, back));
	assert_memory_equal(back, data, 16 * BS);
	GOOD(rw16(e, &e->n1, false, 2000, 16, back));
	assert_memory_equal(back, data + 16 * BS, 16 * BS);
	GOOD(rw16(e, &e->n1, false, VOL_SIZE / BS - 8, 8, back));
	assert_memory_equal(back, zero, 8 * BS);
	/* COPY STATUS: completed with error, 2 segments processed, 16 KiB transferred */
	rod_put_be32(rcr + 10, sizeof(r));
	GOOD(exec_cmd(e, &e->n1, rcr, NULL, 0, r, sizeof(r)));
	assert_int_equal(r[4], 2);
	assert_int_equal(rod_get_be16(r + 5), 2);
	assert_int_equal(r[7], 0);
	assert_int_equal(rod_get_be32(r + 8), 32 * BS);
	free(data);
	free(back);
	free(zero);
}

static void test_offload_switched_off(void **state)
{
	struct env *e = *state;
	uint8_t r[1024], tok[512];

	GOOD(populate(e, &e->n1, 11, 0, 8));
	GOOD(rrti(e, &e->n1, 11, r, sizeof(r)));
	memcpy(tok, r + 32 + r[13] + 6, 512);
	/* off for v2: WRITE USING TOKEN into it is "not implemented", so hosts fall back;
	 * v1 still makes tokens */
	assert_int_equal(rod_vol_set_offload(e->store, "v2", false), 0);
	SENSE(write_using(e, &e->n2, tok, 0, 8), 0x5, 0x20, 0x00);
	SENSE(populate(e, &e->n2, 12, 0, 8), 0x5, 0x20, 0x00);
	GOOD(populate(e, &e->n1, 13, 0, 8));
	assert_int_equal(rod_vol_set_offload(e->store, "v2", true), 0);
	GOOD(write_using(e, &e->n2, tok, 0, 8));
}

/* WRITE USING TOKEN of 64 ranges x 8 blocks from the token of list id 20, IMMED set. */
static struct scsi_res wut_immed_64(struct env *e, uint32_t list_id, const uint8_t tok[512])
{
	uint8_t cdb[16] = { 0x83, 0x11 };
	static uint8_t pl[536 + 64 * 16];

	memset(pl, 0, sizeof(pl));
	rod_put_be16(pl, sizeof(pl) - 2);
	pl[2] = 0x01;                                   /* IMMED */
	memcpy(pl + 16, tok, 512);
	rod_put_be16(pl + 534, 64 * 16);
	for (int i = 0; i < 64; i++) {
		rod_put_be64(pl + 536 + 16 * i, 8192 + 16 * i);
		rod_put_be32(pl + 536 + 16 * i + 8, 8);
	}
	rod_put_be32(cdb + 6, list_id);
	rod_put_be32(cdb + 10, sizeof(pl));
	return exec_cmd(e, &e->n2, cdb, pl, sizeof(pl), NULL, 0);
}

static void test_wut_immed(void **state)
{
	struct env *e = *state;
	uint8_t *data = malloc(512 * BS), *back = malloc(8 * BS), r[1024], tok[512];
	int polls = 0;

	for (unsigned i = 0; i < 512 * BS; i++)
		data[i] = (uint8_t)(i * 31 + 5);
	GOOD(rw16(e, &e->n1, true, 0, 512, data));
	GOOD(populate(e, &e->n1, 20, 0, 512));
	GOOD(rrti(e, &e->n1, 20, r, sizeof(r)));
	memcpy(tok, r + 32 + r[13] + 6, 512);
	GOOD(wut_immed_64(e, 21, tok));
	/* RRTI: in progress in the background (0x12) until completed (0x01) */
	for (;;) {
		GOOD(rrti(e, &e->n2, 21, r, sizeof(r)));
		assert_int_equal(r[4], 0x11);
		if (r[5] == 0x01)
			break;
		assert_int_equal(r[5], 0x12);
		assert_true(++polls < 5000);
		usleep(1000);
	}
	assert_int_equal(rod_get_be64(r + 16), 512);
	for (int i = 0; i < 64; i += 9) {
		GOOD(rw16(e, &e->n2, false, 8192 + 16 * i, 8, back));
		assert_memory_equal(back, data + (size_t)i * 8 * BS, 8 * BS);
	}
	free(data);
	free(back);
}

/* The target is freed while an IMMED copy still runs: it waits for it (ASan checks). */
static void test_wut_immed_then_shutdown(void **state)
{
	struct env *e = *state;
	uint8_t r[1024], tok[512];

	GOOD(populate(e, &e->n1, 22, 0, 512));
	GOOD(rrti(e, &e->n1, 22, r, sizeof(r)));
	memcpy(tok, r + 32 + r[13] + 6, 512);
	GOOD(wut_immed_64(e, 23, tok));
}

static void test_token_table_is_bounded(void **state)
{
	struct env *e = *state;
	struct scsi_res o;
	unsigned made = 0;

	/* Tokens are cheap (a pin each) but finite: past the table size POPULATE TOKEN
	 * fails with INSUFFICIENT RESOURCES TO CREATE ROD TOKEN, and nothing before
	 * that fails. */
	for (;;) {
		o = populate(e, &e->n1, 1000 + made, made % 1000, 1);
		if (o.status)
			break;
		made++;
		if (made > 20000)
			fail_msg("more than 20000 live tokens accepted");
	}
	SENSE(o, 0x5, 0x55, 0x0D);
	assert_true(made >= 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vpd_8f_agrees_with_op_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_across_hosts_and_nexus_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_volume_revokes_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_tokens_end_without_traffic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_id_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xcopy_segments_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offload_switched_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wut_immed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wut_immed_then_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_table_is_bounded, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
