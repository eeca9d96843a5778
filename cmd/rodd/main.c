/* rodd: the array daemon. Wires the store, the SCSI target, the iSCSI server and the
 * control socket together, daemonises once the listeners are up, and shuts down
 * cleanly on SIGTERM (stop accepting, finish in-flight commands, flush, exit 0). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rod/conf.h"
#include "rod/ctl.h"
#include "rod/ctl_http.h"
#include "rod/iscsi.h"
#include "rod/log.h"
#include "rod/scsi.h"
#include "rod/scsi_stats.h"
#include "rod/store.h"
#include "rod/util.h"

#define DEFAULT_DATA "/var/lib/rodstore"
#define DEFAULT_LISTEN "0.0.0.0:3260"
#define DEFAULT_SOCKET "/run/rodstore/rodd.sock"
#define DEFAULT_KEY_FILE "/etc/rodstore/rod.key"
#define LISTEN_MAX ROD_CONF_LISTEN_MAX
#ifndef ROD_VERSION_STRING
#define ROD_VERSION_STRING "0.1.0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rodd [options]\n"
		"  --data DIR           data directory (default " DEFAULT_DATA "); a new store is created\n"
		"                       there on first start\n"
		"  --listen ADDR:PORT   iSCSI portal, repeatable; IPv6 as [::1]:3260 (default " DEFAULT_LISTEN ")\n"
		"  --socket PATH        control socket for rodctl (default " DEFAULT_SOCKET ")\n"
		"  --pidfile FILE       write the daemon's pid here\n"
		"  --foreground         do not daemonise; log to stderr\n"
		"  --config FILE        INI file with keys data, listen, socket, pidfile, key_file,\n"
		"                       array_name, http, http_allow_remote, replication, capacity,\n"
		"                       log_level\n"
		"                       (flags override it; SIGHUP re-reads it, see rod.conf(5))\n"
		"  --key-file FILE      key-encryption key file wrapping the data key (default\n"
		"                       $ROD_KEY_FILE, else " DEFAULT_KEY_FILE "); created\n"
		"                       0600 with a new store; rodd refuses to start when it is\n"
		"                       missing or wrong\n"
		"  --no-reduction LIST  benchmarking only: switch off parts of data reduction for\n"
		"                       what this run writes (dedupe,compress,encrypt)\n"
		"  --array-name NAME    array name when the store is created (default: the host name);\n"
		"                       the target is iqn.2026-11.io.rodstore:<name>\n"
		"  --http ADDR:PORT     serve the REST API (bearer tokens: rodctl array token create)\n"
		"                       and /metrics over HTTP; off by default; loopback addresses only\n"
		"  --http-allow-remote  let --http bind a non-loopback address (the API then travels\n"
		"                       in clear text: put a TLS proxy in front)\n"
		"  --replication ADDR:PORT  receive replicated protection groups from other arrays\n"
		"                       here (TLS 1.3 with keys from rodctl array replication-key\n"
		"                       create; port 0 picks a free one, rodctl replica list shows it)\n"
		"  --capacity SIZE      limit the store to SIZE bytes (suffixes K M G T) instead of the\n"
		"                       file system's size; writes of new data fail with 07/27/07 when\n"
		"                       free space falls below the reserve\n"
		"  --rebuild-metadata   rebuild the metadata database of --data from its segment files\n"
		"                       (the old one is kept as meta.old.<time>), then exit 0; start\n"
		"                       rodd again normally afterwards\n"
		"  --stdin              serve one iSCSI connection on stdin/stdout instead of listening\n"
		"                       (inetd style, or a fuzzer feeding recorded PDUs), then exit;\n"
		"                       implies --foreground, logs go to stderr\n"
		"  --limit KEY=VALUE    a limit of rod.conf(5) (max_volumes, max_sessions, max_odx_tokens,\n"
		"                       recovery_window, gc_rate, gc_threshold, job_workers,\n"
		"                       http_require_token, metrics_interval), over the file's\n"
		"  --check-config       print the effective settings (defaults < config < flags)\n"
		"                       and exit 0, or report the first error and exit 1\n"
		"  --version            print the version\n"
		"  --help               this text\n");
}

/* ---- configuration --------------------------------------------------------------- */

/* rodd's settings are a struct rod_conf (include/rod/conf.h): the config file's parser
 * (lib/ctl/conf.c) fills one, the command line another, and main merges them. */
static int read_config(const char *path, struct rod_conf *st)
{
	char err[1024 + PATH_MAX];
	if (rod_conf_parse_file(path, st, err, sizeof(err)) == 0)
		return 0;
	fprintf(stderr, "rodd: %s\n", err);
	return -1;
}

static char *g_config_abs;      /* the --config file, absolute (rodd chdirs to / as a daemon) */

static bool str_differs(const char *file_val, const char *running)
{
	return file_val && (!running || strcmp(file_val, running));
}

/* SIGHUP: read the config file again. The log level changes at once; the other keys
 * need a restart (listeners, data directory, socket, key file are bound or open), which
 * the log says. A file with an error changes nothing. */
static void reload_config(const char *path, const struct rod_conf *run, const struct rod_conf_limits *cli,
			  struct rod_ctl *ctl, struct rod_iscsi_server *isrv)
{
	struct rod_conf ns = { 0 };
	char err[1024 + PATH_MAX];
	if (!path) {
		rod_info("rodd: SIGHUP: no --config file to re-read");
		return;
	}
	if (rod_conf_parse_file(path, &ns, err, sizeof(err))) {
		rod_err("rodd: SIGHUP: %s; configuration unchanged", err);
		rod_conf_release(&ns);
		return;
	}
	struct { const char *key, *file, *running; } keys[] = {
		{ "data", ns.data, run->data }, { "socket", ns.socket, run->socket },
		{ "pidfile", ns.pidfile, run->pidfile }, { "key_file", ns.key_file, run->key_file },
		{ "array_name", ns.array_name, run->array_name }, { "http", ns.http, run->http },
		{ "replication", ns.replication, run->replication },
	};
	for (size_t i = 0; i < ROD_ARRAY_SIZE(keys); i++)
		if (str_differs(keys[i].file, keys[i].running))
			rod_warn("rodd: SIGHUP: %s changed in %s; it cannot change while rodd runs: restart rodd to use it",
				 keys[i].key, path);
	bool listen_changed = ns.n_listen && ns.n_listen != run->n_listen;
	for (int i = 0; i < ns.n_listen && !listen_changed; i++)
		listen_changed = strcmp(ns.listen[i], run->listen[i]) != 0;
	if (listen_changed)
		rod_warn("rodd: SIGHUP: listen changed in %s; listen addresses cannot change while rodd runs: restart "
			 "rodd to use them", path);
	if (ns.capacity && ns.capacity != run->capacity)
		rod_warn("rodd: SIGHUP: capacity changed in %s; restart rodd to use it", path);
	if (ns.log_level) {
		rod_log_set_level((enum rod_log_level)(ns.log_level - 1));
		rod_info("rodd: SIGHUP: log level %s", (const char *[]){ "error", "warn", "info", "debug" }[ns.log_level - 1]);
	}
	/* limits apply at once (flags still override the file) */
	rod_conf_limits_merge(&ns.limits, cli);
	rod_iscsi_server_set_max_sessions(isrv, (unsigned)ns.limits.max_sessions);
	if (ns.limits.max_odx_tokens != run->limits.max_odx_tokens)
		rod_warn("rodd: SIGHUP: max_odx_tokens changed in %s; the token table is sized at start: restart rodd "
			 "to use it", path);
	if (rod_ctl_set_limits(ctl, &ns.limits) == 0)
		rod_info("rodd: SIGHUP: limits applied (max_volumes %llu, gc_rate %llu, gc_threshold %llu%%, job_workers "
			 "%llu)", (unsigned long long)ns.limits.max_volumes, (unsigned long long)ns.limits.gc_rate,
			 (unsigned long long)ns.limits.gc_threshold_pct, (unsigned long long)ns.limits.job_workers);
	rod_info("rodd: SIGHUP: %s re-read", path);
	rod_conf_release(&ns);
}

/* Absolute form of a path, so that chdir("/") after daemonising changes nothing. */
static char *absolute(const char *p)
{
	if (!p || p[0] == '/')
		return p ? strdup(p) : NULL;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return strdup(p);
	char *out;
	if (asprintf(&out, "%s/%s", cwd, p) < 0)
		return NULL;
	return out;
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0750) && errno != EEXIST)
		return -errno;
	return 0;
}

/* ---- hooks from lib/ctl to the SCSI target ----------------------------------------- */

static int hook_map_add(void *arg, uint64_t host_id, uint64_t lun, uint64_t vol_id)
{
	return rod_scsi_map_add(arg, host_id, lun, vol_id);
}

static int hook_map_remove(void *arg, uint64_t host_id, uint64_t lun)
{
	return rod_scsi_map_remove(arg, host_id, lun);
}

static void hook_vol_removed(void *arg, uint64_t vol_id)
{
	rod_scsi_vol_removed(arg, vol_id);
}

static void hook_vol_resized(void *arg, uint64_t vol_id)
{
	rod_scsi_vol_resized(arg, vol_id);
}

static void hook_vol_params_changed(void *arg, uint64_t vol_id)
{
	rod_scsi_vol_params_changed(arg, vol_id);
}

static int metrics_scsi(void *arg, struct rod_scsi_stats_snapshot *out)
{
	return rod_scsi_stats_get(arg, out);
}

static void metrics_iscsi(void *arg, struct rod_iscsi_stats *out)
{
	rod_iscsi_server_stats(arg, out);
}

/* ---- daemon ------------------------------------------------------------------------ */

static int g_ready_fd = -1;     /* pipe to the waiting parent when daemonising */
static bool g_restore_info;     /* log level lowered to WARN while starting in the background */

/* Fork before any thread exists; the parent waits until the child says it is ready
 * (listeners bound, control socket up) and exits with the child's status. */
static void daemonise_start(void)
{
	int p[2];
	if (pipe(p)) {
		perror("rodd: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("rodd: fork");
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		unsigned char status = 1;
		ssize_t n;
		do
			n = read(p[0], &status, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 ? status : 1);
	}
	close(p[0]);
	g_ready_fd = p[1];
	setsid();
}

static void daemonise_finish(void)
{
	if (g_ready_fd < 0)
		return;
	if (chdir("/"))
		rod_warn("chdir /: %s", strerror(errno));
	int nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	rod_log_use_syslog("rodd");
	if (g_restore_info)
		rod_log_set_level(ROD_LOG_INFO);
	unsigned char ok = 0;
	if (write(g_ready_fd, &ok, 1) != 1)
		rod_warn("cannot tell the parent process rodd is ready");
	close(g_ready_fd);
	g_ready_fd = -1;
}

/* --stdin: the one connection is served on its own thread (the same connection code
 * as the listeners', rod_iscsi_serve_fd); main keeps waiting for signals and hears
 * SIGUSR1 when the connection has closed. */
struct stdin_conn {
	struct rod_iscsi_server *isrv;
	pthread_t main_thread, thread;
	bool started;
};

static void *stdin_main(void *arg)
{
	struct stdin_conn *sc = arg;
	rod_thread_name("rod-iscsi-stdin");
	int rc = rod_iscsi_serve_fd(sc->isrv, STDIN_FILENO, STDOUT_FILENO);
	if (rc)
		rod_err("rodd: --stdin: %s", strerror(-rc));
	pthread_kill(sc->main_thread, SIGUSR1);
	return NULL;
}

static int write_pidfile(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	int rc = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "data", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "socket", required_argument, NULL, 's' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "array-name", required_argument, NULL, 'a' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "http", required_argument, NULL, 'H' },
		{ "http-allow-remote", no_argument, NULL, 'R' },
		{ "capacity", required_argument, NULL, 'Z' },
		{ "rebuild-metadata", no_argument, NULL, 'M' },
		{ "stdin", no_argument, NULL, 'I' },
		{ "no-reduction", required_argument, NULL, 'N' },
		{ "replication", required_argument, NULL, 'P' },
		{ "limit", required_argument, NULL, 'L' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rod_conf cli = { 0 }, st = { 0 };
	char *data = NULL, *sock = NULL, *pidfile = NULL, *key_file = NULL; /* absolute paths */
	const char *config = NULL, *why = NULL;
	bool foreground = false, check_only = false, rebuild_meta = false;
	bool stdin_mode = false;        /* --stdin: one iSCSI connection on fds 0/1 */
	bool no_dedupe = false, no_compress = false, no_encrypt = false; /* benchmarking only */
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': rod_conf_set_str(&cli.data, optarg); break;
		case 's': rod_conf_set_str(&cli.socket, optarg); break;
		case 'p': rod_conf_set_str(&cli.pidfile, optarg); break;
		case 'k': rod_conf_set_str(&cli.key_file, optarg); break;
		case 'a': rod_conf_set_str(&cli.array_name, optarg); break;
		case 'c': config = optarg; break;
		case 'f': foreground = true; break;
		case 'l':
			if (rod_conf_add_listen(&cli, optarg, &why)) {
				fprintf(stderr, "rodd: --listen %s: %s\n", optarg, why);
				goto early_fail;
			}
			break;
		case 'C': check_only = true; break;
		case 'H':
			if (!rod_conf_listen_valid(optarg, &why)) {
				fprintf(stderr, "rodd: --http %s: %s\n", optarg, why);
				goto early_fail;
			}
			rod_conf_set_str(&cli.http, optarg);
			break;
		case 'R': cli.http_allow_remote = true; break;
		case 'Z':
			if (rod_parse_size(optarg, &cli.capacity) || !cli.capacity) {
				fprintf(stderr, "rodd: --capacity %s: not a size (e.g. 128M, 2T)\n", optarg);
				goto early_fail;
			}
			break;
		case 'M': rebuild_meta = true; break;
		case 'L': { /* --limit KEY=VALUE: a rod.conf limit key, over the file's */
			char key[64], lerr[256];
			const char *eq = strchr(optarg, '=');
			snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - optarg) : 0, optarg);
			int lrc = eq ? rod_conf_limit_set(&cli.limits, key, eq + 1, lerr, sizeof(lerr)) : -ENOENT;
			if (lrc) {
				fprintf(stderr, "rodd: --limit %s: %s\n", optarg,
					lrc == -EINVAL ? lerr : "expected KEY=VALUE with a limit key of rod.conf(5)");
				goto early_fail;
			}
			break;
		}
		case 'I': stdin_mode = foreground = true; break;
		case 'P':
			if (!rod_conf_listen_valid(optarg, &why)) {
				fprintf(stderr, "rodd: --replication %s: %s\n", optarg, why);
				goto early_fail;
			}
			rod_conf_set_str(&cli.replication, optarg);
			break;
		case 'N': {
			/* --no-reduction dedupe,compress,encrypt: switch parts off for benchmarks */
			char *list = strdup(optarg), *save = NULL;
			for (char *t = list ? strtok_r(list, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
				if (!strcmp(t, "dedupe"))
					no_dedupe = true;
				else if (!strcmp(t, "compress"))
					no_compress = true;
				else if (!strcmp(t, "encrypt"))
					no_encrypt = true;
				else {
					fprintf(stderr, "rodd: --no-reduction: unknown part \"%s\" (dedupe, compress, encrypt)\n", t);
					free(list);
					goto early_fail;
				}
			}
			free(list);
			break;
		}
		case 'V': printf("rodd %s\n", ROD_VERSION_STRING); rod_conf_release(&cli); return 0;
		case 'h': usage(stdout); rod_conf_release(&cli); return 0;
		default: usage(stderr); rod_conf_release(&cli); return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rodd: unexpected argument \"%s\" (rodd --help lists options)\n", argv[optind]);
		goto early_fail;
	}
	if (cli.array_name && !rod_name_valid(cli.array_name)) {
		fprintf(stderr, "rodd: --array-name \"%s\" is not valid (letters, digits, '-' and '_', 1-63 characters)\n",
			cli.array_name);
		goto early_fail;
	}
	/* defaults < config file < command line */
	if (config && read_config(config, &st))
		goto early_fail;
#define PICK(f, def) do { if (cli.f) rod_conf_set_str(&st.f, cli.f); else if (!st.f && (def)) rod_conf_set_str(&st.f, (def)); } while (0)
	PICK(data, DEFAULT_DATA);
	PICK(socket, DEFAULT_SOCKET);
	PICK(pidfile, (const char *)NULL);
	/* ROD_KEY_FILE: test harnesses point every rodd at a key in their temp dir. */
	PICK(key_file, getenv("ROD_KEY_FILE") && *getenv("ROD_KEY_FILE") ? getenv("ROD_KEY_FILE") :
		       DEFAULT_KEY_FILE);
	PICK(array_name, (const char *)NULL);
	PICK(http, (const char *)NULL);
	PICK(replication, (const char *)NULL);
#undef PICK
	st.http_allow_remote = st.http_allow_remote || cli.http_allow_remote;
	if (cli.capacity)
		st.capacity = cli.capacity;
	rod_conf_limits_merge(&st.limits, &cli.limits);
	if (cli.n_listen) {
		for (int i = 0; i < st.n_listen; i++)
			free(st.listen[i]);
		memcpy(st.listen, cli.listen, sizeof(st.listen));
		st.n_listen = cli.n_listen;
	} else if (!st.n_listen) {
		st.listen[st.n_listen++] = strdup(DEFAULT_LISTEN);
	}
	st.listen[st.n_listen] = NULL;
	if (check_only) {
		/* the effective settings, after defaults < config file < flags */
		printf("data = %s\nsocket = %s\n", st.data, st.socket);
		for (int i = 0; i < st.n_listen; i++)
			printf("listen = %s\n", st.listen[i]);
		if (st.pidfile)
			printf("pidfile = %s\n", st.pidfile);
		if (st.key_file)
			printf("key_file = %s\n", st.key_file);
		if (st.array_name)
			printf("array_name = %s\n", st.array_name);
		if (st.http)
			printf("http = %s\nhttp_allow_remote = %s\n", st.http, st.http_allow_remote ? "yes" : "no");
		if (st.replication)
			printf("replication = %s\n", st.replication);
		if (st.capacity)
			printf("capacity = %llu\n", (unsigned long long)st.capacity);
		if (st.log_level)
			printf("log_level = %s\n", (const char *[]){ "error", "warn", "info", "debug" }[st.log_level - 1]);
		rod_conf_limits_print(stdout, &st.limits);
		if (cli.n_listen)
			cli.n_listen = 0;
		rod_conf_release(&st);
		rod_conf_release(&cli);
		return 0;
	}
	data = absolute(st.data);
	g_config_abs = config ? absolute(config) : NULL;
	sock = absolute(st.socket);
	pidfile = absolute(st.pidfile);
	key_file = absolute(st.key_file);

	char array_name[ROD_NAME_MAX];
	if (st.array_name) {
		snprintf(array_name, sizeof(array_name), "%s", st.array_name);
	} else {
		char host[256] = "";
		gethostname(host, sizeof(host) - 1);
		rod_array_name_from_host(host, array_name, sizeof(array_name));
	}

	if (st.log_level)
		rod_log_set_level((enum rod_log_level)(st.log_level - 1));
	if (!foreground && !rebuild_meta) {
		/* Until it is ready the daemon still writes to the caller's terminal: only
		 * warnings and errors there; the info lines go to syslog afterwards. */
		if (rod_log_get_level() == ROD_LOG_INFO) {
			rod_log_set_level(ROD_LOG_WARN);
			g_restore_info = true;
		}
		daemonise_start();
	}

	/* Every thread created from here inherits this mask; main takes signals in sigwait. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	if (stdin_mode)
		sigaddset(&sigs, SIGUSR1);      /* the --stdin connection ended */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = mkdir_p(data);
	if (rc) {
		rod_err("cannot create data directory %s: %s", data, strerror(-rc));
		goto early_fail;
	}
	/* One daemon per data directory: a second one would corrupt the store. The lock
	 * lives as long as the process (the descriptor is never closed). */
	char lockpath[PATH_MAX];
	snprintf(lockpath, sizeof(lockpath), "%s/rodd.lock", data);
	int lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB)) {
		if (errno == EWOULDBLOCK)
			rod_err("data directory %s is in use by another rodd; stop it first or choose another --data",
				data);
		else
			rod_err("cannot lock %s: %s", lockpath, strerror(errno));
		goto early_fail;
	}
	if (rebuild_meta) {
		/* Under the lock, so no running rodd can be using the database being replaced. */
		uint64_t records = 0;
		rc = rod_store_rebuild_metadata(data, &records);
		if (rc) {
			rod_err("cannot rebuild the metadata of %s: %s", data, strerror(-rc));
			goto early_fail;
		}
		printf("rodd: metadata of %s rebuilt from %llu log records\n", data, (unsigned long long)records);
		goto early_done;
	}
	struct rod_store_opts so = { .dir = data, .create = true, .array_name = array_name,
				     .capacity_bytes = st.capacity, .key_file = key_file,
				     .no_dedupe = no_dedupe, .no_compress = no_compress,
				     .no_encrypt = no_encrypt };
	struct rod_store *store = NULL;
	rc = rod_store_open(&so, &store);
	if (rc) {
		if (rc == -EPROTO)
			rod_err("the store in %s has a format this rodd does not know; use the rodd version that "
				"wrote it", data);
		else if (rc == -ENOKEY || rc == -EKEYREJECTED)
			rod_err("cannot open the store in %s: the key file %s is %s; start rodd with "
				"--key-file naming the key file this store was created (or rekeyed) with",
				data, key_file, rc == -ENOKEY ? "missing or unreadable" : "not this store's key");
		else
			rod_err("cannot open the store in %s: %s", data, strerror(-rc));
		goto early_fail;
	}
	const struct rod_array_identity *ident = rod_store_identity(store);
	if (st.array_name && strcmp(st.array_name, ident->name))
		rod_warn("the array is named \"%s\" (fixed when the store was created); --array-name %s ignored",
			 ident->name, st.array_name);
	char iqn[ROD_IQN_MAX];
	rod_target_iqn(ident->name, iqn, sizeof(iqn));

	struct rod_scsi_target_opts to = { .store = store, .target_name = iqn,
					   .max_tokens = (uint32_t)st.limits.max_odx_tokens };
	struct rod_scsi_target *target = NULL;
	rc = rod_scsi_target_new(&to, &target);
	if (rc) {
		rod_err("cannot create the SCSI target: %s", strerror(-rc));
		rod_store_close(store);
		goto early_fail;
	}
	struct rod_ctl_opts co = {
		.store = store,
		.target_iqn = iqn,
		.key_file = key_file,
		.data_dir = data,
		.hooks = { hook_map_add, hook_map_remove, hook_vol_removed, hook_vol_resized, target,
			   hook_vol_params_changed },
	};
	struct rod_ctl *ctl = NULL;
	rc = rod_ctl_new(&co, &ctl);
	if (rc == 0 && (rc = rod_ctl_set_limits(ctl, &st.limits)))
		rod_err("cannot apply the limits of the configuration: %s", strerror(-rc));
	if (rc) {
		rod_scsi_target_free(target);
		rod_store_close(store);
		goto early_fail;
	}
	struct rod_iscsi_server_opts io = {
		.target_name = iqn,
		.target_alias = ident->name,
		.listen = stdin_mode ? (const char *const[]){ NULL } : (const char *const *)st.listen,
		.scsi = target,
		.auth_lookup = rod_ctl_auth_lookup,
		.auth_arg = ctl,
		.max_sessions = (unsigned)st.limits.max_sessions,
	};
	struct rod_iscsi_server *isrv = NULL;
	struct rod_ctl_server *csrv = NULL;
	struct rod_http_server *hsrv = NULL;
	rc = rod_iscsi_server_new(&io, &isrv);
	if (rc) {
		rod_err("cannot listen for iSCSI: %s", strerror(-rc));
		goto fail;
	}
	char portals[LISTEN_MAX][64];
	const char *pp[LISTEN_MAX + 1];
	size_t np = rod_iscsi_server_portals(isrv, portals, LISTEN_MAX);
	if (np > LISTEN_MAX)
		np = LISTEN_MAX;
	for (size_t i = 0; i < np; i++)
		pp[i] = portals[i];
	pp[np] = NULL;
	rod_ctl_set_portals(ctl, pp);
	if (!stdin_mode && (rc = rod_iscsi_server_start(isrv))) {
		rod_err("cannot start the iSCSI threads: %s", strerror(-rc));
		goto fail;
	}
	if (st.replication && (rc = rod_ctl_replication_listen(ctl, st.replication))) {
		rod_err("cannot listen for replication on %s: %s", st.replication, strerror(-rc));
		goto fail;
	}
	if ((rc = rod_ctl_server_new(ctl, sock, &csrv)) || (rc = rod_ctl_server_start(csrv)))
		goto fail;
	if (st.http) {
		struct rod_http_opts ho = {
			.ctl = ctl,
			.store = store,
			.listen = st.http,
			.allow_remote = st.http_allow_remote,
			.metrics = { store, metrics_scsi, target, metrics_iscsi, isrv },
		};
		if ((rc = rod_http_server_new(&ho, &hsrv)) || (rc = rod_http_server_start(hsrv)))
			goto fail;
		rod_info("rodd: HTTP API and /metrics on %s", rod_http_server_address(hsrv));
	}
	if (pidfile && (rc = write_pidfile(pidfile))) {
		rod_err("cannot write pid file %s: %s", pidfile, strerror(-rc));
		goto fail;
	}
	daemonise_finish();
	for (size_t i = 0; i < np; i++)
		rod_info("rodd: target %s on %s", iqn, portals[i]);
	rod_info("rodd: ready (data %s, control socket %s)", data, sock);

	struct stdin_conn sconn = { .isrv = isrv, .main_thread = pthread_self() };
	if (stdin_mode) {
		if (pthread_create(&sconn.thread, NULL, stdin_main, &sconn)) {
			rod_err("cannot start the --stdin connection thread");
			goto fail;
		}
		sconn.started = true;
		rod_info("rodd: serving one iSCSI connection on stdin/stdout");
	}
	for (;;) {
		int sig = 0;
		if (sigwait(&sigs, &sig))
			continue;
		if (sig == SIGUSR1) {
			rod_info("rodd: the --stdin connection closed, shutting down");
			break;
		}
		if (sig == SIGHUP) {
			reload_config(g_config_abs, &st, &cli.limits, ctl, isrv);
			continue;
		}
		rod_info("rodd: signal %d, shutting down", sig);
		break;
	}
	rc = 0;
	goto out;
fail:
	rc = 1;
out:
	/* Order: no new control requests, no new iSCSI work (in-flight commands finish),
	 * then the target's volume handles, then make everything durable. */
	rod_http_server_free(hsrv);
	rod_ctl_server_free(csrv);
	if (isrv) {
		rod_iscsi_server_stop(isrv);
		if (stdin_mode && sconn.started)
			pthread_join(sconn.thread, NULL);       /* stop closes the connection */
		rod_iscsi_server_free(isrv);
	}
	rod_scsi_target_free(target);
	rod_ctl_free(ctl);
	int frc = rod_store_flush(store);
	if (frc) {
		rod_err("final flush failed: %s", strerror(-frc));
		rc = 1;
	}
	rod_store_close(store);
	if (pidfile && rc == 0)
		unlink(pidfile);
	if (rc == 0)
		rod_info("rodd: stopped");
	free(data);
	free(sock);
	free(pidfile);
	free(key_file);
	free(g_config_abs);
	/* st.listen may alias cli.listen (taken over from the command line) */
	if (cli.n_listen)
		cli.n_listen = 0;
	rod_conf_release(&st);
	rod_conf_release(&cli);
	return rc;
early_fail:
	rc = 1;
early_done:
	if (cli.n_listen && st.listen[0] == cli.listen[0])
		cli.n_listen = 0;
	rod_conf_release(&st);
	rod_conf_release(&cli);
	free(data);
	free(sock);
	free(pidfile);
	free(key_file);
	return rc;
}
