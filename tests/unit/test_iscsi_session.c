/* The iSCSI target end to end, in process: rod_iscsi_server on 127.0.0.1 (port 0) over
 * the real SCSI core and store in a temp dir, driven by libiscsi (login, CHAP, mutual
 * CHAP, discovery, data written and read back, R2T, TMF, logout, reinstatement) and by
 * a small raw client for what libiscsi cannot do (data digests, malformed PDUs, NOP). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "rod/iscsi.h"
#include "rod/scsi.h"
#include "rod/store.h"
#include "rod/util.h"

#define TARGET "iqn.2026-11.io.rodstore:test"
#define INI_PLAIN "iqn.2026-11.test:plain"
#define INI_CHAP "iqn.2026-11.test:chap"
#define INI_MUTUAL "iqn.2026-11.test:mutual"
#define VOL_SIZE (64ull << 20)

static struct {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *scsi;
	struct rod_iscsi_server *srv;
	char portal[64];
	uint16_t port;
} E;

static int auth_lookup(void *arg, const char *name, struct rod_iscsi_auth *out)
{
	memset(out, 0, sizeof(*out));
	if (strcmp(name, INI_PLAIN) == 0 || strncmp(name, "iqn.2026-11.test:plain", 22) == 0) {
		out->host_id = 1;
		return 0;
	}
	if (strcmp(name, INI_CHAP) == 0) {
		out->host_id = 1;
		strcpy(out->chap_user, "alice");
		strcpy(out->chap_secret, "alice-secret-12");
		return 0;
	}
	if (strcmp(name, INI_MUTUAL) == 0) {
		out->host_id = 1;
		strcpy(out->chap_user, "bob");
		strcpy(out->chap_secret, "bob-secret-1234");
		strcpy(out->mutual_user, "array");
		strcpy(out->mutual_secret, "array-secret-99");
		return 0;
	}
	return -ENOENT;
}

static int setup(void **state)
{
	snprintf(E.dir, sizeof(E.dir), "/tmp/rod-iscsi-test-XXXXXX");
	assert_non_null(mkdtemp(E.dir));
	struct rod_store_opts so = { .dir = E.dir, .create = true, .array_name = "test",
				     .no_gc_thread = true };
	assert_int_equal(rod_store_open(&so, &E.store), 0);
	struct rod_vol_info vi;
	assert_int_equal(rod_vol_create(E.store, "v1", VOL_SIZE, 512, &vi), 0);
	struct rod_scsi_target_opts to = { .store = E.store, .target_name = TARGET };
	assert_int_equal(rod_scsi_target_new(&to, &E.scsi), 0);
	assert_int_equal(rod_scsi_map_add(E.scsi, 1, 0, vi.id), 0);
	static const char *const listen[] = { "127.0.0.1:0", NULL };
	struct rod_iscsi_server_opts io = {
		.target_name = TARGET, .target_alias = "test", .listen = listen, .threads = 2,
		.scsi = E.scsi, .auth_lookup = auth_lookup,
	};
	assert_int_equal(rod_iscsi_server_new(&io, &E.srv), 0);
	char p[4][64];
	assert_int_equal(rod_iscsi_server_portals(E.srv, p, 4), 1);
	snprintf(E.portal, sizeof(E.portal), "%s", p[0]);
	E.port = (uint16_t)atoi(strrchr(E.portal, ':') + 1);
	assert_true(E.port > 0);
	assert_int_equal(rod_iscsi_server_start(E.srv), 0);
	return 0;
}

static int teardown(void **state)
{
	rod_iscsi_server_stop(E.srv);
	struct rod_iscsi_stats st;
	rod_iscsi_server_stats(E.srv, &st);
	assert_int_equal(st.sessions, 0);
	assert_int_equal(st.connections, 0);
	rod_iscsi_server_free(E.srv);
	rod_scsi_target_free(E.scsi);
	rod_store_close(E.store);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", E.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- libiscsi helpers ------------------------------------------------------------------ */

static struct iscsi_context *ctx_new(const char *initiator)
{
	struct iscsi_context *c = iscsi_create_context(initiator);
	assert_non_null(c);
	iscsi_set_targetname(c, TARGET);
	iscsi_set_session_type(c, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_timeout(c, 10);
	return c;
}

static struct iscsi_context *login(const char *initiator)
{
	struct iscsi_context *c = ctx_new(initiator);
	if (iscsi_full_connect_sync(c, E.portal, 0) != 0) {
		fprintf(stderr, "login: %s\n", iscsi_get_error(c));
		iscsi_destroy_context(c);
		return NULL;
	}
	return c;
}

static void fill(uint8_t *b, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)((i * 7 + seed * 13 + (i >> 9)) ^ (seed >> 3));
}

static void write_read_check(struct iscsi_context *c, uint64_t lba, uint32_t len, uint32_t seed)
{
	uint8_t *w = malloc(len);
	assert_non_null(w);
	fill(w, len, seed);
	struct scsi_task *t = iscsi_write16_sync(c, 0, lba, w, len, 512, 0, 0, 0, 0, 0);
	assert_non_null(t);
	if (t->status != SCSI_STATUS_GOOD)
		fprintf(stderr, "write: %s\n", iscsi_get_error(c));
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	t = iscsi_read16_sync(c, 0, lba, len, 512, 0, 0, 0, 0, 0);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	assert_int_equal(t->datain.size, (int)len);
	assert_memory_equal(t->datain.data, w, len);
	scsi_free_scsi_task(t);
	free(w);
}

/* ---- libiscsi tests -------------------------------------------------------------------- */

static void test_login_inquiry_rw(void **state)
{
	struct iscsi_context *c = login(INI_PLAIN);
	assert_non_null(c);
	struct scsi_task *t = iscsi_inquiry_sync(c, 0, 0, 0, 64);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	write_read_check(c, 0, 4096, 1);
	write_read_check(c, 1001, 512, 2);          /* unaligned single sector */
	write_read_check(c, 2048, 256 << 10, 3);    /* immediate + unsolicited + R2T */
	/* A LUN this host does not have. */
	t = iscsi_testunitready_sync(c, 5);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
	scsi_free_scsi_task(t);
	assert_int_equal(iscsi_logout_sync(c), 0);
	iscsi_destroy_context(c);
}

static void test_r2t_large_and_header_digest(void **state)
{
	struct iscsi_context *c = ctx_new(INI_PLAIN);
	/* Everything by R2T: no immediate data, InitialR2T=Yes; and header digests. */
	iscsi_set_immediate_data(c, ISCSI_IMMEDIATE_DATA_NO);
	iscsi_set_initial_r2t(c, ISCSI_INITIAL_R2T_YES);
	iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_CRC32C);
	assert_int_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	write_read_check(c, 8192, 4 << 20, 4);     /* several R2Ts and Data-In PDUs */
	write_read_check(c, 77, 8192, 5);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
}

static void test_chap(void **state)
{
	struct iscsi_context *c = ctx_new(INI_CHAP);
	iscsi_set_initiator_username_pwd(c, "alice", "alice-secret-12");
	assert_int_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	write_read_check(c, 300, 4096, 6);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);

	/* wrong secret, wrong user, no CHAP at all: refused */
	c = ctx_new(INI_CHAP);
	iscsi_set_initiator_username_pwd(c, "alice", "wrong-secret-00");
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	iscsi_destroy_context(c);
	c = ctx_new(INI_CHAP);
	iscsi_set_initiator_username_pwd(c, "mallory", "alice-secret-12");
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	iscsi_destroy_context(c);
	c = ctx_new(INI_CHAP);
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	iscsi_destroy_context(c);
}

static void test_mutual_chap(void **state)
{
	struct iscsi_context *c = ctx_new(INI_MUTUAL);
	iscsi_set_initiator_username_pwd(c, "bob", "bob-secret-1234");
	iscsi_set_target_username_pwd(c, "array", "array-secret-99");
	assert_int_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	write_read_check(c, 400, 4096, 7);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
	/* The initiator checks the target: a different target secret must fail. */
	c = ctx_new(INI_MUTUAL);
	iscsi_set_initiator_username_pwd(c, "bob", "bob-secret-1234");
	iscsi_set_target_username_pwd(c, "array", "not-the-secret1");
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	iscsi_destroy_context(c);
	/* Mutual CHAP asked of a host that has no mutual secret: refused. */
	c = ctx_new(INI_CHAP);
	iscsi_set_initiator_username_pwd(c, "alice", "alice-secret-12");
	iscsi_set_target_username_pwd(c, "array", "array-secret-99");
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	iscsi_destroy_context(c);
}

static void test_refused_logins(void **state)
{
	/* RFC 7143 11.13.5: an initiator with no host is not allowed access to an existing
	 * target, 02/02 (libiscsi prints class<<8|detail: 514); a target name that does
	 * not exist here is 02/03 (515). */
	struct iscsi_context *c = ctx_new("iqn.2026-11.test:stranger");
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	fprintf(stderr, "unknown initiator: %s\n", iscsi_get_error(c));
	assert_non_null(strstr(iscsi_get_error(c), "(514)"));
	iscsi_destroy_context(c);
	c = ctx_new(INI_PLAIN);
	iscsi_set_targetname(c, "iqn.2026-11.io.rodstore:other");
	assert_int_not_equal(iscsi_full_connect_sync(c, E.portal, 0), 0);
	fprintf(stderr, "unknown target: %s\n", iscsi_get_error(c));
	assert_non_null(strstr(iscsi_get_error(c), "(515)"));
	iscsi_destroy_context(c);
}

static void test_discovery(void **state)
{
	struct iscsi_context *c = iscsi_create_context(INI_PLAIN);
	assert_non_null(c);
	iscsi_set_session_type(c, ISCSI_SESSION_DISCOVERY);
	assert_int_equal(iscsi_connect_sync(c, E.portal), 0);
	assert_int_equal(iscsi_login_sync(c), 0);
	struct iscsi_discovery_address *da = iscsi_discovery_sync(c);
	assert_non_null(da);
	assert_string_equal(da->target_name, TARGET);
	assert_non_null(da->portals);
	char want[80];
	snprintf(want, sizeof(want), "%s,1", E.portal);
	assert_string_equal(da->portals->portal, want);
	assert_null(da->next);
	iscsi_free_discovery_data(c, da);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
}

/* SendTargets lists every bound portal: IPv6 in brackets, a wildcard listener as the
 * address the initiator reached. */
static void test_discovery_portals(void **state)
{
	static const char *const listen[] = { "[::1]:0", "0.0.0.0:0", NULL };
	struct rod_iscsi_server_opts io = {
		.target_name = TARGET, .listen = listen, .threads = 1, .scsi = E.scsi,
		.auth_lookup = auth_lookup,
	};
	struct rod_iscsi_server *s2;
	assert_int_equal(rod_iscsi_server_new(&io, &s2), 0);
	char p[4][64];
	assert_int_equal(rod_iscsi_server_portals(s2, p, 4), 2);
	assert_memory_equal(p[0], "[::1]:", 6);
	assert_memory_equal(p[1], "0.0.0.0:", 8);
	assert_int_equal(rod_iscsi_server_start(s2), 0);
	char via[64];
	snprintf(via, sizeof(via), "127.0.0.1:%s", strrchr(p[1], ':') + 1);
	struct iscsi_context *c = iscsi_create_context(INI_PLAIN);
	iscsi_set_session_type(c, ISCSI_SESSION_DISCOVERY);
	assert_int_equal(iscsi_connect_sync(c, via), 0);
	assert_int_equal(iscsi_login_sync(c), 0);
	struct iscsi_discovery_address *da = iscsi_discovery_sync(c);
	assert_non_null(da);
	assert_string_equal(da->target_name, TARGET);
	char want6[80], want4[80];
	snprintf(want6, sizeof(want6), "%s,1", p[0]);
	snprintf(want4, sizeof(want4), "%s,1", via);
	int seen6 = 0, seen4 = 0, n = 0;
	for (struct iscsi_target_portal *tp = da->portals; tp; tp = tp->next, n++) {
		seen6 += strcmp(tp->portal, want6) == 0;
		seen4 += strcmp(tp->portal, want4) == 0;
	}
	assert_int_equal(n, 2);
	assert_int_equal(seen6, 1);
	assert_int_equal(seen4, 1);
	iscsi_free_discovery_data(c, da);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
	/* a normal session over IPv6 */
	c = ctx_new(INI_PLAIN);
	assert_int_equal(iscsi_full_connect_sync(c, p[0], 0), 0);
	write_read_check(c, 1500, 4096, 31);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
	rod_iscsi_server_stop(s2);
	rod_iscsi_server_free(s2);
}

static void test_tmf(void **state)
{
	struct iscsi_context *c = login(INI_PLAIN);
	assert_non_null(c);
	/* LU reset answers "function complete" and raises a unit attention. */
	assert_int_equal(iscsi_task_mgmt_lun_reset_sync(c, 0), 0);
	struct scsi_task *t = iscsi_testunitready_sync(c, 0);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(t->sense.key, SCSI_SENSE_UNIT_ATTENTION);
	scsi_free_scsi_task(t);
	t = iscsi_testunitready_sync(c, 0);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	assert_int_equal(iscsi_task_mgmt_abort_task_set_sync(c, 0), 0);
	/* the session still works */
	write_read_check(c, 500, 4096, 8);
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
}

enum { MANY_N = 64, MANY_LEN = 8192 };
static struct scsi_task *many_done[MANY_N];
struct many_state {
	int pending, failed, ndone;
};

static void many_cb(struct iscsi_context *ic, int status, void *data, void *priv)
{
	struct many_state *s = priv;
	if (status != SCSI_STATUS_GOOD)
		s->failed++;
	s->pending--;
	many_done[s->ndone++] = data;
}

static void test_many_in_flight(void **state)
{
	/* 64 concurrent 8 KiB writes, then reads, each checked: exercises the CmdSN window
	 * and completions arriving from the store's threads. */
	struct iscsi_context *c = login(INI_PLAIN);
	assert_non_null(c);
	enum { N = MANY_N, LEN = MANY_LEN };
	static uint8_t bufs[N][LEN];
	struct scsi_task **done = many_done;
	struct many_state st = { 0, 0, 0 };
	for (int i = 0; i < N; i++)
		fill(bufs[i], LEN, 100 + (uint32_t)i);
	memset(many_done, 0, sizeof(many_done));
	for (int i = 0; i < N; i++) {
		assert_non_null(iscsi_write16_task(c, 0, 10000 + (uint64_t)i * 16, bufs[i], LEN, 512,
						   0, 0, 0, 0, 0, many_cb, &st));
		st.pending++;
	}
	while (st.pending > 0) {
		struct pollfd pfd = { iscsi_get_fd(c), (short)iscsi_which_events(c), 0 };
		assert_true(poll(&pfd, 1, 10000) > 0);
		assert_int_equal(iscsi_service(c, pfd.revents), 0);
	}
	assert_int_equal(st.failed, 0);
	for (int i = 0; i < N; i++)
		scsi_free_scsi_task(done[i]);
	for (int i = 0; i < N; i++) {
		struct scsi_task *t = iscsi_read16_sync(c, 0, 10000 + (uint64_t)i * 16, LEN, 512, 0,
							0, 0, 0, 0);
		assert_int_equal(t->status, SCSI_STATUS_GOOD);
		assert_memory_equal(t->datain.data, bufs[i], LEN);
		scsi_free_scsi_task(t);
	}
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
}

static void wait_sessions(uint64_t want)
{
	struct rod_iscsi_stats st;
	for (int i = 0; i < 200; i++) {
		rod_iscsi_server_stats(E.srv, &st);
		if (st.sessions == want)
			return;
		usleep(10000);
	}
	assert_int_equal(st.sessions, want);
}

static void test_reinstatement(void **state)
{
	/* Same initiator name and ISID: the second login replaces the first session. */
	struct iscsi_context *a = ctx_new(INI_PLAIN), *b = ctx_new(INI_PLAIN);
	iscsi_set_isid_random(a, 0x123456, 0x42);
	iscsi_set_isid_random(b, 0x123456, 0x42);
	iscsi_set_noautoreconnect(a, 1);
	assert_int_equal(iscsi_full_connect_sync(a, E.portal, 0), 0);
	wait_sessions(1);
	assert_int_equal(iscsi_full_connect_sync(b, E.portal, 0), 0);
	wait_sessions(1);
	struct scsi_task *t = iscsi_testunitready_sync(a, 0);
	assert_true(t == NULL || t->status != SCSI_STATUS_GOOD);
	if (t)
		scsi_free_scsi_task(t);
	write_read_check(b, 600, 4096, 9);
	/* A different ISID is a second session alongside. */
	struct iscsi_context *c2 = ctx_new(INI_PLAIN);
	iscsi_set_isid_random(c2, 0x654321, 0x42);
	assert_int_equal(iscsi_full_connect_sync(c2, E.portal, 0), 0);
	wait_sessions(2);
	iscsi_logout_sync(c2);
	iscsi_destroy_context(c2);
	iscsi_logout_sync(b);
	iscsi_destroy_context(b);
	iscsi_destroy_context(a);
	wait_sessions(0);
}

static void test_cold_reset_closes_every_session(void **state)
{
	struct iscsi_context *a = ctx_new(INI_PLAIN), *b = ctx_new(INI_PLAIN);
	iscsi_set_isid_random(a, 0x111111, 0x1);
	iscsi_set_isid_random(b, 0x222222, 0x2);
	iscsi_set_noautoreconnect(b, 1);
	assert_int_equal(iscsi_full_connect_sync(a, E.portal, 0), 0);
	assert_int_equal(iscsi_full_connect_sync(b, E.portal, 0), 0);
	wait_sessions(2);
	/* RFC 7143 11.5.1: answered, then every connection to every initiator closes */
	assert_int_equal(iscsi_task_mgmt_target_cold_reset_sync(a), 0);
	wait_sessions(0);
	struct scsi_task *t = iscsi_testunitready_sync(b, 0);
	assert_true(t == NULL || t->status != SCSI_STATUS_GOOD);
	if (t)
		scsi_free_scsi_task(t);
	iscsi_destroy_context(a);
	iscsi_destroy_context(b);
}

/* ---- raw client ---------------------------------------------------------------------------- */

struct raw {
	int fd;
	bool hd, dd;
	uint32_t cmd_sn, exp_stat_sn;
};

static int raw_connect(struct raw *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(E.port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	return connect(r->fd, (struct sockaddr *)&a, sizeof(a));
}

static void raw_send(struct raw *r, const uint8_t *bhs, const void *data, uint32_t len,
		     bool corrupt_dd)
{
	uint8_t buf[48 + 4 + 65536 + 8];
	size_t n = 0;
	memcpy(buf, bhs, 48);
	rod_put_be24(buf + 5, len);
	n = 48;
	if (r->hd) {
		uint32_t crc = rod_crc32c(0, buf, 48);
		memcpy(buf + n, (uint8_t[]){ crc, crc >> 8, crc >> 16, crc >> 24 }, 4);
		n += 4;
	}
	if (len) {
		memcpy(buf + n, data, len);
		uint32_t pad = (4 - (len & 3)) & 3;
		memset(buf + n + len, 0, pad);
		uint32_t crc = rod_crc32c(0, buf + n, len + pad);
		n += len + pad;
		if (r->dd) {
			if (corrupt_dd)
				crc ^= 1;
			memcpy(buf + n, (uint8_t[]){ crc, crc >> 8, crc >> 16, crc >> 24 }, 4);
			n += 4;
		}
	}
	assert_int_equal(write(r->fd, buf, n), (ssize_t)n);
}

static int read_full(int fd, void *b, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 5000) <= 0)
			return -ETIMEDOUT;
		ssize_t r = read(fd, (char *)b + got, n - got);
		if (r <= 0)
			return -EPIPE;
		got += (size_t)r;
	}
	return 0;
}

/* Receive one PDU, checking digests. Returns its data length or -errno. */
static int raw_recv(struct raw *r, uint8_t *bhs, uint8_t *data, uint32_t cap)
{
	int e = read_full(r->fd, bhs, 48);
	if (e)
		return e;
	if (r->hd) {
		uint8_t d[4];
		if (read_full(r->fd, d, 4))
			return -EPIPE;
		uint32_t crc = rod_crc32c(0, bhs, 48);
		assert_memory_equal(d, ((uint8_t[]){ crc, crc >> 8, crc >> 16, crc >> 24 }), 4);
	}
	uint32_t len = rod_get_be24(bhs + 5);
	uint32_t pad = (4 - (len & 3)) & 3;
	assert_true(len + pad <= cap);
	if (len) {
		if (read_full(r->fd, data, len + pad))
			return -EPIPE;
		if (r->dd) {
			uint8_t d[4];
			if (read_full(r->fd, d, 4))
				return -EPIPE;
			uint32_t crc = rod_crc32c(0, data, len + pad);
			assert_memory_equal(d, ((uint8_t[]){ crc, crc >> 8, crc >> 16, crc >> 24 }), 4);
		}
	}
	if (bhs[0] != 0x25 || (bhs[1] & 1))
		r->exp_stat_sn = rod_get_be32(bhs + 24) + 1;
	return (int)len;
}

static const char *find_key(const uint8_t *text, int len, const char *key)
{
	size_t kl = strlen(key);
	for (int i = 0; i < len;) {
		const char *kv = (const char *)text + i;
		if (strncmp(kv, key, kl) == 0 && kv[kl] == '=')
			return kv + kl + 1;
		i += (int)strlen(kv) + 1;
	}
	return NULL;
}

static int login_text(char *text, size_t cap, const char *digests)
{
	return snprintf(text, cap,
			"InitiatorName=" INI_PLAIN "-raw%c" "TargetName=" TARGET "%c"
			"SessionType=Normal%c" "HeaderDigest=%s%c" "DataDigest=%s%c"
			"MaxRecvDataSegmentLength=65536%c",
			0, 0, 0, digests, 0, digests, 0, 0);
}

static void login_bhs(uint8_t *bhs)
{
	memset(bhs, 0, 48);
	bhs[0] = 0x43;
	bhs[1] = 0x80 | (1 << 2) | 3;   /* T, CSG operational, NSG full feature */
	memcpy(bhs + 8, (uint8_t[]){ 0x80, 1, 2, 3, 4, 5 }, 6);
	rod_put_be32(bhs + 16, 1);
}

/* One-PDU login straight to full feature phase (operational stage only). */
static void raw_login_fd(struct raw *r, int fd, const char *digests);
static void raw_login(struct raw *r, const char *digests)
{
	assert_int_equal(raw_connect(r), 0);
	raw_login_fd(r, r->fd, digests);
}

static void raw_login_fd(struct raw *r, int fd, const char *digests)
{
	r->fd = fd;
	r->hd = r->dd = false;
	char text[1024];
	int n = login_text(text, sizeof(text), digests);
	uint8_t bhs[48];
	login_bhs(bhs);
	raw_send(r, bhs, text, (uint32_t)n, false);
	uint8_t rb[48], data[8192];
	int len = raw_recv(r, rb, data, sizeof(data));
	assert_true(len > 0);
	assert_int_equal(rb[0], 0x23);
	assert_int_equal(rb[36], 0);   /* status class: success */
	assert_int_equal(rb[1] & 0x83, 0x83);
	assert_true(rod_get_be16(rb + 14) != 0);   /* TSIH */
	assert_non_null(find_key(data, len, "TargetPortalGroupTag"));
	assert_string_equal(find_key(data, len, "HeaderDigest"), digests);
	assert_string_equal(find_key(data, len, "DataDigest"), digests);
	assert_string_equal(find_key(data, len, "MaxRecvDataSegmentLength"), "262144");
	r->cmd_sn = 0;
	bool crc = strcmp(digests, "CRC32C") == 0;
	r->hd = r->dd = crc;
}

static void raw_scsi(struct raw *r, uint32_t itt, const uint8_t *cdb, bool write,
		     uint32_t edtl, const void *data, uint32_t dlen, bool corrupt)
{
	uint8_t bhs[48] = { 0x01, 0x80 | (write ? 0x20 : 0x40) | 1 };
	rod_put_be32(bhs + 16, itt);
	rod_put_be32(bhs + 20, edtl);
	rod_put_be32(bhs + 24, r->cmd_sn++);
	rod_put_be32(bhs + 28, r->exp_stat_sn);
	memcpy(bhs + 32, cdb, 16);
	raw_send(r, bhs, data, dlen, corrupt);
}

/* The first command of a new I_T nexus reports the power-on unit attention. */
static void raw_clear_ua(struct raw *r)
{
	uint8_t tur[16] = { 0 }, rb[48], data[300];
	raw_scsi(r, 0x7777, tur, false, 0, NULL, 0, false);
	int len = raw_recv(r, rb, data, sizeof(data));
	assert_int_equal(rb[0], 0x21);
	if (len > 0) {
		assert_int_equal(rb[3], SAM_STAT_CHECK_CONDITION);
		assert_int_equal(data[2 + 2] & 0xf, 0x06);
	}
}

static void test_raw_data_digest_and_nop(void **state)
{
	struct raw r;
	raw_login(&r, "CRC32C");
	raw_clear_ua(&r);
	uint8_t w[4096], rb[48], data[70000];
	fill(w, sizeof(w), 11);
	uint8_t cdb[16] = { 0x2a };   /* WRITE(10) lba 700, 8 blocks, immediate data */
	rod_put_be32(cdb + 2, 700);
	rod_put_be16(cdb + 7, 8);
	raw_scsi(&r, 10, cdb, true, 4096, w, 4096, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[0], 0x21);
	assert_int_equal(rb[3], 0);   /* GOOD */
	assert_int_equal(rod_get_be32(rb + 16), 10);
	uint8_t rcdb[16] = { 0x28 };
	rod_put_be32(rcdb + 2, 700);
	rod_put_be16(rcdb + 7, 8);
	raw_scsi(&r, 11, rcdb, false, 4096, NULL, 0, false);
	int len = raw_recv(&r, rb, data, sizeof(data));
	assert_int_equal(len, 4096);
	assert_int_equal(rb[0], 0x25);
	assert_int_equal(rb[1] & 0x81, 0x81);   /* F and S: status in the last Data-In */
	assert_int_equal(rb[3], 0);
	assert_memory_equal(data, w, 4096);

	/* NOP-Out ping with data is echoed in a NOP-In. */
	uint8_t nop[48] = { 0x40, 0x80 };
	rod_put_be32(nop + 16, 12);
	rod_put_be32(nop + 20, 0xffffffff);
	rod_put_be32(nop + 24, r.cmd_sn);
	raw_send(&r, nop, "ping-data", 9, false);
	len = raw_recv(&r, rb, data, sizeof(data));
	assert_int_equal(len, 9);
	assert_int_equal(rb[0], 0x20);
	assert_int_equal(rod_get_be32(rb + 16), 12);
	assert_memory_equal(data, "ping-data", 9);

	/* An unknown opcode is rejected (reason 05) and the connection lives on. */
	uint8_t unk[48] = { 0x1c | 0x40, 0x80 };
	raw_send(&r, unk, NULL, 0, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 48);
	assert_int_equal(rb[0], 0x3f);
	assert_int_equal(rb[2], 0x05);
	raw_send(&r, nop, "again", 5, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 5);

	/* A corrupted data digest: Reject with reason 02, then the connection ends. */
	struct rod_iscsi_stats before, after;
	rod_iscsi_server_stats(E.srv, &before);
	raw_scsi(&r, 13, cdb, true, 4096, w, 4096, true);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 48);
	assert_int_equal(rb[0], 0x3f);
	assert_int_equal(rb[2], 0x02);
	assert_true(raw_recv(&r, rb, data, sizeof(data)) < 0);
	rod_iscsi_server_stats(E.srv, &after);
	assert_true(after.bad_pdus > before.bad_pdus);
	close(r.fd);
}

static void test_raw_malformed_drops_only_that_connection(void **state)
{
	struct iscsi_context *good = login(INI_PLAIN);
	assert_non_null(good);
	struct rod_iscsi_stats before, after;
	rod_iscsi_server_stats(E.srv, &before);
	struct raw r;
	raw_login(&r, "None");
	/* data segment longer than the MaxRecvDataSegmentLength we declared */
	uint8_t bhs[48] = { 0x40 | 0x40, 0x80 };
	rod_put_be24(bhs + 5, 262145);
	assert_int_equal(write(r.fd, bhs, 48), 48);
	uint8_t rb[48], data[64];
	assert_true(raw_recv(&r, rb, data, sizeof(data)) < 0);
	close(r.fd);
	rod_iscsi_server_stats(E.srv, &after);
	assert_int_equal(after.bad_pdus, before.bad_pdus + 1);
	/* a login PDU that is not a login during login: dropped too */
	assert_int_equal(raw_connect(&r), 0);
	uint8_t cmd[48] = { 0x01, 0x80 };
	assert_int_equal(write(r.fd, cmd, 48), 48);
	assert_true(raw_recv(&r, rb, data, sizeof(data)) < 0);
	close(r.fd);
	/* the other session is untouched */
	write_read_check(good, 900, 4096, 12);
	iscsi_logout_sync(good);
	iscsi_destroy_context(good);
}

static void test_raw_bad_datasn_fails_command_only(void **state)
{
	struct raw r;
	raw_login(&r, "None");
	raw_clear_ua(&r);
	/* WRITE 8 KiB with no immediate data: InitialR2T defaults to Yes, so we get an R2T */
	uint8_t cdb[16] = { 0x2a }, rb[48], data[300];
	rod_put_be32(cdb + 2, 800);
	rod_put_be16(cdb + 7, 16);
	raw_scsi(&r, 20, cdb, true, 8192, NULL, 0, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[0], 0x31);   /* R2T */
	uint32_t ttt = rod_get_be32(rb + 20);
	assert_int_equal(rod_get_be32(rb + 40), 0);
	assert_int_equal(rod_get_be32(rb + 44), 8192);
	uint8_t w[4096];
	memset(w, 0x77, sizeof(w));
	uint8_t dout[48] = { 0x05, 0 };
	rod_put_be32(dout + 16, 20);
	rod_put_be32(dout + 20, ttt);
	rod_put_be32(dout + 36, 1);   /* DataSN should be 0 */
	raw_send(&r, dout, w, 4096, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 20);
	assert_int_equal(rb[0], 0x21);
	assert_int_equal(rb[3], SAM_STAT_CHECK_CONDITION);
	assert_int_equal(data[2 + 2] & 0xf, 0x0b);   /* ABORTED COMMAND */
	assert_int_equal(data[2 + 12], 0x4b);
	/* the connection still serves commands */
	uint8_t tur[16] = { 0 };
	raw_scsi(&r, 21, tur, false, 0, NULL, 0, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[0], 0x21);
	assert_int_equal(rod_get_be32(rb + 16), 21);
	/* Logout: response, then the target closes. */
	uint8_t lo[48] = { 0x46, 0x80 };
	rod_put_be32(lo + 16, 22);
	rod_put_be32(lo + 24, r.cmd_sn++);
	raw_send(&r, lo, NULL, 0, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[0], 0x26);
	assert_int_equal(rb[2], 0);
	assert_true(raw_recv(&r, rb, data, sizeof(data)) < 0);
	close(r.fd);
}

/* ---- task attributes over the wire (ATTR bits of the SCSI Command PDU) ---------- */

static void raw_scsi_attr(struct raw *r, uint32_t itt, const uint8_t *cdb, bool write,
			  uint32_t edtl, uint8_t attr)
{
	uint8_t bhs[48] = { 0x01, (uint8_t)(0x80 | (write ? 0x20 : 0x40) | attr) };
	rod_put_be32(bhs + 16, itt);
	rod_put_be32(bhs + 20, edtl);
	rod_put_be32(bhs + 24, r->cmd_sn++);
	rod_put_be32(bhs + 28, r->exp_stat_sn);
	memcpy(bhs + 32, cdb, 16);
	raw_send(r, bhs, NULL, 0, false);
}

static void rw10(uint8_t *cdb, uint8_t op, uint32_t lba)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	rod_put_be32(cdb + 2, lba);
	rod_put_be16(cdb + 7, 8);
}

/* A 4 KiB WRITE without immediate data: returns the R2T's TTT. */
static uint32_t raw_write_r2t(struct raw *r, uint32_t itt, uint32_t lba, uint8_t attr)
{
	uint8_t cdb[16], rb[48], data[64];
	rw10(cdb, 0x2a, lba);
	raw_scsi_attr(r, itt, cdb, true, 4096, attr);
	assert_int_equal(raw_recv(r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[0], 0x31);   /* R2T */
	assert_int_equal(rod_get_be32(rb + 16), itt);
	return rod_get_be32(rb + 20);
}

static void raw_data_out(struct raw *r, uint32_t itt, uint32_t ttt, const uint8_t *w)
{
	uint8_t dout[48] = { 0x05, 0x80 };
	rod_put_be32(dout + 16, itt);
	rod_put_be32(dout + 20, ttt);
	rod_put_be32(dout + 28, r->exp_stat_sn);
	raw_send(r, dout, w, 4096, false);
}

/* The next PDU is the SCSI Response of itt, GOOD. */
static void raw_expect_good(struct raw *r, uint32_t itt)
{
	uint8_t rb[48], data[300];
	assert_true(raw_recv(r, rb, data, sizeof(data)) >= 0);
	assert_int_equal(rb[0], 0x21);
	assert_int_equal(rod_get_be32(rb + 16), itt);
	assert_int_equal(rb[3], SAM_STAT_GOOD);
}

/* The next PDU is the Data-In (with status) of READ itt: 4 KiB equal to want. */
static void raw_expect_read(struct raw *r, uint32_t itt, const uint8_t *want)
{
	static uint8_t rb[48], data[70000];
	assert_int_equal(raw_recv(r, rb, data, sizeof(data)), 4096);
	assert_int_equal(rb[0], 0x25);
	assert_int_equal(rod_get_be32(rb + 16), itt);
	assert_int_equal(rb[1] & 0x81, 0x81);
	assert_int_equal(rb[3], SAM_STAT_GOOD);
	assert_memory_equal(data, want, 4096);
}

/* A WRITE still collecting Data-Out (R2T) is in the task set: an ORDERED READ after it
 * waits for it and reads the new data; a SIMPLE READ after an ORDERED WRITE waits too;
 * HEAD OF QUEUE does not wait; ACA is refused (NormACA=0) with 05/24/00. */
static void test_raw_task_attributes(void **state)
{
	struct raw r;
	raw_login(&r, "None");
	raw_clear_ua(&r);
	uint8_t zero[4096] = { 0 }, a[4096], b[4096], cdb[16];
	fill(a, sizeof(a), 31);
	fill(b, sizeof(b), 32);

	/* SIMPLE WRITE (waiting for its data), then ORDERED READ of the same blocks */
	uint32_t ttt = raw_write_r2t(&r, 40, 1200, 1);
	rw10(cdb, 0x28, 1200);
	raw_scsi_attr(&r, 41, cdb, false, 4096, 2);
	raw_data_out(&r, 40, ttt, a);
	raw_expect_good(&r, 40);
	raw_expect_read(&r, 41, a);

	/* ORDERED WRITE (waiting for its data), then a SIMPLE READ */
	ttt = raw_write_r2t(&r, 42, 1300, 2);
	rw10(cdb, 0x28, 1300);
	raw_scsi_attr(&r, 43, cdb, false, 4096, 1);
	raw_data_out(&r, 42, ttt, b);
	raw_expect_good(&r, 42);
	raw_expect_read(&r, 43, b);

	/* HEAD OF QUEUE READ while a WRITE waits for its data: answered first, old data */
	ttt = raw_write_r2t(&r, 44, 1400, 1);
	rw10(cdb, 0x28, 1400);
	raw_scsi_attr(&r, 45, cdb, false, 4096, 3);
	raw_expect_read(&r, 45, zero);
	raw_data_out(&r, 44, ttt, a);
	raw_expect_good(&r, 44);

	/* ACA */
	uint8_t tur[16] = { 0 }, rb[48], data[300];
	raw_scsi_attr(&r, 46, tur, false, 0, 4);
	assert_true(raw_recv(&r, rb, data, sizeof(data)) > 0);
	assert_int_equal(rb[0], 0x21);
	assert_int_equal(rb[3], SAM_STAT_CHECK_CONDITION);
	assert_int_equal(data[2 + 2] & 0xf, 0x05);
	assert_int_equal(data[2 + 12], 0x24);
	assert_int_equal(data[2 + 13], 0x00);
	close(r.fd);
}

struct serve_arg {
	int in, out, rc;
};

static void *serve_thread(void *p)
{
	struct serve_arg *a = p;
	a->rc = rod_iscsi_serve_fd(E.srv, a->in, a->out);
	return NULL;
}

/* rod_iscsi_serve_fd: one connection on the caller's thread (rodd --stdin, fuzzing). */
static void test_serve_fd_socketpair(void **state)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct serve_arg a = { sv[1], sv[1], -1 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, serve_thread, &a), 0);
	struct raw r;
	memset(&r, 0, sizeof(r));
	raw_login_fd(&r, sv[0], "CRC32C");
	raw_clear_ua(&r);
	uint8_t w[2048], rb[48], data[4096];
	fill(w, sizeof(w), 21);
	uint8_t cdb[16] = { 0x2a };
	rod_put_be32(cdb + 2, 1200);
	rod_put_be16(cdb + 7, 4);
	raw_scsi(&r, 30, cdb, true, sizeof(w), w, sizeof(w), false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[3], 0);
	cdb[0] = 0x28;
	raw_scsi(&r, 31, cdb, false, sizeof(w), NULL, 0, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), (int)sizeof(w));
	assert_memory_equal(data, w, sizeof(w));
	uint8_t lo[48] = { 0x46, 0x80 };
	rod_put_be32(lo + 16, 32);
	rod_put_be32(lo + 24, r.cmd_sn++);
	raw_send(&r, lo, NULL, 0, false);
	assert_int_equal(raw_recv(&r, rb, data, sizeof(data)), 0);
	assert_int_equal(rb[0], 0x26);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(a.rc, 0);
	close(sv[0]);
}

/* A regular file as input (a fuzzer's corpus entry): read to its end, answer, return. */
static void test_serve_fd_file(void **state)
{
	char path[] = "/tmp/rod-iscsi-fuzz-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	char text[1024];
	int n = login_text(text, sizeof(text), "None");
	uint8_t bhs[48];
	login_bhs(bhs);
	rod_put_be24(bhs + 5, (uint32_t)n);
	assert_int_equal(write(fd, bhs, 48), 48);
	uint32_t padded = ((uint32_t)n + 3) & ~3u;
	memset(text + n, 0, padded - (uint32_t)n);
	assert_int_equal(write(fd, text, padded), (ssize_t)padded);
	/* then garbage: a header claiming a huge data segment */
	memset(bhs, 0, 48);
	bhs[0] = 0x40;
	rod_put_be24(bhs + 5, 0xffffff);
	assert_int_equal(write(fd, bhs, 48), 48);
	lseek(fd, 0, SEEK_SET);
	char opath[] = "/tmp/rod-iscsi-fuzz-out-XXXXXX";
	int ofd = mkstemp(opath);
	assert_true(ofd >= 0);
	unlink(opath);
	int ofd2 = dup(ofd);
	assert_int_equal(rod_iscsi_serve_fd(E.srv, fd, ofd), 0);
	/* the login response was written before the bad PDU ended the connection */
	uint8_t rb[48];
	assert_int_equal(pread(ofd2, rb, 48, 0), 48);
	assert_int_equal(rb[0], 0x23);
	assert_int_equal(rb[36], 0);
	close(ofd2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_login_inquiry_rw),
		cmocka_unit_test(test_r2t_large_and_header_digest),
		cmocka_unit_test(test_chap),
		cmocka_unit_test(test_mutual_chap),
		cmocka_unit_test(test_refused_logins),
		cmocka_unit_test(test_discovery),
		cmocka_unit_test(test_discovery_portals),
		cmocka_unit_test(test_tmf),
		cmocka_unit_test(test_many_in_flight),
		cmocka_unit_test(test_reinstatement),
		cmocka_unit_test(test_cold_reset_closes_every_session),
		cmocka_unit_test(test_raw_data_digest_and_nop),
		cmocka_unit_test(test_raw_malformed_drops_only_that_connection),
		cmocka_unit_test(test_raw_bad_datasn_fails_command_only),
		cmocka_unit_test(test_raw_task_attributes),
		cmocka_unit_test(test_serve_fd_socketpair),
		cmocka_unit_test(test_serve_fd_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
