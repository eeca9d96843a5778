/* rodcp's view of one iSCSI LUN: a libiscsi session, the geometry, the copy-offload
 * limits the target advertises, and helpers to send raw CDBs (sync or pipelined). */
#ifndef RODCP_LUN_H
#define RODCP_LUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iscsi_context;

struct rc_sense {
	uint8_t status;              /* SAM status; 0xff: transport failure */
	uint8_t key, asc, ascq;
	char transport_err[160];
};

struct rc_lun {
	char url[512];
	struct iscsi_context *ctx;
	int lun;
	uint32_t bs;
	uint64_t nblocks;
	/* VPD 0x83: the designator an EXTENDED COPY CSCD names this LU by */
	uint8_t desig[24];
	uint8_t desig_len;           /* 0: none found */
	/* VPD 0x8F block device ROD token limits (have_odx: descriptor present) */
	bool have_odx;
	uint16_t odx_max_ranges;
	uint32_t odx_default_timeout;
	uint64_t odx_max_token_blocks; /* 0: no limit */
	uint64_t odx_optimal_blocks;   /* 0: not reported */
	/* RECEIVE COPY RESULTS OPERATING PARAMETERS (have_xcopy: answered) */
	bool have_xcopy;
	bool xcopy_snlid;
	uint16_t xcopy_max_segs;
	uint32_t xcopy_max_seg_bytes;  /* 0: no limit */
	/* VPD 0xB0 */
	uint32_t max_xfer_blocks;      /* 0: not reported */
	uint64_t max_ws_blocks;
};

/* Commands sent so far (all LUNs), for --json. */
extern uint64_t rc_commands;

/* Log in and read the geometry. Errors are printed; returns 0 or -1. */
int rc_lun_open(struct rc_lun *l, const char *url);
void rc_lun_close(struct rc_lun *l);
/* Probe VPD 0x83/0x8F/0xB0 and RECEIVE COPY RESULTS OPERATING PARAMETERS. */
void rc_lun_probe(struct rc_lun *l);

/* One command, synchronously. dir: 0 none, 1 read (in/in_len), 2 write (out/out_len).
 * Returns 0 for GOOD, else -1 with *s describing the failure. *got: bytes read. */
int rc_cmd(struct rc_lun *l, const uint8_t *cdb, int cdb_len, int dir, const void *out,
	   size_t out_len, void *in, size_t in_len, size_t *got, struct rc_sense *s);

/* Human text for a failure: "ILLEGAL REQUEST: INVALID TOKEN OPERATION, TOKEN EXPIRED
 * (05/23/07)". */
const char *rc_sense_str(const struct rc_sense *s, char *buf, size_t len);

/* Pipelined commands on up to two LUNs: a callback-driven queue. */
struct rc_async;
typedef void (*rc_async_cb)(void *arg, int ok, const struct rc_sense *s, const void *data,
			    size_t len);
int rc_async_cmd(struct rc_lun *l, const uint8_t *cdb, int cdb_len, int dir, const void *out,
		 size_t out_len, size_t in_len, rc_async_cb cb, void *arg);
/* Serve the sessions of a and b (b may be NULL or equal a) until *pending is 0.
 * Returns 0, or -1 on a transport failure. */
int rc_async_wait(struct rc_lun *a, struct rc_lun *b, const int *pending);

#endif
