/* rod-iops: an iSCSI load generator on libiscsi's async API. One session, a fixed
 * queue depth, caller-owned buffers (no copy or allocation per I/O on the client
 * side, so the initiator disturbs the 2-core box as little as possible).
 *
 * Tests (in this order; the sequential write fills the span the reads then use):
 *   seqwrite1m  seqread1m  randwrite4k_qd32  randread4k_qd32  randread4k_qd1  randwrite4k_qd1
 * Prints one JSON document: per test IOPS, MiB/s, latency p50/p99/mean (us), and the
 * target daemon's CPU seconds over the test (from /proc/<pid>/stat) when --pid is given.
 *
 * Written data (--data): "unique" (default) is random bytes with a write counter and
 * the LBA stamped into every 512-byte sector, so no two written sectors are equal and
 * nothing compresses: a data-reducing target gets no help from the load, as with fio's
 * default scrambled buffers. "repeat" writes one constant pattern per queue slot (every
 * write after the first is a duplicate).
 *
 *   rod-iops --url iscsi://127.0.0.1:3260/iqn.../0 [--pid N] [--seconds S] [--span MIB]
 *            [--tests a,b,...] [--initiator IQN] [--qd N] [--seq-qd N] */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

struct slot {
	struct run *run;
	unsigned char *buf;
	struct scsi_iovec iov;
	uint64_t start_ns;
	bool busy;
};

struct run {
	struct iscsi_context *iscsi;
	int lun;
	uint32_t block;
	uint64_t span_blocks;
	uint32_t io_bytes;
	bool write, random;
	uint64_t next_seq;
	uint64_t deadline_ns;
	uint64_t done, errors;
	uint64_t *lat;       /* per-I/O latency, ns */
	size_t nlat, caplat;
	int inflight;
	uint64_t rng;
	bool stop;
	bool unique;         /* --data unique: stamp every sector before a write */
	uint64_t stamp;      /* writes submitted so far */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static double cpu_seconds(int pid)
{
	if (pid <= 0)
		return 0;
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the ")" of comm: state is field 3; utime 14, stime 15 */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	unsigned long long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int submit(struct slot *s);

static void io_done(struct iscsi_context *iscsi, int status, void *command_data, void *priv)
{
	struct slot *s = priv;
	struct run *r = s->run;
	struct scsi_task *task = command_data;
	uint64_t t = now_ns();
	if (status != SCSI_STATUS_GOOD) {
		r->errors++;
		if (r->errors < 5)
			fprintf(stderr, "rod-iops: I/O failed: %s\n", iscsi_get_error(iscsi));
	} else {
		r->done++;
		if (r->nlat < r->caplat)
			r->lat[r->nlat++] = t - s->start_ns;
	}
	if (task)
		scsi_free_scsi_task(task);
	s->busy = false;
	r->inflight--;
	if (!r->stop && t < r->deadline_ns)
		submit(s);
}

static int submit(struct slot *s)
{
	struct run *r = s->run;
	uint64_t nblocks = r->io_bytes / r->block;
	uint64_t lba;
	if (r->random) {
		lba = (xorshift(&r->rng) % (r->span_blocks / nblocks)) * nblocks;
	} else {
		lba = r->next_seq;
		r->next_seq += nblocks;
		if (r->next_seq + nblocks > r->span_blocks)
			r->next_seq = 0;
	}
	if (r->write && r->unique) {
		/* counter and LBA in the first 16 bytes of each sector: unique content */
		uint64_t id = ++r->stamp;

		for (uint32_t off = 0; off < r->io_bytes; off += 512) {
			uint64_t w[2] = { id, lba + off / r->block };

			memcpy(s->buf + off, w, sizeof(w));
		}
	}
	s->iov.iov_base = s->buf;
	s->iov.iov_len = r->io_bytes;
	s->start_ns = now_ns();
	struct scsi_task *t;
	if (r->write)
		t = iscsi_write16_iov_task(r->iscsi, r->lun, lba, NULL, r->io_bytes, (int)r->block,
					   0, 0, 0, 0, 0, io_done, s, &s->iov, 1);
	else
		t = iscsi_read16_iov_task(r->iscsi, r->lun, lba, r->io_bytes, (int)r->block, 0, 0,
					  0, 0, 0, io_done, s, &s->iov, 1);
	if (!t) {
		fprintf(stderr, "rod-iops: cannot queue: %s\n", iscsi_get_error(r->iscsi));
		r->errors++;
		return -1;
	}
	s->busy = true;
	r->inflight++;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct test {
	const char *name;
	uint32_t io_bytes;
	bool write, random;
	int qd;   /* 0: --qd, -1: --seq-qd */
};

static const struct test tests[] = {
	{ "seqwrite1m", 1u << 20, true, false, -1 },
	{ "seqread1m", 1u << 20, false, false, -1 },
	{ "randwrite4k_qd32", 4096, true, true, 0 },
	{ "randread4k_qd32", 4096, false, true, 0 },
	{ "randread4k_qd1", 4096, false, true, 1 },
	{ "randwrite4k_qd1", 4096, true, true, 1 },
};

static int run_test(struct iscsi_context *iscsi, int lun, uint32_t block, uint64_t span_blocks,
		    const struct test *t, int qd, double seconds, int pid, bool first, bool unique)
{
	struct run r = { 0 };
	r.unique = unique;
	r.iscsi = iscsi;
	r.lun = lun;
	r.block = block;
	r.span_blocks = span_blocks;
	r.io_bytes = t->io_bytes;
	r.write = t->write;
	r.random = t->random;
	r.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)now_ns();
	r.caplat = 4u << 20;
	r.lat = malloc(r.caplat * sizeof(uint64_t));
	struct slot *slots = calloc((size_t)qd, sizeof(*slots));
	if (!r.lat || !slots)
		return -ENOMEM;
	for (int i = 0; i < qd; i++) {
		slots[i].run = &r;
		if (posix_memalign((void **)&slots[i].buf, 4096, t->io_bytes))
			return -ENOMEM;
		if (unique) {
			uint64_t x = r.rng ^ (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;

			for (uint32_t o = 0; o < t->io_bytes; o += 8) {
				uint64_t v = xorshift(&x);

				memcpy(slots[i].buf + o, &v, 8);
			}
		} else {
			memset(slots[i].buf, 0x5a ^ i, t->io_bytes);
		}
	}
	double cpu0 = cpu_seconds(pid);
	uint64_t t0 = now_ns();
	r.deadline_ns = t0 + (uint64_t)(seconds * 1e9);
	for (int i = 0; i < qd; i++)
		if (submit(&slots[i]) < 0)
			break;
	while (r.inflight > 0) {
		struct pollfd pfd = { iscsi_get_fd(iscsi), (short)iscsi_which_events(iscsi), 0 };
		int n = poll(&pfd, 1, 1000);
		if (n < 0 && errno != EINTR)
			break;
		if (iscsi_service(iscsi, n > 0 ? pfd.revents : 0) < 0) {
			fprintf(stderr, "rod-iops: %s\n", iscsi_get_error(iscsi));
			r.errors++;
			break;
		}
		if (now_ns() > r.deadline_ns + 30000000000ull) {
			fprintf(stderr, "rod-iops: I/O stuck for 30 s after the deadline\n");
			r.errors++;
			break;
		}
	}
	uint64_t t1 = now_ns();
	double cpu1 = cpu_seconds(pid);
	double el = (double)(t1 - t0) / 1e9;
	qsort(r.lat, r.nlat, sizeof(uint64_t), cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < r.nlat; i++)
		sum += (double)r.lat[i];
	double p50 = r.nlat ? (double)r.lat[r.nlat / 2] / 1e3 : 0;
	double p99 = r.nlat ? (double)r.lat[(size_t)((double)r.nlat * 0.99)] / 1e3 : 0;
	double mean = r.nlat ? sum / (double)r.nlat / 1e3 : 0;
	double iops = (double)r.done / el;
	double cpu = cpu1 - cpu0;
	printf("%s    \"%s\": {\"qd\": %d, \"io_bytes\": %u, \"seconds\": %.3f, \"ios\": %" PRIu64
	       ", \"errors\": %" PRIu64 ", \"iops\": %.0f, \"mib_s\": %.1f, \"lat_us\": {\"p50\": %.1f, "
	       "\"p99\": %.1f, \"mean\": %.1f}",
	       first ? "" : ",\n", t->name, qd, t->io_bytes, el, r.done, r.errors, iops,
	       iops * t->io_bytes / 1048576.0, p50, p99, mean);
	if (pid > 0)
		printf(", \"daemon_cpu_s\": %.3f, \"iops_per_cpu_s\": %.0f", cpu,
		       cpu > 0 ? (double)r.done / cpu : 0);
	printf("}");
	fflush(stdout);
	for (int i = 0; i < qd; i++)
		free(slots[i].buf);
	free(slots);
	free(r.lat);
	return r.errors ? -EIO : 0;
}

/* MODE SELECT(10) of the caching page with WCE set or cleared: how an initiator turns a
 * volume's write cache on (rodd: write-back) or off (write-through). */
static int set_wce(struct iscsi_context *iscsi, int lun, int wce)
{
	struct scsi_task *t = iscsi_modesense10_sync(iscsi, lun, 0, 1, SCSI_MODESENSE_PC_CURRENT,
						     SCSI_MODEPAGE_CACHING, 0, 255);
	struct scsi_mode_sense *ms = NULL;
	struct scsi_mode_page *mp = NULL;
	if (!t || t->status != SCSI_STATUS_GOOD || !(ms = scsi_datain_unmarshall(t)) ||
	    !(mp = scsi_modesense_get_page(ms, SCSI_MODEPAGE_CACHING, 0))) {
		fprintf(stderr, "rod-iops: MODE SENSE(10) caching page failed: %s\n",
			iscsi_get_error(iscsi));
		if (t)
			scsi_free_scsi_task(t);
		return -1;
	}
	mp->ps = 0;
	mp->caching.wce = wce;
	struct scsi_task *t2 = iscsi_modeselect10_sync(iscsi, lun, 1, 0, mp);
	int ok = t2 && t2->status == SCSI_STATUS_GOOD;
	if (!ok)
		fprintf(stderr, "rod-iops: MODE SELECT(10) WCE=%d failed: %s\n", wce,
			iscsi_get_error(iscsi));
	if (t2)
		scsi_free_scsi_task(t2);
	scsi_free_scsi_task(t);
	return ok ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rod-iops --url iscsi://HOST:PORT/TARGET/LUN [--pid PID] [--seconds S]\n"
		"                [--span MIB] [--tests LIST] [--initiator IQN] [--qd N] [--seq-qd N]\n"
		"                [--wce 0|1]  (MODE SELECT the caching page's WCE first)\n"
		"                [--data unique|repeat]  (written data; default unique)\n"
		"tests: seqwrite1m,seqread1m,randwrite4k_qd32,randread4k_qd32,randread4k_qd1,"
		"randwrite4k_qd1\n");
}

int main(int argc, char **argv)
{
	const char *url_s = NULL, *initiator = "iqn.2026-11.io.rodstore:bench";
	const char *only = NULL;
	int pid = 0, qd = 32, seq_qd = 32, wce = -1;
	bool unique = true;
	double seconds = 5;
	uint64_t span_mib = 1024;
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "pid", required_argument, NULL, 'p' },
		{ "seconds", required_argument, NULL, 's' },
		{ "span", required_argument, NULL, 'S' },
		{ "tests", required_argument, NULL, 't' },
		{ "initiator", required_argument, NULL, 'i' },
		{ "qd", required_argument, NULL, 'q' },
		{ "seq-qd", required_argument, NULL, 'Q' },
		{ "wce", required_argument, NULL, 'w' },
		{ "data", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "u:p:s:S:t:i:q:Q:w:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': url_s = optarg; break;
		case 'p': pid = atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'S': span_mib = strtoull(optarg, NULL, 10); break;
		case 't': only = optarg; break;
		case 'i': initiator = optarg; break;
		case 'q': qd = atoi(optarg); break;
		case 'Q': seq_qd = atoi(optarg); break;
		case 'w': wce = atoi(optarg) ? 1 : 0; break;
		case 'd':
			if (strcmp(optarg, "unique") && strcmp(optarg, "repeat")) {
				fprintf(stderr, "rod-iops: --data takes unique or repeat, not %s\n", optarg);
				return 1;
			}
			unique = !strcmp(optarg, "unique");
			break;
		default: usage(); return 1;
		}
	}
	if (!url_s || qd < 1 || seq_qd < 1 || seconds <= 0) {
		usage();
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);   /* a target going away is an error to report, not a kill */
	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	struct iscsi_url *url = iscsi ? iscsi_parse_full_url(iscsi, url_s) : NULL;
	if (!url) {
		fprintf(stderr, "rod-iops: bad URL %s: %s\n", url_s, iscsi ? iscsi_get_error(iscsi) : "");
		return 1;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (url->user[0])
		iscsi_set_initiator_username_pwd(iscsi, url->user, url->passwd);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "rod-iops: login to %s failed: %s\n", url->portal, iscsi_get_error(iscsi));
		return 2;
	}
	struct scsi_task *task = iscsi_readcapacity16_sync(iscsi, url->lun);
	struct scsi_readcapacity16 *rc16 = NULL;
	if (!task || task->status != SCSI_STATUS_GOOD ||
	    !(rc16 = scsi_datain_unmarshall(task))) {
		fprintf(stderr, "rod-iops: READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	if (wce >= 0 && set_wce(iscsi, url->lun, wce) < 0)
		return 2;
	uint32_t block = rc16->block_length;
	uint64_t blocks = rc16->returned_lba + 1;
	scsi_free_scsi_task(task);
	uint64_t span_blocks = (span_mib << 20) / block;
	if (span_blocks > blocks)
		span_blocks = blocks;
	span_blocks -= span_blocks % ((1u << 20) / block);
	if (span_blocks == 0) {
		fprintf(stderr, "rod-iops: the LUN is smaller than 1 MiB\n");
		return 2;
	}
	printf("{\n  \"url\": \"%s\", \"block_size\": %u, \"span_bytes\": %" PRIu64
	       ", \"daemon_pid\": %d, \"wce_set\": %d, \"data\": \"%s\",\n  \"tests\": {\n", url_s,
	       block, span_blocks * block, pid, wce, unique ? "unique" : "repeat");
	int rc = 0;
	bool first = true;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (only) {
			char pat[64];
			snprintf(pat, sizeof(pat), ",%s,", tests[i].name);
			char list[512];
			snprintf(list, sizeof(list), ",%s,", only);
			if (!strstr(list, pat))
				continue;
		}
		int q = tests[i].qd == 0 ? qd : tests[i].qd < 0 ? seq_qd : tests[i].qd;
		if (run_test(iscsi, url->lun, block, span_blocks, &tests[i], q, seconds, pid, first, unique) < 0)
			rc = 3;
		first = false;
	}
	printf("\n  }\n}\n");
	iscsi_logout_sync(iscsi);
	iscsi_destroy_url(url);
	iscsi_destroy_context(iscsi);
	return rc;
}
