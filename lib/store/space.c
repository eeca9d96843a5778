/* Space accounting and the full-disk reserve. */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "gc.h"
#include "rod/util.h"

uint64_t space_used(struct rod_store *s)
{
	return seglog_used(s->log);
}

bool space_room(struct rod_store *s, uint64_t bytes)
{
	uint64_t used = space_used(s);

	if (space_low(s) || used + s->reserve + bytes >= s->capacity)
		return false;
	return atomic_load(&s->fs_free) >= s->reserve + bytes;
}

bool space_low(struct rod_store *s)
{
	uint64_t used = space_used(s), now = rod_now_ns();

	if (used + s->reserve >= s->capacity)
		return true;
	/* The file system may also fill up with other files: look at it every 100 ms. */
	if (now - atomic_load(&s->fs_free_at) > 100000000ull) {
		struct statvfs v;

		if (!statvfs(s->dir, &v))
			atomic_store(&s->fs_free, (uint64_t)v.f_bavail * v.f_frsize);
		atomic_store(&s->fs_free_at, now);
	}
	return atomic_load(&s->fs_free) < s->reserve;
}

bool rod_store_over_soft_threshold(struct rod_store *s)
{
	uint64_t pct = s->opts.soft_threshold_pct ? s->opts.soft_threshold_pct : 80;

	return s->capacity && space_used(s) * 100 >= s->capacity * pct;
}

/* With dedupe, several map entries may reference one chunk: the scan collects the
 * references, then counts each chunk once (physical). Array: shared when more than one
 * reader sees it in total, unique when the map entries of one lineage alone (a volume
 * and its snapshots) reference it. Volume (lin != 0): only the chunks its lineage
 * references count; shared when another lineage references them too (dedupe across
 * volumes), else unique. Snapshot space: no current view sees it. */
struct acct_ref {
	uint64_t chunk;
	uint64_t lin;            /* lineage of the map entry */
	uint32_t len;
	uint32_t n;              /* readers of this reference */
	bool cur;
};
struct acct {
	struct rod_store *s;
	uint64_t lin;            /* 0: the array; else the volume's lineage */
	bool foreign;            /* foreign_scan running */
	uint64_t physical, unique, shared, snapshots;
	struct acct_ref *ref;
	size_t nref, cap;
	bool oom;
};

static void acct_fn(void *arg, uint64_t lin, uint64_t lba, uint64_t epoch,
		    const struct map_val *v, unsigned n, bool cur)
{
	struct acct *a = arg;

	(void)lba; (void)epoch;
	if (!n || v->chunk <= CHUNK_UNMAP || a->oom)
		return;
	if (a->nref == a->cap) {
		size_t nc = a->cap ? 2 * a->cap : 1024;
		struct acct_ref *r = realloc(a->ref, nc * sizeof(*r));

		if (!r) {
			a->oom = true;
			return;
		}
		a->ref = r;
		a->cap = nc;
	}
	/* the foreign pass (foreign_scan) tags what other lineages read: lineage 0 */
	a->ref[a->nref++] = (struct acct_ref){ v->chunk, a->foreign ? 0 : lin, v->len, n, cur };
}

static int ref_cmp(const void *x, const void *y)
{
	const struct acct_ref *a = x, *b = y;

	return a->chunk < b->chunk ? -1 : a->chunk > b->chunk;
}

static int acct_finish(struct acct *a)
{
	if (a->oom) {
		free(a->ref);
		return -ENOMEM;
	}
	if (a->nref) /* a->ref is NULL when nothing is referenced: qsort needs a pointer */
		qsort(a->ref, a->nref, sizeof(*a->ref), ref_cmp);
	for (size_t i = 0, j; i < a->nref; i = j) {
		uint64_t n = 0;
		bool cur = false, own = !a->lin, other = false;

		for (j = i; j < a->nref && a->ref[j].chunk == a->ref[i].chunk; j++) {
			if (a->lin && a->ref[j].lin != a->lin) {
				other = true;
				continue;
			}
			if (!a->lin && a->ref[j].lin != a->ref[i].lin)
				other = true;
			own = true;
			n += a->ref[j].n;
			cur |= a->ref[j].cur;
		}
		if (!own)
			continue;
		uint64_t len = a->ref[i].len;

		/* GC may have moved and recompressed the chunk: its size is in the chunk
		 * table then (looked up only for chunks whose home segment is gone). */
		if (a->s && !seglog_has(a->s->log, CHUNK_SEG(a->ref[i].chunk))) {
			uint8_t k[8];
			void *v;
			size_t vl;

			rod_put_be64(k, a->ref[i].chunk);
			if (!meta_get(a->s->meta, CF_CHUNK, k, 8, &v, &vl)) {
				if (vl >= 28)
					len = rod_get_be32((uint8_t *)v + 16);
				free(v);
			}
		}
		a->physical += len;
		if (!other)
			a->unique += len;
		if (a->lin ? other : n > 1)
			a->shared += len;
		if (!cur)
			a->snapshots += len;
	}
	free(a->ref);
	return 0;
}

/* Host-visible mapped bytes of a view (a walk over its extents). */
static int logical_of(struct rod_store *s, uint64_t lin, uint64_t epoch, uint64_t size,
		      uint64_t *out)
{
	struct meta_iter *it = meta_iter_new(s->meta, CF_MAP);
	uint64_t g = 0, gend = (size + ROD_GRAIN - 1) / ROD_GRAIN, sum = 0;
	int rc = 0;

	if (!it)
		return -ENOMEM;
	while (g < gend) {
		struct resolved r;

		rc = store_resolve(s, it, lin, epoch, g, gend - g, &r);
		if (rc)
			break;
		if (r.kind == RES_CHUNK)
			sum += r.run * ROD_GRAIN;
		g += r.run;
	}
	meta_iter_free(it);
	*out = sum;
	return rc;
}

static void fill_common(struct rod_store *s, struct rod_space *out)
{
	out->capacity = s->capacity;
	out->used = space_used(s);
	out->free = out->capacity > out->used ? out->capacity - out->used : 0;
	out->reduction = out->physical ? (double)out->logical / out->physical : 1.0;
	if (out->reduction < 1.0 && out->physical)
		out->reduction = 1.0;
}

/* Space figures come from scans of the map, whose cost grows with the data written. A
 * result is reused while nothing changed, and on large stores for up to 50 times what
 * computing it cost (so polling, e.g. /metrics, stays under ~2 % of a core). */
struct space_cache {
	uint64_t vol_id;          /* 0: the array */
	uint64_t gen, at_ns, cost_ns;
	struct rod_space sp;
};

static bool cache_get(struct rod_store *s, uint64_t id, struct rod_space *out)
{
	bool hit = false;
	uint64_t gen = atomic_load(&s->change_gen), now = rod_now_ns();

	pthread_mutex_lock(&s->space_lock);
	for (size_t i = 0; i < s->nspace_cache; i++) {
		struct space_cache *c = &s->space_cache[i];

		if (c->vol_id != id)
			continue;
		if (c->gen == gen || (c->cost_ns > 250000000ull && now - c->at_ns < 50 * c->cost_ns)) {
			*out = c->sp;
			hit = true;
		}
		break;
	}
	pthread_mutex_unlock(&s->space_lock);
	return hit;
}

static void cache_put(struct rod_store *s, uint64_t id, uint64_t gen, uint64_t t0,
		      const struct rod_space *sp)
{
	uint64_t now = rod_now_ns();
	struct space_cache *c = NULL;

	pthread_mutex_lock(&s->space_lock);
	for (size_t i = 0; i < s->nspace_cache && !c; i++)
		if (s->space_cache[i].vol_id == id)
			c = &s->space_cache[i];
	if (!c && s->nspace_cache < 4096) {
		struct space_cache *n = realloc(s->space_cache, (s->nspace_cache + 1) * sizeof(*n));

		if (n) {
			s->space_cache = n;
			c = &n[s->nspace_cache++];
		}
	}
	if (c)
		*c = (struct space_cache){ id, gen, now, now - t0, *sp };
	pthread_mutex_unlock(&s->space_lock);
}

static int store_space_scan(struct rod_store *s, struct rod_space *out);
static int foreign_scan(struct rod_store *s, struct reader_set *rs, uint64_t lin,
			struct acct *a);

int rod_store_space(struct rod_store *s, struct rod_space *out)
{
	uint64_t gen = atomic_load(&s->change_gen), t0 = rod_now_ns();
	int rc;

	if (cache_get(s, 0, out)) {
		fill_common(s, out);
		return 0;
	}
	rc = store_space_scan(s, out);
	if (!rc)
		cache_put(s, 0, gen, t0, out);
	return rc;
}

static int store_space_scan(struct rod_store *s, struct rod_space *out)
{
	struct reader_set rs;
	struct acct a = { .s = s };
	struct { uint64_t lin, size; } *vols;
	size_t nv = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->state);
	vols = calloc(s->nvols + 1, sizeof(*vols));
	for (size_t i = 0; vols && i < s->nvols; i++) {
		struct vol_rec *r = s->vols[i];

		if (r->is_snapshot || r->destroyed)
			continue;
		out->provisioned += r->size;
		vols[nv].lin = r->lineage;
		vols[nv].size = r->size;
		nv++;
	}
	pthread_rwlock_unlock(&s->state);
	if (!vols)
		return -ENOMEM;
	for (size_t i = 0; i < nv; i++) {
		uint64_t l = 0;

		rc = logical_of(s, vols[i].lin, EPOCH_MAX, vols[i].size, &l);
		if (rc) {
			free(vols);
			return rc;
		}
		out->logical += l;
	}
	free(vols);
	readers_collect(s, &rs);
	rc = mark_scan(s, &rs, 0, acct_fn, &a);
	/* what other lineages read through range entries is not unique either */
	for (size_t i = 0; !rc && i < rs.n; i++)
		rc = foreign_scan(s, &rs, rs.r[i].lin, &a);
	readers_free(&rs);
	if (acct_finish(&a) && !rc)
		rc = -ENOMEM;
	out->physical = a.physical;
	out->unique = a.unique;
	out->shared = a.shared;
	out->snapshots = a.snapshots;
	fill_common(s, out);
	return rc;
}

static int vol_space_scan(struct rod_store *s, const struct rod_vol_info *infop,
			  struct rod_space *out);

/* The entries of lineage lin that other lineages read through range entries (a clone,
 * an XCOPY/ODX copy from this volume): a scan of lin with only those readers, whose
 * chunks are then shared too. (A range reader sees the whole lineage at its epoch, as
 * for GC, so a partial copy makes all the data visible at that epoch shared.) */
static int foreign_scan(struct rod_store *s, struct reader_set *rs, uint64_t lin,
			struct acct *a)
{
	struct readers *r = readers_find(rs, lin);
	uint64_t *f, *own;
	size_t nf = 0, nown;
	int rc;

	if (!r || !r->n)
		return 0;
	f = malloc(r->n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_rwlock_rdlock(&s->state);
	for (size_t i = 0; i < s->media.n; i++) {
		const struct lineage *l = s->media.lins[i];

		if (l->id == lin || !readers_find(rs, l->id))
			continue;
		for (size_t j = 0; j < l->nrng; j++) {
			bool have = false;

			if (l->rng[j].tlin != lin)
				continue;
			for (size_t k = 0; k < nf && !have; k++)
				have = f[k] == l->rng[j].tepoch;
			for (size_t k = 0; k < r->n && !have && nf < r->n; k++)
				if (r->ep[k] == l->rng[j].tepoch)
					f[nf++] = l->rng[j].tepoch;
		}
	}
	pthread_rwlock_unlock(&s->state);
	if (!nf) {
		free(f);
		return 0;
	}
	for (size_t i = 1; i < nf; i++) /* sorted, as readers_collect leaves them */
		for (size_t j = i; j > 0 && f[j] < f[j - 1]; j--) {
			uint64_t x = f[j];
			f[j] = f[j - 1];
			f[j - 1] = x;
		}
	own = r->ep;
	nown = r->n;
	r->ep = f;
	r->n = nf;
	a->foreign = true;
	rc = mark_scan(s, rs, lin, acct_fn, a);
	a->foreign = false;
	r->ep = own;
	r->n = nown;
	free(f);
	return rc;
}

int rod_vol_space(struct rod_store *s, const char *name, struct rod_space *out)
{
	struct rod_vol_info info;
	uint64_t gen = atomic_load(&s->change_gen), t0 = rod_now_ns();
	int rc = rod_vol_info_get(s, name, &info);

	if (rc)
		return rc;
	if (cache_get(s, info.id, out)) {
		fill_common(s, out);
		return 0;
	}
	rc = vol_space_scan(s, &info, out);
	if (!rc)
		cache_put(s, info.id, gen, t0, out);
	return rc;
}

static int vol_space_scan(struct rod_store *s, const struct rod_vol_info *infop,
			  struct rod_space *out)
{
	struct reader_set rs;
	struct acct a = { .s = s };
	struct rod_vol_info info = *infop;
	uint64_t lin, epoch;
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->state);
	struct vol_rec *r = NULL;
	for (size_t i = 0; i < s->nvols; i++)
		if (s->vols[i]->id == info.id)
			r = s->vols[i];
	if (!r) {
		pthread_rwlock_unlock(&s->state);
		return -ENOENT;
	}
	lin = r->lineage;
	epoch = r->is_snapshot ? r->epoch : EPOCH_MAX;
	pthread_rwlock_unlock(&s->state);
	out->provisioned = info.size;
	rc = logical_of(s, lin, epoch, info.size, &out->logical);
	if (rc)
		return rc;
	/* Chunks its own lineage references; the whole map is scanned to see which of them
	 * other lineages reference too (dedupe), then what other lineages read of it. */
	a.lin = lin;
	readers_collect(s, &rs);
	rc = mark_scan(s, &rs, 0, acct_fn, &a);
	if (!rc)
		rc = foreign_scan(s, &rs, lin, &a);
	readers_free(&rs);
	if (acct_finish(&a) && !rc)
		rc = -ENOMEM;
	out->physical = a.physical;
	out->unique = a.unique;
	out->shared = a.shared;
	out->snapshots = info.is_snapshot ? 0 : a.snapshots;
	fill_common(s, out);
	return rc;
}
