/* Crash test of the storage engine: kill -9 during writes, copies, zeroing and GC; every
 * acknowledged write must read back after the restart, and the one write in flight per
 * thread must be wholly there or wholly absent per grain.
 *
 *   crash_store [cycles] [seed]        parent: runs the cycles, prints the seed
 *   crash_store --child DIR CYCLE SEED child: writes until killed
 *
 * Odd cycles switch the volume to write-back first; every third restart is killed
 * again a few milliseconds in (during recovery). The child runs THREADS threads, each owning a disjoint region of one volume, one
 * operation in flight per thread (so many in flight at once: the group commit batches
 * them). Before each operation it appends an intent record to its thread's log and
 * fdatasyncs it; after the acknowledgement an ack record (a refused record when the
 * store said ENOSPC: every fourth cycle runs with a small capacity, and a refused
 * operation must have changed nothing). The parent kills the child at a
 * random moment, reopens the store (log replay), and checks every grain of every region
 * against its model. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rod/store.h"

#define THREADS 4
#define REGION (4u << 20)
#define G ROD_GRAIN
#define VOLSIZE ((uint64_t)THREADS * REGION)

enum { OP_WRITE = 1, OP_COPY, OP_ZERO, OP_UNMAP };
enum { REC_INTENT = 1, REC_ACK = 2, REC_REFUSED = 3 };

struct rec {
	uint32_t magic, kind, op, thread;
	uint64_t off, len, src_off, seed;
	uint64_t pad[3];
};
#define REC_MAGIC 0x52435231u

static atomic_uint refused;
static uint64_t refused_seen; /* parent: refused operations found in the logs */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	x ^= x >> 33;
	return x;
}

static void gen(uint8_t *buf, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed + i);
		memcpy(buf + i, &v, 8);
	}
}

/* ---- child ---- */

struct worker {
	struct rod_vol *v;
	struct rod_store *s;
	int t, fd;
	uint64_t rng;
};

static uint64_t wrnd(struct worker *w)
{
	w->rng = mix(w->rng + 0x9e3779b97f4a7c15ull);
	return w->rng;
}

static void log_rec(struct worker *w, const struct rec *r)
{
	if (write(w->fd, r, sizeof(*r)) != sizeof(*r) || fdatasync(w->fd)) {
		perror("crash child: log");
		_exit(2);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t base = (uint64_t)w->t * REGION;
	uint8_t *buf = malloc(1 << 20);

	for (;;) {
		struct rec r = { .magic = REC_MAGIC, .kind = REC_INTENT, .thread = (uint32_t)w->t };
		unsigned k = (unsigned)(wrnd(w) % 100);
		uint64_t maxlen = k < 10 ? (1u << 20) : 64u << 10;
		int rc;

		r.op = k < 60 ? OP_WRITE : k < 80 ? OP_COPY : k < 90 ? OP_ZERO : OP_UNMAP;
		r.len = 512 * (1 + wrnd(w) % (maxlen / 512));
		r.off = base + 512 * (wrnd(w) % ((REGION - r.len) / 512 + 1));
		r.src_off = base + 512 * (wrnd(w) % ((REGION - r.len) / 512 + 1));
		if (r.op == OP_COPY && wrnd(w) % 2)
			r.src_off = base + (r.off - base) % G + G * (wrnd(w) % ((REGION - r.len - (r.off - base) % G) / G + 1));
		r.seed = wrnd(w);
		log_rec(w, &r);
		switch (r.op) {
		case OP_WRITE:
			gen(buf, r.len, r.seed);
			rc = rod_vol_write(w->v, r.off, buf, r.len, 0);
			break;
		case OP_COPY:
			rc = rod_vol_copy(w->v, r.src_off, w->v, r.off, r.len);
			break;
		case OP_ZERO:
			rc = rod_vol_zero(w->v, r.off, r.len);
			break;
		default:
			rc = rod_vol_unmap(w->v, r.off, r.len);
			break;
		}
		if (rc == -ENOSPC) {
			/* Refused for space: it must have changed nothing (the parent checks). */
			r.kind = REC_REFUSED;
			log_rec(w, &r);
			atomic_fetch_add(&refused, 1);
			usleep(1000);
			continue;
		}
		if (rc) {
			fprintf(stderr, "crash child: op %u failed: %s\n", r.op, strerror(-rc));
			_exit(2);
		}
		r.kind = REC_ACK;
		log_rec(w, &r);
		if (w->t == 0 && wrnd(w) % 50 == 0)
			rod_store_gc(w->s, false);
	}
	return NULL;
}

static int child(const char *dir, unsigned cycle, uint64_t seed)
{
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = "crash" };

	/* Every fourth cycle runs nearly full: new data is refused (ENOSPC) while GC
	 * works to free space, and a refused operation must leave no trace. */
	if (cycle % 4 == 3) {
		o.capacity_bytes = 40u << 20;
		o.reserve_bytes = 8u << 20;
	}
	struct rod_store *s;
	struct rod_vol *v;
	struct worker w[THREADS];
	pthread_t th[THREADS];
	char path[512];
	int rc = rod_store_open(&o, &s);

	if (rc) {
		fprintf(stderr, "crash child: open: %s\n", strerror(-rc));
		return 2;
	}
	rc = rod_vol_open(s, "crash", &v);
	if (rc == -ENOENT) {
		rc = rod_vol_create(s, "crash", VOLSIZE, 512, NULL);
		if (!rc)
			rc = rod_vol_open(s, "crash", &v);
	}
	if (rc) {
		fprintf(stderr, "crash child: volume: %s\n", strerror(-rc));
		return 2;
	}
	/* Odd cycles run write-back: a process crash must not lose acknowledged writes
	 * either (only a power cut may, for a volume with a volatile cache). */
	rc = rod_vol_set_cache(s, "crash", cycle % 2 ? ROD_CACHE_WRITE_BACK : ROD_CACHE_WRITE_THROUGH);
	if (rc) {
		fprintf(stderr, "crash child: cache mode: %s\n", strerror(-rc));
		return 2;
	}
	for (int t = 0; t < THREADS; t++) {
		snprintf(path, sizeof(path), "%s.log%d", dir, t);
		w[t] = (struct worker){ .v = v, .s = s, .t = t, .rng = seed * 31 + cycle * 977 + (uint64_t)t };
		w[t].fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (w[t].fd < 0) {
			perror("crash child: log");
			return 2;
		}
	}
	/* Tell the parent we are running (the kill comes at a random time after this). */
	if (write(1, "R", 1) != 1)
		return 2;
	for (int t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, worker_main, &w[t]);
	for (;;)
		pause();
}

/* ---- parent ---- */

static uint8_t *model; /* VOLSIZE bytes */

static void apply(uint8_t *img, const struct rec *r)
{
	switch (r->op) {
	case OP_WRITE:
		gen(img + r->off, r->len, r->seed);
		break;
	case OP_COPY:
		memmove(img + r->off, img + r->src_off, r->len);
		break;
	default:
		memset(img + r->off, 0, r->len);
		break;
	}
}

static int verify(struct rod_store *s, unsigned cycle, uint64_t seed, const char *dir,
		  uint64_t *acked_total)
{
	struct rod_vol *v;
	uint8_t *actual = malloc(VOLSIZE), *alt = malloc(VOLSIZE);
	char path[512];
	int rc = rod_vol_open(s, "crash", &v), bad = 0;

	if (rc) {
		/* The child may have died before its volume creation was acknowledged. */
		free(actual);
		free(alt);
		return rc == -ENOENT && cycle == 0 ? 0 : 1;
	}
	rc = rod_vol_read(v, 0, actual, VOLSIZE);
	if (rc) {
		fprintf(stderr, "crash: read after restart failed: %s\n", strerror(-rc));
		return 1;
	}
	for (int t = 0; t < THREADS; t++) {
		struct rec r, pending = { 0 };
		bool have_pending = false;
		FILE *f;

		snprintf(path, sizeof(path), "%s.log%d", dir, t);
		f = fopen(path, "rb");
		if (!f)
			continue;
		while (fread(&r, sizeof(r), 1, f) == 1 && r.magic == REC_MAGIC) {
			if (r.kind == REC_INTENT) {
				pending = r;
				have_pending = true;
			} else if (r.kind == REC_REFUSED) {
				have_pending = false; /* refused: the model stays as it was */
				refused_seen++;
			} else if (have_pending) {
				apply(model, &pending);
				have_pending = false;
				(*acked_total)++;
			}
		}
		fclose(f);
		uint64_t base = (uint64_t)t * REGION;
		memcpy(alt + base, model + base, REGION);
		if (have_pending)
			apply(alt, &pending);
		for (uint64_t g = base; g < base + REGION; g += G) {
			if (!memcmp(actual + g, model + g, G))
				continue;
			if (have_pending && !memcmp(actual + g, alt + g, G)) {
				memcpy(model + g, alt + g, G); /* the in-flight op landed here */
				continue;
			}
			if (bad++ < 5)
				fprintf(stderr, "crash: seed %" PRIu64 " cycle %u: grain %" PRIu64
					" (thread %d) holds neither the acknowledged data nor the in-flight op's\n",
					seed, cycle, g / G, t);
		}
	}
	rod_vol_close(v);
	free(actual);
	free(alt);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	unsigned cycles = 20;
	uint64_t seed = (uint64_t)time(NULL);
	char dir[64];
	uint64_t acked = 0, recovery_max = 0;

	if (argc == 5 && !strcmp(argv[1], "--child"))
		return child(argv[2], (unsigned)atoi(argv[3]), strtoull(argv[4], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "--recover")) {
		/* Open (recover) and wait to be killed, maybe in the middle of recovery. */
		struct rod_store_opts o = { .dir = argv[2] };
		struct rod_store *s;

		if (rod_store_open(&o, &s))
			return 2;
		for (;;)
			pause();
	}
	if (argc > 1)
		cycles = (unsigned)atoi(argv[1]);
	if (argc > 2)
		seed = strtoull(argv[2], NULL, 0);
	snprintf(dir, sizeof(dir), "/tmp/rodcrash.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	printf("crash: seed %" PRIu64 ", %u cycles, dir %s\n", seed, cycles, dir);
	fflush(stdout);
	model = calloc(1, VOLSIZE);
	srand((unsigned)seed);
	for (unsigned c = 0; c < cycles; c++) {
		int pfd[2];
		pid_t pid;
		char a_cycle[16], a_seed[32], ch;
		int st;

		if (pipe(pfd))
			return 1;
		snprintf(a_cycle, sizeof(a_cycle), "%u", c);
		snprintf(a_seed, sizeof(a_seed), "%" PRIu64, seed);
		pid = fork();
		if (pid == 0) {
			dup2(pfd[1], 1);
			close(pfd[0]);
			execl(argv[0], argv[0], "--child", dir, a_cycle, a_seed, (char *)NULL);
			_exit(3);
		}
		close(pfd[1]);
		if (read(pfd[0], &ch, 1) != 1) {
			fprintf(stderr, "crash: child %u failed to start\n", c);
			return 1;
		}
		close(pfd[0]);
		usleep(50000 + (unsigned)(rand() % 400000));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (!WIFSIGNALED(st)) {
			fprintf(stderr, "crash: child %u exited by itself (status %d)\n", c, st);
			return 1;
		}
		if (c % 3 == 2) {
			/* Kill the next start too, a few milliseconds in (during recovery). */
			pid = fork();
			if (pid == 0) {
				execl(argv[0], argv[0], "--recover", dir, (char *)NULL);
				_exit(3);
			}
			usleep((unsigned)(rand() % 40000));
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
		}
		struct rod_store_opts o = { .dir = dir, .no_gc_thread = true };
		struct rod_store *s;
		int rc = rod_store_open(&o, &s);
		if (rc) {
			fprintf(stderr, "crash: reopen after kill %u failed: %s\n", c, strerror(-rc));
			return 1;
		}
		struct rod_store_stats stt;
		rod_store_stats(s, &stt);
		if (stt.recovery_ns > recovery_max)
			recovery_max = stt.recovery_ns;
		rc = verify(s, c, seed, dir, &acked);
		rod_store_close(s);
		if (rc) {
			fprintf(stderr, "crash: FAILED at cycle %u (replay: crash_store %u %" PRIu64 ")\n",
				c, cycles, seed);
			return 1;
		}
	}
	printf("crash: %u kill -9 cycles passed, %" PRIu64 " acknowledged ops verified, %" PRIu64
	       " refused for space (unchanged), max recovery %.1f ms\n",
	       cycles, acked, refused_seen, recovery_max / 1e6);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s.log*", dir, dir);
	return system(cmd) ? 1 : 0;
}
