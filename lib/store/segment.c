/* Segment files: append, sync, read, roll, and the batch header format. */
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rod/log.h"
#include "rod/util.h"

#include "fault.h"

/* Test hook (power-cut simulation, tests/unit/test_store_powercut.c): with
 * ROD_TEST_SYNC_MARK=file, every sync of the log records there (16 bytes, big-endian) the
 * segment and length up to which the log is durable; earlier segments are durable whole.
 * A test kills the process, cuts the segment files back to that point and reopens. */
static void sync_mark(uint64_t seg, uint64_t off)
{
	static int fd = -2;
	uint8_t b[16];

	if (fd == -2) {
		const char *p = getenv("ROD_TEST_SYNC_MARK");

		fd = p && *p ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
	}
	if (fd < 0)
		return;
	rod_put_be64(b, seg);
	rod_put_be64(b + 8, off);
	if (pwrite(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
		rod_warn("store: cannot write the sync mark: %m");
}

static void seg_path(const struct seglog *l, uint64_t id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%016" PRIx64 ".seg", l->dir, id);
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* lock held */
static struct seg *seg_find(struct seglog *l, uint64_t id)
{
	size_t lo = 0, hi = l->nsegs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (l->segs[mid].id == id)
			return &l->segs[mid];
		if (l->segs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int seglog_open(const char *dir, struct seglog **out)
{
	struct seglog *l = calloc(1, sizeof(*l));
	DIR *d;
	struct dirent *de;

	if (!l)
		return -ENOMEM;
	l->dir = strdup(dir);
	pthread_rwlock_init(&l->lock, NULL);
	l->cur_fd = -1;
	l->next_id = 1;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		rod_err("store: cannot create %s: %m", dir);
		seglog_close(l);
		return -errno;
	}
	d = opendir(dir);
	if (!d) {
		int rc = -errno;

		seglog_close(l);
		return rc;
	}
	while ((de = readdir(d))) {
		char path[4096];
		uint64_t id;
		char *end;
		struct stat st;
		int fd;

		if (strlen(de->d_name) != 20 || strcmp(de->d_name + 16, ".seg"))
			continue;
		id = strtoull(de->d_name, &end, 16);
		if (end != de->d_name + 16 || !id)
			continue;
		seg_path(l, id, path, sizeof(path));
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st)) {
			rod_err("store: cannot open segment %s: %m", path);
			if (fd >= 0)
				close(fd);
			closedir(d);
			seglog_close(l);
			return -EIO;
		}
		if (l->nsegs == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 64;
			l->segs = realloc(l->segs, l->cap * sizeof(*l->segs));
		}
		l->segs[l->nsegs++] = (struct seg){ .id = id, .fd = fd, .size = (uint64_t)st.st_size };
		l->bytes_total += (uint64_t)st.st_size;
		if (id >= l->next_id)
			l->next_id = id + 1;
	}
	closedir(d);
	if (l->nsegs)
		qsort(l->segs, l->nsegs, sizeof(*l->segs), seg_cmp);
	*out = l;
	return 0;
}

void seglog_close(struct seglog *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nsegs; i++)
		close(l->segs[i].fd);
	pthread_rwlock_destroy(&l->lock);
	free(l->segs);
	free(l->dir);
	free(l);
}

/* Start a new segment file; commit thread only. */
int seglog_roll(struct seglog *l)
{
	char path[4096];
	uint64_t id = l->next_id;
	int fd, rc;

	if (l->cur_fd >= 0 && fault_hit(FAULT_FDATASYNC_FAIL)) {
		rod_err("store: fdatasync of the segment log failed: %s (injected)", strerror(EIO));
		return -EIO;
	}
	if (l->cur_fd >= 0 && fdatasync(l->cur_fd))
		return -errno;
	seg_path(l, id, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rod_err("store: cannot create segment %s: %m", path);
		return -errno;
	}
	/* The new file must survive a crash before any batch in it is acknowledged. */
	rc = rod_fsync_dir(l->dir);
	if (rc) {
		close(fd);
		return rc;
	}
	sync_mark(id, 0); /* the sealed segment was synced whole above */
	pthread_rwlock_wrlock(&l->lock);
	if (l->nsegs == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->segs = realloc(l->segs, l->cap * sizeof(*l->segs));
	}
	l->segs[l->nsegs++] = (struct seg){ .id = id, .fd = fd, .size = 0 };
	l->next_id = id + 1;
	l->cur_id = id;
	l->cur_fd = fd;
	l->cur_off = 0;
	l->cur_idx = 0;
	pthread_rwlock_unlock(&l->lock);
	return 0;
}

int seglog_reserve(struct seglog *l, uint64_t len)
{
	if (l->cur_fd < 0 || l->cur_off + len > SEG_SIZE)
		return seglog_roll(l);
	return 0;
}

/* A failed append may have left part of its bytes after the end of the log: cut them,
 * so that the next batch starts at the end of the last good one (shrinking a file needs
 * no space). Best effort: replay also stops at a torn batch. */
static void append_cut(struct seglog *l)
{
	if (ftruncate(l->cur_fd, (off_t)l->cur_off))
		rod_warn("store: cannot cut a failed append off segment %llu: %m",
			 (unsigned long long)l->cur_id);
}

/* Fault injection (fault.h): write the first half of an append, as a crash or a
 * failing disk in the middle of it would leave it. */
static void append_half(struct seglog *l, const struct iovec *iov, int iovcnt, uint64_t len)
{
	uint64_t want = len / 2, pos = l->cur_off;

	for (int i = 0; i < iovcnt && want; i++) {
		size_t n = iov[i].iov_len < want ? iov[i].iov_len : (size_t)want;

		if (rod_pwrite_full(l->cur_fd, iov[i].iov_base, n, pos))
			return;
		pos += n;
		want -= n;
	}
}

static int append_fault(struct seglog *l, const struct iovec *iov, int iovcnt, uint64_t len)
{
	if (fault_hit(FAULT_ENOSPC)) {
		rod_err("store: segment write failed: %s (injected)", strerror(ENOSPC));
		return -ENOSPC;
	}
	if (fault_hit(FAULT_SEG_PWRITE_FAIL)) {
		rod_err("store: segment write failed: %s (injected)", strerror(EIO));
		return -EIO;
	}
	if (fault_hit(FAULT_SEG_PWRITE_SHORT)) {
		append_half(l, iov, iovcnt, len);
		rod_err("store: segment write failed: short write, then %s (injected)", strerror(EIO));
		return -EIO;
	}
	if (fault_hit(FAULT_TORN_TAIL)) {
		append_half(l, iov, iovcnt, len);
		rod_err("store: torn_tail: half of a %llu-byte append written, killing the process (injected)",
			(unsigned long long)len);
		raise(SIGKILL);
	}
	return 0;
}

int seglog_append(struct seglog *l, const struct iovec *iov, int iovcnt, uint64_t len,
		  uint64_t *off)
{
	uint64_t pos = l->cur_off;
	int i = 0;

	if (fault_any()) {
		int rc = append_fault(l, iov, iovcnt, len);

		if (rc) {
			append_cut(l);
			return rc;
		}
	}

	while (i < iovcnt) {
		int cnt = iovcnt - i > 1024 ? 1024 : iovcnt - i;
		size_t want = 0;
		ssize_t n;

		for (int k = 0; k < cnt; k++)
			want += iov[i + k].iov_len;
		n = pwritev(l->cur_fd, iov + i, cnt, (off_t)pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;

			rod_err("store: segment write failed: %s", strerror(e));
			append_cut(l);
			return -e;
		}
		if ((size_t)n != want) {
			/* Short write (disk full?): finish with plain writes. */
			size_t done = (size_t)n;

			for (int k = 0; k < cnt; k++) {
				size_t l0 = iov[i + k].iov_len;

				if (done >= l0) {
					done -= l0;
					continue;
				}
				int rc = rod_pwrite_full(l->cur_fd, (const uint8_t *)iov[i + k].iov_base + done,
							 l0 - done, pos + (uint64_t)n);
				if (rc) {
					append_cut(l);
					return rc;
				}
				n += (ssize_t)(l0 - done);
				done = 0;
			}
		}
		pos += want;
		i += cnt;
	}
	*off = l->cur_off;
	l->cur_off = pos;
	pthread_rwlock_wrlock(&l->lock);
	struct seg *sg = seg_find(l, l->cur_id);
	if (sg) {
		l->bytes_total += pos - sg->size;
		sg->size = pos;
	}
	pthread_rwlock_unlock(&l->lock);
	(void)len;
	return 0;
}

int seglog_sync(struct seglog *l)
{
	if (l->cur_fd >= 0 && fault_hit(FAULT_FDATASYNC_FAIL)) {
		rod_err("store: fdatasync of the segment log failed: %s (injected)", strerror(EIO));
		return -EIO;
	}
	if (l->cur_fd >= 0 && fdatasync(l->cur_fd)) {
		rod_err("store: fdatasync of the segment log failed: %m");
		return -EIO;
	}
	sync_mark(l->cur_id, l->cur_off);
	return 0;
}

int seglog_read(struct seglog *l, uint64_t seg, uint64_t off, void *buf, size_t len)
{
	int rc;

	pthread_rwlock_rdlock(&l->lock);
	struct seg *sg = seg_find(l, seg);
	rc = sg ? rod_pread_full(sg->fd, buf, len, off) : -ENOENT;
	pthread_rwlock_unlock(&l->lock);
	return rc;
}

bool seglog_has(struct seglog *l, uint64_t seg)
{
	bool r;

	pthread_rwlock_rdlock(&l->lock);
	r = seg_find(l, seg) != NULL;
	pthread_rwlock_unlock(&l->lock);
	return r;
}

uint64_t seglog_size(struct seglog *l, uint64_t seg)
{
	uint64_t r = 0;

	pthread_rwlock_rdlock(&l->lock);
	struct seg *sg = seg_find(l, seg);
	if (sg)
		r = sg->size;
	pthread_rwlock_unlock(&l->lock);
	return r;
}

int seglog_remove(struct seglog *l, uint64_t seg)
{
	char path[4096];
	int fd;

	pthread_rwlock_wrlock(&l->lock);
	struct seg *sg = seg_find(l, seg);
	if (!sg || seg == l->cur_id) {
		pthread_rwlock_unlock(&l->lock);
		return sg ? -EBUSY : -ENOENT;
	}
	if (sg == &l->segs[l->nsegs - 1]) {
		/* The newest file stays (empty): ids come from the files present at open,
		 * and a segment id, like the chunk ids made from it, is never reused. */
		int rc = ftruncate(sg->fd, 0) ? -errno : 0;

		if (!rc) {
			l->bytes_total -= sg->size;
			sg->size = 0;
		}
		pthread_rwlock_unlock(&l->lock);
		return rc;
	}
	fd = sg->fd;
	l->bytes_total -= sg->size;
	memmove(sg, sg + 1, (size_t)(l->segs + l->nsegs - (sg + 1)) * sizeof(*sg));
	l->nsegs--;
	pthread_rwlock_unlock(&l->lock);
	close(fd);
	seg_path(l, seg, path, sizeof(path));
	if (unlink(path)) {
		rod_err("store: cannot remove segment %s: %m", path);
		return -errno;
	}
	return 0;
}

int seglog_truncate(struct seglog *l, uint64_t seg, uint64_t off)
{
	int rc = 0;

	pthread_rwlock_wrlock(&l->lock);
	struct seg *sg = seg_find(l, seg);
	if (!sg) {
		rc = -ENOENT;
	} else if (ftruncate(sg->fd, (off_t)off) || fsync(sg->fd)) {
		rc = -errno;
	} else {
		l->bytes_total -= sg->size - off;
		sg->size = off;
	}
	pthread_rwlock_unlock(&l->lock);
	return rc;
}

int seglog_list(struct seglog *l, uint64_t **ids, size_t *n)
{
	pthread_rwlock_rdlock(&l->lock);
	*ids = malloc((l->nsegs + 1) * sizeof(**ids));
	if (!*ids) {
		pthread_rwlock_unlock(&l->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < l->nsegs; i++)
		(*ids)[i] = l->segs[i].id;
	*n = l->nsegs;
	pthread_rwlock_unlock(&l->lock);
	return 0;
}

uint64_t seglog_used(struct seglog *l)
{
	uint64_t r;

	pthread_rwlock_rdlock(&l->lock);
	r = l->bytes_total;
	pthread_rwlock_unlock(&l->lock);
	return r;
}

/* ---- batch header codec ---- */

size_t batch_header_size(uint32_t n, uint32_t mut_len)
{
	return ROD_ROUND_UP(BATCH_HDR_FIXED + (size_t)n * BATCH_ENTRY_SIZE + mut_len, SEG_BLOCK);
}

static void put32le(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64le(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32le(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64le(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

int batch_encode_header(uint8_t *hdr, size_t cap, uint64_t seq, uint64_t seg,
			const struct batch_entry *ent, uint32_t n, const uint8_t *mut,
			uint32_t mut_len, uint32_t payload_len, uint32_t *hdr_len)
{
	size_t hl = batch_header_size(n, mut_len);
	uint8_t *p;

	if (hl > cap)
		return -E2BIG;
	memset(hdr, 0, hl);
	put64le(hdr + 0, BATCH_MAGIC);
	put32le(hdr + 8, BATCH_VERSION);
	put64le(hdr + 16, seq);
	put64le(hdr + 24, seg);
	put32le(hdr + 32, (uint32_t)hl);
	put32le(hdr + 36, payload_len);
	put32le(hdr + 40, n);
	put32le(hdr + 44, mut_len);
	put64le(hdr + 48, rod_wall_ns());
	p = hdr + BATCH_HDR_FIXED;
	for (uint32_t i = 0; i < n; i++, p += BATCH_ENTRY_SIZE) {
		const struct batch_entry *e = &ent[i];

		put64le(p + 0, e->chunk_id);
		put64le(p + 8, e->lineage);
		put64le(p + 16, e->lba);
		put64le(p + 24, e->epoch);
		memcpy(p + 32, e->fp, 32);
		p[64] = e->kind;
		p[65] = e->comp;
		memcpy(p + 66, &e->enc_gen, 2);
		put32le(p + 68, e->stored_len);
		put32le(p + 72, e->orig_len);
		put32le(p + 76, e->payload_off);
		put32le(p + 80, e->crc);
		put32le(p + 84, e->home_off);
	}
	if (mut_len)
		memcpy(p, mut, mut_len);
	put32le(hdr + 12, rod_crc32c(0, hdr, hl));
	*hdr_len = (uint32_t)hl;
	return 0;
}

void batch_release(struct batch *b)
{
	free(b->ent);
	free(b->mut);
	free(b->payload);
	memset(b, 0, sizeof(*b));
}

int batch_read(struct seglog *l, uint64_t seg, uint64_t off, bool with_payload,
	       struct batch *b)
{
	uint8_t first[SEG_BLOCK];
	uint8_t *hdr = NULL;
	uint32_t hl, pl, n, ml, crc;
	uint64_t size = seglog_size(l, seg);
	int rc;

	memset(b, 0, sizeof(*b));
	if (off + SEG_BLOCK > size)
		return -ENODATA;
	rc = seglog_read(l, seg, off, first, SEG_BLOCK);
	if (rc)
		return rc;
	if (get64le(first) != BATCH_MAGIC)
		return -ENODATA;
	if (get32le(first + 8) != BATCH_VERSION) {
		rod_err("store: segment %" PRIu64 " offset %" PRIu64 ": batch version %u unknown",
			seg, off, get32le(first + 8));
		return -EPROTO;
	}
	hl = get32le(first + 32);
	pl = get32le(first + 36);
	n = get32le(first + 40);
	ml = get32le(first + 44);
	if (hl < SEG_BLOCK || hl % SEG_BLOCK || hl > BATCH_MAX_BYTES || n > BATCH_MAX_ENTRIES * 4 ||
	    batch_header_size(n, ml) != hl || pl > BATCH_MAX_BYTES ||
	    off + hl + ROD_ROUND_UP((uint64_t)pl, SEG_BLOCK) > size)
		return -ENODATA;
	hdr = malloc(hl);
	if (!hdr)
		return -ENOMEM;
	memcpy(hdr, first, SEG_BLOCK);
	if (hl > SEG_BLOCK) {
		rc = seglog_read(l, seg, off + SEG_BLOCK, hdr + SEG_BLOCK, hl - SEG_BLOCK);
		if (rc) {
			free(hdr);
			return rc;
		}
	}
	crc = get32le(hdr + 12);
	put32le(hdr + 12, 0);
	if (rod_crc32c(0, hdr, hl) != crc) {
		free(hdr);
		return -ENODATA;
	}
	b->seq = get64le(hdr + 16);
	b->seg = seg;
	b->off = off;
	b->hdr_len = hl;
	b->payload_len = pl;
	b->n = n;
	b->mut_len = ml;
	b->next_off = off + hl + ROD_ROUND_UP((uint64_t)pl, SEG_BLOCK);
	b->ent = calloc(n ? n : 1, sizeof(*b->ent));
	b->mut = malloc(ml ? ml : 1);
	if (!b->ent || !b->mut) {
		free(hdr);
		batch_release(b);
		return -ENOMEM;
	}
	const uint8_t *p = hdr + BATCH_HDR_FIXED;
	for (uint32_t i = 0; i < n; i++, p += BATCH_ENTRY_SIZE) {
		struct batch_entry *e = &b->ent[i];

		e->chunk_id = get64le(p);
		e->lineage = get64le(p + 8);
		e->lba = get64le(p + 16);
		e->epoch = get64le(p + 24);
		memcpy(e->fp, p + 32, 32);
		e->kind = p[64];
		e->comp = p[65];
		memcpy(&e->enc_gen, p + 66, 2);
		e->stored_len = get32le(p + 68);
		e->orig_len = get32le(p + 72);
		e->payload_off = get32le(p + 76);
		e->crc = get32le(p + 80);
		e->home_off = get32le(p + 84);
		if ((uint64_t)e->payload_off + e->stored_len > pl) {
			free(hdr);
			batch_release(b);
			return -ENODATA;
		}
	}
	memcpy(b->mut, p, ml);
	free(hdr);
	if (with_payload && pl) {
		b->payload = malloc(pl);
		if (!b->payload) {
			batch_release(b);
			return -ENOMEM;
		}
		rc = seglog_read(l, seg, off + hl, b->payload, pl);
		if (rc) {
			batch_release(b);
			return rc;
		}
		for (uint32_t i = 0; i < n; i++) {
			struct batch_entry *e = &b->ent[i];

			if (e->stored_len &&
			    rod_crc32c(0, b->payload + e->payload_off, e->stored_len) != e->crc) {
				batch_release(b);
				return -ENODATA;
			}
		}
	}
	return 0;
}
