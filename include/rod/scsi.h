/* The SCSI core (lib/scsi): turns CDBs into store calls. Transport-independent: the
 * iSCSI layer (or a test harness) fills a struct rod_scsi_cmd and calls rod_scsi_exec.
 * See DESIGN.md "Layers" and docs/scsi-offload-reference.md. */
#ifndef ROD_SCSI_H
#define ROD_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rod/store.h"

struct rod_scsi_target;

/* SAM status codes */
#define SAM_STAT_GOOD 0x00
#define SAM_STAT_CHECK_CONDITION 0x02
#define SAM_STAT_CONDITION_MET 0x04
#define SAM_STAT_BUSY 0x08
#define SAM_STAT_RESERVATION_CONFLICT 0x18
#define SAM_STAT_TASK_SET_FULL 0x28
#define SAM_STAT_TASK_ABORTED 0x40

#define ROD_SCSI_SENSE_MAX 252
#define ROD_SCSI_CDB_MAX 32

struct rod_scsi_target_opts {
	struct rod_store *store;
	const char *target_name;      /* iqn.2026-11.io.rodstore:<array> */
	const char *vendor;           /* INQUIRY vendor (8 chars), default "RODSTORE" */
	const char *product;          /* INQUIRY product (16 chars), default "rodstore" */
	const char *revision;         /* 4 chars */
	uint32_t max_tokens;          /* ROD tokens kept at most (rod.conf max_odx_tokens); 0: default */
};

int rod_scsi_target_new(const struct rod_scsi_target_opts *o, struct rod_scsi_target **out);
/* Waits for outstanding commands; closes every volume handle. */
void rod_scsi_target_free(struct rod_scsi_target *t);

/* ---- LUN masking, driven by the control plane ----------------------------------
 * A host (ctl object) sees the volumes connected to it, each at a LUN. Every nexus
 * carries the host id it logged in as; commands resolve (host, lun) -> volume here. */
int rod_scsi_map_add(struct rod_scsi_target *t, uint64_t host_id, uint64_t lun, uint64_t vol_id);
int rod_scsi_map_remove(struct rod_scsi_target *t, uint64_t host_id, uint64_t lun);
/* A volume was destroyed: it leaves every host at once (REPORT LUNS DATA HAS CHANGED UA). */
void rod_scsi_vol_removed(struct rod_scsi_target *t, uint64_t vol_id);
/* Capacity changed (06/2A/09) / mode parameters changed (06/2A/01), e.g. cache mode. */
void rod_scsi_vol_resized(struct rod_scsi_target *t, uint64_t vol_id);
void rod_scsi_vol_params_changed(struct rod_scsi_target *t, uint64_t vol_id);

/* ---- I_T nexus --------------------------------------------------------------- */
struct rod_scsi_nexus {
	char initiator_name[224];     /* iSCSI initiator name (iqn...) */
	char initiator_port[256];     /* "<name>,i,0x<isid hex>" (SPC-4 TransportID form) */
	uint8_t isid[6];
	uint16_t tpgt;                /* target portal group tag */
	uint16_t rel_port;            /* relative target port id (1-based) */
	uint64_t host_id;             /* ctl host this initiator matched; 0 = none (no LUNs) */
	/* owned by lib/scsi: */
	uint32_t index;               /* set by rod_scsi_nexus_register */
	void *scsi_priv;
};
/* Called when a session reaches full feature phase; gives the nexus its power-on UA. */
int rod_scsi_nexus_register(struct rod_scsi_target *t, struct rod_scsi_nexus *n);
/* Called when the session ends (after every command of it has completed). */
void rod_scsi_nexus_unregister(struct rod_scsi_target *t, struct rod_scsi_nexus *n);

/* ---- Commands ------------------------------------------------------------------ */
enum rod_scsi_dir { ROD_SCSI_DIR_NONE = 0, ROD_SCSI_DIR_OUT = 1, ROD_SCSI_DIR_IN = 2, ROD_SCSI_DIR_BIDI = 3 };
enum rod_scsi_task_attr { ROD_TASK_SIMPLE = 0, ROD_TASK_ORDERED, ROD_TASK_HEAD_OF_QUEUE, ROD_TASK_ACA };

struct rod_scsi_cmd {
	/* filled by the transport */
	struct rod_scsi_nexus *nexus;
	uint64_t lun;                 /* flat LUN number (SAM-5 peripheral/flat decoded) */
	uint8_t cdb[ROD_SCSI_CDB_MAX];
	uint8_t cdb_len;
	uint32_t tag;
	enum rod_scsi_task_attr attr;
	enum rod_scsi_dir dir;
	uint32_t exp_len;             /* expected data transfer length from the initiator */
	const void *out_buf;          /* all Data-Out, gathered before exec */
	uint32_t out_len;             /* bytes in out_buf (may be < what the CDB implies) */
	void *in_buf;                 /* Data-In buffer, in_cap bytes, supplied by the transport */
	uint32_t in_cap;
	/* filled by lib/scsi */
	uint32_t in_len;              /* bytes placed in in_buf (<= in_cap) */
	/* The data transfer length the CDB implies (SPDTL, bytes; 0 when none or not yet
	 * decoded), for residuals: the transport reports overflow xfer_len - exp_len when
	 * exp_len < xfer_len (with GOOD or with the sense we set), underflow otherwise.
	 * A WRITE whose out_len is below what the CDB needs writes the whole blocks that
	 * arrived (GOOD, overflow residual); other commands with short Data-Out get 05/0E/03
	 * (INVALID FIELD IN COMMAND INFORMATION UNIT) and change nothing. */
	uint32_t xfer_len;
	uint8_t status;               /* SAM status */
	uint8_t sense[ROD_SCSI_SENSE_MAX];
	uint8_t sense_len;
	/* Set by lib/scsi when task management from another I_T nexus (CLEAR TASK SET,
	 * LOGICAL UNIT RESET, TARGET RESET, PREEMPT AND ABORT; TAS=0) aborted the command:
	 * the transport sends no response. The transport initialises it to false. */
	bool aborted;
	/* Arrival stamp (rod_scsi_cmd_received); 0: stamped at rod_scsi_exec, which
	 * consumes it (sets it back to 0). */
	uint64_t arrival;
	/* completion: called exactly once, from any thread (maybe inside rod_scsi_exec) */
	void (*done)(struct rod_scsi_cmd *cmd);
	void *transport_priv;
	/* owned by lib/scsi while the command runs */
	void *scsi_priv[8];
};

/* Stamp a command when it arrives, before its Data-Out is in: a reset or CLEAR TASK
 * SET from another nexus between arrival and rod_scsi_exec then aborts it at exec. */
void rod_scsi_cmd_received(struct rod_scsi_target *t, struct rod_scsi_cmd *cmd);

/* ABORT TASK of a command already given to rod_scsi_exec (the transport's own task):
 * one still dormant in the task set (behind an ORDERED command) completes at once with
 * cmd->aborted set, unrun; a held one (test hook) is released unrun; a running one
 * runs to its end. cmd->done still comes exactly once. */
void rod_scsi_cmd_abort(struct rod_scsi_target *t, struct rod_scsi_cmd *cmd);

/* Execute one command. cmd->done runs when it is finished. A command whose task
 * attribute (cmd->attr) makes it dormant (SAM-5 task set, see lib/scsi/README.md)
 * runs later; ACA is refused with 05/24/00 (NormACA=0). */
void rod_scsi_exec(struct rod_scsi_target *t, struct rod_scsi_cmd *cmd);

/* Task management side effects inside the SCSI core. The transport owns the task list
 * (it waits for or suppresses aborted commands); this applies what the standard says
 * the logical unit does (resets clear SPC-2 reservations and raise unit attentions). */
enum rod_scsi_tmf {
	ROD_TMF_ABORT_TASK = 1,
	ROD_TMF_ABORT_TASK_SET,
	ROD_TMF_CLEAR_ACA,
	ROD_TMF_CLEAR_TASK_SET,
	ROD_TMF_LOGICAL_UNIT_RESET,
	ROD_TMF_TARGET_WARM_RESET,
	ROD_TMF_TARGET_COLD_RESET,
	ROD_TMF_TASK_REASSIGN,
	ROD_TMF_QUERY_TASK,
};
/* Returns 0 (function complete), -ENOENT (no such LUN), -EOPNOTSUPP (not supported).
 * Tasks of other nexuses that the function aborts (CLEAR TASK SET and LOGICAL UNIT
 * RESET on that LU, TARGET WARM/COLD RESET on every LU) get cmd->aborted; the tasks of
 * n itself are the transport's to abort (ABORT TASK, ABORT TASK SET only touch n). */
int rod_scsi_tmf(struct rod_scsi_target *t, struct rod_scsi_nexus *n, enum rod_scsi_tmf fn,
		 uint64_t lun);
/* The same, but when aborted tasks of other nexuses are still running it returns 1 and
 * calls done(arg) (from any thread) once all of them have finished: the TMF response
 * must wait for that (SAM-5: the function completes when the tasks are gone). */
int rod_scsi_tmf_async(struct rod_scsi_target *t, struct rod_scsi_nexus *n,
		       enum rod_scsi_tmf fn, uint64_t lun, void (*done)(void *arg), void *arg);

/* Decode a SAM LUN field (8 bytes, as in the iSCSI BHS) to a flat LUN number, and back. */
uint64_t rod_scsi_lun_decode(const uint8_t lun[8]);
void rod_scsi_lun_encode(uint64_t lun, uint8_t out[8]);

#endif
