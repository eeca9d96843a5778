/* The target object and helpers private to lib/scsi (not for tpc.c: use
 * scsi_internal.h). */
#ifndef ROD_SCSI_TARGET_H
#define ROD_SCSI_TARGET_H

#include "scsi_internal.h"

struct rod_host_map {
	uint64_t lun;
	struct rod_scsi_lu *lu;
};

struct rod_host_lus {
	uint64_t host_id;
	struct rod_host_map *maps;         /* sorted by lun */
	size_t n;
};

struct rod_scsi_target {
	struct rod_store *store;
	char name[224];
	char vendor[9], product[17], revision[5];
	/* lock guards hosts, nhosts, lus, nlus. Order: lock before any lu->lock. */
	pthread_rwlock_t lock;
	struct rod_host_lus *hosts;
	size_t nhosts;
	struct rod_scsi_lu **lus;          /* every LU mapped to at least one host; one ref */
	size_t nlus;
	/* nexus_lock guards nexus[] and nexus_cap; a leaf lock (nothing taken inside). */
	pthread_mutex_t nexus_lock;
	struct rod_scsi_nexus **nexus;     /* by nexus index */
	uint32_t nexus_cap;
	atomic_int inflight;               /* commands between exec and done */
	pthread_mutex_t idle_lock;
	pthread_cond_t idle_cond;
	void *tpc_state;
	struct rod_scsi_stats *stats;      /* stats.c; lock-free counters */
	atomic_bool soft_reported;         /* 38/07 raised since we went over the threshold */
	atomic_bool soft_pending;          /* 38/07 to raise on the next command (network
	                                      thread), not in a store completion callback */
	atomic_uint_fast64_t soft_checked_ns;
	/* Task management: bumped by every abort of tasks of other nexuses; commands are
	 * stamped with it on arrival (rod_scsi_cmd_received). Starts at 1. */
	atomic_uint_fast64_t tmf_gen;
	/* Test hook (ROD_SCSI_TEST_DELAY_MS): delay_lock guards delayq and delay_stop. */
	uint32_t delay_ms;                 /* 0: hook off (immutable after new) */
	pthread_mutex_t delay_lock;
	pthread_cond_t delay_cond;
	struct rod_scsi_task *delayq;
	bool delay_started, delay_stop;
	pthread_t delay_thread;
	/* Large writes are handed to a worker (rod_task_offload): the store fingerprints,
	 * compresses and encrypts on the submitting thread, and a network thread doing
	 * that cannot read the next Data-Out meanwhile. wq_lock guards the queue. */
	uint32_t offload_min;              /* bytes; 0: off (immutable after new) */
	uint32_t offload_busy;             /* also smaller writes once this many commands
	                                      are in flight (0: never; immutable) */
	uint32_t max_tokens;               /* ROD token table size, 0: default (immutable after new) */
	pthread_mutex_t wq_lock;
	pthread_cond_t wq_cond;
	struct rod_scsi_task *wq_head, *wq_tail;
	bool wq_started, wq_stop;
	unsigned wq_nthreads;              /* workers: one per core, at most 4 */
	pthread_t wq_thread[4];
};

void rod_target_task_begin(struct rod_scsi_target *t);
void rod_target_task_end(struct rod_scsi_target *t);
uint32_t rod_lu_ua_take(struct rod_scsi_lu *lu, uint32_t nexus_index);
uint16_t rod_ua_asc(uint32_t bit);
void rod_lu_ua_set_all_locked(struct rod_scsi_lu *lu, uint32_t bits, int except);
void rod_target_ua_all(struct rod_scsi_target *t, uint32_t bits);
/* LUNs mapped to host_id in order; returns the count (may exceed max). */
size_t rod_target_host_luns(struct rod_scsi_target *t, uint64_t host_id, uint64_t *luns,
			    size_t max);
/* T10 vendor id designator bytes of lu (40 bytes). */
size_t rod_lu_t10_designator(struct rod_scsi_lu *lu, uint8_t *out);


void rod_lu_ua_clear(struct rod_scsi_lu *lu, uint32_t nexus_index, uint32_t bits);
void rod_target_luns_reported(struct rod_scsi_target *t, struct rod_scsi_nexus *n);
#endif
