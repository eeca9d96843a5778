/* Third-party-copy parameter list parsers (see tpc_parse.h). Validation order follows
 * what hosts and libiscsi's test-tool expect: list-length errors before descriptor
 * counts, descriptor counts before descriptor types (facts from FreeBSD CTL's
 * ctl_tpc.c and libiscsi test_extendedcopy_*). */
#include "tpc_parse.h"

#include <errno.h>
#include <string.h>

#include "rod/util.h"

#define SK_ILLEGAL_REQUEST 0x05

static int fail(struct rod_tpc_sense *s, uint8_t asc, uint8_t ascq)
{
	memset(s, 0, sizeof(*s));
	s->key = SK_ILLEGAL_REQUEST;
	s->asc = asc;
	s->ascq = ascq;
	return -EINVAL;
}

static int fail_field(struct rod_tpc_sense *s, uint8_t asc, uint8_t ascq, bool cd, uint16_t field)
{
	fail(s, asc, ascq);
	s->sksv = true;
	s->cd = cd;
	s->field = field;
	return -EINVAL;
}

/* ---- EXTENDED COPY (LID1) ------------------------------------------------------- */

static int parse_cscd(const uint8_t *d, uint16_t off, struct rod_xcopy_cscd *c,
		      struct rod_tpc_sense *s)
{
	uint8_t dlen = d[7];

	/* Only identification descriptors: a copy target is named by its VPD 0x83
	 * designator (SPC-4 6.4.6.2), which is all a block array can resolve. */
	if (d[0] != 0xE4)
		return fail_field(s, 0x26, 0x07, false, off);
	/* Bits 7..6 (LU ID TYPE) and 5 (NUL, obsolete) are ignored, as SPC-4 allows. */
	c->pdt = d[1] & 0x1f;
	if (c->pdt != 0x00)
		return fail_field(s, 0x26, 0x00, false, off + 1);
	if (dlen > 20)
		return fail_field(s, 0x26, 0x00, false, off + 7);
	memset(c->desig, 0, sizeof(c->desig));
	memcpy(c->desig, d + 4, 4u + dlen);
	c->desig_len = (uint8_t)(4u + dlen);
	c->disk_block_len = rod_get_be24(d + 29);
	c->off = off;
	return 0;
}

int rod_xcopy_parse(const uint8_t *buf, uint32_t len, struct rod_xcopy_list *out,
		    struct rod_tpc_sense *s)
{
	uint32_t cscd_len, seg_len, inline_len, pos, end;

	if (len < ROD_XCOPY_HDR_LEN)
		return fail(s, 0x1A, 0x00);
	memset(out, 0, offsetof(struct rod_xcopy_list, cscd));
	out->list_id = buf[0];
	out->str = buf[1] & 0x20;
	out->list_id_usage = (buf[1] >> 3) & 3;
	out->priority = buf[1] & 7;
	cscd_len = rod_get_be16(buf + 2);
	seg_len = rod_get_be32(buf + 8);
	inline_len = rod_get_be32(buf + 12);

	if ((uint64_t)cscd_len + seg_len > ROD_XCOPY_MAX_LIST_LEN)
		return fail(s, 0x1A, 0x00);
	if (inline_len > ROD_XCOPY_MAX_INLINE)
		return fail_field(s, 0x26, 0x0B, false, 12);
	if ((uint64_t)ROD_XCOPY_HDR_LEN + cscd_len + seg_len + inline_len > len)
		return fail(s, 0x1A, 0x00);
	if (cscd_len / ROD_XCOPY_CSCD_LEN > ROD_XCOPY_MAX_CSCD)
		return fail_field(s, 0x26, 0x06, false, 2);

	/* CSCD descriptors: every type we accept is 32 bytes long. */
	pos = ROD_XCOPY_HDR_LEN;
	end = pos + cscd_len;
	while (pos < end) {
		if (buf[pos] != 0xE4)
			return fail_field(s, 0x26, 0x07, false, (uint16_t)pos);
		if (end - pos < ROD_XCOPY_CSCD_LEN)
			return fail_field(s, 0x26, 0x00, false, 2);
		if (parse_cscd(buf + pos, (uint16_t)pos, &out->cscd[out->ncscd], s))
			return -EINVAL;
		out->ncscd++;
		pos += ROD_XCOPY_CSCD_LEN;
	}

	/* Segment descriptors. */
	end = pos + seg_len;
	while (pos < end) {
		const uint8_t *d = buf + pos;
		struct rod_xcopy_seg *g;

		if (out->nseg == ROD_XCOPY_MAX_SEGS)
			return fail_field(s, 0x26, 0x08, false, 8);
		if (end - pos < 4)
			return fail_field(s, 0x26, 0x00, false, 8);
		if (d[0] != 0x02)
			return fail_field(s, 0x26, 0x09, false, (uint16_t)pos);
		if (rod_get_be16(d + 2) != ROD_XCOPY_SEG_B2B_LEN - 4)
			return fail_field(s, 0x26, 0x00, false, (uint16_t)(pos + 2));
		if (end - pos < ROD_XCOPY_SEG_B2B_LEN)
			return fail_field(s, 0x26, 0x00, false, 8);
		g = &out->seg[out->nseg++];
		g->type = d[0];
		g->dc = d[1] & 0x02;
		g->cat = d[1] & 0x01;
		g->src = rod_get_be16(d + 4);
		g->dst = rod_get_be16(d + 6);
		g->nblocks = rod_get_be16(d + 10);
		g->src_lba = rod_get_be64(d + 12);
		g->dst_lba = rod_get_be64(d + 20);
		g->off = (uint16_t)pos;
		pos += ROD_XCOPY_SEG_B2B_LEN;
	}
	return 0;
}

/* ---- ranges --------------------------------------------------------------------- */

int rod_tpc_check_ranges(const struct rod_token_range *r, uint32_t n, uint64_t capacity,
			 uint64_t max_total, uint16_t list_off, uint16_t len_field_off,
			 uint64_t *total, struct rod_tpc_sense *s)
{
	uint64_t sum = 0;

	if (n > ROD_TPC_MAX_RANGES)
		return fail_field(s, 0x26, 0x08, false, len_field_off);
	for (uint32_t i = 0; i < n; i++) {
		/* SBC-3: a descriptor with NUMBER OF LOGICAL BLOCKS 0 contributes nothing,
		 * but its LBA must still be a real one. */
		if (r[i].lba > capacity || r[i].nblocks > capacity - r[i].lba) {
			fail(s, 0x21, 0x00);
			s->info_valid = true;
			s->info = r[i].lba;
			return -EINVAL;
		}
		sum += r[i].nblocks;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (!r[i].nblocks)
			continue;
		for (uint32_t j = i + 1; j < n; j++) {
			if (!r[j].nblocks)
				continue;
			if (r[i].lba < r[j].lba + r[j].nblocks && r[j].lba < r[i].lba + r[i].nblocks)
				return fail_field(s, 0x26, 0x00, false,
						  (uint16_t)(list_off + j * ROD_RANGE_DESC_LEN));
		}
	}
	if (sum > max_total)
		return fail_field(s, 0x26, 0x00, false, len_field_off);
	*total = sum;
	return 0;
}

static void read_ranges(const uint8_t *p, uint32_t n, struct rod_token_range *r)
{
	for (uint32_t i = 0; i < n; i++, p += ROD_RANGE_DESC_LEN) {
		r[i].lba = rod_get_be64(p);
		r[i].nblocks = rod_get_be32(p + 8);
	}
}

/* Shared header checks of PT and WUT: hdr = header size, rdl_off = offset of the
 * BLOCK DEVICE RANGE DESCRIPTOR LENGTH field. Returns the number of ranges. */
static int check_list(uint32_t cdb_len_field, const uint8_t *buf, uint32_t len, uint32_t hdr,
		      uint16_t rdl_off, uint32_t *nranges, struct rod_tpc_sense *s)
{
	uint32_t eff = cdb_len_field < len ? cdb_len_field : len;
	uint32_t data_len, rdl;

	if (cdb_len_field < hdr || cdb_len_field > hdr + ROD_TPC_MAX_RANGES * ROD_RANGE_DESC_LEN)
		return fail_field(s, 0x24, 0x00, true, 10);
	if (eff < hdr)
		return fail(s, 0x1A, 0x00);
	data_len = rod_get_be16(buf);
	rdl = rod_get_be16(buf + rdl_off);
	if (data_len + 2 < hdr)
		return fail_field(s, 0x26, 0x00, false, 0);
	if (rdl == 0 || rdl % ROD_RANGE_DESC_LEN)
		return fail_field(s, 0x26, 0x00, false, rdl_off);
	if (rdl / ROD_RANGE_DESC_LEN > ROD_TPC_MAX_RANGES)
		return fail_field(s, 0x26, 0x08, false, rdl_off);
	if (hdr + rdl > data_len + 2)
		return fail_field(s, 0x26, 0x00, false, rdl_off);
	if (hdr + rdl > eff)
		return fail(s, 0x1A, 0x00);
	*nranges = rdl / ROD_RANGE_DESC_LEN;
	return 0;
}

int rod_pt_parse(uint32_t cdb_len_field, const uint8_t *buf, uint32_t len, uint64_t capacity,
		 uint32_t block_size, struct rod_pt_params *out, struct rod_tpc_sense *s)
{
	uint32_t n;

	if (check_list(cdb_len_field, buf, len, ROD_PT_HDR_LEN, 14, &n, s))
		return -EINVAL;
	out->immed = buf[2] & 0x01;
	out->rtv = buf[2] & 0x02;
	out->inactivity_s = rod_get_be32(buf + 4);
	if (out->inactivity_s > ROD_TPC_MAX_INACTIVITY_S)
		return fail_field(s, 0x26, 0x00, false, 4);
	out->rod_type = ROD_TOKEN_TYPE_PIT;
	if (out->rtv) {
		uint32_t type = rod_get_be32(buf + 8);

		/* Our pins are point in time and survive source writes, so both PIT
		 * flavours (and "any PIT") are the same token. */
		if (type == ROD_TOKEN_TYPE_PIT_PERSISTENT)
			out->rod_type = type;
		else if (type != ROD_TOKEN_TYPE_PIT && type != 0x0080FFFFu)
			return fail_field(s, 0x26, 0x00, false, 8);
	}
	out->nranges = n;
	read_ranges(buf + ROD_PT_HDR_LEN, n, out->ranges);
	return rod_tpc_check_ranges(out->ranges, n, capacity, ROD_TPC_MAX_TOKEN_BYTES / block_size,
				    ROD_PT_HDR_LEN, 14, &out->total_blocks, s);
}

int rod_wut_parse(uint32_t cdb_len_field, const uint8_t *buf, uint32_t len, uint64_t capacity,
		  uint32_t block_size, struct rod_wut_params *out, struct rod_tpc_sense *s)
{
	uint32_t n;

	if (check_list(cdb_len_field, buf, len, ROD_WUT_HDR_LEN, 534, &n, s))
		return -EINVAL;
	out->immed = buf[2] & 0x01;
	out->del_tkn = buf[2] & 0x02;
	out->offset_into_rod = rod_get_be64(buf + 8);
	memcpy(out->token, buf + 16, ROD_TOKEN_LEN);
	out->nranges = n;
	read_ranges(buf + ROD_WUT_HDR_LEN, n, out->ranges);
	return rod_tpc_check_ranges(out->ranges, n, capacity, ROD_TPC_MAX_TOKEN_BYTES / block_size,
				    ROD_WUT_HDR_LEN, 534, &out->total_blocks, s);
}
