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
	uint64_t lba, epoch;
	struct map_val v;
};

struct fl_piece {
	uint64_t start, end, epoch, tlin;
};

struct u64v {
	uint64_t *v;
	size_t n, cap;
};

static int u64v_push(struct u64v *a, uint64_t x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		uint64_t *v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = x;
	return 0;
}

/* One commit item: map entries and range entries standing in for parts of some entries
 * (need: those must still exist), and the removal of entries whose every grain was
 * covered by earlier items (rm). */
struct fl_step {
	uint64_t lin;
	uint64_t gc_gen;
	struct fl_put *put;
	size_t nput;
	struct fl_piece piece[FL_PIECES];
	size_t npiece;
	struct u64v need, rm;
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

	if (!l)
		return -ENOENT;
	for (size_t i = 0; i < st->need.n; i++)
		if (!lin_rng_by_seq(l, st->need.v[i]))
			return -ENOENT;
	for (size_t i = 0; i < st->rm.n; i++)
		if (!lin_rng_by_seq(l, st->rm.v[i]))
			return -ENOENT;
	/* The chunks were resolved under gc_gen: a GC pass since may have deleted one
	 * (their other references may be gone). Resolve again. */
	if (st->nput && gc_gen_now(s) != st->gc_gen)
		return -EAGAIN;
	for (size_t i = 0; i < st->nput; i++) {
		uint8_t k[MAP_KEY_LEN], v[MAP_VAL_LEN];

		map_key(k, st->lin, st->put[i].lba, st->put[i].epoch);
		map_val_encode(&st->put[i].v, v);
		mutbuf_put(mb, CF_MAP, k, sizeof(k), v, sizeof(v));
	}
	for (size_t i = 0; i < st->npiece; i++) {
		rc = lin_rng_add_at(l, st->piece[i].start, st->piece[i].end, st->piece[i].epoch,
				    st->piece[i].tlin, mb);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < st->rm.n; i++)
		lin_rng_remove(l, st->rm.v[i], mb);
	/* Readers holding an iterator from before our map entries were applied must renew it
	 * before they can miss an entry dropped here. */
	if (st->rm.n)
		meta_iter_gen_bump(s->meta);
	return 0;
}

static int run_step(struct rod_store *s, struct fl_step *st)
{
	struct citem ci = { .kind = CI_OP, .durable = true, .build = step_build, .arg = st };

	return commit_run(s, &ci);
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

static void add_piece(struct fl_step *st, uint64_t a, uint64_t b, uint64_t epoch, uint64_t tlin)
{
	struct fl_piece *p = st->npiece ? &st->piece[st->npiece - 1] : NULL;

	if (p && p->end == a && p->tlin == tlin && p->epoch == epoch) {
		p->end = b;
		return;
	}
	st->piece[st->npiece++] = (struct fl_piece){ a, b, epoch, tlin };
}

/* Entries of the same epoch as g with a higher sequence (they win over g where they
 * cover it), overlapping [x, g->end), sorted by start (as l->rng is). */
struct hide {
	uint64_t *start, *end;
	size_t n, cap, p;
};

static int hide_collect(struct rod_store *s, uint64_t lin, const struct rng_ent *g, uint64_t x,
			struct hide *h)
{
	struct lineage *l;
	int rc = 0;

	h->n = h->p = 0;
	pthread_rwlock_rdlock(&s->state);
	l = media_find(&s->media, lin);
	if (!l || !lin_rng_by_seq(l, g->seq))
		rc = -ENOENT;
	for (size_t j = 0; !rc && j < l->nrng; j++) {
		const struct rng_ent *r = &l->rng[j];

		if (r->epoch != g->epoch || r->seq <= g->seq || r->end <= x || r->start >= g->end)
			continue;
		if (h->n == h->cap) {
			size_t cap = h->cap ? 2 * h->cap : 64;
			uint64_t *a = realloc(h->start, cap * sizeof(*a)), *b;

			if (!a) {
				rc = -ENOMEM;
				break;
			}
			h->start = a;
			b = realloc(h->end, cap * sizeof(*b));
			if (!b) {
				rc = -ENOMEM;
				break;
			}
			h->end = b;
			h->cap = cap;
		}
		h->start[h->n] = r->start;
		h->end[h->n++] = r->end;
	}
	pthread_rwlock_unlock(&s->state);
	return rc;
}

/* End of the stretch from x hidden by h (x when none); *next: the lowest start above it.
 * x only grows between calls. */
static uint64_t hidden_until(struct hide *h, uint64_t x, uint64_t *next)
{
	uint64_t hu = x;
	size_t k;

	while (h->p < h->n && h->end[h->p] <= x)
		h->p++;
	for (k = h->p; k < h->n && h->start[k] <= hu; k++)
		if (h->end[k] > hu)
			hu = h->end[k];
	*next = k < h->n ? h->start[k] : UINT64_MAX;
	return hu;
}

/* Fill st with grains of g from *x on, until g ends or st is full; advances *x. The state
 * lock is taken per grain or run, as reads do, so the commit thread is never held up. */
static int fill_step(struct rod_store *s, struct meta_iter *it, const struct rng_ent *g,
		     struct fl_step *st, struct hide *h, uint64_t *x)
{
	int rc = hide_collect(s, st->lin, g, *x, h);

	while (!rc && *x < g->end && st->nput < FL_BATCH && st->npiece < FL_PIECES) {
		uint64_t next, hu = hidden_until(h, *x, &next), lim;
		struct resolved r;

		if (hu > *x) {
			*x = ROD_MIN(hu, g->end);
			continue;
		}
		lim = ROD_MIN(g->end, next);
		rc = store_resolve(s, it, g->tlin, g->tepoch, (uint64_t)((int64_t)*x + g->delta),
				   lim - *x, &r);
		if (rc)
			break;
		if (!r.run)
			r.run = 1;
		if (r.kind == RES_CHUNK) {
			if (!block_at(it, st->lin, *x, g->epoch))
				st->put[st->nput++] = (struct fl_put){ *x, g->epoch, r.v };
			(*x)++;
			continue;
		}
		/* A run of zeros or deallocated space: extend it while the answer stays the
		 * same (resolution stops a run at every older block entry it looks past). */
		uint64_t b = *x + r.run;
		int kind = r.kind;

		while (!rc && b < lim && b - *x < (1ull << 30)) {
			struct resolved r2;

			rc = store_resolve(s, it, g->tlin, g->tepoch, (uint64_t)((int64_t)b + g->delta),
					   lim - b, &r2);
			if (rc || r2.kind != kind)
				break;
			b += r2.run ? r2.run : 1;
		}
		if (rc)
			break;
		if (b - *x >= FL_RANGE_MIN) {
			add_piece(st, *x, b, g->epoch, kind == RES_ZERO ? LIN_ZERO : LIN_UNMAP);
			*x = b;
			continue;
		}
		uint64_t n = ROD_MIN(b - *x, FL_BATCH - st->nput);

		for (uint64_t i = 0; i < n; i++) {
			if (block_at(it, st->lin, *x + i, g->epoch))
				continue;
			st->put[st->nput++] = (struct fl_put){
				*x + i, g->epoch, { .chunk = kind == RES_ZERO ? CHUNK_ZERO : CHUNK_UNMAP } };
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
	while (l->cur <= b->max_epoch)
		lin_bump(l, mb);
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
	size_t ncand = 0, c = 0;
	uint64_t lin = 0, total = 0, done = 0, maxep = 0, x = 0;
	struct fl_step st = { 0 };
	struct u64v done_rm = { 0 };
	struct hide h = { 0 };
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
	if (!st.put) {
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
	x = cand[0].start;
	/* Each step: grains of one or more entries, and the removal of the entries finished
	 * by earlier steps (whose map entries are applied by then). */
	while (!rc && (c < ncand || st.rm.n)) {
		size_t c0 = c, rm0 = st.rm.n;
		uint64_t x0 = x, d0 = done;

		st.nput = st.npiece = st.need.n = 0;
		st.gc_gen = gc_gen_even(s);
		meta_iter_free(it);
		it = meta_iter_new(s->meta, CF_MAP); /* sees every step applied so far */
		if (!it) {
			rc = -ENOMEM;
			break;
		}
		done_rm.n = 0;
		while (!rc && c < ncand && st.nput < FL_BATCH && st.npiece < FL_PIECES) {
			const struct rng_ent *g = &cand[c];
			uint64_t xs = x;

			rc = u64v_push(&st.need, g->seq);
			if (!rc)
				rc = fill_step(s, it, g, &st, &h, &x);
			done += (x - xs) * ROD_GRAIN;
			if (!rc && x >= g->end) {
				rc = u64v_push(&done_rm, g->seq);
				if (++c < ncand)
					x = cand[c].start;
			}
		}
		if (!rc)
			rc = run_step(s, &st);
		if (rc == -EAGAIN) {
			/* a GC pass began: resolve these grains again */
			c = c0;
			x = x0;
			done = d0;
			st.rm.n = rm0;
			rc = 0;
			continue;
		}
		if (rc)
			break;
		/* Entries finished in this step go in the next one. */
		st.rm.n = 0;
		for (size_t i = 0; !rc && i < done_rm.n; i++)
			rc = u64v_push(&st.rm, done_rm.v[i]);
		if (!rc && progress && progress(arg, done, total))
			rc = -ECANCELED;
	}
	if (!rc && progress)
		progress(arg, total, total);
out:
	meta_iter_free(it);
	free(st.put);
	free(st.need.v);
	free(st.rm.v);
	free(done_rm.v);
	free(h.start);
	free(h.end);
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
