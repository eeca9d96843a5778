/* Volumes and snapshots: records, names, and the O(1) metadata operations (create,
 * snapshot, clone, revert, resize, rename, destroy/recover/eradicate) run as commit
 * items so they are ordered with writes and logged in the segments. */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "rod/log.h"
#include "rod/util.h"

#define VOL_REC_LEN 340

/* ---- records ---- */

void vol_rec_encode(const struct vol_rec *r, uint8_t *b, size_t *len)
{
	uint32_t flags = (r->is_snapshot ? 1 : 0) | (r->destroyed ? 2 : 0) | (r->offload ? 4 : 0) |
			 (r->cache == ROD_CACHE_WRITE_BACK ? 8 : 0) |
			 (r->reduce_off & RED_VOL_NO_DEDUPE ? 16 : 0) |
			 (r->reduce_off & RED_VOL_NO_COMPRESS ? 32 : 0);

	memset(b, 0, VOL_REC_LEN);
	rod_put_be32(b, 1); /* record version */
	rod_put_be64(b + 4, r->id);
	memcpy(b + 12, r->name, ROD_SNAP_NAME_MAX);
	memcpy(b + 140, r->uuid, 16);
	rod_put_be64(b + 156, r->size);
	rod_put_be32(b + 164, r->block_size);
	rod_put_be32(b + 168, flags);
	memcpy(b + 172, r->source, ROD_SNAP_NAME_MAX);
	rod_put_be64(b + 300, r->created_ns);
	rod_put_be64(b + 308, r->destroyed_ns);
	rod_put_be64(b + 316, r->lineage);
	rod_put_be64(b + 324, r->epoch);
	rod_put_be64(b + 332, r->parent_id);
	*len = VOL_REC_LEN;
}

int vol_rec_decode(struct vol_rec *r, const uint8_t *b, size_t len)
{
	uint32_t flags;

	if (len != VOL_REC_LEN || rod_get_be32(b) != 1)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->id = rod_get_be64(b + 4);
	memcpy(r->name, b + 12, ROD_SNAP_NAME_MAX);
	r->name[ROD_SNAP_NAME_MAX - 1] = 0;
	memcpy(r->uuid, b + 140, 16);
	r->size = rod_get_be64(b + 156);
	r->block_size = rod_get_be32(b + 164);
	flags = rod_get_be32(b + 168);
	r->is_snapshot = flags & 1;
	r->destroyed = flags & 2;
	r->offload = flags & 4;
	r->cache = flags & 8 ? ROD_CACHE_WRITE_BACK : ROD_CACHE_WRITE_THROUGH;
	/* Data reduction switches (benchmarking; older binaries ignore these bits). */
	r->reduce_off = (flags & 16 ? RED_VOL_NO_DEDUPE : 0) | (flags & 32 ? RED_VOL_NO_COMPRESS : 0);
	memcpy(r->source, b + 172, ROD_SNAP_NAME_MAX);
	r->source[ROD_SNAP_NAME_MAX - 1] = 0;
	r->created_ns = rod_get_be64(b + 300);
	r->destroyed_ns = rod_get_be64(b + 308);
	r->lineage = rod_get_be64(b + 316);
	r->epoch = rod_get_be64(b + 324);
	r->parent_id = rod_get_be64(b + 332);
	return 0;
}

static void vol_log(struct mutbuf *mb, const struct vol_rec *r)
{
	uint8_t k[8], v[VOL_REC_LEN];
	size_t len;

	rod_put_be64(k, r->id);
	vol_rec_encode(r, v, &len);
	mutbuf_put(mb, CF_VOL, k, 8, v, len);
}

void vol_rec_put(struct vol_rec *r)
{
	if (r && atomic_fetch_sub(&r->refs, 1) == 1)
		free(r);
}

int vol_table_add(struct rod_store *s, struct vol_rec *r)
{
	if (s->nvols == s->capvols) {
		size_t cap = s->capvols ? s->capvols * 2 : 16;
		struct vol_rec **n = realloc(s->vols, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->vols = n;
		s->capvols = cap;
	}
	atomic_store(&r->refs, 1); /* the table's reference */
	s->vols[s->nvols++] = r;
	return 0;
}

void vol_table_remove(struct rod_store *s, struct vol_rec *r)
{
	for (size_t i = 0; i < s->nvols; i++) {
		if (s->vols[i] == r) {
			s->vols[i] = s->vols[--s->nvols];
			r->eradicated = true;
			vol_rec_put(r);
			return;
		}
	}
}

int vol_load_all(struct rod_store *s)
{
	struct meta_iter *it = meta_iter_new(s->meta, CF_VOL);
	int rc = 0;

	if (!it)
		return -ENOMEM;
	for (meta_iter_first(it); meta_iter_valid(it) && !rc; meta_iter_next(it)) {
		size_t vl;
		const uint8_t *v = meta_iter_val(it, &vl);
		struct vol_rec *r = malloc(sizeof(*r));

		if (!r) {
			rc = -ENOMEM;
			break;
		}
		if (vol_rec_decode(r, v, vl)) {
			rod_warn("store: skipping an unreadable volume record");
			free(r);
			continue;
		}
		rc = vol_table_add(s, r);
		if (rc)
			free(r);
	}
	meta_iter_free(it);
	return rc;
}

/* Volume names: plain names, or "ARRAY:NAME" for replica volumes on a replication
 * target (the control plane refuses ':' in names users give; snapshot suffixes are
 * always plain names). */
static bool vol_name_ok(const char *name)
{
	return rod_name_valid(name) || rod_replica_name_valid(name);
}

/* Live (not destroyed) record by name; state held. */
struct vol_rec *vol_find_name(struct rod_store *s, const char *name)
{
	for (size_t i = 0; i < s->nvols; i++)
		if (!s->vols[i]->destroyed && !strcmp(s->vols[i]->name, name))
			return s->vols[i];
	return NULL;
}

static struct vol_rec *vol_find_destroyed(struct rod_store *s, const char *name)
{
	struct vol_rec *best = NULL;

	/* The most recently destroyed one when the name was reused. */
	for (size_t i = 0; i < s->nvols; i++)
		if (s->vols[i]->destroyed && !strcmp(s->vols[i]->name, name) &&
		    (!best || s->vols[i]->destroyed_ns > best->destroyed_ns))
			best = s->vols[i];
	return best;
}

static bool name_taken(struct rod_store *s, const char *name)
{
	for (size_t i = 0; i < s->nvols; i++)
		if (!strcmp(s->vols[i]->name, name))
			return true;
	return false;
}

struct vol_rec *vol_find_id(struct rod_store *s, uint64_t id)
{
	for (size_t i = 0; i < s->nvols; i++)
		if (s->vols[i]->id == id)
			return s->vols[i];
	return NULL;
}

static void fill_info(const struct vol_rec *r, struct rod_vol_info *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", r->name);
	out->id = r->id;
	memcpy(out->uuid, r->uuid, 16);
	out->size = r->size;
	out->block_size = r->block_size;
	out->is_snapshot = r->is_snapshot;
	snprintf(out->source, sizeof(out->source), "%s", r->source);
	out->created_ns = r->created_ns;
	out->cache = r->cache;
	out->offload = r->offload;
	out->dedupe = !(r->reduce_off & RED_VOL_NO_DEDUPE);
	out->compress = !(r->reduce_off & RED_VOL_NO_COMPRESS);
	out->destroyed = r->destroyed;
	out->destroyed_ns = r->destroyed_ns;
	out->space.provisioned = r->size;
	out->space.reduction = 1.0;
}

/* ---- operations ---- */

struct vop {
	const char *name, *name2;
	uint64_t size;
	uint32_t bs;
	uint8_t uuid[16];
	int flag;
	struct rod_vol_info *out;
	/* pin */
	struct rod_vol *pin;
};

static struct vol_rec *rec_new(struct rod_store *s, const char *name, uint64_t size,
			       uint32_t bs, const uint8_t *uuid)
{
	struct vol_rec *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->id = s->next_vol_id++;
	snprintf(r->name, sizeof(r->name), "%s", name);
	memcpy(r->uuid, uuid, 16);
	r->size = size;
	r->block_size = bs;
	r->created_ns = rod_wall_ns();
	r->offload = true;
	return r;
}

static void ids_log(struct rod_store *s, struct mutbuf *mb)
{
	sys_log_u64(mb, "next_vol_id", s->next_vol_id);
	sys_log_u64(mb, "next_lineage", s->next_lineage);
}

static int create_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *r;
	struct lineage *l;

	if (name_taken(s, op->name))
		return -EEXIST;
	r = rec_new(s, op->name, op->size, op->bs, op->uuid);
	if (!r)
		return -ENOMEM;
	r->lineage = s->next_lineage++;
	l = media_add(&s->media, r->lineage);
	if (!l || vol_table_add(s, r)) {
		free(r);
		return -ENOMEM;
	}
	lin_log(mb, l);
	vol_log(mb, r);
	ids_log(s, mb);
	if (op->out)
		fill_info(r, op->out);
	return 0;
}

static int run_op(struct rod_store *s, int (*build)(struct rod_store *, struct citem *,
						     struct mutbuf *), struct vop *op)
{
	struct citem ci = { .kind = CI_OP, .durable = true, .build = build, .arg = op };

	return commit_run(s, &ci);
}

static bool size_ok(uint64_t size, uint32_t bs)
{
	return (bs == 512 || bs == 4096) && size && size % bs == 0 && size <= (1ull << 50);
}

int rod_vol_create(struct rod_store *s, const char *name, uint64_t size, uint32_t block_size,
		   struct rod_vol_info *out)
{
	struct vop op = { .name = name, .size = size, .bs = block_size, .out = out };

	if (!name || !vol_name_ok(name) || !size_ok(size, block_size))
		return -EINVAL;
	if (rod_random_bytes(op.uuid, 16))
		return -EIO;
	return run_op(s, create_build, &op);
}

int rod_vol_list(struct rod_store *s, struct rod_vol_info **out, size_t *n)
{
	pthread_rwlock_rdlock(&s->state);
	*out = calloc(s->nvols ? s->nvols : 1, sizeof(**out));
	if (!*out) {
		pthread_rwlock_unlock(&s->state);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->nvols; i++)
		fill_info(s->vols[i], &(*out)[i]);
	*n = s->nvols;
	pthread_rwlock_unlock(&s->state);
	return 0;
}

int rod_vol_info_get(struct rod_store *s, const char *name, struct rod_vol_info *out)
{
	struct vol_rec *r;
	int rc = -ENOENT;

	if (!name)
		return -EINVAL;
	pthread_rwlock_rdlock(&s->state);
	r = vol_find_name(s, name);
	if (!r)
		r = vol_find_destroyed(s, name);
	if (r) {
		fill_info(r, out);
		rc = 0;
	}
	pthread_rwlock_unlock(&s->state);
	return rc;
}

int rod_vol_info_by_id(struct rod_store *s, uint64_t id, struct rod_vol_info *out)
{
	struct vol_rec *r;
	int rc = -ENOENT;

	pthread_rwlock_rdlock(&s->state);
	r = vol_find_id(s, id);
	if (r) {
		fill_info(r, out);
		rc = 0;
	}
	pthread_rwlock_unlock(&s->state);
	return rc;
}

static int resize_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *r = vol_find_name(s, op->name);
	struct lineage *l;

	if (!r)
		return -ENOENT;
	if (r->is_snapshot)
		return -EROFS;
	if (op->size % r->block_size)
		return -EINVAL;
	l = media_find(&s->media, r->lineage);
	if (!l)
		return -ENOENT;
	if (op->size < r->size) {
		/* Data beyond the new end is gone: later growth reads zeros there. */
		uint64_t g0 = ROD_ROUND_UP(op->size, ROD_GRAIN) / ROD_GRAIN;
		uint64_t g1 = ROD_ROUND_UP(r->size, ROD_GRAIN) / ROD_GRAIN;
		int rc = g1 > g0 ? lin_add_range(&s->media, s->meta, l, g0, g1, LIN_UNMAP, 0, 0, mb) : 0;

		if (rc)
			return rc;
	}
	r->size = op->size;
	vol_log(mb, r);
	return 0;
}

int rod_vol_resize(struct rod_store *s, const char *name, uint64_t size)
{
	struct vop op = { .name = name, .size = size };
	struct rod_vol_info info;
	int rc;

	if (!name || !size || size > (1ull << 50))
		return -EINVAL;
	rc = rod_vol_info_get(s, name, &info);
	if (rc)
		return rc;
	if (info.destroyed)
		return -ENOENT;
	if (size % info.block_size)
		return -EINVAL;
	if (size < info.size && size % ROD_GRAIN && !info.is_snapshot) {
		/* The cut grain keeps its head; its tail must read zeros after a regrow. */
		struct rod_vol *v;
		uint64_t end = ROD_MIN(info.size, ROD_ROUND_UP(size, ROD_GRAIN));

		rc = rod_vol_open(s, name, &v);
		if (rc)
			return rc;
		rc = rod_vol_zero(v, size, end - size);
		rod_vol_close(v);
		if (rc)
			return rc;
	}
	return run_op(s, resize_build, &op);
}

/* "vol.suffix": the suffix of a snapshot name. */
static const char *snap_suffix(const char *name)
{
	const char *dot = strchr(name, '.');

	return dot ? dot + 1 : NULL;
}

static int rename_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *r = vol_find_name(s, op->name);
	char nn[ROD_SNAP_NAME_MAX];

	if (!r)
		return -ENOENT;
	if (name_taken(s, op->name2))
		return -EEXIST;
	if (r->is_snapshot) {
		/* A snapshot keeps its volume's prefix; only the suffix changes. */
		struct vol_rec *p = vol_find_id(s, r->parent_id);
		size_t pl = p ? strlen(p->name) : 0;

		if (!p || strncmp(op->name2, p->name, pl) || op->name2[pl] != '.' ||
		    !rod_name_valid(op->name2 + pl + 1))
			return -EINVAL;
	} else if (!vol_name_ok(op->name2)) {
		return -EINVAL;
	}
	snprintf(r->name, sizeof(r->name), "%s", op->name2);
	vol_log(mb, r);
	if (!r->is_snapshot) {
		for (size_t i = 0; i < s->nvols; i++) {
			struct vol_rec *sn = s->vols[i];
			const char *suf;

			if (!sn->is_snapshot || sn->parent_id != r->id || !(suf = snap_suffix(sn->name)))
				continue;
			if (snprintf(nn, sizeof(nn), "%.63s.%.63s", r->name, suf) >= (int)sizeof(nn))
				continue;
			memcpy(sn->name, nn, sizeof(nn));
			snprintf(sn->source, sizeof(sn->source), "%s", r->name);
			vol_log(mb, sn);
		}
	}
	return 0;
}

int rod_vol_rename(struct rod_store *s, const char *old_name, const char *new_name)
{
	struct vop op = { .name = old_name, .name2 = new_name };

	if (!old_name || !new_name || strlen(new_name) >= ROD_SNAP_NAME_MAX - 1)
		return -EINVAL;
	return run_op(s, rename_build, &op);
}

enum { SET_CACHE, SET_OFFLOAD, SET_REDUCE, DO_DESTROY, DO_RECOVER, DO_ERADICATE };

static int set_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *r;
	uint8_t k[8];

	switch (op->flag) {
	case SET_CACHE:
	case SET_OFFLOAD:
	case SET_REDUCE:
	case DO_DESTROY:
		r = vol_find_name(s, op->name);
		break;
	default:
		r = vol_find_destroyed(s, op->name);
		if (!r && vol_find_name(s, op->name))
			return -EBUSY; /* not destroyed */
		break;
	}
	if (!r)
		return -ENOENT;
	switch (op->flag) {
	case SET_CACHE:
		r->cache = (enum rod_cache_mode)op->size;
		break;
	case SET_OFFLOAD:
		r->offload = op->size != 0;
		break;
	case SET_REDUCE:
		if (r->is_snapshot)
			return -EINVAL;
		r->reduce_off = (unsigned)op->size;
		break;
	case DO_DESTROY:
		r->destroyed = true;
		r->destroyed_ns = rod_wall_ns();
		break;
	case DO_RECOVER:
		if (vol_find_name(s, op->name))
			return -EEXIST;
		r->destroyed = false;
		r->destroyed_ns = 0;
		break;
	case DO_ERADICATE:
		rod_put_be64(k, r->id);
		mutbuf_del(mb, CF_VOL, k, 8);
		vol_table_remove(s, r);
		return 0;
	}
	vol_log(mb, r);
	return 0;
}

int rod_vol_set_cache(struct rod_store *s, const char *name, enum rod_cache_mode mode)
{
	struct vop op = { .name = name, .flag = SET_CACHE, .size = mode };

	if (!name || (mode != ROD_CACHE_WRITE_THROUGH && mode != ROD_CACHE_WRITE_BACK))
		return -EINVAL;
	/* Switching to write-through: what was acknowledged before must be durable too. */
	if (mode == ROD_CACHE_WRITE_THROUGH)
		rod_store_flush(s);
	return run_op(s, set_build, &op);
}

int rod_vol_set_offload(struct rod_store *s, const char *name, bool on)
{
	struct vop op = { .name = name, .flag = SET_OFFLOAD, .size = on };

	return name ? run_op(s, set_build, &op) : -EINVAL;
}

int rod_vol_set_reduction(struct rod_store *s, const char *name, bool dedupe, bool compress)
{
	struct vop op = { .name = name, .flag = SET_REDUCE,
			  .size = (dedupe ? 0 : RED_VOL_NO_DEDUPE) | (compress ? 0 : RED_VOL_NO_COMPRESS) };

	return name ? run_op(s, set_build, &op) : -EINVAL;
}

int rod_vol_destroy(struct rod_store *s, const char *name)
{
	struct vop op = { .name = name, .flag = DO_DESTROY };

	return name ? run_op(s, set_build, &op) : -EINVAL;
}

int rod_vol_recover(struct rod_store *s, const char *name)
{
	struct vop op = { .name = name, .flag = DO_RECOVER };

	return name ? run_op(s, set_build, &op) : -EINVAL;
}

int rod_vol_eradicate(struct rod_store *s, const char *name)
{
	struct vop op = { .name = name, .flag = DO_ERADICATE };

	return name ? run_op(s, set_build, &op) : -EINVAL;
}

/* Whether v can get the snapshot "v.suffix" (its name left in name). */
static int snap_check(struct rod_store *s, const struct vol_rec *v, const char *suffix,
		      char name[ROD_SNAP_NAME_MAX])
{
	if (!v)
		return -ENOENT;
	if (v->is_snapshot)
		return -EINVAL;
	if (snprintf(name, ROD_SNAP_NAME_MAX, "%s.%s", v->name, suffix) >= ROD_SNAP_NAME_MAX)
		return -EINVAL;
	if (name_taken(s, name))
		return -EEXIST;
	if (!media_find(&s->media, v->lineage))
		return -ENOENT;
	return 0;
}

/* Add the snapshot record `name` of v (checked by snap_check), pinning v's lineage. */
static int snap_add(struct rod_store *s, const struct vol_rec *v, const char *name,
		    const uint8_t uuid[16], struct mutbuf *mb, struct rod_vol_info *out)
{
	struct vol_rec *r = rec_new(s, name, v->size, v->block_size, uuid);

	if (!r)
		return -ENOMEM;
	r->is_snapshot = true;
	r->lineage = v->lineage;
	r->epoch = lin_pin(media_find(&s->media, v->lineage), mb);
	r->parent_id = v->id;
	r->offload = v->offload;
	snprintf(r->source, sizeof(r->source), "%s", v->name);
	if (vol_table_add(s, r)) {
		free(r);
		return -ENOMEM;
	}
	vol_log(mb, r);
	if (out)
		fill_info(r, out);
	return 0;
}

static int snap_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *v = vol_find_name(s, op->name);
	char name[ROD_SNAP_NAME_MAX];
	int rc = snap_check(s, v, op->name2, name);

	if (!rc)
		rc = snap_add(s, v, name, op->uuid, mb, op->out);
	if (!rc)
		ids_log(s, mb);
	return rc;
}

int rod_vol_snapshot(struct rod_store *s, const char *vol, const char *suffix,
		     struct rod_vol_info *out)
{
	struct vop op = { .name = vol, .name2 = suffix, .out = out };

	if (!vol || !suffix || !rod_name_valid(suffix))
		return -EINVAL;
	if (rod_random_bytes(op.uuid, 16))
		return -EIO;
	return run_op(s, snap_build, &op);
}

/* Group snapshot: one commit item pins every member, so all of them take their
 * epoch at the same place in the commit queue. Writes queued before the item (every
 * write acknowledged before the call) are in each snapshot; writes queued after it
 * (every write issued after the call returns) are in none. Everything is checked
 * before the first pin, so a refused group leaves no partial snapshots. */
struct gop {
	const char *const *vols;
	size_t n;
	const char *suffix;
	uint8_t (*uuids)[16];
	struct rod_vol_info *out;
};

static int snap_group_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct gop *op = ci->arg;
	char name[ROD_SNAP_NAME_MAX];
	int rc;

	for (size_t i = 0; i < op->n; i++) {
		for (size_t k = 0; k < i; k++)
			if (!strcmp(op->vols[k], op->vols[i]))
				return -EINVAL;
		if ((rc = snap_check(s, vol_find_name(s, op->vols[i]), op->suffix, name)))
			return rc;
	}
	for (size_t i = 0; i < op->n; i++) {
		struct vol_rec *v = vol_find_name(s, op->vols[i]);

		if (snprintf(name, sizeof(name), "%s.%s", v->name, op->suffix) >= (int)sizeof(name))
			return -EINVAL; /* checked above; keeps the compiler's length check happy */
		if ((rc = snap_add(s, v, name, op->uuids[i], mb, op->out ? &op->out[i] : NULL)))
			return rc;
	}
	ids_log(s, mb);
	return 0;
}

int rod_vol_snapshot_group(struct rod_store *s, const char *const *vols, size_t n,
			   const char *suffix, struct rod_vol_info *out)
{
	struct gop op = { .vols = vols, .n = n, .suffix = suffix, .out = out };
	struct citem ci = { .kind = CI_OP, .durable = true, .build = snap_group_build, .arg = &op };
	int rc;

	if (!vols || !n || !suffix || !rod_name_valid(suffix))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!vols[i])
			return -EINVAL;
	op.uuids = calloc(n, sizeof(*op.uuids));
	if (!op.uuids)
		return -ENOMEM;
	rc = rod_random_bytes(op.uuids, n * sizeof(*op.uuids)) ? -EIO : commit_run(s, &ci);
	free(op.uuids);
	return rc;
}

/* The frozen view (lineage, epoch) of a volume or snapshot record; pins a volume. */
static int view_of(struct rod_store *s, struct vol_rec *r, struct mutbuf *mb, uint64_t *lin,
		   uint64_t *epoch)
{
	struct lineage *l = media_find(&s->media, r->lineage);

	if (!l)
		return -ENOENT;
	*lin = r->lineage;
	*epoch = r->is_snapshot ? r->epoch : lin_pin(l, mb);
	return 0;
}

static int clone_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *src = vol_find_name(s, op->name), *r;
	struct lineage *l;
	uint64_t tl, te;
	int rc;

	if (!src)
		return -ENOENT;
	if (name_taken(s, op->name2))
		return -EEXIST;
	rc = view_of(s, src, mb, &tl, &te);
	if (rc)
		return rc;
	r = rec_new(s, op->name2, src->size, src->block_size, op->uuid);
	if (!r)
		return -ENOMEM;
	r->lineage = s->next_lineage++;
	snprintf(r->source, sizeof(r->source), "%s", src->name);
	l = media_add(&s->media, r->lineage);
	if (!l) {
		free(r);
		return -ENOMEM;
	}
	rc = lin_add_range(&s->media, s->meta, l, 0, ROD_ROUND_UP(src->size, ROD_GRAIN) / ROD_GRAIN,
			   tl, te, 0, mb);
	if (rc || vol_table_add(s, r)) {
		media_drop(&s->media, r->lineage);
		s->next_lineage--;
		s->next_vol_id--;
		free(r);
		return rc ? rc : -ENOMEM;
	}
	lin_log(mb, l);
	vol_log(mb, r);
	ids_log(s, mb);
	if (op->out)
		fill_info(r, op->out);
	return 0;
}

int rod_vol_clone(struct rod_store *s, const char *src, const char *new_name,
		  struct rod_vol_info *out)
{
	struct vop op = { .name = src, .name2 = new_name, .out = out };
	int rc;

	if (!src || !new_name || !vol_name_ok(new_name))
		return -EINVAL;
	if (rod_random_bytes(op.uuid, 16))
		return -EIO;
	rc = run_op(s, clone_build, &op);
	if (rc == -ELOOP) {
		/* Too deep a chain of clones: materialise the data instead. */
		struct rod_vol_info si;
		struct rod_vol *sv, *dv;

		rc = rod_vol_info_get(s, src, &si);
		if (!rc)
			rc = rod_vol_create(s, new_name, si.size, si.block_size, out);
		if (rc)
			return rc;
		rc = rod_vol_open(s, src, &sv);
		if (!rc) {
			rc = rod_vol_open(s, new_name, &dv);
			if (!rc) {
				rc = rod_vol_copy(sv, 0, dv, 0, si.size);
				rod_vol_close(dv);
			}
			rod_vol_close(sv);
		}
	}
	return rc;
}

static int revert_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct vol_rec *v = vol_find_name(s, op->name), *sn = vol_find_name(s, op->name2);
	struct lineage *l;

	if (!v || !sn)
		return -ENOENT;
	if (v->is_snapshot || !sn->is_snapshot)
		return -EINVAL;
	if (sn->size != v->size)
		return -EINVAL;
	l = media_find(&s->media, v->lineage);
	if (!l)
		return -ENOENT;
	return lin_add_range(&s->media, s->meta, l, 0, ROD_ROUND_UP(v->size, ROD_GRAIN) / ROD_GRAIN,
			     sn->lineage, sn->epoch, 0, mb);
}

int rod_vol_revert(struct rod_store *s, const char *vol, const char *snap)
{
	struct vop op = { .name = vol, .name2 = snap };

	struct rod_vol *sv, *dv;
	int rc;

	if (!vol || !snap)
		return -EINVAL;
	rc = run_op(s, revert_build, &op);
	if (rc != -ELOOP)
		return rc;
	/* The snapshot reads through too deep a chain: copy its data instead (the copy
	 * falls back to moving bytes, holes stay holes). */
	rc = rod_vol_open(s, snap, &sv);
	if (rc)
		return rc;
	rc = rod_vol_open(s, vol, &dv);
	if (!rc) {
		rc = rod_vol_copy(sv, 0, dv, 0, rod_vol_size(dv));
		rod_vol_close(dv);
	}
	rod_vol_close(sv);
	return rc;
}

/* ---- handles ---- */

static int open_rec(struct rod_store *s, struct vol_rec *r, struct rod_vol **out)
{
	struct rod_vol *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	atomic_fetch_add(&r->refs, 1);
	v->s = s;
	v->rec = r;
	*out = v;
	return 0;
}

int rod_vol_open(struct rod_store *s, const char *name, struct rod_vol **out)
{
	struct vol_rec *r;
	int rc = -ENOENT;

	if (!name)
		return -EINVAL;
	pthread_rwlock_rdlock(&s->state);
	r = vol_find_name(s, name);
	if (r)
		rc = open_rec(s, r, out);
	pthread_rwlock_unlock(&s->state);
	return rc;
}

int rod_vol_open_id(struct rod_store *s, uint64_t id, struct rod_vol **out)
{
	struct vol_rec *r;
	int rc = -ENOENT;

	pthread_rwlock_rdlock(&s->state);
	r = vol_find_id(s, id);
	if (r && !r->destroyed)
		rc = open_rec(s, r, out);
	pthread_rwlock_unlock(&s->state);
	return rc;
}

void rod_vol_close(struct rod_vol *v)
{
	if (!v)
		return;
	if (v->is_pin) {
		pthread_rwlock_wrlock(&v->s->state);
		v->pin_prev->pin_next = v->pin_next;
		v->pin_next->pin_prev = v->pin_prev;
		pthread_rwlock_unlock(&v->s->state);
	}
	vol_rec_put(v->rec);
	free(v);
}

uint64_t rod_vol_size(struct rod_vol *v)
{
	uint64_t sz;

	pthread_rwlock_rdlock(&v->s->state);
	sz = v->rec->size;
	pthread_rwlock_unlock(&v->s->state);
	return v->is_pin ? v->pin_size : sz;
}

uint32_t rod_vol_block_size(struct rod_vol *v)
{
	return v->rec->block_size;
}

uint64_t rod_vol_id(struct rod_vol *v)
{
	return v->rec->id;
}

enum rod_cache_mode rod_vol_cache(struct rod_vol *v)
{
	return v->rec->cache;
}

static int pin_build(struct rod_store *s, struct citem *ci, struct mutbuf *mb)
{
	struct vop *op = ci->arg;
	struct rod_vol *p = op->pin;
	struct vol_rec *r = p->rec;
	int rc;

	if (r->destroyed || r->eradicated)
		return -ENOENT;
	rc = view_of(s, r, mb, &p->pin_lineage, &p->pin_epoch);
	if (rc)
		return rc;
	p->pin_size = r->size;
	p->is_pin = true;
	p->pin_next = s->pins.pin_next;
	p->pin_prev = &s->pins;
	s->pins.pin_next->pin_prev = p;
	s->pins.pin_next = p;
	return 0;
}

int rod_vol_pin(struct rod_vol *v, struct rod_vol **out)
{
	struct rod_store *s = v->s;
	struct rod_vol *p = calloc(1, sizeof(*p));
	struct vop op = { .pin = p };
	struct citem ci = { .kind = CI_OP, .build = pin_build, .arg = &op };
	int rc;

	if (!p)
		return -ENOMEM;
	p->s = s;
	p->rec = v->rec;
	atomic_fetch_add(&v->rec->refs, 1);
	if (v->is_pin) {
		/* A pin of a pin is the same frozen view. */
		pthread_rwlock_wrlock(&s->state);
		p->is_pin = true;
		p->pin_lineage = v->pin_lineage;
		p->pin_epoch = v->pin_epoch;
		p->pin_size = v->pin_size;
		p->pin_next = s->pins.pin_next;
		p->pin_prev = &s->pins;
		s->pins.pin_next->pin_prev = p;
		s->pins.pin_next = p;
		pthread_rwlock_unlock(&s->state);
		*out = p;
		return 0;
	}
	rc = commit_run(s, &ci);
	if (rc) {
		vol_rec_put(p->rec);
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}
