/* Cost of rod_vol_diff between two snapshots of a large, written volume: prints one JSON
 * object (docs/engine.md "Replication support").
 *
 *   bench_repl_diff [--dir D] [--size-gb N] [--changed-gb N] [--full]
 *
 * Writes the whole volume (unique grains that compress well, so the disk holds little),
 * snapshot a; changes --changed-gb as random 4 KiB grains, snapshot b; changes as much
 * again as 1 MiB extents, snapshot c; then times diff(a,b), diff(b,c), diff(a,c) and,
 * with --full, diff(NULL,c) (every mapped grain), with the walk's counters. The changes
 * are written with the volume in write-back mode and flushed (setup speed only). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rod/store.h"
#include "rod/util.h"
#include "../../lib/store/repl.h"

#define GiB ((uint64_t)1 << 30)
#define MiB ((uint64_t)1 << 20)
#define G ROD_GRAIN

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t xs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	xs ^= xs << 13;
	xs ^= xs >> 7;
	xs ^= xs << 17;
	return xs;
}

/* A unique grain that LZ4 shrinks to a few dozen bytes. */
static void grain(uint8_t *p, uint64_t tag)
{
	memset(p, 0, G);
	memcpy(p, &tag, 8);
	memcpy(p + 2048, &tag, 8);
	p[4095] = 1;
}

struct count {
	uint64_t extents, data_bytes;
};

static int cb(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind)
{
	struct count *c = arg;

	(void)off;
	c->extents++;
	if (kind == ROD_DIFF_DATA)
		c->data_bytes += len;
	return 0;
}

static void run_diff(struct rod_store *s, const char *base, const char *snap, bool last)
{
	struct repl_diff_stats st;
	struct count c = { 0 };
	double t = now(), load[3] = { 0 };
	int rc = repl_vol_diff(s, base, snap, 0, cb, &c, &st);

	t = now() - t;
	getloadavg(load, 3);
	printf("    {\"base\": \"%s\", \"snap\": \"%s\", \"rc\": %d, \"seconds\": %.4f, "
	       "\"method\": \"%s\", \"extents\": %" PRIu64 ", \"data_bytes\": %" PRIu64 ", "
	       "\"map_keys\": %" PRIu64 ", \"summary_keys\": %" PRIu64 ", \"range_entries\": %" PRIu64
	       ", \"resolves\": %" PRIu64 ", \"load1\": %.2f}%s\n",
	       base ? base : "", snap, rc, t,
	       st.method == REPL_DIFF_WINDOW ? "window" : st.method == REPL_DIFF_WINDOW_SCAN ?
	       "window_scan" : st.method == REPL_DIFF_FULL ? "full" :
	       st.method == REPL_DIFF_FULL_SCAN ? "full_scan" : "compare",
	       c.extents, c.data_bytes, st.map_keys, st.chg_keys, st.rng_entries, st.resolves,
	       load[0], last ? "" : ",");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	uint64_t size_gb = 16, changed_gb = 1;
	bool full = false;
	char tmpl[] = "/tmp/rodbench-diff.XXXXXX";
	struct rod_store *s;
	struct rod_vol *v;
	uint8_t *buf = malloc(4 * MiB);
	double t, t_fill, t_rand, t_seq, load[3];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--size-gb") && i + 1 < argc)
			size_gb = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--changed-gb") && i + 1 < argc)
			changed_gb = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--full"))
			full = true;
		else {
			fprintf(stderr, "usage: %s [--dir D] [--size-gb N] [--changed-gb N] [--full]\n", argv[0]);
			return 2;
		}
	}
	if (!dir && !(dir = mkdtemp(tmpl))) {
		perror("mkdtemp");
		return 1;
	}
	/* No background GC: it would rewrite the overwritten segments meanwhile (and make
	 * the close wait for a long pass); the diff does not depend on it. */
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "bench",
				    .no_gc_thread = true };
	if (rod_store_open(&o, &s) || rod_vol_create(s, "v", size_gb * GiB, 512, NULL) ||
	    rod_vol_open(s, "v", &v) || rod_vol_set_cache(s, "v", ROD_CACHE_WRITE_BACK)) {
		fprintf(stderr, "cannot set up the store in %s\n", dir);
		return 1;
	}
	/* Fill. */
	t = now();
	for (uint64_t off = 0; off < size_gb * GiB; off += 4 * MiB) {
		for (uint64_t i = 0; i < 4 * MiB / G; i++)
			grain(buf + i * G, off / G + i);
		if (rod_vol_write(v, off, buf, 4 * MiB, 0))
			return 1;
	}
	rod_vol_flush(v);
	t_fill = now() - t;
	rod_vol_snapshot(s, "v", "a", NULL);
	/* changed_gb as random 4 KiB grains. */
	t = now();
	for (uint64_t n = 0; n < changed_gb * GiB / G; n++) {
		uint64_t g = rnd() % (size_gb * GiB / G);

		grain(buf, (1ull << 40) + n);
		if (rod_vol_write(v, g * G, buf, G, 0))
			return 1;
	}
	rod_vol_flush(v);
	t_rand = now() - t;
	rod_vol_snapshot(s, "v", "b", NULL);
	/* as much again as 1 MiB extents. */
	t = now();
	for (uint64_t n = 0; n < changed_gb * GiB / MiB; n++) {
		uint64_t e = rnd() % (size_gb * GiB / MiB);

		for (uint64_t i = 0; i < MiB / G; i++)
			grain(buf + i * G, (2ull << 40) + n * 256 + i);
		if (rod_vol_write(v, e * MiB, buf, MiB, 0))
			return 1;
	}
	rod_vol_flush(v);
	t_seq = now() - t;
	rod_vol_snapshot(s, "v", "c", NULL);
	getloadavg(load, 3);
	printf("{\n  \"bench\": \"repl_diff\",\n  \"size_gb\": %" PRIu64 ", \"changed_gb\": %" PRIu64
	       ",\n  \"fill_seconds\": %.1f, \"change_random_seconds\": %.1f, "
	       "\"change_1m_seconds\": %.1f, \"load1_before_diffs\": %.2f,\n  \"diffs\": [\n",
	       size_gb, changed_gb, t_fill, t_rand, t_seq, load[0]);
	run_diff(s, "v.a", "v.b", false);
	run_diff(s, "v.b", "v.c", false);
	run_diff(s, "v.a", "v.c", !full);
	if (full)
		run_diff(s, NULL, "v.c", true);
	/* The fallback: the epoch current across a restart has no summary. */
	rod_vol_close(v);
	rod_store_close(s);
	o.create = false;
	if (rod_store_open(&o, &s) || rod_vol_open(s, "v", &v))
		return 1;
	grain(buf, 3ull << 40);
	rod_vol_write(v, 0, buf, G, 0);
	rod_vol_snapshot(s, "v", "d", NULL);
	printf("  ],\n  \"after_restart\": [\n");
	run_diff(s, "v.c", "v.d", true);
	printf("  ]\n}\n");
	rod_vol_close(v);
	rod_store_close(s);
	if (dir == tmpl) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
		if (system(cmd))
			return 1;
	}
	free(buf);
	return 0;
}
