/* RocksDB wrapper: column families, unlogged write batches, iterators. */
#include "meta.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "rod/log.h"

#include "fault.h"

static const char *const cf_names[CF_COUNT] = {
	"default", "map", "rng", "lin", "vol", "meta", "chunk", "sys", "fp", "seg",
};

struct meta {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_block_based_table_options_t *bbo;
	rocksdb_cache_t *cache;
	rocksdb_column_family_handle_t *cf[CF_COUNT];
	rocksdb_writeoptions_t *wo;
	rocksdb_readoptions_t *ro;
	atomic_uint_fast64_t iter_gen; /* meta_iter_gen_bump */
	atomic_uint_fast64_t clock;    /* meta_clock_tick */
};

struct meta_batch {
	rocksdb_writebatch_t *wb;
};

struct meta_iter {
	rocksdb_iterator_t *it;
	struct meta *m;
	enum meta_cf cf;
	uint64_t gen;           /* m->iter_gen when it was created */
	uint64_t born;          /* m->clock just before the RocksDB iterator was created */
	bool lazy;              /* meta_iter_new_lazy: created at the first seek */
};

int meta_open(const char *path, bool create, struct meta **out)
{
	struct meta *m = calloc(1, sizeof(*m));
	const rocksdb_options_t *cfo[CF_COUNT];
	char *err = NULL;

	if (!m)
		return -ENOMEM;
	m->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(m->opts, create);
	rocksdb_options_set_create_missing_column_families(m->opts, create);
	rocksdb_options_increase_parallelism(m->opts, 2);
	rocksdb_options_set_max_background_jobs(m->opts, 2);
	rocksdb_options_set_write_buffer_size(m->opts, META_WRITE_BUFFER);
	rocksdb_options_set_compression(m->opts, rocksdb_lz4_compression);
	/* Column families flush together so a checkpoint covers all of them. */
	rocksdb_options_set_atomic_flush(m->opts, 1);
	m->bbo = rocksdb_block_based_options_create();
	m->cache = rocksdb_cache_create_lru(256 << 20);
	rocksdb_block_based_options_set_block_cache(m->bbo, m->cache);
	rocksdb_block_based_options_set_filter_policy(m->bbo, rocksdb_filterpolicy_create_bloom(10));
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(m->bbo, 1);
	rocksdb_options_set_block_based_table_factory(m->opts, m->bbo);
	for (int i = 0; i < CF_COUNT; i++)
		cfo[i] = m->opts;
	m->db = rocksdb_open_column_families(m->opts, path, CF_COUNT, cf_names, cfo, m->cf, &err);
	if (err) {
		rod_err("store: cannot open metadata database %s: %s", path, err);
		free(err);
		rocksdb_options_destroy(m->opts);
		rocksdb_block_based_options_destroy(m->bbo);
		rocksdb_cache_destroy(m->cache);
		free(m);
		return -EIO;
	}
	m->wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(m->wo, 1);
	m->ro = rocksdb_readoptions_create();
	*out = m;
	return 0;
}

void meta_close(struct meta *m)
{
	if (!m)
		return;
	meta_flush(m);
	for (int i = 0; i < CF_COUNT; i++)
		rocksdb_column_family_handle_destroy(m->cf[i]);
	rocksdb_close(m->db);
	rocksdb_writeoptions_destroy(m->wo);
	rocksdb_readoptions_destroy(m->ro);
	rocksdb_options_destroy(m->opts);
	rocksdb_block_based_options_destroy(m->bbo);
	rocksdb_cache_destroy(m->cache);
	free(m);
}

/* Flushes every column family's memtable; wait: until the table files are written. */
static int meta_flush_cfs(struct meta *m, unsigned char wait)
{
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	char *err = NULL;

	rocksdb_flushoptions_set_wait(fo, wait);
	for (int i = 0; i < CF_COUNT && !err; i++)
		rocksdb_flush_cf(m->db, fo, m->cf[i], &err);
	rocksdb_flushoptions_destroy(fo);
	if (err) {
		rod_err("store: metadata flush failed: %s", err);
		free(err);
		return -EIO;
	}
	return 0;
}

void meta_thread_no_perf_counts(void)
{
	/* RocksDB counts key comparisons and the like per thread by default (kEnableCount),
	 * a thread-local access through __tls_get_addr in every memtable comparison. Nothing
	 * here reads those counts. */
	rocksdb_set_perf_level(1); /* rocksdb::PerfLevel::kDisable */
}

int meta_flush(struct meta *m)
{
	return meta_flush_cfs(m, 1);
}

int meta_switch(struct meta *m)
{
	return meta_flush_cfs(m, 0);
}

/* An integer property of RocksDB, summed over every column family. */
static uint64_t prop_sum(struct meta *m, const char *name)
{
	uint64_t sum = 0;

	for (int i = 0; i < CF_COUNT; i++) {
		uint64_t v = 0;

		if (rocksdb_property_int_cf(m->db, m->cf[i], name, &v) == 0)
			sum += v;
	}
	return sum;
}

int meta_flush_wait(struct meta *m)
{
	/* An immutable memtable leaves the list once its table file and the manifest
	 * entry are durable. */
	for (unsigned ms = 0; ms < 300000; ms++) {
		if (!prop_sum(m, "rocksdb.num-immutable-mem-table"))
			return 0;
		usleep(1000);
	}
	rod_err("store: metadata flush did not finish in 300 s");
	return -EIO;
}

uint64_t meta_mem_active(struct meta *m)
{
	return prop_sum(m, "rocksdb.cur-size-active-mem-table");
}

int meta_get(struct meta *m, enum meta_cf cf, const void *key, size_t klen, void **val,
	     size_t *vlen)
{
	char *err = NULL;
	size_t len = 0;
	char *v = rocksdb_get_cf(m->db, m->ro, m->cf[cf], key, klen, &len, &err);

	if (err) {
		rod_err("store: metadata read failed: %s", err);
		free(err);
		return -EIO;
	}
	if (!v)
		return -ENOENT;
	*val = v;
	*vlen = len;
	return 0;
}

int meta_put(struct meta *m, enum meta_cf cf, const void *key, size_t klen, const void *val,
	     size_t vlen)
{
	char *err = NULL;

	rocksdb_put_cf(m->db, m->wo, m->cf[cf], key, klen, val, vlen, &err);
	if (err) {
		rod_err("store: metadata write failed: %s", err);
		free(err);
		return -EIO;
	}
	return 0;
}

struct meta_batch *meta_batch_new(void)
{
	struct meta_batch *b = calloc(1, sizeof(*b));

	if (b)
		b->wb = rocksdb_writebatch_create();
	return b;
}

void meta_batch_free(struct meta_batch *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

void meta_batch_clear(struct meta_batch *b)
{
	rocksdb_writebatch_clear(b->wb);
}

void meta_batch_put(struct meta_batch *b, struct meta *m, enum meta_cf cf, const void *key,
		    size_t klen, const void *val, size_t vlen)
{
	rocksdb_writebatch_put_cf(b->wb, m->cf[cf], key, klen, val, vlen);
}

void meta_batch_del(struct meta_batch *b, struct meta *m, enum meta_cf cf, const void *key,
		    size_t klen)
{
	rocksdb_writebatch_delete_cf(b->wb, m->cf[cf], key, klen);
}

void meta_batch_del_range(struct meta_batch *b, struct meta *m, enum meta_cf cf,
			  const void *k0, size_t k0len, const void *k1, size_t k1len)
{
	rocksdb_writebatch_delete_range_cf(b->wb, m->cf[cf], k0, k0len, k1, k1len);
}

int meta_batch_write(struct meta *m, struct meta_batch *b)
{
	char *err = NULL;

	if (fault_hit(FAULT_ROCKSDB_WRITE_FAIL)) {
		rod_err("store: metadata batch write failed: injected fault");
		return -EIO;
	}
	rocksdb_write(m->db, m->wo, b->wb, &err);
	if (err) {
		rod_err("store: metadata batch write failed: %s", err);
		free(err);
		return -EIO;
	}
	return 0;
}

static void iter_create(struct meta_iter *it)
{
	/* Both read before the RocksDB iterator takes its implicit snapshot
	 * (meta_iter_renew, meta_iter_born). */
	it->gen = atomic_load(&it->m->iter_gen);
	it->born = atomic_load(&it->m->clock);
	it->it = rocksdb_create_iterator_cf(it->m->db, it->m->ro, it->m->cf[it->cf]);
}

struct meta_iter *meta_iter_new_lazy(struct meta *m, enum meta_cf cf)
{
	struct meta_iter *it = calloc(1, sizeof(*it));

	if (!it)
		return NULL;
	it->m = m;
	it->cf = cf;
	it->lazy = true;
	return it;
}

struct meta_iter *meta_iter_new(struct meta *m, enum meta_cf cf)
{
	struct meta_iter *it = meta_iter_new_lazy(m, cf);

	if (it) {
		it->lazy = false;
		iter_create(it);
	}
	return it;
}

uint64_t meta_iter_born(const struct meta_iter *it)
{
	return it->born;
}

uint64_t meta_clock_tick(struct meta *m)
{
	return atomic_fetch_add(&m->clock, 1) + 1;
}

void meta_iter_gen_bump(struct meta *m)
{
	atomic_fetch_add(&m->iter_gen, 1);
}

void meta_iter_renew(struct meta_iter *it)
{
	if (!it->it || atomic_load(&it->m->iter_gen) == it->gen)
		return;
	rocksdb_iter_destroy(it->it);
	it->it = NULL;
	if (!it->lazy)
		iter_create(it);
}

void meta_iter_free(struct meta_iter *it)
{
	if (!it)
		return;
	if (it->it)
		rocksdb_iter_destroy(it->it);
	free(it);
}

void meta_iter_seek(struct meta_iter *it, const void *key, size_t klen)
{
	if (!it->it)
		iter_create(it);
	rocksdb_iter_seek(it->it, key, klen);
}

void meta_iter_first(struct meta_iter *it)
{
	if (!it->it)
		iter_create(it);
	rocksdb_iter_seek_to_first(it->it);
}

bool meta_iter_valid(struct meta_iter *it)
{
	return it->it && rocksdb_iter_valid(it->it);
}

void meta_iter_next(struct meta_iter *it)
{
	rocksdb_iter_next(it->it);
}

const uint8_t *meta_iter_key(struct meta_iter *it, size_t *klen)
{
	return (const uint8_t *)rocksdb_iter_key(it->it, klen);
}

const uint8_t *meta_iter_val(struct meta_iter *it, size_t *vlen)
{
	return (const uint8_t *)rocksdb_iter_value(it->it, vlen);
}

static void mutbuf_grow(struct mutbuf *mb, size_t need)
{
	if (mb->len + need <= mb->cap)
		return;
	size_t cap = mb->cap ? mb->cap * 2 : 1024;
	while (cap < mb->len + need)
		cap *= 2;
	uint8_t *nb = realloc(mb->buf, cap);
	if (!nb)
		abort(); /* metadata cannot be half-logged */
	mb->buf = nb;
	mb->cap = cap;
}

static void mutbuf_add(struct mutbuf *mb, int op, enum meta_cf cf, const void *k, size_t kl,
		       const void *v, size_t vl)
{
	uint8_t *p;
	uint16_t k16 = (uint16_t)kl;
	uint32_t v32 = (uint32_t)vl;

	mutbuf_grow(mb, 8 + kl + vl);
	p = mb->buf + mb->len;
	p[0] = (uint8_t)cf;
	p[1] = (uint8_t)op;
	memcpy(p + 2, &k16, 2);
	memcpy(p + 4, &v32, 4);
	memcpy(p + 8, k, kl);
	if (vl)
		memcpy(p + 8 + kl, v, vl);
	mb->len += 8 + kl + vl;
}

void mutbuf_put(struct mutbuf *mb, enum meta_cf cf, const void *k, size_t kl, const void *v,
		size_t vl)
{
	mutbuf_add(mb, MUT_PUT, cf, k, kl, v, vl);
}

void mutbuf_del(struct mutbuf *mb, enum meta_cf cf, const void *k, size_t kl)
{
	mutbuf_add(mb, MUT_DEL, cf, k, kl, NULL, 0);
}

void mutbuf_del_range(struct mutbuf *mb, enum meta_cf cf, const void *k0, size_t k0l,
		      const void *k1, size_t k1l)
{
	mutbuf_add(mb, MUT_DELRANGE, cf, k0, k0l, k1, k1l);
}

void mutbuf_free(struct mutbuf *mb)
{
	free(mb->buf);
	memset(mb, 0, sizeof(*mb));
}

bool mutbuf_next(const uint8_t *buf, size_t len, size_t *pos, struct mut *m)
{
	size_t p = *pos;

	if (p > len || len - p < 8)
		return false;
	memcpy(&m->kl, buf + p + 2, 2);
	memcpy(&m->vl, buf + p + 4, 4);
	if (len - p - 8 < (size_t)m->kl + m->vl)
		return false;
	m->cf = buf[p];
	m->op = buf[p + 1];
	m->k = buf + p + 8;
	m->v = m->k + m->kl;
	*pos = p + 8 + (size_t)m->kl + m->vl;
	return true;
}

int mutbuf_apply(struct meta *m, struct meta_batch *b, const uint8_t *buf, size_t len)
{
	size_t pos = 0;
	struct mut u;

	while (mutbuf_next(buf, len, &pos, &u)) {
		if (u.cf >= CF_COUNT)
			return -EINVAL;
		if (u.op == MUT_PUT)
			meta_batch_put(b, m, u.cf, u.k, u.kl, u.v, u.vl);
		else if (u.op == MUT_DEL)
			meta_batch_del(b, m, u.cf, u.k, u.kl);
		else if (u.op == MUT_DELRANGE)
			meta_batch_del_range(b, m, u.cf, u.k, u.kl, u.v, u.vl);
		else
			return -EINVAL;
	}
	return pos == len ? 0 : -EINVAL;
}
