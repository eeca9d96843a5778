/* Data reduction and encryption primitives of the engine (DESIGN.md "Chunks"):
 * fingerprints, compression, per-chunk encryption, the key files, and the RAM
 * fingerprint filter. These functions know nothing of segments or RocksDB; the write,
 * read and GC paths call them (see docs/data-reduction.md). */
#ifndef ROD_STORE_REDUCE_H
#define ROD_STORE_REDUCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RED_FP_LEN 32
/* XTS needs at least one AES block; shorter compressed results are stored raw. */
#define RED_MIN_STORED 16u
#define RED_KEK_LEN 32
#define RED_DEK_LEN 64           /* AES-256-XTS: two 256-bit keys */
#define RED_WRAPPED_LEN 72       /* AES key wrap (RFC 3394) of the 64-byte data key */

/* ---- fingerprints ---- */

/* HMAC-SHA-256 keyed by the array secret: equal grains give equal fingerprints, and a
 * fingerprint says nothing about the data to whoever lacks the secret. */
struct red_fp_key;
int red_fp_key_new(const uint8_t secret[32], struct red_fp_key **out);
void red_fp_key_free(struct red_fp_key *k);
int red_fingerprint(const struct red_fp_key *k, const void *data, size_t len,
		    uint8_t fp[RED_FP_LEN]);

/* ---- compression (types are segment.h's COMP_*) ---- */

/* True when a sample of the grain (len ROD_GRAIN) says that neither codec would save
 * 1/8 of it: the compressors below return 0 without trying. */
bool red_looks_random(const void *src, uint32_t len);
/* LZ4 of one grain into dst (cap bytes, at least ROD_GRAIN). Returns the compressed
 * length when it saves at least 1/8 of len and is at least RED_MIN_STORED bytes, else 0
 * (store the grain raw). */
uint32_t red_lz4_compress(const void *src, uint32_t len, void *dst, uint32_t cap);
/* zstd (level 1, what GC recompression uses); same rule and return as above. */
uint32_t red_zstd_compress(const void *src, uint32_t len, void *dst, uint32_t cap);
/* Decompress exactly orig_len bytes; -EBADMSG when the input is not a valid stream of
 * that length or comp is unknown. COMP_NONE copies. */
int red_decompress(int comp, const void *src, uint32_t len, void *dst, uint32_t orig_len);

/* ---- encryption ---- */

/* The data encryption key of a store, unwrapped. */
struct red_dek {
	uint8_t key[RED_DEK_LEN];
	uint16_t gen;            /* key generation written in entries (>= 1) */
};

/* AES-256-XTS of len (>= 16) bytes in place or src->dst; the tweak is built from the
 * chunk id and a per-chunk generation, so no two chunks (and no rewrite of a chunk
 * under the same id) share one. Lengths that are not a multiple of 16 use ciphertext
 * stealing. */
int red_encrypt(const struct red_dek *k, uint64_t chunk, uint16_t gen, const void *src,
		void *dst, uint32_t len);
int red_decrypt(const struct red_dek *k, uint64_t chunk, uint16_t gen, const void *src,
		void *dst, uint32_t len);

/* Key-encryption key file: 64 hex digits and a newline. create: make it (mode 0600,
 * parent directory 0700 when missing) if absent. Returns -ENOENT when absent and not
 * created, -EINVAL when malformed. */
int red_kek_load(const char *path, bool create, uint8_t kek[RED_KEK_LEN], bool *created);
/* Write a new random KEK to path (must not exist). */
int red_kek_create(const char *path, uint8_t kek[RED_KEK_LEN]);

/* The wrapped data key lives in DIR/datakey: magic, generation, AES-KW(kek, dek), CRC.
 * red_dek_load: -ENOENT when the file is absent, -EKEYREJECTED when the key file's KEK
 * does not unwrap it (wrong key file), -EBADMSG when damaged. */
int red_dek_load(const char *dir, const uint8_t kek[RED_KEK_LEN], struct red_dek *out);
/* Create a new random data key wrapped by kek (the file must not exist). */
int red_dek_create(const char *dir, const uint8_t kek[RED_KEK_LEN], struct red_dek *out);
/* Re-wrap dek with a new KEK, replacing the file atomically (tmp + fsync + rename). */
int red_dek_store(const char *dir, const uint8_t kek[RED_KEK_LEN], const struct red_dek *dek);

/* ---- RAM fingerprint filter ---- */

/* Open addressing table of 32-bit fingerprint tags (linear probing, at most 80 % full,
 * grown by 1.6x): between 5 and 8 bytes of RAM per stored chunk once past the initial
 * size. A hit only says "maybe": the caller confirms it against the full 32 bytes in
 * the fp column family. Stale tags (chunks freed by GC) only cost a RocksDB lookup. */
struct red_fpidx {
	pthread_mutex_t m;       /* guards everything below */
	uint32_t *tab;
	uint64_t cap, n;
};
int red_fpidx_init(struct red_fpidx *x, uint64_t expect);
void red_fpidx_destroy(struct red_fpidx *x);
int red_fpidx_add(struct red_fpidx *x, const uint8_t fp[RED_FP_LEN]);
bool red_fpidx_maybe(struct red_fpidx *x, const uint8_t fp[RED_FP_LEN]);
/* Bytes of RAM held by the table. */
uint64_t red_fpidx_bytes(struct red_fpidx *x);
uint64_t red_fpidx_count(struct red_fpidx *x);

#endif
