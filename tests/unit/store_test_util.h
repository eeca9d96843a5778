/* Shared set-up of the storage-engine unit tests: a store in a fresh temporary
 * directory, removed afterwards. Include after <cmocka.h>. Header only: every test
 * program is one tests/unit/test_*.c file (tests/CMakeLists.txt). */
#ifndef ROD_STORE_TEST_UTIL_H
#define ROD_STORE_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "rod/store.h"

/* A new directory /tmp/<prefix>.XXXXXX, its name into dir (room for len bytes). */
static inline void stu_mkdtemp(char *dir, size_t len, const char *prefix)
{
	snprintf(dir, len, "/tmp/%s.XXXXXX", prefix);
	assert_non_null(mkdtemp(dir));
}

/* rm -rf dir (and extra, when not NULL). */
static inline void stu_rmtree(const char *dir, const char *extra)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, extra ? extra : "");
	assert_int_equal(system(cmd), 0);
}

/* Deterministic data from seed (32-bit LCG words). */
static inline void stu_fill(void *buf, size_t len, uint32_t seed)
{
	uint32_t *p = buf;

	for (size_t i = 0; i < len / 4; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = seed ^ (uint32_t)i;
	}
}

/* Opens the store in dir (create: a new one), without the GC thread. */
static inline struct rod_store *stu_open(const char *dir, const char *array_name, bool create,
					 bool no_dedupe)
{
	struct rod_store_opts o = { .dir = dir, .create = create, .array_name = array_name,
				    .no_gc_thread = true, .no_dedupe = no_dedupe };
	struct rod_store *s = NULL;

	assert_int_equal(rod_store_open(&o, &s), 0);
	return s;
}

/* Creates volume name (512-byte blocks) and opens it. */
static inline struct rod_vol *stu_mkvol(struct rod_store *s, const char *name, uint64_t size)
{
	struct rod_vol *v;

	assert_int_equal(rod_vol_create(s, name, size, 512, NULL), 0);
	assert_int_equal(rod_vol_open(s, name, &v), 0);
	return v;
}

#endif
