/* Data reduction and encryption primitives (see reduce.h). */
#include "reduce.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lz4.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "rod/log.h"
#include "rod/store.h"
#include "rod/util.h"
#include "segment.h"

/* ---- per-thread contexts ---- */

/* Each thread keeps its own keyed contexts (creating them per grain costs more than
 * the work). They live in thread-local variables, which nothing frees when the
 * thread ends: a pthread key destructor does, so the store's threads leave no leak
 * behind when the store closes (LSan at clean shutdown). */
static _Thread_local EVP_MAC_CTX *tls_mac;
static _Thread_local uint64_t tls_mac_id;
static _Thread_local ZSTD_CCtx *tls_zstd;
static _Thread_local EVP_CIPHER_CTX *tls_cipher;
static _Thread_local uint8_t tls_cipher_key[RED_DEK_LEN];
static _Thread_local int tls_cipher_enc = -1;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static bool tls_key_ok;

static void tls_free(void *unused)
{
	EVP_MAC_CTX_free(tls_mac);
	tls_mac = NULL;
	ZSTD_freeCCtx(tls_zstd);
	tls_zstd = NULL;
	EVP_CIPHER_CTX_free(tls_cipher);
	tls_cipher = NULL;
	tls_cipher_enc = -1;
}

static void tls_key_init(void)
{
	tls_key_ok = pthread_key_create(&tls_key, tls_free) == 0;
}

/* Called after this thread created a context: free them all when it exits. */
static void tls_track(void)
{
	pthread_once(&tls_once, tls_key_init);
	if (tls_key_ok)
		pthread_setspecific(tls_key, (void *)1);
}

/* ---- fingerprints ---- */

struct red_fp_key {
	EVP_MAC *mac;
	EVP_MAC_CTX *tmpl;       /* keyed once; each thread works on its own copy */
	uint64_t id;             /* never reused: tells a thread's copy is of this key */
};

static _Atomic uint64_t fp_key_ids;

int red_fp_key_new(const uint8_t secret[32], struct red_fp_key **out)
{
	struct red_fp_key *k = calloc(1, sizeof(*k));
	OSSL_PARAM p[2];

	if (!k)
		return -ENOMEM;
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	p[1] = OSSL_PARAM_construct_end();
	k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	k->tmpl = k->mac ? EVP_MAC_CTX_new(k->mac) : NULL;
	k->id = ++fp_key_ids;
	if (!k->tmpl || !EVP_MAC_init(k->tmpl, secret, 32, p)) {
		red_fp_key_free(k);
		return -EIO;
	}
	*out = k;
	return 0;
}

void red_fp_key_free(struct red_fp_key *k)
{
	if (!k)
		return;
	EVP_MAC_CTX_free(k->tmpl);
	EVP_MAC_free(k->mac);
	free(k);
}

int red_fingerprint(const struct red_fp_key *k, const void *data, size_t len,
		    uint8_t fp[RED_FP_LEN])
{
	/* A copy of the keyed context per thread, re-initialised with the same key for
	 * each grain: duplicating a context per grain cost as much as the hash. */
	size_t ol = 0;
	int ok;

	if (!tls_mac || tls_mac_id != k->id) {
		EVP_MAC_CTX_free(tls_mac);
		tls_mac = EVP_MAC_CTX_dup(k->tmpl);
		tls_mac_id = k->id;
		if (!tls_mac)
			return -ENOMEM;
		tls_track();
	} else if (!EVP_MAC_init(tls_mac, NULL, 0, NULL)) {
		return -EIO;
	}
	ok = EVP_MAC_update(tls_mac, data, len) && EVP_MAC_final(tls_mac, fp, &ol, RED_FP_LEN) &&
	     ol == RED_FP_LEN;
	return ok ? 0 : -EIO;
}

/* ---- compression ---- */

/* Worth keeping: saves >= 1/8 of the input, and long enough for XTS. */
static uint32_t keep(uint32_t clen, uint32_t len)
{
	return clen >= RED_MIN_STORED && clen <= len - len / 8 ? clen : 0;
}

/* A guess, before compressing, that a grain will not save 1/8. The sample is 8 bytes at
 * every 72 (57 words, 456 bytes of a 4 KiB grain; a stride of 72 walks through every
 * offset of a 512-byte sector instead of landing on the same one, so sector or record
 * headers weigh in the sample what they weigh in the grain). It looks random when its
 * collision entropy is above 7 bits (the sum of the squared byte counts under n^2 / 2^7):
 * then no order-0 coding saves 1/8 and only repeats could; and when no word of the first
 * half equals the one 2 KiB further (a grain whose period divides 2 KiB, such as one
 * random sector written 8 times, is tried). Random, compressed or encrypted data gives
 * 7.1-7.6 bits. 0.3 us, against 0.6-1.8 us for LZ4 to fail on such a grain. On 600 MiB
 * of /usr/share/doc + /usr/lib it skips 79% of the grains LZ4 cannot shrink and loses
 * 0.016% of the bytes LZ4 saves (docs/data-reduction.md). */
#define SAMPLE_STRIDE 72u
#define SAMPLE_WORDS ((ROD_GRAIN - 8) / SAMPLE_STRIDE + 1)
#define SAMPLE_HALF ((ROD_GRAIN / 2 - 8) / SAMPLE_STRIDE + 1)

bool red_looks_random(const void *src, uint32_t len)
{
	const uint32_t n = SAMPLE_WORDS * 8;
	const uint8_t *p = src;
	uint16_t count[256] = { 0 };
	uint32_t sq = 0, same = 0;

	if (len != ROD_GRAIN)
		return false;
	for (uint32_t i = 0; i < SAMPLE_WORDS; i++) {
		uint64_t v, w;

		memcpy(&v, p + i * SAMPLE_STRIDE, 8);
		if (i < SAMPLE_HALF) {
			memcpy(&w, p + i * SAMPLE_STRIDE + ROD_GRAIN / 2, 8);
			same += v == w;
		}
		for (int j = 0; j < 8; j++, v >>= 8)
			count[(uint8_t)v]++;
	}
	for (int i = 0; i < 256; i++)
		sq += (uint32_t)count[i] * count[i];
	return sq < (n * n >> 7) && same < SAMPLE_HALF;
}

uint32_t red_lz4_compress(const void *src, uint32_t len, void *dst, uint32_t cap)
{
	if (red_looks_random(src, len))
		return 0;
	/* Room for exactly what would be kept: LZ4 gives up as soon as the output would not
	 * fit, so incompressible grains cost less than a full pass. */
	int r = LZ4_compress_default(src, dst, (int)len, (int)ROD_MIN(cap, len - len / 8));

	return r > 0 ? keep((uint32_t)r, len) : 0;
}

uint32_t red_zstd_compress(const void *src, uint32_t len, void *dst, uint32_t cap)
{
	size_t r;

	/* One context per thread: creating one per call costs more than compressing 4 KiB. */
	if (red_looks_random(src, len))
		return 0;
	if (!tls_zstd) {
		if (!(tls_zstd = ZSTD_createCCtx()))
			return 0;
		tls_track();
	}
	r = ZSTD_compressCCtx(tls_zstd, dst, cap, src, len, 1);
	return ZSTD_isError(r) ? 0 : keep((uint32_t)r, len);
}

int red_decompress(int comp, const void *src, uint32_t len, void *dst, uint32_t orig_len)
{
	if (comp == COMP_NONE) {
		if (len != orig_len)
			return -EBADMSG;
		memmove(dst, src, len);
		return 0;
	}
	if (comp == COMP_LZ4) {
		int r = LZ4_decompress_safe(src, dst, (int)len, (int)orig_len);

		return r == (int)orig_len ? 0 : -EBADMSG;
	}
	if (comp == COMP_ZSTD) {
		size_t r = ZSTD_decompress(dst, orig_len, src, len);

		return !ZSTD_isError(r) && r == orig_len ? 0 : -EBADMSG;
	}
	return -EBADMSG;
}

/* ---- encryption ---- */

static int xts(const struct red_dek *k, uint64_t chunk, uint16_t gen, const void *src,
	       void *dst, uint32_t len, int enc)
{
	/* One cipher context per thread, keyed once per data key: setting only the tweak
	 * per chunk avoids a key schedule per 4 KiB. */
	uint8_t iv[16] = { 0 };
	int ol = 0, fl = 0;

	if (len < RED_MIN_STORED)
		return -EINVAL;
	/* Tweak: chunk id (little-endian, as IEEE 1619 numbers data units) then the
	 * chunk's generation. Chunk ids are never reused; a rewrite under the same id
	 * bumps the generation. */
	for (int i = 0; i < 8; i++)
		iv[i] = (uint8_t)(chunk >> (8 * i));
	iv[8] = (uint8_t)gen;
	iv[9] = (uint8_t)(gen >> 8);
	if (!tls_cipher) {
		if (!(tls_cipher = EVP_CIPHER_CTX_new()))
			return -ENOMEM;
		tls_track();
	}
	if (tls_cipher_enc != enc || memcmp(tls_cipher_key, k->key, RED_DEK_LEN)) {
		if (!EVP_CipherInit_ex(tls_cipher, EVP_aes_256_xts(), NULL, k->key, iv, enc))
			return -EIO;
		memcpy(tls_cipher_key, k->key, RED_DEK_LEN);
		tls_cipher_enc = enc;
	} else if (!EVP_CipherInit_ex(tls_cipher, NULL, NULL, NULL, iv, enc)) {
		return -EIO;
	}
	if (!EVP_CipherUpdate(tls_cipher, dst, &ol, src, (int)len) ||
	    !EVP_CipherFinal_ex(tls_cipher, (uint8_t *)dst + ol, &fl) || (uint32_t)(ol + fl) != len)
		return -EIO;
	return 0;
}

int red_encrypt(const struct red_dek *k, uint64_t chunk, uint16_t gen, const void *src,
		void *dst, uint32_t len)
{
	return xts(k, chunk, gen, src, dst, len, 1);
}

int red_decrypt(const struct red_dek *k, uint64_t chunk, uint16_t gen, const void *src,
		void *dst, uint32_t len)
{
	return xts(k, chunk, gen, src, dst, len, 0);
}

/* ---- key files ---- */

static int fsync_dir_of(const char *path)
{
	char d[PATH_MAX];
	char *slash;

	snprintf(d, sizeof(d), "%s", path);
	slash = strrchr(d, '/');
	if (!slash)
		snprintf(d, sizeof(d), ".");
	else if (slash == d)
		d[1] = 0;
	else
		*slash = 0;
	return rod_fsync_dir(d);
}

int red_kek_create(const char *path, uint8_t kek[RED_KEK_LEN])
{
	char hex[2 * RED_KEK_LEN + 2], d[PATH_MAX];
	char *slash;
	int fd, rc;

	snprintf(d, sizeof(d), "%s", path);
	slash = strrchr(d, '/');
	if (slash && slash != d) {
		*slash = 0;
		if (mkdir(d, 0700) && errno != EEXIST)
			return -errno;
	}
	if ((rc = rod_random_bytes(kek, RED_KEK_LEN)))
		return rc;
	rod_hex(kek, RED_KEK_LEN, hex);
	hex[2 * RED_KEK_LEN] = '\n';
	hex[2 * RED_KEK_LEN + 1] = 0;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = rod_pwrite_full(fd, hex, 2 * RED_KEK_LEN + 1, 0);
	if (!rc && fsync(fd))
		rc = -errno;
	close(fd);
	if (!rc)
		rc = fsync_dir_of(path);
	if (rc)
		unlink(path);
	return rc;
}

int red_kek_load(const char *path, bool create, uint8_t kek[RED_KEK_LEN], bool *created)
{
	char buf[2 * RED_KEK_LEN + 8];
	struct stat st;
	ssize_t r;
	int fd;

	if (created)
		*created = false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create) {
		int rc = red_kek_create(path, kek);

		if (!rc && created)
			*created = true;
		return rc;
	}
	if (fd < 0)
		return -errno;
	if (!fstat(fd, &st) && (st.st_mode & 077))
		rod_warn("store: key file %s is readable by group or others (mode %o); it should be 0600",
			 path, (unsigned)(st.st_mode & 0777));
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r < 2 * RED_KEK_LEN)
		return -EINVAL;
	buf[r] = 0;
	/* 64 hex digits, optionally followed by a newline: nothing else. */
	if (r > 2 * RED_KEK_LEN && strcmp(buf + 2 * RED_KEK_LEN, "\n"))
		return -EINVAL;
	buf[2 * RED_KEK_LEN] = 0;
	if (rod_unhex(buf, kek, RED_KEK_LEN))
		return -EINVAL;
	return 0;
}

#define DEK_MAGIC "RODDKEY1"
#define DEK_FILE_LEN (8 + 4 + RED_WRAPPED_LEN + 4)

static int wrap(const uint8_t kek[RED_KEK_LEN], const uint8_t *in, size_t inl, uint8_t *out,
		bool unwrap)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int ol = 0, fl = 0, ok;

	if (!c)
		return -ENOMEM;
	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	ok = EVP_CipherInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL, unwrap ? 0 : 1) &&
	     EVP_CipherUpdate(c, out, &ol, in, (int)inl) > 0 &&
	     EVP_CipherFinal_ex(c, out + ol, &fl) > 0;
	EVP_CIPHER_CTX_free(c);
	if (!ok)
		return unwrap ? -EKEYREJECTED : -EIO;
	return (size_t)(ol + fl) == (unwrap ? inl - 8 : inl + 8) ? 0 : -EIO;
}

#define DEK_FILE "datakey"

static void dek_path(const char *dir, char *p, size_t n)
{
	snprintf(p, n, "%s/" DEK_FILE, dir);
}

int red_dek_load(const char *dir, const uint8_t kek[RED_KEK_LEN], struct red_dek *out)
{
	char path[PATH_MAX];
	uint8_t b[DEK_FILE_LEN + 1];
	ssize_t r;
	int fd, rc;

	dek_path(dir, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = read(fd, b, sizeof(b));
	close(fd);
	if (r != DEK_FILE_LEN || memcmp(b, DEK_MAGIC, 8) ||
	    rod_crc32c(0, b, DEK_FILE_LEN - 4) != rod_get_be32(b + DEK_FILE_LEN - 4))
		return -EBADMSG;
	out->gen = (uint16_t)rod_get_be32(b + 8);
	rc = wrap(kek, b + 12, RED_WRAPPED_LEN, out->key, true);
	return rc;
}

int red_dek_store(const char *dir, const uint8_t kek[RED_KEK_LEN], const struct red_dek *dek)
{
	uint8_t b[DEK_FILE_LEN];
	int rc;

	memcpy(b, DEK_MAGIC, 8);
	rod_put_be32(b + 8, dek->gen);
	if ((rc = wrap(kek, dek->key, RED_DEK_LEN, b + 12, false)))
		return rc;
	rod_put_be32(b + DEK_FILE_LEN - 4, rod_crc32c(0, b, DEK_FILE_LEN - 4));
	return rod_write_file_atomic(dir, DEK_FILE, b, sizeof(b));
}

int red_dek_create(const char *dir, const uint8_t kek[RED_KEK_LEN], struct red_dek *out)
{
	int rc;

	do {
		if ((rc = rod_random_bytes(out->key, RED_DEK_LEN)))
			return rc;
		/* XTS refuses equal halves. */
	} while (!memcmp(out->key, out->key + 32, 32));
	out->gen = 1;
	return red_dek_store(dir, kek, out);
}

/* ---- RAM fingerprint filter ---- */

static uint32_t fp_tag(const uint8_t fp[RED_FP_LEN])
{
	uint32_t t = rod_get_be32(fp);

	return t ? t : 1; /* 0 marks an empty slot */
}

int red_fpidx_init(struct red_fpidx *x, uint64_t expect)
{
	memset(x, 0, sizeof(*x));
	pthread_mutex_init(&x->m, NULL);
	x->cap = ROD_MAX(expect * 5 / 4 + 1, (uint64_t)4096);
	x->tab = calloc(x->cap, sizeof(*x->tab));
	return x->tab ? 0 : -ENOMEM;
}

void red_fpidx_destroy(struct red_fpidx *x)
{
	free(x->tab);
	x->tab = NULL;
	pthread_mutex_destroy(&x->m);
}

/* Tags keep no fingerprint bits beyond their 32; growing re-derives the slot from
 * the tag's own bits, which is what lookups after the growth use too. */
static uint64_t tag_slot(uint32_t tag, uint64_t cap)
{
	uint64_t h = (uint64_t)tag * 0x9e3779b97f4a7c15ull;

	return (uint64_t)(((unsigned __int128)h) * cap >> 64);
}

static void put_tag(uint32_t *tab, uint64_t cap, uint32_t tag)
{
	uint64_t i = tag_slot(tag, cap);

	while (tab[i] && tab[i] != tag)
		i = i + 1 == cap ? 0 : i + 1;
	tab[i] = tag;
}

int red_fpidx_add(struct red_fpidx *x, const uint8_t fp[RED_FP_LEN])
{
	uint32_t tag = fp_tag(fp);

	pthread_mutex_lock(&x->m);
	if ((x->n + 1) * 5 > x->cap * 4) {
		uint64_t nc = x->cap * 8 / 5 + 1;
		uint32_t *nt = calloc(nc, sizeof(*nt));

		if (!nt) {
			pthread_mutex_unlock(&x->m);
			return -ENOMEM;
		}
		for (uint64_t i = 0; i < x->cap; i++)
			if (x->tab[i])
				put_tag(nt, nc, x->tab[i]);
		free(x->tab);
		x->tab = nt;
		x->cap = nc;
	}
	uint64_t i = tag_slot(tag, x->cap);
	while (x->tab[i] && x->tab[i] != tag)
		i = i + 1 == x->cap ? 0 : i + 1;
	if (!x->tab[i]) {
		x->tab[i] = tag;
		x->n++;
	}
	pthread_mutex_unlock(&x->m);
	return 0;
}

bool red_fpidx_maybe(struct red_fpidx *x, const uint8_t fp[RED_FP_LEN])
{
	uint32_t tag = fp_tag(fp);
	bool hit = false;

	pthread_mutex_lock(&x->m);
	for (uint64_t i = tag_slot(tag, x->cap); x->tab[i]; i = i + 1 == x->cap ? 0 : i + 1)
		if (x->tab[i] == tag) {
			hit = true;
			break;
		}
	pthread_mutex_unlock(&x->m);
	return hit;
}

uint64_t red_fpidx_bytes(struct red_fpidx *x)
{
	pthread_mutex_lock(&x->m);
	uint64_t b = x->cap * sizeof(*x->tab);
	pthread_mutex_unlock(&x->m);
	return b;
}

uint64_t red_fpidx_count(struct red_fpidx *x)
{
	pthread_mutex_lock(&x->m);
	uint64_t n = x->n;
	pthread_mutex_unlock(&x->m);
	return n;
}
