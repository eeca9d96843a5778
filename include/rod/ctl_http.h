/* The HTTP side of the control plane (lib/ctl/http.c, api_token.c, metrics.c): a REST
 * API that maps onto the JSON-RPC methods of rod_ctl_call, bearer-token authentication
 * for it, and /metrics in the Prometheus text format. See docs/api.md.
 *
 * Like the rest of lib/ctl, nothing here calls lib/scsi or lib/iscsi: rodd hands the
 * metrics module callbacks that read their statistics. */
#ifndef ROD_CTL_HTTP_H
#define ROD_CTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "rod/ctl.h"
#include "rod/iscsi.h"
#include "rod/scsi_stats.h"
#include "rod/store.h"

/* ---- API tokens (api_token.c) -------------------------------------------------------
 * A token is "rod_<id>_<secret>" (16 + 64 hex digits). Only its SHA-256 is stored
 * (rod_store_meta_put, key ctl/api_token/<id>); the token itself is shown once, by
 * array.token.create. These implement the JSON-RPC methods array.token.create
 * ({"name": LABEL} optional), array.token.list and array.token.delete ({"id": ID});
 * return codes and messages as rod_ctl_call. */
#define ROD_API_TOKEN_LEN 85
int rod_api_token_create(struct rod_store *s, json_t *params, json_t **res, char **msg);
int rod_api_token_list(struct rod_store *s, json_t *params, json_t **res, char **msg);
int rod_api_token_delete(struct rod_store *s, json_t *params, json_t **res, char **msg);
/* Is token (NUL-terminated, from an Authorization header) a live API token? Constant
 * time in the secret. */
bool rod_api_token_valid(struct rod_store *s, const char *token);

/* ---- Metrics (metrics.c) ------------------------------------------------------------ */

/* Space figures cost a scan of the maps (per volume and for the array); /metrics shows
 * them from this cache, which the HTTP server's "rod-http-space" thread recomputes at
 * most every rod.conf metrics_interval, and only when a scrape came since. A scrape
 * then costs O(volumes). */
struct rod_metrics_space {
	struct rod_space array;
	bool have_array;
	struct rod_metrics_vol_space {
		uint64_t vol_id;
		struct rod_space sp;
	} *vols;                          /* malloc'd, live volumes whose figures were computed */
	size_t n_vols;
	uint64_t computed_ns;             /* rod_now_ns() when computed; 0: never */
	uint64_t cost_ns;                 /* what computing them took */
};
/* Compute the figures now (every live volume, then the array). */
int rod_metrics_space_compute(struct rod_store *s, struct rod_metrics_space *out);
void rod_metrics_space_release(struct rod_metrics_space *sp);

/* What the control plane tells /metrics (ctl.c). */
struct rod_ctl_status {
	bool gc_running;                  /* a GC or eradicate job's pass is running */
	uint64_t gc_done, gc_total;       /* its segments (done, total so far) */
	uint64_t gc_read, gc_moved;       /* its segment bytes read, live bytes moved */
	uint64_t jobs_queued, jobs_running;
	uint64_t metrics_interval_s;      /* rod.conf metrics_interval */
};
void rod_ctl_status_get(struct rod_ctl *c, struct rod_ctl_status *out);

struct rod_metrics_src {
	struct rod_store *store;
	/* Optional readers of the layers rodd owns (NULL: those families are left out). */
	int (*scsi_stats)(void *arg, struct rod_scsi_stats_snapshot *out);
	void *scsi_arg;
	void (*iscsi_stats)(void *arg, struct rod_iscsi_stats *out);
	void *iscsi_arg;
	/* Set by the HTTP server for each scrape: */
	struct rod_ctl *ctl;              /* NULL: no job/GC-pass families */
	const struct rod_metrics_space *space;  /* cached space figures; NULL: computed now */
};
/* The whole exposition (text format 0.0.4) in a malloc'd NUL-terminated buffer. */
int rod_metrics_render(const struct rod_metrics_src *src, char **text, size_t *len);

/* ---- HTTP server (http.c) ----------------------------------------------------------- */
struct rod_http_opts {
	struct rod_ctl *ctl;
	struct rod_store *store;          /* for token checks */
	const char *listen;               /* "ADDR:PORT" or "[v6]:PORT"; port 0 = any */
	bool allow_remote;                /* false: only loopback addresses may be bound */
	struct rod_metrics_src metrics;
};
struct rod_http_server;
/* Binds the listening socket (refuses a non-loopback address unless allow_remote:
 * -EPERM). */
int rod_http_server_new(const struct rod_http_opts *o, struct rod_http_server **out);
/* The bound address as "ADDR:PORT" (the real port when 0 was asked). */
const char *rod_http_server_address(const struct rod_http_server *s);
/* One thread ("rod-http") serves every connection. */
int rod_http_server_start(struct rod_http_server *s);
/* Stop the thread, close every connection and the socket, free. */
void rod_http_server_free(struct rod_http_server *s);

#endif
