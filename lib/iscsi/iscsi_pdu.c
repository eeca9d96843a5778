/* iSCSI PDU codec: header checks that bound every length before it is used. */
#include "iscsi_pdu.h"

#include <errno.h>
#include <string.h>

#include "rod/util.h"

/* Per initiator opcode: may it carry AHS / a data segment? (RFC 7143 section 11) */
struct iscsi_op_rule {
	uint8_t opcode;
	const char *name;
	bool ahs_ok;   /* only SCSI Command has AHS (extended CDB, bidi read length) */
	bool data_ok;
};

static const struct iscsi_op_rule op_rules[] = {
	{ ISCSI_OP_NOP_OUT, "NOP-Out", false, true },
	{ ISCSI_OP_SCSI_CMD, "SCSI Command", true, true },
	{ ISCSI_OP_TMF_REQ, "Task Management Request", false, false },
	{ ISCSI_OP_LOGIN_REQ, "Login Request", false, true },
	{ ISCSI_OP_TEXT_REQ, "Text Request", false, true },
	{ ISCSI_OP_DATA_OUT, "SCSI Data-Out", false, true },
	{ ISCSI_OP_LOGOUT_REQ, "Logout Request", false, false },
	{ ISCSI_OP_SNACK_REQ, "SNACK Request", false, false },
};

static const struct {
	uint8_t opcode;
	const char *name;
} target_ops[] = {
	{ ISCSI_OP_NOP_IN, "NOP-In" },
	{ ISCSI_OP_SCSI_RSP, "SCSI Response" },
	{ ISCSI_OP_TMF_RSP, "Task Management Response" },
	{ ISCSI_OP_LOGIN_RSP, "Login Response" },
	{ ISCSI_OP_TEXT_RSP, "Text Response" },
	{ ISCSI_OP_DATA_IN, "SCSI Data-In" },
	{ ISCSI_OP_LOGOUT_RSP, "Logout Response" },
	{ ISCSI_OP_R2T, "R2T" },
	{ ISCSI_OP_ASYNC, "Async Message" },
	{ ISCSI_OP_REJECT, "Reject" },
};

const char *rod_iscsi_opcode_name(uint8_t opcode)
{
	for (size_t i = 0; i < ROD_ARRAY_SIZE(op_rules); i++)
		if (op_rules[i].opcode == opcode)
			return op_rules[i].name;
	for (size_t i = 0; i < ROD_ARRAY_SIZE(target_ops); i++)
		if (target_ops[i].opcode == opcode)
			return target_ops[i].name;
	return "unknown";
}

int rod_iscsi_bhs_check(const uint8_t *bhs, uint32_t max_data, struct iscsi_bhs_info *out,
			const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	memset(out, 0, sizeof(*out));
	out->opcode = bhs[0] & 0x3f;
	out->immediate = (bhs[0] & ISCSI_IMMEDIATE) != 0;
	out->ahs_len = (uint32_t)bhs[4] * 4;
	out->data_len = rod_get_be24(bhs + 5);
	out->itt = rod_get_be32(bhs + 16);

	/* Bit 7 of byte 0 is reserved in every initiator PDU. */
	if (bhs[0] & 0x80) {
		*why = "reserved bit set in byte 0";
		return -EPROTO;
	}
	if (out->data_len > max_data || out->data_len > ISCSI_DATA_SEG_MAX) {
		*why = "data segment longer than MaxRecvDataSegmentLength";
		return -EPROTO;
	}
	if (out->ahs_len > ISCSI_AHS_MAX) {
		*why = "AHS too long";
		return -EPROTO;
	}
	if (out->opcode & 0x20) {
		*why = "target opcode sent by the initiator";
		return -EPROTO;
	}
	const struct iscsi_op_rule *r = NULL;
	for (size_t i = 0; i < ROD_ARRAY_SIZE(op_rules); i++)
		if (op_rules[i].opcode == out->opcode)
			r = &op_rules[i];
	if (!r) {
		/* Unknown but well-framed: skip it and Reject (RFC 7143 11.17.1 reason 0x04). */
		out->known = false;
		return 0;
	}
	out->known = true;
	if (out->ahs_len && !r->ahs_ok) {
		*why = "AHS on a PDU type that has none";
		return -EPROTO;
	}
	if (out->data_len && !r->data_ok) {
		*why = "data segment on a PDU type that has none";
		return -EPROTO;
	}
	return 0;
}

void rod_iscsi_bhs_init(uint8_t *bhs, uint8_t opcode, uint8_t flags, uint32_t data_len,
			uint32_t itt)
{
	memset(bhs, 0, ISCSI_BHS_LEN);
	bhs[0] = opcode;
	bhs[1] = flags;
	rod_put_be24(bhs + 5, data_len);
	rod_put_be32(bhs + 16, itt);
}

uint32_t rod_iscsi_digest(const void *buf, size_t len)
{
	return rod_crc32c(0, buf, len);
}

uint32_t rod_iscsi_digest2(const void *a, size_t alen, const void *b, size_t blen)
{
	return rod_crc32c(rod_crc32c(0, a, alen), b, blen);
}
