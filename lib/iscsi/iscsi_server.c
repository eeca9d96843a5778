/* The iSCSI server: listeners, a fixed set of epoll threads each owning its
 * connections, the receive state machine, batched writev output, completion queues
 * from other threads (eventfd), and per-thread buffer pools (DESIGN.md "Threads"). */
#include "iscsi_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rod/log.h"
#include "rod/util.h"

static __thread struct iscsi_thread *cur_thread;

/* ---- pools ----------------------------------------------------------------------- */

struct iscsi_pdu *rod_iscsi_pdu_get(struct iscsi_thread *t)
{
	struct iscsi_pdu *p = t->pdu_free;
	if (p)
		t->pdu_free = p->next;
	else if (!(p = malloc(sizeof(*p))))
		return NULL;
	memset(p, 0, offsetof(struct iscsi_pdu, tail));
	p->data = NULL;
	p->dlen = 0;
	p->owned = NULL;
	p->release = NULL;
	return p;
}

struct iscsi_task *rod_iscsi_task_get(struct iscsi_thread *t)
{
	struct iscsi_task *k = t->task_free;
	if (k)
		t->task_free = k->next;
	else if (!(k = malloc(sizeof(*k))))
		return NULL;
	memset(k, 0, offsetof(struct iscsi_task, sense_seg));
	return k;
}

void rod_iscsi_pdu_put(struct iscsi_thread *t, struct iscsi_pdu *p)
{
	free(p->owned);
	p->owned = NULL;
	p->next = t->pdu_free;
	t->pdu_free = p;
}

/* Buffers come in power-of-two classes from 4 KiB; a class keeps at most ~64 MiB (and
 * at least 4 buffers) so steady-state commands reuse warm, already-faulted memory. */
static uint32_t pool_class(uint32_t len)
{
	uint32_t c = 0;
	while (c + 1 < ISCSI_POOL_CLASSES && (4096u << c) < len)
		c++;
	return c;
}

uint8_t *rod_iscsi_buf_get(struct iscsi_thread *t, uint32_t len, uint32_t *cls)
{
	uint32_t c = pool_class(len);
	if ((4096u << c) < len)
		return NULL;
	*cls = c;
	struct iscsi_pool_buf *b = t->pool[c];
	if (b) {
		t->pool[c] = b->next;
		t->pool_count[c]--;
		return (uint8_t *)b;
	}
	void *p = NULL;
	if (posix_memalign(&p, 4096, 4096u << c))
		return NULL;
	return p;
}

void rod_iscsi_buf_put(struct iscsi_thread *t, uint8_t *buf, uint32_t cls)
{
	if (!buf)
		return;
	uint32_t keep = ROD_MAX(4u, (64u << 20) / (4096u << cls));
	if (t->pool_count[cls] >= keep) {
		free(buf);
		return;
	}
	struct iscsi_pool_buf *b = (struct iscsi_pool_buf *)buf;
	b->next = t->pool[cls];
	t->pool[cls] = b;
	t->pool_count[cls]++;
}

/* ---- connections ------------------------------------------------------------------ */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static void addr_format(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		snprintf(out, len, "local");
	}
}

static void ep_mod(struct iscsi_conn *c)
{
	if (!c->pollable)
		return;
	struct epoll_event ev = { 0 };
	if (c->rfd == c->wfd) {
		ev.events = (c->rd_paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0);
		ev.data.ptr = &c->rd_item;
		epoll_ctl(c->thr->epfd, EPOLL_CTL_MOD, c->rfd, &ev);
	} else {
		ev.events = c->rd_paused ? 0 : EPOLLIN;
		ev.data.ptr = &c->rd_item;
		epoll_ctl(c->thr->epfd, EPOLL_CTL_MOD, c->rfd, &ev);
		ev.events = c->want_out ? EPOLLOUT : 0;
		ev.data.ptr = &c->wr_item;
		epoll_ctl(c->thr->epfd, EPOLL_CTL_MOD, c->wfd, &ev);
	}
}

/* Stop reading: no more PDUs are taken from this connection. */
void rod_iscsi_conn_pause_input(struct iscsi_conn *c)
{
	if (c->state == CONN_LOGIN || c->state == CONN_FFP)
		c->state = CONN_CLOSING;
	if (c->pollable && !c->rd_paused && c->state != CONN_DEAD) {
		c->rd_paused = true;
		ep_mod(c);
	}
	if (c->state == CONN_CLOSING)
		rod_iscsi_conn_input_ended(c);
}

static struct iscsi_conn *conn_new(struct iscsi_thread *t, int rfd, int wfd)
{
	struct iscsi_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rxbuf = malloc(ISCSI_RXBUF);
	c->login = calloc(1, sizeof(*c->login));
	if (!c->rxbuf || !c->login) {
		free(c->rxbuf);
		free(c->login);
		free(c);
		return NULL;
	}
	c->srv = t->srv;
	c->thr = t;
	atomic_init(&c->refs, 1);
	c->rfd = rfd;
	c->wfd = wfd;
	c->state = CONN_LOGIN;
	c->rx_state = RX_BHS;
	c->hdr_need = ISCSI_BHS_LEN;
	rod_iscsi_params_default(&c->params);
	c->rd_item = (struct iscsi_ep_item){ EP_CONN_RD, c, rfd };
	c->wr_item = (struct iscsi_ep_item){ EP_CONN_WR, c, wfd };
	c->last_rx_ns = t->now_ns;
	c->login->started_ns = c->last_rx_ns;
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	t->nconns++;
	atomic_fetch_add(&t->srv->st_connections, 1);
	return c;
}

void rod_iscsi_conn_put(struct iscsi_conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	free(c->rxbuf);
	free(c->scratch);
	free(c->text);
	if (c->login) {
		free(c->login->text);
		free(c->login);
	}
	free(c);
}

/* Final teardown once the socket is closed and no task is left in the SCSI core. */
static void conn_finish(struct iscsi_conn *c)
{
	struct iscsi_thread *t = c->thr;
	rod_iscsi_conn_release_session(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	t->nconns--;
	if (c->in_load)
		atomic_fetch_sub(&t->load, 1);
	atomic_fetch_sub(&c->srv->st_connections, 1);
	/* Freed at the end of this loop pass: a later event of the same epoll batch, or
	 * the dirty list, may still point at it. */
	c->grave_next = t->graveyard;
	t->graveyard = c;
}

static void reap(struct iscsi_thread *t)
{
	while (t->graveyard) {
		struct iscsi_conn *c = t->graveyard;
		t->graveyard = c->grave_next;
		rod_iscsi_conn_put(c);
	}
}

void rod_iscsi_conn_close(struct iscsi_conn *c, const char *why)
{
	if (c->state == CONN_DEAD)
		return;
	if (why)
		rod_debug("iscsi: closing connection from %s: %s", c->peer, why);
	if (c->pollable) {
		epoll_ctl(c->thr->epfd, EPOLL_CTL_DEL, c->rfd, NULL);
		if (c->wfd != c->rfd)
			epoll_ctl(c->thr->epfd, EPOLL_CTL_DEL, c->wfd, NULL);
	}
	if (c->pollable && c->rfd >= 0) {
		/* Closing with unread input makes the kernel send a RST, which can destroy
		 * answers the peer has not read yet: drain what is already here first. */
		for (int i = 0; i < 16 && read(c->rfd, c->rxbuf, ISCSI_RXBUF) > 0; i++)
			;
	}
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	c->rfd = c->wfd = -1;
	c->state = CONN_DEAD;
	c->in_close = true;
	while (c->txq) {
		struct iscsi_pdu *p = c->txq;
		c->txq = p->next;
		if (p->release)
			rod_iscsi_task_free(p->release);
		rod_iscsi_pdu_put(c->thr, p);
	}
	c->txq_tail = NULL;
	c->tx_final = 0;
	/* Tasks still in the SCSI core complete later; their responses are dropped. */
	rod_iscsi_conn_abort_tasks(c);
	c->in_close = false;
	if (c->ntasks == 0)
		conn_finish(c);
}

/* Called when the last task of a dead connection completes. */
void rod_iscsi_conn_maybe_finish(struct iscsi_conn *c)
{
	if (c->state == CONN_DEAD && c->ntasks == 0 && !c->in_close)
		conn_finish(c);
}

static void mark_dirty(struct iscsi_conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = c->thr->dirty;
	c->thr->dirty = c;
}

void rod_iscsi_conn_send(struct iscsi_conn *c, struct iscsi_pdu *p)
{
	uint32_t dlen = p->dlen;
	p->hlen = ISCSI_BHS_LEN;
	p->tlen = 0;
	if (c->state == CONN_DEAD) {
		if (p->release)
			rod_iscsi_task_free(p->release);
		rod_iscsi_pdu_put(c->thr, p);
		return;
	}
	/* Digests apply from the first PDU after the final login response. */
	bool hd = c->state != CONN_LOGIN && c->params.header_digest;
	bool dd = c->state != CONN_LOGIN && c->params.data_digest;
	if (hd) {
		rod_iscsi_put_digest(p->hdr + ISCSI_BHS_LEN, rod_iscsi_digest(p->hdr, ISCSI_BHS_LEN));
		p->hlen += ISCSI_DIGEST_LEN;
	}
	uint32_t pad = rod_iscsi_pad4(dlen);
	if (dlen) {
		memset(p->tail, 0, pad);
		p->tlen = (uint8_t)pad;
		if (dd) {
			uint32_t crc = rod_iscsi_digest2(p->data, dlen, p->tail, pad);
			rod_iscsi_put_digest(p->tail + pad, crc);
			p->tlen += ISCSI_DIGEST_LEN;
		}
	}
	p->next = NULL;
	if (c->txq_tail)
		c->txq_tail->next = p;
	else
		c->txq = p;
	c->txq_tail = p;
	if (p->release)
		c->tx_final++;
	atomic_fetch_add_explicit(&c->srv->st_pdus_out, 1, memory_order_relaxed);
	mark_dirty(c);
}

/* Write as much of the queue as the socket takes, many PDUs per writev. */
static void conn_flush(struct iscsi_conn *c)
{
	struct iscsi_thread *t = c->thr;
	while (c->txq && c->state != CONN_DEAD) {
		struct iovec iov[64];
		int n = 0;
		uint32_t skip = c->tx_off;
		for (struct iscsi_pdu *p = c->txq; p && n < 61; p = p->next) {
			struct iovec parts[3] = {
				{ p->hdr, p->hlen },
				{ (void *)p->data, p->dlen },
				{ p->tail, p->tlen },
			};
			for (int i = 0; i < 3; i++) {
				size_t l = parts[i].iov_len;
				if (!l)
					continue;
				if (skip >= l) {
					skip -= (uint32_t)l;
					continue;
				}
				iov[n].iov_base = (char *)parts[i].iov_base + skip;
				iov[n].iov_len = l - skip;
				skip = 0;
				n++;
			}
		}
		ssize_t w = writev(c->wfd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->want_out) {
					c->want_out = true;
					ep_mod(c);
				}
				return;
			}
			rod_iscsi_conn_close(c, "write failed");
			return;
		}
		uint64_t left = (uint64_t)w + c->tx_off;
		while (c->txq) {
			struct iscsi_pdu *p = c->txq;
			uint64_t plen = (uint64_t)p->hlen + p->dlen + p->tlen;
			if (left < plen)
				break;
			left -= plen;
			c->txq = p->next;
			if (!c->txq)
				c->txq_tail = NULL;
			bool close_after = p->close_after;
			if (p->release) {
				c->tx_final--;
				rod_iscsi_task_free(p->release);
			}
			rod_iscsi_pdu_put(t, p);
			if (close_after) {
				rod_iscsi_conn_close(c, "closed after final response");
				return;
			}
		}
		c->tx_off = (uint32_t)left;
	}
	if (c->want_out && c->state != CONN_DEAD) {
		c->want_out = false;
		ep_mod(c);
	}
	if (!c->txq && c->state == CONN_CLOSING && c->ntasks == 0)
		rod_iscsi_conn_close(c, NULL);
}

static void flush_dirty(struct iscsi_thread *t)
{
	while (t->dirty) {
		struct iscsi_conn *c = t->dirty;
		t->dirty = c->dirty_next;
		c->dirty = false;
		if (c->state != CONN_DEAD)
			conn_flush(c);
	}
}

/* ---- receive ----------------------------------------------------------------------- */

/* Take up to need bytes into dst (NULL: discard) from the read-ahead buffer or the
 * socket. Large pieces are read straight into place (no copy). Returns bytes taken,
 * 0 at end of stream, 0 with *again when the socket is empty, or -errno. */
static ssize_t rx_take(struct iscsi_conn *c, uint8_t *dst, uint32_t need, bool *again)
{
	*again = false;
	uint32_t avail = c->rx_end - c->rx_start;
	if (avail) {
		uint32_t n = ROD_MIN(avail, need);
		if (dst)
			memcpy(dst, c->rxbuf + c->rx_start, n);
		c->rx_start += n;
		if (c->rx_start == c->rx_end)
			c->rx_start = c->rx_end = 0;
		return n;
	}
	ssize_t r;
	if (dst && need >= ISCSI_RX_DIRECT) {
		r = read(c->rfd, dst, need);
	} else {
		r = read(c->rfd, c->rxbuf, ISCSI_RXBUF);
		if (r > 0) {
			c->rx_start = 0;
			c->rx_end = (uint32_t)r;
			uint32_t n = ROD_MIN((uint32_t)r, need);
			if (dst)
				memcpy(dst, c->rxbuf, n);
			c->rx_start = n;
			if (c->rx_start == c->rx_end)
				c->rx_start = c->rx_end = 0;
			return n;
		}
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		*again = true;
		return 0;
	}
	if (r < 0)
		return -errno;
	return r;   /* 0: end of stream */
}

static void bad_pdu(struct iscsi_conn *c, const char *why)
{
	atomic_fetch_add(&c->srv->st_bad_pdus, 1);
	rod_warn("iscsi: dropping connection from %s (%s): %s", c->peer,
		 c->initiator[0] ? c->initiator : "not logged in", why);
	/* Answers to the good PDUs before this one still go out (best effort). */
	if (c->txq)
		conn_flush(c);
	rod_iscsi_conn_close(c, why);
}

/* Read and process PDUs until the socket is empty or a budget is spent. */
static void conn_readable(struct iscsi_conn *c)
{
	int budget = 256;
	while (c->state == CONN_LOGIN || c->state == CONN_FFP) {
		bool again;
		ssize_t r;
		switch (c->rx_state) {
		case RX_BHS:
		case RX_HDR_REST:
			r = rx_take(c, c->hdr + c->hdr_got, c->hdr_need - c->hdr_got, &again);
			if (r <= 0)
				goto out;
			c->hdr_got += (uint32_t)r;
			if (c->hdr_got < c->hdr_need)
				continue;
			if (c->rx_state == RX_BHS) {
				const char *why = NULL;
				uint32_t max = c->state == CONN_LOGIN ? ISCSI_LOGIN_DATA_MAX
								      : c->params.max_recv_dsl_tgt;
				if (rod_iscsi_bhs_check(c->hdr, max, &c->cur, &why) < 0) {
					bad_pdu(c, why);
					return;
				}
				uint32_t rest = c->cur.ahs_len;
				if (c->state == CONN_FFP && c->params.header_digest)
					rest += ISCSI_DIGEST_LEN;
				if (rest) {
					c->rx_state = RX_HDR_REST;
					c->hdr_need += rest;
					continue;
				}
			}
			if (c->state == CONN_FFP && c->params.header_digest) {
				uint32_t hl = ISCSI_BHS_LEN + c->cur.ahs_len;
				if (rod_iscsi_digest(c->hdr, hl) != rod_iscsi_get_digest(c->hdr + hl)) {
					/* RFC 7143 7.8: a header digest error at ERL 0 ends the connection. */
					bad_pdu(c, "header digest error");
					return;
				}
			}
			atomic_fetch_add_explicit(&c->srv->st_pdus_in, 1, memory_order_relaxed);
			c->last_rx_ns = c->thr->now_ns;
			c->rx_dst = NULL;
			c->rx_task = NULL;
			if (rod_iscsi_rx_header(c) < 0) {
				if (c->state != CONN_DEAD)
					bad_pdu(c, "malformed PDU header");
				return;
			}
			if (c->state == CONN_DEAD)
				return;
			c->rx_got = 0;
			c->rx_crc = 0;
			c->tail_got = 0;
			c->tail_need = c->cur.data_len ? rod_iscsi_pad4(c->cur.data_len) : 0;
			if (c->cur.data_len && c->state == CONN_FFP && c->params.data_digest)
				c->tail_need += ISCSI_DIGEST_LEN;
			c->rx_state = c->cur.data_len ? RX_DATA : RX_TAIL;
			continue;
		case RX_DATA: {
			uint32_t need = c->cur.data_len - c->rx_got;
			uint8_t *dst = c->rx_dst ? c->rx_dst + c->rx_got : c->sink;
			if (!c->rx_dst)
				need = ROD_MIN(need, (uint32_t)sizeof(c->sink));
			r = rx_take(c, dst, need, &again);
			if (r <= 0)
				goto out;
			if (c->state == CONN_FFP && c->params.data_digest)
				c->rx_crc = rod_crc32c(c->rx_crc, dst, (size_t)r);
			c->rx_got += (uint32_t)r;
			if (c->rx_got == c->cur.data_len)
				c->rx_state = RX_TAIL;
			continue;
		}
		case RX_TAIL: {
			if (c->tail_got < c->tail_need) {
				r = rx_take(c, c->rx_tail + c->tail_got, c->tail_need - c->tail_got,
					    &again);
				if (r <= 0)
					goto out;
				c->tail_got += (uint32_t)r;
				if (c->tail_got < c->tail_need)
					continue;
			}
			bool dd_ok = true;
			if (c->cur.data_len && c->state == CONN_FFP && c->params.data_digest) {
				uint32_t pad = rod_iscsi_pad4(c->cur.data_len);
				uint32_t crc = rod_crc32c(c->rx_crc, c->rx_tail, pad);
				dd_ok = crc == rod_iscsi_get_digest(c->rx_tail + pad);
			}
			c->rx_state = RX_BHS;
			c->hdr_got = 0;
			c->hdr_need = ISCSI_BHS_LEN;
			if (rod_iscsi_rx_pdu(c, dd_ok) < 0) {
				if (c->state != CONN_DEAD)
					bad_pdu(c, "malformed PDU");
				return;
			}
			if (--budget == 0)
				return;
			continue;
		}
		}
	out:
		if (r < 0) {
			rod_iscsi_conn_close(c, "read error");
		} else if (r == 0 && !again) {
			/* End of stream: finish what is in flight, then close. */
			if (c->state == CONN_FFP || c->state == CONN_LOGIN) {
				c->state = CONN_CLOSING;
				if (c->pollable) {
					c->rd_paused = true;
					ep_mod(c);
				}
				rod_iscsi_conn_input_ended(c);
				if (!c->txq && c->ntasks == 0)
					rod_iscsi_conn_close(c, "peer closed the connection");
			}
		}
		return;
	}
}

/* ---- completions ----------------------------------------------------------------- */

static void thread_signal(struct iscsi_thread *t)
{
	uint64_t one = 1;
	ssize_t w = write(t->evfd, &one, sizeof(one));
	(void)w;
}

/* After queueing something for t under t->lock: unlock, and wake t through its eventfd
 * unless the queues already held something (then a wake-up is on its way). */
static void thread_unlock_wake(struct iscsi_thread *t)
{
	bool signal = !t->signalled;
	t->signalled = true;
	pthread_mutex_unlock(&t->lock);
	if (signal)
		thread_signal(t);
}

static void conn_adopt(struct iscsi_thread *t, int fd, const struct sockaddr_storage *peer);

static void task_done_cb(struct rod_scsi_cmd *cmd)
{
	struct iscsi_task *task = cmd->transport_priv;
	struct iscsi_thread *t = task->conn->thr;
	task->done_next = NULL;
	if (cur_thread == t) {
		if (t->ldone_tail)
			t->ldone_tail->done_next = task;
		else
			t->ldone = task;
		t->ldone_tail = task;
		return;
	}
	pthread_mutex_lock(&t->lock);
	if (t->rdone_tail)
		t->rdone_tail->done_next = task;
	else
		t->rdone = task;
	t->rdone_tail = task;
	thread_unlock_wake(t);
}

void (*rod_iscsi_done_fn(void))(struct rod_scsi_cmd *)
{
	return task_done_cb;
}

static void drain_local(struct iscsi_thread *t)
{
	while (t->ldone) {
		struct iscsi_task *task = t->ldone;
		t->ldone = NULL;
		t->ldone_tail = NULL;
		while (task) {
			struct iscsi_task *n = task->done_next;
			rod_iscsi_task_complete(task);
			task = n;
		}
	}
}

static void drain_remote(struct iscsi_thread *t)
{
	uint64_t v;
	ssize_t r = read(t->evfd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&t->lock);
	struct iscsi_task *task = t->rdone;
	struct iscsi_conn *kills = t->kills;
	struct iscsi_handoff *hand = t->handoffs;
	t->rdone = t->rdone_tail = NULL;
	t->kills = NULL;
	t->handoffs = NULL;
	t->signalled = false;
	pthread_mutex_unlock(&t->lock);
	while (hand) {
		struct iscsi_handoff *n = hand->next;
		conn_adopt(t, hand->fd, &hand->peer);
		free(hand);
		hand = n;
	}
	while (task) {
		struct iscsi_task *n = task->done_next;
		rod_iscsi_task_complete(task);
		task = n;
	}
	while (kills) {
		struct iscsi_conn *n = kills->kill_next;
		/* next read first: once pending is clear, kill_next may be reused */
		pthread_mutex_lock(&t->lock);
		kills->kill_pending = false;
		pthread_mutex_unlock(&t->lock);
		if (kills->state != CONN_DEAD) {
			rod_info("iscsi: closing the session of %s (reinstated, or a target cold "
				 "reset)", kills->initiator);
			rod_iscsi_conn_close(kills, "closed by another session");
		}
		rod_iscsi_conn_put(kills);
		kills = n;
	}
}

/* Ask the thread owning c to close it (session reinstatement from another thread).
 * The caller holds a reference for the queue. */
void rod_iscsi_conn_kill_remote(struct iscsi_conn *c)
{
	struct iscsi_thread *t = c->thr;
	pthread_mutex_lock(&t->lock);
	if (c->kill_pending) {
		/* already queued: the queue holds one reference, drop the caller's */
		pthread_mutex_unlock(&t->lock);
		rod_iscsi_conn_put(c);
		return;
	}
	c->kill_pending = true;
	c->kill_next = t->kills;
	t->kills = c;
	thread_unlock_wake(t);
}

/* ---- threads ------------------------------------------------------------------------ */

/* Serve an accepted connection on t (counted in t->load already). */
static void conn_adopt(struct iscsi_thread *t, int fd, const struct sockaddr_storage *peer)
{
	struct iscsi_conn *c = NULL;
	if (!atomic_load(&t->srv->stopping))
		c = conn_new(t, fd, fd);
	if (!c) {
		close(fd);
		atomic_fetch_sub(&t->load, 1);
		return;
	}
	c->in_load = true;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->pollable = true;
	addr_format(peer, c->peer, sizeof(c->peer));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		addr_format(&ss, c->local, sizeof(c->local));
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->rd_item };
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rod_iscsi_conn_close(c, "epoll");
		return;
	}
	rod_debug("iscsi: connection from %s on thread %d", c->peer, t->idx);
}

/* The thread with the fewest connections (t on a tie), its count raised. Whichever
 * thread EPOLLEXCLUSIVE wakes accepts; without this, initiators that connect one after
 * the other usually all land on the same thread. */
static struct iscsi_thread *least_loaded(struct iscsi_thread *t)
{
	struct rod_iscsi_server *s = t->srv;
	struct iscsi_thread *best = t;
	uint32_t min = atomic_load(&t->load);
	for (int i = 0; i < s->nthreads; i++) {
		uint32_t l = atomic_load(&s->threads[i].load);
		if (l < min) {
			min = l;
			best = &s->threads[i];
		}
	}
	atomic_fetch_add(&best->load, 1);
	return best;
}

static void accept_conns(struct iscsi_thread *t, int lfd)
{
	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (atomic_load(&t->srv->stopping)) {
			close(fd);
			continue;
		}
		struct iscsi_thread *u = least_loaded(t);
		struct iscsi_handoff *h = u != t ? malloc(sizeof(*h)) : NULL;
		if (!h) {
			if (u != t) {
				atomic_fetch_sub(&u->load, 1);
				atomic_fetch_add(&t->load, 1);
			}
			conn_adopt(t, fd, &ss);
			continue;
		}
		h->fd = fd;
		h->peer = ss;
		pthread_mutex_lock(&u->lock);
		h->next = u->handoffs;
		u->handoffs = h;
		thread_unlock_wake(u);
	}
}

static void thread_timers(struct iscsi_thread *t)
{
	struct iscsi_conn *c = t->conns;
	while (c) {
		struct iscsi_conn *n = c->next;
		if (c->state != CONN_DEAD)
			rod_iscsi_conn_timer(c, t->now_ns);
		c = n;
	}
}

/* Stopping. First every logged-in normal session is asked to log out (RFC 7143
 * 11.9.1 AsyncEvent 1, within ISCSI_STOP_LOGOUT_S seconds) and keeps being served
 * meanwhile, so an initiator finishes cleanly and knows to come back later. Then, or
 * once it has logged out: stop reading, let tasks finish, flush, close (a session still
 * there is told first, AsyncEvent 3 with Time2Wait/Time2Retain). A peer that does not
 * read its answers cannot hold the stop up for more than ISCSI_STOP_GRACE_NS. */
#define ISCSI_STOP_LOGOUT_S 2u
#define ROD_ISCSI_POLL_US_DEFAULT 200
#define ISCSI_STOP_GRACE_NS (10ull * 1000000000ull)
static void thread_stop_conns(struct iscsi_thread *t, uint64_t since)
{
	uint64_t now = rod_now_ns();
	bool force = now > since && now - since > ISCSI_STOP_GRACE_NS;
	bool asking = now < since + ISCSI_STOP_LOGOUT_S * 1000000000ull;
	struct iscsi_conn *c = t->conns;
	while (c) {
		struct iscsi_conn *n = c->next;
		if (force && c->state != CONN_DEAD) {
			rod_iscsi_conn_close(c, "server stopping (grace period over)");
			c = n;
			continue;
		}
		if (c->state == CONN_FFP && !c->discovery && c->pollable) {
			if (!c->async_logout_sent) {
				c->async_logout_sent = true;
				rod_iscsi_conn_send_async(c, 1, 0, ISCSI_STOP_LOGOUT_S);
			}
			if (asking) {
				c = n;
				continue;
			}
			/* did not log out in time: say the session is being dropped */
			rod_iscsi_conn_send_async(c, 3, (uint16_t)c->params.time2wait,
						  (uint16_t)c->params.time2retain);
		}
		if (c->state == CONN_LOGIN || c->state == CONN_FFP) {
			c->state = CONN_CLOSING;
			c->rd_paused = true;
			ep_mod(c);
			rod_iscsi_conn_input_ended(c);
		}
		if (c->state == CONN_CLOSING && c->ntasks == 0 && !c->txq)
			rod_iscsi_conn_close(c, "server stopping");
		c = n;
	}
}

/* Adaptive polling: a thread that handled an event within the last poll window keeps
 * polling epoll (no sleep) for up to that window before it blocks, unless commands of
 * its connections are still under way (the store's completion wakes it then, and a
 * loaded thread would only burn CPU spinning). A wake-up of a sleeping thread on another
 * CPU costs tens of microseconds on some VMs (docs/iscsi.md, runs G and K-P), which
 * dominates QD1 latency; polling keeps the thread on its CPU while a session waits for
 * its initiator and costs nothing once it goes idle. ROD_ISCSI_POLL_US (0: off). */
static uint64_t poll_window_ns(void)
{
	static _Atomic int64_t w = -1;
	int64_t v = atomic_load(&w);
	if (v < 0) {
		const char *e = getenv("ROD_ISCSI_POLL_US");
		v = e ? (int64_t)strtoull(e, NULL, 10) * 1000 : ROD_ISCSI_POLL_US_DEFAULT * 1000;
		atomic_store(&w, v);
	}
	return (uint64_t)v;
}

static bool thread_tasks_pending(const struct iscsi_thread *t)
{
	for (const struct iscsi_conn *c = t->conns; c; c = c->next)
		if (c->ntasks > c->tx_final)
			return true;
	return false;
}

/* Following the initiator. On a VM (and on hosts with deep C-states) waking a task on
 * an idle CPU costs tens of microseconds, and at QD1 that wake-up is most of the round
 * trip: the initiator sleeps while the target works. When a thread is about to poll
 * for one connection's next command, it moves to the CPU where that connection's
 * packets arrive (SO_INCOMING_CPU: on loopback the initiator's CPU, with a NIC the CPU
 * of its receive queue) and polls there at SCHED_IDLE. The kernel then treats that CPU
 * as idle and wakes the initiator on it, where it preempts the poller at once: the
 * round trip needs no cross-CPU wake-up at all (docs/iscsi.md, "Following the
 * initiator"). It moves only after the same other CPU was seen FOLLOW_AFTER times in a
 * row, and leaves its affinity as it was (the kernel may move it away again). It does
 * nothing while any other connection of the server is busy (conn_alone). Leaving
 * SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE >= 20: without either, or with
 * ROD_ISCSI_FOLLOW=0, threads poll as before. */
#define FOLLOW_AFTER 4
#define FOLLOW_QUIET_NS (10ull * 1000000ull)

static void *follow_probe_main(void *arg)
{
	struct sched_param sp = { 0 };
	bool *ok = arg;
	*ok = sched_setscheduler(0, SCHED_IDLE, &sp) == 0 &&
	      sched_setscheduler(0, SCHED_OTHER, &sp) == 0;
	return NULL;
}

/* Whether a thread may poll at SCHED_IDLE: tried once, on a thread of its own. */
static bool follow_allowed(void)
{
	static _Atomic int allowed = -1;
	int v = atomic_load(&allowed);
	if (v >= 0)
		return v;
	const char *e = getenv("ROD_ISCSI_FOLLOW");
	bool wanted = !e || atoi(e) != 0, ok = false;
	pthread_t th;
	if (wanted && pthread_create(&th, NULL, follow_probe_main, &ok) == 0)
		pthread_join(th, NULL);
	atomic_store(&allowed, ok);
	if (wanted && !ok)
		rod_info("iscsi: network threads will not follow initiators (SCHED_IDLE cannot "
			 "be left without CAP_SYS_NICE)");
	return ok;
}

static void thread_sched_idle(struct iscsi_thread *t, bool idle)
{
	if (t->sched_idle == idle)
		return;
	struct sched_param sp = { 0 };
	if (sched_setscheduler(0, idle ? SCHED_IDLE : SCHED_OTHER, &sp) == 0)
		t->sched_idle = idle;
}

/* Move to a CPU and let the kernel place the thread freely again from there. */
static bool thread_move(int cpu)
{
	cpu_set_t all, one;
	if (sched_getaffinity(0, sizeof(all), &all) < 0 || !CPU_ISSET(cpu, &all))
		return false;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one) < 0)
		return false;
	sched_setaffinity(0, sizeof(all), &all);
	return sched_getcpu() == cpu;
}

/* Whether c is the only connection of the server that received anything lately. A
 * thread serving several initiators is better off away from all of them, and while
 * other network threads are busy the CPUs do not go idle anyway. */
static bool conn_alone(const struct iscsi_thread *t, const struct iscsi_conn *c)
{
	for (const struct iscsi_conn *o = t->conns; o; o = o->next)
		if (o != c && o->state != CONN_DEAD && t->now_ns - o->last_rx_ns < FOLLOW_QUIET_NS)
			return false;
	const struct rod_iscsi_server *s = t->srv;
	for (int i = 0; i < s->nthreads; i++) {
		uint64_t b = atomic_load_explicit(&s->threads[i].busy_pub, memory_order_relaxed);
		if (&s->threads[i] != t && b + FOLLOW_QUIET_NS > t->now_ns)   /* b may be later */
			return false;
	}
	return true;
}

/* Called with c's answer queued, before it is sent, when the thread will poll next. */
static void thread_follow(struct iscsi_thread *t, struct iscsi_conn *c)
{
	if (!conn_alone(t, c))
		return;
	int cpu = -1;
	socklen_t l = sizeof(cpu);
	if (getsockopt(c->rfd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &l) < 0 || cpu < 0)
		return;
	if (cpu != sched_getcpu()) {
		if (cpu != t->follow_cpu) {
			t->follow_cpu = cpu;
			t->follow_seen = 0;
		}
		if (++t->follow_seen < FOLLOW_AFTER || !thread_move(cpu))
			return;
		atomic_fetch_add_explicit(&t->srv->st_follow_moves, 1, memory_order_relaxed);
	}
	t->follow_seen = 0;
	thread_sched_idle(t, true);
}

static void thread_loop_once(struct iscsi_thread *t, int timeout_ms)
{
	struct epoll_event evs[64];
	uint64_t win = poll_window_ns();
	int n = 0;
	if (win && t->now_ns - t->busy_ns < win && !thread_tasks_pending(t)) {
		do {
			n = epoll_wait(t->epfd, evs, 64, 0);
			t->now_ns = rod_now_ns();
		} while (n == 0 && t->now_ns - t->busy_ns < win);
	}
	thread_sched_idle(t, false);
	if (n == 0)
		n = epoll_wait(t->epfd, evs, 64, timeout_ms);
	t->now_ns = rod_now_ns();
	if (n > 0) {
		t->busy_ns = t->now_ns;
		atomic_store_explicit(&t->busy_pub, t->now_ns, memory_order_relaxed);
	}
	for (int i = 0; i < n; i++) {
		struct iscsi_ep_item *it = evs[i].data.ptr;
		switch (it->kind) {
		case EP_LISTEN:
			accept_conns(t, it->fd);
			break;
		case EP_EVENT:
			drain_remote(t);
			break;
		case EP_CONN_RD: {
			struct iscsi_conn *c = it->ptr;
			if (c->state == CONN_DEAD)
				break;
			if (evs[i].events & EPOLLOUT)
				conn_flush(c);
			if (c->state != CONN_DEAD &&
			    (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				conn_readable(c);
			break;
		}
		case EP_CONN_WR: {
			struct iscsi_conn *c = it->ptr;
			if (c->state != CONN_DEAD)
				conn_flush(c);
			break;
		}
		}
		drain_local(t);
	}
	drain_local(t);
	/* one answer to send and nothing else under way: the thread polls next */
	if (t->follow && win && t->dirty && !t->dirty->dirty_next && t->dirty->pollable &&
	    !thread_tasks_pending(t))
		thread_follow(t, t->dirty);
	flush_dirty(t);
	reap(t);
}

static void *thread_main(void *arg)
{
	struct iscsi_thread *t = arg;
	char name[16];
	snprintf(name, sizeof(name), "rod-iscsi-%d", t->idx);
	rod_thread_name(name);
	cur_thread = t;
	t->follow = poll_window_ns() && follow_allowed();
	t->follow_cpu = -1;
	uint64_t last_timer = rod_now_ns(), stop_since = 0;
	for (;;) {
		bool stopping = atomic_load(&t->srv->stopping);
		if (stopping) {
			if (!stop_since)
				stop_since = rod_now_ns();
			thread_stop_conns(t, stop_since);
			flush_dirty(t);
			reap(t);
			if (t->nconns == 0)
				break;
		}
		thread_loop_once(t, stopping ? 50 : 1000);
		if (t->now_ns > last_timer && t->now_ns - last_timer >= 1000000000ull) {
			last_timer = t->now_ns;
			thread_timers(t);
			flush_dirty(t);
			reap(t);
		}
	}
	return NULL;
}

static int thread_init(struct rod_iscsi_server *s, struct iscsi_thread *t, int idx)
{
	t->srv = s;
	t->idx = idx;
	pthread_mutex_init(&t->lock, NULL);
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->epfd < 0 || t->evfd < 0)
		return -errno;
	t->ev_item = (struct iscsi_ep_item){ EP_EVENT, t, t->evfd };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &t->ev_item };
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) < 0)
		return -errno;
	t->now_ns = rod_now_ns();
	return 0;
}

static void thread_release(struct iscsi_thread *t)
{
	while (t->pdu_free) {
		struct iscsi_pdu *p = t->pdu_free;
		t->pdu_free = p->next;
		free(p);
	}
	while (t->task_free) {
		struct iscsi_task *k = t->task_free;
		t->task_free = k->next;
		free(k);
	}
	for (uint32_t c = 0; c < ISCSI_POOL_CLASSES; c++)
		while (t->pool[c]) {
			struct iscsi_pool_buf *b = t->pool[c];
			t->pool[c] = b->next;
			free(b);
		}
	while (t->handoffs) {   /* handed over as the server stopped */
		struct iscsi_handoff *h = t->handoffs;
		t->handoffs = h->next;
		close(h->fd);
		free(h);
	}
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->evfd >= 0)
		close(t->evfd);
	free(t->listen_items);
	pthread_mutex_destroy(&t->lock);
}

/* ---- listeners ---------------------------------------------------------------------- */

/* "ADDR:PORT" or "[v6]:PORT" -> sockaddr. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[128];
	const char *port;
	if (spec[0] == '[') {
		const char *e = strchr(spec, ']');
		if (!e || e[1] != ':' || (size_t)(e - spec - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec + 1, (size_t)(e - spec - 1));
		host[e - spec - 1] = '\0';
		port = e + 2;
	} else {
		const char *e = strrchr(spec, ':');
		if (!e || (size_t)(e - spec) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec, (size_t)(e - spec));
		host[e - spec] = '\0';
		port = e + 1;
	}
	uint64_t p;
	if (rod_iscsi_parse_number(port, &p) < 0 || p > 65535)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (void *)ss;
	struct sockaddr_in6 *a6 = (void *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)p);
		*sl = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		*sl = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

int rod_iscsi_server_new(const struct rod_iscsi_server_opts *o, struct rod_iscsi_server **out)
{
	if (!o || !o->target_name || !o->scsi)
		return -EINVAL;
	struct rod_iscsi_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->target_name = strdup(o->target_name);
	s->target_alias = o->target_alias ? strdup(o->target_alias) : NULL;
	s->scsi = o->scsi;
	s->auth_lookup = o->auth_lookup;
	s->auth_arg = o->auth_arg;
	atomic_store(&s->max_sessions, o->max_sessions);
	memcpy(s->discovery_chap_user, o->discovery_chap_user, sizeof(s->discovery_chap_user));
	memcpy(s->discovery_chap_secret, o->discovery_chap_secret,
	       sizeof(s->discovery_chap_secret));
	s->discovery_chap_user[sizeof(s->discovery_chap_user) - 1] = '\0';
	s->discovery_chap_secret[sizeof(s->discovery_chap_secret) - 1] = '\0';
	rod_iscsi_params_target(&s->target_params);
	pthread_mutex_init(&s->lock, NULL);
	s->next_tsih = 1;

	int nl = 0;
	while (o->listen && o->listen[nl])
		nl++;
	s->listen_fds = calloc((size_t)nl + 1, sizeof(int));
	s->portals = calloc((size_t)nl + 1, sizeof(*s->portals));
	if (!s->target_name || !s->listen_fds || !s->portals) {
		rod_iscsi_server_free(s);
		return -ENOMEM;
	}
	for (int i = 0; i < nl; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;
		int r = parse_listen(o->listen[i], &ss, &sl);
		if (r < 0) {
			rod_err("iscsi: bad listen address \"%s\" (use ADDR:PORT or [v6]:PORT)",
				o->listen[i]);
			rod_iscsi_server_free(s);
			return r;
		}
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (ss.ss_family == AF_INET6)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		}
		if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
			r = -errno;
			rod_err("iscsi: cannot listen on %s: %s", o->listen[i], strerror(-r));
			if (fd >= 0)
				close(fd);
			rod_iscsi_server_free(s);
			return r;
		}
		s->listen_fds[s->nlisten] = fd;
		sl = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		addr_format(&ss, s->portals[s->nlisten], sizeof(s->portals[0]));
		s->nlisten++;
	}
	int nt = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (nt < 1)
		nt = 1;
	if (nt > 64)
		nt = 64;
	s->nthreads = nt;
	s->threads = calloc((size_t)nt, sizeof(*s->threads));
	if (!s->threads) {
		rod_iscsi_server_free(s);
		return -ENOMEM;
	}
	for (int i = 0; i < nt; i++) {
		s->threads[i].epfd = s->threads[i].evfd = -1;
		int r = thread_init(s, &s->threads[i], i);
		if (r < 0) {
			rod_iscsi_server_free(s);
			return r;
		}
	}
	*out = s;
	return 0;
}

size_t rod_iscsi_server_portals(struct rod_iscsi_server *s, char (*out)[64], size_t max)
{
	size_t n = 0;
	for (int i = 0; i < s->nlisten && n < max; i++, n++)
		memcpy(out[n], s->portals[i], 64);
	return (size_t)s->nlisten;
}

int rod_iscsi_server_start(struct rod_iscsi_server *s)
{
	if (s->started)
		return -EALREADY;
	for (int i = 0; i < s->nthreads; i++) {
		struct iscsi_thread *t = &s->threads[i];
		t->listen_items = calloc((size_t)s->nlisten + 1, sizeof(*t->listen_items));
		if (!t->listen_items)
			return -ENOMEM;
		for (int l = 0; l < s->nlisten; l++) {
			t->listen_items[l] = (struct iscsi_ep_item){ EP_LISTEN, t, s->listen_fds[l] };
			/* EPOLLEXCLUSIVE: one thread wakes per new connection; the thread that
			 * accepts owns the connection for its whole life. */
			struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
						  .data.ptr = &t->listen_items[l] };
			if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, s->listen_fds[l], &ev) < 0)
				return -errno;
		}
	}
	for (int i = 0; i < s->nthreads; i++) {
		int r = pthread_create(&s->threads[i].tid, NULL, thread_main, &s->threads[i]);
		if (r) {
			atomic_store(&s->stopping, true);
			for (int j = 0; j < i; j++) {
				thread_signal(&s->threads[j]);
				pthread_join(s->threads[j].tid, NULL);
				s->threads[j].started = false;
			}
			return -r;
		}
		s->threads[i].started = true;
	}
	s->started = true;
	return 0;
}

void rod_iscsi_server_stop(struct rod_iscsi_server *s)
{
	if (!s)
		return;
	/* Listeners go first: an initiator whose connection closes during the stop must
	 * not get back in (it would start a new session on a target going away). */
	for (int i = 0; i < s->nthreads; i++)
		for (int l = 0; l < s->nlisten; l++)
			epoll_ctl(s->threads[i].epfd, EPOLL_CTL_DEL, s->listen_fds[l], NULL);
	for (int l = 0; l < s->nlisten; l++) {
		if (s->listen_fds[l] >= 0)
			close(s->listen_fds[l]);
		s->listen_fds[l] = -1;
	}
	atomic_store(&s->stopping, true);
	for (int i = 0; i < s->nthreads; i++)
		thread_signal(&s->threads[i]);
	for (int i = 0; i < s->nthreads; i++)
		if (s->threads[i].started) {
			pthread_join(s->threads[i].tid, NULL);
			s->threads[i].started = false;
		}
	s->started = false;
}

void rod_iscsi_server_free(struct rod_iscsi_server *s)
{
	if (!s)
		return;
	if (s->started)
		rod_iscsi_server_stop(s);
	for (int l = 0; l < s->nlisten; l++)
		if (s->listen_fds[l] >= 0)
			close(s->listen_fds[l]);
	for (int i = 0; s->threads && i < s->nthreads; i++)
		thread_release(&s->threads[i]);
	while (s->sessions) {
		struct iscsi_sess_entry *e = s->sessions;
		s->sessions = e->next;
		free(e);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->threads);
	free(s->listen_fds);
	free(s->portals);
	free(s->target_name);
	free(s->target_alias);
	free(s);
}

void rod_iscsi_server_set_max_sessions(struct rod_iscsi_server *s, unsigned n)
{
	atomic_store(&s->max_sessions, n);
}

void rod_iscsi_server_stats(struct rod_iscsi_server *s, struct rod_iscsi_stats *out)
{
	out->sessions = atomic_load(&s->st_sessions);
	out->connections = atomic_load(&s->st_connections);
	out->pdus_in = atomic_load(&s->st_pdus_in);
	out->pdus_out = atomic_load(&s->st_pdus_out);
	out->bad_pdus = atomic_load(&s->st_bad_pdus);
	out->thread_moves = atomic_load(&s->st_follow_moves);
}

/* ---- one connection on the caller's thread ---------------------------------------- */

int rod_iscsi_serve_fd(struct rod_iscsi_server *s, int in_fd, int out_fd)
{
	struct iscsi_thread t;
	memset(&t, 0, sizeof(t));
	t.epfd = t.evfd = -1;
	int r = thread_init(s, &t, -1);
	if (r < 0) {
		thread_release(&t);
		return r;
	}
	struct iscsi_thread *saved = cur_thread;
	cur_thread = &t;
	struct iscsi_conn *c = conn_new(&t, in_fd, out_fd);
	if (!c) {
		cur_thread = saved;
		thread_release(&t);
		return -ENOMEM;
	}
	snprintf(c->peer, sizeof(c->peer), "fd %d", in_fd);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(in_fd, (struct sockaddr *)&ss, &sl) == 0)
		addr_format(&ss, c->local, sizeof(c->local));
	else if (s->nlisten)
		snprintf(c->local, sizeof(c->local), "%s", s->portals[0]);

	/* Sockets and pipes go into epoll; regular files (fuzz inputs) are read blocking. */
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->rd_item };
	if (epoll_ctl(t.epfd, EPOLL_CTL_ADD, in_fd, &ev) == 0) {
		c->pollable = true;
		set_nonblock(in_fd);
		if (out_fd != in_fd) {
			struct epoll_event ev2 = { .events = 0, .data.ptr = &c->wr_item };
			if (epoll_ctl(t.epfd, EPOLL_CTL_ADD, out_fd, &ev2) == 0)
				set_nonblock(out_fd);
			else
				c->wr_item.kind = 0;
		}
	}
	/* The connection frees itself when done; hold a reference to see that. */
	atomic_fetch_add(&c->refs, 1);
	uint64_t stop_since = 0;
	while (c->state != CONN_DEAD) {
		t.now_ns = rod_now_ns();
		/* rod_iscsi_server_stop (rodd --stdin got SIGTERM): the same orderly stop as
		 * a listener thread's (logout request, then close). */
		if (atomic_load(&s->stopping)) {
			if (!stop_since)
				stop_since = t.now_ns;
			thread_stop_conns(&t, stop_since);     /* reaped below, as at EOF */
		}
		bool reading = c->state == CONN_LOGIN || c->state == CONN_FFP;
		if (!c->pollable && reading)
			conn_readable(c);   /* blocking reads until the end of the input */
		drain_local(&t);
		flush_dirty(&t);
		reap(&t);
		if (c->state == CONN_DEAD)
			break;
		if (c->state == CONN_CLOSING && c->ntasks == 0 && !c->txq) {
			rod_iscsi_conn_close(c, NULL);
			break;
		}
		if (!c->pollable && (c->state == CONN_LOGIN || c->state == CONN_FFP))
			continue;
		/* wait for the socket (when pollable) and for completions on the eventfd */
		thread_loop_once(&t, stop_since ? 50 : 1000);
		if (c->state != CONN_DEAD)
			rod_iscsi_conn_timer(c, t.now_ns);
	}
	/* The connection closed both fds; wait for its tasks still in the SCSI core. */
	while (t.nconns) {
		struct epoll_event e;
		if (epoll_wait(t.epfd, &e, 1, 100) > 0)
			drain_remote(&t);
		drain_local(&t);
		flush_dirty(&t);
		reap(&t);
	}
	rod_iscsi_conn_put(c);
	cur_thread = saved;
	thread_release(&t);
	return 0;
}
