#include "fuzz_env.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rod/log.h"

static struct fuzz_env E;
static int E_ready;

void fuzz_quiet_logs(void)
{
	if (!getenv("ROD_LOG"))
		rod_log_set_level(ROD_LOG_ERR);
}

/* The fuzzer exits through exit() after -max_total_time / -runs: tear down in order
 * so LSan sees a clean shutdown and the temp dir goes away. */
static void env_cleanup(void)
{
	if (!E_ready)
		return;
	if (E.scsi)
		rod_scsi_target_free(E.scsi);
	rod_store_close(E.store);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", E.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", E.dir);
	E_ready = 0;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "fuzz setup: %s failed (%d)\n", what, rc);
	abort();
}

/* A run that ends in a crash or a timeout exits without atexit handlers: remove the
 * stores of fuzzer processes that are gone (the pid is part of the name). */
static void sweep_stale(const char *tmp)
{
	DIR *d = opendir(tmp);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid;
		if (sscanf(de->d_name, "rod-fuzz-%d-", &pid) != 1 || pid <= 0 || pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", tmp, de->d_name);
		if (system(cmd) != 0)
			fprintf(stderr, "fuzz: could not remove %s/%s\n", tmp, de->d_name);
	}
	closedir(d);
}

struct fuzz_env *fuzz_env_get(int with_scsi)
{
	if (E_ready)
		return &E;
	fuzz_quiet_logs();
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	sweep_stale(tmp);
	snprintf(E.dir, sizeof(E.dir), "%s/rod-fuzz-%d-XXXXXX", tmp, (int)getpid());
	if (!mkdtemp(E.dir))
		die("mkdtemp", -1);
	/* The GC thread stays on: fuzzed writes over minutes must not fill the disk. */
	struct rod_store_opts so = { .dir = E.dir, .create = true, .array_name = "fuzz",
				     .capacity_bytes = 4ull << 30 };
	int rc = rod_store_open(&so, &E.store);
	if (rc)
		die("rod_store_open", rc);
	struct rod_vol_info vi;
	if ((rc = rod_vol_create(E.store, "a", FUZZ_LU_BYTES, 512, &vi)))
		die("rod_vol_create a", rc);
	E.vol_id[0] = vi.id;
	if ((rc = rod_vol_create(E.store, "b", FUZZ_LU_BYTES, 4096, &vi)))
		die("rod_vol_create b", rc);
	E.vol_id[1] = vi.id;
	/* LUN 1 write-back: both cache paths get fuzzed, and fewer fdatasyncs per input */
	if ((rc = rod_vol_set_cache(E.store, "b", ROD_CACHE_WRITE_BACK)))
		die("rod_vol_set_cache b", rc);
	if (with_scsi) {
		struct rod_scsi_target_opts to = { .store = E.store, .target_name = FUZZ_TARGET_IQN };
		if ((rc = rod_scsi_target_new(&to, &E.scsi)))
			die("rod_scsi_target_new", rc);
		for (unsigned i = 0; i < 2; i++)
			if ((rc = rod_scsi_map_add(E.scsi, FUZZ_HOST_ID, i, E.vol_id[i])))
				die("rod_scsi_map_add", rc);
	}
	E_ready = 1;
	atexit(env_cleanup);
	return &E;
}
