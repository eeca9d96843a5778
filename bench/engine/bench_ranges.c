/* Range lookups with many range entries in one lineage: prints JSON.
 *
 *   bench_ranges [--dir DIR] [--secs S] [--counts 0,256,4096,16384]
 *
 * For each count N: a volume "d" is a clone of a written 256 MiB volume (one range entry
 * over everything), then receives N XCOPY-style copies of 16 KiB from a second written
 * volume, each at a source offset that keeps it from merging with its neighbour (so d has
 * N + 1 range entries, the first spanning all of them: the worst case for a lookup that
 * walks back over entries starting before the grain). Then single-thread 4 KiB random
 * reads of d (synchronous, page cache) and of the source for comparison; reported as
 * IOPS and microseconds per read (wall clock and CPU). Last, the time to flatten the last
 * clone completely (rod_vol_flatten, ROD_FLATTEN_ALL) and its reads after. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rod/store.h"

#define MiB ((uint64_t)1 << 20)
#define VOL (256 * MiB)
#define SEGLEN (16 * 1024)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_ranges: %s: %s\n", what, strerror(-rc));
	exit(1);
}

static void fill_vol(struct rod_store *s, const char *name, uint64_t seed)
{
	struct rod_vol *v;
	uint8_t *buf = malloc(MiB);
	uint64_t x = seed | 1;
	int rc;

	if ((rc = rod_vol_create(s, name, VOL, 512, NULL)) || (rc = rod_vol_open(s, name, &v)))
		die("create", rc);
	for (uint64_t off = 0; off < VOL; off += MiB) {
		for (size_t i = 0; i < MiB; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, 8);
		}
		if ((rc = rod_vol_write(v, off, buf, MiB, 0)))
			die("write", rc);
	}
	rod_vol_close(v);
	free(buf);
}

static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Reads per second (wall clock); *cpu_us: CPU time of this thread per read (steadier than
 * the wall clock on a loaded machine). */
static double read_rate(struct rod_store *s, const char *name, double secs, double *cpu_us)
{
	struct rod_vol *v;
	uint8_t buf[4096];
	uint64_t x = 88172645463325252ull, n = 0;
	double t0 = now(), t, c0 = cpu_now();
	int rc;

	if ((rc = rod_vol_open(s, name, &v)))
		die("open", rc);
	do {
		for (int i = 0; i < 256; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if ((rc = rod_vol_read(v, (x % (VOL / 4096)) * 4096, buf, sizeof(buf))))
				die("read", rc);
		}
		n += 256;
		t = now() - t0;
	} while (t < secs);
	*cpu_us = (cpu_now() - c0) * 1e6 / n;
	rod_vol_close(v);
	return n / t;
}

int main(int argc, char **argv)
{
	char tmpl[] = "/tmp/rodbr.XXXXXX", cmd[256], name[32];
	const char *dir = NULL;
	double secs = 2;
	uint64_t counts[16] = { 0, 256, 4096, 16384 };
	int ncounts = 4;
	struct rod_store *s;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--secs") && i + 1 < argc) {
			secs = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--counts") && i + 1 < argc) {
			char *p = argv[++i];

			ncounts = 0;
			while (*p && ncounts < 16) {
				counts[ncounts++] = strtoull(p, &p, 0);
				if (*p == ',')
					p++;
			}
		} else {
			fprintf(stderr, "usage: %s [--dir D] [--secs S] [--counts a,b,c]\n", argv[0]);
			return 2;
		}
	}
	if (!dir) {
		if (!mkdtemp(tmpl))
			return 1;
		dir = tmpl;
	}
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "bench",
				    .no_gc_thread = true };
	if ((rc = rod_store_open(&o, &s)))
		die("open store", rc);
	fill_vol(s, "base", 1);
	fill_vol(s, "src", 2);
	printf("{\n  \"bench\": \"ranges\", \"volume_mib\": %" PRIu64 ", \"copy_kib\": %d,\n",
	       VOL / MiB, SEGLEN / 1024);
	double cpu, r0 = read_rate(s, "src", secs, &cpu);

	printf("  \"source_read_iops\": %.0f, \"source_read_cpu_us\": %.2f,\n  \"runs\": [", r0, cpu);
	for (int c = 0; c < ncounts; c++) {
		struct rod_vol *d, *sv;
		uint64_t n = counts[c], slots = VOL / SEGLEN;
		double t;

		snprintf(name, sizeof(name), "d%d", c);
		if ((rc = rod_vol_clone(s, "base", name, NULL)) || (rc = rod_vol_open(s, name, &d)) ||
		    (rc = rod_vol_open(s, "src", &sv)))
			die("clone", rc);
		t = now();
		for (uint64_t i = 0; i < n; i++) {
			/* spread over the volume; the source offset differs per copy (no merge) */
			uint64_t slot = (i * 7919) % slots, soff = ((i * 104729) % slots) * SEGLEN;

			if ((rc = rod_vol_copy(sv, soff, d, slot * SEGLEN, SEGLEN)))
				die("copy", rc);
		}
		t = now() - t;
		rod_vol_close(sv);
		rod_vol_close(d);
		double r = read_rate(s, name, secs, &cpu);
		printf("%s\n    {\"copies\": %" PRIu64 ", \"copy_total_s\": %.2f, \"read_iops\": %.0f, "
		       "\"read_us\": %.2f, \"read_cpu_us\": %.2f}", c ? "," : "", n, t, r, 1e6 / r, cpu);
		fflush(stdout);
	}
	/* Flatten (ROD_FLATTEN_ALL) of the last clone: every grain of 256 MiB of written data
	 * becomes a block entry referencing the base's or the source's chunk. */
	if (ncounts) {
		double t = now(), cpu;
		uint32_t d0 = 0, d1 = 0;

		snprintf(name, sizeof(name), "d%d", ncounts - 1);
		rod_vol_depth(s, name, &d0);
		if ((rc = rod_vol_flatten(s, name, ROD_FLATTEN_ALL, NULL, NULL)))
			die("flatten", rc);
		t = now() - t;
		rod_vol_depth(s, name, &d1);
		double r = read_rate(s, name, secs, &cpu);
		printf("\n  ],\n  \"flatten_all\": {\"grains\": %" PRIu64 ", \"seconds\": %.2f, "
		       "\"depth_before\": %u, \"depth_after\": %u, \"read_iops_after\": %.0f, "
		       "\"read_cpu_us_after\": %.2f}\n}\n", VOL / 4096, t, d0, d1, r, cpu);
	} else {
		printf("\n  ]\n}\n");
	}
	rod_store_close(s);
	if (dir == tmpl) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
		if (system(cmd))
			return 1;
	}
	return 0;
}
