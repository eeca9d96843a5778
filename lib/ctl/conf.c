/* rod.conf parser (moved out of cmd/rodd/main.c; messages unchanged). libinih does
 * the INI syntax; the handler below checks every key and keeps the first error. */
#include "rod/conf.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

int rod_conf_set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

void rod_conf_release(struct rod_conf *c)
{
	free(c->data);
	free(c->socket);
	free(c->pidfile);
	free(c->key_file);
	free(c->array_name);
	free(c->http);
	free(c->replication);
	for (int i = 0; i < c->n_listen; i++)
		free(c->listen[i]);
	memset(c, 0, sizeof(*c));
}

bool rod_conf_listen_valid(const char *s, const char **why)
{
	const char *colon;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':') {
			*why = "an IPv6 address is written [ADDR]:PORT";
			return false;
		}
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s))) {
			*why = "expected ADDR:PORT (IPv6 as [ADDR]:PORT)";
			return false;
		}
	}
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 0 || port > 65535) {
		*why = "the port must be a number from 0 to 65535";
		return false;
	}
	return true;
}

int rod_conf_add_listen(struct rod_conf *c, const char *v, const char **why)
{
	if (!rod_conf_listen_valid(v, why))
		return -EINVAL;
	if (c->n_listen == ROD_CONF_LISTEN_MAX) {
		*why = "too many listen addresses (at most 16)";
		return -EINVAL;
	}
	char *copy = strdup(v);
	if (!copy) {
		*why = "out of memory";
		return -ENOMEM;
	}
	c->listen[c->n_listen++] = copy;
	return 0;
}

/* ---- limits --------------------------------------------------------------------- */

#define RECOVERY_WINDOW_MAX_S (30 * 24 * 3600)   /* as rodctl array set */
#define JOB_WORKERS_MAX 16
#define LIMIT_MAX (1ull << 40)

const char rod_conf_limit_keys[] = "max_volumes, max_sessions, max_odx_tokens, recovery_window, gc_rate, "
				   "gc_threshold, job_workers, "
				   "http_require_token, metrics_interval";

/* A count: a number, or "unlimited" (0). */
static int limit_count(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!strcmp(v, "unlimited")) {
		*out = 0;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || end == v || v[0] == '-' || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

/* A duration: N with s, m, h or d (a bare number is seconds), at most 30 days. */
static int limit_duration(const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || end == v || v[0] == '-')
		return -EINVAL;
	uint64_t mul = 1;
	if (*end == 'm')
		mul = 60;
	else if (*end == 'h')
		mul = 3600;
	else if (*end == 'd')
		mul = 86400;
	else if (*end && *end != 's')
		return -EINVAL;
	if (*end && end[1])
		return -EINVAL;
	if (n > RECOVERY_WINDOW_MAX_S / mul)
		return -EINVAL;
	*out = n * mul;
	return 0;
}

int rod_conf_limit_set(struct rod_conf_limits *l, const char *key, const char *v, char *err, size_t errlen)
{
	const char *what = NULL;
	if (!strcmp(key, "max_volumes")) {
		if (limit_count(v, 1, LIMIT_MAX, &l->max_volumes))
			what = "a number of volumes and snapshots (at least 1) or unlimited";
	} else if (!strcmp(key, "max_sessions")) {
		if (limit_count(v, 1, 65535, &l->max_sessions))
			what = "a number of iSCSI sessions from 1 to 65535, or unlimited";
	} else if (!strcmp(key, "max_odx_tokens")) {
		if (limit_count(v, 16, 1u << 20, &l->max_odx_tokens) || !l->max_odx_tokens)
			what = "a number of ROD tokens from 16 to 1048576";
	} else if (!strcmp(key, "recovery_window")) {
		if (limit_duration(v, &l->recovery_window_s))
			what = "a duration up to 30d (e.g. 24h, 90m, 2d, 0 for none)";
		else
			l->has_recovery_window = true;
	} else if (!strcmp(key, "gc_rate")) {
		if (!strcmp(v, "unlimited"))
			l->gc_rate = 0;
		else if (rod_parse_size(v, &l->gc_rate) || l->gc_rate < (1u << 20))
			what = "a rate in bytes per second of at least 1M (e.g. 64M), or unlimited";
	} else if (!strcmp(key, "gc_threshold")) {
		size_t n = strlen(v);
		char num[16];
		if (n && v[n - 1] == '%')
			n--;
		snprintf(num, sizeof(num), "%.*s", (int)(n < sizeof(num) ? n : sizeof(num) - 1), v);
		if (!strcmp(v, "off"))
			l->gc_threshold_pct = 0;
		else if (n >= sizeof(num) || limit_count(num, 1, 99, &l->gc_threshold_pct) || !l->gc_threshold_pct)
			what = "a used-space percentage from 1 to 99 (e.g. 70%), or off";
	} else if (!strcmp(key, "job_workers")) {
		if (limit_count(v, 1, JOB_WORKERS_MAX, &l->job_workers) || !l->job_workers)
			what = "a number of jobs run at once, from 1 to 16";
	} else if (!strcmp(key, "metrics_interval")) {
		if (limit_duration(v, &l->metrics_interval_s) || l->metrics_interval_s < 1 || l->metrics_interval_s > 3600)
			what = "a duration from 1s to 1h (e.g. 10s)";
	} else if (!strcmp(key, "http_require_token")) {
		if (!strcmp(v, "yes") || !strcmp(v, "true"))
			l->http_require_token = 1;
		else if (!strcmp(v, "no") || !strcmp(v, "false"))
			l->http_require_token = 2;
		else
			what = "yes or no";
	} else {
		return -ENOENT;
	}
	if (what) {
		if (err && errlen)
			snprintf(err, errlen, "%s \"%s\": expected %s", key, v, what);
		return -EINVAL;
	}
	return 0;
}

void rod_conf_limits_merge(struct rod_conf_limits *d, const struct rod_conf_limits *s)
{
	if (s->max_volumes)
		d->max_volumes = s->max_volumes;
	if (s->max_sessions)
		d->max_sessions = s->max_sessions;
	if (s->max_odx_tokens)
		d->max_odx_tokens = s->max_odx_tokens;
	if (s->has_recovery_window) {
		d->recovery_window_s = s->recovery_window_s;
		d->has_recovery_window = true;
	}
	if (s->gc_rate)
		d->gc_rate = s->gc_rate;
	if (s->gc_threshold_pct)
		d->gc_threshold_pct = s->gc_threshold_pct;
	if (s->job_workers)
		d->job_workers = s->job_workers;
	if (s->http_require_token)
		d->http_require_token = s->http_require_token;
	if (s->metrics_interval_s)
		d->metrics_interval_s = s->metrics_interval_s;
}

/* "key = <v><unit>" when the limit is set, else "key = <unset>". */
static void print_limit(FILE *f, const char *key, bool set, uint64_t v, const char *unit,
			const char *unset)
{
	if (set)
		fprintf(f, "%s = %llu%s\n", key, (unsigned long long)v, unit);
	else
		fprintf(f, "%s = %s\n", key, unset);
}

void rod_conf_limits_print(FILE *f, const struct rod_conf_limits *l)
{
	print_limit(f, "max_volumes", l->max_volumes, l->max_volumes, "", "unlimited");
	print_limit(f, "max_sessions", l->max_sessions, l->max_sessions, "", "unlimited");
	print_limit(f, "max_odx_tokens", l->max_odx_tokens, l->max_odx_tokens, "", "default");
	print_limit(f, "recovery_window", l->has_recovery_window, l->recovery_window_s, "s",
		    "default (24h unless rodctl array set stored one)");
	print_limit(f, "gc_rate", l->gc_rate, l->gc_rate, "", "unlimited");
	print_limit(f, "gc_threshold", l->gc_threshold_pct, l->gc_threshold_pct, "%", "off");
	fprintf(f, "job_workers = %llu\n", (unsigned long long)(l->job_workers ? l->job_workers : 1));
	fprintf(f, "http_require_token = %s\n", l->http_require_token == 2 ? "no" : "yes");
	fprintf(f, "metrics_interval = %llus\n", (unsigned long long)(l->metrics_interval_s ? l->metrics_interval_s : 10));
}

struct conf_ctx {
	struct rod_conf *c;
	char err[512];          /* first error, reported with the line ini_parse returns */
};

/* A listen address key (http, replication): 1 when valid and stored, else 0 with the
 * first error in x->err. */
static int conf_listen(struct conf_ctx *x, const char *name, const char *value, char **dst)
{
	const char *why = NULL;

	if (!rod_conf_listen_valid(value, &why)) {
		if (!x->err[0])
			snprintf(x->err, sizeof(x->err), "%s \"%s\": %s", name, value, why);
		return 0;
	}
	return rod_conf_set_str(dst, value) == 0;
}

static int conf_handler(void *arg, const char *section, const char *name, const char *value)
{
	struct conf_ctx *x = arg;
	struct rod_conf *st = x->c;
	const char *why = NULL;
	if (section[0] && strcmp(section, "rodd")) {
		if (!x->err[0])
			snprintf(x->err, sizeof(x->err), "unknown section [%s] (keys go at the top or under [rodd])",
				 section);
		return 0;
	}
	if (!value[0]) {
		snprintf(x->err, sizeof(x->err), "key \"%s\" has an empty value", name);
		return 0;
	}
	if (!strcmp(name, "data"))
		return rod_conf_set_str(&st->data, value) == 0;
	if (!strcmp(name, "socket"))
		return rod_conf_set_str(&st->socket, value) == 0;
	if (!strcmp(name, "pidfile"))
		return rod_conf_set_str(&st->pidfile, value) == 0;
	if (!strcmp(name, "key_file"))
		return rod_conf_set_str(&st->key_file, value) == 0;
	if (!strcmp(name, "array_name")) {
		if (!rod_name_valid(value)) {
			if (!x->err[0])
				snprintf(x->err, sizeof(x->err),
					 "array_name \"%s\" is not valid (letters, digits, '-' and '_', 1-63 characters)",
					 value);
			return 0;
		}
		return rod_conf_set_str(&st->array_name, value) == 0;
	}
	if (!strcmp(name, "http"))
		return conf_listen(x, name, value, &st->http);
	if (!strcmp(name, "replication"))
		return conf_listen(x, name, value, &st->replication);
	if (!strcmp(name, "http_allow_remote")) {
		if (strcmp(value, "yes") && strcmp(value, "no") && strcmp(value, "true") && strcmp(value, "false")) {
			if (!x->err[0])
				snprintf(x->err, sizeof(x->err), "http_allow_remote must be yes or no");
			return 0;
		}
		st->http_allow_remote = !strcmp(value, "yes") || !strcmp(value, "true");
		return 1;
	}
	if (!strcmp(name, "capacity")) {
		if (rod_parse_size(value, &st->capacity) || !st->capacity) {
			if (!x->err[0])
				snprintf(x->err, sizeof(x->err), "capacity \"%s\" is not a size (e.g. 128M, 2T)", value);
			return 0;
		}
		return 1;
	}
	if (!strcmp(name, "log_level")) {
		static const char *const levels[] = { "error", "warn", "info", "debug" };
		for (size_t i = 0; i < ROD_ARRAY_SIZE(levels); i++)
			if (!strcmp(value, levels[i])) {
				st->log_level = (int)i + 1;
				return 1;
			}
		if (!x->err[0])
			snprintf(x->err, sizeof(x->err), "log_level must be error, warn, info or debug");
		return 0;
	}
	if (!strcmp(name, "listen")) {
		/* several addresses on one line (comma or space separated) or one per line */
		char *copy = strdup(value), *save = NULL;
		if (!copy)
			return 0;
		for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
			if (rod_conf_add_listen(st, tok, &why)) {
				if (!x->err[0])
					snprintf(x->err, sizeof(x->err), "listen \"%s\": %s", tok, why);
				free(copy);
				return 0;
			}
		}
		free(copy);
		return 1;
	}
	char lerr[sizeof(x->err)];
	int lrc = rod_conf_limit_set(&st->limits, name, value, lerr, sizeof(lerr));
	if (lrc == 0)
		return 1;
	if (lrc == -EINVAL) {
		if (!x->err[0])
			snprintf(x->err, sizeof(x->err), "%s", lerr);
		return 0;
	}
	if (!x->err[0])
		snprintf(x->err, sizeof(x->err),
			 "unknown key \"%s\" (known: data, listen, socket, pidfile, key_file, array_name, http, "
			 "http_allow_remote, replication, capacity, log_level, %s)", name, rod_conf_limit_keys);
	return 0;
}

/* ini_reader over a buffer with a length: like fgets, one line (or num-1 bytes). */
struct conf_buf {
	const char *p;
	size_t left;
};

static char *conf_buf_read(char *str, int num, void *stream)
{
	struct conf_buf *b = stream;
	if (!b->left || num < 2)
		return NULL;
	size_t n = 0, max = (size_t)num - 1;
	while (n < max && n < b->left) {
		char ch = b->p[n++];
		if (ch == '\n')
			break;
	}
	memcpy(str, b->p, n);
	str[n] = '\0';
	b->p += n;
	b->left -= n;
	return str;
}

static int conf_result(int line, const struct conf_ctx *x, const char *filename, char *err, size_t errlen)
{
	if (line == 0)
		return 0;
	if (line < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot parse (out of memory)", filename);
		return -ENOMEM;
	}
	if (err && errlen)
		snprintf(err, errlen, "%s:%d: %s", filename, line,
			 x->err[0] ? x->err : "syntax error (expected \"key = value\" or \"[rodd]\")");
	return -EINVAL;
}

int rod_conf_parse_buf(const char *text, size_t len, const char *filename, struct rod_conf *out,
		       char *err, size_t errlen)
{
	struct conf_ctx x = { .c = out };
	struct conf_buf b = { text, len };
	return conf_result(ini_parse_stream(conf_buf_read, &b, conf_handler, &x), &x, filename, err, errlen);
}

int rod_conf_parse_file(const char *path, struct rod_conf *out, char *err, size_t errlen)
{
	struct conf_ctx x = { .c = out };
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		if (err && errlen)
			snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(e));
		return -e;
	}
	int line = ini_parse_file(f, conf_handler, &x);
	fclose(f);
	return conf_result(line, &x, path, err, errlen);
}
