/* The control plane (lib/ctl): the object model (volumes from the engine, hosts,
 * connections = LUN maps) and the JSON-RPC 2.0 server on a unix socket that rodctl
 * talks to. See docs/rodctl.md for the wire format and DESIGN.md "Control plane".
 *
 * lib/ctl does not call lib/scsi directly: rodd hands it hooks (struct rod_ctl_hooks)
 * that apply LUN-map changes to the SCSI target, so the object model can be tested
 * with the engine alone. */
#ifndef ROD_CTL_H
#define ROD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rod/conf.h"

#include "rod/iscsi.h"
#include "rod/store.h"

#define ROD_TARGET_IQN_PREFIX "iqn.2026-11.io.rodstore:"
#define ROD_IQN_MAX 224             /* iSCSI names are at most 223 bytes (RFC 7143 4.2.7.1) */
#define ROD_CHAP_SECRET_MIN 12      /* RFC 7143 12.1.3: at least 96 bits; Windows insists */
#define ROD_CHAP_SECRET_MAX 255
#define ROD_LUN_MAX 16383           /* flat/peripheral addressing with 14 bits */
#define ROD_HOST_IQNS_MAX 16

struct rod_ctl;

/* What rodd plugs in to keep the SCSI target's LUN maps in step (all optional). */
struct rod_ctl_hooks {
	int (*map_add)(void *arg, uint64_t host_id, uint64_t lun, uint64_t vol_id);
	int (*map_remove)(void *arg, uint64_t host_id, uint64_t lun);
	void (*vol_removed)(void *arg, uint64_t vol_id);
	void (*vol_resized)(void *arg, uint64_t vol_id);
	void *arg;
	void (*vol_params_changed)(void *arg, uint64_t vol_id);  /* cache mode, offload */
};

struct rod_ctl_opts {
	struct rod_store *store;
	const char *target_iqn;         /* iqn.2026-11.io.rodstore:<array> */
	const char *const *portals;     /* bound "ADDR:PORT" strings, NULL-terminated */
	const char *key_file;           /* recorded only (encryption comes later); may be NULL */
	const char *data_dir;           /* shown by array.show; a key file inside it is warned about */
	struct rod_ctl_hooks hooks;
};

/* Load hosts and connections from the store and replay every connection through
 * hooks.map_add (rodd's LUN maps are rebuilt this way at start). */
int rod_ctl_new(const struct rod_ctl_opts *o, struct rod_ctl **out);
void rod_ctl_free(struct rod_ctl *c);
/* Replace the portal list shown by array.show (rodd knows it once the listeners are
 * bound, after the control object exists). */
int rod_ctl_set_portals(struct rod_ctl *c, const char *const *portals);

/* Listen for replication connections (rodd --replication ADDR:PORT; port 0 picks one,
 * shown by the replica.list method). Its own thread, TLS 1.3 with replication keys
 * (docs/protection.md "Replication"). 0 or -errno. */
int rod_ctl_replication_listen(struct rod_ctl *c, const char *addr);

/* Apply rod.conf limits (at start and on SIGHUP): max_volumes, gc_rate, gc_threshold,
 * recovery_window (the default; a window set with array.set stays), job_workers (more
 * at once; fewer at the next start), http_require_token. 0 or -errno. */
int rod_ctl_set_limits(struct rod_ctl *c, const struct rod_conf_limits *l);
/* http_require_token: false when loopback HTTP clients may call without a token. */
bool rod_ctl_http_token_required(struct rod_ctl *c);

/* The iSCSI auth_lookup callback (arg = struct rod_ctl *): maps an initiator name to a
 * host and its CHAP secrets. An exact IQN beats a glob, a longer glob beats a shorter.
 * Returns 0, or -ENOENT when no host matches. */
int rod_ctl_auth_lookup(void *arg, const char *initiator_name, struct rod_iscsi_auth *out);

/* Run one JSON-RPC method. params may be NULL. On success returns 0 and *result (new
 * reference). On failure returns an error code from enum rod_ctl_err and *errmsg
 * (malloc'd, says what to do). */
enum rod_ctl_err {
	ROD_CTL_OK = 0,
	ROD_CTL_EINVAL = -32602,        /* JSON-RPC "invalid params": bad name, size, ... */
	ROD_CTL_ENOMETHOD = -32601,
	ROD_CTL_EPARSE = -32700,
	ROD_CTL_EREQUEST = -32600,
	ROD_CTL_EOTHER = -32000,        /* application errors: */
	ROD_CTL_ENOENT = -32001,        /*   object not found */
	ROD_CTL_EEXIST = -32002,        /*   conflict / exists / in use */
};
int rod_ctl_call(struct rod_ctl *c, const char *method, json_t *params, json_t **result,
		 char **errmsg);

/* rod_ctl_call, recorded in the audit log (rodctl events) when the method changes
 * something: who names the caller ("uid:1000", "token:ID", "rodd"). */
int rod_ctl_call_as(struct rod_ctl *c, const char *who, const char *method, json_t *params, json_t **result,
		    char **errmsg);

/* Handle one JSON-RPC request document (text); returns the response text (malloc'd,
 * no trailing newline), or NULL for a notification (no id). */
char *rod_ctl_handle_text(struct rod_ctl *c, const char *req, size_t len);
/* The same, recording changes in the audit log as made by who. */
char *rod_ctl_handle_text_as(struct rod_ctl *c, const char *who, const char *req, size_t len);

/* The control socket: one thread ("rod-ctl") serving newline-delimited JSON-RPC. */
struct rod_ctl_server;
/* Binds path (creating its parent directory; refuses if another daemon answers
 * there, removes a stale socket). */
int rod_ctl_server_new(struct rod_ctl *c, const char *path, struct rod_ctl_server **out);
int rod_ctl_server_start(struct rod_ctl_server *s);
/* Stop accepting, finish the request being served, close, join, unlink the socket. */
void rod_ctl_server_free(struct rod_ctl_server *s);

/* ---- Pure helpers (tests/unit/test_ctl_iqn.c) ------------------------------------- */

/* Valid initiator IQN or glob: iSCSI name characters (a-z 0-9 - . :), lowercase, plus
 * '*' and '?' as wildcards; a name without wildcards starts with iqn., eui. or naa. */
bool rod_iqn_pattern_valid(const char *pat);
bool rod_iqn_is_glob(const char *pat);
/* Does pattern match name (case-insensitive, as iSCSI names are)? */
bool rod_iqn_match(const char *pat, const char *name);
/* Could some name match both globs? (used to refuse ambiguous ties) */
bool rod_iqn_globs_overlap(const char *a, const char *b);
/* Match rank: -1 no match; exact names rank above every glob; longer globs above
 * shorter ones. */
long rod_iqn_rank(const char *pat, const char *name);

/* Array name from a host name: lowercased, invalid characters to '-', first label
 * only, at most 63 characters; "rodstore" if nothing is left. */
void rod_array_name_from_host(const char *host, char *out, size_t len);
/* Target IQN for an array name (lowercase; '_' becomes '-', which IQNs allow). */
void rod_target_iqn(const char *array_name, char *out, size_t len);

#endif
