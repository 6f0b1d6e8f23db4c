/* A GLib program that leaks PTYs the way real ones do (issue 9): masters
 * watched with g_io_add_watch (G_IO_IN | G_IO_HUP | G_IO_ERR) with their
 * slaves open in this process, and an idle pair it watches only after the
 * release. GLib polls with poll(), not epoll. It serves HTTP on 127.0.0.1
 * (a watch on the listening socket) and keeps a live terminal running cat.
 * On EOF, HUP or an error the callback closes both fds and drops the watch;
 * a callback that fires again and again is the spin the test looks for. */
#include "../common/target.h"
#include <arpa/inet.h>
#include <glib.h>
#include <netinet/in.h>
#include <sys/socket.h>

static GMainLoop *mainloop;
static int counter;
static struct live live;

struct leak {
	const char *name;
	int master, slave;
	guint watch;
	int open;
};
static struct leak leaks[3] = {{.name = "watch1"}, {.name = "watch2"}, {.name = "late"}};

static void leak_end(struct leak *l, const char *err) {
	ev("readend", "\"fd\":%d,\"err\":\"%s\"", l->master, err);
	l->open = 0;
	close(l->master);
	ev("close", "\"name\":\"%s.master\",\"fd\":%d", l->name, l->master);
	close(l->slave);
	ev("close", "\"name\":\"%s.slave\",\"fd\":%d", l->name, l->slave);
}

static gboolean leak_cb(GIOChannel *ch, GIOCondition cond, gpointer data) {
	struct leak *l = data;
	char buf[4096];
	(void)ch;
	if (cond & G_IO_IN) {
		ssize_t n = read(l->master, buf, sizeof buf);
		if (n > 0) {
			ev("read", "\"fd\":%d,\"n\":%zd", l->master, n);
			return TRUE;
		}
		if (n < 0 && errno == EAGAIN)
			return TRUE;
		leak_end(l, n == 0 ? "EOF" : strerror(errno));
		return FALSE;
	}
	leak_end(l, (cond & G_IO_HUP) ? "HUP" : "ERR");
	return FALSE;
}

static void watch(struct leak *l) {
	GIOChannel *ch = g_io_channel_unix_new(l->master);
	l->watch = g_io_add_watch(ch, G_IO_IN | G_IO_HUP | G_IO_ERR, leak_cb, l);
	g_io_channel_unref(ch);
	l->open = 1;
}

static void respond(int fd, const char *body) {
	char out[8192];
	int n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(body), body);
	if (write(fd, out, n) < 0)
		ev("exception", "\"msg\":\"respond: %s\"", strerror(errno));
}

struct pending {
	int fd;
};

/* The second half of /exercise, after the loop ran the new watches. */
static gboolean exercise_done(gpointer data) {
	struct pending *p = data;
	struct report r = {0};
	char body[8192];
	check(&r, "watch removed and added again, late watch", NULL);
	check(&r, "live echo", echo(&live, "after"));
	struct live fresh;
	if (spawn_cat(&fresh) < 0) {
		check(&r, "new spawn", strerror(errno));
	} else {
		check(&r, "new spawn echo", echo(&fresh, "fresh"));
		end_cat(&fresh);
	}
	report_json(&r, body, sizeof body);
	respond(p->fd, body);
	close(p->fd);
	free(p);
	return G_SOURCE_REMOVE;
}

static void exercise(int fd) {
	/* Remove and add the watch again (a re-arm), and watch the late pair. */
	for (int i = 0; i < 2; i++) {
		if (leaks[i].open) {
			g_source_remove(leaks[i].watch);
			watch(&leaks[i]);
		}
	}
	watch(&leaks[2]);
	struct pending *p = malloc(sizeof *p);
	p->fd = fd;
	g_timeout_add(300, exercise_done, p);
}

static gboolean on_conn(GIOChannel *ch, GIOCondition cond, gpointer data) {
	int lfd = g_io_channel_unix_get_fd(ch);
	char req[4096], path[256], body[64];
	size_t have = 0;
	(void)cond;
	(void)data;
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return TRUE;
	/* Requests are small: read the head with a blocking socket. */
	while (have < sizeof req - 1) {
		ssize_t n = read(fd, req + have, sizeof req - 1 - have);
		if (n <= 0)
			break;
		have += n;
		req[have] = 0;
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[have] = 0;
	if (request_path(req, path, sizeof path) < 0) {
		respond(fd, "bad request");
	} else if (!strcmp(path, "/count")) {
		snprintf(body, sizeof body, "%d", counter++);
		respond(fd, body);
	} else if (!strncmp(path, "/exit?code=", 11)) {
		exit_code = atoi(path + 11);
		respond(fd, "bye");
		close(fd);
		end_cat(&live);
		exit(exit_code);
	} else if (!strcmp(path, "/exercise")) {
		exercise(fd);
		return TRUE;
	} else {
		respond(fd, "no such path");
	}
	close(fd);
	return TRUE;
}

int main(void) {
	open_events();
	if (spawn_cat(&live) < 0 || echo(&live, "before"))
		return 70;
	for (int i = 0; i < 3; i++) {
		struct leak *l = &leaks[i];
		if (openpty(&l->master, &l->slave, NULL, NULL, NULL) < 0)
			return 70;
		fcntl(l->master, F_SETFD, FD_CLOEXEC);
		fcntl(l->slave, F_SETFD, FD_CLOEXEC);
		fcntl(l->master, F_SETFL, O_NONBLOCK);
		ev("leak", "\"name\":\"%s.master\",\"fd\":%d,\"closes\":true", l->name, l->master);
		ev("leak", "\"name\":\"%s.slave\",\"fd\":%d,\"closes\":true", l->name, l->slave);
		if (i < 2)
			watch(l);
	}
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof addr;
	if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 64) || getsockname(s, (struct sockaddr *)&addr, &len))
		return 70;
	GIOChannel *ch = g_io_channel_unix_new(s);
	g_io_add_watch(ch, G_IO_IN, on_conn, NULL);
	printf("ready %d\n", ntohs(addr.sin_port));
	fflush(stdout);
	mainloop = g_main_loop_new(NULL, FALSE);
	g_main_loop_run(mainloop);
	return 0;
}
