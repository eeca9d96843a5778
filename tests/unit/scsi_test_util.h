/* Shared harness of the SCSI-core unit tests: a store and a target in a fresh temporary
 * directory, initiator nexuses, and one command run to completion with its sense
 * decoded. Include after <cmocka.h>. Header only: every test program is one
 * tests/unit/test_*.c file (tests/CMakeLists.txt). */
#ifndef ROD_SCSI_TEST_UTIL_H
#define ROD_SCSI_TEST_UTIL_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/scsi.h"
#include "rod/store.h"
#include "rod/util.h"

/* What a command ended with: status, sense key/ASC/ASCQ (fixed or descriptor format),
 * the sense bytes and how much data came in. */
struct scsi_res {
	uint8_t status, key, asc, ascq;
	uint8_t sense[ROD_SCSI_SENSE_MAX];
	uint8_t sense_len;
	uint32_t in_len;
};

struct scsi_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static inline void scsi_wait_done(struct rod_scsi_cmd *c)
{
	struct scsi_wait *w = c->transport_priv;

	pthread_mutex_lock(&w->mu);
	w->done++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Waits until w saw a completion. */
static inline void scsi_wait(struct scsi_wait *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

/* What completed command c ended with. */
static inline struct scsi_res scsi_res_of(const struct rod_scsi_cmd *c)
{
	struct scsi_res r;

	memset(&r, 0, sizeof(r));
	r.status = c->status;
	r.in_len = c->in_len;
	r.sense_len = c->sense_len;
	memcpy(r.sense, c->sense, c->sense_len);
	if (c->sense_len >= 14 && (c->sense[0] & 0x7f) == 0x70) {
		r.key = c->sense[2] & 0x0f;
		r.asc = c->sense[12];
		r.ascq = c->sense[13];
	} else if (c->sense_len >= 4 && (c->sense[0] & 0x7f) == 0x72) {
		r.key = c->sense[1] & 0x0f;
		r.asc = c->sense[2];
		r.ascq = c->sense[3];
	}
	return r;
}

/* Runs c (filled in by the caller; done and transport_priv are set here) and waits for
 * its one completion. */
static inline struct scsi_res scsi_exec_wait(struct rod_scsi_target *tgt, struct rod_scsi_cmd *c)
{
	struct scsi_wait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

	c->done = scsi_wait_done;
	c->transport_priv = &w;
	rod_scsi_exec(tgt, c);
	scsi_wait(&w);
	assert_int_equal(w.done, 1);
	return scsi_res_of(c);
}

/* cdb (cdb_len bytes) to lun through n, with out_len bytes of data out, or room for
 * in_cap bytes in. */
static inline struct scsi_res scsi_run(struct rod_scsi_target *tgt, struct rod_scsi_nexus *n,
				       uint64_t lun, const uint8_t *cdb, size_t cdb_len,
				       const void *out, uint32_t out_len, void *in, uint32_t in_cap)
{
	struct rod_scsi_cmd c;

	memset(&c, 0, sizeof(c));
	c.nexus = n;
	c.lun = lun;
	memcpy(c.cdb, cdb, cdb_len);
	c.cdb_len = 16;
	c.out_buf = out;
	c.out_len = out_len;
	c.exp_len = out ? out_len : in_cap;
	c.in_buf = in;
	c.in_cap = in_cap;
	c.dir = out ? ROD_SCSI_DIR_OUT : in ? ROD_SCSI_DIR_IN : ROD_SCSI_DIR_NONE;
	return scsi_exec_wait(tgt, &c);
}

static inline void scsi_cdb_rw16(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	rod_put_be64(cdb + 2, lba);
	rod_put_be32(cdb + 10, n);
}

/* An initiator port of host `host`: ISID ending in isid_last, target port group 1. */
static inline void scsi_nexus_init(struct rod_scsi_nexus *n, const char *name, uint8_t isid_last,
				   uint64_t host)
{
	memset(n, 0, sizeof(*n));
	snprintf(n->initiator_name, sizeof(n->initiator_name), "%s", name);
	n->isid[5] = isid_last;
	snprintf(n->initiator_port, sizeof(n->initiator_port), "%s,i,0x%012x", name, isid_last);
	n->tpgt = 1;
	n->rel_port = 1;
	n->host_id = host;
}

/* A new store without GC thread in dir, a fresh /tmp/<prefix>.XXXXXX (room for len
 * bytes); other options from opts (NULL: none; array name "t" unless given). */
static inline int scsi_store_open(char *dir, size_t len, const char *prefix,
				  const struct rod_store_opts *opts, struct rod_store **store)
{
	struct rod_store_opts so = { 0 };

	if (opts)
		so = *opts;
	so.dir = dir;
	so.create = true;
	if (!so.array_name)
		so.array_name = "t";
	so.no_gc_thread = true;
	snprintf(dir, len, "/tmp/%s.XXXXXX", prefix);
	if (!mkdtemp(dir))
		return -1;
	return rod_store_open(&so, store) < 0 ? -1 : 0;
}

/* Frees the target, closes the store and removes dir. */
static inline int scsi_env_close(const char *dir, struct rod_store *store,
				 struct rod_scsi_target *tgt)
{
	char cmd[128];

	rod_scsi_target_free(tgt);
	rod_store_close(store);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
