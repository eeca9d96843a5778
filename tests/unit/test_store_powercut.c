/* Storage engine, write-back volumes and power cuts: writes acknowledged without a
 * SYNCHRONIZE CACHE may be lost, but a grain must then read its old data (or the new),
 * never fail; what was flushed before the cut, and every write-through write, stays.
 *
 * The power cut is simulated: a child process (exec'd, so RocksDB starts clean) writes
 * and checkpoints, then dies by SIGKILL (RocksDB's memtables are lost as in a power cut;
 * what RocksDB flushed to its files stays); the parent then cuts every segment file back
 * to the length the engine last made durable (the ROD_TEST_SYNC_MARK hook of segment.c),
 * which drops the page-cache-only tail a power cut would lose, and reopens the store. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
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

static char tmpl[64], mark[128];
static const char *self;

/* Grain ranges of the scenario (grain = 4 KiB). */
enum { A0 = 0, A1 = 1024,         /* wb: flushed before the child starts (its segment
					 * stays > 75 % live: the GC pass moves nothing) */
       B0 = 0, B1 = 128,          /* wb: overwritten by the child, not flushed */
       N0 = 2000, N1 = 2064,      /* wb: new grains, not flushed, before a checkpoint */
       D0 = 3000, D1 = 3064,      /* wb: new grains after the checkpoint */
       T0 = 0, T1 = 64,           /* wt: written before */
       C0 = 100, C1 = 164 };      /* wt: written by the child (write-through) */

static void pattern(uint8_t *buf, uint32_t tag, uint64_t g)
{
	uint32_t x = tag * 2654435761u ^ (uint32_t)g * 40503u;

	for (size_t i = 0; i < ROD_GRAIN; i += 4) {
		x = x * 1103515245u + 12345u;
		memcpy(buf + i, &x, 4);
	}
}

static struct rod_store *open_store(bool create)
{
	return stu_open(tmpl, "pc", create, false);
}

static void wr(struct rod_store *s, const char *vol, uint32_t tag, uint64_t g0, uint64_t g1)
{
	struct rod_vol *v;
	uint8_t *buf = malloc((g1 - g0) * ROD_GRAIN);

	assert_non_null(buf);
	for (uint64_t g = g0; g < g1; g++)
		pattern(buf + (g - g0) * ROD_GRAIN, tag, g);
	/* one write: the child is done long before the background thread's checkpoint
	 * (every 2 s), which would sync the write-back data first */
	assert_int_equal(rod_vol_open(s, vol, &v), 0);
	assert_int_equal(rod_vol_write(v, g0 * ROD_GRAIN, buf, (g1 - g0) * ROD_GRAIN, 0), 0);
	rod_vol_close(v);
	free(buf);
}

/* Each grain of [g0,g1) reads tag_old's or tag_new's pattern (0: zeros); the read must
 * succeed. Returns how many read the new data. */
static unsigned check(struct rod_store *s, const char *vol, uint64_t g0, uint64_t g1,
		      int tag_old, int tag_new)
{
	struct rod_vol *v;
	uint8_t buf[ROD_GRAIN], a[ROD_GRAIN], b[ROD_GRAIN];
	unsigned nnew = 0;

	assert_int_equal(rod_vol_open(s, vol, &v), 0);
	for (uint64_t g = g0; g < g1; g++) {
		int rc = rod_vol_read(v, g * ROD_GRAIN, buf, ROD_GRAIN);

		if (rc)
			fail_msg("%s grain %" PRIu64 ": read failed: %s", vol, g, strerror(-rc));
		memset(a, 0, sizeof(a));
		memset(b, 0, sizeof(b));
		if (tag_old)
			pattern(a, (uint32_t)tag_old, g);
		if (tag_new)
			pattern(b, (uint32_t)tag_new, g);
		if (!memcmp(buf, b, sizeof(b)) && tag_new >= 0)
			nnew++;
		else if (memcmp(buf, a, sizeof(a)))
			fail_msg("%s grain %" PRIu64 ": neither the old nor the new data", vol, g);
	}
	rod_vol_close(v);
	return nnew;
}

/* The child: write-through and write-back writes, a checkpoint (through a GC pass, as
 * the background thread or GC would), more write-back writes, then the "power cut". */
static int child_main(void)
{
	struct rod_store *s = open_store(false);

	wr(s, "wt", 3, C0, C1);       /* durable when acknowledged */
	wr(s, "wb", 2, B0, B1);       /* write-back: acknowledged, not synced */
	wr(s, "wb", 4, N0, N1);
	rod_store_gc(s, false);       /* checkpoint: RocksDB flushes its memtables */
	wr(s, "wb", 5, D0, D1);
	kill(getpid(), SIGKILL);
	return 2;
}

static void cut_segments(void)
{
	char path[600];
	uint8_t b[16];
	FILE *f;
	DIR *d;
	struct dirent *de;
	uint64_t mseg = 0, moff = 0;

	f = fopen(mark, "rb");
	assert_non_null(f);
	assert_int_equal(fread(b, 1, 16, f), 16);
	fclose(f);
	for (int i = 0; i < 8; i++) {
		mseg = mseg << 8 | b[i];
		moff = moff << 8 | b[8 + i];
	}
	snprintf(path, sizeof(path), "%s/seg", tmpl);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d))) {
		uint64_t id;

		if (sscanf(de->d_name, "%" SCNx64 ".seg", &id) != 1)
			continue;
		if (id < mseg)
			continue;
		snprintf(path, sizeof(path), "%s/seg/%s", tmpl, de->d_name);
		assert_int_equal(truncate(path, id == mseg ? (off_t)moff : 0), 0);
	}
	closedir(d);
}

/* guard: the child runs with ROD_TEST_MEMTABLE_GUARD=1, as if RocksDB's memtable were
 * always close to the size at which it switches by itself: every batch is then synced
 * before it is applied, so nothing acknowledged is lost. */
static void power_cut(bool guard)
{
	struct rod_store *s;
	struct rod_vol *v;
	pid_t pid;
	int st;
	unsigned nb, nn, nd;

	s = open_store(true);
	assert_int_equal(rod_vol_create(s, "wb", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_create(s, "wt", 64 * MiB, 512, NULL), 0);
	assert_int_equal(rod_vol_set_cache(s, "wb", ROD_CACHE_WRITE_BACK), 0);
	wr(s, "wb", 1, A0, A1);
	wr(s, "wt", 6, T0, T1);
	assert_int_equal(rod_vol_open(s, "wb", &v), 0);
	assert_int_equal(rod_vol_flush(v), 0); /* SYNCHRONIZE CACHE */
	rod_vol_close(v);
	rod_store_close(s);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("ROD_TEST_SYNC_MARK", mark, 1);
		if (guard)
			setenv("ROD_TEST_MEMTABLE_GUARD", "1", 1);
		execl(self, self, "--child", tmpl, (char *)NULL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	cut_segments();

	s = open_store(false);
	nb = check(s, "wb", B0, B1, 1, 2);       /* old (flushed) or new */
	check(s, "wb", B1, A1, 1, -1);           /* flushed, untouched: intact */
	nn = check(s, "wb", N0, N1, 0, 4);       /* zeros or new */
	nd = check(s, "wb", D0, D1, 0, 5);
	check(s, "wt", T0, T1, 6, -1);           /* write-through: all there */
	check(s, "wt", C0, C1, 3, -1);
	print_message("after the cut%s: %u/%u overwritten, %u/%u new, %u/%u later grains kept\n",
		      guard ? " (memtable guard)" : "", nb, B1 - B0, nn, N1 - N0, nd, D1 - D0);
	if (guard) {
		assert_int_equal(nb, B1 - B0);
		assert_int_equal(nn, N1 - N0);
		assert_int_equal(nd, D1 - D0);
	}
	/* The store goes on: new writes, a flush, a reopen. */
	wr(s, "wb", 7, B0, B1);
	assert_int_equal(rod_store_flush(s), 0);
	rod_store_close(s);
	s = open_store(false);
	check(s, "wb", B0, B1, 7, -1);
	check(s, "wb", B1, A1, 1, -1);
	rod_store_close(s);
}

static void test_writeback_power_cut(void **state)
{
	(void)state;
	power_cut(false);
}

static void test_memtable_guard(void **state)
{
	(void)state;
	power_cut(true);
}

static int setup(void **state)
{
	(void)state;
	stu_mkdtemp(tmpl, sizeof(tmpl), "rodpc");
	snprintf(mark, sizeof(mark), "%s.mark", tmpl);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stu_rmtree(tmpl, mark);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writeback_power_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memtable_guard, setup, teardown),
	};

	self = argv[0];
	if (argc == 3 && !strcmp(argv[1], "--child")) {
		snprintf(tmpl, sizeof(tmpl), "%s", argv[2]);
		return child_main();
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
