/* Shared setup of the fuzz targets that need a real store: one store in a temp dir per
 * fuzzer process (created on first use, removed at exit), so each input costs only
 * the commands it carries. */
#ifndef ROD_FUZZ_ENV_H
#define ROD_FUZZ_ENV_H

#include <stdint.h>

#include "rod/scsi.h"
#include "rod/store.h"

#define FUZZ_TARGET_IQN "iqn.2026-11.io.rodstore:fuzz"
#define FUZZ_HOST_ID 1u
/* Small LUs: a fuzzed WRITE SAME or copy over the whole LU stays cheap. */
#define FUZZ_LU_BYTES (4ull << 20)

struct fuzz_env {
	char dir[256];
	struct rod_store *store;
	struct rod_scsi_target *scsi;    /* NULL unless fuzz_env_get(true) */
	uint64_t vol_id[2];              /* LUN 0: 512-byte blocks, LUN 1: 4096 */
};

/* The process's environment (aborts if it cannot be built: a setup bug, not a find). */
struct fuzz_env *fuzz_env_get(int with_scsi);

/* Quiet logs unless ROD_LOG is set (libFuzzer output stays readable). */
void fuzz_quiet_logs(void);

#endif
