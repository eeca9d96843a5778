/* Protection groups through rod_ctl_call with the test clock: the exact set of snapshots
 * a retention policy keeps, schedule slots, one catch-up after a restart, errors. */
#include <errno.h>
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
#include <jansson.h>

#include "rod/ctl.h"
#include "rod/util.h"

#define T0 (1893456000 + 30) /* 2030-01-01T00:00:30Z */

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_ctl *ctl;
};

static void env_open(struct env *e, int64_t extra)
{
	struct rod_store_opts so = { .dir = e->dir, .create = true, .array_name = "unit", .no_gc_thread = true };
	const char *portals[] = { NULL };
	struct rod_ctl_opts co = { .target_iqn = "iqn.2026-11.io.rodstore:unit", .portals = portals };
	char off[32];
	/* the scheduler's clock reads T0 (+ extra) now */
	snprintf(off, sizeof(off), "%lld", (long long)(T0 + extra - (int64_t)(rod_wall_ns() / 1000000000ull)));
	setenv("ROD_TEST_TIME_OFFSET", off, 1);
	assert_int_equal(rod_store_open(&so, &e->store), 0);
	co.store = e->store;
	assert_int_equal(rod_ctl_new(&co, &e->ctl), 0);
}

static void env_close(struct env *e)
{
	rod_ctl_free(e->ctl);
	rod_store_close(e->store);
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/rod-test-pg.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	env_open(e, 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[128];
	env_close(e);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	assert_int_equal(system(cmd), 0);
	unsetenv("ROD_TEST_TIME_OFFSET");
	free(e);
	return 0;
}

static int call(struct env *e, const char *method, const char *params, json_t **res)
{
	json_t *p = params ? json_loads(params, 0, NULL) : NULL;
	json_t *r = NULL;
	char *msg = NULL;
	int rc = rod_ctl_call(e->ctl, method, p, &r, &msg);
	if (rc == 0)
		assert_non_null(r);
	else
		assert_non_null(msg);
	json_decref(p);
	free(msg);
	if (res)
		*res = r;
	else
		json_decref(r);
	return rc;
}

static size_t tick(struct env *e, const char *advance)
{
	char p[64];
	json_t *r;
	snprintf(p, sizeof(p), "{\"advance\":\"%s\"}", advance);
	assert_int_equal(call(e, "pg.tick", p, &r), 0);
	size_t n = json_array_size(json_object_get(r, "taken"));
	json_decref(r);
	return n;
}

/* hours after T0 of the group's scheduled snapshots, in order, as "72,96,..." */
static void sched_hours(struct env *e, char *out, size_t len)
{
	json_t *r, *s;
	size_t i;
	assert_int_equal(call(e, "pg.show", "{\"name\":\"g\"}", &r), 0);
	out[0] = 0;
	json_array_foreach(json_object_get(r, "snapshots"), i, s) {
		if (strcmp(json_string_value(json_object_get(s, "kind")), "scheduled"))
			continue;
		long long h = (json_integer_value(json_object_get(s, "created_s")) - T0) / 3600;
		snprintf(out + strlen(out), len - strlen(out), "%s%lld", out[0] ? "," : "", h);
	}
	json_decref(r);
}

static void make_group(struct env *e)
{
	assert_int_equal(rod_vol_create(e->store, "v1", 1 << 20, 512, NULL), 0);
	assert_int_equal(call(e, "pg.create", "{\"name\":\"g\"}", NULL), 0);
	assert_int_equal(call(e, "pg.add", "{\"name\":\"g\",\"volume\":\"v1\"}", NULL), 0);
}

/* every 6h; keep all for 12h, then 1 per day for 2 days; five days of hourly ticks.
 * Snapshots are taken at hours 6, 12, ..., 120 after T0. At hour 120 the policy keeps:
 * ages < 12h (hours 114, 120) and, for ages 12h..60h, the oldest of each UTC day still
 * held (hour 96 = Jan 5 00:00, hour 72 = Jan 4 00:00); Jan 3's first snapshot (hour 48)
 * is past 60h and its later ones went when they left the keep-all window. */
static void test_retention_exact(void **state)
{
	struct env *e = *state;
	char got[256];
	make_group(e);
	assert_int_equal(call(e, "pg.schedule", "{\"name\":\"g\",\"every\":\"6h\"}", NULL), 0);
	assert_int_equal(call(e, "pg.retention", "{\"name\":\"g\",\"keep_all\":\"12h\",\"per_day\":1,\"for\":\"2d\"}",
			      NULL), 0);
	assert_int_equal(call(e, "pg.snap", "{\"name\":\"g\",\"suffix\":\"mine\"}", NULL), 0);
	size_t taken = 0;
	for (int h = 1; h <= 120; h++) {
		size_t n = tick(e, "1h");
		assert_int_equal(n, h % 6 == 0 ? 1 : 0);
		taken += n;
	}
	assert_int_equal(taken, 20);
	sched_hours(e, got, sizeof(got));
	assert_string_equal(got, "72,96,114,120");
	/* the manual snapshot stays; the engine snapshots of expired ones are destroyed */
	struct rod_vol_info vi;
	assert_int_equal(rod_vol_info_get(e->store, "v1.g-mine", &vi), 0);
	assert_false(vi.destroyed);
	struct rod_vol_info *all;
	size_t n, live = 0;
	assert_int_equal(rod_vol_list(e->store, &all, &n), 0);
	for (size_t i = 0; i < n; i++)
		live += all[i].is_snapshot && !all[i].destroyed;
	free(all);
	assert_int_equal(live, 5);
}

/* restart after 30 hours down: one catch-up snapshot, then the normal slots */
static void test_catch_up(void **state)
{
	struct env *e = *state;
	char got[256];
	make_group(e);
	assert_int_equal(call(e, "pg.schedule", "{\"name\":\"g\",\"every\":\"1h\",\"at\":\"00:15\"}", NULL), 0);
	assert_int_equal(tick(e, "10m"), 0);
	assert_int_equal(tick(e, "10m"), 1); /* 00:20:30 passed the 00:15 slot */
	env_close(e);
	env_open(e, 30 * 3600 + 20 * 60);   /* back at 06:20:30 the next day */
	/* the scheduler thread takes the catch-up at start, or this tick does if it runs
	 * first: either way one snapshot for the 30 missed slots */
	assert_true(tick(e, "0") <= 1);
	assert_int_equal(tick(e, "0"), 0);
	sched_hours(e, got, sizeof(got));
	assert_string_equal(got, "0,30");
	assert_int_equal(tick(e, "50m"), 0); /* 07:10:30 */
	assert_int_equal(tick(e, "10m"), 1); /* 07:20:30: the 07:15 slot */
}

static void test_errors(void **state)
{
	struct env *e = *state;
	make_group(e);
	assert_int_equal(call(e, "pg.create", "{\"name\":\"g\"}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(call(e, "pg.create", "{\"name\":\"a-name-that-is-much-longer-than-forty-chars\"}", NULL),
			 ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.show", "{\"name\":\"nope\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "pg.add", "{\"name\":\"g\",\"volume\":\"nope\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "pg.add", "{\"name\":\"g\",\"pattern\":\"a/b\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.add", "{\"name\":\"g\",\"volume\":\"v1\",\"pattern\":\"v*\"}", NULL),
			 ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.schedule", "{\"name\":\"g\",\"every\":\"10s\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.retention", "{\"name\":\"g\",\"keep_all\":\"1d\",\"per_day\":4}", NULL),
			 ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.snap", "{\"name\":\"g\",\"suffix\":\"x.y\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.snap", "{\"name\":\"g\",\"suffix\":\"s\"}", NULL), 0);
	assert_int_equal(call(e, "pg.snap", "{\"name\":\"g\",\"suffix\":\"s\"}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(call(e, "pg.revert", "{\"name\":\"g\",\"snapshot\":\"zz\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "pg.restore", "{\"name\":\"g\",\"snapshot\":\"s\",\"clone_prefix\":\"a.\"}", NULL),
			 ROD_CTL_EINVAL);
	assert_int_equal(call(e, "pg.snap.destroy", "{\"name\":\"g\",\"snapshot\":\"g-s\"}", NULL), 0);
	assert_int_equal(call(e, "pg.destroy", "{\"name\":\"g\"}", NULL), 0);
	assert_int_equal(call(e, "pg.list", NULL, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_retention_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catch_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
