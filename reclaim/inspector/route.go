package inspector

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// host is what the route needs from the operating system (route_linux.go,
// route_darwin.go). It is bound to one process, pinned where the platform
// can (a pidfd on Linux).
type host interface {
	// recheck re-reads what made the plan choose the route: the same
	// process, Node or Electron, SIGUSR1 caught, the fuse on, and on
	// Linux our network namespace.
	recheck() error
	// listener says who listens on port: the target itself on 127.0.0.1
	// (own), or anyone else (foreign, which includes a wildcard bind).
	listener(port int) (own, foreign bool)
	// ports are the TCP ports the target itself listens on.
	ports() map[int]bool
	// sigusr1 sends the one signal the route sends.
	sigusr1() error
	// accepted looks for the server end of our connection from local to
	// the target's port: held when the target holds it (its inspector
	// accepted us), foreign when someone else does. Neither means not
	// accepted yet, or (macOS, which shows only the target's sockets)
	// not the target's.
	accepted(local netip.AddrPort, port int) (held, foreign bool)
	// gone reports whether fd has left the process, seen from outside.
	gone(fd int) bool
	close()
}

// release runs the route on a host. A returned error says in one sentence
// why the route stopped; Report.Outcomes still lists, verified from
// outside, whatever the evaluation did before that (nothing, when the
// route stopped before the signal). Report.StillOpen says when the
// inspector could not be closed again.
func release(ctx context.Context, h host, t Target, log *zap.Logger) (Report, error) {
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

	if err := h.recheck(); err != nil {
		return rep, err
	}
	if own, foreign := h.listener(port); own {
		return rep, fmt.Errorf("pid %d already has its inspector open on port %d: someone may be debugging it", t.PID, port)
	} else if foreign {
		return rep, fmt.Errorf("port %d is taken by another process: the inspector route is refused", port)
	}

	before := h.ports()
	// The only signal we send, to a process proven to catch it.
	if err := h.sigusr1(); err != nil {
		return rep, fmt.Errorf("pid %d: cannot send SIGUSR1: %v", t.PID, err)
	}
	opened := time.Now()
	openCtx, openCancel := context.WithTimeout(ctx, openWait)
	err := waitListener(openCtx, h, t.PID, port, true)
	openCancel()
	if err != nil {
		// It may open late; then it must be closed, by whoever notices.
		if own, _ := h.listener(port); own {
			rep.StillOpen = true
		}
		// An inspector the program moved (process.debugPort) opens
		// elsewhere: say so, it is as reachable as one on our port.
		for p := range h.ports() {
			if !before[p] && p != port {
				rep.StillOpen = true
				rep.Notes = append(rep.Notes, fmt.Sprintf("pid %d opened a new listener on port %d after SIGUSR1: its inspector may be open there", t.PID, p))
			}
		}
		return rep, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	outcomes, relErr := exchange(ctx, h, addr, port, t, deadline)
	// Wait for the listener to go, whatever the exchange did.
	if err := waitListener(ctx, h, t.PID, port, false); err != nil {
		rep.StillOpen = true
		rep.Notes = append(rep.Notes, fmt.Sprintf("the inspector of pid %d is still open on %s", t.PID, addr))
	}
	rep.Open = time.Since(opened)
	log.Info("inspector route", zap.Int("pid", t.PID), zap.Duration("open", rep.Open), zap.Bool("still_open", rep.StillOpen))
	// Whatever went wrong afterwards, what the evaluation did is verified
	// and reported: the caller must not redo a release that happened.
	rep.Outcomes = verify(h, outcomes, deadline)
	return rep, relErr
}

// waitListener waits for the target's inspector to listen on 127.0.0.1
// (open) or to stop listening (!open). A listener on the port that is not
// the target's is an error: it is never talked to.
func waitListener(ctx context.Context, h host, pid, port int, open bool) error {
	for {
		own, foreign := h.listener(port)
		switch {
		case open && foreign:
			return fmt.Errorf("port %d answers for another process, not pid %d: not talking to it", port, pid)
		case open && own, !open && !own:
			return nil
		}
		select {
		case <-ctx.Done():
			if open {
				return fmt.Errorf("pid %d opened no inspector on 127.0.0.1:%d after SIGUSR1 (inspector disabled or already active?)", pid, port)
			}
			return fmt.Errorf("the inspector of pid %d did not close", pid)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// provenDial connects to the inspector and proves, before a byte is sent,
// that the target itself accepted the connection: the server end of this
// very connection is in its fd table. The listener seen before the signal
// could have been replaced since; a connection accepted by anyone else is
// closed unused.
func provenDial(ctx context.Context, h host, addr string, port int, deadline time.Time) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	tcp, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("inspector: local address %v is not TCP", c.LocalAddr())
	}
	local := netip.AddrPortFrom(tcp.AddrPort().Addr().Unmap(), tcp.AddrPort().Port())
	for {
		held, foreign := h.accepted(local, port)
		switch {
		case held:
			_ = c.SetDeadline(deadline)
			return c, nil
		case foreign:
			c.Close()
			return nil, fmt.Errorf("the connection to %s was accepted by another process, not the target: not talking to it", addr)
		}
		select {
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("the target never held the server end of the connection to %s: not talking to it", addr)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// exchange talks to the inspector: release the fds, then have the target
// close its inspector, and wait for it to close the connection. Every
// connection it makes is proven to be the target's (provenDial).
func exchange(ctx context.Context, h host, addr string, port int, t Target, deadline time.Time) ([]Outcome, error) {
	dial := func(ctx context.Context) (net.Conn, error) { return provenDial(ctx, h, addr, port, deadline) }
	targets, err := listTargets(ctx, addr, dial, deadline)
	if err != nil {
		return nil, err
	}
	if len(targets) != 1 {
		return nil, fmt.Errorf("inspector on %s lists %d node targets, want 1", addr, len(targets))
	}
	s, err := dialSession(ctx, dial, targets[0].WebSocketDebuggerURL, deadline)
	if err != nil {
		return nil, err
	}
	outcomes, relErr := s.releaseFDs(t.FDs, t.Expect, t.Watched, deadline)
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
func verify(h host, outcomes []Outcome, deadline time.Time) []FDResult {
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
			if h.gone(out[i].FD) {
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
