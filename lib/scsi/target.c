/* The SCSI target: LUN masking (host, lun) -> LU, I_T nexus registry, unit attentions,
 * task management side effects. */
#include "scsi_internal.h"
#include "stats.h"
#include "target.h"
#include "tpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rod/log.h"
#include "rod/util.h"

static void lu_free(struct rod_scsi_lu *lu)
{
	rod_tpc_lu_changed(lu->tgt, lu);
	if (lu->vol)
		rod_vol_close(lu->vol);
	free(lu->ua);
	free(lu->abort_gen);
	pthread_mutex_destroy(&lu->lock);
	pthread_mutex_destroy(&lu->caw_lock);
	free(lu);
}

void rod_lu_get(struct rod_scsi_lu *lu)
{
	atomic_fetch_add(&lu->refs, 1);
}

void rod_lu_put(struct rod_scsi_lu *lu)
{
	if (lu && atomic_fetch_sub(&lu->refs, 1) == 1)
		lu_free(lu);
}

int rod_scsi_target_new(const struct rod_scsi_target_opts *o, struct rod_scsi_target **out)
{
	if (!o || !o->store || !o->target_name)
		return -EINVAL;
	struct rod_scsi_target *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->store = o->store;
	snprintf(t->name, sizeof(t->name), "%s", o->target_name);
	snprintf(t->vendor, sizeof(t->vendor), "%-8.8s", o->vendor ? o->vendor : "RODSTORE");
	snprintf(t->product, sizeof(t->product), "%-16.16s", o->product ? o->product : "rodstore");
	snprintf(t->revision, sizeof(t->revision), "%-4.4s", o->revision ? o->revision : "0001");
	pthread_rwlock_init(&t->lock, NULL);
	pthread_mutex_init(&t->nexus_lock, NULL);
	pthread_mutex_init(&t->idle_lock, NULL);
	pthread_cond_init(&t->idle_cond, NULL);
	atomic_init(&t->tmf_gen, 1);
	pthread_mutex_init(&t->delay_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->delay_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&t->wq_lock, NULL);
	pthread_cond_init(&t->wq_cond, NULL);
	t->offload_min = 256u << 10;
	t->max_tokens = o->max_tokens;
	const char *off = getenv("ROD_SCSI_WRITE_OFFLOAD_MIN");   /* bytes; 0 = off */
	if (off && *off)
		t->offload_min = (uint32_t)strtoul(off, NULL, 10);
	/* 0: small writes keep the direct path even at depth (docs/iscsi.md "Threads":
	 * at QD32 the hand-off cost more CPU than the parallel preparation saved). */
	t->offload_busy = 0;
	const char *busy = getenv("ROD_SCSI_WRITE_OFFLOAD_BUSY");  /* commands; 0 = off */
	if (busy && *busy)
		t->offload_busy = (uint32_t)strtoul(busy, NULL, 10);
	const char *delay = getenv("ROD_SCSI_TEST_DELAY_MS");
	if (delay && *delay) {
		t->delay_ms = (uint32_t)strtoul(delay, NULL, 10);
		if (t->delay_ms)
			rod_warn("scsi: test hook ROD_SCSI_TEST_DELAY_MS=%u: WRITEs with GROUP "
				 "NUMBER 0x15 are held that long", t->delay_ms);
	}
	int rc = rod_scsi_stats_new(&t->stats);
	if (rc == 0 && (rc = rod_tpc_target_init(t, &t->tpc_state)) < 0)
		rod_scsi_stats_free(t->stats);
	if (rc < 0) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void rod_scsi_target_free(struct rod_scsi_target *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->idle_lock);
	while (atomic_load(&t->inflight) > 0)
		pthread_cond_wait(&t->idle_cond, &t->idle_lock);
	pthread_mutex_unlock(&t->idle_lock);
	if (t->wq_started) {
		pthread_mutex_lock(&t->wq_lock);
		t->wq_stop = true;
		pthread_cond_broadcast(&t->wq_cond);
		pthread_mutex_unlock(&t->wq_lock);
		for (unsigned i = 0; i < t->wq_nthreads; i++)
			pthread_join(t->wq_thread[i], NULL);
	}
	if (t->delay_started) {
		pthread_mutex_lock(&t->delay_lock);
		t->delay_stop = true;
		pthread_cond_broadcast(&t->delay_cond);
		pthread_mutex_unlock(&t->delay_lock);
		pthread_join(t->delay_thread, NULL);
	}
	rod_tpc_target_fini(t, t->tpc_state);
	for (size_t i = 0; i < t->nhosts; i++)
		free(t->hosts[i].maps);
	free(t->hosts);
	for (size_t i = 0; i < t->nlus; i++)
		rod_lu_put(t->lus[i]);
	free(t->lus);
	free(t->nexus);
	rod_scsi_stats_free(t->stats);       /* after tpc: background copies count there */
	pthread_rwlock_destroy(&t->lock);
	pthread_mutex_destroy(&t->nexus_lock);
	free(t);
}

struct rod_store *rod_scsi_target_store(struct rod_scsi_target *t) { return t->store; }
const char *rod_scsi_target_name(struct rod_scsi_target *t) { return t->name; }
void *rod_scsi_target_tpc_state(struct rod_scsi_target *t) { return t->tpc_state; }
uint32_t rod_scsi_target_max_tokens(struct rod_scsi_target *t) { return t->max_tokens; }

void rod_target_task_begin(struct rod_scsi_target *t)
{
	atomic_fetch_add(&t->inflight, 1);
}

void rod_target_task_end(struct rod_scsi_target *t)
{
	if (atomic_fetch_sub(&t->inflight, 1) == 1) {
		pthread_mutex_lock(&t->idle_lock);
		pthread_cond_broadcast(&t->idle_cond);
		pthread_mutex_unlock(&t->idle_lock);
	}
}

/* ---- unit attentions ---------------------------------------------------------- */

/* Caller holds lu->lock. */
static int lu_ua_grow(struct rod_scsi_lu *lu, uint32_t idx)
{
	if (idx < lu->ua_cap)
		return 0;
	uint32_t cap = lu->ua_cap ? lu->ua_cap : 8;
	while (cap <= idx)
		cap *= 2;
	uint32_t *n = realloc(lu->ua, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	memset(n + lu->ua_cap, 0, (cap - lu->ua_cap) * sizeof(*n));
	lu->ua = n;
	uint64_t *g = realloc(lu->abort_gen, cap * sizeof(*g));
	if (!g)
		return -ENOMEM;   /* ua keeps its new size; ua_cap stays (both valid) */
	memset(g + lu->ua_cap, 0, (cap - lu->ua_cap) * sizeof(*g));
	lu->abort_gen = g;
	lu->ua_cap = cap;
	return 0;
}

void rod_lu_ua_set(struct rod_scsi_lu *lu, uint32_t nexus_index, uint32_t bits)
{
	pthread_mutex_lock(&lu->lock);
	if (lu_ua_grow(lu, nexus_index) == 0)
		lu->ua[nexus_index] |= bits;
	pthread_mutex_unlock(&lu->lock);
}

/* Caller holds lu->lock. */
void rod_lu_ua_set_all_locked(struct rod_scsi_lu *lu, uint32_t bits, int except)
{
	for (uint32_t i = 0; i < lu->ua_cap; i++)
		if ((int)i != except)
			lu->ua[i] |= bits;
}

void rod_lu_ua_set_all(struct rod_scsi_lu *lu, uint32_t bits, int except_nexus_index)
{
	pthread_mutex_lock(&lu->lock);
	rod_lu_ua_set_all_locked(lu, bits, except_nexus_index);
	pthread_mutex_unlock(&lu->lock);
}

/* Take the highest-priority pending UA of (nexus, lu); 0 when none. */
uint32_t rod_lu_ua_take(struct rod_scsi_lu *lu, uint32_t nexus_index)
{
	uint32_t bit = 0;
	pthread_mutex_lock(&lu->lock);
	if (nexus_index < lu->ua_cap && lu->ua[nexus_index]) {
		uint32_t v = lu->ua[nexus_index];
		bit = v & -v;
		/* SAM-5 5.14: a power-on/reset condition supersedes the others. */
		lu->ua[nexus_index] = (bit & ROD_UA_RESETS) ? 0 : v & ~bit;
	}
	pthread_mutex_unlock(&lu->lock);
	return bit;
}

uint16_t rod_ua_asc(uint32_t bit)
{
	switch (bit) {
	case ROD_UA_POWER_ON: return ASC_POWER_ON_OCCURRED;
	case ROD_UA_BUS_RESET: return ASC_SCSI_BUS_RESET_OCCURRED;
	case ROD_UA_BDR: return ASC_BUS_DEVICE_RESET_FUNCTION_OCCURRED;
	case ROD_UA_CMDS_CLEARED: return ASC_COMMANDS_CLEARED_BY_ANOTHER_INITIATOR;
	case ROD_UA_RES_PREEMPTED: return ASC_RESERVATIONS_PREEMPTED;
	case ROD_UA_RES_RELEASED: return ASC_RESERVATIONS_RELEASED;
	case ROD_UA_REG_PREEMPTED: return ASC_REGISTRATIONS_PREEMPTED;
	case ROD_UA_MODE_CHANGED: return ASC_MODE_PARAMETERS_CHANGED;
	case ROD_UA_CAPACITY: return ASC_CAPACITY_DATA_HAS_CHANGED;
	case ROD_UA_LUNS_CHANGED: return ASC_REPORTED_LUNS_DATA_CHANGED;
	case ROD_UA_SOFT_THRESHOLD: return ASC_SOFT_THRESHOLD_REACHED;
	}
	return ASC_NO_ADDITIONAL_SENSE;
}

/* Raise bits on every LU for every nexus (soft threshold: array-wide). */
void rod_target_ua_all(struct rod_scsi_target *t, uint32_t bits)
{
	pthread_rwlock_rdlock(&t->lock);
	for (size_t i = 0; i < t->nlus; i++)
		rod_lu_ua_set_all(t->lus[i], bits, -1);
	pthread_rwlock_unlock(&t->lock);
}

/* ---- LUN maps --------------------------------------------------------------- */

/* Caller holds t->lock. */
static struct rod_host_lus *host_find(struct rod_scsi_target *t, uint64_t host_id)
{
	for (size_t i = 0; i < t->nhosts; i++)
		if (t->hosts[i].host_id == host_id)
			return &t->hosts[i];
	return NULL;
}

static struct rod_scsi_lu *lu_find_locked(struct rod_scsi_target *t, uint64_t vol_id)
{
	for (size_t i = 0; i < t->nlus; i++)
		if (t->lus[i]->vol_id == vol_id)
			return t->lus[i];
	return NULL;
}

static void lu_make_ids(struct rod_scsi_lu *lu)
{
	/* NAA 6 (IEEE Registered Extended): 4-bit NAA, 24-bit OUI, then 100 bits taken
	 * from the volume's random uuid: unique per volume and stable across restarts. */
	const uint8_t *u = lu->uuid;
	uint8_t *d = lu->naa;
	d[0] = 0x60 | (ROD_NAA_OUI >> 20 & 0x0f);
	d[1] = ROD_NAA_OUI >> 12 & 0xff;
	d[2] = ROD_NAA_OUI >> 4 & 0xff;
	d[3] = (uint8_t)((ROD_NAA_OUI & 0x0f) << 4) | (u[0] & 0x0f);
	memcpy(d + 4, u + 1, 12);
	rod_hex(u, 16, lu->serial);
}

static int lu_new(struct rod_scsi_target *t, uint64_t vol_id, struct rod_scsi_lu **out)
{
	struct rod_vol_info info;
	int rc = rod_vol_info_by_id(t->store, vol_id, &info);
	if (rc < 0)
		return rc;
	struct rod_scsi_lu *lu = calloc(1, sizeof(*lu));
	if (!lu)
		return -ENOMEM;
	rc = rod_vol_open_id(t->store, vol_id, &lu->vol);
	if (rc < 0) {
		free(lu);
		return rc;
	}
	lu->tgt = t;
	lu->vol_id = vol_id;
	memcpy(lu->uuid, info.uuid, 16);
	snprintf(lu->name, sizeof(lu->name), "%s", info.name);
	lu_make_ids(lu);
	atomic_init(&lu->refs, 1);
	pthread_mutex_init(&lu->lock, NULL);
	pthread_mutex_init(&lu->caw_lock, NULL);
	lu->pr.holder = -1;
	/* Every logged-in nexus sees this LU as freshly powered on. */
	pthread_mutex_lock(&t->nexus_lock);
	uint32_t cap = t->nexus_cap;
	pthread_mutex_unlock(&t->nexus_lock);
	if (cap && lu_ua_grow(lu, cap - 1) == 0)
		for (uint32_t i = 0; i < cap; i++)
			lu->ua[i] = ROD_UA_POWER_ON;
	rod_pr_load(lu);
	*out = lu;
	return 0;
}

/* The host's nexuses get REPORTED LUNS DATA HAS CHANGED on each of its LUs.
 * Caller holds t->lock. */
static void host_luns_changed(struct rod_scsi_target *t, struct rod_host_lus *h)
{
	uint32_t idx[64];
	size_t n = 0;
	pthread_mutex_lock(&t->nexus_lock);
	for (uint32_t i = 0; i < t->nexus_cap && n < ROD_ARRAY_SIZE(idx); i++)
		if (t->nexus[i] && t->nexus[i]->host_id == h->host_id)
			idx[n++] = i;
	pthread_mutex_unlock(&t->nexus_lock);
	for (size_t m = 0; m < h->n; m++)
		for (size_t k = 0; k < n; k++)
			rod_lu_ua_set(h->maps[m].lu, idx[k], ROD_UA_LUNS_CHANGED);
}

int rod_scsi_map_add(struct rod_scsi_target *t, uint64_t host_id, uint64_t lun, uint64_t vol_id)
{
	if (host_id == 0 || lun >= 16384)
		return -EINVAL;
	int rc = 0;
	pthread_rwlock_wrlock(&t->lock);
	struct rod_host_lus *h = host_find(t, host_id);
	if (h) {
		for (size_t i = 0; i < h->n; i++) {
			if (h->maps[i].lun == lun) {
				rc = h->maps[i].lu->vol_id == vol_id ? 0 : -EEXIST;
				goto out;
			}
		}
	} else {
		struct rod_host_lus *nh = realloc(t->hosts, (t->nhosts + 1) * sizeof(*nh));
		if (!nh) {
			rc = -ENOMEM;
			goto out;
		}
		t->hosts = nh;
		h = &t->hosts[t->nhosts++];
		memset(h, 0, sizeof(*h));
		h->host_id = host_id;
	}
	struct rod_scsi_lu *lu = lu_find_locked(t, vol_id);
	if (!lu) {
		struct rod_scsi_lu **nl = realloc(t->lus, (t->nlus + 1) * sizeof(*nl));
		if (!nl) {
			rc = -ENOMEM;
			goto out;
		}
		t->lus = nl;
		rc = lu_new(t, vol_id, &lu);
		if (rc < 0)
			goto out;
		t->lus[t->nlus++] = lu;
	}
	struct rod_host_map *nm = realloc(h->maps, (h->n + 1) * sizeof(*nm));
	if (!nm) {
		rc = -ENOMEM;
		goto out;
	}
	h->maps = nm;
	/* keep maps sorted by LUN for REPORT LUNS */
	size_t pos = h->n;
	while (pos > 0 && h->maps[pos - 1].lun > lun) {
		h->maps[pos] = h->maps[pos - 1];
		pos--;
	}
	h->maps[pos].lun = lun;
	h->maps[pos].lu = lu;
	h->n++;
	host_luns_changed(t, h);
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

/* Drop lu from t->lus if no host maps it any more. Caller holds t->lock (write). */
static void lu_release_if_unmapped(struct rod_scsi_target *t, struct rod_scsi_lu *lu)
{
	for (size_t i = 0; i < t->nhosts; i++)
		for (size_t m = 0; m < t->hosts[i].n; m++)
			if (t->hosts[i].maps[m].lu == lu)
				return;
	for (size_t i = 0; i < t->nlus; i++) {
		if (t->lus[i] == lu) {
			t->lus[i] = t->lus[--t->nlus];
			rod_lu_put(lu);
			return;
		}
	}
}

int rod_scsi_map_remove(struct rod_scsi_target *t, uint64_t host_id, uint64_t lun)
{
	int rc = -ENOENT;
	pthread_rwlock_wrlock(&t->lock);
	struct rod_host_lus *h = host_find(t, host_id);
	for (size_t i = 0; h && i < h->n; i++) {
		if (h->maps[i].lun != lun)
			continue;
		struct rod_scsi_lu *lu = h->maps[i].lu;
		memmove(&h->maps[i], &h->maps[i + 1], (h->n - i - 1) * sizeof(h->maps[0]));
		h->n--;
		host_luns_changed(t, h);
		lu_release_if_unmapped(t, lu);
		rc = 0;
		break;
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

void rod_scsi_vol_removed(struct rod_scsi_target *t, uint64_t vol_id)
{
	pthread_rwlock_wrlock(&t->lock);
	struct rod_scsi_lu *lu = lu_find_locked(t, vol_id);
	if (lu) {
		atomic_store(&lu->removed, true);
		for (size_t i = 0; i < t->nhosts; i++) {
			struct rod_host_lus *h = &t->hosts[i];
			bool changed = false;
			for (size_t m = 0; m < h->n;) {
				if (h->maps[m].lu == lu) {
					memmove(&h->maps[m], &h->maps[m + 1],
						(h->n - m - 1) * sizeof(h->maps[0]));
					h->n--;
					changed = true;
				} else {
					m++;
				}
			}
			if (changed)
				host_luns_changed(t, h);
		}
		rod_tpc_lu_changed(t, lu);
		lu_release_if_unmapped(t, lu);
	}
	pthread_rwlock_unlock(&t->lock);
}

static void vol_ua(struct rod_scsi_target *t, uint64_t vol_id, uint32_t bits)
{
	pthread_rwlock_rdlock(&t->lock);
	struct rod_scsi_lu *lu = lu_find_locked(t, vol_id);
	if (lu) {
		rod_lu_ua_set_all(lu, bits, -1);
		if (bits & ROD_UA_CAPACITY)
			rod_tpc_lu_changed(t, lu);
	}
	pthread_rwlock_unlock(&t->lock);
}

void rod_scsi_vol_resized(struct rod_scsi_target *t, uint64_t vol_id)
{
	vol_ua(t, vol_id, ROD_UA_CAPACITY);
}

void rod_scsi_vol_params_changed(struct rod_scsi_target *t, uint64_t vol_id)
{
	vol_ua(t, vol_id, ROD_UA_MODE_CHANGED);
}

struct rod_scsi_lu *rod_lu_lookup(struct rod_scsi_target *t, uint64_t host_id, uint64_t lun)
{
	struct rod_scsi_lu *lu = NULL;
	pthread_rwlock_rdlock(&t->lock);
	struct rod_host_lus *h = host_find(t, host_id);
	if (h) {
		size_t lo = 0, hi = h->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (h->maps[mid].lun < lun)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < h->n && h->maps[lo].lun == lun) {
			lu = h->maps[lo].lu;
			rod_lu_get(lu);
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return lu;
}

size_t rod_target_host_luns(struct rod_scsi_target *t, uint64_t host_id, uint64_t *luns,
			    size_t max)
{
	size_t n = 0;
	pthread_rwlock_rdlock(&t->lock);
	struct rod_host_lus *h = host_find(t, host_id);
	if (h) {
		for (size_t i = 0; i < h->n; i++) {
			if (n < max)
				luns[n] = h->maps[i].lun;
			n++;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return n;
}

size_t rod_lu_t10_designator(struct rod_scsi_lu *lu, uint8_t *out)
{
	/* T10 vendor id designator: 8-byte vendor id, then the volume serial. */
	memcpy(out, lu->tgt->vendor, 8);
	memcpy(out + 8, lu->serial, 32);
	return 40;
}

struct rod_scsi_lu *rod_lu_find_designator(struct rod_scsi_target *t, uint64_t host_id,
					   const uint8_t *desc, size_t len)
{
	if (len < 4 || (size_t)desc[3] + 4 > len)
		return NULL;
	uint8_t type = desc[1] & 0x0f, assoc = desc[1] >> 4 & 0x03, dlen = desc[3];
	const uint8_t *d = desc + 4;
	if (assoc != 0)
		return NULL;
	struct rod_scsi_lu *found = NULL;
	pthread_rwlock_rdlock(&t->lock);
	struct rod_host_lus *h = host_find(t, host_id);
	for (size_t i = 0; h && i < h->n && !found; i++) {
		struct rod_scsi_lu *lu = h->maps[i].lu;
		uint8_t t10[40];
		if (type == 3 && dlen == 16 && memcmp(d, lu->naa, 16) == 0)
			found = lu;
		else if (type == 1 && dlen == rod_lu_t10_designator(lu, t10) &&
			 memcmp(d, t10, dlen) == 0)
			found = lu;
	}
	if (found)
		rod_lu_get(found);
	pthread_rwlock_unlock(&t->lock);
	return found;
}

struct rod_scsi_lu *rod_lu_find_vol(struct rod_scsi_target *t, uint64_t vol_id)
{
	pthread_rwlock_rdlock(&t->lock);
	struct rod_scsi_lu *lu = lu_find_locked(t, vol_id);
	if (lu)
		rod_lu_get(lu);
	pthread_rwlock_unlock(&t->lock);
	return lu;
}

/* ---- I_T nexus --------------------------------------------------------------- */

int rod_scsi_nexus_register(struct rod_scsi_target *t, struct rod_scsi_nexus *n)
{
	pthread_mutex_lock(&t->nexus_lock);
	uint32_t idx = 0;
	while (idx < t->nexus_cap && t->nexus[idx])
		idx++;
	if (idx == t->nexus_cap) {
		uint32_t cap = t->nexus_cap ? t->nexus_cap * 2 : 16;
		struct rod_scsi_nexus **nn = realloc(t->nexus, cap * sizeof(*nn));
		if (!nn) {
			pthread_mutex_unlock(&t->nexus_lock);
			return -ENOMEM;
		}
		memset(nn + t->nexus_cap, 0, (cap - t->nexus_cap) * sizeof(*nn));
		t->nexus = nn;
		t->nexus_cap = cap;
	}
	t->nexus[idx] = n;
	n->index = idx;
	pthread_mutex_unlock(&t->nexus_lock);

	pthread_rwlock_rdlock(&t->lock);
	for (size_t i = 0; i < t->nlus; i++) {
		struct rod_scsi_lu *lu = t->lus[i];
		pthread_mutex_lock(&lu->lock);
		if (lu_ua_grow(lu, idx) == 0)
			lu->ua[idx] = ROD_UA_POWER_ON;
		pthread_mutex_unlock(&lu->lock);
	}
	pthread_rwlock_unlock(&t->lock);
	return 0;
}

void rod_scsi_nexus_unregister(struct rod_scsi_target *t, struct rod_scsi_nexus *n)
{
	rod_tpc_nexus_gone(t, n);
	pthread_rwlock_rdlock(&t->lock);
	for (size_t i = 0; i < t->nlus; i++) {
		struct rod_scsi_lu *lu = t->lus[i];
		rod_pr_nexus_lost(lu, n->index);
		pthread_mutex_lock(&lu->lock);
		if (n->index < lu->ua_cap)
			lu->ua[n->index] = 0;
		pthread_mutex_unlock(&lu->lock);
	}
	pthread_rwlock_unlock(&t->lock);
	pthread_mutex_lock(&t->nexus_lock);
	if (n->index < t->nexus_cap && t->nexus[n->index] == n)
		t->nexus[n->index] = NULL;
	pthread_mutex_unlock(&t->nexus_lock);
}

int rod_nexus_index_find(struct rod_scsi_target *t, const char *iport, uint16_t rel_port)
{
	int found = -1;
	pthread_mutex_lock(&t->nexus_lock);
	for (uint32_t i = 0; i < t->nexus_cap; i++) {
		struct rod_scsi_nexus *n = t->nexus[i];
		if (n && n->rel_port == rel_port && strcasecmp(n->initiator_port, iport) == 0) {
			found = (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&t->nexus_lock);
	return found;
}

/* ---- task management ------------------------------------------------------------ */

/* Caller holds lu->lock. Does a task of nexus idx count for (only, except)? */
/* After marking tasks aborted (lu->lock released): ends the cancelled dormant ones
 * and, when one of them was held by the delay thread, wakes it to notice. */
static void abort_finish(struct rod_scsi_target *tgt, struct rod_scsi_task *cancel,
			 struct rod_scsi_task *run, bool wake_delay)
{
	rod_ta_dispatch(cancel, run);
	if (wake_delay) {
		pthread_mutex_lock(&tgt->delay_lock);
		pthread_cond_broadcast(&tgt->delay_cond);
		pthread_mutex_unlock(&tgt->delay_lock);
	}
}

static bool abort_matches(uint32_t idx, int only, int except)
{
	return only >= 0 ? idx == (uint32_t)only : (int)idx != except;
}

unsigned rod_lu_abort_tasks(struct rod_scsi_lu *lu, int only, int except,
			    struct rod_scsi_task *except_task, struct rod_tmf_wait *w,
			    uint32_t ua)
{
	struct rod_scsi_target *tgt = lu->tgt;
	/* Commands of those nexuses received up to now but not yet at exec (waiting for
	 * their Data-Out) are aborted when they get there. */
	uint64_t gen = atomic_fetch_add(&tgt->tmf_gen, 1);
	unsigned n = 0;
	bool wake_delay = false;
	struct rod_scsi_task *cancel = NULL, *run = NULL;
	pthread_mutex_lock(&lu->lock);
	for (uint32_t i = 0; i < lu->ua_cap; i++)
		if (abort_matches(i, only, except))
			lu->abort_gen[i] = gen;
	for (struct rod_scsi_task *t = lu->tasks; t; t = t->lu_next) {
		if (t == except_task || t->aborted || !t->nexus ||
		    !abort_matches(t->nexus->index, only, except))
			continue;
		t->aborted = true;
		if (w && !t->wait) {
			t->wait = w;
			atomic_fetch_add(&w->count, 1);
		}
		if (ua && t->nexus->index < lu->ua_cap)
			lu->ua[t->nexus->index] |= ua;
		if (t->delay_resume)
			wake_delay = true;
		n++;
	}
	if (n && lu->ta_head)
		rod_ta_cancel_aborted_locked(lu, &cancel, &run);   /* dormant: never run */
	pthread_mutex_unlock(&lu->lock);
	abort_finish(tgt, cancel, run, wake_delay);
	return n;
}

/* SAM-5 6.6: a logical unit reset aborts every task of every I_T nexus on the LU
 * (the transport also aborts the requester's: it must not answer them), clears
 * SPC-2 reservations and reports ua (29/03 for an LU reset, 29/02 / 29/00 for target
 * warm / cold reset) to every I_T nexus, the one that asked included (libiscsi
 * MultipathIO.Reset checks every path). */
static void lu_reset(struct rod_scsi_lu *lu, struct rod_tmf_wait *w, uint32_t ua)
{
	rod_lu_abort_tasks(lu, -1, -1, NULL, w, 0);
	rod_pr_lu_reset(lu);
	rod_lu_ua_set_all(lu, ua, -1);
}

/* The task management functions of one logical unit: 0, or -ENOENT when the nexus
 * sees no LU at lun. */
static int lu_tmf(struct rod_scsi_target *t, struct rod_scsi_nexus *n, enum rod_scsi_tmf fn,
		  uint64_t lun, int requester, struct rod_tmf_wait *w)
{
	struct rod_scsi_lu *lu = rod_lu_lookup(t, n->host_id, lun);
	if (!lu)
		return -ENOENT;
	switch (fn) {
	case ROD_TMF_ABORT_TASK_SET:
		/* SAM-5 7.3: every task received on the requesting I_T nexus, no other. The
		 * transport suppresses their responses; marking them here stops held or
		 * multi-step ones early. */
		if (requester >= 0)
			rod_lu_abort_tasks(lu, requester, -1, NULL, w, 0);
		break;
	case ROD_TMF_CLEAR_TASK_SET:
		/* SAM-5 7.4 with TST=000 (one task set per LU): every nexus's tasks; with
		 * TAS=0 the others are told by 2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR. */
		rod_lu_abort_tasks(lu, -1, requester, NULL, w, ROD_UA_CMDS_CLEARED);
		if (requester >= 0)
			rod_lu_abort_tasks(lu, requester, -1, NULL, w, 0);
		break;
	default: /* ROD_TMF_LOGICAL_UNIT_RESET */
		lu_reset(lu, w, ROD_UA_BDR);
		break;
	}
	rod_lu_put(lu);
	return 0;
}

int rod_scsi_tmf_async(struct rod_scsi_target *t, struct rod_scsi_nexus *n,
		       enum rod_scsi_tmf fn, uint64_t lun, void (*done)(void *arg), void *arg)
{
	struct rod_tmf_wait *w = NULL;
	if (done) {
		w = malloc(sizeof(*w));
		if (!w)
			return -ENOMEM;
		atomic_init(&w->count, 1);   /* held while sweeping */
		w->cb = done;
		w->arg = arg;
	}
	int requester = n ? (int)n->index : -1;
	int rc = -EOPNOTSUPP;
	switch (fn) {
	case ROD_TMF_ABORT_TASK:
		/* one task of the requester: the transport's */
		rc = 0;
		break;
	case ROD_TMF_ABORT_TASK_SET:
	case ROD_TMF_CLEAR_TASK_SET:
	case ROD_TMF_LOGICAL_UNIT_RESET:
		rc = lu_tmf(t, n, fn, lun, requester, w);
		break;
	case ROD_TMF_TARGET_WARM_RESET:
	case ROD_TMF_TARGET_COLD_RESET:
		pthread_rwlock_rdlock(&t->lock);
		for (size_t i = 0; i < t->nlus; i++)
			lu_reset(t->lus[i], w,
				 fn == ROD_TMF_TARGET_WARM_RESET ? ROD_UA_BUS_RESET
								 : ROD_UA_POWER_ON);
		pthread_rwlock_unlock(&t->lock);
		rc = 0;
		break;
	case ROD_TMF_CLEAR_ACA:
	case ROD_TMF_TASK_REASSIGN:
	case ROD_TMF_QUERY_TASK:
		break;
	}
	if (!w)
		return rc;
	if (atomic_fetch_sub(&w->count, 1) == 1) {
		free(w);
		return rc;
	}
	return 1;   /* rc was 0: only successful functions mark tasks */
}

int rod_scsi_tmf(struct rod_scsi_target *t, struct rod_scsi_nexus *n, enum rod_scsi_tmf fn,
		 uint64_t lun)
{
	return rod_scsi_tmf_async(t, n, fn, lun, NULL, NULL);
}

void rod_scsi_cmd_abort(struct rod_scsi_target *tgt, struct rod_scsi_cmd *cmd)
{
	if (!cmd->nexus || !cmd->nexus->host_id)
		return;
	struct rod_scsi_lu *lu = rod_lu_lookup(tgt, cmd->nexus->host_id, cmd->lun);
	if (!lu)
		return;
	struct rod_scsi_task *cancel = NULL, *run = NULL;
	bool wake_delay = false;
	pthread_mutex_lock(&lu->lock);
	for (struct rod_scsi_task *t = lu->tasks; t; t = t->lu_next) {
		if (t->cmd != cmd || t->aborted)
			continue;
		t->aborted = true;
		wake_delay = t->delay_resume != NULL;
		if (t->ta_state == ROD_TA_DORMANT)
			rod_ta_cancel_aborted_locked(lu, &cancel, &run);
		break;
	}
	pthread_mutex_unlock(&lu->lock);
	abort_finish(tgt, cancel, run, wake_delay);
	rod_lu_put(lu);
}

void rod_scsi_cmd_received(struct rod_scsi_target *t, struct rod_scsi_cmd *cmd)
{
	cmd->arrival = atomic_load_explicit(&t->tmf_gen, memory_order_acquire);
}

/* ---- write worker ------------------------------------------------------------------ */

static void *wq_main(void *arg)
{
	struct rod_scsi_target *t = arg;
	pthread_setname_np(pthread_self(), "rod-scsi-wr");
	pthread_mutex_lock(&t->wq_lock);
	for (;;) {
		struct rod_scsi_task *k = t->wq_head;
		if (!k) {
			if (t->wq_stop)
				break;
			pthread_cond_wait(&t->wq_cond, &t->wq_lock);
			continue;
		}
		t->wq_head = k->wq_next;
		if (!t->wq_head)
			t->wq_tail = NULL;
		pthread_mutex_unlock(&t->wq_lock);
		k->wq_resume(k);
		pthread_mutex_lock(&t->wq_lock);
	}
	pthread_mutex_unlock(&t->wq_lock);
	return NULL;
}

bool rod_task_offload(struct rod_scsi_task *t, uint64_t len,
		      void (*resume)(struct rod_scsi_task *t))
{
	struct rod_scsi_target *tgt = t->tgt;
	if (!tgt->offload_min)
		return false;
	/* Small writes too when the target is busy, if ROD_SCSI_WRITE_OFFLOAD_BUSY asks:
	 * several sessions' or one deep queue's writes then prepare on every core; alone
	 * (QD1) they keep the direct path, which saves the hand-off (a thread wake-up). */
	if (len < tgt->offload_min &&
	    (!tgt->offload_busy ||
	     (uint32_t)atomic_load_explicit(&tgt->inflight, memory_order_relaxed) <
		     tgt->offload_busy))
		return false;
	t->wq_next = NULL;
	t->wq_resume = resume;
	pthread_mutex_lock(&tgt->wq_lock);
	if (!tgt->wq_started) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		unsigned want = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (unsigned)ncpu;
		while (tgt->wq_nthreads < want &&
		       pthread_create(&tgt->wq_thread[tgt->wq_nthreads], NULL, wq_main, tgt) == 0)
			tgt->wq_nthreads++;
		if (!tgt->wq_nthreads) {
			pthread_mutex_unlock(&tgt->wq_lock);
			return false;
		}
		tgt->wq_started = true;
	}
	if (tgt->wq_tail)
		tgt->wq_tail->wq_next = t;
	else
		tgt->wq_head = t;
	tgt->wq_tail = t;
	pthread_cond_signal(&tgt->wq_cond);
	pthread_mutex_unlock(&tgt->wq_lock);
	return true;
}

/* The task set's dormant commands start here (and aborted dormant ones finish): on
 * a write worker, or inline when the workers are off (ROD_SCSI_WRITE_OFFLOAD_MIN=0). */
void rod_task_defer(struct rod_scsi_task *t, void (*resume)(struct rod_scsi_task *t))
{
	if (!rod_task_offload(t, UINT64_MAX, resume))
		resume(t);
}

/* ---- test hook: hold some WRITEs (ROD_SCSI_TEST_DELAY_MS) ------------------------- */

static void *delay_main(void *arg)
{
	struct rod_scsi_target *t = arg;
	pthread_setname_np(pthread_self(), "rod-scsi-delay");
	pthread_mutex_lock(&t->delay_lock);
	for (;;) {
		uint64_t now = rod_now_ns(), next = UINT64_MAX;
		struct rod_scsi_task *ready = NULL, **pp = &t->delayq;
		while (*pp) {
			struct rod_scsi_task *k = *pp;
			bool aborted;
			pthread_mutex_lock(&k->lu->lock);
			aborted = k->aborted;
			pthread_mutex_unlock(&k->lu->lock);
			if (aborted || k->delay_due_ns <= now || t->delay_stop) {
				*pp = k->delay_next;
				k->delay_next = ready;
				ready = k;
			} else {
				next = ROD_MIN(next, k->delay_due_ns);
				pp = &k->delay_next;
			}
		}
		if (ready) {
			pthread_mutex_unlock(&t->delay_lock);
			while (ready) {
				struct rod_scsi_task *k = ready;
				ready = k->delay_next;
				pthread_mutex_lock(&k->lu->lock);
				void (*resume)(struct rod_scsi_task *) = k->delay_resume;
				k->delay_resume = NULL;
				bool aborted = k->aborted;
				pthread_mutex_unlock(&k->lu->lock);
				if (aborted)
					rod_task_done(k);   /* never started: nothing written */
				else
					resume(k);
			}
			pthread_mutex_lock(&t->delay_lock);
			continue;
		}
		if (t->delay_stop && !t->delayq)
			break;
		if (next == UINT64_MAX) {
			pthread_cond_wait(&t->delay_cond, &t->delay_lock);
		} else {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t wait = next - now;
			ts.tv_sec += (time_t)(wait / 1000000000ull);
			ts.tv_nsec += (long)(wait % 1000000000ull);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&t->delay_cond, &t->delay_lock, &ts);
		}
	}
	pthread_mutex_unlock(&t->delay_lock);
	return NULL;
}

bool rod_task_test_delay(struct rod_scsi_task *t, void (*resume)(struct rod_scsi_task *t))
{
	struct rod_scsi_target *tgt = t->tgt;
	if (!tgt->delay_ms || !t->lu)
		return false;
	const uint8_t *cdb = t->cmd->cdb;
	uint8_t group;
	switch (cdb[0]) {
	case 0x2a: group = cdb[6]; break;   /* WRITE(10) */
	case 0x8a: group = cdb[14]; break;  /* WRITE(16) */
	default: return false;
	}
	if ((group & 0x3f) != 0x15)
		return false;
	pthread_mutex_lock(&tgt->delay_lock);
	if (!tgt->delay_started) {
		if (pthread_create(&tgt->delay_thread, NULL, delay_main, tgt) != 0) {
			pthread_mutex_unlock(&tgt->delay_lock);
			return false;
		}
		tgt->delay_started = true;
	}
	pthread_mutex_lock(&t->lu->lock);
	t->delay_resume = resume;     /* under lu->lock: rod_lu_abort_tasks reads it */
	pthread_mutex_unlock(&t->lu->lock);
	t->delay_due_ns = rod_now_ns() + (uint64_t)tgt->delay_ms * 1000000ull;
	t->delay_next = tgt->delayq;
	tgt->delayq = t;
	pthread_cond_broadcast(&tgt->delay_cond);
	pthread_mutex_unlock(&tgt->delay_lock);
	return true;
}

/* ---- LUN encoding (SAM-5 4.7) ------------------------------------------------------ */

uint64_t rod_scsi_lun_decode(const uint8_t lun[8])
{
	switch (lun[0] >> 6) {
	case 0: /* peripheral device addressing, bus 0 only */
		if (lun[0] != 0)
			return ROD_LUN_INVALID;
		return lun[1];
	case 1: /* flat space */
		return (uint64_t)(lun[0] & 0x3f) << 8 | lun[1];
	default: /* extended/logical unit addressing: keep the raw value (well-known LUs) */
		return rod_get_be64(lun);
	}
}

void rod_scsi_lun_encode(uint64_t lun, uint8_t out[8])
{
	memset(out, 0, 8);
	if (lun < 256) {
		out[1] = (uint8_t)lun;
	} else if (lun < 16384) {
		out[0] = 0x40 | (uint8_t)(lun >> 8);
		out[1] = (uint8_t)lun;
	} else {
		rod_put_be64(out, lun);
	}
}

void rod_lu_ua_clear(struct rod_scsi_lu *lu, uint32_t nexus_index, uint32_t bits)
{
	pthread_mutex_lock(&lu->lock);
	if (nexus_index < lu->ua_cap)
		lu->ua[nexus_index] &= ~bits;
	pthread_mutex_unlock(&lu->lock);
}

/* REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED for the nexus (SPC-4 6.33). */
void rod_target_luns_reported(struct rod_scsi_target *t, struct rod_scsi_nexus *n)
{
	pthread_rwlock_rdlock(&t->lock);
	struct rod_host_lus *h = host_find(t, n->host_id);
	for (size_t i = 0; h && i < h->n; i++)
		rod_lu_ua_clear(h->maps[i].lu, n->index, ROD_UA_LUNS_CHANGED);
	pthread_rwlock_unlock(&t->lock);
}
