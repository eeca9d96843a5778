/* Map cache: the newest block entry of recently read grains, so a read of a current
 * volume whose entry is cached resolves without a RocksDB iterator (DESIGN.md: reads
 * whose metadata is cached complete on the network thread).
 *
 * Direct-mapped slots keyed by (lineage, grain), each holding the grain's newest block
 * entry (epoch and value). Only lookups at EPOCH_MAX fill it (they see the newest
 * entry), and so do the writes the commit thread applies (at their lineage's current
 * epoch); a reader at an older epoch may use a hit whose epoch is not newer than its
 * own. The commit thread invalidates every other map key it applies, after applying it, with
 * a tick of the meta clock; a fill is refused when its slot was invalidated at a tick
 * its iterator may not have seen (meta_iter_born), so a slow reader never puts back an
 * overwritten value. A range delete of map keys invalidates everything.
 *
 * Beside it, where GC moved chunks (the chunk table's value: segment, offset, stored
 * length, CRC, format), keyed by chunk id, so a read of a moved chunk does not ask
 * RocksDB. No invalidation is needed: chunk and segment ids are never reused within a
 * run and segments are never rewritten, so a remembered place either holds the chunk's
 * bytes as described or is gone (its segment was collected: the reader asks the chunk
 * table again). */
#ifndef ROD_STORE_MAPCACHE_H
#define ROD_STORE_MAPCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "medium.h"

struct mapcache;

/* nslots: rounded down to a power of two; 0 turns the cache off (returns NULL). */
struct mapcache *mc_new(size_t nslots);
void mc_free(struct mapcache *mc);
/* The cached newest entry of (lin, lba), if any. */
bool mc_get(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t *epoch, struct map_val *v);
/* A lookup at EPOCH_MAX through an iterator born at `born` found (epoch, v). */
void mc_fill(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t epoch,
	     const struct map_val *v, uint64_t born);
/* Commit thread, after applying: (lin, lba) got its newest entry (epoch, v) at tick c. */
void mc_set(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t epoch,
	    const struct map_val *v, uint64_t c);
/* Commit thread, after applying: (lin, lba) changed at clock tick c. */
void mc_invalidate(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t c);
/* Every entry may have changed at tick c (range delete, replay). */
void mc_invalidate_all(struct mapcache *mc, uint64_t c);
/* Map keys of logged mutations (mutbuf format) applied at tick c. */
void mc_invalidate_mut(struct mapcache *mc, const uint8_t *mut, size_t len, uint64_t c);

/* A remembered place of a chunk: segment, offset, and in v its len, crc, comp and
 * enc_gen there. */
bool mc_chunk_get(struct mapcache *mc, uint64_t chunk, uint64_t *seg, uint64_t *off,
		  struct map_val *v);
/* The chunk table says chunk v->chunk is at (seg, off), stored as v says. */
void mc_chunk_put(struct mapcache *mc, uint64_t seg, uint64_t off, const struct map_val *v);

#endif
