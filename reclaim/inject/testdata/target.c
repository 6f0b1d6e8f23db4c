// target: a program holding leaked PTY masters, for the inject tests.
//
//   -m N   open N PTY masters (every second one with O_CLOEXEC)
//   -S N   N threads spinning in user space
//   -L N   N threads sleeping in nanosleep
//   -W     a thread streaming numbered lines "N <seq>" to stdout
//   -a     the SIGUSR1 handler writes "SIG" to stdout
//   -s     enter strict seccomp before serving stdin
//   -l     fill the fd table up to a lowered RLIMIT_NOFILE
//   -x MS  exit by itself after MS milliseconds
//   -v     one thread blocks in vfork() until its child is killed
//   -T     a thread creating and joining short-lived threads nonstop
//   -B     the main thread spins; another thread serves stdin
//   -N     the main thread sleeps in one long nanosleep (interrupted, it
//          holds ERESTART_RESTARTBLOCK); another thread serves stdin
//   -f     install a seccomp filter (allowing everything) after setup
//
// It prints "READY <fd>..." then echoes each stdin line as "ECHO <line>".
// "COUNT" answers "COUNT <sigusr1 received> <EINTRs seen>"; "EXIT" exits 0.
// Every EINTR it sees is also printed as a line "EINTR <where>".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_long usr1;
static atomic_long eintrs;
static atomic_int stop_stream;
static int ack;
static int strict;

static void out(const char *s) {
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w < 0) {
			if (errno == EINTR) {
				atomic_fetch_add(&eintrs, 1);
				continue;
			}
			_exit(3);
		}
		s += w;
		n -= (size_t)w;
	}
}

static void eintr(const char *where) {
	char line[64];
	atomic_fetch_add(&eintrs, 1);
	snprintf(line, sizeof line, "EINTR %s\n", where);
	out(line);
}

static void on_usr1(int sig) {
	(void)sig;
	atomic_fetch_add(&usr1, 1);
	if (ack) {
		int e = errno;
		write(1, "SIG\n", 4);
		errno = e;
	}
}

static void *spin(void *arg) {
	volatile unsigned long x = 0;
	(void)arg;
	for (;;) x++;
	return NULL;
}

static void *sleeper(void *arg) {
	(void)arg;
	for (;;) {
		struct timespec ts = {0, 3 * 1000 * 1000};
		if (nanosleep(&ts, NULL) < 0 && errno == EINTR) eintr("nanosleep");
	}
	return NULL;
}

static void *stream(void *arg) {
	(void)arg;
	for (long seq = 1; !atomic_load(&stop_stream); seq++) {
		char line[64];
		snprintf(line, sizeof line, "N %ld\n", seq);
		out(line);
		struct timespec ts = {0, 200 * 1000};
		if (nanosleep(&ts, NULL) < 0 && errno == EINTR) eintr("stream-nanosleep");
	}
	return NULL;
}

static void *vforker(void *arg) {
	(void)arg;
	pid_t child = vfork();
	if (child == 0) {
		for (;;) pause();
	}
	return NULL;
}

static void *nothing(void *arg) { return arg; }

static void *spawner(void *arg) {
	(void)arg;
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, nothing, NULL) == 0) pthread_join(t, NULL);
	}
	return NULL;
}

static void *exiter(void *arg) {
	long ms = (long)arg;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
	_exit(0);
	return NULL;
}

static void *serve(void *arg);

static int allow_all_filter(void) {
	struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
	struct sock_fprog prog = {1, code};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void start(void *(*fn)(void *), void *arg) {
	pthread_t t;
	if (pthread_create(&t, NULL, fn, arg) != 0) _exit(4);
}

int main(int argc, char **argv) {
	int masters = 0, spinners = 0, sleepers = 0, streaming = 0, fill = 0, vf = 0, spawn = 0, busy = 0, filter = 0, nap = 0;
	long exit_ms = -1;
	int opt;
	while ((opt = getopt(argc, argv, "m:S:L:Waslx:vTBfN")) != -1) {
		switch (opt) {
		case 'm': masters = atoi(optarg); break;
		case 'S': spinners = atoi(optarg); break;
		case 'L': sleepers = atoi(optarg); break;
		case 'W': streaming = 1; break;
		case 'a': ack = 1; break;
		case 's': strict = 1; break;
		case 'l': fill = 1; break;
		case 'x': exit_ms = atol(optarg); break;
		case 'v': vf = 1; break;
		case 'T': spawn = 1; break;
		case 'B': busy = 1; break;
		case 'f': filter = 1; break;
		case 'N': nap = 1; break;
		default: return 2;
		}
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);

	static char ready[1 << 16];
	size_t len = (size_t)snprintf(ready, sizeof ready, "READY");
	for (int i = 0; i < masters; i++) {
		int fd = posix_openpt(O_RDWR | O_NOCTTY | (i % 2 ? O_CLOEXEC : 0));
		if (fd < 0) {
			perror("posix_openpt");
			return 5;
		}
		len += (size_t)snprintf(ready + len, sizeof ready - len, " %d", fd);
	}
	if (fill) {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = (rlim_t)masters + 64;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return 6;
		while (open("/dev/null", O_RDONLY) >= 0) {
		}
		if (errno != EMFILE) return 7;
	}
	for (int i = 0; i < spinners; i++) start(spin, NULL);
	for (int i = 0; i < sleepers; i++) start(sleeper, NULL);
	if (streaming) start(stream, NULL);
	if (vf) start(vforker, NULL);
	if (spawn) start(spawner, NULL);
	len += (size_t)snprintf(ready + len, sizeof ready - len, "\n");
	out(ready);
	if (exit_ms >= 0) start(exiter, (void *)exit_ms);
	if (strict && prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) return 8;
	if (filter && allow_all_filter() != 0) return 10;
	if (busy) {
		start(serve, (void *)(long)streaming);
		spin(NULL);
	}
	if (nap) {
		start(serve, (void *)(long)streaming);
		for (;;) {
			struct timespec ts = {3600, 0};
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR) eintr("main-nanosleep");
		}
	}
	serve((void *)(long)streaming);
	return 0;
}

static void *serve(void *arg) {
	int streaming = (int)(long)arg;
	// Serve stdin: only read and write from here on (strict seccomp).
	static char buf[4096], line[4200];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(0, buf + have, sizeof buf - have - 1);
		if (n < 0) {
			if (errno == EINTR) {
				eintr("read");
				continue;
			}
			syscall(SYS_exit, 9);
		}
		if (n == 0) syscall(SYS_exit, 0);
		have += (size_t)n;
		buf[have] = 0;
		char *nl;
		while ((nl = memchr(buf, '\n', have)) != NULL) {
			*nl = 0;
			if (strcmp(buf, "EXIT") == 0) {
				atomic_store(&stop_stream, 1);
				if (streaming) {
					struct timespec ts = {0, 20 * 1000 * 1000};
					nanosleep(&ts, NULL);
				}
				out("BYE\n");
				syscall(strict ? SYS_exit : SYS_exit_group, 0);
			} else if (strcmp(buf, "COUNT") == 0) {
				snprintf(line, sizeof line, "COUNT %ld %ld\n", atomic_load(&usr1), atomic_load(&eintrs));
				out(line);
			} else {
				snprintf(line, sizeof line, "ECHO %s\n", buf);
				out(line);
			}
			size_t used = (size_t)(nl - buf) + 1;
			memmove(buf, nl + 1, have - used);
			have -= used;
		}
	}
	return NULL;
}
