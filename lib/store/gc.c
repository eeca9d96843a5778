/* Mark-and-sweep garbage collection of segments. */
#include "gc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commit.h"
#include "rod/log.h"
#include "rod/util.h"
#include "store_int.h"

#define GC_MOVE_BUDGET (256ull << 20)  /* live bytes copied per pass */

/* Background passes (space not short) give way to volume I/O: one that is due waits for
 * GC_QUIET_NS without I/O, but no longer than GC_DEFER_MAX_NS; while I/O goes on during a
 * pass, the pass sleeps GC_PACE_SLEEP times as long as it worked (so it takes at most a
 * quarter of a CPU), at most GC_PACE_MAX_NS at a time. A pass run because space is short,
 * or asked for (rodctl, jobs), is not paced. */
#define GC_QUIET_NS      (2ull * 1000000000ull)
#define GC_DEFER_MAX_NS  (60ull * 1000000000ull)
#define GC_PACE_RECENT_NS (200ull * 1000000ull)
#define GC_PACE_SLEEP    3u
#define GC_PACE_MAX_NS   (250ull * 1000000ull)

/* ---- reader sets ---- */

static int u64cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct readers *readers_find(struct reader_set *rs, uint64_t lin)
{
	size_t lo = 0, hi = rs->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (rs->r[mid].lin == lin)
			return &rs->r[mid];
		if (rs->r[mid].lin < lin)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Add reader (lin, ep); returns 1 when new. */
static int readers_add(struct reader_set *rs, uint64_t lin, uint64_t ep, bool snap)
{
	struct readers *r = readers_find(rs, lin);

	if (!r) {
		size_t i = 0;

		if (rs->n == rs->cap) {
			rs->cap = rs->cap ? rs->cap * 2 : 32;
			rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
			if (!rs->r)
				abort();
		}
		while (i < rs->n && rs->r[i].lin < lin)
			i++;
		memmove(rs->r + i + 1, rs->r + i, (rs->n - i) * sizeof(*rs->r));
		memset(&rs->r[i], 0, sizeof(rs->r[i]));
		rs->r[i].lin = lin;
		rs->n++;
		r = &rs->r[i];
	}
	for (size_t i = 0; i < r->n; i++)
		if (r->ep[i] == ep)
			return 0;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 4;
		r->ep = realloc(r->ep, r->cap * sizeof(*r->ep));
		if (!r->ep)
			abort();
	}
	r->ep[r->n++] = ep;
	if (snap)
		r->nsnap++;
	return 1;
}

int readers_collect(struct rod_store *s, struct reader_set *rs)
{
	bool more = true;

	memset(rs, 0, sizeof(*rs));
	pthread_rwlock_rdlock(&s->state);
	for (size_t i = 0; i < s->nvols; i++) {
		struct vol_rec *r = s->vols[i];

		if (r->is_snapshot)
			readers_add(rs, r->lineage, r->epoch, true);
		else
			readers_add(rs, r->lineage, EPOCH_MAX, false);
	}
	for (struct rod_vol *p = s->pins.pin_next; p != &s->pins; p = p->pin_next)
		readers_add(rs, p->pin_lineage, p->pin_epoch, true);
	/* Range entries of read lineages make their targets readers too (to a fixpoint). */
	while (more) {
		more = false;
		for (size_t i = 0; i < s->media.n; i++) {
			struct lineage *l = s->media.lins[i];
			struct readers *r = readers_find(rs, l->id);

			if (!r)
				continue;
			for (size_t j = 0; j < l->nrng; j++)
				if (l->rng[j].tlin >= LIN_FIRST &&
				    readers_add(rs, l->rng[j].tlin, l->rng[j].tepoch, true))
					more = true;
		}
	}
	for (size_t i = 0; i < rs->n; i++) {
		struct lineage *l = media_find(&s->media, rs->r[i].lin);

		if (l && l->nrng) {
			rs->r[i].rng = malloc(l->nrng * sizeof(*l->rng));
			if (rs->r[i].rng) {
				memcpy(rs->r[i].rng, l->rng, l->nrng * sizeof(*l->rng));
				rs->r[i].nrng = l->nrng;
			}
		}
	}
	pthread_rwlock_unlock(&s->state);
	for (size_t i = 0; i < rs->n; i++)
		qsort(rs->r[i].ep, rs->r[i].n, sizeof(uint64_t), u64cmp);
	return 0;
}

void readers_free(struct reader_set *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->r[i].ep);
		free(rs->r[i].rng);
	}
	free(rs->r);
	memset(rs, 0, sizeof(*rs));
}

/* ---- mark ---- */

/* Does a range entry of r hide block entry (lba, kep) from reader epoch rep? (a range
 * entry newer than the block, not newer than the reader, covering lba) */
static bool hidden(const struct readers *r, uint64_t lba, uint64_t kep, uint64_t rep)
{
	size_t lo = 0, hi = r->nrng;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->rng[mid].start <= lba)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t j = lo; j-- > 0;) {
		const struct rng_ent *g = &r->rng[j];

		if (g->end > lba && g->epoch > kep && g->epoch <= rep)
			return true;
	}
	return false;
}

int mark_scan(struct rod_store *s, struct reader_set *rs, uint64_t lin, mark_fn fn, void *arg)
{
	struct meta_iter *it = meta_iter_new(s->meta, CF_MAP);
	uint64_t glin = UINT64_MAX, glba = UINT64_MAX, newer = 0;
	bool have_newer = false;
	struct readers *r = NULL;
	uint8_t k0[MAP_KEY_LEN];

	if (!it)
		return -ENOMEM;
	if (lin) {
		map_key(k0, lin, 0, EPOCH_MAX);
		meta_iter_seek(it, k0, sizeof(k0));
	} else {
		meta_iter_first(it);
	}
	for (; meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = meta_iter_key(it, &kl), *v = meta_iter_val(it, &vl);
		uint64_t klin, klba, kep;
		struct map_val mv;
		unsigned cnt = 0;
		bool cur = false;

		if (kl != MAP_KEY_LEN || vl < MAP_VAL_LEN)
			continue;
		map_key_decode(k, &klin, &klba, &kep);
		if (lin && klin != lin)
			break;
		if (klin != glin) {
			glin = klin;
			r = readers_find(rs, klin);
			glba = UINT64_MAX;
		}
		if (klba != glba) {
			glba = klba;
			have_newer = false;
		}
		map_val_decode(&mv, v);
		/* Readers in [kep, newer) see this entry. */
		if (r) {
			for (size_t i = 0; i < r->n; i++) {
				if (r->ep[i] >= kep && (!have_newer || r->ep[i] < newer) &&
				    !(r->nrng && hidden(r, klba, kep, r->ep[i]))) {
					cnt++;
					if (r->ep[i] == EPOCH_MAX)
						cur = true;
				}
			}
		}
		fn(arg, klin, klba, kep, &mv, cnt, cur);
		newer = kep;
		have_newer = true;
	}
	meta_iter_free(it);
	return 0;
}

/* ---- live chunk set (open addressing) ---- */

struct u64set {
	uint64_t *slot;
	size_t cap, n;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static void set_add(struct u64set *st, uint64_t v)
{
	if ((st->n + 1) * 2 > st->cap) {
		struct u64set n = { calloc(st->cap ? st->cap * 2 : 1024, 8), st->cap ? st->cap * 2 : 1024, 0 };

		if (!n.slot)
			abort();
		for (size_t i = 0; i < st->cap; i++)
			if (st->slot[i])
				set_add(&n, st->slot[i] - 1);
		free(st->slot);
		*st = n;
	}
	size_t i = mix(v) & (st->cap - 1);
	while (st->slot[i] && st->slot[i] != v + 1)
		i = (i + 1) & (st->cap - 1);
	if (!st->slot[i]) {
		st->slot[i] = v + 1;
		st->n++;
	}
}

static bool set_has(const struct u64set *st, uint64_t v)
{
	if (!st->cap)
		return false;
	size_t i = mix(v) & (st->cap - 1);
	while (st->slot[i]) {
		if (st->slot[i] == v + 1)
			return true;
		i = (i + 1) & (st->cap - 1);
	}
	return false;
}

struct gc_mark;
static bool mark_live(void *arg, uint64_t chunk);

struct gc_mark {
	struct u64set live;
	uint64_t *dead_lins;
	size_t ndead;
};

static void gc_mark_fn(void *arg, uint64_t lin, uint64_t lba, uint64_t epoch,
		       const struct map_val *v, unsigned n, bool cur)
{
	struct gc_mark *g = arg;

	(void)lin; (void)lba; (void)epoch; (void)cur;
	if (n && v->chunk > CHUNK_UNMAP)
		set_add(&g->live, v->chunk);
}

/* Current location of chunk c: its home segment unless the chunk table moved it. */
static int chunk_where(struct rod_store *s, uint64_t c, uint64_t *seg)
{
	uint8_t k[8];
	void *v;
	size_t vl;

	rod_put_be64(k, c);
	if (meta_get(s->meta, CF_CHUNK, k, 8, &v, &vl)) {
		*seg = CHUNK_SEG(c);
		return 0;
	}
	*seg = vl >= 24 ? rod_get_be64(v) : CHUNK_SEG(c);
	free(v);
	return 0;
}

struct seg_scan {
	uint64_t id, size, live;
};

/* Keys whose mutations sit in segments being freed: their current values are logged
 * again (relog) before the segment goes, so the segments alone still rebuild the
 * metadata (rod_store_rebuild_metadata). The values are read here, on the GC thread,
 * under a commit watch; the commit thread logs them without applying them (they are the
 * applied state) and reads again only keys written since the watch began. */
/* Map keys relogged so far in a pass: a key a newer segment of the pass already
 * relogged needs nothing more (that relog is newer than this segment's mutation and
 * sits in a segment the pass keeps). Exact keys (lineage, grain, epoch; lineage 0 is
 * never used: empty), at most RELOGGED_MAX slots; past that, keys are just relogged
 * again. */
struct relogged {
	uint64_t *k;              /* 3 words per slot */
	size_t cap, n;
};
#define RELOGGED_MAX (1u << 21)

/* Adds key k (MAP_KEY_LEN bytes); false when it was there already. */
static bool relogged_add(struct relogged *d, const uint8_t *k)
{
	uint64_t w[3] = { rod_get_be64(k), rod_get_be64(k + 8), rod_get_be64(k + 16) };

	if (!w[0])
		return true;
	if ((d->n + 1) * 2 > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 65536;
		uint64_t *nk;

		if (cap > RELOGGED_MAX || !(nk = calloc(cap, 3 * sizeof(uint64_t)))) {
			/* full: still answer for the keys it holds */
			for (size_t j = mix(w[0] ^ w[1] ^ w[2]) & (d->cap - 1); d->cap && d->k[3 * j];
			     j = (j + 1) & (d->cap - 1))
				if (!memcmp(d->k + 3 * j, w, sizeof(w)))
					return false;
			return true;
		}
		for (size_t i = 0; i < d->cap; i++) {
			size_t j;

			if (!d->k[3 * i])
				continue;
			j = mix(d->k[3 * i] ^ d->k[3 * i + 1] ^ d->k[3 * i + 2]) & (cap - 1);
			while (nk[3 * j])
				j = (j + 1) & (cap - 1);
			memcpy(nk + 3 * j, d->k + 3 * i, 3 * sizeof(uint64_t));
		}
		free(d->k);
		d->k = nk;
		d->cap = cap;
	}
	size_t j = mix(w[0] ^ w[1] ^ w[2]) & (d->cap - 1);

	while (d->k[3 * j]) {
		if (!memcmp(d->k + 3 * j, w, sizeof(w)))
			return false;
		j = (j + 1) & (d->cap - 1);
	}
	memcpy(d->k + 3 * j, w, sizeof(w));
	d->n++;
	return true;
}

struct relog {
	struct relogged *done;    /* the pass's relogged map keys (NULL: none) */
	uint64_t nkeys;           /* keys read (statistics) */
	struct mutbuf keys;       /* MUT_PUT/MUT_DEL: key only; MUT_DELRANGE: as logged */
	struct mutbuf vals;       /* the same keys with their values read under the watch */
	size_t pos;               /* next mutation of vals to log */
};

#define RELOG_ITEM_BYTES (256u << 10)   /* per commit: bounds the commit thread's turn */

/* Tests: ROD_TEST_GC_PAUSE_MS holds GC between reading values under the watch and
 * logging them, so writers overwrite some of them in between. */
static void test_pause(void)
{
	const char *e = getenv("ROD_TEST_GC_PAUSE_MS");

	if (e)
		usleep((useconds_t)strtoul(e, NULL, 10) * 1000);
}

static void relog_map_key(struct relog *rl, const uint8_t *k)
{
	if (!rl->done || relogged_add(rl->done, k))
		mutbuf_put(&rl->keys, CF_MAP, k, MAP_KEY_LEN, NULL, 0);
}

static void relog_collect(struct relog *rl, const uint8_t *buf, size_t len)
{
	size_t pos = 0;
	struct mut m;

	while (mutbuf_next(buf, len, &pos, &m)) {
		if (m.op == MUT_DELRANGE)
			mutbuf_del_range(&rl->keys, m.cf, m.k, m.kl, m.v, m.vl);
		else if (m.cf == CF_MAP && m.kl == MAP_KEY_LEN)
			relog_map_key(rl, m.k);
		else
			mutbuf_put(&rl->keys, m.cf, m.k, m.kl, NULL, 0);
	}
}

/* The current value of (cf, k) as a mutation: a put, or a delete when there is none. */
static void relog_current(struct rod_store *s, struct mutbuf *mb, uint8_t cf, const uint8_t *k,
			  uint16_t kl)
{
	void *dv;
	size_t dl;

	if (meta_get(s->meta, cf, k, kl, &dv, &dl) == 0) {
		mutbuf_put(mb, cf, k, kl, dv, dl);
		free(dv);
	} else {
		mutbuf_del(mb, cf, k, kl);
	}
}

/* GC thread, after commit_watch_begin: every collected key with its value now. */
static void relog_read(struct rod_store *s, struct relog *rl)
{
	size_t pos = 0;
	struct mut m;

	while (mutbuf_next(rl->keys.buf, rl->keys.len, &pos, &m)) {
		if (m.op == MUT_DELRANGE)
			mutbuf_del_range(&rl->vals, m.cf, m.k, m.kl, m.v, m.vl);
		else
			relog_current(s, &rl->vals, m.cf, m.k, m.kl);
		rl->nkeys++;
	}
}

static int relog_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct relog *rl = ci->arg;
	size_t start_len = mb->len;
	struct mut m;

	/* Bounded per batch; the caller loops until every key is done. */
	while (mb->len - start_len < RELOG_ITEM_BYTES &&
	       mutbuf_next(rl->vals.buf, rl->vals.len, &rl->pos, &m)) {
		if (m.op == MUT_DELRANGE)
			mutbuf_del_range(mb, m.cf, m.k, m.kl, m.v, m.vl);
		else if (commit_watch_hit(s, m.cf, m.k, m.kl))
			relog_current(s, mb, m.cf, m.k, m.kl);  /* written since it was read */
		else if (m.op == MUT_PUT)
			mutbuf_put(mb, m.cf, m.k, m.kl, m.v, m.vl);
		else
			mutbuf_del(mb, m.cf, m.k, m.kl);
	}
	return 0;
}

/* Did the mark find the chunk live? (red_gc_doom) */
static bool mark_live(void *arg, uint64_t chunk)
{
	struct gc_mark *g = arg;

	return set_has(&g->live, chunk);
}

/* Live bytes of a segment; with move, copy them forward and relog its metadata. */
static int seg_scan_move(struct rod_store *s, struct gc_mark *g, struct seg_scan *ss, bool move,
			 uint64_t *moved, struct relog *rl)
{
	uint64_t off = 0;
	int rc = 0;

	ss->live = 0;
	while (!rc) {
		struct batch b;
		struct cgrain *cg;
		uint8_t *rz = NULL;      /* recompressed chunks of this batch */
		uint32_t ng = 0;
		bool any = false;

		rc = batch_read(s->log, ss->id, off, false, &b);
		if (rc == -ENODATA) {
			rc = 0;
			break;
		}
		if (rc)
			break;
		cg = calloc(b.n ? b.n : 1, sizeof(*cg));
		if (!cg) {
			batch_release(&b);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < b.n; i++) {
			struct batch_entry *e = &b.ent[i];
			uint64_t where;

			if ((e->kind != ENT_DATA && e->kind != ENT_RELOC) || !set_has(&g->live, e->chunk_id))
				continue;
			chunk_where(s, e->chunk_id, &where);
			if (where != ss->id)
				continue;
			ss->live += e->stored_len;
			any = true;
		}
		if (move && rl) {
			relog_collect(rl, b.mut, b.mut_len);
			/* Zero/unmap block entries have no chunk to move: their map entries are
			 * relogged as metadata instead. */
			for (uint32_t i = 0; i < b.n; i++) {
				struct batch_entry *e = &b.ent[i];
				uint8_t k[MAP_KEY_LEN];

				if (e->kind != ENT_ZERO && e->kind != ENT_UNMAP && e->kind != ENT_DEDUP)
					continue;
				map_key(k, e->lineage, e->lba, e->epoch);
				relog_map_key(rl, k);
			}
		}
		if (move && any) {
			uint64_t next = b.next_off;

			batch_release(&b);
			rc = batch_read(s->log, ss->id, off, true, &b);
			if (rc) {
				free(cg);
				return rc == -ENODATA ? -EIO : rc;
			}
			b.next_off = next;
			for (uint32_t i = 0; i < b.n; i++) {
				struct batch_entry *e = &b.ent[i];
				uint64_t where;

				if ((e->kind != ENT_DATA && e->kind != ENT_RELOC) ||
				    !set_has(&g->live, e->chunk_id))
					continue;
				chunk_where(s, e->chunk_id, &where);
				if (where != ss->id)
					continue;
				cg[ng++] = (struct cgrain){
					.kind = ENT_RELOC, .chunk = e->chunk_id,
					.data = b.payload + e->payload_off, .len = e->stored_len,
					.crc = e->crc, .lineage = e->lineage, .lba = e->lba,
					.epoch = e->epoch,
					.home_off = e->kind == ENT_DATA ?
						(uint32_t)(b.off + b.hdr_len + e->payload_off) : e->home_off,
					.red = { .comp = e->comp, .enc_gen = e->enc_gen,
						 .has_fp = (e->fp[0] | e->fp[1] | e->fp[2] | e->fp[3]) != 0 },
				};
				memcpy(cg[ng - 1].red.fp, e->fp, sizeof(e->fp));
				/* Checked here, under the watch, not on the commit thread. */
				cg[ng - 1].cur = commit_reloc_current(s, &cg[ng - 1]);
				cg[ng - 1].cur_known = true;
				/* Cold data: recompressed with zstd when that saves space. */
				struct cgrain *mg = &cg[ng - 1];
				if (!rz)
					rz = malloc((size_t)b.n * ROD_GRAIN);
				if (rz && red_recompress(s, e, mg->data, rz + (size_t)(ng - 1) * ROD_GRAIN,
							 &mg->len, &mg->crc, &mg->red.comp,
							 &mg->red.enc_gen))
					mg->data = rz + (size_t)(ng - 1) * ROD_GRAIN;
			}
		}
		if (move && ng) {
			for (uint32_t i = 0; i < ng && !rc; i += BATCH_MAX_ENTRIES) {
				struct citem ci = { .kind = CI_RELOC, .durable = true, .g = cg + i,
						    .ng = ROD_MIN(BATCH_MAX_ENTRIES, ng - i) };

				rc = commit_run(s, &ci);
			}
			for (uint32_t i = 0; i < ng; i++)
				*moved += cg[i].len;
		}
		free(rz);
		free(cg);
		off = b.next_off;
		batch_release(&b);
	}
	if (!rc && move && rl) {
		relog_read(s, rl);
		test_pause();
		while (!rc && rl->pos < rl->vals.len) {
			struct citem ci = { .kind = CI_OP, .durable = true, .alone = true,
					    .log_only = true, .build = relog_build, .arg = rl };

			rc = commit_run(s, &ci);
		}
		rl->keys.len = 0;
		rl->vals.len = 0;
		rl->pos = 0;
	}
	return rc;
}

/* Live bytes of a segment; with move, copy them forward and relog its metadata, under a
 * commit watch (the map reads happen here, not on the commit thread). */
static int seg_process(struct rod_store *s, struct gc_mark *g, struct seg_scan *ss, bool move,
		       uint64_t *moved, struct relog *rl)
{
	int rc, rc2;

	if (!move)
		return seg_scan_move(s, g, ss, false, moved, rl);
	rc = commit_watch_begin(s);
	if (rc)
		return rc;
	rc = seg_scan_move(s, g, ss, true, moved, rl);
	rc2 = commit_watch_end(s);
	return rc ? rc : rc2;
}

/* Drop lineages nobody reads any more (eradicated volumes): their range entries, block
 * entries and header go, logged like any metadata operation. */
static int drop_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct gc_mark *g = ci->arg;

	for (size_t i = 0; i < g->ndead; i++) {
		uint64_t lin = g->dead_lins[i];
		struct lineage *l = media_find(&s->media, lin);
		uint8_t k0[MAP_KEY_LEN], k1[MAP_KEY_LEN], r0[16], r1[16], lk[8];
		bool used = false;

		if (!l)
			continue;
		/* Re-check under the lock: a volume or pin may have appeared since. */
		for (size_t j = 0; j < s->nvols && !used; j++)
			used = s->vols[j]->lineage == lin;
		for (struct rod_vol *p = s->pins.pin_next; p != &s->pins && !used; p = p->pin_next)
			used = p->pin_lineage == lin;
		for (size_t j = 0; j < s->media.n && !used; j++)
			for (size_t r = 0; r < s->media.lins[j]->nrng && !used; r++)
				used = s->media.lins[j]->rng[r].tlin == lin;
		if (used)
			continue;
		map_key(k0, lin, 0, EPOCH_MAX);
		map_key(k1, lin + 1, 0, EPOCH_MAX);
		mutbuf_del_range(mb, CF_MAP, k0, sizeof(k0), k1, sizeof(k1));
		rod_put_be64(r0, lin);
		rod_put_be64(r0 + 8, 0);
		rod_put_be64(r1, lin + 1);
		rod_put_be64(r1 + 8, 0);
		mutbuf_del_range(mb, CF_RNG, r0, 16, r1, 16);
		rod_put_be64(lk, lin);
		mutbuf_del(mb, CF_LIN, lk, 8);
		/* and its change summaries (lin|epoch, lin|epoch|seq: medium.h) */
		lin_chg_key(r0, lin, 0);
		rod_put_be64(lk, lin + 1);
		mutbuf_del_range(mb, CF_LIN, r0, 16, lk, 8);
		media_drop(&s->media, lin);
	}
	return 0;
}

/* Progress and cancel for rod_store_gc_ex: reported between segments, where a pass may
 * stop with everything it did so far durable (a freed segment's live data was moved
 * and committed first). */
struct gc_prog {
	int (*fn)(void *arg, uint64_t done, uint64_t total, uint64_t bytes_read, uint64_t bytes_moved);
	void *arg;
	uint64_t done, total, read;
};

static int gc_report(struct gc_prog *p, uint64_t moved)
{
	return p && p->fn && p->fn(p->arg, p->done, p->total, p->read, moved) ? -ECANCELED : 0;
}

/* A background pass's step of worked_ns is done: sleep while volume I/O is going on. */
static void gc_pace(struct rod_store *s, bool background, uint64_t worked_ns)
{
	uint64_t now = rod_now_ns(), ns;

	if (!background || now - atomic_load(&s->io_last_ns) > GC_PACE_RECENT_NS || space_low(s))
		return;
	ns = ROD_MIN((uint64_t)GC_PACE_SLEEP * worked_ns, GC_PACE_MAX_NS);
	if (ns)
		usleep((useconds_t)(ns / 1000));
}

bool gc_defer(uint64_t now, uint64_t io_last, uint64_t *due_since)
{
	if (!*due_since)
		*due_since = now;
	if (now - io_last >= GC_QUIET_NS || now - *due_since >= GC_DEFER_MAX_NS) {
		*due_since = 0;
		return false;
	}
	return true;
}

/* only_if_worth: leave segments more than half live. background: paced (gc_pace). */
static int gc_pass(struct rod_store *s, bool full, bool only_if_worth, bool background,
		   struct gc_prog *prog)
{
	struct reader_set rs;
	struct gc_mark g = { 0 };
	uint64_t *ids = NULL, ckseg, moved = 0, budget = GC_MOVE_BUDGET;
	size_t n = 0;
	struct seg_scan *ss = NULL;
	size_t nss = 0;
	bool gc_begun = false;
	struct relogged done = { 0 };
	uint64_t t0 = rod_now_ns(), t_mark = 0, t_scan = 0, t_move = 0, relogged = 0, nfreed = 0;
	int rc;

	pthread_mutex_lock(&s->gc_lock);
	if ((rc = gc_report(prog, 0)))
		goto out;
	if (full || seglog_size(s->log, s->log->cur_id) >= SEG_SIZE / 4) {
		/* Seal the open segment so its garbage can be collected too. */
		struct citem ci = { .kind = CI_FLUSH, .durable = true, .roll = true };

		rc = commit_run(s, &ci);
		if (rc)
			goto out;
	}
	/* Everything before the checkpoint is applied and its segments are not needed for
	 * replay; the open segment and later ones are left alone. */
	rc = store_checkpoint(s);
	if (rc)
		goto out;
	pthread_mutex_lock(&s->bg_m);
	ckseg = s->ckpt_seg;
	pthread_mutex_unlock(&s->bg_m);

	/* From here on dedupe must not reference chunks this pass may delete
	 * (red_entry_dedup, red_gc_doom). */
	red_gc_begin(s);
	gc_begun = true;
	readers_collect(s, &rs);
	/* Lineages without readers are dropped. */
	pthread_rwlock_rdlock(&s->state);
	g.dead_lins = malloc((s->media.n + 1) * sizeof(uint64_t));
	for (size_t i = 0; g.dead_lins && i < s->media.n; i++)
		if (!readers_find(&rs, s->media.lins[i]->id))
			g.dead_lins[g.ndead++] = s->media.lins[i]->id;
	pthread_rwlock_unlock(&s->state);
	rc = mark_scan(s, &rs, 0, gc_mark_fn, &g);
	readers_free(&rs);
	t_mark = rod_now_ns() - t0;
	if (rc)
		goto out;
	if (g.ndead) {
		struct citem ci = { .kind = CI_OP, .durable = true, .build = drop_build, .arg = &g };

		rc = commit_run(s, &ci);
		if (rc)
			goto out;
	}
	rc = seglog_list(s->log, &ids, &n);
	if (rc)
		goto out;
	ss = calloc(n ? n : 1, sizeof(*ss));
	if (!ss) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		if (ids[i] >= ckseg || ids[i] == s->log->cur_id)
			continue;
		ss[nss].id = ids[i];
		ss[nss].size = seglog_size(s->log, ids[i]);
		nss++;
	}
	/* progress: every segment is examined once, then some are moved (an estimate
	 * until the move loop ends: the live bytes of a segment are known only here) */
	if (prog)
		prog->total = 2 * nss;
	for (size_t i = 0; i < nss && !rc; i++) {
		uint64_t ts = rod_now_ns();

		if ((rc = gc_report(prog, moved)))
			break;
		rc = seg_process(s, &g, &ss[i], false, &moved, NULL);
		gc_pace(s, background, rod_now_ns() - ts);
		if (prog) {
			prog->done++;
			prog->read += ss[i].size;
		}
	}
	t_scan = rod_now_ns() - t0 - t_mark;
	/* Cost-benefit: free space gained per byte copied, emptiest segments first. */
	for (size_t i = 1; i < nss; i++)
		for (size_t j = i; j > 0 && ss[j].live * ss[j - 1].size < ss[j - 1].live * ss[j].size; j--) {
			struct seg_scan t = ss[j];
			ss[j] = ss[j - 1];
			ss[j - 1] = t;
		}
	if (prog && !rc) {
		/* the segments the loop below will take, with their live bytes as the estimate
		 * of what moving them costs */
		uint64_t b = budget, nmove = 0;

		for (size_t i = 0; i < nss; i++) {
			double u = ss[i].size ? (double)ss[i].live / ss[i].size : 0;

			if (!full && (u > 0.75 || (only_if_worth && u > 0.5) || ss[i].live > b))
				break;
			b -= ROD_MIN(b, ss[i].live);
			nmove++;
		}
		prog->total = nss + nmove;
	}
	for (size_t i = 0; i < nss && !rc; i++) {
		double u = ss[i].size ? (double)ss[i].live / ss[i].size : 0;

		if (!full && (u > 0.75 || (only_if_worth && u > 0.5)))
			break;
		if (!full && ss[i].live > budget)
			break;
		if ((rc = gc_report(prog, moved)))
			break;
		uint64_t before = moved;
		struct relog rl = { .done = &done };
		uint64_t tm = rod_now_ns();

		/* Dedupe goes on during the pass: not onto this segment from now on, and the
		 * segment stays when a dedupe entry already references a chunk of it that the
		 * mark found dead (it would not be moved). */
		if (!red_gc_doom(s, ss[i].id, mark_live, &g))
			continue;
		rc = seg_process(s, &g, &ss[i], true, &moved, &rl);
		mutbuf_free(&rl.keys);
		mutbuf_free(&rl.vals);
		nfreed++;
		relogged += rl.nkeys;
		tm = rod_now_ns() - tm;
		t_move += tm;
		if (rc)
			break;
		gc_pace(s, background, tm);
		budget -= ROD_MIN(budget, moved - before);
		rc = seglog_remove(s->log, ss[i].id);
		if (!rc)
			atomic_fetch_add(&s->st_gc_freed, 1);
		if (prog) {
			prog->done++;
			prog->read += ss[i].size;
			if (prog->done > prog->total)
				prog->total = prog->done;
		}
	}
	if (prog && !rc) {
		prog->total = prog->done;
		(void)gc_report(prog, moved);   /* the final figures; nothing is left to stop */
	}
	atomic_fetch_add(&s->st_gc_moved, moved);
	atomic_fetch_add(&s->st_gc_runs, 1);
	rod_info("store: garbage collection%s: %zu segments examined, %llu freed, %.1f MiB moved, "
		 "%llu keys relogged; %.2f s (mark %.2f, scan %.2f, move and relog %.2f)",
		 background ? " (background)" : "", nss, (unsigned long long)nfreed,
		 moved / 1048576.0, (unsigned long long)relogged, (rod_now_ns() - t0) / 1e9,
		 t_mark / 1e9, t_scan / 1e9, t_move / 1e9);
out:
	if (gc_begun)
		red_gc_end(s);
	free(ss);
	free(ids);
	free(g.live.slot);
	free(g.dead_lins);
	free(done.k);
	pthread_mutex_unlock(&s->gc_lock);
	if (rc == -ECANCELED)
		rod_info("store: garbage collection pass stopped on request");
	else if (rc)
		rod_warn("store: garbage collection pass failed: %s", strerror(-rc));
	return rc;
}

int rod_store_gc(struct rod_store *s, bool full)
{
	return gc_pass(s, full, false, false, NULL);
}

int rod_store_gc_ex(struct rod_store *s, bool full,
		    int (*progress)(void *arg, uint64_t done, uint64_t total, uint64_t bytes_read,
				    uint64_t bytes_moved),
		    void *arg)
{
	struct gc_prog p = { .fn = progress, .arg = arg };

	return gc_pass(s, full, false, false, &p);
}

void gc_maybe(struct rod_store *s)
{
	/* A pass marks the whole map, so it runs when it can pay: space is short, or the
	 * log grew by a quarter (at least 1 GiB) since the last pass. The second kind waits
	 * for a quiet moment and is paced (gc_defer, gc_pace). */
	uint64_t used = space_used(s), last = s->gc_last_used;
	bool pressed = space_low(s) || rod_store_over_soft_threshold(s);

	if (!pressed && used <= last + ROD_MAX(1ull << 30, last / 4)) {
		s->gc_due_since = 0;
		return;
	}
	if (!pressed && gc_defer(rod_now_ns(), atomic_load(&s->io_last_ns), &s->gc_due_since))
		return;
	s->gc_due_since = 0;
	gc_pass(s, false, !pressed, !pressed, NULL);
	s->gc_last_used = space_used(s);
}
