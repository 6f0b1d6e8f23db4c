/* fdhog: a workload process for the scan benchmark. Opens argv[1] fds
 * (files, pipe ends, /dev/null) and argv[2] leaked PTY masters, prints
 * "ready", then waits for stdin to close. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 100, masters = argc > 2 ? atoi(argv[2]) : 0;
	for (int i = 0; i < n; i++) {
		if (i % 3 == 0) {
			int p[2];
			if (pipe(p) == 0) i++;
		} else if (open(i % 3 == 1 ? "/dev/null" : "/etc/hostname", O_RDONLY) < 0) {
			perror("open");
			return 1;
		}
	}
	for (int i = 0; i < masters; i++) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) || unlockpt(m)) { perror("posix_openpt"); return 1; }
	}
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0) {}
	return 0;
}
