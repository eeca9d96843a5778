/* Recording side of the SCSI core's I/O statistics (see include/rod/scsi_stats.h for
 * what is counted). Lock-free: counters are relaxed atomics, per-volume slots are
 * claimed with a compare-and-swap and never released (volume ids are never reused). */
#ifndef ROD_SCSI_STATS_INT_H
#define ROD_SCSI_STATS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "rod/scsi_stats.h"

struct rod_scsi_task;
struct rod_scsi_stats;

int rod_scsi_stats_new(struct rod_scsi_stats **out);
void rod_scsi_stats_free(struct rod_scsi_stats *s);

/* Called once per command from rod_task_done, before the transport's callback. */
void rod_stats_task_done(struct rod_scsi_task *t);

/* Copy offload: one command of this kind finished (ok: status GOOD) having copied
 * bytes. */
void rod_stats_copy_done(struct rod_scsi_target *tgt, enum rod_scsi_copy_kind kind, bool ok,
			 uint64_t bytes);
/* A POPULATE TOKEN created a token. */
void rod_stats_token_made(struct rod_scsi_target *tgt);

#endif
