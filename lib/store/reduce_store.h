/* Data reduction inside the engine: the narrow hooks the open, write, commit, read and
 * GC paths call (docs/data-reduction.md). The primitives are in reduce.h. */
#ifndef ROD_STORE_REDUCE_STORE_H
#define ROD_STORE_REDUCE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "reduce.h"

struct rod_store;
struct batch_entry;
struct map_val;

/* Entry kind of a deduplicated grain: a map entry pointing at a chunk stored earlier,
 * no payload. Its stored_len is 0 (nothing in this batch); orig_len holds the chunk's
 * stored length, home_off its offset in its home segment. */
#define ENT_DEDUP 5

/* What the submitting thread learned about one data grain (part of struct cgrain). */
struct red_grain {
	uint8_t fp[RED_FP_LEN];
	bool has_fp;
	bool dup;                /* a stored chunk with this fingerprint exists: */
	uint8_t comp;            /*   its location and format */
	uint16_t enc_gen;
	uint32_t off, len, crc;
	uint64_t chunk;
	uint64_t gc_gen;         /* red_store.gc_gen when it was looked up */
	uint64_t seg;            /* dup: the segment the chunk was in then */
	bool no_compress;        /* the volume has compression off */
	/* red_grain_seal (submitting thread): the stored form, ready to append. */
	const uint8_t *sealed;   /* NULL: the commit thread compresses/encrypts the grain */
	uint32_t slen, scrc;     /*   stored length, CRC32C of the stored bytes */
	uint8_t scomp;           /*   compression */
	uint16_t sgen;           /*   encryption generation (0: not encrypted) */
	uint64_t schunk;         /*   chunk id reserved for the tweak (0: none) */
};

/* Per-volume switches (vol_rec.reduce_off, benchmarking only). */
#define RED_VOL_NO_DEDUPE 1u
#define RED_VOL_NO_COMPRESS 2u

struct red_store {
	bool dedupe, compress, encrypt;
	char *key_file;
	struct red_fp_key *fpk;
	struct red_dek dek;      /* valid when have_dek */
	bool have_dek;
	struct red_fpidx idx;
	/* Odd while a GC pass may delete segments. A duplicate found under one value and
	 * committed under another is stored again instead (its chunk may be gone). */
	atomic_uint_fast64_t gc_gen;
	/* During a pass (gc_m; changes of gc_gen too): the segments it deletes or has
	 * deleted, and the chunks (with their segment) dedupe entries referenced. */
	pthread_mutex_t gc_m;
	uint64_t *doomed;
	size_t ndoomed, capdoomed;
	struct red_ref { uint64_t seg, chunk; } *refs;
	size_t nrefs, caprefs;
	/* Next chunk id of the open segment (segment << 20 | index; segment 0: none yet).
	 * Submitting threads reserve ids from it to encrypt before the commit thread sees
	 * the grain; the commit thread allocates the rest and moves it to each new segment
	 * (docs/data-reduction.md "Tweak"). */
	atomic_uint_fast64_t next_chunk;
	/* commit thread only: stored (compressed/encrypted) payloads of the batch */
	uint8_t *buf;
	size_t cap;
	atomic_uint_fast64_t st_dedup_hits, st_fp_false, st_compressed, st_saved;
	atomic_uint_fast64_t st_seal_early, st_seal_late; /* sealed by submitter / commit */
	/* fp puts the commit thread holds back (red_fp_defer): RocksDB's memtable inserts
	 * random keys far more cheaply in long ascending runs. Written by the commit thread
	 * only, read by red_fp_lookup, both under pend_m. pend_slot: open addressing on the
	 * first 8 bytes of the fingerprint, 0 = empty, else index + 1 into pend. */
	pthread_mutex_t pend_m;
	struct red_fp_pend { uint8_t fp[RED_FP_LEN]; uint8_t v[24]; } *pend;
	uint32_t *pend_slot, *pend_order;
	uint32_t npend;
};

/* Fingerprint puts held back at most (then put in one sorted run): ~1 MiB. */
#define RED_FP_RUN 16384u

/* rod_store_open, after replay: keys and the RAM filter. Logs why it fails. */
int red_store_open(struct rod_store *s);
void red_store_close(struct rod_store *s);

/* Submitting thread, one whole data grain: fingerprint it and look for a duplicate.
 * vol_off: the volume's RED_VOL_* switches. */
void red_grain_prepare(struct rod_store *s, unsigned vol_off, const void *data,
		       struct red_grain *rg);

/* The lookup half of red_grain_prepare, for rg->fp (and has_fp) already set (also
 * rod_vol_write_fp): sets rg->gc_gen, and rg->dup with the chunk's location and
 * segment when a live chunk has it. */
void red_fp_lookup(struct rod_store *s, struct red_grain *rg);

/* Submitting thread, after red_grain_prepare, for a grain that is not a duplicate:
 * compress it and encrypt it (under a chunk id reserved from next_chunk) into out
 * (ROD_GRAIN bytes that stay valid until the write completes). Returns the CRC32C of
 * what will be stored: of out when rg->sealed was set, else of data. */
uint32_t red_grain_seal(struct rod_store *s, const void *data, struct red_grain *rg,
			uint8_t *out);
/* Does red_grain_seal do anything (compression or encryption on)? */
bool red_seals(struct rod_store *s);

/* Commit thread: turn a data grain into a dedupe entry when its duplicate is still
 * valid (no GC pass since the lookup). Returns true when e became ENT_DEDUP. */
bool red_entry_dedup(struct rod_store *s, const struct red_grain *rg, struct batch_entry *e);

/* Commit thread, once the batch's segment seg is known: give every data entry its
 * chunk id, take the stored form its submitter sealed when it was encrypted for a chunk
 * id of seg (else compress and encrypt it here under a new id), repack the payloads
 * back to back. src[i] is the clear grain of entry i on entry, the stored bytes on
 * return; rg[i] what its submitter prepared (NULL: not a new data grain). *payload gets
 * the new payload length. */
int red_seal(struct rod_store *s, uint64_t seg, struct batch_entry *ent, const void **src,
	     const struct red_grain *const *rg, uint32_t n, uint32_t *payload);

/* Commit thread, instead of putting fp -> v (a 24-byte map value) into the fp column
 * family now: hold it back (a later one for the same fingerprint replaces it). Returns
 * -ENOMEM when the table is full (the caller drains first) or was not allocated. */
int red_fp_defer(struct rod_store *s, const uint8_t fp[RED_FP_LEN], const uint8_t *v);
/* How many are held back. */
uint32_t red_fp_pending(struct rod_store *s);
/* Commit thread (or after it stopped): put everything held back into mbt in key order.
 * They stay visible to red_fp_lookup until red_fp_drained (call it once mbt was
 * written). Returns how many were put. */
struct meta_batch;
uint32_t red_fp_drain(struct rod_store *s, struct meta_batch *mbt);
void red_fp_drained(struct rod_store *s);

/* Map value of an entry (data or dedupe) for the map and fp column families. */
void red_entry_map_val(const struct batch_entry *e, uint64_t payload_base, struct map_val *mv);

/* Read path: stored bytes (already checked against mv->crc) to the clear grain. */
int red_chunk_decode(struct rod_store *s, const struct map_val *mv, const void *stored,
		     void *dst);

/* GC, moving a chunk (entry e, stored bytes): recompress it with zstd when that makes
 * it smaller. Then out holds the new stored bytes (encrypted again, under the next
 * generation of the tweak, if it was encrypted) and len, crc, comp, enc_gen describe
 * them; false: move it as it is. */
bool red_recompress(struct rod_store *s, const struct batch_entry *e, const void *stored,
		    uint8_t *out, uint32_t *len, uint32_t *crc, uint8_t *comp, uint16_t *enc_gen);

/* At most this many dedupe references are noted per GC pass; beyond, duplicates are
 * stored again until the pass ends. */
#define RED_GC_REFS_MAX (1u << 22)

/* GC: a pass that may delete segments starts / ends. */
void red_gc_begin(struct rod_store *s);
void red_gc_end(struct rod_store *s);
/* GC, before moving the live chunks of segment seg and deleting it: false when a dedupe
 * entry of this pass references a chunk of seg that live(arg, chunk) (the mark) says is
 * dead, so seg must stay; else from now on no dedupe entry may reference seg. */
bool red_gc_doom(struct rod_store *s, uint64_t seg, bool (*live)(void *arg, uint64_t chunk),
		 void *arg);

#endif
