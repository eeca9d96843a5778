/* The object model of the control plane: hosts (initiator IQNs/globs + CHAP), the
 * connections that put a volume at a LUN of a host, and the JSON-RPC methods that
 * manage them and the engine's volumes.
 *
 * Persistence (rod_store_meta_*), all values JSON:
 *   ctl/next_host_id                     {"next": N}       host ids are never reused
 *   ctl/host/<name>                      host record (with secrets)
 *   ctl/conn/<host_id %016x>/<vol_id %016x>  {"host_id", "vol_id", "lun"}
 * A change is written to the store first and applied in memory (and to the SCSI
 * target through the hooks) only when the write succeeded. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rod/ctl.h"
#include "rod/ctl_http.h"
#include "rod/log.h"
#include "rod/util.h"
#include "ctl_err.h"
#include "events.h"
#include "jobs.h"

#include "pg.h"
#include "repl.h"

#define KEY_NEXT_HOST "ctl/next_host_id"
#define PFX_HOST "ctl/host/"
#define PFX_CONN "ctl/conn/"
#define PFX_JOB "ctl/job/"            /* finished jobs, by id (%016x) */
#define KEY_SETTINGS "ctl/settings"     /* {"recovery_window_s": N} */

/* Destroyed volumes and snapshots stay recoverable this long unless told otherwise. */
#define DEFAULT_RECOVERY_WINDOW_S (24 * 3600)
#define RECOVERY_WINDOW_MAX_S (30 * 24 * 3600)
/* How often the reaper looks for destroyed items whose window has passed. */
#define REAP_PERIOD_S 2
/* /metrics space figures are recomputed at most this often unless rod.conf says. */
#define DEFAULT_METRICS_INTERVAL_S 10
/* Background GC jobs (rod.conf gc_threshold) start at most this often. */
#define GC_AUTO_MIN_S 30
/* How often it looks for volumes whose clone/copy chains need flattening. */
#define FLATTEN_CHECK_S 10
/* Finished jobs kept for rodctl job list/show. */
#define JOBS_KEPT 64
/* Audit events kept in the store (the oldest are dropped beyond). */
#define EVENTS_KEPT 10000

struct ctl_conn {
	uint64_t vol_id;
	uint64_t lun;
};

struct ctl_host {
	char name[ROD_NAME_MAX];
	uint64_t id;
	char iqns[ROD_HOST_IQNS_MAX][ROD_IQN_MAX];
	size_t n_iqns;
	char chap_user[256], chap_secret[256];
	char mutual_user[256], mutual_secret[256];
	uint64_t created_ns;
	struct ctl_conn *conns;
	size_t n_conns;
};

struct rod_ctl {
	struct rod_store *store;
	char target_iqn[ROD_IQN_MAX];
	char **portals;
	size_t n_portals;
	char *key_file;                 /* op_lock (read and replaced only by methods) */
	char *data_dir;
	struct rod_ctl_hooks hooks;
	/* op_lock serialises control operations (RPC calls): only its holder changes
	 * the model, so a handler may read the model without the rwlock. */
	pthread_mutex_t op_lock;
	/* lock guards hosts/n_hosts and every host's fields against the iSCSI login
	 * threads (rod_ctl_auth_lookup reads under it); writers hold op_lock too. */
	pthread_rwlock_t lock;
	struct ctl_host **hosts;
	size_t n_hosts;
	uint64_t next_host_id;          /* op_lock */
	uint64_t recovery_window_s;     /* op_lock */
	/* The reaper thread ("rod-ctl-reap") eradicates destroyed items whose recovery
	 * window has passed; reap_lock guards reap_stop and goes with reap_cv. */
	pthread_t reaper;
	bool reaper_started;
	pthread_mutex_t reap_lock;
	pthread_cond_t reap_cv;
	bool reap_stop;
	struct rod_jobs *jobs;          /* own lock */
	/* rod.conf limits (rod_ctl_set_limits), op_lock */
	uint64_t gc_rate;               /* default rate of GC jobs (bytes read/s, 0: any) */
	uint64_t max_volumes;           /* volumes + snapshots, 0: unlimited */
	uint64_t gc_threshold_pct;      /* used % starting a background GC job, 0: off */
	uint64_t gc_auto_last_ns;       /* when the last background GC job was started */
	bool recovery_window_stored;    /* rodctl array set chose it: rod.conf's is the default only */
	atomic_bool http_no_token;      /* http_require_token = no: loopback clients need no token */
	_Atomic uint64_t metrics_interval_s;  /* /metrics space figures: recomputed at most this often */
	/* The running GC pass of a job, for /metrics: written by the job, read by scrapes. */
	_Atomic uint64_t gc_done, gc_total, gc_read, gc_moved;
	atomic_bool gc_running;
	struct rod_events *events;      /* own lock */
	struct rod_pg *pg;              /* protection groups (pg.c), with their own lock */
	struct rod_repl *repl;          /* replication (repl.c), with its own lock */
};

/* ---- small helpers ---------------------------------------------------------------- */

int ctl_fail(char **msg, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(msg, fmt, ap) < 0)
		*msg = NULL;
	va_end(ap);
	return code;
}

/* Store errors to RPC codes, with a message naming the object. */
static int store_fail(char **msg, int err, const char *what)
{
	switch (err) {
	case -ENOENT:
		return ctl_fail(msg, ROD_CTL_ENOENT, "%s not found", what);
	case -EEXIST:
		return ctl_fail(msg, ROD_CTL_EEXIST, "%s already exists", what);
	case -EBUSY:
		return ctl_fail(msg, ROD_CTL_EEXIST, "%s is in use", what);
	case -EINVAL:
	case -ERANGE:
		return ctl_fail(msg, ROD_CTL_EINVAL, "%s: invalid argument (%s)", what, strerror(-err));
	case -ENOSPC:
		return ctl_fail(msg, ROD_CTL_EOTHER, "%s: the array is out of space (free space with rodctl vol destroy)", what);
	default:
		return ctl_fail(msg, ROD_CTL_EOTHER, "%s: %s", what, strerror(-err));
	}
}

static void iso_time(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *json_time(uint64_t ns)
{
	char buf[32];
	iso_time(ns, buf, sizeof(buf));
	return json_string(buf);
}

/* Parameter accessors: each returns 0 or a filled error. */
static int param_str(json_t *params, const char *key, bool required, const char **out, char **msg)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return ctl_fail(msg, ROD_CTL_EINVAL, "missing parameter \"%s\"", key);
		return 0;
	}
	if (!json_is_string(v))
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"%s\" must be a string", key);
	*out = json_string_value(v);
	return 0;
}

/* A size as a number of bytes or a string with a K/M/G/T suffix. */
static int param_size(json_t *params, const char *key, bool required, bool *present, uint64_t *out,
		      char **msg)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	*present = false;
	if (!v || json_is_null(v)) {
		if (required)
			return ctl_fail(msg, ROD_CTL_EINVAL, "missing parameter \"%s\"", key);
		return 0;
	}
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"%s\" must not be negative", key);
		*out = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		if (rod_parse_size(json_string_value(v), out))
			return ctl_fail(msg, ROD_CTL_EINVAL,
				    "%s \"%s\" is not a size (use a number with an optional K, M, G or T suffix, e.g. 10G)",
				    key, json_string_value(v));
	} else {
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"%s\" must be a number or a size string", key);
	}
	*present = true;
	return 0;
}

static int param_bool(json_t *params, const char *key, bool *out, char **msg)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	*out = false;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static struct ctl_host *host_find(struct rod_ctl *c, const char *name)
{
	for (size_t i = 0; i < c->n_hosts; i++)
		if (!strcmp(c->hosts[i]->name, name))
			return c->hosts[i];
	return NULL;
}

static struct ctl_host *host_find_id(struct rod_ctl *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_hosts; i++)
		if (c->hosts[i]->id == id)
			return c->hosts[i];
	return NULL;
}

static void host_free(struct ctl_host *h)
{
	if (!h)
		return;
	free(h->conns);
	/* secrets do not outlive the object in freed heap memory */
	memset(h, 0, sizeof(*h));
	free(h);
}

static int need_host(struct rod_ctl *c, const char *name, struct ctl_host **out, char **msg)
{
	*out = host_find(c, name);
	if (!*out)
		return ctl_fail(msg, ROD_CTL_ENOENT, "host \"%s\" not found (rodctl host list shows hosts)", name);
	return 0;
}

static int need_vol(struct rod_ctl *c, const char *name, struct rod_vol_info *vi, char **msg)
{
	int rc = rod_vol_info_get(c->store, name, vi);
	if (rc == -ENOENT || (rc == 0 && vi->destroyed))
		return ctl_fail(msg, ROD_CTL_ENOENT, "volume \"%s\" not found (rodctl vol list shows volumes)", name);
	if (rc) {
		char what[160];
		snprintf(what, sizeof(what), "volume \"%s\"", name);
		return store_fail(msg, rc, what);
	}
	return 0;
}

/* ---- persistence ----------------------------------------------------------------- */

static int put_json(struct rod_ctl *c, const char *key, json_t *j)
{
	char *txt = json_dumps(j, JSON_COMPACT);
	if (!txt)
		return -ENOMEM;
	int rc = rod_store_meta_put(c->store, key, txt, strlen(txt));
	free(txt);
	return rc;
}

static json_t *host_record(const struct ctl_host *h)
{
	json_t *iqns = json_array();
	for (size_t i = 0; i < h->n_iqns; i++)
		json_array_append_new(iqns, json_string(h->iqns[i]));
	return json_pack("{s:s, s:I, s:o, s:s, s:s, s:s, s:s, s:I}", "name", h->name, "id",
			 (json_int_t)h->id, "iqns", iqns, "chap_user", h->chap_user, "chap_secret",
			 h->chap_secret, "mutual_user", h->mutual_user, "mutual_secret",
			 h->mutual_secret, "created_ns", (json_int_t)h->created_ns);
}

static void conn_key(uint64_t host_id, uint64_t vol_id, char *buf, size_t len)
{
	snprintf(buf, len, PFX_CONN "%016" PRIx64 "/%016" PRIx64, host_id, vol_id);
}

static void copy_field(json_t *o, const char *key, char *dst, size_t len)
{
	const char *s = json_string_value(json_object_get(o, key));
	snprintf(dst, len, "%s", s ? s : "");
}

static int load_host(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_ctl *c = arg;
	json_error_t jerr;
	json_t *o = json_loadb(val, len, 0, &jerr);
	struct ctl_host *h = calloc(1, sizeof(*h));
	if (!o || !h || !json_is_object(o)) {
		rod_warn("ctl: skipping unreadable host record %s", key);
		json_decref(o);
		free(h);
		return 0;
	}
	copy_field(o, "name", h->name, sizeof(h->name));
	h->id = (uint64_t)json_integer_value(json_object_get(o, "id"));
	h->created_ns = (uint64_t)json_integer_value(json_object_get(o, "created_ns"));
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(o, "iqns"), i, v) {
		if (h->n_iqns < ROD_HOST_IQNS_MAX && json_is_string(v))
			snprintf(h->iqns[h->n_iqns++], ROD_IQN_MAX, "%s", json_string_value(v));
	}
	copy_field(o, "chap_user", h->chap_user, sizeof(h->chap_user));
	copy_field(o, "chap_secret", h->chap_secret, sizeof(h->chap_secret));
	copy_field(o, "mutual_user", h->mutual_user, sizeof(h->mutual_user));
	copy_field(o, "mutual_secret", h->mutual_secret, sizeof(h->mutual_secret));
	json_decref(o);
	struct ctl_host **nh = realloc(c->hosts, (c->n_hosts + 1) * sizeof(*nh));
	if (!nh || !h->id || !rod_name_valid(h->name)) {
		rod_warn("ctl: skipping invalid host record %s", key);
		host_free(h);
		if (nh)
			c->hosts = nh;
		return 0;
	}
	c->hosts = nh;
	c->hosts[c->n_hosts++] = h;
	if (h->id >= c->next_host_id)
		c->next_host_id = h->id + 1;
	return 0;
}

static int conn_add_mem(struct ctl_host *h, uint64_t vol_id, uint64_t lun)
{
	struct ctl_conn *n = realloc(h->conns, (h->n_conns + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	h->conns = n;
	h->conns[h->n_conns].vol_id = vol_id;
	h->conns[h->n_conns].lun = lun;
	h->n_conns++;
	return 0;
}

static void conn_del_mem(struct ctl_host *h, size_t idx)
{
	h->conns[idx] = h->conns[h->n_conns - 1];
	h->n_conns--;
}

struct conn_scan {
	struct rod_ctl *c;
	char **stale;                   /* keys of records that point at nothing */
	size_t n_stale;
};

static int load_conn(void *arg, const char *key, const void *val, size_t len)
{
	struct conn_scan *cs = arg;
	struct rod_ctl *c = cs->c;
	json_t *o = json_loadb(val, len, 0, NULL);
	uint64_t host_id = (uint64_t)json_integer_value(json_object_get(o, "host_id"));
	uint64_t vol_id = (uint64_t)json_integer_value(json_object_get(o, "vol_id"));
	uint64_t lun = (uint64_t)json_integer_value(json_object_get(o, "lun"));
	json_decref(o);
	struct ctl_host *h = host_find_id(c, host_id);
	struct rod_vol_info vi;
	int rc = rod_vol_info_by_id(c->store, vol_id, &vi);
	if (!h || rc == -ENOENT || (rc == 0 && vi.destroyed) || lun > ROD_LUN_MAX) {
		/* the volume went away between a destroy and the removal of its connections */
		char **ns = realloc(cs->stale, (cs->n_stale + 1) * sizeof(*ns));
		if (ns) {
			cs->stale = ns;
			cs->stale[cs->n_stale++] = strdup(key);
		}
		return 0;
	}
	if (rc)
		rod_warn("ctl: volume id %" PRIu64 " of connection %s: %s", vol_id, key, strerror(-rc));
	if (conn_add_mem(h, vol_id, lun) == 0 && c->hooks.map_add) {
		rc = c->hooks.map_add(c->hooks.arg, host_id, lun, vol_id);
		if (rc)
			rod_err("ctl: cannot map volume id %" PRIu64 " at LUN %" PRIu64 " of host %s: %s",
				vol_id, lun, h->name, strerror(-rc));
	}
	return 0;
}

static int load_next_id(struct rod_ctl *c)
{
	void *val;
	size_t len;
	int rc = rod_store_meta_get(c->store, KEY_NEXT_HOST, &val, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	json_t *o = json_loadb(val, len, 0, NULL);
	uint64_t n = (uint64_t)json_integer_value(json_object_get(o, "next"));
	json_decref(o);
	free(val);
	if (n > c->next_host_id)
		c->next_host_id = n;
	return 0;
}

static void load_settings(struct rod_ctl *c)
{
	void *val;
	size_t len;
	if (rod_store_meta_get(c->store, KEY_SETTINGS, &val, &len))
		return;
	json_t *o = json_loadb(val, len, 0, NULL);
	free(val);
	json_t *w = json_object_get(o, "recovery_window_s");
	if (json_is_integer(w) && json_integer_value(w) >= 0 && json_integer_value(w) <= RECOVERY_WINDOW_MAX_S) {
		c->recovery_window_s = (uint64_t)json_integer_value(w);
		c->recovery_window_stored = true;
	}
	json_decref(o);
}

static int gc_submit(struct rod_ctl *c, bool full, uint64_t rate, json_t *names, const char *target, uint64_t *id);
static void flatten_auto(struct rod_ctl *c);
static void gc_auto(struct rod_ctl *c);
static int check_vol_limit(struct rod_ctl *c, char **msg);

/* Eradicate destroyed items older than the recovery window (op_lock held); one
 * eradicate job then reclaims their space. */
static void reap_expired(struct rod_ctl *c)
{
	struct rod_vol_info *vols = NULL;
	size_t n = 0;
	if (rod_vol_list(c->store, &vols, &n))
		return;
	uint64_t now = rod_wall_ns();
	json_t *names = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!vols[i].destroyed || vols[i].destroyed_ns + c->recovery_window_s * 1000000000ull > now)
			continue;
		int rc = rod_vol_eradicate(c->store, vols[i].name);
		json_t *p = json_pack("{s:s, s:s}", "name", vols[i].name, "reason", "recovery window ended");
		rod_events_record(c->events, "rodd", "vol.eradicate", p, rc ? ROD_CTL_EOTHER : 0,
				  rc ? strerror(-rc) : NULL);
		json_decref(p);
		if (rc) {
			rod_warn("ctl: cannot eradicate %s (its recovery window ended): %s", vols[i].name, strerror(-rc));
			continue;
		}
		rod_info("ctl: %s eradicated (destroyed more than %" PRIu64 " s ago); a job reclaims its space",
			 vols[i].name, c->recovery_window_s);
		if (!names)
			names = json_array();
		json_array_append_new(names, json_string(vols[i].name));
	}
	free(vols);
	if (names) {
		char target[160];
		uint64_t id;
		snprintf(target, sizeof(target), "%zu expired item(s)", json_array_size(names));
		int rc = gc_submit(c, false, c->gc_rate, names, target, &id);
		if (rc)
			rod_warn("ctl: cannot start the job reclaiming eradicated space: %s (the next GC does it)",
				 strerror(-rc));
	}
}

/* Finished jobs are kept in the store too (job list after a restart), the newest
 * JOBS_KEPT of them. */
static void persist_job(void *arg, uint64_t id, json_t *rec)
{
	struct rod_ctl *c = arg;
	char key[64];
	snprintf(key, sizeof(key), PFX_JOB "%016" PRIx64, id);
	int rc = put_json(c, key, rec);
	if (rc)
		rod_warn("ctl: cannot save job %" PRIu64 ": %s", id, strerror(-rc));
	if (id > JOBS_KEPT) {
		snprintf(key, sizeof(key), PFX_JOB "%016" PRIx64, id - JOBS_KEPT);
		rod_store_meta_del(c->store, key);
	}
}

static int load_job(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_ctl *c = arg;
	json_t *o = json_loadb(val, len, 0, NULL);
	if (!o || rod_jobs_restore(c->jobs, o))
		rod_warn("ctl: skipping unreadable job record %s", key);
	json_decref(o);
	return 0;
}

static void *reaper_main(void *arg)
{
	struct rod_ctl *c = arg;
	rod_thread_name("rod-ctl-reap");
	unsigned ticks = 0;
	pthread_mutex_lock(&c->reap_lock);
	while (!c->reap_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += REAP_PERIOD_S;
		pthread_cond_timedwait(&c->reap_cv, &c->reap_lock, &ts);
		if (c->reap_stop)
			break;
		pthread_mutex_unlock(&c->reap_lock);
		pthread_mutex_lock(&c->op_lock);
		reap_expired(c);
		gc_auto(c);
		if (++ticks % (FLATTEN_CHECK_S / REAP_PERIOD_S) == 0)
			flatten_auto(c);
		pthread_mutex_unlock(&c->op_lock);
		pthread_mutex_lock(&c->reap_lock);
	}
	pthread_mutex_unlock(&c->reap_lock);
	return NULL;
}

int rod_ctl_new(const struct rod_ctl_opts *o, struct rod_ctl **out)
{
	struct rod_ctl *c = calloc(1, sizeof(*c));
	int rc;
	if (!c)
		return -ENOMEM;
	c->store = o->store;
	snprintf(c->target_iqn, sizeof(c->target_iqn), "%s", o->target_iqn ? o->target_iqn : "");
	c->hooks = o->hooks;
	c->key_file = o->key_file ? strdup(o->key_file) : NULL;
	c->data_dir = o->data_dir ? strdup(o->data_dir) : NULL;
	pthread_mutex_init(&c->op_lock, NULL);
	pthread_rwlock_init(&c->lock, NULL);
	pthread_mutex_init(&c->reap_lock, NULL);
	pthread_cond_init(&c->reap_cv, NULL);
	c->next_host_id = 1;
	c->recovery_window_s = DEFAULT_RECOVERY_WINDOW_S;
	c->metrics_interval_s = DEFAULT_METRICS_INTERVAL_S;

	rc = rod_ctl_set_portals(c, o->portals);
	if (rc == 0)
		rc = rod_store_meta_scan(c->store, PFX_HOST, load_host, c);
	if (rc == 0)
		rc = load_next_id(c);
	struct conn_scan cs = { c, NULL, 0 };
	if (rc == 0)
		rc = rod_store_meta_scan(c->store, PFX_CONN, load_conn, &cs);
	for (size_t i = 0; i < cs.n_stale; i++) {
		if (rc == 0 && cs.stale[i]) {
			rod_info("ctl: dropping connection record %s (its host or volume is gone)", cs.stale[i]);
			rod_store_meta_del(c->store, cs.stale[i]);
		}
		free(cs.stale[i]);
	}
	free(cs.stale);
	if (rc) {
		rod_err("ctl: cannot load hosts and connections from the store: %s", strerror(-rc));
		rod_ctl_free(c);
		return rc;
	}
	load_settings(c);
	if ((rc = rod_pg_new(c->store, &c->pg))) {
		rod_err("ctl: cannot load protection groups from the store: %s", strerror(-rc));
		rod_ctl_free(c);
		return rc;
	}
	if ((rc = rod_events_open(c->store, EVENTS_KEPT, &c->events))) {
		rod_err("ctl: cannot read the audit log from the store: %s", strerror(-rc));
		rod_ctl_free(c);
		return rc;
	}
	if ((rc = rod_jobs_new(JOBS_KEPT, &c->jobs))) {
		rod_err("ctl: cannot start the job thread: %s", strerror(-rc));
		rod_ctl_free(c);
		return rc;
	}
	rod_store_meta_scan(c->store, PFX_JOB, load_job, c);
	rod_jobs_set_persist(c->jobs, persist_job, c);
	if ((rc = rod_repl_new(c->store, c->jobs, c->pg, &c->repl))) {
		rod_err("ctl: cannot load the replication state from the store: %s", strerror(-rc));
		rod_ctl_free(c);
		return rc;
	}
	if (pthread_create(&c->reaper, NULL, reaper_main, c) == 0)
		c->reaper_started = true;
	else
		rod_warn("ctl: cannot start the eradication thread; destroyed items stay until rodctl vol eradicate");
	rod_info("ctl: %zu hosts loaded", c->n_hosts);
	*out = c;
	return 0;
}

int rod_ctl_set_limits(struct rod_ctl *c, const struct rod_conf_limits *l)
{
	int rc = rod_jobs_set_workers(c->jobs, l->job_workers ? (unsigned)l->job_workers : 1);
	pthread_mutex_lock(&c->op_lock);
	c->max_volumes = l->max_volumes;
	c->gc_rate = l->gc_rate;
	c->gc_threshold_pct = l->gc_threshold_pct;
	if (!c->recovery_window_stored)
		c->recovery_window_s = l->has_recovery_window ? l->recovery_window_s : DEFAULT_RECOVERY_WINDOW_S;
	atomic_store(&c->http_no_token, l->http_require_token == 2);
	atomic_store(&c->metrics_interval_s, l->metrics_interval_s ? l->metrics_interval_s : DEFAULT_METRICS_INTERVAL_S);
	pthread_mutex_unlock(&c->op_lock);
	if (rc == -EBUSY)
		rod_warn("ctl: fewer job workers take effect at the next start of rodd");
	return rc == -EBUSY ? 0 : rc;
}

bool rod_ctl_http_token_required(struct rod_ctl *c)
{
	return !atomic_load(&c->http_no_token);
}

void rod_ctl_status_get(struct rod_ctl *c, struct rod_ctl_status *out)
{
	memset(out, 0, sizeof(*out));
	out->gc_running = atomic_load(&c->gc_running);
	out->gc_done = atomic_load(&c->gc_done);
	out->gc_total = atomic_load(&c->gc_total);
	out->gc_read = atomic_load(&c->gc_read);
	out->gc_moved = atomic_load(&c->gc_moved);
	out->metrics_interval_s = atomic_load(&c->metrics_interval_s);
	rod_jobs_count(c->jobs, &out->jobs_queued, &out->jobs_running);
}

/* rod.conf gc_threshold: a background GC job when used space is above it, at most one
 * every GC_AUTO_MIN_S (reaper thread, op_lock held). */
static void gc_auto(struct rod_ctl *c)
{
	struct rod_space sp;
	uint64_t now = rod_now_ns(), id;
	if (!c->gc_threshold_pct || (c->gc_auto_last_ns && now - c->gc_auto_last_ns < GC_AUTO_MIN_S * 1000000000ull))
		return;
	if (rod_store_space(c->store, &sp) || !sp.capacity || sp.used * 100 < sp.capacity * c->gc_threshold_pct)
		return;
	if (rod_jobs_active(c->jobs, "gc", "array (background)"))
		return;
	c->gc_auto_last_ns = now;
	if (gc_submit(c, false, c->gc_rate, NULL, "array (background)", &id) == 0)
		rod_info("ctl: used space above %" PRIu64 "%% (gc_threshold): GC job %" PRIu64 " started", c->gc_threshold_pct,
			 id);
}

int rod_ctl_set_portals(struct rod_ctl *c, const char *const *portals)
{
	size_t n = 0;
	while (portals && portals[n])
		n++;
	char **np = calloc(n + 1, sizeof(*np));
	if (!np)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!(np[i] = strdup(portals[i]))) {
			while (i--)
				free(np[i]);
			free(np);
			return -ENOMEM;
		}
	pthread_mutex_lock(&c->op_lock);
	for (size_t i = 0; i < c->n_portals; i++)
		free(c->portals[i]);
	free(c->portals);
	c->portals = np;
	c->n_portals = n;
	pthread_mutex_unlock(&c->op_lock);
	return 0;
}

void rod_ctl_free(struct rod_ctl *c)
{
	if (!c)
		return;
	rod_repl_stop(c->repl);        /* its jobs call into pg: stop them first */
	rod_pg_free(c->pg);
	rod_jobs_free(c->jobs);
	rod_repl_free(c->repl);
	rod_events_free(c->events);
	if (c->reaper_started) {
		pthread_mutex_lock(&c->reap_lock);
		c->reap_stop = true;
		pthread_cond_broadcast(&c->reap_cv);
		pthread_mutex_unlock(&c->reap_lock);
		pthread_join(c->reaper, NULL);
	}
	pthread_mutex_destroy(&c->reap_lock);
	pthread_cond_destroy(&c->reap_cv);
	for (size_t i = 0; i < c->n_hosts; i++)
		host_free(c->hosts[i]);
	free(c->hosts);
	for (size_t i = 0; i < c->n_portals; i++)
		free(c->portals[i]);
	free(c->portals);
	free(c->key_file);
	free(c->data_dir);
	pthread_mutex_destroy(&c->op_lock);
	pthread_rwlock_destroy(&c->lock);
	free(c);
}

/* ---- matching initiators ------------------------------------------------------------ */

/* Best host for an initiator name; *tie set when two hosts rank equal (refused). */
static struct ctl_host *best_host(struct rod_ctl *c, const char *name, bool *tie)
{
	struct ctl_host *best = NULL;
	long best_rank = -1;
	*tie = false;
	for (size_t i = 0; i < c->n_hosts; i++) {
		struct ctl_host *h = c->hosts[i];
		for (size_t k = 0; k < h->n_iqns; k++) {
			long r = rod_iqn_rank(h->iqns[k], name);
			if (r < 0)
				continue;
			if (r > best_rank) {
				best_rank = r;
				best = h;
				*tie = false;
			} else if (r == best_rank && best != h) {
				*tie = true;
			}
		}
	}
	return best;
}

int rod_ctl_auth_lookup(void *arg, const char *initiator_name, struct rod_iscsi_auth *out)
{
	struct rod_ctl *c = arg;
	bool tie;
	int rc = -ENOENT;
	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&c->lock);
	struct ctl_host *h = best_host(c, initiator_name, &tie);
	if (h && tie) {
		rod_warn("ctl: initiator %s matches several hosts equally; refused", initiator_name);
	} else if (h) {
		out->host_id = h->id;
		snprintf(out->chap_user, sizeof(out->chap_user), "%s", h->chap_user);
		snprintf(out->chap_secret, sizeof(out->chap_secret), "%s", h->chap_secret);
		snprintf(out->mutual_user, sizeof(out->mutual_user), "%s", h->mutual_user);
		snprintf(out->mutual_secret, sizeof(out->mutual_secret), "%s", h->mutual_secret);
		rc = 0;
	}
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

/* ---- JSON views -------------------------------------------------------------------- */

static json_t *space_json(const struct rod_space *s)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "provisioned", (json_int_t)s->provisioned,
			 "logical", (json_int_t)s->logical, "physical", (json_int_t)s->physical,
			 "unique", (json_int_t)s->unique, "shared", (json_int_t)s->shared, "snapshots", (json_int_t)s->snapshots,
			 "reduction", s->reduction);
}

/* with_space: compute the volume's space figures (a scan of its map: vol.show, not
 * vol.list, pays for it); else "space" is null. */
static json_t *vol_json(struct rod_ctl *c, const struct rod_vol_info *vi, bool with_space)
{
	struct rod_space sp;
	json_t *space = json_null();
	if (with_space && rod_vol_space(c->store, vi->name, &sp) == 0) {
		json_decref(space);
		space = space_json(&sp);
	}
	char uuid[33];
	rod_hex(vi->uuid, sizeof(vi->uuid), uuid);
	json_t *conns = json_array();
	for (size_t i = 0; i < c->n_hosts; i++) {
		struct ctl_host *h = c->hosts[i];
		for (size_t k = 0; k < h->n_conns; k++)
			if (h->conns[k].vol_id == vi->id)
				json_array_append_new(conns, json_pack("{s:s, s:I}", "host", h->name, "lun",
								       (json_int_t)h->conns[k].lun));
	}
	json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:i, s:o, s:s, s:b, s:o, s:o}", "name", vi->name, "id",
			      (json_int_t)vi->id, "uuid", uuid, "size", (json_int_t)vi->size, "block_size",
			      (int)vi->block_size, "created", json_time(vi->created_ns), "cache",
			      vi->cache == ROD_CACHE_WRITE_BACK ? "write-back" : "write-through", "offload",
			      vi->offload, "connections", conns, "space", space);
	if (!o)
		return NULL;
	json_object_set_new(o, "snapshot", json_boolean(vi->is_snapshot));
	json_object_set_new(o, "dedupe", json_boolean(vi->dedupe));
	json_object_set_new(o, "compress", json_boolean(vi->compress));
	json_object_set_new(o, "source", vi->source[0] ? json_string(vi->source) : json_null());
	json_object_set_new(o, "destroyed", vi->destroyed ? json_time(vi->destroyed_ns) : json_null());
	json_object_set_new(o, "eradicate_at",
			    vi->destroyed ? json_time(vi->destroyed_ns + c->recovery_window_s * 1000000000ull)
					  : json_null());
	return o;
}

static json_t *host_json(struct rod_ctl *c, const struct ctl_host *h)
{
	json_t *iqns = json_array();
	for (size_t i = 0; i < h->n_iqns; i++)
		json_array_append_new(iqns, json_string(h->iqns[i]));
	json_t *conns = json_array();
	for (size_t k = 0; k < h->n_conns; k++) {
		struct rod_vol_info vi;
		json_t *vname = rod_vol_info_by_id(c->store, h->conns[k].vol_id, &vi) == 0
					? json_string(vi.name) : json_null();
		json_array_append_new(conns, json_pack("{s:o, s:I, s:I}", "volume", vname, "volume_id",
						       (json_int_t)h->conns[k].vol_id, "lun",
						       (json_int_t)h->conns[k].lun));
	}
	return json_pack("{s:s, s:I, s:o, s:o, s:o, s:o, s:o}", "name", h->name, "id", (json_int_t)h->id,
			 "iqns", iqns, "chap_user",
			 h->chap_user[0] ? json_string(h->chap_user) : json_null(), "mutual_user",
			 h->mutual_user[0] ? json_string(h->mutual_user) : json_null(), "created",
			 json_time(h->created_ns), "connections", conns);
}

/* ---- methods ---------------------------------------------------------------------- */

static int destroyed_name_taken(struct rod_ctl *c, const char *name, char **msg);

typedef int (*method_fn)(struct rod_ctl *c, json_t *params, json_t **res, char **msg);

static int m_array_show(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const struct rod_array_identity *id = rod_store_identity(c->store);
	char hex[33];
	rod_hex(id->id, sizeof(id->id), hex);
	json_t *portals = json_array();
	for (size_t i = 0; i < c->n_portals; i++)
		json_array_append_new(portals, json_string(c->portals[i]));
	struct rod_vol_info *vols = NULL;
	size_t n = 0, live = 0;
	if (rod_vol_list(c->store, &vols, &n) == 0)
		for (size_t i = 0; i < n; i++)
			live += !vols[i].destroyed && !vols[i].is_snapshot;
	free(vols);
	json_t *warnings = json_array();
	if (!c->key_file)
		json_array_append_new(warnings, json_string("no key file configured: the store keeps its "
							    "key-encryption key in the data directory"));
	size_t dl = c->data_dir ? strlen(c->data_dir) : 0;
	if (c->key_file && dl && !strncmp(c->key_file, c->data_dir, dl) && c->key_file[dl] == '/')
		json_array_append_new(warnings, json_string("the key file is inside the data directory: whoever "
							    "gets a copy of the data gets the key too; keep it "
							    "elsewhere (e.g. /etc/rodstore/rod.key)"));
	struct rod_store_stats sst;
	rod_store_stats(c->store, &sst);
	if (sst.read_only)
		json_array_append_new(warnings, json_string("a write to the disk failed: the array refuses writes "
							    "(reads work) until rodd is restarted; see the log"));
	*res = json_pack("{s:s, s:s, s:s, s:o, s:i, s:o, s:o, s:o, s:I, s:I, s:o}", "name", id->name, "id",
			 hex, "target_iqn", c->target_iqn, "portals", portals, "format_version",
			 (int)id->format_version, "created", json_time(id->created_ns), "key_file",
			 c->key_file ? json_string(c->key_file) : json_null(), "data_dir",
			 c->data_dir ? json_string(c->data_dir) : json_null(), "volumes",
			 (json_int_t)live, "hosts", (json_int_t)c->n_hosts, "warnings", warnings);
	if (*res) {
		json_object_set_new(*res, "recovery_window_s", json_integer((json_int_t)c->recovery_window_s));
		json_object_set_new(*res, "read_only", json_boolean(sst.read_only));
	}
	return 0;
}

static int m_vol_create(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	uint64_t size, bs = 512;
	bool has_size, has_bs;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) ||
	    (rc = param_size(params, "size", true, &has_size, &size, msg)) ||
	    (rc = param_size(params, "block_size", false, &has_bs, &bs, msg)))
		return rc;
	if (!has_bs)
		bs = 512;
	if (!rod_name_valid(name))
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "\"%s\" is not a valid volume name (letters, digits, '-' and '_', 1-63 characters)", name);
	if (bs != 512 && bs != 4096)
		return ctl_fail(msg, ROD_CTL_EINVAL, "block size %" PRIu64 " is not supported (use 512 or 4096)", bs);
	if (size == 0 || size % bs)
		return ctl_fail(msg, ROD_CTL_EINVAL, "size %" PRIu64 " must be a positive multiple of the block size %" PRIu64,
			    size, bs);
	struct rod_vol_info vi;
	if ((rc = check_vol_limit(c, msg)))
		return rc;
	rc = rod_vol_create(c->store, name, size, (uint32_t)bs, &vi);
	if (rc == -EEXIST && destroyed_name_taken(c, name, msg))
		return ROD_CTL_EEXIST;
	if (rc == -EEXIST)
		return ctl_fail(msg, ROD_CTL_EEXIST, "volume \"%s\" already exists (rodctl vol show %s)", name, name);
	if (rc) {
		char what[160];
		snprintf(what, sizeof(what), "creating volume \"%s\"", name);
		return store_fail(msg, rc, what);
	}
	rod_info("ctl: volume %s created (%" PRIu64 " bytes, %" PRIu64 "-byte blocks)", name, size, bs);
	*res = vol_json(c, &vi, true);
	return 0;
}

static int vol_cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct rod_vol_info *)a)->name, ((const struct rod_vol_info *)b)->name);
}

static int m_vol_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	struct rod_vol_info *vols = NULL;
	size_t n = 0;
	int rc = rod_vol_list(c->store, &vols, &n);
	if (rc)
		return store_fail(msg, rc, "listing volumes");
	bool destroyed;
	if ((rc = param_bool(params, "destroyed", &destroyed, msg))) {
		free(vols);
		return rc;
	}
	qsort(vols, n, sizeof(*vols), vol_cmp_name);
	json_t *arr = json_array();
	/* destroyed=true: the destroyed-items area (volumes and snapshots) instead */
	for (size_t i = 0; i < n; i++)
		if (destroyed ? vols[i].destroyed : (!vols[i].destroyed && !vols[i].is_snapshot))
			json_array_append_new(arr, vol_json(c, &vols[i], false));
	free(vols);
	*res = json_pack("{s:o}", "volumes", arr);
	return 0;
}

static int m_vol_show(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = need_vol(c, name, &vi, msg)))
		return rc;
	*res = vol_json(c, &vi, true);
	return 0;
}

static int m_vol_resize(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	uint64_t size;
	bool has, shrink;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) ||
	    (rc = param_size(params, "size", true, &has, &size, msg)) ||
	    (rc = param_bool(params, "shrink", &shrink, msg)) || (rc = need_vol(c, name, &vi, msg)))
		return rc;
	if (size == 0 || size % vi.block_size)
		return ctl_fail(msg, ROD_CTL_EINVAL, "size %" PRIu64 " must be a positive multiple of the block size %u",
			    size, vi.block_size);
	if (size < vi.size && !shrink)
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "shrinking volume \"%s\" discards its data beyond the new size; add --shrink to confirm",
			    name);
	if (size != vi.size) {
		rc = rod_vol_resize(c->store, name, size);
		if (rc) {
			char what[160];
			snprintf(what, sizeof(what), "resizing volume \"%s\"", name);
			return store_fail(msg, rc, what);
		}
		if (c->hooks.vol_resized)
			c->hooks.vol_resized(c->hooks.arg, vi.id);
		rod_info("ctl: volume %s resized to %" PRIu64 " bytes", name, size);
	}
	if ((rc = need_vol(c, name, &vi, msg)))
		return rc;
	*res = vol_json(c, &vi, true);
	return 0;
}

static int m_vol_set(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name, *cache;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = param_str(params, "cache", false, &cache, msg)) ||
	    (rc = need_vol(c, name, &vi, msg)))
		return rc;
	json_t *off = json_object_get(params, "offload");
	if (off && !json_is_null(off) && !json_is_boolean(off))
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"offload\" must be true or false");
	json_t *dd = json_object_get(params, "dedupe"), *cp = json_object_get(params, "compress");
	if ((dd && !json_is_null(dd) && !json_is_boolean(dd)) || (cp && !json_is_null(cp) && !json_is_boolean(cp)))
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameters \"dedupe\" and \"compress\" must be true or false");
	enum rod_cache_mode mode = vi.cache;
	if (cache) {
		if (!strcmp(cache, "write-through"))
			mode = ROD_CACHE_WRITE_THROUGH;
		else if (!strcmp(cache, "write-back"))
			mode = ROD_CACHE_WRITE_BACK;
		else
			return ctl_fail(msg, ROD_CTL_EINVAL, "cache mode \"%s\" is not known (use write-through or write-back)",
				    cache);
	}
	if (!cache && !json_is_boolean(off) && !json_is_boolean(dd) && !json_is_boolean(cp))
		return ctl_fail(msg, ROD_CTL_EINVAL, "nothing to set (give --cache, --offload, --dedupe or --compress)");
	bool changed = false;
	char what[160];
	snprintf(what, sizeof(what), "volume \"%s\"", name);
	if (mode != vi.cache) {
		if ((rc = rod_vol_set_cache(c->store, name, mode)))
			return store_fail(msg, rc, what);
		changed = true;
	}
	if (json_is_boolean(off) && json_is_true(off) != vi.offload) {
		if ((rc = rod_vol_set_offload(c->store, name, json_is_true(off))))
			return store_fail(msg, rc, what);
		changed = true;
	}
	/* data reduction switches (benchmarking): no SCSI-visible change */
	if (json_is_boolean(dd) || json_is_boolean(cp)) {
		bool d = json_is_boolean(dd) ? json_is_true(dd) : vi.dedupe;
		bool z = json_is_boolean(cp) ? json_is_true(cp) : vi.compress;
		if ((d != vi.dedupe || z != vi.compress) && (rc = rod_vol_set_reduction(c->store, name, d, z)))
			return store_fail(msg, rc, what);
	}
	/* hosts see the new WCE bit (MODE PARAMETERS CHANGED unit attention) */
	if (changed && c->hooks.vol_params_changed)
		c->hooks.vol_params_changed(c->hooks.arg, vi.id);
	if ((rc = need_vol(c, name, &vi, msg)))
		return rc;
	*res = vol_json(c, &vi, true);
	return 0;
}

/* Remove every connection of a volume (records and memory). */
static void drop_vol_conns(struct rod_ctl *c, uint64_t vol_id)
{
	char key[96];
	for (size_t i = 0; i < c->n_hosts; i++) {
		struct ctl_host *h = c->hosts[i];
		for (size_t k = 0; k < h->n_conns;) {
			if (h->conns[k].vol_id != vol_id) {
				k++;
				continue;
			}
			conn_key(h->id, vol_id, key, sizeof(key));
			int rc = rod_store_meta_del(c->store, key);
			if (rc && rc != -ENOENT)
				rod_warn("ctl: cannot delete %s: %s (dropped at next start)", key, strerror(-rc));
			pthread_rwlock_wrlock(&c->lock);
			conn_del_mem(h, k);
			pthread_rwlock_unlock(&c->lock);
		}
	}
}

/* A destroyed volume or snapshot by name (the engine hides them from lookups by
 * name). Returns 0, or -ENOENT. */
static int find_destroyed(struct rod_ctl *c, const char *name, struct rod_vol_info *out)
{
	struct rod_vol_info *vols = NULL;
	size_t n = 0;
	int rc = rod_vol_list(c->store, &vols, &n);
	if (rc)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n; i++)
		if (vols[i].destroyed && !strcmp(vols[i].name, name)) {
			*out = vols[i];
			rc = 0;
			break;
		}
	free(vols);
	return rc;
}

/* Destroyed items keep their names until eradicated (a recover must find its name
 * free), like the recycle bins of commercial arrays. */
static int destroyed_name_taken(struct rod_ctl *c, const char *name, char **msg)
{
	struct rod_vol_info vi;
	if (find_destroyed(c, name, &vi) == 0)
		return ctl_fail(msg, ROD_CTL_EEXIST,
			    "a destroyed volume is named \"%s\"; recover it (rodctl vol recover %s) or free the name "
			    "(rodctl vol eradicate %s)", name, name, name);
	return 0;
}

static int m_vol_destroy(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = need_vol(c, name, &vi, msg)))
		return rc;
	/* The volume leaves every host at once (REPORT LUNS DATA HAS CHANGED) before the
	 * engine destroys it, so the SCSI target drops its handles first. */
	if (!vi.is_snapshot && c->hooks.vol_removed)
		c->hooks.vol_removed(c->hooks.arg, vi.id);
	rc = rod_vol_destroy(c->store, name);
	if (rc) {
		/* still there: give the hosts their LUNs back */
		for (size_t i = 0; i < c->n_hosts && c->hooks.map_add; i++)
			for (size_t k = 0; k < c->hosts[i]->n_conns; k++)
				if (c->hosts[i]->conns[k].vol_id == vi.id)
					c->hooks.map_add(c->hooks.arg, c->hosts[i]->id, c->hosts[i]->conns[k].lun, vi.id);
		char what[160];
		snprintf(what, sizeof(what), "destroying \"%s\"", name);
		return store_fail(msg, rc, what);
	}
	/* A recovered volume comes back unconnected: hosts may have reused the LUNs. */
	drop_vol_conns(c, vi.id);
	uint64_t now = rod_wall_ns();
	rod_info("ctl: %s %s destroyed (recoverable for %" PRIu64 " s)", vi.is_snapshot ? "snapshot" : "volume", name,
		 c->recovery_window_s);
	*res = json_pack("{s:s, s:I, s:b, s:o, s:o}", "name", name, "id", (json_int_t)vi.id, "eradicated", 0,
			 "destroyed", json_time(now), "eradicate_at",
			 json_time(now + c->recovery_window_s * 1000000000ull));
	return 0;
}

static int m_vol_recover(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)))
		return rc;
	if (find_destroyed(c, name, &vi))
		return ctl_fail(msg, ROD_CTL_ENOENT,
			    "\"%s\" is not among the destroyed items (rodctl vol list --destroyed shows them)", name);
	rc = rod_vol_recover(c->store, name);
	if (rc == -EEXIST)
		return ctl_fail(msg, ROD_CTL_EEXIST,
			    "a live volume is named \"%s\" now; rename it first (rodctl vol rename %s NEWNAME)", name,
			    name);
	if (rc) {
		char what[160];
		snprintf(what, sizeof(what), "recovering \"%s\"", name);
		return store_fail(msg, rc, what);
	}
	rod_info("ctl: %s recovered", name);
	if ((rc = need_vol(c, name, &vi, msg)))
		return rc;
	*res = vol_json(c, &vi, false);
	/* O(1) in the engine: recorded as a finished job for the history */
	uint64_t jid;
	if (*res && rod_jobs_add_done(c->jobs, "recover", name, "items",
				      json_pack("{s:s, s:I}", "name", name, "id", (json_int_t)vi.id), &jid) == 0)
		json_object_set_new(*res, "job", json_integer((json_int_t)jid));
	return 0;
}

static int m_vol_eradicate(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)))
		return rc;
	if (find_destroyed(c, name, &vi)) {
		if (rod_vol_info_get(c->store, name, &vi) == 0)
			return ctl_fail(msg, ROD_CTL_EEXIST, "\"%s\" is not destroyed; destroy it first (rodctl vol destroy %s)",
				    name, name);
		return ctl_fail(msg, ROD_CTL_ENOENT,
			    "\"%s\" is not among the destroyed items (rodctl vol list --destroyed shows them)", name);
	}
	rc = rod_vol_eradicate(c->store, name);
	if (rc) {
		char what[160];
		snprintf(what, sizeof(what), "eradicating \"%s\"", name);
		return store_fail(msg, rc, what);
	}
	/* The name is free now; the space returns when a GC pass has collected it: a job
	 * runs one (rodctl vol eradicate --wait follows it). */
	uint64_t jid;
	rc = gc_submit(c, false, c->gc_rate, json_pack("[s]", name), name, &jid);
	if (rc)
		rod_warn("ctl: cannot start the job reclaiming the space of %s: %s (the next GC does it)", name,
			 strerror(-rc));
	rod_info("ctl: %s eradicated; %s", name, rc ? "its space returns at the next GC" : "a job reclaims its space");
	*res = json_pack("{s:s, s:I, s:b}", "name", name, "id", (json_int_t)vi.id, "eradicated", 1);
	if (*res && !rc)
		json_object_set_new(*res, "job", json_integer((json_int_t)jid));
	return 0;
}

static int m_vol_snap(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name, *suffix;
	char defsuf[32];
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = param_str(params, "suffix", false, &suffix, msg)) ||
	    (rc = need_vol(c, name, &vi, msg)))
		return rc;
	if (vi.is_snapshot)
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a snapshot; snapshot its volume \"%s\" or a clone of it", name,
			    vi.source);
	if (!suffix) {
		time_t t = (time_t)(rod_wall_ns() / 1000000000ull);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(defsuf, sizeof(defsuf), "%Y%m%d-%H%M%S", &tm);
		suffix = defsuf;
	}
	if (!rod_name_valid(suffix))
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "\"%s\" is not a valid snapshot suffix (letters, digits, '-' and '_', 1-63 characters)", suffix);
	if ((rc = check_vol_limit(c, msg)))
		return rc;
	rc = rod_vol_snapshot(c->store, name, suffix, &vi);
	if (rc == -EEXIST)
		return ctl_fail(msg, ROD_CTL_EEXIST, "snapshot \"%s.%s\" already exists (choose another --suffix)", name,
			    suffix);
	if (rc) {
		char what[160];
		snprintf(what, sizeof(what), "snapshot of \"%s\"", name);
		return store_fail(msg, rc, what);
	}
	rod_info("ctl: snapshot %s created", vi.name);
	*res = vol_json(c, &vi, false);
	return 0;
}

static int m_vol_snap_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *vol;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "volume", false, &vol, msg)))
		return rc;
	if (vol && (rc = need_vol(c, vol, &vi, msg)))
		return rc;
	struct rod_vol_info *vols = NULL;
	size_t n = 0;
	if ((rc = rod_vol_list(c->store, &vols, &n)))
		return store_fail(msg, rc, "listing snapshots");
	qsort(vols, n, sizeof(*vols), vol_cmp_name);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		if (vols[i].is_snapshot && !vols[i].destroyed && (!vol || !strcmp(vols[i].source, vol)))
			json_array_append_new(arr, vol_json(c, &vols[i], false));
	free(vols);
	*res = json_pack("{s:o}", "snapshots", arr);
	return 0;
}

/* rod.conf max_volumes: volumes and snapshots that are not destroyed (op_lock held). */
static int check_vol_limit(struct rod_ctl *c, char **msg)
{
	struct rod_vol_info *vols = NULL;
	size_t n = 0, live = 0;
	if (!c->max_volumes || rod_vol_list(c->store, &vols, &n))
		return 0;
	for (size_t i = 0; i < n; i++)
		live += !vols[i].destroyed;
	free(vols);
	if (live < c->max_volumes)
		return 0;
	return ctl_fail(msg, ROD_CTL_EEXIST,
		    "the array holds %zu volumes and snapshots, the most rod.conf allows (max_volumes = %" PRIu64
		    "); destroy some (rodctl vol destroy) or raise max_volumes and reload rodd (SIGHUP)",
		    live, c->max_volumes);
}

static int check_new_name(struct rod_ctl *c, const char *name, char **msg)
{
	struct rod_vol_info vi;
	if (!rod_name_valid(name))
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "\"%s\" is not a valid volume name (letters, digits, '-' and '_', 1-63 characters)", name);
	if (rod_vol_info_get(c->store, name, &vi) == 0 && !vi.destroyed)
		return ctl_fail(msg, ROD_CTL_EEXIST, "volume \"%s\" already exists (rodctl vol show %s)", name, name);
	return destroyed_name_taken(c, name, msg);
}

static int m_vol_clone(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *src, *name;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "source", true, &src, msg)) || (rc = param_str(params, "name", true, &name, msg)) ||
	    (rc = need_vol(c, src, &vi, msg)) || (rc = check_new_name(c, name, msg)))
		return rc;
	if (strchr(src, ':') && !vi.is_snapshot) /* a staging volume changes under a transfer */
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a replica being received; clone one of its snapshots "
			    "(rodctl vol snap list %s)", src, src);
	if ((rc = check_vol_limit(c, msg)))
		return rc;
	rc = rod_vol_clone(c->store, src, name, &vi);
	if (rc) {
		char what[200];
		snprintf(what, sizeof(what), "clone \"%s\" of \"%s\"", name, src);
		return store_fail(msg, rc, what);
	}
	rod_info("ctl: volume %s cloned from %s", name, src);
	*res = vol_json(c, &vi, false);
	return 0;
}

/* Array-side copy of a whole volume: a clone when the target does not exist, else
 * (with overwrite) one range copy over the target, O(1) for grain-aligned sizes. */
static int m_vol_copy(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *src, *dst;
	bool overwrite;
	struct rod_vol_info si, di;
	int rc;
	if ((rc = param_str(params, "source", true, &src, msg)) || (rc = param_str(params, "target", true, &dst, msg)) ||
	    (rc = param_bool(params, "overwrite", &overwrite, msg)) || (rc = need_vol(c, src, &si, msg)))
		return rc;
	rc = rod_vol_info_get(c->store, dst, &di);
	if (rc == -ENOENT || (rc == 0 && di.destroyed)) {
		if ((rc = check_new_name(c, dst, msg)) || (rc = check_vol_limit(c, msg)))
			return rc;
		rc = rod_vol_clone(c->store, src, dst, &di);
		if (rc) {
			char what[200];
			snprintf(what, sizeof(what), "copy of \"%s\" to new volume \"%s\"", src, dst);
			return store_fail(msg, rc, what);
		}
		rod_info("ctl: volume %s copied to new volume %s", src, dst);
		*res = json_pack("{s:s, s:s, s:b, s:o}", "source", src, "target", dst, "created", 1, "volume",
				 vol_json(c, &di, false));
		return 0;
	}
	if (rc) {
		char what[160];
		snprintf(what, sizeof(what), "volume \"%s\"", dst);
		return store_fail(msg, rc, what);
	}
	if (di.is_snapshot)
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a snapshot; snapshots cannot be written", dst);
	if (di.id == si.id)
		return ctl_fail(msg, ROD_CTL_EINVAL, "source and target are the same volume");
	if (!overwrite)
		return ctl_fail(msg, ROD_CTL_EEXIST,
			    "volume \"%s\" exists; add --overwrite to replace its contents with \"%s\"", dst, src);
	if (di.size != si.size)
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "\"%s\" is %" PRIu64 " bytes and \"%s\" %" PRIu64 " bytes; resize the target first "
			    "(rodctl vol resize %s --size %" PRIu64 "%s)",
			    src, si.size, dst, di.size, dst, si.size, si.size < di.size ? " --shrink" : "");
	struct rod_vol *sv = NULL, *dv = NULL;
	rc = rod_vol_open(c->store, src, &sv);
	if (!rc)
		rc = rod_vol_open(c->store, dst, &dv);
	if (!rc)
		rc = rod_vol_copy(sv, 0, dv, 0, si.size);
	if (dv)
		rod_vol_close(dv);
	if (sv)
		rod_vol_close(sv);
	if (rc) {
		char what[200];
		snprintf(what, sizeof(what), "copy of \"%s\" over \"%s\"", src, dst);
		return store_fail(msg, rc, what);
	}
	rod_info("ctl: volume %s copied over volume %s", src, dst);
	if ((rc = need_vol(c, dst, &di, msg)))
		return rc;
	*res = json_pack("{s:s, s:s, s:b, s:o}", "source", src, "target", dst, "created", 0, "volume",
			 vol_json(c, &di, false));
	return 0;
}

static int m_vol_revert(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name, *snap;
	struct rod_vol_info vi, si;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = param_str(params, "snapshot", true, &snap, msg)) ||
	    (rc = need_vol(c, name, &vi, msg)))
		return rc;
	/* "daily" is short for "VOL.daily" */
	char full[ROD_SNAP_NAME_MAX];
	if (!strchr(snap, '.') && snprintf(full, sizeof(full), "%s.%s", name, snap) < (int)sizeof(full) &&
	    rod_vol_info_get(c->store, full, &si) == 0)
		snap = full;
	if ((rc = need_vol(c, snap, &si, msg)))
		return rc;
	if (vi.is_snapshot)
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a snapshot; revert a volume", name);
	if (!si.is_snapshot)
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is not a snapshot (rodctl vol copy %s %s --overwrite copies a volume)",
			    snap, snap, name);
	if (si.size != vi.size)
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "snapshot \"%s\" is %" PRIu64 " bytes and volume \"%s\" %" PRIu64 " bytes; resize the volume "
			    "to the snapshot's size first", snap, si.size, name, vi.size);
	rc = rod_vol_revert(c->store, name, snap);
	if (rc) {
		char what[200];
		snprintf(what, sizeof(what), "reverting \"%s\" to \"%s\"", name, snap);
		return store_fail(msg, rc, what);
	}
	rod_info("ctl: volume %s reverted to %s", name, snap);
	if ((rc = need_vol(c, name, &vi, msg)))
		return rc;
	*res = vol_json(c, &vi, false);
	return 0;
}

static int m_vol_rename(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name, *nn;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = param_str(params, "new_name", true, &nn, msg)) ||
	    (rc = need_vol(c, name, &vi, msg)))
		return rc;
	if (vi.is_snapshot) {
		/* a snapshot keeps its volume's prefix: only the suffix may change */
		const char *dot = strchr(nn, '.');
		size_t pl = strlen(vi.source);
		if (!dot || (size_t)(dot - nn) != pl || strncmp(nn, vi.source, pl) || !rod_name_valid(dot + 1))
			return ctl_fail(msg, ROD_CTL_EINVAL, "a snapshot of \"%s\" is named \"%s.SUFFIX\"", vi.source,
				    vi.source);
		if (rod_vol_info_get(c->store, nn, &vi) == 0)
			return ctl_fail(msg, ROD_CTL_EEXIST, "\"%s\" already exists", nn);
	} else if ((rc = check_new_name(c, nn, msg))) {
		return rc;
	}
	rc = rod_vol_rename(c->store, name, nn);
	if (rc) {
		char what[200];
		snprintf(what, sizeof(what), "renaming \"%s\" to \"%s\"", name, nn);
		return store_fail(msg, rc, what);
	}
	/* LUN maps name the volume by id: they follow it without a change. */
	rod_info("ctl: %s renamed to %s", name, nn);
	if ((rc = need_vol(c, nn, &vi, msg)))
		return rc;
	*res = vol_json(c, &vi, false);
	return 0;
}

static int m_array_space(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	struct rod_space sp;
	int rc = rod_store_space(c->store, &sp);
	if (rc)
		return store_fail(msg, rc, "array space");
	/* destroyed items still hold their space until eradicated and collected */
	struct rod_vol_info *vols = NULL;
	size_t n = 0, nd = 0;
	if (rod_vol_list(c->store, &vols, &n) == 0)
		for (size_t i = 0; i < n; i++)
			nd += vols[i].destroyed;
	free(vols);
	*res = space_json(&sp);
	if (!*res)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	json_object_set_new(*res, "capacity", json_integer((json_int_t)sp.capacity));
	json_object_set_new(*res, "used", json_integer((json_int_t)sp.used));
	json_object_set_new(*res, "free", json_integer((json_int_t)sp.free));
	json_object_set_new(*res, "destroyed_items", json_integer((json_int_t)nd));
	return 0;
}

static json_t *settings_json(struct rod_ctl *c)
{
	return json_pack("{s:I}", "recovery_window_s", (json_int_t)c->recovery_window_s);
}

static int m_array_set(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	json_t *w = json_object_get(params, "recovery_window_s");
	if (!w || json_is_null(w))
		return ctl_fail(msg, ROD_CTL_EINVAL, "nothing to set (give --recovery-window)");
	if (!json_is_integer(w) || json_integer_value(w) < 0 || json_integer_value(w) > RECOVERY_WINDOW_MAX_S)
		return ctl_fail(msg, ROD_CTL_EINVAL, "recovery_window_s must be a number of seconds from 0 to %d (30 days)",
			    RECOVERY_WINDOW_MAX_S);
	uint64_t old = c->recovery_window_s;
	c->recovery_window_s = (uint64_t)json_integer_value(w);
	json_t *rec = settings_json(c);
	int rc = put_json(c, KEY_SETTINGS, rec);
	json_decref(rec);
	if (rc) {
		c->recovery_window_s = old;
		return store_fail(msg, rc, "saving the array settings");
	}
	c->recovery_window_stored = true;
	rod_info("ctl: recovery window set to %" PRIu64 " s", c->recovery_window_s);
	*res = settings_json(c);
	return 0;
}


/* Re-wrap the data key with the key in another file (created 0600 when absent). rodd
 * must be started with that file from now on: the result says so. */
static int m_array_rekey(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *kf;
	char *dup;
	int rc;
	if ((rc = param_str(params, "key_file", true, &kf, msg)))
		return rc;
	if (kf[0] != '/')
		return ctl_fail(msg, ROD_CTL_EINVAL, "key_file must be an absolute path");
	if (!(dup = strdup(kf)))
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	rc = rod_store_rekey(c->store, kf);
	if (rc) {
		free(dup);
		return store_fail(msg, rc, "rekey");
	}
	/* Only methods read key_file, and every method runs under op_lock (held here). */
	free(c->key_file);
	c->key_file = dup;
	*res = json_pack("{s:s, s:s}", "key_file", kf, "note",
			 "the data key is now wrapped by this key file only: start rodd with "
			 "--key-file naming it (or put it in place of the old one)");
	return 0;
}

static int check_secret(const char *what, const char *s, char **msg)
{
	size_t n = strlen(s);
	if (n < ROD_CHAP_SECRET_MIN || n > ROD_CHAP_SECRET_MAX)
		return ctl_fail(msg, ROD_CTL_EINVAL, "%s must be %d to %d characters long (it is %zu)", what,
			    ROD_CHAP_SECRET_MIN, ROD_CHAP_SECRET_MAX, n);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			return ctl_fail(msg, ROD_CTL_EINVAL, "%s contains a control character", what);
	return 0;
}

static int check_user(const char *what, const char *s, char **msg)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return ctl_fail(msg, ROD_CTL_EINVAL, "%s must be 1 to 255 characters long", what);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
			return ctl_fail(msg, ROD_CTL_EINVAL, "%s must not contain spaces or control characters", what);
	return 0;
}

/* Refuse an IQN pattern that another host holds, or a glob that ties with another
 * host's glob (same length, some initiator could match both). */
static int check_iqn_conflicts(struct rod_ctl *c, const char *pat, const char *self_name, char **msg)
{
	for (size_t i = 0; i < c->n_hosts; i++) {
		struct ctl_host *h = c->hosts[i];
		if (self_name && !strcmp(h->name, self_name))
			continue;
		for (size_t k = 0; k < h->n_iqns; k++) {
			const char *q = h->iqns[k];
			if (!strcmp(q, pat))
				return ctl_fail(msg, ROD_CTL_EEXIST, "initiator name \"%s\" already belongs to host \"%s\"",
					    pat, h->name);
			if (rod_iqn_is_glob(pat) && rod_iqn_is_glob(q) && strlen(q) == strlen(pat) &&
			    rod_iqn_globs_overlap(q, pat))
				return ctl_fail(msg, ROD_CTL_EEXIST,
					    "pattern \"%s\" ties with \"%s\" of host \"%s\": an initiator could match both "
					    "equally (use a more specific or longer pattern)",
					    pat, q, h->name);
		}
	}
	return 0;
}

static int m_host_create(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name, *cu, *cs, *mu, *ms;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) ||
	    (rc = param_str(params, "chap_user", false, &cu, msg)) ||
	    (rc = param_str(params, "chap_secret", false, &cs, msg)) ||
	    (rc = param_str(params, "mutual_user", false, &mu, msg)) ||
	    (rc = param_str(params, "mutual_secret", false, &ms, msg)))
		return rc;
	if (!rod_name_valid(name))
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "\"%s\" is not a valid host name (letters, digits, '-' and '_', 1-63 characters)", name);
	if (host_find(c, name))
		return ctl_fail(msg, ROD_CTL_EEXIST, "host \"%s\" already exists (rodctl host list shows hosts)", name);

	struct ctl_host *h = calloc(1, sizeof(*h));
	if (!h)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	snprintf(h->name, sizeof(h->name), "%s", name);
	json_t *iqns = json_object_get(params, "iqns");
	json_t *one = json_object_get(params, "iqn");
	json_t *list = json_array();
	if (json_is_array(iqns))
		json_array_extend(list, iqns);
	else if (iqns && !json_is_null(iqns))
		rc = ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"iqns\" must be an array of strings");
	if (json_is_string(one))
		json_array_append(list, one);
	else if (one && !json_is_null(one) && !rc)
		rc = ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"iqn\" must be a string");
	if (!rc && json_array_size(list) == 0)
		rc = ctl_fail(msg, ROD_CTL_EINVAL, "a host needs at least one initiator name (--iqn IQN, e.g. '*')");
	if (!rc && json_array_size(list) > ROD_HOST_IQNS_MAX)
		rc = ctl_fail(msg, ROD_CTL_EINVAL, "a host has at most %d initiator names", ROD_HOST_IQNS_MAX);
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		if (rc)
			break;
		const char *s = json_string_value(v);
		char low[ROD_IQN_MAX];
		if (!s || strlen(s) >= ROD_IQN_MAX) {
			rc = ctl_fail(msg, ROD_CTL_EINVAL, "initiator names are strings of at most %d characters",
				  ROD_IQN_MAX - 1);
			break;
		}
		/* iSCSI names compare case-insensitively; they are kept lowercase */
		for (size_t k = 0; k <= strlen(s); k++)
			low[k] = (char)((s[k] >= 'A' && s[k] <= 'Z') ? s[k] - 'A' + 'a' : s[k]);
		if (!rod_iqn_pattern_valid(low)) {
			rc = ctl_fail(msg, ROD_CTL_EINVAL,
				  "\"%s\" is not a valid initiator name or pattern (iqn.YYYY-MM.domain:..., eui., naa., "
				  "or a glob with * and ?)", s);
			break;
		}
		for (size_t k = 0; k < h->n_iqns && !rc; k++)
			if (!strcmp(h->iqns[k], low))
				rc = ctl_fail(msg, ROD_CTL_EINVAL, "initiator name \"%s\" given twice", low);
		if (!rc)
			rc = check_iqn_conflicts(c, low, NULL, msg);
		if (!rc)
			snprintf(h->iqns[h->n_iqns++], ROD_IQN_MAX, "%s", low);
	}
	json_decref(list);
	/* Same-host globs may tie with each other harmlessly: they name the same host. */
	if (!rc && (cu || cs)) {
		if (!cu || !cs)
			rc = ctl_fail(msg, ROD_CTL_EINVAL, "CHAP needs both a user (--chap-user) and a secret (--chap-secret-file)");
		else if (!(rc = check_user("CHAP user", cu, msg)) && !(rc = check_secret("CHAP secret", cs, msg))) {
			snprintf(h->chap_user, sizeof(h->chap_user), "%s", cu);
			snprintf(h->chap_secret, sizeof(h->chap_secret), "%s", cs);
		}
	}
	if (!rc && (mu || ms)) {
		if (!mu || !ms)
			rc = ctl_fail(msg, ROD_CTL_EINVAL,
				  "mutual CHAP needs both a user (--mutual-user) and a secret (--mutual-secret-file)");
		else if (!h->chap_user[0])
			rc = ctl_fail(msg, ROD_CTL_EINVAL, "mutual CHAP needs one-way CHAP too (--chap-user, --chap-secret-file)");
		else if (!(rc = check_user("mutual CHAP user", mu, msg)) &&
			 !(rc = check_secret("mutual CHAP secret", ms, msg))) {
			if (!strcmp(ms, h->chap_secret))
				rc = ctl_fail(msg, ROD_CTL_EINVAL,
					  "the mutual CHAP secret must differ from the CHAP secret (RFC 7143 12.1.3)");
			snprintf(h->mutual_user, sizeof(h->mutual_user), "%s", mu);
			snprintf(h->mutual_secret, sizeof(h->mutual_secret), "%s", ms);
		}
	}
	if (rc) {
		host_free(h);
		return rc;
	}
	h->id = c->next_host_id;
	h->created_ns = rod_wall_ns();
	json_t *next = json_pack("{s:I}", "next", (json_int_t)(h->id + 1));
	rc = put_json(c, KEY_NEXT_HOST, next);
	json_decref(next);
	if (rc == 0) {
		char key[128];
		snprintf(key, sizeof(key), PFX_HOST "%s", h->name);
		json_t *rec = host_record(h);
		rc = put_json(c, key, rec);
		json_decref(rec);
	}
	if (rc) {
		host_free(h);
		return store_fail(msg, rc, "saving the host");
	}
	c->next_host_id = h->id + 1;
	pthread_rwlock_wrlock(&c->lock);
	struct ctl_host **nh = realloc(c->hosts, (c->n_hosts + 1) * sizeof(*nh));
	if (nh) {
		c->hosts = nh;
		c->hosts[c->n_hosts++] = h;
	}
	pthread_rwlock_unlock(&c->lock);
	if (!nh) {
		host_free(h);
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory (the host is saved; restart rodd)");
	}
	rod_info("ctl: host %s created (id %" PRIu64 ")", h->name, h->id);
	*res = host_json(c, h);
	return 0;
}

static int host_cmp_name(const void *a, const void *b)
{
	return strcmp((*(struct ctl_host *const *)a)->name, (*(struct ctl_host *const *)b)->name);
}

static int m_host_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	/* by name; the model's order is creation order with holes filled by deletes */
	struct ctl_host **sorted = malloc((c->n_hosts + 1) * sizeof(*sorted));
	if (!sorted)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	if (c->n_hosts) /* c->hosts is NULL before the first host: memcpy needs a pointer */
		memcpy(sorted, c->hosts, c->n_hosts * sizeof(*sorted));
	qsort(sorted, c->n_hosts, sizeof(*sorted), host_cmp_name);
	json_t *arr = json_array();
	for (size_t i = 0; i < c->n_hosts; i++)
		json_array_append_new(arr, host_json(c, sorted[i]));
	free(sorted);
	*res = json_pack("{s:o}", "hosts", arr);
	return 0;
}

static int m_host_show(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	struct ctl_host *h;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = need_host(c, name, &h, msg)))
		return rc;
	*res = host_json(c, h);
	return 0;
}

/* Change a host's CHAP settings: new user + secret, new mutual user + secret, or
 * clear_chap (both off). Unchanged parts stay. */
static int m_host_set(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name, *cu, *cs, *mu, *ms;
	bool clear, clear_mutual;
	struct ctl_host *h;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) ||
	    (rc = param_str(params, "chap_user", false, &cu, msg)) ||
	    (rc = param_str(params, "chap_secret", false, &cs, msg)) ||
	    (rc = param_str(params, "mutual_user", false, &mu, msg)) ||
	    (rc = param_str(params, "mutual_secret", false, &ms, msg)) ||
	    (rc = param_bool(params, "clear_chap", &clear, msg)) ||
	    (rc = param_bool(params, "clear_mutual", &clear_mutual, msg)) || (rc = need_host(c, name, &h, msg)))
		return rc;
	if (!cu && !cs && !mu && !ms && !clear && !clear_mutual)
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "nothing to set (give --chap-user/--chap-secret-file, --mutual-user/--mutual-secret-file, "
			    "--no-chap or --no-mutual)");
	if (clear && (cu || cs || mu || ms))
		return ctl_fail(msg, ROD_CTL_EINVAL, "--no-chap cannot be combined with new CHAP settings");
	struct ctl_host n = *h;   /* the new settings, checked before anything changes */
	if (clear) {
		n.chap_user[0] = n.chap_secret[0] = n.mutual_user[0] = n.mutual_secret[0] = '\0';
	}
	if (clear_mutual)
		n.mutual_user[0] = n.mutual_secret[0] = '\0';
	if (cu || cs) {
		if (!cu || !cs)
			return ctl_fail(msg, ROD_CTL_EINVAL, "CHAP needs both a user (--chap-user) and a secret (--chap-secret-file)");
		if ((rc = check_user("CHAP user", cu, msg)) || (rc = check_secret("CHAP secret", cs, msg)))
			return rc;
		snprintf(n.chap_user, sizeof(n.chap_user), "%s", cu);
		snprintf(n.chap_secret, sizeof(n.chap_secret), "%s", cs);
	}
	if (mu || ms) {
		if (!mu || !ms)
			return ctl_fail(msg, ROD_CTL_EINVAL,
				    "mutual CHAP needs both a user (--mutual-user) and a secret (--mutual-secret-file)");
		if ((rc = check_user("mutual CHAP user", mu, msg)) || (rc = check_secret("mutual CHAP secret", ms, msg)))
			return rc;
		snprintf(n.mutual_user, sizeof(n.mutual_user), "%s", mu);
		snprintf(n.mutual_secret, sizeof(n.mutual_secret), "%s", ms);
	}
	if (n.mutual_user[0] && !n.chap_user[0])
		rc = ctl_fail(msg, ROD_CTL_EINVAL, "mutual CHAP needs one-way CHAP too (--chap-user, --chap-secret-file)");
	else if (n.mutual_user[0] && !strcmp(n.mutual_secret, n.chap_secret))
		rc = ctl_fail(msg, ROD_CTL_EINVAL, "the mutual CHAP secret must differ from the CHAP secret (RFC 7143 12.1.3)");
	if (!rc) {
		char key[128];
		snprintf(key, sizeof(key), PFX_HOST "%s", h->name);
		json_t *rec = host_record(&n);
		rc = put_json(c, key, rec);
		json_decref(rec);
		if (rc)
			rc = store_fail(msg, rc, "saving the host");
	}
	if (!rc) {
		pthread_rwlock_wrlock(&c->lock);
		memcpy(h->chap_user, n.chap_user, sizeof(n.chap_user));
		memcpy(h->chap_secret, n.chap_secret, sizeof(n.chap_secret));
		memcpy(h->mutual_user, n.mutual_user, sizeof(n.mutual_user));
		memcpy(h->mutual_secret, n.mutual_secret, sizeof(n.mutual_secret));
		pthread_rwlock_unlock(&c->lock);
		rod_info("ctl: host %s CHAP settings changed (new logins use them)", name);
		*res = host_json(c, h);
	}
	/* the copy held secrets */
	memset(&n, 0, sizeof(n));
	return rc;
}

static int m_host_delete(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	struct ctl_host *h;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = need_host(c, name, &h, msg)))
		return rc;
	if (h->n_conns)
		return ctl_fail(msg, ROD_CTL_EEXIST,
			    "host \"%s\" still has %zu connected volume(s); disconnect them first (rodctl host disconnect)",
			    name, h->n_conns);
	char key[128];
	snprintf(key, sizeof(key), PFX_HOST "%s", h->name);
	rc = rod_store_meta_del(c->store, key);
	if (rc && rc != -ENOENT)
		return store_fail(msg, rc, "deleting the host");
	pthread_rwlock_wrlock(&c->lock);
	for (size_t i = 0; i < c->n_hosts; i++)
		if (c->hosts[i] == h) {
			c->hosts[i] = c->hosts[--c->n_hosts];
			break;
		}
	pthread_rwlock_unlock(&c->lock);
	rod_info("ctl: host %s deleted", name);
	*res = json_pack("{s:s, s:I}", "name", name, "id", (json_int_t)h->id);
	host_free(h);
	return 0;
}

static int m_host_connect(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *hname, *vname;
	struct ctl_host *h;
	struct rod_vol_info vi;
	uint64_t lun = 0;
	bool has_lun;
	int rc;
	json_t *jl = json_object_get(params, "lun");
	if (jl && !json_is_null(jl) && (!json_is_integer(jl) || json_integer_value(jl) < 0))
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"lun\" must be a number from 0 to %d", ROD_LUN_MAX);
	has_lun = jl && json_is_integer(jl);
	if (has_lun)
		lun = (uint64_t)json_integer_value(jl);
	if ((rc = param_str(params, "host", true, &hname, msg)) ||
	    (rc = param_str(params, "volume", true, &vname, msg)) || (rc = need_host(c, hname, &h, msg)) ||
	    (rc = need_vol(c, vname, &vi, msg)))
		return rc;
	if (vi.is_snapshot)
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a snapshot; connect a clone of it instead", vname);
	if (strchr(vname, ':'))
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a replica being received; clone one of its snapshots "
			    "(rodctl vol snap list %s) and connect the clone", vname, vname);
	if (has_lun && lun > ROD_LUN_MAX)
		return ctl_fail(msg, ROD_CTL_EINVAL, "LUN %" PRIu64 " is out of range (0 to %d)", lun, ROD_LUN_MAX);
	for (size_t k = 0; k < h->n_conns; k++) {
		if (h->conns[k].vol_id == vi.id)
			return ctl_fail(msg, ROD_CTL_EEXIST, "volume \"%s\" is already connected to host \"%s\" at LUN %" PRIu64,
				    vname, hname, h->conns[k].lun);
		if (has_lun && h->conns[k].lun == lun)
			return ctl_fail(msg, ROD_CTL_EEXIST,
				    "LUN %" PRIu64 " of host \"%s\" is taken (rodctl host list shows connections; omit --lun "
				    "for the lowest free one)", lun, hname);
	}
	if (!has_lun) {
		/* lowest free LUN */
		for (lun = 0; lun <= ROD_LUN_MAX; lun++) {
			bool used = false;
			for (size_t k = 0; k < h->n_conns && !used; k++)
				used = h->conns[k].lun == lun;
			if (!used)
				break;
		}
		if (lun > ROD_LUN_MAX)
			return ctl_fail(msg, ROD_CTL_EEXIST, "host \"%s\" has no free LUN", hname);
	}
	char key[96];
	conn_key(h->id, vi.id, key, sizeof(key));
	json_t *rec = json_pack("{s:I, s:I, s:I}", "host_id", (json_int_t)h->id, "vol_id", (json_int_t)vi.id,
				"lun", (json_int_t)lun);
	rc = put_json(c, key, rec);
	json_decref(rec);
	if (rc)
		return store_fail(msg, rc, "saving the connection");
	if (c->hooks.map_add && (rc = c->hooks.map_add(c->hooks.arg, h->id, lun, vi.id))) {
		rod_store_meta_del(c->store, key);
		return ctl_fail(msg, ROD_CTL_EOTHER, "the SCSI target refused LUN %" PRIu64 " for volume \"%s\": %s", lun,
			    vname, strerror(-rc));
	}
	pthread_rwlock_wrlock(&c->lock);
	rc = conn_add_mem(h, vi.id, lun);
	pthread_rwlock_unlock(&c->lock);
	if (rc)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory (the connection is saved; restart rodd)");
	rod_info("ctl: volume %s connected to host %s at LUN %" PRIu64, vname, hname, lun);
	*res = json_pack("{s:s, s:s, s:I, s:I}", "host", hname, "volume", vname, "volume_id", (json_int_t)vi.id,
			 "lun", (json_int_t)lun);
	return 0;
}

static int m_host_disconnect(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *hname, *vname;
	struct ctl_host *h;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "host", true, &hname, msg)) ||
	    (rc = param_str(params, "volume", true, &vname, msg)) || (rc = need_host(c, hname, &h, msg)) ||
	    (rc = need_vol(c, vname, &vi, msg)))
		return rc;
	size_t k;
	for (k = 0; k < h->n_conns; k++)
		if (h->conns[k].vol_id == vi.id)
			break;
	if (k == h->n_conns)
		return ctl_fail(msg, ROD_CTL_ENOENT, "volume \"%s\" is not connected to host \"%s\" (rodctl host list shows connections)",
			    vname, hname);
	uint64_t lun = h->conns[k].lun;
	char key[96];
	conn_key(h->id, vi.id, key, sizeof(key));
	rc = rod_store_meta_del(c->store, key);
	if (rc && rc != -ENOENT)
		return store_fail(msg, rc, "deleting the connection");
	if (c->hooks.map_remove && (rc = c->hooks.map_remove(c->hooks.arg, h->id, lun)))
		rod_warn("ctl: SCSI map remove host %s LUN %" PRIu64 ": %s", hname, lun, strerror(-rc));
	pthread_rwlock_wrlock(&c->lock);
	conn_del_mem(h, k);
	pthread_rwlock_unlock(&c->lock);
	rod_info("ctl: volume %s disconnected from host %s (LUN %" PRIu64 ")", vname, hname, lun);
	*res = json_pack("{s:s, s:s, s:I}", "host", hname, "volume", vname, "lun", (json_int_t)lun);
	return 0;
}

/* ---- jobs ---------------------------------------------------------------------------- */

/* A GC pass as a job (kind "gc", or "eradicate" when it reclaims the space of
 * eradicated items): progress in segments (each old segment examined, then the ones
 * worth it moved), cancellable between segments, optionally rate limited. */
struct gc_job {
	struct rod_ctl *c;
	struct rod_job *job;
	bool full;
	uint64_t rate;          /* segment bytes read per second, 0: as fast as the disk goes */
	uint64_t t0;
	json_t *names;          /* eradicate: the items whose space this pass reclaims */
};

static void gc_job_free(void *arg)
{
	struct gc_job *g = arg;
	json_decref(g->names);
	free(g);
}

static int gc_progress(void *arg, uint64_t done, uint64_t total, uint64_t rd, uint64_t moved)
{
	struct gc_job *g = arg;
	struct rod_ctl *c = g->c;
	rod_job_progress(g->job, done, total);
	atomic_store(&c->gc_done, done);
	atomic_store(&c->gc_total, total);
	atomic_store(&c->gc_read, rd);
	atomic_store(&c->gc_moved, moved);
	if (!g->rate)
		return rod_job_cancelled(g->job);
	/* rate limit: sleep until this much reading is due, looking for a cancel */
	uint64_t due = g->t0 + (uint64_t)((double)rd / (double)g->rate * 1e9);
	for (;;) {
		if (rod_job_cancelled(g->job))
			return 1;
		uint64_t now = rod_now_ns();
		if (due <= now)
			return 0;
		uint64_t ns = due - now < 100000000ull ? due - now : 100000000ull;
		struct timespec ts = { 0, (long)ns };
		nanosleep(&ts, NULL);
	}
}

static int gc_job_run(struct rod_job *j, void *arg, json_t **result, char **err)
{
	struct gc_job *g = arg;
	struct rod_ctl *c = g->c;
	struct rod_store_stats before, after;
	struct rod_space sb, sa;
	(void)err;
	g->job = j;
	rod_store_stats(c->store, &before);
	if (rod_store_space(c->store, &sb))
		memset(&sb, 0, sizeof(sb));
	atomic_store(&c->gc_done, 0);
	atomic_store(&c->gc_total, 0);
	atomic_store(&c->gc_read, 0);
	atomic_store(&c->gc_moved, 0);
	atomic_store(&c->gc_running, true);
	g->t0 = rod_now_ns();
	int rc = rod_store_gc_ex(c->store, g->full, gc_progress, g);
	atomic_store(&c->gc_running, false);
	if (rc && rc != -ECANCELED)
		return rc;
	rod_store_stats(c->store, &after);
	if (rod_store_space(c->store, &sa))
		memset(&sa, 0, sizeof(sa));
	/* a cancelled pass keeps what it did: the result says how much */
	*result = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "full", g->full, "segments_examined",
			    (json_int_t)atomic_load(&c->gc_done), "segments_freed",
			    (json_int_t)(after.gc_segments_freed - before.gc_segments_freed), "bytes_read",
			    (json_int_t)atomic_load(&c->gc_read), "bytes_moved",
			    (json_int_t)(after.gc_bytes_moved - before.gc_bytes_moved), "bytes_freed",
			    (json_int_t)(sb.used > sa.used ? sb.used - sa.used : 0));
	if (*result && g->names)
		json_object_set(*result, "eradicated", g->names);
	if (*result)
		json_object_set_new(*result, "rate_limit", json_integer((json_int_t)g->rate));
	return rc;
}

/* Queue a GC job (op_lock held). names: eradicate job for these items (reference
 * passed), NULL: a plain GC. */
static int gc_submit(struct rod_ctl *c, bool full, uint64_t rate, json_t *names, const char *target, uint64_t *id)
{
	struct gc_job *g = calloc(1, sizeof(*g));
	if (!g) {
		json_decref(names);
		return -ENOMEM;
	}
	g->c = c;
	g->full = full;
	g->rate = rate;
	g->names = names;
	int rc = rod_jobs_submit(c->jobs, names ? "eradicate" : "gc", target, "segments", true, gc_job_run, g,
				 gc_job_free, id);
	if (rc)
		gc_job_free(g);
	return rc;
}

struct scrub_job {
	struct rod_vol *vol;
	uint64_t rate;          /* bytes/s, 0: as fast as the disk goes */
};

static void scrub_free(void *arg)
{
	struct scrub_job *s = arg;
	rod_vol_close(s->vol);
	free(s);
}

#define SCRUB_CHUNK (1u << 20)

/* Read every block of a volume: a damaged chunk fails its checksum (-EBADMSG). */
static int scrub_job_run(struct rod_job *j, void *arg, json_t **result, char **err)
{
	struct scrub_job *s = arg;
	uint64_t size = rod_vol_size(s->vol), bad = 0, first_bad = 0;
	uint64_t t0 = rod_now_ns();
	void *buf = malloc(SCRUB_CHUNK);
	int rc = 0;
	if (!buf)
		return -ENOMEM;
	rod_job_progress(j, 0, size);
	for (uint64_t off = 0; off < size;) {
		if (rod_job_cancelled(j)) {
			rc = -ECANCELED;
			break;
		}
		uint64_t len = size - off < SCRUB_CHUNK ? size - off : SCRUB_CHUNK;
		rc = rod_vol_read(s->vol, off, buf, len);
		if (rc == -EBADMSG) {
			if (!bad++)
				first_bad = off;
			rc = 0;
		} else if (rc) {
			break;
		}
		off += len;
		rod_job_progress(j, off, size);
		if (s->rate) {
			/* rate limit: sleep until this much work is due */
			uint64_t due = t0 + (uint64_t)((double)off / (double)s->rate * 1e9), now = rod_now_ns();
			if (due > now) {
				struct timespec ts = { (time_t)((due - now) / 1000000000ull), (long)((due - now) % 1000000000ull) };
				nanosleep(&ts, NULL);
			}
		}
	}
	free(buf);
	*result = json_pack("{s:I, s:I}", "damaged_chunks", (json_int_t)bad, "first_damaged_offset",
			    (json_int_t)first_bad);
	if (!rc && bad && asprintf(err, "%" PRIu64 " damaged 1 MiB range(s), the first at byte %" PRIu64, bad,
				   first_bad) >= 0)
		rc = -EBADMSG;
	return rc;
}

static int job_started(struct rod_ctl *c, uint64_t id, json_t **res, char **msg)
{
	bool found;
	*res = rod_jobs_show_json(c->jobs, id, &found);
	return *res ? 0 : ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
}

static int m_array_gc(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	bool full, has_rate;
	uint64_t id, rate = c->gc_rate;
	int rc;
	if ((rc = param_bool(params, "full", &full, msg)) ||
	    (rc = param_size(params, "rate", false, &has_rate, &rate, msg)))
		return rc;
	if ((rc = gc_submit(c, full, rate, NULL, full ? "array (full)" : "array", &id)))
		return store_fail(msg, rc, "starting garbage collection");
	return job_started(c, id, res, msg);
}

static int m_vol_scrub(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	uint64_t rate = 0, id;
	bool has_rate;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) ||
	    (rc = param_size(params, "rate", false, &has_rate, &rate, msg)) || (rc = need_vol(c, name, &vi, msg)))
		return rc;
	struct scrub_job *s = calloc(1, sizeof(*s));
	if (!s)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	s->rate = rate;
	if ((rc = rod_vol_open_id(c->store, vi.id, &s->vol))) {
		free(s);
		return store_fail(msg, rc, name);
	}
	if ((rc = rod_jobs_submit(c->jobs, "scrub", name, "bytes", true, scrub_job_run, s, scrub_free, &id))) {
		scrub_free(s);
		return store_fail(msg, rc, "starting the scrub");
	}
	return job_started(c, id, res, msg);
}

/* Array scrub (rod_store_scrub): every stored chunk referenced by a volume, snapshot or
 * destroyed volume is read and checked once; the result lists each damaged chunk with
 * the (view, LBA) references to it. Progress in grains resolved. */
#define SCRUB_REFS_MAX 10000    /* references listed in the result (all are counted) */

struct ascrub_job {
	struct rod_store *store;
	struct rod_job *job;
	json_t *damaged;        /* chunk id (hex) -> { error, refs[] } */
	uint64_t listed;
};

static int ascrub_progress(void *arg, uint64_t done, uint64_t total)
{
	struct ascrub_job *a = arg;
	rod_job_progress(a->job, done, total);
	return rod_job_cancelled(a->job) ? -ECANCELED : 0;
}

static int ascrub_damaged(void *arg, const struct rod_scrub_damage *d)
{
	struct ascrub_job *a = arg;
	char key[24];
	snprintf(key, sizeof(key), "%016" PRIx64, d->chunk_id);
	json_t *o = json_object_get(a->damaged, key);
	if (!o) {
		o = json_pack("{s:s, s:s, s:[]}", "chunk", key, "error",
			      d->error == -EBADMSG ? "checksum mismatch" : strerror(-d->error), "refs");
		if (!o || json_object_set_new(a->damaged, key, o))
			return -ENOMEM;
	}
	if (a->listed++ >= SCRUB_REFS_MAX)
		return 0;
	json_t *ref = json_pack("{s:s, s:b, s:b, s:I, s:I, s:i}", "volume", d->view, "snapshot", d->is_snapshot,
				"destroyed", d->destroyed, "lba", (json_int_t)d->lba, "blocks", (json_int_t)d->blocks,
				"block_size", (int)d->block_size);
	return ref && !json_array_append_new(json_object_get(o, "refs"), ref) ? 0 : -ENOMEM;
}

static int ascrub_job_run(struct rod_job *j, void *arg, json_t **result, char **err)
{
	struct ascrub_job *a = arg;
	struct rod_scrub_stats st;
	a->job = j;
	a->damaged = json_object();
	if (!a->damaged)
		return -ENOMEM;
	int rc = rod_store_scrub(a->store, ascrub_progress, ascrub_damaged, a, &st);
	json_t *list = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(a->damaged, k, v)
		json_array_append(list, v);
	*result = json_pack("{s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "views", (json_int_t)st.views, "grains",
			    (json_int_t)st.grains, "chunks_checked", (json_int_t)st.chunks_checked, "chunks_damaged",
			    (json_int_t)st.chunks_damaged, "refs_damaged", (json_int_t)st.refs_damaged,
			    "refs_truncated", a->listed > SCRUB_REFS_MAX, "damaged", list ? list : json_array());
	json_decref(a->damaged);
	a->damaged = NULL;
	if (!rc && st.chunks_damaged &&
	    asprintf(err, "%" PRIu64 " damaged chunk(s) referenced by %" PRIu64 " grain(s) (listed in the job's result)",
		     st.chunks_damaged, st.refs_damaged) >= 0)
		rc = -EBADMSG;
	return rc;
}

static int m_array_scrub(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	uint64_t id;
	int rc;
	(void)params;
	struct ascrub_job *a = calloc(1, sizeof(*a));
	if (!a)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	a->store = c->store;
	if ((rc = rod_jobs_submit(c->jobs, "scrub", "array", "grains", true, ascrub_job_run, a, free, &id))) {
		free(a);
		return store_fail(msg, rc, "starting the scrub");
	}
	return job_started(c, id, res, msg);
}

/* Test only: arm the engine's fault-injection points (docs/reliability.md). Exists
 * only when rodd runs with ROD_TEST_FAULTS=1 in its environment. */
static int m_array_fault(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *spec, *on = getenv("ROD_TEST_FAULTS");
	char err[256], shown[1024];
	int rc;
	(void)c;
	if (!on || strcmp(on, "1"))
		return ctl_fail(msg, ROD_CTL_ENOMETHOD, "unknown method \"array.fault\"");
	if ((rc = param_str(params, "spec", false, &spec, msg)))
		return rc;
	if (spec && rod_store_fault_set(spec, err, sizeof(err)))
		return ctl_fail(msg, ROD_CTL_EINVAL, "%s", err);
	rod_store_fault_show(shown, sizeof(shown));
	*res = json_pack("{s:s}", "faults", shown);
	return *res ? 0 : ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
}

/* Flatten (rod_vol_flatten): rewrites a volume's deep range entries; progress in bytes
 * of range entries, cancellable between batches (the volume reads the same throughout,
 * partly flattened when stopped). */
struct flatten_job {
	struct rod_store *store;
	struct rod_job *job;
	char name[ROD_SNAP_NAME_MAX];
	unsigned flags;
	bool automatic;
};

static int flatten_progress(void *arg, uint64_t done, uint64_t total)
{
	struct flatten_job *f = arg;
	rod_job_progress(f->job, done, total);
	return rod_job_cancelled(f->job);
}

static int flatten_job_run(struct rod_job *j, void *arg, json_t **result, char **err)
{
	struct flatten_job *f = arg;
	uint32_t before = 0, after = 0;
	f->job = j;
	if (f->automatic && !rod_vol_needs_flatten(f->store, f->name))
		return 0;   /* flattened (or gone) since it was queued */
	rod_vol_depth(f->store, f->name, &before);
	int rc = rod_vol_flatten(f->store, f->name, f->flags, flatten_progress, f);
	if (rc == -ENOENT && asprintf(err, "volume \"%s\" no longer exists", f->name) < 0)
		*err = NULL;
	if (rc && rc != -ECANCELED)
		return rc;
	rod_vol_depth(f->store, f->name, &after);
	*result = json_pack("{s:s, s:b, s:b, s:i, s:i}", "name", f->name, "all", (f->flags & ROD_FLATTEN_ALL) != 0,
			    "automatic", f->automatic, "depth_before", (int)before, "depth_after", (int)after);
	return rc;
}

static int flatten_submit(struct rod_ctl *c, const char *name, unsigned flags, bool automatic, uint64_t *id)
{
	struct flatten_job *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->store = c->store;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->flags = flags;
	f->automatic = automatic;
	int rc = rod_jobs_submit(c->jobs, "flatten", name, "bytes", true, flatten_job_run, f, free, id);
	if (rc)
		free(f);
	return rc;
}

static int m_vol_flatten(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *name;
	bool all;
	uint64_t id;
	struct rod_vol_info vi;
	int rc;
	if ((rc = param_str(params, "name", true, &name, msg)) || (rc = param_bool(params, "all", &all, msg)) ||
	    (rc = need_vol(c, name, &vi, msg)))
		return rc;
	if ((rc = flatten_submit(c, name, all ? ROD_FLATTEN_ALL : 0, false, &id)))
		return store_fail(msg, rc, "starting the flatten");
	return job_started(c, id, res, msg);
}

/* Automatic flatten (reaper thread, op_lock held): a job for each volume past the soft
 * depth that has none queued or running. */
static void flatten_auto(struct rod_ctl *c)
{
	char **names = NULL;
	size_t n = 0;
	if (rod_store_flatten_list(c->store, &names, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		uint64_t id;
		if (!rod_jobs_active(c->jobs, "flatten", names[i]) && flatten_submit(c, names[i], 0, true, &id) == 0)
			rod_info("ctl: %s has deep clone/copy chains; flatten job %" PRIu64 " started", names[i], id);
		free(names[i]);
	}
	free(names);
}

static int param_job_id(json_t *params, uint64_t *id, char **msg)
{
	json_t *v = json_object_get(params, "id");
	/* REST paths carry the id as a string of digits */
	if (json_is_string(v)) {
		const char *t = json_string_value(v);
		char *end;
		unsigned long long n = strtoull(t, &end, 10);
		if (*t >= '0' && *t <= '9' && !*end && n >= 1) {
			*id = n;
			return 0;
		}
	}
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"id\" must be a job number (rodctl job list shows jobs)");
	*id = (uint64_t)json_integer_value(v);
	return 0;
}

static int m_job_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	(void)params;
	*res = rod_jobs_list_json(c->jobs);
	return *res ? 0 : ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
}

static int m_job_show(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	uint64_t id;
	bool found;
	int rc;
	if ((rc = param_job_id(params, &id, msg)))
		return rc;
	*res = rod_jobs_show_json(c->jobs, id, &found);
	if (!found)
		return ctl_fail(msg, ROD_CTL_ENOENT, "job %" PRIu64 " not found (rodctl job list shows jobs)", id);
	return *res ? 0 : ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
}

static int m_job_cancel(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	uint64_t id;
	int rc;
	if ((rc = param_job_id(params, &id, msg)))
		return rc;
	rc = rod_jobs_cancel(c->jobs, id);
	if (rc == -ENOENT)
		return ctl_fail(msg, ROD_CTL_ENOENT, "job %" PRIu64 " not found (rodctl job list shows jobs)", id);
	if (rc == -EALREADY)
		return ctl_fail(msg, ROD_CTL_EEXIST, "job %" PRIu64 " has already finished", id);
	if (rc == -EBUSY)
		return ctl_fail(msg, ROD_CTL_EEXIST, "job %" PRIu64 " cannot be stopped once running (wait for it to finish)",
			    id);
	return m_job_show(c, params, res, msg);
}

/* API tokens for the HTTP API live in api_token.c (only their hashes are stored). */
static int m_token_create(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	return rod_api_token_create(c->store, params, res, msg);
}

static int m_token_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	return rod_api_token_list(c->store, params, res, msg);
}

static int m_token_delete(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	return rod_api_token_delete(c->store, params, res, msg);
}

static int m_events_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg);

/* The method table: the REST API of the control-plane issue maps onto the same names. */
static const struct {
	const char *name;
	method_fn fn;
} methods[] = {
	{ "array.show", m_array_show },
	{ "vol.create", m_vol_create },
	{ "vol.list", m_vol_list },
	{ "vol.show", m_vol_show },
	{ "vol.resize", m_vol_resize },
	{ "vol.destroy", m_vol_destroy },
	{ "vol.set", m_vol_set },
	{ "vol.recover", m_vol_recover },
	{ "vol.eradicate", m_vol_eradicate },
	{ "vol.snap", m_vol_snap },
	{ "vol.snap.list", m_vol_snap_list },
	{ "vol.clone", m_vol_clone },
	{ "vol.copy", m_vol_copy },
	{ "vol.revert", m_vol_revert },
	{ "vol.rename", m_vol_rename },
	{ "host.set", m_host_set },
	{ "array.space", m_array_space },
	{ "array.set", m_array_set },
	{ "array.gc", m_array_gc },
	{ "vol.scrub", m_vol_scrub },
	{ "array.scrub", m_array_scrub },
	{ "array.fault", m_array_fault },
	{ "vol.flatten", m_vol_flatten },
	{ "job.list", m_job_list },
	{ "job.show", m_job_show },
	{ "job.cancel", m_job_cancel },
	{ "events.list", m_events_list },
	{ "array.rekey", m_array_rekey },
	{ "host.create", m_host_create },
	{ "host.list", m_host_list },
	{ "host.show", m_host_show },
	{ "host.delete", m_host_delete },
	{ "host.connect", m_host_connect },
	{ "host.disconnect", m_host_disconnect },
	{ "array.token.create", m_token_create },
	{ "array.token.list", m_token_list },
	{ "array.token.delete", m_token_delete },
};

int rod_ctl_call(struct rod_ctl *c, const char *method, json_t *params, json_t **result, char **errmsg)
{
	*result = NULL;
	*errmsg = NULL;
	if (params && !json_is_object(params))
		return ctl_fail(errmsg, ROD_CTL_EINVAL, "params must be a JSON object");
	for (size_t i = 0; i < ROD_ARRAY_SIZE(methods); i++) {
		if (strcmp(methods[i].name, method))
			continue;
		pthread_mutex_lock(&c->op_lock);
		int rc = methods[i].fn(c, params, result, errmsg);
		pthread_mutex_unlock(&c->op_lock);
		if (rc == 0 && !*result)
			return ctl_fail(errmsg, ROD_CTL_EOTHER, "out of memory");
		if (rc)
			rod_debug("ctl: %s failed: %s", method, *errmsg ? *errmsg : "?");
		return rc;
	}
	if (!strcmp(method, "pg.replicate") || !strncmp(method, "replica.", 8) ||
	    !strncmp(method, "array.replication_key.", 22)) { /* replication: table in repl.c */
		pthread_mutex_lock(&c->op_lock);
		int rc = rod_repl_call(c->repl, method, params, result, errmsg);
		pthread_mutex_unlock(&c->op_lock);
		if (rc)
			rod_debug("ctl: %s failed: %s", method, *errmsg ? *errmsg : "?");
		return rc;
	}
	if (!strncmp(method, "pg.", 3)) { /* protection groups: their table is in pg.c */
		pthread_mutex_lock(&c->op_lock);
		int rc = rod_pg_call(c->pg, method, params, result, errmsg);
		pthread_mutex_unlock(&c->op_lock);
		if (rc)
			rod_debug("ctl: %s failed: %s", method, *errmsg ? *errmsg : "?");
		return rc;
	}
	return ctl_fail(errmsg, ROD_CTL_ENOMETHOD, "unknown method \"%s\"", method);
}

int rod_ctl_call_as(struct rod_ctl *c, const char *who, const char *method, json_t *params, json_t **result,
		    char **errmsg)
{
	int rc = rod_ctl_call(c, method, params, result, errmsg);
	if (rc != ROD_CTL_ENOMETHOD && rod_events_is_change(method))
		rod_events_record(c->events, who, method, params, rc, *errmsg);
	return rc;
}

static int m_events_list(struct rod_ctl *c, json_t *params, json_t **res, char **msg)
{
	const char *since;
	uint64_t since_ns = 0;
	unsigned limit = 100;
	int rc;
	if ((rc = param_str(params, "since", false, &since, msg)))
		return rc;
	if (since) {
		struct tm tm = { 0 };
		const char *end = strptime(since, "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (!end || *end)
			return ctl_fail(msg, ROD_CTL_EINVAL, "since \"%s\" is not a UTC time like 2026-11-23T12:00:00Z", since);
		since_ns = (uint64_t)timegm(&tm) * 1000000000ull;
	}
	json_t *l = json_object_get(params, "limit");
	if (l && !json_is_null(l)) {
		if (!json_is_integer(l) || json_integer_value(l) < 1 || json_integer_value(l) > EVENTS_KEPT)
			return ctl_fail(msg, ROD_CTL_EINVAL, "limit must be a number from 1 to %d", EVENTS_KEPT);
		limit = (unsigned)json_integer_value(l);
	}
	*res = rod_events_list_json(c->events, since_ns, limit);
	return *res ? 0 : ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
}

static const char *err_kind(int code)
{
	switch (code) {
	case ROD_CTL_ENOENT: return "not_found";
	case ROD_CTL_EEXIST: return "conflict";
	case ROD_CTL_EINVAL: return "invalid";
	case ROD_CTL_ENOMETHOD: return "no_method";
	case ROD_CTL_EPARSE: return "parse";
	case ROD_CTL_EREQUEST: return "request";
	default: return "other";
	}
}

static char *error_response(json_t *id, int code, const char *message)
{
	json_t *r = json_pack("{s:s, s:O, s:{s:i, s:s, s:{s:s}}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
			      "error", "code", code, "message", message ? message : "error", "data", "kind",
			      err_kind(code));
	char *txt = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return txt;
}

char *rod_ctl_handle_text(struct rod_ctl *c, const char *req, size_t len)
{
	return rod_ctl_handle_text_as(c, "local", req, len);
}

char *rod_ctl_handle_text_as(struct rod_ctl *c, const char *who, const char *req, size_t len)
{
	json_error_t jerr;
	json_t *doc = json_loadb(req, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		char m[256];
		snprintf(m, sizeof(m), "request is not JSON: %s (column %d)", jerr.text, jerr.column);
		return error_response(NULL, ROD_CTL_EPARSE, m);
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		return error_response(NULL, ROD_CTL_EREQUEST,
				      "a request is one JSON object (batches are not supported)");
	}
	json_t *id = json_object_get(doc, "id");
	const char *ver = json_string_value(json_object_get(doc, "jsonrpc"));
	const char *method = json_string_value(json_object_get(doc, "method"));
	json_t *params = json_object_get(doc, "params");
	char *out;
	if (!ver || strcmp(ver, "2.0") || !method || (id && !json_is_string(id) && !json_is_integer(id) &&
						      !json_is_null(id))) {
		out = error_response(id, ROD_CTL_EREQUEST,
				     "not a JSON-RPC 2.0 request (needs \"jsonrpc\": \"2.0\", \"method\", \"id\")");
	} else {
		json_t *result;
		char *msg;
		int rc = rod_ctl_call_as(c, who, method, json_is_null(params) ? NULL : params, &result, &msg);
		if (!id) {
			out = NULL; /* a notification: no answer */
			json_decref(result);
		} else if (rc) {
			out = error_response(id, rc, msg);
		} else {
			json_t *r = json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
			out = json_dumps(r, JSON_COMPACT);
			json_decref(r);
		}
		free(msg);
	}
	json_decref(doc);
	return out;
}

int rod_ctl_replication_listen(struct rod_ctl *c, const char *addr)
{
	return rod_repl_listen(c->repl, addr);
}
