/* Data reduction off the commit thread, per-volume switches and per-volume space:
 *  - concurrent writers (2 threads x 32 in flight) over several segments: submitting
 *    threads compress and encrypt (reserved chunk ids), the commit thread only falls
 *    back when a segment changed; everything reads back, before and after a reopen, and
 *    in the segment files every encrypted chunk has its own (chunk id, generation)
 *    tweak and a chunk id of the segment it lies in;
 *  - a volume with compression off stores 4096-byte payloads while another compresses,
 *    and dedupe off stores a repeated write again; the switches survive a reopen;
 *  - dedupe across two volumes: each volume's shared part, its unique part, and the
 *    array total (the sum of the volumes' unique parts plus what they share);
 *  - dedupe finds chunks GC moved (also after a metadata rebuild) and goes on during a
 *    GC pass without the pass deleting what it references;
 *  - 64 MiB written 11 times (10 volumes, twice in one) is stored once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_test_util.h"

#include "rod/store.h"

#define MiB (1024ull * 1024)
#define GR 4096u
static char dir[64];

static int setup(void **state)
{
	(void)state;
	stu_mkdtemp(dir, sizeof(dir), "rodredp");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stu_rmtree(dir, NULL);
	return 0;
}

static struct rod_store *open_store(void)
{
	return stu_open(dir, "redp", true, false);
}

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Compressible, unique per seed: words of a small vocabulary, the seed in front. */
static void text(uint8_t *b, unsigned seed)
{
	static const char *w[] = { "storage ", "array ", "grain ", "volume ", "snapshot ", "the ",
				   "of ", "segment ", "commit ", "chunk ", "and ", "write " };
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i = 0;

	while (i < GR) {
		for (const char *p = w[xs(&x) % 12]; *p && i < GR; p++)
			b[i++] = (uint8_t)*p;
	}
	memcpy(b, &seed, sizeof(seed));
}

static void random_fill(uint8_t *b, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = xs(&x);
		memcpy(b + i, &v, 8);
	}
}

/* ---- concurrent writers ---- */

#define NGRAINS 12288u  /* 48 MiB of text: ~24 MiB stored, several 8 MiB segments */
#define QD 32

struct wt {
	struct rod_vol *v;
	unsigned first, step;   /* grains first, first+step, ... */
	pthread_mutex_t m;
	pthread_cond_t c;
	int inflight, errors;
};

struct slot {
	struct rod_io io;
	struct wt *t;
	uint8_t buf[GR];
};

static void wdone(struct rod_io *io)
{
	struct slot *sl = io->priv;
	struct wt *t = sl->t;

	pthread_mutex_lock(&t->m);
	if (io->result)
		t->errors++;
	t->inflight--;
	pthread_cond_signal(&t->c);
	pthread_mutex_unlock(&t->m);
}

static void *writer(void *arg)
{
	struct wt *t = arg;
	struct slot *sl = calloc(QD, sizeof(*sl));
	unsigned k = 0;

	assert_non_null(sl);
	for (unsigned g = t->first; g < NGRAINS; g += t->step, k++) {
		struct slot *s = &sl[k % QD];

		pthread_mutex_lock(&t->m);
		t->inflight++;
		pthread_mutex_unlock(&t->m);
		text(s->buf, g);
		s->t = t;
		s->io = (struct rod_io){ .op = ROD_IO_WRITE, .vol = t->v, .off = (uint64_t)g * GR,
					 .len = GR, .buf = s->buf, .done = wdone, .priv = s };
		rod_io_submit(&s->io);
		if (k % QD == QD - 1) {
			/* QD in flight, then drain: no slot is reused while in flight */
			pthread_mutex_lock(&t->m);
			while (t->inflight)
				pthread_cond_wait(&t->c, &t->m);
			pthread_mutex_unlock(&t->m);
		}
	}
	pthread_mutex_lock(&t->m);
	while (t->inflight)
		pthread_cond_wait(&t->c, &t->m);
	pthread_mutex_unlock(&t->m);
	free(sl);
	return NULL;
}

static void check_all(struct rod_vol *v)
{
	uint8_t *b = malloc(MiB), want[GR];

	assert_non_null(b);
	for (unsigned g = 0; g < NGRAINS; g += MiB / GR) {
		assert_int_equal(rod_vol_read(v, (uint64_t)g * GR, b, MiB), 0);
		for (unsigned i = 0; i < MiB / GR; i++) {
			text(want, g + i);
			assert_memory_equal(b + (size_t)i * GR, want, GR);
		}
	}
	free(b);
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int u128_cmp(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] != y[1] ? (x[1] < y[1] ? -1 : 1) : 0);
}

/* Every encrypted data entry in the segment files: its (chunk id, generation) pair is
 * used once, and the chunk id names the segment the chunk lies in. Returns how many. */
static size_t check_tweaks(void)
{
	char sd[128], path[512];
	struct dirent *e;
	DIR *d;
	size_t n = 0, cap = 1 << 16;
	uint64_t *tw = malloc(cap * 16);
	uint8_t *h = malloc(1u << 20);

	assert_non_null(tw);
	assert_non_null(h);
	snprintf(sd, sizeof(sd), "%s/seg", dir);
	d = opendir(sd);
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (!strstr(e->d_name, ".seg"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", sd, e->d_name);
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		for (uint64_t off = 0; pread(fd, h, 64, (off_t)off) == 64;) {
			if (le(h, 8) != 0x524f444241544348ull)
				break;
			uint64_t seg = le(h + 24, 8), hl = le(h + 32, 4), pl = le(h + 36, 4);
			uint32_t ne = (uint32_t)le(h + 40, 4);

			assert_true(hl <= (1u << 20));
			assert_int_equal(pread(fd, h, hl, (off_t)off), (ssize_t)hl);
			for (uint32_t i = 0; i < ne; i++) {
				const uint8_t *p = h + 64 + (size_t)i * 96;
				uint16_t gen = (uint16_t)le(p + 66, 2);

				if (p[64] != 1 || !gen) /* encrypted data entries */
					continue;
				assert_int_equal(le(p, 8) >> 20, seg);
				if (n == cap) {
					cap *= 2;
					tw = realloc(tw, cap * 16);
					assert_non_null(tw);
				}
				tw[2 * n] = le(p, 8);
				tw[2 * n + 1] = gen;
				n++;
			}
			off += hl + (pl + 4095) / 4096 * 4096;
		}
		close(fd);
	}
	closedir(d);
	qsort(tw, n, 16, u128_cmp);
	for (size_t i = 1; i < n; i++)
		assert_false(tw[2 * i] == tw[2 * i - 2] && tw[2 * i + 1] == tw[2 * i - 1]);
	free(tw);
	free(h);
	return n;
}

static void test_concurrent_seal(void **state)
{
	struct rod_store *s = open_store();
	struct rod_store_stats st;
	struct rod_vol *v;
	struct wt t[2];
	pthread_t th[2];

	(void)state;
	assert_int_equal(rod_vol_create(s, "v", NGRAINS * (uint64_t)GR, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "v", &v), 0);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct wt){ .v = v, .first = (unsigned)i, .step = 2 };
		pthread_mutex_init(&t[i].m, NULL);
		pthread_cond_init(&t[i].c, NULL);
		assert_int_equal(pthread_create(&th[i], NULL, writer, &t[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].errors, 0);
	}
	rod_store_stats(s, &st);
	print_message("sealed on submitting threads %llu, on the commit thread %llu, segments %llu\n",
		      (unsigned long long)st.sealed_submit, (unsigned long long)st.sealed_commit,
		      (unsigned long long)st.segments);
	assert_true(st.segments >= 3);
	assert_int_equal(st.sealed_submit + st.sealed_commit, NGRAINS);
	assert_true(st.sealed_submit > NGRAINS * 9 / 10);
	check_all(v);
	rod_vol_close(v);
	rod_store_close(s);
	assert_int_equal(check_tweaks(), NGRAINS);

	s = open_store();
	assert_int_equal(rod_vol_open(s, "v", &v), 0);
	check_all(v);
	/* again after a full GC (recompression gives moved chunks the next generation) */
	assert_int_equal(rod_store_gc(s, true), 0);
	check_all(v);
	rod_vol_close(v);
	rod_store_close(s);
	check_tweaks();
}

/* ---- per-volume switches ---- */

static void test_vol_switches(void **state)
{
	struct rod_store *s = open_store();
	struct rod_vol_info vi;
	struct rod_space a, b;
	struct rod_vol *va, *vb;
	uint8_t *buf = malloc(4 * MiB), *back = malloc(4 * MiB);

	(void)state;
	assert_non_null(buf);
	assert_non_null(back);
	assert_int_equal(rod_vol_create(s, "plain", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_create(s, "packed", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_info_get(s, "plain", &vi), 0);
	assert_true(vi.dedupe && vi.compress); /* default on */
	assert_int_equal(rod_vol_set_reduction(s, "plain", false, false), 0);
	rod_store_close(s);

	s = open_store(); /* persisted */
	assert_int_equal(rod_vol_info_get(s, "plain", &vi), 0);
	assert_false(vi.dedupe);
	assert_false(vi.compress);
	assert_int_equal(rod_vol_info_get(s, "packed", &vi), 0);
	assert_true(vi.dedupe && vi.compress);
	assert_int_equal(rod_vol_open(s, "plain", &va), 0);
	assert_int_equal(rod_vol_open(s, "packed", &vb), 0);
	for (unsigned i = 0; i < 4 * MiB / GR; i++)
		text(buf + (size_t)i * GR, 5000 + i);
	assert_int_equal(rod_vol_write(va, 0, buf, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_write(vb, 0, buf, 4 * MiB, 0), 0);
	/* dedupe off: the same data again at another offset is stored again */
	assert_int_equal(rod_vol_write(va, 8 * MiB, buf, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_space(s, "plain", &a), 0);
	assert_int_equal(rod_vol_space(s, "packed", &b), 0);
	print_message("plain: logical %llu physical %llu; packed: logical %llu physical %llu\n",
		      (unsigned long long)a.logical, (unsigned long long)a.physical,
		      (unsigned long long)b.logical, (unsigned long long)b.physical);
	assert_int_equal(a.logical, 8 * MiB);
	assert_int_equal(a.physical, 8 * MiB); /* 4096-byte payloads, twice */
	assert_int_equal(a.shared, 0);         /* no fingerprints: nothing deduplicated */
	assert_int_equal(b.logical, 4 * MiB);
	assert_true(b.physical < 3 * MiB);     /* LZ4 on the same text */
	assert_int_equal(rod_vol_read(va, 8 * MiB, back, 4 * MiB), 0);
	assert_memory_equal(buf, back, 4 * MiB);
	assert_int_equal(rod_vol_read(vb, 0, back, 4 * MiB), 0);
	assert_memory_equal(buf, back, 4 * MiB);
	/* a snapshot has no switches of its own */
	assert_int_equal(rod_vol_snapshot(s, "plain", "s1", NULL), 0);
	assert_int_equal(rod_vol_set_reduction(s, "plain.s1", true, true), -EINVAL);
	assert_int_equal(rod_vol_set_reduction(s, "nosuch", true, true), -ENOENT);
	/* back on: new writes are compressed again */
	assert_int_equal(rod_vol_set_reduction(s, "plain", true, true), 0);
	assert_int_equal(rod_vol_write(va, 16 * MiB, buf, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_space(s, "plain", &a), 0);
	assert_int_equal(a.logical, 12 * MiB);
	assert_true(a.physical < 11 * MiB);
	rod_vol_close(va);
	rod_vol_close(vb);
	rod_store_close(s);
	free(buf);
	free(back);
}

/* ---- space: unique vs shared per volume ---- */

static void test_space_unique_shared(void **state)
{
	struct rod_store *s = open_store();
	struct rod_space v1, v2, arr;
	struct rod_vol *a, *b;
	uint8_t *same = malloc(4 * MiB), *own = malloc(MiB);

	(void)state;
	assert_non_null(same);
	assert_non_null(own);
	random_fill(same, 4 * MiB, 77);
	assert_int_equal(rod_vol_create(s, "v1", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_create(s, "v2", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "v1", &a), 0);
	assert_int_equal(rod_vol_open(s, "v2", &b), 0);
	assert_int_equal(rod_vol_write(a, 0, same, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_write(b, 32 * MiB, same, 4 * MiB, 0), 0); /* dedupe */
	random_fill(own, MiB, 1);
	assert_int_equal(rod_vol_write(a, 8 * MiB, own, MiB, 0), 0);
	random_fill(own, MiB, 2);
	assert_int_equal(rod_vol_write(b, 8 * MiB, own, MiB, 0), 0);
	random_fill(own, MiB, 3);
	assert_int_equal(rod_vol_write(b, 9 * MiB, own, MiB, 0), 0);
	assert_int_equal(rod_vol_space(s, "v1", &v1), 0);
	assert_int_equal(rod_vol_space(s, "v2", &v2), 0);
	assert_int_equal(rod_store_space(s, &arr), 0);
	print_message("v1 physical %llu unique %llu shared %llu; v2 %llu %llu %llu; array physical %llu unique %llu shared %llu\n",
		      (unsigned long long)v1.physical, (unsigned long long)v1.unique,
		      (unsigned long long)v1.shared, (unsigned long long)v2.physical,
		      (unsigned long long)v2.unique, (unsigned long long)v2.shared,
		      (unsigned long long)arr.physical, (unsigned long long)arr.unique,
		      (unsigned long long)arr.shared);
	/* random data: stored as is (4096 bytes a chunk) */
	assert_int_equal(v1.physical, 5 * MiB);
	assert_int_equal(v1.shared, 4 * MiB);
	assert_int_equal(v1.unique, 1 * MiB);
	assert_int_equal(v2.physical, 6 * MiB);
	assert_int_equal(v2.shared, 4 * MiB);
	assert_int_equal(v2.unique, 2 * MiB);
	assert_int_equal(arr.physical, 7 * MiB);
	assert_int_equal(arr.unique, 3 * MiB);
	assert_int_equal(arr.shared, 4 * MiB);
	/* the volumes' unique parts plus what they share, once, is the array */
	assert_int_equal(v1.unique + v2.unique + arr.shared, arr.physical);
	/* a snapshot of v1 and an overwrite: the old data stays v1's (snapshot space) */
	assert_int_equal(rod_vol_snapshot(s, "v1", "s", NULL), 0);
	random_fill(own, MiB, 4);
	assert_int_equal(rod_vol_write(a, 8 * MiB, own, MiB, 0), 0);
	assert_int_equal(rod_vol_space(s, "v1", &v1), 0);
	assert_int_equal(v1.physical, 6 * MiB);
	assert_int_equal(v1.unique, 2 * MiB);
	assert_int_equal(v1.snapshots, 1 * MiB);
	/* v2 overwrites its copy: v1's 4 MiB are v1's alone now */
	random_fill(same, 4 * MiB, 78);
	assert_int_equal(rod_vol_write(b, 32 * MiB, same, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_space(s, "v1", &v1), 0);
	assert_int_equal(v1.shared, 0);
	assert_int_equal(v1.unique, 6 * MiB);
	/* a clone of the snapshot reads the 5 MiB v1 held then through a range entry:
	 * shared now; what v1 wrote after the snapshot stays unique; the clone owns none */
	assert_int_equal(rod_vol_clone(s, "v1.s", "c1", NULL), 0);
	assert_int_equal(rod_vol_space(s, "v1", &v1), 0);
	assert_int_equal(v1.physical, 6 * MiB);
	assert_int_equal(v1.shared, 5 * MiB);
	assert_int_equal(v1.unique, 1 * MiB);
	assert_int_equal(rod_vol_space(s, "c1", &v2), 0);
	assert_int_equal(v2.logical, 5 * MiB);
	assert_int_equal(v2.physical, 0);
	/* the array agrees: its unique part is the sum of the volumes' (v2 now holds 4 MiB
	 * of new random data and the 2 MiB it had alone) */
	assert_int_equal(rod_vol_space(s, "v2", &v2), 0);
	assert_int_equal(rod_store_space(s, &arr), 0);
	assert_int_equal(arr.unique, v1.unique + v2.unique);
	rod_vol_close(a);
	rod_vol_close(b);
	rod_store_close(s);
	free(same);
	free(own);
}

/* ---- dedupe finds chunks GC moved, also after the metadata is rebuilt ---- */

static void test_dedupe_after_gc_and_rebuild(void **state)
{
	struct rod_store *s = open_store();
	struct rod_space sp0, sp1;
	struct rod_vol *v;
	uint8_t *buf = malloc(4 * MiB), *back = malloc(4 * MiB);

	(void)state;
	assert_non_null(buf);
	assert_non_null(back);
	random_fill(buf, 4 * MiB, 99);
	assert_int_equal(rod_vol_create(s, "a", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_create(s, "b", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_create(s, "c", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "a", &v), 0);
	assert_int_equal(rod_vol_write(v, 0, buf, 4 * MiB, 0), 0);
	rod_vol_close(v);
	/* every segment rewritten: the chunks live in other segments than their home */
	assert_int_equal(rod_store_gc(s, true), 0);
	assert_int_equal(rod_vol_open(s, "b", &v), 0);
	assert_int_equal(rod_vol_write(v, 0, buf, 4 * MiB, 0), 0);
	rod_vol_close(v);
	rod_store_close(s);
	s = open_store();
	assert_int_equal(rod_store_space(s, &sp0), 0);
	assert_int_equal(sp0.physical, 4 * MiB); /* b deduplicated against the moved chunks */
	rod_store_close(s);

	/* lose the metadata: the fingerprints come back from the relocation records */
	assert_int_equal(rod_store_rebuild_metadata(dir, NULL), 0);
	s = open_store();
	assert_int_equal(rod_vol_open(s, "c", &v), 0);
	assert_int_equal(rod_vol_write(v, 8 * MiB, buf, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_read(v, 8 * MiB, back, 4 * MiB), 0);
	assert_memory_equal(buf, back, 4 * MiB);
	rod_vol_close(v);
	rod_store_close(s);
	s = open_store();
	assert_int_equal(rod_store_space(s, &sp1), 0);
	print_message("physical before rebuild %llu, after rebuild + a third copy %llu\n",
		      (unsigned long long)sp0.physical, (unsigned long long)sp1.physical);
	assert_int_equal(sp1.logical, 12 * MiB);
	assert_int_equal(sp1.physical, 4 * MiB);
	assert_int_equal(rod_vol_open(s, "a", &v), 0);
	assert_int_equal(rod_vol_read(v, 0, back, 4 * MiB), 0);
	assert_memory_equal(buf, back, 4 * MiB);
	rod_vol_close(v);
	rod_store_close(s);
	free(buf);
	free(back);
}

/* ---- dedupe goes on while GC runs ---- */

struct gcw {
	struct rod_store *s;
	struct rod_vol *v;
	const uint8_t *buf;
	bool written;
	uint64_t disk;           /* segment bytes the write added */
	int rc;
};

static int gc_progress(void *arg, uint64_t done, uint64_t total, uint64_t rd, uint64_t mv)
{
	struct gcw *w = arg;
	struct rod_store_stats a, b;

	(void)done; (void)rd; (void)mv;
	if (w->written || !total) /* total 0: still marking */
		return 0;
	/* between two segments of the pass, after its mark: the data of volume a, which
	 * nothing references any more (the mark found it dead), written to volume c */
	w->written = true;
	rod_store_stats(w->s, &a);
	w->rc = rod_vol_write(w->v, 0, w->buf, 4 * MiB, 0);
	rod_store_stats(w->s, &b);
	w->disk = b.bytes_written_disk - a.bytes_written_disk;
	return 0;
}

static void test_dedupe_during_gc(void **state)
{
	struct rod_store *s = open_store();
	struct rod_vol *a, *c;
	struct gcw w = { 0 };
	uint8_t *x = malloc(4 * MiB), *y = malloc(4 * MiB), *back = malloc(4 * MiB);

	(void)state;
	assert_non_null(x);
	assert_non_null(y);
	assert_non_null(back);
	random_fill(x, 4 * MiB, 500);
	random_fill(y, 4 * MiB, 501);
	assert_int_equal(rod_vol_create(s, "a", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_create(s, "c", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "a", &a), 0);
	assert_int_equal(rod_vol_open(s, "c", &c), 0);
	assert_int_equal(rod_vol_write(a, 0, x, 4 * MiB, 0), 0);
	assert_int_equal(rod_vol_write(a, 0, y, 4 * MiB, 0), 0); /* x: garbage now */
	w = (struct gcw){ .s = s, .v = c, .buf = x };
	assert_int_equal(rod_store_gc_ex(s, true, gc_progress, &w), 0);
	assert_true(w.written);
	assert_int_equal(w.rc, 0);
	print_message("4 MiB written during the GC pass added %llu segment bytes\n",
		      (unsigned long long)w.disk);
	assert_true(w.disk < MiB); /* deduplicated: dedupe entries, no payload */
	/* the pass kept the segment of those chunks: c reads its data */
	assert_int_equal(rod_vol_read(c, 0, back, 4 * MiB), 0);
	assert_memory_equal(x, back, 4 * MiB);
	/* a later pass moves them (c references them now) and frees the rest */
	assert_int_equal(rod_store_gc(s, true), 0);
	assert_int_equal(rod_vol_read(c, 0, back, 4 * MiB), 0);
	assert_memory_equal(x, back, 4 * MiB);
	rod_vol_close(a);
	rod_vol_close(c);
	rod_store_close(s);
	s = open_store();
	assert_int_equal(rod_vol_open(s, "c", &c), 0);
	assert_int_equal(rod_vol_read(c, 0, back, 4 * MiB), 0);
	assert_memory_equal(x, back, 4 * MiB);
	assert_int_equal(rod_vol_open(s, "a", &a), 0);
	assert_int_equal(rod_vol_read(a, 0, back, 4 * MiB), 0);
	assert_memory_equal(y, back, 4 * MiB);
	rod_vol_close(a);
	rod_vol_close(c);
	rod_store_close(s);
	free(x);
	free(y);
	free(back);
}

/* ---- the 10-copy dedupe check, CI size (bench_reduce --dedupe 1024 is the full one) ---- */

static void test_dedupe_ten_copies(void **state)
{
	struct rod_store *s = open_store();
	struct rod_space sp1, sp;
	uint64_t len = 64 * MiB, shift = len + 7 * GR;
	uint8_t *buf = malloc(len), *back = malloc(MiB);

	(void)state;
	assert_non_null(buf);
	assert_non_null(back);
	random_fill(buf, len, 1010);
	for (int i = 0; i < 10; i++) {
		char name[16];
		struct rod_vol *v;

		snprintf(name, sizeof(name), "copy%d", i);
		assert_int_equal(rod_vol_create(s, name, 2 * len + MiB, 512, NULL), 0);
		assert_int_equal(rod_vol_open(s, name, &v), 0);
		for (uint64_t off = 0; off < len; off += MiB)
			assert_int_equal(rod_vol_write(v, off, buf + off, MiB, 0), 0);
		if (i == 0) {
			assert_int_equal(rod_store_space(s, &sp1), 0);
			/* again inside the same volume, at an offset 7 grains past a MiB */
			for (uint64_t off = 0; off < len; off += MiB)
				assert_int_equal(rod_vol_write(v, shift + off, buf + off, MiB, 0), 0);
		}
		assert_int_equal(rod_vol_read(v, len - MiB, back, MiB), 0);
		assert_memory_equal(buf + len - MiB, back, MiB);
		rod_vol_close(v);
	}
	assert_int_equal(rod_store_space(s, &sp), 0);
	print_message("11 copies of 64 MiB: logical %llu physical %llu (after the first %llu), reduction %.2f\n",
		      (unsigned long long)sp.logical, (unsigned long long)sp.physical,
		      (unsigned long long)sp1.physical, sp.reduction);
	assert_int_equal(sp.logical, 11 * len);
	assert_int_equal(sp1.physical, len);
	assert_int_equal(sp.physical, len); /* the 10 other copies add no chunk */
	assert_true(sp.reduction >= 9.5);
	rod_store_close(s);
	free(buf);
	free(back);
}

/* ---- the commit thread holds fingerprint puts back and puts them in sorted runs
 * (RED_FP_RUN = 16384, and at every checkpoint and close): a duplicate is found while
 * its fingerprint is held back, after a run was put, and after a reopen ---- */
static void write_mib(struct rod_store *s, const char *vol, uint64_t off, const uint8_t *b,
		      uint64_t len)
{
	struct rod_vol *v;

	assert_int_equal(rod_vol_open(s, vol, &v), 0);
	for (uint64_t o = 0; o < len; o += MiB)
		assert_int_equal(rod_vol_write(v, off + o, b + o, MiB, 0), 0);
	rod_vol_close(v);
}

static void read_check(struct rod_store *s, const char *vol, uint64_t off, const uint8_t *b)
{
	struct rod_vol *v;
	uint8_t *back = malloc(MiB);

	assert_non_null(back);
	assert_int_equal(rod_vol_open(s, vol, &v), 0);
	assert_int_equal(rod_vol_read(v, off, back, MiB), 0);
	assert_memory_equal(b, back, MiB);
	rod_vol_close(v);
	free(back);
}

static void test_dedupe_held_back_fps(void **state)
{
	struct rod_store *s = open_store();
	struct rod_space sp;
	uint8_t *a = malloc(MiB), *b = malloc(MiB), *c = malloc(64 * MiB);

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	random_fill(a, MiB, 2001);
	random_fill(b, MiB, 2002);
	random_fill(c, 64 * MiB, 2003);
	for (int i = 1; i <= 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "v%d", i);
		assert_int_equal(rod_vol_create(s, name, 128 * MiB, 512, NULL), 0);
	}
	write_mib(s, "v1", 0, a, MiB);
	write_mib(s, "v2", 0, a, MiB);         /* a's fingerprints are still held back */
	write_mib(s, "v1", 8 * MiB, c, 64 * MiB); /* 16384 new chunks: runs are put */
	write_mib(s, "v3", 0, a, MiB);         /* a's fingerprints are in RocksDB now */
	write_mib(s, "v1", 100 * MiB, b, MiB);
	rod_store_close(s);                    /* b's are put when the commit thread stops */
	s = open_store();
	write_mib(s, "v2", 100 * MiB, b, MiB);
	read_check(s, "v2", 0, a);
	read_check(s, "v3", 0, a);
	read_check(s, "v2", 100 * MiB, b);
	rod_store_close(s);
	s = open_store();
	assert_int_equal(rod_store_space(s, &sp), 0);
	print_message("held-back fingerprints: logical %llu physical %llu\n",
		      (unsigned long long)sp.logical, (unsigned long long)sp.physical);
	assert_int_equal(sp.logical, 69 * MiB);
	assert_int_equal(sp.physical, 66 * MiB); /* a, b and c once each */
	rod_store_close(s);
	free(a);
	free(b);
	free(c);
}

/* ---- a large unaligned unmap: the merged edge grains are data, sealed in buffers of
 * their own (not one per grain of the whole range) ---- */

static void test_unaligned_large_unmap(void **state)
{
	struct rod_store *s = open_store();
	uint64_t size = 4ull << 30; /* thin */
	uint8_t a[GR], r[GR];
	struct rod_vol *v;

	(void)state;
	text(a, 7);
	assert_int_equal(rod_vol_create(s, "huge", size, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, "huge", &v), 0);
	assert_int_equal(rod_vol_write(v, 0, a, GR, 0), 0);
	assert_int_equal(rod_vol_write(v, size - GR, a, GR, 0), 0);
	/* keeps 512 bytes at each end: both edge grains are merged data grains */
	assert_int_equal(rod_vol_unmap(v, 512, size - 1024), 0);
	assert_int_equal(rod_vol_read(v, 0, r, GR), 0);
	assert_memory_equal(r, a, 512);
	for (unsigned i = 512; i < GR; i++)
		assert_int_equal(r[i], 0);
	assert_int_equal(rod_vol_read(v, size - GR, r, GR), 0);
	assert_memory_equal(r + GR - 512, a + GR - 512, 512);
	for (unsigned i = 0; i < GR - 512; i++)
		assert_int_equal(r[i], 0);
	rod_vol_close(v);
	rod_store_close(s);
}

int main(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test_setup_teardown(test_concurrent_seal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vol_switches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_space_unique_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedupe_after_gc_and_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedupe_during_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedupe_ten_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedupe_held_back_fps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unaligned_large_unmap, setup, teardown),
	};

	return cmocka_run_group_tests(t, NULL, NULL);
}
