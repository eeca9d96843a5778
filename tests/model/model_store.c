/* Model-based randomized test of the storage engine.
 *
 * Thousands of random operations run against the engine and against a tiny in-RAM
 * reference model (byte arrays + a mapped flag per grain); every read is compared. A
 * "crash" operation forks a child that runs the next operations on the engine and dies
 * by SIGKILL right after its last acknowledgement; the parent applies the same operations
 * to the model (same PRNG state), reopens the store (log replay) and goes on.
 *
 *   model_store [seed] [ops]      (or ROD_MODEL_SEED / ROD_MODEL_OPS)
 * A failure prints the seed and the operation number; rerun with that seed to replay. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
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

#define G ROD_GRAIN
#define MAXV 24

struct mvol {
	char name[ROD_SNAP_NAME_MAX];
	bool used, snap, destroyed;
	int parent;               /* snapshot: index of its volume */
	uint64_t size;
	uint32_t bs;
	uint8_t *data;
	uint8_t *mapped;          /* per grain */
};

static struct {
	uint64_t seed, rng, vrng, opno;
	const char *self;
	char dir[64];
	struct rod_store *s;
	struct mvol v[MAXV];
	int nvol_created;
	bool verbose;
} M;

static uint64_t rnd(void)
{
	/* xorshift64* */
	M.rng ^= M.rng >> 12;
	M.rng ^= M.rng << 25;
	M.rng ^= M.rng >> 27;
	return M.rng * 2685821657736338717ull;
}

static uint64_t rndn(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* Verification draws from its own stream so a model-only replay (the crash child) sees
 * the same operations as the run that verified along the way. */
static uint64_t vrndn(uint64_t n)
{
	M.vrng ^= M.vrng >> 12;
	M.vrng ^= M.vrng << 25;
	M.vrng ^= M.vrng >> 27;
	return n ? (M.vrng * 2685821657736338717ull) % n : 0;
}

void rod_store_debug_grain(struct rod_store *s, const char *name, uint64_t g);

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "model: FAILED at op %" PRIu64 " (replay: model_store %" PRIu64 " ...): ",
		M.opno, M.seed);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

#define LOG(...) do { if (M.verbose) { printf("[%" PRIu64 "%s] ", M.opno, engine ? "" : " model-only"); printf(__VA_ARGS__); printf("\n"); } } while (0)
#define CHECK(expr, ...) do { if (!(expr)) die(__VA_ARGS__); } while (0)

static void gen_data(uint8_t *buf, uint64_t len)
{
	uint64_t x = rnd() | 1;

	/* Some grains of zeros too: the engine stores them as zero references. */
	if (rndn(8) == 0) {
		memset(buf, 0, len);
		return;
	}
	/* Data reduction: repeated data (dedupe) from a small set of seeds, and
	 * compressible data (runs of a few byte values). */
	if (rndn(4) == 0)
		x = 0x9e3779b97f4a7c15ull * (1 + rndn(6)) | 1;
	if (rndn(4) == 0) {
		for (uint64_t i = 0; i < len; i++) {
			if (i % 64 == 0)
				x = x * 6364136223846793005ull + 1442695040888963407ull;
			buf[i] = (uint8_t)('a' + (x >> 60) % 4 + i % 3);
		}
		return;
	}
	for (uint64_t i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
}

static void store_open(void)
{
	bool noreduce = getenv("ROD_MODEL_NOREDUCE") != NULL;
	struct rod_store_opts o = { .dir = M.dir, .create = true, .array_name = "model",
				    .no_gc_thread = true, .no_dedupe = noreduce,
				    .no_compress = noreduce, .no_encrypt = noreduce };
	int rc = rod_store_open(&o, &M.s);

	CHECK(rc == 0, "open: %s", strerror(-rc));
}

static int free_slot(void)
{
	for (int i = 0; i < MAXV; i++)
		if (!M.v[i].used)
			return i;
	return -1;
}

static int pick_r(bool want_snap_ok, bool want_vol_only, uint64_t (*rn)(uint64_t))
{
	int idx[MAXV], n = 0;

	for (int i = 0; i < MAXV; i++) {
		struct mvol *m = &M.v[i];

		if (!m->used || m->destroyed)
			continue;
		if (want_vol_only && m->snap)
			continue;
		if (!want_snap_ok && m->snap)
			continue;
		idx[n++] = i;
	}
	return n ? idx[rn(n)] : -1;
}

static int pick(bool want_snap_ok, bool want_vol_only)
{
	return pick_r(want_snap_ok, want_vol_only, rndn);
}

static struct rod_vol *h_open(int i)
{
	struct rod_vol *h;
	int rc = rod_vol_open(M.s, M.v[i].name, &h);

	CHECK(rc == 0, "open %s: %s", M.v[i].name, strerror(-rc));
	return h;
}

static void mvol_alloc(struct mvol *m, uint64_t size)
{
	m->size = size;
	m->data = calloc(1, size);
	m->mapped = calloc(1, (size + G - 1) / G);
}

static void mvol_free(struct mvol *m)
{
	free(m->data);
	free(m->mapped);
	memset(m, 0, sizeof(*m));
}

static uint64_t rnd_size(void)
{
	static const uint64_t sizes[] = { 64 << 10, 256 << 10, 1 << 20, (2 << 20) + 8192 };

	return sizes[rndn(4)] + 512 * rndn(3);
}

/* mark grains of [off, off+len) mapped */
static void m_map(struct mvol *m, uint64_t off, uint64_t len)
{
	for (uint64_t g = off / G; g * G < off + len; g++)
		m->mapped[g] = 1;
}

/* ---- operations (engine: run on the engine too) ---- */

static void op_create(bool engine)
{
	int i = free_slot();
	char name[32];

	if (i < 0)
		return;
	snprintf(name, sizeof(name), "v%d", M.nvol_created++);
	uint64_t size = rnd_size();
	uint32_t bs = rndn(4) == 0 && size % 4096 == 0 ? 4096 : 512;
	LOG("create %s size %" PRIu64 " bs %u", name, size, bs);
	if (engine) {
		int rc = rod_vol_create(M.s, name, size, bs, NULL);
		CHECK(rc == 0, "create %s: %s", name, strerror(-rc));
	}
	struct mvol *m = &M.v[i];
	m->used = true;
	m->bs = bs;
	snprintf(m->name, sizeof(m->name), "%s", name);
	mvol_alloc(m, size);
}

static void rnd_range(struct mvol *m, uint64_t maxlen, uint64_t *off, uint64_t *len)
{
	uint64_t secs = m->size / 512;
	uint64_t o = rndn(secs);
	uint64_t l = 1 + rndn(ROD_MIN(maxlen / 512, secs - o));

	*off = o * 512;
	*len = l * 512;
}

static void op_write(bool engine)
{
	int i = pick(false, true);
	uint64_t off, len;

	if (i < 0)
		return;
	struct mvol *m = &M.v[i];
	rnd_range(m, rndn(4) ? 64 << 10 : m->size, &off, &len);
	uint8_t *buf = malloc(len);
	gen_data(buf, len);
	LOG("write %s %" PRIu64 "+%" PRIu64 " (grains %" PRIu64 "-%" PRIu64 ")", m->name, off, len, off / G, (off + len - 1) / G);
	if (engine) {
		struct rod_vol *h = h_open(i);
		int rc = rod_vol_write(h, off, buf, len, 0);
		CHECK(rc == 0, "write %s %" PRIu64 "+%" PRIu64 ": %s", m->name, off, len, strerror(-rc));
		rod_vol_close(h);
	}
	memcpy(m->data + off, buf, len);
	m_map(m, off, len);
	free(buf);
}

static void op_zero(bool engine, bool unmap)
{
	int i = pick(false, true);
	uint64_t off, len;

	if (i < 0)
		return;
	struct mvol *m = &M.v[i];
	rnd_range(m, rndn(2) ? 64 << 10 : m->size, &off, &len);
	LOG("%s %s %" PRIu64 "+%" PRIu64 " (grains %" PRIu64 "-%" PRIu64 ")", unmap ? "unmap" : "zero", m->name, off, len, off / G, (off + len - 1) / G);
	if (engine) {
		struct rod_vol *h = h_open(i);
		int rc = unmap ? rod_vol_unmap(h, off, len) : rod_vol_zero(h, off, len);
		CHECK(rc == 0, "%s %s: %s", unmap ? "unmap" : "zero", m->name, strerror(-rc));
		rod_vol_close(h);
	}
	memset(m->data + off, 0, len);
	for (uint64_t g = off / G; g * G < off + len; g++) {
		bool full = g * G >= off && (g + 1) * G <= off + len;
		m->mapped[g] = unmap && full ? 0 : 1;
	}
}

static void op_snapshot(bool engine)
{
	int i = pick(false, true), j = free_slot();
	char suf[16];

	if (i < 0 || j < 0)
		return;
	snprintf(suf, sizeof(suf), "s%d", M.nvol_created++);
	struct mvol *m = &M.v[i], *sn = &M.v[j];
	LOG("snapshot %s.%s", m->name, suf);
	if (engine) {
		struct rod_vol_info info;
		int rc = rod_vol_snapshot(M.s, m->name, suf, &info);
		CHECK(rc == 0, "snapshot %s: %s", m->name, strerror(-rc));
	}
	char nm[ROD_SNAP_NAME_MAX];
	snprintf(nm, sizeof(nm), "%.40s.%.40s", m->name, suf);
	sn->used = true;
	sn->snap = true;
	sn->parent = i;
	sn->bs = m->bs;
	memcpy(sn->name, nm, sizeof(nm));
	mvol_alloc(sn, m->size);
	memcpy(sn->data, m->data, m->size);
	memcpy(sn->mapped, m->mapped, (m->size + G - 1) / G);
}

static void op_clone(bool engine)
{
	int i = pick(true, false), j = free_slot();
	char name[32];

	if (i < 0 || j < 0)
		return;
	snprintf(name, sizeof(name), "c%d", M.nvol_created++);
	struct mvol *m = &M.v[i], *c = &M.v[j];
	LOG("clone %s -> %s", m->name, name);
	if (engine) {
		int rc = rod_vol_clone(M.s, m->name, name, NULL);
		CHECK(rc == 0, "clone %s: %s", m->name, strerror(-rc));
	}
	c->used = true;
	c->bs = m->bs;
	snprintf(c->name, sizeof(c->name), "%s", name);
	mvol_alloc(c, m->size);
	memcpy(c->data, m->data, m->size);
	memcpy(c->mapped, m->mapped, (m->size + G - 1) / G);
}

static void op_copy(bool engine)
{
	int si = pick(true, false), di = pick(false, true);

	if (si < 0 || di < 0)
		return;
	if (rndn(3) == 0)
		si = di; /* same volume, often overlapping */
	struct mvol *sm = &M.v[si], *dm = &M.v[di];
	uint64_t maxl = ROD_MIN(sm->size, dm->size);
	uint64_t len = 512 * (1 + rndn(maxl / 512 - 1));
	uint64_t soff = 512 * rndn((sm->size - len) / 512 + 1);
	uint64_t doff;
	if (rndn(4))
		doff = (soff % G) + G * rndn((dm->size - len - soff % G) / G + 1); /* same phase */
	else
		doff = 512 * rndn((dm->size - len) / 512 + 1);
	if (doff + len > dm->size)
		doff = dm->size - len - (dm->size - len) % 512;
	LOG("copy %s+%" PRIu64 " -> %s+%" PRIu64 " len %" PRIu64 " (dst grains %" PRIu64 "-%" PRIu64 ")", sm->name, soff, dm->name, doff, len, doff / G, (doff + len - 1) / G);
	if (engine) {
		struct rod_vol *sh = h_open(si), *dh = h_open(di);
		int rc = rod_vol_copy(sh, soff, dh, doff, len);
		CHECK(rc == 0, "copy %s+%" PRIu64 " -> %s+%" PRIu64 " len %" PRIu64 ": %s", sm->name,
		      soff, dm->name, doff, len, strerror(-rc));
		rod_vol_close(sh);
		rod_vol_close(dh);
	}
	/* mapped: aligned middle copies the source's state, everything else was written */
	uint8_t *tmpd = malloc(len), *tmpm = malloc(sm->size / G + 2);
	memcpy(tmpd, sm->data + soff, len);
	memcpy(tmpm, sm->mapped, (sm->size + G - 1) / G);
	memcpy(dm->data + doff, tmpd, len);
	uint64_t a = ROD_ROUND_UP(doff, G), b = ROD_ROUND_DOWN(doff + len, G);
	bool same_phase = doff % G == soff % G && b > a;
	for (uint64_t g = doff / G; g * G < doff + len; g++) {
		if (same_phase && g * G >= a && (g + 1) * G <= b) {
			uint64_t sg = (g * G - doff + soff) / G;
			dm->mapped[g] = tmpm[sg];
		} else {
			dm->mapped[g] = 1;
		}
	}
	free(tmpd);
	free(tmpm);
}

static void op_revert(bool engine)
{
	int snaps[MAXV], n = 0;

	for (int i = 0; i < MAXV; i++)
		if (M.v[i].used && M.v[i].snap && !M.v[i].destroyed && M.v[i].parent >= 0 && M.v[M.v[i].parent].used &&
		    !M.v[M.v[i].parent].destroyed && !M.v[M.v[i].parent].snap)
			snaps[n++] = i;
	if (!n)
		return;
	int si = snaps[rndn(n)], vi = M.v[si].parent;
	struct mvol *sn = &M.v[si], *m = &M.v[vi];
	LOG("revert %s to %s", m->name, sn->name);
	if (engine) {
		int rc = rod_vol_revert(M.s, m->name, sn->name);
		CHECK(rc == (sn->size == m->size ? 0 : -EINVAL), "revert %s to %s: %s", m->name,
		      sn->name, strerror(-rc));
	}
	if (sn->size == m->size) {
		memcpy(m->data, sn->data, m->size);
		memcpy(m->mapped, sn->mapped, (m->size + G - 1) / G);
	}
}

static void op_resize(bool engine)
{
	int i = pick(false, true);

	if (i < 0)
		return;
	struct mvol *m = &M.v[i];
	uint64_t ns = rnd_size();
	ns -= ns % m->bs;
	LOG("resize %s %" PRIu64 " -> %" PRIu64, m->name, m->size, ns);
	if (engine) {
		int rc = rod_vol_resize(M.s, m->name, ns);
		CHECK(rc == 0, "resize %s to %" PRIu64 ": %s", m->name, ns, strerror(-rc));
	}
	uint8_t *nd = calloc(1, ns), *nm = calloc(1, (ns + G - 1) / G);
	uint64_t keep = ROD_MIN(ns, m->size);
	memcpy(nd, m->data, keep);
	memcpy(nm, m->mapped, (keep + G - 1) / G);
	if (ns < m->size && ns % G) {
		/* the cut grain was zeroed past the end: mapped */
		nm[ns / G] = 1;
	}
	if (ns > m->size && m->size % G == 0) {
		/* nothing */
	}
	/* grains wholly beyond the old end start unmapped */
	for (uint64_t g = (keep + G - 1) / G; g < (ns + G - 1) / G; g++)
		nm[g] = 0;
	free(m->data);
	free(m->mapped);
	m->data = nd;
	m->mapped = nm;
	m->size = ns;
}

static void op_destroy(bool engine)
{
	int i = pick(true, false);

	if (i < 0)
		return;
	struct mvol *m = &M.v[i];
	LOG("destroy %s", m->name);
	if (engine) {
		int rc = rod_vol_destroy(M.s, m->name);
		CHECK(rc == 0, "destroy %s: %s", m->name, strerror(-rc));
	}
	m->destroyed = true;
	int r = (int)rndn(3);
	LOG("  then %s", r == 0 ? "recover" : r == 1 ? "eradicate" : "keep");
	if (r == 0) {
		if (engine) {
			int rc = rod_vol_recover(M.s, m->name);
			CHECK(rc == 0, "recover %s: %s", m->name, strerror(-rc));
		}
		m->destroyed = false;
	} else if (r == 1) {
		if (engine) {
			int rc = rod_vol_eradicate(M.s, m->name);
			CHECK(rc == 0, "eradicate %s: %s", m->name, strerror(-rc));
		}
		/* snapshots keep their data; a volume with live snapshots keeps its slot until
		 * they go, as reverts need the parent (not after eradication). */
		bool has_snap = false;
		for (int j = 0; j < MAXV; j++)
			if (M.v[j].used && M.v[j].snap && M.v[j].parent == i)
				has_snap = true;
		if (has_snap) {
			m->used = true; /* keep model slot marked destroyed (gone) */
			m->destroyed = true;
			m->name[0] = 0;
			/* orphan its snapshots' parent link */
			for (int j = 0; j < MAXV; j++)
				if (M.v[j].used && M.v[j].snap && M.v[j].parent == i)
					M.v[j].parent = -1;
			mvol_free(m);
		} else {
			mvol_free(m);
		}
	}
}

static void verify_vol(int i, bool full)
{
	struct mvol *m = &M.v[i];
	struct rod_vol *h = h_open(i);
	uint64_t off = 0, len = m->size;
	uint8_t *buf;

	if (!full) {
		off = 512 * vrndn(m->size / 512);
		len = 512 * (1 + vrndn(ROD_MIN((256u << 10) / 512, (m->size - off) / 512)));
	}
	buf = malloc(len);
	int rc = rod_vol_read(h, off, buf, len);
	CHECK(rc == 0, "read %s: %s", m->name, strerror(-rc));
	CHECK(rod_vol_size(h) == m->size, "size of %s: %" PRIu64 " != %" PRIu64, m->name,
	      rod_vol_size(h), m->size);
	if (memcmp(buf, m->data + off, len)) {
		uint64_t d = 0;
		while (buf[d] == m->data[off + d])
			d++;
		rod_store_debug_grain(M.s, m->name, (off + d) / G);
		uint64_t e = d;
		while (e < len && buf[e] != m->data[off + e])
			e++;
		fprintf(stderr, "differs for %" PRIu64 " bytes; read range %" PRIu64 "+%" PRIu64 "\n", e - d, off, len);
		{
			uint8_t gb[G];
			uint64_t g0 = (off + d) / G * G;
			rod_vol_read(h, g0, gb, G);
			size_t nd = 0, first = G;
			for (size_t q = 0; q < G; q++)
				if (gb[q] != m->data[g0 + q]) {
					nd++;
					if (first == G)
						first = q;
				}
			fprintf(stderr, "whole-grain read: %zu bytes differ, first at %zu\n", nd, first);
		}
		die("data of %s differs at byte %" PRIu64 " (grain %" PRIu64 "): got %02x want %02x",
		    m->name, off + d, (off + d) / G, buf[d], m->data[off + d]);
	}
	free(buf);
	/* mapped status of a random grain */
	uint64_t g = vrndn((m->size + G - 1) / G);
	bool mapped;
	uint64_t l;
	rc = rod_vol_lba_status(h, g * G, G, &mapped, &l);
	CHECK(rc == 0, "lba_status: %s", strerror(-rc));
	CHECK(mapped == (m->mapped[g] != 0), "lba_status of %s grain %" PRIu64 ": engine %d model %d",
	      m->name, g, mapped, m->mapped[g]);
	rod_vol_close(h);
}

static void verify_all(void)
{
	for (int i = 0; i < MAXV; i++)
		if (M.v[i].used && !M.v[i].destroyed && M.v[i].data)
			verify_vol(i, true);
}

static void step(bool engine)
{
	unsigned r = (unsigned)rndn(100);

	if (r < 4)
		op_create(engine);
	else if (r < 40)
		op_write(engine);
	else if (r < 47)
		op_zero(engine, false);
	else if (r < 55)
		op_zero(engine, true);
	else if (r < 62)
		op_snapshot(engine);
	else if (r < 66)
		op_clone(engine);
	else if (r < 80)
		op_copy(engine);
	else if (r < 84)
		op_revert(engine);
	else if (r < 88)
		op_resize(engine);
	else if (r < 92)
		op_destroy(engine);
	else if (r < 94) {
		bool full = rndn(4) == 0;
		LOG("gc%s", full ? " full" : "");
		if (engine && !getenv("ROD_MODEL_NOGC"))
			rod_store_gc(M.s, full);
	} else if (r < 97 && engine) {
		bool rebuild = vrndn(3) == 0;
		LOG("reopen%s", rebuild ? " with metadata rebuilt from the segments" : "");
		rod_store_close(M.s);
		if (rebuild) {
			int rc = rod_store_rebuild_metadata(M.dir, NULL);
			CHECK(rc == 0, "rebuild: %s", strerror(-rc));
		}
		store_open();
	} else if (r >= 97) {
		/* Flatten changes no data: the model stays as it is. */
		int i = pick(true, false);
		bool all = rndn(2) == 0;

		if (i < 0)
			return;
		LOG("flatten %s%s", M.v[i].name, all ? " (all)" : "");
		if (engine) {
			int rc = rod_vol_flatten(M.s, M.v[i].name, all ? ROD_FLATTEN_ALL : 0, NULL, NULL);
			CHECK(rc == 0, "flatten %s: %s", M.v[i].name, strerror(-rc));
		}
	}
}

/* Run k steps in a fresh process that dies by SIGKILL after its last acknowledgement.
 * (A forked copy of this process cannot use RocksDB: its thread pool stays behind.) The
 * child replays the operation stream on the model alone up to this point, then runs the
 * next k operations on the engine. */
static void crash_cycle(unsigned k)
{
	bool engine = true;
	char a_seed[32], a_op[32];
	pid_t pid;
	int st;

	LOG("crash after %u ops", k);
	rod_store_close(M.s);
	M.s = NULL;
	fflush(NULL);
	snprintf(a_seed, sizeof(a_seed), "%" PRIu64, M.seed);
	snprintf(a_op, sizeof(a_op), "%" PRIu64, M.opno);
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		execl(M.self, M.self, "--child", a_seed, a_op, M.dir, (char *)NULL);
		_exit(3);
	}
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
	if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
		die("crash child did not die by SIGKILL (status %d)", st);
	for (unsigned i = 0; i < k; i++)
		step(false);
	store_open();
}

/* The operation stream. child_at: in a crash child, the op number whose crash cycle it
 * runs on the engine (everything before is model-only). */
static void run_ops(uint64_t ops, uint64_t child_at)
{
	bool child = child_at != UINT64_MAX;

	op_create(!child);
	op_create(!child);
	for (M.opno = 0; M.opno < ops; M.opno++) {
		if (rndn(150) == 0) {
			unsigned k = 1 + (unsigned)rndn(8);

			if (child && M.opno == child_at) {
				store_open();
				for (unsigned i = 0; i < k; i++)
					step(true);
				kill(getpid(), SIGKILL);
			}
			if (child) {
				for (unsigned i = 0; i < k; i++)
					step(false);
				continue;
			}
			crash_cycle(k);
			verify_all();
			continue;
		}
		step(!child);
		if (child)
			continue;
		int i = pick_r(true, false, vrndn);
		if (i >= 0)
			verify_vol(i, false);
		if (M.opno % 200 == 199)
			verify_all();
	}
}

int main(int argc, char **argv)
{
	const char *e;
	uint64_t ops = 2000, child_at = UINT64_MAX;

	M.self = argv[0];
	if (argc == 5 && !strcmp(argv[1], "--child")) {
		M.seed = strtoull(argv[2], NULL, 0);
		child_at = strtoull(argv[3], NULL, 0);
		snprintf(M.dir, sizeof(M.dir), "%s", argv[4]);
		M.rng = M.seed * 0x9e3779b97f4a7c15ull + 1;
		M.vrng = M.seed + 7;
		M.verbose = false; /* the parent logs the same operations */
		run_ops(child_at + 1, child_at);
		return 2; /* not reached: the child kills itself */
	}
	M.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
	if ((e = getenv("ROD_MODEL_SEED")))
		M.seed = strtoull(e, NULL, 0);
	if (argc > 1)
		M.seed = strtoull(argv[1], NULL, 0);
	if ((e = getenv("ROD_MODEL_OPS")))
		ops = strtoull(e, NULL, 0);
	if (argc > 2)
		ops = strtoull(argv[2], NULL, 0);
	M.rng = M.seed * 0x9e3779b97f4a7c15ull + 1;
	M.vrng = M.seed + 7;
	M.verbose = getenv("ROD_MODEL_VERBOSE") != NULL;
	snprintf(M.dir, sizeof(M.dir), "/tmp/rodmodel.XXXXXX");
	if (!mkdtemp(M.dir))
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("model: seed %" PRIu64 ", %" PRIu64 " ops, dir %s\n", M.seed, ops, M.dir);
	fflush(stdout);
	store_open();
	run_ops(ops, UINT64_MAX);
	verify_all();
	rod_store_close(M.s);
	for (int i = 0; i < MAXV; i++)
		if (M.v[i].data)
			mvol_free(&M.v[i]);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", M.dir);
	if (system(cmd))
		return 1;
	printf("model: seed %" PRIu64 " passed %" PRIu64 " ops\n", M.seed, ops);
	return 0;
}
