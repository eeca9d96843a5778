/* Array scrub: read and check every stored chunk that a volume, a snapshot or a
 * destroyed (recoverable) volume references: CRC32C of the stored bytes, then decrypt
 * and decompress, exactly as a read would. Each damaged chunk is reported with every
 * (view, LBA) referencing it, so an operator knows what to restore.
 *
 * Cost: every grain of every view is resolved (as space accounting does); each distinct
 * chunk is read and checked once (a set of checked chunk ids, 9 bytes per chunk). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/store.h"
#include "rod/util.h"
#include "medium.h"
#include "meta.h"
#include "store_int.h"


/* Open-addressing set: chunk id -> checked result (0 good, else -errno). */
struct cset {
	uint64_t *id;
	int8_t *res;
	size_t cap, n;
};

static size_t cset_slot(const struct cset *c, uint64_t id)
{
	size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & (c->cap - 1);

	while (c->id[i] && c->id[i] != id)
		i = (i + 1) & (c->cap - 1);
	return i;
}

static int cset_put(struct cset *c, uint64_t id, int res)
{
	if ((c->n + 1) * 2 > c->cap) {
		struct cset nc = { .cap = c->cap ? c->cap * 2 : 4096 };

		nc.id = calloc(nc.cap, sizeof(*nc.id));
		nc.res = calloc(nc.cap, sizeof(*nc.res));
		if (!nc.id || !nc.res) {
			free(nc.id);
			free(nc.res);
			return -ENOMEM;
		}
		for (size_t i = 0; i < c->cap; i++)
			if (c->id[i]) {
				size_t j = cset_slot(&nc, c->id[i]);

				nc.id[j] = c->id[i];
				nc.res[j] = c->res[i];
				nc.n++;
			}
		free(c->id);
		free(c->res);
		*c = nc;
	}
	size_t i = cset_slot(c, id);

	if (!c->id[i])
		c->n++;
	c->id[i] = id;
	c->res[i] = (int8_t)(res < -127 ? -EIO : res);
	return 0;
}

static bool cset_get(const struct cset *c, uint64_t id, int *res)
{
	if (!c->cap)
		return false;
	size_t i = cset_slot(c, id);

	if (!c->id[i])
		return false;
	*res = c->res[i];
	return true;
}

struct sview {
	char name[ROD_SNAP_NAME_MAX];
	bool is_snapshot, destroyed;
	uint32_t block_size;
	uint64_t lin, epoch, size;
};

int rod_store_scrub(struct rod_store *s, int (*progress)(void *arg, uint64_t done, uint64_t total),
		    int (*damaged)(void *arg, const struct rod_scrub_damage *d), void *arg,
		    struct rod_scrub_stats *st)
{
	struct sview *views;
	struct cset set = { 0 };
	size_t nv = 0;
	uint64_t total = 0, done = 0;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	pthread_rwlock_rdlock(&s->state);
	views = calloc(s->nvols + 1, sizeof(*views));
	for (size_t i = 0; views && i < s->nvols; i++) {
		const struct vol_rec *r = s->vols[i];
		struct sview *v = &views[nv++];

		snprintf(v->name, sizeof(v->name), "%s", r->name);
		v->is_snapshot = r->is_snapshot;
		v->destroyed = r->destroyed;
		v->block_size = r->block_size ? r->block_size : ROD_GRAIN;
		v->lin = r->lineage;
		v->epoch = r->is_snapshot ? r->epoch : EPOCH_MAX;
		v->size = r->size;
		total += (r->size + ROD_GRAIN - 1) / ROD_GRAIN;
	}
	pthread_rwlock_unlock(&s->state);
	if (!views)
		return -ENOMEM;
	struct meta_iter *it = meta_iter_new(s->meta, CF_MAP);

	if (!it) {
		free(views);
		return -ENOMEM;
	}
	for (size_t vi = 0; vi < nv && !rc; vi++) {
		const struct sview *v = &views[vi];
		uint64_t g = 0, gend = (v->size + ROD_GRAIN - 1) / ROD_GRAIN;

		st->views++;
		while (g < gend && !rc) {
			struct resolved r;

			rc = store_resolve(s, it, v->lin, v->epoch, g, gend - g, &r);
			if (rc)
				break;
			if (!r.run)
				r.run = 1;
			if (r.kind == RES_CHUNK) {
				int res;

				st->grains++;
				if (!cset_get(&set, r.v.chunk, &res)) {
					res = store_chunk_check(s, &r.v);
					st->chunks_checked++;
					if (res) {
						/* Moved or freed by GC meanwhile? Then the grain
						 * resolves elsewhere now: check that instead. */
						struct resolved r2;
						int rc2;

						rc2 = store_resolve(s, it, v->lin, v->epoch, g, 1, &r2);
						if (!rc2 && (r2.kind != RES_CHUNK || r2.v.chunk != r.v.chunk)) {
							st->chunks_checked--;
							continue;   /* same g again */
						}
						st->chunks_damaged++;
						rod_err("scrub: chunk %llx is damaged (%s), referenced by %s at grain %llu",
							(unsigned long long)r.v.chunk,
							res == -EBADMSG ? "checksum mismatch" : strerror(-res), v->name,
							(unsigned long long)g);
					}
					if ((rc = cset_put(&set, r.v.chunk, res)))
						break;
				}
				if (res) {
					uint32_t per = ROD_GRAIN / v->block_size;
					struct rod_scrub_damage d = {
						.chunk_id = r.v.chunk, .error = res, .view = v->name,
						.is_snapshot = v->is_snapshot, .destroyed = v->destroyed,
						.block_size = v->block_size, .lba = g * per, .blocks = per,
					};

					st->refs_damaged++;
					if (damaged && (rc = damaged(arg, &d)))
						break;
				}
			}
			g += r.run;
			done += r.run;
			if (progress && (rc = progress(arg, done, total)))
				break;
		}
	}
	meta_iter_free(it);
	free(views);
	free(set.id);
	free(set.res);
	return rc;
}
