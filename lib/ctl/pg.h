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

#endif
