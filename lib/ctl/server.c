/* The control socket: a unix stream socket served by one epoll thread ("rod-ctl").
 * Framing: one JSON-RPC request per line (JSON text never contains a raw newline
 * when compact), one response per line. Requests are bounded (ROD_CTL_REQ_MAX);
 * a longer line gets a parse error and the connection is closed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rod/ctl.h"
#include "rod/log.h"
#include "rod/util.h"

#define ROD_CTL_REQ_MAX (1u << 20)
#define ROD_CTL_CONN_MAX 64
#define ROD_CTL_SEND_TIMEOUT_MS 5000
/* A client silent this long loses its connection, so abandoned clients cannot hold
 * all ROD_CTL_CONN_MAX slots. */
#define ROD_CTL_IDLE_NS (300ull * 1000000000ull)

struct ctl_client {
	int fd;
	uint64_t last_ns;       /* monotonic time of the last byte received */
	char *buf;
	size_t len, cap;
	char who[32];           /* "uid:N" of the peer (SO_PEERCRED), for the audit log */
};

/* Fields are owned by the server thread once started, except stop_fd (written by
 * rod_ctl_server_free). */
struct rod_ctl_server {
	struct rod_ctl *ctl;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int epoll_fd;
	int stop_fd;
	pthread_t thread;
	bool started;
	struct ctl_client *clients[ROD_CTL_CONN_MAX];
};

static int mkdir_parents(const char *path)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s", path);
	char *slash = strrchr(tmp, '/');
	if (!slash || slash == tmp)
		return 0;
	*slash = '\0';
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

int rod_ctl_server_new(struct rod_ctl *c, const char *path, struct rod_ctl_server **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		rod_err("control socket path %s is too long (at most %zu bytes)", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if ((rc = mkdir_parents(path))) {
		rod_err("cannot create the directory of control socket %s: %s", path, strerror(-rc));
		return rc;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			rod_err("%s exists and is not a socket; remove it or choose another --socket", path);
			return -EEXIST;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			rod_err("another rodd answers on %s; stop it first or choose another --socket", path);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		unlink(path); /* stale socket of a daemon that died */
	}
	struct rod_ctl_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctl = c;
	s->listen_fd = s->epoll_fd = s->stop_fd = -1;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(s->listen_fd, 64)) {
		rc = -errno;
		rod_err("cannot listen on control socket %s: %s", path, strerror(-rc));
		goto fail;
	}
	/* The socket is the administrator's interface: owner and group only. */
	chmod(path, 0660);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->epoll_fd < 0 || s->stop_fd < 0) {
		rc = -errno;
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	ev.data.fd = s->listen_fd;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &ev)) {
		rc = -errno;
		goto fail;
	}
	ev.data.fd = s->stop_fd;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->stop_fd, &ev)) {
		rc = -errno;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(path);
	}
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s);
	return rc;
}

static void client_close(struct rod_ctl_server *s, int slot)
{
	struct ctl_client *cl = s->clients[slot];
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	free(cl->buf);
	free(cl);
	s->clients[slot] = NULL;
}

/* Send all of buf on a non-blocking socket, waiting at most the send timeout for a
 * client that does not read. */
static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, ROD_CTL_SEND_TIMEOUT_MS) <= 0)
				return -ETIMEDOUT;
			continue;
		}
		return -errno;
	}
	return 0;
}

static int reply(int fd, char *txt)
{
	if (!txt)
		return 0;
	size_t n = strlen(txt);
	int rc = send_all(fd, txt, n);
	if (rc == 0)
		rc = send_all(fd, "\n", 1);
	free(txt);
	return rc;
}

/* Read what is available; answer every complete line. Returns <0 to close. */
static int client_read(struct rod_ctl_server *s, struct ctl_client *cl)
{
	for (;;) {
		if (cl->cap - cl->len < 4096) {
			size_t ncap = cl->cap ? cl->cap * 2 : 8192;
			if (ncap > ROD_CTL_REQ_MAX + 4096)
				ncap = ROD_CTL_REQ_MAX + 4096;
			if (ncap <= cl->cap) {
				char m[128];
				snprintf(m, sizeof(m),
					 "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":%d,\"message\":"
					 "\"request longer than %u bytes\",\"data\":{\"kind\":\"parse\"}}}",
					 ROD_CTL_EPARSE, ROD_CTL_REQ_MAX);
				reply(cl->fd, strdup(m));
				return -EMSGSIZE;
			}
			char *nb = realloc(cl->buf, ncap);
			if (!nb)
				return -ENOMEM;
			cl->buf = nb;
			cl->cap = ncap;
		}
		ssize_t n = recv(cl->fd, cl->buf + cl->len, cl->cap - cl->len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;
		}
		size_t start = cl->len;
		cl->len += (size_t)n;
		cl->last_ns = rod_now_ns();
		char *nl;
		while ((nl = memchr(cl->buf + start, '\n', cl->len - start))) {
			size_t line = (size_t)(nl - cl->buf);
			if (line > ROD_CTL_REQ_MAX)
				return -EMSGSIZE;
			bool blank = true;
			for (size_t i = 0; i < line && blank; i++)
				blank = cl->buf[i] == ' ' || cl->buf[i] == '\t' || cl->buf[i] == '\r';
			if (!blank) {
				int rc = reply(cl->fd, rod_ctl_handle_text_as(s->ctl, cl->who, cl->buf, line));
				if (rc)
					return rc;
			}
			memmove(cl->buf, nl + 1, cl->len - line - 1);
			cl->len -= line + 1;
			start = 0;
		}
	}
}

static void accept_clients(struct rod_ctl_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		int slot = -1;
		for (int i = 0; i < ROD_CTL_CONN_MAX; i++)
			if (!s->clients[i]) {
				slot = i;
				break;
			}
		struct ctl_client *cl = slot >= 0 ? calloc(1, sizeof(*cl)) : NULL;
		if (!cl) {
			rod_warn("ctl: too many control connections; one refused");
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->last_ns = rod_now_ns();
		struct ucred cr;
		socklen_t crl = sizeof(cr);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) == 0)
			snprintf(cl->who, sizeof(cl->who), "uid:%u", (unsigned)cr.uid);
		else
			snprintf(cl->who, sizeof(cl->who), "unix");
		s->clients[slot] = cl;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
		ev.data.u64 = (uint64_t)slot + 1u + ((uint64_t)1 << 32);
		if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev))
			client_close(s, slot);
	}
}

static void *server_main(void *arg)
{
	struct rod_ctl_server *s = arg;
	rod_thread_name("rod-ctl");
	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(s->epoll_fd, evs, 16, 10000);
		uint64_t now = rod_now_ns();
		for (int i = 0; i < ROD_CTL_CONN_MAX; i++)
			if (s->clients[i] && now - s->clients[i]->last_ns > ROD_CTL_IDLE_NS)
				client_close(s, i);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rod_err("ctl: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag >> 32) {
				int slot = (int)(uint32_t)tag - 1;
				if (s->clients[slot] && client_read(s, s->clients[slot]) < 0)
					client_close(s, slot);
			} else if ((int)tag == s->stop_fd) {
				goto out;
			} else if ((int)tag == s->listen_fd) {
				accept_clients(s);
			}
		}
	}
out:
	for (int i = 0; i < ROD_CTL_CONN_MAX; i++)
		if (s->clients[i])
			client_close(s, i);
	return NULL;
}

int rod_ctl_server_start(struct rod_ctl_server *s)
{
	int rc = pthread_create(&s->thread, NULL, server_main, s);
	if (rc)
		return -rc;
	s->started = true;
	return 0;
}

void rod_ctl_server_free(struct rod_ctl_server *s)
{
	if (!s)
		return;
	if (s->started) {
		uint64_t one = 1;
		if (write(s->stop_fd, &one, sizeof(one)) < 0)
			rod_warn("ctl: cannot wake the control thread: %s", strerror(errno));
		pthread_join(s->thread, NULL);
	}
	close(s->listen_fd);
	unlink(s->path);
	close(s->epoll_fd);
	close(s->stop_fd);
	free(s);
}
