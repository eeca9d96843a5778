/* I/O statistics of the SCSI core (lib/scsi/stats.c), read by rodd for /metrics.
 *
 * Counted at the single completion point of a command (rod_task_done): per volume,
 * READ(6/10/12/16) are reads and WRITE*, WRITE AND VERIFY*, WRITE SAME*, COMPARE AND
 * WRITE and ORWRITE are writes. Bytes are the data moved over the transport (Data-In
 * for reads, Data-Out for writes) of commands that ended GOOD; ops and latency count
 * every completed command. Errors are CHECK CONDITIONs by sense key, array-wide.
 * Copy offload counts commands that ended GOOD and the bytes they copied (or zeroed),
 * by kind. All counters are monotonic from rodd's start. */
#ifndef ROD_SCSI_STATS_H
#define ROD_SCSI_STATS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

struct rod_scsi_target;

/* Latency histogram upper bounds in seconds (Prometheus "le"); one more bucket,
 * +Inf, follows them. */
#define ROD_SCSI_LAT_BOUNDS 14
/* Inline so that readers (lib/ctl's metrics) need not link lib/scsi. */
static inline double rod_scsi_lat_bound(unsigned i)
{
	static const double b[ROD_SCSI_LAT_BOUNDS] = {
		0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
		0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
	};
	return i < ROD_SCSI_LAT_BOUNDS ? b[i] : INFINITY;
}

struct rod_scsi_io_stats {
	uint64_t ops;
	uint64_t bytes;
	uint64_t lat_sum_ns;
	uint64_t lat_bucket[ROD_SCSI_LAT_BOUNDS + 1];   /* not cumulative; last = +Inf */
};

struct rod_scsi_vol_stats {
	uint64_t vol_id;
	struct rod_scsi_io_stats read, write;
};

enum rod_scsi_copy_kind {
	ROD_COPY_XCOPY = 0,     /* EXTENDED COPY (LID1/LID4), block-to-block segments */
	ROD_COPY_ODX = 1,       /* WRITE USING TOKEN with a POPULATE TOKEN token */
	ROD_COPY_ZERO = 2,      /* WRITE USING TOKEN with the block device zero token */
	ROD_COPY_KINDS = 3,
};
static inline const char *rod_scsi_copy_kind_name(unsigned k)
{
	static const char *const n[ROD_COPY_KINDS] = { "xcopy", "odx", "zero" };
	return k < ROD_COPY_KINDS ? n[k] : "?";
}

struct rod_scsi_stats_snapshot {
	struct rod_scsi_vol_stats *vols;        /* malloc'd; volumes with any I/O */
	size_t n_vols;
	uint64_t sense_keys[16];                /* CHECK CONDITIONs by sense key */
	uint64_t copy_ops[ROD_COPY_KINDS];
	uint64_t copy_bytes[ROD_COPY_KINDS];
	uint64_t copy_errors[ROD_COPY_KINDS];   /* copy commands that did not end GOOD */
	uint64_t populate_tokens;               /* POPULATE TOKEN commands that made a token */
	uint64_t tokens_live;                   /* ROD tokens in the table now */
	uint64_t volumes_dropped;               /* I/O not counted: more volumes than slots */
};

/* Fill *out (free out->vols with free()). Returns 0 or -ENOMEM. */
int rod_scsi_stats_get(struct rod_scsi_target *t, struct rod_scsi_stats_snapshot *out);

#endif
