/* Unit tests of the job runner (lib/ctl/jobs.c) alone: jobs run in order on the
 * worker, progress and results are visible, queued jobs cancel at once, a running
 * cancellable job stops when it next checks, a running non-cancellable one refuses,
 * failures keep their message, and finished jobs are bounded. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../lib/ctl/jobs.h"

/* A job that advances one step at a time when the test lets it. */
struct gate {
	atomic_int allowed;      /* steps the job may take */
	atomic_int taken;
	int steps;
	int fail_rc;             /* returned at the end when non-zero */
};

static int gated(struct rod_job *j, void *arg, json_t **result, char **err)
{
	struct gate *g = arg;
	rod_job_progress(j, 0, (uint64_t)g->steps);
	while (atomic_load(&g->taken) < g->steps) {
		if (rod_job_cancelled(j))
			return -ECANCELED;
		if (atomic_load(&g->taken) < atomic_load(&g->allowed)) {
			atomic_fetch_add(&g->taken, 1);
			rod_job_progress(j, (uint64_t)atomic_load(&g->taken), (uint64_t)g->steps);
		} else {
			usleep(1000);
		}
	}
	if (g->fail_rc) {
		*err = strdup("disk on fire");
		return g->fail_rc;
	}
	*result = json_pack("{s:i}", "steps", g->steps);
	return 0;
}

static const char *state(struct rod_jobs *js, uint64_t id)
{
	static char buf[32];
	bool found;
	json_t *o = rod_jobs_show_json(js, id, &found);
	snprintf(buf, sizeof(buf), "%s", found ? json_string_value(json_object_get(o, "state")) : "absent");
	json_decref(o);
	return buf;
}

static void wait_state(struct rod_jobs *js, uint64_t id, const char *want)
{
	for (int i = 0; i < 5000 && strcmp(state(js, id), want); i++)
		usleep(1000);
	assert_string_equal(state(js, id), want);
}

static void test_order_progress_result(void **st)
{
	(void)st;
	struct rod_jobs *js;
	struct gate a = { .steps = 4 }, b = { .steps = 1, .allowed = 1 };
	uint64_t ia, ib;
	assert_int_equal(rod_jobs_new(8, &js), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "a", "steps", true, gated, &a, NULL, &ia), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "b", "steps", true, gated, &b, NULL, &ib), 0);
	assert_true(ib > ia);
	wait_state(js, ia, "running");
	/* one worker: b waits behind a */
	assert_string_equal(state(js, ib), "queued");
	atomic_store(&a.allowed, 2);
	for (int i = 0; i < 5000 && atomic_load(&a.taken) < 2; i++)
		usleep(1000);
	bool found;
	json_t *o = rod_jobs_show_json(js, ia, &found);
	assert_true(found);
	assert_int_equal(json_integer_value(json_object_get(o, "done")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "total")), 4);
	assert_true(json_real_value(json_object_get(o, "percent")) == 50.0);
	json_decref(o);
	atomic_store(&a.allowed, 4);
	assert_int_equal(rod_jobs_wait(js, ib, 5000), 0);
	assert_string_equal(state(js, ia), "done");
	assert_string_equal(state(js, ib), "done");
	o = rod_jobs_show_json(js, ia, &found);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "result"), "steps")), 4);
	assert_true(json_is_string(json_object_get(o, "finished")));
	json_decref(o);
	o = rod_jobs_list_json(js);
	assert_int_equal(json_array_size(json_object_get(o, "jobs")), 2);
	json_decref(o);
	rod_jobs_free(js);
}

static void test_cancel(void **st)
{
	(void)st;
	struct rod_jobs *js;
	struct gate run = { .steps = 100 }, fixed = { .steps = 100 }, queued = { .steps = 1, .allowed = 1 };
	uint64_t ir, ifx, iq;
	assert_int_equal(rod_jobs_new(8, &js), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "run", "steps", true, gated, &run, NULL, &ir), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "fixed", "steps", false, gated, &fixed, NULL, &ifx), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "queued", "steps", true, gated, &queued, NULL, &iq), 0);
	wait_state(js, ir, "running");
	/* queued: cancelled at once and never runs */
	assert_int_equal(rod_jobs_cancel(js, iq), 0);
	assert_string_equal(state(js, iq), "cancelled");
	/* running and cancellable: stops at its next check */
	assert_int_equal(rod_jobs_cancel(js, ir), 0);
	wait_state(js, ir, "cancelled");
	assert_true(atomic_load(&run.taken) < 100);
	/* running and not cancellable: refused */
	wait_state(js, ifx, "running");
	assert_int_equal(rod_jobs_cancel(js, ifx), -EBUSY);
	atomic_store(&fixed.allowed, 100);
	assert_int_equal(rod_jobs_wait(js, ifx, 5000), 0);
	assert_string_equal(state(js, ifx), "done");
	assert_int_equal(atomic_load(&queued.taken), 0);
	assert_int_equal(rod_jobs_cancel(js, ifx), -EALREADY);
	assert_int_equal(rod_jobs_cancel(js, 999), -ENOENT);
	rod_jobs_free(js);
}

static void test_failure_and_bound(void **st)
{
	(void)st;
	struct rod_jobs *js;
	struct gate bad = { .steps = 1, .allowed = 1, .fail_rc = -EIO };
	struct gate ok[5];
	uint64_t ib, id[5];
	assert_int_equal(rod_jobs_new(3, &js), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "bad", "steps", true, gated, &bad, NULL, &ib), 0);
	assert_int_equal(rod_jobs_wait(js, ib, 5000), 0);
	bool found;
	json_t *o = rod_jobs_show_json(js, ib, &found);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "failed");
	assert_string_equal(json_string_value(json_object_get(o, "error")), "disk on fire");
	json_decref(o);
	for (int i = 0; i < 5; i++) {
		memset(&ok[i], 0, sizeof(ok[i]));
		ok[i].steps = 1;
		ok[i].allowed = 1;
		assert_int_equal(rod_jobs_submit(js, "test", "ok", "steps", true, gated, &ok[i], NULL, &id[i]), 0);
	}
	assert_int_equal(rod_jobs_wait(js, id[4], 5000), 0);
	/* only the 3 newest finished jobs are kept */
	o = rod_jobs_list_json(js);
	assert_int_equal(json_array_size(json_object_get(o, "jobs")), 3);
	json_decref(o);
	assert_string_equal(state(js, ib), "absent");
	assert_string_equal(state(js, id[4]), "done");
	rod_jobs_free(js);
}

/* Freeing with a running cancellable job stops it; queued ones never start. */
static void test_free_while_running(void **st)
{
	(void)st;
	struct rod_jobs *js;
	struct gate run = { .steps = 1000000 }, q = { .steps = 1, .allowed = 1 };
	uint64_t ir, iq;
	assert_int_equal(rod_jobs_new(4, &js), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "run", "steps", true, gated, &run, NULL, &ir), 0);
	assert_int_equal(rod_jobs_submit(js, "test", "q", "steps", true, gated, &q, NULL, &iq), 0);
	wait_state(js, ir, "running");
	rod_jobs_free(js);
	assert_int_equal(atomic_load(&q.taken), 0);
}

/* History: persisted records come back as finished jobs; ids continue after them. */
static void persist_cb(void *arg, uint64_t id, json_t *rec)
{
	json_t *all = arg;
	char k[32];
	snprintf(k, sizeof(k), "%llu", (unsigned long long)id);
	json_object_set(all, k, rec);
}

/* job_workers: a second worker runs the queued job at once; active/count see both;
 * fewer workers is refused (-EBUSY); add_done records a finished job. */
static void test_workers_active_done(void **st)
{
	(void)st;
	struct rod_jobs *js;
	struct gate a = { .steps = 1 }, b = { .steps = 1 };
	uint64_t ia, ib, ic, q, r;
	assert_int_equal(rod_jobs_new(8, &js), 0);
	assert_int_equal(rod_jobs_submit(js, "gc", "array", "segments", true, gated, &a, NULL, &ia), 0);
	assert_int_equal(rod_jobs_submit(js, "flatten", "v1", "bytes", true, gated, &b, NULL, &ib), 0);
	wait_state(js, ia, "running");
	assert_string_equal(state(js, ib), "queued");
	rod_jobs_count(js, &q, &r);
	assert_true(q == 1 && r == 1);
	assert_true(rod_jobs_active(js, "flatten", "v1"));
	assert_false(rod_jobs_active(js, "flatten", "v2"));
	assert_int_equal(rod_jobs_set_workers(js, 2), 0);
	wait_state(js, ib, "running");
	assert_string_equal(state(js, ia), "running");
	assert_int_equal(rod_jobs_set_workers(js, 1), -EBUSY);
	assert_int_equal(rod_jobs_set_workers(js, 17), -EINVAL);
	atomic_store(&a.allowed, 1);
	atomic_store(&b.allowed, 1);
	assert_int_equal(rod_jobs_wait(js, ia, 5000), 0);
	assert_int_equal(rod_jobs_wait(js, ib, 5000), 0);
	assert_false(rod_jobs_active(js, "flatten", "v1"));
	assert_int_equal(rod_jobs_add_done(js, "recover", "v1", "items", json_pack("{s:s}", "name", "v1"), &ic), 0);
	assert_true(ic > ib);
	bool found;
	json_t *o = rod_jobs_show_json(js, ic, &found);
	assert_true(found);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "done");
	assert_int_equal(json_integer_value(json_object_get(o, "done")), 1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "result"), "name")), "v1");
	json_decref(o);
	rod_jobs_free(js);
}

static void test_restore(void **st)
{
	(void)st;
	struct rod_jobs *js;
	json_t *saved = json_object();
	struct gate g = { .steps = 3, .allowed = 3 };
	uint64_t id;
	assert_int_equal(rod_jobs_new(8, &js), 0);
	rod_jobs_set_persist(js, persist_cb, saved);
	assert_int_equal(rod_jobs_submit(js, "test", "g", "steps", true, gated, &g, NULL, &id), 0);
	assert_int_equal(rod_jobs_wait(js, id, 5000), 0);
	rod_jobs_free(js);
	json_t *rec = json_object_get(saved, "1");
	assert_non_null(rec);

	assert_int_equal(rod_jobs_new(8, &js), 0);
	assert_int_equal(rod_jobs_restore(js, rec), 0);
	json_t *bad = json_pack("{s:i, s:s}", "id", 7, "state", "running");
	assert_int_equal(rod_jobs_restore(js, bad), -EINVAL);
	json_decref(bad);
	bool found;
	json_t *o = rod_jobs_show_json(js, 1, &found);
	assert_true(found);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "done");
	assert_int_equal(json_integer_value(json_object_get(o, "done")), 3);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "result"), "steps")), 3);
	json_decref(o);
	struct gate g2 = { .steps = 1, .allowed = 1 };
	assert_int_equal(rod_jobs_submit(js, "test", "g2", "steps", true, gated, &g2, NULL, &id), 0);
	assert_int_equal(id, 2);
	assert_int_equal(rod_jobs_wait(js, id, 5000), 0);
	rod_jobs_free(js);
	json_decref(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_progress_result),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_failure_and_bound),
		cmocka_unit_test(test_free_while_running),
		cmocka_unit_test(test_restore),
		cmocka_unit_test(test_workers_active_done),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
