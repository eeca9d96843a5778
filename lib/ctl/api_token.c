/* API tokens for the HTTP API (see include/rod/ctl_http.h). A token is shown once when
 * it is created; the store keeps only its SHA-256, so a copy of the data directory does
 * not hand out API access. Record ctl/api_token/<id>:
 *   {"id": "<16 hex>", "name": LABEL, "created": ISO-8601, "sha256": "<64 hex>"} */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "rod/ctl_http.h"
#include "rod/log.h"
#include "rod/util.h"

#define PFX_TOKEN "ctl/api_token/"
#define ID_HEX 16
#define SECRET_HEX 64
#define TOKEN_PREFIX "rod_"

static int fail(char **msg, int code, const char *text)
{
	*msg = strdup(text);
	return code;
}

static int sha256_hex(const char *s, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	if (!EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) || len != 32)
		return -EIO;
	rod_hex(md, 32, out);
	return 0;
}

static bool all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool id_valid(const char *id)
{
	return id && strlen(id) == ID_HEX && all_hex(id, ID_HEX);
}

static int fill_random(void *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = getrandom((char *)buf + off, len - off, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		off += (size_t)n;
	}
	return 0;
}

int rod_api_token_create(struct rod_store *s, json_t *params, json_t **res, char **msg)
{
	json_t *jn = params ? json_object_get(params, "name") : NULL;
	const char *name = "";
	if (jn && !json_is_null(jn)) {
		if (!json_is_string(jn) || !rod_name_valid(json_string_value(jn)))
			return fail(msg, ROD_CTL_EINVAL,
				    "token name must be 1-63 letters, digits, '-' or '_' (e.g. --name prometheus)");
		name = json_string_value(jn);
	}
	unsigned char rnd[8 + 32];
	if (fill_random(rnd, sizeof(rnd)))
		return fail(msg, ROD_CTL_EOTHER, "no random numbers from the kernel (getrandom failed)");
	char id[ID_HEX + 1], secret[SECRET_HEX + 1], token[ROD_API_TOKEN_LEN + 1], hash[65];
	rod_hex(rnd, 8, id);
	rod_hex(rnd + 8, 32, secret);
	memset(rnd, 0, sizeof(rnd));
	snprintf(token, sizeof(token), TOKEN_PREFIX "%s_%s", id, secret);
	memset(secret, 0, sizeof(secret));
	if (sha256_hex(token, hash)) {
		memset(token, 0, sizeof(token));
		return fail(msg, ROD_CTL_EOTHER, "cannot hash the token (OpenSSL SHA-256 failed)");
	}
	char created[32];
	time_t now = (time_t)(rod_wall_ns() / 1000000000ull);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *rec = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "name", name, "created", created, "sha256", hash);
	char *txt = json_dumps(rec, JSON_COMPACT);
	char key[64];
	snprintf(key, sizeof(key), PFX_TOKEN "%s", id);
	int rc = txt ? rod_store_meta_put(s, key, txt, strlen(txt)) : -ENOMEM;
	free(txt);
	if (rc) {
		json_decref(rec);
		memset(token, 0, sizeof(token));
		*msg = NULL;
		if (asprintf(msg, "cannot save the token: %s", strerror(-rc)) < 0)
			*msg = NULL;
		return ROD_CTL_EOTHER;
	}
	json_object_del(rec, "sha256");
	json_object_set_new(rec, "token", json_string(token));
	memset(token, 0, sizeof(token));
	rod_info("ctl: API token %s created%s%s", id, name[0] ? " for " : "", name);
	*res = rec;
	return 0;
}

static int list_one(void *arg, const char *key, const void *val, size_t len)
{
	(void)key;
	json_t *rec = json_loadb(val, len, 0, NULL);
	if (!json_is_object(rec)) {
		json_decref(rec);
		return 0;
	}
	json_object_del(rec, "sha256");
	json_array_append_new(arg, rec);
	return 0;
}

int rod_api_token_list(struct rod_store *s, json_t *params, json_t **res, char **msg)
{
	(void)params;
	json_t *arr = json_array();
	int rc = rod_store_meta_scan(s, PFX_TOKEN, list_one, arr);
	if (rc) {
		json_decref(arr);
		return fail(msg, ROD_CTL_EOTHER, "cannot read the token list from the store");
	}
	*res = json_pack("{s:o}", "tokens", arr);
	return 0;
}

int rod_api_token_delete(struct rod_store *s, json_t *params, json_t **res, char **msg)
{
	const char *id = params ? json_string_value(json_object_get(params, "id")) : NULL;
	if (!id)
		return fail(msg, ROD_CTL_EINVAL, "missing parameter \"id\" (rodctl array token list shows ids)");
	if (!id_valid(id))
		return fail(msg, ROD_CTL_EINVAL, "a token id is 16 hex digits (rodctl array token list shows ids)");
	char key[64];
	snprintf(key, sizeof(key), PFX_TOKEN "%s", id);
	void *val = NULL;
	size_t len;
	int rc = rod_store_meta_get(s, key, &val, &len);
	free(val);
	if (rc == -ENOENT)
		return fail(msg, ROD_CTL_ENOENT, "no API token with this id (rodctl array token list shows ids)");
	if (rc == 0)
		rc = rod_store_meta_del(s, key);
	if (rc)
		return fail(msg, ROD_CTL_EOTHER, "cannot delete the token record from the store");
	rod_info("ctl: API token %s deleted", id);
	*res = json_pack("{s:s, s:b}", "id", id, "deleted", 1);
	return 0;
}

bool rod_api_token_valid(struct rod_store *s, const char *token)
{
	size_t plen = strlen(TOKEN_PREFIX);
	if (!token || strlen(token) != ROD_API_TOKEN_LEN || strncmp(token, TOKEN_PREFIX, plen) ||
	    token[plen + ID_HEX] != '_' || !all_hex(token + plen, ID_HEX))
		return false;
	char id[ID_HEX + 1], key[64], hash[65];
	memcpy(id, token + plen, ID_HEX);
	id[ID_HEX] = '\0';
	snprintf(key, sizeof(key), PFX_TOKEN "%s", id);
	void *val = NULL;
	size_t len;
	if (rod_store_meta_get(s, key, &val, &len))
		return false;
	json_t *rec = json_loadb(val, len, 0, NULL);
	free(val);
	const char *want = json_string_value(json_object_get(rec, "sha256"));
	bool ok = want && strlen(want) == 64 && sha256_hex(token, hash) == 0 &&
		  CRYPTO_memcmp(hash, want, 64) == 0;
	json_decref(rec);
	return ok;
}
