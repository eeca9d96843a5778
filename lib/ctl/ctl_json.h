/* Small JSON helpers shared by the control plane's modules (lib/ctl internal). */
#ifndef ROD_CTL_JSON_H
#define ROD_CTL_JSON_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "rod/store.h"

/* An integer member of o (0 when absent or not an integer). */
static inline uint64_t ctl_jint(json_t *o, const char *k)
{
	return (uint64_t)json_integer_value(json_object_get(o, k));
}

/* ns since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (UTC); null for 0 (never). */
static inline json_t *ctl_json_time(uint64_t ns)
{
	char buf[32];
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	if (!ns)
		return json_null();
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

/* Stores j, compact, under key in the store's metadata. */
static inline int ctl_put_json(struct rod_store *s, const char *key, json_t *j)
{
	char *txt = json_dumps(j, JSON_COMPACT);
	int rc;
	if (!txt)
		return -ENOMEM;
	rc = rod_store_meta_put(s, key, txt, strlen(txt));
	free(txt);
	return rc;
}

#endif
