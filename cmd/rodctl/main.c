/* rodctl: the administrator's CLI. Talks JSON-RPC 2.0 to rodd over its unix socket
 * (one request per line, see docs/rodctl.md). Human tables by default, --json for
 * scripts; exit codes: 0 ok, 1 usage, 2 not found, 3 conflict/exists, 4 daemon
 * unreachable, 5 other. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "rod/util.h"

#define DEFAULT_SOCKET "/run/rodstore/rodd.sock"
#define RESP_MAX (64u << 20)

enum { EX_OK = 0, EX_USAGE = 1, EX_NOTFOUND = 2, EX_CONFLICT = 3, EX_UNREACHABLE = 4, EX_OTHER = 5 };

static const char *g_socket;
static bool g_json;

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int code, const char *fmt, ...)
{
	va_list ap;
	fputs("rodctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* ---- transport ------------------------------------------------------------------ */

static int rpc(const char *method, json_t *params, json_t **result)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	*result = NULL;
	if (strlen(g_socket) >= sizeof(sa.sun_path)) {
		json_decref(params);
		return die(EX_USAGE, "socket path %s is too long", g_socket);
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		json_decref(params);
		return die(EX_UNREACHABLE,
			   "cannot reach rodd at %s: %s (is rodd running? use --socket or ROD_SOCKET to point at its socket)",
			   g_socket, strerror(e));
	}
	json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1, "method", method, "params",
				params ? params : json_object());
	char *txt = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	size_t len = strlen(txt);
	txt = realloc(txt, len + 2);
	txt[len++] = '\n';
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, txt + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(txt);
			close(fd);
			return die(EX_UNREACHABLE, "lost the connection to rodd at %s: %s", g_socket, strerror(errno));
		}
		off += (size_t)n;
	}
	free(txt);
	size_t cap = 65536, got = 0;
	char *buf = malloc(cap);
	char *nl = NULL;
	while (!nl) {
		if (got == cap) {
			if (cap >= RESP_MAX) {
				free(buf);
				close(fd);
				return die(EX_OTHER, "response from rodd is too large");
			}
			cap *= 2;
			buf = realloc(buf, cap);
		}
		ssize_t n = recv(fd, buf + got, cap - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			close(fd);
			return die(EX_UNREACHABLE, "rodd at %s closed the connection without answering", g_socket);
		}
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	close(fd);
	json_error_t jerr;
	json_t *resp = json_loadb(buf, (size_t)(nl - buf), 0, &jerr);
	free(buf);
	if (!resp)
		return die(EX_OTHER, "rodd sent a response that is not JSON: %s", jerr.text);
	json_t *err = json_object_get(resp, "error");
	if (err) {
		int code = (int)json_integer_value(json_object_get(err, "code"));
		const char *msg = json_string_value(json_object_get(err, "message"));
		int ex = code == -32001 ? EX_NOTFOUND : code == -32002 ? EX_CONFLICT
			 : code == -32602 ? EX_USAGE : EX_OTHER;
		die(ex, "%s", msg ? msg : "unknown error");
		json_decref(resp);
		return ex;
	}
	*result = json_incref(json_object_get(resp, "result"));
	json_decref(resp);
	if (!*result)
		return die(EX_OTHER, "rodd sent a response without a result");
	return EX_OK;
}

/* ---- argument parsing --------------------------------------------------------------- */

struct opt {
	const char *name;       /* "--size" */
	bool takes_value;
	const char *value;      /* filled */
	bool seen;
};

/* Split argv into positionals and known options. Returns EX_OK or EX_USAGE. */
static int parse_args(int argc, char **argv, struct opt *opts, size_t nopts, const char **pos, size_t npos_max,
		      size_t *npos, const char *usage)
{
	*npos = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] == '-' && a[2]) {
			const char *eq = strchr(a, '=');
			size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
			size_t k;
			for (k = 0; k < nopts; k++)
				if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, a, nlen))
					break;
			if (k == nopts)
				return die(EX_USAGE, "unknown option %s\nusage: %s", a, usage);
			if (opts[k].takes_value) {
				if (eq)
					opts[k].value = eq + 1;
				else if (i + 1 < argc)
					opts[k].value = argv[++i];
				else
					return die(EX_USAGE, "option %s needs a value\nusage: %s", opts[k].name, usage);
			} else if (eq) {
				return die(EX_USAGE, "option %s takes no value\nusage: %s", opts[k].name, usage);
			}
			opts[k].seen = true;
		} else {
			if (*npos == npos_max)
				return die(EX_USAGE, "unexpected argument \"%s\"\nusage: %s", a, usage);
			pos[(*npos)++] = a;
		}
	}
	if (*npos < npos_max)
		return die(EX_USAGE, "missing argument\nusage: %s", usage);
	return EX_OK;
}

static int parse_size_opt(const char *what, const char *s, uint64_t *out)
{
	int rc = rod_parse_size(s, out);
	if (rc)
		return die(EX_USAGE, "%s \"%s\" is not a size (a number with an optional K, M, G or T suffix, e.g. 10G)",
			   what, s);
	return EX_OK;
}

/* Read a secret from a file: the first line, without its newline. */
static int read_secret(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return die(EX_USAGE, "cannot read secret file %s: %s", path, strerror(errno));
	size_t n = fread(out, 1, cap - 1, f);
	bool more = fgetc(f) != EOF;
	fclose(f);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	if (more && strlen(out) == n)
		return die(EX_USAGE, "secret file %s is too long (a CHAP secret has at most 255 characters)", path);
	if (!out[0])
		return die(EX_USAGE, "secret file %s is empty", path);
	return EX_OK;
}

/* ---- output ------------------------------------------------------------------------- */

static void print_json(json_t *j)
{
	char *txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(txt ? txt : "null");
	free(txt);
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "-";
}

static uint64_t jint(json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

static char *fmt_size(uint64_t v, char *buf, size_t len)
{
	return rod_format_size(v, buf, len);
}

static void print_vol(json_t *v)
{
	char sz[32];
	printf("name:        %s\n", jstr(v, "name"));
	printf("id:          %" PRIu64 "\n", jint(v, "id"));
	printf("uuid:        %s\n", jstr(v, "uuid"));
	printf("size:        %s (%" PRIu64 " bytes)\n", fmt_size(jint(v, "size"), sz, sizeof(sz)), jint(v, "size"));
	printf("block size:  %" PRIu64 "\n", jint(v, "block_size"));
	printf("cache:       %s\n", jstr(v, "cache"));
	printf("offload:     %s\n", json_is_true(json_object_get(v, "offload")) ? "on" : "off");
	if (json_is_false(json_object_get(v, "dedupe")) || json_is_false(json_object_get(v, "compress")))
		printf("reduction:   dedupe %s, compress %s (benchmarking switch)\n",
		       json_is_false(json_object_get(v, "dedupe")) ? "off" : "on",
		       json_is_false(json_object_get(v, "compress")) ? "off" : "on");
	printf("created:     %s\n", jstr(v, "created"));
	json_t *sp = json_object_get(v, "space");
	if (json_is_object(sp)) {
		printf("written:     %s\n", fmt_size(jint(sp, "logical"), sz, sizeof(sz)));
		printf("physical:    %s\n", fmt_size(jint(sp, "physical"), sz, sizeof(sz)));
		printf("unique:      %s\n", fmt_size(jint(sp, "unique"), sz, sizeof(sz)));
		printf("shared:      %s\n", fmt_size(jint(sp, "shared"), sz, sizeof(sz)));
	}
	size_t i;
	json_t *c;
	printf("connections:");
	if (json_array_size(json_object_get(v, "connections")) == 0)
		printf(" none");
	json_array_foreach(json_object_get(v, "connections"), i, c)
		printf("%s %s (LUN %" PRIu64 ")", i ? "," : "", jstr(c, "host"), jint(c, "lun"));
	printf("\n");
}

static void print_host(json_t *h)
{
	size_t i;
	json_t *x;
	printf("name:        %s\n", jstr(h, "name"));
	printf("id:          %" PRIu64 "\n", jint(h, "id"));
	printf("initiators: ");
	json_array_foreach(json_object_get(h, "iqns"), i, x)
		printf("%s %s", i ? "," : "", json_string_value(x));
	printf("\n");
	printf("CHAP user:   %s\n", json_is_string(json_object_get(h, "chap_user")) ? jstr(h, "chap_user") : "none");
	printf("mutual CHAP: %s\n", json_is_string(json_object_get(h, "mutual_user")) ? jstr(h, "mutual_user") : "none");
	printf("created:     %s\n", jstr(h, "created"));
	printf("connections:");
	if (json_array_size(json_object_get(h, "connections")) == 0)
		printf(" none");
	json_array_foreach(json_object_get(h, "connections"), i, x)
		printf("%s %s (LUN %" PRIu64 ")", i ? "," : "", jstr(x, "volume"), jint(x, "lun"));
	printf("\n");
}

/* ---- commands ------------------------------------------------------------------------ */

typedef int (*cmd_fn)(int argc, char **argv, const char *usage);

/* Call a method and print its result (res is read only after rpc returned: C leaves
 * the order of argument evaluation unspecified). */
static int call_print(const char *method, json_t *params, void (*human)(json_t *))
{
	json_t *res;
	int rc = rpc(method, params, &res);
	if (rc == EX_OK) {
		if (g_json)
			print_json(res);
		else
			human(res);
	}
	json_decref(res);
	return rc;
}

static void human_array(json_t *a)
{
	size_t i;
	json_t *p;
	printf("name:        %s\n", jstr(a, "name"));
	printf("id:          %s\n", jstr(a, "id"));
	printf("target IQN:  %s\n", jstr(a, "target_iqn"));
	printf("portals:    ");
	json_array_foreach(json_object_get(a, "portals"), i, p)
		printf("%s %s", i ? "," : "", json_string_value(p));
	printf("\n");
	printf("volumes:     %" PRIu64 "\n", jint(a, "volumes"));
	printf("hosts:       %" PRIu64 "\n", jint(a, "hosts"));
	if (json_is_integer(json_object_get(a, "recovery_window_s")))
		printf("recovery:    destroyed items kept %" PRIu64 " s\n", jint(a, "recovery_window_s"));
	printf("created:     %s\n", jstr(a, "created"));
	printf("data dir:    %s\n", jstr(a, "data_dir"));
	printf("key file:    %s\n", json_is_string(json_object_get(a, "key_file")) ? jstr(a, "key_file") : "none");
	json_array_foreach(json_object_get(a, "warnings"), i, p)
		printf("warning:     %s\n", json_string_value(p));
}

static int c_array_show(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("array.show", NULL, human_array);
}

/* API tokens for the HTTP API: the secret is printed once, at creation. */
static void human_token_created(json_t *r)
{
	printf("%s\n", jstr(r, "token"));
	fprintf(stderr, "rodctl: API token %s created; it is shown only now (rodd keeps a hash): use it as "
		"\"Authorization: Bearer TOKEN\"\n", jstr(r, "id"));
}

static void human_tokens(json_t *r)
{
	size_t i;
	json_t *t;
	printf("%-16s  %-20s  %s\n", "ID", "CREATED", "NAME");
	json_array_foreach(json_object_get(r, "tokens"), i, t)
		printf("%-16s  %-20s  %s\n", jstr(t, "id"), jstr(t, "created"), jstr(t, "name"));
}

static void human_token_deleted(json_t *r)
{
	printf("API token %s deleted\n", jstr(r, "id"));
}

static int c_array_token(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (argc >= 1 && !strcmp(argv[0], "create")) {
		struct opt o[] = { { "--name", true } };
		if (parse_args(argc - 1, argv + 1, o, 1, pos, 0, &np, usage))
			return EX_USAGE;
		json_t *p = json_object();
		if (o[0].seen)
			json_object_set_new(p, "name", json_string(o[0].value));
		return call_print("array.token.create", p, human_token_created);
	}
	if (argc >= 1 && !strcmp(argv[0], "list")) {
		if (parse_args(argc - 1, argv + 1, NULL, 0, pos, 0, &np, usage))
			return EX_USAGE;
		return call_print("array.token.list", NULL, human_tokens);
	}
	if (argc >= 1 && !strcmp(argv[0], "delete")) {
		if (parse_args(argc - 1, argv + 1, NULL, 0, pos, 1, &np, usage))
			return EX_USAGE;
		return call_print("array.token.delete", json_pack("{s:s}", "id", pos[0]), human_token_deleted);
	}
	return die(EX_USAGE, "usage: %s", usage);
}

static int c_vol_create(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--size", true }, { "--block-size", true } };
	const char *pos[1];
	size_t np;
	uint64_t size, bs = 512;
	if (parse_args(argc, argv, o, 2, pos, 1, &np, usage))
		return EX_USAGE;
	if (!o[0].seen)
		return die(EX_USAGE, "vol create needs --size (e.g. --size 10G)\nusage: %s", usage);
	if (parse_size_opt("size", o[0].value, &size) || (o[1].seen && parse_size_opt("block size", o[1].value, &bs)))
		return EX_USAGE;
	json_t *p = json_pack("{s:s, s:I, s:I}", "name", pos[0], "size", (json_int_t)size, "block_size", (json_int_t)bs);
	return call_print("vol.create", p, print_vol);
}

static void human_vol_list(json_t *r)
{
	size_t i;
	json_t *v;
	printf("%-24s %10s %6s %-14s %s\n", "NAME", "SIZE", "BLOCK", "CACHE", "HOSTS");
	json_array_foreach(json_object_get(r, "volumes"), i, v) {
		char sz[32], hosts[512] = "";
		size_t k, off = 0;
		json_t *c;
		json_array_foreach(json_object_get(v, "connections"), k, c)
			off += (size_t)snprintf(hosts + off, off < sizeof(hosts) ? sizeof(hosts) - off : 0, "%s%s:%" PRIu64,
						k ? "," : "", jstr(c, "host"), jint(c, "lun"));
		printf("%-24s %10s %6" PRIu64 " %-14s %s\n", jstr(v, "name"), fmt_size(jint(v, "size"), sz, sizeof(sz)),
		       jint(v, "block_size"), jstr(v, "cache"), hosts[0] ? hosts : "-");
	}
}

static void human_destroyed_list(json_t *r)
{
	size_t i;
	json_t *v;
	printf("%-40s %10s %-20s %s\n", "NAME (DESTROYED)", "SIZE", "DESTROYED", "ERADICATED AFTER");
	json_array_foreach(json_object_get(r, "volumes"), i, v) {
		char sz[32];
		printf("%-40s %10s %-20s %s\n", jstr(v, "name"), fmt_size(jint(v, "size"), sz, sizeof(sz)),
		       jstr(v, "destroyed"), jstr(v, "eradicate_at"));
	}
}

static int c_vol_list(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--destroyed", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 0, &np, usage))
		return EX_USAGE;
	if (o[0].seen)
		return call_print("vol.list", json_pack("{s:b}", "destroyed", 1), human_destroyed_list);
	return call_print("vol.list", NULL, human_vol_list);
}

static int c_vol_show(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("vol.show", json_pack("{s:s}", "name", pos[0]), print_vol);
}

static int c_vol_resize(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--size", true }, { "--shrink", false } };
	const char *pos[1];
	size_t np;
	uint64_t size;
	if (parse_args(argc, argv, o, 2, pos, 1, &np, usage))
		return EX_USAGE;
	if (!o[0].seen)
		return die(EX_USAGE, "vol resize needs --size\nusage: %s", usage);
	if (parse_size_opt("size", o[0].value, &size))
		return EX_USAGE;
	json_t *p = json_pack("{s:s, s:I, s:b}", "name", pos[0], "size", (json_int_t)size, "shrink", o[1].seen);
	return call_print("vol.resize", p, print_vol);
}

static void human_destroyed(json_t *r)
{
	printf("\"%s\" destroyed; recoverable with rodctl vol recover %s until %s\n", jstr(r, "name"), jstr(r, "name"),
	       jstr(r, "eradicate_at"));
}

static int c_vol_destroy(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("vol.destroy", json_pack("{s:s}", "name", pos[0]), human_destroyed);
}

static int c_vol_set(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--cache", true }, { "--offload", true }, { "--dedupe", true }, { "--compress", true } };
	static const char *const onoff[] = { NULL, "offload", "dedupe", "compress" };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 4, pos, 1, &np, usage))
		return EX_USAGE;
	if (!o[0].seen && !o[1].seen && !o[2].seen && !o[3].seen)
		return die(EX_USAGE, "vol set needs --cache, --offload, --dedupe or --compress\nusage: %s", usage);
	json_t *p = json_pack("{s:s}", "name", pos[0]);
	if (o[0].seen)
		json_object_set_new(p, "cache", json_string(o[0].value));
	for (int i = 1; i < 4; i++) {
		if (!o[i].seen)
			continue;
		if (strcmp(o[i].value, "on") && strcmp(o[i].value, "off")) {
			json_decref(p);
			return die(EX_USAGE, "%s takes on or off\nusage: %s", o[i].name, usage);
		}
		json_object_set_new(p, onoff[i], json_boolean(!strcmp(o[i].value, "on")));
	}
	return call_print("vol.set", p, print_vol);
}

static void human_snap_list(json_t *r)
{
	size_t i;
	json_t *v;
	printf("%-40s %-24s %10s %s\n", "NAME", "VOLUME", "SIZE", "CREATED");
	json_array_foreach(json_object_get(r, "snapshots"), i, v) {
		char sz[32];
		printf("%-40s %-24s %10s %s\n", jstr(v, "name"), jstr(v, "source"),
		       fmt_size(jint(v, "size"), sz, sizeof(sz)), jstr(v, "created"));
	}
}

/* vol snap VOL [--suffix S] | vol snap list [VOL] */
static int c_vol_snap(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--suffix", true } };
	const char *pos[1];
	size_t np;
	if (argc >= 1 && !strcmp(argv[0], "list")) {
		json_t *p = json_object();
		if (parse_args(argc - 1, argv + 1, NULL, 0, pos, argc > 1 ? 1 : 0, &np, usage)) {
			json_decref(p);
			return EX_USAGE;
		}
		if (np)
			json_object_set_new(p, "volume", json_string(pos[0]));
		return call_print("vol.snap.list", p, human_snap_list);
	}
	if (parse_args(argc, argv, o, 1, pos, 1, &np, usage))
		return EX_USAGE;
	json_t *p = json_pack("{s:s}", "name", pos[0]);
	if (o[0].seen)
		json_object_set_new(p, "suffix", json_string(o[0].value));
	return call_print("vol.snap", p, print_vol);
}

static int c_vol_clone(int argc, char **argv, const char *usage)
{
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("vol.clone", json_pack("{s:s, s:s}", "source", pos[0], "name", pos[1]), print_vol);
}

static void human_copied(json_t *r)
{
	printf("\"%s\" copied to %s volume \"%s\"\n", jstr(r, "source"),
	       json_is_true(json_object_get(r, "created")) ? "new" : "existing", jstr(r, "target"));
}

static int c_vol_copy(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--overwrite", false } };
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("vol.copy", json_pack("{s:s, s:s, s:b}", "source", pos[0], "target", pos[1], "overwrite",
						o[0].seen), human_copied);
}

static int c_vol_revert(int argc, char **argv, const char *usage)
{
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("vol.revert", json_pack("{s:s, s:s}", "name", pos[0], "snapshot", pos[1]), print_vol);
}

static int c_vol_rename(int argc, char **argv, const char *usage)
{
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("vol.rename", json_pack("{s:s, s:s}", "name", pos[0], "new_name", pos[1]), print_vol);
}

static void human_recovered(json_t *r)
{
	printf("\"%s\" recovered (connect it to hosts again with rodctl host connect)\n", jstr(r, "name"));
}

static int c_vol_recover(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("vol.recover", json_pack("{s:s}", "name", pos[0]), human_recovered);
}

static void human_eradicated(json_t *r)
{
	if (json_is_integer(json_object_get(r, "job")))
		printf("\"%s\" eradicated; job %" PRIu64 " reclaims its space (rodctl job show %" PRIu64 " --watch)\n",
		       jstr(r, "name"), jint(r, "job"), jint(r, "job"));
	else
		printf("\"%s\" eradicated; its space returns at the next garbage collection\n", jstr(r, "name"));
}

static int watch_job(uint64_t id);

static int c_vol_eradicate(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--wait", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 1, &np, usage))
		return EX_USAGE;
	if (!o[0].seen)
		return call_print("vol.eradicate", json_pack("{s:s}", "name", pos[0]), human_eradicated);
	/* --wait: follow the job that reclaims the space */
	json_t *r;
	int rc = rpc("vol.eradicate", json_pack("{s:s}", "name", pos[0]), &r);
	if (rc)
		return rc;
	if (g_json)
		print_json(r);
	else
		human_eradicated(r);
	uint64_t id = jint(r, "job");
	json_decref(r);
	return id && !g_json ? watch_job(id) : EX_OK;
}

static int c_host_set(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--chap-user", true }, { "--chap-secret-file", true }, { "--mutual-user", true },
			   { "--mutual-secret-file", true }, { "--no-chap", false }, { "--no-mutual", false } };
	const char *pos[1];
	size_t np;
	static char cs[4096], ms[4096];
	if (parse_args(argc, argv, o, 6, pos, 1, &np, usage))
		return EX_USAGE;
	if (o[0].seen != o[1].seen || o[2].seen != o[3].seen)
		return die(EX_USAGE, "CHAP needs a user and a secret file together\nusage: %s", usage);
	if (!o[0].seen && !o[2].seen && !o[4].seen && !o[5].seen)
		return die(EX_USAGE, "nothing to set\nusage: %s", usage);
	json_t *p = json_pack("{s:s, s:b, s:b}", "name", pos[0], "clear_chap", o[4].seen, "clear_mutual", o[5].seen);
	if (o[0].seen) {
		if (read_secret(o[1].value, cs, sizeof(cs))) {
			json_decref(p);
			return EX_USAGE;
		}
		json_object_set_new(p, "chap_user", json_string(o[0].value));
		json_object_set_new(p, "chap_secret", json_string(cs));
	}
	if (o[2].seen) {
		if (read_secret(o[3].value, ms, sizeof(ms))) {
			json_decref(p);
			return EX_USAGE;
		}
		json_object_set_new(p, "mutual_user", json_string(o[2].value));
		json_object_set_new(p, "mutual_secret", json_string(ms));
	}
	int rc = call_print("host.set", p, print_host);
	memset(cs, 0, sizeof(cs));
	memset(ms, 0, sizeof(ms));
	return rc;
}

static void human_space(json_t *r)
{
	char a[32];
	printf("capacity:     %s\n", fmt_size(jint(r, "capacity"), a, sizeof(a)));
	printf("used:         %s\n", fmt_size(jint(r, "used"), a, sizeof(a)));
	printf("free:         %s\n", fmt_size(jint(r, "free"), a, sizeof(a)));
	printf("provisioned:  %s\n", fmt_size(jint(r, "provisioned"), a, sizeof(a)));
	printf("written:      %s\n", fmt_size(jint(r, "logical"), a, sizeof(a)));
	printf("physical:     %s\n", fmt_size(jint(r, "physical"), a, sizeof(a)));
	printf("shared:       %s\n", fmt_size(jint(r, "shared"), a, sizeof(a)));
	printf("snapshots:    %s\n", fmt_size(jint(r, "snapshots"), a, sizeof(a)));
	printf("reduction:    %.2f:1\n", json_number_value(json_object_get(r, "reduction")));
	printf("destroyed:    %" PRIu64 " item(s) awaiting eradication\n", jint(r, "destroyed_items"));
}

static int c_array_space(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("array.space", NULL, human_space);
}

static void human_settings(json_t *r)
{
	printf("recovery window: %" PRIu64 " s\n", jint(r, "recovery_window_s"));
}

/* A duration: a number with s, m, h or d; a bare number is hours. */
static int parse_duration(const char *s, uint64_t *secs)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -1;
	uint64_t mul = 3600;
	if (*end) {
		const char *u = "smhd";
		const uint64_t muls[] = { 1, 60, 3600, 86400 };
		const char *k = strchr(u, *end);
		if (!k || end[1])
			return -1;
		mul = muls[k - u];
	}
	if (v > UINT64_MAX / mul)
		return -1;
	*secs = v * mul;
	return 0;
}

static int c_array_set(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--recovery-window", true } };
	const char *pos[1];
	size_t np;
	uint64_t secs;
	if (parse_args(argc, argv, o, 1, pos, 0, &np, usage))
		return EX_USAGE;
	if (!o[0].seen)
		return die(EX_USAGE, "nothing to set\nusage: %s", usage);
	if (parse_duration(o[0].value, &secs))
		return die(EX_USAGE, "--recovery-window %s is not a duration (e.g. 24h, 90m, 2d; a bare number is hours)",
			   o[0].value);
	return call_print("array.set", json_pack("{s:I}", "recovery_window_s", (json_int_t)secs), human_settings);
}

/* ---- jobs -------------------------------------------------------------------------------- */

static void fmt_amount(json_t *j, const char *key, char *buf, size_t len)
{
	uint64_t v = jint(j, key);
	if (!strcmp(jstr(j, "unit"), "bytes"))
		fmt_size(v, buf, len);
	else
		snprintf(buf, len, "%" PRIu64, v);
}

static void print_job(json_t *j)
{
	char d[32], t[32];
	fmt_amount(j, "done", d, sizeof(d));
	fmt_amount(j, "total", t, sizeof(t));
	printf("id:          %" PRIu64 "\n", jint(j, "id"));
	printf("kind:        %s\n", jstr(j, "kind"));
	printf("target:      %s\n", jstr(j, "target"));
	printf("state:       %s%s\n", jstr(j, "state"),
	       json_is_true(json_object_get(j, "cancel_requested")) && !strcmp(jstr(j, "state"), "running")
		       ? " (cancel requested)" : "");
	printf("progress:    %s of %s %s", d, t, jstr(j, "unit"));
	if (json_is_number(json_object_get(j, "percent")))
		printf(" (%.1f%%)", json_number_value(json_object_get(j, "percent")));
	printf("\n");
	if (json_is_number(json_object_get(j, "rate"))) {
		double r = json_number_value(json_object_get(j, "rate"));
		char rb[32];
		if (!strcmp(jstr(j, "unit"), "bytes"))
			printf("rate:        %s/s\n", fmt_size((uint64_t)r, rb, sizeof(rb)));
		else
			printf("rate:        %.1f %s/s\n", r, jstr(j, "unit"));
	}
	if (json_is_number(json_object_get(j, "eta_s")))
		printf("ETA:         %.0f s\n", json_number_value(json_object_get(j, "eta_s")));
	printf("created:     %s\n", jstr(j, "created"));
	printf("started:     %s\n", jstr(j, "started"));
	printf("finished:    %s\n", jstr(j, "finished"));
	if (json_is_string(json_object_get(j, "error")))
		printf("error:       %s\n", jstr(j, "error"));
	json_t *r = json_object_get(j, "result");
	if (json_is_object(r)) {
		char *txt = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
		printf("result:      %s\n", txt ? txt : "");
		free(txt);
	}
}

static void human_job_list(json_t *r)
{
	size_t i;
	json_t *j;
	printf("%-6s %-8s %-24s %-10s %8s  %s\n", "ID", "KIND", "TARGET", "STATE", "PERCENT", "STARTED");
	json_array_foreach(json_object_get(r, "jobs"), i, j) {
		char pct[16] = "-";
		if (json_is_number(json_object_get(j, "percent")))
			snprintf(pct, sizeof(pct), "%.1f%%", json_number_value(json_object_get(j, "percent")));
		printf("%-6" PRIu64 " %-8s %-24s %-10s %8s  %s\n", jint(j, "id"), jstr(j, "kind"), jstr(j, "target"),
		       jstr(j, "state"), pct, jstr(j, "started"));
	}
}

static bool job_finished(json_t *j)
{
	const char *s = jstr(j, "state");
	return !strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

static int job_exit(json_t *j)
{
	return !strcmp(jstr(j, "state"), "done") ? EX_OK : EX_OTHER;
}

/* An array scrub's damaged chunks, one line per reference. */
static void print_damaged(json_t *r)
{
	size_t i, k;
	json_t *d, *ref;
	json_array_foreach(json_object_get(r, "damaged"), i, d) {
		printf("damaged chunk %s (%s):\n", jstr(d, "chunk"), jstr(d, "error"));
		json_array_foreach(json_object_get(d, "refs"), k, ref)
			printf("  %s %s%s LBA %" PRIu64 "-%" PRIu64 " (%" PRIu64 "-byte blocks)\n",
			       json_is_true(json_object_get(ref, "snapshot")) ? "snapshot" : "volume", jstr(ref, "volume"),
			       json_is_true(json_object_get(ref, "destroyed")) ? " (destroyed)" : "", jint(ref, "lba"),
			       jint(ref, "lba") + jint(ref, "blocks") - 1, jint(ref, "block_size"));
	}
	if (json_is_true(json_object_get(r, "refs_truncated")))
		printf("(more references than listed: %" PRIu64 " in all)\n", jint(r, "refs_damaged"));
}

/* Follow a job until it finishes: a redrawn progress bar on a terminal, one line per
 * change otherwise. Returns EX_OK when it ended done. */
static int watch_job(uint64_t id)
{
	bool tty = isatty(STDOUT_FILENO);
	char last[256] = "";
	for (;;) {
		json_t *j;
		int rc = rpc("job.show", json_pack("{s:I}", "id", (json_int_t)id), &j);
		if (rc)
			return rc;
		double pct = json_is_number(json_object_get(j, "percent")) ? json_number_value(json_object_get(j, "percent"))
									 : 0;
		char d[32], t[32], eta[32] = "", line[256];
		fmt_amount(j, "done", d, sizeof(d));
		fmt_amount(j, "total", t, sizeof(t));
		if (json_is_number(json_object_get(j, "eta_s")))
			snprintf(eta, sizeof(eta), " ETA %.0fs", json_number_value(json_object_get(j, "eta_s")));
		if (tty) {
			char bar[31];
			int fill = (int)(pct * 30 / 100);
			for (int i = 0; i < 30; i++)
				bar[i] = i < fill ? '#' : '-';
			bar[30] = '\0';
			snprintf(line, sizeof(line), "job %" PRIu64 " %s [%s] %5.1f%% %s/%s%s %s", id, jstr(j, "kind"), bar,
				 pct, d, t, eta, jstr(j, "state"));
			printf("\r%-100s", line);
			fflush(stdout);
		} else {
			snprintf(line, sizeof(line), "job %" PRIu64 " %s %s %.1f%% %s/%s%s", id, jstr(j, "kind"),
				 jstr(j, "state"), pct, d, t, eta);
			if (strcmp(line, last)) {
				printf("%s\n", line);
				fflush(stdout);
				snprintf(last, sizeof(last), "%s", line);
			}
		}
		if (job_finished(j)) {
			if (tty)
				printf("\n");
			print_damaged(json_object_get(j, "result"));
			if (json_is_string(json_object_get(j, "error")))
				fprintf(stderr, "rodctl: job %" PRIu64 " failed: %s\n", id, jstr(j, "error"));
			rc = job_exit(j);
			json_decref(j);
			return rc;
		}
		json_decref(j);
		usleep(tty ? 200000 : 500000);
	}
}

static int parse_job_id(const char *s, uint64_t *id)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || !*s || s[0] == '-' || v == 0)
		return die(EX_USAGE, "\"%s\" is not a job number (rodctl job list shows jobs)", s);
	*id = v;
	return EX_OK;
}

static int c_job_list(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("job.list", NULL, human_job_list);
}

static int c_job_show(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--watch", false } };
	const char *pos[1];
	size_t np;
	uint64_t id;
	if (parse_args(argc, argv, o, 1, pos, 1, &np, usage) || parse_job_id(pos[0], &id))
		return EX_USAGE;
	if (o[0].seen && !g_json)
		return watch_job(id);
	if (o[0].seen) {
		/* --json --watch: wait, then print the finished job */
		json_t *j;
		for (;;) {
			int rc = rpc("job.show", json_pack("{s:I}", "id", (json_int_t)id), &j);
			if (rc)
				return rc;
			if (job_finished(j))
				break;
			json_decref(j);
			usleep(200000);
		}
		print_json(j);
		int rc = job_exit(j);
		json_decref(j);
		return rc;
	}
	return call_print("job.show", json_pack("{s:I}", "id", (json_int_t)id), print_job);
}

static void human_job_cancel(json_t *j)
{
	printf("job %" PRIu64 " %s\n", jint(j, "id"),
	       !strcmp(jstr(j, "state"), "cancelled") ? "cancelled" : "stops at its next checkpoint");
}

static int c_job_cancel(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	uint64_t id;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage) || parse_job_id(pos[0], &id))
		return EX_USAGE;
	return call_print("job.cancel", json_pack("{s:I}", "id", (json_int_t)id), human_job_cancel);
}

/* A method that starts a job: print it, or with --wait follow it to the end. */
static int start_job(const char *method, json_t *params, bool wait)
{
	json_t *j;
	int rc = rpc(method, params, &j);
	if (rc)
		return rc;
	uint64_t id = jint(j, "id");
	if (!wait) {
		if (g_json)
			print_json(j);
		else
			printf("job %" PRIu64 " started (rodctl job show %" PRIu64 " --watch)\n", id, id);
		json_decref(j);
		return EX_OK;
	}
	json_decref(j);
	if (!g_json)
		return watch_job(id);
	char idbuf[32];
	snprintf(idbuf, sizeof(idbuf), "%" PRIu64, id);
	char *av[] = { idbuf, (char *)"--watch" };
	return c_job_show(2, av, "rodctl job show ID [--watch]");
}

static int c_array_gc(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--full", false }, { "--wait", false }, { "--rate", true } };
	const char *pos[1];
	size_t np;
	uint64_t rate = 0;
	if (parse_args(argc, argv, o, 3, pos, 0, &np, usage))
		return EX_USAGE;
	if (o[2].seen && parse_size_opt("rate", o[2].value, &rate))
		return EX_USAGE;
	json_t *p = json_pack("{s:b}", "full", o[0].seen);
	if (o[2].seen)
		json_object_set_new(p, "rate", json_integer((json_int_t)rate));
	return start_job("array.gc", p, o[1].seen);
}

static int c_array_scrub(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--wait", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 0, &np, usage))
		return EX_USAGE;
	return start_job("array.scrub", json_object(), o[0].seen);
}

static int c_vol_flatten(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--all", false }, { "--wait", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 2, pos, 1, &np, usage))
		return EX_USAGE;
	return start_job("vol.flatten", json_pack("{s:s, s:b}", "name", pos[0], "all", o[0].seen), o[1].seen);
}

static int c_vol_scrub(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--rate", true }, { "--wait", false } };
	const char *pos[1];
	size_t np;
	uint64_t rate = 0;
	if (parse_args(argc, argv, o, 2, pos, 1, &np, usage))
		return EX_USAGE;
	if (o[0].seen && parse_size_opt("rate", o[0].value, &rate))
		return EX_USAGE;
	json_t *p = json_pack("{s:s}", "name", pos[0]);
	if (rate)
		json_object_set_new(p, "rate", json_integer((json_int_t)rate));
	return start_job("vol.scrub", p, o[1].seen);
}

static void human_rekey(json_t *r)
{
	printf("data key re-wrapped with %s\n%s\n", jstr(r, "key_file"), jstr(r, "note"));
}

static int c_array_rekey(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--key-file", true } };
	const char *pos[1];
	char path[4096];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 0, &np, usage) || !o[0].value)
		return EX_USAGE;
	/* rodd runs elsewhere: send an absolute path. */
	if (o[0].value[0] == '/') {
		snprintf(path, sizeof(path), "%s", o[0].value);
	} else {
		char cwd[2048];
		if (!getcwd(cwd, sizeof(cwd)))
			return EX_USAGE;
		snprintf(path, sizeof(path), "%s/%s", cwd, o[0].value);
	}
	return call_print("array.rekey", json_pack("{s:s}", "key_file", path), human_rekey);
}

/* ---- events (audit log) ------------------------------------------------------------ */

static void human_events(json_t *r)
{
	size_t i;
	json_t *e;
	printf("%-20s %-22s %-18s %-6s %s\n", "TIME", "WHO", "METHOD", "RESULT", "PARAMS");
	json_array_foreach(json_object_get(r, "events"), i, e) {
		char *p = json_dumps(json_object_get(e, "params"), JSON_COMPACT | JSON_SORT_KEYS);
		printf("%-20s %-22s %-18s %-6s %s%s%s\n", jstr(e, "time"), jstr(e, "who"), jstr(e, "method"),
		       json_is_true(json_object_get(e, "ok")) ? "ok" : "failed", p ? p : "",
		       json_is_string(json_object_get(e, "error")) ? " -- " : "",
		       json_is_string(json_object_get(e, "error")) ? jstr(e, "error") : "");
		free(p);
	}
}

static int c_events(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--since", true }, { "--limit", true } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 2, pos, 0, &np, usage))
		return EX_USAGE;
	json_t *p = json_object();
	if (o[0].seen) {
		/* a UTC time as given, or a duration meaning that long ago */
		uint64_t ago;
		char buf[32];
		if (parse_duration(o[0].value, &ago) == 0 && strchr("smhd", o[0].value[strlen(o[0].value) - 1])) {
			time_t t = time(NULL) - (time_t)ago;
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
			json_object_set_new(p, "since", json_string(buf));
		} else {
			json_object_set_new(p, "since", json_string(o[0].value));
		}
	}
	if (o[1].seen) {
		char *end;
		long v = strtol(o[1].value, &end, 10);
		if (*end || !o[1].value[0] || v < 1) {
			json_decref(p);
			return die(EX_USAGE, "--limit %s is not a positive number", o[1].value);
		}
		json_object_set_new(p, "limit", json_integer(v));
	}
	return call_print("events.list", p, human_events);
}

static int c_host_create(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--iqn", true }, { "--chap-user", true }, { "--chap-secret-file", true },
			   { "--mutual-user", true }, { "--mutual-secret-file", true } };
	const char *pos[1];
	size_t np;
	/* --iqn may be repeated: collect every occurrence before the generic parse */
	json_t *iqns = json_array();
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--iqn") && i + 1 < argc)
			json_array_append_new(iqns, json_string(argv[i + 1]));
		else if (!strncmp(argv[i], "--iqn=", 6))
			json_array_append_new(iqns, json_string(argv[i] + 6));
	}
	if (parse_args(argc, argv, o, 5, pos, 1, &np, usage)) {
		json_decref(iqns);
		return EX_USAGE;
	}
	if (!o[0].seen) {
		json_decref(iqns);
		return die(EX_USAGE, "host create needs --iqn (an initiator name, or a glob such as '*')\nusage: %s", usage);
	}
	json_t *p = json_pack("{s:s, s:o}", "name", pos[0], "iqns", iqns);
	static char cs[4096], ms[4096];
	if (o[1].seen != o[2].seen || o[3].seen != o[4].seen) {
		json_decref(p);
		return die(EX_USAGE, "CHAP needs a user and a secret file together\nusage: %s", usage);
	}
	if (o[1].seen) {
		if (read_secret(o[2].value, cs, sizeof(cs))) {
			json_decref(p);
			return EX_USAGE;
		}
		json_object_set_new(p, "chap_user", json_string(o[1].value));
		json_object_set_new(p, "chap_secret", json_string(cs));
	}
	if (o[3].seen) {
		if (read_secret(o[4].value, ms, sizeof(ms))) {
			json_decref(p);
			return EX_USAGE;
		}
		json_object_set_new(p, "mutual_user", json_string(o[3].value));
		json_object_set_new(p, "mutual_secret", json_string(ms));
	}
	int rc = call_print("host.create", p, print_host);
	memset(cs, 0, sizeof(cs));
	memset(ms, 0, sizeof(ms));
	return rc;
}

static void human_host_list(json_t *r)
{
	size_t i;
	json_t *h;
	printf("%-20s %-40s %-6s %s\n", "NAME", "INITIATORS", "CHAP", "VOLUMES");
	json_array_foreach(json_object_get(r, "hosts"), i, h) {
		char iq[1024] = "", vols[1024] = "";
		size_t k, off = 0;
		json_t *x;
		json_array_foreach(json_object_get(h, "iqns"), k, x)
			off += (size_t)snprintf(iq + off, off < sizeof(iq) ? sizeof(iq) - off : 0, "%s%s", k ? "," : "",
						json_string_value(x));
		off = 0;
		json_array_foreach(json_object_get(h, "connections"), k, x)
			off += (size_t)snprintf(vols + off, off < sizeof(vols) ? sizeof(vols) - off : 0,
						"%s%s:%" PRIu64, k ? "," : "", jstr(x, "volume"), jint(x, "lun"));
		const char *chap = json_is_string(json_object_get(h, "mutual_user")) ? "mutual"
				   : json_is_string(json_object_get(h, "chap_user")) ? "yes" : "no";
		printf("%-20s %-40s %-6s %s\n", jstr(h, "name"), iq, chap, vols[0] ? vols : "-");
	}
}

static int c_host_list(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("host.list", NULL, human_host_list);
}

static int c_host_show(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("host.show", json_pack("{s:s}", "name", pos[0]), print_host);
}

static void human_host_deleted(json_t *r)
{
	printf("host \"%s\" deleted\n", jstr(r, "name"));
}

static int c_host_delete(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("host.delete", json_pack("{s:s}", "name", pos[0]), human_host_deleted);
}

static void human_connected(json_t *r)
{
	printf("volume \"%s\" connected to host \"%s\" at LUN %" PRIu64 "\n", jstr(r, "volume"), jstr(r, "host"),
	       jint(r, "lun"));
}

static int c_host_connect(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--lun", true } };
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 2, &np, usage))
		return EX_USAGE;
	json_t *p = json_pack("{s:s, s:s}", "host", pos[0], "volume", pos[1]);
	if (o[0].seen) {
		char *end;
		errno = 0;
		unsigned long long lun = strtoull(o[0].value, &end, 10);
		if (errno || *end || !o[0].value[0] || o[0].value[0] == '-' || lun > 16383) {
			json_decref(p);
			return die(EX_USAGE, "--lun %s is not a LUN number (0 to 16383)", o[0].value);
		}
		json_object_set_new(p, "lun", json_integer((json_int_t)lun));
	}
	return call_print("host.connect", p, human_connected);
}

static void human_disconnected(json_t *r)
{
	printf("volume \"%s\" disconnected from host \"%s\" (was LUN %" PRIu64 ")\n", jstr(r, "volume"), jstr(r, "host"),
	       jint(r, "lun"));
}

static int c_host_disconnect(int argc, char **argv, const char *usage)
{
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("host.disconnect", json_pack("{s:s, s:s}", "host", pos[0], "volume", pos[1]), human_disconnected);
}

/* ---- protection groups (docs/protection.md) -------------------------------------------- */

static void print_pg(json_t *g)
{
	char sz[32];
	size_t i;
	json_t *x, *sch = json_object_get(g, "schedule"), *ret = json_object_get(g, "retention");
	json_t *last = json_object_get(g, "last_snapshot");
	printf("name:        %s\n", jstr(g, "name"));
	printf("volumes:    ");
	json_array_foreach(json_object_get(g, "volumes"), i, x)
		printf("%s %s", i ? "," : "", json_string_value(x));
	printf("\npatterns:   ");
	json_array_foreach(json_object_get(g, "patterns"), i, x)
		printf("%s %s", i ? "," : "", json_string_value(x));
	printf("\nmembers:    ");
	json_array_foreach(json_object_get(g, "members"), i, x)
		printf("%s %s", i ? "," : "", json_string_value(x));
	printf("\nschedule:    ");
	if (json_is_object(sch))
		printf("every %s%s%s, next run %s\n", jstr(sch, "every"),
		       json_is_string(json_object_get(sch, "at")) ? " at " : "",
		       json_is_string(json_object_get(sch, "at")) ? jstr(sch, "at") : "", jstr(sch, "next_run"));
	else
		printf("none\n");
	printf("retention:   ");
	if (json_is_object(ret))
		printf("keep all for %s, then %" PRIu64 " per day for %s\n", jstr(ret, "keep_all"),
		       jint(ret, "per_day"), jstr(ret, "for"));
	else
		printf("keep every snapshot\n");
	printf("last snap:   %s%s%s\n", json_is_object(last) ? jstr(last, "suffix") : "none",
	       json_is_object(last) ? " at " : "", json_is_object(last) ? jstr(last, "created") : "");
	if (json_object_get(g, "snapshot_space"))
		printf("snap space:  %s\n", fmt_size(jint(g, "snapshot_space"), sz, sizeof(sz)));
	json_t *rp = json_object_get(g, "replication");
	if (json_is_object(rp)) {
		json_t *lag = json_object_get(rp, "lag_s");
		printf("replication: to %s (%s), %s", jstr(rp, "target"),
		       json_is_string(json_object_get(rp, "target_array")) && *jstr(rp, "target_array") ? jstr(rp, "target_array") : "?",
		       jstr(rp, "state"));
		if (json_is_string(json_object_get(rp, "pending")))
			printf(", sending %s (job %" PRIu64 ")", jstr(rp, "pending"), jint(rp, "job"));
		printf("\n");
		printf("  last:      %s", json_is_string(json_object_get(rp, "last_snapshot")) ? jstr(rp, "last_snapshot") : "none");
		if (json_is_integer(lag))
			printf(", lag %" PRIu64 " s, %s on the wire", (uint64_t)json_integer_value(lag),
			       fmt_size(jint(rp, "last_bytes"), sz, sizeof(sz)));
		printf("\n");
		if (json_is_string(json_object_get(rp, "error")))
			printf("  error:     %s\n", jstr(rp, "error"));
	} else if (json_object_get(g, "replication")) {
		printf("replication: none (rodctl pg replicate NAME --to HOST:PORT --key-file F)\n");
	}
	json_t *snaps = json_object_get(g, "snapshots");
	if (json_array_size(snaps)) {
		printf("%-32s %-21s %-10s %s\n", "SNAPSHOT", "CREATED", "KIND", "VOLUMES");
		json_array_foreach(snaps, i, x)
			printf("%-32s %-21s %-10s %zu\n", jstr(x, "suffix"), jstr(x, "created"), jstr(x, "kind"),
			       json_array_size(json_object_get(x, "members")));
	}
}

static void human_pg_list(json_t *r)
{
	size_t i;
	json_t *g;
	printf("%-24s %-8s %-10s %-6s %s\n", "NAME", "MEMBERS", "SCHEDULE", "SNAPS", "LAST SNAPSHOT");
	json_array_foreach(json_object_get(r, "groups"), i, g) {
		json_t *sch = json_object_get(g, "schedule"), *last = json_object_get(g, "last_snapshot");
		printf("%-24s %-8zu %-10s %-6" PRIu64 " %s\n", jstr(g, "name"),
		       json_array_size(json_object_get(g, "members")), json_is_object(sch) ? jstr(sch, "every") : "-",
		       jint(g, "snapshot_count"), json_is_object(last) ? jstr(last, "suffix") : "-");
	}
}

static void human_pg_snap(json_t *r)
{
	size_t i;
	json_t *m;
	printf("group snapshot %s (%s)\n", jstr(r, "suffix"), jstr(r, "created"));
	json_array_foreach(json_object_get(r, "members"), i, m)
		printf("  %s\n", jstr(m, "snapshot"));
}

static void human_pg_done(json_t *r)
{
	if (json_object_get(r, "snapshots_destroyed"))
		printf("protection group %s destroyed; %" PRIu64 " group snapshot(s) %s\n", jstr(r, "name"),
		       jint(r, "snapshots"), json_is_true(json_object_get(r, "snapshots_destroyed"))
					      ? "destroyed (recoverable until eradicated)" : "kept as volume snapshots");
	else
		printf("group snapshot %s of %s destroyed\n", jstr(r, "snapshot"), jstr(r, "group"));
}

static void human_pg_restore(json_t *r)
{
	size_t i;
	json_t *m;
	json_t *arr = json_object_get(r, "clones");
	if (!arr) {
		printf("safety snapshot %s taken\n", jstr(r, "safety_snapshot"));
		arr = json_object_get(r, "reverted");
	}
	json_array_foreach(arr, i, m)
		printf("%s %s %s\n", jstr(m, "volume"), json_object_get(r, "clones") ? "cloned from" : "reverted to",
		       jstr(m, "snapshot"));
}

static void human_pg_tick(json_t *r)
{
	printf("clock %s (offset %" PRIu64 " s): %zu taken, %zu pruned\n", jstr(r, "now"), jint(r, "offset_s"),
	       json_array_size(json_object_get(r, "taken")), json_array_size(json_object_get(r, "pruned")));
}

static int c_pg_create(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("pg.create", json_pack("{s:s}", "name", pos[0]), print_pg);
}

static int c_pg_list(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("pg.list", NULL, human_pg_list);
}

static int c_pg_show(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("pg.show", json_pack("{s:s}", "name", pos[0]), print_pg);
}

/* pg add/remove NAME VOL | NAME --pattern GLOB */
static int pg_members(int argc, char **argv, const char *usage, const char *method)
{
	struct opt o[] = { { "--pattern", true } };
	const char *pos[2];
	size_t np;
	bool pat = false;
	for (int i = 0; i < argc; i++)
		pat |= !strncmp(argv[i], "--pattern", 9);
	if (parse_args(argc, argv, o, 1, pos, pat ? 1 : 2, &np, usage))
		return EX_USAGE;
	return call_print(method, json_pack("{s:s, s:s}", "name", pos[0], pat ? "pattern" : "volume",
					    pat ? o[0].value : pos[1]), print_pg);
}

static int c_pg_add(int argc, char **argv, const char *usage)
{
	return pg_members(argc, argv, usage, "pg.add");
}

static int c_pg_remove(int argc, char **argv, const char *usage)
{
	return pg_members(argc, argv, usage, "pg.remove");
}

static int c_pg_destroy(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--with-snapshots", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 1, &np, usage))
		return EX_USAGE;
	return call_print("pg.destroy", json_pack("{s:s, s:b}", "name", pos[0], "with_snapshots", o[0].seen),
			  human_pg_done);
}

static int c_pg_snap(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--suffix", true } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 1, &np, usage))
		return EX_USAGE;
	json_t *p = json_pack("{s:s}", "name", pos[0]);
	if (o[0].seen)
		json_object_set_new(p, "suffix", json_string(o[0].value));
	return call_print("pg.snap", p, human_pg_snap);
}

static int c_pg_snap_destroy(int argc, char **argv, const char *usage)
{
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("pg.snap.destroy", json_pack("{s:s, s:s}", "name", pos[0], "snapshot", pos[1]),
			  human_pg_done);
}

static int c_pg_schedule(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--every", true }, { "--at", true }, { "--off", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 3, pos, 1, &np, usage))
		return EX_USAGE;
	json_t *p = json_pack("{s:s, s:b}", "name", pos[0], "off", o[2].seen);
	if (o[0].seen)
		json_object_set_new(p, "every", json_string(o[0].value));
	if (o[1].seen)
		json_object_set_new(p, "at", json_string(o[1].value));
	return call_print("pg.schedule", p, print_pg);
}

static int c_pg_retention(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--keep-all", true }, { "--then-per-day", true }, { "--for", true }, { "--off", false } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 4, pos, 1, &np, usage))
		return EX_USAGE;
	json_t *p = json_pack("{s:s, s:b}", "name", pos[0], "off", o[3].seen);
	if (o[0].seen)
		json_object_set_new(p, "keep_all", json_string(o[0].value));
	if (o[1].seen) {
		char *end;
		errno = 0;
		unsigned long n = strtoul(o[1].value, &end, 10);
		if (errno || *end || !o[1].value[0] || o[1].value[0] == '-' || n > 1440) {
			json_decref(p);
			return die(EX_USAGE, "--then-per-day %s is not a number from 0 to 1440", o[1].value);
		}
		json_object_set_new(p, "per_day", json_integer((json_int_t)n));
	}
	if (o[2].seen)
		json_object_set_new(p, "for", json_string(o[2].value));
	return call_print("pg.retention", p, print_pg);
}

/* pg restore / replica restore NAME SNAPSHOT --clone-prefix PREFIX ("what" names the noun). */
static int restore_clones(int argc, char **argv, const char *usage, const char *what, const char *method)
{
	struct opt o[] = { { "--clone-prefix", true } };
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 2, &np, usage))
		return EX_USAGE;
	if (!o[0].seen)
		return die(EX_USAGE, "%s restore needs --clone-prefix PREFIX (clones are named PREFIX<volume>)\nusage: %s",
			   what, usage);
	return call_print(method, json_pack("{s:s, s:s, s:s}", "name", pos[0], "snapshot", pos[1],
					    "clone_prefix", o[0].value), human_pg_restore);
}

static int c_pg_restore(int argc, char **argv, const char *usage)
{
	return restore_clones(argc, argv, usage, "pg", "pg.restore");
}

static int c_pg_revert(int argc, char **argv, const char *usage)
{
	const char *pos[2];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 2, &np, usage))
		return EX_USAGE;
	return call_print("pg.revert", json_pack("{s:s, s:s}", "name", pos[0], "snapshot", pos[1]),
			  human_pg_restore);
}

/* Tests only: rodd must run with ROD_TEST_TIME_OFFSET set (docs/protection.md). */
static int c_pg_tick(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--advance", true } };
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, o, 1, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("pg.tick", json_pack("{s:s}", "advance", o[0].seen ? o[0].value : "0"), human_pg_tick);
}


/* ---- replication (docs/protection.md "Replication") ------------------------------------ */

static void human_rkey_created(json_t *r)
{
	printf("%s\n", jstr(r, "key"));
}

static void human_rkeys(json_t *r)
{
	size_t i;
	json_t *k;
	printf("%-10s %s\n", "ID", "CREATED");
	json_array_foreach(json_object_get(r, "keys"), i, k)
		printf("%-10s %s\n", jstr(k, "id"), jstr(k, "created"));
}

static void human_rkey_deleted(json_t *r)
{
	printf("replication key %s deleted\n", jstr(r, "id"));
}

static int c_array_replication_key(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (argc >= 1 && !strcmp(argv[0], "create")) {
		struct opt o[] = { { "--out", true } };
		if (parse_args(argc - 1, argv + 1, o, 1, pos, 0, &np, usage))
			return EX_USAGE;
		if (!o[0].seen)
			return call_print("array.replication_key.create", NULL, human_rkey_created);
		/* --out F: the key goes to a new 0600 file, not to the terminal */
		int fd = open(o[0].value, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return die(EX_USAGE, "cannot create %s: %s (it must not exist yet)", o[0].value, strerror(errno));
		json_t *res = NULL;
		int rc = rpc("array.replication_key.create", NULL, &res);
		if (rc) {
			close(fd);
			unlink(o[0].value);
			return rc;
		}
		const char *key = jstr(res, "key");
		size_t kl = strlen(key);
		bool ok = write(fd, key, kl) == (ssize_t)kl && write(fd, "\n", 1) == 1;
		ok &= close(fd) == 0;
		if (!ok) {
			unlink(o[0].value);
			json_decref(res);
			return die(EX_OTHER, "cannot write %s", o[0].value);
		}
		if (g_json) {
			json_object_del(res, "key");
			json_object_set_new(res, "file", json_string(o[0].value));
			print_json(res);
		} else {
			printf("replication key %s written to %s\n", jstr(res, "id"), o[0].value);
		}
		json_decref(res);
		return EX_OK;
	}
	if (argc >= 1 && !strcmp(argv[0], "list")) {
		if (parse_args(argc - 1, argv + 1, NULL, 0, pos, 0, &np, usage))
			return EX_USAGE;
		return call_print("array.replication_key.list", NULL, human_rkeys);
	}
	if (argc >= 1 && !strcmp(argv[0], "delete")) {
		if (parse_args(argc - 1, argv + 1, NULL, 0, pos, 1, &np, usage))
			return EX_USAGE;
		return call_print("array.replication_key.delete", json_pack("{s:s}", "id", pos[0]), human_rkey_deleted);
	}
	return die(EX_USAGE, "usage: %s", usage);
}

static void human_replicate(json_t *r)
{
	if (json_is_false(json_object_get(r, "replication")))
		printf("replication of %s switched off\n", jstr(r, "group"));
	else
		printf("replicating %s.%s: job %" PRIu64 " (rodctl job show %" PRIu64 " --watch)\n", jstr(r, "group"),
		       jstr(r, "snapshot"), jint(r, "job"), jint(r, "job"));
}

static int c_pg_replicate(int argc, char **argv, const char *usage)
{
	struct opt o[] = { { "--to", true }, { "--key-file", true }, { "--bwlimit", true }, { "--off", false },
			   { "--wait", false } };
	const char *pos[1];
	size_t np;
	char key[256];
	if (parse_args(argc, argv, o, 5, pos, 1, &np, usage))
		return EX_USAGE;
	json_t *p = json_pack("{s:s}", "name", pos[0]);
	if (o[3].seen) {
		json_object_set_new(p, "off", json_true());
		return call_print("pg.replicate", p, human_replicate);
	}
	if (o[0].seen != o[1].seen) {
		json_decref(p);
		return die(EX_USAGE, "--to HOST:PORT and --key-file F go together\nusage: %s", usage);
	}
	if (o[0].seen) {
		FILE *f = fopen(o[1].value, "r");
		if (!f) {
			json_decref(p);
			return die(EX_USAGE, "cannot read key file %s: %s", o[1].value, strerror(errno));
		}
		size_t n = fread(key, 1, sizeof(key) - 1, f);
		fclose(f);
		key[n] = 0;
		key[strcspn(key, "\r\n")] = 0;
		json_object_set_new(p, "to", json_string(o[0].value));
		json_object_set_new(p, "key_secret", json_string(key)); /* masked in the audit log */
	}
	if (o[2].seen)
		json_object_set_new(p, "bwlimit", json_string(o[2].value));
	if (!o[4].seen)
		return call_print("pg.replicate", p, human_replicate);
	json_t *res = NULL;
	int rc = rpc("pg.replicate", p, &res);
	if (rc)
		return rc;
	uint64_t id = jint(res, "job");
	json_decref(res);
	return watch_job(id);
}

static void human_replicas(json_t *r)
{
	size_t i, k;
	json_t *g, *s;
	if (json_is_string(json_object_get(r, "listen")))
		printf("listening on %s\n", jstr(r, "listen"));
	json_array_foreach(json_object_get(r, "groups"), i, g) {
		json_t *rx = json_object_get(g, "receiving");
		printf("%s: %zu snapshot(s)%s%s\n", jstr(g, "name"), json_array_size(json_object_get(g, "snapshots")),
		       json_is_object(rx) ? ", receiving " : "", json_is_object(rx) ? jstr(rx, "suffix") : "");
		json_array_foreach(json_object_get(g, "snapshots"), k, s)
			printf("  %-48s created %s, received %s\n", jstr(s, "name"), jstr(s, "created"), jstr(s, "received"));
	}
}

static int c_replica_restore(int argc, char **argv, const char *usage)
{
	return restore_clones(argc, argv, usage, "replica", "replica.restore");
}

static int c_replica_list(int argc, char **argv, const char *usage)
{
	const char *pos[1];
	size_t np;
	if (parse_args(argc, argv, NULL, 0, pos, 0, &np, usage))
		return EX_USAGE;
	return call_print("replica.list", NULL, human_replicas);
}

static const struct {
	const char *noun, *verb;
	cmd_fn fn;
	const char *usage;
} commands[] = {
	{ "array", "show", c_array_show, "rodctl array show" },
	{ "array", "token", c_array_token, "rodctl array token create [--name LABEL] | token list | token delete ID" },
	{ "vol", "create", c_vol_create, "rodctl vol create NAME --size SIZE [--block-size 512|4096]" },
	{ "array", "space", c_array_space, "rodctl array space" },
	{ "array", "set", c_array_set, "rodctl array set --recovery-window DURATION (e.g. 24h, 30m, 2d)" },
	{ "array", "gc", c_array_gc, "rodctl array gc [--full] [--rate BYTES_PER_S] [--wait]" },
	{ "array", "scrub", c_array_scrub, "rodctl array scrub [--wait]" },
	{ "job", "list", c_job_list, "rodctl job list" },
	{ "job", "show", c_job_show, "rodctl job show ID [--watch]" },
	{ "job", "cancel", c_job_cancel, "rodctl job cancel ID" },
	{ "array", "rekey", c_array_rekey, "rodctl array rekey --key-file NEW" },
	{ "vol", "list", c_vol_list, "rodctl vol list [--destroyed]" },
	{ "vol", "show", c_vol_show, "rodctl vol show NAME" },
	{ "vol", "resize", c_vol_resize, "rodctl vol resize NAME --size SIZE [--shrink]" },
	{ "vol", "destroy", c_vol_destroy, "rodctl vol destroy NAME" },
	{ "vol", "set", c_vol_set, "rodctl vol set NAME [--cache write-through|write-back] [--offload on|off] [--dedupe on|off] [--compress on|off]" },
	{ "vol", "snap", c_vol_snap, "rodctl vol snap VOL [--suffix S] | vol snap list [VOL]" },
	{ "vol", "clone", c_vol_clone, "rodctl vol clone SOURCE NEWNAME" },
	{ "vol", "copy", c_vol_copy, "rodctl vol copy SOURCE TARGET [--overwrite]" },
	{ "vol", "revert", c_vol_revert, "rodctl vol revert VOL SNAPSHOT" },
	{ "vol", "rename", c_vol_rename, "rodctl vol rename OLD NEW" },
	{ "vol", "recover", c_vol_recover, "rodctl vol recover NAME" },
	{ "vol", "eradicate", c_vol_eradicate, "rodctl vol eradicate NAME [--wait]" },
	{ "vol", "flatten", c_vol_flatten, "rodctl vol flatten NAME [--all] [--wait]" },
	{ "vol", "scrub", c_vol_scrub, "rodctl vol scrub VOL [--rate BYTES_PER_S] [--wait]" },
	{ "host", "create", c_host_create,
	  "rodctl host create NAME --iqn IQN [--iqn IQN]... [--chap-user U --chap-secret-file F] "
	  "[--mutual-user U --mutual-secret-file F]" },
	{ "host", "list", c_host_list, "rodctl host list" },
	{ "host", "show", c_host_show, "rodctl host show NAME" },
	{ "host", "set", c_host_set,
	  "rodctl host set NAME [--chap-user U --chap-secret-file F] [--mutual-user U --mutual-secret-file F] "
	  "[--no-chap] [--no-mutual]" },
	{ "host", "delete", c_host_delete, "rodctl host delete NAME" },
	{ "host", "connect", c_host_connect, "rodctl host connect HOST VOLUME [--lun N]" },
	{ "host", "disconnect", c_host_disconnect, "rodctl host disconnect HOST VOLUME" },
	{ "pg", "create", c_pg_create, "rodctl pg create NAME" },
	{ "pg", "list", c_pg_list, "rodctl pg list" },
	{ "pg", "show", c_pg_show, "rodctl pg show NAME" },
	{ "pg", "add", c_pg_add, "rodctl pg add NAME VOLUME | pg add NAME --pattern 'GLOB'" },
	{ "pg", "remove", c_pg_remove, "rodctl pg remove NAME VOLUME | pg remove NAME --pattern 'GLOB'" },
	{ "pg", "destroy", c_pg_destroy, "rodctl pg destroy NAME [--with-snapshots]" },
	{ "pg", "snap", c_pg_snap, "rodctl pg snap NAME [--suffix S]" },
	{ "pg", "snap-destroy", c_pg_snap_destroy, "rodctl pg snap-destroy NAME SUFFIX" },
	{ "pg", "schedule", c_pg_schedule, "rodctl pg schedule NAME --every 15m|1h|1d [--at HH:MM] | --off" },
	{ "pg", "retention", c_pg_retention,
	  "rodctl pg retention NAME --keep-all DURATION [--then-per-day N --for DURATION] | --off" },
	{ "pg", "restore", c_pg_restore, "rodctl pg restore NAME SUFFIX --clone-prefix PREFIX" },
	{ "pg", "revert", c_pg_revert, "rodctl pg revert NAME SUFFIX" },
	{ "pg", "replicate", c_pg_replicate,
	  "rodctl pg replicate NAME [--to HOST:PORT --key-file F] [--bwlimit RATE] [--wait] | pg replicate NAME --off" },
	{ "replica", "list", c_replica_list, "rodctl replica list  (on a replication target)" },
	{ "replica", "restore", c_replica_restore, "rodctl replica restore SRC:PG SUFFIX --clone-prefix PREFIX" },
	{ "array", "replication-key", c_array_replication_key,
	  "rodctl array replication-key create [--out FILE] | replication-key list | replication-key delete ID" },
	{ "pg", "tick", c_pg_tick, "rodctl pg tick [--advance DURATION]  (tests: rodd with ROD_TEST_TIME_OFFSET)" },
};

static void usage_all(FILE *f)
{
	fprintf(f, "usage: rodctl [--socket PATH] [--json] COMMAND...\n\ncommands:\n");
	for (size_t i = 0; i < ROD_ARRAY_SIZE(commands); i++)
		fprintf(f, "  %s\n", commands[i].usage);
	fprintf(f, "  rodctl events [--since TIME|DURATION] [--limit N]\n");
	fprintf(f, "\nSizes take K, M, G, T suffixes (powers of 1024). The socket defaults to $ROD_SOCKET or %s.\n"
		   "Exit codes: 0 ok, 1 usage, 2 not found, 3 conflict/exists, 4 rodd unreachable, 5 other.\n",
		DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
	/* Global options may appear anywhere ("rodctl host list --json"). */
	char **rest = argv + 1;   /* compacted in place: what is left after global options */
	int n = 0;
	g_socket = getenv("ROD_SOCKET");
	if (!g_socket || !*g_socket)
		g_socket = DEFAULT_SOCKET;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			g_json = true;
		} else if (!strcmp(argv[i], "--socket")) {
			if (i + 1 >= argc)
				return die(EX_USAGE, "--socket needs a path");
			g_socket = argv[++i];
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			g_socket = argv[i] + 9;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage_all(stdout);
			return EX_OK;
		} else {
			rest[n++] = argv[i];
		}
	}
	if (n < 2 && !(n == 1 && !strcmp(rest[0], "events"))) {
		usage_all(stderr);
		return EX_USAGE;
	}
	if (n >= 1 && !strcmp(rest[0], "events"))
		return c_events(n - 1, rest + 1, "rodctl events [--since TIME|DURATION] [--limit N]");
	bool noun_known = false;
	for (size_t i = 0; i < ROD_ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].noun, rest[0]))
			continue;
		noun_known = true;
		if (!strcmp(commands[i].verb, rest[1])) {
			return commands[i].fn(n - 2, rest + 2, commands[i].usage);
		}
	}
	if (noun_known)
		die(EX_USAGE, "unknown command \"%s %s\" (rodctl --help lists commands)", rest[0], rest[1]);
	else
		die(EX_USAGE, "unknown command \"%s\" (rodctl --help lists commands)", rest[0]);
	return EX_USAGE;
}
