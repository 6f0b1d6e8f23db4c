/* eintr: a target that holds one leaked PTY master and blocks in the call
 * named by argv[1] (read, epoll_wait, poll, select, nanosleep, inotify,
 * futex, accept, waitpid, sigwaitinfo, pause), printing "EINTR" whenever the
 * call fails with EINTR and "woke" whenever it returns otherwise. The
 * release script counts what a frozen-and-restored process saw. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/inotify.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *what) { printf("%s\n", what); fflush(stdout); }

int main(int argc, char **argv) {
	const char *call = argc > 1 ? argv[1] : "read";
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) { perror("posix_openpt"); return 1; }
	int p[2];
	if (pipe(p)) return 1;
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]};
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	int in = inotify_init1(0);
	inotify_add_watch(in, "/", IN_CREATE);
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "@eintr-%d", getpid());
	sa.sun_path[0] = 0;
	bind(ls, (struct sockaddr *)&sa, sizeof sa);
	listen(ls, 1);
	if (!strcmp(call, "waitpid") && fork() == 0) { prctl(PR_SET_PDEATHSIG, SIGKILL); pause(); _exit(0); }
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	if (!strcmp(call, "sigwaitinfo")) sigprocmask(SIG_BLOCK, &set, NULL);
	static int futexword;
	printf("ready %d\n", m);
	fflush(stdout);
	char buf[4096];
	for (;;) {
		long r = 0;
		if (!strcmp(call, "read")) r = read(p[0], buf, sizeof buf);
		else if (!strcmp(call, "epoll_wait")) r = epoll_wait(ep, &ev, 1, -1);
		else if (!strcmp(call, "poll")) { struct pollfd pf = {p[0], POLLIN, 0}; r = poll(&pf, 1, -1); }
		else if (!strcmp(call, "select")) { fd_set fs; FD_ZERO(&fs); FD_SET(p[0], &fs); r = select(p[0] + 1, &fs, NULL, NULL, NULL); }
		else if (!strcmp(call, "nanosleep")) { struct timespec ts = {3600, 0}; r = nanosleep(&ts, NULL); }
		else if (!strcmp(call, "inotify")) r = read(in, buf, sizeof buf);
		else if (!strcmp(call, "futex")) r = syscall(SYS_futex, &futexword, FUTEX_WAIT, 0, NULL, NULL, 0);
		else if (!strcmp(call, "accept")) r = accept(ls, NULL, NULL);
		else if (!strcmp(call, "waitpid")) r = waitpid(-1, NULL, 0);
		else if (!strcmp(call, "sigwaitinfo")) r = sigwaitinfo(&set, NULL);
		else if (!strcmp(call, "pause")) r = pause();
		else { fprintf(stderr, "unknown call %s\n", call); return 2; }
		say(r < 0 && errno == EINTR ? "EINTR" : "woke");
	}
}
