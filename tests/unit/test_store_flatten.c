/* Storage engine, flatten: a chain of clones of clones (with writes between, so the copies
 * do not compose) gets deeper than the soft limit; rod_vol_flatten makes it shallow while
 * every grain reads the same (data and mapped/deallocated status), for the volume and its
 * snapshots, after a reopen, a metadata rebuild and a GC that drops the intermediate
 * volumes; a crash (SIGKILL) or a cancel in the middle leaves the volume correct. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_test_util.h"

#include "rod/store.h"

#define MiB (1024ull * 1024)
#define VOL_SIZE (16 * MiB)
#define GRAINS (VOL_SIZE / ROD_GRAIN)
#define CHAIN 7

static char tmpl[64];
static bool no_dedupe;

static struct rod_store *open_store(bool create)
{
	return stu_open(tmpl, "flat", create, no_dedupe);
}

static int setup(void **state)
{
	stu_mkdtemp(tmpl, sizeof(tmpl), "rodflat");
	*state = open_store(true);
	return 0;
}

static int setup_nodedupe(void **state)
{
	no_dedupe = true;
	return setup(state);
}

static int teardown(void **state)
{
	if (*state)
		rod_store_close(*state);
	no_dedupe = false;
	stu_rmtree(tmpl, NULL);
	return 0;
}

static uint32_t rnd(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 8;
}

/* n random grains below limit (in grains) */
static void write_grains(struct rod_store *s, const char *name, uint32_t seed, unsigned n,
			 uint64_t limit)
{
	struct rod_vol *v;
	uint8_t buf[ROD_GRAIN];

	assert_int_equal(rod_vol_open(s, name, &v), 0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t g = rnd(&seed) % limit;

		for (size_t j = 0; j < sizeof(buf); j += 4) {
			uint32_t x = rnd(&seed);
			memcpy(buf + j, &x, 4);
		}
		assert_int_equal(rod_vol_write(v, g * ROD_GRAIN, buf, sizeof(buf), 0), 0);
	}
	rod_vol_close(v);
}

/* What a volume shows: its bytes and one mapped flag per grain. */
struct image {
	uint8_t *data;
	bool mapped[GRAINS];
};

static void take(struct rod_store *s, const char *name, struct image *im)
{
	struct rod_vol *v;

	im->data = malloc(VOL_SIZE);
	assert_non_null(im->data);
	assert_int_equal(rod_vol_open(s, name, &v), 0);
	assert_int_equal(rod_vol_read(v, 0, im->data, VOL_SIZE), 0);
	for (uint64_t g = 0; g < GRAINS;) {
		bool m;
		uint64_t len;

		assert_int_equal(rod_vol_lba_status(v, g * ROD_GRAIN, VOL_SIZE - g * ROD_GRAIN, &m, &len), 0);
		assert_true(len >= ROD_GRAIN);
		for (uint64_t i = 0; i < len / ROD_GRAIN; i++)
			im->mapped[g + i] = m;
		g += len / ROD_GRAIN;
	}
	rod_vol_close(v);
}

static void same(struct rod_store *s, const char *name, const struct image *want)
{
	struct image got;

	take(s, name, &got);
	for (uint64_t g = 0; g < GRAINS; g++) {
		if (memcmp(got.data + g * ROD_GRAIN, want->data + g * ROD_GRAIN, ROD_GRAIN) ||
		    got.mapped[g] != want->mapped[g])
			fail_msg("%s: grain %llu differs (mapped %d, want %d)", name,
				 (unsigned long long)g, got.mapped[g], want->mapped[g]);
	}
	free(got.data);
}

/* v0 with data, a zeroed stretch and holes; c1 = clone(v0) + writes; c2 = clone(c1) +
 * writes ... Each clone's range entry sits on a lineage with block entries over it, so it
 * cannot compose and the depth grows by one per level. */
static void build_chain(struct rod_store *s)
{
	char name[16], prev[16] = "v0";
	struct rod_vol *v;

	assert_int_equal(rod_vol_create(s, "v0", VOL_SIZE, 512, NULL), 0);
	write_grains(s, "v0", 1, 2000, GRAINS);
	assert_int_equal(rod_vol_open(s, "v0", &v), 0);
	assert_int_equal(rod_vol_zero(v, 4 * MiB, 2 * MiB), 0);   /* range entry to zeros */
	assert_int_equal(rod_vol_unmap(v, 8 * MiB, 3 * MiB), 0);  /* deallocated range */
	assert_int_equal(rod_vol_zero(v, 12 * MiB, 8192), 0);     /* per-grain zero refs */
	rod_vol_close(v);
	for (int i = 1; i <= CHAIN; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		assert_int_equal(rod_vol_clone(s, prev, name, NULL), 0);
		/* below 8 MiB: the deallocated 8-11 MiB of v0 stays one run (a range entry after
		 * flatten) */
		write_grains(s, name, 100 + i, 60, GRAINS / 2);
		snprintf(prev, sizeof(prev), "%s", name);
	}
}

static int count_progress(void *arg, uint64_t done, uint64_t total)
{
	unsigned *n = arg;

	assert_true(done <= total);
	(*n)++;
	return 0;
}

static void test_flatten_chain(void **state)
{
	struct rod_store *s = *state;
	struct image top, snap, mid;
	uint32_t d0, d1;
	unsigned calls = 0;
	char **names;
	size_t n;

	build_chain(s);
	assert_int_equal(rod_vol_snapshot(s, "c7", "before", NULL), 0);
	write_grains(s, "c7", 999, 30, GRAINS); /* the snapshot and the volume now differ */
	assert_int_equal(rod_vol_depth(s, "c7", &d0), 0);
	assert_true(d0 > 4);
	assert_true(rod_vol_needs_flatten(s, "c7"));
	assert_false(rod_vol_needs_flatten(s, "c1"));
	assert_int_equal(rod_store_flatten_list(s, &names, &n), 0);
	assert_true(n >= 1);
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		found |= !strcmp(names[i], "c7");
		assert_null(strchr(names[i], '.')); /* volumes, not snapshots */
		free(names[i]);
	}
	free(names);
	assert_true(found);
	take(s, "c7", &top);
	take(s, "c7.before", &snap);
	take(s, "c4", &mid);

	assert_int_equal(rod_vol_flatten(s, "c7", 0, count_progress, &calls), 0);
	assert_true(calls >= 2);
	assert_int_equal(rod_vol_depth(s, "c7", &d1), 0);
	printf("depth of c7: %u -> %u\n", d0, d1);
	assert_int_equal(d1, 1); /* what is left: ranges to deallocated space / zeros */
	assert_false(rod_vol_needs_flatten(s, "c7"));
	same(s, "c7", &top);
	same(s, "c7.before", &snap);
	same(s, "c4", &mid);

	/* A clone of the flattened volume is shallow again. */
	assert_int_equal(rod_vol_clone(s, "c7", "c8", NULL), 0);
	assert_int_equal(rod_vol_depth(s, "c8", &d1), 0);
	assert_true(d1 <= 4);
	same(s, "c8", &top);

	/* The intermediate volumes can go: the flattened one keeps their chunks alive. */
	for (int i = 0; i <= 6; i++) {
		char name[16];

		snprintf(name, sizeof(name), i ? "c%d" : "v%d", i);
		assert_int_equal(rod_vol_destroy(s, name), 0);
		assert_int_equal(rod_vol_eradicate(s, name), 0);
	}
	assert_int_equal(rod_store_gc(s, true), 0);
	same(s, "c7", &top);
	same(s, "c7.before", &snap);
	same(s, "c8", &top);

	/* Writes after the flatten land on top as usual. */
	write_grains(s, "c7", 4242, 50, GRAINS);
	struct image top2;
	take(s, "c7", &top2);

	rod_store_close(s);
	*state = s = open_store(false);
	same(s, "c7", &top2);
	same(s, "c7.before", &snap);
	assert_int_equal(rod_store_gc(s, true), 0);
	same(s, "c7", &top2);
	rod_store_close(s);
	*state = NULL;
	assert_int_equal(rod_store_rebuild_metadata(tmpl, NULL), 0);
	*state = s = open_store(false);
	same(s, "c7", &top2);
	same(s, "c7.before", &snap);
	same(s, "c8", &top);
	free(top.data);
	free(top2.data);
	free(snap.data);
	free(mid.data);
}

/* Everything, not only the deep entries: a one-level clone becomes block entries too. */
static void test_flatten_all(void **state)
{
	struct rod_store *s = *state;
	struct image im;
	uint32_t d;

	build_chain(s);
	take(s, "c1", &im);
	assert_int_equal(rod_vol_flatten(s, "c1", 0, NULL, NULL), 0); /* nothing deep */
	assert_int_equal(rod_vol_depth(s, "c1", &d), 0);
	assert_true(d >= 1);
	assert_int_equal(rod_vol_flatten(s, "c1", ROD_FLATTEN_ALL, NULL, NULL), 0);
	assert_int_equal(rod_vol_depth(s, "c1", &d), 0);
	assert_true(d <= 1); /* only zero/deallocated ranges are left */
	same(s, "c1", &im);
	assert_int_equal(rod_vol_destroy(s, "v0"), 0);
	assert_int_equal(rod_vol_eradicate(s, "v0"), 0);
	assert_int_equal(rod_store_gc(s, true), 0);
	same(s, "c1", &im);
	assert_int_equal(rod_vol_flatten(s, "nosuch", 0, NULL, NULL), -ENOENT);
	free(im.data);
}

static int cancel_after(void *arg, uint64_t done, uint64_t total)
{
	(void)total;
	return done > 0 && --*(int *)arg <= 0;
}

static void test_cancel(void **state)
{
	struct rod_store *s = *state;
	struct image im;
	int left = 1;
	uint32_t d;

	build_chain(s);
	take(s, "c7", &im);
	assert_int_equal(rod_vol_flatten(s, "c7", 0, cancel_after, &left), -ECANCELED);
	same(s, "c7", &im);
	assert_true(rod_vol_needs_flatten(s, "c7"));
	assert_int_equal(rod_vol_flatten(s, "c7", 0, NULL, NULL), 0);
	assert_int_equal(rod_vol_depth(s, "c7", &d), 0);
	assert_true(d <= 4);
	same(s, "c7", &im);
	free(im.data);
}

static int kill_after(void *arg, uint64_t done, uint64_t total)
{
	(void)total;
	if (done > 0 && --*(int *)arg <= 0)
		kill(getpid(), SIGKILL);
	return 0;
}

/* A child flattens and is killed (SIGKILL) after a few batches; the reopened store reads
 * the same, and a second flatten finishes the job. */
static void test_crash_in_the_middle(void **state)
{
	struct rod_store *s = *state;
	struct image top, snap;
	uint32_t d;

	build_chain(s);
	assert_int_equal(rod_vol_snapshot(s, "c7", "s", NULL), 0);
	write_grains(s, "c7", 77, 40, GRAINS / 2);
	take(s, "c7", &top);
	take(s, "c7.s", &snap);
	rod_store_close(s);
	*state = NULL;
	/* Each round is killed after its first batch (one more batch durable each time). */
	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();
		int st;

		assert_true(pid >= 0);
		if (pid == 0) {
			struct rod_store *cs = open_store(false);
			int left = 1;

			rod_vol_flatten(cs, "c7", 0, kill_after, &left);
			_exit(3); /* finished before the kill */
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		s = open_store(false);
		same(s, "c7", &top);
		same(s, "c7.s", &snap);
		assert_true(rod_vol_needs_flatten(s, "c7")); /* stopped in the middle */
		rod_store_close(s);
	}
	*state = s = open_store(false);
	assert_int_equal(rod_vol_flatten(s, "c7", 0, NULL, NULL), 0);
	assert_int_equal(rod_vol_depth(s, "c7", &d), 0);
	assert_true(d <= 1);
	same(s, "c7", &top);
	same(s, "c7.s", &snap);
	free(top.data);
	free(snap.data);
}

/* Writes, reads and a snapshot while the flatten runs: the writer knows what every grain
 * must hold (it is the only writer), so the volume and the snapshot are checked after. */
struct busy {
	struct rod_store *s;
	struct image *want;     /* updated by the writer */
	struct image snap;      /* what the snapshot must read */
	volatile int stop;
	int writes, snapped, errors;
};

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	struct rod_vol *v;
	uint32_t seed = 4711;
	uint8_t buf[ROD_GRAIN], rb[ROD_GRAIN];

	if (rod_vol_open(b->s, "c7", &v))
		return NULL;
	while (!b->stop || b->writes < 100) {
		uint64_t g = rnd(&seed) % GRAINS;

		for (size_t j = 0; j < sizeof(buf); j += 4) {
			uint32_t x = rnd(&seed);
			memcpy(buf + j, &x, 4);
		}
		if (rod_vol_write(v, g * ROD_GRAIN, buf, sizeof(buf), 0)) {
			b->errors++;
			break;
		}
		memcpy(b->want->data + g * ROD_GRAIN, buf, ROD_GRAIN);
		b->want->mapped[g] = true;
		b->writes++;
		g = rnd(&seed) % GRAINS;
		if (rod_vol_read(v, g * ROD_GRAIN, rb, sizeof(rb)) ||
		    memcmp(rb, b->want->data + g * ROD_GRAIN, ROD_GRAIN))
			b->errors++;
		if (b->writes == 50) {
			b->snap.data = malloc(VOL_SIZE);
			memcpy(b->snap.data, b->want->data, VOL_SIZE);
			memcpy(b->snap.mapped, b->want->mapped, sizeof(b->snap.mapped));
			if (rod_vol_snapshot(b->s, "c7", "busy", NULL))
				b->errors++;
			b->snapped = 1;
		}
	}
	rod_vol_close(v);
	return NULL;
}

static void test_flatten_while_busy(void **state)
{
	struct rod_store *s = *state;
	struct image want;
	struct busy b = { .s = s, .want = &want };
	pthread_t th;
	uint32_t d;

	build_chain(s);
	take(s, "c7", &want);
	assert_int_equal(pthread_create(&th, NULL, busy_main, &b), 0);
	assert_int_equal(rod_vol_flatten(s, "c7", 0, NULL, NULL), 0);
	int during = b.writes;
	b.stop = 1;
	pthread_join(th, NULL);
	print_message("%d writes during the flatten, %d in all\n", during, b.writes);
	assert_int_equal(b.errors, 0);
	assert_true(b.snapped);
	assert_int_equal(rod_vol_depth(s, "c7", &d), 0);
	assert_true(d <= 1);
	same(s, "c7", &want);
	same(s, "c7.busy", &b.snap);
	rod_store_close(s);
	*state = s = open_store(false);
	same(s, "c7", &want);
	same(s, "c7.busy", &b.snap);
	free(want.data);
	free(b.snap.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_flatten_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatten_chain, setup_nodedupe, teardown),
		cmocka_unit_test_setup_teardown(test_flatten_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_in_the_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatten_while_busy, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
