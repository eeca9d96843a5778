/* The audit log (see events.h). Records are ctl/event/<seq %016x> → JSON
 * {"seq", "time", "time_ns", "who", "method", "params", "ok", "error"}; the key order
 * is the time order. At most `max` are kept: each record beyond deletes the oldest. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "rod/log.h"
#include "rod/util.h"

#define PFX_EVENT "ctl/event/"

struct rod_events {
	struct rod_store *store;
	unsigned max;
	pthread_mutex_t lock;   /* guards first/next and orders records */
	uint64_t first, next;   /* oldest kept sequence number; next to assign */
};

static int scan_bounds(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_events *ev = arg;
	(void)val;
	(void)len;
	uint64_t seq = strtoull(key + strlen(PFX_EVENT), NULL, 16);
	if (ev->next == 0 || seq < ev->first)
		ev->first = seq;
	if (seq + 1 > ev->next)
		ev->next = seq + 1;
	return 0;
}

int rod_events_open(struct rod_store *s, unsigned max, struct rod_events **out)
{
	struct rod_events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	ev->store = s;
	ev->max = max ? max : 1;
	pthread_mutex_init(&ev->lock, NULL);
	int rc = rod_store_meta_scan(s, PFX_EVENT, scan_bounds, ev);
	if (rc) {
		rod_events_free(ev);
		return rc;
	}
	if (ev->next == 0)
		ev->first = ev->next = 1;
	*out = ev;
	return 0;
}

void rod_events_free(struct rod_events *ev)
{
	if (!ev)
		return;
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

bool rod_events_is_change(const char *method)
{
	static const char *const reads[] = { ".list", ".show" };
	size_t n = strlen(method);
	for (size_t i = 0; i < ROD_ARRAY_SIZE(reads); i++) {
		size_t k = strlen(reads[i]);
		if (n >= k && !strcmp(method + n - k, reads[i]))
			return false;
	}
	/* array.fault (tests) is not recorded: recording it would be the first write the
	 * fault it just armed hits. */
	return strcmp(method, "array.space") && strcmp(method, "events") && strcmp(method, "array.fault");
}

/* A copy of params with every secret masked (keys naming a secret, token or password),
 * at any depth. */
static json_t *masked(json_t *v)
{
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) {
			if (strstr(k, "secret") || strstr(k, "token") || strstr(k, "password"))
				json_object_set_new(o, k, json_string("***"));
			else
				json_object_set_new(o, k, masked(x));
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
			json_array_append_new(a, masked(x));
		return a;
	}
	return v ? json_deep_copy(v) : json_object();
}

static void iso(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void rod_events_record(struct rod_events *ev, const char *who, const char *method, json_t *params, int rc,
		       const char *errmsg)
{
	if (!ev)
		return;
	uint64_t now = rod_wall_ns();
	char when[32], key[64];
	iso(now, when, sizeof(when));
	pthread_mutex_lock(&ev->lock);
	uint64_t seq = ev->next;
	json_t *o = json_pack("{s:I, s:s, s:I, s:s, s:s, s:o, s:b, s:o}", "seq", (json_int_t)seq, "time", when,
			      "time_ns", (json_int_t)now, "who", who ? who : "unknown", "method", method, "params",
			      masked(params), "ok", rc == 0, "error",
			      rc && errmsg ? json_string(errmsg) : json_null());
	char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	snprintf(key, sizeof(key), PFX_EVENT "%016" PRIx64, seq);
	int err = txt ? rod_store_meta_put(ev->store, key, txt, strlen(txt)) : -ENOMEM;
	free(txt);
	if (err) {
		rod_warn("events: cannot record %s by %s: %s", method, who, strerror(-err));
	} else {
		ev->next = seq + 1;
		/* bounded: drop the oldest beyond max */
		while (ev->next - ev->first > ev->max) {
			snprintf(key, sizeof(key), PFX_EVENT "%016" PRIx64, ev->first);
			int d = rod_store_meta_del(ev->store, key);
			if (d && d != -ENOENT) {
				rod_warn("events: cannot drop event %" PRIu64 ": %s", ev->first, strerror(-d));
				break;
			}
			ev->first++;
		}
	}
	pthread_mutex_unlock(&ev->lock);
}

struct list_scan {
	uint64_t since_ns;
	json_t *arr;
};

static int collect(void *arg, const char *key, const void *val, size_t len)
{
	struct list_scan *ls = arg;
	(void)key;
	json_t *o = json_loadb(val, len, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return 0;
	}
	if ((uint64_t)json_integer_value(json_object_get(o, "time_ns")) < ls->since_ns) {
		json_decref(o);
		return 0;
	}
	json_array_append_new(ls->arr, o);
	return 0;
}

json_t *rod_events_list_json(struct rod_events *ev, uint64_t since_ns, unsigned limit)
{
	struct list_scan ls = { since_ns, json_array() };
	if (!ls.arr)
		return NULL;
	rod_store_meta_scan(ev->store, PFX_EVENT, collect, &ls);
	size_t n = json_array_size(ls.arr);
	/* the newest `limit`, oldest first */
	while (limit && n > limit) {
		json_array_remove(ls.arr, 0);
		n--;
	}
	return json_pack("{s:o}", "events", ls.arr);
}
