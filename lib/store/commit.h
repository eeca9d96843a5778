/* The commit thread: group commit of queued writes and metadata operations.
 *
 * Callers queue items; the commit thread takes everything queued, assigns epochs in
 * queue order (so a snapshot splits writes exactly where it was queued), builds one
 * batch (header + payloads), appends it to the open segment with one pwritev, makes it
 * durable with one fdatasync when any item needs that, applies the map deltas and
 * metadata mutations to RocksDB in one unlogged write batch, then completes every item. */
#ifndef ROD_STORE_COMMIT_H
#define ROD_STORE_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "meta.h"
#include "reduce_store.h"
#include "segment.h"

struct rod_store;
struct vol_rec;

/* One grain of a write item. */
struct cgrain {
	uint64_t lba;
	uint8_t kind;          /* ENT_DATA / ENT_ZERO / ENT_UNMAP / ENT_RELOC */
	const void *data;      /* ENT_DATA/ENT_RELOC: ROD_GRAIN bytes (RELOC: len bytes) */
	uint64_t chunk;        /* ENT_RELOC: the chunk id being moved */
	uint32_t len;          /* ENT_RELOC: stored length */
	uint32_t crc;          /* CRC32C of data (computed by the submitter, off the lock) */
	/* ENT_RELOC: where the chunk came from, so the segments alone can rebuild the map */
	uint64_t lineage, epoch;
	uint32_t home_off;
	/* ENT_RELOC: GC already checked (off the commit thread, under a watch) whether the
	 * map entry still points at this chunk; the commit thread re-checks only when the
	 * key was written since the watch began (commit_watch_hit). */
	bool cur_known, cur;
	/* ENT_DATA: fingerprint and duplicate found by the submitter; ENT_RELOC: the
	 * chunk's fingerprint, compression and encryption generation */
	struct red_grain red;
};

enum { CI_WRITE = 1, CI_OP, CI_FLUSH, CI_RELOC };

struct citem {
	struct citem *next;
	int kind;
	bool durable;          /* needs fdatasync before completion */
	bool roll;             /* start a new segment before this batch (GC seals the open one) */
	bool alone;            /* in a batch of its own: it reads the applied state (GC relog) */
	bool log_only;         /* (alone) logged, not applied: its mutations equal the applied
				* state already (GC relog) */
	/* CI_FLUSH with durable: checkpoint. Once the batch is synced and applied, the commit
	 * thread switches RocksDB's memtables (meta_switch) before it applies anything else,
	 * and reports the log position they cover. */
	bool ckpt;
	uint64_t ckpt_seg, ckpt_off;
	/* CI_WRITE */
	struct vol_rec *rec;
	struct cgrain *g;
	uint32_t ng;
	/* CI_OP: runs on the commit thread with rod_store.state held exclusively; logs its
	 * metadata changes into mb; returns 0 or -errno (the item's result). */
	int (*build)(struct rod_store *s, struct citem *ci, struct mutbuf *mb);
	void *arg;
	/* completion */
	int result;
	void (*done)(struct citem *ci);
	void *priv;
};

struct commit;

/* True on a commit thread (completions run there; they must not block on it). */
extern _Thread_local bool commit_thread_self;

int commit_start(struct rod_store *s);
/* Stop the thread after the queue drains and sync the log (the position stays readable). */
void commit_stop(struct rod_store *s);
/* Is the commit thread there to take items (not stopped)? */
bool commit_running(struct rod_store *s);
void commit_free(struct rod_store *s);
void commit_set_pos(struct rod_store *s, uint64_t seg, uint64_t off);
/* Are there appended batches not yet made durable (write-back)? */
bool commit_unsynced(struct rod_store *s);
void commit_queue(struct rod_store *s, struct citem *ci);
/* Queue n items back to back (no other item between them). */
void commit_queue_n(struct rod_store *s, struct citem **ci, size_t n);
/* Queue and wait. */
int commit_run(struct rod_store *s, struct citem *ci);
/* Position after the last batch that is both durable and applied (checkpoint). */
void commit_durable_pos(struct rod_store *s, uint64_t *seg, uint64_t *off);
/* Watches (GC): from commit_watch_begin's return until commit_watch_end, the commit
 * thread remembers which keys it applies (as hashes). A value read by another thread
 * after the begin is still the applied value at some later batch unless
 * commit_watch_hit says the key may have been written since (false positives only);
 * then the commit thread reads it again. Nested watches share one set. */
int commit_watch_begin(struct rod_store *s);
int commit_watch_end(struct rod_store *s);
/* Does the map entry a relocated grain was written for still point at its chunk? (a
 * RocksDB read; any thread) */
bool commit_reloc_current(struct rod_store *s, const struct cgrain *g);
/* Commit thread only (build functions, relocation checks). */
bool commit_watch_hit(struct rod_store *s, uint8_t cf, const void *k, size_t kl);
/* Apply a batch read from the log to RocksDB (replay). */
/* rebuild: also restore map entries from relocation records (see rebuild_metadata). */
int commit_apply_batch(struct rod_store *s, const struct batch *b, bool rebuild);

#endif
