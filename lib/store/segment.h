/* Append-only segment files made of batches (DESIGN.md "Storage engine").
 *
 * A batch is one group commit: a header area (a multiple of 4 KiB) listing every entry
 * of the batch and the metadata mutations it carries, then the payloads packed back to
 * back, then padding to 4 KiB. The header has its own CRC32C; each payload has a CRC32C
 * in its entry, so a torn batch (a crash during the append) is recognised at replay. */
#ifndef ROD_STORE_SEGMENT_H
#define ROD_STORE_SEGMENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define SEG_SIZE (8u << 20)
#define SEG_BLOCK 4096u
#define BATCH_MAGIC 0x524f444241544348ull /* "RODBATCH" */
#define BATCH_VERSION 1u
#define BATCH_HDR_FIXED 64u
#define BATCH_ENTRY_SIZE 96u
/* Header capacity bound: keeps a batch well inside a segment. */
#define BATCH_MAX_ENTRIES 1024u
#define BATCH_MAX_PAYLOAD (4u << 20)
/* Sanity bound when reading (a batch of large metadata records may exceed SEG_SIZE). */
#define BATCH_MAX_BYTES (64u << 20)

/* Entry kinds. */
enum {
	ENT_DATA = 1,   /* payload: grain (lineage, lba) at epoch */
	ENT_ZERO = 2,   /* grain reads as zeros, stays mapped */
	ENT_UNMAP = 3,  /* grain deallocated */
	ENT_RELOC = 4,  /* GC copy of chunk_id (payload), no map change */
};

/* Compression types (data reduction is a later issue; the field is on disk now). */
enum { COMP_NONE = 0, COMP_LZ4 = 1, COMP_ZSTD = 2 };

struct batch_entry {
	uint64_t chunk_id;
	uint64_t lineage;
	uint64_t lba;
	uint64_t epoch;
	uint8_t fp[32];          /* fingerprint (zero until dedupe lands) */
	uint8_t kind;
	uint8_t comp;
	uint16_t enc_gen;        /* encryption key generation (0: clear text) */
	uint32_t stored_len;
	uint32_t orig_len;
	uint32_t payload_off;    /* from the start of the batch's payload area */
	uint32_t crc;            /* CRC32C of the stored bytes */
	uint32_t home_off;       /* ENT_RELOC: payload offset in the chunk's home segment */
};

/* A decoded batch (replay, GC). */
struct batch {
	uint64_t seq;
	uint64_t seg;
	uint64_t off;            /* of the header in the segment */
	uint32_t hdr_len, payload_len;
	uint32_t n;
	struct batch_entry *ent;
	uint8_t *mut;            /* metadata mutations */
	uint32_t mut_len;
	uint8_t *payload;        /* when read with payloads */
	uint64_t next_off;       /* offset of the next batch */
};

struct seg {
	uint64_t id;
	int fd;
	uint64_t size;
};

/* guards segs/nsegs (rwlock: readers pread under the read side so GC cannot close a
 * file under them); cur_* are owned by the commit thread. */
struct seglog {
	char *dir;
	pthread_rwlock_t lock;
	struct seg *segs;
	size_t nsegs, cap;
	uint64_t cur_id;          /* open segment (0: none) */
	int cur_fd;
	uint64_t cur_off;
	uint32_t cur_idx;         /* next chunk index in the open segment */
	uint64_t next_id;
	uint64_t bytes_total;     /* sum of segment sizes */
};

int seglog_open(const char *dir, struct seglog **out);
void seglog_close(struct seglog *l);
/* Make room for a batch of len bytes: roll to a new segment when it does not fit.
 * Called by the commit thread only. */
int seglog_reserve(struct seglog *l, uint64_t len);
/* Seal the open segment and start a new one. Commit thread only. */
int seglog_roll(struct seglog *l);
/* Append at the open segment's end; returns the batch's offset. Commit thread only. */
int seglog_append(struct seglog *l, const struct iovec *iov, int iovcnt, uint64_t len,
		  uint64_t *off);
int seglog_sync(struct seglog *l);
int seglog_read(struct seglog *l, uint64_t seg, uint64_t off, void *buf, size_t len);
bool seglog_has(struct seglog *l, uint64_t seg);
uint64_t seglog_size(struct seglog *l, uint64_t seg);
int seglog_remove(struct seglog *l, uint64_t seg);
int seglog_truncate(struct seglog *l, uint64_t seg, uint64_t off);
/* Snapshot of the segment ids (sorted). *ids malloc'd. */
int seglog_list(struct seglog *l, uint64_t **ids, size_t *n);
uint64_t seglog_used(struct seglog *l);

/* Encode a header area; returns its length (multiple of 4 KiB) in *hdr_len. */
int batch_encode_header(uint8_t *hdr, size_t cap, uint64_t seq, uint64_t seg,
			const struct batch_entry *ent, uint32_t n, const uint8_t *mut,
			uint32_t mut_len, uint32_t payload_len, uint32_t *hdr_len);
size_t batch_header_size(uint32_t n, uint32_t mut_len);
/* Read and check the batch at (seg, off). with_payload: also read and check every
 * payload CRC. Returns 0, -ENODATA at the end of the valid log (EOF, zeros, a bad CRC),
 * or -errno. */
int batch_read(struct seglog *l, uint64_t seg, uint64_t off, bool with_payload,
	       struct batch *b);
void batch_release(struct batch *b);

#endif
