/* rodtest-iscsi: a small libiscsi client for the functional tests.
 *
 *   rodtest-iscsi [-i INITIATOR] [-T TARGET_USER -P TARGET_SECRET] [-p] CMD URL [ARGS]
 *     login URL                 log in and out (exit 3 if the login fails)
 *     luns URL                  REPORT LUNS, one LUN number per line
 *     capacity URL              "<blocks> <block_size>" from READ CAPACITY 16
 *     write URL LBA COUNT SEED  write COUNT blocks of a pattern derived from SEED and LBA
 *                               (-p: print the count acknowledged so far after each chunk)
 *     verify URL LBA COUNT SEED read them back; exit 1 at the first differing byte
 *     discover PORTAL_URL       SendTargets: one "target portal" line per address
 *     session URL               one session, commands from stdin (see session())
 *
 * URLs are libiscsi's: iscsi://[user[%secret]@]host:port/target-iqn/lun. Exit codes:
 * 0 ok, 1 data mismatch, 2 usage, 3 connect/login failed, 4 SCSI command failed. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define CHUNK_BLOCKS 128u

static const char *initiator = "iqn.2026-11.io.rodstore.test:client";
static const char *tuser, *tsecret;
static bool progress;   /* -p: print the blocks written so far after each acknowledged chunk */

static int usage(void)
{
	fprintf(stderr, "usage: rodtest-iscsi [-i INITIATOR] [-T TUSER -P TSECRET] "
			"login|luns|capacity|write|verify|session|discover URL [LBA COUNT SEED]\n");
	return 2;
}

/* full: log in and clear the LUN's unit attentions with TEST UNIT READY (libiscsi's
 * full connect, which fails when the LUN is not mapped); else log in only. */
static struct iscsi_context *connect_url(const char *url_s, int *lun, bool full)
{
	struct iscsi_context *ic = iscsi_create_context(initiator);
	if (!ic) {
		fprintf(stderr, "cannot create an iSCSI context\n");
		return NULL;
	}
	struct iscsi_url *url = iscsi_parse_full_url(ic, url_s);
	if (!url) {
		fprintf(stderr, "bad URL %s: %s\n", url_s, iscsi_get_error(ic));
		iscsi_destroy_context(ic);
		return NULL;
	}
	iscsi_set_targetname(ic, url->target);
	iscsi_set_session_type(ic, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ic, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	if (url->user[0])
		iscsi_set_initiator_username_pwd(ic, url->user, url->passwd);
	if (tuser)
		iscsi_set_target_username_pwd(ic, tuser, tsecret);
	else if (url->target_user[0])
		iscsi_set_target_username_pwd(ic, url->target_user, url->target_passwd);
	*lun = url->lun;
	/* a test wants to see a dropped session, not libiscsi reconnecting forever */
	iscsi_set_noautoreconnect(ic, 1);
	iscsi_set_timeout(ic, 30);
	int rc = full ? iscsi_full_connect_sync(ic, url->portal, url->lun)
		      : (iscsi_connect_sync(ic, url->portal) || iscsi_login_sync(ic));
	if (rc) {
		fprintf(stderr, "login to %s at %s failed: %s\n", url->target, url->portal, iscsi_get_error(ic));
		iscsi_destroy_url(url);
		iscsi_destroy_context(ic);
		return NULL;
	}
	iscsi_destroy_url(url);
	return ic;
}

static int task_failed(struct iscsi_context *ic, struct scsi_task *t, const char *what)
{
	if (t && t->status == SCSI_STATUS_GOOD)
		return 0;
	if (t && t->status == SCSI_STATUS_CHECK_CONDITION)
		fprintf(stderr, "%s: CHECK CONDITION %x/%02x/%02x (%s)\n", what, t->sense.key, t->sense.ascq >> 8,
			t->sense.ascq & 0xff, iscsi_get_error(ic));
	else
		fprintf(stderr, "%s failed: %s\n", what, iscsi_get_error(ic));
	return 1;
}

/* Deterministic bytes: what a block at LBA holds for a given seed. */
static void pattern(uint8_t *buf, size_t len, uint64_t lba, uint32_t bs, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = seed * 0x9e3779b97f4a7c15ull ^ (lba + i / bs) * 0xbf58476d1ce4e5b9ull ^ (i % bs);
		x ^= x >> 31;
		x *= 0x94d049bb133111ebull;
		buf[i] = (uint8_t)(x >> 56);
	}
}

static int capacity(struct iscsi_context *ic, int lun, uint64_t *blocks, uint32_t *bs)
{
	struct scsi_task *t = iscsi_readcapacity16_sync(ic, lun);
	if (task_failed(ic, t, "READ CAPACITY 16")) {
		if (t)
			scsi_free_scsi_task(t);
		return 4;
	}
	struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(t);
	if (!rc) {
		fprintf(stderr, "cannot decode READ CAPACITY 16 data\n");
		scsi_free_scsi_task(t);
		return 4;
	}
	*blocks = rc->returned_lba + 1;
	*bs = rc->block_length;
	scsi_free_scsi_task(t);
	return 0;
}

static int rw(struct iscsi_context *ic, int lun, bool write, uint64_t lba, uint64_t count, uint64_t seed)
{
	uint64_t blocks;
	uint32_t bs;
	int rc = capacity(ic, lun, &blocks, &bs);
	if (rc)
		return rc;
	uint8_t *want = malloc((size_t)CHUNK_BLOCKS * bs);
	for (uint64_t done = 0; done < count;) {
		uint32_t n = (uint32_t)((count - done) < CHUNK_BLOCKS ? (count - done) : CHUNK_BLOCKS);
		uint64_t at = lba + done;
		pattern(want, (size_t)n * bs, at, bs, seed);
		struct scsi_task *t = write ? iscsi_write16_sync(ic, lun, at, want, n * bs, (int)bs, 0, 0, 0, 0, 0)
					    : iscsi_read16_sync(ic, lun, at, n * bs, (int)bs, 0, 0, 0, 0, 0);
		if (task_failed(ic, t, write ? "WRITE 16" : "READ 16")) {
			if (t)
				scsi_free_scsi_task(t);
			free(want);
			return 4;
		}
		if (!write) {
			if (t->datain.size < (int)(n * bs)) {
				fprintf(stderr, "READ 16 at LBA %" PRIu64 " returned %d bytes, expected %u\n", at,
					t->datain.size, n * bs);
				scsi_free_scsi_task(t);
				free(want);
				return 1;
			}
			for (size_t i = 0; i < (size_t)n * bs; i++)
				if (t->datain.data[i] != want[i]) {
					fprintf(stderr, "data differs at LBA %" PRIu64 " byte %zu: read 0x%02x, expected 0x%02x\n",
						at + i / bs, i % bs, t->datain.data[i], want[i]);
					scsi_free_scsi_task(t);
					free(want);
					return 1;
				}
		}
		scsi_free_scsi_task(t);
		done += n;
		if (progress && write) {
			printf("%" PRIu64 "\n", done);
			fflush(stdout);
		}
	}
	free(want);
	return 0;
}

/* REPORT LUNS (retrying past unit attentions of a fresh session), each LUN printed
 * after prefix and followed by sep. */
static int print_luns(struct iscsi_context *ic, const char *prefix, const char *sep)
{
	struct scsi_task *t = NULL;
	int rc;
	for (int tries = 0; tries < 4; tries++) {
		if (t)
			scsi_free_scsi_task(t);
		t = iscsi_reportluns_sync(ic, 0, 16384);
		if (!t || t->status != SCSI_STATUS_CHECK_CONDITION || t->sense.key != SCSI_SENSE_UNIT_ATTENTION)
			break;
	}
	if (task_failed(ic, t, "REPORT LUNS")) {
		rc = 4;
	} else {
		struct scsi_reportluns_list *l = scsi_datain_unmarshall(t);
		fputs(prefix, stdout);
		for (uint32_t i = 0; l && i < l->num; i++)
			printf("%u%s", l->luns[i] & 0x3fffu, sep); /* drop the addressing-method bits */
		rc = l ? 0 : 4;
	}
	if (t)
		scsi_free_scsi_task(t);
	return rc;
}

/* "session": one login, then commands from stdin, one per line, one answer line each:
 *   luns          -> "luns: 0 3 "
 *   tur LUN       -> "good" or "sense K/ASC/ASCQ" (hex), without retrying
 *   read LUN LBA  -> the same for one READ 16 of one block
 *   wce LUN       -> "wce 0|1" from the caching mode page (or the failure as above)
 * Lets a test change the array between commands of one session. */
static int session(struct iscsi_context *ic)
{
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		unsigned lun = 0;
		unsigned long long lba = 0;
		struct scsi_task *t = NULL;
		if (!strncmp(line, "luns", 4)) {
			if (print_luns(ic, "luns: ", " "))
				printf("failed");
			printf("\n");
			fflush(stdout);
			continue;
		}
		if (sscanf(line, "wce %u", &lun) == 1) {
			/* SBC-3 caching mode page (0x08): the WCE bit hosts act on */
			t = iscsi_modesense10_sync(ic, (int)lun, 0, 1, SCSI_MODESENSE_PC_CURRENT,
						   SCSI_MODEPAGE_CACHING, 0, 255);
			struct scsi_mode_sense *ms = t && t->status == SCSI_STATUS_GOOD ? scsi_datain_unmarshall(t) : NULL;
			struct scsi_mode_page *pg = ms ? scsi_modesense_get_page(ms, SCSI_MODEPAGE_CACHING, 0) : NULL;
			if (pg) {
				printf("wce %d\n", pg->caching.wce);
				fflush(stdout);
				scsi_free_scsi_task(t);
				continue;
			}
		} else if (sscanf(line, "tur %u", &lun) == 1)
			t = iscsi_testunitready_sync(ic, (int)lun);
		else if (sscanf(line, "read %u %llu", &lun, &lba) == 2)
			t = iscsi_read16_sync(ic, (int)lun, lba, 512, 512, 0, 0, 0, 0, 0);
		else {
			printf("unknown command\n");
			fflush(stdout);
			continue;
		}
		if (!t)
			printf("failed: %s\n", iscsi_get_error(ic));
		else if (t->status == SCSI_STATUS_GOOD)
			printf("good\n");
		else if (t->status == SCSI_STATUS_CHECK_CONDITION)
			printf("sense %x/%02x/%02x\n", t->sense.key, t->sense.ascq >> 8, t->sense.ascq & 0xff);
		else
			printf("status 0x%02x\n", t->status);
		fflush(stdout);
		if (t)
			scsi_free_scsi_task(t);
	}
	return 0;
}

static int discover(const char *url_s)
{
	struct iscsi_context *ic = iscsi_create_context(initiator);
	struct iscsi_url *url = iscsi_parse_portal_url(ic, url_s);
	if (!url) {
		fprintf(stderr, "bad portal URL %s: %s\n", url_s, iscsi_get_error(ic));
		return 2;
	}
	iscsi_set_session_type(ic, ISCSI_SESSION_DISCOVERY);
	if (url->user[0])
		iscsi_set_initiator_username_pwd(ic, url->user, url->passwd);
	if (iscsi_connect_sync(ic, url->portal) || iscsi_login_sync(ic)) {
		fprintf(stderr, "discovery login at %s failed: %s\n", url->portal, iscsi_get_error(ic));
		iscsi_destroy_url(url);
		iscsi_destroy_context(ic);
		return 3;
	}
	struct iscsi_discovery_address *da = iscsi_discovery_sync(ic), *d;
	int rc = da ? 0 : 4;
	for (d = da; d; d = d->next)
		for (struct iscsi_target_portal *p = d->portals; p; p = p->next)
			printf("%s %s\n", d->target_name, p->portal);
	if (da)
		iscsi_free_discovery_data(ic, da);
	iscsi_logout_sync(ic);
	iscsi_destroy_url(url);
	iscsi_destroy_context(ic);
	return rc;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "i:T:P:p")) != -1) {
		switch (opt) {
		case 'i': initiator = optarg; break;
		case 'T': tuser = optarg; break;
		case 'P': tsecret = optarg; break;
		case 'p': progress = true; break;
		default: return usage();
		}
	}
	if (argc - optind < 2 || (tuser && !tsecret))
		return usage();
	const char *cmd = argv[optind], *url = argv[optind + 1];
	if (!strcmp(cmd, "discover"))
		return discover(url);
	int lun, rc = 0;
	bool full = strcmp(cmd, "login") && strcmp(cmd, "luns") && strcmp(cmd, "session");
	struct iscsi_context *ic = connect_url(url, &lun, full);
	if (!ic)
		return 3;
	if (!strcmp(cmd, "login")) {
		rc = 0;
	} else if (!strcmp(cmd, "luns")) {
		rc = print_luns(ic, "", "\n");
	} else if (!strcmp(cmd, "session")) {
		rc = session(ic);
	} else if (!strcmp(cmd, "capacity")) {
		uint64_t blocks;
		uint32_t bs;
		rc = capacity(ic, lun, &blocks, &bs);
		if (!rc)
			printf("%" PRIu64 " %u\n", blocks, bs);
	} else if ((!strcmp(cmd, "write") || !strcmp(cmd, "verify")) && argc - optind == 5) {
		rc = rw(ic, lun, cmd[0] == 'w', strtoull(argv[optind + 2], NULL, 0), strtoull(argv[optind + 3], NULL, 0),
			strtoull(argv[optind + 4], NULL, 0));
	} else {
		rc = usage();
	}
	iscsi_logout_sync(ic);
	iscsi_destroy_context(ic);
	return rc;
}
