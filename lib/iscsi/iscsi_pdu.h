/* iSCSI PDU codec (RFC 7143 section 11): opcodes, the Basic Header Segment, and the
 * checks every received header passes before any of its lengths is used. */
#ifndef ROD_ISCSI_PDU_H
#define ROD_ISCSI_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISCSI_BHS_LEN 48u
#define ISCSI_DIGEST_LEN 4u
#define ISCSI_RSVD_TAG 0xffffffffu
/* Largest AHS we accept: an extended CDB (SAM allows up to 260 bytes, we take 32) plus
 * a bidirectional read length AHS, rounded; anything bigger is malformed. */
#define ISCSI_AHS_MAX 64u
/* RFC 7143 13.12: the largest value of MaxRecvDataSegmentLength (2^24 - 1). */
#define ISCSI_DATA_SEG_MAX 16777215u
/* During login both sides may only send the default segment size (RFC 7143 13.12). */
#define ISCSI_LOGIN_DATA_MAX 8192u

enum iscsi_opcode {
	/* initiator -> target */
	ISCSI_OP_NOP_OUT = 0x00,
	ISCSI_OP_SCSI_CMD = 0x01,
	ISCSI_OP_TMF_REQ = 0x02,
	ISCSI_OP_LOGIN_REQ = 0x03,
	ISCSI_OP_TEXT_REQ = 0x04,
	ISCSI_OP_DATA_OUT = 0x05,
	ISCSI_OP_LOGOUT_REQ = 0x06,
	ISCSI_OP_SNACK_REQ = 0x10,
	/* target -> initiator */
	ISCSI_OP_NOP_IN = 0x20,
	ISCSI_OP_SCSI_RSP = 0x21,
	ISCSI_OP_TMF_RSP = 0x22,
	ISCSI_OP_LOGIN_RSP = 0x23,
	ISCSI_OP_TEXT_RSP = 0x24,
	ISCSI_OP_DATA_IN = 0x25,
	ISCSI_OP_LOGOUT_RSP = 0x26,
	ISCSI_OP_R2T = 0x31,
	ISCSI_OP_ASYNC = 0x32,
	ISCSI_OP_REJECT = 0x3f,
};

/* BHS byte 0 / byte 1 bits */
#define ISCSI_IMMEDIATE 0x40
#define ISCSI_FINAL 0x80
#define ISCSI_CMD_READ 0x40
#define ISCSI_CMD_WRITE 0x20
#define ISCSI_CMD_ATTR_MASK 0x07
#define ISCSI_LOGIN_TRANSIT 0x80
#define ISCSI_LOGIN_CONTINUE 0x40
#define ISCSI_TEXT_CONTINUE 0x40
#define ISCSI_DATAIN_ACK 0x40
#define ISCSI_DATAIN_OVERFLOW 0x04
#define ISCSI_DATAIN_UNDERFLOW 0x02
#define ISCSI_DATAIN_STATUS 0x01
#define ISCSI_RSP_BIDI_OVERFLOW 0x10
#define ISCSI_RSP_BIDI_UNDERFLOW 0x08
#define ISCSI_RSP_OVERFLOW 0x04
#define ISCSI_RSP_UNDERFLOW 0x02

/* Reject reasons (RFC 7143 11.17.1) */
enum iscsi_reject_reason {
	ISCSI_REJECT_DATA_DIGEST = 0x02,
	ISCSI_REJECT_SNACK = 0x03,
	ISCSI_REJECT_PROTOCOL = 0x04,
	ISCSI_REJECT_CMD_NOT_SUPPORTED = 0x05,
	ISCSI_REJECT_IMMEDIATE = 0x06,
	ISCSI_REJECT_TASK_IN_PROGRESS = 0x07,
	ISCSI_REJECT_INVALID_DATA_ACK = 0x08,
	ISCSI_REJECT_INVALID_FIELD = 0x09,
	ISCSI_REJECT_OUT_OF_RESOURCES = 0x0a,
	ISCSI_REJECT_WAITING_LOGOUT = 0x0c,
};

/* Login status classes/details (RFC 7143 11.13.5) */
#define ISCSI_LOGIN_STATUS(cls, det) ((uint16_t)((cls) << 8 | (det)))
#define ISCSI_LOGIN_OK ISCSI_LOGIN_STATUS(0, 0)
#define ISCSI_LOGIN_INITIATOR_ERROR ISCSI_LOGIN_STATUS(2, 0)
#define ISCSI_LOGIN_AUTH_FAILED ISCSI_LOGIN_STATUS(2, 1)
#define ISCSI_LOGIN_AUTHZ_FAILED ISCSI_LOGIN_STATUS(2, 2)
#define ISCSI_LOGIN_NOT_FOUND ISCSI_LOGIN_STATUS(2, 3)
#define ISCSI_LOGIN_REMOVED ISCSI_LOGIN_STATUS(2, 4)
#define ISCSI_LOGIN_BAD_VERSION ISCSI_LOGIN_STATUS(2, 5)
#define ISCSI_LOGIN_TOO_MANY_CONNS ISCSI_LOGIN_STATUS(2, 6)
#define ISCSI_LOGIN_MISSING_PARAM ISCSI_LOGIN_STATUS(2, 7)
#define ISCSI_LOGIN_NO_SESSION_SPAN ISCSI_LOGIN_STATUS(2, 8)
#define ISCSI_LOGIN_SESSION_TYPE ISCSI_LOGIN_STATUS(2, 9)
#define ISCSI_LOGIN_NO_SESSION ISCSI_LOGIN_STATUS(2, 10)
#define ISCSI_LOGIN_INVALID_REQUEST ISCSI_LOGIN_STATUS(2, 11)
#define ISCSI_LOGIN_TARGET_ERROR ISCSI_LOGIN_STATUS(3, 0)
#define ISCSI_LOGIN_OUT_OF_RESOURCES ISCSI_LOGIN_STATUS(3, 2)

/* What a received BHS says about the rest of its PDU, after the checks. */
struct iscsi_bhs_info {
	uint8_t opcode;
	bool immediate;
	bool known;          /* an initiator opcode this target understands */
	uint32_t ahs_len;    /* bytes of AHS (TotalAHSLength * 4) */
	uint32_t data_len;   /* DataSegmentLength (without padding) */
	uint32_t itt;
};

/* Validate a received BHS against the limits of the connection.
 * max_data: the largest data segment we declared we can receive.
 * Returns 0 or -EPROTO (the connection must be dropped: a length we cannot trust,
 * a target opcode from the initiator, data where the PDU type forbids it). *why gets
 * a static string naming the problem. Unknown initiator opcodes pass with known=false:
 * the caller skips the PDU and answers with a Reject. */
int rod_iscsi_bhs_check(const uint8_t *bhs, uint32_t max_data, struct iscsi_bhs_info *out,
			const char **why);

/* Bytes that follow the BHS on the wire: AHS, header digest, data, padding, data digest. */
static inline uint32_t rod_iscsi_pad4(uint32_t n) { return (4 - (n & 3)) & 3; }

/* Fill the common fields of an outgoing BHS (zeroes the rest). */
void rod_iscsi_bhs_init(uint8_t *bhs, uint8_t opcode, uint8_t flags, uint32_t data_len,
			uint32_t itt);

/* Header / data digests: CRC32C over the bytes (data: with its padding). The 32-bit
 * value goes on the wire least significant byte first, as open-iscsi, LIO and libiscsi
 * all do (the reflected CRC's natural byte order). */
uint32_t rod_iscsi_digest(const void *buf, size_t len);
uint32_t rod_iscsi_digest2(const void *a, size_t alen, const void *b, size_t blen);
static inline void rod_iscsi_put_digest(uint8_t *p, uint32_t crc)
{ p[0] = (uint8_t)crc; p[1] = (uint8_t)(crc >> 8); p[2] = (uint8_t)(crc >> 16); p[3] = (uint8_t)(crc >> 24); }
static inline uint32_t rod_iscsi_get_digest(const uint8_t *p)
{ return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Serial number arithmetic (RFC 1982, 32 bits) for CmdSN/StatSN/DataSN. */
static inline bool rod_sn_lt(uint32_t a, uint32_t b) { return a != b && (int32_t)(a - b) < 0; }
static inline bool rod_sn_le(uint32_t a, uint32_t b) { return a == b || (int32_t)(a - b) < 0; }

const char *rod_iscsi_opcode_name(uint8_t opcode);

#endif
