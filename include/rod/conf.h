/* rod.conf: rodd's configuration file (INI syntax, libinih), see rod.conf(5).
 * The parser lives here, outside rodd's main, so that rodd and the fuzz target
 * (tests/fuzz/fuzz_rod_conf.c) run the same code. */
#ifndef ROD_CONF_H
#define ROD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ROD_CONF_LISTEN_MAX 16

/* Limits an administrator sets (rod.conf(5) "LIMITS"); 0 = not set (the default).
 * Command line: rodd --limit KEY=VALUE. */
struct rod_conf_limits {
	uint64_t max_volumes;           /* volumes + snapshots (not destroyed); default unlimited */
	uint64_t max_sessions;          /* logged-in iSCSI sessions; default unlimited */
	uint64_t max_odx_tokens;        /* ROD token table size (restart); default the SCSI layer's */
	uint64_t recovery_window_s;     /* destroyed items kept; valid when has_recovery_window */
	bool has_recovery_window;
	uint64_t gc_rate;               /* GC job reading, bytes/s; default unlimited */
	uint64_t gc_threshold_pct;      /* used % starting a background GC job; default off */
	uint64_t job_workers;           /* jobs run at once; default 1 */
	int http_require_token;         /* 0 not set (yes), 1 yes, 2 no: loopback clients need none */
	uint64_t metrics_interval_s;    /* /metrics space figures recomputed at most this often; default 10 */
};

/* What a config file (or rodd's command line) sets; NULL / 0 = not set. The
 * caller owns it: start from a zeroed struct, release with rod_conf_release. */
struct rod_conf {
	char *data, *socket, *pidfile, *key_file, *array_name;
	char *http;                     /* HTTP API + /metrics address */
	char *replication;              /* replication listener (docs/protection.md) */
	bool http_allow_remote;
	uint64_t capacity;              /* store size limit in bytes; 0 = the file system's size */
	char *listen[ROD_CONF_LISTEN_MAX + 1];  /* NULL-terminated once rodd adds a default */
	int n_listen;
	int log_level;                  /* enum rod_log_level + 1; 0 = not set */
	struct rod_conf_limits limits;
};

/* Parse a config text of len bytes (need not be NUL-terminated; a NUL ends its line)
 * into out, adding to what out already holds. filename only names the text in err.
 * 0, or -EINVAL (err: "FILE:LINE: what is wrong"; out then holds what the good keys
 * set, release it) or -ENOMEM. err may be NULL. */
int rod_conf_parse_buf(const char *text, size_t len, const char *filename, struct rod_conf *out,
		       char *err, size_t errlen);
/* The same for a file; -errno when it cannot be read (err: "cannot read config file
 * PATH: reason"). */
int rod_conf_parse_file(const char *path, struct rod_conf *out, char *err, size_t errlen);
void rod_conf_release(struct rod_conf *c);

/* Helpers shared with rodd's command line. */
int rod_conf_set_str(char **dst, const char *v);        /* 0 or -ENOMEM */
/* "ADDR:PORT" or "[v6]:PORT" with a port 0-65535; *why says what is wrong. */
bool rod_conf_listen_valid(const char *s, const char **why);
/* Append one listen address: 0 or -EINVAL (*why) / -ENOMEM. */
int rod_conf_add_listen(struct rod_conf *c, const char *v, const char **why);

/* One limit key (as in the file, or rodd --limit KEY=VALUE) into l. 0, or -EINVAL with
 * err saying what is wrong; -ENOENT unknown key. */
int rod_conf_limit_set(struct rod_conf_limits *l, const char *key, const char *value, char *err, size_t errlen);
/* Copy the limits set in src over dst (the command line over the file). */
void rod_conf_limits_merge(struct rod_conf_limits *dst, const struct rod_conf_limits *src);
/* The effective limits, defaults filled in, as rod.conf lines (rodd --check-config). */
void rod_conf_limits_print(FILE *f, const struct rod_conf_limits *l);
/* The limit keys, as a list for messages. */
extern const char rod_conf_limit_keys[];

#endif
