/* Unit tests for the HTTP side of lib/ctl over the real engine in a temp directory:
 * API tokens (only a hash stored, tampered/deleted tokens refused), the metrics
 * exposition (names, labels, cumulative histograms) from fake SCSI/iSCSI readers, and
 * the loopback-only rule of the HTTP listener. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rod/ctl.h"
#include "rod/ctl_http.h"
#include "rod/store.h"

struct env {
	char dir[64];
	struct rod_store *store;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/rodctlhttp.XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	struct rod_store_opts so = { .dir = e->dir, .create = true, .array_name = "unit", .no_gc_thread = true };
	assert_int_equal(rod_store_open(&so, &e->store), 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	rod_store_close(e->store);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
	assert_int_equal(system(cmd), 0);
	free(e);
	return 0;
}

static int scan_find(void *arg, const char *key, const void *val, size_t len)
{
	const char *secret = arg;
	(void)key;
	if (memmem(val, len, secret, strlen(secret)))
		return 1;
	return 0;
}

static void test_tokens(void **state)
{
	struct env *e = *state;
	json_t *res = NULL, *p = json_pack("{s:s}", "name", "ci");
	char *msg = NULL;
	assert_int_equal(rod_api_token_create(e->store, p, &res, &msg), 0);
	json_decref(p);
	const char *tok = json_string_value(json_object_get(res, "token"));
	assert_non_null(tok);
	assert_int_equal(strlen(tok), ROD_API_TOKEN_LEN);
	char token[ROD_API_TOKEN_LEN + 1], id[17];
	strcpy(token, tok);
	strcpy(id, json_string_value(json_object_get(res, "id")));
	assert_null(json_object_get(res, "sha256"));
	json_decref(res);

	assert_true(rod_api_token_valid(e->store, token));
	/* the secret is not in the store: only its hash */
	assert_int_equal(rod_store_meta_scan(e->store, "", scan_find, token + 4 + 16 + 1), 0);
	/* any changed character of the secret, a truncated or extended token: refused */
	char bad[ROD_API_TOKEN_LEN + 2];
	strcpy(bad, token);
	bad[ROD_API_TOKEN_LEN - 1] = bad[ROD_API_TOKEN_LEN - 1] == '0' ? '1' : '0';
	assert_false(rod_api_token_valid(e->store, bad));
	strcpy(bad, token);
	bad[ROD_API_TOKEN_LEN - 1] = '\0';
	assert_false(rod_api_token_valid(e->store, bad));
	strcpy(bad, token);
	strcat(bad, "0");
	assert_false(rod_api_token_valid(e->store, bad));
	assert_false(rod_api_token_valid(e->store, ""));
	assert_false(rod_api_token_valid(e->store, NULL));

	assert_int_equal(rod_api_token_list(e->store, NULL, &res, &msg), 0);
	json_t *list = json_object_get(res, "tokens");
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")), id);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")), "ci");
	assert_null(json_object_get(json_array_get(list, 0), "sha256"));
	assert_null(json_object_get(json_array_get(list, 0), "token"));
	json_decref(res);

	p = json_pack("{s:s}", "id", "zz");
	assert_int_equal(rod_api_token_delete(e->store, p, &res, &msg), ROD_CTL_EINVAL);
	free(msg);
	json_decref(p);
	p = json_pack("{s:s}", "id", "0123456789abcdef");
	assert_int_equal(rod_api_token_delete(e->store, p, &res, &msg), ROD_CTL_ENOENT);
	free(msg);
	json_decref(p);
	p = json_pack("{s:s}", "id", id);
	assert_int_equal(rod_api_token_delete(e->store, p, &res, &msg), 0);
	json_decref(p);
	json_decref(res);
	assert_false(rod_api_token_valid(e->store, token));

	p = json_pack("{s:s}", "name", "no spaces allowed");
	assert_int_equal(rod_api_token_create(e->store, p, &res, &msg), ROD_CTL_EINVAL);
	free(msg);
	json_decref(p);
}

/* Fake readers: volume 1 ("db1") had 3 reads (50 us, 2 ms, 3 s) and one failed write. */
static uint64_t g_db1_id;

static int fake_scsi(void *arg, struct rod_scsi_stats_snapshot *out)
{
	(void)arg;
	memset(out, 0, sizeof(*out));
	out->vols = calloc(1, sizeof(*out->vols));
	out->n_vols = 1;
	out->vols[0].vol_id = g_db1_id;
	out->vols[0].read.ops = 3;
	out->vols[0].read.bytes = 12288;
	out->vols[0].read.lat_sum_ns = 3002050000ull;
	out->vols[0].read.lat_bucket[0] = 1;                    /* <= 100 us */
	out->vols[0].read.lat_bucket[4] = 1;                    /* <= 2.5 ms */
	out->vols[0].read.lat_bucket[ROD_SCSI_LAT_BOUNDS] = 1;  /* +Inf */
	out->vols[0].write.ops = 1;
	out->sense_keys[5] = 7;
	out->copy_ops[ROD_COPY_ODX] = 2;
	out->copy_bytes[ROD_COPY_ODX] = 1 << 20;
	out->tokens_live = 4;
	return 0;
}

static void fake_iscsi(void *arg, struct rod_iscsi_stats *out)
{
	(void)arg;
	out->sessions = 2;
	out->connections = 3;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

static void test_metrics(void **state)
{
	struct env *e = *state;
	struct rod_vol_info vi;
	assert_int_equal(rod_vol_create(e->store, "db1", 1 << 20, 512, &vi), 0);
	g_db1_id = vi.id;
	assert_int_equal(rod_vol_create(e->store, "idle", 1 << 20, 512, &vi), 0);
	struct rod_metrics_src src = { e->store, fake_scsi, NULL, fake_iscsi, NULL };
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(rod_metrics_render(&src, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_true(has_line(text, "# TYPE rodstore_volume_read_ops_total counter"));
	assert_true(has_line(text, "rodstore_volume_read_ops_total{volume=\"db1\"} 3"));
	assert_true(has_line(text, "rodstore_volume_read_bytes_total{volume=\"db1\"} 12288"));
	assert_true(has_line(text, "rodstore_volume_read_ops_total{volume=\"idle\"} 0"));
	/* cumulative buckets: 1 at 100 us, still 1 at 1 ms, 2 from 2.5 ms, 3 at +Inf */
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_bucket{volume=\"db1\",le=\"0.0001\"} 1"));
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_bucket{volume=\"db1\",le=\"0.001\"} 1"));
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_bucket{volume=\"db1\",le=\"0.0025\"} 2"));
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_bucket{volume=\"db1\",le=\"2.5\"} 2"));
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_bucket{volume=\"db1\",le=\"+Inf\"} 3"));
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_count{volume=\"db1\"} 3"));
	assert_true(has_line(text, "rodstore_volume_read_latency_seconds_sum{volume=\"db1\"} 3.002050000"));
	assert_true(has_line(text, "# TYPE rodstore_volume_read_latency_seconds histogram"));
	assert_true(has_line(text, "rodstore_scsi_errors_total{sense_key=\"illegal_request\"} 7"));
	assert_true(has_line(text, "rodstore_copy_offload_ops_total{kind=\"odx\"} 2"));
	assert_true(has_line(text, "rodstore_copy_offload_bytes_total{kind=\"odx\"} 1048576"));
	assert_true(has_line(text, "rodstore_copy_offload_ops_total{kind=\"xcopy\"} 0"));
	assert_true(has_line(text, "rodstore_rod_tokens_live 4"));
	assert_true(has_line(text, "rodstore_iscsi_sessions 2"));
	assert_true(has_line(text, "rodstore_volume_size_bytes{volume=\"db1\"} 1048576"));
	assert_true(has_line(text, "rodstore_data_reduction_ratio 1.000000"));
	assert_non_null(strstr(text, "\nrodstore_gc_runs_total "));
	/* every counter family ends in _total */
	for (const char *p = text; (p = strstr(p, "# TYPE ")); p++) {
		const char *sp = strchr(p + 7, ' ');
		if (!strncmp(sp + 1, "counter", 7))
			assert_memory_equal(sp - 6, "_total", 6);
	}
	free(text);

	/* without the readers: the store families only */
	struct rod_metrics_src bare = { e->store, NULL, NULL, NULL, NULL };
	assert_int_equal(rod_metrics_render(&bare, &text, &len), 0);
	assert_null(strstr(text, "rodstore_iscsi_sessions"));
	assert_true(has_line(text, "rodstore_volume_read_ops_total{volume=\"db1\"} 0"));
	free(text);
}

static void test_http_loopback_only(void **state)
{
	struct env *e = *state;
	struct rod_ctl_opts co = { .store = e->store, .target_iqn = "iqn.2026-11.io.rodstore:unit" };
	struct rod_ctl *ctl;
	assert_int_equal(rod_ctl_new(&co, &ctl), 0);
	struct rod_http_opts ho = { .ctl = ctl, .store = e->store, .listen = "0.0.0.0:0" };
	struct rod_http_server *s = NULL;
	assert_int_equal(rod_http_server_new(&ho, &s), -EPERM);
	ho.listen = "192.0.2.1:8080";
	assert_int_equal(rod_http_server_new(&ho, &s), -EPERM);
	ho.listen = "nonsense";
	assert_int_equal(rod_http_server_new(&ho, &s), -EINVAL);
	ho.listen = "127.0.0.1:0";
	assert_int_equal(rod_http_server_new(&ho, &s), 0);
	assert_int_equal(strncmp(rod_http_server_address(s), "127.0.0.1:", 10), 0);
	assert_string_not_equal(rod_http_server_address(s), "127.0.0.1:0");
	assert_int_equal(rod_http_server_start(s), 0);
	rod_http_server_free(s);
	/* IPv6 loopback, and a v4-mapped non-loopback address refused */
	ho.listen = "[::1]:0";
	assert_int_equal(rod_http_server_new(&ho, &s), 0);
	assert_int_equal(strncmp(rod_http_server_address(s), "[::1]:", 6), 0);
	rod_http_server_free(s);
	ho.listen = "[::ffff:10.0.0.1]:0";
	assert_int_equal(rod_http_server_new(&ho, &s), -EPERM);
	/* remote allowed explicitly */
	ho.listen = "0.0.0.0:0";
	ho.allow_remote = true;
	assert_int_equal(rod_http_server_new(&ho, &s), 0);
	rod_http_server_free(s);
	rod_ctl_free(ctl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_loopback_only, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
