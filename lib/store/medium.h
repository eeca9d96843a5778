/* Mediums as lineages and epochs (DESIGN.md, engine-notes.md).
 *
 * A volume is a lineage L with a current epoch. Block entries live in the map column
 * family under L|lba|~epoch; range entries ("grains [start,end) of L, as of epoch e, read
 * from lineage T at epoch t, shifted by delta") live in RAM here and in the rng column
 * family. A read of (L, lba) at epoch e takes the newest block entry with epoch <= e and
 * the newest covering range entry with epoch <= e; on equal epochs the block entry wins
 * (writes made after a range entry at the same epoch). Range entries recurse. */
#ifndef ROD_STORE_MEDIUM_H
#define ROD_STORE_MEDIUM_H

#include <stdbool.h>
#include <stdint.h>

#include "meta.h"

#define LIN_UNMAP 0ull     /* reads zeros, deallocated */
#define LIN_ZERO 1ull      /* reads zeros, mapped */
#define LIN_FIRST 16ull    /* first real lineage id */

#define CHUNK_ZERO 0ull    /* map value: grain of zeros, mapped */
#define CHUNK_UNMAP 1ull   /* map value: grain deallocated */
#define CHUNK_SEG(id) ((id) >> 20)

#define DEPTH_SOFT 4u
#define DEPTH_HARD 16u
#define EPOCH_MAX UINT64_MAX

/* Location of a stored chunk (map value; 24 bytes on disk). */
struct map_val {
	uint64_t chunk;       /* chunk id = segment << 20 | index, or CHUNK_ZERO/UNMAP */
	uint32_t off;         /* payload offset in its segment (at write time) */
	uint32_t len;         /* stored length */
	uint32_t crc;         /* CRC32C of the stored bytes */
	uint8_t comp;
	uint16_t enc_gen;     /* encryption generation of the stored bytes (0: clear text) */
	uint8_t pad;
};
#define MAP_VAL_LEN 24
#define MAP_KEY_LEN 24

struct rng_ent {
	uint64_t start, end;  /* grains of the owning lineage */
	uint64_t epoch, seq;
	uint64_t tlin, tepoch;
	int64_t delta;        /* target grain = grain + delta */
	uint32_t depth;       /* bound on the recursion a read through this entry makes */
};

/* Change summary (rod_vol_diff, repl.c): the grains that got block entries at an
 * epoch. Kept in RAM for the current epoch (a bitmap in pages of 4096 grains); when the
 * epoch is sealed (pinned by a snapshot, or left for a new one by a range entry) it is
 * logged in the same batch as CF_LIN key lineage|epoch (16 bytes; lineage headers are 8)
 * as runs of grains, or, when there are more than CHG_MAX_INTERVALS runs, as the bitmap
 * pages (up to CHG_MAX_BITMAP_PAGES), or as runs of CHG_REGION grains, or as "anything"
 * when even those are too many. So the block entries of a window
 * of epochs are found without reading every map key of the lineage. Whatever writes
 * block entries at an epoch other than cur must call lin_chg_unknown for that epoch
 * first (its summary then says "anything"). */
#define CHG_REGION_SHIFT 6          /* 64 grains: 256 KiB */
#define CHG_MAX_INTERVALS 16384u    /* runs per record (256 KiB) */
#define CHG_MAX_PAGES 16384u        /* 256 GiB written in one epoch (8.5 MB of RAM): "anything" */
#define CHG_MAX_BITMAP_PAGES 2016u  /* more runs than a record holds, within 31.5 GiB: the
				     * bitmap pages themselves (about 1 MiB) */
struct chg_page {
	uint64_t page;                  /* grains page << 12 .. + 4095 */
	uint64_t bits[64];
};
struct chgset {
	struct chg_page **pages;        /* sorted by page */
	size_t n, cap, last;
};

struct lineage {
	uint64_t id;
	uint64_t cur;         /* epoch writes go to */
	uint64_t next_seq;
	bool cur_used;        /* something was written at cur (pinning it needs a bump) */
	uint64_t box_lo, box_hi; /* grains with block entries at cur (bounding box) */
	struct rng_ent *rng;  /* sorted by start */
	/* Index over rng (rng_reindex): an implicit segment tree with tp leaves (tp a power
	 * of two >= nrng, leaf j = rng[j]); node i holds the max end (tmax) and the min
	 * epoch (tmin) of its leaves, so a lookup visits only subtrees that may hold an
	 * entry covering the grain and visible at the epoch. */
	uint64_t *tmax, *tmin;
	size_t tp, tcap;
	size_t nrng, cap;
	uint64_t last_seq;    /* newest range entry (adjacent copies merge into it) */
	struct chgset chg;    /* regions with block entries at cur */
	/* Spans of range entries removed by flatten (its block entries there are at the
	 * entry's old epoch, after that epoch's summary was sealed); CF_LIN key
	 * lineage|epoch|seq (24 bytes) -> start, end. */
	struct chg_extra { uint64_t epoch, start, end; } *chg_extra;
	size_t nchg_extra;
	bool chg_unknown;     /* cur got block entries this process did not see */
	uint64_t chg_after;   /* epochs <= chg_after have no complete change summary */
};

/* All lineages; guarded by rod_store.state. */
struct mapcache;
struct media {
	struct lineage **lins; /* sorted by id */
	size_t n, cap;
	struct mapcache *mc;   /* medium_resolve's map cache (NULL: none; mapcache.h) */
};

void map_key(uint8_t *k, uint64_t lin, uint64_t lba, uint64_t epoch);
void map_key_decode(const uint8_t *k, uint64_t *lin, uint64_t *lba, uint64_t *epoch);
void map_val_encode(const struct map_val *v, uint8_t *buf);
void map_val_decode(struct map_val *v, const uint8_t *buf);

struct lineage *media_find(struct media *md, uint64_t id);
struct lineage *media_add(struct media *md, uint64_t id);
void media_drop(struct media *md, uint64_t id);
void media_free(struct media *md);
/* Load lineages and range entries from RocksDB. */
int media_load(struct media *md, struct meta *m);

/* Persist a lineage header / range entry into mb. */
void lin_log(struct mutbuf *mb, const struct lineage *l);
void rng_log(struct mutbuf *mb, uint64_t lin, const struct rng_ent *r);

/* Pin the current view of l: returns an epoch nothing will ever be written at again. */
uint64_t lin_pin(struct lineage *l, struct mutbuf *mb);
/* Leave the current epoch for a new one (its change summary is sealed). */
void lin_bump(struct lineage *l, struct mutbuf *mb);
/* A block entry is being written at l->cur for grains [g0, g0+n). */
void lin_note_write(struct lineage *l, uint64_t g0, uint64_t n);

/* Mark the change summary of epoch e of l as "anything" (logged now when e < cur). */
void lin_chg_unknown(struct lineage *l, uint64_t e, struct mutbuf *mb);
/* Decode a change-summary value: *all when it says "anything", else n runs of grains
 * [a, b) into iv (2 * n uint64_t, caller frees). -EINVAL when malformed. */
int lin_chg_decode(const uint8_t *v, size_t vl, bool *all, uint64_t **iv, size_t *n);
void lin_chg_key(uint8_t k[16], uint64_t lin, uint64_t epoch);

/* Add "grains [start,end) of dst read from (tlin, tepoch) shifted by delta" at dst's
 * current epoch, composing through range entries of the source and merging with the
 * previous entry when contiguous. -ELOOP when the result would exceed DEPTH_HARD (the
 * caller then copies data instead). */
int lin_add_range(struct media *md, struct meta *m, struct lineage *dst, uint64_t start,
		  uint64_t end, uint64_t tlin, uint64_t tepoch, int64_t delta,
		  struct mutbuf *mb);

/* Flatten (flatten.c). Deepest range entry of l. */
uint32_t lin_max_depth(const struct lineage *l);
const struct rng_ent *lin_rng_by_seq(const struct lineage *l, uint64_t seq);
/* Remove range entry seq of l (logged); -ENOENT when absent. */
int lin_rng_remove(struct lineage *l, uint64_t seq, struct mutbuf *mb);
/* Add "grains [start,end) of l as of epoch read from tlin (LIN_ZERO/LIN_UNMAP)" with a
 * new sequence number at a given (possibly old) epoch (logged). */
int lin_rng_add_at(struct lineage *l, uint64_t start, uint64_t end, uint64_t epoch,
		   uint64_t tlin, struct mutbuf *mb);

enum { RES_UNMAP, RES_ZERO, RES_CHUNK };
struct resolved {
	int kind;
	struct map_val v;
	uint64_t run;         /* grains from lba with this same answer (RES_CHUNK: 1) */
	uint64_t src_lin, src_lba, src_epoch; /* where the block entry was found */
};
/* Resolve grain lba of (lin, epoch), answering for up to maxrun grains. it: an
 * iterator on CF_MAP. Caller holds rod_store.state (shared). */
int medium_resolve(struct media *md, struct meta_iter *it, uint64_t lin, uint64_t epoch,
		   uint64_t lba, uint64_t maxrun, struct resolved *out);

#endif
