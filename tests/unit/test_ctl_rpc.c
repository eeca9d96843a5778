/* Unit tests for lib/ctl over the real engine in a temp directory: the JSON-RPC
 * methods (results and error codes), initiator matching for logins, the LUN maps
 * pushed to the SCSI target through the hooks, and their reload after a restart. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "rod/ctl.h"
#include "rod/store.h"

/* What the SCSI target would hold: (host, lun) -> vol. */
struct fake_map {
	struct { uint64_t host, lun, vol; } e[64];
	int n;
	uint64_t removed_vol, resized_vol, params_vol;
};

static int f_add(void *arg, uint64_t host, uint64_t lun, uint64_t vol)
{
	struct fake_map *m = arg;
	for (int i = 0; i < m->n; i++)
		if (m->e[i].host == host && m->e[i].lun == lun)
			return -EEXIST;
	m->e[m->n].host = host;
	m->e[m->n].lun = lun;
	m->e[m->n].vol = vol;
	m->n++;
	return 0;
}

static int f_remove(void *arg, uint64_t host, uint64_t lun)
{
	struct fake_map *m = arg;
	for (int i = 0; i < m->n; i++)
		if (m->e[i].host == host && m->e[i].lun == lun) {
			m->e[i] = m->e[--m->n];
			return 0;
		}
	return -ENOENT;
}

static void f_removed(void *arg, uint64_t vol)
{
	struct fake_map *m = arg;
	m->removed_vol = vol;
	for (int i = 0; i < m->n;)
		if (m->e[i].vol == vol)
			m->e[i] = m->e[--m->n];
		else
			i++;
}

static void f_resized(void *arg, uint64_t vol)
{
	((struct fake_map *)arg)->resized_vol = vol;
}

static void f_params(void *arg, uint64_t vol)
{
	((struct fake_map *)arg)->params_vol = vol;
}

/* vol at (host, lun), or 0 */
static uint64_t map_get(struct fake_map *m, uint64_t host, uint64_t lun)
{
	for (int i = 0; i < m->n; i++)
		if (m->e[i].host == host && m->e[i].lun == lun)
			return m->e[i].vol;
	return 0;
}

struct env {
	char dir[64];
	struct rod_store *store;
	struct rod_ctl *ctl;
	struct fake_map map;
};

static void env_open(struct env *e)
{
	struct rod_store_opts so = { .dir = e->dir, .create = true, .array_name = "unit", .no_gc_thread = true };
	assert_int_equal(rod_store_open(&so, &e->store), 0);
	memset(&e->map, 0, sizeof(e->map));
	const char *portals[] = { "127.0.0.1:3260", NULL };
	struct rod_ctl_opts co = {
		.store = e->store,
		.target_iqn = "iqn.2026-11.io.rodstore:unit",
		.portals = portals,
		.hooks = { f_add, f_remove, f_removed, f_resized, &e->map, f_params },
	};
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
	snprintf(e->dir, sizeof(e->dir), "/tmp/rod-test-ctl.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	env_open(e);
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
	free(e);
	return 0;
}

/* Call a method with params given as JSON text; returns the code, *res if asked. */
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

static json_int_t int_of(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void test_volumes(void **state)
{
	struct env *e = *state;
	json_t *r;
	assert_int_equal(call(e, "vol.create", "{\"name\":\"v1\",\"size\":\"64M\"}", &r), 0);
	assert_int_equal(int_of(r, "size"), 64 << 20);
	assert_int_equal(int_of(r, "block_size"), 512);
	json_decref(r);
	assert_int_equal(call(e, "vol.create", "{\"name\":\"v1\",\"size\":1048576}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(call(e, "vol.create", "{\"name\":\"a.b\",\"size\":1048576}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "vol.create", "{\"name\":\"v2\",\"size\":1000}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "vol.create", "{\"name\":\"v2\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "vol.create", "{\"name\":\"v2\",\"size\":8192,\"block_size\":4096}", NULL), 0);
	assert_int_equal(call(e, "vol.list", NULL, &r), 0);
	assert_int_equal(json_array_size(json_object_get(r, "volumes")), 2);
	json_decref(r);
	assert_int_equal(call(e, "vol.show", "{\"name\":\"nope\"}", NULL), ROD_CTL_ENOENT);
	/* resize: grow; shrink only when confirmed */
	assert_int_equal(call(e, "vol.resize", "{\"name\":\"v1\",\"size\":\"128M\"}", &r), 0);
	assert_int_equal(int_of(r, "size"), 128 << 20);
	assert_int_equal(e->map.resized_vol, int_of(r, "id"));
	json_decref(r);
	assert_int_equal(call(e, "vol.resize", "{\"name\":\"v1\",\"size\":\"1M\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "vol.resize", "{\"name\":\"v1\",\"size\":\"1M\",\"shrink\":true}", NULL), 0);
	/* cache mode and offload switch: stored, and the target told */
	assert_int_equal(call(e, "vol.set", "{\"name\":\"v2\",\"cache\":\"write-back\",\"offload\":false}", &r), 0);
	assert_string_equal(json_string_value(json_object_get(r, "cache")), "write-back");
	assert_true(json_is_false(json_object_get(r, "offload")));
	assert_int_equal(e->map.params_vol, int_of(r, "id"));
	json_decref(r);
	assert_int_equal(call(e, "vol.show", "{\"name\":\"v2\"}", &r), 0);
	assert_string_equal(json_string_value(json_object_get(r, "cache")), "write-back");
	json_decref(r);
	assert_int_equal(call(e, "vol.set", "{\"name\":\"v2\",\"cache\":\"never\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "vol.set", "{\"name\":\"v2\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "vol.set", "{\"name\":\"zz\",\"cache\":\"write-back\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "vol.destroy", "{\"name\":\"v2\"}", NULL), 0);
	assert_int_equal(call(e, "vol.show", "{\"name\":\"v2\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "vol.destroy", "{\"name\":\"v2\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "nope.nope", NULL, NULL), ROD_CTL_ENOMETHOD);
}

static void test_hosts_and_logins(void **state)
{
	struct env *e = *state;
	struct rod_iscsi_auth a;
	json_t *r;
	uint64_t exact_id, redhat_id, any_id;
	assert_int_equal(rod_ctl_auth_lookup(e->ctl, "iqn.1994-05.com.redhat:x", &a), -ENOENT);
	assert_int_equal(call(e, "host.create", "{\"name\":\"any\",\"iqn\":\"*\"}", &r), 0);
	any_id = (uint64_t)int_of(r, "id");
	json_decref(r);
	assert_int_equal(call(e, "host.create", "{\"name\":\"redhat\",\"iqns\":[\"iqn.1994-05.com.redhat:*\"]}", &r), 0);
	redhat_id = (uint64_t)int_of(r, "id");
	json_decref(r);
	assert_int_equal(call(e, "host.create",
			      "{\"name\":\"exact\",\"iqn\":\"IQN.1994-05.com.redhat:Web1\",\"chap_user\":\"u\","
			      "\"chap_secret\":\"0123456789ab\"}", &r), 0);
	exact_id = (uint64_t)int_of(r, "id");
	/* stored lowercase, secret not shown */
	assert_string_equal(json_string_value(json_array_get(json_object_get(r, "iqns"), 0)),
			    "iqn.1994-05.com.redhat:web1");
	assert_null(json_object_get(r, "chap_secret"));
	json_decref(r);
	assert_true(any_id != redhat_id && redhat_id != exact_id);

	/* exact beats glob, longer glob beats shorter */
	assert_int_equal(rod_ctl_auth_lookup(e->ctl, "iqn.1994-05.com.redhat:web1", &a), 0);
	assert_int_equal(a.host_id, exact_id);
	assert_string_equal(a.chap_user, "u");
	assert_string_equal(a.chap_secret, "0123456789ab");
	assert_int_equal(rod_ctl_auth_lookup(e->ctl, "iqn.1994-05.com.redhat:web2", &a), 0);
	assert_int_equal(a.host_id, redhat_id);
	assert_string_equal(a.chap_user, "");
	assert_int_equal(rod_ctl_auth_lookup(e->ctl, "iqn.1998-01.com.vmware:esx", &a), 0);
	assert_int_equal(a.host_id, any_id);

	/* conflicts: same name, IQN owned elsewhere, tie of globs */
	assert_int_equal(call(e, "host.create", "{\"name\":\"any\",\"iqn\":\"iqn.2000-01.x:y\"}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h2\",\"iqn\":\"iqn.1994-05.com.redhat:web1\"}", NULL),
			 ROD_CTL_EEXIST);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h2\",\"iqn\":\"iqn.1994-05.com.redhat:?\"}", NULL),
			 ROD_CTL_EEXIST); /* ties with redhat:* on "...:a" */
	assert_int_equal(call(e, "host.create", "{\"name\":\"h2\",\"iqn\":\"iqn.1994-05.com.redhat:??\"}", NULL), 0);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\",\"iqn\":\"iqn.1994-05.com.redha?:*\"}", NULL),
			 ROD_CTL_EEXIST);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\",\"iqn\":\"server1\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\"}", NULL), ROD_CTL_EINVAL);
	/* CHAP rules */
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\",\"iqn\":\"iqn.2000-01.x:h3\",\"chap_user\":\"u\","
			      "\"chap_secret\":\"short\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\",\"iqn\":\"iqn.2000-01.x:h3\",\"mutual_user\":\"t\","
			      "\"mutual_secret\":\"0123456789ab\"}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\",\"iqn\":\"iqn.2000-01.x:h3\",\"chap_user\":\"u\","
			      "\"chap_secret\":\"0123456789ab\",\"mutual_user\":\"t\",\"mutual_secret\":\"0123456789ab\"}",
			      NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h3\",\"iqn\":\"iqn.2000-01.x:h3\",\"chap_user\":\"u\","
			      "\"chap_secret\":\"0123456789ab\",\"mutual_user\":\"t\",\"mutual_secret\":\"ba9876543210\"}",
			      NULL), 0);
	assert_int_equal(rod_ctl_auth_lookup(e->ctl, "iqn.2000-01.x:h3", &a), 0);
	assert_string_equal(a.mutual_user, "t");
	assert_string_equal(a.mutual_secret, "ba9876543210");
}

static void test_connections_survive_restart(void **state)
{
	struct env *e = *state;
	json_t *r;
	struct rod_iscsi_auth a;
	assert_int_equal(call(e, "vol.create", "{\"name\":\"a\",\"size\":\"1M\"}", &r), 0);
	uint64_t va = (uint64_t)int_of(r, "id");
	json_decref(r);
	assert_int_equal(call(e, "vol.create", "{\"name\":\"b\",\"size\":\"1M\"}", &r), 0);
	uint64_t vb = (uint64_t)int_of(r, "id");
	json_decref(r);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h\",\"iqn\":\"iqn.2000-01.x:h\"}", &r), 0);
	uint64_t h = (uint64_t)int_of(r, "id");
	json_decref(r);
	assert_int_equal(call(e, "host.create", "{\"name\":\"g\",\"iqn\":\"*\"}", &r), 0);
	uint64_t g = (uint64_t)int_of(r, "id");
	json_decref(r);

	assert_int_equal(call(e, "host.connect", "{\"host\":\"h\",\"volume\":\"a\",\"lun\":4}", NULL), 0);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"h\",\"volume\":\"b\"}", &r), 0);
	assert_int_equal(int_of(r, "lun"), 0);        /* lowest free */
	json_decref(r);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"g\",\"volume\":\"a\"}", NULL), 0);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"h\",\"volume\":\"a\"}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"g\",\"volume\":\"b\",\"lun\":0}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"g\",\"volume\":\"b\",\"lun\":16384}", NULL), ROD_CTL_EINVAL);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"x\",\"volume\":\"b\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "host.connect", "{\"host\":\"g\",\"volume\":\"x\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "host.delete", "{\"name\":\"h\"}", NULL), ROD_CTL_EEXIST);
	assert_int_equal(map_get(&e->map, h, 4), va);
	assert_int_equal(map_get(&e->map, h, 0), vb);
	assert_int_equal(map_get(&e->map, g, 0), va);
	assert_int_equal(e->map.n, 3);

	/* restart: the same maps are pushed again, logins still match */
	env_close(e);
	env_open(e);
	assert_int_equal(e->map.n, 3);
	assert_int_equal(map_get(&e->map, h, 4), va);
	assert_int_equal(map_get(&e->map, h, 0), vb);
	assert_int_equal(map_get(&e->map, g, 0), va);
	assert_int_equal(rod_ctl_auth_lookup(e->ctl, "iqn.2000-01.x:h", &a), 0);
	assert_int_equal(a.host_id, h);

	/* disconnect and destroy */
	assert_int_equal(call(e, "host.disconnect", "{\"host\":\"h\",\"volume\":\"b\"}", NULL), 0);
	assert_int_equal(map_get(&e->map, h, 0), 0);
	assert_int_equal(call(e, "host.disconnect", "{\"host\":\"h\",\"volume\":\"b\"}", NULL), ROD_CTL_ENOENT);
	assert_int_equal(call(e, "vol.destroy", "{\"name\":\"a\"}", NULL), 0);
	assert_int_equal(e->map.removed_vol, va);
	assert_int_equal(e->map.n, 0);
	assert_int_equal(call(e, "host.show", "{\"name\":\"h\"}", &r), 0);
	assert_int_equal(json_array_size(json_object_get(r, "connections")), 0);
	json_decref(r);
	env_close(e);
	env_open(e);
	assert_int_equal(e->map.n, 0);
	/* host ids are never reused */
	assert_int_equal(call(e, "host.delete", "{\"name\":\"h\"}", NULL), 0);
	env_close(e);
	env_open(e);
	assert_int_equal(call(e, "host.create", "{\"name\":\"h\",\"iqn\":\"iqn.2000-01.x:h\"}", &r), 0);
	assert_true((uint64_t)int_of(r, "id") > g);
	json_decref(r);
}

static void test_jsonrpc_text(void **state)
{
	struct env *e = *state;
	char *out;
	json_t *j;
	out = rod_ctl_handle_text(e->ctl, "{nope", 5);
	j = json_loads(out, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "code")), ROD_CTL_EPARSE);
	json_decref(j);
	free(out);
	const char *req = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"array.show\"}";
	out = rod_ctl_handle_text(e->ctl, req, strlen(req));
	j = json_loads(out, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "result"), "target_iqn")),
			    "iqn.2026-11.io.rodstore:unit");
	json_decref(j);
	free(out);
	req = "{\"jsonrpc\":\"2.0\",\"method\":\"vol.create\",\"params\":{\"name\":\"n\",\"size\":512}}";
	assert_null(rod_ctl_handle_text(e->ctl, req, strlen(req)));  /* notification: runs, no answer */
	assert_int_equal(call(e, "vol.show", "{\"name\":\"n\"}", NULL), 0);
	req = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vol.list\"}]";
	out = rod_ctl_handle_text(e->ctl, req, strlen(req));
	assert_non_null(strstr(out, "-32600"));
	free(out);
	req = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vol.show\",\"params\":{\"name\":\"zz\"}}";
	out = rod_ctl_handle_text(e->ctl, req, strlen(req));
	j = json_loads(out, 0, NULL);
	json_t *err = json_object_get(j, "error");
	assert_int_equal(json_integer_value(json_object_get(err, "code")), ROD_CTL_ENOENT);
	assert_string_equal(json_string_value(json_object_get(json_object_get(err, "data"), "kind")), "not_found");
	assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "rodctl vol list"));
	json_decref(j);
	free(out);
}

static void test_socket(void **state)
{
	struct env *e = *state;
	char path[100]; /* fits sun_path */
	struct rod_ctl_server *s;
	snprintf(path, sizeof(path), "%s/sub/ctl.sock", e->dir);
	assert_int_equal(rod_ctl_server_new(e->ctl, path, &s), 0);
	assert_int_equal(rod_ctl_server_start(s), 0);
	/* a second server on the same path is refused while the first answers */
	struct rod_ctl_server *s2;
	assert_int_equal(rod_ctl_server_new(e->ctl, path, &s2), -EADDRINUSE);

	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* two requests in one write, answered in order, one line each */
	const char *reqs = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vol.create\",\"params\":{\"name\":\"s\",\"size\":4096}}\n"
			   "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vol.list\"}\n";
	assert_int_equal(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
	char buf[65536];
	size_t got = 0;
	int lines = 0;
	while (lines < 2) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++)
			lines += buf[got + (size_t)i] == '\n';
		got += (size_t)n;
	}
	buf[got] = '\0';
	char *nl = strchr(buf, '\n');
	*nl = '\0';
	json_t *a = json_loads(buf, 0, NULL), *b = json_loads(nl + 1, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(a, "id")), 1);
	assert_int_equal(json_integer_value(json_object_get(b, "id")), 2);
	assert_int_equal(json_array_size(json_object_get(json_object_get(b, "result"), "volumes")), 1);
	json_decref(a);
	json_decref(b);
	/* an over-long line: an error, then the server closes the connection */
	char *big = malloc(2u << 20);
	memset(big, ' ', 2u << 20);
	ssize_t w = send(fd, big, 2u << 20, MSG_NOSIGNAL);
	(void)w;
	free(big);
	got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	assert_non_null(strstr(buf, "-32700"));
	close(fd);
	rod_ctl_server_free(s);
	assert_int_equal(access(path, F_OK), -1); /* socket removed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hosts_and_logins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connections_survive_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jsonrpc_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
