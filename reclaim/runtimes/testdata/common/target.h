/* Shared by the C targets: JSON-line events, a live terminal running cat
 * whose echo is checked synchronously, and the exit handler. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static FILE *events;
static int exit_code = -1;
static long logged;

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ev("close", "\"fd\":%d", fd): one JSON line; a storm is counted, not all
 * written, but exit and close always are. */
static void ev(const char *kind, const char *fmt, ...) {
	if (++logged > 10000 && strcmp(kind, "exit") && strcmp(kind, "close"))
		return;
	fprintf(events, "{\"ev\":\"%s\",\"t\":%lld", kind, now_ns());
	if (fmt && *fmt) {
		va_list ap;
		va_start(ap, fmt);
		fputc(',', events);
		vfprintf(events, fmt, ap);
		va_end(ap);
	}
	fputs("}\n", events);
	fflush(events);
}

static void log_exit(void) { ev("exit", "\"code\":%d", exit_code); }

static void open_events(void) {
	events = fopen(getenv("EVENTS"), "a");
	if (!events)
		exit(70);
	atexit(log_exit);
}

struct live {
	int master;
	pid_t pid;
};

/* spawn_cat starts cat on a new terminal; the master stays blocking and
 * outside the loop, so that echo can wait for the answer. */
static int spawn_cat(struct live *l) {
	l->pid = forkpty(&l->master, NULL, NULL, NULL);
	if (l->pid < 0)
		return -1;
	if (l->pid == 0) {
		execl("/bin/cat", "cat", (char *)NULL);
		_exit(127);
	}
	return 0;
}

/* echo writes a word and waits up to 10 s for it to come back; returns
 * NULL or what went wrong. */
static const char *echo(struct live *l, const char *word) {
	char buf[4096];
	size_t have = 0;
	if (write(l->master, word, strlen(word)) < 0 || write(l->master, "\n", 1) < 0)
		return "write failed";
	long long deadline = now_ns() + 10000000000LL;
	while (now_ns() < deadline) {
		struct pollfd p = {.fd = l->master, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(l->master, buf + have, sizeof buf - 1 - have);
		if (n <= 0)
			return "read failed";
		have += n;
		buf[have] = 0;
		if (strstr(buf, word))
			return NULL;
		if (have > sizeof buf / 2)
			have = 0;
	}
	return "no echo";
}

static void end_cat(struct live *l) {
	kill(l->pid, SIGKILL);
	waitpid(l->pid, NULL, 0);
	close(l->master);
}

/* request_path parses "GET /path HTTP/1.1" into path (query included). */
static int request_path(const char *req, char *path, size_t len) {
	const char *sp = strchr(req, ' ');
	if (!sp)
		return -1;
	const char *end = strchr(sp + 1, ' ');
	if (!end || (size_t)(end - sp - 1) >= len)
		return -1;
	memcpy(path, sp + 1, end - sp - 1);
	path[end - sp - 1] = 0;
	return 0;
}

/* A JSON list of steps and errors for /exercise. */
struct report {
	char steps[2048], errors[2048];
	int nerr;
};

static void check(struct report *r, const char *what, const char *err) {
	size_t n = strlen(r->steps);
	snprintf(r->steps + n, sizeof r->steps - n, "%s\"%s\"", n ? "," : "", what);
	if (err) {
		n = strlen(r->errors);
		snprintf(r->errors + n, sizeof r->errors - n, "%s\"%s: %s\"", r->nerr++ ? "," : "", what, err);
	}
}

static int report_json(struct report *r, char *out, size_t len) {
	return snprintf(out, len, "{\"ok\":%s,\"errors\":[%s],\"steps\":[%s]}", r->nerr ? "false" : "true", r->errors, r->steps);
}
