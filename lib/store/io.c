/* The rod_io path: reads resolve through the mediums inline; writes, zero/unmap, flush,
 * compare-and-write and copy become commit items completed by the commit thread. */
#include "store_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "mapcache.h"
#include "reduce_store.h"
#include "rod/log.h"
#include "rod/util.h"

#define ITEM_GRAINS 256u        /* grains per commit item (1 MiB) */
#define COPY_THREADS 8  /* copies mostly wait for a commit: several share one */
#define ZERO_RANGE_GRAINS 256u  /* zero/unmap this large or larger: one range entry */


/* ---- grain lock stripes ---- */

static unsigned stripe_of(uint64_t lin, uint64_t g)
{
	return (unsigned)((lin * 0x9e3779b97f4a7c15ull + g) % ROD_STRIPES);
}

static void stripe_one(struct stripe *st, bool excl, bool lock)
{
	pthread_mutex_lock(&st->m);
	if (lock) {
		while (st->excl || (excl && st->shared))
			pthread_cond_wait(&st->c, &st->m);
		if (excl)
			st->excl = true;
		else
			st->shared++;
	} else {
		if (excl)
			st->excl = false;
		else
			st->shared--;
		pthread_cond_broadcast(&st->c);
	}
	pthread_mutex_unlock(&st->m);
}

/* Consecutive grains use consecutive stripes, so a range is at most two ascending runs;
 * taking them in ascending stripe order avoids deadlock between overlapping ranges. */
static void stripe_range(struct rod_store *s, uint64_t lin, uint64_t g0, uint64_t n, bool excl,
			 bool lock)
{
	unsigned a, b;

	if (!n)
		return;
	if (n >= ROD_STRIPES) {
		for (unsigned i = 0; i < ROD_STRIPES; i++)
			stripe_one(&s->stripes[i], excl, lock);
		return;
	}
	a = stripe_of(lin, g0);
	b = (unsigned)((a + n) % ROD_STRIPES);
	if (a < b || b == 0) {
		unsigned end = b == 0 ? ROD_STRIPES : b;
		for (unsigned i = a; i < end; i++)
			stripe_one(&s->stripes[i], excl, lock);
	} else {
		for (unsigned i = 0; i < b; i++)
			stripe_one(&s->stripes[i], excl, lock);
		for (unsigned i = a; i < ROD_STRIPES; i++)
			stripe_one(&s->stripes[i], excl, lock);
	}
}

void stripe_lock_range(struct rod_store *s, uint64_t lin, uint64_t g0, uint64_t n, bool excl)
{
	stripe_range(s, lin, g0, n, excl, true);
}

void stripe_unlock_range(struct rod_store *s, uint64_t lin, uint64_t g0, uint64_t n, bool excl)
{
	stripe_range(s, lin, g0, n, excl, false);
}

/* ---- views ---- */

struct view {
	struct vol_rec *rec;
	uint64_t lin, epoch, size;
	bool ro;
};

static int view_get(struct rod_vol *v, struct view *vw)
{
	struct rod_store *s = v->s;
	int rc = 0;

	pthread_rwlock_rdlock(&s->state);
	if (v->rec->destroyed || v->rec->eradicated) {
		rc = -ENOENT;
	} else if (v->is_pin) {
		*vw = (struct view){ v->rec, v->pin_lineage, v->pin_epoch, v->pin_size, true };
	} else if (v->rec->is_snapshot) {
		*vw = (struct view){ v->rec, v->rec->lineage, v->rec->epoch, v->rec->size, true };
	} else {
		*vw = (struct view){ v->rec, v->rec->lineage, EPOCH_MAX, v->rec->size, false };
	}
	pthread_rwlock_unlock(&s->state);
	return rc;
}

/* A handle's frozen or live view, for the other files of the store (repl.c). */
int io_vol_view(struct rod_vol *v, uint64_t *lin, uint64_t *epoch, uint64_t *size, bool *ro)
{
	struct view vw;
	int rc = view_get(v, &vw);

	if (rc)
		return rc;
	*lin = vw.lin;
	*epoch = vw.epoch;
	*size = vw.size;
	*ro = vw.ro;
	return 0;
}

static int range_check(const struct view *vw, uint64_t off, uint64_t len)
{
	if (off % ROD_SECTOR || len % ROD_SECTOR)
		return -EINVAL;
	if (off > vw->size || len > vw->size - off)
		return -ERANGE;
	return 0;
}

/* ---- reads ---- */

/* medium_resolve under the state lock (read). */
int store_resolve(struct rod_store *s, struct meta_iter *it, uint64_t lin, uint64_t epoch,
		  uint64_t g, uint64_t n, struct resolved *r)
{
	int rc;

	pthread_rwlock_rdlock(&s->state);
	rc = medium_resolve(&s->media, it, lin, epoch, g, n, r);
	pthread_rwlock_unlock(&s->state);
	return rc;
}

/* The stored bytes of a chunk, checksum-verified, not decoded: at the map value's
 * place, or, once GC moved the chunk (its home segment is gone, or a map entry rebuilt
 * from a relocation record points at a home whose bytes differ), where the chunk table
 * says, in the format recorded there. Read into dst when a whole grain, else into tmp;
 * *storedp says which, *mp the format (the chunk table overrides the map value once GC
 * moved the chunk, and maybe recompressed it). */
int io_chunk_fetch(struct rod_store *s, const struct map_val *mvp, uint8_t *dst, uint8_t *tmp,
		   struct map_val *mp, uint8_t **storedp)
{
	struct map_val m = *mvp;
	uint64_t seg = CHUNK_SEG(m.chunk), off = m.off;
	uint8_t *stored = dst;
	bool moved = false, cached = false, verified = false;
	int rc = -ENOENT;

	for (int tries = 0; tries < 4; tries++) {
		if (!m.len || m.len > ROD_GRAIN)
			return -EBADMSG;
		/* Compressed chunks are shorter than a grain: read aside, decode into dst. */
		stored = m.len == ROD_GRAIN ? dst : tmp;
		rc = seglog_read(s->log, seg, off, stored, m.len);
		/* A map entry rebuilt from a relocation record describes the moved (maybe
		 * recompressed) chunk but points at its home, which may still exist: on a
		 * checksum mismatch at home, look in the chunk table too. */
		if (!rc && moved && !cached)
			break;          /* the chunk table's place: verified below */
		if (!rc && rod_crc32c(0, stored, m.len) == m.crc) {
			verified = true;
			break;
		}
		if (rc && rc != -ENOENT)
			break;
		rc = -ENOENT;
		/* The home segment was collected: GC moved the chunk. Where to, the map cache
		 * may remember (mapcache.h); if not, or that place is gone, the chunk table. */
		uint8_t k[8];
		void *v;
		size_t vl;

		if (!moved && s->media.mc && mc_chunk_get(s->media.mc, m.chunk, &seg, &off, &m)) {
			moved = cached = true;
			continue;
		}
		cached = false;
		rod_put_be64(k, m.chunk);
		if (meta_get(s->meta, CF_CHUNK, k, 8, &v, &vl)) {
			if (tries || !seglog_has(s->log, seg))
				return -EIO;
			/* Home exists, nothing moved: the checksum failure is real. */
			rod_err("store: chunk %llx failed its checksum", (unsigned long long)m.chunk);
			return -EBADMSG;
		}
		moved = true;
		if (vl >= 24) {
			const uint8_t *b = v;

			seg = rod_get_be64(b);
			off = rod_get_be64(b + 8);
			if (vl >= 28) {
				m.len = rod_get_be32(b + 16);
				m.crc = rod_get_be32(b + 20);
				m.comp = b[24];
				m.enc_gen = rod_get_be16(b + 25);
			}
			if (s->media.mc)
				mc_chunk_put(s->media.mc, seg, off, &m);
		}
		free(v);
	}
	if (rc)
		return rc == -ENOENT ? -EIO : rc;
	if (!verified && rod_crc32c(0, stored, m.len) != m.crc) {
		rod_err("store: chunk %llx failed its checksum", (unsigned long long)m.chunk);
		return -EBADMSG;
	}
	*mp = m;
	*storedp = stored;
	return 0;
}

/* A chunk's clear grain into dst (fetch, then decrypt/decompress as recorded). */
int io_chunk_read(struct rod_store *s, const struct map_val *mvp, void *dst)
{
	uint8_t tmp[ROD_GRAIN];
	uint8_t *stored;
	struct map_val m;
	int rc;

	rc = io_chunk_fetch(s, mvp, dst, tmp, &m, &stored);
	if (rc)
		return rc;
	if (m.comp != COMP_NONE || m.enc_gen || m.len != ROD_GRAIN)
		return red_chunk_decode(s, &m, stored, dst);
	return 0;
}

int io_read_view(struct rod_store *s, uint64_t lin, uint64_t epoch, uint64_t off, void *buf,
		 uint64_t len)
{
	/* lazy: a read whose map entries are all cached never builds a RocksDB iterator */
	struct meta_iter *it = meta_iter_new_lazy(s->meta, CF_MAP);
	uint8_t *out = buf;
	uint8_t tmp[ROD_GRAIN];
	uint64_t pos = off, end = off + len;
	int rc = 0;

	if (!it)
		return -ENOMEM;
	while (pos < end && !rc) {
		uint64_t g = pos / ROD_GRAIN, gend = (end + ROD_GRAIN - 1) / ROD_GRAIN;
		struct resolved r;

		rc = store_resolve(s, it, lin, epoch, g, gend - g, &r);
		if (rc)
			break;
		uint64_t run_end = ROD_MIN(end, (g + r.run) * ROD_GRAIN);
		if (r.kind != RES_CHUNK) {
			memset(out + (pos - off), 0, run_end - pos);
			pos = run_end;
			continue;
		}
		uint64_t in = pos % ROD_GRAIN, n = ROD_MIN(ROD_GRAIN - in, end - pos);
		if (n == ROD_GRAIN) {
			rc = io_chunk_read(s, &r.v, out + (pos - off));
		} else {
			rc = io_chunk_read(s, &r.v, tmp);
			if (!rc)
				memcpy(out + (pos - off), tmp + in, n);
		}
		pos += n;
	}
	meta_iter_free(it);
	return rc;
}

/* ---- write requests ---- */

/* One rod_io turned into commit items; the last item to complete finishes the io. */
struct wreq {
	struct rod_store *s;
	struct rod_io *io;
	uint64_t lin, g0, ng;     /* locked stripe range */
	bool excl, locked;
	atomic_int left;
	int result;
	size_t nitems;
	struct citem *items;
	struct cgrain *grains;    /* preallocated for every grain of the io */
	size_t ngr;
	uint8_t *bounce;          /* merged partial grains (at most 2) */
	uint8_t *sealed[2];       /* stored forms (compressed, encrypted): one buffer per
				     build_data call that has data grains (at most 2) */
	uint8_t *small;           /* pooled request (wreq_small): room for sealed[0] */
	size_t nb;
	/* range op */
	uint64_t r_g0, r_g1, r_tlin, r_tepoch;
	int64_t r_delta;
	/* synchronous use */
	void (*fin)(struct wreq *w);
};

/* Writes of up to WREQ_SMALL grains (every 4 KiB write) use one block: the request, its
 * items and grains, and room for their stored forms. Finished blocks go back to the
 * store's pool (WPOOL_MAX) instead of free(). The commit thread finishes the requests the
 * network threads allocated, and glibc frees such cross-thread 4+ KiB blocks through the
 * allocating arena's lock: with four allocations per write, free() was 14 % of the
 * commit thread's time in 4 KiB random writes at QD32 (perf --call-graph dwarf). */
#define WREQ_SMALL 2u
#define WREQ_ITEMS(ngrains) ((ngrains) / ITEM_GRAINS + 4)

struct wreq_small {
	struct wreq w;
	struct citem items[WREQ_ITEMS(WREQ_SMALL)];
	struct cgrain grains[WREQ_SMALL];
	uint8_t sealed[WREQ_SMALL * ROD_GRAIN];
};

static void wreq_free(struct wreq *w)
{
	struct rod_store *s = w->s;

	free(w->bounce);
	if (w->sealed[0] != w->small)
		free(w->sealed[0]);
	free(w->sealed[1]);
	if (!w->small) {
		free(w->items);
		free(w->grains);
		free(w);
		return;
	}
	pthread_mutex_lock(&s->wpool_m);
	if (s->wpool_n < WPOOL_MAX) {
		s->wpool[s->wpool_n++] = w;
		w = NULL;
	}
	pthread_mutex_unlock(&s->wpool_m);
	free(w);
}

void wreq_pool_drain(struct rod_store *s)
{
	while (s->wpool_n)
		free(s->wpool[--s->wpool_n]);
}

static void wreq_finish(struct wreq *w)
{
	struct rod_io *io = w->io;

	if (w->locked)
		stripe_unlock_range(w->s, w->lin, w->g0, w->ng, w->excl);
	if (w->fin) {
		w->fin(w);
		return;
	}
	io->result = w->result;
	if (!io->result && (io->op == ROD_IO_WRITE || io->op == ROD_IO_CAW))
		atomic_fetch_add(&w->s->st_user, io->len);
	wreq_free(w);
	if (io->done)
		io->done(io);
}

static void item_done(struct citem *ci)
{
	struct wreq *w = ci->priv;

	if (ci->result && !w->result)
		w->result = ci->result;
	if (atomic_fetch_sub(&w->left, 1) == 1)
		wreq_finish(w);
}

static bool is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < ROD_GRAIN / 8; i++)
		if (q[i])
			return false;
	return true;
}

/* Range op: grains [r_g0, r_g1) of the volume read from (r_tlin, r_tepoch) + r_delta. */
static int range_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct wreq *w = ci->arg;
	struct vol_rec *r = w->io->vol->rec;
	struct lineage *l;
	uint64_t tl = w->r_tlin, te = w->r_tepoch;

	if (r->destroyed || r->eradicated)
		return -ENOENT;
	l = media_find(&s->media, r->lineage);
	if (!l)
		return -ENOENT;
	return lin_add_range(&s->media, s->meta, l, w->r_g0, w->r_g1, tl, te, w->r_delta, mb);
}

/* Build the data items of a write of buf (NULL: zeros) at [off, off+len) of the volume
 * view (stripes already held). Partial grains are merged with the current data. */
static int build_data(struct wreq *w, const struct view *vw, uint64_t off, uint64_t len,
		      const uint8_t *buf, int zero_kind, size_t *nitems, bool durable)
{
	struct rod_store *s = w->s;
	uint64_t g0 = off / ROD_GRAIN, g1 = (off + len + ROD_GRAIN - 1) / ROD_GRAIN, n = g1 - g0;
	struct cgrain *base = &w->grains[w->ngr];
	uint8_t *sb = NULL;
	int rc;

	for (uint64_t g = g0; g < g1; g++) {
		struct cgrain *cg = &w->grains[w->ngr++];
		uint64_t gs = g * ROD_GRAIN, a = ROD_MAX(gs, off), b = ROD_MIN(gs + ROD_GRAIN, off + len);
		const uint8_t *data;

		cg->lba = g;
		if (b - a < ROD_GRAIN) {
			if (!w->bounce && !(w->bounce = malloc(2 * ROD_GRAIN)))
				return -ENOMEM;
			uint8_t *t = w->bounce + (w->nb++) * ROD_GRAIN;

			rc = io_read_view(s, vw->lin, vw->epoch, gs, t, ROD_GRAIN);
			if (rc)
				return rc;
			if (buf)
				memcpy(t + (a - gs), buf + (a - off), b - a);
			else
				memset(t + (a - gs), 0, b - a);
			data = t;
		} else if (!buf) {
			cg->kind = (uint8_t)zero_kind;
			continue;
		} else {
			data = buf + (gs - off);
		}
		if (is_zero(data)) {
			cg->kind = ENT_ZERO;
			continue;
		}
		cg->kind = ENT_DATA;
		cg->data = data;
		/* Fingerprint and duplicate lookup, then compression and encryption, here on
		 * the submitting thread: the commit thread only packs, writes and syncs. */
		red_grain_prepare(s, vw->rec->reduce_off, data, &cg->red);
		if (red_seals(s) && !sb) {
			/* sized for this call's grains (a large unmap's edges are 1 each) */
			size_t k = w->sealed[0] ? 1 : 0;

			if (w->sealed[k])
				return -ENOMEM;
			if (!k && w->small && n <= WREQ_SMALL)
				sb = w->sealed[0] = w->small;
			else if (!(sb = w->sealed[k] = malloc(n * ROD_GRAIN)))
				return -ENOMEM;
		}
		cg->crc = red_grain_seal(s, data, &cg->red, sb ? sb + (g - g0) * ROD_GRAIN : NULL);
	}
	for (uint64_t i = 0; i < n; i += ITEM_GRAINS) {
		struct citem *ci = &w->items[(*nitems)++];

		ci->kind = CI_WRITE;
		ci->durable = durable;
		ci->rec = vw->rec;
		ci->g = &base[i];
		ci->ng = (uint32_t)ROD_MIN(ITEM_GRAINS, n - i);
		ci->done = item_done;
		ci->priv = w;
	}
	return 0;
}

static struct wreq *wreq_new(struct rod_store *s, struct rod_io *io, uint64_t ngrains)
{
	struct wreq *w;

	if (ngrains <= WREQ_SMALL) {
		struct wreq_small *b = NULL;

		pthread_mutex_lock(&s->wpool_m);
		if (s->wpool_n)
			b = s->wpool[--s->wpool_n];
		pthread_mutex_unlock(&s->wpool_m);
		if (!b && !(b = malloc(sizeof(*b))))
			return NULL;
		memset(b, 0, offsetof(struct wreq_small, sealed));
		w = &b->w;
		w->items = b->items;
		w->grains = b->grains;
		w->small = b->sealed;
	} else {
		if (!(w = calloc(1, sizeof(*w))))
			return NULL;
		w->items = calloc(WREQ_ITEMS(ngrains), sizeof(*w->items));
		w->grains = calloc(ngrains, sizeof(*w->grains));
		if (!w->items || !w->grains) {
			wreq_free(w);
			return NULL;
		}
	}
	w->s = s;
	w->io = io;
	return w;
}

static void wreq_submit(struct wreq *w, size_t nitems)
{
	struct citem *arr[64], **pa = arr;

	if (!nitems) {
		wreq_finish(w);
		return;
	}
	if (nitems > 64)
		pa = malloc(nitems * sizeof(*pa));
	atomic_store(&w->left, (int)nitems);
	for (size_t i = 0; i < nitems; i++)
		pa[i] = &w->items[i];
	commit_queue_n(w->s, pa, nitems);
	if (pa != arr)
		free(pa);
}

static bool durable_for(const struct vol_rec *r, unsigned flags)
{
	return r->cache == ROD_CACHE_WRITE_THROUGH || (flags & ROD_IO_FUA);
}

static void complete(struct rod_io *io, int rc)
{
	io->result = rc;
	if (io->done)
		io->done(io);
}

static struct citem *add_range_op(struct wreq *w, size_t *nitems, bool durable)
{
	struct citem *op = &w->items[(*nitems)++];

	op->kind = CI_OP;
	op->durable = durable;
	op->build = range_build;
	op->arg = w;
	op->done = item_done;
	op->priv = w;
	return op;
}

/* Validate, lock and prepare a write-type request on the io's volume. */
static int wreq_prepare(struct rod_io *io, struct view *vw, bool excl_always, struct wreq **out)
{
	struct rod_store *s = io->vol->s;
	struct wreq *w;
	uint64_t g0, g1;
	int rc = view_get(io->vol, vw);

	if (!rc && vw->ro)
		rc = -EROFS;
	if (!rc)
		rc = range_check(vw, io->off, io->len);
	if (rc)
		return rc;
	g0 = io->off / ROD_GRAIN;
	g1 = (io->off + io->len + ROD_GRAIN - 1) / ROD_GRAIN;
	w = wreq_new(s, io, g1 - g0);
	if (!w)
		return -ENOMEM;
	w->lin = vw->lin;
	w->g0 = g0;
	w->ng = g1 - g0;
	w->excl = excl_always || io->off % ROD_GRAIN || (io->off + io->len) % ROD_GRAIN;
	stripe_lock_range(s, w->lin, w->g0, w->ng, w->excl);
	w->locked = true;
	*out = w;
	return 0;
}

static void do_write(struct rod_io *io, const uint8_t *buf, int zero_kind)
{
	struct rod_store *s = io->vol->s;
	struct view vw;
	struct wreq *w;
	size_t nitems = 0;
	bool durable;
	int rc;

	if (!io->len) {
		rc = view_get(io->vol, &vw);
		complete(io, rc ? rc : vw.ro ? -EROFS : range_check(&vw, io->off, 0));
		return;
	}
	if (buf && space_low(s)) {
		complete(io, -ENOSPC);
		return;
	}
	rc = wreq_prepare(io, &vw, false, &w);
	if (rc) {
		complete(io, rc);
		return;
	}
	durable = durable_for(vw.rec, io->flags);
	if (!buf && w->ng >= ZERO_RANGE_GRAINS + 2) {
		/* Large zero/unmap: partial edge grains as data, the middle as one range entry. */
		uint64_t a = ROD_ROUND_UP(io->off, ROD_GRAIN), b = ROD_ROUND_DOWN(io->off + io->len, ROD_GRAIN);

		w->r_g0 = a / ROD_GRAIN;
		w->r_g1 = b / ROD_GRAIN;
		w->r_tlin = zero_kind == ENT_ZERO ? LIN_ZERO : LIN_UNMAP;
		add_range_op(w, &nitems, durable);
		if (io->off < a)
			rc = build_data(w, &vw, io->off, a - io->off, NULL, zero_kind, &nitems, durable);
		if (!rc && b < io->off + io->len)
			rc = build_data(w, &vw, b, io->off + io->len - b, NULL, zero_kind, &nitems, durable);
	} else {
		rc = build_data(w, &vw, io->off, io->len, buf, zero_kind, &nitems, durable);
	}
	if (rc) {
		w->result = rc;
		wreq_finish(w);
		return;
	}
	wreq_submit(w, nitems);
}

static uint64_t first_diff(const uint8_t *a, const uint8_t *b, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return i;
	return len;
}

static void do_verify(struct rod_io *io)
{
	struct view vw;
	uint8_t *tmp;
	int rc = view_get(io->vol, &vw);

	if (!rc)
		rc = range_check(&vw, io->off, io->len);
	if (rc || !io->len) {
		complete(io, rc);
		return;
	}
	tmp = malloc(io->len);
	if (!tmp) {
		complete(io, -ENOMEM);
		return;
	}
	rc = io_read_view(io->vol->s, vw.lin, vw.epoch, io->off, tmp, io->len);
	if (!rc) {
		uint64_t d = first_diff(tmp, io->buf, io->len);

		if (d < io->len) {
			io->miscompare_off = d;
			rc = -EILSEQ;
		}
	}
	free(tmp);
	complete(io, rc);
}

/* Compare and write: the grains stay exclusively locked from the compare until the write
 * is applied, so no other writer can slip in between. */
static void do_caw(struct rod_io *io)
{
	struct rod_store *s = io->vol->s;
	struct view vw;
	struct wreq *w;
	size_t nitems = 0;
	uint8_t *tmp;
	int rc;

	if (!io->len) {
		complete(io, 0);
		return;
	}
	if (space_low(s)) {
		complete(io, -ENOSPC);
		return;
	}
	rc = wreq_prepare(io, &vw, true, &w);
	if (rc) {
		complete(io, rc);
		return;
	}
	tmp = malloc(io->len);
	rc = tmp ? io_read_view(s, vw.lin, vw.epoch, io->off, tmp, io->len) : -ENOMEM;
	if (!rc) {
		uint64_t d = first_diff(tmp, io->buf, io->len);

		if (d < io->len) {
			io->miscompare_off = d;
			rc = -EILSEQ;
		}
	}
	free(tmp);
	if (!rc)
		rc = build_data(w, &vw, io->off, io->len, (const uint8_t *)io->buf + io->len, ENT_ZERO,
				&nitems, durable_for(vw.rec, io->flags));
	if (rc) {
		w->result = rc;
		wreq_finish(w);
		return;
	}
	wreq_submit(w, nitems);
}

static void do_flush(struct rod_io *io)
{
	struct rod_store *s = io->vol->s;
	struct view vw;
	struct wreq *w;
	int rc = view_get(io->vol, &vw);

	if (rc) {
		complete(io, rc);
		return;
	}
	w = wreq_new(s, io, 0);
	if (!w) {
		complete(io, -ENOMEM);
		return;
	}
	w->items[0].kind = CI_FLUSH;
	w->items[0].durable = true;
	w->items[0].done = item_done;
	w->items[0].priv = w;
	wreq_submit(w, 1);
}

/* ---- copy ---- */

struct sync_wait {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
};

static void sync_fin(struct wreq *w)
{
	struct sync_wait *sw = w->io->priv;

	pthread_mutex_lock(&sw->m);
	sw->done = true;
	pthread_cond_signal(&sw->c);
	pthread_mutex_unlock(&sw->m);
}

/* Copy by moving bytes, from a frozen view of the source (pre-copy state even when the
 * ranges overlap). Used for misaligned copies and when a range entry would be too deep. */
static int copy_data(struct rod_vol *src, uint64_t soff, struct rod_vol *dst, uint64_t doff,
		     uint64_t len)
{
	struct rod_vol *pin;
	uint8_t *buf;
	/* Same grain phase: holes of the source stay holes (deallocated) in the copy. */
	bool holes = soff % ROD_GRAIN == doff % ROD_GRAIN;
	int rc;

	/* A data copy needs space: refuse it before changing anything, so a refused copy
	 * (SPACE ALLOCATION FAILED) leaves the destination as it was. */
	if (!space_room(dst->s, len))
		return -ENOSPC;
	rc = rod_vol_pin(src, &pin);
	if (rc)
		return rc;
	buf = malloc(1u << 20);
	if (!buf) {
		rod_vol_close(pin);
		return -ENOMEM;
	}
	for (uint64_t done = 0; done < len && !rc;) {
		uint64_t n = ROD_MIN(len - done, 1u << 20);
		bool mapped = true;
		uint64_t ext = n;

		if (holes && (soff + done) % ROD_GRAIN == 0) {
			rc = rod_vol_lba_status(pin, soff + done, n, &mapped, &ext);
			if (rc)
				break;
			if (!mapped && ext >= ROD_GRAIN) {
				n = ROD_ROUND_DOWN(ext, ROD_GRAIN);
				rc = rod_vol_unmap(dst, doff + done, n);
				done += n;
				continue;
			}
			if (mapped)
				n = ROD_MIN(n, ext);
		}
		rc = rod_vol_read(pin, soff + done, buf, n);
		if (!rc)
			rc = rod_vol_write(dst, doff + done, buf, n, 0);
		done += n;
	}
	free(buf);
	rod_vol_close(pin);
	return rc;
}

/* Copy: the grain-aligned middle is one range entry (O(1)); misaligned head/tail grains
 * are read-modify-written. The source is first frozen (a pin, unless it is a snapshot or
 * a pin already) so the edges, the range entry and any fallback data copy all read the
 * same pre-copy state, also when source and destination overlap. Runs synchronously in
 * the caller (it waits for the commit). */
static void do_copy(struct rod_io *io)
{
	struct rod_store *s = io->vol->s;
	struct view dv, sv;
	struct wreq *w;
	size_t nitems = 0;
	uint64_t a, b;
	struct sync_wait sw = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };
	struct rod_vol *src = io->src, *pin = NULL;
	void *saved_priv;
	uint8_t *edge = NULL;
	int rc;

	if (!src) {
		complete(io, -EINVAL);
		return;
	}
	rc = view_get(io->vol, &dv);
	if (!rc)
		rc = dv.ro ? -EROFS : range_check(&dv, io->off, io->len);
	if (!rc)
		rc = view_get(src, &sv);
	if (!rc)
		rc = range_check(&sv, io->src_off, io->len);
	if (!rc && !sv.ro) {
		rc = rod_vol_pin(src, &pin);
		if (!rc) {
			src = pin;
			rc = view_get(src, &sv);
		}
	}
	if (rc || !io->len)
		goto done;
	a = ROD_ROUND_UP(io->off, ROD_GRAIN);
	b = ROD_ROUND_DOWN(io->off + io->len, ROD_GRAIN);
	if (io->off % ROD_GRAIN != io->src_off % ROD_GRAIN || b <= a) {
		rc = copy_data(src, io->src_off, io->vol, io->off, io->len);
		goto done;
	}
	/* Edges: the source bytes of the partial grains. */
	uint64_t head = a - io->off, tail = io->off + io->len - b;
	if (head || tail) {
		edge = malloc(head + tail);
		if (!edge) {
			rc = -ENOMEM;
			goto done;
		}
		if (head)
			rc = io_read_view(s, sv.lin, sv.epoch, io->src_off, edge, head);
		if (!rc && tail)
			rc = io_read_view(s, sv.lin, sv.epoch, io->src_off + (b - io->off), edge + head, tail);
		if (rc)
			goto done;
	}
	saved_priv = io->priv;
	rc = wreq_prepare(io, &dv, false, &w);
	if (rc)
		goto done;
	io->priv = &sw;
	w->fin = sync_fin;
	w->r_g0 = a / ROD_GRAIN;
	w->r_g1 = b / ROD_GRAIN;
	w->r_delta = (int64_t)((io->src_off + head) / ROD_GRAIN) - (int64_t)w->r_g0;
	w->r_tlin = sv.lin;
	w->r_tepoch = sv.epoch;
	add_range_op(w, &nitems, true);
	if (head)
		rc = build_data(w, &dv, io->off, head, edge, ENT_ZERO, &nitems, true);
	if (!rc && tail)
		rc = build_data(w, &dv, b, tail, edge + head, ENT_ZERO, &nitems, true);
	if (rc) {
		w->fin = NULL;
		io->priv = saved_priv;
		w->result = rc;
		w->io = &(struct rod_io){ .op = ROD_IO_COPY };
		wreq_finish(w);
		goto done;
	}
	wreq_submit(w, nitems);
	pthread_mutex_lock(&sw.m);
	while (!sw.done)
		pthread_cond_wait(&sw.c, &sw.m);
	pthread_mutex_unlock(&sw.m);
	io->priv = saved_priv;
	rc = w->result;
	wreq_free(w);
	if (rc == -ELOOP) {
		/* The chain of range entries would be too deep: copy the middle as data
		 * (synchronously; a background flatten job is future work). */
		rc = copy_data(src, io->src_off + head, io->vol, a, b - a);
	}
done:
	free(edge);
	if (pin)
		rod_vol_close(pin);
	complete(io, rc);
}

/* ---- copy workers ----
 * A copy waits for a pin and a commit (and a misaligned or too-deep one moves data), so
 * it runs on one of the store's copy threads, never on the submitter's (network) thread. */

struct copy_node {
	struct rod_io *io;
	struct copy_node *next;
};

struct copyq {
	pthread_mutex_t m;
	pthread_cond_t c;
	struct copy_node *head, **tail;
	bool stop;
	pthread_t th[COPY_THREADS];
	int nth;
};

static void *copy_main(void *arg)
{
	struct copyq *q = arg;

	rod_thread_name("rod-copy");
	pthread_mutex_lock(&q->m);
	for (;;) {
		struct copy_node *n;

		while (!q->head && !q->stop)
			pthread_cond_wait(&q->c, &q->m);
		if (!q->head)
			break;
		n = q->head;
		q->head = n->next;
		if (!q->head)
			q->tail = &q->head;
		pthread_mutex_unlock(&q->m);
		if (n->io->op == ROD_IO_COPY)
			do_copy(n->io);
		else
			rod_io_submit(n->io);
		free(n);
		pthread_mutex_lock(&q->m);
	}
	pthread_mutex_unlock(&q->m);
	return NULL;
}

static void copy_queue(struct rod_io *io)
{
	struct copyq *q = io->vol->s->copyq;
	struct copy_node *n = q ? malloc(sizeof(*n)) : NULL;

	if (!n) {
		if (io->op == ROD_IO_COPY)
			do_copy(io);
		else
			complete(io, -ENOMEM);
		return;
	}
	n->io = io;
	n->next = NULL;
	pthread_mutex_lock(&q->m);
	*q->tail = n;
	q->tail = &n->next;
	pthread_cond_signal(&q->c);
	pthread_mutex_unlock(&q->m);
}

int copy_workers_start(struct rod_store *s)
{
	struct copyq *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->m, NULL);
	pthread_cond_init(&q->c, NULL);
	q->tail = &q->head;
	for (int i = 0; i < COPY_THREADS; i++)
		if (pthread_create(&q->th[q->nth], NULL, copy_main, q) == 0)
			q->nth++;
	s->copyq = q;
	return 0;
}

void copy_workers_stop(struct rod_store *s)
{
	struct copyq *q = s->copyq;

	if (!q)
		return;
	pthread_mutex_lock(&q->m);
	q->stop = true;
	pthread_cond_broadcast(&q->c);
	pthread_mutex_unlock(&q->m);
	for (int i = 0; i < q->nth; i++)
		pthread_join(q->th[i], NULL);
	s->copyq = NULL;
	free(q);
}

/* ---- entry points ---- */

void rod_io_submit(struct rod_io *io)
{
	io->result = 0;
	io->miscompare_off = 0;
	if (!io->vol) {
		complete(io, -EINVAL);
		return;
	}
	gc_note_io(io->vol->s);
	/* Submitted from a completion (on the commit thread): a write there could wait for
	 * a grain lock that only this thread's next commit releases. Hand it to a worker. */
	if (commit_thread_self && io->op != ROD_IO_READ && io->op != ROD_IO_VERIFY) {
		copy_queue(io);
		return;
	}
	switch (io->op) {
	case ROD_IO_READ: {
		struct view vw;
		int rc = view_get(io->vol, &vw);

		if (!rc)
			rc = range_check(&vw, io->off, io->len);
		if (!rc && io->len)
			rc = io_read_view(io->vol->s, vw.lin, vw.epoch, io->off, io->buf, io->len);
		complete(io, rc);
		return;
	}
	case ROD_IO_WRITE:
		do_write(io, io->buf, ENT_DATA);
		return;
	case ROD_IO_ZERO:
		do_write(io, NULL, ENT_ZERO);
		return;
	case ROD_IO_UNMAP:
		do_write(io, NULL, ENT_UNMAP);
		return;
	case ROD_IO_FLUSH:
		do_flush(io);
		return;
	case ROD_IO_CAW:
		do_caw(io);
		return;
	case ROD_IO_VERIFY:
		do_verify(io);
		return;
	case ROD_IO_COPY:
		copy_queue(io);
		return;
	}
	complete(io, -EINVAL);
}

struct run_wait {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
	void (*user_done)(struct rod_io *);
	void *user_priv;
};

static void run_done(struct rod_io *io)
{
	struct run_wait *rw = io->priv;

	pthread_mutex_lock(&rw->m);
	rw->done = true;
	pthread_cond_signal(&rw->c);
	pthread_mutex_unlock(&rw->m);
}

int rod_io_run(struct rod_io *io)
{
	struct run_wait rw = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false,
			       io->done, io->priv };

	io->done = run_done;
	io->priv = &rw;
	rod_io_submit(io);
	pthread_mutex_lock(&rw.m);
	while (!rw.done)
		pthread_cond_wait(&rw.c, &rw.m);
	pthread_mutex_unlock(&rw.m);
	io->done = rw.user_done;
	io->priv = rw.user_priv;
	if (io->done)
		io->done(io);
	return io->result;
}

int rod_vol_read(struct rod_vol *v, uint64_t off, void *buf, uint64_t len)
{
	struct rod_io io = { .op = ROD_IO_READ, .vol = v, .off = off, .len = len, .buf = buf };

	return rod_io_run(&io);
}

int rod_vol_write(struct rod_vol *v, uint64_t off, const void *buf, uint64_t len, unsigned flags)
{
	struct rod_io io = { .op = ROD_IO_WRITE, .flags = flags, .vol = v, .off = off, .len = len,
			     .buf = (void *)buf };

	return rod_io_run(&io);
}

int rod_vol_flush(struct rod_vol *v)
{
	struct rod_io io = { .op = ROD_IO_FLUSH, .vol = v };

	return rod_io_run(&io);
}

int rod_vol_zero(struct rod_vol *v, uint64_t off, uint64_t len)
{
	struct rod_io io = { .op = ROD_IO_ZERO, .vol = v, .off = off, .len = len };

	return rod_io_run(&io);
}

int rod_vol_unmap(struct rod_vol *v, uint64_t off, uint64_t len)
{
	struct rod_io io = { .op = ROD_IO_UNMAP, .vol = v, .off = off, .len = len };

	return rod_io_run(&io);
}

int rod_vol_copy(struct rod_vol *src, uint64_t src_off, struct rod_vol *dst, uint64_t dst_off,
		 uint64_t len)
{
	struct rod_io io = { .op = ROD_IO_COPY, .vol = dst, .off = dst_off, .len = len, .src = src,
			     .src_off = src_off };

	return rod_io_run(&io);
}

int rod_vol_lba_status(struct rod_vol *v, uint64_t off, uint64_t max_len, bool *mapped,
		       uint64_t *len)
{
	struct rod_store *s = v->s;
	struct view vw;
	struct meta_iter *it;
	uint64_t pos = off, end;
	bool first = true;
	int rc = view_get(v, &vw);

	if (rc)
		return rc;
	if (off % ROD_SECTOR)
		return -EINVAL;
	if (off >= vw.size)
		return -ERANGE;
	end = ROD_MIN(vw.size, off + ROD_MIN(max_len, vw.size - off));
	if (end <= off)
		end = ROD_MIN(vw.size, off + ROD_SECTOR);
	it = meta_iter_new(s->meta, CF_MAP);
	if (!it)
		return -ENOMEM;
	while (pos < end) {
		uint64_t g = pos / ROD_GRAIN, gend = (end + ROD_GRAIN - 1) / ROD_GRAIN;
		struct resolved r;
		bool m;

		rc = store_resolve(s, it, vw.lin, vw.epoch, g, gend - g, &r);
		if (rc)
			break;
		m = r.kind != RES_UNMAP;
		if (first) {
			*mapped = m;
			first = false;
		} else if (m != *mapped) {
			break;
		}
		pos = ROD_MIN(end, (g + r.run) * ROD_GRAIN);
	}
	meta_iter_free(it);
	*len = pos - off;
	return rc;
}

/* Debugging aid (tests): print how grain g of a volume resolves. Not part of the API. */
void rod_store_debug_grain(struct rod_store *s, const char *name, uint64_t g);
void rod_store_debug_grain(struct rod_store *s, const char *name, uint64_t g)
{
	struct meta_iter *it = meta_iter_new(s->meta, CF_MAP);
	uint8_t k[MAP_KEY_LEN];
	struct vol_rec *r;

	pthread_rwlock_rdlock(&s->state);
	r = vol_find_name(s, name);
	if (!r) {
		pthread_rwlock_unlock(&s->state);
		meta_iter_free(it);
		return;
	}
	for (int depth = 0; depth < 4; depth++) {
		uint64_t lin = depth == 0 ? r->lineage : 0;
		(void)lin;
	}
	struct lineage *l = media_find(&s->media, r->lineage);
	fprintf(stderr, "debug: %s lineage %llu cur %llu cur_used %d box [%llu,%llu) epoch(snap) %llu\n",
		name, (unsigned long long)r->lineage, l ? (unsigned long long)l->cur : 0ull,
		l ? l->cur_used : 0, l ? (unsigned long long)l->box_lo : 0ull,
		l ? (unsigned long long)l->box_hi : 0ull, (unsigned long long)r->epoch);
	for (size_t j = 0; l && j < l->nrng; j++) {
		struct rng_ent *e = &l->rng[j];
		if (e->start <= g && e->end > g)
			fprintf(stderr, "debug:   range [%llu,%llu) epoch %llu seq %llu -> lin %llu ep %llu delta %lld\n",
				(unsigned long long)e->start, (unsigned long long)e->end,
				(unsigned long long)e->epoch, (unsigned long long)e->seq,
				(unsigned long long)e->tlin, (unsigned long long)e->tepoch, (long long)e->delta);
	}
	map_key(k, r->lineage, g, EPOCH_MAX);
	for (meta_iter_seek(it, k, sizeof(k)); meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *kk = meta_iter_key(it, &kl), *vv = meta_iter_val(it, &vl);
		uint64_t klin, klba, kep;
		struct map_val mv;

		map_key_decode(kk, &klin, &klba, &kep);
		if (klin != r->lineage || klba != g)
			break;
		map_val_decode(&mv, vv);
		fprintf(stderr, "debug:   block epoch %llu chunk %llx\n", (unsigned long long)kep,
			(unsigned long long)mv.chunk);
	}
	pthread_rwlock_unlock(&s->state);
	meta_iter_free(it);
}

/* Scrub (scrub.c): read one chunk exactly as a host read would (checksum, chunk table
 * after GC moves, decrypt, decompress). */
int store_chunk_check(struct rod_store *s, const struct map_val *mv)
{
	uint8_t buf[ROD_GRAIN];

	return io_chunk_read(s, mv, buf);
}
