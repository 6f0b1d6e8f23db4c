//go:build linux

package inject

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// group is the pending fds of the target that share one open file (dups of
// one PTY master, say). They get one method and one replacement, and the
// file's epoll registrations move with them.
type group struct {
	method Method
	// idx are the fds' positions in the pending list (for their verdicts).
	idx []int
	fds []int
	// regs are the old file's epoll registrations in the target, read and
	// proven (kcmp KCMP_EPOLL_TFD) under the freeze.
	regs []epollReg
	// skip, when set, is why the group is left alone.
	skip string
	// note is a remark for the fds' results (a fallback, a failed call).
	note string
	// repl is the replacement every fd of the group gets.
	repl *replacement
	// deleted: the old registrations were removed; added: the replacement's
	// were made (both count calls that returned success).
	deleted, added int
	// rank is the open file's place in kcmp's order of all the groups'
	// files; id is its device (kernel encoding) and inode, as epoll fdinfo
	// lists them (set for the crash-safe engine, before the freeze).
	rank int
	id   fileID
}

// fileID is a file's device and inode as epoll's fdinfo shows them.
type fileID struct{ dev, ino uint64 }

// replacement is one object created in the target for one method: every
// group with that method (and the same O_NONBLOCK) shares it.
type replacement struct {
	method   Method
	nonblock bool
	tmp      int // its fd in the target, closed after the dup3s
	peer     int // quiet: the socket's other end, kept in the target
	copy     int // our pidfd_getfd copy, for kcmp after the calls
	link     string
	// id, when set, is the replacement's device and inode: a fresh pipe
	// (its write end closed) or socket, so no other open file has it, and
	// epoll's fdinfo proves a registration is the replacement's without a
	// kcmp (whose kernel side walks the whole epoll set).
	id fileID
}

// groupByFile groups fds by open file, on our reference copies, before the
// freeze (the freeze proves each fd is still its copy). kcmp orders files,
// so sorting costs n log n comparisons.
func (r *run) groupByFile(fds []int) []*group {
	pos := make(map[int]int, len(fds))
	for i, fd := range fds {
		pos[fd] = i
	}
	sorted := append([]int(nil), fds...)
	self := os.Getpid()
	cmp := func(a, b int) int {
		res, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(self), uintptr(self), kcmpFile, uintptr(r.copies[a]), uintptr(r.copies[b]), 0)
		if e != 0 {
			return 3
		}
		return int(res)
	}
	sort.SliceStable(sorted, func(i, j int) bool { return cmp(sorted[i], sorted[j]) == 1 })
	var out []*group
	for i, fd := range sorted {
		if i > 0 && cmp(sorted[i-1], fd) == 0 {
			g := out[len(out)-1]
			g.fds = append(g.fds, fd)
			g.idx = append(g.idx, pos[fd])
			continue
		}
		out = append(out, &group{method: r.result(fd).Method, fds: []int{fd}, idx: []int{pos[fd]}, rank: len(out)})
	}
	for _, g := range out {
		sort.Sort(&byIdx{g})
		for _, fd := range g.fds[1:] {
			if m := r.result(fd).Method; m != g.method {
				g.skip = fmt.Sprintf("fds %v share one open file but were given methods %s and %s", g.fds, g.method, m)
			}
		}
	}
	// Act in the order of the pending list, so that verdicts arrive in
	// the order they are needed.
	sort.Slice(out, func(i, j int) bool { return out[i].idx[0] < out[j].idx[0] })
	return out
}

type byIdx struct{ g *group }

func (b *byIdx) Len() int           { return len(b.g.fds) }
func (b *byIdx) Less(i, j int) bool { return b.g.idx[i] < b.g.idx[j] }
func (b *byIdx) Swap(i, j int) {
	b.g.fds[i], b.g.fds[j] = b.g.fds[j], b.g.fds[i]
	b.g.idx[i], b.g.idx[j] = b.g.idx[j], b.g.idx[i]
}

// epollFDs lists the target's epoll fds, under the freeze.
func (r *run) epollFDs() ([]int, error) {
	dir := procPath(r.t.PID, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(dir + "/" + e.Name()); err == nil && link == "anon_inode:[eventpoll]" {
			out = append(out, fd)
		}
	}
	return out, nil
}

// epollHas reports whether the file registered in the target's epoll efd
// under tfd (the toff-th such entry) is the open file of our fd ours.
func (r *run) epollHas(ours, efd, tfd, toff int) bool {
	slot := struct{ efd, tfd, toff uint32 }{uint32(efd), uint32(tfd), uint32(toff)}
	res, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(r.t.PID), kcmpEpollTFD,
		uintptr(ours), uintptr(unsafe.Pointer(&slot)), 0)
	runtime.KeepAlive(&slot)
	return e == 0 && res == 0
}

// readEpoll reads every registration of every epoll fd of the target.
func (r *run) readEpoll() (map[int][]epollReg, error) {
	efds, err := r.epollFDs()
	if err != nil {
		return nil, fmt.Errorf("cannot list the fds of pid %d: %v", r.t.PID, err)
	}
	return r.readEpollSets(efds)
}

// readEpollSets reads every registration of the target's epoll fds efds.
func (r *run) readEpollSets(efds []int) (map[int][]epollReg, error) {
	out := make(map[int][]epollReg, len(efds))
	for _, efd := range efds {
		data, err := os.ReadFile(procPath(r.t.PID, "fdinfo/"+strconv.Itoa(efd)))
		if err != nil {
			return nil, fmt.Errorf("cannot read epoll fd %d of pid %d: %v", efd, r.t.PID, err)
		}
		regs, err := parseEpollRegs(efd, data)
		if err != nil {
			return nil, fmt.Errorf("epoll fd %d of pid %d: %v", efd, r.t.PID, err)
		}
		out[efd] = regs
	}
	return out, nil
}

// assignEpoll gives each group the registrations of its old file, proven
// with kcmp. A registration under an fd number that no longer names the
// file (the program dup'ed and closed) cannot be removed by epoll_ctl, and
// would deliver the PTY's hang-up as a stale event: such a group is left
// alone. So is a devnull or close group whose file is registered: the loop
// would fail on its next epoll_ctl (libuv aborts).
func (r *run) assignEpoll(sets map[int][]epollReg) {
	byFD := map[int]*group{}
	for _, g := range r.groups {
		for _, fd := range g.fds {
			byFD[fd] = g
		}
	}
	efds := make([]int, 0, len(sets))
	for efd := range sets {
		efds = append(efds, efd)
	}
	sort.Ints(efds)
	for _, efd := range efds {
		toff := map[int]int{}
		for _, e := range sets[efd] {
			off := toff[e.tfd]
			toff[e.tfd]++
			if g := byFD[e.tfd]; g != nil && r.epollHas(r.copies[e.tfd], efd, e.tfd, off) {
				if off != 0 {
					g.skip = fmt.Sprintf("registered twice in epoll fd %d under fd %d", efd, e.tfd)
				}
				g.regs = append(g.regs, e)
				continue
			}
			// Registered under a number that is not one of the group's
			// fds, or under one of them that now names another file.
			for _, g := range r.groups {
				if r.epollHas(r.copies[g.fds[0]], efd, e.tfd, off) {
					g.skip = fmt.Sprintf("registered in epoll fd %d under fd %d, which no longer names it: the registration cannot be moved", efd, e.tfd)
				}
			}
		}
	}
	for _, g := range r.groups {
		if len(g.regs) > 0 && !g.method.Pollable() && g.skip == "" && refuseUnpollable {
			g.skip = fmt.Sprintf("registered in epoll fd %d: method %s cannot be polled, its event loop would fail (use hangup or quiet)", g.regs[0].efd, g.method)
		}
	}
}

// budgetHiddenEnds keeps the target below its fd limit: every hangup or
// quiet group keeps one hidden socket end in the target. When they do not
// fit (hiddenEndsRoom), unwatched groups get devnull instead, which costs
// nothing; if the watched ones alone still do not fit, nothing is
// released (a PTY is released whole or not at all).
func (r *run) budgetHiddenEnds() {
	var pollable []*group
	for _, g := range r.groups {
		if g.skip == "" && g.method.Pollable() {
			pollable = append(pollable, g)
		}
	}
	if len(pollable) == 0 {
		return
	}
	ents, err := os.ReadDir(procPath(r.t.PID, "fd"))
	limits, lerr := os.ReadFile(procPath(r.t.PID, "limits"))
	soft, perr := parseNofileSoft(limits)
	if err != nil || lerr != nil || perr != nil {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("the fd limit of pid %d could not be read: the hidden socket ends were not budgeted", r.t.PID))
		return
	}
	room := hiddenEndsRoom(len(ents), soft)
	need := len(pollable)
	for _, g := range pollable {
		if need <= max(room, 0) {
			return
		}
		if len(g.regs) == 0 {
			g.note = fmt.Sprintf("devnull instead of %s: pid %d has %d of its %d fds open, too few left for the socket's hidden end", g.method, r.t.PID, len(ents), soft)
			g.method = MethodDevNull
			need--
		}
	}
	if need <= max(room, 0) {
		return
	}
	for _, g := range r.groups {
		if g.skip == "" {
			g.skip = fmt.Sprintf("pid %d has %d of its %d fds open: the hidden ends of %d hangup or quiet sockets would leave it too few", r.t.PID, len(ents), soft, need)
		}
	}
}

// refuseUnpollable is false only in the test that measures what devnull
// and close do to event loops, the harm this refusal prevents.
var refuseUnpollable = true

// makeReplacement creates the object for method m in the target and takes
// our copy of it. page is the scratch page: its second half receives the
// two fds of socketpair.
func (r *run) makeReplacement(m Method, nonblock bool, page uint64) (*replacement, error) {
	rp, err := r.newReplacement(m, nonblock, page)
	if err != nil && rp != nil && rp.peer >= 0 && !r.stuck && !errors.Is(err, errGone) {
		// A replacement that will not be used keeps no hidden end.
		if _, errno, cerr := r.call("close", hostABI.close, uint64(rp.peer)); cerr == nil && errno == 0 {
			rp.peer = -1
		}
	}
	return rp, err
}

func (r *run) newReplacement(m Method, nonblock bool, page uint64) (*replacement, error) {
	a := hostABI
	var flags uint64 = oCLOEXEC
	if nonblock {
		flags |= oNONBLOCK
	}
	out := page + 64
	rp := &replacement{method: m, nonblock: nonblock, tmp: -1, peer: -1, copy: -1}
	var errno int
	var err error
	if m != MethodDevNull {
		// -1 -1: a call that did nothing leaves no fd number to trust.
		if _, err := unix.PtracePokeData(r.tid, uintptr(out), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); err != nil {
			return nil, fmt.Errorf("cannot write into pid %d: %v", r.t.PID, err)
		}
	}
	switch m {
	case MethodDevNull:
		var v uint64
		v, errno, err = r.call("openat", a.openat, atFDCWD, page, oRDWR|oCLOEXEC, 0)
		rp.tmp = int(v)
	case MethodHangup, MethodQuiet:
		_, errno, err = r.call("socketpair", a.socketpair, afUNIX, sockSTREAM|flags, 0, out)
	}
	if err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, &callError{name: string(m), errno: unix.Errno(errno)}
	}
	if m != MethodDevNull {
		var pair [8]byte
		if _, err := unix.PtracePeekData(r.tid, uintptr(out), pair[:]); err != nil {
			return nil, fmt.Errorf("cannot read the new fds in pid %d: %v", r.t.PID, err)
		}
		rp.tmp = int(int32(uint32(pair[0]) | uint32(pair[1])<<8 | uint32(pair[2])<<16 | uint32(pair[3])<<24))
		other := int(int32(uint32(pair[4]) | uint32(pair[5])<<8 | uint32(pair[6])<<16 | uint32(pair[7])<<24))
		if rp.tmp < 0 || other < 0 || rp.tmp == other {
			rp.tmp = -1
			return nil, &callError{name: string(m), errno: unix.EBADF}
		}
		// The other end stays, hidden, in the target: while it lives,
		// writes are accepted and never raise SIGPIPE.
		rp.peer = other
		if m == MethodHangup {
			// Nothing will ever be read: reads say EOF and poll says
			// readable and RDHUP, like a terminal that hung up. (A pipe
			// without a writer would poll POLLHUP too, but fail writes
			// with EBADF, which node-pty throws as an uncaught error; a
			// hung-up PTY master accepts writes.)
			if _, errno, err := r.call("shutdown", a.shutdown, uint64(rp.tmp), shutRD); err != nil {
				return rp, err
			} else if errno != 0 {
				return rp, &callError{name: "shutdown", errno: unix.Errno(errno)}
			}
		}
	}
	c, link, err := copyReplacement(r.t.PID, r.pidfd, rp.tmp, m)
	rp.link = link
	if err != nil {
		// Not what we opened (a mount changed under us): closing it in
		// the target could wait on a user's server with the target held,
		// so it stays open there, and the release ends untouched.
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("left the new fd %d (%q) open in pid %d: it is not a replacement we can trust, and closing it could wait on a user's file system server", rp.tmp, link, r.t.PID))
		tmp := rp.tmp
		rp.tmp = -1
		return rp, fmt.Errorf("the new fd %d of pid %d: %v", tmp, r.t.PID, err)
	}
	rp.copy = c
	return rp, nil
}

// misbehaves checks on our copy that the replacement behaves as its method
// says: a hang-up socket reads as shut down and still accepts writes (its
// other end lives), a quiet one is not readable and accepts writes.
func (rp *replacement) misbehaves() string {
	p := []unix.PollFd{{Fd: int32(rp.copy), Events: unix.POLLIN | unix.POLLOUT | unix.POLLRDHUP}}
	if _, err := unix.Poll(p, 0); err != nil {
		return fmt.Sprintf("cannot poll the replacement: %v", err)
	}
	rev := p[0].Revents
	switch {
	case rev&(unix.POLLHUP|unix.POLLERR) != 0:
		return fmt.Sprintf("the replacement socket has lost its other end (poll %#x)", rev)
	case rp.method == MethodHangup && rev&unix.POLLRDHUP == 0:
		return fmt.Sprintf("the replacement socket does not read as hung up (poll %#x)", rev)
	case rp.method == MethodQuiet && rev&(unix.POLLIN|unix.POLLRDHUP) != 0:
		return fmt.Sprintf("the replacement socket is not quiet (poll %#x)", rev)
	}
	return ""
}

// callError is an injected call that returned an errno.
type callError struct {
	name  string
	errno unix.Errno
}

func (e *callError) Error() string {
	return fmt.Sprintf("%s in the target failed: %v", e.name, e.errno)
}

// devNullUsable says whether opening /dev/null in the target can be done
// without crossing a FUSE mount (a user's server could hold the call, and
// the thread, for ever).
func (r *run) devNullUsable() error {
	data, err := os.ReadFile(procPath(r.t.PID, "mountinfo"))
	if err != nil {
		return fmt.Errorf("cannot read the mounts of pid %d: %v", r.t.PID, err)
	}
	if fuseOnPath(data, "/dev/null") {
		return errors.New("/dev/null in the target's mount namespace is on or under a FUSE mount")
	}
	return nil
}

// verifyAfter decides every acted-on fd's outcome from the kernel's view
// after the calls, still under the freeze: the fd is gone (close) or is our
// replacement (kcmp with our copy), and the replacement holds exactly the
// planned epoll registrations while the old file holds none. The return
// registers only said what was attempted.
func (r *run) verifyAfter(acted []*group) {
	self := os.Getpid()
	after := map[int][]epollReg{}
	for _, g := range acted {
		for _, e := range g.regs {
			if _, ok := after[e.efd]; ok {
				continue
			}
			data, err := os.ReadFile(procPath(r.t.PID, "fdinfo/"+strconv.Itoa(e.efd)))
			if err == nil {
				after[e.efd], _ = parseEpollRegs(e.efd, data)
			}
		}
	}
	// One or two kcmp per fd: spread over every CPU, the target is
	// stopped.
	type job struct {
		g  *group
		fd int
	}
	var jobs []job
	for _, g := range acted {
		for _, fd := range g.fds {
			jobs = append(jobs, job{g, fd})
		}
	}
	fdProblems := make([]string, len(jobs))
	check := func(i int) {
		g, fd := jobs[i].g, jobs[i].fd
		kcmpWith := func(c int) (uintptr, unix.Errno) {
			res, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(self), uintptr(r.tid), kcmpFile, uintptr(c), uintptr(fd), 0)
			return res, e
		}
		if g.method != MethodClose && g.repl != nil && g.repl.copy >= 0 {
			if res, e := kcmpWith(g.repl.copy); e == 0 && res == 0 {
				return // the replacement, so not the PTY
			}
		}
		res, e := kcmpWith(r.copies[fd])
		stillOld := e == 0 && res == 0
		switch {
		case g.method == MethodClose:
			if e != unix.EBADF {
				fdProblems[i] = fmt.Sprintf("fd %d is still open", fd)
			}
		case stillOld:
			fdProblems[i] = fmt.Sprintf("fd %d still names the PTY", fd)
		case g.repl == nil || g.repl.copy < 0:
			fdProblems[i] = fmt.Sprintf("fd %d: no replacement to compare with", fd)
		default:
			fdProblems[i] = fmt.Sprintf("fd %d is not the planned %s replacement", fd, g.method)
		}
	}
	workers := max(1, min(runtime.NumCPU(), len(jobs)/64))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(jobs); i += workers {
				check(i)
			}
		}()
	}
	wg.Wait()
	// Registrations by epoll fd and number, and each replacement's
	// behaviour, looked up once: groups are many, replacements few.
	type slotKey struct{ efd, tfd int }
	afterBy := map[slotKey][]epollReg{}
	for efd, regs := range after {
		for _, e := range regs {
			k := slotKey{efd, e.tfd}
			afterBy[k] = append(afterBy[k], e)
		}
	}
	behaviour := map[*replacement]string{}
	next := 0
	for _, g := range acted {
		var problems []string
		for range g.fds {
			if p := fdProblems[next]; p != "" {
				problems = append(problems, p)
			}
			next++
		}
		if g.repl != nil && g.repl.copy >= 0 {
			p, ok := behaviour[g.repl]
			if !ok {
				p = g.repl.misbehaves()
				behaviour[g.repl] = p
			}
			if p != "" {
				problems = append(problems, p)
			}
		}
		moved := 0
		for _, want := range g.regs {
			found, old := false, false
			toff := 0
			for _, e := range afterBy[slotKey{want.efd, want.tfd}] {
				if g.repl != nil && g.repl.copy >= 0 && g.repl.id.ino != 0 {
					if (fileID{e.sdev, e.ino}) == g.repl.id && e.data == want.data && e.events&^epollWakeup == want.events&^epollWakeup {
						found = true
					} else {
						old = true // the PTY, or anything else, still under this number
					}
					toff++
					continue
				}
				if r.epollHas(r.copies[g.fds[0]], want.efd, e.tfd, toff) {
					old = true
				} else if g.repl != nil && g.repl.copy >= 0 && e.data == want.data &&
					e.events&^epollWakeup == want.events&^epollWakeup && r.epollHas(g.repl.copy, want.efd, e.tfd, toff) {
					found = true
				}
				toff++
			}
			if old {
				problems = append(problems, fmt.Sprintf("the PTY is still registered in epoll fd %d under fd %d", want.efd, want.tfd))
			}
			if !found {
				problems = append(problems, fmt.Sprintf("fd %d is not registered in epoll fd %d as before (events %#x data %#x)", want.tfd, want.efd, want.events, want.data))
			} else {
				moved++
			}
		}
		for _, fd := range g.fds {
			res := r.result(fd)
			if len(problems) > 0 {
				res.Result, res.Reason = ResultFailed, "after the calls: "+strings.Join(problems, "; ")
				continue
			}
			res.Result, res.Method, res.Epoll = ResultDone, g.method, moved
			if g.repl != nil {
				res.Method, res.Replacement = g.repl.method, g.repl.link
			}
		}
	}
}

// ClosedByProgram watches, for up to within, the fds that a release left
// holding a replacement, and returns for each fd the program closed (or
// pointed elsewhere) by itself how long after the start of the watch it
// did so. It is a short follow-up check, not a wait: an event loop that
// reads the hang-up closes the fd within milliseconds.
func ClosedByProgram(pid int, fds []FDResult, within time.Duration) map[int]time.Duration {
	start := time.Now()
	watch := map[int]string{}
	for _, f := range fds {
		if f.Result == ResultDone && f.Replacement != "" {
			watch[f.FD] = f.Replacement
		}
	}
	out := map[int]time.Duration{}
	for len(watch) > 0 {
		for fd, want := range watch {
			if link, err := os.Readlink(procPath(pid, "fd/"+strconv.Itoa(fd))); err != nil || link != want {
				out[fd] = time.Since(start)
				delete(watch, fd)
			}
		}
		if time.Since(start) >= within {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	return out
}
