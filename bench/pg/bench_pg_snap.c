/* Group snapshot latency: N volumes with some data, a writer thread doing 4 KiB
 * write-through writes to them (so each snapshot waits behind real commits), K group
 * snapshots timed one by one. Prints JSON: min/median/p99/max in ms. */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rod/store.h"

static atomic_bool stop;
static struct rod_vol **vols;
static int nvols;
static atomic_ulong writes;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *writer(void *arg)
{
	uint8_t buf[ROD_GRAIN];
	unsigned seed = 1;
	(void)arg;
	for (uint64_t i = 0; !atomic_load(&stop); i++) {
		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = (uint8_t)(seed = seed * 1103515245u + 12345u) ;
		if (rod_vol_write(vols[i % (uint64_t)nvols], (i * 7919 % 4096) * ROD_GRAIN, buf, sizeof(buf), 0))
			break;
		atomic_fetch_add(&writes, 1);
	}
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	char tmpl[] = "/tmp/bench_pg.XXXXXX";
	bool own_dir = argc < 2 || !argv[1][0];   /* a temp dir, removed at the end */
	const char *dir = own_dir ? mkdtemp(tmpl) : argv[1];
	int n = argc > 2 ? atoi(argv[2]) : 16, k = argc > 3 ? atoi(argv[3]) : 50;
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "bench", .no_gc_thread = true };
	struct rod_store *s;
	char (*names)[ROD_NAME_MAX];
	const char **np;
	double *lat;
	pthread_t t;
	int rc;

	if (!dir || n < 1 || k < 1) {
		fprintf(stderr, "usage: bench_pg_snap [DIR] [VOLUMES] [SNAPSHOTS]\n");
		return 1;
	}
	if ((rc = rod_store_open(&o, &s))) {
		fprintf(stderr, "bench_pg_snap: cannot open a store in %s: %s\n", dir, strerror(-rc));
		return 1;
	}
	nvols = n;
	names = calloc((size_t)n, sizeof(*names));
	np = calloc((size_t)n, sizeof(*np));
	vols = calloc((size_t)n, sizeof(*vols));
	lat = calloc((size_t)k, sizeof(*lat));
	for (int i = 0; i < n; i++) {
		uint8_t buf[64 * 1024];
		snprintf(names[i], sizeof(names[i]), "bv-%02d", i);
		np[i] = names[i];
		memset(buf, i + 1, sizeof(buf));
		if (rod_vol_create(s, names[i], 1ull << 30, 512, NULL) || rod_vol_open(s, names[i], &vols[i]) ||
		    rod_vol_write(vols[i], 0, buf, sizeof(buf), 0)) {
			fprintf(stderr, "bench_pg_snap: cannot create volume %s\n", names[i]);
			return 1;
		}
	}
	pthread_create(&t, NULL, writer, NULL);
	for (int j = 0; j < k; j++) {
		char suffix[32];
		snprintf(suffix, sizeof(suffix), "b-%d", j);
		double t0 = now_ms();
		if ((rc = rod_vol_snapshot_group(s, np, (size_t)n, suffix, NULL))) {
			fprintf(stderr, "bench_pg_snap: group snapshot failed: %s\n", strerror(-rc));
			return 1;
		}
		lat[j] = now_ms() - t0;
		usleep(5000);
	}
	atomic_store(&stop, true);
	pthread_join(t, NULL);
	qsort(lat, (size_t)k, sizeof(*lat), cmp_d);
	printf("{\"bench\": \"pg_group_snapshot\", \"volumes\": %d, \"snapshots\": %d, \"writes_during\": %lu, "
	       "\"ms\": {\"min\": %.3f, \"median\": %.3f, \"p99\": %.3f, \"max\": %.3f}, \"target_ms\": 20}\n",
	       n, k, atomic_load(&writes), lat[0], lat[k / 2], lat[(k * 99) / 100 >= k ? k - 1 : (k * 99) / 100],
	       lat[k - 1]);
	for (int i = 0; i < n; i++)
		rod_vol_close(vols[i]);
	rod_store_close(s);
	if (own_dir) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			fprintf(stderr, "bench_pg_snap: could not remove %s\n", dir);
	}
	free(names);
	free(np);
	free(vols);
	free(lat);
	return 0;
}
