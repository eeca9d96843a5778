/* Copy offload handlers (tpc.h): EXTENDED COPY (LID1), POPULATE TOKEN, WRITE USING
 * TOKEN, RECEIVE COPY RESULTS (COPY STATUS, OPERATING PARAMETERS), RECEIVE ROD TOKEN
 * INFORMATION, REPORT ALL ROD TOKENS and VPD page 0x8F.
 *
 * Every copy becomes engine range copies (ROD_IO_COPY: O(1) range entries), run one
 * after another on the task's behalf; the SCSI status goes back when the last one is
 * durable. POPULATE TOKEN pins the source (rod_vol_pin) so a token copies the data as
 * of that instant. Operation records (status, transfer count, sense, the token) are
 * kept per (I_T nexus, list identifier) for RECEIVE COPY RESULTS / RRTI. */
#include "tpc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rod/log.h"
#include "rod/util.h"
#include "scsi_internal.h"
#include "stats.h"
#include "token.h"
#include "tpc_parse.h"

#define ASC_COPY_TARGET_DATA_UNDERRUN ROD_ASC(0x0D, 0x04)
#define ASC_UNEXPECTED_INEXACT_SEGMENT ROD_ASC(0x26, 0x0A)
#define ASC_INSUFFICIENT_RESOURCES ROD_ASC(0x55, 0x03)
#define ASC_INSUFFICIENT_RESOURCES_ROD_TOKEN ROD_ASC(0x55, 0x0D)

/* Operation records */
#define OP_BUCKETS 1024u
#define OP_MAX 8192u                        /* records kept at most (memory bound) */
#define OP_KEEP_NS (60ull * 1000000000ull)  /* completed records live this long (CTL: 60 s) */

enum op_state { OP_RUNNING = 0, OP_DONE_OK = 1, OP_DONE_ERROR = 2 };

struct tpc_op {
	uint32_t nexus;
	uint32_t list_id;
	bool lid4;                              /* PT/WUT (32-bit ids) vs LID1 XCOPY (8-bit) */
	uint8_t sa;                             /* service action of the command recorded */
	uint8_t state;                          /* enum op_state */
	uint8_t sense_len;
	uint8_t sense[ROD_SCSI_SENSE_MAX];
	uint16_t segs_done;
	uint64_t xfer_bytes;
	uint64_t xfer_blocks;
	uint64_t done_ns;
	bool has_token;
	bool background;                        /* IMMED: status went back before the copy */
	uint8_t token[ROD_TOKEN_LEN];
	struct tpc_op *next;
};

struct tpc_exec;

/* Work for the pool: a command's next sequential step, or one of its parallel steps. */
struct tpc_job {
	struct tpc_job *qnext;
	void (*run)(struct tpc_job *j);
};

#define tpc_container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* Engine range copies wait for their group commit inside rod_io_submit, so they are
 * never submitted from a network thread: a small pool of workers does it. With as many
 * workers as copies a hypervisor keeps in flight, those copies share one commit. */
#define TPC_WORKERS 16

struct tpc_state {
	struct tpc_state *next_live;            /* registry of live states (live_lock) */
	pthread_mutex_t qlock;                  /* guards qhead, qtail, stopping */
	pthread_cond_t qcond;
	struct tpc_job *qhead, *qtail;
	bool stopping;
	uint64_t last_expire_ns;                /* idle-token sweep by one worker */
	bool sweeper_taken;
	unsigned detached;                      /* IMMED copies still running (qlock) */
	pthread_cond_t dcond;                   /* signalled when detached drops */
	pthread_t workers[TPC_WORKERS];
	unsigned nworkers;
	struct rod_token_table *tokens;         /* NULL when the store has no identity */
	pthread_mutex_t lock;                   /* guards ops, nops, last_sweep */
	struct tpc_op *ops[OP_BUCKETS];
	uint32_t nops;
	uint64_t last_sweep;
};

/* The SCSI core frees its LUs after rod_tpc_target_fini (and calls the LU hook from
 * there), so the hooks only touch states still registered here. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tpc_state *live_states;

static bool live_locked(struct tpc_state *st)
{
	for (struct tpc_state *s = live_states; s; s = s->next_live)
		if (s == st)
			return true;
	return false;
}

/* ---- small helpers ---------------------------------------------------------------- */

static struct tpc_state *state_of(struct rod_scsi_task *t)
{
	return rod_scsi_target_tpc_state(t->tgt);
}

static uint32_t nexus_of(struct rod_scsi_task *t)
{
	return t->nexus ? t->nexus->index : UINT32_MAX;
}

static void finish(struct rod_scsi_task *t)
{
	rod_task_done(t);
}

/* Copy offload switched off for the LU's volume (rod_vol_set_offload, for testing host
 * fallbacks): the command is refused as one we do not implement, so hosts copy
 * themselves. Returns true (sense set) when off. */
static bool offload_off(struct rod_scsi_task *t)
{
	struct rod_vol_info vi;

	if (rod_vol_info_by_id(rod_scsi_target_store(t->tgt), t->lu->vol_id, &vi) == 0 &&
	    !vi.offload) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_COMMAND_OPERATION_CODE);
		return true;
	}
	return false;
}

/* Sense from a parser's verdict. */
static void apply_sense(struct rod_scsi_task *t, const struct rod_tpc_sense *s)
{
	struct rod_scsi_cmd *c = t->cmd;
	uint8_t sks[3];

	if (s->sksv) {
		/* ILLEGAL REQUEST: field pointer (C/D); COPY ABORTED: segment pointer (SD=1,
		 * the pointer is the start of the segment descriptor). */
		sks[0] = 0x80 | (s->key == SENSE_COPY_ABORTED ? 0x20 : (s->cd ? 0x40 : 0));
		rod_put_be16(sks + 1, s->field);
	}
	c->status = SAM_STAT_CHECK_CONDITION;
	c->sense_len = (uint8_t)rod_sense_build(c->sense, t->lu && t->lu->d_sense, s->key,
						ROD_ASC(s->asc, s->ascq), s->info_valid, s->info,
						s->sksv ? sks : NULL, s->csi_valid ? s->csi : 0);
	c->in_len = 0;
}

static uint8_t log2u(uint32_t v)
{
	uint8_t n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

/* ---- operation records -------------------------------------------------------------- */

static uint32_t op_bucket(uint32_t nexus, uint32_t list_id, bool lid4)
{
	uint64_t k = (uint64_t)nexus * 0x9E3779B97F4A7C15ull ^ list_id ^ ((uint64_t)lid4 << 40);

	return (uint32_t)(k ^ (k >> 29)) % OP_BUCKETS;
}

static struct tpc_op *op_find_locked(struct tpc_state *st, uint32_t nexus, uint32_t list_id,
				     bool lid4)
{
	for (struct tpc_op *o = st->ops[op_bucket(nexus, list_id, lid4)]; o; o = o->next)
		if (o->nexus == nexus && o->list_id == list_id && o->lid4 == lid4)
			return o;
	return NULL;
}

static void op_unlink_locked(struct tpc_state *st, struct tpc_op *o)
{
	struct tpc_op **pp = &st->ops[op_bucket(o->nexus, o->list_id, o->lid4)];

	while (*pp && *pp != o)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = o->next;
		st->nops--;
		free(o);
	}
}

/* Drop completed records older than keep_ns (all completed ones when keep_ns is 0). */
static void op_sweep_locked(struct tpc_state *st, uint64_t now, uint64_t keep_ns)
{
	st->last_sweep = now;
	for (uint32_t b = 0; b < OP_BUCKETS; b++) {
		struct tpc_op **pp = &st->ops[b];

		while (*pp) {
			struct tpc_op *o = *pp;

			if (o->state != OP_RUNNING && now - o->done_ns >= keep_ns) {
				*pp = o->next;
				st->nops--;
				free(o);
			} else {
				pp = &o->next;
			}
		}
	}
}

/* Start a record for (nexus, list id). Returns NULL with sense set on t when the list
 * id is in use by a running operation (05/00/16, SPC-4 6.4.3.2; ddpt retries with the
 * next id) or no record can be kept. allow_dup: a second running copy under the same
 * id is tolerated (LID1 list usage 10b: qemu sends every EXTENDED COPY with list id 1
 * from parallel requests); the newest record answers RECEIVE COPY RESULTS. */
static struct tpc_op *op_start(struct rod_scsi_task *t, uint32_t list_id, bool lid4, uint8_t sa,
			       bool allow_dup)
{
	struct tpc_state *st = state_of(t);
	uint32_t nexus = nexus_of(t);
	uint64_t now = rod_now_ns();
	struct tpc_op *o, *old;

	pthread_mutex_lock(&st->lock);
	old = op_find_locked(st, nexus, list_id, lid4);
	if (old && old->state == OP_RUNNING && !allow_dup) {
		pthread_mutex_unlock(&st->lock);
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_OPERATION_IN_PROGRESS);
		return NULL;
	}
	if (old && old->state != OP_RUNNING)
		op_unlink_locked(st, old);      /* a completed list id is simply replaced */
	if (now - st->last_sweep > 1000000000ull)
		op_sweep_locked(st, now, OP_KEEP_NS);
	if (st->nops >= OP_MAX)
		op_sweep_locked(st, now, 0);
	o = st->nops < OP_MAX ? calloc(1, sizeof(*o)) : NULL;
	if (!o) {
		pthread_mutex_unlock(&st->lock);
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INSUFFICIENT_RESOURCES);
		return NULL;
	}
	o->nexus = nexus;
	o->list_id = list_id;
	o->lid4 = lid4;
	o->sa = sa;
	o->state = OP_RUNNING;
	o->next = st->ops[op_bucket(nexus, list_id, lid4)];
	st->ops[op_bucket(nexus, list_id, lid4)] = o;
	st->nops++;
	pthread_mutex_unlock(&st->lock);
	return o;
}

/* Record the outcome from the task's status/sense. */
static void op_finish(struct rod_scsi_task *t, struct tpc_op *o, uint64_t bytes, uint64_t blocks,
		      uint16_t segs, const uint8_t *token)
{
	struct tpc_state *st = state_of(t);
	struct rod_scsi_cmd *c = t->cmd;

	if (!o)
		return;
	pthread_mutex_lock(&st->lock);
	o->xfer_bytes = bytes;
	o->xfer_blocks = blocks;
	o->segs_done = segs;
	if (c->status == SAM_STAT_GOOD) {
		o->state = OP_DONE_OK;
		o->sense_len = 0;
	} else {
		o->state = OP_DONE_ERROR;
		o->sense_len = c->sense_len;
		memcpy(o->sense, c->sense, c->sense_len);
	}
	if (token) {
		o->has_token = true;
		memcpy(o->token, token, ROD_TOKEN_LEN);
	}
	o->done_ns = rod_now_ns();
	pthread_mutex_unlock(&st->lock);
}

/* ---- execution: a list of engine requests run in order -------------------------------- */

struct tpc_step {
	enum rod_io_op op;                      /* ROD_IO_COPY or ROD_IO_ZERO */
	struct rod_vol *src;
	uint64_t src_off;
	struct rod_vol *dst;
	uint64_t dst_off;
	uint64_t len;
	uint32_t seg;                           /* XCOPY segment it belongs to */
	uint32_t dst_bs;
	/* parallel execution (WRITE USING TOKEN): each step is its own request */
	struct tpc_exec *x;
	struct tpc_job job;
	struct rod_io io;
};

struct tpc_exec {
	struct rod_scsi_task *t;
	struct tpc_op *op;
	struct rod_token *tk;                   /* WRITE USING TOKEN: the token in use */
	bool del_tkn;
	bool xcopy;
	bool zero;                              /* WRITE USING TOKEN with the zero ROD token */
	struct rod_scsi_lu *lus[ROD_XCOPY_MAX_CSCD];  /* referenced copy targets */
	uint32_t nlus;
	struct tpc_step *steps;
	uint32_t nsteps, cap, cur;
	uint32_t nsegs;                         /* XCOPY: segments in the list */
	bool fail_after;                        /* report fail_sense once the steps are done */
	uint32_t fail_seg;
	struct rod_tpc_sense fail_sense;
	uint64_t bytes_done, blocks_done;
	struct rod_io io;
	struct tpc_job job;                     /* sequential: the next step */
	bool detached;                          /* t is a shadow task (IMMED), see detach() */
	/* Parallel steps (WRITE USING TOKEN: disjoint destinations, an immutable source,
	 * so order does not matter and concurrent copies share commits). */
	bool parallel;
	atomic_uint outstanding;
	atomic_int first_err;
	atomic_uint_fast64_t pbytes, pblocks;
};

static struct tpc_exec *exec_new(struct rod_scsi_task *t, uint32_t cap)
{
	struct tpc_exec *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->steps = calloc(cap ? cap : 1, sizeof(*x->steps));
	if (!x->steps) {
		free(x);
		return NULL;
	}
	x->cap = cap;
	x->t = t;
	return x;
}

static void exec_end(struct tpc_exec *x)
{
	struct rod_scsi_task *t = x->t;
	uint16_t segs = 0;

	/* SEGMENTS PROCESSED: all of them, or the index of the one that failed. */
	if (x->xcopy) {
		if (t->cmd->status != SAM_STAT_GOOD && x->cur < x->nsteps)
			segs = (uint16_t)x->steps[x->cur].seg;
		else if (x->fail_after)
			segs = (uint16_t)x->fail_seg;
		else
			segs = (uint16_t)x->nsegs;
	}
	if (t->cmd->status == SAM_STAT_GOOD && x->fail_after)
		apply_sense(t, &x->fail_sense);
	rod_stats_copy_done(t->tgt, x->xcopy ? ROD_COPY_XCOPY : x->zero ? ROD_COPY_ZERO : ROD_COPY_ODX,
			    t->cmd->status == SAM_STAT_GOOD, x->bytes_done);
	op_finish(t, x->op, x->bytes_done, x->blocks_done, segs, NULL);
	if (x->tk)
		rod_token_put(state_of(t)->tokens, x->tk, x->del_tkn);
	for (uint32_t i = 0; i < x->nlus; i++)
		rod_lu_put(x->lus[i]);
	if (x->detached) {
		struct tpc_state *st = state_of(t);

		rod_lu_put(t->lu);
		free(t);                        /* the shadow task and its command */
		free(x->steps);
		free(x);
		pthread_mutex_lock(&st->qlock);
		if (--st->detached == 0)
			pthread_cond_broadcast(&st->dcond);
		pthread_mutex_unlock(&st->qlock);
		return;
	}
	free(x->steps);
	free(x);
	finish(t);
}

/* IMMED (SBC-3 5.27: status may return once the parameter list is validated): move the
 * rest of the command to a shadow task holding its own LU reference and sense buffer,
 * finish the real task with GOOD, and let the workers complete the copy; RRTI reports
 * it in progress (background) until then. Returns false (nothing changed) when out of
 * memory: the copy then simply runs in the foreground. */
static bool detach(struct tpc_exec *x)
{
	struct rod_scsi_task *t = x->t;
	struct tpc_state *st = state_of(t);
	struct shadow {
		struct rod_scsi_task task;
		struct rod_scsi_cmd cmd;
	} *d = calloc(1, sizeof(*d));

	if (!d)
		return false;
	d->task.cmd = &d->cmd;
	d->task.tgt = t->tgt;
	d->task.lu = t->lu;
	rod_lu_get(t->lu);
	d->task.op = t->op;
	d->task.bs = t->bs;
	d->cmd.lun = t->cmd->lun;
	d->cmd.status = SAM_STAT_GOOD;
	pthread_mutex_lock(&st->qlock);
	st->detached++;
	pthread_mutex_unlock(&st->qlock);
	if (x->op) {
		pthread_mutex_lock(&st->lock);
		x->op->background = true;
		pthread_mutex_unlock(&st->lock);
	}
	x->t = &d->task;
	x->detached = true;
	finish(t);
	return true;
}

static void exec_next(struct tpc_exec *x);

static void exec_io_done(struct rod_io *io)
{
	struct tpc_exec *x = io->priv;
	struct tpc_step *s = &x->steps[x->cur];

	if (io->result < 0) {
		rod_task_set_errno(x->t, io->result, true);
		exec_end(x);
		return;
	}
	x->bytes_done += s->len;
	x->blocks_done += s->len / s->dst_bs;
	x->cur++;
	/* Finishing is safe on any thread; only a next copy needs a worker. */
	if (x->cur >= x->nsteps)
		exec_end(x);
	else
		exec_next(x);
}

/* Run the current step (on a worker thread). */
static void exec_step(struct tpc_exec *x)
{
	struct tpc_step *s;

	if (x->cur >= x->nsteps) {
		exec_end(x);
		return;
	}
	s = &x->steps[x->cur];
	memset(&x->io, 0, sizeof(x->io));
	x->io.op = s->op;
	x->io.vol = s->dst;
	x->io.off = s->dst_off;
	x->io.len = s->len;
	x->io.src = s->src;
	x->io.src_off = s->src_off;
	x->io.done = exec_io_done;
	x->io.priv = x;
	rod_io_submit(&x->io);
}

static void queue_push(struct tpc_state *st, struct tpc_job *j)
{
	j->qnext = NULL;
	pthread_mutex_lock(&st->qlock);
	if (st->qtail)
		st->qtail->qnext = j;
	else
		st->qhead = j;
	st->qtail = j;
	pthread_cond_signal(&st->qcond);
	pthread_mutex_unlock(&st->qlock);
}

static void exec_job(struct tpc_job *j)
{
	exec_step(tpc_container_of(j, struct tpc_exec, job));
}

/* Queue the next step for a worker; also called from store completions, which must not
 * block on another commit. */
static void exec_next(struct tpc_exec *x)
{
	x->job.run = exec_job;
	queue_push(state_of(x->t), &x->job);
}

static void par_io_done(struct rod_io *io)
{
	struct tpc_step *s = io->priv;
	struct tpc_exec *x = s->x;

	if (io->result < 0) {
		int none = 0;

		atomic_compare_exchange_strong(&x->first_err, &none, io->result);
	} else {
		atomic_fetch_add(&x->pbytes, s->len);
		atomic_fetch_add(&x->pblocks, s->len / s->dst_bs);
	}
	if (atomic_fetch_sub(&x->outstanding, 1) != 1)
		return;
	/* the last one: every other step's writes happened before its decrement */
	x->bytes_done = atomic_load(&x->pbytes);
	x->blocks_done = atomic_load(&x->pblocks);
	if (atomic_load(&x->first_err))
		rod_task_set_errno(x->t, atomic_load(&x->first_err), true);
	exec_end(x);
}

static void step_job(struct tpc_job *j)
{
	struct tpc_step *s = tpc_container_of(j, struct tpc_step, job);

	memset(&s->io, 0, sizeof(s->io));
	s->io.op = s->op;
	s->io.vol = s->dst;
	s->io.off = s->dst_off;
	s->io.len = s->len;
	s->io.src = s->src;
	s->io.src_off = s->src_off;
	s->io.done = par_io_done;
	s->io.priv = s;
	rod_io_submit(&s->io);
}

/* Start executing: in order, or every step at once when x->parallel. */
static void exec_start(struct tpc_exec *x)
{
	struct tpc_state *st = state_of(x->t);

	if (!x->parallel || x->nsteps < 2) {
		exec_next(x);
		return;
	}
	uint32_t n = x->nsteps;
	struct tpc_step *steps = x->steps;

	/* Once the last job is queued x may already be finished and freed: use locals. */
	atomic_store(&x->outstanding, n);
	for (uint32_t i = 0; i < n; i++) {
		steps[i].x = x;
		steps[i].job.run = step_job;
	}
	for (uint32_t i = 0; i < n; i++)
		queue_push(st, &steps[i].job);
}

static void *tpc_worker(void *arg)
{
	struct tpc_state *st = arg;

	bool sweeper;

	rod_thread_name("rod-tpc");
	pthread_mutex_lock(&st->qlock);
	/* One worker also ends idle tokens; the others sleep until there is work. */
	sweeper = !st->sweeper_taken;
	st->sweeper_taken = true;
	for (;;) {
		struct tpc_job *j = st->qhead;

		if (!j) {
			struct timespec ts;
			uint64_t now = rod_now_ns();

			if (st->stopping)
				break;
			/* Idle tokens end on time even without ODX traffic: their pins keep
			 * overwritten source data from being reclaimed. */
			if (!sweeper) {
				pthread_cond_wait(&st->qcond, &st->qlock);
				continue;
			}
			if (st->tokens && now - st->last_expire_ns >= 1000000000ull) {
				st->last_expire_ns = now;
				pthread_mutex_unlock(&st->qlock);
				rod_token_expire(st->tokens);
				pthread_mutex_lock(&st->qlock);
				continue;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&st->qcond, &st->qlock, &ts);
			continue;
		}
		st->qhead = j->qnext;
		if (!st->qhead)
			st->qtail = NULL;
		pthread_mutex_unlock(&st->qlock);
		j->run(j);
		pthread_mutex_lock(&st->qlock);
	}
	pthread_mutex_unlock(&st->qlock);
	return NULL;
}

static int exec_add(struct tpc_exec *x, const struct tpc_step *s)
{
	if (x->nsteps == x->cap) {
		uint32_t cap = x->cap ? x->cap * 2 : 8;
		struct tpc_step *n = realloc(x->steps, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		x->steps = n;
		x->cap = cap;
	}
	x->steps[x->nsteps++] = *s;
	return 0;
}

/* ---- EXTENDED COPY (LID1) ----------------------------------------------------------- */

/* CSCD index -> LU (referenced in x->lus). NULL: not reachable for this host. */
static struct rod_scsi_lu *xcopy_resolve(struct rod_scsi_task *t, struct tpc_exec *x,
					 const struct rod_xcopy_list *l, uint16_t idx,
					 struct rod_scsi_lu **cache)
{
	struct rod_scsi_lu *lu;

	if (idx == ROD_XCOPY_CSCD_ID_SELF)
		return t->lu;
	if (idx >= l->ncscd)
		return NULL;
	if (cache[idx])
		return cache[idx];
	if (!t->nexus || !t->nexus->host_id)
		return NULL;
	lu = rod_lu_find_designator(t->tgt, t->nexus->host_id, l->cscd[idx].desig,
				    l->cscd[idx].desig_len);
	if (!lu)
		return NULL;
	if (atomic_load(&lu->removed)) {
		rod_lu_put(lu);
		return NULL;
	}
	x->lus[x->nlus++] = lu;
	cache[idx] = lu;
	return lu;
}

static void seg_fail(struct tpc_exec *x, uint32_t seg, uint16_t off, uint8_t key, uint16_t asc,
		     bool info_valid, uint64_t info)
{
	struct rod_tpc_sense *s = &x->fail_sense;

	memset(s, 0, sizeof(*s));
	s->key = key;
	s->asc = asc >> 8;
	s->ascq = asc & 0xff;
	s->sksv = true;
	s->field = off;
	s->csi_valid = true;
	s->csi = seg;
	s->info_valid = info_valid;
	s->info = info;
	x->fail_after = true;
	x->fail_seg = seg;
}

void rod_tpc_extended_copy(struct rod_scsi_task *t)
{
	uint32_t plen = rod_get_be32(t->cmd->cdb + 10), len;
	const uint8_t *buf = rod_task_out(t, &len);
	struct rod_scsi_lu *cache[ROD_XCOPY_MAX_CSCD] = { 0 };
	struct rod_xcopy_list *l;
	struct rod_tpc_sense s;
	struct tpc_exec *x;

	if (offload_off(t)) {
		finish(t);
		return;
	}
	/* SPC-4 6.4.1: a zero PARAMETER LIST LENGTH is not an error; nothing is copied. */
	if (plen == 0) {
		finish(t);
		return;
	}
	if (len > plen)
		len = plen;
	l = malloc(sizeof(*l));
	if (!l) {
		rod_task_status(t, SAM_STAT_BUSY);
		finish(t);
		return;
	}
	if (rod_xcopy_parse(buf, len, l, &s)) {
		apply_sense(t, &s);
		free(l);
		finish(t);
		return;
	}
	x = exec_new(t, l->nseg);
	if (!x) {
		free(l);
		rod_task_status(t, SAM_STAT_BUSY);
		finish(t);
		return;
	}
	x->xcopy = true;
	x->nsegs = l->nseg;
	/* LIST ID USAGE 11b: no list id, nothing kept for RECEIVE COPY RESULTS. */
	if (l->list_id_usage != 3) {
		x->op = op_start(t, l->list_id, false, 0x00, l->list_id_usage == 2);
		if (!x->op) {
			free(x->steps);
			free(x);
			free(l);
			finish(t);
			return;
		}
	}

	/* Resolve and check every segment before the first copy; a bad segment k is
	 * reported after segments 0..k-1 ran (SPC-4: segments are processed in order). */
	for (uint32_t i = 0; i < l->nseg && !x->fail_after; i++) {
		const struct rod_xcopy_seg *g = &l->seg[i];
		struct rod_scsi_lu *src = xcopy_resolve(t, x, l, g->src, cache);
		struct rod_scsi_lu *dst = xcopy_resolve(t, x, l, g->dst, cache);
		uint32_t sbs, dbs;
		uint64_t bytes, ssize, dsize;
		struct tpc_step st;

		if (!src || !dst) {
			/* A designator this host cannot see, or no such CSCD: the initiator
			 * falls back to a host copy. */
			seg_fail(x, i, g->off, SENSE_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET, false, 0);
			break;
		}
		if (g->nblocks == 0)
			continue;
		sbs = rod_vol_block_size(src->vol);
		dbs = rod_vol_block_size(dst->vol);
		bytes = (uint64_t)g->nblocks * (g->dc ? dbs : sbs);
		if (bytes % sbs || bytes % dbs) {
			seg_fail(x, i, g->off, SENSE_COPY_ABORTED, ASC_UNEXPECTED_INEXACT_SEGMENT,
				 false, 0);
			break;
		}
		ssize = rod_vol_size(src->vol);
		dsize = rod_vol_size(dst->vol);
		/* Out of range in a segment is COPY ABORTED (the copy manager's I/O to the
		 * copy target failed); INFORMATION holds the LBA, COMMAND-SPECIFIC
		 * INFORMATION the segment. ASC 00/00 is what libiscsi's test-tool and
		 * initiators accept for it. */
		if (g->src_lba > ssize / sbs || bytes > ssize - g->src_lba * sbs) {
			seg_fail(x, i, g->off, SENSE_COPY_ABORTED, ASC_NO_ADDITIONAL_SENSE, true,
				 g->src_lba);
			break;
		}
		if (g->dst_lba > dsize / dbs || bytes > dsize - g->dst_lba * dbs) {
			seg_fail(x, i, g->off, SENSE_COPY_ABORTED, ASC_NO_ADDITIONAL_SENSE, true,
				 g->dst_lba);
			break;
		}
		st = (struct tpc_step){ .op = ROD_IO_COPY, .src = src->vol,
					.src_off = g->src_lba * sbs, .dst = dst->vol,
					.dst_off = g->dst_lba * dbs, .len = bytes, .seg = i,
					.dst_bs = dbs };
		if (exec_add(x, &st)) {
			seg_fail(x, i, g->off, SENSE_ILLEGAL_REQUEST, ASC_INSUFFICIENT_RESOURCES,
				 false, 0);
			break;
		}
	}
	free(l);
	exec_next(x);
}

/* ---- RECEIVE COPY RESULTS ---------------------------------------------------------- */

void rod_tpc_copy_status(struct rod_scsi_task *t)
{
	struct tpc_state *st = state_of(t);
	const uint8_t *cdb = t->cmd->cdb;
	uint32_t alloc = rod_get_be32(cdb + 10);
	uint8_t r[12] = { 0 };
	struct tpc_op *o;

	pthread_mutex_lock(&st->lock);
	o = op_find_locked(st, nexus_of(t), cdb[2], false);
	if (o) {
		rod_put_be32(r, 8);
		r[4] = o->state;            /* 0 in progress, 1 completed, 2 completed with error */
		rod_put_be16(r + 5, o->segs_done);
		if (o->xfer_bytes <= UINT32_MAX) {
			r[7] = 0x00;        /* bytes */
			rod_put_be32(r + 8, (uint32_t)o->xfer_bytes);
		} else {
			r[7] = 0x02;        /* MiB */
			rod_put_be32(r + 8, (uint32_t)(o->xfer_bytes >> 20));
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (!o)
		rod_sense_invalid_field(t, true, 2, -1);
	else
		rod_task_data_in(t, r, sizeof(r), alloc);
	finish(t);
}

static uint32_t max_segment_bytes(uint32_t bs)
{
	/* A block->block segment counts blocks in 16 bits. */
	return 65535u * bs;
}

void rod_tpc_op_params(struct rod_scsi_task *t)
{
	uint32_t alloc = rod_get_be32(t->cmd->cdb + 10);
	uint8_t r[46] = { 0 };

	rod_put_be32(r, sizeof(r) - 4);
	r[4] = 0x01;                                        /* SNLID: list usage 11b allowed */
	rod_put_be16(r + 8, ROD_XCOPY_MAX_CSCD);
	rod_put_be16(r + 10, ROD_XCOPY_MAX_SEGS);
	rod_put_be32(r + 12, ROD_XCOPY_MAX_LIST_LEN);
	rod_put_be32(r + 16, max_segment_bytes(t->bs));
	rod_put_be32(r + 20, ROD_XCOPY_MAX_INLINE);
	rod_put_be32(r + 24, 0);                            /* no held data */
	rod_put_be32(r + 28, 0);                            /* no stream devices */
	rod_put_be16(r + 34, ROD_XCOPY_MAX_CONCURRENT);
	r[36] = ROD_XCOPY_MAX_CONCURRENT;
	r[37] = log2u(t->bs);                               /* data segment granularity */
	r[38] = log2u(t->bs);
	r[39] = log2u(t->bs);
	r[43] = 2;
	r[44] = 0x02;                                       /* block -> block segments */
	r[45] = 0xE4;                                       /* identification CSCD */
	rod_task_data_in(t, r, sizeof(r), alloc);
	finish(t);
}

/* ---- POPULATE TOKEN ------------------------------------------------------------------ */

static void release_pin(void *pin)
{
	rod_vol_close(pin);
}

/* The 0xE4 CSCD naming an LU by its NAA designator (token bytes 16..47). */
static void lu_cscd(struct rod_scsi_lu *lu, uint32_t bs, uint8_t d[32])
{
	memset(d, 0, 32);
	d[0] = 0xE4;
	d[4] = 0x01;                /* binary */
	d[5] = 0x03;                /* LU association, NAA */
	d[7] = 16;
	memcpy(d + 8, lu->naa, 16);
	rod_put_be24(d + 29, bs);
}

void rod_tpc_populate_token(struct rod_scsi_task *t)
{
	struct tpc_state *st = state_of(t);
	const uint8_t *cdb = t->cmd->cdb;
	uint32_t list_id = rod_get_be32(cdb + 6), plen = rod_get_be32(cdb + 10), len;
	const uint8_t *buf = rod_task_out(t, &len);
	struct rod_pt_params *p = malloc(sizeof(*p));
	struct rod_tpc_sense s;
	struct tpc_op *o = NULL;
	struct rod_vol *pin = NULL;
	uint8_t tok[ROD_TOKEN_LEN], creator[32];
	int rc;

	if (!p) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto out;
	}
	if (offload_off(t))
		goto out;
	if (!st->tokens) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INSUFFICIENT_RESOURCES_ROD_TOKEN);
		goto out;
	}
	if (rod_pt_parse(plen, buf, len, rod_vol_size(t->lu->vol) / t->bs, t->bs, p, &s)) {
		apply_sense(t, &s);
		goto out;
	}
	o = op_start(t, list_id, true, 0x10, false);
	if (!o)
		goto out;
	/* IMMED: the pin and the token take microseconds, so the operation is complete
	 * when status returns either way (RRTI then reports it completed). */
	rc = rod_vol_pin(t->lu->vol, &pin);
	if (rc) {
		rod_task_set_errno(t, rc, false);
		op_finish(t, o, 0, 0, 0, NULL);
		goto out;
	}
	lu_cscd(t->lu, t->bs, creator);
	struct rod_token_spec spec = {
		.rod_type = p->rod_type, .pin = pin, .src_vol_id = t->lu->vol_id,
		.block_size = t->bs, .ranges = p->ranges, .nranges = p->nranges,
		.timeout_ns = (uint64_t)(p->inactivity_s ? p->inactivity_s
				: ROD_TPC_DEFAULT_INACTIVITY_S) * 1000000000ull,
		.creator = creator,
	};
	rc = rod_token_add(st->tokens, &spec, tok);
	if (rc) {
		rod_vol_close(pin);
		/* SPC-4: INSUFFICIENT RESOURCES TO CREATE ROD TOKEN */
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INSUFFICIENT_RESOURCES_ROD_TOKEN);
		op_finish(t, o, 0, 0, 0, NULL);
		goto out;
	}
	op_finish(t, o, p->total_blocks * t->bs, p->total_blocks, 0, tok);
	rod_stats_token_made(t->tgt);
out:
	free(p);
	finish(t);
}

/* ---- RECEIVE ROD TOKEN INFORMATION --------------------------------------------------- */

void rod_tpc_rrti(struct rod_scsi_task *t)
{
	struct tpc_state *st = state_of(t);
	const uint8_t *cdb = t->cmd->cdb;
	uint32_t list_id = rod_get_be32(cdb + 2), alloc = rod_get_be32(cdb + 10);
	uint8_t r[32 + ROD_SCSI_SENSE_MAX + 4 + 2 + ROD_TOKEN_LEN];
	struct tpc_op *o;
	size_t n = 0;

	memset(r, 0, sizeof(r));
	pthread_mutex_lock(&st->lock);
	o = op_find_locked(st, nexus_of(t), list_id, true);
	if (o) {
		r[4] = o->sa;                                /* RESPONSE TO SERVICE ACTION */
		/* 0x11 in progress in the foreground, 0x12 in the background (IMMED) */
		r[5] = o->state == OP_RUNNING ? (o->background ? 0x12 : 0x11) : o->state;
		rod_put_be32(r + 8, o->state == OP_RUNNING ? 1 : 0); /* status update delay ms */
		r[12] = o->state == OP_DONE_ERROR ? SAM_STAT_CHECK_CONDITION : SAM_STAT_GOOD;
		r[13] = o->sense_len;
		r[14] = o->sense_len;
		r[15] = 0xF1;                                /* transfer count in blocks */
		rod_put_be64(r + 16, o->xfer_blocks);
		memcpy(r + 32, o->sense, o->sense_len);
		n = 32 + o->sense_len;
		if (o->has_token && o->state == OP_DONE_OK) {
			rod_put_be32(r + n, 2 + ROD_TOKEN_LEN);  /* Windows wants exactly 514 */
			memcpy(r + n + 6, o->token, ROD_TOKEN_LEN);
			n += 6 + ROD_TOKEN_LEN;
		} else {
			n += 4;
		}
		rod_put_be32(r, (uint32_t)(n - 4));
	}
	pthread_mutex_unlock(&st->lock);
	if (!o)
		rod_sense_invalid_field(t, true, 2, -1);
	else
		rod_task_data_in(t, r, n, alloc);
	finish(t);
}

/* ---- WRITE USING TOKEN ----------------------------------------------------------------- */

static const uint16_t token_asc[] = {
	[ROD_TOKEN_UNSUPPORTED_TYPE] = ASC_INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE,
	[ROD_TOKEN_REMOTE] = ASC_INVALID_TOKEN_OPERATION_REMOTE_TOKEN_NOT_USABLE,
	[ROD_TOKEN_UNKNOWN] = ASC_INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN,
	[ROD_TOKEN_CORRUPT] = ASC_INVALID_TOKEN_OPERATION_TOKEN_CORRUPT,
	[ROD_TOKEN_REVOKED] = ASC_INVALID_TOKEN_OPERATION_TOKEN_REVOKED,
	[ROD_TOKEN_EXPIRED] = ASC_INVALID_TOKEN_OPERATION_TOKEN_EXPIRED,
	[ROD_TOKEN_CANCELLED] = ASC_INVALID_TOKEN_OPERATION_TOKEN_CANCELLED,
	[ROD_TOKEN_DELETED] = ASC_INVALID_TOKEN_OPERATION_TOKEN_DELETED,
	[ROD_TOKEN_BAD_LENGTH] = ROD_ASC(0x23, 0x0A),
};

/* Steps copying the token's ranges (from offset_into_rod source blocks on) into the
 * destination ranges: both lists are walked as one concatenated byte stream. */
static int wut_plan(struct tpc_exec *x, struct rod_scsi_task *t, const struct rod_wut_params *w,
		    const struct rod_token *tk)
{
	uint64_t skip = w->offset_into_rod * tk->block_size;
	uint32_t si = 0;
	uint64_t s_used = 0;                        /* bytes used of source range si */

	/* Skip OFFSET INTO ROD bytes of the source. */
	while (si < tk->nranges) {
		uint64_t rb = (uint64_t)tk->ranges[si].nblocks * tk->block_size;

		if (skip < rb) {
			s_used = skip;
			break;
		}
		skip -= rb;
		si++;
	}
	for (uint32_t di = 0; di < w->nranges; di++) {
		uint64_t d_off = w->ranges[di].lba * t->bs;
		uint64_t d_left = (uint64_t)w->ranges[di].nblocks * t->bs;

		while (d_left) {
			uint64_t rb, n;
			struct tpc_step st;

			while (si < tk->nranges &&
			       s_used == (uint64_t)tk->ranges[si].nblocks * tk->block_size) {
				si++;
				s_used = 0;
			}
			if (si >= tk->nranges)
				return -ERANGE;             /* checked before; cannot happen */
			rb = (uint64_t)tk->ranges[si].nblocks * tk->block_size;
			n = ROD_MIN(rb - s_used, d_left);
			st = (struct tpc_step){ .op = ROD_IO_COPY, .src = tk->pin,
						.src_off = tk->ranges[si].lba * tk->block_size + s_used,
						.dst = t->lu->vol, .dst_off = d_off, .len = n,
						.dst_bs = t->bs };
			if (exec_add(x, &st))
				return -ENOMEM;
			s_used += n;
			d_off += n;
			d_left -= n;
		}
	}
	return 0;
}

void rod_tpc_write_using_token(struct rod_scsi_task *t)
{
	struct tpc_state *st = state_of(t);
	const uint8_t *cdb = t->cmd->cdb;
	uint32_t list_id = rod_get_be32(cdb + 6), plen = rod_get_be32(cdb + 10), len;
	const uint8_t *buf = rod_task_out(t, &len);
	struct rod_wut_params *w = malloc(sizeof(*w));
	struct rod_tpc_sense s;
	struct tpc_exec *x = NULL;
	struct rod_token *tk = NULL;
	enum rod_token_ascq r;

	if (!w) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail;
	}
	if (offload_off(t))
		goto fail;
	if (rod_wut_parse(plen, buf, len, rod_vol_size(t->lu->vol) / t->bs, t->bs, w, &s)) {
		apply_sense(t, &s);
		goto fail;
	}
	x = exec_new(t, w->nranges + 8);
	if (!x) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail;
	}
	x->op = op_start(t, list_id, true, 0x11, false);
	if (!x->op)
		goto fail;

	if (rod_token_type(w->token) == ROD_TOKEN_TYPE_ZERO) {
		x->zero = true;
		/* SBC-3 5.27 block device zero ROD token: the destination reads as zeros;
		 * OFFSET INTO ROD is irrelevant. */
		for (uint32_t i = 0; i < w->nranges; i++) {
			struct tpc_step z = { .op = ROD_IO_ZERO, .dst = t->lu->vol,
					      .dst_off = w->ranges[i].lba * t->bs,
					      .len = (uint64_t)w->ranges[i].nblocks * t->bs,
					      .dst_bs = t->bs };

			if (z.len && exec_add(x, &z)) {
				rod_task_status(t, SAM_STAT_BUSY);
				goto fail_op;
			}
		}
		if (w->immed)
			detach(x);
		free(w);
		x->parallel = true;
		exec_start(x);
		return;
	}
	if (!st->tokens) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN);
		goto fail_op;
	}
	r = rod_token_get(st->tokens, w->token, &tk);
	if (r != ROD_TOKEN_OK) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST,
			  r < ROD_ARRAY_SIZE(token_asc) && token_asc[r] ? token_asc[r]
				  : ASC_INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE);
		goto fail_op;
	}
	x->tk = tk;
	x->del_tkn = w->del_tkn;
	/* The destination asks for more than the token holds past the offset: COPY TARGET
	 * DEVICE DATA UNDERRUN (Windows reads 05/0D/04 as "asked for too much"). */
	if (w->offset_into_rod > tk->total_blocks ||
	    w->total_blocks * t->bs > (tk->total_blocks - w->offset_into_rod) * tk->block_size) {
		rod_sense(t, SENSE_ILLEGAL_REQUEST, ASC_COPY_TARGET_DATA_UNDERRUN);
		goto fail_op;
	}
	if (wut_plan(x, t, w, tk)) {
		rod_task_status(t, SAM_STAT_BUSY);
		goto fail_op;
	}
	if (w->immed)
		detach(x);
	free(w);
	x->parallel = true;
	exec_start(x);
	return;

fail_op:
	free(w);
	exec_end(x);                /* records the failure, releases the token */
	return;
fail:
	if (x) {
		free(x->steps);
		free(x);
	}
	free(w);
	finish(t);
}

/* ---- REPORT ALL ROD TOKENS ------------------------------------------------------------ */

#define RART_ENTRY 96u
#define RART_MAX 512u

void rod_tpc_report_all_rod_tokens(struct rod_scsi_task *t)
{
	struct tpc_state *st = state_of(t);
	uint32_t alloc = rod_get_be32(t->cmd->cdb + 10);
	uint8_t *r = calloc(1, 8 + RART_ENTRY * RART_MAX);
	uint32_t n = 0;

	if (!r) {
		rod_task_status(t, SAM_STAT_BUSY);
		finish(t);
		return;
	}
	t->buf = r;
	/* The ROD management tokens are the first 96 bytes of each live token whose
	 * source is this LU: enough to identify it, useless as a token (no MAC). */
	if (st->tokens)
		n = rod_token_list(st->tokens, t->lu->vol_id, r + 8, RART_MAX, RART_ENTRY);
	rod_put_be32(r, 4 + n * RART_ENTRY);
	rod_task_data_in(t, r, 8 + (size_t)n * RART_ENTRY, alloc);
	finish(t);
}

/* ---- VPD 0x8F and the hooks ------------------------------------------------------------- */

static const struct {
	uint8_t opcode;
	uint8_t sa[4];
	uint8_t nsa;
} tpc_cmds[] = {
	{ SPC_EXTENDED_COPY, { 0x00, 0x10, 0x11 }, 3 },
	{ SPC_RECEIVE_COPY_RESULTS, { 0x00, 0x03, 0x07, 0x08 }, 4 },
};

bool rod_tpc_implemented(uint8_t opcode, uint8_t sa)
{
	for (size_t i = 0; i < ROD_ARRAY_SIZE(tpc_cmds); i++)
		for (uint8_t k = 0; k < tpc_cmds[i].nsa; k++)
			if (tpc_cmds[i].opcode == opcode && tpc_cmds[i].sa[k] == sa)
				return true;
	return false;
}

/* Descriptor header; returns the size with the header. */
static size_t desc_hdr(uint8_t *d, uint16_t type, uint16_t body)
{
	rod_put_be16(d, type);
	rod_put_be16(d + 2, body);
	return 4u + body;
}

int rod_tpc_vpd_8f(struct rod_scsi_task *t, uint8_t *out, size_t cap)
{
	uint8_t p[1024];
	uint32_t bs = t->bs ? t->bs : 512;
	size_t n = 4;
	uint8_t *d;

	memset(p, 0, sizeof(p));
	p[0] = 0x00;                                /* PQ 0, direct-access block device */
	p[1] = 0x8F;

	/* 1. Block Device ROD Token Limits, FIRST: Windows reads only the first
	 * descriptor and wants exactly this type with length 0x20. */
	d = p + n;
	n += desc_hdr(d, 0x0000, 0x20);
	rod_put_be16(d + 10, ROD_TPC_MAX_RANGES);
	rod_put_be32(d + 12, ROD_TPC_MAX_INACTIVITY_S);
	rod_put_be32(d + 16, ROD_TPC_DEFAULT_INACTIVITY_S);
	rod_put_be64(d + 20, ROD_TPC_MAX_TOKEN_BYTES / bs);
	rod_put_be64(d + 28, ROD_TPC_OPTIMAL_BYTES / bs);

	/* 2. Supported Commands */
	d = p + n;
	{
		size_t l = 0;

		for (size_t i = 0; i < ROD_ARRAY_SIZE(tpc_cmds); i++) {
			d[5 + l] = tpc_cmds[i].opcode;
			d[6 + l] = tpc_cmds[i].nsa;
			memcpy(d + 7 + l, tpc_cmds[i].sa, tpc_cmds[i].nsa);
			l += 2u + tpc_cmds[i].nsa;
		}
		d[4] = (uint8_t)l;
		n += desc_hdr(d, 0x0001, (uint16_t)ROD_ROUND_UP(1 + l, 4));
	}

	/* 3. Parameter Data (agrees with RECEIVE COPY RESULTS OPERATING PARAMETERS) */
	d = p + n;
	n += desc_hdr(d, 0x0004, 0x1C);
	rod_put_be16(d + 8, ROD_XCOPY_MAX_CSCD);
	rod_put_be16(d + 10, ROD_XCOPY_MAX_SEGS);
	rod_put_be32(d + 12, ROD_XCOPY_MAX_LIST_LEN);
	rod_put_be32(d + 16, ROD_XCOPY_MAX_INLINE);

	/* 4. Supported Descriptors: segment types, then CSCD types, ascending */
	d = p + n;
	d[4] = 2;
	d[5] = 0x02;
	d[6] = 0xE4;
	n += desc_hdr(d, 0x0008, 4);

	/* 5. Supported CSCD Descriptor IDs: 0xFFFF = the LU that got the command */
	d = p + n;
	rod_put_be16(d + 4, 2);
	rod_put_be16(d + 6, ROD_XCOPY_CSCD_ID_SELF);
	n += desc_hdr(d, 0x000C, 4);

	/* 6. ROD Token Features, with the block device ROD features descriptor */
	d = p + n;
	n += desc_hdr(d, 0x0106, 44 + 48);
	d[4] = 0x00;                                /* REMOTE TOKENS: only our own */
	rod_put_be32(d + 16, 1);                    /* MINIMUM TOKEN LIFETIME (s) */
	rod_put_be32(d + 20, 0xFFFFFFFFu);          /* MAXIMUM TOKEN LIFETIME: while used */
	rod_put_be32(d + 24, ROD_TPC_MAX_INACTIVITY_S);
	rod_put_be16(d + 46, 48);
	{
		uint8_t *b = d + 48;

		b[0] = 0x00;                        /* direct-access block device */
		rod_put_be16(b + 2, 0x2C);
		rod_put_be16(b + 6, (uint16_t)(ROD_GRAIN / bs)); /* optimal granularity */
		rod_put_be64(b + 8, ROD_TPC_MAX_TOKEN_BYTES);
		rod_put_be64(b + 16, ROD_TPC_OPTIMAL_BYTES);
		rod_put_be64(b + 24, ROD_TPC_OPTIMAL_BYTES);
		rod_put_be64(b + 32, ROD_TPC_OPTIMAL_BYTES);
	}

	/* 7. Supported ROD Types */
	d = p + n;
	{
		static const struct { uint32_t type; uint8_t flags; } types[] = {
			{ ROD_TOKEN_TYPE_PIT, 0x03 },            /* TOKEN_IN | TOKEN_OUT */
			{ ROD_TOKEN_TYPE_PIT_PERSISTENT, 0x03 },
			{ ROD_TOKEN_TYPE_ZERO, 0x02 },           /* TOKEN_IN only */
		};
		rod_put_be16(d + 6, (uint16_t)(64 * ROD_ARRAY_SIZE(types)));
		for (size_t i = 0; i < ROD_ARRAY_SIZE(types); i++) {
			rod_put_be32(d + 8 + 64 * i, types[i].type);
			d[8 + 64 * i + 4] = types[i].flags;
		}
		n += desc_hdr(d, 0x0108, (uint16_t)(4 + 64 * ROD_ARRAY_SIZE(types)));
	}

	/* 8. General Copy Operations (agrees with OPERATING PARAMETERS) */
	d = p + n;
	n += desc_hdr(d, 0x8001, 0x20);
	rod_put_be32(d + 4, ROD_XCOPY_MAX_CONCURRENT);
	rod_put_be32(d + 8, ROD_XCOPY_MAX_CONCURRENT);
	rod_put_be32(d + 12, max_segment_bytes(bs));
	d[16] = log2u(bs);
	d[17] = log2u(bs);

	rod_put_be16(p + 2, (uint16_t)(n - 4));
	memcpy(out, p, ROD_MIN(n, cap));
	return (int)n;
}

static uint64_t store_clock(void)
{
	return rod_now_ns();
}

int rod_tpc_target_init(struct rod_scsi_target *t, void **tpc_state)
{
	struct tpc_state *st = calloc(1, sizeof(*st));
	struct rod_store *store = rod_scsi_target_store(t);
	const struct rod_array_identity *id = store ? rod_store_identity(store) : NULL;

	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->qlock, NULL);
	pthread_cond_init(&st->qcond, NULL);
	pthread_cond_init(&st->dcond, NULL);
	if (id) {
		struct rod_token_table_opts o = { .max_tokens = rod_scsi_target_max_tokens(t) ?: ROD_TOKEN_DEFAULT_MAX,
						  .release_pin = release_pin, .clock = store_clock };
		int rc;

		memcpy(o.array_id, id->id, sizeof(o.array_id));
		memcpy(o.secret, id->secret, sizeof(o.secret));
		rc = rod_token_table_new(&o, &st->tokens);
		if (rc) {
			rod_tpc_target_fini(t, st);
			return rc;
		}
	}
	/* Workers last: they read st->tokens. */
	for (unsigned i = 0; i < TPC_WORKERS; i++) {
		if (pthread_create(&st->workers[i], NULL, tpc_worker, st) != 0)
			break;
		st->nworkers++;
	}
	if (!st->nworkers) {
		rod_err("tpc: cannot start copy worker threads");
		rod_tpc_target_fini(t, st);
		return -EAGAIN;
	}
	pthread_mutex_lock(&live_lock);
	st->next_live = live_states;
	live_states = st;
	pthread_mutex_unlock(&live_lock);
	*tpc_state = st;
	return 0;
}

void rod_tpc_target_fini(struct rod_scsi_target *t, void *tpc_state)
{
	struct tpc_state *st = tpc_state;

	if (!st)
		return;
	pthread_mutex_lock(&live_lock);
	for (struct tpc_state **pp = &live_states; *pp; pp = &(*pp)->next_live) {
		if (*pp == st) {
			*pp = st->next_live;
			break;
		}
	}
	pthread_mutex_unlock(&live_lock);
	/* The target waited for its commands; IMMED copies may still run: wait for them
	 * (they hold LU references the target is about to drop). */
	pthread_mutex_lock(&st->qlock);
	while (st->detached)
		pthread_cond_wait(&st->dcond, &st->qlock);
	st->stopping = true;
	pthread_cond_broadcast(&st->qcond);
	pthread_mutex_unlock(&st->qlock);
	for (unsigned i = 0; i < st->nworkers; i++)
		pthread_join(st->workers[i], NULL);
	pthread_mutex_destroy(&st->qlock);
	pthread_cond_destroy(&st->qcond);
	pthread_cond_destroy(&st->dcond);
	rod_token_table_free(st->tokens);
	for (uint32_t b = 0; b < OP_BUCKETS; b++) {
		struct tpc_op *o = st->ops[b], *next;

		for (; o; o = next) {
			next = o->next;
			free(o);
		}
	}
	pthread_mutex_destroy(&st->lock);
	free(st);
}

void rod_tpc_lu_changed(struct rod_scsi_target *t, struct rod_scsi_lu *lu)
{
	struct tpc_state *st = rod_scsi_target_tpc_state(t);

	unsigned n = 0;

	/* Resized or removed: tokens reading from it end with TOKEN REVOKED. */
	pthread_mutex_lock(&live_lock);
	if (st && live_locked(st) && st->tokens)
		n = rod_token_revoke_vol(st->tokens, lu->vol_id);
	pthread_mutex_unlock(&live_lock);
	if (n)
		rod_info("tpc: revoked %u ROD token(s) of volume %llu", n,
			 (unsigned long long)lu->vol_id);
}

void rod_tpc_nexus_gone(struct rod_scsi_target *t, struct rod_scsi_nexus *n)
{
	struct tpc_state *st = rod_scsi_target_tpc_state(t);

	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	for (uint32_t b = 0; b < OP_BUCKETS; b++) {
		struct tpc_op **pp = &st->ops[b];

		while (*pp) {
			struct tpc_op *o = *pp;

			/* Every command of the nexus has completed before this is called. */
			if (o->nexus == n->index && o->state != OP_RUNNING) {
				*pp = o->next;
				st->nops--;
				free(o);
			} else {
				pp = &o->next;
			}
		}
	}
	pthread_mutex_unlock(&st->lock);
}

/* Live ROD tokens of the target, for the tokens gauge of /metrics (stats.c). */
uint32_t rod_tpc_tokens_live(struct rod_scsi_target *t)
{
	struct tpc_state *st = rod_scsi_target_tpc_state(t);
	return st && st->tokens ? rod_token_count(st->tokens) : 0;
}
