/* Fuzz target: whole iSCSI connections (login, negotiation, CHAP, full feature phase
 * commands, R2T/Data-Out, TMF, text, logout) through rod_iscsi_serve_fd, over the real
 * SCSI core and a store in a temp dir (created once per process).
 *
 * Input: [1 byte flags] then the bytes an initiator sends. Flags bit 0: put a valid
 * one-PDU login (operational stage straight to full feature phase, no digests, CmdSN
 * 0) in front, so the fuzzer spends its time on full feature phase PDUs.
 * The input goes in as a memfd (read blocking to its end, as rodd --stdin reads a
 * pipe), the target's answers go to /dev/null (a dup: serve_fd closes what it gets).
 *
 * Checked: serve_fd returns, and afterwards the server holds no session and no
 * connection (a malformed PDU drops the connection and everything it owned); every
 * 64 inputs a clean login + INQUIRY still gets a successful login response and GOOD
 * (nothing an earlier input did broke the server's global state). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rod/iscsi.h"
#include "rod/util.h"

#include "fuzz_env.h"

static struct rod_iscsi_server *srv;
static int null_fd = -1;

/* Initiators: "...:chap" must answer CHAP (user fuzz / secret fuzz-secret-12),
 * "...:mutual" also asks for mutual CHAP, "...:nohost" is unknown, others plain. */
static int auth_lookup(void *arg, const char *name, struct rod_iscsi_auth *out)
{
	memset(out, 0, sizeof(*out));
	if (strstr(name, ":nohost"))
		return -ENOENT;
	out->host_id = FUZZ_HOST_ID;
	if (strstr(name, ":chap") || strstr(name, ":mutual")) {
		strcpy(out->chap_user, "fuzz");
		strcpy(out->chap_secret, "fuzz-secret-12");
	}
	if (strstr(name, ":mutual")) {
		strcpy(out->mutual_user, "array");
		strcpy(out->mutual_secret, "array-secret-99");
	}
	return 0;
}

static void srv_free(void)
{
	rod_iscsi_server_stop(srv);
	rod_iscsi_server_free(srv);
	srv = NULL;
	close(null_fd);
}

static void srv_init(void)
{
	struct fuzz_env *e = fuzz_env_get(1);
	static const char *const listen[] = { "127.0.0.1:0", NULL };
	struct rod_iscsi_server_opts o = {
		.target_name = FUZZ_TARGET_IQN, .target_alias = "fuzz", .listen = listen,
		.threads = 1, .scsi = e->scsi, .auth_lookup = auth_lookup,
	};
	strcpy(o.discovery_chap_user, "");
	if (rod_iscsi_server_new(&o, &srv))
		abort();
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null_fd < 0)
		abort();
	/* registered after fuzz_env_get's, so it runs first: the server goes before the
	 * SCSI target and the store it uses */
	atexit(srv_free);
}

/* A login PDU: InitiatorName ... straight to full feature phase. */
static size_t canned_login(uint8_t *p)
{
	static const char text[] =
		"InitiatorName=iqn.2026-11.fuzz:ini\0TargetName=" FUZZ_TARGET_IQN "\0"
		"SessionType=Normal\0HeaderDigest=None\0DataDigest=None\0"
		"MaxRecvDataSegmentLength=65536\0InitialR2T=No\0ImmediateData=Yes\0"
		"FirstBurstLength=65536\0MaxBurstLength=262144\0";
	uint32_t n = sizeof(text) - 1;
	memset(p, 0, 48);
	p[0] = 0x43;
	p[1] = 0x80 | (1 << 2) | 3;
	rod_put_be24(p + 5, n);
	memcpy(p + 8, (uint8_t[]){ 0x80, 0x12, 0x34, 0x56, 0x78, 0x9a }, 6);
	rod_put_be32(p + 16, 1);
	memcpy(p + 48, text, n);
	uint32_t padded = (n + 3) & ~3u;
	memset(p + 48 + n, 0, padded - n);
	return 48 + padded;
}

/* A clean session on a fresh connection: login, INQUIRY, logout. Aborts unless the
 * login succeeds and INQUIRY is GOOD. */
static void health_check(void)
{
	uint8_t in[512];
	size_t n = canned_login(in);
	uint8_t *p = in + n;
	memset(p, 0, 48 * 2);
	p[0] = 0x01;                      /* SCSI Command, F + R, simple */
	p[1] = 0x80 | 0x40 | 1;
	rod_put_be32(p + 16, 7);
	rod_put_be32(p + 20, 96);
	rod_put_be32(p + 24, 0);
	p[32] = 0x12;                     /* INQUIRY, 96 bytes */
	rod_put_be16(p + 35, 96);
	p += 48;
	p[0] = 0x46;                      /* Logout, close the session */
	p[1] = 0x80;
	rod_put_be32(p + 16, 8);
	rod_put_be32(p + 24, 1);
	n += 96;
	int ifd = memfd_create("fuzz-health-in", MFD_CLOEXEC);
	int ofd = memfd_create("fuzz-health-out", MFD_CLOEXEC);
	int ofd2 = ofd >= 0 ? dup(ofd) : -1;   /* serve_fd closes the fds it is given */
	if (ifd < 0 || ofd2 < 0 || write(ifd, in, n) != (ssize_t)n)
		abort();
	lseek(ifd, 0, SEEK_SET);
	if (rod_iscsi_serve_fd(srv, ifd, ofd) != 0)
		abort();
	uint8_t out[4096];
	ssize_t got = pread(ofd2, out, sizeof(out), 0);
	close(ofd2);
	/* login response: opcode 0x23, status class 0; then the INQUIRY answer (Data-In
	 * with status, or a SCSI Response after the power-on unit attention) */
	if (got < 96 || out[0] != 0x23 || out[36] != 0) {
		fprintf(stderr, "fuzz_iscsi_session: a clean login fails after earlier inputs\n");
		abort();
	}
	uint32_t off = 48 + ((rod_get_be24(out + 5) + 3) & ~3u);
	if (off + 48 > (uint32_t)got || ((out[off] & 0x3f) != 0x25 && (out[off] & 0x3f) != 0x21)) {
		fprintf(stderr, "fuzz_iscsi_session: no answer to INQUIRY after a clean login\n");
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned count;
	if (!srv)
		srv_init();
	if (count++ % 64 == 0)
		health_check();
	if (size < 1)
		return 0;
	int fd = memfd_create("fuzz-iscsi", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (data[0] & 1) {
		uint8_t login[512];
		size_t n = canned_login(login);
		if (write(fd, login, n) != (ssize_t)n)
			abort();
	}
	if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	lseek(fd, 0, SEEK_SET);
	/* serve_fd owns (and closes) both fds */
	int ofd = dup(null_fd);
	if (ofd < 0)
		abort();
	int rc = rod_iscsi_serve_fd(srv, fd, ofd);
	struct rod_iscsi_stats st;
	rod_iscsi_server_stats(srv, &st);
	if (rc != 0 || st.sessions != 0 || st.connections != 0) {
		fprintf(stderr, "fuzz_iscsi_session: serve_fd %d, %llu sessions and %llu connections left\n",
			rc, (unsigned long long)st.sessions, (unsigned long long)st.connections);
		abort();
	}
	return 0;
}
