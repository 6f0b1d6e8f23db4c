// cstate: a C target for the crash-safe tests. Its main thread (the one
// the injector works through) holds known values in general registers
// (rbx, r12-r15), in every vector register (zmm0-31 with AVX-512, else
// ymm0-15) and in MXCSR across each blocking read of stdin, and checks
// them, its signal mask and its sigaltstack after every read.
//
//   -t N   N more threads spinning in user space
//   -M     forbid new executable memory (prctl PR_SET_MDWE)
//
// Prints "READY". Commands on stdin:
//   OPEN k [mask]  open k PTY masters and a dup of each: "FDS m1 d1 m2 d2 ...";
//                  master i is added to the epoll set (EPOLLIN, data
//                  0xfeed000000000000|fd) when mask[i] is '1'
//   POLL     epoll_wait(set, 0): "POLL n <data>:<events> ..."
//   CLOSE    close every fd OPEN made: "CLOSED"
//   CHECK    "OK <reads> <SIGUSR1 handled on the altstack> <bad>"
//   other    "ECHO <line>"
// Any failed check prints "BAD <what>" at once; an EINTR prints "EINTR".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static unsigned char pat[32][64] __attribute__((aligned(64)));
static unsigned char got[32][64] __attribute__((aligned(64)));
static char *alt;
static const size_t altSize = 1 << 16;
static atomic_long onAlt, offAlt;
static long bad, reads;
static int opened[4096], nopened, epfd;

static void out(const char *s) {
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w < 0) {
			if (errno == EINTR) continue;
			_exit(3);
		}
		s += w;
		n -= (size_t)w;
	}
}

static void fail(const char *what) {
	char line[160];
	bad++;
	snprintf(line, sizeof line, "BAD %s\n", what);
	out(line);
}

static void on_usr1(int sig) {
	char here;
	(void)sig;
	if (&here >= alt && &here < alt + altSize) atomic_fetch_add(&onAlt, 1);
	else atomic_fetch_add(&offAlt, 1);
}

static void *spin(void *arg) {
	volatile unsigned long x = 0;
	(void)arg;
	for (;;) x++;
	return NULL;
}

__attribute__((target("avx512f"))) static long read512(char *buf, long len, long *g) {
	long ret;
	register long r12 asm("r12") = g[0];
	register long r13 asm("r13") = g[1];
	register long r14 asm("r14") = g[2];
	register long r15 asm("r15") = g[3];
	long rbx = g[4];
	asm volatile(
		"vmovdqu64 0(%[p]), %%zmm0\n\t"
		"vmovdqu64 64(%[p]), %%zmm1\n\t"
		"vmovdqu64 128(%[p]), %%zmm2\n\t"
		"vmovdqu64 192(%[p]), %%zmm3\n\t"
		"vmovdqu64 256(%[p]), %%zmm4\n\t"
		"vmovdqu64 320(%[p]), %%zmm5\n\t"
		"vmovdqu64 384(%[p]), %%zmm6\n\t"
		"vmovdqu64 448(%[p]), %%zmm7\n\t"
		"vmovdqu64 512(%[p]), %%zmm8\n\t"
		"vmovdqu64 576(%[p]), %%zmm9\n\t"
		"vmovdqu64 640(%[p]), %%zmm10\n\t"
		"vmovdqu64 704(%[p]), %%zmm11\n\t"
		"vmovdqu64 768(%[p]), %%zmm12\n\t"
		"vmovdqu64 832(%[p]), %%zmm13\n\t"
		"vmovdqu64 896(%[p]), %%zmm14\n\t"
		"vmovdqu64 960(%[p]), %%zmm15\n\t"
		"vmovdqu64 1024(%[p]), %%zmm16\n\t"
		"vmovdqu64 1088(%[p]), %%zmm17\n\t"
		"vmovdqu64 1152(%[p]), %%zmm18\n\t"
		"vmovdqu64 1216(%[p]), %%zmm19\n\t"
		"vmovdqu64 1280(%[p]), %%zmm20\n\t"
		"vmovdqu64 1344(%[p]), %%zmm21\n\t"
		"vmovdqu64 1408(%[p]), %%zmm22\n\t"
		"vmovdqu64 1472(%[p]), %%zmm23\n\t"
		"vmovdqu64 1536(%[p]), %%zmm24\n\t"
		"vmovdqu64 1600(%[p]), %%zmm25\n\t"
		"vmovdqu64 1664(%[p]), %%zmm26\n\t"
		"vmovdqu64 1728(%[p]), %%zmm27\n\t"
		"vmovdqu64 1792(%[p]), %%zmm28\n\t"
		"vmovdqu64 1856(%[p]), %%zmm29\n\t"
		"vmovdqu64 1920(%[p]), %%zmm30\n\t"
		"vmovdqu64 1984(%[p]), %%zmm31\n\t"
		
		"syscall\n\t"
		"vmovdqu64 %%zmm0, 0(%[g])\n\t"
		"vmovdqu64 %%zmm1, 64(%[g])\n\t"
		"vmovdqu64 %%zmm2, 128(%[g])\n\t"
		"vmovdqu64 %%zmm3, 192(%[g])\n\t"
		"vmovdqu64 %%zmm4, 256(%[g])\n\t"
		"vmovdqu64 %%zmm5, 320(%[g])\n\t"
		"vmovdqu64 %%zmm6, 384(%[g])\n\t"
		"vmovdqu64 %%zmm7, 448(%[g])\n\t"
		"vmovdqu64 %%zmm8, 512(%[g])\n\t"
		"vmovdqu64 %%zmm9, 576(%[g])\n\t"
		"vmovdqu64 %%zmm10, 640(%[g])\n\t"
		"vmovdqu64 %%zmm11, 704(%[g])\n\t"
		"vmovdqu64 %%zmm12, 768(%[g])\n\t"
		"vmovdqu64 %%zmm13, 832(%[g])\n\t"
		"vmovdqu64 %%zmm14, 896(%[g])\n\t"
		"vmovdqu64 %%zmm15, 960(%[g])\n\t"
		"vmovdqu64 %%zmm16, 1024(%[g])\n\t"
		"vmovdqu64 %%zmm17, 1088(%[g])\n\t"
		"vmovdqu64 %%zmm18, 1152(%[g])\n\t"
		"vmovdqu64 %%zmm19, 1216(%[g])\n\t"
		"vmovdqu64 %%zmm20, 1280(%[g])\n\t"
		"vmovdqu64 %%zmm21, 1344(%[g])\n\t"
		"vmovdqu64 %%zmm22, 1408(%[g])\n\t"
		"vmovdqu64 %%zmm23, 1472(%[g])\n\t"
		"vmovdqu64 %%zmm24, 1536(%[g])\n\t"
		"vmovdqu64 %%zmm25, 1600(%[g])\n\t"
		"vmovdqu64 %%zmm26, 1664(%[g])\n\t"
		"vmovdqu64 %%zmm27, 1728(%[g])\n\t"
		"vmovdqu64 %%zmm28, 1792(%[g])\n\t"
		"vmovdqu64 %%zmm29, 1856(%[g])\n\t"
		"vmovdqu64 %%zmm30, 1920(%[g])\n\t"
		"vmovdqu64 %%zmm31, 1984(%[g])\n\t"
		
		: "=a"(ret), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15), "+b"(rbx)
		: "0"(0L), "D"(0L), "S"(buf), "d"(len), [p] "r"(pat), [g] "r"(got)
		: "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
	g[0] = r12, g[1] = r13, g[2] = r14, g[3] = r15, g[4] = rbx;
	return ret;
}

__attribute__((target("avx2"))) static long read256(char *buf, long len, long *g) {
	long ret;
	register long r12 asm("r12") = g[0];
	register long r13 asm("r13") = g[1];
	register long r14 asm("r14") = g[2];
	register long r15 asm("r15") = g[3];
	long rbx = g[4];
	asm volatile(
		"vmovdqu 0(%[p]), %%ymm0\n\t"
		"vmovdqu 64(%[p]), %%ymm1\n\t"
		"vmovdqu 128(%[p]), %%ymm2\n\t"
		"vmovdqu 192(%[p]), %%ymm3\n\t"
		"vmovdqu 256(%[p]), %%ymm4\n\t"
		"vmovdqu 320(%[p]), %%ymm5\n\t"
		"vmovdqu 384(%[p]), %%ymm6\n\t"
		"vmovdqu 448(%[p]), %%ymm7\n\t"
		"vmovdqu 512(%[p]), %%ymm8\n\t"
		"vmovdqu 576(%[p]), %%ymm9\n\t"
		"vmovdqu 640(%[p]), %%ymm10\n\t"
		"vmovdqu 704(%[p]), %%ymm11\n\t"
		"vmovdqu 768(%[p]), %%ymm12\n\t"
		"vmovdqu 832(%[p]), %%ymm13\n\t"
		"vmovdqu 896(%[p]), %%ymm14\n\t"
		"vmovdqu 960(%[p]), %%ymm15\n\t"
		
		"syscall\n\t"
		"vmovdqu %%ymm0, 0(%[g])\n\t"
		"vmovdqu %%ymm1, 64(%[g])\n\t"
		"vmovdqu %%ymm2, 128(%[g])\n\t"
		"vmovdqu %%ymm3, 192(%[g])\n\t"
		"vmovdqu %%ymm4, 256(%[g])\n\t"
		"vmovdqu %%ymm5, 320(%[g])\n\t"
		"vmovdqu %%ymm6, 384(%[g])\n\t"
		"vmovdqu %%ymm7, 448(%[g])\n\t"
		"vmovdqu %%ymm8, 512(%[g])\n\t"
		"vmovdqu %%ymm9, 576(%[g])\n\t"
		"vmovdqu %%ymm10, 640(%[g])\n\t"
		"vmovdqu %%ymm11, 704(%[g])\n\t"
		"vmovdqu %%ymm12, 768(%[g])\n\t"
		"vmovdqu %%ymm13, 832(%[g])\n\t"
		"vmovdqu %%ymm14, 896(%[g])\n\t"
		"vmovdqu %%ymm15, 960(%[g])\n\t"
		
		: "=a"(ret), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15), "+b"(rbx)
		: "0"(0L), "D"(0L), "S"(buf), "d"(len), [p] "r"(pat), [g] "r"(got)
		: "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	g[0] = r12, g[1] = r13, g[2] = r14, g[3] = r15, g[4] = rbx;
	return ret;
}

static void command(char *line) {
	char msg[16384];
	if (!strncmp(line, "OPEN ", 5)) {
		char *mask = strchr(line + 5, ' ');
		int k = atoi(line + 5), n = snprintf(msg, sizeof msg, "FDS");
		for (int i = 0; i < k && nopened + 2 <= 4096; i++) {
			int m = posix_openpt(O_RDWR | O_NOCTTY);
			if (m < 0 || grantpt(m) || unlockpt(m)) { fail("posix_openpt"); return; }
			int d = dup(m);
			if (mask && (int)strlen(mask + 1) > i && mask[1 + i] == '1') {
				struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xfeed000000000000UL | (unsigned)m};
				if (epoll_ctl(epfd, EPOLL_CTL_ADD, m, &ev)) { fail("epoll_ctl"); return; }
			}
			opened[nopened++] = m;
			opened[nopened++] = d;
			n += snprintf(msg + n, sizeof msg - n, " %d %d", m, d);
		}
		snprintf(msg + n, sizeof msg - n, "\n");
		out(msg);
	} else if (!strcmp(line, "POLL")) {
		struct epoll_event evs[64];
		int k = epoll_wait(epfd, evs, 64, 0), n = snprintf(msg, sizeof msg, "POLL %d", k);
		for (int i = 0; i < k; i++)
			n += snprintf(msg + n, sizeof msg - n, " %lx:%x", (unsigned long)evs[i].data.u64, evs[i].events);
		snprintf(msg + n, sizeof msg - n, "\n");
		out(msg);
	} else if (!strcmp(line, "CLOSE")) {
		for (int i = 0; i < nopened; i++) close(opened[i]);
		nopened = 0;
		out("CLOSED\n");
	} else if (!strcmp(line, "CHECK")) {
		snprintf(msg, sizeof msg, "OK %ld %ld %ld\n", reads, atomic_load(&onAlt), bad + atomic_load(&offAlt));
		out(msg);
	} else {
		snprintf(msg, sizeof msg, "ECHO %s\n", line);
		out(msg);
	}
}

int main(int argc, char **argv) {
	int threads = 0, mdwe = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
		if (!strcmp(argv[i], "-M")) mdwe = 1;
	}
	// PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1): no mapping may gain
	// PROT_EXEC, nor be writable and executable.
	if (mdwe && prctl(65, 1UL, 0UL, 0UL, 0UL)) { perror("PR_SET_MDWE"); return 1; }
	int has512 = __builtin_cpu_supports("avx512f");
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) { perror("epoll_create1"); return 1; }
	alt = mmap(NULL, altSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	stack_t ss = {.ss_sp = alt, .ss_size = altSize, .ss_flags = 0};
	if (alt == MAP_FAILED || sigaltstack(&ss, NULL)) { perror("sigaltstack"); return 1; }
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		pthread_create(&t, NULL, spin, NULL);
	}
	// Blocked only in this thread, after the threads started.
	sigset_t want, cur;
	sigemptyset(&want);
	sigaddset(&want, SIGUSR2);
	sigaddset(&want, SIGWINCH);
	sigprocmask(SIG_BLOCK, &want, NULL);
	unsigned mxcsr = 0x7f80; // round toward zero: not the default
	asm volatile("ldmxcsr %0" ::"m"(mxcsr));
	out("READY\n");

	char buf[4096];
	size_t have = 0;
	for (unsigned long iter = 1;; iter++) {
		for (int i = 0; i < 32; i++)
			for (int j = 0; j < 64; j++) pat[i][j] = (unsigned char)(iter * 31 + i * 7 + j);
		long g[5], want5[5];
		for (int i = 0; i < 5; i++) g[i] = want5[i] = (long)(0x1111111111111111UL * (unsigned long)(i + 1) ^ iter);
		memset(got, 0, sizeof got);
		long n = has512 ? read512(buf + have, (long)(sizeof buf - 1 - have), g)
		                : read256(buf + have, (long)(sizeof buf - 1 - have), g);
		reads++;
		unsigned m2;
		asm volatile("stmxcsr %0" : "=m"(m2));
		if (m2 != mxcsr) fail("mxcsr");
		if (memcmp(g, want5, sizeof g)) fail("general registers");
		for (int i = 0; i < (has512 ? 32 : 16); i++)
			if (memcmp(got[i], pat[i], has512 ? 64 : 32)) {
				char what[32];
				snprintf(what, sizeof what, "vector register %d", i);
				fail(what);
				break;
			}
		sigprocmask(SIG_BLOCK, NULL, &cur);
		if (!sigismember(&cur, SIGUSR2) || !sigismember(&cur, SIGWINCH) || sigismember(&cur, SIGUSR1) ||
		    sigismember(&cur, SIGTERM))
			fail("signal mask");
		stack_t now;
		if (sigaltstack(NULL, &now) || now.ss_sp != alt || now.ss_size != altSize || now.ss_flags != 0)
			fail("sigaltstack");
		if (n == -EINTR) { out("EINTR\n"); continue; }
		if (n <= 0) return 0;
		have += (size_t)n;
		buf[have] = 0;
		char *p = buf, *nl;
		while ((nl = strchr(p, '\n'))) {
			*nl = 0;
			command(p);
			p = nl + 1;
		}
		have = strlen(p);
		memmove(buf, p, have);
	}
}
