/* iSCSI operational key negotiation: one table (RFC 7143 section 13) drives defaults,
 * range checks and the result rule of every key. */
#include "iscsi_keys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

enum key_rule {
	KR_DIGEST,      /* list: the first of the initiator's values we support */
	KR_LIST,        /* list of words: first one we support (TaskReporting) */
	KR_AND,         /* boolean, result = both */
	KR_OR,          /* boolean, result = either */
	KR_MIN,         /* numerical, result = smaller */
	KR_MAX,         /* numerical, result = larger */
	KR_DECLARE,     /* numerical declaration of the sender's own limit */
	KR_FIXED_NO,    /* RFC 3720 markers: we support none, answer No */
	KR_IRRELEVANT,  /* keys whose value no longer matters (marker intervals) */
};

enum key_field_kind { KF_NONE, KF_BOOL, KF_U32 };

#define KEY_NORMAL_ONLY 0x1   /* "Irrelevant" in discovery sessions */

struct key_def {
	const char *name;
	enum key_rule rule;
	const char *def;        /* RFC default */
	uint32_t min, max;      /* numerical range */
	enum key_field_kind kind;
	size_t off;             /* field in struct iscsi_params */
	unsigned flags;
	const char *supported;  /* KR_LIST: the words we accept */
};

#define P(f) offsetof(struct iscsi_params, f)

static const struct key_def key_table[] = {
	{ "HeaderDigest", KR_DIGEST, "None", 0, 0, KF_BOOL, P(header_digest), 0, NULL },
	{ "DataDigest", KR_DIGEST, "None", 0, 0, KF_BOOL, P(data_digest), 0, NULL },
	{ "MaxConnections", KR_MIN, "1", 1, 65535, KF_U32, P(max_conns), KEY_NORMAL_ONLY, NULL },
	{ "InitialR2T", KR_OR, "Yes", 0, 0, KF_BOOL, P(initial_r2t), KEY_NORMAL_ONLY, NULL },
	{ "ImmediateData", KR_AND, "Yes", 0, 0, KF_BOOL, P(immediate_data), KEY_NORMAL_ONLY, NULL },
	{ "MaxRecvDataSegmentLength", KR_DECLARE, "8192", 512, 16777215, KF_U32,
	  P(max_recv_dsl_ini), 0, NULL },
	{ "MaxBurstLength", KR_MIN, "262144", 512, 16777215, KF_U32, P(max_burst),
	  KEY_NORMAL_ONLY, NULL },
	{ "FirstBurstLength", KR_MIN, "65536", 512, 16777215, KF_U32, P(first_burst),
	  KEY_NORMAL_ONLY, NULL },
	{ "DefaultTime2Wait", KR_MAX, "2", 0, 3600, KF_U32, P(time2wait), 0, NULL },
	{ "DefaultTime2Retain", KR_MIN, "20", 0, 3600, KF_U32, P(time2retain), 0, NULL },
	{ "MaxOutstandingR2T", KR_MIN, "1", 1, 65535, KF_U32, P(max_outstanding_r2t),
	  KEY_NORMAL_ONLY, NULL },
	{ "DataPDUInOrder", KR_OR, "Yes", 0, 0, KF_BOOL, P(data_pdu_in_order), KEY_NORMAL_ONLY, NULL },
	{ "DataSequenceInOrder", KR_OR, "Yes", 0, 0, KF_BOOL, P(data_seq_in_order),
	  KEY_NORMAL_ONLY, NULL },
	{ "ErrorRecoveryLevel", KR_MIN, "0", 0, 2, KF_U32, P(erl), 0, NULL },
	/* RFC 7144: we implement RFC 7143, level 1. */
	{ "iSCSIProtocolLevel", KR_MIN, "0", 0, 31, KF_U32, P(protocol_level), 0, NULL },
	{ "TaskReporting", KR_LIST, "RFC3720", 0, 0, KF_NONE, 0, KEY_NORMAL_ONLY, "RFC3720" },
	/* RFC 3720 markers, dropped by RFC 7143; old initiators still send them. */
	{ "IFMarker", KR_FIXED_NO, "No", 0, 0, KF_NONE, 0, 0, NULL },
	{ "OFMarker", KR_FIXED_NO, "No", 0, 0, KF_NONE, 0, 0, NULL },
	{ "IFMarkInt", KR_IRRELEVANT, "2048", 0, 0, KF_NONE, 0, 0, NULL },
	{ "OFMarkInt", KR_IRRELEVANT, "2048", 0, 0, KF_NONE, 0, 0, NULL },
};

/* Keys only the target may send: an initiator sending one is in error. */
static const char *const target_only_keys[] = {
	"TargetAlias", "TargetAddress", "TargetPortalGroupTag",
};

static bool *bool_field(struct iscsi_params *p, const struct key_def *d)
{ return (bool *)((char *)p + d->off); }
static uint32_t *u32_field(struct iscsi_params *p, const struct key_def *d)
{ return (uint32_t *)((char *)p + d->off); }

int rod_iscsi_parse_number(const char *v, uint64_t *out)
{
	char *end;
	int base = 10;
	if (!v || !*v)
		return -EINVAL;
	if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		v += 2;
		if (!*v)
			return -EINVAL;
	}
	for (const char *c = v; *c; c++)
		if (!(base == 16 ? ((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
				    (*c >= 'A' && *c <= 'F'))
				 : (*c >= '0' && *c <= '9')))
			return -EINVAL;
	if (strlen(v) > 16)
		return -EINVAL;
	errno = 0;
	unsigned long long x = strtoull(v, &end, base);
	if (errno || *end)
		return -EINVAL;
	*out = x;
	return 0;
}

void rod_iscsi_params_default(struct iscsi_params *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < ROD_ARRAY_SIZE(key_table); i++) {
		const struct key_def *d = &key_table[i];
		uint64_t v;
		if (d->kind == KF_BOOL)
			*bool_field(p, d) = strcmp(d->def, "Yes") == 0 || strcmp(d->def, "CRC32C") == 0;
		else if (d->kind == KF_U32 && rod_iscsi_parse_number(d->def, &v) == 0)
			*u32_field(p, d) = (uint32_t)v;
	}
	p->max_recv_dsl_tgt = 8192;
}

void rod_iscsi_params_target(struct iscsi_params *p)
{
	rod_iscsi_params_default(p);
	/* Digests: we accept whichever the initiator lists first (CRC32C or None). */
	p->header_digest = true;
	p->data_digest = true;
	p->max_recv_dsl_tgt = 262144;   /* buffers are per command, so big segments are cheap */
	p->max_recv_dsl_ini = 262144;
	p->max_burst = 16776192;        /* fewer R2T round trips for large writes */
	p->first_burst = 16776192;
	p->initial_r2t = false;         /* allow unsolicited data (OR: initiator decides) */
	p->immediate_data = true;
	p->max_outstanding_r2t = 16;
	p->data_pdu_in_order = true;
	p->data_seq_in_order = true;
	p->time2wait = 2;
	p->time2retain = 0;             /* ERL 0: nothing to retain */
	p->erl = 0;
	p->max_conns = 1;
	p->protocol_level = 1;
}

int rod_iscsi_text_parse(char *buf, size_t len, struct iscsi_kv *kv, size_t max, size_t *n)
{
	size_t i = 0, cnt = 0;
	buf[len] = '\0';
	while (i < len) {
		char *pair = buf + i;
		size_t plen = strlen(pair);
		i += plen + 1;
		if (plen == 0)
			continue;     /* padding or an empty pair */
		char *eq = strchr(pair, '=');
		if (!eq || eq == pair || (size_t)(eq - pair) > ISCSI_KEY_NAME_MAX)
			return -EPROTO;
		if (strlen(eq + 1) > ISCSI_KEY_VALUE_MAX)
			return -EPROTO;
		if (cnt == max)
			return -EPROTO;
		*eq = '\0';
		kv[cnt].key = pair;
		kv[cnt].val = eq + 1;
		cnt++;
	}
	*n = cnt;
	return 0;
}

void rod_iscsi_text_add(struct iscsi_text_out *o, const char *key, const char *fmt, ...)
{
	if (o->overflow)
		return;
	size_t room = o->cap - o->len;
	int k = snprintf(o->buf + o->len, room, "%s=", key);
	if (k < 0 || (size_t)k >= room) {
		o->overflow = true;
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	int v = vsnprintf(o->buf + o->len + k, room - (size_t)k, fmt, ap);
	va_end(ap);
	if (v < 0 || (size_t)(k + v) + 1 > room) {
		o->overflow = true;
		return;
	}
	o->len += (size_t)(k + v) + 1;   /* keep the NUL: it separates pairs */
}

void rod_iscsi_negotiation_init(struct iscsi_negotiation *n, const struct iscsi_params *target,
				bool discovery)
{
	memset(n, 0, sizeof(*n));
	rod_iscsi_params_default(&n->p);
	n->target = *target;
	n->p.max_recv_dsl_tgt = target->max_recv_dsl_tgt;
	n->discovery = discovery;
}

static int parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "Yes") == 0)
		*out = true;
	else if (strcmp(v, "No") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* Pick the first word of the initiator's comma list that accept() takes. */
static const char *pick_from_list(const char *val, char *word, size_t wlen,
				  bool (*accept)(const char *w, const void *arg), const void *arg)
{
	const char *p = val;
	while (*p) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l > 0 && l < wlen) {
			memcpy(word, p, l);
			word[l] = '\0';
			if (accept(word, arg))
				return word;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return NULL;
}

static bool accept_digest(const char *w, const void *arg)
{
	bool crc_ok = *(const bool *)arg;
	return strcmp(w, "None") == 0 || (crc_ok && strcmp(w, "CRC32C") == 0);
}

static bool accept_word(const char *w, const void *arg)
{
	const char *supported = arg;
	return strcmp(w, supported) == 0;
}

int rod_iscsi_key_negotiate(struct iscsi_negotiation *n, const char *key, const char *val,
			    struct iscsi_text_out *out)
{
	for (size_t i = 0; i < ROD_ARRAY_SIZE(target_only_keys); i++)
		if (strcmp(key, target_only_keys[i]) == 0)
			return -EPROTO;

	const struct key_def *d = NULL;
	size_t idx = 0;
	for (size_t i = 0; i < ROD_ARRAY_SIZE(key_table); i++)
		if (strcmp(key, key_table[i].name) == 0) {
			d = &key_table[i];
			idx = i;
		}
	if (!d) {
		rod_iscsi_text_add(out, key, "NotUnderstood");
		return 0;
	}
	/* The initiator answering an offer of ours: nothing to answer back. We offer
	 * nothing but declarations, so these only acknowledge them. */
	if (strcmp(val, "NotUnderstood") == 0 || strcmp(val, "Irrelevant") == 0 ||
	    strcmp(val, "Reject") == 0)
		return 0;
	if (n->seen & (1ull << idx))
		return -EPROTO;   /* RFC 7143 6.1: a key negotiated twice is a protocol error */
	n->seen |= 1ull << idx;

	if (n->discovery && (d->flags & KEY_NORMAL_ONLY)) {
		rod_iscsi_text_add(out, key, "Irrelevant");
		return 0;
	}

	char word[256];
	bool b, mine;
	uint64_t num;
	switch (d->rule) {
	case KR_DIGEST: {
		mine = *bool_field(&n->target, d);
		const char *w = pick_from_list(val, word, sizeof(word), accept_digest, &mine);
		if (!w) {
			rod_iscsi_text_add(out, key, "Reject");
			return 0;
		}
		*bool_field(&n->p, d) = strcmp(w, "CRC32C") == 0;
		rod_iscsi_text_add(out, key, "%s", w);
		return 0;
	}
	case KR_LIST: {
		const char *w = pick_from_list(val, word, sizeof(word), accept_word, d->supported);
		rod_iscsi_text_add(out, key, "%s", w ? w : "Reject");
		return 0;
	}
	case KR_AND:
	case KR_OR:
		if (parse_bool(val, &b) < 0) {
			rod_iscsi_text_add(out, key, "Reject");
			return 0;
		}
		mine = *bool_field(&n->target, d);
		b = d->rule == KR_AND ? (b && mine) : (b || mine);
		*bool_field(&n->p, d) = b;
		rod_iscsi_text_add(out, key, "%s", b ? "Yes" : "No");
		return 0;
	case KR_MIN:
	case KR_MAX:
	case KR_DECLARE:
		if (rod_iscsi_parse_number(val, &num) < 0 || num < d->min || num > d->max) {
			rod_iscsi_text_add(out, key, "Reject");
			return 0;
		}
		if (d->rule == KR_DECLARE) {
			/* The initiator's limit for what we send it; answer with ours. */
			*u32_field(&n->p, d) = (uint32_t)num;
			if (!n->mrdsl_declared) {
				rod_iscsi_text_add(out, key, "%u", n->target.max_recv_dsl_tgt);
				n->mrdsl_declared = true;
			}
			return 0;
		}
		uint32_t t = *u32_field(&n->target, d);
		uint32_t r = d->rule == KR_MIN ? ROD_MIN((uint32_t)num, t) : ROD_MAX((uint32_t)num, t);
		*u32_field(&n->p, d) = r;
		rod_iscsi_text_add(out, key, "%u", r);
		return 0;
	case KR_FIXED_NO:
		rod_iscsi_text_add(out, key, "No");
		return 0;
	case KR_IRRELEVANT:
		rod_iscsi_text_add(out, key, "Irrelevant");
		return 0;
	}
	return 0;
}

void rod_iscsi_negotiation_finish(struct iscsi_negotiation *n, struct iscsi_text_out *out)
{
	if (!n->mrdsl_declared) {
		rod_iscsi_text_add(out, "MaxRecvDataSegmentLength", "%u", n->target.max_recv_dsl_tgt);
		n->mrdsl_declared = true;
	}
	n->p.max_recv_dsl_tgt = n->target.max_recv_dsl_tgt;
	/* RFC 7143 13.14: FirstBurstLength must not exceed MaxBurstLength. */
	if (n->p.first_burst > n->p.max_burst)
		n->p.first_burst = n->p.max_burst;
}
