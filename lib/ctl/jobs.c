/* The job runner (see jobs.h). One worker thread runs queued jobs in order by default:
 * long work of an array (GC, scrubs) competes for the same disks, so running two at
 * once would only make both slower (rod.conf job_workers adds workers). Job records
 * are in memory; finished ones are kept, bounded, for job list/show. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_json.h"
#include "jobs.h"
#include "rod/log.h"
#include "rod/util.h"

struct rod_job {
	uint64_t id;
	char kind[32];
	char target[160];
	char unit[16];
	bool cancellable;
	rod_job_fn fn;
	void *arg;
	void (*free_arg)(void *);
	/* state, timestamps, error and result: rod_jobs.lock */
	enum rod_job_state state;
	uint64_t created_ns, started_ns, finished_ns;   /* wall clock */
	uint64_t started_mono;
	char *error;
	json_t *result;
	/* written by the work without the lock, read by views */
	_Atomic uint64_t done, total;
	atomic_bool cancel;
};

struct rod_jobs {
	/* lock guards jobs/n, every job's state fields, stop; cv signals new work and
	 * finished jobs. */
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct rod_job **jobs;          /* in id order */
	size_t n;
	uint64_t next_id;
	unsigned keep_finished;
	bool stop;
	pthread_t workers[ROD_JOBS_WORKERS_MAX];
	unsigned nworkers;
	void (*persist)(void *arg, uint64_t id, json_t *rec);
	void *persist_arg;
};

static const char *const state_names[] = {
	[ROD_JOB_QUEUED] = "queued", [ROD_JOB_RUNNING] = "running", [ROD_JOB_DONE] = "done",
	[ROD_JOB_FAILED] = "failed", [ROD_JOB_CANCELLED] = "cancelled",
};

const char *rod_job_state_name(enum rod_job_state s)
{
	return (unsigned)s < ROD_ARRAY_SIZE(state_names) ? state_names[s] : "?";
}

static bool finished(const struct rod_job *j)
{
	return j->state >= ROD_JOB_DONE;
}

static void job_free(struct rod_job *j)
{
	if (j->free_arg)
		j->free_arg(j->arg);
	free(j->error);
	json_decref(j->result);
	free(j);
}

/* Drop the oldest finished jobs beyond keep_finished (lock held). */
static void trim(struct rod_jobs *js)
{
	size_t nf = 0;
	for (size_t i = 0; i < js->n; i++)
		nf += finished(js->jobs[i]);
	for (size_t i = 0; i < js->n && nf > js->keep_finished;) {
		if (!finished(js->jobs[i])) {
			i++;
			continue;
		}
		job_free(js->jobs[i]);
		memmove(&js->jobs[i], &js->jobs[i + 1], (js->n - i - 1) * sizeof(*js->jobs));
		js->n--;
		nf--;
	}
}

static struct rod_job *next_queued(struct rod_jobs *js)
{
	for (size_t i = 0; i < js->n; i++)
		if (js->jobs[i]->state == ROD_JOB_QUEUED)
			return js->jobs[i];
	return NULL;
}

/* The persisted form: the view's fields plus raw times (lock held). */
static json_t *job_record(const struct rod_job *j)
{
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:I, s:I, s:I, s:o, s:O}", "id", (json_int_t)j->id,
			 "kind", j->kind, "target", j->target, "unit", j->unit, "state", rod_job_state_name(j->state),
			 "done", (json_int_t)atomic_load(&j->done), "total", (json_int_t)atomic_load(&j->total),
			 "cancellable", j->cancellable, "created_ns", (json_int_t)j->created_ns, "started_ns",
			 (json_int_t)j->started_ns, "finished_ns", (json_int_t)j->finished_ns, "error",
			 j->error ? json_string(j->error) : json_null(), "result", j->result ? j->result : json_null());
}

/* A job was added or changed state (lock held): persist its record, trim the finished
 * ones, wake the waiters. */
static void job_changed(struct rod_jobs *js, const struct rod_job *j)
{
	if (js->persist) {
		json_t *rec = job_record(j);
		if (rec)
			js->persist(js->persist_arg, j->id, rec);
		json_decref(rec);
	}
	trim(js);
	pthread_cond_broadcast(&js->cv);
}

static void *worker_main(void *arg)
{
	struct rod_jobs *js = arg;
	rod_thread_name("rod-ctl-job");
	pthread_mutex_lock(&js->lock);
	for (;;) {
		struct rod_job *j = next_queued(js);
		if (!j) {
			if (js->stop)
				break;
			pthread_cond_wait(&js->cv, &js->lock);
			continue;
		}
		if (js->stop) {
			/* shutting down: queued work does not start */
			j->state = ROD_JOB_CANCELLED;
			j->finished_ns = rod_wall_ns();
			continue;
		}
		j->state = ROD_JOB_RUNNING;
		j->started_ns = rod_wall_ns();
		j->started_mono = rod_now_ns();
		pthread_mutex_unlock(&js->lock);

		json_t *result = NULL;
		char *err = NULL;
		rod_info("job %llu (%s %s) started", (unsigned long long)j->id, j->kind, j->target);
		int rc = j->fn(j, j->arg, &result, &err);

		pthread_mutex_lock(&js->lock);
		j->finished_ns = rod_wall_ns();
		j->result = result;
		if (rc == 0) {
			j->state = ROD_JOB_DONE;
			free(err);
		} else if (rc == -ECANCELED) {
			j->state = ROD_JOB_CANCELLED;
			free(err);
		} else {
			j->state = ROD_JOB_FAILED;
			if (!err && asprintf(&err, "%s", strerror(-rc)) < 0)
				err = NULL;
			j->error = err;
		}
		rod_info("job %llu (%s %s) %s%s%s", (unsigned long long)j->id, j->kind, j->target,
			 rod_job_state_name(j->state), j->error ? ": " : "", j->error ? j->error : "");
		job_changed(js, j);
	}
	pthread_mutex_unlock(&js->lock);
	return NULL;
}

int rod_jobs_new(unsigned keep_finished, struct rod_jobs **out)
{
	struct rod_jobs *js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	pthread_mutex_init(&js->lock, NULL);
	pthread_cond_init(&js->cv, NULL);
	js->next_id = 1;
	js->keep_finished = keep_finished ? keep_finished : 1;
	int rc = pthread_create(&js->workers[0], NULL, worker_main, js);
	js->nworkers = rc ? 0 : 1;
	if (rc) {
		pthread_mutex_destroy(&js->lock);
		pthread_cond_destroy(&js->cv);
		free(js);
		return -rc;
	}
	*out = js;
	return 0;
}

void rod_jobs_free(struct rod_jobs *js)
{
	if (!js)
		return;
	pthread_mutex_lock(&js->lock);
	js->stop = true;
	for (size_t i = 0; i < js->n; i++)
		atomic_store(&js->jobs[i]->cancel, true);
	pthread_cond_broadcast(&js->cv);
	pthread_mutex_unlock(&js->lock);
	for (unsigned i = 0; i < js->nworkers; i++)
		pthread_join(js->workers[i], NULL);
	for (size_t i = 0; i < js->n; i++)
		job_free(js->jobs[i]);
	free(js->jobs);
	pthread_mutex_destroy(&js->lock);
	pthread_cond_destroy(&js->cv);
	free(js);
}

int rod_jobs_submit(struct rod_jobs *js, const char *kind, const char *target, const char *unit,
		    bool cancellable, rod_job_fn fn, void *arg, void (*free_arg)(void *), uint64_t *id)
{
	struct rod_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	snprintf(j->kind, sizeof(j->kind), "%s", kind);
	snprintf(j->target, sizeof(j->target), "%s", target ? target : "");
	snprintf(j->unit, sizeof(j->unit), "%s", unit ? unit : "");
	j->cancellable = cancellable;
	j->fn = fn;
	j->arg = arg;
	j->free_arg = free_arg;
	j->created_ns = rod_wall_ns();
	pthread_mutex_lock(&js->lock);
	struct rod_job **nj = js->stop ? NULL : realloc(js->jobs, (js->n + 1) * sizeof(*nj));
	if (!nj) {
		pthread_mutex_unlock(&js->lock);
		j->free_arg = NULL;   /* the caller keeps arg on failure */
		job_free(j);
		return js->stop ? -ESHUTDOWN : -ENOMEM;
	}
	js->jobs = nj;
	j->id = js->next_id++;
	js->jobs[js->n++] = j;
	*id = j->id;
	pthread_cond_broadcast(&js->cv);
	pthread_mutex_unlock(&js->lock);
	return 0;
}

int rod_jobs_set_workers(struct rod_jobs *js, unsigned n)
{
	int rc = 0;
	if (n < 1 || n > ROD_JOBS_WORKERS_MAX)
		return -EINVAL;
	pthread_mutex_lock(&js->lock);
	if (n < js->nworkers)
		rc = -EBUSY;
	while (js->nworkers < n && !js->stop) {
		int e = pthread_create(&js->workers[js->nworkers], NULL, worker_main, js);
		if (e) {
			rc = -e;
			break;
		}
		js->nworkers++;
	}
	pthread_mutex_unlock(&js->lock);
	return rc;
}

int rod_jobs_add_done(struct rod_jobs *js, const char *kind, const char *target, const char *unit,
		      json_t *result, uint64_t *id)
{
	struct rod_job *j = calloc(1, sizeof(*j));
	if (!j) {
		json_decref(result);
		return -ENOMEM;
	}
	snprintf(j->kind, sizeof(j->kind), "%s", kind);
	snprintf(j->target, sizeof(j->target), "%s", target ? target : "");
	snprintf(j->unit, sizeof(j->unit), "%s", unit ? unit : "");
	j->state = ROD_JOB_DONE;
	j->created_ns = j->started_ns = j->finished_ns = rod_wall_ns();
	atomic_store(&j->done, 1);
	atomic_store(&j->total, 1);
	j->result = result;
	pthread_mutex_lock(&js->lock);
	struct rod_job **nj = js->stop ? NULL : realloc(js->jobs, (js->n + 1) * sizeof(*nj));
	if (!nj) {
		pthread_mutex_unlock(&js->lock);
		job_free(j);
		return js->stop ? -ESHUTDOWN : -ENOMEM;
	}
	js->jobs = nj;
	j->id = js->next_id++;
	js->jobs[js->n++] = j;
	*id = j->id;
	job_changed(js, j);
	pthread_mutex_unlock(&js->lock);
	return 0;
}

void rod_jobs_count(struct rod_jobs *js, uint64_t *queued, uint64_t *running)
{
	*queued = *running = 0;
	pthread_mutex_lock(&js->lock);
	for (size_t i = 0; i < js->n; i++) {
		*queued += js->jobs[i]->state == ROD_JOB_QUEUED;
		*running += js->jobs[i]->state == ROD_JOB_RUNNING;
	}
	pthread_mutex_unlock(&js->lock);
}

bool rod_jobs_active(struct rod_jobs *js, const char *kind, const char *target)
{
	bool found = false;
	pthread_mutex_lock(&js->lock);
	for (size_t i = 0; i < js->n && !found; i++)
		found = !finished(js->jobs[i]) && !strcmp(js->jobs[i]->kind, kind) &&
			!strcmp(js->jobs[i]->target, target ? target : "");
	pthread_mutex_unlock(&js->lock);
	return found;
}

void rod_job_progress(struct rod_job *j, uint64_t done, uint64_t total)
{
	atomic_store(&j->total, total);
	atomic_store(&j->done, done);
}

bool rod_job_cancelled(struct rod_job *j)
{
	return atomic_load(&j->cancel);
}

/* lock held */
static json_t *job_json(const struct rod_job *j)
{
	uint64_t done = atomic_load(&j->done), total = atomic_load(&j->total);
	json_t *rate = json_null(), *eta = json_null(), *pct = json_null();
	if (total)
		pct = json_real(100.0 * (double)(done > total ? total : done) / (double)total);
	if (j->state == ROD_JOB_RUNNING) {
		double secs = (double)(rod_now_ns() - j->started_mono) / 1e9;
		if (secs > 0.05 && done) {
			double r = (double)done / secs;
			json_decref(rate);
			rate = json_real(r);
			if (total && total >= done) {
				json_decref(eta);
				eta = json_real((double)(total - done) / r);
			}
		}
	} else if (finished(j) && j->started_ns && j->finished_ns > j->started_ns && done) {
		json_decref(rate);
		rate = json_real((double)done / ((double)(j->finished_ns - j->started_ns) / 1e9));
	}
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o, s:o, s:b, s:b, s:o, s:o, s:o, s:o, s:O}",
			      "id", (json_int_t)j->id, "kind", j->kind, "target", j->target, "state",
			      rod_job_state_name(j->state), "done", (json_int_t)done, "total", (json_int_t)total,
			      "unit", j->unit, "percent", pct, "rate", rate, "eta_s", eta, "cancellable",
			      j->cancellable, "cancel_requested", (int)atomic_load(&j->cancel), "created",
			      ctl_json_time(j->created_ns), "started", ctl_json_time(j->started_ns), "finished",
			      ctl_json_time(j->finished_ns), "error", j->error ? json_string(j->error) : json_null(),
			      "result", j->result ? j->result : json_null());
	return o;
}

json_t *rod_jobs_list_json(struct rod_jobs *js)
{
	json_t *arr = json_array();
	pthread_mutex_lock(&js->lock);
	for (size_t i = 0; i < js->n; i++)
		json_array_append_new(arr, job_json(js->jobs[i]));
	pthread_mutex_unlock(&js->lock);
	return json_pack("{s:o}", "jobs", arr);
}

static struct rod_job *find(struct rod_jobs *js, uint64_t id)
{
	for (size_t i = 0; i < js->n; i++)
		if (js->jobs[i]->id == id)
			return js->jobs[i];
	return NULL;
}

json_t *rod_jobs_show_json(struct rod_jobs *js, uint64_t id, bool *found)
{
	json_t *o = NULL;
	pthread_mutex_lock(&js->lock);
	struct rod_job *j = find(js, id);
	*found = j != NULL;
	if (j)
		o = job_json(j);
	pthread_mutex_unlock(&js->lock);
	return o;
}

int rod_jobs_cancel(struct rod_jobs *js, uint64_t id)
{
	int rc = 0;
	pthread_mutex_lock(&js->lock);
	struct rod_job *j = find(js, id);
	if (!j) {
		rc = -ENOENT;
	} else if (finished(j)) {
		rc = -EALREADY;
	} else if (j->state == ROD_JOB_QUEUED) {
		atomic_store(&j->cancel, true);
		j->state = ROD_JOB_CANCELLED;
		j->finished_ns = rod_wall_ns();
		pthread_cond_broadcast(&js->cv);
	} else if (!j->cancellable) {
		rc = -EBUSY;
	} else {
		atomic_store(&j->cancel, true);
	}
	pthread_mutex_unlock(&js->lock);
	return rc;
}

int rod_jobs_wait(struct rod_jobs *js, uint64_t id, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	int rc = 0;
	pthread_mutex_lock(&js->lock);
	for (;;) {
		struct rod_job *j = find(js, id);
		if (!j) {
			rc = -ENOENT;
			break;
		}
		if (finished(j))
			break;
		if (timeout_ms) {
			if (pthread_cond_timedwait(&js->cv, &js->lock, &ts) == ETIMEDOUT) {
				rc = -ETIMEDOUT;
				break;
			}
		} else {
			pthread_cond_wait(&js->cv, &js->lock);
		}
	}
	pthread_mutex_unlock(&js->lock);
	return rc;
}

void rod_jobs_set_persist(struct rod_jobs *js, void (*persist)(void *arg, uint64_t id, json_t *rec), void *arg)
{
	pthread_mutex_lock(&js->lock);
	js->persist = persist;
	js->persist_arg = arg;
	pthread_mutex_unlock(&js->lock);
}

int rod_jobs_restore(struct rod_jobs *js, json_t *rec)
{
	json_int_t id = json_integer_value(json_object_get(rec, "id"));
	const char *st = json_string_value(json_object_get(rec, "state"));
	enum rod_job_state state = ROD_JOB_QUEUED;
	for (size_t i = ROD_JOB_DONE; i < ROD_ARRAY_SIZE(state_names); i++)
		if (st && !strcmp(st, state_names[i]))
			state = (enum rod_job_state)i;
	if (id < 1 || state == ROD_JOB_QUEUED)
		return -EINVAL;     /* only finished jobs are history */
	struct rod_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->id = (uint64_t)id;
	j->state = state;
	snprintf(j->kind, sizeof(j->kind), "%s", json_string_value(json_object_get(rec, "kind")) ?: "?");
	snprintf(j->target, sizeof(j->target), "%s", json_string_value(json_object_get(rec, "target")) ?: "");
	snprintf(j->unit, sizeof(j->unit), "%s", json_string_value(json_object_get(rec, "unit")) ?: "");
	j->cancellable = json_is_true(json_object_get(rec, "cancellable"));
	atomic_store(&j->done, (uint64_t)json_integer_value(json_object_get(rec, "done")));
	atomic_store(&j->total, (uint64_t)json_integer_value(json_object_get(rec, "total")));
	j->created_ns = (uint64_t)json_integer_value(json_object_get(rec, "created_ns"));
	j->started_ns = (uint64_t)json_integer_value(json_object_get(rec, "started_ns"));
	j->finished_ns = (uint64_t)json_integer_value(json_object_get(rec, "finished_ns"));
	const char *e = json_string_value(json_object_get(rec, "error"));
	j->error = e ? strdup(e) : NULL;
	json_t *r = json_object_get(rec, "result");
	j->result = json_is_object(r) ? json_incref(r) : NULL;
	pthread_mutex_lock(&js->lock);
	struct rod_job **nj = realloc(js->jobs, (js->n + 1) * sizeof(*nj));
	if (!nj) {
		pthread_mutex_unlock(&js->lock);
		job_free(j);
		return -ENOMEM;
	}
	js->jobs = nj;
	/* keep id order: restored records arrive in key (id) order, before any submit */
	size_t pos = js->n;
	while (pos > 0 && js->jobs[pos - 1]->id > j->id)
		pos--;
	memmove(&js->jobs[pos + 1], &js->jobs[pos], (js->n - pos) * sizeof(*js->jobs));
	js->jobs[pos] = j;
	js->n++;
	if (j->id >= js->next_id)
		js->next_id = j->id + 1;
	trim(js);
	pthread_mutex_unlock(&js->lock);
	return 0;
}
