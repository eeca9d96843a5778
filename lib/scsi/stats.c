/* Per-volume I/O counters, sense-key error counters and copy-offload counters of the
 * SCSI core (see include/rod/scsi_stats.h). Recording runs on every command's
 * completion path, so it takes no lock: a fixed table of volume slots found by hashing
 * the volume id, claimed once with a compare-and-swap, counters bumped with relaxed
 * atomics. A reader (the /metrics scrape) sees each counter monotonic, not a snapshot
 * consistent across counters, which Prometheus does not need. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"
#include "scsi_internal.h"
#include "stats.h"
#include "target.h"
#include "tpc.h"

/* Slots for volumes with I/O since start; more volumes than this are counted in
 * volumes_dropped instead (a 4096-volume array would need a bigger table). */
#define STATS_SLOTS 4096u
#define SLOT_FREE 0u            /* volume ids start at 1 */

/* rod_scsi_lat_bound() in ns, for the hot path. */
static const uint64_t lat_bounds_ns[ROD_SCSI_LAT_BOUNDS] = {
	100000ull, 250000ull, 500000ull, 1000000ull, 2500000ull, 5000000ull, 10000000ull,
	25000000ull, 50000000ull, 100000000ull, 250000000ull, 500000000ull, 1000000000ull,
	2500000000ull,
};

struct io_ctr {
	atomic_uint_fast64_t ops, bytes, lat_sum_ns;
	atomic_uint_fast64_t lat_bucket[ROD_SCSI_LAT_BOUNDS + 1];
};

struct vol_slot {
	atomic_uint_fast64_t vol_id;    /* SLOT_FREE until claimed; never changes after */
	struct io_ctr read, write;
};

struct rod_scsi_stats {
	struct vol_slot *slots;         /* STATS_SLOTS entries */
	atomic_uint_fast64_t sense_keys[16];
	atomic_uint_fast64_t copy_ops[ROD_COPY_KINDS], copy_bytes[ROD_COPY_KINDS];
	atomic_uint_fast64_t copy_errors[ROD_COPY_KINDS];
	atomic_uint_fast64_t populate_tokens;
	atomic_uint_fast64_t dropped;
};

enum io_kind { IO_NONE = 0, IO_READ, IO_WRITE };

/* Opcode -> read or write, as a table (anything absent is neither). */
static const uint8_t io_kind_of[256] = {
	[SBC_READ_6] = IO_READ,
	[SBC_READ_10] = IO_READ,
	[SBC_READ_12] = IO_READ,
	[SBC_READ_16] = IO_READ,
	[SBC_WRITE_6] = IO_WRITE,
	[SBC_WRITE_10] = IO_WRITE,
	[SBC_WRITE_12] = IO_WRITE,
	[SBC_WRITE_16] = IO_WRITE,
	[SBC_WRITE_AND_VERIFY_10] = IO_WRITE,
	[SBC_WRITE_AND_VERIFY_12] = IO_WRITE,
	[SBC_WRITE_AND_VERIFY_16] = IO_WRITE,
	[SBC_WRITE_SAME_10] = IO_WRITE,
	[SBC_WRITE_SAME_16] = IO_WRITE,
	[SBC_COMPARE_AND_WRITE] = IO_WRITE,
	[SBC_ORWRITE_16] = IO_WRITE,
};

int rod_scsi_stats_new(struct rod_scsi_stats **out)
{
	struct rod_scsi_stats *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->slots = calloc(STATS_SLOTS, sizeof(*s->slots));
	if (!s->slots) {
		free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void rod_scsi_stats_free(struct rod_scsi_stats *s)
{
	if (!s)
		return;
	free(s->slots);
	free(s);
}

static struct vol_slot *slot_for(struct rod_scsi_stats *s, uint64_t vol_id)
{
	/* Fibonacci hashing spreads sequential ids; linear probing on collision. */
	uint32_t h = (uint32_t)((vol_id * 0x9E3779B97F4A7C15ull) >> 52) % STATS_SLOTS;
	for (uint32_t i = 0; i < STATS_SLOTS; i++) {
		struct vol_slot *sl = &s->slots[(h + i) % STATS_SLOTS];
		uint_fast64_t cur = atomic_load_explicit(&sl->vol_id, memory_order_acquire);
		if (cur == vol_id)
			return sl;
		if (cur == SLOT_FREE) {
			uint_fast64_t expect = SLOT_FREE;
			if (atomic_compare_exchange_strong(&sl->vol_id, &expect, vol_id) || expect == vol_id)
				return sl;
		}
	}
	return NULL;
}

static void io_add(struct io_ctr *c, uint64_t bytes, uint64_t lat_ns)
{
	unsigned b = 0;
	while (b < ROD_SCSI_LAT_BOUNDS && lat_ns > lat_bounds_ns[b])
		b++;
	atomic_fetch_add_explicit(&c->ops, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->lat_sum_ns, lat_ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->lat_bucket[b], 1, memory_order_relaxed);
}

/* Sense key of fixed (70h/71h) or descriptor (72h/73h) format sense data. */
static int sense_key(const uint8_t *sense, unsigned len)
{
	if (len < 3)
		return -1;
	uint8_t code = sense[0] & 0x7f;
	if (code == 0x70 || code == 0x71)
		return sense[2] & 0x0f;
	if (code == 0x72 || code == 0x73)
		return sense[1] & 0x0f;
	return -1;
}

void rod_stats_task_done(struct rod_scsi_task *t)
{
	struct rod_scsi_stats *s = t->tgt->stats;
	struct rod_scsi_cmd *c = t->cmd;
	if (!s)
		return;
	if (c->status == SAM_STAT_CHECK_CONDITION) {
		int key = sense_key(c->sense, c->sense_len);
		if (key >= 0)
			atomic_fetch_add_explicit(&s->sense_keys[key], 1, memory_order_relaxed);
	}
	uint8_t kind = io_kind_of[c->cdb[0]];
	if (kind == IO_NONE || !t->lu)
		return;
	struct vol_slot *sl = slot_for(s, t->lu->vol_id);
	if (!sl) {
		atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
		return;
	}
	bool good = c->status == SAM_STAT_GOOD;
	uint64_t now = rod_now_ns();
	uint64_t lat = now > t->start_ns ? now - t->start_ns : 0;
	if (kind == IO_READ)
		io_add(&sl->read, good ? c->in_len : 0, lat);
	else
		io_add(&sl->write, good ? c->out_len : 0, lat);
}

void rod_stats_copy_done(struct rod_scsi_target *tgt, enum rod_scsi_copy_kind kind, bool ok,
			 uint64_t bytes)
{
	struct rod_scsi_stats *s = tgt->stats;
	if (!s || (unsigned)kind >= ROD_COPY_KINDS)
		return;
	if (!ok) {
		atomic_fetch_add_explicit(&s->copy_errors[kind], 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&s->copy_ops[kind], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->copy_bytes[kind], bytes, memory_order_relaxed);
}

void rod_stats_token_made(struct rod_scsi_target *tgt)
{
	if (tgt->stats)
		atomic_fetch_add_explicit(&tgt->stats->populate_tokens, 1, memory_order_relaxed);
}

static void io_copy(struct rod_scsi_io_stats *o, struct io_ctr *c)
{
	o->ops = atomic_load_explicit(&c->ops, memory_order_relaxed);
	o->bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed);
	o->lat_sum_ns = atomic_load_explicit(&c->lat_sum_ns, memory_order_relaxed);
	for (unsigned b = 0; b <= ROD_SCSI_LAT_BOUNDS; b++)
		o->lat_bucket[b] = atomic_load_explicit(&c->lat_bucket[b], memory_order_relaxed);
}

int rod_scsi_stats_get(struct rod_scsi_target *t, struct rod_scsi_stats_snapshot *out)
{
	struct rod_scsi_stats *s = t->stats;
	memset(out, 0, sizeof(*out));
	if (!s)
		return 0;
	size_t n = 0;
	for (uint32_t i = 0; i < STATS_SLOTS; i++)
		n += atomic_load_explicit(&s->slots[i].vol_id, memory_order_acquire) != SLOT_FREE;
	out->vols = calloc(n ? n : 1, sizeof(*out->vols));
	if (!out->vols)
		return -ENOMEM;
	/* A slot claimed after the count is left for the next scrape. */
	for (uint32_t i = 0; i < STATS_SLOTS && out->n_vols < n; i++) {
		struct vol_slot *sl = &s->slots[i];
		uint64_t id = atomic_load_explicit(&sl->vol_id, memory_order_acquire);
		if (id == SLOT_FREE)
			continue;
		struct rod_scsi_vol_stats *v = &out->vols[out->n_vols++];
		v->vol_id = id;
		io_copy(&v->read, &sl->read);
		io_copy(&v->write, &sl->write);
	}
	for (unsigned k = 0; k < 16; k++)
		out->sense_keys[k] = atomic_load_explicit(&s->sense_keys[k], memory_order_relaxed);
	for (unsigned k = 0; k < ROD_COPY_KINDS; k++) {
		out->copy_ops[k] = atomic_load_explicit(&s->copy_ops[k], memory_order_relaxed);
		out->copy_bytes[k] = atomic_load_explicit(&s->copy_bytes[k], memory_order_relaxed);
		out->copy_errors[k] = atomic_load_explicit(&s->copy_errors[k], memory_order_relaxed);
	}
	out->populate_tokens = atomic_load_explicit(&s->populate_tokens, memory_order_relaxed);
	out->volumes_dropped = atomic_load_explicit(&s->dropped, memory_order_relaxed);
	out->tokens_live = rod_tpc_tokens_live(t);
	return 0;
}
