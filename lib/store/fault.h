/* Named fault-injection points of the engine (tests only; docs/reliability.md).
 *
 * Armed from the ROD_FAULT environment variable when a store opens, or at run time by
 * rod_store_fault_set (rodd's test-only JSON-RPC method array.fault). The state is
 * process-wide: rodd has one store. Disarmed, a point costs one relaxed load and a
 * predictable branch (fault_hit). */
#ifndef ROD_STORE_FAULT_H
#define ROD_STORE_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum fault_point {
	FAULT_SEG_PWRITE_FAIL,   /* segment append fails with EIO, nothing written */
	FAULT_SEG_PWRITE_SHORT,  /* half of the append reaches the file, then EIO */
	FAULT_FDATASYNC_FAIL,    /* fdatasync of the segment log fails with EIO */
	FAULT_ENOSPC,            /* segment append fails with ENOSPC (file system full) */
	FAULT_ROCKSDB_WRITE_FAIL,/* a RocksDB batch write fails */
	FAULT_TORN_TAIL,         /* half of the append reaches the file, then SIGKILL */
	FAULT_BITFLIP,           /* one bit of a data chunk flipped on disk after its append */
	FAULT_N
};

extern atomic_uint fault_armed;  /* bit per armed point */

bool fault_fire(enum fault_point p);
/* Bitflip: does a chunk stored for grain number grain get the flip? Consumes a hit. */
bool fault_bitflip_fire(uint64_t grain);

static inline bool fault_hit(enum fault_point p)
{
	if (__builtin_expect(atomic_load_explicit(&fault_armed, memory_order_relaxed) == 0, 1))
		return false;
	return fault_fire(p);
}

static inline bool fault_any(void)
{
	return __builtin_expect(atomic_load_explicit(&fault_armed, memory_order_relaxed) != 0, 0);
}

/* Arm from ROD_FAULT once per process (rod_store_open). */
void fault_init_env(void);

#endif
