// evloop: libev: N PTY masters watched with ev_io (EV_READ); a timer stops
// and restarts every watcher every 20 ms (epoll_ctl again). A read of 0 or
// an error other than EAGAIN stops the watcher and closes the fd.
//   stdin: "COUNT" -> "COUNT <closed> <errors>", else "ECHO <line>"
//   stdout: "READY <fds>", "CLOSE <fd> <why>" per fd closed
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXN 64
static ev_io ios[MAXN], in;
static ev_timer timer;
static int n = 4, open_[MAXN], closed, errors;

static void on_pty(struct ev_loop *loop, ev_io *w, int revents) {
	(void)revents;
	char buf[4096];
	ssize_t r = read(w->fd, buf, sizeof buf);
	if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	int k = (int)(w - ios);
	if (r < 0)
		errors++;
	printf("CLOSE %d %s\n", w->fd, r == 0 ? "EOF" : strerrorname_np(errno));
	fflush(stdout);
	ev_io_stop(loop, w);
	close(w->fd);
	open_[k] = 0;
	closed++;
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents) {
	(void)t; (void)revents;
	for (int k = 0; k < n; k++)
		if (open_[k]) {
			ev_io_stop(loop, &ios[k]);
			ev_io_start(loop, &ios[k]);
		}
}

static char line[4096];
static size_t have;

static void on_stdin(struct ev_loop *loop, ev_io *w, int revents) {
	(void)revents;
	char buf[4096];
	ssize_t r = read(w->fd, buf, sizeof buf);
	if (r <= 0) {
		if (r < 0 && errno == EINTR)
			return;
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] != '\n') {
			if (have < sizeof line - 1)
				line[have++] = buf[i];
			continue;
		}
		line[have] = 0;
		have = 0;
		if (strcmp(line, "COUNT") == 0)
			printf("COUNT %d %d\n", closed, errors);
		else
			printf("ECHO %s\n", line);
		fflush(stdout);
	}
}

int main(int argc, char **argv) {
	if (argc > 1)
		n = atoi(argv[1]);
	struct ev_loop *loop = ev_default_loop(EVBACKEND_EPOLL);
	if (!loop)
		return 1;
	printf("READY");
	for (int k = 0; k < n; k++) {
		int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK);
		grantpt(fd);
		unlockpt(fd);
		ev_io_init(&ios[k], on_pty, fd, EV_READ);
		ev_io_start(loop, &ios[k]);
		open_[k] = 1;
		printf(" %d", fd);
	}
	printf("\n");
	fflush(stdout);
	ev_io_init(&in, on_stdin, 0, EV_READ);
	ev_io_start(loop, &in);
	ev_timer_init(&timer, on_timer, 0.02, 0.02);
	ev_timer_start(loop, &timer);
	ev_run(loop, 0);
	return 0;
}
