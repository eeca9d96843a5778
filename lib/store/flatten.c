/* Flatten: rewrite deep range entries of a lineage as block entries referencing the
 * chunks they resolve to (no data copied) and as range entries to zeros/deallocated
 * space, then drop them (docs/engine.md "Flatten").
 *
 * Why this is correct. Let g be a range entry of lineage L at epoch E. Before anything
 * else, L's current epoch is moved past E, so nothing but flatten ever writes at (L, E)
 * again and no range entry of L at epoch E appears or changes. For a grain x where g wins
 * at reader epoch E (no block entry of L at x with epoch E, no entry of epoch E with a
 * higher sequence covering x), flatten puts a block entry (L, x, E) whose value is what g
 * resolves x to (a map entry of a chunk, or a zero/unmap reference), or, for long runs of
 * zeros/deallocated space, a range entry to lineage 0/1 at epoch E with a new (higher)
 * sequence. For every reader epoch r >= E, whatever beat g at x still beats the new entry
 * (a newer block entry, a range entry of a newer epoch), and where g won, the new entry
 * now wins (a block entry wins a tie of epochs; a higher sequence wins among range
 * entries) with the same answer. Readers at r < E see neither. Once every grain where g
 * wins is covered, g is never consulted and is dropped. Every step is one commit item
 * (logged in the segments, so crash safe and rebuildable); a crash or a cancel between
 * steps leaves some grains covered and g still there: the volume reads the same. */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "reduce_store.h"
#include "rod/log.h"
#include "rod/util.h"

#define FL_BATCH 1024u      /* map entries per commit item */
#define FL_PIECES 64u       /* range entries per commit item */
#define FL_RANGE_MIN 64u    /* zero/deallocated runs this long become one range entry */

/* One flatten at a time (the "nothing else writes at (L, E)" argument above). */
static pthread_mutex_t flatten_lock = PTHREAD_MUTEX_INITIALIZER;

struct fl_put {
	uint64_t lba;
	struct map_val v;
};

struct fl_piece {
	uint64_t start, end, tlin;
};

struct fl_step {
	uint64_t lin, seq, epoch;   /* the entry being flattened */
	uint64_t gc_gen;
	struct fl_put *put;
	size_t nput;
	struct fl_piece piece[FL_PIECES];
	size_t npiece;
	bool remove;
};

static uint64_t gc_gen_now(struct rod_store *s)
{
	return s->red ? atomic_load(&s->red->gc_gen) : 0;
}

/* A GC pass may delete segments while the generation is odd: wait for it to end. */
static uint64_t gc_gen_even(struct rod_store *s)
{
	uint64_t g;

	while ((g = gc_gen_now(s)) & 1) {
		pthread_mutex_lock(&s->gc_lock);
		pthread_mutex_unlock(&s->gc_lock);
	}
	return g;
}

static int step_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct fl_step *st = ci->arg;
	struct lineage *l = media_find(&s->media, st->lin);
	int rc;

	if (!l || !lin_rng_by_seq(l, st->seq))
		return -ENOENT;
	if (st->remove) {
		rc = lin_rng_remove(l, st->seq, mb);
		/* Readers holding an iterator from before our map entries were applied must
		 * renew it before they can miss the entry just dropped. */
		meta_iter_gen_bump(s->meta);
		return rc;
	}
	/* The chunks were resolved under gc_gen: a GC pass since may have deleted one
	 * (their other references may be gone). Resolve again. */
	if (st->nput && gc_gen_now(s) != st->gc_gen)
		return -EAGAIN;
	for (size_t i = 0; i < st->nput; i++) {
		uint8_t k[MAP_KEY_LEN], v[MAP_VAL_LEN];

		map_key(k, st->lin, st->put[i].lba, st->epoch);
		map_val_encode(&st->put[i].v, v);
		mutbuf_put(mb, CF_MAP, k, sizeof(k), v, sizeof(v));
	}
	for (size_t i = 0; i < st->npiece; i++) {
		rc = lin_rng_add_at(l, st->piece[i].start, st->piece[i].end, st->epoch,
				    st->piece[i].tlin, mb);
		if (rc)
			return rc;
	}
	return 0;
}

static int run_step(struct rod_store *s, struct fl_step *st)
{
	struct citem ci = { .kind = CI_OP, .durable = true, .build = step_build, .arg = st };

	return commit_run(s, &ci);
}

/* Is grain x of g hidden at epoch g->epoch by a newer entry of the same epoch? Returns
 * the end of the hiding stretch from x (x when not hidden); *next: the lowest start > x
 * of such an entry. */
static uint64_t hidden_until(const struct lineage *l, const struct rng_ent *g, uint64_t x,
			     uint64_t *next)
{
	uint64_t hu = x;
	bool again = true;

	*next = UINT64_MAX;
	while (again) {
		again = false;
		for (size_t j = 0; j < l->nrng; j++) {
			const struct rng_ent *h = &l->rng[j];

			if (h->epoch != g->epoch || h->seq <= g->seq)
				continue;
			if (h->start <= hu && h->end > hu) {
				hu = h->end;
				again = true;
			}
		}
	}
	for (size_t j = 0; j < l->nrng; j++) {
		const struct rng_ent *h = &l->rng[j];

		if (h->epoch == g->epoch && h->seq > g->seq && h->start > hu && h->start < *next)
			*next = h->start;
	}
	return hu;
}

/* Does L have a block entry at exactly (x, e)? */
static bool block_at(struct meta_iter *it, uint64_t lin, uint64_t x, uint64_t e)
{
	uint8_t k[MAP_KEY_LEN];
	const uint8_t *kk;
	size_t kl;

	map_key(k, lin, x, e);
	meta_iter_seek(it, k, sizeof(k));
	if (!meta_iter_valid(it))
		return false;
	kk = meta_iter_key(it, &kl);
	return kl == MAP_KEY_LEN && !memcmp(kk, k, sizeof(k));
}

static void add_piece(struct fl_step *st, uint64_t a, uint64_t b, uint64_t tlin)
{
	struct fl_piece *p = st->npiece ? &st->piece[st->npiece - 1] : NULL;

	if (p && p->end == a && p->tlin == tlin) {
		p->end = b;
		return;
	}
	st->piece[st->npiece++] = (struct fl_piece){ a, b, tlin };
}

/* Fill st with the next batch of grains of g from *x on; advances *x. Takes the state
 * lock per grain or run, as reads do, so the commit thread is never held up for long. */
static int fill_step(struct rod_store *s, struct meta_iter *it, const struct rng_ent *g,
		     struct fl_step *st, uint64_t *x)
{
	int rc = 0;

	while (!rc && *x < g->end && st->nput < FL_BATCH && st->npiece < FL_PIECES) {
		struct lineage *l;
		uint64_t next, hu, lim;
		struct resolved r;

		pthread_rwlock_rdlock(&s->state);
		l = media_find(&s->media, st->lin);
		if (!l || !lin_rng_by_seq(l, g->seq)) {
			pthread_rwlock_unlock(&s->state);
			return -ENOENT;
		}
		hu = hidden_until(l, g, *x, &next);
		if (hu > *x) {
			pthread_rwlock_unlock(&s->state);
			*x = ROD_MIN(hu, g->end);
			continue;
		}
		lim = ROD_MIN(g->end, next);
		rc = medium_resolve(&s->media, it, g->tlin, g->tepoch,
				    (uint64_t)((int64_t)*x + g->delta), lim - *x, &r);
		pthread_rwlock_unlock(&s->state);
		if (rc)
			break;
		if (!r.run)
			r.run = 1;
		if (r.kind == RES_CHUNK) {
			if (!block_at(it, st->lin, *x, g->epoch))
				st->put[st->nput++] = (struct fl_put){ *x, r.v };
			(*x)++;
			continue;
		}
		/* A run of zeros or deallocated space: extend it while the answer stays the
		 * same (resolution stops a run at every older block entry it looks past). */
		uint64_t b = *x + r.run;
		int kind = r.kind;

		while (!rc && b < lim && b - *x < (1ull << 30)) {
			struct resolved r2;

			pthread_rwlock_rdlock(&s->state);
			rc = medium_resolve(&s->media, it, g->tlin, g->tepoch,
					    (uint64_t)((int64_t)b + g->delta), lim - b, &r2);
			pthread_rwlock_unlock(&s->state);
			if (rc || r2.kind != kind)
				break;
			b += r2.run ? r2.run : 1;
		}
		if (rc)
			break;
		if (b - *x >= FL_RANGE_MIN) {
			add_piece(st, *x, b, kind == RES_ZERO ? LIN_ZERO : LIN_UNMAP);
			*x = b;
			continue;
		}
		uint64_t n = ROD_MIN(b - *x, FL_BATCH - st->nput);

		for (uint64_t i = 0; i < n; i++) {
			if (block_at(it, st->lin, *x + i, g->epoch))
				continue;
			st->put[st->nput++] = (struct fl_put){
				*x + i, { .chunk = kind == RES_ZERO ? CHUNK_ZERO : CHUNK_UNMAP } };
		}
		*x += n;
	}
	return rc;
}

/* Move L's current epoch past every epoch in eps (see the top of the file). */
struct bump_arg {
	uint64_t lin, max_epoch;
};

static int bump_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct bump_arg *b = ci->arg;
	struct lineage *l = media_find(&s->media, b->lin);

	if (!l)
		return -ENOENT;
	if (l->cur <= b->max_epoch) {
		l->cur = b->max_epoch + 1;
		l->cur_used = false;
		l->box_lo = UINT64_MAX;
		l->box_hi = 0;
		lin_log(mb, l);
	}
	return 0;
}

static bool is_candidate(const struct rng_ent *r, unsigned flags)
{
	if (r->tlin < LIN_FIRST)
		return false; /* already flat: zeros or deallocated */
	return (flags & ROD_FLATTEN_ALL) || r->depth > DEPTH_SOFT;
}

int rod_vol_flatten(struct rod_store *s, const char *name, unsigned flags,
		    int (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	struct rng_ent *cand = NULL;
	size_t ncand = 0;
	uint64_t lin = 0, total = 0, done = 0, maxep = 0;
	struct fl_step st = { 0 };
	struct meta_iter *it = NULL;
	int rc = 0;

	if (!s || !name)
		return -EINVAL;
	pthread_mutex_lock(&flatten_lock);
	pthread_rwlock_rdlock(&s->state);
	{
		struct vol_rec *r = vol_find_name(s, name);
		struct lineage *l = r ? media_find(&s->media, r->lineage) : NULL;

		if (!l) {
			rc = -ENOENT;
		} else {
			lin = l->id;
			cand = malloc((l->nrng ? l->nrng : 1) * sizeof(*cand));
			if (!cand)
				rc = -ENOMEM;
			for (size_t j = 0; cand && j < l->nrng; j++) {
				if (!is_candidate(&l->rng[j], flags))
					continue;
				cand[ncand++] = l->rng[j];
				total += (l->rng[j].end - l->rng[j].start) * ROD_GRAIN;
				maxep = ROD_MAX(maxep, l->rng[j].epoch);
			}
		}
	}
	pthread_rwlock_unlock(&s->state);
	if (rc || !ncand)
		goto out;
	st.lin = lin;
	st.put = malloc(FL_BATCH * sizeof(*st.put));
	it = meta_iter_new(s->meta, CF_MAP);
	if (!st.put || !it) {
		rc = -ENOMEM;
		goto out;
	}
	{
		struct bump_arg b = { lin, maxep };
		struct citem ci = { .kind = CI_OP, .durable = true, .build = bump_build, .arg = &b };

		rc = commit_run(s, &ci);
		if (rc)
			goto out;
	}
	if (progress && progress(arg, 0, total)) {
		rc = -ECANCELED;
		goto out;
	}
	for (size_t c = 0; c < ncand && !rc; c++) {
		const struct rng_ent *g = &cand[c];
		uint64_t x = g->start;

		st.seq = g->seq;
		st.epoch = g->epoch;
		while (x < g->end && !rc) {
			uint64_t x0 = x;

			st.nput = st.npiece = 0;
			st.remove = false;
			st.gc_gen = gc_gen_even(s);
			meta_iter_free(it);
			it = meta_iter_new(s->meta, CF_MAP); /* sees every step applied so far */
			if (!it) {
				rc = -ENOMEM;
				break;
			}
			rc = fill_step(s, it, g, &st, &x);
			if (!rc && (st.nput || st.npiece))
				rc = run_step(s, &st);
			if (rc == -EAGAIN) {
				x = x0; /* a GC pass began: resolve this batch again */
				rc = 0;
				continue;
			}
			done += (x - x0) * ROD_GRAIN;
			if (!rc && progress && progress(arg, done, total))
				rc = -ECANCELED;
		}
		if (!rc) {
			st.nput = st.npiece = 0;
			st.remove = true;
			rc = run_step(s, &st);
		}
	}
	if (!rc && progress)
		progress(arg, total, total);
out:
	meta_iter_free(it);
	free(st.put);
	free(cand);
	pthread_mutex_unlock(&flatten_lock);
	if (rc && rc != -ENOENT && rc != -ECANCELED)
		rod_warn("store: flatten of %s failed: %s", name, strerror(-rc));
	return rc;
}

int rod_vol_depth(struct rod_store *s, const char *name, uint32_t *depth)
{
	struct vol_rec *r;
	struct lineage *l;
	int rc = -ENOENT;

	if (!s || !name || !depth)
		return -EINVAL;
	pthread_rwlock_rdlock(&s->state);
	r = vol_find_name(s, name);
	l = r ? media_find(&s->media, r->lineage) : NULL;
	if (l) {
		*depth = lin_max_depth(l);
		rc = 0;
	}
	pthread_rwlock_unlock(&s->state);
	return rc;
}

bool rod_vol_needs_flatten(struct rod_store *s, const char *name)
{
	uint32_t d = 0;

	return rod_vol_depth(s, name, &d) == 0 && d > DEPTH_SOFT;
}

int rod_store_flatten_list(struct rod_store *s, char ***names, size_t *n)
{
	char **out;
	size_t k = 0;
	int rc = 0;

	if (!s || !names || !n)
		return -EINVAL;
	pthread_rwlock_rdlock(&s->state);
	out = calloc(s->nvols ? s->nvols : 1, sizeof(*out));
	for (size_t i = 0; out && i < s->nvols; i++) {
		struct vol_rec *r = s->vols[i];
		struct lineage *l;

		if (r->is_snapshot || r->destroyed)
			continue;
		l = media_find(&s->media, r->lineage);
		if (!l || lin_max_depth(l) <= DEPTH_SOFT)
			continue;
		if (!(out[k] = strdup(r->name))) {
			rc = -ENOMEM;
			break;
		}
		k++;
	}
	pthread_rwlock_unlock(&s->state);
	if (!out)
		return -ENOMEM;
	if (rc) {
		for (size_t i = 0; i < k; i++)
			free(out[i]);
		free(out);
		return rc;
	}
	*names = out;
	*n = k;
	return 0;
}
