/* Parsers/validators of the third-party-copy parameter lists (SPC-4 6.4 EXTENDED COPY
 * LID1, SBC-3 5.10 POPULATE TOKEN, 5.27 WRITE USING TOKEN). Pure functions over bytes:
 * every length from the host is checked against the transferred length and our
 * limits, and a malformed list gives the precise sense (with field pointer) in a
 * struct rod_tpc_sense that the handler turns into sense data.
 *
 * The limits here are the ones advertised in VPD 0x8F and RECEIVE COPY RESULTS
 * OPERATING PARAMETERS (tpc.c builds both from these constants, so they agree). */
#ifndef ROD_SCSI_TPC_PARSE_H
#define ROD_SCSI_TPC_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"

/* EXTENDED COPY (LID1) */
#define ROD_XCOPY_HDR_LEN 16u
#define ROD_XCOPY_CSCD_LEN 32u
#define ROD_XCOPY_SEG_B2B_LEN 28u           /* type 0x02: 4-byte header + 0x18 */
#define ROD_XCOPY_MAX_CSCD 64u
#define ROD_XCOPY_MAX_SEGS 64u
#define ROD_XCOPY_MAX_LIST_LEN 4096u        /* CSCD + segment descriptor bytes */
#define ROD_XCOPY_MAX_INLINE 0u
#define ROD_XCOPY_MAX_CONCURRENT 255u
#define ROD_XCOPY_CSCD_ID_SELF 0xFFFFu      /* "the LU that received the command" */

/* POPULATE TOKEN / WRITE USING TOKEN */
#define ROD_PT_HDR_LEN 16u
#define ROD_WUT_HDR_LEN 536u
#define ROD_RANGE_DESC_LEN 16u
#define ROD_TPC_MAX_RANGES 64u               /* MAXIMUM RANGE DESCRIPTORS */
#define ROD_TPC_MAX_INACTIVITY_S 600u
#define ROD_TPC_DEFAULT_INACTIVITY_S 60u
/* MAXIMUM TOKEN TRANSFER SIZE and OPTIMAL TRANSFER COUNT, in bytes (converted to the
 * LU's blocks when advertised). Copies are O(1) range entries in the engine, so the
 * limits are large; the optimal count keeps one WRITE USING TOKEN's ranges few. */
#define ROD_TPC_MAX_TOKEN_BYTES (1ull << 40)
#define ROD_TPC_OPTIMAL_BYTES (4ull << 30)

/* Sense to report for a rejected list (ILLEGAL REQUEST unless key says otherwise). */
struct rod_tpc_sense {
	uint8_t key, asc, ascq;
	bool sksv;                 /* field pointer valid */
	bool cd;                   /* pointer into the CDB (else the parameter list) */
	uint16_t field;            /* byte offset */
	bool info_valid;
	uint64_t info;             /* INFORMATION (e.g. the LBA out of range) */
	bool csi_valid;
	uint32_t csi;              /* COMMAND-SPECIFIC INFORMATION (segment number) */
};

/* ---- EXTENDED COPY (LID1) ------------------------------------------------------- */

struct rod_xcopy_cscd {
	uint8_t pdt;                /* peripheral device type (byte 1 bits 4..0) */
	uint8_t desig[24];          /* VPD 0x83 designation descriptor: 4-byte header + designator */
	uint8_t desig_len;          /* 4 + DESIGNATOR LENGTH */
	uint32_t disk_block_len;    /* 0 when not given */
	uint16_t off;               /* offset of the descriptor in the parameter list */
};

struct rod_xcopy_seg {
	uint8_t type;               /* 0x02 */
	bool dc, cat;
	uint16_t src, dst;          /* CSCD indexes (or 0xFFFF) */
	uint32_t nblocks;
	uint64_t src_lba, dst_lba;
	uint16_t off;               /* offset of the descriptor in the parameter list */
};

struct rod_xcopy_list {
	uint8_t list_id;
	uint8_t list_id_usage;      /* 0..3 (byte 1 bits 4..3) */
	uint8_t priority;
	bool str;
	uint32_t ncscd, nseg;
	struct rod_xcopy_cscd cscd[ROD_XCOPY_MAX_CSCD];
	struct rod_xcopy_seg seg[ROD_XCOPY_MAX_SEGS];
};

/* buf/len: the Data-Out actually received; 1 <= len (a zero PARAMETER LIST LENGTH is
 * GOOD with nothing done, decided by the handler). Returns 0 or -EINVAL with *s set. */
int rod_xcopy_parse(const uint8_t *buf, uint32_t len, struct rod_xcopy_list *out,
		    struct rod_tpc_sense *s);

/* ---- POPULATE TOKEN / WRITE USING TOKEN ------------------------------------------ */

struct rod_pt_params {
	bool immed, rtv;
	uint32_t inactivity_s;      /* as sent (0 = default) */
	uint32_t rod_type;          /* chosen type (RTV=0: ROD_TOKEN_TYPE_PIT) */
	uint32_t nranges;
	struct rod_token_range ranges[ROD_TPC_MAX_RANGES];
	uint64_t total_blocks;
};

struct rod_wut_params {
	bool immed, del_tkn;
	uint64_t offset_into_rod;   /* in blocks of the token's source LU */
	uint8_t token[ROD_TOKEN_LEN];
	uint32_t nranges;
	struct rod_token_range ranges[ROD_TPC_MAX_RANGES];
	uint64_t total_blocks;
};

/* cdb_len_field: PARAMETER LIST LENGTH from the CDB; buf/len: the Data-Out received.
 * capacity: LU size in blocks (ranges are checked against it); block_size: the LU's.
 * Returns 0, or -EINVAL with *s set. */
int rod_pt_parse(uint32_t cdb_len_field, const uint8_t *buf, uint32_t len, uint64_t capacity,
		 uint32_t block_size, struct rod_pt_params *out, struct rod_tpc_sense *s);
int rod_wut_parse(uint32_t cdb_len_field, const uint8_t *buf, uint32_t len, uint64_t capacity,
		  uint32_t block_size, struct rod_wut_params *out, struct rod_tpc_sense *s);

/* Check range descriptors (shared by PT and WUT): count, bounds, overlap, total.
 * list_off: offset of the first descriptor in the parameter list (for the pointer);
 * len_field_off: offset of the BLOCK DEVICE RANGE DESCRIPTOR LENGTH field. */
int rod_tpc_check_ranges(const struct rod_token_range *r, uint32_t n, uint64_t capacity,
			 uint64_t max_total, uint16_t list_off, uint16_t len_field_off,
			 uint64_t *total, struct rod_tpc_sense *s);

#endif
