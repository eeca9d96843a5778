/* The dispatch table and the command path: one table (opcode, service action, handler,
 * CDB usage mask, flags) drives execution and REPORT SUPPORTED OPERATION CODES. */
#include "scsi_internal.h"
#include "stats.h"
#include "target.h"
#include "tpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/util.h"

static bool tpc_available(const struct rod_scsi_op *op)
{
	return rod_tpc_implemented(op->opcode, op->sa);
}

/* Flag sets */
#define F_INFO (ROD_OPF_NO_LU | ROD_OPF_UA_PASS | ROD_OPF_SPC2_OK | ROD_OPF_PR_OK | ROD_OPF_WLUN)
#define F_READ ROD_OPF_PR_READ
#define F_WRITE 0
#define F_SA ROD_OPF_SA

/* Usage bytes after the opcode; the last one is the CONTROL byte (we accept only 0
 * there apart from the obsolete/vendor bits; NACA is not supported). For entries with
 * service actions, byte 1 lists only the bits besides the SERVICE ACTION field. */
#define CTL 0x00
#define U(...) { __VA_ARGS__ }

const struct rod_scsi_op rod_scsi_ops[] = {
	{ SPC_TEST_UNIT_READY, 0, ROD_OPF_PR_OK | ROD_OPF_WLUN, rod_spc_test_unit_ready, 6,
	  U(0x00, 0, 0, 0, 0, CTL), "TEST UNIT READY", NULL },
	{ SPC_REQUEST_SENSE, 0, F_INFO, rod_spc_request_sense, 6,
	  U(0x03, 0x01, 0, 0, 0xff, CTL), "REQUEST SENSE", NULL },
	{ SBC_READ_6, 0, F_READ, rod_sbc_read, 6,
	  U(0x08, 0x1f, 0xff, 0xff, 0xff, CTL), "READ(6)", NULL },
	{ SBC_WRITE_6, 0, F_WRITE, rod_sbc_write, 6,
	  U(0x0a, 0x1f, 0xff, 0xff, 0xff, CTL), "WRITE(6)", NULL },
	{ SPC_INQUIRY, 0, F_INFO, rod_spc_inquiry, 6,
	  U(0x12, 0x01, 0xff, 0xff, 0xff, CTL), "INQUIRY", NULL },
	{ SPC_MODE_SELECT_6, 0, F_WRITE, rod_spc_mode_select, 6,
	  U(0x15, 0x11, 0, 0, 0xff, CTL), "MODE SELECT(6)", NULL },
	{ SPC_RESERVE_6, 0, ROD_OPF_SPC2_OK | ROD_OPF_PR_OK, rod_spc_reserve, 6,
	  U(0x16, 0, 0, 0, 0, CTL), "RESERVE(6)", NULL },
	{ SPC_RELEASE_6, 0, ROD_OPF_SPC2_OK | ROD_OPF_PR_OK, rod_spc_release, 6,
	  U(0x17, 0, 0, 0, 0, CTL), "RELEASE(6)", NULL },
	{ SPC_MODE_SENSE_6, 0, ROD_OPF_PR_OK, rod_spc_mode_sense, 6,
	  U(0x1a, 0x08, 0xff, 0xff, 0xff, CTL), "MODE SENSE(6)", NULL },
	{ SBC_START_STOP_UNIT, 0, F_WRITE, rod_sbc_start_stop_unit, 6,
	  U(0x1b, 0x01, 0, 0x0f, 0xf7, CTL), "START STOP UNIT", NULL },
	{ SBC_READ_CAPACITY_10, 0, ROD_OPF_PR_OK, rod_sbc_read_capacity_10, 10,
	  U(0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, CTL), "READ CAPACITY(10)", NULL },
	{ SBC_READ_10, 0, F_READ, rod_sbc_read, 10,
	  U(0x28, 0x1e, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "READ(10)", NULL },
	{ SBC_WRITE_10, 0, F_WRITE, rod_sbc_write, 10,
	  U(0x2a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "WRITE(10)", NULL },
	{ SBC_WRITE_AND_VERIFY_10, 0, F_WRITE, rod_sbc_write_verify, 10,
	  U(0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "WRITE AND VERIFY(10)", NULL },
	{ SBC_VERIFY_10, 0, F_READ, rod_sbc_verify, 10,
	  U(0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "VERIFY(10)", NULL },
	{ SBC_PRE_FETCH_10, 0, F_READ, rod_sbc_pre_fetch, 10,
	  U(0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "PRE-FETCH(10)", NULL },
	{ SBC_READ_DEFECT_DATA_10, 0, F_READ, rod_sbc_read_defect_data, 10,
	  U(0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, CTL), "READ DEFECT DATA(10)", NULL },
	{ SBC_SYNCHRONIZE_CACHE_10, 0, F_WRITE, rod_sbc_sync_cache, 10,
	  U(0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "SYNCHRONIZE CACHE(10)", NULL },
	{ SBC_WRITE_SAME_10, 0, F_WRITE, rod_sbc_write_same, 10,
	  U(0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, CTL), "WRITE SAME(10)", NULL },
	{ SBC_UNMAP, 0, F_WRITE, rod_sbc_unmap, 10,
	  U(0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, CTL), "UNMAP", NULL },
	{ SPC_MODE_SELECT_10, 0, F_WRITE, rod_spc_mode_select, 10,
	  U(0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, CTL), "MODE SELECT(10)", NULL },
	{ SPC_RESERVE_10, 0, ROD_OPF_SPC2_OK | ROD_OPF_PR_OK, rod_spc_reserve, 10,
	  U(0x56, 0, 0, 0, 0, 0, 0, 0, 0, CTL), "RESERVE(10)", NULL },
	{ SPC_RELEASE_10, 0, ROD_OPF_SPC2_OK | ROD_OPF_PR_OK, rod_spc_release, 10,
	  U(0x57, 0, 0, 0, 0, 0, 0, 0, 0, CTL), "RELEASE(10)", NULL },
	{ SPC_MODE_SENSE_10, 0, ROD_OPF_PR_OK, rod_spc_mode_sense, 10,
	  U(0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, CTL), "MODE SENSE(10)", NULL },
	{ SPC_PERSISTENT_RESERVE_IN, 0x00, F_SA | ROD_OPF_PR_OK, rod_spc_pr_in, 10,
	  U(0x5e, 0, 0, 0, 0, 0, 0, 0xff, 0xff, CTL), "PERSISTENT RESERVE IN: READ KEYS", NULL },
	{ SPC_PERSISTENT_RESERVE_IN, 0x01, F_SA | ROD_OPF_PR_OK, rod_spc_pr_in, 10,
	  U(0x5e, 0, 0, 0, 0, 0, 0, 0xff, 0xff, CTL), "PERSISTENT RESERVE IN: READ RESERVATION", NULL },
	{ SPC_PERSISTENT_RESERVE_IN, 0x02, F_SA | ROD_OPF_PR_OK, rod_spc_pr_in, 10,
	  U(0x5e, 0, 0, 0, 0, 0, 0, 0xff, 0xff, CTL), "PERSISTENT RESERVE IN: REPORT CAPABILITIES", NULL },
	{ SPC_PERSISTENT_RESERVE_IN, 0x03, F_SA | ROD_OPF_PR_OK, rod_spc_pr_in, 10,
	  U(0x5e, 0, 0, 0, 0, 0, 0, 0xff, 0xff, CTL), "PERSISTENT RESERVE IN: READ FULL STATUS", NULL },
#define PROUT(sa, nm) \
	{ SPC_PERSISTENT_RESERVE_OUT, sa, F_SA | ROD_OPF_PR_OK, rod_spc_pr_out, 10, \
	  U(0x5f, 0, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, CTL), "PERSISTENT RESERVE OUT: " nm, NULL }
	PROUT(0x00, "REGISTER"),
	PROUT(0x01, "RESERVE"),
	PROUT(0x02, "RELEASE"),
	PROUT(0x03, "CLEAR"),
	PROUT(0x04, "PREEMPT"),
	PROUT(0x05, "PREEMPT AND ABORT"),
	PROUT(0x06, "REGISTER AND IGNORE EXISTING KEY"),
	PROUT(0x07, "REGISTER AND MOVE"),
#undef PROUT
	{ SPC_EXTENDED_COPY, 0x00, F_SA | F_WRITE, rod_tpc_extended_copy, 16,
	  U(0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "EXTENDED COPY(LID1)", tpc_available },
	{ SPC_EXTENDED_COPY, 0x10, F_SA | F_WRITE, rod_tpc_populate_token, 16,
	  U(0x83, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "POPULATE TOKEN", tpc_available },
	{ SPC_EXTENDED_COPY, 0x11, F_SA | F_WRITE, rod_tpc_write_using_token, 16,
	  U(0x83, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "WRITE USING TOKEN", tpc_available },
	{ SPC_RECEIVE_COPY_RESULTS, 0x00, F_SA | F_READ, rod_tpc_copy_status, 16,
	  U(0x84, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "RECEIVE COPY STATUS(LID1)", tpc_available },
	{ SPC_RECEIVE_COPY_RESULTS, 0x03, F_SA | F_READ, rod_tpc_op_params, 16,
	  U(0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "RECEIVE COPY OPERATING PARAMETERS", tpc_available },
	{ SPC_RECEIVE_COPY_RESULTS, 0x07, F_SA | F_READ, rod_tpc_rrti, 16,
	  U(0x84, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "RECEIVE ROD TOKEN INFORMATION", tpc_available },
	{ SPC_RECEIVE_COPY_RESULTS, 0x08, F_SA | F_READ, rod_tpc_report_all_rod_tokens, 16,
	  U(0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "REPORT ALL ROD TOKENS", tpc_available },
	{ SBC_READ_16, 0, F_READ, rod_sbc_read, 16,
	  U(0x88, 0x1e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "READ(16)", NULL },
	{ SBC_ORWRITE_16, 0, F_WRITE, rod_sbc_orwrite, 16,
	  U(0x8b, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "ORWRITE(16)", NULL },
	{ SBC_COMPARE_AND_WRITE, 0, F_WRITE, rod_sbc_compare_and_write, 16,
	  U(0x89, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, CTL), "COMPARE AND WRITE", NULL },
	{ SBC_WRITE_16, 0, F_WRITE, rod_sbc_write, 16,
	  U(0x8a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "WRITE(16)", NULL },
	{ SBC_WRITE_AND_VERIFY_16, 0, F_WRITE, rod_sbc_write_verify, 16,
	  U(0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "WRITE AND VERIFY(16)", NULL },
	{ SBC_VERIFY_16, 0, F_READ, rod_sbc_verify, 16,
	  U(0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "VERIFY(16)", NULL },
	{ SBC_PRE_FETCH_16, 0, F_READ, rod_sbc_pre_fetch, 16,
	  U(0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "PRE-FETCH(16)", NULL },
	{ SBC_SYNCHRONIZE_CACHE_16, 0, F_WRITE, rod_sbc_sync_cache, 16,
	  U(0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "SYNCHRONIZE CACHE(16)", NULL },
	{ SBC_WRITE_SAME_16, 0, F_WRITE, rod_sbc_write_same, 16,
	  U(0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "WRITE SAME(16)", NULL },
	{ SBC_SERVICE_ACTION_IN_16, 0x10, F_SA | ROD_OPF_PR_OK, rod_sbc_service_action_in_16, 16,
	  U(0x9e, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, CTL), "READ CAPACITY(16)", NULL },
	{ SBC_SERVICE_ACTION_IN_16, 0x12, F_SA | F_READ, rod_sbc_service_action_in_16, 16,
	  U(0x9e, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, CTL), "GET LBA STATUS", NULL },
	{ SPC_REPORT_LUNS, 0, F_INFO, rod_spc_report_luns, 12,
	  U(0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "REPORT LUNS", NULL },
	{ SPC_MAINTENANCE_IN, 0x0a, F_SA | ROD_OPF_PR_OK, rod_spc_report_tpgs, 12,
	  U(0xa3, 0x20, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "REPORT TARGET PORT GROUPS", NULL },
	{ SPC_MAINTENANCE_IN, 0x0c, F_SA | ROD_OPF_PR_OK, rod_spc_report_opcodes, 12,
	  U(0xa3, 0, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, CTL), "REPORT SUPPORTED OPERATION CODES", NULL },
	{ SPC_MAINTENANCE_IN, 0x0d, F_SA | ROD_OPF_PR_OK, rod_spc_report_tmfs, 12,
	  U(0xa3, 0, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", NULL },
	{ SBC_READ_12, 0, F_READ, rod_sbc_read, 12,
	  U(0xa8, 0x1e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "READ(12)", NULL },
	{ SBC_WRITE_12, 0, F_WRITE, rod_sbc_write, 12,
	  U(0xaa, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "WRITE(12)", NULL },
	{ SBC_WRITE_AND_VERIFY_12, 0, F_WRITE, rod_sbc_write_verify, 12,
	  U(0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "WRITE AND VERIFY(12)", NULL },
	{ SBC_VERIFY_12, 0, F_READ, rod_sbc_verify, 12,
	  U(0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, CTL), "VERIFY(12)", NULL },
	{ SBC_READ_DEFECT_DATA_12, 0, F_READ, rod_sbc_read_defect_data, 12,
	  U(0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL), "READ DEFECT DATA(12)", NULL },
};
const size_t rod_scsi_nops = ROD_ARRAY_SIZE(rod_scsi_ops);

static bool op_has_sa(uint8_t opcode)
{
	for (size_t i = 0; i < rod_scsi_nops; i++)
		if (rod_scsi_ops[i].opcode == opcode)
			return rod_scsi_ops[i].flags & ROD_OPF_SA;
	return false;
}

static bool op_usable(const struct rod_scsi_op *op)
{
	return !op->available || op->available(op);
}

/* Some entry of this opcode is implemented now. */
static bool opcode_usable(uint8_t opcode)
{
	for (size_t i = 0; i < rod_scsi_nops; i++)
		if (rod_scsi_ops[i].opcode == opcode && op_usable(&rod_scsi_ops[i]))
			return true;
	return false;
}

/* The entry for (opcode, sa) if implemented now; sa is ignored for opcodes without
 * service actions. */
static const struct rod_scsi_op *op_find(uint8_t opcode, uint8_t sa)
{
	/* Opcodes are few; a 256-entry index built once would save a few ns. */
	for (size_t i = 0; i < rod_scsi_nops; i++) {
		const struct rod_scsi_op *op = &rod_scsi_ops[i];
		if (op->opcode != opcode)
			continue;
		if ((op->flags & ROD_OPF_SA) && op->sa != sa)
			continue;
		return op_usable(op) ? op : NULL;
	}
	return NULL;
}

/* ---- task completion ---------------------------------------------------------- */

void rod_task_done(struct rod_scsi_task *t)
{
	struct rod_scsi_target *tgt = t->tgt;
	struct rod_scsi_cmd *c = t->cmd;
	struct rod_tmf_wait *w = NULL;
	struct rod_scsi_task *run = NULL;
	if (t->on_lu) {
		struct rod_scsi_lu *lu = t->lu;
		pthread_mutex_lock(&lu->lock);
		if (t->lu_prev)
			t->lu_prev->lu_next = t->lu_next;
		else
			lu->tasks = t->lu_next;
		if (t->lu_next)
			t->lu_next->lu_prev = t->lu_prev;
		c->aborted = t->aborted;
		w = t->wait;
		if (t->ta_state == ROD_TA_ENABLED) {
			lu->ta_active--;
			if (t->ta_ordered) {
				lu->ta_ordered--;
				lu->ta_ordered_run--;
			}
			t->ta_state = ROD_TA_NONE;
			if (lu->ta_head)
				rod_ta_release_locked(lu, &run);
		}
		pthread_mutex_unlock(&lu->lock);
	}
	rod_stats_task_done(t);
	if (t->lu)
		rod_lu_put(t->lu);
	free(t->buf);
	free(t);
	c->done(c);
	if (run)
		rod_ta_dispatch(NULL, run);
	/* The task is gone from the LU: a TMF waiting for it may answer now (its own
	 * response follows this one's suppression, which c->done has queued). */
	if (w && atomic_fetch_sub(&w->count, 1) == 1) {
		w->cb(w->arg);
		free(w);
	}
	rod_target_task_end(tgt);
}

void rod_task_set_errno(struct rod_scsi_task *t, int err, bool is_write)
{
	switch (err) {
	case 0:
		return;
	case -ENOSPC:
		if (is_write) {
			rod_sense(t, SENSE_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED_WRITE_PROTECT);
			return;
		}
		break;
	case -EBADMSG:
		rod_sense(t, SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
		return;
	case -EILSEQ:
		rod_sense(t, SENSE_MISCOMPARE, ASC_MISCOMPARE_DURING_VERIFY);
		return;
	case -ERANGE:
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	case -EROFS:
		rod_sense(t, SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return;
	case -ENOENT:
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LOGICAL_UNIT_NOT_SUPPORTED);
		return;
	case -ENOMEM:
	case -EAGAIN:
	case -EBUSY:
		rod_task_status(t, SAM_STAT_BUSY);
		return;
	case -EIO:
		rod_sense(t, SENSE_MEDIUM_ERROR, is_write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR);
		return;
	}
	rod_warn("scsi: %s on LUN %llu failed: %s", t->op ? t->op->name : "command",
		 (unsigned long long)t->cmd->lun, strerror(-err));
	rod_sense(t, SENSE_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
}

/* Thin-provisioning soft threshold (SBC-3 4.7.3.5): checked after writes, at most
 * every 100 ms, raising 38/07 once per crossing. */
static void soft_threshold_check(struct rod_scsi_target *tgt)
{
	uint64_t now = rod_now_ns();
	uint64_t last = atomic_load(&tgt->soft_checked_ns);
	if (now - last < 100000000ull ||
	    !atomic_compare_exchange_strong(&tgt->soft_checked_ns, &last, now))
		return;
	bool over = rod_store_over_soft_threshold(tgt->store);
	bool was = atomic_exchange(&tgt->soft_reported, over);
	/* Raised by the next command on a network thread: this runs in the store's
	 * completion callback, where taking the target's map lock could wait on a map
	 * change that waits on the store. */
	if (over && !was)
		atomic_store(&tgt->soft_pending, true);
}

void rod_task_io_done(struct rod_io *io)
{
	struct rod_scsi_task *t = io->priv;
	bool is_write = io->op != ROD_IO_READ && io->op != ROD_IO_VERIFY;
	if (io->result < 0)
		rod_task_set_errno(t, io->result, is_write);
	else if (is_write && io->op != ROD_IO_FLUSH)
		soft_threshold_check(t->tgt);
	rod_task_done(t);
}

void rod_task_data_in(struct rod_scsi_task *t, const void *data, size_t len, size_t alloc_len)
{
	struct rod_scsi_cmd *c = t->cmd;
	size_t n = ROD_MIN(len, alloc_len);
	c->xfer_len = (uint32_t)n;
	n = ROD_MIN(n, (size_t)c->in_cap);
	if (n && c->in_buf)
		memcpy(c->in_buf, data, n);
	else
		n = 0;
	c->in_len = (uint32_t)n;
}

/* ---- the task set (SAM-5 8.6, control mode page TST=000, QAM=1) -------------------
 * One task set per LU shared by every I_T nexus. A SIMPLE command is dormant while an
 * earlier ORDERED one has not completed; an ORDERED one while any earlier command has
 * not completed (and it holds back every later SIMPLE/ORDERED one); HEAD OF QUEUE runs
 * at once (and an ORDERED one received after it waits for it). Dormant commands wait
 * in lu->ta_head (FIFO, arrival order at rod_scsi_exec) and are started on the write
 * workers when the blocking command completes or is aborted. SIMPLE commands with no
 * ORDERED one pending cost nothing beyond the LU lock rod_scsi_exec already takes. */

/* Caller holds lu->lock. True: t is enabled now; false: t is dormant (queued). */
static bool ta_admit(struct rod_scsi_lu *lu, struct rod_scsi_task *t)
{
	bool run;
	switch (t->cmd->attr) {
	case ROD_TASK_HEAD_OF_QUEUE:
	case ROD_TASK_ACA:                 /* refused when it runs: enabled at once */
		run = true;
		break;
	case ROD_TASK_ORDERED:
		t->ta_ordered = true;
		lu->ta_ordered++;
		run = lu->ta_active == 0 && !lu->ta_head;
		if (run)
			lu->ta_ordered_run++;
		break;
	default:
		run = lu->ta_ordered == 0;
		break;
	}
	if (run) {
		t->ta_state = ROD_TA_ENABLED;
		lu->ta_active++;
		return true;
	}
	t->ta_state = ROD_TA_DORMANT;
	t->ta_next = NULL;
	if (lu->ta_tail)
		lu->ta_tail->ta_next = t;
	else
		lu->ta_head = t;
	lu->ta_tail = t;
	return false;
}

void rod_ta_release_locked(struct rod_scsi_lu *lu, struct rod_scsi_task **run)
{
	struct rod_scsi_task **tail = run;
	while (*tail)
		tail = &(*tail)->ta_next;
	struct rod_scsi_task *k;
	while ((k = lu->ta_head)) {
		if (k->ta_ordered ? lu->ta_active > 0 : lu->ta_ordered_run > 0)
			break;
		lu->ta_head = k->ta_next;
		if (!lu->ta_head)
			lu->ta_tail = NULL;
		k->ta_state = ROD_TA_ENABLED;
		k->ta_next = NULL;
		lu->ta_active++;
		*tail = k;
		tail = &k->ta_next;
		if (k->ta_ordered) {
			lu->ta_ordered_run++;
			break;             /* everything after it waits for it */
		}
	}
}

void rod_ta_cancel_aborted_locked(struct rod_scsi_lu *lu, struct rod_scsi_task **cancel,
				  struct rod_scsi_task **run)
{
	struct rod_scsi_task **pp = &lu->ta_head, *prev = NULL;
	while (*pp) {
		struct rod_scsi_task *k = *pp;
		if (!k->aborted) {
			prev = k;
			pp = &k->ta_next;
			continue;
		}
		*pp = k->ta_next;
		if (lu->ta_tail == k)
			lu->ta_tail = prev;
		if (k->ta_ordered)
			lu->ta_ordered--;
		k->ta_state = ROD_TA_NONE;
		k->ta_next = *cancel;
		*cancel = k;
	}
	rod_ta_release_locked(lu, run);
}

static void exec_enabled(struct rod_scsi_task *t);

void rod_ta_dispatch(struct rod_scsi_task *cancel, struct rod_scsi_task *run)
{
	while (cancel) {
		struct rod_scsi_task *k = cancel;
		cancel = k->ta_next;
		rod_task_defer(k, rod_task_done);   /* never started: nothing done */
	}
	while (run) {
		struct rod_scsi_task *k = run;
		run = k->ta_next;
		rod_task_defer(k, exec_enabled);
	}
}

/* ---- the command path ------------------------------------------------------------ */

/* CDB usage-mask check (SPC-4 6.35.3 CDB USAGE DATA): a bit set where the mask has 0
 * is INVALID FIELD IN CDB pointing at that byte and bit. */
static bool cdb_check(struct rod_scsi_task *t)
{
	const struct rod_scsi_op *op = t->op;
	const uint8_t *cdb = t->cmd->cdb;
	unsigned last = op->cdb_len - 1;
	for (unsigned i = 1; i < last; i++) {
		uint8_t allowed = op->usage[i];
		if (i == 1 && (op->flags & ROD_OPF_SA))
			allowed |= 0x1f;
		uint8_t bad = cdb[i] & (uint8_t)~allowed;
		if (bad) {
			int bit = 7;
			while (!(bad & (1u << bit)))
				bit--;
			rod_sense_invalid_field(t, true, (uint16_t)i, bit);
			return false;
		}
	}
	if (cdb[last] & 0x04) { /* NACA: ACA is not supported (SAM-5 5.9) */
		rod_sense_invalid_field(t, true, (uint16_t)last, 2);
		return false;
	}
	return true;
}

static unsigned cdb_group_len(uint8_t opcode)
{
	static const uint8_t len[8] = { 6, 10, 10, 0, 16, 12, 0, 0 };
	return len[opcode >> 5];
}

void rod_scsi_exec(struct rod_scsi_target *tgt, struct rod_scsi_cmd *cmd)
{
	cmd->status = SAM_STAT_GOOD;
	cmd->sense_len = 0;
	cmd->in_len = 0;
	cmd->xfer_len = 0;
	cmd->aborted = false;
	if (!cmd->arrival)
		rod_scsi_cmd_received(tgt, cmd);
	/* used once: a transport that reuses the structure stamps the next command anew */
	uint64_t arrival = cmd->arrival;
	cmd->arrival = 0;
	rod_target_task_begin(tgt);
	if (atomic_load_explicit(&tgt->soft_pending, memory_order_relaxed) &&
	    atomic_exchange(&tgt->soft_pending, false))
		rod_target_ua_all(tgt, ROD_UA_SOFT_THRESHOLD);
	struct rod_scsi_task *t = calloc(1, sizeof(*t));
	if (!t) {
		cmd->status = SAM_STAT_TASK_SET_FULL;
		cmd->done(cmd);
		rod_target_task_end(tgt);
		return;
	}
	t->cmd = cmd;
	t->tgt = tgt;
	t->start_ns = rod_now_ns();
	t->nexus = cmd->nexus;
	t->io.priv = t;

	bool wlun = cmd->lun == ROD_WLUN_REPORT_LUNS;
	if (!wlun && cmd->nexus && cmd->nexus->host_id)
		t->lu = rod_lu_lookup(tgt, cmd->nexus->host_id, cmd->lun);
	if (t->lu && atomic_load(&t->lu->removed)) {
		rod_lu_put(t->lu);
		t->lu = NULL;
	}
	if (t->lu) {
		t->bs = rod_vol_block_size(t->lu->vol);
		/* Join the LU's task list (task management sweeps it), unless a reset or
		 * CLEAR TASK SET from another nexus came after this command arrived. */
		struct rod_scsi_lu *lu = t->lu;
		uint32_t idx = t->nexus ? t->nexus->index : UINT32_MAX;
		pthread_mutex_lock(&lu->lock);
		if (idx < lu->ua_cap && arrival <= lu->abort_gen[idx]) {
			pthread_mutex_unlock(&lu->lock);
			rod_lu_put(lu);
			t->lu = NULL;
			cmd->aborted = true;
			goto finish;
		}
		t->lu_next = lu->tasks;
		if (lu->tasks)
			lu->tasks->lu_prev = t;
		lu->tasks = t;
		t->on_lu = true;
		bool enabled = ta_admit(lu, t);
		pthread_mutex_unlock(&lu->lock);
		if (!enabled)
			return;   /* dormant: exec_enabled runs when the task set allows */
	}
	exec_enabled(t);
	return;
finish:
	rod_task_done(t);
}

/* The rest of the command path, once the task set lets t run. */
static void exec_enabled(struct rod_scsi_task *t)
{
	struct rod_scsi_cmd *cmd = t->cmd;
	uint8_t opcode = cmd->cdb[0];
	bool wlun = cmd->lun == ROD_WLUN_REPORT_LUNS;
	if (cmd->attr == ROD_TASK_ACA) {
		/* NormACA=0: no ACA condition is ever established (SAM-5 5.9) */
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		goto finish;
	}
	unsigned glen = cdb_group_len(opcode);
	const struct rod_scsi_op *op = NULL;
	if (glen && cmd->cdb_len >= glen)
		op = op_find(opcode, cmd->cdb[1] & 0x1f);
	t->op = op;

	if (!t->lu && !wlun && !(op && (op->flags & ROD_OPF_NO_LU))) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_LOGICAL_UNIT_NOT_SUPPORTED);
		goto finish;
	}
	if (!op && glen && cmd->cdb_len >= glen && opcode_usable(opcode)) {
		/* a known opcode with a service action we do not have (SPC-4 4.3.4.3) */
		rod_sense_invalid_field(t, true, 1, 4);
		goto finish;
	}
	if (!op || (wlun && !(op->flags & ROD_OPF_WLUN))) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_COMMAND_OPERATION_CODE);
		goto finish;
	}
	if (t->lu && !(op->flags & ROD_OPF_UA_PASS) && t->nexus) {
		uint32_t ua = rod_lu_ua_take(t->lu, t->nexus->index);
		if (ua) {
			rod_sense(t, SENSE_UNIT_ATTENTION, rod_ua_asc(ua));
			goto finish;
		}
	}
	if (!cdb_check(t))
		goto finish;
	if (t->lu && t->nexus && !rod_pr_check(t))
		goto finish;
	op->handler(t);
	return;
finish:
	rod_task_done(t);
}

/* ---- REPORT SUPPORTED OPERATION CODES (SPC-4 6.35), generated from the table ---- */

static size_t rsoc_timeouts(uint8_t *p)
{
	/* Command timeouts descriptor: we give no nominal/recommended figures (0). */
	memset(p, 0, 12);
	rod_put_be16(p, 0x0a);
	return 12;
}

static size_t rsoc_one(const struct rod_scsi_op *op, bool rctd, uint8_t *p)
{
	p[0] = 0;
	p[1] = (rctd ? 0x80 : 0) | 0x03; /* SUPPORT 011b: supported as in the standard */
	rod_put_be16(p + 2, op->cdb_len);
	memcpy(p + 4, op->usage, op->cdb_len);
	p[4] = op->opcode;
	if (op->flags & ROD_OPF_SA)
		p[5] = (uint8_t)((op->usage[1] & 0xe0) | op->sa);
	size_t n = 4 + op->cdb_len;
	if (rctd)
		n += rsoc_timeouts(p + n);
	return n;
}

void rod_spc_report_opcodes(struct rod_scsi_task *t)
{
	const uint8_t *cdb = t->cmd->cdb;
	bool rctd = cdb[2] & 0x80;
	unsigned options = cdb[2] & 0x07;
	uint8_t req_op = cdb[3];
	uint16_t req_sa = rod_get_be16(cdb + 4);
	uint32_t alloc = rod_get_be32(cdb + 6);
	size_t cap = 4 + rod_scsi_nops * 20 + 64;
	uint8_t *buf = calloc(1, cap);
	if (!buf) {
		rod_task_status(t, SAM_STAT_BUSY);
		rod_task_done(t);
		return;
	}
	t->buf = buf;
	size_t n = 0;
	switch (options) {
	case 0: /* all commands */
		n = 4;
		for (size_t i = 0; i < rod_scsi_nops; i++) {
			const struct rod_scsi_op *op = &rod_scsi_ops[i];
			if ((op->flags & ROD_OPF_HIDDEN) || !op_usable(op))
				continue;
			uint8_t *d = buf + n;
			memset(d, 0, 8);
			d[0] = op->opcode;
			if (op->flags & ROD_OPF_SA)
				rod_put_be16(d + 2, op->sa);
			d[5] = (rctd ? 0x02 : 0) | ((op->flags & ROD_OPF_SA) ? 0x01 : 0);
			rod_put_be16(d + 6, op->cdb_len);
			n += 8;
			if (rctd)
				n += rsoc_timeouts(buf + n);
		}
		rod_put_be32(buf, (uint32_t)(n - 4));
		break;
	case 1:
	case 2:
	case 3: {
		bool has_sa = op_has_sa(req_op);
		if ((options == 1 && has_sa) || (options == 2 && !has_sa)) {
			rod_sense_invalid_field(t, true, 2, 2);
			goto out;
		}
		if (!has_sa && req_sa != 0 && options != 1) {
			rod_sense_invalid_field(t, true, 4, -1);
			goto out;
		}
		const struct rod_scsi_op *op = NULL;
		if (has_sa ? req_sa <= 0x1f : true)
			op = op_find(req_op, (uint8_t)req_sa);
		if (op && !(op->flags & ROD_OPF_HIDDEN)) {
			n = rsoc_one(op, rctd, buf);
		} else {
			memset(buf, 0, 4);
			buf[1] = 0x01; /* SUPPORT 001b: not supported */
			n = 4;
		}
		break;
	}
	default:
		rod_sense_invalid_field(t, true, 2, 2);
		goto out;
	}
	rod_task_data_in(t, buf, n, alloc);
out:
	rod_task_done(t);
}
