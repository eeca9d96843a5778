/* CHAP helpers: value encoding and the MD5 response (RFC 1994 section 4.1). */
#include "iscsi_chap.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "rod/util.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int rod_iscsi_chap_decode(const char *val, uint8_t *out, size_t max, size_t *len)
{
	if (!val || strlen(val) < 3 || val[0] != '0')
		return -EINVAL;
	const char *p = val + 2;
	size_t n = strlen(p);
	if (val[1] == 'x' || val[1] == 'X') {
		/* An odd digit count means a leading zero nibble was dropped. */
		size_t bytes = (n + 1) / 2;
		if (bytes > max)
			return -EINVAL;
		size_t o = 0, i = 0;
		if (n & 1) {
			int v = hexval(p[0]);
			if (v < 0)
				return -EINVAL;
			out[o++] = (uint8_t)v;
			i = 1;
		}
		for (; i < n; i += 2) {
			int hi = hexval(p[i]), lo = hexval(p[i + 1]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			out[o++] = (uint8_t)(hi << 4 | lo);
		}
		*len = o;
		return 0;
	}
	if (val[1] == 'b' || val[1] == 'B') {
		if (n % 4 != 0 || n / 4 * 3 > max + 2)
			return -EINVAL;
		uint8_t tmp[ISCSI_CHAP_BIN_MAX + 3];
		if (n / 4 * 3 > sizeof(tmp))
			return -EINVAL;
		int r = EVP_DecodeBlock(tmp, (const unsigned char *)p, (int)n);
		if (r < 0)
			return -EINVAL;
		size_t pad = 0;
		if (n >= 1 && p[n - 1] == '=')
			pad++;
		if (n >= 2 && p[n - 2] == '=')
			pad++;
		size_t bytes = (size_t)r - pad;
		if (bytes == 0 || bytes > max)
			return -EINVAL;
		memcpy(out, tmp, bytes);
		*len = bytes;
		return 0;
	}
	return -EINVAL;
}

void rod_iscsi_chap_encode(const uint8_t *buf, size_t len, char *out, size_t cap)
{
	if (cap < 2 * len + 3) {
		if (cap)
			out[0] = '\0';
		return;
	}
	out[0] = '0';
	out[1] = 'x';
	rod_hex(buf, len, out + 2);
}

void rod_iscsi_chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t clen,
			uint8_t out[ISCSI_CHAP_DIGEST_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int olen = 0;
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	EVP_DigestUpdate(ctx, &id, 1);
	EVP_DigestUpdate(ctx, secret, strlen(secret));
	EVP_DigestUpdate(ctx, chal, clen);
	EVP_DigestFinal_ex(ctx, out, &olen);
	EVP_MD_CTX_free(ctx);
}

int rod_iscsi_chap_cmp(const uint8_t *a, const uint8_t *b, size_t len)
{
	uint8_t d = 0;
	for (size_t i = 0; i < len; i++)
		d |= a[i] ^ b[i];
	return d != 0;
}
