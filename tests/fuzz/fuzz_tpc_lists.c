/* Fuzz target: the third-party-copy parameter list parsers (lib/scsi/tpc_parse.c):
 * EXTENDED COPY (LID1), POPULATE TOKEN, WRITE USING TOKEN. UNMAP's list is parsed
 * inside its handler and is fuzzed through fuzz_scsi_cdb (fix-up kind 1).
 * Input: [1 byte parser: 0 XCOPY, 1 PT, 2 WUT][1 byte LU: bit 0 4096-byte blocks,
 *        bits 1-7 capacity shift][4 bytes PARAMETER LIST LENGTH of the CDB] + list.
 * Checked: a refused list carries an ILLEGAL REQUEST (or the key given) with a
 * field pointer inside the list or CDB; an accepted one respects every advertised
 * limit and its ranges lie inside the LU. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

#include "../../lib/scsi/tpc_parse.h"

static void bad(const char *what, unsigned long long v)
{
	fprintf(stderr, "fuzz_tpc_lists: %s (%llu)\n", what, v);
	abort();
}

static void check_ranges(const struct rod_token_range *r, uint32_t n, uint64_t total,
			 uint64_t capacity)
{
	if (n > ROD_TPC_MAX_RANGES)
		bad("too many ranges", n);
	uint64_t sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (r[i].lba > capacity || r[i].nblocks > capacity - r[i].lba)
			bad("range outside the LU", r[i].lba);
		sum += r[i].nblocks;
	}
	if (sum != total)
		bad("total differs from the ranges", total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	unsigned which = data[0] % 3;
	uint32_t bs = data[1] & 1 ? 4096 : 512;
	uint64_t capacity = 1ull << (data[1] >> 1) % 48;
	uint32_t cdb_len = rod_get_be32(data + 2);
	uint32_t len = (uint32_t)(size - 6);
	uint8_t *buf = malloc(len ? len : 1);
	memcpy(buf, data + 6, len);
	struct rod_tpc_sense s;
	memset(&s, 0, sizeof(s));
	int r;
	if (which == 0) {
		if (len == 0) {
			free(buf);
			return 0; /* the handler answers GOOD before parsing */
		}
		struct rod_xcopy_list *l = malloc(sizeof(*l));
		r = rod_xcopy_parse(buf, len, l, &s);
		if (r == 0) {
			if (l->ncscd > ROD_XCOPY_MAX_CSCD || l->nseg > ROD_XCOPY_MAX_SEGS)
				bad("xcopy counts", l->ncscd);
			for (uint32_t i = 0; i < l->ncscd; i++)
				if (l->cscd[i].desig_len > sizeof(l->cscd[i].desig))
					bad("designator length", l->cscd[i].desig_len);
			/* CSCD indexes of segments are checked when each segment runs (the
			 * handler reports that segment's number), not here. */
			for (uint32_t i = 0; i < l->nseg; i++)
				if (l->seg[i].off >= len)
					bad("segment offset", l->seg[i].off);
		}
		free(l);
	} else if (which == 1) {
		struct rod_pt_params *p = malloc(sizeof(*p));
		r = rod_pt_parse(cdb_len, buf, len, capacity, bs, p, &s);
		if (r == 0) {
			check_ranges(p->ranges, p->nranges, p->total_blocks, capacity);
			if (p->inactivity_s > ROD_TPC_MAX_INACTIVITY_S)
				bad("inactivity timeout above the limit", p->inactivity_s);
		}
		free(p);
	} else {
		struct rod_wut_params *p = malloc(sizeof(*p));
		r = rod_wut_parse(cdb_len, buf, len, capacity, bs, p, &s);
		if (r == 0)
			check_ranges(p->ranges, p->nranges, p->total_blocks, capacity);
		free(p);
	}
	if (r != 0) {
		if (r != -EINVAL)
			bad("unexpected return", (unsigned long long)-r);
		if (s.key == 0 || s.key > 0xf)
			bad("refused without a sense key", s.key);
		if (s.sksv && !s.cd && s.field >= (len > 0 ? len : 1) && s.field > cdb_len)
			bad("field pointer past the list", s.field);
	}
	free(buf);
	return 0;
}
