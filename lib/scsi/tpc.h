/* Copy offload (EXTENDED COPY LID1, ODX tokens, RECEIVE COPY RESULTS, VPD 0x8F): the
 * contract between the SCSI core (dispatch.c, spc.c) and lib/scsi/tpc.c.
 *
 * The dispatch table in dispatch.c has entries pointing at the rod_tpc_* handlers
 * below. Until tpc.c implements them, tpc_weak.c supplies defaults that answer
 * INVALID COMMAND OPERATION CODE and rod_tpc_implemented() returns false, so these
 * opcodes stay out of REPORT SUPPORTED OPERATION CODES, VPD 0x00 does not list 0x8F
 * and INQUIRY's 3PC bit is 0. When tpc.c lands it replaces tpc_weak.c and must
 * define EVERY function declared here.
 *
 * Handlers follow scsi_internal.h: finish with rod_task_done(t) exactly once, set
 * errors with rod_sense_*(). t->lu is the LU that received the command (referenced
 * for the task's lifetime); the CDB usage mask of the table entry was already
 * checked, as were unit attentions and reservations. */
#ifndef ROD_SCSI_TPC_H
#define ROD_SCSI_TPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rod_scsi_task;
struct rod_scsi_target;
struct rod_scsi_lu;
struct rod_scsi_nexus;

/* 0x83 / 0x00 EXTENDED COPY (LID1) */
void rod_tpc_extended_copy(struct rod_scsi_task *t);
/* 0x83 / 0x10 POPULATE TOKEN */
void rod_tpc_populate_token(struct rod_scsi_task *t);
/* 0x83 / 0x11 WRITE USING TOKEN */
void rod_tpc_write_using_token(struct rod_scsi_task *t);
/* 0x84 / 0x00 RECEIVE COPY RESULTS: COPY STATUS */
void rod_tpc_copy_status(struct rod_scsi_task *t);
/* 0x84 / 0x03 RECEIVE COPY RESULTS: OPERATING PARAMETERS */
void rod_tpc_op_params(struct rod_scsi_task *t);
/* 0x84 / 0x07 RECEIVE ROD TOKEN INFORMATION */
void rod_tpc_rrti(struct rod_scsi_task *t);
/* 0x84 / 0x08 REPORT ALL ROD TOKENS */
void rod_tpc_report_all_rod_tokens(struct rod_scsi_task *t);

/* Is (opcode, service action) implemented? Drives RSOC, dispatch and, for 0x83/0x00,
 * the 3PC bit. */
bool rod_tpc_implemented(uint8_t opcode, uint8_t sa);

/* VPD page 0x8F (third-party copy) for t->lu: writes the whole page (4-byte header
 * included) into buf, at most cap bytes, and returns its full length (may be > cap:
 * the caller truncates to the allocation length), or -errno. Listed in VPD 0x00 only
 * when rod_tpc_implemented(0x83, 0x10) || rod_tpc_implemented(0x83, 0x00). */
int rod_tpc_vpd_8f(struct rod_scsi_task *t, uint8_t *buf, size_t cap);

/* Lifecycle hooks (may do nothing):
 * - a target is created / freed (set up / tear down per-array copy state);
 * - an LU's volume was resized or removed (revoke tokens that read from it);
 * - an I_T nexus ended (drop its list-identifier state). */
int rod_tpc_target_init(struct rod_scsi_target *t, void **tpc_state);
void rod_tpc_target_fini(struct rod_scsi_target *t, void *tpc_state);
void rod_tpc_lu_changed(struct rod_scsi_target *t, struct rod_scsi_lu *lu);
void rod_tpc_nexus_gone(struct rod_scsi_target *t, struct rod_scsi_nexus *n);
/* The state rod_tpc_target_init stored. */
void *rod_scsi_target_tpc_state(struct rod_scsi_target *t);
uint32_t rod_scsi_target_max_tokens(struct rod_scsi_target *t);   /* 0: default */
/* ROD tokens in the target's table now (0 without copy state). */
uint32_t rod_tpc_tokens_live(struct rod_scsi_target *t);

#endif
