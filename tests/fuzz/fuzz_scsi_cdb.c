/* Fuzz target: the SCSI core's CDB decoding and every command handler, through
 * rod_scsi_exec on a real store-backed LU (lib/scsi over lib/store).
 *
 * Input: up to 8 commands, each
 *   [1 byte  flags]  bit 0: LUN (0 = 512-byte blocks, 1 = 4096); bits 1-3: fix-up kind
 *                    (below); bit 4: LOGICAL UNIT RESET before the command;
 *                    bit 5: sent on the second I_T nexus
 *   [16 bytes CDB]
 *   [2 bytes  Data-In buffer size, big-endian]
 *   [2 bytes  Data-Out length, big-endian, cut to what is left of the input]
 *   [Data-Out bytes]
 * A fix-up writes the opcode/service action and the PARAMETER LIST LENGTH of one of
 * the parameter-list commands into the fuzzed CDB, so those parsers get reached
 * without the fuzzer having to guess both: 1 UNMAP, 2 EXTENDED COPY (LID1),
 * 3 POPULATE TOKEN, 4 WRITE USING TOKEN, 5 WRITE USING TOKEN with a freshly minted
 * valid token placed in the list, 6 PERSISTENT RESERVE OUT, 7 MODE SELECT(10).
 * For EXTENDED COPY, 0xE4 CSCDs with an NAA designator get the NAA of LUN 0 or 1
 * written in, so copies between the two LUs happen.
 *
 * Checked after every command (abort = finding): completion called exactly once, a
 * SAM status the core may return, Data-In within the buffer, sense bounded and well
 * formed. Buffers are malloc'd at their exact size so ASan sees any overrun. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/scsi.h"
#include "rod/util.h"

#include "fuzz_env.h"

#define MAX_CMDS 8
#define MAX_IN 65536u

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

static void check(int ok, const char *what, const struct rod_scsi_cmd *c)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_scsi_cdb: %s (op %02x sa %02x status %02x in %u/%u sense %u)\n",
		what, c->cdb[0], c->cdb[1] & 0x1f, c->status, c->in_len, c->in_cap, c->sense_len);
	abort();
}

/* Run one command to completion; returns its status. in may be NULL (in_cap 0). */
static uint8_t run(struct fuzz_env *e, struct rod_scsi_nexus *n, uint64_t lun, const uint8_t cdb[16],
		   const uint8_t *out, uint32_t out_len, uint8_t *in, uint32_t in_cap,
		   uint32_t *in_len)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	struct rod_scsi_cmd c;
	memset(&c, 0, sizeof(c));
	c.nexus = n;
	c.lun = lun;
	memcpy(c.cdb, cdb, 16);
	c.cdb_len = 16;
	c.out_buf = out_len ? out : NULL;
	c.out_len = out_len;
	c.in_buf = in_cap ? in : NULL;
	c.in_cap = in_cap;
	c.dir = out_len ? ROD_SCSI_DIR_OUT : in_cap ? ROD_SCSI_DIR_IN : ROD_SCSI_DIR_NONE;
	c.exp_len = out_len ? out_len : in_cap;
	c.done = cmd_done;
	c.transport_priv = &w;
	rod_scsi_exec(e->scsi, &c);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	check(w.done == 1, "completion called more than once", &c);
	check(c.status == SAM_STAT_GOOD || c.status == SAM_STAT_CHECK_CONDITION ||
	      c.status == SAM_STAT_RESERVATION_CONFLICT || c.status == SAM_STAT_BUSY ||
	      c.status == SAM_STAT_CONDITION_MET || c.status == SAM_STAT_TASK_SET_FULL,
	      "unexpected SAM status", &c);
	check(c.in_len <= c.in_cap, "Data-In longer than the buffer", &c);
	check(c.sense_len <= ROD_SCSI_SENSE_MAX, "sense too long", &c);
	if (c.status == SAM_STAT_CHECK_CONDITION) {
		check(c.sense_len >= 8, "CHECK CONDITION without sense", &c);
		check((c.sense[0] & 0x7f) == 0x70 || (c.sense[0] & 0x7f) == 0x72,
		      "sense in an unknown format", &c);
	}
	if (getenv("FUZZ_VERBOSE")) /* replaying one input: what each command got */
		fprintf(stderr, "lun %llu op %02x/%02x out %u: status %02x sense %x/%02x/%02x in %u\n",
			(unsigned long long)lun, c.cdb[0], c.cdb[1] & 0x1f, out_len, c.status,
			c.sense_len > 13 ? c.sense[2] & 0xf : 0, c.sense_len > 13 ? c.sense[12] : 0,
			c.sense_len > 13 ? c.sense[13] : 0, c.in_len);
	/* the mutex/cond of the waiter die with this frame: a late second completion
	 * would touch a dead stack frame, which ASan's use-after-return reports */
	if (in_len)
		*in_len = c.in_len;
	return c.status;
}

/* POPULATE TOKEN over 8 blocks + RECEIVE ROD TOKEN INFORMATION: a valid token now. */
static int mint_token(struct fuzz_env *e, struct rod_scsi_nexus *n, uint64_t lun, uint8_t tok[512])
{
	uint8_t cdb[16] = { 0x83, 0x10 }, pl[32] = { 0 };
	rod_put_be32(cdb + 6, 0x0f0f0f0f);
	rod_put_be32(cdb + 10, sizeof(pl));
	rod_put_be16(pl, sizeof(pl) - 2);
	rod_put_be16(pl + 14, 16);
	rod_put_be64(pl + 16, 0);
	rod_put_be32(pl + 24, 8);
	if (run(e, n, lun, cdb, pl, sizeof(pl), NULL, 0, NULL) != SAM_STAT_GOOD)
		return -1;
	uint8_t q[16] = { 0x84, 0x07 };
	rod_put_be32(q + 2, 0x0f0f0f0f);
	rod_put_be32(q + 10, 1024);
	uint8_t *r = malloc(1024);
	uint32_t got = 0;
	int rc = -1;
	if (run(e, n, lun, q, NULL, 0, r, 1024, &got) == SAM_STAT_GOOD && got >= 32) {
		size_t off = 32u + r[13];
		if (off + 6 + 512 <= got) {
			memcpy(tok, r + off + 6, 512);
			rc = 0;
		}
	}
	free(r);
	return rc;
}

/* The NAA designators of both LUs (VPD 0x83), so EXTENDED COPY lists can name real
 * copy targets: the fuzzer cannot guess the random 16 bytes. */
static uint8_t lu_naa[2][16];
static int lu_naa_known[2];

static void learn_naa(struct fuzz_env *e, struct rod_scsi_nexus *n)
{
	for (uint64_t lun = 0; lun < 2; lun++) {
		if (lu_naa_known[lun])
			continue;
		uint8_t cdb[16] = { 0x12, 0x01, 0x83, 0x01, 0x00 };
		uint8_t *r = malloc(256);
		uint32_t got = 0;
		if (run(e, n, lun, cdb, NULL, 0, r, 256, &got) == SAM_STAT_GOOD) {
			for (uint32_t off = 4; off + 4 <= got; off += 4u + r[off + 3]) {
				/* association 0 (the LU), type 3 (NAA), 16 bytes */
				if ((r[off + 1] & 0x3f) == 0x03 && r[off + 3] == 16 && off + 20 <= got) {
					memcpy(lu_naa[lun], r + off + 4, 16);
					lu_naa_known[lun] = 1;
					break;
				}
			}
		}
		free(r);
	}
}

/* In an EXTENDED COPY list, point every 0xE4 CSCD that carries an NAA designator at
 * one of our LUs (the low bit of its first NAA byte picks which). */
static void xcopy_fix_cscds(uint8_t *l, uint32_t len)
{
	if (len < 16)
		return;
	uint32_t cscd_len = rod_get_be16(l + 2);
	for (uint32_t off = 16; off + 32 <= len && off + 32 <= 16 + cscd_len; off += 32) {
		uint8_t *d = l + off;
		if (d[0] == 0xe4 && (d[5] & 0x0f) == 0x03 && d[7] == 16) {
			unsigned lun = d[8] & 1;
			if (lu_naa_known[lun])
				memcpy(d + 8, lu_naa[lun], 16);
		}
	}
}

/* Opcode/service action and where the PARAMETER LIST LENGTH goes (offset, bytes). */
static const struct fixup {
	uint8_t op, sa;        /* sa 0xff: none */
	uint8_t len_off, len_bytes;
} fixups[8] = {
	[1] = { 0x42, 0xff, 7, 2 },    /* UNMAP */
	[2] = { 0x83, 0x00, 10, 4 },   /* EXTENDED COPY (LID1) */
	[3] = { 0x83, 0x10, 10, 4 },   /* POPULATE TOKEN */
	[4] = { 0x83, 0x11, 10, 4 },   /* WRITE USING TOKEN */
	[5] = { 0x83, 0x11, 10, 4 },   /* ... with a valid token */
	[6] = { 0x5f, 0xff, 5, 4 },    /* PERSISTENT RESERVE OUT */
	[7] = { 0x55, 0xff, 7, 2 },    /* MODE SELECT(10) */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_env *e = fuzz_env_get(1);
	/* Two fresh I_T nexuses per input (same initiator port names every time, so
	 * persistent reservations made by earlier inputs still belong to them); the
	 * second makes reservation conflicts and PREEMPT/REGISTER AND MOVE reachable. */
	struct rod_scsi_nexus nx[2];
	for (int i = 0; i < 2; i++) {
		struct rod_scsi_nexus *p = &nx[i];
		memset(p, 0, sizeof(*p));
		snprintf(p->initiator_name, sizeof(p->initiator_name), "iqn.2026-11.fuzz:ini%d", i);
		snprintf(p->initiator_port, sizeof(p->initiator_port),
			 "iqn.2026-11.fuzz:ini%d,i,0x023d0000000%d", i, i + 1);
		p->isid[0] = 0x02;
		p->isid[5] = (uint8_t)(i + 1);
		p->rel_port = 1;
		p->tpgt = 1;
		p->host_id = FUZZ_HOST_ID;
		if (rod_scsi_nexus_register(e->scsi, p))
			abort();
		/* clear the power-on unit attention of both LUNs so commands reach their
		 * handlers */
		for (uint64_t lun = 0; lun < 2; lun++)
			for (int k = 0; k < 4; k++) {
				uint8_t tur[16] = { 0 };
				if (run(e, p, lun, tur, NULL, 0, NULL, 0, NULL) == SAM_STAT_GOOD)
					break;
			}
	}
	learn_naa(e, &nx[0]);

	size_t pos = 0;
	for (int k = 0; k < MAX_CMDS && pos + 21 <= size; k++) {
		uint8_t flags = data[pos];
		uint8_t cdb[16];
		memcpy(cdb, data + pos + 1, 16);
		uint32_t in_cap = rod_get_be16(data + pos + 17);
		uint32_t out_len = rod_get_be16(data + pos + 19);
		pos += 21;
		if (out_len > size - pos)
			out_len = (uint32_t)(size - pos);
		uint64_t lun = flags & 1;
		unsigned kind = (flags >> 1) & 7;
		struct rod_scsi_nexus *np = &nx[(flags >> 5) & 1];
		uint8_t *out = out_len ? malloc(out_len) : NULL;
		if (out_len)
			memcpy(out, data + pos, out_len);
		pos += out_len;
		if (kind) {
			const struct fixup *f = &fixups[kind];
			cdb[0] = f->op;
			if (f->sa != 0xff)
				cdb[1] = (uint8_t)((cdb[1] & 0xe0) | f->sa);
			if (f->len_bytes == 2)
				rod_put_be16(cdb + f->len_off, (uint16_t)out_len);
			else
				rod_put_be32(cdb + f->len_off, out_len);
			if (kind == 2)
				xcopy_fix_cscds(out, out_len);
			if (kind == 5 && out_len >= 16 + 512) {
				uint8_t tok[512];
				if (mint_token(e, np, lun, tok) == 0)
					memcpy(out + 16, tok, 512);
			}
		}
		if (flags & 0x10)
			rod_scsi_tmf(e->scsi, np, ROD_TMF_LOGICAL_UNIT_RESET, lun);
		uint8_t *in = in_cap ? malloc(in_cap) : NULL;
		run(e, np, lun, cdb, out, out_len, in, in_cap, NULL);
		free(in);
		free(out);
	}
	for (int i = 0; i < 2; i++)
		rod_scsi_nexus_unregister(e->scsi, &nx[i]);
	return 0;
}
