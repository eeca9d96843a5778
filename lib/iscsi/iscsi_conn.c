/* The iSCSI protocol engine of one connection: login (security and operational
 * negotiation), then the full feature phase: SCSI commands with immediate, unsolicited
 * and solicited (R2T) data, Data-In with status, NOP, Text/SendTargets, task
 * management, logout and Reject. Runs on the connection's thread only. */
#include "iscsi_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/log.h"
#include "rod/util.h"

/* ---- sequence numbers -------------------------------------------------------------- */

static uint32_t max_cmd_sn(struct iscsi_conn *c)
{
	uint32_t free_slots = c->active >= ISCSI_QUEUE_DEPTH ? 0 : ISCSI_QUEUE_DEPTH - c->active;
	return c->exp_cmd_sn + free_slots - 1;
}

/* StatSN (advanced when the PDU carries status), ExpCmdSN, MaxCmdSN at 24/28/32. */
static void put_sns(struct iscsi_conn *c, uint8_t *bhs, bool advance)
{
	rod_put_be32(bhs + 24, advance ? c->stat_sn++ : c->stat_sn);
	rod_put_be32(bhs + 28, c->exp_cmd_sn);
	rod_put_be32(bhs + 32, max_cmd_sn(c));
}

/* Non-immediate requests must arrive in CmdSN order (one connection per session, so
 * anything else is outside the window or a duplicate: RFC 7143 3.2.2.1 says ignore). */
static bool cmdsn_accept(struct iscsi_conn *c, bool immediate, uint32_t cmd_sn, bool scsi)
{
	if (immediate)
		return true;
	if (cmd_sn != c->exp_cmd_sn) {
		rod_debug("iscsi: %s: CmdSN %u outside the window (ExpCmdSN %u): ignored",
			  c->initiator, cmd_sn, c->exp_cmd_sn);
		return false;
	}
	if (scsi && c->active >= ISCSI_QUEUE_DEPTH) {
		rod_debug("iscsi: %s: CmdSN %u above MaxCmdSN: ignored", c->initiator, cmd_sn);
		return false;
	}
	c->exp_cmd_sn++;
	return true;
}

static struct iscsi_pdu *pdu_new(struct iscsi_conn *c, uint8_t opcode, uint8_t flags,
				 uint32_t itt)
{
	struct iscsi_pdu *p = rod_iscsi_pdu_get(c->thr);
	if (p)
		rod_iscsi_bhs_init(p->hdr, opcode, flags, 0, itt);
	return p;
}

static void pdu_set_data(struct iscsi_pdu *p, const void *data, uint32_t len)
{
	p->data = data;
	p->dlen = len;
	rod_put_be24(p->hdr + 5, len);
}

/* RFC 7143 11.17: Reject carries the offending header as its data. */
static void send_reject(struct iscsi_conn *c, uint8_t reason, bool close_after)
{
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_REJECT, ISCSI_FINAL, ISCSI_RSVD_TAG);
	if (!p) {
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	uint8_t *copy = malloc(ISCSI_BHS_LEN);
	if (!copy) {
		rod_iscsi_pdu_put(c->thr, p);
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	memcpy(copy, c->hdr, ISCSI_BHS_LEN);
	p->hdr[2] = reason;
	put_sns(c, p->hdr, true);
	p->owned = copy;
	pdu_set_data(p, copy, ISCSI_BHS_LEN);
	p->close_after = close_after;
	rod_warn("iscsi: %s: rejecting %s (reason 0x%02x)", c->initiator[0] ? c->initiator : c->peer,
		 rod_iscsi_opcode_name(c->cur.opcode), reason);
	rod_iscsi_conn_send(c, p);
}

/* Stop reading; the connection closes once its output is sent. */
static void conn_wind_down(struct iscsi_conn *c)
{
	rod_iscsi_conn_pause_input(c);
}

/* ---- tasks -------------------------------------------------------------------------- */

static struct iscsi_task **itt_bucket(struct iscsi_conn *c, uint32_t itt)
{
	return &c->itt_hash[(itt ^ (itt >> 8) ^ (itt >> 16)) & 255];
}

static struct iscsi_task *task_find(struct iscsi_conn *c, uint32_t itt)
{
	for (struct iscsi_task *t = *itt_bucket(c, itt); t; t = t->hnext)
		if (t->itt == itt)
			return t;
	return NULL;
}

static void task_unhash(struct iscsi_task *t)
{
	struct iscsi_task **pp = itt_bucket(t->conn, t->itt);
	while (*pp && *pp != t)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = t->hnext;
	t->hnext = NULL;
}

static struct iscsi_task *task_new(struct iscsi_conn *c, uint32_t itt)
{
	struct iscsi_task *t = rod_iscsi_task_get(c->thr);
	if (!t)
		return NULL;
	t->conn = c;
	t->itt = itt;
	t->next = c->tasks;
	if (c->tasks)
		c->tasks->prev = t;
	c->tasks = t;
	struct iscsi_task **b = itt_bucket(c, itt);
	t->hnext = *b;
	*b = t;
	c->ntasks++;
	return t;
}

void rod_iscsi_task_free(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct iscsi_thread *th = c->thr;
	task_unhash(t);
	if (t->prev)
		t->prev->next = t->next;
	else
		c->tasks = t->next;
	if (t->next)
		t->next->prev = t->prev;
	if (t->counted) {
		c->active--;
		t->counted = false;
	}
	if (t->exec_held)
		c->nheld--;
	if (t->ord_pre)
		c->ord_pre--;
	t->exec_held = t->ord_pre = false;
	if (t->buf)
		rod_iscsi_buf_put(th, t->buf, t->buf_class);
	t->buf = NULL;
	c->ntasks--;
	t->next = th->task_free;
	th->task_free = t;
	rod_iscsi_conn_maybe_finish(c);
}

/* The connection is gone: tasks not inside the SCSI core go now; the others are
 * marked so their completion only frees them. */
void rod_iscsi_conn_abort_tasks(struct iscsi_conn *c)
{
	struct iscsi_task *t = c->tasks;
	while (t) {
		struct iscsi_task *n = t->next;
		if (t->state == TASK_DATA_OUT)
			rod_iscsi_task_free(t);
		else
			t->aborted = true;
		t = n;
	}
	while (c->tmfs) {
		struct iscsi_tmf *m = c->tmfs;
		c->tmfs = m->next;
		free(m);
	}
	c->tmfs_tail = NULL;
}

/* No more input will come (end of stream, logout, server stop): commands still
 * waiting for Data-Out can never run, so they go now (RFC 7143 6.x: ERL 0, the
 * connection's tasks end with it). */
void rod_iscsi_conn_input_ended(struct iscsi_conn *c)
{
	struct iscsi_task *t = c->tasks;
	while (t) {
		struct iscsi_task *n = t->next;
		if (t->state == TASK_DATA_OUT)
			rod_iscsi_task_free(t);
		t = n;
	}
}

static void task_exec(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	if (t->ord_pre) {
		t->ord_pre = false;
		c->ord_pre--;
	}
	t->state = TASK_EXEC;
	c->nexec++;
	struct rod_scsi_cmd *cmd = &t->cmd;
	if (cmd->dir == ROD_SCSI_DIR_OUT) {
		cmd->out_buf = t->buf;
		cmd->out_len = t->received;
	} else if (cmd->dir == ROD_SCSI_DIR_IN) {
		cmd->in_buf = t->buf;
		cmd->in_cap = t->exp_len;
	}
	cmd->done = rod_iscsi_done_fn();
	cmd->transport_priv = t;
	rod_scsi_exec(c->srv->scsi, cmd);
}

/* Ask for more Data-Out: R2Ts up to MaxOutstandingR2T, each up to MaxBurstLength. */
static void task_solicit(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	uint32_t max_out = ROD_MIN(c->params.max_outstanding_r2t, ISCSI_MAX_R2T);
	while (t->r2t_count < max_out && t->solicited < t->exp_len) {
		uint32_t len = ROD_MIN(c->params.max_burst, t->exp_len - t->solicited);
		uint32_t slot = (t->r2t_head + t->r2t_count) % ISCSI_MAX_R2T;
		uint32_t ttt = c->next_ttt++;
		if (ttt == ISCSI_RSVD_TAG)
			ttt = c->next_ttt++;
		t->r2t[slot].ttt = ttt;
		t->r2t[slot].off = t->solicited;
		t->r2t[slot].len = len;
		t->r2t[slot].next_sn = 0;
		t->r2t_count++;
		struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_R2T, ISCSI_FINAL, t->itt);
		if (!p) {
			rod_iscsi_conn_close(c, "out of memory");
			return;
		}
		memcpy(p->hdr + 8, t->lun_raw, 8);
		rod_put_be32(p->hdr + 20, ttt);
		put_sns(c, p->hdr, false);
		rod_put_be32(p->hdr + 36, t->r2t_sn++);
		rod_put_be32(p->hdr + 40, t->solicited);
		rod_put_be32(p->hdr + 44, len);
		rod_iscsi_conn_send(c, p);
		t->solicited += len;
	}
}

/* Task attributes across Data-Out: an ORDERED command goes to the SCSI core only
 * after every earlier command of this connection on its LUN has (none still collecting
 * Data-Out), and a SIMPLE one only after every earlier ORDERED one has; HEAD OF QUEUE
 * and ACA never wait. Without an ORDERED command about, SIMPLE ones pay one test. */
static bool exec_must_wait(struct iscsi_task *t)
{
	enum rod_scsi_task_attr a = t->cmd.attr;
	if (a == ROD_TASK_HEAD_OF_QUEUE || a == ROD_TASK_ACA)
		return false;
	bool ordered = a == ROD_TASK_ORDERED;
	if (!ordered && !t->conn->ord_pre)
		return false;
	for (struct iscsi_task *k = t->next; k; k = k->next) {   /* earlier commands */
		if (k->state != TASK_DATA_OUT || k->refused || k->cmd.lun != t->cmd.lun)
			continue;
		if (ordered || k->cmd.attr == ROD_TASK_ORDERED)
			return true;
	}
	return false;
}

/* Pass on held commands that may go now, oldest first. */
static void exec_hold_release(struct iscsi_conn *c)
{
	while (c->nheld) {
		struct iscsi_task *go = NULL;
		for (struct iscsi_task *k = c->tasks; k; k = k->next)
			if (k->exec_held && !exec_must_wait(k))
				go = k;    /* the list is newest first: keep the oldest */
		if (!go)
			return;
		go->exec_held = false;
		c->nheld--;
		task_exec(go);
	}
}

/* After data arrived: run the command once all of it is in, else solicit more. */
static void task_advance(struct iscsi_task *t)
{
	if (t->received == t->exp_len || t->cmd.dir != ROD_SCSI_DIR_OUT) {
		struct iscsi_conn *c = t->conn;
		if (exec_must_wait(t)) {
			t->exec_held = true;
			c->nheld++;
			return;
		}
		task_exec(t);
		if (c->nheld)
			exec_hold_release(c);
		return;
	}
	if (t->received >= t->unsol_end)
		task_solicit(t);
}

/* Transport-level failure of a command (the SCSI core never sees it): fixed format
 * sense. Used for a transfer length beyond what this target buffers or a bidirectional
 * command (ILLEGAL REQUEST / INVALID FIELD IN CDB), and for Data-Out that breaks the
 * sequence rules (ABORTED COMMAND / DATA PHASE ERROR family, SPC-4 ASC 4Bh). */
static void task_fail(struct iscsi_task *t, uint8_t key, uint8_t asc, uint8_t ascq)
{
	uint8_t *s = t->cmd.sense;
	memset(s, 0, 18);
	s[0] = 0x70;
	s[2] = key;
	s[7] = 10;
	s[12] = asc;
	s[13] = ascq;
	t->cmd.sense_len = 18;
	t->cmd.status = SAM_STAT_CHECK_CONDITION;
	t->cmd.in_len = 0;
}

static void tmf_progress(struct iscsi_conn *c);
static void logout_progress(struct iscsi_conn *c);
static void task_respond(struct iscsi_task *t);

/* Queue Data-In (with status in the last PDU when there is no sense) and/or the SCSI
 * Response. The last PDU of the task releases it once written. */
static void task_respond(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	struct rod_scsi_cmd *cmd = &t->cmd;
	uint32_t in_len = cmd->dir == ROD_SCSI_DIR_IN ? ROD_MIN(cmd->in_len, t->exp_len) : 0;
	uint8_t rflags = 0;
	uint32_t residual = 0;
	/* Residuals (RFC 7143 11.4.5): against what the CDB implied (xfer_len, from the
	 * SCSI core) when known, else against what actually moved. */
	uint32_t moved = cmd->dir == ROD_SCSI_DIR_IN ? in_len
			 : cmd->dir == ROD_SCSI_DIR_OUT ? t->received : 0;
	if (cmd->xfer_len && cmd->xfer_len > t->exp_len) {
		rflags |= ISCSI_RSP_OVERFLOW;
		residual = cmd->xfer_len - t->exp_len;
	} else {
		if (cmd->xfer_len && cmd->dir == ROD_SCSI_DIR_OUT)
			moved = ROD_MIN(moved, cmd->xfer_len);
		if (moved < t->exp_len) {
			rflags |= ISCSI_RSP_UNDERFLOW;
			residual = t->exp_len - moved;
		}
	}
	/* The window slot opens when the status is queued. */
	if (t->counted) {
		c->active--;
		t->counted = false;
	}
	t->state = TASK_RESPONDED;
	bool collapse = cmd->sense_len == 0;
	uint32_t chunk = c->params.max_recv_dsl_ini;
	uint32_t burst = c->params.max_burst;
	uint32_t off = 0, seq = 0;
	while (off < in_len) {
		uint32_t len = ROD_MIN(chunk, in_len - off);
		bool last = off + len == in_len;
		uint8_t fl = 0;
		/* A Data-In sequence (ended by F) carries at most MaxBurstLength bytes
		 * (RFC 7143 11.7.1); PDUs never straddle a sequence end. */
		if (seq + len > burst)
			len = burst - seq;
		last = off + len == in_len;
		seq += len;
		if (last || seq == burst || seq + ROD_MIN(chunk, in_len - off - len) > burst) {
			fl |= ISCSI_FINAL;
			seq = 0;
		}
		if (last && collapse)
			fl |= ISCSI_DATAIN_STATUS | rflags;
		struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_DATA_IN, fl, t->itt);
		if (!p) {
			rod_iscsi_conn_close(c, "out of memory");
			return;
		}
		if (last && collapse) {
			p->hdr[3] = cmd->status;
			put_sns(c, p->hdr, true);
			rod_put_be32(p->hdr + 44, residual);
			p->release = t;
		} else {
			put_sns(c, p->hdr, false);
			rod_put_be32(p->hdr + 24, 0);
		}
		rod_put_be32(p->hdr + 20, ISCSI_RSVD_TAG);
		rod_put_be32(p->hdr + 36, t->data_sn++);
		rod_put_be32(p->hdr + 40, off);
		pdu_set_data(p, t->buf + off, len);
		rod_iscsi_conn_send(c, p);
		off += len;
		if (last && collapse)
			return;
	}
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_SCSI_RSP, ISCSI_FINAL | rflags, t->itt);
	if (!p) {
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	p->hdr[2] = 0;   /* command completed at target */
	p->hdr[3] = cmd->status;
	put_sns(c, p->hdr, true);
	rod_put_be32(p->hdr + 36, cmd->dir == ROD_SCSI_DIR_IN ? t->data_sn : t->r2t_sn);
	rod_put_be32(p->hdr + 44, residual);
	if (cmd->sense_len) {
		uint32_t sl = ROD_MIN(cmd->sense_len, (uint32_t)ROD_SCSI_SENSE_MAX);
		rod_put_be16(t->sense_seg, (uint16_t)sl);
		memcpy(t->sense_seg + 2, cmd->sense, sl);
		pdu_set_data(p, t->sense_seg, 2 + sl);
	}
	p->release = t;
	rod_iscsi_conn_send(c, p);
}

/* Completion, back on the connection's thread. */
void rod_iscsi_task_complete(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	c->nexec--;
	if (c->state == CONN_DEAD) {
		rod_iscsi_task_free(t);
		return;
	}
	if (t->tmf_wait) {
		/* the other sessions' tasks of a TMF are gone: its response may go */
		struct iscsi_tmf *m = t->tmf_wait;
		rod_iscsi_task_free(t);
		if (m->waiting)
			m->waiting--;
		tmf_progress(c);
		return;
	}
	if (t->cmd.aborted) {
		/* Aborted by task management of another session (CLEAR TASK SET, LU or
		 * target reset, PREEMPT AND ABORT; TAS=0): no response; the initiator
		 * learns it from the unit attention (SAM-5 5.6). */
		t->aborted = true;
	}
	if (t->aborted) {
		/* RFC 7143 4.2.3.x: an aborted task gets no response; its TMF may now go. */
		struct iscsi_tmf *m = t->tmf;
		rod_iscsi_task_free(t);
		if (m && m->waiting)
			m->waiting--;
		tmf_progress(c);
		logout_progress(c);
		return;
	}
	task_respond(t);
	logout_progress(c);
}

/* ---- SCSI Command and Data-Out ------------------------------------------------------ */

static const enum rod_scsi_task_attr attr_map[8] = {
	ROD_TASK_SIMPLE,     /* 0: untagged, treated as simple */
	ROD_TASK_SIMPLE, ROD_TASK_ORDERED, ROD_TASK_HEAD_OF_QUEUE, ROD_TASK_ACA,
	ROD_TASK_SIMPLE, ROD_TASK_SIMPLE, ROD_TASK_SIMPLE,
};

/* Header of a SCSI Command: create the task and point the receive at its buffer. */
static int rx_scsi_cmd_header(struct iscsi_conn *c)
{
	const uint8_t *h = c->hdr;
	uint8_t fl = h[1];
	uint32_t itt = rod_get_be32(h + 16);
	uint32_t edtl = rod_get_be32(h + 20);
	uint32_t cmd_sn = rod_get_be32(h + 24);
	uint32_t dlen = c->cur.data_len;
	bool rd = fl & ISCSI_CMD_READ, wr = fl & ISCSI_CMD_WRITE, fbit = fl & ISCSI_FINAL;

	if (c->discovery) {
		send_reject(c, ISCSI_REJECT_PROTOCOL, false);
		return 0;
	}
	if (!cmdsn_accept(c, c->cur.immediate, cmd_sn, true))
		return 0;   /* data (if any) is discarded */
	if (itt == ISCSI_RSVD_TAG || task_find(c, itt)) {
		send_reject(c, itt == ISCSI_RSVD_TAG ? ISCSI_REJECT_PROTOCOL
						     : ISCSI_REJECT_TASK_IN_PROGRESS, false);
		return 0;
	}
	/* Data rules (RFC 7143 11.3): data only with W, within EDTL and FirstBurstLength,
	 * immediate data only if negotiated, F=0 only when unsolicited Data-Out follows. */
	if ((dlen && (!wr || !c->params.immediate_data || dlen > edtl ||
		      dlen > c->params.first_burst)) ||
	    (!fbit && (!wr || c->params.initial_r2t)) || (wr && !edtl && !fbit)) {
		send_reject(c, ISCSI_REJECT_PROTOCOL, false);
		return 0;
	}
	if (c->ntasks >= 2 * ISCSI_QUEUE_DEPTH) {
		send_reject(c, ISCSI_REJECT_OUT_OF_RESOURCES, false);
		return 0;
	}
	struct iscsi_task *t = task_new(c, itt);
	if (!t) {
		send_reject(c, ISCSI_REJECT_OUT_OF_RESOURCES, false);
		return 0;
	}
	t->cmd_sn = cmd_sn;
	t->immediate = c->cur.immediate;
	t->counted = !t->immediate;
	if (t->counted)
		c->active++;
	t->state = TASK_DATA_OUT;
	t->final_seen = fbit;
	memcpy(t->lun_raw, h + 8, 8);
	struct rod_scsi_cmd *cmd = &t->cmd;
	cmd->nexus = &c->nexus;
	rod_scsi_cmd_received(c->srv->scsi, cmd);
	cmd->lun = rod_scsi_lun_decode(h + 8);
	cmd->tag = itt;
	cmd->attr = attr_map[fl & ISCSI_CMD_ATTR_MASK];
	if (cmd->attr == ROD_TASK_ORDERED) {
		t->ord_pre = true;
		c->ord_pre++;
	}
	cmd->dir = wr ? ROD_SCSI_DIR_OUT : rd ? ROD_SCSI_DIR_IN : ROD_SCSI_DIR_NONE;
	cmd->exp_len = edtl;
	t->exp_len = edtl;
	memcpy(cmd->cdb, h + 32, 16);
	cmd->cdb_len = 16;

	/* AHS: extended CDB (type 1) and bidirectional read length (type 2). */
	bool bad_ahs = false, bidi = rd && wr;
	for (uint32_t off = 0; off + 4 <= c->cur.ahs_len;) {
		const uint8_t *a = c->hdr + ISCSI_BHS_LEN + off;
		uint32_t alen = rod_get_be16(a);
		uint8_t type = a[2];
		uint32_t total = ROD_ROUND_UP(alen + 3, 4);
		if (alen == 0 || off + total > c->cur.ahs_len) {
			bad_ahs = true;
			break;
		}
		if (type == 1) {
			uint32_t extra = alen - 1;   /* one reserved byte precedes the CDB bytes */
			if (16 + extra > ROD_SCSI_CDB_MAX) {
				bad_ahs = true;
				break;
			}
			memcpy(cmd->cdb + 16, a + 4, extra);
			cmd->cdb_len = (uint8_t)(16 + extra);
		} else if (type == 2) {
			bidi = true;
		}
		off += total;
	}
	if (bad_ahs) {
		rod_iscsi_task_free(t);
		send_reject(c, ISCSI_REJECT_PROTOCOL, false);
		return 0;
	}
	if (bidi || edtl > ISCSI_MAX_CMD_BYTES) {
		/* Answer once the PDU is in; unsolicited Data-Out for it will be discarded. */
		task_fail(t, 0x05, 0x24, 0x00);
		t->cmd.dir = ROD_SCSI_DIR_NONE;
		t->refused = true;
		c->rx_task = t;
		return 0;
	}
	if (edtl) {
		t->buf = rod_iscsi_buf_get(c->thr, edtl, &t->buf_class);
		if (!t->buf) {
			rod_iscsi_task_free(t);
			send_reject(c, ISCSI_REJECT_OUT_OF_RESOURCES, false);
			return 0;
		}
	}
	if (wr) {
		t->unsol_end = fbit ? dlen : ROD_MIN(c->params.first_burst, edtl);
		if (!fbit && t->unsol_end <= dlen) {
			rod_iscsi_task_free(t);
			send_reject(c, ISCSI_REJECT_PROTOCOL, false);
			return 0;
		}
		t->solicited = t->unsol_end;
	}
	c->rx_task = t;
	c->rx_dst = dlen ? t->buf : NULL;
	return 0;
}

static void rx_scsi_cmd_done(struct iscsi_conn *c)
{
	struct iscsi_task *t = c->rx_task;
	if (!t)
		return;
	if (t->refused) {
		/* refused at the transport level: answer now */
		task_respond(t);
		return;
	}
	t->received = c->cur.data_len;
	task_advance(t);
}

static int data_out_error(struct iscsi_task *t, uint8_t asc, uint8_t ascq)
{
	struct iscsi_conn *c = t->conn;
	task_fail(t, 0x0b, asc, ascq);   /* ABORTED COMMAND */
	t->cmd.dir = ROD_SCSI_DIR_NONE;
	task_respond(t);                  /* later Data-Out for it is discarded */
	if (c->nheld)
		exec_hold_release(c);      /* it no longer holds later commands back */
	return 0;
}

/* Header of a Data-Out: check it belongs where it says (RFC 7143 11.7). */
static int rx_data_out_header(struct iscsi_conn *c)
{
	const uint8_t *h = c->hdr;
	uint32_t itt = rod_get_be32(h + 16), ttt = rod_get_be32(h + 20);
	uint32_t data_sn = rod_get_be32(h + 36), off = rod_get_be32(h + 40);
	uint32_t len = c->cur.data_len;
	bool fbit = h[1] & ISCSI_FINAL;
	struct iscsi_task *t = task_find(c, itt);
	if (!t || t->state != TASK_DATA_OUT || t->refused)
		return 0;   /* for an aborted or refused task: discard (RFC 7143 11.7) */
	/* A Data-Out that breaks the sequence (wrong offset, DataSN, TTT or F bit) fails
	 * its command; the connection and the other commands carry on. */
	if (off != t->received || (uint64_t)off + len > t->exp_len) {
		rod_warn("iscsi: %s: Data-Out offset %u length %u, expected offset %u of %u",
			 c->initiator, off, len, t->received, t->exp_len);
		return data_out_error(t, 0x4b, 0x05);   /* DATA OFFSET ERROR */
	}
	if (ttt == ISCSI_RSVD_TAG) {
		if (off + len > t->unsol_end || data_sn != t->unsol_sn ||
		    (fbit != (off + len == t->unsol_end))) {
			rod_warn("iscsi: %s: bad unsolicited Data-Out (DataSN %u, expected %u; "
				 "offset %u length %u; first burst ends at %u; F=%d)",
				 c->initiator, data_sn, t->unsol_sn, off, len, t->unsol_end, fbit);
			return data_out_error(t, 0x4b, 0x00);   /* DATA PHASE ERROR */
		}
	} else {
		if (!t->r2t_count || t->r2t[t->r2t_head].ttt != ttt) {
			rod_warn("iscsi: %s: Data-Out with unknown TTT 0x%x", c->initiator, ttt);
			/* INVALID TARGET PORT TRANSFER TAG RECEIVED */
			return data_out_error(t, 0x4b, 0x01);
		}
		uint32_t end = t->r2t[t->r2t_head].off + t->r2t[t->r2t_head].len;
		if (off + len > end || data_sn != t->r2t[t->r2t_head].next_sn ||
		    fbit != (off + len == end)) {
			rod_warn("iscsi: %s: bad Data-Out (DataSN %u, expected %u; offset %u "
				 "length %u; burst ends at %u; F=%d)", c->initiator, data_sn,
				 t->r2t[t->r2t_head].next_sn, off, len, end, fbit);
			return data_out_error(t, 0x4b, 0x00);
		}
	}
	c->rx_task = t;
	c->rx_dst = t->buf + off;
	return 0;
}

static void rx_data_out_done(struct iscsi_conn *c)
{
	struct iscsi_task *t = c->rx_task;
	if (!t)
		return;
	uint32_t ttt = rod_get_be32(c->hdr + 20);
	t->received += c->cur.data_len;
	if (ttt == ISCSI_RSVD_TAG) {
		t->unsol_sn++;
	} else {
		t->r2t[t->r2t_head].next_sn++;
		uint32_t end = t->r2t[t->r2t_head].off + t->r2t[t->r2t_head].len;
		if (t->received == end) {
			t->r2t_head = (t->r2t_head + 1) % ISCSI_MAX_R2T;
			t->r2t_count--;
		}
	}
	task_advance(t);
}

/* ---- NOP, Text, Logout, SNACK --------------------------------------------------------- */

static uint8_t *copy_data(struct iscsi_conn *c, uint32_t len)
{
	uint8_t *d = malloc(len ? len : 1);
	if (d && len)
		memcpy(d, c->scratch, len);
	return d;
}

static int rx_nop_out(struct iscsi_conn *c)
{
	const uint8_t *h = c->hdr;
	uint32_t itt = rod_get_be32(h + 16), ttt = rod_get_be32(h + 20);
	if (itt == ISCSI_RSVD_TAG) {
		/* An answer to our NOP-In ping (must be immediate, RFC 7143 11.18). */
		if (!c->cur.immediate) {
			send_reject(c, ISCSI_REJECT_PROTOCOL, false);
			return 0;
		}
		if (ttt == c->nop_ttt)
			c->nop_sent_ns = 0;
		return 0;
	}
	if (!cmdsn_accept(c, c->cur.immediate, rod_get_be32(h + 24), false))
		return 0;
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_NOP_IN, ISCSI_FINAL, itt);
	if (!p)
		return -ENOMEM;
	memcpy(p->hdr + 8, h + 8, 8);
	rod_put_be32(p->hdr + 20, ISCSI_RSVD_TAG);
	put_sns(c, p->hdr, true);
	uint32_t len = ROD_MIN(c->cur.data_len, c->params.max_recv_dsl_ini);
	if (len) {
		p->owned = copy_data(c, len);
		if (!p->owned) {
			rod_iscsi_pdu_put(c->thr, p);
			return -ENOMEM;
		}
		pdu_set_data(p, p->owned, len);
	}
	rod_iscsi_conn_send(c, p);
	return 0;
}

/* SendTargets (RFC 7143 Appendix C): our one target and every portal. Wildcard
 * listeners are reported as the address this connection reached. */
static void add_send_targets(struct iscsi_conn *c, const char *what, struct iscsi_text_out *o)
{
	struct rod_iscsi_server *s = c->srv;
	if (strcmp(what, "All") != 0 && what[0] && strcmp(what, s->target_name) != 0)
		return;
	if (!what[0] && c->discovery)
		return;
	rod_iscsi_text_add(o, "TargetName", "%s", s->target_name);
	for (int i = 0; i < s->nlisten; i++) {
		const char *portal = s->portals[i];
		bool wildcard = strncmp(portal, "0.0.0.0:", 8) == 0 || strncmp(portal, "[::]:", 5) == 0;
		if (wildcard && c->local[0]) {
			/* keep the listener's port, use the connection's address */
			const char *lp = strrchr(c->local, ':'), *pp = strrchr(portal, ':');
			rod_iscsi_text_add(o, "TargetAddress", "%.*s%s,%u", (int)(lp - c->local),
					   c->local, pp, ISCSI_TPGT);
		} else {
			rod_iscsi_text_add(o, "TargetAddress", "%s,%u", portal, ISCSI_TPGT);
		}
	}
	if (s->nlisten == 0 && c->local[0])
		rod_iscsi_text_add(o, "TargetAddress", "%s,%u", c->local, ISCSI_TPGT);
}

static int rx_text(struct iscsi_conn *c)
{
	const uint8_t *h = c->hdr;
	uint32_t itt = rod_get_be32(h + 16);
	bool cont = h[1] & ISCSI_TEXT_CONTINUE;
	if (!cmdsn_accept(c, c->cur.immediate, rod_get_be32(h + 24), false))
		return 0;
	if (c->text_len + c->cur.data_len > ISCSI_TEXT_MAX)
		return -EPROTO;
	char *nt = realloc(c->text, c->text_len + c->cur.data_len + 1);
	if (!nt)
		return -ENOMEM;
	c->text = nt;
	if (c->cur.data_len) /* no data yet: scratch may still be NULL */
		memcpy(c->text + c->text_len, c->scratch, c->cur.data_len);
	c->text_len += c->cur.data_len;

	uint32_t cap = ROD_MIN(c->params.max_recv_dsl_ini, 65536u);
	char *out = malloc(cap);
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_TEXT_RSP, ISCSI_FINAL, itt);
	if (!out || !p) {
		free(out);
		if (p)
			rod_iscsi_pdu_put(c->thr, p);
		return -ENOMEM;
	}
	p->owned = out;
	struct iscsi_text_out o = { out, cap, 0, false };
	if (cont) {
		/* RFC 7143 11.10: more text follows; answer empty with a TTT. */
		p->hdr[1] = 0;
		rod_put_be32(p->hdr + 20, 0x7ffffffe);
	} else {
		struct iscsi_kv kv[ISCSI_TEXT_KEYS_MAX];
		size_t n = 0;
		int r = rod_iscsi_text_parse(c->text, c->text_len, kv, ISCSI_TEXT_KEYS_MAX, &n);
		c->text_len = 0;
		if (r < 0) {
			rod_iscsi_pdu_put(c->thr, p);
			send_reject(c, ISCSI_REJECT_PROTOCOL, false);
			return 0;
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(kv[i].key, "SendTargets") == 0)
				add_send_targets(c, kv[i].val, &o);
			else if (strncmp(kv[i].key, "X-", 2) == 0 || strncmp(kv[i].key, "X#", 2) == 0)
				rod_iscsi_text_add(&o, kv[i].key, "NotUnderstood");
			else
				/* operational keys are fixed once the session runs */
				rod_iscsi_text_add(&o, kv[i].key, "Reject");
		}
		rod_put_be32(p->hdr + 20, ISCSI_RSVD_TAG);
		if (o.overflow) {
			rod_warn("iscsi: %s: text response larger than %u bytes", c->initiator, cap);
			rod_iscsi_pdu_put(c->thr, p);
			send_reject(c, ISCSI_REJECT_OUT_OF_RESOURCES, false);
			return 0;
		}
	}
	put_sns(c, p->hdr, true);
	pdu_set_data(p, out, (uint32_t)o.len);
	rod_iscsi_conn_send(c, p);
	return 0;
}

static void send_logout_response(struct iscsi_conn *c, uint32_t itt, uint8_t response)
{
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_LOGOUT_RSP, ISCSI_FINAL, itt);
	if (!p) {
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	p->hdr[2] = response;
	put_sns(c, p->hdr, true);
	/* Time2Wait / Time2Retain: 0, nothing to reconnect to at ERL 0. */
	p->close_after = true;
	rod_iscsi_conn_send(c, p);
}

static void logout_progress(struct iscsi_conn *c)
{
	if (c->logout_pending && c->nexec == 0) {
		c->logout_pending = false;
		send_logout_response(c, c->logout_itt, 0);
	}
}

static int rx_logout(struct iscsi_conn *c)
{
	const uint8_t *h = c->hdr;
	uint8_t reason = h[1] & 0x7f;
	uint32_t itt = rod_get_be32(h + 16);
	uint16_t cid = rod_get_be16(h + 20);
	if (!cmdsn_accept(c, c->cur.immediate, rod_get_be32(h + 24), false))
		return 0;
	if (reason == 2) {
		/* remove the connection for recovery: not at ERL 0 */
		struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_LOGOUT_RSP, ISCSI_FINAL, itt);
		if (!p)
			return -ENOMEM;
		p->hdr[2] = 2;
		put_sns(c, p->hdr, true);
		rod_iscsi_conn_send(c, p);
		return 0;
	}
	if (reason > 2)
		return -EPROTO;
	if (reason == 1 && cid != c->cid) {
		struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_LOGOUT_RSP, ISCSI_FINAL, itt);
		if (!p)
			return -ENOMEM;
		p->hdr[2] = 1;   /* CID not found */
		put_sns(c, p->hdr, true);
		rod_iscsi_conn_send(c, p);
		return 0;
	}
	/* No more input; tasks still collecting Data-Out will never get it. Answer once
	 * the commands in the SCSI core are done (their responses go first). */
	conn_wind_down(c);
	c->logout_pending = true;
	c->logout_itt = itt;
	logout_progress(c);
	return 0;
}

/* ---- asynchronous messages ----------------------------------------------------------- */

void rod_iscsi_conn_send_async(struct iscsi_conn *c, uint8_t event, uint16_t param2,
			       uint16_t param3)
{
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_ASYNC, ISCSI_FINAL, ISCSI_RSVD_TAG);
	if (!p) {
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	put_sns(c, p->hdr, true);
	p->hdr[36] = event;
	rod_put_be16(p->hdr + 40, param2);
	rod_put_be16(p->hdr + 42, param3);
	rod_iscsi_conn_send(c, p);
}

/* ---- task management ----------------------------------------------------------------- */

enum {
	TMF_RSP_COMPLETE = 0,
	TMF_RSP_NO_TASK = 1,
	TMF_RSP_NO_LUN = 2,
	TMF_RSP_REASSIGN_UNSUPPORTED = 4,
	TMF_RSP_NOT_SUPPORTED = 5,
	TMF_RSP_REJECTED = 255,
};

/* RFC 7143 11.5.1 function codes -> what they cover and the SCSI core's function. */
struct tmf_rule {
	uint8_t function;
	enum rod_scsi_tmf scsi_fn;
	bool per_lun;       /* affects the tasks of one LUN; else every task of the session */
	bool aborts;        /* aborts tasks (vs. only LU-side effects) */
	bool close_after;   /* TARGET COLD RESET drops the connection */
};

static const struct tmf_rule tmf_rules[] = {
	{ 1, ROD_TMF_ABORT_TASK, true, true, false },
	{ 2, ROD_TMF_ABORT_TASK_SET, true, true, false },
	{ 3, ROD_TMF_CLEAR_ACA, true, false, false },
	{ 4, ROD_TMF_CLEAR_TASK_SET, true, true, false },
	{ 5, ROD_TMF_LOGICAL_UNIT_RESET, true, true, false },
	{ 6, ROD_TMF_TARGET_WARM_RESET, false, true, false },
	{ 7, ROD_TMF_TARGET_COLD_RESET, false, true, true },
};

static void send_tmf_response(struct iscsi_conn *c, uint32_t itt, uint8_t response,
			      bool close_after)
{
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_TMF_RSP, ISCSI_FINAL, itt);
	if (!p) {
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	p->hdr[2] = response;
	put_sns(c, p->hdr, true);
	p->close_after = close_after;
	rod_iscsi_conn_send(c, p);
}

/* TMF responses go out in order, each once the tasks it aborted are finished. */
static void tmf_progress(struct iscsi_conn *c)
{
	while (c->tmfs && c->tmfs->waiting == 0) {
		struct iscsi_tmf *m = c->tmfs;
		c->tmfs = m->next;
		if (!c->tmfs)
			c->tmfs_tail = NULL;
		send_tmf_response(c, m->itt, m->response, false);
		free(m);
	}
}

static void task_abort(struct iscsi_task *t, struct iscsi_tmf *m)
{
	if (t->tmf_wait)
		return;
	if (t->state == TASK_DATA_OUT) {
		rod_iscsi_task_free(t);
	} else if (t->state == TASK_EXEC && !t->aborted) {
		t->aborted = true;
		t->tmf = m;
		m->waiting++;
		/* dormant behind an ORDERED command: finish it now, unrun */
		rod_scsi_cmd_abort(t->conn->srv->scsi, &t->cmd);
	}
	/* TASK_RESPONDED: already answered, nothing to abort. */
}

/* From the SCSI core (any thread): every task of other sessions is gone. */
static void tmf_wait_done(void *arg)
{
	struct rod_scsi_cmd *cmd = arg;
	cmd->done(cmd);
}

static int rx_tmf(struct iscsi_conn *c)
{
	const uint8_t *h = c->hdr;
	uint8_t fn = h[1] & 0x7f;
	uint32_t itt = rod_get_be32(h + 16), rtt = rod_get_be32(h + 20);
	uint32_t ref_cmd_sn = rod_get_be32(h + 32);
	if (c->discovery) {
		send_reject(c, ISCSI_REJECT_PROTOCOL, false);
		return 0;
	}
	if (!cmdsn_accept(c, c->cur.immediate, rod_get_be32(h + 24), false))
		return 0;
	const struct tmf_rule *rule = NULL;
	for (size_t i = 0; i < ROD_ARRAY_SIZE(tmf_rules); i++)
		if (tmf_rules[i].function == fn)
			rule = &tmf_rules[i];
	if (!rule) {
		send_tmf_response(c, itt, fn == 8 ? TMF_RSP_REASSIGN_UNSUPPORTED
						  : TMF_RSP_NOT_SUPPORTED, false);
		return 0;
	}
	uint64_t lun = rod_scsi_lun_decode(h + 8);
	struct iscsi_tmf *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->itt = itt;
	m->response = TMF_RSP_COMPLETE;

	/* Tasks of other sessions this function aborts are tracked by a stand-in task
	 * that "completes" through the completion queues once they are all gone. */
	struct iscsi_task *w = task_new(c, ISCSI_RSVD_TAG);
	if (!w) {
		free(m);
		return -ENOMEM;
	}
	task_unhash(w);
	w->state = TASK_EXEC;
	w->tmf_wait = m;
	w->cmd.lun = UINT64_MAX;   /* matches no LUN of a per-LUN abort */
	w->cmd.done = rod_iscsi_done_fn();
	w->cmd.transport_priv = w;
	c->nexec++;
	int r = rod_scsi_tmf_async(c->srv->scsi, &c->nexus, rule->scsi_fn, lun, tmf_wait_done,
				   &w->cmd);
	if (r == 1) {
		m->waiting++;
		r = 0;
	} else {
		c->nexec--;
		rod_iscsi_task_free(w);
	}
	if (r == -ENOENT && rule->per_lun) {
		m->response = TMF_RSP_NO_LUN;
	} else if (r == -EOPNOTSUPP) {
		m->response = TMF_RSP_NOT_SUPPORTED;
	} else if (r < 0 && r != -ENOENT) {
		m->response = TMF_RSP_REJECTED;
	} else if (fn == 1) {
		struct iscsi_task *t = task_find(c, rtt);
		if (t && t->cmd.lun == lun) {
			task_abort(t, m);
		} else {
			/* RFC 7143 11.5.1 b/c: a task never received within the window counts
			 * as done; otherwise it does not exist. */
			bool in_window = rod_sn_le(c->exp_cmd_sn, ref_cmd_sn) &&
					 rod_sn_le(ref_cmd_sn, max_cmd_sn(c));
			m->response = in_window ? TMF_RSP_COMPLETE : TMF_RSP_NO_TASK;
		}
	} else if (rule->aborts) {
		struct iscsi_task *t = c->tasks;
		while (t) {
			struct iscsi_task *n = t->next;
			if (!rule->per_lun || t->cmd.lun == lun)
				task_abort(t, m);
			t = n;
		}
	}
	if (c->nheld)
		exec_hold_release(c);   /* an aborted command may have held later ones */
	m->next = NULL;
	if (c->tmfs_tail)
		c->tmfs_tail->next = m;
	else
		c->tmfs = m;
	c->tmfs_tail = m;
	if (rule->close_after && m->response == TMF_RSP_COMPLETE) {
		/* Cold reset (RFC 7143 11.5.1): every connection to every initiator closes;
		 * this one after its answer, which follows the aborted tasks. */
		struct rod_iscsi_server *s = c->srv;
		pthread_mutex_lock(&s->lock);
		for (struct iscsi_sess_entry *e = s->sessions; e; e = e->next)
			if (e->conn != c) {
				atomic_fetch_add(&e->conn->refs, 1);
				rod_iscsi_conn_kill_remote(e->conn);
			}
		pthread_mutex_unlock(&s->lock);
		rod_info("iscsi: %s asked for a TARGET COLD RESET: closing every session",
			 c->initiator);
		conn_wind_down(c);
		if (m->waiting == 0 && c->tmfs == m) {
			c->tmfs = c->tmfs_tail = NULL;
			send_tmf_response(c, itt, m->response, true);
			free(m);
		}
		return 0;
	}
	tmf_progress(c);
	return 0;
}

/* ---- login ---------------------------------------------------------------------------- */

static void login_respond(struct iscsi_conn *c, uint16_t status, bool transit, uint8_t csg,
			  uint8_t nsg, char *text, uint32_t len)
{
	struct iscsi_login *L = c->login;
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_LOGIN_RSP, 0, L->itt);
	if (!p) {
		free(text);
		rod_iscsi_conn_close(c, "out of memory");
		return;
	}
	p->hdr[1] = (uint8_t)((transit ? ISCSI_LOGIN_TRANSIT : 0) | csg << 2 | (transit ? nsg : 0));
	p->hdr[2] = 0;   /* VersionMax */
	p->hdr[3] = 0;   /* VersionActive */
	memcpy(p->hdr + 8, c->isid, 6);
	rod_put_be16(p->hdr + 14, transit && nsg == 3 ? c->tsih : 0);
	put_sns(c, p->hdr, true);
	p->hdr[36] = (uint8_t)(status >> 8);
	p->hdr[37] = (uint8_t)status;
	if (text) {
		p->owned = text;
		pdu_set_data(p, text, len);
	}
	if (status != ISCSI_LOGIN_OK) {
		p->close_after = true;
		conn_wind_down(c);
	}
	rod_iscsi_conn_send(c, p);
}

static void login_fail(struct iscsi_conn *c, uint16_t status, const char *why)
{
	rod_info("iscsi: login from %s (%s) refused: %s (status %02x/%02x)", c->peer,
		 c->initiator[0] ? c->initiator : "?", why, status >> 8, status & 0xff);
	login_respond(c, status, false, c->login ? c->login->cur_stage : 0, 0, NULL, 0);
}

static const char *kv_get(const struct iscsi_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].val;
	return NULL;
}

static bool list_has(const char *list, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == wl && strncmp(p, word, l) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

/* The first Login Request: who is it, which session type, which target. */
static int login_first(struct iscsi_conn *c, const struct iscsi_kv *kv, size_t n, uint8_t csg)
{
	struct rod_iscsi_server *s = c->srv;
	struct iscsi_login *L = c->login;
	const char *iname = kv_get(kv, n, "InitiatorName");
	const char *stype = kv_get(kv, n, "SessionType");
	const char *tname = kv_get(kv, n, "TargetName");
	if (!iname || !*iname) {
		login_fail(c, ISCSI_LOGIN_MISSING_PARAM, "no InitiatorName");
		return -1;
	}
	if (strlen(iname) >= sizeof(c->initiator)) {
		login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "InitiatorName too long");
		return -1;
	}
	snprintf(c->initiator, sizeof(c->initiator), "%s", iname);
	if (!stype || strcmp(stype, "Normal") == 0) {
		c->discovery = false;
	} else if (strcmp(stype, "Discovery") == 0) {
		c->discovery = true;
	} else {
		login_fail(c, ISCSI_LOGIN_SESSION_TYPE, "unknown SessionType");
		return -1;
	}
	if (!c->discovery) {
		if (!tname) {
			login_fail(c, ISCSI_LOGIN_MISSING_PARAM, "no TargetName");
			return -1;
		}
		if (strcmp(tname, s->target_name) != 0) {
			login_fail(c, ISCSI_LOGIN_NOT_FOUND, "no such target");
			return -1;
		}
	}
	if (c->tsih != 0) {
		/* MaxConnections=1: no connection is ever added to a running session. */
		login_fail(c, ISCSI_LOGIN_NO_SESSION, "adding a connection to a session");
		return -1;
	}
	unsigned max = atomic_load(&s->max_sessions);
	if (!c->discovery && max && atomic_load(&s->st_sessions) >= max) {
		/* RFC 7143 11.13.5: 0302, the target lacks the resources (rod.conf max_sessions) */
		login_fail(c, ISCSI_LOGIN_OUT_OF_RESOURCES, "the target holds its maximum of sessions (max_sessions)");
		return -1;
	}
	memset(&c->auth, 0, sizeof(c->auth));
	if (c->discovery) {
		snprintf(c->auth.chap_user, sizeof(c->auth.chap_user), "%s", s->discovery_chap_user);
		snprintf(c->auth.chap_secret, sizeof(c->auth.chap_secret), "%s",
			 s->discovery_chap_secret);
	} else {
		int r = s->auth_lookup ? s->auth_lookup(s->auth_arg, iname, &c->auth) : -ENOENT;
		if (r < 0 || c->auth.host_id == 0) {
			/* RFC 7143 11.13.5: 0202, the initiator may not access this target. */
			login_fail(c, ISCSI_LOGIN_AUTHZ_FAILED, "initiator matches no host");
			return -1;
		}
	}
	L->auth_required = c->auth.chap_user[0] != '\0';
	rod_iscsi_negotiation_init(&L->neg, &s->target_params, c->discovery);
	if (csg == 1) {
		if (L->auth_required) {
			login_fail(c, ISCSI_LOGIN_AUTH_FAILED, "CHAP required, security stage skipped");
			return -1;
		}
		L->auth_done = true;
	}
	return 0;
}

/* Security stage keys: AuthMethod, then CHAP_A, then CHAP_N/CHAP_R (+ CHAP_I/CHAP_C
 * when the initiator wants the target to authenticate too). */
static int login_security(struct iscsi_conn *c, const struct iscsi_kv *kv, size_t n,
			  struct iscsi_text_out *o)
{
	struct iscsi_login *L = c->login;
	const char *am = kv_get(kv, n, "AuthMethod");
	const char *ca = kv_get(kv, n, "CHAP_A");
	const char *cn = kv_get(kv, n, "CHAP_N"), *cr = kv_get(kv, n, "CHAP_R");
	const char *ci = kv_get(kv, n, "CHAP_I"), *cc = kv_get(kv, n, "CHAP_C");
	char hex[2 * ISCSI_CHAP_BIN_MAX + 3];

	if (am) {
		if (L->auth_required && list_has(am, "CHAP")) {
			rod_iscsi_text_add(o, "AuthMethod", "CHAP");
			L->chap = CHAP_WAIT_A;
		} else if (!L->auth_required && list_has(am, "None")) {
			rod_iscsi_text_add(o, "AuthMethod", "None");
			L->auth_done = true;
		} else {
			login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
				   L->auth_required ? "CHAP required but not offered"
						    : "no CHAP secret for this initiator");
			return -1;
		}
	}
	if (ca) {
		if (L->chap != CHAP_WAIT_A || !list_has(ca, "5")) {
			login_fail(c, ISCSI_LOGIN_AUTH_FAILED, "CHAP_A without MD5 or out of order");
			return -1;
		}
		if (rod_random_bytes(&L->chap_id, 1) < 0 ||
		    rod_random_bytes(L->chap_challenge, sizeof(L->chap_challenge)) < 0) {
			login_fail(c, ISCSI_LOGIN_TARGET_ERROR, "no random bytes");
			return -1;
		}
		rod_iscsi_chap_encode(L->chap_challenge, sizeof(L->chap_challenge), hex, sizeof(hex));
		rod_iscsi_text_add(o, "CHAP_A", "%d", ISCSI_CHAP_MD5);
		rod_iscsi_text_add(o, "CHAP_I", "%u", L->chap_id);
		rod_iscsi_text_add(o, "CHAP_C", "%s", hex);
		L->chap = CHAP_WAIT_R;
	}
	if (cn || cr) {
		uint8_t resp[ISCSI_CHAP_BIN_MAX], want[ISCSI_CHAP_DIGEST_LEN];
		size_t rlen = 0;
		if (L->chap != CHAP_WAIT_R || !cn || !cr ||
		    rod_iscsi_chap_decode(cr, resp, sizeof(resp), &rlen) < 0 ||
		    rlen != ISCSI_CHAP_DIGEST_LEN) {
			login_fail(c, ISCSI_LOGIN_AUTH_FAILED, "malformed CHAP response");
			return -1;
		}
		rod_iscsi_chap_md5(L->chap_id, c->auth.chap_secret, L->chap_challenge,
				   sizeof(L->chap_challenge), want);
		if (strcmp(cn, c->auth.chap_user) != 0 ||
		    rod_iscsi_chap_cmp(resp, want, ISCSI_CHAP_DIGEST_LEN) != 0) {
			login_fail(c, ISCSI_LOGIN_AUTH_FAILED, "CHAP user or secret wrong");
			return -1;
		}
		if (ci || cc) {
			uint8_t chal[ISCSI_CHAP_BIN_MAX];
			size_t clen = 0;
			uint64_t id;
			if (!ci || !cc || !c->auth.mutual_user[0] ||
			    rod_iscsi_parse_number(ci, &id) < 0 || id > 255 ||
			    rod_iscsi_chap_decode(cc, chal, sizeof(chal), &clen) < 0) {
				login_fail(c, ISCSI_LOGIN_AUTH_FAILED,
					   c->auth.mutual_user[0] ? "malformed mutual CHAP challenge"
								  : "mutual CHAP not configured");
				return -1;
			}
			/* RFC 7143 12.1.3: refuse our own challenge reflected back. */
			if (clen == sizeof(L->chap_challenge) &&
			    memcmp(chal, L->chap_challenge, clen) == 0) {
				login_fail(c, ISCSI_LOGIN_AUTH_FAILED, "reflected CHAP challenge");
				return -1;
			}
			uint8_t mine[ISCSI_CHAP_DIGEST_LEN];
			rod_iscsi_chap_md5((uint8_t)id, c->auth.mutual_secret, chal, clen, mine);
			rod_iscsi_chap_encode(mine, sizeof(mine), hex, sizeof(hex));
			rod_iscsi_text_add(o, "CHAP_N", "%s", c->auth.mutual_user);
			rod_iscsi_text_add(o, "CHAP_R", "%s", hex);
		}
		L->chap = CHAP_NONE;
		L->auth_done = true;
	}
	return 0;
}

static const char *const login_declarations[] = {
	"InitiatorName", "SessionType", "TargetName", "InitiatorAlias",
};
static const char *const security_keys[] = {
	"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R",
};

static bool key_in(const char *key, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, list[i]) == 0)
			return true;
	return false;
}

/* Enter full feature phase: reinstate an older session of the same initiator port
 * (same InitiatorName + ISID, RFC 7143 6.3.5), register the I_T nexus. */
static int login_establish(struct iscsi_conn *c)
{
	struct rod_iscsi_server *s = c->srv;
	struct iscsi_sess_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	snprintf(e->initiator, sizeof(e->initiator), "%s", c->initiator);
	memcpy(e->isid, c->isid, 6);
	e->conn = c;
	pthread_mutex_lock(&s->lock);
	if (!c->discovery) {
		for (struct iscsi_sess_entry **pp = &s->sessions; *pp;) {
			struct iscsi_sess_entry *o = *pp;
			if (strcmp(o->initiator, c->initiator) == 0 && memcmp(o->isid, c->isid, 6) == 0) {
				*pp = o->next;
				o->conn->in_session_table = false;
				atomic_fetch_add(&o->conn->refs, 1);
				if (o->conn->thr == c->thr) {
					/* same thread: close it right here */
					pthread_mutex_unlock(&s->lock);
					rod_iscsi_conn_close(o->conn, "session reinstated");
					rod_iscsi_conn_put(o->conn);
					pthread_mutex_lock(&s->lock);
				} else {
					rod_iscsi_conn_kill_remote(o->conn);
				}
				free(o);
				pp = &s->sessions;   /* list may have changed while unlocked */
				continue;
			}
			pp = &o->next;
		}
	}
	uint16_t tsih = s->next_tsih++;
	if (s->next_tsih == 0)
		s->next_tsih = 1;
	c->tsih = tsih;
	e->tsih = tsih;
	e->next = s->sessions;
	s->sessions = e;
	c->in_session_table = true;
	pthread_mutex_unlock(&s->lock);

	if (!c->discovery) {
		struct rod_scsi_nexus *nx = &c->nexus;
		memset(nx, 0, sizeof(*nx));
		snprintf(nx->initiator_name, sizeof(nx->initiator_name), "%s", c->initiator);
		char isid_hex[13];
		rod_hex(c->isid, 6, isid_hex);
		snprintf(nx->initiator_port, sizeof(nx->initiator_port), "%s,i,0x%s", c->initiator,
			 isid_hex);
		memcpy(nx->isid, c->isid, 6);
		nx->tpgt = ISCSI_TPGT;
		nx->rel_port = 1;
		nx->host_id = c->auth.host_id;
		int r = rod_scsi_nexus_register(s->scsi, nx);
		if (r < 0)
			return r;
		c->nexus_registered = true;
	}
	c->counted_session = true;
	atomic_fetch_add(&s->st_sessions, 1);
	return 0;
}

void rod_iscsi_conn_release_session(struct iscsi_conn *c)
{
	struct rod_iscsi_server *s = c->srv;
	if (c->in_session_table) {
		pthread_mutex_lock(&s->lock);
		for (struct iscsi_sess_entry **pp = &s->sessions; *pp; pp = &(*pp)->next)
			if ((*pp)->conn == c) {
				struct iscsi_sess_entry *e = *pp;
				*pp = e->next;
				free(e);
				break;
			}
		c->in_session_table = false;
		pthread_mutex_unlock(&s->lock);
	}
	if (c->nexus_registered) {
		rod_scsi_nexus_unregister(s->scsi, &c->nexus);
		c->nexus_registered = false;
	}
	if (c->counted_session) {
		atomic_fetch_sub(&s->st_sessions, 1);
		c->counted_session = false;
	}
}

static int rx_login(struct iscsi_conn *c)
{
	struct iscsi_login *L = c->login;
	const uint8_t *h = c->hdr;
	uint8_t fl = h[1];
	bool transit = fl & ISCSI_LOGIN_TRANSIT, cont = fl & ISCSI_LOGIN_CONTINUE;
	uint8_t csg = (fl >> 2) & 3, nsg = fl & 3;

	if (c->state != CONN_LOGIN || !L) {
		/* RFC 7143 6.1: a Login Request in full feature phase is a protocol error. */
		return -EPROTO;
	}
	if (!L->started) {
		L->started = true;
		L->cur_stage = csg;
		L->itt = rod_get_be32(h + 16);
		memcpy(c->isid, h + 8, 6);
		c->tsih = rod_get_be16(h + 14);
		c->cid = rod_get_be16(h + 20);
		c->exp_cmd_sn = rod_get_be32(h + 24);
		c->stat_sn = rod_get_be32(h + 28);
		if (h[3] > 0) {   /* VersionMin above the only version there is */
			login_fail(c, ISCSI_LOGIN_BAD_VERSION, "unsupported version");
			return 0;
		}
	} else {
		L->itt = rod_get_be32(h + 16);
		if (memcmp(c->isid, h + 8, 6) != 0) {
			login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "ISID changed during login");
			return 0;
		}
	}
	if ((transit && cont) || csg != L->cur_stage || csg == 2 || csg == 3 ||
	    (transit && (nsg == 2 || nsg <= csg))) {
		login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "invalid login stage transition");
		return 0;
	}
	if (L->text_len + c->cur.data_len > ISCSI_TEXT_MAX) {
		login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "login text too long");
		return 0;
	}
	char *nt = realloc(L->text, L->text_len + c->cur.data_len + 1);
	if (!nt)
		return -ENOMEM;
	L->text = nt;
	if (c->cur.data_len) /* no data yet: scratch may still be NULL */
		memcpy(L->text + L->text_len, c->scratch, c->cur.data_len);
	L->text_len += c->cur.data_len;
	if (cont) {
		/* More text follows: an empty response asks for it (RFC 7143 11.13). */
		login_respond(c, ISCSI_LOGIN_OK, false, csg, 0, NULL, 0);
		return 0;
	}

	struct iscsi_kv kv[ISCSI_TEXT_KEYS_MAX];
	size_t n = 0;
	int r = rod_iscsi_text_parse(L->text, L->text_len, kv, ISCSI_TEXT_KEYS_MAX, &n);
	if (r < 0) {
		login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "malformed login text");
		return 0;
	}
	bool first = !L->first_response_sent;
	if (first && login_first(c, kv, n, csg) < 0)
		return 0;

	uint32_t cap = ISCSI_LOGIN_DATA_MAX;
	char *out = malloc(cap);
	if (!out)
		return -ENOMEM;
	struct iscsi_text_out o = { out, cap, 0, false };
	if (first && !c->discovery) {
		/* RFC 7143 13.9: the first Login Response of a normal session carries it. */
		rod_iscsi_text_add(&o, "TargetPortalGroupTag", "%u", ISCSI_TPGT);
		if (c->srv->target_alias)
			rod_iscsi_text_add(&o, "TargetAlias", "%s", c->srv->target_alias);
	}
	if (csg == 0 && login_security(c, kv, n, &o) < 0) {
		free(out);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (key_in(kv[i].key, login_declarations, ROD_ARRAY_SIZE(login_declarations)))
			continue;
		if (key_in(kv[i].key, security_keys, ROD_ARRAY_SIZE(security_keys))) {
			if (csg != 0) {
				free(out);
				login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "security key after security stage");
				return 0;
			}
			continue;
		}
		if (rod_iscsi_key_negotiate(&L->neg, kv[i].key, kv[i].val, &o) < 0) {
			free(out);
			login_fail(c, ISCSI_LOGIN_INITIATOR_ERROR, "key negotiated twice or target-only key");
			return 0;
		}
	}
	L->text_len = 0;

	/* May we move on? Security needs authentication first. */
	bool go = transit;
	if (go && csg == 0 && !L->auth_done && L->auth_required && L->chap == CHAP_NONE) {
		free(out);
		login_fail(c, ISCSI_LOGIN_AUTH_FAILED, "CHAP required but not negotiated");
		return 0;
	}
	if (go && csg == 0 && !L->auth_done) {
		if (L->auth_required)
			go = false;   /* keep exchanging CHAP */
		else
			L->auth_done = true;
	}
	if (go && nsg == 3)
		rod_iscsi_negotiation_finish(&L->neg, &o);
	if (o.overflow) {
		free(out);
		login_fail(c, ISCSI_LOGIN_TARGET_ERROR, "login response too long");
		return 0;
	}
	if (go && nsg == 3) {
		r = login_establish(c);
		if (r < 0) {
			free(out);
			login_fail(c, ISCSI_LOGIN_TARGET_ERROR, "cannot register the session");
			return 0;
		}
	}
	L->first_response_sent = true;
	login_respond(c, ISCSI_LOGIN_OK, go, csg, nsg, out, (uint32_t)o.len);
	if (go)
		L->cur_stage = nsg;
	if (go && nsg == 3) {
		c->params = L->neg.p;
		c->state = CONN_FFP;
		rod_info("iscsi: %s session of %s (ISID %02x%02x%02x%02x%02x%02x) from %s: "
			 "digests %s/%s, MaxRecvDataSegmentLength %u/%u, burst %u/%u",
			 c->discovery ? "discovery" : "normal", c->initiator, c->isid[0], c->isid[1],
			 c->isid[2], c->isid[3], c->isid[4], c->isid[5], c->peer,
			 c->params.header_digest ? "CRC32C" : "None",
			 c->params.data_digest ? "CRC32C" : "None", c->params.max_recv_dsl_ini,
			 c->params.max_recv_dsl_tgt, c->params.first_burst, c->params.max_burst);
		free(L->text);
		free(L);
		c->login = NULL;
	}
	return 0;
}

/* ---- dispatch ------------------------------------------------------------------------- */

int rod_iscsi_rx_header(struct iscsi_conn *c)
{
	if (!c->cur.known)
		return 0;   /* skipped; rejected once its data is read */
	if (c->state == CONN_LOGIN && c->cur.opcode != ISCSI_OP_LOGIN_REQ)
		return -EPROTO;   /* RFC 7143 6.1: only Login Requests during login */
	switch (c->cur.opcode) {
	case ISCSI_OP_SCSI_CMD:
		return rx_scsi_cmd_header(c);
	case ISCSI_OP_DATA_OUT:
		return rx_data_out_header(c);
	default:
		break;
	}
	uint32_t len = c->cur.data_len;
	if (len > c->scratch_cap) {
		uint32_t cap = ROD_MAX(len, 8192u);
		uint8_t *nb = realloc(c->scratch, cap);
		if (!nb)
			return -ENOMEM;
		c->scratch = nb;
		c->scratch_cap = cap;
	}
	c->rx_dst = len ? c->scratch : NULL;
	return 0;
}

struct rx_handler {
	uint8_t opcode;
	int (*fn)(struct iscsi_conn *c);
};

static int rx_snack(struct iscsi_conn *c)
{
	/* ERL 0: no SNACK support (RFC 7143 11.16). */
	send_reject(c, ISCSI_REJECT_PROTOCOL, false);
	return 0;
}

static const struct rx_handler rx_handlers[] = {
	{ ISCSI_OP_NOP_OUT, rx_nop_out },
	{ ISCSI_OP_TMF_REQ, rx_tmf },
	{ ISCSI_OP_LOGIN_REQ, rx_login },
	{ ISCSI_OP_TEXT_REQ, rx_text },
	{ ISCSI_OP_LOGOUT_REQ, rx_logout },
	{ ISCSI_OP_SNACK_REQ, rx_snack },
};

int rod_iscsi_rx_pdu(struct iscsi_conn *c, bool data_digest_ok)
{
	if (!c->cur.known) {
		send_reject(c, ISCSI_REJECT_CMD_NOT_SUPPORTED, false);
		return 0;
	}
	if (!data_digest_ok) {
		/* RFC 7143 7.8: Reject with Data-Digest-Error; at ERL 0 the affected command
		 * cannot be recovered, so the session ends. */
		atomic_fetch_add(&c->srv->st_bad_pdus, 1);
		send_reject(c, ISCSI_REJECT_DATA_DIGEST, true);
		conn_wind_down(c);
		return 0;
	}
	switch (c->cur.opcode) {
	case ISCSI_OP_SCSI_CMD:
		rx_scsi_cmd_done(c);
		return 0;
	case ISCSI_OP_DATA_OUT:
		rx_data_out_done(c);
		return 0;
	default:
		break;
	}
	for (size_t i = 0; i < ROD_ARRAY_SIZE(rx_handlers); i++)
		if (rx_handlers[i].opcode == c->cur.opcode)
			return rx_handlers[i].fn(c);
	return -EPROTO;
}

/* ---- timers ----------------------------------------------------------------------------- */

void rod_iscsi_conn_timer(struct iscsi_conn *c, uint64_t now)
{
	if (c->state == CONN_LOGIN) {
		/* now is the thread's clock from before it accepted this connection, so it
		 * can be older than started_ns: that is not a timeout. */
		if (c->login && now > c->login->started_ns &&
		    now - c->login->started_ns > ISCSI_LOGIN_TIMEOUT_NS)
			rod_iscsi_conn_close(c, "login timed out");
		return;
	}
	if (c->state != CONN_FFP)
		return;
	if (c->nop_sent_ns) {
		if (now > c->nop_sent_ns && now - c->nop_sent_ns > ISCSI_NOP_TIMEOUT_NS) {
			rod_warn("iscsi: %s did not answer a NOP-In in %llu s: closing", c->initiator,
				 (unsigned long long)(ISCSI_NOP_TIMEOUT_NS / 1000000000ull));
			rod_iscsi_conn_close(c, "NOP-In timeout");
		}
		return;
	}
	if (now < c->last_rx_ns || now - c->last_rx_ns < ISCSI_NOP_IDLE_NS || c->ntasks)
		return;
	/* Ping the idle initiator (RFC 7143 11.19): a TTT asks for an answer. */
	struct iscsi_pdu *p = pdu_new(c, ISCSI_OP_NOP_IN, ISCSI_FINAL, ISCSI_RSVD_TAG);
	if (!p)
		return;
	uint32_t ttt = c->next_ttt++;
	if (ttt == ISCSI_RSVD_TAG)
		ttt = c->next_ttt++;
	c->nop_ttt = ttt;
	c->nop_sent_ns = now;
	rod_put_be32(p->hdr + 20, ttt);
	put_sns(c, p->hdr, false);
	rod_iscsi_conn_send(c, p);
}
