/* RocksDB metadata database of a store: one column family per table (engine-notes.md). */
#ifndef ROD_STORE_META_H
#define ROD_STORE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Column families. The order is the on-disk list; append only. */
enum meta_cf {
	CF_DEFAULT = 0,
	CF_MAP,     /* lineage|lba|~epoch (24 B BE) -> struct map_val */
	CF_RNG,     /* lineage|seq -> range entry (medium.c) */
	CF_LIN,     /* lineage -> current epoch, next range seq */
	CF_VOL,     /* volume id -> volume record */
	CF_META,    /* rod_store_meta_* keys of the layers above */
	CF_CHUNK,   /* chunk id -> relocated location (after GC) */
	CF_SYS,     /* store counters and ids */
	CF_FP,      /* fingerprints (data reduction, later) */
	CF_SEG,     /* per-segment summaries (later) */
	CF_COUNT
};

struct meta;
struct meta_batch;
struct meta_iter;

int meta_open(const char *path, bool create, struct meta **out);
void meta_close(struct meta *m);
/* Flush every column family's memtable to disk (used before a checkpoint). */
/* For threads on the I/O path: RocksDB keeps no per-thread perf counts for the caller. */
void meta_thread_no_perf_counts(void);
int meta_flush(struct meta *m);
/* Checkpoints, without waiting: switch every column family's memtable (what was written
 * so far goes to table files in the background; later writes do not). Called by the
 * commit thread right after a sync, so the switched memtables hold durable log only. */
int meta_switch(struct meta *m);
/* Wait until every switched memtable is in durable table files. */
int meta_flush_wait(struct meta *m);
/* Bytes held by the active memtables of all column families (RocksDB's own count, the
 * one its switch at META_WRITE_BUFFER goes by). */
uint64_t meta_mem_active(struct meta *m);
/* Memtable size (write_buffer_size) at which RocksDB switches and flushes by itself. */
#define META_WRITE_BUFFER (64u << 20)

/* *val malloc'd; -ENOENT when absent. */
int meta_get(struct meta *m, enum meta_cf cf, const void *key, size_t klen, void **val,
	     size_t *vlen);
/* Direct unlogged writes (only for derived data the log does not need). */
int meta_put(struct meta *m, enum meta_cf cf, const void *key, size_t klen, const void *val,
	     size_t vlen);

struct meta_batch *meta_batch_new(void);
void meta_batch_free(struct meta_batch *b);
void meta_batch_clear(struct meta_batch *b);
void meta_batch_put(struct meta_batch *b, struct meta *m, enum meta_cf cf, const void *key,
		    size_t klen, const void *val, size_t vlen);
void meta_batch_del(struct meta_batch *b, struct meta *m, enum meta_cf cf, const void *key,
		    size_t klen);
void meta_batch_del_range(struct meta_batch *b, struct meta *m, enum meta_cf cf,
			  const void *k0, size_t k0len, const void *k1, size_t k1len);
/* Apply without the RocksDB WAL: the segment log is the write-ahead log. */
int meta_batch_write(struct meta *m, struct meta_batch *b);

struct meta_iter *meta_iter_new(struct meta *m, enum meta_cf cf);
void meta_iter_free(struct meta_iter *it);
/* An iterator reads the database as of its creation. Flatten replaces a range entry (RAM)
 * by map entries (RocksDB) applied earlier: it bumps the generation when it drops the
 * range entry, and readers renew an iterator older than that (medium_resolve does). */
void meta_iter_gen_bump(struct meta *m);
/* An iterator whose RocksDB iterator is created at its first seek (and again at the
 * first seek after meta_iter_renew dropped it): free when every lookup hits a cache. */
struct meta_iter *meta_iter_new_lazy(struct meta *m, enum meta_cf cf);
/* The map cache's clock (mapcache.c): meta_clock_tick advances it and returns the new
 * value; meta_iter_born is its value just before the iterator's RocksDB iterator was
 * created, so anything applied before a tick that returned more than that may be missing
 * from what the iterator sees. */
uint64_t meta_clock_tick(struct meta *m);
uint64_t meta_iter_born(const struct meta_iter *it);
void meta_iter_renew(struct meta_iter *it);
void meta_iter_seek(struct meta_iter *it, const void *key, size_t klen);
void meta_iter_first(struct meta_iter *it);
bool meta_iter_valid(struct meta_iter *it);
void meta_iter_next(struct meta_iter *it);
const uint8_t *meta_iter_key(struct meta_iter *it, size_t *klen);
const uint8_t *meta_iter_val(struct meta_iter *it, size_t *vlen);

/* Metadata mutations as logged in a batch header: {cf u8, op u8, klen u16, vlen u32,
 * key, value}. The same bytes are applied to RocksDB at commit and at replay, and every
 * mutation is an absolute put or delete, so replaying a suffix of the log twice is
 * harmless. */
struct mutbuf {
	uint8_t *buf;
	size_t len, cap;
};
enum { MUT_PUT = 1, MUT_DEL = 2, MUT_DELRANGE = 3 };
void mutbuf_put(struct mutbuf *mb, enum meta_cf cf, const void *k, size_t kl, const void *v,
		size_t vl);
void mutbuf_del(struct mutbuf *mb, enum meta_cf cf, const void *k, size_t kl);
/* Delete keys in [k0, k1). */
void mutbuf_del_range(struct mutbuf *mb, enum meta_cf cf, const void *k0, size_t k0l,
		      const void *k1, size_t k1l);
void mutbuf_free(struct mutbuf *mb);
/* One logged mutation as mutbuf_next decodes it: v is the value (MUT_PUT) or the end
 * key of the range (MUT_DELRANGE). */
struct mut {
	uint8_t cf, op;
	uint16_t kl;
	uint32_t vl;
	const uint8_t *k, *v;
};
/* The mutation at *pos of buf[0, len) into *m, *pos past it; false at the end or at a
 * truncated record (*pos stays before it). */
bool mutbuf_next(const uint8_t *buf, size_t len, size_t *pos, struct mut *m);
/* Decode buf into batch b; -EINVAL on a malformed buffer. */
int mutbuf_apply(struct meta *m, struct meta_batch *b, const uint8_t *buf, size_t len);

#endif
