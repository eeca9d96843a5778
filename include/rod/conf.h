/* rod.conf: rodd's configuration file (INI syntax, libinih), see rod.conf(5).
 * The parser lives here, outside rodd's main, so that rodd and the fuzz target
 * (tests/fuzz/fuzz_rod_conf.c) run the same code. */
#ifndef ROD_CONF_H
#define ROD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROD_CONF_LISTEN_MAX 16

/* What a config file (or rodd's command line) sets; NULL / 0 = not set. The
 * caller owns it: start from a zeroed struct, release with rod_conf_release. */
struct rod_conf {
	char *data, *socket, *pidfile, *key_file, *array_name;
	char *http;                     /* HTTP API + /metrics address */
	bool http_allow_remote;
	uint64_t capacity;              /* store size limit in bytes; 0 = the file system's size */
	char *listen[ROD_CONF_LISTEN_MAX + 1];  /* NULL-terminated once rodd adds a default */
	int n_listen;
	int log_level;                  /* enum rod_log_level + 1; 0 = not set */
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

#endif
