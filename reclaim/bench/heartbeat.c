/* heartbeat: a target for the release benchmark. Opens argv[1] leaked PTY
 * masters (all in one epoll set when argv[3] is "watched") and starts
 * argv[2] busy threads, plus one heartbeat thread that
 * wakes every 200 us and records the largest gap between two wake-ups: how
 * long the process was frozen, seen from inside. Prints "ready"; then on
 * each stdin line "gap" prints the largest gap in microseconds since the
 * last query and resets it, and on "fds" prints how many masters remain. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static _Atomic long maxgap;

static long now_us(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static void *beat(void *a) {
	long last = now_us();
	struct timespec d = {0, 200000};
	for (;;) {
		nanosleep(&d, NULL);
		long t = now_us(), g = t - last;
		last = t;
		if (g > atomic_load(&maxgap)) atomic_store(&maxgap, g);
	}
	return a;
}

static void *busy(void *a) { volatile unsigned long n = 0; for (;;) { n++; if (!(n & 0xfffff)) usleep(100); } return a; }

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 490, threads = argc > 2 ? atoi(argv[2]) : 4;
	int *fds = calloc(n, sizeof *fds);
	for (int i = 0; i < n; i++) {
		fds[i] = posix_openpt(O_RDWR | O_NOCTTY);
		if (fds[i] < 0 || grantpt(fds[i]) || unlockpt(fds[i])) { perror("posix_openpt"); return 1; }
	}
	if (argc > 3 && !strcmp(argv[3], "watched")) {
		/* Watched: every master in one epoll set, as an event loop has. */
		int ep = epoll_create1(EPOLL_CLOEXEC);
		for (int i = 0; i < n; i++) {
			struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (unsigned)fds[i]};
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev)) { perror("epoll_ctl"); return 1; }
		}
	}
	pthread_t t;
	pthread_create(&t, NULL, beat, NULL);
	for (int i = 0; i < threads; i++) pthread_create(&t, NULL, busy, NULL);
	printf("ready\n");
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (!strncmp(line, "gap", 3)) {
			printf("%ld\n", atomic_exchange(&maxgap, 0));
		} else if (!strncmp(line, "fds", 3)) {
			int left = 0;
			char path[64], link[64];
			for (int i = 0; i < n; i++) {
				snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
				ssize_t l = readlink(path, link, sizeof link - 1);
				if (l > 0) { link[l] = 0; if (!strcmp(link, "/dev/ptmx")) left++; }
			}
			printf("%d\n", left);
		}
		fflush(stdout);
	}
	return 0;
}
