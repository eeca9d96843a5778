/* ROD tokens (SPC-4 5.17.6 "ROD token" layout) and the table of live tokens.
 *
 * A token is 512 bytes handed to a host by RECEIVE ROD TOKEN INFORMATION and given
 * back (by any host) in WRITE USING TOKEN. Its bytes are a capability: they carry our
 * array id, a random 64-bit token id and an HMAC-SHA-256 under the array secret over
 * everything before the MAC, so a forged, altered or foreign token is refused before
 * the table is consulted. What the token stands for (the pinned point-in-time view,
 * the source ranges, the inactivity deadline) lives only in the table: tokens do not
 * survive a restart, which SPC-4 allows (hosts fall back to a normal copy).
 *
 * Layout we emit (all big-endian):
 *   0..3    ROD TYPE (0x00800000 point in time, or 0x00800002 persistent PIT)
 *   6..7    ROD TOKEN LENGTH = 0x01F8
 *   8..15   COPY MANAGER ROD TOKEN IDENTIFIER = token id (random, table key)
 *   16..47  CREATOR LOGICAL UNIT DESCRIPTOR (0xE4 CSCD naming the source LU)
 *   48..63  NUMBER OF BYTES REPRESENTED (128-bit)
 *   96..99  block length of the source LU (device type specific data)
 *   128..131 "RODT" magic, 132 format version (vendor part)
 *   136..151 array id
 *   152..159 creation wall clock (ns)
 *   480..511 HMAC-SHA-256(array secret, bytes 0..479)
 */
#ifndef ROD_SCSI_TOKEN_H
#define ROD_SCSI_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROD_TOKEN_LEN 512u
#define ROD_TOKEN_TYPE_PIT 0x00800000u            /* point in time, default */
#define ROD_TOKEN_TYPE_PIT_PERSISTENT 0x00800002u /* PIT, kept even if the source changes */
#define ROD_TOKEN_TYPE_ZERO 0xFFFF0001u           /* block device zero ROD token */
#define ROD_TOKEN_BODY_LEN 0x01F8u                /* ROD TOKEN LENGTH field */
#define ROD_TOKEN_MAC_OFF 480u

/* ASCQs of ASC 0x23 INVALID TOKEN OPERATION (SPC-4 table of ASC/ASCQ). */
enum rod_token_ascq {
	ROD_TOKEN_OK = 0xff,                 /* not a sense: success */
	ROD_TOKEN_UNSUPPORTED_TYPE = 0x01,
	ROD_TOKEN_REMOTE = 0x02,             /* another array's token */
	ROD_TOKEN_UNKNOWN = 0x04,
	ROD_TOKEN_CORRUPT = 0x05,
	ROD_TOKEN_REVOKED = 0x06,
	ROD_TOKEN_EXPIRED = 0x07,
	ROD_TOKEN_CANCELLED = 0x08,
	ROD_TOKEN_DELETED = 0x09,
	ROD_TOKEN_BAD_LENGTH = 0x0A,
};

/* What the token's bytes say (after verification). */
struct rod_token_fields {
	uint32_t rod_type;
	uint64_t id;
	uint64_t bytes;                      /* NUMBER OF BYTES REPRESENTED */
	uint32_t block_size;
	uint8_t creator[32];                 /* 0xE4 CSCD of the source LU, or zeros */
	uint8_t array_id[16];
	uint64_t created_wall_ns;
};

/* Encode and sign. */
void rod_token_encode(const struct rod_token_fields *f, const uint8_t secret[32],
		      uint8_t out[ROD_TOKEN_LEN]);
/* Check a token received from a host: length field, ROD type, array id, MAC (in
 * constant time). Returns ROD_TOKEN_OK and fills *f (may be NULL), or the ASCQ to
 * report with 05/23/xx. The zero token is not handled here (callers test its type
 * first); it gets ROD_TOKEN_UNSUPPORTED_TYPE. */
enum rod_token_ascq rod_token_verify(const uint8_t tok[ROD_TOKEN_LEN], const uint8_t array_id[16],
				     const uint8_t secret[32], struct rod_token_fields *f);
static inline uint32_t rod_token_type(const uint8_t tok[ROD_TOKEN_LEN])
{
	return (uint32_t)tok[0] << 24 | (uint32_t)tok[1] << 16 | (uint32_t)tok[2] << 8 | tok[3];
}

/* ---- Live-token table --------------------------------------------------------------- */

struct rod_token_range {
	uint64_t lba;
	uint32_t nblocks;
};

/* One live token. The fields are immutable while the entry is acquired, except those
 * the table's lock guards (marked). */
struct rod_token {
	uint64_t id;
	uint8_t bytes[ROD_TOKEN_LEN];
	void *pin;                           /* the pinned point-in-time view (struct rod_vol *) */
	uint64_t src_vol_id;
	uint32_t block_size;
	uint32_t nranges;
	struct rod_token_range *ranges;      /* source ranges in the pin, in PT order */
	uint64_t total_blocks;               /* sum of ranges */
	uint64_t timeout_ns;                 /* inactivity timeout */
	/* guarded by the table lock: */
	uint64_t last_active_ns;             /* creation or end of the last use */
	uint32_t active;                     /* WRITE USING TOKENs running on it */
	uint64_t uses;                       /* completed uses */
	uint8_t end_reason;                  /* 0 live; else the ASCQ it ends with */
	struct rod_token *next;              /* hash chain */
};

struct rod_token_table;

struct rod_token_table_opts {
	uint32_t max_tokens;                 /* live tokens kept at most (>= 4096 by default) */
	uint8_t array_id[16];
	uint8_t secret[32];
	void (*release_pin)(void *pin);      /* called (outside the lock) when a token ends */
	uint64_t (*clock)(void);             /* monotonic ns; NULL = rod_now_ns */
};

#define ROD_TOKEN_DEFAULT_MAX 8192u
#define ROD_TOKEN_TOMBSTONES 4096u       /* ended tokens remembered for 23/06..09 */

int rod_token_table_new(const struct rod_token_table_opts *o, struct rod_token_table **out);
/* Releases every pin. No entry may be acquired. */
void rod_token_table_free(struct rod_token_table *t);

/* Parameters of a new token (POPULATE TOKEN). ranges are copied. */
struct rod_token_spec {
	uint32_t rod_type;
	void *pin;                           /* ownership passes to the table on success */
	uint64_t src_vol_id;
	uint32_t block_size;
	const struct rod_token_range *ranges;
	uint32_t nranges;
	uint64_t timeout_ns;
	const uint8_t *creator;              /* 32-byte 0xE4 CSCD, or NULL */
};
/* Create a token; its bytes go to out. -ENOSPC when the table is full (the caller
 * keeps the pin then), -EIO if no random bytes. */
int rod_token_add(struct rod_token_table *t, const struct rod_token_spec *s,
		  uint8_t out[ROD_TOKEN_LEN]);
/* Verify the bytes, find the live token and mark it in use. ROD_TOKEN_OK and *out, or
 * the ASCQ for 05/23/xx. Every successful acquire needs one rod_token_put. */
enum rod_token_ascq rod_token_get(struct rod_token_table *t, const uint8_t tok[ROD_TOKEN_LEN],
				  struct rod_token **out);
/* End one use (restarts the inactivity timer); del: DEL_TKN, the token ends (deleted)
 * once no other use is running. */
void rod_token_put(struct rod_token_table *t, struct rod_token *tk, bool del);
/* End every token whose pin is of this volume (volume destroyed/resized): later uses
 * get TOKEN REVOKED. Returns how many. */
unsigned rod_token_revoke_vol(struct rod_token_table *t, uint64_t vol_id);
/* Free tokens idle past their timeout. Called lazily by add/get (at most once per
 * second); exposed for tests and a periodic timer. Returns how many ended. */
unsigned rod_token_expire(struct rod_token_table *t);
/* Live tokens now. */
uint32_t rod_token_count(struct rod_token_table *t);
/* Copy the first n bytes of up to max live tokens whose source is vol_id (any when
 * vol_id is 0) into out (max * n bytes). Returns how many (REPORT ALL ROD TOKENS). */
uint32_t rod_token_list(struct rod_token_table *t, uint64_t vol_id, uint8_t *out, uint32_t max,
			size_t n);

#endif
