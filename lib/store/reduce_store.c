/* Data reduction inside the engine (see reduce_store.h, docs/data-reduction.md).
 *
 * Write: the submitting thread fingerprints each data grain and asks the RAM filter,
 * then RocksDB's fp column family (the full 32 bytes), for a stored chunk with the same
 * fingerprint; the commit thread turns a confirmed duplicate into a dedupe entry (a map
 * entry only), and compresses (LZ4, kept when it saves >= 1/8) and encrypts
 * (AES-256-XTS, tweak = chunk id + generation) the others once their chunk ids are
 * known, packing them back to back. Read: CRC32C of the stored bytes, decrypt,
 * decompress. GC needs no reference counts: its mark walks the map, and a dedupe entry
 * is a map entry like any other. */
#include "reduce_store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commit.h"
#include "medium.h"
#include "meta.h"
#include "rod/log.h"
#include "rod/util.h"
#include "segment.h"
#include "store_int.h"

static const char *key_path(struct rod_store *s, char *buf, size_t n)
{
	if (s->opts.key_file && *s->opts.key_file)
		return s->opts.key_file;
	snprintf(buf, n, "%s/rod.key", s->dir);
	return buf;
}

static int load_keys(struct rod_store *s, struct red_store *r, bool *have)
{
	char pb[PATH_MAX], dk[PATH_MAX];
	const char *kp = key_path(s, pb, sizeof(pb));
	uint8_t kek[RED_KEK_LEN];
	bool created = false, has_dek;
	int rc;

	*have = false;
	snprintf(dk, sizeof(dk), "%s/datakey", s->dir);
	has_dek = access(dk, F_OK) == 0;
	if (!has_dek && !r->encrypt)
		return 0; /* never encrypted, and not asked to */
	rc = red_kek_load(kp, !has_dek, kek, &created);
	if (rc == -ENOENT) {
		rod_err("store: key file %s not found: the data key of the store in %s is wrapped "
			"by the key in that file (give the right one with --key-file / key_file)",
			kp, s->dir);
		return -ENOKEY;
	}
	if (rc) {
		rod_err("store: cannot read key file %s: %s", kp,
			rc == -EINVAL ? "not 64 hex digits" : strerror(-rc));
		return rc == -EINVAL ? -ENOKEY : rc;
	}
	if (created)
		rod_info("store: created key file %s (mode 0600); keep a copy: without it the "
			 "data cannot be read", kp);
	if (has_dek) {
		rc = red_dek_load(s->dir, kek, &r->dek);
		if (rc == -EKEYREJECTED)
			rod_err("store: key file %s does not unwrap the data key of the store in %s "
				"(wrong key file)", kp, s->dir);
		else if (rc)
			rod_err("store: cannot load the data key %s: %s", dk, strerror(-rc));
	} else {
		rc = red_dek_create(s->dir, kek, &r->dek);
		if (rc)
			rod_err("store: cannot create the data key %s: %s", dk, strerror(-rc));
	}
	memset(kek, 0, sizeof(kek));
	if (rc)
		return rc;
	r->key_file = strdup(kp);
	*have = true;
	return r->key_file ? 0 : -ENOMEM;
}

int red_store_open(struct rod_store *s)
{
	struct red_store *r = calloc(1, sizeof(*r));
	bool have = false;
	int rc;

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->gc_m, NULL);
	pthread_mutex_init(&r->pend_m, NULL);
	r->dedupe = !s->opts.no_dedupe;
	r->compress = !s->opts.no_compress;
	r->encrypt = !s->opts.no_encrypt;
	rc = load_keys(s, r, &have);
	r->have_dek = have;
	if (!rc && !have)
		r->encrypt = false;
	if (!rc)
		rc = red_fp_key_new(s->ident.secret, &r->fpk);
	if (!rc)
		rc = red_fpidx_init(&r->idx, 0);
	if (!rc) {
		/* The RAM filter is rebuilt from the fp column family: 4 bytes per chunk read. */
		struct meta_iter *it = meta_iter_new(s->meta, CF_FP);

		if (!it)
			rc = -ENOMEM;
		for (meta_iter_first(it); !rc && meta_iter_valid(it); meta_iter_next(it)) {
			size_t kl;
			const uint8_t *k = meta_iter_key(it, &kl);

			if (kl == RED_FP_LEN)
				rc = red_fpidx_add(&r->idx, k);
		}
		meta_iter_free(it);
	}
	s->red = r;
	if (rc) {
		red_store_close(s);
		return rc;
	}
	/* dek.key stays readable for the store's life; keep it out of core dumps' reach of
	 * other processes at least (the memory is the process's own). */
	return 0;
}

void red_store_close(struct rod_store *s)
{
	struct red_store *r = s->red;

	if (!r)
		return;
	red_fp_key_free(r->fpk);
	if (r->idx.tab)
		red_fpidx_destroy(&r->idx);
	memset(&r->dek, 0, sizeof(r->dek));
	free(r->key_file);
	free(r->buf);
	free(r->doomed);
	free(r->refs);
	free(r->pend);
	free(r->pend_slot);
	free(r->pend_order);
	pthread_mutex_destroy(&r->pend_m);
	pthread_mutex_destroy(&r->gc_m);
	free(r);
	s->red = NULL;
}

/* Does the chunk still exist (its home segment, or where GC moved it)? *seg: there. */
static bool chunk_alive(struct rod_store *s, uint64_t chunk, uint64_t *seg)
{
	uint8_t k[8];
	void *v;
	size_t vl;
	bool ok = false;

	*seg = CHUNK_SEG(chunk);
	if (seglog_has(s->log, *seg))
		return true;
	rod_put_be64(k, chunk);
	if (meta_get(s->meta, CF_CHUNK, k, 8, &v, &vl))
		return false;
	if (vl >= 24) {
		*seg = rod_get_be64(v);
		ok = seglog_has(s->log, *seg);
	}
	free(v);
	return ok;
}

void red_grain_prepare(struct rod_store *s, unsigned vol_off, const void *data,
		       struct red_grain *rg)
{
	struct red_store *r = s->red;

	memset(rg, 0, sizeof(*rg));
	rg->no_compress = vol_off & RED_VOL_NO_COMPRESS;
	if (!r->dedupe || vol_off & RED_VOL_NO_DEDUPE || red_fingerprint(r->fpk, data, ROD_GRAIN, rg->fp))
		return;
	rg->has_fp = true;
	red_fp_lookup(s, rg);
}

#define PEND_SLOTS (2 * RED_FP_RUN)

static uint32_t pend_hash(const uint8_t *fp)
{
	uint64_t h;

	memcpy(&h, fp, 8);
	return (uint32_t)((h * 0x9e3779b97f4a7c15ull) >> 32) & (PEND_SLOTS - 1);
}

/* The slot of fp in the held-back table, or of the empty slot where it would go. */
static uint32_t pend_find(const struct red_store *r, const uint8_t *fp)
{
	uint32_t i = pend_hash(fp);

	while (r->pend_slot[i] && memcmp(r->pend[r->pend_slot[i] - 1].fp, fp, RED_FP_LEN))
		i = (i + 1) & (PEND_SLOTS - 1);
	return i;
}

int red_fp_defer(struct rod_store *s, const uint8_t fp[RED_FP_LEN], const uint8_t *v)
{
	struct red_store *r = s->red;

	if (!r)
		return -ENOMEM;
	if (!r->pend) {
		r->pend = malloc(RED_FP_RUN * sizeof(*r->pend));
		r->pend_slot = calloc(PEND_SLOTS, sizeof(*r->pend_slot));
		r->pend_order = malloc(RED_FP_RUN * sizeof(*r->pend_order));
		if (!r->pend || !r->pend_slot || !r->pend_order) {
			free(r->pend);
			free(r->pend_slot);
			free(r->pend_order);
			r->pend = NULL;
			r->pend_slot = r->pend_order = NULL;
			return -ENOMEM;
		}
	}
	pthread_mutex_lock(&r->pend_m);
	uint32_t i = pend_find(r, fp);

	if (r->pend_slot[i]) {
		memcpy(r->pend[r->pend_slot[i] - 1].v, v, 24);
	} else if (r->npend < RED_FP_RUN) {
		memcpy(r->pend[r->npend].fp, fp, RED_FP_LEN);
		memcpy(r->pend[r->npend].v, v, 24);
		r->pend_slot[i] = ++r->npend;
	} else {
		pthread_mutex_unlock(&r->pend_m);
		return -ENOMEM;
	}
	pthread_mutex_unlock(&r->pend_m);
	return 0;
}

uint32_t red_fp_pending(struct rod_store *s)
{
	return s->red ? s->red->npend : 0; /* the commit thread is the only writer */
}

static int pend_cmp(const void *a, const void *b, void *arg)
{
	const struct red_fp_pend *p = arg;

	return memcmp(p[*(const uint32_t *)a].fp, p[*(const uint32_t *)b].fp, RED_FP_LEN);
}

uint32_t red_fp_drain(struct rod_store *s, struct meta_batch *mbt)
{
	struct red_store *r = s->red;
	uint32_t n = r ? r->npend : 0;

	if (!n)
		return 0;
	/* Only the commit thread (or its stopper) changes pend: no lock to read it. The
	 * fingerprints are unique in the table, so the order is total. */
	for (uint32_t i = 0; i < n; i++)
		r->pend_order[i] = i;
	qsort_r(r->pend_order, n, sizeof(*r->pend_order), pend_cmp, r->pend);
	for (uint32_t i = 0; i < n; i++) {
		const struct red_fp_pend *p = &r->pend[r->pend_order[i]];

		meta_batch_put(mbt, s->meta, CF_FP, p->fp, RED_FP_LEN, p->v, 24);
	}
	return n;
}

void red_fp_drained(struct rod_store *s)
{
	struct red_store *r = s->red;

	if (!r || !r->npend)
		return;
	pthread_mutex_lock(&r->pend_m);
	memset(r->pend_slot, 0, PEND_SLOTS * sizeof(*r->pend_slot));
	r->npend = 0;
	pthread_mutex_unlock(&r->pend_m);
}

/* A held-back put of fp: its value into v (24 bytes). */
static bool pend_get(struct red_store *r, const uint8_t *fp, uint8_t *v)
{
	bool found = false;

	pthread_mutex_lock(&r->pend_m);
	if (r->npend) {
		uint32_t i = pend_find(r, fp);

		if (r->pend_slot[i]) {
			memcpy(v, r->pend[r->pend_slot[i] - 1].v, 24);
			found = true;
		}
	}
	pthread_mutex_unlock(&r->pend_m);
	return found;
}

void red_fp_lookup(struct rod_store *s, struct red_grain *rg)
{
	struct red_store *r = s->red;
	void *v;
	size_t vl;
	uint8_t pv[24];

	/* Read the generation before looking: a GC pass starting or ending after this
	 * point changes it, and the commit thread then stores the grain instead of
	 * referencing. During a pass, red_entry_dedup and red_gc_doom keep the pass from
	 * deleting what a dedupe entry references. */
	rg->gc_gen = atomic_load(&r->gc_gen);
	if (!red_fpidx_maybe(&r->idx, rg->fp))
		return;
	if (pend_get(r, rg->fp, pv)) {
		/* held back by the commit thread (red_fp_defer), not in RocksDB yet */
		if (!(v = malloc(sizeof(pv))))
			return;
		memcpy(v, pv, sizeof(pv));
		vl = sizeof(pv);
	} else if (meta_get(s->meta, CF_FP, rg->fp, RED_FP_LEN, &v, &vl)) {
		atomic_fetch_add(&r->st_fp_false, 1);
		return;
	}
	if (vl == MAP_VAL_LEN) {
		struct map_val mv;

		map_val_decode(&mv, v);
		if (mv.chunk > CHUNK_UNMAP && chunk_alive(s, mv.chunk, &rg->seg)) {
			rg->dup = true;
			rg->chunk = mv.chunk;
			rg->off = mv.off;
			rg->len = mv.len;
			rg->crc = mv.crc;
			rg->comp = mv.comp;
			rg->enc_gen = mv.enc_gen;
		}
	}
	free(v);
}

/* Chunk ids and the XTS tweak. An id is segment << 20 | index; next_chunk hands out the
 * indexes of the open segment. The submitting threads reserve at most RED_EARLY_IDS of
 * them per segment (compare-and-swap, never past the bound, so never into the segment
 * bits); the commit thread allocates the rest, at most one per chunk stored in the
 * segment (< SEG_SIZE / RED_MIN_STORED). Together they stay below 1 << 20. Each id is
 * handed out once; the segment part only grows (segment ids are never reused), so an
 * id, and the tweak built from it, encrypts one chunk's contents at most: a sealed
 * grain whose id is not of the batch's segment is sealed again under a new id and the
 * reserved one is never used. */
#define RED_EARLY_IDS (1u << 19)
#define RED_IDX_MASK ((1ull << 20) - 1)
_Static_assert(SEG_SIZE / RED_MIN_STORED <= (1u << 20) - RED_EARLY_IDS,
	       "chunk indexes of a segment must fit in 20 bits");

static uint64_t chunk_reserve(struct red_store *r)
{
	uint_fast64_t v = atomic_load(&r->next_chunk);

	do {
		if (!CHUNK_SEG(v) || (v & RED_IDX_MASK) >= RED_EARLY_IDS)
			return 0; /* no segment yet, or this one's early ids are used up */
	} while (!atomic_compare_exchange_weak(&r->next_chunk, &v, v + 1));
	return v;
}

/* Commit thread. */
static uint64_t chunk_alloc(struct red_store *r, uint64_t seg)
{
	if (CHUNK_SEG(atomic_load(&r->next_chunk)) != seg)
		atomic_store(&r->next_chunk, seg << 20);
	return atomic_fetch_add(&r->next_chunk, 1);
}

bool red_seals(struct rod_store *s)
{
	return s->red->compress || s->red->encrypt;
}

uint32_t red_grain_seal(struct rod_store *s, const void *data, struct red_grain *rg,
			uint8_t *out)
{
	struct red_store *r = s->red;
	const void *in = data;
	uint32_t len = ROD_GRAIN, clen = 0;
	uint64_t id = 0;

	rg->sealed = NULL;
	if (rg->dup || (!r->encrypt && (!r->compress || rg->no_compress)))
		return rod_crc32c(0, data, ROD_GRAIN); /* a dedupe entry, or stored as is */
	if (r->encrypt && !(id = chunk_reserve(r)))
		return rod_crc32c(0, data, ROD_GRAIN); /* the commit thread does it all */
	if (r->compress && !rg->no_compress &&
	    (clen = red_lz4_compress(data, ROD_GRAIN, out, ROD_GRAIN))) {
		in = out;
		len = clen;
		rg->scomp = COMP_LZ4;
	}
	if (id) {
		if (red_encrypt(&r->dek, id, r->dek.gen, in, out, len))
			return rod_crc32c(0, data, ROD_GRAIN); /* id wasted, never reused */
		rg->sgen = r->dek.gen;
		rg->schunk = id;
	} else if (!clen) {
		return rod_crc32c(0, data, ROD_GRAIN);
	}
	rg->sealed = out;
	rg->slen = len;
	rg->scrc = rod_crc32c(0, out, len);
	return rg->scrc;
}

bool red_entry_dedup(struct rod_store *s, const struct red_grain *rg, struct batch_entry *e)
{
	struct red_store *r = s->red;

	if (rg->has_fp)
		memcpy(e->fp, rg->fp, RED_FP_LEN);
	if (!rg->dup)
		return false;
	pthread_mutex_lock(&r->gc_m);
	bool ok = rg->gc_gen == atomic_load(&r->gc_gen);
	if (ok && rg->gc_gen & 1) {
		/* A GC pass runs: not to a segment it deletes (or has deleted), and noted so
		 * that it keeps the segment of a chunk its mark found dead. */
		for (size_t i = 0; ok && i < r->ndoomed; i++)
			ok = r->doomed[i] != rg->seg;
		if (ok && r->nrefs == r->caprefs) {
			size_t nc = r->caprefs ? 2 * r->caprefs : 1024;
			void *p = nc <= RED_GC_REFS_MAX ? realloc(r->refs, nc * sizeof(*r->refs)) : NULL;

			if (p) {
				r->refs = p;
				r->caprefs = nc;
			} else {
				ok = false;
			}
		}
		if (ok)
			r->refs[r->nrefs++] = (struct red_ref){ rg->seg, rg->chunk };
	}
	pthread_mutex_unlock(&r->gc_m);
	if (!ok)
		return false;
	e->kind = ENT_DEDUP;
	e->chunk_id = rg->chunk;
	e->home_off = rg->off;
	e->stored_len = 0;
	e->orig_len = rg->len;
	e->crc = rg->crc;
	e->comp = rg->comp;
	e->enc_gen = rg->enc_gen;
	atomic_fetch_add(&r->st_dedup_hits, 1);
	return true;
}

int red_seal(struct rod_store *s, uint64_t seg, struct batch_entry *ent, const void **src,
	     const struct red_grain *const *rg, uint32_t n, uint32_t *payload)
{
	struct red_store *r = s->red;
	uint32_t pos = 0, out = 0;
	uint8_t tmp[ROD_GRAIN];

	if ((size_t)n * ROD_GRAIN > r->cap) {
		uint8_t *nb = realloc(r->buf, (size_t)n * ROD_GRAIN);

		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap = (size_t)n * ROD_GRAIN;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct batch_entry *e = &ent[i];
		const struct red_grain *g = rg[i];

		if (e->kind != ENT_DATA) {
			/* Relocations keep their stored bytes (and payload) as they are. */
			e->payload_off = pos;
			pos += e->stored_len;
			continue;
		}
		if (g && g->sealed && (!r->encrypt || (g->sgen && CHUNK_SEG(g->schunk) == seg))) {
			/* Sealed by the submitting thread (encrypted for an id of this segment). */
			e->chunk_id = g->schunk ? g->schunk : chunk_alloc(r, seg);
			e->comp = g->scomp;
			e->enc_gen = g->sgen;
			e->crc = g->scrc;
			e->stored_len = g->slen;
			src[i] = g->sealed;
			atomic_fetch_add(&r->st_seal_early, 1);
		} else {
			/* Here: no id could be reserved, the segment changed since, or it was
			 * a duplicate that GC made us store. Always from the clear grain; not
			 * compressed again when the submitter's attempt did not pay (sealed,
			 * stored as is: a 1 MiB write in flight across a segment change). */
			const uint8_t *in = src[i];
			uint32_t len = ROD_GRAIN, clen = 0;
			bool tried = g && g->sealed && g->scomp == COMP_NONE;

			e->chunk_id = chunk_alloc(r, seg);
			e->comp = COMP_NONE;
			e->enc_gen = 0;
			if (r->compress && !(g && g->no_compress) && !tried &&
			    (clen = red_lz4_compress(in, ROD_GRAIN, tmp, sizeof(tmp)))) {
				in = tmp;
				len = clen;
				e->comp = COMP_LZ4;
			}
			if (r->encrypt) {
				int rc = red_encrypt(&r->dek, e->chunk_id, r->dek.gen, in, r->buf + out,
						     len);

				if (rc)
					return rc;
				e->enc_gen = r->dek.gen;
				in = r->buf + out;
			} else if (clen) {
				memcpy(r->buf + out, in, len);
				in = r->buf + out;
			}
			if (in != src[i]) {
				src[i] = in;
				out += len;
				e->crc = rod_crc32c(0, in, len);
			} else if (g && g->sealed) {
				e->crc = rod_crc32c(0, in, len); /* the submitter's CRC was of sealed */
			}
			e->stored_len = len;
			if (r->compress || r->encrypt)
				atomic_fetch_add(&r->st_seal_late, 1);
		}
		if (e->comp != COMP_NONE) {
			atomic_fetch_add(&r->st_compressed, 1);
			atomic_fetch_add(&r->st_saved, ROD_GRAIN - e->stored_len);
		}
		e->payload_off = pos;
		pos += e->stored_len;
		if (e->fp[0] | e->fp[1] | e->fp[2] | e->fp[3])
			red_fpidx_add(&r->idx, e->fp);
	}
	*payload = pos;
	return 0;
}

void red_entry_map_val(const struct batch_entry *e, uint64_t payload_base, struct map_val *mv)
{
	memset(mv, 0, sizeof(*mv));
	mv->chunk = e->chunk_id;
	mv->crc = e->crc;
	mv->comp = e->comp;
	mv->enc_gen = e->enc_gen;
	if (e->kind == ENT_DEDUP) {
		mv->off = e->home_off;
		mv->len = e->orig_len;
	} else {
		mv->off = (uint32_t)(payload_base + e->payload_off);
		mv->len = e->stored_len;
	}
}

int red_chunk_decode(struct rod_store *s, const struct map_val *mv, const void *stored,
		     void *dst)
{
	struct red_store *r = s->red;
	uint8_t tmp[ROD_GRAIN];
	const void *in = stored;
	int rc;

	if (mv->len > ROD_GRAIN || mv->len < (mv->enc_gen ? RED_MIN_STORED : 1u))
		return -EBADMSG;
	if (mv->enc_gen) {
		/* enc_gen is the tweak's generation (bumped when GC rewrites the chunk); the
		 * data key itself never changes (rekey re-wraps it). */
		if (!r || !r->have_dek) {
			rod_err("store: chunk %llx is encrypted but the store has no data key loaded",
				(unsigned long long)mv->chunk);
			return -EIO;
		}
		/* Compressed: decrypt aside, then decompress into dst. */
		void *to = mv->comp == COMP_NONE ? dst : (void *)tmp;

		rc = red_decrypt(&r->dek, mv->chunk, mv->enc_gen, stored, to, mv->len);
		if (rc)
			return -EIO;
		in = to;
	}
	rc = red_decompress(mv->comp, in, mv->len, dst, ROD_GRAIN);
	if (rc)
		rod_err("store: chunk %llx does not decompress", (unsigned long long)mv->chunk);
	return rc;
}

bool red_recompress(struct rod_store *s, const struct batch_entry *e, const void *stored,
		    uint8_t *out, uint32_t *len, uint32_t *crc, uint8_t *comp, uint16_t *enc_gen)
{
	struct red_store *r = s->red;
	uint8_t plain[ROD_GRAIN], z[ROD_GRAIN];
	struct map_val m = { .chunk = e->chunk_id, .len = e->stored_len, .comp = e->comp,
			     .enc_gen = e->enc_gen };
	uint32_t zl;
	uint16_t gen = 0;

	if (!r->compress || e->comp == COMP_ZSTD || e->enc_gen == UINT16_MAX ||
	    red_chunk_decode(s, &m, stored, plain))
		return false;
	zl = red_zstd_compress(plain, ROD_GRAIN, z, sizeof(z));
	if (!zl || zl >= e->stored_len)
		return false;
	if (e->enc_gen || (r->encrypt && r->have_dek)) {
		/* Same chunk id, new bytes: the next generation keeps the tweak unique. */
		gen = (uint16_t)(e->enc_gen + 1);
		if (red_encrypt(&r->dek, e->chunk_id, gen, z, out, zl))
			return false;
	} else {
		memcpy(out, z, zl);
	}
	*len = zl;
	*crc = rod_crc32c(0, out, zl);
	*comp = COMP_ZSTD;
	*enc_gen = gen;
	return true;
}

void red_gc_begin(struct rod_store *s)
{
	struct red_store *r = s->red;
	struct citem ci = { .kind = CI_FLUSH };

	pthread_mutex_lock(&r->gc_m);
	r->ndoomed = r->nrefs = 0;
	atomic_fetch_add(&r->gc_gen, 1);
	pthread_mutex_unlock(&r->gc_m);
	/* Every batch the commit thread has taken before the increment is applied once this
	 * item completes, so the mark that follows sees its dedupe entries; later ones see
	 * the odd generation (dedupe entries through red_gc_doom's rules, the rest as
	 * stored data). */
	commit_run(s, &ci);
}

bool red_gc_doom(struct rod_store *s, uint64_t seg, bool (*live)(void *arg, uint64_t chunk),
		 void *arg)
{
	struct red_store *r = s->red;
	bool ok = true;

	pthread_mutex_lock(&r->gc_m);
	/* A dedupe entry committed since the mark to a chunk of seg the mark found dead
	 * (nothing referenced it then): the pass would not move that chunk. Keep seg. */
	for (size_t i = 0; ok && i < r->nrefs; i++)
		ok = r->refs[i].seg != seg || live(arg, r->refs[i].chunk);
	if (ok && r->ndoomed == r->capdoomed) {
		size_t nc = r->capdoomed ? 2 * r->capdoomed : 64;
		uint64_t *p = realloc(r->doomed, nc * sizeof(*p));

		if (p) {
			r->doomed = p;
			r->capdoomed = nc;
		} else {
			ok = false;
		}
	}
	if (ok)
		r->doomed[r->ndoomed++] = seg;
	pthread_mutex_unlock(&r->gc_m);
	if (!ok)
		rod_debug("store: GC keeps segment %llu: deduplicated against during the pass",
			  (unsigned long long)seg);
	return ok;
}

void red_gc_end(struct rod_store *s)
{
	struct red_store *r = s->red;

	pthread_mutex_lock(&r->gc_m);
	atomic_fetch_add(&r->gc_gen, 1);
	r->ndoomed = r->nrefs = 0;
	pthread_mutex_unlock(&r->gc_m);
}

int rod_store_rekey(struct rod_store *s, const char *new_key_file)
{
	struct red_store *r = s->red;
	uint8_t kek[RED_KEK_LEN];
	bool created;
	char *kf;
	int rc;

	if (!new_key_file || !*new_key_file)
		return -EINVAL;
	if (!r || !r->encrypt) {
		rod_err("store: rekey: the store has no data key (encryption is off)");
		return -ENOKEY;
	}
	rc = red_kek_load(new_key_file, true, kek, &created);
	if (rc) {
		rod_err("store: rekey: cannot read or create key file %s: %s", new_key_file,
			rc == -EINVAL ? "not 64 hex digits" : strerror(-rc));
		return rc;
	}
	if (!(kf = strdup(new_key_file)))
		return -ENOMEM;
	pthread_mutex_lock(&s->ckpt_lock); /* one rekey (or checkpoint) at a time */
	rc = red_dek_store(s->dir, kek, &r->dek);
	if (!rc) {
		free(r->key_file);
		r->key_file = kf;
		kf = NULL;
	}
	pthread_mutex_unlock(&s->ckpt_lock);
	memset(kek, 0, sizeof(kek));
	free(kf);
	if (rc)
		rod_err("store: rekey: cannot write the wrapped data key: %s", strerror(-rc));
	else
		rod_info("store: data key re-wrapped with key file %s%s", new_key_file,
			 created ? " (created)" : "");
	return rc;
}
