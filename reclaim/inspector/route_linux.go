//go:build linux

package inspector

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

func procPath(pid int, name string) string { return "/proc/" + strconv.Itoa(pid) + "/" + name }

// nodeSymbol is exported by every Node.js embedder, node itself and
// Electron included: native addons register through it.
const nodeSymbol = "node_module_register"

// IsNode reports whether pid runs Node.js or Electron: an ELF object it has
// mapped executable (its program or a library such as libnode.so) exports
// node_module_register. Files on a FUSE mount are not read: their server
// could hold the reader forever.
func IsNode(pid int) (bool, error) {
	maps, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		return false, err
	}
	fuse, err := fuseDevices(pid)
	if err != nil {
		return false, err
	}
	seen := map[string]bool{}
	for _, m := range parseExecMappings(maps) {
		if seen[m.path] {
			continue
		}
		seen[m.path] = true
		if fuse[m.dev] {
			continue
		}
		if exportsSymbol(procPath(pid, "root")+m.path, nodeSymbol) {
			return true, nil
		}
	}
	return false, nil
}

type mapping struct {
	dev  string // "major:minor" in hex, as maps writes it
	path string
}

// parseExecMappings returns the file-backed executable mappings of a
// /proc/PID/maps text.
func parseExecMappings(maps []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[1]) < 3 || f[1][2] != 'x' || !strings.HasPrefix(f[5], "/") {
			continue
		}
		out = append(out, mapping{dev: f[3], path: strings.Join(f[5:], " ")})
	}
	return out
}

// fuseDevices lists the devices ("major:minor" in maps' hex spelling) of
// the FUSE mounts in pid's mount namespace.
func fuseDevices(pid int) (map[string]bool, error) {
	data, err := os.ReadFile(procPath(pid, "mountinfo"))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 3 || sep < 0 || sep+1 >= len(f) || !strings.HasPrefix(f[sep+1], "fuse") {
			continue
		}
		maj, min, ok := strings.Cut(f[2], ":")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if ok && err1 == nil && err2 == nil {
			out[fmt.Sprintf("%02x:%02x", a, b)] = true
		}
	}
	return out, nil
}

func exportsSymbol(path, name string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false
	}
	for _, s := range syms {
		if s.Name == name && s.Section != elf.SHN_UNDEF {
			return true
		}
	}
	return false
}

// Release runs the route in one process. A returned error means nothing
// was released; it says why in one sentence (and, if the inspector could
// not be closed again, Report.StillOpen says so too).
func Release(ctx context.Context, t Target, log *zap.Logger) (Report, error) {
	if log == nil {
		log = zap.NewNop()
	}
	port := t.Port
	if port == 0 {
		port = DefaultPort
	}
	timeout := t.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var rep Report

	pidfd, err := unix.PidfdOpen(t.PID, 0)
	if err != nil {
		return rep, fmt.Errorf("no process %d", t.PID)
	}
	defer unix.Close(pidfd)
	if err := checkProcess(t); err != nil {
		return rep, err
	}
	if err := portFree(t.PID, port); err != nil {
		return rep, err
	}

	// The only signal we send, to a process proven to catch it.
	if err := unix.PidfdSendSignal(pidfd, unix.SIGUSR1, nil, 0); err != nil {
		return rep, fmt.Errorf("pid %d: cannot send SIGUSR1: %v", t.PID, err)
	}
	opened := time.Now()
	if err := waitListener(ctx, t.PID, port, true); err != nil {
		rep.StillOpen = listenerOwned(t.PID, port)
		return rep, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	outcomes, relErr := exchange(addr, t.FDs, deadline)
	// Wait for the listener to go, whatever the exchange did.
	if err := waitListener(ctx, t.PID, port, false); err != nil {
		rep.StillOpen = true
		rep.Notes = append(rep.Notes, fmt.Sprintf("the inspector of pid %d is still open on %s", t.PID, addr))
	}
	rep.Open = time.Since(opened)
	if relErr != nil {
		return rep, relErr
	}
	rep.Outcomes = verify(t.PID, outcomes, deadline)
	log.Info("inspector route", zap.Int("pid", t.PID), zap.Duration("open", rep.Open), zap.Bool("still_open", rep.StillOpen))
	return rep, nil
}

// checkProcess re-reads what made the plan choose this route: the same
// process, Node, SIGUSR1 caught, our network namespace.
func checkProcess(t Target) error {
	data, err := os.ReadFile(procPath(t.PID, "stat"))
	if err != nil {
		return fmt.Errorf("no process %d", t.PID)
	}
	st, err := procfs.ParseStat(data)
	if err != nil {
		return fmt.Errorf("pid %d: %v", t.PID, err)
	}
	if t.StartTime != 0 && st.StartTime != t.StartTime {
		return fmt.Errorf("pid %d is another process now (its start time changed)", t.PID)
	}
	status, err := os.ReadFile(procPath(t.PID, "status"))
	if err != nil {
		return fmt.Errorf("no process %d", t.PID)
	}
	cgt, err := sigCgt(status)
	if err != nil {
		return fmt.Errorf("pid %d: %v", t.PID, err)
	}
	if !CatchesSIGUSR1(cgt) {
		return fmt.Errorf("pid %d does not catch SIGUSR1 (it would die of it): not signalled", t.PID)
	}
	node, err := IsNode(t.PID)
	if err != nil {
		return fmt.Errorf("pid %d: %v", t.PID, err)
	}
	if !node {
		return fmt.Errorf("pid %d is not Node.js or Electron: not signalled", t.PID)
	}
	theirs, err1 := os.Readlink(procPath(t.PID, "ns/net"))
	ours, err2 := os.Readlink("/proc/self/ns/net")
	if err1 != nil || err2 != nil || theirs != ours {
		return fmt.Errorf("pid %d is in another network namespace: its inspector would not be on our 127.0.0.1", t.PID)
	}
	return nil
}

func sigCgt(status []byte) (uint64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("status has no SigCgt")
}

// listener is a listening TCP socket from /proc/PID/net/tcp{,6}.
type listener struct {
	loopback bool // bound to 127.0.0.1 (or ::1)
	port     int
	inode    uint64
}

// parseListeners returns the LISTEN sockets of a /proc/net/tcp or tcp6
// text.
func parseListeners(data []byte) []listener {
	var out []listener
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		ip, p, ok := strings.Cut(f[1], ":")
		port, err1 := strconv.ParseUint(p, 16, 16)
		inode, err2 := strconv.ParseUint(f[9], 10, 64)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		out = append(out, listener{
			loopback: ip == "0100007F" || ip == "00000000000000000000000001000000",
			port:     int(port), inode: inode,
		})
	}
	return out
}

func listeners(pid int) []listener {
	var out []listener
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		if data, err := os.ReadFile(procPath(pid, name)); err == nil {
			out = append(out, parseListeners(data)...)
		}
	}
	return out
}

// socketInodes are the sockets pid holds, from its fd links.
func socketInodes(pid int) map[uint64]bool {
	out := map[uint64]bool{}
	dir := procPath(pid, "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if v, ok := strings.CutPrefix(link, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// portFree refuses when anything already listens on the port: a program
// whose inspector is open is being debugged by someone, and a stranger on
// the port could pose as the inspector.
func portFree(pid, port int) error {
	ls := listeners(pid)
	own := socketInodes(pid)
	for _, l := range ls {
		if l.port != port {
			continue
		}
		if own[l.inode] {
			return fmt.Errorf("pid %d already has its inspector open on port %d: someone may be debugging it", pid, port)
		}
		return fmt.Errorf("port %d is taken by another process: the inspector route is refused", port)
	}
	return nil
}

func listenerOwned(pid, port int) bool {
	ls := listeners(pid)
	own := socketInodes(pid)
	for _, l := range ls {
		if l.port == port && own[l.inode] {
			return true
		}
	}
	return false
}

// waitListener waits for the target's inspector to listen on 127.0.0.1
// (open) or to stop listening (!open). A listener on the port that is not
// the target's is an error: it is never talked to.
func waitListener(ctx context.Context, pid, port int, open bool) error {
	for {
		// Listeners first, then the fds: a socket that is listening was
		// created before, so the fd read that follows sees it.
		ls := listeners(pid)
		own := socketInodes(pid)
		found, foreign := false, false
		for _, l := range ls {
			if l.port != port {
				continue
			}
			if own[l.inode] && l.loopback {
				found = true
			} else {
				foreign = true
			}
		}
		switch {
		case open && foreign:
			return fmt.Errorf("port %d answers for another process, not pid %d: not talking to it", port, pid)
		case open && found, !open && !found:
			return nil
		}
		select {
		case <-ctx.Done():
			if open {
				return fmt.Errorf("pid %d opened no inspector on 127.0.0.1:%d after SIGUSR1 (inspector disabled?)", pid, port)
			}
			return fmt.Errorf("the inspector of pid %d did not close", pid)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// exchange talks to the inspector: release the fds, then have it close
// itself once we are gone.
func exchange(addr string, fds []int, deadline time.Time) ([]Outcome, error) {
	targets, err := listTargets(addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	if len(targets) != 1 {
		return nil, fmt.Errorf("inspector on %s lists %d node targets, want 1", addr, len(targets))
	}
	s, err := dialSession(addr, targets[0].WebSocketDebuggerURL, deadline)
	if err != nil {
		return nil, err
	}
	outcomes, relErr := s.releaseFDs(fds)
	if err := s.closeInspector(); err != nil {
		// The target will not close its inspector: say goodbye ourselves.
		s.ws.close()
		if relErr == nil {
			relErr = err
		}
		return outcomes, relErr
	}
	// The target closes the connection as its inspector goes.
	if err := s.ws.awaitServerClose(); err != nil && relErr == nil {
		relErr = fmt.Errorf("inspector: waiting for the target to close: %w", err)
	}
	s.ws.c.Close()
	return outcomes, relErr
}

// verify checks from outside that every fd the evaluation released has
// left the process (destroying a socket closes its fd at once).
func verify(pid int, outcomes []Outcome, deadline time.Time) []FDResult {
	out := make([]FDResult, len(outcomes))
	for i, o := range outcomes {
		out[i].Outcome = o
	}
	for {
		pending := false
		for i := range out {
			if out[i].How == "failed" || out[i].Verified {
				continue
			}
			_, err := os.Readlink(procPath(pid, "fd/"+strconv.Itoa(out[i].FD)))
			if errors.Is(err, os.ErrNotExist) {
				out[i].Verified = true
				continue
			}
			pending = true
		}
		if !pending || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}
