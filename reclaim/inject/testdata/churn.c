// churn: closes and reopens the fd numbers BASE..BASE+SLOTS-1 as fast as it
// can, each time either as a PTY master or as an ordinary file, and checks
// after every step that each slot still is what it put there. A PTY slot may
// have become /dev/null (released by the injector); anything else is
// corruption. Prints "READY <base> <slots>"; "STATUS" answers
// "STATUS <corrupt> <reclaimed> <iterations>".
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define BASE 100
#define SLOTS 24

static atomic_long corrupt, reclaimed, iterations;
static int is_pty[SLOTS], seen_null[SLOTS];
static struct stat want[SLOTS];
static char dir[512];

static void reopen(int i) {
	int fd;
	close(BASE + i);
	if (rand() % 2) {
		fd = posix_openpt(O_RDWR | O_NOCTTY);
		is_pty[i] = 1;
	} else {
		char path[600];
		snprintf(path, sizeof path, "%s/file%d", dir, i);
		fd = open(path, O_RDWR | O_CREAT, 0600);
		is_pty[i] = 0;
	}
	if (fd < 0) _exit(5);
	seen_null[i] = 0;
	if (dup2(fd, BASE + i) < 0) _exit(6);
	close(fd);
	fstat(BASE + i, &want[i]);
}

static void check(void) {
	for (int i = 0; i < SLOTS; i++) {
		struct stat st;
		if (fstat(BASE + i, &st) < 0) {
			atomic_fetch_add(&corrupt, 1);
			fprintf(stderr, "slot %d: closed\n", i);
			continue;
		}
		if (!is_pty[i]) {
			if (st.st_dev != want[i].st_dev || st.st_ino != want[i].st_ino) {
				atomic_fetch_add(&corrupt, 1);
				fprintf(stderr, "slot %d: file replaced\n", i);
			}
			continue;
		}
		if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(5, 2)) continue;
		if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3)) {
			if (!seen_null[i]) atomic_fetch_add(&reclaimed, 1);
			seen_null[i] = 1;
			continue;
		}
		atomic_fetch_add(&corrupt, 1);
		fprintf(stderr, "slot %d: pty became something else\n", i);
	}
}

static void *churn(void *arg) {
	(void)arg;
	for (;;) {
		reopen(rand() % SLOTS);
		check();
		atomic_fetch_add(&iterations, 1);
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	snprintf(dir, sizeof dir, "%s", argv[1]);
	for (int i = 0; i < SLOTS; i++) reopen(i);
	pthread_t t;
	pthread_create(&t, NULL, churn, NULL);
	printf("READY %d %d\n", BASE, SLOTS);
	fflush(stdout);
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "STATUS", 6) == 0) {
			printf("STATUS %ld %ld %ld\n", atomic_load(&corrupt), atomic_load(&reclaimed), atomic_load(&iterations));
			fflush(stdout);
		}
	}
	return 0;
}
