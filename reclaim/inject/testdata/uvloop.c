// uvloop: libuv, like Node's tty.ReadStream: N PTY masters read through
// uv_tty_t handles; a timer stops and restarts every read every 20 ms (the
// backpressure path, which re-arms epoll). EOF or an error closes the
// handle through uv_close, which closes the fd.
//   stdin: "COUNT" -> "COUNT <closed> <errors>", else "ECHO <line>"
//   stdout: "READY <fds>", "CLOSE <fd> <why>" per handle closed
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define MAXN 64
static uv_tty_t ttys[MAXN];
static int fds[MAXN], open_[MAXN], n = 4, closed, errors;
static uv_pipe_t in;
static uv_timer_t timer;

static void alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
	static char buf[65536];
	(void)h; (void)s;
	*b = uv_buf_init(buf, sizeof buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
	(void)b;
	if (nread >= 0)
		return;
	int k;
	for (k = 0; k < n; k++)
		if ((uv_stream_t *)&ttys[k] == s)
			break;
	if (nread != UV_EOF)
		errors++;
	printf("CLOSE %d %s\n", fds[k], uv_err_name((int)nread));
	fflush(stdout);
	open_[k] = 0;
	closed++;
	uv_close((uv_handle_t *)s, NULL);
}

static void on_timer(uv_timer_t *t) {
	(void)t;
	for (int k = 0; k < n; k++)
		if (open_[k]) {
			uv_read_stop((uv_stream_t *)&ttys[k]);
			uv_read_start((uv_stream_t *)&ttys[k], alloc, on_read);
		}
}

static char line[4096];
static size_t have;

static void on_stdin(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
	if (nread < 0) {
		uv_stop(s->loop);
		return;
	}
	for (ssize_t i = 0; i < nread; i++) {
		if (b->base[i] != '\n') {
			if (have < sizeof line - 1)
				line[have++] = b->base[i];
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
	uv_loop_t *loop = uv_default_loop();
	printf("READY");
	for (int k = 0; k < n; k++) {
		fds[k] = open("/dev/ptmx", O_RDWR | O_NOCTTY);
		grantpt(fds[k]);
		unlockpt(fds[k]);
		if (uv_tty_init(loop, &ttys[k], fds[k], 1) != 0)
			return 1;
		uv_read_start((uv_stream_t *)&ttys[k], alloc, on_read);
		open_[k] = 1;
		printf(" %d", fds[k]);
	}
	printf("\n");
	fflush(stdout);
	uv_pipe_init(loop, &in, 0);
	uv_pipe_open(&in, 0);
	uv_read_start((uv_stream_t *)&in, alloc, on_stdin);
	uv_timer_init(loop, &timer);
	uv_timer_start(&timer, on_timer, 20, 20);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
