/* Sense data: the one place that formats it (SPC-4 4.5). Fixed format (0x70) unless
 * the LU's control mode page has D_SENSE=1, then descriptor format (0x72). */
#include "scsi_internal.h"

#include <string.h>

#include "rod/util.h"

size_t rod_sense_build(uint8_t *out, bool desc, uint8_t key, uint16_t ascq16,
		       bool info_valid, uint64_t info, const uint8_t *sks3, uint64_t csi)
{
	if (!desc) {
		memset(out, 0, 18);
		out[0] = 0x70 | (info_valid ? 0x80 : 0);
		out[2] = key & 0x0f;
		/* Fixed format holds 32 bits of INFORMATION; larger values cannot be VALID. */
		if (info_valid) {
			if (info > UINT32_MAX)
				out[0] &= 0x7f;
			else
				rod_put_be32(out + 3, (uint32_t)info);
		}
		out[7] = 10;
		rod_put_be32(out + 8, (uint32_t)csi);
		out[12] = ascq16 >> 8;
		out[13] = ascq16 & 0xff;
		if (sks3)
			memcpy(out + 15, sks3, 3);
		return 18;
	}
	size_t n = 8;
	memset(out, 0, 8);
	out[0] = 0x72;
	out[1] = key & 0x0f;
	out[2] = ascq16 >> 8;
	out[3] = ascq16 & 0xff;
	if (info_valid) {
		/* Information descriptor (type 0) */
		memset(out + n, 0, 12);
		out[n] = 0x00;
		out[n + 1] = 0x0a;
		out[n + 2] = 0x80;
		rod_put_be64(out + n + 4, info);
		n += 12;
	}
	if (csi) {
		/* Command-specific information descriptor (type 1) */
		memset(out + n, 0, 12);
		out[n] = 0x01;
		out[n + 1] = 0x0a;
		rod_put_be64(out + n + 4, csi);
		n += 12;
	}
	if (sks3) {
		/* Sense key specific descriptor (type 2) */
		memset(out + n, 0, 8);
		out[n] = 0x02;
		out[n + 1] = 0x06;
		memcpy(out + n + 4, sks3, 3);
		n += 8;
	}
	out[7] = (uint8_t)(n - 8);
	return n;
}

static bool task_desc_sense(struct rod_scsi_task *t)
{
	return t->lu && t->lu->d_sense;
}

static void task_sense(struct rod_scsi_task *t, uint8_t key, uint16_t ascq16, bool info_valid,
		       uint64_t info, const uint8_t *sks3, uint64_t csi)
{
	struct rod_scsi_cmd *c = t->cmd;
	c->status = SAM_STAT_CHECK_CONDITION;
	c->sense_len = (uint8_t)rod_sense_build(c->sense, task_desc_sense(t), key, ascq16,
						info_valid, info, sks3, csi);
	/* No data goes back with a CHECK CONDITION from us. */
	c->in_len = 0;
}

void rod_sense_set(struct rod_scsi_task *t, uint8_t key, uint8_t asc, uint8_t ascq)
{
	task_sense(t, key, ROD_ASC(asc, ascq), false, 0, NULL, 0);
}

void rod_sense_invalid_field(struct rod_scsi_task *t, bool in_cdb, uint16_t byte, int bit)
{
	uint8_t sks[3];
	sks[0] = 0x80 | (in_cdb ? 0x40 : 0);
	if (bit >= 0 && bit <= 7)
		sks[0] |= 0x08 | (uint8_t)bit;
	rod_put_be16(sks + 1, byte);
	task_sense(t, SENSE_ILLEGAL_REQUEST,
		   in_cdb ? ASC_INVALID_FIELD_IN_CDB : ASC_INVALID_FIELD_IN_PARAMETER_LIST, false, 0,
		   sks, 0);
}

void rod_sense_info(struct rod_scsi_task *t, uint8_t key, uint16_t ascq16, uint64_t info)
{
	task_sense(t, key, ascq16, true, info, NULL, 0);
}

void rod_sense_csi(struct rod_scsi_task *t, uint8_t key, uint16_t ascq16, uint64_t csi)
{
	task_sense(t, key, ascq16, false, 0, NULL, csi);
}

void rod_task_status(struct rod_scsi_task *t, uint8_t status)
{
	t->cmd->status = status;
	t->cmd->sense_len = 0;
	t->cmd->in_len = 0;
}
