/* Fault injection points (see fault.h). Spec syntax, as in ROD_FAULT:
 *   POINT[:KEY=VALUE]...[,POINT...]      "" or "off" disarms every point
 * POINT: segment_pwrite_fail, segment_pwrite_short, fdatasync_fail, enospc,
 *        rocksdb_write_fail, torn_tail, bitflip
 * KEY:   after=N  let N hits pass first (default 0)
 *        count=N  fire N times, then disarm (default 1; 0 = every hit)
 *        grain=G  bitflip only: the chunk written for grain G (4 KiB units of the
 *                 volume; default: the next data chunk of any volume) */
#include "fault.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/store.h"
#include "rod/util.h"

atomic_uint fault_armed;

static const char *const names[FAULT_N] = {
	[FAULT_SEG_PWRITE_FAIL] = "segment_pwrite_fail",
	[FAULT_SEG_PWRITE_SHORT] = "segment_pwrite_short",
	[FAULT_FDATASYNC_FAIL] = "fdatasync_fail",
	[FAULT_ENOSPC] = "enospc",
	[FAULT_ROCKSDB_WRITE_FAIL] = "rocksdb_write_fail",
	[FAULT_TORN_TAIL] = "torn_tail",
	[FAULT_BITFLIP] = "bitflip",
};

struct fault {
	uint64_t after, count, grain;
	uint64_t passed, fired;      /* hits let through, hits fired (since armed) */
	bool armed;
};

static pthread_mutex_t fault_m = PTHREAD_MUTEX_INITIALIZER;
static struct fault faults[FAULT_N];

/* fault_m held */
static bool fire_locked(enum fault_point p)
{
	struct fault *f = &faults[p];

	if (!f->armed)
		return false;
	if (f->passed < f->after) {
		f->passed++;
		return false;
	}
	f->fired++;
	if (f->count && f->fired >= f->count) {
		f->armed = false;
		atomic_fetch_and(&fault_armed, ~(1u << p));
	}
	rod_warn("store: fault injected: %s (hit %" PRIu64 ")", names[p], f->passed + f->fired);
	return true;
}

bool fault_fire(enum fault_point p)
{
	if (!(atomic_load(&fault_armed) & (1u << p)))
		return false;
	pthread_mutex_lock(&fault_m);
	bool r = fire_locked(p);
	pthread_mutex_unlock(&fault_m);
	return r;
}

bool fault_bitflip_fire(uint64_t grain)
{
	if (!(atomic_load(&fault_armed) & (1u << FAULT_BITFLIP)))
		return false;
	pthread_mutex_lock(&fault_m);
	bool r = false;
	if (faults[FAULT_BITFLIP].grain == UINT64_MAX || faults[FAULT_BITFLIP].grain == grain)
		r = fire_locked(FAULT_BITFLIP);
	pthread_mutex_unlock(&fault_m);
	return r;
}

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;

	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 0);
	return *end || errno ? -EINVAL : 0;
}

int rod_store_fault_set(const char *spec, char *err, size_t errlen)
{
	struct fault nf[FAULT_N] = { 0 };
	char *copy = strdup(spec ? spec : ""), *save = NULL;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	if (err && errlen)
		err[0] = '\0';
	if (strcmp(copy, "off") != 0) {
		for (char *pt = strtok_r(copy, ", \t", &save); pt && !rc; pt = strtok_r(NULL, ", \t", &save)) {
			char *save2 = NULL, *name = strtok_r(pt, ":", &save2);
			int p = -1;

			for (int i = 0; i < FAULT_N; i++)
				if (!strcmp(name, names[i]))
					p = i;
			if (p < 0) {
				if (err && errlen)
					snprintf(err, errlen, "unknown fault point \"%s\" (segment_pwrite_fail, "
						 "segment_pwrite_short, fdatasync_fail, enospc, rocksdb_write_fail, "
						 "torn_tail, bitflip)", name);
				rc = -EINVAL;
				break;
			}
			nf[p] = (struct fault){ .count = 1, .grain = UINT64_MAX, .armed = true };
			for (char *kv = strtok_r(NULL, ":", &save2); kv && !rc; kv = strtok_r(NULL, ":", &save2)) {
				char *eq = strchr(kv, '=');
				uint64_t *dst = NULL;

				if (eq) {
					*eq = '\0';
					dst = !strcmp(kv, "after") ? &nf[p].after : !strcmp(kv, "count") ? &nf[p].count :
					      !strcmp(kv, "grain") && p == FAULT_BITFLIP ? &nf[p].grain : NULL;
				}
				if (!dst || parse_u64(eq + 1, dst)) {
					if (err && errlen)
						snprintf(err, errlen, "fault %s: bad parameter \"%s%s%s\" (after=N, count=N%s)",
							 names[p], kv, eq ? "=" : "", eq ? eq + 1 : "",
							 p == FAULT_BITFLIP ? ", grain=G" : "");
					rc = -EINVAL;
				}
			}
		}
	}
	free(copy);
	if (rc)
		return rc;
	pthread_mutex_lock(&fault_m);
	unsigned mask = 0;
	for (int i = 0; i < FAULT_N; i++) {
		faults[i] = nf[i];
		if (nf[i].armed)
			mask |= 1u << i;
	}
	atomic_store(&fault_armed, mask);
	pthread_mutex_unlock(&fault_m);
	if (mask)
		rod_warn("store: fault injection armed: %s", spec);
	return 0;
}

size_t rod_store_fault_show(char *buf, size_t len)
{
	size_t n = 0;

	if (len)
		buf[0] = '\0';
	pthread_mutex_lock(&fault_m);
	for (int i = 0; i < FAULT_N; i++) {
		const struct fault *f = &faults[i];

		if (!f->armed && !f->fired)
			continue;
		int w = snprintf(buf + ROD_MIN(n, len), n < len ? len - n : 0,
				 "%s%s:after=%" PRIu64 ":count=%" PRIu64 ":fired=%" PRIu64 "%s", n ? "," : "",
				 names[i], f->after, f->count, f->fired, f->armed ? "" : ":spent");
		if (w > 0)
			n += (size_t)w;
	}
	pthread_mutex_unlock(&fault_m);
	return n;
}

static void init_env(void)
{
	const char *spec = getenv("ROD_FAULT");
	char err[256];

	if (spec && *spec && rod_store_fault_set(spec, err, sizeof(err)))
		rod_err("store: ROD_FAULT ignored: %s", err);
}

void fault_init_env(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, init_env);
}
