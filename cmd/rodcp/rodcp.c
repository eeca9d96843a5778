/* rodcp: copy between iSCSI LUNs with the array doing the work.
 *
 *   rodcp SRC DST [--src-offset N] [--dst-offset N] [--length N]
 *                 [--method auto|odx|xcopy|rw] [--json]
 *   rodcp token create SRC [--src-offset N] [--length N] --out FILE
 *   rodcp token write FILE DST [--dst-offset N]
 *   rodcp zero DST [--dst-offset N] [--length N]
 *
 * auto tries ODX (POPULATE TOKEN + WRITE USING TOKEN), then EXTENDED COPY (LID1), then
 * host read/write, and says which it used. See docs/copy-offload.md. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lun.h"
#include "rod/util.h"

#define TOKEN_LEN 512u
#define ZERO_ROD_TYPE 0xFFFF0001u

enum method { M_AUTO, M_ODX, M_XCOPY, M_RW };
static const char *const method_names[] = { "auto", "odx", "xcopy", "rw" };

struct opts {
	uint64_t src_off, dst_off, length;
	bool have_length;
	enum method method;
	bool json;
	uint64_t xcopy_seg;          /* bytes per EXTENDED COPY segment/command */
	int depth;                   /* commands in flight (xcopy, rw) */
	uint64_t rw_chunk;
	const char *out;
	bool quiet;
};

/* ---- progress --------------------------------------------------------------------- */

struct progress {
	uint64_t total, done;
	uint64_t last_ns;
	bool tty;
	const char *what;
};

static void progress_init(struct progress *p, uint64_t total, const char *what, bool quiet)
{
	memset(p, 0, sizeof(*p));
	p->total = total;
	p->what = what;
	p->tty = !quiet && isatty(STDERR_FILENO);
}

static void progress_add(struct progress *p, uint64_t n)
{
	uint64_t now;
	char a[32], b[32];
	int pct, bar;

	p->done += n;
	if (!p->tty)
		return;
	now = rod_now_ns();
	if (p->done < p->total && now - p->last_ns < 100000000ull)
		return;
	p->last_ns = now;
	pct = p->total ? (int)(p->done * 100 / p->total) : 100;
	bar = pct * 30 / 100;
	fprintf(stderr, "\r%-5s [%.*s%*s] %3d%% %s/%s", p->what, bar,
		"##############################", 30 - bar, "", pct,
		rod_format_size(p->done, a, sizeof(a)), rod_format_size(p->total, b, sizeof(b)));
	if (p->done >= p->total)
		fputc('\n', stderr);
	fflush(stderr);
}

/* ---- list identifiers ---------------------------------------------------------------- */

static uint32_t next_list_id;

static uint32_t list_id_take(void)
{
	if (!next_list_id)
		next_list_id = ((uint32_t)getpid() << 12) ^ (uint32_t)time(NULL);
	return next_list_id++;
}

static void err_cmd(const char *what, const struct rc_lun *l, const struct rc_sense *s)
{
	char b[256];

	fprintf(stderr, "rodcp: %s on %s failed: %s\n", what, l->url, rc_sense_str(s, b, sizeof(b)));
}

/* ---- ODX ------------------------------------------------------------------------------- */

/* POPULATE TOKEN over [lba, lba+n) then RECEIVE ROD TOKEN INFORMATION for the token. */
static int odx_populate(struct rc_lun *l, uint64_t lba, uint64_t n, uint8_t tok[TOKEN_LEN],
			struct rc_sense *s)
{
	uint8_t cdb[16], *pl, rr[1024];
	uint32_t nr = 0, list_id = 0;
	size_t plen, got;
	int rc = -1;

	pl = calloc(1, 16 + 16u * (l->odx_max_ranges ? l->odx_max_ranges : 1));
	if (!pl)
		return -1;
	while (n) {
		uint64_t k = n > 0xFFFFFFFFu ? 0xFFFFFFFFu : n;

		if (nr == l->odx_max_ranges) {
			free(pl);
			memset(s, 0, sizeof(*s));
			s->status = 0xff;
			snprintf(s->transport_err, sizeof(s->transport_err),
				 "range needs more than %u range descriptors", l->odx_max_ranges);
			return -1;
		}
		rod_put_be64(pl + 16 + 16 * nr, lba);
		rod_put_be32(pl + 16 + 16 * nr + 8, (uint32_t)k);
		nr++;
		lba += k;
		n -= k;
	}
	plen = 16 + 16u * nr;
	rod_put_be16(pl, (uint16_t)(plen - 2));
	rod_put_be16(pl + 14, (uint16_t)(16 * nr));
	/* ddpt's habit: a list id still in use (05/00/16) is retried with the next one. */
	for (int tries = 0; tries < 10; tries++) {
		list_id = list_id_take();
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = 0x83;
		cdb[1] = 0x10;
		rod_put_be32(cdb + 6, list_id);
		rod_put_be32(cdb + 10, (uint32_t)plen);
		rc = rc_cmd(l, cdb, 16, 2, pl, plen, NULL, 0, NULL, s);
		if (!(rc && s->key == 0x05 && s->asc == 0x00 && s->ascq == 0x16))
			break;
	}
	free(pl);
	if (rc)
		return -1;
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x84;
	cdb[1] = 0x07;
	rod_put_be32(cdb + 2, list_id);
	rod_put_be32(cdb + 10, sizeof(rr));
	for (;;) {
		if (rc_cmd(l, cdb, 16, 1, NULL, 0, rr, sizeof(rr), &got, s))
			return -1;
		if (got < 32)
			break;
		if (rr[5] >= 0x10 && rr[5] <= 0x12) {     /* still running: poll */
			usleep(1000);
			continue;
		}
		if (rr[5] != 0x01)
			break;
		size_t off = 32u + rr[13];
		if (got >= off + 6 + TOKEN_LEN && rod_get_be32(rr + off) >= 2 + TOKEN_LEN) {
			memcpy(tok, rr + off + 6, TOKEN_LEN);
			return 0;
		}
		break;
	}
	memset(s, 0, sizeof(*s));
	s->status = 0xff;
	snprintf(s->transport_err, sizeof(s->transport_err),
		 "RECEIVE ROD TOKEN INFORMATION returned no token");
	return -1;
}

/* WRITE USING TOKEN: [lba, lba+n) of l from the token, starting off blocks into it. */
static int odx_write(struct rc_lun *l, const uint8_t tok[TOKEN_LEN], uint64_t off, uint64_t lba,
		     uint64_t n, bool del_tkn, struct rc_sense *s)
{
	uint8_t cdb[16];
	uint8_t *pl;
	uint32_t nr = 0, maxr = l->odx_max_ranges ? l->odx_max_ranges : 1;
	size_t plen;
	int rc = -1;

	pl = calloc(1, 536 + 16u * maxr);
	if (!pl)
		return -1;
	while (n && nr < maxr) {
		uint64_t k = n > 0xFFFFFFFFu ? 0xFFFFFFFFu : n;

		rod_put_be64(pl + 536 + 16 * nr, lba);
		rod_put_be32(pl + 536 + 16 * nr + 8, (uint32_t)k);
		nr++;
		lba += k;
		n -= k;
	}
	plen = 536 + 16u * nr;
	rod_put_be16(pl, (uint16_t)(plen - 2));
	pl[2] = del_tkn ? 0x02 : 0;
	rod_put_be64(pl + 8, off);
	memcpy(pl + 16, tok, TOKEN_LEN);
	rod_put_be16(pl + 534, (uint16_t)(16 * nr));
	for (int tries = 0; tries < 10; tries++) {
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = 0x83;
		cdb[1] = 0x11;
		rod_put_be32(cdb + 6, list_id_take());
		rod_put_be32(cdb + 10, (uint32_t)plen);
		rc = rc_cmd(l, cdb, 16, 2, pl, plen, NULL, 0, NULL, s);
		if (!(rc && s->key == 0x05 && s->asc == 0x00 && s->ascq == 0x16))
			break;
	}
	free(pl);
	return rc;
}

/* Blocks one WRITE USING TOKEN should cover on l. */
static uint64_t wut_chunk_blocks(const struct rc_lun *l)
{
	uint64_t c = l->odx_optimal_blocks ? l->odx_optimal_blocks : (256ull << 20) / l->bs;

	if (l->odx_max_token_blocks && c > l->odx_max_token_blocks)
		c = l->odx_max_token_blocks;
	if (c > (uint64_t)(l->odx_max_ranges ? l->odx_max_ranges : 1) * 0xFFFFFFFFu)
		c = (uint64_t)(l->odx_max_ranges ? l->odx_max_ranges : 1) * 0xFFFFFFFFu;
	return c ? c : 1;
}

/* Blocks one token should represent on l. */
static uint64_t token_chunk_blocks(const struct rc_lun *l)
{
	uint64_t c = (uint64_t)(l->odx_max_ranges ? l->odx_max_ranges : 1) * 0xFFFFFFFFu;

	if (l->odx_max_token_blocks && c > l->odx_max_token_blocks)
		c = l->odx_max_token_blocks;
	return c;
}

/* Write every block a token represents (or n bytes of it) to dst from dst_off on. */
static int token_apply(struct rc_lun *dst, const uint8_t tok[TOKEN_LEN], uint64_t tok_bytes,
		       uint64_t dst_off, bool del_last, struct progress *p, struct rc_sense *s)
{
	/* OFFSET INTO ROD counts blocks of the token's source LU: its block length is in
	 * the ROD token's device type specific data (bytes 96..99, as in READ CAPACITY(16));
	 * the zero token has none. */
	uint32_t sbs = rod_get_be32(tok + 96);
	uint64_t done = 0, step;

	if (sbs < 512 || sbs > 65536 || (sbs & (sbs - 1)))
		sbs = dst->bs;
	step = ROD_ROUND_DOWN(wut_chunk_blocks(dst) * dst->bs, ROD_MAX(sbs, dst->bs));
	if (!step)
		step = ROD_MAX(sbs, dst->bs);
	while (done < tok_bytes) {
		uint64_t n = ROD_MIN(step, tok_bytes - done);
		bool last = done + n == tok_bytes;

		if (odx_write(dst, tok, done / sbs, (dst_off + done) / dst->bs, n / dst->bs,
			      last && del_last, s))
			return -1;
		done += n;
		progress_add(p, n);
	}
	return 0;
}

static int copy_odx(struct rc_lun *src, struct rc_lun *dst, const struct opts *o,
		    struct progress *p)
{
	uint64_t done = 0, tchunk;
	uint8_t tok[TOKEN_LEN];
	struct rc_sense s;

	if (!src->have_odx || !dst->have_odx) {
		fprintf(stderr, "rodcp: ODX: %s does not advertise ROD token support (VPD page "
			"0x8F)\n", !src->have_odx ? src->url : dst->url);
		return -1;
	}
	tchunk = ROD_ROUND_DOWN(token_chunk_blocks(src) * src->bs, ROD_MAX(src->bs, dst->bs));
	while (done < o->length) {
		uint64_t n = ROD_MIN(tchunk, o->length - done);

		if (odx_populate(src, (o->src_off + done) / src->bs, n / src->bs, tok, &s)) {
			err_cmd("POPULATE TOKEN", src, &s);
			return -1;
		}
		if (token_apply(dst, tok, n, o->dst_off + done, true, p, &s)) {
			err_cmd("WRITE USING TOKEN", dst, &s);
			return -1;
		}
		done += n;
	}
	return 0;
}

/* ---- EXTENDED COPY ------------------------------------------------------------------------ */

struct pipe {
	struct rc_lun *src, *dst;
	const struct opts *o;
	struct progress *p;
	uint64_t next, end;           /* bytes handed out / to copy (relative) */
	uint64_t chunk;
	int pending;
	int failed;
	struct rc_sense fail;
	const char *fail_what;
	struct rc_lun *fail_lun;
	uint8_t list_id;
	bool snlid;
};

static void pipe_fail(struct pipe *pp, const char *what, struct rc_lun *l, const struct rc_sense *s)
{
	if (!pp->failed) {
		pp->failed = 1;
		pp->fail = *s;
		pp->fail_what = what;
		pp->fail_lun = l;
	}
}

static void put_cscd(uint8_t *d, const struct rc_lun *l)
{
	memset(d, 0, 32);
	d[0] = 0xE4;
	d[1] = 0x00;                  /* LU ID TYPE LUN, block device */
	memcpy(d + 4, l->desig, l->desig_len);
	rod_put_be24(d + 29, l->bs);
}

static void xcopy_issue(struct pipe *pp);

static void xcopy_done(void *arg, int ok, const struct rc_sense *s, const void *data, size_t len)
{
	struct pipe *pp = arg;

	pp->pending--;
	if (!ok) {
		pipe_fail(pp, "EXTENDED COPY", pp->dst, s);
		return;
	}
	progress_add(pp->p, pp->chunk);
	xcopy_issue(pp);
}

/* Keep depth commands in flight, one segment each, as a hypervisor's data mover does. */
static void xcopy_issue(struct pipe *pp)
{
	while (!pp->failed && pp->pending < pp->o->depth && pp->next < pp->end) {
		uint64_t n = ROD_MIN(pp->chunk, pp->end - pp->next);
		uint8_t cdb[16] = { 0x83, 0x00 };
		static uint8_t lists[64][108];
		uint8_t *pl = lists[(pp->next / pp->chunk) % 64];

		memset(pl, 0, 108);
		pl[0] = pp->snlid ? 0 : pp->list_id++;
		pl[1] = pp->snlid ? 0x18 : 0x10;   /* LIST ID USAGE 11b (none) / 10b */
		rod_put_be16(pl + 2, 64);
		rod_put_be32(pl + 8, 28);
		put_cscd(pl + 16, pp->src);
		put_cscd(pl + 48, pp->dst);
		pl[80] = 0x02;                      /* block -> block */
		rod_put_be16(pl + 82, 0x18);
		rod_put_be16(pl + 84, 0);
		rod_put_be16(pl + 86, 1);
		rod_put_be16(pl + 90, (uint16_t)(n / pp->src->bs));
		rod_put_be64(pl + 92, (pp->o->src_off + pp->next) / pp->src->bs);
		rod_put_be64(pl + 100, (pp->o->dst_off + pp->next) / pp->dst->bs);
		rod_put_be32(cdb + 10, 108);
		if (rc_async_cmd(pp->dst, cdb, 16, 2, pl, 108, 0, xcopy_done, pp)) {
			struct rc_sense s = { .status = 0xff };

			snprintf(s.transport_err, sizeof(s.transport_err), "cannot queue a command");
			pipe_fail(pp, "EXTENDED COPY", pp->dst, &s);
			return;
		}
		pp->pending++;
		pp->next += n;
	}
}

static int copy_xcopy(struct rc_lun *src, struct rc_lun *dst, const struct opts *o,
		      struct progress *p)
{
	struct pipe pp = { .src = src, .dst = dst, .o = o, .p = p, .end = o->length };
	uint64_t seg;

	if (!dst->have_xcopy) {
		fprintf(stderr, "rodcp: EXTENDED COPY: %s does not answer RECEIVE COPY RESULTS "
			"(OPERATING PARAMETERS)\n", dst->url);
		return -1;
	}
	if (!src->desig_len || !dst->desig_len) {
		fprintf(stderr, "rodcp: EXTENDED COPY: %s has no logical-unit designator in VPD "
			"page 0x83\n", !src->desig_len ? src->url : dst->url);
		return -1;
	}
	if (src->bs != dst->bs) {
		fprintf(stderr, "rodcp: EXTENDED COPY: block sizes differ (%u and %u)\n", src->bs,
			dst->bs);
		return -1;
	}
	seg = o->xcopy_seg;
	if (dst->xcopy_max_seg_bytes && seg > dst->xcopy_max_seg_bytes)
		seg = dst->xcopy_max_seg_bytes;
	if (seg > 65535ull * src->bs)
		seg = 65535ull * src->bs;
	seg = ROD_ROUND_DOWN(seg, src->bs);
	if (!seg)
		seg = src->bs;
	pp.chunk = seg;
	pp.snlid = dst->xcopy_snlid;
	xcopy_issue(&pp);
	if (rc_async_wait(dst, NULL, &pp.pending))
		return -1;
	if (pp.failed) {
		err_cmd(pp.fail_what, pp.fail_lun, &pp.fail);
		return -1;
	}
	return 0;
}

/* ---- host read/write -------------------------------------------------------------------- */

struct rw_slot {
	struct pipe *pp;
	uint64_t off, len;
	uint8_t *buf;
};

static void rw_issue(struct pipe *pp, struct rw_slot *slots);
static struct rw_slot *rw_slots;

static void rw_write_done(void *arg, int ok, const struct rc_sense *s, const void *d, size_t l)
{
	struct rw_slot *sl = arg;
	struct pipe *pp = sl->pp;

	uint64_t n = sl->len;

	pp->pending--;
	sl->len = 0;                  /* the slot is free again */
	if (!ok) {
		pipe_fail(pp, "WRITE(16)", pp->dst, s);
		return;
	}
	progress_add(pp->p, n);
	rw_issue(pp, rw_slots);
}

static void rw_read_done(void *arg, int ok, const struct rc_sense *s, const void *data, size_t len)
{
	struct rw_slot *sl = arg;
	struct pipe *pp = sl->pp;
	uint8_t cdb[16] = { 0x8A };

	pp->pending--;
	if (!ok || len < sl->len) {
		struct rc_sense e = *s;

		if (ok) {
			e.status = 0xff;
			snprintf(e.transport_err, sizeof(e.transport_err), "short read");
		}
		pipe_fail(pp, "READ(16)", pp->src, &e);
		sl->len = 0;
		return;
	}
	memcpy(sl->buf, data, sl->len);
	rod_put_be64(cdb + 2, (pp->o->dst_off + sl->off) / pp->dst->bs);
	rod_put_be32(cdb + 10, (uint32_t)(sl->len / pp->dst->bs));
	if (rc_async_cmd(pp->dst, cdb, 16, 2, sl->buf, sl->len, 0, rw_write_done, sl)) {
		struct rc_sense e = { .status = 0xff };

		snprintf(e.transport_err, sizeof(e.transport_err), "cannot queue a command");
		pipe_fail(pp, "WRITE(16)", pp->dst, &e);
		sl->len = 0;
		return;
	}
	pp->pending++;
}

static void rw_issue(struct pipe *pp, struct rw_slot *slots)
{
	for (int i = 0; i < pp->o->depth && !pp->failed && pp->next < pp->end; i++) {
		struct rw_slot *sl = &slots[i];
		uint8_t cdb[16] = { 0x88 };

		if (sl->len)
			continue;
		sl->pp = pp;
		sl->off = pp->next;
		sl->len = ROD_MIN(pp->chunk, pp->end - pp->next);
		rod_put_be64(cdb + 2, (pp->o->src_off + sl->off) / pp->src->bs);
		rod_put_be32(cdb + 10, (uint32_t)(sl->len / pp->src->bs));
		if (rc_async_cmd(pp->src, cdb, 16, 1, NULL, 0, sl->len, rw_read_done, sl)) {
			struct rc_sense e = { .status = 0xff };

			snprintf(e.transport_err, sizeof(e.transport_err), "cannot queue a command");
			pipe_fail(pp, "READ(16)", pp->src, &e);
			sl->len = 0;
			return;
		}
		pp->pending++;
		pp->next += sl->len;
	}
}

static int copy_rw(struct rc_lun *src, struct rc_lun *dst, const struct opts *o,
		   struct progress *p)
{
	struct pipe pp = { .src = src, .dst = dst, .o = o, .p = p, .end = o->length };
	uint64_t chunk = o->rw_chunk;
	uint32_t lcm = ROD_MAX(src->bs, dst->bs);
	int rc = 0;

	if (src->max_xfer_blocks && chunk > (uint64_t)src->max_xfer_blocks * src->bs)
		chunk = (uint64_t)src->max_xfer_blocks * src->bs;
	if (dst->max_xfer_blocks && chunk > (uint64_t)dst->max_xfer_blocks * dst->bs)
		chunk = (uint64_t)dst->max_xfer_blocks * dst->bs;
	chunk = ROD_ROUND_DOWN(chunk, lcm);
	if (!chunk)
		chunk = lcm;
	pp.chunk = chunk;
	rw_slots = calloc((size_t)o->depth, sizeof(*rw_slots));
	if (!rw_slots)
		return -1;
	for (int i = 0; i < o->depth; i++) {
		rw_slots[i].buf = malloc(chunk);
		if (!rw_slots[i].buf)
			rc = -1;
	}
	if (!rc) {
		rw_issue(&pp, rw_slots);
		while (pp.pending > 0 || (!pp.failed && pp.next < pp.end)) {
			if (rc_async_wait(src, dst, &pp.pending)) {
				rc = -1;
				break;
			}
			rw_issue(&pp, rw_slots);
		}
	}
	if (!rc && pp.failed) {
		err_cmd(pp.fail_what, pp.fail_lun, &pp.fail);
		rc = -1;
	}
	for (int i = 0; i < o->depth; i++)
		free(rw_slots[i].buf);
	free(rw_slots);
	rw_slots = NULL;
	return rc;
}

/* ---- zeroing ---------------------------------------------------------------------------- */

static int zero_token(struct rc_lun *dst, const struct opts *o, struct progress *p)
{
	uint8_t tok[TOKEN_LEN] = { 0 };
	struct rc_sense s;

	rod_put_be32(tok, ZERO_ROD_TYPE);
	if (!dst->have_odx)
		return -1;
	if (token_apply(dst, tok, o->length, o->dst_off, false, p, &s)) {
		err_cmd("WRITE USING TOKEN (zero token)", dst, &s);
		return -1;
	}
	return 0;
}

static int zero_write_same(struct rc_lun *dst, const struct opts *o, struct progress *p)
{
	uint64_t done = 0, step = dst->max_ws_blocks ? dst->max_ws_blocks : 65535;
	uint8_t *blk = calloc(1, dst->bs);
	struct rc_sense s;

	if (!blk)
		return -1;
	if (step > 0xFFFFFFFFu)
		step = 0xFFFFFFFFu;
	step *= dst->bs;
	while (done < o->length) {
		uint64_t n = ROD_MIN(step, o->length - done);
		uint8_t cdb[16] = { 0x93 };

		rod_put_be64(cdb + 2, (o->dst_off + done) / dst->bs);
		rod_put_be32(cdb + 10, (uint32_t)(n / dst->bs));
		if (rc_cmd(dst, cdb, 16, 2, blk, dst->bs, NULL, 0, NULL, &s)) {
			err_cmd("WRITE SAME(16)", dst, &s);
			free(blk);
			return -1;
		}
		done += n;
		progress_add(p, n);
	}
	free(blk);
	return 0;
}

/* ---- CLI -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rodcp SRC DST [--src-offset N] [--dst-offset N] [--length N]\n"
		"                     [--method auto|odx|xcopy|rw] [--json]\n"
		"       rodcp token create SRC [--src-offset N] [--length N] --out FILE\n"
		"       rodcp token write FILE DST [--dst-offset N]\n"
		"       rodcp zero DST [--dst-offset N] [--length N]\n"
		"SRC/DST are iscsi://HOST[:PORT]/TARGET-IQN/LUN. Sizes are bytes with an optional\n"
		"K/M/G/T suffix (powers of 1024). The initiator name is RODCP_INITIATOR if set.\n"
		"Tuning: --segment N (EXTENDED COPY bytes per command, default 4M),\n"
		"        --depth N (commands in flight, default 8), --chunk N (read/write, 1M),\n"
		"        --quiet (no progress bar).\n");
}

static int parse_size_opt(const char *name, const char *v, uint64_t *out)
{
	if (rod_parse_size(v, out)) {
		fprintf(stderr, "rodcp: %s \"%s\" is not a size (bytes, or a number with K/M/G/T)\n",
			name, v);
		return -1;
	}
	return 0;
}

static void report(const struct opts *o, const char *method, uint64_t bytes, double secs,
		   const char *src, const char *dst)
{
	char b[32];

	if (o->json) {
		printf("{\"method\": \"%s\", \"bytes\": %llu, \"seconds\": %.6f, \"commands\": %llu",
		       method, (unsigned long long)bytes, secs, (unsigned long long)rc_commands);
		if (src)
			printf(", \"src\": \"%s\"", src);
		if (dst)
			printf(", \"dst\": \"%s\"", dst);
		printf("}\n");
	} else if (!o->quiet) {
		printf("%s %s in %.3f s with %s (%llu SCSI commands)\n",
		       strstr(method, "zero") || strstr(method, "same") ? "zeroed"
		       : strstr(method, "token-create") ? "tokenised" : "copied",
		       rod_format_size(bytes, b, sizeof(b)),
		       secs, method, (unsigned long long)rc_commands);
	}
}

/* Offsets/length in whole blocks and inside the LUN. */
static int check_range(const char *what, const struct rc_lun *l, uint64_t off, uint64_t len)
{
	uint64_t size = l->nblocks * l->bs;

	if (off % l->bs || len % l->bs) {
		fprintf(stderr, "rodcp: %s offset and length must be multiples of the %u-byte "
			"block size of %s\n", what, l->bs, l->url);
		return -1;
	}
	if (off > size || len > size - off) {
		char a[32], b[32], c[32];

		fprintf(stderr, "rodcp: %s range %s+%s goes past the end of %s (%s)\n", what,
			rod_format_size(off, a, sizeof(a)), rod_format_size(len, b, sizeof(b)),
			l->url, rod_format_size(size, c, sizeof(c)));
		return -1;
	}
	return 0;
}

static int do_copy(const char *srcu, const char *dstu, struct opts *o)
{
	struct rc_lun src, dst;
	struct progress p;
	uint64_t t0;
	int rc = -1;
	const char *used = NULL;

	if (rc_lun_open(&src, srcu))
		return 1;
	if (rc_lun_open(&dst, dstu)) {
		rc_lun_close(&src);
		return 1;
	}
	rc_lun_probe(&src);
	rc_lun_probe(&dst);
	if (!o->have_length) {
		if (o->src_off > src.nblocks * src.bs) {
			fprintf(stderr, "rodcp: --src-offset is past the end of %s\n", srcu);
			goto out;
		}
		o->length = src.nblocks * src.bs - o->src_off;
	}
	if (check_range("source", &src, o->src_off, o->length) ||
	    check_range("destination", &dst, o->dst_off, o->length))
		goto out;
	t0 = rod_now_ns();
	rc_commands = 0;
	for (enum method m = M_ODX; m <= M_RW && rc; m++) {
		if (o->method != M_AUTO && o->method != m)
			continue;
		progress_init(&p, o->length, method_names[m], o->quiet || o->json);
		if (o->length == 0)
			rc = 0;
		else if (m == M_ODX)
			rc = copy_odx(&src, &dst, o, &p);
		else if (m == M_XCOPY)
			rc = copy_xcopy(&src, &dst, o, &p);
		else
			rc = copy_rw(&src, &dst, o, &p);
		if (p.tty && p.done < p.total)
			fputc('\n', stderr);
		if (!rc)
			used = method_names[m];
		else if (o->method == M_AUTO && m < M_RW)
			fprintf(stderr, "rodcp: %s did not work; trying %s\n", method_names[m],
				method_names[m + 1]);
	}
	if (!rc)
		report(o, used, o->length, (double)(rod_now_ns() - t0) / 1e9, srcu, dstu);
	else
		fprintf(stderr, "rodcp: copy failed%s\n",
			o->method == M_AUTO ? " with every method" : "");
out:
	rc_lun_close(&src);
	rc_lun_close(&dst);
	return rc ? 1 : 0;
}

static int do_token_create(const char *srcu, struct opts *o)
{
	struct rc_lun src;
	struct rc_sense s;
	uint8_t tok[TOKEN_LEN];
	uint64_t done = 0, chunk, t0;
	unsigned ntok = 0;
	FILE *f = NULL;
	int rc = 1;

	if (!o->out) {
		fprintf(stderr, "rodcp: token create needs --out FILE\n");
		return 2;
	}
	if (rc_lun_open(&src, srcu))
		return 1;
	rc_lun_probe(&src);
	if (!src.have_odx) {
		fprintf(stderr, "rodcp: %s does not advertise ROD tokens (no VPD page 0x8F block "
			"device ROD token limits)\n", srcu);
		goto out;
	}
	if (!o->have_length)
		o->length = src.nblocks * src.bs > o->src_off ? src.nblocks * src.bs - o->src_off : 0;
	if (check_range("source", &src, o->src_off, o->length))
		goto out;
	f = fopen(o->out, "wb");
	if (!f) {
		fprintf(stderr, "rodcp: cannot create %s: %s\n", o->out, strerror(errno));
		goto out;
	}
	t0 = rod_now_ns();
	rc_commands = 0;
	chunk = token_chunk_blocks(&src) * src.bs;
	while (done < o->length) {
		uint64_t n = ROD_MIN(chunk, o->length - done);

		if (odx_populate(&src, (o->src_off + done) / src.bs, n / src.bs, tok, &s)) {
			err_cmd("POPULATE TOKEN", &src, &s);
			goto out;
		}
		if (fwrite(tok, TOKEN_LEN, 1, f) != 1) {
			fprintf(stderr, "rodcp: writing %s: %s\n", o->out, strerror(errno));
			goto out;
		}
		ntok++;
		done += n;
	}
	if (fclose(f) != 0) {
		f = NULL;
		fprintf(stderr, "rodcp: writing %s: %s\n", o->out, strerror(errno));
		goto out;
	}
	f = NULL;
	if (!o->json && !o->quiet)
		fprintf(stderr, "rodcp: %u token(s) for %llu bytes in %s; they expire after %u s "
			"without use\n", ntok, (unsigned long long)o->length, o->out,
			src.odx_default_timeout);
	report(o, "token-create", o->length, (double)(rod_now_ns() - t0) / 1e9, srcu, NULL);
	rc = 0;
out:
	if (f) {
		fclose(f);
		unlink(o->out);
	}
	rc_lun_close(&src);
	return rc;
}

static int do_token_write(const char *file, const char *dstu, struct opts *o)
{
	struct rc_lun dst;
	struct rc_sense s;
	struct progress p;
	uint8_t *toks = NULL;
	long sz;
	uint64_t total = 0, off, t0;
	FILE *f = fopen(file, "rb");
	int rc = 1;

	if (!f) {
		fprintf(stderr, "rodcp: cannot open %s: %s\n", file, strerror(errno));
		return 1;
	}
	if (fseek(f, 0, SEEK_END) || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "rodcp: cannot read %s\n", file);
		fclose(f);
		return 1;
	}
	if (sz == 0 || sz % TOKEN_LEN || sz > 64L * 1024 * 1024) {
		fprintf(stderr, "rodcp: %s is not a token file (it must hold whole 512-byte ROD "
			"tokens, as written by rodcp token create)\n", file);
		fclose(f);
		return 1;
	}
	toks = malloc((size_t)sz);
	if (!toks || fread(toks, 1, (size_t)sz, f) != (size_t)sz) {
		fprintf(stderr, "rodcp: cannot read %s\n", file);
		fclose(f);
		free(toks);
		return 1;
	}
	fclose(f);
	if (rc_lun_open(&dst, dstu)) {
		free(toks);
		return 1;
	}
	rc_lun_probe(&dst);
	if (!dst.have_odx) {
		fprintf(stderr, "rodcp: %s does not advertise ROD tokens (VPD page 0x8F)\n", dstu);
		goto out;
	}
	for (long i = 0; i < sz / (long)TOKEN_LEN; i++) {
		const uint8_t *t = toks + i * TOKEN_LEN;

		/* NUMBER OF BYTES REPRESENTED (bytes 48..63): our counts fit 64 bits. */
		if (rod_get_be64(t + 48) || rod_get_be64(t + 56) % dst.bs) {
			fprintf(stderr, "rodcp: token %ld in %s does not say how many bytes it "
				"represents in whole %u-byte blocks\n", i + 1, file, dst.bs);
			goto out;
		}
		total += rod_get_be64(t + 56);
	}
	if (check_range("destination", &dst, o->dst_off, total))
		goto out;
	progress_init(&p, total, "odx", o->quiet || o->json);
	t0 = rod_now_ns();
	rc_commands = 0;
	off = o->dst_off;
	for (long i = 0; i < sz / (long)TOKEN_LEN; i++) {
		const uint8_t *t = toks + i * TOKEN_LEN;
		uint64_t n = rod_get_be64(t + 56);

		if (token_apply(&dst, t, n, off, false, &p, &s)) {
			char what[64];

			snprintf(what, sizeof(what), "WRITE USING TOKEN (token %ld of %s)", i + 1, file);
			err_cmd(what, &dst, &s);
			if (s.key == 0x05 && s.asc == 0x23)
				fprintf(stderr, "rodcp: the array no longer honours this token; make "
					"a new one with rodcp token create\n");
			goto out;
		}
		off += n;
	}
	report(o, "token-write", total, (double)(rod_now_ns() - t0) / 1e9, NULL, dstu);
	rc = 0;
out:
	free(toks);
	rc_lun_close(&dst);
	return rc;
}

static int do_zero(const char *dstu, struct opts *o)
{
	struct rc_lun dst;
	struct progress p;
	uint64_t t0;
	const char *used = "zero-token";
	int rc = 1;

	if (rc_lun_open(&dst, dstu))
		return 1;
	rc_lun_probe(&dst);
	if (!o->have_length)
		o->length = dst.nblocks * dst.bs > o->dst_off ? dst.nblocks * dst.bs - o->dst_off : 0;
	if (check_range("destination", &dst, o->dst_off, o->length))
		goto out;
	t0 = rod_now_ns();
	rc_commands = 0;
	progress_init(&p, o->length, "zero", o->quiet || o->json);
	if (zero_token(&dst, o, &p)) {
		if (!o->quiet)
			fprintf(stderr, "rodcp: zero ROD token not usable on %s; using WRITE SAME\n",
				dstu);
		used = "write-same";
		progress_init(&p, o->length, "zero", o->quiet || o->json);
		if (zero_write_same(&dst, o, &p))
			goto out;
	}
	report(o, used, o->length, (double)(rod_now_ns() - t0) / 1e9, NULL, dstu);
	rc = 0;
out:
	rc_lun_close(&dst);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "src-offset", required_argument, NULL, 's' },
		{ "dst-offset", required_argument, NULL, 'd' },
		{ "length", required_argument, NULL, 'l' },
		{ "method", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "out", required_argument, NULL, 'o' },
		{ "segment", required_argument, NULL, 'S' },
		{ "depth", required_argument, NULL, 'D' },
		{ "chunk", required_argument, NULL, 'C' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .xcopy_seg = 4u << 20, .depth = 8, .rw_chunk = 1u << 20 };
	const char *pos[4];
	int npos = 0, c;
	uint64_t v;

	while ((c = getopt_long(argc, argv, "hjq", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size_opt("--src-offset", optarg, &o.src_off))
				return 2;
			break;
		case 'd':
			if (parse_size_opt("--dst-offset", optarg, &o.dst_off))
				return 2;
			break;
		case 'l':
			if (parse_size_opt("--length", optarg, &o.length))
				return 2;
			o.have_length = true;
			break;
		case 'm': {
			bool ok = false;

			for (int i = 0; i < 4; i++)
				if (!strcmp(optarg, method_names[i])) {
					o.method = (enum method)i;
					ok = true;
				}
			if (!ok) {
				fprintf(stderr, "rodcp: --method must be auto, odx, xcopy or rw\n");
				return 2;
			}
			break;
		}
		case 'j': o.json = true; break;
		case 'q': o.quiet = true; break;
		case 'o': o.out = optarg; break;
		case 'S':
			if (parse_size_opt("--segment", optarg, &o.xcopy_seg) || !o.xcopy_seg)
				return 2;
			break;
		case 'C':
			if (parse_size_opt("--chunk", optarg, &o.rw_chunk) || !o.rw_chunk)
				return 2;
			break;
		case 'D':
			if (parse_size_opt("--depth", optarg, &v) || v < 1 || v > 64) {
				fprintf(stderr, "rodcp: --depth must be 1..64\n");
				return 2;
			}
			o.depth = (int)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	while (optind < argc && npos < 4)
		pos[npos++] = argv[optind++];
	if (optind < argc || npos == 0) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(pos[0], "token")) {
		if (npos == 3 && !strcmp(pos[1], "create"))
			return do_token_create(pos[2], &o);
		if (npos == 4 && !strcmp(pos[1], "write"))
			return do_token_write(pos[2], pos[3], &o);
		usage(stderr);
		return 2;
	}
	if (!strcmp(pos[0], "zero")) {
		if (npos != 2) {
			usage(stderr);
			return 2;
		}
		return do_zero(pos[1], &o);
	}
	if (npos != 2) {
		usage(stderr);
		return 2;
	}
	return do_copy(pos[0], pos[1], &o);
}
