/* Task management across sessions, end to end: rod_iscsi_server on 127.0.0.1 over the
 * real SCSI core and store, two libiscsi sessions of the same host. Session A has
 * WRITEs outstanding that the SCSI core holds (test hook ROD_SCSI_TEST_DELAY_MS: WRITE(16)
 * with GROUP NUMBER 0x15 waits that long before it runs; the delay here is far longer
 * than the test, so only an abort can release them). Session B then issues LOGICAL UNIT
 * RESET, CLEAR TASK SET, TARGET WARM RESET or PERSISTENT RESERVE OUT PREEMPT AND ABORT.
 * Checked: B's answer arrives (so it did not wait for the held writes to run), A's
 * aborted WRITEs never get a response (TAS=0), A then sees the unit attention the
 * standard names, the data on the LU is what it was before (the aborted writes never
 * touched it), and A logs out cleanly (nothing of it is left in the SCSI core).
 * Also: a stopping server asks a logged-in libiscsi session to log out (AsyncEvent 1)
 * and the session does so. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "rod/iscsi.h"
#include "rod/scsi.h"
#include "rod/store.h"

#define TARGET "iqn.2026-11.io.rodstore:tmf"
#define INI_A "iqn.2026-11.test:tmf-a"
#define INI_B "iqn.2026-11.test:tmf-b"
#define VOL_SIZE (16ull << 20)
#define HELD 4            /* held WRITEs per test */
#define HELD_LBA 1024     /* first LBA they write (8 blocks each) */
#define HELD_LEN 4096

static struct {
	char dir[64];
	struct rod_store *store;
	struct rod_scsi_target *scsi;
	struct rod_iscsi_server *srv;
	char portal[64];
} E;

static int auth_lookup(void *arg, const char *name, struct rod_iscsi_auth *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	if (strncmp(name, "iqn.2026-11.test:tmf-", 21) != 0)
		return -ENOENT;
	out->host_id = 1;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	/* held writes wait 10 minutes: only task management releases them */
	setenv("ROD_SCSI_TEST_DELAY_MS", "600000", 1);
	snprintf(E.dir, sizeof(E.dir), "/tmp/rod-tmf-test-XXXXXX");
	assert_non_null(mkdtemp(E.dir));
	struct rod_store_opts so = { .dir = E.dir, .create = true, .array_name = "tmf",
				     .no_gc_thread = true };
	assert_int_equal(rod_store_open(&so, &E.store), 0);
	struct rod_vol_info vi;
	assert_int_equal(rod_vol_create(E.store, "v1", VOL_SIZE, 512, &vi), 0);
	struct rod_scsi_target_opts to = { .store = E.store, .target_name = TARGET };
	assert_int_equal(rod_scsi_target_new(&to, &E.scsi), 0);
	unsetenv("ROD_SCSI_TEST_DELAY_MS");
	assert_int_equal(rod_scsi_map_add(E.scsi, 1, 0, vi.id), 0);
	static const char *const listen[] = { "127.0.0.1:0", NULL };
	struct rod_iscsi_server_opts io = {
		.target_name = TARGET, .listen = listen, .threads = 2, .scsi = E.scsi,
		.auth_lookup = auth_lookup,
	};
	assert_int_equal(rod_iscsi_server_new(&io, &E.srv), 0);
	char p[4][64];
	assert_int_equal(rod_iscsi_server_portals(E.srv, p, 4), 1);
	snprintf(E.portal, sizeof(E.portal), "%s", p[0]);
	assert_int_equal(rod_iscsi_server_start(E.srv), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rod_iscsi_server_stop(E.srv);
	struct rod_iscsi_stats st;
	rod_iscsi_server_stats(E.srv, &st);
	assert_int_equal(st.sessions, 0);
	rod_iscsi_server_free(E.srv);
	rod_scsi_target_free(E.scsi);
	rod_store_close(E.store);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", E.dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct iscsi_context *login(const char *initiator)
{
	struct iscsi_context *c = iscsi_create_context(initiator);
	assert_non_null(c);
	iscsi_set_targetname(c, TARGET);
	iscsi_set_session_type(c, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_timeout(c, 20);
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
		b[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 9));
}

/* TEST UNIT READY until GOOD; returns the first unit attention's ASC/ASCQ (0: none). */
static int clear_uas(struct iscsi_context *c)
{
	int first = 0;
	for (int i = 0; i < 16; i++) {
		struct scsi_task *t = iscsi_testunitready_sync(c, 0);
		assert_non_null(t);
		int st = t->status;
		if (st == SCSI_STATUS_CHECK_CONDITION &&
		    t->sense.key == SCSI_SENSE_UNIT_ATTENTION && !first)
			first = t->sense.ascq;
		scsi_free_scsi_task(t);
		if (st == SCSI_STATUS_GOOD)
			return first;
		assert_int_equal(st, SCSI_STATUS_CHECK_CONDITION);
	}
	fail_msg("unit attentions never cleared");
	return -1;
}

struct held {
	int answered;     /* SCSI statuses received from the target */
	int cancelled;    /* cancelled locally by libiscsi (logout / destroy) */
	struct scsi_task *tasks[HELD];   /* freed by the test once libiscsi is done */
};

static void held_cb(struct iscsi_context *c, int status, void *data, void *priv)
{
	(void)c;
	(void)data;       /* the task, or NULL when cancelled: freed from tasks[] */
	struct held *h = priv;
	if (status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
	    status == SCSI_STATUS_TIMEOUT)
		h->cancelled++;
	else
		h->answered++;
}

/* Queue HELD writes that the SCSI core holds, and make sure they reached it: a TEST
 * UNIT READY sent after them is answered (commands run in order of arrival). */
static void queue_held(struct iscsi_context *a, struct held *h, uint8_t *bufs[HELD])
{
	for (int i = 0; i < HELD; i++) {
		bufs[i] = malloc(HELD_LEN);
		assert_non_null(bufs[i]);
		fill(bufs[i], HELD_LEN, 100 + (uint32_t)i);
		h->tasks[i] = iscsi_write16_task(a, 0, HELD_LBA + (uint64_t)i * 8, bufs[i],
						 HELD_LEN, 512, 0, 0, 0, 0, 0x15, held_cb, h);
		assert_non_null(h->tasks[i]);
	}
	struct scsi_task *t = iscsi_testunitready_sync(a, 0);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	assert_int_equal(h->answered, 0);
}

/* The old data: written (not held) before the test starts. */
static uint8_t *write_old(struct iscsi_context *c)
{
	uint8_t *old = malloc(HELD * HELD_LEN);
	assert_non_null(old);
	fill(old, HELD * HELD_LEN, 7);
	struct scsi_task *t = iscsi_write16_sync(c, 0, HELD_LBA, old, HELD * HELD_LEN, 512, 0, 0,
						 0, 0, 0);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	return old;
}

static void check_old(struct iscsi_context *c, const uint8_t *old)
{
	struct scsi_task *t = iscsi_read16_sync(c, 0, HELD_LBA, HELD * HELD_LEN, 512, 0, 0, 0, 0,
						0);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	assert_int_equal(t->datain.size, HELD * HELD_LEN);
	assert_memory_equal(t->datain.data, old, HELD * HELD_LEN);
	scsi_free_scsi_task(t);
}

/* After B's function: A's held writes never answer, A sees want_ua first, A's data is
 * unchanged, and A logs out (the target answers a logout only once none of A's tasks
 * is left in the SCSI core). */
static void check_a_after(struct iscsi_context *a, struct held *h, int want_ua,
			  const uint8_t *old, uint8_t *bufs[HELD])
{
	int ua = clear_uas(a);
	assert_int_equal(ua, want_ua);
	check_old(a, old);
	/* a NOP round trip after everything else: still no answer to the held writes */
	struct scsi_task *t = iscsi_testunitready_sync(a, 0);
	assert_non_null(t);
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	assert_int_equal(h->answered, 0);
	assert_int_equal(iscsi_logout_sync(a), 0);
	assert_int_equal(h->answered, 0);
	iscsi_destroy_context(a);
	for (int i = 0; i < HELD; i++) {
		scsi_free_scsi_task(h->tasks[i]);
		free(bufs[i]);
	}
}

static void test_lu_reset_aborts_other_session(void **state)
{
	(void)state;
	struct iscsi_context *a = login(INI_A), *b = login(INI_B);
	assert_non_null(a);
	assert_non_null(b);
	clear_uas(a);
	clear_uas(b);
	uint8_t *old = write_old(a);
	struct held h = { 0 };
	uint8_t *bufs[HELD];
	queue_held(a, &h, bufs);

	assert_int_equal(iscsi_task_mgmt_lun_reset_sync(b, 0), 0);
	/* SAM-5: every I_T nexus, the requester's too, sees BUS DEVICE RESET FUNCTION
	 * OCCURRED */
	assert_int_equal(clear_uas(b), SCSI_SENSE_ASCQ_BUS_DEVICE_RESET_FUNCTION_OCCURED);
	check_old(b, old);
	check_a_after(a, &h, SCSI_SENSE_ASCQ_BUS_DEVICE_RESET_FUNCTION_OCCURED, old, bufs);
	iscsi_logout_sync(b);
	iscsi_destroy_context(b);
	free(old);
}

static void test_clear_task_set_aborts_other_session(void **state)
{
	(void)state;
	struct iscsi_context *a = login(INI_A), *b = login(INI_B);
	assert_non_null(a);
	assert_non_null(b);
	clear_uas(a);
	clear_uas(b);
	uint8_t *old = write_old(a);
	struct held h = { 0 };
	uint8_t *bufs[HELD];
	queue_held(a, &h, bufs);

	assert_int_equal(iscsi_task_mgmt_sync(b, 0, ISCSI_TM_CLEAR_TASK_SET, 0xffffffff, 0), 0);
	/* the requester gets no unit attention; A gets COMMANDS CLEARED BY ANOTHER
	 * INITIATOR (TAS=0) */
	assert_int_equal(clear_uas(b), 0);
	check_a_after(a, &h, 0x2f00, old, bufs);
	iscsi_logout_sync(b);
	iscsi_destroy_context(b);
	free(old);
}

static void test_abort_task_set_leaves_other_session(void **state)
{
	(void)state;
	struct iscsi_context *a = login(INI_A), *b = login(INI_B);
	assert_non_null(a);
	assert_non_null(b);
	clear_uas(a);
	clear_uas(b);
	uint8_t *old = write_old(a);
	struct held h = { 0 };
	uint8_t *bufs[HELD];
	queue_held(a, &h, bufs);
	/* SAM-5 7.3: ABORT TASK SET covers the requesting I_T nexus only */
	assert_int_equal(iscsi_task_mgmt_abort_task_set_sync(b, 0), 0);
	assert_int_equal(clear_uas(b), 0);
	assert_int_equal(clear_uas(a), 0);
	assert_int_equal(h.answered, 0);
	/* A's own ABORT TASK SET then removes them; libiscsi cancels them locally */
	assert_int_equal(iscsi_task_mgmt_abort_task_set_sync(a, 0), 0);
	check_a_after(a, &h, 0, old, bufs);
	iscsi_logout_sync(b);
	iscsi_destroy_context(b);
	free(old);
}

static void test_target_warm_reset_aborts_other_session(void **state)
{
	(void)state;
	struct iscsi_context *a = login(INI_A), *b = login(INI_B);
	assert_non_null(a);
	assert_non_null(b);
	clear_uas(a);
	clear_uas(b);
	uint8_t *old = write_old(a);
	struct held h = { 0 };
	uint8_t *bufs[HELD];
	queue_held(a, &h, bufs);

	assert_int_equal(iscsi_task_mgmt_target_warm_reset_sync(b), 0);
	assert_int_equal(clear_uas(b), SCSI_SENSE_ASCQ_SCSI_BUS_RESET_OCCURED);
	check_a_after(a, &h, SCSI_SENSE_ASCQ_SCSI_BUS_RESET_OCCURED, old, bufs);
	iscsi_logout_sync(b);
	iscsi_destroy_context(b);
	free(old);
}

static void pr_out(struct iscsi_context *c, int sa, int type, uint64_t key, uint64_t sakey)
{
	struct scsi_persistent_reserve_out_basic p;
	memset(&p, 0, sizeof(p));
	p.reservation_key = key;
	p.service_action_reservation_key = sakey;
	struct scsi_task *t = iscsi_persistent_reserve_out_sync(c, 0, sa, 0, type, &p);
	assert_non_null(t);
	if (t->status != SCSI_STATUS_GOOD)
		fprintf(stderr, "PR OUT sa %d: %s\n", sa, iscsi_get_error(c));
	assert_int_equal(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
}

static void test_preempt_and_abort(void **state)
{
	(void)state;
	struct iscsi_context *a = login(INI_A), *b = login(INI_B);
	assert_non_null(a);
	assert_non_null(b);
	clear_uas(a);
	clear_uas(b);
	uint8_t *old = write_old(a);
	pr_out(a, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xaaaa);
	pr_out(b, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xbbbb);
	pr_out(a, SCSI_PERSISTENT_RESERVE_RESERVE, SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE,
	       0xaaaa, 0);
	struct held h = { 0 };
	uint8_t *bufs[HELD];
	queue_held(a, &h, bufs);

	/* B takes the reservation and aborts A's tasks; its command completes once they
	 * are gone. */
	pr_out(b, SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT,
	       SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, 0xbbbb, 0xaaaa);
	check_old(b, old);
	/* A: REGISTRATIONS PREEMPTED (2A/05); its writes were never run */
	check_a_after(a, &h, 0x2a05, old, bufs);
	pr_out(b, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, 0);
	iscsi_logout_sync(b);
	iscsi_destroy_context(b);
	free(old);
}

/* ---- AsyncEvent 1 at server stop --------------------------------------------------- */

static int async_logout_seen;

static void log_capture(int level, const char *msg)
{
	(void)level;
	if (strstr(msg, "target requests logout within 2 seconds"))
		async_logout_seen = 1;
}

static void *stop_thread(void *arg)
{
	(void)arg;
	rod_iscsi_server_stop(E.srv);
	return NULL;
}

static void test_stop_asks_for_logout(void **state)
{
	(void)state;
	struct iscsi_context *a = login(INI_A);
	assert_non_null(a);
	clear_uas(a);
	/* libiscsi reconnects after a target-requested logout; the listener is gone
	 * and its half-done reconnect leaks (LeakSanitizer): no reconnect here */
	iscsi_set_noautoreconnect(a, 1);
	iscsi_set_log_level(a, 2);
	iscsi_set_log_fn(a, log_capture);
	async_logout_seen = 0;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, stop_thread, NULL), 0);
	/* serve the session until the target has asked and the logout is through: the
	 * server then has no session left (the 30 s cap is only a safety net; libiscsi's
	 * reconnect attempts after the logout can make poll return at once) */
	struct rod_iscsi_stats st = { .sessions = 1 };
	time_t give_up = time(NULL) + 30;
	while ((!async_logout_seen || st.sessions) && time(NULL) < give_up) {
		struct pollfd pfd = { .fd = iscsi_get_fd(a), .events = iscsi_which_events(a) };
		if (pfd.fd >= 0 && pfd.events && poll(&pfd, 1, 50) > 0)
			iscsi_service(a, pfd.revents);
		rod_iscsi_server_stats(E.srv, &st);
	}
	/* join first: a failed assertion must not leave the stop running under teardown */
	pthread_join(th, NULL);
	rod_iscsi_server_stats(E.srv, &st);
	if (!async_logout_seen || st.sessions)
		fprintf(stderr, "async logout seen %d, sessions %llu, libiscsi: %s\n",
			async_logout_seen, (unsigned long long)st.sessions, iscsi_get_error(a));
	iscsi_destroy_context(a);
	assert_true(async_logout_seen);
	assert_int_equal(st.sessions, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lu_reset_aborts_other_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear_task_set_aborts_other_session, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_abort_task_set_leaves_other_session, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_target_warm_reset_aborts_other_session, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_preempt_and_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_asks_for_logout, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
