/* Internals of the iSCSI target shared by the server (threads, sockets, buffers) and
 * the protocol engine (login, full feature phase). Not a public header. */
#ifndef ROD_ISCSI_INT_H
#define ROD_ISCSI_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "rod/iscsi.h"
#include "rod/scsi.h"

#include "iscsi_chap.h"
#include "iscsi_keys.h"
#include "iscsi_pdu.h"

#define ISCSI_QUEUE_DEPTH 128u        /* CmdSN window per session */
#define ISCSI_MAX_CMD_BYTES (64u << 20) /* largest EDTL accepted (buffer per command) */
#define ISCSI_MAX_R2T 16u             /* our MaxOutstandingR2T offer */
#define ISCSI_RXBUF 65536u            /* socket read-ahead buffer per connection */
#define ISCSI_RX_DIRECT 16384u        /* data at least this long is read in place */
#define ISCSI_TPGT 1u
#define ISCSI_LOGIN_TIMEOUT_NS (30ull * 1000000000ull)
#define ISCSI_NOP_IDLE_NS (10ull * 1000000000ull)    /* ping a connection idle this long */
#define ISCSI_NOP_TIMEOUT_NS (30ull * 1000000000ull) /* drop it when the ping is unanswered */
#define ISCSI_POOL_CLASSES 16u        /* 4 KiB << 0 .. 4 KiB << 15 (128 MiB) */

struct iscsi_conn;
struct iscsi_thread;

/* An outgoing PDU: header (+digest), optional data (borrowed or owned), pad + digest. */
struct iscsi_pdu {
	struct iscsi_pdu *next;
	uint8_t hdr[ISCSI_BHS_LEN + ISCSI_DIGEST_LEN];
	uint8_t hlen;
	uint8_t tlen;                 /* pad + data digest bytes in tail */
	bool close_after;             /* close the connection once this is sent */
	uint8_t tail[8];
	const void *data;
	uint32_t dlen;
	void *owned;                  /* freed with the PDU (login/text responses) */
	struct iscsi_task *release;   /* task freed once this PDU is on the wire */
};

enum iscsi_task_state {
	TASK_DATA_OUT,   /* collecting Data-Out */
	TASK_EXEC,       /* inside rod_scsi_exec */
	TASK_RESPONDED,  /* response queued, waiting for the socket */
};

struct iscsi_tmf;

/* One SCSI command of a connection. Owned by the connection's thread; the SCSI core
 * holds it only between rod_scsi_exec and cmd.done. */
struct iscsi_task {
	struct rod_scsi_cmd cmd;
	struct iscsi_conn *conn;
	struct iscsi_task *next, *prev;   /* conn->tasks */
	struct iscsi_task *hnext;         /* conn->itt_hash bucket */
	struct iscsi_task *done_next;     /* thread completion queues */
	enum iscsi_task_state state;
	uint32_t itt;
	uint32_t cmd_sn;
	bool immediate;                   /* does not count in the CmdSN window */
	bool aborted;                     /* response suppressed (task management) */
	struct iscsi_tmf *tmf;            /* the TMF waiting for this task */
	struct iscsi_tmf *tmf_wait;       /* not a command: stands for the tasks of other
	                                     sessions this TMF aborted; "completes" (through
	                                     the usual completion queues) once the SCSI core
	                                     says they are all gone */
	uint8_t lun_raw[8];
	uint8_t *buf;
	uint32_t buf_class;
	uint32_t exp_len;
	/* Data-Out state (DataPDUInOrder=Yes, DataSequenceInOrder=Yes: data arrives in
	 * increasing offset order, so one cursor suffices). */
	uint32_t received;                /* bytes in buf, contiguous from 0 */
	uint32_t unsol_end;               /* end of the first (unsolicited) burst */
	uint32_t unsol_sn;                /* next DataSN of unsolicited Data-Out */
	uint32_t solicited;               /* bytes asked for by R2Ts so far (from 0) */
	uint32_t r2t_sn;                  /* next R2TSN */
	uint32_t data_sn;                 /* Data-In PDUs sent */
	struct {
		uint32_t ttt, off, len, next_sn;
	} r2t[ISCSI_MAX_R2T];             /* outstanding R2Ts, oldest first */
	uint32_t r2t_head, r2t_count;
	bool counted;                     /* holds a slot of the CmdSN window */
	bool final_seen;                  /* SCSI Command F bit */
	bool refused;                     /* answered by the transport, data discarded */
	/* Task attributes (SAM-5): the SCSI core orders commands as rod_scsi_exec sees
	 * them, so exec waits here while the attribute says an earlier command of this
	 * connection, still collecting Data-Out, must come first (exec_hold_*). */
	bool exec_held;                   /* all data in, waiting for earlier commands */
	bool ord_pre;                     /* ORDERED, not yet passed to the SCSI core */
	uint8_t sense_seg[2 + ROD_SCSI_SENSE_MAX]; /* SCSI Response data: length + sense */
};

/* A task management request waiting for its affected tasks to finish. */
struct iscsi_tmf {
	struct iscsi_tmf *next;
	uint32_t itt;
	uint8_t response;
	uint32_t waiting;                 /* affected tasks still inside the SCSI core */
};

enum iscsi_conn_state {
	CONN_LOGIN,
	CONN_FFP,
	CONN_CLOSING,    /* no more input; waiting for tasks and output to drain */
	CONN_DEAD,       /* socket closed; waiting for tasks still in the SCSI core */
};

enum iscsi_rx_state { RX_BHS, RX_HDR_REST, RX_DATA, RX_TAIL };

/* An epoll registration: what a ready fd belongs to. */
struct iscsi_ep_item {
	int kind;        /* EP_LISTEN, EP_EVENT, EP_CONN_RD, EP_CONN_WR */
	void *ptr;
	int fd;
};
enum { EP_LISTEN = 1, EP_EVENT, EP_CONN_RD, EP_CONN_WR };

/* Login negotiation state (freed at full feature phase). */
struct iscsi_login {
	bool started;
	uint8_t cur_stage;
	bool first_response_sent;
	bool auth_required;
	bool auth_done;
	enum { CHAP_NONE, CHAP_WAIT_A, CHAP_WAIT_R } chap;
	uint8_t chap_id;
	uint8_t chap_challenge[ISCSI_CHAP_CHALLENGE_LEN];
	struct iscsi_negotiation neg;
	char *text;                       /* accumulated request text (C bit) */
	uint32_t text_len;
	uint32_t itt;
	uint64_t started_ns;
};

/* One TCP connection = one session (MaxConnections=1).
 * Threading: every field is owned by conn->thr's thread except refs (atomic) and
 * kill_next/kill_pending (guarded by thr->lock). */
struct iscsi_conn {
	struct rod_iscsi_server *srv;
	struct iscsi_thread *thr;
	struct iscsi_conn *next, *prev;   /* thr->conns */
	struct iscsi_conn *dirty_next;    /* thr->dirty (needs a flush) */
	bool dirty;
	atomic_int refs;
	struct iscsi_conn *kill_next;     /* thr->kills */
	bool kill_pending;                /* on thr->kills (guarded by thr->lock) */
	struct iscsi_conn *grave_next;    /* thr->graveyard: freed at the end of the loop */
	enum iscsi_conn_state state;
	int rfd, wfd;
	bool pollable;                    /* in epoll (false: blocking fd from serve_fd) */
	bool in_load;                     /* counted in thr->load */
	bool want_out;                    /* EPOLLOUT armed */
	bool rd_paused;                   /* EPOLLIN removed (stopping / closing) */
	struct iscsi_ep_item rd_item, wr_item;
	char local[64];                   /* "ip:port" of our end (SendTargets) */
	char peer[64];

	/* receive */
	uint8_t *rxbuf;
	uint32_t rx_start, rx_end;
	enum iscsi_rx_state rx_state;
	uint8_t hdr[ISCSI_BHS_LEN + ISCSI_AHS_MAX + ISCSI_DIGEST_LEN];
	uint32_t hdr_need, hdr_got;
	struct iscsi_bhs_info cur;
	uint8_t *rx_dst;                  /* where the data segment goes; NULL: discard */
	uint32_t rx_got;
	uint32_t rx_crc;
	uint8_t rx_tail[8];
	uint32_t tail_need, tail_got;
	uint8_t *scratch;                 /* data of non-SCSI PDUs (text, NOP, login) */
	uint32_t scratch_cap;
	struct iscsi_task *rx_task;       /* task whose data is arriving */
	uint8_t sink[4096];

	/* transmit */
	struct iscsi_pdu *txq, *txq_tail;
	uint32_t tx_off;
	uint32_t tx_final;                /* tasks whose last PDU waits in txq */
	bool close_when_sent;

	/* session */
	struct iscsi_params params;
	struct iscsi_login *login;
	bool discovery;
	uint8_t isid[6];
	uint16_t tsih;
	uint16_t cid;
	char initiator[224];
	struct rod_iscsi_auth auth;
	uint32_t stat_sn;
	uint32_t exp_cmd_sn;
	uint32_t active;                  /* non-immediate tasks not yet answered */
	uint32_t nexec;                   /* tasks inside the SCSI core */
	uint32_t nheld, ord_pre;          /* tasks exec_held / ord_pre */
	bool in_close;                    /* rod_iscsi_conn_close is tearing down */
	bool counted_session;             /* counted in st_sessions */
	char *text;                       /* FFP Text request accumulated over C bits */
	uint32_t text_len;
	uint32_t logout_itt;
	struct rod_scsi_nexus nexus;
	bool nexus_registered;
	bool in_session_table;
	struct iscsi_task *tasks;         /* every live task */
	uint32_t ntasks;
	struct iscsi_task *itt_hash[256];
	struct iscsi_tmf *tmfs, *tmfs_tail;
	uint32_t next_ttt;
	uint64_t last_rx_ns;
	uint64_t nop_sent_ns;             /* 0: no ping outstanding */
	uint32_t nop_ttt;
	bool logout_pending;
	bool async_logout_sent;           /* server stopping: AsyncEvent 1 sent */
};

struct iscsi_pool_buf {
	struct iscsi_pool_buf *next;
};

/* A connection accepted by one network thread for another (the least loaded). */
struct iscsi_handoff {
	struct iscsi_handoff *next;
	int fd;
	struct sockaddr_storage peer;
};

/* A network thread. Fields are owned by the thread except the remote queues, which
 * other threads append to under lock. */
struct iscsi_thread {
	struct rod_iscsi_server *srv;
	int idx;
	pthread_t tid;
	bool started;
	int epfd;
	int evfd;
	struct iscsi_ep_item ev_item;
	pthread_mutex_t lock;             /* guards rdone*, kills, handoffs, signalled */
	struct iscsi_task *rdone, *rdone_tail;
	struct iscsi_conn *kills;
	struct iscsi_handoff *handoffs;   /* accepted by another thread, for this one */
	bool signalled;
	_Atomic uint32_t load;            /* accepted connections owned or on their way */
	/* owner-thread only */
	struct iscsi_task *ldone, *ldone_tail; /* completions that ran on this thread */
	struct iscsi_conn *conns;
	uint32_t nconns;
	struct iscsi_conn *dirty;
	struct iscsi_conn *graveyard;     /* finished connections; events may still name them */
	struct iscsi_pdu *pdu_free;
	struct iscsi_task *task_free;
	struct iscsi_pool_buf *pool[ISCSI_POOL_CLASSES];
	uint32_t pool_count[ISCSI_POOL_CLASSES];
	uint64_t now_ns;
	uint64_t busy_ns;                 /* last time an event was handled (adaptive poll) */
	_Atomic uint64_t busy_pub;        /* the same, for other threads to read */
	bool follow;                      /* follows initiators' CPUs (listener threads) */
	bool sched_idle;                  /* polling at SCHED_IDLE now */
	int follow_cpu;                   /* another CPU its connection's packets came from */
	uint32_t follow_seen;             /* ... how many times in a row */
	struct iscsi_ep_item *listen_items;
};

/* A logged-in normal session, for reinstatement (RFC 7143 6.3.5). */
struct iscsi_sess_entry {
	struct iscsi_sess_entry *next;
	char initiator[224];
	uint8_t isid[6];
	uint16_t tsih;
	struct iscsi_conn *conn;
};

struct rod_iscsi_server {
	char *target_name;
	char *target_alias;
	struct rod_scsi_target *scsi;
	int (*auth_lookup)(void *arg, const char *initiator_name, struct rod_iscsi_auth *out);
	void *auth_arg;
	char discovery_chap_user[256];
	char discovery_chap_secret[256];
	struct iscsi_params target_params;

	int nlisten;
	int *listen_fds;
	char (*portals)[64];
	int nthreads;
	struct iscsi_thread *threads;
	atomic_bool stopping;
	bool started;

	pthread_mutex_t lock;             /* guards sessions, next_tsih */
	struct iscsi_sess_entry *sessions;
	uint16_t next_tsih;

	atomic_uint_fast64_t st_sessions, st_connections, st_pdus_in, st_pdus_out, st_bad_pdus;
	atomic_uint_fast64_t st_follow_moves;
	atomic_uint max_sessions;       /* normal sessions at most, 0: unlimited */
};

/* server side (iscsi_server.c) */
struct iscsi_pdu *rod_iscsi_pdu_get(struct iscsi_thread *t);
void rod_iscsi_pdu_put(struct iscsi_thread *t, struct iscsi_pdu *p);
uint8_t *rod_iscsi_buf_get(struct iscsi_thread *t, uint32_t len, uint32_t *cls);
void rod_iscsi_buf_put(struct iscsi_thread *t, uint8_t *buf, uint32_t cls);
/* Queue a PDU for sending (computes digests as negotiated). */
void rod_iscsi_conn_send(struct iscsi_conn *c, struct iscsi_pdu *p);
void rod_iscsi_conn_close(struct iscsi_conn *c, const char *why);
void rod_iscsi_conn_put(struct iscsi_conn *c);
void rod_iscsi_conn_kill_remote(struct iscsi_conn *c);

/* protocol side (iscsi_conn.c) */
/* The header of a PDU is complete: decide where its data goes (sets c->rx_dst).
 * Returns 0, or -EPROTO to drop the connection. */
int rod_iscsi_rx_header(struct iscsi_conn *c);
/* The whole PDU is in. Returns 0 or -EPROTO. */
int rod_iscsi_rx_pdu(struct iscsi_conn *c, bool data_digest_ok);
void rod_iscsi_task_complete(struct iscsi_task *t);
void rod_iscsi_conn_timer(struct iscsi_conn *c, uint64_t now);
/* RFC 7143 11.9.1 Async Message: event 1 (log out within param3 seconds) or 3 (the
 * target drops the session; Time2Wait / Time2Retain in param2 / param3). */
void rod_iscsi_conn_send_async(struct iscsi_conn *c, uint8_t event, uint16_t param2,
			       uint16_t param3);
void rod_iscsi_conn_release_session(struct iscsi_conn *c);
void rod_iscsi_conn_abort_tasks(struct iscsi_conn *c);
void rod_iscsi_task_free(struct iscsi_task *t);
void rod_iscsi_conn_maybe_finish(struct iscsi_conn *c);
void rod_iscsi_conn_input_ended(struct iscsi_conn *c);
void rod_iscsi_conn_pause_input(struct iscsi_conn *c);
void (*rod_iscsi_done_fn(void))(struct rod_scsi_cmd *);
struct iscsi_task *rod_iscsi_task_get(struct iscsi_thread *t);

#endif
