/* Commit thread: one pwritev + at most one fdatasync + one RocksDB batch per group. */
#include "commit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/util.h"
#include "fault.h"
#include "mapcache.h"
#include "store_int.h"

/* m guards the queue, stop and the durable position; the rest is owned by the thread. */
struct commit {
	pthread_t th;
	pthread_mutex_t m;
	pthread_cond_t c;
	struct citem *head, **tail;
	bool stop;
	uint64_t dseg, doff;      /* durable and applied up to here */
	/* commit thread only */
	uint64_t seq;
	bool unsynced;
	struct batch_entry *ent;
	const void **src;
	const struct red_grain **rg; /* what the submitter prepared (NULL: not new data) */
	size_t entcap, srccap, rgcap;
	struct iovec *iov;
	size_t iovcap;
	uint8_t *hdr;
	size_t hdrcap;
	struct mutbuf mb;
	struct map_val *newv;     /* the map values of a batch's entries (map cache) */
	size_t newvcap;
	struct meta_batch *mbatch;
	uint64_t mem_est;         /* estimated memtable bytes applied since the last switch */
	uint64_t mem_limit;       /* MEM_SYNC_ALL (tests: ROD_TEST_MEMTABLE_GUARD) */
	/* commit_watch_*: hashes of the keys applied since the first begin (open
	 * addressing, 0 = empty); all: a range delete was applied, every key may be hit */
	struct {
		unsigned depth;
		bool all;
		uint64_t *slot;
		size_t cap, n;
	} w;
};

/* Write-back batches are applied to RocksDB before their log bytes are synced; RocksDB
 * must never make such a map entry durable (a power cut would leave it pointing at lost
 * data). RocksDB persists a memtable when it is switched: by a checkpoint (the commit
 * thread switches right after a sync: ckpt items), or by RocksDB itself when the memtable
 * reaches META_WRITE_BUFFER. So the commit thread keeps the memtables below a quarter of
 * that: it adds a generous estimate per batch (MEM_PER_ENTRY per entry, twice the
 * mutation bytes); when the estimate reaches MEM_SYNC_ALL it asks RocksDB for the real
 * size, and when that is there too, the batch is synced before it is applied and the
 * memtables are switched after it, as at a checkpoint. (Syncing every batch from there
 * on until the next checkpoint, as before, cost a third of the commit thread's time in
 * 4 KiB random writes: 2,796 fdatasyncs in 2 s for 7,817 batches.) Tests lower the
 * guard (ROD_TEST_MEMTABLE_GUARD=1: every batch is synced, then switched). */
#define MEM_PER_ENTRY 256u
#define MEM_SYNC_ALL (META_WRITE_BUFFER / 4)

static const uint8_t zero_pad[SEG_BLOCK];

_Thread_local bool commit_thread_self;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

/* The map cache learns the entries a batch wrote (writes are at their lineage's current
 * epoch: the newest entry of their grain) and forgets the keys of its logged mutations
 * (mapcache.h). newv: the values written (NULL: the apply failed, forget them too). */
static void mc_note_applied(struct rod_store *s, const struct batch_entry *ent,
			    const struct map_val *newv, uint32_t n, const uint8_t *mut,
			    size_t mut_len)
{
	struct mapcache *mc = s->media.mc;
	uint64_t t;

	if (!mc)
		return;
	t = meta_clock_tick(s->meta);
	for (uint32_t i = 0; i < n; i++) {
		if (ent[i].kind == ENT_RELOC)
			continue;
		if (newv)
			mc_set(mc, ent[i].lineage, ent[i].lba, ent[i].epoch, &newv[i], t);
		else
			mc_invalidate(mc, ent[i].lineage, ent[i].lba, t);
	}
	mc_invalidate_mut(mc, mut, mut_len, t);
}

/* ---- watches (commit.h) ---- */

static uint64_t watch_hash(uint8_t cf, const uint8_t *k, size_t kl)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ cf;

	for (size_t i = 0; i < kl; i += 8) {
		uint64_t w = 0;

		memcpy(&w, k + i, ROD_MIN(8, kl - i));
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	return h | 1;
}

static void watch_add(struct commit *c, uint8_t cf, const uint8_t *k, size_t kl)
{
	uint64_t h = watch_hash(cf, k, kl);

	if ((c->w.n + 1) * 2 > c->w.cap) {
		size_t cap = c->w.cap ? c->w.cap * 2 : 4096;
		uint64_t *ns = calloc(cap, sizeof(*ns));

		if (!ns) {
			c->w.all = true;        /* no room to remember: every key counts as hit */
			return;
		}
		for (size_t i = 0; i < c->w.cap; i++) {
			size_t j = c->w.slot[i] & (cap - 1);

			if (!c->w.slot[i])
				continue;
			while (ns[j])
				j = (j + 1) & (cap - 1);
			ns[j] = c->w.slot[i];
		}
		free(c->w.slot);
		c->w.slot = ns;
		c->w.cap = cap;
	}
	size_t j = h & (c->w.cap - 1);

	while (c->w.slot[j] && c->w.slot[j] != h)
		j = (j + 1) & (c->w.cap - 1);
	if (!c->w.slot[j]) {
		c->w.slot[j] = h;
		c->w.n++;
	}
}

bool commit_watch_hit(struct rod_store *s, uint8_t cf, const void *k, size_t kl)
{
	struct commit *c = s->commit;
	uint64_t h;

	if (c->w.all)
		return true;
	if (!c->w.cap)
		return false;
	h = watch_hash(cf, k, kl);
	for (size_t j = h & (c->w.cap - 1); c->w.slot[j]; j = (j + 1) & (c->w.cap - 1))
		if (c->w.slot[j] == h)
			return true;
	return false;
}

/* Remember what a batch is about to apply: its entries' map keys, its mutations. */
static void watch_note(struct commit *c, const struct batch_entry *ent, uint32_t n,
		       const uint8_t *mut, size_t mut_len)
{
	size_t pos = 0;
	struct mut m;

	for (uint32_t i = 0; i < n; i++) {
		uint8_t k[MAP_KEY_LEN];

		if (ent[i].kind == ENT_RELOC)
			continue;       /* chunk table only (CF_CHUNK is never relogged) */
		map_key(k, ent[i].lineage, ent[i].lba, ent[i].epoch);
		watch_add(c, CF_MAP, k, sizeof(k));
	}
	while (mutbuf_next(mut, mut_len, &pos, &m)) {
		if (m.op == MUT_DELRANGE)
			c->w.all = true;
		else
			watch_add(c, m.cf, m.k, m.kl);
	}
}

static int watch_begin_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct commit *c = s->commit;

	(void)ci;
	(void)mb;
	if (c->w.depth++ == 0) {
		c->w.all = false;
		c->w.n = 0;
		if (c->w.slot)
			memset(c->w.slot, 0, c->w.cap * sizeof(*c->w.slot));
	}
	return 0;
}

static int watch_end_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct commit *c = s->commit;

	(void)ci;
	(void)mb;
	if (c->w.depth && --c->w.depth == 0) {
		free(c->w.slot);
		memset(&c->w, 0, sizeof(c->w));
	}
	return 0;
}

/* Batches applied before this returns are visible to the caller's reads; later ones are
 * remembered (the begin item is processed like any other, in queue order). */
int commit_watch_begin(struct rod_store *s)
{
	struct citem ci = { .kind = CI_OP, .build = watch_begin_build };

	return commit_run(s, &ci);
}

int commit_watch_end(struct rod_store *s)
{
	struct citem ci = { .kind = CI_OP, .build = watch_end_build };

	return commit_run(s, &ci);
}

/* Chunk table value: where the chunk is now, and its stored format there (GC may have
 * recompressed it: bytes 24-26 = compression, encryption generation). */
static void chunk_loc_encode(uint8_t *v, uint64_t seg, uint64_t off, uint32_t len, uint32_t crc,
			     uint8_t comp, uint16_t enc_gen)
{
	rod_put_be64(v, seg);
	rod_put_be64(v + 8, off);
	rod_put_be32(v + 16, len);
	rod_put_be32(v + 20, crc);
	v[24] = comp;
	rod_put_be16(v + 25, enc_gen);
	v[27] = 0;
}

/* The fingerprint puts the commit thread held back (red_fp_defer), in one RocksDB batch
 * of their own, in key order: a skip list inserts an ascending run of random keys for a
 * fraction of what the same keys cost one batch at a time (docs/data-reduction.md).
 * They are put when RED_FP_RUN are held, before every checkpoint switch and when the
 * commit thread stops; until then red_fp_lookup finds them in RAM. After a crash,
 * replay from the checkpoint puts them again (the batch entries carry them). */
static int fp_drain(struct rod_store *s, struct meta_batch *mbt)
{
	int rc = 0;

	if (!red_fp_pending(s))
		return 0;
	meta_batch_clear(mbt);
	red_fp_drain(s, mbt);
	rc = meta_batch_write(s->meta, mbt);
	if (!rc)
		red_fp_drained(s);
	return rc;
}

/* Map deltas of the entries plus the logged mutations, into one RocksDB batch. */
static int apply_entries(struct rod_store *s, struct meta_batch *mbt, uint64_t seg,
			 uint64_t payload_base, const struct batch_entry *ent, uint32_t n,
			 const uint8_t *mut, size_t mut_len, bool rebuild, bool defer_fp,
			 struct map_val *newv)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct batch_entry *e = &ent[i];
		uint8_t k[MAP_KEY_LEN], v[MAP_VAL_LEN];

		if (e->kind == ENT_RELOC) {
			rod_put_be64(k, e->chunk_id);
			uint8_t cv[28];

			chunk_loc_encode(cv, seg, payload_base + e->payload_off, e->stored_len, e->crc,
					 e->comp, e->enc_gen);
			meta_batch_put(mbt, s->meta, CF_CHUNK, k, 8, cv, sizeof(cv));
			if (rebuild && (e->fp[0] | e->fp[1] | e->fp[2] | e->fp[3])) {
				/* The fingerprint of a chunk GC moved (its home segment, with the
				 * original fp put, may be gone): dedupe finds it again. */
				struct map_val fv = { .chunk = e->chunk_id, .off = e->home_off,
						      .len = e->stored_len, .crc = e->crc, .comp = e->comp,
						      .enc_gen = e->enc_gen };

				map_val_encode(&fv, v);
				meta_batch_put(mbt, s->meta, CF_FP, e->fp, sizeof(e->fp), v, sizeof(v));
			}
			if (rebuild && e->lineage >= LIN_FIRST) {
				/* The home segment (with the original map delta) may be gone. The map
				 * entry comes back unless a later write already replaced it. */
				void *old;
				size_t ol;
				struct map_val mv = { .chunk = e->chunk_id, .off = e->home_off,
						      .len = e->stored_len, .crc = e->crc, .comp = e->comp,
						      .enc_gen = e->enc_gen };

				/* Relocation records are written only for current map entries
				 * (commit_reloc_current), so this is the map entry's value at this point. */
				(void)old;
				(void)ol;
				map_key(k, e->lineage, e->lba, e->epoch);
				map_val_encode(&mv, v);
				meta_batch_put(mbt, s->meta, CF_MAP, k, sizeof(k), v, sizeof(v));
			}
			continue;
		}
		struct map_val mv = {
			.chunk = e->kind == ENT_DATA ? e->chunk_id :
				 e->kind == ENT_ZERO ? CHUNK_ZERO : CHUNK_UNMAP,
			.off = e->kind == ENT_DATA ? (uint32_t)(payload_base + e->payload_off) : 0,
			.len = e->stored_len,
			.crc = e->crc,
			.comp = e->comp,
		};
		if (e->kind == ENT_DATA || e->kind == ENT_DEDUP)
			red_entry_map_val(e, payload_base, &mv);
		map_key(k, e->lineage, e->lba, e->epoch);
		map_val_encode(&mv, v);
		meta_batch_put(mbt, s->meta, CF_MAP, k, sizeof(k), v, sizeof(v));
		if (newv)
			newv[i] = mv;
		/* A stored chunk's fingerprint -> its location, for later duplicates (dedupe).
		 * The commit thread holds it back and puts it later in a sorted run (see
		 * fp_drain): same content, far fewer memtable cycles per write. */
		if (e->kind == ENT_DATA && (e->fp[0] | e->fp[1] | e->fp[2] | e->fp[3]) &&
		    (!defer_fp || red_fp_defer(s, e->fp, v)))
			meta_batch_put(mbt, s->meta, CF_FP, e->fp, sizeof(e->fp), v, sizeof(v));
	}
	return mutbuf_apply(s->meta, mbt, mut, mut_len);
}

int commit_apply_batch(struct rod_store *s, const struct batch *b, bool rebuild)
{
	struct meta_batch *mbt = meta_batch_new();
	int rc;

	if (!mbt)
		return -ENOMEM;
	rc = apply_entries(s, mbt, b->seg, b->off + b->hdr_len, b->ent, b->n, b->mut, b->mut_len,
			   rebuild, false, NULL);
	if (!rc)
		rc = meta_batch_write(s->meta, mbt);
	if (s->media.mc)
		mc_invalidate_all(s->media.mc, meta_clock_tick(s->meta));
	meta_batch_free(mbt);
	return rc;
}

/* Is the chunk GC wants to move still what its map entry points at? Then the relocation
 * record means "this map entry is current here" (rebuild relies on that). */
bool commit_reloc_current(struct rod_store *s, const struct cgrain *g)
{
	uint8_t k[MAP_KEY_LEN];
	void *v;
	size_t vl;
	struct map_val mv;

	if (g->lineage < LIN_FIRST)
		return true;
	map_key(k, g->lineage, g->lba, g->epoch);
	if (meta_get(s->meta, CF_MAP, k, sizeof(k), &v, &vl))
		return false;
	if (vl >= MAP_VAL_LEN)
		map_val_decode(&mv, v);
	free(v);
	return vl >= MAP_VAL_LEN && mv.chunk == g->chunk;
}

/* commit_reloc_current, unless GC found the answer under a watch and the key was not written
 * since (the usual case: no RocksDB read on the commit thread). */
static bool reloc_still_current(struct rod_store *s, const struct cgrain *g)
{
	uint8_t k[MAP_KEY_LEN];

	if (!g->cur_known || g->lineage < LIN_FIRST || !s->commit->w.depth)
		return commit_reloc_current(s, g);
	map_key(k, g->lineage, g->lba, g->epoch);
	return commit_watch_hit(s, CF_MAP, k, sizeof(k)) ? commit_reloc_current(s, g) : g->cur;
}

/* Fault injection (bitflip): flip one bit of a data chunk just appended, in the file,
 * as a bad sector or a bit rot would; its CRC32C (in the batch entry) no longer
 * matches, so reads of it fail with -EBADMSG (03/11/00) and scrub reports it. */
static void fault_bitflip(struct rod_store *s, struct commit *c, uint32_t n, uint64_t payload_base)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct batch_entry *e = &c->ent[i];
		uint8_t b;
		uint64_t at = payload_base + e->payload_off + e->stored_len / 2;

		if (e->kind != ENT_DATA || !e->stored_len || !fault_bitflip_fire(e->lba))
			continue;
		if (rod_pread_full(s->log->cur_fd, &b, 1, at) == 0) {
			b ^= 0x10;
			if (rod_pwrite_full(s->log->cur_fd, &b, 1, at) == 0)
				rod_warn("store: bitflip: chunk %llx (grain %llu) damaged at segment %llu offset %llu",
					 (unsigned long long)e->chunk_id, (unsigned long long)e->lba,
					 (unsigned long long)s->log->cur_id, (unsigned long long)at);
		}
		return;
	}
}

static void process(struct rod_store *s, struct commit *c, struct citem *items)
{
	uint32_t n = 0, payload = 0;
	bool need_sync = false, need_roll = false, only_writes = true, ckpt = false;
	bool log_only = false, guard_switch = false;
	uint64_t est;
	size_t nsrc = 0;
	int rc = 0;

	c->mb.len = 0;
	/* Epochs and metadata operations in queue order, under the state lock. */
	pthread_rwlock_wrlock(&s->state);
	for (struct citem *ci = items; ci; ci = ci->next) {
		if (atomic_load(&s->failed) && ci->kind != CI_FLUSH) {
			ci->result = -EROFS;    /* read-only since a commit failed */
			continue;
		}
		if (ci->kind != CI_WRITE && ci->kind != CI_FLUSH)
			only_writes = false;
		if (ci->durable)
			need_sync = true;
		if (ci->roll)
			need_roll = true;
		if (ci->ckpt)
			ckpt = true;
		if (ci->log_only)
			log_only = true;
		if (ci->kind == CI_OP) {
			ci->result = ci->build(s, ci, &c->mb);
			continue;
		}
		if (ci->kind == CI_FLUSH)
			continue;
		struct lineage *l = NULL;
		if (ci->kind == CI_WRITE) {
			if (ci->rec->destroyed || ci->rec->eradicated ||
			    !(l = media_find(&s->media, ci->rec->lineage))) {
				ci->result = -ENOENT;
				continue;
			}
		}
		if (grow((void **)&c->ent, &c->entcap, n + ci->ng, sizeof(*c->ent)) ||
		    grow((void **)&c->src, &c->srccap, n + ci->ng, sizeof(*c->src)) ||
		    grow((void **)&c->rg, &c->rgcap, n + ci->ng, sizeof(*c->rg))) {
			ci->result = -ENOMEM;
			continue;
		}
		for (uint32_t i = 0; i < ci->ng; i++) {
			const struct cgrain *g = &ci->g[i];
			struct batch_entry *e = &c->ent[n];

			bool cur = g->kind != ENT_RELOC || reloc_still_current(s, g);

			/* Overwritten since GC marked it: garbage now, unless other map entries
			 * reference it (dedupe, or flatten, which references chunks with or
			 * without a fingerprint): moved anyway (GC marked it live), without a
			 * claim on the map entry it was written for (lineage 0). */
			memset(e, 0, sizeof(*e));
			e->kind = g->kind;
			e->crc = g->crc;
			if (g->kind == ENT_RELOC) {
				e->chunk_id = g->chunk;
				e->stored_len = e->orig_len = g->len;
				e->lineage = cur ? g->lineage : 0;
				e->lba = g->lba;
				e->epoch = g->epoch;
				e->home_off = g->home_off;
				e->comp = g->red.comp;
				e->enc_gen = g->red.enc_gen;
				if (g->red.has_fp)
					memcpy(e->fp, g->red.fp, sizeof(e->fp));
			} else {
				e->lineage = l->id;
				e->lba = g->lba;
				e->epoch = l->cur;
				if (g->kind == ENT_DATA) {
					e->stored_len = e->orig_len = ROD_GRAIN;
					red_entry_dedup(s, &g->red, e); /* may become ENT_DEDUP */
				}
				lin_note_write(l, g->lba, 1);
			}
			e->payload_off = payload;
			payload += e->stored_len;
			c->src[n] = g->data;
			c->rg[n] = e->kind == ENT_DATA ? &g->red : NULL;
			n++;
			nsrc++;
		}
	}
	pthread_rwlock_unlock(&s->state);
	est = (uint64_t)n * MEM_PER_ENTRY + 2 * (uint64_t)c->mb.len + 1024;
	if (c->mem_est + est > c->mem_limit) {
		c->mem_est = meta_mem_active(s->meta);
		if (c->mem_est + est > c->mem_limit)
			need_sync = guard_switch = true;
	}

	if (need_roll && s->log->cur_off) {
		rc = seglog_roll(s->log);
		if (!rc) {
			c->unsynced = false;
			pthread_mutex_lock(&c->m);
			c->dseg = s->log->cur_id;
			c->doff = 0;
			pthread_mutex_unlock(&c->m);
		}
	}
	if (rc) {
		rod_err("store: cannot start a new segment: %s", strerror(-rc));
	} else if (n || c->mb.len) {
		size_t hl = batch_header_size(n, (uint32_t)c->mb.len);
		uint64_t total = hl + ROD_ROUND_UP((uint64_t)payload, SEG_BLOCK), off = 0;
		uint32_t hdr_len;
		int niov = 0;

		rc = seglog_reserve(s->log, total);
		if (!rc)
			rc = grow((void **)&c->hdr, &c->hdrcap, hl, 1);
		if (!rc)
			rc = grow((void **)&c->iov, &c->iovcap, n + 2, sizeof(*c->iov));
		if (!rc) {
			/* Chunk ids; grains the submitters did not compress and encrypt already
			 * (for an id of this segment) are done here. The payload shrinks or
			 * stays; the reservation above was for the larger size. */
			rc = red_seal(s, s->log->cur_id, c->ent, c->src, c->rg, n, &payload);
			total = hl + ROD_ROUND_UP((uint64_t)payload, SEG_BLOCK);
		}
		if (!rc) {
			uint64_t seg = s->log->cur_id;

			rc = batch_encode_header(c->hdr, c->hdrcap, ++c->seq, seg, c->ent, n,
						 c->mb.buf, (uint32_t)c->mb.len, payload, &hdr_len);
		}
		if (!rc) {
			c->iov[niov++] = (struct iovec){ c->hdr, hdr_len };
			for (uint32_t i = 0; i < n; i++)
				if (c->ent[i].stored_len)
					c->iov[niov++] = (struct iovec){ (void *)c->src[i], c->ent[i].stored_len };
			if (payload % SEG_BLOCK)
				c->iov[niov++] = (struct iovec){ (void *)zero_pad, SEG_BLOCK - payload % SEG_BLOCK };
			rc = seglog_append(s->log, c->iov, niov, total, &off);
			if (!rc && fault_any())
				fault_bitflip(s, c, n, off + hdr_len);
		}
		if (!rc && need_sync) {
			rc = seglog_sync(s->log);
			c->unsynced = false;
		} else if (!rc) {
			c->unsynced = true;
		}
		if (!rc) {
			uint32_t drained = 0;

			/* A log-only item (GC relog, alone in its batch) repeats the applied
			 * state: only its log bytes matter. */
			size_t mlen = log_only ? 0 : c->mb.len;

			if (c->w.depth && !log_only)
				watch_note(c, c->ent, n, c->mb.buf, mlen);
			meta_batch_clear(c->mbatch);
			rc = grow((void **)&c->newv, &c->newvcap, n, sizeof(*c->newv));
			if (!rc)
				rc = apply_entries(s, c->mbatch, s->log->cur_id, off + hdr_len, c->ent,
						   n, c->mb.buf, mlen, false, true, c->newv);
			if (!rc && red_fp_pending(s) >= RED_FP_RUN - RED_FP_RUN / 8)
				drained = red_fp_drain(s, c->mbatch);
			if (!rc)
				rc = meta_batch_write(s->meta, c->mbatch);
			if (!rc && drained)
				red_fp_drained(s);
			/* Applied: cached map entries of these keys are stale from now on
			 * (before any item completes). */
			mc_note_applied(s, c->ent, rc ? NULL : c->newv, n, c->mb.buf, mlen);
		}
		if (!rc) {
			c->mem_est += est;
			atomic_fetch_add(&s->st_disk, total);
			atomic_fetch_add(&s->change_gen, 1);
			atomic_fetch_add(&s->st_commits, need_sync ? 1 : 0);
			if (!c->unsynced) {
				pthread_mutex_lock(&c->m);
				c->dseg = s->log->cur_id;
				c->doff = off + total;
				pthread_mutex_unlock(&c->m);
			}
		} else if (rc == -ENOSPC && only_writes && !c->mb.len) {
			/* The file system is full and the append did not happen (its bytes were
			 * cut off again): a batch of plain writes changed nothing in memory
			 * that matters (chunk ids are not reused, the written box only grows), so
			 * its writes fail (07/27/07) and the store goes on. */
			rod_err("store: file system full: %u grains refused", n);
		} else {
			/* Memory already holds this batch's epochs and range entries: refuse
			 * further changes rather than let memory and disk drift apart. After a
			 * failed fdatasync nothing is synced again either: the kernel may have
			 * dropped the dirty pages and cleared the error, so a second fdatasync
			 * could succeed without the data being on disk (PostgreSQL's "fsyncgate",
			 * 2018). Restarting rodd replays what the log really holds. */
			if (!atomic_exchange(&s->failed, true))
				rod_err("store: group commit failed: %s; the store now refuses writes "
					"(reads still work); fix the disk and reopen it", strerror(-rc));
		}
	} else if (need_sync && c->unsynced && atomic_load(&s->failed)) {
		rc = -EIO;      /* never fdatasync again after a failure (see above) */
	} else if (need_sync && c->unsynced) {
		rc = seglog_sync(s->log);
		if (!rc) {
			c->unsynced = false;
			atomic_fetch_add(&s->st_commits, 1);
			pthread_mutex_lock(&c->m);
			c->dseg = s->log->cur_id;
			c->doff = s->log->cur_off;
			pthread_mutex_unlock(&c->m);
		}
	}
	(void)nsrc;
	if ((ckpt || guard_switch) && !rc && !c->unsynced) {
		/* Everything applied so far is durable in the log: switch the memtables now,
		 * before anything unsynced is applied, with the fingerprints held back in them
		 * (the table files then hold what the log before the checkpoint put). */
		rc = fp_drain(s, c->mbatch);
		if (!rc)
			rc = meta_switch(s->meta);
		if (!rc)
			c->mem_est = 0;
		if (ckpt) {
			pthread_mutex_lock(&c->m);
			for (struct citem *ci = items; ci; ci = ci->next) {
				ci->ckpt_seg = c->dseg;
				ci->ckpt_off = c->doff;
			}
			pthread_mutex_unlock(&c->m);
		}
	} else if (ckpt && !rc) {
		rc = -EIO; /* not synced: no checkpoint */
	}
	for (struct citem *ci = items, *next; ci; ci = next) {
		next = ci->next;
		if (rc && (ci->kind != CI_OP || !ci->result))
			ci->result = rc;
		ci->done(ci);
	}
}

static void *commit_main(void *arg)
{
	struct rod_store *s = arg;
	struct commit *c = s->commit;

	rod_thread_name("rod-commit");
	meta_thread_no_perf_counts();
	commit_thread_self = true;
	for (;;) {
		struct citem *items, **tp, *ci;
		uint32_t ng = 0;

		pthread_mutex_lock(&c->m);
		while (!c->head && !c->stop)
			pthread_cond_wait(&c->c, &c->m);
		if (!c->head) {
			pthread_mutex_unlock(&c->m);
			break;
		}
		/* Take what fits in one batch; the rest waits for the next round. */
		items = c->head;
		tp = &items;
		for (ci = c->head; ci; ci = ci->next) {
			bool alone = ci->kind == CI_RELOC || ci->alone;

			if (ci != c->head && (ng + ci->ng > BATCH_MAX_ENTRIES || alone))
				break;
			ng += ci->ng;
			tp = &ci->next;
			/* GC relocations and relogs travel alone: they are computed from the
			 * applied state, which the other items of a shared batch would change
			 * after them (a relogged map entry would undo a write of the batch). */
			if (alone)
				break;
		}
		c->head = *tp;
		*tp = NULL;
		if (!c->head)
			c->tail = &c->head;
		pthread_mutex_unlock(&c->m);
		process(s, c, items);
	}
	return NULL;
}

int commit_start(struct rod_store *s)
{
	struct commit *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->m, NULL);
	pthread_cond_init(&c->c, NULL);
	c->tail = &c->head;
	c->mem_limit = MEM_SYNC_ALL;
	if (getenv("ROD_TEST_MEMTABLE_GUARD")) /* tests: a lower guard (bytes of estimate) */
		c->mem_limit = strtoull(getenv("ROD_TEST_MEMTABLE_GUARD"), NULL, 0);
	c->mbatch = meta_batch_new();
	s->commit = c;
	if (pthread_create(&c->th, NULL, commit_main, s)) {
		meta_batch_free(c->mbatch);
		free(c);
		s->commit = NULL;
		return -EAGAIN;
	}
	return 0;
}

void commit_stop(struct rod_store *s)
{
	struct commit *c = s->commit;

	if (!c || c->stop)
		return;
	pthread_mutex_lock(&c->m);
	c->stop = true;
	pthread_cond_signal(&c->c);
	pthread_mutex_unlock(&c->m);
	pthread_join(c->th, NULL);
	if (c->unsynced && !atomic_load(&s->failed) && !seglog_sync(s->log)) {
		c->unsynced = false;
		c->dseg = s->log->cur_id;
		c->doff = s->log->cur_off;
	}
	/* The held-back fingerprints go into the memtables the close checkpoint writes. */
	if (fp_drain(s, c->mbatch))
		rod_warn("store: fingerprints of the last writes not saved; replay puts them again");
}

void commit_free(struct rod_store *s)
{
	struct commit *c = s->commit;

	if (!c)
		return;
	commit_stop(s);
	meta_batch_free(c->mbatch);
	mutbuf_free(&c->mb);
	free(c->w.slot);
	free(c->newv);
	free(c->ent);
	free(c->src);
	free(c->rg);
	free(c->iov);
	free(c->hdr);
	free(c);
	s->commit = NULL;
}

bool commit_running(struct rod_store *s)
{
	struct commit *c = s->commit;
	bool r;

	if (!c)
		return false;
	pthread_mutex_lock(&c->m);
	r = !c->stop;
	pthread_mutex_unlock(&c->m);
	return r;
}

bool commit_unsynced(struct rod_store *s)
{
	/* Read without the lock: a stale answer only delays or adds one flush. */
	return __atomic_load_n(&s->commit->unsynced, __ATOMIC_RELAXED);
}

void commit_set_pos(struct rod_store *s, uint64_t seg, uint64_t off)
{
	struct commit *c = s->commit;

	pthread_mutex_lock(&c->m);
	c->dseg = seg;
	c->doff = off;
	pthread_mutex_unlock(&c->m);
}

void commit_queue(struct rod_store *s, struct citem *ci)
{
	struct commit *c = s->commit;

	ci->next = NULL;
	pthread_mutex_lock(&c->m);
	*c->tail = ci;
	c->tail = &ci->next;
	pthread_cond_signal(&c->c);
	pthread_mutex_unlock(&c->m);
}

void commit_queue_n(struct rod_store *s, struct citem **ci, size_t n)
{
	struct commit *c = s->commit;

	pthread_mutex_lock(&c->m);
	for (size_t i = 0; i < n; i++) {
		ci[i]->next = NULL;
		*c->tail = ci[i];
		c->tail = &ci[i]->next;
	}
	pthread_cond_signal(&c->c);
	pthread_mutex_unlock(&c->m);
}

struct waiter {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool done;
};

static void waiter_done(struct citem *ci)
{
	struct waiter *w = ci->priv;

	pthread_mutex_lock(&w->m);
	w->done = true;
	pthread_cond_signal(&w->c);
	pthread_mutex_unlock(&w->m);
}

int commit_run(struct rod_store *s, struct citem *ci)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false };

	ci->done = waiter_done;
	ci->priv = &w;
	commit_queue(s, ci);
	pthread_mutex_lock(&w.m);
	while (!w.done)
		pthread_cond_wait(&w.c, &w.m);
	pthread_mutex_unlock(&w.m);
	pthread_mutex_destroy(&w.m);
	pthread_cond_destroy(&w.c);
	return ci->result;
}

void commit_durable_pos(struct rod_store *s, uint64_t *seg, uint64_t *off)
{
	struct commit *c = s->commit;

	pthread_mutex_lock(&c->m);
	*seg = c->dseg;
	*off = c->doff;
	pthread_mutex_unlock(&c->m);
}
