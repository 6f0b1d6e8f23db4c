/* A libuv program that leaks PTYs the way real ones do (issue 9): a master
 * read through uv_tty, a master watched with uv_poll (both with their
 * slaves open in this process), and an idle pair it starts polling only
 * after the release. It serves HTTP on 127.0.0.1 (uv_tcp) and keeps a live
 * terminal running cat. On EOF or an error its callbacks close the handle
 * and both fds. libuv aborts when epoll_ctl fails on a re-arm. */
#include "../common/target.h"
#include <uv.h>

static uv_loop_t *loop;
static int counter;

struct leak {
	const char *name;
	int master, slave;
	uv_tty_t tty;
	uv_poll_t poll;
	int is_tty, started, open;
};
static struct leak leaks[3] = {{.name = "tty"}, {.name = "poll"}, {.name = "late"}};
static struct live live;

static void leak_closed(uv_handle_t *h) {
	struct leak *l = h->data;
	/* uv_close of a uv_tty closes the fd; of a uv_poll it does not. */
	if (!l->is_tty)
		close(l->master);
	ev("close", "\"name\":\"%s.master\",\"fd\":%d", l->name, l->master);
	close(l->slave);
	ev("close", "\"name\":\"%s.slave\",\"fd\":%d", l->name, l->slave);
}

static void leak_end(struct leak *l, const char *err) {
	ev("readend", "\"fd\":%d,\"err\":\"%s\"", l->master, err);
	l->open = 0;
	uv_close(l->is_tty ? (uv_handle_t *)&l->tty : (uv_handle_t *)&l->poll, leak_closed);
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf) {
	static char slab[65536];
	(void)h;
	(void)size;
	*buf = uv_buf_init(slab, sizeof slab);
}

static void tty_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
	struct leak *l = s->data;
	(void)buf;
	if (n > 0)
		ev("read", "\"fd\":%d,\"n\":%zd", l->master, n);
	else if (n < 0)
		leak_end(l, n == UV_EOF ? "EOF" : uv_err_name(n));
}

static void poll_cb(uv_poll_t *p, int status, int events) {
	struct leak *l = p->data;
	char buf[4096];
	if (status < 0) {
		leak_end(l, uv_err_name(status));
		return;
	}
	if (!(events & (UV_READABLE | UV_DISCONNECT)))
		return;
	ssize_t n = read(l->master, buf, sizeof buf);
	if (n > 0)
		ev("read", "\"fd\":%d,\"n\":%zd", l->master, n);
	else if (n == 0)
		leak_end(l, "EOF");
	else if (errno != EAGAIN)
		leak_end(l, strerror(errno));
}

/* start_leak watches a pair; a failure is what the program reports as an
 * exception (libuv checks that epoll accepts the fd at init). */
static const char *start_leak(struct leak *l) {
	int err;
	if (l->is_tty) {
		err = uv_tty_init(loop, &l->tty, l->master, 1);
		l->tty.data = l;
		if (!err)
			err = uv_read_start((uv_stream_t *)&l->tty, alloc_cb, tty_read);
	} else {
		err = uv_poll_init(loop, &l->poll, l->master);
		l->poll.data = l;
		if (!err)
			err = uv_poll_start(&l->poll, UV_READABLE | UV_DISCONNECT, poll_cb);
	}
	if (err) {
		ev("exception", "\"msg\":\"watching %s: %s\"", l->name, uv_strerror(err));
		return uv_strerror(err);
	}
	l->open = l->started = 1;
	return NULL;
}

/* HTTP */
struct conn {
	uv_tcp_t tcp;
	char req[4096];
	size_t have;
	uv_write_t w;
	char resp[8192];
	uv_timer_t timer;
	int exit_after;
	const char *late_err;
};

static void conn_closed(uv_handle_t *h) {
	struct conn *c = h->data;
	if (c->exit_after >= 0) {
		exit_code = c->exit_after;
		end_cat(&live);
		exit(exit_code);
	}
	free(c);
}

static void written(uv_write_t *w, int status) {
	struct conn *c = w->data;
	(void)status;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void respond(struct conn *c, const char *body) {
	char head[256];
	int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", strlen(body));
	memmove(c->resp + n, body, strlen(body) + 1);
	memcpy(c->resp, head, n);
	uv_buf_t b = uv_buf_init(c->resp, strlen(c->resp));
	c->w.data = c;
	uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, written);
}

/* The second half of /exercise, once the loop has run the re-arms. */
static void exercise_done(uv_timer_t *t) {
	struct conn *c = t->data;
	struct report r = {0};
	char body[8192];
	check(&r, "re-armed: read stop/start, poll stop/start", NULL);
	check(&r, "late uv_poll", c->late_err);
	check(&r, "live echo", echo(&live, "after"));
	struct live fresh;
	if (spawn_cat(&fresh) < 0) {
		check(&r, "new spawn", strerror(errno));
	} else {
		check(&r, "new spawn echo", echo(&fresh, "fresh"));
		end_cat(&fresh);
	}
	uv_close((uv_handle_t *)t, NULL);
	report_json(&r, body, sizeof body);
	respond(c, body);
}

static void exercise(struct conn *c) {
	/* Read stop and start, poll stop and start: libuv re-arms with
	 * epoll_ctl on the next loop iteration. */
	if (leaks[0].open) {
		uv_read_stop((uv_stream_t *)&leaks[0].tty);
		uv_read_start((uv_stream_t *)&leaks[0].tty, alloc_cb, tty_read);
	}
	if (leaks[1].open) {
		uv_poll_stop(&leaks[1].poll);
		uv_poll_start(&leaks[1].poll, UV_READABLE | UV_DISCONNECT, poll_cb);
	}
	c->late_err = start_leak(&leaks[2]);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	uv_timer_start(&c->timer, exercise_done, 300, 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
	struct conn *c = s->data;
	char path[256], body[64];
	if (n < 0) {
		uv_close((uv_handle_t *)s, conn_closed);
		return;
	}
	if ((size_t)n > sizeof c->req - 1 - c->have)
		n = sizeof c->req - 1 - c->have;
	memcpy(c->req + c->have, buf->base, n);
	c->have += n;
	c->req[c->have] = 0;
	if (!strstr(c->req, "\r\n\r\n"))
		return;
	uv_read_stop(s);
	if (request_path(c->req, path, sizeof path) < 0) {
		respond(c, "bad request");
	} else if (!strcmp(path, "/count")) {
		snprintf(body, sizeof body, "%d", counter++);
		respond(c, body);
	} else if (!strncmp(path, "/exit?code=", 11)) {
		c->exit_after = atoi(path + 11);
		respond(c, "bye");
	} else if (!strcmp(path, "/exercise")) {
		exercise(c);
	} else {
		respond(c, "no such path");
	}
}

static void conn_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
	static char b[4096];
	(void)h;
	(void)size;
	*buf = uv_buf_init(b, sizeof b);
}

static void on_conn(uv_stream_t *server, int status) {
	if (status < 0)
		return;
	struct conn *c = calloc(1, sizeof *c);
	c->exit_after = -1;
	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0)
		uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, on_read);
	else
		uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

int main(void) {
	open_events();
	loop = uv_default_loop();
	if (spawn_cat(&live) < 0 || echo(&live, "before"))
		return 70;
	for (int i = 0; i < 3; i++) {
		struct leak *l = &leaks[i];
		if (openpty(&l->master, &l->slave, NULL, NULL, NULL) < 0)
			return 70;
		fcntl(l->master, F_SETFD, FD_CLOEXEC);
		fcntl(l->slave, F_SETFD, FD_CLOEXEC);
		l->is_tty = i == 0;
		ev("leak", "\"name\":\"%s.master\",\"fd\":%d,\"closes\":true", l->name, l->master);
		ev("leak", "\"name\":\"%s.slave\",\"fd\":%d,\"closes\":true", l->name, l->slave);
		if (i < 2 && start_leak(l))
			return 70;
	}
	static uv_tcp_t server;
	struct sockaddr_in addr;
	uv_tcp_init(loop, &server);
	uv_ip4_addr("127.0.0.1", 0, &addr);
	uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
	if (uv_listen((uv_stream_t *)&server, 64, on_conn))
		return 70;
	int len = sizeof addr;
	uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
	printf("ready %d\n", ntohs(addr.sin_port));
	fflush(stdout);
	return uv_run(loop, UV_RUN_DEFAULT);
}
