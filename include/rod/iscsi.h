/* The iSCSI target (lib/iscsi): RFC 7143 over TCP, feeding lib/scsi.
 * A small fixed set of epoll threads owns the connections (DESIGN.md "Threads"). */
#ifndef ROD_ISCSI_H
#define ROD_ISCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rod/scsi.h"

struct rod_iscsi_server;

/* What the control plane knows of an initiator: which host it is and its secrets. */
struct rod_iscsi_auth {
	uint64_t host_id;            /* 0: no host matched (login refused for normal sessions) */
	char chap_user[256];         /* empty: CHAP not required */
	char chap_secret[256];
	char mutual_user[256];       /* empty: no mutual CHAP */
	char mutual_secret[256];
};

struct rod_iscsi_server_opts {
	const char *target_name;     /* the one target of this array */
	const char *target_alias;    /* optional TargetAlias */
	const char *const *listen;   /* "ADDR:PORT" or "[v6]:PORT", NULL-terminated */
	int threads;                 /* network threads; 0: one per core */
	struct rod_scsi_target *scsi;
	/* Look up the initiator by its name. Returns 0 and fills *out; -ENOENT: no host.
	 * Called on the login thread; must not block for long. */
	int (*auth_lookup)(void *arg, const char *initiator_name, struct rod_iscsi_auth *out);
	void *auth_arg;
	/* Discovery sessions: CHAP settings (empty user: none). */
	char discovery_chap_user[256];
	char discovery_chap_secret[256];
	/* Normal sessions logged in at most (rod.conf max_sessions); 0: unlimited. A login
	 * beyond it is refused with 03/02 (out of resources). */
	unsigned max_sessions;
};

/* Bind every listen address (fails with -errno and a log line if one cannot be bound). */
int rod_iscsi_server_new(const struct rod_iscsi_server_opts *o, struct rod_iscsi_server **out);
/* The bound addresses, e.g. after asking for port 0 ("127.0.0.1:34567"). */
size_t rod_iscsi_server_portals(struct rod_iscsi_server *s, char (*out)[64], size_t max);
/* Start the network threads. */
int rod_iscsi_server_start(struct rod_iscsi_server *s);
/* Stop accepting, let in-flight commands finish, close every connection, join threads. */
void rod_iscsi_server_stop(struct rod_iscsi_server *s);
void rod_iscsi_server_free(struct rod_iscsi_server *s);

/* Serve exactly one connection on fd (already accepted or a pipe/stdin pair) on the
 * calling thread until it closes; for rodd --stdin and fuzzing. */
int rod_iscsi_serve_fd(struct rod_iscsi_server *s, int in_fd, int out_fd);

struct rod_iscsi_stats {
	uint64_t sessions;           /* logged-in sessions now */
	uint64_t connections;
	uint64_t pdus_in, pdus_out;
	uint64_t bad_pdus;           /* connections dropped for malformed PDUs */
	uint64_t thread_moves;       /* network threads that moved to an initiator's CPU */
};
void rod_iscsi_server_stats(struct rod_iscsi_server *s, struct rod_iscsi_stats *out);
/* Change max_sessions while running (SIGHUP); sessions beyond a lowered limit stay. */
void rod_iscsi_server_set_max_sessions(struct rod_iscsi_server *s, unsigned n);

#endif
