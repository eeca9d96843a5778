/* Protection groups: volumes by name or glob pattern, crash-consistent group snapshots
 * (rod_vol_snapshot_group: one commit barrier across the members), a schedule, a
 * retention policy ("keep all for X, then N per day for Y"), restore by clone and revert
 * with a safety snapshot. Replication is not here yet (docs/protection.md).
 *
 * Persistence (rod_store_meta_*), values JSON:
 *   ctl/pg/<name>                 the group: members, patterns, schedule, retention, next run
 *   ctl/pgsnap/<name>/<suffix>    one group snapshot: when, why, the member snapshots
 * A member snapshot is the engine snapshot "VOL.<group>-<suffix>" (DESIGN.md: a '.'
 * separates volume and suffix; the suffix obeys the name rules).
 *
 * Membership is resolved when a snapshot is taken: the named volumes plus every live
 * volume matching a pattern, so volumes created later that match join by themselves.
 *
 * The scheduler thread ("rod-pg") wakes every second, takes the snapshots that are due
 * and destroys the ones retention expires (they go to the eradication queue like any
 * destroyed snapshot). A group whose run was missed while rodd was down gets one
 * catch-up snapshot: the next run is always the first slot after "now". */
#include "ctl_err.h"
#include "ctl_json.h"
#include "pg.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rod/ctl.h"
#include "rod/log.h"
#include "rod/util.h"

#define PFX_PG "ctl/pg/"
#define PFX_PGSNAP "ctl/pgsnap/"
#define PG_NAME_MAX 40         /* leaves room for "-YYYYMMDD-HHMMSS-N" in a 63-char suffix */
#define NS UINT64_C(1000000000)
#define DAY UINT64_C(86400)

enum pgsnap_kind { SNAP_MANUAL, SNAP_SCHEDULED, SNAP_SAFETY };
static const char *const kind_names[] = { "manual", "scheduled", "safety" };

struct pg_snap {
	char suffix[ROD_NAME_MAX];      /* the group's part: "20261123-120000" or the user's */
	uint64_t created_ns;
	enum pgsnap_kind kind;
	json_t *members;                /* [{"volume", "snapshot"}] */
};

struct pg {
	char name[ROD_NAME_MAX];
	uint64_t created_ns;
	json_t *volumes;                /* names */
	json_t *patterns;               /* globs */
	uint64_t every_s, at_s;         /* schedule; every_s 0: none; at_s: seconds after midnight UTC or ~0 */
	uint64_t next_ns;               /* next scheduled run */
	uint64_t keep_all_s, per_day, for_s; /* retention; keep_all_s 0 and per_day 0: keep all */
	bool has_retention;
	struct pg_snap *snaps;          /* by creation time */
	size_t n_snaps;
};

/* lock guards everything below; RPCs (already serialised by the ctl op_lock) and the
 * scheduler thread take it. Store calls are made under it: they do not call back. */
struct rod_pg {
	struct rod_store *store;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool running, stop;
	bool test_clock;                /* ROD_TEST_TIME_OFFSET set: pg.tick allowed */
	int64_t offset_ns;              /* added to the wall clock */
	struct pg **groups;
	size_t n_groups;
	struct rod_pg_repl_hooks repl;  /* replication (repl.c); set once at start */
};

/* ---- helpers ------------------------------------------------------------------------ */

static int store_fail(char **msg, int err, const char *what)
{
	switch (err) {
	case -ENOENT:
		return ctl_fail(msg, ROD_CTL_ENOENT, "%s: not found", what);
	case -EEXIST:
		return ctl_fail(msg, ROD_CTL_EEXIST, "%s: a snapshot of that name exists", what);
	case -EBUSY:
		return ctl_fail(msg, ROD_CTL_EEXIST, "%s: in use", what);
	case -EINVAL:
		return ctl_fail(msg, ROD_CTL_EINVAL, "%s: invalid argument", what);
	case -ENOSPC:
		return ctl_fail(msg, ROD_CTL_EOTHER, "%s: the array is out of space", what);
	default:
		return ctl_fail(msg, ROD_CTL_EOTHER, "%s: %s", what, strerror(-err));
	}
}

static uint64_t pg_now(struct rod_pg *p)
{
	return (uint64_t)((int64_t)rod_wall_ns() + p->offset_ns);
}

/* "90", "30s", "15m", "1h", "7d", "2w" -> seconds */
static int parse_duration(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	static const struct { char c; uint64_t mul; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', DAY }, { 'w', 7 * DAY },
	};
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || v > 100ull * 365 * DAY)
		return -EINVAL;
	if (!*end) {
		*out = v;
		return 0;
	}
	for (size_t i = 0; i < ROD_ARRAY_SIZE(units); i++)
		if (end[0] == units[i].c && !end[1]) {
			*out = v * units[i].mul;
			return 0;
		}
	return -EINVAL;
}

static int param_str(json_t *params, const char *key, bool required, const char **out, char **msg)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	*out = NULL;
	if (!v || json_is_null(v))
		return required ? ctl_fail(msg, ROD_CTL_EINVAL, "missing parameter \"%s\"", key) : 0;
	if (!json_is_string(v))
		return ctl_fail(msg, ROD_CTL_EINVAL, "parameter \"%s\" must be a string", key);
	*out = json_string_value(v);
	return 0;
}

/* A duration as seconds (number) or a string with s/m/h/d/w. */
static int param_dur(json_t *params, const char *key, bool *present, uint64_t *out, char **msg)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	*present = false;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		*out = (uint64_t)json_integer_value(v);
	else if (!json_is_string(v) || parse_duration(json_string_value(v), out))
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "%s must be a duration: a number with s, m, h, d or w (e.g. 15m, 1h, 7d)", key);
	*present = true;
	return 0;
}

/* Volume-name globs: name characters plus '*', '?' and [...] classes. */
static bool pattern_valid(const char *p)
{
	size_t n = strlen(p);
	if (!n || n >= ROD_NAME_MAX)
		return false;
	for (const char *c = p; *c; c++)
		if (!strchr("*?[]!-_", *c) && !((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
						 (*c >= '0' && *c <= '9')))
			return false;
	return true;
}

static bool json_has_str(json_t *arr, const char *s, size_t *idx)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		if (!strcmp(json_string_value(v), s)) {
			if (idx)
				*idx = i;
			return true;
		}
	}
	return false;
}

static struct pg *pg_find(struct rod_pg *p, const char *name)
{
	for (size_t i = 0; i < p->n_groups; i++)
		if (!strcmp(p->groups[i]->name, name))
			return p->groups[i];
	return NULL;
}

static int need_pg(struct rod_pg *p, json_t *params, struct pg **out, char **msg)
{
	const char *name;
	int rc = param_str(params, "name", true, &name, msg);
	if (rc)
		return rc;
	*out = pg_find(p, name);
	if (!*out)
		return ctl_fail(msg, ROD_CTL_ENOENT, "protection group \"%s\" not found (rodctl pg list shows groups)",
			    name);
	return 0;
}

static void pg_free_one(struct pg *g)
{
	if (!g)
		return;
	json_decref(g->volumes);
	json_decref(g->patterns);
	for (size_t i = 0; i < g->n_snaps; i++)
		json_decref(g->snaps[i].members);
	free(g->snaps);
	free(g);
}

/* "<group>-<suffix>": the suffix of each member snapshot. */
static int full_suffix(const struct pg *g, const char *suffix, char *out, size_t len)
{
	int n = snprintf(out, len, "%s-%s", g->name, suffix);
	return n > 0 && (size_t)n < len && n < ROD_NAME_MAX && rod_name_valid(out) ? 0 : -EINVAL;
}

/* ---- persistence ---------------------------------------------------------------------- */

static int pg_save(struct rod_pg *p, const struct pg *g)
{
	char key[128];
	json_t *o = json_pack("{s:s, s:I, s:O, s:O, s:I, s:I, s:I, s:b, s:I, s:I, s:I}", "name", g->name,
			      "created_ns", (json_int_t)g->created_ns, "volumes", g->volumes, "patterns",
			      g->patterns, "every_s", (json_int_t)g->every_s, "at_s", (json_int_t)g->at_s,
			      "next_ns", (json_int_t)g->next_ns, "has_retention", g->has_retention,
			      "keep_all_s", (json_int_t)g->keep_all_s, "per_day", (json_int_t)g->per_day,
			      "for_s", (json_int_t)g->for_s);
	int rc;
	if (!o)
		return -ENOMEM;
	snprintf(key, sizeof(key), PFX_PG "%s", g->name);
	rc = ctl_put_json(p->store, key, o);
	json_decref(o);
	return rc;
}

static void snap_key(const struct pg *g, const char *suffix, char *key, size_t len)
{
	if (snprintf(key, len, PFX_PGSNAP "%s/%s", g->name, suffix) >= (int)len)
		key[0] = 0; /* names are bounded: cannot happen */
}

static int snap_save(struct rod_pg *p, const struct pg *g, const struct pg_snap *sn)
{
	char key[256];
	json_t *o = json_pack("{s:s, s:I, s:s, s:O}", "suffix", sn->suffix, "created_ns",
			      (json_int_t)sn->created_ns, "kind", kind_names[sn->kind], "members", sn->members);
	int rc;
	if (!o)
		return -ENOMEM;
	snap_key(g, sn->suffix, key, sizeof(key));
	rc = ctl_put_json(p->store, key, o);
	json_decref(o);
	return rc;
}

static int snap_add_mem(struct pg *g, const struct pg_snap *sn)
{
	struct pg_snap *ns = realloc(g->snaps, (g->n_snaps + 1) * sizeof(*ns));
	size_t i;
	if (!ns)
		return -ENOMEM;
	g->snaps = ns;
	/* keep creation order (records load in key order) */
	for (i = g->n_snaps; i > 0 && g->snaps[i - 1].created_ns > sn->created_ns; i--)
		g->snaps[i] = g->snaps[i - 1];
	g->snaps[i] = *sn;
	g->n_snaps++;
	return 0;
}

static int load_pg(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_pg *p = arg;
	json_t *o = json_loadb(val, len, 0, NULL);
	struct pg *g = calloc(1, sizeof(*g));
	struct pg **ng;
	const char *name = json_string_value(json_object_get(o, "name"));
	if (!o || !g || !name || !rod_name_valid(name)) {
		rod_warn("pg: skipping unreadable protection group record %s", key);
		json_decref(o);
		free(g);
		return 0;
	}
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->created_ns = ctl_jint(o, "created_ns");
	g->volumes = json_incref(json_object_get(o, "volumes"));
	g->patterns = json_incref(json_object_get(o, "patterns"));
	if (!json_is_array(g->volumes)) {
		json_decref(g->volumes);
		g->volumes = json_array();
	}
	if (!json_is_array(g->patterns)) {
		json_decref(g->patterns);
		g->patterns = json_array();
	}
	g->every_s = ctl_jint(o, "every_s");
	g->at_s = ctl_jint(o, "at_s");
	g->next_ns = ctl_jint(o, "next_ns");
	g->has_retention = json_is_true(json_object_get(o, "has_retention"));
	g->keep_all_s = ctl_jint(o, "keep_all_s");
	g->per_day = ctl_jint(o, "per_day");
	g->for_s = ctl_jint(o, "for_s");
	json_decref(o);
	ng = realloc(p->groups, (p->n_groups + 1) * sizeof(*ng));
	if (!ng) {
		pg_free_one(g);
		return -ENOMEM;
	}
	p->groups = ng;
	p->groups[p->n_groups++] = g;
	return 0;
}

static int load_snap(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_pg *p = arg;
	const char *rest = key + strlen(PFX_PGSNAP), *slash = strchr(rest, '/');
	char gname[ROD_NAME_MAX];
	struct pg *g;
	json_t *o;
	struct pg_snap sn = { 0 };
	const char *suffix, *kind;

	if (!slash || (size_t)(slash - rest) >= sizeof(gname))
		return 0;
	memcpy(gname, rest, (size_t)(slash - rest));
	gname[slash - rest] = 0;
	g = pg_find(p, gname);
	o = json_loadb(val, len, 0, NULL);
	suffix = json_string_value(json_object_get(o, "suffix"));
	kind = json_string_value(json_object_get(o, "kind"));
	if (!g || !suffix || !json_is_array(json_object_get(o, "members"))) {
		rod_warn("pg: skipping group snapshot record %s (no such group or unreadable)", key);
		json_decref(o);
		return 0;
	}
	snprintf(sn.suffix, sizeof(sn.suffix), "%s", suffix);
	sn.created_ns = ctl_jint(o, "created_ns");
	for (size_t k = 0; k < ROD_ARRAY_SIZE(kind_names); k++)
		if (kind && !strcmp(kind, kind_names[k]))
			sn.kind = (enum pgsnap_kind)k;
	sn.members = json_incref(json_object_get(o, "members"));
	json_decref(o);
	if (snap_add_mem(g, &sn)) {
		json_decref(sn.members);
		return -ENOMEM;
	}
	return 0;
}

/* ---- membership and snapshots ------------------------------------------------------------ */

/* Live member volumes now: the named ones that exist plus every volume matching a
 * pattern, without duplicates, sorted. *names malloc'd array of pointers into *vols. */
static int members_resolve(struct rod_pg *p, const struct pg *g, struct rod_vol_info **vols,
			   const char ***names, size_t *n)
{
	size_t nv = 0, k = 0;
	int rc = rod_vol_list(p->store, vols, &nv);
	if (rc)
		return rc;
	*names = calloc(nv + 1, sizeof(**names));
	if (!*names) {
		free(*vols);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nv; i++) {
		const struct rod_vol_info *vi = &(*vols)[i];
		bool in = false;
		size_t j;
		json_t *v;
		if (vi->destroyed || vi->is_snapshot)
			continue;
		in = json_has_str(g->volumes, vi->name, NULL);
		json_array_foreach(g->patterns, j, v) {
			if (!in && fnmatch(json_string_value(v), vi->name, 0) == 0)
				in = true;
		}
		if (in)
			(*names)[k++] = vi->name;
	}
	*n = k;
	for (size_t i = 1; i < k; i++) /* insertion sort: groups are small */
		for (size_t j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
			const char *t = (*names)[j];
			(*names)[j] = (*names)[j - 1];
			(*names)[j - 1] = t;
		}
	return 0;
}

static struct pg_snap *snap_find(struct pg *g, const char *suffix)
{
	char full[ROD_SNAP_NAME_MAX];
	for (size_t i = 0; i < g->n_snaps; i++) {
		if (!strcmp(g->snaps[i].suffix, suffix))
			return &g->snaps[i];
		/* the member snapshots' suffix "<group>-<suffix>" is accepted too */
		snprintf(full, sizeof(full), "%s-%s", g->name, g->snaps[i].suffix);
		if (!strcmp(full, suffix))
			return &g->snaps[i];
	}
	return NULL;
}

/* Take a group snapshot with suffix (the group's part). 0 or -errno; -ENODATA when the
 * group has no members. *out (may be NULL) points at the new record. */
static int take_snap(struct rod_pg *p, struct pg *g, const char *suffix, enum pgsnap_kind kind,
		     struct pg_snap **out)
{
	struct rod_vol_info *vols = NULL, *info;
	const char **names = NULL;
	size_t n = 0;
	char full[ROD_NAME_MAX];
	struct pg_snap sn = { 0 };
	int rc;

	if (snap_find(g, suffix))
		return -EEXIST;
	if (full_suffix(g, suffix, full, sizeof(full)))
		return -EINVAL;
	rc = members_resolve(p, g, &vols, &names, &n);
	if (rc)
		return rc;
	if (!n) {
		free(names);
		free(vols);
		return -ENODATA;
	}
	info = calloc(n, sizeof(*info));
	rc = info ? rod_vol_snapshot_group(p->store, names, n, full, info) : -ENOMEM;
	if (!rc) {
		snprintf(sn.suffix, sizeof(sn.suffix), "%s", suffix);
		sn.created_ns = pg_now(p);
		sn.kind = kind;
		sn.members = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(sn.members, json_pack("{s:s, s:s}", "volume", names[i], "snapshot",
								    info[i].name));
		rc = snap_save(p, g, &sn);
		if (!rc)
			rc = snap_add_mem(g, &sn);
		if (rc) {
			json_decref(sn.members);
			/* the engine snapshots exist; without the record they are plain snapshots */
			rod_err("pg: group snapshot %s of %s taken but not recorded: %s", suffix, g->name,
				strerror(-rc));
		} else {
			rod_info("pg: group snapshot %s of %s taken (%zu volumes)", full, g->name, n);
			if (out)
				*out = snap_find(g, suffix);
		}
	}
	free(info);
	free(names);
	free(vols);
	return rc;
}

static void time_suffix(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / NS);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y%m%d-%H%M%S", &tm);
}

/* A timestamp suffix not used yet in this group ("-2", "-3"... when taken). */
static void free_time_suffix(struct pg *g, uint64_t ns, const char *prefix, char *buf, size_t len)
{
	char base[40];
	time_suffix(ns, base, sizeof(base));
	snprintf(buf, len, "%s%s", prefix, base);
	for (int k = 2; snap_find(g, buf) && k < 100; k++)
		snprintf(buf, len, "%s%s-%d", prefix, base, k);
}

/* Destroy the member snapshots of a group snapshot and drop its record. */
static int snap_destroy(struct rod_pg *p, struct pg *g, struct pg_snap *sn)
{
	size_t i, idx = (size_t)(sn - g->snaps);
	json_t *m;
	char key[256];
	int rc;

	json_array_foreach(sn->members, i, m) {
		const char *name = json_string_value(json_object_get(m, "snapshot"));
		rc = name ? rod_vol_destroy(p->store, name) : 0;
		if (rc && rc != -ENOENT)
			return rc;
	}
	snap_key(g, sn->suffix, key, sizeof(key));
	rc = rod_store_meta_del(p->store, key);
	if (rc && rc != -ENOENT)
		return rc;
	json_decref(sn->members);
	memmove(&g->snaps[idx], &g->snaps[idx + 1], (g->n_snaps - idx - 1) * sizeof(*sn));
	g->n_snaps--;
	return 0;
}

/* ---- schedule and retention ---------------------------------------------------------------- */

/* First slot strictly after now_ns: slots are at + k * every (seconds since the epoch,
 * UTC), so a daily schedule at 02:00 runs at 02:00 every day. */
static uint64_t next_slot(const struct pg *g, uint64_t now_ns)
{
	uint64_t now = now_ns / NS, anchor = g->at_s == UINT64_MAX ? 0 : g->at_s;
	uint64_t k = now >= anchor ? (now - anchor) / g->every_s + 1 : 0;
	return (anchor + k * g->every_s) * NS;
}

/* Should retention keep snapshot i (scheduled ones only) at now? Keep everything younger
 * than keep_all; for the next for_s, keep the oldest snapshot of each of per_day equal
 * slices of a UTC day; beyond that, nothing. */
static bool retained(const struct rod_pg *pr, const struct pg *g, size_t i, uint64_t now)
{
	const struct pg_snap *sn = &g->snaps[i];
	uint64_t age = now > sn->created_ns ? (now - sn->created_ns) / NS : 0;
	if (sn->kind != SNAP_SCHEDULED || !g->has_retention)
		return true;
	/* the last replicated snapshot and the one in transfer are the next base */
	if (pr && pr->repl.keep && pr->repl.keep(pr->repl.arg, g->name, sn->suffix))
		return true;
	if (age < g->keep_all_s)
		return true;
	if (age >= g->keep_all_s + g->for_s || !g->per_day)
		return false;
	uint64_t slice = DAY / g->per_day;
	uint64_t bucket = sn->created_ns / NS / slice;
	/* an older scheduled snapshot of the same slice wins, unless it is expiring itself */
	for (size_t k = 0; k < i; k++) {
		const struct pg_snap *o = &g->snaps[k];
		uint64_t oage = now > o->created_ns ? (now - o->created_ns) / NS : 0;
		if (o->kind == SNAP_SCHEDULED && o->created_ns / NS / slice == bucket &&
		    oage < g->keep_all_s + g->for_s)
			return false;
	}
	return true;
}

struct run_report {
	json_t *taken, *pruned;     /* may be NULL */
};

static void prune(struct rod_pg *p, struct pg *g, uint64_t now, struct run_report *rep)
{
	/* decide first, then destroy: removing one must not change the verdict on another */
	bool *drop = calloc(g->n_snaps + 1, sizeof(*drop));
	if (!drop)
		return;
	size_t n = g->n_snaps;
	for (size_t i = 0; i < n; i++)
		drop[i] = !retained(p, g, i, now);
	for (size_t i = n; i-- > 0;) {
		if (!drop[i])
			continue;
		char full[ROD_SNAP_NAME_MAX];
		snprintf(full, sizeof(full), "%s", g->snaps[i].suffix);
		int rc = snap_destroy(p, g, &g->snaps[i]);
		if (rc)
			rod_warn("pg: cannot expire snapshot %s of %s: %s", full, g->name, strerror(-rc));
		else {
			rod_info("pg: snapshot %s of %s expired by retention", full, g->name);
			if (rep && rep->pruned)
				json_array_append_new(rep->pruned, json_pack("{s:s, s:s}", "group", g->name,
									      "suffix", full));
		}
	}
	free(drop);
}

/* Take due snapshots, prune expired ones. Caller holds p->lock. */
static void run_due(struct rod_pg *p, struct run_report *rep)
{
	uint64_t now = pg_now(p);
	for (size_t i = 0; i < p->n_groups; i++) {
		struct pg *g = p->groups[i];
		if (g->every_s && now >= g->next_ns) {
			char suffix[ROD_NAME_MAX];
			bool first = !g->next_ns;
			if (!first) {
				/* One snapshot however many runs were missed (rodd down): a catch-up,
				 * not a burst. */
				free_time_suffix(g, now, "", suffix, sizeof(suffix));
				int rc = take_snap(p, g, suffix, SNAP_SCHEDULED, NULL);
				if (rc == -ENODATA)
					rod_debug("pg: %s has no members; scheduled snapshot skipped", g->name);
				else if (rc)
					rod_warn("pg: scheduled snapshot of %s failed: %s", g->name, strerror(-rc));
				else {
					if (rep && rep->taken)
						json_array_append_new(rep->taken, json_pack("{s:s, s:s}", "group",
											     g->name, "suffix", suffix));
					if (p->repl.snap_taken)
						p->repl.snap_taken(p->repl.arg, g->name, suffix);
				}
			}
			g->next_ns = next_slot(g, now);
			int rc = pg_save(p, g);
			if (rc)
				rod_warn("pg: cannot save the next run of %s: %s", g->name, strerror(-rc));
		}
		if (g->has_retention)
			prune(p, g, now, rep);
	}
}

static void *timer_main(void *arg)
{
	struct rod_pg *p = arg;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		run_due(p, NULL);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int rod_pg_new(struct rod_store *s, struct rod_pg **out)
{
	struct rod_pg *p = calloc(1, sizeof(*p));
	const char *off = getenv("ROD_TEST_TIME_OFFSET");
	int rc;
	if (!p)
		return -ENOMEM;
	p->store = s;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (off && *off) {
		p->test_clock = true;
		p->offset_ns = (int64_t)strtoll(off, NULL, 10) * (int64_t)NS;
		rod_warn("pg: test clock: ROD_TEST_TIME_OFFSET=%s seconds (pg.tick enabled)", off);
	}
	rc = rod_store_meta_scan(s, PFX_PG, load_pg, p);
	if (!rc)
		rc = rod_store_meta_scan(s, PFX_PGSNAP, load_snap, p);
	if (!rc) {
		rc = -pthread_create(&p->thread, NULL, timer_main, p);
		p->running = rc == 0;
		if (p->running)
			pthread_setname_np(p->thread, "rod-pg");
	}
	if (rc) {
		rod_pg_free(p);
		return rc;
	}
	rod_info("pg: %zu protection groups loaded", p->n_groups);
	*out = p;
	return 0;
}

void rod_pg_free(struct rod_pg *p)
{
	if (!p)
		return;
	if (p->running) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
	}
	for (size_t i = 0; i < p->n_groups; i++)
		pg_free_one(p->groups[i]);
	free(p->groups);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* ---- JSON views --------------------------------------------------------------------------- */

static json_t *dur_json(uint64_t s)
{
	char buf[32];
	if (s && s % DAY == 0)
		snprintf(buf, sizeof(buf), "%" PRIu64 "d", s / DAY);
	else if (s && s % 3600 == 0)
		snprintf(buf, sizeof(buf), "%" PRIu64 "h", s / 3600);
	else if (s && s % 60 == 0)
		snprintf(buf, sizeof(buf), "%" PRIu64 "m", s / 60);
	else
		snprintf(buf, sizeof(buf), "%" PRIu64 "s", s);
	return json_string(buf);
}

static json_t *snap_json(const struct pg *g, const struct pg_snap *sn)
{
	char full[ROD_SNAP_NAME_MAX];
	snprintf(full, sizeof(full), "%s-%s", g->name, sn->suffix);
	return json_pack("{s:s, s:s, s:o, s:I, s:s, s:O}", "suffix", sn->suffix, "snapshot_suffix", full,
			 "created", ctl_json_time(sn->created_ns), "created_s", (json_int_t)(sn->created_ns / NS), "kind",
			 kind_names[sn->kind], "members", sn->members);
}

static json_t *pg_json(struct rod_pg *p, const struct pg *g, bool detail)
{
	struct rod_vol_info *vols = NULL;
	const char **names = NULL;
	size_t n = 0;
	json_t *members = json_array(), *schedule = json_null(), *retention = json_null();
	uint64_t space = 0;
	char at[8];

	if (members_resolve(p, g, &vols, &names, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			struct rod_space sp;
			json_array_append_new(members, json_string(names[i]));
			if (detail && rod_vol_space(p->store, names[i], &sp) == 0)
				space += sp.snapshots;
		}
		free(names);
		free(vols);
	}
	if (g->every_s) {
		json_t *jat = json_null();
		if (g->at_s != UINT64_MAX) {
			snprintf(at, sizeof(at), "%02u:%02u", (unsigned)(g->at_s % DAY / 3600),
				 (unsigned)(g->at_s % 3600 / 60));
			jat = json_string(at);
		}
		schedule = json_pack("{s:o, s:I, s:o, s:o}", "every", dur_json(g->every_s), "every_s",
				     (json_int_t)g->every_s, "at", jat, "next_run", ctl_json_time(g->next_ns));
	}
	if (g->has_retention)
		retention = json_pack("{s:o, s:I, s:o}", "keep_all", dur_json(g->keep_all_s), "per_day",
				      (json_int_t)g->per_day, "for", dur_json(g->for_s));
	json_t *last = g->n_snaps ? snap_json(g, &g->snaps[g->n_snaps - 1]) : json_null();
	json_t *o = json_pack("{s:s, s:o, s:O, s:O, s:o, s:o, s:o, s:o, s:I}", "name", g->name, "created",
			      ctl_json_time(g->created_ns), "volumes", g->volumes, "patterns", g->patterns, "members",
			      members, "schedule", schedule, "retention", retention, "last_snapshot", last,
			      "snapshot_count", (json_int_t)g->n_snaps);
	if (detail) {
		json_t *snaps = json_array();
		for (size_t i = 0; i < g->n_snaps; i++)
			json_array_append_new(snaps, snap_json(g, &g->snaps[i]));
		json_object_set_new(o, "snapshots", snaps);
		json_object_set_new(o, "snapshot_space", json_integer((json_int_t)space));
		json_t *rj = p->repl.show ? p->repl.show(p->repl.arg, g->name) : NULL;
		json_object_set_new(o, "replication", rj ? rj : json_null());
	}
	return o;
}

/* ---- methods ------------------------------------------------------------------------------- */

typedef int (*pg_fn)(struct rod_pg *p, json_t *params, json_t **res, char **msg);

static int m_create(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	const char *name;
	int rc = param_str(params, "name", true, &name, msg);
	struct pg *g, **ng;
	if (rc)
		return rc;
	if (!rod_name_valid(name) || strlen(name) > PG_NAME_MAX)
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "\"%s\" is not a valid protection group name (letters, digits, '-' and '_', 1-%d characters)",
			    name, PG_NAME_MAX);
	if (pg_find(p, name))
		return ctl_fail(msg, ROD_CTL_EEXIST, "protection group \"%s\" already exists (rodctl pg show %s)", name,
			    name);
	g = calloc(1, sizeof(*g));
	ng = realloc(p->groups, (p->n_groups + 1) * sizeof(*ng));
	if (!g || !ng) {
		free(g);
		if (ng)
			p->groups = ng;
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	}
	p->groups = ng;
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->created_ns = pg_now(p);
	g->volumes = json_array();
	g->patterns = json_array();
	g->at_s = UINT64_MAX;
	if ((rc = pg_save(p, g))) {
		pg_free_one(g);
		return store_fail(msg, rc, "saving the protection group");
	}
	p->groups[p->n_groups++] = g;
	rod_info("pg: protection group %s created", name);
	*res = pg_json(p, g, true);
	return 0;
}

static int m_list(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	json_t *arr = json_array();
	(void)params;
	(void)msg;
	for (size_t i = 0; i < p->n_groups; i++)
		json_array_append_new(arr, pg_json(p, p->groups[i], false));
	*res = json_pack("{s:o}", "groups", arr);
	return 0;
}

static int m_show(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	int rc = need_pg(p, params, &g, msg);
	if (rc)
		return rc;
	*res = pg_json(p, g, true);
	return 0;
}

/* pg.add / pg.remove: {"name", "volume"} or {"name", "pattern"} */
static int change_members(struct rod_pg *p, json_t *params, json_t **res, char **msg, bool add)
{
	struct pg *g;
	const char *vol, *pat;
	int rc;
	if ((rc = need_pg(p, params, &g, msg)) || (rc = param_str(params, "volume", false, &vol, msg)) ||
	    (rc = param_str(params, "pattern", false, &pat, msg)))
		return rc;
	if (!vol == !pat)
		return ctl_fail(msg, ROD_CTL_EINVAL, "give a volume or a pattern (--pattern 'db-*'), not both");
	json_t *arr = vol ? g->volumes : g->patterns;
	const char *what = vol ? vol : pat;
	size_t idx;
	bool has = json_has_str(arr, what, &idx);
	if (add) {
		if (vol) {
			struct rod_vol_info vi;
			rc = rod_vol_info_get(p->store, vol, &vi);
			if (rc == -ENOENT || (!rc && vi.destroyed))
				return ctl_fail(msg, ROD_CTL_ENOENT, "volume \"%s\" not found (rodctl vol list shows volumes)",
					    vol);
			if (rc)
				return store_fail(msg, rc, vol);
			if (vi.is_snapshot)
				return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is a snapshot; groups hold volumes", vol);
		} else if (!pattern_valid(pat)) {
			return ctl_fail(msg, ROD_CTL_EINVAL,
				    "\"%s\" is not a volume name pattern (name characters with * ? and [...])", pat);
		}
		if (has)
			return ctl_fail(msg, ROD_CTL_EEXIST, "%s \"%s\" is already in protection group \"%s\"",
				    vol ? "volume" : "pattern", what, g->name);
		json_array_append_new(arr, json_string(what));
	} else {
		if (!has)
			return ctl_fail(msg, ROD_CTL_ENOENT, "%s \"%s\" is not in protection group \"%s\" (rodctl pg show %s)",
				    vol ? "volume" : "pattern", what, g->name, g->name);
		json_array_remove(arr, idx);
	}
	if ((rc = pg_save(p, g))) {
		if (add)
			json_array_remove(arr, json_array_size(arr) - 1);
		else
			json_array_insert_new(arr, idx, json_string(what));
		return store_fail(msg, rc, "saving the protection group");
	}
	rod_info("pg: %s %s %s protection group %s", vol ? vol : pat, add ? "added to" : "removed from",
		 vol ? "" : "(pattern)", g->name);
	*res = pg_json(p, g, false);
	return 0;
}

static int m_add(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	return change_members(p, params, res, msg, true);
}

static int m_remove(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	return change_members(p, params, res, msg, false);
}

static int m_destroy(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g = NULL;
	bool with = json_is_true(json_object_get(params, "with_snapshots"));
	char key[128];
	int rc = need_pg(p, params, &g, msg);
	size_t kept = g ? g->n_snaps : 0;
	if (rc)
		return rc;
	/* snapshots first: a failure leaves the group in place to retry */
	while (g->n_snaps) {
		struct pg_snap *sn = &g->snaps[g->n_snaps - 1];
		if (with) {
			rc = snap_destroy(p, g, sn);
		} else {
			/* the member snapshots stay, as plain snapshots of their volumes */
			snap_key(g, sn->suffix, key, sizeof(key));
			rc = rod_store_meta_del(p->store, key);
			if (rc == 0 || rc == -ENOENT) {
				rc = 0;
				json_decref(sn->members);
				g->n_snaps--;
			}
		}
		if (rc)
			return store_fail(msg, rc, "removing the group's snapshots");
	}
	snprintf(key, sizeof(key), PFX_PG "%s", g->name);
	rc = rod_store_meta_del(p->store, key);
	if (rc && rc != -ENOENT)
		return store_fail(msg, rc, "deleting the protection group");
	for (size_t i = 0; i < p->n_groups; i++)
		if (p->groups[i] == g) {
			p->groups[i] = p->groups[--p->n_groups];
			break;
		}
	rod_info("pg: protection group %s destroyed (%zu snapshots %s)", g->name, kept,
		 with ? "destroyed" : "kept");
	*res = json_pack("{s:s, s:I, s:b}", "name", g->name, "snapshots", (json_int_t)kept, "snapshots_destroyed",
			 with);
	pg_free_one(g);
	return 0;
}

static int m_snap(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	const char *suffix;
	char buf[ROD_NAME_MAX], full[ROD_NAME_MAX];
	struct pg_snap *sn = NULL;
	int rc;
	if ((rc = need_pg(p, params, &g, msg)) || (rc = param_str(params, "suffix", false, &suffix, msg)))
		return rc;
	if (!suffix) {
		free_time_suffix(g, pg_now(p), "", buf, sizeof(buf));
		suffix = buf;
	}
	if (!rod_name_valid(suffix) || full_suffix(g, suffix, full, sizeof(full)))
		return ctl_fail(msg, ROD_CTL_EINVAL,
			    "suffix \"%s\" is not valid: \"%s-SUFFIX\" must be 1-63 letters, digits, '-' or '_'",
			    suffix, g->name);
	rc = take_snap(p, g, suffix, SNAP_MANUAL, &sn);
	if (rc == -ENODATA)
		return ctl_fail(msg, ROD_CTL_EINVAL, "protection group \"%s\" has no volumes (rodctl pg add %s VOLUME)",
			    g->name, g->name);
	if (rc == -EEXIST)
		return ctl_fail(msg, ROD_CTL_EEXIST, "group snapshot \"%s\" of \"%s\" already exists (or a member "
			    "snapshot named VOL.%s does)", suffix, g->name, full);
	if (rc)
		return store_fail(msg, rc, "taking the group snapshot");
	*res = snap_json(g, sn);
	return 0;
}

static int m_schedule(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	uint64_t every = 0, at = UINT64_MAX;
	bool has_every, off = json_is_true(json_object_get(params, "off"));
	const char *at_s;
	int rc;
	if ((rc = need_pg(p, params, &g, msg)) || (rc = param_dur(params, "every", &has_every, &every, msg)) ||
	    (rc = param_str(params, "at", false, &at_s, msg)))
		return rc;
	if (!off && (!has_every || every < 60))
		return ctl_fail(msg, ROD_CTL_EINVAL, "a schedule needs --every DURATION of at least 1m (e.g. 15m, 1h, 1d), "
			    "or --off");
	if (at_s) {
		unsigned hh, mm;
		char extra;
		if (sscanf(at_s, "%u:%u%c", &hh, &mm, &extra) != 2 || hh > 23 || mm > 59)
			return ctl_fail(msg, ROD_CTL_EINVAL, "--at takes a time of day HH:MM (UTC), e.g. 02:30");
		at = hh * 3600ull + mm * 60ull;
	}
	uint64_t o_every = g->every_s, o_at = g->at_s, o_next = g->next_ns;
	g->every_s = off ? 0 : every;
	g->at_s = off ? UINT64_MAX : at;
	g->next_ns = off ? 0 : next_slot(g, pg_now(p));
	if ((rc = pg_save(p, g))) {
		g->every_s = o_every;
		g->at_s = o_at;
		g->next_ns = o_next;
		return store_fail(msg, rc, "saving the schedule");
	}
	*res = pg_json(p, g, false);
	return 0;
}

static int m_retention(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	uint64_t keep_all = 0, for_s = 0;
	bool has_keep, has_for, off = json_is_true(json_object_get(params, "off"));
	json_t *jpd = json_object_get(params, "per_day");
	int rc;
	if ((rc = need_pg(p, params, &g, msg)) || (rc = param_dur(params, "keep_all", &has_keep, &keep_all, msg)) ||
	    (rc = param_dur(params, "for", &has_for, &for_s, msg)))
		return rc;
	if (jpd && !json_is_null(jpd) && (!json_is_integer(jpd) || json_integer_value(jpd) < 0 ||
					  json_integer_value(jpd) > 1440))
		return ctl_fail(msg, ROD_CTL_EINVAL, "--then-per-day takes a number from 0 to 1440");
	uint64_t per_day = jpd && json_is_integer(jpd) ? (uint64_t)json_integer_value(jpd) : 0;
	if (!off && !has_keep)
		return ctl_fail(msg, ROD_CTL_EINVAL, "retention needs --keep-all DURATION (then optionally "
			    "--then-per-day N --for DURATION), or --off");
	if (!off && (per_day > 0) != (has_for && for_s > 0))
		return ctl_fail(msg, ROD_CTL_EINVAL, "--then-per-day N and --for DURATION go together");
	struct pg o = *g;
	g->has_retention = !off;
	g->keep_all_s = off ? 0 : keep_all;
	g->per_day = off ? 0 : per_day;
	g->for_s = off ? 0 : for_s;
	if ((rc = pg_save(p, g))) {
		g->has_retention = o.has_retention;
		g->keep_all_s = o.keep_all_s;
		g->per_day = o.per_day;
		g->for_s = o.for_s;
		return store_fail(msg, rc, "saving the retention policy");
	}
	*res = pg_json(p, g, false);
	return 0;
}

static int need_snap(struct pg *g, json_t *params, struct pg_snap **out, char **msg)
{
	const char *suffix;
	int rc = param_str(params, "snapshot", true, &suffix, msg);
	if (rc)
		return rc;
	*out = snap_find(g, suffix);
	if (!*out)
		return ctl_fail(msg, ROD_CTL_ENOENT, "protection group \"%s\" has no snapshot \"%s\" (rodctl pg show %s)",
			    g->name, suffix, g->name);
	return 0;
}

/* Clone every member snapshot into PREFIX<volume>. Names are checked before the first
 * clone; a failure half way destroys the clones made so far. */
static int m_restore(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	struct pg_snap *sn;
	const char *prefix;
	int rc;
	size_t i, done = 0;
	json_t *m, *out;
	char name[ROD_SNAP_NAME_MAX];
	if ((rc = need_pg(p, params, &g, msg)) || (rc = need_snap(g, params, &sn, msg)) ||
	    (rc = param_str(params, "clone_prefix", true, &prefix, msg)))
		return rc;
	json_array_foreach(sn->members, i, m) {
		struct rod_vol_info vi;
		const char *vol = json_string_value(json_object_get(m, "volume"));
		const char *snap = json_string_value(json_object_get(m, "snapshot"));
		if (snprintf(name, sizeof(name), "%s%s", prefix, vol ? vol : "") >= ROD_NAME_MAX ||
		    !rod_name_valid(name))
			return ctl_fail(msg, ROD_CTL_EINVAL, "clone name \"%s\" is not a valid volume name (1-63 letters, "
				    "digits, '-' or '_')", name);
		if (rod_vol_info_get(p->store, name, &vi) == 0)
			return ctl_fail(msg, ROD_CTL_EEXIST, "volume \"%s\" already exists; choose another --clone-prefix",
				    name);
		if (!snap || rod_vol_info_get(p->store, snap, &vi) || vi.destroyed)
			return ctl_fail(msg, ROD_CTL_ENOENT, "member snapshot \"%s\" is gone (destroyed?)", snap ? snap : "?");
	}
	out = json_array();
	json_array_foreach(sn->members, i, m) {
		const char *vol = json_string_value(json_object_get(m, "volume"));
		const char *snap = json_string_value(json_object_get(m, "snapshot"));
		snprintf(name, sizeof(name), "%s%s", prefix, vol);
		rc = rod_vol_clone(p->store, snap, name, NULL);
		if (rc)
			break;
		done++;
		json_array_append_new(out, json_pack("{s:s, s:s}", "snapshot", snap, "volume", name));
	}
	if (rc) {
		json_array_foreach(out, i, m) {
			const char *v = json_string_value(json_object_get(m, "volume"));
			if (rod_vol_destroy(p->store, v) == 0)
				rod_vol_eradicate(p->store, v);
		}
		json_decref(out);
		return store_fail(msg, rc, "cloning the group snapshot");
	}
	rod_info("pg: group snapshot %s of %s cloned into %zu volumes (prefix %s)", sn->suffix, g->name, done,
		 prefix);
	*res = json_pack("{s:s, s:s, s:o}", "group", g->name, "snapshot", sn->suffix, "clones", out);
	return 0;
}

/* Revert every member in place to its snapshot, after a safety group snapshot of the
 * members' current data (kind "safety": retention never removes it). */
static int m_revert(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	struct pg_snap *sn, *safety = NULL;
	int rc;
	size_t i, n;
	json_t *m;
	if ((rc = need_pg(p, params, &g, msg)) || (rc = need_snap(g, params, &sn, msg)))
		return rc;
	n = json_array_size(sn->members);
	const char **vols = calloc(n + 1, sizeof(*vols));
	if (!vols)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	json_array_foreach(sn->members, i, m) {
		struct rod_vol_info vi, si;
		vols[i] = json_string_value(json_object_get(m, "volume"));
		const char *snap = json_string_value(json_object_get(m, "snapshot"));
		if (!vols[i] || rod_vol_info_get(p->store, vols[i], &vi) || vi.destroyed ||
		    !snap || rod_vol_info_get(p->store, snap, &si) || si.destroyed) {
			rc = ctl_fail(msg, ROD_CTL_ENOENT, "member %s or its snapshot %s is gone; revert the others with "
				  "rodctl vol revert", vols[i] ? vols[i] : "?", snap ? snap : "?");
			free(vols);
			return rc;
		}
		if (vi.size != si.size) {
			rc = ctl_fail(msg, ROD_CTL_EINVAL, "volume %s was resized since the snapshot; resize it back to %" PRIu64
				  " bytes first", vols[i], si.size);
			free(vols);
			return rc;
		}
	}
	/* the safety snapshot covers exactly the volumes about to change */
	char suffix[ROD_NAME_MAX], full[ROD_NAME_MAX];
	free_time_suffix(g, pg_now(p), "safety-", suffix, sizeof(suffix));
	struct pg_snap tmp = { .kind = SNAP_SAFETY };
	rc = full_suffix(g, suffix, full, sizeof(full));
	struct rod_vol_info *info = calloc(n, sizeof(*info));
	if (!rc)
		rc = info ? rod_vol_snapshot_group(p->store, vols, n, full, info) : -ENOMEM;
	if (!rc) {
		snprintf(tmp.suffix, sizeof(tmp.suffix), "%s", suffix);
		tmp.created_ns = pg_now(p);
		tmp.members = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(tmp.members, json_pack("{s:s, s:s}", "volume", vols[i], "snapshot",
								     info[i].name));
		rc = snap_save(p, g, &tmp);
		if (!rc)
			rc = snap_add_mem(g, &tmp);
		if (rc)
			json_decref(tmp.members);
		sn = snap_find(g, json_string_value(json_object_get(params, "snapshot"))); /* snaps moved */
		safety = snap_find(g, suffix);
	}
	free(info);
	if (rc || !sn || !safety) {
		free(vols);
		return store_fail(msg, rc ? rc : -EIO, "taking the safety snapshot (nothing was reverted)");
	}
	json_t *out = json_array();
	json_array_foreach(sn->members, i, m) {
		const char *snap = json_string_value(json_object_get(m, "snapshot"));
		rc = rod_vol_revert(p->store, vols[i], snap);
		if (rc)
			break;
		json_array_append_new(out, json_pack("{s:s, s:s}", "volume", vols[i], "snapshot", snap));
	}
	free(vols);
	if (rc) {
		json_decref(out);
		return store_fail(msg, rc, "reverting (some members may be reverted; the safety snapshot has their "
				  "data from before)");
	}
	rod_info("pg: %s reverted to %s (safety snapshot %s)", g->name, sn->suffix, safety->suffix);
	*res = json_pack("{s:s, s:s, s:s, s:o}", "group", g->name, "snapshot", sn->suffix, "safety_snapshot",
			 safety->suffix, "reverted", out);
	return 0;
}

/* Delete one group snapshot (its member snapshots go to the eradication queue). */
static int m_snap_destroy(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	struct pg *g;
	struct pg_snap *sn;
	char suffix[ROD_NAME_MAX];
	int rc;
	if ((rc = need_pg(p, params, &g, msg)) || (rc = need_snap(g, params, &sn, msg)))
		return rc;
	snprintf(suffix, sizeof(suffix), "%s", sn->suffix);
	if ((rc = snap_destroy(p, g, sn)))
		return store_fail(msg, rc, "destroying the group snapshot");
	*res = json_pack("{s:s, s:s}", "group", g->name, "snapshot", suffix);
	return 0;
}

/* Tests only (rodd started with ROD_TEST_TIME_OFFSET): move the scheduler's clock forward
 * by "advance" seconds and run the scheduler now. */
static int m_tick(struct rod_pg *p, json_t *params, json_t **res, char **msg)
{
	uint64_t adv = 0;
	bool has;
	int rc;
	if (!p->test_clock)
		return ctl_fail(msg, ROD_CTL_EINVAL, "pg.tick is for tests: start rodd with ROD_TEST_TIME_OFFSET=0 to use it");
	if ((rc = param_dur(params, "advance", &has, &adv, msg)))
		return rc;
	p->offset_ns += (int64_t)(adv * NS);
	struct run_report rep = { json_array(), json_array() };
	run_due(p, &rep);
	*res = json_pack("{s:o, s:I, s:I, s:o, s:o}", "now", ctl_json_time(pg_now(p)), "now_s",
			 (json_int_t)(pg_now(p) / NS), "offset_s",
			 (json_int_t)(p->offset_ns / (int64_t)NS), "taken", rep.taken, "pruned", rep.pruned);
	return 0;
}

static const struct {
	const char *name;
	pg_fn fn;
} pg_methods[] = {
	{ "pg.create", m_create },
	{ "pg.list", m_list },
	{ "pg.show", m_show },
	{ "pg.add", m_add },
	{ "pg.remove", m_remove },
	{ "pg.destroy", m_destroy },
	{ "pg.snap", m_snap },
	{ "pg.snap.destroy", m_snap_destroy },
	{ "pg.schedule", m_schedule },
	{ "pg.retention", m_retention },
	{ "pg.restore", m_restore },
	{ "pg.revert", m_revert },
	{ "pg.tick", m_tick },
};

int rod_pg_call(struct rod_pg *p, const char *method, json_t *params, json_t **res, char **msg)
{
	*res = NULL;
	*msg = NULL;
	if (!p)
		return ctl_fail(msg, ROD_CTL_EOTHER, "protection groups are not available");
	for (size_t i = 0; i < ROD_ARRAY_SIZE(pg_methods); i++) {
		if (strcmp(pg_methods[i].name, method))
			continue;
		pthread_mutex_lock(&p->lock);
		int rc = pg_methods[i].fn(p, params, res, msg);
		pthread_mutex_unlock(&p->lock);
		if (rc == 0 && !*res)
			return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
		return rc;
	}
	return ctl_fail(msg, ROD_CTL_ENOMETHOD, "unknown method \"%s\"", method);
}

/* ---- replication support (repl.c) ------------------------------------------------------- */

void rod_pg_set_repl_hooks(struct rod_pg *p, const struct rod_pg_repl_hooks *h)
{
	pthread_mutex_lock(&p->lock);
	p->repl = *h;
	pthread_mutex_unlock(&p->lock);
}

int rod_pg_snap_get(struct rod_pg *p, const char *group, const char *suffix, char *suffix_out, size_t len,
		    uint64_t *created_ns, json_t **members)
{
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	struct pg *g = pg_find(p, group);
	struct pg_snap *sn = NULL;
	if (!g)
		rc = -ENOENT;
	else if (suffix)
		rc = (sn = snap_find(g, suffix)) ? 0 : -ENOENT;
	else if (!g->n_snaps)
		rc = -ENODATA;
	else /* newest: snaps are in creation order; safety snapshots are not replicated */
		for (size_t i = g->n_snaps; i-- > 0 && !sn;)
			if (g->snaps[i].kind != SNAP_SAFETY)
				sn = &g->snaps[i];
	if (!rc && !sn)
		rc = -ENODATA;
	if (!rc) {
		snprintf(suffix_out, len, "%s", sn->suffix);
		if (created_ns)
			*created_ns = sn->created_ns;
		if (members)
			*members = json_deep_copy(sn->members);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int rod_pg_snap_take(struct rod_pg *p, const char *group, char *suffix_out, size_t len)
{
	int rc;
	char buf[ROD_NAME_MAX];
	pthread_mutex_lock(&p->lock);
	struct pg *g = pg_find(p, group);
	if (!g) {
		rc = -ENOENT;
	} else {
		free_time_suffix(g, pg_now(p), "", buf, sizeof(buf));
		rc = take_snap(p, g, buf, SNAP_MANUAL, NULL);
		if (!rc)
			snprintf(suffix_out, len, "%s", buf);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}
