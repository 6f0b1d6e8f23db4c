// tracer: seizes the given pid (as a debugger would) and holds it until
// stdin closes.
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	if (ptrace(PTRACE_SEIZE, atoi(argv[1]), 0, 0) != 0) {
		perror("seize");
		return 1;
	}
	printf("TRACING\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0) {
	}
	return 0;
}
