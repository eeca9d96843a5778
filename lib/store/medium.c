/* Lineage/epoch mediums: range entries in RAM, resolution of a grain to a chunk. */
#include "medium.h"
#include "mapcache.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

void map_key(uint8_t *k, uint64_t lin, uint64_t lba, uint64_t epoch)
{
	rod_put_be64(k, lin);
	rod_put_be64(k + 8, lba);
	rod_put_be64(k + 16, ~epoch);  /* newest epoch first */
}

void map_key_decode(const uint8_t *k, uint64_t *lin, uint64_t *lba, uint64_t *epoch)
{
	*lin = rod_get_be64(k);
	*lba = rod_get_be64(k + 8);
	*epoch = ~rod_get_be64(k + 16);
}

void map_val_encode(const struct map_val *v, uint8_t *b)
{
	memset(b, 0, MAP_VAL_LEN);
	rod_put_be64(b, v->chunk);
	rod_put_be32(b + 8, v->off);
	rod_put_be32(b + 12, v->len);
	rod_put_be32(b + 16, v->crc);
	b[20] = v->comp;
	rod_put_be16(b + 21, v->enc_gen);
}

void map_val_decode(struct map_val *v, const uint8_t *b)
{
	memset(v, 0, sizeof(*v));
	v->chunk = rod_get_be64(b);
	v->off = rod_get_be32(b + 8);
	v->len = rod_get_be32(b + 12);
	v->crc = rod_get_be32(b + 16);
	v->comp = b[20];
	v->enc_gen = rod_get_be16(b + 21);
}

static void chg_load_marker(struct media *md, struct meta *m);
static void chg_add(struct lineage *l, uint64_t g);
static void chg_free(struct chgset *c);
static void chg_seal(struct lineage *l, struct mutbuf *mb);
static int chg_extra_add(struct lineage *l, uint64_t epoch, uint64_t start, uint64_t end);

static size_t media_index(const struct media *md, uint64_t id)
{
	size_t lo = 0, hi = md->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (md->lins[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct lineage *media_find(struct media *md, uint64_t id)
{
	size_t i = media_index(md, id);

	return i < md->n && md->lins[i]->id == id ? md->lins[i] : NULL;
}

struct lineage *media_add(struct media *md, uint64_t id)
{
	size_t i = media_index(md, id);
	struct lineage *l;

	if (i < md->n && md->lins[i]->id == id)
		return md->lins[i];
	if (md->n == md->cap) {
		size_t cap = md->cap ? md->cap * 2 : 16;
		struct lineage **nl = realloc(md->lins, cap * sizeof(*nl));

		if (!nl)
			return NULL;
		md->lins = nl;
		md->cap = cap;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->id = id;
	l->cur = 1;
	l->next_seq = 1;
	l->box_lo = UINT64_MAX;
	l->box_hi = 0;
	memmove(md->lins + i + 1, md->lins + i, (md->n - i) * sizeof(*md->lins));
	md->lins[i] = l;
	md->n++;
	return l;
}

void media_drop(struct media *md, uint64_t id)
{
	size_t i = media_index(md, id);

	if (i >= md->n || md->lins[i]->id != id)
		return;
	free(md->lins[i]->rng);
	free(md->lins[i]->tmax);
	free(md->lins[i]->tmin);
	chg_free(&md->lins[i]->chg);
	free(md->lins[i]->chg_extra);
	free(md->lins[i]);
	memmove(md->lins + i, md->lins + i + 1, (md->n - i - 1) * sizeof(*md->lins));
	md->n--;
}

void media_free(struct media *md)
{
	for (size_t i = 0; i < md->n; i++) {
		free(md->lins[i]->rng);
		free(md->lins[i]->tmax);
		free(md->lins[i]->tmin);
		chg_free(&md->lins[i]->chg);
		free(md->lins[i]->chg_extra);
		free(md->lins[i]);
	}
	free(md->lins);
	memset(md, 0, sizeof(*md));
}

/* ---- persistence ---- */

void lin_log(struct mutbuf *mb, const struct lineage *l)
{
	uint8_t k[8], v[24];

	rod_put_be64(k, l->id);
	rod_put_be64(v, l->cur);
	rod_put_be64(v + 8, l->next_seq);
	rod_put_be64(v + 16, l->last_seq);
	mutbuf_put(mb, CF_LIN, k, 8, v, 24);
}

static void rng_key(uint8_t *k, uint64_t lin, uint64_t seq)
{
	rod_put_be64(k, lin);
	rod_put_be64(k + 8, seq);
}

void rng_log(struct mutbuf *mb, uint64_t lin, const struct rng_ent *r)
{
	uint8_t k[16], v[56];

	rng_key(k, lin, r->seq);
	rod_put_be64(v, r->start);
	rod_put_be64(v + 8, r->end);
	rod_put_be64(v + 16, r->epoch);
	rod_put_be64(v + 24, r->tlin);
	rod_put_be64(v + 32, r->tepoch);
	rod_put_be64(v + 40, (uint64_t)r->delta);
	rod_put_be64(v + 48, r->depth);
	mutbuf_put(mb, CF_RNG, k, 16, v, 56);
}

static void rng_unlog(struct mutbuf *mb, uint64_t lin, uint64_t seq)
{
	uint8_t k[16];

	rng_key(k, lin, seq);
	mutbuf_del(mb, CF_RNG, k, 16);
}

static int rng_cmp(const void *a, const void *b)
{
	const struct rng_ent *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Rebuild the lookup index after a change (O(n); changes are metadata operations).
 * Only rng_insert grows it; on failure the lineage keeps its old index size and
 * rng_insert undoes the insertion. */
static int rng_reindex(struct lineage *l)
{
	size_t p = 1;

	while (p < l->nrng)
		p <<= 1;
	if (2 * p > l->tcap) {
		uint64_t *a = realloc(l->tmax, 2 * p * sizeof(*a)), *b;

		if (!a)
			return -ENOMEM;
		l->tmax = a;
		b = realloc(l->tmin, 2 * p * sizeof(*b));
		if (!b)
			return -ENOMEM;
		l->tmin = b;
		l->tcap = 2 * p;
	}
	l->tp = p;
	for (size_t i = 0; i < p; i++) {
		l->tmax[p + i] = i < l->nrng ? l->rng[i].end : 0;
		l->tmin[p + i] = i < l->nrng ? l->rng[i].epoch : UINT64_MAX;
	}
	for (size_t i = p; i-- > 1;) {
		l->tmax[i] = ROD_MAX(l->tmax[2 * i], l->tmax[2 * i + 1]);
		l->tmin[i] = ROD_MIN(l->tmin[2 * i], l->tmin[2 * i + 1]);
	}
	return 0;
}

static int rng_insert(struct lineage *l, const struct rng_ent *r)
{
	size_t lo = 0, hi = l->nrng;

	if (l->nrng == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct rng_ent *n = realloc(l->rng, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		l->rng = n;
		l->cap = cap;
	}
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (rng_cmp(&l->rng[mid], r) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(l->rng + lo + 1, l->rng + lo, (l->nrng - lo) * sizeof(*r));
	l->rng[lo] = *r;
	l->nrng++;
	if (rng_reindex(l)) {
		l->nrng--;
		memmove(l->rng + lo, l->rng + lo + 1, (l->nrng - lo) * sizeof(*r));
		return -ENOMEM;
	}
	return 0;
}

int media_load(struct media *md, struct meta *m)
{
	struct meta_iter *it = meta_iter_new(m, CF_LIN);

	if (!it)
		return -ENOMEM;
	for (meta_iter_first(it); meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = meta_iter_key(it, &kl), *v = meta_iter_val(it, &vl);
		struct lineage *l;

		if (kl == 24 && vl == 16) {
			l = media_find(md, rod_get_be64(k));
			if (l && chg_extra_add(l, rod_get_be64(k + 8), rod_get_be64(v),
					       rod_get_be64(v + 8))) {
				meta_iter_free(it);
				return -ENOMEM;
			}
			continue;
		}
		if (kl != 8 || vl != 24)
			continue;
		l = media_add(md, rod_get_be64(k));
		if (!l) {
			meta_iter_free(it);
			return -ENOMEM;
		}
		l->cur = rod_get_be64(v);
		l->next_seq = rod_get_be64(v + 8);
		l->last_seq = rod_get_be64(v + 16);
		/* What was written at cur before the restart is unknown: assume everything. */
		l->cur_used = true;
		l->box_lo = 0;
		l->box_hi = UINT64_MAX;
		l->chg_unknown = true;
	}
	meta_iter_free(it);
	chg_load_marker(md, m);
	it = meta_iter_new(m, CF_RNG);
	if (!it)
		return -ENOMEM;
	for (meta_iter_first(it); meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = meta_iter_key(it, &kl), *v = meta_iter_val(it, &vl);
		struct lineage *l;
		struct rng_ent r;

		if (kl != 16 || vl != 56)
			continue;
		l = media_find(md, rod_get_be64(k));
		if (!l)
			continue;
		r.seq = rod_get_be64(k + 8);
		r.start = rod_get_be64(v);
		r.end = rod_get_be64(v + 8);
		r.epoch = rod_get_be64(v + 16);
		r.tlin = rod_get_be64(v + 24);
		r.tepoch = rod_get_be64(v + 32);
		r.delta = (int64_t)rod_get_be64(v + 40);
		r.depth = (uint32_t)rod_get_be64(v + 48);
		if (rng_insert(l, &r)) {
			meta_iter_free(it);
			return -ENOMEM;
		}
	}
	meta_iter_free(it);
	return 0;
}

/* ---- change summaries (medium.h; rod_vol_diff in repl.c) ---- */

void lin_chg_key(uint8_t k[16], uint64_t lin, uint64_t epoch)
{
	rod_put_be64(k, lin);
	rod_put_be64(k + 8, epoch);
}

static void chg_free(struct chgset *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->pages[i]);
	free(c->pages);
	memset(c, 0, sizeof(*c));
}

static void chg_add(struct lineage *l, uint64_t g)
{
	struct chgset *c = &l->chg;
	uint64_t page = g >> 12;
	size_t lo = 0, hi = c->n;

	if (l->chg_unknown)
		return;
	if (c->last < c->n && c->pages[c->last]->page == page) {
		lo = c->last;
	} else {
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (c->pages[mid]->page < page)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == c->n || c->pages[lo]->page != page) {
			/* Pointers are moved, not the pages: inserting into 16384 pages moves at
			 * most 128 KiB. */
			struct chg_page *pg = c->n < CHG_MAX_PAGES ? calloc(1, sizeof(*pg)) : NULL;

			if (pg && c->n == c->cap) {
				size_t cap = c->cap ? 2 * c->cap : 4;
				struct chg_page **np = realloc(c->pages, cap * sizeof(*np));

				if (np) {
					c->pages = np;
					c->cap = cap;
				} else {
					free(pg);
					pg = NULL;
				}
			}
			if (!pg) {
				/* Too much written in one epoch to track (or no memory): the
				 * summary then says "anything". */
				l->chg_unknown = true;
				chg_free(c);
				return;
			}
			memmove(c->pages + lo + 1, c->pages + lo, (c->n - lo) * sizeof(*c->pages));
			pg->page = page;
			c->pages[lo] = pg;
			c->n++;
		}
		c->last = lo;
	}
	c->pages[lo]->bits[(g >> 6) & 63] |= 1ull << (g & 63);
}

/* Appends the run [a, b) as pair *n of v (room for max pairs; v NULL: count only);
 * false when v is full. */
static bool run_put(uint64_t *v, size_t max, size_t *n, uint64_t a, uint64_t b)
{
	if (*n == max)
		return false;
	if (v) {
		v[2 * *n] = a;
		v[2 * *n + 1] = b;
	}
	(*n)++;
	return true;
}

/* Runs of units (grains >> shift) holding a marked grain, as (a, b) pairs into v (room
 * for max); false when there are more than max. */
static bool chg_runs(const struct chgset *c, unsigned shift, uint64_t *v, size_t max,
		     size_t *nout)
{
	if (!v) /* only: do the runs fit in CHG_MAX_INTERVALS? */
		max = CHG_MAX_INTERVALS;
	size_t n = 0;
	uint64_t ra = 0, rb = 0;
	bool in = false;

	for (size_t i = 0; i < c->n; i++) {
		for (unsigned w = 0; w < 64; w++) {
			uint64_t bits = c->pages[i]->bits[w];

			while (bits) {
				unsigned b = (unsigned)__builtin_ctzll(bits);
				uint64_t u = (c->pages[i]->page << 12 | (uint64_t)w << 6 | b) >> shift;

				bits &= bits - 1;
				if (in && u < rb)
					continue; /* same unit */
				if (in && u == rb) {
					rb++;
					continue;
				}
				if (in && !run_put(v, max, &n, ra, rb))
					return false;
				ra = u;
				rb = u + 1;
				in = true;
			}
		}
	}
	if (in && !run_put(v, max, &n, ra, rb))
		return false;
	*nout = n;
	return true;
}

/* Log the summary of epoch e: "anything" (all), or the marked grains as runs of grains,
 * or, when there are too many runs, of CHG_REGION_SHIFT regions. Value: byte 0 = CHG_*,
 * u32 count, count pairs of u64 [a, b). */
enum { CHG_REGIONS = 0, CHG_ALL = 1, CHG_GRAINS = 2, CHG_PAGES = 3 };
#define CHG_PAGE_BYTES (8 + 64 * 8)
static void chg_log(struct lineage *l, uint64_t e, bool all, struct mutbuf *mb)
{
	uint8_t k[16], *v = NULL;
	uint64_t *runs = NULL;
	size_t n = 0, vl = 5;
	uint8_t kind = CHG_GRAINS;

	if (!all && l->chg.n && l->chg.n <= CHG_MAX_BITMAP_PAGES &&
	    !chg_runs(&l->chg, 0, NULL, 0, &n) && (v = malloc(5 + CHG_PAGE_BYTES * l->chg.n))) {
		/* Many scattered grains over a bounded span: the bitmap pages themselves
		 * (u32 count, then per page u64 page and 64 u64 words). */
		lin_chg_key(k, l->id, e);
		v[0] = CHG_PAGES;
		rod_put_be32(v + 1, (uint32_t)l->chg.n);
		for (size_t i = 0; i < l->chg.n; i++) {
			uint8_t *p = v + 5 + CHG_PAGE_BYTES * i;

			rod_put_be64(p, l->chg.pages[i]->page);
			for (unsigned w = 0; w < 64; w++)
				rod_put_be64(p + 8 + 8 * w, l->chg.pages[i]->bits[w]);
		}
		mutbuf_put(mb, CF_LIN, k, 16, v, 5 + CHG_PAGE_BYTES * l->chg.n);
		free(v);
		return;
	}
	if (!all && l->chg.n) {
		runs = malloc(2 * CHG_MAX_INTERVALS * sizeof(*runs));
		v = malloc(5 + 16 * (size_t)CHG_MAX_INTERVALS);
		if (!runs || !v)
			all = true;
		else if (!chg_runs(&l->chg, 0, runs, CHG_MAX_INTERVALS, &n)) {
			kind = CHG_REGIONS;
			if (!chg_runs(&l->chg, CHG_REGION_SHIFT, runs, CHG_MAX_INTERVALS, &n))
				all = true;
		}
	}
	if (!v && !(v = malloc(5)))
		all = true; /* then the 1-byte value below */
	lin_chg_key(k, l->id, e);
	if (all) {
		uint8_t one = CHG_ALL;

		mutbuf_put(mb, CF_LIN, k, 16, &one, 1);
	} else {
		v[0] = kind;
		rod_put_be32(v + 1, (uint32_t)n);
		for (size_t i = 0; i < 2 * n; i++)
			rod_put_be64(v + 5 + 8 * i, runs[i]);
		vl += 16 * n;
		mutbuf_put(mb, CF_LIN, k, 16, v, vl);
	}
	free(runs);
	free(v);
}

static int chg_extra_add(struct lineage *l, uint64_t epoch, uint64_t start, uint64_t end)
{
	struct chg_extra *n = realloc(l->chg_extra, (l->nchg_extra + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	l->chg_extra = n;
	n[l->nchg_extra++] = (struct chg_extra){ epoch, start, end };
	return 0;
}

/* cur is being left for good: log its summary, start an empty one. */
static void chg_seal(struct lineage *l, struct mutbuf *mb)
{
	chg_log(l, l->cur, l->chg_unknown, mb);
	chg_free(&l->chg);
	l->chg_unknown = false;
}

void lin_chg_unknown(struct lineage *l, uint64_t e, struct mutbuf *mb)
{
	if (e == l->cur)
		l->chg_unknown = true;
	else if (e < l->cur)
		chg_log(l, e, true, mb);
}

/* Appends the run [a, b) as pair *n of *r, growing *r to nc pairs when full (*cap
 * pairs); on failure frees *r and returns -ENOMEM. */
static int run_push(uint64_t **r, size_t *n, size_t *cap, size_t nc, uint64_t a, uint64_t b)
{
	if (*n == *cap) {
		uint64_t *nr = realloc(*r, 2 * nc * sizeof(*nr));

		if (!nr) {
			free(*r);
			return -ENOMEM;
		}
		*r = nr;
		*cap = nc;
	}
	(*r)[2 * *n] = a;
	(*r)[2 * *n + 1] = b;
	(*n)++;
	return 0;
}

/* Bitmap pages to runs of grains; gaps of CHG_GAP grains or fewer are bridged (a
 * superset of the marked grains is still a correct summary) to bound the list. */
#define CHG_GAP 8u
static int chg_decode_pages(const uint8_t *v, size_t vl, uint64_t **iv, size_t *nout)
{
	uint32_t np = rod_get_be32(v + 1);
	size_t n = 0, cap = 0;
	uint64_t *r = NULL, ra = 0, rb = 0;
	bool in = false;

	if (vl != 5 + (size_t)np * CHG_PAGE_BYTES)
		return -EINVAL;
	for (uint32_t i = 0; i < np; i++) {
		const uint8_t *p = v + 5 + (size_t)CHG_PAGE_BYTES * i;
		uint64_t page = rod_get_be64(p);

		for (unsigned w = 0; w < 64; w++) {
			uint64_t bits = rod_get_be64(p + 8 + 8 * w);

			while (bits) {
				unsigned b = (unsigned)__builtin_ctzll(bits);
				uint64_t g = page << 12 | (uint64_t)w << 6 | b;

				bits &= bits - 1;
				if (in && g <= rb + CHG_GAP) {
					rb = g + 1;
					continue;
				}
				if (in && run_push(&r, &n, &cap, cap ? 2 * cap : 1024, ra, rb))
					return -ENOMEM;
				ra = g;
				rb = g + 1;
				in = true;
			}
		}
	}
	if (in && run_push(&r, &n, &cap, cap + 1, ra, rb))
		return -ENOMEM;
	*iv = r;
	*nout = n;
	return 0;
}

int lin_chg_decode(const uint8_t *v, size_t vl, bool *all, uint64_t **iv, size_t *n)
{
	uint32_t cnt;
	unsigned shift;

	*iv = NULL;
	*n = 0;
	*all = false;
	if (vl >= 1 && v[0] == CHG_ALL) {
		*all = true;
		return 0;
	}
	if (vl >= 5 && v[0] == CHG_PAGES)
		return chg_decode_pages(v, vl, iv, n);
	if (vl < 5 || (v[0] != CHG_GRAINS && v[0] != CHG_REGIONS))
		return -EINVAL;
	shift = v[0] == CHG_REGIONS ? CHG_REGION_SHIFT : 0;
	cnt = rod_get_be32(v + 1);
	if (vl != 5 + (size_t)cnt * 16)
		return -EINVAL;
	if (!cnt)
		return 0;
	*iv = malloc((size_t)cnt * 2 * sizeof(**iv));
	if (!*iv)
		return -ENOMEM;
	for (uint32_t i = 0; i < 2 * cnt; i++)
		(*iv)[i] = rod_get_be64(v + 5 + 8 * i) << shift;
	*n = cnt;
	return 0;
}

/* Summaries exist since this code first opened the store. CF_SYS "chg_from" records
 * when: the first lineage id created after that (complete from its start), then for
 * each older lineage its epoch at that open (epochs up to it are incomplete: the older
 * binary wrote them). Written directly, unlogged: when lost (a crash before RocksDB
 * flushed it, a metadata rebuild), the next open writes a newer one, which only makes
 * more windows fall back to the full scan. */
static void chg_load_marker(struct media *md, struct meta *m)
{
	static const char key[] = "chg_from";
	void *v = NULL;
	size_t vl = 0;
	uint64_t from = LIN_FIRST;

	if (meta_get(m, CF_SYS, key, sizeof(key) - 1, &v, &vl) == 0 && vl >= 8 && (vl - 8) % 16 == 0) {
		const uint8_t *b = v;

		from = rod_get_be64(b);
		for (size_t i = 0; i < md->n; i++) {
			struct lineage *l = md->lins[i];

			l->chg_after = l->id >= from ? 0 : UINT64_MAX;
			for (size_t j = 8; l->id < from && j + 16 <= vl; j += 16)
				if (rod_get_be64(b + j) == l->id)
					l->chg_after = rod_get_be64(b + j + 8);
		}
		free(v);
		return;
	}
	free(v);
	v = malloc(8 + 16 * md->n);
	if (!v) {
		for (size_t i = 0; i < md->n; i++)
			md->lins[i]->chg_after = UINT64_MAX;
		return;
	}
	for (size_t i = 0; i < md->n; i++)
		if (md->lins[i]->id >= from)
			from = md->lins[i]->id + 1;
	rod_put_be64(v, from);
	for (size_t i = 0; i < md->n; i++) {
		md->lins[i]->chg_after = md->lins[i]->cur;
		rod_put_be64((uint8_t *)v + 8 + 16 * i, md->lins[i]->id);
		rod_put_be64((uint8_t *)v + 16 + 16 * i, md->lins[i]->cur);
	}
	if (meta_put(m, CF_SYS, key, sizeof(key) - 1, v, 8 + 16 * md->n))
		for (size_t i = 0; i < md->n; i++)
			md->lins[i]->chg_after = UINT64_MAX;
	free(v);
}

/* ---- epochs ---- */

uint64_t lin_pin(struct lineage *l, struct mutbuf *mb)
{
	uint64_t p;

	if (!l->cur_used)
		return l->cur - 1;
	chg_seal(l, mb);
	p = l->cur++;
	l->cur_used = false;
	l->box_lo = UINT64_MAX;
	l->box_hi = 0;
	lin_log(mb, l);
	return p;
}

void lin_bump(struct lineage *l, struct mutbuf *mb)
{
	chg_seal(l, mb);
	l->cur++;
	l->cur_used = false;
	l->box_lo = UINT64_MAX;
	l->box_hi = 0;
	lin_log(mb, l);
}

void lin_note_write(struct lineage *l, uint64_t g0, uint64_t n)
{
	for (uint64_t g = g0; g < g0 + n; g++)
		chg_add(l, g);
	l->cur_used = true;
	if (g0 < l->box_lo)
		l->box_lo = g0;
	if (g0 + n > l->box_hi)
		l->box_hi = g0 + n;
}

/* ---- range lookup ---- */

static bool rng_newer(const struct rng_ent *a, const struct rng_ent *b)
{
	return a->epoch > b->epoch || (a->epoch == b->epoch && a->seq > b->seq);
}

/* Entries j < lo of the subtree node (leaves [nlo, nhi)) that cover lba and are visible
 * at e; the newest goes to *best. Subtrees whose ends all stop at or before lba, or whose
 * entries are all newer than e, are skipped: the cost follows the entries covering lba,
 * not all the entries starting before it (a clone that received thousands of copies). */
static void tree_cover(const struct lineage *l, size_t node, size_t nlo, size_t nhi, size_t lo,
		       uint64_t lba, uint64_t e, const struct rng_ent **best)
{
	if (nlo >= lo || l->tmax[node] <= lba || l->tmin[node] > e)
		return;
	if (nhi - nlo == 1) {
		const struct rng_ent *r = &l->rng[nlo];

		if (!*best || rng_newer(r, *best))
			*best = r;
		return;
	}
	tree_cover(l, 2 * node, nlo, (nlo + nhi) / 2, lo, lba, e, best);
	tree_cover(l, 2 * node + 1, (nlo + nhi) / 2, nhi, lo, lba, e, best);
}

/* First index >= lo of the subtree with an entry visible at e; SIZE_MAX when none. */
static size_t tree_first(const struct lineage *l, size_t node, size_t nlo, size_t nhi, size_t lo,
			 uint64_t e)
{
	size_t r;

	if (nhi <= lo || nlo >= l->nrng || l->tmin[node] > e)
		return SIZE_MAX;
	if (nhi - nlo == 1)
		return nlo;
	r = tree_first(l, 2 * node, nlo, (nlo + nhi) / 2, lo, e);
	return r != SIZE_MAX ? r : tree_first(l, 2 * node + 1, (nlo + nhi) / 2, nhi, lo, e);
}

/* Newest range entry of l covering lba with epoch <= e; *nstart: the lowest start above
 * lba of an entry visible at e (where the answer may change). */
static const struct rng_ent *rng_find(const struct lineage *l, uint64_t lba, uint64_t e,
				      uint64_t *nstart)
{
	size_t lo = 0, hi = l->nrng;
	const struct rng_ent *best = NULL;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (l->rng[mid].start <= lba)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (l->nrng) {
		size_t f;

		tree_cover(l, 1, 0, l->tp, lo, lba, e, &best);
		f = tree_first(l, 1, 0, l->tp, lo, e);
		*nstart = f < l->nrng ? l->rng[f].start : UINT64_MAX;
	} else {
		*nstart = UINT64_MAX;
	}
	return best;
}

/* Newest block entry of (lin, lba) with epoch <= e. *next_lba: next grain of lin with any
 * block entry (UINT64_MAX when none). */
static bool map_lookup(struct meta_iter *it, uint64_t lin, uint64_t lba, uint64_t e,
		       uint64_t *bepoch, struct map_val *v, uint64_t *next_lba)
{
	uint8_t k[MAP_KEY_LEN];
	const uint8_t *kk;
	size_t kl, vl;
	uint64_t klin, klba, kep;

	map_key(k, lin, lba, e);
	meta_iter_seek(it, k, sizeof(k));
	*next_lba = UINT64_MAX;
	if (!meta_iter_valid(it))
		return false;
	kk = meta_iter_key(it, &kl);
	if (kl != MAP_KEY_LEN)
		return false;
	map_key_decode(kk, &klin, &klba, &kep);
	if (klin != lin)
		return false;
	if (klba != lba) {
		*next_lba = klba;
		return false;
	}
	const uint8_t *vv = meta_iter_val(it, &vl);
	if (vl < MAP_VAL_LEN)
		return false;
	map_val_decode(v, vv);
	*bepoch = kep;
	return true;
}

int medium_resolve(struct media *md, struct meta_iter *it, uint64_t lin, uint64_t epoch,
		   uint64_t lba, uint64_t maxrun, struct resolved *out)
{
	meta_iter_renew(it); /* flatten dropped a range entry since it was created */
	for (unsigned depth = 0; depth <= 2 * DEPTH_HARD; depth++) {
		struct lineage *l;
		const struct rng_ent *g;
		uint64_t bepoch = 0, next_lba, nstart, run;
		struct map_val v;
		bool found;

		if (lin == LIN_UNMAP || lin == LIN_ZERO) {
			out->kind = lin == LIN_ZERO ? RES_ZERO : RES_UNMAP;
			out->run = maxrun;
			return 0;
		}
		l = media_find(md, lin);
		if (!l) {
			out->kind = RES_UNMAP;
			out->run = maxrun;
			return 0;
		}
		g = rng_find(l, lba, epoch, &nstart);
		/* A cached newest entry answers when no range entry hides it; anything else
		 * (runs of unwritten grains, older epochs) goes through the iterator. */
		if (md->mc && mc_get(md->mc, lin, lba, &bepoch, &v) && bepoch <= epoch &&
		    (!g || bepoch >= g->epoch)) {
			found = true;
		} else {
			found = map_lookup(it, lin, lba, epoch, &bepoch, &v, &next_lba);
			if (found && epoch == EPOCH_MAX && md->mc)
				mc_fill(md->mc, lin, lba, bepoch, &v, meta_iter_born(it));
		}
		if (found && (!g || bepoch >= g->epoch)) {
			out->kind = v.chunk == CHUNK_ZERO ? RES_ZERO :
				    v.chunk == CHUNK_UNMAP ? RES_UNMAP : RES_CHUNK;
			out->v = v;
			out->run = 1;
			out->src_lin = lin;
			out->src_lba = lba;
			out->src_epoch = bepoch;
			return 0;
		}
		if (found) {
			/* The block entry here is older than the range; the next grain with any
			 * block entry may be newer than the range. */
			next_lba = UINT64_MAX;
			for (meta_iter_next(it); meta_iter_valid(it); meta_iter_next(it)) {
				size_t kl;
				const uint8_t *kk = meta_iter_key(it, &kl);
				uint64_t klin, klba, kep;

				if (kl != MAP_KEY_LEN)
					break;
				map_key_decode(kk, &klin, &klba, &kep);
				if (klin != lin)
					break;
				if (klba != lba) {
					next_lba = klba;
					break;
				}
			}
		}
		run = maxrun;
		if (next_lba - lba < run)
			run = next_lba - lba;
		if (nstart - lba < run)
			run = nstart - lba;
		if (!g) {
			out->kind = RES_UNMAP;
			out->run = run ? run : 1;
			return 0;
		}
		if (g->end - lba < run)
			run = g->end - lba;
		if (!run)
			run = 1;
		maxrun = run;
		lin = g->tlin;
		lba = (uint64_t)((int64_t)lba + g->delta);
		epoch = g->tepoch;
	}
	return -ELOOP;
}

/* ---- range entries ---- */

/* Max depth of l's range entries visible at e overlapping [a,b); 0 when none. */
static uint32_t rng_depth(const struct lineage *l, uint64_t a, uint64_t b, uint64_t e)
{
	uint32_t d = 0;

	for (size_t j = 0; j < l->nrng && l->rng[j].start < b; j++)
		if (l->rng[j].end > a && l->rng[j].epoch <= e && l->rng[j].depth > d)
			d = l->rng[j].depth;
	return d;
}

/* Does lin have block entries in [a,b) with epoch in [e0, e1]? (bounded scan; "maybe"
 * answers true) */
static bool map_has(struct meta *m, uint64_t lin, uint64_t a, uint64_t b, uint64_t e0,
		    uint64_t e1)
{
	struct meta_iter *it = meta_iter_new(m, CF_MAP);
	uint8_t k[MAP_KEY_LEN];
	bool r = false;
	unsigned n = 0;

	if (!it)
		return true;
	map_key(k, lin, a, EPOCH_MAX);
	for (meta_iter_seek(it, k, sizeof(k)); meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl;
		const uint8_t *kk = meta_iter_key(it, &kl);
		uint64_t klin, klba, kep;

		if (kl != MAP_KEY_LEN)
			break;
		map_key_decode(kk, &klin, &klba, &kep);
		if (klin != lin || klba >= b)
			break;
		if ((kep >= e0 && kep <= e1) || ++n > 256) {
			r = true;
			break;
		}
	}
	meta_iter_free(it);
	return r;
}

int lin_add_range(struct media *md, struct meta *m, struct lineage *dst, uint64_t start,
		  uint64_t end, uint64_t tlin, uint64_t tepoch, int64_t delta,
		  struct mutbuf *mb)
{
	uint32_t depth = 1;
	struct rng_ent *last = NULL;

	if (end <= start)
		return 0;
	/* Compose: a source range that is wholly one range entry (or a hole) of its
	 * lineage points straight at what that entry points at, so a copy of a copy does
	 * not deepen. */
	for (int guard = 0; tlin >= LIN_FIRST && guard < (int)DEPTH_HARD * 2; guard++) {
		struct lineage *src = media_find(md, tlin);
		uint64_t a = (uint64_t)((int64_t)start + delta), b = a + (end - start);
		const struct rng_ent *g = NULL;
		bool single = true;

		if (!src) {
			tlin = LIN_UNMAP;
			break;
		}
		for (size_t j = 0; j < src->nrng && src->rng[j].start < b; j++) {
			const struct rng_ent *r = &src->rng[j];

			if (r->end <= a || r->epoch > tepoch)
				continue;
			if (!g || rng_newer(r, g))
				g = r;
		}
		if (g && (g->start > a || g->end < b))
			single = false;
		if (g && single) {
			/* g must be the newest of every entry overlapping [a,b): checked above,
			 * since g is the newest overlapping one and covers it all. */
			if (map_has(m, tlin, a, b, g->epoch, tepoch))
				break;
			tlin = g->tlin;
			tepoch = g->tepoch;
			delta += g->delta;
			continue;
		}
		if (!g && !map_has(m, tlin, a, b, 0, tepoch)) {
			tlin = LIN_UNMAP;
			break;
		}
		break;
	}
	if (tlin >= LIN_FIRST) {
		struct lineage *src = media_find(md, tlin);
		uint64_t a = (uint64_t)((int64_t)start + delta);

		if (src)
			depth = 1 + rng_depth(src, a, a + (end - start), tepoch);
		if (depth > DEPTH_HARD)
			return -ELOOP;
	}
	if (tlin < LIN_FIRST) {
		delta = 0;
		tepoch = 0;
	}
	/* Block entries already written at cur inside the range must read as older than
	 * the new entry: move to a new epoch. */
	if (dst->box_lo < end && start < dst->box_hi) {
		chg_seal(dst, mb);
		dst->cur++;
		dst->box_lo = UINT64_MAX;
		dst->box_hi = 0;
		dst->cur_used = false;
	}
	for (size_t j = 0; j < dst->nrng; j++)
		if (dst->rng[j].seq == dst->last_seq) {
			last = &dst->rng[j];
			break;
		}
	if (last && last->epoch == dst->cur && last->tlin == tlin && last->tepoch == tepoch &&
	    (last->delta == delta || tlin < LIN_FIRST) && last->end == start) {
		last->end = end;
		if (depth > last->depth)
			last->depth = depth;
		rng_reindex(dst);
		rng_log(mb, dst->id, last);
	} else {
		struct rng_ent r = {
			.start = start, .end = end, .epoch = dst->cur, .seq = dst->next_seq++,
			.tlin = tlin, .tepoch = tepoch, .delta = delta, .depth = depth,
		};

		/* Entries of this same epoch that the new one hides entirely are dead for
		 * every reader (readers at older epochs never saw them). */
		for (size_t j = 0; j < dst->nrng;) {
			struct rng_ent *o = &dst->rng[j];

			if (o->epoch == dst->cur && o->start >= start && o->end <= end) {
				rng_unlog(mb, dst->id, o->seq);
				memmove(o, o + 1, (dst->nrng - j - 1) * sizeof(*o));
				dst->nrng--;
				rng_reindex(dst);
				continue;
			}
			j++;
		}
		if (rng_insert(dst, &r))
			return -ENOMEM;
		dst->last_seq = r.seq;
		rng_log(mb, dst->id, &r);
	}
	dst->cur_used = true;
	lin_log(mb, dst);
	return 0;
}

/* ---- flatten support (flatten.c) ---- */

uint32_t lin_max_depth(const struct lineage *l)
{
	uint32_t d = 0;

	for (size_t j = 0; j < l->nrng; j++)
		if (l->rng[j].depth > d)
			d = l->rng[j].depth;
	return d;
}

const struct rng_ent *lin_rng_by_seq(const struct lineage *l, uint64_t seq)
{
	for (size_t j = 0; j < l->nrng; j++)
		if (l->rng[j].seq == seq)
			return &l->rng[j];
	return NULL;
}

int lin_rng_remove(struct lineage *l, uint64_t seq, struct mutbuf *mb)
{
	for (size_t j = 0; j < l->nrng; j++) {
		if (l->rng[j].seq != seq)
			continue;
		/* The change summaries must still lead rod_vol_diff to the grains this entry
		 * covered at its epoch (flatten's block entries there; medium.h). */
		uint8_t k[24], v[16];

		if (chg_extra_add(l, l->rng[j].epoch, l->rng[j].start, l->rng[j].end))
			return -ENOMEM;
		lin_chg_key(k, l->id, l->rng[j].epoch);
		rod_put_be64(k + 16, seq);
		rod_put_be64(v, l->rng[j].start);
		rod_put_be64(v + 8, l->rng[j].end);
		mutbuf_put(mb, CF_LIN, k, 24, v, 16);
		rng_unlog(mb, l->id, seq);
		memmove(&l->rng[j], &l->rng[j + 1], (l->nrng - j - 1) * sizeof(*l->rng));
		l->nrng--;
		rng_reindex(l);
		return 0;
	}
	return -ENOENT;
}

int lin_rng_add_at(struct lineage *l, uint64_t start, uint64_t end, uint64_t epoch,
		   uint64_t tlin, struct mutbuf *mb)
{
	struct rng_ent r = {
		.start = start, .end = end, .epoch = epoch, .seq = l->next_seq++,
		.tlin = tlin, .tepoch = 0, .delta = 0, .depth = 1,
	};
	int rc = rng_insert(l, &r);

	if (rc)
		return rc;
	rng_log(mb, l->id, &r);
	lin_log(mb, l);
	return 0;
}
