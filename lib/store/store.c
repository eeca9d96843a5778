/* Store lifecycle: superblock, open/recover/close, checkpoints, meta KV, stats. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "commit.h"
#include "fault.h"
#include "gc.h"
#include "mapcache.h"
#include "reduce_store.h"
#include "rod/log.h"
#include "rod/util.h"

#define SB_MAGIC "RODSUPER"
#define SB_LEN 136

static int read_file(const char *dir, const char *name, void *buf, size_t len, size_t *got)
{
	char path[4096];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, buf, len, 0);
	close(fd);
	if (n < 0)
		return -errno;
	*got = (size_t)n;
	return 0;
}

static void sb_encode(const struct rod_array_identity *id, uint8_t *b)
{
	memset(b, 0, SB_LEN);
	memcpy(b, SB_MAGIC, 8);
	rod_put_be32(b + 8, id->format_version);
	memcpy(b + 16, id->name, ROD_NAME_MAX);
	memcpy(b + 80, id->id, 16);
	memcpy(b + 96, id->secret, 32);
	rod_put_be64(b + 128, id->created_ns);
	rod_put_be32(b + 12, rod_crc32c(0, b, SB_LEN));
}

static int sb_create(struct rod_store *s)
{
	uint8_t b[SB_LEN];
	struct rod_array_identity *id = &s->ident;
	char host[256] = "rodstore";

	memset(id, 0, sizeof(*id));
	if (s->opts.array_name && *s->opts.array_name) {
		if (!rod_name_valid(s->opts.array_name))
			return -EINVAL;
		snprintf(id->name, sizeof(id->name), "%s", s->opts.array_name);
	} else {
		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = 0;
		for (char *p = host; *p; p++)
			if (!rod_name_valid((char[]){ *p, 0 }))
				*p = '-';
		snprintf(id->name, sizeof(id->name), "%.63s", host);
	}
	if (rod_random_bytes(id->id, sizeof(id->id)) || rod_random_bytes(id->secret, sizeof(id->secret)))
		return -EIO;
	id->created_ns = rod_wall_ns();
	id->format_version = ROD_FORMAT_VERSION;
	sb_encode(id, b);
	return rod_write_file_atomic(s->dir, "superblock", b, sizeof(b));
}

static int sb_read(struct rod_store *s)
{
	uint8_t b[SB_LEN + 16];
	size_t got;
	uint32_t crc, ver;
	int rc = read_file(s->dir, "superblock", b, sizeof(b), &got);

	if (rc)
		return rc;
	if (got < 16 || memcmp(b, SB_MAGIC, 8)) {
		rod_err("store: %s/superblock is not a rodstore superblock", s->dir);
		return -EINVAL;
	}
	ver = rod_get_be32(b + 8);
	if (ver < ROD_FORMAT_OLDEST || ver > ROD_FORMAT_VERSION) {
		rod_err("store: %s has format version %u; this build knows versions %u to %u "
			"(use the rodstore release that created it)", s->dir, ver, ROD_FORMAT_OLDEST,
			ROD_FORMAT_VERSION);
		return -EPROTO;
	}
	if (got != SB_LEN) {
		rod_err("store: %s/superblock is truncated", s->dir);
		return -EIO;
	}
	crc = rod_get_be32(b + 12);
	rod_put_be32(b + 12, 0);
	if (rod_crc32c(0, b, SB_LEN) != crc) {
		rod_err("store: %s/superblock checksum mismatch", s->dir);
		return -EIO;
	}
	memcpy(s->ident.name, b + 16, ROD_NAME_MAX);
	s->ident.name[ROD_NAME_MAX - 1] = 0;
	memcpy(s->ident.id, b + 80, 16);
	memcpy(s->ident.secret, b + 96, 32);
	s->ident.created_ns = rod_get_be64(b + 128);
	s->ident.format_version = ver;
	if (ver < ROD_FORMAT_VERSION) {
		/* From now on this store may hold what older binaries misread: make them
		 * refuse it (their own check above) before anything is written. */
		s->ident.format_version = ROD_FORMAT_VERSION;
		sb_encode(&s->ident, b);
		rc = rod_write_file_atomic(s->dir, "superblock", b, SB_LEN);
		if (rc) {
			rod_err("store: cannot upgrade %s/superblock to format version %u: %s", s->dir,
				ROD_FORMAT_VERSION, strerror(-rc));
			return rc;
		}
		rod_info("store: %s upgraded from format version %u to %u (binaries from before "
			 "data reduction refuse it from now on)", s->dir, ver, ROD_FORMAT_VERSION);
	}
	return 0;
}

static int ckpt_read(struct rod_store *s, uint64_t *seg, uint64_t *off)
{
	uint8_t b[20];
	size_t got = 0;

	*seg = 0;
	*off = 0;
	if (read_file(s->dir, "checkpoint", b, sizeof(b), &got) || got != 20)
		return 0;
	if (rod_crc32c(0, b, 16) != rod_get_be32(b + 16)) {
		rod_warn("store: checkpoint file damaged; replaying the whole log");
		return 0;
	}
	*seg = rod_get_be64(b);
	*off = rod_get_be64(b + 8);
	return 0;
}

static int ckpt_write(struct rod_store *s, uint64_t seg, uint64_t off)
{
	uint8_t b[20];

	rod_put_be64(b, seg);
	rod_put_be64(b + 8, off);
	rod_put_be32(b + 16, rod_crc32c(0, b, 16));
	return rod_write_file_atomic(s->dir, "checkpoint", b, sizeof(b));
}

/* Everything durable and applied so far reaches RocksDB's files; then the log before
 * that point is no longer needed for recovery. */
int store_checkpoint(struct rod_store *s)
{
	uint64_t seg, off;
	int rc;

	/* GC and the background thread both checkpoint; one at a time (one tmp file). */
	pthread_mutex_lock(&s->ckpt_lock);
	if (commit_running(s)) {
		/* The commit thread syncs the log (write-back data included), then switches
		 * RocksDB's memtables before it applies anything more: the table files never
		 * hold a map entry whose data is not durable (commit.c, MEM_SYNC_ALL). */
		struct citem ci = { .kind = CI_FLUSH, .durable = true, .ckpt = true };

		rc = commit_run(s, &ci);
		seg = ci.ckpt_seg;
		off = ci.ckpt_off;
		if (!rc)
			rc = meta_flush_wait(s->meta);
	} else {
		/* Stopped (close): commit_stop synced the log. */
		commit_durable_pos(s, &seg, &off);
		rc = meta_flush(s->meta);
	}
	if (!rc)
		rc = ckpt_write(s, seg, off);
	if (!rc) {
		pthread_mutex_lock(&s->bg_m);
		s->ckpt_seg = seg;
		s->ckpt_off = off;
		pthread_mutex_unlock(&s->bg_m);
	}
	pthread_mutex_unlock(&s->ckpt_lock);
	return rc;
}

/* Replay the log after the checkpoint into RocksDB. A batch that fails its checks ends
 * the valid log of its segment (a torn append); the tail is cut off so new batches never
 * follow garbage. */
static int replay(struct rod_store *s, uint64_t cseg, uint64_t coff, uint64_t *records,
		  bool rebuild)
{
	uint64_t *ids;
	size_t n;
	int rc = seglog_list(s->log, &ids, &n);

	if (rc)
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t off;

		if (ids[i] < cseg)
			continue;
		off = ids[i] == cseg ? coff : 0;
		for (;;) {
			struct batch b;

			rc = batch_read(s->log, ids[i], off, true, &b);
			if (rc == -ENODATA) {
				rc = 0;
				if (off < seglog_size(s->log, ids[i])) {
					if (i + 1 == n) {
						rod_warn("store: segment %" PRIu64 ": discarding %" PRIu64
							 " bytes of an incomplete batch at offset %" PRIu64,
							 ids[i], seglog_size(s->log, ids[i]) - off, off);
						rc = seglog_truncate(s->log, ids[i], off);
						s->log_truncated = true;
					} else {
						rod_err("store: segment %" PRIu64 " damaged at offset %" PRIu64
							"; later batches of it are skipped", ids[i], off);
					}
				}
				break;
			}
			if (rc)
				break;
			rc = commit_apply_batch(s, &b, rebuild);
			(*records)++;
			off = b.next_off;
			batch_release(&b);
			if (rc)
				break;
		}
	}
	free(ids);
	return rc;
}

static int sys_get_u64(struct rod_store *s, const char *key, uint64_t *out)
{
	void *v;
	size_t len;
	int rc = meta_get(s->meta, CF_SYS, key, strlen(key), &v, &len);

	if (rc)
		return rc;
	if (len == 8)
		*out = rod_get_be64(v);
	free(v);
	return 0;
}

void sys_log_u64(struct mutbuf *mb, const char *key, uint64_t v)
{
	uint8_t b[8];

	rod_put_be64(b, v);
	mutbuf_put(mb, CF_SYS, key, strlen(key), b, 8);
}

/* Map cache slots (64 bytes each, plus 10 bytes of moved-chunk places): one per 8 KiB
 * of RAM (the table takes under 1 % of it), at least 512 Ki (the entries of 2 GiB of
 * grains) and at most 16 Mi, rounded down to a power of two: 2 Mi slots (8 GiB of
 * grains, 148 MiB) with 24 GiB. Slots are spread by hash, so the table is resident after
 * a few hundred thousand grains (docs/engine.md, "Map cache").
 * ROD_MAP_CACHE_SLOTS overrides (0: no cache; tests use small sizes). */
static size_t mapcache_slots(void)
{
	const char *e = getenv("ROD_MAP_CACHE_SLOTS");
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
	uint64_t n = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 8192 : 0;

	if (e)
		return (size_t)strtoull(e, NULL, 0);
	return (size_t)ROD_MIN(ROD_MAX(n, 512u << 10), 16u << 20);
}

static void *bg_main(void *arg)
{
	struct rod_store *s = arg;
	uint64_t last_ckpt = rod_now_ns(), last_gc = rod_now_ns();
	bool gc_paid = true;    /* the last GC pass freed space (or none ran yet) */
	uint64_t gc_gen = 0;    /* change_gen after the last GC pass */

	rod_thread_name("rod-store-bg");
	pthread_mutex_lock(&s->bg_m);
	while (!s->stopping) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->bg_c, &s->bg_m, &ts);
		if (s->stopping)
			break;
		pthread_mutex_unlock(&s->bg_m);
		uint64_t now = rod_now_ns(), seg, off;
		commit_durable_pos(s, &seg, &off);
		/* Bound the replay work after a crash: checkpoint every 2 s of activity.
		 * Write-back data is synced first, so what a power cut can take from a
		 * write-back volume is at most the last ~2 s. */
		if (now - last_ckpt > 2000000000ull) {
			if (commit_unsynced(s))
				rod_store_flush(s);
			commit_durable_pos(s, &seg, &off);
			if (seg != s->ckpt_seg || off != s->ckpt_off)
				store_checkpoint(s);
			last_ckpt = now;
		}
		/* While new data is refused for space, look again after 1 s instead of 5
		 * (a full store otherwise refused writes for up to 5 s after UNMAP freed
		 * space, and never collected when restarted more often than every 5 s),
		 * unless the last pass freed nothing and nothing changed since: then
		 * marking the whole map every second would only burn CPU. */
		bool worth = gc_paid || atomic_load(&s->change_gen) != gc_gen;
		/* A pass deferred for volume I/O (gc_maybe) starts within 1 s of quiet. */
		uint64_t gc_gap = 5000000000ull;

		if ((worth && space_low(s)) || s->gc_due_since)
			gc_gap = 1000000000ull;

		if (!s->opts.no_gc_thread && now - last_gc > gc_gap) {
			uint64_t before = space_used(s);

			gc_maybe(s);
			gc_paid = space_used(s) < before;
			gc_gen = atomic_load(&s->change_gen);
			last_gc = rod_now_ns();
		}
		pthread_mutex_lock(&s->bg_m);
	}
	pthread_mutex_unlock(&s->bg_m);
	return NULL;
}

/* After a torn log tail: RocksDB may have written (by its own memtable flush) map entries
 * of write-back batches whose data never reached the disk. Such grains lose the write
 * (a volatile cache's semantics) instead of failing reads: their map entries go. Only
 * needed when a write-back volume exists; one pass over the map. */
static int drop_dangling(struct rod_store *s)
{
	struct meta_iter *it;
	struct meta_batch *b;
	bool wb = false;
	uint64_t n = 0;
	int rc = 0;

	for (size_t i = 0; i < s->nvols; i++)
		wb |= s->vols[i]->cache == ROD_CACHE_WRITE_BACK;
	if (!wb)
		return 0;
	it = meta_iter_new(s->meta, CF_MAP);
	b = meta_batch_new();
	if (!it || !b) {
		meta_iter_free(it);
		meta_batch_free(b);
		return -ENOMEM;
	}
	for (meta_iter_first(it); meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = meta_iter_key(it, &kl), *v = meta_iter_val(it, &vl);
		struct map_val mv;
		uint64_t seg;

		if (vl < MAP_VAL_LEN)
			continue;
		map_val_decode(&mv, v);
		if (mv.chunk <= CHUNK_UNMAP)
			continue;
		seg = CHUNK_SEG(mv.chunk);
		if (seglog_has(s->log, seg)) {
			if ((uint64_t)mv.off + mv.len <= seglog_size(s->log, seg))
				continue;
		} else {
			uint8_t ck[8];
			void *cv;
			size_t cl;

			rod_put_be64(ck, mv.chunk);
			if (meta_get(s->meta, CF_CHUNK, ck, 8, &cv, &cl) == 0) {
				free(cv);
				continue;
			}
		}
		meta_batch_del(b, s->meta, CF_MAP, k, kl);
		n++;
	}
	meta_iter_free(it);
	if (n) {
		rc = meta_batch_write(s->meta, b);
		rod_warn("store: %" PRIu64 " write-back grains written before the crash were lost "
			 "with the log's torn tail", n);
	}
	meta_batch_free(b);
	return rc;
}

int rod_store_open(const struct rod_store_opts *opts, struct rod_store **out)
{
	struct rod_store *s;
	char path[4096];
	struct stat st;
	uint64_t cseg, coff, t0;
	pthread_rwlockattr_t ra;
	int rc;

	if (!opts || !opts->dir || !*opts->dir)
		return -EINVAL;
	fault_init_env(); /* ROD_FAULT (tests), once per process */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->opts = *opts;
	s->dir = strdup(opts->dir);
	s->opts.dir = s->dir;
	s->opts.array_name = NULL;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->state, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&s->gc_lock, NULL);
	pthread_mutex_init(&s->ckpt_lock, NULL);
	pthread_mutex_init(&s->space_lock, NULL);
	pthread_mutex_init(&s->wpool_m, NULL);
	pthread_mutex_init(&s->bg_m, NULL);
	pthread_cond_init(&s->bg_c, NULL);
	for (unsigned i = 0; i < ROD_STRIPES; i++) {
		pthread_mutex_init(&s->stripes[i].m, NULL);
		pthread_cond_init(&s->stripes[i].c, NULL);
	}
	s->pins.pin_next = s->pins.pin_prev = &s->pins;
	s->next_vol_id = 1;
	s->next_lineage = LIN_FIRST;

	snprintf(path, sizeof(path), "%s/superblock", s->dir);
	if (stat(path, &st)) {
		if (!opts->create) {
			rod_err("store: no store in %s (create one first)", s->dir);
			rc = -ENOENT;
			goto fail;
		}
		if (mkdir(s->dir, 0700) && errno != EEXIST) {
			rc = -errno;
			rod_err("store: cannot create %s: %s", s->dir, strerror(errno));
			goto fail;
		}
		s->opts.array_name = opts->array_name;
		rc = sb_create(s);
		s->opts.array_name = NULL;
		if (rc)
			goto fail;
	}
	rc = sb_read(s);
	if (rc)
		goto fail;
	snprintf(path, sizeof(path), "%s/meta", s->dir);
	rc = meta_open(path, true, &s->meta);
	if (rc)
		goto fail;
	snprintf(path, sizeof(path), "%s/seg", s->dir);
	rc = seglog_open(path, &s->log);
	if (rc)
		goto fail;

	t0 = rod_now_ns();
	ckpt_read(s, &cseg, &coff);
	rc = replay(s, cseg, coff, &s->recovered_records, false);
	if (rc)
		goto fail;
	sys_get_u64(s, "next_vol_id", &s->next_vol_id);
	sys_get_u64(s, "next_lineage", &s->next_lineage);
	rc = media_load(&s->media, s->meta);
	if (!rc)
		rc = vol_load_all(s);
	if (!rc && s->log_truncated)
		rc = drop_dangling(s);
	if (!rc)
		rc = red_store_open(s); /* keys (a wrong key file fails here), RAM fp filter */
	if (rc)
		goto fail;
	s->recovery_ns = rod_now_ns() - t0;
	if (s->recovered_records)
		rod_info("store: replayed %" PRIu64 " log records in %.3f s", s->recovered_records,
			 s->recovery_ns / 1e9);

	{
		struct statvfs vfs;

		s->fs_free = UINT64_MAX;
		s->capacity = opts->capacity_bytes;
		if (!s->capacity && !statvfs(s->dir, &vfs))
			s->capacity = (uint64_t)vfs.f_blocks * vfs.f_frsize;
		s->reserve = opts->reserve_bytes;
		if (!s->reserve)
			s->reserve = ROD_MAX(64ull << 20, s->capacity / 100);
	}

	s->media.mc = mc_new(mapcache_slots());
	rc = commit_start(s);
	if (!rc)
		rc = copy_workers_start(s);
	if (rc)
		goto fail;
	/* New batches go to a new segment: the durable position starts there. */
	commit_set_pos(s, s->log->next_id, 0);
	if (s->recovered_records || s->log_truncated) {
		rc = store_checkpoint(s);
		if (rc)
			goto fail;
	} else {
		s->ckpt_seg = s->log->next_id;
	}
	if (pthread_create(&s->gc_thread, NULL, bg_main, s) == 0)
		s->gc_thread_on = true;
	*out = s;
	return 0;
fail:
	copy_workers_stop(s);
	wreq_pool_drain(s);
	if (s->commit)
		commit_free(s);
	red_store_close(s);
	if (s->meta)
		meta_close(s->meta);
	if (s->log)
		seglog_close(s->log);
	mc_free(s->media.mc);
	media_free(&s->media);
	for (size_t i = 0; i < s->nvols; i++)
		free(s->vols[i]);
	free(s->vols);
	free(s->dir);
	free(s);
	return rc;
}

void rod_store_close(struct rod_store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->bg_m);
	s->stopping = true;
	pthread_cond_broadcast(&s->bg_c);
	pthread_mutex_unlock(&s->bg_m);
	if (s->gc_thread_on)
		pthread_join(s->gc_thread, NULL);
	pthread_mutex_lock(&s->gc_lock);
	pthread_mutex_unlock(&s->gc_lock);
	copy_workers_stop(s);
	commit_stop(s);
	store_checkpoint(s);
	commit_free(s);
	wreq_pool_drain(s);
	red_store_close(s);
	meta_close(s->meta);
	seglog_close(s->log);
	mc_free(s->media.mc);
	media_free(&s->media);
	for (size_t i = 0; i < s->nvols; i++)
		free(s->vols[i]);
	free(s->vols);
	free(s->space_cache);
	free(s->dir);
	free(s);
}

int rod_store_rebuild_metadata(const char *dir, uint64_t *records)
{
	struct rod_store *s;
	char path[4096], old[4096];
	uint64_t n = 0;
	int rc;

	if (!dir || !*dir)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dir = strdup(dir);
	rc = sb_read(s);
	if (rc)
		goto out;
	snprintf(path, sizeof(path), "%s/meta", s->dir);
	snprintf(old, sizeof(old), "%s/meta.old.%" PRIu64, s->dir, rod_wall_ns());
	if (rename(path, old) && errno != ENOENT) {
		rc = -errno;
		rod_err("store: cannot move %s aside: %s", path, strerror(errno));
		goto out;
	}
	rc = meta_open(path, true, &s->meta);
	if (rc)
		goto out;
	snprintf(path, sizeof(path), "%s/seg", s->dir);
	rc = seglog_open(path, &s->log);
	if (rc)
		goto out;
	/* The whole log, in order; relocation records restore map entries whose home
	 * segment was collected. */
	rc = replay(s, 0, 0, &n, true);
	if (!rc)
		rc = meta_flush(s->meta);
	if (!rc)
		rc = ckpt_write(s, s->log->next_id, 0);
	if (!rc)
		rod_info("store: metadata of %s rebuilt from %" PRIu64 " log records (old database kept in %s)",
			 dir, n, old);
	if (records)
		*records = n;
out:
	if (s->meta)
		meta_close(s->meta);
	if (s->log)
		seglog_close(s->log);
	free(s->dir);
	free(s);
	return rc;
}

const struct rod_array_identity *rod_store_identity(const struct rod_store *s)
{
	return &s->ident;
}

int rod_store_flush(struct rod_store *s)
{
	struct citem ci = { .kind = CI_FLUSH, .durable = true };

	return commit_run(s, &ci);
}

void rod_store_stats(struct rod_store *s, struct rod_store_stats *out)
{
	uint64_t *ids;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	out->recovery_ns = s->recovery_ns;
	out->recovered_records = s->recovered_records;
	out->bytes_written_user = atomic_load(&s->st_user);
	out->bytes_written_disk = atomic_load(&s->st_disk);
	out->commits = atomic_load(&s->st_commits);
	if (!seglog_list(s->log, &ids, &n))
		free(ids);
	out->segments = n;
	out->gc_runs = atomic_load(&s->st_gc_runs);
	out->gc_segments_freed = atomic_load(&s->st_gc_freed);
	out->gc_bytes_moved = atomic_load(&s->st_gc_moved);
	out->read_only = atomic_load(&s->failed);
	if (s->red) {
		out->sealed_submit = atomic_load(&s->red->st_seal_early);
		out->sealed_commit = atomic_load(&s->red->st_seal_late);
	}
}

/* ---- meta KV ---- */

struct kv_op {
	const char *key;
	const void *val;
	size_t len;
	bool del;
};

static int kv_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct kv_op *op = ci->arg;

	if (op->del)
		mutbuf_del(mb, CF_META, op->key, strlen(op->key));
	else
		mutbuf_put(mb, CF_META, op->key, strlen(op->key), op->val, op->len);
	return 0;
}

static int kv_check(const char *key, size_t len)
{
	if (!key || !*key || strlen(key) > 1024 || len > (1u << 20))
		return -EINVAL;
	return 0;
}

int rod_store_meta_put(struct rod_store *s, const char *key, const void *val, size_t len)
{
	struct kv_op op = { key, val, len, false };
	struct citem ci = { .kind = CI_OP, .durable = true, .build = kv_build, .arg = &op };
	int rc = kv_check(key, len);

	return rc ? rc : commit_run(s, &ci);
}

int rod_store_meta_get(struct rod_store *s, const char *key, void **val, size_t *len)
{
	int rc = kv_check(key, 0);

	return rc ? rc : meta_get(s->meta, CF_META, key, strlen(key), val, len);
}

int rod_store_meta_del(struct rod_store *s, const char *key)
{
	struct kv_op op = { key, NULL, 0, true };
	struct citem ci = { .kind = CI_OP, .durable = true, .build = kv_build, .arg = &op };
	void *v;
	size_t len;
	int rc = rod_store_meta_get(s, key, &v, &len);

	if (rc)
		return rc;
	free(v);
	return commit_run(s, &ci);
}

int rod_store_meta_scan(struct rod_store *s, const char *prefix,
			int (*fn)(void *arg, const char *key, const void *val, size_t len), void *arg)
{
	struct meta_iter *it = meta_iter_new(s->meta, CF_META);
	size_t pl = prefix ? strlen(prefix) : 0;
	char *kbuf = NULL;
	int rc = 0;

	if (!it)
		return -ENOMEM;
	if (pl)
		meta_iter_seek(it, prefix, pl);
	else
		meta_iter_first(it);
	for (; meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = meta_iter_key(it, &kl), *v = meta_iter_val(it, &vl);

		if (kl < pl || memcmp(k, prefix, pl))
			break;
		kbuf = realloc(kbuf, kl + 1);
		memcpy(kbuf, k, kl);
		kbuf[kl] = 0;
		if (fn(arg, kbuf, v, vl))
			break;
	}
	free(kbuf);
	meta_iter_free(it);
	return rc;
}
