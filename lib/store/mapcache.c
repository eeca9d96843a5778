/* Map cache (mapcache.h). */
#include "mapcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meta.h"

#define MC_LOCKS 1024u

struct mc_slot {
	uint64_t lin, lba;     /* lin 0: empty */
	uint64_t epoch;
	uint64_t born;         /* the filling iterator's meta_iter_born */
	uint64_t inval;        /* last tick at which a key of this slot was invalidated */
	struct map_val v;
};

/* A place of a moved chunk; v.chunk 0: empty (ids 0 and 1 are not chunks). */
struct mc_chunk {
	uint64_t seg, off;
	struct map_val v;
};

struct mapcache {
	size_t mask;
	struct mc_slot *slot;
	size_t cmask;                  /* chunk places: a quarter as many slots */
	struct mc_chunk *chunk;
	pthread_spinlock_t lock[MC_LOCKS];
	atomic_uint_fast64_t all;      /* tick of the last mc_invalidate_all */
	unsigned test_delay_us;        /* ROD_TEST_MC_FILL_DELAY_US: fills wait (race tests) */
};

static size_t slot_of(const struct mapcache *mc, uint64_t lin, uint64_t lba)
{
	uint64_t h = (lin * 0x9e3779b97f4a7c15ull) ^ (lba * 0xc2b2ae3d27d4eb4full);

	h ^= h >> 29;
	return (size_t)h & mc->mask;
}

/* The slot of (lin, lba), locked (its stripe). */
static struct mc_slot *slot_lock(struct mapcache *mc, uint64_t lin, uint64_t lba)
{
	size_t i = slot_of(mc, lin, lba);

	pthread_spin_lock(&mc->lock[i % MC_LOCKS]);
	return &mc->slot[i];
}

static void slot_unlock(struct mapcache *mc, struct mc_slot *sl)
{
	pthread_spin_unlock(&mc->lock[(size_t)(sl - mc->slot) % MC_LOCKS]);
}

static void slot_put(struct mc_slot *sl, uint64_t lin, uint64_t lba, uint64_t epoch,
		     const struct map_val *v, uint64_t born)
{
	sl->lin = lin;
	sl->lba = lba;
	sl->epoch = epoch;
	sl->born = born;
	sl->v = *v;
}

struct mapcache *mc_new(size_t nslots)
{
	struct mapcache *mc;
	size_t n = 1;

	if (!nslots)
		return NULL;
	while (n * 2 <= nslots)
		n *= 2;
	mc = calloc(1, sizeof(*mc));
	if (!mc)
		return NULL;
	mc->slot = calloc(n, sizeof(*mc->slot));
	mc->chunk = calloc(n > 4 ? n / 4 : 1, sizeof(*mc->chunk));
	if (!mc->slot || !mc->chunk) {
		free(mc->slot);
		free(mc->chunk);
		free(mc);
		return NULL;
	}
	mc->mask = n - 1;
	mc->cmask = (n > 4 ? n / 4 : 1) - 1;
	if (getenv("ROD_TEST_MC_FILL_DELAY_US"))
		mc->test_delay_us = (unsigned)strtoul(getenv("ROD_TEST_MC_FILL_DELAY_US"), NULL, 10);
	for (unsigned i = 0; i < MC_LOCKS; i++)
		pthread_spin_init(&mc->lock[i], PTHREAD_PROCESS_PRIVATE);
	return mc;
}

void mc_free(struct mapcache *mc)
{
	if (!mc)
		return;
	for (unsigned i = 0; i < MC_LOCKS; i++)
		pthread_spin_destroy(&mc->lock[i]);
	free(mc->slot);
	free(mc->chunk);
	free(mc);
}

bool mc_get(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t *epoch, struct map_val *v)
{
	uint64_t all = atomic_load(&mc->all);
	struct mc_slot *sl = slot_lock(mc, lin, lba);
	bool hit = sl->lin == lin && sl->lba == lba && lin && sl->born >= all;

	if (hit) {
		*epoch = sl->epoch;
		*v = sl->v;
	}
	slot_unlock(mc, sl);
	return hit;
}

void mc_fill(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t epoch,
	     const struct map_val *v, uint64_t born)
{
	struct mc_slot *sl;

	if (mc->test_delay_us)
		usleep(mc->test_delay_us);
	/* An invalidation after the iterator's snapshot may have been missed by it. */
	if (atomic_load(&mc->all) > born)
		return;
	sl = slot_lock(mc, lin, lba);
	if (sl->inval <= born)
		slot_put(sl, lin, lba, epoch, v, born);
	slot_unlock(mc, sl);
}

void mc_set(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t epoch,
	    const struct map_val *v, uint64_t c)
{
	struct mc_slot *sl = slot_lock(mc, lin, lba);

	sl->inval = c;
	slot_put(sl, lin, lba, epoch, v, c);
	slot_unlock(mc, sl);
}

void mc_invalidate(struct mapcache *mc, uint64_t lin, uint64_t lba, uint64_t c)
{
	struct mc_slot *sl = slot_lock(mc, lin, lba);

	sl->inval = c;
	if (sl->lin == lin && sl->lba == lba)
		sl->lin = 0;
	slot_unlock(mc, sl);
}

void mc_invalidate_all(struct mapcache *mc, uint64_t c)
{
	atomic_store(&mc->all, c);
}

void mc_invalidate_mut(struct mapcache *mc, const uint8_t *mut, size_t len, uint64_t c)
{
	size_t pos = 0;
	struct mut m;

	while (mutbuf_next(mut, len, &pos, &m)) {
		uint64_t lin, lba, ep;

		if (m.cf != CF_MAP)
			continue;
		if (m.op == MUT_DELRANGE || m.kl != MAP_KEY_LEN) {
			mc_invalidate_all(mc, c);
			continue;
		}
		map_key_decode(m.k, &lin, &lba, &ep);
		mc_invalidate(mc, lin, lba, c);
	}
}

static struct mc_chunk *chunk_lock(struct mapcache *mc, uint64_t chunk)
{
	size_t i = (size_t)((chunk * 0x9e3779b97f4a7c15ull) >> 17) & mc->cmask;

	pthread_spin_lock(&mc->lock[i % MC_LOCKS]);
	return &mc->chunk[i];
}

static void chunk_unlock(struct mapcache *mc, struct mc_chunk *c)
{
	pthread_spin_unlock(&mc->lock[(size_t)(c - mc->chunk) % MC_LOCKS]);
}

bool mc_chunk_get(struct mapcache *mc, uint64_t chunk, uint64_t *seg, uint64_t *off,
		  struct map_val *v)
{
	struct mc_chunk *c = chunk_lock(mc, chunk);
	bool hit = c->v.chunk == chunk && chunk > CHUNK_UNMAP;

	if (hit) {
		*seg = c->seg;
		*off = c->off;
		*v = c->v;
	}
	chunk_unlock(mc, c);
	return hit;
}

void mc_chunk_put(struct mapcache *mc, uint64_t seg, uint64_t off, const struct map_val *v)
{
	struct mc_chunk *c = chunk_lock(mc, v->chunk);

	c->seg = seg;
	c->off = off;
	c->v = *v;
	chunk_unlock(mc, c);
}
