/* Defaults for the copy-offload hooks of tpc.h until lib/scsi/tpc.c implements them
 * (that change deletes this file). Every copy-offload opcode is then an invalid
 * operation code, as for any command we do not implement. */
#include "scsi_internal.h"
#include "tpc.h"

#include <errno.h>

static void tpc_unsupported(struct rod_scsi_task *t)
{
	rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_COMMAND_OPERATION_CODE);
	rod_task_done(t);
}

__attribute__((weak)) void rod_tpc_extended_copy(struct rod_scsi_task *t) { tpc_unsupported(t); }
__attribute__((weak)) void rod_tpc_populate_token(struct rod_scsi_task *t) { tpc_unsupported(t); }
__attribute__((weak)) void rod_tpc_write_using_token(struct rod_scsi_task *t) { tpc_unsupported(t); }
__attribute__((weak)) void rod_tpc_copy_status(struct rod_scsi_task *t) { tpc_unsupported(t); }
__attribute__((weak)) void rod_tpc_op_params(struct rod_scsi_task *t) { tpc_unsupported(t); }
__attribute__((weak)) void rod_tpc_rrti(struct rod_scsi_task *t) { tpc_unsupported(t); }
__attribute__((weak)) void rod_tpc_report_all_rod_tokens(struct rod_scsi_task *t) { tpc_unsupported(t); }

__attribute__((weak)) bool rod_tpc_implemented(uint8_t opcode, uint8_t sa)
{
	return false;
}

__attribute__((weak)) int rod_tpc_vpd_8f(struct rod_scsi_task *t, uint8_t *buf, size_t cap)
{
	return -EOPNOTSUPP;
}

__attribute__((weak)) int rod_tpc_target_init(struct rod_scsi_target *t, void **tpc_state)
{
	*tpc_state = NULL;
	return 0;
}

__attribute__((weak)) void rod_tpc_target_fini(struct rod_scsi_target *t, void *tpc_state) {}
__attribute__((weak)) void rod_tpc_lu_changed(struct rod_scsi_target *t, struct rod_scsi_lu *lu) {}
__attribute__((weak)) void rod_tpc_nexus_gone(struct rod_scsi_target *t, struct rod_scsi_nexus *n) {}
