/* SPC-4 primary commands: TEST UNIT READY, INQUIRY and VPD pages, REQUEST SENSE,
 * REPORT LUNS, MODE SENSE/SELECT, REPORT TARGET PORT GROUPS, REPORT SUPPORTED TASK
 * MANAGEMENT FUNCTIONS. */
#include "scsi_internal.h"
#include "target.h"
#include "tpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/util.h"

#define TPG_ID 1   /* the one target port group, always active/optimized */

void rod_spc_test_unit_ready(struct rod_scsi_task *t)
{
	rod_task_done(t);
}

/* ---- INQUIRY ------------------------------------------------------------------- */

static uint32_t lu_bs(struct rod_scsi_task *t)
{
	return t->bs ? t->bs : 512;
}

static bool vpd_8f_listed(void)
{
	return rod_tpc_implemented(SPC_EXTENDED_COPY, 0x00) ||
	       rod_tpc_implemented(SPC_EXTENDED_COPY, 0x10);
}

static size_t inquiry_standard(struct rod_scsi_task *t, uint8_t *p)
{
	struct rod_scsi_target *tgt = t->tgt;
	memset(p, 0, 96);
	if (t->lu)
		p[0] = 0x00;                 /* direct access block device */
	else if (t->cmd->lun == ROD_WLUN_REPORT_LUNS)
		p[0] = 0x1e;                 /* well-known logical unit */
	else
		p[0] = 0x7f;                 /* SPC-4 6.4.2: no LU at this LUN */
	p[2] = 0x06;                         /* VERSION: SPC-4 */
	p[3] = 0x12;                         /* HISUP, RESPONSE DATA FORMAT 2 */
	p[4] = 96 - 5;
	p[5] = 0x10;                         /* TPGS 01b: implicit ALUA */
	if (rod_tpc_implemented(SPC_EXTENDED_COPY, 0x00))
		p[5] |= 0x08;                /* 3PC */
	p[7] = 0x02;                         /* CMDQUE */
	memcpy(p + 8, tgt->vendor, 8);
	memcpy(p + 16, tgt->product, 16);
	memcpy(p + 32, tgt->revision, 4);
	/* version descriptors: SAM-5, iSCSI, SPC-4, SBC-3 */
	static const uint16_t vd[] = { 0x00a0, 0x0960, 0x0460, 0x04c0 };
	for (size_t i = 0; i < ROD_ARRAY_SIZE(vd); i++)
		rod_put_be16(p + 58 + 2 * i, vd[i]);
	return 96;
}

/* One designation descriptor: header + designator. */
static size_t desig(uint8_t *p, uint8_t proto_codeset, uint8_t piv_assoc_type, const void *d,
		    size_t len)
{
	p[0] = proto_codeset;
	p[1] = piv_assoc_type;
	p[2] = 0;
	p[3] = (uint8_t)len;
	memcpy(p + 4, d, len);
	return 4 + len;
}

/* SCSI name string designators are NUL-terminated and padded to a multiple of 4. */
static size_t desig_name(uint8_t *p, uint8_t piv_assoc_type, const char *s)
{
	uint8_t tmp[256];
	size_t len = strlen(s) + 1;
	len = ROD_MIN(ROD_ROUND_UP(len, 4), sizeof(tmp));
	memset(tmp, 0, sizeof(tmp));
	memcpy(tmp, s, ROD_MIN(strlen(s), len - 1));
	return desig(p, 0x50 | 0x03, piv_assoc_type, tmp, len);
}

static size_t vpd_83(struct rod_scsi_task *t, uint8_t *p)
{
	struct rod_scsi_lu *lu = t->lu;
	size_t n = 4;
	uint8_t tmp[64];
	/* logical unit: NAA 6 (binary), T10 vendor id (ASCII) */
	n += desig(p + n, 0x01, 0x03, lu->naa, 16);
	n += desig(p + n, 0x02, 0x01, tmp, rod_lu_t10_designator(lu, tmp));
	/* target port (PIV=1, iSCSI): relative port, port group, port name */
	uint16_t rel = t->nexus && t->nexus->rel_port ? t->nexus->rel_port : 1;
	uint16_t tpgt = t->nexus ? t->nexus->tpgt : 1;
	memset(tmp, 0, 4);
	rod_put_be16(tmp + 2, rel);
	n += desig(p + n, 0x51, 0x80 | 0x10 | 0x04, tmp, 4);
	memset(tmp, 0, 4);
	rod_put_be16(tmp + 2, TPG_ID);
	n += desig(p + n, 0x51, 0x80 | 0x10 | 0x05, tmp, 4);
	char name[300];
	snprintf(name, sizeof(name), "%s,t,0x%04x", t->tgt->name, tpgt);
	n += desig_name(p + n, 0x80 | 0x10 | 0x08, name);
	/* target device: its iSCSI name */
	n += desig_name(p + n, 0x80 | 0x20 | 0x08, t->tgt->name);
	p[1] = 0x83;
	rod_put_be16(p + 2, (uint16_t)(n - 4));
	return n;
}

static size_t vpd_b0(struct rod_scsi_task *t, uint8_t *p)
{
	uint32_t bs = lu_bs(t);
	memset(p, 0, 64);
	p[1] = 0xb0;
	rod_put_be16(p + 2, 0x3c);
	p[5] = ROD_MAX_CAW_BLOCKS;                          /* MAXIMUM COMPARE AND WRITE LENGTH */
	rod_put_be16(p + 6, (uint16_t)(bs < ROD_GRAIN ? ROD_GRAIN / bs : 1));
	rod_put_be32(p + 8, ROD_MAX_XFER_BYTES / bs);       /* MAXIMUM TRANSFER LENGTH */
	rod_put_be32(p + 12, (1u << 20) / bs);              /* OPTIMAL TRANSFER LENGTH */
	rod_put_be32(p + 20, ROD_MAX_UNMAP_BLOCKS);         /* MAXIMUM UNMAP LBA COUNT */
	rod_put_be32(p + 24, ROD_MAX_UNMAP_DESCRIPTORS);    /* ... BLOCK DESCRIPTOR COUNT */
	rod_put_be32(p + 28, bs < ROD_GRAIN ? ROD_GRAIN / bs : 1); /* OPTIMAL UNMAP GRANULARITY */
	rod_put_be32(p + 32, 0x80000000u);                  /* UGAVALID, alignment 0 */
	rod_put_be64(p + 36, ROD_MAX_WRITE_SAME_BLOCKS);    /* MAXIMUM WRITE SAME LENGTH */
	return 64;
}

static size_t vpd_b1(struct rod_scsi_task *t, uint8_t *p)
{
	memset(p, 0, 64);
	p[1] = 0xb1;
	rod_put_be16(p + 2, 0x3c);
	rod_put_be16(p + 4, 0x0001);                        /* non-rotating medium */
	return 64;
}

static size_t vpd_b2(struct rod_scsi_task *t, uint8_t *p)
{
	memset(p, 0, 8);
	p[1] = 0xb2;
	rod_put_be16(p + 2, 4);
	/* LBPU (UNMAP), LBPWS (WRITE SAME(16) UNMAP), LBPWS10, LBPRZ: all implemented,
	 * unmapped blocks read as zeros. */
	p[5] = 0x80 | 0x40 | 0x20 | 0x04;
	p[6] = 0x02;                                        /* thin provisioned */
	return 8;
}

static size_t vpd_86(struct rod_scsi_task *t, uint8_t *p)
{
	memset(p, 0, 64);
	p[1] = 0x86;
	rod_put_be16(p + 2, 0x3c);
	p[5] = 0x01;                                        /* SIMPSUP */
	p[6] = 0x01;                                        /* V_SUP: volatile cache (write-back) */
	return 64;
}

static size_t vpd_80(struct rod_scsi_task *t, uint8_t *p)
{
	memset(p, 0, 4);
	p[1] = 0x80;
	p[3] = 32;
	memcpy(p + 4, t->lu->serial, 32);
	return 36;
}

static size_t vpd_00(struct rod_scsi_task *t, uint8_t *p)
{
	static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2 };
	size_t n = 4;
	memset(p, 0, 4);
	for (size_t i = 0; i < sizeof(pages); i++) {
		if (pages[i] == 0x8f && !vpd_8f_listed())
			continue;
		p[n++] = pages[i];
	}
	rod_put_be16(p + 2, (uint16_t)(n - 4));
	return n;
}

void rod_spc_inquiry(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool evpd = cdb[1] & 0x01;
	uint8_t page = cdb[2];
	uint16_t alloc = rod_get_be16(cdb + 3);
	uint8_t buf[1024];
	size_t n = 0;
	if (!evpd) {
		if (page) {
			rod_sense_invalid_field(t, true, 2, 7);
			goto out;
		}
		n = inquiry_standard(t, buf);
		rod_task_data_in(t, buf, n, alloc);
		goto out;
	}
	if (!t->lu) {
		/* No VPD pages without a logical unit behind the LUN. */
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LOGICAL_UNIT_NOT_SUPPORTED);
		goto out;
	}
	switch (page) {
	case 0x00: n = vpd_00(t, buf); break;
	case 0x80: n = vpd_80(t, buf); break;
	case 0x83: n = vpd_83(t, buf); break;
	case 0x86: n = vpd_86(t, buf); break;
	case 0xb0: n = vpd_b0(t, buf); break;
	case 0xb1: n = vpd_b1(t, buf); break;
	case 0xb2: n = vpd_b2(t, buf); break;
	case 0x8f:
		if (vpd_8f_listed()) {
			int rc = rod_tpc_vpd_8f(t, buf, sizeof(buf));
			if (rc >= 0) {
				n = ROD_MIN((size_t)rc, sizeof(buf));
				break;
			}
		}
		/* fall through */
	default:
		rod_sense_invalid_field(t, true, 2, 7);
		goto out;
	}
	buf[0] = 0x00; /* peripheral qualifier 0, block device */
	rod_task_data_in(t, buf, n, alloc);
out:
	rod_task_done(t);
}

/* ---- REQUEST SENSE ------------------------------------------------------------------ */

void rod_spc_request_sense(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool desc = cdb[1] & 0x01;
	uint8_t alloc = cdb[4];
	uint8_t buf[ROD_SCSI_SENSE_MAX];
	size_t n;
	if (!t->lu && t->cmd->lun != ROD_WLUN_REPORT_LUNS) {
		/* SPC-4 6.37: a LUN without LU reports 05/25/00 as sense data, GOOD status */
		n = rod_sense_build(buf, desc, SENSE_ILLEGAL_REQUEST,
				    ASC_LOGICAL_UNIT_NOT_SUPPORTED, false, 0, NULL, 0);
	} else {
		uint32_t ua = t->lu && t->nexus ? rod_lu_ua_take(t->lu, t->nexus->index) : 0;
		if (ua)
			n = rod_sense_build(buf, desc, SENSE_UNIT_ATTENTION, rod_ua_asc(ua), false, 0,
					    NULL, 0);
		else
			n = rod_sense_build(buf, desc, SENSE_NO_SENSE, ASC_NO_ADDITIONAL_SENSE,
					    false, 0, NULL, 0);
	}
	rod_task_data_in(t, buf, n, alloc);
	rod_task_done(t);
}

/* ---- REPORT LUNS ------------------------------------------------------------------- */

void rod_spc_report_luns(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	uint8_t select = cdb[2];
	uint32_t alloc = rod_get_be32(cdb + 6);
	if (alloc < 16) {
		rod_sense_invalid_field(t, true, 6, -1);
		rod_task_done(t);
		return;
	}
	if (select > 0x02) {
		rod_sense_invalid_field(t, true, 2, -1);
		rod_task_done(t);
		return;
	}
	uint64_t host = t->nexus ? t->nexus->host_id : 0;
	size_t cnt = host ? rod_target_host_luns(t->tgt, host, NULL, 0) : 0;
	uint64_t *luns = calloc(cnt + 1, sizeof(*luns));
	uint8_t *buf = calloc(1, 8 + 8 * (cnt + 1));
	if (!luns || !buf) {
		free(luns);
		free(buf);
		rod_task_status(t, SAM_STAT_BUSY);
		rod_task_done(t);
		return;
	}
	t->buf = buf;
	size_t n = 0;
	if (select != 0x01 && cnt)
		n = rod_target_host_luns(t->tgt, host, luns, cnt);
	n = ROD_MIN(n, cnt);
	if (select != 0x00)
		luns[n++] = ROD_WLUN_REPORT_LUNS;
	for (size_t i = 0; i < n; i++)
		rod_scsi_lun_encode(luns[i], buf + 8 + 8 * i);
	rod_put_be32(buf, (uint32_t)(8 * n));
	free(luns);
	if (t->nexus)
		rod_target_luns_reported(t->tgt, t->nexus);
	rod_task_data_in(t, buf, 8 + 8 * n, alloc);
	rod_task_done(t);
}

/* ---- MODE SENSE / MODE SELECT ---------------------------------------------------------- */

enum { PC_CURRENT = 0, PC_CHANGEABLE = 1, PC_DEFAULT = 2, PC_SAVED = 3 };

/* One mode page image for a page control. Returns its length. */
static size_t mode_page(struct rod_scsi_task *t, uint8_t code, int pc, uint8_t *p)
{
	struct rod_scsi_lu *lu = t->lu;
	switch (code) {
	case 0x08: /* caching (SBC-3 6.4.5) */
		memset(p, 0, 20);
		p[0] = 0x08;
		p[1] = 0x12;
		if (pc == PC_CHANGEABLE)
			p[2] = 0x04;
		else if (pc == PC_CURRENT && rod_vol_cache(lu->vol) == ROD_CACHE_WRITE_BACK)
			p[2] = 0x04;            /* WCE */
		return 20;
	case 0x0a: /* control (SPC-4 7.5.8) */
		memset(p, 0, 12);
		p[0] = 0x0a;
		p[1] = 0x0a;
		if (pc == PC_CHANGEABLE) {
			p[2] = 0x04;            /* D_SENSE */
			return 12;
		}
		if (pc == PC_CURRENT && lu->d_sense)
			p[2] |= 0x04;
		p[3] = 0x10;                    /* QUEUE ALGORITHM MODIFIER 1: unrestricted */
		rod_put_be16(p + 8, 0xffff);    /* BUSY TIMEOUT PERIOD: unlimited */
		return 12;
	case 0x1c: /* informational exceptions control (SPC-4 7.5.13): none reported */
		memset(p, 0, 12);
		p[0] = 0x1c;
		p[1] = 0x0a;
		if (pc != PC_CHANGEABLE)
			p[2] = 0x08;            /* DEXCPT */
		return 12;
	}
	return 0;
}

static const uint8_t mode_pages[] = { 0x08, 0x0a, 0x1c };

void rod_spc_mode_sense(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool ten = cdb[0] == SPC_MODE_SENSE_10;
	bool dbd = cdb[1] & 0x08;
	bool llbaa = ten && (cdb[1] & 0x10);
	int pc = cdb[2] >> 6;
	uint8_t code = cdb[2] & 0x3f, sub = cdb[3];
	uint32_t alloc = ten ? rod_get_be16(cdb + 7) : cdb[4];
	uint8_t buf[512];
	size_t hdr = ten ? 8 : 4, n = hdr;

	if (pc == PC_SAVED) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_SAVING_PARAMETERS_NOT_SUPPORTED);
		goto out;
	}
	if (sub != 0 && !(code == 0x3f && sub == 0xff)) {
		rod_sense_invalid_field(t, true, 3, -1);
		goto out;
	}
	memset(buf, 0, sizeof(buf));
	if (!dbd) {
		uint64_t blocks = rod_vol_size(t->lu->vol) / lu_bs(t);
		if (llbaa) {
			rod_put_be64(buf + n, blocks);
			rod_put_be32(buf + n + 12, lu_bs(t));
			n += 16;
		} else {
			rod_put_be32(buf + n, blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks);
			rod_put_be24(buf + n + 5, lu_bs(t));
			n += 8;
		}
	}
	size_t bdlen = n - hdr;
	if (code == 0x3f) {
		for (size_t i = 0; i < sizeof(mode_pages); i++)
			n += mode_page(t, mode_pages[i], pc, buf + n);
	} else {
		size_t len = mode_page(t, code, pc, buf + n);
		if (!len) {
			rod_sense_invalid_field(t, true, 2, 5);
			goto out;
		}
		n += len;
	}
	uint8_t devspec = 0x10; /* DPOFUA; WP=0 */
	if (ten) {
		rod_put_be16(buf, (uint16_t)(n - 2));
		buf[3] = devspec;
		buf[4] = llbaa && bdlen ? 0x01 : 0;
		rod_put_be16(buf + 6, (uint16_t)bdlen);
	} else {
		buf[0] = (uint8_t)(n - 1);
		buf[2] = devspec;
		buf[3] = (uint8_t)bdlen;
	}
	rod_task_data_in(t, buf, n, alloc);
out:
	rod_task_done(t);
}

void rod_spc_mode_select(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool ten = cdb[0] == SPC_MODE_SELECT_10;
	uint32_t plen = ten ? rod_get_be16(cdb + 7) : cdb[4];
	struct rod_scsi_lu *lu = t->lu;
	if (cdb[1] & 0x01) { /* SP: we keep no saved pages */
		rod_sense_invalid_field(t, true, 1, 0);
		goto out;
	}
	if (!(cdb[1] & 0x10) && plen) { /* PF=0: vendor-specific pages, none here */
		rod_sense_invalid_field(t, true, 1, 4);
		goto out;
	}
	if (plen == 0)
		goto out;
	uint32_t got;
	const uint8_t *p = rod_task_out(t, &got);
	size_t hdr = ten ? 8 : 4;
	if (got < plen || plen < hdr) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
		goto out;
	}
	size_t bdlen = ten ? rod_get_be16(p + 6) : p[3];
	size_t off = hdr;
	if (bdlen) {
		size_t bd = ten && (p[4] & 0x01) ? 16 : 8;
		if (bdlen != bd || hdr + bdlen > plen) {
			rod_sense_invalid_field(t, false, ten ? 6 : 3, -1);
			goto out;
		}
		uint32_t bl = bd == 16 ? rod_get_be32(p + off + 12) : rod_get_be24(p + off + 5);
		if (bl != lu_bs(t)) { /* the block size cannot change through MODE SELECT */
			rod_sense_invalid_field(t, false, (uint16_t)(off + (bd == 16 ? 12 : 5)), -1);
			goto out;
		}
		off += bdlen;
	}
	/* Validate every page against current + changeable before applying any. */
	bool wce = rod_vol_cache(lu->vol) == ROD_CACHE_WRITE_BACK, new_wce = wce;
	bool dsense = lu->d_sense, new_dsense = dsense;
	while (off < plen) {
		if (plen - off < 2) {
			rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
			goto out;
		}
		uint8_t code = p[off] & 0x3f;
		if (p[off] & 0x40) { /* SPF: no subpages are changeable */
			rod_sense_invalid_field(t, false, (uint16_t)off, 6);
			goto out;
		}
		uint8_t cur[64], chg[64];
		size_t len = mode_page(t, code, PC_CURRENT, cur);
		mode_page(t, code, PC_CHANGEABLE, chg);
		if (!len) {
			rod_sense_invalid_field(t, false, (uint16_t)off, 5);
			goto out;
		}
		if (p[off + 1] != len - 2) {
			rod_sense_invalid_field(t, false, (uint16_t)(off + 1), -1);
			goto out;
		}
		if (off + len > plen) {
			rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
			goto out;
		}
		for (size_t i = 2; i < len; i++) {
			uint8_t diff = (p[off + i] ^ cur[i]) & (uint8_t)~chg[i];
			if (diff) {
				int bit = 7;
				while (!(diff & (1u << bit)))
					bit--;
				rod_sense_invalid_field(t, false, (uint16_t)(off + i), bit);
				goto out;
			}
		}
		if (code == 0x08)
			new_wce = p[off + 2] & 0x04;
		if (code == 0x0a)
			new_dsense = p[off + 2] & 0x04;
		off += len;
	}
	int me = t->nexus ? (int)t->nexus->index : -1;
	if (new_wce != wce) {
		struct rod_vol_info info;
		int rc = rod_vol_info_by_id(t->tgt->store, lu->vol_id, &info);
		if (rc == 0)
			rc = rod_vol_set_cache(t->tgt->store, info.name,
					       new_wce ? ROD_CACHE_WRITE_BACK : ROD_CACHE_WRITE_THROUGH);
		if (rc < 0) {
			rod_task_set_errno(t, rc, false);
			goto out;
		}
	}
	if (new_dsense != dsense) {
		pthread_mutex_lock(&lu->lock);
		lu->d_sense = new_dsense;
		pthread_mutex_unlock(&lu->lock);
	}
	if (new_wce != wce || new_dsense != dsense)
		rod_lu_ua_set_all(lu, ROD_UA_MODE_CHANGED, me); /* SPC-4 7.5.1: other nexuses */
	if (wce && !new_wce) {
		/* Turning the cache off makes what it held durable before we answer (on the
		 * store's commit thread, not this one). */
		struct rod_io *io = &t->io;
		memset(io, 0, sizeof(*io));
		io->op = ROD_IO_FLUSH;
		io->vol = lu->vol;
		io->done = rod_task_io_done;
		io->priv = t;
		rod_io_submit(io);
		return;
	}
out:
	rod_task_done(t);
}

/* ---- REPORT TARGET PORT GROUPS / REPORT SUPPORTED TMFs -------------------------------- */

void rod_spc_report_tpgs(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool ext = (cdb[1] >> 5) == 1;
	uint32_t alloc = rod_get_be32(cdb + 6);
	uint8_t buf[32];
	memset(buf, 0, sizeof(buf));
	size_t n = ext ? 8 : 4;
	if (ext)
		buf[4] = 0x10;            /* FORMAT TYPE 001b */
	uint8_t *d = buf + n;
	d[0] = 0x80 | 0x00;               /* PREF, active/optimized */
	d[1] = 0x01;                      /* AO_SUP */
	rod_put_be16(d + 2, TPG_ID);
	d[7] = 1;                         /* one target port */
	rod_put_be16(d + 10, t->nexus && t->nexus->rel_port ? t->nexus->rel_port : 1);
	n += 12;
	rod_put_be32(buf, (uint32_t)(n - 4));
	rod_task_data_in(t, buf, n, alloc);
	rod_task_done(t);
}

void rod_spc_report_tmfs(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool repd = cdb[2] & 0x80;
	uint32_t alloc = rod_get_be32(cdb + 6);
	if (alloc < 4) {
		rod_sense_invalid_field(t, true, 6, -1);
		rod_task_done(t);
		return;
	}
	uint8_t buf[16];
	memset(buf, 0, sizeof(buf));
	/* ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET:
	 * the functions rod_scsi_tmf completes. */
	buf[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02;
	size_t n = 4;
	if (repd) {
		buf[3] = 0x0c;
		n = 16;
	}
	rod_task_data_in(t, buf, n, alloc);
	rod_task_done(t);
}
