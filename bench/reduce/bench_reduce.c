/* Data reduction costs and ratios (prints JSON).
 *
 *   bench_reduce [FILE...]
 *   bench_reduce --dedupe MIB
 *   bench_reduce --pipeline SECS [--no-reduction]
 *
 * --pipeline: unique 4 KiB random writes, write-through, 2 threads x 32 in flight, on a
 * fresh store, for SECS: IOPS and CPU time per write of the whole process and of the
 * commit thread alone (/proc/self/task/N/stat of "rod-commit"), which on a shared
 * machine say more than IOPS: CPU time does not count the time other processes ran.
 *
 * Per 4 KiB block: fingerprint (HMAC-SHA-256), LZ4 as the engine keeps it (only when it
 * saves >= 1/8), AES-256-XTS, zstd level 1 as GC recompression would; times per block
 * on random and on the corpus. Ratios on the corpus (the FILEs cut in 4 KiB blocks, the
 * last one zero-padded; all-zero blocks skipped, as the engine stores them as zero
 * references): plain `lz4 -1`-style block compression (every block compressed, whatever
 * it saves), the engine's inline rule, plain zstd -1 and zstd -1 with the engine's rule.
 * Without FILEs the corpus is /usr/share/doc + /usr/lib/x86_64-linux-gnu read via
 * `tar cf -` (give files explicitly for a repeatable corpus). */
#include <dirent.h>
#include <fcntl.h>
#include <lz4.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../../lib/store/reduce.h"
#include "rod/store.h"
#include "rod/util.h"

#define G ROD_GRAIN

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint8_t *corpus;
static size_t clen, ccap;

static void add(const uint8_t *b, size_t n)
{
	if (clen + n > ccap) {
		ccap = (clen + n) * 2;
		corpus = realloc(corpus, ccap);
		if (!corpus)
			exit(1);
	}
	memcpy(corpus + clen, b, n);
	clen += n;
}

static void slurp(FILE *f, size_t limit)
{
	uint8_t b[1 << 16];
	size_t n;
	while (clen < limit && (n = fread(b, 1, sizeof(b), f)) > 0)
		add(b, n);
}

static int allzero(const uint8_t *b)
{
	for (size_t i = 0; i < G; i++)
		if (b[i])
			return 0;
	return 1;
}

/* --dedupe MIB: the same MIB of random data into 10 volumes of a fresh store, and into
 * the first one a second time at an offset that is not a multiple of 1 MiB (len + 7
 * grains): array logical vs physical, how much physical and segment space the copies
 * after the first one added, and the write rate. */
static int dedupe_run(uint64_t mib)
{
	char dir[] = "/tmp/rodbench-dedupe.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "dedupe", .no_gc_thread = true };
	struct rod_store *s;
	struct rod_space sp, sp1;
	uint64_t len = mib << 20, shift = len + 7 * G;
	uint8_t *buf = malloc(len);
	int rc = rod_store_open(&o, &s);
	if (rc || !buf)
		return 1;
	FILE *r = fopen("/dev/urandom", "rb");
	if (!r || fread(buf, 1, len, r) != len)
		return 1;
	fclose(r);
	double t0 = now(), t1 = 0;
	for (int i = 0; i < 10; i++) {
		char name[16];
		struct rod_vol *v;
		snprintf(name, sizeof(name), "copy%d", i);
		if (rod_vol_create(s, name, 2 * len + (1 << 20), 512, NULL) || rod_vol_open(s, name, &v))
			return 1;
		for (uint64_t off = 0; off < len; off += 1 << 20)
			if (rod_vol_write(v, off, buf + off, 1 << 20, 0))
				return 1;
		if (i == 0) {
			t1 = now() - t0;
			if (rod_store_space(s, &sp1))
				return 1;
			for (uint64_t off = 0; off < len; off += 1 << 20)
				if (rod_vol_write(v, shift + off, buf + off, 1 << 20, 0))
					return 1;
		}
		rod_vol_close(v);
	}
	double t = now() - t0;
	/* a fresh open: the space figures of a large store are cached for a while */
	rod_store_close(s);
	o.create = false;
	if (rod_store_open(&o, &s) || rod_store_space(s, &sp))
		return 1;
	printf("{\n  \"dedupe\": {\"copies\": 11, \"volumes\": 10, \"mib_each\": %llu, \"logical\": %llu, "
	       "\"physical\": %llu, \"reduction\": %.2f,\n"
	       "    \"physical_after_first_copy\": %llu, \"physical_added_by_10_more\": %llu, "
	       "\"segment_bytes_after_first_copy\": %llu, \"segment_bytes_added_by_10_more\": %llu,\n"
	       "    \"first_copy_mbps\": %.0f, \"duplicate_copies_mbps\": %.0f}\n}\n",
	       (unsigned long long)mib, (unsigned long long)sp.logical, (unsigned long long)sp.physical,
	       sp.reduction, (unsigned long long)sp1.physical,
	       (unsigned long long)(sp.physical - sp1.physical), (unsigned long long)sp1.used,
	       (unsigned long long)(sp.used - sp1.used), mib / t1, 10.0 * mib / (t - t1));
	rod_store_close(s);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	free(buf);
	return system(cmd) ? 1 : 0;
}

/* ---- --pipeline ---- */

struct pl_slot {
	struct rod_io io;
	struct pl_thr *t;
	struct pl_slot *next;
	uint8_t buf[G] __attribute__((aligned(64)));
};
struct pl_thr {
	pthread_mutex_t m;
	pthread_cond_t c;
	struct pl_slot *done;
	struct rod_vol *v;
	uint64_t rng, ctr, ops, span;
	double until;
	int errors;
};

static uint64_t pl_rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void pl_done(struct rod_io *io)
{
	struct pl_slot *sl = io->priv;
	struct pl_thr *t = sl->t;

	pthread_mutex_lock(&t->m);
	sl->next = t->done;
	t->done = sl;
	pthread_cond_signal(&t->c);
	pthread_mutex_unlock(&t->m);
}

static void pl_submit(struct pl_thr *t, struct pl_slot *sl)
{
	/* unique, half-compressible content: a counter and random words, then text */
	uint64_t x = ++t->ctr * 0x9e3779b97f4a7c15ull ^ t->rng;
	for (size_t i = 0; i < G / 2; i += 8) {
		uint64_t v = pl_rnd(&x);
		memcpy(sl->buf + i, &v, 8);
	}
	for (size_t i = G / 2; i < G; i++)
		sl->buf[i] = (uint8_t)"the storage array commit "[i % 25];
	sl->io = (struct rod_io){ .op = ROD_IO_WRITE, .vol = t->v,
				  .off = (pl_rnd(&t->rng) % t->span) * G, .len = G,
				  .buf = sl->buf, .done = pl_done, .priv = sl };
	rod_io_submit(&sl->io);
}

static void *pl_main(void *arg)
{
	struct pl_thr *t = arg;
	struct pl_slot *sl = calloc(32, sizeof(*sl));
	int inflight = 32;

	if (!sl)
		exit(1);
	for (int i = 0; i < 32; i++) {
		sl[i].t = t;
		pl_submit(t, &sl[i]);
	}
	while (inflight) {
		pthread_mutex_lock(&t->m);
		while (!t->done)
			pthread_cond_wait(&t->c, &t->m);
		struct pl_slot *d = t->done;
		t->done = NULL;
		pthread_mutex_unlock(&t->m);
		bool stop = now() >= t->until;
		while (d) {
			struct pl_slot *n = d->next;
			if (d->io.result)
				t->errors++;
			t->ops++;
			if (stop)
				inflight--;
			else
				pl_submit(t, d);
			d = n;
		}
	}
	free(sl);
	return NULL;
}

/* CPU seconds of the threads named name (0 when none). */
static double thread_cpu(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	double sum = 0;
	long hz = sysconf(_SC_CLK_TCK);

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char p[300], b[1024], comm[64];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/task/%s/stat", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		size_t n = fread(b, 1, sizeof(b) - 1, f);
		fclose(f);
		b[n] = 0;
		char *l = strchr(b, '('), *r = strrchr(b, ')');
		if (!l || !r || r - l - 1 >= (long)sizeof(comm))
			continue;
		memcpy(comm, l + 1, r - l - 1);
		comm[r - l - 1] = 0;
		if (strcmp(comm, name))
			continue;
		unsigned long ut = 0, st = 0;
		/* after ") ": state(3) ... utime(14) stime(15) */
		if (sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			sum += (double)(ut + st) / hz;
	}
	closedir(d);
	return sum;
}

static double proc_cpu(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static int pipeline_run(double secs, bool noreduce)
{
	char dir[] = "/tmp/rodbench-pipe.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "pipe", .no_gc_thread = true,
				    .no_dedupe = noreduce, .no_compress = noreduce, .no_encrypt = noreduce };
	struct rod_store *s;
	struct rod_vol *v;
	struct pl_thr t[2];
	pthread_t th[2];
	double la[3] = { 0 };

	if (rod_store_open(&o, &s) || rod_vol_create(s, "p", 4ull << 30, 512, NULL) ||
	    rod_vol_open(s, "p", &v))
		return 1;
	double c0 = thread_cpu("rod-commit"), p0 = proc_cpu(), t0 = now();
	for (int i = 0; i < 2; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		pthread_mutex_init(&t[i].m, NULL);
		pthread_cond_init(&t[i].c, NULL);
		t[i].v = v;
		t[i].span = (4ull << 30) / G;
		t[i].rng = 0x1234567ull * (i + 1) + (uint64_t)(t0 * 1e6);
		t[i].until = t0 + secs;
		pthread_create(&th[i], NULL, pl_main, &t[i]);
	}
	uint64_t ops = 0;
	int errors = 0;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		ops += t[i].ops;
		errors += t[i].errors;
	}
	double el = now() - t0, cc = thread_cpu("rod-commit") - c0, pc = proc_cpu() - p0;
	struct rod_store_stats st;
	rod_store_stats(s, &st);
	getloadavg(la, 3);
	printf("{\n  \"pipeline\": {\"reduction\": %s, \"threads\": 2, \"qd\": 32, \"seconds\": %.1f, "
	       "\"writes\": %llu, \"errors\": %d, \"iops\": %.0f,\n"
	       "    \"commit_thread_cpu_us_per_write\": %.1f, \"process_cpu_us_per_write\": %.1f, "
	       "\"commit_thread_busy\": %.2f,\n    \"sealed_on_submit\": %llu, \"sealed_on_commit\": %llu, "
	       "\"loadavg\": [%.2f, %.2f, %.2f]}\n}\n",
	       noreduce ? "false" : "true", el, (unsigned long long)ops, errors, ops / el,
	       ops ? cc * 1e6 / ops : 0, ops ? pc * 1e6 / ops : 0, cc / el,
	       (unsigned long long)st.sealed_submit, (unsigned long long)st.sealed_commit, la[0], la[1],
	       la[2]);
	rod_vol_close(v);
	rod_store_close(s);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "--pipeline"))
		return pipeline_run(atof(argv[2]), argc >= 4 && !strcmp(argv[3], "--no-reduction"));
	const size_t limit = 256u << 20;
	if (argc == 3 && !strcmp(argv[1], "--dedupe"))
		return dedupe_run(strtoull(argv[2], NULL, 0));
	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			FILE *f = fopen(argv[i], "rb");
			if (!f) {
				perror(argv[i]);
				return 1;
			}
			slurp(f, limit);
			fclose(f);
		}
	} else {
		FILE *f = popen("tar cf - /usr/share/doc /usr/lib/x86_64-linux-gnu 2>/dev/null", "r");
		if (!f)
			return 1;
		slurp(f, limit);
		pclose(f);
	}
	size_t nb = (clen + G - 1) / G;
	if (nb * G > clen) {
		corpus = realloc(corpus, nb * G);
		memset(corpus + clen, 0, nb * G - clen);
	}

	uint8_t secret[32] = { 7 }, fp[32], out[2 * G];
	struct red_fp_key *fk;
	struct red_dek dek;
	for (int i = 0; i < 64; i++)
		dek.key[i] = (uint8_t)(i * 37 + 1);
	dek.gen = 1;
	if (red_fp_key_new(secret, &fk))
		return 1;

	/* Ratios. */
	uint64_t blocks = 0, lz4_plain = 0, lz4_rule = 0, zstd_plain = 0, zstd_rule = 0;
	ZSTD_CCtx *zc = ZSTD_createCCtx();
	for (size_t i = 0; i < nb; i++) {
		const uint8_t *b = corpus + i * G;
		if (allzero(b))
			continue;
		blocks++;
		int l = LZ4_compress_default((const char *)b, (char *)out, G, sizeof(out));
		lz4_plain += (uint64_t)l;
		uint32_t r = red_lz4_compress(b, G, out, sizeof(out));
		lz4_rule += r ? r : G;
		size_t z = ZSTD_compressCCtx(zc, out, sizeof(out), b, G, 1);
		zstd_plain += z;
		r = red_zstd_compress(b, G, out, sizeof(out));
		zstd_rule += r ? r : G;
	}
	ZSTD_freeCCtx(zc);

	/* Costs per 4 KiB block over the corpus (whole passes, at least 0.5 s each). */
	double t0, t_fp, t_lz4, t_xts, t_zstd, t_dec;
	size_t n = ROD_MIN(nb, (size_t)16384), reps = 0;
	t0 = now();
	do { for (size_t i = 0; i < n; i++) red_fingerprint(fk, corpus + i * G, G, fp); reps++; } while (now() - t0 < 0.5);
	t_fp = (now() - t0) / (reps * n);
	reps = 0; t0 = now();
	do { for (size_t i = 0; i < n; i++) red_lz4_compress(corpus + i * G, G, out, sizeof(out)); reps++; } while (now() - t0 < 0.5);
	t_lz4 = (now() - t0) / (reps * n);
	reps = 0; t0 = now();
	do { for (size_t i = 0; i < n; i++) red_encrypt(&dek, i, 1, corpus + i * G, out, G); reps++; } while (now() - t0 < 0.5);
	t_xts = (now() - t0) / (reps * n);
	reps = 0; t0 = now();
	do { for (size_t i = 0; i < n; i++) red_zstd_compress(corpus + i * G, G, out, sizeof(out)); reps++; } while (now() - t0 < 0.5);
	t_zstd = (now() - t0) / (reps * n);
	reps = 0; t0 = now();
	do {
		for (size_t i = 0; i < n; i++) {
			uint32_t l = red_lz4_compress(corpus + i * G, G, out, sizeof(out));
			if (l)
				red_decompress(1, out, l, out + G, G);
		}
		reps++;
	} while (now() - t0 < 0.5);
	t_dec = (now() - t0) / (reps * n);

	printf("{\n  \"corpus_bytes\": %zu, \"blocks_nonzero\": %llu,\n", clen, (unsigned long long)blocks);
	printf("  \"ratio\": {\"lz4_plain\": %.3f, \"lz4_inline_rule\": %.3f, \"zstd1_plain\": %.3f, \"zstd1_rule\": %.3f},\n",
	       (double)blocks * G / lz4_plain, (double)blocks * G / lz4_rule,
	       (double)blocks * G / zstd_plain, (double)blocks * G / zstd_rule);
	printf("  \"us_per_4k\": {\"hmac_sha256\": %.2f, \"lz4_rule\": %.2f, \"lz4_compress_decompress\": %.2f, "
	       "\"aes256_xts\": %.2f, \"zstd1\": %.2f}\n}\n",
	       t_fp * 1e6, t_lz4 * 1e6, t_dec * 1e6, t_xts * 1e6, t_zstd * 1e6);
	red_fp_key_free(fk);

	/* The same corpus through the engine: reduction inline, then after a full GC pass
	 * (which recompresses what it moves with zstd). */
	{
		char dir[] = "/tmp/rodbench-corpus.XXXXXX";
		struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "corpus",
					    .no_gc_thread = true };
		struct rod_store *st;
		struct rod_vol *v;
		struct rod_space a, b;
		uint64_t vlen = nb * (uint64_t)G;
		if (!mkdtemp(dir) || rod_store_open(&o, &st) ||
		    rod_vol_create(st, "corpus", (vlen + (1 << 20) - 1) / (1 << 20) * (1 << 20), 512, NULL) ||
		    rod_vol_open(st, "corpus", &v))
			return 1;
		for (uint64_t off = 0; off < vlen; off += 1 << 20)
			if (rod_vol_write(v, off, corpus + off, ROD_MIN((uint64_t)1 << 20, vlen - off), 0))
				return 1;
		rod_vol_close(v);
		struct rod_store_stats ss;
		if (rod_store_space(st, &a) || rod_store_gc(st, true))
			return 1;
		rod_store_stats(st, &ss);
		/* Reopen: space figures of large stores are cached for a while. */
		rod_store_close(st);
		o.create = false;
		if (rod_store_open(&o, &st) || rod_store_space(st, &b))
			return 1;
		fprintf(stderr, "bench_reduce: full GC moved %llu bytes, freed %llu segments\n",
			(unsigned long long)ss.gc_bytes_moved, (unsigned long long)ss.gc_segments_freed);
		printf("{\n  \"engine\": {\"logical\": %llu, \"physical_inline\": %llu, \"reduction_inline\": %.3f, "
		       "\"physical_after_full_gc\": %llu, \"reduction_after_full_gc\": %.3f}\n}\n",
		       (unsigned long long)a.logical, (unsigned long long)a.physical, a.reduction,
		       (unsigned long long)b.physical, b.reduction);
		rod_store_close(st);
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			return 1;
	}
	free(corpus);
	return 0;
}
