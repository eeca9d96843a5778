/* crash_iscsi: kill -9 crash test of the whole array, through iSCSI.
 *
 *   crash_iscsi RODD RODCTL CYCLES SEED [--keep] [--capacity SIZE]
 *
 * Starts rodd on a temp data dir, creates one 512e volume connected to a catch-all
 * host, then runs CYCLES times:
 *   - NT worker threads, each with its own iSCSI session and its own slice of the
 *     volume, send random WRITE(16) (grain-aligned and not), WRITE SAME(16) of zeroes
 *     with and without the UNMAP bit, UNMAP, COMPARE AND WRITE, EXTENDED COPY (LID1,
 *     block->block) and ODX (POPULATE TOKEN + RECEIVE ROD TOKEN INFORMATION + WRITE
 *     USING TOKEN) copies inside their slice; one command in flight per session;
 *   - every third cycle is a "GC" cycle: the workers overwrite a few small ranges
 *     over and over, so the log fills with garbage and, with the small --capacity
 *     rodd runs with, the store's garbage collector runs while the kill lands;
 *   - rodd gets SIGKILL at a random moment; every third restart is killed again
 *     a random few milliseconds after it was started (a kill during recovery),
 *     then restarted once more;
 *   - a fresh session reads the whole volume back and checks every 512-byte sector.
 *
 * The model lives in this (parent) process, which survives the kills, so it needs no
 * log file: for every sector it holds what the last ACKNOWLEDGED command left there,
 * as (tag, origin): tag 0 = zeroes, else the sector was written with pattern(tag,
 * origin) (origin = the sector it was first written to; copies move (tag, origin)
 * unchanged). A sector's content is self-describing, so a read-back sector is either
 * zeroes, or a valid pattern (then its (tag, origin) is compared), or garbage.
 * Commands in flight when rodd died (and commands that ended in a CHECK CONDITION)
 * are "in doubt": each sector they touch may hold the old or the new state, nothing
 * else. After the check the model takes what was read (each in-doubt sector settles
 * on one of its two states).
 *
 * Exit 0: all cycles passed; 1: a check failed (the sector, expected and found states
 * are printed); 2: setup failure. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define SECT 512u
#define VOL_MB 16u
#define NSECT (VOL_MB * 1024u * 1024u / SECT)
#define NT 4u
#define SLICE (NSECT / NT)
#define MAGIC 0x524f4443u       /* "RODC" in every written sector's second word */
#define MAXLEN 128u             /* sectors per command at most */

struct sst {
	uint64_t tag;           /* 0: zeroes */
	uint32_t origin;
};

/* A command whose outcome is unknown: sectors [start, start+n) may hold their old
 * state or news[i]. */
struct doubt {
	uint32_t start, n;
	struct sst *news;
};

struct worker {
	pthread_t th;
	unsigned idx;
	uint64_t rng;
	bool gc_mode;
	struct doubt *doubts;
	size_t ndoubts, capdoubts;
	unsigned long acked, refused;
	unsigned long by_kind[8];
	char err[256];          /* set on a failure that is the array's fault */
};

static const char *g_rodd, *g_rodctl;
static char g_dir[256], g_data[300], g_sock[300], g_log[300], g_portal[64], g_iqn[256];
static int g_port;
static const char *g_capacity = "128M";  /* space runs short by cycle ~4: GC under load */
static pid_t g_pid = -1;
static uint64_t g_seed;
static struct sst g_model[NSECT];
static uint8_t g_why_kind[NSECT];       /* diagnostics: the command that set g_model[s] */
static uint16_t g_why_cycle[NSECT];
static unsigned g_cycle;
static volatile uint32_t g_live_bad = UINT32_MAX;  /* a sector a live read found wrong */

/* Every acknowledged (or in-doubt) command, for the report when a check fails. */
struct oprec {
	uint16_t cycle;
	uint8_t worker, kind, doubt;
	uint32_t start, n, src;
	uint64_t tag;
};
static struct oprec *g_ops;
static size_t g_nops, g_capops;
static pthread_mutex_t g_ops_lock = PTHREAD_MUTEX_INITIALIZER;

static void op_log(unsigned worker, unsigned kind, bool doubt, uint32_t start, uint32_t n, uint32_t src,
		   uint64_t tag)
{
	pthread_mutex_lock(&g_ops_lock);
	if (g_nops == g_capops) {
		g_capops = g_capops ? 2 * g_capops : 65536;
		g_ops = realloc(g_ops, g_capops * sizeof(*g_ops));
	}
	g_ops[g_nops++] = (struct oprec){ (uint16_t)g_cycle, (uint8_t)worker, (uint8_t)kind, doubt, start, n,
					  src, tag };
	pthread_mutex_unlock(&g_ops_lock);
}
static uint8_t g_naa[32];       /* the volume's NAA designation descriptor (header + id) */
static size_t g_naa_len;
static atomic_uint_fast64_t g_tag;

static const char *kind_names[8] = { "write", "ws-unmap", "ws-zero", "unmap", "caw", "xcopy", "odx", "write-unal" };

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t *s)
{
	*s = splitmix(*s);
	return *s;
}

static uint32_t rnd_range(uint64_t *s, uint32_t lo, uint32_t hi) /* [lo, hi] */
{
	return lo + (uint32_t)(rnd(s) % (hi - lo + 1));
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void pattern(uint64_t tag, uint32_t origin, uint8_t *out)
{
	uint64_t w[SECT / 8];

	w[0] = tag;
	w[1] = (uint64_t)MAGIC << 32 | origin;
	for (unsigned k = 2; k < SECT / 8; k++)
		w[k] = splitmix(tag * 0x100000001b3ull ^ (uint64_t)origin << 12 ^ k);
	memcpy(out, w, SECT);
}

static void fill(const struct sst *st, uint8_t *out)
{
	if (st->tag)
		pattern(st->tag, st->origin, out);
	else
		memset(out, 0, SECT);
}

/* 0 and *st set when buf is zeroes or a valid pattern; -1 when it is garbage. */
static int decode(const uint8_t *buf, struct sst *st)
{
	uint64_t w[2];
	uint8_t want[SECT];

	memcpy(w, buf, sizeof(w));
	if (!w[0] && !w[1]) {
		for (unsigned i = 0; i < SECT; i++)
			if (buf[i])
				return -1;
		st->tag = 0;
		st->origin = 0;
		return 0;
	}
	if ((uint32_t)(w[1] >> 32) != MAGIC || !w[0])
		return -1;
	st->tag = w[0];
	st->origin = (uint32_t)w[1];
	pattern(st->tag, st->origin, want);
	return memcmp(want, buf, SECT) ? -1 : 0;
}

static bool sst_eq(const struct sst *a, const struct sst *b)
{
	return a->tag == b->tag && (a->tag == 0 || a->origin == b->origin);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- rodd and rodctl --------------------------------------------------------------- */

/* Runs rodctl with args; its stdout (up to len-1 bytes) into out. Returns exit status. */
static int rodctl(char *out, size_t len, const char *fmt, ...)
{
	char args[512], cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' %s 2>>'%s'", g_rodctl, g_sock, args, g_log);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	size_t n = 0;
	char tmp[4096];
	size_t r;
	while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (out && n + 1 < len) {
			size_t c = r < len - 1 - n ? r : len - 1 - n;
			memcpy(out + n, tmp, c);
			n += c;
		}
	}
	if (out && len)
		out[n] = 0;
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* "key": "value" in a JSON text (enough for rodctl's flat answers). */
static int json_str(const char *js, const char *key, char *out, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *p = strstr(js, pat);
	if (!p)
		return -1;
	p = strchr(p + strlen(pat), '"');
	if (!p)
		return -1;
	p++;
	size_t n = 0;
	while (*p && *p != '"' && n + 1 < len)
		out[n++] = *p++;
	out[n] = 0;
	return 0;
}

static void start_rodd(void)
{
	char listen[64];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", g_port);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execl(g_rodd, g_rodd, "--foreground", "--data", g_data, "--listen", listen, "--socket", g_sock,
		      "--array-name", "crashtest", "--capacity", g_capacity, (char *)NULL);
		_exit(127);
	}
	g_pid = pid;
}

static void kill_rodd(void)
{
	if (g_pid <= 0)
		return;
	kill(g_pid, SIGKILL);
	waitpid(g_pid, NULL, 0);
	g_pid = -1;
}

static int wait_ready(void)
{
	char out[4096];

	for (int i = 0; i < 600; i++) {
		if (rodctl(out, sizeof(out), "--json array show") == 0) {
			char portal[64];
			if (json_str(out, "target_iqn", g_iqn, sizeof(g_iqn)) ||
			    !strstr(out, "\"portals\"") ||
			    sscanf(strstr(out, "\"portals\""), "\"portals\"%*[^\"]\"%63[^\"]", portal) != 1)
				return -1;
			snprintf(g_portal, sizeof(g_portal), "%s", portal);
			g_port = atoi(strrchr(portal, ':') + 1);
			return 0;
		}
		int st;
		if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
			fprintf(stderr, "rodd exited (status 0x%x) before it was ready; see %s\n", st, g_log);
			g_pid = -1;
			return -1;
		}
		sleep_ms(50);
	}
	fprintf(stderr, "rodd not ready within 30 s\n");
	return -1;
}

/* ---- iSCSI ------------------------------------------------------------------------- */

static struct iscsi_context *session(const char *ini)
{
	char name[128];
	snprintf(name, sizeof(name), "iqn.2026-11.io.rodstore.test:crash-%s", ini);
	struct iscsi_context *ic = iscsi_create_context(name);
	if (!ic)
		return NULL;
	iscsi_set_targetname(ic, g_iqn);
	iscsi_set_session_type(ic, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ic, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_noautoreconnect(ic, 1);
	iscsi_set_timeout(ic, 30);
	if (iscsi_full_connect_sync(ic, g_portal, 0)) {
		fprintf(stderr, "login %s: %s\n", name, iscsi_get_error(ic));
		iscsi_destroy_context(ic);
		return NULL;
	}
	return ic;
}

enum outcome { OK, CHECK, TRANSPORT };

/* One command, retried while the target reports a unit attention (a restart, a
 * capacity or mode change), which changes no data. */
static enum outcome exec(struct iscsi_context *ic, const uint8_t *cdb, int cdb_len, int dir,
			 uint8_t *buf, size_t len, uint8_t *in, size_t in_len, char *sense, size_t sense_len)
{
	for (int tries = 0; tries < 8; tries++) {
		struct scsi_task *t = scsi_create_task(cdb_len, (unsigned char *)cdb,
						       dir == 1 ? SCSI_XFER_READ : dir == 2 ? SCSI_XFER_WRITE : SCSI_XFER_NONE,
						       (int)(dir == 1 ? in_len : dir == 2 ? len : 0));
		struct iscsi_data d = { .size = len, .data = buf };
		if (!t)
			return TRANSPORT;
		if (!iscsi_scsi_command_sync(ic, 0, t, dir == 2 ? &d : NULL)) {
			scsi_free_scsi_task(t);
			return TRANSPORT;
		}
		if (t->status == SCSI_STATUS_GOOD) {
			if (dir == 1 && in)
				memcpy(in, t->datain.data, (size_t)t->datain.size < in_len ? (size_t)t->datain.size : in_len);
			scsi_free_scsi_task(t);
			return OK;
		}
		if (t->status == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_UNIT_ATTENTION) {
			scsi_free_scsi_task(t);
			continue;
		}
		if (sense)
			snprintf(sense, sense_len, "status 0x%02x sense %02x/%02x/%02x", t->status, t->sense.key,
				 (t->sense.ascq >> 8) & 0xff, t->sense.ascq & 0xff);
		enum outcome o = t->status == SCSI_STATUS_CHECK_CONDITION || t->status == SCSI_STATUS_BUSY ||
				 t->status == SCSI_STATUS_TASK_SET_FULL ? CHECK : TRANSPORT;
		scsi_free_scsi_task(t);
		return o;
	}
	if (sense)
		snprintf(sense, sense_len, "unit attention 8 times in a row");
	return CHECK;
}

/* The NAA designation descriptor of LUN 0 (VPD 0x83), for the XCOPY CSCD descriptor. */
static int learn_naa(struct iscsi_context *ic)
{
	uint8_t cdb[6] = { 0x12, 1, 0x83, 0x0f, 0xff, 0 }, b[4096];
	memset(b, 0, sizeof(b));
	if (exec(ic, cdb, 6, 1, NULL, 0, b, 4095, NULL, 0) != OK)
		return -1;
	size_t end = 4u + ((size_t)b[2] << 8 | b[3]);
	for (size_t pos = 4; pos + 4 <= end && pos + 4 + b[pos + 3] <= sizeof(b); pos += 4u + b[pos + 3]) {
		if (((b[pos + 1] >> 4) & 3) == 0 && (b[pos + 1] & 0xf) == 3 && 4u + b[pos + 3] <= 24) {
			g_naa_len = 4u + b[pos + 3];
			memcpy(g_naa, b + pos, g_naa_len);
			g_naa[0] &= 0x0f;
			return 0;
		}
	}
	return -1;
}

/* ---- the workers ------------------------------------------------------------------- */

static void add_doubt(struct worker *w, uint32_t start, uint32_t n, const struct sst *news)
{
	if (w->ndoubts == w->capdoubts) {
		w->capdoubts = w->capdoubts ? 2 * w->capdoubts : 8;
		w->doubts = realloc(w->doubts, w->capdoubts * sizeof(*w->doubts));
	}
	struct doubt *d = &w->doubts[w->ndoubts++];
	d->start = start;
	d->n = n;
	d->news = malloc(n * sizeof(*news));
	memcpy(d->news, news, n * sizeof(*news));
}

/* Applies an acknowledged command to the model, or records it as in doubt. Returns
 * false when the worker must stop (rodd is gone). */
static bool settle(struct worker *w, enum outcome o, unsigned kind, uint32_t start, uint32_t n,
		   uint32_t src, const struct sst *news, const char *sense)
{
	if (o != CHECK)
		op_log(w->idx, kind, o != OK, start, n, src, news[0].tag);
	if (o == OK) {
		memcpy(&g_model[start], news, n * sizeof(*news));
		memset(&g_why_kind[start], (int)kind, n);
		for (uint32_t i = 0; i < n; i++)
			g_why_cycle[start + i] = (uint16_t)g_cycle;
		w->acked++;
		w->by_kind[kind]++;
		return true;
	}
	if (o == CHECK) {
		/* Only a full store may refuse a well-formed command here, and a refused
		 * command changes nothing (the store checks space before it writes). */
		w->refused++;
		if (!strstr(sense, "sense 07/27/07") && !w->err[0])
			snprintf(w->err, sizeof(w->err), "%s at sector %u+%u: %s", kind_names[kind], start, n, sense);
		if (!w->err[0])
			sleep_ms(1);    /* let GC catch up rather than spin */
		return !w->err[0];
	}
	add_doubt(w, start, n, news);
	return false;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char ini[16], sense[128] = "";
	snprintf(ini, sizeof(ini), "w%u", w->idx);
	struct iscsi_context *ic = session(ini);
	if (!ic)
		return NULL;    /* rodd may already be dead: nothing was sent */
	uint32_t base = w->idx * SLICE;
	uint8_t *buf = malloc(2 * MAXLEN * SECT);
	struct sst news[MAXLEN];
	uint32_t list_id = 1;

	for (;;) {
		uint8_t cdb[16] = { 0 };
		uint32_t n, off, start, src = 0;
		unsigned kind;
		enum outcome o;
		uint32_t pick = rnd_range(&w->rng, 0, 99);

		if (w->gc_mode) {
			/* 4 hot ranges of 32 sectors per slice, overwritten again and again */
			n = 8 * rnd_range(&w->rng, 1, 4);
			off = (rnd_range(&w->rng, 0, 3) * 512) + 8 * rnd_range(&w->rng, 0, 4 - n / 8);
			pick = 0;
		} else {
			n = rnd_range(&w->rng, 1, MAXLEN / 8) * 8;
			off = 8 * rnd_range(&w->rng, 0, (SLICE - n) / 8);
		}
		start = base + off;
		/* Read the range back now and then (before every GC-load write): a wrong
		 * answer here is wrong before any crash. */
		if (w->gc_mode || (rnd(&w->rng) & 7) == 0) {
			cdb[0] = 0x88;
			put64(cdb + 2, start);
			put32(cdb + 10, n);
			o = exec(ic, cdb, 16, 1, NULL, 0, buf, (size_t)n * SECT, sense, sizeof(sense));
			if (o == TRANSPORT)
				break;
			uint32_t bad_sector = start;
			for (uint32_t i = 0; o == OK && i < n; i++) {
				struct sst got;
				if (decode(buf + (size_t)i * SECT, &got) || !sst_eq(&got, &g_model[start + i])) {
					bad_sector = start + i;
					snprintf(w->err, sizeof(w->err), "live read of sector %u (checked after the last "
						 "restart, no kill since): expected tag %" PRIu64 " (%s in cycle %u), found tag %" PRIu64
						 "%s", start + i, g_model[start + i].tag,
						 kind_names[g_why_kind[start + i]], g_why_cycle[start + i], got.tag,
						 decode(buf + (size_t)i * SECT, &got) ? " (garbage)" : "");
					break;
				}
			}
			if (o != OK && !w->err[0])
				snprintf(w->err, sizeof(w->err), "READ at %u+%u: %s", start, n, sense);
			if (w->err[0]) {
				g_live_bad = bad_sector;
				break;
			}
			memset(cdb, 0, sizeof(cdb));
		}
		if (pick < 35 || pick >= 95) {
			kind = 0;
			if (pick >= 95) {       /* unaligned: read-modify-write of partial grains */
				kind = 7;
				n = rnd_range(&w->rng, 1, 20);
				start = base + rnd_range(&w->rng, 0, SLICE - n);
			}
			uint64_t tag = atomic_fetch_add(&g_tag, 1);
			for (uint32_t i = 0; i < n; i++) {
				news[i].tag = tag;
				news[i].origin = start + i;
				fill(&news[i], buf + (size_t)i * SECT);
			}
			cdb[0] = 0x8A;
			put64(cdb + 2, start);
			put32(cdb + 10, n);
			o = exec(ic, cdb, 16, 2, buf, (size_t)n * SECT, NULL, 0, sense, sizeof(sense));
		} else if (pick < 55) {         /* WRITE SAME(16) of a zero block, UNMAP bit or not */
			kind = pick < 47 ? 1 : 2;
			memset(buf, 0, SECT);
			memset(news, 0, n * sizeof(*news));
			cdb[0] = 0x93;
			cdb[1] = kind == 1 ? 0x08 : 0;
			put64(cdb + 2, start);
			put32(cdb + 10, n);
			o = exec(ic, cdb, 16, 2, buf, SECT, NULL, 0, sense, sizeof(sense));
		} else if (pick < 65) {         /* UNMAP, one or two descriptors */
			kind = 3;
			memset(news, 0, n * sizeof(*news));
			memset(buf, 0, 24);
			put16(buf, 22);
			put16(buf + 2, 16);
			put64(buf + 8, start);
			put32(buf + 16, n);
			cdb[0] = 0x42;
			put16(cdb + 7, 24);
			o = exec(ic, cdb, 10, 2, buf, 24, NULL, 0, sense, sizeof(sense));
		} else if (pick < 75) {         /* COMPARE AND WRITE of one sector */
			kind = 4;
			n = 1;
			start = base + rnd_range(&w->rng, 0, SLICE - 1);
			fill(&g_model[start], buf);
			news[0].tag = atomic_fetch_add(&g_tag, 1);
			news[0].origin = start;
			fill(&news[0], buf + SECT);
			cdb[0] = 0x89;
			put64(cdb + 2, start);
			cdb[13] = 1;
			o = exec(ic, cdb, 16, 2, buf, 2 * SECT, NULL, 0, sense, sizeof(sense));
			if (o == CHECK && strstr(sense, "/1d/00") && !w->err[0]) {
				/* the array holds something else than the last acknowledged write */
				snprintf(w->err, sizeof(w->err), "COMPARE AND WRITE at sector %u miscompared: the "
					 "acknowledged state was tag %" PRIu64, start, g_model[start].tag);
			}
		} else {                        /* copies: XCOPY or ODX, src and dst disjoint */
			kind = pick < 85 ? 5 : 6;
			uint32_t half = SLICE / 2;
			uint32_t a = 8 * rnd_range(&w->rng, 0, (half - n) / 8);
			uint32_t b = half + 8 * rnd_range(&w->rng, 0, (half - n) / 8);
			if (rnd(&w->rng) & 1) {
				src = base + a;
				start = base + b;
			} else {
				src = base + b;
				start = base + a;
			}
			memcpy(news, &g_model[src], n * sizeof(*news));
			if (kind == 5) {
				uint8_t *pl = buf;
				memset(pl, 0, 16 + 32 + 28);
				pl[0] = (uint8_t)list_id++;
				pl[1] = 2 << 3;           /* list id usage: none kept */
				put16(pl + 2, 32);
				put32(pl + 8, 28);
				pl[16] = 0xE4;
				memcpy(pl + 20, g_naa, g_naa_len);
				put32(pl + 44, SECT);     /* byte 44 = 0, 45..47 block length */
				uint8_t *sg = pl + 48;
				sg[0] = 0x02;
				put16(sg + 2, 0x18);
				put16(sg + 4, 0);
				put16(sg + 6, 0);
				put16(sg + 10, (uint16_t)n);
				put64(sg + 12, src);
				put64(sg + 20, start);
				cdb[0] = 0x83;
				put32(cdb + 10, 76);
				o = exec(ic, cdb, 16, 2, pl, 76, NULL, 0, sense, sizeof(sense));
			} else {
				uint8_t pl[536 + 16];
				uint32_t lid = (w->idx << 24) | list_id++;
				memset(pl, 0, sizeof(pl));
				put16(pl, 16 + 16 - 2);
				put16(pl + 14, 16);
				put64(pl + 16, src);
				put32(pl + 24, n);
				cdb[0] = 0x83;
				cdb[1] = 0x10;
				put32(cdb + 6, lid);
				put32(cdb + 10, 32);
				o = exec(ic, cdb, 16, 2, pl, 32, NULL, 0, sense, sizeof(sense));
				if (o == OK) {
					uint8_t r[1024];
					memset(cdb, 0, sizeof(cdb));
					cdb[0] = 0x84;
					cdb[1] = 0x07;
					put32(cdb + 2, lid);
					put32(cdb + 10, sizeof(r));
					memset(r, 0, sizeof(r));
					o = exec(ic, cdb, 16, 1, NULL, 0, r, sizeof(r), sense, sizeof(sense));
					size_t toff = 32u + r[13];
					if (o == OK && get32(r + toff) != 514) {
						snprintf(sense, sizeof(sense), "RRTI returned no token");
						o = CHECK;
					}
					if (o == OK) {
						memset(pl, 0, sizeof(pl));
						memcpy(pl + 16, r + toff + 6, 512);
						put16(pl, 536 + 16 - 2);
						put16(pl + 534, 16);
						put64(pl + 536, start);
						put32(pl + 544, n);
						memset(cdb, 0, sizeof(cdb));
						cdb[0] = 0x83;
						cdb[1] = 0x11;
						put32(cdb + 6, lid + 0x800000);
						put32(cdb + 10, sizeof(pl));
						o = exec(ic, cdb, 16, 2, pl, sizeof(pl), NULL, 0, sense, sizeof(sense));
					}
				}
			}
		}
		if (!settle(w, o, kind, start, n, kind >= 5 && kind <= 6 ? src : UINT32_MAX, news, sense))
			break;
	}
	free(buf);
	iscsi_destroy_context(ic);
	return NULL;
}

/* ---- verification ------------------------------------------------------------------ */

/* Prints the logged commands that touched sector s (and, for copies, their sources,
 * depth levels deep). */
static void history(uint32_t s, int depth)
{
	fprintf(stderr, "history of sector %u:\n", s);
	for (size_t i = 0; i < g_nops; i++) {
		const struct oprec *o = &g_ops[i];
		if (s < o->start || s >= o->start + o->n)
			continue;
		fprintf(stderr, "  #%zu cycle %u worker %u %s%s sectors %u+%u", i, o->cycle, o->worker,
			kind_names[o->kind], o->doubt ? " (in flight at the kill)" : "", o->start, o->n);
		if (o->src != UINT32_MAX)
			fprintf(stderr, " from %u (sector %u)", o->src, o->src + (s - o->start));
		fprintf(stderr, " tag %" PRIu64 "\n", o->tag);
	}
	for (size_t i = g_nops; depth > 0 && i-- > 0;) {
		const struct oprec *o = &g_ops[i];
		if (s >= o->start && s < o->start + o->n && !o->doubt) {
			if (o->src != UINT32_MAX)
				history(o->src + (s - o->start), depth - 1);
			break;
		}
	}
}

static int verify(unsigned cycle, struct worker *ws)
{
	struct iscsi_context *ic = session("verify");
	if (!ic)
		return -1;
	const uint32_t chunk = 2048;    /* sectors per READ(16): 1 MiB */
	uint8_t *buf = malloc((size_t)chunk * SECT);
	static uint8_t in_doubt[NSECT];
	static struct sst alt[NSECT];
	int bad = 0;
	uint32_t first_bad = UINT32_MAX;
	unsigned long doubted = 0, took_new = 0;

	memset(in_doubt, 0, sizeof(in_doubt));
	for (unsigned t = 0; t < NT; t++)
		for (size_t d = 0; d < ws[t].ndoubts; d++) {
			struct doubt *db = &ws[t].doubts[d];
			for (uint32_t i = 0; i < db->n; i++) {
				/* one doubt per worker (it stops at its first transport failure) and
				 * workers own disjoint slices: a sector has one doubt at most */
				in_doubt[db->start + i] = 1;
				alt[db->start + i] = db->news[i];
			}
		}
	for (uint32_t lba = 0; lba < NSECT && bad < 10; lba += chunk) {
		uint8_t cdb[16] = { 0x88 };
		put64(cdb + 2, lba);
		put32(cdb + 10, chunk);
		char sense[128] = "";
		if (exec(ic, cdb, 16, 1, NULL, 0, buf, (size_t)chunk * SECT, sense, sizeof(sense)) != OK) {
			fprintf(stderr, "cycle %u: READ at %u failed: %s\n", cycle, lba, sense);
			bad++;
			break;
		}
		for (uint32_t i = 0; i < chunk; i++) {
			uint32_t s = lba + i;
			struct sst got;
			if (decode(buf + (size_t)i * SECT, &got)) {
				fprintf(stderr, "cycle %u: sector %u holds garbage (neither zeroes nor a written "
					"pattern); expected tag %" PRIu64 "/%u%s\n", cycle, s, g_model[s].tag,
					g_model[s].origin, in_doubt[s] ? " or an in-flight write" : "");
				bad++;
				continue;
			}
			if (sst_eq(&got, &g_model[s]))
				continue;
			if (in_doubt[s] && sst_eq(&got, &alt[s])) {
				g_model[s] = got;
				took_new++;
				continue;
			}
			if (first_bad == UINT32_MAX)
				first_bad = s;
			fprintf(stderr, "cycle %u: sector %u: expected tag %" PRIu64 " origin %u (set by %s in "
				"cycle %u)%s, found tag %" PRIu64 " origin %u\n", cycle, s, g_model[s].tag,
				g_model[s].origin, kind_names[g_why_kind[s]], g_why_cycle[s],
				in_doubt[s] ? " (or its in-flight new state)" : "", got.tag, got.origin);
			bad++;
		}
	}
	for (uint32_t s = 0; s < NSECT; s++)
		doubted += in_doubt[s];
	for (unsigned t = 0; t < NT; t++) {
		for (size_t d = 0; d < ws[t].ndoubts; d++)
			free(ws[t].doubts[d].news);
		free(ws[t].doubts);
		ws[t].doubts = NULL;
		ws[t].ndoubts = ws[t].capdoubts = 0;
	}
	free(buf);
	iscsi_destroy_context(ic);
	if (bad && first_bad != UINT32_MAX)
		history(first_bad, 3);
	if (!bad)
		printf("  verified %u sectors: %lu were in doubt, %lu of them hold the in-flight data\n",
		       NSECT, doubted, took_new);
	return bad ? -1 : 0;
}

static uint64_t dir_bytes(const char *path)
{
	DIR *d = opendir(path);
	uint64_t sum = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[600];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (e->d_name[0] != '.' && !stat(p, &st) && S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_blocks * 512;
	}
	closedir(d);
	return sum;
}

/* ---- main -------------------------------------------------------------------------- */

static int setup(void)
{
	char out[4096];

	start_rodd();
	if (wait_ready())
		return -1;
	if (rodctl(NULL, 0, "vol create crashvol --size %uM", VOL_MB) ||
	    rodctl(NULL, 0, "host create all --iqn '*'") || rodctl(out, sizeof(out), "--json host connect all crashvol")) {
		fprintf(stderr, "rodctl setup failed; see %s\n", g_log);
		return -1;
	}
	struct iscsi_context *ic = session("setup");
	if (!ic)
		return -1;
	int rc = learn_naa(ic);
	iscsi_destroy_context(ic);
	if (rc)
		fprintf(stderr, "no NAA designator in VPD page 0x83\n");
	return rc;
}

int main(int argc, char **argv)
{
	bool keep = false;
	if (argc < 5) {
		fprintf(stderr, "usage: crash_iscsi RODD RODCTL CYCLES SEED [--keep] [--capacity SIZE]\n");
		return 2;
	}
	g_rodd = argv[1];
	g_rodctl = argv[2];
	unsigned cycles = (unsigned)atoi(argv[3]);
	g_seed = strtoull(argv[4], NULL, 0);
	for (int i = 5; i < argc; i++) {
		if (!strcmp(argv[i], "--keep"))
			keep = true;
		else if (!strcmp(argv[i], "--capacity") && i + 1 < argc)
			g_capacity = argv[++i];
		else
			return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(g_dir, sizeof(g_dir), "%s/crash_iscsi.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(g_dir)) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(g_data, sizeof(g_data), "%s/data", g_dir);
	snprintf(g_sock, sizeof(g_sock), "%s/rodd.sock", g_dir);
	snprintf(g_log, sizeof(g_log), "%s/rodd.log", g_dir);
	{
		/* rodd's key-encryption key in the scratch dir, never /etc. */
		char kf[sizeof(g_dir) + 16];
		snprintf(kf, sizeof(kf), "%s/rod.key", g_dir);
		setenv("ROD_KEY_FILE", kf, 1);
	}
	/* tags: distinct across runs with different seeds, never 0 */
	atomic_store(&g_tag, (splitmix(g_seed) & 0xffffffff00000000ull) | 1);
	uint64_t rng = splitmix(g_seed ^ 0x5eed);
	printf("crash_iscsi: %u cycles, seed %" PRIu64 ", work dir %s\n", cycles, g_seed, g_dir);
	fflush(stdout);
	if (setup()) {
		kill_rodd();
		fprintf(stderr, "setup failed (work dir %s kept)\n", g_dir);
		return 2;
	}
	int rc = 0;
	unsigned long acked = 0, refused = 0, recovery_kills = 0;
	unsigned long kinds[8] = { 0 };
	uint64_t t0 = now_ms();

	for (unsigned c = 1; c <= cycles && !rc; c++) {
		static struct worker ws[NT];
		bool gc = c % 3 == 0;

		g_cycle = c;
		/* GC looks at the log every 5 s of a rodd's life: GC cycles live longer */
		unsigned run_ms = gc ? rnd_range(&rng, 5200, 7500) : rnd_range(&rng, 150, 1200);

		for (unsigned t = 0; t < NT; t++) {
			memset(&ws[t], 0, sizeof(ws[t]));
			ws[t].idx = t;
			ws[t].rng = splitmix(rng ^ (c * 131 + t));
			ws[t].gc_mode = gc;
			pthread_create(&ws[t].th, NULL, worker_main, &ws[t]);
		}
		sleep_ms(run_ms);
		kill_rodd();
		unsigned long cyc_acked = 0;
		for (unsigned t = 0; t < NT; t++) {
			pthread_join(ws[t].th, NULL);
			cyc_acked += ws[t].acked;
			refused += ws[t].refused;
			for (int k = 0; k < 8; k++)
				kinds[k] += ws[t].by_kind[k];
			if (ws[t].err[0]) {
				fprintf(stderr, "cycle %u: worker %u: %s\n", c, t, ws[t].err);
				rc = 1;
			}
		}
		if (g_live_bad != UINT32_MAX) {
			/* let the report show whether a crash came between write and read */
			history(g_live_bad, 3);
			g_live_bad = UINT32_MAX;
		}
		acked += cyc_acked;
		uint64_t seg = dir_bytes(g_data) + 0;
		char segdir[400];
		snprintf(segdir, sizeof(segdir), "%s/seg", g_data);
		seg = dir_bytes(segdir);
		/* a kill during recovery: the restarted rodd dies again a moment later */
		bool rkill = c % 3 == 1;
		if (rkill) {
			start_rodd();
			sleep_ms(rnd_range(&rng, 5, 120));
			kill_rodd();
			recovery_kills++;
		}
		start_rodd();
		if (wait_ready()) {
			rc = 1;
			break;
		}
		printf("cycle %u%s%s: %lu commands acknowledged in %u ms, segments %.1f MiB\n", c,
		       gc ? " (GC load)" : "", rkill ? " (killed in recovery too)" : "", cyc_acked, run_ms,
		       seg / 1048576.0);
		if (verify(c, ws))
			rc = 1;
		fflush(stdout);
	}
	printf("crash_iscsi: %s after %lu acknowledged commands (", rc ? "FAILED" : "passed", acked);
	for (int k = 0; k < 8; k++)
		printf("%s%s %lu", k ? ", " : "", kind_names[k], kinds[k]);
	printf("), %lu refused for space, %lu kills during recovery, %.1f s\n", refused, recovery_kills,
	       (now_ms() - t0) / 1000.0);
	kill_rodd();
	if (rc || keep) {
		fprintf(stderr, "work dir kept: %s (rodd log: %s)\n", g_dir, g_log);
	} else {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
		if (system(cmd))
			fprintf(stderr, "could not remove %s\n", g_dir);
	}
	return rc;
}
