/* Incremental replication of a protection group between two arrays in one process (two
 * stores, two control planes, the target listening on loopback): a VOLUME_GIB volume,
 * an empty baseline, then CHANGED_MIB of new data in 64 KiB runs spread over the volume,
 * each 4 KiB grain 1920 random bytes and text (zstd -1 compresses each about 2:1; the
 * ratio achieved is printed), then one incremental transfer timed. Prints JSON: bytes on
 * the wire, seconds, the engine's diff time (in the job and alone), the zstd ratio.
 * Issue 9's target: 1 GiB changed in 16 GiB -> at most 0.6 GiB on the wire.
 *
 * Run: BUILD/bench/replication/bench_replication [DIR] [VOLUME_GIB] [CHANGED_MIB] */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "rod/ctl.h"
#include "rod/store.h"

#define RUN (64u << 10)
#define RANDOM_PART 1920u   /* random bytes per grain; the rest is text: zstd -1 about 2:1 */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static json_t *call(struct rod_ctl *c, const char *method, json_t *params)
{
	json_t *res = NULL;
	char *msg = NULL;
	int rc = rod_ctl_call(c, method, params, &res, &msg);
	json_decref(params);
	if (rc) {
		fprintf(stderr, "bench_replication: %s: %s\n", method, msg ? msg : "?");
		exit(1);
	}
	free(msg);
	return res;
}

/* Wait for job id of c to finish; returns its record. */
static json_t *wait_job(struct rod_ctl *c, json_int_t id)
{
	for (;;) {
		json_t *j = call(c, "job.show", json_pack("{s:I}", "id", id));
		const char *st = json_string_value(json_object_get(j, "state"));
		if (st && strcmp(st, "running") && strcmp(st, "queued")) {
			if (strcmp(st, "done")) {
				fprintf(stderr, "bench_replication: job %s: %s\n", st,
					json_string_value(json_object_get(j, "error")));
				exit(1);
			}
			return j;
		}
		json_decref(j);
		usleep(20000);
	}
}

static struct rod_ctl *array(const char *dir, const char *name, struct rod_store **s)
{
	struct rod_store_opts o = { .dir = dir, .create = true, .array_name = name, .no_gc_thread = true };
	struct rod_ctl_opts co = { 0 };
	struct rod_ctl *c;
	int rc = rod_store_open(&o, s);
	if (rc) {
		fprintf(stderr, "bench_replication: store %s: %s\n", dir, strerror(-rc));
		exit(1);
	}
	co.store = *s;
	co.target_iqn = name;
	co.data_dir = dir;
	if ((rc = rod_ctl_new(&co, &c))) {
		fprintf(stderr, "bench_replication: control plane: %s\n", strerror(-rc));
		exit(1);
	}
	return c;
}

static int count_cb(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind)
{
	(void)off;
	if (kind == ROD_DIFF_DATA)
		*(uint64_t *)arg += len;
	return 0;
}

int main(int argc, char **argv)
{
	char tmpl[] = "/tmp/bench_repl.XXXXXX", sdir[512], tdir[512], cmd[600];
	bool own_dir = argc < 2 || !argv[1][0];
	const char *dir = own_dir ? mkdtemp(tmpl) : argv[1];
	uint64_t vol_gib = argc > 2 ? strtoull(argv[2], NULL, 10) : 16;
	uint64_t changed = (argc > 3 ? strtoull(argv[3], NULL, 10) : 1024) << 20;
	uint64_t vol_size = vol_gib << 30;
	struct rod_store *ss, *ts;
	if (!dir || !vol_gib || !changed || changed > vol_size) {
		fprintf(stderr, "usage: bench_replication [DIR] [VOLUME_GIB] [CHANGED_MIB]\n");
		return 1;
	}
	snprintf(sdir, sizeof(sdir), "%s/source", dir);
	snprintf(tdir, sizeof(tdir), "%s/target", dir);
	struct rod_ctl *src = array(sdir, "benchsrc", &ss), *tgt = array(tdir, "benchtgt", &ts);
	int rc = rod_ctl_replication_listen(tgt, "127.0.0.1:0");
	if (rc) {
		fprintf(stderr, "bench_replication: listen: %s\n", strerror(-rc));
		return 1;
	}
	json_t *rl = call(tgt, "replica.list", NULL);
	char to[128];
	snprintf(to, sizeof(to), "%s", json_string_value(json_object_get(rl, "listen")));
	json_decref(rl);
	json_t *key = call(tgt, "array.replication_key.create", NULL);

	json_decref(call(src, "vol.create", json_pack("{s:s, s:I}", "name", "v1", "size", (json_int_t)vol_size)));
	json_decref(call(src, "pg.create", json_pack("{s:s}", "name", "g")));
	json_decref(call(src, "pg.add", json_pack("{s:s, s:s}", "name", "g", "volume", "v1")));
	/* baseline of the empty volume */
	json_t *r = call(src, "pg.replicate", json_pack("{s:s, s:s, s:O}", "name", "g", "to", to, "key_secret",
							 json_object_get(key, "key")));
	json_decref(wait_job(src, json_integer_value(json_object_get(r, "job"))));
	json_decref(r);

	/* CHANGED_MIB in 64 KiB runs at distinct 64 KiB slots spread over the volume */
	struct rod_vol *v;
	if ((rc = rod_vol_open(ss, "v1", &v))) {
		fprintf(stderr, "bench_replication: open: %s\n", strerror(-rc));
		return 1;
	}
	rod_vol_set_cache(ss, "v1", ROD_CACHE_WRITE_BACK);
	uint64_t slots = vol_size / RUN, runs = changed / RUN, stride = slots / runs;
	uint8_t *buf = malloc(RUN), zb[ZSTD_COMPRESSBOUND(ROD_GRAIN)];
	uint64_t zsum = 0;
	static const char phrase[] = "replication benchmark: the quick brown fox jumps over the lazy dog; ";
	double t0 = now_s();
	for (uint64_t i = 0; i < runs; i++) {
		for (uint32_t g = 0; g < RUN; g += ROD_GRAIN) {
			uint8_t *p = buf + g;
			for (uint32_t k = 0; k < RANDOM_PART; k += 8) {
				uint64_t x = rnd();
				memcpy(p + k, &x, 8);
			}
			int n = snprintf((char *)p + RANDOM_PART, ROD_GRAIN - RANDOM_PART, "run %" PRIu64 " grain %u ", i, g);
			for (uint32_t k = RANDOM_PART + (uint32_t)n; k < ROD_GRAIN; k++)
				p[k] = (uint8_t)phrase[k % (sizeof(phrase) - 1)];
			zsum += ZSTD_compress(zb, sizeof(zb), p, ROD_GRAIN, 1);
		}
		uint64_t slot = i * stride + rnd() % stride;
		if ((rc = rod_vol_write(v, slot * RUN, buf, RUN, 0))) {
			fprintf(stderr, "bench_replication: write: %s\n", strerror(-rc));
			return 1;
		}
	}
	rod_vol_flush(v);
	rod_vol_close(v);
	double write_s = now_s() - t0;

	/* the incremental transfer */
	t0 = now_s();
	r = call(src, "pg.replicate", json_pack("{s:s}", "name", "g"));
	json_t *job = wait_job(src, json_integer_value(json_object_get(r, "job")));
	double xfer_s = now_s() - t0;
	json_t *res = json_object_get(job, "result");

	/* the engine's diff alone, between the two member snapshots */
	struct rod_vol_info *vols;
	size_t nv;
	char base[ROD_SNAP_NAME_MAX] = "", snap[ROD_SNAP_NAME_MAX] = "";
	uint64_t bt = 0, st = 0, diff_bytes = 0;
	rod_vol_list(ss, &vols, &nv);
	for (size_t i = 0; i < nv; i++)
		if (vols[i].is_snapshot && !strcmp(vols[i].source, "v1")) {
			if (vols[i].created_ns >= st) {
				snprintf(base, sizeof(base), "%s", snap);
				bt = st;
				snprintf(snap, sizeof(snap), "%s", vols[i].name);
				st = vols[i].created_ns;
			} else if (vols[i].created_ns >= bt) {
				snprintf(base, sizeof(base), "%s", vols[i].name);
				bt = vols[i].created_ns;
			}
		}
	free(vols);
	t0 = now_s();
	rod_vol_diff(ss, base, snap, 0, count_cb, &diff_bytes);
	double diff_s = now_s() - t0;

	double load[3] = { 0 };
	getloadavg(load, 3);
	json_int_t wire = json_integer_value(json_object_get(res, "wire_bytes"));
	json_t *out = json_pack(
		"{s:I, s:I, s:f, s:I, s:f, s:b, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:[f,f,f]}", "volume_bytes",
		(json_int_t)vol_size, "changed_bytes", (json_int_t)changed, "zstd1_ratio_4k",
		(double)zsum / (double)changed, "wire_bytes", wire, "wire_gib", (double)wire / (1 << 30),
		"target_met_0_6_gib", (double)wire <= 0.6 * (1 << 30), "transfer_seconds", xfer_s, "transfer_mib_s",
		(double)changed / (1 << 20) / xfer_s, "diff_seconds_in_job",
		json_real_value(json_object_get(res, "diff_seconds")), "diff_seconds_alone", diff_s, "diff_data_bytes",
		(json_int_t)diff_bytes, "data_grains", json_integer_value(json_object_get(res, "data_grains")),
		"ref_grains", json_integer_value(json_object_get(res, "ref_grains")), "payload_bytes",
		json_integer_value(json_object_get(res, "payload_bytes")), "write_seconds", write_s, "payload_ratio",
		(double)json_integer_value(json_object_get(res, "payload_bytes")) / (double)changed, "loadavg", load[0],
		load[1], load[2]);
	char *txt = json_dumps(out, JSON_INDENT(2));
	printf("%s\n", txt);
	fflush(stdout);
	free(txt);
	json_decref(out);
	json_decref(job);
	json_decref(r);
	json_decref(key);
	free(buf);
	rod_ctl_free(src);
	rod_ctl_free(tgt);
	rod_store_close(ss);
	rod_store_close(ts);
	if (own_dir) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			fprintf(stderr, "bench_replication: could not remove %s\n", dir);
	}
	return 0;
}
