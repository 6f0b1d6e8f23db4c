// sleeper: a target whose main thread (the one the injector works through)
// sleeps in clock_nanosleep in a loop: interrupted by a freeze, that call
// restarts through restart_syscall, whose state rt_sigreturn throws away.
// Any EINTR it sees prints "EINTR". Opens argv[1] PTY masters, prints
// "READY <fds>"; a second thread answers stdin: "COUNT" -> "COUNT <sleeps>
// <eintrs>", anything else -> "ECHO <line>".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_long sleeps, eintrs;

static void *serve(void *arg) {
	char line[256];
	(void)arg;
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (!strcmp(line, "COUNT"))
			printf("COUNT %ld %ld\n", atomic_load(&sleeps), atomic_load(&eintrs));
		else
			printf("ECHO %s\n", line);
		fflush(stdout);
	}
	exit(0);
}

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 4;
	char msg[8192];
	int len = snprintf(msg, sizeof msg, "READY");
	for (int i = 0; i < n; i++) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) || unlockpt(m)) { perror("posix_openpt"); return 1; }
		len += snprintf(msg + len, sizeof msg - len, " %d", m);
	}
	printf("%s\n", msg);
	fflush(stdout);
	pthread_t t;
	pthread_create(&t, NULL, serve, NULL);
	struct timespec d = {0, 200 * 1000 * 1000};
	for (;;) {
		int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL);
		if (r == EINTR) {
			atomic_fetch_add(&eintrs, 1);
			printf("EINTR\n");
			fflush(stdout);
		} else {
			atomic_fetch_add(&sleeps, 1);
		}
	}
}
