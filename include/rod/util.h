/* Small helpers shared by every layer: checksums, clocks, byte order, sizes, names. */
#ifndef ROD_UTIL_H
#define ROD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ROD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ROD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ROD_ROUND_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define ROD_ROUND_DOWN(x, a) (((x) / (a)) * (a))

/* CRC32C (Castagnoli, the iSCSI polynomial) via isa-l; seed 0 for a fresh sum. */
uint32_t rod_crc32c(uint32_t seed, const void *buf, size_t len);

/* Monotonic and wall clocks. */
uint64_t rod_now_ns(void);   /* CLOCK_MONOTONIC */
uint64_t rod_wall_ns(void);  /* CLOCK_REALTIME */

/* Cryptographically random bytes (OpenSSL RAND_bytes); 0 or -EIO. */
int rod_random_bytes(void *buf, size_t len);

/* Big-endian load/store. */
static inline uint16_t rod_get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rod_get_be24(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
static inline uint32_t rod_get_be32(const uint8_t *p)
{ return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline uint64_t rod_get_be64(const uint8_t *p)
{ return (uint64_t)rod_get_be32(p) << 32 | rod_get_be32(p + 4); }
static inline void rod_put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline void rod_put_be24(uint8_t *p, uint32_t v) { p[0] = v >> 16; p[1] = v >> 8; p[2] = (uint8_t)v; }
static inline void rod_put_be32(uint8_t *p, uint32_t v)
{ p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v; }
static inline void rod_put_be64(uint8_t *p, uint64_t v) { rod_put_be32(p, v >> 32); rod_put_be32(p + 4, (uint32_t)v); }

/* Parse "10G", "512", "4k", "1.5T"? No: integers with an optional K/M/G/T suffix
 * (powers of 1024, case-insensitive, optional trailing 'B' or 'iB'). 0 or -EINVAL/-ERANGE. */
int rod_parse_size(const char *s, uint64_t *out);
/* Format bytes as "10G", "1.5G", "512"; returns buf. */
char *rod_format_size(uint64_t bytes, char *buf, size_t len);

/* DESIGN.md names: letters, digits, '-', '_', 1-63 characters. */
bool rod_name_valid(const char *name);
/* Replica volume names on a replication target: "ARRAY:NAME", both parts valid per
 * rod_name_valid (so exactly one ':'). Only the engine accepts them; the control plane
 * refuses ':' in names given by users. */
bool rod_replica_name_valid(const char *name);

/* Hex encode (lowercase) into out (2*len+1 bytes). */
void rod_hex(const void *buf, size_t len, char *out);
/* Hex decode; 0 or -EINVAL. */
int rod_unhex(const char *hex, void *out, size_t len);

/* Write a whole buffer / read a whole buffer at an offset, retrying on EINTR and
 * short transfers. 0 or -errno (-EIO on a short read past EOF). */
int rod_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int rod_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* fsync a directory (after creating, renaming or removing a file in it). 0 or -errno. */
int rod_fsync_dir(const char *dir);
/* Write dir/name atomically, mode 0600: dir/name.tmp, fsync, rename over dir/name, fsync
 * of dir. On failure the temporary file is removed and dir/name is untouched. */
int rod_write_file_atomic(const char *dir, const char *name, const void *buf, size_t len);

/* Name the calling thread (shows in top -H and gdb). */
void rod_thread_name(const char *name);

#endif
