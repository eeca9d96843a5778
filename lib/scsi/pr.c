/* Reservations: SPC-2 RESERVE/RELEASE and SPC-4 persistent reservations (PERSISTENT
 * RESERVE IN/OUT), with APTPL state kept in the store's metadata (rod_store_meta_put)
 * so it survives a restart. All state lives in struct rod_scsi_lu under lu->lock. */
#include "scsi_internal.h"
#include "target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rod/log.h"
#include "rod/util.h"

static int my_index(struct rod_scsi_task *t)
{
	return t->nexus ? (int)t->nexus->index : -1;
}

/* Does registration r belong to nexus n? A registration made through REGISTER AND MOVE
 * with a name-only TransportID matches every port of that initiator. */
static bool reg_is(const struct rod_pr_reg *r, const struct rod_scsi_nexus *n)
{
	if (!n || (!r->all_tg_pt && r->rel_port != n->rel_port))
		return false;
	if (strcasecmp(r->iport, n->initiator_port) == 0)
		return true;
	return !strstr(r->iport, ",i,") && strcasecmp(r->iport, n->initiator_name) == 0;
}

/* Caller holds lu->lock. */
static int reg_find(struct rod_scsi_lu *lu, const struct rod_scsi_nexus *n)
{
	for (unsigned i = 0; i < lu->pr.nregs; i++)
		if (reg_is(&lu->pr.regs[i], n))
			return (int)i;
	return -1;
}

static bool type_all_regs(enum rod_pr_type ty)
{
	return ty == ROD_PR_WE_AR || ty == ROD_PR_EA_AR;
}

/* Caller holds lu->lock. */
static bool is_holder(struct rod_scsi_lu *lu, int reg)
{
	if (reg < 0 || lu->pr.type == ROD_PR_NONE)
		return false;
	return type_all_regs(lu->pr.type) || lu->pr.holder == reg;
}

/* Unit attention to the nexus of registration r (if it is logged in). */
static void reg_ua(struct rod_scsi_lu *lu, const struct rod_pr_reg *r, uint32_t bits)
{
	int idx = rod_nexus_index_find(lu->tgt, r->iport, r->rel_port);
	if (idx >= 0 && (uint32_t)idx < lu->ua_cap)
		lu->ua[idx] |= bits;
	else if (idx >= 0) {
		/* grow via the unlocked helper is not possible here; the array is sized at
		 * nexus registration, so an index beyond it cannot happen. */
	}
}

/* The tasks PREEMPT AND ABORT aborted are gone: the PR OUT completes. */
static void pr_abort_done(void *arg)
{
	rod_task_done(arg);
}

/* ---- persistence (APTPL) --------------------------------------------------------- */

static void pr_key(struct rod_scsi_lu *lu, char *key, size_t len)
{
	snprintf(key, len, "scsi/pr/%016llx", (unsigned long long)lu->vol_id);
}

/* Caller holds lu->lock. */
static void pr_save(struct rod_scsi_lu *lu)
{
	char key[64];
	pr_key(lu, key, sizeof(key));
	struct rod_store *s = lu->tgt->store;
	/* A durable put/delete waits for the store's sync; PERSISTENT RESERVE OUT is rare
	 * and only APTPL state (or dropping it) needs one. */
	if (!lu->pr.aptpl) {
		if (!lu->pr.saved)
			return;
		int rc = rod_store_meta_del(s, key);
		if (rc < 0 && rc != -ENOENT)
			rod_warn("scsi: cannot drop saved reservations of volume %llu: %s",
				 (unsigned long long)lu->vol_id, strerror(-rc));
		else
			lu->pr.saved = false;
		return;
	}
	uint8_t buf[16 + ROD_PR_MAX_REGS * (13 + 256)];
	size_t n = 0;
	buf[n++] = 2; /* format version */
	rod_put_be32(buf + n, lu->pr.generation);
	n += 4;
	buf[n++] = lu->pr.type;
	rod_put_be16(buf + n, (uint16_t)(lu->pr.holder + 1));
	n += 2;
	rod_put_be16(buf + n, (uint16_t)lu->pr.nregs);
	n += 2;
	for (unsigned i = 0; i < lu->pr.nregs; i++) {
		const struct rod_pr_reg *r = &lu->pr.regs[i];
		size_t l = strnlen(r->iport, sizeof(r->iport) - 1);
		rod_put_be64(buf + n, r->key);
		rod_put_be16(buf + n + 8, r->rel_port);
		rod_put_be16(buf + n + 10, (uint16_t)l);
		memcpy(buf + n + 12, r->iport, l);
		buf[n + 12 + l] = r->all_tg_pt ? 1 : 0;
		n += 13 + l;
	}
	int rc = rod_store_meta_put(s, key, buf, n);
	if (rc < 0)
		rod_err("scsi: cannot persist reservations of volume %llu (APTPL): %s",
			(unsigned long long)lu->vol_id, strerror(-rc));
	else
		lu->pr.saved = true;
}

void rod_pr_load(struct rod_scsi_lu *lu)
{
	char key[64];
	pr_key(lu, key, sizeof(key));
	void *val = NULL;
	size_t len = 0;
	if (rod_store_meta_get(lu->tgt->store, key, &val, &len) < 0)
		return;
	const uint8_t *p = val;
	struct rod_pr_state st;
	memset(&st, 0, sizeof(st));
	st.holder = -1;
	if (len < 10 || (p[0] != 1 && p[0] != 2))
		goto bad;
	unsigned extra = p[0] == 2 ? 1 : 0; /* v2: a flags byte after each port name */
	st.generation = rod_get_be32(p + 1);
	st.type = p[5];
	st.holder = (int)rod_get_be16(p + 6) - 1;
	unsigned nregs = rod_get_be16(p + 8);
	size_t off = 10;
	if (nregs > ROD_PR_MAX_REGS)
		goto bad;
	for (unsigned i = 0; i < nregs; i++) {
		if (off + 12 > len)
			goto bad;
		struct rod_pr_reg *r = &st.regs[i];
		r->key = rod_get_be64(p + off);
		r->rel_port = rod_get_be16(p + off + 8);
		size_t l = rod_get_be16(p + off + 10);
		if (l >= sizeof(r->iport) || off + 12 + l + extra > len)
			goto bad;
		memcpy(r->iport, p + off + 12, l);
		r->iport[l] = 0;
		r->all_tg_pt = extra && (p[off + 12 + l] & 1);
		off += 12 + l + extra;
	}
	st.nregs = nregs;
	if (st.holder >= (int)nregs)
		goto bad;
	st.aptpl = true;
	st.saved = true;
	pthread_mutex_lock(&lu->lock);
	lu->pr = st;
	pthread_mutex_unlock(&lu->lock);
	free(val);
	return;
bad:
	rod_warn("scsi: saved reservations of volume %llu are damaged; starting without them",
		 (unsigned long long)lu->vol_id);
	free(val);
}

/* ---- conflicts -------------------------------------------------------------------- */

bool rod_pr_check(struct rod_scsi_task *t)
{
	struct rod_scsi_lu *lu = t->lu;
	unsigned fl = t->op->flags;
	bool ok = true;
	pthread_mutex_lock(&lu->lock);
	int me = my_index(t);
	if (lu->spc2_holder && lu->spc2_holder != (uint32_t)me + 1 && !(fl & ROD_OPF_SPC2_OK))
		ok = false;
	if (ok && lu->pr.type != ROD_PR_NONE && !(fl & ROD_OPF_PR_OK)) {
		int reg = reg_find(lu, t->nexus);
		if (!is_holder(lu, reg)) {
			switch (lu->pr.type) {
			case ROD_PR_WE:
				ok = fl & ROD_OPF_PR_READ;
				break;
			case ROD_PR_EA:
				ok = false;
				break;
			case ROD_PR_WE_RO:
			case ROD_PR_WE_AR:
				ok = reg >= 0 || (fl & ROD_OPF_PR_READ);
				break;
			case ROD_PR_EA_RO:
			case ROD_PR_EA_AR:
				ok = reg >= 0;
				break;
			default:
				break;
			}
		}
	}
	pthread_mutex_unlock(&lu->lock);
	if (!ok)
		rod_task_status(t, SAM_STAT_RESERVATION_CONFLICT);
	return ok;
}

void rod_pr_nexus_lost(struct rod_scsi_lu *lu, uint32_t nexus_index)
{
	pthread_mutex_lock(&lu->lock);
	if (lu->spc2_holder == nexus_index + 1)
		lu->spc2_holder = 0;
	pthread_mutex_unlock(&lu->lock);
}

void rod_pr_lu_reset(struct rod_scsi_lu *lu)
{
	/* SPC-2 reservations end at a reset; persistent ones do not (SPC-4 5.13.1). */
	pthread_mutex_lock(&lu->lock);
	lu->spc2_holder = 0;
	pthread_mutex_unlock(&lu->lock);
}

/* ---- RESERVE / RELEASE (6)/(10), SPC-2 ------------------------------------------------- */

void rod_spc_reserve(struct rod_scsi_task *t)
{
	struct rod_scsi_lu *lu = t->lu;
	uint32_t me = (uint32_t)my_index(t) + 1;
	pthread_mutex_lock(&lu->lock);
	bool conflict;
	if (lu->pr.type != ROD_PR_NONE) {
		/* SPC-4 5.13.3 with CRH=1: GOOD without effect for a reservation holder,
		 * RESERVATION CONFLICT for everybody else. */
		conflict = !is_holder(lu, reg_find(lu, t->nexus));
	} else {
		conflict = lu->spc2_holder && lu->spc2_holder != me;
		if (!conflict)
			lu->spc2_holder = me;
	}
	pthread_mutex_unlock(&lu->lock);
	if (conflict)
		rod_task_status(t, SAM_STAT_RESERVATION_CONFLICT);
	rod_task_done(t);
}

void rod_spc_release(struct rod_scsi_task *t)
{
	struct rod_scsi_lu *lu = t->lu;
	uint32_t me = (uint32_t)my_index(t) + 1;
	bool conflict = false;
	pthread_mutex_lock(&lu->lock);
	if (lu->pr.type != ROD_PR_NONE)
		conflict = !is_holder(lu, reg_find(lu, t->nexus)); /* CRH=1, as RESERVE */
	else if (lu->spc2_holder == me)
		lu->spc2_holder = 0;
	/* Releasing somebody else's reservation, or none, is GOOD and does nothing. */
	pthread_mutex_unlock(&lu->lock);
	if (conflict)
		rod_task_status(t, SAM_STAT_RESERVATION_CONFLICT);
	rod_task_done(t);
}

/* ---- PERSISTENT RESERVE IN ------------------------------------------------------------- */

/* iSCSI TransportID (SPC-4 7.6.4.6), format 01b when the port has an ISID. */
static size_t transport_id(const struct rod_pr_reg *r, uint8_t *p, size_t cap)
{
	bool port = strstr(r->iport, ",i,") != NULL;
	size_t l = strlen(r->iport) + 1;
	size_t len = ROD_MAX(ROD_ROUND_UP(l, 4), 20);
	if (4 + len > cap)
		return 0;
	memset(p, 0, 4 + len);
	p[0] = (port ? 0x40 : 0x00) | 0x05;
	rod_put_be16(p + 2, (uint16_t)len);
	memcpy(p + 4, r->iport, l - 1);
	return 4 + len;
}

void rod_spc_pr_in(struct rod_scsi_task *t)
{
	struct rod_scsi_lu *lu = t->lu;
	const uint8_t *cdb = t->cmd->cdb;
	unsigned sa = cdb[1] & 0x1f;
	uint16_t alloc = rod_get_be16(cdb + 7);
	size_t cap = 8 + ROD_PR_MAX_REGS * (24 + 4 + 260);
	uint8_t *buf = calloc(1, cap);
	if (!buf) {
		rod_task_status(t, SAM_STAT_BUSY);
		rod_task_done(t);
		return;
	}
	t->buf = buf;
	size_t n = 8;
	pthread_mutex_lock(&lu->lock);
	struct rod_pr_state *pr = &lu->pr;
	rod_put_be32(buf, pr->generation);
	switch (sa) {
	case 0: /* READ KEYS */
		for (unsigned i = 0; i < pr->nregs; i++, n += 8)
			rod_put_be64(buf + n, pr->regs[i].key);
		rod_put_be32(buf + 4, (uint32_t)(n - 8));
		break;
	case 1: /* READ RESERVATION */
		if (pr->type != ROD_PR_NONE) {
			uint64_t key = type_all_regs(pr->type) || pr->holder < 0 ? 0 :
				       pr->regs[pr->holder].key;
			rod_put_be64(buf + 8, key);
			buf[21] = pr->type & 0x0f; /* scope LU (0) */
			n += 16;
		}
		rod_put_be32(buf + 4, (uint32_t)(n - 8));
		break;
	case 2: /* REPORT CAPABILITIES */
		memset(buf, 0, 8);
		rod_put_be16(buf, 8);
		buf[2] = 0x10 | 0x04 | 0x01;        /* CRH, ATP_C, PTPL_C */
		buf[3] = 0x80 | (pr->aptpl ? 0x01 : 0); /* TMV, PTPL_A */
		buf[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; /* WE_AR EA_RO WE_RO EA WE */
		buf[5] = 0x01;                      /* EA_AR */
		n = 8;
		break;
	case 3: /* READ FULL STATUS */
		for (unsigned i = 0; i < pr->nregs; i++) {
			const struct rod_pr_reg *r = &pr->regs[i];
			uint8_t *d = buf + n;
			if (n + 24 > cap)
				break;
			memset(d, 0, 24);
			rod_put_be64(d, r->key);
			if (r->all_tg_pt)
				d[12] |= 0x02;              /* ALL_TG_PT */
			if (is_holder(lu, (int)i)) {
				d[12] |= 0x01;              /* R_HOLDER */
				d[13] = pr->type & 0x0f;
			}
			rod_put_be16(d + 18, r->rel_port);
			size_t tl = transport_id(r, d + 24, cap - n - 24);
			rod_put_be32(d + 20, (uint32_t)tl);
			n += 24 + tl;
		}
		rod_put_be32(buf + 4, (uint32_t)(n - 8));
		break;
	default:
		pthread_mutex_unlock(&lu->lock);
		rod_sense_invalid_field(t, true, 1, 4);
		rod_task_done(t);
		return;
	}
	pthread_mutex_unlock(&lu->lock);
	rod_task_data_in(t, buf, n, alloc);
	rod_task_done(t);
}

/* ---- PERSISTENT RESERVE OUT ------------------------------------------------------------ */

enum { PR_OK = 0, PR_CONFLICT = 1, PR_SENSE = 2 };

/* Remove registration i, fixing the holder index. Caller holds lu->lock. */
static void reg_remove(struct rod_scsi_lu *lu, unsigned i)
{
	struct rod_pr_state *pr = &lu->pr;
	if (pr->holder == (int)i) {
		pr->holder = -1;
		if (!type_all_regs(pr->type))
			pr->type = ROD_PR_NONE;
	} else if (pr->holder > (int)i) {
		pr->holder--;
	}
	memmove(&pr->regs[i], &pr->regs[i + 1], (pr->nregs - i - 1) * sizeof(pr->regs[0]));
	pr->nregs--;
	if (pr->nregs == 0) {
		pr->type = ROD_PR_NONE;
		pr->holder = -1;
	}
}

/* Unregister (REGISTER with key 0) registration i. SPC-4 5.13.11.3: releasing a
 * registrants-only reservation this way tells the other registrants, not the one that
 * unregistered. Caller holds lu->lock. */
static void unregister(struct rod_scsi_lu *lu, unsigned i)
{
	struct rod_pr_state *pr = &lu->pr;
	bool was_holder = pr->holder == (int)i && !type_all_regs(pr->type);
	enum rod_pr_type ty = pr->type;
	reg_remove(lu, i);
	if (was_holder && (ty == ROD_PR_WE_RO || ty == ROD_PR_EA_RO))
		for (unsigned k = 0; k < pr->nregs; k++)
			reg_ua(lu, &pr->regs[k], ROD_UA_RES_RELEASED);
}

static bool type_valid(unsigned ty)
{
	return ty == 1 || ty == 3 || ty == 5 || ty == 6 || ty == 7 || ty == 8;
}

/* Parse an iSCSI TransportID into "<name>" or "<name>,i,0x<isid>". */
static int parse_transport_id(const uint8_t *p, size_t len, char *out, size_t cap)
{
	if (len < 4 || (p[0] & 0x0f) != 0x05)
		return -EINVAL;
	size_t l = rod_get_be16(p + 2);
	if (l + 4 > len || l == 0)
		return -EINVAL;
	const char *s = (const char *)p + 4;
	size_t sl = strnlen(s, l);
	if (sl == 0 || sl >= cap || sl == l) /* must be NUL-terminated */
		return -EINVAL;
	memcpy(out, s, sl);
	out[sl] = 0;
	unsigned fmt = p[0] >> 6;
	if (fmt == 0 && strstr(out, ",i,"))
		return -EINVAL;
	if (fmt == 1 && !strstr(out, ",i,0x"))
		return -EINVAL;
	if (fmt > 1)
		return -EINVAL;
	return 0;
}

void rod_spc_pr_out(struct rod_scsi_task *t)
{
	struct rod_scsi_lu *lu = t->lu;
	const uint8_t *cdb = t->cmd->cdb;
	unsigned sa = cdb[1] & 0x1f, scope = cdb[2] >> 4, type = cdb[2] & 0x0f;
	uint32_t plen = rod_get_be32(cdb + 5);
	uint32_t got;
	const uint8_t *p = rod_task_out(t, &got);
	t->cmd->xfer_len = plen;
	if (got < plen) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CMD_IU);
		goto done;
	}
	if (sa == 7 ? plen < 24 : plen != 24) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
		goto done;
	}
	uint64_t rkey = rod_get_be64(p), sakey = rod_get_be64(p + 8);
	bool aptpl = p[sa == 7 ? 17 : 20] & 0x01;
	if (sa != 7 && (p[20] & 0x08)) { /* SPEC_I_PT: SIP_C=0 */
		rod_sense_invalid_field(t, false, 20, 3);
		goto done;
	}
	bool all_tg_pt = sa != 7 && (p[20] & 0x04);
	/* RESERVE, RELEASE, PREEMPT (AND ABORT) use SCOPE (LU only) and TYPE. */
	bool uses_type = sa == 1 || sa == 2 || sa == 4 || sa == 5;
	if (uses_type && scope != 0) {
		rod_sense_invalid_field(t, true, 2, 7);
		goto done;
	}
	if (uses_type && !type_valid(type)) {
		rod_sense_invalid_field(t, true, 2, 3);
		goto done;
	}

	int me_idx = my_index(t);
	int result = PR_OK;
	pthread_mutex_lock(&lu->lock);
	struct rod_pr_state *pr = &lu->pr;
	if (lu->spc2_holder && lu->spc2_holder != (uint32_t)me_idx + 1) {
		result = PR_CONFLICT; /* SPC-4 5.13.3: SPC-2 reservation by another nexus */
		goto unlock;
	}
	int me = reg_find(lu, t->nexus);
	bool changed = false, gen = false;
	int victims[ROD_PR_MAX_REGS];     /* PREEMPT AND ABORT: nexus indexes to abort */
	unsigned nvictims = 0;
	switch (sa) {
	case 0: /* REGISTER */
	case 6: /* REGISTER AND IGNORE EXISTING KEY */
		if (me < 0) {
			if (sa == 0 && rkey != 0) {
				result = PR_CONFLICT;
				break;
			}
			if (sakey == 0)
				break;
			if (pr->nregs >= ROD_PR_MAX_REGS) {
				rod_sense(t, SENSE_ILLEGAL_REQUEST, ROD_ASC(0x55, 0x04)); /* INSUFFICIENT REGISTRATION RESOURCES */
				result = PR_SENSE;
				break;
			}
			struct rod_pr_reg *r = &pr->regs[pr->nregs++];
			memset(r, 0, sizeof(*r));
			r->key = sakey;
			r->rel_port = t->nexus->rel_port;
			r->all_tg_pt = all_tg_pt;
			snprintf(r->iport, sizeof(r->iport), "%s", t->nexus->initiator_port);
		} else {
			if (sa == 0 && rkey != pr->regs[me].key) {
				result = PR_CONFLICT;
				break;
			}
			if (sakey == 0)
				unregister(lu, (unsigned)me);
			else
				pr->regs[me].key = sakey;
		}
		pr->aptpl = aptpl;
		gen = changed = true;
		break;
	case 1: /* RESERVE */
		if (me < 0 || rkey != pr->regs[me].key) {
			result = PR_CONFLICT;
			break;
		}
		if (pr->type != ROD_PR_NONE) {
			if (!is_holder(lu, me) || pr->type != type)
				result = PR_CONFLICT;
			break;
		}
		pr->type = type;
		pr->holder = type_all_regs(type) ? -1 : me;
		changed = true;
		break;
	case 2: /* RELEASE */
		if (me < 0 || rkey != pr->regs[me].key) {
			result = PR_CONFLICT;
			break;
		}
		if (pr->type == ROD_PR_NONE || !is_holder(lu, me))
			break;
		if (pr->type != type) {
			rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
			result = PR_SENSE;
			break;
		}
		if (pr->type != ROD_PR_WE && pr->type != ROD_PR_EA)
			for (unsigned k = 0; k < pr->nregs; k++)
				if ((int)k != me)
					reg_ua(lu, &pr->regs[k], ROD_UA_RES_RELEASED);
		pr->type = ROD_PR_NONE;
		pr->holder = -1;
		changed = true;
		break;
	case 3: /* CLEAR */
		if (me < 0 || rkey != pr->regs[me].key) {
			result = PR_CONFLICT;
			break;
		}
		for (unsigned k = 0; k < pr->nregs; k++)
			if ((int)k != me)
				reg_ua(lu, &pr->regs[k], ROD_UA_RES_PREEMPTED);
		pr->nregs = 0;
		pr->type = ROD_PR_NONE;
		pr->holder = -1;
		gen = changed = true;
		break;
	case 4: /* PREEMPT */
	case 5: /* PREEMPT AND ABORT (the transport aborts the tasks; state is the same) */ {
		if (me < 0 || rkey != pr->regs[me].key) {
			result = PR_CONFLICT;
			break;
		}
		bool take = false; /* preempting the reservation itself */
		if (pr->type != ROD_PR_NONE && type_all_regs(pr->type) && sakey == 0)
			take = true;
		else if (pr->type != ROD_PR_NONE && !type_all_regs(pr->type) && pr->holder >= 0 &&
			 pr->regs[pr->holder].key == sakey)
			take = true;
		if (!take && sakey == 0) {
			rod_sense_invalid_field(t, false, 8, -1);
			result = PR_SENSE;
			break;
		}
		bool removed = false;
		for (unsigned k = 0; k < pr->nregs;) {
			struct rod_pr_reg *r = &pr->regs[k];
			bool victim = (int)k != me && (take && sakey == 0 ? true : r->key == sakey);
			if (victim) {
				reg_ua(lu, r, ROD_UA_REG_PREEMPTED);
				int vi = rod_nexus_index_find(lu->tgt, r->iport, r->rel_port);
				if (sa == 5 && vi >= 0 && vi != me_idx)
					victims[nvictims++] = vi;
				memmove(r, r + 1, (pr->nregs - k - 1) * sizeof(*r));
				pr->nregs--;
				if (me > (int)k)
					me--;
				if (pr->holder == (int)k)
					pr->holder = -1;
				else if (pr->holder > (int)k)
					pr->holder--;
				removed = true;
				continue;
			}
			k++;
		}
		if (!take && !removed) {
			result = PR_CONFLICT;
			break;
		}
		if (take) {
			pr->type = type;
			pr->holder = type_all_regs(type) ? -1 : me;
		}
		gen = changed = true;
		break;
	}
	case 7: /* REGISTER AND MOVE */ {
		if (me < 0 || rkey != pr->regs[me].key) {
			result = PR_CONFLICT;
			break;
		}
		if (pr->type == ROD_PR_NONE || type_all_regs(pr->type) || pr->holder != me) {
			result = PR_CONFLICT;
			break;
		}
		if (sakey == 0) {
			rod_sense_invalid_field(t, false, 8, -1);
			result = PR_SENSE;
			break;
		}
		uint16_t rel = rod_get_be16(p + 18);
		uint32_t tlen = rod_get_be32(p + 20);
		if (24ull + tlen > plen) {
			rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
			result = PR_SENSE;
			break;
		}
		struct rod_pr_reg dst;
		memset(&dst, 0, sizeof(dst));
		if (parse_transport_id(p + 24, tlen, dst.iport, sizeof(dst.iport)) < 0) {
			rod_sense_invalid_field(t, false, 24, -1);
			result = PR_SENSE;
			break;
		}
		dst.rel_port = rel ? rel : t->nexus->rel_port;
		dst.key = sakey;
		if (strcasecmp(dst.iport, pr->regs[me].iport) == 0 && dst.rel_port == pr->regs[me].rel_port) {
			rod_sense_invalid_field(t, false, 24, -1);
			result = PR_SENSE;
			break;
		}
		int d = -1;
		for (unsigned k = 0; k < pr->nregs; k++)
			if (strcasecmp(pr->regs[k].iport, dst.iport) == 0 &&
			    pr->regs[k].rel_port == dst.rel_port)
				d = (int)k;
		if (d < 0) {
			if (pr->nregs >= ROD_PR_MAX_REGS) {
				rod_sense(t, SENSE_ILLEGAL_REQUEST, ROD_ASC(0x55, 0x04));
				result = PR_SENSE;
				break;
			}
			pr->regs[pr->nregs] = dst;
			d = (int)pr->nregs++;
		} else {
			pr->regs[d].key = sakey;
		}
		pr->holder = d;
		if (p[17] & 0x02) { /* UNREG */
			unsigned mi = (unsigned)me;
			memmove(&pr->regs[mi], &pr->regs[mi + 1], (pr->nregs - mi - 1) * sizeof(pr->regs[0]));
			pr->nregs--;
			if (pr->holder > (int)mi)
				pr->holder--;
		}
		pr->aptpl = aptpl;
		gen = changed = true;
		break;
	}
	default:
		rod_sense_invalid_field(t, true, 1, 4);
		result = PR_SENSE;
		break;
	}
	if (result == PR_OK && gen)
		pr->generation++;
	if (result == PR_OK && changed)
		pr_save(lu);
unlock:
	pthread_mutex_unlock(&lu->lock);
	if (result == PR_CONFLICT)
		rod_task_status(t, SAM_STAT_RESERVATION_CONFLICT);
	if (result == PR_OK && nvictims) {
		/* SPC-4 5.12.11.2.6: PREEMPT AND ABORT aborts every task of the preempted
		 * I_T nexuses on this LU (TAS=0: no response; they see 2A/05), and the
		 * command completes once those tasks are gone. */
		struct rod_tmf_wait *w = malloc(sizeof(*w));
		if (w) {
			atomic_init(&w->count, 1);
			w->cb = pr_abort_done;
			w->arg = t;
		}
		for (unsigned i = 0; i < nvictims; i++)
			rod_lu_abort_tasks(lu, victims[i], -1, t, w, 0);
		if (w && atomic_fetch_sub(&w->count, 1) != 1)
			return;   /* pr_abort_done finishes t */
		free(w);
	}
done:
	rod_task_done(t);
}
