/* Internals of the SCSI core shared by its modules (dispatch, sense, SPC, SBC, PR) and
 * by the copy-offload modules (tpc.c, token.c). Not a public header: the transport
 * only sees include/rod/scsi.h.
 *
 * How a command runs (dispatch.c):
 *   rod_scsi_exec -> look up the dispatch table entry (opcode, service action)
 *   -> CDB usage-mask check -> resolve the LU for (nexus host, lun) -> unit attention
 *   -> reservation checks -> entry->handler(task).
 * A handler finishes the task exactly once with rod_task_done(), either before it
 * returns or later from a store completion callback (any thread). Before that it sets
 * the status: GOOD is the default; rod_sense_*() set CHECK CONDITION with sense data. */
#ifndef ROD_SCSI_INTERNAL_H
#define ROD_SCSI_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rod/scsi.h"
#include "rod/store.h"

/* ---- Sense keys and additional sense codes (SPC-4 names) ---------------------- */
enum {
	SENSE_NO_SENSE = 0x0,
	SENSE_RECOVERED_ERROR = 0x1,
	SENSE_NOT_READY = 0x2,
	SENSE_MEDIUM_ERROR = 0x3,
	SENSE_HARDWARE_ERROR = 0x4,
	SENSE_ILLEGAL_REQUEST = 0x5,
	SENSE_UNIT_ATTENTION = 0x6,
	SENSE_DATA_PROTECT = 0x7,
	SENSE_BLANK_CHECK = 0x8,
	SENSE_COPY_ABORTED = 0xA,
	SENSE_ABORTED_COMMAND = 0xB,
	SENSE_MISCOMPARE = 0xE,
};

/* ASC/ASCQ pairs as one 16-bit value (asc << 8 | ascq). */
#define ROD_ASC(asc, ascq) ((uint16_t)((asc) << 8 | (ascq)))
#define ASC_NO_ADDITIONAL_SENSE ROD_ASC(0x00, 0x00)
#define ASC_OPERATION_IN_PROGRESS ROD_ASC(0x00, 0x16)
#define ASC_LU_NOT_READY_MANUAL_INTERVENTION ROD_ASC(0x04, 0x03)
#define ASC_UNRECOVERED_READ_ERROR ROD_ASC(0x11, 0x00)
#define ASC_WRITE_ERROR ROD_ASC(0x0C, 0x00)
#define ASC_INVALID_FIELD_IN_CMD_IU ROD_ASC(0x0E, 0x03)
#define ASC_MISCOMPARE_DURING_VERIFY ROD_ASC(0x1D, 0x00)
#define ASC_PARAMETER_LIST_LENGTH_ERROR ROD_ASC(0x1A, 0x00)
#define ASC_INVALID_COMMAND_OPERATION_CODE ROD_ASC(0x20, 0x00)
#define ASC_LBA_OUT_OF_RANGE ROD_ASC(0x21, 0x00)
#define ASC_INVALID_FIELD_IN_CDB ROD_ASC(0x24, 0x00)
#define ASC_LOGICAL_UNIT_NOT_SUPPORTED ROD_ASC(0x25, 0x00)
#define ASC_INVALID_FIELD_IN_PARAMETER_LIST ROD_ASC(0x26, 0x00)
#define ASC_PARAMETER_NOT_SUPPORTED ROD_ASC(0x26, 0x01)
#define ASC_INVALID_RELEASE_OF_PR ROD_ASC(0x26, 0x04)
#define ASC_TOO_MANY_TARGET_DESCRIPTORS ROD_ASC(0x26, 0x06)
#define ASC_UNSUPPORTED_TARGET_DESCRIPTOR_TYPE ROD_ASC(0x26, 0x07)
#define ASC_TOO_MANY_SEGMENT_DESCRIPTORS ROD_ASC(0x26, 0x08)
#define ASC_UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE ROD_ASC(0x26, 0x09)
#define ASC_WRITE_PROTECTED ROD_ASC(0x27, 0x00)
#define ASC_SPACE_ALLOC_FAILED_WRITE_PROTECT ROD_ASC(0x27, 0x07)
#define ASC_POWER_ON_OCCURRED ROD_ASC(0x29, 0x00)
#define ASC_SCSI_BUS_RESET_OCCURRED ROD_ASC(0x29, 0x02)
#define ASC_BUS_DEVICE_RESET_FUNCTION_OCCURRED ROD_ASC(0x29, 0x03)
#define ASC_MODE_PARAMETERS_CHANGED ROD_ASC(0x2A, 0x01)
#define ASC_RESERVATIONS_PREEMPTED ROD_ASC(0x2A, 0x03)
#define ASC_RESERVATIONS_RELEASED ROD_ASC(0x2A, 0x04)
#define ASC_REGISTRATIONS_PREEMPTED ROD_ASC(0x2A, 0x05)
#define ASC_CAPACITY_DATA_HAS_CHANGED ROD_ASC(0x2A, 0x09)
#define ASC_SAVING_PARAMETERS_NOT_SUPPORTED ROD_ASC(0x39, 0x00)
#define ASC_SOFT_THRESHOLD_REACHED ROD_ASC(0x38, 0x07)
#define ASC_REPORTED_LUNS_DATA_CHANGED ROD_ASC(0x3F, 0x0E)
#define ASC_INTERNAL_TARGET_FAILURE ROD_ASC(0x44, 0x00)
#define ASC_INVALID_MESSAGE_ERROR ROD_ASC(0x49, 0x00)
#define ASC_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR ROD_ASC(0x2F, 0x00)
#define ASC_THIRD_PARTY_DEVICE_FAILURE ROD_ASC(0x0D, 0x01)
#define ASC_COPY_TARGET_DEVICE_NOT_REACHABLE ROD_ASC(0x0D, 0x02)
#define ASC_UNREACHABLE_COPY_TARGET ROD_ASC(0x08, 0x04)
#define ASC_COPY_SEGMENT_GRANULARITY_VIOLATION ROD_ASC(0x26, 0x0A)
#define ASC_INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE ROD_ASC(0x23, 0x00)
#define ASC_INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE ROD_ASC(0x23, 0x01)
#define ASC_INVALID_TOKEN_OPERATION_REMOTE_TOKEN_NOT_USABLE ROD_ASC(0x23, 0x02)
#define ASC_INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN ROD_ASC(0x23, 0x04)
#define ASC_INVALID_TOKEN_OPERATION_TOKEN_CORRUPT ROD_ASC(0x23, 0x05)
#define ASC_INVALID_TOKEN_OPERATION_TOKEN_REVOKED ROD_ASC(0x23, 0x06)
#define ASC_INVALID_TOKEN_OPERATION_TOKEN_EXPIRED ROD_ASC(0x23, 0x07)
#define ASC_INVALID_TOKEN_OPERATION_TOKEN_CANCELLED ROD_ASC(0x23, 0x08)
#define ASC_INVALID_TOKEN_OPERATION_TOKEN_DELETED ROD_ASC(0x23, 0x09)

/* ---- Opcodes (SPC-4 / SBC-3 names) ------------------------------------------- */
enum {
	SPC_TEST_UNIT_READY = 0x00,
	SPC_REQUEST_SENSE = 0x03,
	SBC_READ_6 = 0x08,
	SBC_WRITE_6 = 0x0A,
	SPC_INQUIRY = 0x12,
	SPC_MODE_SELECT_6 = 0x15,
	SPC_RESERVE_6 = 0x16,
	SPC_RELEASE_6 = 0x17,
	SPC_MODE_SENSE_6 = 0x1A,
	SBC_START_STOP_UNIT = 0x1B,
	SBC_READ_CAPACITY_10 = 0x25,
	SBC_READ_10 = 0x28,
	SBC_WRITE_10 = 0x2A,
	SBC_WRITE_AND_VERIFY_10 = 0x2E,
	SBC_VERIFY_10 = 0x2F,
	SBC_PRE_FETCH_10 = 0x34,
	SBC_READ_DEFECT_DATA_10 = 0x37,
	SBC_SYNCHRONIZE_CACHE_10 = 0x35,
	SBC_WRITE_SAME_10 = 0x41,
	SBC_UNMAP = 0x42,
	SPC_MODE_SELECT_10 = 0x55,
	SPC_RESERVE_10 = 0x56,
	SPC_RELEASE_10 = 0x57,
	SPC_MODE_SENSE_10 = 0x5A,
	SPC_PERSISTENT_RESERVE_IN = 0x5E,
	SPC_PERSISTENT_RESERVE_OUT = 0x5F,
	SPC_EXTENDED_COPY = 0x83,          /* SAs: LID1 0x00, POPULATE TOKEN 0x10, WUT 0x11 */
	SPC_RECEIVE_COPY_RESULTS = 0x84,   /* SAs: 0x00, 0x03, RRTI 0x07, RART 0x08 */
	SBC_READ_16 = 0x88,
	SBC_ORWRITE_16 = 0x8B,
	SBC_COMPARE_AND_WRITE = 0x89,
	SBC_WRITE_16 = 0x8A,
	SBC_WRITE_AND_VERIFY_16 = 0x8E,
	SBC_VERIFY_16 = 0x8F,
	SBC_PRE_FETCH_16 = 0x90,
	SBC_SYNCHRONIZE_CACHE_16 = 0x91,
	SBC_WRITE_SAME_16 = 0x93,
	SBC_SERVICE_ACTION_IN_16 = 0x9E,   /* SAs: READ CAPACITY(16) 0x10, GET LBA STATUS 0x12 */
	SPC_REPORT_LUNS = 0xA0,
	SPC_MAINTENANCE_IN = 0xA3,         /* SAs: RTPG 0x0A, RSOC 0x0C, RSTMF 0x0D */
	SBC_READ_12 = 0xA8,
	SBC_WRITE_12 = 0xAA,
	SBC_WRITE_AND_VERIFY_12 = 0xAE,
	SBC_VERIFY_12 = 0xAF,
	SBC_READ_DEFECT_DATA_12 = 0xB7,
};

/* Well-known LUN "REPORT LUNS" (SPC-4 8.2): what rod_scsi_lun_decode returns for the
 * extended-address form C1 01 00 00 00 00 00 00. */
#define ROD_WLUN_REPORT_LUNS 0xC101000000000000ull
#define ROD_LUN_INVALID UINT64_MAX

/* Vendor OUI of our NAA 6 designators. Locally chosen, not an IEEE assignment. */
#define ROD_NAA_OUI 0x02A0DEu

/* Limits advertised in VPD 0xB0 and enforced by the handlers. */
#define ROD_MAX_XFER_BYTES (32u << 20)         /* MAXIMUM TRANSFER LENGTH, in bytes */
#define ROD_MAX_UNMAP_BLOCKS 0x100000u          /* per UNMAP command; libiscsi wants <= 1Mi */
#define ROD_MAX_UNMAP_DESCRIPTORS 256u          /* finite: libiscsi 1.19 breaks on ~0 */
#define ROD_MAX_WRITE_SAME_BLOCKS 0x400000u
#define ROD_MAX_CAW_BLOCKS 1u                   /* COMPARE AND WRITE: NUMBER OF BLOCKS max */

/* ---- Unit attentions: bits in a per (nexus, LU) mask; lower bit = reported first -- */
enum rod_ua {
	ROD_UA_POWER_ON = 1u << 0,        /* 29/00 (nexus login, new LU, TARGET COLD RESET) */
	ROD_UA_BUS_RESET = 1u << 1,       /* 29/02 SCSI BUS RESET OCCURRED (TARGET WARM RESET) */
	ROD_UA_BDR = 1u << 2,             /* 29/03 BUS DEVICE RESET FUNCTION OCCURRED (LU reset) */
	ROD_UA_RES_PREEMPTED = 1u << 3,   /* 2A/03 */
	ROD_UA_RES_RELEASED = 1u << 4,    /* 2A/04 */
	ROD_UA_REG_PREEMPTED = 1u << 5,   /* 2A/05 */
	ROD_UA_MODE_CHANGED = 1u << 6,    /* 2A/01 */
	ROD_UA_CAPACITY = 1u << 7,        /* 2A/09 */
	ROD_UA_LUNS_CHANGED = 1u << 8,    /* 3F/0E */
	ROD_UA_SOFT_THRESHOLD = 1u << 9,  /* 38/07 */
	ROD_UA_CMDS_CLEARED = 1u << 10,   /* 2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR */
	ROD_UA_COUNT = 11,
};
/* The 29/xx conditions: reporting one clears every pending UA (SAM-5 5.14). */
#define ROD_UA_RESETS (ROD_UA_POWER_ON | ROD_UA_BUS_RESET | ROD_UA_BDR)

/* ---- Persistent reservations (pr.c) ------------------------------------------ */
#define ROD_PR_MAX_REGS 64
enum rod_pr_type {
	ROD_PR_NONE = 0,
	ROD_PR_WE = 1,        /* write exclusive */
	ROD_PR_EA = 3,        /* exclusive access */
	ROD_PR_WE_RO = 5,     /* write exclusive, registrants only */
	ROD_PR_EA_RO = 6,     /* exclusive access, registrants only */
	ROD_PR_WE_AR = 7,     /* write exclusive, all registrants */
	ROD_PR_EA_AR = 8,     /* exclusive access, all registrants */
};
struct rod_pr_reg {
	uint64_t key;
	uint16_t rel_port;                 /* relative target port of the I_T nexus */
	bool all_tg_pt;                    /* registered with ALL_TG_PT: every target port */
	char iport[256];                   /* initiator port "<name>,i,0x<isid>" */
};
struct rod_pr_state {
	uint32_t generation;
	bool aptpl;
	bool saved;                        /* a copy is in the store (to delete on APTPL=0) */
	unsigned nregs;
	struct rod_pr_reg regs[ROD_PR_MAX_REGS];
	int holder;                        /* index in regs of the holder; -1: none */
	enum rod_pr_type type;             /* ROD_PR_NONE: no reservation */
};

/* ---- Logical unit: one per mapped volume (shared by every host it is mapped to) --- */
struct rod_scsi_lu {
	struct rod_scsi_target *tgt;
	uint64_t vol_id;                   /* immutable */
	struct rod_vol *vol;               /* open handle, immutable while the LU lives */
	uint8_t uuid[16];                  /* immutable: volume uuid */
	uint8_t naa[16];                   /* immutable: NAA 6 designator from the uuid */
	char serial[33];                   /* immutable: uuid in hex */
	char name[ROD_SNAP_NAME_MAX];      /* volume name when mapped (for rod_vol_set_cache) */
	atomic_int refs;                   /* maps + running commands + tpc users */
	atomic_bool removed;               /* volume destroyed: commands get 05/25/00 */

	pthread_mutex_t lock;              /* guards everything below */
	uint32_t *ua;                      /* pending enum rod_ua bits per nexus index */
	uint32_t ua_cap;                   /* entries in ua and abort_gen */
	/* Task management (target.c): per nexus index, the target's tmf_gen value at the
	 * last abort of that nexus's tasks here; a command stamped with a generation at or
	 * below it was received before the abort and is aborted when it reaches exec. */
	uint64_t *abort_gen;
	struct rod_scsi_task *tasks;       /* commands between exec and done (TMF sweeps) */
	/* Task set (SAM-5 8.6, TST=000: one per LU for every nexus; dispatch.c): commands
	 * enabled and not done, ORDERED ones received and not done, ORDERED ones enabled,
	 * and the FIFO of dormant commands (waiting for an ORDERED one, or ORDERED ones
	 * waiting for every earlier command). ta_head is non-NULL only while ta_ordered>0. */
	uint32_t ta_active, ta_ordered, ta_ordered_run;
	struct rod_scsi_task *ta_head, *ta_tail;
	bool d_sense;                      /* control mode page D_SENSE (descriptor sense) */
	/* SPC-2 RESERVE(6)/(10): holder's nexus index + 1; 0 = not reserved. */
	uint32_t spc2_holder;
	struct rod_pr_state pr;
	pthread_mutex_t caw_lock;          /* serialises COMPARE AND WRITE (the store's CAW
	                                      is atomic; this only orders our own two-step
	                                      fallbacks) */
};

/* ---- Dispatch table ------------------------------------------------------------ */
struct rod_scsi_task;
typedef void (*rod_scsi_handler)(struct rod_scsi_task *t);

/* Flags of a table entry. */
enum {
	ROD_OPF_NO_LU = 1u << 0,      /* runs without a mapped LU (INQUIRY, REPORT LUNS...) */
	ROD_OPF_UA_PASS = 1u << 1,    /* not blocked by a pending unit attention */
	ROD_OPF_SPC2_OK = 1u << 2,    /* allowed to others under an SPC-2 RESERVE */
	ROD_OPF_PR_OK = 1u << 3,      /* allowed to anyone under any persistent reservation */
	ROD_OPF_PR_READ = 1u << 4,    /* reads data: allowed under WE types, not EA types */
	ROD_OPF_WLUN = 1u << 5,       /* accepted by the REPORT LUNS well-known LU */
	ROD_OPF_HIDDEN = 1u << 6,     /* not listed by REPORT SUPPORTED OPERATION CODES */
	ROD_OPF_SA = 1u << 7,         /* the opcode has service actions (sa is meaningful) */
};

struct rod_scsi_op {
	uint8_t opcode;
	uint8_t sa;                   /* service action when flags & ROD_OPF_SA */
	uint16_t flags;
	rod_scsi_handler handler;
	uint8_t cdb_len;
	/* CDB USAGE DATA (SPC-4 6.35.3): bits that may be set in each CDB byte; byte 0 is
	 * the opcode. A set bit outside the mask is INVALID FIELD IN CDB. */
	uint8_t usage[16];
	const char *name;
	/* Optional: is this entry usable now? (copy offload entries ask tpc whether it is
	 * implemented); NULL = always. Unavailable entries are invalid opcodes and are
	 * left out of RSOC. */
	bool (*available)(const struct rod_scsi_op *op);
};

/* The table, defined in dispatch.c; RSOC walks it. */
extern const struct rod_scsi_op rod_scsi_ops[];
extern const size_t rod_scsi_nops;

/* ---- Per-command context ------------------------------------------------------ */
struct rod_scsi_task {
	struct rod_scsi_cmd *cmd;
	struct rod_scsi_target *tgt;
	struct rod_scsi_nexus *nexus;
	struct rod_scsi_lu *lu;            /* NULL when the LUN is not mapped */
	const struct rod_scsi_op *op;
	/* decoded by SBC handlers */
	uint64_t lba;
	uint32_t nblocks;
	uint32_t bs;                       /* logical block size of lu */
	/* one store request; io.priv points back at the task */
	struct rod_io io;
	void *buf;                         /* scratch owned by the task (freed at done) */
	int stage;                         /* for multi-step handlers */
	uint64_t arg[4];                   /* handler scratch */
	void *tpc_priv;                    /* free for copy offload */
	uint64_t start_ns;                 /* rod_now_ns() at exec, for latency stats */
	/* lu->tasks links and task management state, guarded by lu->lock */
	struct rod_scsi_task *lu_next, *lu_prev;
	bool on_lu;
	bool aborted;                      /* aborted by another nexus's TMF (TAS=0): the
	                                      transport gets cmd->aborted, sends nothing */
	struct rod_tmf_wait *wait;         /* the TMF waiting for this task to finish */
	/* task set state (lu->lock): ROD_TA_* and the dormant FIFO link */
	uint8_t ta_state;
	bool ta_ordered;                   /* cmd->attr was ORDERED */
	struct rod_scsi_task *ta_next;
	/* test hook (ROD_SCSI_TEST_DELAY_MS): resume after the delay */
	struct rod_scsi_task *delay_next;
	uint64_t delay_due_ns;
	void (*delay_resume)(struct rod_scsi_task *t);
	/* rod_task_offload queue link and continuation (target.c) */
	struct rod_scsi_task *wq_next;
	void (*wq_resume)(struct rod_scsi_task *t);
};

/* Task management waiting for tasks of other nexuses (target.c). */
struct rod_tmf_wait {
	atomic_uint count;                 /* tasks still running + 1 while sweeping */
	void (*cb)(void *arg);
	void *arg;
};
/* Abort every task on lu of nexus index `only` (>= 0), or of every nexus except
 * `except` (only < 0); except_task is never aborted (the PR OUT doing it). Tasks of
 * those nexuses not yet at exec are aborted there (abort_gen). Returns the number of
 * tasks marked; when w is set each marked task holds one count of w->count.
 * Sets UA `ua` for every nexus that had a task aborted (0: none). */
unsigned rod_lu_abort_tasks(struct rod_scsi_lu *lu, int only, int except,
			    struct rod_scsi_task *except_task, struct rod_tmf_wait *w,
			    uint32_t ua);
/* Task set state of a task (ta_state). */
enum { ROD_TA_NONE = 0, ROD_TA_ENABLED, ROD_TA_DORMANT };
/* Task set (dispatch.c), caller holds lu->lock. rod_ta_cancel_aborted_locked takes
 * the dormant tasks marked aborted out of the FIFO (they will never run) and puts them
 * on *cancel; both move dormant tasks that may now run to *run (linked by ta_next, in
 * order). */
void rod_ta_cancel_aborted_locked(struct rod_scsi_lu *lu, struct rod_scsi_task **cancel,
				  struct rod_scsi_task **run);
void rod_ta_release_locked(struct rod_scsi_lu *lu, struct rod_scsi_task **run);
/* After lu->lock is dropped: finish the cancelled tasks (aborted, never started) and
 * start the released ones, both on the write workers (never inline: the caller may be
 * a store completion or a TMF). */
void rod_ta_dispatch(struct rod_scsi_task *cancel, struct rod_scsi_task *run);
/* Run resume(t) on a write worker (inline if none can be started). */
void rod_task_defer(struct rod_scsi_task *t, void (*resume)(struct rod_scsi_task *t));

/* Test hook: when ROD_SCSI_TEST_DELAY_MS is set, WRITE commands with GROUP NUMBER 0x15
 * are held that long before they run (aborts release them at once). Returns true when
 * the task was taken (resume is called later), false to run it now. */
bool rod_task_test_delay(struct rod_scsi_task *t, void (*resume)(struct rod_scsi_task *t));

/* Run resume(t) on the SCSI core's write worker instead of the calling (network)
 * thread when t moves at least the target's offload_min bytes (len). Returns true when
 * the task was queued, false to carry on here. */
bool rod_task_offload(struct rod_scsi_task *t, uint64_t len,
		      void (*resume)(struct rod_scsi_task *t));

/* Finish the task: runs cmd->done and frees the task (and t->buf). Exactly once. */
void rod_task_done(struct rod_scsi_task *t);
/* Completion callback for t->io that maps the store result to sense and finishes the
 * task (write errors: -ENOSPC 07/27/07, -EBADMSG 03/11/00, -ERANGE 05/21/00...). */
void rod_task_io_done(struct rod_io *io);
/* Map a store error to sense data on t (is_write picks 07/27/07 for -ENOSPC). */
void rod_task_set_errno(struct rod_scsi_task *t, int err, bool is_write);
/* Copy data to the Data-In buffer, truncated to the allocation length and in_cap. */
void rod_task_data_in(struct rod_scsi_task *t, const void *data, size_t len, size_t alloc_len);
/* The Data-Out parameter list, bounded by out_len. */
static inline const uint8_t *rod_task_out(struct rod_scsi_task *t, uint32_t *len)
{
	*len = t->cmd->out_len;
	return (const uint8_t *)t->cmd->out_buf;
}

/* ---- Sense (sense.c; the only module that formats sense data) ----------------- */
/* CHECK CONDITION with key/asc/ascq; fixed or descriptor format per the LU's D_SENSE. */
void rod_sense_set(struct rod_scsi_task *t, uint8_t key, uint8_t asc, uint8_t ascq);
static inline void rod_sense(struct rod_scsi_task *t, uint8_t key, uint16_t ascq16)
{
	rod_sense_set(t, key, ascq16 >> 8, ascq16 & 0xff);
}
/* 05/24/00 (in_cdb) or 05/26/00 with the SENSE KEY SPECIFIC field pointer (SKSV=1,
 * C/D, BPV when bit >= 0; byte = offset in the CDB or parameter list). */
void rod_sense_invalid_field(struct rod_scsi_task *t, bool in_cdb, uint16_t byte, int bit);
/* Sense with the INFORMATION field set (VALID=1), e.g. miscompare offset. */
void rod_sense_info(struct rod_scsi_task *t, uint8_t key, uint16_t ascq16, uint64_t info);
/* COPY ABORTED etc. with COMMAND-SPECIFIC INFORMATION (e.g. segment number). */
void rod_sense_csi(struct rod_scsi_task *t, uint8_t key, uint16_t ascq16, uint64_t csi);
/* Any other status without sense (RESERVATION CONFLICT, BUSY...). */
void rod_task_status(struct rod_scsi_task *t, uint8_t status);
/* Build sense bytes without a task (REQUEST SENSE, UA): returns length. */
size_t rod_sense_build(uint8_t *out, bool desc, uint8_t key, uint16_t ascq16,
		       bool info_valid, uint64_t info, const uint8_t *sks3, uint64_t csi);

/* ---- LU lookup helpers (target.c), also for copy offload --------------------- */
/* Take/drop a reference on an LU (the task holds one on t->lu while it runs). */
void rod_lu_get(struct rod_scsi_lu *lu);
void rod_lu_put(struct rod_scsi_lu *lu);
/* The LU at (host, lun), referenced; NULL if not mapped. */
struct rod_scsi_lu *rod_lu_lookup(struct rod_scsi_target *t, uint64_t host_id, uint64_t lun);
/* An LU mapped to host_id whose VPD 0x83 logical-unit designator equals the
 * designation descriptor at desc (4-byte header + designator, as copied into an
 * EXTENDED COPY 0xE4 CSCD), referenced; NULL if none. Only LUs the host can see are
 * searched (CVE-2020-28374). */
struct rod_scsi_lu *rod_lu_find_designator(struct rod_scsi_target *t, uint64_t host_id,
					   const uint8_t *desc, size_t len);
/* Any LU of the array for this volume (mapped to any host), referenced; NULL if none. */
struct rod_scsi_lu *rod_lu_find_vol(struct rod_scsi_target *t, uint64_t vol_id);
/* The store and target name behind a target. */
struct rod_store *rod_scsi_target_store(struct rod_scsi_target *t);
const char *rod_scsi_target_name(struct rod_scsi_target *t);

/* Unit attentions: raise bits on lu for one nexus index / every nexus. */
void rod_lu_ua_set(struct rod_scsi_lu *lu, uint32_t nexus_index, uint32_t bits);
void rod_lu_ua_set_all(struct rod_scsi_lu *lu, uint32_t bits, int except_nexus_index);
/* Nexus index of the I_T nexus with this initiator port + relative port; -1 if not
 * logged in. */
int rod_nexus_index_find(struct rod_scsi_target *t, const char *iport, uint16_t rel_port);

/* ---- Handlers by module -------------------------------------------------------- */
/* spc.c */
void rod_spc_test_unit_ready(struct rod_scsi_task *t);
void rod_spc_inquiry(struct rod_scsi_task *t);
void rod_spc_request_sense(struct rod_scsi_task *t);
void rod_spc_report_luns(struct rod_scsi_task *t);
void rod_spc_mode_sense(struct rod_scsi_task *t);
void rod_spc_mode_select(struct rod_scsi_task *t);
void rod_spc_report_tpgs(struct rod_scsi_task *t);
void rod_spc_report_tmfs(struct rod_scsi_task *t);
void rod_spc_report_opcodes(struct rod_scsi_task *t);
/* pr.c */
void rod_spc_reserve(struct rod_scsi_task *t);
void rod_spc_release(struct rod_scsi_task *t);
void rod_spc_pr_in(struct rod_scsi_task *t);
void rod_spc_pr_out(struct rod_scsi_task *t);
/* Reservation check before a handler: true when the command may run; otherwise the
 * task already has RESERVATION CONFLICT status. */
bool rod_pr_check(struct rod_scsi_task *t);
void rod_pr_load(struct rod_scsi_lu *lu);        /* APTPL state from the store */
void rod_pr_nexus_lost(struct rod_scsi_lu *lu, uint32_t nexus_index);
void rod_pr_lu_reset(struct rod_scsi_lu *lu);
/* sbc.c */
void rod_sbc_read_capacity_10(struct rod_scsi_task *t);
void rod_sbc_service_action_in_16(struct rod_scsi_task *t);
void rod_sbc_read(struct rod_scsi_task *t);
void rod_sbc_write(struct rod_scsi_task *t);
void rod_sbc_write_verify(struct rod_scsi_task *t);
void rod_sbc_verify(struct rod_scsi_task *t);
void rod_sbc_pre_fetch(struct rod_scsi_task *t);
void rod_sbc_sync_cache(struct rod_scsi_task *t);
void rod_sbc_write_same(struct rod_scsi_task *t);
void rod_sbc_unmap(struct rod_scsi_task *t);
void rod_sbc_get_lba_status(struct rod_scsi_task *t);
void rod_sbc_compare_and_write(struct rod_scsi_task *t);
void rod_sbc_start_stop_unit(struct rod_scsi_task *t);
void rod_sbc_orwrite(struct rod_scsi_task *t);
void rod_sbc_read_defect_data(struct rod_scsi_task *t);
/* Bounds check helper: false (and 05/21/00 set) if [lba, lba+n) exceeds the LU. */
bool rod_sbc_check_range(struct rod_scsi_task *t, uint64_t lba, uint64_t nblocks);

#endif
