/* Replication support (include/rod/store.h "Replication support", docs/engine.md):
 * what changed between two snapshots, grains as stored, writes by fingerprint.
 *
 * Diff of two snapshots of one volume. Both read the volume's lineage L, at frozen
 * epochs eb < es. A grain of L reads at epoch e the newest block entry with epoch <= e
 * or the newest covering range entry with epoch <= e (medium.h); targets of range
 * entries are themselves frozen views. So a grain can read differently at es than at
 * eb only if L has a block entry or a range entry covering it with an epoch in
 * (eb, es]. The walk enumerates those (block keys L|lba|~epoch in key order, range
 * entries from RAM), resolves each candidate grain at es and reports what snap holds
 * there. Nothing in the engine deletes a block entry that a snapshot still reads (GC
 * only drops whole lineages nobody reads; a write-back crash drops entries never
 * acknowledged as durable), so no change is missed; a rewrite of the same bytes is
 * reported, which the contract allows.
 *
 * Chunk ids are segment << 20 | index, assigned once when a chunk is first stored.
 * GC moves a chunk without changing its id (a relocation entry plus the chunk table,
 * chunk id -> new place and format), and segment ids are never reused (segment.c keeps
 * the newest file, even when empty, so the next id at open is always new). So a chunk
 * id names the same bytes for the store's life; every grain deduplicated onto a chunk
 * carries its id. */
#include "repl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "reduce_store.h"
#include "rod/log.h"
#include "rod/util.h"
#include "store_int.h"

#define DATA_EXTENT_GRAINS 256u   /* DATA extents are cut at 1 MiB so callers can stream */

/* ---- reporting: coalesce grains into extents ---- */

struct emitter {
	int (*fn)(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind);
	void *arg;
	uint64_t size;                /* snap's size in bytes: the last extent ends there */
	bool have;
	uint64_t g0, n;
	enum rod_diff_kind kind;
	struct repl_diff_stats *st;
};

static int emit_flush(struct emitter *e)
{
	uint64_t off = e->g0 * ROD_GRAIN, len = e->n * ROD_GRAIN;

	if (!e->have)
		return 0;
	e->have = false;
	if (off >= e->size)
		return 0;
	if (len > e->size - off)
		len = e->size - off;
	e->st->extents++;
	return e->fn(e->arg, off, len, e->kind);
}

static int emit(struct emitter *e, uint64_t g, uint64_t n, enum rod_diff_kind kind)
{
	while (n) {
		uint64_t take;

		if (e->have && e->kind == kind && e->g0 + e->n == g &&
		    (kind != ROD_DIFF_DATA || e->n < DATA_EXTENT_GRAINS)) {
			take = kind == ROD_DIFF_DATA ? ROD_MIN(n, DATA_EXTENT_GRAINS - e->n) : n;
			e->n += take;
		} else {
			int rc = emit_flush(e);

			if (rc)
				return rc;
			take = kind == ROD_DIFF_DATA ? ROD_MIN(n, DATA_EXTENT_GRAINS) : n;
			e->have = true;
			e->g0 = g;
			e->n = take;
			e->kind = kind;
		}
		g += take;
		n -= take;
	}
	return 0;
}

/* ---- resolution of one frozen view ---- */

struct resolver {
	struct rod_store *s;
	struct meta_iter *it;
	uint64_t lin, epoch;
	struct repl_diff_stats *st;
};

/* What grain g holds, for how many grains (up to maxrun; DATA: 1). */
static int resolve(struct resolver *r, uint64_t g, uint64_t maxrun, enum rod_diff_kind *kind,
		   uint64_t *chunk, uint64_t *run)
{
	struct resolved res;
	int rc;

	rc = store_resolve(r->s, r->it, r->lin, r->epoch, g, maxrun, &res);
	r->st->resolves++;
	if (rc)
		return rc;
	*kind = res.kind == RES_CHUNK ? ROD_DIFF_DATA :
		res.kind == RES_ZERO ? ROD_DIFF_ZERO : ROD_DIFF_UNMAP;
	*chunk = res.kind == RES_CHUNK ? res.v.chunk : 0;
	*run = res.run ? ROD_MIN(res.run, maxrun) : 1;
	return 0;
}

/* Report grains [a, b) as snap holds them. mapped_only: skip unmapped runs. */
static int report_range(struct resolver *r, struct emitter *e, uint64_t a, uint64_t b,
			bool mapped_only)
{
	while (a < b) {
		enum rod_diff_kind kind;
		uint64_t chunk, run;
		int rc = resolve(r, a, b - a, &kind, &chunk, &run);

		if (rc)
			return rc;
		if (!mapped_only || kind != ROD_DIFF_UNMAP) {
			rc = emit(e, a, run, kind);
			if (rc)
				return rc;
		}
		a += run;
	}
	return 0;
}

/* ---- the epoch window of one lineage ---- */

struct iv {
	uint64_t a, b;
};

static int iv_cmp(const void *x, const void *y)
{
	const struct iv *p = x, *q = y;

	return p->a < q->a ? -1 : p->a > q->a;
}

/* Sorts v[0..n) and merges overlapping or touching intervals in place; returns how
 * many disjoint intervals remain. */
static size_t iv_merge(struct iv *v, size_t n)
{
	size_t m = 0;

	if (n)
		qsort(v, n, sizeof(*v), iv_cmp);
	for (size_t i = 0; i < n; i++) {
		if (m && v[i].a <= v[m - 1].b) {
			if (v[i].b > v[m - 1].b)
				v[m - 1].b = v[i].b;
		} else {
			v[m++] = v[i];
		}
	}
	return m;
}

/* Range entries of lin with epoch in (eb, es] (and spans of such entries flatten turned
 * into block entries), clipped to [g0, g1), merged into sorted disjoint intervals. */
static int window_ranges(struct rod_store *s, uint64_t lin, uint64_t eb, uint64_t es,
			 uint64_t g0, uint64_t g1, struct iv **out, size_t *nout,
			 struct repl_diff_stats *st)
{
	struct lineage *l;
	struct iv *v = NULL;
	size_t n = 0;

	pthread_rwlock_rdlock(&s->state);
	l = media_find(&s->media, lin);
	if (l && (l->nrng || l->nchg_extra)) {
		v = malloc((l->nrng + l->nchg_extra) * sizeof(*v));
		if (!v) {
			pthread_rwlock_unlock(&s->state);
			return -ENOMEM;
		}
		/* Range entries flatten replaced by block entries at their epoch. */
		for (size_t j = 0; j < l->nchg_extra; j++) {
			const struct chg_extra *x = &l->chg_extra[j];
			uint64_t a = ROD_MAX(x->start, g0), b = ROD_MIN(x->end, g1);

			if (x->epoch > eb && x->epoch <= es && a < b) {
				st->rng_entries++;
				v[n++] = (struct iv){ a, b };
			}
		}
		for (size_t j = 0; j < l->nrng; j++) {
			const struct rng_ent *r = &l->rng[j];

			if (r->epoch <= eb || r->epoch > es)
				continue;
			st->rng_entries++;
			uint64_t a = ROD_MAX(r->start, g0), b = ROD_MIN(r->end, g1);

			if (a < b)
				v[n++] = (struct iv){ a, b };
		}
	}
	pthread_rwlock_unlock(&s->state);
	*out = v;
	*nout = iv_merge(v, n);
	return 0;
}

/* Grain runs that got block entries at an epoch of (eb, es], from the change summaries
 * (medium.h): one CF_LIN record per sealed epoch. *all when some epoch of the window has
 * no usable summary (written before this code ran, or at an epoch current across a
 * restart): the caller then reads every block key of the lineage. */
static int window_dirty(struct rod_store *s, uint64_t lin, uint64_t eb, uint64_t es,
			struct iv **out, size_t *nout, bool *all, struct repl_diff_stats *st)
{
	struct lineage *l;
	struct meta_iter *it;
	struct iv *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t after, found = 0;
	uint8_t k[16];
	int rc = 0;

	*out = NULL;
	*nout = 0;
	*all = true;
	pthread_rwlock_rdlock(&s->state);
	l = media_find(&s->media, lin);
	after = l ? l->chg_after : UINT64_MAX;
	pthread_rwlock_unlock(&s->state);
	if (eb < after)
		return 0;
	it = meta_iter_new(s->meta, CF_LIN);
	if (!it)
		return -ENOMEM;
	lin_chg_key(k, lin, eb + 1);
	for (meta_iter_seek(it, k, sizeof(k)); meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *kk = meta_iter_key(it, &kl), *vv;
		uint64_t *r;
		size_t nr;
		bool a;

		if (kl < 16 || rod_get_be64(kk) != lin || rod_get_be64(kk + 8) > es)
			break;
		if (kl != 16)
			continue; /* lineage|epoch|seq: flatten's spans, kept in RAM (window_ranges) */
		st->chg_keys++;
		vv = meta_iter_val(it, &vl);
		if (lin_chg_decode(vv, vl, &a, &r, &nr) || a) {
			free(r);
			found = 0;
			break;
		}
		found++;
		if (n + nr > cap) {
			size_t nc = ROD_MAX(2 * cap, n + nr + 16);
			struct iv *nv = realloc(v, nc * sizeof(*nv));

			if (!nv) {
				free(r);
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		for (size_t i = 0; i < nr; i++)
			v[n++] = (struct iv){ r[2 * i], r[2 * i + 1] };
		free(r);
	}
	meta_iter_free(it);
	if (rc || found != es - eb) {
		free(v);
		return rc;
	}
	*out = v;
	*nout = iv_merge(v, n);
	*all = false;
	return 0;
}

/* Block-entry keys of lin with epoch in (eb, es], in lba order; only inside the dirty
 * grain runs when there are some. */
struct blockscan {
	struct meta_iter *it;
	uint64_t lin, eb, es, g1;
	bool started;
	const struct iv *dirty;  /* NULL: every block key of the lineage */
	size_t ndirty, di;
	struct repl_diff_stats *st;
};

/* Next grain >= pos (and < g1) with a block entry in the window; UINT64_MAX when none. */
static uint64_t block_next(struct blockscan *bs, uint64_t pos)
{
	for (;;) {
		uint8_t k[MAP_KEY_LEN];
		bool seek = !bs->started, jump = false;

		if (bs->dirty) {
			while (bs->di < bs->ndirty && bs->dirty[bs->di].b <= pos)
				bs->di++;
			if (bs->di == bs->ndirty)
				return UINT64_MAX;
			if (pos < bs->dirty[bs->di].a)
				pos = bs->dirty[bs->di].a;
		}
		if (pos >= bs->g1)
			return UINT64_MAX;
		if (!seek) {
			size_t kl;
			const uint8_t *kk;
			uint64_t klin, klba, kep;

			if (!meta_iter_valid(bs->it))
				return UINT64_MAX;
			kk = meta_iter_key(bs->it, &kl);
			if (kl != MAP_KEY_LEN)
				seek = true;
			else {
				map_key_decode(kk, &klin, &klba, &kep);
				if (klin != bs->lin)
					return UINT64_MAX;
				/* Far behind: seek rather than step through the keys between. */
				seek = klba + 1 < pos;
			}
		}
		if (seek) {
			map_key(k, bs->lin, pos, EPOCH_MAX);
			meta_iter_seek(bs->it, k, sizeof(k));
			bs->started = true;
		}
		for (; meta_iter_valid(bs->it); meta_iter_next(bs->it)) {
			size_t kl;
			const uint8_t *kk = meta_iter_key(bs->it, &kl);
			uint64_t klin, klba, kep;

			if (kl != MAP_KEY_LEN)
				continue;
			map_key_decode(kk, &klin, &klba, &kep);
			bs->st->map_keys++;
			if (klin != bs->lin || klba >= bs->g1)
				return UINT64_MAX;
			if (klba < pos)
				continue;
			if (bs->dirty && klba >= bs->dirty[bs->di].b) {
				pos = klba;   /* past this dirty run: on to the next one */
				jump = true;
				break;
			}
			if (kep > bs->eb && kep <= bs->es) {
				meta_iter_next(bs->it); /* the next call starts after this key */
				return klba;
			}
		}
		if (!jump)
			return UINT64_MAX;
	}
}

/* Same lineage: candidates are the window's block and range entries in [g0, g1). */
static int diff_window(struct rod_store *s, struct resolver *r, struct emitter *e,
		       uint64_t eb, uint64_t es, uint64_t g0, uint64_t g1)
{
	struct blockscan bs = { .lin = r->lin, .eb = eb, .es = es, .g1 = g1, .st = r->st };
	struct iv *ivs = NULL, *dirty = NULL;
	size_t niv = 0, ri = 0, ndirty = 0;
	uint64_t pos = g0, nb = UINT64_MAX;
	bool nb_valid = false, all;
	int rc;

	if (g0 >= g1)
		return 0;
	rc = window_ranges(s, r->lin, eb, es, g0, g1, &ivs, &niv, r->st);
	if (!rc)
		rc = window_dirty(s, r->lin, eb, es, &dirty, &ndirty, &all, r->st);
	if (rc) {
		free(ivs);
		return rc;
	}
	r->st->method = all ? REPL_DIFF_WINDOW_SCAN : REPL_DIFF_WINDOW;
	if (!all) {
		/* No block entry in the window at all: an empty run list scans nothing. */
		static const struct iv none = { 0, 0 };

		bs.dirty = ndirty ? dirty : &none;
		bs.ndirty = ndirty;
	}
	bs.it = meta_iter_new(s->meta, CF_MAP);
	if (!bs.it) {
		free(ivs);
		free(dirty);
		return -ENOMEM;
	}
	while (pos < g1) {
		while (ri < niv && ivs[ri].b <= pos)
			ri++;
		if (!nb_valid || nb < pos) {
			nb = block_next(&bs, pos);
			nb_valid = true;
		}
		uint64_t rs = ri < niv ? ROD_MAX(ivs[ri].a, pos) : UINT64_MAX;

		if (rs == UINT64_MAX && nb == UINT64_MAX)
			break;
		if (rs <= nb) {
			/* A range entry of the window: every grain under it may have changed. */
			rc = report_range(r, e, rs, ivs[ri].b, false);
			pos = ivs[ri].b;
		} else {
			rc = report_range(r, e, nb, nb + 1, false);
			pos = nb + 1;
		}
		if (rc)
			break;
	}
	meta_iter_free(bs.it);
	free(ivs);
	free(dirty);
	return rc;
}

/* base NULL for a lineage with no range entry visible at epoch: every grain reads its
 * newest block entry with epoch <= epoch (medium.h), so one pass over the lineage's keys
 * in order says what snap holds, without a resolve per grain. -EAGAIN: the lineage has
 * range entries, resolve instead. */
static int full_scan(struct rod_store *s, struct resolver *r, struct emitter *e, uint64_t g0,
		     uint64_t g1)
{
	struct lineage *l;
	struct meta_iter *it;
	uint8_t k[MAP_KEY_LEN];
	uint64_t last = UINT64_MAX;
	bool ranges = false;
	int rc = 0;

	pthread_rwlock_rdlock(&s->state);
	l = media_find(&s->media, r->lin);
	for (size_t j = 0; l && j < l->nrng && !ranges; j++)
		ranges = l->rng[j].epoch <= r->epoch;
	pthread_rwlock_unlock(&s->state);
	if (!l || ranges)
		return -EAGAIN;
	it = meta_iter_new(s->meta, CF_MAP);
	if (!it)
		return -ENOMEM;
	map_key(k, r->lin, g0, EPOCH_MAX);
	for (meta_iter_seek(it, k, sizeof(k)); meta_iter_valid(it) && !rc; meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *kk = meta_iter_key(it, &kl), *vv;
		uint64_t klin, klba, kep;
		struct map_val mv;

		if (kl != MAP_KEY_LEN)
			continue;
		map_key_decode(kk, &klin, &klba, &kep);
		r->st->map_keys++;
		if (klin != r->lin || klba >= g1)
			break;
		/* keys of one grain come newest first: the first with epoch <= es answers */
		if (klba == last || kep > r->epoch)
			continue;
		last = klba;
		vv = meta_iter_val(it, &vl);
		if (vl < MAP_VAL_LEN)
			continue;
		map_val_decode(&mv, vv);
		if (mv.chunk == CHUNK_UNMAP)
			continue;
		rc = emit(e, klba, 1, mv.chunk == CHUNK_ZERO ? ROD_DIFF_ZERO : ROD_DIFF_DATA);
	}
	meta_iter_free(it);
	return rc;
}

/* Different lineages: resolve both, report where kind or chunk differ. */
static int diff_compare(struct resolver *rb, struct resolver *rs, struct emitter *e,
			uint64_t g0, uint64_t g1)
{
	uint64_t g = g0;

	while (g < g1) {
		enum rod_diff_kind kb, ks;
		uint64_t cb, cs, nb, ns, n;
		int rc = resolve(rb, g, g1 - g, &kb, &cb, &nb);

		if (!rc)
			rc = resolve(rs, g, g1 - g, &ks, &cs, &ns);
		if (rc)
			return rc;
		n = ROD_MIN(nb, ns);
		if (kb != ks || cb != cs) {
			rc = emit(e, g, n, ks);
			if (rc)
				return rc;
		}
		g += n;
	}
	return 0;
}

struct side {
	struct rod_vol *v;
	uint64_t lin, epoch, size, parent;
};

static int side_open(struct rod_store *s, const char *name, struct side *sd)
{
	int rc = rod_vol_open(s, name, &sd->v);

	if (rc)
		return rc;
	pthread_rwlock_rdlock(&s->state);
	if (sd->v->rec->destroyed || sd->v->rec->eradicated)
		rc = -ENOENT;
	else if (!sd->v->rec->is_snapshot)
		rc = -EINVAL;
	sd->lin = sd->v->rec->lineage;
	sd->epoch = sd->v->rec->epoch;
	sd->size = sd->v->rec->size;
	sd->parent = sd->v->rec->parent_id;
	pthread_rwlock_unlock(&s->state);
	if (rc) {
		rod_vol_close(sd->v);
		sd->v = NULL;
	}
	return rc;
}

int repl_vol_diff(struct rod_store *s, const char *base, const char *snap, uint64_t start_off,
		  int (*fn)(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind),
		  void *arg, struct repl_diff_stats *st)
{
	struct repl_diff_stats dummy;
	struct side b = { 0 }, sn = { 0 };
	struct resolver rs = { .s = s }, rb = { .s = s };
	struct emitter e = { .fn = fn, .arg = arg };
	uint64_t g0 = start_off / ROD_GRAIN, sg, bg;
	int rc;

	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	if (!s || !snap || !fn)
		return -EINVAL;
	rc = side_open(s, snap, &sn);
	if (rc)
		return rc;
	if (base) {
		rc = side_open(s, base, &b);
		if (rc) {
			rod_vol_close(sn.v);
			return rc;
		}
		if (b.lin == sn.lin && b.epoch > sn.epoch) {
			rc = -EINVAL;
			goto out;
		}
	}
	e.size = sn.size;
	e.st = st;
	sg = (sn.size + ROD_GRAIN - 1) / ROD_GRAIN;
	rs.lin = sn.lin;
	rs.epoch = sn.epoch;
	rs.st = st;
	rs.it = meta_iter_new(s->meta, CF_MAP);
	if (!rs.it) {
		rc = -ENOMEM;
		goto out;
	}
	if (!base) {
		st->method = REPL_DIFF_FULL_SCAN;
		rc = full_scan(s, &rs, &e, g0, sg);
		if (rc == -EAGAIN) {
			st->method = REPL_DIFF_FULL;
			rc = report_range(&rs, &e, g0, sg, true);
		}
	} else if (b.lin == sn.lin) {
		bg = (b.size + ROD_GRAIN - 1) / ROD_GRAIN;
		st->method = REPL_DIFF_WINDOW;
		rc = diff_window(s, &rs, &e, b.epoch, sn.epoch, g0, ROD_MIN(sg, bg));
		/* Grown since base: what snap maps beyond base's end. */
		if (!rc && sg > bg)
			rc = report_range(&rs, &e, ROD_MAX(g0, bg), sg, true);
	} else {
		bg = (b.size + ROD_GRAIN - 1) / ROD_GRAIN;
		st->method = REPL_DIFF_COMPARE;
		rb.lin = b.lin;
		rb.epoch = b.epoch;
		rb.st = st;
		rb.it = meta_iter_new(s->meta, CF_MAP);
		if (!rb.it) {
			rc = -ENOMEM;
			goto out;
		}
		rc = diff_compare(&rb, &rs, &e, g0, ROD_MIN(sg, bg));
		if (!rc && sg > bg)
			rc = report_range(&rs, &e, ROD_MAX(g0, bg), sg, true);
	}
	if (!rc)
		rc = emit_flush(&e);
	/* Destroyed meanwhile: its lineage may be gone, the walk meant nothing. */
	if (!rc) {
		pthread_rwlock_rdlock(&s->state);
		if (sn.v->rec->destroyed || sn.v->rec->eradicated ||
		    (b.v && (b.v->rec->destroyed || b.v->rec->eradicated)))
			rc = -ENOENT;
		pthread_rwlock_unlock(&s->state);
	}
out:
	meta_iter_free(rs.it);
	meta_iter_free(rb.it);
	if (b.v)
		rod_vol_close(b.v);
	rod_vol_close(sn.v);
	return rc;
}

uint64_t repl_chg_keys(struct rod_store *s)
{
	struct meta_iter *it = meta_iter_new(s->meta, CF_LIN);
	uint64_t n = 0;

	for (meta_iter_first(it); it && meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl;

		meta_iter_key(it, &kl);
		n += kl == 16 || kl == 24;
	}
	meta_iter_free(it);
	return n;
}

int rod_vol_diff(struct rod_store *s, const char *base, const char *snap, uint64_t start_off,
		 int (*fn)(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind),
		 void *arg)
{
	return repl_vol_diff(s, base, snap, start_off, fn, arg, NULL);
}

/* ---- grains as stored ---- */

int rod_vol_read_raw(struct rod_vol *v, uint64_t off, struct rod_grain_raw *out)
{
	struct rod_store *s;
	struct meta_iter *it;
	struct resolved res;
	uint64_t lin, epoch, size;
	uint8_t tmp[ROD_GRAIN], *stored;
	struct map_val m;
	bool ro;
	int rc;

	if (!v || !out)
		return -EINVAL;
	s = v->s;
	if (off % ROD_GRAIN)
		return -EINVAL;
	rc = io_vol_view(v, &lin, &epoch, &size, &ro);
	if (rc)
		return rc;
	if (off >= size)
		return -ERANGE;
	memset(out, 0, offsetof(struct rod_grain_raw, data));
	it = meta_iter_new(s->meta, CF_MAP);
	if (!it)
		return -ENOMEM;
	rc = store_resolve(s, it, lin, epoch, off / ROD_GRAIN, 1, &res);
	meta_iter_free(it);
	if (rc)
		return rc;
	if (res.kind != RES_CHUNK) {
		out->kind = res.kind == RES_ZERO ? ROD_DIFF_ZERO : ROD_DIFF_UNMAP;
		return 0;
	}
	/* The read path's own fetch: follows the chunk table when GC moved the chunk. */
	rc = io_chunk_fetch(s, &res.v, out->data, tmp, &m, &stored);
	if (rc)
		return rc;
	if (m.len > ROD_GRAIN || !m.len || (m.comp == COMP_NONE && m.len != ROD_GRAIN) ||
	    m.comp > COMP_ZSTD)
		return -EBADMSG;
	if (m.enc_gen) {
		if (!s->red || !s->red->have_dek) {
			rod_err("store: chunk %llx is encrypted but the store has no data key loaded",
				(unsigned long long)m.chunk);
			return -EIO;
		}
		if (m.len < RED_MIN_STORED ||
		    red_decrypt(&s->red->dek, m.chunk, m.enc_gen, stored, out->data, m.len))
			return -EIO;
	} else if (stored != out->data) {
		memcpy(out->data, stored, m.len);
	}
	out->kind = ROD_DIFF_DATA;
	out->chunk_id = m.chunk;
	out->comp = m.comp == COMP_LZ4 ? ROD_RAW_COMP_LZ4 :
		    m.comp == COMP_ZSTD ? ROD_RAW_COMP_ZSTD : ROD_RAW_COMP_NONE;
	out->len = m.len;
	return 0;
}

int rod_grain_decompress(uint8_t comp, const void *src, uint32_t len, void *dst4k)
{
	if (!src || !dst4k || !len || len > ROD_GRAIN)
		return -EINVAL;
	switch (comp) {
	case ROD_RAW_COMP_NONE:
		if (len != ROD_GRAIN)
			return -EINVAL;
		memcpy(dst4k, src, ROD_GRAIN);
		return 0;
	case ROD_RAW_COMP_LZ4:
		return red_decompress(COMP_LZ4, src, len, dst4k, ROD_GRAIN) ? -EINVAL : 0;
	case ROD_RAW_COMP_ZSTD:
		return red_decompress(COMP_ZSTD, src, len, dst4k, ROD_GRAIN) ? -EINVAL : 0;
	}
	return -EINVAL;
}

uint32_t rod_grain_compress_zstd(const void *grain, void *dst)
{
	return red_zstd_compress(grain, ROD_GRAIN, dst, ROD_GRAIN);
}

void rod_store_fingerprint(struct rod_store *s, const void *grain, uint8_t fp[32])
{
	if (red_fingerprint(s->red->fpk, grain, ROD_GRAIN, fp))
		memset(fp, 0, 32);
}

/* ---- write by fingerprint ---- */

int rod_vol_write_fp(struct rod_vol *v, uint64_t off, const uint8_t fp[32], unsigned flags)
{
	struct rod_store *s;
	struct cgrain cg;
	struct citem ci;
	struct map_val mv;
	uint64_t lin, epoch, size, g;
	uint8_t *data;
	bool ro, no_dedupe;
	int rc;

	if (!v || !fp)
		return -EINVAL;
	s = v->s;
	if (off % ROD_GRAIN)
		return -EINVAL;
	rc = io_vol_view(v, &lin, &epoch, &size, &ro);
	if (rc)
		return rc;
	if (ro)
		return -EROFS;
	if (off >= size)
		return -ERANGE;
	/* Dedupe off: the fingerprint table is not kept up to date, nothing to trust. A
	 * volume with dedupe switched off takes no dedupe hits either. */
	if (!s->red->dedupe)
		return -ENOENT;
	pthread_rwlock_rdlock(&s->state);
	no_dedupe = v->rec->reduce_off & RED_VOL_NO_DEDUPE;
	pthread_rwlock_unlock(&s->state);
	if (no_dedupe)
		return -ENOENT;
	if (space_low(s))
		return -ENOSPC;
	memset(&cg, 0, sizeof(cg));
	memcpy(cg.red.fp, fp, RED_FP_LEN);
	cg.red.has_fp = true;
	red_fp_lookup(s, &cg.red); /* the write path's own lookup (GC rules included) */
	if (!cg.red.dup)
		return -ENOENT;
	/* The chunk's clear bytes, checked: should a GC pass start before the commit, the
	 * commit thread stores them instead of referencing the chunk (as for any write). */
	data = malloc(ROD_GRAIN);
	if (!data)
		return -ENOMEM;
	mv = (struct map_val){ .chunk = cg.red.chunk, .off = cg.red.off, .len = cg.red.len,
			       .crc = cg.red.crc, .comp = cg.red.comp, .enc_gen = cg.red.enc_gen };
	rc = io_chunk_read(s, &mv, data);
	if (rc) {
		free(data);
		/* Freed between the lookup and the read: as if it were not there. */
		return rc == -EIO ? -ENOENT : rc;
	}
	g = off / ROD_GRAIN;
	cg.lba = g;
	cg.kind = ENT_DATA;
	cg.data = data;
	cg.crc = rod_crc32c(0, data, ROD_GRAIN);
	memset(&ci, 0, sizeof(ci));
	ci.kind = CI_WRITE;
	ci.durable = v->rec->cache == ROD_CACHE_WRITE_THROUGH || (flags & ROD_IO_FUA);
	ci.rec = v->rec;
	ci.g = &cg;
	ci.ng = 1;
	stripe_lock_range(s, lin, g, 1, false);
	rc = commit_run(s, &ci);
	stripe_unlock_range(s, lin, g, 1, false);
	free(data);
	if (!rc)
		atomic_fetch_add(&s->st_user, ROD_GRAIN);
	return rc;
}
