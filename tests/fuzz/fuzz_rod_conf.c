/* Fuzz target: the rod.conf parser (lib/ctl/conf.c, libinih underneath).
 * Input: the config text itself.
 * Checks, besides no crash / sanitizer report / leak:
 *  - the result is 0, -EINVAL (with a "FILE:LINE: ..." message) or -ENOMEM;
 *  - what an accepted file sets is valid: listen addresses pass the same check as
 *    --listen and are at most 16, array_name is a valid name, capacity > 0 when set,
 *    log_level within its range, http a valid ADDR:PORT;
 *  - parsing the same bytes from a file (rodd's path: rod_conf_parse_file) gives the
 *    same result, the same message and the same settings as from the buffer. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rod/conf.h"
#include "rod/util.h"

static char path[64];

static void cleanup(void)
{
	if (path[0])
		unlink(path);
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_rod_conf: %s\n", what);
		abort();
	}
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_valid(const struct rod_conf *c)
{
	const char *why;
	check(c->n_listen >= 0 && c->n_listen <= ROD_CONF_LISTEN_MAX, "listen count out of range");
	for (int i = 0; i < c->n_listen; i++)
		check(c->listen[i] && rod_conf_listen_valid(c->listen[i], &why), "invalid listen accepted");
	check(!c->array_name || rod_name_valid(c->array_name), "invalid array_name accepted");
	check(!c->http || rod_conf_listen_valid(c->http, &why), "invalid http accepted");
	check(!c->replication || rod_conf_listen_valid(c->replication, &why), "invalid replication accepted");
	check(c->log_level >= 0 && c->log_level <= 4, "log_level out of range");
	const char *strs[] = { c->data, c->socket, c->pidfile, c->key_file };
	for (size_t i = 0; i < ROD_ARRAY_SIZE(strs); i++)
		check(!strs[i] || strs[i][0] != '\0', "empty value accepted");
}

static void check_same(const struct rod_conf *a, const struct rod_conf *b)
{
	check(str_eq(a->data, b->data) && str_eq(a->socket, b->socket) && str_eq(a->pidfile, b->pidfile) &&
		      str_eq(a->key_file, b->key_file) && str_eq(a->array_name, b->array_name) &&
		      str_eq(a->http, b->http) && str_eq(a->replication, b->replication),
	      "buffer and file parse differ (strings)");
	check(a->http_allow_remote == b->http_allow_remote && a->capacity == b->capacity &&
		      a->log_level == b->log_level && a->n_listen == b->n_listen,
	      "buffer and file parse differ (values)");
	for (int i = 0; i < a->n_listen; i++)
		check(str_eq(a->listen[i], b->listen[i]), "buffer and file parse differ (listen)");
	/* the limit keys (scalars only): field by field, padding aside */
	const struct rod_conf_limits *la = &a->limits, *lb = &b->limits;
	check(la->max_volumes == lb->max_volumes && la->max_sessions == lb->max_sessions &&
		      la->max_odx_tokens == lb->max_odx_tokens && la->recovery_window_s == lb->recovery_window_s &&
		      la->has_recovery_window == lb->has_recovery_window && la->gc_rate == lb->gc_rate &&
		      la->gc_threshold_pct == lb->gc_threshold_pct && la->job_workers == lb->job_workers &&
		      la->http_require_token == lb->http_require_token &&
		      la->metrics_interval_s == lb->metrics_interval_s,
	      "buffer and file parse differ (limits)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!path[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(path, sizeof(path), "%s/rod-fuzz-conf-%d", tmp && strlen(tmp) < 32 ? tmp : "/tmp",
			 (int)getpid());
		atexit(cleanup);
	}
	struct rod_conf a = { 0 }, b = { 0 };
	char ea[2048] = "", eb[2048] = "";
	int ra = rod_conf_parse_buf((const char *)data, size, path, &a, ea, sizeof(ea));
	check(ra == 0 || ra == -EINVAL || ra == -ENOMEM, "unexpected return value");
	if (ra == -EINVAL)
		check(!strncmp(ea, path, strlen(path)) && ea[strlen(path)] == ':' && ea[strlen(path) + 1] >= '1' &&
			      ea[strlen(path) + 1] <= '9',
		      "error message without FILE:LINE");
	if (ra == 0)
		check_valid(&a);

	FILE *f = fopen(path, "w");
	check(f != NULL, "cannot create the temp file");
	check(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write the temp file");
	int rb = rod_conf_parse_file(path, &b, eb, sizeof(eb));
	check(ra == rb, "buffer and file parse return differently");
	check(!strcmp(ea, eb), "buffer and file parse report differently");
	if (ra == 0)
		check_same(&a, &b);
	rod_conf_release(&a);
	rod_conf_release(&b);
	return 0;
}
