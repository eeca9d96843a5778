/* CHAP for iSCSI login (RFC 1994 with the RFC 7143 12.1.3 key encoding): MD5 only. */
#ifndef ROD_ISCSI_CHAP_H
#define ROD_ISCSI_CHAP_H

#include <stddef.h>
#include <stdint.h>

#define ISCSI_CHAP_MD5 5             /* CHAP_A value for MD5 */
#define ISCSI_CHAP_DIGEST_LEN 16
#define ISCSI_CHAP_CHALLENGE_LEN 16  /* what we send: 128 random bits */
#define ISCSI_CHAP_BIN_MAX 1024      /* longest challenge/response we decode */

/* Decode a CHAP binary value: "0x" hex or "0b" base64 (RFC 7143 6.1). 0, or -EINVAL
 * when malformed, empty, or longer than max bytes. */
int rod_iscsi_chap_decode(const char *val, uint8_t *out, size_t max, size_t *len);
/* Encode as "0x" + lowercase hex; out needs 2*len+3 bytes. */
void rod_iscsi_chap_encode(const uint8_t *buf, size_t len, char *out, size_t cap);
/* Response = MD5(identifier || secret || challenge). */
void rod_iscsi_chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t clen,
			uint8_t out[ISCSI_CHAP_DIGEST_LEN]);
/* Constant-time comparison of two digests: 0 when equal. */
int rod_iscsi_chap_cmp(const uint8_t *a, const uint8_t *b, size_t len);

#endif
