# The batch routine the crash-safe engine runs inside a target (x86-64).
# Its bytes are routineAMD64 in frame_x86.go; TestRoutineBytesMatchSource
# assembles this file and compares. Page 0 is code (made R-X), page 1 the
# header the tracer fills and reads, then the call table: 64-byte entries
# {nr | indirect-arg mask << 32, six args, result}. An indirect arg is
# replaced by the int32 it points at; a negative one skips the call with
# -EBADF. After the last call: done = 1, pselect6 for "timeout" (the
# tracer interrupts it when alive), then rt_sigreturn with rsp = "frame".
	.text
	.globl _start
_start:
	lea	table(%rip), %rbx
	mov	count(%rip), %r12
	xor	%r13d, %r13d
next:
	cmp	%r12, %r13
	jae	finish
	mov	%r13, progress(%rip)
	mov	(%rbx), %rax
	mov	%rax, %r14
	shr	$32, %r14
	mov	%eax, %eax
	mov	8(%rbx), %rdi
	mov	16(%rbx), %rsi
	mov	24(%rbx), %rdx
	mov	32(%rbx), %r10
	mov	40(%rbx), %r8
	mov	48(%rbx), %r9
	test	$1, %r14b
	jz	1f
	movslq	(%rdi), %rdi
	test	%rdi, %rdi
	js	skip
1:	test	$2, %r14b
	jz	2f
	movslq	(%rsi), %rsi
	test	%rsi, %rsi
	js	skip
2:	test	$4, %r14b
	jz	3f
	movslq	(%rdx), %rdx
	test	%rdx, %rdx
	js	skip
3:	test	$8, %r14b
	jz	4f
	movslq	(%r10), %r10
	test	%r10, %r10
	js	skip
4:	test	$16, %r14b
	jz	5f
	movslq	(%r8), %r8
	test	%r8, %r8
	js	skip
5:	test	$32, %r14b
	jz	6f
	movslq	(%r9), %r9
	test	%r9, %r9
	js	skip
6:	syscall
store:
	mov	%rax, 56(%rbx)
	add	$64, %rbx
	inc	%r13
	jmp	next
skip:
	mov	$-9, %rax
	jmp	store
finish:
	mov	%r13, progress(%rip)
	movq	$1, done(%rip)
	mov	$270, %eax
	xor	%edi, %edi
	xor	%esi, %esi
	xor	%edx, %edx
	xor	%r10d, %r10d
	lea	timeout(%rip), %r8
	xor	%r9d, %r9d
	syscall
	mov	frame(%rip), %rsp
	mov	$15, %eax
	syscall
	ud2
codeEnd:
	.org 0x1000
done:	.quad 0
progress: .quad 0
count:	.quad 0
timeout: .quad 0, 0
frame:	.quad 0
	.org 0x1040
table:
