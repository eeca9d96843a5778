/* Fuzz target: the iSCSI Basic Header Segment checks (rod_iscsi_bhs_check), the
 * first thing every received PDU goes through, and the digest helpers.
 * Input: [4 bytes max_data (big-endian, the MaxRecvDataSegmentLength we declared)]
 *        then any number of 48-byte headers.
 * Checked: an accepted header's lengths are within the declared limits (the caller
 * allocates from them), and a refused one names why. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/util.h"

#include "../../lib/iscsi/iscsi_pdu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint32_t max_data = rod_get_be32(data) & 0xffffff;
	data += 4;
	size -= 4;
	for (; size >= ISCSI_BHS_LEN; data += ISCSI_BHS_LEN, size -= ISCSI_BHS_LEN) {
		/* an exact-size copy so ASan sees a read past the header */
		uint8_t *bhs = malloc(ISCSI_BHS_LEN);
		memcpy(bhs, data, ISCSI_BHS_LEN);
		struct iscsi_bhs_info info;
		const char *why = NULL;
		int r = rod_iscsi_bhs_check(bhs, max_data, &info, &why);
		if (r == 0) {
			if (info.data_len > max_data || info.ahs_len > ISCSI_AHS_MAX ||
			    info.data_len > ISCSI_DATA_SEG_MAX) {
				fprintf(stderr, "accepted BHS with data %u ahs %u (max %u)\n",
					info.data_len, info.ahs_len, max_data);
				abort();
			}
			(void)rod_iscsi_opcode_name(info.opcode);
		} else if (r != -EPROTO || !why) {
			fprintf(stderr, "bhs_check returned %d without a reason\n", r);
			abort();
		}
		uint32_t a = rod_iscsi_digest(bhs, ISCSI_BHS_LEN);
		uint32_t b = rod_iscsi_digest2(bhs, 20, bhs + 20, ISCSI_BHS_LEN - 20);
		if (a != b)
			abort();
		uint8_t d[4];
		rod_iscsi_put_digest(d, a);
		if (rod_iscsi_get_digest(d) != a)
			abort();
		free(bhs);
	}
	return 0;
}
