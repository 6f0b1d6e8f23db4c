# The routine the crash-safe engine runs inside a target (x86-64). Its
# bytes are routineAMD64 in routine_x86.go; TestRoutineBytesMatchSource
# assembles this file and compares.
#
# Page 0 (this code) is made R-X; page 1 starts with the header that the
# tracer fills and reads; the op table follows. Each op is 80 bytes:
#   +0 u32 syscall number   +4 u16 flags   +6 u8 op   +8 u64 guard address
#   +16 six u64 arguments   +64 i64 result (written here)   +72 u64 spare
# Ops: 0 syscall, 1 pause, 2 jump (to arg0), 3 epoll scan, 4 end.
# Flags: bits 0-5: argument i is the address of an int32 to pass instead (a
# negative one skips the op); bit 6: OR O_CLOEXEC into arg2 when
# fcntl(arg1, F_GETFD) says FD_CLOEXEC (dup3 keeping the bit); bit 7: run
# even after an abort (cleanup); bit 8: run only if the result at the guard
# address is a success; bit 9: only if it is not.
#
# Pause: done = the op's address, then pselect6 for the header's timeout.
# A live tracer interrupts it there and resumes it at pause_ret; a dead one
# never does, and the routine goes on by itself. End: done = 1, then
# munmap(scratch) through the target's own "syscall; ret" with rsp at the
# restore frame, whose return address is an rt_sigreturn sequence: the
# thread returns to exactly its saved state. Never touches vector
# registers: only rt_sigreturn restores those.
	.set	DONE, 0
	.set	ABORT, 8
	.set	TIMEOUT, 16
	.set	TIMEVAR, 32
	.set	FRAME, 48
	.set	GADGET, 56
	.set	BASE, 64
	.set	SIZE, 72
	.set	TABLE, 80
	.set	PROGRESS, 88
	.set	OPSIZE, 80
	.set	RESULT, 64

	.text
	.globl _start
_start:
	lea	hdr(%rip), %r12
	mov	TABLE(%r12), %rbx
next:
	mov	%rbx, PROGRESS(%r12)
	movzwl	4(%rbx), %r14d
	movzbl	6(%rbx), %eax
	cmpq	$0, ABORT(%r12)
	je	1f
	test	$0x80, %r14d
	jz	skip
1:	cmp	$2, %eax
	je	op_jump
	cmp	$1, %eax
	je	op_pause
	cmp	$4, %eax
	je	op_end
	cmp	$3, %eax
	je	op_scan
	test	$0x300, %r14d
	jz	args
	mov	8(%rbx), %rcx
	mov	(%rcx), %rcx
	movabs	$0x7ffffffffffffff1, %rax
	cmp	%rax, %rcx
	je	guard_failed
	test	%rcx, %rcx
	js	guard_failed
	test	$0x200, %r14d
	jnz	skip
	jmp	args
guard_failed:
	test	$0x100, %r14d
	jnz	skip
args:
	mov	16(%rbx), %rdi
	mov	24(%rbx), %rsi
	mov	32(%rbx), %rdx
	mov	40(%rbx), %r10
	mov	48(%rbx), %r8
	mov	56(%rbx), %r9
	test	$1, %r14d
	jz	2f
	movslq	(%rdi), %rdi
	test	%rdi, %rdi
	js	skip
2:	test	$2, %r14d
	jz	3f
	movslq	(%rsi), %rsi
	test	%rsi, %rsi
	js	skip
3:	test	$4, %r14d
	jz	4f
	movslq	(%rdx), %rdx
	test	%rdx, %rdx
	js	skip
4:	test	$8, %r14d
	jz	5f
	movslq	(%r10), %r10
	test	%r10, %r10
	js	skip
5:	test	$16, %r14d
	jz	6f
	movslq	(%r8), %r8
	test	%r8, %r8
	js	skip
6:	test	$32, %r14d
	jz	7f
	movslq	(%r9), %r9
	test	%r9, %r9
	js	skip
7:	test	$0x40, %r14d
	jz	8f
	# fcntl(arg1, F_GETFD); syscalls keep every register but rax, rcx, r11.
	mov	%rdi, %r13
	mov	%rsi, %r15
	mov	%rsi, %rdi
	mov	$1, %esi
	mov	$72, %eax
	syscall
	mov	%r13, %rdi
	mov	%r15, %rsi
	test	%rax, %rax
	js	store
	test	$1, %eax
	jz	8f
	or	$0x80000, %rdx
8:	mov	(%rbx), %eax
	syscall
store:
	mov	%rax, RESULT(%rbx)
advance:
	add	$OPSIZE, %rbx
	jmp	next
skip:
	movabs	$0x80000000fffffff0, %rax
	jmp	store
op_jump:
	mov	16(%rbx), %rbx
	jmp	next
op_pause:
	mov	%rbx, DONE(%r12)
	mov	TIMEOUT(%r12), %rax
	mov	%rax, TIMEVAR(%r12)
	mov	TIMEOUT+8(%r12), %rax
	mov	%rax, TIMEVAR+8(%r12)
	xor	%edi, %edi
	xor	%esi, %esi
	xor	%edx, %edx
	xor	%r10d, %r10d
	lea	TIMEVAR(%r12), %r8
	xor	%r9d, %r9d
	mov	$270, %eax
	syscall
pause_ret:
	jmp	store
	# Scan: for each int32 fd in the list at arg0 (arg1 of them),
	# epoll_ctl(fd, EPOLL_CTL_DEL, *arg2, NULL): ENOENT says fd is an epoll
	# instance (the *arg2 file, a fresh pipe, is in none); the answer goes
	# to byte i of arg3. Nothing is changed by it.
op_scan:
	mov	32(%rbx), %rdx
	movslq	(%rdx), %rdx
	test	%rdx, %rdx
	js	skip
	mov	16(%rbx), %r13
	mov	24(%rbx), %r15
	mov	40(%rbx), %r14
	xor	%r10d, %r10d
scan_next:
	test	%r15, %r15
	jz	scan_done
	movslq	(%r13), %rdi
	mov	$2, %esi
	mov	$233, %eax
	syscall
	cmp	$-2, %rax
	sete	(%r14)
	add	$4, %r13
	inc	%r14
	dec	%r15
	jmp	scan_next
scan_done:
	xor	%eax, %eax
	jmp	store
op_end:
	movq	$1, DONE(%r12)
	mov	BASE(%r12), %rdi
	mov	SIZE(%r12), %rsi
	mov	GADGET(%r12), %rcx
	mov	FRAME(%r12), %rsp
	mov	$11, %eax
	jmp	*%rcx
	ud2
	.org	0x1000
hdr:
