/* The audit log (events.c): every change made through the control plane, who made
 * it (unix-socket peer uid, HTTP token id, or rodd itself), what (method and params
 * with secrets masked) and when, kept in the store's metadata with a bounded count.
 * Internal to lib/ctl. */
#ifndef ROD_CTL_EVENTS_H
#define ROD_CTL_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "rod/store.h"

struct rod_events;

/* max: events kept (the oldest are deleted beyond it). */
int rod_events_open(struct rod_store *s, unsigned max, struct rod_events **out);
void rod_events_free(struct rod_events *ev);
/* Is method a change worth recording (not a read such as *.list or *.show)? */
bool rod_events_is_change(const char *method);
/* Record one call: rc 0 or an RPC error code with errmsg. Failures to record are
 * logged, never returned: the change itself has happened. */
void rod_events_record(struct rod_events *ev, const char *who, const char *method, json_t *params, int rc,
		       const char *errmsg);
/* Events at or after since_ns (wall clock; 0: all), the newest `limit` of them, oldest
 * first: {"events": [...]}. */
json_t *rod_events_list_json(struct rod_events *ev, uint64_t since_ns, unsigned limit);

#endif
