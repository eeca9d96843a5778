/* Replication of protection groups to a second array: replication keys, links, the
 * sender (a job per transfer) and the receiver (a listener thread). The wire protocol
 * and the resume rules are in docs/protection.md "Replication".
 *
 * Persistence (rod_store_meta_*):
 *   ctl/repl/key/<id>                  {"id", "secret" (hex), "created_ns"}   (target)
 *   ctl/repl/link/<group>              the link of a group: target, key, limit, last
 *                                      replicated snapshot, transfer in progress  (source)
 *   ctl/repl/sent/<target id>/<seq>    chunk ids the target acknowledged, u64 BE array
 *   ctl/replt/fp/<source id>/<seq>     (source chunk id, local fingerprint) pairs (target)
 *   ctl/replt/xfer/<source>/<group>    the transfer being received: suffix, cursors, last
 *                                      complete replica                           (target)
 *   ctl/replica/<source>/<group>/<suffix>  a complete replica group snapshot     (target)
 *
 * Locking: r->lock guards links, keys, the sent sets and the fingerprint tables. It is
 * never held across a call into rod_pg_* (whose hooks take it), nor across network I/O. */
#include "repl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ctl_err.h"
#include "ctl_json.h"
#include "rod/ctl.h"
#include "rod/log.h"
#include "rod/util.h"

#define PFX_KEY "ctl/repl/key/"
#define PFX_LINK "ctl/repl/link/"
#define PFX_SENT "ctl/repl/sent/"
#define PFX_FP "ctl/replt/fp/"
#define PFX_XFER "ctl/replt/xfer/"
#define PFX_REPLICA "ctl/replica/"
#define KEY_PREFIX "rodrk1"
#define NS UINT64_C(1000000000)
#define PROTO_VERSION 1
#define MSG_MAX (1u << 20)          /* largest message accepted */
#define BATCH_BYTES (8u << 20)      /* data between two acknowledged cursors */
#define BATCH_EXTENTS 4096
#define IDLE_TIMEOUT_S 120          /* a silent peer is dropped */
#define BACKOFF_MAX_MS 5000

enum msg_type {
	M_HELLO = 1,    /* source -> target, JSON */
	M_HELLO_R,      /* JSON: target id/name, committed, cursors, or error */
	M_VOL,          /* JSON {"volume", "start"}: the next grains are of this member */
	M_DATA,         /* off u64, chunk u64, comp u8, len u32, payload */
	M_REF,          /* off u64, chunk u64: a chunk this target acknowledged before */
	M_EXTENT,       /* off u64, len u64, kind u8 (ZERO or UNMAP) */
	M_SYNC,         /* cursor u64: everything of this member before it was sent */
	M_SYNC_R,       /* JSON {"cursor"} or {"need": [off...]} (references it could not apply) */
	M_COMMIT,       /* JSON {} */
	M_COMMIT_R,     /* JSON {"ok"} or {"error"} */
};

/* ---- small sets and maps ------------------------------------------------------------- */

/* Open-addressing set of non-zero u64 (chunk ids), optionally with a 32-byte value. */
struct u64map {
	uint64_t *keys;
	uint8_t (*vals)[32];
	size_t cap, n;
	bool with_vals;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	return x;
}

static int map_grow(struct u64map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	uint8_t(*vals)[32] = m->with_vals ? calloc(cap, 32) : NULL;
	if (!keys || (m->with_vals && !vals)) {
		free(keys);
		free(vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		size_t j = mix64(m->keys[i]) & (cap - 1);
		while (keys[j])
			j = (j + 1) & (cap - 1);
		keys[j] = m->keys[i];
		if (vals)
			memcpy(vals[j], m->vals[i], 32);
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return 0;
}

static long map_find(const struct u64map *m, uint64_t k)
{
	if (!m->cap || !k)
		return -1;
	for (size_t j = mix64(k) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
		if (m->keys[j] == k)
			return (long)j;
		if (!m->keys[j])
			return -1;
	}
}

static int map_put(struct u64map *m, uint64_t k, const uint8_t *val)
{
	long f = map_find(m, k);
	if (!k)
		return 0;
	if (f < 0) {
		if ((m->n + 1) * 2 > m->cap && map_grow(m))
			return -ENOMEM;
		size_t j = mix64(k) & (m->cap - 1);
		while (m->keys[j])
			j = (j + 1) & (m->cap - 1);
		m->keys[j] = k;
		m->n++;
		f = (long)j;
	}
	if (val && m->with_vals)
		memcpy(m->vals[f], val, 32);
	return 0;
}

static void map_release(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* Chunk ids a target acknowledged (source side), or source chunk id -> local fingerprint
 * (target side); keyed by the peer array's id (hex). */
struct peer_tab {
	char peer[33];
	struct u64map map;
	uint64_t next_seq;              /* next record number in the store */
	struct peer_tab *next;
};

/* ---- objects ------------------------------------------------------------------------- */

struct repl_key {
	char id[17];
	uint8_t secret[32];
	uint64_t created_ns;
};

struct link {
	char group[ROD_NAME_MAX];
	char to[256];                   /* HOST:PORT */
	char key_id[17];
	uint8_t secret[32];
	uint64_t bwlimit;               /* bytes/s, 0: none */
	char last[ROD_NAME_MAX];        /* last replicated group snapshot (suffix), "" none */
	json_t *last_members;           /* {volume: member snapshot} of last */
	uint64_t last_ns;               /* creation time of last (lag) */
	uint64_t last_bytes;            /* wire bytes of the last finished transfer */
	uint64_t last_done_ns;
	char pending[ROD_NAME_MAX];     /* group snapshot in transfer, "" none */
	char next[ROD_NAME_MAX];        /* taken during a transfer: sent after it */
	bool force_full;                /* the target lacks the base: send everything */
	char target_name[ROD_NAME_MAX];
	char state[24];                 /* idle, transferring, retrying, failed */
	char error[256];
	uint64_t job_id;                /* live job, 0 none */
	uint64_t cur_bytes;             /* wire bytes of the transfer in progress */
};

struct rod_repl {
	struct rod_store *store;
	struct rod_jobs *jobs;
	struct rod_pg *pg;
	pthread_mutex_t lock;
	struct link **links;
	size_t n_links;
	struct repl_key *keys;
	size_t n_keys;
	struct peer_tab *sent;          /* source side */
	struct peer_tab *fps;           /* target side */
	bool stopping;
	bool stopped;                   /* rod_repl_stop ran (no lock: the owner's thread) */
	/* listener */
	int lfd;
	char listen_addr[128];
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	SSL_CTX *sctx;
};

struct xfer_arg {
	struct rod_repl *r;
	char group[ROD_NAME_MAX];
};

/* ---- helpers ----------------------------------------------------------------------------- */

static json_t *get_json(struct rod_store *s, const char *key)
{
	void *val;
	size_t len;
	if (rod_store_meta_get(s, key, &val, &len))
		return NULL;
	json_t *o = json_loadb(val, len, 0, NULL);
	free(val);
	return o;
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t off = 0;
	buf[0] = 0;
	while ((e = ERR_get_error()) && off + 2 < len) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "; " : "", one);
	}
	if (!buf[0])
		snprintf(buf, len, "%s", "connection closed");
}

/* ---- peer tables (sent chunk ids / fingerprints), persisted in records of a batch ---------- */

static struct peer_tab *peer_get(struct peer_tab **head, const char *peer, bool with_vals)
{
	for (struct peer_tab *t = *head; t; t = t->next)
		if (!strcmp(t->peer, peer))
			return t;
	struct peer_tab *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	snprintf(t->peer, sizeof(t->peer), "%s", peer);
	t->map.with_vals = with_vals;
	t->next = *head;
	*head = t;
	return t;
}

struct tab_load {
	struct peer_tab **head;
	bool with_vals;
};

/* key: PFX/<peer>/<seq %016x> */
static int load_tab(void *arg, const char *key, const void *val, size_t len, const char *pfx)
{
	struct tab_load *tl = arg;
	const char *rest = key + strlen(pfx), *slash = strchr(rest, '/');
	char peer[33];
	if (!slash || slash - rest != 32)
		return 0;
	memcpy(peer, rest, 32);
	peer[32] = 0;
	struct peer_tab *t = peer_get(tl->head, peer, tl->with_vals);
	if (!t)
		return -ENOMEM;
	uint64_t seq = strtoull(slash + 1, NULL, 16);
	if (seq + 1 > t->next_seq)
		t->next_seq = seq + 1;
	size_t esz = tl->with_vals ? 40 : 8;
	const uint8_t *p = val;
	for (size_t i = 0; i + esz <= len; i += esz)
		if (map_put(&t->map, rod_get_be64(p + i), tl->with_vals ? p + i + 8 : NULL))
			return -ENOMEM;
	return 0;
}

static int load_sent(void *arg, const char *key, const void *val, size_t len)
{
	return load_tab(arg, key, val, len, PFX_SENT);
}

static int load_fp(void *arg, const char *key, const void *val, size_t len)
{
	return load_tab(arg, key, val, len, PFX_FP);
}

/* Append entries (8 or 40 bytes each) as one record of the peer's table. */
static int tab_append(struct rod_repl *r, struct peer_tab *t, const char *pfx, const uint8_t *ents, size_t n,
		      size_t esz)
{
	char key[128];
	int rc;
	if (!n)
		return 0;
	pthread_mutex_lock(&r->lock);
	uint64_t seq = t->next_seq++;
	for (size_t i = 0; i < n; i++)
		map_put(&t->map, rod_get_be64(ents + i * esz), esz == 40 ? ents + i * esz + 8 : NULL);
	pthread_mutex_unlock(&r->lock);
	snprintf(key, sizeof(key), "%s%s/%016" PRIx64, pfx, t->peer, seq);
	rc = rod_store_meta_put(r->store, key, ents, n * esz);
	if (rc)
		rod_warn("replication: cannot record %zu chunk entries for %s: %s", n, t->peer, strerror(-rc));
	return rc;
}

/* ---- keys ------------------------------------------------------------------------------------ */

static struct repl_key *key_find(struct rod_repl *r, const char *id)
{
	for (size_t i = 0; i < r->n_keys; i++)
		if (!strcmp(r->keys[i].id, id))
			return &r->keys[i];
	return NULL;
}

static int load_key(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_repl *r = arg;
	json_t *o = json_loadb(val, len, 0, NULL);
	const char *id = jstr(o, "id"), *sec = jstr(o, "secret");
	struct repl_key k = { 0 };
	if (!id || strlen(id) >= sizeof(k.id) || !sec || strlen(sec) != 64 || rod_unhex(sec, k.secret, 32)) {
		rod_warn("replication: skipping unreadable key record %s", key);
		json_decref(o);
		return 0;
	}
	snprintf(k.id, sizeof(k.id), "%s", id);
	k.created_ns = ctl_jint(o, "created_ns");
	json_decref(o);
	struct repl_key *nk = realloc(r->keys, (r->n_keys + 1) * sizeof(*nk));
	if (!nk)
		return -ENOMEM;
	r->keys = nk;
	r->keys[r->n_keys++] = k;
	return 0;
}

/* "rodrk1:<id>:<64 hex>" */
static int key_parse(const char *s, char *id, size_t idlen, uint8_t secret[32])
{
	const char *a = strchr(s, ':'), *b = a ? strchr(a + 1, ':') : NULL;
	size_t n;
	if (!a || !b || (size_t)(a - s) != strlen(KEY_PREFIX) || strncmp(s, KEY_PREFIX, (size_t)(a - s)))
		return -EINVAL;
	n = (size_t)(b - a - 1);
	if (!n || n >= idlen)
		return -EINVAL;
	memcpy(id, a + 1, n);
	id[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdef", id[i]))
			return -EINVAL;
	size_t hl = strcspn(b + 1, "\r\n \t");
	if (hl != 64 || b[65 + strspn(b + 65, "\r\n \t")] != 0)
		return -EINVAL;
	char hex[65];
	memcpy(hex, b + 1, 64);
	hex[64] = 0;
	return rod_unhex(hex, secret, 32);
}

static int m_key_create(struct rod_repl *r, json_t *params, json_t **res, char **msg)
{
	struct repl_key k = { 0 };
	uint8_t idb[4];
	char hex[65], key[64], text[128];
	int rc;
	(void)params;
	if (rod_random_bytes(idb, sizeof(idb)) || rod_random_bytes(k.secret, sizeof(k.secret)))
		return ctl_fail(msg, ROD_CTL_EOTHER, "no random bytes for the key");
	rod_hex(idb, sizeof(idb), k.id);
	rod_hex(k.secret, sizeof(k.secret), hex);
	k.created_ns = rod_wall_ns();
	json_t *o = json_pack("{s:s, s:s, s:I}", "id", k.id, "secret", hex, "created_ns", (json_int_t)k.created_ns);
	snprintf(key, sizeof(key), PFX_KEY "%s", k.id);
	rc = o ? ctl_put_json(r->store, key, o) : -ENOMEM;
	json_decref(o);
	if (rc)
		return ctl_fail(msg, ROD_CTL_EOTHER, "saving the replication key: %s", strerror(-rc));
	pthread_mutex_lock(&r->lock);
	struct repl_key *nk = realloc(r->keys, (r->n_keys + 1) * sizeof(*nk));
	if (nk) {
		r->keys = nk;
		r->keys[r->n_keys++] = k;
	}
	pthread_mutex_unlock(&r->lock);
	if (!nk)
		return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
	snprintf(text, sizeof(text), KEY_PREFIX ":%s:%s", k.id, hex);
	rod_info("replication: key %s created", k.id);
	*res = json_pack("{s:s, s:s, s:o}", "id", k.id, "key", text, "created", ctl_json_time(k.created_ns));
	return 0;
}

static int m_key_list(struct rod_repl *r, json_t *params, json_t **res, char **msg)
{
	json_t *arr = json_array();
	(void)params;
	(void)msg;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_keys; i++)
		json_array_append_new(arr, json_pack("{s:s, s:o}", "id", r->keys[i].id, "created",
						     ctl_json_time(r->keys[i].created_ns)));
	pthread_mutex_unlock(&r->lock);
	*res = json_pack("{s:o}", "keys", arr);
	return 0;
}

static int m_key_delete(struct rod_repl *r, json_t *params, json_t **res, char **msg)
{
	const char *id = jstr(params, "id");
	char key[64];
	if (!id)
		return ctl_fail(msg, ROD_CTL_EINVAL, "missing parameter \"id\"");
	pthread_mutex_lock(&r->lock);
	struct repl_key *k = key_find(r, id);
	if (k)
		*k = r->keys[--r->n_keys];
	pthread_mutex_unlock(&r->lock);
	if (!k)
		return ctl_fail(msg, ROD_CTL_ENOENT, "replication key \"%s\" not found (rodctl array replication-key list)",
				id);
	snprintf(key, sizeof(key), PFX_KEY "%s", id);
	rod_store_meta_del(r->store, key);
	rod_info("replication: key %s deleted", id);
	*res = json_pack("{s:s}", "id", id);
	return 0;
}

/* ---- TLS ---------------------------------------------------------------------------------------- */

struct client_psk {
	char id[17];
	uint8_t secret[32];
};

static int psk_ex_index = -1;
static pthread_once_t psk_once = PTHREAD_ONCE_INIT;

static void psk_index_init(void)
{
	psk_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity_len,
				  unsigned char *psk, unsigned int max_psk_len)
{
	struct client_psk *k = SSL_get_ex_data(ssl, psk_ex_index);
	(void)hint;
	if (!k || strlen(k->id) + 1 > max_identity_len || max_psk_len < 32)
		return 0;
	memcpy(identity, k->id, strlen(k->id) + 1);
	memcpy(psk, k->secret, 32);
	return 32;
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max_psk_len)
{
	struct rod_repl *r = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	unsigned int n = 0;
	if (!r || !identity || max_psk_len < 32)
		return 0;
	pthread_mutex_lock(&r->lock);
	struct repl_key *k = key_find(r, identity);
	if (k) {
		memcpy(psk, k->secret, 32);
		n = 32;
	}
	pthread_mutex_unlock(&r->lock);
	if (!n)
		rod_warn("replication: a peer presented unknown replication key \"%s\" (rodctl array "
			 "replication-key list)", identity);
	return n;
}

/* TLS 1.3 only, PSK only: the legacy PSK callbacks are used with a SHA-256 suite. */
static SSL_CTX *tls_ctx_new(bool server)
{
	pthread_once(&psk_once, psk_index_init);
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256")) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	if (server)
		SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
	else
		SSL_CTX_set_psk_client_callback(ctx, psk_client_cb);
	return ctx;
}

/* ---- framed connection ---------------------------------------------------------------------- */

struct conn {
	int fd;
	SSL *ssl;
	SSL_CTX *ctx;                   /* client side owns one */
	struct client_psk psk;
	uint8_t *wbuf;
	size_t wlen, wcap;
	uint64_t bwlimit;               /* bytes/s on the wire, 0 none */
	uint64_t t0;                    /* monotonic start (bandwidth limit) */
	uint64_t limited_bytes;         /* wire bytes counted against the limit */
	struct rod_job *job;            /* cancel checks while waiting */
	atomic_bool *stop;              /* listener stop (target side) */
	uint8_t *rbuf;
	size_t rcap;
};

static uint64_t conn_wire_out(struct conn *c)
{
	return c->ssl ? BIO_number_written(SSL_get_wbio(c->ssl)) : 0;
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	free(c->wbuf);
	free(c->rbuf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static bool conn_should_stop(struct conn *c)
{
	return (c->job && rod_job_cancelled(c->job)) || (c->stop && atomic_load(c->stop));
}

/* Wait until fd is readable, checking for cancel every 200 ms; -ETIMEDOUT after the
 * idle timeout, -ECANCELED when asked to stop. */
static int conn_wait_readable(struct conn *c)
{
	if (SSL_pending(c->ssl))
		return 0;
	for (int waited = 0; waited < IDLE_TIMEOUT_S * 5; waited++) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		int n = poll(&p, 1, 200);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
		if (conn_should_stop(c))
			return -ECANCELED;
	}
	return -ETIMEDOUT;
}

static int conn_flush(struct conn *c)
{
	size_t off = 0;
	while (off < c->wlen) {
		size_t n = c->wlen - off;
		if (c->bwlimit && n > 65536)
			n = 65536;
		int w = SSL_write(c->ssl, c->wbuf + off, (int)n);
		if (w <= 0)
			return -EPIPE;
		off += (size_t)w;
		if (c->bwlimit) {
			/* token bucket with no burst: stay behind t0 + bytes / limit */
			uint64_t due = c->t0 + (uint64_t)((unsigned __int128)conn_wire_out(c) * NS / c->bwlimit);
			for (uint64_t now = rod_now_ns(); now < due; now = rod_now_ns()) {
				if (conn_should_stop(c))
					return -ECANCELED;
				sleep_ms((unsigned)ROD_MIN((due - now) / 1000000 + 1, 100));
			}
		}
	}
	c->wlen = 0;
	return 0;
}

static int conn_put(struct conn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
	size_t need = 5 + alen + blen;
	if (c->wlen + need > c->wcap) {
		size_t cap = ROD_MAX(c->wcap * 2, c->wlen + need + 65536);
		uint8_t *nb = realloc(c->wbuf, cap);
		if (!nb)
			return -ENOMEM;
		c->wbuf = nb;
		c->wcap = cap;
	}
	rod_put_be32(c->wbuf + c->wlen, (uint32_t)(1 + alen + blen));
	c->wbuf[c->wlen + 4] = type;
	if (alen)
		memcpy(c->wbuf + c->wlen + 5, a, alen);
	if (blen)
		memcpy(c->wbuf + c->wlen + 5 + alen, b, blen);
	c->wlen += need;
	return c->wlen >= 256 * 1024 ? conn_flush(c) : 0;
}

static int conn_put_json(struct conn *c, uint8_t type, json_t *j)
{
	char *txt = json_dumps(j, JSON_COMPACT);
	int rc = txt ? conn_put(c, type, txt, strlen(txt), NULL, 0) : -ENOMEM;
	free(txt);
	json_decref(j);
	return rc;
}

static int read_full(struct conn *c, void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		int rc = conn_wait_readable(c);
		if (rc)
			return rc;
		int n = SSL_read(c->ssl, (uint8_t *)buf + off, (int)(len - off));
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ)
				continue;
			return -ECONNRESET;
		}
		off += (size_t)n;
	}
	return 0;
}

/* Next message: *type, payload in c->rbuf (NUL-terminated), *len. */
static int conn_get(struct conn *c, uint8_t *type, size_t *len)
{
	uint8_t h[5];
	int rc;
	if ((rc = conn_flush(c)) || (rc = read_full(c, h, 5)))
		return rc;
	uint32_t n = rod_get_be32(h);
	if (n < 1 || n > MSG_MAX)
		return -EPROTO;
	if (c->rcap < n) {
		uint8_t *nb = realloc(c->rbuf, n);
		if (!nb)
			return -ENOMEM;
		c->rbuf = nb;
		c->rcap = n;
	}
	if ((rc = read_full(c, c->rbuf, n - 1)))
		return rc;
	c->rbuf[n - 1] = 0;
	*type = h[4];
	*len = n - 1;
	return 0;
}

static json_t *conn_get_json(struct conn *c, uint8_t want, int *rc)
{
	uint8_t t;
	size_t len;
	*rc = conn_get(c, &t, &len);
	if (*rc)
		return NULL;
	json_t *o = t == want ? json_loadb((char *)c->rbuf, len, 0, NULL) : NULL;
	if (!o || !json_is_object(o)) {
		json_decref(o);
		*rc = -EPROTO;
		return NULL;
	}
	return o;
}

/* "HOST:PORT" or "[V6]:PORT" */
static int split_hostport(const char *s, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= hlen)
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = 0;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= hlen)
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
	}
	if (!colon[1] || strlen(colon + 1) >= plen || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -EINVAL;
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

static int conn_connect(struct conn *c, const char *to, const char *key_id, const uint8_t secret[32], char *err,
			size_t elen)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	c->fd = -1;
	if (split_hostport(to, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, elen, "\"%s\" is not HOST:PORT", to);
		return -EINVAL;
	}
	int g = getaddrinfo(host, port, &hints, &ai);
	if (g) {
		snprintf(err, elen, "cannot resolve %s: %s", host, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	int rc = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			c->fd = fd;
			rc = 0;
			break;
		}
		rc = -errno;
		close(fd);
	}
	freeaddrinfo(ai);
	if (rc) {
		snprintf(err, elen, "cannot connect to %s: %s", to, strerror(-rc));
		return rc;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(c->psk.id, sizeof(c->psk.id), "%s", key_id);
	memcpy(c->psk.secret, secret, 32);
	if (!(c->ctx = tls_ctx_new(false)) || !(c->ssl = SSL_new(c->ctx))) {
		snprintf(err, elen, "TLS setup failed");
		return -ENOMEM;
	}
	SSL_set_ex_data(c->ssl, psk_ex_index, &c->psk);
	SSL_set_fd(c->ssl, c->fd);
	ERR_clear_error();
	int hs = SSL_connect(c->ssl);
	if (hs != 1) {
		char e[160];
		bool refused = SSL_get_error(c->ssl, hs) == SSL_ERROR_SSL;
		ssl_errors(e, sizeof(e));
		if (refused) /* a TLS alert: the target does not accept this key */
			snprintf(err, elen, "%.100s refused the replication key %s at the TLS handshake (create one "
				 "there with rodctl array replication-key create): %s", to, key_id, e);
		else
			snprintf(err, elen, "TLS handshake with %.100s failed: %s", to, e);
		return refused ? -EACCES : -ECONNRESET;
	}
	/* the first application read proves the target knows the key too (its Finished) */
	return 0;
}

/* ---- links ------------------------------------------------------------------------------------ */

static struct link *link_find(struct rod_repl *r, const char *group)
{
	for (size_t i = 0; i < r->n_links; i++)
		if (!strcmp(r->links[i]->group, group))
			return r->links[i];
	return NULL;
}

static void link_free(struct link *l)
{
	if (l) {
		json_decref(l->last_members);
		free(l);
	}
}

/* Caller holds r->lock. */
static int link_save(struct rod_repl *r, const struct link *l)
{
	char key[128], hex[65];
	rod_hex(l->secret, 32, hex);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:O, s:I, s:I, s:I, s:s, s:b, s:s}", "group", l->group,
			      "to", l->to, "key_id", l->key_id, "secret", hex, "bwlimit", (json_int_t)l->bwlimit, "last",
			      l->last, "last_members", l->last_members, "last_ns", (json_int_t)l->last_ns,
			      "last_bytes", (json_int_t)l->last_bytes, "last_done_ns", (json_int_t)l->last_done_ns,
			      "pending", l->pending, "force_full", l->force_full, "target_name", l->target_name);
	if (o)
		json_object_set_new(o, "next", json_string(l->next));
	snprintf(key, sizeof(key), PFX_LINK "%s", l->group);
	int rc = o ? ctl_put_json(r->store, key, o) : -ENOMEM;
	json_decref(o);
	if (rc)
		rod_warn("replication: cannot save the link of %s: %s", l->group, strerror(-rc));
	return rc;
}

static int load_link(void *arg, const char *key, const void *val, size_t len)
{
	struct rod_repl *r = arg;
	json_t *o = json_loadb(val, len, 0, NULL);
	struct link *l = calloc(1, sizeof(*l));
	const char *g = jstr(o, "group"), *sec = jstr(o, "secret");
	if (!o || !l || !g || !sec || rod_unhex(sec, l->secret, 32)) {
		rod_warn("replication: skipping unreadable link record %s", key);
		json_decref(o);
		free(l);
		return 0;
	}
	snprintf(l->group, sizeof(l->group), "%s", g);
	snprintf(l->to, sizeof(l->to), "%s", jstr(o, "to") ? jstr(o, "to") : "");
	snprintf(l->key_id, sizeof(l->key_id), "%s", jstr(o, "key_id") ? jstr(o, "key_id") : "");
	snprintf(l->last, sizeof(l->last), "%s", jstr(o, "last") ? jstr(o, "last") : "");
	snprintf(l->pending, sizeof(l->pending), "%s", jstr(o, "pending") ? jstr(o, "pending") : "");
	snprintf(l->next, sizeof(l->next), "%s", jstr(o, "next") ? jstr(o, "next") : "");
	snprintf(l->target_name, sizeof(l->target_name), "%s", jstr(o, "target_name") ? jstr(o, "target_name") : "");
	l->bwlimit = ctl_jint(o, "bwlimit");
	l->last_ns = ctl_jint(o, "last_ns");
	l->last_bytes = ctl_jint(o, "last_bytes");
	l->last_done_ns = ctl_jint(o, "last_done_ns");
	l->force_full = json_is_true(json_object_get(o, "force_full"));
	l->last_members = json_incref(json_object_get(o, "last_members"));
	if (!json_is_object(l->last_members)) {
		json_decref(l->last_members);
		l->last_members = json_object();
	}
	snprintf(l->state, sizeof(l->state), "%s", l->pending[0] ? "transferring" : "idle");
	json_decref(o);
	struct link **nl = realloc(r->links, (r->n_links + 1) * sizeof(*nl));
	if (!nl) {
		link_free(l);
		return -ENOMEM;
	}
	r->links = nl;
	r->links[r->n_links++] = l;
	return 0;
}

static void link_set_state(struct rod_repl *r, const char *group, const char *state, const char *error)
{
	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, group);
	if (l) {
		snprintf(l->state, sizeof(l->state), "%s", state);
		snprintf(l->error, sizeof(l->error), "%s", error ? error : "");
	}
	pthread_mutex_unlock(&r->lock);
}

/* ---- the sender ---------------------------------------------------------------------------------- */

struct ext {
	uint64_t off, len;
	enum rod_diff_kind kind;
};

struct collect {
	struct ext *v;
	size_t n, cap;
	uint64_t data_bytes;
	uint64_t batch;                 /* data bytes per acknowledged cursor */
	bool count_only;                /* pre-pass: only sum the data bytes */
};

static int collect_cb(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind)
{
	struct collect *c = arg;
	if (kind == ROD_DIFF_DATA)
		c->data_bytes += len;
	if (c->count_only)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct ext *nv = realloc(c->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		c->v = nv;
		c->cap = cap;
	}
	c->v[c->n++] = (struct ext){ off, len, kind };
	return c->data_bytes >= c->batch || c->n >= BATCH_EXTENTS ? 1 : 0;
}

struct xfer_stats {
	uint64_t data_grains, ref_grains, resent_grains, zero_extents, payload_bytes, plain_bytes;
	uint64_t done, total;
	double diff_s;
};

/* One member snapshot of a transfer being sent. */
struct member {
	const char *volume, *snap, *base;
	uint64_t size;
	uint32_t block_size;
};

struct sender {
	struct rod_repl *r;
	struct conn *c;
	struct rod_job *job;
	struct peer_tab *sent;          /* chunk ids this target acknowledged */
	struct u64map batch;            /* sent as data since the last acknowledgement */
	uint8_t *ack;                   /* chunk ids to record at the next acknowledgement */
	size_t n_ack, cap_ack;
	struct xfer_stats *st;
};

static bool sender_known(struct sender *s, uint64_t chunk)
{
	bool k;
	pthread_mutex_lock(&s->r->lock);
	k = s->sent && map_find(&s->sent->map, chunk) >= 0;
	pthread_mutex_unlock(&s->r->lock);
	return k || map_find(&s->batch, chunk) >= 0;
}

static int send_grain(struct sender *s, struct rod_vol *v, uint64_t off, bool force_data)
{
	struct rod_grain_raw raw;
	uint8_t hdr[21], plain[ROD_GRAIN], z[ROD_GRAIN];
	int rc = rod_vol_read_raw(v, off, &raw);
	if (rc)
		return rc;
	if (raw.kind != ROD_DIFF_DATA) {
		rod_put_be64(hdr, off);
		rod_put_be64(hdr + 8, ROD_GRAIN);
		hdr[16] = (uint8_t)raw.kind;
		s->st->zero_extents++;
		return conn_put(s->c, M_EXTENT, hdr, 17, NULL, 0);
	}
	if (!force_data && sender_known(s, raw.chunk_id)) {
		rod_put_be64(hdr, off);
		rod_put_be64(hdr + 8, raw.chunk_id);
		s->st->ref_grains++;
		return conn_put(s->c, M_REF, hdr, 16, NULL, 0);
	}
	const uint8_t *payload = raw.data;
	uint8_t comp = raw.comp;
	uint32_t len = raw.len;
	/* zstd -1 when it beats what is stored (LZ4 or nothing) */
	if (raw.comp == ROD_RAW_COMP_NONE || raw.comp == ROD_RAW_COMP_LZ4) {
		const uint8_t *src = raw.data;
		if (raw.comp == ROD_RAW_COMP_LZ4) {
			if ((rc = rod_grain_decompress(raw.comp, raw.data, raw.len, plain)))
				return rc;
			src = plain;
		}
		uint32_t zl = rod_grain_compress_zstd(src, z);
		if (zl && zl < len) {
			payload = z;
			comp = ROD_RAW_COMP_ZSTD;
			len = zl;
		}
	}
	rod_put_be64(hdr, off);
	rod_put_be64(hdr + 8, raw.chunk_id);
	hdr[16] = comp;
	rod_put_be32(hdr + 17, len);
	s->st->data_grains += !force_data;
	s->st->resent_grains += force_data;
	s->st->payload_bytes += len;
	s->st->plain_bytes += ROD_GRAIN;
	if (map_find(&s->batch, raw.chunk_id) < 0) {
		map_put(&s->batch, raw.chunk_id, NULL);
		if (s->n_ack == s->cap_ack) {
			size_t cap = s->cap_ack ? s->cap_ack * 2 : 4096;
			uint8_t *na = realloc(s->ack, cap * 8);
			if (!na)
				return -ENOMEM;
			s->ack = na;
			s->cap_ack = cap;
		}
		rod_put_be64(s->ack + s->n_ack++ * 8, raw.chunk_id);
	}
	return conn_put(s->c, M_DATA, hdr, 21, payload, len);
}

/* SYNC cursor; resend what the target could not apply by reference, until it takes the
 * cursor. Then the acknowledged chunk ids are recorded for this target. */
static int send_sync(struct sender *s, struct rod_vol *v, uint64_t cursor)
{
	uint8_t b[8];
	int rc;
	for (int round = 0; round < 4; round++) {
		rod_put_be64(b, cursor);
		if ((rc = conn_put(s->c, M_SYNC, b, 8, NULL, 0)))
			return rc;
		json_t *o = conn_get_json(s->c, M_SYNC_R, &rc);
		if (!o)
			return rc;
		json_t *need = json_object_get(o, "need");
		if (!json_array_size(need)) {
			json_decref(o);
			if (s->sent)
				tab_append(s->r, s->sent, PFX_SENT, s->ack, s->n_ack, 8);
			s->n_ack = 0;
			map_release(&s->batch);
			return 0;
		}
		size_t i;
		json_t *x;
		json_array_foreach(need, i, x) {
			if ((rc = send_grain(s, v, (uint64_t)json_integer_value(x), true))) {
				json_decref(o);
				return rc;
			}
		}
		json_decref(o);
	}
	return -EPROTO;
}

static int send_member(struct sender *s, const struct member *m, uint64_t start)
{
	struct rod_vol *v = NULL;
	/* about one cursor a second under a bandwidth limit: little is sent twice after a kill */
	struct collect col = { .batch = s->c->bwlimit ? ROD_MIN(ROD_MAX(s->c->bwlimit, 256u << 10), BATCH_BYTES)
						      : BATCH_BYTES };
	int rc = rod_vol_open(s->r->store, m->snap, &v);
	if (rc)
		return rc;
	rc = conn_put_json(s->c, M_VOL, json_pack("{s:s, s:I}", "volume", m->volume, "start", (json_int_t)start));
	uint64_t off = start;
	while (!rc && off < m->size) {
		col.n = 0;
		col.data_bytes = 0;
		rc = rod_vol_diff(s->r->store, m->base, m->snap, off, collect_cb, &col);
		if (rc < 0)
			break;
		rc = 0;
		if (!col.n)
			break;
		for (size_t i = 0; !rc && i < col.n; i++) {
			const struct ext *e = &col.v[i];
			if (e->kind != ROD_DIFF_DATA) {
				uint8_t hdr[17];
				rod_put_be64(hdr, e->off);
				rod_put_be64(hdr + 8, e->len);
				hdr[16] = (uint8_t)e->kind;
				s->st->zero_extents++;
				rc = conn_put(s->c, M_EXTENT, hdr, 17, NULL, 0);
				continue;
			}
			for (uint64_t g = e->off; !rc && g < e->off + e->len; g += ROD_GRAIN) {
				rc = send_grain(s, v, g, false);
				s->st->done += ROD_GRAIN;
				if (!rc && (s->st->data_grains + s->st->ref_grains) % 2048 == 0) {
					rod_job_progress(s->job, s->st->done, s->st->total);
					if (rod_job_cancelled(s->job))
						rc = -ECANCELED;
				}
			}
		}
		if (rc)
			break;
		off = col.v[col.n - 1].off + col.v[col.n - 1].len;
		rc = send_sync(s, v, off < m->size ? off : m->size);
		rod_job_progress(s->job, s->st->done, s->st->total);
	}
	if (!rc)
		rc = send_sync(s, v, m->size); /* the member is complete */
	free(col.v);
	rod_vol_close(v);
	return rc;
}

/* One attempt at the pending transfer of group. 0 done (or nothing to do), -EAGAIN try
 * again later (network), other: failed for good (*err says why). */
static int xfer_once(struct rod_repl *r, struct rod_job *job, const char *group, struct xfer_stats *st,
		     json_t **result, char *err, size_t elen)
{
	char to[256], key_id[17], pending[ROD_NAME_MAX], last[ROD_NAME_MAX], suffix[ROD_NAME_MAX];
	uint8_t secret[32];
	uint64_t bwlimit, created = 0;
	bool full;
	json_t *last_members, *members = NULL;
	int rc;

	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, group);
	if (!l || !l->pending[0]) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	snprintf(to, sizeof(to), "%s", l->to);
	snprintf(key_id, sizeof(key_id), "%s", l->key_id);
	memcpy(secret, l->secret, 32);
	bwlimit = l->bwlimit;
	snprintf(pending, sizeof(pending), "%s", l->pending);
	snprintf(last, sizeof(last), "%s", l->last);
	full = l->force_full || !l->last[0];
	last_members = json_deep_copy(l->last_members);
	pthread_mutex_unlock(&r->lock);

	rc = rod_pg_snap_get(r->pg, group, pending, suffix, sizeof(suffix), &created, &members);
	if (rc) {
		json_decref(last_members);
		snprintf(err, elen, "group snapshot %s of %s is gone (%s)", pending, group, strerror(-rc));
		return -ENOENT;
	}
	size_t n = json_array_size(members);
	struct member *mem = calloc(n + 1, sizeof(*mem));
	json_t *hm = json_array();
	if (!mem) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(members, i);
		struct rod_vol_info vi;
		mem[i].volume = jstr(m, "volume");
		mem[i].snap = jstr(m, "snapshot");
		if (!mem[i].volume || !mem[i].snap || rod_vol_info_get(r->store, mem[i].snap, &vi)) {
			snprintf(err, elen, "member snapshot %s of %s is gone", mem[i].snap ? mem[i].snap : "?", pending);
			rc = -ENOENT;
			goto out;
		}
		mem[i].size = vi.size;
		mem[i].block_size = vi.block_size;
		const char *b = full ? NULL : jstr(last_members, mem[i].volume);
		struct rod_vol_info bi;
		mem[i].base = b && rod_vol_info_get(r->store, b, &bi) == 0 && !bi.destroyed ? b : NULL;
		json_array_append_new(hm, json_pack("{s:s, s:I, s:i, s:b}", "volume", mem[i].volume, "size",
						    (json_int_t)vi.size, "block_size", (int)vi.block_size, "full",
						    mem[i].base == NULL));
	}

	const struct rod_array_identity *id = rod_store_identity(r->store);
	char idhex[33];
	rod_hex(id->id, 16, idhex);
	struct conn c = { .fd = -1 };
	uint64_t w0 = 0;
	rc = conn_connect(&c, to, key_id, secret, err, elen);
	if (rc == -EINVAL || rc == -EACCES)
		goto out_conn;
	if (rc) {
		rc = -EAGAIN;
		goto out_conn;
	}
	c.bwlimit = bwlimit;
	c.t0 = rod_now_ns();
	c.job = job;
	w0 = conn_wire_out(&c);
	rc = conn_put_json(&c, M_HELLO,
			   json_pack("{s:i, s:s, s:s, s:s, s:s, s:s?, s:b, s:I, s:O}", "proto", PROTO_VERSION, "source_id",
				     idhex, "source", id->name, "group", group, "suffix", suffix, "base",
				     full ? NULL : last, "full", full, "created_ns", (json_int_t)created, "members", hm));
	json_t *hr = rc ? NULL : conn_get_json(&c, M_HELLO_R, &rc);
	if (!hr) {
		char e[160];
		ssl_errors(e, sizeof(e));
		snprintf(err, elen, "no answer from %.100s (%s; wrong replication key?): %s", to, strerror(-rc), e);
		rc = rc == -ECANCELED ? rc : -EAGAIN;
		goto out_conn;
	}
	if (jstr(hr, "error")) {
		const char *e = jstr(hr, "error");
		snprintf(err, elen, "target %s refused the transfer: %s", to, e);
		if (json_is_true(json_object_get(hr, "need_full"))) {
			pthread_mutex_lock(&r->lock);
			if ((l = link_find(r, group))) {
				l->force_full = true;
				link_save(r, l);
			}
			pthread_mutex_unlock(&r->lock);
			rc = -EAGAIN;
		} else {
			rc = -EPROTO;
		}
		json_decref(hr);
		goto out_conn;
	}
	const char *tname = jstr(hr, "target"), *tid = jstr(hr, "target_id");
	bool committed = json_is_true(json_object_get(hr, "committed"));
	json_t *cursors = json_object_get(hr, "cursors");
	pthread_mutex_lock(&r->lock);
	if ((l = link_find(r, group)) && tname)
		snprintf(l->target_name, sizeof(l->target_name), "%s", tname);
	struct peer_tab *sent = tid && strlen(tid) == 32 ? peer_get(&r->sent, tid, false) : NULL;
	pthread_mutex_unlock(&r->lock);
	link_set_state(r, group, "transferring", NULL);

	if (!committed) {
		/* progress: the data still to send (a metadata walk: the engine's diff time) */
		uint64_t t0 = rod_now_ns();
		st->total = st->done = 0;
		for (size_t i = 0; i < n; i++) {
			struct collect cc = { .count_only = true };
			uint64_t start = (uint64_t)json_integer_value(json_object_get(cursors, mem[i].volume));
			if (start < mem[i].size && rod_vol_diff(r->store, mem[i].base, mem[i].snap, start, collect_cb, &cc) >= 0)
				st->total += cc.data_bytes;
		}
		st->diff_s = (double)(rod_now_ns() - t0) / 1e9;
		rod_job_progress(job, 0, st->total);
		struct sender s = { .r = r, .c = &c, .job = job, .sent = sent, .st = st };
		for (size_t i = 0; !rc && i < n; i++) {
			uint64_t start = (uint64_t)json_integer_value(json_object_get(cursors, mem[i].volume));
			if (start < mem[i].size || !json_object_get(cursors, mem[i].volume))
				rc = send_member(&s, &mem[i], start);
		}
		map_release(&s.batch);
		free(s.ack);
		json_t *cr = NULL;
		if (!rc && !(rc = conn_put_json(&c, M_COMMIT, json_object())))
			cr = conn_get_json(&c, M_COMMIT_R, &rc);
		if (cr && !json_is_true(json_object_get(cr, "ok"))) {
			snprintf(err, elen, "target %s could not commit: %s", to, jstr(cr, "error") ? jstr(cr, "error") : "?");
			rc = -EIO;
		}
		json_decref(cr);
		if (rc && rc != -EIO && rc != -ECANCELED && rc != -ENOMEM) {
			if (!err[0] || rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT || rc == -EPROTO)
				snprintf(err, elen, "transfer to %s interrupted: %s", to, strerror(-rc));
			rc = -EAGAIN;
		}
	}
	json_decref(hr);
	if (!rc) {
		uint64_t wire = conn_wire_out(&c) - w0;
		pthread_mutex_lock(&r->lock);
		if ((l = link_find(r, group))) {
			l->cur_bytes += wire;
			snprintf(l->last, sizeof(l->last), "%s", suffix);
			json_decref(l->last_members);
			l->last_members = json_object();
			for (size_t i = 0; i < n; i++)
				json_object_set_new(l->last_members, mem[i].volume, json_string(mem[i].snap));
			l->last_ns = created;
			l->last_bytes = l->cur_bytes;
			l->last_done_ns = rod_wall_ns();
			snprintf(l->pending, sizeof(l->pending), "%s", l->next);
			l->next[0] = 0;
			l->force_full = false;
			snprintf(l->state, sizeof(l->state), "idle");
			l->error[0] = 0;
			link_save(r, l);
			*result = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b}", "group", group,
					    "snapshot", suffix, "target", to, "wire_bytes", (json_int_t)l->cur_bytes,
					    "payload_bytes", (json_int_t)st->payload_bytes, "data_grains",
					    (json_int_t)st->data_grains, "ref_grains", (json_int_t)st->ref_grains,
					    "resent_grains", (json_int_t)st->resent_grains, "zero_extents",
					    (json_int_t)st->zero_extents, "diff_seconds", st->diff_s, "already_committed",
					    committed);
			l->cur_bytes = 0;
		}
		pthread_mutex_unlock(&r->lock);
		rod_info("replication: %s.%s replicated to %s", group, suffix, to);
	} else {
		pthread_mutex_lock(&r->lock);
		if ((l = link_find(r, group)))
			l->cur_bytes += conn_wire_out(&c) - w0;
		pthread_mutex_unlock(&r->lock);
	}
out_conn:
	conn_close(&c);
out:
	json_decref(hm);
	free(mem);
	json_decref(members);
	json_decref(last_members);
	return rc;
}

/* The job of a group's transfers: runs until the link has nothing pending, retrying
 * with backoff while the target is unreachable. */
static int xfer_job(struct rod_job *j, void *arg, json_t **result, char **errp)
{
	struct xfer_arg *a = arg;
	struct rod_repl *r = a->r;
	unsigned backoff = 250;
	int rc;
	for (;;) {
		char err[512] = "";
		struct xfer_stats st = { 0 };
		json_decref(*result);
		*result = NULL;
		if (rod_job_cancelled(j)) {
			rc = -ECANCELED;
			break;
		}
		rc = xfer_once(r, j, a->group, &st, result, err, sizeof(err));
		if (rc == 0) {
			backoff = 250;
			/* a scheduled snapshot may have arrived meanwhile: one more round */
			pthread_mutex_lock(&r->lock);
			struct link *l = link_find(r, a->group);
			bool more = l && l->pending[0];
			pthread_mutex_unlock(&r->lock);
			if (more)
				continue;
			break;
		}
		if (rc == -ECANCELED)
			break;
		if (rc != -EAGAIN) {
			link_set_state(r, a->group, "failed", err);
			rod_warn("replication: transfer of %s failed: %s", a->group, err);
			*errp = strdup(err[0] ? err : strerror(-rc));
			break;
		}
		link_set_state(r, a->group, "retrying", err);
		rod_info("replication: %s: %s; retrying in %u ms", a->group, err, backoff);
		for (unsigned w = 0; w < backoff && !rod_job_cancelled(j); w += 50)
			sleep_ms(50);
		backoff = ROD_MIN(backoff * 2, BACKOFF_MAX_MS);
	}
	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, a->group);
	if (l) {
		l->job_id = 0;
		if (rc == -ECANCELED && !r->stopping) {
			/* cancelled by the administrator: forget the transfer (the target reverts
			 * the half-received one when the next transfer starts) */
			l->pending[0] = 0;
			l->cur_bytes = 0;
			snprintf(l->state, sizeof(l->state), "cancelled");
			link_save(r, l);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* Start the job for group unless one runs. Caller holds r->lock. */
static int start_job_locked(struct rod_repl *r, struct link *l, uint64_t *id)
{
	if (l->job_id) {
		if (id)
			*id = l->job_id;
		return 0;
	}
	struct xfer_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->r = r;
	snprintf(a->group, sizeof(a->group), "%s", l->group);
	int rc = rod_jobs_submit(r->jobs, "replicate", l->group, "bytes", true, xfer_job, a, free, &l->job_id);
	if (rc) {
		free(a);
		return rc;
	}
	if (id)
		*id = l->job_id;
	return 0;
}

/* ---- pg hooks ------------------------------------------------------------------------------------- */

static bool hook_keep(void *arg, const char *group, const char *suffix)
{
	struct rod_repl *r = arg;
	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, group);
	bool keep = l && (!strcmp(l->last, suffix) || !strcmp(l->pending, suffix) || !strcmp(l->next, suffix));
	pthread_mutex_unlock(&r->lock);
	return keep;
}

static void hook_snap_taken(void *arg, const char *group, const char *suffix)
{
	struct rod_repl *r = arg;
	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, group);
	if (l && !r->stopping) {
		/* a transfer in progress finishes first; the newest snapshot goes next */
		if (!l->pending[0])
			snprintf(l->pending, sizeof(l->pending), "%s", suffix);
		else
			snprintf(l->next, sizeof(l->next), "%s", suffix);
		link_save(r, l);
		start_job_locked(r, l, NULL);
	}
	pthread_mutex_unlock(&r->lock);
}

static json_t *link_json_locked(const struct link *l)
{
	uint64_t now = rod_wall_ns();
	json_t *lag = l->last_ns ? json_integer((json_int_t)((now > l->last_ns ? now - l->last_ns : 0) / NS))
				 : json_null();
	return json_pack("{s:s, s:s, s:s, s:I, s:s?, s:o, s:o, s:I, s:o, s:s?, s:s, s:s?, s:I}", "target", l->to,
			 "target_array", l->target_name, "key_id", l->key_id, "bwlimit", (json_int_t)l->bwlimit,
			 "last_snapshot", l->last[0] ? l->last : NULL, "last_snapshot_created", ctl_json_time(l->last_ns),
			 "lag_s", lag, "last_bytes", (json_int_t)l->last_bytes, "last_done", ctl_json_time(l->last_done_ns),
			 "pending", l->pending[0] ? l->pending : NULL, "state", l->state, "error",
			 l->error[0] ? l->error : NULL, "job", (json_int_t)l->job_id);
}

static json_t *hook_show(void *arg, const char *group)
{
	struct rod_repl *r = arg;
	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, group);
	json_t *o = l ? link_json_locked(l) : NULL;
	pthread_mutex_unlock(&r->lock);
	return o;
}

/* ---- pg.replicate ---------------------------------------------------------------------------------- */

static int parse_rate(const char *s, uint64_t *out)
{
	/* K/M/G powers of 1024, as rod_parse_size */
	return rod_parse_size(s, out);
}

static int m_replicate(struct rod_repl *r, json_t *params, json_t **res, char **msg)
{
	const char *group = jstr(params, "name"), *to = jstr(params, "to"), *keytext = jstr(params, "key_secret");
	json_t *jbw = json_object_get(params, "bwlimit");
	bool off = json_is_true(json_object_get(params, "off"));
	char suffix[ROD_NAME_MAX], id[17], host[256], port[16];
	uint8_t secret[32];
	uint64_t created = 0, bw = 0, job = 0;
	int rc;

	if (!group)
		return ctl_fail(msg, ROD_CTL_EINVAL, "missing parameter \"name\"");
	if (off) {
		pthread_mutex_lock(&r->lock);
		struct link *l = link_find(r, group);
		uint64_t jid = l ? l->job_id : 0;
		if (l) {
			char key[128];
			snprintf(key, sizeof(key), PFX_LINK "%s", group);
			rod_store_meta_del(r->store, key);
			for (size_t i = 0; i < r->n_links; i++)
				if (r->links[i] == l) {
					r->links[i] = r->links[--r->n_links];
					break;
				}
		}
		pthread_mutex_unlock(&r->lock);
		if (!l)
			return ctl_fail(msg, ROD_CTL_ENOENT, "protection group \"%s\" has no replication link", group);
		if (jid) { /* the job finds no link and stops */
			rod_jobs_cancel(r->jobs, jid);
			rod_jobs_wait(r->jobs, jid, 0);
		}
		link_free(l);
		rod_info("replication: link of %s removed", group);
		*res = json_pack("{s:s, s:b}", "group", group, "replication", 0);
		return 0;
	}
	rc = rod_pg_snap_get(r->pg, group, NULL, suffix, sizeof(suffix), &created, NULL);
	if (rc == -ENOENT)
		return ctl_fail(msg, ROD_CTL_ENOENT, "protection group \"%s\" not found (rodctl pg list shows groups)", group);
	if (jbw && !json_is_null(jbw)) {
		if (json_is_integer(jbw) && json_integer_value(jbw) >= 0)
			bw = (uint64_t)json_integer_value(jbw);
		else if (!json_is_string(jbw) || parse_rate(json_string_value(jbw), &bw))
			return ctl_fail(msg, ROD_CTL_EINVAL, "--bwlimit takes bytes per second with K, M or G (e.g. 50M)");
	}
	if (to && (split_hostport(to, host, sizeof(host), port, sizeof(port)) || !keytext))
		return ctl_fail(msg, ROD_CTL_EINVAL, "--to takes HOST:PORT and needs --key-file (the target's "
				"rodctl array replication-key create)");
	if (keytext && key_parse(keytext, id, sizeof(id), secret))
		return ctl_fail(msg, ROD_CTL_EINVAL, "the key file does not hold a replication key (rodrk1:ID:HEX, from "
				"rodctl array replication-key create on the target)");
	pthread_mutex_lock(&r->lock);
	bool has = link_find(r, group) != NULL;
	pthread_mutex_unlock(&r->lock);
	if (!has && !to)
		return ctl_fail(msg, ROD_CTL_EINVAL, "protection group \"%s\" has no replication link: give --to HOST:PORT "
				"--key-file F", group);
	/* the newest group snapshot, or a new one when it was replicated already */
	pthread_mutex_lock(&r->lock);
	struct link *l = link_find(r, group);
	bool need_new = rc == -ENODATA || (l && (!strcmp(l->last, suffix) || (l->last_ns && created <= l->last_ns)));
	bool to_changed = l && to && strcmp(l->to, to);
	pthread_mutex_unlock(&r->lock);
	if (to_changed)
		need_new = rc == -ENODATA; /* a new target gets the newest snapshot as its baseline */
	if (need_new) {
		rc = rod_pg_snap_take(r->pg, group, suffix, sizeof(suffix));
		if (rc == -ENODATA)
			return ctl_fail(msg, ROD_CTL_EINVAL, "protection group \"%s\" has no volumes (rodctl pg add)", group);
		if (rc)
			return ctl_fail(msg, ROD_CTL_EOTHER, "taking a group snapshot of %s: %s", group, strerror(-rc));
	} else if (rc) {
		return ctl_fail(msg, ROD_CTL_EOTHER, "reading the snapshots of %s: %s", group, strerror(-rc));
	}
	pthread_mutex_lock(&r->lock);
	l = link_find(r, group);
	if (!l) {
		struct link **nl = realloc(r->links, (r->n_links + 1) * sizeof(*nl));
		l = calloc(1, sizeof(*l));
		if (!nl || !l) {
			free(l);
			if (nl)
				r->links = nl;
			pthread_mutex_unlock(&r->lock);
			return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
		}
		r->links = nl;
		r->links[r->n_links++] = l;
		snprintf(l->group, sizeof(l->group), "%s", group);
		l->last_members = json_object();
	}
	if (to) {
		if (strcmp(l->to, to)) { /* another target: start over with a baseline */
			l->last[0] = 0;
			l->last_ns = 0;
			json_object_clear(l->last_members);
		}
		snprintf(l->to, sizeof(l->to), "%s", to);
		snprintf(l->key_id, sizeof(l->key_id), "%s", id);
		memcpy(l->secret, secret, 32);
	}
	if (jbw && !json_is_null(jbw))
		l->bwlimit = bw;
	if (!l->job_id || !l->pending[0])
		snprintf(l->pending, sizeof(l->pending), "%s", suffix);
	else if (strcmp(l->pending, suffix)) /* after the transfer in progress */
		snprintf(l->next, sizeof(l->next), "%s", suffix);
	snprintf(l->state, sizeof(l->state), "transferring");
	rc = link_save(r, l);
	if (!rc)
		rc = start_job_locked(r, l, &job);
	json_t *lj = link_json_locked(l);
	pthread_mutex_unlock(&r->lock);
	if (rc) {
		json_decref(lj);
		return ctl_fail(msg, ROD_CTL_EOTHER, "starting the transfer: %s", strerror(-rc));
	}
	rod_info("replication: %s -> %s: transfer of %s started (job %" PRIu64 ")", group, l->to, l->pending, job);
	*res = json_pack("{s:s, s:s, s:I, s:o}", "group", group, "snapshot", suffix, "job", (json_int_t)job,
			 "replication", lj);
	return 0;
}

/* ---- the receiver ---------------------------------------------------------------------------------- */

struct receiver {
	struct rod_repl *r;
	struct conn *c;
	char source[ROD_NAME_MAX], group[ROD_NAME_MAX], suffix[ROD_NAME_MAX];
	char xkey[256];
	json_t *rec;                    /* the xfer record */
	json_t *members;                /* from HELLO */
	struct peer_tab *fps;
	struct rod_vol *v;              /* staging volume being received */
	char vol[ROD_SNAP_NAME_MAX];
	json_t *need;                   /* offsets to resend */
	uint8_t *run;                   /* consecutive DATA grains not written yet */
	uint64_t run_off, run_len;
	uint8_t *fpents;                /* (chunk, fp) learned since the last cursor */
	size_t n_fp, cap_fp;
};

static void staging_name(const char *source, const char *vol, char *out, size_t len)
{
	snprintf(out, len, "%s:%s", source, vol);
}

/* Make every staging volume of the group read as its last complete replica (or as
 * zeros when there is none): a transfer that was abandoned half way is undone. */
static int staging_reset(struct receiver *rv, const char *last, bool unmap_all)
{
	size_t i;
	json_t *m;
	int rc = 0;
	json_array_foreach(rv->members, i, m) {
		char name[ROD_SNAP_NAME_MAX], snap[ROD_SNAP_NAME_MAX * 2];
		struct rod_vol_info vi, si;
		const char *vol = jstr(m, "volume");
		staging_name(rv->source, vol, name, sizeof(name));
		if (rod_vol_info_get(rv->r->store, name, &vi))
			continue;
		snprintf(snap, sizeof(snap), "%s.%s-%s", name, rv->group, last ? last : "");
		if (!unmap_all && last && rod_vol_info_get(rv->r->store, snap, &si) == 0) {
			if (si.size != vi.size && (rc = rod_vol_resize(rv->r->store, name, si.size)))
				return rc;
			if ((rc = rod_vol_revert(rv->r->store, name, snap)))
				return rc;
			rod_info("replication: %s reverted to %s (an unfinished transfer was abandoned)", name, snap);
		} else {
			struct rod_vol *v;
			if ((rc = rod_vol_open(rv->r->store, name, &v)))
				return rc;
			rc = rod_vol_unmap(v, 0, rod_vol_size(v));
			if (!rc)
				rc = rod_vol_flush(v);
			rod_vol_close(v);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int staging_prepare(struct receiver *rv)
{
	size_t i;
	json_t *m;
	json_array_foreach(rv->members, i, m) {
		char name[ROD_SNAP_NAME_MAX];
		struct rod_vol_info vi;
		const char *vol = jstr(m, "volume");
		uint64_t size = ctl_jint(m, "size");
		uint32_t bs = (uint32_t)ctl_jint(m, "block_size");
		int rc;
		staging_name(rv->source, vol, name, sizeof(name));
		rc = rod_vol_info_get(rv->r->store, name, &vi);
		if (rc == -ENOENT || (!rc && vi.destroyed)) {
			if ((rc = rod_vol_create(rv->r->store, name, size, bs ? bs : 512, &vi)))
				return rc;
			rod_info("replication: staging volume %s created", name);
		} else if (rc) {
			return rc;
		} else if (vi.size != size && (rc = rod_vol_resize(rv->r->store, name, size))) {
			return rc;
		}
		/* received data is made durable at each cursor (one flush), not per grain */
		rod_vol_set_cache(rv->r->store, name, ROD_CACHE_WRITE_BACK);
	}
	return 0;
}

static bool hello_valid(json_t *h)
{
	size_t i;
	json_t *m;
	const char *src = jstr(h, "source"), *g = jstr(h, "group"), *sfx = jstr(h, "suffix"), *sid = jstr(h, "source_id");
	if (!src || !rod_name_valid(src) || !g || !rod_name_valid(g) || !sfx || !rod_name_valid(sfx) || !sid ||
	    strlen(sid) != 32 || !json_is_array(json_object_get(h, "members")))
		return false;
	json_array_foreach(json_object_get(h, "members"), i, m) {
		const char *v = jstr(m, "volume");
		uint64_t bs = ctl_jint(m, "block_size");
		if (!v || !rod_name_valid(v) || (bs != 512 && bs != 4096) || ctl_jint(m, "size") % bs)
			return false;
	}
	return true;
}

static int recv_flush_cursor(struct receiver *rv, uint64_t cursor)
{
	int rc = rv->v ? rod_vol_flush(rv->v) : 0;
	if (rc)
		return rc;
	json_object_set_new(json_object_get(rv->rec, "cursors"), rv->vol + strlen(rv->source) + 1,
			    json_integer((json_int_t)cursor));
	if ((rc = ctl_put_json(rv->r->store, rv->xkey, rv->rec)))
		return rc;
	if (rv->fps)
		tab_append(rv->r, rv->fps, PFX_FP, rv->fpents, rv->n_fp, 40);
	rv->n_fp = 0;
	return 0;
}

static int recv_note_fp(struct receiver *rv, uint64_t chunk, const uint8_t *grain)
{
	if (rv->n_fp == rv->cap_fp) {
		size_t cap = rv->cap_fp ? rv->cap_fp * 2 : 4096;
		uint8_t *n = realloc(rv->fpents, cap * 40);
		if (!n)
			return -ENOMEM;
		rv->fpents = n;
		rv->cap_fp = cap;
	}
	uint8_t *e = rv->fpents + rv->n_fp++ * 40;
	rod_put_be64(e, chunk);
	rod_store_fingerprint(rv->r->store, grain, e + 8);
	/* usable by references later in this same stream */
	pthread_mutex_lock(&rv->r->lock);
	map_put(&rv->fps->map, chunk, e + 8);
	pthread_mutex_unlock(&rv->r->lock);
	return 0;
}

static int recv_commit(struct receiver *rv, char *err, size_t elen)
{
	size_t n = json_array_size(rv->members), i;
	const char **names = calloc(n + 1, sizeof(*names));
	char (*buf)[ROD_SNAP_NAME_MAX] = calloc(n + 1, sizeof(*buf));
	char full[ROD_NAME_MAX * 2], key[384];
	json_t *m, *out = json_array();
	int rc = 0;
	if (!names || !buf) {
		rc = -ENOMEM;
		goto done;
	}
	snprintf(full, sizeof(full), "%s-%s", rv->group, rv->suffix);
	json_array_foreach(rv->members, i, m) {
		staging_name(rv->source, jstr(m, "volume"), buf[i], sizeof(buf[i]));
		names[i] = buf[i];
		uint64_t cur = ctl_jint(json_object_get(rv->rec, "cursors"), jstr(m, "volume"));
		if (cur < ctl_jint(m, "size")) {
			snprintf(err, elen, "member %s is not complete", jstr(m, "volume"));
			rc = -EINVAL;
			goto done;
		}
	}
	rc = rod_vol_snapshot_group(rv->r->store, names, n, full, NULL);
	if (rc == -EEXIST) {
		/* committed before the record was written (crash): finish it */
		rc = 0;
		for (i = 0; i < n && !rc; i++) {
			char snap[ROD_SNAP_NAME_MAX * 2];
			struct rod_vol_info si;
			snprintf(snap, sizeof(snap), "%s.%s", names[i], full);
			rc = rod_vol_info_get(rv->r->store, snap, &si);
		}
	}
	if (rc) {
		snprintf(err, elen, "group snapshot of the staging volumes: %s", strerror(-rc));
		goto done;
	}
	for (i = 0; i < n; i++) {
		char snap[ROD_SNAP_NAME_MAX * 2];
		snprintf(snap, sizeof(snap), "%s.%s", names[i], full);
		json_array_append_new(out, json_pack("{s:s, s:s}", "volume", names[i], "snapshot", snap));
	}
	json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:I, s:O}", "source", rv->source, "group", rv->group, "suffix",
				rv->suffix, "created_ns", (json_int_t)ctl_jint(rv->rec, "created_ns"), "received_ns",
				(json_int_t)rod_wall_ns(), "members", out);
	snprintf(key, sizeof(key), PFX_REPLICA "%s/%s/%s", rv->source, rv->group, rv->suffix);
	rc = rec ? ctl_put_json(rv->r->store, key, rec) : -ENOMEM;
	json_decref(rec);
	if (!rc) {
		json_object_set_new(rv->rec, "committed", json_true());
		json_object_set_new(rv->rec, "last", json_string(rv->suffix));
		rc = ctl_put_json(rv->r->store, rv->xkey, rv->rec);
	}
	if (rc)
		snprintf(err, elen, "recording the replica: %s", strerror(-rc));
	else
		rod_info("replication: replica %s:%s.%s complete (%zu volumes)", rv->source, rv->group, rv->suffix, n);
done:
	json_decref(out);
	free(names);
	free(buf);
	return rc;
}

static int recv_hello(struct receiver *rv, json_t *h, json_t **reply)
{
	struct rod_repl *r = rv->r;
	const char *base = jstr(h, "base");
	bool full = json_is_true(json_object_get(h, "full"));
	int rc;
	snprintf(rv->source, sizeof(rv->source), "%s", jstr(h, "source"));
	snprintf(rv->group, sizeof(rv->group), "%s", jstr(h, "group"));
	snprintf(rv->suffix, sizeof(rv->suffix), "%s", jstr(h, "suffix"));
	rv->members = json_incref(json_object_get(h, "members"));
	snprintf(rv->xkey, sizeof(rv->xkey), PFX_XFER "%s/%s", rv->source, rv->group);
	pthread_mutex_lock(&r->lock);
	rv->fps = peer_get(&r->fps, jstr(h, "source_id"), true);
	pthread_mutex_unlock(&r->lock);
	json_t *rec = get_json(r->store, rv->xkey);
	const char *last = rec ? jstr(rec, "last") : NULL;
	if (last && !*last)
		last = NULL;
	if (rec && !strcmp(jstr(rec, "suffix") ? jstr(rec, "suffix") : "", rv->suffix) &&
	    json_is_true(json_object_get(rec, "full")) == full) {
		/* the same transfer again: resume at the durable cursors (or it is done) */
		rv->rec = rec;
		if (!json_is_true(json_object_get(rec, "committed")) && (rc = staging_prepare(rv)))
			return rc;
	} else {
		/* an incremental needs the last complete replica of every member on this array
		 * (it may have been destroyed here since) */
		bool have_base = !full && last && base && !strcmp(last, base);
		size_t i;
		json_t *m;
		json_array_foreach(rv->members, i, m) {
			char snap[ROD_SNAP_NAME_MAX * 2];
			struct rod_vol_info si;
			snprintf(snap, sizeof(snap), "%s:%s.%s-%s", rv->source, jstr(m, "volume"), rv->group,
				 last ? last : "");
			if (have_base && (rod_vol_info_get(r->store, snap, &si) || si.destroyed))
				have_base = false;
		}
		if (!full && !have_base) {
			json_decref(rec);
			*reply = json_pack("{s:s, s:b}", "error", "the target does not hold the base snapshot; sending all",
					   "need_full", 1);
			return 0;
		}
		bool abandoned = rec && !json_is_true(json_object_get(rec, "committed"));
		if ((rc = staging_prepare(rv)))
			goto fail;
		if ((abandoned || full) && (rc = staging_reset(rv, last, full)))
			goto fail;
		rv->rec = json_pack("{s:s, s:s?, s:b, s:b, s:s?, s:I, s:o}", "suffix", rv->suffix, "base", base, "full",
				    full, "committed", 0, "last", last, "created_ns", (json_int_t)ctl_jint(h, "created_ns"),
				    "cursors", json_object());
		json_decref(rec);
		rec = NULL;
		if (!rv->rec || (rc = ctl_put_json(r->store, rv->xkey, rv->rec)))
			goto fail;
		rod_info("replication: receiving %s:%s.%s (%s)", rv->source, rv->group, rv->suffix,
			 full ? "full" : "incremental");
	}
	const struct rod_array_identity *id = rod_store_identity(r->store);
	char idhex[33];
	rod_hex(id->id, 16, idhex);
	*reply = json_pack("{s:s, s:s, s:b, s:O}", "target", id->name, "target_id", idhex, "committed",
			   json_is_true(json_object_get(rv->rec, "committed")), "cursors",
			   json_object_get(rv->rec, "cursors"));
	return 0;
fail:
	json_decref(rec);
	return rc ? rc : -ENOMEM;
}

#define RUN_MAX (1u << 20)

/* Write the run of consecutive DATA grains collected so far (one engine write, not one
 * per grain). */
static int recv_run_flush(struct receiver *rv)
{
	int rc = 0;
	if (rv->run_len)
		rc = rod_vol_write(rv->v, rv->run_off, rv->run, rv->run_len, 0);
	rv->run_len = 0;
	return rc;
}

static int recv_stream(struct receiver *rv)
{
	struct conn *c = rv->c;
	uint8_t grain[ROD_GRAIN];
	int rc;
	for (;;) {
		uint8_t t;
		size_t len;
		if ((rc = conn_get(c, &t, &len)))
			return rc;
		const uint8_t *p = c->rbuf;
		if (t != M_DATA && (rc = recv_run_flush(rv)))
			return rc;
		switch (t) {
		case M_VOL: {
			json_t *o = json_loadb((char *)p, len, 0, NULL);
			const char *vol = jstr(o, "volume");
			bool member = false;
			size_t i;
			json_t *m;
			json_array_foreach(rv->members, i, m)
				member |= vol && !strcmp(jstr(m, "volume"), vol);
			if (!member) {
				json_decref(o);
				return -EPROTO;
			}
			if (rv->v)
				rod_vol_close(rv->v);
			rv->v = NULL;
			staging_name(rv->source, vol, rv->vol, sizeof(rv->vol));
			json_decref(o);
			/* by id: the live volume of that name (a destroyed one may share it) */
			struct rod_vol_info vi;
			if ((rc = rod_vol_info_get(rv->r->store, rv->vol, &vi)))
				return rc;
			if (vi.destroyed)
				return -ENOENT;
			if ((rc = rod_vol_open_id(rv->r->store, vi.id, &rv->v)))
				return rc;
			break;
		}
		case M_DATA: {
			if (len < 21 || !rv->v)
				return -EPROTO;
			uint64_t off = rod_get_be64(p), chunk = rod_get_be64(p + 8);
			uint8_t comp = p[16];
			uint32_t plen = rod_get_be32(p + 17);
			if (plen != len - 21 || plen > ROD_GRAIN || off % ROD_GRAIN)
				return -EPROTO;
			if (comp == ROD_RAW_COMP_NONE) {
				if (plen != ROD_GRAIN)
					return -EPROTO;
				memcpy(grain, p + 21, ROD_GRAIN);
			} else if (rod_grain_decompress(comp, p + 21, plen, grain)) {
				return -EPROTO;
			}
			if (rv->run_len && (off != rv->run_off + rv->run_len || rv->run_len >= RUN_MAX) &&
			    (rc = recv_run_flush(rv)))
				return rc;
			if (!rv->run && !(rv->run = malloc(RUN_MAX)))
				return -ENOMEM;
			if (!rv->run_len)
				rv->run_off = off;
			memcpy(rv->run + rv->run_len, grain, ROD_GRAIN);
			rv->run_len += ROD_GRAIN;
			if ((rc = recv_note_fp(rv, chunk, grain)))
				return rc;
			break;
		}
		case M_REF: {
			if (len != 16 || !rv->v)
				return -EPROTO;
			uint64_t off = rod_get_be64(p), chunk = rod_get_be64(p + 8);
			uint8_t fp[32];
			pthread_mutex_lock(&rv->r->lock);
			long f = map_find(&rv->fps->map, chunk);
			if (f >= 0)
				memcpy(fp, rv->fps->map.vals[f], 32);
			pthread_mutex_unlock(&rv->r->lock);
			rc = f >= 0 ? rod_vol_write_fp(rv->v, off, fp, 0) : -ENOENT;
			if (rc == 0) {
				/* read it back: a reference must give the very grain (a chunk freed by
				 * GC here was seen to read as zeros after a successful write_fp) */
				uint8_t back[32];
				rc = rod_vol_read(rv->v, off, grain, ROD_GRAIN);
				if (!rc) {
					rod_store_fingerprint(rv->r->store, grain, back);
					if (memcmp(back, fp, 32))
						rc = -ENOENT;
				}
				if (rc && rc != -ENOENT)
					return rc;
			}
			if (rc == -ENOENT) /* unknown here or garbage-collected: ask for the data */
				json_array_append_new(rv->need, json_integer((json_int_t)off));
			else if (rc)
				return rc;
			break;
		}
		case M_EXTENT: {
			if (len != 17 || !rv->v)
				return -EPROTO;
			uint64_t off = rod_get_be64(p), elen = rod_get_be64(p + 8);
			rc = p[16] == ROD_DIFF_UNMAP ? rod_vol_unmap(rv->v, off, elen) : rod_vol_zero(rv->v, off, elen);
			if (rc)
				return rc;
			break;
		}
		case M_SYNC: {
			if (len != 8 || !rv->v)
				return -EPROTO;
			json_t *reply;
			if (json_array_size(rv->need)) {
				/* "o" hands the list over ("O" would share it, and clearing it
				 * afterwards sent an empty list: nothing was ever resent) */
				reply = json_pack("{s:o}", "need", rv->need);
				rv->need = json_array();
			} else {
				uint64_t cur = rod_get_be64(p);
				if ((rc = recv_flush_cursor(rv, cur)))
					return rc;
				reply = json_pack("{s:I}", "cursor", (json_int_t)cur);
			}
			if ((rc = conn_put_json(c, M_SYNC_R, reply)) || (rc = conn_flush(c)))
				return rc;
			break;
		}
		case M_COMMIT: {
			char err[256] = "";
			rc = recv_commit(rv, err, sizeof(err));
			json_t *reply = rc ? json_pack("{s:b, s:s}", "ok", 0, "error", err) : json_pack("{s:b}", "ok", 1);
			if ((rc = conn_put_json(c, M_COMMIT_R, reply)) || (rc = conn_flush(c)))
				return rc;
			return 0;
		}
		default:
			return -EPROTO;
		}
	}
}

static void serve_conn(struct rod_repl *r, int fd, const char *peer)
{
	struct conn c = { .fd = fd, .stop = &r->stop };
	struct receiver rv = { .r = r, .c = &c, .need = json_array() };
	int rc;
	c.ssl = SSL_new(r->sctx);
	if (!c.ssl) {
		close(fd);
		json_decref(rv.need);
		return;
	}
	SSL_set_fd(c.ssl, fd);
	ERR_clear_error();
	struct timeval tv = { 30, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (SSL_accept(c.ssl) != 1) {
		char e[512];
		ssl_errors(e, sizeof(e));
		rod_warn("replication: refused a connection from %s at the TLS handshake (wrong or unknown "
			 "replication key?): %s", peer, e);
		goto out;
	}
	tv.tv_sec = 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	const char *ident = SSL_get_psk_identity(c.ssl);
	json_t *h = conn_get_json(&c, M_HELLO, &rc);
	json_t *reply = NULL;
	if (!h)
		goto out;
	if (!hello_valid(h) || ctl_jint(h, "proto") != PROTO_VERSION) {
		reply = json_pack("{s:s}", "error", "malformed or unsupported request");
	} else if ((rc = recv_hello(&rv, h, &reply))) {
		json_decref(reply);
		reply = json_pack("{s:s}", "error", strerror(-rc));
	}
	json_decref(h);
	bool go = reply && !json_object_get(reply, "error") && !json_is_true(json_object_get(reply, "committed"));
	rod_debug("replication: connection from %s (key %s)", peer, ident ? ident : "?");
	if (conn_put_json(&c, M_HELLO_R, reply) || conn_flush(&c) || !go)
		goto out;
	rc = recv_stream(&rv);
	if (rc && rc != -ECONNRESET)
		rod_warn("replication: transfer from %s (%s:%s) stopped: %s", peer, rv.source, rv.group, strerror(-rc));
	else if (rc)
		rod_info("replication: %s closed the connection mid-transfer (it resumes at the last cursor)", peer);
out:
	if (rv.v)
		rod_vol_close(rv.v);
	json_decref(rv.rec);
	json_decref(rv.members);
	json_decref(rv.need);
	free(rv.fpents);
	free(rv.run);
	conn_close(&c);
}

static void *listen_main(void *arg)
{
	struct rod_repl *r = arg;
	rod_thread_name("rod-repl");
	while (!atomic_load(&r->stop)) {
		struct pollfd p = { r->lfd, POLLIN, 0 };
		if (poll(&p, 1, 200) <= 0)
			continue;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(r->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?", peer[NI_MAXHOST + NI_MAXSERV + 2];
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
			    NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(peer, sizeof(peer), "%s:%s", host, serv);
		/* one connection at a time: transfers are long and share the same disks */
		serve_conn(r, fd, peer);
	}
	return NULL;
}

int rod_repl_listen(struct rod_repl *r, const char *addr)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
	if (split_hostport(addr, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	if (getaddrinfo(host[0] ? host : NULL, port, &hints, &ai))
		return -EADDRNOTAVAIL;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0) {
		freeaddrinfo(ai);
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 8)) {
		int e = -errno;
		freeaddrinfo(ai);
		close(fd);
		return e;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST], s[NI_MAXSERV];
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), s, sizeof(s), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(r->listen_addr, sizeof(r->listen_addr), strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, s);
	r->sctx = tls_ctx_new(true);
	if (!r->sctx) {
		close(fd);
		return -ENOMEM;
	}
	SSL_CTX_set_app_data(r->sctx, r);
	r->lfd = fd;
	if (pthread_create(&r->thread, NULL, listen_main, r)) {
		close(fd);
		r->lfd = -1;
		return -EAGAIN;
	}
	r->thread_started = true;
	rod_info("replication: listening on %s (TLS 1.3, replication keys)", r->listen_addr);
	return 0;
}

/* ---- replica.list ------------------------------------------------------------------------------------ */

struct replica_scan {
	struct rod_repl *r;
	json_t *groups;                 /* {"SRC:PG": {...}} */
};

static int scan_replica(void *arg, const char *key, const void *val, size_t len)
{
	struct replica_scan *sc = arg;
	json_t *o = json_loadb(val, len, 0, NULL);
	const char *src = jstr(o, "source"), *g = jstr(o, "group"), *sfx = jstr(o, "suffix");
	char name[ROD_NAME_MAX * 2], snap[ROD_NAME_MAX * 3];
	(void)key;
	json_t *m0 = json_array_get(json_object_get(o, "members"), 0);
	struct rod_vol_info vi;
	if (!src || !g || !sfx || !jstr(m0, "snapshot") || rod_vol_info_get(sc->r->store, jstr(m0, "snapshot"), &vi) ||
	    vi.destroyed) {
		json_decref(o); /* unreadable, or its snapshots were destroyed here */
		return 0;
	}
	snprintf(name, sizeof(name), "%s:%s", src, g);
	snprintf(snap, sizeof(snap), "%s.%s", name, sfx);
	json_t *grp = json_object_get(sc->groups, name);
	if (!grp) {
		grp = json_pack("{s:s, s:s, s:s, s:[]}", "name", name, "source_array", src, "group", g, "snapshots");
		json_object_set_new(sc->groups, name, grp);
	}
	json_array_append_new(json_object_get(grp, "snapshots"),
			      json_pack("{s:s, s:s, s:o, s:o, s:O}", "name", snap, "suffix", sfx, "created",
					ctl_json_time(ctl_jint(o, "created_ns")), "received", ctl_json_time(ctl_jint(o, "received_ns")),
					"members", json_object_get(o, "members")));
	json_decref(o);
	return 0;
}

static int scan_xfer(void *arg, const char *key, const void *val, size_t len)
{
	struct replica_scan *sc = arg;
	const char *rest = key + strlen(PFX_XFER), *slash = strchr(rest, '/');
	char name[ROD_NAME_MAX * 2];
	if (!slash || (size_t)(slash - rest) >= ROD_NAME_MAX)
		return 0;
	snprintf(name, sizeof(name), "%.*s:%s", (int)(slash - rest), rest, slash + 1);
	json_t *o = json_loadb(val, len, 0, NULL);
	if (!o)
		return 0;
	json_t *grp = json_object_get(sc->groups, name);
	if (!grp) {
		grp = json_pack("{s:s, s:s%, s:s, s:[]}", "name", name, "source_array", rest, (size_t)(slash - rest),
				"group", slash + 1, "snapshots");
		json_object_set_new(sc->groups, name, grp);
	}
	if (!json_is_true(json_object_get(o, "committed")))
		json_object_set_new(grp, "receiving", json_pack("{s:s?, s:b, s:O}", "suffix", jstr(o, "suffix"), "full",
							       json_is_true(json_object_get(o, "full")), "cursors",
							       json_object_get(o, "cursors")));
	json_decref(o);
	return 0;
}

static int m_replica_list(struct rod_repl *r, json_t *params, json_t **res, char **msg)
{
	struct replica_scan sc = { r, json_object() };
	(void)params;
	(void)msg;
	rod_store_meta_scan(r->store, PFX_REPLICA, scan_replica, &sc);
	rod_store_meta_scan(r->store, PFX_XFER, scan_xfer, &sc);
	json_t *arr = json_array(), *g;
	const char *k;
	json_object_foreach(sc.groups, k, g) {
		json_object_set_new(g, "snapshot_count", json_integer((json_int_t)json_array_size(json_object_get(g, "snapshots"))));
		json_array_append(arr, g);
	}
	json_decref(sc.groups);
	*res = json_pack("{s:s?, s:o}", "listen", r->listen_addr[0] ? r->listen_addr : NULL, "groups", arr);
	return 0;
}

/* replica.restore {name: "SRC:PG", snapshot: SUFFIX, clone_prefix}: clone every member
 * snapshot of a replica group snapshot into PREFIX<volume> (the source's volume name),
 * as pg restore does on the source. Names are checked first; a failure half way
 * removes the clones made. */
static int m_replica_restore(struct rod_repl *r, json_t *params, json_t **res, char **msg)
{
	const char *name = jstr(params, "name"), *sfx = jstr(params, "snapshot"), *prefix = jstr(params, "clone_prefix");
	char src[ROD_NAME_MAX], key[384], clone[ROD_SNAP_NAME_MAX];
	const char *colon = name ? strchr(name, ':') : NULL;
	size_t i;
	json_t *m;
	int rc = 0;
	if (!name || !sfx || !prefix)
		return ctl_fail(msg, ROD_CTL_EINVAL, "replica restore needs a replica group (SRC:PG), a snapshot suffix "
				"and --clone-prefix");
	if (!colon || (size_t)(colon - name) >= sizeof(src))
		return ctl_fail(msg, ROD_CTL_EINVAL, "\"%s\" is not a replica group name SRC:PG (rodctl replica list)", name);
	snprintf(src, sizeof(src), "%.*s", (int)(colon - name), name);
	snprintf(key, sizeof(key), PFX_REPLICA "%s/%s/%s", src, colon + 1, sfx);
	json_t *rec = get_json(r->store, key);
	if (!rec)
		return ctl_fail(msg, ROD_CTL_ENOENT, "replica %s has no snapshot \"%s\" (rodctl replica list)", name, sfx);
	json_t *members = json_object_get(rec, "members");
	json_array_foreach(members, i, m) {
		const char *vol = jstr(m, "volume"), *snap = jstr(m, "snapshot");
		const char *base = vol && strchr(vol, ':') ? strchr(vol, ':') + 1 : vol;
		struct rod_vol_info vi;
		if (!base || snprintf(clone, sizeof(clone), "%s%s", prefix, base) >= ROD_NAME_MAX || !rod_name_valid(clone))
			rc = ctl_fail(msg, ROD_CTL_EINVAL, "clone name \"%s%s\" is not a valid volume name", prefix,
				      base ? base : "?");
		else if (rod_vol_info_get(r->store, clone, &vi) == 0)
			rc = ctl_fail(msg, ROD_CTL_EEXIST, "volume \"%s\" already exists; choose another --clone-prefix",
				      clone);
		else if (!snap || rod_vol_info_get(r->store, snap, &vi) || vi.destroyed)
			rc = ctl_fail(msg, ROD_CTL_ENOENT, "member snapshot \"%s\" is gone", snap ? snap : "?");
		if (rc) {
			json_decref(rec);
			return rc;
		}
	}
	json_t *out = json_array();
	json_array_foreach(members, i, m) {
		const char *vol = jstr(m, "volume"), *snap = jstr(m, "snapshot");
		snprintf(clone, sizeof(clone), "%s%s", prefix, strchr(vol, ':') ? strchr(vol, ':') + 1 : vol);
		if ((rc = rod_vol_clone(r->store, snap, clone, NULL)))
			break;
		json_array_append_new(out, json_pack("{s:s, s:s}", "snapshot", snap, "volume", clone));
	}
	if (rc) {
		json_array_foreach(out, i, m) {
			const char *v = jstr(m, "volume");
			if (rod_vol_destroy(r->store, v) == 0)
				rod_vol_eradicate(r->store, v);
		}
		json_decref(out);
		json_decref(rec);
		return ctl_fail(msg, ROD_CTL_EOTHER, "cloning the replica snapshot: %s", strerror(-rc));
	}
	rod_info("replication: replica %s.%s cloned into %zu volumes (prefix %s)", name, sfx, json_array_size(out), prefix);
	*res = json_pack("{s:s, s:s, s:o}", "group", name, "snapshot", sfx, "clones", out);
	json_decref(rec);
	return 0;
}

/* ---- lifecycle and dispatch -------------------------------------------------------------------------- */

int rod_repl_new(struct rod_store *s, struct rod_jobs *jobs, struct rod_pg *pg, struct rod_repl **out)
{
	struct rod_repl *r = calloc(1, sizeof(*r));
	int rc;
	if (!r)
		return -ENOMEM;
	r->store = s;
	r->jobs = jobs;
	r->pg = pg;
	r->lfd = -1;
	pthread_mutex_init(&r->lock, NULL);
	struct tab_load ts = { &r->sent, false }, tf = { &r->fps, true };
	if ((rc = rod_store_meta_scan(s, PFX_KEY, load_key, r)) || (rc = rod_store_meta_scan(s, PFX_LINK, load_link, r)) ||
	    (rc = rod_store_meta_scan(s, PFX_SENT, load_sent, &ts)) || (rc = rod_store_meta_scan(s, PFX_FP, load_fp, &tf))) {
		rod_repl_free(r);
		return rc;
	}
	struct rod_pg_repl_hooks h = { r, hook_keep, hook_snap_taken, hook_show };
	rod_pg_set_repl_hooks(pg, &h);
	/* transfers that were running when rodd stopped (or was killed) go on */
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_links; i++)
		if (r->links[i]->pending[0]) {
			rod_info("replication: resuming the transfer of %s.%s to %s", r->links[i]->group,
				 r->links[i]->pending, r->links[i]->to);
			start_job_locked(r, r->links[i], NULL);
		}
	pthread_mutex_unlock(&r->lock);
	rod_info("replication: %zu keys, %zu links loaded", r->n_keys, r->n_links);
	*out = r;
	return 0;
}

void rod_repl_stop(struct rod_repl *r)
{
	if (!r || r->stopped)
		return;
	r->stopped = true;     /* once: rod_repl_free calls it again after the groups are gone */
	struct rod_pg_repl_hooks h = { 0 };
	rod_pg_set_repl_hooks(r->pg, &h);
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	size_t n = r->n_links;
	uint64_t *ids = calloc(n + 1, sizeof(*ids));
	for (size_t i = 0; ids && i < n; i++)
		ids[i] = r->links[i]->job_id;
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; ids && i < n; i++)
		if (ids[i]) {
			rod_jobs_cancel(r->jobs, ids[i]);
			rod_jobs_wait(r->jobs, ids[i], 0);
		}
	free(ids);
	atomic_store(&r->stop, true);
	if (r->thread_started) {
		pthread_join(r->thread, NULL);
		r->thread_started = false;
	}
}

void rod_repl_free(struct rod_repl *r)
{
	if (!r)
		return;
	rod_repl_stop(r);
	if (r->lfd >= 0)
		close(r->lfd);
	SSL_CTX_free(r->sctx);
	for (size_t i = 0; i < r->n_links; i++)
		link_free(r->links[i]);
	free(r->links);
	free(r->keys);
	struct peer_tab *heads[] = { r->sent, r->fps };
	for (size_t i = 0; i < ROD_ARRAY_SIZE(heads); i++)
		for (struct peer_tab *t = heads[i], *nx; t; t = nx) {
			nx = t->next;
			map_release(&t->map);
			free(t);
		}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

typedef int (*repl_fn)(struct rod_repl *r, json_t *params, json_t **res, char **msg);

static const struct {
	const char *name;
	repl_fn fn;
} repl_methods[] = {
	{ "array.replication_key.create", m_key_create },
	{ "array.replication_key.list", m_key_list },
	{ "array.replication_key.delete", m_key_delete },
	{ "pg.replicate", m_replicate },
	{ "replica.list", m_replica_list },
	{ "replica.restore", m_replica_restore },
};

int rod_repl_call(struct rod_repl *r, const char *method, json_t *params, json_t **res, char **msg)
{
	*res = NULL;
	*msg = NULL;
	if (!r)
		return ctl_fail(msg, ROD_CTL_EOTHER, "replication is not available");
	for (size_t i = 0; i < ROD_ARRAY_SIZE(repl_methods); i++)
		if (!strcmp(repl_methods[i].name, method)) {
			int rc = repl_methods[i].fn(r, params, res, msg);
			if (rc == 0 && !*res)
				return ctl_fail(msg, ROD_CTL_EOTHER, "out of memory");
			return rc;
		}
	return ctl_fail(msg, ROD_CTL_ENOMETHOD, "unknown method \"%s\"", method);
}
