/* libiscsi plumbing for rodcp (see lun.h). */
#include "lun.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "rod/util.h"

uint64_t rc_commands;

static const char *initiator_name(void)
{
	static char name[256];
	const char *env = getenv("RODCP_INITIATOR");
	char host[64] = "localhost";

	if (env && *env)
		return env;
	if (!name[0]) {
		gethostname(host, sizeof(host) - 1);
		snprintf(name, sizeof(name), "iqn.2026-11.io.rodstore:rodcp.%s", host);
	}
	return name;
}

int rc_lun_open(struct rc_lun *l, const char *url)
{
	struct iscsi_url *u;
	uint8_t cdb[16] = { 0x9E, 0x10 }, rc16[32];
	struct rc_sense s;
	size_t got = 0;
	char eb[256];

	memset(l, 0, sizeof(*l));
	snprintf(l->url, sizeof(l->url), "%s", url);
	l->ctx = iscsi_create_context(initiator_name());
	if (!l->ctx) {
		fprintf(stderr, "rodcp: out of memory creating an iSCSI context\n");
		return -1;
	}
	u = iscsi_parse_full_url(l->ctx, url);
	if (!u) {
		fprintf(stderr, "rodcp: \"%s\" is not an iSCSI URL (%s); expected "
			"iscsi://HOST[:PORT]/TARGET-IQN/LUN\n", url, iscsi_get_error(l->ctx));
		goto fail;
	}
	iscsi_set_targetname(l->ctx, u->target);
	iscsi_set_session_type(l->ctx, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(l->ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	if (u->user[0])
		iscsi_set_initiator_username_pwd(l->ctx, u->user, u->passwd);
	l->lun = u->lun;
	if (iscsi_full_connect_sync(l->ctx, u->portal, u->lun) != 0) {
		fprintf(stderr, "rodcp: cannot log in to %s: %s\nrodcp: check that a target listens "
			"on %s, that it is named %s, and that initiator %s may log in (rodctl host "
			"list on a rodstore array)\n", url, iscsi_get_error(l->ctx), u->portal,
			u->target, initiator_name());
		iscsi_destroy_url(u);
		goto fail;
	}
	iscsi_destroy_url(u);
	rod_put_be32(cdb + 10, sizeof(rc16));
	/* The first command after login may meet the power-on unit attention. */
	for (int tries = 0; tries < 4; tries++) {
		if (rc_cmd(l, cdb, 16, 1, NULL, 0, rc16, sizeof(rc16), &got, &s) == 0)
			break;
		if (s.key != 0x06 || tries == 3) {
			fprintf(stderr, "rodcp: READ CAPACITY(16) on %s failed: %s\n", url,
				rc_sense_str(&s, eb, sizeof(eb)));
			goto fail;
		}
	}
	if (got < 12) {
		fprintf(stderr, "rodcp: READ CAPACITY(16) on %s returned %zu bytes\n", url, got);
		goto fail;
	}
	l->nblocks = rod_get_be64(rc16) + 1;
	l->bs = rod_get_be32(rc16 + 8);
	if (l->bs < 512 || l->bs > 65536 || (l->bs & (l->bs - 1))) {
		fprintf(stderr, "rodcp: %s reports a block size of %u bytes, which rodcp does not "
			"handle\n", url, l->bs);
		goto fail;
	}
	return 0;
fail:
	iscsi_destroy_context(l->ctx);
	l->ctx = NULL;
	return -1;
}

void rc_lun_close(struct rc_lun *l)
{
	if (!l->ctx)
		return;
	iscsi_logout_sync(l->ctx);
	iscsi_destroy_context(l->ctx);
	l->ctx = NULL;
}

static void sense_from_task(struct scsi_task *task, struct rc_sense *s)
{
	memset(s, 0, sizeof(*s));
	s->status = (uint8_t)task->status;
	if (task->status == SCSI_STATUS_CHECK_CONDITION) {
		s->key = (uint8_t)task->sense.key;
		s->asc = (uint8_t)(task->sense.ascq >> 8);
		s->ascq = (uint8_t)task->sense.ascq;
	}
}

int rc_cmd(struct rc_lun *l, const uint8_t *cdb, int cdb_len, int dir, const void *out,
	   size_t out_len, void *in, size_t in_len, size_t *got, struct rc_sense *s)
{
	struct scsi_task *task;
	struct iscsi_data d = { .size = out_len, .data = (unsigned char *)out };
	int rc = -1;

	task = scsi_create_task(cdb_len, (unsigned char *)cdb,
				dir == 1 ? SCSI_XFER_READ : dir == 2 ? SCSI_XFER_WRITE : SCSI_XFER_NONE,
				(int)(dir == 1 ? in_len : dir == 2 ? out_len : 0));
	if (got)
		*got = 0;
	memset(s, 0, sizeof(*s));
	if (!task) {
		s->status = 0xff;
		snprintf(s->transport_err, sizeof(s->transport_err), "out of memory");
		return -1;
	}
	rc_commands++;
	if (!iscsi_scsi_command_sync(l->ctx, l->lun, task, dir == 2 ? &d : NULL)) {
		s->status = 0xff;
		snprintf(s->transport_err, sizeof(s->transport_err), "%s", iscsi_get_error(l->ctx));
		scsi_free_scsi_task(task);
		return -1;
	}
	sense_from_task(task, s);
	if (task->status == SCSI_STATUS_GOOD) {
		rc = 0;
		if (dir == 1 && in) {
			size_t n = task->datain.size > 0 ? (size_t)task->datain.size : 0;

			n = n < in_len ? n : in_len;
			memcpy(in, task->datain.data, n);
			if (got)
				*got = n;
		}
	}
	scsi_free_scsi_task(task);
	return rc;
}

/* A few ASC/ASCQ names libiscsi lacks, for the messages users read most. */
static const struct { uint8_t asc, ascq; const char *text; } asc_names[] = {
	{ 0x00, 0x16, "OPERATION IN PROGRESS" },
	{ 0x08, 0x04, "UNREACHABLE COPY TARGET" },
	{ 0x0D, 0x02, "COPY TARGET DEVICE NOT REACHABLE" },
	{ 0x0D, 0x04, "COPY TARGET DEVICE DATA UNDERRUN" },
	{ 0x20, 0x00, "INVALID COMMAND OPERATION CODE (the target lacks this command)" },
	{ 0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE" },
	{ 0x23, 0x00, "INVALID TOKEN OPERATION, CAUSE NOT REPORTABLE" },
	{ 0x23, 0x01, "INVALID TOKEN OPERATION, UNSUPPORTED TOKEN TYPE" },
	{ 0x23, 0x02, "INVALID TOKEN OPERATION, REMOTE TOKEN USAGE NOT SUPPORTED (token of another array)" },
	{ 0x23, 0x04, "INVALID TOKEN OPERATION, TOKEN UNKNOWN" },
	{ 0x23, 0x05, "INVALID TOKEN OPERATION, TOKEN CORRUPT" },
	{ 0x23, 0x06, "INVALID TOKEN OPERATION, TOKEN REVOKED" },
	{ 0x23, 0x07, "INVALID TOKEN OPERATION, TOKEN EXPIRED" },
	{ 0x23, 0x08, "INVALID TOKEN OPERATION, TOKEN CANCELLED" },
	{ 0x23, 0x09, "INVALID TOKEN OPERATION, TOKEN DELETED" },
	{ 0x23, 0x0A, "INVALID TOKEN OPERATION, INVALID TOKEN LENGTH" },
	{ 0x26, 0x08, "TOO MANY SEGMENT DESCRIPTORS" },
	{ 0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT (array full)" },
	{ 0x55, 0x0D, "INSUFFICIENT RESOURCES TO CREATE ROD TOKEN" },
};

const char *rc_sense_str(const struct rc_sense *s, char *buf, size_t len)
{
	const char *name = NULL;

	if (s->status == 0xff) {
		snprintf(buf, len, "transport error: %s", s->transport_err);
		return buf;
	}
	if (s->status != SCSI_STATUS_CHECK_CONDITION) {
		snprintf(buf, len, "SCSI status 0x%02x", s->status);
		return buf;
	}
	for (size_t i = 0; i < ROD_ARRAY_SIZE(asc_names); i++)
		if (asc_names[i].asc == s->asc && asc_names[i].ascq == s->ascq)
			name = asc_names[i].text;
	if (!name)
		name = scsi_sense_ascq_str(s->asc << 8 | s->ascq);
	snprintf(buf, len, "%s: %s (%02X/%02X/%02X)", scsi_sense_key_str(s->key), name, s->key,
		 s->asc, s->ascq);
	return buf;
}

void rc_lun_probe(struct rc_lun *l)
{
	uint8_t cdb[16], *b = malloc(4096);
	struct rc_sense s;
	size_t got;

	if (!b)
		return;
	/* VPD 0x83: prefer NAA, then EUI-64, T10, vendor (as sg_xcopy/qemu do). */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x12;
	cdb[1] = 0x01;
	cdb[2] = 0x83;
	rod_put_be16(cdb + 3, 4096 - 1);
	if (rc_cmd(l, cdb, 6, 1, NULL, 0, b, 4095, &got, &s) == 0 && got >= 4) {
		size_t end = ROD_MIN(got, 4u + rod_get_be16(b + 2)), pos = 4;
		int best = -1;

		while (pos + 4 <= end) {
			uint8_t type = b[pos + 1] & 0x0f, assoc = (b[pos + 1] >> 4) & 3;
			uint8_t dl = b[pos + 3];

			if (pos + 4 + dl > end)
				break;
			if (assoc == 0 && type <= 3 && dl <= 20 && (int)type > best) {
				best = type;
				memset(l->desig, 0, sizeof(l->desig));
				memcpy(l->desig, b + pos, 4u + dl);
				l->desig[0] &= 0x0f;  /* protocol identifier is not part of a CSCD */
				l->desig_len = (uint8_t)(4 + dl);
			}
			pos += 4u + dl;
		}
	}
	/* VPD 0x8F: the first descriptor must be the block device ROD token limits. */
	cdb[2] = 0x8F;
	if (rc_cmd(l, cdb, 6, 1, NULL, 0, b, 4095, &got, &s) == 0 && got >= 8 + 32 &&
	    rod_get_be16(b + 4) == 0x0000 && rod_get_be16(b + 6) == 0x20) {
		l->have_odx = true;
		l->odx_max_ranges = rod_get_be16(b + 4 + 10);
		l->odx_default_timeout = rod_get_be32(b + 4 + 16);
		l->odx_max_token_blocks = rod_get_be64(b + 4 + 20);
		l->odx_optimal_blocks = rod_get_be64(b + 4 + 28);
		if (!l->odx_max_ranges)
			l->odx_max_ranges = 1;
	}
	/* VPD 0xB0 */
	cdb[2] = 0xB0;
	if (rc_cmd(l, cdb, 6, 1, NULL, 0, b, 4095, &got, &s) == 0 && got >= 44) {
		l->max_xfer_blocks = rod_get_be32(b + 8);
		l->max_ws_blocks = rod_get_be64(b + 36);
	}
	/* RECEIVE COPY RESULTS, OPERATING PARAMETERS */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x84;
	cdb[1] = 0x03;
	rod_put_be32(cdb + 10, 256);
	if (rc_cmd(l, cdb, 16, 1, NULL, 0, b, 256, &got, &s) == 0 && got >= 44) {
		l->have_xcopy = true;
		l->xcopy_snlid = b[4] & 1;
		l->xcopy_max_segs = rod_get_be16(b + 10);
		l->xcopy_max_seg_bytes = rod_get_be32(b + 16);
	}
	free(b);
}

/* ---- pipelined commands --------------------------------------------------------------- */

struct async_req {
	rc_async_cb cb;
	void *arg;
	struct iscsi_data d;
};

static void async_done(struct iscsi_context *ctx, int status, void *command_data, void *priv)
{
	struct async_req *r = priv;
	struct scsi_task *task = command_data;
	struct rc_sense s;

	if (!task) {
		memset(&s, 0, sizeof(s));
		s.status = 0xff;
		snprintf(s.transport_err, sizeof(s.transport_err), "%s", iscsi_get_error(ctx));
		r->cb(r->arg, 0, &s, NULL, 0);
	} else {
		sense_from_task(task, &s);
		if (status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR) {
			s.status = 0xff;
			snprintf(s.transport_err, sizeof(s.transport_err), "%s", iscsi_get_error(ctx));
		}
		r->cb(r->arg, task->status == SCSI_STATUS_GOOD && status == SCSI_STATUS_GOOD, &s,
		      task->datain.data, task->datain.size > 0 ? (size_t)task->datain.size : 0);
		scsi_free_scsi_task(task);
	}
	free(r);
}

int rc_async_cmd(struct rc_lun *l, const uint8_t *cdb, int cdb_len, int dir, const void *out,
		 size_t out_len, size_t in_len, rc_async_cb cb, void *arg)
{
	struct async_req *r = calloc(1, sizeof(*r));
	struct scsi_task *task;

	if (!r)
		return -1;
	task = scsi_create_task(cdb_len, (unsigned char *)cdb,
				dir == 1 ? SCSI_XFER_READ : dir == 2 ? SCSI_XFER_WRITE : SCSI_XFER_NONE,
				(int)(dir == 1 ? in_len : dir == 2 ? out_len : 0));
	if (!task) {
		free(r);
		return -1;
	}
	r->cb = cb;
	r->arg = arg;
	r->d.size = out_len;
	r->d.data = (unsigned char *)out;
	rc_commands++;
	if (iscsi_scsi_command_async(l->ctx, l->lun, task, async_done, dir == 2 ? &r->d : NULL,
				     r) != 0) {
		scsi_free_scsi_task(task);
		free(r);
		return -1;
	}
	return 0;
}

int rc_async_wait(struct rc_lun *a, struct rc_lun *b, const int *pending)
{
	if (b == a || (b && b->ctx == a->ctx))
		b = NULL;
	while (*pending > 0) {
		struct pollfd p[2];
		int n = 1;

		p[0].fd = iscsi_get_fd(a->ctx);
		p[0].events = (short)iscsi_which_events(a->ctx);
		if (b) {
			p[1].fd = iscsi_get_fd(b->ctx);
			p[1].events = (short)iscsi_which_events(b->ctx);
			n = 2;
		}
		if (poll(p, n, 1000) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (iscsi_service(a->ctx, p[0].revents) < 0) {
			fprintf(stderr, "rodcp: %s: %s\n", a->url, iscsi_get_error(a->ctx));
			return -1;
		}
		if (b && iscsi_service(b->ctx, p[1].revents) < 0) {
			fprintf(stderr, "rodcp: %s: %s\n", b->url, iscsi_get_error(b->ctx));
			return -1;
		}
	}
	return 0;
}
