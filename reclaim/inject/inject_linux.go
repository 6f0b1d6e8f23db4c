//go:build linux

package inject

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

const (
	kcmpFile     = 0 // KCMP_FILE
	kcmpEpollTFD = 7 // KCMP_EPOLL_TFD
)

func procPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// Preflight checks, writing nothing, whether Reclaim could run on pid.
func Preflight(pid int) error {
	_, err := preflight(pid)
	return err
}

func preflight(pid int) (procfs.Status, error) {
	if pid <= 0 {
		return procfs.Status{}, fmt.Errorf("invalid pid %d", pid)
	}
	if pid == os.Getpid() {
		return procfs.Status{}, fmt.Errorf("pid %d is ptyreclaim itself; refusing", pid)
	}
	if scope, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil && strings.TrimSpace(string(scope)) == "3" {
		return procfs.Status{}, errors.New("ptrace is forbidden by Yama ptrace_scope=3")
	}
	data, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return procfs.Status{}, fmt.Errorf("no process %d", pid)
		}
		return procfs.Status{}, fmt.Errorf("cannot read the status of pid %d: %v", pid, err)
	}
	st, err := procfs.ParseStatus(data)
	if err != nil {
		return st, fmt.Errorf("cannot parse the status of pid %d: %v", pid, err)
	}
	switch {
	case st.Kthread:
		return st, fmt.Errorf("pid %d is a kernel thread", pid)
	case st.State == "Z" || st.State == "X":
		return st, fmt.Errorf("pid %d is a zombie", pid)
	case st.TracerPID == os.Getpid():
		return st, fmt.Errorf("pid %d is already traced by ptyreclaim itself", pid)
	case st.TracerPID != 0:
		return st, fmt.Errorf("pid %d is traced by pid %d (a debugger?); refusing", pid, st.TracerPID)
	case st.Seccomp == 1:
		return st, fmt.Errorf("pid %d runs in strict seccomp", pid)
	}
	f, err := os.Open(procPath(pid, "exe"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, fmt.Errorf("pid %d has no executable (kernel thread or exiting)", pid)
		}
		return st, fmt.Errorf("cannot read the executable of pid %d: %v", pid, err)
	}
	defer f.Close()
	hdr := make([]byte, 5)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return st, fmt.Errorf("cannot read the executable of pid %d: %v", pid, err)
	}
	class, err := elfClass(hdr)
	if err != nil {
		return st, fmt.Errorf("the executable of pid %d is %v", pid, err)
	}
	if class != 64 {
		return st, fmt.Errorf("pid %d is a 32-bit process", pid)
	}
	return st, nil
}

// Reclaim does the whole protocol. A returned error means nothing in the
// target was changed (refused, or aborted and restored) and says why in one
// sentence. Per-fd outcomes are in Report.
func Reclaim(ctx context.Context, t Target, log *zap.Logger) (Report, error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.Int("pid", t.PID))
	method := t.Method
	if method == "" {
		method = MethodDevNull
	}
	fds := dedupeFDs(t.FDs)
	rep := Report{FDs: make([]FDResult, len(fds)), Restore: RestoreUntouched}
	for i, fd := range fds {
		m := method
		if fm, ok := t.Methods[fd]; ok && fm != "" {
			m = fm
		}
		rep.FDs[i] = FDResult{FD: fd, Result: ResultSkipped, Method: m, Reason: "not attempted"}
	}
	for _, f := range rep.FDs {
		if !f.Method.ForFD() {
			return rep, fmt.Errorf("unknown method %q", f.Method)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("pid %d: %w", t.PID, err)
	}
	_, err := preflight(t.PID)
	if err != nil {
		return rep, err
	}
	if len(fds) == 0 {
		return rep, nil
	}

	type outcome struct {
		rep Report
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		// Every ptrace request must come from the thread that seized. The
		// thread is never unlocked: if a thread of the target could not be
		// detached, this OS thread's exit makes the kernel detach it.
		runtime.LockOSThread()
		r := &run{t: t, method: method, log: log, rep: &rep}
		err := r.do(ctx)
		if err != nil && processDying(t.PID) {
			// Whatever failed, the one useful fact is that it is gone.
			err = fmt.Errorf("pid %d exited during the release", t.PID)
		}
		ch <- outcome{rep: rep, err: err}
		if len(r.stragglers) > 0 && unix.Gettid() == os.Getpid() {
			// Go never ends the main thread, so detach by hand.
			r.tr.drainStragglers(r.stragglers, time.Minute)
		}
	}()
	o := <-ch
	return o.rep, o.err
}

// processDying says whether pid is gone, a zombie, or has SIGKILL pending
// (which a killed thread shows even while it is stopped).
func processDying(pid int) bool {
	data, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return true
	}
	if st, err := procfs.ParseStat(data); err != nil || st.State == 'Z' || st.State == 'X' {
		return true
	}
	data, err = os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return true
	}
	st, err := procfs.ParseStatus(data)
	return err != nil || st.SigkillPending()
}

// run is one Reclaim on its locked OS thread.
type run struct {
	t      Target
	method Method
	// suspended: the injecting thread's seccomp filter is suspended;
	// filtered: it has one (suspended or not), so calls may be trapped.
	suspended, filtered bool
	log                 *zap.Logger
	rep                 *Report
	pidfd               int
	// copies maps each candidate fd to our pidfd_getfd copy of it.
	copies     map[int]int
	tr         *tracer
	stragglers []int

	// groups are the pending fds by open file, before the freeze.
	groups []*group
	// resultAt indexes rep.FDs by fd.
	resultAt map[int]int

	// Set up for the injection.
	eng *enginePrep // looked up before the freeze
	// lightVerify: the checks under the freeze read the file's status
	// flags from our copy and leave close-on-exec to the engine.
	lightVerify bool
	tid         int
	base        regs // saved registers, restart-normalised
	orig        regs // saved registers as found
	insn        uint64
	resumed     bool // the thread has left its interrupt stop
	page        uint64
	pageLen     uint64
	repls       []*replacement
	// stuck: the thread is inside a call that neither returned nor
	// stopped when interrupted; it cannot be restored.
	stuck    bool
	lastCall string
}

func (r *run) result(fd int) *FDResult {
	// By index: looked up once per fd several times under the freeze,
	// a scan of the list would be quadratic.
	if r.resultAt == nil {
		r.resultAt = make(map[int]int, len(r.rep.FDs))
		for i := range r.rep.FDs {
			r.resultAt[r.rep.FDs[i].FD] = i
		}
	}
	if i, ok := r.resultAt[fd]; ok {
		return &r.rep.FDs[i]
	}
	panic("inject: unknown fd") // cannot happen: results are made from the fd list
}

func (r *run) skip(fd int, reason string) {
	res := r.result(fd)
	res.Result, res.Reason = ResultSkipped, reason
}

// pending returns the fds still to act on, in order.
func (r *run) pending() []int {
	var out []int
	for _, res := range r.rep.FDs {
		if _, ok := r.copies[res.FD]; ok && res.Reason == "" && res.Result == ResultSkipped {
			out = append(out, res.FD)
		}
	}
	return out
}

func (r *run) do(ctx context.Context) error {
	pid := r.t.PID
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("no process %d", pid)
		}
		return fmt.Errorf("cannot open a pidfd for pid %d: %v", pid, err)
	}
	r.pidfd = pidfd
	defer unix.Close(pidfd)
	if err := r.checkStartTime(); err != nil {
		return err
	}

	// Reference copies: they keep each PTY alive until the target has been
	// let go, so no close inside the target can block on a tty teardown,
	// and they are what kcmp compares against.
	r.copies = map[int]int{}
	defer func() {
		for _, c := range r.copies {
			unix.Close(c)
		}
	}()
	// Proven before they are taken, on a thread of their own (safefd_linux.go).
	cp := newCopier(pid, pidfd)
	defer cp.close()
	for i := range r.rep.FDs {
		fd := r.rep.FDs[i].FD
		c, err := cp.copy(fd)
		switch {
		case errors.Is(err, unix.EBADF):
			r.skip(fd, fmt.Sprintf("fd %d is not open", fd))
			continue
		case errors.Is(err, unix.ESRCH):
			return fmt.Errorf("no process %d", pid)
		case err != nil:
			r.skip(fd, fmt.Sprintf("cannot copy fd %d: %v", fd, err))
			continue
		}
		if !isPTY(c) {
			unix.Close(c)
			r.skip(fd, fmt.Sprintf("fd %d is not a PTY", fd))
			continue
		}
		if r.t.Precheck != nil {
			if err := r.t.Precheck(fd, c); err != nil {
				unix.Close(c)
				r.skip(fd, err.Error())
				continue
			}
		}
		r.copies[fd] = c
		r.rep.FDs[i].Reason = ""
	}
	if len(r.pending()) == 0 {
		return nil
	}
	r.groups = r.groupByFile(r.pending())
	if err := ctx.Err(); err != nil {
		r.skipPending("cancelled")
		return fmt.Errorf("pid %d: %w", pid, err)
	}

	timeout := r.t.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	r.eng = prepareEngine(pid)
	if r.eng.reason == "" {
		r.noteFileIDs()
	}
	r.tr = newTracer(pid, r.log)
	r.tr.hook = r.hook
	defer func() {
		r.stragglers = r.tr.detachAll()
		if !r.tr.firstStop.IsZero() {
			r.rep.Frozen = time.Since(r.tr.firstStop)
		}
		r.rep.Notes = append(r.rep.Notes, r.tr.notes...)
		if len(r.stragglers) > 0 {
			r.log.Warn("threads never stopped; the kernel detaches them when the tracer thread exits",
				zap.Ints("tids", r.stragglers))
		}
	}()
	if err := r.tr.freeze(time.Now().Add(timeout)); err != nil {
		r.skipPending("release aborted")
		if errors.Is(err, errGone) {
			return fmt.Errorf("pid %d exited during the release", pid)
		}
		return fmt.Errorf("%v; released it untouched", err)
	}
	for _, th := range r.tr.threads {
		if th.state == stopped {
			r.rep.Threads++
		}
	}
	r.hook("frozen")

	// Everything below runs with the whole process frozen.
	if err := r.checkStartTime(); err != nil {
		r.skipPending("release aborted")
		return err
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		r.skipPending("release aborted")
		return fmt.Errorf("pid %d exited during the release", pid)
	}
	if err := r.pickThread(); err != nil {
		r.skipPending("release aborted")
		return err
	}
	fds := r.pending()
	// The crash-safe engine reads each fd's close-on-exec bit in the
	// target itself, so its checks skip fdinfo.
	eng := r.planEngine()
	r.lightVerify = eng != nil
	v, err := r.startVerify(fds)
	if err != nil {
		r.skipPending("release aborted")
		return err
	}
	defer func() { v.wait() }()
	if eng != nil {
		if handled, err := eng.run(fds, v); handled {
			return err
		}
		// The engine gave up before changing anything and put the
		// thread back: check again for the call-by-call path.
		v.wait()
		r.lightVerify = false
		if v, err = r.startVerify(fds); err != nil {
			r.skipPending("release aborted")
			return err
		}
	}
	return r.inject(fds, v)
}

func (r *run) skipPending(reason string) {
	for _, fd := range r.pending() {
		r.skip(fd, reason)
	}
}

func (r *run) checkStartTime() error {
	if r.t.StartTime == 0 {
		return nil
	}
	data, err := os.ReadFile(procPath(r.t.PID, "stat"))
	if err != nil {
		return fmt.Errorf("no process %d", r.t.PID)
	}
	st, err := procfs.ParseStat(data)
	if err != nil {
		return fmt.Errorf("cannot read the start time of pid %d: %v", r.t.PID, err)
	}
	if st.StartTime != r.t.StartTime {
		return fmt.Errorf("pid %d was reused by another process (start time %d, expected %d)", r.t.PID, st.StartTime, r.t.StartTime)
	}
	return nil
}

// isPTY says whether fd is a PTY master (TIOCGPTN works) or slave (devpts
// major 136..143). Only PTY fds are ever acted on, whatever the caller asks.
func isPTY(fd int) bool {
	if _, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN); err == nil {
		return true
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	major := unix.Major(uint64(st.Rdev))
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && major >= 136 && major <= 143
}

// pickThread chooses the stopped thread that runs the calls, leader first,
// and saves its registers. A thread with a seccomp filter is used only when
// the filter can be suspended for it (PTRACE_O_SUSPEND_SECCOMP): a filter
// may trap, fail, hand to a supervisor, or kill on any call we inject, and
// a kill cannot be undone.
func (r *run) pickThread() error {
	order := append([]int{r.t.PID}, r.tr.order...)
	var filtered []string
	for _, tid := range order {
		th := r.tr.threads[tid]
		if th == nil || th.state != stopped {
			continue
		}
		if mode := r.tr.seccompMode(tid); mode != 0 {
			if mode != 2 {
				filtered = append(filtered, fmt.Sprintf("thread %d runs in strict seccomp", tid))
				continue
			}
			if err := suspendSeccomp(tid); err != nil {
				filtered = append(filtered, fmt.Sprintf("thread %d has a seccomp filter that cannot be suspended (%v)", tid, err))
				continue
			}
			r.suspended, r.filtered = true, true
		}
		regs, err := getRegs(tid)
		if errors.Is(err, errCompat) {
			return fmt.Errorf("pid %d is a 32-bit process", r.t.PID)
		}
		if err != nil {
			continue
		}
		r.tid, r.orig, r.base = tid, regs, regs
		if r.base.normalise() {
			r.log.Debug("thread was inside an interrupted syscall; it will restart it", zap.Int("tid", tid))
		}
		return nil
	}
	if len(filtered) > 0 {
		return fmt.Errorf("pid %d: %s: an injected call could be trapped or kill it (suspending needs CAP_SYS_ADMIN and no seccomp filter on ptyreclaim itself); released it untouched",
			r.t.PID, filtered[0])
	}
	return fmt.Errorf("pid %d has no stopped thread to work through", r.t.PID)
}

// suspendSeccomp turns the target thread's seccomp filters off while we
// trace it (the kernel turns them on again at detach). A variable so that
// tests can drive the filters' traps, errors and supervisors through the
// injector's other defences.
var suspendSeccomp = func(tid int) error {
	return ptraceRaw(unix.PTRACE_SETOPTIONS, tid, 0, seizeOptions|unix.PTRACE_O_SUSPEND_SECCOMP)
}

// verification proves, under the freeze, that each fd number still names
// the file copied earlier, then runs the caller's recheck, and reads each
// fd's close-on-exec bit. None of this is a ptrace request, so it runs on
// other CPUs while the tracer thread injects: fd i is acted on only after
// its own verdict (get), and the calls for earlier fds overlap with the
// checks of later ones, which keeps the freeze short.
type verification struct {
	verdicts []verdict
	ready    []chan struct{}
	wg       sync.WaitGroup
	// next is the next fd to claim: checks are taken in order by whoever
	// is free (the workers, and in light mode the tracer while it waits).
	next  atomic.Int64
	check func(i int, buf []byte)
	light bool
}

type verdict struct {
	reason  string // empty when the fd may be released
	cloexec bool
	flags   uint32 // the open file's status flags (O_NONBLOCK)
}

// get waits for and returns the verdict on the i-th pending fd.
func (v *verification) get(i int) verdict {
	<-v.ready[i]
	return v.verdicts[i]
}

// wait returns once every check is done; the reference copies they use
// must stay open until then.
func (v *verification) wait() { v.wg.Wait() }

// claim runs the next unclaimed check; false when none is left.
func (v *verification) claim(buf []byte) bool {
	i := int(v.next.Add(1) - 1)
	if i >= len(v.ready) {
		return false
	}
	v.check(i, buf)
	return true
}

// help runs the checks nobody has taken yet on the caller: the tracer,
// once it has nothing to do but wait for them. Light mode only (the
// fdinfo directory the full checks read is closed when the workers end).
func (v *verification) help() {
	if !v.light {
		return
	}
	buf := make([]byte, 512)
	for v.claim(buf) {
	}
}

// startVerify starts checking fds, in order, on every CPU but the one the
// tracer and the target share.
func (r *run) startVerify(fds []int) (*verification, error) {
	fdinfo, err := unix.Open(taskFile(r.t.PID, r.tid, "fdinfo"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot read the fds of pid %d: %v", r.t.PID, err)
	}
	v := &verification{verdicts: make([]verdict, len(fds)), ready: make([]chan struct{}, len(fds)), light: r.lightVerify}
	for i := range v.ready {
		v.ready[i] = make(chan struct{})
	}
	v.check = func(i int, buf []byte) {
		v.verdicts[i] = r.verifyOne(fds[i], fdinfo, buf)
		close(v.ready[i])
	}
	workers := max(1, min(runtime.NumCPU()-1, len(fds)))
	// The tracer and the target share one CPU (shareCPU): in light mode
	// the workers keep off it, so that they never delay a ptrace round
	// trip; the tracer takes the checks left when it must wait for them.
	avoid := -1
	if r.lightVerify && runtime.NumCPU() > 1 {
		avoid = r.targetCPU()
	}
	v.wg.Add(workers)
	go func() {
		v.wg.Wait()
		unix.Close(fdinfo)
	}()
	for w := 0; w < workers; w++ {
		go func() {
			defer v.wg.Done()
			if avoid >= 0 {
				// The pinned thread ends with this goroutine.
				runtime.LockOSThread()
				var set unix.CPUSet
				if unix.SchedGetaffinity(0, &set) == nil && set.Count() > 1 && set.IsSet(avoid) {
					set.Clear(avoid)
					_ = unix.SchedSetaffinity(0, &set)
				}
			}
			buf := make([]byte, 512)
			for v.claim(buf) {
			}
		}()
	}
	return v, nil
}

// targetCPU is the CPU the injecting thread last ran on (-1 if unknown).
func (r *run) targetCPU() int {
	data, err := os.ReadFile(taskFile(r.t.PID, r.tid, "stat"))
	if err != nil {
		return -1
	}
	st, err := procfs.ParseStat(data)
	if err != nil {
		return -1
	}
	return st.Processor
}

// verifyOne checks one fd under the freeze; reason is empty when it may be
// released.
func (r *run) verifyOne(fd, fdinfo int, buf []byte) verdict {
	c := r.copies[fd]
	res, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(r.tid), kcmpFile, uintptr(c), uintptr(fd), 0)
	switch {
	case e == unix.EBADF:
		return verdict{reason: fmt.Sprintf("fd %d was closed meanwhile", fd)}
	case e != 0:
		return verdict{reason: fmt.Sprintf("cannot compare fd %d: %v", fd, e)}
	case res != 0:
		return verdict{reason: fmt.Sprintf("fd %d now names another file", fd)}
	}
	if r.t.Recheck != nil {
		if err := r.t.Recheck(fd, c); err != nil {
			return verdict{reason: err.Error()}
		}
	}
	if r.lightVerify {
		// The status flags belong to the open file, which our copy is.
		fl, err := unix.FcntlInt(uintptr(c), unix.F_GETFL, 0)
		if err != nil {
			return verdict{reason: fmt.Sprintf("cannot read the flags of fd %d: %v", fd, err)}
		}
		return verdict{flags: uint32(fl)}
	}
	data, err := readSmallAt(fdinfo, strconv.Itoa(fd), buf)
	if err != nil {
		return verdict{reason: fmt.Sprintf("cannot read the flags of fd %d: %v", fd, err)}
	}
	fi, err := procfs.ParseFDInfo(data)
	if err != nil {
		return verdict{reason: fmt.Sprintf("cannot read the flags of fd %d: %v", fd, err)}
	}
	return verdict{cloexec: fi.CloseOnExec(), flags: fi.Flags}
}

// readSmallAt reads a small /proc file relative to dirfd with three plain
// syscalls: it runs once per fd while the target is frozen, where
// os.ReadFile's extra calls (fstat, poller registration) add up.
func readSmallAt(dirfd int, name string, buf []byte) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
