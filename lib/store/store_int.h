/* Internal state of one store, shared by the lib/store modules (not a public API). */
#ifndef ROD_STORE_INT_H
#define ROD_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rod/store.h"
#include "meta.h"
#include "medium.h"
#include "segment.h"
#include "rod/util.h"

/* Store format (superblock). 2: batches may hold dedupe entries (kind 5) and chunk-table
 * values of 28 bytes, which a version-1 binary would replay as unmaps / read as absent.
 * A version-1 store is upgraded in place when opened (it has nothing version 2 lacks). */
#define ROD_FORMAT_VERSION 2u
#define ROD_FORMAT_OLDEST 1u
#define ROD_GRAIN_SHIFT 12
#define ROD_STRIPES 4096u

/* One volume or snapshot record (persisted in the "vol" column family).
 * Fields are guarded by rod_store.state (rwlock); refs by the same lock (write side
 * when freeing, atomic increments otherwise). */
struct vol_rec {
	uint64_t id;
	char name[ROD_SNAP_NAME_MAX];
	uint8_t uuid[16];
	uint64_t size;
	uint32_t block_size;
	bool is_snapshot;
	char source[ROD_SNAP_NAME_MAX];
	uint64_t created_ns;
	enum rod_cache_mode cache;
	bool offload;
	bool destroyed;
	uint64_t destroyed_ns;
	uint64_t lineage;       /* lineage this volume (or snapshot) reads */
	uint64_t epoch;         /* snapshot: its frozen epoch; volume: unused (lineage cur) */
	uint64_t parent_id;     /* snapshot: id of its volume */
	unsigned reduce_off;    /* RED_VOL_* data reduction switches turned off (benchmarks) */
	/* runtime */
	bool eradicated;        /* removed from the table; freed when refs drops to 0 */
	atomic_int refs;
};

/* An open handle: a volume, or a pin (a read-only frozen view of a volume). */
struct rod_vol {
	struct rod_store *s;
	struct vol_rec *rec;
	bool is_pin;
	uint64_t pin_lineage, pin_epoch, pin_size;
	struct rod_vol *pin_next, *pin_prev; /* s->pins list, under s->state */
};

/* Per-grain lock stripe: shared holders (whole-grain writes) or one exclusive holder
 * (read-modify-write, compare-and-write). Held from submit until the commit thread has
 * applied the write, so a RMW can never resurrect data an overlapping write replaced. */
struct stripe {
	pthread_mutex_t m;
	pthread_cond_t c;
	int shared;
	bool excl;
	int waiters;
};

#define WPOOL_MAX 128u

struct rod_store {
	char *dir;
	struct rod_store_opts opts;
	struct rod_array_identity ident;
	struct meta *meta;           /* RocksDB */
	struct seglog *log;          /* segment files */

	/* state guards vols, lineages (medium.h), pins, ids. Readers (I/O) take it
	 * shared; the commit thread takes it exclusive while it builds a batch. */
	pthread_rwlock_t state;
	struct vol_rec **vols;
	size_t nvols, capvols;
	struct media media;
	struct rod_vol pins;         /* list head of live pins */
	uint64_t next_vol_id;
	uint64_t next_lineage;

	struct stripe stripes[ROD_STRIPES];

	/* commit thread (commit.c) */
	struct commit *commit;
	/* copy worker threads (io.c) */
	struct copyq *copyq;
	/* small write requests kept for reuse (io.c, wreq_new) */
	pthread_mutex_t wpool_m;
	void *wpool[WPOOL_MAX];
	unsigned wpool_n;

	/* background GC (gc.c) */
	pthread_mutex_t gc_lock;     /* one GC pass at a time */
	pthread_mutex_t ckpt_lock;   /* one checkpoint at a time */
	pthread_t gc_thread;
	bool gc_thread_on;
	pthread_mutex_t bg_m;
	pthread_cond_t bg_c;
	bool stopping;
	uint64_t ckpt_seg, ckpt_off; /* last checkpoint (bg_m) */
	uint64_t gc_last_used;       /* log size after the last background pass (bg thread) */
	uint64_t gc_due_since;       /* a background pass was due but deferred since (bg thread) */
	atomic_uint_fast64_t io_last_ns; /* last volume I/O submitted (1 ms resolution; gc.c) */

	/* stats (atomics, written by the commit thread and GC) */
	atomic_uint_fast64_t st_user, st_disk, st_commits, st_gc_runs, st_gc_freed,
		st_gc_moved;
	uint64_t recovery_ns, recovered_records;
	atomic_uint_fast64_t change_gen; /* batches applied (space accounting cache) */
	pthread_mutex_t space_lock;  /* guards space_cache */
	struct space_cache *space_cache;
	size_t nspace_cache;
	bool log_truncated;          /* open: a torn log tail was cut off */
	atomic_bool failed;          /* a commit failed: writes and metadata changes refused */
	atomic_uint_fast64_t fs_free, fs_free_at; /* cached statvfs (space.c) */
	uint64_t capacity, reserve;
	struct red_store *red;       /* data reduction and encryption (reduce_store.c) */
};

/* Volume I/O was submitted now: background garbage collection defers to it (gc.c).
 * The shared stamp is written at most once a millisecond. */
static inline void gc_note_io(struct rod_store *s)
{
	uint64_t now = rod_now_ns();

	if (now - atomic_load_explicit(&s->io_last_ns, memory_order_relaxed) > 1000000u)
		atomic_store_explicit(&s->io_last_ns, now, memory_order_relaxed);
}

/* vol.c */
struct vol_rec *vol_find_name(struct rod_store *s, const char *name); /* state held */
struct vol_rec *vol_find_id(struct rod_store *s, uint64_t id);        /* state held */
void vol_rec_encode(const struct vol_rec *r, uint8_t *buf, size_t *len);
int vol_rec_decode(struct vol_rec *r, const uint8_t *buf, size_t len);
void vol_rec_put(struct vol_rec *r);
int vol_table_add(struct rod_store *s, struct vol_rec *r);
void vol_table_remove(struct rod_store *s, struct vol_rec *r);
int vol_load_all(struct rod_store *s);

/* io.c */
void wreq_pool_drain(struct rod_store *s);
int copy_workers_start(struct rod_store *s);
void copy_workers_stop(struct rod_store *s);
int io_read_view(struct rod_store *s, uint64_t lin, uint64_t epoch, uint64_t off,
		 void *buf, uint64_t len);
/* Stored bytes of a chunk, verified, not decoded (into dst if a whole grain, else tmp). */
int io_chunk_fetch(struct rod_store *s, const struct map_val *mvp, uint8_t *dst, uint8_t *tmp,
		   struct map_val *mp, uint8_t **storedp);
int io_chunk_read(struct rod_store *s, const struct map_val *mvp, void *dst);
/* medium_resolve under the state lock (read). */
int store_resolve(struct rod_store *s, struct meta_iter *it, uint64_t lin, uint64_t epoch,
		  uint64_t g, uint64_t n, struct resolved *r);
int io_vol_view(struct rod_vol *v, uint64_t *lin, uint64_t *epoch, uint64_t *size, bool *ro);
void stripe_lock_range(struct rod_store *s, uint64_t lin, uint64_t g0, uint64_t n, bool excl);
void stripe_unlock_range(struct rod_store *s, uint64_t lin, uint64_t g0, uint64_t n, bool excl);

/* space.c */
bool space_low(struct rod_store *s);
/* Room for bytes more of new data above the reserve? */
bool space_room(struct rod_store *s, uint64_t bytes);
uint64_t space_used(struct rod_store *s);

/* store.c */
int store_checkpoint(struct rod_store *s);
void sys_log_u64(struct mutbuf *mb, const char *key, uint64_t v);

/* io.c: read and check one chunk as a host read would (scrub); 0, -EBADMSG or -EIO */
int store_chunk_check(struct rod_store *s, const struct map_val *mv);

#endif
