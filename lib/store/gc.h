/* Space reclamation: mark live chunks from the map as seen by every reader (volumes,
 * snapshots, pins, range-entry targets), pick segments by cost-benefit, copy their live
 * chunks forward (relocation through the chunk table), delete them. No reference counts
 * on the write path. */
#ifndef ROD_STORE_GC_H
#define ROD_STORE_GC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "medium.h"

struct rod_store;

/* Background entry: one pass when there is garbage worth collecting. */
void gc_maybe(struct rod_store *s);
/* A background pass due since *due_since (0: not yet; set to now) waits while the last
 * volume I/O (io_last) is less than 2 s old, for at most 60 s. False: run it now. */
bool gc_defer(uint64_t now, uint64_t io_last, uint64_t *due_since);

/* Per-lineage reader epochs (sorted; EPOCH_MAX = the live volume). */
struct readers {
	uint64_t lin;
	uint64_t *ep;
	size_t n, cap;
	unsigned nsnap;          /* readers that are snapshots/pins/targets */
	struct rng_ent *rng;     /* copy of the lineage's range entries (they hide blocks) */
	size_t nrng;
};
struct reader_set {
	struct readers *r;       /* sorted by lin */
	size_t n, cap;
};
/* Compute the reader set (state must NOT be held; takes it shared). */
int readers_collect(struct rod_store *s, struct reader_set *rs);
void readers_free(struct reader_set *rs);
struct readers *readers_find(struct reader_set *rs, uint64_t lin);

/* Visit every map entry of lineage lin (or all when lin == 0) with how many readers
 * see it and whether the live volume does. */
typedef void (*mark_fn)(void *arg, uint64_t lin, uint64_t lba, uint64_t epoch,
			const struct map_val *v, unsigned nreaders, bool current);
int mark_scan(struct rod_store *s, struct reader_set *rs, uint64_t lin, mark_fn fn, void *arg);

#endif
