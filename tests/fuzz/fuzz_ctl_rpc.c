/* Fuzz target: the control plane's JSON-RPC request handling (rod_ctl_handle_text in
 * lib/ctl/ctl.c: JSON parse, request checks, parameter validation of every method)
 * over a real store (created once per process). Input: one request document.
 * Checked: an answer is one JSON-RPC 2.0 object with either a result or an error,
 * and only a notification (a request without "id") gets none. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/ctl.h"

#include "fuzz_env.h"

static struct rod_ctl *ctl;

static void ctl_free(void)
{
	rod_ctl_free(ctl);
	ctl = NULL;
}

static void bad(const char *what, const char *resp)
{
	fprintf(stderr, "fuzz_ctl_rpc: %s: %s\n", what, resp ? resp : "(none)");
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctl) {
		struct fuzz_env *e = fuzz_env_get(0);
		static const char *const portals[] = { "127.0.0.1:3260", NULL };
		struct rod_ctl_opts o = { .store = e->store, .target_iqn = FUZZ_TARGET_IQN,
					  .portals = portals, .data_dir = e->dir };
		if (rod_ctl_new(&o, &ctl))
			abort();
		atexit(ctl_free);
	}
	/* exact-size copy, not NUL terminated: the handler gets a length */
	char *req = malloc(size ? size : 1);
	memcpy(req, data, size);
	char *resp = rod_ctl_handle_text(ctl, req, size);
	if (resp) {
		json_error_t err;
		json_t *r = json_loads(resp, 0, &err);
		if (!r || !json_is_object(r))
			bad("answer is not a JSON object", resp);
		const char *v = json_string_value(json_object_get(r, "jsonrpc"));
		json_t *res = json_object_get(r, "result"), *e = json_object_get(r, "error");
		if (!v || strcmp(v, "2.0") || !json_object_get(r, "id") || !!res == !!e)
			bad("answer is not JSON-RPC 2.0", resp);
		if (e && (!json_is_integer(json_object_get(e, "code")) ||
			  !json_is_string(json_object_get(e, "message"))))
			bad("error without code or message", resp);
		json_decref(r);
		free(resp);
	} else {
		/* no answer: must have been a valid-looking request without an id */
		json_t *d = json_loadb(req, size, JSON_REJECT_DUPLICATES, NULL);
		if (!d || !json_is_object(d) || json_object_get(d, "id"))
			bad("no answer to a request that needs one", NULL);
		json_decref(d);
	}
	free(req);
	return 0;
}
