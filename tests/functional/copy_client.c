/* rodtest-copy: a libiscsi client that sends copy-offload commands exactly as the
 * functional tests describe them (including malformed ones) and reports the outcome.
 *
 *   rodtest-copy [-i INITIATOR] CMD URL [ARGS]
 *     load URL LBA FILE                 write FILE (whole blocks) at LBA
 *     dump URL LBA COUNT FILE           read COUNT blocks into FILE
 *     desig URL                         hex of the LU's VPD 0x83 NAA designation descriptor
 *     pt URL RANGES TOKENFILE [--list-id N] [--timeout S] [--rtv TYPE] [--immed]
 *                                       POPULATE TOKEN + RRTI; RANGES = LBA:N[,LBA:N...]
 *     wut URL TOKENFILE RANGES [--offset BLOCKS] [--del] [--list-id N] [--flip BYTE]
 *                                       [--zero-token]
 *     rrti URL LIST_ID                  "sa=0x10 status=0x01 count=N token=1"
 *     xcopy URL --cscd HEX... --seg S:D:N:SLBA:DLBA... [--list-id N] [--usage U]
 *                 [--cscd-type X] [--seg-type X] [--truncate N] [--inline N] [--status]
 *                                       (--status: then RECEIVE COPY RESULTS COPY STATUS
 *                                       of the list id on the same session)
 *     rcr-status URL LIST_ID            "status=N segs=N units=N count=N"
 *     rcr-params URL                    key=value lines
 *     vpd URL PAGE                      page bytes in hex
 *
 * A CHECK CONDITION prints "sense=SK/ASC/ASCQ" (hex) and exits 4; other failures exit
 * 3 (login) or 2 (usage); success exits 0. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static const char *initiator = "iqn.2026-11.io.rodstore.test:client";
static struct iscsi_context *ic;
static int lun;
static uint32_t bs = 512;

/* Every buffer is freed at exit (the tests also run under LeakSanitizer). */
static void *allocs[64];
static int nallocs;

static void *track(void *p)
{
	if (p && nallocs < 64)
		allocs[nallocs++] = p;
	return p;
}

static void release_all(void)
{
	while (nallocs)
		free(allocs[--nallocs]);
	if (ic) {
		iscsi_logout_sync(ic);
		iscsi_destroy_context(ic);
		ic = NULL;
	}
}

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, (uint16_t)v); }
static void put64(uint8_t *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, (uint32_t)v); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static int usage(void)
{
	fprintf(stderr, "usage: rodtest-copy [-i INITIATOR] load|dump|desig|pt|wut|rrti|xcopy|"
			"rcr-status|rcr-params|vpd URL [ARGS] (see copy_client.c)\n");
	return 2;
}

static int connect_url(const char *url_s)
{
	struct iscsi_url *url;

	ic = iscsi_create_context(initiator);
	if (!ic)
		return -1;
	url = iscsi_parse_full_url(ic, url_s);
	if (!url) {
		fprintf(stderr, "bad URL %s: %s\n", url_s, iscsi_get_error(ic));
		return -1;
	}
	iscsi_set_targetname(ic, url->target);
	iscsi_set_session_type(ic, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ic, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	lun = url->lun;
	if (iscsi_full_connect_sync(ic, url->portal, url->lun)) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(ic));
		iscsi_destroy_url(url);
		return -1;
	}
	iscsi_destroy_url(url);
	return 0;
}

/* One command; data-in copied to in (up to in_len), *got set. Returns 0 GOOD, 4 CHECK
 * CONDITION (sense printed), 5 other failure. */
static int cmd(const uint8_t *cdb, int dir, const void *out, size_t out_len, void *in,
	       size_t in_len, size_t *got)
{
	struct scsi_task *t = scsi_create_task(16, (unsigned char *)cdb,
					       dir == 1 ? SCSI_XFER_READ : dir == 2 ? SCSI_XFER_WRITE
					       : SCSI_XFER_NONE,
					       (int)(dir == 1 ? in_len : dir == 2 ? out_len : 0));
	struct iscsi_data d = { .size = out_len, .data = (unsigned char *)out };
	int rc;

	if (got)
		*got = 0;
	/* cdb length from the group code (6 for 0x12) */
	if (cdb[0] < 0x20)
		t->cdb_size = 6;
	if (!iscsi_scsi_command_sync(ic, lun, t, dir == 2 ? &d : NULL)) {
		fprintf(stderr, "transport error: %s\n", iscsi_get_error(ic));
		scsi_free_scsi_task(t);
		return 5;
	}
	if (t->status == SCSI_STATUS_GOOD) {
		if (dir == 1 && in && t->datain.size > 0) {
			size_t n = (size_t)t->datain.size < in_len ? (size_t)t->datain.size : in_len;
			memcpy(in, t->datain.data, n);
			if (got)
				*got = n;
		}
		rc = 0;
	} else if (t->status == SCSI_STATUS_CHECK_CONDITION) {
		printf("sense=%02X/%02X/%02X\n", t->sense.key, (t->sense.ascq >> 8) & 0xff,
		       t->sense.ascq & 0xff);
		rc = 4;
	} else {
		printf("status=0x%02x\n", t->status);
		rc = 5;
	}
	scsi_free_scsi_task(t);
	return rc;
}

/* Clear the power-on unit attention and learn the block size. */
static int prepare(void)
{
	uint8_t cdb[16] = { 0x9E, 0x10 }, b[32];
	size_t got;

	put32(cdb + 10, 32);
	for (int i = 0; i < 4; i++) {
		if (cmd(cdb, 1, NULL, 0, b, sizeof(b), &got) == 0) {
			bs = get32(b + 8);
			return 0;
		}
		fflush(stdout);
	}
	return -1;
}

static int parse_ranges(const char *s, uint8_t *out, unsigned max)
{
	unsigned n = 0;
	char *dup = track(strdup(s)), *save = NULL;

	for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long long lba, cnt;

		if (n == max || sscanf(tok, "%llu:%llu", &lba, &cnt) != 2) {
			return -1;
		}
		memset(out + 16 * n, 0, 16);
		put64(out + 16 * n, lba);
		put32(out + 16 * n + 8, (uint32_t)cnt);
		n++;
	}
	return (int)n;
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long sz;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	*buf = track(malloc(sz > 0 ? (size_t)sz : 1));
	*len = fread(*buf, 1, (size_t)sz, f);
	fclose(f);
	return 0;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	size_t n;

	if (!f)
		return -1;
	n = fwrite(buf, 1, len, f);
	if (fclose(f) != 0 || n != len)
		return -1;
	return 0;
}

static int hex_decode(const char *h, uint8_t *out, size_t max)
{
	size_t n = strlen(h) / 2;

	if (n > max)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return (int)n;
}

static int do_rrti(uint32_t list_id, uint8_t *tok_out)
{
	uint8_t cdb[16] = { 0x84, 0x07 }, r[1024];
	size_t got;
	int rc;

	put32(cdb + 2, list_id);
	put32(cdb + 10, sizeof(r));
	rc = cmd(cdb, 1, NULL, 0, r, sizeof(r), &got);
	if (rc)
		return rc;
	size_t off = 32u + r[13];
	bool has = got >= off + 6 + 512 && get32(r + off) == 514;
	printf("sa=0x%02x status=0x%02x count=%" PRIu64 " units=0x%02x token=%d\n", r[4], r[5],
	       get64(r + 16), r[15], has);
	if (has && tok_out)
		memcpy(tok_out, r + off + 6, 512);
	return has || !tok_out ? 0 : 6;
}

static int do_rcr_status(uint8_t list_id)
{
	uint8_t cdb[16] = { 0x84, 0x00 }, r[64];
	size_t got;
	int rc;

	cdb[2] = list_id;
	put32(cdb + 10, sizeof(r));
	rc = cmd(cdb, 1, NULL, 0, r, sizeof(r), &got);
	if (rc)
		return rc;
	printf("status=%u segs=%u units=%u count=%u\n", r[4] & 0x7f, r[5] << 8 | r[6], r[7],
	       get32(r + 8));
	return 0;
}

static int run(int argc, char **argv)
{
	int c;
	const char *cmdname, *url;
	uint8_t cdb[16];

	while ((c = getopt(argc, argv, "+i:")) != -1) {
		if (c == 'i')
			initiator = optarg;
		else
			return usage();
	}
	if (argc - optind < 2)
		return usage();
	cmdname = argv[optind];
	url = argv[optind + 1];
	argv += optind + 2;
	argc -= optind + 2;
	if (connect_url(url))
		return 3;
	if (prepare())
		return 3;
	memset(cdb, 0, sizeof(cdb));

	if (!strcmp(cmdname, "load") && argc == 2) {
		uint8_t *buf;
		size_t len;
		uint64_t lba = strtoull(argv[0], NULL, 0);

		if (read_file(argv[1], &buf, &len) || len % bs)
			return 2;
		for (size_t off = 0; off < len; off += 1u << 20) {
			size_t n = len - off < (1u << 20) ? len - off : (1u << 20);
			cdb[0] = 0x8A;
			put64(cdb + 2, lba + off / bs);
			put32(cdb + 10, (uint32_t)(n / bs));
			int rc = cmd(cdb, 2, buf + off, n, NULL, 0, NULL);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!strcmp(cmdname, "dump") && argc == 3) {
		uint64_t lba = strtoull(argv[0], NULL, 0), cnt = strtoull(argv[1], NULL, 0);
		size_t len = cnt * bs;
		uint8_t *buf = track(malloc(len ? len : 1));

		for (size_t off = 0; off < len; off += 1u << 20) {
			size_t n = len - off < (1u << 20) ? len - off : (1u << 20), got;
			cdb[0] = 0x88;
			put64(cdb + 2, lba + off / bs);
			put32(cdb + 10, (uint32_t)(n / bs));
			int rc = cmd(cdb, 1, NULL, 0, buf + off, n, &got);
			if (rc)
				return rc;
		}
		return write_file(argv[2], buf, len) ? 5 : 0;
	}
	if (!strcmp(cmdname, "desig") || !strcmp(cmdname, "vpd")) {
		uint8_t b[4096];
		size_t got;
		int page = !strcmp(cmdname, "desig") ? 0x83 : (argc ? (int)strtol(argv[0], NULL, 0) : 0);
		cdb[0] = 0x12;
		cdb[1] = 1;
		cdb[2] = (uint8_t)page;
		put16(cdb + 3, 4095);
		int rc = cmd(cdb, 1, NULL, 0, b, 4095, &got);
		if (rc)
			return rc;
		if (page != 0x83) {
			for (size_t i = 0; i < got; i++)
				printf("%02x", b[i]);
			printf("\n");
			return 0;
		}
		for (size_t pos = 4; pos + 4 <= got; pos += 4u + b[pos + 3]) {
			if (((b[pos + 1] >> 4) & 3) == 0 && (b[pos + 1] & 0xf) == 3) {
				for (size_t i = 0; i < 4u + b[pos + 3]; i++)
					printf("%02x", i == 0 ? b[pos] & 0x0f : b[pos + i]);
				printf("\n");
				return 0;
			}
		}
		return 5;
	}
	if (!strcmp(cmdname, "pt") && argc >= 2) {
		uint8_t pl[16 + 16 * 128] = { 0 }, tok[512];
		uint32_t list_id = 1000 + (uint32_t)getpid();
		int n = parse_ranges(argv[0], pl + 16, 128);
		const char *outf = argv[1];

		if (n < 0)
			return 2;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--list-id") && i + 1 < argc)
				list_id = (uint32_t)strtoul(argv[++i], NULL, 0);
			else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
				put32(pl + 4, (uint32_t)strtoul(argv[++i], NULL, 0));
			else if (!strcmp(argv[i], "--rtv") && i + 1 < argc) {
				pl[2] |= 2;
				put32(pl + 8, (uint32_t)strtoul(argv[++i], NULL, 0));
			} else if (!strcmp(argv[i], "--immed"))
				pl[2] |= 1;
			else
				return 2;
		}
		put16(pl, (uint16_t)(16 + 16 * n - 2));
		put16(pl + 14, (uint16_t)(16 * n));
		cdb[0] = 0x83;
		cdb[1] = 0x10;
		put32(cdb + 6, list_id);
		put32(cdb + 10, 16 + 16u * (unsigned)n);
		int rc = cmd(cdb, 2, pl, 16 + 16u * (unsigned)n, NULL, 0, NULL);
		if (rc)
			return rc;
		rc = do_rrti(list_id, tok);
		if (rc)
			return rc;
		return write_file(outf, tok, 512) ? 5 : 0;
	}
	if (!strcmp(cmdname, "wut") && argc >= 2) {
		uint8_t pl[536 + 16 * 128] = { 0 }, *tok;
		size_t tlen;
		uint32_t list_id = 2000 + (uint32_t)getpid();
		int n = parse_ranges(argv[1], pl + 536, 128);

		if (n < 0)
			return 2;
		if (!strcmp(argv[0], "-")) {
			tok = track(calloc(1, 512));
			tlen = 512;
		} else if (read_file(argv[0], &tok, &tlen) || tlen < 512) {
			return 2;
		}
		memcpy(pl + 16, tok, 512);
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--list-id") && i + 1 < argc)
				list_id = (uint32_t)strtoul(argv[++i], NULL, 0);
			else if (!strcmp(argv[i], "--offset") && i + 1 < argc)
				put64(pl + 8, strtoull(argv[++i], NULL, 0));
			else if (!strcmp(argv[i], "--del"))
				pl[2] |= 2;
			else if (!strcmp(argv[i], "--flip") && i + 1 < argc)
				pl[16 + strtoul(argv[++i], NULL, 0) % 512] ^= 0x01;
			else if (!strcmp(argv[i], "--zero-token")) {
				memset(pl + 16, 0, 512);
				put32(pl + 16, 0xFFFF0001u);
			} else
				return 2;
		}
		put16(pl, (uint16_t)(536 + 16 * n - 2));
		put16(pl + 534, (uint16_t)(16 * n));
		cdb[0] = 0x83;
		cdb[1] = 0x11;
		put32(cdb + 6, list_id);
		put32(cdb + 10, 536 + 16u * (unsigned)n);
		return cmd(cdb, 2, pl, 536 + 16u * (unsigned)n, NULL, 0, NULL);
	}
	if (!strcmp(cmdname, "rrti") && argc == 1)
		return do_rrti((uint32_t)strtoul(argv[0], NULL, 0), NULL);
	if (!strcmp(cmdname, "xcopy")) {
		uint8_t cscd[80][32], segs[80][28], *pl;
		int ncscd = 0, nseg = 0, truncate = 0, inline_len = 0, list_id = 1, usage_v = 2;
		int cscd_type = 0xE4, seg_type = 0x02;
		bool status = false;

		for (int i = 0; i < argc; i++) {
			if (!strcmp(argv[i], "--cscd") && i + 1 < argc && ncscd < 80) {
				memset(cscd[ncscd], 0, 32);
				if (hex_decode(argv[++i], cscd[ncscd] + 4, 24) < 4)
					return 2;
				put32(cscd[ncscd] + 28, bs); /* byte 28 = 0, 29..31 block length */
				ncscd++;
			} else if (!strcmp(argv[i], "--seg") && i + 1 < argc && nseg < 80) {
				unsigned s, d, cnt;
				unsigned long long sl, dl;

				if (sscanf(argv[++i], "%u:%u:%u:%llu:%llu", &s, &d, &cnt, &sl, &dl) != 5)
					return 2;
				memset(segs[nseg], 0, 28);
				put16(segs[nseg] + 2, 0x18);
				put16(segs[nseg] + 4, (uint16_t)s);
				put16(segs[nseg] + 6, (uint16_t)d);
				put16(segs[nseg] + 10, (uint16_t)cnt);
				put64(segs[nseg] + 12, sl);
				put64(segs[nseg] + 20, dl);
				nseg++;
			} else if (!strcmp(argv[i], "--list-id") && i + 1 < argc) {
				list_id = atoi(argv[++i]);
			} else if (!strcmp(argv[i], "--usage") && i + 1 < argc) {
				usage_v = atoi(argv[++i]);
			} else if (!strcmp(argv[i], "--cscd-type") && i + 1 < argc) {
				cscd_type = (int)strtol(argv[++i], NULL, 0);
			} else if (!strcmp(argv[i], "--seg-type") && i + 1 < argc) {
				seg_type = (int)strtol(argv[++i], NULL, 0);
			} else if (!strcmp(argv[i], "--truncate") && i + 1 < argc) {
				truncate = atoi(argv[++i]);
			} else if (!strcmp(argv[i], "--status")) {
				status = true;
			} else if (!strcmp(argv[i], "--inline") && i + 1 < argc) {
				inline_len = atoi(argv[++i]);
			} else {
				return 2;
			}
		}
		size_t len = 16 + 32u * (unsigned)ncscd + 28u * (unsigned)nseg + (unsigned)inline_len;
		pl = track(calloc(1, len));
		pl[0] = (uint8_t)list_id;
		pl[1] = (uint8_t)(usage_v << 3);
		put16(pl + 2, (uint16_t)(32 * ncscd));
		put32(pl + 8, (uint32_t)(28 * nseg));
		put32(pl + 12, (uint32_t)inline_len);
		for (int i = 0; i < ncscd; i++) {
			cscd[i][0] = (uint8_t)cscd_type;
			memcpy(pl + 16 + 32 * i, cscd[i], 32);
		}
		for (int i = 0; i < nseg; i++) {
			segs[i][0] = (uint8_t)seg_type;
			memcpy(pl + 16 + 32 * ncscd + 28 * i, segs[i], 28);
		}
		len -= (size_t)truncate;
		cdb[0] = 0x83;
		put32(cdb + 10, (uint32_t)len);
		int rc = cmd(cdb, 2, pl, len, NULL, 0, NULL);
		/* --status: COPY STATUS of the list on this same I_T nexus */
		if (status) {
			fflush(stdout);
			int rc2 = do_rcr_status((uint8_t)list_id);
			if (!rc)
				rc = rc2;
		}
		return rc;
	}
	if (!strcmp(cmdname, "rcr-status") && argc == 1)
		return do_rcr_status((uint8_t)atoi(argv[0]));
	if (!strcmp(cmdname, "rcr-params")) {
		uint8_t r[256];
		size_t got;
		cdb[0] = 0x84;
		cdb[1] = 0x03;
		put32(cdb + 10, sizeof(r));
		int rc = cmd(cdb, 1, NULL, 0, r, sizeof(r), &got);
		if (rc)
			return rc;
		printf("snlid=%u\nmax_cscd=%u\nmax_segs=%u\nmax_list=%u\nmax_seg_len=%u\n"
		       "max_inline=%u\nconcurrent=%u\ncodes=", r[4] & 1, r[8] << 8 | r[9],
		       r[10] << 8 | r[11], get32(r + 12), get32(r + 16), get32(r + 20),
		       r[34] << 8 | r[35]);
		for (unsigned i = 0; i < r[43] && 44 + i < got; i++)
			printf("%02x", r[44 + i]);
		printf("\n");
		return 0;
	}
	return usage();
}

int main(int argc, char **argv)
{
	int rc = run(argc, argv);

	release_all();
	return rc;
}
