/* Replication support inside the engine (include/rod/store.h "Replication support";
 * docs/engine.md "Replication support"). Internal: what tests and benchmarks may look
 * at besides the public API. */
#ifndef ROD_STORE_REPL_H
#define ROD_STORE_REPL_H

#include <stdint.h>

#include "rod/store.h"

/* What one rod_vol_diff walk visited (cost figures, independent of time). */
struct repl_diff_stats {
	uint64_t map_keys;      /* block-entry keys of the lineage read (map column family) */
	uint64_t chg_keys;      /* change-summary keys read (epoch window, see repl.c) */
	uint64_t rng_entries;   /* range entries of the epoch window considered */
	uint64_t resolves;      /* medium_resolve calls (one per run or data grain) */
	uint64_t extents;       /* extents reported */
	int method;             /* REPL_DIFF_* the walk used */
};
enum { REPL_DIFF_WINDOW = 1, REPL_DIFF_WINDOW_SCAN, REPL_DIFF_FULL, REPL_DIFF_COMPARE,
       REPL_DIFF_FULL_SCAN /* base NULL, lineage without range entries: one key scan */ };

/* rod_vol_diff with its cost figures (st may be NULL). */
int repl_vol_diff(struct rod_store *s, const char *base, const char *snap, uint64_t start_off,
		  int (*fn)(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind),
		  void *arg, struct repl_diff_stats *st);

/* Change-summary keys in CF_LIN (all lineages): tests check that dropping a lineage
 * drops them. */
uint64_t repl_chg_keys(struct rod_store *s);

#endif
