// filtered: a target whose own seccomp filter acts on one of the calls the
// injector makes, and whose PTY masters sit in an epoll set.
//
//   -w N        N masters registered in one epoll set (EPOLLIN, data
//               0xfeed0000000000NN with NN the fd)
//   -u N        N more masters, not registered
//   -c CALL     the call to filter: openat dup3 close mmap munmap epoll_ctl
//               pipe2 socketpair shutdown, or mprotect-exec (mprotect
//               adding PROT_EXEC, as systemd's MemoryDenyWriteExecute filters)
//   -a ACTION   trap (a SIGSYS handler counts), kill (RET_KILL_THREAD),
//               errno (EPERM), notif (a supervisor process answers after
//               30 s), notif-killable (the supervisor takes the call and
//               never answers; the wait is killable only)
//
// SIGUSR2 and SIGWINCH stay blocked. stdin is read with a raw read syscall
// that loads magic values into every callee-saved register and checks them
// after the call: a corrupted register prints "REGSBAD" and exits 5.
// It prints "READY <watched fds> <unwatched fds>", then per stdin line:
// "POLL" -> "POLL <n> fd:events:data...", "COUNT" -> "COUNT <sigsys> 0",
// "READ" -> "READ fd:result..." (each fd read without blocking), anything
// else -> "ECHO <line>".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
__attribute__((noinline)) static long checked_read(long fd, void *buf, long n) {
	long ret, bad;
	__asm__ volatile(
	    "push %%rbx\n push %%rbp\n push %%r12\n push %%r13\n push %%r14\n push %%r15\n"
	    "movabs $0x1b1b1b1b1b1b1b1b, %%rbx\n"
	    "movabs $0x5b5b5b5b5b5b5b5b, %%rbp\n"
	    "movabs $0x1212121212121212, %%r12\n"
	    "movabs $0x1313131313131313, %%r13\n"
	    "movabs $0x1414141414141414, %%r14\n"
	    "movabs $0x1515151515151515, %%r15\n"
	    "xor %%eax, %%eax\n"
	    "syscall\n"
	    "xor %%ecx, %%ecx\n"
	    "movabs $0x1b1b1b1b1b1b1b1b, %%r11\n cmp %%r11, %%rbx\n jne 1f\n"
	    "movabs $0x5b5b5b5b5b5b5b5b, %%r11\n cmp %%r11, %%rbp\n jne 1f\n"
	    "movabs $0x1212121212121212, %%r11\n cmp %%r11, %%r12\n jne 1f\n"
	    "movabs $0x1313131313131313, %%r11\n cmp %%r11, %%r13\n jne 1f\n"
	    "movabs $0x1414141414141414, %%r11\n cmp %%r11, %%r14\n jne 1f\n"
	    "movabs $0x1515151515151515, %%r11\n cmp %%r11, %%r15\n jne 1f\n"
	    "jmp 2f\n"
	    "1: mov $1, %%ecx\n"
	    "2: pop %%r15\n pop %%r14\n pop %%r13\n pop %%r12\n pop %%rbp\n pop %%rbx\n"
	    : "=a"(ret), "=c"(bad)
	    : "D"(fd), "S"(buf), "d"(n)
	    : "r11", "memory", "cc");
	if (bad) {
		write(1, "REGSBAD\n", 8);
		_exit(5);
	}
	return ret;
}
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
__attribute__((noinline)) static long checked_read(long fd, void *buf, long n) {
	register long x0 __asm__("x0") = fd;
	register long x1 __asm__("x1") = (long)buf;
	register long x2 __asm__("x2") = n;
	long bad;
	__asm__ volatile(
	    "stp x19, x20, [sp, #-16]!\n stp x21, x22, [sp, #-16]!\n"
	    "stp x23, x24, [sp, #-16]!\n stp x25, x26, [sp, #-16]!\n"
	    "stp x27, x28, [sp, #-16]!\n"
	    "mov x19, #0x1919\n mov x20, #0x2020\n mov x21, #0x2121\n mov x22, #0x2222\n"
	    "mov x23, #0x2323\n mov x24, #0x2424\n mov x25, #0x2525\n mov x26, #0x2626\n"
	    "mov x27, #0x2727\n mov x28, #0x2828\n"
	    "mov x8, #63\n svc #0\n"
	    "mov x9, #0\n"
	    "mov x10, #0x1919\n cmp x19, x10\n b.ne 1f\n"
	    "mov x10, #0x2020\n cmp x20, x10\n b.ne 1f\n"
	    "mov x10, #0x2121\n cmp x21, x10\n b.ne 1f\n"
	    "mov x10, #0x2222\n cmp x22, x10\n b.ne 1f\n"
	    "mov x10, #0x2323\n cmp x23, x10\n b.ne 1f\n"
	    "mov x10, #0x2424\n cmp x24, x10\n b.ne 1f\n"
	    "mov x10, #0x2525\n cmp x25, x10\n b.ne 1f\n"
	    "mov x10, #0x2626\n cmp x26, x10\n b.ne 1f\n"
	    "mov x10, #0x2727\n cmp x27, x10\n b.ne 1f\n"
	    "mov x10, #0x2828\n cmp x28, x10\n b.ne 1f\n"
	    "b 2f\n"
	    "1: mov x9, #1\n"
	    "2: ldp x27, x28, [sp], #16\n ldp x25, x26, [sp], #16\n ldp x23, x24, [sp], #16\n"
	    "ldp x21, x22, [sp], #16\n ldp x19, x20, [sp], #16\n"
	    "mov %1, x9\n"
	    : "+r"(x0), "=r"(bad)
	    : "r"(x1), "r"(x2)
	    : "x8", "x9", "x10", "memory", "cc");
	if (bad) {
		write(1, "REGSBAD\n", 8);
		_exit(5);
	}
	return x0;
}
#else
#error unsupported architecture
#endif

static volatile long sigsys;

static void on_sigsys(int sig) {
	(void)sig;
	sigsys++;
}

static int nr_of(const char *name) {
	static const struct {
		const char *name;
		int nr;
	} calls[] = {
	    {"openat", SYS_openat}, {"dup3", SYS_dup3},         {"close", SYS_close},
	    {"mmap", SYS_mmap},     {"munmap", SYS_munmap},     {"epoll_ctl", SYS_epoll_ctl},
	    {"pipe2", SYS_pipe2},   {"socketpair", SYS_socketpair}, {"shutdown", SYS_shutdown},
	};
	for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
		if (strcmp(calls[i].name, name) == 0)
			return calls[i].nr;
	fprintf(stderr, "unknown call %s\n", name);
	exit(2);
}

// supervise answers (or not) the notifications of the filter's listener.
static void supervise(int listener, int answer) {
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;
	for (;;) {
		memset(&req, 0, sizeof req);
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			_exit(0);
		}
		if (!answer)
			for (;;)
				pause();
		sleep(30);
		memset(&resp, 0, sizeof resp);
		resp.id = req.id;
		resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
	}
}

static void install(const char *call, const char *action) {
	int exec_only = strcmp(call, "mprotect-exec") == 0;
	int nr = exec_only ? SYS_mprotect : nr_of(call);
	unsigned int ret = SECCOMP_RET_ALLOW;
	unsigned long flags = 0;
	int notif = 0, answer = 1;
	if (strcmp(action, "trap") == 0)
		ret = SECCOMP_RET_TRAP;
	else if (strcmp(action, "kill") == 0)
		ret = SECCOMP_RET_KILL_THREAD;
	else if (strcmp(action, "errno") == 0)
		ret = SECCOMP_RET_ERRNO | EPERM;
	else if (strcmp(action, "notif") == 0)
		ret = SECCOMP_RET_USER_NOTIF, notif = 1;
	else if (strcmp(action, "notif-killable") == 0)
		ret = SECCOMP_RET_USER_NOTIF, notif = 1, answer = 0,
		flags = SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
	else {
		fprintf(stderr, "unknown action %s\n", action);
		exit(2);
	}
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 0, 3),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, ret),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_filter g[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 0, 5),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 3),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
	    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, ret),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
	if (exec_only)
		prog = (struct sock_fprog){.len = sizeof g / sizeof g[0], .filter = g};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("no_new_privs");
		exit(1);
	}
	if (notif)
		flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
	long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
	if (listener < 0) {
		perror("seccomp");
		exit(1);
	}
	if (!notif)
		return;
	pid_t parent = getpid();
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		exit(1);
	}
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		// Hold no PTY: close_range is not the filtered call.
		syscall(SYS_close_range, 0, (unsigned)listener - 1, 0);
		syscall(SYS_close_range, (unsigned)listener + 1, ~0U, 0);
		supervise((int)listener, answer);
		_exit(0);
	}
}

int main(int argc, char **argv) {
	int watched = 2, unwatched = 0, opt;
	const char *call = NULL, *action = NULL;
	while ((opt = getopt(argc, argv, "w:u:c:a:")) != -1) {
		switch (opt) {
		case 'w': watched = atoi(optarg); break;
		case 'u': unwatched = atoi(optarg); break;
		case 'c': call = optarg; break;
		case 'a': action = optarg; break;
		default: return 2;
		}
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGWINCH);
	sigprocmask(SIG_BLOCK, &set, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigsys;
	sigaction(SIGSYS, &sa, NULL);

	int ep = epoll_create1(EPOLL_CLOEXEC);
	int fds[1024], n = 0;
	for (int i = 0; i < watched + unwatched && n < 1024; i++) {
		int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | (i % 2 ? O_CLOEXEC : 0));
		if (fd < 0) {
			perror("ptmx");
			return 1;
		}
		if (i < watched) {
			struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xfeed000000000000ULL | (unsigned)fd};
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
				perror("epoll_ctl");
				return 1;
			}
		}
		fds[n++] = fd;
	}
	char out[16384];
	int len = snprintf(out, sizeof out, "READY");
	for (int i = 0; i < n; i++)
		len += snprintf(out + len, sizeof out - len, " %d", fds[i]);
	if (call && action)
		install(call, action);
	printf("%s\n", out);
	fflush(stdout);

	char buf[512], line[512];
	size_t have = 0;
	for (;;) {
		long got = checked_read(0, buf + have, (long)(sizeof buf - 1 - have));
		if (got == -EINTR)
			continue;
		if (got <= 0)
			return got == 0 ? 0 : 4;
		have += (size_t)got;
		char *nl;
		while ((nl = memchr(buf, '\n', have)) != NULL) {
			size_t l = (size_t)(nl - buf);
			memcpy(line, buf, l);
			line[l] = 0;
			memmove(buf, nl + 1, have - l - 1);
			have -= l + 1;
			if (strcmp(line, "POLL") == 0) {
				struct epoll_event evs[64];
				int k = epoll_wait(ep, evs, 64, 0);
				len = snprintf(out, sizeof out, "POLL %d", k);
				for (int i = 0; i < k; i++)
					len += snprintf(out + len, sizeof out - len, " %x:%llx",
					                evs[i].events, (unsigned long long)evs[i].data.u64);
				printf("%s\n", out);
			} else if (strcmp(line, "COUNT") == 0) {
				printf("COUNT %ld 0\n", sigsys);
			} else if (strcmp(line, "READ") == 0) {
				len = snprintf(out, sizeof out, "READ");
				for (int i = 0; i < n; i++) {
					char b[16];
					ssize_t r = read(fds[i], b, sizeof b);
					len += snprintf(out + len, sizeof out - len, " %d:%s", fds[i],
					                r == 0 ? "EOF" : r > 0 ? "DATA" : strerrorname_np(errno));
				}
				printf("%s\n", out);
			} else {
				printf("ECHO %s\n", line);
			}
			fflush(stdout);
		}
	}
}
