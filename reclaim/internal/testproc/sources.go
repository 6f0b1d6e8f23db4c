package testproc

// LeakMasters opens argv[1] PTY masters and never closes them, starts
// argv[2] extra threads (half spinning, half sleeping), prints
// "ready <first fd> <last fd>", then echoes stdin lines back to stdout
// until EOF: a long-running app with leaked masters that still does its work.
// With argv[3] "used", each slave is opened and closed first, as when the
// session on it came and went (the kernel then says nobody has it open).
const LeakMasters = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

static void *spin(void *a) { volatile unsigned long n = 0; for (;;) n++; return a; }
static void *nap(void *a) { for (;;) sleep(1); return a; }

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1, threads = argc > 2 ? atoi(argv[2]) : 0;
	int used = argc > 3 && !strcmp(argv[3], "used");
	int first = -1, last = -1;
	for (int i = 0; i < n; i++) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
		if (used) { /* a session came and went: its slave was opened and closed */
			int s = open(ptsname(m), O_RDWR | O_NOCTTY);
			if (s < 0) { perror("slave"); return 1; }
			close(s);
		}
		if (first < 0) first = m;
		last = m;
	}
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		pthread_create(&t, NULL, i % 2 ? nap : spin, NULL);
	}
	printf("ready %d %d\n", first, last);
	fflush(stdout);
	char buf[4096];
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r < 0 && errno == EINTR) { printf("EINTR\n"); fflush(stdout); continue; }
		if (r <= 0) return 0;
		if (write(1, buf, r) != r) return 1;
	}
}
`

// Seed000 reproduces seed 000: open a PTY, spawn a child with the slave on
// 0/1/2, never close the slave in the parent, let the child exit, close the
// master. The parent's slave fd is then hung up but still pins the PTY.
// Prints "ready <slave fd>" and blocks on stdin.
const Seed000 = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

int main(void) {
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s < 0) { perror("slave"); return 1; }
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		dup2(s, 0); dup2(s, 1); dup2(s, 2);
		execl("/bin/sh", "sh", "-c", "exit 0", (char *)0);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
	close(m); /* destroy(): the master is closed, the slave is forgotten */
	printf("ready %d\n", s);
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0) {}
	return 0;
}
`

// Seed002 reproduces seed 002: fork argv[1] children that each block in
// read() on a pipe whose write end they inherited and never closed, while
// the parent closes its ends (the failed "go" signal). Each later child also
// inherits the write ends of the earlier ones, as in the report. With argv[2]
// == "worker" the parent keeps every write end instead: the children are
// waiting, not stuck. With argv[2] == "selfpipe" each child installs a
// SIGUSR1 handler that writes to its pipe: not stuck either. Prints
// "ready <child pids...>" and blocks on stdin; on a stdin line "go" it
// writes one byte to every pipe it still holds.
const Seed002 = `
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int selfw = -1;
static void onusr1(int sig) { (void)sig; if (write(selfw, "x", 1) < 0) {} }

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1;
	const char *mode = argc > 2 ? argv[2] : "orphan";
	pid_t pids[256];
	int w[256];
	for (int i = 0; i < n && i < 256; i++) {
		int p[2];
		if (pipe(p)) { perror("pipe"); return 1; }
		pid_t pid = fork();
		if (pid == 0) {
			if (strcmp(mode, "selfpipe") == 0) {
				selfw = p[1];
				signal(SIGUSR1, onusr1);
			}
			char c;
			ssize_t r = read(p[0], &c, 1); /* waits for the parent's "go" */
			_exit(r == 1 ? 0 : 3);
		}
		close(p[0]);
		pids[i] = pid;
		w[i] = p[1];
	}
	if (strcmp(mode, "worker") != 0)
		for (int i = 0; i < n; i++) { close(w[i]); w[i] = -1; } /* the parent fails before "go" */
	printf("ready");
	for (int i = 0; i < n; i++) printf(" %d", pids[i]);
	printf("\n");
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "go", 2) == 0)
			for (int i = 0; i < n; i++)
				if (w[i] >= 0 && write(w[i], "g", 1) != 1) perror("write");
		printf("went\n");
		fflush(stdout);
	}
	return 0;
}
`
