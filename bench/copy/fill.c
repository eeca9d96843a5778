/* rodbench-fill URL SIZE SEED: write SIZE bytes of pseudo-random (incompressible,
 * non-duplicate) data at the start of an iSCSI LUN, 1 MiB per WRITE(16), 8 in flight.
 * Prints {"bytes": N, "seconds": S}. Used by bench/copy to prepare source volumes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cmd/rodcp/lun.h"
#include "rod/util.h"

#define CHUNK (1u << 20)
#define DEPTH 8

struct slot {
	uint8_t *buf;
	int busy;
};

static uint64_t next_off, total;
static int pending, failed;
static struct slot slots[DEPTH];
static struct rc_lun lun;
static uint64_t rng;

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void issue(void);

static void done(void *arg, int ok, const struct rc_sense *s, const void *d, size_t l)
{
	struct slot *sl = arg;
	char b[256];

	pending--;
	sl->busy = 0;
	if (!ok && !failed) {
		failed = 1;
		fprintf(stderr, "rodbench-fill: WRITE(16) failed: %s\n", rc_sense_str(s, b, sizeof(b)));
	}
	issue();                      /* keep DEPTH writes in flight */
}

static void issue(void)
{
	for (int i = 0; i < DEPTH && !failed && next_off < total; i++) {
		struct slot *sl = &slots[i];
		uint8_t cdb[16] = { 0x8A };
		uint32_t n = (uint32_t)ROD_MIN((uint64_t)CHUNK, total - next_off);

		if (sl->busy)
			continue;
		for (uint32_t k = 0; k < n; k += 8) {
			uint64_t v = xorshift();
			memcpy(sl->buf + k, &v, 8);
		}
		rod_put_be64(cdb + 2, next_off / lun.bs);
		rod_put_be32(cdb + 10, n / lun.bs);
		if (rc_async_cmd(&lun, cdb, 16, 2, sl->buf, n, 0, done, sl)) {
			failed = 1;
			return;
		}
		sl->busy = 1;
		pending++;
		next_off += n;
	}
}

int main(int argc, char **argv)
{
	uint64_t t0;

	if (argc != 4 || rod_parse_size(argv[2], &total)) {
		fprintf(stderr, "usage: rodbench-fill URL SIZE SEED\n");
		return 2;
	}
	rng = strtoull(argv[3], NULL, 0) * 0x9E3779B97F4A7C15ull | 1;
	if (rc_lun_open(&lun, argv[1]))
		return 1;
	if (total > lun.nblocks * lun.bs || total % lun.bs) {
		fprintf(stderr, "rodbench-fill: size does not fit the LUN in whole blocks\n");
		return 1;
	}
	for (int i = 0; i < DEPTH; i++)
		slots[i].buf = malloc(CHUNK);
	t0 = rod_now_ns();
	issue();
	if (rc_async_wait(&lun, NULL, &pending) || failed || next_off < total)
		return 1;
	printf("{\"bytes\": %llu, \"seconds\": %.3f}\n", (unsigned long long)total,
	       (double)(rod_now_ns() - t0) / 1e9);
	rc_lun_close(&lun);
	return 0;
}
