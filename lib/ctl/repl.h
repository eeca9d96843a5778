/* Replication of protection groups to a second array (lib/ctl/repl*.c; see
 * docs/protection.md "Replication"). The source side runs transfers as jobs on the
 * control plane's job thread; the target side listens on its own thread ("rod-repl")
 * for TLS 1.3 connections authenticated by a pre-shared replication key. Internal to
 * lib/ctl. */
#ifndef ROD_CTL_REPL_H
#define ROD_CTL_REPL_H

#include <jansson.h>

#include "jobs.h"
#include "pg.h"
#include "rod/store.h"

struct rod_repl;

/* Load keys, links and receive state; restart unfinished transfers as jobs. */
int rod_repl_new(struct rod_store *s, struct rod_jobs *jobs, struct rod_pg *pg, struct rod_repl **out);
/* Cancel the running transfer (it resumes at the next start) and stop the listener;
 * call before the jobs and the protection groups are freed. */
void rod_repl_stop(struct rod_repl *r);
void rod_repl_free(struct rod_repl *r);
/* Listen for replication connections on "ADDR:PORT" (port 0: any free port). */
int rod_repl_listen(struct rod_repl *r, const char *addr);
/* Methods "array.replication_key.create|list|delete", "pg.replicate", "replica.list|restore";
 * same contract as rod_ctl_call. */
int rod_repl_call(struct rod_repl *r, const char *method, json_t *params, json_t **res, char **msg);

#endif
