/* iSCSI text keys (RFC 7143 sections 6 and 13): parsing key=value lists and the
 * operational key negotiation, driven by one table (name, type, default, rule). */
#ifndef ROD_ISCSI_KEYS_H
#define ROD_ISCSI_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISCSI_KEY_NAME_MAX 63      /* RFC 7143 6.1 */
#define ISCSI_KEY_VALUE_MAX 8192   /* long values (CHAP) are capped by the text size */
#define ISCSI_TEXT_KEYS_MAX 64     /* pairs in one request; more is an initiator error */
#define ISCSI_TEXT_MAX 65536       /* accumulated request text across C-bit PDUs */

/* Operational parameters of a session/connection. */
struct iscsi_params {
	bool header_digest;          /* CRC32C on headers */
	bool data_digest;            /* CRC32C on data */
	uint32_t max_recv_dsl_ini;   /* what the initiator declared it can receive */
	uint32_t max_recv_dsl_tgt;   /* what we declared we can receive */
	uint32_t max_burst;
	uint32_t first_burst;
	bool initial_r2t;
	bool immediate_data;
	uint32_t max_outstanding_r2t;
	bool data_pdu_in_order;
	bool data_seq_in_order;
	uint32_t time2wait;
	uint32_t time2retain;
	uint32_t erl;
	uint32_t max_conns;
	uint32_t protocol_level;
};

/* The RFC defaults (what applies when a key is never negotiated). */
void rod_iscsi_params_default(struct iscsi_params *p);
/* What this target offers / accepts (its side of every negotiation). */
void rod_iscsi_params_target(struct iscsi_params *p);

struct iscsi_kv {
	const char *key;
	const char *val;
};

/* Split "k=v\0k=v\0" in place (buf must have one spare byte at buf[len] for a final
 * NUL). -EPROTO: a pair without '=', an empty or over-long key, an over-long value, or
 * more than max pairs. Trailing NULs (padding) are fine. */
int rod_iscsi_text_parse(char *buf, size_t len, struct iscsi_kv *kv, size_t max, size_t *n);

/* Building a response text; overflow is sticky and reported by the caller. */
struct iscsi_text_out {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow;
};
void rod_iscsi_text_add(struct iscsi_text_out *o, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* State of one login's operational negotiation. */
struct iscsi_negotiation {
	struct iscsi_params p;        /* result so far (starts at the defaults) */
	struct iscsi_params target;   /* our offers */
	bool discovery;               /* discovery session: session keys are Irrelevant */
	uint64_t seen;                /* table entries already negotiated (duplicates) */
	bool mrdsl_declared;          /* we sent our MaxRecvDataSegmentLength */
};
void rod_iscsi_negotiation_init(struct iscsi_negotiation *n, const struct iscsi_params *target,
				bool discovery);
/* Answer one key from the initiator. Appends the answer (if any) to out.
 * 0: handled (including NotUnderstood / Reject / Irrelevant answers);
 * -EPROTO: the initiator broke the rules (a key negotiated twice, a target-only key):
 *          the login fails with Initiator Error. */
int rod_iscsi_key_negotiate(struct iscsi_negotiation *n, const char *key, const char *val,
			    struct iscsi_text_out *out);
/* Before the final login response: declare our MaxRecvDataSegmentLength if not yet
 * done, and make the result consistent (FirstBurstLength <= MaxBurstLength). */
void rod_iscsi_negotiation_finish(struct iscsi_negotiation *n, struct iscsi_text_out *out);

/* Parse a numeric key value (decimal, or 0x hex). -EINVAL when not a number. */
int rod_iscsi_parse_number(const char *v, uint64_t *out);

#endif
