/* Jobs: long work of the control plane (GC, scrub, ...) run on one worker thread
 * ("rod-ctl-job") in submission order, visible with id, state, progress (done/total
 * in a unit), rate, ETA, and cancellable where the work allows it. Internal to
 * lib/ctl; tests/unit/test_ctl_jobs.c tests it alone. */
#ifndef ROD_CTL_JOBS_H
#define ROD_CTL_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

enum rod_job_state { ROD_JOB_QUEUED, ROD_JOB_RUNNING, ROD_JOB_DONE, ROD_JOB_FAILED, ROD_JOB_CANCELLED };

struct rod_jobs;
struct rod_job;

/* The work: returns 0, -ECANCELED when it stopped because rod_job_cancelled said so,
 * or another -errno (then *err may hold a malloc'd message). *result (may stay NULL)
 * is a JSON object shown with the finished job (reference passed). */
typedef int (*rod_job_fn)(struct rod_job *j, void *arg, json_t **result, char **err);

#define ROD_JOBS_WORKERS_MAX 16

/* keep_finished: finished jobs kept for job list/show (oldest dropped first). */
int rod_jobs_new(unsigned keep_finished, struct rod_jobs **out);
/* Cancel what can be cancelled, wait for the running job, free. */
void rod_jobs_free(struct rod_jobs *js);

/* Run up to n jobs at once (1..ROD_JOBS_WORKERS_MAX; one worker thread each). More
 * workers start at once; -EBUSY for fewer than running (they stay until free). */
int rod_jobs_set_workers(struct rod_jobs *js, unsigned n);

/* Queue a job. cancellable: whether the work checks rod_job_cancelled while running
 * (a queued job can always be cancelled). arg is passed to fn and then to free_arg
 * (may be NULL). *id gets the job's id (ids start at 1, never reused in a run). */
int rod_jobs_submit(struct rod_jobs *js, const char *kind, const char *target, const char *unit,
		    bool cancellable, rod_job_fn fn, void *arg, void (*free_arg)(void *), uint64_t *id);

/* Record work that was done at once (O(1) in the engine, e.g. a recover) as a finished
 * job, so the job history shows it next to the long ones: state done, progress 1/1,
 * result (reference passed, may be NULL). Persisted like any finished job. */
int rod_jobs_add_done(struct rod_jobs *js, const char *kind, const char *target, const char *unit,
		      json_t *result, uint64_t *id);

/* Jobs queued and running now. */
void rod_jobs_count(struct rod_jobs *js, uint64_t *queued, uint64_t *running);
/* Is a job of this kind and target queued or running? */
bool rod_jobs_active(struct rod_jobs *js, const char *kind, const char *target);

/* For the work: report progress (total 0: unknown), and ask whether to stop. */
void rod_job_progress(struct rod_job *j, uint64_t done, uint64_t total);
bool rod_job_cancelled(struct rod_job *j);

/* Views. NULL when out of memory; show returns NULL with *found false for an unknown id. */
json_t *rod_jobs_list_json(struct rod_jobs *js);
json_t *rod_jobs_show_json(struct rod_jobs *js, uint64_t id, bool *found);
/* 0; -ENOENT unknown id; -EALREADY finished; -EBUSY running and not cancellable. A
 * running job stops when its work next checks rod_job_cancelled. */
int rod_jobs_cancel(struct rod_jobs *js, uint64_t id);
/* Wait until job id has finished (tests; timeout_ms 0: forever). 0, -ENOENT, -ETIMEDOUT. */
int rod_jobs_wait(struct rod_jobs *js, uint64_t id, unsigned timeout_ms);

const char *rod_job_state_name(enum rod_job_state s);

/* History across restarts: persist (may be NULL) is called on the worker thread with a
 * job's record (a JSON object, borrowed) when it finishes; rod_jobs_restore adds such
 * a record back as a finished job (ids continue after the highest restored). Call
 * both before submitting anything. */
void rod_jobs_set_persist(struct rod_jobs *js, void (*persist)(void *arg, uint64_t id, json_t *rec), void *arg);
int rod_jobs_restore(struct rod_jobs *js, json_t *rec);

#endif
