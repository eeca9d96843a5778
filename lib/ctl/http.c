/* The HTTP API of rodd (libmicrohttpd): REST routes that map onto the JSON-RPC methods
 * of rod_ctl_call (same parameters, same result objects), bearer-token authentication
 * for /api, and /metrics. See docs/api.md.
 *
 * Threads: libmicrohttpd runs without threads of its own; one named thread ("rod-http")
 * waits on its epoll descriptor and calls MHD_run, so every request is answered on that
 * thread (control operations are serialised by rod_ctl_call anyway). An eventfd wakes
 * the thread to stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "rod/ctl_http.h"
#include "rod/log.h"
#include "rod/util.h"

#define BODY_MAX (1u << 20)        /* request bodies are small JSON objects */
#define HTTP_CONN_MAX 64
#define HTTP_TIMEOUT_S 30

struct rod_http_server {
	struct rod_ctl *ctl;
	struct rod_store *store;
	struct rod_metrics_src metrics;
	int listen_fd;                  /* handed to MHD at start (it closes it) */
	char address[80];
	struct MHD_Daemon *mhd;
	pthread_t thread;
	bool started;
	int wake_fd;                    /* eventfd: stop */
	atomic_bool stopping;
	/* Space figures for /metrics: the "rod-http-space" thread recomputes them every
	 * metrics_interval while scrapes come (one in the last SPACE_IDLE_S), so a scrape
	 * never scans the maps. sp_lock guards space, last_scrape_ns, sp_stop (sp_cv). */
	pthread_mutex_t sp_lock;
	pthread_cond_t sp_cv;
	struct rod_metrics_space space;
	uint64_t last_scrape_ns;
	bool sp_stop, sp_started;
	pthread_t sp_thread;
};

/* Scrapers stopped for this long: the space figures are no longer refreshed. */
#define SPACE_IDLE_S 300
/* The first scrape waits this long for the first figures. */
#define SPACE_FIRST_WAIT_S 2

/* Per-request state (con_cls): the body gathered so far. */
struct req {
	char *body;
	size_t len;
	bool too_big;
};

/* ---- routes ------------------------------------------------------------------------- */

/* A REST route: METHOD and a path whose "*" segments become the named parameters of the
 * JSON-RPC method (merged over the body's object). */
struct route {
	const char *method;
	const char *path;
	const char *rpc;
	const char *args[2];
	unsigned status;                /* on success */
	/* PATCH of a volume: rpc when the body has "size", else rpc_other (vol.set) */
	const char *rpc_other;
};

static const struct route routes[] = {
	{ "GET", "/api/v1/array", "array.show", { NULL }, 200 },
	{ "GET", "/api/v1/volumes", "vol.list", { NULL }, 200 },
	{ "POST", "/api/v1/volumes", "vol.create", { NULL }, 201 },
	{ "GET", "/api/v1/volumes/*", "vol.show", { "name" }, 200 },
	{ "PATCH", "/api/v1/volumes/*", "vol.resize", { "name" }, 200, "vol.set" },
	{ "POST", "/api/v1/volumes/*/resize", "vol.resize", { "name" }, 200 },
	{ "DELETE", "/api/v1/volumes/*", "vol.destroy", { "name" }, 200 },
	{ "GET", "/api/v1/hosts", "host.list", { NULL }, 200 },
	{ "POST", "/api/v1/hosts", "host.create", { NULL }, 201 },
	{ "GET", "/api/v1/hosts/*", "host.show", { "name" }, 200 },
	{ "DELETE", "/api/v1/hosts/*", "host.delete", { "name" }, 200 },
	{ "POST", "/api/v1/hosts/*/connections", "host.connect", { "host" }, 201 },
	{ "DELETE", "/api/v1/hosts/*/connections/*", "host.disconnect", { "host", "volume" }, 200 },
	{ "GET", "/api/v1/tokens", "array.token.list", { NULL }, 200 },
	{ "POST", "/api/v1/tokens", "array.token.create", { NULL }, 201 },
	{ "DELETE", "/api/v1/tokens/*", "array.token.delete", { "id" }, 200 },
	{ "GET", "/api/v1/array/space", "array.space", { NULL }, 200 },
	{ "PATCH", "/api/v1/array", "array.set", { NULL }, 200 },
	{ "POST", "/api/v1/array/gc", "array.gc", { NULL }, 202 },
	{ "GET", "/api/v1/snapshots", "vol.snap.list", { NULL }, 200 },
	{ "POST", "/api/v1/volumes/*/snapshots", "vol.snap", { "name" }, 201 },
	{ "POST", "/api/v1/volumes/*/clone", "vol.clone", { "source" }, 201 },
	{ "POST", "/api/v1/volumes/*/copy", "vol.copy", { "source" }, 200 },
	{ "POST", "/api/v1/volumes/*/revert", "vol.revert", { "name" }, 200 },
	{ "POST", "/api/v1/volumes/*/rename", "vol.rename", { "name" }, 200 },
	{ "POST", "/api/v1/volumes/*/recover", "vol.recover", { "name" }, 200 },
	{ "POST", "/api/v1/volumes/*/eradicate", "vol.eradicate", { "name" }, 200 },
	{ "POST", "/api/v1/volumes/*/scrub", "vol.scrub", { "name" }, 202 },
	{ "POST", "/api/v1/volumes/*/flatten", "vol.flatten", { "name" }, 202 },
	{ "PATCH", "/api/v1/hosts/*", "host.set", { "name" }, 200 },
	{ "GET", "/api/v1/jobs", "job.list", { NULL }, 200 },
	{ "GET", "/api/v1/jobs/*", "job.show", { "id" }, 200 },
	{ "DELETE", "/api/v1/jobs/*", "job.cancel", { "id" }, 200 },
	{ "GET", "/api/v1/events", "events.list", { NULL }, 200 },
	/* protection groups (pg.c) */
	{ "GET", "/api/v1/pgs", "pg.list", { NULL }, 200 },
	{ "POST", "/api/v1/pgs", "pg.create", { NULL }, 201 },
	{ "GET", "/api/v1/pgs/*", "pg.show", { "name" }, 200 },
	{ "DELETE", "/api/v1/pgs/*", "pg.destroy", { "name" }, 200 },
	{ "POST", "/api/v1/pgs/*/members", "pg.add", { "name" }, 200 },
	{ "DELETE", "/api/v1/pgs/*/members", "pg.remove", { "name" }, 200 },
	{ "DELETE", "/api/v1/pgs/*/members/*", "pg.remove", { "name", "volume" }, 200 },
	{ "POST", "/api/v1/pgs/*/snapshots", "pg.snap", { "name" }, 201 },
	{ "DELETE", "/api/v1/pgs/*/snapshots/*", "pg.snap.destroy", { "name", "snapshot" }, 200 },
	{ "POST", "/api/v1/pgs/*/snapshots/*/restore", "pg.restore", { "name", "snapshot" }, 201 },
	{ "POST", "/api/v1/pgs/*/snapshots/*/revert", "pg.revert", { "name", "snapshot" }, 200 },
	{ "PUT", "/api/v1/pgs/*/schedule", "pg.schedule", { "name" }, 200 },
	{ "PUT", "/api/v1/pgs/*/retention", "pg.retention", { "name" }, 200 },
	/* replication (repl.c) */
	{ "POST", "/api/v1/pgs/*/replicate", "pg.replicate", { "name" }, 202 },
	{ "GET", "/api/v1/replicas", "replica.list", { NULL }, 200 },
	{ "GET", "/api/v1/replication-keys", "array.replication_key.list", { NULL }, 200 },
	{ "POST", "/api/v1/replication-keys", "array.replication_key.create", { NULL }, 201 },
	{ "DELETE", "/api/v1/replication-keys/*", "array.replication_key.delete", { "id" }, 200 },
	/* any JSON-RPC method by name, params as the body: REST reaches every method */
	{ "POST", "/api/v1/rpc/*", NULL, { NULL }, 200 },
};

/* Match path against pattern; the "*" segments (non-empty, no '/') go to caps. */
static bool path_match(const char *pat, const char *path, char caps[2][256], unsigned *ncaps)
{
	*ncaps = 0;
	while (*pat && *path) {
		if (*pat == '*') {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= 256 || *ncaps == 2)
				return false;
			memcpy(caps[*ncaps], path, n);
			caps[(*ncaps)++][n] = '\0';
			path += n;
			pat++;
			continue;
		}
		if (*pat != *path)
			return false;
		pat++;
		path++;
	}
	/* a trailing slash is forgiven */
	return !*pat && (!*path || !strcmp(path, "/"));
}

/* ---- responses ---------------------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, char *text, size_t len,
				 const char *ctype, const char *extra_name, const char *extra_value)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (extra_name)
		MHD_add_response_header(r, extra_name, extra_value);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *j,
				 const char *extra_name, const char *extra_value)
{
	char *txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!txt)
		return MHD_NO;
	size_t len = strlen(txt);
	char *t2 = realloc(txt, len + 2);
	if (t2) {
		txt = t2;
		txt[len++] = '\n';
		txt[len] = '\0';
	}
	return send_text(conn, status, txt, len, "application/json", extra_name, extra_value);
}

/* JSON-RPC error codes to HTTP statuses, as a table. */
static const struct {
	int code;
	unsigned status;
	const char *kind;
} err_map[] = {
	{ ROD_CTL_EINVAL, 400, "invalid" },
	{ ROD_CTL_EPARSE, 400, "parse" },
	{ ROD_CTL_EREQUEST, 400, "request" },
	{ ROD_CTL_ENOENT, 404, "not_found" },
	{ ROD_CTL_ENOMETHOD, 404, "no_method" },
	{ ROD_CTL_EEXIST, 409, "conflict" },
	{ ROD_CTL_EOTHER, 500, "other" },
};

static enum MHD_Result send_error_status(struct MHD_Connection *conn, unsigned status, int code, const char *kind,
					 const char *message, const char *hname, const char *hvalue)
{
	json_t *e = json_pack("{s:{s:i, s:s, s:s}}", "error", "code", code, "message", message ? message : "error",
			      "kind", kind);
	return send_json(conn, status, e, hname, hvalue);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int code, const char *message)
{
	unsigned status = 500;
	const char *kind = "other";
	for (size_t i = 0; i < ROD_ARRAY_SIZE(err_map); i++)
		if (err_map[i].code == code) {
			status = err_map[i].status;
			kind = err_map[i].kind;
		}
	return send_error_status(conn, status, code, kind, message, NULL, NULL);
}

/* ---- request handling --------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa);

/* true when the request carries a live token; its id (the public part) goes to
 * who[17] for the log. */
static bool authorized(struct rod_http_server *s, struct MHD_Connection *conn, char who[17])
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h && !rod_ctl_http_token_required(s->ctl)) {
		/* rod.conf http_require_token = no: clients on this machine need none */
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && ci->client_addr && is_loopback(ci->client_addr)) {
			snprintf(who, 17, "loopback");
			return true;
		}
	}
	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	if (!rod_api_token_valid(s->store, h))
		return false;
	memcpy(who, h + 4, 16);     /* "rod_<id>_...": checked by rod_api_token_valid */
	who[16] = '\0';
	return true;
}

static enum MHD_Result serve_metrics(struct rod_http_server *s, struct MHD_Connection *conn)
{
	char *text = NULL;
	size_t len = 0;
	int rc;
	pthread_mutex_lock(&s->sp_lock);
	s->last_scrape_ns = rod_now_ns();
	pthread_cond_broadcast(&s->sp_cv);
	if (!s->space.computed_ns && s->sp_started) {
		/* the first scrape wakes the thread and waits a little for its figures; on a
		 * large array it answers without them (the next scrapes have them) */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += SPACE_FIRST_WAIT_S;
		while (!s->space.computed_ns)
			if (pthread_cond_timedwait(&s->sp_cv, &s->sp_lock, &ts) == ETIMEDOUT)
				break;
	}
	struct rod_metrics_src m = s->metrics;
	m.ctl = s->ctl;
	/* no thread: computed here, as before; else the cache (empty until first computed) */
	m.space = s->sp_started ? &s->space : NULL;
	rc = rod_metrics_render(&m, &text, &len);
	pthread_mutex_unlock(&s->sp_lock);
	if (rc)
		return send_error_status(conn, 500, ROD_CTL_EOTHER, "other", "cannot render the metrics", NULL, NULL);
	return send_text(conn, 200, text, len, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}

static enum MHD_Result serve_api(struct rod_http_server *s, struct MHD_Connection *conn, const char *url,
				 const char *method, struct req *rq)
{
	char who[17];
	if (!authorized(s, conn, who))
		return send_error_status(conn, 401, ROD_CTL_EOTHER, "unauthorized",
					 "missing or invalid API token: send \"Authorization: Bearer TOKEN\" "
					 "(create one with rodctl array token create)",
					 "WWW-Authenticate", "Bearer realm=\"rodstore\"");
	const struct route *rt = NULL;
	bool path_known = false;
	char caps[2][256];
	unsigned ncaps = 0;
	for (size_t i = 0; i < ROD_ARRAY_SIZE(routes); i++) {
		if (!path_match(routes[i].path, url, caps, &ncaps))
			continue;
		path_known = true;
		if (!strcmp(routes[i].method, method)) {
			rt = &routes[i];
			break;
		}
	}
	if (!rt && path_known)
		return send_error_status(conn, 405, ROD_CTL_EREQUEST, "request",
					 "this method is not allowed on this path (docs/api.md lists the calls)", NULL,
					 NULL);
	if (!rt)
		return send_error_status(conn, 404, ROD_CTL_ENOMETHOD, "no_method",
					 "no such API path (docs/api.md lists the calls)", NULL, NULL);
	if (rq->too_big)
		return send_error_status(conn, 413, ROD_CTL_EREQUEST, "request", "request body over 1 MiB", NULL, NULL);

	json_t *params;
	if (rq->len) {
		json_error_t jerr;
		params = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
		if (!params) {
			char m[256];
			snprintf(m, sizeof(m), "request body is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
				 jerr.column);
			return send_error(conn, ROD_CTL_EPARSE, m);
		}
		if (!json_is_object(params)) {
			json_decref(params);
			return send_error(conn, ROD_CTL_EINVAL, "request body must be a JSON object");
		}
	} else {
		params = json_object();
	}
	const char *rpc = rt->rpc;
	if (!rpc) {
		rpc = caps[0];
	} else {
		if (rt->rpc_other && !json_object_get(params, "size")) {
			rpc = rt->rpc_other;
		} else if (rt->rpc_other && (json_object_get(params, "cache") || json_object_get(params, "offload"))) {
			json_decref(params);
			return send_error(conn, ROD_CTL_EINVAL,
					  "change the size and the settings (cache, offload) in separate PATCH requests");
		}
		for (unsigned i = 0; i < ncaps && i < 2 && rt->args[i]; i++)
			json_object_set_new(params, rt->args[i], json_string(caps[i]));
	}
	json_t *result = NULL;
	char *msg = NULL;
	char actor[96];
	snprintf(actor, sizeof(actor), "token:%s", who);
	int rc = rod_ctl_call_as(s->ctl, actor, rpc, params, &result, &msg);
	json_decref(params);
	/* who changed what, for the log (reads only at debug level) */
	if (strcmp(method, "GET"))
		rod_info("http: token %s: %s %s -> %s%s%s", who, method, url, rpc, rc ? ": " : " ok",
			 rc ? (msg ? msg : "failed") : "");
	else
		rod_debug("http: token %s: GET %s -> %s (%d)", who, url, rpc, rc);
	enum MHD_Result ret;
	if (rc)
		ret = send_error(conn, rc, msg);
	else
		ret = send_json(conn, rt->status, result, NULL, NULL);
	free(msg);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct rod_http_server *s = cls;
	(void)version;
	struct req *rq = *con_cls;
	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (rq->too_big || rq->len + n > BODY_MAX) {
			rq->too_big = true;
			return MHD_YES;
		}
		char *nb = realloc(rq->body, rq->len + n + 1);
		if (!nb)
			return MHD_NO;
		memcpy(nb + rq->len, upload_data, n);
		rq->body = nb;
		rq->len += n;
		rq->body[rq->len] = '\0';
		return MHD_YES;
	}
	if (!strcmp(url, "/metrics")) {
		if (strcmp(method, "GET") && strcmp(method, "HEAD"))
			return send_error_status(conn, 405, ROD_CTL_EREQUEST, "request", "/metrics answers GET", NULL,
						 NULL);
		return serve_metrics(s, conn);
	}
	if (!strncmp(url, "/api/", 5) || !strcmp(url, "/api"))
		return serve_api(s, conn, url, method, rq);
	return send_error_status(conn, 404, ROD_CTL_ENOMETHOD, "no_method",
				 "not found: the API lives under /api/v1 and the metrics at /metrics", NULL, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct req *rq = *con_cls;
	if (rq) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

/* ---- listening socket --------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

/* "ADDR:PORT" / "[v6]:PORT" / "localhost:PORT" -> host and port strings. */
static int split_hostport(const char *in, char *host, size_t hl, char *port, size_t pl)
{
	const char *colon;
	if (in[0] == '[') {
		const char *rb = strchr(in, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - in - 1) >= hl)
			return -EINVAL;
		memcpy(host, in + 1, (size_t)(rb - in - 1));
		host[rb - in - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(in, ':');
		if (!colon || colon == in || (size_t)(colon - in) >= hl || memchr(in, ':', (size_t)(colon - in)))
			return -EINVAL;
		memcpy(host, in, (size_t)(colon - in));
		host[colon - in] = '\0';
	}
	if (!colon[1] || strlen(colon + 1) >= pl || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    atol(colon + 1) > 65535)
		return -EINVAL;
	snprintf(port, pl, "%s", colon + 1);
	return 0;
}

static int bind_listen(const char *listen_on, bool allow_remote, int *fd_out, char *addr, size_t alen)
{
	char host[128], port[8];
	if (split_hostport(listen_on, host, sizeof(host), port, sizeof(port))) {
		rod_err("http: \"%s\" is not ADDR:PORT (IPv6 as [ADDR]:PORT)", listen_on);
		return -EINVAL;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
	if (strcmp(host, "localhost"))
		hints.ai_flags |= AI_NUMERICHOST;
	else
		snprintf(host, sizeof(host), "127.0.0.1");
	struct addrinfo *ai = NULL;
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g || !ai) {
		rod_err("http: cannot use address \"%s\": %s", listen_on, gai_strerror(g));
		return -EINVAL;
	}
	if (!allow_remote && !is_loopback(ai->ai_addr)) {
		rod_err("http: %s is not a loopback address; the HTTP API listens on loopback only unless "
			"--http-allow-remote is given", listen_on);
		freeaddrinfo(ai);
		return -EPERM;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1, rc = 0;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64))
		rc = -errno;
	freeaddrinfo(ai);
	if (rc) {
		rod_err("http: cannot listen on %s: %s", listen_on, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned p = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
			p = ntohs(a->sin_port);
		} else {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
			p = ntohs(a->sin6_port);
		}
	}
	snprintf(addr, alen, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, p);
	*fd_out = fd;
	return 0;
}

/* libmicrohttpd's own messages (bad requests, out of connections) go to rodd's log,
 * which reaches syslog when rodd runs in the background. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[256];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	rod_warn("http: %s", buf);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

int rod_http_server_new(const struct rod_http_opts *o, struct rod_http_server **out)
{
	if (!o || !o->ctl || !o->store || !o->listen)
		return -EINVAL;
	struct rod_http_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctl = o->ctl;
	s->store = o->store;
	s->metrics = o->metrics;
	pthread_mutex_init(&s->sp_lock, NULL);
	pthread_cond_init(&s->sp_cv, NULL);
	if (!s->metrics.store)
		s->metrics.store = o->store;
	s->wake_fd = -1;
	int rc = bind_listen(o->listen, o->allow_remote, &s->listen_fd, s->address, sizeof(s->address));
	if (rc) {
		pthread_mutex_destroy(&s->sp_lock);
		pthread_cond_destroy(&s->sp_cv);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

const char *rod_http_server_address(const struct rod_http_server *s)
{
	return s->address;
}

static void *http_thread(void *arg)
{
	struct rod_http_server *s = arg;
	pthread_setname_np(pthread_self(), "rod-http");
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	if (ep < 0 || !di) {
		rod_err("http: cannot set up the event loop; the HTTP API is down");
		if (ep >= 0)
			close(ep);
		return NULL;
	}
	ev.data.fd = di->epoll_fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, di->epoll_fd, &ev);
	ev.data.fd = s->wake_fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, s->wake_fd, &ev);
	while (!atomic_load(&s->stopping)) {
		MHD_UNSIGNED_LONG_LONG to = 0;
		int ms = 1000;
		if (MHD_get_timeout(s->mhd, &to) == MHD_YES)
			ms = to < 1000 ? (int)to : 1000;
		struct epoll_event got[2];
		int n = epoll_wait(ep, got, 2, ms);
		if (n < 0 && errno != EINTR)
			break;
		if (atomic_load(&s->stopping))
			break;
		MHD_run(s->mhd);
	}
	close(ep);
	return NULL;
}

static void *space_thread(void *arg)
{
	struct rod_http_server *s = arg;
	pthread_setname_np(pthread_self(), "rod-http-space");
	pthread_mutex_lock(&s->sp_lock);
	while (!s->sp_stop) {
		struct rod_ctl_status st;
		rod_ctl_status_get(s->ctl, &st);
		uint64_t now = rod_now_ns(), interval = (st.metrics_interval_s ? st.metrics_interval_s : 10) * 1000000000ull;
		bool scraped = s->last_scrape_ns && now - s->last_scrape_ns < SPACE_IDLE_S * 1000000000ull;
		if (!scraped || (s->space.computed_ns && now - s->space.computed_ns < interval)) {
			/* wait for a scrape or the next refresh (re-read the interval each second) */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&s->sp_cv, &s->sp_lock, &ts);
			continue;
		}
		pthread_mutex_unlock(&s->sp_lock);
		struct rod_metrics_space sp;
		int rc = rod_metrics_space_compute(s->store, &sp);
		pthread_mutex_lock(&s->sp_lock);
		if (rc == 0) {
			rod_metrics_space_release(&s->space);
			s->space = sp;
		} else {
			s->space.computed_ns = rod_now_ns();   /* try again an interval later */
		}
		pthread_cond_broadcast(&s->sp_cv);      /* a first scrape may be waiting */
	}
	pthread_mutex_unlock(&s->sp_lock);
	return NULL;
}

int rod_http_server_start(struct rod_http_server *s)
{
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0)
		return -errno;
	s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
				  MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
				  (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				  MHD_OPTION_END);
	if (!s->mhd) {
		rod_err("http: libmicrohttpd did not start on %s", s->address);
		return -EIO;
	}
	s->listen_fd = -1;              /* MHD owns it now */
	int rc = pthread_create(&s->thread, NULL, http_thread, s);
	if (rc)
		return -rc;
	s->started = true;
	if (pthread_create(&s->sp_thread, NULL, space_thread, s) == 0)
		s->sp_started = true;
	else
		rod_warn("http: cannot start the space-figures thread; /metrics shows them as first computed");
	return 0;
}

void rod_http_server_free(struct rod_http_server *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, true);
	if (s->started) {
		uint64_t one = 1;
		if (write(s->wake_fd, &one, sizeof(one)) != sizeof(one))
			rod_warn("http: cannot wake the HTTP thread");
		pthread_join(s->thread, NULL);
	}
	if (s->mhd)
		MHD_stop_daemon(s->mhd);
	if (s->sp_started) {
		pthread_mutex_lock(&s->sp_lock);
		s->sp_stop = true;
		pthread_cond_broadcast(&s->sp_cv);
		pthread_mutex_unlock(&s->sp_lock);
		pthread_join(s->sp_thread, NULL);
	}
	rod_metrics_space_release(&s->space);
	pthread_mutex_destroy(&s->sp_lock);
	pthread_cond_destroy(&s->sp_cv);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	free(s);
}
