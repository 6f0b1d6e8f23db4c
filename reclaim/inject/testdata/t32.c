// 32-bit target without libc: blocks in pause() forever.
void _start(void) {
	for (;;) __asm__ volatile("int $0x80" : : "a"(29) : "memory");
}
