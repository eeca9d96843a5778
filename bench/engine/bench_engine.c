/* Storage engine benchmark: prints one JSON object.
 *
 *   bench_engine [--quick] [--no-reduction] [--dir DIR] [--secs S] [--copy-gb N] [--recovery-gb N]
 *
 * 4 KiB random writes (write-through) and reads at 1 and 2 threads with 32 I/Os in flight
 * per thread, sequential 1 MiB write/read throughput, snapshot/clone latency, range copy
 * latency for 1, 4 and 16 GiB of written source data (one call, and as a storm of 4 MiB
 * XCOPY-style segments), write amplification, and recovery time after kill -9 with N GiB
 * written. All data written is unique pseudo-random data. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rod/store.h"
#include "rod/util.h"

#define GiB ((uint64_t)1 << 30)
#define MiB ((uint64_t)1 << 20)
#define QD 32

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Unique data: a per-thread xorshift stream never repeats within a run. */
static void fill(uint8_t *buf, size_t len, uint64_t *st)
{
	uint64_t x = *st;

	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
	*st = x;
}

static struct rod_store *S;
static const char *g_dir;

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_engine: %s: %s\n", what, strerror(-rc));
	exit(1);
}

/* ---- random 4K with QD in flight per thread ---- */

struct slot {
	struct rod_io io;
	struct lt *owner;
	struct slot *next;
	uint8_t *buf;
};

struct lt {
	pthread_mutex_t m;
	pthread_cond_t c;
	struct slot *done;     /* completed ios to resubmit */
	struct rod_vol *v;
	bool write;
	uint64_t span;         /* grains */
	uint64_t rng, data;
	double until;
	uint64_t ops;
	int errors;
};

static void on_done(struct rod_io *io)
{
	struct slot *sl = io->priv;
	struct lt *t = sl->owner;

	pthread_mutex_lock(&t->m);
	sl->next = t->done;
	t->done = sl;
	pthread_cond_signal(&t->c);
	pthread_mutex_unlock(&t->m);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void submit(struct lt *t, struct slot *sl)
{
	sl->io = (struct rod_io){
		.op = t->write ? ROD_IO_WRITE : ROD_IO_READ, .vol = t->v,
		.off = (rnd(&t->rng) % t->span) * ROD_GRAIN, .len = ROD_GRAIN, .buf = sl->buf,
		.done = on_done, .priv = sl,
	};
	if (t->write)
		fill(sl->buf, ROD_GRAIN, &t->data);
	rod_io_submit(&sl->io);
}

static void *lt_main(void *arg)
{
	struct lt *t = arg;
	struct slot *slots = calloc(QD, sizeof(*slots));
	int inflight = QD;

	for (int i = 0; i < QD; i++) {
		slots[i].owner = t;
		slots[i].buf = aligned_alloc(4096, ROD_GRAIN);
		submit(t, &slots[i]);
	}
	for (;;) {
		struct slot *d;

		pthread_mutex_lock(&t->m);
		while (!t->done)
			pthread_cond_wait(&t->c, &t->m);
		d = t->done;
		t->done = NULL;
		pthread_mutex_unlock(&t->m);
		bool stop = now() >= t->until;
		while (d) {
			struct slot *n = d->next;

			if (d->io.result)
				t->errors++;
			t->ops++;
			if (stop)
				inflight--;
			else
				submit(t, d);
			d = n;
		}
		if (!inflight)
			break;
	}
	for (int i = 0; i < QD; i++)
		free(slots[i].buf);
	free(slots);
	return NULL;
}

static double rand_iops(struct rod_vol *v, bool write, int threads, uint64_t span, double secs)
{
	struct lt t[2];
	pthread_t th[2];
	double t0 = now();
	uint64_t ops = 0;

	for (int i = 0; i < threads; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		pthread_mutex_init(&t[i].m, NULL);
		pthread_cond_init(&t[i].c, NULL);
		t[i].v = v;
		t[i].write = write;
		t[i].span = span;
		t[i].rng = 0x1234567ull * (i + 1) + (uint64_t)(t0 * 1e6);
		t[i].data = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(t0 * 1e9) + i);
		t[i].until = t0 + secs;
		pthread_create(&th[i], NULL, lt_main, &t[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		ops += t[i].ops;
		if (t[i].errors)
			fprintf(stderr, "bench_engine: %d I/O errors\n", t[i].errors);
	}
	return ops / (now() - t0);
}

/* ---- sequential 1 MiB, 8 in flight ---- */

static double seq_mbps(struct rod_vol *v, bool write, uint64_t bytes, uint64_t *data)
{
	enum { N = 8 };
	struct lt t = { 0 };
	struct slot sl[N];
	uint64_t next = 0, done = 0;
	double t0 = now();

	pthread_mutex_init(&t.m, NULL);
	pthread_cond_init(&t.c, NULL);
	for (int i = 0; i < N; i++) {
		sl[i].owner = &t;
		sl[i].buf = aligned_alloc(4096, MiB);
	}
	for (int i = 0; i < N && next < bytes; i++, next += MiB) {
		sl[i].io = (struct rod_io){ .op = write ? ROD_IO_WRITE : ROD_IO_READ, .vol = v,
					    .off = next, .len = MiB, .buf = sl[i].buf,
					    .done = on_done, .priv = &sl[i] };
		if (write)
			fill(sl[i].buf, MiB, data);
		rod_io_submit(&sl[i].io);
	}
	while (done < bytes) {
		struct slot *d;

		pthread_mutex_lock(&t.m);
		while (!t.done)
			pthread_cond_wait(&t.c, &t.m);
		d = t.done;
		t.done = NULL;
		pthread_mutex_unlock(&t.m);
		while (d) {
			struct slot *n = d->next;

			if (d->io.result)
				die("sequential I/O", d->io.result);
			done += MiB;
			if (next < bytes) {
				d->io = (struct rod_io){ .op = write ? ROD_IO_WRITE : ROD_IO_READ, .vol = v,
							 .off = next, .len = MiB, .buf = d->buf,
							 .done = on_done, .priv = d };
				next += MiB;
				if (write)
					fill(d->buf, MiB, data);
				rod_io_submit(&d->io);
			}
			d = n;
		}
	}
	for (int i = 0; i < N; i++)
		free(sl[i].buf);
	return bytes / MiB / (now() - t0);
}

/* ---- recovery child ---- */

static int recovery_child(const char *dir, uint64_t bytes)
{
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "bench" };
	struct rod_store *s;
	struct rod_vol *v;
	uint64_t data = 0xabcdef12345ull;
	int rc = rod_store_open(&o, &s);

	if (!rc)
		rc = rod_vol_create(s, "r", bytes, 512, NULL);
	if (!rc)
		rc = rod_vol_open(s, "r", &v);
	if (rc)
		return 2;
	S = s;
	seq_mbps(v, true, bytes, &data);
	/* Killed right after the last acknowledgement: nothing is flushed or checkpointed. */
	kill(getpid(), SIGKILL);
	return 0;
}

int main(int argc, char **argv)
{
	double secs = 5;
	uint64_t copy_gb = 16, rec_gb = 10;
	bool quick = false, reads_only = false, no_reduction = false;
	char dirbuf[128] = "/tmp/rodbench.XXXXXX";
	const char *dir = NULL;

	if (argc == 4 && !strcmp(argv[1], "--recovery-child"))
		return recovery_child(argv[2], strtoull(argv[3], NULL, 0));
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
			secs = 2;
			copy_gb = 1;
			rec_gb = 1;
		} else if (!strcmp(argv[i], "--reads-only")) {
			reads_only = true;
		} else if (!strcmp(argv[i], "--no-reduction")) {
			no_reduction = true; /* dedupe, compression, encryption off (baseline) */
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--secs") && i + 1 < argc) {
			secs = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--copy-gb") && i + 1 < argc) {
			copy_gb = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--recovery-gb") && i + 1 < argc) {
			rec_gb = strtoull(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: %s [--quick] [--no-reduction] [--dir D] [--secs S] [--copy-gb N] [--recovery-gb N]\n",
				argv[0]);
			return 2;
		}
	}
	if (!dir) {
		if (!mkdtemp(dirbuf))
			return 1;
		dir = dirbuf;
	}
	g_dir = dir;
	char sdir[256], rdir[256];
	snprintf(sdir, sizeof(sdir), "%s/store", dir);
	snprintf(rdir, sizeof(rdir), "%s/recovery", dir);

	struct rod_store_opts o = { .dir = sdir, .create = true, .array_name = "bench",
				    .no_dedupe = no_reduction, .no_compress = no_reduction,
				    .no_encrypt = no_reduction };
	struct rod_store_stats st0, st1;
	struct rod_vol *rv, *src;
	int rc = rod_store_open(&o, &S);
	if (rc)
		die("open", rc);

	/* 4 KiB random, write-through. */
	uint64_t span = 4 * GiB / ROD_GRAIN;
	if ((rc = rod_vol_create(S, "rand", 4 * GiB, 512, NULL)) || (rc = rod_vol_open(S, "rand", &rv)))
		die("create", rc);
	if (reads_only) {
		/* Profiling aid: only the random read phases, on 256 MiB of written data. */
		uint64_t d = 77;
		seq_mbps(rv, true, 256 * MiB, &d);
		printf("{\"rand_read_4k_iops\": {\"t1_qd32\": %.0f, ", rand_iops(rv, false, 1, 256 * MiB / ROD_GRAIN, secs));
		printf("\"t2_qd32\": %.0f}}\n", rand_iops(rv, false, 2, 256 * MiB / ROD_GRAIN, secs));
		rod_vol_close(rv);
		rod_store_close(S);
		snprintf(sdir, sizeof(sdir), "rm -rf %s", dir);
		return system(sdir) ? 1 : 0;
	}
	rod_store_stats(S, &st0);
	double w1 = rand_iops(rv, true, 1, span, secs);
	double w2 = rand_iops(rv, true, 2, span, secs);
	rod_store_stats(S, &st1);
	double wa = (double)(st1.bytes_written_disk - st0.bytes_written_disk) /
		    (double)(st1.bytes_written_user - st0.bytes_written_user);
	double batch = (double)(st1.bytes_written_user - st0.bytes_written_user) / ROD_GRAIN /
		       (double)(st1.commits - st0.commits);
	/* Reads of written data: a 1 GiB region written sequentially first. */
	uint64_t data = 0x5555aaaa1234ull;
	seq_mbps(rv, true, GiB, &data);
	double r1 = rand_iops(rv, false, 1, GiB / ROD_GRAIN, secs);
	double r2 = rand_iops(rv, false, 2, GiB / ROD_GRAIN, secs);

	/* Sequential 1 MiB: fills the copy source. */
	uint64_t src_bytes = copy_gb * GiB;
	if ((rc = rod_vol_create(S, "src", src_bytes, 512, NULL)) || (rc = rod_vol_open(S, "src", &src)))
		die("create", rc);
	double seqw = seq_mbps(src, true, src_bytes, &data);
	double seqr = seq_mbps(src, false, ROD_MIN(src_bytes, 2 * GiB), &data);

	/* Snapshot and clone latency of the written volume. */
	double snap_max = 0, snap_sum = 0, clone_max = 0, clone_sum = 0;
	for (int i = 0; i < 10; i++) {
		char n[32];
		double t = now();

		snprintf(n, sizeof(n), "s%d", i);
		if ((rc = rod_vol_snapshot(S, "src", n, NULL)))
			die("snapshot", rc);
		t = now() - t;
		snap_sum += t;
		snap_max = t > snap_max ? t : snap_max;
		snprintf(n, sizeof(n), "c%d", i);
		t = now();
		if ((rc = rod_vol_clone(S, "src", n, NULL)))
			die("clone", rc);
		t = now() - t;
		clone_sum += t;
		clone_max = t > clone_max ? t : clone_max;
	}

	/* Range copy of 1, 4, 16 GiB of written data: one call, then a storm of 4 MiB
	 * segments (how VMware's XCOPY arrives). */
	printf("{\n  \"machine\": {\"cpus\": %ld},\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("  \"rand_write_4k_wt_iops\": {\"t1_qd32\": %.0f, \"t2_qd32\": %.0f},\n", w1, w2);
	printf("  \"rand_read_4k_iops\": {\"t1_qd32\": %.0f, \"t2_qd32\": %.0f},\n", r1, r2);
	printf("  \"write_amplification\": %.3f,\n  \"grains_per_commit\": %.1f,\n", wa, batch);
	printf("  \"seq_1m_write_mbps\": %.0f,\n  \"seq_1m_read_mbps\": %.0f,\n", seqw, seqr);
	printf("  \"snapshot_ms\": {\"avg\": %.3f, \"max\": %.3f},\n", snap_sum / 10 * 1e3, snap_max * 1e3);
	printf("  \"clone_ms\": {\"avg\": %.3f, \"max\": %.3f},\n", clone_sum / 10 * 1e3, clone_max * 1e3);
	printf("  \"range_copy\": [");
	uint64_t sizes[] = { 1, 4, 16 };
	bool first = true;
	for (int i = 0; i < 3; i++) {
		uint64_t n = sizes[i] * GiB;
		char name[32];
		struct rod_vol *d;

		if (n > src_bytes)
			continue;
		snprintf(name, sizeof(name), "dst%d", i);
		if ((rc = rod_vol_create(S, name, n, 512, NULL)) || (rc = rod_vol_open(S, name, &d)))
			die("create", rc);
		double t = now();
		if ((rc = rod_vol_copy(src, 0, d, 0, n)))
			die("copy", rc);
		double one = now() - t;
		/* storm: 4 MiB segments into a second destination */
		snprintf(name, sizeof(name), "storm%d", i);
		struct rod_vol *d2;
		if ((rc = rod_vol_create(S, name, n, 512, NULL)) || (rc = rod_vol_open(S, name, &d2)))
			die("create", rc);
		double smax = 0;
		t = now();
		for (uint64_t off = 0; off < n; off += 4 * MiB) {
			double t1 = now();
			if ((rc = rod_vol_copy(src, off, d2, off, 4 * MiB)))
				die("copy", rc);
			t1 = now() - t1;
			smax = t1 > smax ? t1 : smax;
		}
		double storm = now() - t;
		printf("%s\n    {\"gib\": %" PRIu64 ", \"one_call_ms\": %.3f, \"storm_4m_segments\": %" PRIu64
		       ", \"storm_total_ms\": %.1f, \"storm_segment_avg_ms\": %.3f, \"storm_segment_max_ms\": %.3f}",
		       first ? "" : ",", sizes[i], one * 1e3, n / (4 * MiB), storm * 1e3,
		       storm * 1e3 / (n / (4 * MiB)), smax * 1e3);
		first = false;
		rod_vol_close(d);
		rod_vol_close(d2);
	}
	printf("\n  ],\n");
	rod_vol_close(rv);
	rod_vol_close(src);
	rod_store_close(S);

	/* Recovery after kill -9 with rec_gb written. */
	char a_bytes[32];
	snprintf(a_bytes, sizeof(a_bytes), "%" PRIu64, rec_gb * GiB);
	pid_t pid = fork();
	if (pid == 0) {
		execl(argv[0], argv[0], "--recovery-child", rdir, a_bytes, (char *)NULL);
		_exit(3);
	}
	int wst;
	waitpid(pid, &wst, 0);
	struct rod_store_opts ro = { .dir = rdir, .no_gc_thread = true };
	double t = now();
	if ((rc = rod_store_open(&ro, &S)))
		die("reopen after kill", rc);
	double open_s = now() - t;
	struct rod_store_stats rs;
	rod_store_stats(S, &rs);
	rod_store_close(S);
	printf("  \"recovery\": {\"gib_written\": %" PRIu64 ", \"killed_by_sigkill\": %s, \"replay_ms\": %.1f, "
	       "\"records_replayed\": %" PRIu64 ", \"open_total_ms\": %.1f}\n}\n",
	       rec_gb, WIFSIGNALED(wst) ? "true" : "false", rs.recovery_ns / 1e6, rs.recovered_records,
	       open_s * 1e3);
	(void)quick;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf %s/store %s/recovery", dir, dir);
	if (system(cmd))
		return 1;
	if (dir == dirbuf)
		rmdir(dir);
	return 0;
}
