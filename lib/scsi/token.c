/* ROD token encoding/verification and the live-token table (see token.h). */
#include "token.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

#define TOKEN_MAGIC "RODT"
#define TOKEN_VERSION 1
#define OFF_MAGIC 128
#define OFF_VERSION 132
#define OFF_ARRAY 136
#define OFF_CREATED 152

static void token_mac(const uint8_t secret[32], const uint8_t tok[ROD_TOKEN_LEN], uint8_t mac[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), secret, 32, tok, ROD_TOKEN_MAC_OFF, mac, &len);
}

void rod_token_encode(const struct rod_token_fields *f, const uint8_t secret[32],
		      uint8_t out[ROD_TOKEN_LEN])
{
	memset(out, 0, ROD_TOKEN_LEN);
	rod_put_be32(out, f->rod_type);
	rod_put_be16(out + 6, ROD_TOKEN_BODY_LEN);
	rod_put_be64(out + 8, f->id);
	memcpy(out + 16, f->creator, 32);
	/* NUMBER OF BYTES REPRESENTED is 128-bit; our counts fit the low half. */
	rod_put_be64(out + 56, f->bytes);
	rod_put_be32(out + 96, f->block_size);
	memcpy(out + OFF_MAGIC, TOKEN_MAGIC, 4);
	out[OFF_VERSION] = TOKEN_VERSION;
	memcpy(out + OFF_ARRAY, f->array_id, 16);
	rod_put_be64(out + OFF_CREATED, f->created_wall_ns);
	token_mac(secret, out, out + ROD_TOKEN_MAC_OFF);
}

enum rod_token_ascq rod_token_verify(const uint8_t tok[ROD_TOKEN_LEN], const uint8_t array_id[16],
				     const uint8_t secret[32], struct rod_token_fields *f)
{
	uint32_t type = rod_token_type(tok);
	uint8_t mac[32];

	if (type != ROD_TOKEN_TYPE_PIT && type != ROD_TOKEN_TYPE_PIT_PERSISTENT)
		return ROD_TOKEN_UNSUPPORTED_TYPE;
	if (rod_get_be16(tok + 6) != ROD_TOKEN_BODY_LEN)
		return ROD_TOKEN_BAD_LENGTH;
	/* Not ours at all (another vendor's copy manager made it). */
	if (memcmp(tok + OFF_MAGIC, TOKEN_MAGIC, 4) != 0 || tok[OFF_VERSION] != TOKEN_VERSION)
		return ROD_TOKEN_REMOTE;
	/* Another rodstore array: we cannot read its data. */
	if (CRYPTO_memcmp(tok + OFF_ARRAY, array_id, 16) != 0)
		return ROD_TOKEN_REMOTE;
	token_mac(secret, tok, mac);
	if (CRYPTO_memcmp(mac, tok + ROD_TOKEN_MAC_OFF, 32) != 0)
		return ROD_TOKEN_CORRUPT;
	if (f) {
		f->rod_type = type;
		f->id = rod_get_be64(tok + 8);
		f->bytes = rod_get_be64(tok + 56);
		f->block_size = rod_get_be32(tok + 96);
		memcpy(f->creator, tok + 16, 32);
		memcpy(f->array_id, tok + OFF_ARRAY, 16);
		f->created_wall_ns = rod_get_be64(tok + OFF_CREATED);
	}
	return ROD_TOKEN_OK;
}

/* ---- table ------------------------------------------------------------------------ */

struct tombstone {
	uint64_t id;
	uint8_t reason;
};

struct rod_token_table {
	struct rod_token_table_opts o;
	pthread_mutex_t lock;             /* guards everything below and the marked token fields */
	struct rod_token **buckets;
	uint32_t nbuckets;                /* power of two */
	uint32_t count;                   /* entries in buckets (live or ending) */
	uint64_t last_sweep_ns;
	struct tombstone *tomb;           /* ring of ended token ids */
	uint32_t tomb_next;
};

static uint64_t table_now(struct rod_token_table *t)
{
	return t->o.clock ? t->o.clock() : rod_now_ns();
}

static uint32_t bucket_of(struct rod_token_table *t, uint64_t id)
{
	/* ids are random already; fold for the bucket index */
	return (uint32_t)(id ^ (id >> 32)) & (t->nbuckets - 1);
}

int rod_token_table_new(const struct rod_token_table_opts *o, struct rod_token_table **out)
{
	struct rod_token_table *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->o = *o;
	if (!t->o.max_tokens)
		t->o.max_tokens = ROD_TOKEN_DEFAULT_MAX;
	t->nbuckets = 1;
	while (t->nbuckets < t->o.max_tokens)
		t->nbuckets <<= 1;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	t->tomb = calloc(ROD_TOKEN_TOMBSTONES, sizeof(*t->tomb));
	if (!t->buckets || !t->tomb) {
		free(t->buckets);
		free(t->tomb);
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	return 0;
}

static void token_free(struct rod_token_table *t, struct rod_token *tk)
{
	if (tk->pin && t->o.release_pin)
		t->o.release_pin(tk->pin);
	free(tk->ranges);
	free(tk);
}

void rod_token_table_free(struct rod_token_table *t)
{
	if (!t)
		return;
	for (uint32_t b = 0; b < t->nbuckets; b++) {
		struct rod_token *tk = t->buckets[b], *next;

		for (; tk; tk = next) {
			next = tk->next;
			token_free(t, tk);
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t->buckets);
	free(t->tomb);
	free(t);
}

/* Unlink tk (lock held), remember why it ended, and queue it on *dead for freeing
 * outside the lock (releasing a pin calls into the store). */
static void unlink_locked(struct rod_token_table *t, struct rod_token *tk, uint8_t reason,
			  struct rod_token **dead)
{
	struct rod_token **pp = &t->buckets[bucket_of(t, tk->id)];

	while (*pp && *pp != tk)
		pp = &(*pp)->next;
	if (*pp)
		*pp = tk->next;
	t->count--;
	t->tomb[t->tomb_next].id = tk->id;
	t->tomb[t->tomb_next].reason = reason;
	t->tomb_next = (t->tomb_next + 1) % ROD_TOKEN_TOMBSTONES;
	tk->next = *dead;
	*dead = tk;
}

static void free_dead(struct rod_token_table *t, struct rod_token *dead)
{
	while (dead) {
		struct rod_token *next = dead->next;

		token_free(t, dead);
		dead = next;
	}
}

static bool expired(struct rod_token *tk, uint64_t now)
{
	return tk->active == 0 && now - tk->last_active_ns > tk->timeout_ns;
}

static unsigned sweep_locked(struct rod_token_table *t, uint64_t now, struct rod_token **dead)
{
	unsigned n = 0;

	t->last_sweep_ns = now;
	for (uint32_t b = 0; b < t->nbuckets; b++) {
		struct rod_token *tk = t->buckets[b], *next;

		for (; tk; tk = next) {
			next = tk->next;
			if (expired(tk, now)) {
				unlink_locked(t, tk, ROD_TOKEN_EXPIRED, dead);
				n++;
			}
		}
	}
	return n;
}

static void maybe_sweep_locked(struct rod_token_table *t, uint64_t now, struct rod_token **dead)
{
	if (now - t->last_sweep_ns >= 1000000000ull)
		sweep_locked(t, now, dead);
}

unsigned rod_token_expire(struct rod_token_table *t)
{
	struct rod_token *dead = NULL;
	unsigned n;

	pthread_mutex_lock(&t->lock);
	n = sweep_locked(t, table_now(t), &dead);
	pthread_mutex_unlock(&t->lock);
	free_dead(t, dead);
	return n;
}

static struct rod_token *find_locked(struct rod_token_table *t, uint64_t id)
{
	for (struct rod_token *tk = t->buckets[bucket_of(t, id)]; tk; tk = tk->next)
		if (tk->id == id)
			return tk;
	return NULL;
}

int rod_token_add(struct rod_token_table *t, const struct rod_token_spec *s,
		  uint8_t out[ROD_TOKEN_LEN])
{
	struct rod_token *tk = calloc(1, sizeof(*tk));
	struct rod_token_fields f = { 0 };
	struct rod_token *dead = NULL;
	uint64_t now;
	int rc = 0;

	if (!tk)
		return -ENOMEM;
	if (s->nranges) {
		tk->ranges = malloc(s->nranges * sizeof(*tk->ranges));
		if (!tk->ranges) {
			free(tk);
			return -ENOMEM;
		}
		memcpy(tk->ranges, s->ranges, s->nranges * sizeof(*tk->ranges));
	}
	tk->nranges = s->nranges;
	for (uint32_t i = 0; i < s->nranges; i++)
		tk->total_blocks += s->ranges[i].nblocks;
	tk->src_vol_id = s->src_vol_id;
	tk->block_size = s->block_size;
	tk->timeout_ns = s->timeout_ns;

	f.rod_type = s->rod_type;
	f.bytes = tk->total_blocks * s->block_size;
	f.block_size = s->block_size;
	if (s->creator)
		memcpy(f.creator, s->creator, 32);
	memcpy(f.array_id, t->o.array_id, 16);
	f.created_wall_ns = rod_wall_ns();

	pthread_mutex_lock(&t->lock);
	now = table_now(t);
	maybe_sweep_locked(t, now, &dead);
	if (t->count >= t->o.max_tokens) {
		/* Full of tokens still within their timeout: try a real sweep first. */
		sweep_locked(t, now, &dead);
		if (t->count >= t->o.max_tokens) {
			rc = -ENOSPC;
			goto out;
		}
	}
	/* A random id; 0 is never used so a zeroed token cannot match by accident. */
	do {
		if (rod_random_bytes(&tk->id, sizeof(tk->id)) != 0) {
			rc = -EIO;
			goto out;
		}
	} while (tk->id == 0 || find_locked(t, tk->id));
	f.id = tk->id;
	rod_token_encode(&f, t->o.secret, tk->bytes);
	tk->pin = s->pin;
	tk->last_active_ns = now;
	tk->next = t->buckets[bucket_of(t, tk->id)];
	t->buckets[bucket_of(t, tk->id)] = tk;
	t->count++;
	memcpy(out, tk->bytes, ROD_TOKEN_LEN);
out:
	pthread_mutex_unlock(&t->lock);
	free_dead(t, dead);
	if (rc) {
		free(tk->ranges);
		free(tk);
	}
	return rc;
}

static uint8_t tomb_reason_locked(struct rod_token_table *t, uint64_t id)
{
	/* Newest first, so a reused id (2^-64) would report its latest end. */
	for (uint32_t i = 0; i < ROD_TOKEN_TOMBSTONES; i++) {
		uint32_t k = (t->tomb_next + ROD_TOKEN_TOMBSTONES - 1 - i) % ROD_TOKEN_TOMBSTONES;

		if (t->tomb[k].reason && t->tomb[k].id == id)
			return t->tomb[k].reason;
	}
	return ROD_TOKEN_UNKNOWN;
}

enum rod_token_ascq rod_token_get(struct rod_token_table *t, const uint8_t tok[ROD_TOKEN_LEN],
				  struct rod_token **out)
{
	struct rod_token_fields f;
	enum rod_token_ascq r = rod_token_verify(tok, t->o.array_id, t->o.secret, &f);
	struct rod_token *tk, *dead = NULL;
	uint64_t now;

	if (r != ROD_TOKEN_OK)
		return r;
	pthread_mutex_lock(&t->lock);
	now = table_now(t);
	maybe_sweep_locked(t, now, &dead);
	tk = find_locked(t, f.id);
	if (!tk) {
		r = tomb_reason_locked(t, f.id);
	} else if (tk->end_reason) {
		r = tk->end_reason;
	} else if (expired(tk, now)) {
		unlink_locked(t, tk, ROD_TOKEN_EXPIRED, &dead);
		r = ROD_TOKEN_EXPIRED;
	} else if (memcmp(tk->bytes, tok, ROD_TOKEN_LEN) != 0) {
		/* A valid MAC over other bytes with our id cannot happen without the secret. */
		r = ROD_TOKEN_CORRUPT;
	} else {
		tk->active++;
		*out = tk;
	}
	pthread_mutex_unlock(&t->lock);
	free_dead(t, dead);
	return r;
}

void rod_token_put(struct rod_token_table *t, struct rod_token *tk, bool del)
{
	struct rod_token *dead = NULL;

	pthread_mutex_lock(&t->lock);
	tk->active--;
	tk->uses++;
	tk->last_active_ns = table_now(t);
	if (del && !tk->end_reason)
		tk->end_reason = ROD_TOKEN_DELETED;
	if (tk->end_reason && tk->active == 0)
		unlink_locked(t, tk, tk->end_reason, &dead);
	pthread_mutex_unlock(&t->lock);
	free_dead(t, dead);
}

unsigned rod_token_revoke_vol(struct rod_token_table *t, uint64_t vol_id)
{
	struct rod_token *dead = NULL;
	unsigned n = 0;

	pthread_mutex_lock(&t->lock);
	for (uint32_t b = 0; b < t->nbuckets; b++) {
		struct rod_token *tk = t->buckets[b], *next;

		for (; tk; tk = next) {
			next = tk->next;
			if (tk->src_vol_id != vol_id || tk->end_reason)
				continue;
			n++;
			tk->end_reason = ROD_TOKEN_REVOKED;
			if (tk->active == 0)
				unlink_locked(t, tk, ROD_TOKEN_REVOKED, &dead);
		}
	}
	pthread_mutex_unlock(&t->lock);
	free_dead(t, dead);
	return n;
}

uint32_t rod_token_count(struct rod_token_table *t)
{
	uint32_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

uint32_t rod_token_list(struct rod_token_table *t, uint64_t vol_id, uint8_t *out, uint32_t max,
			size_t n)
{
	uint32_t k = 0;

	if (n > ROD_TOKEN_LEN)
		n = ROD_TOKEN_LEN;
	pthread_mutex_lock(&t->lock);
	for (uint32_t b = 0; b < t->nbuckets && k < max; b++)
		for (struct rod_token *tk = t->buckets[b]; tk && k < max; tk = tk->next)
			if (!tk->end_reason && (!vol_id || tk->src_vol_id == vol_id))
				memcpy(out + (size_t)k++ * n, tk->bytes, n);
	pthread_mutex_unlock(&t->lock);
	return k;
}
