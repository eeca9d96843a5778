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

struct acct {
	uint64_t physical, shared, snapshots;
};

static void acct_fn(void *arg, uint64_t lin, uint64_t lba, uint64_t epoch,
		    const struct map_val *v, unsigned n, bool cur)
{
	struct acct *a = arg;

	(void)lin; (void)lba; (void)epoch;
	if (!n || v->chunk <= CHUNK_UNMAP)
		return;
	a->physical += v->len;
	if (n > 1)
		a->shared += v->len;
	if (!cur)
		a->snapshots += v->len;
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

		pthread_rwlock_rdlock(&s->state);
		rc = medium_resolve(&s->media, it, lin, epoch, g, gend - g, &r);
		pthread_rwlock_unlock(&s->state);
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

int rod_store_space(struct rod_store *s, struct rod_space *out)
{
	struct reader_set rs;
	struct acct a = { 0 };
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
	readers_free(&rs);
	out->physical = a.physical;
	out->shared = a.shared;
	out->snapshots = a.snapshots;
	fill_common(s, out);
	return rc;
}

int rod_vol_space(struct rod_store *s, const char *name, struct rod_space *out)
{
	struct reader_set rs;
	struct acct a = { 0 };
	struct rod_vol_info info;
	uint64_t lin, epoch;
	int rc = rod_vol_info_get(s, name, &info);

	if (rc)
		return rc;
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
	/* Chunks stored in this volume's own lineage. */
	readers_collect(s, &rs);
	rc = mark_scan(s, &rs, lin, acct_fn, &a);
	readers_free(&rs);
	out->physical = a.physical;
	out->shared = a.shared;
	out->snapshots = info.is_snapshot ? 0 : a.snapshots;
	fill_common(s, out);
	return rc;
}
