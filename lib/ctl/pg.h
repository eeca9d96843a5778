/* Protection groups (lib/ctl/pg.c): sets of volumes, by name or glob pattern, with
 * crash-consistent group snapshots, a snapshot schedule and a retention policy, taken
 * and pruned by the daemon itself on a timer thread. See docs/protection.md. */
#ifndef ROD_CTL_PG_H
#define ROD_CTL_PG_H

#include <jansson.h>

#include "rod/store.h"

struct rod_pg;

/* Load the groups from the store and start the scheduler thread ("rod-pg"). The
 * scheduler's clock is the wall clock plus ROD_TEST_TIME_OFFSET seconds when that
 * environment variable is set (tests); only then is the pg.tick method available. */
int rod_pg_new(struct rod_store *s, struct rod_pg **out);
/* Stop the scheduler thread and free. */
void rod_pg_free(struct rod_pg *p);
/* Run one "pg.*" JSON-RPC method; same contract as rod_ctl_call (enum rod_ctl_err). */
int rod_pg_call(struct rod_pg *p, const char *method, json_t *params, json_t **res, char **msg);

/* For replication (repl.c). The hooks are called with the group lock held: they must
 * not call back into rod_pg_*. keep: retention must not destroy this group snapshot;
 * snap_taken: a scheduled group snapshot was taken; show: the "replication" field of
 * pg show (new reference, or NULL for null). */
struct rod_pg_repl_hooks {
	void *arg;
	bool (*keep)(void *arg, const char *group, const char *suffix);
	void (*snap_taken)(void *arg, const char *group, const char *suffix);
	json_t *(*show)(void *arg, const char *group);
};
void rod_pg_set_repl_hooks(struct rod_pg *p, const struct rod_pg_repl_hooks *h);
/* Group snapshot `suffix` (NULL: the newest) of group: its suffix, creation time and
 * members [{"volume", "snapshot"}] (new reference). -ENOENT: no such group or snapshot;
 * -ENODATA: the group has no snapshot. */
int rod_pg_snap_get(struct rod_pg *p, const char *group, const char *suffix, char *suffix_out, size_t len,
		    uint64_t *created_ns, json_t **members);
/* Take a manual group snapshot named by the time now; its suffix in suffix_out. */
int rod_pg_snap_take(struct rod_pg *p, const char *group, char *suffix_out, size_t len);

#endif
