/* Parameter-list validation of EXTENDED COPY (LID1), POPULATE TOKEN and WRITE USING
 * TOKEN: each malformed list gets the sense key / ASC / ASCQ / field pointer a host
 * (and libiscsi's test-tool) expects. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/scsi/tpc_parse.h"
#include "rod/util.h"

static const uint8_t NAA[16] = { 0x60, 0x2a, 0x0d, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static void put_cscd(uint8_t *d)
{
	memset(d, 0, 32);
	d[0] = 0xE4;
	d[4] = 0x01;          /* code set binary */
	d[5] = 0x03;          /* association LU, type NAA */
	d[7] = 16;
	memcpy(d + 8, NAA, 16);
	rod_put_be24(d + 29, 512);
}

static void put_seg(uint8_t *d, uint16_t src, uint16_t dst, uint16_t n, uint64_t slba, uint64_t dlba)
{
	memset(d, 0, 28);
	d[0] = 0x02;
	rod_put_be16(d + 2, 0x18);
	rod_put_be16(d + 4, src);
	rod_put_be16(d + 6, dst);
	rod_put_be16(d + 10, n);
	rod_put_be64(d + 12, slba);
	rod_put_be64(d + 20, dlba);
}

/* A list with ncscd CSCDs and nseg segments; returns its length. */
static uint32_t build_xcopy(uint8_t *b, unsigned ncscd, unsigned nseg)
{
	uint32_t pos = 16;

	memset(b, 0, 16);
	b[0] = 7;
	b[1] = 0x10;          /* LIST ID USAGE 10b */
	rod_put_be16(b + 2, (uint16_t)(ncscd * 32));
	rod_put_be32(b + 8, nseg * 28);
	for (unsigned i = 0; i < ncscd; i++, pos += 32)
		put_cscd(b + pos);
	for (unsigned i = 0; i < nseg; i++, pos += 28)
		put_seg(b + pos, 0, ncscd > 1 ? 1 : 0, 8, i * 8, 1000 + i * 8);
	return pos;
}

#define EXPECT_SENSE(s, k, a, q) do { \
	assert_int_equal((s).key, k); assert_int_equal((s).asc, a); assert_int_equal((s).ascq, q); \
} while (0)

static void test_xcopy_good(void **state)
{
	uint8_t *b = calloc(1, 8192);
	struct rod_xcopy_list *l = malloc(sizeof(*l));
	struct rod_tpc_sense s;
	uint32_t len = build_xcopy(b, 2, 3);

	assert_int_equal(rod_xcopy_parse(b, len, l, &s), 0);
	assert_int_equal(l->list_id, 7);
	assert_int_equal(l->list_id_usage, 2);
	assert_int_equal(l->ncscd, 2);
	assert_int_equal(l->nseg, 3);
	assert_int_equal(l->cscd[1].desig_len, 20);
	assert_memory_equal(l->cscd[1].desig + 4, NAA, 16);
	assert_int_equal(l->cscd[0].disk_block_len, 512);
	assert_int_equal(l->seg[2].src, 0);
	assert_int_equal(l->seg[2].dst, 1);
	assert_int_equal(l->seg[2].nblocks, 8);
	assert_int_equal(l->seg[2].src_lba, 16);
	assert_int_equal(l->seg[2].dst_lba, 1016);
	assert_int_equal(l->seg[2].off, 16 + 64 + 56);
	/* LU ID TYPE 11b and the NUL bit are ignored (SPC-4) */
	b[16 + 1] = 0xE0;
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), 0);
	free(b);
	free(l);
}

static void test_xcopy_lengths(void **state)
{
	uint8_t *b = calloc(1, 8192);
	struct rod_xcopy_list *l = malloc(sizeof(*l));
	struct rod_tpc_sense s;
	uint32_t len = build_xcopy(b, 1, 1);

	/* header shorter than 16 */
	assert_int_equal(rod_xcopy_parse(b, 15, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x1A, 0x00);
	/* truncated inside the CSCD, inside the segment (libiscsi ParamHdr) */
	assert_int_equal(rod_xcopy_parse(b, 16 + 32 - 1, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x1A, 0x00);
	assert_int_equal(rod_xcopy_parse(b, len - 1, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x1A, 0x00);
	/* inline data is not supported */
	rod_put_be32(b + 12, 4);
	assert_int_equal(rod_xcopy_parse(b, len + 4, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x0B);
	assert_true(s.sksv && !s.cd);
	assert_int_equal(s.field, 12);
	rod_put_be32(b + 12, 0);
	/* segment list length not covering a whole descriptor */
	rod_put_be32(b + 8, 20);
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 8);
	free(b);
	free(l);
}

static void test_xcopy_limits(void **state)
{
	uint8_t *b = calloc(1, 16384);
	struct rod_xcopy_list *l = malloc(sizeof(*l));
	struct rod_tpc_sense s;
	uint32_t len;

	/* exactly at the limits is fine */
	len = build_xcopy(b, ROD_XCOPY_MAX_CSCD, ROD_XCOPY_MAX_SEGS);
	assert_true(len - 16 <= ROD_XCOPY_MAX_LIST_LEN);
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), 0);
	/* max + 1 CSCDs */
	len = build_xcopy(b, ROD_XCOPY_MAX_CSCD + 1, 1);
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x06);
	/* max + 1 segments */
	len = build_xcopy(b, 1, ROD_XCOPY_MAX_SEGS + 1);
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x08);
	/* list longer than MAXIMUM DESCRIPTOR LIST LENGTH: length error first
	 * (libiscsi DescrLimits sends 65 CSCDs plus filler segments) */
	len = build_xcopy(b, ROD_XCOPY_MAX_CSCD + 1, (ROD_XCOPY_MAX_LIST_LEN - 65 * 32) / 28 + 2);
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x1A, 0x00);
	free(b);
	free(l);
}

static void test_xcopy_types(void **state)
{
	uint8_t *b = calloc(1, 8192);
	struct rod_xcopy_list *l = malloc(sizeof(*l));
	struct rod_tpc_sense s;
	uint32_t len = build_xcopy(b, 2, 1);

	b[16 + 32] = 0xE0;             /* FC N_Port_Name CSCD */
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x07);
	assert_int_equal(s.field, 16 + 32);
	b[16 + 32] = 0xE4;
	b[16 + 64] = 0x03;             /* stream -> stream segment */
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x09);
	assert_int_equal(s.field, 16 + 64);
	b[16 + 64] = 0x02;
	b[16 + 64 + 3] = 0x1C;         /* wrong DESCRIPTOR LENGTH for type 0x02 */
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 16 + 64 + 2);
	b[16 + 64 + 3] = 0x18;
	b[16 + 7] = 21;                /* designator longer than the CSCD holds */
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 16 + 7);
	b[16 + 7] = 16;
	b[16 + 1] = 0x01;              /* a sequential-access CSCD cannot take block segments */
	assert_int_equal(rod_xcopy_parse(b, len, l, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	free(b);
	free(l);
}

/* ---- POPULATE TOKEN / WRITE USING TOKEN --------------------------------------- */

static uint32_t build_pt(uint8_t *b, const uint64_t *lba, const uint32_t *n, unsigned cnt)
{
	uint32_t len = 16 + cnt * 16;

	memset(b, 0, len);
	rod_put_be16(b, (uint16_t)(len - 2));
	rod_put_be16(b + 14, (uint16_t)(cnt * 16));
	for (unsigned i = 0; i < cnt; i++) {
		rod_put_be64(b + 16 + i * 16, lba[i]);
		rod_put_be32(b + 16 + i * 16 + 8, n[i]);
	}
	return len;
}

static void test_pt_good(void **state)
{
	uint8_t b[2048];
	uint64_t lba[3] = { 0, 100, 50 };
	uint32_t n[3] = { 50, 0, 50 };
	struct rod_pt_params p;
	struct rod_tpc_sense s;
	uint32_t len = build_pt(b, lba, n, 3);

	b[2] = 0x01;                   /* IMMED */
	rod_put_be32(b + 4, 30);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), 0);
	assert_true(p.immed);
	assert_int_equal(p.inactivity_s, 30);
	assert_int_equal(p.rod_type, ROD_TOKEN_TYPE_PIT);
	assert_int_equal(p.nranges, 3);
	assert_int_equal(p.total_blocks, 100);
	/* RTV with the persistent PIT type */
	b[2] = 0x02;
	rod_put_be32(b + 8, ROD_TOKEN_TYPE_PIT_PERSISTENT);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), 0);
	assert_int_equal(p.rod_type, ROD_TOKEN_TYPE_PIT_PERSISTENT);
	/* a range ending exactly at the last block */
	lba[0] = 950;
	len = build_pt(b, lba, n, 1);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), 0);
}

static void test_pt_errors(void **state)
{
	uint8_t b[4096];
	uint64_t lba[65];
	uint32_t n[65];
	struct rod_pt_params p;
	struct rod_tpc_sense s;
	uint32_t len;

	for (int i = 0; i < 65; i++) {
		lba[i] = (uint64_t)i * 10;
		n[i] = 10;
	}
	len = build_pt(b, lba, n, 2);
	/* CDB PARAMETER LIST LENGTH shorter than the header */
	assert_int_equal(rod_pt_parse(8, b, 8, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x24, 0x00);
	assert_true(s.sksv && s.cd);
	/* fewer bytes received than the header says */
	assert_int_equal(rod_pt_parse(len, b, len - 4, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x1A, 0x00);
	/* inactivity timeout above the advertised maximum */
	rod_put_be32(b + 4, ROD_TPC_MAX_INACTIVITY_S + 1);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 4);
	rod_put_be32(b + 4, 0);
	/* RTV with a type we cannot create (the zero token, access upon reference) */
	b[2] = 0x02;
	rod_put_be32(b + 8, ROD_TOKEN_TYPE_ZERO);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 8);
	rod_put_be32(b + 8, 0x00010000);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	b[2] = 0;
	/* range descriptor length not a multiple of 16 / zero */
	rod_put_be16(b + 14, 24);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 14);
	rod_put_be16(b + 14, 0);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	assert_int_equal(s.field, 14);
	/* data length too short for the descriptors */
	len = build_pt(b, lba, n, 2);
	rod_put_be16(b, 20);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	/* out of range: the offending LBA is in INFORMATION */
	lba[1] = 995;
	len = build_pt(b, lba, n, 2);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x21, 0x00);
	assert_true(s.info_valid);
	assert_int_equal(s.info, 995);
	/* LBA + count overflowing 64 bits */
	lba[1] = UINT64_MAX - 2;
	len = build_pt(b, lba, n, 2);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x21, 0x00);
	/* overlap: pointer at the second descriptor of the pair */
	lba[1] = 5;
	len = build_pt(b, lba, n, 2);
	assert_int_equal(rod_pt_parse(len, b, len, 1000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 32);
	lba[1] = 10;
	/* too many ranges: in the CDB length check and in the list */
	len = build_pt(b, lba, n, 65);
	assert_int_equal(rod_pt_parse(len, b, len, 100000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x24, 0x00);
	assert_int_equal(rod_pt_parse(16 + 64 * 16, b, len, 100000, 512, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x08);
	/* total above the maximum token transfer size */
	lba[0] = 0;
	n[0] = UINT32_MAX;
	lba[1] = UINT32_MAX;
	n[1] = UINT32_MAX;
	len = build_pt(b, lba, n, 2);
	assert_int_equal(rod_pt_parse(len, b, len, 1ull << 40, 4096, &p, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 14);
}

static uint32_t build_wut(uint8_t *b, const uint8_t *tok, uint64_t off, const uint64_t *lba,
			  const uint32_t *n, unsigned cnt)
{
	uint32_t len = 536 + cnt * 16;

	memset(b, 0, len);
	rod_put_be16(b, (uint16_t)(len - 2));
	rod_put_be64(b + 8, off);
	memcpy(b + 16, tok, 512);
	rod_put_be16(b + 534, (uint16_t)(cnt * 16));
	for (unsigned i = 0; i < cnt; i++) {
		rod_put_be64(b + 536 + i * 16, lba[i]);
		rod_put_be32(b + 536 + i * 16 + 8, n[i]);
	}
	return len;
}

static void test_wut(void **state)
{
	uint8_t b[4096], tok[512];
	uint64_t lba[2] = { 10, 200 };
	uint32_t n[2] = { 20, 30 };
	struct rod_wut_params w;
	struct rod_tpc_sense s;
	uint32_t len;

	for (int i = 0; i < 512; i++)
		tok[i] = (uint8_t)i;
	len = build_wut(b, tok, 77, lba, n, 2);
	b[2] = 0x02;                   /* DEL_TKN */
	assert_int_equal(rod_wut_parse(len, b, len, 1000, 512, &w, &s), 0);
	assert_true(w.del_tkn);
	assert_false(w.immed);
	assert_int_equal(w.offset_into_rod, 77);
	assert_memory_equal(w.token, tok, 512);
	assert_int_equal(w.nranges, 2);
	assert_int_equal(w.total_blocks, 50);
	/* short CDB length, truncated data, bad range length */
	assert_int_equal(rod_wut_parse(535, b, len, 1000, 512, &w, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x24, 0x00);
	assert_int_equal(rod_wut_parse(len, b, 540, 1000, 512, &w, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x1A, 0x00);
	rod_put_be16(b + 534, 8);
	assert_int_equal(rod_wut_parse(len, b, len, 1000, 512, &w, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 534);
	/* destination past the end */
	len = build_wut(b, tok, 0, lba, n, 2);
	assert_int_equal(rod_wut_parse(len, b, len, 220, 512, &w, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x21, 0x00);
	assert_int_equal(s.info, 200);
	/* overlapping destinations */
	lba[1] = 29;
	len = build_wut(b, tok, 0, lba, n, 2);
	assert_int_equal(rod_wut_parse(len, b, len, 1000, 512, &w, &s), -EINVAL);
	EXPECT_SENSE(s, 5, 0x26, 0x00);
	assert_int_equal(s.field, 552);
	/* adjacent is fine */
	lba[1] = 30;
	len = build_wut(b, tok, 0, lba, n, 2);
	assert_int_equal(rod_wut_parse(len, b, len, 1000, 512, &w, &s), 0);
}

/* Mutated lists of every kind and length: the parsers never read past what they were
 * given (ASan watches), and every outcome is either a parse or a precise sense. */
static void test_mutations(void **state)
{
	static uint8_t base[3][2048], buf[2048];
	uint32_t blen[3];
	struct rod_xcopy_list *l = malloc(sizeof(*l));
	struct rod_pt_params pt;
	struct rod_wut_params wut;
	struct rod_tpc_sense s;
	uint64_t lba[4] = { 0, 100, 200, 300 };
	uint32_t n[4] = { 10, 10, 10, 10 };
	uint8_t tok[512] = { 0 };
	uint32_t seed = 12345;
	unsigned parsed = 0;

	blen[0] = build_xcopy(base[0], 3, 5);
	blen[1] = build_pt(base[1], lba, n, 4);
	blen[2] = build_wut(base[2], tok, 0, lba, n, 4);
	for (int iter = 0; iter < 30000; iter++) {
		int kind = iter % 3, rc;
		uint32_t len;

		memcpy(buf, base[kind], sizeof(buf));
		for (int k = 0; k < 1 + iter % 4; k++) {
			seed = seed * 1103515245u + 12345u;
			uint32_t pos = (seed >> 8) % blen[kind];
			seed = seed * 1103515245u + 12345u;
			buf[pos] = (uint8_t)(seed >> 16);
		}
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 8) % 4 == 0 ? (seed >> 12) % (blen[kind] + 1) : blen[kind];
		/* the parser only sees len bytes: copy them to an exact-size heap block */
		uint8_t *exact = malloc(len ? len : 1);
		memcpy(exact, buf, len);
		if (kind == 0 && len == 0) {           /* the handler's case, not the parser's */
			free(exact);
			continue;
		}
		if (kind == 0)
			rc = rod_xcopy_parse(exact, len, l, &s);
		else if (kind == 1)
			rc = rod_pt_parse(blen[1], exact, len, 100000, 512, &pt, &s);
		else
			rc = rod_wut_parse(blen[2], exact, len, 100000, 512, &wut, &s);
		if (rc == 0) {
			parsed++;
			if (kind == 0) {
				assert_true(l->ncscd <= ROD_XCOPY_MAX_CSCD && l->nseg <= ROD_XCOPY_MAX_SEGS);
				for (uint32_t i = 0; i < l->nseg; i++)
					assert_true(l->seg[i].off + 28u <= len);
			}
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_true(s.key == 0x05);
			assert_true(s.asc == 0x1A || s.asc == 0x21 || s.asc == 0x24 || s.asc == 0x26);
		}
		free(exact);
	}
	assert_true(parsed > 0);
	free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xcopy_good),
		cmocka_unit_test(test_xcopy_lengths),
		cmocka_unit_test(test_xcopy_limits),
		cmocka_unit_test(test_xcopy_types),
		cmocka_unit_test(test_pt_good),
		cmocka_unit_test(test_pt_errors),
		cmocka_unit_test(test_wut),
		cmocka_unit_test(test_mutations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
