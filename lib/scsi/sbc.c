/* SBC-3 block commands over the store's asynchronous I/O (rod_io_submit): the network
 * thread never waits for a sync; the task completes from the store's callback. */
#include "scsi_internal.h"
#include "target.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/util.h"

#define PATTERN_CHUNK (1u << 20)   /* WRITE SAME with a non-zero block: bytes per write */

static uint64_t lu_blocks(struct rod_scsi_task *t)
{
	return rod_vol_size(t->lu->vol) / t->bs;
}

bool rod_sbc_check_range(struct rod_scsi_task *t, uint64_t lba, uint64_t nblocks)
{
	uint64_t total = lu_blocks(t);
	if (lba > total || nblocks > total - lba) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	return true;
}

/* Decode LBA and TRANSFER LENGTH of READ/WRITE/VERIFY/WRITE AND VERIFY/PRE-FETCH/
 * SYNCHRONIZE CACHE/WRITE SAME by CDB size. */
static void decode_rw(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	switch (cdb[0] >> 5) {
	case 0: /* 6-byte */
		t->lba = rod_get_be24(cdb + 1) & 0x1fffff;
		t->nblocks = cdb[4] ? cdb[4] : 256; /* SBC-3 5.7: 0 means 256 */
		break;
	case 1:
	case 2: /* 10-byte */
		t->lba = rod_get_be32(cdb + 2);
		t->nblocks = rod_get_be16(cdb + 7);
		break;
	case 5: /* 12-byte */
		t->lba = rod_get_be32(cdb + 2);
		t->nblocks = rod_get_be32(cdb + 6);
		break;
	case 4: /* 16-byte */
		t->lba = rod_get_be64(cdb + 2);
		t->nblocks = rod_get_be32(cdb + 10);
		break;
	}
}

/* Common checks of a data-transfer command: range, transfer limit, Data-Out present.
 * Sets cmd->xfer_len. */
static bool check_xfer(struct rod_scsi_task *t, bool data_out)
{
	if (!rod_sbc_check_range(t, t->lba, t->nblocks))
		return false;
	uint64_t bytes = (uint64_t)t->nblocks * t->bs;
	if (bytes > ROD_MAX_XFER_BYTES) {
		/* SBC-3 5.x: more than MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB on the
		 * TRANSFER LENGTH field. */
		unsigned byte = t->cmd->cdb[0] >> 5 == 0 ? 4 : t->cmd->cdb[0] >> 5 == 4 ? 10 :
				t->cmd->cdb[0] >> 5 == 5 ? 6 : 7;
		rod_sense_invalid_field(t, true, (uint16_t)byte, -1);
		return false;
	}
	t->cmd->xfer_len = (uint32_t)bytes;
	if (data_out && t->cmd->out_len < bytes) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CMD_IU);
		return false;
	}
	return true;
}

static void submit(struct rod_scsi_task *t, enum rod_io_op op, unsigned flags, uint64_t off,
		   uint64_t len, void *buf, void (*done)(struct rod_io *))
{
	struct rod_io *io = &t->io;
	memset(io, 0, sizeof(*io));
	io->op = op;
	io->flags = flags;
	io->vol = t->lu->vol;
	io->off = off;
	io->len = len;
	io->buf = buf;
	io->done = done;
	io->priv = t;
	rod_io_submit(io);
}

/* ---- READ ---------------------------------------------------------------------------- */

static void read_bounce_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result == 0) {
		/* The initiator's buffer is smaller than the command: send what fits (the
		 * transport reports the overflow residual). */
		struct rod_scsi_cmd *c = t->cmd;
		uint32_t n = ROD_MIN(c->in_cap, (uint32_t)io->len);
		if (n && c->in_buf)
			memcpy(c->in_buf, t->buf, n);
		c->in_len = c->in_buf ? n : 0;
	}
	rod_task_io_done(io);
}

static void read_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result == 0)
		t->cmd->in_len = (uint32_t)io->len;
	rod_task_io_done(io);
}

void rod_sbc_read(struct rod_scsi_task *t)
{
	decode_rw(t);
	if (!check_xfer(t, false))
		goto fail;
	uint64_t len = (uint64_t)t->nblocks * t->bs;
	if (len == 0)
		goto fail; /* nothing to do: GOOD */
	struct rod_scsi_cmd *c = t->cmd;
	if (c->in_buf && c->in_cap >= len) {
		submit(t, ROD_IO_READ, 0, t->lba * t->bs, len, c->in_buf, read_done);
		return;
	}
	t->buf = malloc(len);
	if (!t->buf) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail;
	}
	submit(t, ROD_IO_READ, 0, t->lba * t->bs, len, t->buf, read_bounce_done);
	return;
fail:
	rod_task_done(t);
}

/* ---- WRITE, WRITE AND VERIFY --------------------------------------------------------- */

static void write_common(struct rod_scsi_task *t, bool fua);

static void write_resume(struct rod_scsi_task *t)
{
	write_common(t, t->arg[3] != 0);
}

static void write_common(struct rod_scsi_task *t, bool fua)
{
	if (t->stage == 0) {
		t->stage = 1;
		t->arg[3] = fua;
		if (rod_task_test_delay(t, write_resume))
			return;
	}
	if (t->stage == 1) {
		/* large writes: the store's per-grain work runs on the write worker while
		 * the network thread reads the next command's data */
		t->stage = 2;
		if (rod_task_offload(t, t->cmd->out_len, write_resume))
			return;
	}
	decode_rw(t);
	if (!check_xfer(t, false))
		goto fail;
	uint64_t len = (uint64_t)t->nblocks * t->bs;
	/* FCP-4/iSCSI: with less Data-Out than the CDB asks for (EDTL < SPDTL), write the
	 * whole blocks that arrived and report the overflow residual (libiscsi's
	 * iSCSIResiduals expect exactly that); nothing beyond them is touched. */
	if (t->cmd->out_len < len)
		len = ROD_ROUND_DOWN((uint64_t)t->cmd->out_len, t->bs);
	if (len == 0)
		goto fail;
	submit(t, ROD_IO_WRITE, fua ? ROD_IO_FUA : 0, t->lba * t->bs, len,
	       (void *)t->cmd->out_buf, rod_task_io_done);
	return;
fail:
	rod_task_done(t);
}

void rod_sbc_write(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool fua = cdb[0] != SBC_WRITE_6 && (cdb[1] & 0x08);
	write_common(t, fua);
}

void rod_sbc_write_verify(struct rod_scsi_task *t)
{
	/* The store returns a write only once it is stored with its checksum; FUA makes it
	 * durable as "verified on the medium" implies. BYTCHK=1 would compare the data
	 * just written with itself. */
	write_common(t, true);
}

/* ---- VERIFY ---------------------------------------------------------------------- */

static void verify_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result == -EILSEQ) {
		rod_sense_info(t, SENSE_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, io->miscompare_off);
		rod_task_done(t);
		return;
	}
	rod_task_io_done(io);
}

/* BYTCHK=11b: one block of Data-Out is compared with every block of the range. */
static void verify_same_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result == 0) {
		const uint8_t *pat = t->cmd->out_buf;
		const uint8_t *d = t->buf;
		for (uint64_t off = 0; off < io->len; off++) {
			if (d[off] != pat[off % t->bs]) {
				rod_sense_info(t, SENSE_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, off);
				rod_task_done(t);
				return;
			}
		}
	}
	rod_task_io_done(io);
}

static void read_check_done(struct rod_io *io)
{
	/* BYTCHK=0: the medium is verified by reading it (chunk checksums). */
	rod_task_io_done(io);
}

void rod_sbc_verify(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	unsigned bytchk = (cdb[1] >> 1) & 0x03;
	decode_rw(t);
	if (bytchk == 2) {
		rod_sense_invalid_field(t, true, 1, 2);
		goto fail;
	}
	if (!rod_sbc_check_range(t, t->lba, t->nblocks))
		goto fail;
	uint64_t len = (uint64_t)t->nblocks * t->bs;
	if (len > ROD_MAX_XFER_BYTES) {
		rod_sense_invalid_field(t, true, cdb[0] == SBC_VERIFY_16 ? 10 :
					cdb[0] == SBC_VERIFY_12 ? 6 : 7, -1);
		goto fail;
	}
	if (len == 0)
		goto fail;
	uint64_t need = bytchk == 1 ? len : bytchk == 3 ? t->bs : 0;
	t->cmd->xfer_len = (uint32_t)need;
	if (t->cmd->out_len < need) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CMD_IU);
		goto fail;
	}
	if (bytchk == 1) {
		submit(t, ROD_IO_VERIFY, 0, t->lba * t->bs, len, (void *)t->cmd->out_buf,
		       verify_done);
		return;
	}
	t->buf = malloc(len);
	if (!t->buf) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail;
	}
	submit(t, ROD_IO_READ, 0, t->lba * t->bs, len, t->buf,
	       bytchk == 3 ? verify_same_done : read_check_done);
	return;
fail:
	rod_task_done(t);
}

/* ---- PRE-FETCH, SYNCHRONIZE CACHE ---------------------------------------------------- */

void rod_sbc_pre_fetch(struct rod_scsi_task *t)
{
	decode_rw(t);
	if (rod_sbc_check_range(t, t->lba, t->nblocks)) {
		/* SBC-3 5.9: CONDITION MET when the range would fit in the cache. Our metadata
		 * cache decides on its own; report GOOD ("not all of it may be cached"). */
	}
	rod_task_done(t);
}

void rod_sbc_sync_cache(struct rod_scsi_task *t)
{
	decode_rw(t);
	if (!rod_sbc_check_range(t, t->lba, t->nblocks)) {
		rod_task_done(t);
		return;
	}
	submit(t, ROD_IO_FLUSH, 0, 0, 0, NULL, rod_task_io_done);
}

/* ---- WRITE SAME -------------------------------------------------------------------------- */

static void ws_pattern_next(struct rod_io *io);
static bool unmap_range_step(struct rod_scsi_task *t, void (*done)(struct rod_io *));
static void ws_unmap_next(struct rod_io *io);

static void ws_pattern_submit(struct rod_scsi_task *t)
{
	uint64_t end = (t->lba + t->nblocks) * t->bs;
	uint64_t off = t->arg[0];
	uint64_t len = ROD_MIN((uint64_t)PATTERN_CHUNK, end - off);
	submit(t, ROD_IO_WRITE, 0, off, len, t->buf, ws_pattern_next);
}

static void ws_pattern_next(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	uint64_t end = (t->lba + t->nblocks) * t->bs;
	if (io->result < 0 || io->off + io->len >= end) {
		rod_task_io_done(io);
		return;
	}
	t->arg[0] = io->off + io->len;
	ws_pattern_submit(t);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

void rod_sbc_write_same(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool ws16 = cdb[0] == SBC_WRITE_SAME_16;
	bool unmap = cdb[1] & 0x08;
	bool ndob = ws16 && (cdb[1] & 0x01);
	decode_rw(t);
	uint64_t total = lu_blocks(t);
	uint64_t n = t->nblocks;
	if (t->lba > total) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		goto fail;
	}
	if (n == 0)
		n = total - t->lba;    /* WSNZ=0: to the last block */
	if (n > ROD_MAX_WRITE_SAME_BLOCKS) {
		rod_sense_invalid_field(t, true, ws16 ? 10 : 7, -1);
		goto fail;
	}
	if (!rod_sbc_check_range(t, t->lba, n))
		goto fail;
	t->nblocks = (uint32_t)n;
	const uint8_t *pat = NULL;
	if (!ndob) {
		t->cmd->xfer_len = t->bs;
		if (t->cmd->out_len != t->bs) {
			/* Exactly one block of Data-Out (SBC-3 5.42). */
			rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CMD_IU);
			goto fail;
		}
		pat = t->cmd->out_buf;
	}
	if (n == 0)
		goto fail;
	uint64_t off = t->lba * t->bs, len = n * t->bs;
	/* UNMAP=1 deallocates whatever the Data-Out holds (as LIO and CTL do; libiscsi's
	 * WriteSame*.UnmapUntilEnd sends 0xFF blocks and expects zeros back, LBPRZ=1). */
	if (unmap || !pat || all_zero(pat, t->bs)) {
		/* without UNMAP the range is zeroed and stays allocated */
		if (unmap) {
			t->arg[2] = off;
			t->arg[3] = off + len;
			unmap_range_step(t, ws_unmap_next);
		} else {
			submit(t, ROD_IO_ZERO, 0, off, len, NULL, rod_task_io_done);
		}
		return;
	}
	size_t chunk = (size_t)ROD_MIN((uint64_t)PATTERN_CHUNK, len);
	t->buf = malloc(chunk);
	if (!t->buf) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail;
	}
	for (size_t i = 0; i < chunk; i += t->bs)
		memcpy((uint8_t *)t->buf + i, pat, t->bs);
	t->arg[0] = off;
	ws_pattern_submit(t);
	return;
fail:
	rod_task_done(t);
}

/* ---- UNMAP --------------------------------------------------------------------------- */

/* Deallocation works on whole 4 KiB grains. Blocks of a 512e volume that share a grain
 * with blocks outside the range are zeroed instead (LBPRZ: they read as zeros either
 * way), so the aligned middle is unmapped and a partial head/tail is zeroed.
 * arg[2]..arg[3]: the byte range still to do. Returns false when it is empty. */
static bool unmap_range_step(struct rod_scsi_task *t, void (*done)(struct rod_io *))
{
	uint64_t off = t->arg[2], end = t->arg[3];
	if (off >= end)
		return false;
	uint64_t piece;
	enum rod_io_op op;
	if (off % ROD_GRAIN) {
		piece = ROD_MIN(end, ROD_ROUND_UP(off, ROD_GRAIN)) - off;
		op = ROD_IO_ZERO;
	} else if (end - off >= ROD_GRAIN) {
		piece = ROD_ROUND_DOWN(end, ROD_GRAIN) - off;
		op = ROD_IO_UNMAP;
	} else {
		piece = end - off;
		op = ROD_IO_ZERO;
	}
	t->arg[2] = off + piece;
	submit(t, op, 0, off, piece, NULL, done);
	return true;
}

static void unmap_next(struct rod_io *io);

static void unmap_submit(struct rod_scsi_task *t)
{
	uint32_t got;
	const uint8_t *p = rod_task_out(t, &got);
	if (unmap_range_step(t, unmap_next))
		return;
	/* arg[0]: next descriptor index, arg[1]: descriptor count */
	while (t->arg[0] < t->arg[1]) {
		const uint8_t *d = p + 8 + 16 * t->arg[0]++;
		uint64_t lba = rod_get_be64(d);
		uint32_t cnt = rod_get_be32(d + 8);
		if (cnt == 0)
			continue;
		t->arg[2] = lba * t->bs;
		t->arg[3] = (lba + cnt) * t->bs;
		if (unmap_range_step(t, unmap_next))
			return;
	}
	rod_task_done(t);
}

static void ws_unmap_next(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result < 0 || !unmap_range_step(t, ws_unmap_next))
		rod_task_io_done(io);
}

static void unmap_next(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result < 0) {
		rod_task_io_done(io);
		return;
	}
	unmap_submit(t);
}

void rod_sbc_unmap(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	uint32_t plen = rod_get_be16(cdb + 7);
	uint32_t got;
	const uint8_t *p = rod_task_out(t, &got);
	t->cmd->xfer_len = plen;
	if (plen == 0)
		goto done; /* SBC-3 5.28: not an error */
	if (got < plen) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CMD_IU);
		goto done;
	}
	if (plen < 8) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
		goto done;
	}
	uint32_t dlen = rod_get_be16(p), bdlen = rod_get_be16(p + 2);
	if (dlen + 2u > plen || bdlen + 8u > plen || bdlen % 16) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
		goto done;
	}
	uint32_t n = bdlen / 16;
	if (n > ROD_MAX_UNMAP_DESCRIPTORS) {
		rod_sense_invalid_field(t, false, 2, -1);
		goto done;
	}
	uint64_t total = lu_blocks(t), sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *d = p + 8 + 16 * i;
		uint64_t lba = rod_get_be64(d);
		uint32_t cnt = rod_get_be32(d + 8);
		if (lba > total || cnt > total - lba) {
			rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
			goto done;
		}
		sum += cnt;
	}
	if (sum > ROD_MAX_UNMAP_BLOCKS) {
		rod_sense_invalid_field(t, false, 8 + 8, -1);
		goto done;
	}
	t->arg[0] = 0;
	t->arg[1] = n;
	unmap_submit(t);
	return;
done:
	rod_task_done(t);
}

/* ---- COMPARE AND WRITE ---------------------------------------------------------------- */

static void caw_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result == -EILSEQ) {
		/* SBC-3 5.2: INFORMATION = offset of the first differing byte. */
		rod_sense_info(t, SENSE_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY, io->miscompare_off);
		rod_task_done(t);
		return;
	}
	rod_task_io_done(io);
}

void rod_sbc_compare_and_write(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	t->lba = rod_get_be64(cdb + 2);
	t->nblocks = cdb[13];
	bool fua = cdb[1] & 0x08;
	/* More blocks than MAXIMUM COMPARE AND WRITE LENGTH, or 0 blocks with data sent
	 * (a count that did not fit the field): INVALID FIELD IN CDB. */
	if (t->nblocks > ROD_MAX_CAW_BLOCKS || (t->nblocks == 0 && t->cmd->out_len)) {
		rod_sense_invalid_field(t, true, 13, -1);
		goto fail;
	}
	if (!rod_sbc_check_range(t, t->lba, t->nblocks))
		goto fail;
	uint64_t len = (uint64_t)t->nblocks * t->bs;
	t->cmd->xfer_len = (uint32_t)(2 * len);
	if (t->cmd->out_len != 2 * len) {
		/* The Data-Out must be exactly the verify + write instances. */
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CMD_IU);
		goto fail;
	}
	if (len == 0)
		goto fail;
	submit(t, ROD_IO_CAW, fua ? ROD_IO_FUA : 0, t->lba * t->bs, len, (void *)t->cmd->out_buf,
	       caw_done);
	return;
fail:
	rod_task_done(t);
}

/* ---- READ CAPACITY, GET LBA STATUS ---------------------------------------------------- */

void rod_sbc_read_capacity_10(struct rod_scsi_task *t)
{
	uint8_t buf[8];
	uint64_t last = lu_blocks(t) - 1;
	rod_put_be32(buf, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
	rod_put_be32(buf + 4, t->bs);
	rod_task_data_in(t, buf, 8, 8);
	rod_task_done(t);
}

static void read_capacity_16(struct rod_scsi_task *t)
{
	uint32_t alloc = rod_get_be32(t->cmd->cdb + 10);
	uint8_t buf[32];
	memset(buf, 0, sizeof(buf));
	rod_put_be64(buf, lu_blocks(t) - 1);
	rod_put_be32(buf + 8, t->bs);
	/* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT: 4 KiB grains */
	unsigned exp = 0;
	while ((t->bs << exp) < ROD_GRAIN)
		exp++;
	buf[13] = (uint8_t)exp;
	buf[14] = 0x80 | 0x40;  /* LBPME (thin), LBPRZ (unmapped reads zeros) */
	rod_task_data_in(t, buf, 32, alloc);
	rod_task_done(t);
}

static void get_lba_status(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	uint64_t lba = rod_get_be64(cdb + 2);
	uint32_t alloc = rod_get_be32(cdb + 10);
	uint64_t total = lu_blocks(t);
	if (lba >= total) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		rod_task_done(t);
		return;
	}
	size_t maxd = alloc > 8 ? (alloc - 8) / 16 : 0;
	if (maxd == 0)
		maxd = 1; /* still compute the first so the header's length is right */
	if (maxd > 64)
		maxd = 64;
	uint8_t buf[8 + 64 * 16];
	memset(buf, 0, sizeof(buf));
	size_t n = 0;
	uint64_t cur = lba;
	while (n < maxd && cur < total) {
		bool mapped = false;
		uint64_t len = 0;
		uint64_t max_len = ROD_MIN(total - cur, (uint64_t)UINT32_MAX) * t->bs;
		int rc = rod_vol_lba_status(t->lu->vol, cur * t->bs, max_len, &mapped, &len);
		if (rc < 0) {
			rod_task_set_errno(t, rc, false);
			rod_task_done(t);
			return;
		}
		uint64_t blocks = len / t->bs;
		if (blocks == 0)
			blocks = 1;
		uint8_t *d = buf + 8 + 16 * n;
		rod_put_be64(d, cur);
		rod_put_be32(d + 8, (uint32_t)ROD_MIN(blocks, (uint64_t)UINT32_MAX));
		d[12] = mapped ? 0x00 : 0x01;   /* mapped / deallocated */
		n++;
		cur += blocks;
	}
	rod_put_be32(buf, (uint32_t)(4 + 16 * n));
	rod_task_data_in(t, buf, 8 + 16 * n, alloc);
	rod_task_done(t);
}

void rod_sbc_service_action_in_16(struct rod_scsi_task *t)
{
	if ((t->cmd->cdb[1] & 0x1f) == 0x10)
		read_capacity_16(t);
	else
		get_lba_status(t);
}

/* ---- START STOP UNIT ---------------------------------------------------------------- */

void rod_sbc_start_stop_unit(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool start = cdb[4] & 0x01, no_flush = cdb[4] & 0x04;
	unsigned pc = cdb[4] >> 4;
	/* A virtual, non-removable unit: it never spins down and has no medium to eject.
	 * Stopping makes the cache durable (SBC-3 5.25, NO_FLUSH=0). */
	if (!start && pc == 0 && !no_flush) {
		submit(t, ROD_IO_FLUSH, 0, 0, 0, NULL, rod_task_io_done);
		return;
	}
	rod_task_done(t);
}

/* ---- ORWRITE(16) ------------------------------------------------------------------- */

/* SBC-3 5.13: new = old OR Data-Out. Made atomic against concurrent writers with the
 * store's compare-and-write: read, OR, then CAW(old -> new); a miscompare means
 * somebody wrote in between, so read again (bounded). t->buf: old | new. */
#define ORWRITE_RETRIES 16

static void orwrite_read_done(struct rod_io *io);

static void orwrite_caw_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result == -EILSEQ && ++t->stage < ORWRITE_RETRIES) {
		uint64_t len = (uint64_t)t->nblocks * t->bs;
		submit(t, ROD_IO_READ, 0, t->lba * t->bs, len, t->buf, orwrite_read_done);
		return;
	}
	if (io->result == -EILSEQ)
		io->result = -EBUSY; /* kept losing the race: BUSY, the initiator retries */
	rod_task_io_done(io);
}

static void orwrite_read_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	if (io->result < 0) {
		rod_task_io_done(io);
		return;
	}
	uint64_t len = (uint64_t)t->nblocks * t->bs;
	const uint8_t *in = t->cmd->out_buf;
	uint8_t *old = t->buf, *new = old + len;
	for (uint64_t i = 0; i < len; i++)
		new[i] = old[i] | in[i];
	submit(t, ROD_IO_CAW, (unsigned)t->arg[0], t->lba * t->bs, len, t->buf, orwrite_caw_done);
}

void rod_sbc_orwrite(struct rod_scsi_task *t)
{
	decode_rw(t);
	if (!check_xfer(t, true))
		goto fail;
	uint64_t len = (uint64_t)t->nblocks * t->bs;
	if (len == 0)
		goto fail;
	t->arg[0] = (t->cmd->cdb[1] & 0x08) ? ROD_IO_FUA : 0;
	t->buf = malloc(2 * len);
	if (!t->buf) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail;
	}
	submit(t, ROD_IO_READ, 0, t->lba * t->bs, len, t->buf, orwrite_read_done);
	return;
fail:
	rod_task_done(t);
}

/* ---- READ DEFECT DATA ------------------------------------------------------------------ */

void rod_sbc_read_defect_data(struct rod_scsi_task *t)
{
	/* No media defects: the requested lists are valid and empty (SBC-3 5.16/5.17). */
	const uint8_t *cdb = t->cmd->cdb;
	bool twelve = cdb[0] == SBC_READ_DEFECT_DATA_12;
	uint8_t req = twelve ? cdb[1] : cdb[2];
	uint32_t alloc = twelve ? rod_get_be32(cdb + 6) : rod_get_be16(cdb + 7);
	uint8_t buf[8];
	memset(buf, 0, sizeof(buf));
	buf[1] = req & 0x1f;  /* PLISTV, GLISTV as requested; the format echoed */
	rod_task_data_in(t, buf, twelve ? 8 : 4, alloc);
	rod_task_done(t);
}
